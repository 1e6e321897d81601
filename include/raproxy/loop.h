/* An I/O loop: one thread, one libuv loop, its own listeners (SO_REUSEPORT), client
 * connections, the CA pool the application builds for it and admin server (loop 0 only). Everything
 * on it runs on its thread; other threads talk to it only through the functions marked thread-safe.
 */
#ifndef RAPROXY_LOOP_H
#define RAPROXY_LOOP_H

#include "raproxy/exchange.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct rp_loop;
struct rp_snapshot;
struct rp_upstream;

struct rp_loop_opts {
    unsigned index;
    struct rp_snapshot *snap;   /* initial snapshot (a reference is taken) */
    rp_exchange_fn on_exchange; /* the application handler for CMP listeners */
    void *ctx;                  /* the application's process-wide context (rp_loop_ctx) */
    bool admin;                 /* run the admin listener on this loop */
    /* Builds the application's per-loop resources from the snapshot (its CA pool, given to
     * the loop with rp_loop_set_upstream; a Redis client, …): once in rp_loop_start before
     * the loop thread starts (an error fails the start: the application's state must never
     * be silently missing), then on the loop thread whenever a new snapshot is installed
     * (an error is logged, the loop keeps its resources). */
    int (*on_snapshot)(struct rp_loop *l, struct rp_snapshot *s);
    /* loop thread, once the loop drained (or when rp_loop_start fails after on_snapshot) */
    void (*on_stop)(struct rp_loop *l);
    /* /readyz asks this too (loop thread); NULL = ready. E.g. Redis connected. */
    bool (*ready)(struct rp_loop *l);
    /* /readyz appends what this writes (loop thread; NUL-terminated lines) to its answer,
     * e.g. each domain's CRL state. NULL = nothing. */
    void (*ready_detail)(struct rp_loop *l, char *buf, size_t cap);
};

/* Binds the listeners (synchronously, so bind errors are reported here), then starts the
 * loop thread. */
int rp_loop_start(struct rp_loop **out, const struct rp_loop_opts *o);
/* Thread-safe: install a new snapshot (a reference is taken; the old one is released
 * when its exchanges end). */
void rp_loop_set_snapshot(struct rp_loop *l, struct rp_snapshot *s);
/* Thread-safe: stop accepting, finish in-flight exchanges within grace_ms, then stop. */
void rp_loop_drain(struct rp_loop *l, uint32_t grace_ms);
/* Wait for the loop thread to end and free everything. */
void rp_loop_join(struct rp_loop *l);

/* Loop-thread accessors for the application. */
uv_loop_t *rp_loop_uv(struct rp_loop *l);
unsigned rp_loop_index(const struct rp_loop *l);
struct rp_snapshot *rp_loop_snapshot(struct rp_loop *l);
/* The CA pool, or NULL (none built, or closed when the drain's grace period ended). */
struct rp_upstream *rp_loop_upstream(struct rp_loop *l);
/* The application's CA pool built from the snapshot (on_snapshot). The loop holds it for
 * /readyz and the drain, and closes it when the grace period ends or the loop stops; the
 * pool it replaces is retired: the requests it accepted finish on it, none is sent again. */
void rp_loop_set_upstream(struct rp_loop *l, struct rp_upstream *u);
void *rp_loop_ctx(struct rp_loop *l);
void *rp_loop_app(struct rp_loop *l);
void rp_loop_set_app(struct rp_loop *l, void *app);

/* Loop thread: work of the application that is not an exchange (a delayed request on its
 * way to the CA). A draining loop stops once its connections are gone and every hold is
 * released; when the grace period ends the upstream pool is closed, which ends such work
 * (its requests fail with RP_E_SHUTDOWN). */
void rp_loop_work_hold(struct rp_loop *l);
void rp_loop_work_release(struct rp_loop *l);
/* Loop thread: the loop is draining (SIGTERM): take no new work. */
bool rp_loop_draining(const struct rp_loop *l);

/* Loop thread: a one-shot timer for the layers above net, which do not use libuv. The
 * callback runs on the loop's thread. rp_loop_timer_free stops it and frees it once libuv
 * lets go of it; `closed(arg)` (may be NULL) runs then. */
struct rp_loop_timer;
typedef void (*rp_loop_timer_fn)(void *arg);
int rp_loop_timer_new(struct rp_loop *l, rp_loop_timer_fn cb, void *arg,
                      struct rp_loop_timer **out);
/* The same on a bare libuv loop (a unit test's, which has no struct rp_loop). */
struct uv_loop_s;
int rp_loop_timer_new_uv(struct uv_loop_s *uv, rp_loop_timer_fn cb, void *arg,
                         struct rp_loop_timer **out);
void rp_loop_timer_start(struct rp_loop_timer *t, uint64_t ms);
void rp_loop_timer_stop(struct rp_loop_timer *t);
void rp_loop_timer_free(struct rp_loop_timer *t, rp_loop_timer_fn closed, void *arg);
/* Loop thread: the loop's clock (ms, cached at the start of each iteration). */
uint64_t rp_loop_now_ms(struct rp_loop *l);

/* Process-wide readiness, read by /readyz. */
void rp_ready_set_draining(void);
bool rp_ready_draining(void);
/* Why new devices would wait or be refused now, for /readyz: the connection cap is reached
 * on a loop, or descriptors ran out in the last seconds. NULL when neither. */
const char *rp_ready_saturation(void);

#endif
