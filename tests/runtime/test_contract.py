"""The pool contract (fastretro/runtime/contract.py), run against every transport.

Each test takes a ``transport``: the process pool (:class:`~fastretro.VecRetroEnv`), the same
on the libretro backend with both envs in one worker process, its worker threads
(``workers="threads"``, the in-process transport) and the Ray shards
(:class:`~fastretro.integrations.ray.RayVecRetroEnv`, two one-env shards on a local Ray, skipped
where Ray is not installed). A transport only moves data: what a caller sees of the call
states, the argument checks, the seeds, closing and the infos' names must not differ. Each
transport says what it runs (``make``) and its no-op actions (``noop``, ``buttons``): two
stable-retro envs cannot share one process, so the threads run ALE's Pong.
"""

from __future__ import annotations

import os
import re
import signal
import time

import numpy as np
import pytest
from conftest import GAME

from fastretro import ActionError, ClosedError, InvalidArgumentError, StateMachineError, VecRetroEnv

#: An Atari game for the transports whose envs share one process (ALE runs several there).
ATARI = "Pong-Atari2600-v0"


class ProcessPool:
    """The process pool: envs in worker processes, over shared memory."""

    buttons = 12  # Airstriker's Genesis pad
    noop = np.zeros((2, buttons), np.uint8)
    killed = [True, False]  # which envs kill_first takes down

    def make(self, num_envs: int = 2, *, restart: bool = False, send_recv: bool = False, **kw):
        if restart:
            kw["on_worker_failure"] = "restart"
        if send_recv:
            kw["batch_size"] = 1
        return VecRetroEnv(GAME, num_envs, **kw)

    def kill_first(self, env) -> None:
        """Kill the worker that runs env 0, and wait until it is gone."""
        victim = env._workers.procs[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(5)


class LibretroPool(ProcessPool):
    """The process pool on the libretro backend, every env in one worker process."""

    killed = [True, True]  # a killed worker's envs, each reported

    def make(self, num_envs: int = 2, *, restart: bool = False, send_recv: bool = False, **kw):
        kw.setdefault("envs_per_worker", num_envs)
        return super().make(
            num_envs, restart=restart, send_recv=send_recv, backend="libretro", **kw
        )


class WorkerThreads:
    """The in-process transport: the pool's workers as threads of this process, on ALE."""

    buttons = 8  # the Atari 2600's, as stable-retro names them
    noop = np.zeros((2, buttons), np.uint8)

    def make(self, num_envs: int = 2, *, restart: bool = False, send_recv: bool = False, **kw):
        pytest.importorskip("ale_py", reason="ALE is an optional extra: fastretro[atari]")
        if restart:
            pytest.skip("a thread cannot be killed or replaced: workers='threads' refuses restart")
        if send_recv:
            kw["batch_size"] = 1
        return VecRetroEnv(ATARI, num_envs, backend="ale", workers="threads", **kw)


class RayShards:
    """Ray shards: one local pool per actor, one env per shard (so two shards for two envs)."""

    buttons = ProcessPool.buttons
    noop = ProcessPool.noop
    killed = ProcessPool.killed

    def make(self, num_envs: int = 2, *, restart: bool = False, send_recv: bool = False, **kw):
        from fastretro.integrations.ray import RayVecRetroEnv

        # Ray's shards take send/recv calls in any mode: send_recv needs nothing more.
        return RayVecRetroEnv(GAME, num_envs, envs_per_actor=1, restart=restart, **kw)

    def kill_first(self, env) -> None:
        """Kill the actor that runs env 0, and wait until its connection says it is gone."""
        import ray

        ray.kill(env._actors[0])
        assert env._links[0].conn.poll(30), "the killed actor's connection did not close"


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install fastretro[ray]")
    from fastretro.integrations import ray as distributed

    started = not ray.is_initialized()
    if started:
        distributed.init(num_cpus=2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(params=["process", "libretro", "threads", "ray"])
def transport(request):
    if request.param == "ray":
        request.getfixturevalue("local_ray")
        return RayShards()
    return {"process": ProcessPool, "libretro": LibretroPool, "threads": WorkerThreads}[
        request.param
    ]()


# -- the call-state machine -----------------------------------------------------------------


def test_step_before_reset_raises(transport):
    env = transport.make(observe=False)
    try:
        with pytest.raises(
            StateMachineError,
            match=re.escape(
                "Cannot call step_async before reset: no env has been reset yet; call reset first"
            ),
        ):
            env.step(transport.noop)
        env.reset()
        env.step(transport.noop)  # the refusal left the pool usable
    finally:
        env.close()


def test_misuse_of_step_async_and_step_wait_raises_from_the_state_machine(transport):
    env = transport.make(observe=False)
    try:
        env.reset()
        with pytest.raises(
            StateMachineError, match=re.escape("Cannot call step_wait without a pending step_async")
        ):
            env.step_wait()
        env.step_async(transport.noop)
        with pytest.raises(
            StateMachineError,
            match=re.escape("Cannot call step_async while a step is pending: call step_wait first"),
        ):
            env.step_async(transport.noop)
        with pytest.raises(
            StateMachineError, match=re.escape("while a step is pending: call step_wait first")
        ):
            env.reset()
        env.step_wait()
        env.step(transport.noop)
    finally:
        env.close()


def test_async_calls_refuse_while_others_are_running(transport):
    env = transport.make(observe=False, send_recv=True)
    try:
        with pytest.raises(
            StateMachineError,
            match=re.escape(
                "Cannot call send before async_reset: no env has been reset yet; "
                "call async_reset first"
            ),
        ):
            env.send(transport.noop[:1], np.array([0]))
        env.async_reset()
        with pytest.raises(StateMachineError, match="are running: recv them first"):
            env.async_reset()
    finally:
        env.close()


def test_calls_after_close_raise_closed_error(transport):
    env = transport.make(observe=False)
    env.reset()
    env.close()
    env.close()  # idempotent
    assert env.closed
    with pytest.raises(ClosedError, match=re.escape("Cannot call step_async: the pool is closed")):
        env.step(transport.noop)
    with pytest.raises(ClosedError, match="the pool is closed"):
        env.reset()


# -- argument checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (
            [True, False],
            "Expected options['reset_mask'] to be a bool array of shape (2,), got list",
        ),
        (
            np.array([1, 0]),
            "Expected options['reset_mask'] to be a bool array of shape (2,), got int64 array "
            "of shape (2,)",
        ),
        (
            np.ones(3, bool),
            "Expected options['reset_mask'] to be a bool array of shape (2,), got bool array "
            "of shape (3,)",
        ),
        (np.zeros(2, bool), "Expected options['reset_mask'] to select at least one env"),
    ],
)
def test_a_bad_reset_mask_raises(transport, mask, message):
    env = transport.make(observe=False)
    try:
        with pytest.raises(InvalidArgumentError, match=re.escape(message)):
            env.reset(options={"reset_mask": mask})
    finally:
        env.close()


def test_a_reset_mask_resets_only_its_envs(transport):
    # Over shards, the mask selects no env of shard 1: it must not be asked to reset.
    env = transport.make(observe=False, autoreset_mode="disabled", max_episode_steps=2)
    try:
        env.reset()
        for _ in range(2):
            *_, trunc, _ = env.step(transport.noop)
        assert trunc.tolist() == [True, True]
        env.reset(options={"reset_mask": np.array([True, False])})
        with pytest.raises(StateMachineError, match=re.escape("Envs [1] ended their episode")):
            env.step(transport.noop)
    finally:
        env.close()


def test_a_first_reset_with_a_mask_leaves_the_other_envs_unreset(transport):
    env = transport.make(grayscale=True, resize=(42, 42))
    try:
        obs, _ = env.reset(options={"reset_mask": np.array([True, False])})
        assert obs.shape == (2, 42, 42, 1)
        with pytest.raises(
            StateMachineError,
            match=re.escape(
                "Cannot call step_async before reset: envs [1] have not been reset yet; "
                "call reset first"
            ),
        ):
            env.step(transport.noop)
        env.reset()
        env.step(transport.noop)
    finally:
        env.close()


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        (-1, "Expected seed >= 0, got -1"),
        (
            [1],
            "Expected seed to be None, an int or a list of num_envs=2 ints, got [1]",
        ),
        ([1, -2], "Expected seeds >= 0, got [1, -2]"),
    ],
)
def test_a_bad_seed_raises(transport, seed, message):
    env = transport.make(observe=False)
    try:
        with pytest.raises(InvalidArgumentError, match=re.escape(message)):
            env.reset(seed=seed)
    finally:
        env.close()


def test_an_int_seed_gives_env_i_the_seed_plus_i(transport):
    # The seed drives the sticky-frame draws; over shards, env 1 must get 7 + 1 as well.
    acts = np.random.default_rng(0).integers(0, 2, (12, 2, transport.buttons), dtype=np.uint8)
    env = transport.make(sticky_prob=0.5, grayscale=True, resize=(42, 42))
    try:
        runs = []
        for seed in (7, [7, 8]):
            obs, _ = env.reset(seed=seed)
            run = [obs.copy()]
            for a in acts:
                run.append(env.step(a)[0].copy())
            runs.append(np.stack(run))
        np.testing.assert_array_equal(runs[0], runs[1])
    finally:
        env.close()


def test_bad_actions_raise_before_anything_is_sent(transport):
    b = transport.buttons
    env = transport.make(observe=False)
    try:
        env.reset()
        with pytest.raises(
            ActionError,
            match=re.escape(
                f"Expected actions of shape (2, {b}) (num_envs, buttons), got (1, {b})"
            ),
        ):
            env.step(transport.noop[:1])
        with pytest.raises(ActionError, match=re.escape("Expected button actions of 0 or 1")):
            env.step(transport.noop + 2)
        env.step(transport.noop)  # nothing was sent: the pool is still idle
    finally:
        env.close()


# -- infos ----------------------------------------------------------------------------------


def test_a_replaced_worker_reports_worker_restarted(transport):
    env = transport.make(observe=False, restart=True)
    try:
        env.reset(seed=0)
        env.step(transport.noop)
        transport.kill_first(env)
        deadline = time.monotonic() + 30
        while True:  # the pool sees the death at its next look (a step in flight may finish)
            *_, trunc, infos = env.step(transport.noop)
            if "worker_restarted" in infos or time.monotonic() > deadline:
                break
        assert infos["worker_restarted"].tolist() == transport.killed
        assert infos["_worker_restarted"].tolist() == transport.killed
        assert trunc.tolist() == transport.killed
        assert env.worker_restarts == 1
        *_, infos = env.step(transport.noop)
        assert "worker_restarted" not in infos  # reported once
    finally:
        env.close()
