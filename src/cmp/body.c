/* PKIBody contents other than the CRMF/PKCS#10 requests (those are in crmf.c). */
#include "decode.h"

#include "raproxy/err.h"

#define CERT_OR_ENC_CERT      0u
#define CERT_OR_ENC_ENCRYPTED 1u
#define CRL_REASON_MAX        10 /* aACompromise */

/* A cursor positioned on an already-read content TLV, so list readers can re-read it. */
static struct rp_der over(const struct rp_der *d, const struct rp_der_tlv *t)
{
    struct rp_der w = *d;
    w.p = t->raw.p;
    w.end = t->raw.p + t->raw.len;
    return w;
}

/* CertifiedKeyPair ::= SEQUENCE { certOrEncCert CertOrEncCert,
 *     privateKey [0] EncryptedKey OPTIONAL, publicationInfo [1] PKIPublicationInfo OPTIONAL } */
static int read_certified_key_pair(struct rp_der *d, struct rp_cmp_certresp *r)
{
    struct rp_der c, w;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "CertifiedKeyPair SEQUENCE")) < 0)
        return rc;
    r->certified_key_pair_raw = t.raw;
    if ((rc = rp_der_next(&c, &t)) < 0)
        return rc;
    if (t.ident == RP_DER_CTX_CONS(CERT_OR_ENC_CERT)) {
        if ((rc = rp_der_enter(&c, &t, &w)) < 0 || (rc = cmp_read_cert_tlv(&w, &r->cert)) < 0 ||
            (rc = rp_der_finish(&w, "end of [0] certificate")) < 0)
            return rc;
    } else if (t.ident == RP_DER_CTX_CONS(CERT_OR_ENC_ENCRYPTED)) {
        if ((rc = rp_der_validate(&c, &t)) < 0)
            return rc;
        r->encrypted_cert_raw = t.raw;
    } else {
        return rp_der_fail(&c, t.raw.p, RP_E_DER_TAG, "CertOrEncCert [0] or [1]");
    }
    if ((rc = rp_der_optional(&c, RP_DER_CTX_CONS(0), &t)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = rp_der_validate(&c, &t)) < 0)
            return rc;
        r->private_key_raw = t.raw;
    }
    if ((rc = rp_der_optional(&c, RP_DER_CTX_CONS(1), &t)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = rp_der_validate(&c, &t)) < 0)
            return rc;
        r->publication_info_raw = t.raw;
    }
    return rp_der_finish(&c, "end of CertifiedKeyPair");
}

static int read_cert_response(struct rp_der *d, struct rp_cmp_certresp *r)
{
    struct rp_der c;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "CertResponse SEQUENCE")) < 0)
        return rc;
    r->raw = t.raw;
    if ((rc = cmp_read_int(&c, &r->cert_req_id, "INTEGER certReqId")) < 0 ||
        (rc = cmp_read_status(&c, &r->status)) < 0)
        return rc;
    if (rp_der_left(&c) > 0) {
        if ((rc = rp_der_peek(&c, &t)) < 0)
            return rc;
        if (t.ident == RP_DER_SEQUENCE && (rc = read_certified_key_pair(&c, r)) < 0)
            return rc;
    }
    if ((rc = rp_der_optional(&c, RP_DER_OCTET_STRING, &t)) < 0)
        return rc;
    if (rc == 1)
        r->rsp_info = t.val;
    return rp_der_finish(&c, "end of CertResponse");
}

/* CertRepMessage ::= SEQUENCE { caPubs [1] SEQUENCE SIZE (1..MAX) OF CMPCertificate OPTIONAL,
 *                               response SEQUENCE OF CertResponse } */
static int body_certrep(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                        struct rp_cmp_certrep *o)
{
    struct rp_der c, w, s;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    if (content->ident != RP_DER_SEQUENCE)
        return rp_der_fail(d, content->raw.p, RP_E_DER_TAG, "CertRepMessage SEQUENCE");
    if ((rc = rp_der_enter(d, content, &c)) < 0)
        return rc;
    if ((rc = rp_der_optional(&c, RP_DER_CTX_CONS(1), &t)) < 0)
        return rc;
    if (rc == 1) {
        o->ca_pubs_raw = t.raw;
        if ((rc = rp_der_enter(&c, &t, &w)) < 0)
            return rc;
        if ((rc = cmp_seq_of(x, &w, RP_DER_SEQUENCE, 1, sizeof(struct rp_view), &s, &t, &arr,
                             &o->n_ca_pubs, "caPubs SEQUENCE")) < 0)
            return rc;
        o->ca_pubs = arr;
        for (size_t i = 0; i < o->n_ca_pubs; i++)
            if ((rc = cmp_read_cert_tlv(&s, &o->ca_pubs[i])) < 0)
                return rc;
        if ((rc = rp_der_finish(&w, "end of [1] caPubs")) < 0)
            return rc;
    }
    if ((rc = cmp_seq_of(x, &c, RP_DER_SEQUENCE, 0, sizeof(struct rp_cmp_certresp), &s, &t, &arr,
                         &o->n, "response SEQUENCE")) < 0)
        return rc;
    o->resps = arr;
    for (size_t i = 0; i < o->n; i++)
        if ((rc = read_cert_response(&s, &o->resps[i])) < 0)
            return rc;
    return rp_der_finish(&c, "end of CertRepMessage");
}

/* CertStatus ::= SEQUENCE { certHash OCTET STRING, certReqId INTEGER,
 *     statusInfo PKIStatusInfo OPTIONAL, hashAlg [0] AlgorithmIdentifier OPTIONAL } */
static int read_cert_status(struct rp_der *d, struct rp_cmp_certstatus *o)
{
    struct rp_der c, w;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "CertStatus SEQUENCE")) < 0)
        return rc;
    o->raw = t.raw;
    if ((rc = rp_der_expect(&c, RP_DER_OCTET_STRING, &t, "OCTET STRING certHash")) < 0)
        return rc;
    o->cert_hash = t.val;
    if ((rc = cmp_read_int(&c, &o->cert_req_id, "INTEGER certReqId")) < 0)
        return rc;
    if (rp_der_left(&c) > 0) {
        if ((rc = rp_der_peek(&c, &t)) < 0)
            return rc;
        if (t.ident == RP_DER_SEQUENCE) {
            if ((rc = cmp_read_status(&c, &o->status)) < 0)
                return rc;
            o->has_status = 1;
        }
    }
    if ((rc = rp_der_optional(&c, RP_DER_CTX_CONS(0), &t)) < 0)
        return rc;
    if (rc == 1) {
        struct rp_der_tlv k;
        if ((rc = rp_der_enter(&c, &t, &w)) < 0 || (rc = rp_der_next(&w, &k)) < 0 ||
            (rc = rp_der_algid(&w, &k, &o->hash_alg)) < 0 ||
            (rc = rp_der_finish(&w, "end of [0] hashAlg")) < 0)
            return rc;
        o->has_hash_alg = 1;
    }
    return rp_der_finish(&c, "end of CertStatus");
}

static int body_certconf(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                         struct rp_cmp_certconf *o)
{
    struct rp_der w = over(d, content), s;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    if ((rc = cmp_seq_of(x, &w, RP_DER_SEQUENCE, 0, sizeof(struct rp_cmp_certstatus), &s, &t, &arr,
                         &o->n, "CertConfirmContent SEQUENCE")) < 0)
        return rc;
    o->items = arr;
    for (size_t i = 0; i < o->n; i++)
        if ((rc = read_cert_status(&s, &o->items[i])) < 0)
            return rc;
    return RP_OK;
}

/* crlEntryDetails: Extensions; the reasonCode (2.5.29.21) is an ENUMERATED. */
static int read_crl_entry_details(struct rp_der *d, struct rp_cmp_revdetails *o)
{
    struct rp_der c, e, v;
    struct rp_der_tlv t, k, value;
    size_t n;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "crlEntryDetails SEQUENCE")) < 0)
        return rc;
    o->crl_entry_details_raw = t.raw;
    if ((rc = rp_der_count(&c, 1, RP_CMP_MAX_LIST, &n)) < 0)
        return rc;
    while (rp_der_left(&c) > 0) {
        struct rp_view oid;
        int crit;
        if ((rc = rp_der_expect_enter(&c, RP_DER_SEQUENCE, &e, NULL, "Extension SEQUENCE")) < 0)
            return rc;
        if ((rc = rp_der_expect(&e, RP_DER_OID, &k, "OID extnID")) < 0 ||
            (rc = rp_der_oid(&e, &k, &oid)) < 0)
            return rc;
        if ((rc = rp_der_optional(&e, RP_DER_BOOLEAN, &k)) < 0)
            return rc;
        if (rc == 1 && (rc = rp_der_bool(&e, &k, &crit)) < 0)
            return rc;
        if ((rc = rp_der_expect(&e, RP_DER_OCTET_STRING, &value, "OCTET STRING extnValue")) < 0 ||
            (rc = rp_der_finish(&e, "end of Extension")) < 0)
            return rc;
        if (!rp_oid_is(oid, RP_OID_CE_CRL_REASON))
            continue;
        int64_t reason;
        v = over(&e, &value);
        v.p = value.val.p;
        v.end = value.val.p + value.val.len;
        if ((rc = rp_der_expect(&v, RP_DER_ENUMERATED, &k, "ENUMERATED CRLReason")) < 0 ||
            (rc = rp_der_int64(&v, &k, &reason)) < 0 ||
            (rc = rp_der_finish(&v, "end of CRLReason")) < 0)
            return rc;
        /* 7 is unused in RFC 5280's CRLReason. */
        if (reason < 0 || reason > CRL_REASON_MAX || reason == 7)
            return rp_der_fail(&v, k.raw.p, RP_E_CMP_BODY, "CRLReason 0..10 (not 7)");
        o->reason = (int)reason;
    }
    return RP_OK;
}

static int read_rev_details(struct rp_der *d, struct rp_cmp_revdetails *o)
{
    struct rp_der c;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "RevDetails SEQUENCE")) < 0)
        return rc;
    o->raw = t.raw;
    o->reason = RP_CRL_REASON_NONE;
    if ((rc = rp_der_expect(&c, RP_DER_SEQUENCE, &t, "CertTemplate certDetails")) < 0 ||
        (rc = cmp_read_template(&c, &t, &o->tmpl)) < 0)
        return rc;
    if (rp_der_left(&c) > 0 && (rc = read_crl_entry_details(&c, o)) < 0)
        return rc;
    return rp_der_finish(&c, "end of RevDetails");
}

static int body_revreq(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                       struct rp_cmp_revreq *o)
{
    struct rp_der w = over(d, content), s;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    if ((rc = cmp_seq_of(x, &w, RP_DER_SEQUENCE, 1, sizeof(struct rp_cmp_revdetails), &s, &t, &arr,
                         &o->n, "RevReqContent SEQUENCE")) < 0)
        return rc;
    o->items = arr;
    for (size_t i = 0; i < o->n; i++)
        if ((rc = read_rev_details(&s, &o->items[i])) < 0)
            return rc;
    return RP_OK;
}

/* RevRepContent ::= SEQUENCE { status SEQUENCE SIZE (1..MAX) OF PKIStatusInfo,
 *     revCerts [0] SEQUENCE SIZE (1..MAX) OF CertId OPTIONAL,
 *     crls [1] SEQUENCE SIZE (1..MAX) OF CertificateList OPTIONAL } */
static int body_revrep(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                       struct rp_cmp_revrep *o)
{
    struct rp_der c, w, s;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    if (content->ident != RP_DER_SEQUENCE)
        return rp_der_fail(d, content->raw.p, RP_E_DER_TAG, "RevRepContent SEQUENCE");
    if ((rc = rp_der_enter(d, content, &c)) < 0)
        return rc;
    if ((rc = cmp_seq_of(x, &c, RP_DER_SEQUENCE, 1, sizeof(struct rp_cmp_status), &s, &t, &arr,
                         &o->n_status, "status SEQUENCE")) < 0)
        return rc;
    o->status = arr;
    for (size_t i = 0; i < o->n_status; i++)
        if ((rc = cmp_read_status(&s, &o->status[i])) < 0)
            return rc;
    if ((rc = rp_der_optional(&c, RP_DER_CTX_CONS(0), &t)) < 0)
        return rc;
    if (rc == 1) {
        o->rev_certs_raw = t.raw;
        if ((rc = rp_der_enter(&c, &t, &w)) < 0)
            return rc;
        if ((rc = cmp_seq_of(x, &w, RP_DER_SEQUENCE, 1, sizeof(struct rp_crmf_certid), &s, &t, &arr,
                             &o->n_rev_certs, "revCerts SEQUENCE")) < 0)
            return rc;
        o->rev_certs = arr;
        for (size_t i = 0; i < o->n_rev_certs; i++)
            if ((rc = cmp_read_certid(&s, &o->rev_certs[i])) < 0)
                return rc;
        if ((rc = rp_der_finish(&w, "end of [0] revCerts")) < 0)
            return rc;
    }
    if ((rc = rp_der_optional(&c, RP_DER_CTX_CONS(1), &t)) < 0)
        return rc;
    if (rc == 1) {
        /* CRLs are passed through: framing checked, content left to whoever uses them. */
        if ((rc = rp_der_enter(&c, &t, &w)) < 0 ||
            (rc = rp_der_expect_enter(&w, RP_DER_SEQUENCE, &s, NULL, "crls SEQUENCE")) < 0 ||
            (rc = rp_der_finish(&w, "end of [1] crls")) < 0)
            return rc;
        size_t n;
        if ((rc = rp_der_count(&s, 1, RP_CMP_MAX_LIST, &n)) < 0)
            return rc;
        while (rp_der_left(&s) > 0)
            if ((rc = rp_der_expect(&s, RP_DER_SEQUENCE, &t, "CertificateList SEQUENCE")) < 0)
                return rc;
        o->crls_raw = t.raw;
    }
    return rp_der_finish(&c, "end of RevRepContent");
}

/* GenMsgContent / GenRepContent ::= SEQUENCE OF InfoTypeAndValue */
static int body_genmsg(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                       struct rp_cmp_genmsg *o)
{
    struct rp_der w = over(d, content), s;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    if ((rc = cmp_seq_of(x, &w, RP_DER_SEQUENCE, 0, sizeof(struct rp_cmp_itav), &s, &t, &arr, &o->n,
                         "GenMsgContent SEQUENCE")) < 0)
        return rc;
    o->items = arr;
    for (size_t i = 0; i < o->n; i++)
        if ((rc = cmp_read_itav(&s, &o->items[i], 0)) < 0)
            return rc;
    return RP_OK;
}

/* PollReqContent ::= SEQUENCE OF SEQUENCE { certReqId INTEGER } */
static int body_pollreq(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                        struct rp_cmp_pollreq *o)
{
    struct rp_der w = over(d, content), s, e;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    if ((rc = cmp_seq_of(x, &w, RP_DER_SEQUENCE, 1, sizeof(int64_t), &s, &t, &arr, &o->n,
                         "PollReqContent SEQUENCE")) < 0)
        return rc;
    o->cert_req_ids = arr;
    for (size_t i = 0; i < o->n; i++) {
        if ((rc = rp_der_expect_enter(&s, RP_DER_SEQUENCE, &e, NULL, "SEQUENCE { certReqId }")) <
                0 ||
            (rc = cmp_read_int(&e, &o->cert_req_ids[i], "INTEGER certReqId")) < 0 ||
            (rc = rp_der_finish(&e, "end of pollReq entry")) < 0)
            return rc;
    }
    return RP_OK;
}

/* PollRepContent ::= SEQUENCE OF SEQUENCE { certReqId INTEGER, checkAfter INTEGER,
 *                                           reason PKIFreeText OPTIONAL } */
static int body_pollrep(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                        struct rp_cmp_pollrep *o)
{
    struct rp_der w = over(d, content), s, e;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    if ((rc = cmp_seq_of(x, &w, RP_DER_SEQUENCE, 1, sizeof(struct rp_cmp_pollrep_item), &s, &t,
                         &arr, &o->n, "PollRepContent SEQUENCE")) < 0)
        return rc;
    o->items = arr;
    for (size_t i = 0; i < o->n; i++) {
        struct rp_cmp_pollrep_item *it = &o->items[i];
        if ((rc = rp_der_expect_enter(&s, RP_DER_SEQUENCE, &e, &t, "pollRep entry SEQUENCE")) < 0)
            return rc;
        it->raw = t.raw;
        if ((rc = cmp_read_int(&e, &it->cert_req_id, "INTEGER certReqId")) < 0 ||
            (rc = cmp_read_int(&e, &it->check_after, "INTEGER checkAfter")) < 0)
            return rc;
        if (it->check_after < 0)
            return rp_der_fail(&e, t.raw.p, RP_E_CMP_BODY, "checkAfter >= 0");
        if ((rc = rp_der_optional(&e, RP_DER_SEQUENCE, &t)) < 0)
            return rc;
        if (rc == 1) {
            if ((rc = cmp_read_freetext(&e, &t)) < 0)
                return rc;
            it->reason = t.raw;
        }
        if ((rc = rp_der_finish(&e, "end of pollRep entry")) < 0)
            return rc;
    }
    return RP_OK;
}

/* ErrorMsgContent ::= SEQUENCE { pKIStatusInfo, errorCode INTEGER OPTIONAL,
 *                                errorDetails PKIFreeText OPTIONAL } */
static int body_error(struct rp_der *d, const struct rp_der_tlv *content, struct rp_cmp_errmsg *o)
{
    struct rp_der c;
    struct rp_der_tlv t;
    int rc;
    if (content->ident != RP_DER_SEQUENCE)
        return rp_der_fail(d, content->raw.p, RP_E_DER_TAG, "ErrorMsgContent SEQUENCE");
    if ((rc = rp_der_enter(d, content, &c)) < 0)
        return rc;
    if ((rc = cmp_read_status(&c, &o->status)) < 0)
        return rc;
    if ((rc = rp_der_optional(&c, RP_DER_INTEGER, &t)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = rp_der_int64(&c, &t, &o->error_code)) < 0)
            return rc;
        o->has_error_code = 1;
    }
    if ((rc = rp_der_optional(&c, RP_DER_SEQUENCE, &t)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = cmp_read_freetext(&c, &t)) < 0)
            return rc;
        o->error_details = t.raw;
    }
    return rp_der_finish(&c, "end of ErrorMsgContent");
}

/* NestedMessageContent ::= PKIMessages ::= SEQUENCE SIZE (1..MAX) OF PKIMessage */
static int body_nested(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                       struct rp_cmp_nested *o)
{
    struct rp_der w = over(d, content), s;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    if (x->nest + 1 > RP_CMP_MAX_NESTED)
        return rp_der_fail(d, content->raw.p, RP_E_DER_DEPTH, "nested messages within the cap");
    if ((rc = cmp_seq_of(x, &w, RP_DER_SEQUENCE, 1, sizeof(struct rp_cmp_msg), &s, &t, &arr, &o->n,
                         "PKIMessages SEQUENCE")) < 0)
        return rc;
    o->msgs = arr;
    x->nest++;
    for (size_t i = 0; i < o->n; i++)
        if ((rc = cmp_msg_read(x, &s, &o->msgs[i])) < 0)
            break;
    x->nest--;
    return rc;
}

int cmp_body_decode(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                    struct rp_cmp_body *b)
{
    switch (b->type) {
    case RP_CMP_IR:
    case RP_CMP_CR:
    case RP_CMP_KUR:
        return cmp_body_certreqs(x, d, content, &b->reqs);
    case RP_CMP_P10CR:
        return cmp_body_p10(x, d, content, &b->p10);
    case RP_CMP_IP:
    case RP_CMP_CP:
    case RP_CMP_KUP:
        return body_certrep(x, d, content, &b->rep);
    case RP_CMP_CERTCONF:
        return body_certconf(x, d, content, &b->conf);
    case RP_CMP_RR:
        return body_revreq(x, d, content, &b->rr);
    case RP_CMP_RP:
        return body_revrep(x, d, content, &b->rp);
    case RP_CMP_GENM:
    case RP_CMP_GENP:
        return body_genmsg(x, d, content, &b->gen);
    case RP_CMP_POLLREQ:
        return body_pollreq(x, d, content, &b->pollreq);
    case RP_CMP_POLLREP:
        return body_pollrep(x, d, content, &b->pollrep);
    case RP_CMP_ERROR:
        return body_error(d, content, &b->error);
    case RP_CMP_NESTED:
        return body_nested(x, d, content, &b->nested);
    case RP_CMP_PKICONF:
        if (content->ident != RP_DER_NULL)
            return rp_der_fail(d, content->raw.p, RP_E_DER_TAG, "PKIConfirmContent NULL");
        return rp_der_null(d, content);
    default:
        /* Recognised, not used by an RA: structure checked, kept as raw views. */
        return rp_der_validate(d, content);
    }
}
