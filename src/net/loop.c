/* I/O loops: a thread each, with its own listeners, connections and upstream pool. */
#include "net_int.h"

#include "raproxy/clock.h"
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/guard.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/sig.h"
#include "raproxy/snapshot.h"
#include "raproxy/upstream.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#define LAG_INTERVAL_MS 250u
/* After descriptors ran out, /readyz says so for this long. */
#define FD_SATURATION_HOLD_NS (5ull * 1000000000ull)
/* Memory goes back to the OS after this many closes, when the open ones halved. */
#define TRIM_MIN_CLOSES      1024u
#define TRIM_MIN_INTERVAL_NS 1000000000ull
/* One "connections refused" log line a second at most, per loop. */
#define REFUSED_LOG_EVERY_NS 1000000000ull

static atomic_bool g_draining;
static atomic_uint g_loops_at_cap;
static _Atomic uint64_t g_fd_refused_ns;

static const char *const refused_names[RP_REFUSED_COUNT_] = {
    [RP_REFUSED_PER_IP] = "per_ip",
    [RP_REFUSED_FD_LIMIT] = "fd_limit",
    [RP_REFUSED_TLS] = "tls_setup",
    [RP_REFUSED_NOMEM] = "nomem",
};
static struct rp_metric *m_refused[RP_REFUSED_COUNT_];
static struct rp_metric *m_trims;

void rp_ready_set_draining(void)
{
    atomic_store(&g_draining, true);
}

bool rp_ready_draining(void)
{
    return atomic_load(&g_draining);
}

uv_loop_t *rp_loop_uv(struct rp_loop *l)
{
    return &l->uv;
}

struct rp_loop_timer {
    uv_timer_t uv;
    rp_loop_timer_fn cb, closed;
    void *arg, *closed_arg;
};

static void on_loop_timer(uv_timer_t *h)
{
    struct rp_loop_timer *t = h->data;
    t->cb(t->arg);
}

int rp_loop_timer_new(struct rp_loop *l, rp_loop_timer_fn cb, void *arg, struct rp_loop_timer **out)
{
    return rp_loop_timer_new_uv(&l->uv, cb, arg, out);
}

int rp_loop_timer_new_uv(uv_loop_t *uv, rp_loop_timer_fn cb, void *arg, struct rp_loop_timer **out)
{
    struct rp_loop_timer *t = calloc(1, sizeof *t);
    if (!t)
        return RP_E_NOMEM;
    uv_timer_init(uv, &t->uv);
    t->uv.data = t;
    t->cb = cb;
    t->arg = arg;
    *out = t;
    return RP_OK;
}

void rp_loop_timer_start(struct rp_loop_timer *t, uint64_t ms)
{
    uv_timer_start(&t->uv, on_loop_timer, ms, 0);
}

void rp_loop_timer_stop(struct rp_loop_timer *t)
{
    uv_timer_stop(&t->uv);
}

static void on_loop_timer_closed(uv_handle_t *h)
{
    struct rp_loop_timer *t = h->data;
    if (t->closed)
        t->closed(t->closed_arg);
    free(t);
}

void rp_loop_timer_free(struct rp_loop_timer *t, rp_loop_timer_fn closed, void *arg)
{
    if (!t)
        return;
    t->closed = closed;
    t->closed_arg = arg;
    uv_timer_stop(&t->uv);
    uv_close((uv_handle_t *)&t->uv, on_loop_timer_closed);
}

uint64_t rp_loop_now_ms(struct rp_loop *l)
{
    return uv_now(&l->uv);
}

unsigned rp_loop_index(const struct rp_loop *l)
{
    return l->index;
}

struct rp_snapshot *rp_loop_snapshot(struct rp_loop *l)
{
    return l->snap;
}

struct rp_upstream *rp_loop_upstream(struct rp_loop *l)
{
    return l->upstream;
}

void rp_loop_set_upstream(struct rp_loop *l, struct rp_upstream *u)
{
    struct rp_upstream *old = l->upstream;
    l->upstream = u;
    if (old)
        rp_upstream_retire(old); /* its requests finish on it: none is sent twice */
}

void *rp_loop_ctx(struct rp_loop *l)
{
    return l->ctx;
}

void *rp_loop_app(struct rp_loop *l)
{
    return l->app;
}

void rp_loop_set_app(struct rp_loop *l, void *app)
{
    l->app = app;
}

static void close_handles(struct rp_loop *l)
{
    uv_close((uv_handle_t *)&l->wake, NULL);
    uv_close((uv_handle_t *)&l->grace, NULL);
    uv_close((uv_handle_t *)&l->lag, NULL);
    uv_close((uv_handle_t *)&l->defer_idle, NULL);
}

static void on_defer_idle(uv_idle_t *h)
{
    struct rp_loop *l = h->data;
    /* this turn runs what was asked before it; what these ask for waits for the next */
    struct rp_list_node now;
    rp_list_init(&now);
    rp_list_splice(&now, &l->deferred);
    struct rp_list_node *n;
    while ((n = rp_list_shift(&now)) != NULL) {
        struct rp_defer *d = container_of(n, struct rp_defer, link);
        d->cb(d);
    }
    if (rp_list_empty(&l->deferred))
        uv_idle_stop(&l->defer_idle);
}

void net_loop_defer(struct rp_loop *l, struct rp_defer *d)
{
    if (rp_list_linked(&d->link) || l->stopped)
        return;
    if (rp_list_empty(&l->deferred))
        uv_idle_start(&l->defer_idle, on_defer_idle);
    rp_list_push(&l->deferred, &d->link);
}

void net_loop_defer_cancel(struct rp_defer *d)
{
    rp_list_unlink(&d->link);
}

static void stop_loop(struct rp_loop *l)
{
    if (l->stopped)
        return;
    l->stopped = true;
    if (l->on_stop)
        l->on_stop(l);
    net_listeners_close(l); /* now the admin listener too */
    if (l->upstream) {
        rp_upstream_close(l->upstream);
        l->upstream = NULL;
    }
    close_handles(l);
}

static void check_drained(struct rp_loop *l)
{
    if (l->draining && !l->stopped && l->conns_alive == 0 && l->app_work == 0)
        stop_loop(l);
}

void rp_loop_work_hold(struct rp_loop *l)
{
    l->app_work++;
}

void rp_loop_work_release(struct rp_loop *l)
{
    if (l->app_work)
        l->app_work--;
    check_drained(l);
}

bool rp_loop_draining(const struct rp_loop *l)
{
    return l->draining;
}

void net_loop_conn_closed(struct rp_loop *l)
{
    l->conns_alive--;
    l->closed_since_trim++;
    if (l->draining)
        check_drained(l);
    else if (l->reserve_fd < 0)
        net_loop_reserve_fd(l); /* a descriptor came free: take the reserve back first */
}

void net_loop_reserve_fd(struct rp_loop *l)
{
    if (l->reserve_fd < 0)
        l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void net_loop_refused(struct rp_loop *l, enum rp_refused why)
{
    rp_metric_inc(m_refused[why]);
    uint64_t now = rp_clock_ns();
    if (why == RP_REFUSED_FD_LIMIT)
        atomic_store(&g_fd_refused_ns, now);
    l->refused_unlogged++;
    if (now - l->refused_log_ns < REFUSED_LOG_EVERY_NS)
        return;
    if (why == RP_REFUSED_FD_LIMIT)
        rp_log_warn("accept",
                    "loop %u: out of file descriptors (limit %llu): %u connection(s) "
                    "accepted and closed",
                    l->index, (unsigned long long)l->fd_limit, l->refused_unlogged);
    else
        rp_log_warn("accept", "loop %u: %u connection(s) closed at accept (last: %s)", l->index,
                    l->refused_unlogged, refused_names[why]);
    l->refused_log_ns = now;
    l->refused_unlogged = 0;
}

void net_loop_set_at_cap(struct rp_loop *l, bool at_cap)
{
    if (at_cap == l->at_cap)
        return;
    l->at_cap = at_cap;
    if (at_cap)
        atomic_fetch_add(&g_loops_at_cap, 1);
    else
        atomic_fetch_sub(&g_loops_at_cap, 1);
}

const char *rp_ready_saturation(void)
{
    if (atomic_load(&g_loops_at_cap) > 0)
        return "saturated: connection cap reached";
    uint64_t t = atomic_load(&g_fd_refused_ns);
    if (t && rp_clock_ns() - t < FD_SATURATION_HOLD_NS)
        return "saturated: file descriptors exhausted";
    return NULL;
}

static void on_grace(uv_timer_t *t)
{
    struct rp_loop *l = t->data;
    rp_log_warn("drain", "loop %u: grace period over, closing %u connections", l->index, l->nconns);
    struct rp_list_node *n, *nx;
    for (RP_LIST_EACH(n, nx, &l->conns))
        net_conn_close(container_of(n, struct rp_conn, link));
    /* Exchanges still waiting for the CA end when the pool is closed (RP_E_SHUTDOWN). */
    if (l->upstream) {
        rp_upstream_close(l->upstream);
        l->upstream = NULL;
    }
    check_drained(l);
}

static void start_drain(struct rp_loop *l, uint32_t grace_ms)
{
    if (l->draining)
        return;
    l->draining = true;
    net_listeners_close(l);
    struct rp_list_node *n, *nx;
    for (RP_LIST_EACH(n, nx, &l->conns))
        net_conn_drain(container_of(n, struct rp_conn, link));
    uv_timer_start(&l->grace, on_grace, grace_ms, 0);
    check_drained(l);
}

static void set_caps(struct rp_loop *l, const struct rp_snapshot *s)
{
    unsigned loops = s->cfg->loops ? s->cfg->loops : 1;
    l->max_conns = (s->cfg->http.max_connections + loops - 1) / loops;
    l->max_handshakes = s->cfg->http.max_handshakes;
}

static void install_snapshot(struct rp_loop *l, struct rp_snapshot *s)
{
    struct rp_snapshot *old = l->snap;
    l->snap = s;
    set_caps(l, s);
    net_listeners_update(l);
    if (l->on_snapshot && l->on_snapshot(l, s) != RP_OK)
        rp_log_error("reload", "loop %u: cannot attach the new snapshot's per-loop state",
                     l->index);
    rp_snapshot_unref(old);
}

static void on_wake(uv_async_t *a)
{
    struct rp_loop *l = a->data;
    pthread_mutex_lock(&l->lock);
    struct rp_snapshot *s = l->pending_snap;
    bool drain = l->pending_drain;
    uint32_t grace = l->pending_grace_ms;
    l->pending_snap = NULL;
    l->pending_drain = false;
    pthread_mutex_unlock(&l->lock);
    if (s && !l->stopped)
        install_snapshot(l, s);
    else if (s)
        rp_snapshot_unref(s);
    if (drain)
        start_drain(l, grace);
}

static struct rp_metric *m_lag;
static pthread_once_t m_lag_once = PTHREAD_ONCE_INIT;

static void lag_metric_init(void)
{
    rp_metrics_help("raproxy_connections_refused_total", RP_METRIC_COUNTER,
                    "Connections closed at accept, by reason.");
    rp_metrics_help("raproxy_memory_trims_total", RP_METRIC_COUNTER,
                    "Times freed memory was returned to the OS after a wave of connections.");
    m_trims = rp_metric_get("raproxy_memory_trims_total", RP_METRIC_COUNTER, NULL);
    for (int i = 0; i < RP_REFUSED_COUNT_; i++) {
        char lbl[32];
        snprintf(lbl, sizeof lbl, "reason=\"%s\"", refused_names[i]);
        m_refused[i] = rp_metric_get("raproxy_connections_refused_total", RP_METRIC_COUNTER, lbl);
    }
    rp_metrics_help("raproxy_loop_lag_seconds", RP_METRIC_HISTOGRAM,
                    "How late the loop ran a timer: time the loop was busy.");
    m_lag = rp_metric_get("raproxy_loop_lag_seconds", RP_METRIC_HISTOGRAM, NULL);
}

/* After a wave of connections is gone (a slowloris attack, a fleet reconnecting), give the
 * freed memory back to the OS: glibc keeps freed chunks in its arenas for good unless they
 * are at the top of the heap. Measured at 10,000 idle TLS connections closing: RSS stays at
 * 72 MB with glibc alone, 62 MB with jemalloc and 75 MB with mimalloc (both purge only on
 * allocator activity), 10.8 MB after malloc_trim (baseline 9.4 MB). Trimming costs a scan
 * of the free lists, so only when the wave has ebbed: many closes, and at most half of the
 * peak still open. */
static void maybe_trim(struct rp_loop *l, uint64_t now)
{
    if (l->closed_since_trim < TRIM_MIN_CLOSES || (uint64_t)l->nconns * 2 > l->trim_peak ||
        now - l->trim_ns < TRIM_MIN_INTERVAL_NS)
        return;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    rp_metric_inc(m_trims);
    l->trim_ns = now;
    l->trim_peak = l->nconns;
    l->closed_since_trim = 0;
}

static void on_lag(uv_timer_t *t)
{
    struct rp_loop *l = t->data;
    uint64_t now = rp_clock_ns();
    rp_metric_observe_ns(m_lag, now > l->lag_expected_ns ? now - l->lag_expected_ns : 0);
    l->lag_expected_ns = now + (uint64_t)LAG_INTERVAL_MS * 1000000u;
    maybe_trim(l, now);
}

static void *loop_main(void *arg)
{
    struct rp_loop *l = arg;
    char name[16];
    snprintf(name, sizeof name, "rp-loop-%u", l->index);
    pthread_setname_np(pthread_self(), name);
    rp_guard_mark_loop_thread(); /* public-key work on this thread is counted as a bug */
    l->lag_expected_ns = rp_clock_ns() + (uint64_t)LAG_INTERVAL_MS * 1000000u;
    uv_timer_start(&l->lag, on_lag, LAG_INTERVAL_MS, LAG_INTERVAL_MS);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    rp_sig_thread_cleanup(); /* TLS handshakes filled wolfCrypt's per-thread ECC caches */
    return NULL;
}

static void no_handler(struct rp_exchange *ex)
{
    rp_exchange_respond(ex, 503, "text/plain", (const uint8_t *)"no handler\n", 11, NULL);
}

static int bind_all(struct rp_loop *l, bool admin)
{
    const struct rp_config *cfg = l->snap->cfg;
    for (unsigned i = 0; i < cfg->listeners_count; i++) {
        struct net_listener proto = {
            .handler = l->on_exchange ? l->on_exchange : no_handler,
            .tls_index = (int)i, /* the snapshot has no context for a plain listener */
            .index = i,
            .device = true,
        };
        int fd;
        int rc = net_listener_bind(cfg->listeners[i].address, &fd);
        if (rc == RP_OK)
            rc = net_listener_start(l, fd, &proto);
        if (rc != RP_OK)
            return rc;
    }
    if (admin && cfg->admin.address) {
        struct net_listener proto = {.handler = net_admin_handle, .tls_index = -1};
        int fd;
        int rc = net_listener_bind(cfg->admin.address, &fd);
        if (rc == RP_OK)
            rc = net_listener_start(l, fd, &proto);
        if (rc != RP_OK)
            return rc;
    }
    return RP_OK;
}

static void free_loop(struct rp_loop *l)
{
    uv_run(&l->uv, UV_RUN_NOWAIT); /* let close callbacks run */
    uv_loop_close(&l->uv);
    rp_snapshot_unref(l->snap);
    if (l->pending_snap)
        rp_snapshot_unref(l->pending_snap);
    if (l->reserve_fd >= 0)
        close(l->reserve_fd);
    net_loop_set_at_cap(l, false);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

int rp_loop_start(struct rp_loop **out, const struct rp_loop_opts *o)
{
    pthread_once(&m_lag_once, lag_metric_init); /* before any loop thread can observe it */
    struct rp_loop *l = calloc(1, sizeof *l);
    if (!l)
        return RP_E_NOMEM;
    l->index = o->index;
    l->on_exchange = o->on_exchange;
    l->on_snapshot = o->on_snapshot;
    l->on_stop = o->on_stop;
    l->ready = o->ready;
    l->ready_detail = o->ready_detail;
    l->ctx = o->ctx;
    l->admin = o->admin;
    l->snap = rp_snapshot_ref(o->snap);
    set_caps(l, l->snap);
    struct rlimit nofile;
    l->fd_limit = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                      ? (uint64_t)nofile.rlim_cur
                      : UINT64_MAX;
    l->reserve_fd = -1;
    net_loop_reserve_fd(l);
    pthread_mutex_init(&l->lock, NULL);
    if (uv_loop_init(&l->uv) != 0) {
        rp_snapshot_unref(l->snap);
        free(l);
        return RP_E_IO;
    }
    uv_async_init(&l->uv, &l->wake, on_wake);
    l->wake.data = l;
    uv_timer_init(&l->uv, &l->grace);
    l->grace.data = l;
    uv_timer_init(&l->uv, &l->lag);
    l->lag.data = l;
    uv_idle_init(&l->uv, &l->defer_idle);
    l->defer_idle.data = l;
    rp_list_init(&l->deferred);
    rp_list_init(&l->conns);
    int rc = bind_all(l, o->admin);
    /* before the thread exists: the loop is not running yet, so this thread may touch it */
    if (rc == RP_OK && l->on_snapshot)
        rc = l->on_snapshot(l, l->snap);
    if (rc == RP_OK && pthread_create(&l->thread, NULL, loop_main, l) != 0)
        rc = RP_E_IO;
    if (rc != RP_OK) {
        l->stopped = true;
        if (l->on_stop)
            l->on_stop(l); /* what on_snapshot attached, if it got that far */
        net_listeners_close(l);
        if (l->upstream)
            rp_upstream_close(l->upstream);
        close_handles(l);
        uv_run(&l->uv, UV_RUN_DEFAULT);
        free_loop(l);
        return rc;
    }
    *out = l;
    return RP_OK;
}

void rp_loop_set_snapshot(struct rp_loop *l, struct rp_snapshot *s)
{
    rp_snapshot_ref(s);
    pthread_mutex_lock(&l->lock);
    struct rp_snapshot *prev = l->pending_snap;
    l->pending_snap = s;
    pthread_mutex_unlock(&l->lock);
    if (prev)
        rp_snapshot_unref(prev);
    uv_async_send(&l->wake);
}

void rp_loop_drain(struct rp_loop *l, uint32_t grace_ms)
{
    pthread_mutex_lock(&l->lock);
    l->pending_drain = true;
    l->pending_grace_ms = grace_ms;
    pthread_mutex_unlock(&l->lock);
    uv_async_send(&l->wake);
}

void rp_loop_join(struct rp_loop *l)
{
    pthread_join(l->thread, NULL);
    free_loop(l);
}
