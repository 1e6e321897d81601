/* The exchange pipeline (DESIGN.md, "One exchange, end to end"), on the loop thread:
 * HTTP policy → route to a trust domain → decode → header checks → admission → verify and
 * re-protect on a worker → record (replay, transaction) → forward → check the CA's answer
 * → relay. Every refusal is an RA-signed CMP error (signed on a worker) with its failInfo.
 *
 * An exchange is a state machine. rx->step says what it waits for; each completion
 * (admission answered, a worker job done, a record written, the CA answered, an answer or
 * error signed) first checks it arrives in the step that waits for it (ra_step_expect),
 * then reports its outcome as an event; the table below (k_next, ra_step_next) alone
 * chooses the next step, and enter() starts that step's work. A move the table does not
 * have is a bug and is caught (logged, abort).
 *
 *   step          waits for                          event → next step
 *   START         decoding (on the loop)             OK → CHECK, RELAY → RELAY
 *   CHECK         the header checks (on the loop)    OK → ADMIT
 *   ADMIT         admission (Redis or in process)    OK → VERIFY
 *   VERIFY        verify, re-protect (worker)        OK → RECORD, LOCAL → RECORD_LOCAL
 *   RECORD        the after-verification record      SEND → UPSTREAM, GATE → GATE,
 *                                                    LOOKUP → DELAYED (pollReq),
 *                                                    INNER → RECORD_INNER (nested),
 *                                                    SIGN → SIGN_ANSWER (poll unchecked)
 *   RECORD_INNER  the record of inner message i      INNER → RECORD_INNER, SEND, GATE
 *   RECORD_LOCAL  the record, before the RA's genp   ANSWERED → DONE
 *   GATE          the CA's budget (deliver.c)        SEND → UPSTREAM, SIGN → SIGN_ANSWER
 *   DELAYED       the delayed-delivery store         SEND → UPSTREAM, SIGN → SIGN_ANSWER
 *   UPSTREAM      the CA                             ANSWERED → DONE, CHECK → CA_VERIFY,
 *                                                    LOOKUP → DELAYED (not taken: requeued)
 *   RELAY         the CA, unchecked (no domain)      ANSWERED → DONE, FAIL → DONE
 *   CA_VERIFY     the CA's signature (worker)        ANSWERED → DONE
 *   SIGN_ANSWER   the RA's own answer (worker)       ANSWERED → DONE, FAIL → DONE
 *   SIGN_ERROR    the CMP error (worker)             ANSWERED → DONE, FAIL → DONE
 *   DONE          nothing: answered
 *
 * From every step from START to CA_VERIFY but RELAY, REFUSE → SIGN_ERROR (the step that
 * refused is kept in rx->refused_at) and FAIL → DONE (an HTTP error: no CMP answer can be
 * made). */
#include "ra.h"

#include "raproxy/admit.h"
#include "raproxy/clock.h"
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"
#include "raproxy/http.h"
#include "raproxy/limiter.h"
#include "raproxy/log.h"
#include "raproxy/loop.h"
#include "raproxy/metrics.h"
#include "raproxy/ocsp_relay.h"
#include "raproxy/redis.h"
#include "raproxy/server.h"
#include "raproxy/sig.h"
#include "raproxy/snapshot.h"
#include "raproxy/upstream.h"
#include "raproxy/url.h"
#include "raproxy/view.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMP_CONTENT_TYPE "application/pkixcmp"
#define DOMAIN_PATH_MAX  300
#define MIN_NONCE_LEN    16u
#define RETRY_HDR_MAX    48

/* ---- the state machine ------------------------------------------------------------- */

#define REFUSE_OR_FAIL [RA_EV_REFUSE] = RA_SIGN_ERROR, [RA_EV_FAIL] = RA_DONE

/* The table of the comment at the top: k_next[step][event]; RA_NONE is no such move. */
static const enum ra_step k_next[RA_STEP_COUNT][RA_EVENT_COUNT] = {
    [RA_START] = {[RA_EV_OK] = RA_CHECK, [RA_EV_RELAY] = RA_RELAY, REFUSE_OR_FAIL},
    [RA_CHECK] = {[RA_EV_OK] = RA_ADMIT, REFUSE_OR_FAIL},
    [RA_ADMIT] = {[RA_EV_OK] = RA_VERIFY, REFUSE_OR_FAIL},
    [RA_VERIFY] = {[RA_EV_OK] = RA_RECORD, [RA_EV_LOCAL] = RA_RECORD_LOCAL, REFUSE_OR_FAIL},
    [RA_RECORD] = {[RA_EV_INNER] = RA_RECORD_INNER,
                   [RA_EV_GATE] = RA_GATE,
                   [RA_EV_LOOKUP] = RA_DELAYED,
                   [RA_EV_SEND] = RA_UPSTREAM,
                   [RA_EV_SIGN] = RA_SIGN_ANSWER,
                   REFUSE_OR_FAIL},
    [RA_RECORD_INNER] = {[RA_EV_INNER] = RA_RECORD_INNER,
                         [RA_EV_GATE] = RA_GATE,
                         [RA_EV_SEND] = RA_UPSTREAM,
                         REFUSE_OR_FAIL},
    [RA_RECORD_LOCAL] = {[RA_EV_ANSWERED] = RA_DONE, REFUSE_OR_FAIL},
    [RA_GATE] = {[RA_EV_SEND] = RA_UPSTREAM, [RA_EV_SIGN] = RA_SIGN_ANSWER, REFUSE_OR_FAIL},
    [RA_DELAYED] = {[RA_EV_SEND] = RA_UPSTREAM, [RA_EV_SIGN] = RA_SIGN_ANSWER, REFUSE_OR_FAIL},
    [RA_UPSTREAM] = {[RA_EV_ANSWERED] = RA_DONE,
                     [RA_EV_CHECK] = RA_CA_VERIFY,
                     [RA_EV_LOOKUP] = RA_DELAYED,
                     REFUSE_OR_FAIL},
    [RA_RELAY] = {[RA_EV_ANSWERED] = RA_DONE, [RA_EV_FAIL] = RA_DONE},
    [RA_CA_VERIFY] = {[RA_EV_ANSWERED] = RA_DONE, REFUSE_OR_FAIL},
    [RA_SIGN_ANSWER] = {[RA_EV_ANSWERED] = RA_DONE, [RA_EV_FAIL] = RA_DONE},
    [RA_SIGN_ERROR] = {[RA_EV_ANSWERED] = RA_DONE, [RA_EV_FAIL] = RA_DONE},
};

static const char *const k_step_names[RA_STEP_COUNT] = {
    [RA_NONE] = "none",
    [RA_START] = "start",
    [RA_CHECK] = "check",
    [RA_ADMIT] = "admit",
    [RA_VERIFY] = "verify",
    [RA_RECORD] = "record",
    [RA_RECORD_INNER] = "record_inner",
    [RA_RECORD_LOCAL] = "record_local",
    [RA_GATE] = "gate",
    [RA_DELAYED] = "delayed",
    [RA_UPSTREAM] = "upstream",
    [RA_RELAY] = "relay",
    [RA_CA_VERIFY] = "ca_verify",
    [RA_SIGN_ANSWER] = "sign_answer",
    [RA_SIGN_ERROR] = "sign_error",
    [RA_DONE] = "done",
};

static const char *const k_event_names[RA_EVENT_COUNT] = {
    [RA_EV_OK] = "ok",         [RA_EV_LOCAL] = "local",
    [RA_EV_INNER] = "inner",   [RA_EV_GATE] = "gate",
    [RA_EV_LOOKUP] = "lookup", [RA_EV_SEND] = "send",
    [RA_EV_RELAY] = "relay",   [RA_EV_CHECK] = "check",
    [RA_EV_SIGN] = "sign",     [RA_EV_ANSWERED] = "answered",
    [RA_EV_REFUSE] = "refuse", [RA_EV_FAIL] = "fail",
};

enum ra_step ra_step_next(enum ra_step s, enum ra_event e)
{
    if ((unsigned)s >= RA_STEP_COUNT || (unsigned)e >= RA_EVENT_COUNT)
        return RA_NONE;
    return k_next[s][e];
}

const char *ra_step_name(enum ra_step s)
{
    return (unsigned)s < RA_STEP_COUNT ? k_step_names[s] : "invalid";
}

const char *ra_event_name(enum ra_event e)
{
    return (unsigned)e < RA_EVENT_COUNT ? k_event_names[e] : "invalid";
}

static void caught(const struct ra_exchange *rx, const char *what)
{
    rp_log_error("pipeline", "txid %s: exchange in step %s got %s: the pipeline is broken",
                 rx->ex ? rx->ex->log.txid : "-", ra_step_name(rx->step), what);
    abort();
}

void ra_step_expect(const struct ra_exchange *rx, unsigned steps)
{
    if ((unsigned)rx->step >= RA_STEP_COUNT || !(steps & RA_STEP_BIT(rx->step)))
        caught(rx, "a completion it does not wait for");
}

/* The table's next step for e; nothing started. At log_level debug every move is a line
 * (an exchange's path through the pipeline, as test_pipeline follows it). */
static void move(struct ra_exchange *rx, enum ra_event e)
{
    enum ra_step next = ra_step_next(rx->step, e);
    if (next == RA_NONE)
        caught(rx, ra_event_name(e));
    rp_log_debug("step", "txid %s: %s -> %s (%s)", rx->ex ? rx->ex->log.txid : "-",
                 ra_step_name(rx->step), ra_step_name(next), ra_event_name(e));
    rx->step = next;
}

static void check_request(struct ra_exchange *rx);
static void admit(struct ra_exchange *rx);
static void start_verify(struct ra_exchange *rx);
static void record(struct ra_exchange *rx);
static void record_inner(struct ra_exchange *rx);
static void send_to_ca(struct ra_exchange *rx, struct rp_view msg);
static void start_answer_check(struct ra_exchange *rx);
static void sign_answer(struct ra_exchange *rx);
static void sign_error(struct ra_exchange *rx);

/* Each step's work, started when the exchange enters it. START is begun by
 * rp_server_on_exchange, GATE and DELAYED by deliver.c; DONE's answer is sent by the
 * function that moved there. */
static void enter(struct ra_exchange *rx)
{
    switch (rx->step) {
    case RA_CHECK:
        check_request(rx);
        break;
    case RA_ADMIT:
        admit(rx);
        break;
    case RA_VERIFY:
        start_verify(rx);
        break;
    case RA_RECORD:
    case RA_RECORD_LOCAL:
        record(rx);
        break;
    case RA_RECORD_INNER:
        record_inner(rx);
        break;
    case RA_UPSTREAM:
        send_to_ca(rx, rx->out);
        break;
    case RA_RELAY:
        send_to_ca(rx, rx->ex->req->body);
        break;
    case RA_CA_VERIFY:
        start_answer_check(rx);
        break;
    case RA_SIGN_ANSWER:
        sign_answer(rx);
        break;
    case RA_SIGN_ERROR:
        sign_error(rx);
        break;
    default:
        break;
    }
}

void ra_pipeline_advance(struct ra_exchange *rx, enum ra_event e)
{
    move(rx, e);
    enter(rx);
}

static int submit(struct ra_exchange *rx, void (*run)(struct rp_job *j),
                  void (*done)(struct rp_job *j), enum rp_job_class cls)
{
    rx->job.run = run;
    rx->job.done = done;
    rx->job.cls = cls;
    return rp_workers_submit(rx->rl->workers, &rx->job, &rx->rl->port);
}

/* ---- the end of an exchange ---------------------------------------------------------- */

/* The device's CMP answer (relayed, or signed by the RA). */
static void finish(struct ra_exchange *rx, struct rp_view body)
{
    struct rp_exchange *ex = rx->ex;
    move(rx, RA_EV_ANSWERED);
    char lbl[160];
    snprintf(lbl, sizeof lbl, "domain=\"%s\",body=\"%s\",result=\"%s\"", ex->log.domain,
             ex->log.body[0] ? ex->log.body : "none", ex->log.result[0] ? ex->log.result : "ok");
    rp_metrics_count("raproxy_cmp_requests_total", lbl);
    rp_exchange_respond(ex, 200, CMP_CONTENT_TYPE, body.p, body.len, rx->extra_headers);
}

static void answer_status(struct rp_exchange *ex, int err, int status, const char *extra)
{
    char body[160];
    int n = snprintf(body, sizeof body, "%s\n", rp_err_msg(err));
    snprintf(ex->log.result, sizeof ex->log.result, "%s", rp_err_name(err));
    rp_exchange_respond(ex, status, "text/plain; charset=utf-8", (const uint8_t *)body, (size_t)n,
                        extra);
}

/* HTTP-level answer. CMP-level errors that cannot be signed (no RA key, over the signing
 * budget, workers busy) must not look like a CMP answer: 503 (or 429) with Retry-After. */
static void answer_http(struct rp_exchange *ex, int err, const char *extra)
{
    int status = rp_err_http(err);
    if (status == 200) {
        status = 503;
        if (!extra)
            extra = "Retry-After: 1\r\n";
    }
    answer_status(ex, err, status, extra);
}

/* No CMP answer can be made: an HTTP error ends the exchange. */
static void fail(struct ra_exchange *rx, int err, const char *extra)
{
    move(rx, RA_EV_FAIL);
    answer_http(rx->ex, err, extra);
}

/* ---- refusals ------------------------------------------------------------------- */

static void on_error_signed(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    ra_step_expect(rx, RA_STEP_BIT(RA_SIGN_ERROR));
    if (j->result != RP_OK) {
        rp_log_error("refuse", "cannot sign the CMP error: %s", rp_err_msg(j->result));
        fail(rx, RP_E_SYSTEM_UNAVAIL, NULL);
        return;
    }
    finish(rx, rx->out);
}

static void run_sign_error(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    j->result = ra_protect_error(rx, rx->verdict, rx->why);
}

static void release_own_claim(struct ra_exchange *rx);

/* Answer with an RA-signed CMP error carrying err's failInfo. A refused request gives back
 * the serial it claimed (allowlist_consume): nothing was issued for it. */
static void refuse(struct ra_exchange *rx, int err, const char *why)
{
    struct rp_exchange *ex = rx->ex;
    release_own_claim(rx);
    rx->refused_at = rx->step;
    move(rx, RA_EV_REFUSE);
    rx->verdict = err;
    rx->why = why;
    snprintf(ex->log.result, sizeof ex->log.result, "refused");
    const char *fi = rp_failinfo_name(rp_err_failinfo(err));
    snprintf(ex->log.failinfo, sizeof ex->log.failinfo, "%s", fi ? fi : rp_err_name(err));
    enter(rx); /* sign it */
}

static void sign_error(struct ra_exchange *rx)
{
    const struct ra_state *st = rx->ex->snap->ra;
    bool budget =
        !rx->rl->admit || !rx->dcfg || rp_admit_may_sign_error(rx->rl->admit, rx->dcfg->name);
    if (!st || !ra_identity_ready(&st->ra) || !budget || !rx->rl->workers) {
        /* no key (or its token is down) or over the signing budget: an HTTP answer costs
         * no crypto */
        int e = rx->verdict == RP_E_RATE_LIMITED ? RP_E_RATE_LIMITED : RP_E_SYSTEM_UNAVAIL;
        fail(rx, e, rx->extra_headers);
        return;
    }
    /* the job class of the work it refuses */
    if (submit(rx, run_sign_error, on_error_signed, rx->job.cls) != RP_OK)
        fail(rx, RP_E_QUEUE_FULL, "Retry-After: 1\r\n");
}

/* ---- allowlist_consume ------------------------------------------------------------ */

void ra_claim_settle(struct ra_loop *rl, const struct rp_cfg_domain *d, struct ra_domain *dom,
                     struct rp_view id, struct rp_view txid, enum rp_admit_settle how,
                     uint32_t keep_ms)
{
    if (!d || !d->allowlist_consume || !dom || !rp_view_present(id) || id.len == 0)
        return;
    if (dom->claims) {
        ra_claims_settle(dom->claims, id, txid, (int)how);
    } else if (d->allowlist && strcmp(d->allowlist, "redis") == 0 && rl->admit) {
        struct rp_admit_issued_in in = {d->name, id, txid, how, keep_ms};
        rp_admit_on_issued(rl->admit, &in, NULL, NULL);
    }
}

/* Settle the claim of this exchange's transaction (a no-op when it holds none: an exchange
 * that was not verified has no identity to settle). */
static void settle_claim(struct ra_exchange *rx, enum rp_admit_settle how)
{
    ra_claim_settle(rx->rl, rx->dcfg, rx->domain, rx->serial, rx->msg.header.transaction_id.val,
                    how, 0);
}

/* The request will not get an answer from the CA (refused here, not sent, not answered):
 * a serial this exchange claimed goes back. A retry of the same transaction that only
 * joined the claim leaves it to the exchange that made it. */
static void release_own_claim(struct ra_exchange *rx)
{
    if (rx->claim == RA_CLAIM_CREATED)
        settle_claim(rx, RP_ADMIT_RELEASE);
    rx->claim = RA_CLAIM_NONE;
    for (size_t i = 0; i < ra_nested_count(rx); i++)
        release_own_claim(ra_nested_inner(rx, i));
}

/* The claims follow what the CA said: for a nested request, each inner answer settles its
 * own request's claim (an error for the whole settles them all). */
static void settle_answer(struct ra_exchange *rx, const struct rp_cmp_msg *answer)
{
    if (rx->nested && answer && answer->body.type == RP_CMP_NESTED) {
        for (size_t i = 0; i < answer->body.nested.n; i++) {
            struct ra_exchange *in = ra_nested_for(rx, &answer->body.nested.msgs[i]);
            if (in)
                settle_answer(in, &answer->body.nested.msgs[i]);
        }
    } else if (rx->nested) {
        for (size_t i = 0; i < ra_nested_count(rx); i++)
            settle_answer(ra_nested_inner(rx, i), answer);
    } else {
        int how = ra_answer_settles(rx->msg.body.type, answer);
        if (how >= 0)
            settle_claim(rx, (enum rp_admit_settle)how);
    }
    rx->claim = RA_CLAIM_NONE;
}

/* The CA's answer goes to the device: the claim follows what it says. */
static void relay_answer(struct ra_exchange *rx, struct rp_view relay)
{
    settle_answer(rx, rx->answer);
    snprintf(rx->ex->log.result, sizeof rx->ex->log.result, "forwarded");
    finish(rx, relay);
}

/* ---- the CA's answer -------------------------------------------------------------- */

/* What the CA answered, checked against the request. */
struct ca_answer {
    const char *bad;        /* why it does not belong to the request; NULL when it does */
    struct rp_cmp_msg *msg; /* what the CA signed, decoded in the arena (NULL: undecodable) */
    struct rp_view relay;   /* what goes to the device */
};

/* A nested request's answer: the outer answers the outer request, and each inner answer one
 * inner request (its transaction, its nonce echoed, a fitting body); relayed whole. */
static const char *check_nested_answer(const struct ra_exchange *rx, const struct rp_cmp_msg *m)
{
    const struct rp_cmp_header *q = &rx->msg.header, *r = &m->header;
    if (!rp_view_eq(q->transaction_id.val, r->transaction_id.val))
        return "transactionID differs";
    if (!rp_view_eq(q->sender_nonce.val, r->recip_nonce.val))
        return "recipNonce is not the request's senderNonce";
    if (m->body.type == RP_CMP_ERROR)
        return NULL;
    if (m->body.type != RP_CMP_NESTED)
        return "body type does not answer the request";
    for (size_t i = 0; i < m->body.nested.n; i++) {
        const struct rp_cmp_msg *a = &m->body.nested.msgs[i];
        const struct ra_exchange *in = ra_nested_for(rx, a);
        if (!in)
            return "an inner answer for no inner request";
        if (!rp_view_eq(in->msg.header.sender_nonce.val, a->header.recip_nonce.val))
            return "an inner recipNonce is not its request's senderNonce";
        if (!ra_answer_fits(in->msg.body.type, a->body.type))
            return "an inner body type does not answer its request";
    }
    return NULL;
}

/* Whether the answer resp belongs to the request: same transaction, our nonce echoed, a
 * fitting body; a nested answer with one message is unwrapped for the device. A pure check:
 * it decodes into arena `a` and writes *out, nothing of the exchange (the caller acts). */
static void check_answer(const struct ra_exchange *rx, struct rp_view resp, struct rp_arena *a,
                         struct ca_answer *out)
{
    *out = (struct ca_answer){0};
    if (rx->msg.body.type != RP_CMP_NESTED) {
        struct rp_cmp_msg *relay_msg;
        out->bad = ra_answer_check(&rx->msg, resp, a, &out->msg, &relay_msg, &out->relay);
        return;
    }
    struct rp_cmp_msg *m = rp_arena_calloc(a, 1, sizeof *m);
    if (!m || rp_cmp_decode(resp.p, resp.len, a, m, NULL) != RP_OK) {
        out->bad = "undecodable answer";
        return;
    }
    out->msg = m; /* the outer message: that is what the CA signed */
    out->relay = resp;
    out->bad = check_nested_answer(rx, m);
}

static void run_verify_answer(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    j->result = ra_verify_answer(rx->ex->snap->ra, rx->answer, &rx->ex->arena, rx->now, &rx->why);
}

static void on_answer_verified(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    ra_step_expect(rx, RA_STEP_BIT(RA_CA_VERIFY));
    if (j->result != RP_OK) {
        rp_log_warn("upstream", "txid %s: CA answer refused: %s", rx->ex->log.txid,
                    rx->why ? rx->why : rp_err_msg(j->result));
        refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA's answer is not signed by a trusted CA");
        return;
    }
    relay_answer(rx, rx->relay);
}

static void start_answer_check(struct ra_exchange *rx)
{
    /* the CA has acted: finish what it started */
    if (submit(rx, run_verify_answer, on_answer_verified, RP_JOB_FINISH) != RP_OK) {
        refuse(rx, RP_E_SYSTEM_UNAVAIL, "crypto workers busy");
    }
}

/* The CA answered with CMP: the answer is checked, then relayed (after its signature is
 * checked on a worker with upstream.ca_trust) or refused. */
static void take_answer(struct ra_exchange *rx, struct rp_view resp)
{
    struct rp_exchange *ex = rx->ex;
    /* the pool frees its buffer after this callback: keep a copy for the checks */
    uint8_t *copy = rp_arena_dup(&ex->arena, resp.p, resp.len);
    if (!copy) {
        refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA's answer is too large");
        return;
    }
    struct ca_answer a;
    check_answer(rx, rp_view_make(copy, resp.len), &ex->arena, &a);
    if (a.bad) {
        rp_log_warn("upstream", "txid %s: CA answer refused: %s", ex->log.txid, a.bad);
        refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA's answer does not match the request");
        return;
    }
    rx->answer = a.msg;
    rx->relay = a.relay;
    const struct ra_state *st = ex->snap->ra;
    if (st && st->has_ca_trust)
        ra_pipeline_advance(rx, RA_EV_CHECK);
    else
        relay_answer(rx, rx->relay);
}

/* The CA's HTTP answer is no CMP answer: why not (logged); NULL when it is one. */
static const char *upstream_problem(const struct rp_exchange *ex, const struct rp_upstream_req *up)
{
    if (up->err != RP_OK) {
        rp_log_warn("upstream", "txid %s: %s (request %s)", ex->log.txid, rp_err_msg(up->err),
                    up->sent ? "may have reached the CA: not retried" : "not sent");
        return "the CA is not available";
    }
    if (up->status != 200 || !rp_http_media_type_is(up->ctype, CMP_CONTENT_TYPE)) {
        rp_log_warn("upstream", "txid %s: CA answered HTTP %d", ex->log.txid, up->status);
        return "the CA answered with an HTTP error";
    }
    return NULL;
}

/* No trust domain: whatever the CA answers goes back (the upstream buffer is freed after
 * the callback: respond copies it synchronously). */
static void on_relayed(struct ra_exchange *rx, const struct rp_upstream_req *up)
{
    ra_deliver_answered(rx);
    if (upstream_problem(rx->ex, up)) {
        fail(rx, up->err != RP_OK ? up->err : RP_E_UPSTREAM_STATUS, NULL);
        return;
    }
    relay_answer(rx, up->resp);
}

static void on_upstream(struct rp_upstream_req *up)
{
    struct ra_exchange *rx = up->arg;
    ra_step_expect(rx, RA_STEP_BIT(RA_UPSTREAM) | RA_STEP_BIT(RA_RELAY));
    rx->ex->log.upstream_ns = up->t_end_ns - up->t_start_ns;
    rx->ex->log.upstream_status = up->status;
    if (rx->step == RA_RELAY) {
        on_relayed(rx, up);
        return;
    }
    if (ra_deliver_not_taken(rx, up->err, up->sent, up->status))
        return; /* the CA did not take it: kept for later, the device polls */
    ra_deliver_answered(rx);
    const char *bad = upstream_problem(rx->ex, up);
    if (bad) {
        refuse(rx, RP_E_SYSTEM_UNAVAIL, bad);
        return;
    }
    take_answer(rx, up->resp);
}

/* ---- to the CA -------------------------------------------------------------------- */

/* The request did not go (no pool: shutting down; the pool refused it). */
static void not_sent(struct ra_exchange *rx, int err, bool no_pool)
{
    bool relay = rx->step == RA_RELAY;
    if (!relay && ra_deliver_not_taken(rx, err, false, 0))
        return;
    ra_deliver_answered(rx);
    if (no_pool) {
        fail(rx, RP_E_SHUTDOWN, NULL);
        return;
    }
    release_own_claim(rx);
    if (relay)
        fail(rx, err, "Retry-After: 1\r\n");
    else
        refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA queue is full");
}

static void send_to_ca(struct ra_exchange *rx, struct rp_view msg)
{
    struct rp_upstream *u = rp_loop_upstream(rx->ex->loop);
    if (!u) {
        not_sent(rx, RP_E_SHUTDOWN, true);
        return;
    }
    rx->up.path = rx->dcfg ? rx->dcfg->upstream_path : NULL;
    rx->up.content_type = CMP_CONTENT_TYPE;
    rx->up.body = msg.p;
    rx->up.len = msg.len;
    rx->up.cb = on_upstream;
    rx->up.arg = rx;
    int rc = rp_upstream_send(u, &rx->up);
    if (rc != RP_OK)
        not_sent(rx, rc, false);
}

void ra_pipeline_forward(struct ra_exchange *rx)
{
    ra_pipeline_advance(rx, RA_EV_SEND);
}

void ra_pipeline_refuse(struct ra_exchange *rx, int err, const char *why)
{
    refuse(rx, err, why);
}

/* ---- the RA's own answer to a delayed transaction ---------------------------------- */

static void on_answer_signed(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    ra_step_expect(rx, RA_STEP_BIT(RA_SIGN_ANSWER));
    if (j->result != RP_OK) {
        rp_log_error("delayed", "txid %s: cannot sign the answer: %s", rx->ex->log.txid,
                     rp_err_msg(j->result));
        ra_deliver_unanswered(rx);
        fail(rx, RP_E_SYSTEM_UNAVAIL, NULL);
        return;
    }
    finish(rx, rx->out);
}

static void sign_answer(struct ra_exchange *rx)
{
    const struct ra_state *st = rx->ex->snap->ra;
    if (!st || !ra_identity_ready(&st->ra)) {
        ra_deliver_unanswered(rx);
        fail(rx, RP_E_SYSTEM_UNAVAIL, NULL); /* nothing can be signed as the RA */
        return;
    }
    /* the transaction has started (queued, polled, answered by the CA): its answer goes
     * ahead of new work, like certConf's — in a storm the deadline refuses new jobs first */
    if (submit(rx, rx->job.run, on_answer_signed, RP_JOB_FINISH) != RP_OK) {
        ra_deliver_unanswered(rx);
        rp_metrics_count("raproxy_worker_rejected_total", NULL);
        fail(rx, RP_E_QUEUE_FULL, "Retry-After: 1\r\n");
    }
}

void ra_pipeline_answer(struct ra_exchange *rx, void (*run)(struct rp_job *j), const char *result)
{
    move(rx, RA_EV_SIGN);
    snprintf(rx->ex->log.result, sizeof rx->ex->log.result, "%s", result);
    rx->job.run = run;
    enter(rx);
}

/* ---- after verification ------------------------------------------------------------ */

static struct rp_admit_verified_in verified_in(const struct ra_exchange *rx)
{
    const struct rp_cmp_header *h = &rx->msg.header;
    /* verification named the sender (certificate serialNumber or the MAC kid's identity) */
    return (struct rp_admit_verified_in){
        .domain = rx->dcfg->name,
        .serial = rx->serial,
        .txid = h->transaction_id.val,
        .nonce = h->sender_nonce.val,
        .body = rp_cmp_body_name(rx->msg.body.type),
        .limits = &rx->dcfg->limits,
        .nonce_ttl_s = rp_admit_nonce_ttl_s(h->has_message_time, rx->dcfg->max_clock_skew_s,
                                            rx->dcfg->replay_window_s),
        .allowlist_redis = rx->dcfg->allowlist && strcmp(rx->dcfg->allowlist, "redis") == 0 &&
                           ra_is_cert_request(rx->msg.body.type),
        .allowlist_consume = rx->dcfg->allowlist_consume,
        .on_redis_failure = rx->dcfg->on_redis_failure,
    };
}

static const char *record_why(int err)
{
    return err == RP_E_BAD_SENDER_NONCE ? "senderNonce already used"
           : err == RP_E_TXID_IN_USE    ? "transactionID in use by another device"
           : err == RP_E_UNKNOWN_TXN    ? "no such transaction"
           : err == RP_E_RATE_LIMITED   ? "per-device quota exceeded"
           : err == RP_E_NOT_AUTHORIZED ? "device serial number not on the allowlist"
                                        : NULL;
}

/* An inner message's nonce, transaction and allowlist, as if it had been sent alone. */
static void on_inner_recorded(void *arg, const struct rp_admit_result *res)
{
    struct ra_exchange *rx = arg;
    ra_step_expect(rx, RA_STEP_BIT(RA_RECORD_INNER));
    struct ra_exchange *in = ra_nested_inner(rx, rx->next_inner);
    if (res->claimed)
        in->claim = RA_CLAIM_CREATED;
    if (res->err != RP_OK) {
        char *why = rp_arena_alloc(&rx->ex->arena, RETRY_HDR_MAX * 3);
        if (why)
            snprintf(why, RETRY_HDR_MAX * 3, "inner message %zu: %s", rx->next_inner + 1,
                     record_why(res->err) ? record_why(res->err) : rp_err_msg(res->err));
        refuse(rx, res->err, why);
        return;
    }
    if (++rx->next_inner < ra_nested_count(rx))
        ra_pipeline_advance(rx, RA_EV_INNER);
    else
        ra_deliver_to_ca(rx); /* the CA's budget: now, later (waiting) or refused */
}

static void record_inner(struct ra_exchange *rx)
{
    struct rp_admit_verified_in vin = verified_in(ra_nested_inner(rx, rx->next_inner));
    rp_admit_after_verify(rx->rl->admit, &vin, on_inner_recorded, rx);
}

/* Retry-After of a rate-limit refusal (whole seconds, at least 1). */
static void retry_after(struct ra_exchange *rx, uint32_t ms)
{
    char *hdr = rp_arena_alloc(&rx->ex->arena, RETRY_HDR_MAX);
    if (hdr) {
        snprintf(hdr, RETRY_HDR_MAX, "Retry-After: %u\r\n", (ms + 999) / 1000);
        rx->extra_headers = hdr;
    }
}

static void on_record_refused(struct ra_exchange *rx, const struct rp_admit_result *res)
{
    release_own_claim(rx); /* a file claim made on the worker; Redis undid its own */
    if (res->err == RP_E_UNKNOWN_TXN && res->degraded) {
        /* Redis answered late and the in-process table cannot know a transaction kept
         * in Redis: not the device's fault, and no answer about it either way */
        if (!ra_deliver_poll_unchecked(rx))
            refuse(rx, RP_E_SYSTEM_UNAVAIL, "the transaction cannot be checked now");
        return;
    }
    if (res->err == RP_E_RATE_LIMITED)
        retry_after(rx, res->retry_after_ms); /* per_device: "3/day" says when */
    refuse(rx, res->err, record_why(res->err));
}

static void on_recorded(void *arg, const struct rp_admit_result *res)
{
    struct ra_exchange *rx = arg;
    ra_step_expect(rx, RA_STEP_BIT(RA_RECORD) | RA_STEP_BIT(RA_RECORD_LOCAL));
    if (res->claimed)
        rx->claim = RA_CLAIM_CREATED;
    if (res->err != RP_OK) {
        on_record_refused(rx, res);
        return;
    }
    if (rx->step == RA_RECORD_LOCAL) {
        snprintf(rx->ex->log.result, sizeof rx->ex->log.result, "answered");
        finish(rx, rx->out);
    } else if (rx->msg.body.type == RP_CMP_POLLREQ) {
        ra_deliver_poll(rx); /* a delayed transaction answers here, others go to the CA */
    } else if (ra_nested_count(rx) > 0) {
        rx->next_inner = 0; /* a nested request's inner messages, then to the CA */
        ra_pipeline_advance(rx, RA_EV_INNER);
    } else {
        ra_deliver_to_ca(rx); /* the CA's budget: now, later (waiting) or refused */
    }
}

static void record(struct ra_exchange *rx)
{
    struct rp_admit_verified_in in = verified_in(rx);
    rp_admit_after_verify(rx->rl->admit, &in, on_recorded, rx);
}

/* On a worker: verify, then the RA's own answer (genm answered at the edge) or the request
 * re-protected for the CA; the outcome in rx->job_event for on_verified. */
static void run_verify(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    uint64_t t0 = rp_clock_ns();
    rx->job_event = RA_EV_OK;
    ra_verify_request(rx);
    if (rx->verdict == RP_OK && rx->msg.body.type == RP_CMP_GENM) {
        int rc = ra_genm_answer(rx);
        if (rc == RP_OK)
            rx->job_event = RA_EV_LOCAL;
        else if (rc != RP_E_NOT_FOUND) /* RP_E_NOT_FOUND: not answered here, forwarded */
            rx->verdict = rc;
    }
    if (rx->verdict == RP_OK && rx->job_event == RA_EV_OK)
        rx->verdict = ra_protect_forward(rx);
    if (rx->verdict != RP_OK)
        rx->job_event = RA_EV_REFUSE;
    rx->ex->log.verify_ns = rp_clock_ns() - t0;
    j->result = rx->verdict;
}

/* A MAC that did not verify counts towards its kid's lockout. */
static void count_mac_failure(const struct ra_exchange *rx)
{
    struct rp_admit_mac_fail_in f = {
        .domain = rx->dcfg->name,
        .kid = rp_view_make(rx->mac_id->kid, rx->mac_id->kid_len),
        .failures = rx->dcfg->mac_lockout.failures,
        .window_s = rx->dcfg->mac_lockout.window_s,
        .on_redis_failure = rx->dcfg->on_redis_failure,
    };
    rp_admit_mac_failed(rx->rl->admit, &f);
}

static void on_verified(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    ra_step_expect(rx, RA_STEP_BIT(RA_VERIFY));
    struct rp_exchange *ex = rx->ex;
    if (rp_view_present(rx->serial))
        snprintf(ex->log.serial, sizeof ex->log.serial, "%.*s", (int)rx->serial.len,
                 (const char *)rx->serial.p);
    if (rx->job_event == RA_EV_REFUSE) {
        if (rx->verdict == RP_E_BAD_MESSAGE_CHECK && rx->mac_id)
            count_mac_failure(rx);
        refuse(rx, rx->verdict, rx->why);
        return;
    }
    ra_pipeline_advance(rx, rx->job_event); /* the record, then the CA or the RA's answer */
}

/* ---- admission ------------------------------------------------------------------- */

/* Work that completes a transaction (certConf and error are answered with pkiConf, pollReq
 * fetches what the CA already issued) goes ahead of new requests on the workers: under
 * overload a certificate already issued is worth more than a new enrollment. */
static enum rp_job_class job_class(enum rp_cmp_body_type t)
{
    return t == RP_CMP_CERTCONF || t == RP_CMP_POLLREQ || t == RP_CMP_ERROR ? RP_JOB_FINISH
                                                                            : RP_JOB_NEW;
}

static void start_verify(struct ra_exchange *rx)
{
    if (submit(rx, run_verify, on_verified, job_class(rx->msg.body.type)) != RP_OK) {
        rp_metrics_count("raproxy_worker_rejected_total", NULL);
        fail(rx, RP_E_QUEUE_FULL, "Retry-After: 1\r\n");
    }
}

static void on_admitted(void *arg, const struct rp_admit_result *res)
{
    struct ra_exchange *rx = arg;
    ra_step_expect(rx, RA_STEP_BIT(RA_ADMIT));
    if (res->err == RP_E_RATE_LIMITED) {
        retry_after(rx, res->retry_after_ms);
        char *why = rp_arena_alloc(&rx->ex->arena, 64);
        if (why)
            snprintf(why, 64, "rate limit %s exceeded", res->limit ? res->limit : "");
        refuse(rx, RP_E_RATE_LIMITED, why);
    } else if (res->err != RP_OK) {
        refuse(rx, res->err,
               res->err == RP_E_MAC_LOCKED         ? "senderKID locked out after failed MACs"
               : res->err == RP_E_BAD_SENDER_NONCE ? "senderNonce already used"
                                                   : NULL);
    } else {
        ra_pipeline_advance(rx, RA_EV_OK); /* verify on a worker */
    }
}

static void admit(struct ra_exchange *rx)
{
    struct rp_admit_in in = {
        .domain = rx->dcfg->name,
        .client_addr = rx->ex->client_addr,
        .limits = &rx->dcfg->limits,
        .on_redis_failure = rx->dcfg->on_redis_failure,
    };
    const struct rp_cmp_header *h = &rx->msg.header;
    if (ra_is_mac_alg(h->protection_alg.oid)) {
        /* the secret is looked up here, so an unknown kid costs no hashing, and admission
         * refuses a locked-out kid or a replayed nonce before any */
        const struct ra_secret *sec = ra_domain_secret(rx->domain, h->sender_kid.val);
        if (!sec) {
            refuse(rx, RP_E_SIGNER_NOT_TRUSTED, "no shared secret for this senderKID");
            return;
        }
        in.mac_kid = h->sender_kid.val;
        in.mac_serial = ra_secret_identity(sec);
        in.nonce = h->sender_nonce.val;
        in.mac_lockout_failures = rx->dcfg->mac_lockout.failures;
    }
    rp_admit_start(rx->rl->admit, &in, on_admitted, rx);
}

/* ---- cheap checks on the loop ---------------------------------------------------- */

int ra_check_header(const struct ra_exchange *rx, const char **why)
{
    const struct rp_cmp_msg *m = &rx->msg;
    const struct rp_cmp_header *h = &m->header;
    const struct rp_cfg_domain *d = rx->dcfg;
    if (!rp_view_present(h->transaction_id.val) || h->transaction_id.val.len == 0) {
        *why = "transactionID missing";
        return RP_E_BAD_REQUEST;
    }
    if (h->sender_nonce.val.len < MIN_NONCE_LEN) {
        *why = "senderNonce missing or shorter than 128 bits";
        return RP_E_BAD_SENDER_NONCE;
    }
    if (!h->has_message_time && d->require_message_time) {
        /* without it a captured message could be replayed once its nonce is forgotten */
        *why = "messageTime missing";
        return RP_E_BAD_TIME;
    }
    if (h->has_message_time) {
        int64_t skew = h->message_time - rx->now;
        if (skew < -(int64_t)d->max_clock_skew_s || skew > (int64_t)d->max_clock_skew_s) {
            *why = "messageTime too far from the RA's clock";
            return RP_E_BAD_TIME;
        }
    }
    if (!(rx->domain->allow_mask & (1u << m->body.type))) {
        *why = "this message type is not accepted in this domain";
        return RP_E_NOT_AUTHORIZED;
    }
    if (!m->has_protection || !rp_view_present(h->protection_alg.raw)) {
        *why = "message is not protected";
        return RP_E_WRONG_INTEGRITY;
    }
    bool mac = ra_is_mac_alg(h->protection_alg.oid);
    if (mac ? !(d->protection & RP_PROT_MAC) : !(d->protection & RP_PROT_SIGNATURE)) {
        *why = mac ? "MAC protection is not accepted in this domain"
                   : "signature protection is not accepted in this domain";
        return RP_E_WRONG_INTEGRITY;
    }
    enum rp_sig_alg alg;
    if (!mac && rp_sig_alg_parse(h->protection_alg.raw, &alg) != RP_OK) {
        *why = "protection algorithm not supported";
        return RP_E_BAD_ALG;
    }
    return RP_OK;
}

static void check_request(struct ra_exchange *rx)
{
    const char *why = NULL;
    int rc = ra_check_header(rx, &why);
    if (rc != RP_OK)
        refuse(rx, rc, why);
    else
        ra_pipeline_advance(rx, RA_EV_OK); /* admission */
}

/* RA_START: the request is decoded (views into the request buffer). */
static void decode(struct ra_exchange *rx)
{
    struct rp_exchange *ex = rx->ex;
    struct rp_cmp_err where = {0};
    int rc = rp_cmp_decode(ex->req->body.p, ex->req->body.len, &ex->arena, &rx->msg, &where);
    if (rc != RP_OK && rc != RP_E_CMP_VERSION) {
        rp_log_info("decode", "%s: %s at byte %zu (expected %s)", ex->client_addr, rp_err_name(rc),
                    where.offset, where.expected ? where.expected : "?");
        refuse(rx, rc == RP_E_ARENA ? RP_E_BAD_REQUEST : RP_E_CMP_BODY, "malformed PKIMessage");
        return;
    }
    const struct rp_cmp_header *h = &rx->msg.header;
    snprintf(ex->log.body, sizeof ex->log.body, "%s", rp_cmp_body_name(rx->msg.body.type));
    size_t n = h->transaction_id.val.len < 16 ? h->transaction_id.val.len : 16;
    rp_view_hex(rp_view_make(h->transaction_id.val.p, n), ex->log.txid);
    if (rc == RP_E_CMP_VERSION) {
        move(rx, RA_EV_OK); /* decoded: the error answers it */
        refuse(rx, rc, "pvno must be 2 or 3");
        return;
    }
    ra_pipeline_advance(rx, RA_EV_OK); /* the header checks */
}

/* ---- routing ---------------------------------------------------------------------- */

static int route(const struct rp_config *cfg, struct rp_view path, const struct rp_cfg_domain **out)
{
    char buf[DOMAIN_PATH_MAX];
    for (unsigned i = 0; i < cfg->domains_count; i++) {
        const struct rp_cfg_domain *d = &cfg->domains[i];
        const char *dp = rp_config_domain_path(d, buf, sizeof buf);
        if (dp && rp_url_path_is(path, dp)) {
            *out = d;
            return 1;
        }
        for (unsigned j = 0; j < d->paths_count; j++)
            if (rp_url_path_is(path, d->paths[j])) {
                *out = d;
                return 1;
            }
    }
    if (cfg->default_path && rp_url_path_is(path, cfg->default_path)) {
        *out = cfg->domains_count ? &cfg->domains[0] : NULL;
        return 1;
    }
    return 0;
}

/* The HTTP request is a CMP request for a route: answered with an HTTP error when not. */
static bool http_ok(struct rp_exchange *ex)
{
    const struct rp_http_req *req = ex->req;
    if (req->method != HTTP_POST) {
        answer_http(ex, RP_E_HTTP_METHOD, "Allow: POST\r\n");
        return false;
    }
    if (!rp_http_media_type_is(req->content_type, CMP_CONTENT_TYPE)) {
        answer_http(ex, RP_E_HTTP_CTYPE, NULL);
        return false;
    }
    if (req->body.len == 0) {
        answer_http(ex, RP_E_HTTP_PARSE, NULL);
        return false;
    }
    return true;
}

void rp_server_on_exchange(struct rp_exchange *ex)
{
    const struct rp_config *cfg = ex->snap->cfg;
    const struct rp_cfg_domain *domain = NULL;
    if (rp_ocsp_route(cfg, ex->req->path)) {
        rp_ocsp_handle(ex); /* the validation relay: OCSP to the configured VA */
        return;
    }
    if (!route(cfg, ex->req->path, &domain)) {
        answer_http(ex, RP_E_HTTP_PATH, NULL);
        return;
    }
    if (domain)
        snprintf(ex->log.domain, sizeof ex->log.domain, "%s", domain->name);
    if (!http_ok(ex))
        return;
    struct ra_exchange *rx = rp_arena_calloc(&ex->arena, 1, sizeof *rx);
    if (!rx) {
        answer_http(ex, RP_E_NOMEM, NULL);
        return;
    }
    rx->ex = ex;
    rx->rl = rp_loop_app(ex->loop);
    rx->dcfg = domain;
    rx->now = rp_clock_wall_s();
    rx->step = RA_START;
    rp_log_debug("step", "txid -: none -> start (%s)", domain ? domain->name : "relay");
    ex->app = rx;
    if (!domain) {
        /* no trust domain configured at all: raproxy is a plain relay to the CA */
        ra_pipeline_advance(rx, RA_EV_RELAY);
        return;
    }
    rx->domain = ra_state_domain(ex->snap->ra, domain);
    if (!rx->domain || !rx->rl || !rx->rl->admit) {
        /* never relay a domain's traffic unchecked (start-up refuses to run like this) */
        rp_log_error("pipeline", "domain %s: no verification state on this loop", domain->name);
        fail(rx, RP_E_SYSTEM_UNAVAIL, NULL);
        return;
    }
    decode(rx);
}
