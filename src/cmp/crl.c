/* CRL view: the fields of a CertificateList raproxy needs to answer crlStatusList, to
 * reload CRLs when their nextUpdate comes, and to index and verify them for revocation. */
#include "raproxy/crl.h"

#include "raproxy/cert.h"
#include "raproxy/err.h"
#include "raproxy/file.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEM_CRL_BEGIN "-----BEGIN X509 CRL-----"
#define PEM_CRL_END   "-----END X509 CRL-----"
#define CRL_V2        1 /* encoded value of v2 */

static int is_time(const struct rp_der_tlv *t)
{
    return t->ident == RP_DER_UTC_TIME || t->ident == RP_DER_GENERALIZED_TIME;
}

/* IssuingDistributionPoint ::= SEQUENCE { distributionPoint [0] DistributionPointName
 * OPTIONAL, ... } inside the extension's OCTET STRING. Only the name is kept. */
static int read_idp(const struct rp_der *parent, struct rp_view value, struct rp_crl *c)
{
    struct rp_der d, seq, dp;
    struct rp_der_tlv t;
    int rc;
    rp_der_init(&d, value.p, value.len, parent->err);
    d.base = parent->base;
    d.depth = parent->depth;
    if ((rc = rp_der_expect_enter(&d, RP_DER_SEQUENCE, &seq, NULL, "IssuingDistributionPoint")) < 0)
        return rc;
    if ((rc = rp_der_finish(&d, "end of IssuingDistributionPoint")) < 0)
        return rc;
    if ((rc = rp_der_optional(&seq, RP_DER_CTX_CONS(0), &t)) <= 0)
        return rc;
    if ((rc = rp_der_enter(&seq, &t, &dp)) < 0 || (rc = rp_der_next(&dp, &t)) < 0)
        return rc;
    if ((rc = rp_der_validate(&dp, &t)) < 0)
        return rc;
    c->idp_name = t.raw;
    return rp_der_finish(&dp, "end of distributionPoint");
}

/* One Extension of an Extensions SEQUENCE: its OID, criticality and value. */
static int read_extension(struct rp_der *exts, struct rp_view *oid, int *critical,
                          struct rp_der_tlv *value)
{
    struct rp_der ext;
    struct rp_der_tlv t;
    int rc;
    *critical = 0;
    if ((rc = rp_der_expect_enter(exts, RP_DER_SEQUENCE, &ext, NULL, "Extension")) < 0)
        return rc;
    if ((rc = rp_der_expect(&ext, RP_DER_OID, &t, "extnID")) < 0 ||
        (rc = rp_der_oid(&ext, &t, oid)) < 0)
        return rc;
    if ((rc = rp_der_optional(&ext, RP_DER_BOOLEAN, &t)) < 0)
        return rc;
    if (rc == 1 && (rc = rp_der_bool(&ext, &t, critical)) < 0)
        return rc;
    if ((rc = rp_der_expect(&ext, RP_DER_OCTET_STRING, value, "extnValue")) < 0)
        return rc;
    return rp_der_finish(&ext, "end of Extension");
}

/* Extensions a CRL may carry that do not change which certificates it revokes. */
static int known_crl_extension(struct rp_view oid)
{
    return rp_oid_is(oid, RP_OID_CE_CRL_NUMBER) || rp_oid_is(oid, RP_OID_CE_IDP) ||
           rp_oid_is(oid, RP_OID_CE_AKI) || rp_oid_is(oid, RP_OID_CE_IAN) ||
           rp_oid_is(oid, RP_OID_CE_FRESHEST) || rp_oid_is(oid, RP_OID_PE_AIA);
}

/* crlExtensions [0] EXPLICIT Extensions: framing of each, the IDP read. */
static int read_extensions(const struct rp_der *tbs, const struct rp_der_tlv *wrap,
                           struct rp_crl *c)
{
    struct rp_der w, exts;
    struct rp_der_tlv t;
    struct rp_view oid;
    int rc, critical;
    if ((rc = rp_der_enter(tbs, wrap, &w)) < 0)
        return rc;
    if ((rc = rp_der_expect_enter(&w, RP_DER_SEQUENCE, &exts, NULL, "Extensions")) < 0)
        return rc;
    if ((rc = rp_der_finish(&w, "end of crlExtensions")) < 0)
        return rc;
    while (rp_der_left(&exts) > 0) {
        if ((rc = read_extension(&exts, &oid, &critical, &t)) < 0)
            return rc;
        if (rp_oid_is(oid, RP_OID_CE_IDP) && (rc = read_idp(&exts, t.val, c)) < 0)
            return rc;
        if (critical && !known_crl_extension(oid))
            c->unknown_critical = 1;
    }
    return RP_OK;
}

/* revokedCertificates SEQUENCE OF SEQUENCE { userCertificate CertificateSerialNumber,
 * revocationDate Time, crlEntryExtensions Extensions OPTIONAL }: one entry. */
static int read_entry(struct rp_der *list, struct rp_view *serial, int *unknown_critical)
{
    struct rp_der e, exts;
    struct rp_der_tlv t;
    struct rp_view oid;
    int64_t when;
    int rc, critical;
    if ((rc = rp_der_expect_enter(list, RP_DER_SEQUENCE, &e, NULL, "revoked entry")) < 0)
        return rc;
    if ((rc = rp_der_expect(&e, RP_DER_INTEGER, &t, "userCertificate")) < 0 ||
        (rc = rp_der_int(&e, &t, serial)) < 0)
        return rc;
    if ((rc = rp_der_next(&e, &t)) < 0)
        return rc;
    if (!is_time(&t))
        return rp_der_fail(&e, t.raw.p, RP_E_DER_TAG, "revocationDate Time");
    if ((rc = rp_der_time(&e, &t, &when)) < 0)
        return rc;
    if ((rc = rp_der_optional(&e, RP_DER_SEQUENCE, &t)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = rp_der_enter(&e, &t, &exts)) < 0)
            return rc;
        while (rp_der_left(&exts) > 0) {
            if ((rc = read_extension(&exts, &oid, &critical, &t)) < 0)
                return rc;
            /* certificateIssuer (indirect CRLs) among others: not understood */
            if (critical && !rp_oid_is(oid, RP_OID_CE_CRL_REASON) &&
                !rp_oid_is(oid, RP_OID_CE_INVALIDITY))
                *unknown_critical = 1;
        }
    }
    return rp_der_finish(&e, "end of revoked entry");
}

void rp_crl_revoked_begin(const struct rp_crl *c, struct rp_crl_iter *it)
{
    rp_der_init(&it->d, c->revoked.p, c->revoked.len, NULL);
}

int rp_crl_revoked_next(struct rp_crl_iter *it, struct rp_view *serial)
{
    int ignored = 0;
    if (rp_der_left(&it->d) == 0)
        return 0;
    int rc = read_entry(&it->d, serial, &ignored);
    return rc < 0 ? rc : 1;
}

static int read_revoked(const struct rp_der *tbs, const struct rp_der_tlv *t, struct rp_crl *c)
{
    struct rp_der list;
    struct rp_view serial;
    int rc;
    if ((rc = rp_der_enter(tbs, t, &list)) < 0)
        return rc;
    c->revoked = t->val;
    while (rp_der_left(&list) > 0) {
        if ((rc = read_entry(&list, &serial, &c->unknown_critical)) < 0)
            return rc;
        c->n_revoked++;
    }
    return RP_OK;
}

static int read_tbs(struct rp_crl *c, struct rp_der *list, struct rp_der_algid *alg)
{
    struct rp_der tbs;
    struct rp_der_tlv t;
    int64_t version;
    int rc;
    if ((rc = rp_der_expect_enter(list, RP_DER_SEQUENCE, &tbs, &t, "TBSCertList")) < 0)
        return rc;
    c->tbs = t.raw;
    if ((rc = rp_der_optional(&tbs, RP_DER_INTEGER, &t)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = rp_der_int64(&tbs, &t, &version)) < 0)
            return rc;
        if (version != CRL_V2)
            return rp_der_fail(&tbs, t.raw.p, RP_E_DER_INTEGER, "CRL version v2");
    }
    if ((rc = rp_der_next(&tbs, &t)) < 0 || (rc = rp_der_algid(&tbs, &t, alg)) < 0)
        return rc;
    if ((rc = rp_der_expect(&tbs, RP_DER_SEQUENCE, &t, "issuer Name")) < 0)
        return rc;
    c->issuer = t.raw;
    if ((rc = rp_name_check(c->issuer)) < 0)
        return rp_der_fail(&tbs, t.raw.p, rc, "issuer Name");
    if ((rc = rp_der_next(&tbs, &t)) < 0)
        return rc;
    if (!is_time(&t))
        return rp_der_fail(&tbs, t.raw.p, RP_E_DER_TAG, "thisUpdate Time");
    if ((rc = rp_der_time(&tbs, &t, &c->this_update)) < 0)
        return rc;
    if (rp_der_left(&tbs) > 0) {
        if ((rc = rp_der_peek(&tbs, &t)) < 0)
            return rc;
        if (is_time(&t)) {
            rp_der_next(&tbs, &t);
            if ((rc = rp_der_time(&tbs, &t, &c->next_update)) < 0)
                return rc;
            c->has_next_update = 1;
        }
    }
    if ((rc = rp_der_optional(&tbs, RP_DER_SEQUENCE, &t)) < 0)
        return rc;
    if (rc == 1 && (rc = read_revoked(&tbs, &t, c)) < 0)
        return rc;
    if ((rc = rp_der_optional(&tbs, RP_DER_CTX_CONS(0), &t)) < 0)
        return rc;
    if (rc == 1 && (rc = read_extensions(&tbs, &t, c)) < 0)
        return rc;
    return rp_der_finish(&tbs, "end of TBSCertList");
}

int rp_crl_parse(const uint8_t *p, size_t n, struct rp_crl *c)
{
    struct rp_der top, list;
    struct rp_der_tlv t;
    struct rp_der_algid tbs_alg;
    int rc;
    memset(c, 0, sizeof *c);
    rp_der_init(&top, p, n, NULL);
    if ((rc = rp_der_expect_enter(&top, RP_DER_SEQUENCE, &list, &t, "CertificateList")) < 0)
        return rc;
    c->raw = t.raw;
    if ((rc = rp_der_finish(&top, "end of input after the CertificateList")) < 0)
        return rc;
    if ((rc = read_tbs(c, &list, &tbs_alg)) < 0)
        return rc;
    if ((rc = rp_der_next(&list, &t)) < 0 || (rc = rp_der_algid(&list, &t, &c->sig_alg)) < 0)
        return rc;
    /* RFC 5280 §5.1.1.2: the signature field of the TBS must equal signatureAlgorithm */
    if (!rp_view_eq(tbs_alg.raw, c->sig_alg.raw))
        return rp_der_fail(&list, t.raw.p, RP_E_DER_TAG, "signatureAlgorithm equal to the TBS's");
    if ((rc = rp_der_expect(&list, RP_DER_BIT_STRING, &t, "signatureValue")) < 0 ||
        (rc = rp_der_bits(&list, &t, &c->sig)) < 0)
        return rc;
    return rp_der_finish(&list, "end of CertificateList");
}

int rp_crl_next_update(struct rp_view crl_der, int64_t *out)
{
    struct rp_crl c;
    int rc = rp_crl_parse(crl_der.p, crl_der.len, &c);
    if (rc != RP_OK)
        return rc;
    if (!c.has_next_update)
        return RP_E_NOT_FOUND;
    *out = c.next_update;
    return RP_OK;
}

int rp_crl_pem_next(const char *text, size_t len, size_t *pos, uint8_t **der, size_t *der_len)
{
    if (*pos >= len)
        return RP_E_NOT_FOUND;
    const char *b = rp_memfind(text + *pos, len - *pos, PEM_CRL_BEGIN);
    if (!b)
        return RP_E_NOT_FOUND;
    b += strlen(PEM_CRL_BEGIN);
    const char *e = rp_memfind(b, len - (size_t)(b - text), PEM_CRL_END);
    if (!e)
        return RP_E_DER_TRUNCATED;
    size_t b64 = (size_t)(e - b);
    if (b64 > UINT32_MAX)
        return RP_E_DER_COUNT;
    word32 dlen = (word32)b64;
    uint8_t *buf = malloc(b64 ? b64 : 1);
    if (!buf)
        return RP_E_NOMEM;
    if (Base64_Decode((const byte *)b, (word32)b64, buf, &dlen) != 0) {
        free(buf);
        return RP_E_DER_TAG;
    }
    *pos = (size_t)(e - text) + strlen(PEM_CRL_END);
    *der = buf;
    *der_len = dlen;
    return RP_OK;
}

static void earliest(struct rp_view der, int64_t *best, int *found, int *rc)
{
    int64_t t;
    int r = rp_crl_next_update(der, &t);
    if (r == RP_OK && (!*found || t < *best)) {
        *best = t;
        *found = 1;
    } else if (r != RP_OK && r != RP_E_NOT_FOUND) {
        *rc = r;
    }
}

int rp_crl_file_next_update(const char *path, int64_t *out)
{
    uint8_t *data;
    size_t len;
    int rc = rp_file_read(path, RP_CRL_MAX_FILE, &data, &len);
    if (rc != RP_OK)
        return rc;
    int64_t best = 0;
    int found = 0;
    if (len && data[0] == RP_DER_SEQUENCE) {
        earliest(rp_view_make(data, len), &best, &found, &rc);
    } else {
        size_t pos = 0, n = 0, dlen;
        uint8_t *der;
        int r;
        while (rc == RP_OK && n++ < RP_CRL_MAX_PER_FILE &&
               (r = rp_crl_pem_next((const char *)data, len, &pos, &der, &dlen)) !=
                   RP_E_NOT_FOUND) {
            if (r != RP_OK) {
                rc = r;
                break;
            }
            earliest(rp_view_make(der, dlen), &best, &found, &rc);
            free(der);
        }
        if (rc == RP_OK && n == 1)
            rc = RP_E_DER_TAG; /* neither DER nor a PEM CRL */
    }
    free(data);
    if (rc != RP_OK)
        return rc;
    if (!found)
        return RP_E_NOT_FOUND;
    *out = best;
    return RP_OK;
}
