"""The backends ``fastretro bench`` measures, each run inside its own fresh subprocess.

Every function here is the body of one measurement: it builds its env, warms up, steps with
random actions for a fixed wall time and returns agent steps per second. The peers are set up the
way users set them up today: plain stable-retro envs, the Retro Contest's frame-skip wrapper, in
gymnasium's ``AsyncVectorEnv(shared_memory=True)`` or SB3's ``SubprocVecEnv``.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections import deque

import gymnasium
import numpy as np

from fastretro.config import EnvConfig

#: Whether the peers preprocess with OpenCV, as baselines did (else with fastretro's kernels).
OPENCV = importlib.util.find_spec("cv2") is not None


def _configs() -> dict[str, EnvConfig]:
    atari = EnvConfig.atari("Pong")  # the game is the bench's: replaced per run
    return {
        "rgb-fs1": EnvConfig(),
        "rgb-fs4-sticky": EnvConfig(frameskip=4, sticky_prob=0.25),
        # The Retro Contest's frame timing with the baselines' observation: 84x84 gray,
        # max-pooled over the step's last two frames, stacked 4 deep (every game's own
        # scenario and no episode cap, as the peers' wrappers have neither).
        "contest": EnvConfig.contest(
            scenario=None,
            max_episode_steps=None,
            max_pool=True,
            grayscale=True,
            resize=(84, 84),
            frame_stack=4,
        ),
        # World Models' pool: 64x64 RGB frames at the contest's timing.
        "world-models": EnvConfig(frameskip=4, sticky_prob=0.25, resize=(64, 64)),
        # Atari 2600: Machado et al. (2018)'s protocol (the preset), EnvPool's v5 defaults
        # (no-op starts, FIRE, the minimal action set, no sticky actions), and raw RGB frames.
        "atari": atari,
        "atari-envpool-v5": EnvConfig.envpool_atari("Pong"),
        "atari-rgb-fs1": atari.replace(
            frameskip=1,
            sticky_prob=0.0,
            max_pool=False,
            grayscale=False,
            resize=None,
            frame_stack=1,
            channels_first=False,
        ),
    }


#: The configurations a game's family is benched in by default, and its backends.
FAMILIES = {
    "retro": (
        ("rgb-fs1", "rgb-fs4-sticky", "contest"),
        (
            "limit",
            "inprocess",
            "inprocess-drawn",
            "lean",
            "lean-drawn",
            "single",
            "gymnasium",
            "sb3",
            "fastretro-drawn",
            "fastretro",
        ),
    ),
    "atari": (
        ("atari", "atari-envpool-v5", "atari-rgb-fs1"),
        ("limit", "limit-ale", "inprocess", "envpool", "ale-vector", "fastretro"),
    ),
}


def family(game: str) -> str:
    """``"atari"`` for Atari 2600 games, else ``"retro"``."""
    return "atari" if game.endswith("-Atari2600-v0") else "retro"


#: The bench's configurations: one EnvConfig each, applied identically to every backend.
CONFIGS = _configs()


class StochasticFrameSkip(gymnasium.Wrapper):
    """The Retro Contest's sticky frame skip (retro_contest / retro-baselines), for the peers."""

    def __init__(self, env, n: int, stickprob: float, max_pool: bool = False, seed: int = 0):
        super().__init__(env)
        self.n, self.stickprob, self.max_pool = n, stickprob, max_pool
        self.curac = None
        self.rng = np.random.default_rng(seed)

    def reset(self, **kwargs):
        """Reset, forgetting the previous action."""
        self.curac = None
        return self.env.reset(**kwargs)

    def step(self, ac):
        """Run ``n`` frames with the sticky first frame; sum rewards, stop at the end."""
        done, truncated, total, info = False, False, 0.0, {}
        frames = []
        for i in range(self.n):
            if self.curac is None:
                self.curac = ac
            elif i == 0:
                if self.rng.random() > self.stickprob:
                    self.curac = ac
            elif i == 1:
                self.curac = ac
            ob, rew, done, truncated, info = self.env.step(self.curac)
            total += rew
            if self.max_pool:
                frames = [*frames[-1:], ob]
            if done or truncated:
                break
        if self.max_pool and len(frames) == 2:
            ob = np.maximum(frames[0], frames[1])
        return ob, total, done, truncated, info


class WarpFrame(gymnasium.ObservationWrapper):
    """baselines' WarpFrame: gray and area-resize each observation, as users write it.

    With OpenCV (``cv2.cvtColor`` + ``cv2.resize(INTER_AREA)``, what baselines used); without
    it, with fastretro's kernels called from the wrapper (``fastretro bench`` says which ran).
    """

    def __init__(self, env, grayscale: bool, size: tuple[int, int] | None) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.grayscale, self.size = grayscale, size
        if size is not None:
            h, w = size
        c = 1 if grayscale else c
        self.observation_space = gymnasium.spaces.Box(0, 255, (h, w, c), np.uint8)
        self._writer = None
        if not OPENCV:
            from fastretro.runtime.preprocess import FrameWriter, Preprocessing

            screen = env.observation_space.shape
            prep = Preprocessing(grayscale=grayscale, resize=size)
            out = np.empty(self.observation_space.shape, np.uint8)
            self._writer = FrameWriter(prep, screen, (0, 0, *screen[:2]), None, out, None)

    def observation(self, obs):
        """The preprocessed frame (a new array)."""
        if self._writer is not None:
            out = np.empty(self.observation_space.shape, np.uint8)
            self._writer.write_frame(np.ascontiguousarray(obs), None, out)
            return out
        import cv2

        if self.grayscale:
            obs = cv2.cvtColor(obs, cv2.COLOR_RGB2GRAY)
        if self.size is not None:
            obs = cv2.resize(obs, self.size[::-1], interpolation=cv2.INTER_AREA)
        return obs.reshape(self.observation_space.shape)


class FrameStack(gymnasium.Wrapper):
    """baselines' FrameStack: the last ``k`` observations concatenated on the channel axis."""

    def __init__(self, env, k: int) -> None:
        super().__init__(env)
        self.frames: deque = deque(maxlen=k)
        h, w, c = env.observation_space.shape
        self.observation_space = gymnasium.spaces.Box(0, 255, (h, w, c * k), np.uint8)

    def reset(self, **kwargs):
        """Reset and fill the stack with the first observation."""
        obs, info = self.env.reset(**kwargs)
        for _ in range(self.frames.maxlen):
            self.frames.append(obs)
        return np.concatenate(self.frames, axis=-1), info

    def step(self, action):
        """Step and push the new observation."""
        obs, rew, term, trunc, info = self.env.step(action)
        self.frames.append(obs)
        return np.concatenate(self.frames, axis=-1), rew, term, trunc, info


def make_plain_env(game: str, config: EnvConfig, seed: int = 0):
    """A plain stable-retro env with the config's frame timing (picklable, module level)."""
    import stable_retro

    env = stable_retro.make(game, render_mode=None)
    if config.frameskip > 1 or config.sticky_prob > 0:
        env = StochasticFrameSkip(env, config.frameskip, config.sticky_prob, config.max_pool, seed)
    if config.grayscale or config.resize is not None:
        env = WarpFrame(env, config.grayscale, config.resize)
    if config.frame_stack > 1:
        env = FrameStack(env, config.frame_stack)
    return env


class EnvFn:
    """Picklable env factory for the vector-env peers."""

    def __init__(self, game: str, config: EnvConfig, seed: int) -> None:
        self.game, self.config, self.seed = game, config, seed

    def __call__(self):
        """A new env."""
        return make_plain_env(self.game, self.config, self.seed)


def _timed_loop(step, actions: np.ndarray, seconds: float, warmup: float) -> float:
    """Step for ``warmup`` then ``seconds`` of wall time; return agent steps per second."""
    k, end = 0, time.perf_counter() + warmup
    while time.perf_counter() < end:
        step(actions[k % len(actions)])
        k += 1
    steps, start = 0, time.perf_counter()
    end = start + seconds
    while True:
        step(actions[k % len(actions)])
        k += 1
        steps += 1
        now = time.perf_counter()
        if now >= end:
            return steps / (now - start)


def random_actions(num_envs: int | None, seed: int = 0, choices: int | None = None) -> np.ndarray:
    """Random buttons (0/1 for 12 buttons), or indices among ``choices`` (int64)."""
    rng = np.random.default_rng(seed)
    if choices is not None:
        return rng.integers(0, choices, (1024,) if num_envs is None else (256, num_envs))
    shape = (1024, 12) if num_envs is None else (256, num_envs, 12)
    return rng.integers(0, 2, shape, dtype=np.uint8)


def action_choices(config: EnvConfig, game: str | None = None) -> int | None:
    """How many actions ALE's action sets give (the Atari configs; the peers take the same).

    18 for the full set, the game's own count for the minimal set; None for button rows.
    """
    if config.actions == "ale_full":
        return 18
    if config.actions == "ale_minimal":
        from fastretro.runtime.backends.ale import minimal_actions

        return len(minimal_actions(game or config.game))
    return None


def measure_limit(game: str, config: EnvConfig, num_envs: int, seconds: float, warmup: float):
    """Frames/s of one process calling only the bare core (``em.step``), no input, no RAM."""
    import stable_retro

    env = stable_retro.make(game, render_mode=None)
    env.reset()
    em = env.em
    try:
        return _timed_loop(lambda _: em.step(), random_actions(None), seconds, warmup)
    finally:
        env.close()


def measure_inprocess(game, config, num_envs, seconds, warmup, skip_work=True):
    """Agent steps/s of one env's worker work in one process: no pool, no handshake.

    The same configuration and shortcuts as a fastretro worker (fastretro/runtime/inprocess.py);
    its rate times the cores it could use is L_same, the limit of a pool doing that work.
    """
    from fastretro.runtime.inprocess import InProcessEnv

    config = config.replace(game=game, skip_rendering=skip_work, skip_audio=skip_work)
    env = InProcessEnv(config)
    env.reset()
    width = env.action_width
    choices = action_choices(config, game)

    def step(a):
        _, term, trunc = env.step(a if choices else a[:width])
        if term or trunc:
            env.reset()

    try:
        return _timed_loop(step, random_actions(None, choices=choices), seconds, warmup)
    finally:
        env.close()


def pressed_buttons(config: EnvConfig, game: str, data, buttons) -> list[np.ndarray]:
    """The buttons a pool of ``config`` holds for the bench's random actions, as 0/1 rows.

    Looked up in the pool's own action table (fastretro/runtime/actions.py), so that a
    reference loop over stable-retro's API plays the game the pool plays; ``data`` is the
    game's stable-retro ``GameData``, ``buttons`` the console's button names.
    """
    from fastretro.runtime.actions import build_table, choose

    table = build_table(choose(config.actions, buttons, game), data, buttons)
    rows = random_actions(None, choices=action_choices(config, game))
    if rows.ndim == 2:  # one 0/1 per button: the table is indexed by the pressed mask
        rows = rows[:, : len(buttons)] @ (1 << np.arange(len(buttons)))
    return [((int(m) >> np.arange(len(buttons))) & 1).astype(np.uint8) for m in table.masks[rows]]


def measure_lean(game, config, num_envs, seconds, warmup, skip_work=True):
    """Agent steps/s of the core's own work alone: the lean reference of a pool's efficiency.

    A minimal loop over stable-retro's API, as a worker's work would be with nothing of fastretro
    around it (:func:`lean_loop`). Whatever the worker does beyond the core counts against the
    pool.
    """
    step, buttons, close = lean_loop(game, config, skip_work)
    try:
        return _timed_loop(step, buttons, seconds, warmup)
    finally:
        close()


def lean_loop(game: str, config: EnvConfig, skip_work: bool = True):
    """The lean reference's step, the buttons it holds, and its ``close``.

    It plays the game the pool plays:

    - it holds the buttons the pool would hold (:func:`pressed_buttons`, looked up before the
      clock starts: where the pool's actions are "filtered", random buttons through
      stable-retro's ``filter_action``, as RetroEnv's default action set presses them; raw ones
      press START and MODE, which the pool never does);
    - it starts the game again where the pool's episode ends: the scenario's end, tested on the
      RAM variables it reads (the worker's own test of a declarative scenario, under a
      microsecond; stable-retro's ``is_done`` needs ``update_ram``, a fifth of a frame, which
      a worker does not run), or the config's step cap. Played on past its end, Airstriker
      runs frames 4-6% cheaper than in play (bench/scale.md's lean grid), which read E_lean
      low.

    A step runs the step's frames, reads the picture of each frame an observation uses (the
    last; the last two with max-pooling) and the RAM variables (``lookup_all``). No
    preprocessing or sticky draws. With ``skip_work`` the frames nobody looks at run undrawn and
    the FM chip silent, as a worker's do (fastretro/runtime/headless.py), so that the pool and
    its reference run the same core work. The step returns whether the episode ended.
    """
    import stable_retro

    from fastretro.runtime._ext import worker_loop
    from fastretro.runtime.games import resolve_all
    from fastretro.runtime.headless import (
        AUDIO_SCRATCH_VALUES,
        find_headless_frame,
        find_silent_fm,
    )

    (setup,) = resolve_all(config.replace(game=game), 1)
    env = stable_retro.make(
        game,
        state=setup.state or stable_retro.State.DEFAULT,
        scenario=setup.scenario,
        render_mode=None,
    )
    env.reset()
    em, data = env.em, env.data
    start = em.get_state()
    plan = setup.scenario_plan
    scenario = worker_loop.VariableScenario(plan) if plan is not None else None
    headless = find_headless_frame() if skip_work else None
    undrawn = worker_loop.UndrawnFrame(headless, AUDIO_SCRATCH_VALUES) if headless else em.step
    silent_fm = find_silent_fm() if skip_work else None
    if silent_fm is not None:
        worker_loop.install_silent_fm(silent_fm)
    frames = config.frameskip
    drawn = 2 if config.max_pool else 1 if config.observe else 0
    cap = config.max_episode_steps or 0
    episode_steps = 0

    def ended() -> bool:
        if scenario is not None:
            return scenario.evaluate(data.lookup_all())[1]
        data.update_ram()  # a scripted scenario: stable-retro evaluates it
        return data.is_done()

    def step(buttons) -> bool:
        nonlocal episode_steps
        em.set_button_mask(buttons, 0)
        for f in range(frames):
            if f >= frames - drawn:
                em.step()
                em.get_screen()
            else:
                undrawn()
        episode_steps += 1
        if ended() or episode_steps == cap:
            em.set_state(start)
            episode_steps = 0
            if scenario is not None:
                scenario.start(data.lookup_all())
            return True
        return False

    try:
        buttons = pressed_buttons(config, game, data, env.buttons)
    except BaseException:
        env.close()
        raise
    return step, buttons, env.close


def measure_lean_drawn(game, config, num_envs, seconds, warmup):
    """The same, every frame drawn and its sound synthesized: the reference of fastretro-drawn."""
    return measure_lean(game, config, num_envs, seconds, warmup, skip_work=False)


def measure_inprocess_drawn(game, config, num_envs, seconds, warmup):
    """The same for ``fastretro-drawn``: every frame drawn, the FM chip's sound synthesized."""
    return measure_inprocess(game, config, num_envs, seconds, warmup, skip_work=False)


def measure_single(game: str, config: EnvConfig, num_envs: int, seconds: float, warmup: float):
    """Agent steps/s of one plain env in a plain loop."""
    env = make_plain_env(game, config)
    env.reset(seed=0)

    def step(a):
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()

    try:
        return _timed_loop(step, random_actions(None), seconds, warmup)
    finally:
        env.close()


def _vector_rate(env, num_envs, seconds, warmup, choices=None, seeded=True) -> float:
    """Agent steps/s of a vector env (all envs) under random actions; closes it.

    ``seeded``: its ``reset`` takes ``seed`` (SB3's and EnvPool's do not).
    """
    try:
        env.reset(seed=0) if seeded else env.reset()
        actions = random_actions(num_envs, choices=choices)
        return num_envs * _timed_loop(env.step, actions, seconds, warmup)
    finally:
        env.close()


def measure_gymnasium(game, config, num_envs, seconds, warmup):
    """Agent steps/s (all envs) of gymnasium's AsyncVectorEnv with shared memory."""
    fns = [EnvFn(game, config, i) for i in range(num_envs)]
    env = gymnasium.vector.AsyncVectorEnv(fns, shared_memory=True)
    return _vector_rate(env, num_envs, seconds, warmup)


def measure_sb3(game, config, num_envs, seconds, warmup):
    """Agent steps/s (all envs) of Stable-Baselines3's SubprocVecEnv."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    env = SubprocVecEnv([EnvFn(game, config, i) for i in range(num_envs)])
    env.seed(0)
    return _vector_rate(env, num_envs, seconds, warmup, seeded=False)


def measure_fastretro(game, config, num_envs, seconds, warmup, skip_work=True):
    """Agent steps/s (all envs) of fastretro's VecRetroEnv."""
    from fastretro.runtime.pool import VecRetroEnv

    config = config.replace(game=game, skip_rendering=skip_work, skip_audio=skip_work)
    return _vector_rate(
        VecRetroEnv(config, num_envs), num_envs, seconds, warmup, action_choices(config, game)
    )


def measure_fastretro_drawn(game, config, num_envs, seconds, warmup):
    """The same, doing all of the core's work, as L's loop and the peers do.

    Every frame drawn and its sound synthesized: ``skip_rendering=False, skip_audio=False``.
    """
    return measure_fastretro(game, config, num_envs, seconds, warmup, skip_work=False)


def measure_fastretro_libretro(game, config, num_envs, seconds, warmup):
    """The same on the libretro backend: several Genesis emulators per worker process."""
    return measure_fastretro(game, config.replace(backend="libretro"), num_envs, seconds, warmup)


def measure_limit_ale(game: str, config: EnvConfig, num_envs: int, seconds: float, warmup: float):
    """Frames/s of one process calling only ALE's emulator (``act``, one frame each)."""
    from fastretro.runtime.backends.ale import AleEmulator

    ale = AleEmulator(game)._ale
    ale.reset_game()
    actions = [int(a) for a in random_actions(None, choices=18)]

    def step(a):
        ale.act(a)
        if ale.game_over(with_truncation=False):
            ale.reset_game()

    return _timed_loop(step, actions, seconds, warmup)


def _ale_rom(game: str) -> str:
    from fastretro.runtime.backends.ale import ale_rom

    return ale_rom(game)


def measure_envpool(game, config, num_envs, seconds, warmup):
    """Agent steps/s (all envs) of EnvPool's Atari env (C++ threads in one process).

    The same protocol through EnvPool's own options: frame skip with the max of the last two
    frames, sticky actions, gray, resize, stack, the action set, no-op starts, FIRE, the end on
    a lost life and the reward's sign as the config has them. EnvPool runs at least one no-op
    frame at each reset. ``pip install "fastretro[peers]"``.
    """
    import envpool

    task = "".join(w.capitalize() for w in _ale_rom(game).split("_")) + "-v5"
    h, w = config.resize or (210, 160)
    env = envpool.make(
        task,
        env_type="gymnasium",
        num_envs=num_envs,
        batch_size=num_envs,
        num_threads=cores(),
        frame_skip=config.frameskip,
        repeat_action_probability=config.sticky_prob,
        img_height=h,
        img_width=w,
        stack_num=config.frame_stack,
        gray_scale=config.grayscale,
        full_action_space=config.actions == "ale_full",
        noop_max=max(config.noop_max, 1),
        episodic_life=config.episodic_life,
        reward_clip=config.sign_reward,
        use_fire_reset=config.fire_reset,
        max_episode_steps=config.max_episode_steps or 27_000,
    )
    choices = action_choices(config, game)
    return _vector_rate(env, num_envs, seconds, warmup, choices=choices, seeded=False)


def measure_ale_vector(game, config, num_envs, seconds, warmup):
    """Agent steps/s (all envs) of ALE's own ``AtariVectorEnv`` (C++ threads in one process)."""
    from ale_py.vector_env import AtariVectorEnv

    h, w = config.resize or (210, 160)
    env = AtariVectorEnv(
        _ale_rom(game),
        num_envs,
        num_threads=cores(),
        frameskip=config.frameskip,
        repeat_action_probability=config.sticky_prob,
        img_height=h,
        img_width=w,
        stack_num=config.frame_stack,
        grayscale=config.grayscale,
        maxpool=config.max_pool,
        full_action_space=config.actions == "ale_full",
        noop_max=config.noop_max,
        episodic_life=config.episodic_life,
        reward_clipping=config.sign_reward,
        use_fire_reset=config.fire_reset,
        max_num_frames_per_episode=(config.max_episode_steps or 27_000) * config.frameskip,
    )
    return _vector_rate(env, num_envs, seconds, warmup, choices=action_choices(config, game))


#: name -> (measure function, whether the figure depends on num_envs)
BACKENDS = {
    "limit": (measure_limit, False),
    "limit-ale": (measure_limit_ale, False),
    "inprocess": (measure_inprocess, False),
    "inprocess-drawn": (measure_inprocess_drawn, False),
    "lean": (measure_lean, False),
    "lean-drawn": (measure_lean_drawn, False),
    "single": (measure_single, False),
    "gymnasium": (measure_gymnasium, True),
    "sb3": (measure_sb3, True),
    "fastretro-drawn": (measure_fastretro_drawn, True),
    "envpool": (measure_envpool, True),
    "ale-vector": (measure_ale_vector, True),
    "fastretro": (measure_fastretro, True),
    "fastretro-libretro": (measure_fastretro_libretro, True),
}


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
