/* Log-bucketed histogram: see hist.h. */
#include "hist.h"

/* Bucket of v: values below BENCH_HIST_SUB map one to one; above, the octave (position of
 * the top bit) selects a group of BENCH_HIST_SUB buckets and the next bits the one in it. */
static unsigned bucket_of(uint64_t v)
{
    if (v < BENCH_HIST_SUB)
        return (unsigned)v;
    unsigned top = 63u - (unsigned)__builtin_clzll(v);
    unsigned octave = top - BENCH_HIST_SUB_BITS + 1;
    if (octave > BENCH_HIST_OCTAVES)
        return BENCH_HIST_BUCKETS - 1;
    unsigned sub = (unsigned)(v >> (top - BENCH_HIST_SUB_BITS)) & (BENCH_HIST_SUB - 1);
    return octave * BENCH_HIST_SUB + sub;
}

/* Largest value that falls into bucket b. */
static uint64_t bucket_top(unsigned b)
{
    unsigned octave = b / BENCH_HIST_SUB, sub = b % BENCH_HIST_SUB;
    if (octave == 0)
        return sub;
    unsigned shift = octave - 1;
    return ((uint64_t)(BENCH_HIST_SUB + sub + 1) << shift) - 1;
}

void bench_hist_add(struct bench_hist *h, uint64_t us)
{
    h->bucket[bucket_of(us)]++;
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from)
{
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        into->bucket[i] += from->bucket[i];
    into->count += from->count;
    into->sum_us += from->sum_us;
    if (from->max_us > into->max_us)
        into->max_us = from->max_us;
}

uint64_t bench_hist_quantile(const struct bench_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.5);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t top = bucket_top(i);
            return top < h->max_us ? top : h->max_us;
        }
    }
    return h->max_us;
}
