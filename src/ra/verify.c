/* Authentication of one request, on a crypto worker (DESIGN.md step 6): the protecting
 * certificate and its chain to the domain's anchors, the protection signature or MAC,
 * proof of possession of the new key, and what this sender may ask for. Cheap checks
 * (header, body type, algorithm syntax) already ran on the loop. */
#include "ra.h"

#include "raproxy/allowlist.h"
#include "raproxy/clock.h"
#include "raproxy/der.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"
#include "raproxy/snapshot.h"
#include "raproxy/log.h"
#include "raproxy/sig.h"
#include "raproxy/view.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h> /* CRL_* verdicts (the OpenSSL layer used to pull it in) */
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <string.h>

/* An administrator certificate without serialNumber is named "admin:" + 16 hex bytes of
 * its SHA-256 in quotas, nonces and transactions. */
#define RA_ADMIN_ID_PREFIX "admin:"
#define RA_ADMIN_ID_BYTES  16u

#define FAIL(err, text)                                                                            \
    do {                                                                                           \
        *why = (text);                                                                             \
        return (err);                                                                              \
    } while (0)

/* The MAC algorithms rp_mac_verify knows (src/cmp/mac.c parses their parameters). */
bool ra_is_mac_alg(struct rp_view oid)
{
    return rp_oid_is(oid, RP_OID_PBM) || rp_oid_is(oid, RP_OID_PBMAC1);
}

/* The chain part lives in trust.c, with the domain's prepared trust material. */
static int check_chain(struct ra_domain *d, const struct rp_cmp_msg *m, size_t signer,
                       const struct rp_cert *leaf, int64_t now, const char **why)
{
    return ra_trust_check(d->trust, leaf, m->extra_certs, m->n_extra_certs, signer, now, why);
}

/* The protecting certificate is extraCerts[0] (RFC 9810 §5.1.1, RFC 9483 §3.3). A senderKID,
 * when present, must be that certificate's subjectKeyIdentifier: it names the key, and no
 * identity is ever taken from it on the signature path. */
static int find_signer(const struct rp_cmp_msg *m, struct rp_cert *out, size_t *idx,
                       const char **why)
{
    struct rp_view kid = m->header.sender_kid.val;
    if (m->n_extra_certs == 0 ||
        rp_cert_parse(m->extra_certs[0].p, m->extra_certs[0].len, out) != RP_OK)
        FAIL(RP_E_SIGNER_NOT_TRUSTED, "no protection certificate first in extraCerts");
    if (rp_view_present(kid) && !rp_view_eq(out->ski, kid))
        FAIL(RP_E_BAD_MESSAGE_CHECK,
             "senderKID is not the protection certificate's subjectKeyIdentifier");
    *idx = 0;
    return RP_OK;
}

int ra_verify_sig(struct rp_view spki, struct rp_view alg_der, struct rp_view data,
                  const struct rp_der_bits *sig, int bad, const struct ra_domain *d,
                  const char **why)
{
    enum rp_sig_alg alg;
    if (rp_sig_alg_parse(alg_der, &alg) != RP_OK)
        FAIL(RP_E_BAD_ALG, "signature algorithm not supported");
    struct rp_pubkey *pk;
    if (rp_pubkey_from_spki(spki, &pk) != RP_OK)
        FAIL(RP_E_BAD_ALG, "public key not supported");
    int rc = RP_OK;
    uint32_t bit = ra_alg_policy_bit(rp_sig_policy_name(alg, pk));
    if (!bit || !(d->alg_mask & bit)) {
        *why = "algorithm not allowed in this domain";
        rc = RP_E_BAD_ALG;
    } else if (rp_pubkey_type(pk) == RP_KEY_RSA && rp_pubkey_bits(pk) < d->cfg->rsa_min_bits) {
        *why = "RSA key too short";
        rc = RP_E_BAD_ALG;
    } else if (sig->unused != 0 ||
               rp_sig_verify(alg, pk, data.p, data.len, sig->bytes.p, sig->bytes.len) != RP_OK) {
        *why = bad == RP_E_BAD_POP ? "proof of possession does not verify"
                                   : "protection signature does not verify";
        rc = bad;
    }
    rp_pubkey_free(pk);
    return rc;
}

/* Who a verified certificate sender is: the subject's serialNumber (3GPP TS 33.310 vendor
 * certificates carry it), or, for a configured administrator without one, a name derived
 * from the certificate itself. Anyone else cannot be told apart from other devices by the
 * allowlist, quotas, nonces and transactions, so is refused. */
static int cert_identity(struct ra_exchange *rx, const struct rp_cert *signer, const char **why)
{
    if (rp_view_present(signer->subject_serial) && signer->subject_serial.len > 0) {
        rx->serial = signer->subject_serial;
        return RP_OK;
    }
    if (!ra_is_admin(rx->domain, signer->raw))
        FAIL(RP_E_NOT_AUTHORIZED, "protection certificate has no subject serialNumber");
    uint8_t digest[WC_SHA256_DIGEST_SIZE];
    char *id = rp_arena_alloc(&rx->ex->arena, sizeof RA_ADMIN_ID_PREFIX + 2 * RA_ADMIN_ID_BYTES);
    if (!id || wc_Sha256Hash(signer->raw.p, (word32)signer->raw.len, digest) != 0)
        FAIL(RP_E_ARENA, "out of memory");
    memcpy(id, RA_ADMIN_ID_PREFIX, sizeof RA_ADMIN_ID_PREFIX - 1);
    rp_view_hex(rp_view_make(digest, RA_ADMIN_ID_BYTES), id + sizeof RA_ADMIN_ID_PREFIX - 1);
    rx->serial = rp_view_make(id, sizeof RA_ADMIN_ID_PREFIX - 1 + 2 * RA_ADMIN_ID_BYTES);
    return RP_OK;
}

static int check_signature_protection(struct ra_exchange *rx, struct rp_cert *signer,
                                      const char **why)
{
    const struct rp_cmp_msg *m = &rx->msg;
    struct ra_domain *d = rx->domain;
    size_t idx = 0;
    int rc = find_signer(m, signer, &idx, why);
    if (rc != RP_OK)
        return rc;
    if (!rp_view_present(m->header.sender.name) ||
        !rp_name_eq(m->header.sender.name, signer->subject))
        FAIL(RP_E_BAD_MESSAGE_CHECK, "sender is not the protection certificate's subject");
    if (signer->has_key_usage && !(signer->key_usage & RP_KU_DIGITAL_SIGNATURE))
        FAIL(RP_E_SIGNER_NOT_TRUSTED, "protection certificate lacks digitalSignature");
    if (signer->unknown_critical)
        FAIL(RP_E_SIGNER_NOT_TRUSTED, "protection certificate has an unknown critical extension");
    rc = check_chain(d, m, idx, signer, rx->now, why);
    if (rc != RP_OK)
        return rc;
    struct rp_view pp;
    if (rp_cmp_protected_part(m, &rx->ex->arena, &pp) != RP_OK)
        FAIL(RP_E_ARENA, "message too large");
    rc = ra_verify_sig(signer->spki, m->header.protection_alg.raw, pp, &m->protection,
                       RP_E_BAD_MESSAGE_CHECK, d, why);
    if (rc != RP_OK)
        return rc;
    rx->signer = signer->raw;
    rc = cert_identity(rx, signer, why);
    return rc == RP_OK ? ra_identity_qualify(rx, signer, why) : rc;
}

static bool same_cert(const struct rp_cert *c, struct rp_view issuer, struct rp_view serial)
{
    return rp_view_eq(c->serial, serial) &&
           (!rp_view_present(issuer) || rp_name_eq(c->issuer, issuer));
}

/* Renewal window (renewal.min_age, renewal.min_remaining): a kur for a certificate still
 * young, or with much of its life left, is a renewal loop the CA should not pay for. The
 * texts are documented (README "Renewal window"). */
static int renewal_window(const struct ra_exchange *rx, const struct rp_cert *c, const char **why)
{
    const struct rp_cfg_renewal *w = &rx->dcfg->renewal;
    if (w->age.set && rx->now - c->not_before < rp_cfg_span_s(&w->age, c->not_before, c->not_after))
        FAIL(RP_E_NOT_AUTHORIZED,
             "certificate too young to renew (renewal.min_age): renew it later");
    if (w->remaining.set &&
        c->not_after - rx->now > rp_cfg_span_s(&w->remaining, c->not_before, c->not_after))
        FAIL(
            RP_E_NOT_AUTHORIZED,
            "certificate has more than renewal.min_remaining of its lifetime left: renew it later");
    return RP_OK;
}

/* What this sender may ask for: its serial on the allowlist; kur and rr only for the
 * certificate that signs them (or, for rr, an administrator of the domain). A MAC kid is an
 * identity without a certificate: its secrets line may restrict its body types, the
 * allowlist judges its serial, and kur/rr, which concern a certificate, are not for it.
 * signer is NULL for MAC protection. */
static int authorize(struct ra_exchange *rx, const struct rp_cert *signer, const char **why)
{
    const struct rp_cmp_msg *m = &rx->msg;
    enum rp_cmp_body_type t = m->body.type;
    bool enroll = ra_is_cert_request(t);
    if (rx->mac_id && rx->mac_id->body_mask && !(rx->mac_id->body_mask & (1u << t)))
        FAIL(RP_E_NOT_AUTHORIZED, "this senderKID may not send this message type");
    if (enroll && rx->domain->allowlist &&
        !rp_allowlist_contains(rx->domain->allowlist, rx->serial))
        FAIL(RP_E_NOT_AUTHORIZED, "device serial number not on the allowlist");
    if ((t == RP_CMP_KUR || t == RP_CMP_RR) && !signer)
        FAIL(RP_E_NOT_AUTHORIZED, "kur and rr must be signed with the certificate they concern");
    if (t == RP_CMP_KUR)
        for (size_t i = 0; i < m->body.reqs.n; i++) {
            const struct rp_crmf_req *r = &m->body.reqs.reqs[i];
            if (r->has_old_cert_id &&
                !same_cert(signer, r->old_cert_id.issuer.name, r->old_cert_id.serial))
                FAIL(RP_E_NOT_AUTHORIZED, "kur must be signed by the certificate it replaces");
        }
    if (t == RP_CMP_KUR) {
        int rc = renewal_window(rx, signer, why);
        if (rc != RP_OK)
            return rc;
    }
    if (t == RP_CMP_RR) {
        /* an operator administrator may revoke or suspend any certificate of the domain */
        bool admin = ra_is_admin(rx->domain, signer->raw);
        for (size_t i = 0; i < m->body.rr.n; i++) {
            const struct rp_crmf_template *tp = &m->body.rr.items[i].tmpl;
            bool ok =
                rp_view_present(tp->serial) && (admin ? ra_domain_issued(rx->domain, tp->issuer)
                                                      : same_cert(signer, tp->issuer, tp->serial));
            if (!ok)
                FAIL(RP_E_NOT_AUTHORIZED, "rr may only revoke the certificate that signs it");
            if (!ra_policy_rr_reason_ok(rx->domain, m->body.rr.items[i].reason, admin))
                FAIL(RP_E_NOT_AUTHORIZED, "this revocation reason is not allowed for this sender");
        }
    }
    return RP_OK;
}

int ra_verify_answer(struct ra_state *s, const struct rp_cmp_msg *m, struct rp_arena *a,
                     int64_t now, const char **why)
{
    struct rp_cert signer;
    size_t idx = 0;
    if (!m->has_protection || ra_is_mac_alg(m->header.protection_alg.oid))
        FAIL(RP_E_BAD_MESSAGE_CHECK, "answer not signed");
    int rc = find_signer(m, &signer, &idx, why);
    if (rc != RP_OK)
        return rc;
    rc = ra_ca_signer_check(s, m, idx, &signer, now, why);
    if (rc != RP_OK)
        return rc;
    struct rp_view pp;
    if (rp_cmp_protected_part(m, a, &pp) != RP_OK)
        FAIL(RP_E_ARENA, "answer too large");
    return ra_verify_sig(signer.spki, m->header.protection_alg.raw, pp, &m->protection,
                         RP_E_BAD_MESSAGE_CHECK, &s->ca, why);
}

void ra_verify_request(struct ra_exchange *rx)
{
    const char *why = NULL;
    struct rp_cert cert;
    const struct rp_cert *signer = NULL;
    int rc;
    if (ra_is_mac_alg(rx->msg.header.protection_alg.oid)) {
        rc = ra_verify_mac(rx, &why);
    } else {
        rc = check_signature_protection(rx, &cert, &why);
        signer = &cert;
    }
    if (rc == RP_OK && ra_is_cert_request(rx->msg.body.type))
        rc = ra_check_pop(rx, &why);
    if (rc == RP_OK)
        rc = authorize(rx, signer, &why);
    if (rc == RP_OK)
        rc = ra_policy_check(rx, signer, &why);
    if (rc == RP_OK && rx->msg.body.type == RP_CMP_NESTED)
        rc = ra_nested_verify(rx, &why); /* every inner message as if sent alone */
    if (rc == RP_OK && rx->domain->claims && ra_is_cert_request(rx->msg.body.type)) {
        /* allowlist_consume (file): claimed last, once nothing else can refuse on the worker */
        rc = ra_claims_claim(rx->domain->claims, rx->serial, rx->msg.header.transaction_id.val,
                             &rx->claim);
        why = rc == RP_E_NOT_AUTHORIZED ? "device serial already enrolled (or enrolling)"
              : rc != RP_OK             ? "cannot record the claim of the serial"
                                        : why;
        if (rc == RP_E_IO || rc == RP_E_INVAL)
            rc = RP_E_SYSTEM_UNAVAIL;
    }
    rx->verdict = rc;
    rx->why = why;
}
