/* The upstream pool of one loop: keep-alive HTTP/1.1 connections to the CA, plain or TLS.
 *
 * A request is never retried. Until its first byte is handed to the socket it waits in a
 * bounded queue (and fails with UPSTREAM_CONNECT if no connection can be made); after
 * that any failure — closed connection, timeout, garbage — is reported as it is, because
 * the CA may have acted on it. Idle connections are closed well before a typical server
 * keep-alive timeout so that a request is rarely written onto a connection the server is
 * closing. */
#include "raproxy/upstream.h"

#include "raproxy/buf.h"
#include "raproxy/clock.h"
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/http.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/pool.h"
#include "raproxy/tls.h"

#include "raproxy/list.h"

#include "stream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UPSTREAM_IDLE_MS        10000u
#define UPSTREAM_MAX_HEADER     16384u
#define UPSTREAM_MAX_BODY       (4u * 1024u * 1024u)
#define UPSTREAM_PROBE_EVERY_NS (2000000000ull)

enum uc_state { UC_RESOLVING, UC_CONNECTING, UC_HANDSHAKE, UC_IDLE, UC_BUSY, UC_CLOSING };
enum req_state { REQ_QUEUED, REQ_ACTIVE, REQ_DONE };

struct rp_upstream_conn {
    struct net_stream s; /* socket, timer, TLS, response bytes, write accounting */
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    struct rp_upstream *u;
    enum uc_state state;
    struct rp_http_client http;
    struct rp_upstream_req *req;
    bool gai_pending; /* holds the stream until the resolver calls back */
    struct rp_list_node link;
};

struct rp_upstream {
    uv_loop_t *loop;
    struct rp_http_url url;
    char host_header[300];
    struct rp_tls_ctx *tls;
    uint32_t timeout_ms, connect_timeout_ms;
    unsigned max_conns, max_queue;
    bool keep_alive;
    struct rp_list_node conns; /* struct rp_upstream_conn */
    unsigned nconns, nconnecting;
    unsigned conns_alive;      /* connection memory not yet freed: the pool outlives it */
    struct rp_list_node queue; /* requests waiting for a connection, oldest first */
    unsigned qlen;
    bool dispatching, redispatch;
    unsigned active; /* requests accepted and not yet completed (queued + in flight) */
    bool closing;    /* aborting: everything fails with RP_E_SHUTDOWN */
    bool retiring;   /* replaced by a new pool: accepted requests finish, then it goes */
    int live;        /* conns that completed a connection and are not closing */
    uint64_t last_ok_ns, last_fail_ns, last_probe_ns;
};

static struct rp_metric *m_req_seconds;

static void conn_close(struct rp_upstream_conn *uc);
static void conn_ready(struct rp_upstream_conn *uc);
static void dispatch(struct rp_upstream *u);
static void maybe_free_pool(struct rp_upstream *u);

/* ---- request completion --------------------------------------------------------- */

struct done_ctx {
    uint8_t *body; /* copy of the response body, owned until the callback returns */
};

static void on_deadline_closed(uv_handle_t *h)
{
    struct rp_upstream_req *r = h->data;
    struct rp_upstream *u = r->pool;
    uint8_t *copy = (uint8_t *)r->resp.p;
    size_t copy_len = r->resp.len + r->ctype.len + 1;
    r->t_end_ns = rp_clock_ns();
    r->cb(r); /* the caller may free r here */
    rp_pool_put(copy, copy_len);
    u->active--;
    maybe_free_pool(u);
}

static void req_finish(struct rp_upstream_req *r, int err, int status, struct rp_view ctype,
                       struct rp_view body)
{
    if (r->state == REQ_DONE)
        return;
    r->state = REQ_DONE;
    r->err = err;
    r->status = status;
    r->ctype = RP_VIEW_NULL;
    r->resp = RP_VIEW_NULL;
    if (err == RP_OK) {
        /* ctype and body are copied into one block: the connection moves on meanwhile */
        uint8_t *copy = rp_pool_get(body.len + ctype.len + 1);
        if (!copy) {
            r->err = RP_E_NOMEM;
        } else {
            if (body.len)
                memcpy(copy, body.p, body.len);
            if (ctype.len)
                memcpy(copy + body.len, ctype.p, ctype.len);
            r->resp = rp_view_make(copy, body.len);
            r->ctype = rp_view_make(copy + body.len, ctype.len);
        }
    }
    char lbl[48];
    snprintf(lbl, sizeof lbl, "result=\"%s\"", r->err == RP_OK ? "ok" : rp_err_name(r->err));
    rp_metrics_count("raproxy_upstream_requests_total", lbl);
    rp_metric_observe_ns(m_req_seconds, rp_clock_ns() - r->t_start_ns);
    uv_timer_stop(&r->deadline);
    /* the callback runs once the timer handle is closed, so the caller may free r in it */
    uv_close((uv_handle_t *)&r->deadline, on_deadline_closed);
}

static void req_fail(struct rp_upstream_req *r, int err)
{
    req_finish(r, err, 0, RP_VIEW_NULL, RP_VIEW_NULL);
}

static void queue_remove(struct rp_upstream *u, struct rp_upstream_req *r)
{
    if (!rp_list_linked(&r->link))
        return;
    rp_list_unlink(&r->link);
    u->qlen--;
}

static struct rp_upstream_req *queue_pop(struct rp_upstream *u)
{
    struct rp_list_node *n = rp_list_shift(&u->queue);
    if (!n)
        return NULL;
    u->qlen--;
    return container_of(n, struct rp_upstream_req, link);
}

static void on_deadline(uv_timer_t *t)
{
    struct rp_upstream_req *r = t->data;
    struct rp_upstream *u = r->pool;
    if (r->state == REQ_QUEUED) {
        queue_remove(u, r);
        req_fail(r, RP_E_UPSTREAM_TIMEOUT);
        return;
    }
    struct rp_upstream_conn *uc = r->uc;
    req_fail(r, RP_E_UPSTREAM_TIMEOUT);
    if (uc) {
        uc->req = NULL; /* a late answer must not be read as the next request's */
        conn_close(uc);
    }
}

/* ---- connections ---------------------------------------------------------------- */

static struct rp_upstream_conn *uc_of(struct net_stream *s)
{
    return container_of(s, struct rp_upstream_conn, s);
}

static void conn_close(struct rp_upstream_conn *uc)
{
    if (uc->state == UC_CLOSING)
        return;
    struct rp_upstream *u = uc->u;
    bool was_live = uc->state == UC_IDLE || uc->state == UC_BUSY;
    uc->state = UC_CLOSING;
    if (was_live)
        u->live--;
    else
        u->nconnecting--;
    rp_list_unlink(&uc->link);
    u->nconns--;
    if (uc->req) {
        struct rp_upstream_req *r = uc->req;
        uc->req = NULL;
        req_fail(r, RP_E_UPSTREAM_CLOSED);
    }
    if (uc->gai_pending)
        uv_cancel((uv_req_t *)&uc->gai);
    net_stream_close(&uc->s);
    dispatch(u);
}

/* A connection attempt failed: requests that never left the queue fail, unless another
 * connection can still take them. */
static void connect_failed(struct rp_upstream_conn *uc, const char *why)
{
    struct rp_upstream *u = uc->u;
    u->last_fail_ns = rp_clock_ns();
    rp_log_warn("upstream", "cannot connect to %s:%u: %s", u->url.host, u->url.port, why);
    rp_metrics_count("raproxy_upstream_connect_errors_total", NULL);
    /* With no live connection the CA is unreachable: fail the queue before closing, since
     * closing re-dispatches and every queued request would open another doomed connect,
     * in a tight loop until the deadlines (seen with two requests queued). */
    if (u->live == 0) {
        struct rp_upstream_req *r;
        while ((r = queue_pop(u)) != NULL)
            req_fail(r, RP_E_UPSTREAM_CONNECT);
    }
    conn_close(uc);
}

static void on_uc_timer(struct net_stream *s)
{
    struct rp_upstream_conn *uc = uc_of(s);
    if (uc->state == UC_IDLE)
        conn_close(uc);
    else if (uc->state != UC_BUSY && uc->state != UC_CLOSING)
        connect_failed(uc, "connect timeout");
}

static void start_request(struct rp_upstream_conn *uc, struct rp_upstream_req *r)
{
    struct rp_upstream *u = uc->u;
    struct rp_buf out;
    rp_buf_init(&out, 0);
    uc->state = UC_BUSY;
    uc->req = r;
    r->uc = uc;
    r->state = REQ_ACTIVE;
    net_stream_timer_stop(&uc->s);
    int rc = rp_http_write_request(&out, "POST", u->host_header, r->path ? r->path : u->url.path,
                                   r->content_type ? r->content_type : "application/pkixcmp",
                                   r->body, r->len, u->keep_alive);
    if (rc == RP_OK) {
        r->sent = true; /* from here on the CA may see it: no retry */
        rc = net_stream_write(&uc->s, rp_buf_head(&out), rp_buf_avail(&out));
    }
    rp_buf_free(&out);
    if (rc != RP_OK)
        conn_close(uc); /* fails r with UPSTREAM_CLOSED */
}

static void conn_ready(struct rp_upstream_conn *uc)
{
    struct rp_upstream *u = uc->u;
    struct rp_upstream_req *r = queue_pop(u);
    if (r) {
        start_request(uc, r);
        return;
    }
    uc->state = UC_IDLE;
    if (u->closing || u->retiring) {
        conn_close(uc);
        return;
    }
    net_stream_timer(&uc->s, UPSTREAM_IDLE_MS);
}

static void on_response(struct rp_upstream_conn *uc, struct rp_http_resp *resp)
{
    struct rp_upstream_req *r = uc->req;
    bool keep = resp->keep_alive && uc->u->keep_alive;
    uc->req = NULL;
    if (r)
        req_finish(r, RP_OK, resp->status, resp->content_type, resp->body);
    rp_http_client_next(&uc->http);
    if (!r || !keep || rp_buf_avail(&uc->s.in) > 0) {
        /* unsolicited or extra bytes: this connection can't be trusted any more */
        conn_close(uc);
        return;
    }
    conn_ready(uc);
}

static void process_in(struct rp_upstream_conn *uc)
{
    struct rp_buf *in = &uc->s.in;
    while (uc->state == UC_BUSY && rp_buf_avail(in) > 0) {
        size_t used = 0;
        struct rp_http_resp *resp = NULL;
        int rc = rp_http_client_feed(&uc->http, rp_buf_head(in), rp_buf_avail(in), &used, &resp);
        rp_buf_consume(in, used);
        if (rc == RP_E_AGAIN)
            break;
        if (rc != RP_OK) {
            if (uc->req) {
                struct rp_upstream_req *r = uc->req;
                uc->req = NULL;
                req_fail(r, RP_E_UPSTREAM_PROTOCOL);
            }
            conn_close(uc);
            return;
        }
        on_response(uc, resp);
    }
    if (uc->state == UC_IDLE && rp_buf_avail(in) > 0)
        conn_close(uc);
    else
        rp_buf_compact(in);
}

static void on_uc_eof(struct net_stream *s, int err)
{
    struct rp_upstream_conn *uc = uc_of(s);
    if (uc->state == UC_BUSY && uc->req && err == RP_OK) {
        struct rp_http_resp *resp = NULL;
        if (rp_http_client_eof(&uc->http, &resp) == RP_OK && resp) {
            struct rp_upstream_req *r = uc->req;
            uc->req = NULL;
            req_finish(r, RP_OK, resp->status, resp->content_type, resp->body);
        }
    }
    if (uc->state == UC_HANDSHAKE)
        connect_failed(uc, err == RP_E_TLS_HANDSHAKE ? "TLS handshake failed"
                                                     : "closed during the TLS handshake");
    else if (uc->state == UC_CONNECTING)
        connect_failed(uc, "closed during connect");
    else
        conn_close(uc);
}

/* Connected (and, for TLS, handshaken): counts as live and takes queued work. */
static void conn_up(struct rp_upstream_conn *uc)
{
    struct rp_upstream *u = uc->u;
    u->nconnecting--;
    u->live++;
    u->last_ok_ns = rp_clock_ns();
    conn_ready(uc);
}

static void on_uc_open(struct net_stream *s)
{
    struct rp_upstream_conn *uc = uc_of(s);
    if (uc->state == UC_HANDSHAKE)
        conn_up(uc);
}

static void on_uc_read(struct net_stream *s)
{
    struct rp_upstream_conn *uc = uc_of(s);
    if (uc->state == UC_BUSY || uc->state == UC_IDLE)
        process_in(uc);
}

static void on_uc_free(struct net_stream *s)
{
    struct rp_upstream_conn *uc = uc_of(s);
    struct rp_upstream *u = uc->u;
    rp_http_client_free(&uc->http);
    free(uc);
    u->conns_alive--;
    maybe_free_pool(u);
}

static const struct net_stream_ops uc_ops = {
    .on_read = on_uc_read,
    .on_open = on_uc_open,
    .on_eof = on_uc_eof,
    .on_timer = on_uc_timer,
    .on_free = on_uc_free,
};

static void on_connected(uv_connect_t *req, int status)
{
    struct rp_upstream_conn *uc = req->data;
    if (uc->state == UC_CLOSING)
        return;
    if (status < 0) {
        connect_failed(uc, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&uc->s.tcp, 1);
    if (uc->s.tls)
        uc->state = UC_HANDSHAKE;
    if (net_stream_start(&uc->s) != RP_OK) { /* a TLS client sends its ClientHello */
        connect_failed(uc, "cannot start TLS");
        return;
    }
    if (!uc->s.tls)
        conn_up(uc);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct rp_upstream_conn *uc = req->data;
    uc->gai_pending = false;
    bool closing = uc->state == UC_CLOSING;
    net_stream_release(&uc->s); /* frees uc when it was closed while resolving */
    if (closing) {
        uv_freeaddrinfo(res);
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        connect_failed(uc, status < 0 ? uv_strerror(status) : "no address");
        return;
    }
    uc->state = UC_CONNECTING;
    uc->creq.data = uc;
    int rc = uv_tcp_connect(&uc->creq, &uc->s.tcp, res->ai_addr, on_connected);
    uv_freeaddrinfo(res);
    if (rc != 0)
        connect_failed(uc, uv_strerror(rc));
}

static int conn_open(struct rp_upstream *u)
{
    struct rp_upstream_conn *uc = calloc(1, sizeof *uc);
    if (!uc)
        return RP_E_NOMEM;
    struct rp_tls *tls = NULL;
    if (u->tls && rp_tls_new(&tls, u->tls) != RP_OK) {
        free(uc);
        return RP_E_TLS_SETUP;
    }
    uc->u = u;
    uc->state = UC_RESOLVING;
    u->conns_alive++;
    /* the request is bounded by its sender: no limit on what waits for the CA to read */
    net_stream_init(&uc->s, u->loop, &uc_ops, UPSTREAM_MAX_HEADER + UPSTREAM_MAX_BODY, SIZE_MAX);
    net_stream_set_tls(&uc->s, tls);
    struct rp_http_limits lim = {UPSTREAM_MAX_HEADER, UPSTREAM_MAX_BODY};
    rp_http_client_init(&uc->http, &lim);
    rp_list_push(&u->conns, &uc->link);
    u->nconns++;
    u->nconnecting++;
    net_stream_timer(&uc->s, u->connect_timeout_ms);
    char port[8];
    snprintf(port, sizeof port, "%u", u->url.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    uc->gai.data = uc;
    uc->gai_pending = true;
    net_stream_hold(&uc->s);
    int rc = uv_getaddrinfo(u->loop, &uc->gai, on_resolved, u->url.host, port, &hints);
    if (rc != 0) {
        uc->gai_pending = false;
        net_stream_release(&uc->s);
        connect_failed(uc, uv_strerror(rc));
    }
    return RP_OK;
}

/* Give queued requests to idle connections, open new ones up to the cap. */
static void dispatch(struct rp_upstream *u)
{
    if (u->closing)
        return;
    if (u->dispatching) { /* a connection closed under us: go round once more */
        u->redispatch = true;
        return;
    }
    u->dispatching = true;
    do {
        u->redispatch = false;
        struct rp_list_node *n = u->conns.next;
        while (n != &u->conns && !rp_list_empty(&u->queue) && !u->redispatch) {
            struct rp_list_node *next = n->next;
            struct rp_upstream_conn *uc = container_of(n, struct rp_upstream_conn, link);
            if (uc->state == UC_IDLE)
                start_request(uc, queue_pop(u)); /* a failure closes uc: start over */
            n = next;
        }
        while (!u->redispatch && u->qlen > u->nconnecting && u->nconns < u->max_conns)
            if (conn_open(u) != RP_OK)
                break;
    } while (u->redispatch && !u->closing);
    u->dispatching = false;
}

/* ---- pool ----------------------------------------------------------------------- */

static void metrics_init(void)
{
    rp_metrics_help("raproxy_upstream_seconds", RP_METRIC_HISTOGRAM,
                    "Time from accepting a request for the CA to its answer.");
    rp_metrics_help("raproxy_upstream_requests_total", RP_METRIC_COUNTER,
                    "Requests to the CA by result.");
    m_req_seconds = rp_metric_get("raproxy_upstream_seconds", RP_METRIC_HISTOGRAM, NULL);
}

int rp_upstream_new(struct rp_upstream **out, uv_loop_t *loop, const struct rp_cfg_upstream *cfg,
                    struct rp_tls_ctx *tls)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, metrics_init); /* pools are created on several loop threads */
    struct rp_upstream *u = calloc(1, sizeof *u);
    if (!u)
        return RP_E_NOMEM;
    if (!cfg->url || rp_http_url_parse(cfg->url, &u->url) != RP_OK) {
        free(u);
        return RP_E_CONFIG;
    }
    if (u->url.tls && !tls) {
        rp_log_error("upstream", "https upstream without a TLS context");
        free(u);
        return RP_E_CONFIG;
    }
    u->loop = loop;
    rp_list_init(&u->conns);
    rp_list_init(&u->queue);
    bool default_port = u->url.port == (u->url.tls ? 443 : 80);
    bool v6 = strchr(u->url.host, ':') != NULL;
    if (default_port)
        snprintf(u->host_header, sizeof u->host_header, v6 ? "[%s]" : "%s", u->url.host);
    else
        snprintf(u->host_header, sizeof u->host_header, v6 ? "[%s]:%u" : "%s:%u", u->url.host,
                 u->url.port);
    u->tls = u->url.tls ? tls : NULL;
    if (u->tls)
        rp_tls_ctx_ref(u->tls);
    u->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : RP_DEF_UPSTREAM_TIMEOUT;
    u->connect_timeout_ms =
        cfg->connect_timeout_ms ? cfg->connect_timeout_ms : RP_DEF_UPSTREAM_CONNECT;
    u->max_conns = cfg->max_connections ? cfg->max_connections : RP_DEF_UPSTREAM_MAX_CONNS;
    u->max_queue = cfg->max_queue ? cfg->max_queue : RP_DEF_UPSTREAM_QUEUE;
    u->keep_alive = cfg->keep_alive;
    *out = u;
    return RP_OK;
}

int rp_upstream_send(struct rp_upstream *u, struct rp_upstream_req *r)
{
    if (u->closing || u->retiring)
        return RP_E_SHUTDOWN;
    if (u->qlen >= u->max_queue)
        return RP_E_UPSTREAM_QUEUE_FULL;
    r->pool = u;
    r->uc = NULL;
    r->link = (struct rp_list_node){NULL, NULL};
    r->err = RP_OK;
    r->status = 0;
    r->sent = false;
    r->resp = r->ctype = RP_VIEW_NULL;
    r->state = REQ_QUEUED;
    r->t_start_ns = rp_clock_ns();
    uv_timer_init(u->loop, &r->deadline);
    r->deadline.data = r;
    uv_timer_start(&r->deadline, on_deadline, u->timeout_ms, 0);
    rp_list_push(&u->queue, &r->link);
    u->qlen++;
    u->active++;
    dispatch(u);
    return RP_OK;
}

bool rp_upstream_reachable(struct rp_upstream *u)
{
    if (u->live > 0)
        return true;
    uint64_t now = rp_clock_ns();
    if (!u->closing && u->nconnecting == 0 && now - u->last_probe_ns > UPSTREAM_PROBE_EVERY_NS &&
        u->nconns < u->max_conns) {
        u->last_probe_ns = now;
        conn_open(u); /* a warm connection for the next request, and an answer for readyz */
    }
    return u->last_ok_ns != 0 && u->last_ok_ns >= u->last_fail_ns;
}

unsigned rp_upstream_pending(const struct rp_upstream *u)
{
    return u->active;
}

static void maybe_free_pool(struct rp_upstream *u)
{
    if (!(u->closing || u->retiring) || u->active > 0 || u->conns_alive > 0)
        return;
    if (u->tls)
        rp_tls_ctx_unref(u->tls);
    free(u);
}

void rp_upstream_close(struct rp_upstream *u)
{
    u->closing = true;
    struct rp_upstream_req *r;
    while ((r = queue_pop(u)) != NULL)
        req_fail(r, RP_E_SHUTDOWN);
    /* In-flight requests are failed too: close is called once nothing waits for them
     * (drain) or when the grace period is over. */
    struct rp_list_node *n, *nx;
    for (RP_LIST_EACH(n, nx, &u->conns))
        conn_close(container_of(n, struct rp_upstream_conn, link));
    maybe_free_pool(u);
}

void rp_upstream_retire(struct rp_upstream *u)
{
    u->retiring = true;
    struct rp_list_node *n, *nx;
    for (RP_LIST_EACH(n, nx, &u->conns)) {
        struct rp_upstream_conn *uc = container_of(n, struct rp_upstream_conn, link);
        if (uc->state == UC_IDLE)
            conn_close(uc);
    }
    maybe_free_pool(u);
}
