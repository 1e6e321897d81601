/* The admin listener: /livez, /readyz and /metrics (Prometheus text format). */
#include "net_int.h"

#include "raproxy/buf.h"
#include "raproxy/err.h"
#include "raproxy/guard.h"
#include "raproxy/metrics.h"
#include "raproxy/snapshot.h"
#include "raproxy/upstream.h"

#include <llhttp.h>
#include <stdio.h>
#include <string.h>

/* "<reason> unavailable\n" */
#define RP_READY_REASON_MAX 64

static bool path_is(const struct rp_http_req *r, const char *p)
{
    size_t n = strlen(p);
    if (r->path.len < n || memcmp(r->path.p, p, n) != 0)
        return false;
    return r->path.len == n || r->path.p[n] == '?';
}

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

void rp_admin_handle(struct rp_exchange *ex)
{
    const struct rp_http_req *r = ex->req;
    if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
        text(ex, 405, "method not allowed\n");
        return;
    }
    if (path_is(r, "/livez")) {
        text(ex, 200, "ok\n");
    } else if (path_is(r, "/readyz")) {
        struct rp_upstream *u = ex->loop->upstream;
        const char *why = ex->snap && ex->snap->unready ? ex->snap->unready(ex->snap) : NULL;
        char reason[RP_READY_REASON_MAX];
        if (rp_ready_draining() || ex->loop->draining) {
            ready(ex, 503, "draining\n");
        } else if (why) {
            snprintf(reason, sizeof reason, "%s unavailable\n", why);
            ready(ex, 503, reason);
        } else if (!u || !rp_upstream_reachable(u)) {
            ready(ex, 503, "upstream unreachable\n");
        } else if (ex->loop->ready && !ex->loop->ready(ex->loop)) {
            ready(ex, 503, "redis unavailable\n");
        } else {
            ready(ex, 200, "ready\n");
        }
    } else if (path_is(r, "/metrics")) {
        metrics(ex);
    } else {
        text(ex, 404, "not found\n");
    }
}
