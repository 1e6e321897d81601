/* Device (and admin) connections: HTTP/1.1 over a stream (TLS optional), one exchange in
 * flight at a time so pipelined requests are answered strictly in order, each once.
 *
 * Answering never re-enters the parser: rp_exchange_respond only queues the answer. The
 * next pipelined request is started by the resume callback, which runs on the loop's next
 * turn when the unsent output is within http.max_unsent_bytes, or from the stream's
 * write-completion callback once the peer has read enough. While an exchange runs, or the
 * peer does not read, reading stops after a little pipelined input: a client cannot make
 * the proxy buffer without bound in either direction. */
#include "net_int.h"

#include "raproxy/clock.h"
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/pool.h"
#include "raproxy/snapshot.h"
#include "raproxy/tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Plaintext buffered beyond one full request (a pipelined request line, a TLS record). */
#define CONN_IN_SLACK 16384u
/* While an exchange runs, pipelined input read ahead before reading pauses. */
#define CONN_PIPELINE_AHEAD 4096u
/* How long the last answer (a refusal, Connection: close) may take to reach the peer. */
#define CONN_LAST_WRITE_MS 5000u
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
    rp_metrics_help("raproxy_timeouts_total", RP_METRIC_COUNTER,
                    "Client connections timed out, by phase.");
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

static struct rp_conn *conn_of(struct net_stream *s)
{
    return container_of(s, struct rp_conn, s);
}

/* The TLS handshake is over (done or abandoned): one more may start. */
static void handshake_over(struct rp_conn *c)
{
    if (!c->handshaking)
        return;
    c->handshaking = false;
    c->loop->handshakes--;
    if (c->loop->handshakes + 1 == c->loop->max_handshakes)
        net_listeners_update(c->loop);
}

/* Off the loop's books: no longer counted against the caps, nor drained. */
static void conn_detach(struct rp_conn *c)
{
    if (!rp_list_linked(&c->link))
        return;
    rp_list_unlink(&c->link);
    net_loop_defer_cancel(&c->resume);
    handshake_over(c);
    net_ipcap_release(c->ipcap);
    c->ipcap = NULL;
    if (c->device) {
        c->loop->nconns--;
        rp_metric_add(m_open, -1);
        net_listeners_update(c->loop);
    }
}

void net_conn_close(struct rp_conn *c)
{
    if (c->state == RP_CONN_CLOSED)
        return;
    c->state = RP_CONN_CLOSED;
    if (c->ex)
        c->ex->aborted = true; /* the exchange lives on; its end releases the stream */
    conn_detach(c);
    net_stream_close(&c->s);
}

/* The last answer is queued: send it, then close. */
static void conn_finish(struct rp_conn *c)
{
    c->state = RP_CONN_LAST;
    net_loop_defer_cancel(&c->resume);
    net_stream_close_after_flush(&c->s, CONN_LAST_WRITE_MS);
}

/* Read while a request is wanted; while one is being answered only a little ahead, and
 * nothing while the peer leaves more than max_unsent_bytes of answers unread. */
static void update_reading(struct rp_conn *c)
{
    bool want = false;
    switch (c->state) {
    case RP_CONN_HANDSHAKE:
    case RP_CONN_READING:
        want = true;
        break;
    case RP_CONN_EXCHANGE:
    case RP_CONN_ANSWERED:
        want = rp_buf_avail(&c->s.in) < CONN_PIPELINE_AHEAD;
        break;
    default:
        break;
    }
    if (net_stream_unsent(&c->s) > c->s.max_unsent)
        want = false;
    net_stream_read_pause(&c->s, !want);
}

/* An HTTP-level refusal straight from the connection (malformed, too large, too slow):
 * the last thing this connection says. */
static void refuse(struct rp_conn *c, int err)
{
    struct rp_buf out;
    rp_buf_init(&out, 0);
    int status = rp_err_http(err);
    const char *msg = rp_err_msg(err);
    if (rp_http_write_response(&out, status, "text/plain", (const uint8_t *)msg, strlen(msg), false,
                               NULL) == RP_OK)
        (void)net_stream_write(&c->s, rp_buf_head(&out), rp_buf_avail(&out));
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
    conn_finish(c);
}

static size_t arena_cap(const struct rp_conn *c)
{
    size_t cap = (size_t)http_cfg(c)->max_body_bytes * EXCHANGE_ARENA_MULT;
    return cap < EXCHANGE_ARENA_MIN ? EXCHANGE_ARENA_MIN : cap;
}

static void start_exchange(struct rp_conn *c, struct rp_http_req *req)
{
    struct rp_exchange *ex = rp_pool_get(sizeof *ex); /* per request: the loop's pool */
    if (ex)
        memset(ex, 0, sizeof *ex);
    if (!ex || rp_arena_new(&ex->arena, arena_cap(c)) != RP_OK) {
        rp_pool_put(ex, sizeof *ex);
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
    if (c->s.tls)
        rp_tls_peer_cert(c->s.tls, &ex->client_cert);
    c->ex = ex;
    c->state = RP_CONN_EXCHANGE;
    net_stream_hold(&c->s); /* the memory stays until the exchange ends */
    net_stream_timer_stop(&c->s);
    if (!req->keep_alive || c->loop->draining)
        c->close_after_write = true;
    update_reading(c);
    c->handler(ex); /* may answer before it returns: respond only queues */
}

/* Parse buffered plaintext; starts at most one exchange. */
static void process_input(struct rp_conn *c)
{
    enum rp_http_phase before = rp_http_server_phase(&c->http);
    size_t used = 0;
    struct rp_http_req *req = NULL;
    int rc =
        rp_http_server_feed(&c->http, rp_buf_head(&c->s.in), rp_buf_avail(&c->s.in), &used, &req);
    rp_buf_consume(&c->s.in, used);
    rp_buf_compact(&c->s.in);
    if (rc == RP_OK) {
        start_exchange(c, req);
        return;
    }
    if (rc != RP_E_AGAIN) {
        refuse(c, rc);
        return;
    }
    if (c->peer_eof) { /* half a request and nothing more to come */
        net_conn_close(c);
        return;
    }
    net_stream_shrink(&c->s); /* all of it is in the parser: a slow client holds no buffer */
    /* Each phase's timeout runs from the phase's start: a trickling client can't extend it. */
    enum rp_http_phase now = rp_http_server_phase(&c->http);
    if (now != before) {
        if (now == RP_HTTP_HEADERS)
            net_stream_timer(&c->s, http_cfg(c)->header_timeout_ms);
        else if (now == RP_HTTP_BODY)
            net_stream_timer(&c->s, http_cfg(c)->body_timeout_ms);
    }
    update_reading(c);
}

/* Between two requests: the previous answer is out (or within the bound), the next one may
 * start. Runs from the loop's deferred queue or the write-completion callback. */
static void on_resume(struct rp_defer *d)
{
    struct rp_conn *c = container_of(d, struct rp_conn, resume);
    if (c->state != RP_CONN_ANSWERED)
        return;
    rp_http_server_next(&c->http);
    c->state = RP_CONN_READING;
    if (c->loop->draining) {
        conn_finish(c);
        return;
    }
    int rc = net_stream_pump(&c->s); /* records that arrived while the exchange ran */
    if (rc == RP_E_TLS_CLOSED)
        c->peer_eof = true;
    else if (rc != RP_OK) {
        net_conn_close(c);
        return;
    }
    if (rp_buf_avail(&c->s.in) == 0) {
        if (c->peer_eof) {
            net_conn_close(c);
            return;
        }
        net_stream_timer(&c->s, http_cfg(c)->idle_timeout_ms);
        net_stream_shrink(&c->s); /* idle keep-alive connections hold no buffer */
        update_reading(c);
        return;
    }
    net_stream_timer(&c->s, http_cfg(c)->header_timeout_ms);
    process_input(c);
}

static void log_exchange(const struct rp_exchange *ex, int status, size_t out_len)
{
    struct rp_logline ll;
    if (!rp_log_begin_record(&ll, "exchange")) /* at every log_level: the audit trail */
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
    rp_pool_put(ex, sizeof *ex);
}

int rp_exchange_respond(struct rp_exchange *ex, int status, const char *content_type,
                        const uint8_t *body, size_t len, const char *extra_headers)
{
    struct rp_conn *c = ex->conn;
    if (c->device) {
        char lbl[32];
        snprintf(lbl, sizeof lbl, "code=\"%d\"", status);
        rp_metrics_count("raproxy_requests_total", lbl);
        rp_metric_observe_ns(m_latency, rp_clock_ns() - ex->t_start_ns);
        log_exchange(ex, status, len);
    }
    bool sent = false;
    if (!ex->aborted) {
        struct rp_buf out;
        rp_buf_init(&out, 0);
        if (rp_http_write_response(&out, status, content_type, body, len, !c->close_after_write,
                                   extra_headers) == RP_OK)
            sent = net_stream_write(&c->s, rp_buf_head(&out), rp_buf_avail(&out)) == RP_OK;
        rp_buf_free(&out);
    }
    c->ex = NULL;
    exchange_free(ex);
    if (c->state == RP_CONN_CLOSED) {
        net_stream_release(&c->s); /* may free c */
        return RP_OK;
    }
    net_stream_release(&c->s);
    if (!sent) {
        net_conn_close(c);
        return RP_OK;
    }
    if (c->close_after_write) {
        conn_finish(c);
        return RP_OK;
    }
    c->state = RP_CONN_ANSWERED;
    if (net_stream_unsent(&c->s) <= c->s.max_unsent)
        net_loop_defer(c->loop, &c->resume);
    else
        net_stream_timer(&c->s, http_cfg(c)->idle_timeout_ms); /* the peer must read */
    update_reading(c);
    return RP_OK;
}

/* ---- stream events ---------------------------------------------------------------- */

static void on_read(struct net_stream *s)
{
    struct rp_conn *c = conn_of(s);
    if (c->state == RP_CONN_READING)
        process_input(c);
    else
        update_reading(c);
}

static void on_open(struct net_stream *s)
{
    struct rp_conn *c = conn_of(s);
    if (c->state != RP_CONN_HANDSHAKE)
        return;
    handshake_over(c);
    c->state = RP_CONN_READING;
    net_stream_timer(&c->s, http_cfg(c)->header_timeout_ms);
    net_stream_shrink(&c->s); /* the handshake's buffers (plaintext may follow in on_read) */
}

static void on_eof(struct net_stream *s, int err)
{
    struct rp_conn *c = conn_of(s);
    c->peer_eof = true;
    /* a half-closed peer still gets the answers to what it sent; nothing else waits */
    if (err != RP_OK || c->state == RP_CONN_HANDSHAKE || c->state == RP_CONN_READING)
        net_conn_close(c);
}

static void on_drain(struct net_stream *s)
{
    struct rp_conn *c = conn_of(s);
    if (c->state == RP_CONN_ANSWERED && !rp_list_linked(&c->resume.link))
        on_resume(&c->resume); /* from the write-completion callback */
    else
        update_reading(c);
}

static void on_timer(struct net_stream *s)
{
    struct rp_conn *c = conn_of(s);
    switch (c->state) {
    case RP_CONN_HANDSHAKE:
        rp_metrics_count("raproxy_timeouts_total", "phase=\"handshake\"");
        net_conn_close(c);
        break;
    case RP_CONN_READING: {
        enum rp_http_phase ph = rp_http_server_phase(&c->http);
        if (ph == RP_HTTP_IDLE && rp_buf_avail(&c->s.in) == 0) {
            net_conn_close(c); /* idle keep-alive: a quiet close */
            break;
        }
        rp_metrics_count("raproxy_timeouts_total",
                         ph == RP_HTTP_BODY ? "phase=\"body\"" : "phase=\"headers\"");
        refuse(c, RP_E_HTTP_TIMEOUT);
        break;
    }
    case RP_CONN_ANSWERED: /* answers left unread for the whole idle timeout */
        rp_metrics_count("raproxy_timeouts_total", "phase=\"send\"");
        net_conn_close(c);
        break;
    default:
        break;
    }
}

static void on_free(struct net_stream *s)
{
    struct rp_conn *c = conn_of(s);
    struct rp_loop *l = c->loop;
    conn_detach(c);
    rp_http_server_free(&c->http);
    free(c);
    net_loop_conn_closed(l);
}

static const struct net_stream_ops conn_ops = {
    .on_read = on_read,
    .on_open = on_open,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_timer = on_timer,
    .on_free = on_free,
};

static void peer_text(const struct sockaddr *sa, char *addr, size_t cap, uint16_t *port)
{
    addr[0] = 0;
    *port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, addr, (socklen_t)cap);
        *port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, addr, (socklen_t)cap);
        *port = ntohs(a->sin6_port);
    }
}

/* Cheap admission first: the per-address cap is checked before any memory or TLS work. */
void net_conn_accept(struct net_listener *ls, int fd, const struct sockaddr *peer)
{
    metrics_once();
    struct rp_loop *l = ls->loop;
    const struct rp_cfg_http *hc = &l->snap->cfg->http;
    struct net_ipcap_entry *ipcap = NULL;
    if (ls->device) {
        int rc = net_ipcap_acquire(peer, hc->max_connections_per_ip, &ipcap);
        if (rc != RP_OK) {
            close(fd);
            net_loop_refused(l, rc == RP_E_HTTP_OVERLOADED ? RP_REFUSED_PER_IP : RP_REFUSED_NOMEM);
            return;
        }
    }
    struct rp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        net_ipcap_release(ipcap);
        net_loop_refused(l, RP_REFUSED_NOMEM);
        return;
    }
    c->loop = l;
    c->listener = ls;
    c->handler = ls->handler;
    c->listener_index = ls->index;
    c->device = ls->device;
    c->ipcap = ipcap;
    c->resume.cb = on_resume;
    peer_text(peer, c->addr, sizeof c->addr, &c->port);
    net_stream_init(&c->s, &l->uv, &conn_ops,
                    (size_t)hc->max_header_bytes + hc->max_body_bytes + CONN_IN_SLACK,
                    hc->max_unsent_bytes);
    struct rp_http_limits lim = {hc->max_header_bytes, hc->max_body_bytes};
    rp_http_server_init(&c->http, &lim);
    rp_list_push(&l->conns, &c->link);
    if (c->device) {
        l->nconns++;
        if (l->nconns > l->trim_peak)
            l->trim_peak = l->nconns;
        rp_metric_inc(m_accepted);
        rp_metric_add(m_open, 1);
    }
    l->conns_alive++;
    if (net_stream_open_fd(&c->s, fd) != RP_OK) {
        net_conn_close(c);
        return;
    }
    struct rp_tls_ctx *tctx = NULL;
    if (ls->tls_index >= 0 && l->snap->listener_tls)
        tctx = l->snap->listener_tls[ls->tls_index];
    c->state = RP_CONN_READING;
    if (tctx) {
        struct rp_tls *tls = NULL;
        if (rp_tls_new(&tls, tctx) != RP_OK) {
            net_loop_refused(l, RP_REFUSED_TLS);
            net_conn_close(c);
            return;
        }
        net_stream_set_tls(&c->s, tls);
        c->state = RP_CONN_HANDSHAKE;
        c->handshaking = true;
        l->handshakes++;
    }
    if (c->device)
        net_listeners_update(l); /* the caps may be reached now */
    net_stream_timer(&c->s, tctx ? hc->handshake_timeout_ms : hc->header_timeout_ms);
    if (net_stream_start(&c->s) != RP_OK)
        net_conn_close(c);
}

void net_conn_drain(struct rp_conn *c)
{
    c->close_after_write = true;
    if (c->state == RP_CONN_HANDSHAKE ||
        (c->state == RP_CONN_READING && rp_http_server_phase(&c->http) == RP_HTTP_IDLE &&
         rp_buf_avail(&c->s.in) == 0))
        net_conn_close(c);
}
