"""SB3 PPO on fastretro vs on SB3's SubprocVecEnv: the rollout phase and the whole training run.

Same network (CnnPolicy), same hyper-parameters, 8 envs, the contest's frame timing (4 frames per
step, sticky 0.25, max-pool) and 84x84 gray frames stacked 4 deep. fastretro preprocesses in its
workers; the peer runs the same preprocessing as wrappers (OpenCV WarpFrame + FrameStack) inside
its subprocesses, as users do today. The rollout phase is SB3's ``collect_rollouts`` (env steps
plus the policy's forward pass), timed by a callback; the rest of ``learn`` is the updates.
``fastretro-chw`` is the same pool with ``channels_first=True`` (no ``VecTransposeImage``).
Each backend runs in a fresh process. Prints one JSON line per backend and a markdown table.

Run: ``python bench/bench_sb3_ppo.py [--timesteps 8192]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time

from fastretro import DEFAULT_GAME
from fastretro.tools.peers import CONFIGS, cores

PPO_KWARGS = {  # retro-baselines' PPO2 values, with shorter rollouts so the bench is quick
    "n_steps": 128,
    "batch_size": 128,
    "n_epochs": 3,
    "learning_rate": 2e-4,
    "clip_range": 0.1,
    "ent_coef": 0.01,
    "gamma": 0.99,
    "gae_lambda": 0.95,
}


def _env(backend: str, game: str, num_envs: int):
    """The backend's SB3 VecEnv, channels-first (what CnnPolicy takes)."""
    from stable_baselines3.common.vec_env import VecTransposeImage

    config = CONFIGS["contest"].replace(game=game)
    if backend.startswith("fastretro"):
        from fastretro import VecRetroEnv
        from fastretro.integrations.sb3 import SB3VecEnv

        chw = backend == "fastretro-chw"  # the pool writes (C, H, W): no transpose needed
        pool = VecRetroEnv(config, num_envs, autoreset_mode="same_step", channels_first=chw)
        return SB3VecEnv(pool) if chw else VecTransposeImage(SB3VecEnv(pool))
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from fastretro.tools.peers import EnvFn

    return VecTransposeImage(SubprocVecEnv([EnvFn(game, config, i) for i in range(num_envs)]))


def _run(backend: str, game: str, num_envs: int, timesteps: int, omp_env: dict, queue) -> None:
    # Must be set before torch loads its OpenMP runtime.
    os.environ.update(omp_env)
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    class RolloutTimer(BaseCallback):
        def __init__(self):
            super().__init__()
            self.seconds, self.steps, self._t = 0.0, 0, 0.0

        def _on_rollout_start(self):
            self._t = time.perf_counter()

        def _on_rollout_end(self):
            self.seconds += time.perf_counter() - self._t
            self.steps += self.model.n_steps * self.model.n_envs

        def _on_step(self):
            return True

    torch.manual_seed(0)
    env = _env(backend, game, num_envs)
    model = PPO("CnnPolicy", env, seed=0, verbose=0, device="cpu", **PPO_KWARGS)
    model.learn(PPO_KWARGS["n_steps"] * num_envs)  # warm-up: workers, numba, torch
    timer = RolloutTimer()
    start = time.perf_counter()
    model.learn(timesteps, callback=timer, reset_num_timesteps=True)
    total = time.perf_counter() - start
    env.close()
    queue.put(
        {
            "backend": backend,
            "rollout_steps_per_s": timer.steps / timer.seconds,
            "train_steps_per_s": timer.steps / total,
            "rollout_share": timer.seconds / total,
            "torch_threads": torch.get_num_threads(),
        }
    )


def measure(backend: str, game: str, num_envs: int, timesteps: int, omp_env: dict) -> dict:
    """One backend's figures, measured in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    args = (backend, game, num_envs, timesteps, omp_env, queue)
    proc = ctx.Process(target=_run, args=args)
    proc.start()
    result = queue.get(timeout=1800)
    proc.join()
    return result


def main() -> None:
    """Measure both backends; print JSON lines and a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=8192)
    parser.add_argument(
        "--omp-passive",
        action="store_true",
        help="OMP_WAIT_POLICY=PASSIVE for torch in both backends: its idle threads sleep instead "
        "of spinning on the cores the emulators need",
    )
    parser.add_argument(
        "--gomp-spincount",
        type=int,
        help="GOMP_SPINCOUNT for torch in both backends: its threads spin this long after each "
        "parallel region, then sleep (ppo2 uses 10000)",
    )
    args = parser.parse_args()
    omp_env = {"OMP_WAIT_POLICY": "PASSIVE"} if args.omp_passive else {}
    if args.gomp_spincount is not None:
        omp_env["GOMP_SPINCOUNT"] = str(args.gomp_spincount)
    rows = {}
    for backend in ("sb3-subproc", "fastretro", "fastretro-chw"):
        rows[backend] = measure(backend, args.game, args.num_envs, args.timesteps, omp_env)
        line = {"bench": "sb3_ppo", "num_envs": args.num_envs, "omp_env": omp_env}
        print(json.dumps({**line, **rows[backend]}))
    peer = rows["sb3-subproc"]
    print(
        f"\n{args.game}, contest config, {args.num_envs} envs, PPO CnnPolicy, "
        f"{args.timesteps} timesteps, {platform.machine()}, {cores()} cores, "
        f"torch threads {peer['torch_threads']}" + "".join(f", {k}={v}" for k, v in omp_env.items())
    )
    print("| backend | rollout env steps/s | training env steps/s | rollout share of time |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['rollout_steps_per_s']:,.0f} | {r['train_steps_per_s']:,.0f} "
            f"| {r['rollout_share']:.0%} |"
        )
    for name in ("fastretro", "fastretro-chw"):
        r = rows[name]
        print(
            f"| {name} / subproc | {r['rollout_steps_per_s'] / peer['rollout_steps_per_s']:.2f}x "
            f"| {r['train_steps_per_s'] / peer['train_steps_per_s']:.2f}x | |"
        )


if __name__ == "__main__":
    main()
