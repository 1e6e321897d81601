/* Building a snapshot: everything a configuration needs loaded before it may serve. */
#include "ra.h"

#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/http.h"
#include "raproxy/log.h"
#include "raproxy/server.h"
#include "raproxy/snapshot.h"
#include "raproxy/tls.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_ulong g_generation;

static void release_tls(struct rp_snapshot *s)
{
    if (s->listener_tls) {
        for (unsigned i = 0; i < s->cfg->listeners_count; i++)
            if (s->listener_tls[i])
                rp_tls_ctx_unref(s->listener_tls[i]);
        free(s->listener_tls);
    }
    if (s->upstream_tls)
        rp_tls_ctx_unref(s->upstream_tls);
}

static int tls_min_version(const char *v)
{
    return v && strcmp(v, "1.3") == 0 ? 13 : 12;
}

static int build_tls(struct rp_snapshot *s, FILE *errs)
{
    const struct rp_config *cfg = s->cfg;
    s->listener_tls =
        calloc(cfg->listeners_count ? cfg->listeners_count : 1, sizeof *s->listener_tls);
    if (!s->listener_tls)
        return RP_E_NOMEM;
    for (unsigned i = 0; i < cfg->listeners_count; i++) {
        const struct rp_cfg_listener *l = &cfg->listeners[i];
        if (l->tls_off)
            continue;
        struct rp_tls_server_opts o = {
            .cert_file = l->tls.cert,
            .key_file = l->tls.key,
            .client_ca_file = l->tls.client_ca,
            .client_cert_required = l->tls.client_cert_required,
            .min_version = tls_min_version(l->tls.min_version),
        };
        int rc = rp_tls_ctx_server(&s->listener_tls[i], &o);
        if (rc != RP_OK) {
            if (errs)
                fprintf(errs, "%s: listeners[%u].tls: cannot load certificate or key (%s)\n",
                        cfg->source ? cfg->source : "config", i, rp_err_msg(rc));
            return rc;
        }
    }
    struct rp_url url;
    if (cfg->upstream.url && rp_url_parse(cfg->upstream.url, &url) == RP_OK && url.tls) {
        struct rp_tls_client_opts o = {
            .ca_file = cfg->upstream.ca,
            .cert_file = cfg->upstream.client_cert,
            .key_file = cfg->upstream.client_key,
            .sni = url.host,
        };
        if (!o.ca_file)
            rp_log_warn("config",
                        "upstream %s: no upstream.ca, the CA's TLS certificate is "
                        "not verified",
                        cfg->upstream.url);
        int rc = rp_tls_ctx_client(&s->upstream_tls, &o);
        if (rc != RP_OK) {
            if (errs)
                fprintf(errs, "%s: upstream: cannot set up TLS (%s)\n",
                        cfg->source ? cfg->source : "config", rp_err_msg(rc));
            return rc;
        }
    }
    return RP_OK;
}

int rp_server_snapshot(struct rp_config *cfg, struct rp_snapshot **out, FILE *errs)
{
    struct rp_snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        rp_config_free(cfg);
        return RP_E_NOMEM;
    }
    atomic_init(&s->refs, 1);
    s->cfg = cfg;
    s->generation = atomic_fetch_add(&g_generation, 1) + 1;
    s->release = release_tls;
    int rc = build_tls(s, errs);
    struct ra_state *ra = NULL;
    if (rc == RP_OK)
        rc = ra_state_build(cfg, &ra, errs);
    if (rc == RP_OK) {
        s->ra = ra;
        s->ra_free = ra_state_free;
    }
    if (rc != RP_OK) {
        rp_snapshot_unref(s);
        return rc;
    }
    *out = s;
    return RP_OK;
}
