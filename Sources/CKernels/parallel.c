/* A fork-join pool whose helper threads spin briefly between jobs, for the many short parallel regions of decoding
   (a token of a 30-layer model runs ~150 of them, each tens of microseconds: waking a sleeping thread through the
   kernel for each cost a sixth of the token's time). One job at a time; a caller that finds it busy is told so and
   runs its work elsewhere.

   Claiming: one 64-bit word holds (generation << 32 | next index). A thread claims index i of generation g with a
   compare-and-swap from (g, i) to (g, i + 1), so a helper still looking at an older job can never take an index of
   a newer one; the job's fields are written before the word publishes its generation (release) and are not
   rewritten until every index of that generation has finished. */
#include "CKernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_HELPERS 63
/* How long an idle helper spins before it sleeps on the condition variable. */
#define SPIN_NANOSECONDS 400000LL

static struct {
    atomic_int busy;
    atomic_uint_least64_t word;
    _Atomic(ck_parallel_fn) fn;
    _Atomic(void *) ctx;
    atomic_size_t count;
    atomic_size_t done;
    atomic_int sleepers;
    atomic_int helpers;
    pthread_mutex_t lock;
    pthread_cond_t wake;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Runs indices of generation `gen` until none is left. */
static void work(uint32_t gen) {
    uint64_t w = atomic_load_explicit(&pool.word, memory_order_acquire);
    ck_parallel_fn fn = atomic_load_explicit(&pool.fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&pool.ctx, memory_order_relaxed);
    size_t n = atomic_load_explicit(&pool.count, memory_order_relaxed);
    for (;;) {
        if ((uint32_t)(w >> 32) != gen || (w & 0xFFFFFFFFu) >= n) return;
        if (atomic_compare_exchange_weak_explicit(&pool.word, &w, w + 1, memory_order_acq_rel, memory_order_acquire)) {
            fn(ctx, (size_t)(w & 0xFFFFFFFFu));
            atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
            w = atomic_load_explicit(&pool.word, memory_order_acquire);
        }
    }
}

static void *helper(void *arg) {
    (void)arg;
    uint32_t seen = (uint32_t)(atomic_load_explicit(&pool.word, memory_order_acquire) >> 32);
    for (;;) {
        long long start = now_ns();
        unsigned spins = 0;
        uint32_t gen;
        while ((gen = (uint32_t)(atomic_load_explicit(&pool.word, memory_order_acquire) >> 32)) == seen) {
            CPU_RELAX();
            if ((++spins & 255) == 0 && now_ns() - start > SPIN_NANOSECONDS) {
                pthread_mutex_lock(&pool.lock);
                atomic_fetch_add(&pool.sleepers, 1);
                while ((uint32_t)(atomic_load(&pool.word) >> 32) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
                atomic_fetch_sub(&pool.sleepers, 1);
                pthread_mutex_unlock(&pool.lock);
                start = now_ns();
            }
        }
        seen = gen;
        work(gen);
    }
    return NULL;
}

/* Starts helpers until there are `want` (at most MAX_HELPERS); called with the pool held. */
static void grow(int want) {
    if (want > MAX_HELPERS) want = MAX_HELPERS;
    int have = atomic_load(&pool.helpers);
    for (; have < want; have++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, helper, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
    }
    atomic_store(&pool.helpers, have);
}

int ck_parallel_run(size_t n, size_t threads, ck_parallel_fn fn, void *ctx) {
    if (n == 0) return 1;
    if (n >= 0xFFFFFFFFu) return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&pool.busy, &expected, 1)) return 0;
    /* No more threads than online CPUs (as Dispatch's width): spinning helpers beyond that only take turns. The
       count is read once (glibc reads it from /sys on every sysconf call). */
    static atomic_long cpus;
    long c = atomic_load_explicit(&cpus, memory_order_relaxed);
    if (c == 0) {
        c = sysconf(_SC_NPROCESSORS_ONLN);
        if (c < 1) c = 1;
        atomic_store_explicit(&cpus, c, memory_order_relaxed);
    }
    if (threads > (size_t)c) threads = (size_t)c;
    if (threads > 1) grow((int)threads - 1);
    atomic_store_explicit(&pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&pool.count, n, memory_order_relaxed);
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    uint64_t old = atomic_load(&pool.word);
    uint32_t gen = (uint32_t)(old >> 32) + 1;
    atomic_store(&pool.word, (uint64_t)gen << 32);  /* seq_cst: ordered before the sleepers check */
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    work(gen);
    /* A helper that was descheduled mid-index gets the core back by the yields. */
    for (unsigned spins = 1; atomic_load_explicit(&pool.done, memory_order_acquire) < n; spins++) {
        CPU_RELAX();
        if ((spins & 1023) == 0) sched_yield();
    }
    atomic_store_explicit(&pool.busy, 0, memory_order_release);
    return 1;
}

int ck_parallel_helpers(void) { return atomic_load(&pool.helpers); }
