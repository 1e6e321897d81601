/* Redis client against a real redis-server on a loopback port. */
#include "raproxy/err.h"
#include "raproxy/metrics.h"
#include "raproxy/redis.h"
#include "fixtures.h"
#include "support.h"
#include "uvrun.h"

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define WAIT_MS  5000
#define SHORT_MS 100

/* children die with the test process, so a failed assertion leaves no redis-server behind */
TestSuite(redis);

static void srv_start_on(struct rpt_redis *s, int port, const char *pass)
{
    memset(s, 0, sizeof *s);
    s->port = port;
    cr_assert_eq(rpt_redis_start(s, pass), 0, "redis-server did not start");
}

static void srv_start(struct rpt_redis *s)
{
    srv_start_on(s, 0, NULL);
}

struct answer {
    int calls;
    int err;
    char str[64];
    long long integer;
    int type;
};

static void on_answer(void *arg, int err, const struct redisReply *rep)
{
    struct answer *a = arg;
    a->calls++;
    a->err = err;
    if (rep) {
        a->type = rep->type;
        a->integer = rep->integer;
        if (rep->str)
            snprintf(a->str, sizeof a->str, "%.*s", (int)rep->len, rep->str);
    }
}

static bool answered(void *arg)
{
    return ((struct answer *)arg)->calls > 0;
}

struct answers {
    struct answer a[4];
    int n;
};

static bool all_answered(void *arg)
{
    struct answers *as = arg;
    for (int i = 0; i < as->n; i++)
        if (as->a[i].calls == 0)
            return false;
    return true;
}

static struct rp_redis *client(uv_loop_t *loop, const char *url, uint32_t timeout_ms)
{
    struct rp_redis *r;
    struct rp_redis_opts o = {.url = url, .timeout_ms = timeout_ms};
    cr_assert_eq(rp_redis_new(&r, loop, &o), RP_OK);
    return r;
}

static void finish(uv_loop_t *loop, struct rp_redis *r)
{
    rp_redis_close(r);
    uv_run(loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(loop), 0, "a libuv handle was left open");
}

static int cmd(struct rp_redis *r, struct answer *a, const char *c0, const char *c1, const char *c2)
{
    const char *argv[] = {c0, c1, c2};
    int argc = c2 ? 3 : c1 ? 2 : 1;
    memset(a, 0, sizeof *a);
    return rp_redis_command(r, on_answer, a, argc, argv, NULL);
}

Test(redis, command_round_trip, .timeout = 30)
{
    struct rpt_redis s;
    srv_start(&s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rp_redis *r = client(&loop, s.url, 1000);
    cr_assert(rpt_run_until(&loop, rpt_redis_is_ready, r, WAIT_MS));
    struct answer a;
    cr_assert_eq(cmd(r, &a, "SET", "k", "hello"), RP_OK);
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_OK);
    cr_assert_eq(cmd(r, &a, "GET", "k", NULL), RP_OK);
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.calls, 1);
    cr_assert_str_eq(a.str, "hello");
    cr_assert_eq(cmd(r, &a, "NOSUCHCOMMAND", NULL, NULL), RP_OK);
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_E_REDIS_REPLY);
    cr_assert_eq(a.type, REDIS_REPLY_ERROR);
    finish(&loop, r);
    rpt_redis_stop(&s);
}

Test(redis, auth_and_select_from_url, .timeout = 30)
{
    struct rpt_redis s;
    srv_start_on(&s, rpt_free_port(), "s3cret");
    char url[128];
    snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d/3", s.port);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rp_redis *r = client(&loop, url, 1000);
    cr_assert(rpt_run_until(&loop, rpt_redis_is_ready, r, WAIT_MS));
    struct answer a;
    cr_assert_eq(cmd(r, &a, "CLIENT", "INFO", NULL), RP_OK);
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_OK);
    finish(&loop, r);
    /* a wrong password never becomes ready */
    uv_loop_init(&loop);
    r = client(&loop, s.url, 1000);
    cr_assert_not(rpt_run_until(&loop, rpt_redis_is_ready, r, 300));
    finish(&loop, r);
    rpt_redis_stop(&s);
}

Test(redis, deadline_fires_and_late_reply_is_dropped, .timeout = 30)
{
    struct rpt_redis s;
    srv_start(&s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rp_redis *r = client(&loop, s.url, SHORT_MS);
    cr_assert(rpt_run_until(&loop, rpt_redis_is_ready, r, WAIT_MS));
    struct rp_metric *timeouts =
        rp_metric_get("raproxy_redis_timeouts_total", RP_METRIC_COUNTER, NULL);
    int64_t before = timeouts->value;

    kill(s.p.pid, SIGSTOP);
    struct answers as = {.n = 3};
    for (int i = 0; i < as.n; i++)
        cr_assert_eq(cmd(r, &as.a[i], "INCR", "late", NULL), RP_OK);
    cr_assert(rpt_run_until(&loop, all_answered, &as, WAIT_MS));
    for (int i = 0; i < as.n; i++) {
        cr_assert_eq(as.a[i].err, RP_E_REDIS_TIMEOUT);
        cr_assert_eq(as.a[i].calls, 1);
    }
    cr_assert_eq(timeouts->value - before, 3);

    /* the late replies arrive now and must be dropped without a second callback */
    kill(s.p.pid, SIGCONT);
    struct answer a;
    cr_assert_eq(cmd(r, &a, "GET", "late", NULL), RP_OK);
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_OK);
    cr_assert_str_eq(a.str, "3", "the timed-out commands did run on the server");
    for (int i = 0; i < as.n; i++)
        cr_assert_eq(as.a[i].calls, 1);
    finish(&loop, r);
    rpt_redis_stop(&s);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* A loop busy past a command's deadline and past the stall limit (a burst of TLS
 * handshakes on it) while Redis answered at once: the reply waiting in the socket is taken,
 * not reported as a timeout, and the connection is kept. */
Test(redis, a_busy_loop_takes_the_reply_that_came_before_timing_it_out, .timeout = 30)
{
    struct rpt_redis s;
    srv_start(&s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rp_redis *r = client(&loop, s.url, SHORT_MS);
    cr_assert(rpt_run_until(&loop, rpt_redis_is_ready, r, WAIT_MS));
    struct rp_metric *reconnects =
        rp_metric_get("raproxy_redis_reconnects_total", RP_METRIC_COUNTER, NULL);
    int64_t before = reconnects->value;
    struct answer a;
    kill(s.p.pid, SIGSTOP); /* so that the reply comes while the loop is busy */
    cr_assert_eq(cmd(r, &a, "INCR", "busy", NULL), RP_OK);
    rpt_run_until(&loop, never, NULL, SHORT_MS / 4); /* the command goes out */
    cr_assert_eq(a.calls, 0);
    kill(s.p.pid, SIGCONT);
    usleep(SHORT_MS * 1000 * 12); /* the loop does other work: past the stall limit */
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_OK, "the reply was there, not late");
    cr_assert_eq(a.integer, 1);
    cr_assert(rp_redis_ready(r));
    cr_assert_eq(reconnects->value, before, "no reconnect");
    finish(&loop, r);
    rpt_redis_stop(&s);
}

/* A command issued just before the loop gets busy past its deadline and the stall limit is
 * not even written yet when the loop comes back: it gets the time it was owed — it is sent
 * and answered, not reported as a timeout, and the connection is kept. */
Test(redis, a_busy_loop_gives_an_unsent_command_its_time, .timeout = 30)
{
    struct rpt_redis s;
    srv_start(&s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rp_redis *r = client(&loop, s.url, SHORT_MS);
    cr_assert(rpt_run_until(&loop, rpt_redis_is_ready, r, WAIT_MS));
    struct rp_metric *reconnects =
        rp_metric_get("raproxy_redis_reconnects_total", RP_METRIC_COUNTER, NULL);
    int64_t before = reconnects->value;
    struct answer a;
    cr_assert_eq(cmd(r, &a, "INCR", "unsent", NULL), RP_OK);
    usleep(SHORT_MS * 1000 * 12); /* the loop does other work before it writes it */
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_OK, "it had no time at all");
    cr_assert_eq(a.integer, 1);
    cr_assert(rp_redis_ready(r));
    cr_assert_eq(reconnects->value, before, "no reconnect");
    /* control: a Redis that does not answer still times out, busy loop or not */
    kill(s.p.pid, SIGSTOP);
    cr_assert_eq(cmd(r, &a, "INCR", "unsent", NULL), RP_OK);
    usleep(SHORT_MS * 1000 * 3);
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_E_REDIS_TIMEOUT);
    kill(s.p.pid, SIGCONT);
    finish(&loop, r);
    rpt_redis_stop(&s);
}

Test(redis, reconnects_after_restart_on_same_port, .timeout = 30)
{
    struct rpt_redis s;
    srv_start(&s);
    int port = s.port;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rp_redis *r = client(&loop, s.url, 1000);
    cr_assert(rpt_run_until(&loop, rpt_redis_is_ready, r, WAIT_MS));
    struct rp_metric *up = rp_metric_get("raproxy_redis_up", RP_METRIC_GAUGE, NULL);
    cr_assert_eq(up->value, 1);

    rpt_stop(&s.p, SIGKILL, WAIT_MS);
    cr_assert(rpt_run_until(&loop, rpt_redis_is_down, r, WAIT_MS), "the loss was not noticed");
    cr_assert_eq(up->value, 0);
    /* while down: refused at once, no callback */
    struct answer a;
    cr_assert_eq(cmd(r, &a, "PING", NULL, NULL), RP_E_REDIS_DOWN);
    rpt_run_until(&loop, answered, &a, 50);
    cr_assert_eq(a.calls, 0);

    srv_start_on(&s, port, NULL);
    long t0 = rpt_mono_ms();
    cr_assert(rpt_run_until(&loop, rpt_redis_is_ready, r, 2000), "not reconnected within 2 s");
    cr_log_info("reconnected %ld ms after the restart", rpt_mono_ms() - t0);
    cr_assert_eq(cmd(r, &a, "PING", NULL, NULL), RP_OK);
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    cr_assert_str_eq(a.str, "PONG");
    struct rp_metric *rec =
        rp_metric_get("raproxy_redis_reconnects_total", RP_METRIC_COUNTER, NULL);
    cr_assert_gt(rec->value, 0);
    finish(&loop, r);
    rpt_redis_stop(&s);
}

Test(redis, commands_fail_fast_when_never_connected, .timeout = 30)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rpt_free_port());
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rp_redis *r = client(&loop, url, 1000);
    cr_assert_not(rpt_run_until(&loop, rpt_redis_is_ready, r, 200));
    struct answer a;
    cr_assert_eq(cmd(r, &a, "PING", NULL, NULL), RP_E_REDIS_DOWN);
    unsigned id;
    cr_assert_eq(rp_redis_script(r, "return 1", &id), RP_OK);
    const char *argv[] = {"x"};
    cr_assert_eq(rp_redis_evalsha(r, id, 0, 1, argv, NULL, on_answer, &a), RP_E_REDIS_DOWN);
    cr_assert_eq(a.calls, 0);
    finish(&loop, r);
}

Test(redis, noscript_after_script_flush_is_transparent, .timeout = 30)
{
    struct rpt_redis s;
    srv_start(&s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rp_redis *r = client(&loop, s.url, 1000);
    unsigned id, id2;
    cr_assert_eq(rp_redis_script(r, "return KEYS[1] .. ARGV[1]", &id), RP_OK);
    cr_assert_eq(rp_redis_script(r, "return KEYS[1] .. ARGV[1]", &id2), RP_OK);
    cr_assert_eq(id, id2, "identical scripts share an id");
    cr_assert(rpt_run_until(&loop, rpt_redis_is_ready, r, WAIT_MS));
    const char *argv[] = {"key-", "arg"};
    struct answer a = {0};
    cr_assert_eq(rp_redis_evalsha(r, id, 1, 2, argv, NULL, on_answer, &a), RP_OK);
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_OK);
    cr_assert_str_eq(a.str, "key-arg");

    cr_assert_eq(cmd(r, &a, "SCRIPT", "FLUSH", NULL), RP_OK);
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    memset(&a, 0, sizeof a);
    cr_assert_eq(rp_redis_evalsha(r, id, 1, 2, argv, NULL, on_answer, &a), RP_OK);
    cr_assert(rpt_run_until(&loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_OK, "NOSCRIPT leaked to the caller: %s", rp_err_name(a.err));
    cr_assert_str_eq(a.str, "key-arg");
    cr_assert_eq(a.calls, 1);
    finish(&loop, r);
    rpt_redis_stop(&s);
}

Test(redis, close_fires_pending_with_shutdown, .timeout = 30)
{
    struct rpt_redis s;
    srv_start(&s);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rp_redis *r = client(&loop, s.url, 1000);
    cr_assert(rpt_run_until(&loop, rpt_redis_is_ready, r, WAIT_MS));
    kill(s.p.pid, SIGSTOP);
    struct answers as = {.n = 2};
    for (int i = 0; i < as.n; i++)
        cr_assert_eq(cmd(r, &as.a[i], "PING", NULL, NULL), RP_OK);
    rp_redis_close(r);
    for (int i = 0; i < as.n; i++) {
        cr_assert_eq(as.a[i].calls, 1);
        cr_assert_eq(as.a[i].err, RP_E_SHUTDOWN);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
    rpt_redis_stop(&s);
}

Test(redis, parses_urls)
{
    struct rp_redis_url u;
    cr_assert_eq(rp_redis_url_parse("redis://127.0.0.1:6380/2", &u), RP_OK);
    cr_assert_str_eq(u.host, "127.0.0.1");
    cr_assert_eq(u.port, 6380);
    cr_assert_eq(u.db, 2);
    cr_assert_null(u.pass);
    cr_assert_eq(rp_redis_url_parse("redis://app:p%40ss@[::1]:7000", &u), RP_OK);
    cr_assert_str_eq(u.host, "::1");
    cr_assert_str_eq(u.user, "app");
    cr_assert_str_eq(u.pass, "p@ss");
    cr_assert_eq(u.port, 7000);
    cr_assert_eq(rp_redis_url_parse("redis://:pw@redis", &u), RP_OK);
    cr_assert_null(u.user);
    cr_assert_str_eq(u.pass, "pw");
    cr_assert_eq(u.port, RP_REDIS_DEFAULT_PORT);
    cr_assert_eq(rp_redis_url_parse("unix:/run/redis.sock", &u), RP_OK);
    cr_assert_str_eq(u.path, "/run/redis.sock");
    cr_assert_null(u.host);
    cr_assert_eq(rp_redis_url_parse("http://x", &u), RP_E_CONFIG);
    cr_assert_eq(rp_redis_url_parse("redis://host:99999", &u), RP_E_CONFIG);
    cr_assert_eq(rp_redis_url_parse("redis://host/x", &u), RP_E_CONFIG);
    cr_assert_eq(rp_redis_url_parse("redis://user@host", &u), RP_E_CONFIG);
    cr_assert_eq(rp_redis_url_parse("redis://:p%zz@host", &u), RP_E_CONFIG);
    cr_assert_eq(rp_redis_url_parse("unix:relative", &u), RP_E_CONFIG);
}
