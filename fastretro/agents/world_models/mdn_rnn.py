"""Stage 3, M: an LSTM with a mixture-density head over the VAE's next latent.

The paper's MDN-RNN (256 units, 5 Gaussians per latent dimension), with heads for the step's
reward and the episode's end, trained on the shards encoded by V (cached in ``latents.npz``);
``dream.gif`` shows an episode's frames beside the model's own rollout of the same actions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import numpy as np

from fastretro.agents.checkpoints import load_checkpoint as _load_tagged
from fastretro.agents.checkpoints import load_state
from fastretro.agents.checkpoints import save_checkpoint as _save_tagged
from fastretro.agents.common import torch
from fastretro.agents.world_models.config import MDN_TAG, WorldModelsConfig, training_cores
from fastretro.agents.world_models.runfolder import Scalars, save_config, write_json
from fastretro.agents.world_models.shards import load_shards, shard_paths
from fastretro.agents.world_models.vae import ConvVAE, load_vae, to_uint8
from fastretro.errors import InvalidArgumentError

nn = torch.nn
F = torch.nn.functional


class MDNRNN(nn.Module):
    """An LSTM over (z, one-hot action) with a mixture-density head over the next z.

    Each latent dimension gets its own mixture of ``gaussians`` Gaussians (the paper's
    factored MDN). Two more outputs predict the step's reward and whether it ends the episode
    (a logit).
    """

    def __init__(self, z_size: int, n_actions: int, hidden: int = 256, gaussians: int = 5):
        super().__init__()
        self.z_size, self.n_actions, self.hidden, self.gaussians = (
            z_size,
            n_actions,
            hidden,
            gaussians,
        )
        self.lstm = nn.LSTM(z_size + n_actions, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 3 * z_size * gaussians + 2)

    def inputs(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The LSTM's input: z (..., z_size) and one-hot actions (...) concatenated."""
        return torch.cat([z, F.one_hot(actions.long(), self.n_actions).to(z.dtype)], -1)

    def forward(self, z: torch.Tensor, actions: torch.Tensor, state=None):
        """Mixture, reward and end predictions for sequences (B, T, z_size) and (B, T).

        Returns:
            ``((logpi, mu, logsigma), reward, end_logit, hidden_seq, state)``: the mixture's
            parameters (B, T, z_size, gaussians), reward (B, T), end logit (B, T), the LSTM's
            outputs (B, T, hidden) and its final ``(h, c)``.
        """
        out, state = self.lstm(self.inputs(z, actions), state)
        return (*self.predict(out), out, state)

    def predict(self, out: torch.Tensor):
        """The heads on LSTM outputs (..., hidden)."""
        p = self.head(out)
        k = self.z_size * self.gaussians
        shape = (*out.shape[:-1], self.z_size, self.gaussians)
        logpi = p[..., :k].reshape(shape).log_softmax(-1)
        mu = p[..., k : 2 * k].reshape(shape)
        logsigma = p[..., 2 * k : 3 * k].reshape(shape).clamp(-7.0, 5.0)
        return (logpi, mu, logsigma), p[..., 3 * k], p[..., 3 * k + 1]

    def step(self, z: torch.Tensor, actions: torch.Tensor, state):
        """One step for a batch; returns the new ``(h, c)``.

        ``z`` is (N, z_size), ``actions`` (N,), ``state`` ``(h, c)`` of (N, hidden) each.
        """
        # The LSTM's own cell on its weights: nn.LSTM's call on a one-step sequence costs
        # twice as much at the few rows an async recv returns; tests/agents/test_world_models.py
        # pins that both give the same states.
        lstm = self.lstm
        return torch.lstm_cell(
            self.inputs(z, actions),
            state,
            lstm.weight_ih_l0,
            lstm.weight_hh_l0,
            lstm.bias_ih_l0,
            lstm.bias_hh_l0,
        )


def mdn_nll(logpi, mu, logsigma, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood (..., z_size) of ``target`` (..., z_size) under the mixture."""
    t = target[..., None]
    log_normal = -0.5 * ((t - mu) / logsigma.exp()).pow(2) - logsigma - 0.5 * math.log(2 * math.pi)
    return -torch.logsumexp(logpi + log_normal, -1)


def sample_mixture(logpi, mu, logsigma, temperature: float, generator=None) -> torch.Tensor:
    """One z (..., z_size) drawn from the mixture at ``temperature`` (the paper's tau)."""
    probs = (logpi / temperature).softmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])
    k = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
    m = mu.gather(-1, k[..., None])[..., 0]
    s = logsigma.gather(-1, k[..., None])[..., 0].exp()
    noise = torch.randn(m.shape, generator=generator)
    return m + s * noise * math.sqrt(temperature)


def load_mdn(path: str, cfg: WorldModelsConfig, n_actions: int) -> tuple[MDNRNN, dict]:
    """The MDN-RNN of an ``mdn.pt``, checked against this run's action count and latent size.

    Raises:
        InvalidArgumentError: no file, not a World Models MDN-RNN, or one of another action
            set.
    """
    ints = dict.fromkeys(("n_actions", "z_size", "hidden", "gaussians", "epochs"), int)
    ckpt = _load_tagged(
        path,
        MDN_TAG,
        "World Models MDN-RNN",
        required={"model": dict, "reward_unit": (int, float), "action_set": (str, list), **ints},
    )
    have = int(ckpt["n_actions"])
    if have != n_actions:
        raise InvalidArgumentError(
            f"{path!r} was trained on {have} actions ({ckpt['action_set']!r}); this env has "
            f"{n_actions}: use the run's action set"
        )
    try:
        mdn = MDNRNN(int(ckpt["z_size"]), have, int(ckpt["hidden"]), int(ckpt["gaussians"]))
    except (RuntimeError, ValueError) as exc:  # sizes no network has
        raise InvalidArgumentError(
            f"{path!r} holds an MDN-RNN that cannot be built: {exc}"
        ) from exc
    load_state(mdn, ckpt, "model", path, "World Models MDN-RNN")
    mdn.eval()
    return mdn, ckpt


def encode_shards(run_dir: str, cfg: WorldModelsConfig, vae: ConvVAE, vae_ckpt: dict) -> dict:
    """Every shard's frames encoded by the VAE, with the actions, rewards and episode ends.

    Returns ``mu`` and ``logvar`` (N, z_size) float32 and the shards' ``actions``,
    ``rewards``, ``terminated`` and ``episode_ends``; cached in ``latents.npz`` until the VAE
    or the shards change.
    """
    path = os.path.join(run_dir, "latents.npz")
    stamp = json.dumps(
        {
            "vae_frames": int(vae_ckpt["frames"]),
            "vae_epochs": int(vae_ckpt["epochs"]),
            "shards": [os.path.basename(p) for p in shard_paths(run_dir)],
        }
    )
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as data:
            if str(data["stamp"]) == stamp:
                return {k: data[k] for k in data.files if k != "stamp"}
    keys = ["observations", "actions", "rewards", "terminated", "episode_ends"]
    data = load_shards(run_dir, cfg, keys)
    obs = data.pop("observations")
    mus, logvars = [], []
    with torch.no_grad():
        for s in range(0, len(obs), 256):
            mu, logvar = vae.encode(ConvVAE.to_input(torch.from_numpy(obs[s : s + 256])))
            mus.append(mu.numpy())
            logvars.append(logvar.numpy())
    data["mu"] = np.concatenate(mus)
    data["logvar"] = np.concatenate(logvars)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, stamp=np.str_(stamp), **data)
    os.replace(tmp, path)
    return data


def _sequence_index(ends: np.ndarray, seq_len: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Training sequences: flat step indices (C, seq_len) and a mask of the steps that exist.

    Each episode is cut into sequences of ``seq_len`` steps after a first one of random length
    (1 to ``seq_len``), so the cuts move from epoch to epoch; a sequence never starts before
    its episode, and its padding (masked) comes last.
    """
    stops = np.flatnonzero(ends) + 1
    starts = np.concatenate([[0], stops[:-1]])
    firsts, last = [], []
    for s, e in zip(starts, stops):
        cuts = [s, *range(s + int(rng.integers(1, seq_len + 1)), e, seq_len)]
        firsts += cuts
        last += [*cuts[1:], e]
    base = np.array(firsts, np.int64)[:, None] + np.arange(seq_len)
    valid = base < np.array(last, np.int64)[:, None]
    return np.minimum(base, len(ends) - 1), valid


def _step_targets(data: dict, reward_unit: float) -> dict:
    """Per step: the action taken, the targets of M's heads, and the weight of an end.

    ``actions`` (N,) int64, ``rewards`` (N,) in units of ``reward_unit``, ``term`` (N,) 0/1,
    ``has_next`` (N,) bool (the step is not its episode's last), ``pos_weight`` a scalar.
    """
    term = torch.from_numpy(data["terminated"].astype(np.float32))
    # Ends are rare: weigh them as much as all the other steps together (capped).
    n_term = float(term.sum())
    return {
        "actions": torch.from_numpy(data["actions"].astype(np.int64)),
        "rewards": torch.from_numpy(data["rewards"] / reward_unit).float(),
        "term": term,
        "has_next": torch.from_numpy(~data["episode_ends"]),
        "pos_weight": torch.tensor(min(100.0, (len(term) - n_term) / n_term) if n_term else 1.0),
    }


def _batch_losses(mdn: MDNRNN, z_all: torch.Tensor, steps: dict, i, v):
    """M's three losses on sequences of flat step indices ``i`` (B, T) masked by ``v`` (B, T).

    The next z's mixture NLL (over steps that have a next one), the reward's squared error and
    the end's weighted cross-entropy, each a mean over the steps that exist.
    """
    nxt = (i + 1).clamp(max=len(z_all) - 1)
    v_next = v & steps["has_next"][i]
    (logpi, m, ls), r_hat, end_logit, _, _ = mdn(z_all[i], steps["actions"][i])
    nll = mdn_nll(logpi, m, ls, z_all[nxt]).mean(-1)
    z_loss = (nll * v_next).sum() / v_next.sum().clamp(min=1)
    r_loss = ((r_hat - steps["rewards"][i]).pow(2) * v).sum() / v.sum()
    bce = F.binary_cross_entropy_with_logits(
        end_logit, steps["term"][i], pos_weight=steps["pos_weight"], reduction="none"
    )
    e_loss = (bce * v).sum() / v.sum()
    return z_loss, r_loss, e_loss


def train_mdn(cfg: WorldModelsConfig, run_dir: str, *, progress: bool = True) -> dict:
    """Train M on the VAE's latents of the shards; write mdn.pt and the dream GIF.

    The loss sums the mixture's negative log-likelihood of the next z (averaged over latent
    dimensions), the squared error of the reward (in units of the largest reward seen) and the
    cross-entropy of the episode's end (termination, not the time limit). An existing
    ``mdn.pt`` is continued. Writes ``mdn.csv``, ``dream.gif`` and ``mdn.json``.
    """
    from tqdm import tqdm

    cfg.check()
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(training_cores())
    vae, vae_ckpt = load_vae(os.path.join(run_dir, "vae.pt"), cfg)
    data = encode_shards(run_dir, cfg, vae, vae_ckpt)
    encode_s = time.perf_counter() - start
    with np.load(shard_paths(run_dir)[0], allow_pickle=False) as shard:
        n_actions = int(shard["n_actions"])
    path = os.path.join(run_dir, "mdn.pt")
    mdn = MDNRNN(vae.z_size, n_actions, cfg.rnn_hidden, cfg.mdn_gaussians)
    opt = torch.optim.Adam(mdn.parameters(), lr=cfg.mdn_lr)
    epochs_done, seen = 0, 0
    reward_unit = float(max(np.abs(data["rewards"]).max(), 1e-8))
    if os.path.exists(path):
        mdn, ckpt = load_mdn(path, cfg, n_actions)
        opt = torch.optim.Adam(mdn.parameters(), lr=cfg.mdn_lr)
        load_state(opt, ckpt, "optimizer", path, "World Models MDN-RNN optimizer")
        epochs_done, seen = int(ckpt["epochs"]), int(ckpt["frames"])
        reward_unit = float(ckpt["reward_unit"])
    rng = np.random.default_rng(cfg.seed)
    mu = torch.from_numpy(data["mu"])
    sigma = torch.from_numpy(data["logvar"]).mul(0.5).exp()
    ends = data["episode_ends"]
    steps = _step_targets(data, reward_unit)
    logger = Scalars(run_dir, "mdn.csv", resume=epochs_done > 0)
    mdn.train()
    bar = tqdm(total=max(0, cfg.mdn_epochs - epochs_done), unit="epoch", disable=not progress)
    bar.set_description("mdn")
    train_s = 0.0
    try:
        for epoch in range(epochs_done, cfg.mdn_epochs):
            t0 = time.perf_counter()
            idx, valid = _sequence_index(ends, cfg.mdn_seq_len, rng)
            idx_t, valid_t = torch.from_numpy(idx), torch.from_numpy(valid)
            z_all = mu + sigma * torch.randn(mu.shape)  # a fresh draw of every z per epoch
            order = rng.permutation(len(idx))
            sums, batches = np.zeros(4), 0
            for s in range(0, len(order), cfg.mdn_batch_size):
                rows = torch.from_numpy(order[s : s + cfg.mdn_batch_size])
                i, v = idx_t[rows], valid_t[rows]
                z_loss, r_loss, e_loss = _batch_losses(mdn, z_all, steps, i, v)
                loss = z_loss + r_loss + e_loss
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(mdn.parameters(), cfg.mdn_grad_clip)
                opt.step()
                sums += (loss.item(), z_loss.item(), r_loss.item(), e_loss.item())
                batches += 1
                seen += int(v.sum())
            train_s += time.perf_counter() - t0
            mean = sums / max(1, batches)
            logger.row(
                {
                    "epoch": epoch + 1,
                    "steps": seen,
                    "loss/total": mean[0],
                    "loss/z_nll": mean[1],
                    "loss/reward": mean[2],
                    "loss/end": mean[3],
                    "seconds": round(time.perf_counter() - t0, 3),
                },
                step=epoch + 1,
            )
            bar.update(1)
            bar.set_postfix(z_nll=f"{mean[1]:.3f}", reward=f"{mean[2]:.3f}", end=f"{mean[3]:.3f}")
            _save_mdn(path, mdn, opt, cfg, seen, epoch + 1, reward_unit)
    finally:
        bar.close()
        logger.close()
    if not os.path.exists(path):
        _save_mdn(path, mdn, opt, cfg, 0, 0, reward_unit)
    mdn.eval()
    picture = os.path.join(run_dir, "dream.gif")
    dream_frames = write_dream(run_dir, cfg, vae, mdn, data, picture)
    summary = {
        "stage": "mdn",
        "steps_in_data": int(len(mu)),
        "episodes_in_data": int(ends.sum()),
        "epochs": cfg.mdn_epochs,
        "encode_seconds": round(encode_s, 3),
        "train_seconds": round(train_s, 3),
        "seconds": round(time.perf_counter() - start, 3),
        "parameters": sum(p.numel() for p in mdn.parameters()),
        "reward_unit": reward_unit,
        "dream_frames": dream_frames,
        "picture": picture,
    }
    write_json(os.path.join(run_dir, "mdn.json"), summary)
    save_config(cfg, run_dir)
    return summary


def _save_mdn(path, mdn: MDNRNN, opt, cfg: WorldModelsConfig, seen, epochs, reward_unit):
    """``mdn.pt``: M's weights and optimizer, tagged, with the sizes and action set it fits."""
    _save_tagged(
        path,
        MDN_TAG,
        dataclasses.asdict(cfg),
        seen,
        model=mdn.state_dict(),
        optimizer=opt.state_dict(),
        epochs=epochs,
        z_size=mdn.z_size,
        n_actions=mdn.n_actions,
        action_set=cfg.resolved_actions(),
        hidden=mdn.hidden,
        gaussians=mdn.gaussians,
        reward_unit=reward_unit,
    )


def write_dream(run_dir, cfg, vae: ConvVAE, mdn: MDNRNN, data: dict, path: str) -> int:
    """A GIF of the first episode (left) beside M's dream of it (right); returns its length.

    The dream starts from the episode's first z, takes the episode's actions, draws each next
    z from M's mixture at ``dream_temperature``, and is decoded by V.
    """
    from PIL import Image

    ends = data["episode_ends"]
    length = int(np.flatnonzero(ends)[0]) + 1
    steps = min(cfg.dream_steps, length)
    with np.load(shard_paths(run_dir)[0], allow_pickle=False) as shard:
        real = shard["observations"][:steps]
    gen = torch.Generator().manual_seed(cfg.seed)
    actions = torch.from_numpy(data["actions"][:steps].astype(np.int64))
    z = torch.from_numpy(data["mu"][:1])
    zs = [z]
    state = (torch.zeros(1, mdn.hidden), torch.zeros(1, mdn.hidden))
    with torch.no_grad():
        for t in range(steps - 1):
            state = mdn.step(z, actions[t : t + 1], state)
            (logpi, m, ls), _, _ = mdn.predict(state[0])
            z = sample_mixture(logpi, m, ls, cfg.dream_temperature, gen)
            zs.append(z)
        dream = to_uint8(vae.decode(torch.cat(zs)))
    frames = [
        Image.fromarray(np.concatenate([r, d], axis=1)).resize(
            (4 * cfg.frame_size, 2 * cfg.frame_size), Image.NEAREST
        )
        for r, d in zip(real, dream)
    ]
    tmp = f"{path}.tmp"
    frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=66, loop=0)
    os.replace(tmp, path)
    return len(frames)
