"""RayVecRetroEnv on a local Ray instance (2 shards on this machine)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import GAME

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install fastretro[ray]")

from fastretro import InvalidArgumentError, VecRetroEnv, WorkerDiedError  # noqa: E402
from fastretro.integrations.ray import RayVecRetroEnv  # noqa: E402
from fastretro.runtime import shm  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    from fastretro.integrations import ray as distributed

    distributed.init(num_cpus=2)
    yield
    ray.shutdown()


def acts(steps, n, seed=0):
    return np.random.default_rng(seed).integers(0, 2, (steps, n, 12), dtype=np.uint8)


@pytest.mark.parametrize("transport", ["socket", "ray"])
def test_two_shards_step_exactly_like_a_local_pool(transport):
    options = {
        "frameskip": 4,
        "grayscale": True,
        "resize": (42, 42),
        "frame_stack": 2,
        "max_episode_steps": 6,
        "autoreset_mode": "same_step",
    }
    batches = acts(15, 4)
    with VecRetroEnv(GAME, 4, **options) as local:
        expected = [local.reset(seed=5)[0].copy()]
        for a in batches:
            obs, rew, term, trunc, infos = local.step(a)
            expected.append((obs.copy(), rew, term, trunc, infos["score"]))
    env = RayVecRetroEnv(GAME, 4, envs_per_actor=2, transport=transport, **options)
    try:
        assert env.shards == [(0, 2), (2, 4)]
        assert env.single_observation_space == local.single_observation_space
        obs, _ = env.reset(seed=5)
        np.testing.assert_array_equal(obs, expected[0])
        for a, (e_obs, e_rew, e_term, e_trunc, e_score) in zip(batches, expected[1:]):
            obs, rew, term, trunc, infos = env.step(a)
            np.testing.assert_array_equal(obs, e_obs)
            np.testing.assert_array_equal(rew, e_rew)
            np.testing.assert_array_equal(term, e_term)
            np.testing.assert_array_equal(trunc, e_trunc)  # autoreset at step 6 and 12
            np.testing.assert_array_equal(infos["score"], e_score)
            if e_trunc.any():
                assert infos["_final_obs"].tolist() == e_trunc.tolist()
    finally:
        env.close()
    assert env.closed


def test_per_env_levels_and_the_sb3_adapter_on_top():
    from stable_baselines3.common.vec_env import VecMonitor

    from fastretro.integrations.sb3 import SB3VecEnv

    env = RayVecRetroEnv(
        GAME,
        3,
        [None, "Level1", None],
        envs_per_actor=2,
        autoreset_mode="same_step",
        max_episode_steps=3,
        resize=(56, 80),
    )
    venv = VecMonitor(SB3VecEnv(env))
    try:
        obs = venv.reset()
        assert obs.shape == (3, 56, 80, 3)
        episodes = []
        for _ in range(4):
            obs, rew, done, infos = venv.step(np.zeros((3, 12), np.uint8))
            episodes += [i["episode"]["l"] for i in infos if "episode" in i]
            assert obs.shape == (3, 56, 80, 3)
        assert episodes == [3, 3, 3]  # VecMonitor saw every env's time-limited episode
    finally:
        venv.close()


def kill_shard(env, k: int) -> None:
    """Kill shard k's actor and wait until it is gone (ray.kill only sends the request, and a
    step sent over the shard's connection meanwhile could still be served)."""
    ray.kill(env._actors[k])
    if env.transport == "socket":
        # No request is outstanding, so the connection turns readable only at its end (EOF).
        assert env._links[k].conn.poll(30), "the killed actor's connection did not close"
        return
    # Ray's transport: the actor answers calls until the kill lands (on a loaded machine, a
    # step sent at once could still be served).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get(env._actors[k].__ray_ready__.remote(), timeout=5)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return
        time.sleep(0.05)
    raise AssertionError("the killed actor still answers")


@pytest.mark.parametrize("transport", ["socket", "ray"])
def test_a_killed_actor_raises_naming_its_shard(transport):
    env = RayVecRetroEnv(GAME, 4, envs_per_actor=2, observe=False, transport=transport)
    env.reset()
    kill_shard(env, 1)
    with pytest.raises(
        WorkerDiedError, match=re.escape("Shard 1 (envs 2..3) was lost during step")
    ):
        env.step(np.zeros((4, 12), np.uint8))
    assert env.closed


@pytest.mark.parametrize("transport", ["socket", "ray"])
def test_restart_replaces_a_killed_actor_and_truncates_its_envs(transport):
    env = RayVecRetroEnv(
        GAME, 4, envs_per_actor=2, observe=False, restart=True, transport=transport
    )
    try:
        env.reset(seed=0)
        kill_shard(env, 0)
        *_, trunc, infos = env.step(np.zeros((4, 12), np.uint8))
        assert trunc.tolist() == [True, True, False, False]
        assert infos["shard_restarted"].tolist() == [True, True, False, False]
        assert env.shard_restarts == 1
        env.step(np.zeros((4, 12), np.uint8))
    finally:
        env.close()


def _processes() -> dict[int, str]:
    """pid -> command line of every process (Linux /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    return found


def _shard_processes(before: dict[int, str]) -> set[int]:
    """Processes started since ``before`` that belong to shards: actors and their emulator
    workers carry the actor's title, and each actor has a resource tracker."""
    ours = ("_Shard", "resource_tracker")
    return {p for p, cmd in _processes().items() if p not in before and any(o in cmd for o in ours)}


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0  # gone


def _mine(pid: int) -> bool:
    """Whether ``pid`` descends from this test process (ray.init() starts the local cluster's
    processes as its children), and not from a test run beside this one."""
    while pid > 1:
        if pid == os.getpid():
            return True
        pid = _parent(pid)
    return False


def _segments_of(pids: set[int]) -> set[str]:
    # Segments are named fastretro_<owner pid>_<token>: count only these processes' own, so a
    # test run beside this one (its pools make segments too) cannot change the count.
    prefix = len(shm.PREFIX)
    return {s for s in shm.list_segments() if int(s[prefix:].split("_", 1)[0]) in pids}


def test_close_leaves_no_segments_and_no_processes_behind():
    before = _processes()
    env = RayVecRetroEnv(GAME, 2, envs_per_actor=1, observe=False)
    env.reset()
    started = {p for p in _shard_processes(before) if _mine(p)}
    assert len(started) >= 2 + 2  # at least the 2 workers and the 2 trackers
    # Ray may run an actor in a process it started earlier: the actors are the parents.
    actors = {_parent(p) for p in started} | started
    assert len(_segments_of(actors)) == 2  # one per shard, owned by its actor
    env.close()
    assert _segments_of(actors) == set()
    deadline = time.monotonic() + 20
    while (left := started & set(_processes())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, [_processes().get(p) for p in left]


def test_a_timed_out_step_does_not_shift_the_next_results():
    # The late reply to the timed-out step must be skipped, not returned by the next step.
    options = {"frameskip": 30, "grayscale": True, "resize": (42, 42)}
    batches = acts(2, 2, seed=3)
    with VecRetroEnv(GAME, 2, **options) as local:
        local.reset(seed=1)
        local.step(batches[0])
        expected = local.step(batches[1])[0].copy()
    env = RayVecRetroEnv(GAME, 2, envs_per_actor=1, **options)
    try:
        env.reset(seed=1)
        env.step_async(batches[0])
        with pytest.raises(TimeoutError, match="No result within 0 s"):
            env.step_wait(timeout=0)
        obs, *_ = env.step(batches[1])
        np.testing.assert_array_equal(obs, expected)
    finally:
        env.close()


def test_bad_actions_are_refused_by_the_driver_naming_the_env():
    # The driver checks actions as the pool does (fastretro/runtime/contract.py), before any
    # shard sees them: the env is counted over the whole pool, not within its shard.
    env = RayVecRetroEnv(GAME, 2, envs_per_actor=1, actions="discrete", observe=False)
    try:
        env.reset()
        high = env.single_action_space.n
        with pytest.raises(
            InvalidArgumentError,
            match=re.escape(f"Expected actions in [0, {high}) for this action set, got {high} "),
        ) as caught:
            env.step(np.array([0, high]))
        assert str(caught.value).endswith("at env 1")
        assert not getattr(caught.value, "__notes__", None)
        env.step(np.array([0, 1]))  # nothing was sent: the shards are still usable
    finally:
        env.close()


def test_the_direct_connections_do_not_wait_for_delayed_acks():
    # multiprocessing.connection writes a large message in two parts; with Nagle's algorithm
    # the second part waits for the peer's delayed ACK of the first (~10 ms per step).
    import socket

    env = RayVecRetroEnv(GAME, 2, envs_per_actor=1, observe=False)
    try:
        for link in env._links:
            with socket.socket(fileno=os.dup(link.conn.fileno())) as sock:
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        env.close()


def test_strangers_on_a_shards_port_do_not_keep_the_driver_out(monkeypatch):
    # Whoever reaches the shard's port first (silent, or sending garbage) is dropped, and the
    # shard goes on listening for its driver.
    import socket

    from fastretro.integrations import ray_link

    connect = ray_link._connect
    strangers = []

    def connect_after_strangers(address, key, shard, timeout):
        strangers.append(socket.create_connection(address, timeout=5))
        garbage = socket.create_connection(address, timeout=5)
        garbage.sendall(b"\x00\x00\x00\x10" + os.urandom(80))
        strangers.append(garbage)
        time.sleep(0.2)
        return connect(address, key, shard, timeout)

    monkeypatch.setattr(ray_link, "_connect", connect_after_strangers)
    env = RayVecRetroEnv(GAME, 2, envs_per_actor=1, observe=False)
    try:
        assert len(strangers) == 4
        env.reset(seed=0)
        env.step(acts(1, 2)[0])
    finally:
        env.close()
        for sock in strangers:
            sock.close()


def test_a_shard_that_cannot_build_its_pool_raises_the_pools_error():
    from fastretro import StateNotFoundError

    before = _processes()
    with pytest.raises(
        StateNotFoundError,
        match=re.escape(
            "Unknown state 'NoSuchLevel' for Airstriker-Genesis-v0; expected one of ['Level1']"
        ),
    ) as caught:
        RayVecRetroEnv(GAME, 2, [None, "NoSuchLevel"], envs_per_actor=1)
    assert caught.value.__notes__ == ["Raised while shard 1 (envs 1..1) built its pool."]
    deadline = time.monotonic() + 20  # shard 0's actor and workers are ended too
    while (left := _shard_processes(before)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left


def test_bad_arguments():
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape("Expected transport to be one of ['ray', 'socket'], got 'zmq'"),
    ):
        RayVecRetroEnv(GAME, 2, transport="zmq")
    with pytest.raises(InvalidArgumentError, match="Expected envs_per_actor >= 1, got 0"):
        RayVecRetroEnv(GAME, 2, envs_per_actor=0)
    with pytest.raises(
        InvalidArgumentError, match=re.escape("RayVecRetroEnv does not take 'batch_size'")
    ):
        RayVecRetroEnv(GAME, 2, batch_size=1)
    with pytest.raises(
        InvalidArgumentError, match=re.escape("RayVecRetroEnv does not take 'snapshot_best'")
    ):
        RayVecRetroEnv(GAME, 2, snapshot_best=True)


def test_without_ray_the_import_says_how_to_install_it():
    code = "import sys; sys.modules['ray'] = None; import fastretro.integrations.ray"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert 'pip install "fastretro[ray]"' in out.stderr


def test_async_mode_returns_whichever_shard_is_ready():
    env = RayVecRetroEnv(GAME, 4, envs_per_actor=2, observe=False)
    try:
        env.async_reset(seed=0)
        seen = []
        for _ in range(10):
            _, rew, term, trunc, infos = env.recv()
            ids = infos["env_id"]
            assert ids.tolist() in ([0, 1], [2, 3]) and rew.shape == (2,)
            seen.append(ids[0])
            env.send(np.zeros((2, 12), np.uint8), ids)
        assert set(seen) == {0, 2}
        with pytest.raises(
            InvalidArgumentError,
            match=re.escape("Expected whole shards in env_ids: shard 0 is envs 0..1"),
        ):
            env.send(np.zeros((1, 12), np.uint8), [0])
    finally:
        env.close()


@pytest.mark.parametrize("transport", ["socket", "ray"])
def test_recv_serves_the_longest_running_of_the_ready_shards(transport):
    # Both shards are ready at every recv (the sleep): taking the first one in a fixed order
    # would serve shard 0 forever and starve shard 1.
    env = RayVecRetroEnv(GAME, 4, envs_per_actor=2, observe=False, transport=transport)
    try:
        env.async_reset(seed=0)
        seen = []
        for _ in range(6):
            time.sleep(0.3)
            *_, infos = env.recv()
            seen.append(int(infos["env_id"][0]))
            env.send(np.zeros((2, 12), np.uint8), infos["env_id"])
        assert seen == [0, 2, 0, 2, 0, 2]
    finally:
        env.close()
