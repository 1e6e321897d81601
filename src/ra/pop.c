/* Proof of possession of the requested key, on a crypto worker (RFC 4211 §4.1, RFC 9483
 * §4.1.6): what the RA has proven before it may say raVerified, or sign a template it wrote.
 *
 * Signature POP: without poposkInput the signature covers the CertRequest (and so the
 * template's key). poposkInput is accepted only for a template without subject (RFC 4211
 * §4.1); the signature then covers POPOSigningKeyInput, whose publicKey must be the
 * template's and whose authInfo must be the authenticated sender: its sender GeneralName
 * the message's (which the protection covers), or a publicKeyMAC under the MAC kid's own
 * secret. Anything else — a signature over other DER, by another key, for another sender —
 * is badPOP. raVerified from a device, and the encryption/agreement POPs (whose challenge
 * flow raproxy does not run) are badPOP too. No POP at all is central key generation when
 * the template carries no public key, refused unless the domain allows it. */
#include "ra.h"

#include "raproxy/err.h"
#include "raproxy/exchange.h"

#if __has_include("raproxy/mac.h")
#include "raproxy/mac.h"
#define HAVE_MAC 1
#endif

#define FAIL(err, text)                                                                            \
    do {                                                                                           \
        *why = (text);                                                                             \
        return (err);                                                                              \
    } while (0)

/* RFC 4211 Appendix C / RFC 9483 §4.1.6: a template asking the CA for a key names no key
 * (publicKey absent, or an algorithm with an empty subjectPublicKey). */
static bool wants_central_keygen(const struct rp_crmf_template *t)
{
    return !rp_view_present(t->public_key_raw) || t->public_key_bits.bytes.len == 0;
}

/* publicKeyMAC: PKMACValue over the DER of publicKey with the kid's secret (RFC 4211 §4.1). */
static int check_public_key_mac(const struct ra_exchange *rx, const struct rp_crmf_poposk_input *in,
                                const char **why)
{
#ifdef HAVE_MAC
    const struct ra_secret *s = rx->mac_id;
    if (!s)
        FAIL(RP_E_BAD_POP, "publicKeyMAC needs a MAC-protected request (a shared secret)");
    if (in->mac_value.unused != 0 ||
        rp_mac_verify(in->mac_alg.raw, s->secret, s->secret_len, in->public_key.p,
                      in->public_key.len, in->mac_value.bytes.p, in->mac_value.bytes.len,
                      rx->dcfg->pbm_max_iterations) != RP_OK)
        FAIL(RP_E_BAD_POP, "publicKeyMAC in poposkInput does not verify");
    return RP_OK;
#else
    (void)rx;
    (void)in;
    FAIL(RP_E_BAD_POP, "publicKeyMAC is not available in this build");
#endif
}

/* The data a signature POP covers: the CertRequest, or POPOSigningKeyInput. */
static int signed_data(const struct ra_exchange *rx, const struct rp_crmf_req *r,
                       struct rp_view spki, struct rp_view *data, const char **why)
{
    struct rp_arena *a = &rx->ex->arena;
    const struct rp_crmf_template *t = &r->tmpl;
    if (!rp_view_present(r->pop.poposk_input_raw)) {
        /* a signature over the CertRequest, which holds the key: possession of that key for
         * this very request. RFC 4211 wants poposkInput when the template has no subject;
         * OpenSSL signs the CertRequest then, and that proves no less. */
        *data = r->cert_req_raw;
        return RP_OK;
    }
    if (rp_view_present(t->subject))
        FAIL(RP_E_BAD_POP, "poposkInput is only for a template without subject (RFC 4211 4.1)");
    struct rp_crmf_poposk_input in;
    if (rp_crmf_poposk_input_parse(r->pop.poposk_input_raw, &in) != RP_OK)
        FAIL(RP_E_BAD_POP, "poposkInput is not a POPOSigningKeyInput");
    if (!rp_view_eq(in.public_key, spki))
        FAIL(RP_E_BAD_POP, "poposkInput's publicKey is not the template's");
    if (in.auth == RP_CRMF_AUTH_SENDER) {
        if (!rp_view_eq(in.sender.raw, rx->msg.header.sender.raw))
            FAIL(RP_E_BAD_POP, "poposkInput's sender is not the authenticated sender");
    } else {
        int rc = check_public_key_mac(rx, &in, why);
        if (rc != RP_OK)
            return rc;
    }
    /* RFC 4211 §4.1: the signature covers POPOSigningKeyInput as a SEQUENCE */
    uint8_t *copy = rp_arena_dup(a, r->pop.poposk_input_raw.p, r->pop.poposk_input_raw.len);
    if (!copy)
        FAIL(RP_E_ARENA, "message too large");
    copy[0] = RP_DER_SEQUENCE;
    *data = rp_view_make(copy, r->pop.poposk_input_raw.len);
    return RP_OK;
}

static int check_one(struct ra_exchange *rx, const struct rp_crmf_req *r, const char **why)
{
    const struct rp_crmf_template *t = &r->tmpl;
    switch (r->pop.type) {
    case RP_CRMF_POP_NONE:
        if (!wants_central_keygen(t))
            FAIL(RP_E_BAD_POP, "proof of possession missing");
        if (rx->dcfg->central_keygen != RP_KEYGEN_ALLOW)
            FAIL(RP_E_NOT_AUTHORIZED, "central key generation is not allowed in this domain");
        return RP_OK; /* the CA makes the key: nothing to prove */
    case RP_CRMF_POP_RA_VERIFIED:
        FAIL(RP_E_BAD_POP, "raVerified is for RAs, not devices");
    case RP_CRMF_POP_SIGNATURE:
        break;
    default:
        FAIL(RP_E_BAD_POP, "only signature proof of possession is accepted");
    }
    struct rp_view spki, data;
    if (wants_central_keygen(t) || rp_crmf_template_spki(t, &rx->ex->arena, &spki) != RP_OK)
        FAIL(RP_E_BAD_POP, "a signature proof of possession needs the template's public key");
    int rc = signed_data(rx, r, spki, &data, why);
    if (rc != RP_OK)
        return rc;
    return ra_verify_sig(spki, r->pop.alg.raw, data, &r->pop.signature, RP_E_BAD_POP, rx->domain,
                         why);
}

int ra_check_pop(struct ra_exchange *rx, const char **why)
{
    const struct rp_cmp_msg *m = &rx->msg;
    if (m->body.type == RP_CMP_P10CR) {
        const struct rp_cmp_p10 *p = &m->body.p10;
        return ra_verify_sig(p->spki_raw, p->sig_alg.raw, p->cri_raw, &p->signature, RP_E_BAD_POP,
                             rx->domain, why);
    }
    for (size_t i = 0; i < m->body.reqs.n; i++) {
        int rc = check_one(rx, &m->body.reqs.reqs[i], why);
        if (rc != RP_OK)
            return rc;
    }
    return RP_OK;
}
