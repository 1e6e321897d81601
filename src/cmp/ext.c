/* Extensions and CSR attributes a device asks for: see include/raproxy/ext.h. */
#include "decode.h"

#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/ext.h"

#include <string.h>

#define GNAME_IPADDRESS 7u

/* A cursor over exactly one TLV held in `v`; the TLV itself in *t. */
static int open_one(struct rp_view v, struct rp_der *d, struct rp_der_tlv *t)
{
    int rc;
    rp_der_init(d, v.p, v.len, NULL);
    if ((rc = rp_der_next(d, t)) < 0)
        return rc;
    return rp_der_finish(d, "one element");
}

/* `v` holds exactly one SEQUENCE with at least one element: a cursor over its elements in *s.
 * `seq` names the SEQUENCE and `one` its element in the error messages. */
static int open_nonempty_seq(struct rp_view v, struct rp_der *s, const char *seq, const char *one)
{
    struct rp_der d;
    struct rp_der_tlv t;
    int rc;
    if ((rc = open_one(v, &d, &t)) < 0)
        return rc;
    if (t.ident != RP_DER_SEQUENCE)
        return rp_der_fail(&d, t.raw.p, RP_E_DER_TAG, seq);
    if ((rc = rp_der_enter(&d, &t, s)) < 0)
        return rc;
    if (rp_der_left(s) == 0)
        return rp_der_fail(s, t.raw.p, RP_E_DER_COUNT, one);
    return RP_OK;
}

int rp_ext_list(struct rp_view exts_tlv, struct rp_ext *out, size_t cap, size_t *n)
{
    struct rp_der d, s, e;
    struct rp_der_tlv t, k;
    int rc;
    *n = 0;
    if ((rc = open_one(exts_tlv, &d, &t)) < 0)
        return rc;
    if (!t.constructed)
        return rp_der_fail(&d, t.raw.p, RP_E_DER_TAG, "Extensions SEQUENCE");
    if ((rc = rp_der_enter(&d, &t, &s)) < 0)
        return rc;
    if (rp_der_left(&s) == 0)
        return rp_der_fail(&s, t.raw.p, RP_E_DER_COUNT, "at least one Extension");
    while (rp_der_left(&s) > 0) {
        struct rp_ext x = {0};
        if (*n == cap)
            return rp_der_fail(&s, s.p, RP_E_DER_COUNT, "extensions within the cap");
        if ((rc = rp_der_expect_enter(&s, RP_DER_SEQUENCE, &e, &k, "Extension SEQUENCE")) < 0)
            return rc;
        x.raw = k.raw;
        if ((rc = rp_der_expect(&e, RP_DER_OID, &k, "OID extnID")) < 0 ||
            (rc = rp_der_oid(&e, &k, &x.oid)) < 0)
            return rc;
        if ((rc = rp_der_optional(&e, RP_DER_BOOLEAN, &k)) < 0)
            return rc;
        if (rc == 1 && (rc = rp_der_bool(&e, &k, &x.critical)) < 0)
            return rc;
        if ((rc = rp_der_expect(&e, RP_DER_OCTET_STRING, &k, "OCTET STRING extnValue")) < 0 ||
            (rc = rp_der_finish(&e, "end of Extension")) < 0)
            return rc;
        x.value = k.val;
        for (size_t i = 0; i < *n; i++)
            if (rp_view_eq(out[i].oid, x.oid))
                return rp_der_fail(&s, x.raw.p, RP_E_DER_TAG, "each extension once");
        out[(*n)++] = x;
    }
    return RP_OK;
}

int rp_ext_general_names(struct rp_view value, struct rp_cmp_gname *out, size_t cap, size_t *n)
{
    struct rp_der s;
    int rc;
    *n = 0;
    if ((rc = open_nonempty_seq(value, &s, "GeneralNames SEQUENCE", "at least one GeneralName")) <
        0)
        return rc;
    while (rp_der_left(&s) > 0) {
        if (*n == cap)
            return rp_der_fail(&s, s.p, RP_E_DER_COUNT, "GeneralNames within the cap");
        if ((rc = cmp_read_gname(&s, &out[*n], "GeneralName")) < 0)
            return rc;
        (*n)++;
    }
    return RP_OK;
}

struct rp_view rp_ext_general_name_value(const struct rp_cmp_gname *g)
{
    struct rp_der d;
    struct rp_der_tlv t;
    if (!rp_view_present(g->raw) || open_one(g->raw, &d, &t) < 0 || t.constructed)
        return RP_VIEW_NULL;
    return t.val;
}

int rp_ext_key_usage(struct rp_view value, uint32_t *bits)
{
    struct rp_der d;
    struct rp_der_tlv t;
    int rc;
    if ((rc = open_one(value, &d, &t)) < 0)
        return rc;
    if (t.ident != RP_DER_BIT_STRING)
        return rp_der_fail(&d, t.raw.p, RP_E_DER_TAG, "KeyUsage BIT STRING");
    return rp_der_named_bits(&d, &t, bits);
}

int rp_ext_eku(struct rp_view value, struct rp_view *oids, size_t cap, size_t *n)
{
    struct rp_der s;
    struct rp_der_tlv k;
    int rc;
    *n = 0;
    if ((rc = open_nonempty_seq(value, &s, "ExtKeyUsageSyntax SEQUENCE",
                                "at least one KeyPurposeId")) < 0)
        return rc;
    while (rp_der_left(&s) > 0) {
        if (*n == cap)
            return rp_der_fail(&s, s.p, RP_E_DER_COUNT, "purposes within the cap");
        if ((rc = rp_der_expect(&s, RP_DER_OID, &k, "OID KeyPurposeId")) < 0 ||
            (rc = rp_der_oid(&s, &k, &oids[*n])) < 0)
            return rc;
        (*n)++;
    }
    return RP_OK;
}

int rp_ext_basic_constraints(struct rp_view value, int *ca, int64_t *path_len)
{
    struct rp_der d, s;
    struct rp_der_tlv t, k;
    int rc;
    *ca = 0;
    *path_len = -1;
    if ((rc = open_one(value, &d, &t)) < 0)
        return rc;
    if (t.ident != RP_DER_SEQUENCE)
        return rp_der_fail(&d, t.raw.p, RP_E_DER_TAG, "BasicConstraints SEQUENCE");
    if ((rc = rp_der_enter(&d, &t, &s)) < 0)
        return rc;
    if ((rc = rp_der_optional(&s, RP_DER_BOOLEAN, &k)) < 0)
        return rc;
    if (rc == 1 && (rc = rp_der_bool(&s, &k, ca)) < 0)
        return rc;
    if ((rc = rp_der_optional(&s, RP_DER_INTEGER, &k)) < 0)
        return rc;
    if (rc == 1 && (rc = rp_der_int64(&s, &k, path_len)) < 0)
        return rc;
    return rp_der_finish(&s, "end of BasicConstraints");
}

int rp_p10_attrs(struct rp_view attributes_raw, struct rp_p10_attr *out, size_t cap, size_t *n)
{
    struct rp_der d, s, e, v;
    struct rp_der_tlv t, k;
    int rc;
    *n = 0;
    if ((rc = open_one(attributes_raw, &d, &t)) < 0)
        return rc;
    if (!t.constructed)
        return rp_der_fail(&d, t.raw.p, RP_E_DER_TAG, "[0] attributes");
    if ((rc = rp_der_enter(&d, &t, &s)) < 0)
        return rc;
    while (rp_der_left(&s) > 0) {
        struct rp_p10_attr a = {0};
        if (*n == cap)
            return rp_der_fail(&s, s.p, RP_E_DER_COUNT, "attributes within the cap");
        if ((rc = rp_der_expect_enter(&s, RP_DER_SEQUENCE, &e, NULL, "Attribute SEQUENCE")) < 0)
            return rc;
        if ((rc = rp_der_expect(&e, RP_DER_OID, &k, "OID attribute type")) < 0 ||
            (rc = rp_der_oid(&e, &k, &a.type)) < 0)
            return rc;
        if ((rc = rp_der_expect_enter(&e, RP_DER_SET, &v, &k, "SET OF attribute values")) < 0)
            return rc;
        a.values = k.raw;
        if ((rc = rp_der_count(&v, 1, RP_EXT_MAX, &a.n_values)) < 0 ||
            (rc = rp_der_validate(&e, &k)) < 0 || (rc = rp_der_finish(&e, "end of Attribute")) < 0)
            return rc;
        for (size_t i = 0; i < *n; i++)
            if (rp_view_eq(out[i].type, a.type))
                return rp_der_fail(&s, k.raw.p, RP_E_DER_TAG, "each attribute once");
        out[(*n)++] = a;
    }
    return RP_OK;
}

int rp_p10_ext_request(const struct rp_p10_attr *a, struct rp_view *exts_tlv)
{
    struct rp_der d, s;
    struct rp_der_tlv t, k;
    int rc;
    if (a->n_values != 1)
        return RP_E_DER_COUNT;
    if ((rc = open_one(a->values, &d, &t)) < 0 || (rc = rp_der_enter(&d, &t, &s)) < 0)
        return rc;
    if ((rc = rp_der_expect(&s, RP_DER_SEQUENCE, &k, "Extensions SEQUENCE")) < 0)
        return rc;
    *exts_tlv = k.raw;
    return rp_der_finish(&s, "one Extensions value");
}

/* ---- encoders ---- */

int rp_ext_encode(struct rp_arena *a, struct rp_view oid, bool critical, struct rp_view value_der,
                  struct rp_view *out)
{
    struct rp_derw w;
    rp_derw_init(&w, a, oid.len + value_der.len + 4 * RP_DERW_MAX_HEADER + 3);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, oid);
    if (critical)
        rp_derw_bool(&w, 1);
    rp_derw_octets(&w, value_der);
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

int rp_ext_encode_general_names(struct rp_arena *a, const struct rp_ext_gname *names, size_t n,
                                struct rp_view *out)
{
    struct rp_derw w;
    size_t payload = RP_DERW_MAX_HEADER;
    if (n == 0 || n > RP_EXT_MAX)
        return RP_E_INVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned c = names[i].choice;
        if ((c != 1 && c != 2 && c != 6 && c != GNAME_IPADDRESS) || names[i].value.len == 0)
            return RP_E_INVAL;
        payload += names[i].value.len + RP_DERW_MAX_HEADER;
    }
    rp_derw_init(&w, a, payload);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    for (size_t i = 0; i < n; i++)
        rp_derw_prim(&w, RP_DER_CTX(names[i].choice), names[i].value);
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}
