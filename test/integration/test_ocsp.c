/* The OCSP relay end to end: `openssl ocsp -url` as the device → raproxy (plain listener,
 * `validation` section) → `openssl ocsp -port` as the VA, with a delegated responder
 * certificate issued by the vendor ICA. Also the `validation` configuration checks. */
#include "fixtures.h"
#include "httpc.h"
#include "support.h"

#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/ocsp.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* In the test's directory: resp.pem/key (delegated responder, EKU OCSPSigning, issued by
 * vendor ica), forged.pem/key (same names, issued by an unrelated key), index.txt (dev1
 * valid, revoked.pem revoked, dev2 unknown). */
static const char va_script[] =
    "set -eu\n"
    "P=$1; cd \"$2\"; V=$P/vendor\n"
    "printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature\\n"
    "extendedKeyUsage=OCSPSigning\\nsubjectKeyIdentifier=hash\\nauthorityKeyIdentifier=keyid\\n'"
    " > resp.ext\n"
    "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\"; }\n"
    "issue() { key \"$1.key\"; openssl req -new -key \"$1.key\" -subj \"$2\" -out \"$1.csr\"\n"
    "  openssl x509 -req -in \"$1.csr\" -CA \"$3\" -CAkey \"$4\" -set_serial 0x4f01 -days 365 "
    "-extfile resp.ext -out \"$1.pem\"; }\n"
    "issue resp '/C=DE/O=Vendor/CN=Vendor OCSP' $V/ica.pem $V/ica.key\n"
    "key fakeca.key\n"
    "openssl req -x509 -new -key fakeca.key -subj '/C=DE/O=Vendor/CN=Vendor ICA' -days 365 "
    "-out fakeca.pem\n"
    "issue forged '/C=DE/O=Vendor/CN=Vendor OCSP' fakeca.pem fakeca.key\n"
    "row() { s=$(openssl x509 -in \"$1\" -noout -serial | cut -d= -f2)\n"
    "  printf '%s\\t351231235959Z\\t%s\\t%s\\tunknown\\t/CN=x\\n' \"$2\" \"$3\" \"$s\"; }\n"
    "{ row $V/dev1.pem V ''; row $V/revoked.pem R 240101000000Z,keyCompromise; } > index.txt\n"
    "openssl ocsp -issuer $V/ica.pem -cert $V/dev1.pem -no_nonce -reqout req-good.der\n";

enum va_kind { VA_GENUINE, VA_FORGED, VA_DOWN, VA_NOT_OCSP };

struct env {
    char *dir;
    const char *pki;
    int port, admin_port, va_port;
    char cfg[600];
    struct rpt_proc va, rp;
};

/* Children of a test that failed half-way (a failed assertion skips env_down). */
static pid_t g_children[2];

static void reap(void)
{
    for (int i = 0; i < 2; i++)
        if (g_children[i] > 0) {
            struct rpt_proc p = {.pid = g_children[i]};
            rpt_stop(&p, SIGKILL, 2000);
            g_children[i] = 0;
        }
}

static void va_start(struct env *e, enum va_kind kind)
{
    static char port[16], index[600], ca[600], signer[600], key[600];
    snprintf(port, sizeof port, "%d", e->va_port);
    snprintf(index, sizeof index, "%s/index.txt", e->dir);
    snprintf(ca, sizeof ca, "%s/vendor/ica.pem", e->pki);
    const char *who = kind == VA_FORGED ? "forged" : "resp";
    snprintf(signer, sizeof signer, "%s/%s.pem", e->dir, who);
    snprintf(key, sizeof key, "%s/%s.key", e->dir, who);
    if (kind == VA_DOWN)
        return;
    if (kind == VA_NOT_OCSP) { /* answers 501 to every POST */
        const char *argv[] = {"python3",   "-m",          "http.server", port, "--bind",
                              "127.0.0.1", "--directory", e->dir,        NULL};
        cr_assert_eq(rpt_spawn(&e->va, argv), 0);
        g_children[0] = e->va.pid;
    } else {
        const char *argv[] = {"openssl", "ocsp", "-port",       port,       "-index", index,
                              "-CA",     ca,     "-rsigner",    signer,     "-rkey",  key,
                              "-nmin",   "60",   "-ignore_err", "-timeout", "5",      NULL};
        cr_assert_eq(rpt_spawn(&e->va, argv), 0);
        g_children[0] = e->va.pid;
    }
    if (kind == VA_NOT_OCSP) {
        cr_assert_eq(rpt_wait_port(e->va_port, 10000), 0, "VA did not start");
        return;
    }
    /* `openssl ocsp -port` hangs on a connection closed without a request: wait for its
     * banner instead of probing the port */
    for (int i = 0; i < 500 && rpt_file_count(e->va.log, "waiting for OCSP client") == 0; i++)
        usleep(20000);
    cr_assert_eq(rpt_file_count(e->va.log, "waiting for OCSP client"), 1,
                 "VA did not start, see %s", e->va.log);
}

static void env_up(struct env *e, enum va_kind kind)
{
    memset(e, 0, sizeof *e);
    e->pki = rpt_pki();
    cr_assert_not_null(e->pki, "test PKI (scripts/test-pki.sh) failed");
    e->dir = rpt_tmpdir();
    char script[700], log[700];
    snprintf(script, sizeof script, "%s/va.sh", e->dir);
    snprintf(log, sizeof log, "%s/va-setup.log", e->dir);
    cr_assert_eq(rpt_write_file(script, va_script, strlen(va_script)), 0);
    const char *argv[] = {"bash", script, e->pki, e->dir, NULL};
    cr_assert_eq(rpt_run(argv, 60000, log), 0, "VA setup failed, see %s", log);
    e->port = rpt_free_port();
    e->admin_port = rpt_free_port();
    e->va_port = rpt_free_port();
    va_start(e, kind);
    char buf[4096];
    snprintf(buf, sizeof buf,
             "log_level: info\n"
             "listeners:\n"
             "  - address: 127.0.0.1:%d\n"
             "    tls: off\n"
             "admin:\n"
             "  address: 127.0.0.1:%d\n"
             "upstream:\n"
             "  url: http://127.0.0.1:9/unused\n"
             "validation:\n"
             "  url: http://127.0.0.1:%d/\n"
             "  trust_anchors: [%s/vendor/ica.pem]\n"
             "  timeout_ms: 3000\n"
             "  cache: {max_entries: 100, max_age_s: 600}\n"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key}\n"
             "domains:\n"
             "  - name: manufacturer\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir]\n"
             "    ocsp_path: /.well-known/cmp/p/manufacturer/ocsp\n",
             e->port, e->admin_port, e->va_port, e->pki, e->pki, e->pki, e->pki);
    snprintf(e->cfg, sizeof e->cfg, "%s/raproxy.yaml", e->dir);
    cr_assert_eq(rpt_write_file(e->cfg, buf, strlen(buf)), 0);
    int rc = rpt_raproxy_start(&e->rp, e->dir, e->cfg, e->port);
    g_children[1] = e->rp.pid;
    cr_assert_eq(rc, 0, "raproxy did not start, see %s", e->rp.log);
}

static void env_down(struct env *e)
{
    int st = rpt_stop(&e->rp, SIGTERM, 15000);
    if (e->va.pid > 0)
        rpt_stop(&e->va, SIGKILL, 2000);
    g_children[0] = g_children[1] = 0;
    cr_expect_eq(st, 0, "raproxy exit status %d, see %s", st, e->rp.log);
    cr_expect_eq(rpt_file_count(e->rp.log, "AddressSanitizer"), 0);
    cr_expect_eq(rpt_file_count(e->rp.log, "runtime error"), 0);
    rpt_rmdir(e->dir);
    free(e->dir);
}

/* The relay path devices use: validation.path, or a domain's ocsp_path. */
static const char *g_path = "/ocsp";

/* `openssl ocsp` as the device through raproxy; its output in `log`. */
static int device(struct env *e, const char *cert, bool nonce, const char *log)
{
    char url[300], issuer[600], c[600], root[600];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", e->port, g_path);
    snprintf(issuer, sizeof issuer, "%s/vendor/ica.pem", e->pki);
    snprintf(c, sizeof c, "%s/vendor/%s.pem", e->pki, cert);
    snprintf(root, sizeof root, "%s/vendor/root.pem", e->pki);
    const char *argv[] = {"openssl",
                          "ocsp",
                          "-issuer",
                          issuer,
                          "-cert",
                          c,
                          "-url",
                          url,
                          "-CAfile",
                          root,
                          "-verify_other",
                          issuer,
                          "-resp_text",
                          nonce ? "-nonce" : "-no_nonce",
                          NULL};
    return rpt_run(argv, 30000, log);
}

/* Value of a metric family without labels from /metrics, -1 when absent. */
static long metric(struct env *e, const char *name)
{
    struct rpt_resp r = {0};
    long v = -1;
    if (rpt_http(e->admin_port, "GET", "/metrics", NULL, NULL, 0, 5000, &r) == 0 && r.body) {
        char needle[128];
        snprintf(needle, sizeof needle, "\n%s ", name);
        const char *p = strstr((const char *)r.body, needle);
        if (p)
            v = strtol(p + strlen(needle), NULL, 10);
    }
    rpt_resp_free(&r);
    return v;
}

static void logpath(struct env *e, char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s.log", e->dir, name);
}

Test(ocsp_relay, good_revoked_and_unknown_are_answered_and_verified, .timeout = 120, .fini = reap)
{
    struct env e;
    env_up(&e, VA_GENUINE);
    const char *certs[] = {"dev1", "revoked", "dev2"};
    const char *want[] = {".pem: good", ".pem: revoked", ".pem: unknown"};
    for (int i = 0; i < 3; i++) {
        char log[700];
        logpath(&e, log, sizeof log, certs[i]);
        cr_assert_eq(device(&e, certs[i], true, log), 0, "openssl ocsp failed, see %s", log);
        cr_assert_eq(rpt_file_count(log, want[i]), 1, "%s: expected '%s', see %s", certs[i],
                     want[i], log);
        cr_assert_eq(rpt_file_count(log, "Response verify OK"), 1, "see %s", log);
    }
    /* nonce requests go past the cache */
    cr_assert_eq(metric(&e, "raproxy_ocsp_cache_hits_total"), 0);
    cr_assert_eq(metric(&e, "raproxy_ocsp_cache_bypass_total"), 3);
    env_down(&e);
}

Test(ocsp_relay, second_identical_request_is_a_cache_hit, .timeout = 120, .fini = reap)
{
    struct env e;
    env_up(&e, VA_GENUINE);
    char log1[700], log2[700];
    logpath(&e, log1, sizeof log1, "first");
    logpath(&e, log2, sizeof log2, "second");
    cr_assert_eq(device(&e, "dev1", false, log1), 0, "see %s", log1);
    cr_assert_eq(rpt_file_count(log1, ".pem: good"), 1, "see %s", log1);
    cr_assert_eq(metric(&e, "raproxy_ocsp_cache_misses_total"), 1);
    /* the VA goes away: the second answer can only come from the cache */
    rpt_stop(&e.va, SIGKILL, 2000);
    e.va.pid = g_children[0] = 0;
    cr_assert_eq(device(&e, "dev1", false, log2), 0, "see %s", log2);
    cr_assert_eq(rpt_file_count(log2, ".pem: good"), 1, "see %s", log2);
    cr_assert_eq(rpt_file_count(log2, "Response verify OK"), 1, "see %s", log2);
    cr_assert_eq(metric(&e, "raproxy_ocsp_cache_hits_total"), 1);
    cr_assert_eq(metric(&e, "raproxy_ocsp_cache_misses_total"), 1);
    env_down(&e);
}

/* GET <path>/<url-escaped base64>, RFC 5019 §5. */
Test(ocsp_relay, get_form_is_answered, .timeout = 120, .fini = reap)
{
    struct env e;
    env_up(&e, VA_GENUINE);
    char p[700];
    snprintf(p, sizeof p, "%s/req-good.der", e.dir);
    size_t n = 0;
    uint8_t *der = rpt_read_file(p, &n);
    cr_assert_not_null(der);
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char path[2048] = "/ocsp/";
    size_t o = strlen(path);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)der[i] << 16 | (i + 1 < n ? (uint32_t)der[i + 1] << 8 : 0) |
                     (i + 2 < n ? der[i + 2] : 0);
        for (int k = 0; k < 4; k++) {
            char c = (size_t)k <= (n - i) ? tbl[(v >> (18 - 6 * k)) & 63] : '=';
            o += (size_t)snprintf(path + o, sizeof path - o,
                                  c == '+'   ? "%%2B"
                                  : c == '/' ? "%%2F"
                                  : c == '=' ? "%%3D"
                                             : "%c",
                                  c);
        }
    }
    free(der);
    struct rpt_resp r = {0};
    cr_assert_eq(rpt_http(e.port, "GET", path, NULL, NULL, 0, 10000, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.ctype, "application/ocsp-response");
    struct rp_ocsp_resp resp;
    cr_assert_eq(rp_ocsp_resp_parse(r.body, r.body_len, &resp, NULL), RP_OK);
    cr_assert_eq(resp.status, RP_OCSP_SUCCESSFUL);
    cr_assert_eq(resp.singles[0].status, RP_OCSP_GOOD);
    rpt_resp_free(&r);
    env_down(&e);
}

static void expect_try_later(struct env *e, const char *name)
{
    char log[700];
    logpath(e, log, sizeof log, name);
    device(e, "dev1", false, log);
    cr_assert_eq(rpt_file_count(log, "trylater"), 1, "expected tryLater, see %s and %s", log,
                 e->rp.log);
    /* the plain-HTTP view of the same: status 3, no responseBytes */
    char p[700];
    snprintf(p, sizeof p, "%s/req-good.der", e->dir);
    size_t n = 0;
    uint8_t *der = rpt_read_file(p, &n);
    struct rpt_resp r = {0};
    cr_assert_eq(rpt_http(e->port, "POST", "/ocsp", "application/ocsp-request", der, n, 10000, &r),
                 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, 5);
    cr_assert_eq(memcmp(r.body, "\x30\x03\x0a\x01\x03", 5), 0);
    rpt_resp_free(&r);
    free(der);
}

Test(ocsp_relay, forged_response_gives_try_later, .timeout = 120, .fini = reap)
{
    struct env e;
    env_up(&e, VA_FORGED);
    expect_try_later(&e, "forged");
    cr_assert_geq(rpt_file_count(e.rp.log, "VA answer refused"), 1);
    cr_assert_eq(metric(&e, "raproxy_ocsp_cache_hits_total"), 0);
    env_down(&e);
}

Test(ocsp_relay, responder_down_gives_try_later, .timeout = 120, .fini = reap)
{
    struct env e;
    env_up(&e, VA_DOWN);
    expect_try_later(&e, "down");
    env_down(&e);
}

Test(ocsp_relay, responder_speaking_no_ocsp_gives_try_later, .timeout = 120, .fini = reap)
{
    struct env e;
    env_up(&e, VA_NOT_OCSP);
    expect_try_later(&e, "garbage");
    env_down(&e);
}

Test(ocsp_relay, http_policy_and_malformed_requests, .timeout = 120, .fini = reap)
{
    struct env e;
    env_up(&e, VA_DOWN);
    struct rpt_resp r = {0};
    cr_assert_eq(rpt_http(e.port, "PUT", "/ocsp", "application/ocsp-request", "x", 1, 5000, &r), 0);
    cr_assert_eq(r.status, 405);
    rpt_resp_free(&r);
    cr_assert_eq(rpt_http(e.port, "POST", "/ocsp", "text/plain", "x", 1, 5000, &r), 0);
    cr_assert_eq(r.status, 415);
    rpt_resp_free(&r);
    cr_assert_eq(rpt_http(e.port, "GET", "/ocsp/%zz", NULL, NULL, 0, 5000, &r), 0);
    cr_assert_eq(r.status, 400);
    rpt_resp_free(&r);
    /* well-formed HTTP, not an OCSPRequest: malformedRequest (1) */
    cr_assert_eq(
        rpt_http(e.port, "POST", "/ocsp/", "application/ocsp-request", "\x30\x00", 2, 5000, &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(memcmp(r.body, "\x30\x03\x0a\x01\x01", 5), 0);
    rpt_resp_free(&r);
    env_down(&e);
}

/* ---- configuration -------------------------------------------------------------------- */

static int load_cfg(const char *validation, struct rp_config **out, char *errs, size_t cap)
{
    char *dir = rpt_tmpdir(), path[600], text[2048];
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    snprintf(text, sizeof text,
             "listeners:\n  - address: 127.0.0.1:8080\n    tls: off\n"
             "upstream:\n  url: http://127.0.0.1:9/x\n%s",
             validation);
    rpt_write_file(path, text, strlen(text));
    FILE *f = fmemopen(errs, cap, "w");
    int rc = rp_config_load_opts(path, out, f, RP_CONFIG_NO_FILE_CHECKS);
    fclose(f);
    rpt_rmdir(dir);
    free(dir);
    return rc;
}

Test(ocsp_config, defaults_apply)
{
    struct rp_config *c = NULL;
    char errs[2048] = {0};
    cr_assert_eq(load_cfg("validation:\n  url: http://va:8080/ocsp\n  responder_cert: r.pem\n", &c,
                          errs, sizeof errs),
                 0, "%s", errs);
    cr_assert_not_null(c->validation);
    cr_assert_str_eq(c->validation->path, "/ocsp");
    cr_assert_eq(c->validation->cache.max_entries, RP_DEF_OCSP_CACHE_ENTRIES);
    cr_assert_eq(c->validation->cache.max_age_s, RP_DEF_OCSP_CACHE_MAX_AGE);
    cr_assert_eq(c->validation->timeout_ms, RP_DEF_OCSP_TIMEOUT);
    cr_assert_eq(c->validation->responder_cert[0], '/', "relative path resolved");
    rp_config_free(c);
    cr_assert_eq(load_cfg("upstream_unused: 1\n", &c, errs, sizeof errs), RP_E_CONFIG);
    cr_assert_eq(load_cfg("", &c, errs, sizeof errs), 0);
    cr_assert_null(c->validation);
    rp_config_free(c);
}

Test(ocsp_config, problems_are_reported)
{
    struct rp_config *c = NULL;
    char errs[4096] = {0};
    cr_assert_eq(load_cfg("validation:\n  url: ftp://va/\n  path: ocsp\n"
                          "  cache: {max_entries: 0, max_age_s: 0}\n",
                          &c, errs, sizeof errs),
                 RP_E_CONFIG);
    cr_assert(strstr(errs, "validation.url"), "%s", errs);
    cr_assert(strstr(errs, "responder_cert or trust_anchors"), "%s", errs);
    cr_assert(strstr(errs, "validation.path"), "%s", errs);
    cr_assert(strstr(errs, "validation.cache.max_entries"), "%s", errs);
    cr_assert(strstr(errs, "validation.cache.max_age_s"), "%s", errs);
    memset(errs, 0, sizeof errs);
    cr_assert_eq(load_cfg("validation:\n  url: https://va/\n  trust_anchors: [a.pem]\n", &c, errs,
                          sizeof errs),
                 RP_E_CONFIG);
    cr_assert(strstr(errs, "validation.ca"), "%s", errs);
    memset(errs, 0, sizeof errs);
    cr_assert_eq(load_cfg("default_path: /ocsp\nvalidation:\n  url: http://va/\n"
                          "  trust_anchors: [a.pem]\n",
                          &c, errs, sizeof errs),
                 RP_E_CONFIG);
    cr_assert(strstr(errs, "duplicate path /ocsp"), "%s", errs);
}

Test(ocsp_relay, a_domain_has_its_own_ocsp_path, .timeout = 120, .fini = reap)
{
    struct env e;
    env_up(&e, VA_GENUINE);
    g_path = "/.well-known/cmp/p/manufacturer/ocsp";
    char log[700];
    logpath(&e, log, sizeof log, "domain-path");
    cr_expect_eq(device(&e, "dev1", false, log), 0, "see %s", log);
    cr_expect_eq(rpt_file_count(log, ".pem: good"), 1, "see %s", log);
    g_path = "/ocsp";
    env_down(&e);
}

Test(ocsp_config, domain_ocsp_path_needs_validation_and_env_overrides_the_va)
{
    struct rp_config *c = NULL;
    char errs[4096];
    cr_assert_eq(load_cfg("ra: {cert: r.pem, key: r.pem}\ndomains:\n  - name: d\n"
                          "    trust_anchors: [r.pem]\n    allow: [ir]\n"
                          "    ocsp_path: /d/ocsp\n",
                          &c, errs, sizeof errs),
                 RP_E_CONFIG);
    cr_expect(strstr(errs, "domains[0].ocsp_path: needs the top-level validation section"), "%s",
              errs);
    setenv("RAPROXY_VALIDATION_URL", "http://va.example:8080/ocsp", 1);
    cr_assert_eq(load_cfg("validation:\n  url: http://va:8080/ocsp\n  responder_cert: r.pem\n", &c,
                          errs, sizeof errs),
                 RP_OK, "%s", errs);
    cr_expect_str_eq(c->validation->url, "http://va.example:8080/ocsp");
    rp_config_free(c);
    unsetenv("RAPROXY_VALIDATION_URL");
}

/* Write e's configuration `cfg` (as env_up wrote it) with `line` added under its validation
 * section and send SIGHUP; waits (bounded) until raproxy logged `want` for it. */
static void reload_with(struct env *e, const char *cfg, const char *line, const char *want)
{
    const char *at = strstr(cfg, "  timeout_ms: 3000\n");
    cr_assert_not_null(at);
    char buf[8192];
    int len = snprintf(buf, sizeof buf, "%.*s%s\n%s", (int)(at - cfg), cfg, line, at);
    cr_assert(len > 0 && (size_t)len < sizeof buf);
    cr_assert_eq(rpt_write_file(e->cfg, buf, (size_t)len), 0);
    int before = rpt_file_count(e->rp.log, want);
    cr_assert_eq(kill(e->rp.pid, SIGHUP), 0);
    for (int i = 0; i < 500 && rpt_file_count(e->rp.log, want) == before; i++)
        usleep(20000);
    cr_assert_eq(rpt_file_count(e->rp.log, want), before + 1, "no '%s', see %s", want, e->rp.log);
}

/* dev1 through the relay, past the cache (nonce): good, and verified by the device. */
static void expect_good(struct env *e, const char *name)
{
    char log[700];
    logpath(e, log, sizeof log, name);
    cr_assert_eq(device(e, "dev1", true, log), 0, "openssl ocsp failed, see %s", log);
    cr_assert_eq(rpt_file_count(log, ".pem: good"), 1, "see %s", log);
    cr_assert_eq(rpt_file_count(log, "Response verify OK"), 1, "see %s", log);
}

/* The responder certificate is loaded with the snapshot, off the loops: a reload naming a
 * file that is not a certificate is refused whole and the running configuration keeps
 * answering (before, the reload went through and every answer became tryLater). A reload
 * naming the genuine responder is the control: loaded, and answers still verify. */
Test(ocsp_relay, reload_with_an_unloadable_responder_cert_is_refused, .timeout = 120, .fini = reap)
{
    struct env e;
    env_up(&e, VA_GENUINE);
    expect_good(&e, "before");
    size_t n = 0;
    char *cfg = (char *)rpt_read_file(e.cfg, &n), bad[700], line[800];
    cr_assert_not_null(cfg);
    snprintf(bad, sizeof bad, "%s/not-a-cert.pem", e.dir);
    static const char junk[] = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                               "-----END CERTIFICATE-----\n";
    cr_assert_eq(rpt_write_file(bad, junk, strlen(junk)), 0);
    snprintf(line, sizeof line, "  responder_cert: %s", bad);
    reload_with(&e, cfg, line, "configuration rejected, keeping the running one");
    expect_good(&e, "after-refused");
    snprintf(line, sizeof line, "  responder_cert: %s/resp.pem", e.dir);
    reload_with(&e, cfg, line, "loaded (generation");
    expect_good(&e, "after-loaded");
    free(cfg);
    env_down(&e);
}
