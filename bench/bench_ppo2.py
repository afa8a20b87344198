"""fastretro's PPO2 client: learning on Airstriker, and speed against SB3 PPO on SubprocVecEnv.

``speed``: the same env (Airstriker, 4 frames per step, sticky 0.25, max-pool, 84x84 gray
stacked 4, the 10-action set, 4500-step episodes), the same network (Nature CNN, shared body)
and the same hyper-parameters (8 envs, 128-step rollouts, 8 minibatches, 3 epochs) in both.
SB3's PPO("CnnPolicy") runs on SubprocVecEnv over plain stable-retro envs with the
preprocessing as wrappers in its subprocesses (what users run today); fastretro's ppo2.py
runs on the pool. The rollout phase is env steps plus inference; the first update of each is
a warm-up and is not counted. Each side runs in a fresh process; ppo2's profiler breakdown of
the same run is printed too.

``learn``: a uniformly random agent over the same 10 actions, then PPO2 for 1M emulator
frames, on the same env; mean episode rewards, a learning-curve PNG.

Run: ``python bench/bench_ppo2.py speed`` and ``python bench/bench_ppo2.py learn``
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import platform
import time

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.tools.peers import cores

HYPER = dict(
    n_steps=128,
    n_minibatches=8,
    n_epochs=3,
    learning_rate=2e-4,
    clip_range=0.1,
    ent_coef=0.01,
    gamma=0.99,
    gae_lambda=0.95,
)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def _combos(game: str) -> list:
    from fastretro.agents.ppo2 import AUTO_ACTIONS

    return AUTO_ACTIONS[game]


def _peer_env(game: str, seed: int):
    """Plain stable-retro + the contest's frame timing + WarpFrame/FrameStack + a discretizer."""
    import gymnasium

    from fastretro.tools.peers import CONFIGS, make_plain_env

    class Discretizer(gymnasium.ActionWrapper):
        """retro-baselines' SonicDiscretizer, for any list of combos."""

        def __init__(self, env, combos):
            super().__init__(env)
            buttons = env.unwrapped.buttons
            self._table = np.zeros((len(combos), len(buttons)), np.int8)
            for i, combo in enumerate(combos):
                for b in filter(None, combo.split("+")):
                    self._table[i, buttons.index(b)] = 1
            self.action_space = gymnasium.spaces.Discrete(len(combos))

        def action(self, a):
            return self._table[int(a)].copy()

    env = make_plain_env(game, CONFIGS["contest"], seed)
    env = gymnasium.wrappers.TimeLimit(Discretizer(env, _combos(game)), 4500)
    return env


class _PeerFn:
    def __init__(self, game, seed):
        self.game, self.seed = game, seed

    def __call__(self):
        return _peer_env(self.game, self.seed)


def _sb3(game: str, num_envs: int, updates: int, queue) -> None:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecTransposeImage

    class RolloutTimer(BaseCallback):
        def __init__(self):
            super().__init__()
            self.rollouts: list[float] = []
            self.starts: list[float] = []

        def _on_rollout_start(self):
            self.starts.append(time.perf_counter())

        def _on_rollout_end(self):
            self.rollouts.append(time.perf_counter() - self.starts[-1])

        def _on_step(self):
            return True

    torch.manual_seed(0)
    env = VecTransposeImage(SubprocVecEnv([_PeerFn(game, i) for i in range(num_envs)]))
    batch = HYPER["n_steps"] * num_envs
    model = PPO(
        "CnnPolicy",
        env,
        seed=0,
        verbose=0,
        device="cpu",
        n_steps=HYPER["n_steps"],
        batch_size=batch // HYPER["n_minibatches"],
        n_epochs=HYPER["n_epochs"],
        learning_rate=HYPER["learning_rate"],
        clip_range=HYPER["clip_range"],
        ent_coef=HYPER["ent_coef"],
        gamma=HYPER["gamma"],
        gae_lambda=HYPER["gae_lambda"],
    )
    timer = RolloutTimer()
    model.learn(batch * (updates + 1), callback=timer)
    end = time.perf_counter()
    env.close()
    # The first rollout and its update are the warm-up: the clock starts with rollout 2.
    rollout = sum(timer.rollouts[1:])
    measured = end - timer.starts[1]
    queue.put(
        {
            "backend": "sb3-ppo-subproc",
            "rollout_steps_per_s": batch * updates / rollout,
            "train_steps_per_s": batch * updates / measured,
            "rollout_share": rollout / measured,
            "torch_threads": torch.get_num_threads(),
        }
    )


def _ppo2(game: str, num_envs: int, updates: int, overlap: bool, queue) -> None:
    # ppo2 before torch: it sets torch's OpenMP spin policy, which is read when torch loads.
    from fastretro.agents.ppo2 import PPO2Config, train
    from fastretro.tools.profiler import analyse, run_agent

    run_dir = os.path.join(OUT, f"ppo2-speed{'-overlap' if overlap else ''}")
    frames = HYPER["n_steps"] * num_envs * 4 * (updates + 1)
    cfg = PPO2Config(game=game, num_envs=num_envs, total_frames=frames, overlap=overlap, **HYPER)
    train(cfg, run_dir, progress=False)
    with open(os.path.join(run_dir, "progress.csv")) as f:
        rows = list(csv.DictReader(f))[1:]  # the first update is the warm-up
    rollout = sum(float(r["time/update_rollout_s"]) for r in rows)
    learn = sum(float(r["time/update_learn_s"]) for r in rows)
    steps = HYPER["n_steps"] * num_envs * len(rows)
    # The profiler's view of a run with the same settings (its own, shorter run).
    stats, watch, wall = run_agent(
        "ppo",
        game,
        None,
        num_envs,
        45.0,
        {**HYPER, "overlap": overlap, "run_dir": run_dir + "-profile"},
    )
    report = analyse("ppo", game, stats, watch, wall)
    import torch  # loaded by ppo2 by now

    queue.put(
        {
            "backend": "fastretro-ppo2" + ("-overlap" if overlap else ""),
            "rollout_steps_per_s": steps / rollout,
            "train_steps_per_s": steps / (rollout + learn),
            "rollout_share": rollout / (rollout + learn),
            "torch_threads": torch.get_num_threads(),
            "profile": report.table(),
        }
    )


def _in_fresh_process(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get(timeout=3600)
    proc.join()
    return result


def speed(args) -> None:
    rows = [
        _in_fresh_process(_sb3, args.game, args.num_envs, args.updates),
        _in_fresh_process(_ppo2, args.game, args.num_envs, args.updates, False),
        _in_fresh_process(_ppo2, args.game, args.num_envs, args.updates, True),
    ]
    for r in rows:
        print(json.dumps({"bench": "ppo2_speed", **{k: v for k, v in r.items() if k != "profile"}}))
    peer = rows[0]
    print(
        f"\n{args.game}, {args.num_envs} envs, Nature CNN, {HYPER['n_steps']}-step rollouts, "
        f"{args.updates} measured updates, {platform.machine()}, {cores()} cores"
    )
    print("| client | rollout env steps/s | training env steps/s | rollout share | torch threads |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['rollout_steps_per_s']:,.0f} | {r['train_steps_per_s']:,.0f} "
            f"| {r['rollout_share']:.0%} | {r['torch_threads']} |"
        )
    for r in rows[1:]:
        roll = r["rollout_steps_per_s"] / peer["rollout_steps_per_s"]
        train = r["train_steps_per_s"] / peer["train_steps_per_s"]
        print(f"| {r['backend']} / SB3 | {roll:.2f}x | {train:.2f}x | | |")
    for r in rows[1:]:
        print(f"\n{r['profile']}")


def learn(args) -> None:
    from fastretro.agents.ppo2 import PPO2Config, make_pool, train
    from fastretro.tools.plot import learning_curve

    cfg = PPO2Config(
        game=args.game,
        num_envs=args.num_envs,
        total_frames=args.frames,
        n_steps=128,
        n_minibatches=4,
        n_epochs=args.epochs,
        learning_rate=args.lr,
        anneal_lr=not args.constant_lr,
        overlap=args.overlap,
        seed=args.seed,
    )
    # The random agent: uniform over the same actions, same env, until enough episodes end.
    pool = make_pool(cfg)
    rng = np.random.default_rng(args.seed)
    pool.reset(seed=args.seed)
    ep = np.zeros(cfg.num_envs)
    random_rewards: list[float] = []
    random_frames = 0
    while len(random_rewards) < args.random_episodes:
        _, r, term, trunc, _ = pool.step(rng.integers(0, pool.single_action_space.n, cfg.num_envs))
        random_frames += cfg.num_envs * cfg.frameskip
        ep += r
        for i in np.flatnonzero(term | trunc):
            random_rewards.append(float(ep[i]))
            ep[i] = 0.0
    pool.close()
    rand_mean = float(np.mean(random_rewards))
    print(
        json.dumps(
            {
                "bench": "ppo2_learn_random",
                "episodes": len(random_rewards),
                "frames": random_frames,
                "mean": rand_mean,
                "std": float(np.std(random_rewards)),
            }
        )
    )

    run_dir = os.path.join(OUT, args.run_name)
    summary = train(cfg, run_dir, progress=not args.quiet)
    with open(os.path.join(run_dir, "monitor.csv")) as f:
        f.readline()
        rows = list(csv.DictReader(f))
    rewards = np.array([float(r["r"]) for r in rows])
    frames = np.array([int(r["frames"]) for r in rows])
    last = rewards[frames >= 0.9 * args.frames]
    png = learning_curve(
        run_dir, os.path.join(OUT, f"{args.run_name}.png"), window=20, baseline=rand_mean
    )
    result = {
        "bench": "ppo2_learn",
        "frames": summary["frames"],
        "seconds": summary["seconds"],
        "frames_per_s": summary["frames_per_s"],
        "episodes": summary["episodes"],
        "mean_last100": summary["reward_mean100"],
        "mean_last10pct_frames": float(last.mean()) if len(last) else None,
        "episodes_last10pct": int(len(last)),
        "random_mean": rand_mean,
        "ratio_last100": summary["reward_mean100"] / rand_mean if rand_mean else None,
        "png": png,
        "config": {
            k: getattr(cfg, k)
            for k in (
                "num_envs",
                "n_steps",
                "n_minibatches",
                "n_epochs",
                "learning_rate",
                "anneal_lr",
                "overlap",
                "seed",
            )
        },
    }
    print(json.dumps(result))
    print(
        f"\n{args.game}, {args.num_envs} envs, {platform.machine()}, {cores()} cores: random "
        f"{rand_mean:.1f} over {len(random_rewards)} episodes; PPO2 after "
        f"{summary['frames']:,} frames: mean of the last 100 episodes "
        f"{summary['reward_mean100']:.1f} ({result['ratio_last100']:.2f}x random)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["speed", "learn"])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--updates", type=int, default=8, help="speed: measured updates")
    parser.add_argument("--frames", type=int, default=1_000_000, help="learn: PPO2's budget")
    parser.add_argument("--random-episodes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2.5e-4, help="learn: learning rate")
    # learn's defaults are the run in bench/agents.md (the first run, 3 epochs and an annealed
    # lr, reached 1.77x random): --anneal-lr --epochs 3 --no-overlap give it back.
    parser.add_argument("--epochs", type=int, default=4, help="learn: epochs per rollout")
    parser.add_argument(
        "--anneal-lr",
        dest="constant_lr",
        action="store_false",
        help="learn: anneal the lr to 0 (default: constant)",
    )
    parser.add_argument(
        "--overlap",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="learn: the overlap mode",
    )
    parser.add_argument("--run-name", default="ppo2-learn", help="learn: bench/out/ folder")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    speed(args) if args.what == "speed" else learn(args)


if __name__ == "__main__":
    main()
