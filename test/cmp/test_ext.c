/* What a device asks for, as the codec reads and writes it (src/cmp/ext.c, cert.c Name
 * helpers, crmf.c poposkInput, encode.c CertTemplate): real encodings from openssl and from
 * the encoders, and malformed ones. */
#include "raproxy/arena.h"
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/ext.h"

#include <criterion/criterion.h>
#include <string.h>

static struct rp_arena a;

static void setup(void)
{
    cr_assert_eq(rp_arena_new(&a, 1u << 16), RP_OK);
}

static void teardown(void)
{
    rp_arena_free(&a);
}

TestSuite(ext, .init = setup, .fini = teardown);

Test(ext, names_encode_and_list_attribute_by_attribute)
{
    struct rp_name_attr in[3];
    cr_assert_eq(rp_name_attr_oid("C", &in[0].type, &in[0].tag), RP_OK);
    cr_assert_eq(rp_name_attr_oid("CN", &in[1].type, &in[1].tag), RP_OK);
    cr_assert_eq(rp_name_attr_oid("serialNumber", &in[2].type, &in[2].tag), RP_OK);
    cr_expect_eq(in[0].tag, RP_DER_PRINTABLE_STRING);
    cr_expect_eq(in[1].tag, RP_DER_UTF8_STRING);
    cr_expect_eq(in[2].tag, RP_DER_PRINTABLE_STRING);
    in[0].value = rp_view_str("DE");
    in[1].value = rp_view_str("Device \xc3\xa9");
    in[2].value = rp_view_str("SN0001");
    struct rp_view name;
    cr_assert_eq(rp_name_encode(&a, in, 3, &name), RP_OK);
    char text[128];
    cr_assert_gt(rp_name_to_string(name, text, sizeof text), 0);
    cr_expect_str_eq(text, "C=DE, CN=Device \xc3\xa9, serialNumber=SN0001");
    struct rp_name_attr out[4];
    size_t n;
    cr_assert_eq(rp_name_attrs(name, out, 4, &n), RP_OK);
    cr_assert_eq(n, 3);
    cr_expect(rp_view_eq(out[2].value, rp_view_str("SN0001")));
    cr_expect_eq(rp_name_attrs(name, out, 2, &n), RP_E_DER_COUNT);
    cr_expect_str_eq(rp_name_attr_label(out[1].type), "CN");
    /* PrintableString cannot hold '_' or '@': the RA refuses rather than mis-encode */
    in[2].value = rp_view_str("SN_0001");
    cr_expect_eq(rp_name_encode(&a, in, 3, &name), RP_E_INVAL);
    cr_expect_eq(rp_name_attr_oid("colour", &in[0].type, NULL), RP_E_NOT_FOUND);
}

Test(ext, extensions_general_names_usages_and_constraints)
{
    struct rp_ext_gname g[2] = {{2, rp_view_str("dev.example.net")}, {6, rp_view_str("urn:x")}};
    struct rp_view gn, san, ku, out;
    cr_assert_eq(rp_ext_encode_general_names(&a, g, 2, &gn), RP_OK);
    cr_assert_eq(rp_ext_encode(&a, RP_OID_VIEW(RP_OID_CE_SAN), false, gn, &san), RP_OK);
    static const uint8_t ku_bits[] = {0x03, 0x02, 0x07, 0x80};
    cr_assert_eq(rp_ext_encode(&a, RP_OID_VIEW(RP_OID_CE_KEY_USAGE), true,
                               rp_view_make(ku_bits, sizeof ku_bits), &ku),
                 RP_OK);
    struct rp_derw w;
    rp_derw_init(&w, &a, 256);
    rp_derw_begin(&w, RP_DER_CTX_CONS(9));
    rp_derw_raw(&w, san);
    rp_derw_raw(&w, ku);
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    struct rp_ext e[4];
    size_t n;
    cr_assert_eq(rp_ext_list(out, e, 4, &n), RP_OK);
    cr_assert_eq(n, 2);
    cr_expect_not(e[0].critical);
    cr_expect(e[1].critical);
    struct rp_cmp_gname names[4];
    size_t nn;
    cr_assert_eq(rp_ext_general_names(e[0].value, names, 4, &nn), RP_OK);
    cr_assert_eq(nn, 2);
    cr_expect_eq(names[0].choice, 2);
    cr_expect(rp_view_eq(rp_ext_general_name_value(&names[1]), rp_view_str("urn:x")));
    uint32_t bits;
    cr_assert_eq(rp_ext_key_usage(e[1].value, &bits), RP_OK);
    cr_expect_eq(bits, RP_KU_DIGITAL_SIGNATURE);
    cr_expect_eq(rp_ext_list(out, e, 1, &n), RP_E_DER_COUNT);
    /* an extension listed twice */
    rp_derw_init(&w, &a, 256);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_raw(&w, ku);
    rp_derw_raw(&w, ku);
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    cr_expect_lt(rp_ext_list(out, e, 4, &n), 0);
    static const uint8_t bc_ca[] = {0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x00};
    int ca;
    int64_t path;
    cr_assert_eq(rp_ext_basic_constraints(rp_view_make(bc_ca, sizeof bc_ca), &ca, &path), RP_OK);
    cr_expect(ca);
    cr_expect_eq(path, 0);
    static const uint8_t eku[] = {0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06,
                                  0x01, 0x05, 0x05, 0x07, 0x03, 0x02};
    struct rp_view oids[2];
    cr_assert_eq(rp_ext_eku(rp_view_make(eku, sizeof eku), oids, 2, &nn), RP_OK);
    cr_expect(rp_oid_is(oids[0], RP_OID_KP_CLIENT_AUTH));
    static const uint8_t trunc[] = {0x30, 0x0a, 0x06, 0x08, 0x2b};
    cr_expect_lt(rp_ext_eku(rp_view_make(trunc, sizeof trunc), oids, 2, &nn), 0);
    cr_expect_lt(rp_ext_key_usage(rp_view_make(eku, sizeof eku), &bits), 0, "not a BIT STRING");
}

Test(ext, poposk_input_is_parsed_only_when_judged)
{
    /* [0] { [0] { [4] { Name } }, SPKI } */
    static const uint8_t spki[] = {0x30, 0x0b, 0x30, 0x05, 0x06, 0x03, 0x2b,
                                   0x65, 0x70, 0x03, 0x02, 0x00, 0x01};
    struct rp_name_attr at = {.tag = RP_DER_UTF8_STRING, .value = rp_view_str("dev")};
    cr_assert_eq(rp_name_attr_oid("CN", &at.type, NULL), RP_OK);
    struct rp_view name, in;
    cr_assert_eq(rp_name_encode(&a, &at, 1, &name), RP_OK);
    struct rp_derw w;
    rp_derw_init(&w, &a, 256);
    rp_derw_begin(&w, RP_DER_CTX_CONS(0));
    rp_derw_begin(&w, RP_DER_CTX_CONS(0));
    rp_derw_begin(&w, RP_DER_CTX_CONS(4));
    rp_derw_raw(&w, name);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_raw(&w, rp_view_make(spki, sizeof spki));
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &in), RP_OK);
    struct rp_crmf_poposk_input p;
    cr_assert_eq(rp_crmf_poposk_input_parse(in, &p), RP_OK);
    cr_expect_eq(p.auth, RP_CRMF_AUTH_SENDER);
    cr_expect(rp_view_eq(p.sender.name, name));
    cr_expect(rp_view_eq(p.public_key, rp_view_make(spki, sizeof spki)));
    /* a ProtectedPart (any other DER) is not one */
    static const uint8_t other[] = {0xa0, 0x06, 0x30, 0x00, 0x02, 0x02, 0x01, 0x00};
    cr_expect_lt(rp_crmf_poposk_input_parse(rp_view_make(other, sizeof other), &p), 0);
    for (size_t cut = 0; cut < in.len; cut++)
        cr_expect_lt(rp_crmf_poposk_input_parse(rp_view_make(in.p, cut), &p), 0, "cut at %zu", cut);
}

Test(ext, a_template_the_ra_writes_decodes_as_written)
{
    static const uint8_t key6[] = {0xa6, 0x0b, 0x30, 0x05, 0x06, 0x03, 0x2b,
                                   0x65, 0x70, 0x03, 0x02, 0x00, 0x01};
    struct rp_name_attr at = {.tag = RP_DER_UTF8_STRING, .value = rp_view_str("dev")};
    cr_assert_eq(rp_name_attr_oid("CN", &at.type, NULL), RP_OK);
    struct rp_view name, body;
    cr_assert_eq(rp_name_encode(&a, &at, 1, &name), RP_OK);
    struct rp_cmp_enc_certreq r[2] = {
        {.cert_req_id = 0,
         .tmpl = {.subject = name, .public_key_raw = rp_view_make(key6, sizeof key6)},
         .ra_verified = 1},
        {.cert_req_id = 1, .tmpl = {.subject = name}, .ra_verified = 0},
    };
    cr_assert_eq(rp_cmp_enc_body_certreqs(&a, RP_CMP_CR, r, 2, &body), RP_OK);
    cr_expect_eq(rp_cmp_enc_body_certreqs(&a, RP_CMP_RR, r, 2, &body), RP_E_INVAL);
    /* decode it inside a minimal message */
    struct rp_view msg;
    static const uint8_t h[] = {0x30, 0x0b, 0x02, 0x01, 0x02, 0xa4, 0x02,
                                0x30, 0x00, 0xa4, 0x02, 0x30, 0x00};
    cr_assert_eq(
        rp_cmp_enc_message(&a, rp_view_make(h, sizeof h), body, RP_VIEW_NULL, NULL, 0, &msg),
        RP_OK);
    struct rp_cmp_msg m;
    cr_assert_eq(rp_cmp_decode(msg.p, msg.len, &a, &m, NULL), RP_OK);
    cr_assert_eq(m.body.reqs.n, 2);
    cr_expect(rp_view_eq(m.body.reqs.reqs[0].tmpl.subject, name));
    cr_expect(rp_view_eq(m.body.reqs.reqs[0].tmpl.public_key_raw, rp_view_make(key6, sizeof key6)));
    cr_expect_eq(m.body.reqs.reqs[0].pop.type, RP_CRMF_POP_RA_VERIFIED);
    cr_expect_eq(m.body.reqs.reqs[1].pop.type, RP_CRMF_POP_NONE);
    cr_expect_eq(m.body.reqs.reqs[1].cert_req_id, 1);
}

#include "raproxy/pattern.h"

/* --check-config (core) and the encoder (cmp) know the same attribute labels. */
Test(ext, every_pattern_label_has_an_encoding)
{
    static const char *const labels[] = {RP_PATTERN_LABELS};
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        struct rp_view oid;
        cr_expect_eq(rp_name_attr_oid(labels[i], &oid, NULL), RP_OK, "%s", labels[i]);
    }
}
