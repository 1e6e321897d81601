/* What the CA's answer must be to be relayed, and what it means for an allowlist claim:
 * shared by the exchanges sent at once (pipeline.c) and the delayed ones (deliver.c). */
#include "ra.h"

#include "raproxy/admit.h"
#include "raproxy/err.h"

bool ra_answer_fits(enum rp_cmp_body_type req, enum rp_cmp_body_type resp)
{
    if (resp == RP_CMP_ERROR)
        return true;
    switch (req) {
    case RP_CMP_IR:
        return resp == RP_CMP_IP || resp == RP_CMP_POLLREP;
    case RP_CMP_CR:
    case RP_CMP_P10CR:
        return resp == RP_CMP_CP || resp == RP_CMP_POLLREP;
    case RP_CMP_KUR:
        return resp == RP_CMP_KUP || resp == RP_CMP_POLLREP;
    case RP_CMP_KRR:
        return resp == RP_CMP_KRP;
    case RP_CMP_CCR:
        return resp == RP_CMP_CCP;
    case RP_CMP_POLLREQ:
        return resp == RP_CMP_POLLREP || resp == RP_CMP_IP || resp == RP_CMP_CP ||
               resp == RP_CMP_KUP;
    case RP_CMP_CERTCONF:
    case RP_CMP_ERROR:
        return resp == RP_CMP_PKICONF;
    case RP_CMP_RR:
        return resp == RP_CMP_RP;
    case RP_CMP_GENM:
        return resp == RP_CMP_GENP;
    default:
        return false;
    }
}

const char *ra_answer_check(const struct rp_cmp_msg *req, struct rp_view resp, struct rp_arena *a,
                            struct rp_cmp_msg **outer, struct rp_cmp_msg **relay_msg,
                            struct rp_view *relay)
{
    struct rp_cmp_msg *m = rp_arena_calloc(a, 1, sizeof *m);
    *outer = *relay_msg = NULL;
    if (!m || rp_cmp_decode(resp.p, resp.len, a, m, NULL) != RP_OK)
        return "undecodable answer";
    *outer = m; /* that is what the CA signed */
    *relay = resp;
    if (m->body.type == RP_CMP_NESTED && m->body.nested.n == 1) {
        m = &m->body.nested.msgs[0];
        *relay = m->raw;
    }
    *relay_msg = m;
    const struct rp_cmp_header *q = &req->header, *r = &m->header;
    if (!rp_view_eq(q->transaction_id.val, r->transaction_id.val))
        return "transactionID differs";
    if (!rp_view_eq(q->sender_nonce.val, r->recip_nonce.val))
        return "recipNonce is not the request's senderNonce";
    if (!ra_answer_fits(req->body.type, m->body.type))
        return "body type does not answer the request";
    return NULL;
}

int ra_answer_settles(enum rp_cmp_body_type req, const struct rp_cmp_msg *m)
{
    if (!m || !(ra_is_cert_request(req) || req == RP_CMP_POLLREQ))
        return -1;
    if (m->body.type == RP_CMP_NESTED && m->body.nested.n == 1)
        m = &m->body.nested.msgs[0];
    switch (m->body.type) {
    case RP_CMP_IP:
    case RP_CMP_CP:
    case RP_CMP_KUP: {
        bool waiting = false;
        for (size_t i = 0; i < m->body.rep.n; i++) {
            int64_t st = m->body.rep.resps[i].status.status;
            if (st == RP_CMP_STATUS_ACCEPTED || st == RP_CMP_STATUS_GRANTED_WITH_MODS)
                return RP_ADMIT_CONSUME;
            waiting = waiting || st == RP_CMP_STATUS_WAITING;
        }
        return waiting ? RP_ADMIT_KEEP : RP_ADMIT_RELEASE;
    }
    case RP_CMP_POLLREP:
        return RP_ADMIT_KEEP;
    case RP_CMP_ERROR:
        return RP_ADMIT_RELEASE;
    default:
        return -1;
    }
}

bool ra_answer_waits(const struct rp_cmp_msg *m)
{
    if (!m)
        return false;
    if (m->body.type == RP_CMP_POLLREP)
        return true;
    if (m->body.type == RP_CMP_ERROR)
        return m->body.error.status.status == RP_CMP_STATUS_WAITING;
    if (m->body.type != RP_CMP_IP && m->body.type != RP_CMP_CP && m->body.type != RP_CMP_KUP)
        return false;
    for (size_t i = 0; i < m->body.rep.n; i++)
        if (m->body.rep.resps[i].status.status == RP_CMP_STATUS_WAITING)
            return true;
    return false;
}
