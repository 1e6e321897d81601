/* Crypto worker threads and the per-loop ports their jobs come back through. */
#include "raproxy/worker.h"
#include "raproxy/clock.h"
#include "raproxy/err.h"
#include "raproxy/guard.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/sig.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct worker {
    struct rp_workers *owner;
    unsigned index;
    int cpu; /* -1: not pinned */
    pthread_t thread;
    bool started;
    pthread_mutex_t lock; /* guards head, tail, stop */
    pthread_cond_t wake;
    struct rp_job *head, *tail;
    atomic_uint depth; /* read without the lock to pick the shortest queue */
    bool stop;
    struct rp_metric *m_depth;
};

struct rp_workers {
    unsigned n;
    unsigned cap;
    atomic_uint next; /* where the shortest-queue scan starts, so ties spread out */
    void (*on_thread_start)(unsigned index);
    void (*on_thread_stop)(void);
    struct rp_metric *m_rejected;
    struct worker w[];
};

static void describe_metrics(void)
{
    rp_metrics_help("raproxy_worker_queue_depth", RP_METRIC_GAUGE,
                    "Jobs queued on a crypto worker, not yet started.");
    rp_metrics_help("raproxy_worker_job_seconds", RP_METRIC_HISTOGRAM,
                    "Crypto job time from submit to done on the loop.");
    rp_metrics_help("raproxy_worker_jobs_total", RP_METRIC_COUNTER,
                    "Crypto jobs by result (rejected: every queue was full).");
}

/* The CPUs this process may run on (cgroup/cpuset aware), in ascending order. */
static unsigned allowed_cpus(int *cpus, unsigned cap)
{
    cpu_set_t set;
    unsigned n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int c = 0; c < CPU_SETSIZE && n < cap; c++)
            if (CPU_ISSET(c, &set))
                cpus[n++] = c;
    }
    if (n == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        for (long c = 0; c < (online > 0 ? online : 1) && n < cap; c++)
            cpus[n++] = (int)c;
    }
    return n;
}

static void pin(struct worker *wk)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(wk->cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (rc != 0)
        rp_log_warn("worker_pin", "worker %u: cannot pin to CPU %d: %s (running unpinned)",
                    wk->index, wk->cpu, strerror(rc));
}

/* Hand a finished job to its port. The send happens under the port lock: the loop cannot
 * see the job (and so cannot close and free the port) before the send returned. */
static void deliver(struct rp_job *j)
{
    struct rp_job_port *p = j->port;
    j->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    uv_async_send(&p->async);
    pthread_mutex_unlock(&p->lock);
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    rp_guard_mark_worker_thread();
    if (wk->cpu >= 0)
        pin(wk);
    char name[16];
    snprintf(name, sizeof name, "rp-worker-%u", wk->index);
    pthread_setname_np(pthread_self(), name);
    if (wk->owner->on_thread_start)
        wk->owner->on_thread_start(wk->index);

    for (;;) {
        pthread_mutex_lock(&wk->lock);
        while (!wk->head && !wk->stop)
            pthread_cond_wait(&wk->wake, &wk->lock);
        struct rp_job *j = wk->head;
        if (!j) { /* stopping and drained */
            pthread_mutex_unlock(&wk->lock);
            break;
        }
        wk->head = j->next;
        if (!wk->head)
            wk->tail = NULL;
        unsigned depth = atomic_fetch_sub_explicit(&wk->depth, 1, memory_order_relaxed) - 1;
        rp_metric_set(wk->m_depth, depth); /* under the lock: pushes and pops set it in order */
        pthread_mutex_unlock(&wk->lock);

        j->t_start = rp_clock_ns();
        j->run(j);
        j->t_end = rp_clock_ns();
        deliver(j);
    }
    if (wk->owner->on_thread_stop)
        wk->owner->on_thread_stop();
    rp_sig_thread_cleanup(); /* wolfCrypt per-thread ECC caches */
    return NULL;
}

static void worker_destroy(struct worker *wk)
{
    pthread_cond_destroy(&wk->wake);
    pthread_mutex_destroy(&wk->lock);
}

static int worker_init(struct rp_workers *w, unsigned i, int cpu)
{
    struct worker *wk = &w->w[i];
    wk->owner = w;
    wk->index = i;
    wk->cpu = cpu;
    atomic_init(&wk->depth, 0);
    if (pthread_mutex_init(&wk->lock, NULL) != 0)
        return RP_E_NOMEM;
    if (pthread_cond_init(&wk->wake, NULL) != 0) {
        pthread_mutex_destroy(&wk->lock);
        return RP_E_NOMEM;
    }
    char labels[32];
    snprintf(labels, sizeof labels, "worker=\"%u\"", i);
    wk->m_depth = rp_metric_get("raproxy_worker_queue_depth", RP_METRIC_GAUGE, labels);
    rp_metric_set(wk->m_depth, 0);
    return RP_OK;
}

int rp_workers_start(struct rp_workers **out, const struct rp_workers_opts *o)
{
    int cpus[CPU_SETSIZE];
    unsigned ncpu = allowed_cpus(cpus, CPU_SETSIZE);
    unsigned n = o->count ? o->count : ncpu;
    *out = NULL;
    if (n > RP_WORKERS_MAX)
        return RP_E_INVAL;

    struct rp_workers *w = calloc(1, sizeof *w + n * sizeof w->w[0]);
    if (!w)
        return RP_E_NOMEM;
    w->cap = o->queue_cap ? o->queue_cap : RP_WORKERS_DEFAULT_QUEUE_CAP;
    w->on_thread_start = o->on_thread_start;
    w->on_thread_stop = o->on_thread_stop;
    atomic_init(&w->next, 0);
    describe_metrics();
    w->m_rejected =
        rp_metric_get("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"rejected\"");

    int rc = RP_OK;
    for (unsigned i = 0; i < n; i++) {
        rc = worker_init(w, i, o->pin ? cpus[i % ncpu] : -1);
        if (rc < 0)
            goto fail;
        w->n = i + 1;
        int prc = pthread_create(&w->w[i].thread, NULL, worker_main, &w->w[i]);
        if (prc != 0) {
            rp_log_error("worker_start", "worker %u: pthread_create: %s", i, strerror(prc));
            rc = RP_E_NOMEM;
            goto fail;
        }
        w->w[i].started = true;
    }
    rp_log_info("workers_started", "%u crypto workers, queue %u each, %s", n, w->cap,
                o->pin ? "pinned" : "not pinned");
    *out = w;
    return RP_OK;

fail:
    rp_workers_stop(w);
    return rc;
}

void rp_workers_stop(struct rp_workers *w)
{
    if (!w)
        return;
    for (unsigned i = 0; i < w->n; i++) {
        struct worker *wk = &w->w[i];
        pthread_mutex_lock(&wk->lock);
        wk->stop = true;
        pthread_cond_signal(&wk->wake);
        pthread_mutex_unlock(&wk->lock);
    }
    for (unsigned i = 0; i < w->n; i++) {
        if (w->w[i].started)
            pthread_join(w->w[i].thread, NULL);
        worker_destroy(&w->w[i]);
    }
    free(w);
}

unsigned rp_workers_count(const struct rp_workers *w)
{
    return w->n;
}

/* Index of the worker with the shortest queue, scanning from a rotating start so that
 * equal queues share the load. The depths are read unlocked: a hint, rechecked under the
 * chosen worker's lock. */
static unsigned shortest(struct rp_workers *w)
{
    unsigned start = atomic_fetch_add_explicit(&w->next, 1, memory_order_relaxed) % w->n;
    unsigned best = start;
    unsigned best_depth = atomic_load_explicit(&w->w[start].depth, memory_order_relaxed);
    for (unsigned k = 1; k < w->n && best_depth > 0; k++) {
        unsigned i = (start + k) % w->n;
        unsigned d = atomic_load_explicit(&w->w[i].depth, memory_order_relaxed);
        if (d < best_depth) {
            best = i;
            best_depth = d;
        }
    }
    return best;
}

/* RP_OK when queued, RP_E_QUEUE_FULL or RP_E_SHUTDOWN when not. */
static int try_push(struct rp_workers *w, struct worker *wk, struct rp_job *j)
{
    int rc = RP_OK;
    pthread_mutex_lock(&wk->lock);
    if (wk->stop) {
        rc = RP_E_SHUTDOWN;
        goto out;
    }
    unsigned depth = atomic_load_explicit(&wk->depth, memory_order_relaxed);
    if (depth >= w->cap) {
        rc = RP_E_QUEUE_FULL;
        goto out;
    }
    j->next = NULL;
    if (wk->tail)
        wk->tail->next = j;
    else
        wk->head = j;
    wk->tail = j;
    atomic_store_explicit(&wk->depth, depth + 1, memory_order_relaxed);
    rp_metric_set(wk->m_depth, depth + 1);
    pthread_cond_signal(&wk->wake);
out:
    pthread_mutex_unlock(&wk->lock);
    return rc;
}

int rp_workers_submit(struct rp_workers *w, struct rp_job *j, struct rp_job_port *port)
{
    if (!w || !j || !j->run || !j->done || !port)
        return RP_E_INVAL;
    j->port = port;
    j->result = 0;
    j->t_submit = rp_clock_ns();
    j->t_start = j->t_end = 0;
    /* Counted before the push: the job may come back before try_push returns. */
    atomic_fetch_add_explicit(&port->inflight, 1, memory_order_relaxed);

    unsigned first = shortest(w);
    int rc = RP_E_QUEUE_FULL;
    for (unsigned k = 0; k < w->n; k++) {
        rc = try_push(w, &w->w[(first + k) % w->n], j);
        if (rc != RP_E_QUEUE_FULL)
            break;
    }
    if (rc == RP_OK)
        return RP_OK;
    atomic_fetch_sub_explicit(&port->inflight, 1, memory_order_relaxed);
    if (rc == RP_E_QUEUE_FULL)
        rp_metric_inc(w->m_rejected);
    j->port = NULL;
    return rc;
}

/* ---- ports ---- */

static void on_port_closed(uv_handle_t *h)
{
    struct rp_job_port *p = h->data;
    pthread_mutex_destroy(&p->lock);
    if (p->on_closed)
        p->on_closed(p);
}

static void port_close_if_idle(struct rp_job_port *p)
{
    if (p->closing && atomic_load_explicit(&p->inflight, memory_order_acquire) == 0 &&
        !uv_is_closing((uv_handle_t *)&p->async))
        uv_close((uv_handle_t *)&p->async, on_port_closed);
}

static void account(struct rp_job *j, uint64_t now)
{
    /* The metrics live in the rp_workers, but the job may outlive it (stop delivers the
     * last jobs after the workers are gone), so look them up by name: cheap and rare
     * enough next to a public-key operation. */
    static _Thread_local struct rp_metric *m_ok, *m_error, *m_seconds;
    if (!m_seconds) {
        m_ok = rp_metric_get("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"ok\"");
        m_error = rp_metric_get("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"error\"");
        m_seconds = rp_metric_get("raproxy_worker_job_seconds", RP_METRIC_HISTOGRAM, NULL);
    }
    rp_metric_inc(j->result < 0 ? m_error : m_ok);
    rp_metric_observe_ns(m_seconds, now - j->t_submit);
}

static void on_port_wakeup(uv_async_t *a)
{
    struct rp_job_port *p = a->data;
    pthread_mutex_lock(&p->lock);
    struct rp_job *j = p->head;
    p->head = p->tail = NULL;
    pthread_mutex_unlock(&p->lock);

    uint64_t now = rp_clock_ns();
    while (j) {
        struct rp_job *next = j->next; /* done() may free j */
        j->next = NULL;
        account(j, now);
        atomic_fetch_sub_explicit(&p->inflight, 1, memory_order_release);
        j->done(j);
        j = next;
    }
    port_close_if_idle(p);
}

int rp_job_port_init(struct rp_job_port *p, uv_loop_t *loop)
{
    memset(p, 0, sizeof *p);
    atomic_init(&p->inflight, 0);
    if (pthread_mutex_init(&p->lock, NULL) != 0)
        return RP_E_NOMEM;
    int rc = uv_async_init(loop, &p->async, on_port_wakeup);
    if (rc < 0) {
        pthread_mutex_destroy(&p->lock);
        return RP_E_IO;
    }
    p->async.data = p;
    return RP_OK;
}

void rp_job_port_close(struct rp_job_port *p, void (*on_closed)(struct rp_job_port *p))
{
    p->on_closed = on_closed;
    p->closing = true;
    port_close_if_idle(p);
}
