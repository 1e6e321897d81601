/* After parsing: what the YAML walk marked (`tls: off`), file paths made relative to the
 * configuration file's directory, and defaults. Which strings are files and what each key's
 * default is are said by the schema (config_schema.c); this file walks the schema over the
 * loaded configuration and applies them, plus the few defaults that depend on other keys. */
#include "config_internal.h"
#include "raproxy/err.h"
#include "raproxy/p11uri.h"
#include "raproxy/url.h"

#include <stdlib.h>
#include <string.h>

/* The longest directory a configuration file may sit in (PATH_MAX on Linux). */
#define DIR_MAX 4096

static void mark_tls_off(struct core_cfg *x, struct rp_config *cfg)
{
    for (unsigned i = 0; i < cfg->listeners_count; i++) {
        char p[RP_CFGX_PATH_MAX];
        core_cfg_key(p, "listeners[%u].tls", i);
        const struct core_cfg_ent *e = core_cfg_find(x, p);
        cfg->listeners[i].tls_off = e && (e->marks & RP_CFGX_TLS_OFF);
    }
}

/* ------------------------------------------------------------------ file paths */

struct resolve {
    struct core_cfg *x;
    const char *dir;
};

/* Make a relative file path relative to the configuration file's directory, so that
 * `raproxy --config /etc/raproxy/raproxy.yaml` and a test's temp dir both work from any cwd.
 * Not files: a PKCS#11 URI, and "redis" (allowlist: redis). */
static void resolve_one(void *ctx, const struct core_cfg_field *f)
{
    const struct resolve *r = ctx;
    char **p = f->value;
    if (!f->file || !*p || !**p || **p == '/' || strcmp(*p, "redis") == 0 || rp_p11_is_uri(*p))
        return;
    size_t n = strlen(r->dir) + 1 + strlen(*p) + 1;
    char *abs = malloc(n);
    if (!abs) {
        r->x->oom = 1;
        return;
    }
    snprintf(abs, n, "%s/%s", r->dir, *p);
    free(*p);
    *p = abs;
}

static void resolve_paths(struct core_cfg *x, struct rp_config *cfg)
{
    const char *slash = strrchr(x->file, '/');
    if (!slash)
        return; /* the file is in the working directory: relative paths already work */
    char dir[DIR_MAX];
    /* "/raproxy.yaml" gives dir "", which still makes "/<file>" */
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - x->file), x->file);
    struct resolve r = {.x = x, .dir = dir};
    core_cfg_visit(cfg, resolve_one, &r);
}

void core_cfg_post_parse(struct core_cfg *x, struct rp_config *cfg)
{
    mark_tls_off(x, cfg);
    resolve_paths(x, cfg);
}

/* -------------------------------------------------------------------- defaults */

static void store(void *at, size_t size, uint32_t v)
{
    switch (size) {
    case sizeof(uint8_t): {
        uint8_t b = (uint8_t)v;
        memcpy(at, &b, sizeof b);
        break;
    }
    case sizeof(uint16_t): {
        uint16_t h = (uint16_t)v;
        memcpy(at, &h, sizeof h);
        break;
    }
    case sizeof(uint32_t):
        memcpy(at, &v, sizeof v);
        break;
    default: {
        uint64_t q = v;
        memcpy(at, &q, sizeof q);
    }
    }
}

/* One value of the config: its default from the schema when the file and the environment
 * left it out (a string: when it has none). */
static void default_one(void *ctx, const struct core_cfg_field *f)
{
    struct core_cfg *x = ctx;
    const struct core_cfg_default *d = core_cfg_default_of(f->pattern);
    if (!d)
        return;
    if (f->kind == RP_CFGX_K_STRING) {
        char **s = f->value;
        if (!*s && d->str)
            *s = core_cfg_strdup(x, d->str);
    } else if (f->kind != RP_CFGX_K_STRINGS && !core_cfg_present(x, f->path)) {
        store(f->value, f->size, d->fn ? d->fn(x, f) : d->u32);
    }
}

/* The path part of the upstream URL, for domains that name none. */
static void default_upstream_path(struct core_cfg *x, struct rp_config *cfg, char **field)
{
    struct rp_http_url u;
    if (*field || !cfg->upstream.url || rp_http_url_parse(cfg->upstream.url, &u) != RP_OK)
        return;
    *field = core_cfg_strdup(x, u.path);
}

/* Each trust anchor file stands for the vendor named by its basename without extension
 * ("/etc/raproxy/acme.pem" is "acme"), unless anchor_names says otherwise. */
static void default_anchor_names(struct core_cfg *x, struct rp_cfg_domain *d)
{
    d->anchor_names_default = true;
    if (d->trust_anchors_count == 0)
        return;
    d->anchor_names = calloc(d->trust_anchors_count, sizeof *d->anchor_names);
    if (!d->anchor_names) {
        x->oom = 1;
        return;
    }
    d->anchor_names_count = d->trust_anchors_count;
    for (unsigned i = 0; i < d->trust_anchors_count; i++) {
        const char *path = d->trust_anchors[i] ? d->trust_anchors[i] : "";
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        char *name = core_cfg_strdup(x, base);
        if (!name)
            return;
        char *dot = strrchr(name, '.');
        if (dot && dot != name)
            *dot = '\0';
        d->anchor_names[i] = name;
    }
}

static void parse_renewal(struct core_cfg *x, const char *base, struct rp_cfg_renewal *r)
{
    char *text[] = {r->min_age, r->min_remaining};
    struct rp_cfg_span *span[] = {&r->age, &r->remaining};
    const char *key[] = {"min_age", "min_remaining"};
    char p[RP_CFGX_PATH_MAX];
    for (size_t i = 0; i < sizeof span / sizeof span[0]; i++) {
        *span[i] = (struct rp_cfg_span){0};
        if (!text[i])
            continue;
        core_cfg_key(p, "%s.renewal.%s", base, key[i]);
        if (core_cfg_parse_span(text[i], span[i]) != 0)
            core_cfg_problem(x, p,
                             "expected a duration (\"30d\", \"12h\", \"90min\", \"3600s\") or a "
                             "share of the certificate's lifetime (\"33%%\"), got '%.*s'",
                             QUOTE_MAX, text[i]);
    }
}

/* Whether the key `base`.`key` was set (by the file: lists have no environment variable). */
static bool given(const struct core_cfg *x, const char *base, const char *key)
{
    char p[RP_CFGX_PATH_MAX];
    core_cfg_join(p, base, ".", key);
    return core_cfg_present(x, p);
}

/* A domain's defaults that depend on other keys, and what the loader notes for policy. */
static void defaults_domain(struct core_cfg *x, struct rp_config *cfg, unsigned i)
{
    struct rp_cfg_domain *d = &cfg->domains[i];
    char p[RP_CFGX_PATH_MAX];
    core_cfg_key(p, "domains[%u]", i);
    default_upstream_path(x, cfg, &d->upstream_path);
    d->tmpl.bind_given = given(x, p, "template.bind");
    d->tmpl.subject_attributes_given = given(x, p, "template.subject_attributes");
    d->rr_reasons_given = given(x, p, "rr_reasons");
    if (!given(x, p, "anchor_names"))
        default_anchor_names(x, d);
    parse_renewal(x, p, &d->renewal);
}

void core_cfg_apply_defaults(struct core_cfg *x, struct rp_config *cfg)
{
    core_cfg_visit(cfg, default_one, x);
    for (unsigned i = 0; i < cfg->listeners_count; i++)
        if (!cfg->listeners[i].tls_off && !cfg->listeners[i].tls.min_version)
            cfg->listeners[i].tls.min_version = core_cfg_strdup(x, RP_DEF_TLS_MIN_VERSION);
    for (unsigned i = 0; i < cfg->domains_count; i++)
        defaults_domain(x, cfg, i);
}
