/* In-process limiter, replay cache and transaction table: what admission uses without Redis
 * and, with on_redis_failure: open, while Redis is unreachable. One instance per process,
 * shared by every loop thread.
 *
 * Concurrency: each table is split into RP_LIMITER_STRIPES stripes, each a hash table behind
 * its own mutex; an operation locks exactly one stripe, so there is no lock order to keep.
 * Memory is bounded: each table holds at most its configured number of entries. Expired
 * entries are dropped when met and from the least-recently-used end on every insert. When
 * the rate-bucket table is full its least recently used bucket is evicted (that client gets
 * a fresh burst: refusing instead would let one client with many addresses lock everyone
 * out). The nonce and transaction tables never evict a live entry — that would let a
 * message be replayed or a transaction be taken over — so when they are full a new nonce or
 * transaction is refused with RP_E_TABLE_FULL (counted in raproxy_admit_table_full_total)
 * until entries expire. Size them for the traffic of one replay window.
 *
 * GCRA, identical to the Redis scripts: emission interval T = period / rate (a limit of
 * "3/day" has T = 8 h: see rp_cfg_limit_interval_us); a request is admitted when, after adding T to
 * the theoretical arrival time (TAT), TAT - burst·T <= now; otherwise it is refused with
 * retry_after = TAT + T - burst·T - now. So `burst` requests pass at once, and the next one after
 * another T. Times are monotonic microseconds from the caller (rp_clock_ns() / 1000), which keeps
 * tests deterministic. */
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
#define RP_LIMITER_DEF_FAILS   65536u
#define RP_LIMITER_MAX_KEY     512u /* bytes; longer keys are refused with RP_E_INVAL */
#define RP_LIMITER_STATE_MAX   15u  /* transaction state name, e.g. "certConf" */
#define RP_USEC_PER_SEC        1000000ull

struct rp_limiter;

struct rp_limiter_opts {
    uint32_t max_buckets; /* 0 = default */
    uint32_t max_nonces;
    uint32_t max_txns;
    uint32_t max_fails; /* failure counters (MAC lock-out) */
};

/* What a request may do with a transactionID. */
enum rp_txn_mode {
    RP_TXN_START,    /* ir, cr, p10cr, kur, rr, genm: create, or continue one we own */
    RP_TXN_CONTINUE, /* certConf, pollReq: must continue a known transaction we own */
    RP_TXN_CHECK,    /* error and the rest: only refuse someone else's transaction */
};

int rp_limiter_new(struct rp_limiter **out, const struct rp_limiter_opts *o);
void rp_limiter_free(struct rp_limiter *l);

/* burst 0 means "same as rate" (the config default); never below 1. */
uint32_t rp_gcra_burst(uint32_t rate, uint32_t burst);

/* One request against bucket `key` with emission interval interval_us (one request per
 * interval, `burst` at once; rp_cfg_limit_interval_us() of a configured limit). RP_OK, or
 * RP_E_RATE_LIMITED with *retry_after_ms (≥ 1). interval 0 = unlimited (always RP_OK,
 * nothing stored); burst 0 counts as 1. */
int rp_limiter_take(struct rp_limiter *l, struct rp_view key, uint64_t interval_us, uint32_t burst,
                    uint64_t now_us, uint32_t *retry_after_ms);
/* Give one request back (a request admitted here but refused by another limit). */
void rp_limiter_refund(struct rp_limiter *l, struct rp_view key, uint64_t interval_us,
                       uint64_t now_us);

/* RP_OK the first time `key` is seen within ttl_ms, RP_E_BAD_SENDER_NONCE after that,
 * RP_E_TABLE_FULL when the table holds only live nonces. */
int rp_limiter_nonce(struct rp_limiter *l, struct rp_view key, uint32_t ttl_ms, uint64_t now_us);
void rp_limiter_nonce_forget(struct rp_limiter *l, struct rp_view key);

/* Transaction table: txid -> (serial, state), expiring ttl_ms after the last use.
 * RP_OK (with *created when this call made the entry), RP_E_TXID_IN_USE when another serial
 * owns it, RP_E_UNKNOWN_TXN for RP_TXN_CONTINUE on an unknown txid, RP_E_TABLE_FULL when a
 * new transaction finds the table full of live ones. */
int rp_limiter_txn(struct rp_limiter *l, struct rp_view txid, struct rp_view serial,
                   enum rp_txn_mode mode, const char *state, uint32_t ttl_ms, uint64_t now_us,
                   bool *created);
/* Forget txid if `serial` owns it (undo of a creation whose request was refused). */
void rp_limiter_txn_forget(struct rp_limiter *l, struct rp_view txid, struct rp_view serial);

/* Failure counters (MAC lock-out): a fixed window that starts with the first failure.
 * rp_limiter_fail_add counts one failure under key and returns the count in the window
 * (RP_E_TABLE_FULL when the table is full of live counters: the failure is not counted).
 * rp_limiter_fail_locked is true while the window's count is at least max; *retry_after_ms
 * tells when it ends. */
int rp_limiter_fail_add(struct rp_limiter *l, struct rp_view key, uint32_t window_ms,
                        uint64_t now_us, uint32_t *count);
bool rp_limiter_fail_locked(struct rp_limiter *l, struct rp_view key, uint32_t max, uint64_t now_us,
                            uint32_t *retry_after_ms);
/* true while key is remembered as a used nonce (nothing is recorded). */
bool rp_limiter_nonce_seen(struct rp_limiter *l, struct rp_view key, uint64_t now_us);

/* Entries currently held (expired ones not yet dropped included): tests and metrics. */
size_t rp_limiter_count(struct rp_limiter *l);

#endif
