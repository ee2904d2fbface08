/* A fork-join pool whose helper threads spin briefly between jobs, for the many short parallel regions of decoding
   (a token of a 30-layer model runs ~150 of them, each tens of microseconds: waking a sleeping thread through the
   kernel for each cost a sixth of the token's time). One job at a time; a caller that finds it busy is told so and
   runs its work elsewhere.

   Claiming: one 64-bit word holds (generation << 32 | indices left). A thread takes an index of generation g with
   a compare-and-swap from (g, left) to (g, left - 1), left > 0, and runs index n - left. A successful swap proves
   job g unfinished, and it cannot finish before this thread's `done` increment (release) reaches the caller
   (acquire), so the job fields the thread read before the swap happen-before any rewrite for the next job: a helper
   that was descheduled mid-claim either fails its swap or runs an index of the job whose fields it read. */
#define _GNU_SOURCE
#include "CKernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_HELPERS 63
/* How long an idle helper, or a caller waiting for the last index, spins before it sleeps. */
#define SPIN_NANOSECONDS 400000LL

static struct {
    /* The claim word and the completion count on their own cache lines: helpers poll the word while indices
       finish. */
    alignas(64) atomic_uint_least64_t word;
    alignas(64) atomic_size_t done;
    alignas(64) atomic_int busy;
    _Atomic(ck_parallel_fn) fn;
    _Atomic(void *) ctx;
    atomic_size_t count;
    /* Helpers with an id below this take part in the current job (the caller's `threads` - 1). */
    atomic_int joiners;
    atomic_int helpers;
    atomic_int sleepers;
    atomic_int caller_sleeping;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t finished;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .finished = PTHREAD_COND_INITIALIZER };

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
        uint32_t left = (uint32_t)w;
        if ((uint32_t)(w >> 32) != gen || left == 0) return;
        if (atomic_compare_exchange_weak_explicit(&pool.word, &w, w - 1, memory_order_acq_rel, memory_order_acquire)) {
            fn(ctx, n - left);
            if (atomic_fetch_add(&pool.done, 1) + 1 == n && atomic_load(&pool.caller_sleeping)) {
                pthread_mutex_lock(&pool.lock);
                pthread_cond_broadcast(&pool.finished);
                pthread_mutex_unlock(&pool.lock);
            }
            w = atomic_load_explicit(&pool.word, memory_order_acquire);
        }
    }
}

static void *helper(void *arg) {
    int id = (int)(intptr_t)arg;
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
        if (id < atomic_load_explicit(&pool.joiners, memory_order_relaxed)) work(gen);
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
        int rc = pthread_create(&t, &attr, helper, (void *)(intptr_t)have);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
    }
    atomic_store(&pool.helpers, have);
}

/* CPUs this process may run on (its affinity mask), read once. */
static size_t usable_cpus(void) {
    static atomic_long cpus;
    long c = atomic_load_explicit(&cpus, memory_order_relaxed);
    if (c == 0) {
        cpu_set_t set;
        c = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
        if (c < 1) c = 1;
        atomic_store_explicit(&cpus, c, memory_order_relaxed);
    }
    return (size_t)c;
}

/* Waits until all n indices are done: spins, then sleeps until the thread finishing the last one signals. */
static void wait_done(size_t n) {
    long long start = now_ns();
    for (unsigned spins = 1; atomic_load_explicit(&pool.done, memory_order_acquire) < n; spins++) {
        CPU_RELAX();
        if ((spins & 255) == 0 && now_ns() - start > SPIN_NANOSECONDS) {
            pthread_mutex_lock(&pool.lock);
            atomic_store(&pool.caller_sleeping, 1);
            while (atomic_load(&pool.done) < n) pthread_cond_wait(&pool.finished, &pool.lock);
            atomic_store(&pool.caller_sleeping, 0);
            pthread_mutex_unlock(&pool.lock);
            return;
        }
    }
}

int ck_parallel_run(size_t n, size_t threads, ck_parallel_fn fn, void *ctx) {
    if (n == 0) return 1;
    if (n >= 0xFFFFFFFFu) return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&pool.busy, &expected, 1)) return 0;
    /* No more threads than usable CPUs (as Dispatch's width): spinning helpers beyond that only take turns. */
    size_t cpus = usable_cpus();
    if (threads > cpus) threads = cpus;
    if (threads < 1) threads = 1;
    if (threads > 1) grow((int)threads - 1);
    atomic_store_explicit(&pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&pool.count, n, memory_order_relaxed);
    atomic_store_explicit(&pool.joiners, (int)threads - 1, memory_order_relaxed);
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    uint32_t gen = (uint32_t)(atomic_load(&pool.word) >> 32) + 1;
    atomic_store(&pool.word, (uint64_t)gen << 32 | n);  /* seq_cst: publishes the fields; before the sleepers check */
    if (threads > 1 && atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    work(gen);
    wait_done(n);
    atomic_store_explicit(&pool.busy, 0, memory_order_release);
    return 1;
}
