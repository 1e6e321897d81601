/* Admission against a real redis-server, and the same decisions in process. */
#include "raproxy/admit.h"
#include "raproxy/err.h"
#include "raproxy/limiter.h"
#include "raproxy/redis.h"
#include "fakeredis.h"
#include "fixtures.h"
#include "support.h"
#include "uvrun.h"

#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WAIT_MS 5000

/* children die with the test process, so a failed assertion leaves no redis-server behind */
TestSuite(admit);

static void srv_start(struct rpt_redis *s)
{
    memset(s, 0, sizeof *s);
    cr_assert_eq(rpt_redis_start(s, NULL), 0, "redis-server did not start");
}

struct outcome {
    int calls;
    struct rp_admit_result res;
};

static void on_admit(void *arg, const struct rp_admit_result *res)
{
    struct outcome *o = arg;
    o->calls++;
    o->res = *res;
}

static bool decided(void *arg)
{
    return ((struct outcome *)arg)->calls > 0;
}

/* One admission "world": a loop, optionally a Redis client, an admit and its limiter. */
struct world {
    uv_loop_t *loop;
    struct rp_redis *redis;
    struct rp_limiter *lim;
    struct rp_admit *admit;
};

static uint32_t g_txn_ttl_ms; /* 0: the default idle TTL */

static void world_init(struct world *w, uv_loop_t *loop, const char *url)
{
    memset(w, 0, sizeof *w);
    w->loop = loop;
    cr_assert_eq(rp_limiter_new(&w->lim, NULL), RP_OK);
    if (url) {
        struct rp_redis_opts o = {.url = url, .timeout_ms = 1000};
        cr_assert_eq(rp_redis_new(&w->redis, loop, &o), RP_OK);
    }
    struct rp_admit_opts ao = {.redis = w->redis, .limiter = w->lim, .txn_ttl_ms = g_txn_ttl_ms};
    cr_assert_eq(rp_admit_new(&w->admit, &ao), RP_OK);
    if (url)
        cr_assert(rpt_run_until(loop, rpt_redis_is_ready, w->redis, WAIT_MS));
}

/* Closes the Redis clients of every world on the loop, runs their close paths, frees. */
static void worlds_free(struct world *w, int n)
{
    for (int i = 0; i < n; i++)
        if (w[i].redis)
            rp_redis_close(w[i].redis);
    uv_run(w[0].loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(w[0].loop), 0, "a libuv handle was left open");
    for (int i = 0; i < n; i++) {
        rp_admit_free(w[i].admit);
        rp_limiter_free(w[i].lim);
    }
}

static void world_free(struct world *w)
{
    worlds_free(w, 1);
}

static struct outcome start(struct world *w, const char *addr, const struct rp_cfg_limits *lim,
                            enum rp_redis_failure fail)
{
    struct outcome o = {0};
    struct rp_admit_in in = {
        .domain = "m", .client_addr = addr, .limits = lim, .on_redis_failure = fail};
    rp_admit_start(w->admit, &in, on_admit, &o);
    cr_assert(rpt_run_until(w->loop, decided, &o, WAIT_MS));
    cr_assert_eq(o.calls, 1);
    return o;
}

struct vreq {
    const char *serial, *txid, *nonce, *body;
    bool allowlist;
    bool consume;
};

static struct outcome verify(struct world *w, struct vreq v, const struct rp_cfg_limits *lim,
                             enum rp_redis_failure fail)
{
    struct outcome o = {0};
    struct rp_admit_verified_in in = {
        .domain = "m",
        .serial = rp_view_str(v.serial),
        .txid = rp_view_str(v.txid),
        .nonce = rp_view_str(v.nonce),
        .body = v.body,
        .limits = lim,
        .nonce_ttl_s = 122,
        .allowlist_redis = v.allowlist,
        .allowlist_consume = v.consume,
        .on_redis_failure = fail,
    };
    rp_admit_after_verify(w->admit, &in, on_admit, &o);
    cr_assert(rpt_run_until(w->loop, decided, &o, WAIT_MS));
    cr_assert_eq(o.calls, 1);
    return o;
}

static const struct rp_cfg_limits none = {0};

enum where { IN_PROCESS, WITH_REDIS };

/* One world on its own loop, against a fresh redis-server or in process only; the case
 * gets the server (NULL in process) to stop or freeze it. */
static void run_case(enum where where, void (*body)(struct world *, struct rpt_redis *))
{
    struct rpt_redis s;
    if (where == WITH_REDIS)
        srv_start(&s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct world w;
    world_init(&w, &loop, where == WITH_REDIS ? s.url : NULL);
    body(&w, where == WITH_REDIS ? &s : NULL);
    world_free(&w);
    if (where == WITH_REDIS)
        rpt_redis_stop(&s);
}

/* ---- rate limits ---------------------------------------------------------------------- */

static void burst_case(struct world *w, struct rpt_redis *srv)
{
    (void)srv;
    struct rp_cfg_limits lim = none;
    lim.per_ip = (struct rp_cfg_limit){.rate = 1, .burst = 5};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(start(w, "192.0.2.1", &lim, RP_REDIS_FAIL_CLOSED).res.err, RP_OK, "req %d", i);
    struct outcome o = start(w, "192.0.2.1", &lim, RP_REDIS_FAIL_CLOSED);
    cr_assert_eq(o.res.err, RP_E_RATE_LIMITED);
    cr_assert_str_eq(o.res.limit, "per_ip");
    cr_assert(o.res.retry_after_ms >= 1 && o.res.retry_after_ms <= 1000, "retry %u",
              o.res.retry_after_ms);
    cr_assert_not(o.res.degraded);
    cr_assert_eq(start(w, "192.0.2.2", &lim, RP_REDIS_FAIL_CLOSED).res.err, RP_OK);
}

Test(admit, redis_burst_then_refused, .timeout = 30)
{
    run_case(WITH_REDIS, burst_case);
}

Test(admit, in_process_burst_then_refused, .timeout = 30)
{
    run_case(IN_PROCESS, burst_case);
}

/* A refusal by one bucket gives back what the others charged. */
static void refund_case(struct world *w, struct rpt_redis *srv)
{
    (void)srv;
    struct rp_cfg_limits lim = none;
    lim.per_ip = (struct rp_cfg_limit){.rate = 1, .burst = 2};
    lim.domain = (struct rp_cfg_limit){.rate = 1, .burst = 3};
    lim.global = (struct rp_cfg_limit){.rate = 1000, .burst = 1000};
    cr_assert_eq(start(w, "198.51.100.1", &lim, RP_REDIS_FAIL_CLOSED).res.err, RP_OK);
    cr_assert_eq(start(w, "198.51.100.1", &lim, RP_REDIS_FAIL_CLOSED).res.err, RP_OK);
    struct outcome o = start(w, "198.51.100.1", &lim, RP_REDIS_FAIL_CLOSED);
    cr_assert_eq(o.res.err, RP_E_RATE_LIMITED);
    cr_assert_str_eq(o.res.limit, "per_ip");
    /* the domain bucket was refunded: one more client fits, the one after does not */
    cr_assert_eq(start(w, "198.51.100.2", &lim, RP_REDIS_FAIL_CLOSED).res.err, RP_OK);
    o = start(w, "198.51.100.3", &lim, RP_REDIS_FAIL_CLOSED);
    cr_assert_eq(o.res.err, RP_E_RATE_LIMITED);
    cr_assert_str_eq(o.res.limit, "domain");
}

Test(admit, redis_refusal_refunds_other_buckets, .timeout = 30)
{
    run_case(WITH_REDIS, refund_case);
}

Test(admit, in_process_refusal_refunds_other_buckets, .timeout = 30)
{
    run_case(IN_PROCESS, refund_case);
}

Test(admit, two_instances_share_one_budget, .timeout = 30)
{
    struct rpt_redis s;
    srv_start(&s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    /* two clients, two admits, two limiters: what two raproxy processes would have */
    struct world w[2];
    world_init(&w[0], &loop, s.url);
    world_init(&w[1], &loop, s.url);
    struct rp_cfg_limits lim = none;
    lim.global = (struct rp_cfg_limit){.rate = 1, .burst = 6};
    for (int i = 0; i < 6; i++)
        cr_assert_eq(start(&w[i % 2], "203.0.113.9", &lim, RP_REDIS_FAIL_CLOSED).res.err, RP_OK);
    struct outcome o1 = start(&w[0], "203.0.113.9", &lim, RP_REDIS_FAIL_CLOSED);
    struct outcome o2 = start(&w[1], "203.0.113.10", &lim, RP_REDIS_FAIL_CLOSED);
    cr_assert_eq(o1.res.err, RP_E_RATE_LIMITED);
    cr_assert_eq(o2.res.err, RP_E_RATE_LIMITED);
    cr_assert_str_eq(o2.res.limit, "global");
    worlds_free(w, 2);
    rpt_redis_stop(&s);
}

/* ---- after verification ---------------------------------------------------------------- */

static void verified_case(struct world *w, struct rpt_redis *srv)
{
    (void)srv;
    struct rp_cfg_limits lim = none;
    enum rp_redis_failure fc = RP_REDIS_FAIL_CLOSED;
    struct vreq a = {"SN-A", "txid-0000000000000001", "nonce-a-1", "ir", false, false};
    cr_assert_eq(verify(w, a, &lim, fc).res.err, RP_OK);
    /* replay: the same message again */
    cr_assert_eq(verify(w, a, &lim, fc).res.err, RP_E_BAD_SENDER_NONCE);
    /* another device takes the same transactionID */
    struct vreq b = {"SN-B", "txid-0000000000000001", "nonce-b-1", "ir", false, false};
    cr_assert_eq(verify(w, b, &lim, fc).res.err, RP_E_TXID_IN_USE);
    /* the refusal did not burn B's nonce: with its own txid the same nonce passes */
    b.txid = "txid-0000000000000002";
    cr_assert_eq(verify(w, b, &lim, fc).res.err, RP_OK);
    /* certConf continues a known transaction only */
    struct vreq c = {"SN-A", "txid-unknown-000000", "nonce-a-2", "certConf", false, false};
    cr_assert_eq(verify(w, c, &lim, fc).res.err, RP_E_UNKNOWN_TXN);
    c.txid = "txid-0000000000000001";
    cr_assert_eq(verify(w, c, &lim, fc).res.err, RP_OK, "nonce-a-2 was not burnt either");
    c.serial = "SN-B";
    c.nonce = "nonce-b-3";
    cr_assert_eq(verify(w, c, &lim, fc).res.err, RP_E_TXID_IN_USE);
    /* an unknown txn does not exist afterwards: the refused certConf created nothing */
    struct vreq d = {"SN-C", "txid-unknown-000000", "nonce-c-1", "ir", false, false};
    cr_assert_eq(verify(w, d, &lim, fc).res.err, RP_OK);
}

/* A transaction waiting for the CA (delayed delivery) is kept as long as its record, past the
 * idle TTL and whatever its later messages refresh: its device still polls it, and another
 * device cannot take its transactionID over. Beside it, a transaction not kept expires. */
#define SHORT_TXN_TTL_MS 300u

static void txn_keep_case(struct world *w)
{
    struct rp_cfg_limits lim = none;
    enum rp_redis_failure fc = RP_REDIS_FAIL_CLOSED;
    struct vreq a = {"SN-A", "txid-kept-0000000001", "nonce-k-1", "ir", false, false};
    struct vreq c = {"SN-C", "txid-idle-0000000001", "nonce-k-2", "ir", false, false};
    cr_assert_eq(verify(w, a, &lim, fc).res.err, RP_OK);
    cr_assert_eq(verify(w, c, &lim, fc).res.err, RP_OK);
    struct rp_admit_txn_keep_in keep = {.serial = rp_view_str(a.serial),
                                        .txid = rp_view_str(a.txid),
                                        .body = "ir",
                                        .ttl_ms = 60000};
    rp_admit_txn_keep(w->admit, &keep);
    /* a poll refreshes the entry with the idle TTL: that must not shorten the kept one */
    struct vreq p = {"SN-A", a.txid, "nonce-k-3", "pollReq", false, false};
    cr_assert_eq(verify(w, p, &lim, fc).res.err, RP_OK);
    usleep(3 * SHORT_TXN_TTL_MS * 1000);
    p.nonce = "nonce-k-4";
    cr_assert_eq(verify(w, p, &lim, fc).res.err, RP_OK, "the kept transaction was forgotten");
    struct vreq b = {"SN-B", a.txid, "nonce-k-5", "ir", false, false};
    cr_assert_eq(verify(w, b, &lim, fc).res.err, RP_E_TXID_IN_USE, "taken over by another device");
    /* control: the transaction not kept is gone after the idle TTL */
    struct vreq cp = {"SN-C", c.txid, "nonce-k-6", "pollReq", false, false};
    cr_assert_eq(verify(w, cp, &lim, fc).res.err, RP_E_UNKNOWN_TXN);
}

Test(admit, redis_waiting_transaction_is_kept_past_the_idle_ttl, .timeout = 30)
{
    struct rpt_redis s;
    srv_start(&s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct world w;
    g_txn_ttl_ms = SHORT_TXN_TTL_MS;
    world_init(&w, &loop, s.url);
    txn_keep_case(&w);
    world_free(&w);
    rpt_redis_stop(&s);
}

Test(admit, in_process_waiting_transaction_is_kept_past_the_idle_ttl, .timeout = 30)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct world w;
    g_txn_ttl_ms = SHORT_TXN_TTL_MS;
    world_init(&w, &loop, NULL);
    txn_keep_case(&w);
    world_free(&w);
}

Test(admit, redis_replay_txid_and_unknown_txn, .timeout = 30)
{
    run_case(WITH_REDIS, verified_case);
}

Test(admit, in_process_replay_txid_and_unknown_txn, .timeout = 30)
{
    run_case(IN_PROCESS, verified_case);
}

static void quota_case(struct world *w, struct rpt_redis *srv)
{
    (void)srv;
    struct rp_cfg_limits lim = none;
    lim.per_device = (struct rp_cfg_limit){.rate = 1, .burst = 1};
    enum rp_redis_failure fc = RP_REDIS_FAIL_CLOSED;
    struct vreq a = {"SN-Q", "txid-q-000000000001", "nonce-q-1", "ir", false, false};
    cr_assert_eq(verify(w, a, &lim, fc).res.err, RP_OK);
    /* finishing the transaction costs nothing of the quota … */
    a.nonce = "nonce-q-2";
    a.body = "pollReq";
    cr_assert_eq(verify(w, a, &lim, fc).res.err, RP_OK);
    a.nonce = "nonce-q-3";
    a.body = "certConf";
    cr_assert_eq(verify(w, a, &lim, fc).res.err, RP_OK);
    /* … a second certificate request is over it */
    a.txid = "txid-q-000000000003";
    a.nonce = "nonce-q-4";
    a.body = "ir";
    struct outcome o = verify(w, a, &lim, fc);
    cr_assert_eq(o.res.err, RP_E_RATE_LIMITED);
    cr_assert_str_eq(o.res.limit, "per_device");
    cr_assert(o.res.retry_after_ms >= 1 && o.res.retry_after_ms <= 1000);
    /* resending the same message is refused for quota again, not as a replay */
    cr_assert_eq(verify(w, a, &lim, fc).res.err, RP_E_RATE_LIMITED);
    /* another device has its own quota */
    struct vreq b = {"SN-R", "txid-q-000000000002", "nonce-r-1", "ir", false, false};
    cr_assert_eq(verify(w, b, &lim, fc).res.err, RP_OK);
}

Test(admit, redis_device_quota, .timeout = 30)
{
    run_case(WITH_REDIS, quota_case);
}

Test(admit, in_process_device_quota, .timeout = 30)
{
    run_case(IN_PROCESS, quota_case);
}

struct cmd_done {
    int calls;
    long long integer;
};

static void on_cmd(void *arg, int err, const struct rp_redis_reply *rep)
{
    struct cmd_done *d = arg;
    cr_assert_eq(err, RP_OK);
    d->calls++;
    d->integer = rep->integer;
}

static bool cmd_done(void *arg)
{
    return ((struct cmd_done *)arg)->calls > 0;
}

static void redis_do(struct world *w, int argc, const char **argv)
{
    struct cmd_done d = {0};
    cr_assert_eq(rp_redis_command(w->redis, on_cmd, &d, argc, argv, NULL), RP_OK);
    cr_assert(rpt_run_until(w->loop, cmd_done, &d, WAIT_MS));
}

static void sadd(struct world *w, const char *key, const char *member)
{
    const char *argv[] = {"SADD", key, member};
    redis_do(w, 3, argv);
}

/* The CA's verdict on a claimed serial: give it back or consume it. */
static struct outcome settle(struct world *w, const struct rp_admit_issued_in *in)
{
    struct outcome o = {0};
    rp_admit_on_issued(w->admit, in, on_admit, &o);
    cr_assert(rpt_run_until(w->loop, decided, &o, WAIT_MS));
    return o;
}

static void allowlist_case(struct world *w, struct rpt_redis *srv)
{
    (void)srv;
    char key[128];
    cr_assert_gt(rp_admit_allowlist_key(key, sizeof key, NULL, "m"), 0);
    cr_assert_str_eq(key, "raproxy:allow:{dom:m}");
    sadd(w, key, "SN-OK");

    enum rp_redis_failure fo = RP_REDIS_FAIL_OPEN;
    struct vreq ok = {"SN-OK", "txid-allow-00000001", "nonce-ok-1", "ir", true, false};
    struct vreq no = {"SN-NO", "txid-allow-00000002", "nonce-no-1", "ir", true, false};
    cr_assert_eq(verify(w, ok, &none, fo).res.err, RP_OK);
    cr_assert_eq(verify(w, no, &none, fo).res.err, RP_E_NOT_AUTHORIZED);

    /* allowlist_consume: checked and claimed in one script at verification */
    struct vreq c1 = {"SN-OK", "txid-claim-00000001", "nonce-c-1", "ir", true, true};
    struct vreq c2 = {"SN-OK", "txid-claim-00000002", "nonce-c-2", "ir", true, true};
    struct outcome o = verify(w, c1, &none, fo);
    cr_assert_eq(o.res.err, RP_OK);
    cr_assert(o.res.claimed, "the first claims");
    cr_assert_eq(verify(w, c2, &none, fo).res.err, RP_E_NOT_AUTHORIZED, "another transaction");
    c1.nonce = "nonce-c-3"; /* a retry of the claiming transaction passes, claiming nothing */
    o = verify(w, c1, &none, fo);
    cr_assert_eq(o.res.err, RP_OK);
    cr_assert_not(o.res.claimed);
    /* the CA refused: the serial goes back, and another transaction may claim it */
    struct rp_admit_issued_in in = {"m", rp_view_str("SN-OK"), rp_view_str(c1.txid),
                                    RP_ADMIT_RELEASE, 0};
    o = settle(w, &in);
    cr_assert_eq(o.res.err, RP_OK);
    c2.nonce = "nonce-c-4";
    cr_assert(verify(w, c2, &none, fo).res.claimed);
    /* the CA issued: consumed for good, the claim's own transaction cannot enroll again */
    in.txid = rp_view_str(c2.txid);
    in.settle = RP_ADMIT_CONSUME;
    o = settle(w, &in);
    cr_assert_eq(o.res.err, RP_OK);
    c2.nonce = "nonce-c-5";
    cr_assert_eq(verify(w, c2, &none, fo).res.err, RP_E_NOT_AUTHORIZED, "consumed");
    ok.txid = "txid-allow-00000003";
    ok.nonce = "nonce-ok-2";
    cr_assert_eq(verify(w, ok, &none, fo).res.err, RP_E_NOT_AUTHORIZED, "consumed");
    /* a claim whose request is refused (replay) is undone with it */
    sadd(w, key, "SN-TWO");
    struct vreq t1 = {"SN-TWO", "txid-claim-00000010", "nonce-t-1", "ir", true, true};
    struct vreq t2 = {"SN-TWO", "txid-claim-00000011", "nonce-t-1", "ir", true, true};
    cr_assert(verify(w, t1, &none, fo).res.claimed);
    in = (struct rp_admit_issued_in){"m", rp_view_str("SN-TWO"), rp_view_str(t1.txid),
                                     RP_ADMIT_RELEASE, 0};
    o = settle(w, &in);
    cr_assert_eq(verify(w, t2, &none, fo).res.err, RP_E_BAD_SENDER_NONCE);
    t2.nonce = "nonce-t-2";
    cr_assert(verify(w, t2, &none, fo).res.claimed, "the replay's claim was given back");
}

Test(admit, redis_allowlist_and_consume, .timeout = 30)
{
    run_case(WITH_REDIS, allowlist_case);
}

static void down_case(struct world *w, struct rpt_redis *srv)
{
    rpt_stop(&srv->p, SIGKILL, WAIT_MS);
    cr_assert(rpt_run_until(w->loop, rpt_redis_is_down, w->redis, WAIT_MS));

    struct rp_cfg_limits lim = none;
    lim.per_ip = (struct rp_cfg_limit){.rate = 1, .burst = 2};
    struct outcome o = start(w, "192.0.2.7", &lim, RP_REDIS_FAIL_CLOSED);
    cr_assert_eq(o.res.err, RP_E_SYSTEM_UNAVAIL);
    /* open: the in-process limiter decides, with the same limits */
    o = start(w, "192.0.2.7", &lim, RP_REDIS_FAIL_OPEN);
    cr_assert_eq(o.res.err, RP_OK);
    cr_assert(o.res.degraded);
    cr_assert_eq(start(w, "192.0.2.7", &lim, RP_REDIS_FAIL_OPEN).res.err, RP_OK);
    o = start(w, "192.0.2.7", &lim, RP_REDIS_FAIL_OPEN);
    cr_assert_eq(o.res.err, RP_E_RATE_LIMITED);
    cr_assert(o.res.degraded);

    struct vreq v = {"SN-D", "txid-down-000000001", "nonce-d-1", "ir", false, false};
    cr_assert_eq(verify(w, v, &none, RP_REDIS_FAIL_CLOSED).res.err, RP_E_SYSTEM_UNAVAIL);
    cr_assert_eq(verify(w, v, &none, RP_REDIS_FAIL_OPEN).res.err, RP_OK);
    cr_assert_eq(verify(w, v, &none, RP_REDIS_FAIL_OPEN).res.err, RP_E_BAD_SENDER_NONCE);
    /* the allowlist never fails open */
    v.nonce = "nonce-d-2";
    v.allowlist = true;
    cr_assert_eq(verify(w, v, &none, RP_REDIS_FAIL_OPEN).res.err, RP_E_SYSTEM_UNAVAIL);
}

Test(admit, redis_down_fail_open_and_fail_closed, .timeout = 30)
{
    run_case(WITH_REDIS, down_case);
}

/* Redis answers, but with an error (a rate bucket of the wrong type: WRONGTYPE inside the
 * script): that is a Redis failure like no answer, decided by on_redis_failure. */
static void error_reply_case(struct world *w, struct rpt_redis *srv)
{
    (void)srv;
    const char *argv[] = {"HSET", "raproxy:rl:{ip:192.0.2.9}:m", "not", "a-bucket"};
    redis_do(w, 4, argv);
    struct rp_cfg_limits lim = none;
    lim.per_ip = (struct rp_cfg_limit){.rate = 1, .burst = 2};
    cr_assert_eq(start(w, "192.0.2.9", &lim, RP_REDIS_FAIL_CLOSED).res.err, RP_E_SYSTEM_UNAVAIL);
    struct outcome o = start(w, "192.0.2.9", &lim, RP_REDIS_FAIL_OPEN);
    cr_assert_eq(o.res.err, RP_OK);
    cr_assert(o.res.degraded);
    /* control: a bucket of the right type is decided by Redis */
    o = start(w, "192.0.2.10", &lim, RP_REDIS_FAIL_CLOSED);
    cr_assert_eq(o.res.err, RP_OK);
    cr_assert_not(o.res.degraded);
}

Test(admit, redis_error_reply_is_a_redis_failure, .timeout = 30)
{
    run_case(WITH_REDIS, error_reply_case);
}

Test(admit, redis_timeout_fails_over_and_close_fires_shutdown, .timeout = 30)
{
    struct rpt_redis s;
    srv_start(&s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct world w;
    world_init(&w, &loop, s.url);
    kill(s.p.pid, SIGSTOP);
    struct rp_cfg_limits lim = none;
    lim.domain = (struct rp_cfg_limit){.rate = 10, .burst = 10};
    /* deadline (1 s) -> fail-open decision */
    struct outcome o = start(&w, "192.0.2.8", &lim, RP_REDIS_FAIL_OPEN);
    cr_assert_eq(o.res.err, RP_OK);
    cr_assert(o.res.degraded);
    /* pending at close: exactly one callback, RP_E_SHUTDOWN */
    struct outcome p = {0};
    struct rp_admit_in in = {.domain = "m",
                             .client_addr = "192.0.2.8",
                             .limits = &lim,
                             .on_redis_failure = RP_REDIS_FAIL_OPEN};
    rp_admit_start(w.admit, &in, on_admit, &p);
    cr_assert_eq(p.calls, 0);
    rp_redis_close(w.redis);
    cr_assert_eq(p.calls, 1);
    cr_assert_eq(p.res.err, RP_E_SHUTDOWN);
    w.redis = NULL;
    world_free(&w);
    cr_assert_eq(p.calls, 1);
    rpt_redis_stop(&s);
}

/* A script's answer that is not {integer, integer} is unusable: a Redis failure, decided by
 * on_redis_failure as if Redis were down, never read as a verdict. */
Test(admit, a_reply_of_the_wrong_shape_is_a_redis_failure, .timeout = 30)
{
    static const char *const wrong[] = {
        "*2\r\n:1\r\n$1\r\n0\r\n",        /* {1, "0"} */
        "*2\r\n$1\r\n1\r\n:0\r\n",        /* {"1", 0} */
        "*1\r\n:1\r\n",                   /* {1} */
        "*2\r\n:1\r\n$-1\r\n",            /* {1, nil} */
        "*2\r\n*2\r\n:1\r\n:0\r\n:0\r\n", /* {{1, 0}, 0} */
        "$2\r\nok\r\n",                   /* "ok" */
        "+OK\r\n",                        /* status */
        "$-1\r\n",                        /* nil */
    };
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rpt_fake_redis *f = malloc(sizeof *f);
    cr_assert_not_null(f);
    rpt_fake_redis_start(f, &loop);
    struct world w;
    world_init(&w, &loop, f->url);
    struct rp_cfg_limits lim = none;
    lim.per_ip = (struct rp_cfg_limit){.rate = 1, .burst = 100};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        f->reply = wrong[i];
        struct outcome o = start(&w, "192.0.2.11", &lim, RP_REDIS_FAIL_CLOSED);
        cr_assert_eq(o.res.err, RP_E_SYSTEM_UNAVAIL, "reply %zu: %s", i, rp_err_name(o.res.err));
        o = start(&w, "192.0.2.11", &lim, RP_REDIS_FAIL_OPEN);
        cr_assert_eq(o.res.err, RP_OK, "reply %zu", i);
        cr_assert(o.res.degraded, "reply %zu was read as a verdict", i);
    }
    /* control: the scripts' shape is Redis's verdict, admitted and refused alike */
    f->reply = "*2\r\n:1\r\n:0\r\n";
    struct outcome o = start(&w, "192.0.2.11", &lim, RP_REDIS_FAIL_CLOSED);
    cr_assert_eq(o.res.err, RP_OK);
    cr_assert_not(o.res.degraded);
    f->reply = "*2\r\n:0\r\n:250\r\n";
    o = start(&w, "192.0.2.11", &lim, RP_REDIS_FAIL_CLOSED);
    cr_assert_eq(o.res.err, RP_E_RATE_LIMITED);
    cr_assert_eq(o.res.retry_after_ms, 250);
    cr_assert_not(o.res.degraded);
    rpt_fake_redis_stop(f);
    world_free(&w);
    free(f);
}

static void input_case(struct world *w, struct rpt_redis *srv)
{
    (void)srv;
    struct outcome o = {0};
    struct rp_admit_in in = {.domain = NULL, .client_addr = "x", .limits = &none};
    rp_admit_start(w->admit, &in, on_admit, &o);
    cr_assert_eq(o.calls, 1);
    cr_assert_eq(o.res.err, RP_E_INVAL);
    struct vreq v = {"SN", "txid-000000000000001", "", "ir", false, false};
    cr_assert_eq(verify(w, v, &none, RP_REDIS_FAIL_OPEN).res.err, RP_E_BAD_SENDER_NONCE);
    int signed_ok = 0;
    for (int i = 0; i < 1000; i++)
        signed_ok += rp_admit_may_sign_error(w->admit, "m");
    cr_assert_geq(signed_ok, (int)RP_ADMIT_ERRSIG_RATE);
    cr_assert_lt(signed_ok, 2 * (int)RP_ADMIT_ERRSIG_RATE, "bounded per domain and second");
    cr_assert(rp_admit_may_sign_error(w->admit, "other"));
    cr_assert_eq(rp_admit_txn_mode("pollReq"), RP_TXN_CONTINUE);
    cr_assert_eq(rp_admit_txn_mode("p10cr"), RP_TXN_START);
    cr_assert_eq(rp_admit_txn_mode("error"), RP_TXN_CHECK);
}

Test(admit, input_checks_and_error_signature_budget)
{
    run_case(IN_PROCESS, input_case);
}
