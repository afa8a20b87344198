"""Property-based tests (hypothesis) on the public surface: any input gets its typed error or
works; never a hang, never a dead worker, never a pool left unusable by a rejected call."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
from conftest import GAME
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastretro import (
    ActionError,
    FastRetroError,
    InvalidArgumentError,
    StateMachineError,
    VecRetroEnv,
)

# One pool per module for the action properties: the examples only ever send bad batches or
# good ones, and each must leave the pool working.
NUM_ENVS = 3
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def workers_alive(env) -> bool:
    return all(p.exitcode is None for p in env._workers.procs)


@pytest.fixture(scope="module")
def buttons_pool():
    with VecRetroEnv(GAME, NUM_ENVS, observe=False) as env:
        env.reset(seed=0)
        yield env


@pytest.fixture(scope="module")
def discrete_pool():
    with VecRetroEnv(GAME, NUM_ENVS, actions="sonic7", observe=False) as env:
        env.reset(seed=0)
        yield env


@pytest.fixture(autouse=True)
def no_leaks():
    # The module-scoped pools outlive single tests: conftest's per-test leak check would see them.
    yield


shapes = st.lists(st.integers(0, 14), min_size=0, max_size=3).map(tuple)
dtypes = st.sampled_from(["uint8", "int8", "int32", "int64", "bool", "float32", "float64"])


@SETTINGS
@given(shape=shapes, dtype=dtypes, low=st.integers(-3, 0), high=st.integers(1, 5))
def test_any_button_batch_steps_or_raises_action_error(buttons_pool, shape, dtype, low, high):
    rng = np.random.default_rng(abs(hash((shape, dtype, low, high))) % 2**32)
    actions = rng.integers(low, high + 1, shape).astype(dtype)
    valid = (
        shape == (NUM_ENVS, 12)
        and dtype != "float32"
        and dtype != "float64"
        and (dtype == "bool" or (actions.min(initial=0) >= 0 and actions.max(initial=0) <= 1))
    )
    if valid:
        obs, rew, term, trunc, infos = buttons_pool.step(actions)
        assert rew.shape == (NUM_ENVS,)
    else:
        with pytest.raises(ActionError):
            buttons_pool.step(actions)
    assert workers_alive(buttons_pool) and not buttons_pool.closed
    buttons_pool.step(np.zeros((NUM_ENVS, 12), np.uint8))  # still usable


@SETTINGS
@given(shape=shapes, dtype=dtypes, low=st.integers(-10, 0), high=st.integers(0, 12))
def test_any_index_batch_steps_or_raises_action_error(discrete_pool, shape, dtype, low, high):
    rng = np.random.default_rng(abs(hash((shape, dtype, low, high))) % 2**32)
    actions = rng.integers(low, high + 1, shape).astype(dtype)
    valid = (
        shape == (NUM_ENVS,)
        and np.dtype(dtype).kind in "iu"
        and actions.min(initial=0) >= 0
        and actions.max(initial=0) < 7
    )
    if valid:
        discrete_pool.step(actions)
    else:
        with pytest.raises(ActionError):
            discrete_pool.step(actions)
    assert workers_alive(discrete_pool) and not discrete_pool.closed


@SETTINGS
@given(
    calls=st.lists(
        st.sampled_from(["step_async", "step_wait", "reset_async", "reset_wait", "step", "reset"]),
        min_size=1,
        max_size=8,
    )
)
def test_calls_in_any_order_work_or_raise_state_machine_error(buttons_pool, calls):
    env = buttons_pool
    zeros = np.zeros((NUM_ENVS, 12), np.uint8)
    args = {"step_async": (zeros,), "step": (zeros,)}
    for call in calls:
        try:
            getattr(env, call)(*args.get(call, ()))
        except StateMachineError:
            pass
    # Leave the pool idle for the next example, whatever the sequence left pending.
    for wait in ("step_wait", "reset_wait"):
        try:
            getattr(env, wait)()
        except StateMachineError:
            pass
    assert workers_alive(env) and not env.closed
    env.step(zeros)


def _bad_value():
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 0),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=4),
        st.lists(st.integers(-2, 2), max_size=5),
    )


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# option -> "would this value be accepted?" (then the example is skipped: it would start workers)
OPTIONS = {
    "frameskip": lambda v: _int(v) and v >= 1,
    "sticky_prob": lambda v: _number(v) and 0 <= v <= 1,
    "frame_stack": lambda v: _int(v) and v >= 1,
    "max_episode_steps": lambda v: v is None or (_int(v) and v >= 1),
    "resize": lambda v: (
        v is None or (isinstance(v, list) and len(v) == 2 and all(_int(x) and x >= 1 for x in v))
    ),
    "crop": lambda v: (
        v is None or (isinstance(v, list) and len(v) == 4 and all(_int(x) and x >= 0 for x in v))
    ),
    "clip_reward": lambda v: v is None or (_number(v) and v > 0),
    "reward_scale": lambda v: _number(v) and np.isfinite(v),
    "batch_size": lambda v: v is None or v == 1 and _int(v),
    "num_envs": lambda v: v is None or (_int(v) and v >= 1),  # None: the PoolConfig's
    "seed": lambda v: v is None or (_int(v) and v >= 0),
    "step_timeout": lambda v: _number(v) and v > 0,
    "startup_timeout": lambda v: _number(v) and v > 0,
}


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(sorted(OPTIONS)), value=_bad_value())
def test_constructor_rejects_bad_option_values_before_starting_workers(name, value):
    kwargs = {"num_envs": 1, name: value} if name != "num_envs" else {"num_envs": value}
    if OPTIONS[name](value):
        return  # a valid value: constructing would start workers; other tests cover those
    before = set(mp.active_children())  # the module's long-lived pools
    with pytest.raises((InvalidArgumentError, FastRetroError, TypeError)):
        VecRetroEnv(GAME, **kwargs)
    assert set(mp.active_children()) <= before
