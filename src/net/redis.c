/* Redis client for one loop: hiredis 0.14 async + its libuv adapter.
 *
 * What we add around hiredis:
 * - Deadlines. hiredis 0.14 has no command timeout. Every command of one client has the same
 *   timeout, so deadlines grow in sending order: a FIFO list of waiting commands and one uv
 *   timer armed for its head give each command its own deadline without a timer handle per
 *   command. A command past its deadline fires RP_E_REDIS_TIMEOUT and moves to the `late` list;
 *   its record stays alive until hiredis hands back its reply (dropped) or frees the context,
 *   because hiredis still holds the record as privdata.
 * - Stalls. If the oldest late command stays unanswered for stall_ms the server is hung (or
 *   SIGSTOPped); the connection is dropped and re-established, so later commands fail fast
 *   instead of each waiting out its deadline.
 * - Connection states: BACKOFF -> CONNECTING (TCP + AUTH/SELECT/SCRIPT LOAD/PING, all under
 *   one deadline) -> READY -> BACKOFF on any loss; CLOSING is final. Commands are accepted only
 *   when READY.
 * - Reconnect with exponential back-off (50 ms doubling to 2 s) and jitter, so replicas that
 *   lost Redis together do not reconnect in lockstep. */
#include "raproxy/redis.h"

#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/list.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/view.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS      50u
#define BACKOFF_MAX_MS      2000u
#define CONNECT_MIN_MS      1000u /* connect + handshake deadline, at least */
#define STALL_MIN_MS        2000u
#define STALL_TIMEOUTS      10u /* a stall is this many command timeouts without any reply */
#define DEADLINE_READS_MAX  64u /* socket reads before a deadline is declared passed */
#define LAG_SHARE           2u  /* a deadline timer later than timeout / this: the loop was busy */
#define HANDSHAKE_MAX_ARGS  4
#define SHA1_HEX_LEN        40
#define SCRIPTS_INITIAL_CAP 8u
#define EVAL_EXTRA_ARGS     3 /* EVALSHA sha nkeys */

enum conn_state { CONN_BACKOFF, CONN_CONNECTING, CONN_READY, CONN_CLOSING };
enum cmd_kind { CMD_USER, CMD_HANDSHAKE };
enum cmd_state { CMD_WAITING, CMD_LATE };

struct redis_cmd {
    struct rp_list_node link; /* in `waiting` or `late` */
    struct rp_redis *r;
    enum cmd_kind kind;
    enum cmd_state state;
    uint64_t deadline; /* uv_now() ms */
    uint64_t gen;      /* connection it was sent on */
    rp_redis_reply_fn cb;
    void *arg;
    bool last_handshake;
    bool postponed; /* its deadline moved once for a busy loop (on_deadline) */
    /* EVALSHA only: a private copy of the command for the one EVAL retry on NOSCRIPT */
    bool retried;
    unsigned script_id;
    int argc;
    const char **argv;
    size_t *argvlen;
};

struct redis_script {
    const char *lua;
    char sha[SHA1_HEX_LEN + 1];
};

struct rp_redis {
    uv_loop_t *loop;
    uv_timer_t conn_timer;     /* back-off before the next connection attempt */
    uv_timer_t deadline_timer; /* head of `waiting`, or the stall check of `late` */
    uint64_t deadline_due;
    int handles_open; /* freed when the last of our libuv handles is closed */
    enum conn_state state;
    redisAsyncContext *ac;
    uint64_t gen;
    bool attempted;
    struct rp_redis_url url;
    char *prefix;
    uint32_t timeout_ms;
    uint32_t connect_ms;
    uint32_t stall_ms;
    uint32_t backoff_ms;
    uint64_t rng;
    unsigned inflight;
    struct rp_list_node waiting; /* sent, deadline not passed: oldest first */
    struct rp_list_node late;    /* past the deadline, answer still owed: oldest first */
    struct redis_script *scripts;
    unsigned nscripts, scripts_cap;
    struct rp_metric *m_errors, *m_timeouts, *m_reconnects, *m_up;
};

static void conn_start(struct rp_redis *r);
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* ---- command records ------------------------------------------------------------------- */

/* The oldest command of a list, or NULL. */
static struct redis_cmd *oldest(struct rp_list_node *l)
{
    return rp_list_empty(l) ? NULL : container_of(l->next, struct redis_cmd, link);
}

static void cmd_free(struct rp_redis *r, struct redis_cmd *c)
{
    rp_list_unlink(&c->link);
    r->inflight--;
    free(c);
}

static void on_deadline(uv_timer_t *t);

/* Next moment the deadline timer must look: the head's deadline, or the stall limit. */
static void arm_deadline(struct rp_redis *r)
{
    uint64_t due = UINT64_MAX;
    struct redis_cmd *w = oldest(&r->waiting), *l = oldest(&r->late);
    if (w)
        due = w->deadline;
    if (l && l->deadline + r->stall_ms < due)
        due = l->deadline + r->stall_ms;
    if (due == UINT64_MAX)
        return;
    if (uv_is_active((uv_handle_t *)&r->deadline_timer) && r->deadline_due <= due)
        return;
    uint64_t now = uv_now(r->loop);
    r->deadline_due = due;
    uv_timer_start(&r->deadline_timer, on_deadline, due > now ? due - now : 0, 0);
}

static int submit(struct rp_redis *r, struct redis_cmd *c, int argc, const char **argv,
                  const size_t *argvlen)
{
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, argvlen) != REDIS_OK)
        return RP_E_REDIS_DOWN;
    c->r = r;
    c->gen = r->gen;
    c->state = CMD_WAITING;
    rp_list_push(&r->waiting, &c->link);
    r->inflight++;
    arm_deadline(r);
    return RP_OK;
}

/* ---- connection ------------------------------------------------------------------------ */

static uint32_t jitter(struct rp_redis *r, uint32_t ms)
{
    /* xorshift64: cheap, and only needs to differ between replicas */
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    uint32_t half = ms / 2;
    return half + (uint32_t)(r->rng % (half + 1));
}

static void on_backoff_timer(uv_timer_t *t)
{
    conn_start(t->data);
}

/* The connection of generation `gen` is gone (hiredis frees or has freed the context).
 * Idempotent: only the first report for a generation acts. */
static void conn_lost(struct rp_redis *r, uint64_t gen)
{
    if (gen != r->gen || (r->state != CONN_CONNECTING && r->state != CONN_READY))
        return;
    if (r->state == CONN_READY) {
        rp_metric_add(r->m_up, -1);
        rp_log_warn("redis_down", "redis connection lost");
    }
    r->ac = NULL;
    r->state = CONN_BACKOFF;
    uint32_t delay = jitter(r, r->backoff_ms);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
    uv_timer_start(&r->conn_timer, on_backoff_timer, delay, 0);
}

/* We decide to give up on the current connection (handshake failure, stall). */
static void drop_conn(struct rp_redis *r)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    conn_lost(r, r->gen);
    /* pending commands get NULL replies (RP_E_REDIS_DOWN); deferred by hiredis when called
     * from inside one of its callbacks */
    redisAsyncFree(ac);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rp_redis *r = ac->data;
    if (!r || r->ac != ac || status == REDIS_OK)
        return; /* success shows as the PING reply that ends the handshake */
    rp_log_warn("redis_connect", "redis connect failed: %s", ac->errstr);
    conn_lost(r, r->gen);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct rp_redis *r = ac->data;
    if (r && r->ac == ac)
        conn_lost(r, r->gen);
}

static int handshake_cmd(struct rp_redis *r, int argc, const char **argv, bool last)
{
    struct redis_cmd *c = calloc(1, sizeof *c);
    if (!c)
        return RP_E_NOMEM;
    c->kind = CMD_HANDSHAKE;
    c->last_handshake = last;
    c->deadline = uv_now(r->loop) + r->connect_ms;
    int rc = submit(r, c, argc, argv, NULL);
    if (rc != RP_OK)
        free(c);
    return rc;
}

/* Pipelined right after connect(): hiredis buffers them until the socket is writable, and
 * their deadline also bounds the TCP connect. PING last marks the end. */
static int send_handshake(struct rp_redis *r)
{
    const char *argv[HANDSHAKE_MAX_ARGS];
    int rc = RP_OK;
    if (r->url.pass) {
        int n = 0;
        argv[n++] = "AUTH";
        if (r->url.user)
            argv[n++] = r->url.user;
        argv[n++] = r->url.pass;
        rc = handshake_cmd(r, n, argv, false);
    }
    if (rc == RP_OK && r->url.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->url.db);
        argv[0] = "SELECT";
        argv[1] = db;
        rc = handshake_cmd(r, 2, argv, false);
    }
    for (unsigned i = 0; rc == RP_OK && i < r->nscripts; i++) {
        argv[0] = "SCRIPT";
        argv[1] = "LOAD";
        argv[2] = r->scripts[i].lua;
        rc = handshake_cmd(r, 3, argv, false);
    }
    if (rc == RP_OK) {
        argv[0] = "PING";
        rc = handshake_cmd(r, 1, argv, true);
    }
    return rc;
}

static void conn_start(struct rp_redis *r)
{
    r->gen++;
    r->state = CONN_CONNECTING;
    if (r->attempted)
        rp_metric_inc(r->m_reconnects);
    r->attempted = true;
    redisAsyncContext *ac = r->url.path ? redisAsyncConnectUnix(r->url.path)
                                        : redisAsyncConnect(r->url.host, r->url.port);
    if (!ac || ac->err) {
        rp_log_warn("redis_connect", "redis connect failed: %s", ac ? ac->errstr : "no memory");
        if (ac)
            redisAsyncFree(ac);
        conn_lost(r, r->gen);
        return;
    }
    ac->data = r;
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        conn_lost(r, r->gen);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    if (send_handshake(r) != RP_OK)
        drop_conn(r);
}

static void on_handshake_reply(struct rp_redis *r, struct redis_cmd *c, const redisReply *rep)
{
    bool current = c->gen == r->gen && r->state == CONN_CONNECTING;
    bool last = c->last_handshake;
    uint64_t gen = c->gen;
    cmd_free(r, c);
    if (!current)
        return;
    if (!rep) {
        conn_lost(r, gen);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        rp_log_error("redis_handshake", "redis refused the connection setup: %s", rep->str);
        drop_conn(r);
        return;
    }
    if (last) {
        r->state = CONN_READY;
        r->backoff_ms = BACKOFF_MIN_MS;
        rp_metric_add(r->m_up, 1);
        rp_log_info("redis_up", "redis connected");
    }
}

/* ---- replies and deadlines ------------------------------------------------------------- */

/* hiredis' reply as the caller sees it. A NULL reply reads as nil. */
static void reply_view(const redisReply *rep, struct rp_redis_reply *v)
{
    *v = (struct rp_redis_reply){.kind = RP_REDIS_REPLY_NIL, .impl = rep};
    if (!rep)
        return;
    switch (rep->type) {
    case REDIS_REPLY_INTEGER:
        v->kind = RP_REDIS_REPLY_INTEGER;
        v->integer = rep->integer;
        return;
    case REDIS_REPLY_ARRAY:
        v->kind = RP_REDIS_REPLY_ARRAY;
        v->elements = rep->elements;
        return;
    case REDIS_REPLY_STATUS:
        v->kind = RP_REDIS_REPLY_STATUS;
        break;
    case REDIS_REPLY_ERROR:
        v->kind = RP_REDIS_REPLY_ERROR;
        break;
    case REDIS_REPLY_STRING:
        v->kind = RP_REDIS_REPLY_STRING;
        break;
    default: /* REDIS_REPLY_NIL; hiredis 0.14 reads RESP2 and has no other type */
        return;
    }
    v->str = rp_view_make(rep->str, rep->len);
}

bool rp_redis_reply_elem(const struct rp_redis_reply *r, size_t i, struct rp_redis_reply *out)
{
    /* r is read before out is written: out may be r (walking down nested arrays) */
    const redisReply *rep =
        r && r->kind == RP_REDIS_REPLY_ARRAY && i < r->elements ? r->impl : NULL;
    reply_view(rep ? rep->element[i] : NULL, out);
    return rep != NULL;
}

static bool is_noscript(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ERROR && rep->str &&
           strncmp(rep->str, "NOSCRIPT", 8) == 0;
}

/* NOSCRIPT: the server lost its script cache (SCRIPT FLUSH, failover to a fresh replica).
 * EVAL runs the script and caches it again, in the same round trip as a retry would take. */
static int retry_as_eval(struct rp_redis *r, struct redis_cmd *c)
{
    const char *evalsha_name = c->argv[0], *sha = c->argv[1];
    size_t l0 = c->argvlen[0], l1 = c->argvlen[1];
    const char *lua = r->scripts[c->script_id].lua;
    c->argv[0] = "EVAL";
    c->argvlen[0] = 4;
    c->argv[1] = lua;
    c->argvlen[1] = strlen(lua);
    int rc = redisAsyncCommandArgv(r->ac, on_reply, c, c->argc, c->argv, c->argvlen);
    c->argv[0] = evalsha_name;
    c->argvlen[0] = l0;
    c->argv[1] = sha;
    c->argvlen[1] = l1;
    c->retried = true;
    return rc == REDIS_OK ? RP_OK : RP_E_REDIS_DOWN;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct redis_cmd *c = privdata;
    struct rp_redis *r = c->r;
    const redisReply *rep = reply;
    if (c->kind == CMD_HANDSHAKE) {
        on_handshake_reply(r, c, rep);
        return;
    }
    if (c->state == CMD_LATE) {
        cmd_free(r, c); /* its deadline already answered the caller */
        return;
    }
    if (c->argv && !c->retried && is_noscript(rep) && r->state == CONN_READY &&
        retry_as_eval(r, c) == RP_OK)
        return;
    int err = RP_OK;
    if (!rep) {
        err = r->state == CONN_CLOSING ? RP_E_SHUTDOWN : RP_E_REDIS_DOWN;
        if (err == RP_E_REDIS_DOWN)
            rp_metric_inc(r->m_errors);
        /* refuse new commands at once, even before hiredis reports the disconnect */
        conn_lost(r, c->gen);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        err = RP_E_REDIS_REPLY;
        rp_metric_inc(r->m_errors);
    }
    rp_redis_reply_fn cb = c->cb;
    void *arg = c->arg;
    cmd_free(r, c);
    struct rp_redis_reply view;
    reply_view(rep, &view);
    cb(arg, err, rep ? &view : NULL);
}

/* A loop busy past deadlines (a burst of TLS handshakes on it) runs its timers before it
 * looks at sockets: replies that came meanwhile are taken first, so that a deadline (and the
 * stall check) measures Redis, not this loop. Bounded: each read takes what one buffer
 * holds. */
static void take_arrived(struct rp_redis *r, uint64_t now)
{
    for (unsigned i = 0; i < DEADLINE_READS_MAX && r->state == CONN_READY && r->ac; i++) {
        struct redis_cmd *head = oldest(&r->waiting) ? oldest(&r->waiting) : oldest(&r->late);
        if (!head || (head->deadline > now && rp_list_empty(&r->late)))
            return;
        redisAsyncHandleRead(r->ac);
        struct redis_cmd *after = oldest(&r->waiting) ? oldest(&r->waiting) : oldest(&r->late);
        if (after == head)
            return; /* nothing more had come */
    }
}

/* The timer fired more than half a timeout late: the loop was busy, and commands issued
 * meanwhile may not even have been written (hiredis writes from the loop). Once per command,
 * the deadline starts again now, so that it counts time Redis had, not the loop's: a
 * waiting command gets a whole timeout, the stall limit counts from now. */
static bool postpone_for_lag(struct rp_redis *r, uint64_t now)
{
    uint64_t lag = now > r->deadline_due ? now - r->deadline_due : 0;
    if (r->state != CONN_READY || lag * LAG_SHARE <= r->timeout_ms)
        return false;
    bool moved = false;
    for (struct rp_list_node *n = r->waiting.next; n != &r->waiting; n = n->next) {
        struct redis_cmd *c = container_of(n, struct redis_cmd, link);
        if (!c->postponed && c->kind != CMD_HANDSHAKE) {
            c->deadline = now + r->timeout_ms;
            c->postponed = moved = true;
        }
    }
    for (struct rp_list_node *n = r->late.next; n != &r->late; n = n->next) {
        struct redis_cmd *c = container_of(n, struct redis_cmd, link);
        if (!c->postponed) {
            c->deadline = now;
            c->postponed = moved = true;
        }
    }
    return moved;
}

static void on_deadline(uv_timer_t *t)
{
    struct rp_redis *r = t->data;
    uint64_t now = uv_now(r->loop);
    struct redis_cmd *c;
    take_arrived(r, now);
    if (r->state == CONN_CLOSING)
        return;
    if (postpone_for_lag(r, now)) {
        arm_deadline(r);
        return;
    }
    while (r->state != CONN_CLOSING && (c = oldest(&r->waiting)) && c->deadline <= now) {
        rp_list_unlink(&c->link);
        c->state = CMD_LATE;
        rp_list_push(&r->late, &c->link);
        if (c->kind == CMD_HANDSHAKE) {
            rp_log_warn("redis_connect", "redis connect/handshake timed out");
            drop_conn(r); /* frees c with the context */
            continue;
        }
        rp_metric_inc(r->m_timeouts);
        /* c stays owned by hiredis; the callback may close r, which frees c */
        c->cb(c->arg, RP_E_REDIS_TIMEOUT, NULL);
    }
    if (r->state == CONN_CLOSING)
        return;
    if (r->state == CONN_READY && (c = oldest(&r->late)) && now >= c->deadline + r->stall_ms) {
        rp_log_warn("redis_stall", "redis has not answered for %u ms; reconnecting",
                    r->stall_ms + r->timeout_ms);
        drop_conn(r);
    }
    arm_deadline(r);
}

/* ---- public API ------------------------------------------------------------------------ */

int rp_redis_new(struct rp_redis **out, uv_loop_t *loop, const struct rp_redis_opts *o)
{
    *out = NULL;
    struct rp_redis *r = calloc(1, sizeof *r);
    if (!r)
        return RP_E_NOMEM;
    rp_list_init(&r->waiting);
    rp_list_init(&r->late);
    int rc = rp_redis_url_parse(o->url, &r->url);
    if (rc != RP_OK) {
        rp_log_error("redis_config", "bad redis url");
        free(r);
        return rc;
    }
    r->prefix = strdup(o->key_prefix ? o->key_prefix : RP_REDIS_DEFAULT_PREFIX);
    if (!r->prefix) {
        free(r);
        return RP_E_NOMEM;
    }
    r->loop = loop;
    r->timeout_ms = o->timeout_ms ? o->timeout_ms : RP_DEF_REDIS_TIMEOUT;
    r->connect_ms = r->timeout_ms > CONNECT_MIN_MS ? r->timeout_ms : CONNECT_MIN_MS;
    r->stall_ms = r->timeout_ms * STALL_TIMEOUTS;
    if (r->stall_ms < STALL_MIN_MS)
        r->stall_ms = STALL_MIN_MS;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->rng = (uint64_t)(uintptr_t)r ^ uv_hrtime() ^ 0x9e3779b97f4a7c15ull;
    r->m_errors = rp_metric_get("raproxy_redis_errors_total", RP_METRIC_COUNTER, NULL);
    r->m_timeouts = rp_metric_get("raproxy_redis_timeouts_total", RP_METRIC_COUNTER, NULL);
    r->m_reconnects = rp_metric_get("raproxy_redis_reconnects_total", RP_METRIC_COUNTER, NULL);
    r->m_up = rp_metric_get("raproxy_redis_up", RP_METRIC_GAUGE, NULL);
    uv_timer_init(loop, &r->conn_timer);
    uv_timer_init(loop, &r->deadline_timer);
    r->conn_timer.data = r;
    r->deadline_timer.data = r;
    r->handles_open = 2;
    conn_start(r);
    *out = r;
    return RP_OK;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct rp_redis *r = h->data;
    if (--r->handles_open > 0)
        return;
    free(r->scripts);
    free(r->prefix);
    free(r);
}

void rp_redis_close(struct rp_redis *r)
{
    if (!r || r->state == CONN_CLOSING)
        return;
    if (r->state == CONN_READY)
        rp_metric_add(r->m_up, -1);
    r->state = CONN_CLOSING;
    uv_timer_stop(&r->conn_timer);
    uv_timer_stop(&r->deadline_timer);
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    /* every pending command gets a NULL reply -> RP_E_SHUTDOWN (late ones are just freed);
     * r stays alive until the timers' close callbacks, which run after that */
    if (ac)
        redisAsyncFree(ac);
    uv_close((uv_handle_t *)&r->conn_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->deadline_timer, on_handle_closed);
}

static int accept_state(const struct rp_redis *r)
{
    if (r->state == CONN_CLOSING)
        return RP_E_SHUTDOWN;
    if (r->state != CONN_READY || !r->ac)
        return RP_E_REDIS_DOWN;
    if (r->inflight >= RP_REDIS_MAX_INFLIGHT)
        return RP_E_REDIS_BUSY;
    return RP_OK;
}

int rp_redis_command(struct rp_redis *r, rp_redis_reply_fn cb, void *arg, int argc,
                     const char **argv, const size_t *argvlen)
{
    if (!r || !cb || argc <= 0)
        return RP_E_INVAL;
    int rc = accept_state(r);
    if (rc != RP_OK)
        return rc;
    struct redis_cmd *c = calloc(1, sizeof *c);
    if (!c)
        return RP_E_NOMEM;
    c->kind = CMD_USER;
    c->cb = cb;
    c->arg = arg;
    c->deadline = uv_now(r->loop) + r->timeout_ms;
    rc = submit(r, c, argc, argv, argvlen);
    if (rc != RP_OK)
        free(c);
    return rc;
}

static void sha1_hex(const char *s, char out[SHA1_HEX_LEN + 1])
{
    unsigned char d[SHA1_HEX_LEN / 2];
    wc_ShaHash((const unsigned char *)s, (word32)strlen(s), d);
    rp_view_hex(rp_view_make(d, sizeof d), out);
}

int rp_redis_script(struct rp_redis *r, const char *lua, unsigned *script_id)
{
    for (unsigned i = 0; i < r->nscripts; i++) {
        if (r->scripts[i].lua == lua || strcmp(r->scripts[i].lua, lua) == 0) {
            *script_id = i;
            return RP_OK;
        }
    }
    if (r->nscripts == r->scripts_cap) {
        unsigned cap = r->scripts_cap ? r->scripts_cap * 2 : SCRIPTS_INITIAL_CAP;
        struct redis_script *s = realloc(r->scripts, cap * sizeof *s);
        if (!s)
            return RP_E_NOMEM;
        r->scripts = s;
        r->scripts_cap = cap;
    }
    struct redis_script *s = &r->scripts[r->nscripts];
    s->lua = lua;
    sha1_hex(lua, s->sha);
    *script_id = r->nscripts++;
    /* the handshake of the current connection may already be on its way without it: load
     * now, ahead of any EVALSHA, so that the first one does not pay for a NOSCRIPT retry
     * (which would also run it behind commands sent after it) */
    if (r->state == CONN_CONNECTING || r->state == CONN_READY) {
        const char *argv[] = {"SCRIPT", "LOAD", lua};
        if (handshake_cmd(r, 3, argv, false) != RP_OK)
            drop_conn(r);
    }
    return RP_OK;
}

int rp_redis_evalsha(struct rp_redis *r, unsigned script_id, int nkeys, int argc, const char **argv,
                     const size_t *argvlen, rp_redis_reply_fn cb, void *arg)
{
    if (!r || !cb || script_id >= r->nscripts || nkeys < 0 || argc < nkeys)
        return RP_E_INVAL;
    int rc = accept_state(r);
    if (rc != RP_OK)
        return rc;
    char nk[16];
    int nkl = snprintf(nk, sizeof nk, "%d", nkeys);
    int total = argc + EVAL_EXTRA_ARGS;
    size_t data = SHA1_HEX_LEN + (size_t)nkl;
    for (int i = 0; i < argc; i++)
        data += argvlen ? argvlen[i] : strlen(argv[i]);
    /* one allocation: record, argv, argvlen, bytes; kept for the NOSCRIPT retry */
    size_t head = sizeof(struct redis_cmd) + (size_t)total * (sizeof(char *) + sizeof(size_t));
    struct redis_cmd *c = calloc(1, head + data);
    if (!c)
        return RP_E_NOMEM;
    c->argv = (const char **)(c + 1);
    c->argvlen = (size_t *)(c->argv + total);
    char *p = (char *)(c->argvlen + total);
    const char *fixed[EVAL_EXTRA_ARGS] = {"EVALSHA", r->scripts[script_id].sha, nk};
    size_t fixedlen[EVAL_EXTRA_ARGS] = {7, SHA1_HEX_LEN, (size_t)nkl};
    for (int i = 0; i < total; i++) {
        const char *src = i < EVAL_EXTRA_ARGS ? fixed[i] : argv[i - EVAL_EXTRA_ARGS];
        size_t len = i < EVAL_EXTRA_ARGS ? fixedlen[i]
                     : argvlen           ? argvlen[i - EVAL_EXTRA_ARGS]
                                         : strlen(src);
        if (i == 0) {
            c->argv[i] = src; /* a string literal */
        } else {
            memcpy(p, src, len);
            c->argv[i] = p;
            p += len;
        }
        c->argvlen[i] = len;
    }
    c->argc = total;
    c->script_id = script_id;
    c->kind = CMD_USER;
    c->cb = cb;
    c->arg = arg;
    c->deadline = uv_now(r->loop) + r->timeout_ms;
    rc = submit(r, c, total, c->argv, c->argvlen);
    if (rc != RP_OK)
        free(c);
    return rc;
}

bool rp_redis_ready(const struct rp_redis *r)
{
    return r && r->state == CONN_READY;
}

const char *rp_redis_key_prefix(const struct rp_redis *r)
{
    return r->prefix;
}

bool rp_redis_idle(const struct rp_redis *r)
{
    return !r || rp_list_empty(&r->waiting);
}
