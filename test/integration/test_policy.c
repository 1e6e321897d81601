/* The RA signs only what it has proven (issue 15): one test per finding, each with real
 * messages (written by openssl cmp where it can, built with the codec's encoders where it
 * cannot), the exact failInfo of the refusal, what reached the recording CA (nothing, or the
 * request as the RA rewrote it — decoded here), and a legitimate control that is forwarded.
 * The recording CA (canned_ca.py) saves every request and answers 502 (its CA is down), so
 * a forwarded request comes back as systemUnavail; it answers with a canned message when a
 * test writes one. */
#include "fixtures.h"
#include "httpc.h"
#include "msgbuild.h"
#include "support.h"

#include "raproxy/arena.h"
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/der.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/ext.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ARENA     (4u << 20)
#define P_CHECK   "/.well-known/cmp/p/check"
#define P_REWR    "/.well-known/cmp/p/rewrite"
#define P_KEEP    "/.well-known/cmp/p/keep"
#define P_OPER    "/.well-known/cmp/p/oper"
#define P_OPERX   "/.well-known/cmp/p/operx"
#define P_NEST    "/.well-known/cmp/p/nest"
#define P_VEND    "/.well-known/cmp/p/vendors"
#define P_VEND2   "/.well-known/cmp/p/vendors2"
#define P_MAC     "/.well-known/cmp/p/mac"
#define REWRITTEN "O=Operator, CN=Device SN0001, serialNumber=SN0001"

static char *g_dir;
static const char *g_pki;
static int g_port;
static char g_rec[600], g_answer[600], g_cfg[600];
static struct rpt_proc g_rp, g_ca;
static struct rp_arena g_a;

static void pki(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", g_pki, rel);
}

static void setup(void)
{
    g_pki = rpt_pki();
    cr_assert_not_null(g_pki);
    g_dir = rpt_tmpdir();
    g_port = rpt_free_port();
    int ca = rpt_free_port();
    char port[16], script[600], path[600];
    snprintf(g_rec, sizeof g_rec, "%s/sent", g_dir);
    snprintf(g_answer, sizeof g_answer, "%s/answer.der", g_dir);
    cr_assert_eq(mkdir(g_rec, 0755), 0);
    snprintf(port, sizeof port, "%d", ca);
    snprintf(script, sizeof script, "%s/test/integration/canned_ca.py", rpt_src());
    const char *argv[] = {"/usr/bin/python3", script, port, g_rec, g_answer, NULL};
    snprintf(g_ca.log, sizeof g_ca.log, "%s/ca.log", g_dir);
    cr_assert_eq(rpt_spawn(&g_ca, argv), 0);
    cr_assert_eq(rpt_wait_port(ca, 10000), 0);
    /* a vendor allowlist keyed by (anchor, serial), and a MAC kid bound to a subject */
    snprintf(path, sizeof path, "%s/vendors.txt", g_dir);
    cr_assert_eq(rpt_write_file(path, "acme SN0001\n", 12), 0);
    const char *sec = "kid-9 pbm-secret-9 serial=P9 subject=\"CN=Pump 9, serialNumber=P9\"\n";
    snprintf(path, sizeof path, "%s/secrets.txt", g_dir);
    cr_assert_eq(rpt_write_file(path, sec, strlen(sec)), 0);
    const char *P = g_pki, *D = g_dir;
    char cfg[12000];
    snprintf(cfg, sizeof cfg,
             "listeners:\n  - address: 127.0.0.1:%d\n    tls: off\n"
             "upstream: {url: \"http://127.0.0.1:%d/pkix/\", keep_alive: false}\n"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
             "chain: %s/operator/ra.chain.pem}\n"
             "domains:\n"
             "  - name: check\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir, cr, p10cr, certConf, error]\n"
             "    template:\n"
             "      san_types: [dns, uri]\n"
             "      key_usage: [digitalSignature]\n"
             "      extended_key_usage: [clientAuth]\n"
             "      cert_profiles: [device]\n"
             "  - name: rewrite\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir, cr, certConf, error]\n"
             "    template:\n"
             "      mode: rewrite\n"
             "      subject: \"O=Operator, CN=Device {serial}, serialNumber={serial}\"\n"
             "      san: [\"dns:{serial}.devices.example.net\"]\n"
             "  - name: keep\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir, certConf, error]\n"
             "    template: {validity: keep, max_validity_days: 10}\n"
             "    central_keygen: allow\n"
             "    max_requests: 2\n"
             "  - name: oper\n"
             "    trust_anchors: [%s/operator/root.pem]\n"
             "    intermediates: [%s/operator/ica.pem]\n"
             "    allow: [kur, rr, certConf, error]\n"
             "  - name: operx\n"
             "    trust_anchors: [%s/operator/root.pem]\n"
             "    intermediates: [%s/operator/ica.pem]\n"
             "    allow: [kur, certConf, error]\n"
             "    template: {kur_subject_change: true}\n"
             "  - name: nest\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [nested, ir, certConf, error]\n"
             "    max_requests: 2\n"
             "  - name: vendors\n"
             "    trust_anchors: [%s/vendor/root.pem, %s/unknown/root.pem]\n"
             "    anchor_names: [acme, unknown]\n"
             "    allow: [ir, certConf, error]\n"
             "    allowlist: %s/vendors.txt\n"
             "  - name: vendors2\n"
             "    trust_anchors: [%s/vendor/root.pem, %s/unknown/root.pem]\n"
             "    anchor_names: [acme, unknown]\n"
             "    allow: [ir, certConf, error]\n"
             "  - name: mac\n"
             "    protection: mac\n"
             "    mac_secrets: %s/secrets.txt\n"
             "    allow: [ir, certConf, error]\n",
             g_port, ca, P, P, P, P, P, P, P, P, P, P, P, P, P, D, P, P, D);
    snprintf(g_cfg, sizeof g_cfg, "%s/raproxy.yaml", g_dir);
    cr_assert_eq(rpt_write_file(g_cfg, cfg, strlen(cfg)), 0);
    cr_assert_eq(rpt_raproxy_start(&g_rp, g_dir, g_cfg, g_port), 0, "%s", g_rp.log);
    cr_assert_eq(rp_arena_new(&g_a, ARENA), RP_OK);
}

static void teardown(void)
{
    cr_expect_eq(rpt_stop(&g_rp, SIGTERM, 15000), 0);
    cr_expect_eq(rpt_file_count(g_rp.log, "AddressSanitizer"), 0);
    rpt_stop(&g_ca, SIGKILL, 2000);
    rp_arena_free(&g_a);
    rpt_rmdir(g_dir);
    free(g_dir);
}

TestSuite(policy, .init = setup, .fini = teardown, .timeout = 180);

/* ---- what the CA saw ------------------------------------------------------------------ */

static int sent(void)
{
    return rpt_dir_count(g_rec, ".der");
}

/* The last request the CA got, decoded. */
static struct rp_cmp_msg *last_sent(void)
{
    char path[700];
    size_t len;
    snprintf(path, sizeof path, "%s/%03d.der", g_rec, sent());
    uint8_t *raw = rpt_read_file(path, &len);
    cr_assert_not_null(raw, "%s", path);
    uint8_t *copy = rp_arena_dup(&g_a, raw, len);
    free(raw);
    struct rp_cmp_msg *m = rp_arena_calloc(&g_a, 1, sizeof *m);
    cr_assert_eq(rp_cmp_decode(copy, len, &g_a, m, NULL), RP_OK, "the CA got no PKIMessage");
    return m;
}

static void expect_fail(const char *path, struct rp_view req, enum rp_failinfo bit,
                        const char *what)
{
    cr_assert(rp_view_present(req), "%s: could not build the request", what);
    struct rp_cmp_msg m;
    int st = rpt_post_cmp(g_port, path, req, &g_a, &m);
    cr_assert_eq(st, 200, "%s: HTTP %d (%s)", what, st, g_rp.log);
    cr_assert_eq(m.body.type, RP_CMP_ERROR, "%s: body %d", what, m.body.type);
    cr_expect_eq(m.body.error.status.fail_info, 1u << bit, "%s: failInfo 0x%x, want %s (%s)", what,
                 m.body.error.status.fail_info, rp_failinfo_name(bit), g_rp.log);
}

/* The attack: refused with `bit`, and the CA saw nothing. */
static void expect_refused(const char *path, struct rp_view req, enum rp_failinfo bit,
                           const char *what)
{
    int before = sent();
    expect_fail(path, req, bit, what);
    cr_expect_eq(sent(), before, "%s: the CA saw it", what);
}

/* The control: forwarded (the CA is down behind the recorder: systemUnavail); returns what
 * the CA got. */
static struct rp_cmp_msg *expect_forwarded(const char *path, struct rp_view req, const char *what)
{
    int before = sent();
    expect_fail(path, req, RP_FI_SYSTEM_UNAVAIL, what);
    cr_assert_eq(sent(), before + 1, "%s: not forwarded (%s)", what, g_rp.log);
    return last_sent();
}

/* ---- requests ------------------------------------------------------------------------- */

/* openssl cmp -cmd <cmd> as device <cert> (under <pki>) with further arguments. */
static uint8_t *capture(const char *cmd, const char *cert, const char *const *extra, size_t *len)
{
    static int seq;
    char c[600], k[600], ica[600], newkey[600], crt[600], name[64];
    pki(c, sizeof c, cert);
    strcat(c, ".pem");
    pki(k, sizeof k, cert);
    strcat(k, ".key");
    pki(ica, sizeof ica, strncmp(cert, "vendor/", 7) == 0 ? "vendor/ica.pem" : "operator/ica.pem");
    pki(newkey, sizeof newkey, "ca/issued.key");
    snprintf(crt, sizeof crt, "%s/unused.pem", g_dir);
    snprintf(name, sizeof name, "cap-%d", seq++);
    const char *args[40] = {"-cmd",        cmd, "-cert",   c,      "-key",     k,
                            "-extracerts", ica, "-newkey", newkey, "-certout", crt};
    size_t n = 12;
    for (size_t i = 0; extra && extra[i] && n < 38; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    uint8_t *b = rpt_capture_request(g_dir, name, args, len);
    cr_assert_not_null(b, "openssl cmp -reqout wrote nothing (%s/%s.log)", g_dir, name);
    return b;
}

/* A captured request re-signed by the device after `body` (and generalInfo) replaced it. */
static struct rp_view resign(const uint8_t *base, size_t len, const char *key_rel,
                             struct rp_view body, struct rp_view general_info)
{
    char key[600];
    pki(key, sizeof key, key_rel);
    struct rpt_mut m = {.key_file = key, .body = body, .general_info = general_info};
    return rpt_rebuild(&g_a, base, len, &m);
}

static struct rp_view fresh(const uint8_t *base, size_t len, const char *key_rel)
{
    return resign(base, len, key_rel, RP_VIEW_NULL, RP_VIEW_NULL);
}

/* A certificate request for the new key ca/issued.key, POP signed with it. */
static struct rpt_certreq new_key_request(const char *subject)
{
    static char key[600];
    char cert[600];
    pki(key, sizeof key, "ca/issued.key");
    pki(cert, sizeof cert, "ca/issued.pem");
    struct rp_cert c;
    struct rp_view der = rpt_cert_der(&g_a, cert);
    cr_assert_eq(rp_cert_parse(der.p, der.len, &c), RP_OK);
    struct rpt_certreq r = {.spki = c.spki, .pop = RPT_POP_SIGNATURE, .pop_key = key};
    if (subject)
        r.subject = rpt_name(&g_a, subject);
    return r;
}

static const char *const DEV1 = "C=DE, O=Vendor, CN=Device 1, serialNumber=SN0001";

static struct rp_view dev1_ir_with(const struct rpt_certreq *r, size_t n, struct rp_view gi)
{
    size_t len;
    uint8_t *base = capture("ir", "vendor/dev1", NULL, &len);
    struct rp_view out =
        resign(base, len, "vendor/dev1.key", rpt_certreqs(&g_a, RP_CMP_IR, r, n), gi);
    free(base);
    return out;
}

static struct rp_view name_attr(struct rp_view name, const char *label)
{
    struct rp_view oid, v = RP_VIEW_NULL;
    cr_assert_eq(rp_name_attr_oid(label, &oid, NULL), RP_OK);
    rp_name_find(name, oid, &v);
    return v;
}

/* ---- 1. the subject is the authenticated identity ------------------------------------ */

Test(policy, a_device_asking_for_another_devices_serial_number_is_refused)
{
    size_t len;
    const char *other[] = {"-subject", "/C=DE/O=Vendor/CN=Device 2/serialNumber=SN0002", NULL};
    uint8_t *b = capture("ir", "vendor/dev1", other, &len);
    expect_refused(P_CHECK, fresh(b, len, "vendor/dev1.key"), RP_FI_BAD_CERT_TEMPLATE,
                   "SN0001 asks for serialNumber=SN0002");
    free(b);
    const char *none[] = {"-subject", "/CN=Device 1", NULL};
    b = capture("ir", "vendor/dev1", none, &len);
    expect_refused(P_CHECK, fresh(b, len, "vendor/dev1.key"), RP_FI_BAD_CERT_TEMPLATE,
                   "a subject without the bound serialNumber");
    free(b);
    const char *title[] = {"-subject", "/CN=Device 1/title=Admin/serialNumber=SN0001", NULL};
    b = capture("ir", "vendor/dev1", title, &len);
    expect_refused(P_CHECK, fresh(b, len, "vendor/dev1.key"), RP_FI_BAD_CERT_TEMPLATE,
                   "an attribute outside subject_attributes");
    free(b);
    b = capture("ir", "vendor/dev1", NULL, &len); /* openssl asks for its own subject */
    struct rp_cmp_msg *m = expect_forwarded(P_CHECK, fresh(b, len, "vendor/dev1.key"), "SN0001");
    free(b);
    const struct rp_crmf_req *r = &m->body.reqs.reqs[0];
    cr_expect(rp_view_eq(name_attr(r->tmpl.subject, "serialNumber"), rp_view_str("SN0001")));
    cr_expect_eq(r->pop.type, RP_CRMF_POP_SIGNATURE, "check keeps the device's own POP");
}

Test(policy, a_mac_kid_may_ask_for_its_subject_only)
{
    size_t len;
    uint8_t *b = rpt_capture_mac(g_dir, g_pki, "ir", "pbm-secret-9", "kid-9",
                                 "/CN=Pump 10/serialNumber=P9", &len);
    cr_assert_not_null(b);
    struct rpt_mut m = {.mac = RPT_MAC_PBM, .mac_secret = "pbm-secret-9"};
    expect_refused(P_MAC, rpt_rebuild(&g_a, b, len, &m), RP_FI_BAD_CERT_TEMPLATE,
                   "another subject than subject=");
    free(b);
    b = rpt_capture_mac(g_dir, g_pki, "ir", "pbm-secret-9", "kid-9", "/CN=Pump 9/serialNumber=P9",
                        &len);
    cr_assert_not_null(b);
    struct rp_cmp_msg *f = expect_forwarded(P_MAC, rpt_rebuild(&g_a, b, len, &m), "subject=");
    cr_expect(
        rp_view_eq(name_attr(f->body.reqs.reqs[0].tmpl.subject, "CN"), rp_view_str("Pump 9")));
    free(b);
}

/* ---- 1. rewrite: the RA writes subject and SAN, checks POP, forwards raVerified ------- */

Test(policy, rewrite_writes_the_identity_and_forwards_raverified)
{
    size_t len;
    const char *lie[] = {"-subject", "/CN=Device 2/serialNumber=SN0002", "-sans",
                         "evil.example.net", NULL};
    uint8_t *b = capture("ir", "vendor/dev1", lie, &len);
    struct rp_cmp_msg orig;
    uint8_t *copy = rp_arena_dup(&g_a, b, len);
    cr_assert_eq(rp_cmp_decode(copy, len, &g_a, &orig, NULL), RP_OK);
    struct rp_cmp_msg *m = expect_forwarded(P_REWR, fresh(b, len, "vendor/dev1.key"), "rewrite");
    free(b);
    const struct rp_crmf_req *r = &m->body.reqs.reqs[0];
    cr_expect(rp_view_eq(r->tmpl.subject, rpt_name(&g_a, REWRITTEN)), "the subject the RA wrote");
    cr_expect(rp_view_eq(r->tmpl.public_key_raw, orig.body.reqs.reqs[0].tmpl.public_key_raw),
              "the device's key");
    cr_expect_eq(r->pop.type, RP_CRMF_POP_RA_VERIFIED);
    struct rp_ext e[8];
    size_t n;
    cr_assert_eq(rp_ext_list(r->tmpl.extensions_raw, e, 8, &n), RP_OK);
    cr_assert_eq(n, 1, "only the SAN the RA wrote");
    struct rp_cmp_gname g[4];
    size_t ng;
    cr_assert_eq(rp_ext_general_names(e[0].value, g, 4, &ng), RP_OK);
    cr_assert_eq(ng, 1);
    cr_expect(
        rp_view_eq(rp_ext_general_name_value(&g[0]), rp_view_str("SN0001.devices.example.net")));
    char ra[600];
    pki(ra, sizeof ra, "operator/ra.pem");
    struct rp_cert rac;
    struct rp_view rader = rpt_cert_der(&g_a, ra);
    cr_assert_eq(rp_cert_parse(rader.p, rader.len, &rac), RP_OK);
    cr_expect(rp_view_eq(m->header.sender.name, rac.subject), "signed by the RA");
    /* the RA asserts POP only after checking it: a POP by another key is refused */
    char other[600];
    pki(other, sizeof other, "vendor/dev2.key");
    struct rpt_certreq bad = new_key_request("CN=x");
    bad.pop_key = other;
    expect_refused(P_REWR, dev1_ir_with(&bad, 1, RP_VIEW_NULL), RP_FI_BAD_POP,
                   "rewrite with a POP by another key");
}

/* ---- 2. extensions, validity, profiles, request count ---------------------------------- */

Test(policy, extensions_come_from_the_domains_allowlists)
{
    static const uint8_t ku_cert_sign[] = {0x03, 0x02, 0x02, 0x04}; /* keyCertSign */
    static const uint8_t ku_sign[] = {0x03, 0x02, 0x07, 0x80};      /* digitalSignature */
    static const uint8_t eku_server[] = {0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06,
                                         0x01, 0x05, 0x05, 0x07, 0x03, 0x01};
    static const uint8_t eku_client[] = {0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06,
                                         0x01, 0x05, 0x05, 0x07, 0x03, 0x02};
    static const uint8_t bc_ca[] = {0x30, 0x03, 0x01, 0x01, 0xff};
    static const uint8_t policies[] = {0x30, 0x07, 0x30, 0x05, 0x06, 0x03, 0x2a, 0x03, 0x04};
    static const struct {
        const char *oid;
        size_t oid_len;
        const uint8_t *v;
        size_t len;
        const char *what;
    } bad[] = {
        {RP_OID_CE_KEY_USAGE, 3, ku_cert_sign, sizeof ku_cert_sign, "keyUsage keyCertSign"},
        {RP_OID_CE_EXT_KEY_USE, 3, eku_server, sizeof eku_server, "EKU serverAuth"},
        {RP_OID_CE_BASIC_CONS, 3, bc_ca, sizeof bc_ca, "basicConstraints cA"},
        {"\x55\x1d\x20", 3, policies, sizeof policies, "certificatePolicies"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct rpt_certreq r = new_key_request(DEV1);
        struct rp_view ext = rpt_ext(&g_a, rp_view_make(bad[i].oid, bad[i].oid_len), false,
                                     rp_view_make(bad[i].v, bad[i].len));
        r.exts = &ext;
        r.n_exts = 1;
        expect_refused(P_CHECK, dev1_ir_with(&r, 1, RP_VIEW_NULL), RP_FI_BAD_CERT_TEMPLATE,
                       bad[i].what);
    }
    size_t len;
    const char *ip[] = {"-subject", "/C=DE/O=Vendor/CN=Device 1/serialNumber=SN0001", "-sans",
                        "127.0.0.1", NULL};
    uint8_t *b = capture("ir", "vendor/dev1", ip, &len);
    expect_refused(P_CHECK, fresh(b, len, "vendor/dev1.key"), RP_FI_BAD_CERT_TEMPLATE,
                   "a SAN of type iPAddress (san_types: dns, uri)");
    free(b);
    /* the control: what the allowlists name */
    const char *dns[] = {"-subject", "/C=DE/O=Vendor/CN=Device 1/serialNumber=SN0001", "-sans",
                         "device1.example.net", NULL};
    b = capture("ir", "vendor/dev1", dns, &len);
    struct rp_cmp_msg *m = expect_forwarded(P_CHECK, fresh(b, len, "vendor/dev1.key"), "SAN dns");
    free(b);
    cr_expect(rp_view_present(m->body.reqs.reqs[0].tmpl.extensions_raw));
    struct rpt_certreq r = new_key_request(DEV1);
    struct rp_view ok[2] = {
        rpt_ext(&g_a, RP_OID_VIEW(RP_OID_CE_KEY_USAGE), true, rp_view_make(ku_sign, 4)),
        rpt_ext(&g_a, RP_OID_VIEW(RP_OID_CE_EXT_KEY_USE), false,
                rp_view_make(eku_client, sizeof eku_client)),
    };
    r.exts = ok;
    r.n_exts = 2;
    m = expect_forwarded(P_CHECK, dev1_ir_with(&r, 1, RP_VIEW_NULL), "keyUsage and EKU listed");
    struct rp_ext e[4];
    size_t n;
    cr_assert_eq(rp_ext_list(m->body.reqs.reqs[0].tmpl.extensions_raw, e, 4, &n), RP_OK);
    cr_expect_eq(n, 2);
}

Test(policy, validity_is_dropped_or_bounded_profiles_listed_requests_counted)
{
    size_t len;
    const char *d30[] = {"-days", "30", NULL};
    uint8_t *b = capture("ir", "vendor/dev1", d30, &len);
    struct rp_cmp_msg *m =
        expect_forwarded(P_CHECK, fresh(b, len, "vendor/dev1.key"), "validity: drop");
    cr_expect_not(rp_view_present(m->body.reqs.reqs[0].tmpl.validity_raw), "dropped");
    cr_expect_eq(m->body.reqs.reqs[0].pop.type, RP_CRMF_POP_RA_VERIFIED,
                 "a changed template carries the RA's raVerified");
    expect_refused(P_KEEP, fresh(b, len, "vendor/dev1.key"), RP_FI_BAD_CERT_TEMPLATE,
                   "30 days where 10 are allowed");
    free(b);
    const char *d5[] = {"-days", "5", NULL};
    b = capture("ir", "vendor/dev1", d5, &len);
    m = expect_forwarded(P_KEEP, fresh(b, len, "vendor/dev1.key"), "5 days of 10");
    cr_expect(rp_view_present(m->body.reqs.reqs[0].tmpl.validity_raw), "kept");
    cr_expect_eq(m->body.reqs.reqs[0].pop.type, RP_CRMF_POP_SIGNATURE, "nothing changed");
    free(b);
    /* certProfile */
    b = capture("ir", "vendor/dev1", NULL, &len);
    expect_refused(P_CHECK,
                   resign(b, len, "vendor/dev1.key", RP_VIEW_NULL,
                          rpt_general_info_profile(&g_a, "tls-server")),
                   RP_FI_BAD_CERT_TEMPLATE, "certProfile not listed");
    m = expect_forwarded(
        P_CHECK,
        resign(b, len, "vendor/dev1.key", RP_VIEW_NULL, rpt_general_info_profile(&g_a, "device")),
        "certProfile listed");
    cr_expect_eq(m->header.n_general_info, 1);
    free(b);
    /* max_requests */
    struct rpt_certreq two[2] = {new_key_request(DEV1), new_key_request(DEV1)};
    expect_refused(P_CHECK, dev1_ir_with(two, 2, RP_VIEW_NULL), RP_FI_BAD_REQUEST,
                   "two CertReqMsg, max_requests 1");
    m = expect_forwarded(P_KEEP, dev1_ir_with(two, 2, RP_VIEW_NULL), "two of max_requests 2");
    cr_expect_eq(m->body.reqs.n, 2);
}

/* ---- 3. p10cr and kur -------------------------------------------------------------------- */

/* A p10cr of dev1 for a CSR of the new key: subject as "CN=…\nserialNumber=…" lines of an
 * openssl config, an -addext (or "" for none), and a challengePassword when asked. */
static uint8_t *p10cr_with(const char *dn_lines, const char *addext, bool challenge, size_t *len)
{
    static int seq;
    char csr[600], key[600], sh[4096], cnf[600], text[1024];
    pki(key, sizeof key, "ca/issued.key");
    snprintf(csr, sizeof csr, "%s/req-%d.csr", g_dir, seq);
    snprintf(cnf, sizeof cnf, "%s/req-%d.cnf", g_dir, seq++);
    snprintf(text, sizeof text,
             "[req]\nprompt=no\ndistinguished_name=dn\nattributes=attrs\n[dn]\n%s\n[attrs]\n%s",
             dn_lines, challenge ? "challengePassword=letmein\n" : "");
    cr_assert_eq(rpt_write_file(cnf, text, strlen(text)), 0);
    snprintf(sh, sizeof sh, "openssl req -new -config %s -key %s %s%s%s -out %s", cnf, key,
             *addext ? "-addext '" : "", addext, *addext ? "'" : "", csr);
    const char *argv[] = {"bash", "-c", sh, NULL};
    cr_assert_eq(rpt_run(argv, 20000, NULL), 0, "%s", sh);
    const char *extra[] = {"-csr", csr, NULL};
    return capture("p10cr", "vendor/dev1", extra, len);
}

Test(policy, p10cr_is_held_to_the_same_policy)
{
    static const char *const sn1 = "CN=Device 1\nserialNumber=SN0001";
    size_t len;
    uint8_t *b = p10cr_with("CN=Device 1\nserialNumber=SN0002", "", false, &len);
    expect_refused(P_CHECK, fresh(b, len, "vendor/dev1.key"), RP_FI_BAD_CERT_TEMPLATE,
                   "CSR subject with another serialNumber");
    free(b);
    b = p10cr_with(sn1, "basicConstraints=critical,CA:TRUE", false, &len);
    expect_refused(P_CHECK, fresh(b, len, "vendor/dev1.key"), RP_FI_BAD_CERT_TEMPLATE,
                   "extensionRequest asks for a CA");
    free(b);
    b = p10cr_with(sn1, "", true, &len);
    expect_refused(P_CHECK, fresh(b, len, "vendor/dev1.key"), RP_FI_BAD_CERT_TEMPLATE,
                   "a challengePassword attribute");
    free(b);
    b = p10cr_with(sn1, "keyUsage=critical,digitalSignature", false, &len);
    struct rp_cmp_msg *m = expect_forwarded(P_CHECK, fresh(b, len, "vendor/dev1.key"), "p10cr");
    cr_expect_eq(m->body.type, RP_CMP_P10CR);
    free(b);
}

Test(policy, kur_keeps_the_subject_of_the_certificate_it_renews)
{
    size_t len;
    char old[600];
    pki(old, sizeof old, "ca/issued.pem");
    const char *renamed[] = {"-oldcert", old, "-subject",
                             "/O=Operator/CN=Device 1/serialNumber=SN0002", NULL};
    uint8_t *b = capture("kur", "ca/issued", renamed, &len);
    expect_refused(P_OPER, fresh(b, len, "ca/issued.key"), RP_FI_BAD_CERT_TEMPLATE,
                   "kur asks for another subject");
    expect_refused(P_OPERX, fresh(b, len, "ca/issued.key"), RP_FI_BAD_CERT_TEMPLATE,
                   "kur_subject_change, but another device's serialNumber");
    free(b);
    const char *cn[] = {"-oldcert", old, "-subject", "/O=Operator/CN=Renamed/serialNumber=SN0001",
                        NULL};
    b = capture("kur", "ca/issued", cn, &len);
    expect_refused(P_OPER, fresh(b, len, "ca/issued.key"), RP_FI_BAD_CERT_TEMPLATE,
                   "kur renames the device");
    expect_forwarded(P_OPERX, fresh(b, len, "ca/issued.key"), "kur_subject_change: true");
    free(b);
    const char *same[] = {"-oldcert", old, NULL};
    b = capture("kur", "ca/issued", same, &len);
    struct rp_view kur = fresh(b, len, "ca/issued.key");
    struct rp_cmp_msg *m = expect_forwarded(P_OPER, kur, "kur of the same subject");
    cr_expect(rp_view_eq(m->raw, kur), "kur forwarded unchanged");
    free(b);
}

/* ---- 4. central key generation ----------------------------------------------------------- */

/* The CA's answer to `req`: ip with the certificate and a privateKey [0] (EnvelopedData
 * stand-in), unprotected (no ca_trust in this configuration). */
static struct rp_view canned_ip(const struct rp_cmp_msg *req)
{
    static const uint8_t nonce[16] = "canned-ca-nonce!";
    char cert[600];
    pki(cert, sizeof cert, "ca/issued.pem");
    struct rp_view c = rpt_cert_der(&g_a, cert), hdr, body, out;
    struct rp_view name = rpt_name(&g_a, "O=Operator, CN=Mock CA");
    cr_assert_eq(rp_cmp_enc_response_header(&g_a, req, name, RP_VIEW_NULL, RP_VIEW_NULL,
                                            rp_view_make(nonce, 16), time(NULL), &hdr),
                 RP_OK);
    struct rp_derw w;
    rp_derw_init(&w, &g_a, c.len + 256);
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_CMP_IP));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE); /* CertResponse */
    rp_derw_int64(&w, RP_DER_INTEGER, 0);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, RP_CMP_STATUS_ACCEPTED);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_SEQUENCE); /* CertifiedKeyPair */
    rp_derw_begin(&w, RP_DER_CTX_CONS(0));
    rp_derw_raw(&w, c);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(0)); /* privateKey */
    rp_derw_begin(&w, RP_DER_CTX_CONS(0));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, 2);
    rp_derw_octets(&w, rp_view_str("the device's private key, enveloped"));
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &body), RP_OK);
    cr_assert_eq(rp_cmp_enc_message(&g_a, hdr, body, RP_VIEW_NULL, NULL, 0, &out), RP_OK);
    return out;
}

Test(policy, central_key_generation_only_where_the_domain_allows_it)
{
    struct rpt_certreq r = new_key_request(DEV1);
    r.key_alg_only = true;
    r.pop = RPT_POP_NONE;
    struct rp_view req = dev1_ir_with(&r, 1, RP_VIEW_NULL);
    expect_refused(P_CHECK, req, RP_FI_NOT_AUTHORIZED, "central key generation, not allowed");
    struct rpt_certreq nopop = new_key_request(DEV1);
    nopop.pop = RPT_POP_NONE;
    expect_refused(P_KEEP, dev1_ir_with(&nopop, 1, RP_VIEW_NULL), RP_FI_BAD_POP,
                   "a key without POP is not central key generation");
    /* allowed: forwarded without POP, and the CA's answer (with the private key) relayed as
     * it is */
    struct rp_cmp_msg dec;
    uint8_t *copy = rp_arena_dup(&g_a, req.p, req.len);
    cr_assert_eq(rp_cmp_decode(copy, req.len, &g_a, &dec, NULL), RP_OK);
    struct rp_view ip = canned_ip(&dec);
    cr_assert_eq(rpt_write_file(g_answer, ip.p, ip.len), 0);
    struct rpt_resp resp;
    int before = sent();
    cr_assert_eq(
        rpt_http(g_port, "POST", P_KEEP, "application/pkixcmp", req.p, req.len, 30000, &resp), 0);
    unlink(g_answer);
    cr_expect_eq(resp.status, 200, "%s", g_rp.log);
    cr_expect(resp.body_len == ip.len && memcmp(resp.body, ip.p, ip.len) == 0,
              "the CA's answer reached the device unchanged (%zu bytes of %zu)", resp.body_len,
              ip.len);
    rpt_resp_free(&resp);
    cr_assert_eq(sent(), before + 1);
    struct rp_cmp_msg *m = last_sent();
    cr_expect_eq(m->body.reqs.reqs[0].pop.type, RP_CRMF_POP_NONE);
    cr_expect_eq(m->body.reqs.reqs[0].tmpl.public_key_bits.bytes.len, 0, "no key: the CA's");
}

/* ---- 5. nested ---------------------------------------------------------------------------- */

/* A nested message holding `inner`, protected by dev1. */
static struct rp_view nested_of(const struct rp_view *inner, size_t n)
{
    size_t len;
    uint8_t *base = capture("ir", "vendor/dev1", NULL, &len);
    struct rp_view body;
    cr_assert_eq(rp_cmp_enc_body_nested(&g_a, inner, n, &body), RP_OK);
    struct rp_view out = resign(base, len, "vendor/dev1.key", body, RP_VIEW_NULL);
    free(base);
    return out;
}

Test(policy, nested_is_refused_by_default_and_judged_inner_by_inner_where_allowed)
{
    size_t len;
    char old[600];
    pki(old, sizeof old, "vendor/dev1.pem");
    const char *rr_args[] = {"-oldcert", old, "-revreason", "0", NULL};
    uint8_t *rr = capture("rr", "vendor/dev1", rr_args, &len);
    struct rpt_mut unprot = {0}; /* no key: the inner rr goes unprotected */
    struct rp_view inner_rr = rpt_rebuild(&g_a, rr, len, &unprot);
    free(rr);
    expect_refused(P_CHECK, nested_of(&inner_rr, 1), RP_FI_NOT_AUTHORIZED,
                   "nested where the domain does not allow it");
    expect_refused(P_NEST, nested_of(&inner_rr, 1), RP_FI_NOT_AUTHORIZED,
                   "an unprotected rr, not allowed in the domain, inside nested");
    uint8_t *ir = capture("ir", "vendor/dev1", NULL, &len);
    struct rp_view inner_unprot = rpt_rebuild(&g_a, ir, len, &unprot);
    expect_refused(P_NEST, nested_of(&inner_unprot, 1), RP_FI_WRONG_INTEGRITY,
                   "an unprotected ir inside nested");
    const char *other[] = {"-subject", "/CN=Device 2/serialNumber=SN0002", NULL};
    size_t len2;
    uint8_t *ir2 = capture("ir", "vendor/dev1", other, &len2);
    struct rp_view two[2] = {fresh(ir, len, "vendor/dev1.key"),
                             fresh(ir2, len2, "vendor/dev1.key")};
    free(ir2);
    expect_refused(P_NEST, nested_of(two, 2), RP_FI_BAD_CERT_TEMPLATE,
                   "one good and one bad inner: the whole is refused");
    /* the control: a genuine ir inside nested, forwarded as the RA's nested of the inner ir
     * re-protected by the RA */
    struct rp_view good = fresh(ir, len, "vendor/dev1.key");
    free(ir);
    struct rp_cmp_msg *m = expect_forwarded(P_NEST, nested_of(&good, 1), "a genuine inner ir");
    cr_assert_eq(m->body.type, RP_CMP_NESTED);
    cr_assert_eq(m->body.nested.n, 1);
    const struct rp_cmp_msg *in = &m->body.nested.msgs[0];
    cr_expect_eq(in->body.type, RP_CMP_IR);
    cr_expect(rp_view_eq(in->header.sender.name, m->header.sender.name),
              "the inner ir is re-protected by the RA, like the outer message");
    cr_expect(rp_view_eq(name_attr(in->body.reqs.reqs[0].tmpl.subject, "serialNumber"),
                         rp_view_str("SN0001")));
}

/* ---- 6. proof of possession (RFC 4211 §4.1) ------------------------------------------------ */

Test(policy, proof_of_possession_binds_the_template_key_and_the_sender)
{
    /* a signed message of the RA's: some refusal */
    size_t len;
    uint8_t *b = capture("ir", "vendor/dev1", NULL, &len);
    struct rpt_mut flip = {.flip_protection = true};
    char key[600];
    pki(key, sizeof key, "vendor/dev1.key");
    flip.key_file = key;
    struct rp_cmp_msg err;
    cr_assert_eq(rpt_post_cmp(g_port, P_CHECK, rpt_rebuild(&g_a, b, len, &flip), &g_a, &err), 200);
    cr_assert_eq(err.body.type, RP_CMP_ERROR);
    struct rp_view pp;
    cr_assert_eq(rp_cmp_protected_part(&err, &g_a, &pp), RP_OK);
    uint8_t *as_input = rp_arena_dup(&g_a, pp.p, pp.len);
    as_input[0] = RP_DER_CTX_CONS(0);
    char ra[600];
    pki(ra, sizeof ra, "operator/ra.pem");
    struct rp_cert rac;
    struct rp_view rader = rpt_cert_der(&g_a, ra);
    cr_assert_eq(rp_cert_parse(rader.p, rader.len, &rac), RP_OK);
    /* the review's attack: the RA's own signature over its own DER as POP for its key */
    struct rpt_certreq attack = {.subject = rpt_name(&g_a, DEV1),
                                 .spki = rac.spki,
                                 .pop = RPT_POP_POPOSK,
                                 .poposk = rp_view_make(as_input, pp.len),
                                 .pop_sig = err.protection.bytes,
                                 .pop_alg = err.header.protection_alg.raw};
    expect_refused(P_CHECK, dev1_ir_with(&attack, 1, RP_VIEW_NULL), RP_FI_BAD_POP,
                   "poposkInput where the template has subject and key");
    attack.subject = RP_VIEW_NULL;
    expect_refused(P_REWR, dev1_ir_with(&attack, 1, RP_VIEW_NULL), RP_FI_BAD_POP,
                   "poposkInput that is not a POPOSigningKeyInput");
    /* a well-formed poposkInput for someone else, or for another key */
    struct rp_cmp_msg dev;
    uint8_t *copy = rp_arena_dup(&g_a, b, len);
    cr_assert_eq(rp_cmp_decode(copy, len, &g_a, &dev, NULL), RP_OK);
    struct rpt_certreq r = new_key_request(NULL);
    r.pop = RPT_POP_POPOSK;
    r.poposk_sender = rpt_directory_name(&g_a, rpt_name(&g_a, "C=DE, O=Vendor, CN=Device 2"));
    expect_refused(P_REWR, dev1_ir_with(&r, 1, RP_VIEW_NULL), RP_FI_BAD_POP,
                   "poposkInput naming another sender");
    struct rpt_certreq k = new_key_request(NULL);
    k.pop = RPT_POP_POPOSK;
    k.poposk_sender = dev.header.sender.raw;
    char other[600], d2path[600];
    pki(other, sizeof other, "vendor/dev2.key");
    pki(d2path, sizeof d2path, "vendor/dev2.pem");
    struct rp_cert d2;
    struct rp_view d2der = rpt_cert_der(&g_a, d2path);
    cr_assert_eq(rp_cert_parse(d2der.p, d2der.len, &d2), RP_OK);
    /* poposkInput and its signature for dev2's key, the template for the new key */
    struct rpt_certreq mixed = k;
    struct rp_derw w;
    rp_derw_init(&w, &g_a, 512);
    rp_derw_begin(&w, RP_DER_CTX_CONS(0));
    rp_derw_begin(&w, RP_DER_CTX_CONS(0));
    rp_derw_raw(&w, dev.header.sender.raw);
    rp_derw_end(&w);
    rp_derw_raw(&w, d2.spki);
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &mixed.poposk), RP_OK);
    mixed.pop_key = other;
    expect_refused(P_REWR, dev1_ir_with(&mixed, 1, RP_VIEW_NULL), RP_FI_BAD_POP,
                   "poposkInput's publicKey is not the template's");
    /* the control: poposkInput for the template's key and the authenticated sender */
    struct rp_cmp_msg *m =
        expect_forwarded(P_REWR, dev1_ir_with(&k, 1, RP_VIEW_NULL), "a genuine poposkInput");
    cr_expect_eq(m->body.reqs.reqs[0].pop.type, RP_CRMF_POP_RA_VERIFIED);
    cr_expect(rp_view_eq(m->body.reqs.reqs[0].tmpl.subject, rpt_name(&g_a, REWRITTEN)));
    free(b);
}

/* ---- 7. identities keyed by (anchor, serial) -------------------------------------------- */

Test(policy, allowlist_and_transactions_are_keyed_by_vendor_and_serial)
{
    size_t len;
    /* another vendor trusted in the same domain, its device also called SN0001 */
    uint8_t *u = capture("ir", "unknown/dev", NULL, &len);
    expect_refused(P_VEND, fresh(u, len, "unknown/dev.key"), RP_FI_NOT_AUTHORIZED,
                   "unknown's SN0001 against the list of acme's SN0001");
    size_t dlen;
    uint8_t *d = capture("ir", "vendor/dev1", NULL, &dlen);
    expect_forwarded(P_VEND, fresh(d, dlen, "vendor/dev1.key"), "acme's SN0001");
    cr_expect_geq(rpt_file_count(g_rp.log, "\"serial\":\"acme/SN0001\""), 1, "%s", g_rp.log);
    /* the transaction namespace: acme/SN0001 opens a transaction, unknown/SN0001 may not use
     * it (with plain serials they were the same owner) */
    static const uint8_t txid[16] = "shared-txn-00001";
    char key[600];
    pki(key, sizeof key, "vendor/dev1.key");
    struct rpt_mut acme = {.key_file = key, .txid = rp_view_make(txid, sizeof txid)};
    expect_forwarded(P_VEND2, rpt_rebuild(&g_a, d, dlen, &acme), "acme opens the transaction");
    pki(key, sizeof key, "unknown/dev.key");
    struct rpt_mut other = {.key_file = key, .txid = rp_view_make(txid, sizeof txid)};
    expect_refused(P_VEND2, rpt_rebuild(&g_a, u, len, &other), RP_FI_TRANSACTION_ID_IN_USE,
                   "unknown's SN0001 in acme's SN0001's transaction");
    free(u);
    free(d);
    /* an allowlist line without its anchor cannot be read in a domain of several vendors */
    char cfg2[700], list[700], log[700], bin[600];
    snprintf(list, sizeof list, "%s/vendors.txt", g_dir);
    cr_assert_eq(rpt_write_file(list, "SN0001\n", 7), 0);
    snprintf(bin, sizeof bin, "%s/raproxy", rpt_bin());
    snprintf(log, sizeof log, "%s/check.log", g_dir);
    snprintf(cfg2, sizeof cfg2, "%s", g_cfg);
    const char *check[] = {bin, "--check-config", "--config", cfg2, NULL};
    cr_expect_eq(rpt_run(check, 20000, log), 1);
    cr_expect_geq(rpt_file_count(log, "line 1: the domain has several anchor names"), 1, "%s", log);
}

/* ---- 8. revocation reasons (recording CA; the real mock CA in test_pki_info) ------------ */

Test(policy, a_device_may_not_lift_a_hold)
{
    size_t len;
    char old[600];
    pki(old, sizeof old, "ca/issued.pem");
    const char *unhold[] = {"-oldcert", old, "-revreason", "8", NULL};
    uint8_t *b = capture("rr", "ca/issued", unhold, &len);
    expect_refused(P_OPER, fresh(b, len, "ca/issued.key"), RP_FI_NOT_AUTHORIZED,
                   "removeFromCRL by the device");
    free(b);
    const char *hold[] = {"-oldcert", old, "-revreason", "6", NULL};
    b = capture("rr", "ca/issued", hold, &len);
    expect_refused(P_OPER, fresh(b, len, "ca/issued.key"), RP_FI_NOT_AUTHORIZED,
                   "certificateHold by the device");
    free(b);
    const char *compromised[] = {"-oldcert", old, "-revreason", "1", NULL};
    b = capture("rr", "ca/issued", compromised, &len);
    struct rp_cmp_msg *m =
        expect_forwarded(P_OPER, fresh(b, len, "ca/issued.key"), "keyCompromise by the device");
    cr_expect_eq(m->body.rr.items[0].reason, 1);
    free(b);
}

/* ccr, krr, popdecr and the announcements: a device's own protection on them buys nothing
 * where the domain does not list them (and popdecr and announcements cannot be listed). */
Test(policy, other_bodies_from_devices_are_refused_by_default)
{
    char dev[600];
    pki(dev, sizeof dev, "vendor/dev1.pem");
    struct rp_view cert = rpt_cert_der(&g_a, dev);
    struct rpt_certreq r = new_key_request(DEV1);
    static const unsigned announcements[] = {RP_CMP_CKUANN, RP_CMP_CANN, RP_CMP_RANN,
                                             RP_CMP_POPDECR};
    struct rp_view bodies[6];
    size_t n = 0;
    bodies[n++] = rpt_certreqs(&g_a, RP_CMP_KRR, &r, 1);
    bodies[n++] = rpt_certreqs(&g_a, RP_CMP_CCR, &r, 1);
    for (size_t i = 0; i < sizeof announcements / sizeof announcements[0]; i++) {
        struct rp_derw w;
        rp_derw_init(&w, &g_a, cert.len * 3 + 64);
        rp_derw_begin(&w, RP_DER_CTX_CONS(announcements[i]));
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        if (announcements[i] == RP_CMP_POPDECR) {
            rp_derw_int64(&w, RP_DER_INTEGER, 1);
        } else {
            rp_derw_raw(&w, cert);
            if (announcements[i] == RP_CMP_CKUANN) {
                rp_derw_raw(&w, cert);
                rp_derw_raw(&w, cert);
            }
        }
        rp_derw_end(&w);
        rp_derw_end(&w);
        cr_assert_eq(rp_derw_finish(&w, &bodies[n++]), RP_OK);
    }
    size_t len;
    uint8_t *b = capture("ir", "vendor/dev1", NULL, &len);
    for (size_t i = 0; i < n; i++) {
        char what[64];
        snprintf(what, sizeof what, "body %u from a device", bodies[i].p[0] & 0x1fu);
        expect_refused(P_CHECK, resign(b, len, "vendor/dev1.key", bodies[i], RP_VIEW_NULL),
                       RP_FI_NOT_AUTHORIZED, what);
    }
    free(b);
}
