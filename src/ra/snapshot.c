/* Building a snapshot: everything a configuration needs loaded before it may serve. */
#include "ra.h"

#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/http.h"
#include "raproxy/log.h"
#include "raproxy/loop.h"
#include "raproxy/ocsp.h"
#include "raproxy/server.h"
#include "raproxy/sig.h"
#include "raproxy/snapshot.h"
#include "raproxy/tls.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    if (s->va_tls)
        rp_tls_ctx_unref(s->va_tls);
}

static int tls_min_version(const char *v)
{
    return v && strcmp(v, "1.3") == 0 ? 13 : 12;
}

static bool device_key_available(const void *owner)
{
    return rp_privkey_available(owner);
}

static void device_key_release(void *owner)
{
    rp_privkey_free(owner);
}

/* A listener key in a PKCS#11 token: the listener's own module and PIN, else the RA's.
 * Opened here and proven to belong to the certificate (a signature in the token that the
 * certificate's key verifies); the TLS context takes it over. */
static int open_device_key(const struct rp_config *cfg, const struct rp_cfg_listener *l,
                           struct rp_tls_device_key *out, FILE *errs, unsigned i)
{
    const struct rp_cfg_pkcs11 *c =
        l->tls.pkcs11.module || l->tls.pkcs11.pin_file ? &l->tls.pkcs11 : &cfg->ra.pkcs11;
    struct rp_p11_opts p11 = {.module = c->module, .pin = c->pin, .pin_file = c->pin_file};
    struct rp_privkey *k = NULL;
    struct ra_der_list certs = {0};
    struct rp_cert leaf;
    char why[512];
    int rc = rp_privkey_load(l->tls.key, &p11, &k, why, sizeof why);
    if (rc != RP_OK) {
        if (errs)
            fprintf(errs, "listeners[%u].tls.key: cannot load the private key: %s\n", i, why);
        return rc;
    }
    rc = ra_load_certs(l->tls.cert, &certs, errs);
    if (rc == RP_OK)
        rc = rp_cert_parse(certs.v[0].p, certs.v[0].len, &leaf);
    if (rc == RP_OK && rp_privkey_matches_spki(k, leaf.spki) != 1) {
        if (errs)
            fprintf(errs, "listeners[%u].tls.key does not belong to the certificate %s\n", i,
                    l->tls.cert);
        rc = RP_E_KEY_LOAD;
    }
    ra_der_list_free(&certs);
    struct rp_privkey_device dev;
    if (rc != RP_OK || !rp_privkey_device(k, &dev)) {
        rp_privkey_free(k);
        return rc != RP_OK ? rc : RP_E_INTERNAL;
    }
    *out = (struct rp_tls_device_key){.dev_id = dev.dev_id,
                                      .label = dev.label,
                                      .id = dev.id,
                                      .id_len = dev.id_len,
                                      .owner = k,
                                      .available = device_key_available,
                                      .release = device_key_release};
    return RP_OK;
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
        struct rp_tls_device_key dk;
        if (rp_p11_is_uri(l->tls.key)) {
            int krc = open_device_key(cfg, l, &dk, errs, i);
            if (krc != RP_OK)
                return krc;
            o.device_key = &dk;
        }
        int rc = rp_tls_ctx_server(&s->listener_tls[i], &o);
        if (rc != RP_OK) {
            if (errs)
                fprintf(errs, "%s: listeners[%u].tls: cannot load certificate or key (%s)\n",
                        cfg->source ? cfg->source : "config", i, rp_err_msg(rc));
            return rc;
        }
    }
    struct rp_http_url url;
    if (cfg->upstream.url && rp_http_url_parse(cfg->upstream.url, &url) == RP_OK && url.tls) {
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

/* The OCSP relay's files: the VA's TLS context and who may sign its answers. Loaded here,
 * off the loops and before the snapshot is published: a file that does not load rejects the
 * configuration (a reload keeps the running one) instead of turning every answer tryLater. */
static int build_validation(struct rp_snapshot *s, struct ra_state *ra, FILE *errs)
{
    const struct rp_cfg_validation *v = s->cfg->validation;
    const char *src = s->cfg->source ? s->cfg->source : "config";
    if (!v)
        return RP_OK;
    struct rp_http_url url;
    int rc = rp_http_url_parse(v->url, &url);
    if (rc == RP_OK && url.tls) {
        struct rp_tls_client_opts o = {.ca_file = v->ca, .sni = url.host};
        rc = rp_tls_ctx_client(&s->va_tls, &o);
    }
    if (rc != RP_OK) {
        if (errs)
            fprintf(errs, "%s: validation: cannot set up the VA connection (%s)\n", src,
                    rp_err_msg(rc));
        return rc;
    }
    rc = rp_ocsp_trust_load(&ra->ocsp_trust, v->responder_cert, v->trust_anchors,
                            v->trust_anchors_count);
    if (rc != RP_OK && errs)
        fprintf(errs,
                "%s: validation: cannot load the responder_cert or trust_anchors "
                "certificates (%s)\n",
                src, rp_err_msg(rc));
    return rc;
}

/* /readyz: a snapshot whose RA key (or a listener key) sits in a token that is down
 * cannot serve; it turns ready again once the token is reconnected. */
static const char *snapshot_unready(const struct rp_snapshot *s)
{
    const struct ra_state *ra = s->ra;
    if (ra && ra->ra.key && !ra_identity_ready(&ra->ra))
        return "ra_key";
    for (unsigned i = 0; s->listener_tls && i < s->cfg->listeners_count; i++)
        if (s->listener_tls[i] && !rp_tls_ctx_key_available(s->listener_tls[i]))
            return "tls_key";
    return NULL;
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
    s->unready = snapshot_unready;
    int rc = build_tls(s, errs);
    struct ra_state *ra = NULL;
    if (rc == RP_OK)
        rc = ra_state_build(cfg, &ra, errs);
    if (rc == RP_OK) {
        s->ra = ra;
        s->ra_free = ra_state_free;
        rc = build_validation(s, ra, errs);
    }
    if (rc != RP_OK) {
        rp_snapshot_unref(s);
        return rc;
    }
    *out = s;
    return RP_OK;
}

int64_t rp_server_crl_due(const struct rp_snapshot *s)
{
    const struct ra_state *ra = s ? s->ra : NULL;
    int64_t next = 0;
    for (size_t i = 0; ra && i < ra->n_domains; i++) {
        int64_t t = ra_trust_crl_next_update(ra->domains[i].trust);
        if (t && (!next || t < next))
            next = t;
    }
    return next;
}

unsigned rp_server_crl_report(const struct rp_snapshot *s, char *buf, size_t cap)
{
    const struct ra_state *ra = s ? s->ra : NULL;
    int64_t now = (int64_t)time(NULL);
    unsigned bad = 0;
    size_t off = 0;
    if (cap)
        buf[0] = 0;
    for (size_t i = 0; ra && i < ra->n_domains; i++) {
        const struct ra_domain *d = &ra->domains[i];
        if (!d->cfg->crls_count)
            continue;
        bad += !ra_trust_crl_refresh(d->trust, now);
        char line[RP_CRL_REPORT_MAX];
        ra_trust_crl_report(d->trust, now, line, sizeof line);
        int n = snprintf(buf + off, cap > off ? cap - off : 0, "crl %s: %s\n", d->cfg->name, line);
        if (n > 0 && off + (size_t)n < cap)
            off += (size_t)n;
    }
    return bad;
}

void rp_server_ready_detail(struct rp_loop *l, char *buf, size_t cap)
{
    rp_server_crl_report(rp_loop_snapshot(l), buf, cap);
}
