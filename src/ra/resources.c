/* A loop's resources (ra.h, struct ra_loop): the CA pool, the VA pool and the Redis set —
 * client, admission, delayed delivery — built on the loop thread from the snapshot being
 * installed, never on the request path, and replaced the same way on reload: what a new
 * snapshot changes is built first, then swapped in, and what it replaces is retired once
 * the work it accepted is done. */
#include "ra.h"

#include "raproxy/admit.h"
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/log.h"
#include "raproxy/loop.h"
#include "raproxy/redis.h"
#include "raproxy/server.h"
#include "raproxy/snapshot.h"
#include "raproxy/upstream.h"

#include <stdlib.h>
#include <string.h>

/* A replaced Redis set is looked at this often until nothing waits on it. */
#define RETIRE_POLL_MS 100u
/* A new Redis client is looked at this often until it is connected … */
#define STAGE_POLL_MS 10u
/* … and takes over after this at the latest. */
#define STAGE_MAX_MS 2000u

struct rp_server {
    struct rp_workers *workers;
    struct rp_limiter *limiter;
    struct ra_dd_mem *dd_mem; /* delayed delivery without Redis: one queue per process */
};

/* What follows the `redis` section: the client (NULL without one), admission on it (in
 * process without) and delayed delivery on it (the process's queue without). */
struct ra_redis_set {
    struct rp_redis *redis;
    struct rp_admit *admit;
    struct ra_deliver *dd;
    struct ra_redis_set *next; /* in ra_loop.retired */
};

int rp_server_new(struct rp_server **out, const struct rp_server_opts *o)
{
    *out = NULL;
    if (!o || !o->workers || !o->limiter)
        return RP_E_INVAL;
    struct rp_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return RP_E_NOMEM;
    srv->workers = o->workers;
    srv->limiter = o->limiter;
    int rc = ra_dd_mem_new(&srv->dd_mem);
    if (rc != RP_OK) {
        free(srv);
        return rc;
    }
    *out = srv;
    return RP_OK;
}

void rp_server_free(struct rp_server *srv)
{
    if (!srv)
        return;
    ra_dd_mem_free(srv->dd_mem);
    free(srv);
}

/* ---- the Redis set ------------------------------------------------------------------- */

/* Pending callbacks fire (RP_E_SHUTDOWN) when the client closes: a retired set is closed
 * only once it has none. */
static void redis_set_close(struct ra_redis_set *set)
{
    ra_deliver_close(set->dd); /* before the Redis client closes */
    if (set->redis)
        rp_redis_close(set->redis);
    if (set->admit)
        rp_admit_free(set->admit);
    *set = (struct ra_redis_set){0};
}

static int redis_set_new(struct ra_loop *rl, const struct rp_config *cfg, struct ra_redis_set *set)
{
    unsigned idx = rp_loop_index(rl->loop);
    int rc = RP_OK;
    *set = (struct ra_redis_set){0};
    if (cfg->redis) {
        struct rp_redis_opts ro = {cfg->redis->url, cfg->redis->timeout_ms, cfg->redis->key_prefix};
        rc = rp_redis_new(&set->redis, rp_loop_uv(rl->loop), &ro);
        if (rc != RP_OK) {
            char shown[RP_REDIS_URL_MAX + 1];
            rp_redis_url_redact(cfg->redis->url, shown, sizeof shown);
            rp_log_error("redis", "loop %u: cannot create the Redis client for %s: %s", idx, shown,
                         rp_err_msg(rc));
        }
    }
    struct rp_admit_opts ao = {.redis = set->redis, .limiter = rl->limiter};
    if (rc == RP_OK && (rc = rp_admit_new(&set->admit, &ao)) != RP_OK)
        rp_log_error("admit", "loop %u: cannot create admission: %s", idx, rp_err_msg(rc));
    if (rc == RP_OK && (rc = ra_deliver_new(&set->dd, rl, set->redis, rl->dd_mem)) != RP_OK)
        rp_log_error("delayed", "loop %u: cannot create the CA's budget: %s", idx, rp_err_msg(rc));
    if (rc != RP_OK)
        redis_set_close(set);
    return rc;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_redis(const struct rp_cfg_redis *a, const struct rp_cfg_redis *b)
{
    if (!a || !b)
        return !a && !b;
    return same_str(a->url, b->url) && a->timeout_ms == b->timeout_ms &&
           same_str(a->key_prefix, b->key_prefix);
}

/* A set no longer used for new work: its dispatcher stops, and it is closed once no delivery
 * runs and no Redis reply is owed, so that nothing it accepted is cut short. */
static void retire(struct ra_loop *rl, struct ra_redis_set *set)
{
    if (!set->admit) {
        free(set);
        return;
    }
    ra_deliver_retire(set->dd);
    set->next = rl->retired;
    rl->retired = set;
}

/* The staged set becomes the loop's: new exchanges and steps use it from now on. */
static void promote(struct ra_loop *rl)
{
    struct ra_redis_set *set = rl->staged;
    struct ra_redis_set *cur = malloc(sizeof *cur);
    rl->staged = NULL;
    if (cur) {
        *cur = (struct ra_redis_set){rl->redis, rl->admit, rl->dd, NULL};
        retire(rl, cur);
    } else {
        struct ra_redis_set now = {rl->redis, rl->admit, rl->dd, NULL};
        redis_set_close(&now); /* out of memory: what it has in flight fails (RP_E_SHUTDOWN) */
    }
    rl->redis = set->redis;
    rl->admit = set->admit;
    rl->dd = set->dd;
    free(set);
}

static void close_idle_retired(struct ra_loop *rl)
{
    struct ra_redis_set **pp = &rl->retired;
    while (*pp) {
        struct ra_redis_set *set = *pp;
        if (ra_deliver_idle(set->dd) && rp_redis_idle(set->redis)) {
            *pp = set->next;
            redis_set_close(set);
            free(set);
        } else {
            pp = &set->next;
        }
    }
}

static void on_sets_timer(void *arg)
{
    struct ra_loop *rl = arg;
    if (rl->staged &&
        (rp_redis_ready(rl->staged->redis) || rp_loop_now_ms(rl->loop) >= rl->staged_until))
        promote(rl);
    close_idle_retired(rl);
    if (rl->staged)
        rp_loop_timer_start(rl->sets_timer, STAGE_POLL_MS);
    else if (rl->retired)
        rp_loop_timer_start(rl->sets_timer, RETIRE_POLL_MS);
}

/* A new set replaces the loop's. A new Redis client starts connecting now: until it is
 * ready (or STAGE_MAX_MS passed: the reload must take effect, and the domains'
 * on_redis_failure decides meanwhile) the running set goes on serving, so that moving Redis
 * costs no request the connection time. */
static int replace_set(struct ra_loop *rl, const struct ra_redis_set *fresh)
{
    struct ra_redis_set *set = malloc(sizeof *set);
    if (!set)
        return RP_E_NOMEM;
    *set = *fresh;
    if (rl->staged)
        retire(rl, rl->staged); /* a reload before the last one's Redis came up */
    rl->staged = set;
    rl->staged_until = rp_loop_now_ms(rl->loop) + STAGE_MAX_MS;
    if (!rl->admit || !set->redis || rp_redis_ready(set->redis))
        promote(rl);
    on_sets_timer(rl);
    return RP_OK;
}

/* ---- pools --------------------------------------------------------------------------- */

static bool same_upstream(const struct rp_snapshot *a, const struct rp_snapshot *b)
{
    const struct rp_cfg_upstream *x = &a->cfg->upstream, *y = &b->cfg->upstream;
    return strcmp(x->url, y->url) == 0 && x->timeout_ms == y->timeout_ms &&
           x->connect_timeout_ms == y->connect_timeout_ms &&
           x->max_connections == y->max_connections && x->max_queue == y->max_queue &&
           x->keep_alive == y->keep_alive && a->upstream_tls == b->upstream_tls;
}

/* What a snapshot changes, built before anything is swapped: a failure leaves the loop
 * with everything it had. */
struct changes {
    bool ca, va, redis;
    struct rp_upstream *ca_pool, *va_pool;
    struct ra_redis_set set;
};

static int build(struct ra_loop *rl, struct rp_snapshot *s, struct changes *c)
{
    struct rp_loop *l = rl->loop;
    const struct rp_snapshot *old = rl->snap;
    int rc = RP_OK;
    /* a draining loop has closed its CA pool for good */
    c->ca = (!old || !same_upstream(old, s)) && !rp_loop_draining(l);
    c->va = !old || !ra_ocsp_pool_same(old, s);
    c->redis = !old || !same_redis(old->cfg->redis, s->cfg->redis);
    if (c->ca && (rc = rp_upstream_new(&c->ca_pool, rp_loop_uv(l), &s->cfg->upstream,
                                       s->upstream_tls)) != RP_OK)
        rp_log_error("upstream", "loop %u: cannot create the CA pool: %s", rp_loop_index(l),
                     rp_err_msg(rc));
    if (rc == RP_OK && c->va && s->cfg->validation &&
        (rc = ra_ocsp_pool_new(l, s, &c->va_pool)) != RP_OK)
        rp_log_error("ocsp", "loop %u: cannot create the VA pool: %s", rp_loop_index(l),
                     rp_err_msg(rc));
    if (rc == RP_OK && c->redis)
        rc = redis_set_new(rl, s->cfg, &c->set);
    if (rc != RP_OK) {
        if (c->ca_pool)
            rp_upstream_close(c->ca_pool);
        if (c->va_pool)
            rp_upstream_close(c->va_pool);
    }
    return rc;
}

/* Swap in what was built; what it replaces finishes the work it accepted. */
static int install(struct ra_loop *rl, struct rp_snapshot *s, struct changes *c)
{
    if (c->redis && replace_set(rl, &c->set) != RP_OK) {
        if (c->ca_pool)
            rp_upstream_close(c->ca_pool);
        if (c->va_pool)
            rp_upstream_close(c->va_pool);
        redis_set_close(&c->set);
        return RP_E_NOMEM;
    }
    if (c->ca)
        rp_loop_set_upstream(rl->loop, c->ca_pool);
    if (c->va) {
        if (rl->va)
            rp_upstream_retire(rl->va);
        rl->va = c->va_pool;
    }
    rl->ocsp_cache = ra_ocsp_cache_for(s);
    rp_snapshot_unref(rl->snap);
    rl->snap = rp_snapshot_ref(s);
    return RP_OK;
}

/* ---- the loop ------------------------------------------------------------------------ */

static void on_port_closed(struct rp_job_port *p)
{
    struct ra_loop *rl = p->data;
    free(rl);
}

/* The loop stopped: every exchange and delivery has ended (they hold the loop). */
static void loop_free(struct ra_loop *rl)
{
    if (rl->staged)
        retire(rl, rl->staged);
    while (rl->retired) {
        struct ra_redis_set *set = rl->retired;
        rl->retired = set->next;
        redis_set_close(set);
        free(set);
    }
    struct ra_redis_set cur = {rl->redis, rl->admit, rl->dd, NULL};
    redis_set_close(&cur);
    if (rl->va)
        rp_upstream_close(rl->va);
    rp_loop_timer_free(rl->sets_timer, NULL, NULL);
    rp_snapshot_unref(rl->snap);
    if (rl->port_open)
        rp_job_port_close(&rl->port, on_port_closed);
    else
        free(rl);
}

static int loop_new(struct rp_loop *l, struct ra_loop **out)
{
    const struct rp_server *srv = rp_loop_ctx(l);
    if (!srv) {
        rp_log_error("start", "loop %u: no crypto workers or limiter", rp_loop_index(l));
        return RP_E_INTERNAL;
    }
    struct ra_loop *rl = calloc(1, sizeof *rl);
    if (!rl)
        return RP_E_NOMEM;
    rl->loop = l;
    rl->workers = srv->workers;
    rl->limiter = srv->limiter;
    rl->dd_mem = srv->dd_mem;
    int rc = rp_loop_timer_new(l, on_sets_timer, rl, &rl->sets_timer);
    if (rc == RP_OK && (rc = rp_job_port_init(&rl->port, rp_loop_uv(l))) == RP_OK) {
        rl->port.data = rl;
        rl->port_open = true;
    }
    if (rc != RP_OK) {
        loop_free(rl);
        return rc;
    }
    *out = rl;
    return RP_OK;
}

int rp_server_on_snapshot(struct rp_loop *l, struct rp_snapshot *s)
{
    struct ra_loop *rl = rp_loop_app(l);
    bool first = !rl;
    int rc = first ? loop_new(l, &rl) : RP_OK;
    if (rc != RP_OK)
        return rc;
    struct changes c = {0};
    rc = build(rl, s, &c);
    if (rc != RP_OK) {
        if (first)
            loop_free(rl);
        return rc;
    }
    rc = install(rl, s, &c);
    if (rc != RP_OK) {
        if (first)
            loop_free(rl);
        return rc;
    }
    if (first)
        rp_loop_set_app(l, rl);
    return RP_OK;
}

void rp_server_on_stop(struct rp_loop *l)
{
    struct ra_loop *rl = rp_loop_app(l);
    if (!rl)
        return;
    rp_loop_set_app(l, NULL);
    loop_free(rl);
}

bool rp_server_redis_ready(struct rp_loop *l)
{
    struct ra_loop *rl = rp_loop_app(l);
    if (!rl || !rl->redis || rp_redis_ready(rl->redis))
        return true;
    /* Redis down only costs readiness when a domain refuses without it: with every domain
     * `on_redis_failure: open` requests are still served (in-process limits), and pulling
     * every replica that shares this Redis out of the load balancer at once would be the
     * outage. raproxy_redis_up and the redis_down log line report it. */
    const struct rp_config *cfg = rp_loop_snapshot(l)->cfg;
    for (unsigned i = 0; i < cfg->domains_count; i++)
        if (cfg->domains[i].on_redis_failure == RP_REDIS_FAIL_CLOSED)
            return false;
    return true;
}
