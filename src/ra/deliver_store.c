/* The delayed-delivery store (deliver.h has the contract): Redis scripts, or the same
 * decisions in process.
 *
 * Redis keys (P = the client's key prefix; all in hash slot {dd}, see deliver_lua.c):
 *   P dd:{dd}:q                   sorted set: waiting transactions (hex txid), score = when
 *                                 queued (ms of Redis TIME), oldest first
 *   P dd:{dd}:p                   sorted set: transactions a dispatcher took from q and is
 *                                 claiming, score = when the reservation ends (then back to q)
 *   P dd:{dd}:f                   sorted set: leases of requests at the CA, score = when the
 *                                 lease ends ("d:…" sent directly, "q:<txid>" dispatched)
 *   P dd:{dd}:r                   the CA's rate bucket (GCRA TAT, µs)
 *   P dd:{dd}:t:<hex txid>        hash: st (state), t0, dom, id, req, body (while waiting),
 *                                 exp (lease end while sending), ans (the CA's answer);
 *                                 PX = max_wait_s + the answer's stay
 *   P dd:{dd}:b:<domain>:<identity>  the transaction (hex) of the identity's certificate
 *                                 request in progress; PX = its request's life */
#include "deliver.h"

#include "raproxy/list.h"
#include "raproxy/clock.h"
#include "raproxy/err.h"
#include "raproxy/log.h"
#include "raproxy/redis.h"
#include "raproxy/view.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define KEY_MAX        640u
#define NUM_MAX        24u
#define TXID_MAX       64u /* = RP_ADMIT_MAX_ID */
#define HEX_TXID_MAX   (2u * TXID_MAX + 1u)
#define NAME_MAX_LEN   128u /* domain, identity */
#define MEM_SWEEP_MS   1000u
#define MEM_MIN_SLOTS  64u
#define RETRY_MAX      5u   /* settle and finish: attempts after the first … */
#define RETRY_FIRST_MS 250u /* … the first this long after a failure, then doubling */

enum dd_call {
    CALL_OFFER,
    CALL_REQUEUE,
    CALL_NEXT,
    CALL_CLAIM,
    CALL_POLL,
    CALL_EXTEND,
    CALL_CANCEL,
    CALL_IGNORE,
};

/* ---- the in-process store ---------------------------------------------------------------- */

/* A record, a busy marker or a lease: one entry type in one table. */
enum mem_kind { MEM_RECORD, MEM_BUSY, MEM_LEASE };

struct mem_entry {
    struct mem_entry *hnext;
    struct rp_list_node qlink; /* records in the queue, by arrival */
    enum mem_kind kind;
    uint64_t hash;
    uint64_t expire_ms; /* 0: never (leases) */
    /* records */
    enum ra_dd_state state;
    bool reserved; /* handed to a dispatcher by ra_dd_next (waiting: linked in the queue) */
    uint64_t t0_ms, lease_end_ms;
    uint64_t seq; /* order of arrival: the queue's order */
    uint8_t *req, *body, *answer;
    size_t req_len, body_len, answer_len;
    char *domain, *identity;
    /* busy markers: the transaction */
    uint8_t owner[TXID_MAX];
    size_t owner_len;
    size_t keylen;
    uint8_t key[];
};

struct ra_dd_mem {
    pthread_mutex_t lock;
    struct mem_entry **slots;
    size_t mask, count;
    struct rp_list_node queue; /* records waiting, oldest first */
    size_t queued, reserved;
    unsigned in_flight;
    uint64_t tat_us;
    uint64_t next_seq;
    uint64_t last_sweep_ms;
};

static uint64_t mem_hash(enum mem_kind k, const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)k;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h ^ (h >> 31);
}

int ra_dd_mem_new(struct ra_dd_mem **out)
{
    struct ra_dd_mem *m = calloc(1, sizeof *m);
    if (!m)
        return RP_E_NOMEM;
    m->slots = calloc(MEM_MIN_SLOTS, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return RP_E_NOMEM;
    }
    m->mask = MEM_MIN_SLOTS - 1;
    rp_list_init(&m->queue);
    pthread_mutex_init(&m->lock, NULL);
    *out = m;
    return RP_OK;
}

static void entry_free(struct mem_entry *e)
{
    free(e->req);
    free(e->body);
    free(e->answer);
    free(e->domain);
    free(e->identity);
    free(e);
}

void ra_dd_mem_free(struct ra_dd_mem *m)
{
    if (!m)
        return;
    for (size_t i = 0; i <= m->mask; i++)
        for (struct mem_entry *e = m->slots[i], *n; e; e = n) {
            n = e->hnext;
            entry_free(e);
        }
    free(m->slots);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static uint64_t now_ms(void)
{
    return rp_clock_ns() / 1000000u;
}

static struct mem_entry *mem_find(struct ra_dd_mem *m, enum mem_kind k, const uint8_t *key,
                                  size_t n)
{
    uint64_t h = mem_hash(k, key, n);
    for (struct mem_entry *e = m->slots[h & m->mask]; e; e = e->hnext)
        if (e->hash == h && e->kind == k && e->keylen == n && memcmp(e->key, key, n) == 0)
            return e;
    return NULL;
}

static void queue_unlink(struct ra_dd_mem *m, struct mem_entry *e)
{
    if (!rp_list_linked(&e->qlink))
        return;
    rp_list_unlink(&e->qlink);
    m->queued--;
}

/* By arrival: new records at the tail, a requeued one back at its place (near the head). */
static void queue_insert(struct ra_dd_mem *m, struct mem_entry *e)
{
    struct rp_list_node *after = m->queue.prev;
    while (after != &m->queue && container_of(after, struct mem_entry, qlink)->seq > e->seq)
        after = after->prev;
    rp_list_push(after->next, &e->qlink); /* before after's successor: right after it */
    m->queued++;
}

static void mem_remove(struct ra_dd_mem *m, struct mem_entry *e)
{
    struct mem_entry **pp = &m->slots[e->hash & m->mask];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    queue_unlink(m, e);
    if (e->reserved)
        m->reserved--;
    if (e->kind == MEM_LEASE && m->in_flight)
        m->in_flight--;
    m->count--;
    entry_free(e);
}

static int mem_grow(struct ra_dd_mem *m)
{
    size_t n = (m->mask + 1) * 2;
    struct mem_entry **s = calloc(n, sizeof *s);
    if (!s)
        return RP_E_NOMEM;
    for (size_t i = 0; i <= m->mask; i++)
        for (struct mem_entry *e = m->slots[i], *next; e; e = next) {
            next = e->hnext;
            e->hnext = s[e->hash & (n - 1)];
            s[e->hash & (n - 1)] = e;
        }
    free(m->slots);
    m->slots = s;
    m->mask = n - 1;
    return RP_OK;
}

static struct mem_entry *mem_add(struct ra_dd_mem *m, enum mem_kind k, const uint8_t *key, size_t n)
{
    if (m->count >= m->mask && mem_grow(m) != RP_OK)
        return NULL;
    struct mem_entry *e = calloc(1, sizeof *e + n);
    if (!e)
        return NULL;
    e->kind = k;
    e->hash = mem_hash(k, key, n);
    e->keylen = n;
    memcpy(e->key, key, n);
    e->hnext = m->slots[e->hash & m->mask];
    m->slots[e->hash & m->mask] = e;
    m->count++;
    if (k == MEM_LEASE)
        m->in_flight++;
    return e;
}

/* Expired records and markers go, at most once a second (a full pass). */
static void mem_sweep(struct ra_dd_mem *m, uint64_t now)
{
    if (now - m->last_sweep_ms < MEM_SWEEP_MS && m->last_sweep_ms)
        return;
    m->last_sweep_ms = now;
    for (size_t i = 0; i <= m->mask; i++)
        for (struct mem_entry *e = m->slots[i], *n; e; e = n) {
            n = e->hnext;
            if (e->expire_ms && e->expire_ms <= now)
                mem_remove(m, e);
        }
}

static struct mem_entry *mem_live(struct ra_dd_mem *m, enum mem_kind k, const uint8_t *key,
                                  size_t n, uint64_t now)
{
    struct mem_entry *e = mem_find(m, k, key, n);
    if (e && e->expire_ms && e->expire_ms <= now) {
        mem_remove(m, e);
        e = NULL;
    }
    return e;
}

/* The busy marker's key: "<domain>\0<identity>". */
static size_t busy_key(uint8_t *out, struct rp_view domain, struct rp_view identity)
{
    memcpy(out, domain.p, domain.len);
    out[domain.len] = 0;
    memcpy(out + domain.len + 1, identity.p, identity.len);
    return domain.len + 1 + identity.len;
}

static void mem_drop_busy(struct ra_dd_mem *m, struct rp_view domain, struct rp_view identity,
                          struct rp_view txid)
{
    uint8_t k[2 * NAME_MAX_LEN + 1];
    if (!domain.p || !identity.p)
        return;
    struct mem_entry *b = mem_find(m, MEM_BUSY, k, busy_key(k, domain, identity));
    if (b && b->owner_len == txid.len && memcmp(b->owner, txid.p, txid.len) == 0)
        mem_remove(m, b);
}

static int mem_set_busy(struct ra_dd_mem *m, struct rp_view domain, struct rp_view identity,
                        struct rp_view txid, uint64_t expire)
{
    uint8_t k[2 * NAME_MAX_LEN + 1];
    size_t n = busy_key(k, domain, identity);
    struct mem_entry *b = mem_find(m, MEM_BUSY, k, n);
    if (!b && !(b = mem_add(m, MEM_BUSY, k, n)))
        return RP_E_NOMEM;
    memcpy(b->owner, txid.p, txid.len);
    b->owner_len = txid.len;
    b->expire_ms = expire;
    return RP_OK;
}

static void mem_drop_lease(struct ra_dd_mem *m, const char *token)
{
    struct mem_entry *l =
        token && *token ? mem_find(m, MEM_LEASE, (const uint8_t *)token, strlen(token)) : NULL;
    if (l)
        mem_remove(m, l);
}

/* A lease and a rate token; RP_OK or *retry (-1: in-flight limit, else ms). */
static int mem_room(struct ra_dd_mem *m, const struct ra_dd_budget *b, const char *token,
                    int32_t *retry)
{
    if (b->max_in_flight && m->in_flight >= b->max_in_flight) {
        *retry = -1;
        return RP_E_RATE_LIMITED;
    }
    if (b->interval_us) {
        uint64_t now_us = rp_clock_ns() / 1000u, burst = b->burst ? b->burst : 1;
        uint64_t tat = m->tat_us > now_us ? m->tat_us : now_us, next = tat + b->interval_us;
        if (next > now_us + burst * b->interval_us) {
            uint64_t wait = next - burst * b->interval_us - now_us;
            *retry = (int32_t)((wait + 999u) / 1000u);
            return RP_E_RATE_LIMITED;
        }
        m->tat_us = next;
    }
    return mem_add(m, MEM_LEASE, (const uint8_t *)token, strlen(token)) ? RP_OK : RP_E_NOMEM;
}

static int dup_into(uint8_t **dst, size_t *len, struct rp_view v)
{
    *dst = NULL;
    *len = 0;
    if (!rp_view_present(v) || v.len == 0)
        return RP_OK;
    if (!(*dst = malloc(v.len)))
        return RP_E_NOMEM;
    memcpy(*dst, v.p, v.len);
    *len = v.len;
    return RP_OK;
}

static char *dup_str(struct rp_view v)
{
    char *s = malloc(v.len + 1);
    if (s) {
        memcpy(s, v.p, v.len);
        s[v.len] = 0;
    }
    return s;
}

/* Is the record kept for this requester? A transaction is bound to the domain and identity
 * that made it for the record's whole life. */
static bool mem_owner_is(const struct mem_entry *r, struct rp_view domain, struct rp_view identity)
{
    return r->domain && r->identity && rp_view_eq(rp_view_str(r->domain), domain) &&
           rp_view_eq(rp_view_str(r->identity), identity);
}

/* A queued record for `in` (the queue has room). */
static int mem_queue(struct ra_dd_mem *m, const struct ra_dd_offer *in, uint64_t now)
{
    struct mem_entry *r = mem_add(m, MEM_RECORD, in->txid.p, in->txid.len);
    if (!r)
        return RP_E_NOMEM;
    r->state = RA_DD_QUEUED;
    r->t0_ms = now;
    r->seq = ++m->next_seq;
    r->expire_ms = now + in->record_ttl_ms;
    r->domain = dup_str(in->domain);
    r->identity = dup_str(in->identity);
    if (!r->domain || !r->identity || dup_into(&r->req, &r->req_len, in->req) != RP_OK ||
        dup_into(&r->body, &r->body_len, in->body) != RP_OK) {
        mem_remove(m, r);
        return RP_E_NOMEM;
    }
    queue_insert(m, r);
    if (in->exclusive)
        return mem_set_busy(m, in->domain, in->identity, in->txid, r->expire_ms);
    return RP_OK;
}

static void record_view(const struct mem_entry *r, struct ra_dd_result *res)
{
    res->txid = rp_view_make(r->key, r->keylen);
    res->domain = rp_view_str(r->domain);
    res->identity = rp_view_str(r->identity);
    res->req = rp_view_make(r->req, r->req_len);
    res->body = rp_view_make(r->body, r->body_len);
    res->answer = rp_view_make(r->answer, r->answer_len);
}

/* The lease of a dispatched request: "q:<hex txid>". */
static void dispatch_token(struct rp_view txid, char *out)
{
    _Static_assert((RA_DD_TOKEN_MAX - 3) / 2 >= TXID_MAX, "a dispatch token holds a whole txid");
    size_t n = txid.len < (RA_DD_TOKEN_MAX - 3) / 2 ? txid.len : (RA_DD_TOKEN_MAX - 3) / 2;
    out[0] = 'q';
    out[1] = ':';
    rp_view_hex(rp_view_make(txid.p, n), out + 2);
}

/* The views of a result point into the table, which other loops change once the lock is
 * released: they are copied into one block (freed by the caller after the callback), so
 * that callbacks run unlocked and may call the store again. */
static uint8_t *copy_views(struct ra_dd_result *res)
{
    struct rp_view *v[] = {&res->txid, &res->domain, &res->identity,
                           &res->req,  &res->body,   &res->answer};
    size_t total = 1;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        total += rp_view_present(*v[i]) ? v[i]->len : 0;
    uint8_t *buf = malloc(total), *p = buf;
    if (!buf) {
        res->err = RP_E_NOMEM;
        return NULL;
    }
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        if (!rp_view_present(*v[i]))
            continue;
        memcpy(p, v[i]->p, v[i]->len);
        *v[i] = rp_view_make(p, v[i]->len);
        p += v[i]->len;
    }
    return buf;
}

static void fire_copied(ra_dd_fn cb, void *arg, struct ra_dd_result *res, uint8_t *copy);

/* A sending record whose lease ended is lost, a queued one past max wait expired. */
static void mem_age(struct ra_dd_mem *m, struct mem_entry *r, uint64_t now, uint32_t max_wait_ms)
{
    enum ra_dd_state was = r->state;
    if (r->state == RA_DD_SENDING && r->lease_end_ms < now) {
        char token[RA_DD_TOKEN_MAX];
        dispatch_token(rp_view_make(r->key, r->keylen), token);
        mem_drop_lease(m, token);
        r->state = RA_DD_LOST;
    }
    if (r->state == RA_DD_QUEUED && max_wait_ms && now - r->t0_ms > max_wait_ms) {
        r->state = RA_DD_EXPIRED;
        queue_unlink(m, r);
    }
    if (r->state != was) {
        free(r->req);
        free(r->body);
        r->req = r->body = NULL;
        r->req_len = r->body_len = 0;
        mem_drop_busy(m, rp_view_str(r->domain), rp_view_str(r->identity),
                      rp_view_make(r->key, r->keylen));
    }
}

/* ---- the store ---------------------------------------------------------------------------- */

struct redis_call;

struct ra_dd_store {
    struct rp_redis *redis;
    struct ra_dd_mem *mem;
    ra_dd_timer_new_fn timer_new;
    void *timer_ctx;
    struct rp_list_node retrying; /* calls waiting for their retry timer */
    bool closing;
    char prefix[KEY_MAX / 4];
    unsigned sc_offer, sc_release, sc_requeue, sc_settle, sc_next, sc_claim, sc_extend, sc_cancel,
        sc_finish, sc_poll;
    char token_base[20];
    uint64_t token_seq;
};

int ra_dd_store_new(struct ra_dd_store **out, struct rp_redis *redis, struct ra_dd_mem *mem,
                    ra_dd_timer_new_fn timer_new, void *timer_ctx)
{
    *out = NULL;
    if (!redis && !mem)
        return RP_E_INVAL;
    struct ra_dd_store *s = calloc(1, sizeof *s);
    if (!s)
        return RP_E_NOMEM;
    s->redis = redis;
    s->mem = mem;
    s->timer_new = timer_new;
    s->timer_ctx = timer_ctx;
    rp_list_init(&s->retrying);
    uint8_t rnd[8] = {0};
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        memcpy(rnd, &s, sizeof s < sizeof rnd ? sizeof s : sizeof rnd);
    rp_view_hex(rp_view_make(rnd, sizeof rnd), s->token_base);
    if (redis) {
        const char *p = rp_redis_key_prefix(redis);
        if (strlen(p) >= sizeof s->prefix || strpbrk(p, "{}")) {
            free(s);
            return RP_E_CONFIG;
        }
        strcpy(s->prefix, p);
        if (rp_redis_script(redis, ra_dd_lua_offer, &s->sc_offer) ||
            rp_redis_script(redis, ra_dd_lua_release, &s->sc_release) ||
            rp_redis_script(redis, ra_dd_lua_requeue, &s->sc_requeue) ||
            rp_redis_script(redis, ra_dd_lua_settle, &s->sc_settle) ||
            rp_redis_script(redis, ra_dd_lua_next, &s->sc_next) ||
            rp_redis_script(redis, ra_dd_lua_claim, &s->sc_claim) ||
            rp_redis_script(redis, ra_dd_lua_extend, &s->sc_extend) ||
            rp_redis_script(redis, ra_dd_lua_cancel, &s->sc_cancel) ||
            rp_redis_script(redis, ra_dd_lua_finish, &s->sc_finish) ||
            rp_redis_script(redis, ra_dd_lua_poll, &s->sc_poll)) {
            free(s);
            return RP_E_NOMEM;
        }
    }
    *out = s;
    return RP_OK;
}

void ra_dd_store_free(struct ra_dd_store *s)
{
    free(s);
}

static void new_token(struct ra_dd_store *s, char *out)
{
    snprintf(out, RA_DD_TOKEN_MAX, "d:%s:%llu", s->token_base, (unsigned long long)++s->token_seq);
}

static bool ids_ok(struct rp_view txid, struct rp_view domain, struct rp_view identity)
{
    return rp_view_present(txid) && txid.len && txid.len <= TXID_MAX &&
           (!domain.p || domain.len <= NAME_MAX_LEN) &&
           (!identity.p || identity.len <= NAME_MAX_LEN);
}

static void fire(ra_dd_fn cb, void *arg, struct ra_dd_result *res)
{
    if (cb)
        cb(arg, res);
}

static void fire_copied(ra_dd_fn cb, void *arg, struct ra_dd_result *res, uint8_t *copy)
{
    fire(cb, arg, res);
    free(copy);
}

static void fire_err(ra_dd_fn cb, void *arg, int err)
{
    struct ra_dd_result res = {.err = err};
    fire(cb, arg, &res);
}

/* ---- in-process calls --------------------------------------------------------------------- */

static void mem_offer(struct ra_dd_store *s, const struct ra_dd_offer *in, ra_dd_fn cb, void *arg)
{
    struct ra_dd_mem *m = s->mem;
    struct ra_dd_result res = {.err = RP_OK};
    uint64_t now = now_ms();
    pthread_mutex_lock(&m->lock);
    mem_sweep(m, now);
    struct mem_entry *r = mem_live(m, MEM_RECORD, in->txid.p, in->txid.len, now);
    uint8_t bk[2 * NAME_MAX_LEN + 1];
    if (r && !mem_owner_is(r, in->domain, in->identity)) {
        res.gate = RA_GATE_FOREIGN;
        goto out;
    }
    if (r) {
        mem_age(m, r, now, 0);
        res.gate = RA_GATE_JOINED;
        res.state = r->state;
        res.answer = rp_view_make(r->answer, r->answer_len);
        goto out;
    }
    if (in->exclusive && mem_live(m, MEM_BUSY, bk, busy_key(bk, in->domain, in->identity), now)) {
        res.gate = RA_GATE_DUPLICATE;
        goto out;
    }
    bool waiting = m->queued + m->reserved > 0;
    if (in->mode == RA_OFFER_DIRECT || (in->mode == RA_OFFER_QUEUE && !waiting)) {
        new_token(s, res.token);
        int rc = mem_room(m, &in->budget, res.token, &res.retry_ms);
        if (rc == RP_OK) {
            res.gate = RA_GATE_GO;
            if (in->exclusive)
                res.err =
                    mem_set_busy(m, in->domain, in->identity, in->txid, now + in->busy_ttl_ms);
            goto out;
        }
        if (rc != RP_E_RATE_LIMITED) {
            res.err = rc;
            goto out;
        }
        if (in->mode == RA_OFFER_DIRECT) {
            res.gate = RA_GATE_BUSY;
            goto out;
        }
    }
    if (m->queued + m->reserved >= in->max_waiting) {
        res.gate = RA_GATE_FULL;
        goto out;
    }
    res.err = mem_queue(m, in, now);
    res.gate = RA_GATE_QUEUED;
out:;
    uint8_t *copy = copy_views(&res);
    pthread_mutex_unlock(&m->lock);
    fire_copied(cb, arg, &res, copy);
}

static void mem_release(struct ra_dd_store *s, const char *token, struct rp_view txid,
                        struct rp_view domain, struct rp_view identity)
{
    struct ra_dd_mem *m = s->mem;
    pthread_mutex_lock(&m->lock);
    mem_drop_lease(m, token);
    mem_drop_busy(m, domain, identity, txid);
    pthread_mutex_unlock(&m->lock);
}

static void mem_requeue(struct ra_dd_store *s, const struct ra_dd_offer *in, const char *token,
                        ra_dd_fn cb, void *arg)
{
    struct ra_dd_mem *m = s->mem;
    struct ra_dd_result res = {.err = RP_OK, .gate = RA_GATE_QUEUED};
    uint64_t now = now_ms();
    pthread_mutex_lock(&m->lock);
    mem_drop_lease(m, token);
    struct mem_entry *r = mem_live(m, MEM_RECORD, in->txid.p, in->txid.len, now);
    if (r && r->state == RA_DD_SENDING) {
        r->state = RA_DD_QUEUED;
        queue_insert(m, r);
    } else if (r && !mem_owner_is(r, in->domain, in->identity)) {
        mem_drop_busy(m, in->domain, in->identity, in->txid);
        res.gate = RA_GATE_FOREIGN;
    } else if (r) {
        res.gate = RA_GATE_JOINED;
        res.state = r->state;
    } else if (m->queued + m->reserved >= in->max_waiting) {
        mem_drop_busy(m, in->domain, in->identity, in->txid);
        res.gate = RA_GATE_FULL;
    } else {
        res.err = mem_queue(m, in, now);
    }
    pthread_mutex_unlock(&m->lock);
    fire(cb, arg, &res);
}

static void mem_next(struct ra_dd_store *s, const struct ra_dd_budget *b, ra_dd_fn cb, void *arg)
{
    struct ra_dd_mem *m = s->mem;
    struct ra_dd_result res = {.err = RP_OK};
    uint64_t now = now_ms();
    pthread_mutex_lock(&m->lock);
    mem_sweep(m, now);
    struct mem_entry *r =
        rp_list_empty(&m->queue) ? NULL : container_of(m->queue.next, struct mem_entry, qlink);
    if (r) {
        char token[RA_DD_TOKEN_MAX];
        dispatch_token(rp_view_make(r->key, r->keylen), token);
        int rc = mem_room(m, b, token, &res.retry_ms);
        if (rc == RP_OK) {
            queue_unlink(m, r);
            r->reserved = true;
            m->reserved++;
            res.txid = rp_view_make(r->key, r->keylen);
            snprintf(res.token, sizeof res.token, "%s", token);
        } else if (rc != RP_E_RATE_LIMITED) {
            res.err = rc;
        }
    }
    uint8_t *copy = copy_views(&res);
    pthread_mutex_unlock(&m->lock);
    fire_copied(cb, arg, &res, copy);
}

static void mem_claim(struct ra_dd_store *s, struct rp_view txid, uint32_t lease_ms,
                      uint32_t max_wait_ms, uint32_t keep_ms, ra_dd_fn cb, void *arg)
{
    struct ra_dd_mem *m = s->mem;
    struct ra_dd_result res = {.err = RP_OK};
    uint64_t now = now_ms();
    char token[RA_DD_TOKEN_MAX];
    dispatch_token(txid, token);
    pthread_mutex_lock(&m->lock);
    struct mem_entry *r = mem_live(m, MEM_RECORD, txid.p, txid.len, now);
    bool mine = r && r->reserved;
    if (mine) {
        r->reserved = false;
        m->reserved--;
    }
    if (!mine || r->state != RA_DD_QUEUED) {
        res.state = r ? r->state : RA_DD_NONE;
        if (mine)
            mem_drop_lease(m, token);
    } else if (now - r->t0_ms > max_wait_ms) {
        mem_drop_lease(m, token);
        mem_age(m, r, now, max_wait_ms);
        r->expire_ms = now + keep_ms;
        res.state = RA_DD_EXPIRED;
        record_view(r, &res);
    } else {
        r->state = RA_DD_SENDING;
        r->lease_end_ms = now + lease_ms;
        res.state = RA_DD_SENDING;
        record_view(r, &res);
        snprintf(res.token, sizeof res.token, "%s", token);
    }
    uint8_t *copy = copy_views(&res);
    pthread_mutex_unlock(&m->lock);
    fire_copied(cb, arg, &res, copy);
}

static void mem_finish(struct ra_dd_store *s, struct rp_view txid, enum ra_dd_state state,
                       struct rp_view answer, uint32_t keep_ms, struct rp_view domain,
                       struct rp_view identity)
{
    struct ra_dd_mem *m = s->mem;
    uint64_t now = now_ms();
    char token[RA_DD_TOKEN_MAX];
    dispatch_token(txid, token);
    pthread_mutex_lock(&m->lock);
    struct mem_entry *r = mem_live(m, MEM_RECORD, txid.p, txid.len, now);
    if (r && r->state == RA_DD_SENDING) { /* one found lost stays lost */
        r->state = state;
        free(r->req);
        free(r->body);
        r->req = r->body = NULL;
        r->req_len = r->body_len = 0;
        if (rp_view_present(answer) && dup_into(&r->answer, &r->answer_len, answer) != RP_OK)
            r->state = RA_DD_LOST; /* no memory for the answer: the device must not wait */
        r->expire_ms = now + keep_ms;
    }
    mem_drop_lease(m, token);
    mem_drop_busy(m, domain, identity, txid);
    pthread_mutex_unlock(&m->lock);
}

static void mem_extend(struct ra_dd_store *s, struct rp_view txid, uint32_t lease_ms, ra_dd_fn cb,
                       void *arg)
{
    struct ra_dd_mem *m = s->mem;
    struct ra_dd_result res = {.err = RP_OK};
    uint64_t now = now_ms();
    pthread_mutex_lock(&m->lock);
    struct mem_entry *r = mem_live(m, MEM_RECORD, txid.p, txid.len, now);
    if (r) {
        mem_age(m, r, now, 0); /* a lease that ended: lost, not to be sent */
        if (r->state == RA_DD_SENDING)
            r->lease_end_ms = now + lease_ms;
        res.state = r->state;
    }
    pthread_mutex_unlock(&m->lock);
    fire(cb, arg, &res);
}

static void mem_cancel(struct ra_dd_store *s, struct rp_view txid, struct rp_view domain,
                       struct rp_view identity, ra_dd_fn cb, void *arg)
{
    struct ra_dd_mem *m = s->mem;
    struct ra_dd_result res = {.err = RP_OK};
    uint64_t now = now_ms();
    pthread_mutex_lock(&m->lock);
    struct mem_entry *r = mem_live(m, MEM_RECORD, txid.p, txid.len, now);
    res.state = r ? r->state : RA_DD_NONE;
    if (r && r->state == RA_DD_QUEUED && mem_owner_is(r, domain, identity)) {
        if (r->reserved) { /* its dispatcher's claim finds no record: its lease goes here */
            char token[RA_DD_TOKEN_MAX];
            dispatch_token(txid, token);
            mem_drop_lease(m, token);
        }
        mem_drop_busy(m, domain, identity, txid);
        mem_remove(m, r);
    } else if (r && r->state == RA_DD_QUEUED) {
        res.state = RA_DD_NONE; /* another requester's: not this caller's to cancel */
    }
    pthread_mutex_unlock(&m->lock);
    fire(cb, arg, &res);
}

static void mem_poll(struct ra_dd_store *s, struct rp_view txid, struct rp_view domain,
                     struct rp_view identity, uint32_t max_wait_ms, ra_dd_fn cb, void *arg)
{
    struct ra_dd_mem *m = s->mem;
    struct ra_dd_result res = {.err = RP_OK};
    uint64_t now = now_ms();
    pthread_mutex_lock(&m->lock);
    struct mem_entry *r = mem_live(m, MEM_RECORD, txid.p, txid.len, now);
    res.txid = txid;
    if (r && !mem_owner_is(r, domain, identity)) {
        res.foreign = true;
    } else if (r) {
        mem_age(m, r, now, max_wait_ms);
        res.state = r->state;
        res.answer = rp_view_make(r->answer, r->answer_len);
    }
    uint8_t *copy = copy_views(&res);
    pthread_mutex_unlock(&m->lock);
    fire_copied(cb, arg, &res, copy);
}

/* ---- Redis calls -------------------------------------------------------------------------- */

struct keybuf {
    char p[KEY_MAX];
    size_t len;
    bool overflow;
};

static void kb_add(struct keybuf *k, const void *p, size_t n)
{
    if (k->overflow || k->len + n >= sizeof k->p) {
        k->overflow = true;
        return;
    }
    memcpy(k->p + k->len, p, n);
    k->len += n;
    k->p[k->len] = 0;
}

static void kb_hex(struct keybuf *k, struct rp_view v)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < v.len; i++) {
        char two[2] = {hex[v.p[i] >> 4], hex[v.p[i] & 15]};
        kb_add(k, two, 2);
    }
}

/* P dd:{dd}:<what> */
static void kb_fixed(struct ra_dd_store *s, struct keybuf *k, const char *what)
{
    k->len = 0;
    k->overflow = false;
    kb_add(k, s->prefix, strlen(s->prefix));
    kb_add(k, "dd:{dd}:", 8);
    kb_add(k, what, strlen(what));
}

static void kb_record(struct ra_dd_store *s, struct keybuf *k, struct rp_view txid)
{
    kb_fixed(s, k, "t:");
    kb_hex(k, txid);
}

static void kb_busy(struct ra_dd_store *s, struct keybuf *k, struct rp_view domain,
                    struct rp_view identity)
{
    kb_fixed(s, k, "b:");
    kb_add(k, domain.p, domain.len);
    kb_add(k, ":", 1);
    kb_add(k, identity.p, identity.len);
}

struct redis_call {
    enum dd_call kind;
    ra_dd_fn cb;
    void *arg;
    struct ra_dd_store *s;
    char token[RA_DD_TOKEN_MAX];
    uint8_t txid[TXID_MAX];
    size_t txid_len;
    bool give_back; /* a direct offer: undo it should it run after its deadline */
    struct keybuf busy;
    /* an idempotent call retried on a transient error (settle, finish): its command */
    unsigned script;
    int nkeys, argc;
    const char **argv;
    size_t *len;
    unsigned retries;            /* left */
    uint32_t delay_ms;           /* before the next one */
    struct rp_loop_timer *timer; /* once a retry was scheduled (freed with the call) */
    struct rp_list_node rlink;   /* in s->retrying while its timer runs */
};

static void fmt_u64(char *buf, uint64_t v)
{
    snprintf(buf, NUM_MAX, "%llu", (unsigned long long)v);
}

/* Element i of an array reply: an integer (0 when absent or not one), a string (RP_VIEW_NULL
 * when absent or not one). */
static long long elem_int(const struct rp_redis_reply *r, size_t i)
{
    struct rp_redis_reply e;
    return rp_redis_reply_elem(r, i, &e) && e.kind == RP_REDIS_REPLY_INTEGER ? e.integer : 0;
}

static struct rp_view elem_str(const struct rp_redis_reply *r, size_t i)
{
    struct rp_redis_reply e;
    return rp_redis_reply_elem(r, i, &e) && e.kind == RP_REDIS_REPLY_STRING ? e.str : RP_VIEW_NULL;
}

static void redis_release_busy(struct ra_dd_store *s, struct rp_view txid, struct rp_view domain,
                               struct rp_view identity);

static void parse_offer(const struct rp_redis_reply *rep, struct ra_dd_result *res)
{
    long long code = elem_int(rep, 0);
    switch (code) {
    case 3:
        res->gate = RA_GATE_JOINED;
        res->state = (enum ra_dd_state)elem_int(rep, 1);
        res->answer = elem_str(rep, 2);
        if (res->answer.len == 0)
            res->answer = RP_VIEW_NULL;
        break;
    case -2:
        res->gate = RA_GATE_DUPLICATE;
        break;
    case 1:
        res->gate = RA_GATE_GO;
        break;
    case 2:
        res->gate = RA_GATE_QUEUED;
        break;
    case 0:
        res->gate = RA_GATE_BUSY;
        res->retry_ms = (int32_t)elem_int(rep, 1);
        break;
    case -3:
        res->gate = RA_GATE_FULL;
        break;
    case -4:
        res->gate = RA_GATE_FOREIGN;
        break;
    default:
        res->err = RP_E_REDIS_REPLY;
    }
}

static void give_back(struct redis_call *c);

static void on_call_closed(void *arg)
{
    struct redis_call *c = arg;
    free(c->argv);
    free(c);
}

static void call_free(struct redis_call *c)
{
    if (c->timer) {
        rp_loop_timer_free(c->timer, on_call_closed, c);
        return;
    }
    on_call_closed(c);
}

static bool transient(int err)
{
    return err == RP_E_REDIS_TIMEOUT || err == RP_E_REDIS_DOWN || err == RP_E_REDIS_BUSY;
}

static void retry_send(struct redis_call *c);

static void on_retry_timer(void *arg)
{
    struct redis_call *c = arg;
    rp_list_unlink(&c->rlink);
    retry_send(c);
}

/* A retryable call failed with err: its next attempt is scheduled (true), or it is over. */
static bool retry_later(struct redis_call *c, int err)
{
    struct ra_dd_store *s = c->s;
    if (!c->argv || !transient(err) || s->closing || c->retries == 0 || !s->timer_new)
        return false;
    if (!c->timer && s->timer_new(s->timer_ctx, on_retry_timer, c, &c->timer) != RP_OK) {
        c->timer = NULL;
        return false;
    }
    c->retries--;
    rp_list_push(&s->retrying, &c->rlink);
    rp_loop_timer_start(c->timer, c->delay_ms);
    c->delay_ms *= 2;
    rp_log_debug("delayed", "redis %s: retried in a moment", rp_err_name(err));
    return true;
}

static void on_reply(void *arg, int err, const struct rp_redis_reply *rep);

static void retry_send(struct redis_call *c)
{
    int rc =
        rp_redis_evalsha(c->s->redis, c->script, c->nkeys, c->argc, c->argv, c->len, on_reply, c);
    if (rc == RP_OK || retry_later(c, rc))
        return;
    rp_log_warn("delayed", "a queued request's update was not stored in Redis: %s", rp_err_msg(rc));
    call_free(c);
}

static void on_reply(void *arg, int err, const struct rp_redis_reply *rep)
{
    struct redis_call *c = arg;
    if (err != RP_OK && c->kind == CALL_IGNORE && retry_later(c, err))
        return;
    struct ra_dd_result res = {.err = err};
    snprintf(res.token, sizeof res.token, "%s", c->token); /* a late offer's: ra_dd_settle */
    if (err == RP_OK && (!rep || rep->kind != RP_REDIS_REPLY_ARRAY || rep->elements < 2))
        res.err = c->kind == CALL_IGNORE ? RP_OK : RP_E_REDIS_REPLY;
    if (res.err != RP_OK || c->kind == CALL_IGNORE) {
        if (res.err != RP_OK && res.err != RP_E_SHUTDOWN)
            rp_log_debug("delayed", "redis answer unusable: %s", rp_err_name(res.err));
        res.maybe = err == RP_E_REDIS_TIMEOUT || err == RP_E_REDIS_DOWN;
        if (res.maybe && c->give_back)
            give_back(c);
        goto out;
    }
    switch (c->kind) {
    case CALL_OFFER:
    case CALL_REQUEUE:
        parse_offer(rep, &res);
        break;
    case CALL_NEXT:
        if (elem_int(rep, 0) == 1)
            res.txid = elem_str(rep, 2);
        else
            res.retry_ms = (int32_t)elem_int(rep, 1);
        break;
    case CALL_CLAIM:
        if (elem_int(rep, 0) == 1) {
            res.state = RA_DD_SENDING;
            res.domain = elem_str(rep, 2);
            res.identity = elem_str(rep, 3);
            res.req = elem_str(rep, 4);
            res.body = elem_str(rep, 5);
            if (res.body.len == 0)
                res.body = RP_VIEW_NULL;
        } else {
            res.state = (enum ra_dd_state)elem_int(rep, 1);
            res.domain = elem_str(rep, 2);
            res.identity = elem_str(rep, 3);
            res.token[0] = 0;
            if (res.state == RA_DD_EXPIRED)
                redis_release_busy(c->s, rp_view_make(c->txid, c->txid_len), res.domain,
                                   res.identity);
        }
        res.txid = rp_view_make(c->txid, c->txid_len);
        break;
    case CALL_POLL:
        if (elem_int(rep, 0) < 0) {
            res.foreign = true;
            res.txid = rp_view_make(c->txid, c->txid_len);
            break;
        }
        res.state = (enum ra_dd_state)elem_int(rep, 0);
        res.answer = elem_str(rep, 1);
        if (res.answer.len == 0)
            res.answer = RP_VIEW_NULL;
        if (rep->elements >= 4)
            redis_release_busy(c->s, rp_view_make(c->txid, c->txid_len), elem_str(rep, 2),
                               elem_str(rep, 3));
        res.txid = rp_view_make(c->txid, c->txid_len);
        break;
    case CALL_EXTEND:
    case CALL_CANCEL:
        res.state = (enum ra_dd_state)elem_int(rep, 1);
        res.txid = rp_view_make(c->txid, c->txid_len);
        break;
    case CALL_IGNORE:
        break;
    }
out:
    if (c->kind != CALL_IGNORE)
        fire(c->cb, c->arg, &res);
    call_free(c);
}

static struct redis_call *call_new(struct ra_dd_store *s, enum dd_call kind, ra_dd_fn cb, void *arg,
                                   struct rp_view txid)
{
    struct redis_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->kind = kind;
    c->cb = cb;
    c->arg = arg;
    c->s = s;
    if (txid.p && txid.len <= TXID_MAX) {
        memcpy(c->txid, txid.p, txid.len);
        c->txid_len = txid.len;
    }
    return c;
}

/* EVALSHA; a refused command fires the callback with the error. */
static void eval(struct ra_dd_store *s, unsigned script, struct redis_call *c, int nkeys, int argc,
                 const char **argv, const size_t *len)
{
    int rc = rp_redis_evalsha(s->redis, script, nkeys, argc, argv, len, on_reply, c);
    if (rc == RP_OK)
        return;
    if (c->kind != CALL_IGNORE)
        fire_err(c->cb, c->arg, rc);
    free(c);
}

/* EVALSHA of an idempotent fire-and-forget call (settle, finish), retried on a transient
 * error: its arguments are copied for the retries. */
static void eval_retried(struct ra_dd_store *s, unsigned script, struct redis_call *c, int nkeys,
                         int argc, const char **argv, const size_t *len)
{
    size_t total = 0;
    for (int i = 0; i < argc; i++)
        total += len[i] + 1;
    size_t head = (size_t)argc * (sizeof *c->argv + sizeof *c->len);
    uint8_t *block = malloc(head + total);
    if (!block) {
        eval(s, script, c, nkeys, argc, argv, len); /* no retries, but one attempt */
        return;
    }
    c->argv = (const char **)(void *)block;
    c->len = (size_t *)(void *)(block + (size_t)argc * sizeof *c->argv);
    char *p = (char *)block + head;
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], len[i]);
        p[len[i]] = 0;
        c->argv[i] = p;
        c->len[i] = len[i];
        p += len[i] + 1;
    }
    c->script = script;
    c->nkeys = nkeys;
    c->argc = argc;
    c->retries = RETRY_MAX;
    c->delay_ms = RETRY_FIRST_MS;
    retry_send(c);
}

/* A direct offer past its deadline may still run (it is in Redis's buffer): its lease and
 * the device's marker are given back by a release sent behind it on the same connection,
 * which Redis runs after it. A queueing offer is not undone: the caller answers waiting,
 * so that a request it may have queued is not also sent another way. */
static void give_back(struct redis_call *c)
{
    struct ra_dd_store *s = c->s;
    struct keybuf kf, hex = {0};
    kb_fixed(s, &kf, "f");
    kb_hex(&hex, rp_view_make(c->txid, c->txid_len));
    struct redis_call *r = call_new(s, CALL_IGNORE, NULL, NULL, RP_VIEW_NULL);
    if (!r)
        return;
    const char *argv[] = {kf.p, c->busy.p, c->token, hex.p};
    size_t len[] = {kf.len, c->busy.len, strlen(c->token), hex.len};
    eval(s, s->sc_release, r, 2, 4, argv, len);
}

static void redis_release(struct ra_dd_store *s, const char *token, struct rp_view txid,
                          struct rp_view domain, struct rp_view identity);

/* The device's marker alone: a release without a lease. */
static void redis_release_busy(struct ra_dd_store *s, struct rp_view txid, struct rp_view domain,
                               struct rp_view identity)
{
    if (rp_view_present(domain) && rp_view_present(identity))
        redis_release(s, NULL, txid, domain, identity);
}

static void redis_offer(struct ra_dd_store *s, const struct ra_dd_offer *in, bool requeue,
                        const char *token, ra_dd_fn cb, void *arg)
{
    struct keybuf kq, kp, kf, kr, kt, kb, hex = {0};
    kb_fixed(s, &kq, "q");
    kb_fixed(s, &kp, "p");
    kb_fixed(s, &kf, "f");
    kb_fixed(s, &kr, "r");
    kb_record(s, &kt, in->txid);
    kb_busy(s, &kb, in->domain, in->identity);
    kb_hex(&hex, in->txid);
    if (kt.overflow || kb.overflow || hex.overflow) {
        fire_err(cb, arg, RP_E_INVAL);
        return;
    }
    struct redis_call *c = call_new(s, requeue ? CALL_REQUEUE : CALL_OFFER, cb, arg, in->txid);
    if (!c) {
        fire_err(cb, arg, RP_E_NOMEM);
        return;
    }
    static const char *const modes[] = {"direct", "queue", "force"};
    char max[NUM_MAX], lease[NUM_MAX], t[NUM_MAX], b[NUM_MAX], busy[NUM_MAX], waiting[NUM_MAX],
        ttl[NUM_MAX];
    fmt_u64(max, in->budget.max_in_flight);
    fmt_u64(lease, in->budget.lease_ms);
    fmt_u64(t, in->budget.interval_us);
    fmt_u64(b, in->budget.burst ? in->budget.burst : 1);
    fmt_u64(busy, in->busy_ttl_ms);
    fmt_u64(waiting, in->max_waiting);
    fmt_u64(ttl, in->record_ttl_ms);
    const char *excl = in->exclusive ? "1" : "0";
    struct rp_view body = rp_view_present(in->body) ? in->body : rp_view_make("", 0);
    if (requeue) {
        snprintf(c->token, sizeof c->token, "%s", token ? token : "");
        const char *argv[] = {kq.p,
                              kp.p,
                              kf.p,
                              kt.p,
                              kb.p,
                              hex.p,
                              c->token,
                              ttl,
                              excl,
                              waiting,
                              (const char *)in->domain.p,
                              (const char *)in->identity.p,
                              (const char *)in->req.p,
                              (const char *)body.p};
        size_t len[] = {kq.len,         kp.len,           kf.len,      kt.len,  kb.len,
                        hex.len,        strlen(c->token), strlen(ttl), 1,       strlen(waiting),
                        in->domain.len, in->identity.len, in->req.len, body.len};
        eval(s, s->sc_requeue, c, 5, 14, argv, len);
        return;
    }
    new_token(s, c->token);
    c->give_back = in->mode == RA_OFFER_DIRECT;
    c->busy = kb;
    const char *argv[] = {kq.p,
                          kp.p,
                          kf.p,
                          kr.p,
                          kt.p,
                          kb.p,
                          hex.p,
                          modes[in->mode],
                          excl,
                          max,
                          lease,
                          t,
                          b,
                          c->token,
                          busy,
                          waiting,
                          ttl,
                          (const char *)in->domain.p,
                          (const char *)in->identity.p,
                          (const char *)in->req.p,
                          (const char *)body.p};
    size_t len[] = {kq.len,      kp.len,           kf.len,           kr.len,
                    kt.len,      kb.len,           hex.len,          strlen(modes[in->mode]),
                    1,           strlen(max),      strlen(lease),    strlen(t),
                    strlen(b),   strlen(c->token), strlen(busy),     strlen(waiting),
                    strlen(ttl), in->domain.len,   in->identity.len, in->req.len,
                    body.len};
    eval(s, s->sc_offer, c, 6, 21, argv, len);
}

static void redis_release(struct ra_dd_store *s, const char *token, struct rp_view txid,
                          struct rp_view domain, struct rp_view identity)
{
    struct keybuf kf, kb, hex = {0};
    kb_fixed(s, &kf, "f");
    kb_busy(s, &kb, domain.p ? domain : rp_view_make("", 0),
            identity.p ? identity : rp_view_make("", 0));
    kb_hex(&hex, txid);
    struct redis_call *c = call_new(s, CALL_IGNORE, NULL, NULL, txid);
    if (!c || kb.overflow || hex.overflow) {
        free(c);
        return;
    }
    const char *argv[] = {kf.p, kb.p, token ? token : "", hex.p};
    size_t len[] = {kf.len, kb.len, token ? strlen(token) : 0, hex.len};
    eval(s, s->sc_release, c, 2, 4, argv, len);
}

static void redis_settle(struct ra_dd_store *s, const struct ra_dd_offer *in, const char *token)
{
    struct keybuf kq, kf, kt, kb, hex = {0};
    kb_fixed(s, &kq, "q");
    kb_fixed(s, &kf, "f");
    kb_record(s, &kt, in->txid);
    kb_busy(s, &kb, in->domain, in->identity);
    kb_hex(&hex, in->txid);
    struct redis_call *c = call_new(s, CALL_IGNORE, NULL, NULL, in->txid);
    if (!c || kt.overflow || kb.overflow || hex.overflow) {
        free(c);
        return;
    }
    char ttl[NUM_MAX];
    fmt_u64(ttl, in->record_ttl_ms);
    struct rp_view body = rp_view_present(in->body) ? in->body : rp_view_make("", 0);
    const char *tok = token ? token : "";
    const char *argv[] = {kq.p,
                          kf.p,
                          kt.p,
                          kb.p,
                          hex.p,
                          tok,
                          ttl,
                          in->exclusive ? "1" : "0",
                          (const char *)in->domain.p,
                          (const char *)in->identity.p,
                          (const char *)in->req.p,
                          (const char *)body.p};
    size_t len[] = {kq.len,      kf.len, kt.len,         kb.len,           hex.len,     strlen(tok),
                    strlen(ttl), 1,      in->domain.len, in->identity.len, in->req.len, body.len};
    eval_retried(s, s->sc_settle, c, 4, 12, argv, len);
}

static void redis_next(struct ra_dd_store *s, const struct ra_dd_budget *b, uint32_t reserve_ms,
                       ra_dd_fn cb, void *arg)
{
    struct keybuf kq, kp, kf, kr;
    kb_fixed(s, &kq, "q");
    kb_fixed(s, &kp, "p");
    kb_fixed(s, &kf, "f");
    kb_fixed(s, &kr, "r");
    struct redis_call *c = call_new(s, CALL_NEXT, cb, arg, RP_VIEW_NULL);
    if (!c) {
        fire_err(cb, arg, RP_E_NOMEM);
        return;
    }
    char max[NUM_MAX], lease[NUM_MAX], t[NUM_MAX], burst[NUM_MAX], reserve[NUM_MAX];
    fmt_u64(max, b->max_in_flight);
    fmt_u64(lease, b->lease_ms);
    fmt_u64(t, b->interval_us);
    fmt_u64(burst, b->burst ? b->burst : 1);
    fmt_u64(reserve, reserve_ms);
    const char *argv[] = {kq.p, kp.p, kf.p, kr.p, max, lease, t, burst, reserve};
    size_t len[] = {kq.len,        kp.len,    kf.len,        kr.len,         strlen(max),
                    strlen(lease), strlen(t), strlen(burst), strlen(reserve)};
    eval(s, s->sc_next, c, 4, 9, argv, len);
}

/* Hex txid from Redis back to bytes (what every other call takes). */
static size_t unhex(struct rp_view hex, uint8_t *out, size_t cap)
{
    size_t n = hex.len / 2;
    if (hex.len % 2 || n > cap)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (size_t j = 0; j < 2; j++) {
            char ch = (char)hex.p[2 * i + j];
            v = v * 16 + (unsigned)(ch >= 'a' ? ch - 'a' + 10 : ch - '0');
        }
        out[i] = (uint8_t)v;
    }
    return n;
}

struct next_ctx {
    ra_dd_fn cb;
    void *arg;
};

/* Redis hands out the hex txid: the caller gets the bytes like everywhere else. */
static void on_next(void *arg, const struct ra_dd_result *r)
{
    struct next_ctx *n = arg;
    struct ra_dd_result res = *r;
    uint8_t txid[TXID_MAX];
    if (r->err == RP_OK && rp_view_present(r->txid)) {
        size_t len = unhex(r->txid, txid, sizeof txid);
        res.txid = len ? rp_view_make(txid, len) : RP_VIEW_NULL;
        if (!len)
            res.err = RP_E_REDIS_REPLY;
        else
            dispatch_token(res.txid, res.token);
    }
    ra_dd_fn cb = n->cb;
    void *cb_arg = n->arg;
    free(n);
    cb(cb_arg, &res);
}

static void redis_claim(struct ra_dd_store *s, struct rp_view txid, uint32_t lease_ms,
                        uint32_t max_wait_ms, uint32_t keep_ms, ra_dd_fn cb, void *arg)
{
    struct keybuf kp, kf, kt, hex = {0};
    kb_fixed(s, &kp, "p");
    kb_fixed(s, &kf, "f");
    kb_record(s, &kt, txid);
    kb_hex(&hex, txid);
    struct redis_call *c = call_new(s, CALL_CLAIM, cb, arg, txid);
    if (!c || kt.overflow) {
        free(c);
        fire_err(cb, arg, RP_E_INVAL);
        return;
    }
    dispatch_token(txid, c->token);
    char lease[NUM_MAX], wait[NUM_MAX], keep[NUM_MAX];
    fmt_u64(lease, lease_ms);
    fmt_u64(wait, max_wait_ms);
    fmt_u64(keep, keep_ms);
    const char *argv[] = {kp.p, kf.p, kt.p, hex.p, lease, wait, keep};
    size_t len[] = {kp.len, kf.len, kt.len, hex.len, strlen(lease), strlen(wait), strlen(keep)};
    eval(s, s->sc_claim, c, 3, 7, argv, len);
}

static void redis_extend(struct ra_dd_store *s, struct rp_view txid, uint32_t lease_ms, ra_dd_fn cb,
                         void *arg)
{
    struct keybuf kf, kt, hex = {0};
    kb_fixed(s, &kf, "f");
    kb_record(s, &kt, txid);
    kb_hex(&hex, txid);
    struct redis_call *c = call_new(s, CALL_EXTEND, cb, arg, txid);
    if (!c || kt.overflow) {
        free(c);
        fire_err(cb, arg, RP_E_INVAL);
        return;
    }
    dispatch_token(txid, c->token);
    char lease[NUM_MAX];
    fmt_u64(lease, lease_ms);
    const char *argv[] = {kf.p, kt.p, hex.p, lease, c->token};
    size_t len[] = {kf.len, kt.len, hex.len, strlen(lease), strlen(c->token)};
    eval(s, s->sc_extend, c, 2, 5, argv, len);
}

static void redis_cancel(struct ra_dd_store *s, struct rp_view txid, struct rp_view domain,
                         struct rp_view identity, ra_dd_fn cb, void *arg)
{
    struct keybuf kq, kt, kb, hex = {0};
    kb_fixed(s, &kq, "q");
    kb_record(s, &kt, txid);
    kb_busy(s, &kb, domain, identity);
    kb_hex(&hex, txid);
    struct redis_call *c = call_new(s, CALL_CANCEL, cb, arg, txid);
    if (!c || kt.overflow || kb.overflow) {
        free(c);
        fire_err(cb, arg, RP_E_INVAL);
        return;
    }
    const char *argv[] = {
        kq.p, kt.p, kb.p, hex.p, (const char *)domain.p, (const char *)identity.p};
    size_t len[] = {kq.len, kt.len, kb.len, hex.len, domain.len, identity.len};
    eval(s, s->sc_cancel, c, 3, 6, argv, len);
}

static void redis_finish(struct ra_dd_store *s, struct rp_view txid, enum ra_dd_state state,
                         struct rp_view answer, uint32_t keep_ms, struct rp_view domain,
                         struct rp_view identity)
{
    static const char *const names[] = {[RA_DD_ANSWERED] = "answered",
                                        [RA_DD_LOST] = "lost",
                                        [RA_DD_FAILED] = "failed",
                                        [RA_DD_EXPIRED] = "expired"};
    if (state < RA_DD_ANSWERED || state > RA_DD_EXPIRED)
        return;
    struct keybuf kf, kt, kb, hex = {0};
    kb_fixed(s, &kf, "f");
    kb_record(s, &kt, txid);
    kb_busy(s, &kb, domain.p ? domain : rp_view_make("", 0),
            identity.p ? identity : rp_view_make("", 0));
    kb_hex(&hex, txid);
    struct redis_call *c = call_new(s, CALL_IGNORE, NULL, NULL, txid);
    if (!c || kt.overflow || kb.overflow) {
        free(c);
        return;
    }
    dispatch_token(txid, c->token);
    char keep[NUM_MAX];
    fmt_u64(keep, keep_ms);
    struct rp_view ans = rp_view_present(answer) ? answer : rp_view_make("", 0);
    const char *argv[] = {kf.p, kt.p,    kb.p, hex.p, names[state], (const char *)ans.p,
                          keep, c->token};
    size_t len[] = {kf.len,  kt.len,       kb.len,          hex.len, strlen(names[state]),
                    ans.len, strlen(keep), strlen(c->token)};
    eval_retried(s, s->sc_finish, c, 3, 8, argv, len);
}

static void redis_poll(struct ra_dd_store *s, struct rp_view txid, struct rp_view domain,
                       struct rp_view identity, uint32_t max_wait_ms, ra_dd_fn cb, void *arg)
{
    struct keybuf kt, kq, hex = {0};
    kb_record(s, &kt, txid);
    kb_fixed(s, &kq, "q");
    kb_hex(&hex, txid);
    struct redis_call *c = call_new(s, CALL_POLL, cb, arg, txid);
    if (!c || kt.overflow) {
        free(c);
        fire_err(cb, arg, RP_E_INVAL);
        return;
    }
    char wait[NUM_MAX];
    fmt_u64(wait, max_wait_ms);
    const char *argv[] = {
        kt.p, kq.p, hex.p, wait, (const char *)domain.p, (const char *)identity.p};
    size_t len[] = {kt.len, kq.len, hex.len, strlen(wait), domain.len, identity.len};
    eval(s, s->sc_poll, c, 2, 6, argv, len);
}

/* ---- public calls ------------------------------------------------------------------------- */

void ra_dd_offer(struct ra_dd_store *s, const struct ra_dd_offer *in, ra_dd_fn cb, void *arg)
{
    if (!ids_ok(in->txid, in->domain, in->identity) || !rp_view_present(in->domain) ||
        !rp_view_present(in->identity) || !rp_view_present(in->req)) {
        fire_err(cb, arg, RP_E_INVAL);
        return;
    }
    if (s->redis)
        redis_offer(s, in, false, NULL, cb, arg);
    else
        mem_offer(s, in, cb, arg);
}

void ra_dd_release(struct ra_dd_store *s, const char *token, struct rp_view txid,
                   struct rp_view domain, struct rp_view identity)
{
    if (!ids_ok(txid, domain, identity))
        return;
    if (s->redis)
        redis_release(s, token, txid, domain, identity);
    else
        mem_release(s, token, txid, domain, identity);
}

void ra_dd_requeue(struct ra_dd_store *s, const struct ra_dd_offer *in, const char *token,
                   ra_dd_fn cb, void *arg)
{
    if (!ids_ok(in->txid, in->domain, in->identity) || !rp_view_present(in->domain) ||
        !rp_view_present(in->identity) || !rp_view_present(in->req)) {
        fire_err(cb, arg, RP_E_INVAL);
        return;
    }
    if (s->redis)
        redis_offer(s, in, true, token, cb, arg);
    else
        mem_requeue(s, in, token, cb, arg);
}

void ra_dd_settle(struct ra_dd_store *s, const struct ra_dd_offer *in, const char *token)
{
    if (!s->redis || !ids_ok(in->txid, in->domain, in->identity) || !rp_view_present(in->domain) ||
        !rp_view_present(in->identity) || !rp_view_present(in->req))
        return;
    redis_settle(s, in, token);
}

void ra_dd_next(struct ra_dd_store *s, const struct ra_dd_budget *b, uint32_t reserve_ms,
                ra_dd_fn cb, void *arg)
{
    if (!s->redis) {
        mem_next(s, b, cb, arg);
        return;
    }
    struct next_ctx *n = malloc(sizeof *n);
    if (!n) {
        fire_err(cb, arg, RP_E_NOMEM);
        return;
    }
    n->cb = cb;
    n->arg = arg;
    redis_next(s, b, reserve_ms, on_next, n);
}

void ra_dd_claim(struct ra_dd_store *s, struct rp_view txid, uint32_t lease_ms,
                 uint32_t max_wait_ms, uint32_t keep_ms, ra_dd_fn cb, void *arg)
{
    if (!ids_ok(txid, RP_VIEW_NULL, RP_VIEW_NULL)) {
        fire_err(cb, arg, RP_E_INVAL);
        return;
    }
    if (s->redis)
        redis_claim(s, txid, lease_ms, max_wait_ms, keep_ms, cb, arg);
    else
        mem_claim(s, txid, lease_ms, max_wait_ms, keep_ms, cb, arg);
}

void ra_dd_extend(struct ra_dd_store *s, struct rp_view txid, uint32_t lease_ms, ra_dd_fn cb,
                  void *arg)
{
    if (!ids_ok(txid, RP_VIEW_NULL, RP_VIEW_NULL)) {
        fire_err(cb, arg, RP_E_INVAL);
        return;
    }
    if (s->redis)
        redis_extend(s, txid, lease_ms, cb, arg);
    else
        mem_extend(s, txid, lease_ms, cb, arg);
}

void ra_dd_cancel(struct ra_dd_store *s, struct rp_view txid, struct rp_view domain,
                  struct rp_view identity, ra_dd_fn cb, void *arg)
{
    if (!ids_ok(txid, domain, identity) || !rp_view_present(domain) || !rp_view_present(identity)) {
        fire_err(cb, arg, RP_E_INVAL);
        return;
    }
    if (s->redis)
        redis_cancel(s, txid, domain, identity, cb, arg);
    else
        mem_cancel(s, txid, domain, identity, cb, arg);
}

void ra_dd_finish(struct ra_dd_store *s, struct rp_view txid, enum ra_dd_state state,
                  struct rp_view answer, uint32_t keep_ms, struct rp_view domain,
                  struct rp_view identity)
{
    if (!ids_ok(txid, domain, identity))
        return;
    if (s->redis)
        redis_finish(s, txid, state, answer, keep_ms, domain, identity);
    else
        mem_finish(s, txid, state, answer, keep_ms, domain, identity);
}

void ra_dd_poll(struct ra_dd_store *s, struct rp_view txid, struct rp_view domain,
                struct rp_view identity, uint32_t max_wait_ms, ra_dd_fn cb, void *arg)
{
    /* an absent domain or identity matches no record: it is compared as empty */
    domain = rp_view_present(domain) ? domain : rp_view_make("", 0);
    identity = rp_view_present(identity) ? identity : rp_view_make("", 0);
    if (!ids_ok(txid, domain, identity)) {
        fire_err(cb, arg, RP_E_INVAL);
        return;
    }
    if (s->redis)
        redis_poll(s, txid, domain, identity, max_wait_ms, cb, arg);
    else
        mem_poll(s, txid, domain, identity, max_wait_ms, cb, arg);
}

void ra_dd_store_close(struct ra_dd_store *s)
{
    if (!s)
        return;
    s->closing = true;
    struct rp_list_node *n;
    while ((n = rp_list_shift(&s->retrying)) != NULL) {
        struct redis_call *c = container_of(n, struct redis_call, rlink);
        rp_loop_timer_stop(c->timer);
        call_free(c);
    }
}
