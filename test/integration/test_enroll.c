/* The enrollment lifecycle end to end with real processes: openssl cmp devices over TLS →
 * raproxy (manufacturer and operator domains) → recording relay → openssl cmp mock CA
 * that trusts only the operator root, so it accepts the RA's protection and would refuse a
 * device's own. Each refusal is checked by the failInfo the device received (the device
 * verified the RA's signature on it) and by the CA never having seen the request. */
#include "fixtures.h"
#include "httpc.h"
#include "support.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MANUF ".well-known/cmp/p/manufacturer"
#define OPER  ".well-known/cmp/p/operator"

/* extra lines for the upstream section (ca_trust tests) */
static char g_upstream_extra[700];

struct e2e {
    char *dir;
    const char *pki;
    int port, admin, ca, relay;
    char rec[600]; /* what raproxy sent to the CA */
    struct rpt_proc rp, mock, rel;
};

static void p(char *buf, size_t cap, const struct e2e *e, const char *rel)
{
    snprintf(buf, cap, "%s/%s", e->pki, rel);
}

static void up_with(struct e2e *e, const char *operator_forward, const char *const *mock_extra,
                    const char *manuf_extra)
{
    memset(e, 0, sizeof *e);
    e->pki = rpt_pki();
    cr_assert_not_null(e->pki);
    e->dir = rpt_tmpdir();
    e->port = rpt_free_port();
    e->admin = rpt_free_port();
    e->ca = rpt_free_port();
    e->relay = rpt_free_port();
    char trusted[600];
    p(trusted, sizeof trusted, e, "operator/root.pem");
    cr_assert_eq(rpt_mockca_start(&e->mock, e->dir, e->ca, trusted, mock_extra), 0);
    snprintf(e->rec, sizeof e->rec, "%s/sent", e->dir);
    char mkdir_cmd[700], port[16], url[128], script[600];
    snprintf(mkdir_cmd, sizeof mkdir_cmd, "%s", e->rec);
    cr_assert_eq(mkdir(mkdir_cmd, 0755), 0);
    snprintf(port, sizeof port, "%d", e->relay);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/pkix/", e->ca);
    snprintf(script, sizeof script, "%s/test/integration/record_relay.py", rpt_src());
    const char *argv[] = {"/usr/bin/python3", script, port, url, e->rec, NULL};
    snprintf(e->rel.log, sizeof e->rel.log, "%s/relay.log", e->dir);
    cr_assert_eq(rpt_spawn(&e->rel, argv), 0);
    cr_assert_eq(rpt_wait_port(e->relay, 10000), 0);
    char cfg[8192], path[600];
    snprintf(cfg, sizeof cfg,
             "listeners:\n"
             "  - address: 127.0.0.1:%d\n"
             "    tls: {cert: %s/tls/server.pem, key: %s/tls/server.key}\n"
             "admin: {address: 127.0.0.1:%d}\n"
             "upstream:\n  url: \"http://127.0.0.1:%d/pkix/\"\n  max_connections: 1\n"
             "  keep_alive: false\n  timeout_ms: 20000\n%s"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
             "chain: %s/operator/ra.chain.pem}\n"
             "domains:\n"
             "  - name: manufacturer\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    crls: [%s/vendor/crl.pem]\n"
             "    allow: [ir, cr, p10cr, certConf, genm, pollReq, error]\n"
             "    allowlist: %s/vendor/allowlist.txt\n"
             "%s"
             "  - name: operator\n"
             "    trust_anchors: [%s/operator/root.pem]\n"
             "    intermediates: [%s/operator/ica.pem]\n"
             "    allow: [kur, rr, certConf, genm, pollReq, error]\n"
             "    forward: %s\n",
             e->port, e->pki, e->pki, e->admin, e->relay, g_upstream_extra, e->pki, e->pki, e->pki,
             e->pki, e->pki, e->pki, manuf_extra ? manuf_extra : "", e->pki, e->pki,
             operator_forward ? operator_forward : "reprotect");
    snprintf(path, sizeof path, "%s/raproxy.yaml", e->dir);
    cr_assert_eq(rpt_write_file(path, cfg, strlen(cfg)), 0);
    cr_assert_eq(rpt_raproxy_start(&e->rp, e->dir, path, e->port), 0, "see %s", e->rp.log);
}

static void up(struct e2e *e, const char *operator_forward, const char *const *mock_extra)
{
    up_with(e, operator_forward, mock_extra, NULL);
}

static void down(struct e2e *e)
{
    int st = rpt_stop(&e->rp, SIGTERM, 15000);
    rpt_stop(&e->mock, SIGKILL, 2000);
    rpt_stop(&e->rel, SIGKILL, 2000);
    cr_expect_eq(st, 0, "raproxy exit %d (%s)", st, e->rp.log);
    rpt_rmdir(e->dir);
    free(e->dir);
}

static int sent_count(const struct e2e *e)
{
    return rpt_dir_count(e->rec, ".der");
}

/* A device run; returns openssl's exit status, its output in log. */
static int device(struct e2e *e, const char *path, const char *cmd, const char *who,
                  const char *extracerts, const char *const *extra, char *log, size_t cap)
{
    char cert[600], key[600], ica[600], out[600];
    snprintf(cert, sizeof cert, "%s/%s.pem", e->pki, who);
    snprintf(key, sizeof key, "%s/%s.key", e->pki, who);
    if (extracerts)
        p(ica, sizeof ica, e, extracerts);
    snprintf(out, sizeof out, "%s/out-%s.pem", e->dir, cmd);
    static int seq;
    snprintf(log, cap, "%s/device-%d-%s.log", e->dir, seq++, cmd);
    bool wants_out = strcmp(cmd, "genm") && strcmp(cmd, "rr");
    return rpt_device(e->dir, e->port, path, cmd, cert, key, extracerts ? ica : NULL,
                      wants_out ? out : NULL, extra, log);
}

static void expect_refused(struct e2e *e, const char *who, const char *extracerts,
                           const char *failinfo)
{
    char log[600];
    int before = sent_count(e);
    int rc = device(e, MANUF, "ir", who, extracerts, NULL, log, sizeof log);
    cr_expect_neq(rc, 0, "%s must not enroll", who);
    char want[128];
    snprintf(want, sizeof want, "PKIFailureInfo: %s", failinfo);
    cr_expect_geq(rpt_file_count(log, want), 1, "%s: expected %s, see %s", who, failinfo, log);
    cr_expect_eq(sent_count(e), before, "%s: the CA must not see a refused request", who);
}

Test(enroll, ir_with_vendor_certificate_then_certconf_is_reprotected, .timeout = 120)
{
    struct e2e e;
    up(&e, NULL, NULL);
    char log[600], devreq[600];
    snprintf(devreq, sizeof devreq, "%s/device-ir.der", e.dir);
    const char *extra[] = {"-reqout", devreq, NULL};
    int rc = device(&e, MANUF, "ir", "vendor/dev1", "vendor/ica.pem", extra, log, sizeof log);
    cr_assert_eq(rc, 0, "ir failed, see %s and %s", log, e.rp.log);
    cr_expect_geq(rpt_file_count(log, "received PKICONF"), 1);
    cr_expect_eq(sent_count(&e), 2, "ir and certConf reached the CA");
    /* every signature check and RA signature ran on a worker, none on the loop */
    struct rpt_resp r;
    cr_assert_eq(rpt_http(e.admin, "GET", "/metrics", NULL, NULL, 0, 5000, &r), 0);
    cr_expect(strstr((char *)r.body, "raproxy_crypto_on_loop_total 0\n"), "%s", r.body);
    cr_expect(strstr((char *)r.body, "raproxy_worker_jobs_total{result=\"ok\"} 2"), "%s", r.body);
    rpt_resp_free(&r);
    /* the CA got the RA's protection, with the device's transaction fields and body */
    char sent[700], script[600];
    snprintf(sent, sizeof sent, "%s/001.der", e.rec);
    snprintf(script, sizeof script, "%s/test/integration/check_reprotected.py", rpt_src());
    const char *chk[] = {"/usr/bin/python3", script, sent, devreq, NULL};
    char chklog[700];
    snprintf(chklog, sizeof chklog, "%s/check.log", e.dir);
    cr_expect_eq(rpt_run(chk, 30000, chklog), 0, "see %s", chklog);
    down(&e);
}

Test(enroll, cr_p10cr_and_implicit_confirm, .timeout = 180)
{
    struct e2e e;
    const char *mock[] = {"-grant_implicitconf", NULL};
    up(&e, NULL, mock);
    char log[600];
    cr_expect_eq(device(&e, MANUF, "cr", "vendor/dev2", "vendor/ica.pem", NULL, log, sizeof log), 0,
                 "cr: %s", log);
    char csr[600], key[600];
    snprintf(csr, sizeof csr, "%s/dev.csr", e.dir);
    p(key, sizeof key, &e, "ca/issued.key");
    const char *req[] = {
        "openssl", "req", "-new", "-key", key, "-subj", "/CN=Device 1/serialNumber=SN0001",
        "-out",    csr,   NULL};
    cr_assert_eq(rpt_run(req, 20000, NULL), 0);
    const char *p10[] = {"-csr", csr, NULL};
    cr_expect_eq(device(&e, MANUF, "p10cr", "vendor/dev1", "vendor/ica.pem", p10, log, sizeof log),
                 0, "p10cr: %s", log);
    const char *ic[] = {"-implicit_confirm", NULL};
    cr_expect_eq(device(&e, MANUF, "ir", "vendor/dev1", "vendor/ica.pem", ic, log, sizeof log), 0,
                 "implicit confirm: %s", log);
    cr_expect_eq(rpt_file_count(log, "sending CERTCONF"), 0, "no certConf with implicitConfirm");
    down(&e);
}

Test(enroll, polling_and_genm, .timeout = 180)
{
    struct e2e e;
    const char *mock[] = {"-poll_count", "2", "-check_after", "1", NULL};
    up(&e, NULL, mock);
    char log[600];
    cr_expect_eq(device(&e, MANUF, "ir", "vendor/dev1", "vendor/ica.pem", NULL, log, sizeof log), 0,
                 "polled ir: %s", log);
    cr_expect_geq(rpt_file_count(log, "received POLLREP"), 1, "%s", log);
    cr_expect_eq(device(&e, MANUF, "genm", "vendor/dev1", "vendor/ica.pem", NULL, log, sizeof log),
                 0, "genm: %s", log);
    cr_expect_geq(rpt_file_count(log, "received GENP"), 1, "%s", log);
    down(&e);
}

Test(enroll, kur_forwarded_unchanged_and_rr_reprotected, .timeout = 180)
{
    struct e2e e;
    up(&e, "reprotect", NULL);
    char log[600], old[600];
    p(old, sizeof old, &e, "ca/issued.pem");
    const char *kur[] = {"-oldcert", old, NULL};
    cr_expect_eq(device(&e, OPER, "kur", "ca/issued", "operator/ica.pem", kur, log, sizeof log), 0,
                 "kur: %s / %s", log, e.rp.log);
    const char *rr[] = {"-oldcert", old, "-revreason", "1", NULL};
    cr_expect_eq(device(&e, OPER, "rr", "ca/issued", "operator/ica.pem", rr, log, sizeof log), 0,
                 "rr: %s / %s", log, e.rp.log);
    down(&e);
}

/* OpenSSL 3.0's mock CA does not process nested bodies (EJBCA does): it answers them with
 * an error, which must come back to the device; what raproxy sent is checked on its own. */
Test(enroll, kur_nested_wraps_the_device_request_under_the_ra_signature, .timeout = 180)
{
    struct e2e e;
    up(&e, "nested", NULL);
    char log[600], old[600], devreq[600];
    p(old, sizeof old, &e, "ca/issued.pem");
    snprintf(devreq, sizeof devreq, "%s/device-kur.der", e.dir);
    const char *kur[] = {"-oldcert", old, "-reqout", devreq, NULL};
    device(&e, OPER, "kur", "ca/issued", "operator/ica.pem", kur, log, sizeof log);
    cr_expect_geq(rpt_file_count(log, "unexpected pkibody"), 1, "CA answer relayed: %s", log);
    cr_assert_eq(sent_count(&e), 1);
    char sent[700], script[600], ra[600], chklog[700];
    snprintf(sent, sizeof sent, "%s/001.der", e.rec);
    snprintf(script, sizeof script, "%s/test/integration/check_nested.py", rpt_src());
    p(ra, sizeof ra, &e, "operator/ra.pem");
    snprintf(chklog, sizeof chklog, "%s/check.log", e.dir);
    const char *chk[] = {"/usr/bin/python3", script, sent, devreq, ra, NULL};
    cr_expect_eq(rpt_run(chk, 30000, chklog), 0, "see %s", chklog);
    down(&e);
}

Test(enroll, refusals_carry_the_exact_failinfo_and_never_reach_the_ca, .timeout = 240)
{
    struct e2e e;
    up(&e, NULL, NULL);
    expect_refused(&e, "unknown/dev", NULL, "signerNotTrusted");
    expect_refused(&e, "vendor/notlisted", "vendor/ica.pem", "notAuthorized");
    expect_refused(&e, "vendor/expired", "vendor/ica.pem", "signerNotTrusted");
    expect_refused(&e, "vendor/revoked", "vendor/ica.pem", "certRevoked");
    /* a forged intermediate in extraCerts (CA:TRUE, named like the vendor CA, signed by an
     * attacker's key) must not become trusted: the device under it is refused */
    char sh[4096];
    snprintf(
        sh, sizeof sh,
        "set -e; cd %s; "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "-keyout evil-root.key -out evil-root.pem -subj '/C=DE/O=Vendor/CN=Vendor Root CA' "
        "-days 30 2>/dev/null; "
        "printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign,cRLSign\\n' > "
        "ca.ext; "
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout evil-ica.key "
        "-out evil-ica.csr -subj '/C=DE/O=Vendor/CN=Vendor ICA' 2>/dev/null; "
        "openssl x509 -req -in evil-ica.csr -CA evil-root.pem -CAkey evil-root.key "
        "-CAcreateserial -days 30 -extfile ca.ext -out evil-ica.pem 2>/dev/null; "
        "printf 'keyUsage=critical,digitalSignature\\n' > ee.ext; "
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout evil.key "
        "-out evil.csr -subj '/C=DE/O=Vendor/CN=Device 1/serialNumber=SN0001' 2>/dev/null; "
        "openssl x509 -req -in evil.csr -CA evil-ica.pem -CAkey evil-ica.key "
        "-CAcreateserial -days 30 -extfile ee.ext -out evil.pem 2>/dev/null",
        e.dir);
    const char *mk[] = {"bash", "-c", sh, NULL};
    cr_assert_eq(rpt_run(mk, 30000, NULL), 0);
    char evil[600], evkey[600], evica[600];
    snprintf(evil, sizeof evil, "%s/evil.pem", e.dir);
    snprintf(evkey, sizeof evkey, "%s/evil.key", e.dir);
    snprintf(evica, sizeof evica, "%s/evil-ica.pem", e.dir);
    char elog[600], newkey[600], tlsca[600], trusted[600], untrusted[600], server[64];
    snprintf(elog, sizeof elog, "%s/device-evil.log", e.dir);
    p(newkey, sizeof newkey, &e, "ca/issued.key");
    p(tlsca, sizeof tlsca, &e, "tls/ca.pem");
    p(trusted, sizeof trusted, &e, "operator/root.pem");
    p(untrusted, sizeof untrusted, &e, "ca/chain.pem");
    snprintf(server, sizeof server, "127.0.0.1:%d", e.port);
    int before_evil = sent_count(&e);
    const char *ev[] = {"openssl",    "cmp",         "-cmd",      "ir",        "-server",
                        server,       "-path",       MANUF,       "-tls_used", "-tls_trusted",
                        tlsca,        "-tls_host",   "localhost", "-trusted",  trusted,
                        "-untrusted", untrusted,     "-cert",     evil,        "-key",
                        evkey,        "-extracerts", evica,       "-newkey",   newkey,
                        "-subject",   "/CN=x",       "-certout",  elog,        NULL};
    cr_expect_neq(rpt_run(ev, 60000, elog), 0, "a forged intermediate must not be trusted");
    cr_expect_geq(rpt_file_count(elog, "PKIFailureInfo: signerNotTrusted"), 1, "%s", elog);
    cr_expect_eq(sent_count(&e), before_evil);
    /* a device certificate in the wrong domain: the operator root doesn't know it */
    char log[600];
    int before = sent_count(&e);
    cr_expect_neq(device(&e, OPER, "ir", "vendor/dev1", "vendor/ica.pem", NULL, log, sizeof log),
                  0);
    cr_expect_geq(rpt_file_count(log, "PKIFailureInfo: notAuthorized"), 1, "%s", log);
    cr_expect_eq(sent_count(&e), before);
    down(&e);
}

/* POST raw bytes and decode the answer with raproxy-cmpdump. */
static void post_and_dump(struct e2e *e, const uint8_t *msg, size_t len, char *json, size_t cap)
{
    /* the TLS listener needs a TLS client: curl does it */
    char in[600], out[600], cmd[2048];
    snprintf(in, sizeof in, "%s/post.der", e->dir);
    snprintf(out, sizeof out, "%s/answer.der", e->dir);
    cr_assert_eq(rpt_write_file(in, msg, len), 0);
    snprintf(cmd, sizeof cmd,
             "curl -s --cacert %s/tls/ca.pem --resolve localhost:%d:127.0.0.1 "
             "-H 'Content-Type: application/pkixcmp' --data-binary @%s -o %s "
             "https://localhost:%d/" MANUF " && %s/raproxy-cmpdump %s",
             e->pki, e->port, in, out, e->port, rpt_bin(), out);
    char log[600];
    snprintf(log, sizeof log, "%s/dump.json", e->dir);
    unlink(log);
    const char *argv[] = {"bash", "-c", cmd, NULL};
    rpt_run(argv, 30000, log);
    size_t n;
    char *s = (char *)rpt_read_file(log, &n);
    snprintf(json, cap, "%s", s ? s : "");
    free(s);
}

Test(enroll, tampered_and_replayed_messages_are_refused, .timeout = 180)
{
    struct e2e e;
    up(&e, NULL, NULL);
    /* a genuine ir, captured without sending it anywhere useful */
    char req[600], log[600];
    snprintf(req, sizeof req, "%s/genuine.der", e.dir);
    const char *extra[] = {"-reqout", req, NULL};
    cr_assert_eq(device(&e, MANUF, "ir", "vendor/dev1", "vendor/ica.pem", extra, log, sizeof log),
                 0, "%s", log);
    size_t len;
    uint8_t *msg = rpt_read_file(req, &len);
    cr_assert_not_null(msg);
    int before = sent_count(&e);
    char json[8192];
    /* replay: the same bytes again */
    post_and_dump(&e, msg, len, json, sizeof json);
    cr_expect(strstr(json, "badSenderNonce"), "replay: %s", json);
    /* tampered: one bit of the protected body flipped */
    msg[len / 2] ^= 0x01;
    post_and_dump(&e, msg, len, json, sizeof json);
    cr_expect(strstr(json, "badMessageCheck") || strstr(json, "badDataFormat") ||
                  strstr(json, "badPOP") || strstr(json, "signerNotTrusted"),
              "tampered: %s", json);
    cr_expect_eq(sent_count(&e), before, "neither reached the CA");
    free(msg);
    down(&e);
}

/* EJBCA's allowraverifypopo: the RA has checked the POP, so it sends raVerified instead. */
Test(enroll, pop_ra_verified_replaces_the_device_pop, .timeout = 120)
{
    struct e2e e;
    const char *mock[] = {"-accept_raverified", NULL};
    up_with(&e, NULL, mock, "    pop: ra_verified\n");
    char log[600];
    cr_expect_eq(device(&e, MANUF, "ir", "vendor/dev1", "vendor/ica.pem", NULL, log, sizeof log), 0,
                 "%s / %s", log, e.rp.log);
    char dump[700], cmd[1200];
    snprintf(dump, sizeof dump, "%s/dump.json", e.dir);
    snprintf(cmd, sizeof cmd, "%s/raproxy-cmpdump %s/001.der", rpt_bin(), e.rec);
    const char *argv[] = {"bash", "-c", cmd, NULL};
    rpt_run(argv, 20000, dump);
    cr_expect_geq(rpt_file_count(dump, "raVerified"), 1, "the CA got raVerified: see %s", dump);
    down(&e);
}

/* upstream.ca_trust: the CA's answers must be signed by a configured CA certificate (here
 * the mock CA's, named by subject under the operator root; test_trust.c has the rest). */
Test(enroll, ca_trust_accepts_the_ca_and_refuses_an_untrusted_signer, .timeout = 120)
{
    const char *pki = rpt_pki();
    cr_assert_not_null(pki);
    snprintf(g_upstream_extra, sizeof g_upstream_extra,
             "  ca_trust: %s/operator/root.pem\n  ca_signers: [\"O=Operator, CN=Mock CA\"]\n", pki);
    struct e2e e;
    up(&e, NULL, NULL);
    char log[600];
    cr_expect_eq(device(&e, MANUF, "ir", "vendor/dev1", "vendor/ica.pem", NULL, log, sizeof log), 0,
                 "trusted CA: %s / %s", log, e.rp.log);
    down(&e);
    snprintf(g_upstream_extra, sizeof g_upstream_extra, "  ca_trust: %s/vendor/root.pem\n", pki);
    up(&e, NULL, NULL);
    cr_expect_neq(device(&e, MANUF, "ir", "vendor/dev1", "vendor/ica.pem", NULL, log, sizeof log),
                  0);
    cr_expect_geq(rpt_file_count(log, "PKIFailureInfo: systemUnavail"), 1, "%s", log);
    cr_expect_geq(rpt_file_count(log, "not signed by a trusted CA"), 1, "%s", log);
    g_upstream_extra[0] = 0;
    down(&e);
}

/* MAC protection (PBM, RFC 9810 5.1.3.1): the device has no certificate yet, only a shared
 * secret named by senderKID; raproxy checks the MAC and the CA sees the RA's signature. */
Test(enroll, pbm_protected_ir_is_verified_and_reprotected, .timeout = 120)
{
    const char *pki = rpt_pki();
    cr_assert_not_null(pki);
    char extra[700];
    snprintf(extra, sizeof extra, "    protection: both\n    mac_secrets: %s/mac/secrets.txt\n",
             pki);
    struct e2e e;
    up_with(&e, NULL, NULL, extra);
    char server[64], tlsca[600], trusted[600], untrusted[600], newkey[600], out[600], log[600];
    snprintf(server, sizeof server, "127.0.0.1:%d", e.port);
    p(tlsca, sizeof tlsca, &e, "tls/ca.pem");
    p(trusted, sizeof trusted, &e, "operator/root.pem");
    p(untrusted, sizeof untrusted, &e, "ca/chain.pem");
    p(newkey, sizeof newkey, &e, "ca/issued.key");
    snprintf(out, sizeof out, "%s/mac-cert.pem", e.dir);
    snprintf(log, sizeof log, "%s/device-mac.log", e.dir);
    const char *argv[] = {"openssl",
                          "cmp",
                          "-cmd",
                          "ir",
                          "-server",
                          server,
                          "-path",
                          MANUF,
                          "-tls_used",
                          "-tls_trusted",
                          tlsca,
                          "-tls_host",
                          "localhost",
                          "-trusted",
                          trusted,
                          "-untrusted",
                          untrusted,
                          "-secret",
                          "pass:pbm-secret-1",
                          "-ref",
                          "kid-1",
                          "-newkey",
                          newkey,
                          "-subject",
                          "/CN=Device 1/serialNumber=SN0001",
                          "-certout",
                          out,
                          NULL};
    cr_expect_eq(rpt_run(argv, 60000, log), 0, "%s / %s", log, e.rp.log);
    cr_expect_eq(sent_count(&e), 2, "ir and certConf reached the CA re-protected");
    /* the wrong secret: badMessageCheck, never forwarded */
    int before = sent_count(&e);
    argv[18] = "pass:wrong-secret";
    snprintf(log, sizeof log, "%s/device-mac-bad.log", e.dir);
    cr_expect_neq(rpt_run(argv, 60000, log), 0);
    cr_expect_geq(rpt_file_count(log, "PKIFailureInfo: badMessageCheck"), 1, "%s", log);
    cr_expect_eq(sent_count(&e), before);
    /* kid-2's secret is right, but the kid stands for no allowlisted device (it has no
     * serial=, so it is its own serial): a MAC kid passes the allowlist like a certificate */
    argv[18] = "pass:pbm-secret-2";
    argv[20] = "kid-2";
    snprintf(log, sizeof log, "%s/device-mac-kid2.log", e.dir);
    cr_expect_neq(rpt_run(argv, 60000, log), 0);
    cr_expect_geq(rpt_file_count(log, "PKIFailureInfo: notAuthorized"), 1, "%s", log);
    cr_expect_eq(sent_count(&e), before);
    down(&e);
}

/* template: rewrite (RFC 9483 5.2.3.2): whatever subject the device asks for, the CA gets the
 * one the RA writes from the device's identity, with raVerified (the RA checked the POP);
 * the full enrollment goes through the real mock CA. */
Test(enroll, rewrite_enrolls_with_the_subject_the_ra_writes, .timeout = 120)
{
    struct e2e e;
    const char *mock[] = {"-accept_raverified", NULL};
    up_with(&e, NULL, mock,
            "    template:\n"
            "      mode: rewrite\n"
            "      subject: \"O=Operator, CN=Device {serial}, serialNumber={serial}\"\n");
    char log[600];
    const char *lie[] = {"-subject", "/CN=Someone else/serialNumber=SN0002", NULL};
    cr_expect_eq(device(&e, MANUF, "ir", "vendor/dev1", "vendor/ica.pem", lie, log, sizeof log), 0,
                 "%s / %s", log, e.rp.log);
    cr_expect_eq(sent_count(&e), 2, "ir and certConf");
    char dump[700], cmd[1200];
    snprintf(dump, sizeof dump, "%s/dump.json", e.dir);
    snprintf(cmd, sizeof cmd, "%s/raproxy-cmpdump %s/001.der", rpt_bin(), e.rec);
    const char *argv[] = {"bash", "-c", cmd, NULL};
    rpt_run(argv, 20000, dump);
    cr_expect_geq(rpt_file_count(dump, "raVerified"), 1, "see %s", dump);
    cr_expect_geq(rpt_file_count(dump, "O=Operator, CN=Device SN0001, serialNumber=SN0001"), 1,
                  "the subject the RA wrote: see %s", dump);
    cr_expect_eq(rpt_file_count(dump, "SN0002"), 0, "the device's wish is gone: see %s", dump);
    down(&e);
}
