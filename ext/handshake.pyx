# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The parent/worker handshake: process-shared semaphores and one atomic counter in shared memory.

Why semaphores: measured on this project's 2-core machine (bench/bench_handshake.py), a
round trip through a process-shared ``sem_t`` costs a futex wake plus a futex wait, with no
syscall at all when the other side is already waiting or has already posted; pipes and
eventfd always pay a read and a write syscall, and ``multiprocessing`` pipes add pickling on
top. Blocking (never spinning) matters as much: with 32 workers on 2 cores, a spinning waiter
steals the core from the emulator it is waiting for.

Protocol for a batch of ``count`` workers: the parent stores ``pending = count`` and posts each
worker's semaphore; each worker does its command, then decrements ``pending``; the one that
brings it to zero posts the parent's semaphore. So the parent wakes once per batch, not once per
worker. ``sem_post``/``sem_wait`` are full memory barriers, and the counter is acquire-release,
so every worker's writes to shared memory are visible to the parent when it wakes.
"""

from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EINTR, ETIMEDOUT, errno
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from sync cimport (
    fr_atomic_load,
    fr_atomic_store,
    fr_atomic_sub_fetch,
    sem_clockwait,
    sem_destroy,
    sem_getvalue,
    sem_init,
    sem_post,
    sem_t,
    sem_trywait,
)

# Each semaphore gets its own cache line, so workers posting their neighbours' semaphores do
# not bounce one line between cores.
cdef enum:
    _SEM_STRIDE = 64
SEM_STRIDE = _SEM_STRIDE
assert sizeof(sem_t) <= _SEM_STRIDE


cdef inline void _deadline(timespec* ts, double timeout) noexcept nogil:
    clock_gettime(CLOCK_MONOTONIC, ts)
    cdef long sec = <long>timeout
    cdef long nsec = <long>((timeout - sec) * 1e9)
    ts.tv_sec += sec
    ts.tv_nsec += nsec
    if ts.tv_nsec >= 1000000000:
        ts.tv_sec += 1
        ts.tv_nsec -= 1000000000


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


cdef class Handshake:
    """Semaphores and the pending counter of one pool, viewed over shared memory.

    Args:
        sems: uint8 array of shape (num_workers + 1, SEM_STRIDE); row ``num_workers`` is the
            parent's semaphore.
        counter: int32 array of shape (>= 1,); element 0 is the pending-worker counter.
    """

    cdef unsigned char* _sems
    cdef int* _pending
    cdef readonly int num_workers
    cdef object _sems_buf
    cdef object _counter_buf

    def __cinit__(self, unsigned char[:, ::1] sems, int[::1] counter):
        if sems.shape[1] != SEM_STRIDE:
            raise ValueError(f"Expected semaphore rows of {SEM_STRIDE} bytes, got {sems.shape[1]}")
        self._sems = &sems[0, 0]
        self._pending = &counter[0]
        self.num_workers = sems.shape[0] - 1
        # Hold the buffers so the memory outlives this object's pointers.
        self._sems_buf = sems
        self._counter_buf = counter

    cdef inline sem_t* _sem(self, int i) noexcept nogil:
        return <sem_t*>(self._sems + i * _SEM_STRIDE)

    def init(self):
        """Initialise every semaphore to zero (the parent does this once, before any worker attaches)."""
        cdef int i
        for i in range(self.num_workers + 1):
            if sem_init(self._sem(i), 1, 0) != 0:
                raise OSError(errno, "sem_init failed")
        fr_atomic_store(self._pending, 0)

    def destroy(self):
        """Destroy every semaphore (the parent does this once, after every worker has stopped)."""
        cdef int i
        for i in range(self.num_workers + 1):
            sem_destroy(self._sem(i))

    # -- parent side -------------------------------------------------------------------------

    def begin(self, int count):
        """Arm the batch: the parent will be woken once ``count`` workers have called ``done``."""
        fr_atomic_store(self._pending, count)

    def post(self, int worker):
        """Wake one worker."""
        sem_post(self._sem(worker))

    def post_all(self):
        """Wake every worker (lock-step batches)."""
        cdef int i
        with nogil:
            for i in range(self.num_workers):
                sem_post(self._sem(i))

    def post_many(self, const long[::1] workers):
        """Wake the listed workers."""
        cdef Py_ssize_t k
        with nogil:
            for k in range(workers.shape[0]):
                sem_post(self._sem(<int>workers[k]))

    def wait_parent(self, double timeout):
        """Wait until the armed batch completes; True if it did, False after ``timeout`` seconds."""
        return _wait(self._sem(self.num_workers), timeout) == 1

    def pending(self):
        """Workers of the armed batch that have not finished yet."""
        return fr_atomic_load(self._pending)

    def drain_parent(self):
        """Consume a stale parent post (after a timeout, before the pool is torn down)."""
        while sem_trywait(self._sem(self.num_workers)) == 0:
            pass

    # -- worker side -------------------------------------------------------------------------

    def wait_worker(self, int worker, double timeout):
        """Wait for the parent to post this worker; True if posted, False after ``timeout``."""
        return _wait(self._sem(worker), timeout) == 1

    def done(self):
        """Mark this worker's command finished; the last worker of the batch wakes the parent."""
        if fr_atomic_sub_fetch(self._pending, 1) == 0:
            sem_post(self._sem(self.num_workers))

    cdef void done_nogil(self) noexcept nogil:
        if fr_atomic_sub_fetch(self._pending, 1) == 0:
            sem_post(self._sem(self.num_workers))
