#include "raproxy/metrics.h"
#include "raproxy/buf.h"
#include "raproxy/err.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct family {
    const char *name;
    enum rp_metric_kind kind;
    const char *help;
    struct rp_metric *metrics;
    struct family *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct family *families;

/* 1-2-5 steps: 50us 100us 200us 500us 1ms ... 50s, then 60s */
static const double bucket_le[RP_HIST_BUCKETS] = {
    0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
    0.2,     0.5,    1.0,    2.0,    5.0,   10.0,  20.0,  30.0, 50.0, 60.0,
};

double rp_metrics_bucket_le(int i)
{
    return (i >= 0 && i < RP_HIST_BUCKETS) ? bucket_le[i] : 1e300;
}

static struct family *family_locked(const char *name, enum rp_metric_kind kind)
{
    for (struct family *f = families; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    struct family *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->name = name;
    f->kind = kind;
    /* append, so /metrics lists families in creation order */
    struct family **pp = &families;
    while (*pp)
        pp = &(*pp)->next;
    *pp = f;
    return f;
}

void rp_metrics_help(const char *name, enum rp_metric_kind kind, const char *help)
{
    pthread_mutex_lock(&reg_lock);
    struct family *f = family_locked(name, kind);
    if (f)
        f->help = help;
    pthread_mutex_unlock(&reg_lock);
}

struct rp_metric *rp_metric_get(const char *name, enum rp_metric_kind kind, const char *labels)
{
    if (!labels)
        labels = "";
    pthread_mutex_lock(&reg_lock);
    struct rp_metric *m = NULL;
    struct family *f = family_locked(name, kind);
    if (!f)
        goto out;
    for (m = f->metrics; m; m = m->next)
        if (strcmp(m->labels, labels) == 0)
            goto out;
    m = calloc(1, sizeof *m);
    if (!m)
        goto out;
    m->labels = strdup(labels);
    if (!m->labels) {
        free(m);
        m = NULL;
        goto out;
    }
    m->name = f->name;
    m->kind = f->kind;
    struct rp_metric **pp = &f->metrics;
    while (*pp)
        pp = &(*pp)->next;
    *pp = m;
out:
    pthread_mutex_unlock(&reg_lock);
    return m;
}

void rp_metric_observe_ns(struct rp_metric *m, uint64_t ns)
{
    if (!m)
        return;
    double s = (double)ns / 1e9;
    int i = 0;
    while (i < RP_HIST_BUCKETS && s > bucket_le[i])
        i++;
    atomic_fetch_add_explicit(&m->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->sum_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
}

void rp_metrics_count(const char *name, const char *labels)
{
    rp_metric_inc(rp_metric_get(name, RP_METRIC_COUNTER, labels));
}

double rp_metrics_quantile(const struct rp_metric *m, double q)
{
    uint64_t total = atomic_load(&m->count);
    if (!total)
        return 0;
    uint64_t want = (uint64_t)((double)total * q + 0.5), seen = 0;
    if (want == 0)
        want = 1;
    for (int i = 0; i <= RP_HIST_BUCKETS; i++) {
        seen += atomic_load(&m->buckets[i]);
        if (seen >= want)
            return rp_metrics_bucket_le(i);
    }
    return rp_metrics_bucket_le(RP_HIST_BUCKETS);
}

static const char *kind_name(enum rp_metric_kind k)
{
    return k == RP_METRIC_COUNTER ? "counter" : k == RP_METRIC_GAUGE ? "gauge" : "histogram";
}

static int render_hist(struct rp_buf *out, const struct rp_metric *m)
{
    const char *sep = m->labels[0] ? "," : "";
    uint64_t cum = 0;
    int rc = 0;
    for (int i = 0; i <= RP_HIST_BUCKETS && !rc; i++) {
        cum += atomic_load(&m->buckets[i]);
        if (i < RP_HIST_BUCKETS)
            rc = rp_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", m->name, m->labels, sep,
                               bucket_le[i], (unsigned long long)cum);
        else
            rc = rp_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", m->name, m->labels, sep,
                               (unsigned long long)cum);
    }
    if (rc)
        return rc;
    const char *lb = m->labels[0] ? "{" : "", *rb = m->labels[0] ? "}" : "";
    rc = rp_buf_printf(out, "%s_sum%s%s%s %.9f\n", m->name, lb, m->labels, rb,
                       (double)atomic_load(&m->sum_ns) / 1e9);
    if (!rc)
        rc = rp_buf_printf(out, "%s_count%s%s%s %llu\n", m->name, lb, m->labels, rb,
                           (unsigned long long)atomic_load(&m->count));
    return rc;
}

int rp_metrics_render(struct rp_buf *out)
{
    int rc = 0;
    pthread_mutex_lock(&reg_lock);
    for (struct family *f = families; f && !rc; f = f->next) {
        if (f->help)
            rc = rp_buf_printf(out, "# HELP %s %s\n", f->name, f->help);
        if (!rc)
            rc = rp_buf_printf(out, "# TYPE %s %s\n", f->name, kind_name(f->kind));
        for (struct rp_metric *m = f->metrics; m && !rc; m = m->next) {
            if (m->kind == RP_METRIC_HISTOGRAM)
                rc = render_hist(out, m);
            else if (m->labels[0])
                rc = rp_buf_printf(out, "%s{%s} %lld\n", f->name, m->labels,
                                   (long long)atomic_load(&m->value));
            else
                rc = rp_buf_printf(out, "%s %lld\n", f->name, (long long)atomic_load(&m->value));
        }
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

void rp_metrics_reset(void)
{
    pthread_mutex_lock(&reg_lock);
    struct family *f = families;
    while (f) {
        struct rp_metric *m = f->metrics;
        while (m) {
            struct rp_metric *n = m->next;
            free(m->labels);
            free(m);
            m = n;
        }
        struct family *nf = f->next;
        free(f);
        f = nf;
    }
    families = NULL;
    pthread_mutex_unlock(&reg_lock);
}
