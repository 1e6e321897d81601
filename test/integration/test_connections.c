/* The connection layer against clients that misbehave on purpose, with a real raproxy and
 * real sockets: deep pipelining (no re-entrancy, bounded stack), answers in order and once,
 * a peer that never reads (bounded memory), one refusal per connection. */
#include "fixtures.h"
#include "httpc.h"
#include "msgbuild.h"
#include "raproxy/buf.h"
#include "raproxy/err.h"
#include "raproxy/tls.h"
#include "support.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

struct env {
    char *dir;
    int port, tls_port, admin_port, ca_port;
    int ca_fd; /* a listening socket standing in for the CA (connects succeed), or -1 */
    char cfg[600];
    struct rpt_proc rp;
};

struct opts {
    const char *http;      /* lines of the http: section, indented by two */
    rlim_t stack;          /* RLIMIT_STACK for raproxy (0: inherited) */
    rlim_t nofile;         /* RLIMIT_NOFILE for raproxy (0: inherited) */
    bool tls;              /* a TLS listener besides the plain one */
    const char *log_level; /* default warn */
    bool ca;               /* something accepts on the CA port: /readyz finds it reachable */
    const char *top;       /* more top-level lines (workers, worker_queue_ms, ...) */
    bool domain;           /* the RA key and a manufacturer domain on /pkix/ */
};

/* Plain listener (and a TLS one on request) and admin; the CA port has nothing listening,
 * so a relayed request gets 502 after a failed connect: an answer that comes later than
 * the synchronous ones. */
static void env_up(struct env *e, const struct opts *o)
{
    memset(e, 0, sizeof *e);
    e->dir = rpt_tmpdir();
    e->port = rpt_free_port();
    e->tls_port = rpt_free_port();
    e->admin_port = rpt_free_port();
    e->ca_port = rpt_free_port();
    e->ca_fd = -1;
    if (o->ca) {
        e->ca_fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)e->ca_port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert_eq(bind(e->ca_fd, (struct sockaddr *)&a, sizeof a), 0);
        cr_assert_eq(listen(e->ca_fd, 64), 0);
    }
    char tls[1200] = "";
    if (o->tls) {
        const char *pki = rpt_pki();
        cr_assert_not_null(pki);
        snprintf(tls, sizeof tls,
                 "  - address: 127.0.0.1:%d\n"
                 "    tls: {cert: %s/tls/server.pem, key: %s/tls/server.key}\n",
                 e->tls_port, pki, pki);
    }
    char domain[1500] = "";
    if (o->domain) {
        const char *pki = rpt_pki();
        cr_assert_not_null(pki);
        snprintf(domain, sizeof domain,
                 "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
                 "chain: %s/operator/ra.chain.pem}\n"
                 "domains:\n"
                 "  - name: manufacturer\n"
                 "    trust_anchors: [%s/vendor/root.pem]\n"
                 "    allow: [ir, cr, p10cr, certConf, genm, pollReq, error]\n"
                 "    protection: both\n"
                 "    mac_secrets: %s/mac/secrets.txt\n",
                 pki, pki, pki, pki, pki);
    }
    char buf[8192];
    snprintf(buf, sizeof buf,
             "%s%s"
             "log_level: %s\n"
             "loops: 1\n"
             "%s"
             "default_path: /pkix/\n"
             "listeners:\n"
             "  - address: 127.0.0.1:%d\n"
             "    tls: off\n"
             "%s"
             "admin:\n"
             "  address: 127.0.0.1:%d\n"
             "upstream:\n"
             "  url: http://127.0.0.1:%d/pkix/\n"
             "  connect_timeout_ms: 2000\n"
             "  max_connections: 1\n"
             "  keep_alive: false\n"
             "%s%s",
             o->top ? o->top : "", domain, o->log_level ? o->log_level : "warn",
             o->top && strstr(o->top, "workers:") ? "" : "workers: 1\n", e->port, tls,
             e->admin_port, e->ca_port, o->http ? "http:\n" : "", o->http ? o->http : "");
    snprintf(e->cfg, sizeof e->cfg, "%s/raproxy.yaml", e->dir);
    cr_assert_eq(rpt_write_file(e->cfg, buf, strlen(buf)), 0);
    /* limits are inherited through exec; glibc sizes every thread's stack from RLIMIT_STACK */
    struct rlimit old_stack, old_nofile;
    getrlimit(RLIMIT_STACK, &old_stack);
    getrlimit(RLIMIT_NOFILE, &old_nofile);
    if (o->stack)
        cr_assert_eq(setrlimit(RLIMIT_STACK, &(struct rlimit){o->stack, old_stack.rlim_max}), 0);
    if (o->nofile)
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &(struct rlimit){o->nofile, old_nofile.rlim_max}), 0);
    int rc = rpt_raproxy_start(&e->rp, e->dir, e->cfg, e->port);
    setrlimit(RLIMIT_STACK, &old_stack);
    setrlimit(RLIMIT_NOFILE, &old_nofile);
    cr_assert_eq(rc, 0, "raproxy did not start, see %s", e->rp.log);
}

static void env_down(struct env *e)
{
    int st = rpt_stop(&e->rp, SIGTERM, 15000);
    if (e->ca_fd >= 0)
        close(e->ca_fd);
    cr_expect_eq(st, 0, "raproxy exit status %d, see %s", st, e->rp.log);
    cr_expect_eq(rpt_file_count(e->rp.log, "AddressSanitizer"), 0);
    if (!getenv("RPT_KEEP")) /* keep the logs for a look after a failure */
        rpt_rmdir(e->dir);
    free(e->dir);
}

static void expect_alive(struct env *e)
{
    int st = 0;
    cr_assert_eq(rpt_alive(&e->rp, &st), 1, "raproxy died (status %d), see %s", st, e->rp.log);
    struct rpt_resp r;
    cr_assert_eq(rpt_http(e->admin_port, "GET", "/livez", NULL, NULL, 0, 5000, &r), 0);
    cr_expect_eq(r.status, 200);
    rpt_resp_free(&r);
}

/* ---- requests and answers on one socket --------------------------------------------- */

static const char *const relay_req = "POST /pkix/ HTTP/1.1\r\nHost: x\r\n"
                                     "Content-Type: application/pkixcmp\r\n"
                                     "Content-Length: 5\r\n\r\n0\x03\x02\x01\x02";
static const char *const get_404 = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
static const char *const get_405 = "GET /pkix/ HTTP/1.1\r\nHost: x\r\n\r\n";
static const char *const post_415 = "POST /pkix/ HTTP/1.1\r\nHost: x\r\n"
                                    "Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n";

struct pattern {
    const char *req;
    int status;
};

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

struct writer {
    int fd;
    const char *p;
    size_t len;
    ssize_t written;
    int err;
};

/* One write() of the whole buffer (blocking: the kernel takes it as raproxy reads). */
static void *write_all_once(void *arg)
{
    struct writer *w = arg;
    w->written = send(w->fd, w->p, w->len, MSG_NOSIGNAL);
    w->err = w->written < 0 ? errno : 0;
    return NULL;
}

/* How long to wait for an answer beyond the expected ones (there should be none). */
#define EXTRA_ANSWER_MS 300

/* Read answers until EOF, a quiet timeout, or `expect` answers (then only EXTRA_ANSWER_MS
 * more, to catch an answer too many); statuses[i] is the i-th answer's status (up to max).
 * Returns how many complete answers arrived. */
static int read_answers(int fd, int *statuses, int max, int expect, int quiet_ms)
{
    struct timeval tv = {quiet_ms / 1000, (quiet_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t cap = 1u << 20, len = 0;
    char *b = malloc(cap);
    int n = 0;
    bool short_wait = false;
    for (;;) {
        if (len == cap)
            break; /* one answer larger than 1 MiB: not ours */
        if (!short_wait && expect > 0 && n >= expect) {
            struct timeval extra = {0, EXTRA_ANSWER_MS * 1000};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &extra, sizeof extra);
            short_wait = true;
        }
        ssize_t r = read(fd, b + len, cap - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        size_t off = 0;
        for (;;) {
            char *end = memmem(b + off, len - off, "\r\n\r\n", 4);
            if (!end)
                break;
            size_t hlen = (size_t)(end + 4 - (b + off));
            int status = 0;
            long clen = 0;
            sscanf(b + off, "HTTP/1.%*d %d", &status);
            char *cl = memmem(b + off, hlen, "Content-Length: ", 16);
            if (cl)
                clen = strtol(cl + 16, NULL, 10);
            if (len - off < hlen + (size_t)clen)
                break;
            if (n < max)
                statuses[n] = status;
            n++;
            off += hlen + (size_t)clen;
        }
        memmove(b, b + off, len - off);
        len -= off;
    }
    free(b);
    return n;
}

/* Pipelines `count` requests in one write, request i from pat[i % npat] (request 0 may be
 * given apart), and checks every answer arrives once and in order. */
static void pipeline_and_check(struct env *e, const char *first, int first_status,
                               const struct pattern *pat, int npat, int count)
{
    struct buf req = {0};
    if (first)
        buf_add(&req, first, strlen(first));
    for (int i = first ? 1 : 0; i < count; i++)
        buf_add(&req, pat[i % npat].req, strlen(pat[i % npat].req));
    int fd = rpt_connect(e->port);
    cr_assert_geq(fd, 0);
    struct writer w = {fd, req.p, req.len, 0, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, write_all_once, &w), 0);
    int *st = calloc((size_t)count + 1, sizeof *st);
    int got = read_answers(fd, st, count + 1, count, 20000);
    shutdown(fd, SHUT_RDWR);
    pthread_join(t, NULL);
    close(fd);
    cr_expect_eq(w.written, (ssize_t)req.len, "write: %zd of %zu (%s)", w.written, req.len,
                 strerror(w.err));
    cr_expect_eq(got, count, "%d answers to %d requests", got, count);
    int bad = -1;
    for (int i = 0; i < got && i < count && bad < 0; i++) {
        int want = i == 0 && first ? first_status : pat[i % npat].status;
        if (st[i] != want)
            bad = i;
    }
    cr_expect_eq(bad, -1, "answer %d out of order: status %d", bad, bad >= 0 ? st[bad] : 0);
    free(st);
    free(req.p);
}

static const struct pattern mixed[] = {{get_404, 404}, {get_405, 405}, {post_415, 415}};

/* Before: answering a request parsed the next one on the same stack, so a client chose the
 * recursion depth (about 17,000 frames here: half of a 1 MiB input buffer of pipelined
 * requests behind one slow relay); raproxy died with SIGSEGV. */
#define DEEP_PIPELINE 100000

Test(connections, pipelined_100000_requests_in_one_write_with_a_256k_stack, .timeout = 300)
{
    struct env e;
    env_up(&e, &(struct opts){.http = "  max_body_bytes: 1048576\n", .stack = 256 * 1024});
    pipeline_and_check(&e, relay_req, 502, mixed, 3, DEEP_PIPELINE);
    expect_alive(&e);
    env_down(&e);
}

/* Before: with a request in flight the input buffer overflowed and the connection answered
 * 413 ahead of the first answer. */
Test(connections, pipelined_answers_come_in_order_and_once, .timeout = 120)
{
    struct env e;
    env_up(&e, &(struct opts){.http = "  max_body_bytes: 1000\n"});
    const struct pattern relay_then_404[] = {{relay_req, 502}, {get_404, 404}};
    pipeline_and_check(&e, NULL, 0, relay_then_404, 2, 1000);
    expect_alive(&e);
    env_down(&e);
}

/* One oversized request, then more bytes in a later read: exactly one refusal, then EOF. */
static void refused_once(const char *http_extra, const char *first, int want)
{
    struct env e;
    env_up(&e, &(struct opts){.http = http_extra});
    int fd = rpt_connect(e.port);
    cr_assert_geq(fd, 0);
    cr_assert_eq(send(fd, first, strlen(first), MSG_NOSIGNAL), (ssize_t)strlen(first));
    usleep(200000); /* the refusal is on its way before the rest arrives */
    for (int i = 0; i < 20; i++)
        if (send(fd, get_404, strlen(get_404), MSG_NOSIGNAL) < 0)
            break;
    int st[8] = {0};
    int got = read_answers(fd, st, 8, 0, 5000);
    close(fd);
    cr_expect_eq(got, 1, "%d answers (first %d, second %d)", got, st[0], st[1]);
    cr_expect_eq(st[0], want);
    expect_alive(&e);
    env_down(&e);
}

Test(connections, header_too_large_is_refused_once, .timeout = 60)
{
    char req[3000];
    int n = snprintf(req, sizeof req, "GET /x HTTP/1.1\r\nHost: x\r\nX-Fill: ");
    memset(req + n, 'a', 2000);
    req[n + 2000] = 0;
    refused_once("  max_header_bytes: 1024\n", req, 431);
}

Test(connections, body_too_large_is_refused_once, .timeout = 60)
{
    refused_once("  max_body_bytes: 1000\n",
                 "POST /pkix/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/pkixcmp\r\n"
                 "Content-Length: 5000\r\n\r\n0123456789",
                 413);
}

/* ---- a client that sends and never reads ------------------------------------------------ */

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* AddressSanitizer keeps freed memory in quarantine (up to 256 MiB): there the bound only
 * says the growth is not the answers' (the plain build says 32 MiB). */
#ifdef __SANITIZE_ADDRESS__
#define RSS_GROWTH_MAX_KB (160 * 1024)
#else
#define RSS_GROWTH_MAX_KB (32 * 1024)
#endif

/* Before: every answer queued in memory; RSS grew by ~70 MB a second until the OOM killer. */
Test(connections, client_that_never_reads_costs_bounded_memory, .timeout = 120)
{
    struct env e;
    env_up(&e, &(struct opts){.http = "  idle_timeout_ms: 30000\n"});
    long before = rss_kb(e.rp.pid);
    int fd = rpt_connect(e.port);
    cr_assert_geq(fd, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small); /* answers stop in the kernel */
    struct buf chunk = {0};
    while (chunk.len < 65536)
        buf_add(&chunk, get_404, strlen(get_404));
    /* bounded: 8 s, or 256 MiB of requests, or 2 s without raproxy taking any more */
    long start = rpt_mono_ms(), last_progress = start;
    size_t sent = 0;
    while (rpt_mono_ms() - start < 8000 && sent < (256u << 20) &&
           rpt_mono_ms() - last_progress < 2000) {
        struct pollfd p = {fd, POLLOUT, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t w = send(fd, chunk.p, chunk.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            last_progress = rpt_mono_ms();
        } else if (w < 0 && errno != EAGAIN) {
            break;
        }
    }
    long after = rss_kb(e.rp.pid);
    /* a legitimate client beside it is served at once */
    struct rpt_resp r;
    cr_assert_eq(rpt_http(e.port, "GET", "/x", NULL, NULL, 0, 5000, &r), 0);
    cr_expect_eq(r.status, 404);
    rpt_resp_free(&r);
    close(fd);
    cr_log_info("sent %zu bytes of requests; RSS %ld kB -> %ld kB", sent, before, after);
    cr_expect_lt(after - before, RSS_GROWTH_MAX_KB,
                 "RSS grew from %ld kB to %ld kB (%zu bytes sent)", before, after, sent);
    expect_alive(&e);
    env_down(&e);
}

/* ---- the same over TLS (raproxy's own TLS layer as the client) ------------------------- */

struct tls_client {
    int fd;
    struct rp_tls_ctx *ctx;
    struct rp_tls *t;
    struct rp_buf plain;
};

static int tls_send_out(struct tls_client *c)
{
    struct rp_buf *o = rp_tls_out(c->t);
    size_t n = rp_buf_avail(o);
    if (n && send(c->fd, rp_buf_head(o), n, MSG_NOSIGNAL) != (ssize_t)n)
        return -1;
    rp_buf_consume(o, n);
    return 0;
}

/* Feed what one recv brings; -1 on EOF or error. */
static int tls_recv_some(struct tls_client *c)
{
    uint8_t buf[65536];
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n <= 0 || rp_tls_feed(c->t, buf, (size_t)n) != RP_OK)
        return -1;
    int rc = rp_tls_process(c->t, &c->plain);
    return rc == RP_OK || rc == RP_E_TLS_CLOSED ? 0 : -1;
}

static void tls_connect(struct tls_client *c, int port)
{
    memset(c, 0, sizeof *c);
    struct rp_tls_client_opts co = {0}; /* no verification: the test trusts its own server */
    cr_assert_eq(rp_tls_ctx_client(&c->ctx, &co), RP_OK);
    cr_assert_eq(rp_tls_new(&c->t, c->ctx), RP_OK);
    rp_buf_init(&c->plain, 0);
    c->fd = rpt_connect(port);
    cr_assert_geq(c->fd, 0);
    struct timeval tv = {20, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cr_assert_eq(rp_tls_process(c->t, &c->plain), RP_OK); /* ClientHello */
    while (!rp_tls_handshake_done(c->t)) {
        cr_assert_eq(tls_send_out(c), 0);
        cr_assert_eq(tls_recv_some(c), 0, "TLS handshake with raproxy failed");
    }
    cr_assert_eq(tls_send_out(c), 0);
}

static void tls_close(struct tls_client *c)
{
    close(c->fd);
    rp_tls_free(c->t);
    rp_tls_ctx_unref(c->ctx);
    rp_buf_free(&c->plain);
}

/* Before: the same recursion over TLS crashed raproxy in 5 of 6 attempts. Here the records
 * that arrive while an exchange runs wait inside the TLS session (reading pauses) and are
 * decrypted when the next request may start. */
Test(connections, pipelined_requests_over_tls_in_one_write_with_a_256k_stack, .timeout = 300)
{
    struct env e;
    env_up(&e,
           &(struct opts){.http = "  max_body_bytes: 1048576\n", .stack = 256 * 1024, .tls = true});
    struct tls_client c;
    tls_connect(&c, e.tls_port);
    struct buf req = {0};
    buf_add(&req, relay_req, strlen(relay_req));
    for (int i = 1; i < DEEP_PIPELINE; i++)
        buf_add(&req, mixed[i % 3].req, strlen(mixed[i % 3].req));
    cr_assert_eq(rp_tls_write(c.t, (const uint8_t *)req.p, req.len), RP_OK);
    struct rp_buf *o = rp_tls_out(c.t);
    struct writer w = {c.fd, (const char *)rp_buf_head(o), rp_buf_avail(o), 0, 0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, write_all_once, &w), 0);
    int got = 0, bad = -1;
    while (got < DEEP_PIPELINE && tls_recv_some(&c) == 0) {
        for (;;) {
            const char *b = (const char *)rp_buf_head(&c.plain);
            size_t n = rp_buf_avail(&c.plain);
            const char *end = memmem(b, n, "\r\n\r\n", 4);
            if (!end)
                break;
            size_t hl = (size_t)(end + 4 - b);
            const char *cl = memmem(b, hl, "Content-Length: ", 16);
            long clen = cl ? strtol(cl + 16, NULL, 10) : 0;
            if (n < hl + (size_t)clen)
                break;
            int status = 0;
            sscanf(b, "HTTP/1.%*d %d", &status);
            int want = got == 0 ? 502 : mixed[got % 3].status;
            if (status != want && bad < 0)
                bad = got;
            got++;
            rp_buf_consume(&c.plain, hl + (size_t)clen);
        }
        rp_buf_compact(&c.plain);
    }
    shutdown(c.fd, SHUT_RDWR);
    pthread_join(t, NULL);
    cr_expect_eq(w.written, (ssize_t)w.len, "one write of %zu bytes: %zd", w.len, w.written);
    cr_expect_eq(got, DEEP_PIPELINE, "%d answers", got);
    cr_expect_eq(bad, -1, "answer %d out of order", bad);
    tls_close(&c);
    free(req.p);
    expect_alive(&e);
    env_down(&e);
}

/* ---- admission at accept ------------------------------------------------------------------ */

static int connect_from(int port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The server closed this connection (EOF or reset) within ms. */
static bool closed_within(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0)
        return false;
    char c;
    return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

/* One GET on an open connection answers 404. */
static bool served(int fd)
{
    if (send(fd, get_404, strlen(get_404), MSG_NOSIGNAL) != (ssize_t)strlen(get_404))
        return false;
    int st[2] = {0};
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return false;
    buf[n] = 0;
    sscanf(buf, "HTTP/1.%*d %d", &st[0]);
    return st[0] == 404;
}

/* Value of one series ("name{labels}") on /metrics; -1 when absent. */
static long metric(struct env *e, const char *series)
{
    struct rpt_resp r;
    if (rpt_http(e->admin_port, "GET", "/metrics", NULL, NULL, 0, 5000, &r) != 0)
        return -1;
    long v = -1;
    size_t n = strlen(series);
    for (char *p = (char *)r.body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtol(p + n + 1, NULL, 10);
            break;
        }
    rpt_resp_free(&r);
    return v;
}

static int readyz(struct env *e, char *why, size_t cap)
{
    struct rpt_resp r;
    if (rpt_http(e->admin_port, "GET", "/readyz", NULL, NULL, 0, 5000, &r) != 0)
        return 0;
    if (why)
        snprintf(why, cap, "%s", r.body ? (char *)r.body : "");
    int st = r.status;
    rpt_resp_free(&r);
    return st;
}

/* The first /readyz starts a connection to the CA: wait until it is known reachable. */
static void wait_ready(struct env *e)
{
    char why[128] = "";
    int st = 0;
    for (int i = 0; i < 100 && (st = readyz(e, why, sizeof why)) != 200; i++)
        usleep(100000);
    cr_assert_eq(st, 200, "not ready: %s", why);
}

/* Before: one address holding idle connections filled max_connections for everyone. */
Test(connections, per_address_cap_refuses_at_accept_and_others_are_served, .timeout = 60)
{
    struct env e;
    env_up(&e, &(struct opts){.http = "  max_connections_per_ip: 4\n"});
    int held[4];
    for (int i = 0; i < 4; i++) { /* one by one: the start-up probe is gone by the first answer */
        held[i] = connect_from(e.port, "127.0.0.1");
        cr_assert_geq(held[i], 0);
        cr_expect(served(held[i]), "connections within the cap are served");
    }
    int fifth = connect_from(e.port, "127.0.0.1");
    cr_assert_geq(fifth, 0);
    cr_expect(closed_within(fifth, 5000), "the fifth connection from one address is closed");
    close(fifth);
    /* another address is not affected */
    int other = connect_from(e.port, "127.0.0.2");
    cr_assert_geq(other, 0);
    cr_expect(served(other), "another address is served");
    close(other);
    cr_expect_eq(metric(&e, "raproxy_connections_refused_total{reason=\"per_ip\"}"), 1);
    /* a slot freed: the address is served again */
    close(held[0]);
    usleep(200000);
    held[0] = connect_from(e.port, "127.0.0.1");
    cr_assert_geq(held[0], 0);
    cr_expect(served(held[0]), "served again once below the cap");
    for (int i = 0; i < 4; i++)
        close(held[i]);
    expect_alive(&e);
    env_down(&e);
}

/* Before: at the descriptor limit accept failed and the listener paused; clients hung in
 * the backlog and wolfSSL sessions failed to seed their RNG, all without a log line. */
Test(connections, descriptor_exhaustion_is_counted_logged_and_survived, .timeout = 90)
{
    struct env e;
    env_up(&e, &(struct opts){.http = "  max_connections_per_ip: 0\n  header_timeout_ms: 60000\n",
                              .nofile = 96,
                              .ca = true});
    wait_ready(&e);
    enum { TRIES = 120 };
    int fds[TRIES], open_n = 0, refused = 0;
    for (int i = 0; i < TRIES; i++)
        fds[i] = rpt_connect(e.port);
    for (int i = 0; i < TRIES; i++) {
        if (fds[i] >= 0 && closed_within(fds[i], i == 0 ? 1000 : 10)) {
            refused++;
            close(fds[i]);
            fds[i] = -1;
        } else if (fds[i] >= 0) {
            open_n++;
        }
    }
    cr_log_info("%d connections held, %d closed at accept", open_n, refused);
    cr_expect_gt(refused, 0, "some connections are refused at the descriptor limit");
    cr_expect_gt(open_n, 20, "the ones below the limit stay open");
    cr_expect_geq(metric(&e, "raproxy_connections_refused_total{reason=\"fd_limit\"}"), refused);
    cr_expect_geq(rpt_file_count(e.rp.log, "out of file descriptors"), 1, "see %s", e.rp.log);
    char why[128];
    cr_expect_eq(readyz(&e, why, sizeof why), 503);
    cr_expect(strstr(why, "file descriptors"), "readyz: %s", why);
    /* the connections it holds are served all along */
    for (int i = 0; i < TRIES; i++)
        if (fds[i] >= 0) {
            cr_expect(served(fds[i]), "a held connection is served");
            break;
        }
    for (int i = 0; i < TRIES; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    usleep(300000);
    int fd = rpt_connect(e.port);
    cr_assert_geq(fd, 0);
    cr_expect(served(fd), "served again once descriptors are free");
    close(fd);
    expect_alive(&e);
    env_down(&e);
}

Test(connections, readyz_reports_the_connection_cap, .timeout = 60)
{
    struct env e;
    env_up(&e, &(struct opts){.http = "  max_connections: 2\n  max_connections_per_ip: 0\n",
                              .ca = true});
    wait_ready(&e);
    char why[128];
    int a = rpt_connect(e.port), b = rpt_connect(e.port);
    cr_assert(a >= 0 && b >= 0);
    cr_expect(served(b), "within the cap");
    cr_expect_eq(readyz(&e, why, sizeof why), 503);
    cr_expect(strstr(why, "connection cap"), "readyz: %s", why);
    close(a);
    close(b);
    int st = 0;
    for (int i = 0; i < 50 && (st = readyz(&e, why, sizeof why)) != 200; i++)
        usleep(100000);
    cr_expect_eq(st, 200, "ready again below the cap: %s", why);
    env_down(&e);
}

/* TLS handshakes in flight are capped per loop: idle TCP connections on the TLS port hold
 * the slots, the next handshake waits in the backlog and completes once one is freed. */
Test(connections, handshakes_in_flight_are_capped, .timeout = 90)
{
    struct env e;
    env_up(&e, &(struct opts){.http = "  max_handshakes: 2\n  handshake_timeout_ms: 60000\n",
                              .tls = true});
    int slow[2];
    for (int i = 0; i < 2; i++) {
        slow[i] = rpt_connect(e.tls_port);
        cr_assert_geq(slow[i], 0);
    }
    long paused = 0;
    for (int i = 0; i < 50 && paused < 1; i++) {
        usleep(100000);
        paused = metric(&e, "raproxy_accept_paused_total{reason=\"max_handshakes\"}");
    }
    cr_expect_geq(paused, 1, "the TLS listener paused at the handshake cap");
    /* the plain listener is not affected */
    int plain = rpt_connect(e.port);
    cr_assert_geq(plain, 0);
    cr_expect(served(plain), "plain HTTP is served while TLS handshakes are capped");
    close(plain);
    close(slow[0]);
    close(slow[1]);
    char cmd[256], log[600];
    snprintf(cmd, sizeof cmd,
             "timeout 20 openssl s_client -connect 127.0.0.1:%d -brief </dev/null 2>&1",
             e.tls_port);
    snprintf(log, sizeof log, "%s/s_client.log", e.dir);
    const char *argv[] = {"bash", "-c", cmd, NULL};
    cr_expect_eq(rpt_run(argv, 30000, log), 0, "a handshake completes once the slots free");
    cr_expect_geq(rpt_file_count(log, "CONNECTION ESTABLISHED"), 1, "see %s", log);
    env_down(&e);
}

/* ---- overload: the expected wait on the workers, not only their queue count ------------- */

struct burst {
    int port;
    const struct rp_view *msgs; /* per_conn requests, each with its own nonce */
    int per_conn;
    int answered, busy, retry_after; /* busy: 503 "crypto workers busy" */
};

/* One connection, per_conn copies of the ir pipelined in one write, every answer read. */
static void *burst_client(void *arg)
{
    struct burst *b = arg;
    struct buf req = {0};
    for (int i = 0; i < b->per_conn; i++) {
        char head[256];
        int hl = snprintf(head, sizeof head,
                          "POST /pkix/ HTTP/1.1\r\nHost: x\r\n"
                          "Content-Type: application/pkixcmp\r\nContent-Length: %zu\r\n\r\n",
                          b->msgs[i].len);
        buf_add(&req, head, (size_t)hl);
        buf_add(&req, (const char *)b->msgs[i].p, b->msgs[i].len);
    }
    int fd = rpt_connect(b->port);
    if (fd < 0)
        return NULL;
    struct writer w = {fd, req.p, req.len, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, write_all_once, &w);
    /* read_answers keeps statuses only; count 503s with Retry-After from the raw bytes */
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct buf in = {0};
    char chunk[65536];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r <= 0)
            break;
        buf_add(&in, chunk, (size_t)r);
        int n = 0;
        for (char *p = in.p; (p = memmem(p, in.len - (size_t)(p - in.p), "HTTP/1.1 ", 9)); p += 9)
            n++;
        if (n >= b->per_conn)
            break;
    }
    pthread_join(t, NULL);
    close(fd);
    for (char *p = in.p; p && (p = memmem(p, in.len - (size_t)(p - in.p), "HTTP/1.1 ", 9));
         p += 9) {
        b->answered++;
        char *end = memmem(p, in.len - (size_t)(p - in.p), "\r\n\r\n", 4);
        if (strncmp(p + 9, "503", 3) == 0 && end &&
            strncmp(end + 4, "crypto workers busy", 19) == 0) {
            b->busy++;
            if (memmem(p, (size_t)(end - p), "Retry-After:", 12))
                b->retry_after++;
        }
    }
    free(in.p);
    free(req.p);
    return NULL;
}

enum { BURST_CONNS = 40, BURST_EACH = 10, MAC_ITERATIONS = 20000 };

static void run_burst(struct env *e, const struct rp_view *msgs, struct burst *total)
{
    struct burst b[BURST_CONNS];
    pthread_t th[BURST_CONNS];
    for (int i = 0; i < BURST_CONNS; i++) {
        b[i] = (struct burst){e->port, msgs + i * BURST_EACH, BURST_EACH, 0, 0, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, burst_client, &b[i]), 0);
    }
    memset(total, 0, sizeof *total);
    for (int i = 0; i < BURST_CONNS; i++) {
        pthread_join(th[i], NULL);
        total->answered += b[i].answered;
        total->busy += b[i].busy;
        total->retry_after += b[i].retry_after;
    }
}

/* Before: only the count (worker_queue, 4096) bounded the queue, so under a burst admitted
 * requests waited seconds. Now a request whose expected wait is over worker_queue_ms is
 * refused at once (503 + Retry-After), long before the count; with a generous deadline
 * the same burst is served without one refusal. */
Test(connections, worker_queue_deadline_refuses_by_expected_wait, .timeout = 180)
{
    /* PBM-protected irs with 20,000 iterations: each check costs the worker milliseconds
     * while the loop takes a request in microseconds, so the queue builds up for sure; each
     * has its own nonce (a replay would be refused before any MAC is computed) */
    char *tmp = rpt_tmpdir();
    size_t base_len = 0;
    uint8_t *base = rpt_capture_mac(tmp, rpt_pki(), "ir", "pbm-secret-2", "kid-2", NULL, &base_len);
    cr_assert_not_null(base, "openssl cmp -reqout wrote no request");
    struct rp_arena arena;
    cr_assert_eq(rp_arena_new(&arena, 8u << 20), RP_OK);
    static struct rp_view msgs[2][BURST_CONNS * BURST_EACH];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < BURST_CONNS * BURST_EACH; i++) {
            struct rpt_mut slow = {
                .mac = RPT_MAC_PBM, .mac_secret = "pbm-secret-2", .mac_iterations = MAC_ITERATIONS};
            msgs[k][i] = rpt_rebuild(&arena, base, base_len, &slow);
            cr_assert_not_null(msgs[k][i].p);
        }
    const uint32_t deadlines[2] = {20, 600000};
    for (int k = 0; k < 2; k++) {
        char top[128];
        snprintf(top, sizeof top, "workers: 1\nworker_queue: 4096\nworker_queue_ms: %u\n",
                 deadlines[k]);
        struct env e;
        env_up(&e,
               &(struct opts){.top = top, .domain = true, .http = "  max_connections_per_ip: 0\n"});
        long late0 = metric(&e, "raproxy_worker_jobs_total{result=\"deadline\"}");
        struct burst t;
        run_burst(&e, msgs[k], &t);
        long late = metric(&e, "raproxy_worker_jobs_total{result=\"deadline\"}") - late0;
        long full = metric(&e, "raproxy_worker_jobs_total{result=\"rejected\"}");
        cr_log_info("worker_queue_ms %u: %d answers, %d workers busy, %ld deadline refusals, "
                    "job cost %ld us",
                    deadlines[k], t.answered, t.busy, late,
                    metric(&e, "raproxy_worker_job_cost_microseconds"));
        cr_expect_eq(t.answered, BURST_CONNS * BURST_EACH, "every request answered once");
        cr_expect_leq(full, 0, "never the count cap (%ld)", full);
        if (k == 0) {
            cr_expect_gt(t.busy, 0, "refused by expected wait");
            cr_expect_eq(t.retry_after, t.busy, "each refusal says when to come back");
            cr_expect_geq(late, t.busy, "counted as deadline refusals");
        } else {
            cr_expect_eq(t.busy, 0, "a generous deadline refuses nothing");
            cr_expect_eq(late, 0);
        }
        expect_alive(&e);
        env_down(&e);
    }
    rp_arena_free(&arena);
    free(base);
    rpt_rmdir(tmp);
    free(tmp);
}

/* Before: the README promised one line per exchange at every level, but exchange lines were
 * info-level events and log_level: warn dropped them all. */
Test(connections, exchange_lines_are_written_at_log_level_warn, .timeout = 60)
{
    struct env e;
    env_up(&e, &(struct opts){.log_level = "warn"});
    struct rpt_resp r;
    cr_assert_eq(rpt_http(e.port, "GET", "/x", NULL, NULL, 0, 5000, &r), 0);
    cr_expect_eq(r.status, 404);
    rpt_resp_free(&r);
    cr_assert_eq(rpt_http(e.admin_port, "GET", "/livez", NULL, NULL, 0, 5000, &r), 0);
    rpt_resp_free(&r); /* the same loop wrote the exchange line before answering this */
    cr_expect_eq(rpt_file_count(e.rp.log, "\"event\":\"exchange\""), 1, "see %s", e.rp.log);
    cr_expect_eq(rpt_file_count(e.rp.log, "\"event\":\"start\""), 0,
                 "other info events stay filtered");
    env_down(&e);
}
