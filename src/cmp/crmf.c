/* CRMF (RFC 4211) and PKCS#10 (RFC 2986) request bodies. The CRMF module uses IMPLICIT
 * tags: [n] replaces the type's own tag, except around a CHOICE (Name, Time, POPOPrivKey),
 * which is always wrapped. */
#include "decode.h"

#include "raproxy/err.h"

enum template_tag {
    TPL_VERSION = 0,
    TPL_SERIAL = 1,
    TPL_SIGNING_ALG = 2,
    TPL_ISSUER = 3,
    TPL_VALIDITY = 4,
    TPL_SUBJECT = 5,
    TPL_PUBLIC_KEY = 6,
    TPL_ISSUER_UID = 7,
    TPL_SUBJECT_UID = 8,
    TPL_EXTENSIONS = 9,
};

/* Constructed or primitive, as the IMPLICIT base type requires. */
static const uint8_t template_constructed[TPL_EXTENSIONS + 1] = {0, 0, 1, 1, 1, 1, 1, 0, 0, 1};

#define POPO_PRIVKEY_MAX_CHOICE 4u
#define POPO_SUBSEQUENT_MESSAGE 1u
#define P10_VERSION_1           0

/* [n] wrapper around exactly one Name (CHOICE: explicit). */
static int template_name(struct rp_der *d, const struct rp_der_tlv *t, struct rp_view *out)
{
    struct rp_der c;
    struct rp_der_tlv k;
    int rc;
    if ((rc = rp_der_enter(d, t, &c)) < 0)
        return rc;
    if ((rc = rp_der_next(&c, &k)) < 0 || (rc = cmp_read_name(&c, &k, out)) < 0)
        return rc;
    return rp_der_finish(&c, "end of Name in CertTemplate");
}

/* OptionalValidity ::= SEQUENCE { notBefore [0] Time OPTIONAL, notAfter [1] Time OPTIONAL } */
static int template_validity(struct rp_der *d, const struct rp_der_tlv *t,
                             struct rp_crmf_template *o)
{
    struct rp_der c, w;
    struct rp_der_tlv k, time;
    int rc;
    o->validity_raw = t->raw;
    if ((rc = rp_der_enter(d, t, &c)) < 0)
        return rc;
    for (unsigned i = 0; i < 2; i++) {
        if ((rc = rp_der_optional(&c, RP_DER_CTX_CONS(i), &k)) < 0)
            return rc;
        if (rc == 0)
            continue;
        if ((rc = rp_der_enter(&c, &k, &w)) < 0 || (rc = rp_der_next(&w, &time)) < 0 ||
            (rc = rp_der_time(&w, &time, i == 0 ? &o->not_before : &o->not_after)) < 0 ||
            (rc = rp_der_finish(&w, "end of validity time")) < 0)
            return rc;
        *(i == 0 ? &o->has_not_before : &o->has_not_after) = 1;
    }
    /* RFC 4211: at least one of the two must be present. */
    if (!o->has_not_before && !o->has_not_after)
        return rp_der_fail(d, t->raw.p, RP_E_DER_COUNT, "notBefore or notAfter");
    return rp_der_finish(&c, "end of OptionalValidity");
}

static int template_public_key(struct rp_der *d, const struct rp_der_tlv *t,
                               struct rp_crmf_template *o)
{
    struct rp_der c;
    struct rp_der_tlv k;
    int rc;
    o->public_key_raw = t->raw;
    if ((rc = rp_der_enter(d, t, &c)) < 0)
        return rc;
    if ((rc = rp_der_next(&c, &k)) < 0 || (rc = rp_der_algid(&c, &k, &o->public_key_alg)) < 0)
        return rc;
    /* RFC 4211 Appendix C allows the key bits to be empty (the CA generates the key). */
    if ((rc = rp_der_expect(&c, RP_DER_BIT_STRING, &k, "BIT STRING subjectPublicKey")) < 0 ||
        (rc = rp_der_bits(&c, &k, &o->public_key_bits)) < 0)
        return rc;
    return rp_der_finish(&c, "end of [6] publicKey");
}

static int template_extensions(struct rp_der *d, const struct rp_der_tlv *t,
                               struct rp_crmf_template *o)
{
    struct rp_der c, e;
    struct rp_der_tlv k;
    size_t n;
    int rc;
    o->extensions_raw = t->raw;
    if ((rc = rp_der_enter(d, t, &c)) < 0)
        return rc;
    if ((rc = rp_der_count(&c, 1, RP_CMP_MAX_LIST, &n)) < 0)
        return rc;
    while (rp_der_left(&c) > 0) {
        int crit;
        if ((rc = rp_der_expect_enter(&c, RP_DER_SEQUENCE, &e, NULL, "Extension SEQUENCE")) < 0)
            return rc;
        if ((rc = rp_der_expect(&e, RP_DER_OID, &k, "OID extnID")) < 0 ||
            (rc = rp_der_oid(&e, &k, &(struct rp_view){0})) < 0)
            return rc;
        if ((rc = rp_der_optional(&e, RP_DER_BOOLEAN, &k)) < 0)
            return rc;
        if (rc == 1 && (rc = rp_der_bool(&e, &k, &crit)) < 0)
            return rc;
        if ((rc = rp_der_expect(&e, RP_DER_OCTET_STRING, &k, "OCTET STRING extnValue")) < 0 ||
            (rc = rp_der_finish(&e, "end of Extension")) < 0)
            return rc;
    }
    return RP_OK;
}

static int template_field(struct rp_der *d, const struct rp_der_tlv *t, struct rp_crmf_template *o)
{
    struct rp_der_tlv r;
    struct rp_der_algid alg;
    struct rp_der_bits bits;
    int rc;
    switch (t->number) {
    case TPL_VERSION:
        o->has_version = 1;
        return rp_der_int64(d, t, &o->version);
    case TPL_SERIAL:
        return rp_der_int(d, t, &o->serial);
    case TPL_SIGNING_ALG:
        r = cmp_retag(t, RP_DER_SEQUENCE);
        if ((rc = rp_der_algid(d, &r, &alg)) < 0)
            return rc;
        o->signing_alg_raw = t->raw;
        return RP_OK;
    case TPL_ISSUER:
        return template_name(d, t, &o->issuer);
    case TPL_VALIDITY:
        return template_validity(d, t, o);
    case TPL_SUBJECT:
        return template_name(d, t, &o->subject);
    case TPL_PUBLIC_KEY:
        return template_public_key(d, t, o);
    case TPL_ISSUER_UID:
    case TPL_SUBJECT_UID:
        if ((rc = rp_der_bits(d, t, &bits)) < 0)
            return rc;
        *(t->number == TPL_ISSUER_UID ? &o->issuer_uid_raw : &o->subject_uid_raw) = t->raw;
        return RP_OK;
    default:
        return template_extensions(d, t, o);
    }
}

int cmp_read_template(struct rp_der *d, const struct rp_der_tlv *t, struct rp_crmf_template *o)
{
    struct rp_der c;
    struct rp_der_tlv k;
    int next_allowed = 0, rc;
    memset(o, 0, sizeof *o);
    o->raw = t->raw;
    if ((rc = rp_der_enter(d, t, &c)) < 0)
        return rc;
    while (rp_der_left(&c) > 0) {
        if ((rc = rp_der_next(&c, &k)) < 0)
            return rc;
        if (k.cls != RP_DER_CLASS_CONTEXT || k.number > TPL_EXTENSIONS ||
            (int)k.number < next_allowed || k.constructed != template_constructed[k.number])
            return rp_der_fail(&c, k.raw.p, RP_E_DER_TAG, "CertTemplate fields [0]..[9] in order");
        next_allowed = (int)k.number + 1;
        if ((rc = template_field(&c, &k, o)) < 0)
            return rc;
    }
    return RP_OK;
}

/* CertId ::= SEQUENCE { issuer GeneralName, serialNumber INTEGER } */
int cmp_read_certid(struct rp_der *d, struct rp_crmf_certid *out)
{
    struct rp_der c;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "CertId SEQUENCE")) < 0)
        return rc;
    out->raw = t.raw;
    if ((rc = cmp_read_gname(&c, &out->issuer, "GeneralName issuer")) < 0)
        return rc;
    if ((rc = rp_der_expect(&c, RP_DER_INTEGER, &t, "INTEGER serialNumber")) < 0 ||
        (rc = rp_der_int(&c, &t, &out->serial)) < 0)
        return rc;
    return rp_der_finish(&c, "end of CertId");
}

/* A UTF8String control value (regToken, authenticator): its content. */
static int control_utf8(struct rp_der *d, const struct rp_cmp_itav *it, struct rp_view *out)
{
    struct rp_der v = *d;
    struct rp_der_tlv t;
    int rc;
    v.p = it->value.p;
    v.end = it->value.p + it->value.len;
    if ((rc = rp_der_expect(&v, RP_DER_UTF8_STRING, &t, "UTF8String control value")) < 0)
        return rc;
    *out = t.val;
    return RP_OK;
}

static int read_controls(struct cmp_dec *x, struct rp_der *d, struct rp_crmf_req *r)
{
    struct rp_der s;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    if ((rc = cmp_seq_of(x, d, RP_DER_SEQUENCE, 1, sizeof(struct rp_cmp_itav), &s, &t, &arr,
                         &r->n_controls, "Controls SEQUENCE")) < 0)
        return rc;
    r->controls_raw = t.raw;
    r->controls = arr;
    for (size_t i = 0; i < r->n_controls; i++) {
        struct rp_cmp_itav *it = &r->controls[i];
        if ((rc = cmp_read_itav(&s, it, 1)) < 0)
            return rc;
        if (rp_oid_is(it->type, RP_OID_REGCTRL_REG_TOKEN)) {
            rc = control_utf8(&s, it, &r->reg_token);
        } else if (rp_oid_is(it->type, RP_OID_REGCTRL_AUTHENTICATOR)) {
            rc = control_utf8(&s, it, &r->authenticator);
        } else if (rp_oid_is(it->type, RP_OID_REGCTRL_OLD_CERT_ID)) {
            struct rp_der v = s;
            v.p = it->value.p;
            v.end = it->value.p + it->value.len;
            rc = cmp_read_certid(&v, &r->old_cert_id);
            r->has_old_cert_id = 1;
        }
        if (rc < 0)
            return rc;
    }
    return RP_OK;
}

/* POPOSigningKey ::= SEQUENCE { poposkInput [0] POPOSigningKeyInput OPTIONAL,
 *                               algorithmIdentifier, signature BIT STRING } */
static int pop_signature(struct rp_der *d, const struct rp_der_tlv *t, struct rp_crmf_pop *p)
{
    struct rp_der c;
    struct rp_der_tlv k;
    int rc;
    if ((rc = rp_der_enter(d, t, &c)) < 0)
        return rc;
    if ((rc = rp_der_optional(&c, RP_DER_CTX_CONS(0), &k)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = rp_der_validate(&c, &k)) < 0)
            return rc;
        p->poposk_input_raw = k.raw;
    }
    if ((rc = rp_der_next(&c, &k)) < 0 || (rc = rp_der_algid(&c, &k, &p->alg)) < 0)
        return rc;
    if ((rc = rp_der_expect(&c, RP_DER_BIT_STRING, &k, "BIT STRING signature")) < 0 ||
        (rc = rp_der_bits(&c, &k, &p->signature)) < 0)
        return rc;
    return rp_der_finish(&c, "end of POPOSigningKey");
}

/* POPOPrivKey CHOICE inside an explicit [2]/[3]. */
static int pop_privkey(struct rp_der *d, const struct rp_der_tlv *t, struct rp_crmf_pop *p)
{
    struct rp_der c;
    struct rp_der_tlv k;
    struct rp_der_bits bits;
    int rc;
    if ((rc = rp_der_enter(d, t, &c)) < 0 || (rc = rp_der_next(&c, &k)) < 0)
        return rc;
    if (k.cls != RP_DER_CLASS_CONTEXT || k.number > POPO_PRIVKEY_MAX_CHOICE)
        return rp_der_fail(&c, k.raw.p, RP_E_DER_TAG, "POPOPrivKey [0]..[4]");
    p->privkey_choice = (int)k.number;
    p->privkey_raw = k.raw;
    if (k.constructed != (k.number >= 3))
        return rp_der_fail(&c, k.raw.p, RP_E_DER_TAG, "POPOPrivKey alternative's form");
    if (k.number == POPO_SUBSEQUENT_MESSAGE) {
        if ((rc = rp_der_int64(&c, &k, &p->subsequent_message)) < 0)
            return rc;
        if (p->subsequent_message < 0 || p->subsequent_message > 1)
            return rp_der_fail(&c, k.raw.p, RP_E_CMP_BODY, "encrCert(0) or challengeResp(1)");
    } else if (k.constructed) {
        if ((rc = rp_der_validate(&c, &k)) < 0)
            return rc;
    } else if ((rc = rp_der_bits(&c, &k, &bits)) < 0) {
        return rc;
    }
    return rp_der_finish(&c, "end of POPOPrivKey");
}

static int read_pop(struct rp_der *d, struct rp_crmf_pop *p)
{
    struct rp_der_tlv t;
    int rc;
    p->type = RP_CRMF_POP_NONE;
    p->privkey_choice = -1;
    if (rp_der_left(d) == 0)
        return RP_OK;
    if ((rc = rp_der_peek(d, &t)) < 0)
        return rc;
    if (t.cls != RP_DER_CLASS_CONTEXT)
        return RP_OK; /* regInfo follows, no POP */
    d->p = t.raw.p + t.raw.len;
    p->raw = t.raw;
    if (t.ident == RP_DER_CTX(0)) {
        p->type = RP_CRMF_POP_RA_VERIFIED;
        return rp_der_null(d, &t);
    }
    if (t.ident == RP_DER_CTX_CONS(1)) {
        p->type = RP_CRMF_POP_SIGNATURE;
        return pop_signature(d, &t, p);
    }
    if (t.ident == RP_DER_CTX_CONS(2) || t.ident == RP_DER_CTX_CONS(3)) {
        p->type = t.number == 2 ? RP_CRMF_POP_KEY_ENCIPHERMENT : RP_CRMF_POP_KEY_AGREEMENT;
        return pop_privkey(d, &t, p);
    }
    return rp_der_fail(d, t.raw.p, RP_E_DER_TAG, "ProofOfPossession [0]..[3]");
}

static int read_cert_req(struct cmp_dec *x, struct rp_der *d, struct rp_crmf_req *r)
{
    struct rp_der c;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "CertRequest SEQUENCE")) < 0)
        return rc;
    r->cert_req_raw = t.raw;
    if ((rc = cmp_read_int(&c, &r->cert_req_id, "INTEGER certReqId")) < 0)
        return rc;
    if ((rc = rp_der_expect(&c, RP_DER_SEQUENCE, &t, "CertTemplate SEQUENCE")) < 0 ||
        (rc = cmp_read_template(&c, &t, &r->tmpl)) < 0)
        return rc;
    if (rp_der_left(&c) > 0 && (rc = read_controls(x, &c, r)) < 0)
        return rc;
    return rp_der_finish(&c, "end of CertRequest");
}

static int read_cert_req_msg(struct cmp_dec *x, struct rp_der *d, struct rp_crmf_req *r)
{
    struct rp_der c;
    struct rp_der_tlv t;
    size_t n;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "CertReqMsg SEQUENCE")) < 0)
        return rc;
    r->raw = t.raw;
    if ((rc = read_cert_req(x, &c, r)) < 0)
        return rc;
    if ((rc = read_pop(&c, &r->pop)) < 0)
        return rc;
    if ((rc = rp_der_optional(&c, RP_DER_SEQUENCE, &t)) < 0)
        return rc;
    if (rc == 1) {
        struct rp_der s;
        struct rp_cmp_itav it;
        if ((rc = rp_der_enter(&c, &t, &s)) < 0 ||
            (rc = rp_der_count(&s, 1, RP_CMP_MAX_LIST, &n)) < 0)
            return rc;
        while (rp_der_left(&s) > 0)
            if ((rc = cmp_read_itav(&s, &it, 1)) < 0)
                return rc;
        r->reg_info_raw = t.raw;
    }
    return rp_der_finish(&c, "end of CertReqMsg");
}

int cmp_body_certreqs(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                      struct rp_cmp_certreqs *out)
{
    struct rp_der wrap = *d, s;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    /* Re-read the content TLV through cmp_seq_of so its count and array come together. */
    wrap.p = content->raw.p;
    wrap.end = content->raw.p + content->raw.len;
    if ((rc = cmp_seq_of(x, &wrap, RP_DER_SEQUENCE, 1, sizeof(struct rp_crmf_req), &s, &t, &arr,
                         &out->n, "CertReqMessages SEQUENCE")) < 0)
        return rc;
    out->reqs = arr;
    for (size_t i = 0; i < out->n; i++)
        if ((rc = read_cert_req_msg(x, &s, &out->reqs[i])) < 0)
            return rc;
    return RP_OK;
}

static int read_spki(struct rp_der *d, struct rp_cmp_p10 *o)
{
    struct rp_der c;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "SubjectPublicKeyInfo")) < 0)
        return rc;
    o->spki_raw = t.raw;
    if ((rc = rp_der_next(&c, &t)) < 0 || (rc = rp_der_algid(&c, &t, &o->spki_alg)) < 0)
        return rc;
    if ((rc = rp_der_expect(&c, RP_DER_BIT_STRING, &t, "BIT STRING subjectPublicKey")) < 0 ||
        (rc = rp_der_bits(&c, &t, &o->spki_bits)) < 0)
        return rc;
    return rp_der_finish(&c, "end of SubjectPublicKeyInfo");
}

/* CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm,
 *                                     signature BIT STRING } */
int cmp_body_p10(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                 struct rp_cmp_p10 *o)
{
    struct rp_der c, cri;
    struct rp_der_tlv t;
    int rc;
    (void)x;
    if (content->ident != RP_DER_SEQUENCE)
        return rp_der_fail(d, content->raw.p, RP_E_DER_TAG, "CertificationRequest SEQUENCE");
    o->raw = content->raw;
    if ((rc = rp_der_enter(d, content, &c)) < 0)
        return rc;
    if ((rc = rp_der_expect_enter(&c, RP_DER_SEQUENCE, &cri, &t, "CertificationRequestInfo")) < 0)
        return rc;
    o->cri_raw = t.raw;
    if ((rc = cmp_read_int(&cri, &o->version, "INTEGER version")) < 0)
        return rc;
    if (o->version != P10_VERSION_1)
        return rp_der_fail(&cri, o->cri_raw.p, RP_E_CMP_BODY, "PKCS#10 version 0");
    if ((rc = rp_der_next(&cri, &t)) < 0 || (rc = cmp_read_name(&cri, &t, &o->subject)) < 0)
        return rc;
    if ((rc = read_spki(&cri, o)) < 0)
        return rc;
    if ((rc = rp_der_expect(&cri, RP_DER_CTX_CONS(0), &t, "[0] attributes")) < 0 ||
        (rc = rp_der_validate(&cri, &t)) < 0)
        return rc;
    o->attributes_raw = t.raw;
    if ((rc = rp_der_finish(&cri, "end of CertificationRequestInfo")) < 0)
        return rc;
    if ((rc = rp_der_next(&c, &t)) < 0 || (rc = rp_der_algid(&c, &t, &o->sig_alg)) < 0)
        return rc;
    if ((rc = rp_der_expect(&c, RP_DER_BIT_STRING, &t, "BIT STRING signature")) < 0 ||
        (rc = rp_der_bits(&c, &t, &o->signature)) < 0)
        return rc;
    return rp_der_finish(&c, "end of CertificationRequest");
}

/* POPOSigningKeyInput ::= SEQUENCE { authInfo CHOICE { sender [0] GeneralName,
 *     publicKeyMAC PKMACValue }, publicKey SubjectPublicKeyInfo }
 * PKMACValue ::= SEQUENCE { algId AlgorithmIdentifier, value BIT STRING }
 * The decoder only checks that poposkInput is DER: what it holds is judged here, when the
 * RA checks the proof of possession (a malformed one is a bad POP, not a bad message). */
int rp_crmf_poposk_input_parse(struct rp_view raw, struct rp_crmf_poposk_input *out)
{
    struct rp_der d, c, w;
    struct rp_der_tlv t, k;
    int rc;
    memset(out, 0, sizeof *out);
    rp_der_init(&d, raw.p, raw.len, NULL);
    if ((rc = rp_der_expect_enter(&d, RP_DER_CTX_CONS(0), &c, NULL, "[0] poposkInput")) < 0 ||
        (rc = rp_der_finish(&d, "end of poposkInput")) < 0)
        return rc;
    if ((rc = rp_der_next(&c, &t)) < 0)
        return rc;
    if (t.ident == RP_DER_CTX_CONS(0)) {
        out->auth = RP_CRMF_AUTH_SENDER;
        if ((rc = rp_der_enter(&c, &t, &w)) < 0 ||
            (rc = cmp_read_gname(&w, &out->sender, "GeneralName sender")) < 0 ||
            (rc = rp_der_finish(&w, "end of [0] sender")) < 0)
            return rc;
    } else if (t.ident == RP_DER_SEQUENCE) {
        out->auth = RP_CRMF_AUTH_PUBLIC_KEY_MAC;
        if ((rc = rp_der_enter(&c, &t, &w)) < 0 || (rc = rp_der_next(&w, &k)) < 0 ||
            (rc = rp_der_algid(&w, &k, &out->mac_alg)) < 0 ||
            (rc = rp_der_expect(&w, RP_DER_BIT_STRING, &k, "BIT STRING value")) < 0 ||
            (rc = rp_der_bits(&w, &k, &out->mac_value)) < 0 ||
            (rc = rp_der_finish(&w, "end of PKMACValue")) < 0)
            return rc;
    } else {
        return rp_der_fail(&c, t.raw.p, RP_E_DER_TAG, "authInfo sender [0] or publicKeyMAC");
    }
    if ((rc = rp_der_expect(&c, RP_DER_SEQUENCE, &t, "SubjectPublicKeyInfo")) < 0 ||
        (rc = rp_der_validate(&c, &t)) < 0)
        return rc;
    out->public_key = t.raw;
    return rp_der_finish(&c, "end of POPOSigningKeyInput");
}

int rp_crmf_template_spki(const struct rp_crmf_template *t, struct rp_arena *a, struct rp_view *out)
{
    uint8_t *buf;
    if (!t->public_key_raw.p || t->public_key_raw.len == 0)
        return RP_E_NOT_FOUND;
    /* [6] IMPLICIT only changed the identifier octet (A6 -> 30): length is unchanged. */
    if (!(buf = rp_arena_dup(a, t->public_key_raw.p, t->public_key_raw.len)))
        return RP_E_ARENA;
    buf[0] = RP_DER_SEQUENCE;
    *out = rp_view_make(buf, t->public_key_raw.len);
    return RP_OK;
}
