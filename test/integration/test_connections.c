/* The connection layer against clients that misbehave on purpose, with a real raproxy and
 * real sockets: deep pipelining (no re-entrancy, bounded stack), answers in order and once,
 * a peer that never reads (bounded memory), one refusal per connection. */
#include "fixtures.h"
#include "httpc.h"
#include "support.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct env {
    char *dir;
    int port, admin_port, ca_port;
    char cfg[600];
    struct rpt_proc rp;
};

/* Plain listener and admin; the CA port has nothing listening, so a relayed request gets
 * 502 after a failed connect: an answer that comes later than the synchronous ones. */
static void env_up(struct env *e, const char *http_extra, rlim_t stack)
{
    memset(e, 0, sizeof *e);
    e->dir = rpt_tmpdir();
    e->port = rpt_free_port();
    e->admin_port = rpt_free_port();
    e->ca_port = rpt_free_port();
    char buf[4096];
    snprintf(buf, sizeof buf,
             "log_level: warn\n"
             "loops: 1\n"
             "workers: 1\n"
             "default_path: /pkix/\n"
             "listeners:\n"
             "  - address: 127.0.0.1:%d\n"
             "    tls: off\n"
             "admin:\n"
             "  address: 127.0.0.1:%d\n"
             "upstream:\n"
             "  url: http://127.0.0.1:%d/pkix/\n"
             "  connect_timeout_ms: 2000\n"
             "  max_connections: 1\n"
             "  keep_alive: false\n"
             "%s%s",
             e->port, e->admin_port, e->ca_port, http_extra ? "http:\n" : "",
             http_extra ? http_extra : "");
    snprintf(e->cfg, sizeof e->cfg, "%s/raproxy.yaml", e->dir);
    cr_assert_eq(rpt_write_file(e->cfg, buf, strlen(buf)), 0);
    struct rlimit old, lim;
    getrlimit(RLIMIT_STACK, &old);
    if (stack) {
        /* glibc sizes every thread's stack from this limit at exec: the loop thread gets it */
        lim = (struct rlimit){stack, old.rlim_max};
        cr_assert_eq(setrlimit(RLIMIT_STACK, &lim), 0);
    }
    int rc = rpt_raproxy_start(&e->rp, e->dir, e->cfg, e->port);
    if (stack)
        setrlimit(RLIMIT_STACK, &old);
    cr_assert_eq(rc, 0, "raproxy did not start, see %s", e->rp.log);
}

static void env_down(struct env *e)
{
    int st = rpt_stop(&e->rp, SIGTERM, 15000);
    cr_expect_eq(st, 0, "raproxy exit status %d, see %s", st, e->rp.log);
    cr_expect_eq(rpt_file_count(e->rp.log, "AddressSanitizer"), 0);
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

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
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

/* Read answers until EOF or a quiet timeout; statuses[i] is the i-th answer's status.
 * Returns how many complete answers arrived. */
static int read_answers(int fd, int *statuses, int max, int quiet_ms)
{
    struct timeval tv = {quiet_ms / 1000, (quiet_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t cap = 1u << 20, len = 0;
    char *b = malloc(cap);
    int n = 0;
    for (;;) {
        if (len == cap)
            break; /* one answer larger than 1 MiB: not ours */
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
    int got = read_answers(fd, st, count + 1, 20000);
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
Test(connections, pipelined_100000_requests_in_one_write_with_a_256k_stack, .timeout = 300)
{
    struct env e;
    env_up(&e, "  max_body_bytes: 1048576\n", 256 * 1024);
    pipeline_and_check(&e, relay_req, 502, mixed, 3, 100000);
    expect_alive(&e);
    env_down(&e);
}

/* Before: with a request in flight the input buffer overflowed and the connection answered
 * 413 ahead of the first answer. */
Test(connections, pipelined_answers_come_in_order_and_once, .timeout = 120)
{
    struct env e;
    env_up(&e, "  max_body_bytes: 1000\n", 0);
    const struct pattern relay_then_404[] = {{relay_req, 502}, {get_404, 404}};
    pipeline_and_check(&e, NULL, 0, relay_then_404, 2, 1000);
    expect_alive(&e);
    env_down(&e);
}

/* One oversized request, then more bytes in a later read: exactly one refusal, then EOF. */
static void refused_once(const char *http_extra, const char *first, int want)
{
    struct env e;
    env_up(&e, http_extra, 0);
    int fd = rpt_connect(e.port);
    cr_assert_geq(fd, 0);
    cr_assert_eq(send(fd, first, strlen(first), MSG_NOSIGNAL), (ssize_t)strlen(first));
    usleep(200000); /* the refusal is on its way before the rest arrives */
    for (int i = 0; i < 20; i++)
        if (send(fd, get_404, strlen(get_404), MSG_NOSIGNAL) < 0)
            break;
    int st[8] = {0};
    int got = read_answers(fd, st, 8, 5000);
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

/* Before: every answer queued in memory; RSS grew by ~70 MB a second until the OOM killer. */
Test(connections, client_that_never_reads_costs_bounded_memory, .timeout = 120)
{
    struct env e;
    env_up(&e, "  idle_timeout_ms: 30000\n", 0);
    long before = rss_kb(e.rp.pid);
    int fd = rpt_connect(e.port);
    cr_assert_geq(fd, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small); /* answers stop in the kernel */
    struct buf chunk = {0};
    while (chunk.len < 65536)
        buf_add(&chunk, get_404, strlen(get_404));
    /* bounded: 8 s, or 256 MiB of requests, or 2 s without raproxy taking any more */
    long start = now_ms(), last_progress = start;
    size_t sent = 0;
    while (now_ms() - start < 8000 && sent < (256u << 20) && now_ms() - last_progress < 2000) {
        struct pollfd p = {fd, POLLOUT, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t w = send(fd, chunk.p, chunk.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            last_progress = now_ms();
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
    cr_expect_lt(after - before, 32 * 1024, "RSS grew from %ld kB to %ld kB (%zu bytes sent)",
                 before, after, sent);
    expect_alive(&e);
    env_down(&e);
}
