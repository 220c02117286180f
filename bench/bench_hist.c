/* bench_hist.c: the latency histogram of sigflow-bench.
 *
 * Exact percentiles would need every sample kept (a few MB a second at full
 * rate, which would show in the RSS we report); log-spaced buckets keep the
 * relative error under 0.5% in fixed memory, and the pipeline thread records
 * into them without a lock. */
#include <math.h>

#include "bench.h"

#define HIST_MIN_MS 0.01
#define HIST_RATIO 1.01

static size_t bucket_of(double ms) {
    if (!(ms > HIST_MIN_MS))
        return 0;
    double i = log(ms / HIST_MIN_MS) / log(HIST_RATIO);
    return i >= BENCH_HIST_BUCKETS - 1 ? BENCH_HIST_BUCKETS - 1 : (size_t)i;
}

/* The geometric middle of bucket i. */
static double bucket_ms(size_t i) {
    return HIST_MIN_MS * pow(HIST_RATIO, (double)i + 0.5);
}

void bench_hist_add(bench_hist *h, double ms) {
    if (ms < 0) /* clocks of producer and acknowledgement disagree by a hair */
        ms = 0;
    atomic_fetch_add_explicit(&h->bucket[bucket_of(ms)], 1, memory_order_relaxed);
    uint64_t ns = (uint64_t)(ms * 1e6);
    uint64_t cur = atomic_load_explicit(&h->max_ns, memory_order_relaxed);
    while (ns > cur && !atomic_compare_exchange_weak(&h->max_ns, &cur, ns))
        ;
    atomic_fetch_add_explicit(&h->count, 1, memory_order_release);
}

uint64_t bench_hist_count(const bench_hist *h) {
    return atomic_load_explicit(&h->count, memory_order_acquire);
}

double bench_hist_quantile(const bench_hist *h, double q) {
    uint64_t total = 0;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        total += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
    if (total == 0)
        return 0;
    /* The smallest value with at least q of the samples at or below it. */
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (seen >= rank) {
            /* No quantile exceeds the largest sample. */
            double v = bucket_ms(i), mx = bench_hist_max(h);
            return v < mx ? v : mx;
        }
    }
    return bench_hist_max(h);
}

double bench_hist_max(const bench_hist *h) {
    return (double)atomic_load_explicit(&h->max_ns, memory_order_relaxed) / 1e6;
}
