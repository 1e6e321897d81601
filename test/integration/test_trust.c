/* The chain check against real certificates and CRLs from scripts/test-pki.sh (issues 14
 * and 20): revocation of every certificate of the chain, CRLs that cannot be used, CA
 * constraints on intermediates, and which signer may speak for the CA. Each attack is a
 * real `openssl cmp` device (or mock CA) through raproxy into a recording relay: the exact
 * failInfo the device got, nothing reaching the CA, and a legitimate control forwarded
 * beside it. */
#include "fixtures.h"
#include "httpc.h"
#include "support.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANUF    ".well-known/cmp/p/manufacturer"
#define CFG_MAX  8192
#define PATH_LEN 600

struct env {
    char *dir;
    const char *pki;
    int port, admin, ca, relay;
    char rec[PATH_LEN], cfg[PATH_LEN];
    struct rpt_proc rp, mock, rel;
};

/* What varies between tests: the manufacturer domain's extra lines, the upstream's extra
 * lines, the mock CA's extra arguments. */
struct setup {
    const char *domain;
    const char *upstream;
    const char *const *mock;
};

static void pki_path(const struct env *e, const char *rel, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", e->pki, rel);
}

static void write_config(struct env *e, const struct setup *s)
{
    char cfg[CFG_MAX];
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
             "    allow: [ir, cr, p10cr, certConf, genm, pollReq, error]\n"
             "    allowlist: %s/vendor/allowlist.txt\n"
             "%s",
             e->port, e->pki, e->pki, e->admin, e->relay, s->upstream ? s->upstream : "", e->pki,
             e->pki, e->pki, e->pki, e->pki, s->domain ? s->domain : "");
    cr_assert_eq(rpt_write_file(e->cfg, cfg, strlen(cfg)), 0);
}

static void up(struct env *e, const struct setup *s)
{
    memset(e, 0, sizeof *e);
    e->pki = rpt_pki();
    cr_assert_not_null(e->pki);
    e->dir = rpt_tmpdir();
    e->port = rpt_free_port();
    e->admin = rpt_free_port();
    e->ca = rpt_free_port();
    e->relay = rpt_free_port();
    char trusted[PATH_LEN], port[16], url[128], script[PATH_LEN];
    pki_path(e, "operator/root.pem", trusted, sizeof trusted);
    cr_assert_eq(rpt_mockca_start(&e->mock, e->dir, e->ca, trusted, s->mock), 0);
    snprintf(e->rec, sizeof e->rec, "%s/sent", e->dir);
    cr_assert_eq(mkdir(e->rec, 0755), 0);
    snprintf(port, sizeof port, "%d", e->relay);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/pkix/", e->ca);
    snprintf(script, sizeof script, "%s/test/integration/record_relay.py", rpt_src());
    const char *argv[] = {"/usr/bin/python3", script, port, url, e->rec, NULL};
    snprintf(e->rel.log, sizeof e->rel.log, "%s/relay.log", e->dir);
    cr_assert_eq(rpt_spawn(&e->rel, argv), 0);
    cr_assert_eq(rpt_wait_port(e->relay, 10000), 0);
    snprintf(e->cfg, sizeof e->cfg, "%s/raproxy.yaml", e->dir);
    write_config(e, s);
    cr_assert_eq(rpt_raproxy_start(&e->rp, e->dir, e->cfg, e->port), 0, "see %s", e->rp.log);
}

static void down(struct env *e)
{
    int st = rpt_stop(&e->rp, SIGTERM, 15000);
    rpt_stop(&e->mock, SIGKILL, 2000);
    rpt_stop(&e->rel, SIGKILL, 2000);
    cr_expect_eq(st, 0, "raproxy exit %d (%s)", st, e->rp.log);
    rpt_rmdir(e->dir);
    free(e->dir);
}

static int sent_count(const struct env *e)
{
    return rpt_dir_count(e->rec, ".der");
}

/* An ir from vendor device `who` (vendor/<who>.pem/.key) with `extra` (a PEM file in the
 * PKI, may be NULL) in extraCerts. Returns openssl's exit status; its log in log. */
static int ir(struct env *e, const char *who, const char *extra, char *log, size_t cap)
{
    char cert[PATH_LEN], key[PATH_LEN], chain[PATH_LEN], out[PATH_LEN];
    snprintf(cert, sizeof cert, "%s/vendor/%s.pem", e->pki, who);
    snprintf(key, sizeof key, "%s/vendor/%s.key", e->pki, who);
    if (extra)
        pki_path(e, extra, chain, sizeof chain);
    snprintf(out, sizeof out, "%s/out.pem", e->dir);
    static int seq;
    snprintf(log, cap, "%s/device-%d-%s.log", e->dir, seq++, who);
    return rpt_device(e->dir, e->port, MANUF, "ir", cert, key, extra ? chain : NULL, out, NULL,
                      log);
}

static void expect_refused(struct env *e, const char *who, const char *extra, const char *failinfo)
{
    char log[PATH_LEN], want[128];
    int before = sent_count(e);
    cr_expect_neq(ir(e, who, extra, log, sizeof log), 0, "%s must not enroll (%s)", who, log);
    snprintf(want, sizeof want, "PKIFailureInfo: %s", failinfo);
    cr_expect_geq(rpt_file_count(log, want), 1, "%s: expected %s, see %s and %s", who, failinfo,
                  log, e->rp.log);
    cr_expect_eq(sent_count(e), before, "%s: the CA must not see a refused request", who);
}

static void expect_forwarded(struct env *e, const char *who, const char *extra)
{
    char log[PATH_LEN];
    int before = sent_count(e);
    cr_expect_eq(ir(e, who, extra, log, sizeof log), 0, "%s must enroll: %s / %s", who, log,
                 e->rp.log);
    cr_expect_gt(sent_count(e), before, "%s: the CA must see the request", who);
}

/* /readyz may be 503 before the upstream was ever reached: its body counts here. */
static char *admin_get(struct env *e, const char *path)
{
    struct rpt_resp r;
    cr_assert_eq(rpt_http(e->admin, "GET", path, NULL, NULL, 0, 5000, &r), 0);
    cr_expect(r.status == 200 || r.status == 503, "%s: %d", path, r.status);
    char *body = strdup(r.body ? (const char *)r.body : "");
    rpt_resp_free(&r);
    return body;
}

/* SIGHUP with a new manufacturer domain and wait until the log shows the reload's verdict
 * (one more `marker` line). */
static void reload(struct env *e, const struct setup *s, const char *marker)
{
    int seen = rpt_file_count(e->rp.log, marker);
    write_config(e, s);
    kill(e->rp.pid, SIGHUP);
    for (int i = 0; i < 100 && rpt_file_count(e->rp.log, marker) <= seen; i++)
        usleep(50000);
    cr_expect_gt(rpt_file_count(e->rp.log, marker), seen, "no '%s' in %s", marker, e->rp.log);
}

/* Issue 14 finding 3: a leaf under a sub-CA that the root's CRL revokes. */
Test(trust, subca_revoked_by_the_roots_crl_is_cert_revoked, .timeout = 120)
{
    char dom[2 * PATH_LEN];
    const char *pki = rpt_pki();
    cr_assert_not_null(pki);
    snprintf(dom, sizeof dom, "    crls: [%s/vendor/crl.pem, %s/vendor/root-crl.pem]\n", pki, pki);
    struct setup s = {.domain = dom};
    struct env e;
    up(&e, &s);
    expect_refused(&e, "dev-subrevoked", "vendor/ica2.pem", "certRevoked");
    expect_refused(&e, "revoked", "vendor/ica.pem", "certRevoked");
    expect_forwarded(&e, "dev1", "vendor/ica.pem");
    char *m = admin_get(&e, "/metrics");
    cr_expect(strstr(m, "raproxy_crl_usable{domain=\"manufacturer\"} 1"), "%s", m);
    cr_expect(strstr(m, "raproxy_crl_revoked_total{domain=\"manufacturer\"} 2"), "%s", m);
    free(m);
    down(&e);
}

/* Issue 14 finding 6: CA:TRUE without keyCertSign, sent in extraCerts or configured; a CA
 * under a pathlen:0 CA; a device outside its CA's nameConstraints. openssl refuses all
 * four. */
Test(trust, intermediates_need_keycertsign_and_respect_pathlen, .timeout = 150)
{
    struct setup s = {0};
    struct env e;
    up(&e, &s);
    expect_refused(&e, "dev-nosign", "vendor/ica-nosign.pem", "signerNotTrusted");
    expect_refused(&e, "dev-deep", "vendor/deep-cas.pem", "signerNotTrusted");
    expect_refused(&e, "dev-nc-bad", "vendor/ica-nc.pem", "signerNotTrusted");
    expect_forwarded(&e, "dev-nc-ok", "vendor/ica-nc.pem");
    expect_forwarded(&e, "dev1", "vendor/ica.pem");
    down(&e);
    char dom[2 * PATH_LEN];
    snprintf(dom, sizeof dom, "    intermediates: [%s/vendor/ica-nosign.pem, %s/vendor/ica.pem]\n",
             rpt_pki(), rpt_pki());
    s.domain = dom;
    up(&e, &s);
    expect_refused(&e, "dev-nosign", NULL, "signerNotTrusted");
    expect_forwarded(&e, "dev1", NULL);
    cr_expect_geq(rpt_file_count(e.rp.log, "lacks keyCertSign"), 1, "%s", e.rp.log);
    down(&e);
}

/* Issue 14 finding 3: a CRL past its nextUpdate refuses the domain (default), is shown on
 * /readyz and in a metric, and a reload to it is not logged as "loaded"; a fresh CRL
 * brings the domain back; crl_stale: warn accepts with a counted warning and still applies
 * the stale CRL's entries. */
Test(trust, stale_crl_refuses_by_default_and_warns_when_told, .timeout = 180)
{
    const char *pki = rpt_pki();
    cr_assert_not_null(pki);
    char good[PATH_LEN + 32], stale[PATH_LEN + 32], warn[2 * PATH_LEN];
    snprintf(good, sizeof good, "    crls: [%s/vendor/crl.pem]\n", pki);
    snprintf(stale, sizeof stale, "    crls: [%s/vendor/crl-stale.pem]\n", pki);
    snprintf(warn, sizeof warn, "    crls: [%s/vendor/crl-stale.pem]\n    crl_stale: warn\n", pki);
    struct setup s = {.domain = good};
    struct env e;
    up(&e, &s);
    expect_forwarded(&e, "dev1", "vendor/ica.pem");
    int loaded = rpt_file_count(e.rp.log, "loaded");
    s.domain = stale;
    reload(&e, &s, "with unusable CRLs");
    cr_expect_eq(rpt_file_count(e.rp.log, "loaded"), loaded, "a stale CRL logged as loaded: %s",
                 e.rp.log);
    expect_refused(&e, "dev1", "vendor/ica.pem", "signerNotTrusted");
    char *r = admin_get(&e, "/readyz");
    cr_expect(strstr(r, "crl manufacturer: refusing"), "%s", r);
    cr_expect(strstr(r, "crl-stale.pem"), "%s", r);
    free(r);
    char *m = admin_get(&e, "/metrics");
    cr_expect(strstr(m, "raproxy_crl_usable{domain=\"manufacturer\"} 0"), "%s", m);
    free(m);
    s.domain = good;
    reload(&e, &s, "loaded");
    expect_forwarded(&e, "dev2", "vendor/ica.pem");
    r = admin_get(&e, "/readyz");
    cr_expect(strstr(r, "crl manufacturer: ok"), "%s", r);
    free(r);
    s.domain = warn;
    reload(&e, &s, "with unusable CRLs");
    expect_forwarded(&e, "dev1", "vendor/ica.pem");
    expect_refused(&e, "revoked", "vendor/ica.pem", "certRevoked");
    m = admin_get(&e, "/metrics");
    cr_expect(strstr(m, "raproxy_crl_warned_total{domain=\"manufacturer\"}"), "%s", m);
    cr_expect(!strstr(m, "raproxy_crl_warned_total{domain=\"manufacturer\"} 0"), "%s", m);
    free(m);
    down(&e);
}

/* Issue 14 finding 3: a CRL not signed by the issuer it names (issuer sent in extraCerts, or
 * configured), and a file that is no CRL at all, refuse; the same device passes with the
 * genuine CRL. */
Test(trust, wrongly_signed_or_unparseable_crl_refuses, .timeout = 180)
{
    const char *pki = rpt_pki();
    cr_assert_not_null(pki);
    char forged[PATH_LEN + 32], forged_conf[2 * PATH_LEN], garbage[2 * PATH_LEN];
    snprintf(forged, sizeof forged, "    crls: [%s/vendor/crl-forged.pem]\n", pki);
    struct setup s = {.domain = forged};
    struct env e;
    up(&e, &s);
    expect_refused(&e, "dev1", "vendor/ica.pem", "signerNotTrusted");
    char *r = admin_get(&e, "/readyz");
    cr_expect(strstr(r, "crl manufacturer: refusing"), "%s", r);
    cr_expect(strstr(r, "does not verify"), "%s", r);
    free(r);
    snprintf(forged_conf, sizeof forged_conf,
             "    intermediates: [%s/vendor/ica.pem]\n    crls: [%s/vendor/crl-forged.pem]\n", pki,
             pki);
    s.domain = forged_conf;
    reload(&e, &s, "with unusable CRLs");
    expect_refused(&e, "dev1", "vendor/ica.pem", "signerNotTrusted");
    char bad[PATH_LEN];
    snprintf(bad, sizeof bad, "%s/not-a-crl.pem", e.dir);
    const char junk[] = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
    cr_assert_eq(rpt_write_file(bad, junk, strlen(junk)), 0);
    snprintf(garbage, sizeof garbage, "    crls: [%s]\n", bad);
    s.domain = garbage;
    reload(&e, &s, "with unusable CRLs");
    expect_refused(&e, "dev1", "vendor/ica.pem", "signerNotTrusted");
    char good[PATH_LEN + 32];
    snprintf(good, sizeof good, "    crls: [%s/vendor/crl.pem]\n", pki);
    s.domain = good;
    reload(&e, &s, "loaded");
    expect_forwarded(&e, "dev1", "vendor/ica.pem");
    expect_refused(&e, "revoked", "vendor/ica.pem", "certRevoked");
    down(&e);
}

/* Issue 14 finding 7: with upstream.ca_trust naming the operator root, an answer signed by
 * a device certificate under that root is not the CA's; the mock CA's own certificate,
 * named by subject (ca_signers) or pinned in ca_trust, is. */
Test(trust, ca_answers_only_from_a_configured_ca_certificate, .timeout = 180)
{
    const char *pki = rpt_pki();
    cr_assert_not_null(pki);
    char by_subject[2 * PATH_LEN], pinned[PATH_LEN + 32], dev_cert[PATH_LEN], dev_key[PATH_LEN];
    snprintf(by_subject, sizeof by_subject,
             "  ca_trust: %s/operator/root.pem\n  ca_signers: [\"O=Operator, CN=Mock CA\"]\n", pki);
    snprintf(pinned, sizeof pinned, "  ca_trust: %s/ca/srv.pem\n", pki);
    snprintf(dev_cert, sizeof dev_cert, "%s/operator/device.pem", pki);
    snprintf(dev_key, sizeof dev_key, "%s/operator/device.key", pki);
    const char *as_device[] = {"-srv_cert", dev_cert, "-srv_key", dev_key, NULL};
    struct env e;
    struct setup s = {.upstream = by_subject};
    up(&e, &s);
    expect_forwarded(&e, "dev1", "vendor/ica.pem");
    down(&e);
    s.mock = as_device;
    up(&e, &s);
    char log[PATH_LEN];
    cr_expect_neq(ir(&e, "dev1", "vendor/ica.pem", log, sizeof log), 0);
    cr_expect_geq(rpt_file_count(log, "PKIFailureInfo: systemUnavail"), 1, "%s", log);
    cr_expect_geq(rpt_file_count(e.rp.log, "not signed by a configured CA certificate"), 1, "%s",
                  e.rp.log);
    down(&e);
    s.upstream = pinned;
    up(&e, &s);
    cr_expect_neq(ir(&e, "dev1", "vendor/ica.pem", log, sizeof log), 0);
    cr_expect_geq(rpt_file_count(log, "PKIFailureInfo: systemUnavail"), 1, "%s", log);
    down(&e);
    s.mock = NULL;
    up(&e, &s);
    expect_forwarded(&e, "dev1", "vendor/ica.pem");
    down(&e);
}
