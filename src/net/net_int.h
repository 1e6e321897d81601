/* Internals shared by the files of src/net: the loop, its listeners and connections. */
#ifndef RP_NET_INT_H
#define RP_NET_INT_H

#include "raproxy/buf.h"
#include "raproxy/exchange.h"
#include "raproxy/http.h"
#include "raproxy/loop.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct rp_tls;
struct rp_tls_ctx;
struct rp_metric;

enum rp_listener_kind { RP_LISTENER_CMP, RP_LISTENER_ADMIN };

struct rp_listener {
    struct rp_loop *loop;
    enum rp_listener_kind kind;
    unsigned index; /* in cfg->listeners (CMP) */
    int fd;
    uv_poll_t poll;
    bool polling;
    bool closed;
    struct rp_listener *next;
};

enum rp_conn_state {
    RP_CONN_HANDSHAKE, /* TLS handshake in progress */
    RP_CONN_READING,   /* waiting for / reading a request */
    RP_CONN_EXCHANGE,  /* a request is with the application */
    RP_CONN_CLOSING,   /* uv_close issued; freed in its callback */
};

struct rp_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct rp_loop *loop;
    struct rp_listener *listener; /* NULL once the listener is gone */
    enum rp_listener_kind kind;
    unsigned listener_index;
    enum rp_conn_state state;
    struct rp_tls *tls; /* NULL for plain HTTP */
    struct rp_http_server http;
    struct rp_buf in;       /* plaintext not yet parsed */
    struct rp_exchange *ex; /* the exchange in flight, if any */
    int handles;            /* libuv handles still open (tcp, timer) */
    unsigned writes;        /* uv_write requests in flight */
    bool read_stopped;
    bool close_after_write; /* answer then close (Connection: close, errors, drain) */
    bool peer_eof;
    char addr[48];
    uint16_t port;
    uint64_t t_accept_ns;
    struct rp_conn *prev, *next;
};

struct rp_loop {
    uv_loop_t uv;
    pthread_t thread;
    unsigned index;
    rp_exchange_fn on_exchange;
    int (*on_snapshot)(struct rp_loop *l, struct rp_snapshot *s);
    void (*on_stop)(struct rp_loop *l);
    bool (*ready)(struct rp_loop *l);
    void (*ready_detail)(struct rp_loop *l, char *buf, size_t cap);
    struct rp_snapshot *snap;
    struct rp_workers *workers;
    struct rp_upstream *upstream;
    void *app;

    struct rp_listener *listeners;
    struct rp_conn *conns;
    unsigned nconns;      /* open connections (the accept cap counts these) */
    unsigned conns_alive; /* connection memory not yet freed (drain waits for these) */
    unsigned max_conns;

    uv_async_t wake; /* snapshot swaps, drain */
    pthread_mutex_t lock;
    struct rp_snapshot *pending_snap; /* guarded by lock */
    bool pending_drain;               /* guarded by lock */
    uint32_t pending_grace_ms;        /* guarded by lock */

    bool draining;
    uv_timer_t grace;
    uv_timer_t lag;
    uint64_t lag_expected_ns;
    bool admin;
    bool stopped;

    uint8_t readbuf[65536]; /* shared by every connection of the loop: reads are consumed at once */
};

/* conn.c */
void rp_conn_accept(struct rp_listener *ls, int fd);
void rp_conn_drain(struct rp_conn *c);
void rp_conn_close(struct rp_conn *c);

/* listener.c */
int rp_listener_bind(const char *address, int *fd_out);
int rp_listener_start(struct rp_loop *l, int fd, enum rp_listener_kind kind, unsigned index);
void rp_listeners_pause(struct rp_loop *l);
void rp_listeners_resume(struct rp_loop *l);
void rp_listeners_close(struct rp_loop *l);

/* admin.c */
void rp_admin_handle(struct rp_exchange *ex);

/* loop.c */
void rp_loop_conn_closed(struct rp_loop *l);

#endif
