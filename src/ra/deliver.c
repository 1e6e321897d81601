/* The CA's budget and delayed delivery, pipeline side (deliver.h; README "Delayed
 * delivery"; RFC 9483 §4.4, §5.1.5).
 *
 * Exchanges: a verified request that opens a transaction asks the gate (ra_deliver_to_ca):
 * it goes to the CA now holding a lease, or — when the CA has no room and delayed delivery
 * is on — it is kept in the store and the device gets ip/cp/kup with status waiting (an
 * error with status waiting for rr and genm from a pvno 3 client); a retry of a delayed
 * transaction joins it; a second certificate request of a device with one in progress is
 * refused. A request sent at once that the CA did not take (not sent, HTTP 503) is kept
 * the same way; any other answer, and a connection broken once it was written, may have
 * reached the CA and is never sent again. A device's pollReq (ra_deliver_poll) gets a pollRep with
 * a jittered checkAfter until the CA's answer is there, then that answer re-signed by the RA for
 * this pollReq: clients check that an answer echoes the nonce of the message they just sent, and
 * the CA signed its answer for the nonce of the request the dispatcher sent.
 *
 * Dispatcher (one per loop): while the CA has room, take the oldest waiting request,
 * claim it (from here it is never sent again), protect it now (fresh messageTime), send
 * it, check the CA's answer as for any exchange and store it for the device's poll. A
 * request the CA did not take goes back to the front and the dispatcher backs off. Each
 * delivery holds the loop, so that SIGTERM lets it finish within the grace period. */
#include "ra.h"

#include "raproxy/clock.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"
#include "raproxy/http.h"
#include "raproxy/log.h"
#include "raproxy/loop.h"
#include "raproxy/metrics.h"
#include "raproxy/snapshot.h"
#include "raproxy/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMP_CONTENT_TYPE  "application/pkixcmp"
#define LEASE_MARGIN_MS   5000u   /* a lease outlives the request's own deadlines by this */
#define ANSWER_KEEP_MS    900000u /* the CA's answer waits this long for the device's poll */
#define RESERVE_MS        10000u  /* a dispatcher claims what it took within this */
#define IDLE_POLL_MS      200u    /* nothing waiting: look again (other replicas queue too) */
#define FULL_POLL_MS      50u     /* no room at the CA: look again (other replicas free it) */
#define ERROR_RETRY_MS    1000u   /* the store failed */
#define BACKOFF_MIN_MS    250u    /* the CA did not take a request: wait, doubling … */
#define BACKOFF_MAX_MS    4000u   /* … up to this */
#define MS_PER_S          1000u
#define DELIVERY_ARENA    (512u * 1024u)
#define RETRY_HDR_MAX     48
#define MAX_POLL_IDS      RP_CMP_MAX_LIST
#define P10CR_CERT_REQ_ID (-1) /* RFC 9480 §2.13: p10cr answers carry certReqId -1 */
#define HTTP_NOT_TAKEN    503  /* Service Unavailable: the only "not taken" answer */
#define HTTP_5XX_MIN      500
#define HTTP_5XX_MAX      599

_Static_assert(ANSWER_KEEP_MS == RP_DD_ANSWER_KEEP_S * 1000u, "one answer stay, config checks it");

enum dispatch_state {
    DISPATCH_IDLE,   /* the timer may be armed */
    DISPATCH_ASKING, /* ra_dd_next in flight */
    DISPATCH_CLOSED,
};

struct ra_deliver {
    struct ra_loop *rl;
    struct ra_dd_store *store;
    struct rp_loop_timer *timer;
    enum dispatch_state state;
    bool retired;           /* a reload replaced it: no new delivery, the started ones end */
    unsigned active;        /* deliveries of this loop */
    uint32_t backoff_ms;    /* 0: the CA took the last request */
    uint64_t ca_down_until; /* loop ms: until then new requests are queued without trying */
    uint64_t rng;
};

enum delivery_step {
    DLV_CLAIM,  /* claiming what ra_dd_next gave */
    DLV_SIGN,   /* on a worker: decode and protect */
    DLV_LEASE,  /* its lease starts over, for the send */
    DLV_SEND,   /* at the CA */
    DLV_VERIFY, /* on a worker: the CA's signature (upstream.ca_trust) */
};

/* One queued request on its way to the CA. */
struct ra_delivery {
    struct ra_deliver *d;
    enum delivery_step step;
    struct rp_snapshot *snap; /* its configuration and keys, for the whole delivery */
    const struct rp_cfg_domain *dcfg;
    struct ra_domain *domain;
    struct rp_arena arena;
    struct rp_view txid, domain_name, identity, req, body;
    struct rp_cmp_msg msg;
    struct rp_view out, relay;
    struct rp_cmp_msg *answer, *relay_msg;
    int64_t now;
    const char *why;
    char token[RA_DD_TOKEN_MAX];
    struct rp_job job;
    struct rp_upstream_req up;
};

static void pump(struct ra_deliver *d);

/* ---- metrics ------------------------------------------------------------------------------- */

static void count(const char *event)
{
    char lbl[48];
    snprintf(lbl, sizeof lbl, "event=\"%s\"", event);
    rp_metrics_count("raproxy_delayed_total", lbl);
}

static void count_gate(const char *result)
{
    char lbl[48];
    snprintf(lbl, sizeof lbl, "result=\"%s\"", result);
    rp_metrics_count("raproxy_ca_gate_total", lbl);
}

static void metrics_help(void)
{
    rp_metrics_help("raproxy_delayed_total", RP_METRIC_COUNTER,
                    "Delayed delivery: requests queued (answered waiting), joined (a retry of a "
                    "waiting transaction), requeued (the CA did not take them), delivered (the "
                    "CA answered), lost (sent, no answer: never resent), failed (the CA refused "
                    "without a CMP answer), expired (not sent within max_wait_s), polled, "
                    "foreign (a poll of another identity's transaction), cancelled (queued but "
                    "its device could not be told waiting).");
    rp_metrics_help("raproxy_ca_gate_total", RP_METRIC_COUNTER,
                    "Requests opening a transaction, by what the CA's budget said: go, queued, "
                    "busy (no room: systemUnavail), duplicate (another certificate request of "
                    "the device in progress), full (too many waiting), foreign (the "
                    "transaction waits for another identity), error (store failed).");
}

/* ---- configuration ------------------------------------------------------------------------- */

static const struct rp_cfg_upstream *upstream_cfg(const struct rp_snapshot *s)
{
    return &s->cfg->upstream;
}

static uint32_t lease_ms(const struct rp_cfg_upstream *u)
{
    uint64_t ms = (uint64_t)u->timeout_ms + u->connect_timeout_ms + LEASE_MARGIN_MS;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

static struct ra_dd_budget budget_of(const struct rp_cfg_upstream *u)
{
    return (struct ra_dd_budget){
        .max_in_flight = u->max_in_flight,
        .interval_us = rp_cfg_limit_interval_us(&u->rate),
        .burst = rp_gcra_burst(u->rate.rate, u->rate.burst),
        .lease_ms = lease_ms(u),
    };
}

static uint32_t max_wait_ms(const struct rp_cfg_upstream *u)
{
    return u->delayed_delivery.max_wait_s * MS_PER_S;
}

static uint32_t record_ttl_ms(const struct rp_cfg_upstream *u)
{
    uint64_t ms = (uint64_t)max_wait_ms(u) + ANSWER_KEEP_MS;
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* Requests that open a transaction at the CA; certConf, pollReq and error finish one. */
static bool opens_transaction(enum rp_cmp_body_type t)
{
    return ra_is_cert_request(t) || t == RP_CMP_RR || t == RP_CMP_GENM || t == RP_CMP_NESTED;
}

/* What may be answered `waiting`: ir/cr/p10cr/kur with their waiting ip/cp/kup; rr and genm
 * with the RFC 9483 §4.4 error, which only a pvno 3 (CMP2021) client can take. */
static bool delayable(const struct ra_exchange *rx)
{
    const struct rp_cfg_upstream *u = upstream_cfg(rx->ex->snap);
    enum rp_cmp_body_type t = rx->msg.body.type;
    if (!u->delayed_delivery.enabled || rx->nested)
        return false;
    if (t == RP_CMP_IR || t == RP_CMP_CR || t == RP_CMP_P10CR || t == RP_CMP_KUR)
        return true;
    return (t == RP_CMP_RR || t == RP_CMP_GENM) && rx->msg.header.pvno == RP_CMP_PVNO_CMP2021;
}

static bool ca_known_down(const struct ra_deliver *d)
{
    return d->ca_down_until && rp_loop_now_ms(d->rl->loop) < d->ca_down_until;
}

/* The CA did not take a request: queue new ones without trying for a while. */
static void ca_did_not_take(struct ra_deliver *d)
{
    d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (d->backoff_ms > BACKOFF_MAX_MS)
        d->backoff_ms = BACKOFF_MAX_MS;
    d->ca_down_until = rp_loop_now_ms(d->rl->loop) + d->backoff_ms;
}

static void ca_took(struct ra_deliver *d)
{
    d->backoff_ms = 0;
    d->ca_down_until = 0;
}

static struct ra_dd_offer offer_of(const struct ra_exchange *rx, enum ra_offer_mode mode)
{
    const struct rp_cfg_upstream *u = upstream_cfg(rx->ex->snap);
    return (struct ra_dd_offer){
        .txid = rx->msg.header.transaction_id.val,
        .domain = rp_view_str(rx->dcfg->name),
        .identity = rx->serial,
        .mode = mode,
        .exclusive = ra_is_cert_request(rx->msg.body.type),
        .budget = budget_of(u),
        .busy_ttl_ms = lease_ms(u),
        .record_ttl_ms = record_ttl_ms(u),
        .max_waiting = u->delayed_delivery.max_waiting,
        .req = rx->msg.raw,
        .body = rx->body_out,
    };
}

/* ---- the RA's answers to a delayed transaction (on a worker) ------------------------------- */

static uint32_t check_after(struct ra_deliver *d, const struct rp_cfg_delayed *dd)
{
    uint32_t jitter = 0;
    if (dd->check_after_jitter_s) {
        d->rng ^= d->rng << 13;
        d->rng ^= d->rng >> 7;
        d->rng ^= d->rng << 17;
        jitter = (uint32_t)(d->rng % ((uint64_t)dd->check_after_jitter_s + 1));
    }
    return dd->check_after_s + jitter;
}

/* waiting ip/cp/kup for a certificate request (one CertResponse per request), the RFC 9483
 * §4.4 error for rr/genm, pollRep (with the poll's certReqIds) for a pollReq. */
static int waiting_body(struct ra_exchange *rx, struct rp_view *body)
{
    static const char queued[] = "the CA is busy: the request is queued, poll for the answer";
    struct rp_arena *a = &rx->ex->arena;
    const struct rp_cmp_body *b = &rx->msg.body;
    int64_t ids[MAX_POLL_IDS];
    size_t n = 0;
    switch (b->type) {
    case RP_CMP_POLLREQ:
        for (size_t i = 0; i < b->pollreq.n && n < MAX_POLL_IDS; i++)
            ids[n++] = b->pollreq.cert_req_ids[i];
        if (n == 0)
            ids[n++] = 0;
        return rp_cmp_enc_body_pollrep(a, ids, n, rx->check_after_s,
                                       rp_view_str("waiting for the CA"), body);
    case RP_CMP_IR:
    case RP_CMP_CR:
    case RP_CMP_KUR:
        for (size_t i = 0; i < b->reqs.n && n < MAX_POLL_IDS; i++)
            ids[n++] = b->reqs.reqs[i].cert_req_id;
        return rp_cmp_enc_body_certrep_waiting(a, b->type + 1, ids, n, rp_view_str(queued), body);
    case RP_CMP_P10CR:
        ids[n++] = P10CR_CERT_REQ_ID;
        return rp_cmp_enc_body_certrep_waiting(a, RP_CMP_CP, ids, n, rp_view_str(queued), body);
    default:
        return rp_cmp_enc_body_error(a, RP_FI_NONE, RP_CMP_STATUS_WAITING, rp_view_str(queued),
                                     body);
    }
}

static void run_waiting(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    struct rp_view body;
    int rc = waiting_body(rx, &body);
    j->result = rc == RP_OK ? ra_sign_response(rx, body) : rc;
}

static void run_relay(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    j->result = ra_protect_relay(rx, rx->answer);
}

static void answer_waiting(struct ra_exchange *rx, const char *result)
{
    const struct rp_cfg_delayed *dd = &upstream_cfg(rx->ex->snap)->delayed_delivery;
    rx->check_after_s = check_after(rx->rl->dd, dd);
    ra_pipeline_answer(rx, run_waiting, result);
}

static const char *why_not_delivered(enum ra_dd_state st)
{
    switch (st) {
    case RA_DD_LOST:
        return "the request may have reached the CA but its answer was lost: start a new "
               "transaction";
    case RA_DD_EXPIRED:
        return "the CA could not take the request within max_wait_s: start a new transaction";
    default:
        return "the CA did not answer the request: start a new transaction";
    }
}

/* What a poll (or a retry of the request) of a delayed transaction gets. */
static void answer_from_record(struct ra_exchange *rx, enum ra_dd_state st, struct rp_view answer)
{
    switch (st) {
    case RA_DD_NONE:
        ra_pipeline_forward(rx); /* not delayed here: the CA's own polling */
        return;
    case RA_DD_QUEUED:
    case RA_DD_SENDING:
        answer_waiting(rx, "waiting");
        return;
    case RA_DD_ANSWERED: {
        struct rp_cmp_msg *m = rp_arena_calloc(&rx->ex->arena, 1, sizeof *m);
        uint8_t *copy =
            rp_view_present(answer) ? rp_arena_dup(&rx->ex->arena, answer.p, answer.len) : NULL;
        if (!m || !copy || rp_cmp_decode(copy, answer.len, &rx->ex->arena, m, NULL) != RP_OK) {
            ra_pipeline_refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA's answer cannot be relayed");
            return;
        }
        rx->answer = m;
        count("polled");
        ra_pipeline_answer(rx, run_relay, "delivered");
        return;
    }
    default:
        ra_pipeline_refuse(rx, RP_E_SYSTEM_UNAVAIL, why_not_delivered(st));
        return;
    }
}

/* ---- exchanges ------------------------------------------------------------------------------ */

/* Admission's entry of a delayed transaction (its owner) lives as long as the record. */
static void keep_transaction(struct ra_loop *rl, struct rp_view identity, struct rp_view txid,
                             enum rp_cmp_body_type type, uint32_t ttl_ms)
{
    if (!rl->admit)
        return;
    struct rp_admit_txn_keep_in keep = {
        .serial = identity, .txid = txid, .body = rp_cmp_body_name(type), .ttl_ms = ttl_ms};
    rp_admit_txn_keep(rl->admit, &keep);
}

/* The request is kept for later: its transaction stays its device's, and its allowlist claim
 * lives on, as long as its record (a device may poll late: a long checkAfter, or offline
 * for a while during an outage). */
static void queued(struct ra_exchange *rx)
{
    count("queued");
    keep_transaction(rx->rl, rx->serial, rx->msg.header.transaction_id.val, rx->msg.body.type,
                     record_ttl_ms(upstream_cfg(rx->ex->snap)));
    if (rx->claim == RA_CLAIM_CREATED)
        ra_claim_settle(rx->rl, rx->dcfg, rx->domain, rx->serial, rx->msg.header.transaction_id.val,
                        RP_ADMIT_KEEP, record_ttl_ms(upstream_cfg(rx->ex->snap)));
    rx->claim = RA_CLAIM_NONE;
    rx->dd_queued = true; /* its device is owed the waiting answer (ra_deliver_unanswered) */
    pump(rx->rl->dd);     /* a dispatcher with room takes it without waiting for its timer */
    answer_waiting(rx, "waiting");
}

/* What a cancel needs after its exchange is gone: the claim to give back. */
struct cancel_ctx {
    struct ra_loop *rl;
    struct rp_snapshot *snap; /* keeps dcfg alive */
    const struct rp_cfg_domain *dcfg;
    struct ra_domain *domain;
    struct rp_view identity, txid;
    uint8_t bytes[];
};

static void on_cancelled(void *arg, const struct ra_dd_result *r)
{
    struct cancel_ctx *c = arg;
    if (r->err == RP_OK && r->state == RA_DD_QUEUED) {
        count("cancelled");
        ra_claim_settle(c->rl, c->dcfg, c->domain, c->identity, c->txid, RP_ADMIT_RELEASE, 0);
    } else {
        rp_log_warn("delayed",
                    "a request whose device was not told waiting could not be "
                    "cancelled (%s): it goes to the CA",
                    r->err != RP_OK ? rp_err_msg(r->err) : "no longer queued");
    }
    rp_snapshot_unref(c->snap);
    free(c);
}

void ra_deliver_unanswered(struct ra_exchange *rx)
{
    struct ra_deliver *d = rx->rl->dd;
    if (!rx->dd_queued || !d || !rx->dcfg)
        return;
    rx->dd_queued = false;
    struct rp_view txid = rx->msg.header.transaction_id.val;
    struct cancel_ctx *c = calloc(1, sizeof *c + rx->serial.len + txid.len + 1);
    if (!c)
        return;
    c->rl = rx->rl;
    c->snap = rp_snapshot_ref(rx->ex->snap);
    c->dcfg = rx->dcfg;
    c->domain = rx->domain;
    memcpy(c->bytes, rx->serial.p, rx->serial.len);
    memcpy(c->bytes + rx->serial.len, txid.p, txid.len);
    c->identity = rp_view_make(c->bytes, rx->serial.len);
    c->txid = rp_view_make(c->bytes + rx->serial.len, txid.len);
    rp_log_warn("delayed", "txid %s: the waiting answer could not be made: request cancelled",
                rx->ex->log.txid);
    ra_dd_cancel(d->store, c->txid, rp_view_str(rx->dcfg->name), c->identity, on_cancelled, c);
}

static void refuse_busy(struct ra_exchange *rx, int32_t retry_ms)
{
    char *hdr = rp_arena_alloc(&rx->ex->arena, RETRY_HDR_MAX);
    uint32_t s = retry_ms > 0 ? ((uint32_t)retry_ms + MS_PER_S - 1) / MS_PER_S : 1;
    if (hdr) {
        snprintf(hdr, RETRY_HDR_MAX, "Retry-After: %u\r\n", s);
        rx->extra_headers = hdr;
    }
    ra_pipeline_refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA is at capacity: retry later");
}

/* A delayed transaction is bound to the domain and identity that made it, for the record's
 * whole life (admission's own table may have forgotten it): another requester naming its
 * transactionID learns nothing of it and changes nothing. */
static void refuse_foreign(struct ra_exchange *rx)
{
    rp_log_warn("delayed", "txid %s: delayed transaction of another device: refused",
                rx->ex->log.txid);
    ra_pipeline_refuse(rx, RP_E_TXID_IN_USE, "transactionID in use by another device");
}

static void on_gate(void *arg, const struct ra_dd_result *r)
{
    struct ra_exchange *rx = arg;
    ra_step_expect(rx, RA_STEP_BIT(RA_GATE));
    if (r->err != RP_OK) {
        count_gate("error");
        if (r->maybe && delayable(rx)) {
            /* the offer may yet queue it, or take a lease for it: sending it another way
             * could send it twice. It is answered waiting, and a settle sent behind the
             * offer queues it whatever the offer did (a lease it took goes back). */
            rp_log_warn("delayed", "txid %s: CA budget not answered in time: answered waiting",
                        rx->ex->log.txid);
            struct ra_dd_offer in = offer_of(rx, RA_OFFER_FORCE);
            ra_dd_settle(rx->rl->dd->store, &in, r->token);
            queued(rx);
            return;
        }
        if (rx->dcfg->on_redis_failure == RP_REDIS_FAIL_OPEN) {
            /* no budget or duplicate check without the store: the request goes as before */
            rp_log_warn("delayed", "txid %s: CA budget not checked: %s", rx->ex->log.txid,
                        rp_err_msg(r->err));
            ra_pipeline_forward(rx);
            return;
        }
        ra_pipeline_refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA's budget cannot be checked now");
        return;
    }
    switch (r->gate) {
    case RA_GATE_GO:
        count_gate("go");
        snprintf(rx->ca_lease, sizeof rx->ca_lease, "%s", r->token);
        ra_pipeline_forward(rx);
        return;
    case RA_GATE_QUEUED:
        count_gate("queued");
        queued(rx);
        return;
    case RA_GATE_JOINED:
        count("joined");
        answer_from_record(rx, r->state, r->answer);
        return;
    case RA_GATE_DUPLICATE:
        count_gate("duplicate");
        ra_pipeline_refuse(rx, RP_E_TXID_IN_USE,
                           "another certificate request of this device is in progress");
        return;
    case RA_GATE_BUSY:
        count_gate("busy");
        refuse_busy(rx, r->retry_ms);
        return;
    case RA_GATE_FULL:
        count_gate("full");
        ra_pipeline_refuse(rx, RP_E_SYSTEM_UNAVAIL, "too many requests wait for the CA");
        return;
    case RA_GATE_FOREIGN:
        count_gate("foreign");
        refuse_foreign(rx);
        return;
    }
}

void ra_deliver_to_ca(struct ra_exchange *rx)
{
    struct ra_deliver *d = rx->rl->dd;
    const struct rp_cfg_upstream *u = upstream_cfg(rx->ex->snap);
    enum rp_cmp_body_type t = rx->msg.body.type;
    bool budget = u->max_in_flight || u->rate.rate;
    /* certificate requests always pass: one at a time per device (duplicate suppression) */
    if (!d || !rx->dcfg || !opens_transaction(t) ||
        !(ra_is_cert_request(t) || budget || u->delayed_delivery.enabled) ||
        !rp_view_present(rx->serial) || rx->serial.len == 0) {
        ra_pipeline_forward(rx);
        return;
    }
    enum ra_offer_mode mode = !delayable(rx)     ? RA_OFFER_DIRECT
                              : ca_known_down(d) ? RA_OFFER_FORCE
                                                 : RA_OFFER_QUEUE;
    struct ra_dd_offer in = offer_of(rx, mode);
    ra_pipeline_advance(rx, RA_EV_GATE);
    ra_dd_offer(d->store, &in, on_gate, rx);
}

static void on_polled(void *arg, const struct ra_dd_result *r)
{
    struct ra_exchange *rx = arg;
    ra_step_expect(rx, RA_STEP_BIT(RA_DELAYED));
    if (r->err != RP_OK) {
        /* the device keeps polling rather than failing on a store that comes back */
        rp_log_warn("delayed", "txid %s: poll not looked up: %s", rx->ex->log.txid,
                    rp_err_msg(r->err));
        answer_waiting(rx, "waiting");
        return;
    }
    if (r->foreign) {
        count("foreign");
        refuse_foreign(rx);
        return;
    }
    answer_from_record(rx, r->state, r->answer);
}

void ra_deliver_poll(struct ra_exchange *rx)
{
    struct ra_deliver *d = rx->rl->dd;
    const struct rp_cfg_upstream *u = upstream_cfg(rx->ex->snap);
    if (!d || !u->delayed_delivery.enabled) {
        ra_pipeline_forward(rx);
        return;
    }
    ra_pipeline_advance(rx, RA_EV_LOOKUP);
    ra_dd_poll(d->store, rx->msg.header.transaction_id.val,
               rx->dcfg ? rp_view_str(rx->dcfg->name) : RP_VIEW_NULL, rx->serial, max_wait_ms(u),
               on_polled, rx);
}

bool ra_deliver_poll_unchecked(struct ra_exchange *rx)
{
    const struct rp_cfg_upstream *u = upstream_cfg(rx->ex->snap);
    if (!rx->rl->dd || !u->delayed_delivery.enabled || rx->msg.body.type != RP_CMP_POLLREQ)
        return false;
    rp_log_warn("delayed", "txid %s: transaction not checked (Redis late): asked to poll again",
                rx->ex->log.txid);
    answer_waiting(rx, "waiting");
    return true;
}

static void on_requeued(void *arg, const struct ra_dd_result *r)
{
    struct ra_exchange *rx = arg;
    ra_step_expect(rx, RA_STEP_BIT(RA_DELAYED));
    if ((r->err == RP_OK && r->gate == RA_GATE_QUEUED) || (r->err != RP_OK && r->maybe)) {
        if (r->err != RP_OK) { /* the requeue may not have run: make sure */
            struct ra_dd_offer in = offer_of(rx, RA_OFFER_FORCE);
            ra_dd_settle(rx->rl->dd->store, &in, r->token);
        }
        count("requeued");
        queued(rx);
        return;
    }
    if (r->err == RP_OK && r->gate == RA_GATE_JOINED) {
        answer_from_record(rx, r->state, RP_VIEW_NULL);
        return;
    }
    if (r->err == RP_OK && r->gate == RA_GATE_FOREIGN) {
        refuse_foreign(rx); /* not sent: nothing of it reached the CA */
        return;
    }
    ra_pipeline_refuse(rx, RP_E_SYSTEM_UNAVAIL,
                       r->err == RP_OK ? "too many requests wait for the CA"
                                       : "the CA is not available");
}

/* Not sent at all (nothing written: connect failure, no connection), or refused with HTTP
 * 503, which says the server did not take it. Any other 5xx (500 from a CA that failed
 * after storing the certificate, 502/504 from a gateway whose CA died or was slow) and a
 * connection broken after the request was written may have reached the CA: never resent. */
static bool not_taken(int err, bool sent, int status)
{
    if (err != RP_OK)
        return !sent;
    return status == HTTP_NOT_TAKEN;
}

static bool may_have_acted(int status)
{
    return status >= HTTP_5XX_MIN && status <= HTTP_5XX_MAX;
}

bool ra_deliver_not_taken(struct ra_exchange *rx, int err, bool sent, int status)
{
    struct ra_deliver *d = rx->rl->dd;
    if (!d || !rx->ca_lease[0] || !not_taken(err, sent, status))
        return false;
    ca_did_not_take(d);
    if (!delayable(rx))
        return false;
    rp_log_info("delayed", "txid %s: the CA did not take the request (%s): kept for later",
                rx->ex->log.txid, err != RP_OK ? rp_err_msg(err) : "HTTP 5xx");
    struct ra_dd_offer in = offer_of(rx, RA_OFFER_FORCE);
    char token[RA_DD_TOKEN_MAX];
    snprintf(token, sizeof token, "%s", rx->ca_lease);
    rx->ca_lease[0] = 0; /* the requeue gives the lease back */
    ra_pipeline_advance(rx, RA_EV_LOOKUP);
    ra_dd_requeue(d->store, &in, token, on_requeued, rx);
    return true;
}

void ra_deliver_answered(struct ra_exchange *rx)
{
    struct ra_deliver *d = rx->rl->dd;
    if (!d || !rx->ca_lease[0])
        return;
    ra_dd_release(d->store, rx->ca_lease, rx->msg.header.transaction_id.val,
                  rp_view_str(rx->dcfg->name), rx->serial);
    rx->ca_lease[0] = 0;
}

/* ---- deliveries ----------------------------------------------------------------------------- */

static struct rp_loop *loop_of(const struct ra_delivery *dl)
{
    return dl->d->rl->loop;
}

/* The delivery is over: the loop's hold goes last (it may stop the loop). */
static void delivery_end(struct ra_delivery *dl)
{
    struct ra_deliver *d = dl->d;
    struct rp_loop *loop = loop_of(dl);
    rp_snapshot_unref(dl->snap);
    rp_arena_free(&dl->arena);
    free(dl);
    d->active--;
    pump(d);
    rp_loop_work_release(loop);
}

/* The allowlist claim of the delivered transaction follows the CA. */
static void settle(struct ra_delivery *dl, enum rp_admit_settle how)
{
    if (dl->dcfg)
        ra_claim_settle(dl->d->rl, dl->dcfg, dl->domain, dl->identity, dl->txid, how, 0);
}

static void finish(struct ra_delivery *dl, enum ra_dd_state st, const char *event)
{
    struct ra_deliver *d = dl->d;
    if (st != RA_DD_ANSWERED)
        rp_log_warn("delayed", "delayed request of %.*s: %s (%s)", (int)dl->identity.len,
                    (const char *)dl->identity.p, event, dl->why ? dl->why : "-");
    ra_dd_finish(d->store, dl->txid, st, st == RA_DD_ANSWERED ? dl->relay : RP_VIEW_NULL,
                 ANSWER_KEEP_MS, dl->domain_name, dl->identity);
    /* the record stays ANSWER_KEEP_MS from now: so does its owner (a send late in max_wait_s
     * ends after the entry made at queueing) */
    keep_transaction(d->rl, dl->identity, dl->txid, dl->msg.body.type, ANSWER_KEEP_MS);
    count(event);
    delivery_end(dl);
}

/* Not sent, or refused with HTTP 503: back to the front of the queue. */
static void requeue(struct ra_delivery *dl)
{
    struct ra_dd_offer in = {
        .txid = dl->txid,
        .domain = dl->domain_name,
        .identity = dl->identity,
        .mode = RA_OFFER_FORCE,
        .req = dl->req,
        .record_ttl_ms = record_ttl_ms(upstream_cfg(dl->snap)),
        .max_waiting = UINT32_MAX,
    };
    ca_did_not_take(dl->d);
    count("requeued");
    ra_dd_requeue(dl->d->store, &in, dl->token, NULL, NULL);
    delivery_end(dl);
}

static void run_verify_answer(struct rp_job *j)
{
    struct ra_delivery *dl = container_of(j, struct ra_delivery, job);
    j->result = ra_verify_answer(dl->snap->ra, dl->answer, &dl->arena, dl->now, &dl->why);
}

static void delivered(struct ra_delivery *dl)
{
    ca_took(dl->d);
    int how = ra_answer_settles(dl->msg.body.type, dl->relay_msg);
    if (how >= 0)
        settle(dl, (enum rp_admit_settle)how);
    finish(dl, RA_DD_ANSWERED, "delivered");
}

static void on_answer_verified(struct rp_job *j)
{
    struct ra_delivery *dl = container_of(j, struct ra_delivery, job);
    if (j->result != RP_OK) {
        settle(dl, RP_ADMIT_RELEASE);
        finish(dl, RA_DD_FAILED, "failed");
        return;
    }
    delivered(dl);
}

static void on_sent(struct rp_upstream_req *up)
{
    struct ra_delivery *dl = up->arg;
    if (not_taken(up->err, up->sent, up->status)) {
        requeue(dl);
        return;
    }
    if (up->err != RP_OK) {
        dl->why = rp_err_msg(up->err); /* it may have reached the CA: never resent */
        finish(dl, RA_DD_LOST, "lost");
        return;
    }
    if (may_have_acted(up->status)) {
        /* a 5xx but 503: the CA (or a gateway's) may have acted on it, never resent */
        dl->why = "the CA answered with an HTTP server error";
        ca_did_not_take(dl->d); /* the CA is in trouble: back off */
        finish(dl, RA_DD_LOST, "lost");
        return;
    }
    if (up->status != 200 || !rp_http_media_type_is(up->ctype, CMP_CONTENT_TYPE)) {
        dl->why = "the CA answered with an HTTP error";
        settle(dl, RP_ADMIT_RELEASE);
        finish(dl, RA_DD_FAILED, "failed");
        return;
    }
    /* the pool frees its buffer after this callback */
    uint8_t *copy = rp_arena_dup(&dl->arena, up->resp.p, up->resp.len);
    dl->why = copy ? ra_answer_check(&dl->msg, rp_view_make(copy, up->resp.len), &dl->arena,
                                     &dl->answer, &dl->relay_msg, &dl->relay)
                   : "the CA's answer is too large";
    if (dl->why) {
        settle(dl, RP_ADMIT_RELEASE);
        finish(dl, RA_DD_FAILED, "failed");
        return;
    }
    if (ra_answer_waits(dl->relay_msg)) {
        /* the CA delays it in turn: polling the CA for a delayed request is not done here */
        dl->why = "the CA answered waiting";
        finish(dl, RA_DD_LOST, "lost");
        return;
    }
    const struct ra_state *st = dl->snap->ra;
    if (st && st->has_ca_trust) {
        dl->step = DLV_VERIFY;
        dl->job.run = run_verify_answer;
        dl->job.done = on_answer_verified;
        dl->job.cls = RP_JOB_FINISH; /* the CA has acted */
        if (rp_workers_submit(dl->d->rl->workers, &dl->job, &dl->d->rl->port) != RP_OK) {
            dl->why = "crypto workers busy";
            finish(dl, RA_DD_LOST, "lost"); /* the CA issued: never resent */
        }
        return;
    }
    delivered(dl);
}

static void run_sign(struct rp_job *j)
{
    struct ra_delivery *dl = container_of(j, struct ra_delivery, job);
    int rc = rp_cmp_decode(dl->req.p, dl->req.len, &dl->arena, &dl->msg, NULL);
    dl->now = rp_clock_wall_s();
    if (rc == RP_OK)
        rc = ra_protect_queued(&dl->arena, dl->snap->ra, dl->dcfg, &dl->msg, dl->body, dl->now,
                               &dl->out);
    j->result = rc;
}

static void on_leased(void *arg, const struct ra_dd_result *r);

static void on_signed(struct rp_job *j)
{
    struct ra_delivery *dl = container_of(j, struct ra_delivery, job);
    if (j->result == RP_E_KEY_UNAVAILABLE || j->result == RP_E_KEY_TOKEN) {
        requeue(dl); /* the RA key's token is down: wait for it, the request is not lost */
        return;
    }
    if (j->result != RP_OK) {
        dl->why = rp_err_msg(j->result);
        settle(dl, RP_ADMIT_RELEASE);
        finish(dl, RA_DD_FAILED, "failed");
        return;
    }
    /* the lease (taken at the claim) has been running through the worker queue and the
     * signature: it starts over now, before the request is handed to the CA, so that it
     * covers the send and its deadlines. The request goes only when it is still this
     * dispatcher's: a lease that ended first may have been declared lost to its device. */
    dl->step = DLV_LEASE;
    ra_dd_extend(dl->d->store, dl->txid, lease_ms(upstream_cfg(dl->snap)), on_leased, dl);
}

static void on_leased(void *arg, const struct ra_dd_result *r)
{
    struct ra_delivery *dl = arg;
    if (r->err != RP_OK) {
        requeue(dl); /* not sent: back to the front (the requeue finds it if still sending) */
        return;
    }
    if (r->state != RA_DD_SENDING) {
        dl->why = "its lease ended before it was sent (not sent)";
        settle(dl, RP_ADMIT_RELEASE); /* never reached the CA: the serial goes back */
        finish(dl, RA_DD_LOST, "lost");
        return;
    }
    struct rp_upstream *u = rp_loop_upstream(loop_of(dl));
    if (!u) {
        requeue(dl);
        return;
    }
    dl->step = DLV_SEND;
    dl->up = (struct rp_upstream_req){
        .path = dl->dcfg->upstream_path,
        .content_type = CMP_CONTENT_TYPE,
        .body = dl->out.p,
        .len = dl->out.len,
        .cb = on_sent,
        .arg = dl,
    };
    if (rp_upstream_send(u, &dl->up) != RP_OK)
        requeue(dl);
}

static const struct rp_cfg_domain *domain_named(const struct rp_config *cfg, struct rp_view name)
{
    for (unsigned i = 0; i < cfg->domains_count; i++)
        if (rp_view_eq(rp_view_str(cfg->domains[i].name), name))
            return &cfg->domains[i];
    return NULL;
}

static struct rp_view keep(struct ra_delivery *dl, struct rp_view v)
{
    if (!rp_view_present(v))
        return RP_VIEW_NULL;
    uint8_t *p = rp_arena_dup(&dl->arena, v.p, v.len ? v.len : 1);
    return p ? rp_view_make(p, v.len) : RP_VIEW_NULL;
}

static void on_claimed(void *arg, const struct ra_dd_result *r)
{
    struct ra_delivery *dl = arg;
    if (r->err != RP_OK || (r->state != RA_DD_SENDING && r->state != RA_DD_EXPIRED)) {
        delivery_end(dl); /* not this dispatcher's (or the store failed: it comes back) */
        return;
    }
    dl->domain_name = keep(dl, r->domain);
    dl->identity = keep(dl, r->identity);
    dl->dcfg = dl->domain_name.p ? domain_named(dl->snap->cfg, dl->domain_name) : NULL;
    dl->domain = dl->dcfg ? ra_state_domain(dl->snap->ra, dl->dcfg) : NULL;
    if (r->state == RA_DD_EXPIRED) {
        settle(dl, RP_ADMIT_RELEASE); /* never sent: the serial goes back */
        count("expired");
        delivery_end(dl);
        return;
    }
    snprintf(dl->token, sizeof dl->token, "%s", r->token);
    dl->req = keep(dl, r->req);
    dl->body = keep(dl, r->body);
    if (!dl->dcfg || !dl->domain || !dl->req.p) {
        dl->why = !dl->dcfg ? "its domain is no longer configured" : "no memory for the request";
        finish(dl, RA_DD_FAILED, "failed");
        return;
    }
    dl->step = DLV_SIGN;
    dl->job.run = run_sign;
    dl->job.done = on_signed;
    dl->job.cls = RP_JOB_FINISH; /* a device has been waiting for it: ahead of new requests */
    if (rp_workers_submit(dl->d->rl->workers, &dl->job, &dl->d->rl->port) != RP_OK)
        requeue(dl);
}

static void delivery_start(struct ra_deliver *d, struct rp_view txid)
{
    struct rp_loop *loop = d->rl->loop;
    struct ra_delivery *dl = calloc(1, sizeof *dl);
    if (!dl || rp_arena_new(&dl->arena, DELIVERY_ARENA) != RP_OK) {
        free(dl);
        return; /* its reservation ends and it comes back */
    }
    dl->d = d;
    dl->snap = rp_snapshot_ref(rp_loop_snapshot(loop));
    dl->txid = keep(dl, txid);
    d->active++;
    rp_loop_work_hold(loop);
    const struct rp_cfg_upstream *u = upstream_cfg(dl->snap);
    dl->step = DLV_CLAIM;
    ra_dd_claim(d->store, dl->txid, lease_ms(u), max_wait_ms(u), ANSWER_KEEP_MS, on_claimed, dl);
}

/* ---- the dispatcher ------------------------------------------------------------------------- */

static void on_timer(void *arg)
{
    pump(arg);
}

static void arm(struct ra_deliver *d, uint64_t ms)
{
    if (d->state != DISPATCH_CLOSED && !d->retired)
        rp_loop_timer_start(d->timer, ms);
}

static void on_next(void *arg, const struct ra_dd_result *r)
{
    struct ra_deliver *d = arg;
    if (d->state == DISPATCH_CLOSED)
        return;
    d->state = DISPATCH_IDLE;
    if (d->retired)
        return; /* what it reserved comes back to the queue when the reservation ends */
    if (r->err != RP_OK) {
        if (r->err != RP_E_SHUTDOWN)
            arm(d, ERROR_RETRY_MS);
        return;
    }
    if (rp_view_present(r->txid)) {
        delivery_start(d, r->txid);
        pump(d); /* room for more? */
        return;
    }
    arm(d, r->retry_ms == 0  ? IDLE_POLL_MS
           : r->retry_ms < 0 ? FULL_POLL_MS
                             : (uint64_t)r->retry_ms);
}

/* Take the oldest waiting request when this loop and the CA have room. */
static void pump(struct ra_deliver *d)
{
    if (!d || d->state != DISPATCH_IDLE || d->retired)
        return;
    struct rp_loop *loop = d->rl->loop;
    const struct rp_cfg_upstream *u = upstream_cfg(rp_loop_snapshot(loop));
    if (!u->delayed_delivery.enabled || rp_loop_draining(loop))
        return;
    unsigned cap = u->max_connections ? u->max_connections : 1;
    if (d->active >= cap)
        return; /* a delivery that ends pumps again */
    uint64_t now = rp_loop_now_ms(loop);
    if (d->ca_down_until > now) {
        arm(d, d->ca_down_until - now);
        return;
    }
    struct ra_dd_budget b = budget_of(u);
    d->state = DISPATCH_ASKING;
    ra_dd_next(d->store, &b, RESERVE_MS, on_next, d);
}

/* ---- per loop ------------------------------------------------------------------------------- */

/* The store's retry timers: the loop's. */
static int dd_timer_new(void *ctx, rp_loop_timer_fn cb, void *arg, struct rp_loop_timer **out)
{
    return rp_loop_timer_new(ctx, cb, arg, out);
}

int ra_deliver_new(struct ra_deliver **out, struct ra_loop *rl, struct rp_redis *redis,
                   struct ra_dd_mem *mem)
{
    *out = NULL;
    struct ra_deliver *d = calloc(1, sizeof *d);
    if (!d)
        return RP_E_NOMEM;
    int rc = ra_dd_store_new(&d->store, redis, mem, dd_timer_new, rl->loop);
    if (rc != RP_OK) {
        free(d);
        return rc;
    }
    metrics_help();
    d->rl = rl;
    d->rng = (uint64_t)(uintptr_t)d ^ rp_clock_ns() ^ 0x9e3779b97f4a7c15ull;
    rc = rp_loop_timer_new(rl->loop, on_timer, d, &d->timer);
    if (rc != RP_OK) {
        ra_dd_store_free(d->store);
        free(d);
        return rc;
    }
    d->state = DISPATCH_IDLE;
    *out = d;
    /* requests another replica (or this one before a restart) queued are dispatched too */
    arm(d, 0);
    return RP_OK;
}

void ra_deliver_retire(struct ra_deliver *d)
{
    if (!d)
        return;
    d->retired = true;
    rp_loop_timer_stop(d->timer);
}

bool ra_deliver_idle(const struct ra_deliver *d)
{
    return !d || (d->active == 0 && d->state != DISPATCH_ASKING);
}

static void on_timer_closed(void *arg)
{
    struct ra_deliver *d = arg;
    ra_dd_store_free(d->store);
    free(d);
}

void ra_deliver_close(struct ra_deliver *d)
{
    if (!d)
        return;
    d->state = DISPATCH_CLOSED;
    ra_dd_store_close(d->store); /* before the Redis client closes */
    rp_loop_timer_free(d->timer, on_timer_closed, d);
}
