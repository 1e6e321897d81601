/* Admission through Redis with real processes (issue "Admission through Redis"): raproxy on a
 * plain listener with a `redis:` section pointing at a redis-server this test starts, fed with
 * genuine requests (an ir written by openssl cmp, re-signed with a fresh senderNonce and
 * transactionID). The upstream is either down or a stub answering garbage, so a request that
 * passes admission and verification comes back as systemUnavail naming the CA: that text is
 * how the tests tell "admitted" from "refused by admission". Redis is killed, restarted,
 * flushed and stopped under the processes' feet; raproxy must answer every request, honour
 * on_redis_failure, and go back to Redis by itself. */
#include "fixtures.h"
#include "httpc.h"
#include "msgbuild.h"
#include "support.h"

#include "raproxy/arena.h"
#include "raproxy/cmp.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/sig.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARENA   (1u << 20)
#define WAIT_MS 10000 /* processes starting, Redis coming back: bounds, not expectations */
#define HTTP_MS 15000 /* one request; Redis deadlines are 200 ms, so this is a hang */
#define POLL_MS 20
#define MANUF   "/.well-known/cmp/p/manufacturer"
/* "the CA is not available", "the CA's answer does not match"; and a second certificate
 * request of the device while one is at the CA (duplicate suppression, issue 18): these
 * load tests send many at once from one device */
#define ADMITTED_TXT  "the CA"
#define DUPLICATE_TXT "in progress"
#define MAX_PROCS     16
#define LOAD_CLIENTS  4
#define LOAD_EACH     50
#define LOAD_GAP_MS   40 /* 4 clients x 50 requests, one each 40 ms: 200 requests over ~2 s */
#define KILL_AFTER    700

static char *g_dir;
static const char *g_pki;
static uint8_t *g_base[2]; /* genuine ir of dev1 and dev2 */
static size_t g_base_len[2];
static pid_t g_pids[MAX_PROCS];
static int g_npids;

/* ---- processes ---------------------------------------------------------------------------- */

static void track(pid_t pid)
{
    if (g_npids < MAX_PROCS)
        g_pids[g_npids++] = pid;
}

static void redis_start(struct rpt_redis *r)
{
    if (!r->port)
        r->port = rpt_free_port();
    snprintf(r->p.log, sizeof r->p.log, "%s/redis-%d.log", g_dir, r->port);
    int rc = rpt_redis_start(r, NULL);
    track(r->p.pid);
    cr_assert_eq(rc, 0, "redis-server did not start: %s", r->p.log);
}

/* redis-cli ARGS… against r; its output in out. Returns the exit status. */
static int redis_cli(const struct rpt_redis *r, char *out, size_t cap, const char *const *args)
{
    char port[16], log[600];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(log, sizeof log, "%s/redis-cli.out", g_dir);
    unlink(log);
    const char *argv[24] = {"redis-cli", "-p", port};
    int n = 3;
    for (int i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = rpt_run(argv, WAIT_MS, log);
    size_t len;
    char *s = (char *)rpt_read_file(log, &len);
    snprintf(out, cap, "%s", s ? s : "");
    free(s);
    return rc;
}

static long redis_int(const struct rpt_redis *r, const char *const *args)
{
    char out[256];
    cr_assert_eq(redis_cli(r, out, sizeof out, args), 0, "redis-cli %s: %s", args[0], out);
    return strtol(out, NULL, 10);
}

struct rp {
    struct rpt_proc p;
    int port, admin, tls_port;
    char dir[600];
};

struct rp_opts {
    const struct rpt_redis *redis;
    int upstream;           /* port of the CA side */
    const char *limits;     /* YAML flow mapping */
    const char *on_failure; /* "open" / "closed" */
    const char *domain_extra;
    bool tls;          /* an extra TLS listener for openssl cmp devices */
    bool one_upstream; /* keep_alive off, one connection: openssl's mock CA */
};

/* x's configuration file from o (no `redis` section when o->redis is NULL). */
static void rpx_write_config(struct rp *x, const struct rp_opts *o)
{
    char tls[1200] = "", redis[300] = "";
    if (o->tls)
        snprintf(tls, sizeof tls,
                 "  - address: 127.0.0.1:%d\n"
                 "    tls: {cert: %s/tls/server.pem, key: %s/tls/server.key}\n",
                 x->tls_port, g_pki, g_pki);
    if (o->redis)
        snprintf(redis, sizeof redis, "redis: {url: \"%s\", timeout_ms: 200}\n", o->redis->url);
    char cfg[8192], path[700];
    snprintf(cfg, sizeof cfg,
             "listeners:\n  - address: 127.0.0.1:%d\n    tls: off\n%s"
             "admin: {address: 127.0.0.1:%d}\n"
             "upstream: {url: \"http://127.0.0.1:%d/pkix/\", connect_timeout_ms: 500%s}\n"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
             "chain: %s/operator/ra.chain.pem}\n"
             "%s"
             "domains:\n"
             "  - name: manufacturer\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir, cr, p10cr, certConf, genm, pollReq, error]\n"
             "    on_redis_failure: %s\n"
             "    limits: %s\n"
             "%s",
             x->port, tls, x->admin, o->upstream,
             o->one_upstream ? ", keep_alive: false, max_connections: 1, timeout_ms: 20000" : "",
             g_pki, g_pki, g_pki, redis, g_pki, o->on_failure ? o->on_failure : "open",
             o->limits ? o->limits : "{}", o->domain_extra ? o->domain_extra : "");
    snprintf(path, sizeof path, "%s/raproxy.yaml", x->dir);
    cr_assert_eq(rpt_write_file(path, cfg, strlen(cfg)), 0);
}

static void rpx_start(struct rp *x, const char *name, const struct rp_opts *o)
{
    memset(x, 0, sizeof *x);
    snprintf(x->dir, sizeof x->dir, "%s/%s", g_dir, name);
    cr_assert_eq(mkdir(x->dir, 0755), 0);
    x->port = rpt_free_port();
    x->admin = rpt_free_port();
    if (o->tls)
        x->tls_port = rpt_free_port();
    rpx_write_config(x, o);
    char path[700];
    snprintf(path, sizeof path, "%s/raproxy.yaml", x->dir);
    cr_assert_eq(rpt_raproxy_start(&x->p, x->dir, path, x->port), 0, "see %s", x->p.log);
    track(x->p.pid);
    if (o->tls)
        cr_assert_eq(rpt_wait_port(x->tls_port, WAIT_MS), 0);
}

/* SIGTERM: a clean exit (0) and no sanitizer report. */
static void rpx_stop(struct rp *x)
{
    int alive_st;
    cr_expect_eq(rpt_alive(&x->p, &alive_st), 1, "raproxy died (status %d): %s", alive_st,
                 x->p.log);
    int st = rpt_stop(&x->p, SIGTERM, 15000);
    cr_expect_eq(st, 0, "raproxy exit %d, see %s", st, x->p.log);
    cr_expect_eq(rpt_file_count(x->p.log, "AddressSanitizer"), 0, "%s", x->p.log);
    cr_expect_eq(rpt_file_count(x->p.log, "runtime error"), 0, "%s", x->p.log);
}

/* The stub upstream: answers every POST at once with a body that is not a PKIMessage, so
 * the upstream counts as reachable (/readyz) and admitted requests end in a CMP error. */
static int stub_upstream(struct rpt_proc *p)
{
    int port = rpt_free_port();
    char portstr[16], script[600];
    snprintf(portstr, sizeof portstr, "%d", port);
    snprintf(script, sizeof script, "%s/test/integration/slow_upstream.py", rpt_src());
    snprintf(p->log, sizeof p->log, "%s/upstream.log", g_dir);
    const char *argv[] = {"/usr/bin/python3", script, portstr, "0", NULL};
    cr_assert_eq(rpt_spawn(p, argv), 0);
    track(p->pid);
    cr_assert_eq(rpt_wait_port(port, WAIT_MS), 0);
    return port;
}

/* ---- messages ----------------------------------------------------------------------------- */

static void setup(void)
{
    g_pki = rpt_pki();
    cr_assert_not_null(g_pki);
    g_dir = rpt_tmpdir();
    g_base[0] = rpt_capture_device(g_dir, g_pki, "ir", "vendor/dev1", &g_base_len[0]);
    g_base[1] = rpt_capture_device(g_dir, g_pki, "ir", "vendor/dev2", &g_base_len[1]);
    cr_assert(g_base[0] && g_base[1], "openssl cmp -reqout wrote no request");
}

static void teardown(void)
{
    /* whatever a failed assertion left running */
    for (int i = 0; i < g_npids; i++) {
        if (waitpid(g_pids[i], NULL, WNOHANG) == 0) {
            kill(g_pids[i], SIGCONT);
            kill(g_pids[i], SIGKILL);
            waitpid(g_pids[i], NULL, 0);
        }
    }
    free(g_base[0]);
    free(g_base[1]);
    if (!getenv("RPT_KEEP")) /* keep the logs of a run to look at */
        rpt_rmdir(g_dir);
    free(g_dir);
}

TestSuite(admission, .init = setup, .fini = teardown, .timeout = 240);

struct mut {
    int dev;              /* 0: dev1, 1: dev2 */
    struct rp_view nonce; /* absent: fresh */
    struct rp_view txid;  /* absent: fresh */
    bool certconf;        /* a certConf body instead of the ir */
};

struct msg {
    uint8_t *p;
    size_t len;
};

static void fresh(uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rand();
}

/* certConf: one CertStatus { certHash (zeros), certReqId 0 } */
static struct rp_view certconf_body(struct rp_arena *a)
{
    static const uint8_t hash[32];
    struct rp_derw w;
    cr_assert_eq(rp_derw_init(&w, a, 256), RP_OK);
    rp_derw_begin(&w, 0xb8);
    rp_derw_begin(&w, 0x30);
    rp_derw_begin(&w, 0x30);
    rp_derw_octets(&w, rp_view_make(hash, sizeof hash));
    rp_derw_int64(&w, 0x02, 0);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    struct rp_view out;
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    return out;
}

/* The genuine ir of m->dev with a new messageTime, nonce and transactionID (or the given
 * ones), re-signed with the device key. malloc'ed. */
static struct msg build(const struct mut *m)
{
    struct rp_arena arena, *a = &arena;
    cr_assert_eq(rp_arena_new(a, ARENA), RP_OK);
    struct rp_cmp_msg *in = rp_arena_calloc(a, 1, sizeof *in);
    cr_assert_eq(rp_cmp_decode(g_base[m->dev], g_base_len[m->dev], a, in, NULL), RP_OK);
    const struct rp_cmp_header *h = &in->header;
    struct rp_view body = m->certconf ? certconf_body(a) : in->body_raw;
    uint8_t txid[16], nonce[16];
    fresh(txid, sizeof txid);
    fresh(nonce, sizeof nonce);
    struct rp_derw w;
    cr_assert_eq(rp_derw_init(&w, a, 4096), RP_OK);
    rp_derw_begin(&w, 0x30);
    rp_derw_int64(&w, 0x02, h->pvno);
    rp_derw_raw(&w, h->sender.raw);
    rp_derw_raw(&w, h->recipient.raw);
    rp_derw_begin(&w, 0xa0);
    rp_derw_gentime(&w, (int64_t)time(NULL));
    rp_derw_end(&w);
    rp_derw_begin(&w, 0xa1);
    rp_derw_raw(&w, h->protection_alg.raw);
    rp_derw_end(&w);
    rp_derw_raw(&w, h->sender_kid.raw);
    rp_derw_begin(&w, 0xa4);
    rp_derw_octets(&w, rp_view_present(m->txid) ? m->txid : rp_view_make(txid, sizeof txid));
    rp_derw_end(&w);
    rp_derw_begin(&w, 0xa5);
    rp_derw_octets(&w, rp_view_present(m->nonce) ? m->nonce : rp_view_make(nonce, sizeof nonce));
    rp_derw_end(&w);
    rp_derw_end(&w);
    struct rp_view hdr, pp, out;
    cr_assert_eq(rp_derw_finish(&w, &hdr), RP_OK);
    cr_assert_eq(rp_cmp_enc_protected_part(a, hdr, body, &pp), RP_OK);
    char keyf[600];
    snprintf(keyf, sizeof keyf, "%s/vendor/dev%d.key", g_pki, m->dev + 1);
    struct rp_privkey *k;
    cr_assert_eq(rp_privkey_load_pem(keyf, &k), RP_OK);
    uint8_t *s = rp_arena_alloc(a, RP_SIG_MAX);
    size_t sl;
    cr_assert_eq(rp_privkey_sign(k, RP_SIG_ECDSA_SHA256, pp.p, pp.len, s, RP_SIG_MAX, &sl), RP_OK);
    rp_privkey_free(k);
    cr_assert_eq(rp_cmp_enc_message(a, hdr, body, rp_view_make(s, sl), in->extra_certs,
                                    in->n_extra_certs, &out),
                 RP_OK);
    struct msg r = {malloc(out.len), out.len};
    cr_assert_not_null(r.p);
    memcpy(r.p, out.p, out.len);
    rp_arena_free(a);
    return r;
}

static struct msg fresh_ir(void)
{
    return build(&(struct mut){0});
}

/* ---- answers ------------------------------------------------------------------------------ */

enum verdict {
    V_NONE,     /* no answer at all */
    V_ADMITTED, /* passed admission and verification: the CA was next */
    V_RATE,     /* refused by a rate limit */
    V_UNAVAIL,  /* systemUnavail for another reason (Redis down with `closed`) */
    V_OTHER,    /* any other CMP error */
};

static const char *verdict_name(enum verdict v)
{
    static const char *const n[] = {"none", "admitted", "rate", "unavail", "other"};
    return n[v];
}

static bool has(const struct rpt_resp *r, const char *s)
{
    return r->body && memmem(r->body, r->body_len, s, strlen(s)) != NULL;
}

/* The failInfo bits of a CMP error answer; 0 for anything else. */
static uint32_t failinfo(const struct rpt_resp *r)
{
    if (r->status != 200 || strcmp(r->ctype, "application/pkixcmp") != 0)
        return 0;
    struct rp_arena a;
    if (rp_arena_new(&a, ARENA) != RP_OK)
        return 0;
    uint32_t fi = 0;
    struct rp_cmp_msg *m = rp_arena_calloc(&a, 1, sizeof *m);
    if (m && rp_cmp_decode(r->body, r->body_len, &a, m, NULL) == RP_OK &&
        m->body.type == RP_CMP_ERROR)
        fi = m->body.error.status.fail_info;
    rp_arena_free(&a);
    return fi;
}

/* No Criterion assertions here: the load clients call it from their threads. */
static enum verdict classify(const struct rpt_resp *r)
{
    if (r->status == 0)
        return V_NONE;
    if (r->status == 429)
        return V_RATE; /* over the error-signature budget: no CMP body */
    uint32_t fi = failinfo(r);
    if (fi == 1u << RP_FI_TRANSACTION_ID_IN_USE && has(r, DUPLICATE_TXT))
        return V_ADMITTED; /* admitted and verified: the gate before the CA said no */
    if (fi == 1u << RP_FI_SYSTEM_UNAVAIL) {
        if (has(r, ADMITTED_TXT))
            return V_ADMITTED;
        return has(r, "rate limit") ? V_RATE : V_UNAVAIL;
    }
    if (fi)
        return V_OTHER;
    /* HTTP answer without a CMP body (signature budget spent) */
    return has(r, "service unavailable") ? V_UNAVAIL : V_OTHER;
}

static enum verdict post(int port, struct msg m, struct rpt_resp *r)
{
    int rc = rpt_http(port, "POST", MANUF, "application/pkixcmp", m.p, m.len, HTTP_MS, r);
    return rc == 0 ? classify(r) : V_NONE;
}

/* POST a fresh ir and return what admission decided. */
static enum verdict post_fresh(int port)
{
    struct msg m = fresh_ir();
    struct rpt_resp r;
    enum verdict v = post(port, m, &r);
    rpt_resp_free(&r);
    free(m.p);
    return v;
}

static void expect_failinfo(int port, struct msg m, enum rp_failinfo bit, const char *what)
{
    struct rpt_resp r;
    cr_assert_eq(rpt_http(port, "POST", MANUF, "application/pkixcmp", m.p, m.len, HTTP_MS, &r), 0);
    cr_expect_eq(failinfo(&r), 1u << bit, "%s: HTTP %d, failInfo 0x%x, want %s", what, r.status,
                 failinfo(&r), rp_failinfo_name(bit));
    rpt_resp_free(&r);
}

/* The value of a metric line "name value" on the admin port; -1 when absent. */
static long metric(int admin, const char *name)
{
    struct rpt_resp r;
    long v = -1;
    if (rpt_http(admin, "GET", "/metrics", NULL, NULL, 0, 5000, &r) == 0 && r.body) {
        char want[128];
        snprintf(want, sizeof want, "\n%s ", name);
        const char *p = strstr((const char *)r.body, want);
        if (p)
            v = strtol(p + strlen(want), NULL, 10);
    }
    rpt_resp_free(&r);
    return v;
}

static int readyz(int admin)
{
    struct rpt_resp r;
    int st = rpt_http(admin, "GET", "/readyz", NULL, NULL, 0, 5000, &r) == 0 ? r.status : 0;
    rpt_resp_free(&r);
    return st;
}

/* Poll until raproxy_redis_up is `want` (bounded); the ms it took, or -1. */
static long wait_redis_up(int admin, long want)
{
    long t0 = rpt_mono_ms();
    while (rpt_mono_ms() - t0 < WAIT_MS) {
        if (metric(admin, "raproxy_redis_up") == want)
            return rpt_mono_ms() - t0;
        rpt_sleep_ms(POLL_MS);
    }
    return -1;
}

/* ---- limits ------------------------------------------------------------------------------- */

Test(admission, per_ip_burst_of_three_refuses_the_fourth_with_retry_after)
{
    struct rpt_redis rd = {0};
    redis_start(&rd);
    struct rp x;
    rpx_start(&x, "rp",
              &(struct rp_opts){.redis = &rd,
                                .upstream = rpt_free_port(),
                                .limits = "{per_ip: {rate: 1, burst: 3}}"});
    cr_assert_geq(wait_redis_up(x.admin, 1), 0, "raproxy never reached Redis");
    struct msg m[4];
    for (int i = 0; i < 4; i++)
        m[i] = fresh_ir();
    struct rpt_resp r[4];
    enum verdict v[4];
    long t0 = rpt_mono_ms();
    for (int i = 0; i < 4; i++)
        v[i] = post(x.port, m[i], &r[i]);
    long took = rpt_mono_ms() - t0;
    for (int i = 0; i < 3; i++)
        cr_expect_eq(v[i], V_ADMITTED, "request %d: %s (%s)", i + 1, verdict_name(v[i]),
                     (const char *)r[i].body);
    /* rate 1/s: only if the first three took a whole second could a fourth token exist */
    if (took < 900) {
        cr_expect_eq(v[3], V_RATE, "4th: %s", verdict_name(v[3]));
        if (r[3].status == 200) {
            cr_expect_eq(failinfo(&r[3]), 1u << RP_FI_SYSTEM_UNAVAIL);
            cr_expect(has(&r[3], "rate limit per_ip exceeded"), "freeText names the limit");
        } else {
            cr_expect_eq(r[3].status, 429);
        }
        const char *ra = strcasestr(r[3].headers, "\r\nRetry-After: ");
        cr_assert_not_null(ra, "no Retry-After: %s", r[3].headers);
        long secs = strtol(ra + strlen("\r\nRetry-After: "), NULL, 10);
        cr_expect(secs >= 1 && secs <= 2, "Retry-After %ld s for 1 request/s", secs);
        cr_log_info("4th request: HTTP %d, Retry-After %ld; 4 requests in %ld ms", r[3].status,
                    secs, took);
    } else {
        cr_log_warn("4 requests took %ld ms: the 4th may have had a fresh token", took);
    }
    /* the budget lives in Redis, not in the process */
    const char *exists[] = {"EXISTS", "raproxy:rl:{ip:127.0.0.1}:manufacturer", NULL};
    cr_expect_eq(redis_int(&rd, exists), 1);
    for (int i = 0; i < 4; i++) {
        rpt_resp_free(&r[i]);
        free(m[i].p);
    }
    rpx_stop(&x);
    rpt_stop(&rd.p, SIGKILL, WAIT_MS);
}

Test(admission, two_processes_on_one_redis_share_one_budget)
{
    enum { BURST = 5, SENT = 2 * BURST + 4 };
    struct rpt_redis rd = {0};
    redis_start(&rd);
    int dead = rpt_free_port();
    struct rp_opts o = {.redis = &rd, .upstream = dead, .limits = "{domain: {rate: 1, burst: 5}}"};
    struct rp x[2];
    rpx_start(&x[0], "rp0", &o);
    rpx_start(&x[1], "rp1", &o);
    cr_assert_geq(wait_redis_up(x[0].admin, 1), 0);
    cr_assert_geq(wait_redis_up(x[1].admin, 1), 0);
    struct msg m[SENT];
    for (int i = 0; i < SENT; i++)
        m[i] = fresh_ir();
    int admitted = 0, rate = 0, per[2] = {0, 0};
    long t0 = rpt_mono_ms();
    for (int i = 0; i < SENT; i++) {
        struct rpt_resp r;
        enum verdict v = post(x[i % 2].port, m[i], &r);
        cr_expect(v == V_ADMITTED || v == V_RATE, "request %d: %s", i, verdict_name(v));
        admitted += v == V_ADMITTED;
        per[i % 2] += v == V_ADMITTED;
        rate += v == V_RATE;
        rpt_resp_free(&r);
        free(m[i].p);
    }
    long took = rpt_mono_ms() - t0;
    /* one shared bucket: BURST at once, plus one per whole second the run took */
    cr_expect_geq(admitted, BURST);
    cr_expect_leq(admitted, BURST + took / 1000, "admitted %d of %d in %ld ms", admitted, SENT,
                  took);
    cr_expect_gt(per[0], 0);
    cr_expect_gt(per[1], 0);
    cr_expect_eq(admitted + rate, SENT);
    cr_log_info("shared budget: %d admitted (%d + %d), %d refused, %ld ms", admitted, per[0],
                per[1], rate, took);
    rpx_stop(&x[0]);
    rpx_stop(&x[1]);
    rpt_stop(&rd.p, SIGKILL, WAIT_MS);
}

/* ---- reload ------------------------------------------------------------------------------ */

/* Send SIGHUP and wait (bounded) until raproxy says it loaded generation `gen`. */
static void reload_to(struct rp *x, const struct rp_opts *o, int gen)
{
    rpx_write_config(x, o);
    cr_assert_eq(kill(x->p.pid, SIGHUP), 0);
    char want[64];
    snprintf(want, sizeof want, "loaded (generation %d)", gen);
    long t0 = rpt_mono_ms();
    while (rpt_file_count(x->p.log, want) == 0 && rpt_mono_ms() - t0 < WAIT_MS)
        rpt_sleep_ms(POLL_MS);
    cr_assert_eq(rpt_file_count(x->p.log, want), 1, "reload not loaded, see %s", x->p.log);
}

/* Post fresh requests (bounded) until r holds the per-address bucket: admission uses r. */
static bool bucket_appears(const struct rp *x, const struct rpt_redis *r)
{
    const char *exists[] = {"EXISTS", "raproxy:rl:{ip:127.0.0.1}:manufacturer", NULL};
    long t0 = rpt_mono_ms();
    while (rpt_mono_ms() - t0 < WAIT_MS) {
        cr_expect_eq(post_fresh(x->port), V_ADMITTED);
        if (redis_int(r, exists) == 1)
            return true;
        rpt_sleep_ms(POLL_MS);
    }
    return false;
}

/* A reload that adds, changes or removes the redis section takes effect: each loop builds
 * a client for the new URL from the new snapshot and retires the old one (which then gets
 * nothing more). Before, the client made at start was kept for the process's life. */
Test(admission, reload_adds_moves_and_removes_redis)
{
    struct rpt_redis a = {0}, b = {0};
    redis_start(&a);
    redis_start(&b);
    struct rp x;
    /* a bucket that outlives the checks: each request fills it by a minute */
    struct rp_opts o = {.upstream = rpt_free_port(),
                        .limits = "{per_ip: {rate: 1/min, burst: 1000}}"};
    rpx_start(&x, "rp", &o);
    cr_expect_eq(post_fresh(x.port), V_ADMITTED, "in process, without Redis");
    const char *dbsize[] = {"DBSIZE", NULL}, *flush[] = {"FLUSHALL", NULL};
    cr_expect_eq(redis_int(&a, dbsize), 0);

    o.redis = &a; /* added */
    reload_to(&x, &o, 2);
    cr_assert(bucket_appears(&x, &a), "admission never used the Redis the reload added");

    o.redis = &b; /* moved */
    reload_to(&x, &o, 3);
    cr_assert(bucket_appears(&x, &b), "admission never moved to the new Redis");
    cr_assert_eq(redis_int(&a, flush), 0);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(post_fresh(x.port), V_ADMITTED);
    cr_expect_eq(redis_int(&a, dbsize), 0, "the old Redis still gets admissions");
    /* the retired client was closed once idle: one client per loop is up */
    long t0 = rpt_mono_ms();
    while (metric(x.admin, "raproxy_redis_up") != 1 && rpt_mono_ms() - t0 < WAIT_MS)
        rpt_sleep_ms(POLL_MS);
    cr_expect_eq(metric(x.admin, "raproxy_redis_up"), 1);

    o.redis = NULL; /* removed */
    reload_to(&x, &o, 4);
    cr_expect_geq(wait_redis_up(x.admin, 0), 0, "the removed Redis's client stays up");
    cr_assert_eq(redis_int(&b, flush), 0);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(post_fresh(x.port), V_ADMITTED, "in process again");
    cr_expect_eq(redis_int(&b, dbsize), 0, "the removed Redis still gets admissions");
    rpx_stop(&x);
    rpt_stop(&a.p, SIGKILL, WAIT_MS);
    rpt_stop(&b.p, SIGKILL, WAIT_MS);
}

/* ---- replay and transactions -------------------------------------------------------------- */

Test(admission, replay_foreign_txid_and_unknown_certconf_are_refused_through_redis)
{
    struct rpt_redis rd = {0};
    redis_start(&rd);
    struct rp x;
    rpx_start(&x, "rp",
              &(struct rp_opts){.redis = &rd, .upstream = rpt_free_port(), .on_failure = "closed"});
    cr_assert_geq(wait_redis_up(x.admin, 1), 0);
    static const uint8_t nonce[16] = "admission-nonce1";
    static const uint8_t txid[16] = "admission-txid01";
    static const uint8_t other[16] = "admission-txid02";
    struct rp_view n = rp_view_make(nonce, sizeof nonce), t = rp_view_make(txid, sizeof txid);
    struct msg m[5] = {
        build(&(struct mut){.nonce = n}),
        build(&(struct mut){.nonce = n}),
        build(&(struct mut){.txid = t}),
        build(&(struct mut){.dev = 1, .txid = t}),
        build(&(struct mut){.certconf = true, .txid = rp_view_make(other, sizeof other)}),
    };
    /* `closed`: had Redis failed, these would be systemUnavail, not the precise refusal */
    struct rpt_resp r;
    cr_expect_eq(post(x.port, m[0], &r), V_ADMITTED, "first use of the nonce");
    rpt_resp_free(&r);
    expect_failinfo(x.port, m[1], RP_FI_BAD_SENDER_NONCE, "same senderNonce again");
    cr_expect_eq(post(x.port, m[2], &r), V_ADMITTED, "dev1 opens the transaction");
    rpt_resp_free(&r);
    expect_failinfo(x.port, m[3], RP_FI_TRANSACTION_ID_IN_USE, "dev2 on dev1's transaction");
    expect_failinfo(x.port, m[4], RP_FI_BAD_REQUEST, "certConf of an unknown transaction");
    /* and the state is in Redis: the nonce marker and the transaction owned by SN0001 */
    char out[512];
    const char *scan[] = {"--scan", "--pattern", "raproxy:nonce:*", NULL};
    cr_assert_eq(redis_cli(&rd, out, sizeof out, scan), 0);
    cr_expect(strstr(out, "61646d697373696f6e2d6e6f6e636531"), "nonce key: %s", out);
    const char *own[] = {"HGET", "raproxy:txn:{txn:61646d697373696f6e2d747869643031}", "s", NULL};
    cr_assert_eq(redis_cli(&rd, out, sizeof out, own), 0);
    cr_expect(strstr(out, "SN0001"), "transaction owner: %s", out);
    for (int i = 0; i < 5; i++)
        free(m[i].p);
    rpx_stop(&x);
    rpt_stop(&rd.p, SIGKILL, WAIT_MS);
}

/* ---- Redis failing ------------------------------------------------------------------------ */

struct load {
    int port;
    struct msg msgs[LOAD_EACH];
    long sent_at[LOAD_EACH];
    enum verdict v[LOAD_EACH];
};

static void *load_client(void *arg)
{
    struct load *l = arg;
    for (int i = 0; i < LOAD_EACH; i++) {
        struct rpt_resp r;
        l->sent_at[i] = rpt_mono_ms();
        l->v[i] = post(l->port, l->msgs[i], &r);
        rpt_resp_free(&r);
        rpt_sleep_ms(LOAD_GAP_MS);
    }
    return NULL;
}

/* A reload that names a Redis not up yet: the running one keeps deciding (on_redis_failure:
 * closed would refuse every request while the new client connects) until the new one is
 * up, then the new one takes over. */
Test(admission, the_running_redis_decides_until_the_new_one_is_up)
{
    struct rpt_redis a = {0}, b = {0};
    redis_start(&a);
    b.port = rpt_free_port();
    snprintf(b.url, sizeof b.url, "redis://127.0.0.1:%d", b.port);
    struct rp x;
    struct rp_opts o = {.redis = &a,
                        .upstream = rpt_free_port(),
                        .limits = "{per_ip: {rate: 1/min, burst: 1000}}",
                        .on_failure = "closed"};
    rpx_start(&x, "rp", &o);
    cr_assert_geq(wait_redis_up(x.admin, 1), 0);
    o.redis = &b; /* nothing listens there yet */
    reload_to(&x, &o, 2);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(post_fresh(x.port), V_ADMITTED, "request %d while the new Redis is down", i);
    redis_start(&b);
    cr_assert(bucket_appears(&x, &b), "the new Redis never took over");
    rpx_stop(&x);
    rpt_stop(&a.p, SIGKILL, WAIT_MS);
    rpt_stop(&b.p, SIGKILL, WAIT_MS);
}

/* Requests keep coming while reloads move Redis back and forth under on_redis_failure:
 * closed. Each is decided by one Redis or the other: none is refused because the client it
 * was using was swapped or closed under it, nor while the new client was still connecting
 * (the running one serves until the new one is up; a retired one is closed only once no
 * reply is owed). */
Test(admission, requests_across_redis_moves_are_all_decided)
{
    struct rpt_redis rd[2];
    memset(rd, 0, sizeof rd);
    redis_start(&rd[0]);
    redis_start(&rd[1]);
    /* two clients: 50 refusals a second, within the signing budget (RP_ADMIT_ERRSIG_RATE),
     * so that every answer is a signed one telling how admission decided */
    enum { MOVE_CLIENTS = 2 };
    struct rp x;
    struct rp_opts o = {.redis = &rd[0],
                        .upstream = rpt_free_port(),
                        .limits = "{per_ip: {rate: 10000, burst: 10000}}",
                        .on_failure = "closed"};
    rpx_start(&x, "rp", &o);
    cr_assert_geq(wait_redis_up(x.admin, 1), 0);
    static struct load l[MOVE_CLIENTS];
    pthread_t th[MOVE_CLIENTS];
    for (int c = 0; c < MOVE_CLIENTS; c++) {
        l[c].port = x.port;
        for (int i = 0; i < LOAD_EACH; i++)
            l[c].msgs[i] = fresh_ir();
    }
    for (int c = 0; c < MOVE_CLIENTS; c++)
        cr_assert_eq(pthread_create(&th[c], NULL, load_client, &l[c]), 0);
    enum { MOVES = 4 };
    for (int k = 0; k < MOVES; k++) {
        rpt_sleep_ms(LOAD_EACH * LOAD_GAP_MS / (MOVES + 1));
        o.redis = &rd[(k + 1) % 2];
        reload_to(&x, &o, k + 2);
    }
    int admitted = 0;
    for (int c = 0; c < MOVE_CLIENTS; c++) {
        pthread_join(th[c], NULL);
        for (int i = 0; i < LOAD_EACH; i++) {
            cr_expect_eq(l[c].v[i], V_ADMITTED, "client %d request %d: %s", c, i,
                         verdict_name(l[c].v[i]));
            admitted += l[c].v[i] == V_ADMITTED;
            free(l[c].msgs[i].p);
        }
    }
    const char *dbsize[] = {"DBSIZE", NULL};
    cr_log_info("%d of %d requests decided across %d Redis moves; keys: %ld and %ld", admitted,
                MOVE_CLIENTS * LOAD_EACH, MOVES, redis_int(&rd[0], dbsize),
                redis_int(&rd[1], dbsize));
    cr_expect_geq(redis_int(&rd[1], dbsize), 1, "the second Redis was never used");
    rpx_stop(&x);
    rpt_stop(&rd[0].p, SIGKILL, WAIT_MS);
    rpt_stop(&rd[1].p, SIGKILL, WAIT_MS);
}

Test(admission, redis_killed_under_load_open_admits_closed_refuses_then_back)
{
    struct rpt_redis rd = {0};
    redis_start(&rd);
    struct rpt_proc up = {0};
    int upstream = stub_upstream(&up);
    const char *lim = "{per_ip: {rate: 10000, burst: 10000}}";
    struct rp x[2]; /* 0: open, 1: closed */
    rpx_start(&x[0], "open", &(struct rp_opts){.redis = &rd, .upstream = upstream, .limits = lim});
    rpx_start(&x[1], "closed",
              &(struct rp_opts){
                  .redis = &rd, .upstream = upstream, .limits = lim, .on_failure = "closed"});
    for (int k = 0; k < 2; k++) {
        cr_assert_geq(wait_redis_up(x[k].admin, 1), 0);
        cr_assert_eq(post_fresh(x[k].port), V_ADMITTED);
    }
    /* 200 requests over ~2 s from 4 clients, 2 per process; Redis dies 0.7 s in */
    static struct load l[LOAD_CLIENTS];
    for (int c = 0; c < LOAD_CLIENTS; c++) {
        l[c].port = x[c % 2].port;
        for (int i = 0; i < LOAD_EACH; i++)
            l[c].msgs[i] = fresh_ir();
    }
    pthread_t th[LOAD_CLIENTS];
    for (int c = 0; c < LOAD_CLIENTS; c++)
        cr_assert_eq(pthread_create(&th[c], NULL, load_client, &l[c]), 0);
    rpt_sleep_ms(KILL_AFTER);
    cr_assert_eq(rpt_stop(&rd.p, SIGKILL, WAIT_MS), 128 + SIGKILL);
    long killed = rpt_mono_ms();
    for (int c = 0; c < LOAD_CLIENTS; c++)
        pthread_join(th[c], NULL);
    int count[2][5] = {{0}}, after[2] = {0, 0};
    for (int c = 0; c < LOAD_CLIENTS; c++) {
        int k = c % 2;
        for (int i = 0; i < LOAD_EACH; i++) {
            enum verdict v = l[c].v[i];
            count[k][v]++;
            if (l[c].sent_at[i] > killed) {
                after[k]++;
                /* sent once Redis was gone: the domain's on_redis_failure decides */
                cr_expect_eq(v, k == 0 ? V_ADMITTED : V_UNAVAIL, "%s, request %d: %s",
                             k == 0 ? "open" : "closed", i, verdict_name(v));
            } else {
                cr_expect(v == V_ADMITTED || (k == 1 && v == V_UNAVAIL), "%s, request %d: %s",
                          k == 0 ? "open" : "closed", i, verdict_name(v));
            }
            free(l[c].msgs[i].p);
        }
    }
    for (int k = 0; k < 2; k++) {
        cr_expect_eq(count[k][V_NONE], 0, "every request got an answer");
        cr_expect_gt(after[k], 0);
        int st;
        cr_assert_eq(rpt_alive(&x[k].p, &st), 1, "raproxy died: %d, %s", st, x[k].p.log);
        cr_log_info("%s: %d admitted, %d unavailable, %d sent after the kill",
                    k ? "closed" : "open", count[k][V_ADMITTED], count[k][V_UNAVAIL], after[k]);
    }
    cr_expect_eq(count[0][V_ADMITTED], LOAD_CLIENTS / 2 * LOAD_EACH, "open admits everything");
    /* down: the gauge says so and both keep answering per their policy; only the one that
     * refuses without Redis (closed) leaves the load balancer: with `open` every replica
     * sharing this Redis would otherwise be pulled out at once while serving fine */
    for (int k = 0; k < 2; k++) {
        cr_expect_geq(wait_redis_up(x[k].admin, 0), 0);
        cr_expect_eq(readyz(x[k].admin), k == 0 ? 200 : 503, "%s: readyz while Redis is down",
                     k ? "closed" : "open");
    }
    cr_expect_eq(post_fresh(x[0].port), V_ADMITTED);
    cr_expect_eq(post_fresh(x[1].port), V_UNAVAIL);
    /* back on the same port, empty: both reconnect, and admissions write to it again */
    redis_start(&rd);
    for (int k = 0; k < 2; k++) {
        long ms = wait_redis_up(x[k].admin, 1);
        cr_assert_geq(ms, 0, "no reconnect within %d ms", WAIT_MS);
        cr_log_info("%s: raproxy_redis_up 1 again %ld ms after redis-server accepted",
                    k ? "closed" : "open", ms);
        cr_expect_eq(readyz(x[k].admin), 200, "readyz with Redis back");
        cr_expect_eq(post_fresh(x[k].port), V_ADMITTED);
    }
    /* (a bucket of 10000/s expires within a millisecond: the nonce markers stay) */
    const char *dbsize[] = {"DBSIZE", NULL};
    cr_expect_geq(redis_int(&rd, dbsize), 2, "the fresh Redis holds the admissions' state");
    cr_expect_geq(metric(x[1].admin, "raproxy_redis_reconnects_total"), 1);
    rpx_stop(&x[0]);
    rpx_stop(&x[1]);
    rpt_stop(&rd.p, SIGKILL, WAIT_MS);
    rpt_stop(&up, SIGKILL, WAIT_MS);
}

Test(admission, script_flush_and_a_stopped_redis_are_survived)
{
    struct rpt_redis rd = {0};
    redis_start(&rd);
    struct rpt_proc up = {0};
    int upstream = stub_upstream(&up);
    const char *lim = "{per_ip: {rate: 10000, burst: 10000}}";
    struct rp x[2]; /* 0: open, 1: closed */
    rpx_start(&x[0], "open", &(struct rp_opts){.redis = &rd, .upstream = upstream, .limits = lim});
    rpx_start(&x[1], "closed",
              &(struct rp_opts){
                  .redis = &rd, .upstream = upstream, .limits = lim, .on_failure = "closed"});
    for (int k = 0; k < 2; k++)
        cr_assert_geq(wait_redis_up(x[k].admin, 1), 0);
    cr_expect_eq(post_fresh(x[1].port), V_ADMITTED);
    /* the scripts vanish: NOSCRIPT must be handled, or `closed` would refuse */
    const char *flush[] = {"SCRIPT", "FLUSH", NULL};
    char out[256];
    cr_assert_eq(redis_cli(&rd, out, sizeof out, flush), 0);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(post_fresh(x[1].port), V_ADMITTED, "after SCRIPT FLUSH (%d)", i);
        cr_expect_eq(post_fresh(x[0].port), V_ADMITTED);
    }
    /* it was NOSCRIPT, answered by the EVAL retry (which also reloads the cache) */
    const char *stats[] = {"INFO", "commandstats", NULL};
    char info[4096];
    cr_assert_eq(redis_cli(&rd, info, sizeof info, stats), 0);
    cr_expect(strstr(info, "cmdstat_eval:calls="), "no EVAL after SCRIPT FLUSH: %s", info);
    long errors = metric(x[1].admin, "raproxy_redis_errors_total");
    cr_expect_eq(errors, 0, "NOSCRIPT is not an error: %ld", errors);
    /* hung Redis: deadlines answer, nothing waits for it */
    cr_assert_eq(kill(rd.p.pid, SIGSTOP), 0);
    for (int i = 0; i < 3; i++) {
        long t0 = rpt_mono_ms();
        enum verdict vo = post_fresh(x[0].port);
        long t_open = rpt_mono_ms() - t0;
        t0 = rpt_mono_ms();
        enum verdict vc = post_fresh(x[1].port);
        long t_closed = rpt_mono_ms() - t0;
        cr_expect_eq(vo, V_ADMITTED, "open, Redis stopped: %s", verdict_name(vo));
        cr_expect_eq(vc, V_UNAVAIL, "closed, Redis stopped: %s", verdict_name(vc));
        cr_log_info("Redis stopped: answered in %ld ms (open), %ld ms (closed)", t_open, t_closed);
    }
    cr_expect_geq(metric(x[0].admin, "raproxy_redis_timeouts_total"), 1);
    cr_assert_eq(kill(rd.p.pid, SIGCONT), 0);
    for (int k = 0; k < 2; k++) {
        long ms = wait_redis_up(x[k].admin, 1);
        cr_assert_geq(ms, 0);
        /* the stall detector may have reconnected, or not yet: either way, admitted */
        long t0 = rpt_mono_ms();
        enum verdict v = V_NONE;
        while (rpt_mono_ms() - t0 < WAIT_MS && (v = post_fresh(x[k].port)) != V_ADMITTED)
            rpt_sleep_ms(100);
        cr_expect_eq(v, V_ADMITTED, "after SIGCONT: %s", verdict_name(v));
        cr_log_info("%s: admitted through Redis %ld ms after SIGCONT", k ? "closed" : "open",
                    ms + rpt_mono_ms() - t0);
    }
    rpx_stop(&x[0]);
    rpx_stop(&x[1]);
    rpt_stop(&rd.p, SIGKILL, WAIT_MS);
    rpt_stop(&up, SIGKILL, WAIT_MS);
}

/* ---- allowlist in Redis ------------------------------------------------------------------- */

static int allowlist_cli(const struct rpt_redis *rd, const char *cmd, const char *file, char *out,
                         size_t cap)
{
    char bin[600], log[600];
    snprintf(bin, sizeof bin, "%s/raproxy", rpt_bin());
    snprintf(log, sizeof log, "%s/allowlist-%s.out", g_dir, cmd);
    unlink(log);
    const char *argv[] = {bin,        "allowlist",    cmd,  "--redis", rd->url,
                          "--domain", "manufacturer", file, NULL};
    int rc = rpt_run(argv, WAIT_MS, log);
    size_t n;
    char *s = (char *)rpt_read_file(log, &n);
    snprintf(out, cap, "%s", s ? s : "");
    free(s);
    return rc;
}

static long allowlist_count(const struct rpt_redis *rd)
{
    char out[256];
    cr_assert_eq(allowlist_cli(rd, "count", NULL, out, sizeof out), 0, "%s", out);
    return strtol(out, NULL, 10);
}

Test(admission, redis_allowlist_serial_enrolls_once)
{
    struct rpt_redis rd = {0};
    redis_start(&rd);
    char list[600], out[256];
    snprintf(list, sizeof list, "%s/serials.txt", g_dir);
    static const char serials[] = "SN0001\nSN0002\n";
    cr_assert_eq(rpt_write_file(list, serials, strlen(serials)), 0);
    cr_assert_eq(allowlist_cli(&rd, "import", list, out, sizeof out), 0, "%s", out);
    cr_assert_eq(allowlist_count(&rd), 2);
    struct rpt_proc ca = {0};
    int ca_port = rpt_free_port();
    char trusted[600];
    snprintf(trusted, sizeof trusted, "%s/operator/root.pem", g_pki);
    cr_assert_eq(rpt_mockca_start(&ca, g_dir, ca_port, trusted, NULL), 0);
    track(ca.pid);
    struct rp x;
    rpx_start(&x, "rp",
              &(struct rp_opts){.redis = &rd,
                                .upstream = ca_port,
                                .tls = true,
                                .one_upstream = true,
                                .on_failure = "closed",
                                .domain_extra = "    allowlist: redis\n"
                                                "    allowlist_consume: true\n"});
    cr_assert_geq(wait_redis_up(x.admin, 1), 0);
    char cert[600], key[600], ica[600], crt[600], log[600];
    snprintf(cert, sizeof cert, "%s/vendor/dev1.pem", g_pki);
    snprintf(key, sizeof key, "%s/vendor/dev1.key", g_pki);
    snprintf(ica, sizeof ica, "%s/vendor/ica.pem", g_pki);
    snprintf(crt, sizeof crt, "%s/issued.pem", g_dir);
    snprintf(log, sizeof log, "%s/device-1.log", g_dir);
    int rc = rpt_device(g_dir, x.tls_port, MANUF + 1, "ir", cert, key, ica, crt, NULL, log);
    cr_assert_eq(rc, 0, "first enrollment of SN0001 failed: see %s and %s", log, x.p.log);
    cr_expect_eq(allowlist_count(&rd), 1, "SN0001 consumed");
    const char *member[] = {"SISMEMBER", "raproxy:allow:{dom:manufacturer}", "SN0001", NULL};
    cr_expect_eq(redis_int(&rd, member), 0);
    snprintf(log, sizeof log, "%s/device-2.log", g_dir);
    rc = rpt_device(g_dir, x.tls_port, MANUF + 1, "ir", cert, key, ica, crt, NULL, log);
    cr_expect_neq(rc, 0, "SN0001 must not enroll twice");
    cr_expect_geq(rpt_file_count(log, "PKIFailureInfo: notAuthorized"), 1, "see %s", log);
    cr_expect_eq(allowlist_count(&rd), 1);
    rpx_stop(&x);
    rpt_stop(&ca, SIGKILL, WAIT_MS);
    rpt_stop(&rd.p, SIGKILL, WAIT_MS);
}

/* ---- the error-signature budget ----------------------------------------------------------- */

struct garbage {
    int port;
    int n, http200_not_cmp, cmp, other;
};

static void *garbage_client(void *arg)
{
    static const char junk[] = "\x30\x03\x02\x01\x02 not a PKIMessage";
    struct garbage *g = arg;
    for (int i = 0; i < g->n; i++) {
        struct rpt_resp r;
        if (rpt_http(g->port, "POST", MANUF, "application/pkixcmp", junk, sizeof junk - 1, HTTP_MS,
                     &r) == 0) {
            bool is_cmp = strcmp(r.ctype, "application/pkixcmp") == 0;
            g->cmp += r.status == 200 && is_cmp;
            g->http200_not_cmp += r.status == 200 && !is_cmp;
            g->other += r.status != 200;
        }
        rpt_resp_free(&r);
    }
    return NULL;
}

/* Over RP_ADMIT_ERRSIG_RATE refusals per second a domain's refusals are answered without a
 * signature (admit.h): HTTP 429 for rate limits, "the error's HTTP status (503)" for the rest.
 * A device must never get HTTP 200 with a body that is not a PKIMessage. Disabled until
 * pipeline.c refuse() answers 503 there (it sends rp_err_http(RP_E_SYSTEM_UNAVAIL), i.e. 200,
 * text/plain): see the report of the admission work. */
Test(admission, refusals_beyond_the_signature_budget_are_not_http_200)
{
    struct rpt_redis rd = {0};
    redis_start(&rd);
    struct rp x;
    rpx_start(&x, "rp", &(struct rp_opts){.redis = &rd, .upstream = rpt_free_port()});
    static struct garbage g[LOAD_CLIENTS];
    pthread_t th[LOAD_CLIENTS];
    for (int c = 0; c < LOAD_CLIENTS; c++) {
        g[c] = (struct garbage){.port = x.port, .n = LOAD_EACH};
        cr_assert_eq(pthread_create(&th[c], NULL, garbage_client, &g[c]), 0);
    }
    int cmp = 0, bad = 0, other = 0;
    for (int c = 0; c < LOAD_CLIENTS; c++) {
        pthread_join(th[c], NULL);
        cmp += g[c].cmp;
        bad += g[c].http200_not_cmp;
        other += g[c].other;
    }
    cr_log_info("%d signed CMP errors, %d other statuses, %d HTTP 200 without a PKIMessage", cmp,
                other, bad);
    cr_expect_eq(bad, 0);
    cr_expect_eq(cmp + other, LOAD_CLIENTS * LOAD_EACH);
    rpx_stop(&x);
    rpt_stop(&rd.p, SIGKILL, WAIT_MS);
}
