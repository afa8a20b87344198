/* Atomic helpers on int words living in shared memory (GCC/Clang builtins). */
#ifndef FASTRETRO_ATOMICS_H
#define FASTRETRO_ATOMICS_H
static inline int fr_atomic_sub_fetch(int *p, int v) { return __atomic_sub_fetch(p, v, __ATOMIC_ACQ_REL); }
static inline int fr_atomic_add_fetch(int *p, int v) { return __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL); }
static inline int fr_atomic_fetch_add(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL); }
static inline int fr_atomic_cas(int *p, int expected, int desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
static inline void fr_atomic_store(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline int fr_atomic_load(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
/* A spin-wait hint: lets the other hyperthread run and saves power while spinning. */
static inline void fr_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
static inline long long fr_atomic_load64(long long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void fr_atomic_store64(long long *p, long long v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
#endif
