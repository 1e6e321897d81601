/* Redis client against a real redis-server on a loopback port. */
#include "raproxy/err.h"
#include "raproxy/metrics.h"
#include "raproxy/redis.h"
#include "fixtures.h"
#include "support.h"
#include "uvrun.h"

#include <criterion/criterion.h>

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
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

/* What a callback saw, copied out of the reply (which lives only during the callback). */
struct answer {
    int calls;
    int err;
    enum rp_redis_kind kind;
    long long integer;
    size_t elements;
    char str[512];
    char shape[256]; /* the whole reply written out: see describe() */
};

struct text {
    char *p;
    size_t cap, len;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    /* a long reply is cut (the tests that compare shapes use short ones) */
    t->len = n < 0 || (size_t)n >= t->cap - t->len ? t->cap - 1 : t->len + (size_t)n;
}

/* A reply as text, read only through the reply view: 7, "a", nil, +OK, -ERR x, [1,[2]]. */
static void describe(struct text *t, const struct rp_redis_reply *r)
{
    switch (r->kind) {
    case RP_REDIS_REPLY_NIL:
        put(t, "nil");
        break;
    case RP_REDIS_REPLY_INTEGER:
        put(t, "%lld", r->integer);
        break;
    case RP_REDIS_REPLY_STATUS:
        put(t, "+%.*s", (int)r->str.len, (const char *)r->str.p);
        break;
    case RP_REDIS_REPLY_ERROR:
        put(t, "-%.*s", (int)r->str.len, (const char *)r->str.p);
        break;
    case RP_REDIS_REPLY_STRING:
        put(t, "\"%.*s\"", (int)r->str.len, (const char *)r->str.p);
        break;
    case RP_REDIS_REPLY_ARRAY:
        put(t, "[");
        for (size_t i = 0; i < r->elements; i++) {
            struct rp_redis_reply e;
            cr_assert(rp_redis_reply_elem(r, i, &e), "element %zu of %zu", i, r->elements);
            put(t, i ? "," : "");
            describe(t, &e);
        }
        put(t, "]");
        break;
    }
}

static void on_answer(void *arg, int err, const struct rp_redis_reply *rep)
{
    struct answer *a = arg;
    a->calls++;
    a->err = err;
    if (rep) {
        a->kind = rep->kind;
        a->integer = rep->integer;
        a->elements = rep->elements;
        if (rep->str.p)
            snprintf(a->str, sizeof a->str, "%.*s", (int)rep->str.len, (const char *)rep->str.p);
        struct text t = {a->shape, sizeof a->shape, 0};
        describe(&t, rep);
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

/* A redis-server, a loop and a client of it with a per-command timeout. */
struct world {
    struct rpt_redis srv;
    uv_loop_t loop;
    struct rp_redis *r;
};

/* Started, not yet connected (scripts registered now go out with the handshake). */
static void world_start(struct world *w, uint32_t timeout_ms)
{
    srv_start_on(&w->srv, 0, NULL);
    uv_loop_init(&w->loop);
    w->r = client(&w->loop, w->srv.url, timeout_ms);
}

static void world_up(struct world *w, uint32_t timeout_ms)
{
    world_start(w, timeout_ms);
    cr_assert(rpt_run_until(&w->loop, rpt_redis_is_ready, w->r, WAIT_MS));
}

static void world_down(struct world *w)
{
    finish(&w->loop, w->r);
    rpt_redis_stop(&w->srv);
}

static int cmd(struct rp_redis *r, struct answer *a, const char *c0, const char *c1, const char *c2)
{
    const char *argv[] = {c0, c1, c2};
    int argc = c2 ? 3 : c1 ? 2 : 1;
    memset(a, 0, sizeof *a);
    return rp_redis_command(r, on_answer, a, argc, argv, NULL);
}

static int64_t counter(const char *name)
{
    return rp_metric_get(name, RP_METRIC_COUNTER, NULL)->value;
}

/* A command of a loop that was busy past its deadline was answered, not timed out, and
 * the connection kept (no reconnect since `reconnects`). */
static void assert_answered_in_time(struct world *w, struct answer *a, int64_t reconnects)
{
    cr_assert(rpt_run_until(&w->loop, answered, a, WAIT_MS));
    cr_assert_eq(a->err, RP_OK, "timed out: %s", rp_err_name(a->err));
    cr_assert_eq(a->integer, 1);
    cr_assert(rp_redis_ready(w->r));
    cr_assert_eq(counter("raproxy_redis_reconnects_total"), reconnects, "no reconnect");
}

/* One command, sent and answered. */
static struct answer ask(struct world *w, const char *c0, const char *c1, const char *c2)
{
    struct answer a;
    cr_assert_eq(cmd(w->r, &a, c0, c1, c2), RP_OK);
    cr_assert(rpt_run_until(&w->loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.calls, 1);
    return a;
}

Test(redis, command_round_trip, .timeout = 30)
{
    struct world w;
    world_up(&w, 1000);
    cr_assert_eq(ask(&w, "SET", "k", "hello").err, RP_OK);
    struct answer a = ask(&w, "GET", "k", NULL);
    cr_assert_eq(a.kind, RP_REDIS_REPLY_STRING);
    cr_assert_str_eq(a.str, "hello");
    a = ask(&w, "NOSUCHCOMMAND", NULL, NULL);
    cr_assert_eq(a.err, RP_E_REDIS_REPLY);
    cr_assert_eq(a.kind, RP_REDIS_REPLY_ERROR);
    cr_assert_eq(strncmp(a.str, "ERR ", 4), 0, "the server's message: %s", a.str);
    world_down(&w);
}

/* Every kind, at the top and nested, read through the view alone. Lua's false is a nil,
 * {ok=...} a status and {err=...} an error reply (inside an array it does not fail the call). */
Test(redis, reply_view_reads_every_kind_nested, .timeout = 30)
{
    struct world w;
    world_up(&w, 1000);
    struct answer a = ask(&w, "SET", "k", "v");
    cr_assert_eq(a.kind, RP_REDIS_REPLY_STATUS);
    cr_assert_str_eq(a.shape, "+OK");
    a = ask(&w, "GET", "no-such-key", NULL);
    cr_assert_eq(a.err, RP_OK);
    cr_assert_eq(a.kind, RP_REDIS_REPLY_NIL);
    cr_assert_str_eq(a.shape, "nil");
    a = ask(&w, "INCRBY", "n", "-42");
    cr_assert_eq(a.kind, RP_REDIS_REPLY_INTEGER);
    cr_assert_eq(a.integer, -42);
    a = ask(&w, "EVAL",
            "return {7, -9, 'a', '', false, {}, {1, {'deep', false}}, {ok='OK'}, {err='boom'}}",
            "0");
    cr_assert_eq(a.err, RP_OK, "%s", rp_err_name(a.err));
    cr_assert_eq(a.kind, RP_REDIS_REPLY_ARRAY);
    cr_assert_eq(a.elements, 9);
    cr_assert_str_eq(a.shape, "[7,-9,\"a\",\"\",nil,[],[1,[\"deep\",nil]],+OK,-boom]");
    world_down(&w);
}

struct bounds {
    int calls;
    bool past_end, far_past_end, not_array, empty_string_present;
    char deep[16];
};

/* Element access checks its bounds and kind, and may write over the reply it reads. */
static void on_bounds(void *arg, int err, const struct rp_redis_reply *rep)
{
    struct bounds *b = arg;
    b->calls++;
    cr_assert_eq(err, RP_OK);
    struct rp_redis_reply e = {.kind = RP_REDIS_REPLY_INTEGER};
    b->past_end = !rp_redis_reply_elem(rep, rep->elements, &e) && e.kind == RP_REDIS_REPLY_NIL;
    e.kind = RP_REDIS_REPLY_INTEGER;
    b->far_past_end = !rp_redis_reply_elem(rep, SIZE_MAX, &e) && e.kind == RP_REDIS_REPLY_NIL;
    struct rp_redis_reply first;
    cr_assert(rp_redis_reply_elem(rep, 0, &first));
    b->not_array = first.kind == RP_REDIS_REPLY_INTEGER && !rp_redis_reply_elem(&first, 0, &e);
    cr_assert(rp_redis_reply_elem(rep, 1, &e));
    b->empty_string_present = e.kind == RP_REDIS_REPLY_STRING && e.str.len == 0 && e.str.p;
    struct rp_redis_reply x = *rep; /* down {1, {'deep'}} in place */
    if (rp_redis_reply_elem(&x, 2, &x) && rp_redis_reply_elem(&x, 1, &x) &&
        rp_redis_reply_elem(&x, 0, &x) && x.kind == RP_REDIS_REPLY_STRING)
        snprintf(b->deep, sizeof b->deep, "%.*s", (int)x.str.len, (const char *)x.str.p);
}

static bool bounds_done(void *arg)
{
    return ((struct bounds *)arg)->calls > 0;
}

Test(redis, reply_elements_outside_the_array_are_refused, .timeout = 30)
{
    struct world w;
    world_up(&w, 1000);
    const char *argv[] = {"EVAL", "return {5, '', {1, {'deep'}}}", "0"};
    struct bounds b = {0};
    cr_assert_eq(rp_redis_command(w.r, on_bounds, &b, 3, argv, NULL), RP_OK);
    cr_assert(rpt_run_until(&w.loop, bounds_done, &b, WAIT_MS));
    cr_assert(b.past_end, "element [elements] was given");
    cr_assert(b.far_past_end, "element [SIZE_MAX] was given");
    cr_assert(b.not_array, "an integer had elements");
    cr_assert(b.empty_string_present, "an empty string read as absent");
    cr_assert_str_eq(b.deep, "deep");
    /* a reply that is no reply (NULL) has no elements either */
    struct rp_redis_reply e;
    cr_assert_not(rp_redis_reply_elem(NULL, 0, &e));
    cr_assert_eq(e.kind, RP_REDIS_REPLY_NIL);
    world_down(&w);
}

Test(redis, auth_and_select_from_url, .timeout = 30)
{
    struct rpt_redis s;
    srv_start_on(&s, rpt_free_port(), "s3cret");
    char url[128];
    snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d/3", s.port);
    struct world w = {.srv = s};
    uv_loop_init(&w.loop);
    w.r = client(&w.loop, url, 1000);
    cr_assert(rpt_run_until(&w.loop, rpt_redis_is_ready, w.r, WAIT_MS));
    struct answer a = ask(&w, "CLIENT", "INFO", NULL);
    cr_assert_eq(a.err, RP_OK);
    cr_assert(strstr(a.str, " db=3 "), "SELECT 3 was not sent: %s", a.str);
    finish(&w.loop, w.r);
    /* a wrong password never becomes ready */
    uv_loop_init(&w.loop);
    w.r = client(&w.loop, s.url, 1000);
    cr_assert_not(rpt_run_until(&w.loop, rpt_redis_is_ready, w.r, 300));
    world_down(&w);
}

Test(redis, deadline_fires_and_late_reply_is_dropped, .timeout = 30)
{
    struct world w;
    world_up(&w, SHORT_MS);
    int64_t before = counter("raproxy_redis_timeouts_total");

    kill(w.srv.p.pid, SIGSTOP);
    struct answers as = {.n = 3};
    for (int i = 0; i < as.n; i++)
        cr_assert_eq(cmd(w.r, &as.a[i], "INCR", "late", NULL), RP_OK);
    cr_assert(rpt_run_until(&w.loop, all_answered, &as, WAIT_MS));
    for (int i = 0; i < as.n; i++) {
        cr_assert_eq(as.a[i].err, RP_E_REDIS_TIMEOUT);
        cr_assert_eq(as.a[i].calls, 1);
    }
    cr_assert_eq(counter("raproxy_redis_timeouts_total") - before, 3);

    /* the late replies arrive now and must be dropped without a second callback */
    kill(w.srv.p.pid, SIGCONT);
    struct answer a = ask(&w, "GET", "late", NULL);
    cr_assert_eq(a.err, RP_OK);
    cr_assert_str_eq(a.str, "3", "the timed-out commands did run on the server");
    for (int i = 0; i < as.n; i++)
        cr_assert_eq(as.a[i].calls, 1);
    world_down(&w);
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
    struct world w;
    world_up(&w, SHORT_MS);
    int64_t before = counter("raproxy_redis_reconnects_total");
    struct answer a;
    kill(w.srv.p.pid, SIGSTOP); /* so that the reply comes while the loop is busy */
    cr_assert_eq(cmd(w.r, &a, "INCR", "busy", NULL), RP_OK);
    rpt_run_until(&w.loop, never, NULL, SHORT_MS / 4); /* the command goes out */
    cr_assert_eq(a.calls, 0);
    kill(w.srv.p.pid, SIGCONT);
    usleep(SHORT_MS * 1000 * 12);            /* the loop does other work: past the stall limit */
    assert_answered_in_time(&w, &a, before); /* the reply was there, not late */
    world_down(&w);
}

/* A command issued just before the loop gets busy past its deadline and the stall limit is
 * not even written yet when the loop comes back: it gets the time it was owed — it is sent
 * and answered, not reported as a timeout, and the connection is kept. */
Test(redis, a_busy_loop_gives_an_unsent_command_its_time, .timeout = 30)
{
    struct world w;
    world_up(&w, SHORT_MS);
    int64_t before = counter("raproxy_redis_reconnects_total");
    struct answer a;
    cr_assert_eq(cmd(w.r, &a, "INCR", "unsent", NULL), RP_OK);
    usleep(SHORT_MS * 1000 * 12);            /* the loop does other work before it writes it */
    assert_answered_in_time(&w, &a, before); /* it had its time */
    /* control: a Redis that does not answer still times out, busy loop or not */
    kill(w.srv.p.pid, SIGSTOP);
    cr_assert_eq(cmd(w.r, &a, "INCR", "unsent", NULL), RP_OK);
    usleep(SHORT_MS * 1000 * 3);
    cr_assert(rpt_run_until(&w.loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_E_REDIS_TIMEOUT);
    kill(w.srv.p.pid, SIGCONT);
    world_down(&w);
}

Test(redis, reconnects_after_restart_on_same_port, .timeout = 30)
{
    struct world w;
    world_up(&w, 1000);
    int port = w.srv.port;
    struct rp_metric *up = rp_metric_get("raproxy_redis_up", RP_METRIC_GAUGE, NULL);
    cr_assert_eq(up->value, 1);

    rpt_stop(&w.srv.p, SIGKILL, WAIT_MS);
    cr_assert(rpt_run_until(&w.loop, rpt_redis_is_down, w.r, WAIT_MS), "the loss was not noticed");
    cr_assert_eq(up->value, 0);
    /* while down: refused at once, no callback */
    struct answer a;
    cr_assert_eq(cmd(w.r, &a, "PING", NULL, NULL), RP_E_REDIS_DOWN);
    rpt_run_until(&w.loop, answered, &a, 50);
    cr_assert_eq(a.calls, 0);

    srv_start_on(&w.srv, port, NULL);
    long t0 = rpt_mono_ms();
    cr_assert(rpt_run_until(&w.loop, rpt_redis_is_ready, w.r, 2000), "not reconnected within 2 s");
    cr_log_info("reconnected %ld ms after the restart", rpt_mono_ms() - t0);
    cr_assert_str_eq(ask(&w, "PING", NULL, NULL).str, "PONG");
    cr_assert_gt(counter("raproxy_redis_reconnects_total"), 0);
    world_down(&w);
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
    struct world w;
    world_start(&w, 1000);
    unsigned id, id2;
    cr_assert_eq(rp_redis_script(w.r, "return KEYS[1] .. ARGV[1]", &id), RP_OK);
    cr_assert_eq(rp_redis_script(w.r, "return KEYS[1] .. ARGV[1]", &id2), RP_OK);
    cr_assert_eq(id, id2, "identical scripts share an id");
    cr_assert(rpt_run_until(&w.loop, rpt_redis_is_ready, w.r, WAIT_MS));
    const char *argv[] = {"key-", "arg"};
    struct answer a = {0};
    cr_assert_eq(rp_redis_evalsha(w.r, id, 1, 2, argv, NULL, on_answer, &a), RP_OK);
    cr_assert(rpt_run_until(&w.loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_OK);
    cr_assert_str_eq(a.str, "key-arg");

    ask(&w, "SCRIPT", "FLUSH", NULL);
    memset(&a, 0, sizeof a);
    cr_assert_eq(rp_redis_evalsha(w.r, id, 1, 2, argv, NULL, on_answer, &a), RP_OK);
    cr_assert(rpt_run_until(&w.loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_OK, "NOSCRIPT leaked to the caller: %s", rp_err_name(a.err));
    cr_assert_str_eq(a.str, "key-arg");
    cr_assert_eq(a.calls, 1);
    world_down(&w);
}

Test(redis, close_fires_pending_with_shutdown, .timeout = 30)
{
    struct world w;
    world_up(&w, 1000);
    kill(w.srv.p.pid, SIGSTOP);
    struct answers as = {.n = 2};
    for (int i = 0; i < as.n; i++)
        cr_assert_eq(cmd(w.r, &as.a[i], "PING", NULL, NULL), RP_OK);
    rp_redis_close(w.r);
    for (int i = 0; i < as.n; i++) {
        cr_assert_eq(as.a[i].calls, 1);
        cr_assert_eq(as.a[i].err, RP_E_SHUTDOWN);
    }
    world_down(&w); /* closing again is a no-op; the loop then frees the client */
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
