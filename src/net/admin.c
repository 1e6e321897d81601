/* The admin listener: /livez, /readyz and /metrics (Prometheus text format). */
#include "net_int.h"

#include "raproxy/buf.h"
#include "raproxy/err.h"
#include "raproxy/guard.h"
#include "raproxy/metrics.h"
#include "raproxy/snapshot.h"
#include "raproxy/upstream.h"
#include "raproxy/url.h"

#include <llhttp.h>
#include <stdio.h>
#include <string.h>

/* "<reason> unavailable\n" */
#define RP_READY_REASON_MAX 64

#define RP_READY_BODY_MAX 4096

static void text(struct rp_exchange *ex, int status, const char *body)
{
    rp_exchange_respond(ex, status, "text/plain; charset=utf-8", (const uint8_t *)body,
                        strlen(body), NULL);
}

static void metrics(struct rp_exchange *ex)
{
    static struct rp_metric *guard;
    if (!guard) {
        rp_metrics_help("raproxy_crypto_on_loop_total", RP_METRIC_COUNTER,
                        "Signature or MAC operations run on an I/O loop thread (must stay 0).");
        guard = rp_metric_get("raproxy_crypto_on_loop_total", RP_METRIC_COUNTER, NULL);
    }
    rp_metric_set(guard, (int64_t)rp_guard_violations());
    struct rp_buf out;
    rp_buf_init(&out, 0);
    if (rp_metrics_render(&out) != RP_OK) {
        rp_buf_free(&out);
        text(ex, 500, "metrics unavailable\n");
        return;
    }
    rp_exchange_respond(ex, 200, "text/plain; version=0.0.4; charset=utf-8", rp_buf_head(&out),
                        rp_buf_avail(&out), NULL);
    rp_buf_free(&out);
}

/* The verdict, then what the application adds (each domain's CRL state), on 200 and 503
 * alike. */
static void ready(struct rp_exchange *ex, int status, const char *verdict)
{
    char body[RP_READY_BODY_MAX];
    int head = snprintf(body, sizeof body, "%s", verdict);
    if (ex->loop->ready_detail && head > 0 && (size_t)head < sizeof body)
        ex->loop->ready_detail(ex->loop, body + head, sizeof body - (size_t)head);
    text(ex, status, body);
}

/* ---- readiness -------------------------------------------------------------------------
 * /readyz is 200 "ready" unless one of these says why not (the first one that does, as
 * "503 <reason>"). Each check is cheap and answers for the whole process; buf may hold the
 * reason. To add a reason, add a check here; the application adds its own through
 * rp_loop_opts.ready and the snapshot's unready hook. README.md ("Health, readiness and
 * connections") lists every reason. */

static const char *check_draining(struct rp_loop *l, char *buf, size_t cap)
{
    (void)buf;
    (void)cap;
    return rp_ready_draining() || l->draining ? "draining" : NULL;
}

/* A key in a token that is down (ra_key, tls_key): nothing can be signed. */
static const char *check_keys(struct rp_loop *l, char *buf, size_t cap)
{
    const char *why = l->snap && l->snap->unready ? l->snap->unready(l->snap) : NULL;
    if (!why)
        return NULL;
    snprintf(buf, cap, "%s unavailable", why);
    return buf;
}

static const char *check_upstream(struct rp_loop *l, char *buf, size_t cap)
{
    (void)buf;
    (void)cap;
    return !l->upstream || !rp_upstream_reachable(l->upstream) ? "upstream unreachable" : NULL;
}

static const char *check_saturation(struct rp_loop *l, char *buf, size_t cap)
{
    (void)l;
    (void)buf;
    (void)cap;
    return rp_ready_saturation();
}

static const char *check_application(struct rp_loop *l, char *buf, size_t cap)
{
    (void)buf;
    (void)cap;
    return l->ready && !l->ready(l) ? "redis unavailable" : NULL;
}

static const char *(*const readiness_checks[])(struct rp_loop *l, char *buf, size_t cap) = {
    check_draining, check_keys, check_upstream, check_saturation, check_application,
};

static void readyz(struct rp_exchange *ex)
{
    char reason[RP_READY_REASON_MAX], line[RP_READY_REASON_MAX + 2];
    for (size_t i = 0; i < sizeof readiness_checks / sizeof readiness_checks[0]; i++) {
        const char *why = readiness_checks[i](ex->loop, reason, sizeof reason);
        if (why) {
            snprintf(line, sizeof line, "%s\n", why);
            ready(ex, 503, line);
            return;
        }
    }
    ready(ex, 200, "ready\n");
}

void net_admin_handle(struct rp_exchange *ex)
{
    const struct rp_http_req *r = ex->req;
    if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
        text(ex, 405, "method not allowed\n");
        return;
    }
    if (rp_url_path_is(r->path, "/livez")) {
        text(ex, 200, "ok\n");
    } else if (rp_url_path_is(r->path, "/readyz")) {
        readyz(ex);
    } else if (rp_url_path_is(r->path, "/metrics")) {
        metrics(ex);
    } else {
        text(ex, 404, "not found\n");
    }
}
