/* PKIMessage, PKIHeader and the shared field readers (RFC 9810 §5.1, Appendix A). The CMP
 * module uses EXPLICIT tags: every [n] header field wraps the full TLV of its type. */
#include "decode.h"

#include "raproxy/cert.h"
#include "raproxy/err.h"

#include <string.h>

#define PVNO_MIN         RP_CMP_PVNO_CMP2000
#define PVNO_MAX         RP_CMP_PVNO_CMP2021
#define GNAME_MAX_CHOICE 8u
#define SEQ_HDR_MAX      6 /* 0x30, 0x84 and four length octets */

enum header_tag {
    HDR_MESSAGE_TIME = 0,
    HDR_PROTECTION_ALG = 1,
    HDR_SENDER_KID = 2,
    HDR_RECIP_KID = 3,
    HDR_TRANSACTION_ID = 4,
    HDR_SENDER_NONCE = 5,
    HDR_RECIP_NONCE = 6,
    HDR_FREE_TEXT = 7,
    HDR_GENERAL_INFO = 8,
};

static const char *const body_names[RP_CMP_BODY_COUNT] = {
    "ir",     "ip",      "cr",     "cp",   "p10cr", "popdecc", "popdecr",  "kur",     "kup",
    "krr",    "krp",     "rr",     "rp",   "ccr",   "ccp",     "ckuann",   "cann",    "rann",
    "crlann", "pkiconf", "nested", "genm", "genp",  "error",   "certConf", "pollReq", "pollRep",
};

const char *rp_cmp_body_name(enum rp_cmp_body_type t)
{
    if ((int)t < 0 || t >= RP_CMP_BODY_COUNT)
        return "unknown";
    return body_names[t];
}

int rp_cmp_body_from_name(const char *name)
{
    for (int i = 0; name && i < RP_CMP_BODY_COUNT; i++)
        if (strcmp(name, body_names[i]) == 0)
            return i;
    return -1;
}

/* ---- shared readers ---- */

void *cmp_alloc(struct cmp_dec *x, const struct rp_der *d, const uint8_t *at, size_t count,
                size_t size, int *rc)
{
    void *p = rp_arena_calloc(x->a, count ? count : 1, size);
    *rc = p ? RP_OK : rp_der_fail(d, at, RP_E_ARENA, "room in the exchange arena");
    return p;
}

int cmp_seq_of(struct cmp_dec *x, struct rp_der *d, uint8_t ident, size_t min, size_t size,
               struct rp_der *child, struct rp_der_tlv *t, void **arr, size_t *n, const char *what)
{
    int rc;
    if ((rc = rp_der_expect_enter(d, ident, child, t, what)) < 0)
        return rc;
    if ((rc = rp_der_count(child, min, RP_CMP_MAX_LIST, n)) < 0)
        return rc;
    *arr = cmp_alloc(x, d, t->raw.p, *n, size, &rc);
    return rc;
}

struct rp_der_tlv cmp_retag(const struct rp_der_tlv *t, uint8_t ident)
{
    struct rp_der_tlv r = *t;
    r.ident = ident;
    r.cls = (uint8_t)(ident & RP_DER_CLASS_MASK);
    r.constructed = (ident & RP_DER_CONSTRUCTED) != 0;
    r.number = ident & 0x1Fu;
    return r;
}

int cmp_read_int(struct rp_der *d, int64_t *out, const char *what)
{
    struct rp_der_tlv t;
    int rc = rp_der_expect(d, RP_DER_INTEGER, &t, what);
    return rc < 0 ? rc : rp_der_int64(d, &t, out);
}

int cmp_read_name(struct rp_der *d, const struct rp_der_tlv *t, struct rp_view *out)
{
    int rc;
    if (t->ident != RP_DER_SEQUENCE)
        return rp_der_fail(d, t->raw.p, RP_E_DER_TAG, "Name SEQUENCE");
    if (d->depth + 1 > RP_DER_MAX_DEPTH)
        return rp_der_fail(d, t->raw.p, RP_E_DER_DEPTH, "nesting within the depth cap");
    if ((rc = rp_name_check(t->raw)) < 0)
        return rp_der_fail(d, t->raw.p, rc, "well-formed Name");
    *out = t->raw;
    return RP_OK;
}

int cmp_read_gname(struct rp_der *d, struct rp_cmp_gname *out, const char *what)
{
    struct rp_der_tlv t, k;
    struct rp_der c;
    struct rp_view v;
    int rc;
    if ((rc = rp_der_next(d, &t)) < 0)
        return rc;
    out->raw = t.raw;
    out->choice = t.number;
    out->name = RP_VIEW_NULL;
    if (t.cls != RP_DER_CLASS_CONTEXT || t.number > GNAME_MAX_CHOICE)
        return rp_der_fail(d, t.raw.p, RP_E_DER_TAG, what);
    switch (t.number) {
    case 0: /* otherName, x400Address, ediPartyName: structure checked, kept raw */
    case 3:
    case 5:
        if (!t.constructed)
            return rp_der_fail(d, t.raw.p, RP_E_DER_TAG, what);
        return rp_der_validate(d, &t);
    case RP_GNAME_DIRECTORY_NAME:
        if ((rc = rp_der_enter(d, &t, &c)) < 0)
            return rc;
        if ((rc = rp_der_next(&c, &k)) < 0 || (rc = cmp_read_name(&c, &k, &out->name)) < 0)
            return rc;
        return rp_der_finish(&c, "end of directoryName");
    case 7: /* iPAddress: OCTET STRING */
        return t.constructed ? rp_der_fail(d, t.raw.p, RP_E_DER_TAG, what) : RP_OK;
    case 8: /* registeredID */
        if (t.constructed)
            return rp_der_fail(d, t.raw.p, RP_E_DER_TAG, what);
        return rp_der_oid(d, &t, &v);
    default: /* rfc822Name, dNSName, URI: IA5String */
        if (t.constructed)
            return rp_der_fail(d, t.raw.p, RP_E_DER_TAG, what);
        k = cmp_retag(&t, RP_DER_IA5_STRING);
        return rp_der_string(d, &k);
    }
}

/* PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String */
int cmp_read_freetext(struct rp_der *d, const struct rp_der_tlv *t)
{
    struct rp_der c;
    struct rp_der_tlv k;
    size_t n;
    int rc;
    if (t->ident != RP_DER_SEQUENCE)
        return rp_der_fail(d, t->raw.p, RP_E_DER_TAG, "PKIFreeText SEQUENCE");
    if ((rc = rp_der_enter(d, t, &c)) < 0)
        return rc;
    if ((rc = rp_der_count(&c, 1, RP_CMP_MAX_LIST, &n)) < 0)
        return rc;
    while (rp_der_left(&c) > 0) {
        if ((rc = rp_der_expect(&c, RP_DER_UTF8_STRING, &k, "UTF8String in PKIFreeText")) < 0)
            return rc;
        if ((rc = rp_der_string(&c, &k)) < 0)
            return rc;
    }
    return RP_OK;
}

int cmp_read_status(struct rp_der *d, struct rp_cmp_status *out)
{
    struct rp_der c;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "PKIStatusInfo SEQUENCE")) < 0)
        return rc;
    out->raw = t.raw;
    if ((rc = cmp_read_int(&c, &out->status, "INTEGER PKIStatus")) < 0)
        return rc;
    if (out->status < RP_CMP_STATUS_ACCEPTED || out->status > RP_CMP_STATUS_KEY_UPDATE_WARNING)
        return rp_der_fail(&c, t.val.p, RP_E_CMP_BODY, "PKIStatus 0..6");
    out->status_string = RP_VIEW_NULL;
    if ((rc = rp_der_optional(&c, RP_DER_SEQUENCE, &t)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = cmp_read_freetext(&c, &t)) < 0)
            return rc;
        out->status_string = t.raw;
    }
    out->has_fail_info = 0;
    out->fail_info = 0;
    if ((rc = rp_der_optional(&c, RP_DER_BIT_STRING, &t)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = rp_der_named_bits(&c, &t, &out->fail_info)) < 0)
            return rc;
        out->has_fail_info = 1;
    }
    return rp_der_finish(&c, "end of PKIStatusInfo");
}

/* InfoTypeAndValue / AttributeTypeAndValue: SEQUENCE { OID, ANY [OPTIONAL] } */
int cmp_read_itav(struct rp_der *d, struct rp_cmp_itav *out, int value_required)
{
    struct rp_der c;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "InfoTypeAndValue SEQUENCE")) < 0)
        return rc;
    out->raw = t.raw;
    if ((rc = rp_der_expect(&c, RP_DER_OID, &t, "OID infoType")) < 0)
        return rc;
    if ((rc = rp_der_oid(&c, &t, &out->type)) < 0)
        return rc;
    out->value = RP_VIEW_NULL;
    if (rp_der_left(&c) > 0) {
        if ((rc = rp_der_next(&c, &t)) < 0 || (rc = rp_der_validate(&c, &t)) < 0)
            return rc;
        out->value = t.raw;
    } else if (value_required) {
        return rp_der_fail(&c, c.p, RP_E_DER_TRUNCATED, "attribute value");
    }
    return rp_der_finish(&c, "end of InfoTypeAndValue");
}

/* CMPCertificate: only the x509v3PKCert alternative (a Certificate SEQUENCE); its inside
 * is parsed on demand with rp_cert_parse(). */
int cmp_read_cert_tlv(struct rp_der *d, struct rp_view *out)
{
    struct rp_der_tlv t;
    int rc = rp_der_expect(d, RP_DER_SEQUENCE, &t, "Certificate SEQUENCE");
    if (rc == RP_OK)
        *out = t.raw;
    return rc;
}

/* ---- header ---- */

static int read_octets(struct rp_der *d, const struct rp_der_tlv *wrap, struct rp_cmp_octets *out,
                       const char *what)
{
    struct rp_der c;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_enter(d, wrap, &c)) < 0)
        return rc;
    if ((rc = rp_der_expect(&c, RP_DER_OCTET_STRING, &t, what)) < 0)
        return rc;
    out->raw = wrap->raw;
    out->val = t.val;
    return rp_der_finish(&c, what);
}

static int read_general_info(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *wrap,
                             struct rp_cmp_header *h)
{
    struct rp_der c, s;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    if ((rc = rp_der_enter(d, wrap, &c)) < 0)
        return rc;
    if ((rc = cmp_seq_of(x, &c, RP_DER_SEQUENCE, 1, sizeof(struct rp_cmp_itav), &s, &t, &arr,
                         &h->n_general_info, "generalInfo SEQUENCE")) < 0)
        return rc;
    if ((rc = rp_der_finish(&c, "end of [8] generalInfo")) < 0)
        return rc;
    h->general_info_raw = wrap->raw;
    h->general_info = arr;
    for (size_t i = 0; i < h->n_general_info; i++) {
        struct rp_cmp_itav *it = &h->general_info[i];
        if ((rc = cmp_read_itav(&s, it, 0)) < 0)
            return rc;
        if (rp_oid_is(it->type, RP_OID_IT_IMPLICIT_CONFIRM)) {
            /* ImplicitConfirmValue ::= NULL */
            if (it->value.p && !(it->value.len == 2 && it->value.p[0] == RP_DER_NULL))
                return rp_der_fail(&s, it->value.p, RP_E_CMP_HEADER, "implicitConfirm NULL");
            h->implicit_confirm = 1;
        } else if (rp_oid_is(it->type, RP_OID_IT_CONFIRM_WAIT_TIME)) {
            struct rp_der v;
            if (!it->value.p)
                return rp_der_fail(&s, it->raw.p, RP_E_CMP_HEADER, "confirmWaitTime value");
            rp_der_init(&v, it->value.p, it->value.len, NULL);
            v.base = s.base;
            v.err = s.err;
            if ((rc = rp_der_expect(&v, RP_DER_GENERALIZED_TIME, &t, "confirmWaitTime")) < 0)
                return rc;
            if ((rc = rp_der_time(&v, &t, &h->confirm_wait_time)) < 0)
                return rc;
            h->has_confirm_wait_time = 1;
        }
    }
    return RP_OK;
}

/* The optional [0]..[8] fields, in order, each at most once. */
static int read_header_field(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *t,
                             struct rp_cmp_header *h)
{
    struct rp_der c;
    struct rp_der_tlv k;
    int rc;
    switch (t->number) {
    case HDR_MESSAGE_TIME:
        if ((rc = rp_der_enter(d, t, &c)) < 0)
            return rc;
        if ((rc = rp_der_expect(&c, RP_DER_GENERALIZED_TIME, &k, "GeneralizedTime messageTime")) <
                0 ||
            (rc = rp_der_time(&c, &k, &h->message_time)) < 0)
            return rc;
        h->message_time_raw = t->raw;
        h->has_message_time = 1;
        return rp_der_finish(&c, "end of [0] messageTime");
    case HDR_PROTECTION_ALG:
        if ((rc = rp_der_enter(d, t, &c)) < 0)
            return rc;
        if ((rc = rp_der_next(&c, &k)) < 0 || (rc = rp_der_algid(&c, &k, &h->protection_alg)) < 0)
            return rc;
        h->protection_alg_raw = t->raw;
        return rp_der_finish(&c, "end of [1] protectionAlg");
    case HDR_SENDER_KID:
        return read_octets(d, t, &h->sender_kid, "OCTET STRING senderKID");
    case HDR_RECIP_KID:
        return read_octets(d, t, &h->recip_kid, "OCTET STRING recipKID");
    case HDR_TRANSACTION_ID:
        return read_octets(d, t, &h->transaction_id, "OCTET STRING transactionID");
    case HDR_SENDER_NONCE:
        return read_octets(d, t, &h->sender_nonce, "OCTET STRING senderNonce");
    case HDR_RECIP_NONCE:
        return read_octets(d, t, &h->recip_nonce, "OCTET STRING recipNonce");
    case HDR_FREE_TEXT:
        if ((rc = rp_der_enter(d, t, &c)) < 0)
            return rc;
        if ((rc = rp_der_next(&c, &k)) < 0 || (rc = cmp_read_freetext(&c, &k)) < 0)
            return rc;
        h->free_text_raw = t->raw;
        h->free_text = k.raw;
        return rp_der_finish(&c, "end of [7] freeText");
    default:
        return read_general_info(x, d, t, h);
    }
}

static int read_header(struct cmp_dec *x, struct rp_der *msg, struct rp_cmp_header *h)
{
    struct rp_der d;
    struct rp_der_tlv t;
    int64_t pvno;
    int next_allowed = 0, rc;
    if ((rc = rp_der_expect_enter(msg, RP_DER_SEQUENCE, &d, &t, "PKIHeader SEQUENCE")) < 0)
        return rc;
    h->raw = t.raw;
    if ((rc = rp_der_expect(&d, RP_DER_INTEGER, &t, "INTEGER pvno")) < 0 ||
        (rc = rp_der_int64(&d, &t, &pvno)) < 0)
        return rc;
    h->pvno_raw = t.raw;
    h->pvno = pvno < 0 || pvno > INT32_MAX ? -1 : (int)pvno;
    /* Decoding goes on so the caller can still answer with the transactionID. */
    if ((pvno < PVNO_MIN || pvno > PVNO_MAX) && !x->version_err) {
        x->version_err = RP_E_CMP_VERSION;
        x->version_off = rp_der_offset(&d, t.raw.p);
    }
    if ((rc = cmp_read_gname(&d, &h->sender, "GeneralName sender")) < 0)
        return rc;
    if ((rc = cmp_read_gname(&d, &h->recipient, "GeneralName recipient")) < 0)
        return rc;
    while (rp_der_left(&d) > 0) {
        if ((rc = rp_der_next(&d, &t)) < 0)
            return rc;
        /* DER SEQUENCE: the tagged fields appear in ascending order, each once. */
        if (t.cls != RP_DER_CLASS_CONTEXT || !t.constructed || t.number > HDR_GENERAL_INFO ||
            (int)t.number < next_allowed)
            return rp_der_fail(&d, t.raw.p, RP_E_CMP_HEADER, "header fields [0]..[8] in order");
        next_allowed = (int)t.number + 1;
        if ((rc = read_header_field(x, &d, &t, h)) < 0)
            return rc;
    }
    return RP_OK;
}

/* ---- message ---- */

static int read_extra_certs(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *wrap,
                            struct rp_cmp_msg *m)
{
    struct rp_der c, s;
    struct rp_der_tlv t;
    void *arr;
    int rc;
    if ((rc = rp_der_enter(d, wrap, &c)) < 0)
        return rc;
    if ((rc = cmp_seq_of(x, &c, RP_DER_SEQUENCE, 1, sizeof(struct rp_view), &s, &t, &arr,
                         &m->n_extra_certs, "extraCerts SEQUENCE")) < 0)
        return rc;
    m->extra_certs = arr;
    for (size_t i = 0; i < m->n_extra_certs; i++)
        if ((rc = cmp_read_cert_tlv(&s, &m->extra_certs[i])) < 0)
            return rc;
    m->extra_certs_raw = wrap->raw;
    return rp_der_finish(&c, "end of [1] extraCerts");
}

static int read_body(struct cmp_dec *x, struct rp_der *msg, struct rp_cmp_body *b)
{
    struct rp_der c;
    struct rp_der_tlv t, content;
    int rc;
    if ((rc = rp_der_next(msg, &t)) < 0)
        return rc;
    if (t.cls != RP_DER_CLASS_CONTEXT || !t.constructed || t.number >= RP_CMP_BODY_COUNT)
        return rp_der_fail(msg, t.raw.p, RP_E_CMP_BODY, "PKIBody [0]..[26]");
    b->type = (enum rp_cmp_body_type)t.number;
    b->raw = t.raw;
    if ((rc = rp_der_enter(msg, &t, &c)) < 0)
        return rc;
    if ((rc = rp_der_next(&c, &content)) < 0)
        return rc;
    if ((rc = rp_der_finish(&c, "end of PKIBody")) < 0)
        return rc;
    b->content = content.raw;
    return cmp_body_decode(x, &c, &content, b);
}

int cmp_msg_read(struct cmp_dec *x, struct rp_der *d, struct rp_cmp_msg *m)
{
    struct rp_der c;
    struct rp_der_tlv t;
    int rc;
    memset(m, 0, sizeof *m);
    if ((rc = rp_der_expect_enter(d, RP_DER_SEQUENCE, &c, &t, "PKIMessage SEQUENCE")) < 0)
        return rc;
    m->raw = t.raw;
    if ((rc = read_header(x, &c, &m->header)) < 0)
        return rc;
    m->header_raw = m->header.raw;
    if ((rc = read_body(x, &c, &m->body)) < 0)
        return rc;
    m->body_raw = m->body.raw;
    if ((rc = rp_der_optional(&c, RP_DER_CTX_CONS(0), &t)) < 0)
        return rc;
    if (rc == 1) {
        struct rp_der p;
        struct rp_der_tlv bits;
        if ((rc = rp_der_enter(&c, &t, &p)) < 0)
            return rc;
        if ((rc = rp_der_expect(&p, RP_DER_BIT_STRING, &bits, "BIT STRING protection")) < 0 ||
            (rc = rp_der_bits(&p, &bits, &m->protection)) < 0)
            return rc;
        if ((rc = rp_der_finish(&p, "end of [0] protection")) < 0)
            return rc;
        m->protection_raw = t.raw;
        m->has_protection = 1;
    }
    if ((rc = rp_der_optional(&c, RP_DER_CTX_CONS(1), &t)) < 0)
        return rc;
    if (rc == 1 && (rc = read_extra_certs(x, &c, &t, m)) < 0)
        return rc;
    return rp_der_finish(&c, "end of PKIMessage");
}

int rp_cmp_decode(const uint8_t *p, size_t n, struct rp_arena *a, struct rp_cmp_msg *out,
                  struct rp_cmp_err *where)
{
    struct rp_der_err err = {0, 0, NULL};
    struct cmp_dec x = {a, 0, 0, 0};
    struct rp_der d;
    int rc;
    if (!p && n)
        return RP_E_INVAL;
    rp_der_init(&d, p, n, &err);
    rc = cmp_msg_read(&x, &d, out);
    if (rc == RP_OK)
        rc = rp_der_finish(&d, "end of input after the PKIMessage");
    if (rc == RP_OK && x.version_err) {
        rc = x.version_err;
        err.offset = x.version_off;
        err.expected = "pvno cmp2000(2) or cmp2021(3)";
    }
    if (rc < 0 && !err.expected)
        err.expected = rp_err_msg(rc); /* every path records one; belt and braces */
    if (where) {
        where->code = rc;
        where->offset = rc < 0 ? err.offset : 0;
        where->expected = rc < 0 ? err.expected : NULL;
    }
    return rc;
}

int rp_cmp_protected_part(const struct rp_cmp_msg *m, struct rp_arena *a, struct rp_view *out)
{
    size_t len = m->header_raw.len + m->body_raw.len, hl = 0;
    uint8_t hdr[SEQ_HDR_MAX];
    if (!m->header_raw.p || !m->body_raw.p)
        return RP_E_INVAL;
    hdr[hl++] = RP_DER_SEQUENCE;
    if (len < 0x80u) {
        hdr[hl++] = (uint8_t)len;
    } else {
        size_t nbytes = 0;
        for (size_t v = len; v; v >>= 8)
            nbytes++;
        if (nbytes > SEQ_HDR_MAX - 2)
            return RP_E_INVAL;
        hdr[hl++] = (uint8_t)(0x80u | nbytes);
        for (size_t i = nbytes; i-- > 0;)
            hdr[hl++] = (uint8_t)(len >> (8 * i));
    }
    uint8_t *buf = rp_arena_alloc(a, hl + len);
    if (!buf)
        return RP_E_ARENA;
    memcpy(buf, hdr, hl);
    memcpy(buf + hl, m->header_raw.p, m->header_raw.len);
    memcpy(buf + hl + m->header_raw.len, m->body_raw.p, m->body_raw.len);
    *out = rp_view_make(buf, hl + len);
    return RP_OK;
}
