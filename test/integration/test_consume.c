/* allowlist_consume holds (issue 15): a serial is claimed atomically when its request
 * verifies — in Redis by one script, in process (persisted to allowlist_state) for a file
 * allowlist — consumed when the CA issues (ip, cp and kup alike), given back when the CA
 * refuses or never answers. Real processes: openssl cmp as devices and as the CA
 * (`openssl cmp -port`, behind a recording relay), redis-server, raproxy. Before, 4
 * concurrent ir of one serial all got certificates, a cp never consumed, and a file
 * allowlist consumed nothing. */
#include "fixtures.h"
#include "httpc.h"
#include "msgbuild.h"
#include "support.h"

#include "raproxy/arena.h"
#include "raproxy/cmp.h"
#include "raproxy/err.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARENA      (1u << 20)
#define P_REDIS    "/.well-known/cmp/p/redis"
#define P_FILE     "/.well-known/cmp/p/file"
#define P_OPER     "/.well-known/cmp/p/oper"
#define CONCURRENT 4

static char *g_dir;
static const char *g_pki;
static int g_port, g_ca, g_relay;
static char g_rec[600], g_cfg[600];
static struct rpt_proc g_rp, g_mock, g_rel;
static struct rpt_redis g_redis;
static struct rp_arena g_a;

static void pki(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", g_pki, rel);
}

static void redis_cli(const char *const *args, char *out, size_t cap)
{
    char port[16], log[600];
    snprintf(port, sizeof port, "%d", g_redis.port);
    snprintf(log, sizeof log, "%s/redis-cli.log", g_dir);
    unlink(log);
    const char *argv[16] = {"redis-cli", "-p", port};
    size_t n = 3;
    for (size_t i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    cr_assert_eq(rpt_run(argv, 10000, log), 0, "redis-cli failed, see %s", log);
    size_t len;
    char *s = (char *)rpt_read_file(log, &len);
    snprintf(out, cap, "%s", s ? s : "");
    free(s);
}

static void mock_start(const char *const *extra)
{
    char trusted[600];
    pki(trusted, sizeof trusted, "operator/root.pem");
    cr_assert_eq(rpt_mockca_start(&g_mock, g_dir, g_ca, trusted, extra), 0);
}

static void setup(void)
{
    g_pki = rpt_pki();
    cr_assert_not_null(g_pki);
    g_dir = rpt_tmpdir();
    g_port = rpt_free_port();
    g_ca = rpt_free_port();
    g_relay = rpt_free_port();
    cr_assert_eq(rpt_redis_start(&g_redis, NULL), 0);
    char out[256];
    const char *sadd[] = {"SADD", "raproxy:allow:{dom:redis}", "SN0001", "SN0002", NULL};
    redis_cli(sadd, out, sizeof out);
    mock_start(NULL);
    char port[16], url[128], script[600], path[600];
    snprintf(g_rec, sizeof g_rec, "%s/sent", g_dir);
    cr_assert_eq(mkdir(g_rec, 0755), 0);
    snprintf(port, sizeof port, "%d", g_relay);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/pkix/", g_ca);
    snprintf(script, sizeof script, "%s/test/integration/record_relay.py", rpt_src());
    const char *argv[] = {"/usr/bin/python3", script, port, url, g_rec, NULL};
    snprintf(g_rel.log, sizeof g_rel.log, "%s/relay.log", g_dir);
    cr_assert_eq(rpt_spawn(&g_rel, argv), 0);
    cr_assert_eq(rpt_wait_port(g_relay, 10000), 0);
    snprintf(path, sizeof path, "%s/serials.txt", g_dir);
    cr_assert_eq(rpt_write_file(path, "SN0001\nSN0002\n", 14), 0);
    const char *P = g_pki, *D = g_dir;
    char cfg[6000];
    snprintf(cfg, sizeof cfg,
             "listeners:\n  - address: 127.0.0.1:%d\n    tls: off\n"
             "upstream: {url: \"http://127.0.0.1:%d/pkix/\", keep_alive: false, "
             "timeout_ms: 20000}\n"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
             "chain: %s/operator/ra.chain.pem}\n"
             "redis: {url: \"%s\"}\n"
             "domains:\n"
             "  - name: redis\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir, cr, certConf, pollReq, error]\n"
             "    allowlist: redis\n"
             "    allowlist_consume: true\n"
             "  - name: file\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir, cr, certConf, pollReq, error]\n"
             "    allowlist: %s/serials.txt\n"
             "    allowlist_consume: true\n"
             "    allowlist_state: %s/serials.state\n"
             "  - name: oper\n"
             "    trust_anchors: [%s/operator/root.pem]\n"
             "    intermediates: [%s/operator/ica.pem]\n"
             "    allow: [kur, certConf, error]\n"
             "    allowlist: %s/serials.txt\n"
             "    allowlist_consume: true\n"
             "    allowlist_state: %s/oper.state\n",
             g_port, g_relay, P, P, P, g_redis.url, P, P, D, D, P, P, D, D);
    snprintf(g_cfg, sizeof g_cfg, "%s/raproxy.yaml", g_dir);
    cr_assert_eq(rpt_write_file(g_cfg, cfg, strlen(cfg)), 0);
    cr_assert_eq(rpt_raproxy_start(&g_rp, g_dir, g_cfg, g_port), 0, "%s", g_rp.log);
    cr_assert_eq(rp_arena_new(&g_a, ARENA), RP_OK);
}

static void teardown(void)
{
    cr_expect_eq(rpt_stop(&g_rp, SIGTERM, 15000), 0);
    cr_expect_eq(rpt_file_count(g_rp.log, "AddressSanitizer"), 0);
    rpt_stop(&g_mock, SIGKILL, 2000);
    rpt_stop(&g_rel, SIGKILL, 2000);
    rpt_redis_stop(&g_redis);
    rp_arena_free(&g_a);
    rpt_rmdir(g_dir);
    free(g_dir);
}

TestSuite(consume, .init = setup, .fini = teardown, .timeout = 240);

static int sent(void)
{
    return rpt_dir_count(g_rec, ".der");
}

/* An ir of vendor device `who` as openssl writes it (its own subject), not sent. */
static uint8_t *capture_ir(const char *cmd, const char *who, size_t *len)
{
    uint8_t *b = rpt_capture_device(g_dir, g_pki, cmd, who, len);
    cr_assert_not_null(b, "openssl cmp -reqout wrote nothing");
    return b;
}

/* The same request with a fresh transactionID and nonce, signed again by the device. */
static struct rp_view again(struct rp_arena *a, const uint8_t *b, size_t len, const char *key_rel,
                            int txn)
{
    char key[600];
    uint8_t *txid = rp_arena_alloc(a, 16);
    snprintf((char *)txid, 16, "txn-%010d", txn);
    txid[15] = '!';
    pki(key, sizeof key, key_rel);
    struct rpt_mut m = {.key_file = key, .txid = rp_view_make(txid, 16)};
    return rpt_rebuild(a, b, len, &m);
}

enum outcome { GOT_CERT, REFUSED_NOT_AUTHORIZED, OTHER };

static enum outcome classify(const struct rp_cmp_msg *m, int status)
{
    if (status != 200)
        return OTHER;
    if ((m->body.type == RP_CMP_IP || m->body.type == RP_CMP_CP || m->body.type == RP_CMP_KUP) &&
        m->body.rep.n && m->body.rep.resps[0].status.status == RP_CMP_STATUS_ACCEPTED)
        return GOT_CERT;
    if (m->body.type == RP_CMP_ERROR &&
        m->body.error.status.fail_info == 1u << RP_FI_NOT_AUTHORIZED)
        return REFUSED_NOT_AUTHORIZED;
    return OTHER;
}

static enum outcome post(const char *path, struct rp_view req)
{
    struct rp_cmp_msg m;
    int st = rpt_post_cmp(g_port, path, req, &g_a, &m);
    return classify(&m, st);
}

struct racer {
    const char *path;
    struct rp_view req;
    pthread_barrier_t *start;
    enum outcome got;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct rp_arena a;
    struct rp_cmp_msg m;
    rp_arena_new(&a, ARENA);
    pthread_barrier_wait(r->start);
    int st = rpt_post_cmp(g_port, r->path, r->req, &a, &m);
    r->got = classify(&m, st);
    rp_arena_free(&a);
    return NULL;
}

/* CONCURRENT requests of one serial at once: how many got a certificate. */
static int race_one_serial(const char *path, const uint8_t *b, size_t len, int first_txn)
{
    struct racer r[CONCURRENT];
    pthread_t t[CONCURRENT];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, CONCURRENT);
    for (int i = 0; i < CONCURRENT; i++) {
        r[i] = (struct racer){path, again(&g_a, b, len, "vendor/dev1.key", first_txn + i), &start,
                              OTHER};
        cr_assert(rp_view_present(r[i].req));
    }
    for (int i = 0; i < CONCURRENT; i++)
        pthread_create(&t[i], NULL, race, &r[i]);
    int certs = 0, refused = 0;
    for (int i = 0; i < CONCURRENT; i++) {
        pthread_join(t[i], NULL);
        certs += r[i].got == GOT_CERT;
        refused += r[i].got == REFUSED_NOT_AUTHORIZED;
    }
    pthread_barrier_destroy(&start);
    cr_expect_eq(certs + refused, CONCURRENT, "every request got a certificate or notAuthorized");
    return certs;
}

Test(consume, concurrent_requests_of_one_serial_get_exactly_one_certificate)
{
    size_t len;
    uint8_t *b = capture_ir("ir", "vendor/dev1", &len);
    int before = sent();
    cr_expect_eq(race_one_serial(P_REDIS, b, len, 100), 1, "Redis allowlist (%s)", g_rp.log);
    cr_expect_eq(sent(), before + 1, "only the claiming request reached the CA");
    char out[256];
    const char *member[] = {"SISMEMBER", "raproxy:allow:{dom:redis}", "SN0001", NULL};
    redis_cli(member, out, sizeof out);
    cr_expect_eq(atoi(out), 0, "SN0001 consumed");
    before = sent();
    cr_expect_eq(race_one_serial(P_FILE, b, len, 200), 1, "file allowlist (%s)", g_rp.log);
    cr_expect_eq(sent(), before + 1);
    /* the control: the other serial still enrolls */
    uint8_t *b2 = capture_ir("ir", "vendor/dev2", &len);
    cr_expect_eq(post(P_REDIS, again(&g_a, b2, len, "vendor/dev2.key", 300)), GOT_CERT);
    free(b2);
    free(b);
}

Test(consume, the_serial_comes_back_when_the_ca_refuses_or_never_answers)
{
    size_t len;
    uint8_t *b = capture_ir("ir", "vendor/dev1", &len);
    const char *paths[] = {P_REDIS, P_FILE};
    for (int k = 0; k < 2; k++) {
        /* the CA is down: the request may not have been answered, the serial goes back */
        rpt_stop(&g_mock, SIGKILL, 2000);
        struct rp_cmp_msg m;
        int st = rpt_post_cmp(g_port, paths[k], again(&g_a, b, len, "vendor/dev1.key", 10 + k),
                              &g_a, &m);
        cr_expect_eq(st, 200);
        cr_expect_eq(m.body.error.status.fail_info, 1u << RP_FI_SYSTEM_UNAVAIL, "%s", paths[k]);
        /* the CA refuses (an error answer): the serial goes back */
        const char *refuse[] = {"-send_error", NULL};
        mock_start(refuse);
        st = rpt_post_cmp(g_port, paths[k], again(&g_a, b, len, "vendor/dev1.key", 20 + k), &g_a,
                          &m);
        cr_expect_eq(st, 200);
        cr_expect_eq(m.body.type, RP_CMP_ERROR, "the CA's refusal relayed");
        rpt_stop(&g_mock, SIGKILL, 2000);
        /* the CA issues: the serial is consumed */
        mock_start(NULL);
        cr_expect_eq(post(paths[k], again(&g_a, b, len, "vendor/dev1.key", 30 + k)), GOT_CERT,
                     "%s: the serial was given back (%s)", paths[k], g_rp.log);
        cr_expect_eq(post(paths[k], again(&g_a, b, len, "vendor/dev1.key", 40 + k)),
                     REFUSED_NOT_AUTHORIZED, "%s: and then consumed", paths[k]);
    }
    free(b);
}

Test(consume, cp_and_kup_consume_like_ip)
{
    size_t len;
    uint8_t *b = capture_ir("cr", "vendor/dev2", &len);
    cr_expect_eq(post(P_REDIS, again(&g_a, b, len, "vendor/dev2.key", 50)), GOT_CERT, "cr");
    free(b);
    b = capture_ir("ir", "vendor/dev2", &len);
    cr_expect_eq(post(P_REDIS, again(&g_a, b, len, "vendor/dev2.key", 51)), REFUSED_NOT_AUTHORIZED,
                 "SN0002 enrolled with cr (cp) already");
    free(b);
    /* kur of the operator certificate SN0001: kup consumes */
    b = rpt_capture_device(g_dir, g_pki, "kur", "ca/issued", &len);
    cr_assert_not_null(b);
    cr_expect_eq(post(P_OPER, again(&g_a, b, len, "ca/issued.key", 52)), GOT_CERT, "kur (%s)",
                 g_rp.log);
    cr_expect_eq(post(P_OPER, again(&g_a, b, len, "ca/issued.key", 53)), REFUSED_NOT_AUTHORIZED,
                 "a second kur of SN0001");
    free(b);
}

Test(consume, a_file_allowlist_consumes_once_across_restarts)
{
    size_t len;
    uint8_t *b = capture_ir("ir", "vendor/dev2", &len);
    int certs = 0;
    for (int i = 0; i < 5; i++)
        certs += post(P_FILE, again(&g_a, b, len, "vendor/dev2.key", 60 + i)) == GOT_CERT;
    cr_expect_eq(certs, 1, "5 ir of one serial, one certificate");
    cr_expect_eq(rpt_stop(&g_rp, SIGTERM, 15000), 0);
    cr_assert_eq(rpt_raproxy_start(&g_rp, g_dir, g_cfg, g_port), 0, "%s", g_rp.log);
    cr_expect_eq(post(P_FILE, again(&g_a, b, len, "vendor/dev2.key", 70)), REFUSED_NOT_AUTHORIZED,
                 "still consumed after a restart");
    char state[600];
    snprintf(state, sizeof state, "%s/serials.state", g_dir);
    cr_expect_eq(rpt_file_count(state, "consume 534e30303032"), 1, "hex(SN0002) consumed");
    free(b);
}
