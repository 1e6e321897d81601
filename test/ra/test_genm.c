/* genm: local (RFC 9483 §4.3): what raproxy answers itself, decoded back and checked
 * against the configured files and the RA's signature; and which genm go to the CA. Also
 * the domain administrators that may revoke any certificate of their domain. */
#include "genm_build.h"
#include "ra/ra.h"
#include "raproxy/config.h"
#include "raproxy/exchange.h"
#include "raproxy/snapshot.h"
#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ARENA_CAP (1u << 20)

/* CertReqTemplateContent { certTemplate { subject [5] empty Name } } */
static const uint8_t template_der[] = {0x30, 0x06, 0x30, 0x04, 0xa5, 0x02, 0x30, 0x00};

struct fx {
    char *dir;
    const char *pki;
    struct rp_config *cfg;
    struct ra_state *st;
    struct rp_snapshot snap;
    struct rp_exchange ex;
    struct ra_exchange rx;
    struct rp_arena req_arena;
    struct tg_req req;
};

static void pki(const struct fx *f, char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", f->pki, rel);
}

/* extra: further domain keys, indented four spaces. */
static int fx_up(struct fx *f, const char *genm, const char *extra, bool pki_info)
{
    memset(f, 0, sizeof *f);
    f->pki = rpt_pki();
    cr_assert_not_null(f->pki);
    f->dir = rpt_tmpdir();
    char tpl[600], cfg[6000], path[600], pi[2000] = "";
    snprintf(tpl, sizeof tpl, "%s/template.der", f->dir);
    cr_assert_eq(rpt_write_file(tpl, template_der, sizeof template_der), 0);
    const char *p = f->pki;
    if (pki_info)
        snprintf(pi, sizeof pi,
                 "    pki_info:\n"
                 "      ca_certs: %s/ca/chain.pem\n"
                 "      root_ca_update: {new_with_new: %s/tls/ca.pem, new_with_old: "
                 "%s/operator/ica.pem, old_with_new: %s/vendor/ica.pem}\n"
                 "      cert_req_template: %s\n",
                 p, p, p, p, tpl);
    snprintf(cfg, sizeof cfg,
             "listeners: [{address: 127.0.0.1:1, tls: off}]\n"
             "upstream: {url: \"http://127.0.0.1:1/pkix/\"}\n"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
             "chain: %s/operator/ra.chain.pem}\n"
             "domains:\n"
             "  - name: operator\n"
             "    trust_anchors: [%s/operator/root.pem]\n"
             "    intermediates: [%s/operator/ica.pem]\n"
             "    crls: [%s/vendor/crl.pem]\n"
             "    allow: [genm, rr]\n"
             "    genm: %s\n"
             "%s%s",
             p, p, p, p, p, p, genm, pi, extra ? extra : "");
    snprintf(path, sizeof path, "%s/raproxy.yaml", f->dir);
    cr_assert_eq(rpt_write_file(path, cfg, strlen(cfg)), 0);
    int rc = rp_config_load(path, &f->cfg, stderr);
    if (rc != RP_OK)
        return rc;
    rc = ra_state_build(f->cfg, &f->st, stderr);
    if (rc != RP_OK)
        return rc;
    f->snap.cfg = f->cfg;
    f->snap.ra = f->st;
    f->ex.snap = &f->snap;
    cr_assert_eq(rp_arena_new(&f->ex.arena, ARENA_CAP), RP_OK);
    cr_assert_eq(rp_arena_new(&f->req_arena, ARENA_CAP), RP_OK);
    f->rx.ex = &f->ex;
    f->rx.dcfg = &f->cfg->domains[0];
    f->rx.domain = ra_state_domain(f->st, f->rx.dcfg);
    f->rx.now = (int64_t)time(NULL);
    return RP_OK;
}

static void fx_down(struct fx *f)
{
    ra_state_free(f->st);
    rp_config_free(f->cfg);
    rp_arena_free(&f->ex.arena);
    rp_arena_free(&f->req_arena);
    rpt_rmdir(f->dir);
    free(f->dir);
}

static struct rp_view ra_subject(struct fx *f)
{
    return f->st->ra.cert.subject;
}

/* Build the genm, run ra_genm_answer on it; on RP_OK decode the genp into *out and check
 * it answers the request under the RA's signature. */
static int ask(struct fx *f, const struct rp_view *itavs, size_t n, struct rp_cmp_msg *out)
{
    cr_assert_eq(tg_genm(&f->req_arena, &f->req, ra_subject(f), itavs, n, NULL, NULL, 0), RP_OK);
    cr_assert_eq(rp_cmp_decode(f->req.der.p, f->req.der.len, &f->ex.arena, &f->rx.msg, NULL),
                 RP_OK);
    f->rx.step = RA_VERIFY;
    f->rx.out = RP_VIEW_NULL;
    int rc = ra_genm_answer(&f->rx);
    if (rc != RP_OK)
        return rc;
    cr_assert(rp_view_present(f->rx.out), "RP_OK: answered here, the genp in rx.out");
    cr_assert_eq(rp_cmp_decode(f->rx.out.p, f->rx.out.len, &f->ex.arena, out, NULL), RP_OK);
    cr_assert_eq(out->body.type, RP_CMP_GENP);
    cr_expect(rp_view_eq(out->header.transaction_id.val, rp_view_make(f->req.txid, 16)));
    cr_expect(rp_view_eq(out->header.recip_nonce.val, rp_view_make(f->req.nonce, 16)));
    cr_expect_geq(out->header.sender_nonce.val.len, 16u);
    cr_expect(rp_name_eq(out->header.sender.name, ra_subject(f)));
    cr_expect_eq(out->n_extra_certs, 2, "RA certificate and its chain");
    struct rp_view ra = rp_view_make(f->st->ra.certs.v[0].p, f->st->ra.certs.v[0].len);
    cr_expect(rp_view_eq(out->extra_certs[0], ra));
    cr_expect_eq(tg_verify_ra(out, ra, &f->ex.arena), RP_OK, "signed by the RA");
    return RP_OK;
}

static struct rp_view file_cert(const char *pki_dir, const char *rel, struct rp_arena *a)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", pki_dir, rel);
    size_t len = 0;
    uint8_t *der = tg_cert_der(path, &len);
    cr_assert_not_null(der, "%s", path);
    struct rp_view v = rp_view_make(rp_arena_dup(a, der, len), len);
    free(der);
    return v;
}

/* The elements of a SEQUENCE TLV. */
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

Test(genm, ca_certs_answered_with_the_configured_certificates_signed_by_the_ra)
{
    struct fx f;
    cr_assert_eq(fx_up(&f, "local", NULL, true), RP_OK);
    struct rp_view itav = tg_itav(&f.req_arena, RP_OID_VIEW(RP_OID_IT_CA_CERTS), RP_VIEW_NULL);
    struct rp_cmp_msg m;
    cr_assert_eq(ask(&f, &itav, 1, &m), RP_OK);
    cr_assert_eq(m.body.gen.n, 1);
    cr_expect(rp_oid_is(m.body.gen.items[0].type, RP_OID_IT_CA_CERTS));
    struct rp_view certs[4];
    cr_assert_eq(seq_items(m.body.gen.items[0].value, certs, 4), 2, "ica and root of chain.pem");
    cr_expect(rp_view_eq(certs[0], file_cert(f.pki, "operator/ica.pem", &f.req_arena)));
    cr_expect(rp_view_eq(certs[1], file_cert(f.pki, "operator/root.pem", &f.req_arena)));
    fx_down(&f);
}

Test(genm, root_ca_key_update_for_both_request_types_and_absent_when_no_news)
{
    struct fx f;
    cr_assert_eq(fx_up(&f, "local", NULL, true), RP_OK);
    struct rp_arena *a = &f.req_arena;
    struct rp_view nwn = file_cert(f.pki, "tls/ca.pem", a);
    struct rp_view nwo = file_cert(f.pki, "operator/ica.pem", a);
    struct rp_view own = file_cert(f.pki, "vendor/ica.pem", a);
    struct {
        const char *type;
        const char *old_root; /* NULL: no value */
        bool news;
    } cases[] = {
        {RP_OID_IT_ROOT_CA_KEY_UPDATE, NULL, true}, /* OpenSSL 3.0 -infotype rootCaKeyUpdate */
        {TG_OID_ROOT_CA_CERT, NULL, true},
        {TG_OID_ROOT_CA_CERT, "operator/root.pem", true}, /* newWithOld's issuer */
        {TG_OID_ROOT_CA_CERT, "vendor/root.pem", false},  /* another PKI's root */
        {TG_OID_ROOT_CA_CERT, "tls/ca.pem", false},       /* already has the new root */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rp_view type = rp_view_make(cases[i].type, 8);
        struct rp_view old =
            cases[i].old_root ? file_cert(f.pki, cases[i].old_root, a) : RP_VIEW_NULL;
        struct rp_view itav = tg_itav(a, type, old);
        struct rp_cmp_msg m;
        cr_assert_eq(ask(&f, &itav, 1, &m), RP_OK, "case %zu", i);
        cr_assert_eq(m.body.gen.n, 1);
        cr_expect(rp_oid_is(m.body.gen.items[0].type, RP_OID_IT_ROOT_CA_KEY_UPDATE),
                  "answered with id-it-rootCaKeyUpdate, case %zu", i);
        struct rp_view v = m.body.gen.items[0].value;
        cr_expect_eq(rp_view_present(v), cases[i].news, "case %zu", i);
        if (!cases[i].news)
            continue;
        struct rp_view parts[4];
        cr_assert_eq(seq_items(v, parts, 4), 3);
        cr_expect(rp_view_eq(parts[0], nwn), "newWithNew");
        cr_expect_eq(parts[1].p[0], RP_DER_CTX_CONS(0));
        cr_expect(rp_view_eq(rp_view_make(parts[1].p + parts[1].len - nwo.len, nwo.len), nwo));
        cr_expect_eq(parts[2].p[0], RP_DER_CTX_CONS(1));
        cr_expect(rp_view_eq(rp_view_make(parts[2].p + parts[2].len - own.len, own.len), own));
    }
    fx_down(&f);
}

Test(genm, cert_req_template_and_several_infotypes_answered_in_order)
{
    struct fx f;
    cr_assert_eq(fx_up(&f, "local", NULL, true), RP_OK);
    struct rp_view itavs[2] = {
        tg_itav(&f.req_arena, RP_OID_VIEW(RP_OID_IT_CERT_REQ_TEMPLATE), RP_VIEW_NULL),
        tg_itav(&f.req_arena, RP_OID_VIEW(RP_OID_IT_CA_CERTS), RP_VIEW_NULL),
    };
    struct rp_cmp_msg m;
    cr_assert_eq(ask(&f, itavs, 2, &m), RP_OK);
    cr_assert_eq(m.body.gen.n, 2);
    cr_expect(rp_oid_is(m.body.gen.items[0].type, RP_OID_IT_CERT_REQ_TEMPLATE));
    cr_expect(
        rp_view_eq(m.body.gen.items[0].value, rp_view_make(template_der, sizeof template_der)));
    cr_expect(rp_oid_is(m.body.gen.items[1].type, RP_OID_IT_CA_CERTS));
    fx_down(&f);
}

Test(genm, crl_status_list_returns_only_crls_newer_than_the_device_has)
{
    struct fx f;
    cr_assert_eq(fx_up(&f, "local", NULL, false), RP_OK);
    struct rp_arena *a = &f.req_arena;
    char path[600];
    pki(&f, path, sizeof path, "vendor/crl.der");
    size_t len = 0;
    uint8_t *crl_der = rpt_read_file(path, &len);
    cr_assert_not_null(crl_der);
    struct rp_crl crl;
    cr_assert_eq(rp_crl_parse(crl_der, len, &crl), RP_OK);
    struct rp_view ica_subject = crl.issuer;
    struct {
        int64_t this_update; /* -1: absent */
        bool news;
    } cases[] = {{-1, true}, {crl.this_update - 60, true}, {crl.this_update, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rp_view st = tg_crl_status(a, ica_subject, cases[i].this_update);
        struct rp_view itav = tg_itav(a, RP_OID_VIEW(TG_OID_CRL_STATUS_LIST), st);
        struct rp_cmp_msg m;
        cr_assert_eq(ask(&f, &itav, 1, &m), RP_OK, "case %zu", i);
        cr_assert_eq(m.body.gen.n, 1);
        cr_expect(rp_oid_is(m.body.gen.items[0].type, TG_OID_CRLS), "id-it-crls");
        struct rp_view v = m.body.gen.items[0].value;
        cr_expect_eq(rp_view_present(v), cases[i].news, "case %zu", i);
        struct rp_view crls[2];
        if (cases[i].news) {
            cr_assert_eq(seq_items(v, crls, 2), 1);
            cr_expect(rp_view_eq(crls[0], rp_view_make(crl_der, len)), "the CRL as configured");
        }
    }
    /* another issuer: nothing for it */
    struct rp_view other = file_cert(f.pki, "vendor/root.pem", a);
    struct rp_cert oc;
    cr_assert_eq(rp_cert_parse(other.p, other.len, &oc), RP_OK);
    struct rp_view itav =
        tg_itav(a, RP_OID_VIEW(TG_OID_CRL_STATUS_LIST), tg_crl_status(a, oc.subject, -1));
    struct rp_cmp_msg m;
    cr_assert_eq(ask(&f, &itav, 1, &m), RP_OK);
    cr_expect_not(rp_view_present(m.body.gen.items[0].value));
    free(crl_der);
    fx_down(&f);
}

/* The review: a genm repeating crlStatusList made the RA reserve scratch memory for every
 * configured CRL once per repetition. Each InfoType may now be asked once (badRequest
 * otherwise), so the scratch is bounded by the configuration; once is still answered. */
Test(genm, an_infotype_asked_twice_is_bad_request)
{
    struct fx f;
    cr_assert_eq(fx_up(&f, "local", NULL, false), RP_OK);
    struct rp_arena *a = &f.req_arena;
    struct rp_view st = tg_crl_status(a, f.st->ra.cert.issuer, -1);
    struct rp_view itav = tg_itav(a, RP_OID_VIEW(TG_OID_CRL_STATUS_LIST), st);
    struct rp_view many[64];
    for (size_t i = 0; i < 64; i++)
        many[i] = itav;
    struct rp_cmp_msg m;
    int rc = ask(&f, many, 64, &m);
    cr_expect_eq(rc, RP_E_BAD_REQUEST, "%d", rc);
    cr_expect_eq(rp_err_failinfo(rc), RP_FI_BAD_REQUEST);
    cr_expect_eq(ask(&f, many, 1, &m), RP_OK);
    fx_down(&f);
}

Test(genm, malformed_crl_status_list_is_refused_with_bad_data_format)
{
    struct fx f;
    cr_assert_eq(fx_up(&f, "local", NULL, false), RP_OK);
    static const uint8_t empty_list[] = {0x30, 0x00};
    static const uint8_t bad_source[] = {0x30, 0x04, 0x30, 0x02, 0x04, 0x00};
    const uint8_t *vals[] = {empty_list, bad_source, NULL};
    size_t lens[] = {sizeof empty_list, sizeof bad_source, 0};
    for (size_t i = 0; i < 3; i++) {
        struct rp_view v = vals[i] ? rp_view_make(vals[i], lens[i]) : RP_VIEW_NULL;
        struct rp_view itav = tg_itav(&f.req_arena, RP_OID_VIEW(TG_OID_CRL_STATUS_LIST), v);
        struct rp_cmp_msg m;
        int rc = ask(&f, &itav, 1, &m);
        cr_expect_eq(rc, RP_E_CMP_BODY, "case %zu: %d", i, rc);
        cr_expect_eq(rp_err_failinfo(rc), RP_FI_BAD_DATA_FORMAT);
    }
    fx_down(&f);
}

Test(genm, forwarded_when_not_local_unknown_infotype_nothing_configured_or_empty)
{
    struct fx f;
    struct rp_cmp_msg m;
    cr_assert_eq(fx_up(&f, "forward", NULL, false), RP_OK);
    struct rp_view ca = tg_itav(&f.req_arena, RP_OID_VIEW(RP_OID_IT_CA_CERTS), RP_VIEW_NULL);
    cr_expect_eq(ask(&f, &ca, 1, &m), RP_E_NOT_FOUND, "genm: forward");
    fx_down(&f);

    cr_assert_eq(fx_up(&f, "local", NULL, true), RP_OK);
    struct rp_view mixed[2] = {
        tg_itav(&f.req_arena, RP_OID_VIEW(RP_OID_IT_CA_CERTS), RP_VIEW_NULL),
        tg_itav(&f.req_arena, RP_OID_VIEW(TG_OID_SIGN_KEY_TYPES), RP_VIEW_NULL),
    };
    cr_expect_eq(ask(&f, mixed, 2, &m), RP_E_NOT_FOUND, "one InfoType for the CA");
    cr_expect_eq(ask(&f, NULL, 0, &m), RP_E_NOT_FOUND, "no InfoType");
    cr_expect_not(rp_view_present(f.rx.out), "nothing answered here");
    fx_down(&f);

    /* local, but no pki_info: caCerts is the CA's to answer; CRLs still local */
    cr_assert_eq(fx_up(&f, "local", NULL, false), RP_OK);
    ca = tg_itav(&f.req_arena, RP_OID_VIEW(RP_OID_IT_CA_CERTS), RP_VIEW_NULL);
    cr_expect_eq(ask(&f, &ca, 1, &m), RP_E_NOT_FOUND);
    fx_down(&f);
}

Test(genm, bad_pki_info_files_are_refused_at_load)
{
    struct fx f;
    char extra[800];
    /* a certificate where a DER CertReqTemplateContent belongs */
    snprintf(extra, sizeof extra, "    pki_info: {cert_req_template: %s/operator/root.pem}\n",
             rpt_pki());
    cr_expect_neq(fx_up(&f, "local", extra, false), RP_OK);
    ra_state_free(f.st);
    rp_config_free(f.cfg);
    rpt_rmdir(f.dir);
    free(f.dir);
}

static int load_cfg(const char *genm, const char *pki_info, char **errs_out)
{
    const char *p = rpt_pki();
    char *dir = rpt_tmpdir();
    char cfg[3000], path[600];
    snprintf(cfg, sizeof cfg,
             "listeners: [{address: 127.0.0.1:1, tls: off}]\n"
             "upstream: {url: \"http://127.0.0.1:1/\"}\n"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key}\n"
             "domains:\n"
             "  - name: op\n"
             "    trust_anchors: [%s/operator/root.pem]\n"
             "    allow: [genm]\n"
             "    genm: %s\n"
             "    pki_info: %s\n",
             p, p, p, genm, pki_info);
    snprintf(path, sizeof path, "%s/raproxy.yaml", dir);
    rpt_write_file(path, cfg, strlen(cfg));
    size_t len = 0;
    FILE *errs = open_memstream(errs_out, &len);
    struct rp_config *c = NULL;
    int rc = rp_config_load(path, &c, errs);
    fclose(errs);
    rp_config_free(c);
    rpt_rmdir(dir);
    free(dir);
    return rc;
}

Test(genm_config, pki_info_is_checked)
{
    const char *p = rpt_pki();
    char pi[1200];
    char *errs = NULL;
    snprintf(pi, sizeof pi, "{ca_certs: %s/ca/chain.pem}", p);
    cr_expect_eq(load_cfg("local", pi, &errs), RP_OK, "%s", errs);
    free(errs);
    cr_expect_eq(load_cfg("forward", pi, &errs), RP_E_CONFIG);
    cr_expect(strstr(errs, "domains[0].pki_info: only used with genm: local"), "%s", errs);
    free(errs);
    snprintf(pi, sizeof pi, "{root_ca_update: {new_with_old: %s/operator/ica.pem}}", p);
    cr_expect_eq(load_cfg("local", pi, &errs), RP_E_CONFIG);
    cr_expect(strstr(errs, "pki_info.root_ca_update.new_with_new: required"), "%s", errs);
    free(errs);
    cr_expect_eq(load_cfg("local", "{ca_certs: /nonexistent.pem, colour: red}", &errs),
                 RP_E_CONFIG);
    cr_expect(strstr(errs, "colour"), "unknown key: %s", errs);
    free(errs);
    cr_expect_eq(load_cfg("local", "{ca_certs: /nonexistent.pem}", &errs), RP_E_CONFIG);
    cr_expect(strstr(errs, "pki_info.ca_certs: file not readable"), "%s", errs);
    free(errs);
}

Test(admins, an_admin_is_a_listed_certificate_and_may_name_the_domains_issuers)
{
    struct fx f;
    char extra[800];
    snprintf(extra, sizeof extra, "    admins: [%s/ca/srv.pem]\n", rpt_pki());
    cr_assert_eq(fx_up(&f, "forward", extra, false), RP_OK);
    struct ra_domain *d = f.rx.domain;
    struct rp_arena *a = &f.req_arena;
    struct rp_view admin = file_cert(f.pki, "ca/srv.pem", a);
    struct rp_view device = file_cert(f.pki, "ca/issued.pem", a);
    cr_expect(ra_is_admin(d, admin));
    cr_expect_not(ra_is_admin(d, device));
    cr_expect_not(ra_is_admin(d, RP_VIEW_NULL));
    struct rp_cert dev, vdev;
    cr_assert_eq(rp_cert_parse(device.p, device.len, &dev), RP_OK);
    cr_expect(ra_domain_issued(d, dev.issuer), "operator ica is an intermediate");
    struct rp_view root = file_cert(f.pki, "operator/root.pem", a);
    struct rp_cert rc;
    cr_assert_eq(rp_cert_parse(root.p, root.len, &rc), RP_OK);
    cr_expect(ra_domain_issued(d, rc.subject), "the anchor itself");
    struct rp_view vd = file_cert(f.pki, "vendor/dev1.pem", a);
    cr_assert_eq(rp_cert_parse(vd.p, vd.len, &vdev), RP_OK);
    cr_expect_not(ra_domain_issued(d, vdev.issuer), "vendor ica is another domain's");
    cr_expect_not(ra_domain_issued(d, RP_VIEW_NULL));
    fx_down(&f);
    /* no admins configured: nobody is one */
    cr_assert_eq(fx_up(&f, "forward", NULL, false), RP_OK);
    cr_expect_not(ra_is_admin(f.rx.domain, admin));
    fx_down(&f);
}
