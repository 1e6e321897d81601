/* bench/fleet: a fleet of devices enrolling through CMP (ir, then certConf), as fast as a
 * target lets them or at a given rate, over raproxy's own TLS and HTTP layers and libuv.
 *
 * Every enrollment is a fresh, correctly signed CMP transaction: a device of the fleet file
 * (bench/make-fleet.sh) sends an ir with a new transactionID, senderNonce and messageTime,
 * a new key (from a per-thread pool, or generated per request with --keys 0) and a
 * signature POP, protected with its vendor key and its chain in extraCerts; it checks the
 * ip (transactionID, recipNonce, status, certificate) and confirms with certConf, which
 * must be answered with pkiConf. An answer `waiting` (RFC 9483 §4.4, raproxy's delayed
 * delivery) is polled like openssl cmp does: a pollReq at once, then after each pollRep's
 * checkAfter, on a new connection in storm mode (the device hangs up while it waits), until
 * the ip comes; time-to-certificate (enroll) includes the waiting.
 *
 * Modes: storm (a new TCP+TLS connection per enrollment, full handshakes unless --resume)
 * and keepalive (each slot keeps its connection). Closed loop with --concurrency C slots,
 * or open loop with --rate R enrollments/s (at most C in flight; latency counted from the
 * intended start, so a slow target cannot hide its queueing). Bounded by --duration and
 * --requests; in-flight enrollments get --timeout-ms to finish. --idle N --hold S opens N
 * TLS connections (C handshakes at a time), holds them S seconds and closes them; with
 * --idle-request each first sends one keep-alive GET of the URL's path and reads the answer,
 * with --idle-partial half of one (no final CRLF: a slowloris wave).
 *
 * Output: a summary and one "RESULT key=value ..." line (bench/run.sh parses it);
 * --timeline FILE writes "second ok errors" per second. Exit status 0 when at least one
 * enrollment (or idle connection) succeeded and none failed with --strict.
 */
#include "bench.h"
#include "hist.h"

#include "raproxy/buf.h"
#include "raproxy/cmp.h"
#include "raproxy/err.h"
#include "raproxy/http.h"
#include "raproxy/tls.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define CMP_CTYPE        "application/pkixcmp"
#define MAX_THREADS      16
#define MAX_SLOTS        200000
#define TXID_LEN         16
#define NONCE_MAX        64
#define SLOT_ARENA       (64u * 1024u)
#define READ_BUF         (64u * 1024u)
#define PLAIN_MAX        (1024u * 1024u)
#define HTTP_MAX_HEADER  16384u
#define HTTP_MAX_BODY    (1024u * 1024u)
#define TICK_OPEN_MS     1
#define TICK_CLOSED_MS   10
#define GRACE_MS         1000 /* after --timeout-ms, before in-flight work is cut */
#define MAX_TIMELINE_S   7200
#define HOST_HEADER_MAX  300
#define DEFAULT_KEYS     64
#define DEFAULT_TIMEOUT  30000
#define DEFAULT_DURATION 10.0
#define MAX_CHAIN        4

enum fl_mode { MODE_STORM, MODE_KEEPALIVE };

struct fl_opts {
    const char *url, *fleet, *chain, *ca, *sni, *timeline, *label;
    enum fl_mode mode;
    unsigned concurrency, threads, keys, timeout_ms;
    double rate, duration, hold;
    uint64_t requests; /* 0 = unbounded */
    unsigned idle;     /* idle-connection mode: connections to open */
    bool idle_request; /* idle mode: one GET of the URL's path on each before holding it */
    bool idle_partial; /* idle mode: half a request (no final CRLF), then hold: slowloris */
    bool resume;
};

/* Transport and protocol failures; HTTP statuses and failInfo bits are counted apart. */
#define FL_ERRORS(X)                                                                               \
    X(CONNECT, "connect")                                                                          \
    X(TLS, "tls")                                                                                  \
    X(TIMEOUT, "timeout")                                                                          \
    X(CLOSED, "closed")                                                                            \
    X(HTTP, "http_parse")                                                                          \
    X(DECODE, "cmp_decode")                                                                        \
    X(MISMATCH, "cmp_mismatch")                                                                    \
    X(UNEXPECTED, "cmp_unexpected_body")                                                           \
    X(REJECTED, "cmp_rejected")                                                                    \
    X(INTERNAL, "internal")                                                                        \
    X(CUT, "unfinished")
#define FL_ERR_ENUM(n, s) ERR_##n,
enum fl_err { FL_ERRORS(FL_ERR_ENUM) ERR_COUNT };
#undef FL_ERR_ENUM
#define FL_ERR_NAME(n, s) s,
static const char *const err_names[] = {FL_ERRORS(FL_ERR_NAME)};
#undef FL_ERR_NAME

#define HTTP_STATUS_MAX 600
#define FAILINFO_BITS   27

struct fl_stats {
    uint64_t ok, failed, handshakes, started, missed, idle_ok;
    uint64_t waited, polls; /* enrollments answered waiting, pollReqs sent */
    uint64_t err[ERR_COUNT];
    uint64_t http[HTTP_STATUS_MAX];
    uint64_t failinfo[FAILINFO_BITS];
    struct bench_hist enroll, ir, conf;
};

/* Shared by all threads; read-only after start except the atomics. */
struct fl_run {
    struct fl_opts o;
    struct bench_fleet fleet;
    struct rp_http_url url;
    char host_header[HOST_HEADER_MAX];
    struct sockaddr_in addr;
    struct rp_view chain[MAX_CHAIN];
    uint8_t *chain_der[MAX_CHAIN];
    size_t n_chain;
    struct rp_tls_client_opts tls_opts;
    atomic_uint_fast64_t next_dev, started;
    atomic_bool *busy;     /* per device: an enrollment of it is in flight (take_device) */
    atomic_uint idle_done; /* idle mode: connections established or failed */
    uint64_t t0_ns;
    uint64_t stop_ns; /* no new enrollments from here */
    uint64_t cut_ns;  /* in-flight work is cut here */
};

enum fl_state {
    SL_FREE,
    SL_CONNECTING,
    SL_HANDSHAKE,
    SL_PROBE,
    SL_IR,
    SL_POLL,
    SL_WAIT,
    SL_CONF,
    SL_HOLD
};

/* What a slot's next message is. */
enum fl_msg { MSG_IR, MSG_POLL, MSG_CONF };

struct fl_thread;

struct fl_slot {
    struct fl_thread *th;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_timer_t deadline;
    bool tcp_open; /* tcp initialized and not closed */
    bool closing;  /* uv_close called, on_tcp_closed pending */
    bool next_after_close;
    bool ready; /* connected, TLS handshake (if any) done */
    bool enrolling;
    bool holds_dev; /* took s->dev in run->busy: gives it back when the enrollment ends */
    enum fl_state state;
    enum fl_state send_state; /* what the request waiting for the connection is */
    uint32_t wait_ms;         /* SL_WAIT: checkAfter */
    bool waited;              /* this enrollment was answered waiting */
    struct rp_tls_ctx *ctx;   /* storm without --resume: one per connection */
    struct rp_tls *tls;
    struct rp_http_client http;
    struct rp_buf plain;
    struct rp_buf req; /* HTTP request waiting for the connection */
    struct rp_arena arena;
    struct bench_key devkey;
    bool have_devkey;
    size_t dev;
    uint8_t txid[TXID_LEN], nonce[NONCE_MAX], ca_nonce[NONCE_MAX];
    size_t ca_nonce_len;
    uint8_t *cert;
    size_t cert_len, cert_cap;
    uint64_t t_enroll, t_req;
    struct fl_slot *next_free;
    bool in_free; /* on the thread's free list (open loop) */
};

struct fl_thread {
    pthread_t tid;
    unsigned index;
    struct fl_run *run;
    uv_loop_t loop;
    uv_timer_t tick;
    WC_RNG rng;
    struct bench_key *keys;
    unsigned n_keys, next_key;
    struct rp_tls_ctx *ctx; /* keepalive or --resume */
    struct fl_slot *slots;
    unsigned n_slots;
    struct fl_slot *free_list;
    unsigned active;  /* slots with an open connection or an enrollment */
    unsigned waiting; /* slots waiting (without a connection) to poll */
    double rate;      /* enrollments/s of this thread; 0 = closed loop */
    uint64_t scheduled;
    unsigned idle_target, idle_opened, idle_inflight, max_inflight;
    uint64_t t_last_ns; /* last enrollment that ended */
    uint64_t hold_until_ns;
    bool stopping, finished;
    struct fl_stats st;
    uint64_t *tl_ok, *tl_err;
    size_t tl_len;
};

static uint8_t g_read_buf[MAX_THREADS][READ_BUF];

static void slot_start(struct fl_slot *s, uint64_t t_intended);
static void slot_send(struct fl_slot *s);
static void slot_connect(struct fl_slot *s);
static void arm_poll(struct fl_slot *s);

/* ---- bookkeeping ---- */

static void timeline(struct fl_thread *th, bool ok)
{
    uint64_t sec = (bench_now_ns() - th->run->t0_ns) / 1000000000u;
    if (sec < th->tl_len)
        (ok ? th->tl_ok : th->tl_err)[sec]++;
}

/* Open loop: the slot waits on the free list for the next scheduled start. */
static void free_push(struct fl_thread *th, struct fl_slot *s)
{
    if (s->in_free || th->rate <= 0 || th->stopping)
        return;
    s->in_free = true;
    s->next_free = th->free_list;
    th->free_list = s;
}

static void count_error(struct fl_thread *th, enum fl_err e)
{
    th->st.err[e]++;
    th->st.failed++;
    timeline(th, false);
}

/* ---- connection ---- */

static void on_tcp_closed(uv_handle_t *h)
{
    struct fl_slot *s = h->data;
    struct fl_thread *th = s->th;
    rp_tls_free(s->tls);
    s->tls = NULL;
    rp_tls_ctx_unref(s->ctx);
    s->ctx = NULL;
    rp_http_client_free(&s->http);
    rp_buf_free(&s->plain);
    s->tcp_open = s->closing = s->ready = false;
    th->active--;
    if (s->state == SL_WAIT && s->enrolling) {
        arm_poll(s); /* the device hung up while it waits for its poll */
        return;
    }
    if (s->next_after_close) {
        s->next_after_close = false;
        slot_start(s, 0);
    } else if (!s->enrolling) {
        free_push(th, s);
    }
}

/* The client closes with a reset (SO_LINGER 0): a storm of tens of thousands of
 * connections would otherwise leave as many ports in TIME_WAIT and run out of them. */
static void close_tcp(uv_tcp_t *t)
{
    if (uv_tcp_close_reset(t, on_tcp_closed) != 0)
        uv_close((uv_handle_t *)t, on_tcp_closed);
}

static void slot_close(struct fl_slot *s, bool then_next)
{
    s->next_after_close = then_next;
    if (!s->tcp_open) {
        if (then_next) {
            s->next_after_close = false;
            slot_start(s, 0);
        }
        return;
    }
    if (!s->closing) {
        s->closing = true;
        uv_timer_stop(&s->deadline);
        close_tcp(&s->tcp);
    }
}

/* A device enrolls once at a time, as a real one does (raproxy refuses a second certificate
 * request of a device while its first is in progress: transactionIdInUse): the next device
 * not enrolling now, or, when all are (a fleet smaller than the concurrency), the next one. */
static void take_device(struct fl_slot *s)
{
    struct fl_run *run = s->th->run;
    size_t n = run->fleet.n;
    for (size_t i = 0; i < n; i++) {
        size_t d = (size_t)(atomic_fetch_add(&run->next_dev, 1) % n);
        if (!atomic_exchange(&run->busy[d], true)) {
            s->dev = d;
            s->holds_dev = true;
            return;
        }
    }
    s->dev = (size_t)(atomic_fetch_add(&run->next_dev, 1) % n);
    s->holds_dev = false;
}

/* The slot's enrollment is over: its device may enroll again. */
static void end_enrollment(struct fl_slot *s)
{
    s->enrolling = false;
    if (s->holds_dev)
        atomic_store(&s->th->run->busy[s->dev], false);
    s->holds_dev = false;
}

/* The enrollment in s ended (ok or not). What the slot does next depends on the mode. */
static void slot_done(struct fl_slot *s, bool keep_conn)
{
    struct fl_thread *th = s->th;
    if (s->state == SL_WAIT)
        th->waiting--;
    end_enrollment(s);
    s->waited = false;
    s->state = SL_FREE;
    uv_timer_stop(&s->deadline);
    if (s->have_devkey) {
        bench_key_free(&s->devkey);
        s->have_devkey = false;
    }
    bool more = !th->stopping && th->rate == 0;
    th->t_last_ns = bench_now_ns();
    if (!keep_conn || th->stopping) {
        slot_close(s, more);
        if (!more)
            free_push(th, s);
        return;
    }
    if (more)
        slot_start(s, 0);
    else
        free_push(th, s);
}

static void slot_fail(struct fl_slot *s, enum fl_err e)
{
    if (s->state == SL_HOLD || (!s->enrolling && s->state == SL_FREE)) {
        slot_close(s, false); /* an idle connection went away */
        return;
    }
    if (s->th->idle_target) {
        s->th->idle_inflight--;
        atomic_fetch_add(&s->th->run->idle_done, 1);
        count_error(s->th, e);
        end_enrollment(s);
        s->state = SL_FREE;
        slot_close(s, false);
        return;
    }
    count_error(s->th, e);
    slot_done(s, false);
}

struct fl_write {
    uv_write_t req;
    uint8_t data[];
};

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static int write_copy(struct fl_slot *s, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    struct fl_write *w = malloc(sizeof *w + n);
    if (!w)
        return -1;
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_written) != 0) {
        free(w);
        return -1;
    }
    return 0;
}

static int flush_tls(struct fl_slot *s)
{
    struct rp_buf *o = rp_tls_out(s->tls);
    size_t n = rp_buf_avail(o);
    int rc = write_copy(s, rp_buf_head(o), n);
    rp_buf_consume(o, n);
    return rc;
}

static void on_deadline(uv_timer_t *t)
{
    slot_fail(t->data, ERR_TIMEOUT);
}

static void arm_deadline(struct fl_slot *s)
{
    uv_timer_start(&s->deadline, on_deadline, s->th->run->o.timeout_ms, 0);
}

/* ---- CMP ---- */

static struct rp_view v_of(const uint8_t *p, size_t n)
{
    return rp_view_make(p, n);
}

static int next_newkey(struct fl_thread *th, struct bench_key **k, struct bench_key *fresh)
{
    if (th->n_keys) {
        *k = &th->keys[th->next_key++ % th->n_keys];
        return 0;
    }
    *k = fresh;
    return bench_key_gen(fresh, &th->rng);
}

/* The signed request (ir, pollReq or certConf), wrapped in HTTP, into s->req. */
static int build_request(struct fl_slot *s, enum fl_msg kind)
{
    bool conf = kind != MSG_IR; /* answers the server's last message: its nonce echoed */
    struct fl_thread *th = s->th;
    struct fl_run *run = th->run;
    const struct bench_device *d = &run->fleet.dev[s->dev];
    struct rp_view extra[1 + MAX_CHAIN], header, body, msg;
    struct bench_key fresh, *newkey = NULL;
    int rc;
    rp_arena_reset(&s->arena);
    if ((rc = bench_random(&th->rng, s->nonce, TXID_LEN)) != 0)
        return rc;
    struct bench_req_hdr h = {.sender = d->subject,
                              .txid = v_of(s->txid, TXID_LEN),
                              .nonce = v_of(s->nonce, TXID_LEN),
                              .recip_nonce =
                                  conf ? v_of(s->ca_nonce, s->ca_nonce_len) : RP_VIEW_NULL,
                              .now = (int64_t)time(NULL)};
    rc = bench_cmp_enc_req_header(&s->arena, &h, &header);
    if (rc == 0 && kind == MSG_POLL) {
        rc = bench_cmp_enc_body_pollreq(&s->arena, 0, &body);
    } else if (rc == 0 && kind == MSG_CONF) {
        rc = bench_cmp_enc_body_certconf(&s->arena, v_of(s->cert, s->cert_len), &body);
    } else if (rc == 0) {
        rc = next_newkey(th, &newkey, &fresh);
        if (rc == 0)
            rc = bench_cmp_enc_body_ir(&s->arena, &th->rng, newkey, d->subject, &body);
        if (newkey == &fresh)
            bench_key_free(&fresh);
    }
    extra[0] = d->cert;
    for (size_t i = 0; i < run->n_chain; i++)
        extra[1 + i] = run->chain[i];
    if (rc == 0)
        rc = bench_cmp_sign_message(&s->arena, &th->rng, &s->devkey, header, body, extra,
                                    1 + run->n_chain, &msg);
    if (rc != 0)
        return rc;
    rp_buf_clear(&s->req);
    return rp_http_write_request(&s->req, "POST", run->host_header, run->url.path, CMP_CTYPE, msg.p,
                                 msg.len, true);
}

/* Lowest failInfo bit of an error or rejection, counted; -1 when there is none. */
static int count_failinfo(struct fl_thread *th, const struct rp_cmp_status *st)
{
    if (!st->has_fail_info || st->fail_info == 0)
        return -1;
    int bit = __builtin_ctz(st->fail_info);
    if (bit < FAILINFO_BITS)
        th->st.failinfo[bit]++;
    th->st.failed++;
    timeline(th, false);
    return bit;
}

/* The server's senderNonce, for the recipNonce of the next message. */
static bool keep_server_nonce(struct fl_slot *s, const struct rp_cmp_msg *m)
{
    s->ca_nonce_len = m->header.sender_nonce.val.len;
    if (s->ca_nonce_len > NONCE_MAX || s->ca_nonce_len == 0)
        return false;
    memcpy(s->ca_nonce, m->header.sender_nonce.val.p, s->ca_nonce_len);
    return true;
}

static void on_poll_due(uv_timer_t *t)
{
    struct fl_slot *s = t->data;
    s->th->waiting--;
    if (build_request(s, MSG_POLL) != 0) {
        slot_fail(s, ERR_INTERNAL);
        return;
    }
    s->th->st.polls++;
    s->send_state = SL_POLL;
    if (s->tcp_open && s->ready && !s->closing) {
        s->state = SL_POLL;
        slot_send(s);
    } else {
        slot_connect(s);
    }
}

static void arm_poll(struct fl_slot *s)
{
    uv_timer_start(&s->deadline, on_poll_due, s->wait_ms, 0);
}

/* waiting (ip with status waiting, or a pollRep): poll after `ms`, like openssl cmp. */
static void wait_and_poll(struct fl_slot *s, const struct rp_cmp_msg *m, uint32_t ms, bool keep)
{
    if (!keep_server_nonce(s, m)) {
        slot_fail(s, ERR_MISMATCH);
        return;
    }
    if (!s->waited) {
        s->waited = true;
        s->th->st.waited++;
    }
    uv_timer_stop(&s->deadline);
    s->state = SL_WAIT;
    s->wait_ms = ms;
    s->th->waiting++;
    if (keep && s->th->run->o.mode == MODE_KEEPALIVE)
        arm_poll(s);
    else
        slot_close(s, false); /* on_tcp_closed arms the poll */
}

/* The CMP answer to the request in flight. */
static void on_cmp(struct fl_slot *s, struct rp_view body, bool keep)
{
    struct fl_thread *th = s->th;
    struct rp_cmp_msg m;
    uint64_t now = bench_now_ns();
    rp_arena_reset(&s->arena);
    if (rp_cmp_decode(body.p, body.len, &s->arena, &m, NULL) != RP_OK) {
        slot_fail(s, ERR_DECODE);
        return;
    }
    if (!rp_view_eq(m.header.transaction_id.val, v_of(s->txid, TXID_LEN)) ||
        !rp_view_eq(m.header.recip_nonce.val, v_of(s->nonce, TXID_LEN))) {
        slot_fail(s, ERR_MISMATCH);
        return;
    }
    bool storm = th->run->o.mode == MODE_STORM; /* a connection per enrollment, refused too */
    if (m.body.type == RP_CMP_ERROR) {
        if (count_failinfo(th, &m.body.error.status) < 0)
            count_error(th, ERR_REJECTED);
        slot_done(s, keep && !storm);
        return;
    }
    if (s->state == SL_IR || s->state == SL_POLL) {
        if (s->state == SL_POLL && m.body.type == RP_CMP_POLLREP && m.body.pollrep.n >= 1) {
            int64_t after = m.body.pollrep.items[0].check_after;
            wait_and_poll(s, &m, after < 0 ? 0 : (uint32_t)(after * 1000), keep);
            return;
        }
        if (m.body.type != RP_CMP_IP || m.body.rep.n < 1) {
            slot_fail(s, ERR_UNEXPECTED);
            return;
        }
        const struct rp_cmp_certresp *r = &m.body.rep.resps[0];
        if (s->state == SL_IR && r->status.status == RP_CMP_STATUS_WAITING) {
            wait_and_poll(s, &m, 0, keep); /* openssl polls at once */
            return;
        }
        if (r->status.status > RP_CMP_STATUS_GRANTED_WITH_MODS || !rp_view_present(r->cert)) {
            if (count_failinfo(th, &r->status) < 0)
                count_error(th, ERR_REJECTED);
            slot_done(s, keep && !storm);
            return;
        }
        if (r->cert.len > s->cert_cap) {
            uint8_t *p = realloc(s->cert, r->cert.len);
            if (!p) {
                slot_fail(s, ERR_INTERNAL);
                return;
            }
            s->cert = p;
            s->cert_cap = r->cert.len;
        }
        memcpy(s->cert, r->cert.p, r->cert.len);
        s->cert_len = r->cert.len;
        if (!keep_server_nonce(s, &m)) {
            slot_fail(s, ERR_MISMATCH);
            return;
        }
        bench_hist_add(&th->st.ir, (now - s->t_req) / 1000u);
        if (build_request(s, MSG_CONF) != 0) {
            slot_fail(s, ERR_INTERNAL);
            return;
        }
        s->state = SL_CONF;
        s->send_state = SL_CONF;
        if (!keep) {
            slot_fail(s, ERR_CLOSED); /* a CA that closes mid-transaction */
            return;
        }
        slot_send(s);
        return;
    }
    if (m.body.type != RP_CMP_PKICONF) {
        slot_fail(s, ERR_UNEXPECTED);
        return;
    }
    bench_hist_add(&th->st.conf, (now - s->t_req) / 1000u);
    bench_hist_add(&th->st.enroll, (now - s->t_enroll) / 1000u);
    th->st.ok++;
    timeline(th, true);
    slot_done(s, keep && th->run->o.mode == MODE_KEEPALIVE);
}

static void idle_hold(struct fl_slot *s);

static void on_http(struct fl_slot *s)
{
    size_t used = 0;
    struct rp_http_resp *resp = NULL;
    int rc = rp_http_client_feed(&s->http, rp_buf_head(&s->plain), rp_buf_avail(&s->plain), &used,
                                 &resp);
    rp_buf_consume(&s->plain, used);
    if (rc == RP_E_AGAIN)
        return;
    if (rc != RP_OK) {
        slot_fail(s, ERR_HTTP);
        return;
    }
    if (s->state == SL_PROBE) { /* any status will do, as long as the connection stays */
        bool keep = resp->keep_alive;
        rp_http_client_next(&s->http);
        if (!keep) {
            slot_fail(s, ERR_CLOSED);
            return;
        }
        idle_hold(s);
        return;
    }
    if (s->state != SL_IR && s->state != SL_POLL && s->state != SL_CONF) {
        slot_fail(s, ERR_HTTP); /* an answer nobody asked for */
        return;
    }
    uv_timer_stop(&s->deadline);
    int status = resp->status;
    bool keep = resp->keep_alive;
    if (status != 200) {
        struct fl_thread *th = s->th;
        th->st.http[status > 0 && status < HTTP_STATUS_MAX ? status : 0]++;
        th->st.failed++;
        timeline(th, false);
        rp_http_client_next(&s->http);
        /* storm: a connection per enrollment, refused ones too (kept, it holds the run open
         * once --requests are all started: slot_start does not close it) */
        slot_done(s, keep && th->run->o.mode == MODE_KEEPALIVE);
        return;
    }
    /* on_cmp may start the next request on this connection: take the body out first */
    struct rp_view body = resp->body;
    uint8_t *copy = malloc(body.len ? body.len : 1);
    if (!copy) {
        slot_fail(s, ERR_INTERNAL);
        return;
    }
    memcpy(copy, body.p, body.len);
    rp_http_client_next(&s->http);
    on_cmp(s, v_of(copy, body.len), keep);
    free(copy);
}

/* ---- I/O ---- */

static void slot_send(struct fl_slot *s)
{
    int rc;
    s->t_req = bench_now_ns();
    arm_deadline(s);
    if (s->tls) {
        rc = rp_tls_write(s->tls, rp_buf_head(&s->req), rp_buf_avail(&s->req));
        if (rc == 0)
            rc = flush_tls(s);
    } else {
        rc = write_copy(s, rp_buf_head(&s->req), rp_buf_avail(&s->req));
    }
    if (rc != 0)
        slot_fail(s, ERR_CLOSED);
}

/* Idle mode: the connection is established (and answered its one request): hold it. */
static void idle_hold(struct fl_slot *s)
{
    struct fl_thread *th = s->th;
    uv_timer_stop(&s->deadline);
    s->state = SL_HOLD;
    end_enrollment(s);
    th->idle_inflight--;
    th->st.idle_ok++;
    atomic_fetch_add(&th->run->idle_done, 1);
    if (s->tls)
        rp_tls_shrink(s->tls);
    rp_buf_free(&s->plain);
    rp_buf_free(&s->req);
}

static void on_connection_ready(struct fl_slot *s)
{
    struct fl_thread *th = s->th;
    s->ready = true;
    if (th->idle_target) {
        const struct fl_opts *o = &th->run->o;
        if (!o->idle_request && !o->idle_partial) {
            idle_hold(s);
            return;
        }
        /* a keep-alive request first (the server's memory after one exchange), or half of
         * one that never ends (slowloris: the server holds a request in the making) */
        rp_buf_clear(&s->req);
        if (rp_buf_printf(&s->req, "GET %s HTTP/1.1\r\nHost: %s\r\n%s", th->run->url.path,
                          th->run->host_header, o->idle_partial ? "" : "\r\n") != 0) {
            slot_fail(s, ERR_INTERNAL);
            return;
        }
        s->state = SL_PROBE;
        slot_send(s);
        if (o->idle_partial && s->state == SL_PROBE)
            idle_hold(s);
        return;
    }
    s->state = s->send_state;
    slot_send(s);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct fl_slot *s = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)g_read_buf[s->th->index], READ_BUF);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct fl_slot *s = st->data;
    if (n == 0)
        return;
    if (n < 0 && s->state == SL_WAIT) {
        slot_close(s, false); /* the server hung up while the device waits: it reconnects */
        return;
    }
    if (n < 0) {
        slot_fail(s, s->state == SL_HANDSHAKE ? ERR_TLS : ERR_CLOSED);
        return;
    }
    if (!s->tls) {
        if (rp_buf_append(&s->plain, buf->base, (size_t)n) != 0) {
            slot_fail(s, ERR_HTTP);
            return;
        }
        on_http(s);
        return;
    }
    int rc = rp_tls_feed(s->tls, (const uint8_t *)buf->base, (size_t)n);
    if (rc == 0)
        rc = rp_tls_process(s->tls, &s->plain);
    flush_tls(s);
    if (rc != 0) {
        slot_fail(s, s->state == SL_HANDSHAKE ? ERR_TLS : ERR_CLOSED);
        return;
    }
    if (s->state == SL_HANDSHAKE) {
        if (!rp_tls_handshake_done(s->tls))
            return;
        s->th->st.handshakes++;
        on_connection_ready(s);
        if (s->state != SL_IR || rp_buf_avail(&s->plain) == 0)
            return;
    }
    if (rp_buf_avail(&s->plain))
        on_http(s);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct fl_slot *s = req->data;
    struct fl_thread *th = s->th;
    struct rp_http_limits lim = {HTTP_MAX_HEADER, HTTP_MAX_BODY};
    if (s->closing)
        return;
    if (status < 0) {
        slot_fail(s, ERR_CONNECT);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    rp_http_client_init(&s->http, &lim);
    if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) != 0) {
        slot_fail(s, ERR_CONNECT);
        return;
    }
    if (!th->run->url.tls) {
        on_connection_ready(s);
        return;
    }
    struct rp_tls_ctx *ctx = th->ctx;
    if (!ctx) {
        if (rp_tls_ctx_client(&s->ctx, &th->run->tls_opts) != 0) {
            slot_fail(s, ERR_INTERNAL);
            return;
        }
        ctx = s->ctx;
    }
    s->state = SL_HANDSHAKE;
    if (rp_tls_new(&s->tls, ctx) != 0 || rp_tls_process(s->tls, &s->plain) != 0 ||
        flush_tls(s) != 0)
        slot_fail(s, ERR_TLS);
}

static void slot_connect(struct fl_slot *s)
{
    struct fl_thread *th = s->th;
    rp_buf_init(&s->plain, PLAIN_MAX);
    uv_tcp_init(&th->loop, &s->tcp);
    s->tcp.data = s;
    s->connect.data = s;
    s->tcp_open = true;
    th->active++;
    s->state = SL_CONNECTING;
    arm_deadline(s);
    if (uv_tcp_connect(&s->connect, &s->tcp, (const struct sockaddr *)&th->run->addr, on_connect) !=
        0)
        slot_fail(s, ERR_CONNECT);
}

/* Begin an enrollment in s (t_intended: open-loop schedule time, 0 = now). */
static void slot_start(struct fl_slot *s, uint64_t t_intended)
{
    struct fl_thread *th = s->th;
    struct fl_run *run = th->run;
    if (th->stopping)
        return;
    if (run->o.requests && atomic_fetch_add(&run->started, 1) >= run->o.requests) {
        th->stopping = true;
        return;
    }
    th->st.started++;
    s->enrolling = true;
    s->t_enroll = t_intended ? t_intended : bench_now_ns();
    take_device(s);
    const struct bench_device *d = &run->fleet.dev[s->dev];
    if (bench_key_import(&s->devkey, d->priv, d->spki) != 0 ||
        bench_random(&th->rng, s->txid, TXID_LEN) != 0) {
        count_error(th, ERR_INTERNAL);
        end_enrollment(s);
        free_push(th, s);
        return;
    }
    s->have_devkey = true;
    if (build_request(s, MSG_IR) != 0) {
        slot_fail(s, ERR_INTERNAL);
        return;
    }
    s->send_state = SL_IR;
    if (s->tcp_open && s->ready) {
        s->state = SL_IR;
        slot_send(s);
    } else if (!s->tcp_open) {
        slot_connect(s);
    } else {
        slot_fail(s, ERR_INTERNAL);
    }
}

/* ---- thread ---- */

static void close_all(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        h->type == UV_TCP ? close_tcp((uv_tcp_t *)h) : uv_close(h, NULL);
}

/* Stop: free connections close, in-flight ones finish (slot_done closes them). */
static void thread_stop(struct fl_thread *th)
{
    th->stopping = true;
    th->free_list = NULL;
    for (unsigned i = 0; i < th->n_slots; i++) {
        struct fl_slot *s = &th->slots[i];
        if (!s->enrolling && s->state != SL_CONNECTING && s->state != SL_HANDSHAKE)
            slot_close(s, false);
    }
}

static void thread_cut(struct fl_thread *th)
{
    for (unsigned i = 0; i < th->n_slots; i++) {
        struct fl_slot *s = &th->slots[i];
        if (s->enrolling) {
            count_error(th, ERR_CUT);
            end_enrollment(s);
            if (s->have_devkey) {
                bench_key_free(&s->devkey);
                s->have_devkey = false;
            }
        }
        s->next_after_close = false;
    }
    th->finished = th->stopping = true;
    th->free_list = NULL;
    uv_walk(&th->loop, close_all, NULL);
}

static void idle_tick(struct fl_thread *th, uint64_t now)
{
    struct fl_run *run = th->run;
    while (!th->stopping && th->idle_opened < th->idle_target &&
           th->idle_inflight < th->max_inflight) {
        struct fl_slot *s = &th->slots[th->idle_opened++];
        th->idle_inflight++;
        s->enrolling = true;
        slot_connect(s);
    }
    unsigned done = atomic_load(&run->idle_done);
    if (th->hold_until_ns == 0 && (done >= run->o.idle || now >= run->stop_ns)) {
        th->hold_until_ns = now + (uint64_t)(run->o.hold * 1e9);
        if (th->index == 0) {
            printf("IDLE established=%u of %u; holding %.0f s\n", done, run->o.idle, run->o.hold);
            fflush(stdout);
        }
    }
    if (th->hold_until_ns && now >= th->hold_until_ns)
        thread_cut(th);
}

static void on_tick(uv_timer_t *t)
{
    struct fl_thread *th = t->data;
    struct fl_run *run = th->run;
    uint64_t now = bench_now_ns();
    if (th->finished)
        return;
    if (th->idle_target) {
        idle_tick(th, now);
        return;
    }
    if (now >= run->cut_ns || (th->stopping && th->active == 0 && th->waiting == 0)) {
        thread_cut(th);
        return;
    }
    if (now >= run->stop_ns && !th->stopping) {
        thread_stop(th);
        return;
    }
    if (th->rate <= 0 || th->stopping)
        return;
    double due = (double)(now - run->t0_ns) / 1e9 * th->rate;
    while ((double)th->scheduled < due && !th->stopping) {
        uint64_t t_int = run->t0_ns + (uint64_t)((double)th->scheduled / th->rate * 1e9);
        th->scheduled++;
        struct fl_slot *s = th->free_list;
        if (!s) {
            th->st.missed++;
            continue;
        }
        th->free_list = s->next_free;
        s->in_free = false;
        slot_start(s, t_int);
    }
}

static int thread_init(struct fl_thread *th, unsigned slots, double rate, unsigned idle)
{
    struct fl_run *run = th->run;
    th->n_slots = slots;
    th->rate = rate;
    th->idle_target = idle;
    th->max_inflight =
        run->o.concurrency / run->o.threads ? run->o.concurrency / run->o.threads : 1;
    th->tl_len = (size_t)(run->o.duration + (double)run->o.timeout_ms / 1000.0 + run->o.hold) + 3;
    if (th->tl_len > MAX_TIMELINE_S)
        th->tl_len = MAX_TIMELINE_S;
    th->tl_ok = calloc(th->tl_len, sizeof *th->tl_ok);
    th->tl_err = calloc(th->tl_len, sizeof *th->tl_err);
    th->slots = calloc(slots ? slots : 1, sizeof *th->slots);
    th->n_keys = run->o.keys;
    th->keys = calloc(th->n_keys ? th->n_keys : 1, sizeof *th->keys);
    if (!th->tl_ok || !th->tl_err || !th->slots || !th->keys || uv_loop_init(&th->loop) != 0 ||
        wc_InitRng(&th->rng) != 0)
        return -1;
    for (unsigned i = 0; i < th->n_keys; i++)
        if (bench_key_gen(&th->keys[i], &th->rng) != 0)
            return -1;
    if (run->url.tls && (run->o.mode == MODE_KEEPALIVE || run->o.resume || idle) &&
        rp_tls_ctx_client(&th->ctx, &run->tls_opts) != 0)
        return -1;
    for (unsigned i = 0; i < slots; i++) {
        struct fl_slot *s = &th->slots[i];
        s->th = th;
        if (rp_arena_new(&s->arena, SLOT_ARENA) != RP_OK)
            return -1;
        rp_buf_init(&s->req, 0);
        uv_timer_init(&th->loop, &s->deadline);
        s->deadline.data = s;
        free_push(th, s);
    }
    uv_timer_init(&th->loop, &th->tick);
    th->tick.data = th;
    return 0;
}

static void thread_free(struct fl_thread *th)
{
    for (unsigned i = 0; th->slots && i < th->n_slots; i++) {
        rp_arena_free(&th->slots[i].arena);
        rp_buf_free(&th->slots[i].req);
        free(th->slots[i].cert);
    }
    for (unsigned i = 0; th->keys && i < th->n_keys; i++)
        bench_key_free(&th->keys[i]);
    rp_tls_ctx_unref(th->ctx);
    free(th->slots);
    free(th->keys);
    free(th->tl_ok);
    free(th->tl_err);
    wc_FreeRng(&th->rng);
}

static void *thread_main(void *arg)
{
    struct fl_thread *th = arg;
    unsigned every = th->rate > 0 || th->idle_target ? TICK_OPEN_MS : TICK_CLOSED_MS;
    uv_timer_start(&th->tick, on_tick, every, every);
    if (th->rate == 0 && !th->idle_target)
        for (unsigned i = 0; i < th->n_slots && !th->stopping; i++)
            slot_start(&th->slots[i], 0);
    uv_run(&th->loop, UV_RUN_DEFAULT);
    uv_loop_close(&th->loop);
    return NULL;
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_fleet --url http[s]://127.0.0.1:PORT/PATH --fleet FILE [--chain PEM]\n"
            "  [--mode storm|keepalive] [--concurrency C] [--rate R] [--duration S]\n"
            "  [--requests N] [--threads T] [--keys K] [--timeout-ms MS] [--resume]\n"
            "  [--ca PEM --sni NAME] [--idle N --hold S [--idle-request|--idle-partial]]\n"
            "  [--timeline FILE]\n"
            "  [--label TEXT]\n");
    exit(2);
}

static void parse(int argc, char **argv, struct fl_opts *o)
{
    static const struct option lo[] = {
        {"url", 1, 0, 'u'},      {"fleet", 1, 0, 'f'},        {"chain", 1, 0, 'C'},
        {"mode", 1, 0, 'm'},     {"concurrency", 1, 0, 'c'},  {"rate", 1, 0, 'r'},
        {"duration", 1, 0, 'd'}, {"requests", 1, 0, 'n'},     {"threads", 1, 0, 'T'},
        {"keys", 1, 0, 'k'},     {"timeout-ms", 1, 0, 't'},   {"resume", 0, 0, 'R'},
        {"ca", 1, 0, 'a'},       {"sni", 1, 0, 's'},          {"idle", 1, 0, 'i'},
        {"hold", 1, 0, 'h'},     {"idle-request", 0, 0, 'q'}, {"idle-partial", 0, 0, 'P'},
        {"timeline", 1, 0, 'L'}, {"label", 1, 0, 'l'},        {0, 0, 0, 0}};
    int c;
    *o = (struct fl_opts){.mode = MODE_STORM,
                          .concurrency = 1,
                          .threads = 1,
                          .keys = DEFAULT_KEYS,
                          .timeout_ms = DEFAULT_TIMEOUT,
                          .duration = DEFAULT_DURATION,
                          .label = "-"};
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'u':
            o->url = optarg;
            break;
        case 'f':
            o->fleet = optarg;
            break;
        case 'C':
            o->chain = optarg;
            break;
        case 'm':
            if (strcmp(optarg, "storm") == 0)
                o->mode = MODE_STORM;
            else if (strcmp(optarg, "keepalive") == 0)
                o->mode = MODE_KEEPALIVE;
            else
                usage();
            break;
        case 'c':
            o->concurrency = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            o->rate = strtod(optarg, NULL);
            break;
        case 'd':
            o->duration = strtod(optarg, NULL);
            break;
        case 'n':
            o->requests = strtoull(optarg, NULL, 10);
            break;
        case 'T':
            o->threads = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'k':
            o->keys = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 't':
            o->timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'R':
            o->resume = true;
            break;
        case 'a':
            o->ca = optarg;
            break;
        case 's':
            o->sni = optarg;
            break;
        case 'i':
            o->idle = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'h':
            o->hold = strtod(optarg, NULL);
            break;
        case 'q':
            o->idle_request = true;
            break;
        case 'P':
            o->idle_partial = true;
            break;
        case 'L':
            o->timeline = optarg;
            break;
        case 'l':
            o->label = optarg;
            break;
        default:
            usage();
        }
    }
    if (!o->url || !o->fleet || o->concurrency < 1 || o->concurrency > MAX_SLOTS ||
        o->threads < 1 || o->threads > MAX_THREADS || o->duration <= 0 || o->timeout_ms < 1 ||
        o->idle > MAX_SLOTS || o->rate < 0 || o->hold < 0)
        usage();
}

static int setup(struct fl_run *run)
{
    size_t len[MAX_CHAIN];
    if (rp_http_url_parse(run->o.url, &run->url) != RP_OK ||
        uv_ip4_addr(run->url.host, run->url.port, &run->addr) != 0 ||
        rp_url_host_header(&run->url, run->host_header, sizeof run->host_header) != RP_OK) {
        fprintf(stderr, "bench_fleet: --url must be http[s]://IPv4:port/path\n");
        return -1;
    }
    if (bench_fleet_load(&run->fleet, run->o.fleet) != 0 || run->fleet.n == 0)
        return -1;
    run->busy = calloc(run->fleet.n, sizeof *run->busy);
    if (!run->busy)
        return -1;
    if (run->o.chain) {
        int n = bench_pem_certs(run->o.chain, run->chain_der, len, MAX_CHAIN);
        if (n < 0)
            return -1;
        run->n_chain = (size_t)n;
        for (int i = 0; i < n; i++)
            run->chain[i] = rp_view_make(run->chain_der[i], len[i]);
    }
    run->tls_opts = (struct rp_tls_client_opts){.ca_file = run->o.ca, .sni = run->o.sni};
    return 0;
}

static void print_hist(const char *name, const struct bench_hist *h)
{
    printf("  %-8s n=%-8llu p50=%llu p90=%llu p99=%llu p99.9=%llu max=%llu mean=%.0f (us)\n", name,
           (unsigned long long)h->count, (unsigned long long)bench_hist_quantile(h, 0.5),
           (unsigned long long)bench_hist_quantile(h, 0.9),
           (unsigned long long)bench_hist_quantile(h, 0.99),
           (unsigned long long)bench_hist_quantile(h, 0.999), (unsigned long long)h->max_us,
           h->count ? (double)h->sum_us / (double)h->count : 0.0);
}

/* "http_502:3,timeout:1,systemUnavail:2" or "none". */
static void format_errors(const struct fl_stats *st, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < ERR_COUNT; i++)
        if (st->err[i] && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s:%llu", n ? "," : "", err_names[i],
                                  (unsigned long long)st->err[i]);
    for (int i = 0; i < HTTP_STATUS_MAX; i++)
        if (st->http[i] && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%shttp_%d:%llu", n ? "," : "", i,
                                  (unsigned long long)st->http[i]);
    for (int i = 0; i < FAILINFO_BITS; i++)
        if (st->failinfo[i] && n < cap)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s:%llu", n ? "," : "",
                                  rp_failinfo_name((enum rp_failinfo)i),
                                  (unsigned long long)st->failinfo[i]);
    if (n == 0)
        snprintf(buf, cap, "none");
}

static void merge(struct fl_stats *into, const struct fl_stats *from)
{
    into->ok += from->ok;
    into->failed += from->failed;
    into->handshakes += from->handshakes;
    into->started += from->started;
    into->missed += from->missed;
    into->idle_ok += from->idle_ok;
    into->waited += from->waited;
    into->polls += from->polls;
    for (int i = 0; i < ERR_COUNT; i++)
        into->err[i] += from->err[i];
    for (int i = 0; i < HTTP_STATUS_MAX; i++)
        into->http[i] += from->http[i];
    for (int i = 0; i < FAILINFO_BITS; i++)
        into->failinfo[i] += from->failinfo[i];
    bench_hist_merge(&into->enroll, &from->enroll);
    bench_hist_merge(&into->ir, &from->ir);
    bench_hist_merge(&into->conf, &from->conf);
}

static void report(const struct fl_run *run, struct fl_thread *th, unsigned n, double secs)
{
    static struct fl_stats st;
    static char errs[4096];
    const struct fl_opts *o = &run->o;
    for (unsigned i = 0; i < n; i++)
        merge(&st, &th[i].st);
    format_errors(&st, errs, sizeof errs);
    double eps = secs > 0 ? (double)st.ok / secs : 0,
           hs = secs > 0 ? (double)st.handshakes / secs : 0;
    printf("bench_fleet %s: %s, %u slots, %u thread(s), rate %s, %.2f s\n", o->label,
           o->idle                 ? "idle"
           : o->mode == MODE_STORM ? "storm"
                                   : "keepalive",
           o->concurrency, o->threads, o->rate > 0 ? "open loop" : "closed loop", secs);
    printf("  enrollments ok=%llu failed=%llu (%.1f/s), TLS handshakes %llu (%.1f/s), "
           "missed starts %llu\n",
           (unsigned long long)st.ok, (unsigned long long)st.failed, eps,
           (unsigned long long)st.handshakes, hs, (unsigned long long)st.missed);
    printf("  answered waiting %llu, pollReqs %llu\n", (unsigned long long)st.waited,
           (unsigned long long)st.polls);
    print_hist("enroll", &st.enroll);
    print_hist("ir", &st.ir);
    print_hist("certConf", &st.conf);
    printf("  errors: %s\n", errs);
    printf("RESULT label=%s mode=%s conc=%u rate=%.0f threads=%u secs=%.3f ok=%llu failed=%llu "
           "eps=%.1f hs=%.1f p50=%llu p90=%llu p99=%llu p999=%llu max=%llu ir_p50=%llu "
           "ir_p99=%llu conf_p99=%llu missed=%llu idle_ok=%llu waited=%llu polls=%llu "
           "errors=%s\n",
           o->label,
           o->idle                 ? "idle"
           : o->mode == MODE_STORM ? "storm"
                                   : "keepalive",
           o->concurrency, o->rate, o->threads, secs, (unsigned long long)st.ok,
           (unsigned long long)st.failed, eps, hs,
           (unsigned long long)bench_hist_quantile(&st.enroll, 0.5),
           (unsigned long long)bench_hist_quantile(&st.enroll, 0.9),
           (unsigned long long)bench_hist_quantile(&st.enroll, 0.99),
           (unsigned long long)bench_hist_quantile(&st.enroll, 0.999),
           (unsigned long long)st.enroll.max_us,
           (unsigned long long)bench_hist_quantile(&st.ir, 0.5),
           (unsigned long long)bench_hist_quantile(&st.ir, 0.99),
           (unsigned long long)bench_hist_quantile(&st.conf, 0.99), (unsigned long long)st.missed,
           (unsigned long long)st.idle_ok, (unsigned long long)st.waited,
           (unsigned long long)st.polls, errs);
    fflush(stdout);
}

static void write_timeline(const char *path, struct fl_thread *th, unsigned n)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return;
    }
    fprintf(f, "# second ok errors\n");
    for (size_t s = 0; s < th[0].tl_len; s++) {
        uint64_t ok = 0, err = 0;
        for (unsigned i = 0; i < n; i++) {
            ok += th[i].tl_ok[s];
            err += th[i].tl_err[s];
        }
        fprintf(f, "%zu %llu %llu\n", s, (unsigned long long)ok, (unsigned long long)err);
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    static struct fl_run run;
    static struct fl_thread th[MAX_THREADS];
    unsigned started = 0, inited = 0;
    int status = 1;
    parse(argc, argv, &run.o);
    signal(SIGPIPE, SIG_IGN);
    if (setup(&run) != 0)
        goto out;
    const struct fl_opts *o = &run.o;
    unsigned total_slots = o->idle ? o->idle : o->concurrency;
    run.t0_ns = bench_now_ns();
    run.stop_ns = run.t0_ns + (uint64_t)(o->duration * 1e9);
    run.cut_ns = run.stop_ns + (uint64_t)o->timeout_ms * 1000000u + GRACE_MS * 1000000ull;
    for (unsigned i = 0; i < o->threads; i++) {
        unsigned share = total_slots / o->threads + (i < total_slots % o->threads ? 1 : 0);
        th[i].index = i;
        th[i].run = &run;
        inited++;
        if (thread_init(&th[i], share, o->rate / o->threads, o->idle ? share : 0) != 0) {
            fprintf(stderr, "bench_fleet: thread setup failed\n");
            goto join;
        }
    }
    run.t0_ns = bench_now_ns(); /* key pools are built: the clock starts now */
    run.stop_ns = run.t0_ns + (uint64_t)(o->duration * 1e9);
    run.cut_ns = run.stop_ns + (uint64_t)o->timeout_ms * 1000000u + GRACE_MS * 1000000ull;
    for (; started < o->threads; started++)
        if (pthread_create(&th[started].tid, NULL, thread_main, &th[started]) != 0)
            break;
join:
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i].tid, NULL);
    if (started == o->threads) {
        double secs = (double)(bench_now_ns() - run.t0_ns) / 1e9;
        if (!o->idle) {
            /* throughput over the load window: until the last enrollment ended, at most
             * --duration (the drain after it does not count) */
            uint64_t last = run.t0_ns;
            for (unsigned i = 0; i < started; i++)
                if (th[i].t_last_ns > last)
                    last = th[i].t_last_ns;
            secs = (double)(last - run.t0_ns) / 1e9;
            if (secs > o->duration)
                secs = o->duration;
        }
        report(&run, th, started, secs);
        if (o->timeline)
            write_timeline(o->timeline, th, started);
        uint64_t ok = 0;
        for (unsigned i = 0; i < started; i++)
            ok += o->idle ? th[i].st.idle_ok : th[i].st.ok;
        status = ok > 0 ? 0 : 1;
    }
    for (unsigned i = 0; i < inited; i++)
        thread_free(&th[i]);
out:
    for (size_t i = 0; i < run.n_chain; i++)
        free(run.chain_der[i]);
    free(run.busy);
    bench_fleet_free(&run.fleet);
    return status;
}
