/* In-process limiter, replay cache and transaction table: what admission uses without Redis
 * and, with on_redis_failure: open, while Redis is unreachable. One instance per process,
 * shared by every loop thread.
 *
 * Concurrency: each table is split into RP_LIMITER_STRIPES stripes, each a hash table behind
 * its own mutex; an operation locks exactly one stripe, so there is no lock order to keep.
 * Memory is bounded: each table holds at most its configured number of entries. Expired
 * entries are dropped when met and from the least-recently-used end on every insert; when a
 * table is full the least recently used entry is evicted. What eviction costs: a rate bucket
 * forgets its debt (the client gets a fresh burst), a nonce can be replayed once more, a
 * transaction is forgotten (its certConf gets UNKNOWN_TXN). Size the tables for the traffic
 * of one clock-skew window.
 *
 * GCRA, identical to the Redis scripts: emission interval T = 1 s / rate; a request is
 * admitted when, after adding T to the theoretical arrival time (TAT), TAT - burst·T <= now;
 * otherwise it is refused with retry_after = TAT + T - burst·T - now. So `burst` requests pass
 * at once, and the next one after another T. Times are monotonic microseconds from the
 * caller (rp_clock_ns() / 1000), which keeps tests deterministic. */
#ifndef RAPROXY_LIMITER_H
#define RAPROXY_LIMITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raproxy/view.h"

#define RP_LIMITER_STRIPES     64u
#define RP_LIMITER_DEF_BUCKETS 262144u
#define RP_LIMITER_DEF_NONCES  262144u
#define RP_LIMITER_DEF_TXNS    262144u
#define RP_LIMITER_MAX_KEY     512u /* bytes; longer keys are refused with RP_E_INVAL */
#define RP_LIMITER_STATE_MAX   15u  /* transaction state name, e.g. "certConf" */
#define RP_USEC_PER_SEC        1000000ull

struct rp_limiter;

struct rp_limiter_opts {
    uint32_t max_buckets; /* 0 = default */
    uint32_t max_nonces;
    uint32_t max_txns;
};

/* What a request may do with a transactionID. */
enum rp_txn_mode {
    RP_TXN_START,    /* ir, cr, p10cr, kur, rr, genm: create, or continue one we own */
    RP_TXN_CONTINUE, /* certConf, pollReq: must continue a known transaction we own */
    RP_TXN_CHECK,    /* error and the rest: only refuse someone else's transaction */
};

int rp_limiter_new(struct rp_limiter **out, const struct rp_limiter_opts *o);
void rp_limiter_free(struct rp_limiter *l);

/* Emission interval in µs for `rate` per second (at least 1); the Redis scripts get it too. */
uint64_t rp_gcra_interval_us(uint32_t rate);
/* burst 0 means "same as rate" (the config default); never below 1. */
uint32_t rp_gcra_burst(uint32_t rate, uint32_t burst);

/* One request against bucket `key`. RP_OK, or RP_E_RATE_LIMITED with *retry_after_ms (≥ 1).
 * rate 0 = unlimited (always RP_OK, nothing stored). */
int rp_limiter_take(struct rp_limiter *l, struct rp_view key, uint32_t rate, uint32_t burst,
                    uint64_t now_us, uint32_t *retry_after_ms);
/* Give one request back (a request admitted here but refused by another limit). */
void rp_limiter_refund(struct rp_limiter *l, struct rp_view key, uint32_t rate, uint64_t now_us);

/* RP_OK the first time `key` is seen within ttl_ms, RP_E_BAD_SENDER_NONCE after that. */
int rp_limiter_nonce(struct rp_limiter *l, struct rp_view key, uint32_t ttl_ms, uint64_t now_us);
void rp_limiter_nonce_forget(struct rp_limiter *l, struct rp_view key);

/* Transaction table: txid -> (serial, state), expiring ttl_ms after the last use.
 * RP_OK (with *created when this call made the entry), RP_E_TXID_IN_USE when another serial
 * owns it, RP_E_UNKNOWN_TXN for RP_TXN_CONTINUE on an unknown txid. */
int rp_limiter_txn(struct rp_limiter *l, struct rp_view txid, struct rp_view serial,
                   enum rp_txn_mode mode, const char *state, uint32_t ttl_ms, uint64_t now_us,
                   bool *created);
/* Forget txid if `serial` owns it (undo of a creation whose request was refused). */
void rp_limiter_txn_forget(struct rp_limiter *l, struct rp_view txid, struct rp_view serial);

/* Entries currently held (expired ones not yet dropped included): tests and metrics. */
size_t rp_limiter_count(struct rp_limiter *l);

#endif
