#include "raproxy/cert.h"
#include "raproxy/crl.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#define DAY_S    86400
#define TEN_DAYS (10 * DAY_S)

static uint8_t mem[16384];

/* A CertificateList by hand (the signature is not checked by the parser). */
static struct rp_view make_crl(struct rp_arena *a, int64_t this_update, int64_t next_update,
                               const char *idp_uri)
{
    static const uint8_t issuer[] = {0x30, 0x0f, 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55,
                                     0x04, 0x03, 0x0c, 0x04, 'T',  'e',  's',  't'};
    struct rp_derw w;
    struct rp_view out = RP_VIEW_NULL;
    rp_derw_init(&w, a, 1024);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, 1);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_ECDSA_SHA256));
    rp_derw_end(&w);
    rp_derw_raw(&w, rp_view_make(issuer, sizeof issuer));
    rp_derw_gentime(&w, this_update);
    if (next_update)
        rp_derw_gentime(&w, next_update);
    if (idp_uri) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(0));
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_oid(&w, RP_OID_VIEW(RP_OID_CE_IDP));
        rp_derw_bool(&w, 1);
        rp_derw_begin(&w, RP_DER_OCTET_STRING);
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_begin(&w, RP_DER_CTX_CONS(0)); /* distributionPoint */
        rp_derw_begin(&w, RP_DER_CTX_CONS(0)); /* fullName */
        rp_derw_prim(&w, RP_DER_CTX(6), rp_view_str(idp_uri));
        rp_derw_end(&w);
        rp_derw_end(&w);
        rp_derw_end(&w);
        rp_derw_end(&w);
        rp_derw_end(&w);
        rp_derw_end(&w);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_ECDSA_SHA256));
    rp_derw_end(&w);
    static const uint8_t sig[] = {1, 2, 3, 4};
    rp_derw_bits(&w, rp_view_make(sig, sizeof sig), 0);
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    return out;
}

static char *pki_path(const char *rel)
{
    static char buf[4][600];
    static int i;
    const char *pki = rpt_pki();
    cr_assert_not_null(pki);
    char *b = buf[i++ % 4];
    snprintf(b, 600, "%s/%s", pki, rel);
    return b;
}

Test(crl, parses_the_test_pki_crl_issued_by_the_vendor_ica)
{
    size_t len;
    uint8_t *der = rpt_read_file(pki_path("vendor/crl.der"), &len);
    cr_assert_not_null(der);
    struct rp_crl c;
    cr_assert_eq(rp_crl_parse(der, len, &c), RP_OK);
    cr_expect_eq(c.raw.len, len);
    char name[200];
    rp_name_to_string(c.issuer, name, sizeof name);
    cr_expect_str_eq(name, "C=DE, O=Vendor, CN=Vendor ICA");
    int64_t now = (int64_t)time(NULL);
    cr_expect_leq(c.this_update, now);
    cr_expect(c.has_next_update);
    cr_expect_gt(c.next_update, now + 3000 * (int64_t)DAY_S, "about ten years ahead");
    cr_expect_not(rp_view_present(c.idp_name));
    int64_t nu = 0;
    cr_expect_eq(rp_crl_next_update(rp_view_make(der, len), &nu), RP_OK);
    cr_expect_eq(nu, c.next_update);
    free(der);
}

Test(crl, file_next_update_reads_pem_and_der_alike)
{
    int64_t pem = 0, der = 0;
    cr_assert_eq(rp_crl_file_next_update(pki_path("vendor/crl.pem"), &pem), RP_OK);
    cr_assert_eq(rp_crl_file_next_update(pki_path("vendor/crl.der"), &der), RP_OK);
    cr_expect_eq(pem, der);
}

Test(crl, a_crl_without_next_update_is_not_found_and_idp_name_is_kept)
{
    struct rp_arena a;
    rp_arena_init(&a, mem, sizeof mem);
    struct rp_view v = make_crl(&a, 1700000000, 0, "http://crl.example/ica.crl");
    struct rp_crl c;
    cr_assert_eq(rp_crl_parse(v.p, v.len, &c), RP_OK);
    cr_expect_not(c.has_next_update);
    cr_expect_eq(c.this_update, 1700000000);
    cr_assert(rp_view_present(c.idp_name));
    cr_expect_eq(c.idp_name.p[0], RP_DER_CTX_CONS(0), "the fullName choice");
    int64_t t;
    cr_expect_eq(rp_crl_next_update(v, &t), RP_E_NOT_FOUND);
}

Test(crl, earliest_next_update_of_a_pem_file_with_two_crls)
{
    struct rp_arena a;
    rp_arena_init(&a, mem, sizeof mem);
    struct rp_view late = make_crl(&a, 1700000000, 1700000000 + TEN_DAYS, NULL);
    struct rp_view early = make_crl(&a, 1700000000, 1700000000 + DAY_S, NULL);
    char *dir = rpt_tmpdir();
    char path[600], cmd[2600];
    snprintf(path, sizeof path, "%s/two.pem", dir);
    char p1[600], p2[600];
    snprintf(p1, sizeof p1, "%s/late.der", dir);
    snprintf(p2, sizeof p2, "%s/early.der", dir);
    cr_assert_eq(rpt_write_file(p1, late.p, late.len), 0);
    cr_assert_eq(rpt_write_file(p2, early.p, early.len), 0);
    snprintf(cmd, sizeof cmd,
             "(echo text before; for f in %s %s; do echo '-----BEGIN X509 CRL-----'; "
             "base64 -w 64 $f; echo '-----END X509 CRL-----'; done) > %s",
             p1, p2, path);
    const char *argv[] = {"bash", "-c", cmd, NULL};
    cr_assert_eq(rpt_run(argv, 10000, NULL), 0);
    int64_t t = 0;
    cr_expect_eq(rp_crl_file_next_update(path, &t), RP_OK);
    cr_expect_eq(t, 1700000000 + DAY_S);
    /* each block comes back as the DER that went in */
    size_t len, pos = 0, dlen;
    char *text = (char *)rpt_read_file(path, &len);
    uint8_t *d;
    cr_assert_eq(rp_crl_pem_next(text, len, &pos, &d, &dlen), RP_OK);
    cr_expect(rp_view_eq(rp_view_make(d, dlen), late));
    free(d);
    cr_assert_eq(rp_crl_pem_next(text, len, &pos, &d, &dlen), RP_OK);
    cr_expect(rp_view_eq(rp_view_make(d, dlen), early));
    free(d);
    cr_expect_eq(rp_crl_pem_next(text, len, &pos, &d, &dlen), RP_E_NOT_FOUND);
    free(text);
    rpt_rmdir(dir);
    free(dir);
}

Test(crl, rejects_what_is_not_a_crl)
{
    struct rp_arena a;
    rp_arena_init(&a, mem, sizeof mem);
    struct rp_view v = make_crl(&a, 1700000000, 1700000000 + DAY_S, NULL);
    struct rp_crl c;
    for (size_t cut = 0; cut < v.len; cut++)
        cr_expect_lt(rp_crl_parse(v.p, cut, &c), 0, "truncated at %zu", cut);
    uint8_t *longer = rp_arena_alloc(&a, v.len + 1);
    memcpy(longer, v.p, v.len);
    longer[v.len] = 0;
    cr_expect_eq(rp_crl_parse(longer, v.len + 1, &c), RP_E_DER_TRAILING);
    /* a certificate is not a CRL */
    size_t len;
    char *pem = (char *)rpt_read_file(pki_path("vendor/root.pem"), &len);
    cr_assert_not_null(pem);
    int64_t t;
    cr_expect_lt(rp_crl_file_next_update(pki_path("vendor/root.pem"), &t), 0);
    free(pem);
    cr_expect_eq(rp_crl_file_next_update("/nonexistent/crl.pem", &t), RP_E_IO);
}

/* A CRL by hand with revoked entries and one CRL extension, TBS and outer signature
 * algorithms given separately (the parser checks they are equal). */
static struct rp_view make_crl_entries(struct rp_arena *a, const char *const *serials, size_t n,
                                       const char *ext_oid, int ext_critical, const char *outer_alg)
{
    static const uint8_t issuer[] = {0x30, 0x0f, 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55,
                                     0x04, 0x03, 0x0c, 0x04, 'T',  'e',  's',  't'};
    struct rp_derw w;
    struct rp_view out = RP_VIEW_NULL;
    rp_derw_init(&w, a, 4096);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, 1);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_ECDSA_SHA256));
    rp_derw_end(&w);
    rp_derw_raw(&w, rp_view_make(issuer, sizeof issuer));
    rp_derw_gentime(&w, 1700000000);
    rp_derw_gentime(&w, 1700000000 + DAY_S);
    if (n) {
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        for (size_t i = 0; i < n; i++) {
            rp_derw_begin(&w, RP_DER_SEQUENCE);
            rp_derw_prim(&w, RP_DER_INTEGER, rp_view_str(serials[i]));
            rp_derw_gentime(&w, 1690000000);
            rp_derw_end(&w);
        }
        rp_derw_end(&w);
    }
    if (ext_oid) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(0));
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_oid(&w, rp_view_make((const uint8_t *)ext_oid, strlen(ext_oid)));
        if (ext_critical)
            rp_derw_bool(&w, 1);
        rp_derw_begin(&w, RP_DER_OCTET_STRING);
        rp_derw_int64(&w, RP_DER_INTEGER, 7);
        rp_derw_end(&w);
        rp_derw_end(&w);
        rp_derw_end(&w);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, rp_view_make((const uint8_t *)outer_alg, strlen(outer_alg)));
    rp_derw_end(&w);
    static const uint8_t sig[] = {1, 2, 3, 4};
    rp_derw_bits(&w, rp_view_make(sig, sizeof sig), 0);
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    return out;
}

Test(crl, revoked_serials_are_walked_in_order)
{
    struct rp_arena a;
    rp_arena_init(&a, mem, sizeof mem);
    const char *serials[] = {"\x01", "\x12\x34", "\x7f\xff\x01"};
    struct rp_view v =
        make_crl_entries(&a, serials, 3, RP_OID_CE_CRL_NUMBER, 0, RP_OID_ECDSA_SHA256);
    struct rp_crl c;
    cr_assert_eq(rp_crl_parse(v.p, v.len, &c), RP_OK);
    cr_expect_eq(c.n_revoked, 3);
    cr_expect_not(c.unknown_critical);
    struct rp_crl_iter it;
    struct rp_view s;
    rp_crl_revoked_begin(&c, &it);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(rp_crl_revoked_next(&it, &s), 1);
        cr_expect(rp_view_eq(s, rp_view_str(serials[i])), "entry %zu", i);
    }
    cr_expect_eq(rp_crl_revoked_next(&it, &s), 0);
    cr_expect(rp_view_present(c.sig.bytes));
    cr_expect(rp_view_present(c.tbs));
}

Test(crl, the_test_pki_crl_lists_the_revoked_device)
{
    size_t len, clen;
    uint8_t *der = rpt_read_file(pki_path("vendor/crl.der"), &len);
    uint8_t *pem = rpt_read_file(pki_path("vendor/revoked.pem"), &clen);
    cr_assert(der && pem);
    uint8_t cert[4096];
    int n = wc_CertPemToDer(pem, (int)clen, cert, sizeof cert, CERT_TYPE);
    cr_assert_gt(n, 0);
    struct rp_cert rc;
    cr_assert_eq(rp_cert_parse(cert, (size_t)n, &rc), RP_OK);
    struct rp_crl c;
    cr_assert_eq(rp_crl_parse(der, len, &c), RP_OK);
    cr_assert_eq(c.n_revoked, 1);
    struct rp_crl_iter it;
    struct rp_view s;
    rp_crl_revoked_begin(&c, &it);
    cr_assert_eq(rp_crl_revoked_next(&it, &s), 1);
    cr_expect(rp_view_eq(s, rc.serial), "the entry is revoked.pem's serial");
    free(der);
    free(pem);
}

Test(crl, a_critical_delta_indicator_is_flagged_a_noncritical_unknown_is_not)
{
    struct rp_arena a;
    rp_arena_init(&a, mem, sizeof mem);
    struct rp_crl c;
    struct rp_view v = make_crl_entries(&a, NULL, 0, RP_OID_CE_DELTA, 1, RP_OID_ECDSA_SHA256);
    cr_assert_eq(rp_crl_parse(v.p, v.len, &c), RP_OK);
    cr_expect(c.unknown_critical, "delta CRLs are not supported");
    v = make_crl_entries(&a, NULL, 0, "\x2a\x03\x04", 0, RP_OID_ECDSA_SHA256);
    cr_assert_eq(rp_crl_parse(v.p, v.len, &c), RP_OK);
    cr_expect_not(c.unknown_critical);
    v = make_crl_entries(&a, NULL, 0, RP_OID_CE_CRL_NUMBER, 1, RP_OID_ECDSA_SHA256);
    cr_assert_eq(rp_crl_parse(v.p, v.len, &c), RP_OK);
    cr_expect_not(c.unknown_critical, "a critical CRL number is understood");
}

Test(crl, rejects_a_signature_algorithm_that_differs_from_the_tbs_one)
{
    struct rp_arena a;
    rp_arena_init(&a, mem, sizeof mem);
    struct rp_crl c;
    struct rp_view v = make_crl_entries(&a, NULL, 0, NULL, 0, RP_OID_ECDSA_SHA384);
    cr_expect_lt(rp_crl_parse(v.p, v.len, &c), 0);
}

Test(crl, truncated_and_bit_flipped_real_crls_never_crash)
{
    size_t len;
    uint8_t *der = rpt_read_file(pki_path("vendor/crl.der"), &len);
    cr_assert_not_null(der);
    struct rp_crl c;
    struct rp_crl_iter it;
    struct rp_view s;
    for (size_t n = 0; n < len; n++)
        cr_expect_neq(rp_crl_parse(der, n, &c), RP_OK, "truncated at %zu", n);
    for (size_t i = 0; i < len * 8; i++) {
        der[i / 8] ^= (uint8_t)(1u << (i % 8));
        if (rp_crl_parse(der, len, &c) == RP_OK) {
            size_t k = 0;
            rp_crl_revoked_begin(&c, &it);
            while (rp_crl_revoked_next(&it, &s) == 1)
                k++;
            cr_expect_eq(k, c.n_revoked);
        }
        der[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    free(der);
}
