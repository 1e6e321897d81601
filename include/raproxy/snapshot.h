/* One immutable, reference-counted configuration snapshot: the parsed config plus the
 * materials built from it (TLS contexts, the RA's state). SIGHUP builds a new one and
 * swaps it in; an exchange keeps a reference to the snapshot it started with. */
#ifndef RAPROXY_SNAPSHOT_H
#define RAPROXY_SNAPSHOT_H

#include <stdatomic.h>
#include <stdint.h>

struct rp_config;
struct rp_tls_ctx;

struct rp_snapshot {
    _Atomic long refs;
    uint64_t generation;
    struct rp_config *cfg;
    struct rp_tls_ctx **listener_tls; /* [cfg->listeners_count]; NULL for `tls: off` */
    struct rp_tls_ctx *upstream_tls;  /* NULL for http:// upstreams */
    struct rp_tls_ctx *va_tls;        /* validation.url over https; NULL otherwise */
    void *ra;                         /* the RA layer's state (domains, keys, anchors) */
    void (*ra_free)(void *ra);
    /* Releases what the layers above core built (TLS contexts); set by the builder. */
    void (*release)(struct rp_snapshot *s);
    /* Why this snapshot cannot serve now, as a /readyz reason ("ra_key": the RA key's
     * PKCS#11 token is down), or NULL. Set by the builder; may be NULL. Any thread. */
    const char *(*unready)(const struct rp_snapshot *s);
};

static inline struct rp_snapshot *rp_snapshot_ref(struct rp_snapshot *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

/* Frees the snapshot when the last reference goes. */
void rp_snapshot_unref(struct rp_snapshot *s);

#endif
