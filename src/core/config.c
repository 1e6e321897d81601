/* Configuration loading: YAML → struct rp_config through libcyaml.
 *
 * libcyaml stops at the first problem and its messages carry no line numbers, so the file is
 * first loaded with libyaml into a node tree and walked against the same cyaml schema: every
 * unknown key, wrong type and bad enum is reported with its line, and the walk re-emits the
 * document in the shape libcyaml expects (`tls: off` and "20/s burst 40" limits have no
 * direct libcyaml schema). Only a document that passed the walk reaches cyaml_load_data().
 * Defaults, environment overrides (config_env.c) and semantic checks (config_check.c) follow. */
#include "config_internal.h"
#include "raproxy/err.h"
#include "raproxy/p11uri.h"
#include "raproxy/url.h"

#include <cyaml/cyaml.h>
#include <yaml.h>

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* A configuration is a few KiB; anything this large is a mistake (or an attack). */
#define MAX_FILE_BYTES (4u << 20)
/* Aliases can multiply a small document into a huge tree: bound the nodes walked. */
#define MAX_NODES 100000u
/* Room for libcyaml's own messages, should it still refuse a walked document. */
#define CYAML_LOG_CAPTURE 1024
/* How much of an offending scalar a message quotes. */
#define QUOTE_MAX 60

#define OPT             CYAML_FLAG_OPTIONAL
#define STR(key, st, m) CYAML_FIELD_STRING_PTR(key, OPT, st, m, 0, CYAML_UNLIMITED)
#define U32(key, st, m) CYAML_FIELD_UINT(key, OPT, st, m)

/* ---------------------------------------------------------------- schema */

static const cyaml_schema_value_t string_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED),
};
#define STRS(key, st, m)                                                                           \
    CYAML_FIELD_SEQUENCE(key, OPT | CYAML_FLAG_POINTER, st, m, &string_entry, 0, CYAML_UNLIMITED)

static const cyaml_schema_field_t pkcs11_fields[] = {
    STR("module", struct rp_cfg_pkcs11, module),
    STR("pin_file", struct rp_cfg_pkcs11, pin_file),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t tls_fields[] = {
    STR("cert", struct rp_cfg_tls, cert),
    STR("key", struct rp_cfg_tls, key),
    CYAML_FIELD_MAPPING("pkcs11", OPT, struct rp_cfg_tls, pkcs11, pkcs11_fields),
    STR("client_ca", struct rp_cfg_tls, client_ca),
    CYAML_FIELD_BOOL("client_cert_required", OPT, struct rp_cfg_tls, client_cert_required),
    STR("min_version", struct rp_cfg_tls, min_version),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t listener_fields[] = {
    STR("address", struct rp_cfg_listener, address),
    CYAML_FIELD_MAPPING("tls", OPT, struct rp_cfg_listener, tls, tls_fields),
    CYAML_FIELD_END,
};
static const cyaml_schema_value_t listener_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct rp_cfg_listener, listener_fields),
};

static const cyaml_schema_field_t http_fields[] = {
    U32("max_header_bytes", struct rp_cfg_http, max_header_bytes),
    U32("max_body_bytes", struct rp_cfg_http, max_body_bytes),
    U32("handshake_timeout_ms", struct rp_cfg_http, handshake_timeout_ms),
    U32("header_timeout_ms", struct rp_cfg_http, header_timeout_ms),
    U32("body_timeout_ms", struct rp_cfg_http, body_timeout_ms),
    U32("idle_timeout_ms", struct rp_cfg_http, idle_timeout_ms),
    U32("max_connections", struct rp_cfg_http, max_connections),
    U32("max_connections_per_ip", struct rp_cfg_http, max_connections_per_ip),
    U32("max_handshakes", struct rp_cfg_http, max_handshakes),
    U32("max_unsent_bytes", struct rp_cfg_http, max_unsent_bytes),
    CYAML_FIELD_END,
};

/* `rate` carries its unit ("3/day"): the walk writes the count to rate and the unit to the
 * internal field period_s, which a file cannot name (LIMIT_PERIOD). */
enum { LIMIT_RATE, LIMIT_BURST, LIMIT_PERIOD };
static const cyaml_schema_field_t limit_fields[] = {
    [LIMIT_RATE] = U32("rate", struct rp_cfg_limit, rate),
    [LIMIT_BURST] = U32("burst", struct rp_cfg_limit, burst),
    [LIMIT_PERIOD] = U32("period_s", struct rp_cfg_limit, period_s),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t delayed_fields[] = {
    CYAML_FIELD_BOOL("enabled", OPT, struct rp_cfg_delayed, enabled),
    U32("max_wait_s", struct rp_cfg_delayed, max_wait_s),
    U32("check_after_s", struct rp_cfg_delayed, check_after_s),
    U32("check_after_jitter_s", struct rp_cfg_delayed, check_after_jitter_s),
    U32("max_waiting", struct rp_cfg_delayed, max_waiting),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t upstream_fields[] = {
    STR("url", struct rp_cfg_upstream, url),
    STR("ca", struct rp_cfg_upstream, ca),
    STR("client_cert", struct rp_cfg_upstream, client_cert),
    STR("client_key", struct rp_cfg_upstream, client_key),
    U32("timeout_ms", struct rp_cfg_upstream, timeout_ms),
    U32("connect_timeout_ms", struct rp_cfg_upstream, connect_timeout_ms),
    U32("max_connections", struct rp_cfg_upstream, max_connections),
    U32("max_queue", struct rp_cfg_upstream, max_queue),
    CYAML_FIELD_BOOL("keep_alive", OPT, struct rp_cfg_upstream, keep_alive),
    STR("ca_trust", struct rp_cfg_upstream, ca_trust),
    STRS("ca_signers", struct rp_cfg_upstream, ca_signers),
    U32("max_in_flight", struct rp_cfg_upstream, max_in_flight),
    CYAML_FIELD_MAPPING("rate", OPT, struct rp_cfg_upstream, rate, limit_fields),
    CYAML_FIELD_MAPPING("delayed_delivery", OPT, struct rp_cfg_upstream, delayed_delivery,
                        delayed_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t admin_fields[] = {
    STR("address", struct rp_cfg_admin, address),
    CYAML_FIELD_END,
};

static const cyaml_strval_t rsa_signature_names[] = {
    {"pkcs1", RP_RSA_SIG_PKCS1},
    {"pss", RP_RSA_SIG_PSS},
};

static const cyaml_schema_field_t ra_fields[] = {
    STR("cert", struct rp_cfg_ra, cert),
    STR("chain", struct rp_cfg_ra, chain),
    STR("key", struct rp_cfg_ra, key),
    CYAML_FIELD_MAPPING("pkcs11", OPT, struct rp_cfg_ra, pkcs11, pkcs11_fields),
    CYAML_FIELD_ENUM("rsa_signature", OPT | CYAML_FLAG_STRICT, struct rp_cfg_ra, rsa_signature,
                     rsa_signature_names, CYAML_ARRAY_LEN(rsa_signature_names)),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t limits_fields[] = {
    CYAML_FIELD_MAPPING("global", OPT, struct rp_cfg_limits, global, limit_fields),
    CYAML_FIELD_MAPPING("domain", OPT, struct rp_cfg_limits, domain, limit_fields),
    CYAML_FIELD_MAPPING("per_ip", OPT, struct rp_cfg_limits, per_ip, limit_fields),
    CYAML_FIELD_MAPPING("per_device", OPT, struct rp_cfg_limits, per_device, limit_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t mac_lockout_fields[] = {
    U32("failures", struct rp_cfg_mac_lockout, failures),
    U32("window_s", struct rp_cfg_mac_lockout, window_s),
    CYAML_FIELD_END,
};

static const cyaml_strval_t forward_names[] = {
    {"reprotect", RP_FORWARD_REPROTECT},
    {"unchanged", RP_FORWARD_UNCHANGED},
    {"nested", RP_FORWARD_NESTED},
};
static const cyaml_strval_t pop_names[] = {
    {"keep", RP_POP_KEEP},
    {"ra_verified", RP_POP_RA_VERIFIED},
};
static const cyaml_strval_t genm_names[] = {
    {"forward", RP_GENM_FORWARD},
    {"local", RP_GENM_LOCAL},
};
static const cyaml_strval_t redis_failure_names[] = {
    {"open", RP_REDIS_FAIL_OPEN},
    {"closed", RP_REDIS_FAIL_CLOSED},
};
static const cyaml_strval_t crl_stale_names[] = {
    {"refuse", RP_CRL_STALE_REFUSE},
    {"warn", RP_CRL_STALE_WARN},
};
static const cyaml_strval_t protection_names[] = {
    {"signature", RP_PROT_SIGNATURE},
    {"mac", RP_PROT_MAC},
    {"both", RP_PROT_SIGNATURE | RP_PROT_MAC},
};
#define ENUM(key, st, m, names)                                                                    \
    CYAML_FIELD_ENUM(key, OPT | CYAML_FLAG_STRICT, st, m, names, CYAML_ARRAY_LEN(names))

static const cyaml_schema_field_t root_ca_update_fields[] = {
    STR("new_with_new", struct rp_cfg_root_ca_update, new_with_new),
    STR("new_with_old", struct rp_cfg_root_ca_update, new_with_old),
    STR("old_with_new", struct rp_cfg_root_ca_update, old_with_new),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t pki_info_fields[] = {
    STR("ca_certs", struct rp_cfg_pki_info, ca_certs),
    CYAML_FIELD_MAPPING_PTR("root_ca_update", OPT, struct rp_cfg_pki_info, root_ca_update,
                            root_ca_update_fields),
    STR("cert_req_template", struct rp_cfg_pki_info, cert_req_template),
    CYAML_FIELD_END,
};

static const cyaml_strval_t template_mode_names[] = {
    {"check", RP_TEMPLATE_CHECK},
    {"rewrite", RP_TEMPLATE_REWRITE},
};
static const cyaml_strval_t validity_names[] = {
    {"drop", RP_VALIDITY_DROP},
    {"keep", RP_VALIDITY_KEEP},
};
static const cyaml_strval_t keygen_names[] = {
    {"refuse", RP_KEYGEN_REFUSE},
    {"allow", RP_KEYGEN_ALLOW},
};

static const cyaml_schema_field_t template_fields[] = {
    ENUM("mode", struct rp_cfg_template, mode, template_mode_names),
    STRS("bind", struct rp_cfg_template, bind),
    STRS("subject_attributes", struct rp_cfg_template, subject_attributes),
    STR("subject", struct rp_cfg_template, subject),
    STRS("san", struct rp_cfg_template, san),
    STRS("san_types", struct rp_cfg_template, san_types),
    STRS("key_usage", struct rp_cfg_template, key_usage),
    STRS("extended_key_usage", struct rp_cfg_template, extended_key_usage),
    ENUM("validity", struct rp_cfg_template, validity, validity_names),
    U32("max_validity_days", struct rp_cfg_template, max_validity_days),
    STRS("cert_profiles", struct rp_cfg_template, cert_profiles),
    CYAML_FIELD_BOOL("kur_subject_change", OPT, struct rp_cfg_template, kur_subject_change),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t renewal_fields[] = {
    STR("min_age", struct rp_cfg_renewal, min_age),
    STR("min_remaining", struct rp_cfg_renewal, min_remaining),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t domain_fields[] = {
    STR("name", struct rp_cfg_domain, name),
    STRS("paths", struct rp_cfg_domain, paths),
    STRS("trust_anchors", struct rp_cfg_domain, trust_anchors),
    STRS("anchor_names", struct rp_cfg_domain, anchor_names),
    STRS("intermediates", struct rp_cfg_domain, intermediates),
    STRS("crls", struct rp_cfg_domain, crls),
    ENUM("crl_stale", struct rp_cfg_domain, crl_stale, crl_stale_names),
    STRS("allow", struct rp_cfg_domain, allow),
    ENUM("protection", struct rp_cfg_domain, protection, protection_names),
    STRS("algorithms", struct rp_cfg_domain, algorithms),
    U32("rsa_min_bits", struct rp_cfg_domain, rsa_min_bits),
    STR("mac_secrets", struct rp_cfg_domain, mac_secrets),
    U32("pbm_max_iterations", struct rp_cfg_domain, pbm_max_iterations),
    STR("allowlist", struct rp_cfg_domain, allowlist),
    CYAML_FIELD_BOOL("allowlist_consume", OPT, struct rp_cfg_domain, allowlist_consume),
    STR("allowlist_state", struct rp_cfg_domain, allowlist_state),
    CYAML_FIELD_MAPPING("template", OPT, struct rp_cfg_domain, tmpl, template_fields),
    U32("max_requests", struct rp_cfg_domain, max_requests),
    ENUM("central_keygen", struct rp_cfg_domain, central_keygen, keygen_names),
    STRS("rr_reasons", struct rp_cfg_domain, rr_reasons),
    ENUM("forward", struct rp_cfg_domain, forward, forward_names),
    ENUM("pop", struct rp_cfg_domain, pop, pop_names),
    ENUM("genm", struct rp_cfg_domain, genm, genm_names),
    U32("max_clock_skew_s", struct rp_cfg_domain, max_clock_skew_s),
    CYAML_FIELD_BOOL("require_message_time", OPT, struct rp_cfg_domain, require_message_time),
    U32("replay_window_s", struct rp_cfg_domain, replay_window_s),
    CYAML_FIELD_MAPPING("mac_lockout", OPT, struct rp_cfg_domain, mac_lockout, mac_lockout_fields),
    STR("upstream_path", struct rp_cfg_domain, upstream_path),
    STR("ocsp_path", struct rp_cfg_domain, ocsp_path),
    CYAML_FIELD_MAPPING("limits", OPT, struct rp_cfg_domain, limits, limits_fields),
    ENUM("on_redis_failure", struct rp_cfg_domain, on_redis_failure, redis_failure_names),
    STRS("admins", struct rp_cfg_domain, admins),
    CYAML_FIELD_MAPPING_PTR("pki_info", OPT, struct rp_cfg_domain, pki_info, pki_info_fields),
    CYAML_FIELD_MAPPING("renewal", OPT, struct rp_cfg_domain, renewal, renewal_fields),
    CYAML_FIELD_END,
};
static const cyaml_schema_value_t domain_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct rp_cfg_domain, domain_fields),
};

static const cyaml_schema_field_t redis_fields[] = {
    STR("url", struct rp_cfg_redis, url),
    U32("timeout_ms", struct rp_cfg_redis, timeout_ms),
    STR("key_prefix", struct rp_cfg_redis, key_prefix),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t ocsp_cache_fields[] = {
    U32("max_entries", struct rp_cfg_ocsp_cache, max_entries),
    U32("max_age_s", struct rp_cfg_ocsp_cache, max_age_s),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t validation_fields[] = {
    STR("url", struct rp_cfg_validation, url),
    STR("ca", struct rp_cfg_validation, ca),
    STR("responder_cert", struct rp_cfg_validation, responder_cert),
    STRS("trust_anchors", struct rp_cfg_validation, trust_anchors),
    STR("path", struct rp_cfg_validation, path),
    CYAML_FIELD_MAPPING("cache", OPT, struct rp_cfg_validation, cache, ocsp_cache_fields),
    U32("timeout_ms", struct rp_cfg_validation, timeout_ms),
    CYAML_FIELD_MAPPING("per_ip", OPT, struct rp_cfg_validation, per_ip, limit_fields),
    CYAML_FIELD_MAPPING("global", OPT, struct rp_cfg_validation, global, limit_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t top_fields[] = {
    U32("loops", struct rp_config, loops),
    U32("workers", struct rp_config, workers),
    U32("worker_queue", struct rp_config, worker_queue),
    U32("worker_queue_ms", struct rp_config, worker_queue_ms),
    STR("log_level", struct rp_config, log_level),
    U32("shutdown_grace_s", struct rp_config, shutdown_grace_s),
    STR("default_path", struct rp_config, default_path),
    CYAML_FIELD_SEQUENCE("listeners", OPT | CYAML_FLAG_POINTER, struct rp_config, listeners,
                         &listener_entry, 0, CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING("http", OPT, struct rp_config, http, http_fields),
    CYAML_FIELD_MAPPING("upstream", OPT, struct rp_config, upstream, upstream_fields),
    CYAML_FIELD_MAPPING("admin", OPT, struct rp_config, admin, admin_fields),
    CYAML_FIELD_MAPPING("ra", OPT, struct rp_config, ra, ra_fields),
    CYAML_FIELD_SEQUENCE("domains", OPT | CYAML_FLAG_POINTER, struct rp_config, domains,
                         &domain_entry, 0, CYAML_UNLIMITED),
    CYAML_FIELD_MAPPING_PTR("redis", OPT, struct rp_config, redis, redis_fields),
    CYAML_FIELD_MAPPING_PTR("validation", OPT, struct rp_config, validation, validation_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t top_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct rp_config, top_fields),
};

/* The walk tracks keys seen in a mapping with one bit per schema field. */
#define MAX_FIELDS 64
_Static_assert(CYAML_ARRAY_LEN(domain_fields) <= MAX_FIELDS, "domain schema too wide");
_Static_assert(CYAML_ARRAY_LEN(top_fields) <= MAX_FIELDS, "top schema too wide");

/* Memory for libcyaml is plain malloc/free, so the loader may replace strings (env
 * overrides, resolved paths) with its own allocations and cyaml_free() still frees them. */
static void *cyaml_mem_fn(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, size);
}

/* ------------------------------------------------------ key path map, problems */

struct rp_cfgx_ent *rp_cfgx_find(const struct rp_cfgx *x, const char *path)
{
    for (size_t i = 0; i < x->n_ents; i++)
        if (strcmp(x->ents[i].path, path) == 0)
            return &x->ents[i];
    return NULL;
}

struct rp_cfgx_ent *rp_cfgx_add(struct rp_cfgx *x, const char *path, unsigned line)
{
    struct rp_cfgx_ent *e = rp_cfgx_find(x, path);
    if (e)
        return e;
    if (x->n_ents == x->cap_ents) {
        size_t cap = x->cap_ents ? 2 * x->cap_ents : 64;
        struct rp_cfgx_ent *n = realloc(x->ents, cap * sizeof *n);
        if (!n) {
            x->oom = 1;
            return NULL;
        }
        x->ents = n;
        x->cap_ents = cap;
    }
    char *p = strdup(path);
    if (!p) {
        x->oom = 1;
        return NULL;
    }
    e = &x->ents[x->n_ents++];
    *e = (struct rp_cfgx_ent){.path = p, .line = line};
    return e;
}

int rp_cfgx_present(const struct rp_cfgx *x, const char *path)
{
    return rp_cfgx_find(x, path) != NULL;
}

void rp_cfgx_from_env(struct rp_cfgx *x, const char *path, const char *env)
{
    struct rp_cfgx_ent *e = rp_cfgx_add(x, path, 0);
    if (e)
        e->env = env;
}

/* Drop the last component: "a.b[2]" → "a.b" → "a" → "". */
static int path_parent(char *p)
{
    size_t n = strlen(p);
    if (n == 0)
        return 0;
    while (n > 0 && p[n - 1] != '.' && p[n - 1] != '[')
        n--;
    if (n > 0)
        n--; /* the separator itself */
    p[n] = 0;
    return 1;
}

static void report(struct rp_cfgx *x, const char *path, unsigned line, const char *fmt, va_list ap)
{
    x->problems++;
    if (!x->errs)
        return;
    const char *env = NULL;
    if (line == 0) {
        char p[RP_CFGX_PATH_MAX];
        rp_cfgx_key(p, "%s", path);
        do {
            const struct rp_cfgx_ent *e = rp_cfgx_find(x, p);
            if (e && (e->env || e->line)) {
                env = e->env;
                line = e->line;
                break;
            }
        } while (path_parent(p));
    }
    if (env)
        fprintf(x->errs, "environment %s: ", env);
    else
        fprintf(x->errs, "%s:%u: ", x->file, line ? line : 1);
    fprintf(x->errs, "%s: ", *path ? path : "(top level)");
    vfprintf(x->errs, fmt, ap);
    fputc('\n', x->errs);
}

void rp_cfgx_problem(struct rp_cfgx *x, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(x, path, 0, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 4, 5))) static void problem_at(struct rp_cfgx *x, unsigned line,
                                                             const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(x, path, line, fmt, ap);
    va_end(ap);
}

void rp_cfgx_key(char *dst, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, RP_CFGX_PATH_MAX, fmt, ap);
    va_end(ap);
}

char *rp_cfgx_strdup(struct rp_cfgx *x, const char *s)
{
    char *d = strdup(s);
    if (!d)
        x->oom = 1;
    return d;
}

int rp_cfgx_parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max)
            return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* --------------------------------------------------------- the structural walk */

struct outbuf {
    unsigned char *p;
    size_t len, cap;
};

struct walk {
    struct rp_cfgx *x;
    yaml_document_t *doc;
    yaml_emitter_t em;
    int em_failed;
    unsigned nodes;
    struct outbuf out;
};

static int on_emit(void *data, unsigned char *buf, size_t size)
{
    struct outbuf *o = data;
    if (o->len + size > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + size)
            cap *= 2;
        unsigned char *n = realloc(o->p, cap);
        if (!n)
            return 0;
        o->p = n;
        o->cap = cap;
    }
    memcpy(o->p + o->len, buf, size);
    o->len += size;
    return 1;
}

static void emit(struct walk *w, yaml_event_t *ev, int initialized)
{
    if (!initialized) {
        w->em_failed = 1;
        return;
    }
    if (w->em_failed) {
        yaml_event_delete(ev);
        return;
    }
    /* the emitter owns (and frees) the event even when it fails */
    if (!yaml_emitter_emit(&w->em, ev))
        w->em_failed = 1;
}

static void emit_scalar(struct walk *w, const char *s, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    emit(w, &ev,
         yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 1,
                                      style));
}

static void emit_collection(struct walk *w, yaml_event_type_t type)
{
    yaml_event_t ev;
    int ok = 0;
    switch (type) {
    case YAML_MAPPING_START_EVENT:
        ok = yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        break;
    case YAML_MAPPING_END_EVENT:
        ok = yaml_mapping_end_event_initialize(&ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
        ok = yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
        break;
    case YAML_SEQUENCE_END_EVENT:
        ok = yaml_sequence_end_event_initialize(&ev);
        break;
    default:
        break;
    }
    emit(w, &ev, ok);
}

static unsigned node_line(const yaml_node_t *n)
{
    return (unsigned)n->start_mark.line + 1;
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* `key:` with nothing, `~` or `null` (unquoted): YAML's null, taken as "not set". */
static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = scalar(n);
    return !*s || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0;
}

static void type_error(struct walk *w, const char *path, const char *want, const yaml_node_t *n)
{
    if (n->type == YAML_SCALAR_NODE)
        problem_at(w->x, node_line(n), path, "expected %s, got '%.*s'", want, QUOTE_MAX, scalar(n));
    else
        problem_at(w->x, node_line(n), path, "expected %s, got a %s", want,
                   n->type == YAML_MAPPING_NODE ? "mapping" : "sequence");
}

/* dst (a key path buffer) = a + sep + b; no separator after the empty top-level path. */
static void join(char *dst, const char *a, const char *sep, const char *b)
{
    rp_cfgx_key(dst, "%s%s%s", a, *a ? sep : "", b);
}

static void walk_value(struct walk *w, yaml_node_t *n, const cyaml_schema_value_t *s,
                       const char *path);

static int parse_bool(const char *s, int *v)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < CYAML_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *v = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *v = 0, 0;
    }
    return -1;
}

static const char *skip_spaces(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Read a run of digits at *sp into v; advances *sp. */
static int take_u32(const char **sp, uint32_t *v)
{
    char digits[16];
    size_t n = 0;
    const char *s = *sp;
    while (isdigit((unsigned char)s[n]) && n < sizeof digits - 1) {
        digits[n] = s[n];
        n++;
    }
    digits[n] = 0;
    if (n == 0 || rp_cfgx_parse_u32(digits, UINT32_MAX, v) != 0)
        return -1;
    *sp = s + n;
    return 0;
}

/* The unit after "N/": s, min, h or day (RP_CFG_PER_*); advances *sp past it. */
static int take_rate_unit(const char **sp, uint32_t *period_s)
{
    static const struct {
        const char *name;
        uint32_t seconds;
    } units[] = {
        {"s", RP_CFG_PER_S}, {"min", RP_CFG_PER_MIN}, {"h", RP_CFG_PER_H}, {"day", RP_CFG_PER_DAY}};
    const char *s = *sp;
    size_t n = 0;
    while (isalpha((unsigned char)s[n]))
        n++;
    for (size_t i = 0; i < CYAML_ARRAY_LEN(units); i++) {
        if (strlen(units[i].name) == n && strncmp(s, units[i].name, n) == 0) {
            *period_s = units[i].seconds;
            *sp = s + n;
            return 0;
        }
    }
    return -1;
}

/* A rate: "N" (per second, as before units existed) or "N/s", "N/min", "N/h", "N/day". */
static int take_rate(const char **sp, uint32_t *rate, uint32_t *period_s)
{
    const char *s = skip_spaces(*sp);
    if (take_u32(&s, rate) != 0)
        return -1;
    s = skip_spaces(s);
    *period_s = RP_CFG_PER_S;
    if (*s == '/') {
        s = skip_spaces(s + 1);
        if (take_rate_unit(&s, period_s) != 0)
            return -1;
    }
    *sp = s;
    return 0;
}

/* The short form of a limit: "20/s", "3/day burst 3". */
static int parse_limit(const char *s, uint32_t *rate, uint32_t *period_s, uint32_t *burst,
                       int *has_burst)
{
    const char *start = skip_spaces(s);
    if (take_rate(&s, rate, period_s) != 0 || !strchr(start, '/'))
        return -1; /* the short form always names its unit */
    s = skip_spaces(s);
    *has_burst = 0;
    if (*s == 0)
        return 0;
    if (strncmp(s, "burst", 5) != 0 || (s[5] != ' ' && s[5] != '\t'))
        return -1;
    s = skip_spaces(s + 5);
    if (take_u32(&s, burst) != 0)
        return -1;
    *has_burst = 1;
    return *skip_spaces(s) == 0 ? 0 : -1;
}

static void emit_u32(struct walk *w, uint32_t v)
{
    char num[16];
    snprintf(num, sizeof num, "%u", v);
    emit_scalar(w, num, YAML_PLAIN_SCALAR_STYLE);
}

/* The rate's count (its key already emitted), then period_s: P, for libcyaml. */
static void emit_rate_value(struct walk *w, uint32_t rate, uint32_t period_s)
{
    emit_u32(w, rate);
    emit_scalar(w, limit_fields[LIMIT_PERIOD].key, YAML_PLAIN_SCALAR_STYLE);
    emit_u32(w, period_s);
}

#define RATE_FORMS "N, \"N/s\", \"N/min\", \"N/h\" or \"N/day\""

/* `rate: 3/day` inside a limit mapping (the key is emitted by walk_mapping's caller). */
static void walk_rate(struct walk *w, const yaml_node_t *v, const char *path)
{
    uint32_t rate, period_s;
    const char *s = v->type == YAML_SCALAR_NODE ? scalar(v) : NULL;
    if (!s || take_rate(&s, &rate, &period_s) != 0 || *skip_spaces(s) != 0) {
        type_error(w, path, RATE_FORMS, v);
        return;
    }
    emit_rate_value(w, rate, period_s);
}

static void walk_limit_string(struct walk *w, const yaml_node_t *v, const char *path)
{
    uint32_t rate, period_s, burst;
    int has_burst;
    if (parse_limit(scalar(v), &rate, &period_s, &burst, &has_burst) != 0) {
        problem_at(w->x, node_line(v), path,
                   "expected a mapping {rate: N/s, burst: M} or \"N/s [burst M]\" (units s, min, "
                   "h, day), got '%.*s'",
                   QUOTE_MAX, scalar(v));
        return;
    }
    char sub[RP_CFGX_PATH_MAX];
    emit_collection(w, YAML_MAPPING_START_EVENT);
    emit_scalar(w, limit_fields[LIMIT_RATE].key, YAML_PLAIN_SCALAR_STYLE);
    emit_rate_value(w, rate, period_s);
    join(sub, path, ".", "rate");
    rp_cfgx_add(w->x, sub, node_line(v));
    if (has_burst) {
        emit_scalar(w, limit_fields[LIMIT_BURST].key, YAML_PLAIN_SCALAR_STYLE);
        emit_u32(w, burst);
        join(sub, path, ".", "burst");
        rp_cfgx_add(w->x, sub, node_line(v));
    }
    emit_collection(w, YAML_MAPPING_END_EVENT);
}

static void unknown_key(struct walk *w, const yaml_node_t *k, const char *path,
                        const cyaml_schema_field_t *fields)
{
    char known[512];
    size_t len = 0;
    known[0] = 0;
    for (const cyaml_schema_field_t *f = fields; f->key && len < sizeof known; f++) {
        int n = snprintf(known + len, sizeof known - len, "%s%s", len ? ", " : "", f->key);
        if (n < 0)
            break;
        len += (size_t)n;
    }
    problem_at(w->x, node_line(k), path, "unknown key (expected one of: %s)", known);
}

/* A mapping key and its value. Returns after emitting both, or neither. */
static void walk_field(struct walk *w, const yaml_node_t *k, yaml_node_t *v,
                       const cyaml_schema_field_t *f, const char *path)
{
    int is_mapping = f->value.type == CYAML_MAPPING;
    if (is_null(v))
        return;
    struct rp_cfgx_ent *e = rp_cfgx_add(w->x, path, node_line(k));
    if (is_mapping && v->type == YAML_SCALAR_NODE && f->value.mapping.fields == tls_fields) {
        /* `tls: off` — plain HTTP on this listener; libcyaml never sees the key */
        int on;
        if (parse_bool(scalar(v), &on) != 0 || on)
            type_error(w, path, "`off` or a mapping with cert and key", v);
        else if (e)
            e->marks |= RP_CFGX_TLS_OFF;
        return;
    }
    emit_scalar(w, scalar(k), k->data.scalar.style);
    if (is_mapping && v->type == YAML_SCALAR_NODE && f->value.mapping.fields == limit_fields)
        walk_limit_string(w, v, path);
    else if (f == &limit_fields[LIMIT_RATE])
        walk_rate(w, v, path);
    else
        walk_value(w, v, &f->value, path);
}

static void walk_mapping(struct walk *w, yaml_node_t *n, const cyaml_schema_field_t *fields,
                         const char *path)
{
    if (n->type != YAML_MAPPING_NODE) {
        type_error(w, path, "a mapping", n);
        return;
    }
    uint64_t seen = 0;
    emit_collection(w, YAML_MAPPING_START_EVENT);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
        if (!k || !v)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            problem_at(w->x, node_line(k), path, "mapping keys must be plain words");
            continue;
        }
        char child[RP_CFGX_PATH_MAX];
        join(child, path, ".", scalar(k));
        unsigned i = 0;
        while (fields[i].key && strcmp(fields[i].key, scalar(k)) != 0)
            i++;
        if (&fields[i] == &limit_fields[LIMIT_PERIOD]) {
            /* internal: the unit comes with the rate ("3/day") */
            problem_at(w->x, node_line(k), child,
                       "unknown key (expected one of: rate, burst; the unit goes with the rate, "
                       "e.g. rate: 3/day)");
        } else if (!fields[i].key) {
            unknown_key(w, k, child, fields);
        } else if (seen & (1ull << i)) {
            problem_at(w->x, node_line(k), child, "duplicate key");
        } else {
            seen |= 1ull << i;
            walk_field(w, k, v, &fields[i], child);
        }
    }
    emit_collection(w, YAML_MAPPING_END_EVENT);
}

static void walk_sequence(struct walk *w, yaml_node_t *n, const cyaml_schema_value_t *entry,
                          const char *path)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        type_error(w, path, "a sequence", n);
        return;
    }
    unsigned idx = 0;
    emit_collection(w, YAML_SEQUENCE_START_EVENT);
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++, idx++) {
        yaml_node_t *v = yaml_document_get_node(w->doc, *it);
        if (!v)
            continue;
        char child[RP_CFGX_PATH_MAX];
        rp_cfgx_key(child, "%s[%u]", path, idx);
        rp_cfgx_add(w->x, child, node_line(v));
        walk_value(w, v, entry, child);
    }
    emit_collection(w, YAML_SEQUENCE_END_EVENT);
}

static void walk_enum(struct walk *w, const yaml_node_t *n, const cyaml_schema_value_t *s,
                      const char *path)
{
    char names[256];
    size_t len = 0;
    for (uint32_t i = 0; i < s->enumeration.count; i++) {
        if (strcmp(scalar(n), s->enumeration.strings[i].str) == 0) {
            emit_scalar(w, scalar(n), n->data.scalar.style);
            return;
        }
        int k = snprintf(names + len, sizeof names - len, "%s%s", i ? "|" : "",
                         s->enumeration.strings[i].str);
        if (k > 0 && (size_t)k < sizeof names - len)
            len += (size_t)k;
    }
    names[len] = 0;
    problem_at(w->x, node_line(n), path, "must be one of %s, got '%.*s'", names, QUOTE_MAX,
               scalar(n));
}

static void walk_scalar(struct walk *w, yaml_node_t *n, const cyaml_schema_value_t *s,
                        const char *path)
{
    uint32_t u;
    int b;
    switch (s->type) {
    case CYAML_STRING:
        emit_scalar(w, scalar(n), n->data.scalar.style);
        break;
    case CYAML_UINT: {
        uint32_t max = s->data_size >= 4 ? UINT32_MAX : (uint32_t)((1ul << (8 * s->data_size)) - 1);
        if (rp_cfgx_parse_u32(scalar(n), max, &u) != 0)
            type_error(w, path, "an unsigned integer", n);
        else
            emit_scalar(w, scalar(n), YAML_PLAIN_SCALAR_STYLE);
        break;
    }
    case CYAML_BOOL:
        /* canonical spelling: libcyaml reads any unknown word as true */
        if (parse_bool(scalar(n), &b) != 0)
            type_error(w, path, "true or false", n);
        else
            emit_scalar(w, b ? "true" : "false", YAML_PLAIN_SCALAR_STYLE);
        break;
    case CYAML_ENUM:
        walk_enum(w, n, s, path);
        break;
    default:
        problem_at(w->x, node_line(n), path, "internal: unsupported schema type");
    }
}

static void walk_value(struct walk *w, yaml_node_t *n, const cyaml_schema_value_t *s,
                       const char *path)
{
    if (++w->nodes > MAX_NODES) {
        if (w->nodes == MAX_NODES + 1)
            problem_at(w->x, node_line(n), path, "document too large (over %u nodes)", MAX_NODES);
        return;
    }
    switch (s->type) {
    case CYAML_MAPPING:
        walk_mapping(w, n, s->mapping.fields, path);
        break;
    case CYAML_SEQUENCE:
        walk_sequence(w, n, s->sequence.entry, path);
        break;
    default:
        if (n->type != YAML_SCALAR_NODE)
            type_error(w, path,
                       s->type == CYAML_UINT   ? "an unsigned integer"
                       : s->type == CYAML_BOOL ? "true or false"
                                               : "a string",
                       n);
        else
            walk_scalar(w, n, s, path);
    }
}

/* Emit the stream around the walked document. */
static void walk_document(struct walk *w, yaml_node_t *root)
{
    yaml_event_t ev;
    emit(w, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
    emit(w, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
    rp_cfgx_add(w->x, "", 1);
    walk_value(w, root, &top_schema, "");
    emit(w, &ev, yaml_document_end_event_initialize(&ev, 1));
    emit(w, &ev, yaml_stream_end_event_initialize(&ev));
}

/* ------------------------------------------------------------- reading */

static char *read_file(struct rp_cfgx *x, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        problem_at(x, 1, "", "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE_BYTES + 1, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!buf) {
        x->oom = 1;
        return NULL;
    }
    if (err || n > MAX_FILE_BYTES) {
        problem_at(x, 1, "", err ? "read error" : "larger than %u bytes", MAX_FILE_BYTES);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

struct cyaml_capture {
    char msg[CYAML_LOG_CAPTURE];
    size_t len;
};

static void on_cyaml_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    struct cyaml_capture *c = ctx;
    (void)level;
    if (c->len + 1 >= sizeof c->msg)
        return;
    int n = vsnprintf(c->msg + c->len, sizeof c->msg - c->len, fmt, args);
    if (n > 0)
        c->len = c->len + (size_t)n < sizeof c->msg ? c->len + (size_t)n : sizeof c->msg - 1;
    for (char *p = c->msg; *p; p++)
        if (*p == '\n')
            *p = ' '; /* one problem, one line */
}

/* Parse with libyaml, walk, and hand the re-emitted document to libcyaml. */
static struct rp_config *parse(struct rp_cfgx *x, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct walk w = {.x = x, .doc = &doc};
    struct rp_config *cfg = NULL;
    int have_doc = 0, have_em = 0;

    if (!yaml_parser_initialize(&parser)) {
        x->oom = 1;
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        problem_at(x, (unsigned)parser.problem_mark.line + 1, "", "YAML syntax: %s%s%s",
                   parser.problem ? parser.problem : "error", parser.context ? " " : "",
                   parser.context ? parser.context : "");
        goto out;
    }
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        problem_at(x, 1, "", "empty configuration");
        goto out;
    }
    if (!yaml_emitter_initialize(&w.em)) {
        x->oom = 1;
        goto out;
    }
    have_em = 1;
    yaml_emitter_set_output(&w.em, on_emit, &w.out);
    yaml_emitter_set_width(&w.em, -1);
    yaml_emitter_set_unicode(&w.em, 1);
    walk_document(&w, root);
    if (x->problems || x->oom)
        goto out;
    if (w.em_failed) {
        problem_at(x, 1, "", "internal: re-emitting the document failed: %s",
                   w.em.problem ? w.em.problem : "out of memory");
        goto out;
    }

    struct cyaml_capture cap = {.len = 0};
    const cyaml_config_t ccfg = {
        .log_fn = on_cyaml_log,
        .log_ctx = &cap,
        .mem_fn = cyaml_mem_fn,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_DEFAULT,
    };
    cyaml_err_t err =
        cyaml_load_data(w.out.p, w.out.len, &ccfg, &top_schema, (cyaml_data_t **)&cfg, NULL);
    if (err != CYAML_OK) {
        if (err == CYAML_ERR_OOM)
            x->oom = 1;
        else
            problem_at(x, 1, "", "libcyaml: %s: %s", cyaml_strerror(err), cap.msg);
        cfg = NULL;
    }
out:
    if (have_em)
        yaml_emitter_delete(&w.em);
    free(w.out.p);
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return cfg;
}

/* ------------------------------------------------------------- after parsing */

static void mark_tls_off(struct rp_cfgx *x, struct rp_config *cfg)
{
    for (unsigned i = 0; i < cfg->listeners_count; i++) {
        char p[RP_CFGX_PATH_MAX];
        rp_cfgx_key(p, "listeners[%u].tls", i);
        const struct rp_cfgx_ent *e = rp_cfgx_find(x, p);
        cfg->listeners[i].tls_off = e && (e->marks & RP_CFGX_TLS_OFF);
    }
}

/* Make a relative file path relative to the configuration file's directory, so that
 * `raproxy --config /etc/raproxy/raproxy.yaml` and a test's temp dir both work from any cwd. */
static void resolve_one(struct rp_cfgx *x, const char *dir, char **p)
{
    if (!*p || !**p || **p == '/' || strcmp(*p, "redis") == 0 ||
        strncasecmp(*p, RP_P11_SCHEME, sizeof RP_P11_SCHEME - 1) == 0)
        return;
    size_t n = strlen(dir) + 1 + strlen(*p) + 1;
    char *abs = malloc(n);
    if (!abs) {
        x->oom = 1;
        return;
    }
    snprintf(abs, n, "%s/%s", dir, *p);
    free(*p);
    *p = abs;
}

static void resolve_list(struct rp_cfgx *x, const char *dir, char **v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        resolve_one(x, dir, &v[i]);
}

static void resolve_paths(struct rp_cfgx *x, struct rp_config *cfg)
{
    const char *slash = strrchr(x->file, '/');
    if (!slash)
        return; /* the file is in the working directory: relative paths already work */
    char dir[4096];
    /* "/raproxy.yaml" gives dir "", which still makes "/<file>" */
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - x->file), x->file);
    for (unsigned i = 0; i < cfg->listeners_count; i++) {
        struct rp_cfg_tls *t = &cfg->listeners[i].tls;
        resolve_one(x, dir, &t->cert);
        resolve_one(x, dir, &t->key);
        resolve_one(x, dir, &t->client_ca);
        resolve_one(x, dir, &t->pkcs11.module);
        resolve_one(x, dir, &t->pkcs11.pin_file);
    }
    resolve_one(x, dir, &cfg->upstream.ca);
    resolve_one(x, dir, &cfg->upstream.client_cert);
    resolve_one(x, dir, &cfg->upstream.client_key);
    resolve_one(x, dir, &cfg->upstream.ca_trust);
    resolve_one(x, dir, &cfg->ra.cert);
    resolve_one(x, dir, &cfg->ra.chain);
    resolve_one(x, dir, &cfg->ra.key);
    resolve_one(x, dir, &cfg->ra.pkcs11.module);
    resolve_one(x, dir, &cfg->ra.pkcs11.pin_file);
    for (unsigned i = 0; i < cfg->domains_count; i++) {
        struct rp_cfg_domain *d = &cfg->domains[i];
        resolve_list(x, dir, d->trust_anchors, d->trust_anchors_count);
        resolve_list(x, dir, d->intermediates, d->intermediates_count);
        resolve_list(x, dir, d->crls, d->crls_count);
        resolve_list(x, dir, d->admins, d->admins_count);
        resolve_one(x, dir, &d->mac_secrets);
        resolve_one(x, dir, &d->allowlist);
        resolve_one(x, dir, &d->allowlist_state);
        if (d->pki_info) {
            resolve_one(x, dir, &d->pki_info->ca_certs);
            resolve_one(x, dir, &d->pki_info->cert_req_template);
            struct rp_cfg_root_ca_update *r = d->pki_info->root_ca_update;
            if (r) {
                resolve_one(x, dir, &r->new_with_new);
                resolve_one(x, dir, &r->new_with_old);
                resolve_one(x, dir, &r->old_with_new);
            }
        }
    }
    if (cfg->validation) {
        struct rp_cfg_validation *v = cfg->validation;
        resolve_one(x, dir, &v->ca);
        resolve_one(x, dir, &v->responder_cert);
        resolve_list(x, dir, v->trust_anchors, v->trust_anchors_count);
    }
}

/* Set *field to val unless the file or the environment named the key. */
static void def_u32(const struct rp_cfgx *x, const char *prefix, const char *key, uint32_t *field,
                    uint32_t val)
{
    char p[RP_CFGX_PATH_MAX];
    join(p, prefix, ".", key);
    if (!rp_cfgx_present(x, p))
        *field = val;
}

static void def_str(struct rp_cfgx *x, char **field, const char *val)
{
    if (!*field)
        *field = rp_cfgx_strdup(x, val);
}

static uint32_t online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > (long)RP_CFG_WORKERS_MAX ? RP_CFG_WORKERS_MAX : (uint32_t)n;
}

static void defaults_limit(struct rp_cfgx *x, const char *prefix, struct rp_cfg_limit *l)
{
    def_u32(x, prefix, "burst", &l->burst, l->rate);
}

/* The path part of the upstream URL, for domains that name none. */
static void default_upstream_path(struct rp_cfgx *x, struct rp_config *cfg, char **field)
{
    struct rp_http_url u;
    if (*field || !cfg->upstream.url || rp_http_url_parse(cfg->upstream.url, &u) != RP_OK)
        return;
    *field = rp_cfgx_strdup(x, u.path);
}

/* Each trust anchor file stands for the vendor named by its basename without extension
 * ("/etc/raproxy/acme.pem" is "acme"), unless anchor_names says otherwise. */
static void default_anchor_names(struct rp_cfgx *x, struct rp_cfg_domain *d)
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
        char *name = rp_cfgx_strdup(x, base);
        if (!name)
            return;
        char *dot = strrchr(name, '.');
        if (dot && dot != name)
            *dot = '\0';
        d->anchor_names[i] = name;
    }
}

/* "30d", "12h", "90min", "3600s", "3600" (seconds) or "33%" of the lifetime. */
static int parse_span(const char *text, struct rp_cfg_span *out)
{
    static const struct {
        const char *name;
        uint32_t seconds;
    } units[] = {{"", 1},
                 {"s", 1},
                 {"min", RP_CFG_PER_MIN},
                 {"h", RP_CFG_PER_H},
                 {"d", RP_CFG_PER_DAY},
                 {"day", RP_CFG_PER_DAY},
                 {"days", RP_CFG_PER_DAY}};
    const char *s = skip_spaces(text);
    uint32_t n;
    if (take_u32(&s, &n) != 0)
        return -1;
    s = skip_spaces(s);
    *out = (struct rp_cfg_span){.set = true};
    if (*s == '%') {
        out->pct = n;
        return n >= 1 && n <= 100 && *skip_spaces(s + 1) == 0 ? 0 : -1;
    }
    size_t len = 0;
    while (isalpha((unsigned char)s[len]))
        len++;
    if (*skip_spaces(s + len) != 0)
        return -1;
    for (size_t i = 0; i < CYAML_ARRAY_LEN(units); i++)
        if (strlen(units[i].name) == len && strncmp(s, units[i].name, len) == 0) {
            if (n > UINT32_MAX / units[i].seconds)
                return -1;
            out->seconds = n * units[i].seconds;
            return 0;
        }
    return -1;
}

static void parse_renewal(struct rp_cfgx *x, const char *base, struct rp_cfg_renewal *r)
{
    char *text[] = {r->min_age, r->min_remaining};
    struct rp_cfg_span *span[] = {&r->age, &r->remaining};
    const char *key[] = {"min_age", "min_remaining"};
    char p[RP_CFGX_PATH_MAX];
    for (size_t i = 0; i < CYAML_ARRAY_LEN(span); i++) {
        *span[i] = (struct rp_cfg_span){0};
        if (!text[i])
            continue;
        rp_cfgx_key(p, "%s.renewal.%s", base, key[i]);
        if (parse_span(text[i], span[i]) != 0)
            rp_cfgx_problem(x, p,
                            "expected a duration (\"30d\", \"12h\", \"90min\", \"3600s\") or a "
                            "share of the certificate's lifetime (\"33%%\"), got '%.*s'",
                            QUOTE_MAX, text[i]);
    }
}

static void defaults_domain(struct rp_cfgx *x, struct rp_config *cfg, unsigned i)
{
    struct rp_cfg_domain *d = &cfg->domains[i];
    char p[RP_CFGX_PATH_MAX], lp[RP_CFGX_PATH_MAX];
    rp_cfgx_key(p, "domains[%u]", i);
    def_u32(x, p, "protection", &d->protection, RP_PROT_SIGNATURE);
    def_u32(x, p, "rsa_min_bits", &d->rsa_min_bits, RP_DEF_RSA_MIN_BITS);
    def_u32(x, p, "pbm_max_iterations", &d->pbm_max_iterations, RP_DEF_PBM_MAX_ITER);
    def_u32(x, p, "max_clock_skew_s", &d->max_clock_skew_s, RP_DEF_MAX_CLOCK_SKEW);
    rp_cfgx_key(lp, "%s.require_message_time", p);
    if (!rp_cfgx_present(x, lp))
        d->require_message_time = true;
    def_u32(x, p, "replay_window_s", &d->replay_window_s, RP_DEF_REPLAY_WINDOW);
    rp_cfgx_key(lp, "%s.mac_lockout", p);
    def_u32(x, lp, "failures", &d->mac_lockout.failures, RP_DEF_MAC_LOCKOUT_FAILS);
    def_u32(x, lp, "window_s", &d->mac_lockout.window_s, RP_DEF_MAC_LOCKOUT_WINDOW);
    default_upstream_path(x, cfg, &d->upstream_path);
    def_u32(x, p, "max_requests", &d->max_requests, RP_DEF_MAX_REQUESTS);
    rp_cfgx_key(lp, "%s.template", p);
    def_u32(x, lp, "max_validity_days", &d->tmpl.max_validity_days, RP_DEF_MAX_VALIDITY_DAYS);
    rp_cfgx_key(lp, "%s.template.bind", p);
    d->tmpl.bind_given = rp_cfgx_present(x, lp);
    rp_cfgx_key(lp, "%s.template.subject_attributes", p);
    d->tmpl.subject_attributes_given = rp_cfgx_present(x, lp);
    rp_cfgx_key(lp, "%s.rr_reasons", p);
    d->rr_reasons_given = rp_cfgx_present(x, lp);
    rp_cfgx_key(lp, "%s.anchor_names", p);
    if (!rp_cfgx_present(x, lp))
        default_anchor_names(x, d);
    struct rp_cfg_limit *lim[] = {&d->limits.global, &d->limits.domain, &d->limits.per_ip,
                                  &d->limits.per_device};
    const char *names[] = {"global", "domain", "per_ip", "per_device"};
    for (size_t k = 0; k < CYAML_ARRAY_LEN(lim); k++) {
        rp_cfgx_key(lp, "%s.limits.%s", p, names[k]);
        defaults_limit(x, lp, lim[k]);
    }
    parse_renewal(x, p, &d->renewal);
}

static void apply_defaults(struct rp_cfgx *x, struct rp_config *cfg)
{
    def_u32(x, "", "loops", &cfg->loops, RP_DEF_LOOPS);
    def_u32(x, "", "workers", &cfg->workers, online_cpus());
    def_u32(x, "", "worker_queue", &cfg->worker_queue, RP_DEF_WORKER_QUEUE);
    def_u32(x, "", "worker_queue_ms", &cfg->worker_queue_ms, RP_DEF_WORKER_QUEUE_MS);
    def_u32(x, "", "shutdown_grace_s", &cfg->shutdown_grace_s, RP_DEF_SHUTDOWN_GRACE);
    def_str(x, &cfg->log_level, RP_DEF_LOG_LEVEL);

    for (unsigned i = 0; i < cfg->listeners_count; i++)
        if (!cfg->listeners[i].tls_off)
            def_str(x, &cfg->listeners[i].tls.min_version, RP_DEF_TLS_MIN_VERSION);

    struct rp_cfg_http *h = &cfg->http;
    def_u32(x, "http", "max_header_bytes", &h->max_header_bytes, RP_DEF_MAX_HEADER_BYTES);
    def_u32(x, "http", "max_body_bytes", &h->max_body_bytes, RP_DEF_MAX_BODY_BYTES);
    def_u32(x, "http", "handshake_timeout_ms", &h->handshake_timeout_ms, RP_DEF_HANDSHAKE_TIMEOUT);
    def_u32(x, "http", "header_timeout_ms", &h->header_timeout_ms, RP_DEF_HEADER_TIMEOUT);
    def_u32(x, "http", "body_timeout_ms", &h->body_timeout_ms, RP_DEF_BODY_TIMEOUT);
    def_u32(x, "http", "idle_timeout_ms", &h->idle_timeout_ms, RP_DEF_IDLE_TIMEOUT);
    def_u32(x, "http", "max_connections", &h->max_connections, RP_DEF_MAX_CONNECTIONS);
    def_u32(x, "http", "max_connections_per_ip", &h->max_connections_per_ip,
            RP_DEF_MAX_CONNS_PER_IP);
    def_u32(x, "http", "max_handshakes", &h->max_handshakes, RP_DEF_MAX_HANDSHAKES);
    def_u32(x, "http", "max_unsent_bytes", &h->max_unsent_bytes, RP_DEF_MAX_UNSENT_BYTES);

    struct rp_cfg_upstream *u = &cfg->upstream;
    def_u32(x, "upstream", "timeout_ms", &u->timeout_ms, RP_DEF_UPSTREAM_TIMEOUT);
    def_u32(x, "upstream", "connect_timeout_ms", &u->connect_timeout_ms, RP_DEF_UPSTREAM_CONNECT);
    def_u32(x, "upstream", "max_connections", &u->max_connections, RP_DEF_UPSTREAM_MAX_CONNS);
    def_u32(x, "upstream", "max_queue", &u->max_queue, RP_DEF_UPSTREAM_QUEUE);
    if (!rp_cfgx_present(x, "upstream.keep_alive"))
        u->keep_alive = true;
    defaults_limit(x, "upstream.rate", &u->rate);
    struct rp_cfg_delayed *dd = &u->delayed_delivery;
    def_u32(x, "upstream.delayed_delivery", "max_wait_s", &dd->max_wait_s, RP_DEF_DD_MAX_WAIT);
    def_u32(x, "upstream.delayed_delivery", "check_after_s", &dd->check_after_s,
            RP_DEF_DD_CHECK_AFTER);
    def_u32(x, "upstream.delayed_delivery", "check_after_jitter_s", &dd->check_after_jitter_s,
            RP_DEF_DD_CHECK_JITTER);
    def_u32(x, "upstream.delayed_delivery", "max_waiting", &dd->max_waiting, RP_DEF_DD_MAX_WAITING);

    for (unsigned i = 0; i < cfg->domains_count; i++)
        defaults_domain(x, cfg, i);

    if (cfg->redis) {
        def_u32(x, "redis", "timeout_ms", &cfg->redis->timeout_ms, RP_DEF_REDIS_TIMEOUT);
        def_str(x, &cfg->redis->key_prefix, RP_DEF_REDIS_KEY_PREFIX);
    }

    struct rp_cfg_validation *v = cfg->validation;
    if (v) {
        def_str(x, &v->path, RP_DEF_OCSP_PATH);
        def_u32(x, "validation", "timeout_ms", &v->timeout_ms, RP_DEF_OCSP_TIMEOUT);
        def_u32(x, "validation.cache", "max_entries", &v->cache.max_entries,
                RP_DEF_OCSP_CACHE_ENTRIES);
        def_u32(x, "validation.cache", "max_age_s", &v->cache.max_age_s, RP_DEF_OCSP_CACHE_MAX_AGE);
        def_u32(x, "validation.per_ip", "rate", &v->per_ip.rate, RP_DEF_OCSP_PER_IP_RATE);
        def_u32(x, "validation.per_ip", "burst", &v->per_ip.burst,
                rp_cfgx_present(x, "validation.per_ip.rate") ? v->per_ip.rate
                                                             : RP_DEF_OCSP_PER_IP_BURST);
        defaults_limit(x, "validation.global", &v->global);
    }
}

/* ------------------------------------------------------------- public API */

static void cfgx_release(struct rp_cfgx *x)
{
    for (size_t i = 0; i < x->n_ents; i++)
        free(x->ents[i].path);
    free(x->ents);
}

int rp_config_load_opts(const char *path, struct rp_config **out, FILE *errs, unsigned flags)
{
    struct rp_cfgx x = {.file = path, .errs = errs, .flags = flags};
    struct rp_config *cfg = NULL;
    size_t len = 0;
    int rc = RP_E_CONFIG;

    *out = NULL;
    char *text = read_file(&x, path, &len);
    if (!text)
        goto out;
    cfg = parse(&x, text, len);
    free(text);
    if (!cfg)
        goto out;
    cfg->source = rp_cfgx_strdup(&x, path);
    mark_tls_off(&x, cfg);
    resolve_paths(&x, cfg);
    rp_cfgx_apply_env(&x, cfg);
    apply_defaults(&x, cfg);
    if (x.oom)
        goto out;
    rp_cfgx_check(&x, cfg);
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
    cfgx_release(&x);
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
        .mem_fn = cyaml_mem_fn,
        .log_level = CYAML_LOG_ERROR,
    };
    free(cfg->source); /* not in the schema: cyaml_free does not know it */
    if (cfg->ra.pkcs11.pin) {
        explicit_bzero(cfg->ra.pkcs11.pin, strlen(cfg->ra.pkcs11.pin));
        free(cfg->ra.pkcs11.pin);
    }
    cyaml_free(&ccfg, &top_schema, cfg, 0);
}

const char *rp_config_domain_path(const struct rp_cfg_domain *d, char *buf, unsigned cap)
{
    int n = snprintf(buf, cap, "%s%s", RP_CFG_DOMAIN_PREFIX, d->name ? d->name : "");
    return n >= 0 && (unsigned)n < cap ? buf : NULL;
}
