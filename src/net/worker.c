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

/* What a job costs before any has run: a signature check with chain, rounded up. */
#define JOB_NS_INITIAL 1000000u
/* Weight of the newest job in the running average of job cost: 1/8. */
#define JOB_NS_EWMA_SHIFT 3
/* Finished jobs one loop wake-up hands back before it lets the loop do its I/O. */
#define PORT_BATCH_MAX 1024u
/* Work that finishes a transaction is refused only at this many times the deadline. */
#define FINISH_DEADLINE_MULT 2u

struct worker {
    struct rp_workers *owner;
    unsigned index;
    int cpu; /* -1: not pinned */
    pthread_t thread;
    bool started;
    pthread_mutex_t lock; /* guards queue, stop */
    pthread_cond_t wake;
    struct rp_list_node queue[RP_JOB_CLASSES_]; /* per class, oldest first */
    atomic_uint depth[RP_JOB_CLASSES_];         /* read without the lock to pick a worker */
    atomic_uint running;                        /* 1 while a job runs */
    bool stop;
    struct rp_metric *m_depth;
};

struct rp_workers {
    unsigned n;
    unsigned cap;
    uint64_t deadline_ns;    /* 0: count cap only */
    _Atomic uint64_t job_ns; /* running average of the time run() takes */
    atomic_uint next;        /* where the scan for a worker starts, so ties spread out */
    void (*on_thread_start)(unsigned index);
    void (*on_thread_stop)(void);
    struct rp_metric *m_rejected, *m_deadline, *m_cost;
    struct worker w[];
};

static void describe_metrics(void)
{
    rp_metrics_help("raproxy_worker_queue_depth", RP_METRIC_GAUGE,
                    "Jobs queued on a crypto worker, not yet started.");
    rp_metrics_help("raproxy_worker_job_seconds", RP_METRIC_HISTOGRAM,
                    "Crypto job time from submit to done on the loop.");
    rp_metrics_help("raproxy_worker_jobs_total", RP_METRIC_COUNTER,
                    "Crypto jobs by result (rejected: every queue was full; deadline: the "
                    "expected wait was over worker_queue_ms).");
    rp_metrics_help("raproxy_worker_job_cost_microseconds", RP_METRIC_GAUGE,
                    "Running average of a crypto job's run time (the expected-wait estimate).");
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

/* Hand a finished job to its port. Only the first job of a batch wakes the loop: until the
 * loop takes the list, later jobs join it without another uv_async_send, and while the loop
 * is collecting (it looks again before it stops) none is needed at all. The send happens
 * under the port lock: the loop cannot see the job (and so cannot close and free the port)
 * before the send returned. */
static void deliver(struct rp_job *j)
{
    struct rp_job_port *p = j->port;
    pthread_mutex_lock(&p->lock);
    bool wake = rp_list_empty(&p->done) && !p->collecting;
    rp_list_push(&p->done, &j->link);
    if (wake)
        uv_async_send(&p->async);
    pthread_mutex_unlock(&p->lock);
}

static unsigned total_depth(struct worker *wk)
{
    unsigned d = 0;
    for (int c = 0; c < RP_JOB_CLASSES_; c++)
        d += atomic_load_explicit(&wk->depth[c], memory_order_relaxed);
    return d;
}

/* Next job, finishing work first. Under the worker lock. */
static struct rp_job *pop(struct worker *wk)
{
    for (int c = RP_JOB_CLASSES_ - 1; c >= 0; c--) {
        struct rp_list_node *n = rp_list_shift(&wk->queue[c]);
        if (!n)
            continue;
        atomic_fetch_sub_explicit(&wk->depth[c], 1, memory_order_relaxed);
        return container_of(n, struct rp_job, link);
    }
    return NULL;
}

static void account_cost(struct rp_workers *w, uint64_t ns)
{
    /* updated by every worker without a lock: a lost update only delays the average */
    uint64_t avg = atomic_load_explicit(&w->job_ns, memory_order_relaxed);
    int64_t delta = (int64_t)ns - (int64_t)avg;
    avg = (uint64_t)((int64_t)avg + delta / (1 << JOB_NS_EWMA_SHIFT));
    atomic_store_explicit(&w->job_ns, avg, memory_order_relaxed);
    rp_metric_set(w->m_cost, (int64_t)(avg / 1000u));
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
        struct rp_job *j;
        while (!(j = pop(wk)) && !wk->stop)
            pthread_cond_wait(&wk->wake, &wk->lock);
        if (!j) { /* stopping and drained */
            pthread_mutex_unlock(&wk->lock);
            break;
        }
        atomic_store_explicit(&wk->running, 1, memory_order_relaxed);
        rp_metric_set(wk->m_depth, total_depth(wk)); /* under the lock: set in order */
        pthread_mutex_unlock(&wk->lock);

        j->t_start = rp_clock_ns();
        j->run(j);
        j->t_end = rp_clock_ns();
        atomic_store_explicit(&wk->running, 0, memory_order_relaxed);
        account_cost(wk->owner, j->t_end - j->t_start);
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
    for (int c = 0; c < RP_JOB_CLASSES_; c++) {
        rp_list_init(&wk->queue[c]);
        atomic_init(&wk->depth[c], 0);
    }
    atomic_init(&wk->running, 0);
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
    w->deadline_ns = (uint64_t)o->queue_ms * 1000000u;
    atomic_init(&w->job_ns, JOB_NS_INITIAL);
    atomic_init(&w->next, 0);
    describe_metrics();
    w->m_rejected =
        rp_metric_get("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"rejected\"");
    w->m_deadline =
        rp_metric_get("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"deadline\"");
    w->m_cost = rp_metric_get("raproxy_worker_job_cost_microseconds", RP_METRIC_GAUGE, NULL);

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
    rp_log_info("workers_started", "%u crypto workers, queue %u each, deadline %u ms, %s", n,
                w->cap, o->queue_ms, o->pin ? "pinned" : "not pinned");
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

/* Jobs a job of class cls would wait behind on wk: finishing work first, then new work. */
static unsigned ahead_of(struct worker *wk, enum rp_job_class cls)
{
    unsigned n = atomic_load_explicit(&wk->running, memory_order_relaxed);
    for (int c = cls; c < RP_JOB_CLASSES_; c++)
        n += atomic_load_explicit(&wk->depth[c], memory_order_relaxed);
    return n;
}

/* Index of the worker where a job of class cls waits least, scanning from a rotating start
 * so that equal queues share the load. The depths are read unlocked: a hint, rechecked
 * under the chosen worker's lock. */
static unsigned best_worker(struct rp_workers *w, enum rp_job_class cls)
{
    unsigned start = atomic_fetch_add_explicit(&w->next, 1, memory_order_relaxed) % w->n;
    unsigned best = start;
    unsigned best_ahead = ahead_of(&w->w[start], cls);
    for (unsigned k = 1; k < w->n && best_ahead > 0; k++) {
        unsigned i = (start + k) % w->n;
        unsigned a = ahead_of(&w->w[i], cls);
        if (a < best_ahead) {
            best = i;
            best_ahead = a;
        }
    }
    return best;
}

/* The expected wait of a job of class cls on wk is over its deadline. */
static bool too_late(struct rp_workers *w, struct worker *wk, enum rp_job_class cls)
{
    if (!w->deadline_ns)
        return false;
    uint64_t limit = cls == RP_JOB_FINISH ? w->deadline_ns * FINISH_DEADLINE_MULT : w->deadline_ns;
    uint64_t cost = atomic_load_explicit(&w->job_ns, memory_order_relaxed);
    return (uint64_t)ahead_of(wk, cls) * cost > limit;
}

/* RP_OK when queued; RP_E_QUEUE_FULL (count), RP_E_AGAIN (deadline) or RP_E_SHUTDOWN. */
static int try_push(struct rp_workers *w, struct worker *wk, struct rp_job *j)
{
    int rc = RP_OK;
    pthread_mutex_lock(&wk->lock);
    if (wk->stop) {
        rc = RP_E_SHUTDOWN;
        goto out;
    }
    unsigned depth = total_depth(wk);
    if (depth >= w->cap) {
        rc = RP_E_QUEUE_FULL;
        goto out;
    }
    if (too_late(w, wk, j->cls)) {
        rc = RP_E_AGAIN;
        goto out;
    }
    rp_list_push(&wk->queue[j->cls], &j->link);
    atomic_fetch_add_explicit(&wk->depth[j->cls], 1, memory_order_relaxed);
    rp_metric_set(wk->m_depth, depth + 1);
    pthread_cond_signal(&wk->wake);
out:
    pthread_mutex_unlock(&wk->lock);
    return rc;
}

int rp_workers_submit(struct rp_workers *w, struct rp_job *j, struct rp_job_port *port)
{
    if (!w || !j || !j->run || !j->done || !port || (unsigned)j->cls >= RP_JOB_CLASSES_)
        return RP_E_INVAL;
    j->port = port;
    j->result = 0;
    j->t_submit = rp_clock_ns();
    j->t_start = j->t_end = 0;
    /* Counted before the push: the job may come back before try_push returns. */
    atomic_fetch_add_explicit(&port->inflight, 1, memory_order_relaxed);

    unsigned first = best_worker(w, j->cls);
    int rc = RP_E_QUEUE_FULL;
    bool late = false;
    for (unsigned k = 0; k < w->n; k++) {
        rc = try_push(w, &w->w[(first + k) % w->n], j);
        late |= rc == RP_E_AGAIN;
        if (rc == RP_OK || rc == RP_E_SHUTDOWN)
            break;
    }
    if (rc == RP_OK)
        return RP_OK;
    atomic_fetch_sub_explicit(&port->inflight, 1, memory_order_relaxed);
    j->port = NULL;
    if (rc == RP_E_SHUTDOWN)
        return rc;
    rp_metric_inc(late ? w->m_deadline : w->m_rejected);
    return RP_E_QUEUE_FULL;
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

/* One wake-up collects every job that finishes until the list is found empty (bounded, so
 * that a busy pool cannot starve the loop's I/O: past the bound the loop wakes itself). */
static void on_port_wakeup(uv_async_t *a)
{
    struct rp_job_port *p = a->data;
    p->wakeups++;
    unsigned n = 0;
    pthread_mutex_lock(&p->lock);
    p->collecting = true;
    for (;;) {
        if (rp_list_empty(&p->done) || n >= PORT_BATCH_MAX) {
            p->collecting = false;
            if (!rp_list_empty(&p->done))
                uv_async_send(&p->async); /* the rest on the next turn */
            break;
        }
        struct rp_list_node batch, *node;
        rp_list_init(&batch);
        rp_list_splice(&batch, &p->done);
        pthread_mutex_unlock(&p->lock);
        uint64_t now = rp_clock_ns();
        while ((node = rp_list_shift(&batch)) != NULL) { /* unlinked: done() may free it */
            struct rp_job *j = container_of(node, struct rp_job, link);
            account(j, now);
            atomic_fetch_sub_explicit(&p->inflight, 1, memory_order_release);
            j->done(j);
            n++;
        }
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    port_close_if_idle(p);
}

int rp_job_port_init(struct rp_job_port *p, uv_loop_t *loop)
{
    memset(p, 0, sizeof *p);
    rp_list_init(&p->done);
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
