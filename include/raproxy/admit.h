/* Admission: who may go on, decided with one Redis round trip per step (DESIGN.md "One
 * exchange", steps 5 and 6), or in process without Redis.
 *
 * Two calls per request, one after the CA answered:
 * - rp_admit_start, before any crypto: GCRA with burst on the global, per-domain and
 *   per-client-address buckets.
 * - rp_admit_after_verify, once the signature holds (forged traffic cannot drain a real
 *   device's budget or burn its nonces): per-device quota by identity (requests that open
 *   a transaction only), senderNonce
 *   replay, transaction state, and the Redis allowlist.
 * - rp_admit_on_issued, after the CA answered: settles the claim rp_admit_after_verify
 *   made with allowlist_consume (consumed when a certificate was issued, given back when the
 *   CA refused or never answered, kept while the CA says waiting).
 *
 * Callbacks: every call fires its callback exactly once — with the decision, RP_E_SHUTDOWN
 * when the Redis client closes, RP_E_NOMEM/RP_E_INVAL on bad input. It may fire BEFORE the
 * call returns (in-process decision, Redis refused the command at once): call these last in
 * a pipeline step. Callbacks run on the calling loop's thread.
 *
 * Redis keys (P = key prefix, default RP_REDIS_DEFAULT_PREFIX; it must not contain braces):
 *   P rl:{glob}                 global bucket (string: TAT in µs of Redis TIME)
 *   P rl:{dom:<D>}              per-domain bucket
 *   P rl:{ip:<addr>}:<D>        per-client-address bucket, per domain
 *   P rl:{dev:<D>:<serial>}     per-device quota
 *   P nonce:{dev:<D>:<serial>}:<hex nonce>   replay marker, PX = rp_admit_nonce_ttl_s()
 *   P txn:{txn:<hex txid>}      hash s=<serial> st=<body of last request>, PX = txn TTL
 *   P allow:{dom:<D>}           set of allowed serials (raproxy allowlist import)
 *   P claim:{dom:<D>}:<serial>  allowlist_consume: the transaction (hex txid) that claimed
 *                               the serial, PX = txn TTL; the serial is out of the set while
 *                               claimed, and stays out once consumed
 *   P mac:{mac:<D>:<hex kid>}   failed MACs of a kid in its lock-out window (PX = window)
 *
 * Redis Cluster. A script may only touch keys of one hash slot, and the three buckets of
 * rp_admit_start live in three slots (a per-address key cannot share the global key's slot
 * without putting all traffic on one shard). So each bucket is its own EVALSHA of the same
 * GCRA script, all sent back to back: hiredis pipelines them, the request still costs one
 * round trip. The decision is consistent: admitted only when every bucket admitted; when one
 * refused, the buckets that did charge are refunded with a fire-and-forget script. The cost:
 * between the charge and the refund another request can see those buckets a little fuller
 * (never emptier) than they are, so a refusal can be stricter than exact, never looser; and
 * the global key is one hot key on one shard. Time comes from Redis TIME, so every replica
 * shares one clock and one budget (no per-replica division). rp_admit_after_verify works the
 * same way with up to three slots ({dev:…}: quota + nonce atomically; {txn:…}; {dom:…}: the
 * allowlist), undoing the nonce/quota and a newly created transaction when the overall answer
 * is a refusal, so a device retrying the same message is not refused as a replay.
 *
 * Redis failing (down, timeout, error reply): the domain's on_redis_failure decides. closed:
 * RP_E_SYSTEM_UNAVAIL. open: the same decision by the in-process limiter (res.degraded set).
 * The allowlist never fails open: without Redis it answers RP_E_SYSTEM_UNAVAIL.
 *
 * Error-signature budget. Over-limit answers must not cost the RA a signature each, or a
 * flood turns into a signing load. A signed CMP error cannot be cached and replayed to other
 * requests: it must echo their transactionID and nonces. So signing is budgeted instead:
 * rp_admit_may_sign_error() is an in-process token bucket per domain
 * (RP_ADMIT_ERRSIG_RATE per second, burst the same). When it says no, the pipeline answers
 * without a CMP body: HTTP 429 + Retry-After (from retry_after_ms) for RP_E_RATE_LIMITED, or
 * the error's HTTP status (503) for the others. Signatures on refusals are thus bounded to
 * RP_ADMIT_ERRSIG_RATE per domain per process, whatever the offered load. */
#ifndef RAPROXY_ADMIT_H
#define RAPROXY_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raproxy/config.h"
#include "raproxy/limiter.h"
#include "raproxy/view.h"

struct rp_redis;
struct rp_limiter;
struct rp_admit;

#define RP_ADMIT_TXN_TTL_MS  (15u * 60u * 1000u) /* idle transaction, refreshed on each use */
#define RP_ADMIT_ERRSIG_RATE 50u                 /* signed refusals per domain and second */
#define RP_ADMIT_MAX_SERIAL  128u                /* bytes */
#define RP_ADMIT_MAX_ID      64u                 /* transactionID / senderNonce bytes */
#define RP_ADMIT_MAX_NAME    128u                /* domain name, client address */

struct rp_admit_opts {
    struct rp_redis *redis;     /* this loop's client; NULL = in-process only */
    struct rp_limiter *limiter; /* the process-wide one; required */
    const char *key_prefix;     /* NULL = the Redis client's prefix */
    uint32_t txn_ttl_ms;        /* 0 = RP_ADMIT_TXN_TTL_MS */
};

struct rp_admit_result {
    int err;                 /* RP_OK, RP_E_RATE_LIMITED, RP_E_BAD_SENDER_NONCE, … */
    uint32_t retry_after_ms; /* RP_E_RATE_LIMITED: earliest useful retry (≥ 1) */
    const char *limit;       /* RP_E_RATE_LIMITED: "per_ip", "domain", "global", "per_device" */
    bool degraded;           /* decided in process because Redis failed (fail-open) */
    bool claimed;            /* allowlist_consume: this request claimed the serial (not a
                                retry or a poll of the transaction that holds it) */
};

typedef void (*rp_admit_fn)(void *arg, const struct rp_admit_result *res);

/* Step 5. `limits` rate 0 disables that bucket. */
struct rp_admit_in {
    const char *domain;
    const char *client_addr; /* "192.0.2.1", "2001:db8::1" */
    const struct rp_cfg_limits *limits;
    enum rp_redis_failure on_redis_failure;
    /* MAC-protected requests (mac_kid present): before any hashing, a kid locked out by
     * rp_admit_mac_failed is refused (RP_E_MAC_LOCKED, retry_after_ms = rest of the
     * window), and so is a senderNonce the kid's identity already used
     * (RP_E_BAD_SENDER_NONCE; nothing is recorded here). */
    struct rp_view mac_kid;
    struct rp_view mac_serial; /* the identity the kid stands for */
    struct rp_view nonce;
    uint32_t mac_lockout_failures; /* 0: no lock-out check */
};

/* A MAC did not verify: one more failure for the kid, in a window of window_s seconds from
 * the first. The failure that reaches `failures` logs the lock-out once and counts it in
 * raproxy_mac_lockouts_total. Fire and forget (in process when Redis fails). */
struct rp_admit_mac_fail_in {
    const char *domain;
    struct rp_view kid;
    uint32_t failures, window_s;
    enum rp_redis_failure on_redis_failure;
};

/* Step 6, after the signature holds. */
struct rp_admit_verified_in {
    const char *domain;
    struct rp_view serial; /* vendor serial (or the subject's serialNumber) */
    struct rp_view txid;
    struct rp_view nonce; /* senderNonce */
    const char *body;     /* "ir", "cr", "p10cr", "kur", "rr", "genm", "certConf", "pollReq", … */
    /* per_device is used, for the bodies that open a transaction (rp_admit_txn_mode
     * RP_TXN_START): certConf, pollReq and error are not charged */
    const struct rp_cfg_limits *limits;
    /* how long the nonce is remembered: as long as a message carrying it could still be
     * accepted (rp_admit_nonce_ttl_s); 0 = 2 · RP_DEF_MAX_CLOCK_SKEW */
    uint32_t nonce_ttl_s;
    bool allowlist_redis; /* check SISMEMBER P allow:{dom:<D>} serial */
    /* with allowlist_redis: claim the serial for this transaction in the same script that
     * checks it (rp_admit_lua_claim): of concurrent requests of one serial exactly one
     * passes; a later request of the same transaction (a retry) passes again */
    bool allowlist_consume;
    enum rp_redis_failure on_redis_failure;
};

/* What became of a claimed serial once the CA answered. */
enum rp_admit_settle {
    RP_ADMIT_CONSUME, /* a certificate was issued: the serial stays off the allowlist */
    RP_ADMIT_RELEASE, /* the CA refused, or never answered: the serial goes back */
    RP_ADMIT_KEEP,    /* the CA said waiting: the claim lives on for the polls */
};

/* After the CA answered a request whose transaction claimed `serial`. */
struct rp_admit_issued_in {
    const char *domain;
    struct rp_view serial;
    struct rp_view txid;
    enum rp_admit_settle settle;
    uint32_t keep_ms; /* RP_ADMIT_KEEP: how long the claim lives on; 0 = the txn TTL (a
                         request waiting for the CA with delayed delivery needs longer) */
};

/* A transaction that waits for the CA (delayed delivery) stays its owner's as long as its
 * delayed record: the transaction's entry lives at least ttl_ms from now. Entries are only
 * ever lengthened, so the idle TTL a later message of the transaction refreshes does not
 * shorten it. Nothing is created for a transaction not known. Fire and forget (in process
 * when Redis fails). */
struct rp_admit_txn_keep_in {
    struct rp_view serial; /* the owner, as in rp_admit_verified_in */
    struct rp_view txid;
    const char *body;
    uint32_t ttl_ms;
};

int rp_admit_new(struct rp_admit **out, const struct rp_admit_opts *o);
/* Only with no call pending (close the Redis client first: that fires them all). */
void rp_admit_free(struct rp_admit *a);

void rp_admit_start(struct rp_admit *a, const struct rp_admit_in *in, rp_admit_fn cb, void *arg);
void rp_admit_after_verify(struct rp_admit *a, const struct rp_admit_verified_in *in,
                           rp_admit_fn cb, void *arg);
void rp_admit_on_issued(struct rp_admit *a, const struct rp_admit_issued_in *in, rp_admit_fn cb,
                        void *arg);

/* May the pipeline spend a signature on a CMP error for this domain now? (see above) */
bool rp_admit_may_sign_error(struct rp_admit *a, const char *domain);

void rp_admit_txn_keep(struct rp_admit *a, const struct rp_admit_txn_keep_in *in);

void rp_admit_mac_failed(struct rp_admit *a, const struct rp_admit_mac_fail_in *in);

/* prefix + "allow:{dom:<domain>}" into buf; the length, or RP_E_INVAL when it does not fit.
 * Used by admission and by `raproxy allowlist`. */
int rp_admit_allowlist_key(char *buf, size_t cap, const char *prefix, const char *domain);

/* How long a senderNonce must be remembered. With messageTime M a message is accepted
 * while |M - now| <= skew (whole seconds), so from its first acceptance for at most
 * 2 · skew + 1 s more; a margin of one more second covers rounding. Without messageTime
 * (only when a domain does not require it) it could be accepted forever: replay_window_s
 * is the documented limit of that protection. */
uint32_t rp_admit_nonce_ttl_s(bool has_message_time, uint32_t max_clock_skew_s,
                              uint32_t replay_window_s);

/* What a body type may do with its transactionID. */
enum rp_txn_mode rp_admit_txn_mode(const char *body);

/* The Lua scripts (admit_lua.c); ARGV/KEYS documented there. */
extern const char rp_admit_lua_gcra[];
extern const char rp_admit_lua_gcra_refund[];
extern const char rp_admit_lua_device[];
extern const char rp_admit_lua_device_undo[];
extern const char rp_admit_lua_txn[];
extern const char rp_admit_lua_txn_undo[];
extern const char rp_admit_lua_mac_lock[];
extern const char rp_admit_lua_mac_fail[];
extern const char rp_admit_lua_claim[];
extern const char rp_admit_lua_settle[];

#endif
