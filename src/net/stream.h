/* A byte stream over one TCP connection, for device and CA connections alike (in the style
 * of h2o's h2o_socket_t): the socket and one timer, optional TLS, a plaintext input buffer,
 * write accounting and a counted close. The owner embeds a struct net_stream and gets its
 * events through struct net_stream_ops; the stream never calls the owner from inside a call
 * the owner made (net_stream_write, net_stream_pump, ... return errors instead), so an owner
 * never sees its own stack re-entered.
 *
 * Output: net_stream_write encrypts (with TLS) and queues bytes; at most one libuv write is
 * in flight, later bytes gather behind it and go out in one write when it completes. A
 * buffer is lent to libuv only while its bytes are in flight and freed right after.
 * net_stream_unsent says how much is queued and not yet taken by the kernel; the owner stops
 * producing beyond its bound and is told by on_drain when the peer has caught up.
 *
 * Input: the stream reads while the owner wants (net_stream_read_pause) and while `in` has
 * room; decrypted TLS records that do not fit stay inside the TLS session and reading stops
 * until the owner consumed `in` and called net_stream_pump.
 *
 * Close: net_stream_close closes at once; net_stream_close_after_flush sends what is queued
 * (then TLS close_notify and a FIN), discards input for a short while so that the peer gets
 * the answer instead of a reset, then closes. Memory is released once both handles are
 * closed, no write is in flight and every hold is released: then on_free, and only then. */
#ifndef RP_NET_STREAM_H
#define RP_NET_STREAM_H

#include "raproxy/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct rp_tls;
struct net_stream;

struct net_stream_ops {
    /* New plaintext in s->in. */
    void (*on_read)(struct net_stream *s);
    /* TLS: the handshake completed (plaintext may follow at once in on_read). */
    void (*on_open)(struct net_stream *s);
    /* The peer closed (err RP_OK: FIN or TLS close_notify) or the stream failed (read or
     * write error, TLS failure). Reading has stopped; the owner decides when to close. */
    void (*on_eof)(struct net_stream *s, int err);
    /* A write completed and unsent output is back within max_unsent. */
    void (*on_drain)(struct net_stream *s);
    /* The timer set with net_stream_timer fired. */
    void (*on_timer)(struct net_stream *s);
    /* Everything is released: the owner frees its memory here. */
    void (*on_free)(struct net_stream *s);
};

enum net_stream_state {
    RP_STREAM_OPEN,     /* reading and writing as the owner wants */
    RP_STREAM_FLUSHING, /* close_after_flush: the queued output goes out, input is ignored */
    RP_STREAM_LINGER,   /* output sent and FIN queued; input discarded until EOF or timeout */
    RP_STREAM_CLOSING,  /* uv_close issued; on_free once the handles are closed */
};

struct net_stream {
    uv_tcp_t tcp;
    uv_timer_t timer;
    const struct net_stream_ops *ops;
    struct rp_tls *tls; /* NULL for plain TCP; owned by the stream once set */
    struct rp_buf in;   /* plaintext received, not yet consumed by the owner */
    struct rp_buf out;  /* output (ciphertext with TLS) not yet handed to libuv */
    uv_write_t wreq;
    uv_shutdown_t sreq;
    uint8_t *wmem;     /* the buffer lent to libuv for the write in flight */
    size_t max_unsent; /* on_drain fires when unsent output is back within this */
    uint32_t linger_ms;
    enum net_stream_state state;
    uint8_t handles; /* libuv handles not yet closed */
    uint8_t holds;   /* owner references that keep the memory alive after close */
    bool paused;     /* the owner does not want input now */
    bool reading;    /* uv_read_start is active */
    bool tls_full;   /* decrypted records wait inside the TLS session for room in `in` */
    bool eof;        /* the peer's input is over */
    bool shutting;   /* uv_shutdown in flight */
};

/* Both handles on loop; in_max caps `in` (0 = no cap). Always succeeds. */
void net_stream_init(struct net_stream *s, uv_loop_t *loop, const struct net_stream_ops *ops,
                     size_t in_max, size_t max_unsent);
/* Adopt an accepted socket. RP_OK or RP_E_IO (then close the stream; fd is closed). */
int net_stream_open_fd(struct net_stream *s, int fd);
/* Put a TLS session on the stream (before net_stream_start); the stream frees it. */
void net_stream_set_tls(struct net_stream *s, struct rp_tls *tls);
/* Start reading; a TLS client sends its ClientHello. RP_OK or an error (then close). */
int net_stream_start(struct net_stream *s);
/* Plaintext out. RP_OK, or an error after which the owner closes the stream. */
int net_stream_write(struct net_stream *s, const uint8_t *p, size_t n);
/* Output queued and not yet taken by the kernel. */
size_t net_stream_unsent(const struct net_stream *s);
void net_stream_read_pause(struct net_stream *s, bool paused);
/* Move decrypted records held back for lack of room into `in`; resumes reading when all
 * fit. RP_OK, RP_E_TLS_CLOSED (the peer closed after them) or a TLS error. */
int net_stream_pump(struct net_stream *s);
/* Between messages: give back the input buffers (plaintext and TLS) when they are empty, so
 * that an idle stream holds no buffer at all. */
void net_stream_shrink(struct net_stream *s);
void net_stream_timer(struct net_stream *s, uint32_t ms);
void net_stream_timer_stop(struct net_stream *s);
void net_stream_close(struct net_stream *s);
/* Send what is queued, then close; give up after timeout_ms. No more owner callbacks but
 * on_free. */
void net_stream_close_after_flush(struct net_stream *s, uint32_t timeout_ms);
void net_stream_hold(struct net_stream *s);
void net_stream_release(struct net_stream *s);

#endif
