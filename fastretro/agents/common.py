"""What the learning agents share: the image pool, the CNN trunks and the run logs.

PPO2, Rainbow and World Models each read top to bottom in their own file; the pieces that
would otherwise be written three times live here: the pool they act on (84x84 gray, max-pool,
stack 4, channels first, made in the workers), the per-game action sets, the Nature and IMPALA
CNN trunks, and the run folder's ``monitor.csv``, ``progress.csv`` and TensorBoard scalars.
Checkpoints (tensors and plain data, opened without running code) are in
:mod:`fastretro.agents.checkpoints`; the skeleton around training (resume, episodes, play, eval,
the command) in :mod:`fastretro.agents.harness`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Sequence

import numpy as np

log = logging.getLogger("fastretro.agents")

# torch's OpenMP threads (GNU libgomp) spin ~300,000 iterations after each parallel region by
# default, on the cores the emulators need (a pool step right after a forward pass takes half as
# long again: bench/bench_ppo2.py speed). Not spinning at all
# (OMP_WAIT_POLICY=PASSIVE) makes two threads slower than one on the forward pass (each layer
# waits for a thread to wake). A short spin keeps them together between layers and asleep once
# the pass is done. Only effective when an agent module is what first imports torch (the
# fastretro ppo/rainbow commands), and only when the user set neither variable.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - the [ppo] extra installs it
    raise ImportError(
        "fastretro's agents need PyTorch: pip install 'fastretro[ppo]' (pins torch==2.13.0; an "
        "unpinned torch pulls a multi-GB CUDA build)"
    ) from exc


#: ``actions="auto"`` per game: Sonic gets ``sonic7``; Airstriker a small set (B fires; the ship
#: moves in every direction); any other game stable-retro's ``discrete`` combos.
AUTO_ACTIONS: dict[str, list] = {
    "Airstriker-Genesis-v0": [
        "",
        "B",
        "LEFT",
        "RIGHT",
        "UP",
        "DOWN",
        "LEFT+B",
        "RIGHT+B",
        "UP+B",
        "DOWN+B",
    ],
}


def auto_actions(games: Sequence[str]):
    """The action set ``actions="auto"`` means for these games (see :data:`AUTO_ACTIONS`)."""
    if all("Sonic" in g for g in games):
        return "sonic7"
    return AUTO_ACTIONS.get(games[0], "discrete")


#: The observation image agents learn from, made in the workers.
IMAGE_OPTIONS = dict(
    grayscale=True, resize=(84, 84), max_pool=True, frame_stack=4, channels_first=True
)


def image_pool(
    games: Sequence[str],
    states: Sequence[str | None],
    scenario=None,
    *,
    actions="auto",
    **options,
):
    """The pool an image agent acts on: 84x84 gray, max-pool, stack 4, channels first.

    The preprocessing runs in the workers, episodes reset within the step that ends them
    (``same_step``), and ``scenario=None`` means ``contest`` where the game has one. Any other
    :class:`~fastretro.runtime.pool.VecRetroEnv` option passes through ``options``.
    """
    from fastretro.contest import has_contest_scenario
    from fastretro.runtime.pool import VecRetroEnv

    if scenario is None:
        scenario = ["contest" if has_contest_scenario(g) else None for g in games]
    if actions == "auto":
        actions = auto_actions(games)
    defaults = dict(IMAGE_OPTIONS, autoreset_mode="same_step")
    return VecRetroEnv(
        list(games),
        len(games),
        state=list(states),
        scenario=scenario,
        actions=actions,
        **{**defaults, **options},
    )


# -- networks --------------------------------------------------------------------------------


def init_layer(layer: nn.Module, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights with gain ``std`` and a constant bias (baselines' ``ortho_init``)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class NatureCNN(nn.Module):
    """Mnih et al. (2015): 3 conv layers and 512 units; input (N, C, 84, 84) float."""

    def __init__(self, in_channels: int, hw: tuple[int, int]) -> None:
        super().__init__()
        self.body = nn.Sequential(
            init_layer(nn.Conv2d(in_channels, 32, 8, stride=4)),
            nn.ReLU(),
            init_layer(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            init_layer(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n = self.body(torch.zeros(1, in_channels, *hw)).shape[1]
        self.fc = nn.Sequential(init_layer(nn.Linear(n, 512)), nn.ReLU())
        self.out_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, out_features) of float images (N, C, H, W)."""
        return self.fc(self.body(x))


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaCNN(nn.Module):
    """Espeholt et al. (2018): 3 stacks of conv, max-pool and 2 residual blocks; 256 units."""

    def __init__(self, in_channels: int, hw: tuple[int, int], depths=(16, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for d in depths:
            layers += [
                nn.Conv2d(c, d, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                _Residual(d),
                _Residual(d),
            ]
            c = d
        self.body = nn.Sequential(*layers, nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            n = self.body(torch.zeros(1, in_channels, *hw)).shape[1]
        self.fc = nn.Sequential(init_layer(nn.Linear(n, 256)), nn.ReLU())
        self.out_features = 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, out_features) of float images (N, C, H, W)."""
        return self.fc(self.body(x))


# -- run logs --------------------------------------------------------------------------------


class RunLog:
    """monitor.csv (one row per episode, SB3's format), progress.csv and TensorBoard."""

    def __init__(self, run_dir: str, resume: bool) -> None:
        os.makedirs(run_dir, exist_ok=True)
        self.start = time.time()
        monitor_path = os.path.join(run_dir, "monitor.csv")
        fresh = not (resume and os.path.exists(monitor_path))
        self.monitor = open(monitor_path, "w" if fresh else "a", newline="")
        self.monitor_csv = csv.writer(self.monitor)
        if fresh:
            self.monitor.write(f"#{json.dumps({'t_start': self.start, 'env_id': 'fastretro'})}\n")
            # SB3's Monitor columns, plus the run's frame count when the episode ended (SB3's
            # load_results keeps extra columns).
            self.monitor_csv.writerow(["r", "l", "t", "frames"])
        progress_path = os.path.join(run_dir, "progress.csv")
        fresh = not (resume and os.path.exists(progress_path))
        self.progress = open(progress_path, "w" if fresh else "a", newline="")
        self.progress_csv = None
        self._write_header = fresh
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(run_dir, "tb"))
        except ImportError:
            log.warning(
                "tensorboard is not installed: no TensorBoard scalars (pip install "
                "tensorboard); monitor.csv and progress.csv are written all the same"
            )
            self.tb = None

    def episode(self, reward: float, length: int, frames: int) -> None:
        """One finished episode: a monitor.csv row and two scalars."""
        self.monitor_csv.writerow(
            [round(reward, 6), length, round(time.time() - self.start, 6), frames]
        )
        if self.tb is not None:
            self.tb.add_scalar("episode/reward", reward, frames)
            self.tb.add_scalar("episode/length", length, frames)

    def update(self, row: dict) -> None:
        """One update's figures (``row["frames"]`` included): a progress.csv row and scalars."""
        if self.progress_csv is None:
            self.progress_csv = csv.DictWriter(self.progress, fieldnames=list(row))
            if self._write_header:
                self.progress_csv.writeheader()
        self.progress_csv.writerow(row)
        self.progress.flush()
        self.monitor.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "frames":
                    self.tb.add_scalar(k, v, row["frames"])

    def close(self) -> None:
        """Flush and close every file."""
        self.monitor.close()
        self.progress.close()
        if self.tb is not None:
            self.tb.close()
