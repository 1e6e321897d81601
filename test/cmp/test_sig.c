/* Signatures: our wolfCrypt layer against keys, signatures and certificates made by the
 * openssl CLI, in both directions. */
#include "raproxy/cert.h"
#include "raproxy/cryptoinfo.h"
#include "raproxy/err.h"
#include "raproxy/guard.h"
#include "raproxy/sig.h"

#include "support.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPENSSL_TIMEOUT_MS 120000
#define SIGNER_THREADS     4
#define SIGNS_PER_THREAD   100

/* Keys shared by every test of this file, made once per build tree (tests run as parallel
 * processes, hence the lock). */
static const char *keys_dir(void)
{
    static char dir[512];
    if (dir[0])
        return dir;
    snprintf(dir, sizeof dir, "%s/test-sig-keys", rpt_bin());
    char script[4096];
    snprintf(script, sizeof script,
             "set -e; mkdir -p %s; cd %s; [ -f done ] && exit 0\n"
             "g() { openssl genpkey \"$@\" 2>/dev/null; }\n"
             "g -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec256.pem\n"
             "g -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec384.pem\n"
             "g -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out ec521.pem\n"
             "g -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem\n"
             "g -algorithm ED25519 -out ed25519.pem\n"
             "g -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1 -out k1.pem\n"
             "g -algorithm ED448 -out ed448.pem\n"
             "openssl ecparam -name secp384r1 -genkey -out ec384-sec1.pem\n"
             "openssl pkey -in rsa.pem -traditional -out rsa-pkcs1.pem\n"
             "openssl pkey -in ec256.pem -aes256 -passout pass:x -out encrypted.pem\n"
             "for k in ec256 ec384 ec521 rsa ed25519 k1 ed448 ec384-sec1; do\n"
             "  openssl pkey -in $k.pem -pubout -out $k.pub.pem\n"
             "  openssl pkey -in $k.pem -pubout -outform DER -out $k.spki\n"
             "done\n"
             "openssl req -x509 -new -key rsa.pem -subj /CN=pss -days 1 -sha384 -sigopt "
             "rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -outform DER -out pss.crt\n"
             "openssl req -x509 -new -key ec521.pem -subj /CN=ec -days 1 -sha512 -outform DER "
             "-out ec521.crt\n"
             "touch done\n",
             dir, dir);
    char lock[600];
    snprintf(lock, sizeof lock, "%s.lock", dir);
    const char *argv[] = {"flock", lock, "sh", "-c", script, NULL};
    cr_assert_eq(rpt_run(argv, OPENSSL_TIMEOUT_MS, NULL), 0, "making test keys in %s", dir);
    return dir;
}

static char *path(const char *name)
{
    static char p[4][600];
    static unsigned i;
    char *out = p[i++ % 4];
    snprintf(out, sizeof p[0], "%s/%s", keys_dir(), name);
    return out;
}

static struct rp_privkey *load(const char *name)
{
    struct rp_privkey *k = NULL;
    int rc = rp_privkey_load_pem(path(name), &k);
    cr_assert_eq(rc, RP_OK, "%s: %s", name, rp_err_name(rc));
    return k;
}

static uint8_t *file(const char *name, size_t *n)
{
    uint8_t *d = rpt_read_file(path(name), n);
    cr_assert_not_null(d, "%s", name);
    return d;
}

static struct rp_pubkey *pub(const char *key)
{
    char name[64];
    size_t n;
    snprintf(name, sizeof name, "%s.spki", key);
    uint8_t *d = file(name, &n);
    struct rp_pubkey *k = NULL;
    int rc = rp_pubkey_from_spki(rp_view_make(d, n), &k);
    cr_assert_eq(rc, RP_OK, "%s: %s", key, rp_err_name(rc));
    free(d);
    return k;
}

static int sh(const char *cmd)
{
    const char *argv[] = {"sh", "-c", cmd, NULL};
    return rpt_run(argv, OPENSSL_TIMEOUT_MS, NULL);
}

static const uint8_t msg[] = "ProtectedPart: header and body of a CMP ir";

/* Every algorithm with the keys it goes with, and the openssl options that make the same
 * signature scheme. */
static const struct combo {
    enum rp_sig_alg alg;
    const char *key;
    const char *dgst; /* openssl dgst options; NULL: Ed25519 (pkeyutl -rawin) */
} combos[] = {
    {RP_SIG_ECDSA_SHA256, "ec256", "-sha256"},
    {RP_SIG_ECDSA_SHA384, "ec384", "-sha384"},
    {RP_SIG_ECDSA_SHA512, "ec521", "-sha512"},
    {RP_SIG_ECDSA_SHA256, "ec384", "-sha256"}, /* hash shorter than the curve */
    {RP_SIG_ECDSA_SHA512, "ec256", "-sha512"}, /* hash longer than the curve: truncated */
    {RP_SIG_ED25519, "ed25519", NULL},
    {RP_SIG_RSA_SHA256, "rsa", "-sha256"},
    {RP_SIG_RSA_SHA384, "rsa", "-sha384"},
    {RP_SIG_RSA_SHA512, "rsa", "-sha512"},
    {RP_SIG_RSA_PSS_SHA256, "rsa",
     "-sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest"},
    {RP_SIG_RSA_PSS_SHA384, "rsa",
     "-sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest"},
    {RP_SIG_RSA_PSS_SHA512, "rsa",
     "-sha512 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest"},
};
#define NCOMBOS (sizeof combos / sizeof combos[0])

Test(sig, sign_then_verify_round_trips_for_every_algorithm)
{
    for (size_t i = 0; i < NCOMBOS; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.pem", combos[i].key);
        struct rp_privkey *sk = load(name);
        struct rp_pubkey *pk = pub(combos[i].key);
        uint8_t sig[RP_SIG_MAX];
        size_t n = 0;
        int rc = rp_privkey_sign(sk, combos[i].alg, msg, sizeof msg, sig, sizeof sig, &n);
        cr_assert_eq(rc, RP_OK, "%s: %s", rp_sig_alg_name(combos[i].alg), rp_err_name(rc));
        cr_expect_eq(rp_sig_verify(combos[i].alg, pk, msg, sizeof msg, sig, n), RP_OK, "%s/%s",
                     rp_sig_alg_name(combos[i].alg), combos[i].key);

        uint8_t bad[sizeof msg];
        memcpy(bad, msg, sizeof msg);
        bad[3] ^= 0x01;
        cr_expect_eq(rp_sig_verify(combos[i].alg, pk, bad, sizeof bad, sig, n),
                     RP_E_BAD_MESSAGE_CHECK, "tampered data, %s", rp_sig_alg_name(combos[i].alg));
        sig[n / 2] ^= 0x40;
        cr_expect_eq(rp_sig_verify(combos[i].alg, pk, msg, sizeof msg, sig, n),
                     RP_E_BAD_MESSAGE_CHECK, "tampered sig, %s", rp_sig_alg_name(combos[i].alg));
        sig[n / 2] ^= 0x40;
        cr_expect_eq(rp_sig_verify(combos[i].alg, pk, msg, sizeof msg, sig, n - 1),
                     RP_E_BAD_MESSAGE_CHECK, "truncated sig, %s", rp_sig_alg_name(combos[i].alg));
        rp_pubkey_free(pk);
        rp_privkey_free(sk);
    }
}

Test(sig, verifies_signatures_made_by_openssl)
{
    char *dir = rpt_tmpdir();
    char data[600], cmd[2048];
    snprintf(data, sizeof data, "%s/data", dir);
    cr_assert_eq(rpt_write_file(data, msg, sizeof msg), 0);
    for (size_t i = 0; i < NCOMBOS; i++) {
        const struct combo *c = &combos[i];
        char name[64];
        snprintf(name, sizeof name, "%s.pem", c->key);
        if (c->dgst)
            snprintf(cmd, sizeof cmd, "openssl dgst %s -sign %s -out %s/sig %s", c->dgst,
                     path(name), dir, data);
        else
            snprintf(cmd, sizeof cmd, "openssl pkeyutl -sign -rawin -inkey %s -in %s -out %s/sig",
                     path(name), data, dir);
        cr_assert_eq(sh(cmd), 0, "%s", cmd);

        char sigpath[600];
        size_t n;
        snprintf(sigpath, sizeof sigpath, "%s/sig", dir);
        uint8_t *sig = rpt_read_file(sigpath, &n);
        cr_assert_not_null(sig);
        struct rp_pubkey *pk = pub(c->key);
        cr_expect_eq(rp_sig_verify(c->alg, pk, msg, sizeof msg, sig, n), RP_OK,
                     "openssl's %s with %s", rp_sig_alg_name(c->alg), c->key);
        rp_pubkey_free(pk);
        free(sig);
    }
    rpt_rmdir(dir);
    free(dir);
}

Test(sig, openssl_accepts_our_signatures)
{
    char *dir = rpt_tmpdir();
    char data[600], sigpath[600], cmd[2048];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(sigpath, sizeof sigpath, "%s/sig", dir);
    cr_assert_eq(rpt_write_file(data, msg, sizeof msg), 0);
    for (size_t i = 0; i < NCOMBOS; i++) {
        const struct combo *c = &combos[i];
        char name[64], pubname[64];
        snprintf(name, sizeof name, "%s.pem", c->key);
        snprintf(pubname, sizeof pubname, "%s.pub.pem", c->key);
        struct rp_privkey *sk = load(name);
        uint8_t sig[RP_SIG_MAX];
        size_t n = 0;
        cr_assert_eq(rp_privkey_sign(sk, c->alg, msg, sizeof msg, sig, sizeof sig, &n), RP_OK);
        rp_privkey_free(sk);
        cr_assert_eq(rpt_write_file(sigpath, sig, n), 0);
        if (c->dgst)
            snprintf(cmd, sizeof cmd, "openssl dgst %s -verify %s -signature %s %s", c->dgst,
                     path(pubname), sigpath, data);
        else
            snprintf(cmd, sizeof cmd,
                     "openssl pkeyutl -verify -pubin -inkey %s -rawin -in %s -sigfile %s",
                     path(pubname), data, sigpath);
        cr_expect_eq(sh(cmd), 0, "openssl rejects our %s with %s", rp_sig_alg_name(c->alg), c->key);
    }
    rpt_rmdir(dir);
    free(dir);
}

Test(sig, algorithm_that_does_not_fit_the_key_is_bad_alg)
{
    struct rp_privkey *ec = load("ec256.pem");
    struct rp_privkey *rsa = load("rsa.pem");
    struct rp_pubkey *ecp = pub("ec256"), *rsap = pub("rsa"), *edp = pub("ed25519");
    uint8_t sig[RP_SIG_MAX];
    size_t n;
    cr_expect_eq(rp_privkey_sign(ec, RP_SIG_RSA_SHA256, msg, sizeof msg, sig, sizeof sig, &n),
                 RP_E_BAD_ALG);
    cr_expect_eq(rp_privkey_sign(rsa, RP_SIG_ECDSA_SHA256, msg, sizeof msg, sig, sizeof sig, &n),
                 RP_E_BAD_ALG);
    cr_expect_eq(rp_privkey_sign(rsa, RP_SIG_ED25519, msg, sizeof msg, sig, sizeof sig, &n),
                 RP_E_BAD_ALG);
    cr_assert_eq(rp_privkey_sign(ec, RP_SIG_ECDSA_SHA256, msg, sizeof msg, sig, sizeof sig, &n),
                 RP_OK);
    cr_expect_eq(rp_sig_verify(RP_SIG_RSA_SHA256, ecp, msg, sizeof msg, sig, n), RP_E_BAD_ALG);
    cr_expect_eq(rp_sig_verify(RP_SIG_RSA_PSS_SHA256, ecp, msg, sizeof msg, sig, n), RP_E_BAD_ALG);
    cr_expect_eq(rp_sig_verify(RP_SIG_ED25519, ecp, msg, sizeof msg, sig, n), RP_E_BAD_ALG);
    cr_expect_eq(rp_sig_verify(RP_SIG_ECDSA_SHA256, rsap, msg, sizeof msg, sig, n), RP_E_BAD_ALG);
    cr_expect_eq(rp_sig_verify(RP_SIG_ECDSA_SHA256, edp, msg, sizeof msg, sig, n), RP_E_BAD_ALG);
    cr_expect_eq(rp_sig_verify(RP_SIG_ALG_COUNT, ecp, msg, sizeof msg, sig, n), RP_E_BAD_ALG);
    /* A PKCS#1 signature is not a PSS one (same key, other padding). */
    cr_assert_eq(rp_privkey_sign(rsa, RP_SIG_RSA_SHA256, msg, sizeof msg, sig, sizeof sig, &n),
                 RP_OK);
    cr_expect_eq(rp_sig_verify(RP_SIG_RSA_PSS_SHA256, rsap, msg, sizeof msg, sig, n),
                 RP_E_BAD_MESSAGE_CHECK);
    cr_expect_eq(rp_sig_verify(RP_SIG_RSA_SHA384, rsap, msg, sizeof msg, sig, n),
                 RP_E_BAD_MESSAGE_CHECK);
    /* Too small a buffer is refused up front, whatever the signature would have been. */
    cr_expect_eq(rp_privkey_sign(rsa, RP_SIG_RSA_SHA256, msg, sizeof msg, sig, 255, &n),
                 RP_E_INVAL);
    rp_pubkey_free(ecp);
    rp_pubkey_free(rsap);
    rp_pubkey_free(edp);
    rp_privkey_free(ec);
    rp_privkey_free(rsa);
}

Test(sig, ecdsa_signature_in_non_der_form_is_refused)
{
    struct rp_privkey *ec = load("ec256.pem");
    struct rp_pubkey *ecp = pub("ec256");
    uint8_t sig[RP_SIG_MAX], ber[RP_SIG_MAX + 2];
    size_t n;
    cr_assert_eq(rp_privkey_sign(ec, RP_SIG_ECDSA_SHA256, msg, sizeof msg, sig, sizeof sig, &n),
                 RP_OK);
    cr_assert_lt(n, 128u);
    /* Same SEQUENCE with a long-form length (0x81 nn): valid BER, not DER. */
    ber[0] = 0x30;
    ber[1] = 0x81;
    ber[2] = sig[1];
    memcpy(ber + 3, sig + 2, n - 2);
    cr_expect_eq(rp_sig_verify(RP_SIG_ECDSA_SHA256, ecp, msg, sizeof msg, ber, n + 1),
                 RP_E_BAD_MESSAGE_CHECK);
    cr_expect_eq(rp_sig_verify(RP_SIG_ECDSA_SHA256, ecp, msg, sizeof msg, sig, n), RP_OK);
    rp_pubkey_free(ecp);
    rp_privkey_free(ec);
}

#define B(...) rp_view_make((const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

Test(sig_alg, canonical_encodings_parse_back_to_their_algorithm)
{
    for (int a = 0; a < RP_SIG_ALG_COUNT; a++) {
        enum rp_sig_alg got;
        struct rp_view der = rp_sig_alg_der((enum rp_sig_alg)a);
        cr_assert(rp_view_present(der));
        cr_expect_eq(rp_sig_alg_parse(der, &got), RP_OK, "%s", rp_sig_alg_name(a));
        cr_expect_eq(got, a);
    }
}

Test(sig_alg, refuses_weak_unknown_and_non_canonical_identifiers)
{
    enum rp_sig_alg a;
    /* sha1WithRSAEncryption, NULL params */
    cr_expect_eq(rp_sig_alg_parse(B(0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                    0x01, 0x01, 0x05, 0x05, 0x00),
                                  &a),
                 RP_E_BAD_ALG);
    /* md5WithRSAEncryption */
    cr_expect_eq(rp_sig_alg_parse(B(0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                    0x01, 0x01, 0x04, 0x05, 0x00),
                                  &a),
                 RP_E_BAD_ALG);
    /* ecdsa-with-SHA1 */
    cr_expect_eq(
        rp_sig_alg_parse(B(0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01), &a),
        RP_E_BAD_ALG);
    /* ecdsa-with-SHA256 with NULL parameters (RFC 5758 §3.2: MUST be absent) */
    cr_expect_eq(rp_sig_alg_parse(B(0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04,
                                    0x03, 0x02, 0x05, 0x00),
                                  &a),
                 RP_E_BAD_ALG);
    /* RSASSA-PSS with all-default (SHA-1) parameters */
    cr_expect_eq(rp_sig_alg_parse(B(0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                    0x01, 0x01, 0x0a, 0x30, 0x00),
                                  &a),
                 RP_E_BAD_ALG);
    /* RSASSA-PSS without parameters */
    cr_expect_eq(
        rp_sig_alg_parse(
            B(0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a), &a),
        RP_E_BAD_ALG);
    /* Ed448: valid, not supported */
    cr_expect_eq(rp_sig_alg_parse(B(0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71), &a), RP_E_BAD_ALG);
    /* trailing byte after a good identifier, and a truncated one */
    cr_expect_eq(rp_sig_alg_parse(B(0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x00), &a),
                 RP_E_BAD_ALG);
    cr_expect_eq(rp_sig_alg_parse(B(0x30, 0x05, 0x06, 0x03, 0x2b, 0x65), &a), RP_E_BAD_ALG);
    cr_expect_eq(rp_sig_alg_parse(RP_VIEW_NULL, &a), RP_E_BAD_ALG);

    /* PSS-SHA256 with salt 20 instead of 32 */
    struct rp_view pss = rp_sig_alg_der(RP_SIG_RSA_PSS_SHA256);
    uint8_t buf[128];
    memcpy(buf, pss.p, pss.len);
    cr_assert_eq(buf[pss.len - 1], 0x20);
    buf[pss.len - 1] = 20;
    cr_expect_eq(rp_sig_alg_parse(rp_view_make(buf, pss.len), &a), RP_E_BAD_ALG);
    /* PSS whose MGF1 hash differs from the message hash (SHA-256 vs SHA-384) */
    memcpy(buf, pss.p, pss.len);
    cr_assert_eq(buf[59], 0x01); /* last byte of the MGF1 hash OID */
    buf[59] = 0x02;
    cr_expect_eq(rp_sig_alg_parse(rp_view_make(buf, pss.len), &a), RP_E_BAD_ALG);
}

Test(sig_alg, pkcs1_with_absent_null_parameters_is_accepted)
{
    enum rp_sig_alg a;
    cr_expect_eq(
        rp_sig_alg_parse(
            B(0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c), &a),
        RP_OK);
    cr_expect_eq(a, RP_SIG_RSA_SHA384);
}

Test(sig_alg, names_and_policy_names)
{
    struct rp_pubkey *p256 = pub("ec256"), *p521 = pub("ec521"), *rsa = pub("rsa"),
                     *ed = pub("ed25519");
    cr_expect_str_eq(rp_sig_alg_name(RP_SIG_RSA_PSS_SHA384), "rsa-pss-sha384");
    cr_expect_str_eq(rp_sig_alg_name(RP_SIG_ECDSA_SHA256), "ecdsa-sha256");
    cr_expect_str_eq(rp_sig_policy_name(RP_SIG_ECDSA_SHA512, p256), "ecdsa-p256");
    cr_expect_str_eq(rp_sig_policy_name(RP_SIG_ECDSA_SHA256, p521), "ecdsa-p521");
    cr_expect_str_eq(rp_sig_policy_name(RP_SIG_RSA_SHA512, rsa), "rsa-pkcs1");
    cr_expect_str_eq(rp_sig_policy_name(RP_SIG_RSA_PSS_SHA256, rsa), "rsa-pss");
    cr_expect_str_eq(rp_sig_policy_name(RP_SIG_ED25519, ed), "ed25519");
    cr_expect_null(rp_sig_policy_name(RP_SIG_RSA_SHA256, p256));
    rp_pubkey_free(p256);
    rp_pubkey_free(p521);
    rp_pubkey_free(rsa);
    rp_pubkey_free(ed);
}

Test(sig_keys, loads_every_pem_form_openssl_writes)
{
    static const struct {
        const char *file;
        enum rp_key_type type;
        enum rp_sig_alg def;
        const char *spki;
    } cases[] = {
        {"ec256.pem", RP_KEY_EC, RP_SIG_ECDSA_SHA256, "ec256"},
        {"ec384.pem", RP_KEY_EC, RP_SIG_ECDSA_SHA384, "ec384"},
        {"ec521.pem", RP_KEY_EC, RP_SIG_ECDSA_SHA512, "ec521"},
        {"ec384-sec1.pem", RP_KEY_EC, RP_SIG_ECDSA_SHA384, "ec384-sec1"},
        {"rsa.pem", RP_KEY_RSA, RP_SIG_RSA_SHA256, "rsa"},
        {"rsa-pkcs1.pem", RP_KEY_RSA, RP_SIG_RSA_SHA256, "rsa"},
        {"ed25519.pem", RP_KEY_ED25519, RP_SIG_ED25519, "ed25519"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rp_privkey *k = load(cases[i].file);
        cr_expect_eq(rp_privkey_type(k), cases[i].type, "%s", cases[i].file);
        cr_expect_eq(rp_privkey_default_alg(k), cases[i].def, "%s", cases[i].file);
        char name[64];
        size_t n;
        snprintf(name, sizeof name, "%s.spki", cases[i].spki);
        uint8_t *spki = file(name, &n);
        cr_expect_eq(rp_privkey_matches_spki(k, rp_view_make(spki, n)), 1, "%s", cases[i].file);
        free(spki);
        /* and not someone else's key */
        spki =
            file(cases[i].type == RP_KEY_EC && strcmp(cases[i].spki, "ec256") != 0 ? "ec256.spki"
                                                                                   : "ec384.spki",
                 &n);
        cr_expect_eq(rp_privkey_matches_spki(k, rp_view_make(spki, n)), 0, "%s", cases[i].file);
        free(spki);
        rp_privkey_free(k);
    }
}

Test(sig_keys, refuses_unsupported_encrypted_and_missing_keys)
{
    struct rp_privkey *k = (struct rp_privkey *)1;
    cr_expect_eq(rp_privkey_load_pem(path("k1.pem"), &k), RP_E_BAD_ALG); /* secp256k1 */
    cr_expect_null(k);
    cr_expect_eq(rp_privkey_load_pem(path("ed448.pem"), &k), RP_E_BAD_ALG);
    cr_expect_eq(rp_privkey_load_pem(path("encrypted.pem"), &k), RP_E_KEY_LOAD);
    cr_expect_eq(rp_privkey_load_pem(path("no-such-key.pem"), &k), RP_E_KEY_LOAD);
    cr_expect_eq(rp_privkey_load_pem(path("ec256.pub.pem"), &k), RP_E_KEY_LOAD);
    static const char junk[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    cr_expect_eq(rp_privkey_from_pem(junk, sizeof junk - 1, &k), RP_E_KEY_LOAD);

    struct rp_pubkey *p = (struct rp_pubkey *)1;
    size_t n;
    uint8_t *d = file("k1.spki", &n);
    cr_expect_eq(rp_pubkey_from_spki(rp_view_make(d, n), &p), RP_E_BAD_ALG);
    cr_expect_null(p);
    free(d);
    d = file("ed448.spki", &n);
    cr_expect_eq(rp_pubkey_from_spki(rp_view_make(d, n), &p), RP_E_BAD_ALG);
    cr_expect_lt(rp_pubkey_from_spki(rp_view_make(d, n - 1), &p), 0);
    free(d);
}

Test(sig_keys, public_key_accessors)
{
    struct rp_pubkey *p384 = pub("ec384"), *rsa = pub("rsa"), *ed = pub("ed25519");
    cr_expect_eq(rp_pubkey_type(p384), RP_KEY_EC);
    cr_expect_eq(rp_pubkey_curve(p384), RP_EC_P384);
    cr_expect_eq(rp_pubkey_bits(p384), 384u);
    cr_expect_eq(rp_pubkey_type(rsa), RP_KEY_RSA);
    cr_expect_eq(rp_pubkey_curve(rsa), RP_EC_NONE);
    cr_expect_eq(rp_pubkey_bits(rsa), 2048u);
    cr_expect_eq(rp_pubkey_type(ed), RP_KEY_ED25519);
    rp_pubkey_free(p384);
    rp_pubkey_free(rsa);
    rp_pubkey_free(ed);
}

/* The certificates' own signatures, made by openssl, checked through the cert view. */
Test(sig, verifies_certificate_signatures_made_by_openssl)
{
    static const struct {
        const char *crt, *key;
        enum rp_sig_alg alg;
    } cases[] = {{"pss.crt", "rsa.pem", RP_SIG_RSA_PSS_SHA384},
                 {"ec521.crt", "ec521.pem", RP_SIG_ECDSA_SHA512}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        uint8_t *der = file(cases[i].crt, &n);
        struct rp_cert c;
        cr_assert_eq(rp_cert_parse(der, n, &c), RP_OK);
        enum rp_sig_alg a;
        cr_assert_eq(rp_sig_alg_parse(c.sig_alg.raw, &a), RP_OK, "%s", cases[i].crt);
        cr_expect_eq(a, cases[i].alg);
        cr_expect(rp_view_eq(rp_sig_alg_der(a), c.sig_alg.raw), "canonical DER = openssl's");
        struct rp_pubkey *pk;
        cr_assert_eq(rp_pubkey_from_spki(c.spki, &pk), RP_OK);
        cr_expect_eq(rp_sig_verify(a, pk, c.tbs.p, c.tbs.len, c.sig.bytes.p, c.sig.bytes.len),
                     RP_OK, "%s", cases[i].crt);
        struct rp_privkey *sk = load(cases[i].key);
        cr_expect_eq(rp_privkey_matches_spki(sk, c.spki), 1);
        rp_privkey_free(sk);
        rp_pubkey_free(pk);
        free(der);
    }
}

struct signer {
    struct rp_privkey *sk;
    struct rp_pubkey *pk;
    enum rp_sig_alg alg;
    int good;
};

static void *sign_many(void *arg)
{
    struct signer *s = arg;
    for (int i = 0; i < SIGNS_PER_THREAD; i++) {
        uint8_t data[16], sig[RP_SIG_MAX];
        size_t n;
        memset(data, i, sizeof data);
        if (rp_privkey_sign(s->sk, s->alg, data, sizeof data, sig, sizeof sig, &n) == RP_OK &&
            rp_sig_verify(s->alg, s->pk, data, sizeof data, sig, n) == RP_OK)
            s->good++;
    }
    return NULL;
}

Test(sig_keys, one_key_signs_from_several_threads_at_once)
{
    const char *keys[] = {"ec256", "ed25519", "rsa"};
    const enum rp_sig_alg alg[] = {RP_SIG_ECDSA_SHA256, RP_SIG_ED25519, RP_SIG_RSA_PSS_SHA256};
    for (size_t k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s.pem", keys[k]);
        struct rp_privkey *sk = load(name);
        struct rp_pubkey *pk = pub(keys[k]); /* shared by the verifiers too */
        pthread_t th[SIGNER_THREADS];
        struct signer s[SIGNER_THREADS];
        for (int i = 0; i < SIGNER_THREADS; i++) {
            s[i] = (struct signer){sk, pk, alg[k], 0};
            cr_assert_eq(pthread_create(&th[i], NULL, sign_many, &s[i]), 0);
        }
        for (int i = 0; i < SIGNER_THREADS; i++) {
            pthread_join(th[i], NULL);
            cr_expect_eq(s[i].good, SIGNS_PER_THREAD, "%s thread %d", keys[k], i);
        }
        rp_pubkey_free(pk);
        rp_privkey_free(sk);
    }
}

Test(sig_guard, counts_crypto_on_a_loop_thread_only)
{
    struct rp_privkey *sk = load("ec256.pem");
    uint8_t sig[RP_SIG_MAX];
    size_t n;
    unsigned long before = rp_guard_violations();
    cr_assert_eq(rp_privkey_sign(sk, RP_SIG_ECDSA_SHA256, msg, sizeof msg, sig, sizeof sig, &n),
                 RP_OK);
    cr_expect_eq(rp_guard_violations(), before, "unmarked thread");
    rp_guard_mark_worker_thread();
    cr_assert_eq(rp_privkey_sign(sk, RP_SIG_ECDSA_SHA256, msg, sizeof msg, sig, sizeof sig, &n),
                 RP_OK);
    cr_expect_eq(rp_guard_violations(), before, "worker thread");
    rp_guard_mark_loop_thread();
    cr_assert_eq(rp_privkey_sign(sk, RP_SIG_ECDSA_SHA256, msg, sizeof msg, sig, sizeof sig, &n),
                 RP_OK);
    struct rp_pubkey *pk = pub("ec256");
    cr_expect_eq(rp_sig_verify(RP_SIG_ECDSA_SHA256, pk, msg, sizeof msg, sig, n), RP_OK);
    cr_expect_eq(rp_guard_violations(), before + 2, "loop thread: sign and verify counted");
    rp_pubkey_free(pk);
    rp_privkey_free(sk);
}

Test(cryptoinfo, names_version_and_fast_paths)
{
    const char *s = rp_cryptoinfo();
    cr_expect(strstr(s, "wolfSSL 5.") != NULL, "%s", s);
    cr_expect(strstr(s, "SP math o") != NULL, "%s", s);
    cr_expect(strstr(s, "AES-NI o") != NULL, "%s", s);
    cr_expect(strstr(s, "x86-64 asm o") != NULL, "%s", s);
}
