/* Configuration: parse, defaults, `tls: off`, every kind of error with FILE:LINE: KEY,
 * environment overrides, and the shipped example. Files for "exists and is readable" checks
 * live in a per-test temp dir; the YAML under test/core/configs/ is loaded in place. */
#include "core/config_internal.h"
#include "raproxy/config.h"
#include "raproxy/url.h"
#include "raproxy/err.h"
#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *errs_text;
static struct rp_config *cfg;
static char *tmp;

static void teardown(void)
{
    rp_config_free(cfg);
    cfg = NULL;
    free(errs_text);
    errs_text = NULL;
    if (tmp)
        rpt_rmdir(tmp);
    free(tmp);
    tmp = NULL;
}

TestSuite(config, .fini = teardown);
TestSuite(config_schema, .fini = teardown);

static char *src_config(const char *name)
{
    char *p = NULL;
    cr_assert_neq(asprintf(&p, "%s/test/core/configs/%s", rpt_src(), name), -1);
    return p;
}

/* Load `path`; problems land in errs_text. */
static int load_path(const char *path, unsigned flags)
{
    size_t len = 0;
    free(errs_text);
    errs_text = NULL;
    FILE *f = open_memstream(&errs_text, &len);
    cr_assert_not_null(f);
    rp_config_free(cfg);
    cfg = NULL;
    int rc = rp_config_load_opts(path, &cfg, f, flags);
    fclose(f);
    return rc;
}

static int load_src(const char *name, unsigned flags)
{
    char *p = src_config(name);
    int rc = load_path(p, flags);
    free(p);
    return rc;
}

static void expect_error(const char *name, const char *needle)
{
    cr_assert_eq(load_src(name, RP_CONFIG_NO_FILE_CHECKS), RP_E_CONFIG, "%s loaded", name);
    cr_assert_null(cfg);
    cr_assert_not_null(strstr(errs_text, needle), "want \"%s\" in:\n%s", needle, errs_text);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

static char *in_tmp(const char *name)
{
    char *p = NULL;
    if (!tmp)
        tmp = rpt_tmpdir();
    cr_assert_not_null(tmp);
    cr_assert_neq(asprintf(&p, "%s/%s", tmp, name), -1);
    return p;
}

static void write_tmp(const char *name, const char *text)
{
    char *p = in_tmp(name);
    cr_assert_eq(rpt_write_file(p, text, strlen(text)), 0);
    free(p);
}

/* A config written into the temp dir and loaded from there. */
static int load_text(const char *text, unsigned flags)
{
    write_tmp("raproxy.yaml", text);
    char *p = in_tmp("raproxy.yaml");
    int rc = load_path(p, flags);
    free(p);
    return rc;
}

/* The lines most texts start with: a plain-HTTP listener (line 1) and an upstream (line 2);
 * HEAD_RA adds the RA (line 3), which domains need. */
#define HEAD                                                                                       \
    "listeners: [{address: 127.0.0.1:1, tls: off}]\n"                                              \
    "upstream: {url: 'http://ca:8080/cmp'}\n"
#define HEAD_RA HEAD "ra: {cert: /ra.pem, key: /ra.key}\n"

/* A config text loaded without file checks: the files it names need not exist. */
static int load_yaml(const char *text)
{
    return load_text(text, RP_CONFIG_NO_FILE_CHECKS);
}

/* HEAD_RA and domain `a` (line 5), its keys (`lines`, from line 6) after its name. */
static int load_domain(const char *lines)
{
    char text[4096];
    snprintf(text, sizeof text, HEAD_RA "domains:\n  - name: a\n%s", lines);
    return load_yaml(text);
}

/* Every one of the problems is among those reported. */
static void expect_problems_n(const char *const *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_not_null(strstr(errs_text, want[i]), "want \"%s\" in:\n%s", want[i], errs_text);
}
#define expect_problems(...)                                                                       \
    expect_problems_n((const char *const[]){__VA_ARGS__},                                          \
                      sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static const char *const full_files[] = {
    "server.pem",          "server.key",
    "clients.pem",         "upstream-ca.pem",
    "upstream-client.pem", "upstream-client.key",
    "ca-trust.pem",        "ra.pem",
    "ra-chain.pem",        "ra.key",
    "vendor-root-a.pem",   "vendor-root-b.pem",
    "vendor-sub.pem",      "vendor.crl",
    "secrets.txt",         "serials.txt",
    "admin1.pem",          "operator-root.pem",
};

/* full.yaml copied into a temp dir with every file it names, except `skip`. */
static char *setup_full(const char *skip)
{
    char *src = src_config("full.yaml");
    size_t len;
    uint8_t *text = rpt_read_file(src, &len);
    cr_assert_not_null(text);
    char *dst = in_tmp("full.yaml");
    cr_assert_eq(rpt_write_file(dst, text, len), 0);
    for (size_t i = 0; i < sizeof full_files / sizeof full_files[0]; i++)
        if (!skip || strcmp(skip, full_files[i]) != 0)
            write_tmp(full_files[i], "-----BEGIN CERTIFICATE-----\n");
    free(text);
    free(src);
    return dst;
}

static void assert_tmp_path(const char *got, const char *name)
{
    char *want = in_tmp(name);
    cr_assert_str_eq(got, want);
    free(want);
}

Test(config, full_file_sets_every_key)
{
    char *path = setup_full(NULL);
    cr_assert_eq(load_path(path, 0), 0, "%s", errs_text);
    cr_assert_str_eq(errs_text, "");
    cr_assert_str_eq(cfg->source, path);
    cr_assert_eq(cfg->loops, 2);
    cr_assert_eq(cfg->workers, 3);
    cr_assert_eq(cfg->worker_queue, 512);
    cr_assert_str_eq(cfg->log_level, "debug");
    cr_assert_eq(cfg->shutdown_grace_s, 10);
    cr_assert_str_eq(cfg->default_path, "/pkix/");

    cr_assert_eq(cfg->listeners_count, 2);
    const struct rp_cfg_listener *l = &cfg->listeners[0];
    cr_assert_str_eq(l->address, "0.0.0.0:8443");
    cr_assert_not(l->tls_off);
    assert_tmp_path(l->tls.cert, "server.pem");
    assert_tmp_path(l->tls.key, "server.key");
    assert_tmp_path(l->tls.client_ca, "clients.pem");
    cr_assert(l->tls.client_cert_required);
    cr_assert_str_eq(l->tls.min_version, "1.3");
    cr_assert_str_eq(cfg->listeners[1].address, "[::1]:8080");
    cr_assert(cfg->listeners[1].tls_off);

    cr_assert_eq(cfg->http.max_header_bytes, 4096);
    cr_assert_eq(cfg->http.max_body_bytes, 32768);
    cr_assert_eq(cfg->http.handshake_timeout_ms, 5000);
    cr_assert_eq(cfg->http.header_timeout_ms, 4000);
    cr_assert_eq(cfg->http.body_timeout_ms, 3000);
    cr_assert_eq(cfg->http.idle_timeout_ms, 20000);
    cr_assert_eq(cfg->http.max_connections, 5000);

    cr_assert_str_eq(cfg->upstream.url, "https://ca.example.net:8443/ejbca/publicweb/cmp/raproxy");
    assert_tmp_path(cfg->upstream.ca, "upstream-ca.pem");
    assert_tmp_path(cfg->upstream.client_cert, "upstream-client.pem");
    assert_tmp_path(cfg->upstream.client_key, "upstream-client.key");
    assert_tmp_path(cfg->upstream.ca_trust, "ca-trust.pem");
    cr_assert_eq(cfg->upstream.timeout_ms, 15000);
    cr_assert_eq(cfg->upstream.connect_timeout_ms, 2000);
    cr_assert_eq(cfg->upstream.max_connections, 8);
    cr_assert_eq(cfg->upstream.max_queue, 256);
    cr_assert_str_eq(cfg->admin.address, "127.0.0.1:9090");
    assert_tmp_path(cfg->ra.cert, "ra.pem");
    assert_tmp_path(cfg->ra.chain, "ra-chain.pem");
    assert_tmp_path(cfg->ra.key, "ra.key");

    cr_assert_eq(cfg->domains_count, 2);
    const struct rp_cfg_domain *d = &cfg->domains[0];
    cr_assert_str_eq(d->name, "manufacturer");
    cr_assert_eq(d->paths_count, 2);
    cr_assert_str_eq(d->paths[1], "/pkix/vendor");
    cr_assert_eq(d->trust_anchors_count, 2);
    assert_tmp_path(d->trust_anchors[1], "vendor-root-b.pem");
    cr_assert_eq(d->intermediates_count, 1);
    cr_assert_eq(d->crls_count, 1);
    assert_tmp_path(d->crls[0], "vendor.crl");
    cr_assert_eq(d->allow_count, 7);
    cr_assert_str_eq(d->allow[3], "certConf");
    cr_assert_eq(d->protection, RP_PROT_SIGNATURE | RP_PROT_MAC);
    cr_assert_eq(d->algorithms_count, 3);
    cr_assert_str_eq(d->algorithms[2], "rsa-pss");
    cr_assert_eq(d->rsa_min_bits, 3072);
    assert_tmp_path(d->mac_secrets, "secrets.txt");
    cr_assert_eq(d->pbm_max_iterations, 50000);
    assert_tmp_path(d->allowlist, "serials.txt");
    cr_assert(d->allowlist_consume);
    assert_tmp_path(d->allowlist_state, "serials.state");
    cr_assert_eq(d->anchor_names_count, 2);
    cr_assert_str_eq(d->anchor_names[1], "globex");
    cr_assert_not(d->anchor_names_default);
    cr_assert_eq(d->tmpl.mode, RP_TEMPLATE_CHECK);
    cr_assert(d->tmpl.bind_given);
    cr_assert_eq(d->tmpl.bind_count, 2);
    cr_assert_str_eq(d->tmpl.bind[1], "CN");
    cr_assert(d->tmpl.subject_attributes_given);
    cr_assert_eq(d->tmpl.subject_attributes_count, 4);
    cr_assert_str_eq(d->tmpl.san[0], "dns:{serial}.devices.example.net");
    cr_assert_eq(d->tmpl.san_types_count, 2);
    cr_assert_eq(d->tmpl.key_usage_count, 2);
    cr_assert_str_eq(d->tmpl.extended_key_usage[1], "1.3.6.1.5.5.7.3.17");
    cr_assert_eq(d->tmpl.validity, RP_VALIDITY_KEEP);
    cr_assert_eq(d->tmpl.max_validity_days, 730);
    cr_assert_str_eq(d->tmpl.cert_profiles[0], "device");
    cr_assert(d->tmpl.kur_subject_change);
    cr_assert_eq(d->max_requests, 2);
    cr_assert_eq(d->central_keygen, RP_KEYGEN_ALLOW);
    cr_assert(d->rr_reasons_given);
    cr_assert_eq(d->rr_reasons_count, 2);
    cr_assert_eq(d->forward, RP_FORWARD_NESTED);
    cr_assert_eq(d->pop, RP_POP_RA_VERIFIED);
    cr_assert_eq(d->genm, RP_GENM_LOCAL);
    cr_assert_eq(d->max_clock_skew_s, 120);
    cr_assert_str_eq(d->upstream_path, "/ejbca/publicweb/cmp/vendor");
    cr_assert_eq(d->limits.global.rate, 1000);
    cr_assert_eq(d->limits.global.burst, 2000);
    cr_assert_eq(d->limits.domain.rate, 500);
    cr_assert_eq(d->limits.domain.burst, 500, "burst defaults to rate");
    cr_assert_eq(d->limits.per_ip.rate, 20, "short form \"20/s burst 40\"");
    cr_assert_eq(d->limits.per_ip.burst, 40);
    cr_assert_eq(d->limits.per_device.rate, 1);
    cr_assert_eq(d->limits.per_device.burst, 1);
    cr_assert_eq(d->on_redis_failure, RP_REDIS_FAIL_CLOSED);
    cr_assert_eq(d->admins_count, 1);

    d = &cfg->domains[1];
    cr_assert_str_eq(d->name, "operator");
    cr_assert(d->anchor_names_default);
    cr_assert_str_eq(d->anchor_names[0], "operator-root", "the anchor file's basename");
    cr_assert_eq(d->max_requests, RP_DEF_MAX_REQUESTS);
    cr_assert_eq(d->tmpl.mode, RP_TEMPLATE_CHECK);
    cr_assert_eq(d->tmpl.validity, RP_VALIDITY_DROP);
    cr_assert_eq(d->tmpl.max_validity_days, RP_DEF_MAX_VALIDITY_DAYS);
    cr_assert_eq(d->central_keygen, RP_KEYGEN_REFUSE);
    cr_assert_not(d->rr_reasons_given);
    cr_assert_eq(d->forward, RP_FORWARD_UNCHANGED);
    cr_assert_eq(d->protection, RP_PROT_SIGNATURE);
    cr_assert_str_eq(d->upstream_path, "/ejbca/publicweb/cmp/raproxy", "from upstream.url");

    cr_assert_not_null(cfg->redis);
    cr_assert_str_eq(cfg->redis->url, "redis://user:secret@redis.example.net:6380/2");
    cr_assert_eq(cfg->redis->timeout_ms, 150);
    cr_assert_str_eq(cfg->redis->key_prefix, "rp:");
    free(path);
}

Test(config, minimal_file_gets_defaults)
{
    cr_assert_eq(load_src("minimal.yaml", RP_CONFIG_NO_FILE_CHECKS), 0, "%s", errs_text);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_eq(cfg->loops, RP_DEF_LOOPS);
    cr_assert_eq(cfg->workers, cpus < 1 ? 1 : cpus > 256 ? 256 : (uint32_t)cpus);
    cr_assert_eq(cfg->worker_queue, RP_DEF_WORKER_QUEUE);
    cr_assert_str_eq(cfg->log_level, "info");
    cr_assert_eq(cfg->shutdown_grace_s, RP_DEF_SHUTDOWN_GRACE);
    cr_assert_null(cfg->default_path);
    cr_assert_eq(cfg->listeners_count, 1);
    cr_assert_not(cfg->listeners[0].tls_off);
    cr_assert_str_eq(cfg->listeners[0].tls.min_version, "1.2");
    cr_assert_not(cfg->listeners[0].tls.client_cert_required);
    char *want = src_config("server.pem");
    cr_assert_str_eq(cfg->listeners[0].tls.cert, want, "relative to the file's directory");
    free(want);
    cr_assert_eq(cfg->http.max_header_bytes, RP_DEF_MAX_HEADER_BYTES);
    cr_assert_eq(cfg->http.max_body_bytes, RP_DEF_MAX_BODY_BYTES);
    cr_assert_eq(cfg->http.handshake_timeout_ms, RP_DEF_HANDSHAKE_TIMEOUT);
    cr_assert_eq(cfg->http.header_timeout_ms, RP_DEF_HEADER_TIMEOUT);
    cr_assert_eq(cfg->http.body_timeout_ms, RP_DEF_BODY_TIMEOUT);
    cr_assert_eq(cfg->http.idle_timeout_ms, RP_DEF_IDLE_TIMEOUT);
    cr_assert_eq(cfg->http.max_connections, RP_DEF_MAX_CONNECTIONS);
    cr_assert_eq(cfg->http.max_connections_per_ip, RP_DEF_MAX_CONNS_PER_IP);
    cr_assert_eq(cfg->http.max_handshakes, RP_DEF_MAX_HANDSHAKES);
    cr_assert_eq(cfg->http.max_unsent_bytes, RP_DEF_MAX_UNSENT_BYTES);
    cr_assert_eq(cfg->worker_queue_ms, RP_DEF_WORKER_QUEUE_MS);
    cr_assert_eq(cfg->upstream.timeout_ms, RP_DEF_UPSTREAM_TIMEOUT);
    cr_assert_eq(cfg->upstream.connect_timeout_ms, RP_DEF_UPSTREAM_CONNECT);
    cr_assert_eq(cfg->upstream.max_connections, RP_DEF_UPSTREAM_MAX_CONNS);
    cr_assert_eq(cfg->upstream.max_queue, RP_DEF_UPSTREAM_QUEUE);
    cr_assert_null(cfg->upstream.ca);
    cr_assert_null(cfg->admin.address);
    cr_assert_null(cfg->ra.cert);
    cr_assert_eq(cfg->domains_count, 0);
    cr_assert_null(cfg->redis);
}

Test(config, domain_defaults)
{
    cr_assert_eq(load_src("minimal_domain.yaml", RP_CONFIG_NO_FILE_CHECKS), 0, "%s", errs_text);
    const struct rp_cfg_domain *d = &cfg->domains[0];
    cr_assert_eq(d->protection, RP_PROT_SIGNATURE);
    cr_assert_eq(d->rsa_min_bits, 2048);
    cr_assert_eq(d->max_clock_skew_s, 300);
    cr_assert_eq(d->pbm_max_iterations, 100000);
    cr_assert_eq(d->forward, RP_FORWARD_REPROTECT);
    cr_assert_eq(d->pop, RP_POP_KEEP);
    cr_assert_eq(d->genm, RP_GENM_FORWARD);
    cr_assert_eq(d->on_redis_failure, RP_REDIS_FAIL_OPEN);
    cr_assert_eq(d->algorithms_count, 0);
    cr_assert_null(d->allowlist);
    cr_assert_not(d->allowlist_consume);
    cr_assert_str_eq(d->upstream_path, "/ejbca/publicweb/cmp/raproxy");
    cr_assert_eq(d->limits.per_ip.rate, 0, "0 = unlimited");
    cr_assert_eq(d->limits.per_ip.burst, 0);
    char buf[RP_CFG_DOMAIN_PATH_MAX];
    cr_assert_str_eq(rp_config_domain_path(d, buf, sizeof buf), "/.well-known/cmp/p/op");
    cr_assert_null(rp_config_domain_path(d, buf, 10));
}

Test(config, tls_off_is_plain_http)
{
    cr_assert_eq(load_src("tls_off.yaml", 0), 0, "%s", errs_text);
    for (unsigned i = 0; i < 2; i++) {
        cr_assert(cfg->listeners[i].tls_off);
        cr_assert_null(cfg->listeners[i].tls.cert);
        cr_assert_null(cfg->listeners[i].tls.min_version);
    }
}

Test(config, tls_scalar_other_than_off_is_an_error)
{
    expect_error("tls_bad_scalar.yaml",
                 "tls_bad_scalar.yaml:3: listeners[0].tls: expected `off` or a mapping");
}

Test(config, tls_needs_cert_and_key_unless_off)
{
    expect_error("tls_missing.yaml", "tls_missing.yaml:2: listeners[0].tls: required");
    expect_problems("tls_missing.yaml:4: listeners[1].tls.key: required",
                    "tls_missing.yaml:6: listeners[1].tls.min_version: must be \"1.2\" or \"1.3\"",
                    "tls_missing.yaml:7: listeners[1].tls.client_cert_required: needs");
}

Test(config, unknown_top_level_key)
{
    expect_error("bad_unknown_top.yaml", "bad_unknown_top.yaml:6: lops: unknown key");
    expect_problems("expected one of: loops, workers");
}

Test(config, unknown_nested_key)
{
    expect_error("bad_unknown_nested.yaml",
                 "bad_unknown_nested.yaml:5: listeners[0].tls.crt: unknown key");
}

Test(config, wrong_types_all_reported)
{
    expect_error("bad_type.yaml",
                 "bad_type.yaml:1: loops: expected an unsigned integer, got 'four'");
    expect_problems(
        "bad_type.yaml:6: http.max_body_bytes: expected an unsigned integer, got a sequence",
        "bad_type.yaml:7: upstream: expected a mapping");
    cr_assert_eq(count_lines(errs_text), 3, "%s", errs_text);
}

Test(config, bad_enums)
{
    expect_error("bad_enum.yaml", "bad_enum.yaml:11: domains[0].forward: must be one of "
                                  "reprotect|unchanged|nested, got 'resign'");
    expect_problems("bad_enum.yaml:12: domains[0].protection: must be one of signature|mac|both",
                    "bad_enum.yaml:13: domains[0].on_redis_failure:");
}

Test(config, bad_addresses)
{
    expect_error("bad_address.yaml", "bad_address.yaml:4: listeners[1].address: must be "
                                     "IPv4:port or [IPv6]:port with port 1..65535");
    expect_problems("bad_address.yaml:6: listeners[2].address:",
                    "bad_address.yaml:11: admin.address:");
    cr_assert_eq(count_lines(errs_text), 3, "%s", errs_text);
}

Test(config, missing_file)
{
    char *path = setup_full("vendor-root-b.pem");
    cr_assert_eq(load_path(path, 0), RP_E_CONFIG);
    char *want = NULL;
    cr_assert_neq(asprintf(&want,
                           "full.yaml:46: domains[0].trust_anchors[1]: file not readable: "
                           "%s/vendor-root-b.pem",
                           tmp),
                  -1);
    cr_assert_not_null(strstr(errs_text, want), "want \"%s\" in:\n%s", want, errs_text);
    cr_assert_eq(count_lines(errs_text), 1, "%s", errs_text);
    free(want);
    free(path);
}

Test(config, file_checks_want_a_regular_file)
{
    cr_assert_eq(load_text("listeners:\n"
                           "  - address: 127.0.0.1:1\n"
                           "    tls: {cert: /, key: missing.key}\n"
                           "upstream: {url: 'http://ca/'}\n",
                           0),
                 RP_E_CONFIG);
    expect_problems(
        "raproxy.yaml:3: listeners[0].tls.cert: file not readable: / (not a regular file)",
        "listeners[0].tls.key: file not readable: ", "/missing.key (No such file");
}

Test(config, duplicate_domain)
{
    expect_error("dup_domain.yaml", "dup_domain.yaml:11: domains[1].name: duplicate domain name");
    cr_assert_eq(count_lines(errs_text), 1, "reported once, not also as a path: %s", errs_text);
}

Test(config, duplicate_path_including_implicit_one)
{
    expect_error("dup_path.yaml", "dup_path.yaml:16: domains[1].paths[0]: duplicate path "
                                  "/.well-known/cmp/p/a (already served by domains[0].name)");
}

/* Routing takes "/pkix" and "/pkix/" for one path (rp_url_path_is): so does the check, in the
 * loader and in `raproxy --check-config`, each clash reported FILE:LINE: KEY. */
Test(config, duplicate_path_differing_only_in_a_trailing_slash)
{
    expect_error("dup_path_slash.yaml",
                 "dup_path_slash.yaml:17: domains[1].paths[0]: duplicate path "
                 "/.well-known/cmp/p/a/ (already served by domains[0].name)");
    expect_problems("dup_path_slash.yaml:7: default_path: duplicate path /pkix/ (already served by "
                    "domains[0].paths[0])");
    cr_assert_eq(count_lines(errs_text), 2, "%s", errs_text);

    char *cfg_path = src_config("dup_path_slash.yaml"), *bin = NULL;
    char *log = in_tmp("check.log");
    cr_assert_neq(asprintf(&bin, "%s/raproxy", rpt_bin()), -1);
    const char *check[] = {bin, "--check-config", "--config", cfg_path, NULL};
    cr_assert_eq(rpt_run(check, 10000, log), 1, "--check-config accepted a clash");
    cr_assert_eq(rpt_file_count(log, "dup_path_slash.yaml:7: default_path: duplicate path"), 1);
    cr_assert_eq(rpt_file_count(log, "dup_path_slash.yaml:17: domains[1].paths[0]: duplicate"), 1);
    free(log);
    free(bin);
    free(cfg_path);
}

Test(config, duplicate_key)
{
    expect_error("dup_key.yaml", "dup_key.yaml:7: loops: duplicate key");
}

Test(config, bad_body_names_and_algorithms)
{
    expect_error("bad_body.yaml",
                 "bad_body.yaml:12: domains[0].allow[1]: 'renew' is not a CMP body type");
    expect_problems("bad_body.yaml:13: domains[0].algorithms[1]: 'dsa' is not an algorithm");
}

Test(config, domains_need_ra)
{
    expect_error("no_ra.yaml", "no_ra.yaml:1: ra.cert: required");
    expect_problems("no_ra.yaml:1: ra.key: required");
}

Test(config, bad_upstream_url)
{
    expect_error("bad_url.yaml", "bad_url.yaml:5: upstream.url: must be http://");
}

Test(config, bad_redis_url)
{
    expect_error("bad_redis_url.yaml", "bad_redis_url.yaml:7: redis.url: must be "
                                       "redis://[[user]:pass@]host[:port][/db] or unix:/path");
}

#define REDIS_CFG(url, extra)                                                                      \
    "listeners:\n  - address: 127.0.0.1:8080\n    tls: off\n"                                      \
    "upstream: {url: \"http://ca:8080/cmp\"}\n"                                                    \
    "redis:\n  url: \"" url "\"\n" extra

/* The review: a URL that --check-config accepted but the runtime refused made raproxy run
 * on in-process state. One parser judges both now; the password never appears. */
Test(config, redis_url_the_runtime_refuses_is_refused_and_its_password_hidden)
{
    static const char *const bad[] = {
        "redis://user@127.0.0.1:6379",          /* a user without a password cannot AUTH */
        "redis://u:p%zz@127.0.0.1:6379",        /* bad percent escape */
        "redis://:hunter2-secret@127.0.0.1:0",  /* port 0 */
        "redis://:hunter2-secret@127.0.0.1/db", /* db is not a number */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, REDIS_CFG("%s", ""), bad[i]);
        cr_expect_eq(load_yaml(text), RP_E_CONFIG, "%s loaded", bad[i]);
        cr_expect_not_null(strstr(errs_text, "redis.url: must be"), "%s", errs_text);
        cr_expect_null(strstr(errs_text, "hunter2"), "password in: %s", errs_text);
    }
    cr_assert_eq(load_yaml(REDIS_CFG("redis://:hunter2-secret@127.0.0.1:6379/2", "")), RP_OK, "%s",
                 errs_text);
}

Test(config, redis_key_prefix_with_braces_or_too_long_is_refused)
{
    cr_expect_eq(load_yaml(REDIS_CFG("redis://127.0.0.1", "  key_prefix: \"rp{x}:\"\n")),
                 RP_E_CONFIG);
    cr_expect_not_null(strstr(errs_text, "redis.key_prefix: must be at most 64"), "%s", errs_text);
    char text[512], prefix[66];
    memset(prefix, 'p', 65);
    prefix[65] = 0;
    snprintf(text, sizeof text, REDIS_CFG("redis://127.0.0.1", "  key_prefix: %s\n"), prefix);
    cr_expect_eq(load_yaml(text), RP_E_CONFIG);
    prefix[64] = 0;
    snprintf(text, sizeof text, REDIS_CFG("redis://127.0.0.1", "  key_prefix: %s\n"), prefix);
    cr_expect_eq(load_yaml(text), RP_OK, "%s", errs_text);
}

Test(config, at_least_one_listener)
{
    expect_error("no_listener.yaml", "no_listener.yaml:1: listeners: at least one listener");
}

Test(config, yaml_syntax_error_has_line)
{
    expect_error("bad_syntax.yaml", "bad_syntax.yaml:6: (top level): YAML syntax: ");
}

Test(config, every_semantic_problem_in_one_run)
{
    expect_error("many.yaml", "many.yaml:1: loops: must be 1..64, got 0");
    expect_problems("many.yaml:2: workers: must be 1..256, got 1000",
                    "many.yaml:3: log_level: must be one of debug|info|warn|error, got 'verbose'",
                    "many.yaml:11: domains[0].name: must be 1..64 characters of [A-Za-z0-9._-]",
                    "many.yaml:12: domains[0].allow: required",
                    "domains[0].mac_secrets: required with mac protection",
                    "many.yaml:14: domains[0].allowlist_consume: needs an allowlist",
                    "many.yaml:16: domains[0].limits.per_ip.burst: set without a rate");
    cr_assert_eq(count_lines(errs_text), 8, "%s", errs_text);
}

Test(config, odd_documents)
{
    cr_assert_eq(load_text("# nothing\n", 0), RP_E_CONFIG);
    expect_problems("raproxy.yaml:1: (top level): empty configuration");
    cr_assert_eq(load_text("- a\n- b\n", 0), RP_E_CONFIG);
    expect_problems("(top level): expected a mapping, got a sequence");
    cr_assert_eq(load_text("loops: 99999999999\n", 0), RP_E_CONFIG);
    expect_problems("raproxy.yaml:1: loops: expected an unsigned integer");
    cr_assert_eq(load_text("loops: -1\n", 0), RP_E_CONFIG);
    expect_problems("loops: expected an unsigned integer, got '-1'");
    cr_assert_eq(load_text("{listeners: [{address: 127.0.0.1:1, tls: off}],\n"
                           " upstream: {url: 'http://ca/'}, ra: {key: []}}\n",
                           0),
                 RP_E_CONFIG);
    expect_problems("raproxy.yaml:2: ra.key: expected a string, got a sequence");
    cr_assert_eq(load_path("/nonexistent/raproxy.yaml", 0), RP_E_CONFIG);
    expect_problems("/nonexistent/raproxy.yaml:1: (top level): cannot open");
    cr_assert_eq(rp_config_load("/nonexistent/raproxy.yaml", &cfg, NULL), RP_E_CONFIG);
    cr_assert_null(cfg);
}

Test(config, null_values_anchors_and_bools)
{
    cr_assert_eq(load_yaml("listeners:\n"
                           "  - {address: 127.0.0.1:8080, tls: off}\n"
                           "admin:\n"
                           "  address: ~\n"
                           "upstream: {url: 'http://ca:8080/cmp'}\n"
                           "ra: {cert: /ra.pem, key: /ra.key}\n"
                           "domains:\n"
                           "  - name: a\n"
                           "    trust_anchors: [/r.pem]\n"
                           "    allow: &allow [ir, certConf]\n"
                           "    allowlist: /list\n"
                           "    allowlist_consume: Yes\n"
                           "    allowlist_state: /list.state\n"
                           "    limits: {per_ip: &lim {rate: 5, burst: 9}}\n"
                           "  - name: b\n"
                           "    trust_anchors: [/r.pem]\n"
                           "    allow: *allow\n"
                           "    limits: {per_device: *lim}\n"),
                 0, "%s", errs_text);
    cr_assert_null(cfg->admin.address, "`~` is no value");
    cr_assert(cfg->domains[0].allowlist_consume);
    cr_assert_eq(cfg->domains[1].allow_count, 2);
    cr_assert_str_eq(cfg->domains[1].allow[1], "certConf");
    cr_assert_eq(cfg->domains[1].limits.per_device.burst, 9);
    cr_assert_eq(load_yaml("listeners:\n"
                           "  - address: 127.0.0.1:1\n"
                           "    tls: {cert: /c, key: /k, client_cert_required: maybe}\n"),
                 RP_E_CONFIG);
    expect_problems("raproxy.yaml:3: listeners[0].tls.client_cert_required: expected true or "
                    "false, got 'maybe'");
}

Test(config, connection_limits_are_read_and_checked)
{
    const char *base = "listeners: [{address: '127.0.0.1:1', tls: off}]\n"
                       "upstream: {url: 'http://ca:8080/cmp'}\n";
    char text[512];
    snprintf(text, sizeof text,
             "%sworker_queue_ms: 250\nhttp: {max_connections_per_ip: 0, max_handshakes: 7, "
             "max_unsent_bytes: 4096}\n",
             base);
    cr_assert_eq(load_yaml(text), 0, "%s", errs_text);
    cr_assert_eq(cfg->worker_queue_ms, 250);
    cr_assert_eq(cfg->http.max_connections_per_ip, 0, "0: no per-address cap");
    cr_assert_eq(cfg->http.max_handshakes, 7);
    cr_assert_eq(cfg->http.max_unsent_bytes, 4096);
    rp_config_free(cfg);
    cfg = NULL;
    snprintf(text, sizeof text,
             "%sworker_queue_ms: 0\nhttp:\n  max_handshakes: 0\n  max_unsent_bytes: 100\n", base);
    cr_assert_eq(load_yaml(text), RP_E_CONFIG);
    expect_problems("raproxy.yaml:3: worker_queue_ms: must be 1..600000, got 0",
                    "raproxy.yaml:5: http.max_handshakes: must be 1..4294967295, got 0",
                    "raproxy.yaml:6: http.max_unsent_bytes: must be 1024..67108864, got 100");
}

Test(config, upstream_https_rules)
{
    cr_assert_eq(load_yaml("listeners: [{address: 127.0.0.1:1, tls: off}]\n"
                           "upstream:\n"
                           "  url: https://ca.example.net/cmp\n"
                           "  client_cert: /c.pem\n"),
                 RP_E_CONFIG);
    expect_problems("raproxy.yaml:2: upstream.ca: required with an https://",
                    "raproxy.yaml:4: upstream.client_cert: client_cert and client_key go together");
    cr_assert_eq(load_text("default_path: /pkix/\n"
                           "listeners: [{address: 127.0.0.1:1, tls: off}]\n",
                           0),
                 RP_E_CONFIG);
    cr_assert_eq(count_lines(errs_text), 1, "default_path needs no domain: %s", errs_text);
    expect_problems("raproxy.yaml:1: upstream.url: required");
}

Test(config, redis_allowlist_needs_redis)
{
    cr_assert_eq(
        load_yaml(HEAD_RA
                  "domains:\n"
                  "  - {name: a, trust_anchors: [/r.pem], allow: [ir], allowlist: redis}\n"),
        RP_E_CONFIG);
    expect_problems("raproxy.yaml:5: domains[0].allowlist: 'redis' needs");
    cr_assert_eq(
        load_yaml(HEAD_RA
                  "redis: {url: 'unix:/run/redis.sock'}\n"
                  "domains:\n"
                  "  - {name: a, trust_anchors: [/r.pem], allow: [ir], allowlist: redis}\n"),
        0, "%s", errs_text);
    cr_assert_str_eq(cfg->domains[0].allowlist, "redis", "not resolved as a file");
    cr_assert_eq(cfg->redis->timeout_ms, RP_DEF_REDIS_TIMEOUT);
    cr_assert_str_eq(cfg->redis->key_prefix, RP_DEF_REDIS_KEY_PREFIX);
}

/* Set environment variables, {name, value} each (each test runs in its own process). */
static void set_env_n(const char *const (*vars)[2], size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(setenv(vars[i][0], vars[i][1], 1), 0);
}
#define set_env(...)                                                                               \
    set_env_n((const char *const[][2]){__VA_ARGS__},                                               \
              sizeof((const char *const[][2]){__VA_ARGS__}) / sizeof(const char *const[2]))

Test(config, env_overrides)
{
    set_env({"RAPROXY_UPSTREAM_URL", "http://ejbca:8080/ejbca/publicweb/cmp/env"},
            {"RAPROXY_REDIS_URL", "redis://redis:6379/1"}, {"RAPROXY_LOG_LEVEL", "warn"},
            {"RAPROXY_LOOPS", "4"}, {"RAPROXY_WORKERS", "2"},
            {"RAPROXY_ADMIN_ADDRESS", "[::]:9090"}, {"RAPROXY_LISTEN_ADDRESS", "0.0.0.0:443"},
            {"RAPROXY_TLS_CERT", "/run/tls/tls.crt"}, {"RAPROXY_TLS_KEY", "/run/tls/tls.key"},
            {"RAPROXY_RA_CERT", "/run/ra/ra.pem"}, {"RAPROXY_RA_KEY", "/run/ra/ra.key"},
            {"RAPROXY_RA_CHAIN", "/run/ra/chain.pem"});
    cr_assert_eq(load_src("minimal_domain.yaml", RP_CONFIG_NO_FILE_CHECKS), 0, "%s", errs_text);
    cr_assert_str_eq(cfg->upstream.url, "http://ejbca:8080/ejbca/publicweb/cmp/env");
    cr_assert_str_eq(cfg->domains[0].upstream_path, "/ejbca/publicweb/cmp/env");
    cr_assert_not_null(cfg->redis, "RAPROXY_REDIS_URL creates the section");
    cr_assert_str_eq(cfg->redis->url, "redis://redis:6379/1");
    cr_assert_eq(cfg->redis->timeout_ms, RP_DEF_REDIS_TIMEOUT);
    cr_assert_str_eq(cfg->log_level, "warn");
    cr_assert_eq(cfg->loops, 4);
    cr_assert_eq(cfg->workers, 2);
    cr_assert_str_eq(cfg->admin.address, "[::]:9090");
    cr_assert_str_eq(cfg->listeners[0].address, "0.0.0.0:443");
    cr_assert_str_eq(cfg->listeners[0].tls.cert, "/run/tls/tls.crt");
    cr_assert_str_eq(cfg->listeners[0].tls.key, "/run/tls/tls.key");
    cr_assert_str_eq(cfg->ra.cert, "/run/ra/ra.pem");
    cr_assert_str_eq(cfg->ra.key, "/run/ra/ra.key");
    cr_assert_str_eq(cfg->ra.chain, "/run/ra/chain.pem");
}

Test(config, env_tls_turns_a_plain_listener_to_tls_and_creates_one)
{
    set_env({"RAPROXY_TLS_CERT", "/c.pem"}, {"RAPROXY_TLS_KEY", "/k.pem"});
    cr_assert_eq(load_src("tls_off.yaml", RP_CONFIG_NO_FILE_CHECKS), 0, "%s", errs_text);
    cr_assert_not(cfg->listeners[0].tls_off);
    cr_assert_str_eq(cfg->listeners[0].tls.min_version, "1.2");
    cr_assert(cfg->listeners[1].tls_off);
    setenv("RAPROXY_LISTEN_ADDRESS", "127.0.0.1:8443", 1);
    cr_assert_eq(load_src("no_listener.yaml", RP_CONFIG_NO_FILE_CHECKS), 0, "%s", errs_text);
    cr_assert_eq(cfg->listeners_count, 1);
    cr_assert_str_eq(cfg->listeners[0].address, "127.0.0.1:8443");
}

Test(config, env_empty_is_unset)
{
    set_env({"RAPROXY_LOOPS", ""}, {"RAPROXY_UPSTREAM_URL", ""});
    cr_assert_eq(load_src("minimal.yaml", RP_CONFIG_NO_FILE_CHECKS), 0, "%s", errs_text);
    cr_assert_eq(cfg->loops, 1);
    cr_assert_str_eq(cfg->upstream.url, "http://127.0.0.1:8080/ejbca/publicweb/cmp/raproxy");
}

Test(config, env_bad_values_name_the_variable)
{
    set_env({"RAPROXY_LOOPS", "many"}, {"RAPROXY_WORKERS", "0"},
            {"RAPROXY_UPSTREAM_URL", "ftp://ca/cmp"}, {"RAPROXY_REDIS_URL", "localhost:6379"},
            {"RAPROXY_LOG_LEVEL", "loud"}, {"RAPROXY_LISTEN_ADDRESS", "any:80"});
    cr_assert_eq(load_src("minimal.yaml", RP_CONFIG_NO_FILE_CHECKS), RP_E_CONFIG);
    expect_problems("environment RAPROXY_LOOPS: loops: not an unsigned integer: 'many'",
                    "environment RAPROXY_WORKERS: workers: must be 1..256, got 0",
                    "environment RAPROXY_UPSTREAM_URL: upstream.url: must be http://",
                    "environment RAPROXY_REDIS_URL: redis.url: must be redis://",
                    "environment RAPROXY_LOG_LEVEL: log_level: must be one of",
                    "environment RAPROXY_LISTEN_ADDRESS: listeners[0].address: must be IPv4:port");
}

Test(config, example_file_parses)
{
    char *p = NULL;
    cr_assert_neq(asprintf(&p, "%s/deploy/raproxy.example.yaml", rpt_src()), -1);
    cr_assert_eq(load_path(p, RP_CONFIG_NO_FILE_CHECKS), 0, "%s", errs_text);
    free(p);
    cr_assert_eq(cfg->listeners_count, 1);
    cr_assert_str_eq(cfg->listeners[0].address, "0.0.0.0:8443");
    cr_assert_not(cfg->listeners[0].tls_off);
    cr_assert_str_eq(cfg->admin.address, "0.0.0.0:9090");
    cr_assert_str_eq(cfg->upstream.url, "http://127.0.0.1:8080/ejbca/publicweb/cmp/raproxy");
    cr_assert_eq(cfg->domains_count, 2);
    cr_assert_str_eq(cfg->domains[0].name, "manufacturer");
    cr_assert_not_null(cfg->domains[0].allowlist);
    cr_assert_str_eq(cfg->domains[1].name, "operator");
    cr_assert_str_eq(cfg->domains[1].allow[0], "kur");
    cr_assert_null(cfg->redis, "redis is commented out");
    cr_assert_eq(strncmp(cfg->ra.key, "/etc/raproxy/", 13), 0);
}

Test(config, split_address)
{
    char host[64];
    uint16_t port;
    cr_assert_eq(rp_config_split_address("0.0.0.0:8443", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "0.0.0.0");
    cr_assert_eq(port, 8443);
    cr_assert_eq(rp_config_split_address("[::1]:443", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(port, 443);
    const char *bad[] = {"localhost:80", "1.2.3.4",   "1.2.3.4:0", "1.2.3.4:65536",
                         "[::1]",        "::1:80",    ":80",       "[::1]80",
                         "1.2.3.4:8a",   "[nope]:80", "1.2.3.4:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(rp_config_split_address(bad[i], host, sizeof host, &port), RP_E_CONFIG, "%s",
                     bad[i]);
    cr_assert_eq(rp_config_split_address("127.0.0.1:1", host, 4, &port), RP_E_CONFIG,
                 "host does not fit");
}

/* upstream.url and validation.url go through rp_http_url_parse (src/core/url.c), the parser the
 * runtime uses: what the check accepts the pool can use, and the other way round. */
Test(config, url_check_is_the_runtime_parser)
{
    static const char *const bad[] = {"ftp://ca/",         "http://",       "http:///cmp",
                                      "http://ca:0/",      "http://u@ca/",  "http://ca/a b",
                                      "http://ca:x/",      "https://[zz]/", "ca:8080/cmp",
                                      "http://ca/cmp?x=1", "http://ca/#f"};
    char yaml[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct rp_http_url u;
        cr_expect_eq(rp_http_url_parse(bad[i], &u), RP_E_CONFIG, "%s", bad[i]);
        snprintf(yaml, sizeof yaml,
                 "listeners: [{address: 127.0.0.1:1, tls: off}]\nupstream: {url: '%s'}\n", bad[i]);
        cr_expect_eq(load_yaml(yaml), RP_E_CONFIG);
        cr_expect(errs_text && strstr(errs_text, "upstream.url"),
                  "--check-config accepted upstream.url %s:\n%s", bad[i], errs_text);
    }
    snprintf(yaml, sizeof yaml,
             "listeners: [{address: 127.0.0.1:1, tls: off}]\n"
             "upstream: {url: 'HTTP://[fd00::1]:8080/ejbca/cmp'}\n");
    load_yaml(yaml); /* other keys are missing: only the URL counts */
    cr_expect(!errs_text || !strstr(errs_text, "upstream.url"),
              "a good URL (scheme in capitals, IPv6) refused:\n%s", errs_text);
}

Test(config, pkcs11_keys_need_a_module_and_a_pin)
{
    /* the URI is kept as is (not resolved as a relative file), module and PIN from ra.pkcs11 */
    write_tmp("libp11.so", "not really a module");
    write_tmp("ra-pin", "1234\n");
    write_tmp("ra.pem", "-----BEGIN CERTIFICATE-----\n");
    cr_assert_eq(load_text(HEAD "ra:\n"
                                "  cert: ra.pem\n"
                                "  key: 'pkcs11:token=raproxy;object=ra-key'\n"
                                "  pkcs11: {module: libp11.so, pin_file: ra-pin}\n",
                           0),
                 0, "%s", errs_text);
    cr_assert_str_eq(cfg->ra.key, "pkcs11:token=raproxy;object=ra-key");
    assert_tmp_path(cfg->ra.pkcs11.module, "libp11.so");
    assert_tmp_path(cfg->ra.pkcs11.pin_file, "ra-pin");

    /* a malformed URI, a missing module and PIN, each with its line */
    cr_assert_eq(load_yaml(HEAD "ra:\n"
                                "  cert: /ra.pem\n"
                                "  key: 'pkcs11:token=raproxy;colour=blue'\n"),
                 RP_E_CONFIG);
    expect_problems("raproxy.yaml:5: ra.key: malformed PKCS#11 URI: unknown path attribute");
    cr_assert_eq(load_yaml(HEAD "ra:\n"
                                "  cert: /ra.pem\n"
                                "  key: 'pkcs11:object=ra-key'\n"),
                 RP_E_CONFIG);
    expect_problems("ra.pkcs11.module: required with a pkcs11: key",
                    "ra.pkcs11.pin_file: required with a pkcs11: key");
    /* the module file must exist (file checks on) */
    cr_assert_eq(load_text(HEAD "ra:\n"
                                "  cert: ra.pem\n"
                                "  key: 'pkcs11:object=ra-key'\n"
                                "  pkcs11: {module: /nonexistent/libp11.so, pin_file: ra-pin}\n",
                           0),
                 RP_E_CONFIG);
    expect_problems("raproxy.yaml:6: ra.pkcs11.module: file not readable: /nonexistent/libp11.so");
}

Test(config, pkcs11_pin_from_the_environment_and_tls_key_in_the_token)
{
    set_env({"RAPROXY_RA_PIN", "4711"}, {"RAPROXY_RA_KEY", "pkcs11:token=raproxy;object=ra-key"});
    cr_assert_eq(load_yaml("listeners:\n"
                           "  - address: 127.0.0.1:1\n"
                           "    tls: {cert: /tls.pem, key: 'pkcs11:token=raproxy;object=tls'}\n"
                           "upstream: {url: 'http://ca/'}\n"
                           "ra: {cert: /ra.pem, key: /ra.key, pkcs11: {module: /p11.so}}\n"),
                 0, "%s", errs_text);
    cr_assert_str_eq(cfg->ra.pkcs11.pin, "4711");
    cr_assert_str_eq(cfg->ra.key, "pkcs11:token=raproxy;object=ra-key");
    cr_assert_str_eq(cfg->listeners[0].tls.key, "pkcs11:token=raproxy;object=tls");
    cr_assert_eq(cfg->ra.rsa_signature, RP_RSA_SIG_PKCS1, "PKCS#1 v1.5 unless told");
    unsetenv("RAPROXY_RA_KEY");
    cr_assert_eq(load_yaml(HEAD "ra: {cert: /ra.pem, key: /ra.key, rsa_signature: pss}\n"), 0, "%s",
                 errs_text);
    cr_assert_eq(cfg->ra.rsa_signature, RP_RSA_SIG_PSS);
    cr_assert_eq(load_yaml(HEAD "ra: {cert: /ra.pem, key: /ra.key, rsa_signature: oaep}\n"),
                 RP_E_CONFIG);
    expect_problems("raproxy.yaml:3: ra.rsa_signature");
    /* a listener's own pkcs11 section needs its own PIN */
    cr_assert_eq(load_yaml("listeners:\n"
                           "  - address: 127.0.0.1:1\n"
                           "    tls:\n"
                           "      cert: /tls.pem\n"
                           "      key: 'pkcs11:object=tls'\n"
                           "      pkcs11: {module: /other.so}\n"
                           "upstream: {url: 'http://ca/'}\n"),
                 RP_E_CONFIG);
    expect_problems("listeners[0].tls.pkcs11.pin_file: required");
}

Test(config, crl_stale_and_ca_signers_are_checked)
{
    cr_assert_eq(
        load_yaml("listeners: [{address: 127.0.0.1:1, tls: off}]\n"
                  "upstream: {url: 'http://ca/', ca_signers: ['O=Operator, CN=CA', 'nonsense']}\n"
                  "ra: {cert: /ra.pem, key: /ra.key}\n"
                  "domains:\n"
                  "  - {name: a, trust_anchors: [/r.pem], allow: [ir], crl_stale: warn}\n"),
        RP_E_CONFIG);
    cr_expect(strstr(errs_text, "upstream.ca_signers: needs upstream.ca_trust"), "%s", errs_text);
    cr_expect(strstr(errs_text, "upstream.ca_signers[1]: a subject"), "%s", errs_text);
    cr_expect(strstr(errs_text, "raproxy.yaml:5: domains[0].crl_stale: only used with crls"), "%s",
              errs_text);
    cr_assert_eq(load_yaml(HEAD_RA
                           "domains:\n"
                           "  - {name: b, trust_anchors: [/r.pem], allow: [ir], crls: [/c.crl],\n"
                           "     crl_stale: ignore}\n"),
                 RP_E_CONFIG);
    cr_expect(strstr(errs_text, "domains[0].crl_stale: must be one of refuse|warn, got 'ignore'"),
              "%s", errs_text);
    cr_assert_eq(
        load_yaml("listeners: [{address: 127.0.0.1:1, tls: off}]\n"
                  "upstream: {url: 'http://ca/', ca_trust: /root.pem,\n"
                  "           ca_signers: ['O=Operator, CN=CA', '/O=Operator/CN=Other CA']}\n"
                  "ra: {cert: /ra.pem, key: /ra.key}\n"
                  "domains:\n"
                  "  - {name: a, trust_anchors: [/r.pem], allow: [ir], crls: [/c.crl],\n"
                  "     crl_stale: warn}\n"
                  "  - {name: b, trust_anchors: [/r.pem], allow: [ir]}\n"),
        0, "%s", errs_text);
    cr_expect_eq(cfg->upstream.ca_signers_count, 2);
    cr_expect_eq(cfg->domains[0].crl_stale, RP_CRL_STALE_WARN);
    cr_expect_eq(cfg->domains[1].crl_stale, RP_CRL_STALE_REFUSE, "refuse by default");
}

/* Domain `a` allowing ir and certConf, with `extra` lines (from line 7). */
static int load_domain_with(const char *extra)
{
    char lines[2048];
    snprintf(lines, sizeof lines, "    allow: [ir, certConf]\n%s", extra);
    return load_domain(lines);
}

Test(config, anchor_names_key_identities_by_vendor)
{
    cr_assert_eq(load_domain_with("    trust_anchors: [/a/root.pem, /b/root.pem]\n"), RP_E_CONFIG);
    expect_problems("domains[0].trust_anchors[1]: trust anchor files 0 and 1 are both named 'root' "
                    "by their basename");
    cr_assert_eq(load_domain_with("    trust_anchors: [/a/root.pem, /b/root.pem]\n"
                                  "    anchor_names: [acme]\n"),
                 RP_E_CONFIG);
    expect_problems("anchor_names: needs one name per trust_anchors file");
    cr_assert_eq(load_domain_with("    trust_anchors: [/a/root.pem]\n"
                                  "    anchor_names: [mac]\n"),
                 RP_E_CONFIG);
    expect_problems("anchor_names[0]: anchor name 'mac'");
    /* two roots of one vendor (a rollover) may share a name */
    cr_assert_eq(load_domain_with("    trust_anchors: [/a/root.pem, /a/root2.pem]\n"
                                  "    anchor_names: [acme, acme]\n"),
                 0, "%s", errs_text);
    cr_assert_eq(load_domain_with("    trust_anchors: [/a/acme.pem, /b/globex.pem]\n"), 0, "%s",
                 errs_text);
    cr_assert_str_eq(cfg->domains[0].anchor_names[1], "globex");
}

Test(config, template_policy_values_are_checked)
{
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"    template: {mode: rewrite}\n", "template.subject: required with mode: rewrite"},
        {"    template: {subject: 'CN=x'}\n", "template.subject: only used with mode: rewrite"},
        {"    template: {mode: rewrite, subject: 'CN=x, XX=y'}\n",
         "template.subject: unknown attribute label"},
        {"    template: {mode: rewrite, subject: 'CN={name}'}\n",
         "template.subject: unknown placeholder"},
        {"    template: {mode: rewrite, subject: 'CN=x'}\n    forward: unchanged\n",
         "template.mode: rewrite needs forward: reprotect"},
        {"    template: {bind: [CN, colour]}\n", "template.bind[1]: 'colour' is not"},
        {"    template: {san: ['ftp:x']}\n", "template.san[0]: 'ftp:x' must be dns:VALUE"},
        {"    template: {san_types: [x400]}\n", "template.san_types[0]: 'x400' is not"},
        {"    template: {key_usage: [keyCertSign]}\n", "template.key_usage[0]: 'keyCertSign'"},
        {"    template: {extended_key_usage: [1.x.3]}\n",
         "template.extended_key_usage[0]: '1.x.3' is neither"},
        {"    template: {validity: keep, max_validity_days: 0}\n",
         "template.max_validity_days: must be"},
        {"    max_requests: 0\n", "max_requests: must be"},
        {"    rr_reasons: [removeFromCRL]\n",
         "rr_reasons[0]: 'removeFromCRL' is for administrators"},
        {"    rr_reasons: [bored]\n", "rr_reasons[0]: 'bored' is not a CRLReason"},
        {"    central_keygen: maybe\n", "central_keygen"},
        {"    allowlist: /s.txt\n    allowlist_consume: true\n",
         "allowlist_state: required with allowlist_consume and a file allowlist"},
        {"    allowlist: redis\n    allowlist_state: /x\n", "allowlist_state: only used with"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char extra[512];
        snprintf(extra, sizeof extra, "    trust_anchors: [/r.pem]\n%s", cases[i].yaml);
        cr_expect_eq(load_domain_with(extra), RP_E_CONFIG, "case %zu accepted", i);
        cr_expect_not_null(strstr(errs_text, cases[i].want), "case %zu: %s", i, errs_text);
    }
    cr_assert_eq(load_yaml("listeners: [{address: 127.0.0.1:8080, tls: off}]\n"
                           "upstream: {url: 'http://ca:8080/cmp'}\n"
                           "ra: {cert: /ra.pem, key: /ra.key}\n"
                           "domains:\n"
                           "  - {name: a, trust_anchors: [/r.pem], allow: [ir, cann, ip]}\n"),
                 RP_E_CONFIG);
    expect_problems("allow[1]: 'cann' is never sent by a device",
                    "allow[2]: 'ip' is never sent by a device");
    cr_assert_eq(load_domain_with("    trust_anchors: [/r.pem]\n"
                                  "    template:\n"
                                  "      mode: rewrite\n"
                                  "      subject: 'O=Operator, CN=Device {serial}\\, {anchor}, "
                                  "serialNumber={serial}'\n"
                                  "      san: ['dns:{serial}.example.net', 'uri:urn:dev:{cn}']\n"),
                 0, "%s", errs_text);
    cr_assert_eq(cfg->domains[0].tmpl.mode, RP_TEMPLATE_REWRITE);
}

/* Rates carry their unit (issue 18): a quota per day fits certificates. */
Test(config, rates_and_quotas_take_units)
{
    cr_assert_eq(load_domain("    trust_anchors: [/r.pem]\n"
                             "    allow: [ir, certConf]\n"
                             "    limits:\n"
                             "      per_device: {rate: 3/day, burst: 3}\n"
                             "      per_ip: 30/min burst 10\n"
                             "      domain: {rate: 500/h}\n"
                             "      global: {rate: 20}\n"),
                 0, "%s", errs_text);
    const struct rp_cfg_limits *l = &cfg->domains[0].limits;
    cr_assert_eq(l->per_device.rate, 3);
    cr_assert_eq(l->per_device.period_s, RP_CFG_PER_DAY);
    cr_assert_eq(rp_cfg_limit_interval_us(&l->per_device), 8ull * 3600 * 1000000);
    cr_assert_eq(l->per_ip.period_s, RP_CFG_PER_MIN);
    cr_assert_eq(l->per_ip.burst, 10);
    cr_assert_eq(rp_cfg_limit_interval_us(&l->per_ip), 2000000);
    cr_assert_eq(l->domain.period_s, RP_CFG_PER_H);
    cr_assert_eq(l->domain.burst, 500, "burst defaults to the count");
    cr_assert_eq(rp_cfg_limit_interval_us(&l->global), 50000, "no unit: per second");

    const char *bad[][2] = {
        {"{rate: 3/week}", "limits.per_device.rate: expected N, \"N/s\""},
        {"{rate: 3/day, period_s: 60}", "limits.per_device.period_s: unknown key"},
        {"3/fortnight", "limits.per_device: expected a mapping {rate: N/s, burst: M}"},
        {"3", "limits.per_device: expected a mapping"},
        {"{rate: 1/day, burst: 400}", "limits.per_device.burst: 400 requests at 1 per 86400 s"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char lines[256];
        snprintf(lines, sizeof lines,
                 "    trust_anchors: [/r.pem]\n"
                 "    allow: [ir, certConf]\n"
                 "    limits:\n"
                 "      per_device: %s\n",
                 bad[i][0]);
        cr_assert_eq(load_domain(lines), RP_E_CONFIG, "%s", bad[i][0]);
        cr_assert_not_null(strstr(errs_text, bad[i][1]), "%s: want '%s' in:\n%s", bad[i][0],
                           bad[i][1], errs_text);
        expect_problems("raproxy.yaml:9: ");
    }
}

/* renewal.min_age / renewal.min_remaining: durations or shares of the lifetime. */
Test(config, renewal_window_takes_durations_and_shares)
{
    cr_assert_eq(load_domain("    trust_anchors: [/r.pem]\n"
                             "    allow: [kur, certConf]\n"
                             "    renewal: {min_age: 30d, min_remaining: 33%}\n"
                             "  - name: b\n"
                             "    trust_anchors: [/r.pem]\n"
                             "    allow: [kur, certConf]\n"
                             "    renewal: {min_age: 3600, min_remaining: 12 h}\n"
                             "  - name: c\n"
                             "    trust_anchors: [/r.pem]\n"
                             "    allow: [kur, certConf]\n"),
                 0, "%s", errs_text);
    const struct rp_cfg_renewal *r = &cfg->domains[0].renewal;
    cr_assert(r->age.set && r->remaining.set);
    cr_assert_eq(r->age.seconds, 30u * 86400u);
    cr_assert_eq(r->remaining.pct, 33);
    /* a certificate valid 300 days: 33 % is 99 days */
    cr_assert_eq(rp_cfg_span_s(&r->remaining, 0, 300 * 86400), 99 * 86400);
    cr_assert_eq(rp_cfg_span_s(&r->age, 0, 300 * 86400), 30 * 86400);
    r = &cfg->domains[1].renewal;
    cr_assert_eq(r->age.seconds, 3600);
    cr_assert_eq(r->remaining.seconds, 12u * 3600u);
    r = &cfg->domains[2].renewal;
    cr_assert_not(r->age.set || r->remaining.set, "no window unless configured");

    const char *bad[] = {"{min_age: 3 weeks}", "{min_remaining: 0%}", "{min_remaining: 101%}",
                         "{min_age: -1d}", "{min_age: 50000000d}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char lines[256];
        snprintf(lines, sizeof lines,
                 "    trust_anchors: [/r.pem]\n"
                 "    allow: [kur, certConf]\n"
                 "    renewal: %s\n",
                 bad[i]);
        cr_assert_eq(load_domain(lines), RP_E_CONFIG, "%s", bad[i]);
        cr_assert_not_null(strstr(errs_text, "raproxy.yaml:8: domains[0].renewal.min_"), "%s:\n%s",
                           bad[i], errs_text);
        expect_problems("expected a duration");
    }
}

/* upstream.max_in_flight, upstream.rate and upstream.delayed_delivery (issue 18). */
Test(config, upstream_budget_and_delayed_delivery)
{
    cr_assert_eq(load_yaml(HEAD), 0, "%s", errs_text);
    const struct rp_cfg_upstream *u = &cfg->upstream;
    cr_assert_eq(u->max_in_flight, 0, "unlimited by default");
    cr_assert_eq(rp_cfg_limit_interval_us(&u->rate), 0);
    cr_assert_not(u->delayed_delivery.enabled);
    cr_assert_eq(u->delayed_delivery.max_wait_s, 3600);
    cr_assert_eq(u->delayed_delivery.check_after_s, 5);
    cr_assert_eq(u->delayed_delivery.check_after_jitter_s, 5);
    cr_assert_eq(u->delayed_delivery.max_waiting, RP_DEF_DD_MAX_WAITING);

    cr_assert_eq(load_yaml("listeners: [{address: 127.0.0.1:1, tls: off}]\n"
                           "upstream:\n"
                           "  url: 'http://ca:8080/cmp'\n"
                           "  max_in_flight: 32\n"
                           "  rate: 100/s\n"
                           "  delayed_delivery:\n"
                           "    enabled: true\n"
                           "    max_wait_s: 600\n"
                           "    check_after_s: 2\n"
                           "    check_after_jitter_s: 0\n"
                           "    max_waiting: 50000\n"),
                 0, "%s", errs_text);
    u = &cfg->upstream;
    cr_assert_eq(u->max_in_flight, 32);
    cr_assert_eq(u->rate.rate, 100);
    cr_assert_eq(u->rate.burst, 100);
    cr_assert_eq(rp_cfg_limit_interval_us(&u->rate), 10000);
    cr_assert(u->delayed_delivery.enabled);
    cr_assert_eq(u->delayed_delivery.max_wait_s, 600);
    cr_assert_eq(u->delayed_delivery.check_after_s, 2);
    cr_assert_eq(u->delayed_delivery.check_after_jitter_s, 0);
    cr_assert_eq(u->delayed_delivery.max_waiting, 50000);

    cr_assert_eq(load_yaml("listeners: [{address: 127.0.0.1:1, tls: off}]\n"
                           "upstream:\n"
                           "  url: 'http://ca:8080/cmp'\n"
                           "  rate: 100/fortnight\n"
                           "  delayed_delivery: {enabled: maybe, max_wait_s: 0,\n"
                           "                     check_after_s: 7200, max_waiting: 0}\n"),
                 RP_E_CONFIG);
    expect_problems("raproxy.yaml:4: upstream.rate: expected a mapping {rate: N/s, burst: M}",
                    "raproxy.yaml:5: upstream.delayed_delivery.enabled: expected true or false");
    cr_assert_eq(load_yaml("listeners: [{address: 127.0.0.1:1, tls: off}]\n"
                           "upstream:\n"
                           "  url: 'http://ca:8080/cmp'\n"
                           "  delayed_delivery: {enabled: true, max_wait_s: 0,\n"
                           "                     check_after_s: 7200, max_waiting: 0}\n"),
                 RP_E_CONFIG);
    expect_problems("raproxy.yaml:4: upstream.delayed_delivery.max_wait_s: ",
                    "raproxy.yaml:5: upstream.delayed_delivery.check_after_s: ",
                    "raproxy.yaml:5: upstream.delayed_delivery.max_waiting: ");
}

/* A device polls at checkAfter (+ jitter): a poll interval near the time the CA's answer is
 * kept would let a device that misses one poll find its answer gone (and, once its
 * transaction is forgotten, its transactionID open to others). */
Test(config, delayed_delivery_poll_interval_stays_well_under_the_answer_stay)
{
    cr_assert_eq(load_yaml("listeners: [{address: 127.0.0.1:1, tls: off}]\n"
                           "upstream:\n"
                           "  url: 'http://ca:8080/cmp'\n"
                           "  delayed_delivery: {enabled: true, check_after_s: 200,\n"
                           "                     check_after_jitter_s: 200}\n"),
                 RP_E_CONFIG);
    const char *want = "raproxy.yaml:4: upstream.delayed_delivery.check_after_s: check_after_s + "
                       "check_after_jitter_s must be at most 300";
    cr_assert_not_null(strstr(errs_text, want), "want '%s' in:\n%s", want, errs_text);
    /* control: the same interval split to fit passes */
    cr_assert_eq(load_yaml("listeners: [{address: 127.0.0.1:1, tls: off}]\n"
                           "upstream:\n"
                           "  url: 'http://ca:8080/cmp'\n"
                           "  delayed_delivery: {enabled: true, check_after_s: 200,\n"
                           "                     check_after_jitter_s: 100}\n"),
                 0, "%s", errs_text);
}

/* ---- the schema says which strings are files and what the defaults are (config_schema.c) */

struct schema_tally {
    unsigned strings, files;
};

static void on_string_kind(void *ctx, const struct core_cfg_field *f)
{
    struct schema_tally *t = ctx;
    if (f->kind != RP_CFGX_K_STRING && f->kind != RP_CFGX_K_STRINGS)
        return;
    t->strings++;
    t->files += f->file;
    cr_expect(f->file != f->text, "%s: %s", f->pattern,
              f->file ? "listed both as a file and as text"
                      : "not said whether it names a file (file_keys or text_keys in "
                        "config_schema.c)");
}

/* A new string key cannot slip in without saying whether it is a file, so that a file key
 * can no longer stay relative because a hand-kept list forgot it. */
Test(config_schema, every_string_key_says_whether_it_names_a_file)
{
    struct schema_tally t = {0};
    core_cfg_visit(NULL, on_string_kind, &t);
    cr_assert_gt(t.strings, 50, "the walk met %u string keys", t.strings);
    cr_assert_gt(t.files, 20, "the walk met %u file keys", t.files);
}

/* The naming rule (config_schema.c): a string key whose last word (after the last '_') says
 * file, certificate, key, CA, CRL, chain, module, anchors, … names a file; one whose last word
 * is path, paths, url or address (a URL path, a URL, a socket address) never does. */
static const char *const file_words[] = {
    "file",    "cert",      "certs",    "key",           "ca",     "chain",
    "crl",     "crls",      "module",   "intermediates", "admins", "secrets",
    "anchors", "allowlist", "template", "state",         "trust"};
static const char *const not_file_words[] = {"path", "paths", "url", "address"};

static bool last_word_in(const char *key, const char *const *words, size_t n)
{
    const char *u = strrchr(key, '_');
    const char *w = u ? u + 1 : key;
    for (size_t i = 0; i < n; i++)
        if (strcmp(w, words[i]) == 0)
            return true;
    return false;
}

static void on_named_like_a_file(void *ctx, const struct core_cfg_field *f)
{
    unsigned *named = ctx;
    if (f->kind != RP_CFGX_K_STRING && f->kind != RP_CFGX_K_STRINGS)
        return;
    if (last_word_in(f->key, file_words, sizeof file_words / sizeof file_words[0])) {
        (*named)++;
        cr_expect(f->file, "%s is named like a file but not marked as one", f->pattern);
    }
    if (last_word_in(f->key, not_file_words, sizeof not_file_words / sizeof not_file_words[0]))
        cr_expect(!f->file, "%s is a URL, URL path or address, marked as a file", f->pattern);
}

Test(config_schema, keys_named_like_files_are_files)
{
    unsigned named = 0;
    core_cfg_visit(NULL, on_named_like_a_file, &named);
    cr_assert_gt(named, 20, "the rule matched %u keys", named);
}

struct find_key {
    const char *pattern;
    bool found;
    enum core_cfg_kind kind;
};

static void on_find_key(void *ctx, const struct core_cfg_field *f)
{
    struct find_key *k = ctx;
    if (strcmp(f->pattern, k->pattern) == 0) {
        k->found = true;
        k->kind = f->kind;
    }
}

/* A default whose key path is misspelt would silently never apply. */
Test(config_schema, every_default_names_a_key_of_its_type)
{
    cr_assert_gt(core_cfg_defaults_count, 40);
    for (size_t i = 0; i < core_cfg_defaults_count; i++) {
        const struct core_cfg_default *d = &core_cfg_defaults[i];
        struct find_key k = {.pattern = d->key};
        core_cfg_visit(NULL, on_find_key, &k);
        cr_expect(k.found, "default for %s: no such key", d->key);
        if (d->str)
            cr_expect_eq(k.kind, RP_CFGX_K_STRING, "%s: a string default", d->key);
        else
            cr_expect(k.kind == RP_CFGX_K_UINT || k.kind == RP_CFGX_K_BOOL ||
                          k.kind == RP_CFGX_K_ENUM,
                      "%s: a number default for a key of kind %d", d->key, k.kind);
    }
}

/* Patterns of file keys met in a walk ("domains[].trust_anchors[]"), each once. */
struct file_patterns {
    char pattern[64][RP_CFGX_PATH_MAX];
    size_t n;
    const char *dir; /* with a config: the directory its files must be resolved against */
};

static void on_file_value(void *ctx, const struct core_cfg_field *f)
{
    struct file_patterns *s = ctx;
    if (!f->file || (f->value && !*(char **)f->value))
        return;
    if (f->value) {
        char want[2 * RP_CFGX_PATH_MAX];
        snprintf(want, sizeof want, "%s/%s", s->dir, f->path);
        cr_expect_str_eq(*(char **)f->value, want, "%s not resolved", f->path);
    }
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->pattern[i], f->pattern) == 0)
            return;
    cr_assert_lt(s->n, sizeof s->pattern / sizeof s->pattern[0]);
    snprintf(s->pattern[s->n++], RP_CFGX_PATH_MAX, "%s", f->pattern);
}

/* every_file_key.yaml sets every file key of the schema to its own key path, relative: each is
 * resolved against the config's directory; a file key the schema gains fails here until the
 * file names it too. */
Test(config_schema, every_file_key_is_resolved_against_the_config_directory)
{
    char *path = src_config("every_file_key.yaml");
    cr_assert_eq(load_path(path, RP_CONFIG_NO_FILE_CHECKS), 0, "%s", errs_text);
    char *dir = src_config("");
    dir[strlen(dir) - 1] = '\0'; /* without the trailing slash */
    static struct file_patterns in_schema, in_config;
    in_schema.n = in_config.n = 0;
    in_config.dir = dir;
    core_cfg_visit(NULL, on_file_value, &in_schema);
    core_cfg_visit(cfg, on_file_value, &in_config);
    for (size_t i = 0; i < in_schema.n; i++) {
        size_t j = 0;
        while (j < in_config.n && strcmp(in_schema.pattern[i], in_config.pattern[j]) != 0)
            j++;
        cr_expect_lt(j, in_config.n, "every_file_key.yaml does not set %s", in_schema.pattern[i]);
    }
    cr_assert_eq(in_config.n, in_schema.n);
    /* and, read without the walk, the deepest of them */
    char want[2 * RP_CFGX_PATH_MAX];
    snprintf(want, sizeof want, "%s/domains[0].pki_info.root_ca_update.old_with_new", dir);
    cr_assert_str_eq(cfg->domains[0].pki_info->root_ca_update->old_with_new, want);
    snprintf(want, sizeof want, "%s/listeners[0].tls.pkcs11.pin_file", dir);
    cr_assert_str_eq(cfg->listeners[0].tls.pkcs11.pin_file, want);
    snprintf(want, sizeof want, "%s/validation.trust_anchors[0]", dir);
    cr_assert_str_eq(cfg->validation->trust_anchors[0], want);
    snprintf(want, sizeof want, "%s/domains[0].admins[0]", dir);
    cr_assert_str_eq(cfg->domains[0].admins[0], want);
    free(dir);
    free(path);
}

/* Keys that name files not read at every load: a pkcs11 section's module and PIN file (read
 * only for a pkcs11: key, see pkcs11_keys_need_a_module_and_a_pin) and allowlist_state (written;
 * its directory must be writable). */
static const char *const not_read_at_load[] = {
    "listeners[].tls.pkcs11.module", "listeners[].tls.pkcs11.pin_file", "ra.pkcs11.module",
    "ra.pkcs11.pin_file", "domains[].allowlist_state"};

static void on_file_checked(void *ctx, const struct core_cfg_field *f)
{
    unsigned *checked = ctx;
    if (!f->file || !*(char **)f->value)
        return;
    for (size_t i = 0; i < sizeof not_read_at_load / sizeof not_read_at_load[0]; i++)
        if (strcmp(f->pattern, not_read_at_load[i]) == 0)
            return;
    char want[2 * RP_CFGX_PATH_MAX];
    snprintf(want, sizeof want, " %s: file not readable: ", f->path);
    cr_expect_not_null(strstr(errs_text, want), "%s is never checked:\n%s", f->path, errs_text);
    (*checked)++;
}

/* A file key is also checked for being there: with file checks on, every file every_file_key.yaml
 * names (none exists) is reported, under its own key. */
Test(config_schema, every_file_key_is_checked_at_load)
{
    char *path = src_config("every_file_key.yaml");
    cr_assert_eq(load_path(path, 0), RP_E_CONFIG);
    free(path);
    struct rp_config *loaded = NULL;
    path = src_config("every_file_key.yaml");
    cr_assert_eq(rp_config_load_opts(path, &loaded, NULL, RP_CONFIG_NO_FILE_CHECKS), 0);
    free(path);
    unsigned checked = 0;
    core_cfg_visit(loaded, on_file_checked, &checked);
    rp_config_free(loaded);
    cr_assert_gt(checked, 20, "%u files checked", checked);
}
