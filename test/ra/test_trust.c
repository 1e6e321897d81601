/* The prepared trust of a domain (src/ra/trust.c) with the test PKI's certificates and
 * CRLs: path building from extraCerts, CA constraints, revocation of every certificate of
 * the path, and the state of CRLs that cannot be used. */
#include "ra/ra.h"
#include "raproxy/cert.h"
#include "raproxy/err.h"
#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PATH_LEN 600

struct files {
    struct ra_der_list anchors, inters, crls, chain;
    struct ra_trust *t;
};

static void load(struct ra_der_list *l, const char *rel)
{
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/%s", rpt_pki(), rel);
    cr_assert_eq(ra_load_certs(path, l, NULL), RP_OK, "%s", path);
}

static void add_crl(struct ra_der_list *l, const char *rel)
{
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/%s", rpt_pki(), rel);
    struct ra_der *nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    cr_assert_not_null(nv);
    l->v = nv;
    cr_assert_eq(ra_read_file(path, &l->v[l->n].p, &l->v[l->n].len), RP_OK, "%s", path);
    l->n++;
}

static void build(struct files *f, bool warn)
{
    cr_assert_eq(ra_trust_build(&f->t, "test", &f->anchors, &f->inters, &f->crls, NULL, warn, NULL),
                 RP_OK);
}

static void release(struct files *f)
{
    ra_trust_free(f->t);
    ra_der_list_free(&f->anchors);
    ra_der_list_free(&f->inters);
    ra_der_list_free(&f->crls);
    ra_der_list_free(&f->chain);
}

/* The chain file (leaf first, then its CAs) checked as a request's extraCerts. */
static int check(struct files *f, const char *chain_rel, const char **why)
{
    ra_der_list_free(&f->chain);
    load(&f->chain, chain_rel);
    struct rp_view extra[8];
    size_t n = f->chain.n < 8 ? f->chain.n : 8;
    for (size_t i = 0; i < n; i++)
        extra[i] = rp_view_make(f->chain.v[i].p, f->chain.v[i].len);
    struct rp_cert leaf;
    cr_assert_eq(rp_cert_parse(extra[0].p, extra[0].len, &leaf), RP_OK);
    *why = NULL;
    return ra_trust_check(f->t, &leaf, extra, n, 0, (int64_t)time(NULL), why);
}

Test(trust, a_chain_through_the_vendor_ica_passes_and_a_revoked_leaf_does_not)
{
    struct files f = {0};
    load(&f.anchors, "vendor/root.pem");
    add_crl(&f.crls, "vendor/crl.pem");
    build(&f, false);
    const char *why;
    cr_expect_eq(check(&f, "vendor/dev1.chain.pem", &why), RP_OK, "%s", why);
    cr_expect_eq(check(&f, "vendor/revoked.chain.pem", &why), RP_E_CERT_REVOKED, "%s", why);
    cr_expect_eq(check(&f, "vendor/expired.chain.pem", &why), RP_E_SIGNER_NOT_TRUSTED);
    cr_expect_eq(check(&f, "unknown/dev.pem", &why), RP_E_SIGNER_NOT_TRUSTED);
    char report[RP_CRL_REPORT_MAX];
    ra_trust_crl_report(f.t, (int64_t)time(NULL), report, sizeof report);
    cr_expect(strstr(report, "ok"), "%s", report);
    release(&f);
}

Test(trust, a_sub_ca_on_the_roots_crl_revokes_what_it_issued)
{
    struct files f = {0};
    load(&f.anchors, "vendor/root.pem");
    add_crl(&f.crls, "vendor/root-crl.pem");
    build(&f, false);
    const char *why;
    cr_expect_eq(check(&f, "vendor/dev-subrevoked.chain.pem", &why), RP_E_CERT_REVOKED);
    cr_expect_str_eq(why, "a CA certificate of the chain is revoked");
    cr_expect_eq(check(&f, "vendor/dev1.chain.pem", &why), RP_OK, "%s", why);
    release(&f);
}

Test(trust, cas_without_keycertsign_or_beyond_pathlen_are_refused)
{
    struct files f = {0};
    load(&f.anchors, "vendor/root.pem");
    build(&f, false);
    const char *why;
    cr_expect_eq(check(&f, "vendor/dev-nosign.chain.pem", &why), RP_E_SIGNER_NOT_TRUSTED);
    cr_expect_str_eq(why, "a CA certificate of the chain lacks keyCertSign");
    cr_expect_eq(check(&f, "vendor/dev-deep.chain.pem", &why), RP_E_SIGNER_NOT_TRUSTED);
    cr_expect_str_eq(why, "a CA's pathLenConstraint is exceeded");
    cr_expect_eq(check(&f, "vendor/dev1.chain.pem", &why), RP_OK, "%s", why);
    release(&f);
}

Test(trust, a_configured_intermediate_without_keycertsign_is_not_used)
{
    struct files f = {0};
    load(&f.anchors, "vendor/root.pem");
    load(&f.inters, "vendor/ica-nosign.pem");
    load(&f.inters, "vendor/ica.pem");
    build(&f, false);
    const char *why;
    cr_expect_eq(check(&f, "vendor/dev-nosign.pem", &why), RP_E_SIGNER_NOT_TRUSTED);
    cr_expect_eq(check(&f, "vendor/dev1.pem", &why), RP_OK, "%s", why);
    release(&f);
}

/* A CA under an attacker's root, named like the vendor's ICA, sent in extraCerts: wolfSSL
 * would take it as an anchor if it were loaded unverified. It must fail, before and after a
 * genuine chain built the path's manager, and not disturb the genuine one. */
Test(trust, a_forged_intermediate_never_becomes_trusted)
{
    char *dir = rpt_tmpdir();
    char sh[4096];
    snprintf(sh, sizeof sh,
             "set -e; cd %s; "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout r.key -out r.pem -subj '/C=DE/O=Vendor/CN=Vendor Root CA' -days 30 "
             "2>/dev/null; "
             "printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign\\n' > "
             "ca.ext; "
             "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout i.key "
             "-out i.csr -subj '/C=DE/O=Vendor/CN=Vendor ICA' 2>/dev/null; "
             "openssl x509 -req -in i.csr -CA r.pem -CAkey r.key -CAcreateserial -days 30 "
             "-extfile ca.ext -out i.pem 2>/dev/null; "
             "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout d.key "
             "-out d.csr -subj '/C=DE/O=Vendor/CN=Device 1/serialNumber=SN0001' 2>/dev/null; "
             "openssl x509 -req -in d.csr -CA i.pem -CAkey i.key -CAcreateserial -days 30 "
             "-out d.pem 2>/dev/null; cat d.pem i.pem > evil.chain.pem",
             dir);
    const char *mk[] = {"bash", "-c", sh, NULL};
    cr_assert_eq(rpt_run(mk, 30000, NULL), 0);
    struct files f = {0};
    load(&f.anchors, "vendor/root.pem");
    build(&f, false);
    char evil[PATH_LEN];
    snprintf(evil, sizeof evil, "%s/evil.chain.pem", dir);
    const char *why;
    struct ra_der_list l = {0};
    cr_assert_eq(ra_load_certs(evil, &l, NULL), RP_OK);
    struct rp_view extra[2] = {rp_view_make(l.v[0].p, l.v[0].len),
                               rp_view_make(l.v[1].p, l.v[1].len)};
    struct rp_cert leaf;
    cr_assert_eq(rp_cert_parse(extra[0].p, extra[0].len, &leaf), RP_OK);
    int64_t now = (int64_t)time(NULL);
    cr_expect_eq(ra_trust_check(f.t, &leaf, extra, 2, 0, now, &why), RP_E_SIGNER_NOT_TRUSTED);
    cr_expect_eq(check(&f, "vendor/dev1.chain.pem", &why), RP_OK, "%s", why);
    cr_expect_eq(ra_trust_check(f.t, &leaf, extra, 2, 0, now, &why), RP_E_SIGNER_NOT_TRUSTED);
    /* the device alone, hoping the genuine ICA is in a shared manager now */
    cr_expect_eq(ra_trust_check(f.t, &leaf, extra, 1, 0, now, &why), RP_E_SIGNER_NOT_TRUSTED);
    ra_der_list_free(&l);
    release(&f);
    rpt_rmdir(dir);
    free(dir);
}

Test(trust, unusable_crls_refuse_unless_warned)
{
    const char *why;
    char report[RP_CRL_REPORT_MAX];
    int64_t now = (int64_t)time(NULL);
    struct files f = {0};
    load(&f.anchors, "vendor/root.pem");
    add_crl(&f.crls, "vendor/crl-stale.pem");
    build(&f, false);
    cr_expect_not(ra_trust_crl_refresh(f.t, now));
    cr_expect_eq(check(&f, "vendor/dev1.chain.pem", &why), RP_E_SIGNER_NOT_TRUSTED);
    cr_expect_str_eq(why, "a configured CRL is past its nextUpdate");
    ra_trust_crl_report(f.t, now, report, sizeof report);
    cr_expect(strstr(report, "refusing"), "%s", report);
    release(&f);

    struct files w = {0};
    load(&w.anchors, "vendor/root.pem");
    add_crl(&w.crls, "vendor/crl-stale.pem");
    build(&w, true);
    cr_expect_eq(check(&w, "vendor/dev1.chain.pem", &why), RP_OK, "%s", why);
    cr_expect_eq(check(&w, "vendor/revoked.chain.pem", &why), RP_E_CERT_REVOKED,
                 "a stale CRL's entries still count");
    release(&w);

    /* signed by another key than its issuer's: refused once the issuer is known */
    struct files g = {0};
    load(&g.anchors, "vendor/root.pem");
    add_crl(&g.crls, "vendor/crl-forged.pem");
    build(&g, false);
    cr_expect(ra_trust_crl_refresh(g.t, now), "the ICA is not configured: pending");
    cr_expect_eq(check(&g, "vendor/dev1.chain.pem", &why), RP_E_SIGNER_NOT_TRUSTED);
    cr_expect_not(ra_trust_crl_refresh(g.t, now));
    ra_trust_crl_report(g.t, now, report, sizeof report);
    cr_expect(strstr(report, "does not verify"), "%s", report);
    release(&g);

    /* the same with the ICA configured: invalid from the start */
    struct files h = {0};
    load(&h.anchors, "vendor/root.pem");
    load(&h.inters, "vendor/ica.pem");
    add_crl(&h.crls, "vendor/crl-forged.pem");
    build(&h, false);
    cr_expect_not(ra_trust_crl_refresh(h.t, now));
    release(&h);

    /* unreadable (an empty entry) and not a CRL */
    struct files u = {0};
    load(&u.anchors, "vendor/root.pem");
    u.crls.v = calloc(2, sizeof *u.crls.v);
    u.crls.v[0].p = (uint8_t *)strdup("");
    u.crls.v[1].p = (uint8_t *)strdup("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n");
    u.crls.v[1].len = strlen((char *)u.crls.v[1].p);
    u.crls.n = 2;
    build(&u, false);
    cr_expect_not(ra_trust_crl_refresh(u.t, now));
    cr_expect_eq(check(&u, "vendor/dev1.chain.pem", &why), RP_E_SIGNER_NOT_TRUSTED);
    release(&u);
}

/* Name constraints as wolfSSL applies them: a CA's permitted dirName subtree binds the
 * certificates it signs (openssl refuses dev-nc-bad too). */
Test(trust, a_cas_name_constraints_bind_what_it_signs)
{
    struct files f = {0};
    load(&f.anchors, "vendor/root.pem");
    build(&f, false);
    const char *why;
    cr_expect_eq(check(&f, "vendor/dev-nc-ok.chain.pem", &why), RP_OK, "%s", why);
    cr_expect_eq(check(&f, "vendor/dev-nc-bad.chain.pem", &why), RP_E_SIGNER_NOT_TRUSTED);
    release(&f);
}
