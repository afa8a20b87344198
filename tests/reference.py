"""Plain stable-retro rollouts, run in a fresh process (never an emulator in the test process).

This is the yardstick VecRetroEnv must match bit for bit: stable-retro's own ``RetroEnv.step``
per frame, with the Retro Contest's StochasticFrameSkip logic for sticky frames.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def _rollout(game, actions, frameskip, sticky_prob, seed, max_pool, scenario, state, restricted):
    import stable_retro

    kwargs = {"render_mode": None}
    if restricted is not None:
        kwargs["use_restricted_actions"] = getattr(stable_retro.Actions, restricted.upper())
    if scenario is not None:
        kwargs["scenario"] = scenario
    if state is not None:
        kwargs["state"] = state
    env = stable_retro.make(game, **kwargs)
    obs, _ = env.reset()
    rng = np.random.default_rng(seed)
    observations, rewards, dones = [obs.copy()], [], []
    curac = None
    for ac in actions:
        total, done, frames = 0.0, False, []
        for i in range(frameskip):
            # The contest's StochasticFrameSkip, verbatim in logic.
            if curac is None:
                curac = ac
            elif i == 0:
                if not (sticky_prob > 0 and not rng.random() > sticky_prob):
                    curac = ac
            elif i == 1:
                curac = ac
            obs, rew, done, _, _ = env.step(curac)
            frames.append(obs)
            total += rew
            if done:
                break
        if max_pool and len(frames) >= 2:
            obs = np.maximum(frames[-1], frames[-2])
        observations.append(obs.copy())
        rewards.append(total)
        dones.append(done)
        if done:
            break
    env.close()
    return np.array(observations), np.array(rewards), np.array(dones)


def plain_rollout(
    game,
    actions,
    frameskip=1,
    sticky_prob=0.0,
    seed=0,
    max_pool=False,
    scenario=None,
    state=None,
    restricted=None,
):
    """Observations (first is the reset's), rewards and dones of one plain stable-retro env.

    ``restricted`` names stable-retro's action mode (``"discrete"``, ``"multi_discrete"``);
    ``None`` is its default, FILTERED.
    """
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(
            _rollout,
            game,
            actions,
            frameskip,
            sticky_prob,
            seed,
            max_pool,
            scenario,
            state,
            restricted,
        ).result(timeout=300)
