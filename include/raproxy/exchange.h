/* An exchange: one HTTP request on a client connection and its answer. The net layer
 * creates it when a request is complete and hands it to the application's handler on the
 * loop thread; the handler answers exactly once with rp_exchange_respond(), possibly
 * later (after a worker job, a Redis reply or an upstream response).
 *
 * The exchange owns an arena with a hard cap; it and the request views live until
 * rp_exchange_respond() returns. If the client goes away first, the exchange stays valid
 * (rp_exchange_aborted() turns true) and respond() only releases it. */
#ifndef RAPROXY_EXCHANGE_H
#define RAPROXY_EXCHANGE_H

#include "raproxy/arena.h"
#include "raproxy/view.h"

#include <stdbool.h>
#include <stdint.h>

struct rp_loop;
struct rp_snapshot;
struct rp_http_req;
struct rp_conn;

#define RP_EXCHANGE_LOG_FIELD 64

/* Fields the application fills for the one log line of the exchange. */
struct rp_exchange_log {
    char domain[RP_EXCHANGE_LOG_FIELD];
    char body[16];                      /* CMP body type of the request */
    char result[32];                    /* "forwarded", "refused", … */
    char failinfo[32];                  /* failInfo name when refused */
    char serial[RP_EXCHANGE_LOG_FIELD]; /* device serial */
    char txid[36];                      /* transactionID, hex (first 16 bytes) */
    int upstream_status;                /* HTTP status from the CA, 0 if none */
    uint64_t upstream_ns;
    uint64_t verify_ns;
};

struct rp_exchange {
    struct rp_loop *loop;
    struct rp_snapshot *snap;      /* reference held for the exchange's life */
    const struct rp_http_req *req; /* method, path, content type, body */
    unsigned listener;             /* index in snap->cfg->listeners */
    char client_addr[48];
    uint16_t client_port;
    struct rp_view client_cert; /* TLS client certificate DER, if any */
    struct rp_arena arena;
    uint64_t t_start_ns;
    void *app; /* the application's per-exchange state */
    struct rp_exchange_log log;
    /* internal */
    struct rp_conn *conn;
    bool aborted;
};

/* Queue the answer and release the exchange. `extra_headers` is raw header lines
 * ("Retry-After: 3\r\n") or NULL. Returns RP_OK; the exchange must not be used after. */
int rp_exchange_respond(struct rp_exchange *ex, int status, const char *content_type,
                        const uint8_t *body, size_t len, const char *extra_headers);

static inline bool rp_exchange_aborted(const struct rp_exchange *ex)
{
    return ex->aborted;
}

typedef void (*rp_exchange_fn)(struct rp_exchange *ex);

#endif
