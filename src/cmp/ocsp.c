/* OCSP (RFC 6960) codec and response verification. Structure here, signatures through
 * raproxy/sig.h, hashes through wolfCrypt. */
#include "raproxy/ocsp.h"

#include "raproxy/err.h"
#include "raproxy/log.h"
#include "raproxy/sig.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OCSP_V1             0
#define MAX_DIGEST          64 /* SHA-512 */
#define SHA1_LEN            20
#define PEM_FILE_MAX        (1u << 20)
#define PEM_MAX_CERTS       64
#define CERT_STATUS_GOOD    RP_DER_CTX(0)
#define CERT_STATUS_REVOKED RP_DER_CTX_CONS(1)
#define CERT_STATUS_UNKNOWN RP_DER_CTX(2)
#define RESPONDER_BY_NAME   RP_DER_CTX_CONS(1)
#define RESPONDER_BY_KEY    RP_DER_CTX_CONS(2)

/* ---- parsing ---------------------------------------------------------------------- */

/* [0] EXPLICIT Version DEFAULT v1: only v1 exists, so only an explicit 0 is tolerated. */
static int read_version(struct rp_der *d)
{
    struct rp_der_tlv t, v;
    struct rp_der c;
    int64_t ver;
    int rc = rp_der_optional(d, RP_DER_CTX_CONS(0), &t);
    if (rc <= 0)
        return rc;
    if ((rc = rp_der_enter(d, &t, &c)) < 0 ||
        (rc = rp_der_expect(&c, RP_DER_INTEGER, &v, "version")) < 0 ||
        (rc = rp_der_int64(&c, &v, &ver)) < 0)
        return rc;
    if (ver != OCSP_V1)
        return rp_der_fail(&c, v.raw.p, RP_E_OCSP_RESPONSE, "OCSP version v1");
    return rp_der_finish(&c, "end of version");
}

static int read_certid(struct rp_der *d, struct rp_ocsp_certid *id)
{
    struct rp_der c;
    struct rp_der_tlv t;
    struct rp_der_algid alg;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "CertID")) < 0)
        return rc;
    id->raw = t.raw;
    if ((rc = rp_der_expect(&c, RP_DER_SEQUENCE, &t, "CertID hashAlgorithm")) < 0 ||
        (rc = rp_der_algid(&c, &t, &alg)) < 0)
        return rc;
    id->hash_alg = alg.oid;
    if ((rc = rp_der_expect(&c, RP_DER_OCTET_STRING, &t, "issuerNameHash")) < 0)
        return rc;
    id->name_hash = t.val;
    if ((rc = rp_der_expect(&c, RP_DER_OCTET_STRING, &t, "issuerKeyHash")) < 0)
        return rc;
    id->key_hash = t.val;
    if ((rc = rp_der_expect(&c, RP_DER_INTEGER, &t, "serialNumber")) < 0 ||
        (rc = rp_der_int(&c, &t, &id->serial)) < 0)
        return rc;
    return rp_der_finish(&c, "end of CertID");
}

/* Extensions inside an EXPLICIT wrapper: the nonce's extnValue into *nonce (when nonce is
 * not NULL), unknown critical ones counted into *unknown_critical. */
static int read_extensions(const struct rp_der *d, const struct rp_der_tlv *wrap,
                           struct rp_view *nonce, int *unknown_critical)
{
    struct rp_der w, seq, e;
    struct rp_der_tlv t;
    int rc, crit;
    if ((rc = rp_der_enter(d, wrap, &w)) < 0 ||
        (rc = rp_der_expect_enter(&w, RP_DER_SEQUENCE, &seq, NULL, "Extensions")) < 0 ||
        (rc = rp_der_finish(&w, "end of Extensions wrapper")) < 0)
        return rc;
    for (size_t n = 0; rp_der_left(&seq) > 0; n++) {
        struct rp_view oid;
        if (n == RP_DER_MAX_ELEMENTS)
            return rp_der_fail(&seq, seq.p, RP_E_DER_COUNT, "Extensions within the cap");
        if ((rc = rp_der_expect_enter(&seq, RP_DER_SEQUENCE, &e, NULL, "Extension")) < 0 ||
            (rc = rp_der_expect(&e, RP_DER_OID, &t, "extnID")) < 0 ||
            (rc = rp_der_oid(&e, &t, &oid)) < 0)
            return rc;
        crit = 0;
        if ((rc = rp_der_optional(&e, RP_DER_BOOLEAN, &t)) < 0 ||
            (rc == 1 && (rc = rp_der_bool(&e, &t, &crit)) < 0))
            return rc;
        if ((rc = rp_der_expect(&e, RP_DER_OCTET_STRING, &t, "extnValue")) < 0 ||
            (rc = rp_der_finish(&e, "end of Extension")) < 0)
            return rc;
        if (nonce && rp_oid_is(oid, RP_OID_OCSP_NONCE)) {
            if (rp_view_present(*nonce))
                return rp_der_fail(&e, t.raw.p, RP_E_OCSP_RESPONSE, "a single nonce");
            if (t.val.len == 0 || t.val.len > RP_OCSP_MAX_NONCE)
                return rp_der_fail(&e, t.raw.p, RP_E_OCSP_RESPONSE, "nonce of 1..128 octets");
            *nonce = t.val;
        } else if (crit) {
            (*unknown_critical)++;
        }
    }
    return RP_OK;
}

static int read_request(struct rp_der *list, struct rp_ocsp_req *out)
{
    struct rp_der r;
    struct rp_der_tlv t;
    int rc, ignored = 0;
    if (out->n_ids == RP_OCSP_MAX_CERTIDS)
        return rp_der_fail(list, list->p, RP_E_OCSP_RESPONSE, "at most 16 requests");
    if ((rc = rp_der_expect_enter(list, RP_DER_SEQUENCE, &r, NULL, "Request")) < 0 ||
        (rc = read_certid(&r, &out->ids[out->n_ids])) < 0)
        return rc;
    if ((rc = rp_der_optional(&r, RP_DER_CTX_CONS(0), &t)) < 0)
        return rc;
    /* singleRequestExtensions are the VA's business: checked for framing only */
    if (rc == 1 && (rc = read_extensions(&r, &t, NULL, &ignored)) < 0)
        return rc;
    out->n_ids++;
    return rp_der_finish(&r, "end of Request");
}

static int read_tbs_request(struct rp_der *req, struct rp_ocsp_req *out)
{
    struct rp_der tbs, list;
    struct rp_der_tlv t;
    int rc, ignored = 0;
    if ((rc = rp_der_expect_enter(req, RP_DER_SEQUENCE, &tbs, NULL, "TBSRequest")) < 0 ||
        (rc = read_version(&tbs)) < 0)
        return rc;
    if ((rc = rp_der_optional(&tbs, RP_DER_CTX_CONS(1), &t)) < 0 ||
        (rc == 1 && (rc = rp_der_validate(&tbs, &t)) < 0))
        return rc;
    if ((rc = rp_der_expect_enter(&tbs, RP_DER_SEQUENCE, &list, NULL, "requestList")) < 0)
        return rc;
    if (rp_der_left(&list) == 0)
        return rp_der_fail(&list, list.p, RP_E_DER_COUNT, "at least one Request");
    while (rp_der_left(&list) > 0)
        if ((rc = read_request(&list, out)) < 0)
            return rc;
    if ((rc = rp_der_optional(&tbs, RP_DER_CTX_CONS(2), &t)) < 0)
        return rc;
    if (rc == 1 && (rc = read_extensions(&tbs, &t, &out->nonce, &ignored)) < 0)
        return rc;
    return rp_der_finish(&tbs, "end of TBSRequest");
}

int rp_ocsp_req_parse(const uint8_t *p, size_t n, struct rp_ocsp_req *out, struct rp_der_err *err)
{
    struct rp_der d, req;
    struct rp_der_tlv t;
    int rc;
    memset(out, 0, sizeof *out);
    rp_der_init(&d, p, n, err);
    if ((rc = rp_der_expect_enter(&d, RP_DER_SEQUENCE, &req, &t, "OCSPRequest")) < 0 ||
        (rc = rp_der_finish(&d, "end of input")) < 0)
        return rc;
    out->raw = t.raw;
    if ((rc = read_tbs_request(&req, out)) < 0)
        return rc;
    if ((rc = rp_der_optional(&req, RP_DER_CTX_CONS(0), &t)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = rp_der_validate(&req, &t)) < 0)
            return rc;
        out->is_signed = 1;
    }
    return rp_der_finish(&req, "end of OCSPRequest");
}

static int read_gentime(struct rp_der *d, int64_t *out, const char *what)
{
    struct rp_der_tlv t;
    int rc = rp_der_expect(d, RP_DER_GENERALIZED_TIME, &t, what);
    return rc < 0 ? rc : rp_der_time(d, &t, out);
}

static int read_cert_status(struct rp_der *s, struct rp_ocsp_single *out)
{
    struct rp_der_tlv t;
    struct rp_der r;
    int rc;
    if ((rc = rp_der_next(s, &t)) < 0)
        return rc;
    if ((t.ident == CERT_STATUS_GOOD || t.ident == CERT_STATUS_UNKNOWN) && t.val.len == 0) {
        out->status = t.ident == CERT_STATUS_GOOD ? RP_OCSP_GOOD : RP_OCSP_UNKNOWN;
        return RP_OK;
    }
    if (t.ident != CERT_STATUS_REVOKED)
        return rp_der_fail(s, t.raw.p, RP_E_DER_TAG, "CertStatus good/revoked/unknown");
    out->status = RP_OCSP_REVOKED;
    if ((rc = rp_der_enter(s, &t, &r)) < 0 ||
        (rc = read_gentime(&r, &out->revocation_time, "revocationTime")) < 0)
        return rc;
    if ((rc = rp_der_optional(&r, RP_DER_CTX_CONS(0), &t)) < 0 ||
        (rc == 1 && (rc = rp_der_validate(&r, &t)) < 0))
        return rc;
    return rp_der_finish(&r, "end of RevokedInfo");
}

static int read_single(struct rp_der *list, struct rp_ocsp_resp *out)
{
    struct rp_der s, w;
    struct rp_der_tlv t;
    struct rp_ocsp_single *one = &out->singles[out->n_singles];
    int rc;
    if (out->n_singles == RP_OCSP_MAX_CERTIDS)
        return rp_der_fail(list, list->p, RP_E_OCSP_RESPONSE, "at most 16 SingleResponses");
    if ((rc = rp_der_expect_enter(list, RP_DER_SEQUENCE, &s, NULL, "SingleResponse")) < 0 ||
        (rc = read_certid(&s, &one->id)) < 0 || (rc = read_cert_status(&s, one)) < 0 ||
        (rc = read_gentime(&s, &one->this_update, "thisUpdate")) < 0)
        return rc;
    if ((rc = rp_der_optional(&s, RP_DER_CTX_CONS(0), &t)) < 0)
        return rc;
    if (rc == 1 && ((rc = rp_der_enter(&s, &t, &w)) < 0 ||
                    (rc = read_gentime(&w, &one->next_update, "nextUpdate")) < 0 ||
                    (rc = rp_der_finish(&w, "end of nextUpdate")) < 0))
        return rc;
    if ((rc = rp_der_optional(&s, RP_DER_CTX_CONS(1), &t)) < 0)
        return rc;
    if (rc == 1 && (rc = read_extensions(&s, &t, NULL, &out->unknown_critical)) < 0)
        return rc;
    out->n_singles++;
    return rp_der_finish(&s, "end of SingleResponse");
}

static int read_responder_id(struct rp_der *rd, struct rp_ocsp_resp *out)
{
    struct rp_der c;
    struct rp_der_tlv t, v;
    int rc;
    if ((rc = rp_der_next(rd, &t)) < 0)
        return rc;
    if (t.ident != RESPONDER_BY_NAME && t.ident != RESPONDER_BY_KEY)
        return rp_der_fail(rd, t.raw.p, RP_E_DER_TAG, "ResponderID byName/byKey");
    out->responder_by_key = t.ident == RESPONDER_BY_KEY;
    if ((rc = rp_der_enter(rd, &t, &c)) < 0)
        return rc;
    if (out->responder_by_key) {
        if ((rc = rp_der_expect(&c, RP_DER_OCTET_STRING, &v, "KeyHash")) < 0)
            return rc;
        out->responder_id = v.val;
    } else {
        if ((rc = rp_der_expect(&c, RP_DER_SEQUENCE, &v, "responder Name")) < 0 ||
            (rc = rp_name_check(v.raw)) < 0)
            return rc;
        out->responder_id = v.raw;
    }
    return rp_der_finish(&c, "end of ResponderID");
}

static int read_response_data(struct rp_der *basic, struct rp_ocsp_resp *out)
{
    struct rp_der rd, list;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(basic, RP_DER_SEQUENCE, &rd, &t, "ResponseData")) < 0)
        return rc;
    out->tbs = t.raw;
    if ((rc = read_version(&rd)) < 0 || (rc = read_responder_id(&rd, out)) < 0 ||
        (rc = read_gentime(&rd, &out->produced_at, "producedAt")) < 0 ||
        (rc = rp_der_expect_enter(&rd, RP_DER_SEQUENCE, &list, NULL, "responses")) < 0)
        return rc;
    while (rp_der_left(&list) > 0)
        if ((rc = read_single(&list, out)) < 0)
            return rc;
    if ((rc = rp_der_optional(&rd, RP_DER_CTX_CONS(1), &t)) < 0)
        return rc;
    if (rc == 1 && (rc = read_extensions(&rd, &t, &out->nonce, &out->unknown_critical)) < 0)
        return rc;
    return rp_der_finish(&rd, "end of ResponseData");
}

static int read_certs(struct rp_der *basic, struct rp_ocsp_resp *out)
{
    struct rp_der w, seq;
    struct rp_der_tlv t;
    int rc = rp_der_optional(basic, RP_DER_CTX_CONS(0), &t);
    if (rc <= 0)
        return rc;
    if ((rc = rp_der_enter(basic, &t, &w)) < 0 ||
        (rc = rp_der_expect_enter(&w, RP_DER_SEQUENCE, &seq, NULL, "certs")) < 0 ||
        (rc = rp_der_finish(&w, "end of certs")) < 0)
        return rc;
    while (rp_der_left(&seq) > 0) {
        if (out->n_certs == RP_OCSP_MAX_CERTS)
            return rp_der_fail(&seq, seq.p, RP_E_DER_COUNT, "at most 8 certs");
        if ((rc = rp_der_expect(&seq, RP_DER_SEQUENCE, &t, "Certificate")) < 0 ||
            (rc = rp_der_validate(&seq, &t)) < 0)
            return rc;
        out->certs[out->n_certs++] = t.raw;
    }
    return RP_OK;
}

static int read_basic(const struct rp_der *outer, struct rp_view der, struct rp_ocsp_resp *out)
{
    struct rp_der d = *outer, basic;
    struct rp_der_tlv t;
    int rc;
    d.p = der.p;
    d.end = der.p + der.len;
    if ((rc = rp_der_expect_enter(&d, RP_DER_SEQUENCE, &basic, NULL, "BasicOCSPResponse")) < 0 ||
        (rc = rp_der_finish(&d, "end of response OCTET STRING")) < 0 ||
        (rc = read_response_data(&basic, out)) < 0 ||
        (rc = rp_der_expect(&basic, RP_DER_SEQUENCE, &t, "signatureAlgorithm")) < 0 ||
        (rc = rp_der_algid(&basic, &t, &out->sig_alg)) < 0 ||
        (rc = rp_der_expect(&basic, RP_DER_BIT_STRING, &t, "signature")) < 0 ||
        (rc = rp_der_bits(&basic, &t, &out->sig)) < 0 || (rc = read_certs(&basic, out)) < 0)
        return rc;
    if (out->sig.unused != 0)
        return rp_der_fail(&basic, t.raw.p, RP_E_DER_BITSTRING, "signature of whole octets");
    return rp_der_finish(&basic, "end of BasicOCSPResponse");
}

static int valid_status(int64_t s)
{
    return s == RP_OCSP_SUCCESSFUL || s == RP_OCSP_MALFORMED_REQUEST ||
           s == RP_OCSP_INTERNAL_ERROR || s == RP_OCSP_TRY_LATER || s == RP_OCSP_SIG_REQUIRED ||
           s == RP_OCSP_UNAUTHORIZED;
}

int rp_ocsp_resp_parse(const uint8_t *p, size_t n, struct rp_ocsp_resp *out, struct rp_der_err *err)
{
    struct rp_der d, r, w, rb;
    struct rp_der_tlv t;
    struct rp_view type;
    int64_t status;
    int rc;
    memset(out, 0, sizeof *out);
    rp_der_init(&d, p, n, err);
    if ((rc = rp_der_expect_enter(&d, RP_DER_SEQUENCE, &r, &t, "OCSPResponse")) < 0 ||
        (rc = rp_der_finish(&d, "end of input")) < 0)
        return rc;
    out->raw = t.raw;
    if ((rc = rp_der_expect(&r, RP_DER_ENUMERATED, &t, "responseStatus")) < 0 ||
        (rc = rp_der_int64(&r, &t, &status)) < 0)
        return rc;
    if (!valid_status(status))
        return rp_der_fail(&r, t.raw.p, RP_E_OCSP_RESPONSE, "a known OCSPResponseStatus");
    out->status = (enum rp_ocsp_resp_status)status;
    if ((rc = rp_der_optional(&r, RP_DER_CTX_CONS(0), &t)) < 0)
        return rc;
    if (rc == 0 || out->status != RP_OCSP_SUCCESSFUL) {
        if (rc == 0 && out->status == RP_OCSP_SUCCESSFUL)
            return rp_der_fail(&r, r.p, RP_E_OCSP_RESPONSE, "responseBytes");
        if (rc == 1 && (rc = rp_der_validate(&r, &t)) < 0)
            return rc;
        return rp_der_finish(&r, "end of OCSPResponse");
    }
    if ((rc = rp_der_enter(&r, &t, &w)) < 0 ||
        (rc = rp_der_expect_enter(&w, RP_DER_SEQUENCE, &rb, NULL, "ResponseBytes")) < 0 ||
        (rc = rp_der_finish(&w, "end of responseBytes")) < 0 ||
        (rc = rp_der_expect(&rb, RP_DER_OID, &t, "responseType")) < 0 ||
        (rc = rp_der_oid(&rb, &t, &type)) < 0)
        return rc;
    if (!rp_oid_is(type, RP_OID_OCSP_BASIC))
        return rp_der_fail(&rb, t.raw.p, RP_E_OCSP_RESPONSE, "id-pkix-ocsp-basic");
    if ((rc = rp_der_expect(&rb, RP_DER_OCTET_STRING, &t, "response")) < 0 ||
        (rc = rp_der_finish(&rb, "end of ResponseBytes")) < 0 ||
        (rc = read_basic(&rb, t.val, out)) < 0)
        return rc;
    return rp_der_finish(&r, "end of OCSPResponse");
}

void rp_ocsp_status_response(enum rp_ocsp_resp_status s, uint8_t out[RP_OCSP_STATUS_RESPONSE_LEN])
{
    out[0] = RP_DER_SEQUENCE;
    out[1] = 3;
    out[2] = RP_DER_ENUMERATED;
    out[3] = 1;
    out[4] = (uint8_t)s;
}

/* ---- base64 ---------------------------------------------------------------- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int rp_ocsp_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t len = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad > 0)
            return RP_E_INVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (len == cap)
                return RP_E_INVAL;
            out[len++] = (uint8_t)(acc >> bits);
        }
    }
    /* 6 leftover bits can never be; the 2 or 4 leftover bits must be zero */
    if (bits >= 6 || pad > 2 || (acc & ((1u << bits) - 1)) != 0)
        return RP_E_INVAL;
    *outlen = len;
    return RP_OK;
}

/* ---- trust ------------------------------------------------------------------------- */

struct tcert {
    uint8_t *der;
    struct rp_cert c;
    struct rp_pubkey *key;
};

struct rp_ocsp_trust {
    _Atomic long refs;
    int has_responder;
    struct tcert responder;
    size_t n_cas;
    struct tcert cas[];
};

static int tcert_init(struct tcert *t, struct rp_view der)
{
    int rc;
    t->der = malloc(der.len ? der.len : 1);
    if (!t->der)
        return RP_E_NOMEM;
    memcpy(t->der, der.p, der.len);
    if ((rc = rp_cert_parse(t->der, der.len, &t->c)) < 0)
        return rc;
    return rp_pubkey_from_spki(t->c.spki, &t->key);
}

static void tcert_free(struct tcert *t)
{
    if (t->key)
        rp_pubkey_free(t->key);
    free(t->der);
}

static void trust_free(struct rp_ocsp_trust *t)
{
    if (t->has_responder)
        tcert_free(&t->responder);
    for (size_t i = 0; i < t->n_cas; i++)
        tcert_free(&t->cas[i]);
    free(t);
}

int rp_ocsp_trust_new(struct rp_ocsp_trust **out, struct rp_view responder_cert,
                      const struct rp_view *cas, size_t n_cas)
{
    int rc = RP_OK;
    *out = NULL;
    if (!rp_view_present(responder_cert) && n_cas == 0)
        return RP_E_INVAL;
    struct rp_ocsp_trust *t = calloc(1, sizeof *t + n_cas * sizeof t->cas[0]);
    if (!t)
        return RP_E_NOMEM;
    atomic_init(&t->refs, 1);
    if (rp_view_present(responder_cert)) {
        t->has_responder = 1;
        rc = tcert_init(&t->responder, responder_cert);
    }
    for (size_t i = 0; i < n_cas && rc == RP_OK; i++) {
        t->n_cas = i + 1;
        rc = tcert_init(&t->cas[i], cas[i]);
    }
    if (rc != RP_OK) {
        trust_free(t);
        return rc == RP_E_NOMEM ? rc : RP_E_KEY_LOAD;
    }
    *out = t;
    return RP_OK;
}

/* The certificates of one file (PEM or DER), at most cap of them. */
static int load_file(const char *path, struct rp_cert_file *f, size_t cap)
{
    if (rp_cert_file_load(path, PEM_FILE_MAX, cap, f) != RP_OK) {
        rp_log_error("ocsp", "cannot load certificates from %s", path);
        return RP_E_KEY_LOAD;
    }
    return RP_OK;
}

int rp_ocsp_trust_load(struct rp_ocsp_trust **out, const char *responder_cert,
                       char *const *ca_files, unsigned n_ca_files)
{
    struct rp_view resp = RP_VIEW_NULL, cas[PEM_MAX_CERTS] = {{0}};
    struct rp_cert_file resp_file = {0}, *files = calloc(n_ca_files + 1, sizeof *files);
    size_t n_cas = 0;
    int rc = RP_OK;
    *out = NULL;
    if (!files)
        return RP_E_NOMEM;
    if (responder_cert && (rc = load_file(responder_cert, &resp_file, 1)) == RP_OK)
        resp = resp_file.ders[0];
    for (unsigned i = 0; i < n_ca_files && rc == RP_OK; i++) {
        rc = load_file(ca_files[i], &files[i], PEM_MAX_CERTS - n_cas);
        for (size_t k = 0; rc == RP_OK && k < files[i].n; k++)
            cas[n_cas++] = files[i].ders[k];
    }
    if (rc == RP_OK && (rc = rp_ocsp_trust_new(out, resp, cas, n_cas)) != RP_OK)
        rp_log_error("ocsp", "validation certificates unusable: %s", rp_err_msg(rc));
    rp_cert_file_free(&resp_file);
    for (unsigned i = 0; i < n_ca_files; i++)
        rp_cert_file_free(&files[i]);
    free(files);
    return rc;
}

struct rp_ocsp_trust *rp_ocsp_trust_ref(struct rp_ocsp_trust *t)
{
    if (t)
        atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void rp_ocsp_trust_unref(struct rp_ocsp_trust *t)
{
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        trust_free(t);
}

/* ---- verification ------------------------------------------------------------------ */

static enum wc_HashType hash_of(struct rp_view oid)
{
    if (rp_oid_is(oid, RP_OID_SHA1))
        return WC_HASH_TYPE_SHA;
    if (rp_oid_is(oid, RP_OID_SHA256))
        return WC_HASH_TYPE_SHA256;
    if (rp_oid_is(oid, RP_OID_SHA384))
        return WC_HASH_TYPE_SHA384;
    if (rp_oid_is(oid, RP_OID_SHA512))
        return WC_HASH_TYPE_SHA512;
    return WC_HASH_TYPE_NONE;
}

/* 1 when H(data) == want. */
static int hash_is(enum wc_HashType h, struct rp_view data, struct rp_view want)
{
    uint8_t d[MAX_DIGEST];
    int len = wc_HashGetDigestSize(h);
    if (len <= 0 || (size_t)len != want.len ||
        wc_Hash(h, data.p, (word32)data.len, d, (word32)len) != 0)
        return 0;
    return memcmp(d, want.p, want.len) == 0;
}

static int certid_eq(const struct rp_ocsp_certid *a, const struct rp_ocsp_certid *b)
{
    return rp_view_eq(a->hash_alg, b->hash_alg) && rp_view_eq(a->name_hash, b->name_hash) &&
           rp_view_eq(a->key_hash, b->key_hash) && rp_view_eq(a->serial, b->serial);
}

/* The CertID names `ca` as the issuer: hashes of its subject and of its key. */
static int certid_issuer_is(const struct rp_ocsp_certid *id, const struct rp_cert *ca)
{
    enum wc_HashType h = hash_of(id->hash_alg);
    return h != WC_HASH_TYPE_NONE && hash_is(h, ca->subject, id->name_hash) &&
           hash_is(h, ca->spki_key.bytes, id->key_hash);
}

static int responder_id_is(const struct rp_ocsp_resp *r, const struct rp_cert *c)
{
    if (r->responder_by_key)
        return hash_is(WC_HASH_TYPE_SHA, c->spki_key.bytes, r->responder_id);
    return rp_name_eq(r->responder_id, c->subject);
}

/* RP_OK, RP_E_OCSP_SIGNATURE (wrong signature) or RP_E_BAD_ALG. */
static int sig_check(const struct rp_pubkey *key, struct rp_view alg_tlv, struct rp_view data,
                     const struct rp_der_bits *sig)
{
    enum rp_sig_alg a;
    int rc = rp_sig_alg_parse(alg_tlv, &a);
    if (rc != RP_OK)
        return RP_E_BAD_ALG;
    if (sig->unused != 0)
        return RP_E_OCSP_SIGNATURE;
    rc = rp_sig_verify(a, key, data.p, data.len, sig->bytes.p, sig->bytes.len);
    return rc == RP_E_BAD_MESSAGE_CHECK ? RP_E_OCSP_SIGNATURE : rc;
}

/* Every CertID of the request names this CA as issuer. */
static int all_issued_by(const struct rp_ocsp_req *req, const struct rp_cert *ca)
{
    for (size_t i = 0; i < req->n_ids; i++)
        if (!certid_issuer_is(&req->ids[i], ca))
            return 0;
    return 1;
}

static int key_ids_compatible(const struct rp_cert *leaf, const struct rp_cert *ca)
{
    return !rp_view_present(leaf->aki_key_id) || !rp_view_present(ca->ski) ||
           rp_view_eq(leaf->aki_key_id, ca->ski);
}

/* A delegated responder (RFC 6960 §4.2.2.2): issued by the CA that issued every requested
 * certificate, EKU id-kp-OCSPSigning, valid now. RP_OK or RP_E_OCSP_SIGNER. */
static int delegate_ok(const struct rp_ocsp_trust *t, const struct rp_ocsp_req *req,
                       const struct rp_cert *d, int64_t now)
{
    if (!rp_cert_has_eku(d, RP_OID_VIEW(RP_OID_KP_OCSP_SIGNING)) || d->unknown_critical ||
        (d->has_key_usage && !(d->key_usage & RP_KU_DIGITAL_SIGNATURE)) ||
        d->not_before > now + RP_OCSP_SKEW_S || d->not_after < now - RP_OCSP_SKEW_S)
        return RP_E_OCSP_SIGNER;
    for (size_t i = 0; i < t->n_cas; i++) {
        const struct tcert *ca = &t->cas[i];
        if (!rp_name_eq(d->issuer, ca->c.subject) || !key_ids_compatible(d, &ca->c) ||
            !all_issued_by(req, &ca->c))
            continue;
        if (sig_check(ca->key, d->sig_alg.raw, d->tbs, &d->sig) == RP_OK)
            return RP_OK;
    }
    return RP_E_OCSP_SIGNER;
}

/* Try the certificates of the response as delegated responders. */
static int verify_by_delegate(const struct rp_ocsp_trust *t, const struct rp_ocsp_req *req,
                              const struct rp_ocsp_resp *resp, int64_t now)
{
    int rc = RP_E_OCSP_SIGNER;
    for (size_t i = 0; i < resp->n_certs; i++) {
        struct rp_cert d;
        struct rp_pubkey *key = NULL;
        if (rp_cert_parse(resp->certs[i].p, resp->certs[i].len, &d) != RP_OK ||
            !responder_id_is(resp, &d) || delegate_ok(t, req, &d, now) != RP_OK)
            continue;
        if (rp_pubkey_from_spki(d.spki, &key) != RP_OK) {
            rc = RP_E_BAD_ALG;
            continue;
        }
        rc = sig_check(key, resp->sig_alg.raw, resp->tbs, &resp->sig);
        rp_pubkey_free(key);
        if (rc == RP_OK)
            return RP_OK;
    }
    return rc;
}

static int verify_signer(const struct rp_ocsp_trust *t, const struct rp_ocsp_req *req,
                         const struct rp_ocsp_resp *resp, int64_t now)
{
    int rc = RP_E_OCSP_SIGNER;
    /* the locally configured responder answers for every CA */
    if (t->has_responder && responder_id_is(resp, &t->responder.c)) {
        rc = sig_check(t->responder.key, resp->sig_alg.raw, resp->tbs, &resp->sig);
        if (rc == RP_OK)
            return RP_OK;
    }
    /* the issuing CA signing itself */
    for (size_t i = 0; i < t->n_cas; i++) {
        const struct tcert *ca = &t->cas[i];
        if (!responder_id_is(resp, &ca->c) || !all_issued_by(req, &ca->c))
            continue;
        rc = sig_check(ca->key, resp->sig_alg.raw, resp->tbs, &resp->sig);
        if (rc == RP_OK)
            return RP_OK;
    }
    int drc = verify_by_delegate(t, req, resp, now);
    return drc == RP_OK || rc == RP_E_OCSP_SIGNER ? drc : rc;
}

/* Every requested CertID answered, within its validity; the earliest nextUpdate. */
static int check_answers(const struct rp_ocsp_req *req, const struct rp_ocsp_resp *resp,
                         int64_t now, int64_t *expires)
{
    int64_t exp = INT64_MAX;
    for (size_t i = 0; i < req->n_ids; i++) {
        const struct rp_ocsp_single *s = NULL;
        for (size_t j = 0; j < resp->n_singles && !s; j++)
            if (certid_eq(&req->ids[i], &resp->singles[j].id))
                s = &resp->singles[j];
        if (!s)
            return RP_E_OCSP_MISMATCH;
        if (s->this_update > now + RP_OCSP_SKEW_S ||
            (s->next_update != 0 && s->next_update < now - RP_OCSP_SKEW_S))
            return RP_E_OCSP_STALE;
        if (s->next_update == 0)
            exp = 0;
        else if (exp != 0 && s->next_update < exp)
            exp = s->next_update;
    }
    *expires = exp == INT64_MAX ? 0 : exp;
    return RP_OK;
}

int rp_ocsp_verify(const struct rp_ocsp_trust *t, const struct rp_ocsp_req *req,
                   const struct rp_ocsp_resp *resp, int64_t now, int64_t *expires)
{
    int rc;
    *expires = 0;
    if (resp->status != RP_OCSP_SUCCESSFUL || resp->unknown_critical)
        return RP_E_OCSP_RESPONSE;
    if (rp_view_present(req->nonce) && !rp_view_eq(req->nonce, resp->nonce))
        return RP_E_OCSP_MISMATCH;
    if ((rc = check_answers(req, resp, now, expires)) != RP_OK)
        return rc;
    if ((rc = verify_signer(t, req, resp, now)) != RP_OK)
        *expires = 0;
    return rc;
}
