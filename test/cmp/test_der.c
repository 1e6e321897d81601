/* The strict DER reader on hand-made encodings: every X.690 DER rule it enforces. */
#include "raproxy/cmp.h"
#include "raproxy/der.h"
#include "raproxy/err.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#define B(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

/* One TLV from bytes, with error sink. */
static int one(const uint8_t *p, size_t n, struct rp_der_tlv *t, struct rp_der_err *e)
{
    memset(e, 0, sizeof *e);
    return rp_der_parse_one(p, n, t, e);
}

/* Parse one TLV and run a primitive checker on it. The bytes are static: views in `out`
 * must stay valid after the macro. */
#define PRIM(fn, out, ...)                                                                         \
    ({                                                                                             \
        static const uint8_t b_[] = {__VA_ARGS__};                                                 \
        struct rp_der d_;                                                                          \
        struct rp_der_tlv t_;                                                                      \
        struct rp_der_err e_ = {0};                                                                \
        rp_der_init(&d_, b_, sizeof b_, &e_);                                                      \
        int rc_ = rp_der_next(&d_, &t_);                                                           \
        rc_ == 0 ? fn(&d_, &t_, out) : rc_;                                                        \
    })

Test(der_reader, reads_short_and_long_lengths)
{
    struct rp_der_tlv t;
    struct rp_der_err e;
    cr_assert_eq(one(B(0x04, 0x02, 0xAA, 0xBB), &t, &e), RP_OK);
    cr_assert_eq(t.ident, RP_DER_OCTET_STRING);
    cr_assert_eq(t.val.len, 2);
    cr_assert_eq(t.raw.len, 4);
    uint8_t *buf = calloc(1, 3 + 200);
    buf[0] = 0x04, buf[1] = 0x81, buf[2] = 200;
    cr_assert_eq(one(buf, 203, &t, &e), RP_OK);
    cr_assert_eq(t.val.len, 200);
    cr_assert_eq(t.val.p, buf + 3);
    free(buf);
}

Test(der_reader, rejects_indefinite_length)
{
    struct rp_der_tlv t;
    struct rp_der_err e;
    cr_assert_eq(one(B(0x30, 0x80, 0x05, 0x00, 0x00, 0x00), &t, &e), RP_E_DER_INDEFINITE);
    cr_assert_eq(e.code, RP_E_DER_INDEFINITE);
    cr_assert_eq(e.offset, 0);
    cr_assert_not_null(e.expected);
}

Test(der_reader, rejects_non_minimal_lengths)
{
    struct rp_der_tlv t;
    struct rp_der_err e;
    cr_assert_eq(one(B(0x04, 0x81, 0x05, 1, 2, 3, 4, 5), &t, &e), RP_E_DER_NONMINIMAL);
    cr_assert_eq(one(B(0x04, 0x82, 0x00, 0x05, 1, 2, 3, 4, 5), &t, &e), RP_E_DER_NONMINIMAL);
    cr_assert_eq(one(B(0x04, 0xFF, 0x00), &t, &e), RP_E_DER_NONMINIMAL);
}

Test(der_reader, rejects_lengths_beyond_the_buffer)
{
    struct rp_der_tlv t;
    struct rp_der_err e;
    cr_assert_eq(one(B(0x04, 0x05, 1, 2), &t, &e), RP_E_DER_TRUNCATED);
    cr_assert_eq(one(B(0x04, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0), &t, &e), RP_E_DER_TRUNCATED);
    cr_assert_eq(one(B(0x04, 0x88, 1, 0, 0, 0, 0, 0, 0, 0), &t, &e), RP_E_DER_TRUNCATED);
    cr_assert_eq(one(B(0x04, 0x82, 0x01), &t, &e), RP_E_DER_TRUNCATED);
    cr_assert_eq(one(B(0x04), &t, &e), RP_E_DER_TRUNCATED);
    cr_assert_eq(one(NULL, 0, &t, &e), RP_E_DER_TRUNCATED);
    /* A child may not run past its parent even when the buffer goes on. */
    struct rp_der d, c;
    rp_der_init(&d, B(0x30, 0x02, 0x04, 0x03, 0xAA, 0xBB, 0xCC), NULL);
    cr_assert_eq(rp_der_next(&d, &t), RP_OK);
    cr_assert_eq(rp_der_enter(&d, &t, &c), RP_OK);
    cr_assert_eq(rp_der_next(&c, &t), RP_E_DER_TRUNCATED);
}

Test(der_reader, rejects_trailing_bytes)
{
    struct rp_der_tlv t;
    struct rp_der_err e;
    cr_assert_eq(one(B(0x05, 0x00, 0x00), &t, &e), RP_E_DER_TRAILING);
    cr_assert_eq(e.offset, 2);
}

Test(der_reader, reads_long_form_tags_and_rejects_their_abuse)
{
    struct rp_der_tlv t;
    struct rp_der_err e;
    cr_assert_eq(one(B(0x9F, 0x1F, 0x00), &t, &e), RP_OK);
    cr_assert_eq(t.number, 31);
    cr_assert_eq(t.cls, RP_DER_CLASS_CONTEXT);
    cr_assert_eq(one(B(0xBF, 0x81, 0x00, 0x00), &t, &e), RP_OK);
    cr_assert_eq(t.number, 128);
    cr_assert(t.constructed);
    /* leading 0x80 octet, short-form number in long form, > 28 bits, truncated */
    cr_assert_eq(one(B(0x9F, 0x80, 0x20, 0x00), &t, &e), RP_E_DER_NONMINIMAL);
    cr_assert_eq(one(B(0x9F, 0x05, 0x00), &t, &e), RP_E_DER_NONMINIMAL);
    cr_assert_eq(one(B(0x9F, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00), &t, &e), RP_E_DER_TAG);
    cr_assert_eq(one(B(0x9F, 0x81), &t, &e), RP_E_DER_TRUNCATED);
    /* a long-form tag never matches a single-octet expectation */
    struct rp_der d;
    rp_der_init(&d, B(0x9F, 0x1F, 0x00), NULL);
    cr_assert_eq(rp_der_expect(&d, RP_DER_CTX(31), &t, "x"), RP_E_DER_TAG);
}

Test(der_reader, enforces_primitive_and_constructed_forms)
{
    struct rp_der_tlv t;
    struct rp_der_err e;
    cr_assert_eq(one(B(0x10, 0x00), &t, &e), RP_E_DER_TAG);      /* primitive SEQUENCE */
    cr_assert_eq(one(B(0x11, 0x00), &t, &e), RP_E_DER_TAG);      /* primitive SET */
    cr_assert_eq(one(B(0x22, 0x00), &t, &e), RP_E_DER_TAG);      /* constructed INTEGER */
    cr_assert_eq(one(B(0x24, 0x00), &t, &e), RP_E_DER_TAG);      /* constructed OCTET STRING */
    cr_assert_eq(one(B(0x00, 0x00), &t, &e), RP_E_DER_TAG);      /* end-of-contents */
    cr_assert_eq(one(B(0xA0, 0x02, 0x05, 0x00), &t, &e), RP_OK); /* context: either form */
}

Test(der_reader, expect_and_optional_report_tags)
{
    struct rp_der d;
    struct rp_der_tlv t;
    struct rp_der_err e = {0};
    rp_der_init(&d, B(0x02, 0x01, 0x05, 0x05, 0x00), &e);
    cr_assert_eq(rp_der_optional(&d, RP_DER_NULL, &t), 0);
    cr_assert_eq(rp_der_left(&d), 5); /* nothing consumed */
    cr_assert_eq(rp_der_expect(&d, RP_DER_INTEGER, &t, "INTEGER"), RP_OK);
    cr_assert_eq(rp_der_expect(&d, RP_DER_OID, &t, "OID thing"), RP_E_DER_TAG);
    cr_assert_eq(e.offset, 3);
    cr_assert_str_eq(e.expected, "OID thing");
    cr_assert_eq(rp_der_optional(&d, RP_DER_NULL, &t), 1);
    cr_assert_eq(rp_der_optional(&d, RP_DER_NULL, &t), 0);
    cr_assert_eq(rp_der_finish(&d, "end"), RP_OK);
}

/* n nested SEQUENCEs with minimal lengths, innermost empty; built from the inside out. */
static uint8_t *deep(size_t n, size_t *len, size_t *outer_hdr)
{
    const size_t max_hdr = 6;
    uint8_t *b = malloc(n * max_hdr);
    size_t pos = n * max_hdr, inner = 0, hl = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t h[6];
        hl = 0;
        h[hl++] = 0x30;
        if (inner < 0x80) {
            h[hl++] = (uint8_t)inner;
        } else {
            size_t k = inner < 0x100 ? 1 : inner < 0x10000 ? 2 : 3;
            h[hl++] = (uint8_t)(0x80 | k);
            for (size_t j = k; j-- > 0;)
                h[hl++] = (uint8_t)(inner >> (8 * j));
        }
        pos -= hl;
        memcpy(b + pos, h, hl);
        inner += hl;
    }
    memmove(b, b + pos, inner);
    *len = inner;
    if (outer_hdr)
        *outer_hdr = hl;
    return b;
}

Test(der_reader, caps_nesting_depth)
{
    size_t n;
    uint8_t *b = deep(10000, &n, NULL);
    struct rp_der d;
    struct rp_der_tlv t;
    struct rp_der_err e = {0};
    rp_der_init(&d, b, n, &e);
    cr_assert_eq(rp_der_next(&d, &t), RP_OK);
    cr_assert_eq(rp_der_validate(&d, &t), RP_E_DER_DEPTH);
    /* the outer levels all have 4-byte headers (30 82 hi lo): the 33rd starts here */
    cr_assert_eq(e.offset, RP_DER_MAX_DEPTH * 4);
    /* the PKIMessage decoder refuses it too, without recursing into it */
    static uint8_t mem[4096];
    struct rp_arena a;
    struct rp_cmp_msg m;
    struct rp_cmp_err ce;
    rp_arena_init(&a, mem, sizeof mem);
    cr_assert_lt(rp_cmp_decode(b, n, &a, &m, &ce), 0);
    free(b);
    b = deep(RP_DER_MAX_DEPTH, &n, NULL);
    rp_der_init(&d, b, n, NULL);
    cr_assert_eq(rp_der_next(&d, &t), RP_OK);
    cr_assert_eq(rp_der_validate(&d, &t), RP_OK);
    free(b);
}

Test(der_reader, caps_element_counts)
{
    size_t cnt = RP_DER_MAX_ELEMENTS + 1, n = 4 + cnt * 2;
    uint8_t *b = calloc(1, n);
    b[0] = 0x30, b[1] = 0x82, b[2] = (uint8_t)((cnt * 2) >> 8), b[3] = (uint8_t)(cnt * 2);
    for (size_t i = 0; i < cnt; i++)
        b[4 + 2 * i] = RP_DER_NULL;
    struct rp_der d, c;
    struct rp_der_tlv t;
    size_t count = 0;
    rp_der_init(&d, b, n, NULL);
    cr_assert_eq(rp_der_next(&d, &t), RP_OK);
    cr_assert_eq(rp_der_enter(&d, &t, &c), RP_OK);
    cr_assert_eq(rp_der_count(&c, 1, RP_DER_MAX_ELEMENTS, &count), RP_E_DER_COUNT);
    cr_assert_eq(rp_der_count(&c, 1, cnt, &count), RP_OK);
    cr_assert_eq(count, cnt);
    cr_assert_eq(rp_der_validate(&d, &t), RP_E_DER_COUNT);
    free(b);
    rp_der_init(&d, B(0x30, 0x00), NULL);
    cr_assert_eq(rp_der_next(&d, &t), RP_OK);
    cr_assert_eq(rp_der_enter(&d, &t, &c), RP_OK);
    cr_assert_eq(rp_der_count(&c, 1, 10, &count), RP_E_DER_COUNT); /* SIZE (1..MAX) */
}

Test(der_integer, accepts_minimal_and_rejects_padded)
{
    int64_t v;
    cr_assert_eq(PRIM(rp_der_int64, &v, 0x02, 0x01, 0x00), RP_OK);
    cr_assert_eq(v, 0);
    cr_assert_eq(PRIM(rp_der_int64, &v, 0x02, 0x02, 0x00, 0x80), RP_OK);
    cr_assert_eq(v, 128);
    cr_assert_eq(PRIM(rp_der_int64, &v, 0x02, 0x01, 0xFF), RP_OK);
    cr_assert_eq(v, -1);
    cr_assert_eq(PRIM(rp_der_int64, &v, 0x02, 0x02, 0xFF, 0x7F), RP_OK);
    cr_assert_eq(v, -129);
    cr_assert_eq(PRIM(rp_der_int64, &v, 0x02, 0x08, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF),
                 RP_OK);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(PRIM(rp_der_int64, &v, 0x02, 0x00), RP_E_DER_INTEGER);
    cr_assert_eq(PRIM(rp_der_int64, &v, 0x02, 0x02, 0x00, 0x01), RP_E_DER_INTEGER);
    cr_assert_eq(PRIM(rp_der_int64, &v, 0x02, 0x02, 0xFF, 0x80), RP_E_DER_INTEGER);
    cr_assert_eq(PRIM(rp_der_int64, &v, 0x02, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0),
                 RP_E_DER_INTEGER);
    struct rp_view u;
    cr_assert_eq(PRIM(rp_der_uint_bytes, &u, 0x02, 0x02, 0x00, 0x90), RP_OK);
    cr_assert_eq(u.len, 1);
    cr_assert_eq(u.p[0], 0x90);
    cr_assert_eq(PRIM(rp_der_uint_bytes, &u, 0x02, 0x01, 0x90), RP_E_DER_INTEGER);
}

Test(der_boolean, accepts_only_00_and_ff)
{
    int v;
    cr_assert_eq(PRIM(rp_der_bool, &v, 0x01, 0x01, 0xFF), RP_OK);
    cr_assert_eq(v, 1);
    cr_assert_eq(PRIM(rp_der_bool, &v, 0x01, 0x01, 0x00), RP_OK);
    cr_assert_eq(v, 0);
    cr_assert_eq(PRIM(rp_der_bool, &v, 0x01, 0x01, 0x01), RP_E_DER_BOOLEAN);
    cr_assert_eq(PRIM(rp_der_bool, &v, 0x01, 0x02, 0xFF, 0xFF), RP_E_DER_BOOLEAN);
    cr_assert_eq(PRIM(rp_der_bool, &v, 0x01, 0x00), RP_E_DER_BOOLEAN);
}

Test(der_bitstring, enforces_unused_bits_rules)
{
    struct rp_der_bits b;
    cr_assert_eq(PRIM(rp_der_bits, &b, 0x03, 0x03, 0x00, 0xAB, 0xCD), RP_OK);
    cr_assert_eq(b.bytes.len, 2);
    cr_assert_eq(b.unused, 0);
    cr_assert_eq(PRIM(rp_der_bits, &b, 0x03, 0x02, 0x04, 0xF0), RP_OK);
    cr_assert_eq(b.unused, 4);
    cr_assert_eq(PRIM(rp_der_bits, &b, 0x03, 0x01, 0x00), RP_OK);
    cr_assert_eq(b.bytes.len, 0);
    cr_assert_eq(PRIM(rp_der_bits, &b, 0x03, 0x00), RP_E_DER_BITSTRING);
    cr_assert_eq(PRIM(rp_der_bits, &b, 0x03, 0x02, 0x08, 0x00), RP_E_DER_BITSTRING);
    cr_assert_eq(PRIM(rp_der_bits, &b, 0x03, 0x01, 0x03), RP_E_DER_BITSTRING);
    cr_assert_eq(PRIM(rp_der_bits, &b, 0x03, 0x02, 0x04, 0xF8), RP_E_DER_BITSTRING);
}

Test(der_bitstring, reads_named_bits)
{
    uint32_t v;
    /* keyUsage digitalSignature | keyAgreement: bits 0 and 4 */
    cr_assert_eq(PRIM(rp_der_named_bits, &v, 0x03, 0x02, 0x03, 0x88), RP_OK);
    cr_assert_eq(v, (1u << 0) | (1u << 4));
    /* badPOP (9) */
    cr_assert_eq(PRIM(rp_der_named_bits, &v, 0x03, 0x03, 0x06, 0x00, 0x40), RP_OK);
    cr_assert_eq(v, 1u << 9);
    cr_assert_eq(PRIM(rp_der_named_bits, &v, 0x03, 0x06, 0x07, 0, 0, 0, 0, 0x80),
                 RP_E_DER_BITSTRING);
}

Test(der_oid, checks_syntax_and_prints_dotted)
{
    struct rp_view o;
    char s[64];
    cr_assert_eq(PRIM(rp_der_oid, &o, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01), RP_OK);
    cr_assert(rp_oid_is(o, RP_OID_EC_PUBLIC_KEY));
    cr_assert_eq(rp_der_oid_str(o, s, sizeof s), 17);
    cr_assert_str_eq(s, "1.2.840.10045.2.1");
    cr_assert_eq(rp_der_oid_str(rp_view_make("\x88\x37", 2), s, sizeof s), 5);
    cr_assert_str_eq(s, "2.999");
    cr_assert_eq(rp_der_oid_str(o, s, 8), RP_E_INVAL);
    cr_assert_eq(PRIM(rp_der_oid, &o, 0x06, 0x00), RP_E_DER_OID);
    cr_assert_eq(PRIM(rp_der_oid, &o, 0x06, 0x02, 0x2a, 0x86), RP_E_DER_OID);
    cr_assert_eq(PRIM(rp_der_oid, &o, 0x06, 0x03, 0x2a, 0x80, 0x01), RP_E_DER_OID);
    cr_assert_eq(PRIM(rp_der_oid, &o, 0x06, 0x02, 0x80, 0x01), RP_E_DER_OID);
}

#define TIME(tag, str)                                                                             \
    ({                                                                                             \
        uint8_t b_[64];                                                                            \
        size_t n_ = strlen(str);                                                                   \
        b_[0] = (tag), b_[1] = (uint8_t)n_;                                                        \
        memcpy(b_ + 2, str, n_);                                                                   \
        struct rp_der d_;                                                                          \
        struct rp_der_tlv t_;                                                                      \
        rp_der_init(&d_, b_, n_ + 2, NULL);                                                        \
        int rc_ = rp_der_next(&d_, &t_);                                                           \
        rc_ == 0 ? rp_der_time(&d_, &t_, &when) : rc_;                                             \
    })

Test(der_time, converts_der_times_to_epoch)
{
    int64_t when;
    cr_assert_eq(TIME(RP_DER_UTC_TIME, "700101000000Z"), RP_OK);
    cr_assert_eq(when, 0);
    cr_assert_eq(TIME(RP_DER_UTC_TIME, "491231235959Z"), RP_OK);
    cr_assert_eq(when, 2524607999);
    cr_assert_eq(TIME(RP_DER_UTC_TIME, "500101000000Z"), RP_OK);
    cr_assert_eq(when, -631152000);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "20240229120000Z"), RP_OK);
    cr_assert_eq(when, 1709208000);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "20240229120000.25Z"), RP_OK);
    cr_assert_eq(when, 1709208000);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "99991231235959Z"), RP_OK);
    cr_assert_eq(when, 253402300799);
}

Test(der_time, rejects_non_der_forms)
{
    int64_t when;
    cr_assert_eq(TIME(RP_DER_UTC_TIME, "7001010000Z"), RP_E_DER_TIME);       /* no seconds */
    cr_assert_eq(TIME(RP_DER_UTC_TIME, "700101000000"), RP_E_DER_TIME);      /* no Z */
    cr_assert_eq(TIME(RP_DER_UTC_TIME, "700101000000+0100"), RP_E_DER_TIME); /* offset */
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "20230229120000Z"), RP_E_DER_TIME);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "20241301000000Z"), RP_E_DER_TIME);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "20240101240000Z"), RP_E_DER_TIME);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "20240101000060Z"), RP_E_DER_TIME);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "20240100000000Z"), RP_E_DER_TIME);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "20240101000000.50Z"), RP_E_DER_TIME);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "20240101000000.Z"), RP_E_DER_TIME);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "20240101000000,5Z"), RP_E_DER_TIME);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "2024010100000 Z"), RP_E_DER_TIME);
    cr_assert_eq(TIME(RP_DER_GENERALIZED_TIME, "202401010000Z"), RP_E_DER_TIME);
    cr_assert_eq(TIME(RP_DER_OCTET_STRING, "20240101000000Z"), RP_E_DER_TAG);
}

Test(der_string, checks_character_sets)
{
    struct rp_der d;
    struct rp_der_tlv t;
    const struct {
        uint8_t tag;
        const char *s;
        int ok;
    } cases[] = {
        {RP_DER_PRINTABLE_STRING, "Device 1", 1},
        {RP_DER_PRINTABLE_STRING, "a@b", 0},
        {RP_DER_UTF8_STRING, "K\xc3\xb6ln", 1},
        {RP_DER_UTF8_STRING, "\xc0\x80", 0},
        {RP_DER_UTF8_STRING, "\xed\xa0\x80", 0},
        {RP_DER_UTF8_STRING, "\xe2\x82", 0},
        {RP_DER_IA5_STRING, "a@b.c", 1},
        {RP_DER_IA5_STRING, "\xe9", 0},
        {RP_DER_BMP_STRING,
         "\x00"
         "A",
         1},
        {RP_DER_BMP_STRING, "A", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[16];
        size_t n = cases[i].tag == RP_DER_BMP_STRING && cases[i].ok ? 2 : strlen(cases[i].s);
        b[0] = cases[i].tag, b[1] = (uint8_t)n;
        memcpy(b + 2, cases[i].s, n);
        rp_der_init(&d, b, n + 2, NULL);
        cr_assert_eq(rp_der_next(&d, &t), RP_OK);
        cr_assert_eq(rp_der_string(&d, &t), cases[i].ok ? RP_OK : RP_E_DER_STRING, "case %zu", i);
    }
}

Test(der_algid, reads_oid_and_parameters)
{
    struct rp_der_algid a;
    /* sha256WithRSAEncryption, NULL */
    cr_assert_eq(PRIM(rp_der_algid, &a, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                      0x01, 0x01, 0x0b, 0x05, 0x00),
                 RP_OK);
    cr_assert(rp_oid_is(a.oid, RP_OID_SHA256_WITH_RSA));
    cr_assert_eq(a.params.len, 2);
    cr_assert_eq(a.raw.len, 15);
    /* ecdsa-with-SHA256, absent parameters */
    cr_assert_eq(PRIM(rp_der_algid, &a, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04,
                      0x03, 0x02),
                 RP_OK);
    cr_assert_null(a.params.p);
    /* two parameters */
    cr_assert_eq(PRIM(rp_der_algid, &a, 0x30, 0x07, 0x06, 0x01, 0x2a, 0x05, 0x00, 0x05, 0x00),
                 RP_E_DER_TRAILING);
    cr_assert_eq(PRIM(rp_der_algid, &a, 0x30, 0x02, 0x05, 0x00), RP_E_DER_TAG);
}

Test(der_validate, checks_primitives_inside_opaque_values)
{
    struct rp_der d;
    struct rp_der_tlv t;
    rp_der_init(&d, B(0x30, 0x06, 0x02, 0x01, 0x05, 0x01, 0x01, 0x01), NULL);
    cr_assert_eq(rp_der_next(&d, &t), RP_OK);
    cr_assert_eq(rp_der_validate(&d, &t), RP_E_DER_BOOLEAN);
    rp_der_init(&d, B(0xA0, 0x05, 0x30, 0x03, 0x02, 0x01, 0x05), NULL);
    cr_assert_eq(rp_der_next(&d, &t), RP_OK);
    cr_assert_eq(rp_der_validate(&d, &t), RP_OK);
}
