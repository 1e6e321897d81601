#include "stream.h"

#include "raproxy/err.h"
#include "raproxy/tls.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One read at a time per thread: what a read returns is consumed (appended to `in`, fed to
 * TLS, or discarded) before the next, so every stream of a loop shares one buffer. It is on
 * the heap, not in thread-local storage: glibc carves static TLS out of each thread's
 * stack. */
#define STREAM_READ_CHUNK 65536u
/* After the last answer and our FIN, how long input is read and thrown away so that the
 * peer's unread requests do not turn our close into a reset that destroys the answer. */
#define STREAM_LINGER_MS 1000u

static pthread_key_t chunk_key;
static pthread_once_t chunk_once = PTHREAD_ONCE_INIT;

static void chunk_key_init(void)
{
    pthread_key_create(&chunk_key, free);
}

static uint8_t *read_chunk(void)
{
    pthread_once(&chunk_once, chunk_key_init);
    uint8_t *p = pthread_getspecific(chunk_key);
    if (!p && (p = malloc(STREAM_READ_CHUNK)) != NULL)
        pthread_setspecific(chunk_key, p);
    return p;
}

static void update_reading(struct net_stream *s);
static void flush(struct net_stream *s);

static void maybe_free(struct net_stream *s)
{
    if (s->handles > 0 || s->wmem || s->shutting || s->holds > 0)
        return;
    rp_tls_free(s->tls);
    s->tls = NULL;
    rp_buf_free(&s->in);
    rp_buf_free(&s->out);
    s->ops->on_free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct net_stream *s = h->data;
    s->handles--;
    maybe_free(s);
}

void net_stream_init(struct net_stream *s, uv_loop_t *loop, const struct net_stream_ops *ops,
                     size_t in_max, size_t max_unsent)
{
    memset(s, 0, sizeof *s);
    s->ops = ops;
    s->max_unsent = max_unsent;
    rp_buf_init(&s->in, in_max);
    rp_buf_init(&s->out, 0);
    uv_tcp_init(loop, &s->tcp);
    uv_timer_init(loop, &s->timer);
    s->tcp.data = s->timer.data = s->wreq.data = s->sreq.data = s;
    s->handles = 2;
    s->paused = true; /* until net_stream_start */
    s->state = RP_STREAM_OPEN;
}

int net_stream_open_fd(struct net_stream *s, int fd)
{
    if (uv_tcp_open(&s->tcp, fd) != 0) {
        close(fd);
        return RP_E_IO;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    return RP_OK;
}

void net_stream_set_tls(struct net_stream *s, struct rp_tls *tls)
{
    s->tls = tls;
}

void net_stream_hold(struct net_stream *s)
{
    s->holds++;
}

void net_stream_release(struct net_stream *s)
{
    s->holds--;
    if (s->state == RP_STREAM_CLOSING)
        maybe_free(s);
}

void net_stream_close(struct net_stream *s)
{
    if (s->state == RP_STREAM_CLOSING)
        return;
    s->state = RP_STREAM_CLOSING;
    s->reading = false;
    uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}

size_t net_stream_unsent(const struct net_stream *s)
{
    return s->tcp.write_queue_size + rp_buf_avail(&s->out);
}

void net_stream_shrink(struct net_stream *s)
{
    if (rp_buf_avail(&s->in) == 0)
        rp_buf_free(&s->in);
    if (s->tls && !rp_tls_pending(s->tls))
        rp_tls_shrink(s->tls);
}

/* ---- timer ---------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    struct net_stream *s = t->data;
    if (s->state == RP_STREAM_OPEN)
        s->ops->on_timer(s);
    else
        net_stream_close(s); /* flushing or lingering took too long */
}

void net_stream_timer(struct net_stream *s, uint32_t ms)
{
    if (s->state == RP_STREAM_OPEN)
        uv_timer_start(&s->timer, on_timer, ms, 0);
}

void net_stream_timer_stop(struct net_stream *s)
{
    if (s->state == RP_STREAM_OPEN)
        uv_timer_stop(&s->timer);
}

/* ---- output --------------------------------------------------------------------- */

/* A failure found outside any owner call (a write completion): reported as on_eof. */
static void fail_async(struct net_stream *s, int err)
{
    if (s->state != RP_STREAM_OPEN) {
        net_stream_close(s);
        return;
    }
    s->eof = true;
    update_reading(s);
    s->ops->on_eof(s, err);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct net_stream *s = req->data;
    (void)status;
    s->shutting = false;
    if (s->state == RP_STREAM_CLOSING) {
        maybe_free(s);
        return;
    }
    if (s->eof)
        net_stream_close(s);
}

/* Everything is out: FIN, then discard input until the peer's EOF or the linger time. */
static void start_linger(struct net_stream *s)
{
    s->state = RP_STREAM_LINGER;
    uint64_t left = uv_timer_get_due_in(&s->timer);
    uv_timer_start(&s->timer, on_timer, left && left < STREAM_LINGER_MS ? left : STREAM_LINGER_MS,
                   0);
    if (s->eof || uv_shutdown(&s->sreq, (uv_stream_t *)&s->tcp, on_shutdown) != 0) {
        net_stream_close(s);
        return;
    }
    s->shutting = true;
    s->paused = false;
    update_reading(s);
}

static void on_write(uv_write_t *req, int status)
{
    struct net_stream *s = req->data;
    free(s->wmem);
    s->wmem = NULL;
    if (s->state == RP_STREAM_CLOSING) {
        maybe_free(s);
        return;
    }
    if (status < 0) {
        fail_async(s, RP_E_IO);
        return;
    }
    flush(s);
    if (s->state == RP_STREAM_CLOSING)
        return;
    if (s->state == RP_STREAM_FLUSHING) {
        if (net_stream_unsent(s) == 0)
            start_linger(s);
        return;
    }
    if (s->state == RP_STREAM_OPEN && net_stream_unsent(s) <= s->max_unsent && s->ops->on_drain)
        s->ops->on_drain(s);
}

/* Hand the queued output to the kernel: directly when it takes it all, else lend the
 * buffer to one uv_write. Errors close the stream on the next write completion path; here
 * they are returned. */
static int flush_now(struct net_stream *s)
{
    if (s->wmem || rp_buf_avail(&s->out) == 0 || s->state == RP_STREAM_CLOSING)
        return RP_OK;
    uv_buf_t b = uv_buf_init((char *)rp_buf_head(&s->out), (unsigned)rp_buf_avail(&s->out));
    int n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN)
        return RP_E_IO;
    if (n > 0)
        rp_buf_consume(&s->out, (size_t)n);
    if (rp_buf_avail(&s->out) == 0) {
        rp_buf_free(&s->out); /* lent only while in flight: an idle stream holds none */
        return RP_OK;
    }
    /* The rest goes in one write; the buffer travels with it and `out` starts afresh. */
    s->wmem = s->out.data;
    b = uv_buf_init((char *)rp_buf_head(&s->out), (unsigned)rp_buf_avail(&s->out));
    rp_buf_init(&s->out, 0);
    if (uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, on_write) != 0) {
        free(s->wmem);
        s->wmem = NULL;
        return RP_E_IO;
    }
    return RP_OK;
}

static void flush(struct net_stream *s)
{
    if (flush_now(s) != RP_OK)
        fail_async(s, RP_E_IO);
}

/* Ciphertext the TLS session produced joins the queue (a pointer swap when it is empty). */
static int take_tls_output(struct net_stream *s)
{
    struct rp_buf *o = rp_tls_out(s->tls);
    if (rp_buf_avail(o) == 0)
        return RP_OK;
    if (rp_buf_avail(&s->out) == 0) {
        struct rp_buf tmp = s->out;
        s->out = *o;
        *o = tmp;
        rp_buf_free(o);
        return RP_OK;
    }
    int rc = rp_buf_append(&s->out, rp_buf_head(o), rp_buf_avail(o));
    rp_buf_free(o);
    return rc;
}

int net_stream_write(struct net_stream *s, const uint8_t *p, size_t n)
{
    if (s->state != RP_STREAM_OPEN)
        return RP_E_IO;
    int rc;
    if (s->tls) {
        rc = rp_tls_write(s->tls, p, n);
        if (rc == RP_OK)
            rc = take_tls_output(s);
    } else {
        rc = rp_buf_append(&s->out, p, n);
    }
    return rc == RP_OK ? flush_now(s) : rc;
}

void net_stream_close_after_flush(struct net_stream *s, uint32_t timeout_ms)
{
    if (s->state != RP_STREAM_OPEN)
        return;
    if (s->tls && rp_tls_close(s->tls) == RP_OK && take_tls_output(s) == RP_OK)
        (void)flush_now(s); /* close_notify; a failure shows as the write's error */
    s->state = RP_STREAM_FLUSHING;
    s->paused = true;
    update_reading(s);
    uv_timer_start(&s->timer, on_timer, timeout_ms, 0);
    if (net_stream_unsent(s) == 0 && !s->wmem)
        start_linger(s);
}

/* ---- input ---------------------------------------------------------------------- */

static size_t read_room(const struct net_stream *s)
{
    if (s->state == RP_STREAM_LINGER)
        return STREAM_READ_CHUNK;
    size_t room = STREAM_READ_CHUNK;
    /* TLS: ciphertext is decrypted as it comes, and reading stops while records wait for
     * room (tls_full), so the session's own input never holds more than one read */
    if (!s->tls && s->in.max) {
        size_t unread = rp_buf_avail(&s->in);
        size_t left = s->in.max > unread ? s->in.max - unread : 0;
        room = left < room ? left : room;
    }
    return room;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct net_stream *s = h->data;
    (void)suggested;
    size_t room = read_room(s);
    uint8_t *p = room ? read_chunk() : NULL;
    *buf = uv_buf_init((char *)p, p ? (unsigned)room : 0);
}

static void on_uv_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);

static void update_reading(struct net_stream *s)
{
    bool want;
    if (s->state == RP_STREAM_LINGER)
        want = !s->eof;
    else
        want =
            s->state == RP_STREAM_OPEN && !s->paused && !s->eof && !s->tls_full && read_room(s) > 0;
    if (want == s->reading)
        return;
    if (want && uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_uv_read) != 0)
        return;
    if (!want)
        uv_read_stop((uv_stream_t *)&s->tcp);
    s->reading = want;
}

void net_stream_read_pause(struct net_stream *s, bool paused)
{
    s->paused = paused;
    update_reading(s);
}

/* Decrypt what fits into `in` and send what the session produced (handshake flights,
 * alerts). Returns the session's verdict. */
static int tls_step(struct net_stream *s, bool *opened)
{
    bool was_open = rp_tls_handshake_done(s->tls);
    int rc = rp_tls_process(s->tls, &s->in);
    int wrc = take_tls_output(s);
    if (wrc == RP_OK)
        wrc = flush_now(s);
    *opened = !was_open && rp_tls_handshake_done(s->tls);
    s->tls_full = rc == RP_OK && rp_tls_handshake_done(s->tls) && rp_tls_pending(s->tls);
    if (rc == RP_OK && wrc != RP_OK)
        rc = wrc;
    update_reading(s);
    return rc;
}

int net_stream_pump(struct net_stream *s)
{
    if (!s->tls || s->state != RP_STREAM_OPEN || !rp_tls_pending(s->tls))
        return RP_OK;
    bool opened;
    int rc = tls_step(s, &opened);
    if (rc != RP_OK) {
        s->eof = true;
        update_reading(s);
    }
    return rc;
}

int net_stream_start(struct net_stream *s)
{
    s->paused = false;
    if (s->tls) {
        bool opened;
        int rc = tls_step(s, &opened); /* a client's ClientHello */
        if (rc != RP_OK)
            return rc;
    }
    update_reading(s);
    return RP_OK;
}

static void deliver_eof(struct net_stream *s, int err)
{
    s->eof = true;
    update_reading(s);
    if (s->state == RP_STREAM_OPEN)
        s->ops->on_eof(s, err);
}

static void on_uv_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    struct net_stream *s = h->data;
    if (s->state == RP_STREAM_CLOSING)
        return;
    if (nread == UV_ENOBUFS) { /* no room offered: wait for the owner to consume */
        update_reading(s);
        return;
    }
    if (nread < 0) {
        if (s->state == RP_STREAM_LINGER) {
            s->eof = true;
            update_reading(s);
            if (!s->shutting)
                net_stream_close(s);
            return;
        }
        deliver_eof(s, nread == UV_EOF ? RP_OK : RP_E_IO);
        return;
    }
    if (nread == 0 || s->state != RP_STREAM_OPEN)
        return; /* lingering: thrown away */
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t n = (size_t)nread;
    if (!s->tls) {
        if (rp_buf_append(&s->in, p, n) != RP_OK) {
            deliver_eof(s, RP_E_NOMEM);
            return;
        }
        update_reading(s);
        s->ops->on_read(s);
        return;
    }
    size_t before = rp_buf_avail(&s->in);
    int rc = rp_tls_feed(s->tls, p, n);
    bool opened = false;
    if (rc == RP_OK)
        rc = tls_step(s, &opened);
    if (opened && s->state == RP_STREAM_OPEN)
        s->ops->on_open(s);
    if (s->state == RP_STREAM_OPEN && rp_buf_avail(&s->in) > before)
        s->ops->on_read(s);
    if (rc != RP_OK && s->state == RP_STREAM_OPEN)
        deliver_eof(s, rc == RP_E_TLS_CLOSED ? RP_OK : rc);
}
