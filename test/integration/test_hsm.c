/* The RA key in an HSM, end to end with real processes: SoftHSM2 (a token in the test's own
 * directory, SOFTHSM2_CONF pointing there, never the system's) → raproxy → `openssl cmp
 * -port` as the CA, which trusts only the operator PKI the RA certificate belongs to (a
 * device's own vendor-signed request would be refused there), and openssl cmp devices.
 *
 * - An RA key generated inside the token (it never existed anywhere else) signs what the
 *   CA accepts; the listener's TLS key is in the token too.
 * - The token goes away while raproxy runs (its directory renamed: what an unplugged or
 *   unreachable HSM looks like to the module): requests fail at once with 503, /readyz says
 *   ra_key, the failures are counted; once it is back raproxy reconnects by itself (same
 *   process) and enrolls again.
 * - RA key rotation under load: two keys in the token, SIGHUP switching between them while
 *   a fleet enrolls in parallel; not one enrollment fails, and the CA verified every
 *   request under either RA certificate.
 * - A token that is not there at start is a clear start-up error. */
#include "fixtures.h"
#include "httpc.h"
#include "support.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MANUF            ".well-known/cmp/p/manufacturer"
#define PIN              "2468"
#define TOKEN            "raproxy"
#define WAIT_MS          30000 /* bound of every wait for raproxy to notice something */
#define FLEET_SIZE       "50"
#define LOAD_CONCURRENCY "8" /* devices enrolling at once in the rotation test */
#define LOAD_SECONDS     "8" /* how long they keep enrolling; the reloads fit inside */
#define RELOADS          6
#define RELOAD_GAP_MS    700

/* extra lines for the ra section (rsa_signature) */
static const char *g_ra_extra = "";

struct hsm {
    char *dir;
    const char *pki;
    int port, admin, ca, relay;
    char rec[600], cfg[600];
    struct rpt_proc rp, mock, rel;
};

/* An RA certificate (signed by the operator's issuing CA, EKU cmcRA) for a key whose
 * public half is pub_der: the CSR is made with a throw-away key, the certificate gets the
 * token key's public key (-force_pubkey). */
static void ra_cert_for(struct hsm *h, const char *pub_der, const char *cn, const char *days,
                        const char *out)
{
    char ext[700], pub[700], tkey[700], csr[700], ica[700], icakey[700], subj[200];
    snprintf(ext, sizeof ext, "%s/ra-ext.cnf", h->dir);
    snprintf(pub, sizeof pub, "%s.pub.pem", out);
    snprintf(tkey, sizeof tkey, "%s.throwaway.key", out);
    snprintf(csr, sizeof csr, "%s.csr", out);
    snprintf(ica, sizeof ica, "%s/operator/ica.pem", h->pki);
    snprintf(icakey, sizeof icakey, "%s/operator/ica.key", h->pki);
    snprintf(subj, sizeof subj, "/O=Operator/CN=%s", cn);
    static const char ext_text[] = "[ra]\nbasicConstraints = critical,CA:FALSE\n"
                                   "keyUsage = critical,digitalSignature\n"
                                   "extendedKeyUsage = 1.3.6.1.5.5.7.3.28\n"
                                   "subjectKeyIdentifier = hash\n"
                                   "authorityKeyIdentifier = keyid:always\n";
    cr_assert_eq(rpt_write_file(ext, ext_text, strlen(ext_text)), 0);
    const char *a[] = {"openssl", "pkey",  "-pubin", "-inform", "DER",
                       "-in",     pub_der, "-out",   pub,       NULL};
    cr_assert_eq(rpt_run(a, 20000, NULL), 0);
    const char *b[] = {"openssl", "genpkey",  "-algorithm",
                       "EC",      "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-out",    tkey,       NULL};
    cr_assert_eq(rpt_run(b, 20000, NULL), 0);
    const char *c[] = {"openssl", "req", "-new", "-key", tkey, "-subj", subj, "-out", csr, NULL};
    cr_assert_eq(rpt_run(c, 20000, NULL), 0);
    const char *d[] = {"openssl", "x509",  "-req", "-in",      csr,    "-force_pubkey",
                       pub,       "-CA",   ica,    "-CAkey",   icakey, "-set_serial",
                       "0x4711",  "-days", days,   "-extfile", ext,    "-extensions",
                       "ra",      "-out",  out,    NULL};
    cr_assert_eq(rpt_run(d, 20000, NULL), 0);
    unlink(tkey); /* only the token holds an RA key */
}

/* Write raproxy's configuration: RA key `ra_label` with certificate `ra_cert`; the listener
 * key in the token when tls_in_token. PIN from pin_file, or RAPROXY_RA_PIN when NULL. */
static void write_config(struct hsm *h, const char *ra_label, const char *ra_cert,
                         bool tls_in_token, const char *pin_file, bool allowlist)
{
    char cfg[4096], tlskey[200], pinline[700] = "", rakey[700];
    if (ra_label)
        snprintf(rakey, sizeof rakey, "'pkcs11:token=" TOKEN ";object=%s'", ra_label);
    else /* the RA key as a PEM file (the test PKI's), the listener's in the token */
        snprintf(rakey, sizeof rakey, "%s/operator/ra.key", h->pki);
    if (tls_in_token)
        snprintf(tlskey, sizeof tlskey, "'pkcs11:token=" TOKEN ";object=tls'");
    else
        snprintf(tlskey, sizeof tlskey, "%s/tls/server.key", h->pki);
    if (pin_file)
        snprintf(pinline, sizeof pinline, ", pin_file: %s", pin_file);
    int n = snprintf(cfg, sizeof cfg,
                     "listeners:\n"
                     "  - address: 127.0.0.1:%d\n"
                     "    tls: {cert: %s/tls/server.pem, key: %s}\n"
                     "admin: {address: 127.0.0.1:%d}\n"
                     "upstream:\n  url: \"http://127.0.0.1:%d/pkix/\"\n  max_connections: 1\n"
                     "  keep_alive: false\n  timeout_ms: 20000\n"
                     "ra:\n"
                     "  cert: %s\n"
                     "  chain: %s/operator/ra.chain.pem\n"
                     "  key: %s\n"
                     "  pkcs11: {module: " RPT_SOFTHSM_MODULE "%s}\n"
                     "%s"
                     "domains:\n"
                     "  - name: manufacturer\n"
                     "    trust_anchors: [%s/vendor/root.pem]\n"
                     "    allow: [ir, cr, p10cr, certConf, genm, pollReq, error]\n"
                     "%s%s%s",
                     h->port, h->pki, tlskey, h->admin, h->relay, ra_cert, h->pki, rakey, pinline,
                     g_ra_extra, h->pki, allowlist ? "    allowlist: " : "",
                     allowlist ? h->pki : "", allowlist ? "/vendor/allowlist.txt\n" : "");
    cr_assert_eq(rpt_write_file(h->cfg, cfg, (size_t)n), 0);
}

/* Token, keys, certificates, mock CA and recording relay; raproxy is started by the test. */
static void setup(struct hsm *h)
{
    memset(h, 0, sizeof *h);
    h->pki = rpt_pki();
    cr_assert_not_null(h->pki);
    h->dir = rpt_tmpdir();
    h->port = rpt_free_port();
    h->admin = rpt_free_port();
    h->ca = rpt_free_port();
    h->relay = rpt_free_port();
    snprintf(h->cfg, sizeof h->cfg, "%s/raproxy.yaml", h->dir);
    cr_assert_eq(rpt_softhsm_init(h->dir, TOKEN, PIN), 0);
    char pub[600], cert[600], tlskey[600];
    for (int i = 1; i <= 2; i++) {
        char label[32], id[8], cn[64];
        snprintf(label, sizeof label, "ra-key-%d", i);
        snprintf(id, sizeof id, "0%d", i);
        snprintf(cn, sizeof cn, "raproxy RA %d", i);
        snprintf(pub, sizeof pub, "%s/%s.pub.der", h->dir, label);
        snprintf(cert, sizeof cert, "%s/ra%d.pem", h->dir, i);
        cr_assert_eq(rpt_softhsm_keygen(h->dir, TOKEN, PIN, "EC:prime256v1", label, id, pub), 0);
        ra_cert_for(h, pub, cn, i == 1 ? "3650" : "3000", cert);
    }
    snprintf(tlskey, sizeof tlskey, "%s/tls/server.key", h->pki);
    cr_assert_eq(rpt_softhsm_import(h->dir, TOKEN, PIN, tlskey, "tls", "7e"), 0);

    char trusted[600], port[16], url[128], script[600];
    snprintf(trusted, sizeof trusted, "%s/operator/root.pem", h->pki);
    cr_assert_eq(rpt_mockca_start(&h->mock, h->dir, h->ca, trusted, NULL), 0);
    snprintf(h->rec, sizeof h->rec, "%s/sent", h->dir);
    cr_assert_eq(mkdir(h->rec, 0755), 0);
    snprintf(port, sizeof port, "%d", h->relay);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/pkix/", h->ca);
    snprintf(script, sizeof script, "%s/test/integration/record_relay.py", rpt_src());
    const char *argv[] = {"/usr/bin/python3", script, port, url, h->rec, NULL};
    snprintf(h->rel.log, sizeof h->rel.log, "%s/relay.log", h->dir);
    cr_assert_eq(rpt_spawn(&h->rel, argv), 0);
    cr_assert_eq(rpt_wait_port(h->relay, 10000), 0);
}

static void teardown(struct hsm *h)
{
    int st = h->rp.pid > 0 ? rpt_stop(&h->rp, SIGTERM, 15000) : 0;
    rpt_stop(&h->mock, SIGKILL, 2000);
    rpt_stop(&h->rel, SIGKILL, 2000);
    cr_expect_eq(st, 0, "raproxy exit %d (%s)", st, h->rp.log);
    if (!getenv("RPT_KEEP"))
        rpt_rmdir(h->dir);
    free(h->dir);
}

static int enroll(struct hsm *h, const char *who, char *log, size_t cap)
{
    static atomic_int seq;
    char cert[600], key[600], ica[600], out[600];
    int n = atomic_fetch_add(&seq, 1);
    snprintf(cert, sizeof cert, "%s/vendor/%s.pem", h->pki, who);
    snprintf(key, sizeof key, "%s/vendor/%s.key", h->pki, who);
    snprintf(ica, sizeof ica, "%s/vendor/ica.pem", h->pki);
    snprintf(out, sizeof out, "%s/out-%d.pem", h->dir, n);
    snprintf(log, cap, "%s/device-%d.log", h->dir, n);
    return rpt_device(h->dir, h->port, MANUF, "ir", cert, key, ica, out, NULL, log);
}

static char *get(int port, const char *path, int *status)
{
    struct rpt_resp r;
    if (rpt_http(port, "GET", path, NULL, NULL, 0, 5000, &r) != 0) {
        *status = 0;
        return strdup("");
    }
    *status = r.status;
    char *body = strdup((char *)r.body);
    rpt_resp_free(&r);
    return body;
}

/* Value of a metric line "name{labels} value" (or "name value"); -1 when absent. */
static double metric(int admin, const char *series)
{
    int st;
    char *m = get(admin, "/metrics", &st);
    double v = -1;
    char want[256];
    snprintf(want, sizeof want, "\n%s ", series);
    const char *p = strstr(m, want);
    if (p)
        v = strtod(p + strlen(want), NULL);
    free(m);
    return v;
}

/* Wait until /readyz answers `status`; its body in *body. */
static bool wait_ready(struct hsm *h, int status, char **body)
{
    long deadline = rpt_mono_ms() + WAIT_MS;
    int st = 0;
    do {
        free(*body);
        *body = get(h->admin, "/readyz", &st);
        if (st == status)
            return true;
        usleep(50 * 1000);
    } while (rpt_mono_ms() < deadline);
    return false;
}

static bool file_has(const char *path, const char *needle)
{
    size_t len;
    uint8_t *d = rpt_read_file(path, &len);
    bool found = d && memmem(d, len, needle, strlen(needle)) != NULL;
    free(d);
    return found;
}

/* How many of the messages raproxy sent to the CA carry `needle` (an RA subject). */
static int sent_with(struct hsm *h, const char *needle)
{
    DIR *d = opendir(h->rec);
    struct dirent *de;
    int n = 0;
    char path[900];
    while (d && (de = readdir(d)) != NULL) {
        if (!strstr(de->d_name, ".der"))
            continue;
        snprintf(path, sizeof path, "%s/%s", h->rec, de->d_name);
        n += file_has(path, needle);
    }
    if (d)
        closedir(d);
    return n;
}

Test(hsm, enrolls_with_the_ra_key_generated_in_the_token, .timeout = 240)
{
    struct hsm h;
    setup(&h);
    char pin[600], ra1[600], log[600];
    snprintf(pin, sizeof pin, "%s/ra-pin", h.dir);
    cr_assert_eq(rpt_write_file(pin, PIN "\n", strlen(PIN) + 1), 0);
    snprintf(ra1, sizeof ra1, "%s/ra1.pem", h.dir);
    write_config(&h, "ra-key-1", ra1, true, pin, true);
    cr_assert_eq(rpt_raproxy_start(&h.rp, h.dir, h.cfg, h.port), 0, "see %s", h.rp.log);
    cr_assert_eq(enroll(&h, "dev1", log, sizeof log), 0, "ir failed: %s, %s", log, h.rp.log);
    cr_expect(file_has(log, "received PKICONF"), "%s", log);
    cr_expect_eq(sent_with(&h, "raproxy RA 1"), 2, "ir and certConf went out under the RA key");
    cr_expect(file_has(h.rp.log, "token 'raproxy'"), "%s", h.rp.log);
    cr_expect_eq(metric(h.admin, "raproxy_pkcs11_token_up{token=\"raproxy\"}"), 1);
    cr_expect_gt(metric(h.admin, "raproxy_ra_cert_not_after_seconds"), (double)time(NULL));
    cr_expect_eq(metric(h.admin, "raproxy_crypto_on_loop_total"), 0);
    char *ready = NULL;
    cr_expect(wait_ready(&h, 200, &ready), "readyz: %s", ready);
    free(ready);
    teardown(&h);
}

/* An RSA RA key generated in the token, signing RSASSA-PSS (ra.rsa_signature: pss): the
 * token does the raw RSA operation, wolfSSL the PSS encoding; the CA verifies it. */
Test(hsm, enrolls_with_an_rsa_key_in_the_token_signing_pss, .timeout = 240)
{
    struct hsm h;
    setup(&h);
    char pin[600], pub[600], cert[600], log[600];
    snprintf(pin, sizeof pin, "%s/ra-pin", h.dir);
    cr_assert_eq(rpt_write_file(pin, PIN, strlen(PIN)), 0);
    snprintf(pub, sizeof pub, "%s/ra-rsa.pub.der", h.dir);
    snprintf(cert, sizeof cert, "%s/ra-rsa.pem", h.dir);
    cr_assert_eq(rpt_softhsm_keygen(h.dir, TOKEN, PIN, "rsa:2048", "ra-rsa", "0a", pub), 0);
    ra_cert_for(&h, pub, "raproxy RA RSA", "3650", cert);
    g_ra_extra = "  rsa_signature: pss\n";
    write_config(&h, "ra-rsa", cert, false, pin, true);
    g_ra_extra = "";
    cr_assert_eq(rpt_raproxy_start(&h.rp, h.dir, h.cfg, h.port), 0, "see %s", h.rp.log);
    cr_assert_eq(enroll(&h, "dev1", log, sizeof log), 0, "ir failed: %s, %s", log, h.rp.log);
    cr_expect(file_has(log, "received PKICONF"), "%s", log);
    /* protectionAlg id-RSASSA-PSS (1.2.840.113549.1.1.10) on what reached the CA */
    static const char pss_oid[] = "\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0a";
    cr_expect_eq(sent_with(&h, pss_oid), 2, "ir and certConf signed RSASSA-PSS");
    cr_expect_eq(sent_with(&h, "raproxy RA RSA"), 2);
    teardown(&h);
}

Test(hsm, lost_token_fails_fast_turns_unready_and_reconnects, .timeout = 300)
{
    struct hsm h;
    setup(&h);
    char ra1[600], log[600];
    snprintf(ra1, sizeof ra1, "%s/ra1.pem", h.dir);
    setenv("RAPROXY_RA_PIN", PIN, 1); /* the PIN from the environment this time */
    write_config(&h, "ra-key-1", ra1, false, NULL, true);
    cr_assert_eq(rpt_raproxy_start(&h.rp, h.dir, h.cfg, h.port), 0, "see %s", h.rp.log);
    pid_t pid = h.rp.pid;
    cr_assert_eq(enroll(&h, "dev1", log, sizeof log), 0, "ir failed: %s", log);
    char *ready = NULL;
    cr_assert(wait_ready(&h, 200, &ready), "readyz: %s", ready);

    char tokens[600], away[620];
    rpt_softhsm_tokendir(h.dir, tokens, sizeof tokens);
    snprintf(away, sizeof away, "%s.away", tokens);
    cr_assert_eq(rename(tokens, away), 0);
    for (int i = 0; i < 3; i++) {
        long t0 = rpt_mono_ms();
        cr_expect_neq(enroll(&h, "dev1", log, sizeof log), 0, "enrolled without the RA key");
        cr_expect(file_has(log, "503"), "expected HTTP 503 (systemUnavail): %s", log);
        cr_expect_lt(rpt_mono_ms() - t0, 15000, "fails fast, no hang");
    }
    cr_expect(wait_ready(&h, 503, &ready), "readyz: %s", ready);
    cr_expect(strstr(ready, "ra_key"), "readyz reason: %s", ready);
    cr_expect_geq(metric(h.admin, "raproxy_ra_key_failures_total{reason=\"token_error\"}"), 1);
    cr_expect_geq(metric(h.admin, "raproxy_ra_key_failures_total{reason=\"token_down\"}"), 1);
    cr_expect_eq(metric(h.admin, "raproxy_pkcs11_token_up{token=\"raproxy\"}"), 0);

    cr_assert_eq(rename(away, tokens), 0);
    cr_assert(wait_ready(&h, 200, &ready), "not reconnected: %s (%s)", ready, h.rp.log);
    free(ready);
    cr_expect_eq(enroll(&h, "dev2", log, sizeof log), 0, "ir after reconnect failed: %s", log);
    cr_expect_geq(
        metric(h.admin, "raproxy_pkcs11_reconnects_total{token=\"raproxy\",result=\"ok\"}"), 1);
    cr_expect_eq(h.rp.pid, pid, "no restart");
    int st;
    cr_expect_eq(rpt_alive(&h.rp, &st), 1);
    unsetenv("RAPROXY_RA_PIN");
    teardown(&h);
}

/* The listener's TLS key in the token, the RA key a PEM file: a lost token breaks the TLS
 * handshakes, /readyz names tls_key, and the listener works again once it is back. */
Test(hsm, lost_token_with_the_tls_key_turns_unready_and_recovers, .timeout = 300)
{
    struct hsm h;
    setup(&h);
    char pin[600], racert[600], log[600];
    snprintf(pin, sizeof pin, "%s/ra-pin", h.dir);
    cr_assert_eq(rpt_write_file(pin, PIN, strlen(PIN)), 0);
    snprintf(racert, sizeof racert, "%s/operator/ra.pem", h.pki);
    write_config(&h, NULL, racert, true, pin, true);
    cr_assert_eq(rpt_raproxy_start(&h.rp, h.dir, h.cfg, h.port), 0, "see %s", h.rp.log);
    cr_assert_eq(enroll(&h, "dev1", log, sizeof log), 0, "ir failed: %s", log);
    char *ready = NULL;
    cr_assert(wait_ready(&h, 200, &ready), "readyz: %s", ready);
    char tokens[600], away[620];
    rpt_softhsm_tokendir(h.dir, tokens, sizeof tokens);
    snprintf(away, sizeof away, "%s.away", tokens);
    cr_assert_eq(rename(tokens, away), 0);
    cr_expect_neq(enroll(&h, "dev1", log, sizeof log), 0, "a TLS handshake without the key");
    cr_expect(wait_ready(&h, 503, &ready), "readyz: %s", ready);
    cr_expect(strstr(ready, "tls_key"), "readyz reason: %s", ready);
    cr_assert_eq(rename(away, tokens), 0);
    cr_assert(wait_ready(&h, 200, &ready), "not reconnected: %s (%s)", ready, h.rp.log);
    free(ready);
    cr_expect_eq(enroll(&h, "dev2", log, sizeof log), 0, "ir after reconnect failed: %s", log);
    teardown(&h);
}

static const char *bench_tool(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/bench/%s", rpt_bin(), name);
    return buf;
}

/* Rotation under load. `openssl cmp -port` keeps one transaction at a time, so the load
 * comes from bench_fleet (fresh ir + certConf per enrollment, parallel devices, answers
 * checked) into bench_mockca, which verifies every request's protection against the
 * operator root: both RA certificates chain there. Every reload switches the RA key while
 * enrollments are in flight: an ir signed with one key may be followed by its certConf
 * under the other, and exchanges that started on the old snapshot finish with its key. */
Test(hsm, rotation_under_load_loses_no_enrollment, .timeout = 600)
{
    struct hsm h;
    setup(&h);
    char pin[600], ra[2][600], cfg_text[2][4096], tool[700];
    snprintf(pin, sizeof pin, "%s/ra-pin", h.dir);
    cr_assert_eq(rpt_write_file(pin, PIN, strlen(PIN)), 0);

    /* the fleet and the fast mock CA, on the port the configuration names as upstream */
    char fleet[700], vica[700], vkey[700], listen[64], log[700];
    snprintf(fleet, sizeof fleet, "%s/fleet.bin", h.dir);
    snprintf(vica, sizeof vica, "%s/vendor/ica.pem", h.pki);
    snprintf(vkey, sizeof vkey, "%s/vendor/ica.key", h.pki);
    snprintf(log, sizeof log, "%s/mkfleet.log", h.dir);
    const char *mk[] = {bench_tool(tool, sizeof tool, "bench_mkfleet"),
                        "--ca-cert",
                        vica,
                        "--ca-key",
                        vkey,
                        "--count",
                        FLEET_SIZE,
                        "--out",
                        fleet,
                        NULL};
    cr_assert_eq(rpt_run(mk, 60000, log), 0, "bench_mkfleet failed (%s)", log);
    rpt_stop(&h.rel, SIGKILL, 2000); /* this test's CA is bench_mockca on the relay's port */
    struct rpt_proc ca = {0};
    char cert[700], key[700], chain[700], ikey[700], trust[700], catool[700];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", h.relay);
    snprintf(cert, sizeof cert, "%s/ca/srv.pem", h.pki);
    snprintf(key, sizeof key, "%s/ca/srv.key", h.pki);
    snprintf(chain, sizeof chain, "%s/operator/ica.pem", h.pki);
    snprintf(ikey, sizeof ikey, "%s/operator/ica.key", h.pki);
    snprintf(trust, sizeof trust, "%s/operator/root.pem", h.pki);
    const char *ca_argv[] = {bench_tool(catool, sizeof catool, "bench_mockca"),
                             "--listen",
                             listen,
                             "--cert",
                             cert,
                             "--key",
                             key,
                             "--chain",
                             chain,
                             "--issuer-cert",
                             chain,
                             "--issuer-key",
                             ikey,
                             "--trust",
                             trust,
                             "--max-seconds",
                             "300",
                             NULL};
    snprintf(ca.log, sizeof ca.log, "%s/bench_mockca.log", h.dir);
    cr_assert_eq(rpt_spawn(&ca, ca_argv), 0);
    cr_assert_eq(rpt_wait_port(h.relay, 10000), 0, "bench_mockca did not start (%s)", ca.log);

    /* This test is about rotation, not load shedding: on a busy 2-core CI machine under ASan
     * the expected worker wait can pass the default 500 ms and a request would get a 503. */
    g_ra_extra = "worker_queue_ms: 60000\n";
    for (int i = 0; i < 2; i++) {
        snprintf(ra[i], sizeof ra[i], "%s/ra%d.pem", h.dir, i + 1);
        char label[32];
        snprintf(label, sizeof label, "ra-key-%d", i + 1);
        write_config(&h, label, ra[i], false, pin, false);
        size_t len;
        uint8_t *t = rpt_read_file(h.cfg, &len);
        cr_assert_not_null(t);
        snprintf(cfg_text[i], sizeof cfg_text[i], "%s", (char *)t);
        free(t);
    }
    g_ra_extra = "";
    cr_assert_eq(rpt_write_file(h.cfg, cfg_text[0], strlen(cfg_text[0])), 0);
    cr_assert_eq(rpt_raproxy_start(&h.rp, h.dir, h.cfg, h.port), 0, "see %s", h.rp.log);
    double seen[2] = {metric(h.admin, "raproxy_ra_cert_not_after_seconds"), -1};

    struct rpt_proc load = {0};
    char url[128], ftool[700];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/" MANUF, h.port);
    const char *fl[] = {bench_tool(ftool, sizeof ftool, "bench_fleet"),
                        "--url",
                        url,
                        "--fleet",
                        fleet,
                        "--chain",
                        vica,
                        "--mode",
                        "keepalive",
                        "--concurrency",
                        LOAD_CONCURRENCY,
                        "--duration",
                        LOAD_SECONDS,
                        "--keys",
                        "4",
                        "--timeout-ms",
                        "20000",
                        NULL};
    snprintf(load.log, sizeof load.log, "%s/fleet.log", h.dir);
    cr_assert_eq(rpt_spawn(&load, fl), 0);
    for (int r = 0; r < RELOADS; r++) {
        usleep(RELOAD_GAP_MS * 1000);
        int next = (r + 1) % 2;
        cr_assert_eq(rpt_write_file(h.cfg, cfg_text[next], strlen(cfg_text[next])), 0);
        kill(h.rp.pid, SIGHUP);
        /* the switch shows in the exported expiry of the RA certificate in use */
        long deadline = rpt_mono_ms() + WAIT_MS;
        double v;
        while ((v = metric(h.admin, "raproxy_ra_cert_not_after_seconds")) == seen[!next] &&
               rpt_mono_ms() < deadline)
            usleep(20 * 1000);
        cr_expect_neq(v, seen[!next], "reload %d did not switch the RA certificate", r);
        seen[next] = v;
    }
    long deadline = rpt_mono_ms() + WAIT_MS * 4;
    int st = -1;
    while (rpt_alive(&load, &st) && rpt_mono_ms() < deadline)
        usleep(100 * 1000);
    cr_assert_eq(st, 0, "bench_fleet: %s", load.log);
    size_t len = 0;
    char *out = (char *)rpt_read_file(load.log, &len);
    const char *res = out ? strstr(out, "RESULT ") : NULL;
    cr_assert_not_null(res, "no RESULT line in %s", load.log);
    const char *ok = strstr(res, " ok="), *failed = strstr(res, " failed=");
    cr_assert(ok && failed, "%s", res);
    cr_expect_gt(strtol(ok + 4, NULL, 10), RELOADS, "too few enrollments to mean much: %s", res);
    cr_expect_eq(strtol(failed + 8, NULL, 10), 0, "failed enrollments: %s", res);
    free(out);
    cr_expect_neq(seen[0], seen[1], "two certificates, two expiries");
    cr_expect_eq(rpt_file_count(h.rp.log, "configuration rejected"), 0, "%s", h.rp.log);
    cr_assert_eq(rpt_stop(&ca, SIGTERM, 10000), 0, "bench_mockca exit (%s)", ca.log);
    cr_expect_eq(rpt_file_count(ca.log, "verify_failed=0 "), 1, "the CA refused a request (%s)",
                 ca.log);
    cr_expect_eq(rpt_file_count(ca.log, "errors=0 "), 1, "the CA answered errors (%s)", ca.log);
    teardown(&h);
}

Test(hsm, token_missing_at_start_is_a_clear_error, .timeout = 120)
{
    struct hsm h;
    setup(&h);
    char pin[600], ra1[600], bad[700], out[600];
    snprintf(pin, sizeof pin, "%s/ra-pin", h.dir);
    cr_assert_eq(rpt_write_file(pin, PIN, strlen(PIN)), 0);
    snprintf(ra1, sizeof ra1, "%s/ra1.pem", h.dir);
    write_config(&h, "ra-key-1", ra1, false, pin, true);
    char bin[600];
    snprintf(bin, sizeof bin, "%s/raproxy", rpt_bin());
    /* the token's directory is away at start */
    char tokens[600], away[620];
    rpt_softhsm_tokendir(h.dir, tokens, sizeof tokens);
    snprintf(away, sizeof away, "%s.away", tokens);
    cr_assert_eq(rename(tokens, away), 0);
    snprintf(out, sizeof out, "%s/start.log", h.dir);
    const char *start[] = {bin, "--config", h.cfg, NULL};
    cr_expect_eq(rpt_run(start, 60000, out), 1, "see %s", out);
    cr_expect(file_has(out, "ra.key: cannot load the private key"), "see %s", out);
    cr_expect(file_has(out, RPT_SOFTHSM_MODULE ": C_Initialize"), "see %s", out);
    cr_assert_eq(rename(away, tokens), 0);
    /* a URI naming a token the module does not have */
    setenv("RAPROXY_RA_KEY", "pkcs11:token=absent;object=ra-key-1", 1);
    cr_expect_eq(rpt_run(start, 60000, out), 1, "see %s", out);
    unsetenv("RAPROXY_RA_KEY");
    cr_expect(file_has(out, "no token matches the URI (tokens present: 'raproxy')"), "see %s", out);
    /* a wrong PIN, reported by --check-config */
    cr_assert_eq(rpt_write_file(pin, "0000", 4), 0);
    snprintf(bad, sizeof bad, "%s/check.log", h.dir);
    const char *check[] = {bin, "--config", h.cfg, "--check-config", NULL};
    cr_expect_eq(rpt_run(check, 60000, bad), 1);
    cr_expect(file_has(bad, "CKR_PIN_INCORRECT"), "see %s", bad);
    /* control: the right PIN passes */
    cr_assert_eq(rpt_write_file(pin, PIN, strlen(PIN)), 0);
    cr_expect_eq(rpt_run(check, 60000, bad), 0, "see %s", bad);
    teardown(&h);
}
