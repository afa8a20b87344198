# Declarations of the C primitives the handshake is built on: process-shared POSIX
# semaphores (futex-backed on Linux) and atomic ints, all living in shared memory.
from posix.time cimport timespec

cdef extern from "<semaphore.h>" nogil:
    ctypedef struct sem_t:
        pass
    int sem_init(sem_t* sem, int pshared, unsigned int value)
    int sem_destroy(sem_t* sem)
    int sem_post(sem_t* sem)
    int sem_trywait(sem_t* sem)
    int sem_getvalue(sem_t* sem, int* value)
    int sem_clockwait(sem_t* sem, int clockid, const timespec* abstime)

cdef extern from "atomics.h" nogil:
    int fr_atomic_sub_fetch(int* p, int v)
    int fr_atomic_add_fetch(int* p, int v)
    int fr_atomic_fetch_add(int* p, int v)
    int fr_atomic_cas(int* p, int expected, int desired)
    void fr_atomic_store(int* p, int v)
    int fr_atomic_load(int* p)
    void fr_cpu_relax()
    long long fr_atomic_load64(long long* p)
    void fr_atomic_store64(long long* p, long long v)

cdef extern from "<linux/futex.h>" nogil:
    int FUTEX_WAIT
    int FUTEX_WAKE

cdef extern from "<sys/syscall.h>" nogil:
    long SYS_futex

cdef extern from "<unistd.h>" nogil:
    long syscall(long number, ...)
