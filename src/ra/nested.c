/* A nested request from a device (RFC 9810 §5.1.3.4, RFC 9483 §5.2.2), in a domain that
 * lists `nested` in allow: every inner message passes the pipeline as if it had been sent
 * alone — header checks, protection, identity, proof of possession, authorization, template
 * policy (here, on the worker that verified the outer message), then its nonce, transaction
 * and allowlist in admission (pipeline.c) — and the whole is refused, with the first
 * refusal's failInfo, when any inner one is. What reaches the CA is an RA-signed nested
 * message of the inner messages as the RA forwards each alone (re-protected, or rewritten;
 * kur unchanged). The CA's answer must answer each inner request (nested.c's check below). */
#include "ra.h"

#include "raproxy/admit.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"

#include <stdio.h>
#include <string.h>

#define WHY_MAX 160

struct ra_nested {
    struct ra_exchange *inner;
    size_t n;
};

size_t ra_nested_count(const struct ra_exchange *rx)
{
    return rx->nested ? rx->nested->n : 0;
}

struct ra_exchange *ra_nested_inner(struct ra_exchange *rx, size_t i)
{
    return rx->nested && i < rx->nested->n ? &rx->nested->inner[i] : NULL;
}

/* "inner message N: why", in the arena (why is static text or arena text). */
static const char *inner_why(struct ra_exchange *rx, size_t i, const char *why)
{
    char *s = rp_arena_alloc(&rx->ex->arena, WHY_MAX);
    if (!s)
        return why;
    snprintf(s, WHY_MAX, "inner message %zu: %s", i + 1, why ? why : "refused");
    return s;
}

static int verify_one(struct ra_exchange *in, const char **why)
{
    int rc = ra_check_header(in, why);
    if (rc != RP_OK)
        return rc;
    if (in->msg.body.type == RP_CMP_NESTED) {
        *why = "nested inside nested";
        return RP_E_BAD_REQUEST;
    }
    ra_verify_request(in);
    *why = in->why;
    if (in->verdict != RP_OK)
        return in->verdict;
    rc = ra_protect_forward(in);
    if (rc != RP_OK)
        *why = "cannot re-protect the inner message";
    return rc;
}

/* Gives back the serials inner messages claimed (file allowlist) when the whole fails. */
static void release_inner_claims(struct ra_exchange *rx, size_t upto)
{
    for (size_t i = 0; i < upto; i++) {
        struct ra_exchange *in = &rx->nested->inner[i];
        if (in->claim == RA_CLAIM_CREATED && rx->domain->claims)
            ra_claims_settle(rx->domain->claims, in->serial, in->msg.header.transaction_id.val,
                             RP_ADMIT_RELEASE);
        in->claim = RA_CLAIM_NONE;
    }
}

int ra_nested_verify(struct ra_exchange *rx, const char **why)
{
    const struct rp_cmp_nested *q = &rx->msg.body.nested;
    if (q->n > rx->dcfg->max_requests) {
        *why = "more inner messages than the domain allows (max_requests)";
        return RP_E_BAD_REQUEST;
    }
    struct ra_nested *nest = rp_arena_calloc(&rx->ex->arena, 1, sizeof *nest);
    struct ra_exchange *inner = rp_arena_calloc(&rx->ex->arena, q->n, sizeof *inner);
    if (!nest || !inner) {
        *why = "message too large";
        return RP_E_ARENA;
    }
    nest->inner = inner;
    rx->nested = nest;
    for (size_t i = 0; i < q->n; i++) {
        struct ra_exchange *in = &inner[i];
        in->ex = rx->ex;
        in->rl = rx->rl;
        in->dcfg = rx->dcfg;
        in->domain = rx->domain;
        in->msg = q->msgs[i];
        in->step = RA_VERIFY; /* on this worker, with its outer message */
        in->now = rx->now;
        in->inner = true;
        nest->n = i + 1;
        const char *w = NULL;
        int rc = verify_one(in, &w);
        if (rc != RP_OK) {
            release_inner_claims(rx, i + 1);
            *why = inner_why(rx, i, w);
            return rc;
        }
    }
    return RP_OK;
}

void ra_nested_release_claims(struct ra_exchange *rx)
{
    if (rx->nested)
        release_inner_claims(rx, rx->nested->n);
}

/* The inner request an inner answer belongs to (same transactionID), or NULL. */
struct ra_exchange *ra_nested_for(const struct ra_exchange *rx, const struct rp_cmp_msg *answer)
{
    for (size_t i = 0; rx->nested && i < rx->nested->n; i++)
        if (rp_view_eq(rx->nested->inner[i].msg.header.transaction_id.val,
                       answer->header.transaction_id.val))
            return &rx->nested->inner[i];
    return NULL;
}
