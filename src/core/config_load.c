/* The configuration's public API: load a file through each step in order — parse
 * (config_yaml.c), post-process (config_post.c), environment overrides (config_env.c),
 * defaults, semantic checks (config_check.c) — and free what it made. */
#include "config_internal.h"
#include "raproxy/err.h"

#include <cyaml/cyaml.h>

#include <stdlib.h>
#include <string.h>

int rp_config_load_opts(const char *path, struct rp_config **out, FILE *errs, unsigned flags)
{
    struct core_cfg x = {.file = path, .errs = errs, .flags = flags};
    int rc = RP_E_CONFIG;

    *out = NULL;
    struct rp_config *cfg = core_cfg_parse_file(&x);
    if (!cfg)
        goto out;
    cfg->source = core_cfg_strdup(&x, path);
    core_cfg_post_parse(&x, cfg);
    core_cfg_apply_env(&x, cfg);
    core_cfg_apply_defaults(&x, cfg);
    if (x.oom)
        goto out;
    core_cfg_check(&x, cfg);
    if (x.problems == 0 && !x.oom) {
        *out = cfg;
        cfg = NULL;
        rc = 0;
    }
out:
    if (x.oom) {
        rc = RP_E_NOMEM;
        if (errs)
            fprintf(errs, "%s: out of memory while loading the configuration\n", path);
    }
    rp_config_free(cfg);
    core_cfg_release(&x);
    return rc;
}

int rp_config_load(const char *path, struct rp_config **out, FILE *errs)
{
    return rp_config_load_opts(path, out, errs, 0);
}

void rp_config_free(struct rp_config *cfg)
{
    if (!cfg)
        return;
    const cyaml_config_t ccfg = {
        .log_fn = NULL,
        .mem_fn = core_cfg_cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
    };
    free(cfg->source); /* not in the schema: cyaml_free does not know it */
    if (cfg->ra.pkcs11.pin) {
        explicit_bzero(cfg->ra.pkcs11.pin, strlen(cfg->ra.pkcs11.pin));
        free(cfg->ra.pkcs11.pin);
    }
    cyaml_free(&ccfg, &core_cfg_top_schema, cfg, 0);
}

const char *rp_config_domain_path(const struct rp_cfg_domain *d, char *buf, unsigned cap)
{
    int n = snprintf(buf, cap, "%s%s", RP_CFG_DOMAIN_PREFIX, d->name ? d->name : "");
    return n >= 0 && (unsigned)n < cap ? buf : NULL;
}
