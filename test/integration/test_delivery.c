/* Storms become queues (issue 18): delayed delivery with real processes — redis-server,
 * one or two raproxy replicas, `openssl cmp` as device and as CA, bench_mockca as a CA
 * that is down, throttled and back, bench_fleet as a fleet.
 *
 * - openssl cmp enrolls (ir, cr, p10cr, kur) through a CA outage: it is answered waiting,
 *   polls, gets the CA's answer re-signed by the RA for its pollReq, and confirms; the
 *   openssl mock CA checks the certConf against the ip it signed;
 * - a fleet enrolls through a 10-second outage of a throttled CA with two replicas: no
 *   failure, no transaction at the CA twice, the CA's cap held;
 * - a replica killed with SIGKILL loses none of the requests it queued: another replica
 *   answers their polls and sends them; the one it had sent is never sent again, and its
 *   device is told systemUnavail;
 * - one certificate request per device at a time; quotas with units; the renewal window. */
#include "fixtures.h"
#include "httpc.h"
#include "msgbuild.h"
#include "support.h"

#include "raproxy/arena.h"
#include "raproxy/cmp.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"

#include <criterion/criterion.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define MANUF     "/.well-known/cmp/p/manufacturer"
#define OPER      "/.well-known/cmp/p/operator"
#define ARENA     (1u << 20)
#define WAIT_MS   30000
#define OUTAGE_S  10
#define FLEET_N   60
#define TXID_LEN  16
#define NONCE_LEN 16
#define CFG_MAX   8192
#define ENV_DEVS  8

TestSuite(delivery, .timeout = 240);

/* The end of a log; three calls may share one message (three buffers, in turn). */
static const char *tail(const char *path)
{
    static char buf[3][3000];
    static unsigned turn;
    char *b = buf[turn++ % 3];
    return rpt_file_tail(path, b, sizeof buf[0]);
}

/* ---- processes ----------------------------------------------------------------------------- */

/* A device sending raw messages (see "raw messages" below). */
struct dev {
    const char *name; /* vendor/dev1 */
    uint8_t *ir;      /* a genuine ir of the device, captured from openssl cmp */
    size_t ir_len;
    char key[600];
    uint8_t txid[TXID_LEN], nonce[NONCE_LEN];
    uint8_t server_nonce[64];
    size_t server_nonce_len;
    uint8_t *cert; /* issued */
    size_t cert_len;
    int pvno; /* 0: the captured message's */
};

static void dev_free(struct dev *d)
{
    free(d->ir);
    free(d->cert);
}

/* What a test runs: the processes, and the devices and arena of its raw messages. */
struct env {
    char *dir;
    const char *pki;
    int ca;               /* the CA's port */
    int ports[2];         /* the replicas' plain-HTTP ports (equal: shared with SO_REUSEPORT) */
    int tls[2];           /* their TLS ports, for openssl cmp (shared likewise) */
    int admins[2];        /* their admin ports */
    char mock_line[1024]; /* bench_mockca's counters, once stopped */
    struct rpt_redis redis;
    bool with_redis;
    struct rpt_proc rp[2], mock;
    struct rp_arena a; /* the raw messages and their answers */
    struct dev devs[ENV_DEVS];
    size_t n_devs;
};

/* What a replica's configuration says beyond the defaults of these tests. */
struct rp_cfg {
    const char *upstream; /* extra lines of the upstream section */
    const char *manuf;    /* extra lines of the manufacturer domain */
    const char *oper;     /* extra lines of the operator domain */
    bool delayed;         /* delayed delivery on */
    int timeout_ms;       /* upstream.timeout_ms; 0: 10 s */
};

static void env_init(struct env *e, bool redis)
{
    memset(e, 0, sizeof *e);
    e->pki = rpt_pki();
    cr_assert_not_null(e->pki);
    e->dir = rpt_tmpdir();
    e->ca = rpt_free_port();
    e->with_redis = redis;
    cr_assert_eq(rp_arena_new(&e->a, ARENA), RP_OK);
    if (redis) {
        snprintf(e->redis.p.log, sizeof e->redis.p.log, "%s/redis.log", e->dir);
        cr_assert_eq(rpt_redis_start(&e->redis, NULL), 0);
    }
}

/* raproxy_redis_up on a replica's admin port; -1 when absent. */
static long redis_up(int admin)
{
    struct rpt_resp r;
    long v = -1;
    if (rpt_http(admin, "GET", "/metrics", NULL, NULL, 0, 5000, &r) == 0 && r.body) {
        const char *p = strstr((const char *)r.body, "\nraproxy_redis_up ");
        if (p)
            v = strtol(p + strlen("\nraproxy_redis_up "), NULL, 10);
    }
    rpt_resp_free(&r);
    return v;
}

/* Replica i listening on `port` and, with TLS, `tls_port` (ports another replica may
 * share). */
static void replica_start2(struct env *e, int i, int port, int tls_port, const struct rp_cfg *c)
{
    char cfg[CFG_MAX], path[600], redis[160] = "";
    const char *P = e->pki;
    e->ports[i] = port;
    e->tls[i] = tls_port;
    e->admins[i] = rpt_free_port();
    if (e->with_redis)
        snprintf(redis, sizeof redis, "redis: {url: \"%s\", timeout_ms: 1000}\n", e->redis.url);
    snprintf(cfg, sizeof cfg,
             "listeners:\n  - address: 127.0.0.1:%d\n    tls: off\n"
             "  - address: 127.0.0.1:%d\n"
             "    tls: {cert: %s/tls/server.pem, key: %s/tls/server.key}\n"
             "admin: {address: 127.0.0.1:%d}\n"
             "loops: 1\nworkers: 2\n"
             "upstream:\n"
             "  url: \"http://127.0.0.1:%d/pkix/\"\n"
             "  keep_alive: false\n"
             "  timeout_ms: %d\n"
             "  connect_timeout_ms: 1000\n"
             "  delayed_delivery: {enabled: %s, check_after_s: 1, check_after_jitter_s: 1}\n"
             "%s"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
             "chain: %s/operator/ra.chain.pem}\n"
             "%s"
             "domains:\n"
             "  - name: manufacturer\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir, cr, p10cr, certConf, genm, pollReq, error]\n"
             "%s"
             "  - name: operator\n"
             "    trust_anchors: [%s/operator/root.pem]\n"
             "    intermediates: [%s/operator/ica.pem]\n"
             "    allow: [kur, rr, certConf, pollReq, error]\n"
             "    forward: unchanged\n"
             "%s",
             port, tls_port, P, P, e->admins[i], e->ca, c->timeout_ms ? c->timeout_ms : 10000,
             c->delayed ? "true" : "false", c->upstream ? c->upstream : "", P, P, P, redis, P,
             c->manuf ? c->manuf : "", P, P, c->oper ? c->oper : "");
    snprintf(path, sizeof path, "%s/raproxy-%d.yaml", e->dir, i);
    cr_assert_eq(rpt_write_file(path, cfg, strlen(cfg)), 0);
    struct rpt_proc *p = &e->rp[i];
    char bin[600];
    snprintf(bin, sizeof bin, "%s/raproxy", rpt_bin());
    snprintf(p->log, sizeof p->log, "%s/raproxy-%d.log", e->dir, i);
    const char *argv[] = {bin, "--config", path, NULL};
    cr_assert_eq(rpt_spawn(p, argv), 0);
    cr_assert_eq(rpt_wait_port(e->admins[i], 10000), 0, "replica %d did not start: %s", i,
                 tail(p->log));
    /* a replica that has not reached Redis yet sends its first requests as without it (on
     * on_redis_failure: open): wait until it has */
    long t0 = rpt_mono_ms();
    while (e->with_redis && redis_up(e->admins[i]) != 1 && rpt_mono_ms() - t0 < WAIT_MS)
        rpt_sleep_ms(20);
}

static void replica_start(struct env *e, int i, int port, const struct rp_cfg *c)
{
    replica_start2(e, i, port, rpt_free_port(), c);
}

/* The setup of most tests: the processes, and replica 0 with `c` on a port of its own. */
static void env_up(struct env *e, bool redis, const struct rp_cfg *c)
{
    env_init(e, redis);
    replica_start(e, 0, rpt_free_port(), c);
}

/* The openssl mock CA on the CA port, trusting the operator root (the RA's). */
static void mockca_up(struct env *e)
{
    char trusted[600];
    snprintf(trusted, sizeof trusted, "%s/operator/root.pem", e->pki);
    cr_assert_eq(rpt_mockca_start(&e->mock, e->dir, e->ca, trusted, NULL), 0);
}

/* bench_mockca on the CA port; extra: NULL-terminated options (--rate, --down-ms, --stall). */
static void benchca_start(struct env *e, const char *const *extra)
{
    static char listen[64], cert[600], key[600], chain[600], ikey[600], trust[600], bin[600];
    const char *P = e->pki;
    snprintf(listen, sizeof listen, "127.0.0.1:%d", e->ca);
    snprintf(cert, sizeof cert, "%s/ca/srv.pem", P);
    snprintf(key, sizeof key, "%s/ca/srv.key", P);
    snprintf(chain, sizeof chain, "%s/operator/ica.pem", P);
    snprintf(ikey, sizeof ikey, "%s/operator/ica.key", P);
    snprintf(trust, sizeof trust, "%s/operator/root.pem", P);
    snprintf(bin, sizeof bin, "%s/bench/bench_mockca", rpt_bin());
    const char *argv[32] = {bin,  "--listen", listen, "--cert",        cert,  "--key",
                            key,  "--chain",  chain,  "--issuer-cert", chain, "--issuer-key",
                            ikey, "--trust",  trust,  "--max-seconds", "200"};
    int n = 17;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    snprintf(e->mock.log, sizeof e->mock.log, "%s/benchca.log", e->dir);
    cr_assert_eq(rpt_spawn(&e->mock, argv), 0);
    cr_assert_eq(rpt_wait_port(e->ca, 10000), 0);
}

/* Stop bench_mockca and keep its counters line. */
static void benchca_stop(struct env *e)
{
    rpt_stop(&e->mock, SIGTERM, 10000);
    memset(&e->mock.pid, 0, sizeof e->mock.pid);
    size_t len;
    char *out = (char *)rpt_read_file(e->mock.log, &len);
    cr_assert_not_null(out);
    const char *line = strstr(out, "MOCKCA ");
    cr_assert_not_null(line, "%s", out);
    snprintf(e->mock_line, sizeof e->mock_line, "%s", line);
    cr_log_info("%s", e->mock_line);
    free(out);
}

/* A counter of the stopped bench_mockca ("ip", "dup_txid", "peak_ip_s"). */
static long mock_count(const struct env *e, const char *name)
{
    char want[64];
    snprintf(want, sizeof want, " %s=", name);
    const char *v = strstr(e->mock_line, want);
    cr_assert_not_null(v, "%s: %s", name, e->mock_line);
    return strtol(v + strlen(want), NULL, 10);
}

static void env_free(struct env *e)
{
    for (int i = 0; i < 2; i++)
        if (e->rp[i].pid > 0)
            rpt_stop(&e->rp[i], SIGKILL, 5000);
    if (e->mock.pid > 0)
        rpt_stop(&e->mock, SIGKILL, 5000);
    if (e->with_redis)
        rpt_redis_stop(&e->redis);
    for (size_t i = 0; i < e->n_devs; i++)
        dev_free(&e->devs[i]);
    rp_arena_free(&e->a);
    rpt_rmdir(e->dir);
    free(e->dir);
}

/* ---- openssl cmp through an outage ---------------------------------------------------------- */

struct device_run {
    struct env *e;
    const char *path, *cmd, *who, *extracerts;
    const char *csr; /* p10cr: the device's PKCS#10 request */
    char log[600], out[600];
    int rc;
};

static void *device_main(void *arg)
{
    struct device_run *d = arg;
    char cert[600], key[600], extra[600];
    snprintf(cert, sizeof cert, "%s/%s.pem", d->e->pki, d->who);
    snprintf(key, sizeof key, "%s/%s.key", d->e->pki, d->who);
    if (d->extracerts)
        snprintf(extra, sizeof extra, "%s/%s", d->e->pki, d->extracerts);
    snprintf(d->log, sizeof d->log, "%s/device-%s.log", d->e->dir, d->cmd);
    snprintf(d->out, sizeof d->out, "%s/out-%s.pem", d->e->dir, d->cmd);
    const char *verbose[] = {"-verbosity", "6", d->csr ? "-csr" : NULL, d->csr, NULL};
    d->rc = rpt_device(d->e->dir, d->e->tls[0], d->path + 1, d->cmd, cert, key,
                       d->extracerts ? extra : NULL, d->out, verbose, d->log);
    return NULL;
}

/* openssl cmp `cmd` while the CA is down for outage_s seconds, then the openssl mock CA
 * starts: the device gets its certificate without any error. */
static void openssl_through_outage(struct env *e, const char *cmd, const char *path,
                                   const char *who, const char *extracerts, int outage_s)
{
    struct device_run d = {.e = e, .path = path, .cmd = cmd, .who = who, .extracerts = extracerts};
    char csr[600], key[600];
    if (strcmp(cmd, "p10cr") == 0) {
        /* the CSR of the new key, asking for the device's own identity */
        snprintf(csr, sizeof csr, "%s/dev.csr", e->dir);
        snprintf(key, sizeof key, "%s/ca/issued.key", e->pki);
        const char *req[] = {
            "openssl", "req", "-new", "-key", key, "-subj", "/CN=Device 1/serialNumber=SN0001",
            "-out",    csr,   NULL};
        cr_assert_eq(rpt_run(req, 20000, NULL), 0);
        d.csr = csr;
    }
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, device_main, &d), 0);
    rpt_sleep_ms(outage_s * 1000L);
    mockca_up(e);
    pthread_join(t, NULL);
    cr_assert_eq(d.rc, 0, "%s failed: %s\nraproxy: %s", cmd, tail(d.log), tail(e->rp[0].log));
    cr_assert_geq(rpt_file_count(d.log, "received 'waiting' PKIStatus"), 1,
                  "%s was not answered waiting: %s", cmd, tail(d.log));
    cr_assert_geq(rpt_file_count(d.log, "received POLLREP"), 1, "%s", tail(d.log));
    cr_assert_eq(rpt_file_count(d.log, "CMP error"), 0, "%s", tail(d.log));
    size_t len;
    uint8_t *pem = rpt_read_file(d.out, &len);
    cr_assert(pem && strstr((char *)pem, "BEGIN CERTIFICATE"), "%s: no certificate", cmd);
    free(pem);
    rpt_stop(&e->mock, SIGKILL, 5000);
    memset(&e->mock, 0, sizeof e->mock);
}

/* Two replicas share one port (SO_REUSEPORT) and one Redis: openssl cmp opens a connection
 * per message, so its polls land on either. The CA is down for 10 s. */
Test(delivery, openssl_ir_polls_through_a_ten_second_ca_outage_with_two_replicas)
{
    struct env e;
    env_init(&e, true);
    int port = rpt_free_port(), tls = rpt_free_port();
    struct rp_cfg c = {.delayed = true};
    replica_start2(&e, 0, port, tls, &c);
    replica_start2(&e, 1, port, tls, &c);
    openssl_through_outage(&e, "ir", MANUF, "vendor/dev1", "vendor/ica.pem", OUTAGE_S);
    /* it was answered waiting and kept in Redis, then delivered from there */
    int waiting = rpt_file_count(e.rp[0].log, "\"result\":\"waiting\"") +
                  rpt_file_count(e.rp[1].log, "\"result\":\"waiting\"");
    int delivered = rpt_file_count(e.rp[0].log, "\"result\":\"delivered\"") +
                    rpt_file_count(e.rp[1].log, "\"result\":\"delivered\"");
    cr_expect_geq(waiting, 2, "the ir and at least one poll were answered waiting");
    cr_expect_eq(delivered, 1, "the ip went to the device once");
    env_free(&e);
}

/* Bouncy Castle's CMP classes (bcpkix, test/integration/BcCmpClient.java) as the device,
 * through raproxy with Redis, while the CA is down for 10 s and then the openssl mock CA
 * starts: answered waiting, it polls, gets the ip signed by the RA for its pollReq, and
 * confirms; no error. */
#define BC_CLASSPATH                                                                               \
    "/usr/share/java/bcprov.jar:/usr/share/java/bcpkix.jar:/usr/share/java/bcutil.jar"

struct bc_run {
    const char *const *argv;
    const char *log;
    int rc;
};

static void *bc_main(void *arg)
{
    struct bc_run *b = arg;
    b->rc = rpt_run(b->argv, 120000, b->log);
    return NULL;
}

Test(delivery, bouncy_castle_polls_through_a_ten_second_ca_outage)
{
    struct env e;
    struct rp_cfg c = {.delayed = true};
    env_up(&e, true, &c);
    char src[600], url[128], cert[600], key[600], chain[600], ra[600], out[600], log[600];
    snprintf(src, sizeof src, "%s/test/integration/BcCmpClient.java", rpt_src());
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", e.ports[0], MANUF);
    snprintf(cert, sizeof cert, "%s/vendor/dev1.pem", e.pki);
    snprintf(key, sizeof key, "%s/vendor/dev1.key", e.pki);
    snprintf(chain, sizeof chain, "%s/vendor/ica.pem", e.pki);
    snprintf(ra, sizeof ra, "%s/operator/ra.pem", e.pki);
    snprintf(out, sizeof out, "%s/bc-cert.pem", e.dir);
    snprintf(log, sizeof log, "%s/bc.log", e.dir);
    const char *argv[] = {"java", "-cp", BC_CLASSPATH, src, url,  cert,
                          key,    chain, ra,           out, "60", NULL};
    struct bc_run b = {.argv = argv, .log = log};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, bc_main, &b), 0);
    rpt_sleep_ms(OUTAGE_S * 1000L);
    mockca_up(&e);
    pthread_join(t, NULL);
    cr_assert_eq(b.rc, 0, "Bouncy Castle failed: %s\nraproxy: %s\nCA: %s", tail(log),
                 tail(e.rp[0].log), tail(e.mock.log));
    cr_expect_geq(rpt_file_count(log, "waiting"), 1, "not answered waiting: %s", tail(log));
    cr_expect_geq(rpt_file_count(log, "pollRep checkAfter="), 1, "%s", tail(log));
    cr_expect_eq(rpt_file_count(log, "FAIL"), 0, "%s", tail(log));
    cr_expect_eq(rpt_file_count(log, "pkiConf"), 1, "%s", tail(log));
    size_t len;
    uint8_t *pem = rpt_read_file(out, &len);
    cr_assert(pem && strstr((char *)pem, "BEGIN CERTIFICATE"), "no certificate");
    free(pem);
    env_free(&e);
}

/* Without Redis (one replica, the in-process queue): cr, p10cr and kur too. */
Test(delivery, openssl_cr_p10cr_and_kur_poll_through_an_outage_in_process)
{
    struct env e;
    struct rp_cfg c = {.delayed = true};
    env_up(&e, false, &c);
    openssl_through_outage(&e, "cr", MANUF, "vendor/dev2", "vendor/ica.pem", 3);
    openssl_through_outage(&e, "p10cr", MANUF, "vendor/dev1", "vendor/ica.pem", 3);
    openssl_through_outage(&e, "kur", OPER, "ca/issued", "operator/ica.pem", 3);
    env_free(&e);
}

/* ---- a fleet through an outage -------------------------------------------------------------- */

static void make_fleet(struct env *e, char *fleet, size_t cap, const char *count)
{
    char bin[600], ica[600], ikey[600], log[600];
    snprintf(bin, sizeof bin, "%s/bench/bench_mkfleet", rpt_bin());
    snprintf(ica, sizeof ica, "%s/vendor/ica.pem", e->pki);
    snprintf(ikey, sizeof ikey, "%s/vendor/ica.key", e->pki);
    snprintf(fleet, cap, "%s/fleet.bin", e->dir);
    snprintf(log, sizeof log, "%s/mkfleet.log", e->dir);
    const char *argv[] = {bin,       "--ca-cert", ica,     "--ca-key", ikey,
                          "--count", count,       "--out", fleet,      NULL};
    cr_assert_eq(rpt_run(argv, 60000, log), 0, "bench_mkfleet: %s", tail(log));
}

static long result_field(const char *out, const char *name)
{
    const char *res = strstr(out, "RESULT ");
    cr_assert_not_null(res, "%s", out);
    char want[32];
    snprintf(want, sizeof want, " %s=", name);
    const char *v = strstr(res, want);
    cr_assert_not_null(v, "%s", res);
    return strtol(v + strlen(want), NULL, 10);
}

/* FLEET_N devices at once, two replicas, the CA answering 503 for its first 10 s and then
 * issuing at most 20 certificates per second: every device gets its certificate, none is
 * refused, no transaction reaches the CA twice, and the CA never issues above its cap. */
Test(delivery, fleet_enrolls_through_a_ten_second_outage_with_no_failure)
{
    struct env e;
    env_init(&e, true);
    char fleet[600];
    make_fleet(&e, fleet, sizeof fleet, "60");
    int port = rpt_free_port();
    struct rp_cfg c = {.delayed = true, .upstream = "  max_in_flight: 8\n  rate: 20/s\n"};
    replica_start(&e, 0, port, &c);
    replica_start(&e, 1, port, &c);
    const char *ca_opts[] = {"--down-ms", "10000", "--rate", "20", NULL};
    benchca_start(&e, ca_opts);
    char url[128], ica[600], log[600], n[16];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, MANUF);
    snprintf(ica, sizeof ica, "%s/vendor/ica.pem", e.pki);
    snprintf(log, sizeof log, "%s/fleet.log", e.dir);
    snprintf(n, sizeof n, "%d", FLEET_N);
    char bin[600];
    snprintf(bin, sizeof bin, "%s/bench/bench_fleet", rpt_bin());
    const char *argv[] = {bin,     "--url",      url,     "--fleet",       fleet, "--chain",
                          ica,     "--mode",     "storm", "--concurrency", n,     "--requests",
                          n,       "--duration", "90",    "--keys",        "4",   "--timeout-ms",
                          "60000", NULL};
    long t0 = rpt_mono_ms();
    int rc = rpt_run(argv, 180000, log);
    size_t len;
    char *out = (char *)rpt_read_file(log, &len);
    cr_assert_not_null(out);
    cr_log_info("%s", strstr(out, "RESULT ") ? strstr(out, "RESULT ") : out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect_eq(result_field(out, "ok"), FLEET_N, "%s", out);
    cr_expect_eq(result_field(out, "failed"), 0, "%s", out);
    cr_expect_eq(result_field(out, "waited"), FLEET_N, "every device was answered waiting");
    cr_expect_gt(rpt_mono_ms() - t0, OUTAGE_S * 1000L, "they waited out the outage");
    free(out);
    benchca_stop(&e);
    cr_expect_eq(mock_count(&e, "ip"), FLEET_N, "the CA issued once per device");
    cr_expect_eq(mock_count(&e, "dup_txid"), 0, "no transaction reached the CA twice");
    cr_expect_leq(mock_count(&e, "peak_ip_s"), 20, "the CA's cap held");
    env_free(&e);
}

/* ---- raw messages --------------------------------------------------------------------------- */

static void dev_init(struct env *e, struct dev *d, const char *name, const char *cmd)
{
    memset(d, 0, sizeof *d);
    d->name = name;
    d->ir = rpt_capture_device(e->dir, e->pki, cmd, name, &d->ir_len);
    cr_assert_not_null(d->ir, "capture %s", name);
    snprintf(d->key, sizeof d->key, "%s/%s.key", e->pki, name);
    cr_assert_eq(getrandom(d->txid, sizeof d->txid, 0), (ssize_t)sizeof d->txid);
}

/* A device of the test (freed with the env). */
static struct dev *env_dev(struct env *e, const char *name, const char *cmd)
{
    cr_assert_lt(e->n_devs, ENV_DEVS);
    struct dev *d = &e->devs[e->n_devs++];
    dev_init(e, d, name, cmd);
    return d;
}

/* The device's message with `body` (absent: its request), a fresh nonce, signed. */
static struct rp_view dev_msg(struct rp_arena *a, struct dev *d, struct rp_view body)
{
    cr_assert_eq(getrandom(d->nonce, sizeof d->nonce, 0), (ssize_t)sizeof d->nonce);
    struct rpt_mut m = {.txid = rp_view_make(d->txid, sizeof d->txid),
                        .nonce = rp_view_make(d->nonce, sizeof d->nonce),
                        .body = body,
                        .key_file = d->key,
                        .pvno = d->pvno};
    return rpt_rebuild(a, d->ir, d->ir_len, &m);
}

/* pollReq [25] { { certReqId 0 } } */
static struct rp_view pollreq_body(void)
{
    static const uint8_t b[] = {0xb9, 0x07, 0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00};
    return rp_view_make(b, sizeof b);
}

/* certConf [24] { { certHash SHA-256(cert), certReqId 0 } } */
static struct rp_view certconf_body(struct rp_arena *a, const struct dev *d)
{
    uint8_t h[WC_SHA256_DIGEST_SIZE];
    cr_assert_eq(wc_Sha256Hash(d->cert, (word32)d->cert_len, h), 0);
    struct rp_derw w;
    struct rp_view out;
    rp_derw_init(&w, a, 128);
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_CMP_CERTCONF));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_octets(&w, rp_view_make(h, sizeof h));
    rp_derw_int64(&w, RP_DER_INTEGER, 0);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    return out;
}

/* POST the device's message to `port`; the answer must name its transaction and echo the
 * nonce it just sent (what openssl checks), and come from the RA. */
static struct rp_cmp_msg *exchange(struct env *e, struct dev *d, int port, struct rp_view body)
{
    struct rp_arena *a = &e->a;
    struct rp_view req = dev_msg(a, d, body);
    struct rp_cmp_msg *m = rp_arena_calloc(a, 1, sizeof *m);
    cr_assert_not_null(m);
    int st = rpt_post_cmp(port, MANUF, req, a, m);
    cr_assert_eq(st, 200, "%s: HTTP %d", d->name, st);
    cr_assert(rp_view_eq(m->header.transaction_id.val, rp_view_make(d->txid, TXID_LEN)));
    cr_assert(rp_view_eq(m->header.recip_nonce.val, rp_view_make(d->nonce, NONCE_LEN)),
              "%s: the answer does not echo the nonce of the message just sent", d->name);
    d->server_nonce_len = m->header.sender_nonce.val.len;
    memcpy(d->server_nonce, m->header.sender_nonce.val.p, d->server_nonce_len);
    return m;
}

static bool is_waiting_ip(const struct rp_cmp_msg *m)
{
    return m->body.type == RP_CMP_IP && m->body.rep.n == 1 &&
           m->body.rep.resps[0].status.status == RP_CMP_STATUS_WAITING;
}

static uint32_t failinfo_of(const struct rp_cmp_msg *m)
{
    return m->body.type == RP_CMP_ERROR ? m->body.error.status.fail_info : 0;
}

/* Poll at `port` until the answer is no pollRep (30 s); the final answer. */
static struct rp_cmp_msg *poll_until_final(struct env *e, struct dev *d, int port)
{
    long t0 = rpt_mono_ms();
    for (;;) {
        struct rp_cmp_msg *m = exchange(e, d, port, pollreq_body());
        if (m->body.type != RP_CMP_POLLREP)
            return m;
        cr_assert_eq(m->body.pollrep.n, 1);
        cr_assert_eq(m->body.pollrep.items[0].cert_req_id, 0);
        cr_assert(m->body.pollrep.items[0].check_after >= 1 &&
                      m->body.pollrep.items[0].check_after <= 2,
                  "checkAfter %lld outside check_after_s + jitter",
                  (long long)m->body.pollrep.items[0].check_after);
        cr_assert_lt(rpt_mono_ms() - t0, WAIT_MS, "%s: still waiting", d->name);
        rpt_sleep_ms(300);
    }
}

static void keep_cert(struct dev *d, const struct rp_cmp_msg *m)
{
    cr_assert_eq(m->body.type, RP_CMP_IP, "%s: body %s, failInfo 0x%x", d->name,
                 rp_cmp_body_name(m->body.type), failinfo_of(m));
    cr_assert_eq(m->body.rep.resps[0].status.status, RP_CMP_STATUS_ACCEPTED);
    struct rp_view c = m->body.rep.resps[0].cert;
    cr_assert(rp_view_present(c));
    d->cert = malloc(c.len);
    memcpy(d->cert, c.p, c.len);
    d->cert_len = c.len;
}

static void confirm(struct env *e, struct dev *d, int port)
{
    struct rp_cmp_msg *m = exchange(e, d, port, certconf_body(&e->a, d));
    cr_assert_eq(m->body.type, RP_CMP_PKICONF, "%s: certConf answered %s", d->name,
                 rp_cmp_body_name(m->body.type));
}

/* Redis state of a transaction's record: "queued", "sending", … ("" without one). */
static void record_state(struct env *e, const struct dev *d, char *out, size_t cap)
{
    char key[256], port[16], log[600];
    int n = snprintf(key, sizeof key, "raproxy:dd:{dd}:t:");
    for (size_t i = 0; i < TXID_LEN; i++)
        n += snprintf(key + n, sizeof key - (size_t)n, "%02x", d->txid[i]);
    snprintf(port, sizeof port, "%d", e->redis.port);
    snprintf(log, sizeof log, "%s/redis-cli.out", e->dir);
    unlink(log);
    const char *argv[] = {"redis-cli", "-p", port, "HGET", key, "st", NULL};
    cr_assert_eq(rpt_run(argv, 10000, log), 0);
    size_t len;
    char *s = (char *)rpt_read_file(log, &len);
    snprintf(out, cap, "%s", s ? s : "");
    for (char *p = out; *p; p++)
        if (*p == '\n')
            *p = 0;
    free(s);
}

/* Replica A queues three requests while the CA is down; one of them it sends to a CA that
 * holds it unanswered, then it is killed with SIGKILL. Replica B (started afterwards, same
 * Redis) answers the polls of A's transactions, sends the two A never sent, and never the
 * one A had sent: its device gets systemUnavail. The CA saw no transaction twice. */
Test(delivery, a_killed_replica_loses_no_queued_request_and_one_it_sent_is_never_resent)
{
    struct env e;
    /* one request at the CA at a time, across replicas; a lease of 2 + 1 + 2 s */
    struct rp_cfg c = {.delayed = true, .upstream = "  max_in_flight: 1\n", .timeout_ms = 2000};
    env_up(&e, true, &c);
    struct dev *d[3];
    const char *names[] = {"vendor/dev1", "vendor/dev2", "vendor/dev-rsa"};
    for (int i = 0; i < 3; i++)
        d[i] = env_dev(&e, names[i], "ir");
    for (int i = 0; i < 3; i++) {
        struct rp_cmp_msg *m = exchange(&e, d[i], e.ports[0], RP_VIEW_NULL);
        cr_assert(is_waiting_ip(m), "%s: %s 0x%x\nraproxy: %s", d[i]->name,
                  rp_cmp_body_name(m->body.type), failinfo_of(m), tail(e.rp[0].log));
        cr_assert_eq(m->body.rep.resps[0].cert_req_id, 0);
    }
    /* a CA that takes requests and holds them: A sends the oldest, dev1, and waits */
    const char *stall[] = {"--stall", NULL};
    benchca_start(&e, stall);
    char st[64] = "";
    long t0 = rpt_mono_ms();
    while (strcmp(st, "sending") != 0 && rpt_mono_ms() - t0 < WAIT_MS) {
        rpt_sleep_ms(50);
        record_state(&e, d[0], st, sizeof st);
    }
    cr_assert_str_eq(st, "sending", "A did not send dev1's request");
    cr_assert_eq(kill(e.rp[0].pid, SIGKILL), 0);
    rpt_stop(&e.rp[0], SIGKILL, 5000);
    memset(&e.rp[0], 0, sizeof e.rp[0]);
    kill(e.mock.pid, SIGUSR2); /* the CA answers what it holds: to a dead replica */
    struct rp_cfg cb = {.delayed = true, .upstream = "  max_in_flight: 1\n"};
    replica_start(&e, 1, rpt_free_port(), &cb);
    /* B answers the polls of A's transactions, and sends what A never sent */
    for (int i = 1; i < 3; i++) {
        keep_cert(d[i], poll_until_final(&e, d[i], e.ports[1]));
        confirm(&e, d[i], e.ports[1]);
    }
    /* dev1's request may have reached the CA: never again; its device is told */
    struct rp_cmp_msg *m = poll_until_final(&e, d[0], e.ports[1]);
    cr_assert_eq(failinfo_of(m), 1u << RP_FI_SYSTEM_UNAVAIL, "dev1: %s",
                 rp_cmp_body_name(m->body.type));
    record_state(&e, d[0], st, sizeof st);
    cr_assert_str_eq(st, "lost");
    benchca_stop(&e);
    cr_expect_eq(mock_count(&e, "dup_txid"), 0, "a transaction reached the CA twice");
    cr_expect_leq(mock_count(&e, "ip"), 3, "dev1 at most once, dev2 and dev-rsa once each");
    cr_expect_geq(mock_count(&e, "ip"), 2);
    env_free(&e);
}

/* A CA that answers HTTP 500 (or a gateway's 502) may have stored the certificate: only a
 * 503 says "not taken". dev1's ir is queued while the CA is unreachable (nothing written:
 * that one is kept, the control), then sent once to a CA answering 500: its poll gets
 * systemUnavail and it is never sent again. dev2's ir, sent while it waits, gets
 * systemUnavail (or, should it be queued behind the CA's trouble, on its poll), also sent
 * once. (A 503 requeues: the fleet test's outage.) */
static void server_error_case(const char *status)
{
    struct env e;
    struct rp_cfg c = {.delayed = true};
    env_up(&e, true, &c);
    struct dev *d1 = env_dev(&e, "vendor/dev1", "ir"), *d2 = env_dev(&e, "vendor/dev2", "ir");
    struct rp_cmp_msg *m = exchange(&e, d1, e.ports[0], RP_VIEW_NULL);
    cr_assert(is_waiting_ip(m), "CA unreachable: %s", rp_cmp_body_name(m->body.type));
    const char *opts[] = {"--down-ms", "600000", "--down-status", status, NULL};
    benchca_start(&e, opts);
    m = poll_until_final(&e, d1, e.ports[0]);
    cr_assert_eq(failinfo_of(m), 1u << RP_FI_SYSTEM_UNAVAIL, "dev1 after HTTP %s: %s", status,
                 rp_cmp_body_name(m->body.type));
    rpt_sleep_ms(5000); /* the dispatcher's back-off after the CA's trouble is over */
    m = exchange(&e, d2, e.ports[0], RP_VIEW_NULL);
    if (is_waiting_ip(m))
        m = poll_until_final(&e, d2, e.ports[0]);
    cr_assert_eq(failinfo_of(m), 1u << RP_FI_SYSTEM_UNAVAIL, "dev2 after HTTP %s: %s", status,
                 rp_cmp_body_name(m->body.type));
    rpt_sleep_ms(5000); /* time for a resend, were there one */
    benchca_stop(&e);
    cr_expect_eq(mock_count(&e, "requests"), 2, "each request reached the CA once");
    cr_expect_eq(mock_count(&e, "ip"), 0);
    env_free(&e);
}

Test(delivery, a_request_answered_http_500_is_never_resent)
{
    server_error_case("500");
}

Test(delivery, a_request_answered_http_502_is_never_resent)
{
    server_error_case("502");
}

/* ---- one certificate request per device ----------------------------------------------------- */

/* A request posted from a thread (no assertions there: they belong to the test's thread). */
struct post_run {
    struct rp_arena a;
    struct rp_view req;
    int port;
    struct rp_cmp_msg *m;
};

static void post_prepare(struct post_run *p, struct dev *d, int port)
{
    cr_assert_eq(rp_arena_new(&p->a, ARENA), RP_OK);
    p->req = dev_msg(&p->a, d, RP_VIEW_NULL);
    p->m = rp_arena_calloc(&p->a, 1, sizeof *p->m);
    cr_assert_not_null(p->m);
    p->port = port;
}

static void *post_main(void *arg)
{
    struct post_run *p = arg;
    if (rpt_post_cmp(p->port, MANUF, p->req, &p->a, p->m) != 200)
        p->m = NULL;
    return NULL;
}

/* While dev1's ir is at the CA (which holds it), a second ir of dev1 (another transaction)
 * is refused with transactionIdInUse; another device's goes; once the first has its
 * answer, dev1 may ask again. Delayed delivery off: the rule holds on its own. */
static void duplicate_case(bool redis)
{
    struct env e;
    struct rp_cfg c = {.delayed = false};
    env_up(&e, redis, &c);
    struct dev *d1 = env_dev(&e, "vendor/dev1", "ir");
    struct dev *d1b = env_dev(&e, "vendor/dev1", "ir"); /* another transaction of the same device */
    struct dev *d2 = env_dev(&e, "vendor/dev2", "ir");
    const char *stall[] = {"--stall", NULL};
    benchca_start(&e, stall);
    struct post_run first, other;
    post_prepare(&first, d1, e.ports[0]);
    post_prepare(&other, d2, e.ports[0]);
    pthread_t t1, t2;
    cr_assert_eq(pthread_create(&t1, NULL, post_main, &first), 0);
    rpt_sleep_ms(1000); /* dev1's ir is at the CA */
    struct rp_cmp_msg *m = exchange(&e, d1b, e.ports[0], RP_VIEW_NULL);
    cr_assert_eq(failinfo_of(m), 1u << RP_FI_TRANSACTION_ID_IN_USE, "second request: %s 0x%x",
                 rp_cmp_body_name(m->body.type), failinfo_of(m));
    cr_assert_eq(pthread_create(&t2, NULL, post_main, &other), 0); /* control: dev2 goes */
    rpt_sleep_ms(1000);
    kill(e.mock.pid, SIGUSR2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_not_null(first.m);
    cr_assert_eq(first.m->body.type, RP_CMP_IP, "first: %s", rp_cmp_body_name(first.m->body.type));
    cr_assert_not_null(other.m);
    cr_assert_eq(other.m->body.type, RP_CMP_IP, "dev2: %s", rp_cmp_body_name(other.m->body.type));
    m = exchange(&e, d1b, e.ports[0], RP_VIEW_NULL); /* the same message, a new nonce */
    cr_assert_eq(m->body.type, RP_CMP_IP, "after the answer: %s 0x%x",
                 rp_cmp_body_name(m->body.type), failinfo_of(m));
    benchca_stop(&e);
    cr_expect_eq(mock_count(&e, "ip"), 3);
    cr_expect_eq(mock_count(&e, "dup_txid"), 0);
    rp_arena_free(&first.a);
    rp_arena_free(&other.a);
    env_free(&e);
}

Test(delivery, a_second_request_of_a_device_is_refused_while_one_is_at_the_ca_redis)
{
    duplicate_case(true);
}

Test(delivery, a_second_request_of_a_device_is_refused_while_one_is_at_the_ca_in_process)
{
    duplicate_case(false);
}

/* Two replicas on their own ports, one Redis: A answers the ir waiting, B answers its
 * polls (pollRep while the CA is down, then the CA's ip re-signed for B's pollReq, echoing
 * its nonce), and A takes the certConf. The CA saw the request once. */
Test(delivery, a_poll_at_another_replica_gets_the_answer)
{
    struct env e;
    struct rp_cfg c = {.delayed = true};
    env_up(&e, true, &c);
    struct dev *d = env_dev(&e, "vendor/dev1", "ir");
    replica_start(&e, 1, rpt_free_port(), &c);
    cr_assert(is_waiting_ip(exchange(&e, d, e.ports[0], RP_VIEW_NULL)), "A answers waiting");
    struct rp_cmp_msg *m = exchange(&e, d, e.ports[1], pollreq_body());
    cr_assert_eq(m->body.type, RP_CMP_POLLREP, "B, the CA down: %s 0x%x",
                 rp_cmp_body_name(m->body.type), failinfo_of(m));
    benchca_start(&e, NULL);
    keep_cert(d, poll_until_final(&e, d, e.ports[1]));
    confirm(&e, d, e.ports[0]);
    benchca_stop(&e);
    cr_expect_eq(mock_count(&e, "ip"), 1, "one request reached the CA");
    cr_expect_eq(mock_count(&e, "dup_txid"), 0);
    env_free(&e);
}

/* Redis stops answering while a device waits: admission falls back to the in-process
 * table (on_redis_failure: open), which cannot know a transaction kept in Redis. The poll is
 * told to come back (pollRep), not refused badRequest; once Redis is back the device gets
 * its certificate. */
Test(delivery, a_poll_while_redis_is_late_is_told_to_come_back)
{
    struct env e;
    struct rp_cfg c = {.delayed = true};
    env_up(&e, true, &c);
    struct dev *d = env_dev(&e, "vendor/dev1", "ir");
    struct rp_cmp_msg *w = exchange(&e, d, e.ports[0], RP_VIEW_NULL);
    cr_assert(is_waiting_ip(w), "ir: %s 0x%x\nraproxy: %s", rp_cmp_body_name(w->body.type),
              failinfo_of(w), tail(e.rp[0].log));
    kill(e.redis.p.pid, SIGSTOP);
    struct rp_cmp_msg *m = exchange(&e, d, e.ports[0], pollreq_body());
    kill(e.redis.p.pid, SIGCONT);
    cr_assert_eq(m->body.type, RP_CMP_POLLREP, "Redis late: %s 0x%x",
                 rp_cmp_body_name(m->body.type), failinfo_of(m));
    benchca_start(&e, NULL);
    keep_cert(d, poll_until_final(&e, d, e.ports[0]));
    confirm(&e, d, e.ports[0]);
    benchca_stop(&e);
    cr_expect_eq(mock_count(&e, "ip"), 1);
    env_free(&e);
}

/* A retry of a waiting transaction (same transactionID, new nonce) joins it: waiting again,
 * one record, and later the CA's answer for the retry like for a poll. */
Test(delivery, a_retry_of_a_waiting_transaction_joins_it)
{
    struct env e;
    struct rp_cfg c = {.delayed = true};
    env_up(&e, true, &c);
    struct dev *d = env_dev(&e, "vendor/dev1", "ir");
    cr_assert(is_waiting_ip(exchange(&e, d, e.ports[0], RP_VIEW_NULL)));
    cr_assert(is_waiting_ip(exchange(&e, d, e.ports[0], RP_VIEW_NULL)), "the retry joins");
    benchca_start(&e, NULL);
    struct rp_cmp_msg *m = NULL;
    long t0 = rpt_mono_ms();
    do {
        rpt_sleep_ms(300);
        m = exchange(&e, d, e.ports[0], RP_VIEW_NULL);
    } while (is_waiting_ip(m) && rpt_mono_ms() - t0 < WAIT_MS);
    keep_cert(d, m);
    confirm(&e, d, e.ports[0]);
    benchca_stop(&e);
    cr_expect_eq(mock_count(&e, "ip"), 1, "one request reached the CA");
    cr_expect_eq(mock_count(&e, "dup_txid"), 0);
    env_free(&e);
}

/* A genm while the CA is down: from a pvno 3 client, the RFC 9483 §4.4 error with status
 * waiting, then pollRep, then the CA's genp for a pollReq; from a pvno 2 client, which cannot
 * poll for it, systemUnavail as without delayed delivery. */
Test(delivery, a_genm_waits_for_a_cmp2021_client_and_is_refused_to_a_cmp2000_one)
{
    struct env e;
    struct rp_cfg c = {.delayed = true};
    env_up(&e, true, &c);
    struct dev *d = env_dev(&e, "vendor/dev1", "genm"), *d2 = env_dev(&e, "vendor/dev1", "genm");
    d->pvno = RP_CMP_PVNO_CMP2021;
    d2->pvno = 2;
    struct rp_cmp_msg *m = exchange(&e, d2, e.ports[0], RP_VIEW_NULL);
    cr_assert_eq(failinfo_of(m), 1u << RP_FI_SYSTEM_UNAVAIL, "pvno 2: %s",
                 rp_cmp_body_name(m->body.type));
    m = exchange(&e, d, e.ports[0], RP_VIEW_NULL);
    cr_assert_eq(m->body.type, RP_CMP_ERROR, "pvno 3: %s", rp_cmp_body_name(m->body.type));
    cr_assert_eq(m->body.error.status.status, RP_CMP_STATUS_WAITING);
    cr_assert_eq(m->body.error.status.fail_info, 0u, "waiting, no failure");
    /* pollReq [25] { { certReqId -1 } } */
    static const uint8_t poll_b[] = {0xb9, 0x07, 0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0xff};
    struct rp_view poll = rp_view_make(poll_b, sizeof poll_b);
    m = exchange(&e, d, e.ports[0], poll);
    cr_assert_eq(m->body.type, RP_CMP_POLLREP, "%s", rp_cmp_body_name(m->body.type));
    mockca_up(&e);
    long t0 = rpt_mono_ms();
    do {
        rpt_sleep_ms(300);
        m = exchange(&e, d, e.ports[0], poll);
    } while (m->body.type == RP_CMP_POLLREP && rpt_mono_ms() - t0 < WAIT_MS);
    /* the CA's answer, whatever it is: OpenSSL 3.0's mock CA refuses a pvno 3 genm
     * (badRequest) where a CMP2021 CA answers genp; raproxy delivers it once, for the poll */
    cr_assert_neq(m->body.type, RP_CMP_POLLREP, "still waiting");
    cr_assert(m->body.type == RP_CMP_GENP || m->body.type == RP_CMP_ERROR, "%s",
              rp_cmp_body_name(m->body.type));
    cr_assert_eq(rpt_file_count(e.rp[0].log, "\"result\":\"delivered\""), 1, "%s",
                 tail(e.rp[0].log));
    env_free(&e);
}

/* ---- quotas with units ---------------------------------------------------------------------- */

/* per_device {rate: 3/day, burst: 3}: three certificates, then a refusal that says when the
 * next one comes (8 hours); polls and confirmations cost nothing of it. */
static void quota_case(bool redis)
{
    struct env e;
    struct rp_cfg c = {.delayed = false,
                       .manuf = "    limits: {per_device: {rate: 3/day, burst: 3}}\n"};
    env_up(&e, redis, &c);
    benchca_start(&e, NULL);
    for (int i = 0; i < 3; i++) {
        struct dev *d = env_dev(&e, "vendor/dev1", "ir");
        struct rp_cmp_msg *m = exchange(&e, d, e.ports[0], RP_VIEW_NULL);
        keep_cert(d, m);
        confirm(&e, d, e.ports[0]);
    }
    struct dev *d = env_dev(&e, "vendor/dev1", "ir");
    struct rp_view req = dev_msg(&e.a, d, RP_VIEW_NULL);
    struct rpt_resp r;
    cr_assert_eq(
        rpt_http(e.ports[0], "POST", MANUF, "application/pkixcmp", req.p, req.len, WAIT_MS, &r), 0);
    const char *ra = strstr(r.headers, "Retry-After: ");
    cr_assert_not_null(ra, "the fourth certificate request is refused with Retry-After: %s",
                       r.headers);
    long after = strtol(ra + strlen("Retry-After: "), NULL, 10);
    cr_expect(after > 7 * 3600 && after <= 8 * 3600, "Retry-After %ld s: the next in 8 h", after);
    rpt_resp_free(&r);
    /* another device has its own quota */
    struct dev *d2 = env_dev(&e, "vendor/dev2", "ir");
    keep_cert(d2, exchange(&e, d2, e.ports[0], RP_VIEW_NULL));
    benchca_stop(&e);
    cr_expect_eq(mock_count(&e, "ip"), 4, "three for dev1, one for dev2");
    env_free(&e);
}

Test(delivery, a_daily_certificate_quota_redis)
{
    quota_case(true);
}

Test(delivery, a_daily_certificate_quota_in_process)
{
    quota_case(false);
}

/* ---- renewal window ------------------------------------------------------------------------- */

/* kur of ca/issued (issued when the test PKI was made: young, ten years to go). */
static int kur(struct env *e, const char *oper_extra, char *log, size_t cap)
{
    struct rp_cfg c = {.oper = oper_extra};
    replica_start(e, 0, rpt_free_port(), &c);
    char cert[600], key[600], ica[600], out[600];
    snprintf(cert, sizeof cert, "%s/ca/issued.pem", e->pki);
    snprintf(key, sizeof key, "%s/ca/issued.key", e->pki);
    snprintf(ica, sizeof ica, "%s/operator/ica.pem", e->pki);
    snprintf(out, sizeof out, "%s/kup.pem", e->dir);
    static int seq;
    snprintf(log, cap, "%s/kur-%d.log", e->dir, seq++);
    int rc = rpt_device(e->dir, e->tls[0], OPER + 1, "kur", cert, key, ica, out, NULL, log);
    rpt_stop(&e->rp[0], SIGTERM, 10000);
    memset(&e->rp[0], 0, sizeof e->rp[0]);
    return rc;
}

Test(delivery, kur_outside_the_renewal_window_is_refused)
{
    struct env e;
    env_init(&e, false);
    char log[600];
    mockca_up(&e);
    /* too young */
    cr_assert_neq(kur(&e, "    renewal: {min_age: 30d}\n", log, sizeof log), 0);
    cr_expect_geq(rpt_file_count(log, "notAuthorized"), 1, "%s", tail(log));
    cr_expect_geq(rpt_file_count(log, "renewal.min_age"), 1, "%s", tail(log));
    /* too much life left */
    cr_assert_neq(kur(&e, "    renewal: {min_remaining: 33%}\n", log, sizeof log), 0);
    cr_expect_geq(rpt_file_count(log, "notAuthorized"), 1, "%s", tail(log));
    cr_expect_geq(rpt_file_count(log, "renewal.min_remaining"), 1, "%s", tail(log));
    /* control: inside the window (any age, up to all of its life left) */
    cr_assert_eq(kur(&e, "    renewal: {min_age: 0s, min_remaining: 100%}\n", log, sizeof log), 0,
                 "%s", tail(log));
    env_free(&e);
}
