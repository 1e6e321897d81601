/* In-process limiter, replay cache and transaction table (see limiter.h for the contract). */
#include "raproxy/limiter.h"

#include "raproxy/clock.h"
#include "raproxy/err.h"
#include "raproxy/list.h"
#include "raproxy/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define USEC_PER_MSEC        1000ull
#define EXPIRED_SWEEP        2  /* expired LRU heads dropped per insert: keeps dead entries rare */
#define FULL_SCAN            16 /* entries looked at for an expired one when a stripe is full */
#define CACHELINE            64
#define FNV_OFFSET           0xcbf29ce484222325ull
#define FNV_PRIME            0x100000001b3ull
#define MIN_SLOTS_PER_STRIPE 16u

struct lim_entry {
    struct lim_entry *hnext; /* hash chain */
    struct rp_list_node lru; /* in the stripe's LRU list */
    uint64_t hash;
    uint64_t expire_us;
    uint64_t tat_us;                      /* rate buckets */
    char state[RP_LIMITER_STATE_MAX + 1]; /* transactions */
    uint16_t keylen, serlen;
    uint8_t data[]; /* key, then the owner serial (transactions) */
};

struct lim_stripe {
    pthread_mutex_t mu;
    struct lim_entry **slots;
    size_t mask;
    size_t count, max;
    struct rp_list_node lru; /* least recently used first */
} __attribute__((aligned(CACHELINE)));

struct lim_table {
    struct lim_stripe stripes[RP_LIMITER_STRIPES];
};

struct rp_limiter {
    uint64_t seed; /* per process, so that colliding keys cannot be precomputed */
    struct lim_table buckets, nonces, txns, fails;
};

static void entry_dispose(struct lim_entry *e)
{
    rp_pool_put(e, sizeof *e + e->keylen + e->serlen);
}

/* ---- hash table with LRU ---------------------------------------------------------------- */

static uint64_t key_hash(const struct rp_limiter *l, struct rp_view k)
{
    uint64_t h = FNV_OFFSET ^ l->seed;
    for (size_t i = 0; i < k.len; i++)
        h = (h ^ k.p[i]) * FNV_PRIME;
    /* murmur3 finaliser: FNV's low bits are weak and both stripe and slot come from them */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static int table_init(struct lim_table *t, uint32_t max)
{
    size_t per = (max + RP_LIMITER_STRIPES - 1) / RP_LIMITER_STRIPES;
    size_t slots = MIN_SLOTS_PER_STRIPE;
    while (slots < per)
        slots <<= 1;
    for (unsigned i = 0; i < RP_LIMITER_STRIPES; i++) {
        struct lim_stripe *s = &t->stripes[i];
        rp_list_init(&s->lru);
        s->slots = calloc(slots, sizeof *s->slots);
        if (!s->slots)
            return RP_E_NOMEM;
        s->mask = slots - 1;
        s->max = per ? per : 1;
        pthread_mutex_init(&s->mu, NULL);
    }
    return RP_OK;
}

static void table_free(struct lim_table *t)
{
    for (unsigned i = 0; i < RP_LIMITER_STRIPES; i++) {
        struct lim_stripe *s = &t->stripes[i];
        if (!s->slots)
            continue;
        struct rp_list_node *n, *nx;
        for (RP_LIST_EACH(n, nx, &s->lru))
            entry_dispose(container_of(n, struct lim_entry, lru));
        free(s->slots);
        pthread_mutex_destroy(&s->mu);
    }
}

static struct lim_stripe *stripe_of(struct lim_table *t, uint64_t h)
{
    return &t->stripes[(h >> 56) % RP_LIMITER_STRIPES];
}

/* The least recently used entry of a stripe, or NULL. */
static struct lim_entry *lru_oldest(struct lim_stripe *s)
{
    return rp_list_empty(&s->lru) ? NULL : container_of(s->lru.next, struct lim_entry, lru);
}

/* The entry after e in LRU order, or NULL at the most recently used end. */
static struct lim_entry *lru_newer(struct lim_stripe *s, struct lim_entry *e)
{
    return e->lru.next == &s->lru ? NULL : container_of(e->lru.next, struct lim_entry, lru);
}

static void entry_remove(struct lim_stripe *s, struct lim_entry *e)
{
    struct lim_entry **pp = &s->slots[e->hash & s->mask];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    rp_list_unlink(&e->lru);
    s->count--;
    entry_dispose(e);
}

/* Live entry for key, or NULL (an expired one is dropped on the way). */
static struct lim_entry *entry_find(struct lim_stripe *s, uint64_t h, struct rp_view k,
                                    uint64_t now_us)
{
    for (struct lim_entry *e = s->slots[h & s->mask]; e; e = e->hnext) {
        if (e->hash != h || e->keylen != k.len || memcmp(e->data, k.p, k.len) != 0)
            continue;
        if (e->expire_us <= now_us) {
            entry_remove(s, e);
            return NULL;
        }
        rp_list_unlink(&e->lru);
        rp_list_push(&s->lru, &e->lru);
        return e;
    }
    return NULL;
}

/* Room for one more entry: expired ones from the LRU end first; then, where `evict_live`,
 * the least recently used live one. False when the stripe is full of entries to keep. */
static bool make_room(struct lim_stripe *s, uint64_t now_us, bool evict_live)
{
    struct lim_entry *e;
    for (int i = 0; i < EXPIRED_SWEEP && (e = lru_oldest(s)) && e->expire_us <= now_us; i++)
        entry_remove(s, e);
    if (s->count < s->max)
        return true;
    /* TTLs differ (per domain, with or without messageTime): an expired entry may sit
     * behind a live head; look a little further before giving up */
    e = lru_oldest(s);
    for (int i = 0; e && i < FULL_SCAN; i++, e = lru_newer(s, e))
        if (e->expire_us <= now_us) {
            entry_remove(s, e);
            return true;
        }
    if (!evict_live)
        return false;
    entry_remove(s, lru_oldest(s));
    return true;
}

static struct lim_entry *entry_add(struct lim_stripe *s, uint64_t h, struct rp_view k,
                                   struct rp_view extra)
{
    /* a nonce and a transaction per request: from the calling thread's pool */
    struct lim_entry *e = rp_pool_get(sizeof *e + k.len + extra.len);
    if (!e)
        return NULL;
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->keylen = (uint16_t)k.len;
    e->serlen = (uint16_t)extra.len;
    if (k.len)
        memcpy(e->data, k.p, k.len);
    if (extra.len)
        memcpy(e->data + k.len, extra.p, extra.len);
    struct lim_entry **slot = &s->slots[h & s->mask];
    e->hnext = *slot;
    *slot = e;
    rp_list_push(&s->lru, &e->lru);
    s->count++;
    return e;
}

static bool key_ok(struct rp_view k)
{
    return k.len <= RP_LIMITER_MAX_KEY && (k.p || k.len == 0);
}

/* ---- public ----------------------------------------------------------------------------- */

int rp_limiter_new(struct rp_limiter **out, const struct rp_limiter_opts *o)
{
    struct rp_limiter_opts d = {0};
    if (o)
        d = *o;
    struct rp_limiter *l = calloc(1, sizeof *l);
    if (!l)
        return RP_E_NOMEM;
    l->seed = rp_clock_ns() ^ (uint64_t)(uintptr_t)l;
    if (table_init(&l->buckets, d.max_buckets ? d.max_buckets : RP_LIMITER_DEF_BUCKETS) ||
        table_init(&l->nonces, d.max_nonces ? d.max_nonces : RP_LIMITER_DEF_NONCES) ||
        table_init(&l->txns, d.max_txns ? d.max_txns : RP_LIMITER_DEF_TXNS) ||
        table_init(&l->fails, d.max_fails ? d.max_fails : RP_LIMITER_DEF_FAILS)) {
        rp_limiter_free(l);
        return RP_E_NOMEM;
    }
    *out = l;
    return RP_OK;
}

void rp_limiter_free(struct rp_limiter *l)
{
    if (!l)
        return;
    table_free(&l->buckets);
    table_free(&l->nonces);
    table_free(&l->txns);
    table_free(&l->fails);
    free(l);
}

uint32_t rp_gcra_burst(uint32_t rate, uint32_t burst)
{
    uint32_t b = burst ? burst : rate;
    return b ? b : 1;
}

int rp_limiter_take(struct rp_limiter *l, struct rp_view key, uint64_t interval_us, uint32_t burst,
                    uint64_t now_us, uint32_t *retry_after_ms)
{
    *retry_after_ms = 0;
    if (interval_us == 0)
        return RP_OK;
    if (!key_ok(key))
        return RP_E_INVAL;
    uint64_t t = interval_us;
    uint64_t b = burst ? burst : 1;
    uint64_t h = key_hash(l, key);
    struct lim_stripe *s = stripe_of(&l->buckets, h);
    int rc = RP_OK;
    pthread_mutex_lock(&s->mu);
    struct lim_entry *e = entry_find(s, h, key, now_us);
    uint64_t tat = e && e->tat_us > now_us ? e->tat_us : now_us;
    uint64_t next = tat + t;
    /* allow_at = next - b·t, written so that nothing underflows */
    if (next > now_us + b * t) {
        uint64_t wait_us = next - b * t - now_us;
        uint64_t ms = (wait_us + USEC_PER_MSEC - 1) / USEC_PER_MSEC;
        *retry_after_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
        rc = RP_E_RATE_LIMITED;
        goto out;
    }
    if (!e && make_room(s, now_us, true))
        e = entry_add(s, h, key, RP_VIEW_NULL);
    if (!e) {
        rc = RP_E_NOMEM;
        goto out;
    }
    e->tat_us = next;
    e->expire_us = next; /* a bucket whose TAT has passed is the same as no bucket */
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void rp_limiter_refund(struct rp_limiter *l, struct rp_view key, uint64_t interval_us,
                       uint64_t now_us)
{
    if (interval_us == 0 || !key_ok(key))
        return;
    uint64_t t = interval_us;
    uint64_t h = key_hash(l, key);
    struct lim_stripe *s = stripe_of(&l->buckets, h);
    pthread_mutex_lock(&s->mu);
    struct lim_entry *e = entry_find(s, h, key, now_us);
    if (e) {
        if (e->tat_us <= now_us + t) {
            entry_remove(s, e);
        } else {
            e->tat_us -= t;
            e->expire_us = e->tat_us;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

int rp_limiter_nonce(struct rp_limiter *l, struct rp_view key, uint32_t ttl_ms, uint64_t now_us)
{
    if (!key_ok(key))
        return RP_E_INVAL;
    uint64_t h = key_hash(l, key);
    struct lim_stripe *s = stripe_of(&l->nonces, h);
    int rc = RP_OK;
    pthread_mutex_lock(&s->mu);
    if (entry_find(s, h, key, now_us)) {
        rc = RP_E_BAD_SENDER_NONCE;
    } else if (!make_room(s, now_us, false)) {
        rc = RP_E_TABLE_FULL;
    } else {
        struct lim_entry *e = entry_add(s, h, key, RP_VIEW_NULL);
        if (e)
            e->expire_us = now_us + (uint64_t)ttl_ms * USEC_PER_MSEC;
        else
            rc = RP_E_NOMEM;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

bool rp_limiter_nonce_seen(struct rp_limiter *l, struct rp_view key, uint64_t now_us)
{
    if (!key_ok(key))
        return false;
    uint64_t h = key_hash(l, key);
    struct lim_stripe *s = stripe_of(&l->nonces, h);
    pthread_mutex_lock(&s->mu);
    bool seen = entry_find(s, h, key, now_us) != NULL;
    pthread_mutex_unlock(&s->mu);
    return seen;
}

int rp_limiter_fail_add(struct rp_limiter *l, struct rp_view key, uint32_t window_ms,
                        uint64_t now_us, uint32_t *count)
{
    *count = 0;
    if (!key_ok(key))
        return RP_E_INVAL;
    uint64_t h = key_hash(l, key);
    struct lim_stripe *s = stripe_of(&l->fails, h);
    int rc = RP_OK;
    pthread_mutex_lock(&s->mu);
    struct lim_entry *e = entry_find(s, h, key, now_us);
    if (!e) {
        if (!make_room(s, now_us, false)) {
            rc = RP_E_TABLE_FULL;
            goto out;
        }
        e = entry_add(s, h, key, RP_VIEW_NULL);
        if (!e) {
            rc = RP_E_NOMEM;
            goto out;
        }
        e->expire_us = now_us + (uint64_t)window_ms * USEC_PER_MSEC;
    }
    e->tat_us++; /* the count */
    *count = e->tat_us > UINT32_MAX ? UINT32_MAX : (uint32_t)e->tat_us;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

bool rp_limiter_fail_locked(struct rp_limiter *l, struct rp_view key, uint32_t max, uint64_t now_us,
                            uint32_t *retry_after_ms)
{
    *retry_after_ms = 0;
    if (!key_ok(key))
        return false;
    uint64_t h = key_hash(l, key);
    struct lim_stripe *s = stripe_of(&l->fails, h);
    pthread_mutex_lock(&s->mu);
    struct lim_entry *e = entry_find(s, h, key, now_us);
    bool locked = e && e->tat_us >= max;
    if (locked) {
        uint64_t ms = (e->expire_us - now_us + USEC_PER_MSEC - 1) / USEC_PER_MSEC;
        *retry_after_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    }
    pthread_mutex_unlock(&s->mu);
    return locked;
}

void rp_limiter_nonce_forget(struct rp_limiter *l, struct rp_view key)
{
    if (!key_ok(key))
        return;
    uint64_t h = key_hash(l, key);
    struct lim_stripe *s = stripe_of(&l->nonces, h);
    pthread_mutex_lock(&s->mu);
    struct lim_entry *e = entry_find(s, h, key, 0);
    if (e)
        entry_remove(s, e);
    pthread_mutex_unlock(&s->mu);
}

static bool owner_is(const struct lim_entry *e, struct rp_view serial)
{
    return e->serlen == serial.len &&
           (serial.len == 0 || memcmp(e->data + e->keylen, serial.p, serial.len) == 0);
}

static void set_state(struct lim_entry *e, const char *state)
{
    size_t n = state ? strlen(state) : 0;
    if (n > RP_LIMITER_STATE_MAX)
        n = RP_LIMITER_STATE_MAX;
    memcpy(e->state, state ? state : "", n);
    e->state[n] = '\0';
}

int rp_limiter_txn(struct rp_limiter *l, struct rp_view txid, struct rp_view serial,
                   enum rp_txn_mode mode, const char *state, uint32_t ttl_ms, uint64_t now_us,
                   bool *created)
{
    *created = false;
    if (!key_ok(txid) || !key_ok(serial))
        return RP_E_INVAL;
    uint64_t h = key_hash(l, txid);
    struct lim_stripe *s = stripe_of(&l->txns, h);
    uint64_t expire = now_us + (uint64_t)ttl_ms * USEC_PER_MSEC;
    int rc = RP_OK;
    pthread_mutex_lock(&s->mu);
    struct lim_entry *e = entry_find(s, h, txid, now_us);
    if (e && !owner_is(e, serial)) {
        rc = RP_E_TXID_IN_USE;
    } else if (!e && mode == RP_TXN_CONTINUE) {
        rc = RP_E_UNKNOWN_TXN;
    } else if (!e && mode == RP_TXN_START) {
        if (!make_room(s, now_us, false)) {
            rc = RP_E_TABLE_FULL;
            goto out;
        }
        e = entry_add(s, h, txid, serial);
        if (!e) {
            rc = RP_E_NOMEM;
            goto out;
        }
        *created = true;
    }
    if (rc == RP_OK && e && mode != RP_TXN_CHECK) {
        set_state(e, state);
        if (expire > e->expire_us) /* lengthened, never shortened (rp_admit_txn_keep) */
            e->expire_us = expire;
    }
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void rp_limiter_txn_forget(struct rp_limiter *l, struct rp_view txid, struct rp_view serial)
{
    if (!key_ok(txid) || !key_ok(serial))
        return;
    uint64_t h = key_hash(l, txid);
    struct lim_stripe *s = stripe_of(&l->txns, h);
    pthread_mutex_lock(&s->mu);
    struct lim_entry *e = entry_find(s, h, txid, 0);
    if (e && owner_is(e, serial))
        entry_remove(s, e);
    pthread_mutex_unlock(&s->mu);
}

static size_t table_count(struct lim_table *t)
{
    size_t n = 0;
    for (unsigned i = 0; i < RP_LIMITER_STRIPES; i++) {
        pthread_mutex_lock(&t->stripes[i].mu);
        n += t->stripes[i].count;
        pthread_mutex_unlock(&t->stripes[i].mu);
    }
    return n;
}

size_t rp_limiter_count(struct rp_limiter *l)
{
    return table_count(&l->buckets) + table_count(&l->nonces) + table_count(&l->txns) +
           table_count(&l->fails);
}
