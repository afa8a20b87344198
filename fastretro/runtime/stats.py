"""Where a pool's time goes: the per-worker timing counters and :class:`PoolStats`.

Each worker keeps one row of a shared ``timing`` array (int64, written by ext/worker_loop.pyx):
nanoseconds spent emulating, reading RAM/reward, producing observations, resetting and waiting
for the parent, and step/frame/reset counts. The parent keeps the time it spent in the pool (its
clock) and reads the workers' CPU time from /proc (Linux; 10 ms resolution) when asked.
:class:`PoolCounters` holds both for a pool; ``VecRetroEnv.stats()`` turns them into a
:class:`PoolStats`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastretro.runtime.protocol import TIMING_STRIDE, TIMING_WIDTH, Timing

# Columns of the timing array (fastretro/runtime/protocol.py defines them for both sides).
T_EMULATE, T_RAM, T_OBS, T_RESET, T_WAIT = (
    Timing.EMULATE,
    Timing.RAM,
    Timing.OBS,
    Timing.RESET,
    Timing.WAIT,
)
N_STEPS, N_FRAMES, N_RESETS = Timing.STEPS, Timing.FRAMES, Timing.RESETS
T_WAKE, N_WAKEUPS = Timing.WAKE, Timing.WAKEUPS
__all__ = [
    "TIMING_STRIDE",
    "TIMING_WIDTH",
    "PoolCounters",
    "PoolStats",
    "Stopwatch",
    "available_cores",
]

#: Columns of the parent's clock: ns staging actions, waking workers, waiting for them and
#: collecting results, and the batches it waited for.
STAGE, WAKE, WAIT, COLLECT, BATCHES = range(5)

PHASES = ("emulate", "ram", "obs", "reset")


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a pool's counters since it started (or since ``reset_stats``).

    Per-worker arrays have shape ``(num_envs,)``; times are seconds of wall-clock (``cpu_s``:
    CPU seconds). A worker's phases are timed in wall-clock, so on an oversubscribed machine
    (more envs than cores) they include time the worker was runnable but descheduled; ``cpu_s``
    does not.
    """

    wall_s: float
    """Seconds since the counters started."""
    emulate_s: np.ndarray
    """In the emulator core (``em.step``; the movie's frame too when recording)."""
    ram_s: np.ndarray
    """Reading the info variables and evaluating reward and done (``data.update_ram`` for Lua)."""
    obs_s: np.ndarray
    """Grabbing the screen and running the preprocessing kernel into shared memory."""
    reset_s: np.ndarray
    """Resetting the emulator, first observation of each episode included."""
    wait_s: np.ndarray
    """Blocked, waiting for the parent's next command (the agent's turn, or other envs)."""
    cpu_s: np.ndarray
    """CPU time the worker process used (from /proc; NaN where that cannot be read)."""
    steps: np.ndarray
    """Agent steps served."""
    frames: np.ndarray
    """Emulator frames run."""
    resets: np.ndarray
    """Episodes started."""
    parent_wait_s: float
    """The parent's time in the pool waking workers and waiting for them (step, recv, reset)."""
    cores: int
    """CPU cores available to this process."""
    parent_stage_s: float = 0.0
    """The parent's time checking and writing actions (``step_async``, ``send``)."""
    parent_wake_s: float = 0.0
    """The parent's time in the wake-up call (part of ``parent_wait_s``)."""
    parent_collect_s: float = 0.0
    """The parent's time reading results and building observations and infos."""
    batches: int = 0
    """Waits the parent made (lock-step steps and resets, async ``recv`` calls)."""
    wake_s: np.ndarray | None = None
    """Per env: from the parent's wake-up call to its worker starting on the env's command."""
    wakeups: np.ndarray | None = None
    """Per env: commands run (what ``wake_s`` sums over)."""

    @classmethod
    def from_counters(
        cls,
        timing: np.ndarray,
        cpu_s: np.ndarray,
        wall_ns: int,
        parent_wait_ns: int,
        cores: int | None = None,
        parent: dict[str, int] | None = None,
    ) -> PoolStats:
        """Build from a copy of the shared ``timing`` array (int64, one row per env).

        ``parent``: the parent's own counters (``stage``, ``wake``, ``collect`` ns and
        ``batches``).
        """
        parent = parent or {}
        t = np.asarray(timing, dtype=np.int64)[:, :TIMING_WIDTH]
        sec = t.astype(np.float64) / 1e9
        return cls(
            wall_s=wall_ns / 1e9,
            emulate_s=sec[:, T_EMULATE],
            ram_s=sec[:, T_RAM],
            obs_s=sec[:, T_OBS],
            reset_s=sec[:, T_RESET],
            wait_s=sec[:, T_WAIT],
            cpu_s=np.asarray(cpu_s, dtype=np.float64),
            steps=t[:, N_STEPS].copy(),
            frames=t[:, N_FRAMES].copy(),
            resets=t[:, N_RESETS].copy(),
            parent_wait_s=parent_wait_ns / 1e9,
            cores=cores or available_cores(),
            parent_stage_s=parent.get("stage", 0) / 1e9,
            parent_wake_s=parent.get("wake", 0) / 1e9,
            parent_collect_s=parent.get("collect", 0) / 1e9,
            batches=int(parent.get("batches", 0)),
            wake_s=sec[:, T_WAKE],
            wakeups=t[:, N_WAKEUPS].copy(),
        )

    @property
    def busy_s(self) -> np.ndarray:
        """Per worker: emulate + ram + obs + reset."""
        return self.emulate_s + self.ram_s + self.obs_s + self.reset_s

    @property
    def utilization(self) -> float:
        """Workers' CPU time over what the machine's cores could give them (0 to 1)."""
        if self.wall_s <= 0:
            return 0.0
        used = np.nansum(self.cpu_s) / (min(self.cores, len(self.cpu_s)) * self.wall_s)
        # CPU time comes in the kernel's clock ticks (10 ms): over a window of a few ticks the
        # workers' sum can pass what the cores could give.
        return float(min(used, 1.0))

    @property
    def frames_per_s(self) -> float:
        """Emulator frames per second of wall-clock, all workers together."""
        return float(self.frames.sum() / self.wall_s) if self.wall_s > 0 else 0.0

    def overhead(self) -> dict[str, float]:
        """Microseconds per batch the pool's own work costs, by where it goes.

        ``stage``, ``wake`` and ``collect``: the parent's time in those parts of a call;
        ``wake_latency``: from the wake-up call to a worker starting on it (mean over the
        envs' commands); ``scheduling``: the parent's wait beyond the workers' busy time
        shared out over the cores they can use (switching between workers on a core, and
        envs that finish late).
        """
        n = max(self.batches, 1)
        busy = float(self.busy_s.sum()) / min(self.cores, len(self.steps))
        wakeups = int(self.wakeups.sum()) if self.wakeups is not None else 0
        waited = self.parent_wait_s - self.parent_wake_s
        return {
            "stage": 1e6 * self.parent_stage_s / n,
            "wake": 1e6 * self.parent_wake_s / n,
            "collect": 1e6 * self.parent_collect_s / n,
            "wake_latency": 1e6 * float(self.wake_s.sum()) / wakeups if wakeups else 0.0,
            "scheduling": 1e6 * max(0.0, waited - busy) / n,
        }

    def phase_fractions(self) -> dict[str, float]:
        """Share of the workers' busy time in each phase (sums to 1 when anything ran)."""
        totals = {p: float(getattr(self, f"{p}_s").sum()) for p in PHASES}
        busy = sum(totals.values())
        return {p: (v / busy if busy > 0 else 0.0) for p, v in totals.items()}

    def summary(self) -> str:
        """A few lines for humans."""
        frac = self.phase_fractions()
        phases = ", ".join(f"{p} {100 * f:.0f}%" for p, f in frac.items())
        return (
            f"{len(self.steps)} workers, {self.wall_s:.1f} s: {int(self.steps.sum())} steps, "
            f"{self.frames_per_s:,.0f} frames/s; workers' CPU use {100 * self.utilization:.0f}% "
            f"of {min(self.cores, len(self.steps))} core(s); busy time: {phases}; "
            f"parent blocked {self.parent_wait_s:.2f} s"
        )


class PoolCounters:
    """A pool's counters and where :meth:`read` counts them from (its start, or :meth:`restart`).

    Args:
        timing: the shared ``timing`` array, one row per env.
        workers: the pool's :class:`~fastretro.runtime.workers.WorkerSet` (its ``cpu_ids``,
            ``envs(w)`` and ``worker_of(env)``).
    """

    def __init__(self, timing: np.ndarray, workers: Any) -> None:
        self.timing = timing
        self.workers = workers
        #: The parent's clock (columns :data:`STAGE` ... :data:`BATCHES`): one array, shared
        #: with the supervisor and the compiled step, which add to it (hence int64).
        self.clock = np.zeros(5, np.int64)
        self.restart()

    def restart(self) -> None:
        """Count from now."""
        self._timing_base = self.timing.copy()
        self._cpu_base_pids, self._cpu_base = self._worker_cpu()
        self._start_ns = time.monotonic_ns()
        self.clock[:] = 0

    def read(self) -> PoolStats:
        """The counters since they started."""
        clock = self.clock
        pids, cpu = self._worker_cpu()
        # A restarted worker is a new process: its CPU time counts from its start.
        base = np.where(pids == self._cpu_base_pids, self._cpu_base, 0.0)
        return PoolStats.from_counters(
            self.timing - self._timing_base,
            self._per_env(cpu - base),
            time.monotonic_ns() - self._start_ns,
            int(clock[WAKE] + clock[WAIT]),
            parent={
                "stage": int(clock[STAGE]),
                "wake": int(clock[WAKE]),
                "collect": int(clock[COLLECT]),
                "batches": int(clock[BATCHES]),
            },
        )

    def _worker_cpu(self) -> tuple[np.ndarray, np.ndarray]:
        ids = self.workers.cpu_ids  # pids, or a thread's id for a worker thread
        return ids, np.array([process_cpu_seconds(i) for i in ids])

    def _per_env(self, per_worker: np.ndarray) -> np.ndarray:
        # A worker's CPU time, shared evenly among its envs (the totals stay exact).
        workers = self.workers
        return np.array(
            [
                per_worker[w] / len(workers.envs(w))
                for w in map(workers.worker_of, range(len(self.timing)))
            ]
        )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc); NaN if unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces: fields are counted after its closing ')'.
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return float("nan")


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Stopwatch:
    """Named wall-clock accumulators for an agent's own phases (``inference``, ``learning``).

    ``with watch("inference"): ...`` adds the block's duration to ``watch.seconds["inference"]``.
    Agents take an optional stopwatch so ``fastretro profile`` can split their time.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str) -> _Section:
        """A context manager that adds its block's duration to ``seconds[name]``."""
        return _Section(self, name)


class _Section:
    __slots__ = ("watch", "name", "start")

    def __init__(self, watch: Stopwatch, name: str) -> None:
        self.watch, self.name = watch, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        s = self.watch.seconds
        s[self.name] = s.get(self.name, 0.0) + time.perf_counter() - self.start
