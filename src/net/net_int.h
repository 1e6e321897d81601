/* Internals shared by the files of src/net: the loop, its listeners and connections. */
#ifndef RP_NET_INT_H
#define RP_NET_INT_H

#include "raproxy/buf.h"
#include "raproxy/exchange.h"
#include "raproxy/http.h"
#include "raproxy/list.h"
#include "raproxy/loop.h"

#include "stream.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct rp_tls;
struct rp_tls_ctx;
struct rp_metric;

/* A listening socket and what its connections are for. */
struct net_listener {
    struct rp_loop *loop;
    rp_exchange_fn handler; /* answers every request of its connections */
    int tls_index;          /* index in snap->listener_tls, -1: plain HTTP */
    unsigned index;         /* in cfg->listeners, passed on to exchanges */
    bool device;            /* device traffic: counted against the caps, logged, metered */
    int fd;
    uv_poll_t poll;
    bool polling;
    bool closed;
    struct net_listener *next;
};

/* Work the loop runs on its next turn, never on the stack that asked for it. */
struct rp_defer {
    struct rp_list_node link;
    void (*cb)(struct rp_defer *d);
};

enum rp_conn_state {
    RP_CONN_HANDSHAKE, /* TLS handshake in progress */
    RP_CONN_READING,   /* waiting for / reading a request */
    RP_CONN_EXCHANGE,  /* a request is with the application */
    RP_CONN_ANSWERED,  /* answer queued; the next request waits for the resume callback */
    RP_CONN_LAST,      /* the last answer is going out, then the stream closes */
    RP_CONN_CLOSED,    /* stream closed; freed when it says so */
};

/* A device (or admin) connection: HTTP/1.1 server over a stream, one exchange at a time so
 * pipelined requests are answered in order. */
struct rp_conn {
    struct net_stream s;
    struct rp_loop *loop;
    struct net_listener *listener; /* NULL once the listener is gone */
    rp_exchange_fn handler;
    unsigned listener_index;
    bool device;
    enum rp_conn_state state;
    struct rp_http_server http;
    struct rp_exchange *ex; /* the exchange in flight, if any */
    struct rp_defer resume; /* starts the next pipelined request */
    struct rp_list_node link;
    bool close_after_write; /* answer then close (Connection: close, drain) */
    bool peer_eof;
    bool handshaking;              /* counted in the loop's handshakes in flight */
    struct net_ipcap_entry *ipcap; /* this connection's place in its address's count */
    char addr[48];
    uint16_t port;
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
    struct rp_upstream *upstream; /* the CA pool the application built (on_snapshot) */
    void *ctx;                    /* rp_loop_opts.ctx */
    void *app;

    struct net_listener *listeners;
    struct rp_list_node conns;
    unsigned nconns;      /* open connections (the accept cap counts these) */
    unsigned conns_alive; /* connection memory not yet freed (drain waits for these) */
    unsigned app_work;    /* the application's work outside connections (drain waits too) */
    unsigned max_conns;
    unsigned handshakes; /* TLS handshakes in flight */
    unsigned max_handshakes;
    bool at_cap;                /* counted in the process-wide number of loops at max_conns */
    int reserve_fd;             /* given up to accept (and close) when descriptors run out */
    uint64_t fd_limit;          /* RLIMIT_NOFILE when the loop started */
    uint64_t refused_log_ns;    /* rate limit of the "connection refused" log line */
    unsigned trim_peak;         /* most device connections since the last malloc_trim */
    unsigned closed_since_trim; /* connections freed since then */
    uint64_t trim_ns;
    unsigned refused_unlogged;

    uv_async_t wake; /* snapshot swaps, drain */
    pthread_mutex_t lock;
    struct rp_snapshot *pending_snap; /* guarded by lock */
    bool pending_drain;               /* guarded by lock */
    uint32_t pending_grace_ms;        /* guarded by lock */

    bool draining;
    uv_timer_t grace;
    uv_timer_t lag;
    uint64_t lag_expected_ns;
    uv_idle_t defer_idle;         /* runs `deferred` on the next turn */
    struct rp_list_node deferred; /* struct rp_defer */
    bool admin;
    bool stopped;
};

/* Why a connection was closed at accept, for raproxy_connections_refused_total{reason}. */
enum rp_refused {
    RP_REFUSED_PER_IP,   /* http.max_connections_per_ip */
    RP_REFUSED_FD_LIMIT, /* out of descriptors: accepted with the reserve and closed */
    RP_REFUSED_TLS,      /* no TLS session could be made */
    RP_REFUSED_NOMEM,
    RP_REFUSED_COUNT_
};

/* conn.c */
void net_conn_accept(struct net_listener *ls, int fd, const struct sockaddr *peer);
void net_conn_drain(struct rp_conn *c);
void net_conn_close(struct rp_conn *c);

/* listener.c */
int net_listener_bind(const char *address, int *fd_out);
int net_listener_start(struct rp_loop *l, int fd, const struct net_listener *proto);
/* Start or stop accepting on each listener after the caps or counts changed. */
void net_listeners_update(struct rp_loop *l);
void net_listeners_close(struct rp_loop *l);

/* ipcap.c: device connections per client address, process-wide */
struct net_ipcap_entry;
/* RP_OK (*out counts this connection), RP_E_HTTP_OVERLOADED at the cap (0 = none), NOMEM. */
int net_ipcap_acquire(const struct sockaddr *peer, unsigned cap, struct net_ipcap_entry **out);
void net_ipcap_release(struct net_ipcap_entry *e);

/* admin.c */
void net_admin_handle(struct rp_exchange *ex);

/* loop.c */
void net_loop_conn_closed(struct rp_loop *l);
/* Count (and log, at most once a second) a connection closed at accept. */
void net_loop_refused(struct rp_loop *l, enum rp_refused why);
/* (Re)open the reserved descriptor if it is not held. */
void net_loop_reserve_fd(struct rp_loop *l);
void net_loop_set_at_cap(struct rp_loop *l, bool at_cap);
/* Run d->cb on the loop's next turn (once, however often asked); cancel unlinks it. */
void net_loop_defer(struct rp_loop *l, struct rp_defer *d);
void net_loop_defer_cancel(struct rp_defer *d);

#endif
