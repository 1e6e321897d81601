/* The parsed configuration: plain data, as read from YAML (libcyaml) with defaults applied
 * and environment overrides merged. Loading keys, anchors and certificates into a usable
 * snapshot happens in the layers that own them; this struct only carries paths and values.
 *
 * Sequences are a pointer plus a `<field>_count` (libcyaml's convention). Strings are
 * NUL-terminated and owned by the config; free everything with rp_config_free(). */
#ifndef RAPROXY_CONFIG_H
#define RAPROXY_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Defaults, one place. */
#define RP_DEF_MAX_HEADER_BYTES   8192u
#define RP_DEF_MAX_BODY_BYTES     65536u
#define RP_DEF_HANDSHAKE_TIMEOUT  10000u /* ms */
#define RP_DEF_HEADER_TIMEOUT     10000u
#define RP_DEF_BODY_TIMEOUT       10000u
#define RP_DEF_IDLE_TIMEOUT       60000u
#define RP_DEF_MAX_CONNECTIONS    100000u
#define RP_DEF_MAX_CONNS_PER_IP   64u
#define RP_DEF_MAX_HANDSHAKES     1024u /* per loop */
#define RP_DEF_MAX_UNSENT_BYTES   65536u
#define RP_DEF_WORKER_QUEUE_MS    500u
#define RP_DEF_UPSTREAM_TIMEOUT   30000u
#define RP_DEF_UPSTREAM_CONNECT   5000u
#define RP_DEF_UPSTREAM_MAX_CONNS 16u
#define RP_DEF_UPSTREAM_QUEUE     1024u
#define RP_DEF_DD_MAX_WAIT        3600u  /* s: a delayed request waits this long for the CA */
#define RP_DEF_DD_CHECK_AFTER     5u     /* s: pollRep checkAfter … */
#define RP_DEF_DD_CHECK_JITTER    5u     /* … plus up to this many seconds, at random */
#define RP_DEF_DD_MAX_WAITING     10000u /* requests waiting for the CA at once */
#define RP_DEF_SHUTDOWN_GRACE     25u    /* s */
#define RP_DEF_MAX_CLOCK_SKEW     300u   /* s */
#define RP_DEF_REDIS_TIMEOUT      200u   /* ms */
#define RP_DEF_WORKER_QUEUE       4096u
#define RP_DEF_PBM_MAX_ITER       100000u
#define RP_DEF_MAC_LOCKOUT_FAILS  5u     /* MAC failures per kid … */
#define RP_DEF_MAC_LOCKOUT_WINDOW 600u   /* … within this many seconds lock the kid out */
#define RP_DEF_REPLAY_WINDOW      86400u /* s: nonces of messages without messageTime */
#define RP_DEF_LOOPS              1u
#define RP_DEF_RSA_MIN_BITS       2048u
#define RP_DEF_LOG_LEVEL          "info"
#define RP_DEF_TLS_MIN_VERSION    "1.2"
#define RP_DEF_REDIS_KEY_PREFIX   "raproxy:"
#define RP_DEF_OCSP_PATH          "/ocsp"
#define RP_DEF_OCSP_CACHE_ENTRIES 10000u
#define RP_DEF_OCSP_CACHE_MAX_AGE 3600u /* s */
#define RP_DEF_OCSP_TIMEOUT       5000u /* ms */
#define RP_DEF_OCSP_PER_IP_RATE   50u   /* OCSP requests per second and client address */
#define RP_DEF_OCSP_PER_IP_BURST  100u
#define RP_DEF_MAX_REQUESTS       1u   /* CertReqMsg per ir/cr/kur, inner messages per nested */
#define RP_DEF_MAX_VALIDITY_DAYS  365u /* template.validity: keep */

/* Bounds checked by validation. */
#define RP_CFG_LOOPS_MAX          64u
#define RP_CFG_WORKERS_MAX        256u
#define RP_CFG_NAME_MAX           64u  /* domain name length */
#define RP_CFG_PBM_MIN_ITERATIONS 100u /* = RP_MAC_MIN_ITERATIONS (mac.h) */
#define RP_CFG_DOMAIN_PREFIX      "/.well-known/cmp/p/"
#define RP_CFG_DOMAIN_PATH_MAX    (sizeof RP_CFG_DOMAIN_PREFIX + RP_CFG_NAME_MAX)
#define RP_CFG_MAX_REQUESTS_MAX   256u   /* = RP_CMP_MAX_LIST */
#define RP_CFG_VALIDITY_DAYS_MAX  36500u /* a hundred years */
/* The anchor name of MAC identities in a domain whose anchors have several names. */
#define RP_CFG_MAC_ANCHOR_NAME "mac"

/* Where a key named by a PKCS#11 URI lives: the module and the user PIN. */
struct rp_cfg_pkcs11 {
    char *module;   /* path of the PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so) */
    char *pin_file; /* file whose first line is the user PIN (a mounted secret) */
    char *pin;      /* not in the file: RAPROXY_RA_PIN; wins over pin_file */
};

struct rp_cfg_tls {
    char *cert;                  /* PEM server (or client) certificate chain file */
    char *key;                   /* PEM private key file, or a PKCS#11 URI (pkcs11:…) */
    struct rp_cfg_pkcs11 pkcs11; /* for a pkcs11: key; default: ra.pkcs11 */
    char *client_ca;           /* optional: PEM CA file; enables client certificate verification */
    bool client_cert_required; /* with client_ca: refuse handshakes without a client cert */
    char *min_version;         /* "1.2" (default) or "1.3"; NULL when tls_off */
};

struct rp_cfg_listener {
    char *address; /* literal "a.b.c.d:port" or "[v6]:port" (see rp_config_split_address) */
    /* `tls: off` in YAML sets tls_off; otherwise tls must name cert and key. */
    bool tls_off;
    struct rp_cfg_tls tls;
};

struct rp_cfg_http {
    uint32_t max_header_bytes;
    uint32_t max_body_bytes;
    uint32_t handshake_timeout_ms;
    uint32_t header_timeout_ms;
    uint32_t body_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t max_connections;        /* per process; split evenly between loops */
    uint32_t max_connections_per_ip; /* per client address, all loops, at accept; 0 = no cap */
    uint32_t max_handshakes;         /* TLS handshakes in flight per loop */
    uint32_t max_unsent_bytes;       /* answers queued for a peer that does not read */
};

/* Seconds in each unit a rate may be written in: "N/s", "N/min", "N/h", "N/day". */
#define RP_CFG_PER_S   1u
#define RP_CFG_PER_MIN 60u
#define RP_CFG_PER_H   3600u
#define RP_CFG_PER_DAY 86400u

/* A GCRA limit: `rate` requests per `period_s` seconds, `burst` at once. */
struct rp_cfg_limit {
    uint32_t rate;     /* requests per period; 0 = unlimited */
    uint32_t burst;    /* bucket size; default = rate */
    uint32_t period_s; /* the unit of rate (RP_CFG_PER_*); 0 counts as 1 (per second) */
};

/* GCRA emission interval of a limit in microseconds (what the in-process limiter and the
 * Redis scripts take): period / rate, at least 1; 0 for an unlimited one. */
static inline uint64_t rp_cfg_limit_interval_us(const struct rp_cfg_limit *l)
{
    if (!l || l->rate == 0)
        return 0;
    uint64_t period_us = (uint64_t)(l->period_s ? l->period_s : RP_CFG_PER_S) * 1000000u;
    uint64_t t = period_us / l->rate;
    return t ? t : 1;
}

/* upstream.delayed_delivery (RFC 9483 §4.4): a verified request the CA cannot take now is
 * answered `waiting`, kept (in Redis when configured, else in process) and sent when the
 * CA has room; the device polls for the answer. */
/* The CA's answer to a delayed request waits this long (s) for the device's poll; checkAfter
 * plus its jitter stay within 1/RP_DD_CHECK_AFTER_SHARE of it, so that a device that misses a
 * poll or two still finds its answer and its transaction. */
#define RP_DD_ANSWER_KEEP_S     900u
#define RP_DD_CHECK_AFTER_SHARE 3u

struct rp_cfg_delayed {
    bool enabled;
    uint32_t max_wait_s;           /* a request not sent within this is dropped (systemUnavail) */
    uint32_t check_after_s;        /* pollRep checkAfter … */
    uint32_t check_after_jitter_s; /* … plus 0..this at random, so a fleet spreads out */
    uint32_t max_waiting;          /* requests held at once; beyond, systemUnavail */
};

struct rp_cfg_upstream {
    char *url; /* http://host:port/path or https://… */
    /* https only: CA file to verify the upstream server (required for https); optional client
     * cert/key for mutual TLS (both or neither) */
    char *ca;
    char *client_cert;
    char *client_key;
    uint32_t timeout_ms; /* whole request deadline */
    uint32_t connect_timeout_ms;
    uint32_t max_connections; /* per loop */
    uint32_t max_queue;       /* requests waiting for a connection, per loop */
    /* false: one request per connection ("Connection: close"), for CAs that announce
     * keep-alive but close after some answers (a request is never retried on a closed
     * connection, so such a CA would turn into 502s). Default true. */
    bool keep_alive;
    char *ca_trust;    /* optional: PEM CA certificates whose signature on an answer is accepted
                          (pinned), and the anchors for ca_signers */
    char **ca_signers; /* optional: subjects of CA signing certificates chaining to ca_trust */
    unsigned ca_signers_count;
    /* requests that open a transaction at the CA at once, all loops of the process (across
     * replicas with Redis); 0 = unlimited */
    uint32_t max_in_flight;
    struct rp_cfg_limit rate; /* the same requests per unit of time (shared through Redis) */
    struct rp_cfg_delayed delayed_delivery;
};

struct rp_cfg_admin {
    char *address; /* "127.0.0.1:9090"; NULL disables the admin listener */
};

/* How an RSA RA key signs (EC keys: ECDSA with the curve's hash). */
enum rp_rsa_signature { RP_RSA_SIG_PKCS1 = 0, RP_RSA_SIG_PSS };

struct rp_cfg_ra {
    char *cert;  /* PEM RA certificate */
    char *chain; /* optional PEM chain (intermediates) sent after the RA cert */
    char *key;   /* PEM RA private key, or a PKCS#11 URI (pkcs11:token=…;object=…) */
    struct rp_cfg_pkcs11 pkcs11;         /* module and PIN of a pkcs11: key */
    enum rp_rsa_signature rsa_signature; /* pkcs1 (default) or pss, SHA-256 */
};

struct rp_cfg_limits {
    struct rp_cfg_limit global;
    struct rp_cfg_limit domain;
    struct rp_cfg_limit per_ip;
    struct rp_cfg_limit per_device; /* after verification, by vendor serial */
};

enum rp_forward_mode { RP_FORWARD_REPROTECT = 0, RP_FORWARD_UNCHANGED, RP_FORWARD_NESTED };
enum rp_redis_failure { RP_REDIS_FAIL_OPEN = 0, RP_REDIS_FAIL_CLOSED };
enum rp_pop_mode { RP_POP_KEEP = 0, RP_POP_RA_VERIFIED };
enum rp_genm_mode { RP_GENM_FORWARD = 0, RP_GENM_LOCAL };
/* What a domain does when a configured CRL is unusable (stale, unreadable, wrongly signed) */
enum rp_crl_stale { RP_CRL_STALE_REFUSE = 0, RP_CRL_STALE_WARN };
enum rp_template_mode { RP_TEMPLATE_CHECK = 0, RP_TEMPLATE_REWRITE };
enum rp_validity_mode { RP_VALIDITY_DROP = 0, RP_VALIDITY_KEEP };
enum rp_keygen_mode { RP_KEYGEN_REFUSE = 0, RP_KEYGEN_ALLOW };

/* What a device may ask for in a certificate request (ir, cr, p10cr, kur), and how that
 * relates to who it is (README "Template policy"). Lists hold the names written in the
 * configuration; ra/policy.c compiles them per snapshot. */
struct rp_cfg_template {
    enum rp_template_mode mode; /* check (default) or rewrite */
    /* check: subject attributes that must be present and equal the authenticated
     * identity's (serialNumber: the identity's serial; others: its subject's). Default
     * [serialNumber] (bind_given false). */
    char **bind;
    unsigned bind_count;
    /* check: the attributes a requested subject may hold. Default C ST L O OU CN
     * serialNumber (subject_attributes_given false). */
    char **subject_attributes;
    unsigned subject_attributes_count;
    /* rewrite: the subject the RA writes, "C=DE, O=Operator, CN=Device {serial},
     * serialNumber={serial}" ({serial}, {cn}, {anchor} from the identity) */
    char *subject;
    /* SAN entries "dns:…", "uri:…", "email:…" with the same placeholders: rewrite writes
     * them; check accepts only these values (when any are given) */
    char **san;
    unsigned san_count;
    char **san_types; /* GeneralName types a device may request: email dns uri ip rid dirName */
    unsigned san_types_count;
    char **key_usage; /* keyUsage bits a device may request */
    unsigned key_usage_count;
    char **extended_key_usage; /* purposes a device may request: names or dotted OIDs */
    unsigned extended_key_usage_count;
    enum rp_validity_mode validity; /* drop (default) or keep within max_validity_days */
    uint32_t max_validity_days;
    char **cert_profiles; /* generalInfo certProfile values accepted */
    unsigned cert_profiles_count;
    bool kur_subject_change; /* kur may ask for another subject than its certificate's */
    bool bind_given, subject_attributes_given; /* set by the loader: key present */
};

/* MAC failures per senderKID that lock it out: after `failures` failed MACs within
 * `window_s` seconds (counted from the first), requests naming the kid are refused with
 * badMessageCheck without computing the MAC until the window ends. */
struct rp_cfg_mac_lockout {
    uint32_t failures; /* default 5 */
    uint32_t window_s; /* default 600 */
};

/* PKI information raproxy answers itself with `genm: local` (RFC 9483 §4.3). */
struct rp_cfg_root_ca_update {
    char *new_with_new; /* PEM: the new root CA certificate (required) */
    char *new_with_old; /* optional PEM: the new root's key certified with the old root key */
    char *old_with_new; /* optional PEM: the old root's key certified with the new root key */
};

struct rp_cfg_pki_info {
    char *ca_certs; /* PEM file of CA certificates (caCerts), in order */
    struct rp_cfg_root_ca_update *root_ca_update; /* NULL: rootCaKeyUpdate is forwarded */
    char *cert_req_template;                      /* DER CertReqTemplateContent (certReqTemplate) */
};

/* A span of a certificate's life: a duration ("30d", "12h", "90min", "3600s", "3600") or a
 * share of its validity period ("33%"). */
struct rp_cfg_span {
    bool set;
    uint32_t seconds; /* a duration */
    uint32_t pct;     /* 1..100: a share of the lifetime (then seconds is 0) */
};

/* Renewal window (kur): refused while the certificate being renewed is younger than
 * min_age or has more than min_remaining of its lifetime left. */
struct rp_cfg_renewal {
    char *min_age; /* as written; parsed into age */
    char *min_remaining;
    struct rp_cfg_span age, remaining;
};

/* Bits of rp_cfg_domain.protection */
#define RP_PROT_SIGNATURE 1u
#define RP_PROT_MAC       2u

struct rp_cfg_domain {
    char *name;   /* served at /.well-known/cmp/p/<name> */
    char **paths; /* extra paths served by this domain */
    unsigned paths_count;
    char **trust_anchors; /* PEM files */
    unsigned trust_anchors_count;
    /* the vendor each anchor file stands for, parallel to trust_anchors; the loader fills
     * in each file's basename without extension when the key is absent
     * (anchor_names_default). Identities are (anchor name, serial). */
    char **anchor_names;
    unsigned anchor_names_count;
    bool anchor_names_default;
    char **intermediates;
    unsigned intermediates_count;
    char **crls; /* PEM or DER files */
    unsigned crls_count;
    enum rp_crl_stale crl_stale;
    char **allow; /* CMP body type names: "ir", "cr", "p10cr", "kur", "rr", … */
    unsigned allow_count;
    uint32_t protection; /* RP_PROT_* bits; default signature */
    char **algorithms;   /* allowed: "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519",
                            "rsa-pkcs1", "rsa-pss"; empty = all of those */
    unsigned algorithms_count;
    uint32_t rsa_min_bits; /* default 2048 */
    char *mac_secrets; /* file: "<senderKID> <secret> [serial=…] [subject=…] [bodies=…]" */
    uint32_t pbm_max_iterations; /* 100 .. 1000000, default 100000 */
    char *allowlist;             /* file of serial numbers, or "redis" */
    bool allowlist_consume;
    char *allowlist_state; /* file allowlist + consume: where claims are kept across restarts */
    struct rp_cfg_template tmpl; /* `template` */
    uint32_t max_requests;       /* CertReqMsg per request, inner messages per nested */
    enum rp_keygen_mode central_keygen;
    char **rr_reasons; /* CRLReason names a device may use in rr (admins: any) */
    unsigned rr_reasons_count;
    bool rr_reasons_given;
    enum rp_forward_mode forward;
    enum rp_pop_mode pop;
    enum rp_genm_mode genm;
    uint32_t max_clock_skew_s;
    /* true (default): a request without messageTime is refused (badTime), so a nonce need
     * only be remembered while a message carrying it could still be accepted (2 · skew) */
    bool require_message_time;
    uint32_t replay_window_s; /* nonces of messages without messageTime, default 86400 */
    struct rp_cfg_mac_lockout mac_lockout;
    char *upstream_path; /* path on the upstream (the EJBCA alias); always set after loading,
                            by default to upstream.url's path */
    char *ocsp_path;     /* optional: this domain's own path to the OCSP relay (needs the
                            top-level `validation` section), e.g. /.well-known/cmp/p/x/ocsp */
    struct rp_cfg_limits limits;
    enum rp_redis_failure on_redis_failure;
    char **admins; /* PEM files of administrator certificates: rr (revoke, suspend) for any
                      certificate issued under the domain's anchors and intermediates */
    unsigned admins_count;
    /* with genm: local, what raproxy answers itself; crlStatusList uses `crls`. NULL: none */
    struct rp_cfg_pki_info *pki_info;
    struct rp_cfg_renewal renewal; /* kur's window; no bounds when absent */
};

/* The span in seconds of a certificate valid from not_before to not_after. */
static inline int64_t rp_cfg_span_s(const struct rp_cfg_span *s, int64_t not_before,
                                    int64_t not_after)
{
    int64_t life = not_after > not_before ? not_after - not_before : 0;
    return s->pct ? life / 100 * (int64_t)s->pct + life % 100 * (int64_t)s->pct / 100
                  : (int64_t)s->seconds;
}

struct rp_cfg_redis {
    char *url; /* redis://[user:pass@]host[:port][/db] (port 6379, db 0) | unix:/path */
    uint32_t timeout_ms;
    char *key_prefix;
};

struct rp_cfg_ocsp_cache {
    uint32_t max_entries; /* default 10000 */
    uint32_t max_age_s;   /* default 3600; entries also expire at the response's nextUpdate */
};

/* OCSP relay to the Validation Authority (RFC 6960 over HTTP). */
struct rp_cfg_validation {
    /* the VA's OCSP URL, http://… or https://… */
    char *url;
    /* https only: PEM CA file to verify the VA's TLS certificate */
    char *ca;
    /* PEM: a responder trusted for every CA (RFC 6960 §4.2.2.2, local configuration) */
    char *responder_cert;
    /* PEM files of the issuing CAs: responses signed by them, or by a certificate they issued
     * with EKU id-kp-OCSPSigning, pass for the certificates they issued */
    char **trust_anchors;
    unsigned trust_anchors_count;
    /* listener path, default "/ocsp" (GET: <path>/<base64 request>) */
    char *path;
    struct rp_cfg_ocsp_cache cache;
    /* whole VA request deadline, default 5000 */
    uint32_t timeout_ms;
    /* admission of OCSP requests (before any VA or crypto work): per client address and
     * for the whole relay; defaults per_ip 50/s burst 100, global unlimited */
    struct rp_cfg_limit per_ip;
    struct rp_cfg_limit global;
};

struct rp_config {
    char *source;              /* file it was read from */
    uint32_t loops;            /* default 1 */
    uint32_t workers;          /* default: number of cores */
    uint32_t worker_queue;     /* per worker */
    uint32_t worker_queue_ms;  /* refuse work whose expected wait on the workers exceeds it */
    char *log_level;           /* debug|info|warn|error */
    uint32_t shutdown_grace_s; /* default 25 */
    char *default_path;        /* optional extra path served by the first domain, e.g. "/pkix/" */
    struct rp_cfg_listener *listeners;
    unsigned listeners_count;
    struct rp_cfg_http http;
    struct rp_cfg_upstream upstream;
    struct rp_cfg_admin admin;
    struct rp_cfg_ra ra; /* required once domains sign errors (all.ra.cert/key) */
    struct rp_cfg_domain *domains;
    unsigned domains_count;
    struct rp_cfg_redis *redis; /* NULL: in-process limiter and caches */
    /* NULL: no OCSP relay */
    struct rp_cfg_validation *validation;
};

/* rp_config_load_opts() flags */
/* Skip "file exists and is readable" checks (the example file, tests, `--check-config` on a
 * machine other than the target). Every other check still runs. */
#define RP_CONFIG_NO_FILE_CHECKS 1u

/* Load and validate. On failure returns RP_E_CONFIG (RP_E_NOMEM when out of memory) and
 * writes every problem found, one per line as "FILE:LINE: KEY: message", to `errs` (may be
 * NULL); a problem in a value set from the environment reads "environment VAR: KEY: message".
 * Environment overrides (RAPROXY_UPSTREAM_URL, RAPROXY_REDIS_URL, …; see README) are applied
 * after parsing, before validation. Relative file paths in the file are resolved against the
 * directory of the file. On success *out is a config to release with rp_config_free(). */
int rp_config_load(const char *path, struct rp_config **out, FILE *errs);
int rp_config_load_opts(const char *path, struct rp_config **out, FILE *errs, unsigned flags);
void rp_config_free(struct rp_config *cfg);

/* Path a domain is served at: "/.well-known/cmp/p/<name>". Writes into buf (at least
 * RP_CFG_DOMAIN_PATH_MAX bytes for any valid name); NULL if it does not fit. */
const char *rp_config_domain_path(const struct rp_cfg_domain *d, char *buf, unsigned cap);

/* Split a validated listen address "a.b.c.d:port" or "[v6]:port" into the bare host (no
 * brackets) and port. Returns 0, or RP_E_CONFIG when malformed or host_cap is too small. */
int rp_config_split_address(const char *addr, char *host, unsigned host_cap, uint16_t *port);

/* A parsed upstream URL. `path` points into the URL string ("/" when it has none). */

#endif
