/* The OCSP relay: request in (POST or GET), cache, VA over the loop's pool, verification
 * on a crypto worker (through the pipeline's per-loop job port), answer. */
#include "raproxy/ocsp_relay.h"

#include "ra.h"

#include "raproxy/admit.h"
#include "raproxy/clock.h"
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"
#include "raproxy/http.h"
#include "raproxy/log.h"
#include "raproxy/loop.h"
#include "raproxy/metrics.h"
#include "raproxy/ocsp.h"
#include "raproxy/ocsp_cache.h"
#include "raproxy/snapshot.h"
#include "raproxy/tls.h"
#include "raproxy/upstream.h"
#include "raproxy/url.h"
#include "raproxy/worker.h"

#include <llhttp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>

/* Largest DER request taken from a GET URL (base64 of it is a third longer). */
#define GET_REQUEST_MAX 4096u
/* The relay's name in admission keys: ':' cannot appear in a domain name, so its buckets
 * never share a CMP domain's. */
#define OCSP_ADMIT_NAME ":ocsp"
#define RETRY_HDR_MAX   48

/* Per-exchange state, in the exchange's arena. */
struct ocsp_exchange {
    struct rp_exchange *ex;
    struct rp_ocsp_req req;
    struct rp_view der;
    struct rp_view key; /* cache key; absent when the request bypasses the cache */
    struct rp_ocsp_trust *trust;
    struct rp_ocsp_cache *cache;
    struct rp_upstream_req up;
    struct rp_job job;
    struct rp_ocsp_resp resp; /* parsed from `answer`, a copy in the arena */
    struct rp_view answer;
    int verdict;
    int64_t now, expires;
    struct rp_cfg_limits limits; /* validation.per_ip and .global, for admission */
};

static struct {
    struct rp_metric *hits, *misses, *bypass, *va_seconds, *entries, *limited;
} m;
static pthread_once_t m_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
    rp_metrics_help("raproxy_ocsp_cache_hits_total", RP_METRIC_COUNTER,
                    "OCSP requests answered from the cache.");
    rp_metrics_help("raproxy_ocsp_cache_misses_total", RP_METRIC_COUNTER,
                    "Cacheable OCSP requests forwarded to the VA.");
    rp_metrics_help("raproxy_ocsp_cache_bypass_total", RP_METRIC_COUNTER,
                    "OCSP requests with a nonce, forwarded without looking at the cache.");
    rp_metrics_help("raproxy_ocsp_cache_entries", RP_METRIC_GAUGE, "OCSP responses cached.");
    rp_metrics_help("raproxy_ocsp_va_seconds", RP_METRIC_HISTOGRAM,
                    "Time from sending an OCSP request to the VA to its answer.");
    rp_metrics_help("raproxy_ocsp_va_errors_total", RP_METRIC_COUNTER,
                    "VA answers not relayed (or relayed as tryLater), by reason.");
    m.hits = rp_metric_get("raproxy_ocsp_cache_hits_total", RP_METRIC_COUNTER, NULL);
    m.misses = rp_metric_get("raproxy_ocsp_cache_misses_total", RP_METRIC_COUNTER, NULL);
    m.bypass = rp_metric_get("raproxy_ocsp_cache_bypass_total", RP_METRIC_COUNTER, NULL);
    m.entries = rp_metric_get("raproxy_ocsp_cache_entries", RP_METRIC_GAUGE, NULL);
    m.va_seconds = rp_metric_get("raproxy_ocsp_va_seconds", RP_METRIC_HISTOGRAM, NULL);
    rp_metrics_help("raproxy_ocsp_refused_total", RP_METRIC_COUNTER,
                    "OCSP requests refused by admission (validation.per_ip / .global).");
    m.limited = rp_metric_get("raproxy_ocsp_refused_total", RP_METRIC_COUNTER, NULL);
}

static void va_error(const char *reason)
{
    char labels[64];
    snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
    rp_metrics_count("raproxy_ocsp_va_errors_total", labels);
}

/* ---- answers ------------------------------------------------------------------------ */

static void answer_http(struct rp_exchange *ex, int err, const char *extra)
{
    char body[160];
    int n = snprintf(body, sizeof body, "%s\n", rp_err_msg(err));
    snprintf(ex->log.result, sizeof ex->log.result, "%s", rp_err_name(err));
    rp_exchange_respond(ex, rp_err_http(err), "text/plain; charset=utf-8", (const uint8_t *)body,
                        (size_t)n, extra);
}

static void answer_ocsp(struct rp_exchange *ex, struct rp_view der, const char *result)
{
    snprintf(ex->log.result, sizeof ex->log.result, "%s", result);
    rp_exchange_respond(ex, 200, RP_OCSP_RESPONSE_TYPE, der.p, der.len, NULL);
}

/* A status-only OCSPResponse (tryLater, malformedRequest, …), HTTP 200 as RFC 6960
 * Appendix A asks: the device's OCSP client reads the status, not the HTTP code. */
static void answer_status(struct rp_exchange *ex, enum rp_ocsp_resp_status s, const char *result)
{
    uint8_t der[RP_OCSP_STATUS_RESPONSE_LEN];
    rp_ocsp_status_response(s, der);
    answer_ocsp(ex, rp_view_make(der, sizeof der), result);
}

/* ---- per-loop resources (built by resources.c from the snapshot) ---------------------- */

bool ra_ocsp_pool_same(const struct rp_snapshot *a, const struct rp_snapshot *b)
{
    const struct rp_cfg_validation *x = a->cfg->validation, *y = b->cfg->validation;
    if (!x || !y)
        return !x && !y;
    return strcmp(x->url, y->url) == 0 && x->timeout_ms == y->timeout_ms && a->va_tls == b->va_tls;
}

int ra_ocsp_pool_new(struct rp_loop *l, const struct rp_snapshot *s, struct rp_upstream **out)
{
    const struct rp_cfg_validation *v = s->cfg->validation;
    struct rp_cfg_upstream uc = {
        .url = v->url,
        .timeout_ms = v->timeout_ms,
        .connect_timeout_ms =
            v->timeout_ms < RP_DEF_UPSTREAM_CONNECT ? v->timeout_ms : RP_DEF_UPSTREAM_CONNECT,
        .max_connections = RP_DEF_UPSTREAM_MAX_CONNS,
        .max_queue = RP_DEF_UPSTREAM_QUEUE,
        .keep_alive = true,
    };
    return rp_upstream_new(out, rp_loop_uv(l), &uc, s->va_tls);
}

struct rp_ocsp_cache *ra_ocsp_cache_for(const struct rp_snapshot *s)
{
    const struct rp_cfg_validation *v = s->cfg->validation;
    if (!v)
        return NULL;
    struct rp_ocsp_cache *c = rp_ocsp_cache_shared(v->cache.max_entries, v->cache.max_age_s);
    /* a reload may change the trusted responders: answers verified under the old ones go
     * (once per new generation, whichever loop sees it first) */
    static _Atomic uint64_t cache_generation;
    uint64_t seen = atomic_load(&cache_generation);
    while (seen < s->generation &&
           !atomic_compare_exchange_weak(&cache_generation, &seen, s->generation))
        ;
    if (seen != 0 && seen < s->generation && c)
        rp_ocsp_cache_clear(c);
    return c;
}

/* ---- request ------------------------------------------------------------------------- */

/* The relay path this request is under: a domain's ocsp_path or validation.path. */
static const char *matched_path(const struct rp_config *cfg, struct rp_view path)
{
    if (!cfg->validation)
        return NULL;
    for (unsigned i = 0; i < cfg->domains_count; i++)
        if (cfg->domains[i].ocsp_path && rp_url_path_under(path, cfg->domains[i].ocsp_path, NULL))
            return cfg->domains[i].ocsp_path;
    if (cfg->validation->path && rp_url_path_under(path, cfg->validation->path, NULL))
        return cfg->validation->path;
    return NULL;
}

bool rp_ocsp_route(const struct rp_config *cfg, struct rp_view path)
{
    return matched_path(cfg, path) != NULL;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* RFC 5019 §5: GET <path>/<url-encoding of base64 of the DER request>. */
static int der_from_url(struct rp_exchange *ex, struct rp_view rest, struct rp_view *der)
{
    char *b64 = rp_arena_alloc(&ex->arena, rest.len + 1);
    uint8_t *out = rp_arena_alloc(&ex->arena, GET_REQUEST_MAX);
    size_t n = 0, len;
    if (!b64 || !out)
        return RP_E_ARENA;
    for (size_t i = 0; i < rest.len; i++) {
        if (rest.p[i] != '%') {
            b64[n++] = (char)rest.p[i];
            continue;
        }
        int hi = i + 2 < rest.len ? hexval(rest.p[i + 1]) : -1;
        int lo = i + 2 < rest.len ? hexval(rest.p[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return RP_E_HTTP_PARSE;
        b64[n++] = (char)(hi << 4 | lo);
        i += 2;
    }
    if (rp_ocsp_b64_decode(b64, n, out, GET_REQUEST_MAX, &len) != RP_OK || len == 0)
        return RP_E_HTTP_PARSE;
    *der = rp_view_make(out, len);
    return RP_OK;
}

/* The DER request from a POST body or a GET URL; HTTP errors for anything else. */
static int request_der(struct rp_exchange *ex, struct rp_view *der)
{
    const struct rp_http_req *req = ex->req;
    const char *base = matched_path(ex->snap->cfg, req->path);
    struct rp_view rest = RP_VIEW_NULL;
    rp_url_path_under(req->path, base ? base : "/", &rest);
    while (rest.len > 0 && rest.p[0] == '/')
        rest = rp_view_make(rest.p + 1, rest.len - 1);
    if (req->method == HTTP_POST) {
        if (!rp_http_media_type_is(req->content_type, RP_OCSP_REQUEST_TYPE))
            return RP_E_HTTP_CTYPE;
        if (req->body.len == 0)
            return RP_E_HTTP_PARSE;
        *der = req->body;
        return RP_OK;
    }
    if (req->method == HTTP_GET && rest.len > 0)
        return der_from_url(ex, rest, der);
    return RP_E_HTTP_METHOD;
}

/* The cache key: the CertIDs of the request, in order. */
static int cache_key(struct ocsp_exchange *ox)
{
    size_t len = 0;
    for (size_t i = 0; i < ox->req.n_ids; i++)
        len += ox->req.ids[i].raw.len;
    uint8_t *k = rp_arena_alloc(&ox->ex->arena, len);
    if (!k)
        return RP_E_ARENA;
    for (size_t i = 0, off = 0; i < ox->req.n_ids; i++) {
        memcpy(k + off, ox->req.ids[i].raw.p, ox->req.ids[i].raw.len);
        off += ox->req.ids[i].raw.len;
    }
    ox->key = rp_view_make(k, len);
    return RP_OK;
}

/* ---- VA answer ---------------------------------------------------------------------- */

/* Drop what the exchange holds outside its arena. Before answering: the answer frees the
 * arena, and ox with it. */
static void finish(struct ocsp_exchange *ox)
{
    rp_ocsp_trust_unref(ox->trust);
    ox->trust = NULL;
}

/* A verified response, relayed and cached. */
static void relay_verified(struct ocsp_exchange *ox, const struct rp_ocsp_resp *resp,
                           int64_t expires, int64_t now)
{
    if (rp_view_present(ox->key) && expires > now && ox->cache) {
        rp_ocsp_cache_put(ox->cache, ox->key, resp->raw, expires, now);
        rp_metric_set(m.entries, (int64_t)rp_ocsp_cache_count(ox->cache));
    }
    answer_ocsp(ox->ex, resp->raw, "ocsp-forwarded");
}

static void verify(struct ocsp_exchange *ox)
{
    uint64_t t0 = rp_clock_ns();
    ox->verdict = rp_ocsp_verify(ox->trust, &ox->req, &ox->resp, ox->now, &ox->expires);
    ox->ex->log.verify_ns = rp_clock_ns() - t0;
}

static void verified(struct ocsp_exchange *ox)
{
    finish(ox);
    if (ox->verdict == RP_E_QUEUE_FULL) {
        answer_status(ox->ex, RP_OCSP_TRY_LATER, "ocsp-busy");
    } else if (ox->verdict != RP_OK) {
        rp_log_warn("ocsp", "VA answer refused for %s: %s", ox->ex->client_addr,
                    rp_err_msg(ox->verdict));
        va_error("unverified");
        answer_status(ox->ex, RP_OCSP_TRY_LATER, "ocsp-unverified");
    } else {
        relay_verified(ox, &ox->resp, ox->expires, ox->now);
    }
}

static void run_verify(struct rp_job *j)
{
    struct ocsp_exchange *ox = container_of(j, struct ocsp_exchange, job);
    verify(ox);
    j->result = ox->verdict;
}

static void on_verified(struct rp_job *j)
{
    verified(container_of(j, struct ocsp_exchange, job));
}

/* The signature check goes to a worker when the loop has the pipeline's job port, else it
 * runs here (tests and tools without workers). Returns true when the answer is pending. */
static bool verify_async(struct ocsp_exchange *ox)
{
    struct ra_loop *rl = rp_loop_app(ox->ex->loop);
    if (!rl || !rl->workers || !rl->port_open) {
        verify(ox);
        return false;
    }
    ox->job.run = run_verify;
    ox->job.done = on_verified;
    if (rp_workers_submit(rl->workers, &ox->job, &rl->port) == RP_OK)
        return true;
    rp_metrics_count("raproxy_worker_rejected_total", NULL);
    ox->verdict = RP_E_QUEUE_FULL;
    return false;
}

static void on_va_answer(struct ocsp_exchange *ox, struct rp_view body)
{
    struct rp_exchange *ex = ox->ex;
    struct rp_der_err derr = {0};
    /* the pool frees the body when on_upstream returns: the worker needs its own copy */
    uint8_t *copy = body.len ? rp_arena_dup(&ex->arena, body.p, body.len) : NULL;
    int rc = copy ? rp_ocsp_resp_parse(copy, body.len, &ox->resp, &derr) : RP_E_OCSP_RESPONSE;
    if (rc != RP_OK) {
        rp_log_warn("ocsp", "VA answer unreadable: %s at offset %zu (%s)", rp_err_msg(rc),
                    derr.offset, derr.expected ? derr.expected : "-");
        va_error("malformed");
        finish(ox);
        answer_status(ex, RP_OCSP_TRY_LATER, "ocsp-trylater");
        return;
    }
    if (ox->resp.status != RP_OCSP_SUCCESSFUL) {
        /* unsigned by design: only the status is relayed, in our own encoding */
        if (ox->resp.status == RP_OCSP_INTERNAL_ERROR || ox->resp.status == RP_OCSP_TRY_LATER)
            va_error("status");
        finish(ox);
        answer_status(ex, ox->resp.status, "ocsp-va-status");
        return;
    }
    ox->now = rp_clock_wall_s();
    if (!verify_async(ox))
        verified(ox);
}

static void on_upstream(struct rp_upstream_req *up)
{
    struct ocsp_exchange *ox = up->arg;
    struct rp_exchange *ex = ox->ex;
    ex->log.upstream_ns = up->t_end_ns - up->t_start_ns;
    ex->log.upstream_status = up->status;
    rp_metric_observe_ns(m.va_seconds, ex->log.upstream_ns);
    if (up->err == RP_OK && up->status == 200) {
        on_va_answer(ox, up->resp);
        return;
    }
    rp_log_warn("ocsp", "VA request failed: %s (HTTP %d)",
                up->err != RP_OK ? rp_err_msg(up->err) : "status", up->status);
    va_error(up->err == RP_E_UPSTREAM_TIMEOUT ? "timeout"
             : up->err != RP_OK               ? "unreachable"
                                              : "http_status");
    finish(ox);
    answer_status(ex, RP_OCSP_TRY_LATER, "ocsp-trylater");
}

static void forward(struct ocsp_exchange *ox, struct rp_upstream *pool)
{
    ox->up.path = NULL;
    ox->up.content_type = RP_OCSP_REQUEST_TYPE;
    ox->up.body = ox->der.p;
    ox->up.len = ox->der.len;
    ox->up.cb = on_upstream;
    ox->up.arg = ox;
    int rc = pool ? rp_upstream_send(pool, &ox->up) : RP_E_UPSTREAM_CONNECT;
    if (rc != RP_OK) {
        va_error(rc == RP_E_UPSTREAM_QUEUE_FULL ? "queue_full" : "unreachable");
        finish(ox);
        answer_status(ox->ex, RP_OCSP_TRY_LATER, "ocsp-trylater");
    }
}

static void on_admitted(void *arg, const struct rp_admit_result *res);

void rp_ocsp_handle(struct rp_exchange *ex)
{
    const struct rp_cfg_validation *v = ex->snap->cfg->validation;
    struct ocsp_exchange *ox;
    struct rp_der_err derr = {0};
    pthread_once(&m_once, metrics_init);
    snprintf(ex->log.body, sizeof ex->log.body, "ocsp");
    if (!v) {
        answer_http(ex, RP_E_HTTP_PATH, NULL);
        return;
    }
    if (!(ox = rp_arena_calloc(&ex->arena, 1, sizeof *ox))) {
        answer_http(ex, RP_E_ARENA, NULL);
        return;
    }
    ox->ex = ex;
    ex->app = ox;
    int rc = request_der(ex, &ox->der);
    if (rc != RP_OK) {
        answer_http(ex, rc, rc == RP_E_HTTP_METHOD ? "Allow: GET, POST\r\n" : NULL);
        return;
    }
    if (rp_ocsp_req_parse(ox->der.p, ox->der.len, &ox->req, &derr) != RP_OK) {
        answer_status(ex, RP_OCSP_MALFORMED_REQUEST, "ocsp-malformed");
        return;
    }
    /* admission before any cache, VA or crypto work: per client address and relay-wide */
    struct ra_loop *rl = rp_loop_app(ex->loop);
    if (!rl || !rl->admit) {
        answer_http(ex, RP_E_SYSTEM_UNAVAIL, "Retry-After: 1\r\n");
        return;
    }
    ox->limits.per_ip = v->per_ip;
    ox->limits.domain = v->global;
    struct rp_admit_in in = {
        .domain = OCSP_ADMIT_NAME,
        .client_addr = ex->client_addr,
        .limits = &ox->limits,
        .on_redis_failure = RP_REDIS_FAIL_OPEN,
    };
    rp_admit_start(rl->admit, &in, on_admitted, ox);
}

static void on_admitted(void *arg, const struct rp_admit_result *res)
{
    struct ocsp_exchange *ox = arg;
    struct rp_exchange *ex = ox->ex;
    if (res->err != RP_OK) {
        char *hdr = rp_arena_alloc(&ex->arena, RETRY_HDR_MAX);
        if (hdr)
            snprintf(hdr, RETRY_HDR_MAX, "Retry-After: %u\r\n",
                     (res->retry_after_ms ? res->retry_after_ms : 1000u) / 1000u + 1u);
        rp_metric_inc(m.limited);
        answer_http(ex, res->err == RP_E_RATE_LIMITED ? RP_E_RATE_LIMITED : RP_E_SYSTEM_UNAVAIL,
                    hdr);
        return;
    }
    /* the trust came with the exchange's snapshot; the pool and cache are the loop's */
    const struct ra_state *ra = ex->snap->ra;
    struct ra_loop *rl = rp_loop_app(ex->loop);
    if (!ra || !ra->ocsp_trust || !rl) {
        answer_status(ex, RP_OCSP_TRY_LATER, "ocsp-trylater");
        return;
    }
    ox->trust = rp_ocsp_trust_ref(ra->ocsp_trust);
    ox->cache = rl->ocsp_cache;
    if (rp_view_present(ox->req.nonce)) {
        rp_metric_inc(m.bypass);
    } else if (cache_key(ox) == RP_OK && ox->cache) {
        struct rp_view hit;
        if (rp_ocsp_cache_get(ox->cache, ox->key, rp_clock_wall_s(), &ex->arena, &hit) == 1) {
            rp_metric_inc(m.hits);
            finish(ox);
            answer_ocsp(ex, hit, "ocsp-cached");
            return;
        }
        rp_metric_inc(m.misses);
    }
    forward(ox, rl->va);
}
