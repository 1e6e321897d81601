/* Certificate view and Name helpers. Structure checks only: the signature, the validity
 * period against the clock and the path are wolfSSL's certificate manager's job. */
#include "raproxy/cert.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"

#include <stdio.h>

#define CERT_VERSION_V3       2  /* encoded value of v3 */
#define NAME_MAX_RDNS         64 /* far above any real subject; bounds log rendering work */
#define NAME_MAX_ATVS_PER_RDN 16
#define KEY_ID_MAX            64 /* SKI/AKI keyIdentifier: SHA-1 (20) in practice, SHA-512 at most */
#define AKI_KEY_ID_TAG        RP_DER_CTX(0)
#define AKI_ISSUER_TAG        RP_DER_CTX_CONS(1)
#define AKI_SERIAL_TAG        RP_DER_CTX(2)
#define OID_STR_MAX           128

/* ---- Names ---- */

/* Walk one AttributeTypeAndValue: type OID and the value's TLV (string-checked). */
static int read_atv(struct rp_der *rdn, struct rp_view *type, struct rp_der_tlv *value)
{
    struct rp_der c;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(rdn, RP_DER_SEQUENCE, &c, NULL, "AttributeTypeAndValue")) < 0)
        return rc;
    if ((rc = rp_der_expect(&c, RP_DER_OID, &t, "OID attribute type")) < 0)
        return rc;
    if ((rc = rp_der_oid(&c, &t, type)) < 0)
        return rc;
    if ((rc = rp_der_next(&c, value)) < 0)
        return rc;
    if ((rc = rp_der_validate(&c, value)) < 0)
        return rc;
    return rp_der_finish(&c, "end of AttributeTypeAndValue");
}

/* Visit every attribute of a Name in encoded order. visit returns < 0 to fail, 1 to stop
 * early, 0 to continue. `first_in_rdn` tells multi-valued RDN members apart. */
typedef int (*atv_visit_fn)(void *ctx, struct rp_view type, const struct rp_der_tlv *value,
                            int first_in_rdn);

static int name_walk(const struct rp_der *parent, const struct rp_der_tlv *name, atv_visit_fn visit,
                     void *ctx)
{
    struct rp_der seq, set;
    struct rp_der_tlv t, value;
    struct rp_view type;
    size_t n_rdn = 0;
    int rc;
    if (name->ident != RP_DER_SEQUENCE)
        return rp_der_fail(parent, name->raw.p, RP_E_DER_TAG, "Name SEQUENCE");
    if ((rc = rp_der_enter(parent, name, &seq)) < 0)
        return rc;
    while (rp_der_left(&seq) > 0) {
        size_t n_atv = 0;
        if (n_rdn++ == NAME_MAX_RDNS)
            return rp_der_fail(&seq, seq.p, RP_E_DER_COUNT, "Name within the RDN cap");
        if ((rc = rp_der_expect_enter(&seq, RP_DER_SET, &set, &t, "RelativeDistinguishedName")) < 0)
            return rc;
        if (rp_der_left(&set) == 0)
            return rp_der_fail(&seq, t.raw.p, RP_E_DER_COUNT, "non-empty RDN");
        while (rp_der_left(&set) > 0) {
            if (n_atv++ == NAME_MAX_ATVS_PER_RDN)
                return rp_der_fail(&set, set.p, RP_E_DER_COUNT, "RDN within the attribute cap");
            if ((rc = read_atv(&set, &type, &value)) < 0)
                return rc;
            if (visit && (rc = visit(ctx, type, &value, n_atv == 1)) != 0)
                return rc;
        }
    }
    return RP_OK;
}

static int name_open(struct rp_view name, struct rp_der *d, struct rp_der_tlv *t)
{
    int rc;
    rp_der_init(d, name.p, name.len, NULL);
    if ((rc = rp_der_next(d, t)) < 0)
        return rc;
    return rp_der_finish(d, "end of Name");
}

int rp_name_check(struct rp_view name)
{
    struct rp_der d;
    struct rp_der_tlv t;
    int rc = name_open(name, &d, &t);
    return rc < 0 ? rc : name_walk(&d, &t, NULL, NULL);
}

struct find_ctx {
    struct rp_view oid;
    struct rp_view value;
};

static int find_visit(void *ctx, struct rp_view type, const struct rp_der_tlv *value, int first)
{
    struct find_ctx *f = ctx;
    (void)first;
    if (!rp_view_eq(type, f->oid))
        return 0;
    f->value = value->val;
    return 1;
}

int rp_name_find(struct rp_view name, struct rp_view oid, struct rp_view *value)
{
    struct rp_der d;
    struct rp_der_tlv t;
    struct find_ctx f = {oid, RP_VIEW_NULL};
    int rc = name_open(name, &d, &t);
    if (rc < 0)
        return rc;
    rc = name_walk(&d, &t, find_visit, &f);
    if (rc < 0)
        return rc;
    if (rc == 1)
        *value = f.value;
    return rc;
}

int rp_name_eq(struct rp_view a, struct rp_view b)
{
    return rp_view_eq(a, b);
}

struct out {
    char *buf;
    size_t cap;
    size_t len; /* what the full rendering needs, excluding NUL */
};

static void put(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++, o->len++)
        if (o->len + 1 < o->cap)
            o->buf[o->len] = s[i];
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_hex(struct out *o, uint8_t b)
{
    char h[4];
    snprintf(h, sizeof h, "\\%02x", b);
    put(o, h, 3);
}

static const struct {
    const char *oid;
    size_t len;
    const char *label;
} attr_labels[] = {
#define L_(lit, name)                                                                              \
    {                                                                                              \
        lit, sizeof(lit) - 1, name                                                                 \
    }
    L_(RP_OID_AT_CN, "CN"),
    L_("\x55\x04\x04", "SN"),
    L_(RP_OID_AT_SERIAL, "serialNumber"),
    L_(RP_OID_AT_C, "C"),
    L_(RP_OID_AT_L, "L"),
    L_(RP_OID_AT_ST, "ST"),
    L_(RP_OID_AT_O, "O"),
    L_(RP_OID_AT_OU, "OU"),
    L_("\x55\x04\x0c", "title"),
    L_("\x55\x04\x2a", "GN"),
    L_("\x55\x04\x2e", "dnQualifier"),
    L_("\x2a\x86\x48\x86\xf7\x0d\x01\x09\x01", "emailAddress"),
    L_("\x09\x92\x26\x89\x93\xf2\x2c\x64\x01\x19", "DC"),
    L_("\x09\x92\x26\x89\x93\xf2\x2c\x64\x01\x01", "UID"),
#undef L_
};

static int render_visit(void *ctx, struct rp_view type, const struct rp_der_tlv *value, int first)
{
    struct out *o = ctx;
    const char *label = NULL;
    char oid[OID_STR_MAX];
    if (o->len > 0)
        puts_(o, first ? ", " : " + ");
    for (size_t i = 0; i < sizeof attr_labels / sizeof attr_labels[0]; i++)
        if (type.len == attr_labels[i].len && memcmp(type.p, attr_labels[i].oid, type.len) == 0)
            label = attr_labels[i].label;
    if (!label) {
        if (rp_der_oid_str(type, oid, sizeof oid) < 0)
            snprintf(oid, sizeof oid, "?");
        label = oid;
    }
    puts_(o, label);
    put(o, "=", 1);
    int text = value->ident == RP_DER_UTF8_STRING || value->ident == RP_DER_PRINTABLE_STRING ||
               value->ident == RP_DER_IA5_STRING || value->ident == RP_DER_T61_STRING;
    if (!text) {
        /* RFC 4514 §2.4: other types as '#' and the hex of their encoding. */
        put(o, "#", 1);
        for (size_t i = 0; i < value->raw.len; i++) {
            char h[3];
            snprintf(h, sizeof h, "%02x", value->raw.p[i]);
            put(o, h, 2);
        }
        return 0;
    }
    for (size_t i = 0; i < value->val.len; i++) {
        uint8_t c = value->val.p[i];
        int utf8 = value->ident == RP_DER_UTF8_STRING && c >= 0x80u;
        if (utf8 || (c >= 0x20u && c < 0x7Fu && c != ',' && c != '+' && c != '\\' && c != '"'))
            put(o, (const char *)&c, 1);
        else
            put_hex(o, c);
    }
    return 0;
}

/* ---- Name attributes: listing, labels, encoding ---- */

struct attrs_ctx {
    struct rp_name_attr *out;
    size_t cap, n;
};

static int attrs_visit(void *ctx, struct rp_view type, const struct rp_der_tlv *value, int first)
{
    struct attrs_ctx *a = ctx;
    if (a->n == a->cap)
        return RP_E_DER_COUNT;
    a->out[a->n++] = (struct rp_name_attr){type, value->ident, value->val, !first};
    return 0;
}

int rp_name_attrs(struct rp_view name, struct rp_name_attr *out, size_t cap, size_t *n)
{
    struct rp_der d;
    struct rp_der_tlv t;
    struct attrs_ctx a = {out, cap, 0};
    int rc = name_open(name, &d, &t);
    if (rc < 0)
        return rc;
    rc = name_walk(&d, &t, attrs_visit, &a);
    *n = a.n;
    return rc < 0 ? rc : RP_OK;
}

/* Attributes whose X.520 syntax is PrintableString, and the IA5String ones. */
static uint8_t attr_string_tag(struct rp_view oid)
{
    if (rp_oid_is(oid, RP_OID_AT_C) || rp_oid_is(oid, RP_OID_AT_SERIAL) ||
        rp_oid_is(oid, "\x55\x04\x2e"))
        return RP_DER_PRINTABLE_STRING;
    if (rp_oid_is(oid, "\x2a\x86\x48\x86\xf7\x0d\x01\x09\x01") ||
        rp_oid_is(oid, "\x09\x92\x26\x89\x93\xf2\x2c\x64\x01\x19"))
        return RP_DER_IA5_STRING;
    return RP_DER_UTF8_STRING;
}

int rp_name_attr_oid(const char *label, struct rp_view *oid, uint8_t *tag)
{
    for (size_t i = 0; i < sizeof attr_labels / sizeof attr_labels[0]; i++)
        if (strcmp(label, attr_labels[i].label) == 0) {
            *oid = rp_view_make(attr_labels[i].oid, attr_labels[i].len);
            if (tag)
                *tag = attr_string_tag(*oid);
            return RP_OK;
        }
    return RP_E_NOT_FOUND;
}

const char *rp_name_attr_label(struct rp_view oid)
{
    for (size_t i = 0; i < sizeof attr_labels / sizeof attr_labels[0]; i++)
        if (oid.len == attr_labels[i].len && memcmp(oid.p, attr_labels[i].oid, oid.len) == 0)
            return attr_labels[i].label;
    return NULL;
}

/* PrintableString's alphabet (X.680 §41.4). */
static int printable_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr(" '()+,-./:=?", c) != NULL;
}

int rp_name_value_ok(uint8_t tag, struct rp_view v)
{
    if (v.len == 0)
        return 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] == 0)
            return 0;
        if (tag == RP_DER_PRINTABLE_STRING && !printable_char(v.p[i]))
            return 0;
        if (tag == RP_DER_IA5_STRING && v.p[i] >= 0x80u)
            return 0;
    }
    return 1;
}

int rp_name_encode(struct rp_arena *a, const struct rp_name_attr *attrs, size_t n,
                   struct rp_view *out)
{
    struct rp_derw w;
    size_t payload = 0;
    if (n > NAME_MAX_RDNS)
        return RP_E_INVAL;
    for (size_t i = 0; i < n; i++) {
        if (!rp_name_value_ok(attrs[i].tag, attrs[i].value))
            return RP_E_INVAL;
        payload += attrs[i].type.len + attrs[i].value.len + 4 * RP_DERW_MAX_HEADER;
    }
    rp_derw_init(&w, a, payload + RP_DERW_MAX_HEADER);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    for (size_t i = 0; i < n; i++) {
        rp_derw_begin(&w, RP_DER_SET);
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_oid(&w, attrs[i].type);
        rp_derw_prim(&w, attrs[i].tag, attrs[i].value);
        rp_derw_end(&w);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

int rp_name_to_string(struct rp_view name, char *buf, size_t cap)
{
    struct rp_der d;
    struct rp_der_tlv t;
    struct out o = {buf, cap, 0};
    int rc;
    if (cap)
        buf[0] = 0;
    if ((rc = name_open(name, &d, &t)) < 0)
        return rc;
    if ((rc = name_walk(&d, &t, render_visit, &o)) < 0) {
        if (cap)
            buf[0] = 0;
        return rc;
    }
    if (cap)
        buf[o.len < cap ? o.len : cap - 1] = 0;
    return o.len > INT32_MAX ? RP_E_INVAL : (int)o.len;
}

/* ---- Certificate ---- */

/* extnValue OCTET STRING content must be exactly one TLV; returns it. */
static int ext_inner(const struct rp_der *d, const struct rp_der_tlv *octets, uint8_t ident,
                     struct rp_der *inner, struct rp_der_tlv *t, const char *what)
{
    int rc;
    /* Same base as the certificate so offsets stay meaningful. */
    *inner = *d;
    inner->p = octets->val.p;
    inner->end = octets->val.p + octets->val.len;
    if ((rc = rp_der_expect(inner, ident, t, what)) < 0)
        return rc;
    return rp_der_finish(inner, "end of extension value");
}

static int ext_key_id(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_view *out)
{
    if (t->val.len == 0 || t->val.len > KEY_ID_MAX)
        return rp_der_fail(d, t->raw.p, RP_E_CMP_CERT, "key identifier of 1..64 bytes");
    *out = t->val;
    return RP_OK;
}

static int ext_ski(struct rp_cert *c, const struct rp_der *d, const struct rp_der_tlv *v)
{
    struct rp_der in;
    struct rp_der_tlv t;
    int rc = ext_inner(d, v, RP_DER_OCTET_STRING, &in, &t, "subjectKeyIdentifier OCTET STRING");
    return rc < 0 ? rc : ext_key_id(d, &t, &c->ski);
}

static int ext_aki(struct rp_cert *c, const struct rp_der *d, const struct rp_der_tlv *v)
{
    struct rp_der in, s;
    struct rp_der_tlv t, k;
    int rc;
    if ((rc = ext_inner(d, v, RP_DER_SEQUENCE, &in, &t, "AuthorityKeyIdentifier SEQUENCE")) < 0)
        return rc;
    if ((rc = rp_der_enter(&in, &t, &s)) < 0)
        return rc;
    if ((rc = rp_der_optional(&s, AKI_KEY_ID_TAG, &k)) < 0)
        return rc;
    if (rc == 1 && (rc = ext_key_id(d, &k, &c->aki_key_id)) < 0)
        return rc;
    if ((rc = rp_der_optional(&s, AKI_ISSUER_TAG, &k)) < 0)
        return rc;
    if (rc == 1 && (rc = rp_der_validate(&s, &k)) < 0)
        return rc;
    if ((rc = rp_der_optional(&s, AKI_SERIAL_TAG, &k)) < 0)
        return rc;
    return rp_der_finish(&s, "end of AuthorityKeyIdentifier");
}

static int ext_basic_constraints(struct rp_cert *c, const struct rp_der *d,
                                 const struct rp_der_tlv *v)
{
    struct rp_der in, s;
    struct rp_der_tlv t, k;
    int64_t len;
    int rc;
    if ((rc = ext_inner(d, v, RP_DER_SEQUENCE, &in, &t, "BasicConstraints SEQUENCE")) < 0)
        return rc;
    if ((rc = rp_der_enter(&in, &t, &s)) < 0)
        return rc;
    c->has_basic_constraints = 1;
    c->ca = 0;
    c->path_len = -1;
    if ((rc = rp_der_optional(&s, RP_DER_BOOLEAN, &k)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = rp_der_bool(&s, &k, &c->ca)) < 0)
            return rc;
        if (!c->ca) /* DER: a DEFAULT value is never encoded */
            return rp_der_fail(&s, k.raw.p, RP_E_DER_BOOLEAN, "cA omitted when FALSE");
    }
    if ((rc = rp_der_optional(&s, RP_DER_INTEGER, &k)) < 0)
        return rc;
    if (rc == 1) {
        if ((rc = rp_der_int64(&s, &k, &len)) < 0)
            return rc;
        if (len < 0 || len > INT32_MAX)
            return rp_der_fail(&s, k.raw.p, RP_E_CMP_CERT, "pathLenConstraint 0..2^31-1");
        c->path_len = (int)len;
    }
    return rp_der_finish(&s, "end of BasicConstraints");
}

static int ext_key_usage(struct rp_cert *c, const struct rp_der *d, const struct rp_der_tlv *v)
{
    struct rp_der in;
    struct rp_der_tlv t;
    int rc = ext_inner(d, v, RP_DER_BIT_STRING, &in, &t, "KeyUsage BIT STRING");
    if (rc < 0)
        return rc;
    if ((rc = rp_der_named_bits(&in, &t, &c->key_usage)) < 0)
        return rc;
    c->has_key_usage = 1;
    return RP_OK;
}

static int ext_eku(struct rp_cert *c, const struct rp_der *d, const struct rp_der_tlv *v)
{
    struct rp_der in, s;
    struct rp_der_tlv t, k;
    int rc;
    if ((rc = ext_inner(d, v, RP_DER_SEQUENCE, &in, &t, "ExtKeyUsageSyntax SEQUENCE")) < 0)
        return rc;
    if ((rc = rp_der_enter(&in, &t, &s)) < 0)
        return rc;
    if (rp_der_left(&s) == 0)
        return rp_der_fail(&s, t.raw.p, RP_E_DER_COUNT, "at least one KeyPurposeId");
    while (rp_der_left(&s) > 0) {
        if (c->n_eku == RP_CERT_MAX_EKU)
            return rp_der_fail(&s, s.p, RP_E_DER_COUNT, "extKeyUsage within the cap");
        if ((rc = rp_der_expect(&s, RP_DER_OID, &k, "OID KeyPurposeId")) < 0)
            return rc;
        if ((rc = rp_der_oid(&s, &k, &c->eku[c->n_eku])) < 0)
            return rc;
        c->n_eku++;
    }
    c->has_eku = 1;
    return RP_OK;
}

static int ext_san(struct rp_cert *c, const struct rp_der *d, const struct rp_der_tlv *v)
{
    struct rp_der in;
    struct rp_der_tlv t;
    int rc;
    (void)c;
    if ((rc = ext_inner(d, v, RP_DER_SEQUENCE, &in, &t, "GeneralNames SEQUENCE")) < 0)
        return rc;
    return rp_der_validate(&in, &t);
}

static int ext_name_constraints(struct rp_cert *c, const struct rp_der *d,
                                const struct rp_der_tlv *v)
{
    struct rp_der in;
    struct rp_der_tlv t;
    int rc;
    if ((rc = ext_inner(d, v, RP_DER_SEQUENCE, &in, &t, "NameConstraints SEQUENCE")) < 0)
        return rc;
    if ((rc = rp_der_validate(&in, &t)) < 0)
        return rc;
    c->has_name_constraints = 1;
    return RP_OK;
}

typedef int (*ext_fn)(struct rp_cert *c, const struct rp_der *d, const struct rp_der_tlv *v);

static const struct {
    const char *oid;
    size_t len;
    ext_fn parse;
} known_exts[] = {
#define E_(lit, fn)                                                                                \
    {                                                                                              \
        lit, sizeof(lit) - 1, fn                                                                   \
    }
    E_(RP_OID_CE_SKI, ext_ski),
    E_(RP_OID_CE_AKI, ext_aki),
    E_(RP_OID_CE_BASIC_CONS, ext_basic_constraints),
    E_(RP_OID_CE_KEY_USAGE, ext_key_usage),
    E_(RP_OID_CE_EXT_KEY_USE, ext_eku),
    E_(RP_OID_CE_SAN, ext_san),
    E_(RP_OID_CE_NAME_CONS, ext_name_constraints),
#undef E_
};

static int read_extension(struct rp_cert *c, struct rp_der *exts, struct rp_view *oid_out)
{
    struct rp_der e;
    struct rp_der_tlv t, value;
    struct rp_view oid;
    int critical = 0, rc;
    if ((rc = rp_der_expect_enter(exts, RP_DER_SEQUENCE, &e, NULL, "Extension SEQUENCE")) < 0)
        return rc;
    if ((rc = rp_der_expect(&e, RP_DER_OID, &t, "OID extnID")) < 0)
        return rc;
    if ((rc = rp_der_oid(&e, &t, &oid)) < 0)
        return rc;
    /* critical FALSE should be omitted in DER, but some CAs encode it: tolerated, since
     * refusing a vendor's certificate over it would help nobody. */
    if ((rc = rp_der_optional(&e, RP_DER_BOOLEAN, &t)) < 0)
        return rc;
    if (rc == 1 && (rc = rp_der_bool(&e, &t, &critical)) < 0)
        return rc;
    if ((rc = rp_der_expect(&e, RP_DER_OCTET_STRING, &value, "OCTET STRING extnValue")) < 0)
        return rc;
    if ((rc = rp_der_finish(&e, "end of Extension")) < 0)
        return rc;
    *oid_out = oid;
    for (size_t i = 0; i < sizeof known_exts / sizeof known_exts[0]; i++)
        if (oid.len == known_exts[i].len && memcmp(oid.p, known_exts[i].oid, oid.len) == 0)
            return known_exts[i].parse(c, &e, &value);
    if (critical)
        c->unknown_critical = 1;
    return RP_OK;
}

static int read_extensions(struct rp_cert *c, struct rp_der *tbs, const struct rp_der_tlv *wrap)
{
    struct rp_der outer, exts;
    struct rp_der_tlv t;
    struct rp_view seen[RP_CERT_MAX_EXTENSIONS];
    size_t n = 0;
    int rc;
    c->extensions_raw = wrap->raw;
    if ((rc = rp_der_enter(tbs, wrap, &outer)) < 0)
        return rc;
    if ((rc = rp_der_expect_enter(&outer, RP_DER_SEQUENCE, &exts, &t, "Extensions SEQUENCE")) < 0)
        return rc;
    if ((rc = rp_der_finish(&outer, "end of [3] extensions")) < 0)
        return rc;
    if (rp_der_left(&exts) == 0)
        return rp_der_fail(&exts, t.raw.p, RP_E_DER_COUNT, "at least one Extension");
    while (rp_der_left(&exts) > 0) {
        const uint8_t *at = exts.p;
        if (n == RP_CERT_MAX_EXTENSIONS)
            return rp_der_fail(&exts, at, RP_E_DER_COUNT, "extensions within the cap");
        if ((rc = read_extension(c, &exts, &seen[n])) < 0)
            return rc;
        for (size_t i = 0; i < n; i++)
            if (rp_view_eq(seen[i], seen[n]))
                return rp_der_fail(&exts, at, RP_E_CMP_CERT, "each extension once (RFC 5280)");
        n++;
    }
    return RP_OK;
}

static int read_spki(struct rp_cert *c, struct rp_der *tbs)
{
    struct rp_der s;
    struct rp_der_tlv t, k;
    int rc;
    if ((rc = rp_der_expect_enter(tbs, RP_DER_SEQUENCE, &s, &t, "SubjectPublicKeyInfo")) < 0)
        return rc;
    c->spki = t.raw;
    if ((rc = rp_der_next(&s, &k)) < 0)
        return rc;
    if ((rc = rp_der_algid(&s, &k, &c->spki_alg)) < 0)
        return rc;
    if ((rc = rp_der_expect(&s, RP_DER_BIT_STRING, &k, "BIT STRING subjectPublicKey")) < 0)
        return rc;
    if ((rc = rp_der_bits(&s, &k, &c->spki_key)) < 0)
        return rc;
    if ((rc = rp_der_finish(&s, "end of SubjectPublicKeyInfo")) < 0)
        return rc;
    c->spki_curve = RP_VIEW_NULL;
    if (rp_oid_is(c->spki_alg.oid, RP_OID_EC_PUBLIC_KEY)) {
        struct rp_der p;
        struct rp_der_tlv curve;
        /* RFC 5480: namedCurve only; implicit and specified curves are not for PKIX. */
        if (!c->spki_alg.params.p)
            return rp_der_fail(&s, c->spki_alg.raw.p, RP_E_CMP_CERT, "EC namedCurve OID");
        rp_der_init(&p, c->spki_alg.params.p, c->spki_alg.params.len, NULL);
        p.base = s.base;
        p.err = s.err;
        if ((rc = rp_der_expect(&p, RP_DER_OID, &curve, "EC namedCurve OID")) < 0)
            return rc;
        c->spki_curve = curve.val;
    }
    return RP_OK;
}

static int read_validity(struct rp_cert *c, struct rp_der *tbs)
{
    struct rp_der v;
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect_enter(tbs, RP_DER_SEQUENCE, &v, NULL, "Validity SEQUENCE")) < 0)
        return rc;
    if ((rc = rp_der_next(&v, &t)) < 0 || (rc = rp_der_time(&v, &t, &c->not_before)) < 0)
        return rc;
    if ((rc = rp_der_next(&v, &t)) < 0 || (rc = rp_der_time(&v, &t, &c->not_after)) < 0)
        return rc;
    return rp_der_finish(&v, "end of Validity");
}

static int read_name(struct rp_der *tbs, struct rp_view *out, const char *what)
{
    struct rp_der_tlv t;
    int rc;
    if ((rc = rp_der_expect(tbs, RP_DER_SEQUENCE, &t, what)) < 0)
        return rc;
    if ((rc = name_walk(tbs, &t, NULL, NULL)) < 0)
        return rc;
    *out = t.raw;
    return RP_OK;
}

static int read_tbs(struct rp_cert *c, struct rp_der *cert)
{
    struct rp_der tbs;
    struct rp_der_tlv t, k;
    struct rp_der_algid inner_alg;
    int64_t version = 0;
    int rc;
    if ((rc = rp_der_expect_enter(cert, RP_DER_SEQUENCE, &tbs, &t, "TBSCertificate")) < 0)
        return rc;
    c->tbs = t.raw;
    if ((rc = rp_der_optional(&tbs, RP_DER_CTX_CONS(0), &t)) < 0)
        return rc;
    if (rc == 1) {
        struct rp_der v;
        if ((rc = rp_der_enter(&tbs, &t, &v)) < 0)
            return rc;
        if ((rc = rp_der_expect(&v, RP_DER_INTEGER, &k, "INTEGER version")) < 0)
            return rc;
        if ((rc = rp_der_int64(&v, &k, &version)) < 0)
            return rc;
        if ((rc = rp_der_finish(&v, "end of [0] version")) < 0)
            return rc;
        /* v1 is the DEFAULT and so never encoded in DER. */
        if (version < 1 || version > CERT_VERSION_V3)
            return rp_der_fail(&tbs, t.raw.p, RP_E_CMP_CERT, "version v2 or v3");
    }
    c->version = (int)version + 1;
    if ((rc = rp_der_expect(&tbs, RP_DER_INTEGER, &t, "INTEGER serialNumber")) < 0)
        return rc;
    if ((rc = rp_der_int(&tbs, &t, &c->serial)) < 0)
        return rc;
    if ((rc = rp_der_next(&tbs, &t)) < 0 || (rc = rp_der_algid(&tbs, &t, &inner_alg)) < 0)
        return rc;
    if ((rc = read_name(&tbs, &c->issuer, "issuer Name")) < 0)
        return rc;
    if ((rc = read_validity(c, &tbs)) < 0)
        return rc;
    if ((rc = read_name(&tbs, &c->subject, "subject Name")) < 0)
        return rc;
    if ((rc = read_spki(c, &tbs)) < 0)
        return rc;
    if ((rc = rp_der_optional(&tbs, RP_DER_CTX(1), &t)) < 0)
        return rc;
    if ((rc = rp_der_optional(&tbs, RP_DER_CTX(2), &t)) < 0)
        return rc;
    if ((rc = rp_der_optional(&tbs, RP_DER_CTX_CONS(3), &t)) < 0)
        return rc;
    if (rc == 1) {
        if (c->version != 3)
            return rp_der_fail(&tbs, t.raw.p, RP_E_CMP_CERT, "extensions only in v3");
        if ((rc = read_extensions(c, &tbs, &t)) < 0)
            return rc;
    }
    if ((rc = rp_der_finish(&tbs, "end of TBSCertificate")) < 0)
        return rc;
    /* RFC 5280 §4.1.1.2: the two signature algorithm fields must be identical. */
    if (!rp_view_eq(inner_alg.raw, c->sig_alg.raw))
        return rp_der_fail(&tbs, inner_alg.raw.p, RP_E_CMP_CERT,
                           "signature equal to the outer one");
    return RP_OK;
}

int rp_cert_parse_err(const uint8_t *p, size_t n, struct rp_cert *c, struct rp_der_err *err)
{
    struct rp_der top, cert, peek;
    struct rp_der_tlv t, skip;
    int rc;
    memset(c, 0, sizeof *c);
    c->path_len = -1;
    rp_der_init(&top, p, n, err);
    if ((rc = rp_der_expect_enter(&top, RP_DER_SEQUENCE, &cert, &t, "Certificate SEQUENCE")) < 0)
        return rc;
    if ((rc = rp_der_finish(&top, "end of input after the Certificate")) < 0)
        return rc;
    c->raw = t.raw;
    /* The outer algorithm is read first so read_tbs can compare the two. */
    peek = cert;
    if ((rc = rp_der_expect(&peek, RP_DER_SEQUENCE, &skip, "TBSCertificate")) < 0)
        return rc;
    if ((rc = rp_der_next(&peek, &t)) < 0 || (rc = rp_der_algid(&peek, &t, &c->sig_alg)) < 0)
        return rc;
    if ((rc = rp_der_expect(&peek, RP_DER_BIT_STRING, &t, "BIT STRING signatureValue")) < 0)
        return rc;
    if ((rc = rp_der_bits(&peek, &t, &c->sig)) < 0)
        return rc;
    if ((rc = rp_der_finish(&peek, "end of Certificate")) < 0)
        return rc;
    if ((rc = read_tbs(c, &cert)) < 0)
        return rc;
    if ((rc = rp_name_find(c->subject, RP_OID_VIEW(RP_OID_AT_SERIAL), &c->subject_serial)) < 0)
        return rp_der_fail(&top, c->subject.p, rc, "subject Name");
    if ((rc = rp_name_find(c->subject, RP_OID_VIEW(RP_OID_AT_CN), &c->subject_cn)) < 0)
        return rp_der_fail(&top, c->subject.p, rc, "subject Name");
    return RP_OK;
}

int rp_cert_parse(const uint8_t *p, size_t n, struct rp_cert *out)
{
    return rp_cert_parse_err(p, n, out, NULL);
}

int rp_cert_has_eku(const struct rp_cert *c, struct rp_view oid)
{
    for (size_t i = 0; i < c->n_eku; i++)
        if (rp_view_eq(c->eku[i], oid))
            return 1;
    return 0;
}
