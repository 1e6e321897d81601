/* The load-test tools stay working: bench_mkfleet mints a small fleet, bench_mockca
 * (verifying every request's protection against the vendor root) serves it, bench_fleet
 * enrolls for about a second in each connection mode with no failure. Timing is not
 * checked here (that is bench/run.sh's job). */
#include "support.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_LEN   600
#define FLEET_SIZE "50"

struct smoke {
    char *dir;
    const char *pki;
    char fleet[PATH_LEN], tool[PATH_LEN], url[64], log[PATH_LEN];
};

static const char *tool(struct smoke *s, const char *name)
{
    snprintf(s->tool, sizeof s->tool, "%s/bench/%s", rpt_bin(), name);
    return s->tool;
}

/* bench_fleet in `mode` for a second; returns the RESULT line's ok= count (asserts no
 * failure). */
static long enroll(struct smoke *s, const char *mode)
{
    char pem[PATH_LEN];
    snprintf(pem, sizeof pem, "%s/vendor/ica.pem", s->pki);
    snprintf(s->log, sizeof s->log, "%s/fleet-%s.log", s->dir, mode);
    const char *argv[] = {tool(s, "bench_fleet"),
                          "--url",
                          s->url,
                          "--fleet",
                          s->fleet,
                          "--chain",
                          pem,
                          "--mode",
                          mode,
                          "--concurrency",
                          "4",
                          "--duration",
                          "1",
                          "--keys",
                          "4",
                          "--timeout-ms",
                          "10000",
                          NULL};
    int rc = rpt_run(argv, 30000, s->log);
    size_t len = 0;
    char *out = (char *)rpt_read_file(s->log, &len);
    cr_assert_not_null(out);
    cr_assert_eq(rc, 0, "bench_fleet %s failed: %s", mode, out);
    const char *res = strstr(out, "RESULT ");
    cr_assert_not_null(res, "no RESULT line: %s", out);
    const char *ok = strstr(res, " ok="), *failed = strstr(res, " failed=");
    cr_assert(ok && failed, "%s", res);
    long n_ok = strtol(ok + 4, NULL, 10), n_failed = strtol(failed + 8, NULL, 10);
    cr_assert_eq(n_failed, 0, "%s", res);
    free(out);
    return n_ok;
}

Test(bench_smoke, fleet_enrolls_against_mockca, .timeout = 120)
{
    struct smoke s = {0};
    struct rpt_proc ca = {0};
    char listen[64], cert[PATH_LEN], key[PATH_LEN], chain[PATH_LEN], icert[PATH_LEN],
        ikey[PATH_LEN], trust[PATH_LEN], vica[PATH_LEN], vkey[PATH_LEN];
    s.pki = rpt_pki();
    cr_assert_not_null(s.pki, "test PKI (scripts/test-pki.sh) failed");
    s.dir = rpt_tmpdir();
    snprintf(s.fleet, sizeof s.fleet, "%s/fleet.bin", s.dir);
    snprintf(vica, sizeof vica, "%s/vendor/ica.pem", s.pki);
    snprintf(vkey, sizeof vkey, "%s/vendor/ica.key", s.pki);
    const char *mk[] = {tool(&s, "bench_mkfleet"),
                        "--ca-cert",
                        vica,
                        "--ca-key",
                        vkey,
                        "--count",
                        FLEET_SIZE,
                        "--out",
                        s.fleet,
                        NULL};
    snprintf(s.log, sizeof s.log, "%s/mkfleet.log", s.dir);
    cr_assert_eq(rpt_run(mk, 30000, s.log), 0, "bench_mkfleet failed (%s)", s.log);

    int port = rpt_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(s.url, sizeof s.url, "http://127.0.0.1:%d/", port);
    snprintf(cert, sizeof cert, "%s/ca/srv.pem", s.pki);
    snprintf(key, sizeof key, "%s/ca/srv.key", s.pki);
    snprintf(chain, sizeof chain, "%s/operator/ica.pem", s.pki);
    snprintf(icert, sizeof icert, "%s/operator/ica.pem", s.pki);
    snprintf(ikey, sizeof ikey, "%s/operator/ica.key", s.pki);
    snprintf(trust, sizeof trust, "%s/vendor/root.pem", s.pki);
    const char *ca_argv[] = {tool(&s, "bench_mockca"),
                             "--listen",
                             listen,
                             "--cert",
                             cert,
                             "--key",
                             key,
                             "--chain",
                             chain,
                             "--issuer-cert",
                             icert,
                             "--issuer-key",
                             ikey,
                             "--trust",
                             trust,
                             "--max-seconds",
                             "90",
                             NULL};
    cr_assert_eq(rpt_spawn(&ca, ca_argv), 0);
    cr_assert_eq(rpt_wait_port(port, 10000), 0, "bench_mockca did not start (%s)", ca.log);

    long keepalive = enroll(&s, "keepalive");
    long storm = enroll(&s, "storm");
    cr_expect_gt(keepalive, 0);
    cr_expect_gt(storm, 0);

    cr_assert_eq(rpt_stop(&ca, SIGTERM, 10000), 0, "bench_mockca exit (%s)", ca.log);
    cr_expect_eq(rpt_file_count(ca.log, "verify_failed=0 "), 1, "mock CA rejected requests (%s)",
                 ca.log);
    cr_expect_eq(rpt_file_count(ca.log, "errors=0 "), 1, "mock CA answered errors (%s)", ca.log);
    rpt_rmdir(s.dir);
    free(s.dir);
}
