/* Delayed delivery and the CA's budget (README "Delayed delivery"; RFC 9483 §4.4, §5.1.5).
 *
 * The store (deliver_store.c) keeps, in Redis when configured (every replica shares it) or
 * in process (one replica), what the CA has not answered yet:
 * - the CA's budget: requests that open a transaction at the CA at once (max_in_flight, as
 *   leases that expire, so the share of a killed replica comes back) and per unit of time
 *   (upstream.rate, GCRA);
 * - which device identity has a certificate request in progress (duplicate suppression);
 * - the queue of requests waiting for room at the CA, oldest first, and for each waiting
 *   transaction a record: the device's request, then the CA's answer for its polls.
 *
 * A record moves through enum ra_dd_state: QUEUED -> SENDING (one dispatcher claimed it:
 * from here it may have reached the CA and is never sent again) -> ANSWERED | LOST (sent,
 * no usable answer; or its dispatcher died) | FAILED (the CA refused it without an answer
 * for the device) ; QUEUED -> EXPIRED (not sent within max_wait_s); SENDING -> QUEUED only
 * when it was not sent (connect failure before anything was written, HTTP 503).
 *
 * The pipeline side (deliver.c) asks the gate before a request opens a transaction at the
 * CA, answers `waiting` and polls, and runs one dispatcher per loop that sends queued
 * requests when the CA has room.
 *
 * Callbacks run on the calling loop's thread, exactly once; the in-process store calls them
 * before the call returns: call these last in a step. Views in a result are valid during
 * the callback only. */
#ifndef RP_RA_DELIVER_H
#define RP_RA_DELIVER_H

#include "raproxy/view.h"

#include "raproxy/loop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rp_redis;
struct rp_loop;
struct rp_snapshot;
struct ra_exchange;
struct ra_loop;

/* A record's state; the numbers are the scripts' codes (deliver_lua.c). */
enum ra_dd_state {
    RA_DD_NONE = 0, /* no record: not a delayed transaction */
    RA_DD_QUEUED,
    RA_DD_SENDING,
    RA_DD_ANSWERED,
    RA_DD_LOST,
    RA_DD_FAILED,
    RA_DD_EXPIRED,
};

/* What the gate decides for a request that opens a transaction. */
enum ra_gate {
    RA_GATE_GO,        /* send it now: a lease (token) is held until its answer */
    RA_GATE_QUEUED,    /* kept for later: answer waiting */
    RA_GATE_JOINED,    /* its transaction is already delayed: see state (a retry) */
    RA_GATE_DUPLICATE, /* the identity has another certificate request in progress */
    RA_GATE_BUSY,      /* no room at the CA and not queueable: systemUnavail, retry_ms */
    RA_GATE_FULL,      /* no room and the queue is full */
    RA_GATE_FOREIGN,   /* its transaction is delayed for another requester (domain or
                          identity differ): transactionIdInUse, nothing changed */
};

enum ra_offer_mode {
    RA_OFFER_DIRECT, /* never queue (delayed delivery off, or a body it does not cover) */
    RA_OFFER_QUEUE,  /* go when there is room and nothing waits, else queue */
    RA_OFFER_FORCE,  /* queue without trying (the CA is known to be down) */
};

/* The CA's budget, from upstream.max_in_flight and upstream.rate. */
struct ra_dd_budget {
    uint32_t max_in_flight; /* 0: unlimited */
    uint64_t interval_us;   /* GCRA emission interval; 0: no rate */
    uint32_t burst;
    uint32_t lease_ms; /* a lease ends by itself after this (a killed replica's share) */
};

/* a lease: "d:<16 hex>:<seq>" sent directly, "q:<hex txid>" dispatched (a txid of up to 64
 * bytes, whole: the scripts name the lease by the full hex) */
#define RA_DD_TOKEN_MAX (2 + 2 * 64 + 1)

struct ra_dd_offer {
    struct rp_view txid;     /* transactionID bytes */
    struct rp_view domain;   /* domain name */
    struct rp_view identity; /* the device identity (README "Identities") */
    enum ra_offer_mode mode;
    bool exclusive; /* one certificate request per identity at a time */
    struct ra_dd_budget budget;
    uint32_t busy_ttl_ms;   /* GO: the identity's marker, should its release never come */
    uint32_t record_ttl_ms; /* a queued record (max_wait_s and the answer's stay) */
    uint32_t max_waiting;
    struct rp_view req;  /* the device's request, kept to be signed and sent later */
    struct rp_view body; /* the body the RA rewrote (template policy), or absent */
};

struct ra_dd_result {
    int err; /* RP_OK, or the store failed (RP_E_REDIS_*, RP_E_NOMEM, RP_E_SHUTDOWN) */
    /* with err: the command was sent and may still run (a deadline passed, the connection
     * went): an offer may yet queue the request. A direct offer that may still run is
     * given back by the store (its lease and marker), which Redis runs after it. */
    bool maybe;
    enum ra_gate gate;
    enum ra_dd_state state; /* JOINED, claim, poll */
    bool foreign;           /* poll: the record belongs to another requester (state NONE) */
    int32_t retry_ms;       /* BUSY and ra_dd_next: -1 for the in-flight limit */
    char token[RA_DD_TOKEN_MAX];
    /* ra_dd_next: the transaction to claim; claim: the record; poll/JOINED: the answer */
    struct rp_view txid, domain, identity, req, body, answer;
};

typedef void (*ra_dd_fn)(void *arg, const struct ra_dd_result *r);

struct ra_dd_mem;
struct ra_dd_store;

/* The in-process store: one per process, shared by the loops (locked). */
int ra_dd_mem_new(struct ra_dd_mem **out);
void ra_dd_mem_free(struct ra_dd_mem *m);

/* Makes a one-shot timer on the Redis client's loop (rp_loop_timer_new). */
typedef int (*ra_dd_timer_new_fn)(void *ctx, rp_loop_timer_fn cb, void *arg,
                                  struct rp_loop_timer **out);

/* One per loop: Redis when `redis` is given (key prefix: the client's), else `mem`.
 * `timer_new(timer_ctx, …)` times the retries of settle and finish (NULL: none). */
int ra_dd_store_new(struct ra_dd_store **out, struct rp_redis *redis, struct ra_dd_mem *mem,
                    ra_dd_timer_new_fn timer_new, void *timer_ctx);
/* Before the Redis client is closed: retries waiting for their turn are dropped. */
void ra_dd_store_close(struct ra_dd_store *s);
/* Only with no call pending (close the Redis client first: that fires them all). */
void ra_dd_store_free(struct ra_dd_store *s);

void ra_dd_offer(struct ra_dd_store *s, const struct ra_dd_offer *in, ra_dd_fn cb, void *arg);
/* A GO request's answer came (or it failed): the lease and the identity's marker go. Fire and
 * forget. */
void ra_dd_release(struct ra_dd_store *s, const char *token, struct rp_view txid,
                   struct rp_view domain, struct rp_view identity);
/* A request the CA did not take (not sent; HTTP 503): a GO one (token = its lease) becomes
 * a queued record from `in`, a dispatched one goes back to the front. gate QUEUED or FULL. */
void ra_dd_requeue(struct ra_dd_store *s, const struct ra_dd_offer *in, const char *token,
                   ra_dd_fn cb, void *arg);
/* A queueing offer or requeue failed with `maybe` (its answer came too late, or the
 * connection went) and its device was answered waiting: make sure the request is queued
 * (`token`: the lease the late offer may have taken). Fire and forget, retried (it is
 * idempotent) a few times over several seconds on a timeout or a lost connection; nothing
 * to do in process, where an offer never times out. */
void ra_dd_settle(struct ra_dd_store *s, const struct ra_dd_offer *in, const char *token);
/* The device of a request just queued could not be told waiting (its answer could not be
 * made): the record goes while it is still QUEUED and its requester's, with the identity's
 * marker, so that it is never sent unseen. state: QUEUED when it was cancelled, else what
 * the record is (SENDING: too late, it goes its way; NONE: no record, or another
 * requester's). */
void ra_dd_cancel(struct ra_dd_store *s, struct rp_view txid, struct rp_view domain,
                  struct rp_view identity, ra_dd_fn cb, void *arg);
/* Dispatcher: the oldest waiting transaction, with a lease and a rate token taken for it;
 * txid absent when none waits (retry_ms 0), or no room (retry_ms -1 or the rate's). */
void ra_dd_next(struct ra_dd_store *s, const struct ra_dd_budget *b, uint32_t reserve_ms,
                ra_dd_fn cb, void *arg);
/* Dispatcher: claim what ra_dd_next gave: state SENDING with the record (req, body, domain,
 * identity; token = its lease), EXPIRED (with domain and identity), or another state when
 * it is not this dispatcher's to send. */
void ra_dd_claim(struct ra_dd_store *s, struct rp_view txid, uint32_t lease_ms,
                 uint32_t max_wait_ms, uint32_t keep_ms, ra_dd_fn cb, void *arg);
/* Dispatcher: the claimed request is about to be handed to the CA: its lease (the record's
 * and its in-flight slot) runs lease_ms from now, so that it covers the real send and not the
 * time spent signing. State SENDING: send it; any other (LOST: its lease ended first, a poll
 * may have told its device so) it must not be sent. */
void ra_dd_extend(struct ra_dd_store *s, struct rp_view txid, uint32_t lease_ms, ra_dd_fn cb,
                  void *arg);
/* Dispatcher: the end of a claimed request: ANSWERED with the CA's answer, LOST, FAILED or
 * EXPIRED; the record stays keep_ms for the device's polls. Only a record still SENDING
 * changes: one found LOST (its device told so, maybe starting again) stays LOST. Fire and
 * forget, retried like ra_dd_settle (idempotent). */
void ra_dd_finish(struct ra_dd_store *s, struct rp_view txid, enum ra_dd_state state,
                  struct rp_view answer, uint32_t keep_ms, struct rp_view domain,
                  struct rp_view identity);
/* A device's poll: the record's state (NONE without one) and, ANSWERED, the answer. A record
 * found LOST or EXPIRED here releases its identity. A record kept for another requester (its
 * domain or identity differ from the poller's) is neither shown nor changed: `foreign`. */
void ra_dd_poll(struct ra_dd_store *s, struct rp_view txid, struct rp_view domain,
                struct rp_view identity, uint32_t max_wait_ms, ra_dd_fn cb, void *arg);

/* The scripts (deliver_lua.c). */
extern const char ra_dd_lua_offer[];
extern const char ra_dd_lua_release[];
extern const char ra_dd_lua_requeue[];
extern const char ra_dd_lua_settle[];
extern const char ra_dd_lua_next[];
extern const char ra_dd_lua_claim[];
extern const char ra_dd_lua_extend[];
extern const char ra_dd_lua_cancel[];
extern const char ra_dd_lua_finish[];
extern const char ra_dd_lua_poll[];

#endif
