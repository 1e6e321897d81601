/* Admission (see admit.h for the contract, the key names and the Cluster trade-off).
 *
 * Every call becomes one request record with up to MAX_SLOTS slots, one per hash slot it
 * touches. With Redis each slot is one command, all sent back to back (one round trip); the
 * record decides when the last answer is in. Without Redis, or when Redis failed and the
 * domain fails open, the same slots are filled by the in-process limiter and the same
 * decision function runs, so both paths refuse the same things. */
#include "raproxy/admit.h"

#include "raproxy/clock.h"
#include "raproxy/err.h"
#include "raproxy/limiter.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/pool.h"
#include "raproxy/redis.h"
#include "raproxy/view.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLOTS        5
#define MAX_PREFIX       64u
#define KEY_MAX          640u
#define NUM_MAX          24u /* decimal uint64 + NUL */
#define MS_PER_SEC       1000u
#define NONCE_TTL_SKEWS  2u /* a messageTime is accepted ±skew … */
#define NONCE_TTL_MARGIN 2u /* … in whole seconds: +1 s for that, +1 s for rounding */

enum admit_kind { ADMIT_START, ADMIT_VERIFIED, ADMIT_ISSUED, ADMIT_MAC_FAILED, ADMIT_TXN_KEEP };

/* What a slot asks; the keys it uses are fixed per kind (see build_*). */
enum slot_kind {
    SLOT_IP,
    SLOT_DOMAIN,
    SLOT_GLOBAL,
    SLOT_DEVICE,
    SLOT_TXN,
    SLOT_ALLOW,
    SLOT_CLAIM,    /* allowlist_consume: check and claim in one script */
    SLOT_SETTLE,   /* consume, give back or keep a claim */
    SLOT_MAC_LOCK, /* is the MAC kid locked out? (before any hashing) */
    SLOT_PEEK,     /* was this nonce used already? (before any hashing; records nothing) */
    SLOT_MAC_FAIL  /* count one failed MAC */
};

/* Key indices in admit_req.key, per kind of request */
enum { K_IP, K_DOMAIN, K_GLOBAL, K_MAC, K_PEEK, K_COUNT_START };
enum { K_DEV, K_NONCE, K_TXN, K_ALLOW, K_CLAIM, K_COUNT_VERIFIED };
#define K_COUNT K_COUNT_START
_Static_assert((int)K_COUNT_VERIFIED <= (int)K_COUNT, "admit_req.key holds the keys of every kind");

/* Script answer codes (admit_lua.c). */
#define CODE_OK      1
#define CODE_REFUSED 0
#define CODE_REPLAY  (-1)
#define CODE_IN_USE  (-2)
#define CODE_UNKNOWN (-3)
#define CODE_LOCKED  (-4)

struct admit_req;

struct admit_slot {
    struct admit_req *req;
    enum slot_kind kind;
    const struct rp_cfg_limit *limit; /* rate slots; points into req->limits */
    int key;                          /* index of its (first) key */
    int err;                          /* RP_OK when code/value hold an answer */
    long long code, value;
};

struct admit_req {
    struct rp_admit *a;
    rp_admit_fn cb;
    void *arg;
    enum admit_kind kind;
    int pending;  /* commands sent, answer not yet in */
    bool sending; /* no decision while the slots are still being sent */
    int nslots;
    struct admit_slot slots[MAX_SLOTS];
    struct rp_cfg_limits limits;
    enum rp_redis_failure on_failure;
    enum rp_txn_mode mode;
    bool allowlist;
    enum rp_admit_settle settle;
    char body[RP_LIMITER_STATE_MAX + 1];
    uint32_t nonce_ttl_ms;
    uint8_t serial[RP_ADMIT_MAX_SERIAL];
    size_t serial_len;
    uint8_t txid[RP_ADMIT_MAX_ID];
    size_t txid_len;
    uint32_t keep_ms;       /* settle keep: the claim's new TTL; txn keep: the entry's */
    uint32_t mac_max;       /* lock-out threshold (start: check; failed: log when reached) */
    uint32_t mac_window_ms; /* failed: the window a first failure opens */
    char key[K_COUNT][KEY_MAX];
    size_t keylen[K_COUNT];
};

struct rp_admit {
    struct rp_redis *redis;
    struct rp_limiter *lim;
    char prefix[MAX_PREFIX + 1];
    uint32_t txn_ttl_ms;
    unsigned sc_gcra, sc_refund, sc_dev, sc_dev_undo, sc_txn, sc_txn_undo, sc_mac_lock, sc_mac_fail,
        sc_claim, sc_settle;
};

/* A transaction's TTL: the one a keep asks for, else the configured one. */
static uint32_t txn_ttl_ms(const struct admit_req *req)
{
    return req->keep_ms ? req->keep_ms : req->a->txn_ttl_ms;
}

/* ---- keys --------------------------------------------------------------------------------- */

struct keybuf {
    char *p;
    size_t len;
    bool overflow;
};

static void kb_bytes(struct keybuf *k, const void *p, size_t n)
{
    if (k->overflow || k->len + n >= KEY_MAX) {
        k->overflow = true;
        return;
    }
    memcpy(k->p + k->len, p, n);
    k->len += n;
}

static void kb_str(struct keybuf *k, const char *s)
{
    kb_bytes(k, s, strlen(s));
}

static void kb_hex(struct keybuf *k, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n && !k->overflow; i++) {
        char two[2] = {hex[p[i] >> 4], hex[p[i] & 15]};
        kb_bytes(k, two, 2);
    }
}

/* Starts key i of req with the prefix. */
static struct keybuf kb_begin(struct admit_req *req, int i)
{
    struct keybuf k = {req->key[i], 0, false};
    kb_str(&k, req->a->prefix);
    return k;
}

static int kb_end(struct admit_req *req, int i, struct keybuf *k)
{
    if (k->overflow)
        return RP_E_INVAL;
    k->p[k->len] = '\0';
    req->keylen[i] = k->len;
    return RP_OK;
}

static struct rp_view key_view(const struct admit_req *req, int i)
{
    return rp_view_make(req->key[i], req->keylen[i]);
}

/* ---- setup ---------------------------------------------------------------------------------- */

int rp_admit_new(struct rp_admit **out, const struct rp_admit_opts *o)
{
    *out = NULL;
    if (!o || !o->limiter)
        return RP_E_INVAL;
    const char *prefix = o->key_prefix ? o->key_prefix
                         : o->redis    ? rp_redis_key_prefix(o->redis)
                                       : RP_REDIS_DEFAULT_PREFIX;
    if (strlen(prefix) > MAX_PREFIX || strpbrk(prefix, "{}"))
        return RP_E_CONFIG;
    struct rp_admit *a = calloc(1, sizeof *a);
    if (!a)
        return RP_E_NOMEM;
    a->redis = o->redis;
    a->lim = o->limiter;
    strcpy(a->prefix, prefix);
    a->txn_ttl_ms = o->txn_ttl_ms ? o->txn_ttl_ms : RP_ADMIT_TXN_TTL_MS;
    if (a->redis && (rp_redis_script(a->redis, rp_admit_lua_gcra, &a->sc_gcra) ||
                     rp_redis_script(a->redis, rp_admit_lua_gcra_refund, &a->sc_refund) ||
                     rp_redis_script(a->redis, rp_admit_lua_device, &a->sc_dev) ||
                     rp_redis_script(a->redis, rp_admit_lua_device_undo, &a->sc_dev_undo) ||
                     rp_redis_script(a->redis, rp_admit_lua_txn, &a->sc_txn) ||
                     rp_redis_script(a->redis, rp_admit_lua_txn_undo, &a->sc_txn_undo) ||
                     rp_redis_script(a->redis, rp_admit_lua_mac_lock, &a->sc_mac_lock) ||
                     rp_redis_script(a->redis, rp_admit_lua_mac_fail, &a->sc_mac_fail) ||
                     rp_redis_script(a->redis, rp_admit_lua_claim, &a->sc_claim) ||
                     rp_redis_script(a->redis, rp_admit_lua_settle, &a->sc_settle))) {
        free(a);
        return RP_E_NOMEM;
    }
    *out = a;
    return RP_OK;
}

void rp_admit_free(struct rp_admit *a)
{
    free(a);
}

uint32_t rp_admit_nonce_ttl_s(bool has_message_time, uint32_t max_clock_skew_s,
                              uint32_t replay_window_s)
{
    if (!has_message_time)
        return replay_window_s ? replay_window_s : RP_DEF_REPLAY_WINDOW;
    uint64_t ttl = (uint64_t)NONCE_TTL_SKEWS * max_clock_skew_s + NONCE_TTL_MARGIN;
    return ttl > UINT32_MAX ? UINT32_MAX : (uint32_t)ttl;
}

enum rp_txn_mode rp_admit_txn_mode(const char *body)
{
    static const char *const starts[] = {"ir", "cr", "p10cr", "kur", "rr", "genm", "ccr", "krr"};
    if (!body)
        return RP_TXN_CHECK;
    if (strcmp(body, "certConf") == 0 || strcmp(body, "pollReq") == 0)
        return RP_TXN_CONTINUE;
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
        if (strcmp(body, starts[i]) == 0)
            return RP_TXN_START;
    return RP_TXN_CHECK;
}

static const char *txn_mode_name(enum rp_txn_mode m)
{
    return m == RP_TXN_START ? "start" : m == RP_TXN_CONTINUE ? "continue" : "check";
}

static const char *slot_limit_name(enum slot_kind k)
{
    switch (k) {
    case SLOT_IP:
        return "per_ip";
    case SLOT_DOMAIN:
        return "domain";
    case SLOT_GLOBAL:
        return "global";
    case SLOT_DEVICE:
        return "per_device";
    default:
        return NULL;
    }
}

static uint64_t now_us(void)
{
    return rp_clock_ns() / 1000u;
}

static void req_free(struct admit_req *req)
{
    rp_pool_put(req, sizeof *req);
}

static struct admit_req *req_new(struct rp_admit *a, enum admit_kind kind, rp_admit_fn cb,
                                 void *arg)
{
    /* one record per admission step: from the loop's pool, not malloc, at every request */
    struct admit_req *req = rp_pool_get(sizeof *req);
    if (!req)
        return NULL;
    memset(req, 0, sizeof *req);
    req->a = a;
    req->kind = kind;
    req->cb = cb;
    req->arg = arg;
    return req;
}

static void add_slot(struct admit_req *req, enum slot_kind kind, int key,
                     const struct rp_cfg_limit *limit)
{
    struct admit_slot *s = &req->slots[req->nslots++];
    s->req = req;
    s->kind = kind;
    s->key = key;
    s->limit = limit;
    s->err = RP_OK;
}

/* The one place a decision reaches the caller. rp_admit_on_issued may be called without a
 * callback (fire and forget: the exchange is over); a failure to settle the claim is then
 * logged here, since nobody else will see it. */
static void deliver(rp_admit_fn cb, void *arg, const struct rp_admit_result *res)
{
    if (cb) {
        cb(arg, res);
        return;
    }
    if (res->err != RP_OK && res->err != RP_E_SHUTDOWN)
        rp_log_warn("allowlist_consume", "claim of a serial not settled in Redis: %s",
                    rp_err_msg(res->err));
}

static void fire(rp_admit_fn cb, void *arg, int err)
{
    struct rp_admit_result res = {.err = err};
    deliver(cb, arg, &res);
}

/* ---- decisions (shared by Redis and in-process answers) ---------------------------------- */

static void ignore_reply(void *arg, int err, const struct rp_redis_reply *reply)
{
    (void)arg;
    (void)err;
    (void)reply;
}

static void fmt_u64(char *buf, uint64_t v)
{
    snprintf(buf, NUM_MAX, "%llu", (unsigned long long)v);
}

static int send_settle(struct admit_req *req, enum rp_admit_settle how, rp_redis_reply_fn cb,
                       void *arg);

/* Give back what a slot charged, in Redis (fire and forget) or in process. */
static void undo_slot(struct admit_req *req, struct admit_slot *s, bool local)
{
    struct rp_admit *a = req->a;
    uint64_t now = now_us();
    uint64_t interval = rp_cfg_limit_interval_us(s->limit);
    char t[NUM_MAX];
    fmt_u64(t, interval);
    switch (s->kind) {
    case SLOT_IP:
    case SLOT_DOMAIN:
    case SLOT_GLOBAL:
        if (local) {
            rp_limiter_refund(a->lim, key_view(req, s->key), interval, now);
        } else {
            const char *argv[] = {req->key[s->key], t};
            size_t len[] = {req->keylen[s->key], strlen(t)};
            (void)rp_redis_evalsha(a->redis, a->sc_refund, 1, 2, argv, len, ignore_reply, NULL);
        }
        break;
    case SLOT_DEVICE:
        if (local) {
            rp_limiter_nonce_forget(a->lim, key_view(req, K_NONCE));
            rp_limiter_refund(a->lim, key_view(req, K_DEV), interval, now);
        } else {
            const char *argv[] = {req->key[K_DEV], req->key[K_NONCE], t};
            size_t len[] = {req->keylen[K_DEV], req->keylen[K_NONCE], strlen(t)};
            (void)rp_redis_evalsha(a->redis, a->sc_dev_undo, 2, 3, argv, len, ignore_reply, NULL);
        }
        break;
    case SLOT_TXN: {
        struct rp_view txid = rp_view_make(req->txid, req->txid_len);
        struct rp_view serial = rp_view_make(req->serial, req->serial_len);
        if (local) {
            rp_limiter_txn_forget(a->lim, txid, serial);
        } else {
            const char *argv[] = {req->key[K_TXN], (const char *)req->serial};
            size_t len[] = {req->keylen[K_TXN], req->serial_len};
            (void)rp_redis_evalsha(a->redis, a->sc_txn_undo, 1, 2, argv, len, ignore_reply, NULL);
        }
        break;
    }
    case SLOT_CLAIM:
        if (!local && s->value == 1)
            (void)send_settle(req, RP_ADMIT_RELEASE, ignore_reply, NULL);
        break;
    default:
        break;
    }
}

static bool is_rate_slot(enum slot_kind k)
{
    return k == SLOT_IP || k == SLOT_DOMAIN || k == SLOT_GLOBAL;
}

static struct admit_slot *find_slot(struct admit_req *req, enum slot_kind kind);

/* A locked-out MAC kid says most, then a replayed nonce, then the tightest rate limit. */
static void decide_start(struct admit_req *req, bool local, struct rp_admit_result *res)
{
    struct admit_slot *lock = find_slot(req, SLOT_MAC_LOCK), *peek = find_slot(req, SLOT_PEEK);
    struct admit_slot *worst = NULL;
    for (int i = 0; i < req->nslots; i++) {
        struct admit_slot *s = &req->slots[i];
        if (is_rate_slot(s->kind) && s->code == CODE_REFUSED && (!worst || s->value > worst->value))
            worst = s;
    }
    if (lock && lock->code == CODE_LOCKED) {
        res->err = RP_E_MAC_LOCKED;
        res->retry_after_ms = lock->value < 1 ? 1 : (uint32_t)lock->value;
    } else if (peek && peek->code != 0) {
        res->err = RP_E_BAD_SENDER_NONCE;
    } else if (worst) {
        res->err = RP_E_RATE_LIMITED;
        res->retry_after_ms = worst->value < 1 ? 1 : (uint32_t)worst->value;
        res->limit = slot_limit_name(worst->kind);
    } else {
        return;
    }
    for (int i = 0; i < req->nslots; i++)
        if (is_rate_slot(req->slots[i].kind) && req->slots[i].code == CODE_OK)
            undo_slot(req, &req->slots[i], local);
}

static struct admit_slot *find_slot(struct admit_req *req, enum slot_kind kind)
{
    for (int i = 0; i < req->nslots; i++)
        if (req->slots[i].kind == kind)
            return &req->slots[i];
    return NULL;
}

/* Order of refusals: a replay says most about the message, then transaction conflicts, then
 * authorization, then quota. */
static void decide_verified(struct admit_req *req, bool local, struct rp_admit_result *res)
{
    struct admit_slot *dev = find_slot(req, SLOT_DEVICE);
    struct admit_slot *txn = find_slot(req, SLOT_TXN);
    struct admit_slot *allow = find_slot(req, SLOT_ALLOW);
    if (!allow)
        allow = find_slot(req, SLOT_CLAIM);
    if (dev->code == CODE_REPLAY)
        res->err = RP_E_BAD_SENDER_NONCE;
    else if (txn->code == CODE_IN_USE)
        res->err = RP_E_TXID_IN_USE;
    else if (txn->code == CODE_UNKNOWN)
        res->err = RP_E_UNKNOWN_TXN;
    else if (allow && allow->code != CODE_OK)
        res->err = RP_E_NOT_AUTHORIZED;
    else if (dev->code == CODE_REFUSED) {
        res->err = RP_E_RATE_LIMITED;
        res->retry_after_ms = dev->value < 1 ? 1 : (uint32_t)dev->value;
        res->limit = slot_limit_name(SLOT_DEVICE);
    }
    if (res->err == RP_OK) {
        res->claimed = allow && allow->kind == SLOT_CLAIM && allow->value == 1;
        return;
    }
    if (dev->code == CODE_OK)
        undo_slot(req, dev, local);
    if (allow && allow->kind == SLOT_CLAIM && allow->code == CODE_OK)
        undo_slot(req, allow, local);
    if (txn->code == CODE_OK && txn->value == 1)
        undo_slot(req, txn, local);
}

/* ---- in-process answers ------------------------------------------------------------------- */

static void local_slot(struct admit_req *req, struct admit_slot *s, uint64_t now)
{
    struct rp_limiter *l = req->a->lim;
    uint32_t retry = 0;
    bool created = false;
    int rc;
    s->err = RP_OK;
    s->value = 0;
    switch (s->kind) {
    case SLOT_IP:
    case SLOT_DOMAIN:
    case SLOT_GLOBAL:
        rc = rp_limiter_take(l, key_view(req, s->key), rp_cfg_limit_interval_us(s->limit),
                             rp_gcra_burst(s->limit->rate, s->limit->burst), now, &retry);
        s->code = rc == RP_OK ? CODE_OK : CODE_REFUSED;
        s->value = retry;
        break;
    case SLOT_DEVICE:
        rc = rp_limiter_nonce(l, key_view(req, K_NONCE), req->nonce_ttl_ms, now);
        if (rc == RP_E_BAD_SENDER_NONCE) {
            s->code = CODE_REPLAY;
            break;
        }
        if (rc != RP_OK) {
            s->err = rc; /* table full: refuse rather than forget a live nonce */
            break;
        }
        rc = rp_limiter_take(l, key_view(req, K_DEV), rp_cfg_limit_interval_us(s->limit),
                             rp_gcra_burst(s->limit->rate, s->limit->burst), now, &retry);
        s->code = rc == RP_OK ? CODE_OK : CODE_REFUSED;
        s->value = retry;
        if (rc != RP_OK)
            rp_limiter_nonce_forget(l, key_view(req, K_NONCE));
        break;
    case SLOT_TXN:
        rc = rp_limiter_txn(l, rp_view_make(req->txid, req->txid_len),
                            rp_view_make(req->serial, req->serial_len), req->mode, req->body,
                            txn_ttl_ms(req), now, &created);
        s->code = rc == RP_OK              ? CODE_OK
                  : rc == RP_E_TXID_IN_USE ? CODE_IN_USE
                  : rc == RP_E_UNKNOWN_TXN ? CODE_UNKNOWN
                                           : CODE_REFUSED;
        s->value = created;
        if (rc != RP_OK && rc != RP_E_TXID_IN_USE && rc != RP_E_UNKNOWN_TXN)
            s->err = rc;
        break;
    case SLOT_MAC_LOCK: {
        uint32_t wait = 0;
        s->code = rp_limiter_fail_locked(l, key_view(req, K_MAC), req->mac_max, now, &wait)
                      ? CODE_LOCKED
                      : CODE_OK;
        s->value = wait;
        break;
    }
    case SLOT_PEEK:
        s->code = rp_limiter_nonce_seen(l, key_view(req, K_PEEK), now);
        break;
    case SLOT_MAC_FAIL: {
        uint32_t n = 0;
        s->err = rp_limiter_fail_add(l, key_view(req, K_MAC), req->mac_window_ms, now, &n);
        s->code = n;
        break;
    }
    default:
        s->err = RP_E_SYSTEM_UNAVAIL; /* allowlists live in Redis only */
        break;
    }
}

/* The whole decision in process. degraded: Redis failed and the domain fails open. */
static void decide_local(struct admit_req *req, struct rp_admit_result *res)
{
    if (req->kind == ADMIT_ISSUED || (req->kind == ADMIT_VERIFIED && req->allowlist)) {
        /* allowlists are never judged without Redis: failing open would enroll anyone */
        res->err = RP_E_SYSTEM_UNAVAIL;
        return;
    }
    uint64_t now = now_us();
    for (int i = 0; i < req->nslots; i++) {
        local_slot(req, &req->slots[i], now);
        if (req->slots[i].err == RP_OK)
            continue;
        res->err = req->slots[i].err;
        if (res->err == RP_E_TABLE_FULL) {
            rp_log_warn("admit", "in-process %s table full: new work refused",
                        req->slots[i].kind == SLOT_TXN ? "transaction" : "replay");
            rp_metrics_count("raproxy_admit_table_full_total",
                             req->slots[i].kind == SLOT_TXN ? "table=\"txn\"" : "table=\"nonce\"");
        }
        /* what the earlier slots recorded must not outlive the refusal (a retry of the
         * same message would look like a replay) */
        for (int j = 0; j < i; j++) {
            const struct admit_slot *d = &req->slots[j];
            if (d->code == CODE_OK && (d->kind != SLOT_TXN || d->value == 1))
                undo_slot(req, &req->slots[j], true);
        }
        return;
    }
    if (req->kind == ADMIT_START)
        decide_start(req, true, res);
    else if (req->kind == ADMIT_VERIFIED)
        decide_verified(req, true, res);
}

/* ---- Redis answers ------------------------------------------------------------------------ */

/* One failed MAC counted: the failure that reaches the threshold locks the kid out, which
 * is said once, in the log and in raproxy_mac_lockouts_total. */
static void mac_failure_counted(const struct admit_req *req, long long count)
{
    if (count != (long long)req->mac_max)
        return;
    rp_log_warn("mac_lockout", "%s: senderKID locked out after %u failed MACs for %u s",
                (const char *)req->serial, req->mac_max, req->mac_window_ms / MS_PER_SEC);
    rp_metrics_count("raproxy_mac_lockouts_total", NULL);
}

/* Hands the decision over and frees the record. */
static void complete(struct admit_req *req, const struct rp_admit_result *res)
{
    if (req->kind == ADMIT_MAC_FAILED) {
        if (res->err == RP_OK)
            mac_failure_counted(req, req->slots[0].code);
        else if (res->err != RP_E_SHUTDOWN)
            rp_log_warn("mac_lockout", "%s: failed MAC not counted: %s", (const char *)req->serial,
                        rp_err_msg(res->err));
        req_free(req);
        return;
    }
    rp_admit_fn cb = req->cb;
    void *arg = req->arg;
    req_free(req);
    deliver(cb, arg, res);
}

static void finish(struct admit_req *req)
{
    struct rp_admit_result res = {0};
    int failure = RP_OK;
    for (int i = 0; i < req->nslots; i++) {
        int e = req->slots[i].err;
        if (e == RP_E_SHUTDOWN || (e != RP_OK && failure != RP_E_SHUTDOWN))
            failure = e;
    }
    if (failure == RP_E_SHUTDOWN) {
        res.err = RP_E_SHUTDOWN;
    } else if (failure != RP_OK) {
        if (req->kind == ADMIT_ISSUED) {
            res.err = failure; /* the device has its certificate: the pipeline logs this */
        } else if (req->on_failure == RP_REDIS_FAIL_CLOSED && req->kind != ADMIT_MAC_FAILED) {
            /* (a failed MAC is always counted, in process when Redis cannot) */
            res.err = RP_E_SYSTEM_UNAVAIL;
        } else {
            res.degraded = true;
            decide_local(req, &res);
        }
    } else if (req->kind == ADMIT_START) {
        decide_start(req, false, &res);
    } else if (req->kind == ADMIT_VERIFIED) {
        decide_verified(req, false, &res);
    }
    complete(req, &res);
}

/* {code, value} from the scripts, a plain integer from SISMEMBER/SREM. */
static int parse_reply(struct admit_slot *s, const struct rp_redis_reply *rep)
{
    if (rep->kind == RP_REDIS_REPLY_INTEGER) {
        s->code = rep->integer;
        s->value = 0;
        return RP_OK;
    }
    struct rp_redis_reply code, value;
    if (!rp_redis_reply_elem(rep, 0, &code) || !rp_redis_reply_elem(rep, 1, &value) ||
        code.kind != RP_REDIS_REPLY_INTEGER || value.kind != RP_REDIS_REPLY_INTEGER)
        return RP_E_REDIS_REPLY;
    s->code = code.integer;
    s->value = value.integer;
    return RP_OK;
}

static void on_slot_reply(void *arg, int err, const struct rp_redis_reply *rep)
{
    struct admit_slot *s = arg;
    struct admit_req *req = s->req;
    s->err = err == RP_OK ? parse_reply(s, rep) : err;
    if (s->err != RP_OK && s->err != RP_E_SHUTDOWN)
        rp_log_debug("admit_redis", "redis answer unusable: %s", rp_err_name(s->err));
    if (--req->pending == 0 && !req->sending)
        finish(req);
}

/* The claim's token: the transactionID in hex. */
static void hex_token(const struct admit_req *req, char *out)
{
    rp_view_hex(rp_view_make(req->txid, req->txid_len), out);
}

static int send_settle(struct admit_req *req, enum rp_admit_settle how, rp_redis_reply_fn cb,
                       void *arg)
{
    static const char *const names[] = {"consume", "release", "keep"};
    struct rp_admit *a = req->a;
    char token[2 * RP_ADMIT_MAX_ID + 1], ttl[NUM_MAX];
    hex_token(req, token);
    fmt_u64(ttl, txn_ttl_ms(req));
    const char *argv[] = {
        req->key[K_ALLOW], req->key[K_CLAIM], (const char *)req->serial, token, names[how], ttl};
    size_t len[] = {req->keylen[K_ALLOW], req->keylen[K_CLAIM], req->serial_len,
                    strlen(token),        strlen(names[how]),   strlen(ttl)};
    return rp_redis_evalsha(a->redis, a->sc_settle, 2, 6, argv, len, cb, arg);
}

static int send_slot(struct admit_req *req, struct admit_slot *s)
{
    struct rp_admit *a = req->a;
    char t[NUM_MAX], b[NUM_MAX], ttl[NUM_MAX];
    fmt_u64(t, rp_cfg_limit_interval_us(s->limit));
    fmt_u64(b, s->limit ? rp_gcra_burst(s->limit->rate, s->limit->burst) : 0);
    switch (s->kind) {
    case SLOT_IP:
    case SLOT_DOMAIN:
    case SLOT_GLOBAL: {
        const char *argv[] = {req->key[s->key], t, b};
        size_t len[] = {req->keylen[s->key], strlen(t), strlen(b)};
        return rp_redis_evalsha(a->redis, a->sc_gcra, 1, 3, argv, len, on_slot_reply, s);
    }
    case SLOT_DEVICE: {
        fmt_u64(ttl, req->nonce_ttl_ms);
        const char *argv[] = {req->key[K_DEV], req->key[K_NONCE], t, b, ttl};
        size_t len[] = {req->keylen[K_DEV], req->keylen[K_NONCE], strlen(t), strlen(b),
                        strlen(ttl)};
        return rp_redis_evalsha(a->redis, a->sc_dev, 2, 5, argv, len, on_slot_reply, s);
    }
    case SLOT_TXN: {
        fmt_u64(ttl, txn_ttl_ms(req));
        const char *mode = txn_mode_name(req->mode);
        const char *argv[] = {req->key[K_TXN], (const char *)req->serial, mode, req->body, ttl};
        size_t len[] = {req->keylen[K_TXN], req->serial_len, strlen(mode), strlen(req->body),
                        strlen(ttl)};
        return rp_redis_evalsha(a->redis, a->sc_txn, 1, 5, argv, len, on_slot_reply, s);
    }
    case SLOT_MAC_LOCK:
    case SLOT_MAC_FAIL: {
        fmt_u64(ttl, s->kind == SLOT_MAC_LOCK ? req->mac_max : req->mac_window_ms);
        const char *argv[] = {req->key[K_MAC], ttl};
        size_t len[] = {req->keylen[K_MAC], strlen(ttl)};
        return rp_redis_evalsha(a->redis,
                                s->kind == SLOT_MAC_LOCK ? a->sc_mac_lock : a->sc_mac_fail, 1, 2,
                                argv, len, on_slot_reply, s);
    }
    case SLOT_PEEK: {
        const char *argv[] = {"EXISTS", req->key[K_PEEK]};
        size_t len[] = {6u, req->keylen[K_PEEK]};
        return rp_redis_command(a->redis, on_slot_reply, s, 2, argv, len);
    }
    case SLOT_ALLOW: {
        const char *argv[] = {"SISMEMBER", req->key[K_ALLOW], (const char *)req->serial};
        size_t len[] = {9u, req->keylen[K_ALLOW], req->serial_len};
        return rp_redis_command(a->redis, on_slot_reply, s, 3, argv, len);
    }
    case SLOT_CLAIM: {
        char token[2 * RP_ADMIT_MAX_ID + 1];
        fmt_u64(ttl, a->txn_ttl_ms);
        hex_token(req, token);
        const char *argv[] = {req->key[K_ALLOW], req->key[K_CLAIM], (const char *)req->serial,
                              token, ttl};
        size_t len[] = {req->keylen[K_ALLOW], req->keylen[K_CLAIM], req->serial_len, strlen(token),
                        strlen(ttl)};
        return rp_redis_evalsha(a->redis, a->sc_claim, 2, 5, argv, len, on_slot_reply, s);
    }
    case SLOT_SETTLE:
        return send_settle(req, req->settle, on_slot_reply, s);
    }
    return RP_E_INTERNAL;
}

/* Sends every slot (one pipelined round trip), or decides in process without Redis. */
static void run(struct admit_req *req)
{
    if (req->nslots == 0 || !req->a->redis) {
        struct rp_admit_result res = {0};
        if (req->nslots)
            decide_local(req, &res);
        complete(req, &res);
        return;
    }
    req->sending = true;
    for (int i = 0; i < req->nslots; i++) {
        int rc = send_slot(req, &req->slots[i]);
        if (rc == RP_OK)
            req->pending++;
        else
            req->slots[i].err = rc;
    }
    req->sending = false;
    if (req->pending == 0)
        finish(req);
}

/* ---- public calls ------------------------------------------------------------------------- */

static bool name_ok(const char *s)
{
    return s && *s && strlen(s) <= RP_ADMIT_MAX_NAME;
}

/* P mac:{mac:<D>:<hex kid>}: the failed-MAC counter of a kid (hex: a kid is any bytes) */
static int mac_key(struct admit_req *req, const char *domain, struct rp_view kid)
{
    struct keybuf k = kb_begin(req, K_MAC);
    kb_str(&k, "mac:{mac:");
    kb_str(&k, domain);
    kb_str(&k, ":");
    kb_hex(&k, kid.p, kid.len);
    kb_str(&k, "}");
    return kb_end(req, K_MAC, &k);
}

/* P nonce:{dev:<D>:<serial>}:<hex nonce>, the replay marker of a device's nonce */
static int nonce_key(struct admit_req *req, int i, const char *domain, struct rp_view serial,
                     struct rp_view nonce)
{
    if (!rp_view_present(serial) || serial.len == 0 || serial.len > RP_ADMIT_MAX_SERIAL ||
        !rp_view_present(nonce) || nonce.len == 0 || nonce.len > RP_ADMIT_MAX_ID)
        return RP_E_INVAL;
    struct keybuf k = kb_begin(req, i);
    kb_str(&k, "nonce:{dev:");
    kb_str(&k, domain);
    kb_str(&k, ":");
    kb_bytes(&k, serial.p, serial.len);
    kb_str(&k, "}:");
    kb_hex(&k, nonce.p, nonce.len);
    return kb_end(req, i, &k);
}

void rp_admit_start(struct rp_admit *a, const struct rp_admit_in *in, rp_admit_fn cb, void *arg)
{
    if (!name_ok(in->domain) || !name_ok(in->client_addr) || !in->limits) {
        fire(cb, arg, RP_E_INVAL);
        return;
    }
    struct admit_req *req = req_new(a, ADMIT_START, cb, arg);
    if (!req) {
        fire(cb, arg, RP_E_NOMEM);
        return;
    }
    req->limits = *in->limits;
    req->on_failure = in->on_redis_failure;
    struct keybuf k = kb_begin(req, K_IP);
    kb_str(&k, "rl:{ip:");
    kb_str(&k, in->client_addr);
    kb_str(&k, "}:");
    kb_str(&k, in->domain);
    kb_end(req, K_IP, &k);
    k = kb_begin(req, K_DOMAIN);
    kb_str(&k, "rl:{dom:");
    kb_str(&k, in->domain);
    kb_str(&k, "}");
    kb_end(req, K_DOMAIN, &k);
    k = kb_begin(req, K_GLOBAL);
    kb_str(&k, "rl:{glob}");
    kb_end(req, K_GLOBAL, &k);
    /* order = tie-break order of the reported limit: the most specific first */
    if (req->limits.per_ip.rate)
        add_slot(req, SLOT_IP, K_IP, &req->limits.per_ip);
    if (req->limits.domain.rate)
        add_slot(req, SLOT_DOMAIN, K_DOMAIN, &req->limits.domain);
    if (req->limits.global.rate)
        add_slot(req, SLOT_GLOBAL, K_GLOBAL, &req->limits.global);
    if (rp_view_present(in->mac_kid)) {
        /* a MAC costs up to pbm_max_iterations hashes: a locked-out kid or a nonce its
         * identity already used is refused before any of them */
        req->mac_max = in->mac_lockout_failures;
        if (mac_key(req, in->domain, in->mac_kid) != RP_OK ||
            nonce_key(req, K_PEEK, in->domain, in->mac_serial, in->nonce) != RP_OK) {
            req_free(req);
            fire(cb, arg, RP_E_INVAL);
            return;
        }
        if (req->mac_max)
            add_slot(req, SLOT_MAC_LOCK, K_MAC, NULL);
        add_slot(req, SLOT_PEEK, K_PEEK, NULL);
    }
    run(req);
}

void rp_admit_mac_failed(struct rp_admit *a, const struct rp_admit_mac_fail_in *in)
{
    if (!name_ok(in->domain) || !rp_view_present(in->kid) || !in->failures || !in->window_s)
        return;
    struct admit_req *req = req_new(a, ADMIT_MAC_FAILED, NULL, NULL);
    if (!req)
        return;
    req->on_failure = in->on_redis_failure;
    req->mac_max = in->failures;
    req->mac_window_ms =
        in->window_s > UINT32_MAX / MS_PER_SEC ? UINT32_MAX : in->window_s * MS_PER_SEC;
    /* for the log line: "domain/kid" (the kid is text: it matched a secrets file line) */
    snprintf((char *)req->serial, sizeof req->serial, "%s/%.*s", in->domain, (int)in->kid.len,
             (const char *)in->kid.p);
    if (mac_key(req, in->domain, in->kid) != RP_OK) {
        req_free(req);
        return;
    }
    add_slot(req, SLOT_MAC_FAIL, K_MAC, NULL);
    run(req);
}

int rp_admit_allowlist_key(char *buf, size_t cap, const char *prefix, const char *domain)
{
    int n = snprintf(buf, cap, "%sallow:{dom:%s}", prefix ? prefix : RP_REDIS_DEFAULT_PREFIX,
                     domain ? domain : "");
    return n < 0 || (size_t)n >= cap ? RP_E_INVAL : n;
}

/* P allow:{dom:<D>} and P claim:{dom:<D>}:<serial> (one hash slot: one script) */
/* K_TXN: the transaction's key. */
static int txn_key(struct admit_req *req, struct rp_view txid)
{
    struct keybuf k = kb_begin(req, K_TXN);
    kb_str(&k, "txn:{txn:");
    kb_hex(&k, txid.p, txid.len);
    kb_str(&k, "}");
    return kb_end(req, K_TXN, &k);
}

static int allow_key(struct admit_req *req, const char *domain, struct rp_view serial)
{
    int n = rp_admit_allowlist_key(req->key[K_ALLOW], KEY_MAX, req->a->prefix, domain);
    if (n < 0)
        return n;
    req->keylen[K_ALLOW] = (size_t)n;
    struct keybuf k = kb_begin(req, K_CLAIM);
    kb_str(&k, "claim:{dom:");
    kb_str(&k, domain);
    kb_str(&k, "}:");
    kb_bytes(&k, serial.p, serial.len);
    return kb_end(req, K_CLAIM, &k);
}

static int verified_keys(struct admit_req *req, const struct rp_admit_verified_in *in)
{
    int rc = RP_OK;
    struct keybuf k = kb_begin(req, K_DEV);
    kb_str(&k, "rl:{dev:");
    kb_str(&k, in->domain);
    kb_str(&k, ":");
    kb_bytes(&k, in->serial.p, in->serial.len);
    kb_str(&k, "}");
    rc |= kb_end(req, K_DEV, &k);
    rc |= nonce_key(req, K_NONCE, in->domain, in->serial, in->nonce);
    rc |= txn_key(req, in->txid);
    rc |= allow_key(req, in->domain, in->serial);
    return rc ? RP_E_INVAL : RP_OK;
}

void rp_admit_after_verify(struct rp_admit *a, const struct rp_admit_verified_in *in,
                           rp_admit_fn cb, void *arg)
{
    if (!name_ok(in->domain) || !in->limits || !in->serial.p || in->serial.len == 0 ||
        in->serial.len > RP_ADMIT_MAX_SERIAL || !in->txid.p || in->txid.len == 0 ||
        in->txid.len > RP_ADMIT_MAX_ID) {
        fire(cb, arg, RP_E_INVAL);
        return;
    }
    if (!in->nonce.p || in->nonce.len == 0 || in->nonce.len > RP_ADMIT_MAX_ID) {
        fire(cb, arg, RP_E_BAD_SENDER_NONCE);
        return;
    }
    struct admit_req *req = req_new(a, ADMIT_VERIFIED, cb, arg);
    if (!req) {
        fire(cb, arg, RP_E_NOMEM);
        return;
    }
    if (verified_keys(req, in) != RP_OK) {
        req_free(req);
        fire(cb, arg, RP_E_INVAL);
        return;
    }
    req->limits = *in->limits;
    req->on_failure = in->on_redis_failure;
    req->mode = rp_admit_txn_mode(in->body);
    /* the per-device quota counts what opens a transaction: a device polling for its
     * certificate or confirming it spends nothing of a "3/day" budget */
    if (req->mode != RP_TXN_START)
        req->limits.per_device = (struct rp_cfg_limit){0};
    snprintf(req->body, sizeof req->body, "%s", in->body ? in->body : "");
    uint32_t ttl_s =
        in->nonce_ttl_s ? in->nonce_ttl_s : rp_admit_nonce_ttl_s(true, RP_DEF_MAX_CLOCK_SKEW, 0);
    req->nonce_ttl_ms = ttl_s > UINT32_MAX / MS_PER_SEC ? UINT32_MAX : ttl_s * MS_PER_SEC;
    memcpy(req->serial, in->serial.p, in->serial.len);
    req->serial_len = in->serial.len;
    memcpy(req->txid, in->txid.p, in->txid.len);
    req->txid_len = in->txid.len;
    req->allowlist = in->allowlist_redis;
    add_slot(req, SLOT_DEVICE, K_DEV, &req->limits.per_device);
    add_slot(req, SLOT_TXN, K_TXN, NULL);
    if (req->allowlist)
        add_slot(req, in->allowlist_consume ? SLOT_CLAIM : SLOT_ALLOW, K_ALLOW, NULL);
    run(req);
}

void rp_admit_on_issued(struct rp_admit *a, const struct rp_admit_issued_in *in, rp_admit_fn cb,
                        void *arg)
{
    if (!name_ok(in->domain) || !in->serial.p || in->serial.len == 0 ||
        in->serial.len > RP_ADMIT_MAX_SERIAL || !in->txid.p || in->txid.len == 0 ||
        in->txid.len > RP_ADMIT_MAX_ID) {
        fire(cb, arg, RP_E_INVAL);
        return;
    }
    struct admit_req *req = req_new(a, ADMIT_ISSUED, cb, arg);
    if (!req) {
        fire(cb, arg, RP_E_NOMEM);
        return;
    }
    if (allow_key(req, in->domain, in->serial) != RP_OK) {
        req_free(req);
        fire(cb, arg, RP_E_INVAL);
        return;
    }
    memcpy(req->serial, in->serial.p, in->serial.len);
    req->serial_len = in->serial.len;
    memcpy(req->txid, in->txid.p, in->txid.len);
    req->txid_len = in->txid.len;
    req->settle = in->settle;
    req->keep_ms = in->keep_ms;
    add_slot(req, SLOT_SETTLE, K_ALLOW, NULL);
    run(req);
}

void rp_admit_txn_keep(struct rp_admit *a, const struct rp_admit_txn_keep_in *in)
{
    if (!in->serial.p || in->serial.len == 0 || in->serial.len > RP_ADMIT_MAX_SERIAL ||
        !in->txid.p || in->txid.len == 0 || in->txid.len > RP_ADMIT_MAX_ID || !in->ttl_ms)
        return;
    struct admit_req *req = req_new(a, ADMIT_TXN_KEEP, NULL, NULL);
    if (!req)
        return;
    if (txn_key(req, in->txid) != RP_OK) {
        req_free(req);
        return;
    }
    req->mode = RP_TXN_CONTINUE;          /* a transaction not known is not created here */
    req->on_failure = RP_REDIS_FAIL_OPEN; /* lengthen the in-process entry, at least */
    snprintf(req->body, sizeof req->body, "%s", in->body ? in->body : "");
    memcpy(req->serial, in->serial.p, in->serial.len);
    req->serial_len = in->serial.len;
    memcpy(req->txid, in->txid.p, in->txid.len);
    req->txid_len = in->txid.len;
    req->keep_ms = in->ttl_ms;
    add_slot(req, SLOT_TXN, K_TXN, NULL);
    run(req);
}

bool rp_admit_may_sign_error(struct rp_admit *a, const char *domain)
{
    char key[KEY_MAX];
    int n = snprintf(key, sizeof key, "errsig:%s", domain ? domain : "");
    if (n < 0 || (size_t)n >= sizeof key)
        return false;
    uint32_t retry;
    const struct rp_cfg_limit budget = {RP_ADMIT_ERRSIG_RATE, RP_ADMIT_ERRSIG_RATE, RP_CFG_PER_S};
    return rp_limiter_take(a->lim, rp_view_make(key, (size_t)n), rp_cfg_limit_interval_us(&budget),
                           budget.burst, now_us(), &retry) == RP_OK;
}
