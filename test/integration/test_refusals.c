/* One real message per failInfo (issue: "Authenticate requests"): a genuine ir written by
 * openssl cmp, altered and re-signed with the device's key, sent to a running raproxy.
 * Each answer must be a CMP error with exactly that failInfo bit, answering the request's
 * transaction, and its protection must verify with the RA certificate. The upstream is
 * down, so a request that passes every check ends as systemUnavail. */
#include "fixtures.h"
#include "httpc.h"
#include "msgbuild.h"
#include "support.h"

#include "raproxy/arena.h"
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/sig.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ARENA (1u << 20)

static char *g_dir;
static const char *g_pki;
static int g_port;
static struct rpt_proc g_rp;
static uint8_t *g_base[2]; /* genuine ir of dev1 and dev2 */
static size_t g_base_len[2];
static uint8_t *g_ra;
static size_t g_ra_len;

static void setup(void)
{
    g_pki = rpt_pki();
    cr_assert_not_null(g_pki);
    g_dir = rpt_tmpdir();
    g_port = rpt_free_port();
    int admin = rpt_free_port(), dead = rpt_free_port();
    char cfg[4096], path[600];
    snprintf(cfg, sizeof cfg,
             "listeners:\n  - address: 127.0.0.1:%d\n    tls: off\n"
             "admin: {address: 127.0.0.1:%d}\n"
             "upstream: {url: \"http://127.0.0.1:%d/pkix/\", connect_timeout_ms: 500}\n"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
             "chain: %s/operator/ra.chain.pem}\n"
             "domains:\n"
             "  - name: manufacturer\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir, cr, certConf, pollReq, error]\n"
             "    algorithms: [ecdsa-p256, ecdsa-p384]\n"
             "  - name: operator\n"
             "    trust_anchors: [%s/operator/root.pem]\n"
             "    allow: [kur, rr]\n",
             g_port, admin, dead, g_pki, g_pki, g_pki, g_pki, g_pki);
    snprintf(path, sizeof path, "%s/raproxy.yaml", g_dir);
    cr_assert_eq(rpt_write_file(path, cfg, strlen(cfg)), 0);
    cr_assert_eq(rpt_raproxy_start(&g_rp, g_dir, path, g_port), 0, "%s", g_rp.log);
    g_base[0] = rpt_capture_device(g_dir, g_pki, "ir", "vendor/dev1", &g_base_len[0]);
    g_base[1] = rpt_capture_device(g_dir, g_pki, "ir", "vendor/dev2", &g_base_len[1]);
    cr_assert(g_base[0] && g_base[1], "openssl cmp -reqout wrote no request");
    char pem[600], der[600];
    snprintf(pem, sizeof pem, "%s/operator/ra.pem", g_pki);
    snprintf(der, sizeof der, "%s/ra.der", g_dir);
    const char *x[] = {"openssl", "x509", "-in", pem, "-outform", "DER", "-out", der, NULL};
    cr_assert_eq(rpt_run(x, 10000, NULL), 0);
    g_ra = rpt_read_file(der, &g_ra_len);
}

static void teardown(void)
{
    cr_expect_eq(rpt_stop(&g_rp, SIGTERM, 15000), 0);
    cr_expect_eq(rpt_file_count(g_rp.log, "AddressSanitizer"), 0);
    free(g_base[0]);
    free(g_base[1]);
    free(g_ra);
    rpt_rmdir(g_dir);
    free(g_dir);
}

TestSuite(refusals, .init = setup, .fini = teardown, .timeout = 120);

/* How to alter a genuine request; zero values keep the original. */
struct mut {
    int dev; /* 0: dev1, 1: dev2 */
    int pvno;
    int64_t time_shift;
    struct rp_view nonce;
    struct rp_view txid;
    struct rp_view alg; /* AlgorithmIdentifier DER */
    bool unprotected;
    bool flip_protection;
    bool raverified_pop;
    bool flip_pop;
};

static struct rp_view build(struct rp_arena *a, const struct mut *m)
{
    struct rp_cmp_msg *in = rp_arena_calloc(a, 1, sizeof *in);
    cr_assert_eq(rp_cmp_decode(g_base[m->dev], g_base_len[m->dev], a, in, NULL), RP_OK);
    const struct rp_cmp_header *h = &in->header;
    struct rp_view body = in->body_raw;
    if (m->raverified_pop)
        cr_assert_eq(rp_cmp_enc_body_pop_raverified(a, in, &body), RP_OK);
    if (m->flip_pop) {
        uint8_t *b = rp_arena_dup(a, body.p, body.len);
        const struct rp_der_bits *s = &in->body.reqs.reqs[0].pop.signature;
        b[(size_t)(s->bytes.p - body.p) + s->bytes.len / 2] ^= 0x20;
        body = rp_view_make(b, body.len);
    }
    struct rp_derw w;
    cr_assert_eq(rp_derw_init(&w, a, 4096), RP_OK);
    rp_derw_begin(&w, 0x30);
    rp_derw_int64(&w, 0x02, m->pvno ? m->pvno : h->pvno);
    rp_derw_raw(&w, h->sender.raw);
    rp_derw_raw(&w, h->recipient.raw);
    rp_derw_begin(&w, 0xa0);
    rp_derw_gentime(&w, (int64_t)time(NULL) + m->time_shift);
    rp_derw_end(&w);
    rp_derw_begin(&w, 0xa1);
    rp_derw_raw(&w, rp_view_present(m->alg) ? m->alg : h->protection_alg.raw);
    rp_derw_end(&w);
    rp_derw_raw(&w, h->sender_kid.raw);
    rp_derw_begin(&w, 0xa4);
    rp_derw_octets(&w, rp_view_present(m->txid) ? m->txid : h->transaction_id.val);
    rp_derw_end(&w);
    uint8_t fresh[16];
    for (size_t i = 0; i < sizeof fresh; i++)
        fresh[i] = (uint8_t)rand();
    rp_derw_begin(&w, 0xa5);
    rp_derw_octets(&w, rp_view_present(m->nonce) ? m->nonce : rp_view_make(fresh, sizeof fresh));
    rp_derw_end(&w);
    rp_derw_end(&w);
    struct rp_view hdr, pp, out;
    cr_assert_eq(rp_derw_finish(&w, &hdr), RP_OK);
    cr_assert_eq(rp_cmp_enc_protected_part(a, hdr, body, &pp), RP_OK);
    struct rp_view sig = RP_VIEW_NULL;
    if (!m->unprotected) {
        char keyf[600];
        snprintf(keyf, sizeof keyf, "%s/vendor/dev%d.key", g_pki, m->dev + 1);
        struct rp_privkey *k;
        cr_assert_eq(rp_privkey_load_pem(keyf, &k), RP_OK);
        uint8_t *s = rp_arena_alloc(a, RP_SIG_MAX);
        size_t sl;
        cr_assert_eq(rp_privkey_sign(k, RP_SIG_ECDSA_SHA256, pp.p, pp.len, s, RP_SIG_MAX, &sl),
                     RP_OK);
        rp_privkey_free(k);
        if (m->flip_protection)
            s[sl / 2] ^= 0x01;
        sig = rp_view_make(s, sl);
    }
    cr_assert_eq(rp_cmp_enc_message(a, hdr, body, sig, in->extra_certs, in->n_extra_certs, &out),
                 RP_OK);
    return out;
}

/* POST, expect a CMP error with `bit`, answering `req` (NULL: undecodable), RA-signed. */
static void expect_error(const char *path, struct rp_view req, enum rp_failinfo bit)
{
    struct rpt_resp r;
    cr_assert_eq(rpt_http(g_port, "POST", path, "application/pkixcmp", req.p, req.len, 30000, &r),
                 0);
    cr_assert_eq(r.status, 200, "HTTP %d: %s", r.status, r.body);
    cr_assert_str_eq(r.ctype, "application/pkixcmp");
    struct rp_arena a;
    rp_arena_new(&a, ARENA);
    struct rp_cmp_msg *m = rp_arena_calloc(&a, 1, sizeof *m);
    cr_assert_eq(rp_cmp_decode(r.body, r.body_len, &a, m, NULL), RP_OK);
    cr_assert_eq(m->body.type, RP_CMP_ERROR);
    const struct rp_cmp_status *st = &m->body.error.status;
    cr_expect_eq(st->status, RP_CMP_STATUS_REJECTION);
    cr_expect_eq(st->fail_info, 1u << bit, "failInfo 0x%x, want %s", st->fail_info,
                 rp_failinfo_name(bit));
    struct rp_cmp_msg *q = rp_arena_calloc(&a, 1, sizeof *q);
    if (rp_cmp_decode(req.p, req.len, &a, q, NULL) == RP_OK) {
        cr_expect(rp_view_eq(m->header.transaction_id.val, q->header.transaction_id.val));
        cr_expect(rp_view_eq(m->header.recip_nonce.val, q->header.sender_nonce.val));
    }
    /* signed by the RA: extraCerts[0] is the RA certificate and the signature verifies */
    cr_assert_geq(m->n_extra_certs, 1);
    cr_expect(rp_view_eq(m->extra_certs[0], rp_view_make(g_ra, g_ra_len)));
    struct rp_cert ra;
    cr_assert_eq(rp_cert_parse(g_ra, g_ra_len, &ra), RP_OK);
    struct rp_pubkey *pk;
    cr_assert_eq(rp_pubkey_from_spki(ra.spki, &pk), RP_OK);
    enum rp_sig_alg alg;
    cr_assert_eq(rp_sig_alg_parse(m->header.protection_alg.raw, &alg), RP_OK);
    struct rp_view pp;
    cr_assert_eq(rp_cmp_protected_part(m, &a, &pp), RP_OK);
    cr_expect_eq(
        rp_sig_verify(alg, pk, pp.p, pp.len, m->protection.bytes.p, m->protection.bytes.len), RP_OK,
        "the RA's signature on the error verifies");
    rp_pubkey_free(pk);
    rpt_resp_free(&r);
    rp_arena_free(&a);
}

#define MANUF "/.well-known/cmp/p/manufacturer"

static struct rp_arena g_a;

static struct rp_view msg(const struct mut *m)
{
    if (!g_a.base)
        rp_arena_new(&g_a, ARENA);
    return build(&g_a, m);
}

Test(refusals, garbage_is_bad_data_format)
{
    expect_error(MANUF, rp_view_str("\x30\x03\x02\x01\x02 definitely not CMP"),
                 RP_FI_BAD_DATA_FORMAT);
    expect_error(MANUF, rp_view_make(g_base[0], g_base_len[0] - 7), RP_FI_BAD_DATA_FORMAT);
}

Test(refusals, pvno_1_is_unsupported_version)
{
    expect_error(MANUF, msg(&(struct mut){.pvno = 1}), RP_FI_UNSUPPORTED_VERSION);
}

Test(refusals, old_message_time_is_bad_time)
{
    expect_error(MANUF, msg(&(struct mut){.time_shift = -3600}), RP_FI_BAD_TIME);
    expect_error(MANUF, msg(&(struct mut){.time_shift = 3600}), RP_FI_BAD_TIME);
}

Test(refusals, short_nonce_is_bad_sender_nonce)
{
    expect_error(MANUF, msg(&(struct mut){.nonce = rp_view_str("12345678")}),
                 RP_FI_BAD_SENDER_NONCE);
}

Test(refusals, body_not_allowed_in_domain_is_not_authorized)
{
    expect_error("/.well-known/cmp/p/operator", msg(&(struct mut){0}), RP_FI_NOT_AUTHORIZED);
}

Test(refusals, missing_protection_is_wrong_integrity)
{
    expect_error(MANUF, msg(&(struct mut){.unprotected = true}), RP_FI_WRONG_INTEGRITY);
}

Test(refusals, sha1_or_disallowed_algorithm_is_bad_alg)
{
    static const uint8_t ecdsa_sha1[] = {0x30, 0x09, 0x06, 0x07, 0x2a, 0x86,
                                         0x48, 0xce, 0x3d, 0x04, 0x01};
    expect_error(MANUF, msg(&(struct mut){.alg = rp_view_make(ecdsa_sha1, sizeof ecdsa_sha1)}),
                 RP_FI_BAD_ALG);
}

Test(refusals, wrong_signature_is_bad_message_check)
{
    expect_error(MANUF, msg(&(struct mut){.flip_protection = true}), RP_FI_BAD_MESSAGE_CHECK);
}

Test(refusals, broken_or_ra_verified_pop_is_bad_pop)
{
    expect_error(MANUF, msg(&(struct mut){.flip_pop = true}), RP_FI_BAD_POP);
    expect_error(MANUF, msg(&(struct mut){.raverified_pop = true}), RP_FI_BAD_POP);
}

Test(refusals, transaction_of_another_device_is_transaction_id_in_use)
{
    static const uint8_t txid[16] = "raproxy-txid-001";
    /* dev1 opens the transaction: verified and recorded, then the CA is unreachable */
    expect_error(MANUF, msg(&(struct mut){.txid = rp_view_make(txid, sizeof txid)}),
                 RP_FI_SYSTEM_UNAVAIL);
    expect_error(MANUF, msg(&(struct mut){.dev = 1, .txid = rp_view_make(txid, sizeof txid)}),
                 RP_FI_TRANSACTION_ID_IN_USE);
}

Test(refusals, replayed_nonce_is_bad_sender_nonce)
{
    static const uint8_t nonce[16] = "raproxy-nonce-01";
    expect_error(MANUF, msg(&(struct mut){.nonce = rp_view_make(nonce, sizeof nonce)}),
                 RP_FI_SYSTEM_UNAVAIL);
    expect_error(MANUF, msg(&(struct mut){.nonce = rp_view_make(nonce, sizeof nonce)}),
                 RP_FI_BAD_SENDER_NONCE);
}
