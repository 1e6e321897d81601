/* The front end with real processes: openssl cmp device → raproxy (TLS) → openssl cmp mock
 * CA, plain-HTTP policy answers, timeouts, concurrency, upstream failures, reload, drain. */
#include "fixtures.h"
#include "httpc.h"
#include "support.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

struct env {
    char *dir;
    const char *pki;
    int tls_port, plain_port, admin_port, ca_port;
    char cfg[600];
    struct rpt_proc ca, rp;
};

static void write_config(struct env *e, const char *server_cert, const char *upstream_url,
                         const char *extra)
{
    char buf[8192];
    snprintf(buf, sizeof buf,
             "log_level: info\n"
             "loops: 1\n"
             "shutdown_grace_s: 10\n"
             "default_path: /pkix/\n"
             "listeners:\n"
             "  - address: 127.0.0.1:%d\n"
             "    tls:\n"
             "      cert: %s/tls/%s.pem\n"
             "      key: %s/tls/%s.key\n"
             "  - address: 127.0.0.1:%d\n"
             "    tls: off\n"
             "admin:\n"
             "  address: 127.0.0.1:%d\n"
             "upstream:\n"
             "  url: %s\n"
             "  timeout_ms: 5000\n"
             "  connect_timeout_ms: 2000\n"
             "  max_connections: 1\n"
             "  keep_alive: false\n"
             "%s",
             e->tls_port, e->pki, server_cert, e->pki, server_cert, e->plain_port, e->admin_port,
             upstream_url, extra ? extra : "");
    snprintf(e->cfg, sizeof e->cfg, "%s/raproxy.yaml", e->dir);
    cr_assert_eq(rpt_write_file(e->cfg, buf, strlen(buf)), 0);
}

static void env_up(struct env *e, bool with_ca, const char *extra)
{
    memset(e, 0, sizeof *e);
    e->pki = rpt_pki();
    cr_assert_not_null(e->pki, "test PKI (scripts/test-pki.sh) failed");
    e->dir = rpt_tmpdir();
    e->tls_port = rpt_free_port();
    e->plain_port = rpt_free_port();
    e->admin_port = rpt_free_port();
    e->ca_port = rpt_free_port();
    char trusted[600], url[128];
    snprintf(trusted, sizeof trusted, "%s/vendor/root.pem", e->pki);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/pkix/", e->ca_port);
    if (with_ca)
        cr_assert_eq(rpt_mockca_start(&e->ca, e->dir, e->ca_port, trusted, NULL), 0,
                     "mock CA did not start");
    write_config(e, "server", url, extra);
    cr_assert_eq(rpt_raproxy_start(&e->rp, e->dir, e->cfg, e->tls_port), 0,
                 "raproxy did not start, see %s", e->rp.log);
}

static void env_down(struct env *e)
{
    int st = 0;
    if (e->rp.pid > 0)
        st = rpt_stop(&e->rp, SIGTERM, 15000);
    if (e->ca.pid > 0)
        rpt_stop(&e->ca, SIGKILL, 2000);
    cr_expect_eq(st, 0, "raproxy exit status %d, see %s", st, e->rp.log);
    cr_expect_eq(rpt_file_count(e->rp.log, "AddressSanitizer"), 0);
    rpt_rmdir(e->dir);
    free(e->dir);
}

static uint8_t *corpus_ir(size_t *len)
{
    char p[600];
    snprintf(p, sizeof p, "%s/test/corpus/ir.der", rpt_src());
    uint8_t *d = rpt_read_file(p, len);
    if (!d) { /* any bytes do for the front end: the mock CA answers them with a CMP error */
        d = (uint8_t *)strdup("0\x03\x02\x01\x02");
        *len = 5;
    }
    return d;
}

Test(frontend, device_enrolls_through_raproxy_over_tls, .timeout = 120)
{
    struct env e;
    env_up(&e, true, NULL);
    char cert[600], key[600], ica[600], out[600], log[600];
    snprintf(cert, sizeof cert, "%s/vendor/dev1.pem", e.pki);
    snprintf(key, sizeof key, "%s/vendor/dev1.key", e.pki);
    snprintf(ica, sizeof ica, "%s/vendor/ica.pem", e.pki);
    snprintf(out, sizeof out, "%s/issued.pem", e.dir);
    snprintf(log, sizeof log, "%s/device.log", e.dir);
    int rc = rpt_device(e.dir, e.tls_port, "pkix/", "ir", cert, key, ica, out, NULL, log);
    cr_assert_eq(rc, 0, "openssl cmp ir failed (%d), see %s and %s", rc, log, e.rp.log);
    size_t n = 0;
    uint8_t *pem = rpt_read_file(out, &n);
    cr_assert(pem && strstr((char *)pem, "BEGIN CERTIFICATE"), "no certificate came back");
    free(pem);
    /* ir and certConf both went through, as two exchanges */
    cr_assert_geq(rpt_file_count(e.rp.log, "\"event\":\"exchange\""), 2);
    env_down(&e);
}

Test(frontend, http_policy_answers_405_415_404_413, .timeout = 60)
{
    struct env e;
    env_up(&e, false, "http:\n  max_body_bytes: 1000\n");
    struct rpt_resp r;
    cr_assert_eq(rpt_http(e.plain_port, "GET", "/pkix/", NULL, NULL, 0, 5000, &r), 0);
    cr_expect_eq(r.status, 405);
    rpt_resp_free(&r);
    cr_assert_eq(rpt_http(e.plain_port, "POST", "/pkix/", "text/plain", "x", 1, 5000, &r), 0);
    cr_expect_eq(r.status, 415);
    rpt_resp_free(&r);
    cr_assert_eq(rpt_http(e.plain_port, "POST", "/nope", "application/pkixcmp", "x", 1, 5000, &r),
                 0);
    cr_expect_eq(r.status, 404);
    rpt_resp_free(&r);
    char big[2000];
    memset(big, 'A', sizeof big);
    cr_assert_eq(
        rpt_http(e.plain_port, "POST", "/pkix/", "application/pkixcmp", big, sizeof big, 5000, &r),
        0);
    cr_expect_eq(r.status, 413);
    rpt_resp_free(&r);
    env_down(&e);
}

Test(frontend, slow_client_is_closed_after_header_timeout, .timeout = 60)
{
    struct env e;
    env_up(&e, false, "http:\n  header_timeout_ms: 500\n");
    int fd = rpt_connect(e.plain_port);
    cr_assert_geq(fd, 0);
    const char part[] = "POST /pkix/ HTTP/1.1\r\nHost: x\r\n";
    cr_assert_eq(write(fd, part, sizeof part - 1), (ssize_t)(sizeof part - 1));
    char buf[512];
    ssize_t n = 0, r;
    /* bounded: the server must answer and close within a few seconds */
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while ((r = read(fd, buf + n, sizeof buf - 1 - (size_t)n)) > 0)
        n += r;
    buf[n] = 0;
    close(fd);
    cr_expect(strstr(buf, "408") != NULL, "expected 408, got: %s", buf);
    cr_expect_eq(r, 0, "connection should be closed by the server");
    env_down(&e);
}

Test(frontend, two_hundred_keepalive_clients_all_answered, .timeout = 180)
{
    struct env e;
    /* 200 clients from one address: like devices behind one NAT, no per-address cap */
    env_up(&e, true, "http:\n  max_connections_per_ip: 0\n");
    size_t len;
    uint8_t *ir = corpus_ir(&len);
    int ok = rpt_http_parallel(e.plain_port, "/pkix/", "application/pkixcmp", ir, len, 200, 2, 200,
                               120000);
    free(ir);
    cr_expect_eq(ok, 400, "only %d of 400 requests answered with 200 (see %s)", ok, e.rp.log);
    env_down(&e);
}

Test(frontend, upstream_down_gives_502_and_readyz_503, .timeout = 60)
{
    struct env e;
    env_up(&e, false, NULL); /* nothing listens on the CA port */
    size_t len;
    uint8_t *ir = corpus_ir(&len);
    struct rpt_resp r;
    cr_assert_eq(
        rpt_http(e.plain_port, "POST", "/pkix/", "application/pkixcmp", ir, len, 10000, &r), 0);
    cr_expect_eq(r.status, 502);
    rpt_resp_free(&r);
    free(ir);
    cr_assert_eq(rpt_http(e.admin_port, "GET", "/readyz", NULL, NULL, 0, 5000, &r), 0);
    cr_expect_eq(r.status, 503);
    rpt_resp_free(&r);
    cr_assert_eq(rpt_http(e.admin_port, "GET", "/livez", NULL, NULL, 0, 5000, &r), 0);
    cr_expect_eq(r.status, 200);
    rpt_resp_free(&r);
    env_down(&e);
}

Test(frontend, metrics_count_requests_and_connections, .timeout = 60)
{
    struct env e;
    env_up(&e, true, NULL);
    size_t len;
    uint8_t *ir = corpus_ir(&len);
    struct rpt_resp r;
    cr_assert_eq(
        rpt_http(e.plain_port, "POST", "/pkix/", "application/pkixcmp", ir, len, 20000, &r), 0);
    cr_expect_eq(r.status, 200);
    rpt_resp_free(&r);
    free(ir);
    cr_assert_eq(rpt_http(e.admin_port, "GET", "/metrics", NULL, NULL, 0, 5000, &r), 0);
    cr_expect_eq(r.status, 200);
    const char *m = (const char *)r.body;
    cr_expect(strstr(m, "raproxy_requests_total{code=\"200\"} 1"), "%s", m);
    cr_expect(strstr(m, "raproxy_connections_accepted_total"));
    cr_expect(strstr(m, "raproxy_upstream_requests_total{result=\"ok\"} 1"));
    cr_expect(strstr(m, "raproxy_request_seconds_bucket"));
    cr_expect(strstr(m, "raproxy_loop_lag_seconds_count"));
    rpt_resp_free(&r);
    cr_assert_eq(rpt_http(e.admin_port, "GET", "/readyz", NULL, NULL, 0, 5000, &r), 0);
    cr_expect_eq(r.status, 200);
    rpt_resp_free(&r);
    env_down(&e);
}

static void server_subject(int port, char *out, size_t cap)
{
    char cmd[512], log[600];
    snprintf(cmd, sizeof cmd,
             "openssl s_client -connect 127.0.0.1:%d -servername localhost </dev/null 2>/dev/null"
             " | openssl x509 -noout -subject",
             port);
    snprintf(log, sizeof log, "/tmp/rpt-subject-%d.txt", port);
    unlink(log);
    const char *argv[] = {"bash", "-c", cmd, NULL};
    rpt_run(argv, 15000, log);
    size_t n;
    char *s = (char *)rpt_read_file(log, &n);
    snprintf(out, cap, "%s", s ? s : "");
    free(s);
    unlink(log);
}

Test(frontend, sighup_swaps_the_tls_certificate, .timeout = 90)
{
    struct env e;
    env_up(&e, false, NULL);
    char subj[512];
    server_subject(e.tls_port, subj, sizeof subj);
    cr_assert(strstr(subj, "CN = localhost") && !strstr(subj, "localhost-2"), "before: %s", subj);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/pkix/", e.ca_port);
    write_config(&e, "server2", url, NULL);
    kill(e.rp.pid, SIGHUP);
    bool swapped = false;
    for (int i = 0; i < 50 && !swapped; i++) { /* bounded: 5 s */
        usleep(100000);
        server_subject(e.tls_port, subj, sizeof subj);
        swapped = strstr(subj, "localhost-2") != NULL;
    }
    cr_expect(swapped, "after SIGHUP the new certificate is served: %s", subj);
    /* a broken configuration is refused and the running one kept */
    cr_assert_eq(rpt_write_file(e.cfg, "listeners: [oops\n", 17), 0);
    kill(e.rp.pid, SIGHUP);
    usleep(300000);
    server_subject(e.tls_port, subj, sizeof subj);
    cr_expect(strstr(subj, "localhost-2"), "still serving after a bad reload: %s", subj);
    cr_expect_geq(rpt_file_count(e.rp.log, "configuration rejected"), 1);
    env_down(&e);
}

Test(frontend, sigterm_answers_requests_in_flight_and_exits_0, .timeout = 120)
{
    struct env e;
    memset(&e, 0, sizeof e);
    e.pki = rpt_pki();
    cr_assert_not_null(e.pki);
    e.dir = rpt_tmpdir();
    e.tls_port = rpt_free_port();
    e.plain_port = rpt_free_port();
    e.admin_port = rpt_free_port();
    e.ca_port = rpt_free_port();
    /* a slow CA: answers after 1.5 s, so requests are in flight when SIGTERM arrives */
    char port[16], script[600];
    snprintf(port, sizeof port, "%d", e.ca_port);
    snprintf(script, sizeof script, "%s/test/integration/slow_upstream.py", rpt_src());
    const char *argv[] = {"/usr/bin/python3", script, port, "1500", NULL};
    snprintf(e.ca.log, sizeof e.ca.log, "%s/slow.log", e.dir);
    cr_assert_eq(rpt_spawn(&e.ca, argv), 0);
    cr_assert_eq(rpt_wait_port(e.ca_port, 10000), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/pkix/", e.ca_port);
    write_config(&e, "server", url, NULL);
    cr_assert_eq(rpt_raproxy_start(&e.rp, e.dir, e.cfg, e.tls_port), 0);
    pid_t child = fork();
    if (child == 0) {
        usleep(500000); /* the requests below are in flight by then */
        kill(e.rp.pid, SIGTERM);
        _exit(0);
    }
    int ok = rpt_http_parallel(e.plain_port, "/pkix/", "application/pkixcmp", "0\x00", 2, 3, 1, 200,
                               30000);
    waitpid(child, NULL, 0);
    cr_expect_eq(ok, 3, "requests in flight at SIGTERM answered: %d of 3", ok);
    int st = rpt_stop(&e.rp, 0, 20000); /* signal 0: just wait for it to exit */
    cr_expect_eq(st, 0, "raproxy exit status after SIGTERM: %d", st);
    cr_expect(rpt_wait_port(e.tls_port, 200) != 0, "listener closed");
    rpt_stop(&e.ca, SIGKILL, 2000);
    rpt_rmdir(e.dir);
    free(e.dir);
}

Test(frontend, max_connections_holds_new_clients_in_the_backlog, .timeout = 60)
{
    struct env e;
    env_up(&e, false,
           "http:\n  max_connections: 4\n  idle_timeout_ms: 30000\n"
           "  header_timeout_ms: 30000\n");
    /* the TLS listener holds nothing; four idle plain connections fill the cap */
    int held[4];
    for (int i = 0; i < 4; i++) {
        held[i] = rpt_connect(e.plain_port);
        cr_assert_geq(held[i], 0);
    }
    usleep(200000);
    /* the fifth connects (kernel backlog) but is not served while the cap holds */
    int fd = rpt_connect(e.plain_port);
    cr_assert_geq(fd, 0);
    const char req[] = "GET /pkix/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    cr_assert_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    struct timeval tv = {0, 500000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[256];
    cr_expect_lt(read(fd, buf, sizeof buf), 1, "served beyond max_connections");
    /* one slot frees: the waiting client is accepted and answered (405 for GET) */
    close(held[0]);
    tv.tv_sec = 5;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    cr_assert_gt(n, 0, "the waiting client is served once a slot frees");
    buf[n] = 0;
    cr_expect(strstr(buf, " 405 "), "%s", buf);
    close(fd);
    for (int i = 1; i < 4; i++)
        close(held[i]);
    env_down(&e);
}

/* An https upstream: raproxy A (this config) → TLS, CA certificate verified → raproxy B
 * (TLS listener) → mock CA. The device enrolls through both. */
Test(frontend, https_upstream_with_server_verification, .timeout = 120)
{
    struct env e;
    memset(&e, 0, sizeof e);
    e.pki = rpt_pki();
    cr_assert_not_null(e.pki);
    e.dir = rpt_tmpdir();
    e.tls_port = rpt_free_port();
    e.plain_port = rpt_free_port();
    e.admin_port = rpt_free_port();
    e.ca_port = rpt_free_port();
    int b_port = rpt_free_port(), b_admin = rpt_free_port();
    char trusted[600];
    snprintf(trusted, sizeof trusted, "%s/vendor/root.pem", e.pki);
    cr_assert_eq(rpt_mockca_start(&e.ca, e.dir, e.ca_port, trusted, NULL), 0);
    /* B: TLS in front of the mock CA */
    char bcfg[2048], bpath[600];
    snprintf(bcfg, sizeof bcfg,
             "default_path: /pkix/\n"
             "listeners:\n  - address: 127.0.0.1:%d\n"
             "    tls: {cert: %s/tls/server.pem, key: %s/tls/server.key}\n"
             "admin: {address: 127.0.0.1:%d}\n"
             "upstream: {url: \"http://127.0.0.1:%d/pkix/\", max_connections: 1, "
             "keep_alive: false}\n",
             b_port, e.pki, e.pki, b_admin, e.ca_port);
    snprintf(bpath, sizeof bpath, "%s/b.yaml", e.dir);
    cr_assert_eq(rpt_write_file(bpath, bcfg, strlen(bcfg)), 0);
    struct rpt_proc b = {0};
    char blog_dir[700];
    snprintf(blog_dir, sizeof blog_dir, "%s/b", e.dir);
    cr_assert_eq(mkdir(blog_dir, 0755), 0);
    cr_assert_eq(rpt_raproxy_start(&b, blog_dir, bpath, b_port), 0, "B: %s", b.log);
    /* A: the https upstream is B, verified against the TLS test CA */
    char url[128], extra[700];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/pkix/", b_port);
    snprintf(extra, sizeof extra, "  ca: %s/tls/ca.pem\n", e.pki);
    write_config(&e, "server", url, extra);
    cr_assert_eq(rpt_raproxy_start(&e.rp, e.dir, e.cfg, e.tls_port), 0, "A: %s", e.rp.log);
    char cert[600], key[600], ica[600], out[600], log[600];
    snprintf(cert, sizeof cert, "%s/vendor/dev1.pem", e.pki);
    snprintf(key, sizeof key, "%s/vendor/dev1.key", e.pki);
    snprintf(ica, sizeof ica, "%s/vendor/ica.pem", e.pki);
    snprintf(out, sizeof out, "%s/issued.pem", e.dir);
    snprintf(log, sizeof log, "%s/device.log", e.dir);
    int rc = rpt_device(e.dir, e.tls_port, "pkix/", "ir", cert, key, ica, out, NULL, log);
    cr_expect_eq(rc, 0, "enrollment over an https upstream: %s / %s / %s", log, e.rp.log, b.log);
    cr_expect_geq(rpt_file_count(b.log, "\"event\":\"exchange\""), 2, "B saw ir and certConf");
    /* reload with the wrong CA for B's certificate: the new pool must refuse B (502) */
    snprintf(extra, sizeof extra, "  ca: %s/vendor/root.pem\n", e.pki);
    write_config(&e, "server", url, extra);
    kill(e.rp.pid, SIGHUP);
    usleep(500000);
    size_t len;
    uint8_t *ir = corpus_ir(&len);
    struct rpt_resp r;
    cr_assert_eq(
        rpt_http(e.plain_port, "POST", "/pkix/", "application/pkixcmp", ir, len, 20000, &r), 0);
    cr_expect_eq(r.status, 502, "unverifiable CA certificate: %d", r.status);
    rpt_resp_free(&r);
    free(ir);
    cr_expect_eq(rpt_stop(&b, SIGTERM, 15000), 0);
    env_down(&e);
}
