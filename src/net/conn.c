/* Client connections: TLS (optional) and HTTP/1.1 on one TCP socket, one exchange in
 * flight at a time so pipelined requests are answered in order. The connection memory is
 * freed only when its libuv handles are closed and its exchange (if any) has ended. */
#include "net_int.h"
#include "stream.h"

#include "raproxy/clock.h"
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/snapshot.h"
#include "raproxy/tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Plaintext buffered beyond one full request before reads pause (pipelining slack). */
#define CONN_IN_SLACK 16384u
/* Every exchange's arena: the decoded views, the re-encoded message, log fields. */
#define EXCHANGE_ARENA_MIN  (256u * 1024u)
#define EXCHANGE_ARENA_MULT 6u

static struct rp_metric *m_open, *m_accepted, *m_latency;

static void metrics_init(void)
{
    rp_metrics_help("raproxy_connections_open", RP_METRIC_GAUGE, "Client connections open.");
    rp_metrics_help("raproxy_connections_accepted_total", RP_METRIC_COUNTER,
                    "Client connections accepted.");
    rp_metrics_help("raproxy_request_seconds", RP_METRIC_HISTOGRAM,
                    "Time from a complete request to its answer.");
    rp_metrics_help("raproxy_requests_total", RP_METRIC_COUNTER, "Requests by HTTP status.");
    m_open = rp_metric_get("raproxy_connections_open", RP_METRIC_GAUGE, NULL);
    m_accepted = rp_metric_get("raproxy_connections_accepted_total", RP_METRIC_COUNTER, NULL);
    m_latency = rp_metric_get("raproxy_request_seconds", RP_METRIC_HISTOGRAM, NULL);
}

/* Several loop threads accept at once: the metric pointers are set exactly once. */
static void metrics_once(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, metrics_init);
}

static const struct rp_cfg_http *http_cfg(const struct rp_conn *c)
{
    return &c->loop->snap->cfg->http;
}

static void conn_free_if_done(struct rp_conn *c)
{
    if (c->handles > 0 || c->ex || c->writes > 0)
        return;
    if (c->tls)
        rp_tls_free(c->tls);
    rp_http_server_free(&c->http);
    rp_buf_free(&c->in);
    struct rp_loop *l = c->loop;
    free(c);
    rp_loop_conn_closed(l);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct rp_conn *c = h->data;
    c->handles--;
    conn_free_if_done(c);
}

void rp_conn_close(struct rp_conn *c)
{
    if (c->state == RP_CONN_CLOSING)
        return;
    c->state = RP_CONN_CLOSING;
    if (c->ex)
        c->ex->aborted = true; /* the exchange lives on; its end releases the conn */
    if (c->prev)
        c->prev->next = c->next;
    else
        c->loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->loop->nconns--;
    rp_metric_add(m_open, -1);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_write(uv_write_t *req, int status)
{
    struct rp_conn *c = rp_stream_write_done(req);
    c->writes--;
    if (c->state == RP_CONN_CLOSING) {
        conn_free_if_done(c);
        return;
    }
    if (status < 0) {
        rp_conn_close(c);
        return;
    }
    if (c->writes == 0 && c->close_after_write && !c->ex)
        rp_conn_close(c);
}

static int flush_tls(struct rp_conn *c)
{
    return rp_stream_flush_tls((uv_stream_t *)&c->tcp, c->tls, c, &c->writes, on_write);
}

static int conn_send(struct rp_conn *c, const uint8_t *p, size_t n)
{
    return rp_stream_send((uv_stream_t *)&c->tcp, c->tls, p, n, c, &c->writes, on_write);
}

static void arm(struct rp_conn *c, uint32_t ms);
static void on_timer(uv_timer_t *t);
static void process_input(struct rp_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void tls_progress(struct rp_conn *c);

static void arm(struct rp_conn *c, uint32_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* An HTTP-level refusal straight from the connection (malformed, too large, too slow). */
static void refuse(struct rp_conn *c, int err)
{
    struct rp_buf out;
    rp_buf_init(&out, 0);
    int status = rp_err_http(err);
    const char *msg = rp_err_msg(err);
    if (rp_http_write_response(&out, status, "text/plain", (const uint8_t *)msg, strlen(msg), false,
                               NULL) == RP_OK)
        conn_send(c, rp_buf_head(&out), rp_buf_avail(&out));
    rp_buf_free(&out);
    char lbl[32];
    snprintf(lbl, sizeof lbl, "code=\"%d\"", status);
    rp_metrics_count("raproxy_requests_total", lbl);
    struct rp_logline ll;
    if (rp_log_begin(&ll, RP_LOG_INFO, "refused")) {
        rp_log_str(&ll, "client", c->addr);
        rp_log_int(&ll, "status", status);
        rp_log_str(&ll, "error", rp_err_name(err));
        rp_log_end(&ll);
    }
    c->close_after_write = true;
    uv_timer_stop(&c->timer);
    if (c->writes == 0)
        rp_conn_close(c);
}

static void on_timer(uv_timer_t *t)
{
    struct rp_conn *c = t->data;
    if (c->state == RP_CONN_HANDSHAKE) {
        rp_metrics_count("raproxy_timeouts_total", "phase=\"handshake\"");
        rp_conn_close(c);
    } else if (c->state == RP_CONN_READING) {
        enum rp_http_phase ph = rp_http_server_phase(&c->http);
        if (ph == RP_HTTP_IDLE && rp_buf_avail(&c->in) == 0) {
            rp_conn_close(c); /* idle keep-alive: a quiet close */
        } else {
            rp_metrics_count("raproxy_timeouts_total",
                             ph == RP_HTTP_BODY ? "phase=\"body\"" : "phase=\"headers\"");
            refuse(c, RP_E_HTTP_TIMEOUT);
        }
    }
}

static size_t arena_cap(const struct rp_conn *c)
{
    size_t cap = (size_t)http_cfg(c)->max_body_bytes * EXCHANGE_ARENA_MULT;
    return cap < EXCHANGE_ARENA_MIN ? EXCHANGE_ARENA_MIN : cap;
}

static void start_exchange(struct rp_conn *c, struct rp_http_req *req)
{
    struct rp_exchange *ex = calloc(1, sizeof *ex);
    if (!ex || rp_arena_new(&ex->arena, arena_cap(c)) != RP_OK) {
        free(ex);
        refuse(c, RP_E_NOMEM);
        return;
    }
    ex->loop = c->loop;
    ex->snap = rp_snapshot_ref(c->loop->snap);
    ex->req = req;
    ex->listener = c->listener_index;
    memcpy(ex->client_addr, c->addr, sizeof ex->client_addr);
    ex->client_port = c->port;
    ex->t_start_ns = rp_clock_ns();
    ex->conn = c;
    if (c->tls)
        rp_tls_peer_cert(c->tls, &ex->client_cert);
    c->ex = ex;
    c->state = RP_CONN_EXCHANGE;
    uv_timer_stop(&c->timer);
    if (!req->keep_alive || c->loop->draining)
        c->close_after_write = true;
    if (c->kind == RP_LISTENER_ADMIN)
        rp_admin_handle(ex);
    else if (c->loop->on_exchange)
        c->loop->on_exchange(ex);
    else
        rp_exchange_respond(ex, 503, "text/plain", (const uint8_t *)"no handler\n", 11, NULL);
}

static void log_exchange(const struct rp_exchange *ex, int status, size_t out_len)
{
    struct rp_logline ll;
    if (!rp_log_begin(&ll, RP_LOG_INFO, "exchange"))
        return;
    const struct rp_exchange_log *f = &ex->log;
    rp_log_str(&ll, "client", ex->client_addr);
    rp_log_int(&ll, "port", ex->client_port);
    rp_log_strn(&ll, "path", (const char *)ex->req->path.p, ex->req->path.len);
    rp_log_int(&ll, "status", status);
    rp_log_int(&ll, "bytes_in", (int64_t)ex->req->body.len);
    rp_log_int(&ll, "bytes_out", (int64_t)out_len);
    if (f->domain[0])
        rp_log_str(&ll, "domain", f->domain);
    if (f->body[0])
        rp_log_str(&ll, "body", f->body);
    if (f->txid[0])
        rp_log_str(&ll, "txid", f->txid);
    if (f->serial[0])
        rp_log_str(&ll, "serial", f->serial);
    if (f->result[0])
        rp_log_str(&ll, "result", f->result);
    if (f->failinfo[0])
        rp_log_str(&ll, "failinfo", f->failinfo);
    if (f->upstream_status)
        rp_log_int(&ll, "upstream_status", f->upstream_status);
    if (f->upstream_ns)
        rp_log_dbl(&ll, "upstream_ms", (double)f->upstream_ns / 1e6);
    if (f->verify_ns)
        rp_log_dbl(&ll, "verify_ms", (double)f->verify_ns / 1e6);
    rp_log_dbl(&ll, "duration_ms", (double)(rp_clock_ns() - ex->t_start_ns) / 1e6);
    rp_log_end(&ll);
}

static void exchange_free(struct rp_exchange *ex)
{
    rp_arena_free(&ex->arena);
    rp_snapshot_unref(ex->snap);
    free(ex);
}

int rp_exchange_respond(struct rp_exchange *ex, int status, const char *content_type,
                        const uint8_t *body, size_t len, const char *extra_headers)
{
    struct rp_conn *c = ex->conn;
    bool is_admin = c->kind == RP_LISTENER_ADMIN;
    if (!is_admin) {
        char lbl[32];
        snprintf(lbl, sizeof lbl, "code=\"%d\"", status);
        rp_metrics_count("raproxy_requests_total", lbl);
        rp_metric_observe_ns(m_latency, rp_clock_ns() - ex->t_start_ns);
        log_exchange(ex, status, len);
    }
    if (!ex->aborted) {
        struct rp_buf out;
        rp_buf_init(&out, 0);
        int rc = rp_http_write_response(&out, status, content_type, body, len,
                                        !c->close_after_write, extra_headers);
        if (rc == RP_OK)
            rc = conn_send(c, rp_buf_head(&out), rp_buf_avail(&out));
        rp_buf_free(&out);
        if (rc != RP_OK)
            c->close_after_write = true;
    }
    c->ex = NULL;
    exchange_free(ex);
    if (c->state == RP_CONN_CLOSING) {
        conn_free_if_done(c);
        return RP_OK;
    }
    rp_http_server_next(&c->http);
    c->state = RP_CONN_READING;
    if (c->close_after_write) {
        if (c->writes == 0)
            rp_conn_close(c);
        return RP_OK;
    }
    if (c->peer_eof && rp_buf_avail(&c->in) == 0) {
        rp_conn_close(c);
        return RP_OK;
    }
    arm(c, http_cfg(c)->idle_timeout_ms);
    if (c->read_stopped) {
        c->read_stopped = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    if (c->tls && rp_tls_pending(c->tls))
        tls_progress(c); /* records that arrived while the exchange ran */
    if (c->state == RP_CONN_READING)
        process_input(c);
    if (c->tls && c->state == RP_CONN_READING && rp_buf_avail(&c->in) == 0)
        rp_tls_shrink(c->tls); /* idle keep-alive connections hold only wolfSSL's state */
    return RP_OK;
}

/* Parse buffered plaintext; starts at most one exchange (the next waits for its answer). */
static void process_input(struct rp_conn *c)
{
    enum rp_http_phase before = rp_http_server_phase(&c->http);
    while (c->state == RP_CONN_READING && rp_buf_avail(&c->in) > 0) {
        size_t used = 0;
        struct rp_http_req *req = NULL;
        int rc =
            rp_http_server_feed(&c->http, rp_buf_head(&c->in), rp_buf_avail(&c->in), &used, &req);
        rp_buf_consume(&c->in, used);
        if (rc == RP_E_AGAIN)
            break;
        if (rc != RP_OK) {
            refuse(c, rc);
            return;
        }
        rp_buf_compact(&c->in);
        start_exchange(c, req);
        return;
    }
    rp_buf_compact(&c->in);
    if (c->state != RP_CONN_READING)
        return;
    /* Each phase's timeout runs from the phase's start: a trickling client can't extend it. */
    enum rp_http_phase now = rp_http_server_phase(&c->http);
    if (now != before) {
        if (now == RP_HTTP_HEADERS)
            arm(c, http_cfg(c)->header_timeout_ms);
        else if (now == RP_HTTP_BODY)
            arm(c, http_cfg(c)->body_timeout_ms);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rp_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)c->loop->readbuf, sizeof c->loop->readbuf);
}

static void tls_progress(struct rp_conn *c)
{
    bool was_done = rp_tls_handshake_done(c->tls);
    int rc = rp_tls_process(c->tls, &c->in);
    flush_tls(c);
    if (rc == RP_E_TLS_CLOSED) {
        c->peer_eof = true;
        if (!c->ex)
            rp_conn_close(c);
        return;
    }
    if (rc != RP_OK) {
        rp_conn_close(c);
        return;
    }
    if (!was_done && rp_tls_handshake_done(c->tls)) {
        c->state = RP_CONN_READING;
        arm(c, http_cfg(c)->header_timeout_ms);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct rp_conn *c = s->data;
    if (c->state == RP_CONN_CLOSING)
        return;
    if (nread < 0) {
        c->peer_eof = true;
        uv_read_stop(s);
        if (!c->ex)
            rp_conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t n = (size_t)nread;
    int rc;
    if (c->tls) {
        rc = rp_tls_feed(c->tls, p, n);
        if (rc == RP_OK)
            tls_progress(c);
    } else {
        rc = rp_buf_append(&c->in, p, n);
    }
    if (c->state == RP_CONN_CLOSING)
        return;
    if (rc != RP_OK) {
        refuse(c, RP_E_HTTP_BODY_TOO_LARGE);
        return;
    }
    if (c->state == RP_CONN_EXCHANGE) {
        /* pipelined bytes wait; stop reading once a full request's worth is buffered */
        if (rp_buf_avail(&c->in) > c->in.max / 2) {
            uv_read_stop(s);
            c->read_stopped = true;
        }
        return;
    }
    process_input(c);
}

void rp_conn_accept(struct rp_listener *ls, int fd)
{
    metrics_once();
    struct rp_loop *l = ls->loop;
    struct rp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->loop = l;
    c->listener = ls;
    c->kind = ls->kind;
    c->listener_index = ls->index;
    c->t_accept_ns = rp_clock_ns();
    if (uv_tcp_init(&l->uv, &c->tcp) != 0 || uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        free(c);
        return;
    }
    c->tcp.data = c;
    uv_timer_init(&l->uv, &c->timer);
    c->timer.data = c;
    c->handles = 2;
    uv_tcp_nodelay(&c->tcp, 1);

    struct sockaddr_storage ss;
    int slen = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &slen) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, c->addr, sizeof c->addr);
            c->port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, c->addr, sizeof c->addr);
            c->port = ntohs(a->sin6_port);
        }
    }

    const struct rp_cfg_http *hc = http_cfg(c);
    struct rp_http_limits lim = {hc->max_header_bytes, hc->max_body_bytes};
    rp_http_server_init(&c->http, &lim);
    rp_buf_init(&c->in, (size_t)hc->max_header_bytes + hc->max_body_bytes + CONN_IN_SLACK);

    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->nconns++;
    l->conns_alive++;
    rp_metric_inc(m_accepted);
    rp_metric_add(m_open, 1);

    struct rp_tls_ctx *tctx = NULL;
    if (ls->kind == RP_LISTENER_CMP && l->snap->listener_tls)
        tctx = l->snap->listener_tls[ls->index];
    if (tctx) {
        if (rp_tls_new(&c->tls, tctx) != RP_OK) {
            rp_conn_close(c);
            return;
        }
        c->state = RP_CONN_HANDSHAKE;
        arm(c, hc->handshake_timeout_ms);
    } else {
        c->state = RP_CONN_READING;
        arm(c, hc->header_timeout_ms);
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

void rp_conn_drain(struct rp_conn *c)
{
    if (c->state == RP_CONN_CLOSING)
        return;
    c->close_after_write = true;
    if (c->state == RP_CONN_HANDSHAKE ||
        (c->state == RP_CONN_READING && rp_http_server_phase(&c->http) == RP_HTTP_IDLE &&
         rp_buf_avail(&c->in) == 0))
        rp_conn_close(c);
}
