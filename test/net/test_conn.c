/* Client connections (src/net/conn.c) on a real loop thread with a test handler in place of
 * the RA pipeline, driven from the test thread over plain sockets: pipelined requests
 * answered once each and in order (also when the handler answers later), a body over the
 * cap refused before the handler sees it, and a client that leaves while its exchange runs
 * (the exchange stays valid, learns it was aborted, and its answer only releases it). */
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/http.h"
#include "raproxy/loop.h"
#include "raproxy/snapshot.h"
#include "raproxy/url.h"
#include "httpc.h"
#include "support.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS      5000
#define POLL_MS      5
#define MAX_BODY     1024
#define READ_MAX     16384
#define HELD_MAX     8
#define ANSWER_LATER "/later"
#define HOLD         "/hold"

TestSuite(conn);

/* ---- the handler, on the loop thread ------------------------------------------------- */

static atomic_int g_handled;      /* exchanges the handler saw */
static atomic_int g_aborted_seen; /* held exchanges found aborted when answered */
static atomic_bool g_release;     /* the test thread lets the held exchanges go */

struct held {
    uv_timer_t t;
    struct rp_exchange *ex;
    bool hold; /* until g_release, else one loop turn */
};

static void answer(struct rp_exchange *ex)
{
    const struct rp_http_req *r = ex->req;
    char body[128];
    int n = snprintf(body, sizeof body, "%.*s", (int)r->path.len, (const char *)r->path.p);
    cr_assert_eq(rp_exchange_respond(ex, 200, "text/plain", (const uint8_t *)body, (size_t)n, NULL),
                 RP_OK);
}

static void on_held_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_held_tick(uv_timer_t *t)
{
    struct held *h = t->data;
    /* held until its client is gone (or the test ends) */
    if (h->hold && !rp_exchange_aborted(h->ex) && !atomic_load(&g_release))
        return;
    if (rp_exchange_aborted(h->ex))
        atomic_fetch_add(&g_aborted_seen, 1);
    answer(h->ex);
    uv_close((uv_handle_t *)t, on_held_closed);
}

static void on_exchange(struct rp_exchange *ex)
{
    atomic_fetch_add(&g_handled, 1);
    const struct rp_http_req *r = ex->req;
    bool later = rp_url_path_is(r->path, ANSWER_LATER);
    bool hold = rp_url_path_is(r->path, HOLD);
    if (!later && !hold) {
        answer(ex);
        return;
    }
    struct held *h = calloc(1, sizeof *h);
    cr_assert_not_null(h);
    h->ex = ex;
    h->hold = hold;
    uv_timer_init(rp_loop_uv(ex->loop), &h->t);
    h->t.data = h;
    uv_timer_start(&h->t, on_held_tick, hold ? POLL_MS : 0, hold ? POLL_MS : 0);
}

/* ---- one loop with a plain listener ---------------------------------------------------- */

struct fx {
    char *dir;
    int port;
    struct rp_snapshot *snap;
    struct rp_loop *loop;
};

static struct fx g;

static void setup(void)
{
    memset(&g, 0, sizeof g);
    atomic_store(&g_handled, 0);
    atomic_store(&g_aborted_seen, 0);
    atomic_store(&g_release, false);
    g.dir = rpt_tmpdir();
    g.port = rpt_free_port();
    char cfg[1024], path[600];
    int n = snprintf(cfg, sizeof cfg,
                     "listeners: [{address: 127.0.0.1:%d, tls: off}]\n"
                     "upstream: {url: \"http://127.0.0.1:1/pkix/\"}\n"
                     "http: {max_body_bytes: %d}\n"
                     "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key}\n"
                     "domains: [{name: d, trust_anchors: [%s/vendor/root.pem], allow: [ir]}]\n",
                     g.port, MAX_BODY, rpt_pki(), rpt_pki(), rpt_pki());
    snprintf(path, sizeof path, "%s/raproxy.yaml", g.dir);
    cr_assert_eq(rpt_write_file(path, cfg, (size_t)n), 0);
    g.snap = calloc(1, sizeof *g.snap);
    cr_assert_not_null(g.snap);
    atomic_init(&g.snap->refs, 1);
    cr_assert_eq(rp_config_load_opts(path, &g.snap->cfg, stderr, RP_CONFIG_NO_FILE_CHECKS), RP_OK);
    g.snap->listener_tls = calloc(g.snap->cfg->listeners_count, sizeof *g.snap->listener_tls);
    cr_assert_not_null(g.snap->listener_tls);
    struct rp_loop_opts o = {.snap = g.snap, .on_exchange = on_exchange};
    cr_assert_eq(rp_loop_start(&g.loop, &o), RP_OK);
    cr_assert_eq(rpt_wait_port(g.port, WAIT_MS), 0);
}

static void release_listener_tls(struct rp_snapshot *s)
{
    free(s->listener_tls);
}

static void teardown(void)
{
    atomic_store(&g_release, true);
    rp_loop_drain(g.loop, WAIT_MS);
    rp_loop_join(g.loop);
    g.snap->release = release_listener_tls;
    rp_snapshot_unref(g.snap);
    rpt_rmdir(g.dir);
    free(g.dir);
}

/* ---- the test thread's side ------------------------------------------------------------ */

static void send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        cr_assert_gt(w, 0);
        s += w;
        n -= (size_t)w;
    }
}

static size_t request(char *buf, size_t cap, const char *path, size_t body_len)
{
    int n = snprintf(buf, cap,
                     "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/pkixcmp\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     path, body_len);
    cr_assert(n > 0 && (size_t)n + body_len < cap);
    memset(buf + n, 'b', body_len);
    return (size_t)n + body_len;
}

/* Reads until `count` occurrences of `needle` arrived or the peer closed; returns the text. */
static char *read_until(int fd, const char *needle, int count, char *buf, size_t cap)
{
    size_t len = 0;
    long deadline = rpt_mono_ms() + WAIT_MS;
    buf[0] = '\0';
    for (;;) {
        int seen = 0;
        for (const char *p = buf; (p = strstr(p, needle)) != NULL; p += strlen(needle))
            seen++;
        if (seen >= count || rpt_mono_ms() > deadline)
            return buf;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, POLL_MS * 10) <= 0)
            continue;
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r <= 0)
            return buf;
        len += (size_t)r;
        buf[len] = '\0';
    }
}

/* One request on a fresh connection; what came back until `until` (or the close) in got. */
static void roundtrip(const char *path, size_t body_len, const char *until, char *got, size_t cap)
{
    char req[4096];
    size_t n = request(req, sizeof req, path, body_len);
    int fd = rpt_connect(g.port);
    cr_assert_geq(fd, 0);
    send_all(fd, req, n);
    read_until(fd, until, 1, got, cap);
    close(fd);
}

static bool wait_for(atomic_int *v, int want)
{
    long deadline = rpt_mono_ms() + WAIT_MS;
    while (atomic_load(v) < want && rpt_mono_ms() < deadline)
        rpt_sleep_ms(POLL_MS);
    return atomic_load(v) >= want;
}

Test(conn, answers_pipelined_requests_once_each_in_order, .init = setup, .fini = teardown,
     .timeout = 30)
{
    static const char *const paths[] = {"/a", ANSWER_LATER, "/c", ANSWER_LATER, "/e"};
    char all[4096], one[512];
    size_t len = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        size_t n = request(one, sizeof one, paths[i], 3);
        memcpy(all + len, one, n);
        len += n;
    }
    int fd = rpt_connect(g.port);
    cr_assert_geq(fd, 0);
    send_all(fd, all, len); /* every request in one write */
    char got[READ_MAX];
    read_until(fd, "HTTP/1.1 200", 5, got, sizeof got);
    close(fd);
    const char *p = got;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        const char *status = strstr(p, "HTTP/1.1 200");
        cr_assert_not_null(status, "answer %zu missing: %s", i, got);
        const char *body = strstr(status, "\r\n\r\n");
        cr_assert_not_null(body);
        body += 4;
        cr_assert_eq(strncmp(body, paths[i], strlen(paths[i])), 0, "answer %zu: %s", i, got);
        p = body;
    }
    cr_assert_null(strstr(p, "HTTP/1.1"), "no answer twice: %s", got);
    cr_assert_eq(atomic_load(&g_handled), 5);
}

Test(conn, refuses_a_body_over_the_cap_before_the_handler, .init = setup, .fini = teardown,
     .timeout = 30)
{
    char got[READ_MAX];
    roundtrip("/big", MAX_BODY + 1, "\r\n\r\n", got, sizeof got);
    cr_assert(strncmp(got, "HTTP/1.1 413", 12) == 0, "%s", got);
    cr_assert_eq(atomic_load(&g_handled), 0);
    /* the control: a body at the cap reaches the handler */
    roundtrip("/fits", MAX_BODY, "/fits", got, sizeof got);
    cr_assert(strncmp(got, "HTTP/1.1 200", 12) == 0, "%s", got);
    cr_assert_eq(atomic_load(&g_handled), 1);
}

Test(conn, a_client_that_leaves_aborts_its_exchange_which_stays_valid, .init = setup,
     .fini = teardown, .timeout = 30)
{
    char req[512], got[READ_MAX];
    size_t n = request(req, sizeof req, HOLD, 3);
    int fd = rpt_connect(g.port);
    cr_assert_geq(fd, 0);
    send_all(fd, req, n);
    cr_assert(wait_for(&g_handled, 1));
    /* gone while its exchange runs: a reset, since a FIN alone may be a half-close by a
     * client that still waits for its answer */
    struct linger lg = {1, 0};
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(fd);
    cr_assert(wait_for(&g_aborted_seen, 1), "the held exchange learnt its client left");
    /* and the loop serves the next client as before */
    roundtrip("/after", 3, "/after", got, sizeof got);
    cr_assert(strncmp(got, "HTTP/1.1 200", 12) == 0, "%s", got);
    cr_assert_eq(atomic_load(&g_handled), 2);
}

Test(conn, a_half_closed_client_still_gets_its_answer, .init = setup, .fini = teardown,
     .timeout = 30)
{
    char req[512], got[READ_MAX];
    size_t n = request(req, sizeof req, HOLD, 3);
    int fd = rpt_connect(g.port);
    cr_assert_geq(fd, 0);
    send_all(fd, req, n);
    cr_assert(wait_for(&g_handled, 1));
    cr_assert_eq(shutdown(fd, SHUT_WR), 0); /* FIN: done sending, still reading */
    atomic_store(&g_release, true);
    read_until(fd, HOLD, 1, got, sizeof got);
    close(fd);
    cr_assert(strncmp(got, "HTTP/1.1 200", 12) == 0, "%s", got);
    cr_assert_eq(atomic_load(&g_aborted_seen), 0);
}
