/* Environment overrides: the few settings a container or a Kubernetes manifest wants to set
 * without templating the YAML. Applied after parsing and before defaults and validation, so a
 * bad value is caught by the same checks as the file, reported under the variable's name. An
 * empty variable counts as unset (manifests often template `VAR: ""`). */
#include "config_internal.h"

#include <stdlib.h>
#include <string.h>

static const char *env_value(const char *var)
{
    const char *v = getenv(var);
    return v && *v ? v : NULL;
}

static void set_str(struct core_cfg *x, char **field, const char *var, const char *path)
{
    const char *v = env_value(var);
    if (!v)
        return;
    char *d = core_cfg_strdup(x, v);
    if (!d)
        return;
    free(*field);
    *field = d;
    core_cfg_from_env(x, path, var);
}

static void set_u32(struct core_cfg *x, uint32_t *field, const char *var, const char *path)
{
    const char *v = env_value(var);
    uint32_t n;
    if (!v)
        return;
    core_cfg_from_env(x, path, var);
    if (core_cfg_parse_u32(v, UINT32_MAX, &n) != 0) {
        core_cfg_problem(x, path, "not an unsigned integer: '%.*s'", QUOTE_MAX, v);
        return;
    }
    *field = n;
}

/* The listener the RAPROXY_LISTEN_* / RAPROXY_TLS_* variables set, created if the file has
 * none (a container may carry its whole front end in the environment). */
static struct rp_cfg_listener *first_listener(struct core_cfg *x, struct rp_config *cfg)
{
    if (cfg->listeners_count == 0) {
        cfg->listeners = calloc(1, sizeof *cfg->listeners);
        if (!cfg->listeners) {
            x->oom = 1;
            return NULL;
        }
        cfg->listeners_count = 1;
    }
    return &cfg->listeners[0];
}

static void apply_listener(struct core_cfg *x, struct rp_config *cfg)
{
    const int want_addr = env_value("RAPROXY_LISTEN_ADDRESS") != NULL;
    const int want_tls = env_value("RAPROXY_TLS_CERT") || env_value("RAPROXY_TLS_KEY");
    if (!want_addr && !want_tls)
        return;
    struct rp_cfg_listener *l = first_listener(x, cfg);
    if (!l)
        return;
    set_str(x, &l->address, "RAPROXY_LISTEN_ADDRESS", "listeners[0].address");
    if (want_tls)
        l->tls_off = false; /* a certificate from the environment means TLS */
    set_str(x, &l->tls.cert, "RAPROXY_TLS_CERT", "listeners[0].tls.cert");
    set_str(x, &l->tls.key, "RAPROXY_TLS_KEY", "listeners[0].tls.key");
}

static void apply_redis(struct core_cfg *x, struct rp_config *cfg)
{
    if (!env_value("RAPROXY_REDIS_URL"))
        return;
    if (!cfg->redis) {
        cfg->redis = calloc(1, sizeof *cfg->redis); /* defaults fill the rest */
        if (!cfg->redis) {
            x->oom = 1;
            return;
        }
    }
    set_str(x, &cfg->redis->url, "RAPROXY_REDIS_URL", "redis.url");
}

void core_cfg_apply_env(struct core_cfg *x, struct rp_config *cfg)
{
    set_str(x, &cfg->upstream.url, "RAPROXY_UPSTREAM_URL", "upstream.url");
    apply_redis(x, cfg);
    set_str(x, &cfg->log_level, "RAPROXY_LOG_LEVEL", "log_level");
    set_u32(x, &cfg->loops, "RAPROXY_LOOPS", "loops");
    set_u32(x, &cfg->workers, "RAPROXY_WORKERS", "workers");
    set_str(x, &cfg->admin.address, "RAPROXY_ADMIN_ADDRESS", "admin.address");
    apply_listener(x, cfg);
    set_str(x, &cfg->ra.cert, "RAPROXY_RA_CERT", "ra.cert");
    set_str(x, &cfg->ra.key, "RAPROXY_RA_KEY", "ra.key");
    set_str(x, &cfg->ra.chain, "RAPROXY_RA_CHAIN", "ra.chain");
    /* a secret: never in the file's schema, only from the environment */
    set_str(x, &cfg->ra.pkcs11.pin, "RAPROXY_RA_PIN", "ra.pkcs11.pin");
    /* the VA differs per deployment too; its trust settings stay in the file */
    if (cfg->validation)
        set_str(x, &cfg->validation->url, "RAPROXY_VALIDATION_URL", "validation.url");
    else if (getenv("RAPROXY_VALIDATION_URL") && *getenv("RAPROXY_VALIDATION_URL"))
        core_cfg_problem(x, "validation",
                         "environment RAPROXY_VALIDATION_URL: set, but the "
                         "file has no validation section to apply it to");
}
