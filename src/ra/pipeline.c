/* The exchange pipeline (DESIGN.md, "One exchange, end to end"): HTTP policy, route to a
 * trust domain, then forward to the CA and relay its answer. */
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"
#include "raproxy/http.h"
#include "raproxy/log.h"
#include "raproxy/loop.h"
#include "raproxy/server.h"
#include "raproxy/snapshot.h"
#include "raproxy/upstream.h"

#include <llhttp.h>
#include <stdio.h>
#include <string.h>

#define CMP_CONTENT_TYPE "application/pkixcmp"
#define DOMAIN_PATH_MAX  300

struct ra_exchange {
    struct rp_exchange *ex;
    const struct rp_cfg_domain *domain; /* NULL: served by default_path without a domain */
    struct rp_upstream_req up;
};

static void answer_http(struct rp_exchange *ex, int err, const char *extra)
{
    const char *msg = rp_err_msg(err);
    char body[160];
    int n = snprintf(body, sizeof body, "%s\n", msg);
    snprintf(ex->log.result, sizeof ex->log.result, "%s", rp_err_name(err));
    rp_exchange_respond(ex, rp_err_http(err), "text/plain; charset=utf-8", (const uint8_t *)body,
                        (size_t)n, extra);
}

/* Paths match exactly, except that a trailing slash is optional on either side. */
static bool path_matches(struct rp_view path, const char *want)
{
    size_t plen = path.len, wlen = strlen(want);
    for (size_t i = 0; i < plen; i++)
        if (path.p[i] == '?') {
            plen = i;
            break;
        }
    while (plen > 1 && path.p[plen - 1] == '/')
        plen--;
    while (wlen > 1 && want[wlen - 1] == '/')
        wlen--;
    return plen == wlen && memcmp(path.p, want, plen) == 0;
}

/* Returns 1 and the domain (may be NULL for the plain default path) when served here. */
static int route(const struct rp_config *cfg, struct rp_view path, const struct rp_cfg_domain **out)
{
    char buf[DOMAIN_PATH_MAX];
    for (unsigned i = 0; i < cfg->domains_count; i++) {
        const struct rp_cfg_domain *d = &cfg->domains[i];
        if (path_matches(path, rp_config_domain_path(d, buf, sizeof buf))) {
            *out = d;
            return 1;
        }
        for (unsigned j = 0; j < d->paths_count; j++)
            if (path_matches(path, d->paths[j])) {
                *out = d;
                return 1;
            }
    }
    if (cfg->default_path && path_matches(path, cfg->default_path)) {
        *out = cfg->domains_count ? &cfg->domains[0] : NULL;
        return 1;
    }
    return 0;
}

static void on_upstream(struct rp_upstream_req *up)
{
    struct ra_exchange *rx = up->arg;
    struct rp_exchange *ex = rx->ex;
    ex->log.upstream_ns = up->t_end_ns - up->t_start_ns;
    ex->log.upstream_status = up->status;
    if (up->err != RP_OK) {
        rp_log_warn("upstream", "request for %s failed: %s (sent: %s)", ex->client_addr,
                    rp_err_msg(up->err), up->sent ? "yes" : "no");
        answer_http(ex, up->err, NULL);
        return;
    }
    if (up->status != 200 || !rp_http_media_type_is(up->ctype, CMP_CONTENT_TYPE)) {
        rp_log_warn("upstream", "CA answered HTTP %d (%.*s) for %s", up->status, (int)up->ctype.len,
                    (const char *)up->ctype.p, ex->client_addr);
        answer_http(ex, RP_E_UPSTREAM_STATUS, NULL);
        return;
    }
    snprintf(ex->log.result, sizeof ex->log.result, "forwarded");
    rp_exchange_respond(ex, 200, CMP_CONTENT_TYPE, up->resp.p, up->resp.len, NULL);
}

static void forward(struct ra_exchange *rx)
{
    struct rp_exchange *ex = rx->ex;
    struct rp_upstream *u = rp_loop_upstream(ex->loop);
    if (!u) {
        answer_http(ex, RP_E_SHUTDOWN, NULL);
        return;
    }
    rx->up.path = rx->domain ? rx->domain->upstream_path : NULL;
    rx->up.content_type = CMP_CONTENT_TYPE;
    rx->up.body = ex->req->body.p;
    rx->up.len = ex->req->body.len;
    rx->up.cb = on_upstream;
    rx->up.arg = rx;
    int rc = rp_upstream_send(u, &rx->up);
    if (rc != RP_OK)
        answer_http(ex, rc, rc == RP_E_UPSTREAM_QUEUE_FULL ? "Retry-After: 1\r\n" : NULL);
}

void rp_server_on_exchange(struct rp_exchange *ex)
{
    const struct rp_http_req *req = ex->req;
    const struct rp_config *cfg = ex->snap->cfg;
    const struct rp_cfg_domain *domain = NULL;
    if (!route(cfg, req->path, &domain)) {
        answer_http(ex, RP_E_HTTP_PATH, NULL);
        return;
    }
    if (domain)
        snprintf(ex->log.domain, sizeof ex->log.domain, "%s", domain->name);
    if (req->method != HTTP_POST) {
        answer_http(ex, RP_E_HTTP_METHOD, "Allow: POST\r\n");
        return;
    }
    if (!rp_http_media_type_is(req->content_type, CMP_CONTENT_TYPE)) {
        answer_http(ex, RP_E_HTTP_CTYPE, NULL);
        return;
    }
    if (req->body.len == 0) {
        answer_http(ex, RP_E_HTTP_PARSE, NULL);
        return;
    }
    struct ra_exchange *rx = rp_arena_calloc(&ex->arena, 1, sizeof *rx);
    if (!rx) {
        answer_http(ex, RP_E_NOMEM, NULL);
        return;
    }
    rx->ex = ex;
    rx->domain = domain;
    ex->app = rx;
    forward(rx);
}
