"""SB3VecEnv: stable-baselines3's VecEnv interface on the pool, its wrappers, and PPO on it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from conftest import GAME
from gymnasium.vector.utils import batch_space

pytest.importorskip(
    "stable_baselines3",
    reason="the SB3 adapter needs stable-baselines3 and torch: pip install -e '.[sb3,test]'",
)

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.vec_env import (  # noqa: E402
    VecEnv,
    VecFrameStack,
    VecMonitor,
    VecNormalize,
    VecTransposeImage,
)
from stable_baselines3.common.vec_env.base_vec_env import tile_images  # noqa: E402

from fastretro import VecRetroEnv  # noqa: E402
from fastretro.contest.render import tile_frames, to_rgb  # noqa: E402
from fastretro.errors import (  # noqa: E402
    ActionError,
    ClosedError,
    InvalidArgumentError,
    StateMachineError,
)
from fastretro.integrations.sb3 import SB3VecEnv  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPE = (224, 320, 3)


def make(num_envs=2, **kwargs):
    kwargs.setdefault("frameskip", 4)
    return SB3VecEnv(VecRetroEnv(GAME, num_envs, autoreset_mode="same_step", **kwargs))


def buttons(steps, num_envs=2, seed=0):
    return np.random.default_rng(seed).integers(0, 2, (steps, num_envs, 12), dtype=np.uint8)


class MapObservation(gymnasium.vector.VectorWrapper):
    """Applies ``fn`` to every observation (final ones included), as a preprocessing stack does.

    With a slicing ``fn`` the result is a strided read-only view of the pool's shared buffer,
    overwritten by the next step: the case SB3VecEnv must copy out of.
    """

    def __init__(self, env, fn, shape):
        super().__init__(env)
        self.fn = fn
        self.single_observation_space = gymnasium.spaces.Box(0, 255, shape, np.uint8)
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)

    def reset(self, **kwargs):
        obs, infos = self.env.reset(**kwargs)
        return self.fn(obs), infos

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        if "final_obs" in infos:
            for i in np.flatnonzero(infos["_final_obs"]):
                infos["final_obs"][i] = self.fn(infos["final_obs"][i])
        return self.fn(obs), rewards, terminated, truncated, infos


def every_4th_pixel(obs):
    return obs[..., ::4, ::4, :]


@pytest.fixture
def venv():
    with make(max_episode_steps=5) as env:
        yield env


@pytest.fixture
def done_at_once(tmp_path):
    """A scenario that ends every episode (terminated) on its first step: it starts at 3 lives."""
    path = tmp_path / "ends.json"
    path.write_text(
        json.dumps(
            {
                "done": {"variables": {"lives": {"op": "equal", "reference": 3}}},
                "reward": {"variables": {"score": {"reward": 1.0}}},
            }
        )
    )
    return str(path)


# -- the VecEnv interface -------------------------------------------------------------------------


def test_is_an_sb3_vecenv_with_single_env_spaces(venv):
    assert isinstance(venv, VecEnv)
    assert venv.num_envs == 2
    assert venv.observation_space == gymnasium.spaces.Box(0, 255, SHAPE, np.uint8)
    assert venv.action_space == gymnasium.spaces.MultiBinary(12)
    assert venv.render_mode == "rgb_array"
    assert venv.metadata["render_modes"] == ["human", "rgb_array"]
    assert venv.unwrapped is venv
    assert repr(venv) == f"SB3VecEnv(VecRetroEnv({GAME}, num_envs=2))"


def test_reset_returns_a_new_array_and_fills_reset_infos(venv):
    obs = venv.reset()
    assert obs.shape == (2, *SHAPE) and obs.dtype == np.uint8
    assert obs.flags.c_contiguous and obs.flags.writeable and obs.base is None
    assert venv.observation_space.contains(obs[0])
    assert venv.reset_infos == [{"gameover": 9, "lives": 3, "score": 0}] * 2


def test_step_returns_the_sb3_four_tuple(venv):
    venv.reset()
    obs, rewards, dones, infos = venv.step(buttons(1)[0])
    assert obs.shape == (2, *SHAPE) and obs.base is None
    assert rewards.shape == (2,) and rewards.dtype == np.float64
    assert dones.shape == (2,) and dones.dtype == bool and not dones.any()
    assert infos == [{"gameover": 9, "lives": 3, "score": 0, "TimeLimit.truncated": False}] * 2


def test_step_async_and_step_wait_the_baselines_way(venv):
    venv.reset()
    venv.step_async(buttons(1)[0])
    obs, rewards, dones, infos = venv.step_wait()
    assert obs.shape == (2, *SHAPE) and len(infos) == 2


def test_reset_collects_a_pending_step_first(venv):
    first = venv.reset()
    venv.step_async(buttons(1)[0])
    np.testing.assert_array_equal(venv.reset(), first)
    venv.step(buttons(1)[0])  # the pool is idle again


def test_truncation_reports_terminal_observation_and_timelimit_truncated(venv):
    acts = buttons(5)
    with VecRetroEnv(GAME, 2, frameskip=4) as reference:
        reference.reset()
        for a in acts:
            expected_final, *_ = reference.step(a)
        expected_final = expected_final.copy()
    first = venv.reset()
    for t, a in enumerate(acts):
        obs, _, dones, infos = venv.step(a)
        if t < 4:
            assert not dones.any()
            assert all("terminal_observation" not in i for i in infos)
    assert dones.tolist() == [True, True]
    for i in range(2):
        assert infos[i]["TimeLimit.truncated"] is True
        np.testing.assert_array_equal(infos[i]["terminal_observation"], expected_final[i])
    np.testing.assert_array_equal(obs, first)  # reset in the same step: the next episode's start
    assert venv.reset_infos == [{"gameover": 9, "lives": 3, "score": 0}] * 2


def test_termination_is_not_a_timelimit_truncation(done_at_once):
    with make(scenario=done_at_once) as env:
        env.reset()
        _, _, dones, infos = env.step(buttons(1)[0])
        assert dones.tolist() == [True, True]
        assert [i["TimeLimit.truncated"] for i in infos] == [False, False]
        assert all(i["terminal_observation"].shape == SHAPE for i in infos)
    # Ended by the game and by the time limit in the same step: SB3 must not bootstrap.
    with make(scenario=done_at_once, max_episode_steps=1) as env:
        env.reset()
        _, _, dones, infos = env.step(buttons(1)[0])
        assert dones.all() and [i["TimeLimit.truncated"] for i in infos] == [False, False]


def test_observation_returned_by_step_is_unchanged_by_the_next_step(venv):
    venv.reset()
    acts = buttons(4)
    obs1, *_ = venv.step(acts[0])
    kept = obs1.copy()
    obs2, *_ = venv.step(acts[1])
    assert not np.array_equal(obs2, kept), "the frames must differ for this test to mean anything"
    np.testing.assert_array_equal(obs1, kept)
    assert not np.shares_memory(obs1, obs2)


def test_float_multibinary_actions_from_sb3_policies_are_accepted(venv):
    venv.reset()
    acts = buttons(2)
    obs_int, *_ = venv.step(acts[0])
    venv.reset()
    obs_float, *_ = venv.step(acts[0].astype(np.float32))
    np.testing.assert_array_equal(obs_float, obs_int)


@pytest.mark.parametrize(
    "value, message",
    [
        (0.5, "Expected whole-number actions (float arrays of 0.0/1.0 are accepted), got 0.5"),
        (np.nan, "Expected whole-number actions (float arrays of 0.0/1.0 are accepted), got nan"),
    ],
)
def test_fractional_float_actions_raise(venv, value, message):
    venv.reset()
    acts = np.zeros((2, 12), np.float32)
    acts[1, 3] = value
    with pytest.raises(ActionError, match=re.escape(f"{message} at index (1, 3)")):
        venv.step(acts)


@pytest.mark.parametrize(
    "actions",
    [np.zeros((2, 12), np.uint8), np.zeros((2, 12), bool), np.zeros(2, np.int64)],
    ids=["multibinary", "bool", "discrete"],
)
def test_integer_actions_reach_the_pool_unchanged(venv, monkeypatch, actions):
    sent = []
    monkeypatch.setattr(venv.pool, "step_async", sent.append)
    venv.step_async(actions)
    assert sent[0] is actions


def test_discrete_actions_from_the_action_space_step_the_pool():
    with make(actions="discrete") as env:
        assert isinstance(env.action_space, gymnasium.spaces.Discrete)
        env.reset()
        actions = np.array([env.action_space.sample() for _ in range(2)])
        assert actions.shape == (2,)
        obs, _, dones, infos = env.step(actions)
        assert obs.shape == (2, *SHAPE) and len(infos) == 2


def test_seed_makes_resets_reproducible():
    with make(sticky_prob=0.5) as env:
        assert env.seed(7) == [7, 8]
        env.reset()
        for a in buttons(10):
            first, *_ = env.step(a)
        env.seed(7)
        env.reset()
        for a in buttons(10):
            again, *_ = env.step(a)
        np.testing.assert_array_equal(again, first)
        seeds = env.seed()
        assert len(seeds) == 2 and seeds[1] == seeds[0] + 1
        assert env.seed(np.int64(3)) == [3, 4]


@pytest.mark.parametrize(
    "seed, message",
    [
        (-1, "Expected seed to be None or an int >= 0, got -1"),
        ("7", "Expected seed to be None or an int >= 0, got '7'"),
        (True, "Expected seed to be None or an int >= 0, got True"),
    ],
)
def test_bad_seed_raises(venv, seed, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        venv.seed(seed)


def test_seed_for_some_envs_only_raises(venv):
    venv._seeds = [1, None]  # SB3's own attribute; seed() never leaves it half set
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape("Expected a seed for every env or for none (use seed()), got [1, None]"),
    ):
        venv.reset()


def test_set_options_reach_the_pool_once(venv):
    first = venv.reset()
    for a in buttons(3):
        moved, *_ = venv.step(a)
    venv.set_options({"reset_mask": np.array([True, False])})
    obs = venv.reset()
    np.testing.assert_array_equal(obs[0], first[0])
    np.testing.assert_array_equal(obs[1], moved[1])  # env 1 was not reset
    assert venv._options == [{}, {}]  # used once, as SB3's DummyVecEnv does
    venv.set_options([{}, {}])
    venv.set_options(None)


@pytest.mark.parametrize(
    "options, message",
    [
        ([{}], "Expected a list of num_envs=2 option dicts, got 1"),
        (
            [{"a": 1}, {"a": 2}],
            "Expected the same reset options for every env (the pool takes one options dict for "
            "all its envs), got [{'a': 1}, {'a': 2}]",
        ),
        ("reset", "Expected options to be None, a dict or a list of dicts, got str"),
    ],
)
def test_bad_options_raise(venv, options, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        venv.set_options(options)


# -- attributes -----------------------------------------------------------------------------------


def test_get_attr_reads_the_pool_once_per_index(venv):
    assert venv.get_attr("frameskip") == [4, 4]
    assert venv.get_attr("max_episode_steps", indices=[1]) == [5]
    assert venv.get_attr("buttons", indices=0) == [venv.pool.buttons]
    assert venv.get_attr("render_mode") == ["rgb_array", "rgb_array"]
    assert venv.has_attr("sticky_prob") and not venv.has_attr("lives")


@pytest.mark.parametrize(
    "name, indices, error, message",
    [
        (
            "lives",
            None,
            AttributeError,
            "VecRetroEnv has no attribute 'lives': get_attr reaches the pool's own attributes "
            "(one value for all its envs); it has no per-env Python objects",
        ),
        (
            "_a",
            None,
            AttributeError,
            "get_attr reaches the public attributes of the VecRetroEnv pool, got '_a'",
        ),
        ("frameskip", [0, 2], InvalidArgumentError, "Expected env indices in [0, 2), got 2"),
        ("frameskip", -1, InvalidArgumentError, "Expected env indices in [0, 2), got -1"),
    ],
)
def test_bad_get_attr_raises(venv, name, indices, error, message):
    with pytest.raises(error, match=re.escape(message)):
        venv.get_attr(name, indices)


def test_set_attr_sets_step_timeout(venv):
    venv.set_attr("step_timeout", 30)
    assert venv.pool.step_timeout == 30.0
    venv.set_attr("step_timeout", 12.5, indices=[1, 0])
    assert venv.get_attr("step_timeout") == [12.5, 12.5]


@pytest.mark.parametrize(
    "name, value, indices, error, message",
    [
        (
            "frameskip",
            2,
            None,
            InvalidArgumentError,
            "Cannot set 'frameskip': VecRetroEnv fixes it at construction (its workers read it "
            "when they start); settable: ['step_timeout']",
        ),
        (
            "step_timeout",
            5.0,
            [0],
            InvalidArgumentError,
            "Cannot set 'step_timeout' for envs [0] only: the pool holds one value for all its "
            "2 envs; pass indices=None",
        ),
        ("step_timeout", 0, None, InvalidArgumentError, "Expected step_timeout > 0 seconds, got 0"),
        (
            "step_timeout",
            "5",
            None,
            InvalidArgumentError,
            "Expected step_timeout > 0 seconds, got '5'",
        ),
        (
            "level",
            1,
            None,
            AttributeError,
            "VecRetroEnv has no attribute 'level': set_attr reaches the pool's own attributes",
        ),
    ],
)
def test_bad_set_attr_raises(venv, name, value, indices, error, message):
    with pytest.raises(error, match=re.escape(message)):
        venv.set_attr(name, value, indices)


def test_env_method_calls_a_pool_method_once(venv, monkeypatch):
    calls = []
    monkeypatch.setattr(
        venv.pool, "describe", lambda *a, **k: calls.append((a, k)) or "ok", raising=False
    )
    assert venv.env_method("describe", 1, key=2) == ["ok", "ok"]
    assert calls == [((1,), {"key": 2})]


@pytest.mark.parametrize(
    "name, indices, error, message",
    [
        (
            "step",
            None,
            InvalidArgumentError,
            "Cannot call 'step' through env_method: it would bypass SB3VecEnv; "
            "call SB3VecEnv.step instead",
        ),
        (
            "reset_async",
            None,
            InvalidArgumentError,
            "Cannot call 'reset_async' through env_method: it would bypass SB3VecEnv; "
            "call SB3VecEnv.reset instead",
        ),
        (
            "frameskip",
            None,
            InvalidArgumentError,
            "Expected the name of a VecRetroEnv method, got attribute 'frameskip'",
        ),
        (
            "render",
            [1],
            InvalidArgumentError,
            "Cannot call 'render' for envs [1] only: the pool holds one value for all its 2 "
            "envs; pass indices=None",
        ),
        (
            "get_action_meanings",
            None,
            AttributeError,
            "VecRetroEnv has no attribute 'get_action_meanings': env_method reaches the pool's",
        ),
    ],
)
def test_bad_env_method_raises(venv, name, indices, error, message):
    with pytest.raises(error, match=re.escape(message)):
        venv.env_method(name, indices=indices)


def test_env_is_wrapped_is_false_for_every_env(venv):
    assert venv.env_is_wrapped(gymnasium.wrappers.TimeLimit) == [False, False]
    assert venv.env_is_wrapped(gymnasium.Wrapper, indices=[1]) == [False]


# -- rendering ------------------------------------------------------------------------------------


def test_get_images_returns_one_rgb_frame_per_env(venv):
    venv.reset()
    obs, *_ = venv.step(buttons(1)[0])
    images = venv.get_images()
    assert len(images) == 2
    for image, row in zip(images, obs):
        assert image.shape == SHAPE and image.dtype == np.uint8
        np.testing.assert_array_equal(image, row)
    venv.step(buttons(2)[1])
    assert not np.array_equal(venv.get_images()[0], images[0])  # copies, not live views


def test_render_tiles_the_images_as_sb3_does(venv):
    venv.reset()
    venv.step(buttons(1)[0])
    expected = tile_images(venv.get_images())
    assert expected.shape == (448, 320, 3)
    np.testing.assert_array_equal(venv.render(), expected)
    np.testing.assert_array_equal(venv.render("rgb_array"), expected)


def test_gray_stacked_observations_render_their_newest_frame():
    with make(grayscale=True, resize=(56, 80), frame_stack=3) as env:
        assert env.observation_space.shape == (56, 80, 3)
        env.reset()
        for a in buttons(4):
            obs, *_ = env.step(a)
        images = env.get_images()
        assert images[0].shape == (56, 80, 3)
        for c in range(3):
            np.testing.assert_array_equal(images[1][..., c], obs[1, ..., 2])
        assert env.render().shape == (112, 80, 3)


def test_rgb_stacked_observations_render_their_newest_frame():
    with make(resize=(56, 80), frame_stack=2) as env:
        assert env.observation_space.shape == (56, 80, 6)
        env.reset()
        obs, *_ = env.step(buttons(1)[0])
        np.testing.assert_array_equal(np.stack(env.get_images()), obs[..., 3:])


def test_frame_stack_views_are_copied_out():
    # The pool's frame stack is a view of a ring that the next step writes into.
    with make(grayscale=True, resize=(56, 80), frame_stack=4) as env:
        env.reset()
        acts = buttons(3)
        obs1, *_ = env.step(acts[0])
        kept = obs1.copy()
        obs2, *_ = env.step(acts[1])
        assert obs1.flags.c_contiguous and obs1.shape == (2, 56, 80, 4)
        np.testing.assert_array_equal(obs1, kept)
        np.testing.assert_array_equal(obs2[..., :3], kept[..., 1:])  # the stack moved on


def test_strided_views_from_a_wrapped_pool_are_copied_out():
    with VecRetroEnv(GAME, 2, autoreset_mode="same_step", frameskip=4) as pool:
        env = SB3VecEnv(MapObservation(pool, every_4th_pixel, (56, 80, 3)))
        assert env.observation_space.shape == (56, 80, 3)
        first = env.reset()
        acts = buttons(2)
        obs1, *_ = env.step(acts[0])
        kept = obs1.copy()
        obs2, *_ = env.step(acts[1])
        assert obs1.shape == (2, 56, 80, 3) and obs1.flags.c_contiguous
        assert not np.array_equal(obs2, kept) and not np.array_equal(obs1, first)
        np.testing.assert_array_equal(obs1, kept)


def test_wrapped_pool_steps_synchronously_in_step_wait():
    with VecRetroEnv(GAME, 2, autoreset_mode="same_step") as pool:
        env = SB3VecEnv(MapObservation(pool, every_4th_pixel, (56, 80, 3)))
        env.reset()
        env.step_async(buttons(1)[0])
        with pytest.raises(
            StateMachineError,
            match=re.escape("Cannot call step_async while a step is pending: call step_wait first"),
        ):
            env.step_async(buttons(1)[0])
        obs, *_ = env.step_wait()
        assert obs.shape == (2, 56, 80, 3)
        with pytest.raises(
            StateMachineError, match=re.escape("Cannot call step_wait without a pending step_async")
        ):
            env.step_wait()
        env.step_async(buttons(1)[0])
        env.reset()  # drops the pending actions
        env.step(buttons(1)[0])


def test_render_and_get_images_errors():
    with make() as env:
        with pytest.raises(
            StateMachineError,
            match=re.escape("Cannot call get_images before reset: no observation yet"),
        ):
            env.get_images()
        env.reset()
        with pytest.raises(
            InvalidArgumentError,
            match=re.escape("Expected render mode 'rgb_array', 'human' or None, got 'ansi'"),
        ):
            env.render("ansi")
    with pytest.raises(ClosedError, match=re.escape("Cannot call get_images: the pool is closed")):
        env.get_images()


# -- construction and closing ---------------------------------------------------------------------


def test_close_is_idempotent_and_closes_the_pool():
    env = make()
    env.reset()
    env.close()
    env.close()
    assert env.pool.closed
    with pytest.raises(ClosedError, match=re.escape("Cannot call step_async: the pool is closed")):
        env.step(buttons(1)[0])


@pytest.mark.parametrize("mode", ["next_step", "disabled"])
def test_pools_of_any_autoreset_mode_behave_as_same_step_ones(mode):
    # SB3VecEnv(VecRetroEnv(...)) with the default autoreset: the adapter resets ended envs.
    acts = np.random.default_rng(2).integers(0, 2, (20, 2, 12), dtype=np.uint8)
    opts = dict(frameskip=4, sticky_prob=0.25, max_episode_steps=6, seed=3)
    with (
        SB3VecEnv(VecRetroEnv(GAME, 2, autoreset_mode=mode, **opts)) as ours,
        SB3VecEnv(VecRetroEnv(GAME, 2, autoreset_mode="same_step", **opts)) as same,
    ):
        np.testing.assert_array_equal(ours.reset(), same.reset())
        ends = 0
        for a in acts:
            obs, rew, done, infos = ours.step(a)
            s_obs, s_rew, s_done, s_infos = same.step(a)
            np.testing.assert_array_equal(obs, s_obs)
            np.testing.assert_array_equal(rew, s_rew)
            np.testing.assert_array_equal(done, s_done)
            for i in np.flatnonzero(done):
                ends += 1
                np.testing.assert_array_equal(
                    infos[i]["terminal_observation"], s_infos[i]["terminal_observation"]
                )

                def rest(info):
                    return {k: v for k, v in info.items() if k != "terminal_observation"}

                assert rest(infos[i]) == rest(s_infos[i])
                assert ours.reset_infos[i] == same.reset_infos[i]
        assert ends == 6


def test_async_mode_pool_raises():
    with VecRetroEnv(GAME, 2, batch_size=1, autoreset_mode="same_step") as pool:
        with pytest.raises(
            InvalidArgumentError,
            match=re.escape(
                "Expected a lock-step VecRetroEnv (batch_size=None): SB3 steps every env "
                "together, got batch_size=1"
            ),
        ):
            SB3VecEnv(pool)


def test_closed_pool_raises():
    pool = VecRetroEnv(GAME, 1, autoreset_mode="same_step")
    pool.close()
    with pytest.raises(
        ClosedError, match=re.escape("Cannot wrap a closed VecRetroEnv: build a new one")
    ):
        SB3VecEnv(pool)


def test_non_vector_env_raises():
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape(
            "Expected a fastretro.VecRetroEnv (a gymnasium.vector.VectorEnv), got list"
        ),
    ):
        SB3VecEnv([])


def test_non_box_observation_space_raises():
    class DictObs(gymnasium.vector.VectorEnv):
        metadata = {"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP}
        num_envs = 1
        single_observation_space = gymnasium.spaces.Dict({"x": gymnasium.spaces.Discrete(2)})
        single_action_space = gymnasium.spaces.Discrete(2)

    with pytest.raises(
        InvalidArgumentError,
        match=re.escape("Expected a Box observation space, got Dict('x': Discrete(2))"),
    ):
        SB3VecEnv(DictObs())


# -- SB3's wrappers -------------------------------------------------------------------------------


def test_vec_frame_stack_stacks_and_fixes_terminal_observation(venv):
    env = VecFrameStack(venv, n_stack=4)
    obs = env.reset()
    assert obs.shape == (2, 224, 320, 12)
    for a in buttons(5):
        obs, _, dones, infos = env.step(a)
    assert dones.all()
    assert infos[0]["terminal_observation"].shape == (224, 320, 12)
    assert not obs[..., :9].any()  # the stack restarts with the new episode


def test_vec_transpose_image_puts_channels_first(venv):
    env = VecTransposeImage(venv)
    assert env.observation_space.shape == (3, 224, 320)
    obs = env.reset()
    assert obs.shape == (2, 3, 224, 320)
    for a in buttons(5):
        obs, _, dones, infos = env.step(a)
    assert infos[1]["terminal_observation"].shape == (3, 224, 320)


def test_vec_monitor_reports_episodes(venv):
    env = VecMonitor(venv)
    env.reset()
    for a in buttons(5):
        _, rewards, dones, infos = env.step(a)
    assert dones.all()
    assert [i["episode"]["l"] for i in infos] == [5, 5]


def test_vec_normalize_runs(venv):
    env = VecNormalize(venv, norm_obs=True, norm_reward=True)
    env.reset()
    for a in buttons(6):
        obs, rewards, dones, infos = env.step(a)
    assert obs.dtype == np.float32 and obs.shape == (2, *SHAPE)
    np.testing.assert_array_equal(env.get_original_obs(), venv.get_images())


def test_monitor_frame_stack_transpose_chain(venv):
    env = VecTransposeImage(VecFrameStack(VecMonitor(venv), n_stack=2))
    obs = env.reset()
    assert obs.shape == (2, 6, 224, 320)
    for a in buttons(5):
        _, _, _, infos = env.step(a)
    assert infos[0]["episode"]["l"] == 5
    assert infos[0]["terminal_observation"].shape == (6, 224, 320)


# -- PPO ------------------------------------------------------------------------------------------


class RolloutObsCheck(BaseCallback):
    """Copies every observation when the env returns it and checks the rollout buffer held it.

    SB3 adds ``_last_obs`` (the observation of the previous step) to the buffer after
    ``env.step`` has returned the next one: were it a view of a buffer that step overwrites,
    the rollout buffer would hold the next frame instead.
    """

    def __init__(self):
        super().__init__()
        self.checked = 0
        self.changed = 0

    def _on_rollout_start(self):
        self.seen = [np.array(self.model._last_obs)]

    def _on_step(self):
        self.seen.append(np.array(self.locals["new_obs"]))
        return True

    def _on_rollout_end(self):
        stored = self.model.rollout_buffer.observations
        expected = np.stack(self.seen[: len(stored)])
        np.testing.assert_array_equal(stored, expected.astype(stored.dtype))
        self.changed += int(np.any(expected[1:] != expected[:-1]))
        self.checked += 1


@pytest.mark.parametrize(
    "stack_in", ["sb3", "pool"], ids=["VecFrameStack-VecTransposeImage", "pool-frame-stack"]
)
def test_ppo_rollout_buffer_holds_the_observations_the_env_returned(stack_in):
    # 84x84 gray frames, made in the workers: the stock NatureCNN stays quick on 2 cores. With
    # the pool's own frame stack, PPO's _last_obs would be a view of a ring the next step
    # overwrites, were SB3VecEnv not to copy it out.
    pool_stack = 4 if stack_in == "pool" else 1
    with make(sticky_prob=0.25, grayscale=True, resize=(84, 84), frame_stack=pool_stack) as venv:
        env = VecFrameStack(venv, n_stack=4) if stack_in == "sb3" else venv
        env = VecTransposeImage(env)
        assert env.observation_space.shape == (4, 84, 84)
        model = PPO("CnnPolicy", env, n_steps=64, batch_size=64, n_epochs=1, device="cpu", seed=0)
        check = RolloutObsCheck()
        model.learn(total_timesteps=2048, callback=check)
    assert model.num_timesteps == 2048
    assert check.checked == 16 and check.changed == 16


def test_ppo_with_discrete_actions():
    with make(actions="sonic7", grayscale=True, resize=(84, 84), frame_stack=4) as venv:
        assert venv.action_space == gymnasium.spaces.Discrete(7)
        model = PPO("CnnPolicy", VecTransposeImage(venv), n_steps=16, batch_size=32, n_epochs=1)
        model.learn(total_timesteps=64)
        assert model.num_timesteps == 64


# -- render.py ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8])
def test_tile_frames_matches_sb3_tile_images(n):
    frames = np.random.default_rng(n).integers(0, 256, (n, 6, 10, 3), dtype=np.uint8)
    np.testing.assert_array_equal(tile_frames(frames), tile_images(frames))


def test_tile_frames_with_ncols():
    frames = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
    row = tile_frames(frames, ncols=3)
    assert row.shape == (2, 6, 3)
    np.testing.assert_array_equal(row[:, 2:4], frames[1])
    grid = tile_frames(frames, ncols=2)
    assert grid.shape == (4, 4, 3)
    np.testing.assert_array_equal(grid[2:, :2], frames[2])
    assert not grid[2:, 2:].any()  # the empty cell is black


def test_to_rgb_repeats_the_newest_channel():
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 4), dtype=np.uint8)
    rgb = to_rgb(frames)
    assert rgb.shape == (2, 4, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], frames[..., 3])
    already = frames[..., :3]
    assert to_rgb(already) is already
    assert tile_frames(frames[..., :1]).shape == (8, 5, 3)
    # Three gray frames look like one RGB frame: frame_channels says which.
    gray3 = to_rgb(already, frame_channels=1)
    np.testing.assert_array_equal(gray3, np.repeat(frames[..., 2:3], 3, axis=-1))
    rgb2 = np.random.default_rng(1).integers(0, 256, (2, 4, 5, 6), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb(rgb2, frame_channels=3), rgb2[..., 3:])
    np.testing.assert_array_equal(tile_frames(rgb2, None, 3), tile_images(rgb2[..., 3:]))


@pytest.mark.parametrize(
    "frames, ncols, message",
    [
        (
            [np.zeros((2, 2, 3), np.uint8)],
            None,
            "Expected frames to be a uint8 array of shape (N, H, W, C), got list",
        ),
        (
            np.zeros((2, 2, 3), np.uint8),
            None,
            "Expected frames to be a uint8 array of shape (N, H, W, C) with N >= 1 and C >= 1, "
            "got a uint8 array of shape (2, 2, 3)",
        ),
        (
            np.zeros((1, 2, 2, 3), np.float32),
            None,
            "Expected frames to be a uint8 array of shape (N, H, W, C) with N >= 1 and C >= 1, "
            "got a float32 array of shape (1, 2, 2, 3)",
        ),
        (
            np.zeros((0, 2, 2, 3), np.uint8),
            None,
            "Expected frames to be a uint8 array of shape (N, H, W, C) with N >= 1 and C >= 1, "
            "got a uint8 array of shape (0, 2, 2, 3)",
        ),
        (
            np.zeros((1, 2, 2, 0), np.uint8),
            None,
            "Expected frames to be a uint8 array of shape (N, H, W, C) with N >= 1 and C >= 1, "
            "got a uint8 array of shape (1, 2, 2, 0)",
        ),
        (np.zeros((1, 2, 2, 3), np.uint8), 0, "Expected ncols to be None or an int >= 1, got 0"),
        (
            np.zeros((1, 2, 2, 3), np.uint8),
            2.0,
            "Expected ncols to be None or an int >= 1, got 2.0",
        ),
    ],
)
def test_tile_frames_bad_input_raises(frames, ncols, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        tile_frames(frames, ncols)


@pytest.mark.parametrize(
    "channels, frame_channels, message",
    [
        (3, 2, "Expected frame_channels to be None, 1 or 3, got 2"),
        (3, True, "Expected frame_channels to be None, 1 or 3, got True"),
        (4, 3, "Expected a stack of 3-channel frames, got 4 channels"),
    ],
)
def test_to_rgb_bad_frame_channels_raises(channels, frame_channels, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        to_rgb(np.zeros((1, 2, 2, channels), np.uint8), frame_channels)


# -- the example ----------------------------------------------------------------------------------


def test_sb3_ppo_example_runs():
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "sb3_ppo.py"),
            *("--timesteps", "32", "--n-steps", "16", "--n-epochs", "1", "--num-envs", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "32 timesteps in" in out.stdout


def test_channels_first_pool_trains_without_vec_transpose_image():
    from stable_baselines3 import PPO
    from stable_baselines3.common.preprocessing import is_image_space_channels_first

    pool = VecRetroEnv(
        GAME,
        2,
        autoreset_mode="same_step",
        frameskip=4,
        grayscale=True,
        resize=(84, 84),
        frame_stack=4,
        channels_first=True,
        actions="sonic7",
    )
    with SB3VecEnv(pool) as env:
        assert is_image_space_channels_first(env.observation_space)
        model = PPO("CnnPolicy", env, n_steps=64, batch_size=64, n_epochs=1, device="cpu")
        model.learn(128)
        images = env.get_images()
        assert images[0].shape == (84, 84, 3)
