/* Log-bucketed latency histogram (HdrHistogram-style): values in microseconds, 16 linear
 * sub-buckets per power of two, so any percentile is within 1/16 (6.25 %) of the true
 * value. Fixed size, no allocation; merge for per-thread histograms. */
#ifndef RAPROXY_BENCH_HIST_H
#define RAPROXY_BENCH_HIST_H

#include <stdint.h>

#define BENCH_HIST_SUB_BITS 4
#define BENCH_HIST_SUB      (1u << BENCH_HIST_SUB_BITS)
/* Octaves covered: 1 us .. 2^40 us (12 days), far beyond any deadline. */
#define BENCH_HIST_OCTAVES 40
#define BENCH_HIST_BUCKETS ((BENCH_HIST_OCTAVES + 1) * BENCH_HIST_SUB)

struct bench_hist {
    uint64_t count;
    uint64_t sum_us;
    uint64_t max_us;
    uint64_t bucket[BENCH_HIST_BUCKETS];
};

void bench_hist_add(struct bench_hist *h, uint64_t us);
void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from);
/* The value at quantile q (0..1): the upper edge of the bucket holding it, capped at the
 * largest value seen. 0 when empty. */
uint64_t bench_hist_quantile(const struct bench_hist *h, double q);

#endif
