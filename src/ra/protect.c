/* What the RA sends, signed with its key, on a crypto worker (DESIGN.md step 7): the
 * re-protected or nested request for the CA, and every refusal to a device. */
#include "ra.h"

#include "raproxy/cmp_encode.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"
#include "raproxy/metrics.h"
#include "raproxy/snapshot.h"
#include "raproxy/sig.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>

#define RA_NONCE_LEN    16u
#define RA_FREETEXT_MAX 200u

static struct rp_metric *m_key_down, *m_key_error;

static void key_metrics_init(void)
{
    rp_metrics_help("raproxy_ra_key_failures_total", RP_METRIC_COUNTER,
                    "RA signatures that failed because the RA key's PKCS#11 token was down "
                    "(token_down: refused at once) or failed the operation (token_error).");
    m_key_down =
        rp_metric_get("raproxy_ra_key_failures_total", RP_METRIC_COUNTER, "reason=\"token_down\"");
    m_key_error =
        rp_metric_get("raproxy_ra_key_failures_total", RP_METRIC_COUNTER, "reason=\"token_error\"");
}

/* Make the failure counters exist (at 0) before the first failure, for dashboards. */
void ra_key_metrics_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, key_metrics_init);
}

static void count_key_failure(int rc)
{
    ra_key_metrics_init();
    if (rc == RP_E_KEY_UNAVAILABLE)
        rp_metric_inc(m_key_down);
    else if (rc == RP_E_KEY_TOKEN)
        rp_metric_inc(m_key_error);
}

/* Sign header+body with the RA key; extraCerts: the RA's certificates, then `more` (certificates
 * the message carried already, without the RA's own). */
static int sign_message(struct rp_arena *a, const struct ra_identity *id, struct rp_view hdr,
                        struct rp_view body, const struct rp_view *more, size_t n_more,
                        struct rp_view *out)
{
    struct rp_view pp;
    int rc = rp_cmp_enc_protected_part(a, hdr, body, &pp);
    if (rc != RP_OK)
        return rc;
    uint8_t *sig = rp_arena_alloc(a, RP_SIG_MAX);
    size_t siglen = 0;
    if (!sig)
        return RP_E_ARENA;
    rc = rp_privkey_sign(id->key, (enum rp_sig_alg)id->alg, pp.p, pp.len, sig, RP_SIG_MAX, &siglen);
    if (rc != RP_OK) {
        count_key_failure(rc);
        return rc;
    }
    const struct rp_view *extra = id->extra;
    size_t n = id->certs.n;
    if (n_more) {
        struct rp_view *all = rp_arena_calloc(a, id->certs.n + n_more, sizeof *all);
        if (!all)
            return RP_E_ARENA;
        memcpy(all, id->extra, id->certs.n * sizeof *all);
        for (size_t i = 0; i < n_more; i++) {
            bool dup = false;
            for (size_t j = 0; j < id->certs.n && !dup; j++)
                dup = rp_view_eq(more[i], id->extra[j]);
            if (!dup && n < RP_CMP_MAX_LIST)
                all[n++] = more[i];
        }
        extra = all;
    }
    return rp_cmp_enc_message(a, hdr, body, rp_view_make(sig, siglen), extra, n, out);
}

static int sign_and_assemble(struct ra_exchange *rx, struct rp_view hdr, struct rp_view body)
{
    const struct ra_identity *id = &((struct ra_state *)rx->ex->snap->ra)->ra;
    return sign_message(&rx->ex->arena, id, hdr, body, NULL, 0, &rx->out);
}

static int fresh_nonce(uint8_t *out)
{
    return getrandom(out, RA_NONCE_LEN, 0) == (ssize_t)RA_NONCE_LEN ? RP_OK : RP_E_CRYPTO;
}

/* Header of a nested request (RFC 9483 §5.2.2.1, adding protection): the RA is the sender;
 * transactionID and senderNonce are the inner request's, so the CA's answer — nested or
 * not — is checked against the device's own request. */
static int nested_header(struct rp_arena *a, const struct ra_identity *id,
                         const struct rp_cmp_msg *m, int64_t now, struct rp_view *out)
{
    const struct rp_cmp_header *h = &m->header;
    struct rp_derw w;
    int rc = rp_derw_init(&w, a, m->header_raw.len + id->cert.subject.len + 256);
    if (rc != RP_OK)
        return rc;
    rp_derw_begin(&w, 0x30);
    rp_derw_raw(&w, h->pvno_raw);
    rp_derw_begin(&w, 0xa4); /* sender: directoryName */
    rp_derw_raw(&w, id->cert.subject);
    rp_derw_end(&w);
    rp_derw_raw(&w, h->recipient.raw);
    rp_derw_begin(&w, 0xa0);
    rp_derw_gentime(&w, now);
    rp_derw_end(&w);
    rp_derw_begin(&w, 0xa1);
    rp_derw_raw(&w, id->alg_der);
    rp_derw_end(&w);
    if (rp_view_present(id->cert.ski)) {
        rp_derw_begin(&w, 0xa2);
        rp_derw_octets(&w, id->cert.ski);
        rp_derw_end(&w);
    }
    rp_derw_raw(&w, h->transaction_id.raw);
    rp_derw_raw(&w, h->sender_nonce.raw);
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

/* raVerified stands for a POP the RA checked: not for central key generation (no POP). */
static bool all_have_pop(const struct rp_cmp_msg *m)
{
    for (size_t i = 0; i < m->body.reqs.n; i++)
        if (m->body.reqs.reqs[i].pop.type == RP_CRMF_POP_NONE)
            return false;
    return true;
}

/* One request as the RA forwards it (not the RA's nested message of a nested request): how
 * the domain says, kur never re-protected. fresh_time: the header's messageTime is `now`
 * (a queued request, sent long after the device wrote it). */
static int protect_request(struct rp_arena *a, const struct ra_identity *id,
                           const struct rp_cfg_domain *d, const struct rp_cmp_msg *m,
                           struct rp_view body_out, bool inner, int64_t now, bool fresh_time,
                           struct rp_view *out)
{
    enum rp_forward_mode mode = d->forward;
    /* an inner message goes into the RA's own nested message: never wrapped twice */
    if (inner && mode == RP_FORWARD_NESTED)
        mode = RP_FORWARD_REPROTECT;
    /* kur's signature proves the old key: never replace it */
    if (m->body.type == RP_CMP_KUR && mode == RP_FORWARD_REPROTECT)
        mode = RP_FORWARD_UNCHANGED;
    if (mode == RP_FORWARD_UNCHANGED) {
        *out = m->raw;
        return RP_OK;
    }
    if (!id->key)
        return RP_E_CONFIG;
    /* a template the RA rewrote (policy.c) carries raVerified already */
    struct rp_view hdr, body = rp_view_present(body_out) ? body_out : m->body_raw;
    int rc;
    if (mode == RP_FORWARD_NESTED) {
        rc = nested_header(a, id, m, now, &hdr);
        if (rc == RP_OK)
            rc = rp_cmp_enc_body_nested(a, &m->raw, 1, &body);
    } else {
        if (d->pop == RP_POP_RA_VERIFIED && !rp_view_present(body_out) &&
            (m->body.type == RP_CMP_IR || m->body.type == RP_CMP_CR) && all_have_pop(m))
            rc = rp_cmp_enc_body_pop_raverified(a, m, &body);
        else
            rc = RP_OK;
        if (rc == RP_OK && fresh_time)
            rc = rp_cmp_enc_rewrap_header(a, m, id->cert.subject, id->cert.ski, id->alg_der, now,
                                          RP_VIEW_NULL, RP_VIEW_NULL, &hdr);
        else if (rc == RP_OK)
            rc = rp_cmp_enc_reprotect_header(a, m, id->cert.subject, id->cert.ski, id->alg_der,
                                             &hdr);
    }
    return rc == RP_OK ? sign_message(a, id, hdr, body, NULL, 0, out) : rc;
}

int ra_protect_forward(struct ra_exchange *rx)
{
    struct rp_arena *a = &rx->ex->arena;
    const struct rp_cmp_msg *m = &rx->msg;
    const struct ra_identity *id = &((struct ra_state *)rx->ex->snap->ra)->ra;
    if (!rx->nested)
        return protect_request(a, id, rx->dcfg, m, rx->body_out, rx->inner, rx->now, false,
                               &rx->out);
    if (rx->dcfg->forward == RP_FORWARD_UNCHANGED)
        return (rx->out = m->raw), RP_OK;
    if (!id->key)
        return RP_E_CONFIG;
    /* the inner messages as the RA forwards each alone, under the RA's protection */
    size_t n = ra_nested_count(rx);
    struct rp_view *inner = rp_arena_calloc(a, n, sizeof *inner);
    struct rp_view hdr, body;
    if (!inner)
        return RP_E_ARENA;
    for (size_t i = 0; i < n; i++)
        inner[i] = ra_nested_inner(rx, i)->out;
    int rc = rp_cmp_enc_body_nested(a, inner, n, &body);
    if (rc == RP_OK)
        rc = rp_cmp_enc_reprotect_header(a, m, id->cert.subject, id->cert.ski, id->alg_der, &hdr);
    return rc == RP_OK ? sign_and_assemble(rx, hdr, body) : rc;
}

int ra_protect_queued(struct rp_arena *a, const struct ra_state *st, const struct rp_cfg_domain *d,
                      const struct rp_cmp_msg *m, struct rp_view body_out, int64_t now,
                      struct rp_view *out)
{
    return protect_request(a, &st->ra, d, m, body_out, false, now, true, out);
}

int ra_protect_relay(struct ra_exchange *rx, const struct rp_cmp_msg *answer)
{
    struct rp_arena *a = &rx->ex->arena;
    const struct ra_state *st = rx->ex->snap->ra;
    if (!st || !st->ra.key)
        return RP_E_CONFIG;
    const struct ra_identity *id = &st->ra;
    struct rp_view hdr;
    int rc =
        rp_cmp_enc_rewrap_header(a, answer, id->cert.subject, id->cert.ski, id->alg_der, rx->now,
                                 rx->msg.header.sender.raw, rx->msg.header.sender_nonce.val, &hdr);
    return rc == RP_OK ? sign_message(a, id, hdr, answer->body_raw, answer->extra_certs,
                                      answer->n_extra_certs, &rx->out)
                       : rc;
}

int ra_sign_response(struct ra_exchange *rx, struct rp_view body)
{
    struct rp_arena *a = &rx->ex->arena;
    const struct ra_state *st = rx->ex->snap->ra;
    if (!st || !st->ra.key)
        return RP_E_CONFIG;
    const struct ra_identity *id = &st->ra;
    uint8_t *nonce = rp_arena_alloc(a, RA_NONCE_LEN);
    if (!nonce)
        return RP_E_ARENA;
    int rc = fresh_nonce(nonce);
    struct rp_view hdr;
    if (rc == RP_OK)
        rc = rp_cmp_enc_response_header(a, ra_answered_request(rx), id->cert.subject, id->cert.ski,
                                        id->alg_der, rp_view_make(nonce, RA_NONCE_LEN), rx->now,
                                        &hdr);
    return rc == RP_OK ? sign_and_assemble(rx, hdr, body) : rc;
}

int ra_protect_error(struct ra_exchange *rx, int err, const char *why)
{
    const char *text = why ? why : rp_err_msg(err);
    size_t tlen = strnlen(text, RA_FREETEXT_MAX);
    struct rp_view body;
    int rc = rp_cmp_enc_body_error(&rx->ex->arena, rp_err_failinfo(err), 2 /* rejection */,
                                   rp_view_make(text, tlen), &body);
    return rc == RP_OK ? ra_sign_response(rx, body) : rc;
}
