/* Redis client for one libuv loop: hiredis async + its libuv adapter, with what hiredis 0.14
 * lacks: a deadline on every command, reconnect with back-off, scripts reloaded on every
 * (re)connect, and a cap on commands in flight.
 *
 * Guarantees
 * - Exactly one callback per accepted command (rp_redis_command/rp_redis_evalsha returned 0):
 *   the reply, an error reply (err = RP_E_REDIS_REPLY, reply set), RP_E_REDIS_TIMEOUT when the
 *   deadline passes first, RP_E_REDIS_DOWN when the connection is lost, RP_E_SHUTDOWN from
 *   rp_redis_close. A reply arriving after its deadline is dropped.
 * - A reply reaches the caller as struct rp_redis_reply, never as a hiredis type: only
 *   src/net knows hiredis. Its shape is the caller's to judge (a reply of an unexpected kind
 *   or length is the caller's refusal).
 * - While not connected (or over the in-flight cap) commands are refused at once with a
 *   negative return and no callback: there is no queue that could grow without bound.
 * - Callbacks run on the loop thread. `reply`, its strings and its elements are valid only
 *   during the callback: copy what must outlive it.
 *
 * Metrics: raproxy_redis_errors_total (error replies and commands lost with a connection),
 * raproxy_redis_timeouts_total, raproxy_redis_reconnects_total (connection attempts after a
 * loss), raproxy_redis_up (gauge: number of this process's loop connections that are ready;
 * 0/1 with one loop). */
#ifndef RAPROXY_REDIS_H
#define RAPROXY_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "raproxy/url.h"
#include "raproxy/view.h"

struct rp_redis;

/* Used when no key prefix is configured; admission keys and the allowlist CLI share it. */
#define RP_REDIS_DEFAULT_PREFIX "raproxy:"
/* Commands in flight per connection, including timed-out ones whose reply is still due. */
#define RP_REDIS_MAX_INFLIGHT 8192u

struct rp_redis_opts {
    const char *url;        /* redis://[user:pass@]host[:port][/db] or unix:/path */
    uint32_t timeout_ms;    /* per-command deadline; 0 = RP_DEF_REDIS_TIMEOUT */
    const char *key_prefix; /* NULL = RP_REDIS_DEFAULT_PREFIX */
};

/* Starts connecting at once (asynchronously); AUTH and SELECT when the URL asks for them. */
int rp_redis_new(struct rp_redis **out, uv_loop_t *loop, const struct rp_redis_opts *o);
/* Every pending callback fires with RP_E_SHUTDOWN (possibly before this returns); memory is
 * freed in the close path once the libuv handles are closed. Safe to call from a callback. */
void rp_redis_close(struct rp_redis *r);

/* What a reply is (RESP2, the protocol raproxy speaks). */
enum rp_redis_kind {
    RP_REDIS_REPLY_NIL,     /* a nil bulk string or nil array */
    RP_REDIS_REPLY_INTEGER, /* `integer` */
    RP_REDIS_REPLY_STATUS,  /* `str`: "OK", "PONG", ... */
    RP_REDIS_REPLY_ERROR,   /* `str`: "ERR ...", "NOSCRIPT ..."; the callback's err is
                               RP_E_REDIS_REPLY */
    RP_REDIS_REPLY_STRING,  /* `str`: a bulk string (binary safe; empty: len 0, p set) */
    RP_REDIS_REPLY_ARRAY,   /* `elements`, read with rp_redis_reply_elem */
};

/* A view of one reply (or of one element of an array reply). Fields a kind does not use are
 * zero / RP_VIEW_NULL. */
struct rp_redis_reply {
    enum rp_redis_kind kind;
    long long integer;
    struct rp_view str;
    size_t elements;
    const void *impl; /* the client's own reply; read only through rp_redis_reply_elem */
};

/* Element i of an array reply (a nested array is read the same way): true and *out set, or
 * false and *out a nil when r is not an array or i >= r->elements. */
bool rp_redis_reply_elem(const struct rp_redis_reply *r, size_t i, struct rp_redis_reply *out);

/* err RP_OK: reply set; RP_E_REDIS_REPLY: reply set, of kind RP_REDIS_REPLY_ERROR; any other
 * err: reply NULL. */
typedef void (*rp_redis_reply_fn)(void *arg, int err, const struct rp_redis_reply *reply);

/* 0 when accepted (callback will fire), else RP_E_REDIS_DOWN / RP_E_SHUTDOWN / RP_E_NOMEM and
 * no callback. argvlen may be NULL for NUL-terminated arguments. */
int rp_redis_command(struct rp_redis *r, rp_redis_reply_fn cb, void *arg, int argc,
                     const char **argv, const size_t *argvlen);
/* Registers a Lua script (the text must stay valid for the life of `r`; identical texts share
 * an id). It is SCRIPT LOADed on every (re)connect. */
int rp_redis_script(struct rp_redis *r, const char *lua, unsigned *script_id);
/* EVALSHA script keys… args…; argv holds the nkeys keys then the arguments. On NOSCRIPT (a
 * SCRIPT FLUSH or failover) the call is retried once as EVAL, which also reloads the cache;
 * that retry runs behind commands sent meanwhile (ordering across calls is not kept then). */
int rp_redis_evalsha(struct rp_redis *r, unsigned script_id, int nkeys, int argc, const char **argv,
                     const size_t *argvlen, rp_redis_reply_fn cb, void *arg);
/* Connected, authenticated and scripts loaded. */
bool rp_redis_ready(const struct rp_redis *r);
/* No callback owed: every command sent has had its reply, error or deadline (a client a
 * reload replaced is closed once idle, so no caller sees RP_E_SHUTDOWN for it). */
bool rp_redis_idle(const struct rp_redis *r);
const char *rp_redis_key_prefix(const struct rp_redis *r);

#endif
