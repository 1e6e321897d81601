/* The upstream pool: keep-alive HTTP/1.1 (optionally TLS) connections from one loop to the
 * CA, a bounded queue when all are busy, a deadline per request. A request that may have
 * reached the CA is never retried: once its first byte is written, any failure is reported
 * to the caller as it is. */
#ifndef RAPROXY_UPSTREAM_H
#define RAPROXY_UPSTREAM_H

#include "raproxy/list.h"
#include "raproxy/view.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct rp_upstream;
struct rp_upstream_req;
struct rp_cfg_upstream;
struct rp_tls_ctx;

typedef void (*rp_upstream_fn)(struct rp_upstream_req *r);

struct rp_upstream_req {
    /* in */
    const char *path; /* NULL: the path of upstream.url */
    const char *content_type;
    const uint8_t *body;
    size_t len;
    rp_upstream_fn cb; /* called exactly once, on the loop thread */
    void *arg;
    /* out, valid during cb */
    int err;    /* RP_OK or RP_E_UPSTREAM_* */
    int status; /* HTTP status when err == RP_OK */
    struct rp_view ctype;
    struct rp_view resp; /* response body */
    bool sent;           /* bytes reached the socket: the CA may have seen it */
    uint64_t t_start_ns, t_end_ns;
    /* internal */
    struct rp_list_node link; /* in the pool's queue while it waits for a connection */
    struct rp_upstream_conn *uc;
    struct rp_upstream *pool;
    uv_timer_t deadline;
    int state;
};

int rp_upstream_new(struct rp_upstream **out, uv_loop_t *loop, const struct rp_cfg_upstream *cfg,
                    struct rp_tls_ctx *tls);
/* Queue or send. RP_OK (cb will fire), or RP_E_UPSTREAM_QUEUE_FULL / RP_E_SHUTDOWN
 * synchronously (cb will not fire). */
int rp_upstream_send(struct rp_upstream *u, struct rp_upstream_req *r);
/* Fails queued requests with RP_E_SHUTDOWN and in-flight ones with RP_E_UPSTREAM_CLOSED
 * (their callbacks still fire), closes every connection and frees the pool once they are
 * gone. */
void rp_upstream_close(struct rp_upstream *u);
/* For a pool replaced by a reload: no new requests, the accepted ones finish, then the
 * pool frees itself. */
void rp_upstream_retire(struct rp_upstream *u);
/* True when a live connection exists or the last connection attempt succeeded. With no
 * live connection and a stale answer it also starts a connection in the background. */
bool rp_upstream_reachable(struct rp_upstream *u);
/* Requests in flight or queued. */
unsigned rp_upstream_pending(const struct rp_upstream *u);

#endif
