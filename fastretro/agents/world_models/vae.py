"""Stage 2, V: the paper's convolutional VAE, trained on the shards' frames.

Four 4x4 stride-2 convolutions down to a Gaussian latent (32-d in the paper), four
deconvolutions back up; ``reconstructions.png`` shows frames above their reconstructions.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from fastretro.agents.checkpoints import load_checkpoint as _load_tagged
from fastretro.agents.checkpoints import load_state
from fastretro.agents.checkpoints import save_checkpoint as _save_tagged
from fastretro.agents.common import torch
from fastretro.agents.world_models.config import VAE_TAG, WorldModelsConfig, training_cores
from fastretro.agents.world_models.runfolder import Scalars, save_config, write_json
from fastretro.agents.world_models.shards import load_shards
from fastretro.errors import InvalidArgumentError

nn = torch.nn
F = torch.nn.functional


class ConvVAE(nn.Module):
    """The paper's VAE: 4 conv layers (4x4, stride 2), a Gaussian latent, 4 deconv layers.

    Frames are uint8 (N, S, S, 3); the decoder draws 64x64 (5, 13, 30, 64 pixels after each
    deconvolution, as in the paper) and is resized to S x S when S is not 64.
    """

    def __init__(self, z_size: int = 32, width: int = 32, frame_size: int = 64) -> None:
        super().__init__()
        c = [width, 2 * width, 4 * width, 8 * width]
        self.z_size, self.width, self.frame_size = z_size, width, frame_size
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c[0], 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(c[0], c[1], 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(c[1], c[2], 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(c[2], c[3], 4, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n = self.encoder(torch.zeros(1, 3, frame_size, frame_size)).shape[1]
        self.mu = nn.Linear(n, z_size)
        self.logvar = nn.Linear(n, z_size)
        self.fc = nn.Linear(z_size, 4 * c[3])  # the paper's 1024 at width 32
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4 * c[3], c[2], 5, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(c[2], c[1], 5, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(c[1], c[0], 6, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(c[0], 3, 6, stride=2),
            nn.Sigmoid(),
        )

    @staticmethod
    def to_input(frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, S, S, 3) frames as float (N, 3, S, S) in [0, 1]."""
        # contiguous: convolutions on the permuted (channels-last) strides take a path ~3x
        # slower at the few frames an async recv returns (oneDNN, torch 2.13, 1 thread)
        return frames.permute(0, 3, 1, 2).float().mul_(1.0 / 255.0).contiguous()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (N, z_size) of float frames (N, 3, S, S)."""
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Float frames (N, 3, S, S) in [0, 1] of latents (N, z_size)."""
        x = self.decoder(self.fc(z)[:, :, None, None])
        if x.shape[-1] != self.frame_size:
            x = F.interpolate(x, size=(self.frame_size, self.frame_size), mode="bilinear")
        return x

    def forward(self, x: torch.Tensor):
        """Reconstruction, mean and log-variance of float frames (N, 3, S, S)."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar


def vae_loss(
    x: torch.Tensor,
    recon: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    tolerance: float,
    reconstruction: str = "l2",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's losses: squared error summed per frame, KL floored per frame; batch means.

    ``tolerance`` is the KL floor in nats per frame (the paper's free bits).
    ``reconstruction``: ``l2`` (the paper's) or ``bce`` (binary cross-entropy, also summed).
    """
    if reconstruction == "bce":
        r_loss = F.binary_cross_entropy(recon, x, reduction="none").sum((1, 2, 3)).mean()
    else:
        r_loss = (recon - x).pow(2).sum((1, 2, 3)).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return r_loss, kl.clamp(min=tolerance).mean()


def load_vae(path: str, cfg: WorldModelsConfig) -> tuple[ConvVAE, dict]:
    """The VAE of a ``vae.pt``, checked against this run's frame size.

    Raises:
        InvalidArgumentError: no file, not a World Models VAE, or a VAE of another frame size.
    """
    ints = dict.fromkeys(("frame_size", "z_size", "width", "epochs"), int)
    ckpt = _load_tagged(path, VAE_TAG, "World Models VAE", required={"model": dict, **ints})
    size = int(ckpt["frame_size"])
    if size != cfg.frame_size:
        raise InvalidArgumentError(
            f"{path!r} is a VAE of {size}x{size} frames, not {cfg.frame_size}x{cfg.frame_size} "
            f"(frame_size={cfg.frame_size}): train one on this run's frames"
        )
    try:
        vae = ConvVAE(int(ckpt["z_size"]), int(ckpt["width"]), size)
    except (RuntimeError, ValueError) as exc:  # sizes no network has
        raise InvalidArgumentError(f"{path!r} holds a VAE that cannot be built: {exc}") from exc
    load_state(vae, ckpt, "model", path, "World Models VAE")
    vae.eval()
    return vae, ckpt


def train_vae(cfg: WorldModelsConfig, run_dir: str, *, progress: bool = True) -> dict:
    """Train V on the shards until ``cfg.vae_epochs`` epochs; write vae.pt and a picture.

    An existing ``vae.pt`` is continued (weights, optimizer, epochs done). Writes ``vae.csv``
    (one row per epoch), ``reconstructions.png`` (8 frames above their reconstructions) and
    ``vae.json``.
    """
    from tqdm import tqdm

    cfg.check()
    start = time.perf_counter()
    obs = load_shards(run_dir, cfg, ["observations"])["observations"]
    rng = np.random.default_rng(cfg.seed)
    if cfg.vae_max_frames and len(obs) > cfg.vae_max_frames:
        obs = obs[np.sort(rng.choice(len(obs), cfg.vae_max_frames, replace=False))]
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(training_cores())
    path = os.path.join(run_dir, "vae.pt")
    vae = ConvVAE(cfg.z_size, cfg.vae_width, cfg.frame_size)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.vae_lr)
    epochs_done, seen = 0, 0
    if os.path.exists(path):
        vae, ckpt = load_vae(path, cfg)
        opt = torch.optim.Adam(vae.parameters(), lr=cfg.vae_lr)
        load_state(opt, ckpt, "optimizer", path, "World Models VAE optimizer")
        epochs_done, seen = int(ckpt["epochs"]), int(ckpt["frames"])
    seen_before = seen
    logger = Scalars(run_dir, "vae.csv", resume=epochs_done > 0)
    vae.train()
    bs = cfg.vae_batch_size
    batches = max(1, len(obs) // bs)
    bar = tqdm(
        total=batches * max(0, cfg.vae_epochs - epochs_done),
        unit="batch",
        disable=not progress,
        desc="vae",
    )
    train_s = 0.0
    try:
        for epoch in range(epochs_done, cfg.vae_epochs):
            t0 = time.perf_counter()
            order = rng.permutation(len(obs))
            sums = np.zeros(2)
            for b in range(batches):
                x = ConvVAE.to_input(torch.from_numpy(obs[np.sort(order[b * bs : (b + 1) * bs])]))
                recon, mu, logvar = vae(x)
                r_loss, kl_loss = vae_loss(
                    x, recon, mu, logvar, cfg.vae_kl_tolerance * cfg.z_size, cfg.vae_loss
                )
                opt.zero_grad()
                (r_loss + kl_loss).backward()
                opt.step()
                sums += (r_loss.item(), kl_loss.item())
                seen += len(x)
                bar.update(1)
                bar.set_postfix(recon=f"{r_loss.item():.1f}", kl=f"{kl_loss.item():.1f}")
            train_s += time.perf_counter() - t0
            logger.row(
                {
                    "epoch": epoch + 1,
                    "frames": seen,
                    "loss/reconstruction": sums[0] / batches,
                    "loss/kl": sums[1] / batches,
                    "seconds": round(time.perf_counter() - t0, 3),
                },
                step=seen,
            )
            _save_vae(path, vae, opt, cfg, seen, epoch + 1)
    finally:
        bar.close()
        logger.close()
    if not os.path.exists(path):  # vae_epochs=0 on a fresh run: an untrained VAE, saved
        _save_vae(path, vae, opt, cfg, 0, 0)
    vae.eval()
    picked = obs[np.linspace(0, len(obs) - 1, 8).astype(int)]
    with torch.no_grad():
        mu, _ = vae.encode(ConvVAE.to_input(torch.from_numpy(picked)))
        recon = to_uint8(vae.decode(mu))
    picture = os.path.join(run_dir, "reconstructions.png")
    _save_png(np.concatenate([_row(picked), _row(recon)], axis=0), picture, scale=2)
    summary = {
        "stage": "vae",
        "frames_in_data": int(len(obs)),
        "epochs": cfg.vae_epochs,
        "frames_trained": seen,
        "train_seconds": round(train_s, 3),
        "train_frames_per_s": round((seen - seen_before) / train_s, 1) if train_s else None,
        "seconds": round(time.perf_counter() - start, 3),
        "parameters": sum(p.numel() for p in vae.parameters()),
        "picture": picture,
    }
    write_json(os.path.join(run_dir, "vae.json"), summary)
    save_config(cfg, run_dir)
    return summary


def _save_vae(path: str, vae: ConvVAE, opt, cfg: WorldModelsConfig, seen: int, epochs: int):
    """``vae.pt``: V's weights and optimizer, tagged, with the sizes that rebuild it."""
    _save_tagged(
        path,
        VAE_TAG,
        dataclasses.asdict(cfg),
        seen,
        model=vae.state_dict(),
        optimizer=opt.state_dict(),
        epochs=epochs,
        frame_size=cfg.frame_size,
        z_size=cfg.z_size,
        width=cfg.vae_width,
    )


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float frames (N, 3, S, S) in [0, 1] as uint8 (N, S, S, 3)."""
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def _row(frames: np.ndarray) -> np.ndarray:
    """Frames (N, H, W, 3) side by side, (H, N * W, 3)."""
    return np.concatenate(list(frames), axis=1)


def _save_png(image: np.ndarray, path: str, scale: int = 1) -> None:
    """``image`` (H, W, 3) uint8 as a PNG, scaled up ``scale`` times, written atomically."""
    from PIL import Image

    im = Image.fromarray(image)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    tmp = f"{path}.tmp"
    im.save(tmp, format="PNG")
    os.replace(tmp, path)
