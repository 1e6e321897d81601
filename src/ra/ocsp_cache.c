/* OCSP response cache: a chained hash table plus an LRU list, under one mutex.
 *
 * Keys are chosen by clients (the serial number in a CertID), but only keys of responses the
 * VA signed get in and their number is capped; the hash is seeded per process so that
 * colliding keys cannot be prepared offline. */
#include "raproxy/ocsp_cache.h"

#include "raproxy/err.h"
#include "raproxy/list.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define MIN_BUCKETS 64u
#define MAX_BUCKETS (1u << 22)
#define HASH_MUL    0x9E3779B97F4A7C15ull

struct entry {
    struct entry *hnext;     /* bucket chain */
    struct rp_list_node lru; /* least recently used first */
    uint64_t hash;
    int64_t expires;
    size_t klen, vlen;
    uint8_t data[]; /* key then value */
};

struct rp_ocsp_cache {
    pthread_mutex_t mu;
    struct entry **buckets;
    size_t nbuckets; /* power of two */
    struct rp_list_node lru;
    size_t count;
    uint32_t max_entries, max_age_s;
    uint64_t seed;
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t hash_key(uint64_t seed, struct rp_view k)
{
    uint64_t h = seed ^ (k.len * HASH_MUL);
    size_t i = 0;
    for (; i + 8 <= k.len; i += 8) {
        uint64_t w;
        memcpy(&w, k.p + i, 8);
        h = mix(h ^ w) * HASH_MUL;
    }
    uint64_t tail = 0;
    for (size_t j = 0; i < k.len; i++, j++)
        tail |= (uint64_t)k.p[i] << (8 * j);
    return mix(h ^ tail);
}

static size_t buckets_for(uint32_t max_entries)
{
    size_t n = MIN_BUCKETS;
    while (n < max_entries && n < MAX_BUCKETS)
        n <<= 1;
    return n;
}

/* The least recently used entry (the next to go), or NULL. */
static struct entry *lru_oldest(struct rp_ocsp_cache *c)
{
    return rp_list_empty(&c->lru) ? NULL : container_of(c->lru.next, struct entry, lru);
}

/* Most recently used: to the end of the list. */
static void lru_touch(struct rp_ocsp_cache *c, struct entry *e)
{
    rp_list_unlink(&e->lru);
    rp_list_push(&c->lru, &e->lru);
}

static void remove_entry(struct rp_ocsp_cache *c, struct entry *e)
{
    struct entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    rp_list_unlink(&e->lru);
    c->count--;
    free(e);
}

static struct entry *find(struct rp_ocsp_cache *c, struct rp_view key, uint64_t h)
{
    for (struct entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->klen == key.len && memcmp(e->data, key.p, key.len) == 0)
            return e;
    return NULL;
}

/* A larger table for a larger cap; keeps the old one when memory is short. */
static void rehash(struct rp_ocsp_cache *c, size_t nbuckets)
{
    struct entry **nb = calloc(nbuckets, sizeof *nb);
    if (!nb)
        return;
    for (size_t i = 0; i < c->nbuckets; i++)
        for (struct entry *e = c->buckets[i], *n; e; e = n) {
            n = e->hnext;
            e->hnext = nb[e->hash & (nbuckets - 1)];
            nb[e->hash & (nbuckets - 1)] = e;
        }
    free(c->buckets);
    c->buckets = nb;
    c->nbuckets = nbuckets;
}

int rp_ocsp_cache_new(struct rp_ocsp_cache **out, uint32_t max_entries, uint32_t max_age_s)
{
    *out = NULL;
    if (max_entries == 0 || max_age_s == 0)
        return RP_E_INVAL;
    struct rp_ocsp_cache *c = calloc(1, sizeof *c);
    if (!c)
        return RP_E_NOMEM;
    rp_list_init(&c->lru);
    c->nbuckets = buckets_for(max_entries);
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return RP_E_NOMEM;
    }
    if (getrandom(&c->seed, sizeof c->seed, 0) != (ssize_t)sizeof c->seed)
        c->seed = (uint64_t)(uintptr_t)c * HASH_MUL; /* no entropy: still per process */
    c->max_entries = max_entries;
    c->max_age_s = max_age_s;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return RP_OK;
}

static void clear_locked(struct rp_ocsp_cache *c)
{
    struct rp_list_node *n, *nx;
    for (RP_LIST_EACH(n, nx, &c->lru))
        free(container_of(n, struct entry, lru));
    memset(c->buckets, 0, c->nbuckets * sizeof *c->buckets);
    rp_list_init(&c->lru);
    c->count = 0;
}

void rp_ocsp_cache_free(struct rp_ocsp_cache *c)
{
    if (!c)
        return;
    clear_locked(c);
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void rp_ocsp_cache_clear(struct rp_ocsp_cache *c)
{
    pthread_mutex_lock(&c->mu);
    clear_locked(c);
    pthread_mutex_unlock(&c->mu);
}

void rp_ocsp_cache_configure(struct rp_ocsp_cache *c, uint32_t max_entries, uint32_t max_age_s)
{
    if (max_entries == 0 || max_age_s == 0)
        return;
    pthread_mutex_lock(&c->mu);
    c->max_entries = max_entries;
    c->max_age_s = max_age_s;
    while (c->count > max_entries)
        remove_entry(c, lru_oldest(c));
    if (buckets_for(max_entries) > c->nbuckets)
        rehash(c, buckets_for(max_entries));
    pthread_mutex_unlock(&c->mu);
}

int rp_ocsp_cache_get(struct rp_ocsp_cache *c, struct rp_view key, int64_t now, struct rp_arena *a,
                      struct rp_view *out)
{
    int rc = 0;
    uint64_t h = hash_key(c->seed, key);
    pthread_mutex_lock(&c->mu);
    struct entry *e = find(c, key, h);
    if (e && e->expires <= now) {
        remove_entry(c, e);
        e = NULL;
    }
    if (e) {
        void *copy = rp_arena_dup(a, e->data + e->klen, e->vlen);
        if (!copy) {
            rc = RP_E_ARENA;
        } else {
            *out = rp_view_make(copy, e->vlen);
            lru_touch(c, e);
            rc = 1;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int rp_ocsp_cache_put(struct rp_ocsp_cache *c, struct rp_view key, struct rp_view value,
                      int64_t next_update, int64_t now)
{
    if (key.len == 0 || key.len > RP_OCSP_CACHE_MAX_KEY || value.len > RP_OCSP_CACHE_MAX_VALUE)
        return 0;
    struct entry *e = malloc(sizeof *e + key.len + value.len);
    if (!e)
        return RP_E_NOMEM;
    memcpy(e->data, key.p, key.len);
    memcpy(e->data + key.len, value.p, value.len);
    e->klen = key.len;
    e->vlen = value.len;
    e->hash = hash_key(c->seed, key);
    pthread_mutex_lock(&c->mu);
    int64_t cap = now + (int64_t)c->max_age_s;
    e->expires = next_update < cap ? next_update : cap;
    if (e->expires <= now) {
        pthread_mutex_unlock(&c->mu);
        free(e);
        return 0;
    }
    struct entry *old = find(c, key, e->hash);
    if (old)
        remove_entry(c, old);
    while (c->count >= c->max_entries && !rp_list_empty(&c->lru))
        remove_entry(c, lru_oldest(c));
    struct entry **b = &c->buckets[e->hash & (c->nbuckets - 1)];
    e->hnext = *b;
    *b = e;
    rp_list_push(&c->lru, &e->lru);
    c->count++;
    pthread_mutex_unlock(&c->mu);
    return 1;
}

size_t rp_ocsp_cache_count(struct rp_ocsp_cache *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->count;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static pthread_mutex_t g_shared_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rp_ocsp_cache *g_shared;

struct rp_ocsp_cache *rp_ocsp_cache_shared(uint32_t max_entries, uint32_t max_age_s)
{
    pthread_mutex_lock(&g_shared_mu);
    if (!g_shared)
        rp_ocsp_cache_new(&g_shared, max_entries, max_age_s);
    else if (g_shared->max_entries != max_entries || g_shared->max_age_s != max_age_s)
        rp_ocsp_cache_configure(g_shared, max_entries, max_age_s);
    struct rp_ocsp_cache *c = g_shared;
    pthread_mutex_unlock(&g_shared_mu);
    return c;
}
