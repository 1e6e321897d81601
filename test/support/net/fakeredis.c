#include "fakeredis.h"

#include "support.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *buf)
{
    (void)want;
    struct rpt_fake_redis *f = h->data;
    *buf = uv_buf_init(f->in + f->len, (unsigned)(RPT_FAKE_REDIS_IN_MAX - 1 - f->len));
}

/* One whole command (*argc, then argc $len bulk strings) at the head of f->in: its length,
 * 0 while incomplete; *is_evalsha says what it was. */
static size_t command_len(struct rpt_fake_redis *f, bool *is_evalsha)
{
    char *p = f->in, *end = f->in + f->len, *e;
    if (p == end)
        return 0;
    cr_assert_eq(*p, '*', "not a RESP command");
    long argc = strtol(p + 1, &e, 10);
    if (e + 2 > end)
        return 0;
    p = e + 2;
    for (long i = 0; i < argc; i++) {
        if (p >= end)
            return 0;
        long n = strtol(p + 1, &e, 10);
        if (e + 2 + n + 2 > end)
            return 0;
        if (i == 0)
            *is_evalsha = n == 7 && memcmp(e + 2, "EVALSHA", 7) == 0;
        p = e + 2 + n + 2;
    }
    return (size_t)(p - f->in);
}

static void answer(struct rpt_fake_redis *f, const char *resp)
{
    uv_buf_t b = uv_buf_init((char *)resp, (unsigned)strlen(resp));
    cr_assert_eq(uv_try_write((uv_stream_t *)&f->conn, &b, 1), (int)b.len);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct rpt_fake_redis *f = s->data;
    if (n < 0) {
        uv_read_stop(s);
        return;
    }
    f->len += (size_t)n;
    f->in[f->len] = '\0'; /* strtol stops here at the latest */
    size_t used;
    bool evalsha = false;
    while ((used = command_len(f, &evalsha)) > 0) {
        answer(f, evalsha ? f->reply : "+OK\r\n");
        memmove(f->in, f->in + used, f->len - used);
        f->len -= used;
        f->in[f->len] = '\0';
    }
}

static void on_connection(uv_stream_t *srv, int status)
{
    struct rpt_fake_redis *f = srv->data;
    cr_assert_eq(status, 0);
    cr_assert_not(f->has_conn, "one client only");
    uv_tcp_init(srv->loop, &f->conn);
    f->conn.data = f;
    cr_assert_eq(uv_accept(srv, (uv_stream_t *)&f->conn), 0);
    f->has_conn = true;
    uv_read_start((uv_stream_t *)&f->conn, on_alloc, on_read);
}

void rpt_fake_redis_start(struct rpt_fake_redis *f, uv_loop_t *loop)
{
    memset(f, 0, sizeof *f);
    int port = rpt_free_port();
    snprintf(f->url, sizeof f->url, "redis://127.0.0.1:%d", port);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(loop, &f->srv);
    f->srv.data = f;
    cr_assert_eq(uv_tcp_bind(&f->srv, (const struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&f->srv, 1, on_connection), 0);
}

void rpt_fake_redis_stop(struct rpt_fake_redis *f)
{
    uv_close((uv_handle_t *)&f->srv, NULL);
    if (f->has_conn)
        uv_close((uv_handle_t *)&f->conn, NULL);
}
