/* Validation through the RA, end to end with real processes.
 *
 * PKI information at the edge (RFC 9483 §4.3): `openssl cmp -cmd genm -infotype …` devices
 * over TLS → raproxy with `genm: local` whose upstream is a closed port, so only a local
 * answer can succeed; the device checks the RA's signature on the genp (-trusted operator
 * root) and the genp it saved (-rspout) is decoded here. crlStatusList, which OpenSSL 3.0's
 * CLI cannot ask for, is sent as a signed genm built here.
 *
 * Suspension and revocation: rr with certificateHold / removeFromCRL through raproxy to an
 * `openssl cmp -port` mock CA, by the device itself and by a domain administrator; an
 * unrelated certificate of the same CA gets notAuthorized and the CA never sees it. */
#include "../ra/genm_build.h"
#include "fixtures.h"
#include "support.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MANUF ".well-known/cmp/p/manufacturer"
#define OPER  ".well-known/cmp/p/operator"

/* CertReqTemplateContent { certTemplate { subject [5] empty Name } } */
static const uint8_t template_der[] = {0x30, 0x06, 0x30, 0x04, 0xa5, 0x02, 0x30, 0x00};

struct pk {
    char *dir;
    const char *pki;
    int port, ca;
    struct rpt_proc rp, mock;
    bool has_mock;
};

static int sh(const struct pk *e, const char *cmd)
{
    char log[700];
    snprintf(log, sizeof log, "%s/sh.log", e->dir);
    const char *argv[] = {"bash", "-c", cmd, NULL};
    return rpt_run(argv, 60000, log);
}

/* Certificates this test issues: under operator ica an administrator and an unrelated
 * device; a new operator root with its cross certificates (root CA key update). */
static void make_certs(struct pk *e)
{
    char cmd[6000];
    snprintf(cmd, sizeof cmd,
             "set -e; cd %s; P=%s\n"
             "printf '[ee]\\nbasicConstraints=critical,CA:FALSE\\n"
             "keyUsage=critical,digitalSignature\\nsubjectKeyIdentifier=hash\\n"
             "authorityKeyIdentifier=keyid:always\\n[ca]\\nbasicConstraints=critical,CA:TRUE\\n"
             "keyUsage=critical,keyCertSign,cRLSign\\nsubjectKeyIdentifier=hash\\n"
             "authorityKeyIdentifier=keyid:always\\n' > ext.cnf\n"
             "ee() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key;"
             " openssl req -new -key $1.key -subj \"$2\" -out $1.csr;"
             " openssl x509 -req -in $1.csr -CA $P/operator/ica.pem -CAkey $P/operator/ica.key"
             " -set_serial 0x$(openssl rand -hex 8) -days 30 -extfile ext.cnf -extensions ee"
             " -out $1.pem; }\n"
             "ee admin '/O=Operator/CN=Fleet Administrator'\n"
             "ee other '/O=Operator/CN=Device 2/serialNumber=SN0002'\n"
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out newroot.key\n"
             "openssl req -x509 -new -key newroot.key -subj '/O=Operator/CN=Operator Root CA 2'"
             " -days 30 -addext 'basicConstraints=critical,CA:TRUE'"
             " -addext 'keyUsage=critical,keyCertSign,cRLSign' -out newroot.pem\n"
             "openssl req -new -key newroot.key -subj '/O=Operator/CN=Operator Root CA 2'"
             " -out nwo.csr\n"
             "openssl x509 -req -in nwo.csr -CA $P/operator/root.pem -CAkey $P/operator/root.key"
             " -set_serial 0x$(openssl rand -hex 8) -days 30 -extfile ext.cnf -extensions ca"
             " -out newwithold.pem\n"
             "openssl x509 -x509toreq -in $P/operator/root.pem -signkey $P/operator/root.key"
             " -out own.csr\n"
             "openssl x509 -req -in own.csr -CA newroot.pem -CAkey newroot.key"
             " -set_serial 0x$(openssl rand -hex 8) -days 30 -extfile ext.cnf -extensions ca"
             " -out oldwithnew.pem\n",
             e->dir, e->pki);
    cr_assert_eq(sh(e, cmd), 0, "see %s/sh.log", e->dir);
    char tpl[700];
    snprintf(tpl, sizeof tpl, "%s/template.der", e->dir);
    cr_assert_eq(rpt_write_file(tpl, template_der, sizeof template_der), 0);
}

/* upstream: the mock CA's port, or 0 for a closed port (nothing may be forwarded). */
static void up(struct pk *e, bool mock)
{
    memset(e, 0, sizeof *e);
    e->pki = rpt_pki();
    cr_assert_not_null(e->pki);
    e->dir = rpt_tmpdir();
    e->port = rpt_free_port();
    e->ca = rpt_free_port();
    make_certs(e);
    if (mock) {
        char trusted[600];
        snprintf(trusted, sizeof trusted, "%s/operator/root.pem", e->pki);
        cr_assert_eq(rpt_mockca_start(&e->mock, e->dir, e->ca, trusted, NULL), 0);
        e->has_mock = true;
    }
    const char *p = e->pki, *d = e->dir;
    char cfg[8192], path[600];
    snprintf(cfg, sizeof cfg,
             "listeners:\n"
             "  - address: 127.0.0.1:%d\n"
             "    tls: {cert: %s/tls/server.pem, key: %s/tls/server.key}\n"
             "upstream: {url: \"http://127.0.0.1:%d/pkix/\", max_connections: 1, "
             "keep_alive: false, timeout_ms: 20000}\n"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
             "chain: %s/operator/ra.chain.pem}\n"
             "domains:\n"
             "  - name: manufacturer\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    crls: [%s/vendor/crl.pem]\n"
             "    allow: [ir, certConf, genm, error]\n"
             "    genm: local\n"
             "  - name: operator\n"
             "    trust_anchors: [%s/operator/root.pem]\n"
             "    intermediates: [%s/operator/ica.pem]\n"
             "    allow: [kur, rr, certConf, genm, error]\n"
             "    admins: [%s/admin.pem]\n"
             "    genm: local\n"
             "    pki_info:\n"
             "      ca_certs: %s/ca/chain.pem\n"
             "      root_ca_update: {new_with_new: %s/newroot.pem, "
             "new_with_old: %s/newwithold.pem, old_with_new: %s/oldwithnew.pem}\n"
             "      cert_req_template: %s/template.der\n",
             e->port, p, p, e->ca, p, p, p, p, p, p, p, d, p, d, d, d, d);
    snprintf(path, sizeof path, "%s/raproxy.yaml", e->dir);
    cr_assert_eq(rpt_write_file(path, cfg, strlen(cfg)), 0);
    cr_assert_eq(rpt_raproxy_start(&e->rp, e->dir, path, e->port), 0, "see %s", e->rp.log);
}

static void down(struct pk *e)
{
    int st = rpt_stop(&e->rp, SIGTERM, 15000);
    if (e->has_mock)
        rpt_stop(&e->mock, SIGKILL, 2000);
    cr_expect_eq(st, 0, "raproxy exit %d (%s)", st, e->rp.log);
    rpt_rmdir(e->dir);
    free(e->dir);
}

/* openssl cmp as a device; who is relative to the PKI ("ca/issued") or, with a leading
 * '/', a path prefix of this test's own certificates. */
static int device(struct pk *e, const char *path, const char *cmd, const char *who,
                  const char *const *extra, char *log, size_t cap)
{
    char cert[700], key[700], ica[700];
    if (who[0] == '/') {
        snprintf(cert, sizeof cert, "%s%s.pem", e->dir, who);
        snprintf(key, sizeof key, "%s%s.key", e->dir, who);
    } else {
        snprintf(cert, sizeof cert, "%s/%s.pem", e->pki, who);
        snprintf(key, sizeof key, "%s/%s.key", e->pki, who);
    }
    snprintf(ica, sizeof ica, "%s/operator/ica.pem", e->pki);
    static int seq;
    snprintf(log, cap, "%s/device-%d-%s.log", e->dir, seq++, cmd);
    return rpt_device(e->dir, e->port, path, cmd, cert, key, ica, NULL, extra, log);
}

/* genm -infotype NAME from the operator device; the genp it accepted, decoded. */
static struct rp_cmp_msg *genm_infotype(struct pk *e, const char *infotype, struct rp_arena *a,
                                        uint8_t **keep)
{
    char log[700], rsp[700];
    snprintf(rsp, sizeof rsp, "%s/genp-%s.der", e->dir, infotype);
    const char *extra[] = {"-infotype", infotype, "-rspout", rsp, "-verbosity", "7", NULL};
    int rc = device(e, OPER, "genm", "ca/issued", extra, log, sizeof log);
    cr_assert_eq(rc, 0, "genm %s failed (RA signature or answer), see %s and %s", infotype, log,
                 e->rp.log);
    cr_expect_geq(rpt_file_count(log, "genp contains"), 1, "%s", log);
    size_t len;
    *keep = rpt_read_file(rsp, &len);
    cr_assert_not_null(*keep, "no -rspout file %s", rsp);
    struct rp_cmp_msg *m = rp_arena_calloc(a, 1, sizeof *m);
    cr_assert_eq(rp_cmp_decode(*keep, len, a, m, NULL), RP_OK);
    cr_assert_eq(m->body.type, RP_CMP_GENP);
    cr_assert_eq(m->body.gen.n, 1);
    return m;
}

static struct rp_view cert_of(const char *path, struct rp_arena *a)
{
    size_t len = 0;
    uint8_t *der = tg_cert_der(path, &len);
    cr_assert_not_null(der, "%s", path);
    struct rp_view v = rp_view_make(rp_arena_dup(a, der, len), len);
    free(der);
    return v;
}

static size_t seq_items(struct rp_view seq, struct rp_view *items, size_t cap)
{
    struct rp_der d, in;
    struct rp_der_tlv t;
    size_t n = 0;
    rp_der_init(&d, seq.p, seq.len, NULL);
    cr_assert_eq(rp_der_expect_enter(&d, RP_DER_SEQUENCE, &in, NULL, "seq"), RP_OK);
    while (rp_der_left(&in) > 0 && n < cap) {
        cr_assert_eq(rp_der_next(&in, &t), RP_OK);
        items[n++] = t.raw;
    }
    return n;
}

/* Needs the pipeline to call ra_genm_answer() (see src/ra/genm.c): until then the genm is
 * forwarded to the closed upstream and the device gets systemUnavail. */
Test(pki_info, genm_answered_by_the_ra_without_the_ca, .timeout = 240)
{
    struct pk e;
    up(&e, false);
    struct rp_arena a;
    cr_assert_eq(rp_arena_new(&a, 1u << 20), RP_OK);
    char path[700];
    uint8_t *k1, *k2, *k3;

    struct rp_cmp_msg *m = genm_infotype(&e, "caCerts", &a, &k1);
    cr_expect(rp_oid_is(m->body.gen.items[0].type, RP_OID_IT_CA_CERTS));
    struct rp_view certs[4];
    cr_assert_eq(seq_items(m->body.gen.items[0].value, certs, 4), 2);
    snprintf(path, sizeof path, "%s/operator/ica.pem", e.pki);
    cr_expect(rp_view_eq(certs[0], cert_of(path, &a)));

    m = genm_infotype(&e, "rootCaKeyUpdate", &a, &k2);
    cr_expect(rp_oid_is(m->body.gen.items[0].type, RP_OID_IT_ROOT_CA_KEY_UPDATE));
    struct rp_view parts[4];
    cr_assert_eq(seq_items(m->body.gen.items[0].value, parts, 4), 3);
    snprintf(path, sizeof path, "%s/newroot.pem", e.dir);
    cr_expect(rp_view_eq(parts[0], cert_of(path, &a)), "newWithNew");

    m = genm_infotype(&e, "certReqTemplate", &a, &k3);
    cr_expect(
        rp_view_eq(m->body.gen.items[0].value, rp_view_make(template_der, sizeof template_der)));
    free(k1);
    free(k2);
    free(k3);
    rp_arena_free(&a);
    down(&e);
}

/* POST a DER PKIMessage to the manufacturer domain; the answer's bytes. */
static uint8_t *post(struct pk *e, struct rp_view msg, size_t *len)
{
    char in[700], out[700], cmd[3000];
    snprintf(in, sizeof in, "%s/post.der", e->dir);
    snprintf(out, sizeof out, "%s/answer.der", e->dir);
    cr_assert_eq(rpt_write_file(in, msg.p, msg.len), 0);
    unlink(out);
    snprintf(cmd, sizeof cmd,
             "curl -s --cacert %s/tls/ca.pem --resolve localhost:%d:127.0.0.1 "
             "-H 'Content-Type: application/pkixcmp' --data-binary @%s -o %s "
             "https://localhost:%d/" MANUF,
             e->pki, e->port, in, out, e->port);
    cr_assert_eq(sh(e, cmd), 0);
    return rpt_read_file(out, len);
}

/* Same wiring as above. */
Test(pki_info, crl_status_list_gets_only_a_newer_crl_from_the_ra, .timeout = 180)
{
    struct pk e;
    up(&e, false);
    struct rp_arena a;
    cr_assert_eq(rp_arena_new(&a, 1u << 20), RP_OK);
    char path[700];
    snprintf(path, sizeof path, "%s/vendor/dev1.key", e.pki);
    struct rp_privkey *key;
    cr_assert_eq(rp_privkey_load_pem(path, &key), RP_OK);
    snprintf(path, sizeof path, "%s/vendor/dev1.pem", e.pki);
    struct rp_view extra[2] = {cert_of(path, &a), RP_VIEW_NULL};
    snprintf(path, sizeof path, "%s/vendor/ica.pem", e.pki);
    extra[1] = cert_of(path, &a);
    struct rp_cert dev;
    cr_assert_eq(rp_cert_parse(extra[0].p, extra[0].len, &dev), RP_OK);
    snprintf(path, sizeof path, "%s/vendor/crl.der", e.pki);
    size_t crl_len;
    uint8_t *crl_der = rpt_read_file(path, &crl_len);
    struct rp_crl crl;
    cr_assert_eq(rp_crl_parse(crl_der, crl_len, &crl), RP_OK);
    snprintf(path, sizeof path, "%s/operator/ra.pem", e.pki);
    struct rp_view ra = cert_of(path, &a);

    int64_t since[] = {-1, crl.this_update};
    for (size_t i = 0; i < 2; i++) {
        struct rp_view st = tg_crl_status(&a, crl.issuer, since[i]);
        struct rp_view itav = tg_itav(&a, RP_OID_VIEW(TG_OID_CRL_STATUS_LIST), st);
        struct tg_req req;
        cr_assert_eq(tg_genm(&a, &req, dev.subject, &itav, 1, key, extra, 2), RP_OK);
        size_t len = 0;
        uint8_t *ans = post(&e, req.der, &len);
        cr_assert_not_null(ans);
        struct rp_cmp_msg m;
        cr_assert_eq(rp_cmp_decode(ans, len, &a, &m, NULL), RP_OK);
        cr_assert_eq(m.body.type, RP_CMP_GENP, "got body %d (see %s)", m.body.type, e.rp.log);
        cr_expect(rp_view_eq(m.header.recip_nonce.val, rp_view_make(req.nonce, 16)));
        cr_expect_eq(tg_verify_ra(&m, ra, &a), RP_OK, "signed by the RA");
        cr_assert_eq(m.body.gen.n, 1);
        cr_expect(rp_oid_is(m.body.gen.items[0].type, TG_OID_CRLS));
        struct rp_view v = m.body.gen.items[0].value;
        if (i == 0) {
            struct rp_view crls[2];
            cr_assert_eq(seq_items(v, crls, 2), 1);
            cr_expect(rp_view_eq(crls[0], rp_view_make(crl_der, crl_len)));
        } else {
            cr_expect_not(rp_view_present(v), "the device has the latest CRL");
        }
        free(ans);
    }
    rp_privkey_free(key);
    free(crl_der);
    rp_arena_free(&a);
    down(&e);
}

/* Revocation reasons (issue 15): a device may revoke its own certificate with the reasons of
 * rr_reasons (default unspecified, keyCompromise, affiliationChanged, superseded,
 * cessationOfOperation); certificateHold and removeFromCRL are for administrators only, so a
 * device an admin suspended cannot lift the hold itself. Checked with the real mock CA:
 * what it never saw is counted in its log. */
Test(pki_info, suspension_and_its_lifting_are_for_admins_only, .timeout = 240)
{
    struct pk e;
    up(&e, true);
    char log[700], old[700];
    snprintf(old, sizeof old, "%s/ca/issued.pem", e.pki);
    const char *hold[] = {"-oldcert", old, "-revreason", "6", NULL};
    const char *unhold[] = {"-oldcert", old, "-revreason", "8", NULL};
    int seen = rpt_file_count(e.mock.log, "RR");
    cr_expect_neq(device(&e, OPER, "rr", "ca/issued", hold, log, sizeof log), 0,
                  "a device must not suspend (certificateHold)");
    cr_expect_geq(rpt_file_count(log, "PKIFailureInfo: notAuthorized"), 1, "%s", log);
    cr_expect_neq(device(&e, OPER, "rr", "/other", hold, log, sizeof log), 0,
                  "another device must not suspend it");
    cr_expect_geq(rpt_file_count(log, "PKIFailureInfo: notAuthorized"), 1, "%s", log);
    cr_expect_eq(rpt_file_count(e.mock.log, "RR"), seen, "the CA never saw them: %s", e.mock.log);

    cr_expect_eq(device(&e, OPER, "rr", "/admin", hold, log, sizeof log), 0,
                 "admin suspends the device: %s / %s", log, e.rp.log);
    /* the attack: the suspended device lifts the hold itself */
    seen = rpt_file_count(e.mock.log, "RR");
    cr_expect_neq(device(&e, OPER, "rr", "ca/issued", unhold, log, sizeof log), 0,
                  "a device must not lift a hold (removeFromCRL)");
    cr_expect_geq(rpt_file_count(log, "PKIFailureInfo: notAuthorized"), 1, "%s", log);
    cr_expect_eq(rpt_file_count(e.mock.log, "RR"), seen, "the CA never saw it: %s", e.mock.log);
    cr_expect_eq(device(&e, OPER, "rr", "/admin", unhold, log, sizeof log), 0,
                 "admin lifts the hold (removeFromCRL): %s / %s", log, e.rp.log);
    /* the control: a device revoking itself for a device reason */
    const char *superseded[] = {"-oldcert", old, "-revreason", "4", NULL};
    cr_expect_eq(device(&e, OPER, "rr", "ca/issued", superseded, log, sizeof log), 0,
                 "device revokes itself (superseded): %s / %s", log, e.rp.log);
    cr_expect_geq(rpt_file_count(log, "received RP"), 1, "%s", log);
    const char *revoke[] = {"-oldcert", old, "-revreason", "1", NULL};
    cr_expect_eq(device(&e, OPER, "rr", "/admin", revoke, log, sizeof log), 0,
                 "admin revokes (keyCompromise): %s / %s", log, e.rp.log);
    down(&e);
}
