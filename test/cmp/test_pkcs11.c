/* Private keys in a real PKCS#11 token (SoftHSM2 in a per-test directory, never the
 * system's): RFC 7512 URIs, signatures made in the token through wolfSSL's PKCS#11 support
 * (ECDSA P-256 and P-384, RSA PKCS#1 v1.5 and PSS) that verify with the key's public half,
 * clear errors at load, and a token taken away while signing: fail fast, then reconnect
 * without a restart once it is back. */
#include "fixtures.h"
#include "support.h"

#include "raproxy/err.h"
#include "raproxy/pkcs11.h"
#include "raproxy/sig.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PIN          "4711"
#define TOKEN        "raproxy"
#define RECONNECT_MS 20000 /* bound of the wait for the reconnect thread */
#define THREADS      4
#define PER_THREAD   50

static char *g_dir;

static void setup(void)
{
    g_dir = rpt_tmpdir();
    cr_assert_not_null(g_dir);
    cr_assert_eq(rpt_softhsm_init(g_dir, TOKEN, PIN), 0, "softhsm2-util --init-token failed");
}

static void teardown(void)
{
    rp_p11_shutdown();
    rpt_rmdir(g_dir);
    free(g_dir);
}

TestSuite(pkcs11, .init = setup, .fini = teardown, .timeout = 120);

static const struct rp_p11_opts opts = {.module = RPT_SOFTHSM_MODULE, .pin = PIN};

/* A key made with openssl (kind: "ec256", "ec384", "rsa"), imported into the token; its
 * public half as DER SubjectPublicKeyInfo. */
static uint8_t *import_key(const char *kind, const char *label, const char *id, size_t *spki_len)
{
    char key[600], pub[600];
    snprintf(key, sizeof key, "%s/%s.key", g_dir, label);
    snprintf(pub, sizeof pub, "%s/%s.pub.der", g_dir, label);
    const char *ec256[] = {"openssl", "genpkey",  "-algorithm",
                           "EC",      "-pkeyopt", "ec_paramgen_curve:P-256",
                           "-out",    key,        NULL};
    const char *ec384[] = {"openssl", "genpkey",  "-algorithm",
                           "EC",      "-pkeyopt", "ec_paramgen_curve:P-384",
                           "-out",    key,        NULL};
    const char *rsa[] = {"openssl", "genpkey",  "-algorithm",
                         "RSA",     "-pkeyopt", "rsa_keygen_bits:2048",
                         "-out",    key,        NULL};
    const char *const *gen = strcmp(kind, "rsa") == 0     ? rsa
                             : strcmp(kind, "ec384") == 0 ? ec384
                                                          : ec256;
    cr_assert_eq(rpt_run(gen, 60000, NULL), 0);
    const char *out[] = {"openssl",  "pkey", "-in",  key, "-pubout",
                         "-outform", "DER",  "-out", pub, NULL};
    cr_assert_eq(rpt_run(out, 20000, NULL), 0);
    cr_assert_eq(rpt_softhsm_import(g_dir, TOKEN, PIN, key, label, id), 0);
    return rpt_read_file(pub, spki_len);
}

static void sign_and_verify(struct rp_privkey *k, enum rp_sig_alg a, const uint8_t *spki,
                            size_t spki_len)
{
    static const uint8_t msg[] = "ProtectedPart of a CMP message";
    uint8_t sig[RP_SIG_MAX];
    size_t len = 0;
    cr_assert_eq(rp_privkey_sign(k, a, msg, sizeof msg, sig, sizeof sig, &len), RP_OK, "%s",
                 rp_sig_alg_name(a));
    struct rp_pubkey *pk;
    cr_assert_eq(rp_pubkey_from_spki(rp_view_make(spki, spki_len), &pk), RP_OK);
    cr_expect_eq(rp_sig_verify(a, pk, msg, sizeof msg, sig, len), RP_OK, "%s does not verify",
                 rp_sig_alg_name(a));
    sig[len / 2] ^= 1; /* control: a flipped bit must not verify */
    cr_expect_neq(rp_sig_verify(a, pk, msg, sizeof msg, sig, len), RP_OK);
    rp_pubkey_free(pk);
}

Test(pkcs11, uri_parses_token_object_id_and_pin_source)
{
    struct rp_p11_uri u;
    const char *why = NULL;
    cr_assert_eq(rp_p11_uri_parse("pkcs11:token=My%20Token;object=ra-key;id=%01%02;type=private"
                                  "?pin-source=file:/run/pin&module-path=/usr/lib/x.so",
                                  &u, &why),
                 RP_OK, "%s", why);
    cr_expect_str_eq(u.token, "My Token");
    cr_expect_str_eq(u.object, "ra-key");
    cr_expect_eq(u.id_len, 2);
    cr_expect_eq(u.id[0], 1);
    cr_expect_eq(u.id[1], 2);
    cr_expect_str_eq(u.pin_source, "file:/run/pin");
    cr_expect_str_eq(u.module_path, "/usr/lib/x.so");
    cr_expect(rp_p11_is_uri("PKCS11:object=a"));
    cr_expect(!rp_p11_is_uri("/etc/raproxy/ra.key"));
    cr_assert_eq(rp_p11_uri_parse("pkcs11:slot-id=5;serial=abc;id=%ff", &u, &why), RP_OK);
    cr_expect(u.has_slot_id);
    cr_expect_eq(u.slot_id, 5);
    cr_assert_eq(rp_p11_uri_parse("pkcs11:model=M%3b1;manufacturer=Acme;slot-description=s d;"
                                  "slot-manufacturer=SM;object=k?pin-value=1234",
                                  &u, &why),
                 RP_OK, "%s", why);
    cr_expect_str_eq(u.model, "M;1");
    cr_expect_str_eq(u.manufacturer, "Acme");
    cr_expect_str_eq(u.slot_description, "s d");
    cr_expect_str_eq(u.slot_manufacturer, "SM");
    cr_expect_str_eq(u.pin_value, "1234");
}

Test(pkcs11, uri_refuses_what_it_cannot_honour)
{
    static const char *const bad[] = {
        "pkcs11:token=a",                                   /* which key? */
        "pkcs11:object=a;colour=blue",                      /* unknown attribute */
        "pkcs11:object=a;type=cert",                        /* not a private key */
        "pkcs11:object=a;object=b",                         /* twice */
        "pkcs11:object=a%2",                                /* truncated escape */
        "pkcs11:object=a%zz",                               /* not hex */
        "pkcs11:object=%00x",                               /* NUL in a label */
        "pkcs11:object=0123456789012345678901234567890123", /* label over 32 bytes */
        "pkcs11:object=a?pin-value=1&pin-source=/x",        /* both */
        "pkcs11:object=a;slot-id=x",
        "pkcs11:object=a?module-name=softhsm2",
        "pkcs11:object=a;library-version=1",
        "pkcs11:object=a?token=x",     /* a path attribute in the query */
        "pkcs11:object=a;pin-value=1", /* a query attribute in the path */
        "pkcs11:object=a;token=012345678901234567890123456789012", /* token label over 32 */
        "pkcs11:object",
        "file:/etc/ra.key",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct rp_p11_uri u;
        const char *why = NULL;
        cr_expect_eq(rp_p11_uri_parse(bad[i], &u, &why), RP_E_CONFIG, "accepted %s", bad[i]);
        cr_expect_not_null(why, "%s: no reason", bad[i]);
    }
}

Test(pkcs11, ecdsa_p256_and_p384_sign_in_the_token)
{
    size_t l256, l384;
    uint8_t *s256 = import_key("ec256", "k256", "0256", &l256);
    uint8_t *s384 = import_key("ec384", "k384", "0384", &l384);
    struct rp_privkey *k;
    char why[256];
    cr_assert_eq(rp_privkey_load("pkcs11:token=raproxy;object=k256", &opts, &k, why, sizeof why),
                 RP_OK, "%s", why);
    cr_expect_eq(rp_privkey_type(k), RP_KEY_EC);
    cr_expect_eq(rp_privkey_default_alg(k), RP_SIG_ECDSA_SHA256);
    sign_and_verify(k, RP_SIG_ECDSA_SHA256, s256, l256);
    cr_expect_eq(rp_privkey_matches_spki(k, rp_view_make(s256, l256)), 1);
    cr_expect_eq(rp_privkey_matches_spki(k, rp_view_make(s384, l384)), 0, "another key");
    struct rp_privkey_device dev;
    cr_expect(rp_privkey_device(k, &dev));
    cr_expect_str_eq(dev.label, "k256");
    rp_privkey_free(k);

    /* found by CKA_ID alone */
    cr_assert_eq(rp_privkey_load("pkcs11:token=raproxy;id=%03%84", &opts, &k, why, sizeof why),
                 RP_OK, "%s", why);
    cr_expect_eq(rp_privkey_default_alg(k), RP_SIG_ECDSA_SHA384);
    sign_and_verify(k, RP_SIG_ECDSA_SHA384, s384, l384);
    cr_expect_eq(rp_privkey_matches_spki(k, rp_view_make(s384, l384)), 1);
    rp_privkey_free(k);
    free(s256);
    free(s384);
}

Test(pkcs11, rsa_pkcs1_and_pss_sign_in_the_token)
{
    size_t len;
    uint8_t *spki = import_key("rsa", "krsa", "0a", &len);
    struct rp_privkey *k;
    char why[256];
    cr_assert_eq(rp_privkey_load("pkcs11:object=krsa;type=private", &opts, &k, why, sizeof why),
                 RP_OK, "%s", why);
    cr_expect_eq(rp_privkey_type(k), RP_KEY_RSA);
    sign_and_verify(k, RP_SIG_RSA_SHA256, spki, len);
    sign_and_verify(k, RP_SIG_RSA_PSS_SHA256, spki, len);
    sign_and_verify(k, RP_SIG_RSA_PSS_SHA384, spki, len);
    cr_expect_eq(rp_privkey_matches_spki(k, rp_view_make(spki, len)), 1);
    rp_privkey_free(k);
    free(spki);
}

Test(pkcs11, a_key_generated_in_the_token_signs)
{
    char pub[600];
    snprintf(pub, sizeof pub, "%s/gen.pub.der", g_dir);
    cr_assert_eq(rpt_softhsm_keygen(g_dir, TOKEN, PIN, "EC:prime256v1", "gen", "07", pub), 0);
    size_t len;
    uint8_t *spki = rpt_read_file(pub, &len);
    cr_assert_not_null(spki);
    struct rp_privkey *k;
    char why[256];
    cr_assert_eq(rp_privkey_load("pkcs11:token=raproxy;object=gen", &opts, &k, why, sizeof why),
                 RP_OK, "%s", why);
    sign_and_verify(k, RP_SIG_ECDSA_SHA256, spki, len);
    rp_privkey_free(k);
    free(spki);
}

static void expect_load_error(const char *uri, const struct rp_p11_opts *o, const char *needle)
{
    struct rp_privkey *k = NULL;
    char why[256] = "";
    cr_expect_eq(rp_privkey_load(uri, o, &k, why, sizeof why), RP_E_KEY_LOAD, "%s loaded", uri);
    cr_expect_null(k);
    cr_expect(strstr(why, needle), "%s: expected '%s' in '%s'", uri, needle, why);
}

Test(pkcs11, load_errors_say_what_is_wrong)
{
    size_t len;
    free(import_key("ec256", "k1", "01", &len));
    free(import_key("ec256", "dup", "02", &len));
    free(import_key("ec256", "dup", "03", &len));
    struct rp_p11_opts wrong_pin = opts, no_module = opts, bad_module = opts;
    wrong_pin.pin = "0000";
    no_module.module = NULL;
    bad_module.module = "/nonexistent/libpkcs11.so";
    expect_load_error("pkcs11:token=raproxy;object=k1", &wrong_pin, "CKR_PIN_INCORRECT");
    expect_load_error("pkcs11:token=raproxy;object=k1", &no_module, "no PKCS#11 module");
    expect_load_error("pkcs11:token=raproxy;object=k1", &bad_module, "cannot load");
    expect_load_error("pkcs11:token=other;object=k1", &opts, "no token matches");
    expect_load_error("pkcs11:token=other;object=k1", &opts, "'raproxy'");
    expect_load_error("pkcs11:token=raproxy;object=nope", &opts, "no private key matches");
    expect_load_error("pkcs11:token=raproxy;object=dup", &opts, "several private keys");
    expect_load_error("pkcs11:token=raproxy;bogus=1", &opts, "malformed");
    /* control: the right PIN and an unambiguous id work */
    struct rp_privkey *k;
    char why[256];
    cr_expect_eq(
        rp_privkey_load("pkcs11:token=raproxy;object=dup;id=%03", &opts, &k, why, sizeof why),
        RP_OK, "%s", why);
    rp_privkey_free(k);
}

Test(pkcs11, pin_from_the_uri_pin_source)
{
    size_t len;
    free(import_key("ec256", "k1", "01", &len));
    char pinfile[600], uri[800];
    snprintf(pinfile, sizeof pinfile, "%s/pin", g_dir);
    cr_assert_eq(rpt_write_file(pinfile, PIN "\n", strlen(PIN) + 1), 0);
    snprintf(uri, sizeof uri, "pkcs11:token=raproxy;object=k1?pin-source=file:%s", pinfile);
    struct rp_p11_opts o = {.module = RPT_SOFTHSM_MODULE};
    struct rp_privkey *k;
    char why[256];
    cr_expect_eq(rp_privkey_load(uri, &o, &k, why, sizeof why), RP_OK, "%s", why);
    rp_privkey_free(k);
}

struct worker_arg {
    struct rp_privkey *k;
    unsigned index;
    int failures;
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    rp_p11_thread_start(a->index);
    for (int i = 0; i < PER_THREAD; i++) {
        uint8_t sig[RP_SIG_MAX];
        size_t len;
        if (rp_privkey_sign(a->k, RP_SIG_ECDSA_SHA256, (const uint8_t *)"x", 1, sig, sizeof sig,
                            &len) != RP_OK)
            a->failures++;
    }
    rp_p11_thread_stop();
    return NULL;
}

Test(pkcs11, workers_sign_in_parallel_each_in_its_session)
{
    size_t len;
    free(import_key("ec256", "k1", "01", &len));
    struct rp_privkey *k;
    char why[256];
    cr_assert_eq(rp_privkey_load("pkcs11:object=k1", &opts, &k, why, sizeof why), RP_OK, "%s", why);
    pthread_t th[THREADS];
    struct worker_arg a[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        a[i] = (struct worker_arg){.k = k, .index = i};
        cr_assert_eq(pthread_create(&th[i], NULL, worker, &a[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(a[i].failures, 0, "worker %u: %d failed signatures", i, a[i].failures);
    }
    rp_privkey_free(k);
}

/* The token's files disappear (SoftHSM2 keeps a token as a directory: renaming it away is
 * what an unplugged or unreachable HSM looks like to the module), then come back. */
Test(pkcs11, lost_token_fails_fast_then_reconnects)
{
    size_t len;
    uint8_t *spki = import_key("ec256", "k1", "01", &len);
    struct rp_privkey *k;
    char why[256];
    cr_assert_eq(rp_privkey_load("pkcs11:token=raproxy;object=k1", &opts, &k, why, sizeof why),
                 RP_OK, "%s", why);
    rp_p11_thread_start(0);
    sign_and_verify(k, RP_SIG_ECDSA_SHA256, spki, len);
    char tokens[600], away[620];
    rpt_softhsm_tokendir(g_dir, tokens, sizeof tokens);
    snprintf(away, sizeof away, "%s.away", tokens);
    cr_assert_eq(rename(tokens, away), 0);

    uint8_t sig[RP_SIG_MAX];
    size_t siglen;
    cr_expect_eq(
        rp_privkey_sign(k, RP_SIG_ECDSA_SHA256, (const uint8_t *)"m", 1, sig, sizeof sig, &siglen),
        RP_E_KEY_TOKEN, "the first signature meets the missing token");
    cr_expect(!rp_privkey_available(k));
    cr_expect_eq(
        rp_privkey_sign(k, RP_SIG_ECDSA_SHA256, (const uint8_t *)"m", 1, sig, sizeof sig, &siglen),
        RP_E_KEY_UNAVAILABLE, "later ones fail at once");
    /* while it is away, the reconnect thread keeps failing (back-off, no restart) */
    usleep(300 * 1000);
    cr_expect(!rp_privkey_available(k));
    /* wolfCrypt offers one-shot hashes to the first device: they must not need the token */
    static const uint8_t sha1_abc[] = {0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e,
                                       0x25, 0x71, 0x78, 0x50, 0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d};
    uint8_t digest[20];
    cr_expect_eq(wc_ShaHash((const uint8_t *)"abc", 3, digest), 0);
    cr_expect_arr_eq(digest, sha1_abc, sizeof digest);

    cr_assert_eq(rename(away, tokens), 0);
    long deadline = rpt_mono_ms() + RECONNECT_MS;
    while (!rp_privkey_available(k) && rpt_mono_ms() < deadline)
        usleep(20 * 1000);
    cr_assert(rp_privkey_available(k), "not reconnected within %d ms", RECONNECT_MS);
    sign_and_verify(k, RP_SIG_ECDSA_SHA256, spki, len);
    rp_p11_thread_stop();
    rp_privkey_free(k);
    free(spki);
}
