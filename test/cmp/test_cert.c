/* Certificate view and Name helpers on certificates made by openssl. */
#include "raproxy/cert.h"
#include "raproxy/err.h"

#include "samples.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#define B(...)      ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})
#define THIRTY_DAYS (30 * 86400)

static uint8_t *cert_der(const char *pem, size_t *n, struct rp_cert *c)
{
    uint8_t *d = sample_cert_der(pem, n);
    cr_assert_not_null(d, "openssl samples missing (%s)", pem);
    int rc = rp_cert_parse(d, *n, c);
    cr_assert_eq(rc, RP_OK, "%s: %s", pem, rp_err_name(rc));
    return d;
}

/* Make a certificate with extra `openssl req -x509` arguments in a temp dir. */
static uint8_t *make_cert(const char *keyalg, const char *args, size_t *n)
{
    char *dir = rpt_tmpdir();
    char script[1024], out[600];
    snprintf(out, sizeof out, "%s/c.der", dir);
    snprintf(script, sizeof script,
             "cd %s && openssl genpkey -algorithm %s -out k.pem >/dev/null 2>&1 && "
             "openssl req -x509 -new -key k.pem -days 1 -outform DER -out c.der %s",
             dir, keyalg, args);
    const char *argv[] = {"bash", "-c", script, NULL};
    cr_assert_eq(rpt_run(argv, 20000, NULL), 0, "openssl: %s", args);
    uint8_t *d = rpt_read_file(out, n);
    rpt_rmdir(dir);
    free(dir);
    return d;
}

Test(cert_parse, reads_a_device_certificate)
{
    size_t n, cn;
    struct rp_cert c, ca;
    uint8_t *d = cert_der("dev.pem", &n, &c);
    uint8_t *cad = cert_der("ca.pem", &cn, &ca);
    char s[256];

    cr_assert_eq(c.raw.len, n);
    cr_assert_eq(c.version, 3);
    cr_assert(c.tbs.p > d && c.tbs.p + c.tbs.len < d + n);
    cr_assert(rp_oid_is(c.sig_alg.oid, RP_OID_ECDSA_SHA256));
    cr_assert_gt(c.sig.bytes.len, 60);
    cr_assert_eq(rp_name_to_string(c.subject, s, sizeof s), 48);
    cr_assert_str_eq(s, "C=DE, O=Vendor, CN=Device 1, serialNumber=SN0001");
    cr_assert(rp_view_eq(c.subject_serial, rp_view_str("SN0001")));
    cr_assert(rp_view_eq(c.subject_cn, rp_view_str("Device 1")));
    cr_assert(rp_name_eq(c.issuer, ca.subject));
    cr_assert_not(rp_name_eq(c.subject, ca.subject));
    cr_assert_eq(c.not_after - c.not_before, THIRTY_DAYS);
    cr_assert(rp_oid_is(c.spki_alg.oid, RP_OID_EC_PUBLIC_KEY));
    cr_assert(rp_oid_is(c.spki_curve, RP_OID_PRIME256V1));
    cr_assert_eq(c.spki_key.bytes.len, 65);
    cr_assert_eq(c.ski.len, 20);
    cr_assert(rp_view_eq(c.aki_key_id, ca.ski), "AKI is the issuer's SKI");
    cr_assert(c.has_basic_constraints);
    cr_assert_not(c.ca);
    cr_assert_eq(c.path_len, -1);
    cr_assert(c.has_key_usage);
    cr_assert_eq(c.key_usage, RP_KU_DIGITAL_SIGNATURE | RP_KU_KEY_AGREEMENT);
    cr_assert_not(c.has_eku);
    cr_assert_not(c.unknown_critical);
    free(d);
    free(cad);
}

Test(cert_parse, reads_ca_constraints)
{
    size_t n;
    struct rp_cert c;
    uint8_t *d = cert_der("ca.pem", &n, &c);
    cr_assert(c.has_basic_constraints);
    cr_assert(c.ca);
    cr_assert_eq(c.path_len, 1);
    cr_assert_eq(c.key_usage, RP_KU_KEY_CERT_SIGN | RP_KU_CRL_SIGN);
    cr_assert(rp_name_eq(c.issuer, c.subject));
    cr_assert_null(c.subject_serial.p);
    free(d);
}

Test(cert_parse, reads_extended_key_usage)
{
    size_t n;
    struct rp_cert c;
    uint8_t *d = cert_der("srv.pem", &n, &c);
    cr_assert(c.has_eku);
    cr_assert_eq(c.n_eku, 2);
    cr_assert(rp_cert_has_eku(&c, RP_OID_VIEW(RP_OID_KP_CMC_RA)));
    cr_assert(rp_cert_has_eku(&c, RP_OID_VIEW(RP_OID_KP_CLIENT_AUTH)));
    cr_assert_not(rp_cert_has_eku(&c, RP_OID_VIEW(RP_OID_KP_SERVER_AUTH)));
    free(d);
}

Test(cert_parse, reads_serial_number_as_encoded)
{
    size_t n;
    struct rp_cert c;
    uint8_t *d = cert_der("dev.pem", &n, &c);
    char path[700], log[700];
    snprintf(path, sizeof path, "%s/pki/dev.pem", samples_dir());
    char *dir = rpt_tmpdir();
    snprintf(log, sizeof log, "%s/serial.txt", dir);
    const char *argv[] = {"openssl", "x509", "-in", path, "-noout", "-serial", NULL};
    cr_assert_eq(rpt_run(argv, 10000, log), 0);
    size_t sl;
    char *text = (char *)rpt_read_file(log, &sl);
    char hex[128] = "";
    size_t h = 0;
    for (size_t i = 0; i < c.serial.len; i++)
        h += (size_t)snprintf(hex + h, sizeof hex - h, "%02X", c.serial.p[i]);
    /* openssl prints without the sign byte */
    const char *want = c.serial.p[0] == 0 ? hex + 2 : hex;
    cr_assert_not_null(strstr(text, want), "%s vs %s", text, want);
    free(text);
    rpt_rmdir(dir);
    free(dir);
    free(d);
}

Test(cert_parse, reads_rsa_and_ed25519_keys)
{
    size_t n;
    struct rp_cert c;
    uint8_t *d = cert_der("rsa.pem", &n, &c);
    cr_assert(rp_oid_is(c.spki_alg.oid, RP_OID_RSA_ENCRYPTION));
    cr_assert_null(c.spki_curve.p);
    cr_assert_gt(c.spki_key.bytes.len, 256);
    free(d);
    d = make_cert("ED25519", "-subj /CN=ed", &n);
    cr_assert_not_null(d);
    cr_assert_eq(rp_cert_parse(d, n, &c), RP_OK);
    cr_assert(rp_oid_is(c.spki_alg.oid, RP_OID_ED25519));
    cr_assert(rp_oid_is(c.sig_alg.oid, RP_OID_ED25519));
    cr_assert_null(c.sig_alg.params.p);
    cr_assert_eq(c.spki_key.bytes.len, 32);
    free(d);
}

Test(cert_parse, flags_unknown_critical_extensions)
{
    size_t n;
    struct rp_cert c;
    uint8_t *d = make_cert("EC -pkeyopt ec_paramgen_curve:P-256",
                           "-subj /CN=x -addext 1.2.3.4=critical,ASN1:UTF8String:hello", &n);
    cr_assert_not_null(d);
    cr_assert_eq(rp_cert_parse(d, n, &c), RP_OK);
    cr_assert(c.unknown_critical);
    free(d);
    d = make_cert("EC -pkeyopt ec_paramgen_curve:P-256",
                  "-subj /CN=x -addext 1.2.3.4=ASN1:UTF8String:hello", &n);
    cr_assert_eq(rp_cert_parse(d, n, &c), RP_OK);
    cr_assert_not(c.unknown_critical);
    free(d);
}

Test(cert_parse, rejects_truncation_trailing_bytes_and_mismatched_algorithms)
{
    size_t n;
    struct rp_cert c;
    uint8_t *d = cert_der("dev.pem", &n, &c);
    for (size_t k = 0; k < n; k++)
        cr_assert_lt(rp_cert_parse(d, k, &c), 0, "truncated at %zu", k);
    uint8_t *b = malloc(n + 1);
    memcpy(b, d, n);
    b[n] = 0;
    cr_assert_eq(rp_cert_parse(b, n + 1, &c), RP_E_DER_TRAILING);
    /* ecdsa-with-SHA256 -> SHA384 in the outer algorithm only */
    cr_assert_eq(rp_cert_parse(b, n, &c), RP_OK);
    size_t o = (size_t)(c.sig_alg.oid.p - b) + c.sig_alg.oid.len - 1;
    b[o] = 0x03;
    struct rp_der_err e = {0};
    cr_assert_eq(rp_cert_parse_err(b, n, &c, &e), RP_E_CMP_CERT);
    cr_assert_not_null(e.expected);
    free(b);
    free(d);
}

Test(name, renders_escapes_and_multi_valued_rdns)
{
    /* SEQUENCE { SET { CN UTF8 "a,b"  O UTF8 "x\n" }  SET { 1.2.3 OCTET STRING } } */
    static const uint8_t name[] = {
        0x30, 0x24, 0x31, 0x17, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x03,
        'a',  ',',  'b',  0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x02, 'x',
        '\n', 0x31, 0x09, 0x30, 0x07, 0x06, 0x02, 0x2a, 0x03, 0x04, 0x01, 0xAB,
    };
    char s[128];
    int len = rp_name_to_string(rp_view_make(name, sizeof name), s, sizeof s);
    cr_assert_str_eq(s, "CN=a\\2cb + O=x\\0a, 1.2.3=#0401ab");
    cr_assert_eq(len, (int)strlen(s));
    char small[8];
    cr_assert_eq(rp_name_to_string(rp_view_make(name, sizeof name), small, sizeof small), len);
    cr_assert_str_eq(small, "CN=a\\2c");
    struct rp_view v;
    cr_assert_eq(rp_name_find(rp_view_make(name, sizeof name), RP_OID_VIEW(RP_OID_AT_O), &v), 1);
    cr_assert(rp_view_eq(v, rp_view_make("x\n", 2)));
    cr_assert_eq(rp_name_find(rp_view_make(name, sizeof name), RP_OID_VIEW(RP_OID_AT_C), &v), 0);
}

Test(name, rejects_malformed_names)
{
    char s[64];
    /* empty RDN SET */
    cr_assert_eq(rp_name_to_string(rp_view_make(B(0x30, 0x02, 0x31, 0x00)), s, sizeof s),
                 RP_E_DER_COUNT);
    cr_assert_str_eq(s, "");
    /* ATV without value */
    cr_assert_lt(rp_name_check(rp_view_make(
                     B(0x30, 0x09, 0x31, 0x07, 0x30, 0x05, 0x06, 0x03, 0x55, 0x04, 0x03))),
                 0);
    /* bad PrintableString */
    cr_assert_eq(rp_name_check(rp_view_make(B(0x30, 0x0c, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55,
                                              0x04, 0x03, 0x13, 0x01, '@'))),
                 RP_E_DER_STRING);
    /* empty Name is valid (empty subject) */
    cr_assert_eq(rp_name_to_string(rp_view_make(B(0x30, 0x00)), s, sizeof s), 0);
    cr_assert_eq(rp_name_check(rp_view_make(B(0x30, 0x00))), RP_OK);
}

/* ---- certificate files (certfile.c) ---- */

static void cert_file_path(char *buf, size_t cap, const char *rel)
{
    cr_assert_not_null(rpt_pki());
    snprintf(buf, cap, "%s/%s", rpt_pki(), rel);
}

Test(cert_file, reads_a_pem_chain_and_a_der_certificate_alike)
{
    char path[600];
    cert_file_path(path, sizeof path, "vendor/dev1.chain.pem");
    struct rp_cert_file f, d;
    cr_assert_eq(rp_cert_file_load(path, 1u << 20, 8, &f), RP_OK);
    cr_assert_eq(f.n, 2);
    char *dir = rpt_tmpdir();
    snprintf(path, sizeof path, "%s/leaf.der", dir);
    cr_assert_eq(rpt_write_file(path, f.ders[0].p, f.ders[0].len), 0);
    cr_assert_eq(rp_cert_file_load(path, 1u << 20, 8, &d), RP_OK);
    cr_assert_eq(d.n, 1);
    cr_assert(rp_view_eq(d.ders[0], f.ders[0]));
    rp_cert_file_free(&d);
    rp_cert_file_free(&f);
    rpt_rmdir(dir);
    free(dir);
}

Test(cert_file, holds_to_its_bounds)
{
    char path[600];
    cert_file_path(path, sizeof path, "vendor/dev1.chain.pem");
    struct rp_cert_file f;
    cr_assert_eq(rp_cert_file_load(path, 1u << 20, 1, &f), RP_E_KEY_LOAD, "two certificates");
    cr_assert_null(f.ders);
    cr_assert_eq(rp_cert_file_load(path, 100, 8, &f), RP_E_IO, "a file over max_bytes");
    cr_assert_eq(rp_cert_file_load("/nonexistent.pem", 1u << 20, 8, &f), RP_E_IO);
    cr_assert_eq(rp_cert_file_load(path, 1u << 20, 2, &f), RP_OK, "the control");
    rp_cert_file_free(&f);
}
