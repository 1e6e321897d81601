/* The configuration's schema: every key, its type (libcyaml field tables, which the YAML walk
 * and libcyaml both read), whether a string key names a file, and the defaults of keys a file
 * may leave out. A key's type, its file-ness and its default are all said here, next to each
 * other; config_post.c applies them by walking this schema over a loaded configuration
 * (core_cfg_visit), so no other list of keys needs keeping.
 *
 * Files. Every string key is in exactly one of file_keys (a file path: a relative one is made
 * relative to the configuration file's directory) and text_keys (anything else: names, URLs,
 * URL paths, addresses, patterns); test_config holds the schema to that, and to the naming
 * rule: a string key whose last word (after the last '_') is file, cert, certs, key, ca,
 * chain, crl, crls, module, anchors, intermediates, admins, secrets, state, allowlist,
 * template or trust is a file; one whose last word is path, paths, url or address never is. */
#include "config_internal.h"

#include <cyaml/cyaml.h>

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OPT             CYAML_FLAG_OPTIONAL
#define STR(key, st, m) CYAML_FIELD_STRING_PTR(key, OPT, st, m, 0, CYAML_UNLIMITED)
#define U32(key, st, m) CYAML_FIELD_UINT(key, OPT, st, m)

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
 * internal field period_s, which a file cannot name (RP_CFGX_LIMIT_PERIOD). */
static const cyaml_schema_field_t limit_fields[] = {
    [RP_CFGX_LIMIT_RATE] = U32("rate", struct rp_cfg_limit, rate),
    [RP_CFGX_LIMIT_BURST] = U32("burst", struct rp_cfg_limit, burst),
    [RP_CFGX_LIMIT_PERIOD] = U32("period_s", struct rp_cfg_limit, period_s),
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

const cyaml_schema_value_t core_cfg_top_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct rp_config, top_fields),
};

const cyaml_schema_field_t *const core_cfg_tls_fields = tls_fields;
const cyaml_schema_field_t *const core_cfg_limit_fields = limit_fields;

/* The walk tracks keys seen in a mapping with one bit per schema field. */
_Static_assert(CYAML_ARRAY_LEN(domain_fields) <= RP_CFGX_FIELDS_MAX, "domain schema too wide");
_Static_assert(CYAML_ARRAY_LEN(top_fields) <= RP_CFGX_FIELDS_MAX, "top schema too wide");

/* Memory for libcyaml is plain malloc/free, so the loader may replace strings (env
 * overrides, resolved paths) with its own allocations and cyaml_free() still frees them. */
void *core_cfg_cyaml_mem(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, size);
}

/* ------------------------------------------------------------ what strings are */

/* A string field, named by its table and key (a table such as pkcs11_fields serves in
 * several places; its keys mean the same in each). */
struct field_ref {
    const cyaml_schema_field_t *table;
    const char *key;
};

/* Strings that name files. A value that is a PKCS#11 URI ("pkcs11:…") or, for allowlist,
 * "redis" is not a file and stays as written. */
static const struct field_ref file_keys[] = {
    {pkcs11_fields, "module"},
    {pkcs11_fields, "pin_file"},
    {tls_fields, "cert"},
    {tls_fields, "key"},
    {tls_fields, "client_ca"},
    {upstream_fields, "ca"},
    {upstream_fields, "client_cert"},
    {upstream_fields, "client_key"},
    {upstream_fields, "ca_trust"},
    {ra_fields, "cert"},
    {ra_fields, "chain"},
    {ra_fields, "key"},
    {root_ca_update_fields, "new_with_new"},
    {root_ca_update_fields, "new_with_old"},
    {root_ca_update_fields, "old_with_new"},
    {pki_info_fields, "ca_certs"},
    {pki_info_fields, "cert_req_template"},
    {domain_fields, "trust_anchors"},
    {domain_fields, "intermediates"},
    {domain_fields, "crls"},
    {domain_fields, "mac_secrets"},
    {domain_fields, "allowlist"},
    {domain_fields, "allowlist_state"},
    {domain_fields, "admins"},
    {validation_fields, "ca"},
    {validation_fields, "responder_cert"},
    {validation_fields, "trust_anchors"},
};

/* Strings that are not files: taken as written. */
static const struct field_ref text_keys[] = {
    {tls_fields, "min_version"},
    {listener_fields, "address"},
    {upstream_fields, "url"},
    {upstream_fields, "ca_signers"},
    {admin_fields, "address"},
    {template_fields, "bind"},
    {template_fields, "subject_attributes"},
    {template_fields, "subject"},
    {template_fields, "san"},
    {template_fields, "san_types"},
    {template_fields, "key_usage"},
    {template_fields, "extended_key_usage"},
    {template_fields, "cert_profiles"},
    {renewal_fields, "min_age"},
    {renewal_fields, "min_remaining"},
    {domain_fields, "name"},
    {domain_fields, "paths"},
    {domain_fields, "anchor_names"},
    {domain_fields, "allow"},
    {domain_fields, "algorithms"},
    {domain_fields, "upstream_path"},
    {domain_fields, "ocsp_path"},
    {domain_fields, "rr_reasons"},
    {redis_fields, "url"},
    {redis_fields, "key_prefix"},
    {validation_fields, "url"},
    {validation_fields, "path"},
    {top_fields, "log_level"},
    {top_fields, "default_path"},
};

static bool listed(const struct field_ref *refs, size_t n, const cyaml_schema_field_t *table,
                   const cyaml_schema_field_t *f)
{
    for (size_t i = 0; i < n; i++)
        if (refs[i].table == table && strcmp(refs[i].key, f->key) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------ defaults */

static uint32_t online_cpus(const struct core_cfg *x, const struct core_cfg_field *f)
{
    (void)x, (void)f;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > (long)RP_CFG_WORKERS_MAX ? RP_CFG_WORKERS_MAX : (uint32_t)n;
}

/* A limit's burst: its rate (f is the burst of a struct rp_cfg_limit). */
static uint32_t burst_of_rate(const struct core_cfg *x, const struct core_cfg_field *f)
{
    (void)x;
    const struct rp_cfg_limit *l =
        (const void *)((const char *)f->value - offsetof(struct rp_cfg_limit, burst));
    return l->rate;
}

/* The OCSP relay's per-address burst: its rate when the file sets one, else its own default
 * (the rate's default is only half of it). */
static uint32_t ocsp_per_ip_burst(const struct core_cfg *x, const struct core_cfg_field *f)
{
    return core_cfg_present(x, "validation.per_ip.rate") ? burst_of_rate(x, f)
                                                         : RP_DEF_OCSP_PER_IP_BURST;
}

/* Key paths ("[]": every entry of a sequence) with the value they take when the file and the
 * environment leave them out. Sections behind a pointer (redis, validation) get theirs only
 * when present. Defaults that depend on more than one key are in config_post.c. */
const struct core_cfg_default core_cfg_defaults[] = {
    {"loops", .u32 = RP_DEF_LOOPS},
    {"workers", .fn = online_cpus},
    {"worker_queue", .u32 = RP_DEF_WORKER_QUEUE},
    {"worker_queue_ms", .u32 = RP_DEF_WORKER_QUEUE_MS},
    {"log_level", .str = RP_DEF_LOG_LEVEL},
    {"shutdown_grace_s", .u32 = RP_DEF_SHUTDOWN_GRACE},
    {"http.max_header_bytes", .u32 = RP_DEF_MAX_HEADER_BYTES},
    {"http.max_body_bytes", .u32 = RP_DEF_MAX_BODY_BYTES},
    {"http.handshake_timeout_ms", .u32 = RP_DEF_HANDSHAKE_TIMEOUT},
    {"http.header_timeout_ms", .u32 = RP_DEF_HEADER_TIMEOUT},
    {"http.body_timeout_ms", .u32 = RP_DEF_BODY_TIMEOUT},
    {"http.idle_timeout_ms", .u32 = RP_DEF_IDLE_TIMEOUT},
    {"http.max_connections", .u32 = RP_DEF_MAX_CONNECTIONS},
    {"http.max_connections_per_ip", .u32 = RP_DEF_MAX_CONNS_PER_IP},
    {"http.max_handshakes", .u32 = RP_DEF_MAX_HANDSHAKES},
    {"http.max_unsent_bytes", .u32 = RP_DEF_MAX_UNSENT_BYTES},
    {"upstream.timeout_ms", .u32 = RP_DEF_UPSTREAM_TIMEOUT},
    {"upstream.connect_timeout_ms", .u32 = RP_DEF_UPSTREAM_CONNECT},
    {"upstream.max_connections", .u32 = RP_DEF_UPSTREAM_MAX_CONNS},
    {"upstream.max_queue", .u32 = RP_DEF_UPSTREAM_QUEUE},
    {"upstream.keep_alive", .u32 = true},
    {"upstream.rate.burst", .fn = burst_of_rate},
    {"upstream.delayed_delivery.max_wait_s", .u32 = RP_DEF_DD_MAX_WAIT},
    {"upstream.delayed_delivery.check_after_s", .u32 = RP_DEF_DD_CHECK_AFTER},
    {"upstream.delayed_delivery.check_after_jitter_s", .u32 = RP_DEF_DD_CHECK_JITTER},
    {"upstream.delayed_delivery.max_waiting", .u32 = RP_DEF_DD_MAX_WAITING},
    {"domains[].protection", .u32 = RP_PROT_SIGNATURE},
    {"domains[].rsa_min_bits", .u32 = RP_DEF_RSA_MIN_BITS},
    {"domains[].pbm_max_iterations", .u32 = RP_DEF_PBM_MAX_ITER},
    {"domains[].template.max_validity_days", .u32 = RP_DEF_MAX_VALIDITY_DAYS},
    {"domains[].max_requests", .u32 = RP_DEF_MAX_REQUESTS},
    {"domains[].max_clock_skew_s", .u32 = RP_DEF_MAX_CLOCK_SKEW},
    {"domains[].require_message_time", .u32 = true},
    {"domains[].replay_window_s", .u32 = RP_DEF_REPLAY_WINDOW},
    {"domains[].mac_lockout.failures", .u32 = RP_DEF_MAC_LOCKOUT_FAILS},
    {"domains[].mac_lockout.window_s", .u32 = RP_DEF_MAC_LOCKOUT_WINDOW},
    {"domains[].limits.global.burst", .fn = burst_of_rate},
    {"domains[].limits.domain.burst", .fn = burst_of_rate},
    {"domains[].limits.per_ip.burst", .fn = burst_of_rate},
    {"domains[].limits.per_device.burst", .fn = burst_of_rate},
    {"redis.timeout_ms", .u32 = RP_DEF_REDIS_TIMEOUT},
    {"redis.key_prefix", .str = RP_DEF_REDIS_KEY_PREFIX},
    {"validation.path", .str = RP_DEF_OCSP_PATH},
    {"validation.cache.max_entries", .u32 = RP_DEF_OCSP_CACHE_ENTRIES},
    {"validation.cache.max_age_s", .u32 = RP_DEF_OCSP_CACHE_MAX_AGE},
    {"validation.timeout_ms", .u32 = RP_DEF_OCSP_TIMEOUT},
    {"validation.per_ip.rate", .u32 = RP_DEF_OCSP_PER_IP_RATE},
    {"validation.per_ip.burst", .fn = ocsp_per_ip_burst},
    {"validation.global.burst", .fn = burst_of_rate},
};
const size_t core_cfg_defaults_count = CYAML_ARRAY_LEN(core_cfg_defaults);

const struct core_cfg_default *core_cfg_default_of(const char *pattern)
{
    for (size_t i = 0; i < core_cfg_defaults_count; i++)
        if (strcmp(core_cfg_defaults[i].key, pattern) == 0)
            return &core_cfg_defaults[i];
    return NULL;
}

/* ------------------------------------------------------ walking schema and data */

struct visit {
    core_cfg_visit_fn *fn;
    void *ctx;
};

static enum core_cfg_kind kind_of(const cyaml_schema_value_t *v)
{
    switch (v->type) {
    case CYAML_STRING:
        return RP_CFGX_K_STRING;
    case CYAML_UINT:
        return RP_CFGX_K_UINT;
    case CYAML_BOOL:
        return RP_CFGX_K_BOOL;
    case CYAML_ENUM:
        return RP_CFGX_K_ENUM;
    case CYAML_MAPPING:
        return RP_CFGX_K_MAPPING;
    case CYAML_SEQUENCE:
        return v->sequence.entry->type == CYAML_STRING ? RP_CFGX_K_STRINGS : RP_CFGX_K_SEQUENCE;
    default:
        return RP_CFGX_K_OTHER;
    }
}

static size_t count_of(const uint8_t *base, const cyaml_schema_field_t *f)
{
    switch (f->count_size) {
    case sizeof(uint8_t):
        return *(const uint8_t *)(base + f->count_offset);
    case sizeof(uint16_t): {
        uint16_t n;
        memcpy(&n, base + f->count_offset, sizeof n);
        return n;
    }
    case sizeof(uint32_t): {
        uint32_t n;
        memcpy(&n, base + f->count_offset, sizeof n);
        return n;
    }
    default: {
        uint64_t n;
        memcpy(&n, base + f->count_offset, sizeof n);
        return (size_t)n;
    }
    }
}

static void visit_fields(const struct visit *v, const cyaml_schema_field_t *fields, uint8_t *base,
                         const char *path, const char *pattern);

/* A sequence's entries: strings are handed to the visitor, mappings walked. */
static void visit_sequence(const struct visit *v, const cyaml_schema_field_t *f, uint8_t *base,
                           struct core_cfg_field *info)
{
    const cyaml_schema_value_t *entry = f->value.sequence.entry;
    char path[RP_CFGX_PATH_MAX], pattern[RP_CFGX_PATH_MAX];
    const char *field_path = info->path;
    core_cfg_key(pattern, "%s[]", info->pattern);
    info->pattern = pattern;
    info->path = path;
    if (!base) { /* the schema alone: each field once */
        core_cfg_key(path, "%s[]", field_path);
        if (entry->type == CYAML_MAPPING)
            visit_fields(v, entry->mapping.fields, NULL, path, pattern);
        else
            v->fn(v->ctx, info);
        return;
    }
    uint8_t *items = *(uint8_t **)(base + f->data_offset);
    size_t n = items ? count_of(base, f) : 0;
    size_t stride = entry->flags & CYAML_FLAG_POINTER ? sizeof(void *) : entry->data_size;
    for (size_t i = 0; i < n; i++) {
        core_cfg_key(path, "%s[%zu]", field_path, i);
        if (entry->type == CYAML_MAPPING) {
            visit_fields(v, entry->mapping.fields, items + i * stride, path, pattern);
        } else {
            info->value = items + i * stride;
            v->fn(v->ctx, info);
        }
    }
}

static void visit_field(const struct visit *v, const cyaml_schema_field_t *fields,
                        const cyaml_schema_field_t *f, uint8_t *base, const char *path,
                        const char *pattern)
{
    char p[RP_CFGX_PATH_MAX], pat[RP_CFGX_PATH_MAX];
    core_cfg_join(p, path, ".", f->key);
    core_cfg_join(pat, pattern, ".", f->key);
    struct core_cfg_field info = {
        .key = f->key,
        .path = p,
        .pattern = pat,
        .kind = kind_of(&f->value),
        .file = listed(file_keys, CYAML_ARRAY_LEN(file_keys), fields, f),
        .text = listed(text_keys, CYAML_ARRAY_LEN(text_keys), fields, f),
        .size = f->value.data_size,
    };
    uint8_t *at = base ? base + f->data_offset : NULL;
    switch (f->value.type) {
    case CYAML_MAPPING:
        if (at && (f->value.flags & CYAML_FLAG_POINTER)) {
            at = *(uint8_t **)at;
            if (!at)
                return; /* a section the file does not have */
        }
        visit_fields(v, f->value.mapping.fields, at, p, pat);
        break;
    case CYAML_SEQUENCE:
        visit_sequence(v, f, base, &info);
        break;
    default:
        info.value = at;
        v->fn(v->ctx, &info);
    }
}

static void visit_fields(const struct visit *v, const cyaml_schema_field_t *fields, uint8_t *base,
                         const char *path, const char *pattern)
{
    for (const cyaml_schema_field_t *f = fields; f->key; f++)
        visit_field(v, fields, f, base, path, pattern);
}

void core_cfg_visit(struct rp_config *cfg, core_cfg_visit_fn *fn, void *ctx)
{
    const struct visit v = {.fn = fn, .ctx = ctx};
    visit_fields(&v, core_cfg_top_schema.mapping.fields, (uint8_t *)cfg, "", "");
}
