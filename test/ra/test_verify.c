/* Authentication of one request on a worker (src/ra/verify.c) with real `openssl cmp`
 * requests and the test PKI: a genuine signed ir passes, and each way it can fail is refused
 * with its own error (and so its own failInfo), each beside a control that passes. */
#include "rx_fixture.h"

#include "raproxy/der.h"

TestSuite(ra_verify);

/* ra_verify_request on `req`: the verdict, with the reason in *why. */
static int verify(struct rfx *f, struct rp_view req, const char **why)
{
    rfx_load(f, req);
    ra_verify_request(&f->rx);
    *why = f->rx.why;
    return f->rx.verdict;
}

/* A copy of `v` with one bit flipped in the middle of `at`, a view inside `within` (the
 * decoded copy of v), in the test's arena. */
static struct rp_view flip_inside(struct rfx *f, struct rp_view v, struct rp_view within,
                                  struct rp_view at)
{
    cr_assert(within.len == v.len && at.len > 0);
    cr_assert(at.p >= within.p && at.p + at.len <= within.p + within.len);
    uint8_t *copy = rp_arena_dup(&f->a, v.p, v.len);
    cr_assert_not_null(copy);
    copy[(size_t)(at.p - within.p) + at.len / 2] ^= 0x01;
    return rp_view_make(copy, v.len);
}

/* `req` with one bit flipped in `field` of its decoded copy (f->rx.msg). */
static struct rp_view flip_field(struct rfx *f, struct rp_view req, struct rp_view field)
{
    return flip_inside(f, req, f->rx.msg.raw, field);
}

/* dev1's ir re-signed by `cert` (a PKI name without .pem) with extraCerts `cert`, then
 * `chain`: the sender and senderKID those of `cert`. */
static struct rp_view signed_by(struct rfx *f, struct rp_view ir, const char *cert,
                                const char *chain)
{
    char rel[128], key[RFX_PATH_LEN];
    snprintf(rel, sizeof rel, "%s.pem", cert);
    struct rp_view xc[2];
    struct rp_cert c = rfx_cert(f, rel, &xc[0]);
    (void)rfx_cert(f, chain, &xc[1]);
    snprintf(rel, sizeof rel, "%s.key", cert);
    rfx_path(f, key, rel);
    struct rpt_mut m = {.sender = rpt_directory_name(&f->a, c.subject),
                        .sender_kid = c.ski,
                        .no_sender_kid = !rp_view_present(c.ski),
                        .extra_certs = xc,
                        .n_extra_certs = 2,
                        .key_file = key};
    struct rp_view out = rpt_rebuild(&f->a, ir.p, ir.len, &m);
    cr_assert(rp_view_present(out), "rebuild signed by %s", cert);
    return out;
}

/* The fixture, and dev1's ir as openssl cmp writes it. */
static struct rp_view up_with_dev1_ir(struct rfx *f)
{
    rfx_up(f, NULL);
    return rfx_capture(f, "ir", "vendor/dev1");
}

Test(ra_verify, accepts_a_genuine_openssl_ir)
{
    struct rfx f;
    struct rp_view ir = up_with_dev1_ir(&f);
    const char *why;
    cr_assert_eq(verify(&f, ir, &why), RP_OK, "%s", why);
    cr_expect(rp_view_eq(f.rx.serial, rp_view_str("SN0001")), "the identity is the serialNumber");
    struct rp_view dev1;
    (void)rfx_cert(&f, "vendor/dev1.pem", &dev1);
    cr_expect(rp_view_eq(f.rx.signer, dev1), "the signer is extraCerts[0]");
    rfx_down(&f);
}

Test(ra_verify, refuses_a_bit_flipped_protection_with_bad_message_check)
{
    struct rfx f;
    struct rp_view ir = up_with_dev1_ir(&f);
    const char *why;
    cr_assert_eq(verify(&f, ir, &why), RP_OK, "control: %s", why);
    struct rp_view bad = flip_field(&f, ir, f.rx.msg.protection.bytes);
    cr_assert_eq(verify(&f, bad, &why), RP_E_BAD_MESSAGE_CHECK, "%s", why);
    cr_expect_str_eq(why, "protection signature does not verify");
    cr_expect_eq(rp_err_failinfo(RP_E_BAD_MESSAGE_CHECK), RP_FI_BAD_MESSAGE_CHECK);
    /* a flipped bit of the header the signature covers: the same refusal */
    rfx_load(&f, ir);
    bad = flip_field(&f, ir, f.rx.msg.header.transaction_id.val);
    cr_assert_eq(verify(&f, bad, &why), RP_E_BAD_MESSAGE_CHECK, "%s", why);
    rfx_down(&f);
}

/* dev1's ir re-signed by `cert` (extraCerts: it, then `chain`) is refused signerNotTrusted
 * for `reason`; the control, the same ir re-signed by dev1 itself, passes. */
static void expect_untrusted_signer(const char *cert, const char *chain, const char *reason)
{
    struct rfx f;
    struct rp_view ir = up_with_dev1_ir(&f);
    const char *why;
    cr_assert_eq(verify(&f, signed_by(&f, ir, "vendor/dev1", "vendor/ica.pem"), &why), RP_OK,
                 "control, re-signed by dev1: %s", why);
    cr_assert_eq(verify(&f, signed_by(&f, ir, cert, chain), &why), RP_E_SIGNER_NOT_TRUSTED,
                 "%s: %s", cert, why);
    cr_expect_str_eq(why, reason);
    cr_expect_eq(rp_err_failinfo(RP_E_SIGNER_NOT_TRUSTED), RP_FI_SIGNER_NOT_TRUSTED);
    rfx_down(&f);
}

/* unknown/dev carries serialNumber=SN0001 too: only its issuer tells it apart. */
Test(ra_verify, refuses_a_signer_of_an_unknown_issuer_with_signer_not_trusted)
{
    expect_untrusted_signer("unknown/dev", "unknown/root.pem",
                            "protection certificate does not chain to a trust anchor");
}

/* An expired signer is a certificate not valid now: signerNotTrusted (trust.c's rule). */
Test(ra_verify, refuses_an_expired_signer_with_signer_not_trusted)
{
    expect_untrusted_signer("vendor/expired", "vendor/ica.pem",
                            "protection certificate not valid now");
}

/* The device's signature holds but the POP (signature over the CertRequest with the new
 * key) does not: badPOP. */
Test(ra_verify, refuses_a_broken_proof_of_possession_with_bad_pop)
{
    struct rfx f;
    struct rp_view ir = up_with_dev1_ir(&f);
    const char *why;
    char key[RFX_PATH_LEN];
    rfx_path(&f, key, "vendor/dev1.key");
    rfx_load(&f, ir);
    struct rp_view body = f.rx.msg.body_raw;
    struct rp_view popsig = f.rx.msg.body.reqs.reqs[0].pop.signature.bytes;
    cr_assert_eq(f.rx.msg.body.reqs.reqs[0].pop.type, RP_CRMF_POP_SIGNATURE);
    struct rp_view body_copy = rp_view_make(rp_arena_dup(&f.a, body.p, body.len), body.len);
    struct rp_view bad_body = flip_inside(&f, body_copy, body, popsig);
    struct rpt_mut good = {.body = body_copy, .key_file = key};
    cr_assert_eq(verify(&f, rpt_rebuild(&f.a, ir.p, ir.len, &good), &why), RP_OK,
                 "control: the same body re-signed: %s", why);
    struct rpt_mut bad = {.body = bad_body, .key_file = key};
    cr_assert_eq(verify(&f, rpt_rebuild(&f.a, ir.p, ir.len, &bad), &why), RP_E_BAD_POP, "%s", why);
    cr_expect_str_eq(why, "proof of possession does not verify");
    cr_expect_eq(rp_err_failinfo(RP_E_BAD_POP), RP_FI_BAD_POP);
    rfx_down(&f);
}

/* The second request over the same chain is a hit of the domain's chain cache (no path
 * build); another chain, and the same chain with the cache off, are not. */
Test(ra_verify, a_second_request_over_the_same_chain_hits_the_chain_cache)
{
    struct rfx f;
    rfx_up(&f, NULL);
    const char *why;
    struct rp_view ir1 = rfx_capture(&f, "ir", "vendor/dev1");
    struct rp_view cr1 = rfx_capture(&f, "cr", "vendor/dev1");
    struct rp_view ir2 = rfx_capture(&f, "ir", "vendor/dev2");
    struct ra_trust *t = ra_state_domain(f.st, &f.cfg->domains[0])->trust;
    struct ra_chain_cache *c = ra_trust_cache(t);
    cr_assert_eq(c->hits + c->misses, 0);
    cr_assert_eq(verify(&f, ir1, &why), RP_OK, "%s", why);
    cr_expect_eq(c->misses, 1, "the first request builds the path");
    cr_expect_eq(c->hits, 0);
    cr_assert_eq(verify(&f, cr1, &why), RP_OK, "%s", why);
    cr_expect_eq(c->hits, 1, "the second one over the same chain does not");
    cr_expect_eq(c->misses, 1);
    cr_assert_eq(verify(&f, ir2, &why), RP_OK, "%s", why);
    cr_expect_eq(c->misses, 2, "another device's chain is built");
    cr_expect_eq(c->hits, 1);
    /* a hit skips only the path: a bad signature over a cached chain is still refused */
    rfx_load(&f, ir1);
    struct rp_view bad = flip_field(&f, ir1, f.rx.msg.protection.bytes);
    cr_assert_eq(verify(&f, bad, &why), RP_E_BAD_MESSAGE_CHECK, "%s", why);
    cr_expect_eq(c->hits, 2);
    ra_trust_set_cache(t, false);
    cr_assert_eq(verify(&f, ir1, &why), RP_OK, "%s", why);
    cr_expect_eq(c->hits, 2, "with the cache off nothing is a hit");
    rfx_down(&f);
}
