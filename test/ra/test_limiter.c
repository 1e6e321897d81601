/* In-process limiter: GCRA, replay cache, transaction table, bounds, threads. Time is passed
 * explicitly, so every expectation is exact. */
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/limiter.h"

#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>

#define T0       1000000000ull /* µs; any start will do */
#define MS       1000ull
#define PER_S(n) (1000000ull / (n)) /* emission interval of n per second, µs */
#define THREADS  4
#define OPS      20000

static struct rp_limiter *mk(uint32_t buckets, uint32_t nonces, uint32_t txns)
{
    struct rp_limiter *l;
    struct rp_limiter_opts o = {
        .max_buckets = buckets, .max_nonces = nonces, .max_txns = txns, .max_fails = 256};
    cr_assert_eq(rp_limiter_new(&l, &o), RP_OK);
    return l;
}

Test(limiter, burst_then_refused_with_retry_after)
{
    struct rp_limiter *l = mk(0, 0, 0);
    struct rp_view k = rp_view_str("ip:192.0.2.1");
    uint32_t retry;
    for (int i = 0; i < 5; i++)
        cr_assert_eq(rp_limiter_take(l, k, PER_S(10), 5, T0, &retry), RP_OK, "request %d", i);
    cr_assert_eq(rp_limiter_take(l, k, PER_S(10), 5, T0, &retry), RP_E_RATE_LIMITED);
    cr_assert_eq(retry, 100, "one emission interval at 10/s");
    /* refusals do not charge: still 100 ms */
    cr_assert_eq(rp_limiter_take(l, k, PER_S(10), 5, T0 + 40 * MS, &retry), RP_E_RATE_LIMITED);
    cr_assert_eq(retry, 60);
    cr_assert_eq(rp_limiter_take(l, k, PER_S(10), 5, T0 + 100 * MS, &retry), RP_OK);
    cr_assert_eq(rp_limiter_take(l, k, PER_S(10), 5, T0 + 100 * MS, &retry), RP_E_RATE_LIMITED);
    /* idle for a full burst: all of it is back */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(rp_limiter_take(l, k, PER_S(10), 5, T0 + 1000 * MS, &retry), RP_OK);
    /* other keys are independent; interval 0 is unlimited */
    cr_assert_eq(rp_limiter_take(l, rp_view_str("ip:192.0.2.2"), PER_S(10), 5, T0, &retry), RP_OK);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(rp_limiter_take(l, k, 0, 0, T0, &retry), RP_OK);
    rp_limiter_free(l);
}

Test(limiter, burst_defaults_to_rate_and_refund_gives_back)
{
    struct rp_limiter *l = mk(0, 0, 0);
    struct rp_view k = rp_view_str("dom:m");
    uint32_t retry, b = rp_gcra_burst(3, 0);
    cr_assert_eq(b, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rp_limiter_take(l, k, PER_S(3), b, T0, &retry), RP_OK);
    cr_assert_eq(rp_limiter_take(l, k, PER_S(3), b, T0, &retry), RP_E_RATE_LIMITED);
    rp_limiter_refund(l, k, PER_S(3), T0);
    cr_assert_eq(rp_limiter_take(l, k, PER_S(3), b, T0, &retry), RP_OK);
    cr_assert_eq(rp_limiter_take(l, k, PER_S(3), b, T0, &retry), RP_E_RATE_LIMITED);
    rp_limiter_free(l);
}

/* "3/day burst 3" (per_device: a certificate quota): three at once, then one every 8 h. */
Test(limiter, a_daily_quota_refills_one_every_eight_hours)
{
    struct rp_limiter *l = mk(0, 0, 0);
    const struct rp_cfg_limit q = {.rate = 3, .burst = 3, .period_s = RP_CFG_PER_DAY};
    uint64_t t = rp_cfg_limit_interval_us(&q), hour = 3600ull * 1000 * MS;
    cr_assert_eq(t, 8 * hour);
    struct rp_view k = rp_view_str("dev:m:SN1");
    uint32_t retry;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rp_limiter_take(l, k, t, q.burst, T0, &retry), RP_OK, "request %d", i);
    cr_assert_eq(rp_limiter_take(l, k, t, q.burst, T0, &retry), RP_E_RATE_LIMITED);
    cr_assert_eq(retry, 8u * 3600u * 1000u, "the next one in 8 h");
    cr_assert_eq(rp_limiter_take(l, k, t, q.burst, T0 + 7 * hour, &retry), RP_E_RATE_LIMITED);
    cr_assert_eq(retry, 3600u * 1000u);
    cr_assert_eq(rp_limiter_take(l, k, t, q.burst, T0 + 8 * hour, &retry), RP_OK);
    cr_assert_eq(rp_limiter_take(l, k, t, q.burst, T0 + 8 * hour, &retry), RP_E_RATE_LIMITED);
    /* the same count per minute and per hour are other intervals */
    const struct rp_cfg_limit m = {.rate = 3, .period_s = RP_CFG_PER_MIN};
    const struct rp_cfg_limit h = {.rate = 3, .period_s = RP_CFG_PER_H};
    cr_assert_eq(rp_cfg_limit_interval_us(&m), 20000 * MS);
    cr_assert_eq(rp_cfg_limit_interval_us(&h), 1200000 * MS);
    rp_limiter_free(l);
}

Test(limiter, nonce_is_refused_the_second_time_until_it_expires)
{
    struct rp_limiter *l = mk(0, 0, 0);
    struct rp_view n = rp_view_str("dev:m:SN1:00112233");
    cr_assert_eq(rp_limiter_nonce(l, n, 600000, T0), RP_OK);
    cr_assert_eq(rp_limiter_nonce(l, n, 600000, T0 + 1), RP_E_BAD_SENDER_NONCE);
    cr_assert_eq(rp_limiter_nonce(l, n, 600000, T0 + 599999 * MS), RP_E_BAD_SENDER_NONCE);
    cr_assert_eq(rp_limiter_nonce(l, n, 600000, T0 + 600000 * MS), RP_OK);
    rp_limiter_nonce_forget(l, n);
    cr_assert_eq(rp_limiter_nonce(l, n, 600000, T0 + 600001 * MS), RP_OK);
    rp_limiter_free(l);
}

Test(limiter, transactions_belong_to_one_device)
{
    struct rp_limiter *l = mk(0, 0, 0);
    struct rp_view tx = rp_view_str("0123456789abcdef");
    struct rp_view a = rp_view_str("SN-A"), b = rp_view_str("SN-B");
    bool created;
    uint32_t ttl = 60000;
    cr_assert_eq(rp_limiter_txn(l, tx, a, RP_TXN_CONTINUE, "certConf", ttl, T0, &created),
                 RP_E_UNKNOWN_TXN);
    cr_assert_eq(rp_limiter_txn(l, tx, a, RP_TXN_CHECK, "error", ttl, T0, &created), RP_OK);
    cr_assert_not(created);
    cr_assert_eq(rp_limiter_txn(l, tx, a, RP_TXN_START, "ir", ttl, T0, &created), RP_OK);
    cr_assert(created);
    cr_assert_eq(rp_limiter_txn(l, tx, a, RP_TXN_START, "ir", ttl, T0, &created), RP_OK);
    cr_assert_not(created, "a retransmitted ir continues its own transaction");
    cr_assert_eq(rp_limiter_txn(l, tx, b, RP_TXN_START, "ir", ttl, T0, &created), RP_E_TXID_IN_USE);
    cr_assert_eq(rp_limiter_txn(l, tx, b, RP_TXN_CONTINUE, "certConf", ttl, T0, &created),
                 RP_E_TXID_IN_USE);
    cr_assert_eq(rp_limiter_txn(l, tx, a, RP_TXN_CONTINUE, "certConf", ttl, T0, &created), RP_OK);
    /* the TTL runs from the last use */
    cr_assert_eq(
        rp_limiter_txn(l, tx, a, RP_TXN_CONTINUE, "pollReq", ttl, T0 + 50000 * MS, &created),
        RP_OK);
    cr_assert_eq(rp_limiter_txn(l, tx, b, RP_TXN_START, "ir", ttl, T0 + 100000 * MS, &created),
                 RP_E_TXID_IN_USE);
    cr_assert_eq(rp_limiter_txn(l, tx, b, RP_TXN_START, "ir", ttl, T0 + 110000 * MS, &created),
                 RP_OK, "expired transactions are forgotten");
    rp_limiter_txn_forget(l, tx, a); /* not the owner: no effect */
    cr_assert_eq(rp_limiter_txn(l, tx, a, RP_TXN_START, "ir", ttl, T0 + 110000 * MS, &created),
                 RP_E_TXID_IN_USE);
    rp_limiter_txn_forget(l, tx, b);
    cr_assert_eq(rp_limiter_txn(l, tx, a, RP_TXN_START, "ir", ttl, T0 + 110000 * MS, &created),
                 RP_OK);
    rp_limiter_free(l);
}

Test(limiter, memory_is_bounded)
{
    /* 4 entries per stripe per table */
    struct rp_limiter *l = mk(256, 256, 256);
    uint32_t retry;
    char key[32];
    int full = 0;
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        struct rp_view k = rp_view_make(key, (size_t)n);
        cr_assert_eq(rp_limiter_take(l, k, PER_S(1), 1, T0, &retry), RP_OK); /* buckets evict */
        int rc = rp_limiter_nonce(l, k, 1000, T0);
        cr_assert(rc == RP_OK || rc == RP_E_TABLE_FULL);
        full += rc == RP_E_TABLE_FULL;
    }
    cr_assert_leq(rp_limiter_count(l), 3 * 256);
    cr_expect_geq(full, 100000 - 256);
    /* expired entries go without eviction pressure too */
    bool created;
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(key, sizeof key, "t%d", i);
        cr_assert_eq(rp_limiter_txn(l, rp_view_make(key, (size_t)n), rp_view_str("s"), RP_TXN_START,
                                    "ir", 1, T0 + (uint64_t)i * 10 * MS, &created),
                     RP_OK);
    }
    cr_assert_leq(rp_limiter_count(l), 3 * 256);
    cr_assert_eq(
        rp_limiter_take(l, rp_view_make(key, RP_LIMITER_MAX_KEY + 1), PER_S(1), 1, T0, &retry),
        RP_E_INVAL);
    rp_limiter_free(l);
}

/* Keys whose entries land in the stripe of keys[0]: with one nonce per stripe and only keys[0]
 * kept, a nonce that finds its stripe full shares keys[0]'s (stripes come from the key's hash, the
 * same in every table of one limiter, and its seed is per process). */
static void same_stripe_keys(struct rp_limiter *probe, char keys[][16], int n)
{
    snprintf(keys[0], sizeof keys[0], "k0");
    cr_assert_eq(rp_limiter_nonce(probe, rp_view_str(keys[0]), 60000, T0), RP_OK);
    int found = 1;
    for (int i = 1; found < n && i < 100000; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        int rc = rp_limiter_nonce(probe, rp_view_str(k), 60000, T0);
        if (rc == RP_E_TABLE_FULL)
            snprintf(keys[found++], sizeof keys[0], "%s", k);
        else
            rp_limiter_nonce_forget(probe, rp_view_str(k)); /* its stripe stays empty */
    }
    cr_assert_eq(found, n, "no %d keys share a stripe", n);
}

/* A full bucket stripe evicts its least recently used bucket, and a use (even a refused one)
 * makes a bucket recent: the bucket evicted is the one idle longest, not the oldest. */
Test(limiter, a_full_bucket_stripe_evicts_the_least_recently_used)
{
    /* 3 buckets and 1 nonce per stripe */
    struct rp_limiter *l = mk(3 * RP_LIMITER_STRIPES, RP_LIMITER_STRIPES, 0);
    char keys[4][16];
    same_stripe_keys(l, keys, 4);
    struct rp_view a = rp_view_str(keys[0]), b = rp_view_str(keys[1]), c = rp_view_str(keys[2]),
                   d = rp_view_str(keys[3]);
    uint32_t retry;
    const uint64_t t = PER_S(1);
    cr_assert_eq(rp_limiter_take(l, a, t, 1, T0, &retry), RP_OK);
    cr_assert_eq(rp_limiter_take(l, b, t, 1, T0, &retry), RP_OK);
    cr_assert_eq(rp_limiter_take(l, c, t, 1, T0, &retry), RP_OK);
    /* a, the oldest, is used again (refused): b is now the least recently used */
    cr_assert_eq(rp_limiter_take(l, a, t, 1, T0, &retry), RP_E_RATE_LIMITED);
    cr_assert_eq(rp_limiter_take(l, d, t, 1, T0, &retry), RP_OK, "a fourth bucket evicts one");
    /* a and c kept their spent burst; b was forgotten and gets a fresh one */
    cr_assert_eq(rp_limiter_take(l, a, t, 1, T0, &retry), RP_E_RATE_LIMITED, "a was evicted");
    cr_assert_eq(rp_limiter_take(l, c, t, 1, T0, &retry), RP_E_RATE_LIMITED, "c was evicted");
    cr_assert_eq(rp_limiter_take(l, b, t, 1, T0, &retry), RP_OK, "b was kept");
    rp_limiter_free(l);
}

/* The review: a full table evicted live nonces and transactions, so a message could be
 * replayed or a transaction taken over by flooding the table first. Now a full table
 * refuses new work and forgets nothing that is still live. */
Test(limiter, full_replay_and_transaction_tables_refuse_instead_of_evicting)
{
    struct rp_limiter *l = mk(256, 256, 256);
    char key[32];
    int kept = 0;
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(key, sizeof key, "n%d", i);
        if (rp_limiter_nonce(l, rp_view_make(key, (size_t)n), 60000, T0) == RP_OK)
            kept++;
    }
    cr_assert_geq(kept, 1);
    /* every nonce that was accepted is still a replay, however full the table is */
    int replays = 0;
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(key, sizeof key, "n%d", i);
        replays +=
            rp_limiter_nonce(l, rp_view_make(key, (size_t)n), 60000, T0) == RP_E_BAD_SENDER_NONCE;
    }
    cr_expect_eq(replays, kept);
    /* once they expire there is room again */
    cr_expect_eq(rp_limiter_nonce(l, rp_view_str("fresh"), 60000, T0 + 61000 * MS), RP_OK);

    bool created;
    int owned = 0, refused = 0;
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(key, sizeof key, "x%d", i);
        int rc = rp_limiter_txn(l, rp_view_make(key, (size_t)n), rp_view_str("dev-a"), RP_TXN_START,
                                "ir", 60000, T0, &created);
        owned += rc == RP_OK;
        refused += rc == RP_E_TABLE_FULL;
    }
    cr_assert_eq(owned + refused, 10000);
    cr_assert_geq(refused, 1);
    /* no transaction of dev-a can be taken by dev-b by flooding the table */
    int stolen = 0;
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(key, sizeof key, "x%d", i);
        stolen += rp_limiter_txn(l, rp_view_make(key, (size_t)n), rp_view_str("dev-b"),
                                 RP_TXN_CONTINUE, "certConf", 60000, T0, &created) == RP_OK;
    }
    cr_expect_eq(stolen, 0);
    rp_limiter_free(l);
}

struct hammer {
    struct rp_limiter *l;
    int id;
    int admitted;
    int nonces_new;
};

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    uint32_t retry;
    char key[32];
    for (int i = 0; i < OPS; i++) {
        /* one hot bucket shared by every thread, plus a private one */
        if (rp_limiter_take(h->l, rp_view_str("glob"), PER_S(1000), 1000, T0, &retry) == RP_OK)
            h->admitted++;
        int n = snprintf(key, sizeof key, "own%d:%d", h->id, i % 64);
        rp_limiter_take(h->l, rp_view_make(key, (size_t)n), PER_S(1), 1, T0, &retry);
        /* every thread offers the same 5000 nonces: each must be accepted exactly once */
        n = snprintf(key, sizeof key, "n%d", i % 5000);
        if (rp_limiter_nonce(h->l, rp_view_make(key, (size_t)n), 60000, T0) == RP_OK)
            h->nonces_new++;
    }
    return NULL;
}

Test(limiter, threads_share_one_budget_exactly, .timeout = 60)
{
    struct rp_limiter *l = mk(0, 0, 0);
    pthread_t th[THREADS];
    struct hammer h[THREADS];
    for (int i = 0; i < THREADS; i++) {
        h[i] = (struct hammer){.l = l, .id = i};
        cr_assert_eq(pthread_create(&th[i], NULL, hammer_thread, &h[i]), 0);
    }
    int admitted = 0, nonces = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        admitted += h[i].admitted;
        nonces += h[i].nonces_new;
    }
    cr_assert_eq(admitted, 1000, "burst of the shared bucket, at one instant");
    cr_assert_eq(nonces, 5000);
    rp_limiter_free(l);
}
