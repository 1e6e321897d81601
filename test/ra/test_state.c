/* The RA state of a snapshot (src/ra/state.c): certificate files (PEM chains, one DER
 * certificate, and what is not a certificate), MAC secrets files, and a whole state built
 * from a configuration with the test PKI. */
#include "ra/ra.h"
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_LEN 600
#define ERRS_LEN 4096

TestSuite(ra_state);

struct fx {
    char *dir;
    struct ra_der_list l;
    char errs[ERRS_LEN];
    struct rp_config *cfg;
    struct ra_state *st;
};

static struct fx g;

static void setup(void)
{
    memset(&g, 0, sizeof g);
    cr_assert_not_null(rpt_pki());
    g.dir = rpt_tmpdir();
}

static void teardown(void)
{
    ra_der_list_free(&g.l);
    ra_state_free(g.st);
    rp_config_free(g.cfg);
    rpt_rmdir(g.dir);
    free(g.dir);
}

static void pki(char *buf, const char *rel)
{
    snprintf(buf, PATH_LEN, "%s/%s", rpt_pki(), rel);
}

/* A file in the test's directory; returns its path in buf. */
static void put(char *buf, const char *name, const void *data, size_t len)
{
    snprintf(buf, PATH_LEN, "%s/%s", g.dir, name);
    cr_assert_eq(rpt_write_file(buf, data, len), 0);
}

/* ra_load_certs into l, what it wrote to its error stream into g.errs. */
static int load(const char *path, struct ra_der_list *l)
{
    FILE *f = fmemopen(g.errs, sizeof g.errs, "w");
    cr_assert_not_null(f);
    int rc = ra_load_certs(path, l, f);
    fclose(f);
    return rc;
}

static void load_pki(const char *rel, struct ra_der_list *l)
{
    char path[PATH_LEN];
    pki(path, rel);
    cr_assert_eq(load(path, l), RP_OK, "%s: %s", rel, g.errs);
}

static bool same(const struct ra_der *a, const struct ra_der *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

/* ---- certificate files ----------------------------------------------------------------- */

Test(ra_state, reads_every_certificate_of_a_pem_chain_in_order, .init = setup, .fini = teardown)
{
    char path[PATH_LEN];
    pki(path, "vendor/dev1.chain.pem");
    int blocks = rpt_file_count(path, "-----BEGIN CERTIFICATE-----");
    cr_assert_geq(blocks, 2);
    load_pki("vendor/dev1.chain.pem", &g.l);
    cr_assert_eq(g.l.n, (size_t)blocks);
    struct ra_der_list leaf = {0}, ica = {0};
    load_pki("vendor/dev1.pem", &leaf);
    load_pki("vendor/ica.pem", &ica);
    cr_assert(same(&g.l.v[0], &leaf.v[0]), "the device certificate first");
    cr_assert(same(&g.l.v[1], &ica.v[0]), "then its issuing CA");
    ra_der_list_free(&leaf);
    ra_der_list_free(&ica);
}

Test(ra_state, reads_one_der_certificate, .init = setup, .fini = teardown)
{
    struct ra_der_list pem = {0};
    load_pki("operator/ra.pem", &pem);
    char path[PATH_LEN];
    put(path, "ra.der", pem.v[0].p, pem.v[0].len);
    cr_assert_eq(load(path, &g.l), RP_OK, "%s", g.errs);
    cr_assert_eq(g.l.n, 1);
    cr_assert(same(&g.l.v[0], &pem.v[0]));
    ra_der_list_free(&pem);
}

Test(ra_state, skips_text_around_pem_blocks_and_appends, .init = setup, .fini = teardown)
{
    char src[PATH_LEN], path[PATH_LEN];
    pki(src, "operator/ra.pem");
    size_t len;
    char *pem = (char *)rpt_read_file(src, &len);
    cr_assert_not_null(pem);
    char text[16384];
    int n = snprintf(text, sizeof text,
                     "Bag Attributes\n    friendlyName: ra\n%s\ntrailing words\n%s", pem, pem);
    cr_assert(n > 0 && (size_t)n < sizeof text);
    free(pem);
    put(path, "two.pem", text, (size_t)n);
    load_pki("operator/ica.pem", &g.l);
    cr_assert_eq(load(path, &g.l), RP_OK, "%s", g.errs);
    cr_assert_eq(g.l.n, 3, "appended to what the list held");
    cr_assert(same(&g.l.v[1], &g.l.v[2]));
}

Test(ra_state, refuses_a_missing_file, .init = setup, .fini = teardown)
{
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/absent.pem", g.dir);
    cr_assert_eq(load(path, &g.l), RP_E_KEY_LOAD);
    cr_assert(strstr(g.errs, "absent.pem: cannot read"), "%s", g.errs);
    cr_assert_eq(g.l.n, 0);
}

Test(ra_state, refuses_files_without_a_certificate, .init = setup, .fini = teardown)
{
    static const char *const bodies[] = {
        "",
        "not a certificate at all\n",
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n", /* no END */
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char path[PATH_LEN], name[32];
        snprintf(name, sizeof name, "bad%zu.pem", i);
        put(path, name, bodies[i], strlen(bodies[i]));
        g.errs[0] = '\0';
        cr_assert_eq(load(path, &g.l), RP_E_KEY_LOAD, "body %zu", i);
        cr_assert(strstr(g.errs, "no valid certificate"), "body %zu: %s", i, g.errs);
    }
}

Test(ra_state, refuses_a_truncated_der_certificate_and_a_truncated_chain, .init = setup,
     .fini = teardown)
{
    struct ra_der_list pem = {0};
    load_pki("operator/ra.pem", &pem);
    char path[PATH_LEN];
    put(path, "cut.der", pem.v[0].p, pem.v[0].len - 10);
    cr_assert_eq(load(path, &g.l), RP_E_KEY_LOAD);
    ra_der_list_free(&pem);
    /* a chain whose second block lost its end */
    char src[PATH_LEN];
    pki(src, "vendor/dev1.chain.pem");
    size_t len;
    char *chain = (char *)rpt_read_file(src, &len);
    cr_assert_not_null(chain);
    char *last_end = NULL;
    for (char *p = chain; (p = strstr(p, "-----END CERTIFICATE-----")) != NULL; p++)
        last_end = p;
    cr_assert_not_null(last_end);
    put(path, "cut.pem", chain, (size_t)(last_end - chain));
    free(chain);
    cr_assert_eq(load(path, &g.l), RP_E_KEY_LOAD);
}

/* ---- MAC secrets and a whole state ---------------------------------------------------- */

/* A configuration with one MAC domain reading `secrets`; builds the state into g.st. */
static int build(const char *secrets)
{
    char sec[PATH_LEN], cfgpath[PATH_LEN], cfg[4096];
    put(sec, "secrets.txt", secrets, strlen(secrets));
    const char *p = rpt_pki();
    int n = snprintf(cfg, sizeof cfg,
                     "listeners: [{address: 127.0.0.1:1, tls: off}]\n"
                     "upstream: {url: \"http://127.0.0.1:1/pkix/\"}\n"
                     "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
                     "chain: %s/operator/ra.chain.pem}\n"
                     "domains:\n"
                     "  - name: manufacturer\n"
                     "    trust_anchors: [%s/vendor/root.pem]\n"
                     "    allow: [ir, certConf]\n"
                     "    protection: both\n"
                     "    mac_secrets: %s\n",
                     p, p, p, p, sec);
    cr_assert(n > 0 && (size_t)n < sizeof cfg);
    put(cfgpath, "raproxy.yaml", cfg, (size_t)n);
    FILE *f = fmemopen(g.errs, sizeof g.errs, "w");
    cr_assert_not_null(f);
    int rc = rp_config_load_opts(cfgpath, &g.cfg, f, RP_CONFIG_NO_FILE_CHECKS);
    cr_assert_eq(rc, RP_OK, "%s", g.errs);
    rc = ra_state_build(g.cfg, &g.st, f);
    fclose(f);
    return rc;
}

static const struct ra_secret *secret(const char *kid)
{
    struct ra_domain *d = ra_state_domain(g.st, &g.cfg->domains[0]);
    cr_assert_not_null(d);
    return ra_domain_secret(d, rp_view_str(kid));
}

Test(ra_state, builds_identity_anchors_and_secrets, .init = setup, .fini = teardown)
{
    cr_assert_eq(build("# kid secret attributes\n"
                       "\n"
                       "kid-1 s3cret serial=SN-1 bodies=ir,certConf\n"
                       "  kid-2 \"two words\" subject=\"CN=Device 2, O=Vendor\"\n"),
                 RP_OK, "%s", g.errs);
    cr_assert(ra_identity_ready(&g.st->ra));
    cr_assert_geq(g.st->ra.certs.n, 2, "RA certificate and its chain");
    struct ra_domain *d = ra_state_domain(g.st, &g.cfg->domains[0]);
    cr_assert_eq(d->anchors.n, 1);
    cr_assert(d->allow_mask & (1u << RP_CMP_IR));
    const struct ra_secret *s1 = secret("kid-1"), *s2 = secret("kid-2");
    cr_assert_not_null(s1);
    cr_assert_eq(s1->secret_len, 6);
    cr_assert_eq(memcmp(s1->secret, "s3cret", 6), 0);
    cr_assert_str_eq(s1->identity, "SN-1");
    cr_assert_eq(s1->body_mask, (1u << RP_CMP_IR) | (1u << RP_CMP_CERTCONF));
    cr_assert_not_null(s2);
    cr_assert_eq(memcmp(s2->secret, "two words", 9), 0);
    cr_assert_str_eq(s2->identity, "kid-2", "no serial=: the kid is the identity");
    cr_assert_not_null(s2->subject_der);
    cr_assert_null(secret("kid-3"));
    cr_assert_null(secret("kid-"), "a prefix is not a kid");
}

Test(ra_state, refuses_secrets_files_with_a_bad_line, .init = setup, .fini = teardown)
{
    static const struct {
        const char *text, *why;
    } cases[] = {
        {"kid-1 a\nkid-1 b\n", "senderKID kid-1 listed twice"},
        {"kid-1 a\nkid-2 b colour=red\n", "secrets.txt:2: unknown attribute"},
        {"kid-1\n", "secrets.txt:1: expected <senderKID> <secret>"},
        {"kid-1 a subject=\"CN=x\n", "secrets.txt:1: unterminated quote"},
        {"kid-1 a bodies=ir,enroll\n", "secrets.txt:1: bodies=: unknown CMP body type"},
        {"kid-1 a serial=1 serial=2\n", "secrets.txt:1: attribute given twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        g.errs[0] = '\0';
        cr_assert_neq(build(cases[i].text), RP_OK, "case %zu", i);
        cr_assert(strstr(g.errs, cases[i].why), "case %zu: %s", i, g.errs);
        cr_assert_null(g.st);
        rp_config_free(g.cfg);
        g.cfg = NULL;
    }
    /* the control: the same file without the bad line builds */
    cr_assert_eq(build("kid-1 a\nkid-2 b\n"), RP_OK, "%s", g.errs);
}
