/* Semantic checks on a parsed configuration: everything the schema cannot say (ranges,
 * addresses, URLs, names, uniqueness, files that must exist). Every check runs, so one
 * `--check-config` shows every problem. */
#include "config_internal.h"
#include "raproxy/err.h"
#include "raproxy/p11uri.h"
#include "raproxy/pattern.h"
#include "raproxy/url.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER_BYTES_MIN 1024u
#define MAX_HEADER_BYTES_MAX (1u << 20)
#define MAX_BODY_BYTES_MAX   (64u << 20)
#define RSA_MIN_BITS_MIN     1024u
#define RSA_MIN_BITS_MAX     16384u
#define CLOCK_SKEW_MAX_S     86400u
#define REPLAY_WINDOW_MAX_S  (30u * 86400u)
/* PBM/PBMAC1 iterations an attacker may make the RA hash per request (RFC 9481 §6.1.1
 * leaves the count to the sender): a MAC check costs at most this many hash blocks. */
#define PBM_MAX_ITER_MAX         1000000u
#define MAC_LOCKOUT_FAILS_MAX    1000u
#define MAC_LOCKOUT_WINDOW_MAX_S 86400u
#define SHUTDOWN_GRACE_MAX_S     3600u
#define MAX_UNSENT_BYTES_MIN     1024u
#define MAX_UNSENT_BYTES_MAX     (64u << 20)
#define WORKER_QUEUE_MS_MAX      600000u

/* RFC 9810 PKIBody choice names, as written in configs and logs. */
static const char *const body_names[] = {
    "ir",     "ip",      "cr",     "cp",   "p10cr", "popdecc", "popdecr",  "kur",     "kup",
    "krr",    "krp",     "rr",     "rp",   "ccr",   "ccp",     "ckuann",   "cann",    "rann",
    "crlann", "pkiconf", "nested", "genm", "genp",  "error",   "certConf", "pollReq", "pollRep",
};

static const char *const algorithm_names[] = {
    "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519", "rsa-pkcs1", "rsa-pss",
};

static const char *const log_levels[] = {"debug", "info", "warn", "error"};

/* Bodies a device never sends: answers, announcements, and popdecr (raproxy accepts only
 * signature proof of possession, so no POP challenge is ever answered through it). */
static const char *const not_from_devices[] = {
    "ip",      "cp",      "kup",     "krp",    "rp",   "ccp",  "genp",   "pollRep",
    "pkiconf", "popdecc", "popdecr", "ckuann", "cann", "rann", "crlann",
};

static const char *const subject_labels[] = {RP_PATTERN_LABELS};
static const char *const san_type_names[] = {"email", "dns", "uri", "ip", "rid", "dirName"};
static const char *const key_usage_names[] = {
    "digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment",
    "keyAgreement",     "encipherOnly",   "decipherOnly"};
static const char *const eku_names[] = {"serverAuth",      "clientAuth",   "codeSigning",
                                        "emailProtection", "timeStamping", "OCSPSigning"};
static const char *const device_reasons[] = {
    "unspecified", "keyCompromise",        "cACompromise",       "affiliationChanged",
    "superseded",  "cessationOfOperation", "privilegeWithdrawn", "aACompromise"};
static const char *const admin_reasons[] = {"certificateHold", "removeFromCRL"};
static const char *const san_prefixes[] = {"dns:", "uri:", "email:"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int in_set(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, set[i]) == 0)
            return 1;
    return 0;
}

/* ---------------------------------------------------------- addresses and URLs */

int rp_config_split_address(const char *addr, char *host, unsigned host_cap, uint16_t *port)
{
    if (!addr || !host || !port)
        return RP_E_CONFIG;
    const char *colon = strrchr(addr, ':');
    /* the port is mandatory for a listener */
    if (!colon || (addr[0] == '[' && colon[-1] != ']'))
        return RP_E_CONFIG;
    uint16_t p = 0;
    if (rp_url_authority_parse(addr, strlen(addr), host, host_cap, &p) != RP_OK || p == 0)
        return RP_E_CONFIG;
    /* listeners bind: a literal address, not a name to resolve */
    unsigned char a[sizeof(struct in6_addr)];
    if (inet_pton(addr[0] == '[' ? AF_INET6 : AF_INET, host, a) != 1)
        return RP_E_CONFIG;
    *port = p;
    return 0;
}

/* ------------------------------------------------------------- generic checks */

static void check_file(struct core_cfg *x, const char *path, const char *file)
{
    struct stat st;
    if (!file || (x->flags & RP_CONFIG_NO_FILE_CHECKS))
        return;
    if (stat(file, &st) != 0)
        core_cfg_problem(x, path, "file not readable: %s (%s)", file, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        core_cfg_problem(x, path, "file not readable: %s (not a regular file)", file);
    else if (access(file, R_OK) != 0)
        core_cfg_problem(x, path, "file not readable: %s (%s)", file, strerror(errno));
}

static void check_files(struct core_cfg *x, const char *base, const char *key, char *const *v,
                        unsigned n)
{
    char p[RP_CFGX_PATH_MAX];
    for (unsigned i = 0; i < n; i++) {
        core_cfg_key(p, "%s.%s[%u]", base, key, i);
        check_file(x, p, v[i]);
    }
}

/* A private key setting: a PEM file, or a PKCS#11 URI whose module and PIN are known.
 * p11_base is where p11 sits in the file ("ra.pkcs11"). */
static void check_key(struct core_cfg *x, const char *path, const char *key,
                      const struct rp_cfg_pkcs11 *p11, const char *p11_base)
{
    char p[RP_CFGX_PATH_MAX];
    if (!key)
        return;
    if (!rp_p11_is_uri(key)) {
        check_file(x, path, key);
        return;
    }
    struct rp_p11_uri u;
    const char *why = NULL;
    if (rp_p11_uri_parse(key, &u, &why) != RP_OK) {
        core_cfg_problem(x, path, "malformed PKCS#11 URI: %s", why);
        return;
    }
    core_cfg_key(p, "%s.module", p11_base);
    if (!p11->module && !u.module_path[0])
        core_cfg_problem(x, p, "required with a pkcs11: key (or module-path in the URI)");
    check_file(x, p, p11->module ? p11->module : u.module_path[0] ? u.module_path : NULL);
    core_cfg_key(p, "%s.pin_file", p11_base);
    check_file(x, p, p11->pin_file);
    if (!p11->pin && !p11->pin_file && !u.pin_source[0] && !u.pin_value[0])
        core_cfg_problem(x, p,
                         "required with a pkcs11: key: the token's user PIN (or RAPROXY_RA_PIN, "
                         "or pin-source in the URI)");
    if (u.pin_source[0])
        check_file(x, path,
                   strncmp(u.pin_source, "file:", 5) == 0 ? u.pin_source + 5 : u.pin_source);
    explicit_bzero(u.pin_value, sizeof u.pin_value);
}

static bool pkcs11_given(const struct rp_cfg_pkcs11 *p)
{
    return p->module || p->pin_file;
}

static void check_range(struct core_cfg *x, const char *path, uint32_t v, uint32_t lo, uint32_t hi)
{
    if (v < lo || v > hi)
        core_cfg_problem(x, path, "must be %u..%u, got %u", lo, hi, v);
}

/* ------------------------------------------------------------------ sections */

static void check_top(struct core_cfg *x, const struct rp_config *cfg)
{
    check_range(x, "loops", cfg->loops, 1, RP_CFG_LOOPS_MAX);
    check_range(x, "workers", cfg->workers, 1, RP_CFG_WORKERS_MAX);
    check_range(x, "worker_queue", cfg->worker_queue, 1, UINT32_MAX);
    check_range(x, "worker_queue_ms", cfg->worker_queue_ms, 1, WORKER_QUEUE_MS_MAX);
    check_range(x, "shutdown_grace_s", cfg->shutdown_grace_s, 0, SHUTDOWN_GRACE_MAX_S);
    if (!in_set(cfg->log_level, log_levels, COUNT(log_levels)))
        core_cfg_problem(x, "log_level", "must be one of debug|info|warn|error, got '%s'",
                         cfg->log_level);
    if (cfg->default_path) {
        if (!rp_url_path_ok(cfg->default_path))
            core_cfg_problem(x, "default_path", "must be a URL path starting with '/', got '%s'",
                             cfg->default_path);
    }
}

static void check_tls(struct core_cfg *x, const char *base, const struct rp_cfg_listener *l,
                      const struct rp_config *cfg)
{
    char p[RP_CFGX_PATH_MAX];
    const struct rp_cfg_tls *t = &l->tls;
    core_cfg_key(p, "%s.tls", base);
    if (!core_cfg_present(x, p) && !t->cert && !t->key) {
        core_cfg_problem(x, p, "required: a mapping with cert and key, or `off` for plain HTTP");
        return;
    }
    core_cfg_key(p, "%s.tls.cert", base);
    if (!t->cert)
        core_cfg_problem(x, p, "required (or `tls: off` for plain HTTP)");
    check_file(x, p, t->cert);
    core_cfg_key(p, "%s.tls.key", base);
    if (!t->key)
        core_cfg_problem(x, p, "required (or `tls: off` for plain HTTP)");
    char p11[RP_CFGX_PATH_MAX];
    core_cfg_key(p11, "%s.tls.pkcs11", base);
    bool own = pkcs11_given(&t->pkcs11);
    check_key(x, p, t->key, own ? &t->pkcs11 : &cfg->ra.pkcs11, own ? p11 : "ra.pkcs11");
    core_cfg_key(p, "%s.tls.client_ca", base);
    check_file(x, p, t->client_ca);
    if (t->client_cert_required && !t->client_ca) {
        core_cfg_key(p, "%s.tls.client_cert_required", base);
        core_cfg_problem(x, p, "needs client_ca to verify client certificates against");
    }
    core_cfg_key(p, "%s.tls.min_version", base);
    if (t->min_version && strcmp(t->min_version, "1.2") != 0 && strcmp(t->min_version, "1.3") != 0)
        core_cfg_problem(x, p, "must be \"1.2\" or \"1.3\", got '%s'", t->min_version);
}

static void check_address(struct core_cfg *x, const char *path, const char *addr)
{
    char host[INET6_ADDRSTRLEN];
    uint16_t port;
    if (rp_config_split_address(addr, host, sizeof host, &port) != 0)
        core_cfg_problem(x, path, "must be IPv4:port or [IPv6]:port with port 1..65535, got '%s'",
                         addr);
}

static void check_listeners(struct core_cfg *x, const struct rp_config *cfg)
{
    if (cfg->listeners_count == 0)
        core_cfg_problem(x, "listeners", "at least one listener is required");
    for (unsigned i = 0; i < cfg->listeners_count; i++) {
        const struct rp_cfg_listener *l = &cfg->listeners[i];
        char base[RP_CFGX_PATH_MAX], p[RP_CFGX_PATH_MAX];
        core_cfg_key(base, "listeners[%u]", i);
        core_cfg_key(p, "%s.address", base);
        if (!l->address) {
            core_cfg_problem(x, p, "required");
        } else {
            check_address(x, p, l->address);
            for (unsigned j = 0; j < i; j++)
                if (cfg->listeners[j].address && strcmp(cfg->listeners[j].address, l->address) == 0)
                    core_cfg_problem(x, p, "same address as listeners[%u]", j);
        }
        if (!l->tls_off)
            check_tls(x, base, l, cfg);
    }
}

static void check_http(struct core_cfg *x, const struct rp_cfg_http *h)
{
    check_range(x, "http.max_header_bytes", h->max_header_bytes, MAX_HEADER_BYTES_MIN,
                MAX_HEADER_BYTES_MAX);
    check_range(x, "http.max_body_bytes", h->max_body_bytes, 1, MAX_BODY_BYTES_MAX);
    check_range(x, "http.handshake_timeout_ms", h->handshake_timeout_ms, 1, UINT32_MAX);
    check_range(x, "http.header_timeout_ms", h->header_timeout_ms, 1, UINT32_MAX);
    check_range(x, "http.body_timeout_ms", h->body_timeout_ms, 1, UINT32_MAX);
    check_range(x, "http.idle_timeout_ms", h->idle_timeout_ms, 1, UINT32_MAX);
    check_range(x, "http.max_connections", h->max_connections, 1, UINT32_MAX);
    check_range(x, "http.max_connections_per_ip", h->max_connections_per_ip, 0, UINT32_MAX);
    check_range(x, "http.max_handshakes", h->max_handshakes, 1, UINT32_MAX);
    check_range(x, "http.max_unsent_bytes", h->max_unsent_bytes, MAX_UNSENT_BYTES_MIN,
                MAX_UNSENT_BYTES_MAX);
}

/* Delayed delivery: a request waits at most a week; a poll interval of an hour is the
 * most a device should be told; ten million requests waiting is a fleet's worth. */
#define DD_MAX_WAIT_MAX_S    (7u * 86400u)
#define DD_CHECK_AFTER_MAX_S 3600u
#define DD_MAX_WAITING_MAX   (10u * 1000u * 1000u)

static void check_limit(struct core_cfg *x, const char *base, const struct rp_cfg_limit *l);

static void check_upstream(struct core_cfg *x, const struct rp_cfg_upstream *u)
{
    struct rp_http_url url;
    if (!u->url) {
        core_cfg_problem(x, "upstream.url", "required: the CA's CMP URL");
        return;
    }
    if (rp_http_url_parse(u->url, &url) != RP_OK) {
        core_cfg_problem(x, "upstream.url",
                         "must be http://host[:port]/path or https://…, got '%s'", u->url);
        return;
    }
    if (url.tls && !u->ca)
        core_cfg_problem(x, "upstream.ca", "required with an https:// upstream");
    if (!url.tls && (u->ca || u->client_cert || u->client_key))
        core_cfg_problem(x,
                         u->ca            ? "upstream.ca"
                         : u->client_cert ? "upstream.client_cert"
                                          : "upstream.client_key",
                         "only meaningful with an https:// upstream");
    if (!u->client_cert != !u->client_key)
        core_cfg_problem(x, u->client_cert ? "upstream.client_cert" : "upstream.client_key",
                         "client_cert and client_key go together");
    check_file(x, "upstream.ca", u->ca);
    check_file(x, "upstream.client_cert", u->client_cert);
    check_file(x, "upstream.client_key", u->client_key);
    check_file(x, "upstream.ca_trust", u->ca_trust);
    if (u->ca_signers_count && !u->ca_trust)
        core_cfg_problem(x, "upstream.ca_signers", "needs upstream.ca_trust (their anchors)");
    for (unsigned i = 0; i < u->ca_signers_count; i++) {
        char p[RP_CFGX_PATH_MAX];
        core_cfg_key(p, "upstream.ca_signers[%u]", i);
        if (!u->ca_signers[i] || !strchr(u->ca_signers[i], '='))
            core_cfg_problem(x, p, "a subject such as \"O=Operator, CN=Issuing CA\"");
    }
    check_range(x, "upstream.timeout_ms", u->timeout_ms, 1, UINT32_MAX);
    check_range(x, "upstream.connect_timeout_ms", u->connect_timeout_ms, 1, UINT32_MAX);
    check_range(x, "upstream.max_connections", u->max_connections, 1, UINT32_MAX);
    check_limit(x, "upstream.rate", &u->rate);
    const struct rp_cfg_delayed *dd = &u->delayed_delivery;
    check_range(x, "upstream.delayed_delivery.max_wait_s", dd->max_wait_s, 1, DD_MAX_WAIT_MAX_S);
    check_range(x, "upstream.delayed_delivery.check_after_s", dd->check_after_s, 0,
                DD_CHECK_AFTER_MAX_S);
    check_range(x, "upstream.delayed_delivery.check_after_jitter_s", dd->check_after_jitter_s, 0,
                DD_CHECK_AFTER_MAX_S);
    check_range(x, "upstream.delayed_delivery.max_waiting", dd->max_waiting, 1, DD_MAX_WAITING_MAX);
    uint64_t poll_s = (uint64_t)dd->check_after_s + dd->check_after_jitter_s;
    if (poll_s > RP_DD_ANSWER_KEEP_S / RP_DD_CHECK_AFTER_SHARE)
        core_cfg_problem(x, "upstream.delayed_delivery.check_after_s",
                         "check_after_s + check_after_jitter_s must be at most %u (a third of the "
                         "%u s the CA's answer waits for the device's poll), got %llu",
                         RP_DD_ANSWER_KEEP_S / RP_DD_CHECK_AFTER_SHARE, RP_DD_ANSWER_KEEP_S,
                         (unsigned long long)poll_s);
}

static void check_ra(struct core_cfg *x, const struct rp_config *cfg)
{
    if (cfg->domains_count > 0) {
        if (!cfg->ra.cert)
            core_cfg_problem(x, "ra.cert", "required: domains forward and sign errors as the RA");
        if (!cfg->ra.key)
            core_cfg_problem(x, "ra.key", "required: domains forward and sign errors as the RA");
    }
    check_file(x, "ra.cert", cfg->ra.cert);
    check_key(x, "ra.key", cfg->ra.key, &cfg->ra.pkcs11, "ra.pkcs11");
    check_file(x, "ra.chain", cfg->ra.chain);
}

/* Redis keys are "<prefix><kind>:{<hash tag>}…": a brace in the prefix would become the
 * hash tag of every key (all on one Cluster slot) and the key builders refuse it. */
#define REDIS_KEY_PREFIX_MAX 64u

static void check_redis(struct core_cfg *x, const struct rp_cfg_redis *r)
{
    if (!r)
        return;
    struct rp_redis_url u;
    char shown[RP_REDIS_URL_MAX + 1];
    if (!r->url) {
        core_cfg_problem(x, "redis.url", "required when the redis section is present");
    } else if (rp_redis_url_parse(r->url, &u) != RP_OK) {
        rp_redis_url_redact(r->url, shown, sizeof shown);
        core_cfg_problem(x, "redis.url",
                         "must be redis://[[user]:pass@]host[:port][/db] or unix:/path, got '%s'",
                         shown);
    }
    check_range(x, "redis.timeout_ms", r->timeout_ms, 1, UINT32_MAX);
    const char *kp = r->key_prefix;
    if (kp && (strlen(kp) > REDIS_KEY_PREFIX_MAX || strpbrk(kp, "{} \t\r\n")))
        core_cfg_problem(x, "redis.key_prefix",
                         "must be at most %u characters, without braces or spaces, got '%s'",
                         REDIS_KEY_PREFIX_MAX, kp);
}

/* A bucket holds burst × (period / rate): beyond a year it is a mistake (and beyond what
 * the scripts' double-precision times keep exact). */
#define LIMIT_BUCKET_MAX_US (366ull * 86400ull * 1000000ull)

static void check_limit(struct core_cfg *x, const char *base, const struct rp_cfg_limit *l)
{
    char p[RP_CFGX_PATH_MAX];
    core_cfg_key(p, "%s.burst", base);
    if (l->rate > 0 && l->burst == 0)
        core_cfg_problem(x, p, "must be at least 1 when rate is set");
    if (l->rate == 0 && l->burst > 0)
        core_cfg_problem(x, p, "set without a rate");
    uint64_t interval = rp_cfg_limit_interval_us(l);
    if (interval && l->burst && interval > LIMIT_BUCKET_MAX_US / l->burst)
        core_cfg_problem(x, p, "%u requests at %u per %u s take more than a year to refill",
                         l->burst, l->rate, l->period_s ? l->period_s : RP_CFG_PER_S);
}

static void check_limits(struct core_cfg *x, const char *base, const struct rp_cfg_limits *l)
{
    const struct rp_cfg_limit *v[] = {&l->global, &l->domain, &l->per_ip, &l->per_device};
    const char *names[] = {"global", "domain", "per_ip", "per_device"};
    char p[RP_CFGX_PATH_MAX];
    for (size_t i = 0; i < COUNT(v); i++) {
        core_cfg_key(p, "%s.limits.%s", base, names[i]);
        check_limit(x, p, v[i]);
    }
}

#define OCSP_CACHE_ENTRIES_MAX (10u * 1000u * 1000u)
#define OCSP_MAX_AGE_MAX_S     (7u * 86400u)

static void check_validation(struct core_cfg *x, const struct rp_cfg_validation *v)
{
    struct rp_http_url url;
    if (!v)
        return;
    if (!v->url)
        core_cfg_problem(x, "validation.url", "required: the VA's OCSP URL");
    else if (rp_http_url_parse(v->url, &url) != RP_OK)
        core_cfg_problem(x, "validation.url",
                         "must be http://host[:port]/path or https://…, got '%s'", v->url);
    else if (url.tls && !v->ca)
        core_cfg_problem(x, "validation.ca", "required with an https:// VA");
    else if (!url.tls && v->ca)
        core_cfg_problem(x, "validation.ca", "only meaningful with an https:// VA");
    if (!v->responder_cert && v->trust_anchors_count == 0)
        core_cfg_problem(x, "validation",
                         "responder_cert or trust_anchors required: who may sign OCSP responses");
    check_file(x, "validation.ca", v->ca);
    check_file(x, "validation.responder_cert", v->responder_cert);
    check_files(x, "validation", "trust_anchors", v->trust_anchors, v->trust_anchors_count);
    if (v->path && !rp_url_path_ok(v->path))
        core_cfg_problem(x, "validation.path", "must be a URL path starting with '/', got '%s'",
                         v->path);
    check_range(x, "validation.cache.max_entries", v->cache.max_entries, 1, OCSP_CACHE_ENTRIES_MAX);
    check_range(x, "validation.cache.max_age_s", v->cache.max_age_s, 1, OCSP_MAX_AGE_MAX_S);
    check_range(x, "validation.timeout_ms", v->timeout_ms, 1, UINT32_MAX);
    check_limit(x, "validation.per_ip", &v->per_ip);
    check_limit(x, "validation.global", &v->global);
}

/* ------------------------------------------------------------------- domains */

static void check_names(struct core_cfg *x, const char *base, const char *key, char *const *v,
                        unsigned n, const char *const *set, size_t set_n, const char *what)
{
    char p[RP_CFGX_PATH_MAX];
    for (unsigned i = 0; i < n; i++) {
        core_cfg_key(p, "%s.%s[%u]", base, key, i);
        if (!in_set(v[i], set, set_n))
            core_cfg_problem(x, p, "'%s' is not %s", v[i], what);
    }
}

static int valid_domain_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RP_CFG_NAME_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return 0;
    return 1;
}

static void check_domain_auth(struct core_cfg *x, const char *base, const struct rp_config *cfg,
                              const struct rp_cfg_domain *d)
{
    char p[RP_CFGX_PATH_MAX];
    core_cfg_key(p, "%s.trust_anchors", base);
    if ((d->protection & RP_PROT_SIGNATURE) && d->trust_anchors_count == 0)
        core_cfg_problem(x, p, "required with signature protection");
    check_files(x, base, "trust_anchors", d->trust_anchors, d->trust_anchors_count);
    check_files(x, base, "intermediates", d->intermediates, d->intermediates_count);
    check_files(x, base, "crls", d->crls, d->crls_count);
    core_cfg_key(p, "%s.crl_stale", base);
    if (d->crl_stale == RP_CRL_STALE_WARN && d->crls_count == 0)
        core_cfg_problem(x, p, "only used with crls");
    check_files(x, base, "admins", d->admins, d->admins_count);
    check_names(x, base, "algorithms", d->algorithms, d->algorithms_count, algorithm_names,
                COUNT(algorithm_names),
                "an algorithm (ecdsa-p256 ecdsa-p384 ecdsa-p521 ed25519 rsa-pkcs1 rsa-pss)");
    core_cfg_key(p, "%s.rsa_min_bits", base);
    check_range(x, p, d->rsa_min_bits, RSA_MIN_BITS_MIN, RSA_MIN_BITS_MAX);
    core_cfg_key(p, "%s.mac_secrets", base);
    if ((d->protection & RP_PROT_MAC) && !d->mac_secrets)
        core_cfg_problem(x, p, "required with mac protection");
    check_file(x, p, d->mac_secrets);
    core_cfg_key(p, "%s.pbm_max_iterations", base);
    check_range(x, p, d->pbm_max_iterations, RP_CFG_PBM_MIN_ITERATIONS, PBM_MAX_ITER_MAX);
    core_cfg_key(p, "%s.mac_lockout.failures", base);
    check_range(x, p, d->mac_lockout.failures, 1, MAC_LOCKOUT_FAILS_MAX);
    core_cfg_key(p, "%s.mac_lockout.window_s", base);
    check_range(x, p, d->mac_lockout.window_s, 1, MAC_LOCKOUT_WINDOW_MAX_S);
    core_cfg_key(p, "%s.allowlist", base);
    if (d->allowlist && strcmp(d->allowlist, "redis") == 0) {
        if (!cfg->redis)
            core_cfg_problem(x, p, "'redis' needs the redis section (or RAPROXY_REDIS_URL)");
    } else {
        check_file(x, p, d->allowlist);
    }
    core_cfg_key(p, "%s.allowlist_consume", base);
    if (d->allowlist_consume && !d->allowlist)
        core_cfg_problem(x, p, "needs an allowlist");
}

/* "1.3.6.1.5.5.7.3.2": at least two arcs, digits only, first arc 0..2. */
static int valid_dotted_oid(const char *s)
{
    size_t arcs = 0;
    for (const char *p = s; *p;) {
        if (!isdigit((unsigned char)*p) || (*p == '0' && isdigit((unsigned char)p[1])))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
        arcs++;
        if (*p == '.' && p[1])
            p++;
        else if (*p)
            return 0;
    }
    return arcs >= 2 && s[0] >= '0' && s[0] <= '2';
}

static int valid_anchor_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RP_CFG_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return 0;
    return 1;
}

/* Anchor names: one per trust anchor file; an explicit name may repeat (two roots of one
 * vendor, e.g. during a root rollover), a default one (the basename) may not: two vendors
 * whose root files share a basename would share one serial namespace. */
static void check_anchor_names(struct core_cfg *x, const char *base, const struct rp_cfg_domain *d)
{
    char p[RP_CFGX_PATH_MAX];
    core_cfg_key(p, "%s.anchor_names", base);
    if (!d->anchor_names_default && d->anchor_names_count != d->trust_anchors_count) {
        core_cfg_problem(x, p, "needs one name per trust_anchors file (%u), got %u",
                         d->trust_anchors_count, d->anchor_names_count);
        return;
    }
    for (unsigned i = 0; i < d->anchor_names_count; i++) {
        const char *n = d->anchor_names[i];
        if (d->anchor_names_default)
            core_cfg_key(p, "%s.trust_anchors[%u]", base, i);
        else
            core_cfg_key(p, "%s.anchor_names[%u]", base, i);
        if (!n || !valid_anchor_name(n) || strcmp(n, RP_CFG_MAC_ANCHOR_NAME) == 0) {
            core_cfg_problem(x, p,
                             "anchor name '%s' must be 1..%u characters of [A-Za-z0-9._-] and "
                             "not '" RP_CFG_MAC_ANCHOR_NAME "'%s",
                             n ? n : "", RP_CFG_NAME_MAX,
                             d->anchor_names_default ? " (set anchor_names)" : "");
            continue;
        }
        for (unsigned j = 0; d->anchor_names_default && j < i; j++)
            if (d->anchor_names[j] && strcmp(d->anchor_names[j], n) == 0)
                core_cfg_problem(x, p,
                                 "trust anchor files %u and %u are both named '%s' by their "
                                 "basename: set anchor_names (one name per vendor)",
                                 j, i, n);
    }
}

static void check_template(struct core_cfg *x, const char *base, const struct rp_cfg_domain *d)
{
    const struct rp_cfg_template *t = &d->tmpl;
    char p[RP_CFGX_PATH_MAX], tb[RP_CFGX_PATH_MAX];
    const char *why = NULL;
    core_cfg_key(tb, "%s.template", base);
    check_names(x, tb, "bind", t->bind, t->bind_count, subject_labels, COUNT(subject_labels),
                "a subject attribute label (C ST L O OU CN serialNumber …)");
    check_names(x, tb, "subject_attributes", t->subject_attributes, t->subject_attributes_count,
                subject_labels, COUNT(subject_labels),
                "a subject attribute label (C ST L O OU CN serialNumber …)");
    check_names(x, tb, "san_types", t->san_types, t->san_types_count, san_type_names,
                COUNT(san_type_names), "a GeneralName type (email dns uri ip rid dirName)");
    check_names(x, tb, "key_usage", t->key_usage, t->key_usage_count, key_usage_names,
                COUNT(key_usage_names),
                "an end-entity keyUsage (digitalSignature nonRepudiation keyEncipherment "
                "dataEncipherment keyAgreement encipherOnly decipherOnly)");
    for (unsigned i = 0; i < t->extended_key_usage_count; i++) {
        core_cfg_key(p, "%s.extended_key_usage[%u]", tb, i);
        const char *e = t->extended_key_usage[i];
        if (!in_set(e, eku_names, COUNT(eku_names)) && !valid_dotted_oid(e))
            core_cfg_problem(x, p,
                             "'%s' is neither a purpose name (serverAuth clientAuth codeSigning "
                             "emailProtection timeStamping OCSPSigning) nor a dotted OID",
                             e);
    }
    for (unsigned i = 0; i < t->cert_profiles_count; i++) {
        core_cfg_key(p, "%s.cert_profiles[%u]", tb, i);
        if (!t->cert_profiles[i][0])
            core_cfg_problem(x, p, "empty profile name");
    }
    core_cfg_key(p, "%s.subject", tb);
    struct rp_pattern_part parts[RP_PATTERN_MAX_PARTS];
    size_t n;
    if (t->subject && rp_pattern_subject_parse(t->subject, parts, COUNT(parts), &n, &why) != 0)
        core_cfg_problem(x, p, "%s in '%s'", why, t->subject);
    if (t->mode == RP_TEMPLATE_REWRITE && !t->subject)
        core_cfg_problem(x, p, "required with mode: rewrite (the subject the RA writes)");
    if (t->mode != RP_TEMPLATE_REWRITE && t->subject)
        core_cfg_problem(x, p, "only used with mode: rewrite");
    for (unsigned i = 0; i < t->san_count; i++) {
        core_cfg_key(p, "%s.san[%u]", tb, i);
        const char *v = t->san[i], *colon = strchr(v, ':');
        size_t k = 0;
        while (k < COUNT(san_prefixes) && strncmp(v, san_prefixes[k], strlen(san_prefixes[k])))
            k++;
        if (k == COUNT(san_prefixes) || !colon[1])
            core_cfg_problem(x, p, "'%s' must be dns:VALUE, uri:VALUE or email:VALUE", v);
        else if (rp_pattern_value_check(rp_view_str(colon + 1), &why) != 0)
            core_cfg_problem(x, p, "%s in '%s'", why, v);
    }
    core_cfg_key(p, "%s.mode", tb);
    if (t->mode == RP_TEMPLATE_REWRITE && d->forward != RP_FORWARD_REPROTECT)
        core_cfg_problem(x, p,
                         "rewrite needs forward: reprotect (a rewritten request is signed by the "
                         "RA; the device's own protection no longer fits it)");
    core_cfg_key(p, "%s.max_validity_days", tb);
    check_range(x, p, t->max_validity_days, 1, RP_CFG_VALIDITY_DAYS_MAX);
}

/* What a domain lets a device do beyond authentication (issue 15): bodies, identities,
 * templates, revocation reasons, allowlist consumption. */
static void check_domain_policy(struct core_cfg *x, const char *base, const struct rp_cfg_domain *d)
{
    char p[RP_CFGX_PATH_MAX];
    for (unsigned i = 0; i < d->allow_count; i++) {
        core_cfg_key(p, "%s.allow[%u]", base, i);
        if (in_set(d->allow[i], not_from_devices, COUNT(not_from_devices)))
            core_cfg_problem(x, p,
                             "'%s' is never sent by a device: raproxy has no policy for it and "
                             "does not forward it",
                             d->allow[i]);
    }
    check_anchor_names(x, base, d);
    check_template(x, base, d);
    core_cfg_key(p, "%s.max_requests", base);
    check_range(x, p, d->max_requests, 1, RP_CFG_MAX_REQUESTS_MAX);
    for (unsigned i = 0; i < d->rr_reasons_count; i++) {
        core_cfg_key(p, "%s.rr_reasons[%u]", base, i);
        if (in_set(d->rr_reasons[i], admin_reasons, COUNT(admin_reasons)))
            core_cfg_problem(x, p, "'%s' is for administrators only (admins may use every reason)",
                             d->rr_reasons[i]);
        else if (!in_set(d->rr_reasons[i], device_reasons, COUNT(device_reasons)))
            core_cfg_problem(x, p,
                             "'%s' is not a CRLReason (unspecified keyCompromise cACompromise "
                             "affiliationChanged superseded cessationOfOperation "
                             "privilegeWithdrawn aACompromise)",
                             d->rr_reasons[i]);
    }
    bool file_allowlist = d->allowlist && strcmp(d->allowlist, "redis") != 0;
    core_cfg_key(p, "%s.allowlist_state", base);
    if (d->allowlist_consume && file_allowlist && !d->allowlist_state)
        core_cfg_problem(x, p,
                         "required with allowlist_consume and a file allowlist: the claims of "
                         "enrolled serials must survive a restart (or use allowlist: redis)");
    if (d->allowlist_state && !(d->allowlist_consume && file_allowlist))
        core_cfg_problem(x, p, "only used with a file allowlist and allowlist_consume");
    if (d->allowlist_state && !(x->flags & RP_CONFIG_NO_FILE_CHECKS)) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", d->allowlist_state);
        char *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        if (access(slash ? dir : ".", W_OK) != 0 ||
            (access(d->allowlist_state, F_OK) == 0 && access(d->allowlist_state, W_OK) != 0))
            core_cfg_problem(x, p, "cannot write %s (%s)", d->allowlist_state, strerror(errno));
    }
}

/* pki_info: files answered by raproxy itself, so only with genm: local. */
static void check_pki_info(struct core_cfg *x, const char *base, const struct rp_cfg_domain *d)
{
    const struct rp_cfg_pki_info *pi = d->pki_info;
    char p[RP_CFGX_PATH_MAX];
    if (!pi)
        return;
    core_cfg_key(p, "%s.pki_info", base);
    if (d->genm != RP_GENM_LOCAL)
        core_cfg_problem(x, p, "only used with genm: local");
    core_cfg_key(p, "%s.pki_info.ca_certs", base);
    check_file(x, p, pi->ca_certs);
    core_cfg_key(p, "%s.pki_info.cert_req_template", base);
    check_file(x, p, pi->cert_req_template);
    const struct rp_cfg_root_ca_update *r = pi->root_ca_update;
    if (!r)
        return;
    core_cfg_key(p, "%s.pki_info.root_ca_update.new_with_new", base);
    if (!r->new_with_new)
        core_cfg_problem(x, p, "required: the new root CA certificate");
    check_file(x, p, r->new_with_new);
    core_cfg_key(p, "%s.pki_info.root_ca_update.new_with_old", base);
    check_file(x, p, r->new_with_old);
    core_cfg_key(p, "%s.pki_info.root_ca_update.old_with_new", base);
    check_file(x, p, r->old_with_new);
}

static void check_domain(struct core_cfg *x, const struct rp_config *cfg, unsigned i)
{
    const struct rp_cfg_domain *d = &cfg->domains[i];
    char base[RP_CFGX_PATH_MAX], p[RP_CFGX_PATH_MAX];
    core_cfg_key(base, "domains[%u]", i);
    core_cfg_key(p, "%s.name", base);
    if (!d->name) {
        core_cfg_problem(x, p, "required");
    } else if (!valid_domain_name(d->name)) {
        core_cfg_problem(x, p, "must be 1..%u characters of [A-Za-z0-9._-], got '%s'",
                         RP_CFG_NAME_MAX, d->name);
    } else {
        for (unsigned j = 0; j < i; j++)
            if (cfg->domains[j].name && strcmp(cfg->domains[j].name, d->name) == 0)
                core_cfg_problem(x, p, "duplicate domain name '%s' (also domains[%u])", d->name, j);
    }
    core_cfg_key(p, "%s.allow", base);
    if (d->allow_count == 0)
        core_cfg_problem(x, p, "required: the CMP body types this domain accepts");
    check_names(x, base, "allow", d->allow, d->allow_count, body_names, COUNT(body_names),
                "a CMP body type (ir cr p10cr kur rr certConf genm pollReq error …)");
    check_domain_auth(x, base, cfg, d);
    check_domain_policy(x, base, d);
    check_pki_info(x, base, d);
    core_cfg_key(p, "%s.max_clock_skew_s", base);
    check_range(x, p, d->max_clock_skew_s, 1, CLOCK_SKEW_MAX_S);
    core_cfg_key(p, "%s.replay_window_s", base);
    check_range(x, p, d->replay_window_s, 1, REPLAY_WINDOW_MAX_S);
    core_cfg_key(p, "%s.upstream_path", base);
    if (d->upstream_path && !rp_url_path_ok(d->upstream_path))
        core_cfg_problem(x, p, "must be a URL path starting with '/', got '%s'", d->upstream_path);
    check_limits(x, base, &d->limits);
}

/* Every URL path served, with who serves it, to find clashes. */
struct served {
    char path[RP_CFGX_PATH_MAX]; /* the URL path */
    char key[RP_CFGX_PATH_MAX];  /* the config key that declares it */
};

/* Two paths clash when routing takes them for one (rp_url_path_is: "/pkix" and "/pkix/"). */
static void add_served(struct core_cfg *x, struct served *v, size_t *n, const char *path,
                       const char *key)
{
    for (size_t i = 0; i < *n; i++) {
        if (rp_url_path_is(rp_view_str(v[i].path), path)) {
            core_cfg_problem(x, key, "duplicate path %s (already served by %s)", path, v[i].key);
            return;
        }
    }
    snprintf(v[*n].path, sizeof v[*n].path, "%s", path);
    snprintf(v[*n].key, sizeof v[*n].key, "%s", key);
    (*n)++;
}

/* A duplicate name is reported once, as a name, not again as a duplicate path. */
static int name_taken(const struct rp_config *cfg, unsigned i)
{
    for (unsigned j = 0; j < i; j++)
        if (cfg->domains[j].name && strcmp(cfg->domains[j].name, cfg->domains[i].name) == 0)
            return 1;
    return 0;
}

static void check_paths(struct core_cfg *x, const struct rp_config *cfg)
{
    size_t total = (cfg->default_path ? 1 : 0) + (cfg->validation ? 1 : 0), n = 0;
    for (unsigned i = 0; i < cfg->domains_count; i++)
        total += 1 + cfg->domains[i].paths_count + (cfg->domains[i].ocsp_path ? 1 : 0);
    struct served *v = calloc(total ? total : 1, sizeof *v);
    if (!v) {
        x->oom = 1;
        return;
    }
    for (unsigned i = 0; i < cfg->domains_count; i++) {
        const struct rp_cfg_domain *d = &cfg->domains[i];
        char key[RP_CFGX_PATH_MAX], path[RP_CFG_DOMAIN_PATH_MAX];
        core_cfg_key(key, "domains[%u].name", i);
        if (d->name && valid_domain_name(d->name) && !name_taken(cfg, i))
            add_served(x, v, &n, rp_config_domain_path(d, path, sizeof path), key);
        for (unsigned j = 0; j < d->paths_count; j++) {
            core_cfg_key(key, "domains[%u].paths[%u]", i, j);
            if (!rp_url_path_ok(d->paths[j]))
                core_cfg_problem(x, key, "must be a URL path starting with '/', got '%s'",
                                 d->paths[j]);
            else
                add_served(x, v, &n, d->paths[j], key);
        }
        if (d->ocsp_path) {
            core_cfg_key(key, "domains[%u].ocsp_path", i);
            if (!cfg->validation)
                core_cfg_problem(x, key, "needs the top-level validation section (the VA)");
            else if (!rp_url_path_ok(d->ocsp_path))
                core_cfg_problem(x, key, "must be a URL path starting with '/', got '%s'",
                                 d->ocsp_path);
            else
                add_served(x, v, &n, d->ocsp_path, key);
        }
    }
    if (cfg->default_path && rp_url_path_ok(cfg->default_path))
        add_served(x, v, &n, cfg->default_path, "default_path");
    if (cfg->validation && cfg->validation->path && rp_url_path_ok(cfg->validation->path))
        add_served(x, v, &n, cfg->validation->path, "validation.path");
    free(v);
}

void core_cfg_check(struct core_cfg *x, const struct rp_config *cfg)
{
    check_top(x, cfg);
    check_listeners(x, cfg);
    check_http(x, &cfg->http);
    check_upstream(x, &cfg->upstream);
    if (cfg->admin.address)
        check_address(x, "admin.address", cfg->admin.address);
    check_ra(x, cfg);
    for (unsigned i = 0; i < cfg->domains_count; i++)
        check_domain(x, cfg, i);
    check_paths(x, cfg);
    check_redis(x, cfg->redis);
    check_validation(x, cfg->validation);
}
