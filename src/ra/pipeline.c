/* The exchange pipeline (DESIGN.md, "One exchange, end to end"), on the loop thread:
 * HTTP policy → route to a trust domain → decode → header checks → admission → verify and
 * re-protect on a worker → record (replay, transaction) → forward → check the CA's answer
 * → relay. Every refusal is an RA-signed CMP error (signed on a worker) with its failInfo. */
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

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMP_CONTENT_TYPE "application/pkixcmp"
#define DOMAIN_PATH_MAX  300
#define MIN_NONCE_LEN    16u
#define RETRY_HDR_MAX    48

static void finish(struct ra_exchange *rx, int status, const char *ctype, struct rp_view body)
{
    struct rp_exchange *ex = rx->ex;
    char lbl[160];
    snprintf(lbl, sizeof lbl, "domain=\"%s\",body=\"%s\",result=\"%s\"", ex->log.domain,
             ex->log.body[0] ? ex->log.body : "none", ex->log.result[0] ? ex->log.result : "ok");
    rp_metrics_count("raproxy_cmp_requests_total", lbl);
    rx->step = RA_DONE;
    rp_exchange_respond(ex, status, ctype, body.p, body.len, rx->extra_headers);
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

/* ---- refusals ------------------------------------------------------------------- */

static void on_error_signed(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    if (j->result != RP_OK) {
        rp_log_error("refuse", "cannot sign the CMP error: %s", rp_err_msg(j->result));
        answer_http(rx->ex, RP_E_SYSTEM_UNAVAIL, NULL);
        return;
    }
    finish(rx, rx->http_status ? rx->http_status : 200, CMP_CONTENT_TYPE, rx->out);
}

static void run_sign_error(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    j->result = ra_protect_error(rx, rx->verdict, rx->why);
}

/* Answer with an RA-signed CMP error carrying err's failInfo. */
static void refuse(struct ra_exchange *rx, int err, const char *why)
{
    struct rp_exchange *ex = rx->ex;
    rx->verdict = err;
    rx->why = why;
    snprintf(ex->log.result, sizeof ex->log.result, "refused");
    const char *fi = rp_failinfo_name(rp_err_failinfo(err));
    snprintf(ex->log.failinfo, sizeof ex->log.failinfo, "%s", fi ? fi : rp_err_name(err));
    const struct ra_state *st = ex->snap->ra;
    bool budget =
        !rx->rl->admit || !rx->dcfg || rp_admit_may_sign_error(rx->rl->admit, rx->dcfg->name);
    if (!st || !ra_identity_ready(&st->ra) || !budget || !rx->rl->workers) {
        /* no key (or its token is down) or over the signing budget: an HTTP answer costs
         * no crypto */
        int e = err == RP_E_RATE_LIMITED ? RP_E_RATE_LIMITED : RP_E_SYSTEM_UNAVAIL;
        answer_http(ex, e, rx->extra_headers);
        return;
    }
    rx->step = RA_SIGN_ERROR;
    rx->job.run = run_sign_error;
    rx->job.done = on_error_signed;
    if (rp_workers_submit(rx->rl->workers, &rx->job, &rx->rl->port) != RP_OK)
        answer_http(ex, RP_E_QUEUE_FULL, "Retry-After: 1\r\n");
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

/* Settle the claim of this exchange's transaction (a no-op when it holds none). */
static void settle_claim(struct ra_exchange *rx, enum rp_admit_settle how)
{
    if (!rx->decoded)
        return;
    ra_claim_settle(rx->rl, rx->dcfg, rx->domain, rx->serial, rx->msg.header.transaction_id.val,
                    how, 0);
}

/* The request will not get an answer from the CA (refused here, not sent, not answered):
 * a serial this exchange claimed goes back. A retry of the same transaction that only
 * joined the claim leaves it to the exchange that made it. */
static void release_own_claim(struct ra_exchange *rx);
static enum rp_job_class job_class(enum rp_cmp_body_type t);

void ra_pipeline_release_claim(struct ra_exchange *rx)
{
    release_own_claim(rx);
}

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
    finish(rx, 200, CMP_CONTENT_TYPE, relay);
}

/* ---- the CA's answer -------------------------------------------------------------- */

/* A nested request's answer: the outer answers the outer request, and each inner answer one
 * inner request (its transaction, its nonce echoed, a fitting body); relayed whole. */
static const char *check_nested_answer(struct ra_exchange *rx, const struct rp_cmp_msg *m)
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

/* The answer belongs to the request: same transaction, our nonce echoed, a fitting body.
 * A nested answer with one message is unwrapped for the device. */
static const char *check_answer(struct ra_exchange *rx, struct rp_view resp, struct rp_view *relay)
{
    if (rx->msg.body.type != RP_CMP_NESTED) {
        struct rp_cmp_msg *relay_msg;
        return ra_answer_check(&rx->msg, resp, &rx->ex->arena, &rx->answer, &relay_msg, relay);
    }
    struct rp_cmp_msg *m = rp_arena_calloc(&rx->ex->arena, 1, sizeof *m);
    if (!m || rp_cmp_decode(resp.p, resp.len, &rx->ex->arena, m, NULL) != RP_OK)
        return "undecodable answer";
    rx->answer = m; /* the outer message: that is what the CA signed */
    *relay = resp;
    return check_nested_answer(rx, m);
}

static void run_verify_answer(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    j->result = ra_verify_answer(rx->ex->snap->ra, rx->answer, &rx->ex->arena, rx->now, &rx->why);
}

static void on_answer_verified(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    if (j->result != RP_OK) {
        rp_log_warn("upstream", "txid %s: CA answer refused: %s", rx->ex->log.txid,
                    rx->why ? rx->why : rp_err_msg(j->result));
        release_own_claim(rx);
        refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA's answer is not signed by a trusted CA");
        return;
    }
    relay_answer(rx, rx->relay);
}

static void on_upstream(struct rp_upstream_req *up)
{
    struct ra_exchange *rx = up->arg;
    struct rp_exchange *ex = rx->ex;
    ex->log.upstream_ns = up->t_end_ns - up->t_start_ns;
    ex->log.upstream_status = up->status;
    if (rx->decoded && ra_deliver_not_taken(rx, up->err, up->sent, up->status))
        return; /* the CA did not take it: kept for later, the device polls */
    ra_deliver_answered(rx);
    if (up->err != RP_OK) {
        rp_log_warn("upstream", "txid %s: %s (request %s)", ex->log.txid, rp_err_msg(up->err),
                    up->sent ? "may have reached the CA: not retried" : "not sent");
        if (!rx->decoded) {
            answer_http(ex, up->err, NULL);
            return;
        }
        release_own_claim(rx); /* the CA never answered */
        refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA is not available");
        return;
    }
    if (up->status != 200 || !rp_http_media_type_is(up->ctype, CMP_CONTENT_TYPE)) {
        rp_log_warn("upstream", "txid %s: CA answered HTTP %d", ex->log.txid, up->status);
        if (!rx->decoded) {
            answer_http(ex, RP_E_UPSTREAM_STATUS, NULL);
            return;
        }
        release_own_claim(rx);
        refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA answered with an HTTP error");
        return;
    }
    struct rp_view relay = up->resp;
    if (rx->decoded) {
        /* the pool frees its buffer after this callback: keep a copy for the checks */
        uint8_t *copy = rp_arena_dup(&ex->arena, up->resp.p, up->resp.len);
        if (!copy) {
            release_own_claim(rx);
            refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA's answer is too large");
            return;
        }
        const char *bad = check_answer(rx, rp_view_make(copy, up->resp.len), &relay);
        if (bad) {
            rp_log_warn("upstream", "txid %s: CA answer refused: %s", ex->log.txid, bad);
            rx->answer = NULL;
            release_own_claim(rx);
            refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA's answer does not match the request");
            return;
        }
        const struct ra_state *st = ex->snap->ra;
        if (st && st->has_ca_trust) {
            rx->relay = relay;
            rx->step = RA_VERIFY;
            rx->job.run = run_verify_answer;
            rx->job.done = on_answer_verified;
            rx->job.cls = RP_JOB_FINISH; /* the CA has acted: finish what it started */
            if (rp_workers_submit(rx->rl->workers, &rx->job, &rx->rl->port) != RP_OK) {
                release_own_claim(rx);
                refuse(rx, RP_E_SYSTEM_UNAVAIL, "crypto workers busy");
            }
            return;
        }
    }
    /* the upstream buffer is freed after this callback: respond copies it synchronously */
    relay_answer(rx, relay);
}

static void forward(struct ra_exchange *rx, struct rp_view msg)
{
    struct rp_exchange *ex = rx->ex;
    struct rp_upstream *u = rp_loop_upstream(ex->loop);
    if (!u) {
        if (rx->decoded && ra_deliver_not_taken(rx, RP_E_SHUTDOWN, false, 0))
            return;
        ra_deliver_answered(rx);
        answer_http(ex, RP_E_SHUTDOWN, NULL);
        return;
    }
    rx->step = RA_UPSTREAM;
    rx->up.path = rx->dcfg ? rx->dcfg->upstream_path : NULL;
    rx->up.content_type = CMP_CONTENT_TYPE;
    rx->up.body = msg.p;
    rx->up.len = msg.len;
    rx->up.cb = on_upstream;
    rx->up.arg = rx;
    int rc = rp_upstream_send(u, &rx->up);
    if (rc == RP_OK)
        return;
    if (rx->decoded && ra_deliver_not_taken(rx, rc, false, 0))
        return;
    ra_deliver_answered(rx);
    release_own_claim(rx);
    if (rx->decoded)
        refuse(rx, RP_E_SYSTEM_UNAVAIL, "the CA queue is full");
    else
        answer_http(ex, rc, "Retry-After: 1\r\n");
}

void ra_pipeline_forward(struct ra_exchange *rx)
{
    forward(rx, rx->out);
}

void ra_pipeline_refuse(struct ra_exchange *rx, int err, const char *why)
{
    refuse(rx, err, why);
}

static void on_answer_signed(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    if (j->result != RP_OK) {
        rp_log_error("delayed", "txid %s: cannot sign the answer: %s", rx->ex->log.txid,
                     rp_err_msg(j->result));
        ra_deliver_unanswered(rx);
        answer_http(rx->ex, RP_E_SYSTEM_UNAVAIL, NULL);
        return;
    }
    finish(rx, 200, CMP_CONTENT_TYPE, rx->out);
}

void ra_pipeline_answer(struct ra_exchange *rx, void (*run)(struct rp_job *j), const char *result)
{
    snprintf(rx->ex->log.result, sizeof rx->ex->log.result, "%s", result);
    const struct ra_state *st = rx->ex->snap->ra;
    if (!st || !ra_identity_ready(&st->ra)) {
        ra_deliver_unanswered(rx);
        answer_http(rx->ex, RP_E_SYSTEM_UNAVAIL, NULL); /* nothing can be signed as the RA */
        return;
    }
    rx->step = RA_DELAYED;
    rx->job.run = run;
    rx->job.done = on_answer_signed;
    /* the transaction has started (queued, polled, answered by the CA): its answer goes
     * ahead of new work, like certConf's — in a storm the deadline refuses new jobs first */
    rx->job.cls = RP_JOB_FINISH;
    if (rp_workers_submit(rx->rl->workers, &rx->job, &rx->rl->port) != RP_OK) {
        ra_deliver_unanswered(rx);
        rp_metrics_count("raproxy_worker_rejected_total", NULL);
        answer_http(rx->ex, RP_E_QUEUE_FULL, "Retry-After: 1\r\n");
    }
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

static void record_inner(struct ra_exchange *rx, size_t i);

/* An inner message's nonce, transaction and allowlist, as if it had been sent alone. */
static void on_inner_recorded(void *arg, const struct rp_admit_result *res)
{
    struct ra_exchange *rx = arg;
    struct ra_exchange *in = ra_nested_inner(rx, rx->next_inner);
    if (res->claimed)
        in->claim = RA_CLAIM_CREATED;
    if (res->err != RP_OK) {
        release_own_claim(rx);
        char *why = rp_arena_alloc(&rx->ex->arena, RETRY_HDR_MAX * 3);
        if (why)
            snprintf(why, RETRY_HDR_MAX * 3, "inner message %zu: %s", rx->next_inner + 1,
                     record_why(res->err) ? record_why(res->err) : rp_err_msg(res->err));
        refuse(rx, res->err, why);
        return;
    }
    record_inner(rx, rx->next_inner + 1);
}

static void record_inner(struct ra_exchange *rx, size_t i)
{
    struct ra_exchange *in = ra_nested_inner(rx, i);
    if (!in) {
        ra_deliver_to_ca(rx); /* the CA's budget: now, later (waiting) or refused */
        return;
    }
    rx->next_inner = i;
    struct rp_admit_verified_in vin = verified_in(in);
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

static void on_recorded(void *arg, const struct rp_admit_result *res)
{
    struct ra_exchange *rx = arg;
    if (res->claimed)
        rx->claim = RA_CLAIM_CREATED;
    if (res->err != RP_OK) {
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
        return;
    }
    if (rx->local_answer) {
        snprintf(rx->ex->log.result, sizeof rx->ex->log.result, "answered");
        finish(rx, 200, CMP_CONTENT_TYPE, rx->out);
        return;
    }
    if (rx->msg.body.type == RP_CMP_POLLREQ) {
        ra_deliver_poll(rx); /* a delayed transaction answers here, others go to the CA */
        return;
    }
    record_inner(rx, 0); /* a nested request's inner messages, then to the CA */
}

static void run_verify(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    uint64_t t0 = rp_clock_ns();
    ra_verify_request(rx);
    if (rx->verdict == RP_OK && rx->msg.body.type == RP_CMP_GENM) {
        rx->verdict = ra_genm_answer(rx); /* PKI information answered at the edge */
        if (rx->verdict == RP_E_NOT_FOUND)
            rx->verdict = RP_OK; /* not configured locally: forwarded */
    }
    if (rx->verdict == RP_OK && !rx->local_answer)
        rx->verdict = ra_protect_forward(rx);
    rx->ex->log.verify_ns = rp_clock_ns() - t0;
    j->result = rx->verdict;
}

static void on_verified(struct rp_job *j)
{
    struct ra_exchange *rx = container_of(j, struct ra_exchange, job);
    struct rp_exchange *ex = rx->ex;
    if (rp_view_present(rx->serial))
        snprintf(ex->log.serial, sizeof ex->log.serial, "%.*s", (int)rx->serial.len,
                 (const char *)rx->serial.p);
    if (rx->verdict != RP_OK) {
        release_own_claim(rx);
        if (rx->verdict == RP_E_BAD_MESSAGE_CHECK && rx->mac_id) {
            struct rp_admit_mac_fail_in f = {
                .domain = rx->dcfg->name,
                .kid = rp_view_make(rx->mac_id->kid, rx->mac_id->kid_len),
                .failures = rx->dcfg->mac_lockout.failures,
                .window_s = rx->dcfg->mac_lockout.window_s,
                .on_redis_failure = rx->dcfg->on_redis_failure,
            };
            rp_admit_mac_failed(rx->rl->admit, &f);
        }
        refuse(rx, rx->verdict, rx->why);
        return;
    }
    rx->step = RA_RECORD;
    struct rp_admit_verified_in in = verified_in(rx);
    rp_admit_after_verify(rx->rl->admit, &in, on_recorded, rx);
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

static void on_admitted(void *arg, const struct rp_admit_result *res)
{
    struct ra_exchange *rx = arg;
    if (res->err != RP_OK) {
        if (res->err == RP_E_RATE_LIMITED) {
            retry_after(rx, res->retry_after_ms);
            char *why = rp_arena_alloc(&rx->ex->arena, 64);
            if (why)
                snprintf(why, 64, "rate limit %s exceeded", res->limit ? res->limit : "");
            refuse(rx, RP_E_RATE_LIMITED, why);
            return;
        }
        refuse(rx, res->err,
               res->err == RP_E_MAC_LOCKED         ? "senderKID locked out after failed MACs"
               : res->err == RP_E_BAD_SENDER_NONCE ? "senderNonce already used"
                                                   : NULL);
        return;
    }
    rx->step = RA_VERIFY;
    rx->job.run = run_verify;
    rx->job.done = on_verified;
    rx->job.cls = job_class(rx->msg.body.type);
    if (rp_workers_submit(rx->rl->workers, &rx->job, &rx->rl->port) != RP_OK) {
        rp_metrics_count("raproxy_worker_rejected_total", NULL);
        answer_http(rx->ex, RP_E_QUEUE_FULL, "Retry-After: 1\r\n");
    }
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

static void start_cmp(struct ra_exchange *rx)
{
    struct rp_exchange *ex = rx->ex;
    struct rp_cmp_err where = {0};
    int rc = rp_cmp_decode(ex->req->body.p, ex->req->body.len, &ex->arena, &rx->msg, &where);
    if (rc == RP_OK || rc == RP_E_CMP_VERSION) {
        rx->decoded = true;
        const struct rp_cmp_header *h = &rx->msg.header;
        snprintf(ex->log.body, sizeof ex->log.body, "%s", rp_cmp_body_name(rx->msg.body.type));
        size_t n = h->transaction_id.val.len < 16 ? h->transaction_id.val.len : 16;
        for (size_t i = 0; i < n; i++)
            snprintf(ex->log.txid + 2 * i, 3, "%02x", h->transaction_id.val.p[i]);
    }
    if (rc == RP_E_CMP_VERSION) {
        refuse(rx, rc, "pvno must be 2 or 3");
        return;
    }
    if (rc != RP_OK) {
        rp_log_info("decode", "%s: %s at byte %zu (expected %s)", ex->client_addr, rp_err_name(rc),
                    where.offset, where.expected ? where.expected : "?");
        refuse(rx, rc == RP_E_ARENA ? RP_E_BAD_REQUEST : RP_E_CMP_BODY, "malformed PKIMessage");
        return;
    }
    const char *why = NULL;
    rc = ra_check_header(rx, &why);
    if (rc != RP_OK) {
        refuse(rx, rc, why);
        return;
    }
    rx->step = RA_ADMIT;
    struct rp_admit_in in = {
        .domain = rx->dcfg->name,
        .client_addr = ex->client_addr,
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

/* ---- routing ---------------------------------------------------------------------- */

/* Paths match exactly, except that a trailing slash is optional on either side. */
static bool path_matches(struct rp_view path, const char *want)
{
    size_t plen = path.len, wlen = strlen(want);
    for (size_t i = 0; i < plen; i++)
        if (path.p[i] == '?') {
            plen = i;
            break;
        }
    while (plen > 1 && path.p[plen - 1] == '/')
        plen--;
    while (wlen > 1 && want[wlen - 1] == '/')
        wlen--;
    return plen == wlen && memcmp(path.p, want, plen) == 0;
}

static int route(const struct rp_config *cfg, struct rp_view path, const struct rp_cfg_domain **out)
{
    char buf[DOMAIN_PATH_MAX];
    for (unsigned i = 0; i < cfg->domains_count; i++) {
        const struct rp_cfg_domain *d = &cfg->domains[i];
        const char *dp = rp_config_domain_path(d, buf, sizeof buf);
        if (dp && path_matches(path, dp)) {
            *out = d;
            return 1;
        }
        for (unsigned j = 0; j < d->paths_count; j++)
            if (path_matches(path, d->paths[j])) {
                *out = d;
                return 1;
            }
    }
    if (cfg->default_path && path_matches(path, cfg->default_path)) {
        *out = cfg->domains_count ? &cfg->domains[0] : NULL;
        return 1;
    }
    return 0;
}

void rp_server_on_exchange(struct rp_exchange *ex)
{
    const struct rp_http_req *req = ex->req;
    const struct rp_config *cfg = ex->snap->cfg;
    const struct rp_cfg_domain *domain = NULL;
    if (rp_ocsp_route(cfg, req->path)) {
        rp_ocsp_handle(ex); /* the validation relay: OCSP to the configured VA */
        return;
    }
    if (!route(cfg, req->path, &domain)) {
        answer_http(ex, RP_E_HTTP_PATH, NULL);
        return;
    }
    if (domain)
        snprintf(ex->log.domain, sizeof ex->log.domain, "%s", domain->name);
    if (req->method != HTTP_POST) {
        answer_http(ex, RP_E_HTTP_METHOD, "Allow: POST\r\n");
        return;
    }
    if (!rp_http_media_type_is(req->content_type, CMP_CONTENT_TYPE)) {
        answer_http(ex, RP_E_HTTP_CTYPE, NULL);
        return;
    }
    if (req->body.len == 0) {
        answer_http(ex, RP_E_HTTP_PARSE, NULL);
        return;
    }
    struct ra_exchange *rx = rp_arena_calloc(&ex->arena, 1, sizeof *rx);
    if (!rx) {
        answer_http(ex, RP_E_NOMEM, NULL);
        return;
    }
    rx->ex = ex;
    rx->rl = rp_loop_app(ex->loop);
    rx->dcfg = domain;
    rx->now = rp_clock_wall_s();
    ex->app = rx;
    if (!domain) {
        /* no trust domain configured at all: raproxy is a plain relay to the CA */
        forward(rx, req->body);
        return;
    }
    rx->domain = ra_state_domain(ex->snap->ra, domain);
    if (!rx->domain || !rx->rl || !rx->rl->admit) {
        /* never relay a domain's traffic unchecked (start-up refuses to run like this) */
        rp_log_error("pipeline", "domain %s: no verification state on this loop", domain->name);
        answer_http(ex, RP_E_SYSTEM_UNAVAIL, NULL);
        return;
    }
    start_cmp(rx);
}
