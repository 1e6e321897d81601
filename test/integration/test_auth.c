/* Authentication that holds against a hostile device (issue 14): one test per finding of
 * the review, each with real messages (written by openssl cmp, then altered and protected
 * again), the exact failInfo, nothing reaching the recording CA, and a legitimate control
 * that is forwarded. The recording CA saves every request it gets and answers 502 (its
 * upstream is down), so a forwarded request comes back as systemUnavail. */
#include "fixtures.h"
#include "httpc.h"
#include "msgbuild.h"
#include "support.h"

#include "raproxy/arena.h"
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/err.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARENA (1u << 20)
#define MANUF "/.well-known/cmp/p/manufacturer"
#define LOOSE "/.well-known/cmp/p/loose"
#define MACRR "/.well-known/cmp/p/macrr"
#define LOCKS 3 /* mac_lockout.failures in this configuration */

static char *g_dir;
static const char *g_pki;
static int g_port, g_admin;
static char g_rec[600];
static struct rpt_proc g_rp, g_relay;
static struct rpt_redis g_redis;
static struct rp_arena g_a;

static void redis_cli(const char *const *args)
{
    char port[16], log[600];
    snprintf(port, sizeof port, "%d", g_redis.port);
    snprintf(log, sizeof log, "%s/redis-cli.log", g_dir);
    const char *argv[16] = {"redis-cli", "-p", port};
    size_t n = 3;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    cr_assert_eq(rpt_run(argv, 10000, log), 0, "redis-cli failed, see %s", log);
}

static void setup(void)
{
    g_pki = rpt_pki();
    cr_assert_not_null(g_pki);
    g_dir = rpt_tmpdir();
    g_port = rpt_free_port();
    g_admin = rpt_free_port();
    cr_assert_eq(rpt_redis_start(&g_redis, NULL), 0);
    const char *sadd[] = {"SADD", "raproxy:allow:{dom:manufacturer}", "SN0001", "SN0002", NULL};
    redis_cli(sadd);
    /* the recording CA */
    int relay = rpt_free_port(), dead = rpt_free_port();
    char rport[16], url[128], script[600];
    snprintf(g_rec, sizeof g_rec, "%s/sent", g_dir);
    cr_assert_eq(mkdir(g_rec, 0755), 0);
    snprintf(rport, sizeof rport, "%d", relay);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/pkix/", dead);
    snprintf(script, sizeof script, "%s/test/integration/record_relay.py", rpt_src());
    const char *argv[] = {"/usr/bin/python3", script, rport, url, g_rec, NULL};
    snprintf(g_relay.log, sizeof g_relay.log, "%s/relay.log", g_dir);
    cr_assert_eq(rpt_spawn(&g_relay, argv), 0);
    cr_assert_eq(rpt_wait_port(relay, 10000), 0);
    char cfg[8192], path[600];
    const char *P = g_pki;
    snprintf(cfg, sizeof cfg,
             "listeners:\n  - address: 127.0.0.1:%d\n    tls: off\n"
             "admin: {address: 127.0.0.1:%d}\n"
             "upstream: {url: \"http://127.0.0.1:%d/pkix/\", keep_alive: false}\n"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
             "chain: %s/operator/ra.chain.pem}\n"
             "redis: {url: \"%s\"}\n"
             "domains:\n"
             "  - name: manufacturer\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir, cr, p10cr, certConf, pollReq, error]\n"
             "    protection: both\n"
             "    mac_secrets: %s/mac/secrets.txt\n"
             "    mac_lockout: {failures: %d, window_s: 600}\n"
             "    allowlist: redis\n"
             "  - name: loose\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir, certConf, error]\n"
             "    allowlist: %s/vendor/allowlist.txt\n"
             "    require_message_time: false\n"
             "    max_clock_skew_s: 2\n"
             "  - name: macrr\n"
             "    allow: [ir, kur, rr, certConf, error]\n"
             "    protection: mac\n"
             "    mac_secrets: %s/mac/secrets.txt\n",
             g_port, g_admin, relay, P, P, P, g_redis.url, P, P, LOCKS, P, P, P);
    snprintf(path, sizeof path, "%s/raproxy.yaml", g_dir);
    cr_assert_eq(rpt_write_file(path, cfg, strlen(cfg)), 0);
    cr_assert_eq(rpt_raproxy_start(&g_rp, g_dir, path, g_port), 0, "%s", g_rp.log);
    cr_assert_eq(rp_arena_new(&g_a, ARENA), RP_OK);
}

static void teardown(void)
{
    char tail[2048];
    int st = rpt_stop(&g_rp, SIGTERM, 15000);
    cr_expect_eq(st, 0, "raproxy exit %d; its log ends:\n%s", st,
                 rpt_file_tail(g_rp.log, tail, sizeof tail));
    cr_expect_eq(rpt_file_count(g_rp.log, "AddressSanitizer"), 0);
    rpt_stop(&g_relay, SIGKILL, 2000);
    rpt_redis_stop(&g_redis);
    rp_arena_free(&g_a);
    rpt_rmdir(g_dir);
    free(g_dir);
}

TestSuite(auth, .init = setup, .fini = teardown, .timeout = 120);

/* Requests the recording CA has seen. */
static int sent(void)
{
    return rpt_dir_count(g_rec, ".der");
}

/* POST and expect a CMP error with exactly `bit`. */
static void expect_fail(const char *path, struct rp_view req, enum rp_failinfo bit,
                        const char *what)
{
    cr_assert(rp_view_present(req), "%s: could not build the request", what);
    struct rp_cmp_msg m;
    char tail[2048];
    int st = rpt_post_cmp(g_port, path, req, &g_a, &m);
    cr_assert_eq(st, 200, "%s: HTTP %d; raproxy's log ends:\n%s", what, st,
                 rpt_file_tail(g_rp.log, tail, sizeof tail));
    cr_assert_eq(m.body.type, RP_CMP_ERROR, "%s: body %d", what, m.body.type);
    cr_expect_eq(m.body.error.status.fail_info, 1u << bit, "%s: failInfo 0x%x, want %s", what,
                 m.body.error.status.fail_info, rp_failinfo_name(bit));
}

/* A refusal that must not reach the CA. */
static void expect_refused(const char *path, struct rp_view req, enum rp_failinfo bit,
                           const char *what)
{
    int before = sent();
    expect_fail(path, req, bit, what);
    cr_expect_eq(sent(), before, "%s: the CA saw it", what);
}

/* The control: verified and forwarded (the CA is down behind the recorder: systemUnavail). */
static void expect_forwarded(const char *path, struct rp_view req, const char *what)
{
    int before = sent();
    expect_fail(path, req, RP_FI_SYSTEM_UNAVAIL, what);
    cr_expect_eq(sent(), before + 1, "%s: not forwarded (%s)", what, g_rp.log);
}

static uint8_t *mac_ir(const char *secret, const char *kid, size_t *len)
{
    char subject[64];
    snprintf(subject, sizeof subject, "/CN=Device/serialNumber=%s",
             strcmp(kid, "kid-3") == 0   ? "SN0002"
             : strcmp(kid, "kid-1") == 0 ? "SN0001"
                                         : kid);
    uint8_t *b = rpt_capture_mac(g_dir, g_pki, "ir", secret, kid, subject, len);
    cr_assert_not_null(b, "openssl cmp -reqout wrote no request");
    return b;
}

/* 1. The forgery: PBMAC1 with keyLength 1 leaves 256 HMAC keys; a guess was accepted and
 * signed by the RA. Here the MAC is even right: the parameters alone refuse it. */
Test(auth, pbmac1_with_a_short_key_is_bad_alg_and_never_forwarded)
{
    size_t len;
    uint8_t *base = mac_ir("pbm-secret-1", "kid-1", &len);
    for (int64_t k = 1; k <= 31; k += 15) {
        struct rpt_mut m = {.mac = RPT_MAC_PBMAC1, .mac_secret = "pbm-secret-1", .mac_key_len = k};
        expect_refused(MANUF, rpt_rebuild(&g_a, base, len, &m), RP_FI_BAD_ALG, "keyLength < 32");
    }
    struct rpt_mut ok = {.mac = RPT_MAC_PBMAC1, .mac_secret = "pbm-secret-1", .mac_key_len = 32};
    expect_forwarded(MANUF, rpt_rebuild(&g_a, base, len, &ok), "PBMAC1 keyLength 32");
    struct rpt_mut absent = {.mac = RPT_MAC_PBMAC1, .mac_secret = "pbm-secret-1"};
    expect_forwarded(MANUF, rpt_rebuild(&g_a, base, len, &absent), "PBMAC1 keyLength absent");
    free(base);
}

/* 1. MAC failures are counted per kid: after LOCKS of them the kid is refused without any
 * MAC computed, even with the right secret; another kid is not affected. */
Test(auth, failed_macs_lock_the_kid_out)
{
    size_t len;
    uint8_t *base = mac_ir("pbm-secret-3", "kid-3", &len);
    for (int i = 0; i < LOCKS; i++) {
        struct rpt_mut bad = {.mac = RPT_MAC_PBM, .mac_secret = "guess"};
        expect_refused(MANUF, rpt_rebuild(&g_a, base, len, &bad), RP_FI_BAD_MESSAGE_CHECK,
                       "wrong secret");
    }
    struct rpt_mut good = {.mac = RPT_MAC_PBM, .mac_secret = "pbm-secret-3"};
    expect_refused(MANUF, rpt_rebuild(&g_a, base, len, &good), RP_FI_BAD_MESSAGE_CHECK,
                   "right secret, kid locked out");
    cr_expect_geq(rpt_file_count(g_rp.log, "senderKID locked out"), 1, "%s", g_rp.log);
    struct rpt_resp r;
    cr_assert_eq(rpt_http(g_admin, "GET", "/metrics", NULL, NULL, 0, 10000, &r), 0);
    cr_expect_not_null(strstr((char *)r.body, "raproxy_mac_lockouts_total 1"), "%s", r.body);
    rpt_resp_free(&r);
    /* the lock lives in Redis (shared by every replica) */
    const char *ttl[] = {"PTTL", "raproxy:mac:{mac:manufacturer:6b69642d33}", NULL};
    redis_cli(ttl);
    free(base);
    base = mac_ir("pbm-secret-1", "kid-1", &len);
    struct rpt_mut other = {.mac = RPT_MAC_PBM, .mac_secret = "pbm-secret-1"};
    expect_forwarded(MANUF, rpt_rebuild(&g_a, base, len, &other), "another kid");
    free(base);
}

/* 2. A MAC kid is an identity: the allowlist judges the serial it stands for, its secrets
 * line restricts its body types, and kur/rr (which concern a certificate) are not for it. */
Test(auth, a_mac_kid_is_authorized_like_a_certificate)
{
    size_t len;
    uint8_t *kid2 = mac_ir("pbm-secret-2", "kid-2", &len);
    struct rpt_mut m2 = {.mac = RPT_MAC_PBM, .mac_secret = "pbm-secret-2"};
    expect_refused(MANUF, rpt_rebuild(&g_a, kid2, len, &m2), RP_FI_NOT_AUTHORIZED,
                   "kid-2 stands for no allowlisted serial");
    free(kid2);
    uint8_t *cr = rpt_capture_mac(g_dir, g_pki, "cr", "pbm-secret-3", "kid-3",
                                  "/CN=Device/serialNumber=SN0002", &len);
    cr_assert_not_null(cr);
    struct rpt_mut m3 = {.mac = RPT_MAC_PBM, .mac_secret = "pbm-secret-3"};
    expect_refused(MANUF, rpt_rebuild(&g_a, cr, len, &m3), RP_FI_NOT_AUTHORIZED,
                   "kid-3 may not send cr (bodies=)");
    free(cr);
    uint8_t *rr = rpt_capture_mac(g_dir, g_pki, "rr", "pbm-secret-1", "kid-1", NULL, &len);
    cr_assert_not_null(rr);
    struct rpt_mut m1 = {.mac = RPT_MAC_PBM, .mac_secret = "pbm-secret-1"};
    expect_refused(MACRR, rpt_rebuild(&g_a, rr, len, &m1), RP_FI_NOT_AUTHORIZED,
                   "rr under a MAC names no certificate of its own");
    free(rr);
    uint8_t *ir3 = mac_ir("pbm-secret-3", "kid-3", &len);
    expect_forwarded(MANUF, rpt_rebuild(&g_a, ir3, len, &m3), "kid-3 ir (SN0002, allowlisted)");
    free(ir3);
}

/* 4. No identity from the senderKID: a certificate without serialNumber and SKI claimed
 * senderKID "SN0002" and passed the Redis allowlist as that device. */
Test(auth, the_sender_kid_never_names_the_sender)
{
    char key[600];
    size_t len;
    uint8_t *ns = rpt_capture_device(g_dir, g_pki, "ir", "vendor/noserial", &len);
    cr_assert_not_null(ns);
    snprintf(key, sizeof key, "%s/vendor/noserial.key", g_pki);
    struct rpt_mut claim = {.key_file = key, .sender_kid = rp_view_str("SN0002")};
    expect_refused(MANUF, rpt_rebuild(&g_a, ns, len, &claim), RP_FI_BAD_MESSAGE_CHECK,
                   "senderKID is not the certificate's SKI");
    struct rpt_mut plain = {.key_file = key, .no_sender_kid = true};
    expect_refused(MANUF, rpt_rebuild(&g_a, ns, len, &plain), RP_FI_NOT_AUTHORIZED,
                   "no serialNumber: no identity");
    free(ns);
    uint8_t *d1 = rpt_capture_device(g_dir, g_pki, "ir", "vendor/dev1", &len);
    cr_assert_not_null(d1);
    snprintf(key, sizeof key, "%s/vendor/dev1.key", g_pki);
    struct rpt_mut other = {.key_file = key, .sender_kid = rp_view_str("SN0002")};
    expect_refused(MANUF, rpt_rebuild(&g_a, d1, len, &other), RP_FI_BAD_MESSAGE_CHECK,
                   "dev1 with another senderKID");
    struct rpt_mut genuine = {.key_file = key};
    expect_forwarded(MANUF, rpt_rebuild(&g_a, d1, len, &genuine), "dev1 as it is");
    free(d1);
}

/* 5. messageTime is required by default; where a domain lets it be absent, a nonce is
 * remembered beyond 2 * skew (the review replayed such a message 5.5 s later, skew 2 s). */
Test(auth, message_time_is_required_and_nonces_outlive_the_skew, .timeout = 180)
{
    char key[600];
    size_t len;
    uint8_t *d1 = rpt_capture_device(g_dir, g_pki, "ir", "vendor/dev1", &len);
    cr_assert_not_null(d1);
    snprintf(key, sizeof key, "%s/vendor/dev1.key", g_pki);
    struct rpt_mut no_time = {.key_file = key, .no_time = true};
    expect_refused(MANUF, rpt_rebuild(&g_a, d1, len, &no_time), RP_FI_BAD_TIME,
                   "no messageTime in a domain that requires it");
    static const uint8_t nonce[16] = "replayed-nonce-1";
    struct rpt_mut once = {
        .key_file = key, .no_time = true, .nonce = rp_view_make(nonce, sizeof nonce)};
    struct rp_view msg = rpt_rebuild(&g_a, d1, len, &once);
    expect_forwarded(LOOSE, msg, "no messageTime where allowed");
    sleep(6);
    expect_refused(LOOSE, msg, RP_FI_BAD_SENDER_NONCE, "the same message 6 s later");
    free(d1);
}

/* 8. Fail closed at start-up: a Redis URL the runtime would refuse stops raproxy (it ran
 * on in-process state before, ignoring on_redis_failure: closed), without printing the
 * password; so does a key prefix that would break every key. */
Test(auth, a_redis_url_or_prefix_the_runtime_cannot_use_stops_start_up)
{
    static const char *const bad[] = {
        "url: \"redis://user@127.0.0.1:6379\"",
        "url: \"redis://:hunter2-secret@127.0.0.1:0\"",
        "url: \"redis://127.0.0.1:6379\", key_prefix: \"rp{x}\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cfg[2048], path[600], log[600], bin[600];
        snprintf(cfg, sizeof cfg,
                 "listeners:\n  - address: 127.0.0.1:%d\n    tls: off\n"
                 "upstream: {url: \"http://127.0.0.1:9/pkix/\"}\n"
                 "redis: {%s}\n",
                 rpt_free_port(), bad[i]);
        snprintf(path, sizeof path, "%s/bad%zu.yaml", g_dir, i);
        snprintf(log, sizeof log, "%s/bad%zu.log", g_dir, i);
        snprintf(bin, sizeof bin, "%s/raproxy", rpt_bin());
        cr_assert_eq(rpt_write_file(path, cfg, strlen(cfg)), 0);
        const char *run[] = {bin, "--config", path, NULL};
        int st = rpt_run(run, 10000, log);
        cr_expect(st != 0 && st != -1, "case %zu: raproxy ran (exit %d)", i, st);
        cr_expect_eq(rpt_file_count(log, "redis."), 1, "case %zu: %s", i, log);
        cr_expect_eq(rpt_file_count(log, "hunter2"), 0, "case %zu: the password leaked", i);
        const char *check[] = {bin, "--check-config", "--config", path, NULL};
        cr_expect_eq(rpt_run(check, 10000, log), 1, "case %zu: --check-config", i);
    }
}
