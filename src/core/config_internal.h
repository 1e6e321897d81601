/* Shared between the files of the configuration loader. Not a public interface.
 *
 *   config_load.c    the public API: read, parse, post-process, override, check, in order
 *   config_yaml.c    the YAML walk: line-numbered problems, re-emit for libcyaml, load
 *   config_post.c    after parsing: `tls: off`, file paths, defaults
 *   config_env.c     RAPROXY_* environment overrides
 *   config_check.c   semantic checks
 *   config_schema.c  the schema: keys and types, which strings are files, defaults
 *   config_value.c   value syntax: integers, booleans, rates, limits, durations (a leaf)
 *   config_report.c  the key path map and the problem reporter (a leaf)
 *
 * Calls go down this list and never back up: the reporter and the value parsers call none of
 * the others. */
#ifndef RAPROXY_CONFIG_INTERNAL_H
#define RAPROXY_CONFIG_INTERNAL_H

#include "raproxy/config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* Longest key path we track ("domains[12].limits.per_device.burst" is 36). */
#define RP_CFGX_PATH_MAX 256

/* How much of an offending value a problem message quotes. */
#define QUOTE_MAX 60

/* Marks on a key path, set by the structural walk. */
#define RP_CFGX_TLS_OFF 1u /* listeners[i].tls was the scalar `off` */

/* Where a key path's value came from: a line of the file, or an environment variable. */
struct core_cfg_ent {
    char *path;      /* "listeners[0].tls.cert" */
    unsigned line;   /* 1-based line in the file; 0 when only set from the environment */
    unsigned marks;  /* RP_CFGX_* */
    const char *env; /* name of the variable that set it, or NULL */
};

/* One load in progress: where problems go and the map of key paths seen. */
struct core_cfg {
    const char *file;
    FILE *errs;
    unsigned flags; /* RP_CONFIG_* */
    unsigned problems;
    int oom;
    struct core_cfg_ent *ents;
    size_t n_ents, cap_ents;
};

/* ---- config_report.c: key paths and problems ---- */

/* Record that `path` appears at `line` (the first record of a path wins). */
struct core_cfg_ent *core_cfg_add(struct core_cfg *x, const char *path, unsigned line);
struct core_cfg_ent *core_cfg_find(const struct core_cfg *x, const char *path);
/* Whether the file or the environment set this key (defaults apply only when not). */
int core_cfg_present(const struct core_cfg *x, const char *path);
/* Mark `path` as set by environment variable `env` (a static string). */
void core_cfg_from_env(struct core_cfg *x, const char *path, const char *env);
/* Free the key path map. */
void core_cfg_release(struct core_cfg *x);

/* Report one problem about `path`. The location is the path's own line, else the line of its
 * nearest ancestor in the file, else line 1; or the environment variable that set it. */
void core_cfg_problem(struct core_cfg *x, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same at a known line (the walk's, before the map holds the path). */
void core_cfg_problem_at(struct core_cfg *x, unsigned line, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Format a key path into dst (RP_CFGX_PATH_MAX bytes). Key paths of valid configs are far
 * shorter; a truncated path only makes a message less precise. */
void core_cfg_key(char *dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* dst (a key path buffer) = a + sep + b; no separator after the empty top-level path. */
void core_cfg_join(char *dst, const char *a, const char *sep, const char *b);

/* A string the config owns (freed with the config): malloc'ed copy, NULL on OOM (noted). */
char *core_cfg_strdup(struct core_cfg *x, const char *s);

/* ---- config_value.c: value syntax; each returns 0, or -1 when malformed ---- */

/* A decimal unsigned integer of at most `max`. */
int core_cfg_parse_u32(const char *s, uint32_t max, uint32_t *out);
/* true/yes/on, false/no/off, in any case. */
int core_cfg_parse_bool(const char *s, int *v);
/* A rate: "N" (per second) or "N/s", "N/min", "N/h", "N/day" (period_s: RP_CFG_PER_*). */
int core_cfg_parse_rate(const char *s, uint32_t *rate, uint32_t *period_s);
/* The short form of a limit, its unit always named: "20/s", "3/day burst 3". */
int core_cfg_parse_limit(const char *s, uint32_t *rate, uint32_t *period_s, uint32_t *burst,
                         int *has_burst);
/* "30d", "12h", "90min", "3600s", "3600" (seconds) or "33%" of the lifetime. */
int core_cfg_parse_span(const char *text, struct rp_cfg_span *out);

/* ---- config_schema.c: the schema (libcyaml types, declared here without libcyaml) ---- */

struct cyaml_schema_value;
struct cyaml_schema_field;
extern const struct cyaml_schema_value core_cfg_top_schema;
extern const struct cyaml_schema_field *const core_cfg_tls_fields;   /* `tls: off` */
extern const struct cyaml_schema_field *const core_cfg_limit_fields; /* "20/s burst 40" */
enum { RP_CFGX_LIMIT_RATE, RP_CFGX_LIMIT_BURST, RP_CFGX_LIMIT_PERIOD };
/* The widest mapping of the schema, in fields (the walk keeps a bit per field). */
#define RP_CFGX_FIELDS_MAX 64
/* libcyaml's allocator: malloc/free, so that the loader's own strings are freed with it. */
void *core_cfg_cyaml_mem(void *ctx, void *ptr, size_t size);

/* What a schema field holds. */
enum core_cfg_kind {
    RP_CFGX_K_STRING,
    RP_CFGX_K_STRINGS, /* a sequence of strings: visited entry by entry */
    RP_CFGX_K_UINT,
    RP_CFGX_K_BOOL,
    RP_CFGX_K_ENUM,
    RP_CFGX_K_MAPPING,
    RP_CFGX_K_SEQUENCE, /* of mappings: walked, not visited */
    RP_CFGX_K_OTHER,
};

/* One value met by core_cfg_visit(). */
struct core_cfg_field {
    const char *key;     /* the field's own key: "trust_anchors" */
    const char *path;    /* "domains[1].trust_anchors[0]"; in a walk of the schema alone, as
                            pattern */
    const char *pattern; /* every index as []: "domains[].trust_anchors[]" */
    enum core_cfg_kind kind;
    bool file;   /* a string naming a file */
    bool text;   /* a string that is not a file (each string is exactly one of the two) */
    void *value; /* in the config: char ** for a string or a string list's entry, else the
                    scalar's storage; NULL in a walk of the schema alone */
    size_t size; /* bytes of a scalar's storage */
};
typedef void core_cfg_visit_fn(void *ctx, const struct core_cfg_field *f);
/* Every scalar and string-list entry of the schema, in schema order. With a config: each value
 * it holds (every entry of every sequence; a section behind a pointer only when present). With
 * cfg NULL: every field of the schema once. */
void core_cfg_visit(struct rp_config *cfg, core_cfg_visit_fn *fn, void *ctx);

/* The value a key takes when the file and the environment leave it out. */
struct core_cfg_default {
    const char *key; /* key path pattern: "domains[].max_requests" */
    uint32_t u32;    /* an unsigned integer, enum or bool (1 = true) … */
    const char *str; /* … a string, or … */
    uint32_t (*fn)(const struct core_cfg *x, const struct core_cfg_field *f); /* … computed */
};
extern const struct core_cfg_default core_cfg_defaults[];
extern const size_t core_cfg_defaults_count;
/* The default for a key path pattern, or NULL. */
const struct core_cfg_default *core_cfg_default_of(const char *pattern);

/* ---- the steps of a load, in order ---- */

/* config_yaml.c: read `x->file`, walk it against the schema, load it with libcyaml. NULL when
 * a problem was reported (or x->oom). */
struct rp_config *core_cfg_parse_file(struct core_cfg *x);
/* config_post.c: `tls: off`, file paths relative to the config's directory. */
void core_cfg_post_parse(struct core_cfg *x, struct rp_config *cfg);
/* config_env.c: RAPROXY_* environment overrides. */
void core_cfg_apply_env(struct core_cfg *x, struct rp_config *cfg);
/* config_post.c: defaults of keys neither the file nor the environment set. */
void core_cfg_apply_defaults(struct core_cfg *x, struct rp_config *cfg);
/* config_check.c: semantic checks after parse, overrides and defaults. */
void core_cfg_check(struct core_cfg *x, const struct rp_config *cfg);

#endif
