/* The upstream pool (src/net/upstream.c) against a CA played by a libuv TCP server on the
 * same loop: answers relayed, connections kept alive, a request the CA may have seen never
 * sent twice, deadlines, an unreachable CA, the bounded queue and shutdown. */
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/upstream.h"
#include "support.h"
#include "uvrun.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS      5000
#define SHORT_MS     300
#define PEER_BUF_MAX 65536
#define ANSWER_BODY  "hello"
#define PEER_CONNS   16

TestSuite(upstream);

/* ---- the CA: one listener, its connections, what it saw -------------------------------- */

enum peer_mode { PEER_ANSWER, PEER_CLOSE, PEER_SILENT };

struct peer {
    uv_tcp_t srv;
    enum peer_mode mode;
    int accepts;
    int requests;
    struct peer_conn *conns[PEER_CONNS]; /* open ones */
    char first_request[1024];            /* the head of the first request */
};

struct peer_conn {
    uv_tcp_t tcp;
    struct peer *peer;
    int slot;
    char buf[PEER_BUF_MAX];
    size_t len;
};

static void on_conn_closed(uv_handle_t *h)
{
    struct peer_conn *c = h->data;
    c->peer->conns[c->slot] = NULL;
    free(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    struct peer_conn *c = h->data;
    b->base = c->buf + c->len;
    b->len = sizeof c->buf - c->len;
}

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void answer(struct peer_conn *c)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/pkixcmp\r\n"
                               "Content-Length: 5\r\n\r\n" ANSWER_BODY;
    uv_write_t *w = malloc(sizeof *w);
    cr_assert_not_null(w);
    uv_buf_t b = uv_buf_init((char *)resp, sizeof resp - 1);
    cr_assert_eq(uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written), 0);
}

/* A whole request (head and Content-Length body) at the start of c->buf: its length, or 0. */
static size_t request_len(const struct peer_conn *c)
{
    const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - c->buf) + 4, body = 0;
    const char *cl = memmem(c->buf, head, "Content-Length: ", 16);
    if (cl)
        body = strtoul(cl + 16, NULL, 10);
    return c->len >= head + body ? head + body : 0;
}

static void on_peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct peer_conn *c = s->data;
    if (n < 0) {
        uv_close((uv_handle_t *)s, on_conn_closed);
        return;
    }
    c->len += (size_t)n;
    size_t len;
    while ((len = request_len(c)) > 0) {
        struct peer *p = c->peer;
        if (p->requests++ == 0)
            snprintf(p->first_request, sizeof p->first_request, "%.*s", (int)len, c->buf);
        memmove(c->buf, c->buf + len, c->len - len);
        c->len -= len;
        if (p->mode == PEER_ANSWER) {
            answer(c);
        } else if (p->mode == PEER_CLOSE) {
            uv_close((uv_handle_t *)s, on_conn_closed);
            return;
        }
    }
}

static void on_peer_conn(uv_stream_t *srv, int status)
{
    cr_assert_eq(status, 0);
    struct peer *p = srv->data;
    struct peer_conn *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    c->peer = p;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    cr_assert_eq(uv_accept(srv, (uv_stream_t *)&c->tcp), 0);
    cr_assert_lt(p->accepts, PEER_CONNS);
    c->slot = p->accepts++;
    p->conns[c->slot] = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_peer_read);
}

static void peer_start(struct peer *p, uv_loop_t *loop, int port, enum peer_mode mode)
{
    memset(p, 0, sizeof *p);
    p->mode = mode;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    uv_tcp_init(loop, &p->srv);
    p->srv.data = p;
    cr_assert_eq(uv_tcp_bind(&p->srv, (const struct sockaddr *)&a, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&p->srv, 16, on_peer_conn), 0);
}

static void peer_stop(struct peer *p)
{
    uv_close((uv_handle_t *)&p->srv, NULL);
    for (int i = 0; i < PEER_CONNS; i++)
        if (p->conns[i] && !uv_is_closing((uv_handle_t *)&p->conns[i]->tcp))
            uv_close((uv_handle_t *)&p->conns[i]->tcp, on_conn_closed);
}

/* ---- the pool under test ----------------------------------------------------------------- */

struct fx {
    uv_loop_t loop;
    struct peer peer;
    struct rp_cfg_upstream cfg;
    char url[128];
    struct rp_upstream *u;
    int port;
    bool with_peer;
};

struct call {
    struct rp_upstream_req req;
    int calls;
    int err, status;
    bool sent;
    char body[64];
    char ctype[64];
};

static void on_answer(struct rp_upstream_req *r)
{
    struct call *c = r->arg;
    c->calls++;
    c->err = r->err;
    c->status = r->status;
    c->sent = r->sent;
    snprintf(c->body, sizeof c->body, "%.*s", (int)r->resp.len, (const char *)r->resp.p);
    snprintf(c->ctype, sizeof c->ctype, "%.*s", (int)r->ctype.len, (const char *)r->ctype.p);
}

static bool answered(void *arg)
{
    return ((struct call *)arg)->calls > 0;
}

static void fx_up(struct fx *f, bool with_peer, enum peer_mode mode)
{
    memset(f, 0, sizeof *f);
    cr_assert_eq(uv_loop_init(&f->loop), 0);
    f->port = rpt_free_port();
    f->with_peer = with_peer;
    if (with_peer)
        peer_start(&f->peer, &f->loop, f->port, mode);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/pkix/", f->port);
    f->cfg.url = f->url;
    f->cfg.keep_alive = true;
    f->cfg.connect_timeout_ms = 1000;
}

static void fx_pool(struct fx *f)
{
    cr_assert_eq(rp_upstream_new(&f->u, &f->loop, &f->cfg, NULL), RP_OK);
}

static void send_req(struct fx *f, struct call *c)
{
    memset(c, 0, sizeof *c);
    c->req.content_type = "application/pkixcmp";
    c->req.body = (const uint8_t *)"request";
    c->req.len = 7;
    c->req.cb = on_answer;
    c->req.arg = c;
    cr_assert_eq(rp_upstream_send(f->u, &c->req), RP_OK);
}

/* Closes the pool and the CA, runs every close callback, checks nothing was left open. */
static void fx_down(struct fx *f)
{
    if (f->u)
        rp_upstream_close(f->u);
    if (f->with_peer)
        peer_stop(&f->peer);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&f->loop), 0, "a libuv handle was left open");
}

Test(upstream, relays_the_answer_and_keeps_the_connection, .timeout = 30)
{
    struct fx f;
    fx_up(&f, true, PEER_ANSWER);
    fx_pool(&f);
    struct call a, b;
    send_req(&f, &a);
    cr_assert(rpt_run_until(&f.loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_OK, "%s", rp_err_name(a.err));
    cr_assert_eq(a.status, 200);
    cr_assert_str_eq(a.body, ANSWER_BODY);
    cr_assert_str_eq(a.ctype, "application/pkixcmp");
    cr_assert(strstr(f.peer.first_request, "POST /pkix/ HTTP/1.1\r\n") == f.peer.first_request,
              "%s", f.peer.first_request);
    cr_assert(strstr(f.peer.first_request, "\r\n\r\nrequest"), "%s", f.peer.first_request);
    send_req(&f, &b);
    cr_assert(rpt_run_until(&f.loop, answered, &b, WAIT_MS));
    cr_assert_eq(b.err, RP_OK);
    cr_assert_eq(f.peer.requests, 2);
    cr_assert_eq(f.peer.accepts, 1, "the second request reused the connection");
    cr_assert_eq(rp_upstream_pending(f.u), 0);
    fx_down(&f);
}

Test(upstream, never_sends_twice_what_the_ca_may_have_seen, .timeout = 30)
{
    struct fx f;
    fx_up(&f, true, PEER_CLOSE);
    fx_pool(&f);
    struct call a;
    send_req(&f, &a);
    cr_assert(rpt_run_until(&f.loop, answered, &a, WAIT_MS));
    cr_assert_neq(a.err, RP_OK);
    cr_assert(a.sent, "the request was written");
    cr_assert_eq(f.peer.requests, 1, "and not retried");
    cr_assert_eq(a.calls, 1);
    fx_down(&f);
    cr_assert_eq(f.peer.requests, 1);
}

Test(upstream, a_silent_ca_meets_the_deadline, .timeout = 30)
{
    struct fx f;
    fx_up(&f, true, PEER_SILENT);
    f.cfg.timeout_ms = SHORT_MS;
    fx_pool(&f);
    struct call a;
    send_req(&f, &a);
    cr_assert(rpt_run_until(&f.loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_E_UPSTREAM_TIMEOUT, "%s", rp_err_name(a.err));
    cr_assert(a.sent);
    cr_assert_eq(f.peer.requests, 1);
    fx_down(&f);
}

Test(upstream, an_unreachable_ca_fails_before_anything_is_sent, .timeout = 30)
{
    struct fx f;
    fx_up(&f, false, PEER_ANSWER); /* nothing listens on the port */
    fx_pool(&f);
    struct call a;
    send_req(&f, &a);
    cr_assert(rpt_run_until(&f.loop, answered, &a, WAIT_MS));
    cr_assert_eq(a.err, RP_E_UPSTREAM_CONNECT, "%s", rp_err_name(a.err));
    cr_assert_not(a.sent, "a request that was never written may be answered with a retry");
    cr_assert_not(rp_upstream_reachable(f.u));
    fx_down(&f);
}

static bool peer_got_one(void *arg)
{
    return ((struct peer *)arg)->requests > 0;
}

Test(upstream, bounds_the_queue_and_fails_it_at_close, .timeout = 30)
{
    struct fx f;
    fx_up(&f, true, PEER_SILENT);
    f.cfg.max_connections = 1;
    f.cfg.max_queue = 1;
    fx_pool(&f);
    struct call a, b, c;
    send_req(&f, &a); /* waits for the connection */
    memset(&b, 0, sizeof b);
    b.req.body = (const uint8_t *)"x";
    b.req.len = 1;
    b.req.cb = on_answer;
    b.req.arg = &b;
    cr_assert_eq(rp_upstream_send(f.u, &b.req), RP_E_UPSTREAM_QUEUE_FULL);
    cr_assert(rpt_run_until(&f.loop, peer_got_one, &f.peer, WAIT_MS));
    send_req(&f, &c); /* the one connection is busy with a: c waits */
    cr_assert_eq(rp_upstream_pending(f.u), 2);
    rp_upstream_close(f.u);
    f.u = NULL;
    uv_run(&f.loop, UV_RUN_NOWAIT);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(c.calls, 1);
    /* in flight: closed under it (the CA may have seen it); queued: never sent */
    cr_assert_eq(a.err, RP_E_UPSTREAM_CLOSED, "%s", rp_err_name(a.err));
    cr_assert_eq(c.err, RP_E_SHUTDOWN, "%s", rp_err_name(c.err));
    cr_assert(a.sent);
    cr_assert_not(c.sent);
    cr_assert_eq(b.calls, 0, "a refused request gets no callback");
    fx_down(&f);
    cr_assert_eq(f.peer.requests, 1);
}
