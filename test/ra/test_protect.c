/* What the RA signs (src/ra/protect.c), with a real `openssl cmp` ir and the test PKI: the
 * re-protected request verifies under the RA certificate and its header is the device's
 * with only sender, senderKID, protectionAlg and extraCerts replaced; the RA's own error
 * answers the request; a relayed answer carries the RA chain first; without a key (or with
 * its token down) nothing is signed and the documented error comes back. */
#include "fixtures.h"
#include "rx_fixture.h"

#include "raproxy/derw.h"
#include "raproxy/metrics.h"
#include "raproxy/pkcs11.h"
#include "raproxy/sig.h"

#include <stdio.h>

#define PIN   "4711"
#define TOKEN "raproxy"
/* How far the RA's messageTime may be from the test's clock (seconds). */
#define TIME_SLACK_S 5

TestSuite(ra_protect, .timeout = 120);

/* Decode what the RA wrote (rx.out) into the test's arena. */
static struct rp_cmp_msg *decode_out(struct rfx *f)
{
    struct rp_cmp_msg *m = rp_arena_calloc(&f->a, 1, sizeof *m);
    cr_assert_not_null(m);
    uint8_t *copy = rp_arena_dup(&f->a, f->rx.out.p, f->rx.out.len);
    cr_assert_eq(rp_cmp_decode(copy, f->rx.out.len, &f->a, m, NULL), RP_OK);
    return m;
}

/* The protection of m checked under the RA certificate's key: ProtectedPart built here from
 * the decoded header and body, verified with the repository's signature code. */
static int verify_under_ra(struct rfx *f, const struct rp_cmp_msg *m)
{
    struct rp_derw w;
    struct rp_view pp;
    cr_assert_eq(rp_derw_init(&w, &f->a, m->header_raw.len + m->body_raw.len + 16), RP_OK);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_raw(&w, m->header_raw);
    rp_derw_raw(&w, m->body_raw);
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &pp), RP_OK);
    enum rp_sig_alg alg;
    cr_assert_eq(rp_sig_alg_parse(m->header.protection_alg.raw, &alg), RP_OK);
    struct rp_view ra_der;
    struct rp_cert ra = rfx_cert(f, "operator/ra.pem", &ra_der);
    struct rp_pubkey *k;
    cr_assert_eq(rp_pubkey_from_spki(ra.spki, &k), RP_OK);
    cr_assert_eq(m->protection.unused, 0);
    int rc = rp_sig_verify(alg, k, pp.p, pp.len, m->protection.bytes.p, m->protection.bytes.len);
    rp_pubkey_free(k);
    return rc;
}

/* The same message with one bit of its protection flipped: must not verify (the check above
 * can fail). */
static int verify_flipped(struct rfx *f, const struct rp_cmp_msg *m)
{
    struct rp_cmp_msg copy = *m;
    uint8_t *b = rp_arena_dup(&f->a, m->protection.bytes.p, m->protection.bytes.len);
    b[m->protection.bytes.len / 2] ^= 0x01;
    copy.protection.bytes = rp_view_make(b, m->protection.bytes.len);
    return verify_under_ra(f, &copy);
}

/* extraCerts: the RA certificate, then its chain (operator ICA), first. */
static void expect_ra_chain_first(struct rfx *f, const struct rp_cmp_msg *m)
{
    struct rp_view ra, ica;
    (void)rfx_cert(f, "operator/ra.pem", &ra);
    (void)rfx_cert(f, "operator/ica.pem", &ica);
    cr_assert_geq(m->n_extra_certs, 2);
    cr_expect(rp_view_eq(m->extra_certs[0], ra), "the RA certificate first");
    cr_expect(rp_view_eq(m->extra_certs[1], ica), "then its chain");
}

static void expect_ra_sender(struct rfx *f, const struct rp_cmp_msg *m)
{
    cr_expect_eq(m->header.sender.raw.p[0], 0xa4, "sender is a directoryName");
    cr_expect(rp_name_eq(m->header.sender.name, f->st->ra.cert.subject), "sender: the RA");
    cr_expect(rp_view_eq(m->header.sender_kid.val, f->st->ra.cert.ski), "senderKID: RA's SKI");
    cr_expect(rp_view_eq(m->header.protection_alg.raw, f->st->ra.alg_der));
}

/* A verified ir of dev1, loaded as the pipeline hands it to the protect step. */
static struct rp_view verified_ir(struct rfx *f)
{
    struct rp_view ir = rfx_capture(f, "ir", "vendor/dev1");
    rfx_load(f, ir);
    ra_verify_request(&f->rx);
    cr_assert_eq(f->rx.verdict, RP_OK, "%s", f->rx.why);
    return ir;
}

Test(ra_protect, a_reprotected_ir_verifies_under_the_ra_and_keeps_the_device_header)
{
    struct rfx f;
    rfx_up(&f, NULL);
    (void)verified_ir(&f);
    const struct rp_cmp_msg *in = &f.rx.msg;
    cr_assert_eq(ra_protect_forward(&f.rx), RP_OK);
    struct rp_cmp_msg *out = decode_out(&f);
    cr_expect_eq(verify_under_ra(&f, out), RP_OK, "protection by the RA key");
    cr_expect_neq(verify_flipped(&f, out), RP_OK, "control: a flipped protection does not");
    expect_ra_sender(&f, out);
    expect_ra_chain_first(&f, out);
    cr_expect_eq(out->n_extra_certs, f.st->ra.certs.n, "only the RA's: the device's are gone");
    const struct rp_cmp_header *h = &out->header, *d = &in->header;
    cr_expect(rp_view_eq(h->pvno_raw, d->pvno_raw));
    cr_expect(rp_view_eq(h->recipient.raw, d->recipient.raw), "recipient kept");
    cr_expect(rp_view_eq(h->message_time_raw, d->message_time_raw), "messageTime kept");
    cr_expect(rp_view_present(h->message_time_raw));
    cr_expect(rp_view_eq(h->transaction_id.raw, d->transaction_id.raw), "transactionID kept");
    cr_expect(rp_view_eq(h->sender_nonce.raw, d->sender_nonce.raw), "senderNonce kept");
    cr_expect(rp_view_eq(h->recip_nonce.raw, d->recip_nonce.raw), "recipNonce kept");
    cr_expect(rp_view_eq(h->general_info_raw, d->general_info_raw), "generalInfo kept");
    cr_expect(rp_view_eq(out->body_raw, in->body_raw), "the body untouched");
    rfx_down(&f);
}

/* kur's signature is the proof of the old key: it goes as the device wrote it. */
Test(ra_protect, a_kur_is_forwarded_unchanged)
{
    struct rfx f;
    rfx_up(&f, NULL);
    struct rp_view kur = rfx_capture(&f, "kur", "vendor/dev1");
    rfx_load(&f, kur);
    cr_assert_eq(f.rx.msg.body.type, RP_CMP_KUR);
    cr_assert_eq(ra_protect_forward(&f.rx), RP_OK);
    cr_expect(rp_view_eq(f.rx.out, kur), "byte for byte");
    /* control: an ir of the same device is re-protected */
    (void)verified_ir(&f);
    cr_assert_eq(ra_protect_forward(&f.rx), RP_OK);
    cr_expect_not(rp_view_eq(f.rx.out, f.rx.msg.raw));
    rfx_down(&f);
}

/* The RA's refusal answers the request: recipient its sender, recipNonce its senderNonce, a
 * fresh senderNonce, the same transactionID, messageTime now, the failInfo of the error. */
Test(ra_protect, an_error_answers_the_request_under_the_ra_signature)
{
    struct rfx f;
    rfx_up(&f, NULL);
    (void)verified_ir(&f);
    const struct rp_cmp_header *d = &f.rx.msg.header;
    cr_assert_eq(ra_protect_error(&f.rx, RP_E_NOT_AUTHORIZED, NULL), RP_OK);
    struct rp_cmp_msg *out = decode_out(&f);
    cr_expect_eq(verify_under_ra(&f, out), RP_OK);
    cr_expect_neq(verify_flipped(&f, out), RP_OK);
    expect_ra_sender(&f, out);
    expect_ra_chain_first(&f, out);
    const struct rp_cmp_header *h = &out->header;
    cr_expect(rp_view_eq(h->recipient.raw, d->sender.raw), "recipient: the device");
    cr_expect(rp_view_eq(h->recip_nonce.val, d->sender_nonce.val), "recipNonce: its nonce");
    cr_expect(rp_view_eq(h->transaction_id.raw, d->transaction_id.raw));
    cr_expect_eq(h->sender_nonce.val.len, 16u);
    cr_expect_not(rp_view_eq(h->sender_nonce.val, d->sender_nonce.val), "a fresh senderNonce");
    int64_t now = (int64_t)time(NULL);
    cr_expect(h->message_time >= now - TIME_SLACK_S && h->message_time <= now + TIME_SLACK_S,
              "messageTime now: %lld", (long long)h->message_time);
    cr_assert_eq(out->body.type, RP_CMP_ERROR);
    cr_expect_eq(out->body.error.status.fail_info, 1u << RP_FI_NOT_AUTHORIZED);
    rfx_down(&f);
}

/* A CA answer relayed to the device: the RA chain first, then the answer's own certificates
 * without a second copy of the RA's; addressed to the device's request. */
Test(ra_protect, a_relayed_answer_carries_the_ra_chain_first_and_the_answers_certificates)
{
    struct rfx f;
    rfx_up(&f, NULL);
    struct rp_view ir = verified_ir(&f);
    struct rp_view xc[2];
    (void)rfx_cert(&f, "operator/ra.pem", &xc[0]);
    (void)rfx_cert(&f, "ca/srv.pem", &xc[1]);
    char key[RFX_PATH_LEN];
    rfx_path(&f, key, "ca/srv.key");
    struct rpt_mut mut = {.extra_certs = xc, .n_extra_certs = 2, .key_file = key};
    struct rp_view ans_der = rpt_rebuild(&f.a, ir.p, ir.len, &mut);
    cr_assert(rp_view_present(ans_der));
    struct rp_cmp_msg *ans = rp_arena_calloc(&f.a, 1, sizeof *ans);
    cr_assert_eq(rp_cmp_decode(ans_der.p, ans_der.len, &f.a, ans, NULL), RP_OK);
    cr_assert_eq(ra_protect_relay(&f.rx, ans), RP_OK);
    struct rp_cmp_msg *out = decode_out(&f);
    cr_expect_eq(verify_under_ra(&f, out), RP_OK);
    expect_ra_sender(&f, out);
    expect_ra_chain_first(&f, out);
    cr_expect_eq(out->n_extra_certs, f.st->ra.certs.n + 1, "the RA certificate only once");
    cr_expect(rp_view_eq(out->extra_certs[f.st->ra.certs.n], xc[1]), "then the CA's");
    const struct rp_cmp_header *h = &out->header, *d = &f.rx.msg.header;
    cr_expect(rp_view_eq(h->recipient.raw, d->sender.raw));
    cr_expect(rp_view_eq(h->recip_nonce.val, d->sender_nonce.val));
    cr_expect(rp_view_eq(h->sender_nonce.raw, ans->header.sender_nonce.raw), "the CA's nonce");
    cr_expect(rp_view_eq(out->body_raw, ans->body_raw));
    rfx_down(&f);
}

/* Without a key the RA signs nothing: RP_E_CONFIG, the control with the key beside it. */
Test(ra_protect, without_a_key_nothing_is_signed)
{
    struct rfx f;
    rfx_up(&f, NULL);
    (void)verified_ir(&f);
    struct rp_privkey *key = f.st->ra.key;
    f.st->ra.key = NULL;
    f.rx.out = RP_VIEW_NULL;
    cr_expect_eq(ra_protect_forward(&f.rx), RP_E_CONFIG);
    cr_expect_eq(ra_protect_error(&f.rx, RP_E_BAD_POP, NULL), RP_E_CONFIG);
    cr_expect_not(rp_view_present(f.rx.out), "nothing written");
    f.st->ra.key = key;
    cr_expect_eq(ra_protect_forward(&f.rx), RP_OK, "control: with the key");
    rfx_down(&f);
}

static int64_t key_failures(const char *reason)
{
    char labels[64];
    snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
    struct rp_metric *m = rp_metric_get("raproxy_ra_key_failures_total", RP_METRIC_COUNTER, labels);
    cr_assert_not_null(m);
    return m->value;
}

/* The RA key in a PKCS#11 token (SoftHSM2) that goes away: the first signature meets the
 * missing token (RP_E_KEY_TOKEN), later ones fail at once (RP_E_KEY_UNAVAILABLE), each
 * counted; before it went, the same key signed (the control). */
Test(ra_protect, with_the_keys_token_down_the_documented_errors_come_back)
{
    struct rfx f;
    rfx_up(&f, NULL);
    char ra_key[RFX_PATH_LEN], why[256];
    rfx_path(&f, ra_key, "operator/ra.key");
    cr_assert_eq(rpt_softhsm_init(f.dir, TOKEN, PIN), 0);
    cr_assert_eq(rpt_softhsm_import(f.dir, TOKEN, PIN, ra_key, "ra", "01"), 0);
    static const struct rp_p11_opts opts = {.module = RPT_SOFTHSM_MODULE, .pin = PIN};
    struct rp_privkey *p11;
    cr_assert_eq(rp_privkey_load("pkcs11:token=" TOKEN ";object=ra", &opts, &p11, why, sizeof why),
                 RP_OK, "%s", why);
    rp_p11_thread_start(0);
    struct rp_privkey *file_key = f.st->ra.key;
    f.st->ra.key = p11;
    (void)verified_ir(&f);
    cr_assert_eq(ra_protect_forward(&f.rx), RP_OK, "control: the token signs");
    cr_expect_eq(verify_under_ra(&f, decode_out(&f)), RP_OK);
    char tokens[RFX_PATH_LEN], away[RFX_PATH_LEN + 8];
    rpt_softhsm_tokendir(f.dir, tokens, sizeof tokens);
    snprintf(away, sizeof away, "%s.away", tokens);
    cr_assert_eq(rename(tokens, away), 0);
    int64_t down0 = key_failures("token_down"), err0 = key_failures("token_error");
    cr_expect_eq(ra_protect_forward(&f.rx), RP_E_KEY_TOKEN, "the first meets the missing token");
    cr_expect_eq(ra_protect_error(&f.rx, RP_E_BAD_POP, NULL), RP_E_KEY_UNAVAILABLE,
                 "later ones fail at once");
    cr_expect_eq(key_failures("token_error"), err0 + 1);
    cr_expect_eq(key_failures("token_down"), down0 + 1);
    f.st->ra.key = file_key;
    rp_privkey_free(p11);
    rp_p11_shutdown();
    rfx_down(&f);
}
