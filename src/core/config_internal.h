/* Shared between the configuration loader (config.c), the environment overrides
 * (config_env.c) and the semantic checks (config_check.c). Not a public interface. */
#ifndef RAPROXY_CONFIG_INTERNAL_H
#define RAPROXY_CONFIG_INTERNAL_H

#include "raproxy/config.h"

#include <stdarg.h>
#include <stddef.h>

/* Longest key path we track ("domains[12].limits.per_device.burst" is 36). */
#define RP_CFGX_PATH_MAX 256

/* Marks on a key path, set by the structural walk. */
#define RP_CFGX_TLS_OFF 1u /* listeners[i].tls was the scalar `off` */

/* Where a key path's value came from: a line of the file, or an environment variable. */
struct rp_cfgx_ent {
    char *path;      /* "listeners[0].tls.cert" */
    unsigned line;   /* 1-based line in the file; 0 when only set from the environment */
    unsigned marks;  /* RP_CFGX_* */
    const char *env; /* name of the variable that set it, or NULL */
};

/* One load in progress: where problems go and the map of key paths seen. */
struct rp_cfgx {
    const char *file;
    FILE *errs;
    unsigned flags; /* RP_CONFIG_* */
    unsigned problems;
    int oom;
    struct rp_cfgx_ent *ents;
    size_t n_ents, cap_ents;
};

/* Record that `path` appears at `line` (the first record of a path wins). */
struct rp_cfgx_ent *rp_cfgx_add(struct rp_cfgx *x, const char *path, unsigned line);
struct rp_cfgx_ent *rp_cfgx_find(const struct rp_cfgx *x, const char *path);
/* Whether the file or the environment set this key (defaults apply only when not). */
int rp_cfgx_present(const struct rp_cfgx *x, const char *path);
/* Mark `path` as set by environment variable `env` (a static string). */
void rp_cfgx_from_env(struct rp_cfgx *x, const char *path, const char *env);

/* Report one problem about `path`. The location is the path's own line, else the line of its
 * nearest ancestor in the file, else line 1; or the environment variable that set it. */
void rp_cfgx_problem(struct rp_cfgx *x, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Format a key path into dst (RP_CFGX_PATH_MAX bytes). Key paths of valid configs are far
 * shorter; a truncated path only makes a message less precise. */
void rp_cfgx_key(char *dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A string the config owns (freed with the config): malloc'ed copy, NULL on OOM (noted). */
char *rp_cfgx_strdup(struct rp_cfgx *x, const char *s);

/* Apply RAPROXY_* environment overrides (config_env.c). */
void rp_cfgx_apply_env(struct rp_cfgx *x, struct rp_config *cfg);
/* Semantic checks after parse, overrides and defaults (config_check.c). */
void rp_cfgx_check(struct rp_cfgx *x, const struct rp_config *cfg);

/* Parse a decimal unsigned integer of at most `max`; 0 on success. */
int rp_cfgx_parse_u32(const char *s, uint32_t max, uint32_t *out);

#endif
