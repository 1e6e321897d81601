/* bench/mockca: a fast mock CMP CA over plain HTTP (libuv + llhttp + wolfCrypt), the
 * upstream of load tests.
 *
 * It decodes every request with raproxy's strict decoder; with --trust it verifies the
 * protection (ECDSA) and the signer's chain in extraCerts against those anchors (verified
 * certificates are cached, as a CA caches its RA's certificate); it answers ir/cr/p10cr
 * with an ip carrying a certificate it really signs (--issuer-cert/--issuer-key) for the
 * requested key and subject, certConf with pkiConf, anything else with an error, each
 * signed with --cert/--key and those certificates (plus --chain) in extraCerts. It keeps
 * no transaction state.
 *
 * Fault injection: --latency-ms N delays every answer; SIGUSR1 stalls (requests are held
 * unanswered), SIGUSR2 resumes (held requests are answered), --stall starts stalled.
 * A CA that cannot take everything: --rate N issues at most N certificates per second
 * (ir/cr/p10cr beyond it get HTTP 503, as from a throttling CA or its load balancer);
 * --down-ms N answers every request with HTTP 503 for the first N ms (--down-status S: with
 * HTTP S instead, e.g. 500 or 502: a CA, or a gateway before it, that may have acted on the
 * request). It remembers every
 * transaction it issued for and counts one asked for twice (dup_txid: a request sent to
 * the CA more than once), and the most certificates issued in one second (peak_ip_s).
 * SIGTERM/SIGINT or --max-seconds stop it; it prints its counters on exit.
 *
 *   bench_mockca --listen 127.0.0.1:PORT --cert srv.pem --key srv.key [--chain chain.pem]
 *                --issuer-cert ica.pem --issuer-key ica.key [--trust anchors.pem]
 *                [--threads N] [--latency-ms N] [--stall] [--rate N] [--down-ms N]
 *                [--down-status S] [--max-seconds S]
 */
#include "bench.h"

#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "raproxy/buf.h"
#include "raproxy/cert.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/err.h"
#include "raproxy/http.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define CMP_CTYPE           "application/pkixcmp"
#define MAX_THREADS         16
#define LISTEN_BACKLOG      4096
#define ARENA_BYTES         (256u * 1024u)
#define HTTP_MAX_HEADER     8192u
#define HTTP_MAX_BODY       (1024u * 1024u)
#define IN_BUF_MAX          (2u * 1024u * 1024u)
#define READ_CHUNK          65536u
#define ISSUED_DAYS         365
#define SERIAL_LEN          16
#define CACHE_SLOTS         65536u /* verified certificates remembered per thread */
#define CACHE_MAX_LOAD      (CACHE_SLOTS / 4u * 3u)
#define MAX_EXTRA           (1 + BENCH_PEM_MAX_CERTS)
#define DEFAULT_MAX_SECONDS 3600

struct ca_opts {
    const char *listen, *cert, *key, *chain, *issuer_cert, *issuer_key, *trust;
    unsigned threads;
    unsigned latency_ms;
    bool stall;
    unsigned max_seconds;
    unsigned rate;        /* certificates per second; 0: unlimited */
    unsigned down_ms;     /* HTTP 503 to everything for this long after the start … */
    unsigned down_status; /* … or this status instead (0: 503) */
};

/* Read-only after start: the certificates every thread sends. */
struct ca_shared {
    struct ca_opts o;
    struct sockaddr_in addr;
    struct rp_view extra[MAX_EXTRA]; /* protection cert, then --chain */
    size_t n_extra;
    struct rp_cert prot_cert;
    struct rp_cert issuer_cert;
};

struct ca_stats {
    uint64_t requests, ip, pkiconf, errors, verified, verify_failed, conns, held;
    uint64_t by_ra; /* verified requests signed by an RA certificate (EKU cmcRA) */
    uint64_t throttled, down, dup_txid;
};

/* Set of SHA-256 hashes of certificates whose chain verified. */
struct ca_cache {
    uint8_t (*slot)[WC_SHA256_DIGEST_SIZE];
    uint8_t *used;
    size_t n;
};

struct ca_conn;

struct ca_thread {
    pthread_t tid;
    const struct ca_shared *sh;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_signal_t sig_stall, sig_resume, sig_term, sig_int;
    uv_timer_t stop_timer;
    WC_RNG rng;
    struct bench_key prot_key, issuer_key;
    struct bench_issuer issuer;
    WOLFSSL_CERT_MANAGER *cm;
    struct ca_cache cache;
    struct rp_arena arena;
    struct ca_conn *held; /* connections with a request waiting for the stall to end */
    struct ca_stats st;
    int rc;
};

enum ca_conn_state { CONN_READING, CONN_DELAYED, CONN_HELD, CONN_CLOSING };

struct ca_conn {
    uv_tcp_t tcp;
    uv_timer_t delay;
    unsigned handles; /* open libuv handles; freed when the last one closes */
    struct ca_thread *th;
    enum ca_conn_state state;
    struct rp_http_server http;
    struct rp_http_req *req; /* the request being answered */
    struct rp_buf in;        /* bytes received and not yet parsed */
    struct ca_conn *next_held, **prev_held;
};

struct ca_write {
    uv_write_t req;
    struct rp_buf buf;
};

static atomic_int g_stalled;

/* Certificates issued per second since the start (the peak is reported), and the
 * transactions issued for (a second issuance request of one is a request sent twice). */
#define TXID_SLOTS     (1u << 21)
#define TXID_KEY       32
#define HTTP_THROTTLED 503
static uint64_t g_t0_ns;
static atomic_uint_fast64_t *g_ip_per_s;
static size_t g_ip_seconds;
static pthread_mutex_t g_txids_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t (*g_txids)[TXID_KEY + 1]; /* [0]: length (0: empty), then the txid */
static size_t g_n_txids;

static uint64_t seconds_since_start(void)
{
    return (bench_now_ns() - g_t0_ns) / 1000000000u;
}

/* true when this transaction was issued for before (recorded otherwise). */
static bool txid_seen(struct rp_view txid)
{
    if (!g_txids || txid.len == 0 || txid.len > TXID_KEY)
        return false;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < txid.len; i++)
        h = (h ^ txid.p[i]) * 0x100000001b3ull;
    bool seen = false;
    pthread_mutex_lock(&g_txids_lock);
    if (g_n_txids < TXID_SLOTS / 4 * 3) {
        for (size_t i = h & (TXID_SLOTS - 1);; i = (i + 1) & (TXID_SLOTS - 1)) {
            if (g_txids[i][0] == 0) {
                g_txids[i][0] = (uint8_t)txid.len;
                memcpy(&g_txids[i][1], txid.p, txid.len);
                g_n_txids++;
                break;
            }
            if (g_txids[i][0] == txid.len && memcmp(&g_txids[i][1], txid.p, txid.len) == 0) {
                seen = true;
                break;
            }
        }
    }
    pthread_mutex_unlock(&g_txids_lock);
    return seen;
}

/* --rate: one more certificate this second, if the cap allows. */
static bool rate_take(const struct ca_opts *o)
{
    uint64_t sec = seconds_since_start();
    if (!g_ip_per_s || sec >= g_ip_seconds)
        return true;
    uint_fast64_t n = atomic_fetch_add(&g_ip_per_s[sec], 1);
    if (o->rate && n >= o->rate) {
        atomic_fetch_sub(&g_ip_per_s[sec], 1);
        return false;
    }
    return true;
}

static void conn_process(struct ca_conn *c);

/* ---- verified-certificate cache ---- */

static size_t cache_index(const uint8_t *h)
{
    size_t v;
    memcpy(&v, h, sizeof v);
    return v & (CACHE_SLOTS - 1);
}

static bool cache_has(const struct ca_cache *c, const uint8_t *h)
{
    for (size_t i = cache_index(h);; i = (i + 1) & (CACHE_SLOTS - 1)) {
        if (!c->used[i])
            return false;
        if (memcmp(c->slot[i], h, WC_SHA256_DIGEST_SIZE) == 0)
            return true;
    }
}

static void cache_add(struct ca_cache *c, const uint8_t *h)
{
    if (c->n >= CACHE_MAX_LOAD) {
        memset(c->used, 0, CACHE_SLOTS);
        c->n = 0;
    }
    size_t i = cache_index(h);
    while (c->used[i])
        i = (i + 1) & (CACHE_SLOTS - 1);
    c->used[i] = 1;
    memcpy(c->slot[i], h, WC_SHA256_DIGEST_SIZE);
    c->n++;
}

/* One certificate against the anchors (and intermediates learnt so far), cached. */
static bool cert_trusted(struct ca_thread *th, struct rp_view der, bool as_ca)
{
    uint8_t h[WC_SHA256_DIGEST_SIZE];
    if (wc_Sha256Hash(der.p, (word32)der.len, h) != 0)
        return false;
    if (cache_has(&th->cache, h))
        return true;
    if (wolfSSL_CertManagerVerifyBuffer(th->cm, der.p, (long)der.len, WOLFSSL_FILETYPE_ASN1) !=
        WOLFSSL_SUCCESS)
        return false;
    if (as_ca && wolfSSL_CertManagerLoadCABuffer(th->cm, der.p, (long)der.len,
                                                 WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
        return false;
    cache_add(&th->cache, h);
    return true;
}

/* The protection of m: the signer is extraCerts[0], its chain the rest. 0 or a failInfo. */
static int verify_protection(struct ca_thread *th, const struct rp_cmp_msg *m)
{
    struct rp_cert signer;
    struct rp_view part;
    if (!m->has_protection || m->n_extra_certs == 0)
        return RP_FI_WRONG_INTEGRITY;
    for (size_t i = m->n_extra_certs; i-- > 1;)
        cert_trusted(th, m->extra_certs[i], true); /* intermediates, top down */
    if (rp_cert_parse(m->extra_certs[0].p, m->extra_certs[0].len, &signer) != RP_OK ||
        !cert_trusted(th, m->extra_certs[0], false))
        return RP_FI_SIGNER_NOT_TRUSTED;
    if (rp_cmp_protected_part(m, &th->arena, &part) != RP_OK)
        return RP_FI_SYSTEM_FAILURE;
    int rc = bench_verify(signer.spki, m->header.protection_alg.oid, part, m->protection.bytes);
    if (rc == RP_E_BAD_ALG)
        return RP_FI_BAD_ALG;
    if (rc != 0)
        return RP_FI_BAD_MESSAGE_CHECK;
    if (rp_cert_has_eku(&signer, RP_OID_VIEW(RP_OID_KP_CMC_RA)))
        th->st.by_ra++;
    return RP_FI_NONE;
}

/* ---- answers ---- */

static int issue(struct ca_thread *th, const struct rp_cmp_msg *m, struct rp_view *body)
{
    struct rp_view spki, subject;
    int64_t req_id = -1; /* p10cr: RFC 9810 §5.3.4 */
    uint8_t serial[SERIAL_LEN];
    struct rp_view cert;
    int rc;
    if (m->body.type == RP_CMP_P10CR) {
        spki = m->body.p10.spki_raw;
        subject = m->body.p10.subject;
    } else {
        if (m->body.reqs.n < 1)
            return RP_E_BAD_REQUEST;
        const struct rp_crmf_req *r = &m->body.reqs.reqs[0];
        req_id = r->cert_req_id;
        subject = r->tmpl.subject;
        if ((rc = rp_crmf_template_spki(&r->tmpl, &th->arena, &spki)) != RP_OK)
            return RP_E_BAD_CERT_TEMPLATE;
    }
    if (!rp_view_present(subject))
        return RP_E_BAD_CERT_TEMPLATE;
    if ((rc = bench_random(&th->rng, serial, sizeof serial)) != RP_OK)
        return rc;
    serial[0] = (uint8_t)((serial[0] & 0x7f) | 0x01);
    rc = bench_enc_cert(&th->arena, &th->rng, &th->issuer, rp_view_make(serial, sizeof serial),
                        subject, spki, ISSUED_DAYS, &cert);
    if (rc == RP_OK)
        rc = bench_cmp_enc_body_ip(&th->arena, req_id, cert, body);
    return rc;
}

/* The signed answer to the request body in `p` (a CMP error when it is not acceptable).
 * RP_E_RATE_LIMITED: over --rate, answer HTTP 503 without a body. */
static int answer_cmp(struct ca_thread *th, struct rp_view p, struct rp_view *out)
{
    struct rp_cmp_msg m;
    struct rp_view body = RP_VIEW_NULL, header;
    uint8_t nonce[RP_CMP_NONCE_LEN];
    int fi = RP_FI_NONE, rc;
    bool decoded = rp_cmp_decode(p.p, p.len, &th->arena, &m, NULL) == RP_OK;
    if (!decoded)
        fi = RP_FI_BAD_DATA_FORMAT;
    bool issuing = decoded && (m.body.type == RP_CMP_IR || m.body.type == RP_CMP_CR ||
                               m.body.type == RP_CMP_P10CR);
    if (issuing && !rate_take(&th->sh->o)) {
        th->st.throttled++;
        return RP_E_RATE_LIMITED;
    }
    if (issuing && txid_seen(m.header.transaction_id.val))
        th->st.dup_txid++;
    if (decoded && th->cm) {
        fi = verify_protection(th, &m);
        if (fi == RP_FI_NONE)
            th->st.verified++;
        else
            th->st.verify_failed++;
    }
    if (fi == RP_FI_NONE) {
        switch (m.body.type) {
        case RP_CMP_IR:
        case RP_CMP_CR:
        case RP_CMP_P10CR:
            rc = issue(th, &m, &body);
            if (rc != RP_OK)
                fi = rp_err_failinfo(rc) == RP_FI_NONE ? RP_FI_SYSTEM_FAILURE : rp_err_failinfo(rc);
            else
                th->st.ip++;
            break;
        case RP_CMP_CERTCONF:
            rc = rp_cmp_enc_body_pkiconf(&th->arena, &body);
            if (rc == RP_OK)
                th->st.pkiconf++;
            else
                fi = RP_FI_SYSTEM_FAILURE;
            break;
        default:
            fi = RP_FI_BAD_REQUEST;
        }
    }
    if (fi != RP_FI_NONE) {
        th->st.errors++;
        rc = rp_cmp_enc_body_error(&th->arena, (enum rp_failinfo)fi, RP_CMP_STATUS_REJECTION,
                                   rp_view_str("rejected by bench_mockca"), &body);
        if (rc != RP_OK)
            return rc;
    }
    if ((rc = bench_random(&th->rng, nonce, sizeof nonce)) != RP_OK)
        return rc;
    rc = rp_cmp_enc_response_header(
        &th->arena, decoded ? &m : NULL, th->sh->prot_cert.subject, th->sh->prot_cert.ski,
        bench_alg_ecdsa_sha256(), rp_view_make(nonce, sizeof nonce), (int64_t)time(NULL), &header);
    if (rc == RP_OK)
        rc = bench_cmp_sign_message(&th->arena, &th->rng, &th->prot_key, header, body,
                                    th->sh->extra, th->sh->n_extra, out);
    return rc;
}

/* ---- connections ---- */

static void on_handle_closed(uv_handle_t *h)
{
    struct ca_conn *c = h->data;
    if (--c->handles > 0)
        return;
    rp_http_server_free(&c->http);
    rp_buf_free(&c->in);
    free(c);
}

static void unhold(struct ca_conn *c)
{
    if (!c->prev_held)
        return;
    *c->prev_held = c->next_held;
    if (c->next_held)
        c->next_held->prev_held = c->prev_held;
    c->next_held = NULL;
    c->prev_held = NULL;
}

static void conn_close(struct ca_conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    unhold(c);
    uv_close((uv_handle_t *)&c->delay, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_written(uv_write_t *req, int status)
{
    struct ca_write *w = (struct ca_write *)req;
    (void)status;
    rp_buf_free(&w->buf);
    free(w);
}

static int conn_write(struct ca_conn *c, int status, const char *ctype, struct rp_view body,
                      bool keep_alive)
{
    struct ca_write *w = calloc(1, sizeof *w);
    if (!w)
        return RP_E_NOMEM;
    rp_buf_init(&w->buf, 0);
    int rc = rp_http_write_response(&w->buf, status, ctype, body.p, body.len, keep_alive, NULL);
    uv_buf_t b = uv_buf_init((char *)rp_buf_head(&w->buf), (unsigned)rp_buf_avail(&w->buf));
    if (rc == RP_OK && uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) == 0)
        return RP_OK;
    rp_buf_free(&w->buf);
    free(w);
    return RP_E_IO;
}

/* Answer c->req now, then go on with whatever else was received. */
static void conn_answer(struct ca_conn *c)
{
    struct ca_thread *th = c->th;
    struct rp_view resp;
    bool keep = c->req->keep_alive;
    rp_arena_reset(&th->arena);
    bool down = th->sh->o.down_ms && bench_now_ns() - g_t0_ns < th->sh->o.down_ms * 1000000ull;
    int rc = down ? RP_E_SHUTDOWN : answer_cmp(th, c->req->body, &resp);
    if (rc == RP_OK) {
        rc = conn_write(c, 200, CMP_CTYPE, resp, keep);
    } else if (rc == RP_E_RATE_LIMITED || rc == RP_E_SHUTDOWN) {
        th->st.down += down;
        int status = down && th->sh->o.down_status ? (int)th->sh->o.down_status : HTTP_THROTTLED;
        rc = conn_write(c, status, "text/plain",
                        rp_view_str(down ? "bench_mockca: down\n" : "bench_mockca: throttled\n"),
                        keep);
    } else {
        rc = conn_write(c, 500, "text/plain", rp_view_str("bench_mockca: internal error\n"), false);
    }
    rp_http_server_next(&c->http);
    c->req = NULL;
    if (rc != RP_OK || !keep) {
        conn_close(c);
        return;
    }
    c->state = CONN_READING;
    conn_process(c);
}

static void on_delay(uv_timer_t *t)
{
    conn_answer(t->data);
}

static void conn_dispatch(struct ca_conn *c)
{
    struct ca_thread *th = c->th;
    th->st.requests++;
    if (atomic_load(&g_stalled)) {
        c->state = CONN_HELD;
        c->next_held = th->held;
        if (th->held)
            th->held->prev_held = &c->next_held;
        c->prev_held = &th->held;
        th->held = c;
        th->st.held++;
    } else if (th->sh->o.latency_ms) {
        c->state = CONN_DELAYED;
        uv_timer_start(&c->delay, on_delay, th->sh->o.latency_ms, 0);
    } else {
        conn_answer(c);
    }
}

static void conn_process(struct ca_conn *c)
{
    while (c->state == CONN_READING && rp_buf_avail(&c->in)) {
        size_t used = 0;
        struct rp_http_req *req = NULL;
        int rc =
            rp_http_server_feed(&c->http, rp_buf_head(&c->in), rp_buf_avail(&c->in), &used, &req);
        rp_buf_consume(&c->in, used);
        if (rc == RP_E_AGAIN)
            break;
        if (rc != RP_OK || req->method != HTTP_POST) {
            conn_write(c, rc != RP_OK ? rp_err_http(rc) : 405, "text/plain",
                       rp_view_str("bench_mockca: bad request\n"), false);
            conn_close(c);
            return;
        }
        c->req = req;
        conn_dispatch(c);
    }
    if (c->state != CONN_CLOSING)
        rp_buf_compact(&c->in);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct ca_conn *c = h->data;
    (void)suggested;
    if (rp_buf_reserve(&c->in, READ_CHUNK) != RP_OK) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)c->in.data + c->in.len, (unsigned)(c->in.cap - c->in.len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct ca_conn *c = s->data;
    (void)buf;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->in.len += (size_t)n;
    conn_process(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ca_thread *th = server->data;
    struct rp_http_limits lim = {HTTP_MAX_HEADER, HTTP_MAX_BODY};
    if (status < 0)
        return;
    struct ca_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->th = th;
    rp_buf_init(&c->in, IN_BUF_MAX);
    rp_http_server_init(&c->http, &lim);
    uv_tcp_init(&th->loop, &c->tcp);
    uv_timer_init(&th->loop, &c->delay);
    c->tcp.data = c->delay.data = c;
    c->handles = 2;
    th->st.conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
}

/* ---- threads ---- */

static void release_held(struct ca_thread *th)
{
    while (th->held) {
        struct ca_conn *c = th->held;
        unhold(c);
        c->state = CONN_READING;
        conn_answer(c);
    }
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (h->type == UV_TCP && h->data && h->data != h->loop->data) {
        conn_close(h->data); /* a connection: both of its handles */
        return;
    }
    if (h->type != UV_TIMER || !h->data || h->data == h->loop->data)
        uv_close(h, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct ca_thread *th = s->data;
    if (signum == SIGUSR1) {
        atomic_store(&g_stalled, 1);
    } else if (signum == SIGUSR2) {
        atomic_store(&g_stalled, 0);
        release_held(th);
    } else {
        uv_walk(&th->loop, close_any, NULL);
    }
}

static void on_stop_timer(uv_timer_t *t)
{
    struct ca_thread *th = t->data;
    uv_walk(&th->loop, close_any, NULL);
}

static int bind_listener(struct ca_thread *th)
{
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (const struct sockaddr *)&th->sh->addr, sizeof th->sh->addr) != 0) {
        perror("bench_mockca: bind");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    uv_tcp_init(&th->loop, &th->listener);
    th->listener.data = th;
    if (uv_tcp_open(&th->listener, fd) != 0 ||
        uv_listen((uv_stream_t *)&th->listener, LISTEN_BACKLOG, on_connection) != 0) {
        fprintf(stderr, "bench_mockca: listen failed\n");
        return -1;
    }
    return 0;
}

static void signal_start(struct ca_thread *th, uv_signal_t *s, int signum)
{
    uv_signal_init(&th->loop, s);
    s->data = th;
    uv_signal_start(s, on_signal, signum);
}

static int thread_init(struct ca_thread *th)
{
    const struct ca_opts *o = &th->sh->o;
    if (uv_loop_init(&th->loop) != 0 || wc_InitRng(&th->rng) != 0 ||
        rp_arena_new(&th->arena, ARENA_BYTES) != RP_OK ||
        bench_key_load(&th->prot_key, o->key) != 0 ||
        bench_key_load(&th->issuer_key, o->issuer_key) != 0)
        return -1;
    th->loop.data = th;
    th->issuer = (struct bench_issuer){&th->issuer_key, th->sh->issuer_cert.raw,
                                       th->sh->issuer_cert.subject, th->sh->issuer_cert.ski};
    if (o->trust) {
        th->cm = wolfSSL_CertManagerNew();
        th->cache.slot = calloc(CACHE_SLOTS, sizeof *th->cache.slot);
        th->cache.used = calloc(CACHE_SLOTS, 1);
        if (!th->cm || !th->cache.slot || !th->cache.used ||
            wolfSSL_CertManagerLoadCA(th->cm, o->trust, NULL) != WOLFSSL_SUCCESS) {
            fprintf(stderr, "bench_mockca: cannot load trust anchors %s\n", o->trust);
            return -1;
        }
    }
    if (bind_listener(th) != 0)
        return -1;
    signal_start(th, &th->sig_stall, SIGUSR1);
    signal_start(th, &th->sig_resume, SIGUSR2);
    signal_start(th, &th->sig_term, SIGTERM);
    signal_start(th, &th->sig_int, SIGINT);
    uv_timer_init(&th->loop, &th->stop_timer);
    th->stop_timer.data = th;
    uv_timer_start(&th->stop_timer, on_stop_timer, (uint64_t)o->max_seconds * 1000u, 0);
    return 0;
}

static void thread_free(struct ca_thread *th)
{
    uv_walk(&th->loop, close_any, NULL);
    uv_run(&th->loop, UV_RUN_DEFAULT);
    uv_loop_close(&th->loop);
    if (th->cm)
        wolfSSL_CertManagerFree(th->cm);
    free(th->cache.slot);
    free(th->cache.used);
    bench_key_free(&th->prot_key);
    bench_key_free(&th->issuer_key);
    rp_arena_free(&th->arena);
    wc_FreeRng(&th->rng);
}

static void *thread_main(void *arg)
{
    struct ca_thread *th = arg;
    uv_run(&th->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- setup ---- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_mockca --listen 127.0.0.1:PORT --cert PEM --key PEM "
                    "[--chain PEM] --issuer-cert PEM --issuer-key PEM [--trust PEM] "
                    "[--threads N] [--latency-ms N] [--stall] [--rate N] [--down-ms N] "
                    "[--down-status S] [--max-seconds S]\n");
    exit(2);
}

static void parse(int argc, char **argv, struct ca_opts *o)
{
    static const struct option lo[] = {
        {"listen", 1, 0, 'l'},  {"cert", 1, 0, 'c'},        {"key", 1, 0, 'k'},
        {"chain", 1, 0, 'C'},   {"issuer-cert", 1, 0, 'i'}, {"issuer-key", 1, 0, 'I'},
        {"trust", 1, 0, 't'},   {"threads", 1, 0, 'T'},     {"latency-ms", 1, 0, 'L'},
        {"stall", 0, 0, 's'},   {"max-seconds", 1, 0, 'm'}, {"rate", 1, 0, 'r'},
        {"down-ms", 1, 0, 'D'}, {"down-status", 1, 0, 'S'}, {0, 0, 0, 0}};
    int c;
    *o = (struct ca_opts){.threads = 1, .max_seconds = DEFAULT_MAX_SECONDS};
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'l':
            o->listen = optarg;
            break;
        case 'c':
            o->cert = optarg;
            break;
        case 'k':
            o->key = optarg;
            break;
        case 'C':
            o->chain = optarg;
            break;
        case 'i':
            o->issuer_cert = optarg;
            break;
        case 'I':
            o->issuer_key = optarg;
            break;
        case 't':
            o->trust = optarg;
            break;
        case 'T':
            o->threads = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'L':
            o->latency_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 's':
            o->stall = true;
            break;
        case 'm':
            o->max_seconds = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            o->rate = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'D':
            o->down_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'S':
            o->down_status = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    }
    if (!o->listen || !o->cert || !o->key || !o->issuer_cert || !o->issuer_key || o->threads < 1 ||
        o->threads > MAX_THREADS || o->max_seconds < 1)
        usage();
}

/* "127.0.0.1:PORT" */
static int parse_addr(const char *s, struct sockaddr_in *out)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    return uv_ip4_addr(host, atoi(colon + 1), out) == 0 ? 0 : -1;
}

static int load_certs(struct ca_shared *sh, uint8_t **owned, size_t *n_owned)
{
    size_t len[BENCH_PEM_MAX_CERTS];
    uint8_t *der[BENCH_PEM_MAX_CERTS];
    int n = bench_pem_certs(sh->o.cert, der, len, 1);
    if (n != 1 || rp_cert_parse(der[0], len[0], &sh->prot_cert) != RP_OK)
        return -1;
    owned[(*n_owned)++] = der[0];
    sh->extra[sh->n_extra++] = sh->prot_cert.raw;
    if (sh->o.chain) {
        n = bench_pem_certs(sh->o.chain, der, len, BENCH_PEM_MAX_CERTS);
        if (n < 0)
            return -1;
        for (int i = 0; i < n; i++) {
            owned[(*n_owned)++] = der[i];
            sh->extra[sh->n_extra++] = rp_view_make(der[i], len[i]);
        }
    }
    n = bench_pem_certs(sh->o.issuer_cert, der, len, 1);
    if (n != 1 || rp_cert_parse(der[0], len[0], &sh->issuer_cert) != RP_OK)
        return -1;
    owned[(*n_owned)++] = der[0];
    return 0;
}

static void print_stats(const struct ca_thread *th, unsigned n)
{
    struct ca_stats s = {0};
    for (unsigned i = 0; i < n; i++) {
        s.requests += th[i].st.requests;
        s.ip += th[i].st.ip;
        s.pkiconf += th[i].st.pkiconf;
        s.errors += th[i].st.errors;
        s.verified += th[i].st.verified;
        s.verify_failed += th[i].st.verify_failed;
        s.conns += th[i].st.conns;
        s.held += th[i].st.held;
        s.by_ra += th[i].st.by_ra;
        s.throttled += th[i].st.throttled;
        s.down += th[i].st.down;
        s.dup_txid += th[i].st.dup_txid;
    }
    uint64_t peak = 0;
    for (size_t i = 0; g_ip_per_s && i < g_ip_seconds; i++)
        if (atomic_load(&g_ip_per_s[i]) > peak)
            peak = atomic_load(&g_ip_per_s[i]);
    printf("MOCKCA requests=%llu ip=%llu pkiconf=%llu errors=%llu verified=%llu "
           "verify_failed=%llu by_ra=%llu conns=%llu held=%llu throttled=%llu down=%llu "
           "dup_txid=%llu peak_ip_s=%llu\n",
           (unsigned long long)s.requests, (unsigned long long)s.ip, (unsigned long long)s.pkiconf,
           (unsigned long long)s.errors, (unsigned long long)s.verified,
           (unsigned long long)s.verify_failed, (unsigned long long)s.by_ra,
           (unsigned long long)s.conns, (unsigned long long)s.held, (unsigned long long)s.throttled,
           (unsigned long long)s.down, (unsigned long long)s.dup_txid, (unsigned long long)peak);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static struct ca_shared sh;
    static struct ca_thread th[MAX_THREADS];
    uint8_t *owned[MAX_EXTRA + 1];
    size_t n_owned = 0;
    unsigned started = 0;
    int status = 1;
    parse(argc, argv, &sh.o);
    signal(SIGPIPE, SIG_IGN);
    atomic_store(&g_stalled, sh.o.stall ? 1 : 0);
    g_t0_ns = bench_now_ns();
    g_ip_seconds = (size_t)sh.o.max_seconds + 1;
    g_ip_per_s = calloc(g_ip_seconds, sizeof *g_ip_per_s);
    g_txids = calloc(TXID_SLOTS, sizeof *g_txids);
    if (!g_ip_per_s || !g_txids) {
        fprintf(stderr, "bench_mockca: out of memory\n");
        return 1;
    }
    wolfSSL_Init();
    if (parse_addr(sh.o.listen, &sh.addr) != 0 || load_certs(&sh, owned, &n_owned) != 0) {
        fprintf(stderr, "bench_mockca: bad --listen or certificate files\n");
        goto out;
    }
    for (unsigned i = 0; i < sh.o.threads; i++) {
        th[i].sh = &sh;
        if (thread_init(&th[i]) != 0 ||
            pthread_create(&th[i].tid, NULL, thread_main, &th[i]) != 0) {
            thread_free(&th[i]);
            if (started)
                kill(getpid(), SIGTERM); /* stops the threads already running */
            goto join;
        }
        started++;
    }
    printf("bench_mockca: listening on %s, %u thread(s)%s\n", sh.o.listen, sh.o.threads,
           sh.o.trust ? ", verifying protection" : "");
    fflush(stdout);
    status = 0;
join:
    for (unsigned i = 0; i < started; i++) {
        pthread_join(th[i].tid, NULL);
        thread_free(&th[i]);
    }
    print_stats(th, started);
out:
    for (size_t i = 0; i < n_owned; i++)
        free(owned[i]);
    free(g_ip_per_s);
    free(g_txids);
    wolfSSL_Cleanup();
    return status;
}
