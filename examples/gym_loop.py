"""A plain gymnasium vector loop on the pool, with gymnasium's episode-statistics wrapper."""

import argparse
import time

import numpy as np
from gymnasium.wrappers.vector import RecordEpisodeStatistics

from fastretro import DEFAULT_GAME, VecRetroEnv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=500, help="agent steps per env")
    parser.add_argument("--max-episode-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with VecRetroEnv(
        args.game,
        args.num_envs,
        frameskip=4,
        sticky_prob=0.25,
        max_episode_steps=args.max_episode_steps,
    ) as pool:
        # gymnasium's wrappers go around the pool as around any VectorEnv; this one adds
        # infos["episode"] = {"r", "l", "t"} (with an "_episode" mask) when an episode ends.
        env = RecordEpisodeStatistics(pool)
        env.action_space.seed(args.seed)
        obs, infos = env.reset(seed=args.seed)
        # obs is a read-only view of shared memory that the next step overwrites: a real agent
        # copies what it keeps (assigning it into a rollout buffer does).
        first_frame = obs[0].copy()
        start = time.perf_counter()
        for _ in range(args.steps):
            obs, rewards, terminated, truncated, infos = env.step(env.action_space.sample())
            if "episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    print(
                        f"env {i}: episode over after {infos['episode']['l'][i]} steps, "
                        f"return {infos['episode']['r'][i]:.0f}"
                    )
        elapsed = time.perf_counter() - start
        scores = infos["score"].tolist() if "score" in infos else []
        moved = not np.array_equal(first_frame, obs[0])
    frames = args.steps * args.num_envs * 4
    print(
        f"{frames / elapsed:,.0f} frames/s; {env.episode_count} episodes ended; "
        f"scores now {scores}; screen changed: {moved}"
    )


if __name__ == "__main__":
    main()
