"""fastretro's ids in gymnasium's registry: registered at import, each with its protocol."""

from __future__ import annotations

import re
import subprocess
import sys

import gymnasium
import pytest

import fastretro
from fastretro.config import ENV_FIELDS
from fastretro.errors import InvalidArgumentError
from fastretro.integrations import envpool_compat, gym_registry

needs_protocol = pytest.mark.skipif(
    not set(envpool_compat.PROTOCOL_FIELDS) <= set(ENV_FIELDS),
    reason="needs EnvConfig's noop_max, fire_reset, episodic_life and sign_reward",
)


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_importing_fastretro_does_not_import_gymnasium():
    assert _python("import sys, fastretro; print('gymnasium' in sys.modules)") == "False"


@pytest.mark.parametrize(
    "imports", ["import fastretro; import gymnasium", "import gymnasium; import fastretro"]
)
def test_ids_are_registered_whichever_is_imported_first(imports):
    code = f"{imports}; print(sorted(gymnasium.registry['fastretro/Breakout-v5'].kwargs.items()))"
    assert _python(code) == "[('game', 'Breakout-Atari2600-v0'), ('protocol', 'envpool')]"


def test_each_id_names_its_game_and_protocol():
    ids = gym_registry.ids()
    game = "Breakout-Atari2600-v0"
    assert ids["fastretro/Breakout-v5"] == {"game": game, "protocol": "envpool"}
    assert ids["fastretro/ALE-Breakout-v5"] == {"game": game, "protocol": "ale"}
    assert ids["fastretro/BreakoutNoFrameskip-v4"] == {"game": game, "protocol": "sb3"}
    assert ids[f"fastretro/{game}"] == {"game": game, "protocol": "retro"}
    assert ids["fastretro/Airstriker-Genesis-v0"]["protocol"] == "retro"
    assert set(ids) <= set(gymnasium.registry)
    spec = gymnasium.registry["fastretro/Pong-v5"]
    assert spec.vector_entry_point == gym_registry.VECTOR_ENTRY_POINT


def test_gymnasium_make_says_to_use_make_vec():
    message = "fastretro's ids make a pool of envs: use gymnasium.make_vec(id, num_envs=N"
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        gymnasium.make("fastretro/Breakout-v5")


def test_a_stable_retro_id_makes_the_pool_with_its_options():
    env = gymnasium.make_vec(
        "fastretro/Airstriker-Genesis-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        frameskip=4,
        grayscale=True,
    )
    try:
        assert isinstance(env, fastretro.VecRetroEnv)
        assert (env.num_envs, env.config.frameskip, env.config.grayscale) == (2, 4, True)
        assert env.observation_space.shape == (2, 224, 320, 1)  # the pool's batched spaces
        assert env.spec.id == "fastretro/Airstriker-Genesis-v0"
    finally:
        env.close()


def test_an_unknown_option_is_named():
    message = "Unknown option 'frame_skip' for VecRetroEnv; did you mean 'frameskip'"
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        gymnasium.make_vec("fastretro/Pong-v5", num_envs=2, frame_skip=4)


PROTOCOL_OF = {
    # id: (sticky_prob, episodic_life, sign_reward); all: noop_max 30, FIRE reset, 4 frames
    # max-pooled, 84x84 gray, a stack of 4, ALE's minimal set, 27,000 steps.
    "fastretro/Breakout-v5": (0.0, False, False),
    "fastretro/ALE-Breakout-v5": (0.25, False, True),
    "fastretro/BreakoutNoFrameskip-v4": (0.0, True, True),
}


@needs_protocol
@pytest.mark.parametrize("env_id", list(PROTOCOL_OF))
def test_an_atari_id_makes_the_pool_under_the_protocol_it_implies(env_id):
    env = gymnasium.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point")
    try:
        c = env.config
        assert (c.sticky_prob, c.episodic_life, c.sign_reward) == PROTOCOL_OF[env_id]
        assert (c.noop_max, c.fire_reset, c.frameskip, c.max_pool) == (30, True, 4, True)
        assert (c.grayscale, c.resize, c.frame_stack, c.channels_first) == (
            True,
            (84, 84),
            4,
            True,
        )
        assert (c.actions, c.max_episode_steps) == ("ale_minimal", 27_000)
        assert env.single_observation_space.shape == (4, 84, 84)
        assert env.single_action_space == gymnasium.spaces.Discrete(4)
        env.reset(seed=0)
        env.step(env.action_space.sample())
    finally:
        env.close()


@needs_protocol
def test_options_change_an_ids_protocol():
    env = gymnasium.make_vec("fastretro/Pong-v5", num_envs=2, frame_stack=2, sticky_prob=0.1)
    try:
        assert (env.config.frame_stack, env.config.sticky_prob) == (2, 0.1)
        assert env.single_observation_space.shape == (2, 84, 84)
    finally:
        env.close()
