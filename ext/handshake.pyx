# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The parent/worker handshake: futexes, a process-shared semaphore and atomics in shared memory.

Why these primitives (bench/bench_parent.py measures them): a futex round trip between two
processes costs ~9.5 us, with no syscall at all on the side that finds the word already
changed; pipes and eventfd always pay a read and a write syscall, and ``multiprocessing`` pipes
add pickling on top. Waking N workers with N semaphore posts cost ~3.3 us per post, so a batch
wakes every worker with ONE ``FUTEX_WAKE`` on a shared epoch word instead. Blocking (never
spinning) matters as much: with 32 workers on 2 cores, a spinning waiter steals the core from
the emulator it is waiting for.

Protocol: the parent writes each target env's command word, bumps the epoch and wakes all
waiters; a worker woken by a new epoch runs the command of each of its envs that has one, and
for each env appends it to the completion queue and decrements ``pending``. The parent arms
``pending`` with the number of completions it waits for (``arm``; completions that came first
count towards it); the completion that brings it to zero posts the parent's semaphore. So the
parent wakes once per batch, not once per env. The epoch and the counter are acquire-release
atomics and ``sem_post``/``sem_wait`` are full barriers, so every write to shared memory made
before a wake is visible to the woken side.
"""

from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.errno cimport EINTR, ETIMEDOUT, errno
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef extern from "<sched.h>" nogil:
    int sched_yield()

from sync cimport (
    FUTEX_WAIT,
    FUTEX_WAKE,
    SYS_futex,
    fr_atomic_add_fetch,
    fr_atomic_fetch_add,
    fr_atomic_load,
    fr_atomic_load64,
    fr_atomic_store,
    fr_atomic_store64,
    fr_cpu_relax,
    fr_atomic_sub_fetch,
    sem_clockwait,
    sem_destroy,
    sem_getvalue,
    sem_init,
    sem_post,
    sem_t,
    sem_trywait,
    syscall,
)

from fastretro.runtime.protocol import SEM_STRIDE, Command

# The command code step() writes, read from fastretro/runtime/protocol.py: one source for both
# sides of the shared memory.
cdef int CMD_STEP = Command.STEP


def protocol_codes():
    """The codes this module acts on, as read at import (tests compare them with protocol.py)."""
    return {"Command": {"STEP": CMD_STEP}}

# The semaphore gets a cache line of its own (fastretro/runtime/protocol.py sizes it).
assert sizeof(sem_t) <= SEM_STRIDE


cdef inline void _deadline(timespec* ts, double timeout) noexcept nogil:
    clock_gettime(CLOCK_MONOTONIC, ts)
    cdef long sec = <long>timeout
    cdef long nsec = <long>((timeout - sec) * 1e9)
    ts.tv_sec += sec
    ts.tv_nsec += nsec
    if ts.tv_nsec >= 1000000000:
        ts.tv_sec += 1
        ts.tv_nsec -= 1000000000


cdef inline long long _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef int _spin_sem(sem_t* sem, long long spin_ns) noexcept nogil:
    """Try ``sem`` for up to ``spin_ns`` without sleeping; 1 if taken (yielding between tries)."""
    cdef long long end = _now_ns() + spin_ns
    cdef int k
    while True:
        for k in range(64):
            if sem_trywait(sem) == 0:
                return 1
            fr_cpu_relax()
        if _now_ns() >= end:
            return 0
        sched_yield()


cdef int _spin_epoch(int* epoch, int seen, long long spin_ns) noexcept nogil:
    """Watch ``*epoch`` for up to ``spin_ns`` without sleeping; 1 if it changed.

    It yields the core between looks, so a process that shares the core (the parent, woken by
    the batch's last completion) runs at once rather than after the spin.
    """
    cdef long long end = _now_ns() + spin_ns
    cdef int k
    while True:
        for k in range(64):
            if fr_atomic_load(epoch) != seen:
                return 1
            fr_cpu_relax()
        if _now_ns() >= end:
            return 0
        sched_yield()


cdef int _wait(sem_t* sem, double timeout) except -1:
    """Wait on ``sem`` for at most ``timeout`` seconds, GIL released; 1 if posted, 0 on timeout."""
    cdef timespec ts
    cdef int rc, err
    if sem_trywait(sem) == 0:
        return 1
    _deadline(&ts, timeout)
    while True:
        with nogil:
            rc = sem_clockwait(sem, CLOCK_MONOTONIC, &ts)
            err = errno
        if rc == 0:
            return 1
        if err == ETIMEDOUT:
            return 0
        if err == EINTR:
            # A signal arrived (Ctrl-C): let Python run its handler, which may raise.
            PyErr_CheckSignals()
            continue
        raise OSError(err, "sem_clockwait failed")


cdef int _wait_epoch(int* epoch, int seen, double timeout) except -1:
    """Wait until ``*epoch != seen``, GIL released; 1 if it changed, 0 after ``timeout`` seconds."""
    cdef timespec ts
    cdef long rc
    cdef int err
    if fr_atomic_load(epoch) != seen:
        return 1
    ts.tv_sec = <long>timeout
    ts.tv_nsec = <long>((timeout - ts.tv_sec) * 1e9)
    while fr_atomic_load(epoch) == seen:
        with nogil:
            # FUTEX_WAIT sleeps only if the word still equals ``seen``: no lost wake-up.
            rc = syscall(SYS_futex, epoch, FUTEX_WAIT, seen, &ts, NULL, 0)
            err = errno
        if rc == -1:
            if err == ETIMEDOUT:
                return fr_atomic_load(epoch) != seen
            if err == EINTR:
                PyErr_CheckSignals()
            # EAGAIN: the epoch changed before we slept; the loop condition sees it.
    return 1


cdef class Handshake:
    """Semaphores and the pending counter of one pool, viewed over shared memory.

    Args:
        sem: uint8 array of SEM_STRIDE bytes holding the parent's semaphore.
        counter: int32 array of shape (>= 48,): element 0 is the pending-completion counter,
            element 16 (its own cache line) the wake-up epoch, element 32 the tail of the
            completion queue, elements 40-41 the time of the last wake-up (int64 ns,
            CLOCK_MONOTONIC: workers measure how long a wake-up takes to reach them).
        queue: int32 array of shape (num_envs,), the completion queue: envs are appended
            (``env + 1``) as they finish, so the parent can take the first M finishers in order
            (async mode) or just count them (lock-step).
    """

    cdef sem_t* _parent
    cdef int* _pending
    cdef int* _epoch
    cdef int* _tail
    cdef int* _queue
    cdef long long* _woken_at
    cdef int _queue_len
    # Completions taken so far; unsigned, so it wraps at 2^32 exactly as the workers' tail
    # does and both keep agreeing on slot = count % queue_len after days of running.
    cdef unsigned int _head
    cdef int _seen
    cdef public long long spin_misses
    """Parent spins that ended without the batch, then slept (the pool backs off on them)."""
    cdef object _sem_buf
    cdef object _counter_buf
    cdef object _queue_buf

    def __cinit__(self, unsigned char[::1] sem, int[::1] counter, int[::1] queue=None):
        if sem.shape[0] != SEM_STRIDE:
            raise ValueError(f"Expected a semaphore of {SEM_STRIDE} bytes, got {sem.shape[0]}")
        self._parent = <sem_t*>&sem[0]
        if counter.shape[0] < 48:
            raise ValueError(f"Expected a counter array of >= 48 int32, got {counter.shape[0]}")
        self._pending = &counter[0]
        self._epoch = &counter[16]
        self._tail = &counter[32]
        self._woken_at = <long long*>&counter[40]
        self._queue_len = 0 if queue is None else queue.shape[0]
        self._queue = &queue[0] if self._queue_len > 0 else NULL
        self._head = 0
        self._seen = fr_atomic_load(self._epoch)
        # Hold the buffers so the memory outlives this object's pointers.
        self._sem_buf = sem
        self._counter_buf = counter
        self._queue_buf = queue

    def init(self):
        """Initialise the semaphore and counters (the parent, once, before any worker attaches)."""
        if sem_init(self._parent, 1, 0) != 0:
            raise OSError(errno, "sem_init failed")
        fr_atomic_store(self._pending, 0)
        fr_atomic_store(self._epoch, 0)
        fr_atomic_store(self._tail, 0)
        self._head = 0

    def destroy(self):
        """Destroy the semaphore (the parent, once, after every worker has stopped)."""
        sem_destroy(self._parent)

    # -- parent side -------------------------------------------------------------------------

    def begin(self, int count):
        """Arm the batch: the parent will be woken once ``count`` workers have called ``done``."""
        fr_atomic_store(self._pending, count)

    cdef void _wake(self) noexcept nogil:
        fr_atomic_store64(self._woken_at, _now_ns())
        fr_atomic_add_fetch(self._epoch, 1)
        syscall(SYS_futex, self._epoch, FUTEX_WAKE, 0x7FFFFFFF, NULL, NULL, 0)

    cdef void _take(self, int count, int* out) noexcept nogil:
        cdef int i, value
        cdef unsigned int slot
        for i in range(count):
            slot = (self._head + <unsigned int>i) % <unsigned int>self._queue_len
            # A worker reserves its queue slot just before writing it: if this one is still
            # being written, the wait is a few instructions long.
            value = fr_atomic_load(&self._queue[slot])
            while value == 0:
                value = fr_atomic_load(&self._queue[slot])
            fr_atomic_store(&self._queue[slot], 0)
            if out != NULL:
                out[i] = value - 1
        self._head += <unsigned int>count

    def wake(self):
        """Wake every waiting worker with one syscall; each runs its command word, if set."""
        with nogil:
            self._wake()

    def wait_parent(self, double timeout, double spin=0.0):
        """Wait until the armed batch completes; True if it did, False after ``timeout`` seconds.

        ``spin``: seconds to watch for the completion on this core before sleeping (only where
        the parent has a core of its own: a spinning parent takes it from an emulator
        otherwise).
        """
        cdef int got = 0
        if spin > 0:
            with nogil:
                got = _spin_sem(self._parent, <long long>(spin * 1e9))
            if got:
                return True
            self.spin_misses += 1
        return _wait(self._parent, timeout) == 1

    def arm(self, int count):
        """Async mode: also wake the parent after ``count`` more completions.

        Completions that arrived beyond the previous batch count towards this one. Returns True
        if ``count`` completions are already in the queue (``wait_parent`` must then not be
        called: nobody will post).
        """
        return fr_atomic_add_fetch(self._pending, count) <= 0

    def take(self, int count, int[::1] out=None):
        """Move the next ``count`` finished envs from the queue to ``out`` (or drop them).

        Call only once ``count`` completions are known (``arm`` returned True or
        ``wait_parent`` did).
        """
        cdef int* ptr = NULL
        if out is not None and count > 0:
            if out.shape[0] < count:
                raise ValueError(f"take: out holds {out.shape[0]} envs, {count} asked")
            ptr = &out[0]
        with nogil:
            self._take(count, ptr)

    def pending(self):
        """Completions the armed batch still waits for (negative: already queued, unarmed)."""
        return fr_atomic_load(self._pending)

    def drain_parent(self):
        """Consume a stale parent post (after a timeout, before the pool is torn down)."""
        while sem_trywait(self._parent) == 0:
            pass

    # -- worker side -------------------------------------------------------------------------

    def wait_command(self, double timeout, double spin=0.0):
        """Wait for the parent's next wake-up; True if woken, False after ``timeout`` seconds.

        ``spin``: seconds to watch for it on this core before sleeping (only where every
        worker and the parent have a core of their own).
        """
        cdef int got = 0
        if spin > 0:
            with nogil:
                got = _spin_epoch(self._epoch, self._seen, <long long>(spin * 1e9))
        if got or _wait_epoch(self._epoch, self._seen, timeout):
            self._seen = fr_atomic_load(self._epoch)
            return True
        return False

    def woken_at(self):
        """When the parent last woke the workers (CLOCK_MONOTONIC ns)."""
        return fr_atomic_load64(self._woken_at)

    def done(self, int env):
        """Mark env ``env``'s command finished; the last completion of a batch wakes the parent.

        Workers call it for their envs; the parent calls it for the unfinished envs of a worker
        that died, once its replacement has reset them, so every command completes once.
        """
        cdef unsigned int slot
        if self._queue_len > 0:
            slot = <unsigned int>fr_atomic_fetch_add(self._tail, 1) % <unsigned int>self._queue_len
            fr_atomic_store(&self._queue[slot], env + 1)
        if fr_atomic_sub_fetch(self._pending, 1) == 0:
            sem_post(self._parent)



cdef class BatchIO:
    """The parent's side of a step over the shared arrays: stage the actions, collect results.

    ``VecRetroEnv.step`` (every env) and async ``send``/``recv`` (the envs ``ids``) with index
    actions (the discrete action sets) or 0/1 buttons each take one C loop here to stage and
    one to collect, in place of a dozen small numpy operations that cost ~45 us per step on
    this machine once the parent has slept through the emulators' turn and its caches are cold
    (bench/README.md). Actions come as ``buttons`` (uint8 rows of 0/1) or ``indices`` (int64,
    in ``[0, high)``), the other None.

    Args:
        actions: int64 ``(num_envs, groups)``; cmd, slot, status: int32 ``(num_envs,)``;
        rewards: float64 ``(num_envs,)``; terminated, truncated: uint8 ``(num_envs,)``.
    """

    cdef int64_t[:, ::1] _actions
    cdef int32_t[::1] _cmd
    cdef int32_t[::1] _slot
    cdef int32_t[::1] _status
    cdef double[::1] _rewards
    cdef uint8_t[::1] _terminated
    cdef uint8_t[::1] _truncated
    cdef Py_ssize_t _n

    def __cinit__(
        self,
        int64_t[:, ::1] actions,
        int32_t[::1] cmd,
        int32_t[::1] slot,
        int32_t[::1] status,
        double[::1] rewards,
        uint8_t[::1] terminated,
        uint8_t[::1] truncated,
    ):
        self._n = cmd.shape[0]
        for name, size in (
            ("actions", actions.shape[0]),
            ("slot", slot.shape[0]),
            ("status", status.shape[0]),
            ("rewards", rewards.shape[0]),
            ("terminated", terminated.shape[0]),
            ("truncated", truncated.shape[0]),
        ):
            if size != self._n:
                raise ValueError(f"Expected {name} with {self._n} rows, got {size}")
        self._actions, self._cmd, self._slot, self._status = actions, cmd, slot, status
        self._rewards, self._terminated, self._truncated = rewards, terminated, truncated

    cdef bint _fits(self, Py_ssize_t rows, const uint8_t[:, :] buttons, const int64_t[:] indices):
        """Whether the actions have ``rows`` rows of the shared array's width."""
        if buttons is None:
            return indices is not None and indices.shape[0] == rows and self._actions.shape[1] == 1
        return buttons.shape[0] == rows and buttons.shape[1] == self._actions.shape[1]

    cdef bint _valid(
        self, Py_ssize_t j, const uint8_t[:, :] buttons, const int64_t[:] indices, int64_t high
    ):
        """Whether row ``j`` of the actions is in range."""
        cdef Py_ssize_t b
        if buttons is None:
            return 0 <= indices[j] < high
        for b in range(buttons.shape[1]):
            if buttons[j, b] > 1:
                return False
        return True

    cdef void _write(
        self, Py_ssize_t i, Py_ssize_t j, const uint8_t[:, :] buttons, const int64_t[:] indices
    ):
        """Row ``j`` of the actions into env ``i``'s row of the shared array."""
        cdef Py_ssize_t b
        if buttons is None:
            self._actions[i, 0] = indices[j]
        else:
            for b in range(buttons.shape[1]):
                self._actions[i, b] = buttons[j, b]

    def stage(
        self,
        const uint8_t[:, :] buttons,
        const int64_t[:] indices,
        int64_t high,
        int slot,
        int command,
    ):
        """Lock-step: write every env's action, its frame-stack slot and its command.

        Returns -1, or the first env whose action is out of range; nothing is written then.
        """
        cdef Py_ssize_t i, n = self._n
        if not self._fits(n, buttons, indices):
            raise ValueError(f"Expected one action row per env ({n})")
        for i in range(n):
            if not self._valid(i, buttons, indices, high):
                return i
        for i in range(n):
            self._write(i, i, buttons, indices)
            self._slot[i] = slot
            self._cmd[i] = command
        return -1

    def send_rows(
        self,
        const int64_t[:] ids,
        const uint8_t[:, :] buttons,
        const int64_t[:] indices,
        int64_t high,
        int32_t[::1] slots,
        int depth,
        uint8_t[::1] in_flight,
        int command,
    ):
        """Async ``send``: write the action, slot and command of each env in ``ids``.

        Each env's frame-stack slot advances (``slots``: the parent's copy, ``depth`` slots)
        and it is marked in flight. Returns True once staged; False if any id is out of range,
        repeated or in flight, or any action is out of range: nothing is written then, and the
        caller's Python checks say what is wrong.
        """
        cdef Py_ssize_t j, i, m = ids.shape[0], n = self._n
        if m == 0 or slots.shape[0] != n or in_flight.shape[0] != n:
            return False
        if not self._fits(m, buttons, indices):
            return False
        for j in range(m):
            i = ids[j]
            if i < 0 or i >= n or in_flight[i] != 0 or not self._valid(j, buttons, indices, high):
                return False
        for j in range(m):  # distinct ids: mark each; a second mark finds a repeat
            i = ids[j]
            if in_flight[i] != 0:
                for i in range(j):
                    in_flight[ids[i]] = 0
                return False
            in_flight[i] = 1
        for j in range(m):
            i = ids[j]
            self._write(i, j, buttons, indices)
            slots[i] = (slots[i] + 1) % depth
            self._slot[i] = slots[i]
            self._cmd[i] = command
        return True

    def collect(
        self,
        double[::1] rewards,
        uint8_t[::1] terminated,
        uint8_t[::1] truncated,
        const int32_t[:] ids=None,
        uint8_t[::1] in_flight=None,
    ):
        """Copy the rewards and episode ends of every env (or of ``ids``, in that order, marking
        each no longer in ``in_flight``) into new arrays; return how many ended."""
        cdef Py_ssize_t j, i, m = self._n if ids is None else ids.shape[0]
        cdef int ended = 0
        if rewards.shape[0] != m or terminated.shape[0] != m or truncated.shape[0] != m:
            raise ValueError(f"Expected output arrays of {m} rows")
        if ids is not None and (in_flight is None or in_flight.shape[0] != self._n):
            raise ValueError(f"Expected in_flight of {self._n} rows with ids")
        for j in range(m):
            i = j
            if ids is not None:
                i = ids[j]
                if i < 0 or i >= self._n:
                    raise ValueError(f"Expected env ids in [0, {self._n}), got {i}")
                in_flight[i] = 0
            rewards[j] = self._rewards[i]
            terminated[j] = self._terminated[i] != 0
            truncated[j] = self._truncated[i] != 0
            ended += terminated[j] | truncated[j]
        return ended

    def step(
        self,
        Handshake hs,
        const uint8_t[:, :] buttons,
        const int64_t[:] indices,
        int64_t high,
        int slot,
        double poll,
        double spin,
        uint8_t[::1] in_flight,
        double[::1] rewards,
        uint8_t[::1] terminated,
        uint8_t[::1] truncated,
        int64_t[::1] clock,
    ):
        """Lock-step ``step`` in one call: stage every env's action, wake, wait, collect.

        The parent's whole side of a step with no Python in between: the actions are checked
        and written (:meth:`stage`), every env is marked in flight, the workers are woken,
        and the parent watches (``spin`` seconds) then sleeps (``poll`` seconds at most, GIL
        released) until every env has completed; the results are then copied as
        :meth:`collect` does. ``clock`` accumulates the parent's ns staging, waking, waiting
        and collecting, and counts the batch (five int64).

        Returns:
            The number of envs whose episode ended (>= 0); -1 if ``poll`` passed first (the
            batch stands: the caller watches the workers and waits on, then collects); or
            ``-2 - i`` when env ``i``'s action is out of range (nothing was written).
        """
        cdef Py_ssize_t i, n = self._n
        cdef long long t0 = _now_ns(), t1, t2, t3
        cdef int posted = 0
        cdef timespec ts
        if not self._fits(n, buttons, indices):
            raise ValueError(f"Expected one action row per env ({n})")
        if rewards.shape[0] != n or terminated.shape[0] != n or truncated.shape[0] != n:
            raise ValueError(f"Expected output arrays of {n} rows")
        for i in range(n):
            if not self._valid(i, buttons, indices, high):
                return -2 - i
        for i in range(n):
            self._write(i, i, buttons, indices)
            self._slot[i] = slot
            self._cmd[i] = CMD_STEP
            in_flight[i] = 1
        t1 = _now_ns()
        with nogil:
            hs._wake()
        t2 = _now_ns()
        clock[0] += t1 - t0
        clock[1] += t2 - t1
        clock[4] += 1
        if fr_atomic_add_fetch(hs._pending, <int>n) <= 0:
            posted = 1
        elif spin > 0:
            with nogil:
                posted = _spin_sem(hs._parent, <long long>(spin * 1e9))
            if not posted:
                hs.spin_misses += 1
        if not posted:
            posted = _wait(hs._parent, poll)
        t3 = _now_ns()
        clock[2] += t3 - t2
        if not posted:
            return -1
        with nogil:
            hs._take(<int>n, NULL)
        ended = self.collect(rewards, terminated, truncated)
        for i in range(n):
            in_flight[i] = 0
        clock[3] += _now_ns() - t3
        return ended

    def first_failed(self):
        """The first worker that reported a failure in its status word, or -1."""
        cdef Py_ssize_t i
        for i in range(self._n):
            if self._status[i] != 0:
                return i
        return -1
