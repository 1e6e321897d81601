/* Process-wide metrics registry rendered in the Prometheus text format.
 * Metrics are created once (under a lock) and updated lock-free with atomics from
 * any thread; hot paths keep the returned pointer. */
#ifndef RAPROXY_METRICS_H
#define RAPROXY_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct rp_buf;

enum rp_metric_kind { RP_METRIC_COUNTER, RP_METRIC_GAUGE, RP_METRIC_HISTOGRAM };

/* Histogram buckets: upper bounds in seconds, 1-2-5 steps from 50 µs to 60 s. */
#define RP_HIST_BUCKETS 21

struct rp_metric {
    const char *name; /* family name, e.g. "raproxy_requests_total" (static string) */
    char *labels;     /* rendered label set without braces, e.g. code="200" (owned) */
    enum rp_metric_kind kind;
    _Atomic int64_t value;                         /* counter / gauge */
    _Atomic uint64_t buckets[RP_HIST_BUCKETS + 1]; /* histogram: last one is +Inf */
    _Atomic uint64_t sum_ns;
    _Atomic uint64_t count;
    struct rp_metric *next;
};

/* Describe a family once (HELP text); optional, families without help still render. */
void rp_metrics_help(const char *name, enum rp_metric_kind kind, const char *help);
/* Find or create; labels may be NULL or "" for none. Returns NULL only on OOM. */
struct rp_metric *rp_metric_get(const char *name, enum rp_metric_kind kind, const char *labels);

static inline void rp_metric_add(struct rp_metric *m, int64_t d)
{
    if (m)
        atomic_fetch_add_explicit(&m->value, d, memory_order_relaxed);
}
static inline void rp_metric_inc(struct rp_metric *m)
{
    rp_metric_add(m, 1);
}
static inline void rp_metric_set(struct rp_metric *m, int64_t v)
{
    if (m)
        atomic_store_explicit(&m->value, v, memory_order_relaxed);
}
void rp_metric_observe_ns(struct rp_metric *m, uint64_t ns);

/* Shorthand: counter with labels, incremented by one. Slower (lookup); not for hot loops. */
void rp_metrics_count(const char *name, const char *labels);

/* Value of the upper bound of bucket i, in seconds. */
double rp_metrics_bucket_le(int i);
/* Approximate quantile (0..1) from a histogram, in seconds. */
double rp_metrics_quantile(const struct rp_metric *m, double q);

int rp_metrics_render(struct rp_buf *out);
/* Tests only: drop every metric. */
void rp_metrics_reset(void);

#endif
