/* DER writer: exact encodings for the X.690 rules, and agreement with the strict reader. */
#include "raproxy/der.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CAP (256u * 1024u)

static struct rp_arena arena;

static void setup(void)
{
    cr_assert_eq(rp_arena_new(&arena, ARENA_CAP), RP_OK);
}

static void teardown(void)
{
    rp_arena_free(&arena);
}

TestSuite(derw, .init = setup, .fini = teardown);

#define assert_bytes(v, ...)                                                                       \
    do {                                                                                           \
        static const uint8_t want_[] = {__VA_ARGS__};                                              \
        cr_assert_eq((v).len, sizeof want_, "length %zu, want %zu", (v).len, sizeof want_);        \
        cr_assert_arr_eq((v).p, want_, sizeof want_);                                              \
    } while (0)

static struct rp_view write_int(int64_t v)
{
    struct rp_derw w;
    struct rp_view out;
    cr_assert_eq(rp_derw_init(&w, &arena, 16), RP_OK);
    rp_derw_int64(&w, RP_DER_INTEGER, v);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    return out;
}

Test(derw, integers_are_minimal_twos_complement)
{
    assert_bytes(write_int(0), 0x02, 0x01, 0x00);
    assert_bytes(write_int(127), 0x02, 0x01, 0x7F);
    assert_bytes(write_int(128), 0x02, 0x02, 0x00, 0x80);
    assert_bytes(write_int(256), 0x02, 0x02, 0x01, 0x00);
    assert_bytes(write_int(-1), 0x02, 0x01, 0xFF);
    assert_bytes(write_int(-128), 0x02, 0x01, 0x80);
    assert_bytes(write_int(-129), 0x02, 0x02, 0xFF, 0x7F);
    assert_bytes(write_int(INT64_MAX), 0x02, 0x08, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF);
    assert_bytes(write_int(INT64_MIN), 0x02, 0x08, 0x80, 0, 0, 0, 0, 0, 0, 0);
}

Test(derw, integers_read_back_with_the_strict_reader)
{
    static const int64_t values[] = {
        0,         1,   -1,    127,   128,       -128,      -129,
        255,       256, 65535, 65536, INT64_MAX, INT64_MIN, 1234567890123LL,
        -987654321};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        struct rp_view v = write_int(values[i]);
        struct rp_der_tlv t;
        struct rp_der d;
        int64_t got;
        rp_der_init(&d, v.p, v.len, NULL);
        cr_assert_eq(rp_der_next(&d, &t), RP_OK);
        cr_assert_eq(rp_der_int64(&d, &t, &got), RP_OK, "value %lld", (long long)values[i]);
        cr_assert_eq(got, values[i]);
    }
}

Test(derw, unsigned_magnitudes_get_a_sign_octet_only_when_needed)
{
    struct rp_derw w;
    struct rp_view out;
    static const uint8_t high[] = {0x00, 0x00, 0x9A, 0x01}, low[] = {0x7F, 0x01};
    rp_derw_init(&w, &arena, 32);
    rp_derw_uint_bytes(&w, rp_view_make(high, sizeof high));
    rp_derw_uint_bytes(&w, rp_view_make(low, sizeof low));
    rp_derw_uint_bytes(&w, rp_view_make(NULL, 0));
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    assert_bytes(out, 0x02, 0x03, 0x00, 0x9A, 0x01, 0x02, 0x02, 0x7F, 0x01, 0x02, 0x01, 0x00);
}

/* A SEQUENCE holding one OCTET STRING of n bytes; returns the SEQUENCE's header length. */
static size_t seq_header_len(size_t n)
{
    struct rp_derw w;
    struct rp_view out;
    uint8_t *data = calloc(1, n ? n : 1);
    rp_derw_init(&w, &arena, n + 32);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_octets(&w, rp_view_make(data, n));
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    free(data);
    struct rp_der_tlv t;
    cr_assert_eq(rp_der_parse_one(out.p, out.len, &t, NULL), RP_OK, "n=%zu", n);
    struct rp_der d, c;
    rp_der_init(&d, out.p, out.len, NULL);
    cr_assert_eq(rp_der_next(&d, &t), RP_OK);
    cr_assert_eq(rp_der_enter(&d, &t, &c), RP_OK);
    struct rp_der_tlv inner;
    cr_assert_eq(rp_der_expect(&c, RP_DER_OCTET_STRING, &inner, "octets"), RP_OK);
    cr_assert_eq(inner.val.len, n);
    cr_assert_eq(rp_der_finish(&c, "seq"), RP_OK);
    return t.val.p - t.raw.p;
}

Test(derw, lengths_use_the_shortest_form_at_every_boundary)
{
    /* content = OCTET STRING header (2..4 octets) + n */
    cr_assert_eq(seq_header_len(0), 2);
    cr_assert_eq(seq_header_len(125), 2); /* content 127 */
    cr_assert_eq(seq_header_len(126), 3); /* content 128: 81 80 */
    cr_assert_eq(seq_header_len(252), 3); /* content 255 */
    cr_assert_eq(seq_header_len(253), 4); /* content 256: 82 01 00 */
    cr_assert_eq(seq_header_len(65531), 4);
    cr_assert_eq(seq_header_len(65532), 5); /* content 65536: 83 01 00 00 */
}

Test(derw, nested_constructed_elements_and_explicit_tags)
{
    struct rp_derw w;
    struct rp_view out;
    uint8_t big[200];
    memset(big, 0xAB, sizeof big);
    rp_derw_init(&w, &arena, 512);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_CTX_CONS(0));
    rp_derw_null(&w);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_SET);
    rp_derw_octets(&w, rp_view_make(big, sizeof big));
    rp_derw_end(&w);
    rp_derw_prim(&w, RP_DER_CTX(2), rp_view_str("ab"));
    rp_derw_bool(&w, 1);
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    /* content: A0 02 05 00 (4), 31 81 CB 04 81 C8 + 200 (206), 82 02 a b (4), 01 01 FF (3) */
    cr_assert_eq(out.p[0], 0x30);
    cr_assert_eq(out.p[1], 0x81);
    cr_assert_eq(out.p[2], 4 + 3 + 3 + 200 + 4 + 3);
    static const uint8_t head[] = {0xA0, 0x02, 0x05, 0x00, 0x31, 0x81, 0xCB, 0x04, 0x81, 0xC8};
    cr_assert_arr_eq(out.p + 3, head, sizeof head);
    static const uint8_t tail[] = {0x82, 0x02, 'a', 'b', 0x01, 0x01, 0xFF};
    cr_assert_arr_eq(out.p + out.len - sizeof tail, tail, sizeof tail);
    struct rp_der_tlv t;
    struct rp_der d;
    rp_der_init(&d, out.p, out.len, NULL);
    cr_assert_eq(rp_der_next(&d, &t), RP_OK);
    cr_assert_eq(rp_der_validate(&d, &t), RP_OK);
}

Test(derw, named_bits_drop_trailing_zero_bits)
{
    struct rp_derw w;
    struct rp_view out;
    rp_derw_init(&w, &arena, 64);
    rp_derw_named_bits(&w, 0);                      /* 03 01 00 */
    rp_derw_named_bits(&w, 1u << 0);                /* badAlg: 03 02 07 80 */
    rp_derw_named_bits(&w, 1u << 7);                /* 03 02 00 01 */
    rp_derw_named_bits(&w, 1u << 9);                /* badPOP: 03 03 06 00 40 */
    rp_derw_named_bits(&w, (1u << 23) | (1u << 2)); /* 03 04 00 20 00 01 */
    rp_derw_named_bits(&w, 1u << 26);               /* duplicateCertReq */
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    assert_bytes(out, 0x03, 0x01, 0x00, 0x03, 0x02, 0x07, 0x80, 0x03, 0x02, 0x00, 0x01, 0x03, 0x03,
                 0x06, 0x00, 0x40, 0x03, 0x04, 0x00, 0x20, 0x00, 0x01, 0x03, 0x05, 0x05, 0x00, 0x00,
                 0x00, 0x20);
    /* and the reader gets the same bits back */
    struct rp_der d;
    struct rp_der_tlv t;
    uint32_t bits;
    static const uint32_t want[] = {0, 1u << 0, 1u << 7, 1u << 9, (1u << 23) | (1u << 2), 1u << 26};
    rp_der_init(&d, out.p, out.len, NULL);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert_eq(rp_der_next(&d, &t), RP_OK);
        cr_assert_eq(rp_der_named_bits(&d, &t, &bits), RP_OK);
        cr_assert_eq(bits, want[i], "item %zu", i);
    }
}

Test(derw, bit_strings_refuse_nonzero_unused_bits)
{
    struct rp_derw w;
    struct rp_view out;
    static const uint8_t ok[] = {0xF0}, bad[] = {0xF1};
    rp_derw_init(&w, &arena, 16);
    cr_assert_eq(rp_derw_bits(&w, rp_view_make(ok, 1), 4), RP_OK);
    cr_assert_eq(rp_derw_bits(&w, rp_view_make(bad, 1), 4), RP_E_DER_ENCODE);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_E_DER_ENCODE);
}

static struct rp_view write_time(int64_t epoch)
{
    struct rp_derw w;
    struct rp_view out;
    rp_derw_init(&w, &arena, 32);
    rp_derw_gentime(&w, epoch);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    return out;
}

Test(derw, generalized_time_is_utc_with_seconds)
{
    struct rp_view v = write_time(0);
    cr_assert_eq(v.len, 17);
    cr_assert_eq(v.p[0], RP_DER_GENERALIZED_TIME);
    cr_assert_arr_eq(v.p + 2, "19700101000000Z", 15);
    v = write_time(951782400); /* leap day 2000-02-29 */
    cr_assert_arr_eq(v.p + 2, "20000229000000Z", 15);
    v = write_time(1798761599); /* 2026-12-31T23:59:59Z */
    cr_assert_arr_eq(v.p + 2, "20261231235959Z", 15);
    v = write_time(-1);
    cr_assert_arr_eq(v.p + 2, "19691231235959Z", 15);
}

Test(derw, generalized_time_reads_back_over_centuries)
{
    /* every ~97 days from 1900 to 2200 */
    for (int64_t t = -2208988800LL; t < 7258118400LL; t += 8388607) {
        struct rp_view v = write_time(t);
        struct rp_der d;
        struct rp_der_tlv tlv;
        int64_t got;
        rp_der_init(&d, v.p, v.len, NULL);
        cr_assert_eq(rp_der_next(&d, &tlv), RP_OK);
        cr_assert_eq(rp_der_time(&d, &tlv, &got), RP_OK, "t=%lld", (long long)t);
        cr_assert_eq(got, t);
    }
}

Test(derw, generalized_time_outside_four_digit_years_fails)
{
    struct rp_derw w;
    rp_derw_init(&w, &arena, 32);
    cr_assert_eq(rp_derw_gentime(&w, 253402300800LL), RP_E_DER_ENCODE); /* year 10000 */
}

Test(derw, oid_null_utf8_and_raw_copy)
{
    struct rp_derw w;
    struct rp_view out;
    static const uint8_t tlv[] = {0x04, 0x01, 0x2A};
    rp_derw_init(&w, &arena, 64);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_ED25519));
    rp_derw_null(&w);
    rp_derw_utf8(&w, rp_view_str("é"));
    rp_derw_raw(&w, rp_view_make(tlv, sizeof tlv));
    rp_derw_raw(&w, RP_VIEW_NULL); /* an absent field writes nothing */
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    assert_bytes(out, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x05, 0x00, 0x0C, 0x02, 0xC3, 0xA9, 0x04, 0x01,
                 0x2A);
}

Test(derw, capacity_overflow_is_sticky_and_reported_at_finish)
{
    struct rp_derw w;
    struct rp_view out;
    rp_derw_init(&w, &arena, 4);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    cr_assert_eq(rp_derw_octets(&w, rp_view_str("abc")), RP_E_DER_ENCODE);
    cr_assert_eq(rp_derw_null(&w), RP_E_DER_ENCODE);
    cr_assert_eq(rp_derw_end(&w), RP_E_DER_ENCODE);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_E_DER_ENCODE);
}

Test(derw, long_length_move_that_overflows_capacity_fails)
{
    struct rp_derw w;
    struct rp_view out;
    uint8_t data[126] = {0};
    /* 2 + 2 + 126 fits exactly; widening the SEQUENCE length to 81 80 does not */
    rp_derw_init(&w, &arena, 130);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    cr_assert_eq(rp_derw_octets(&w, rp_view_make(data, sizeof data)), RP_OK);
    cr_assert_eq(rp_derw_end(&w), RP_E_DER_ENCODE);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_E_DER_ENCODE);
}

Test(derw, unbalanced_begin_end_fails)
{
    struct rp_derw w;
    struct rp_view out;
    rp_derw_init(&w, &arena, 16);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_E_DER_ENCODE);
    rp_derw_init(&w, &arena, 16);
    cr_assert_eq(rp_derw_end(&w), RP_E_DER_ENCODE);
}

Test(derw, nesting_deeper_than_the_limit_fails)
{
    struct rp_derw w;
    rp_derw_init(&w, &arena, 256);
    for (unsigned i = 0; i < RP_DERW_MAX_DEPTH; i++)
        cr_assert_eq(rp_derw_begin(&w, RP_DER_SEQUENCE), RP_OK);
    cr_assert_eq(rp_derw_begin(&w, RP_DER_SEQUENCE), RP_E_DER_ENCODE);
}

Test(derw, init_fails_when_the_arena_is_full)
{
    struct rp_derw w;
    struct rp_view out;
    cr_assert_eq(rp_derw_init(&w, &arena, ARENA_CAP + 1), RP_E_ARENA);
    cr_assert_eq(rp_derw_null(&w), RP_E_ARENA);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_E_ARENA);
}

Test(derw, finish_returns_unused_capacity_to_the_arena)
{
    struct rp_derw w;
    struct rp_view out;
    size_t before = rp_arena_mark(&arena);
    rp_derw_init(&w, &arena, 1000);
    rp_derw_null(&w);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    cr_assert_eq(out.len, 2);
    cr_assert_leq(rp_arena_mark(&arena), before + 16 + 2);
    /* the bytes stay valid after later allocations */
    void *later = rp_arena_alloc(&arena, 64);
    cr_assert_not_null(later);
    memset(later, 0x55, 64);
    cr_assert_eq(out.p[0], RP_DER_NULL);
    cr_assert_eq(out.p[1], 0);
}
