/* OCSP codec and verifier on real requests and responses made by `openssl ocsp` (as
 * client with -reqout, as responder with -index/-reqin/-respout) from the test PKI. */
#include "support.h"

#include "raproxy/err.h"
#include "raproxy/ocsp.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* Fixtures, in <build>/test-ocsp (made once, under a lock, like the test PKI):
 *   resp.pem/key    delegated responder issued by vendor ica, EKU OCSPSigning
 *   noeku.pem/key   issued by vendor ica without the EKU
 *   forged.pem/key  same subject and issuer name as resp.pem, issued by an unrelated key
 *   index.txt       dev1 valid, revoked.pem revoked; dev2 absent (unknown)
 *   req-*.der       good, revoked, unknown (dev2), nonce (dev1 with a nonce), two (dev1+dev2)
 *   resp-*.der      answers: by resp.pem (good revoked unknown nonce two), by the ica itself
 *                   (ca), byKey ResponderID (bykey), no nextUpdate (nonext), forged, noeku,
 *                   and mismatch (the answer about revoked.pem) */
static const char fixture_script[] =
    "set -eu\n"
    "P=$1; D=$2; cd \"$D\"; V=$P/vendor\n"
    "printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature\\n"
    "extendedKeyUsage=OCSPSigning\\nsubjectKeyIdentifier=hash\\nauthorityKeyIdentifier=keyid\\n'"
    " > resp.ext\n"
    "printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature\\n"
    "subjectKeyIdentifier=hash\\nauthorityKeyIdentifier=keyid\\n' > noeku.ext\n"
    "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\"; }\n"
    "issue() { key \"$1.key\"; openssl req -new -key \"$1.key\" -subj \"$2\" -out \"$1.csr\"\n"
    "  openssl x509 -req -in \"$1.csr\" -CA \"$4\" -CAkey \"$5\" -set_serial \"$6\" -days 365 "
    "-extfile \"$3\" -out \"$1.pem\"; }\n"
    "issue resp '/C=DE/O=Vendor/CN=Vendor OCSP' resp.ext $V/ica.pem $V/ica.key 0x4f01\n"
    "issue noeku '/C=DE/O=Vendor/CN=Vendor OCSP no EKU' noeku.ext $V/ica.pem $V/ica.key 0x4f02\n"
    "key fakeca.key\n"
    "openssl req -x509 -new -key fakeca.key -subj '/C=DE/O=Vendor/CN=Vendor ICA' -days 365 "
    "-out fakeca.pem\n"
    "issue forged '/C=DE/O=Vendor/CN=Vendor OCSP' resp.ext fakeca.pem fakeca.key 0x4f01\n"
    "row() { s=$(openssl x509 -in \"$1\" -noout -serial | cut -d= -f2)\n"
    "  printf '%s\\t351231235959Z\\t%s\\t%s\\tunknown\\t/CN=x\\n' \"$2\" \"$3\" \"$s\"; }\n"
    "{ row $V/dev1.pem V ''; row $V/revoked.pem R 240101000000Z,keyCompromise; } > index.txt\n"
    "q() { openssl ocsp -issuer $V/ica.pem \"$@\"; }\n"
    "q -cert $V/dev1.pem -no_nonce -reqout req-good.der\n"
    "q -cert $V/revoked.pem -no_nonce -reqout req-revoked.der\n"
    "q -cert $V/dev2.pem -no_nonce -reqout req-unknown.der\n"
    "q -cert $V/dev1.pem -reqout req-nonce.der\n"
    "q -cert $V/dev1.pem -cert $V/dev2.pem -no_nonce -reqout req-two.der\n"
    "a() { openssl ocsp -index index.txt -CA $V/ica.pem -reqin req-$1.der -respout $2 "
    "-rsigner $3 -rkey $4 ${5:-}; }\n"
    "for r in good revoked unknown nonce two; do a $r resp-$r.der resp.pem resp.key '-nmin 60'; "
    "done\n"
    "a good resp-ca.der $V/ica.pem $V/ica.key '-nmin 60'\n"
    "a good resp-bykey.der resp.pem resp.key '-nmin 60 -resp_key_id'\n"
    "a good resp-nonext.der resp.pem resp.key\n"
    "a good resp-forged.der forged.pem forged.key '-nmin 60'\n"
    "a good resp-noeku.der noeku.pem noeku.key '-nmin 60'\n"
    "a revoked resp-mismatch.der resp.pem resp.key '-nmin 60'\n"
    "touch .done\n";

static const char *fixtures(void)
{
    static char dir[512];
    char lock[600], done[600], script[600], log[600];
    const char *pki = rpt_pki();
    if (!pki)
        return NULL;
    snprintf(dir, sizeof dir, "%s/test-ocsp", rpt_bin());
    snprintf(lock, sizeof lock, "%s/test-ocsp.lock", rpt_bin());
    snprintf(done, sizeof done, "%s/.done", dir);
    snprintf(script, sizeof script, "%s/test-ocsp.sh", rpt_bin());
    snprintf(log, sizeof log, "%s/test-ocsp.log", rpt_bin());
    int fd = open(lock, O_CREAT | O_RDWR, 0644);
    if (fd < 0)
        return NULL;
    flock(fd, LOCK_EX);
    int ok = access(done, F_OK) == 0;
    if (!ok) {
        char rm[1100];
        snprintf(rm, sizeof rm, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
        const char *mk[] = {"sh", "-c", rm, NULL};
        const char *run[] = {"bash", script, pki, dir, NULL};
        ok = rpt_write_file(script, fixture_script, strlen(fixture_script)) == 0 &&
             rpt_run(mk, 10000, log) == 0 && rpt_run(run, 120000, log) == 0 &&
             access(done, F_OK) == 0;
    }
    flock(fd, LOCK_UN);
    close(fd);
    return ok ? dir : NULL;
}

struct blob {
    uint8_t *p;
    size_t len;
};

static struct blob load(const char *name)
{
    const char *dir = fixtures();
    cr_assert_not_null(dir, "OCSP fixtures failed, see %s/test-ocsp.log", rpt_bin());
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct blob b = {0};
    b.p = rpt_read_file(path, &b.len);
    cr_assert_not_null(b.p, "cannot read %s", path);
    return b;
}

static struct rp_ocsp_req *req_of(const char *name, struct blob *keep)
{
    static struct rp_ocsp_req req;
    *keep = load(name);
    cr_assert_eq(rp_ocsp_req_parse(keep->p, keep->len, &req, NULL), RP_OK, "%s", name);
    return &req;
}

static struct rp_ocsp_resp *resp_of(const char *name, struct blob *keep)
{
    static struct rp_ocsp_resp resp;
    *keep = load(name);
    struct rp_der_err err = {0};
    int rc = rp_ocsp_resp_parse(keep->p, keep->len, &resp, &err);
    cr_assert_eq(rc, RP_OK, "%s: %s at %zu (%s)", name, rp_err_name(rc), err.offset,
                 err.expected ? err.expected : "-");
    return &resp;
}

/* Trust: vendor ica as issuing CA, and/or the delegated responder pinned. */
static struct rp_ocsp_trust *trust(int with_ca, const char *pinned)
{
    char ica[600], pin[700];
    snprintf(ica, sizeof ica, "%s/vendor/ica.pem", rpt_pki());
    char *cas[] = {ica};
    if (pinned)
        snprintf(pin, sizeof pin, "%s/%s", fixtures(), pinned);
    struct rp_ocsp_trust *t = NULL;
    cr_assert_eq(rp_ocsp_trust_load(&t, pinned ? pin : NULL, cas, with_ca ? 1 : 0), RP_OK);
    return t;
}

/* Verify answer `resp` to request `req` a few seconds after it was made. */
static int verify(struct rp_ocsp_trust *t, const char *req, const char *resp, int64_t *expires)
{
    struct blob a, b;
    struct rp_ocsp_req *q = req_of(req, &a);
    struct rp_ocsp_resp *r = resp_of(resp, &b);
    int64_t exp = 0;
    int rc = rp_ocsp_verify(t, q, r, r->produced_at + 5, &exp);
    if (expires)
        *expires = exp;
    free(a.p);
    free(b.p);
    return rc;
}

Test(ocsp_parse, reads_a_request_without_nonce)
{
    struct blob b;
    struct rp_ocsp_req *q = req_of("req-good.der", &b);
    cr_assert_eq(q->n_ids, 1);
    cr_assert(rp_oid_is(q->ids[0].hash_alg, RP_OID_SHA1));
    cr_assert_eq(q->ids[0].name_hash.len, 20);
    cr_assert_eq(q->ids[0].key_hash.len, 20);
    cr_assert(q->ids[0].serial.len > 0);
    cr_assert_not(rp_view_present(q->nonce));
    cr_assert_not(q->is_signed);
    free(b.p);
}

Test(ocsp_parse, reads_the_nonce_and_several_certids)
{
    struct blob a, b;
    struct rp_ocsp_req *q = req_of("req-nonce.der", &a);
    cr_assert(rp_view_present(q->nonce));
    cr_assert_geq(q->nonce.len, 8);
    q = req_of("req-two.der", &b);
    cr_assert_eq(q->n_ids, 2);
    cr_assert_not(rp_view_eq(q->ids[0].serial, q->ids[1].serial));
    free(a.p);
    free(b.p);
}

Test(ocsp_parse, reads_good_revoked_and_unknown_answers)
{
    const char *names[] = {"resp-good.der", "resp-revoked.der", "resp-unknown.der"};
    enum rp_ocsp_cert_status want[] = {RP_OCSP_GOOD, RP_OCSP_REVOKED, RP_OCSP_UNKNOWN};
    for (int i = 0; i < 3; i++) {
        struct blob b;
        struct rp_ocsp_resp *r = resp_of(names[i], &b);
        cr_assert_eq(r->status, RP_OCSP_SUCCESSFUL);
        cr_assert_eq(r->n_singles, 1);
        cr_assert_eq(r->singles[0].status, want[i], "%s", names[i]);
        cr_assert_eq(r->singles[0].next_update - r->singles[0].this_update, 3600);
        cr_assert_not(r->responder_by_key);
        cr_assert_eq(r->n_certs, 1);
        if (want[i] == RP_OCSP_REVOKED)
            cr_assert_eq(r->singles[0].revocation_time, 1704067200); /* 2024-01-01 */
        free(b.p);
    }
}

Test(ocsp_parse, reads_bykey_responder_and_missing_next_update)
{
    struct blob a, b;
    struct rp_ocsp_resp *r = resp_of("resp-bykey.der", &a);
    cr_assert(r->responder_by_key);
    cr_assert_eq(r->responder_id.len, 20);
    r = resp_of("resp-nonext.der", &b);
    cr_assert_eq(r->singles[0].next_update, 0);
    free(a.p);
    free(b.p);
}

Test(ocsp_parse, status_only_response_round_trips)
{
    uint8_t der[RP_OCSP_STATUS_RESPONSE_LEN];
    struct rp_ocsp_resp r;
    rp_ocsp_status_response(RP_OCSP_TRY_LATER, der);
    cr_assert_eq(memcmp(der, "\x30\x03\x0a\x01\x03", 5), 0);
    cr_assert_eq(rp_ocsp_resp_parse(der, sizeof der, &r, NULL), RP_OK);
    cr_assert_eq(r.status, RP_OCSP_TRY_LATER);
    /* successful without responseBytes is not a response */
    rp_ocsp_status_response(RP_OCSP_SUCCESSFUL, der);
    cr_assert_eq(rp_ocsp_resp_parse(der, sizeof der, &r, NULL), RP_E_OCSP_RESPONSE);
    /* status 4 is unassigned */
    der[4] = 4;
    cr_assert_lt(rp_ocsp_resp_parse(der, sizeof der, &r, NULL), 0);
}

Test(ocsp_parse, every_truncation_and_trailing_byte_is_refused)
{
    struct blob a = load("resp-good.der"), b = load("req-two.der");
    struct rp_ocsp_resp r;
    struct rp_ocsp_req q;
    for (size_t n = 0; n < a.len; n++)
        cr_assert_lt(rp_ocsp_resp_parse(a.p, n, &r, NULL), 0, "prefix %zu", n);
    for (size_t n = 0; n < b.len; n++)
        cr_assert_lt(rp_ocsp_req_parse(b.p, n, &q, NULL), 0, "prefix %zu", n);
    uint8_t *longer = malloc(a.len + 1);
    memcpy(longer, a.p, a.len);
    longer[a.len] = 0;
    cr_assert_eq(rp_ocsp_resp_parse(longer, a.len + 1, &r, NULL), RP_E_DER_TRAILING);
    /* a request is not a response and the other way round */
    cr_assert_lt(rp_ocsp_resp_parse(b.p, b.len, &r, NULL), 0);
    cr_assert_lt(rp_ocsp_req_parse(a.p, a.len, &q, NULL), 0);
    free(longer);
    free(a.p);
    free(b.p);
}

Test(ocsp_parse, every_single_byte_flip_is_survived)
{
    struct blob a = load("resp-good.der");
    struct rp_ocsp_resp r;
    struct rp_ocsp_trust *t = trust(1, NULL);
    struct blob qb;
    struct rp_ocsp_req *q = req_of("req-good.der", &qb);
    for (size_t i = 0; i < a.len; i++) {
        a.p[i] ^= 0x01;
        if (rp_ocsp_resp_parse(a.p, a.len, &r, NULL) == RP_OK) {
            int64_t exp;
            /* a change that still parses must never verify */
            cr_assert_neq(rp_ocsp_verify(t, q, &r, r.produced_at + 5, &exp), RP_OK, "byte %zu", i);
        }
        a.p[i] ^= 0x01;
    }
    rp_ocsp_trust_unref(t);
    free(qb.p);
    free(a.p);
}

Test(ocsp_verify, delegated_responder_issued_by_the_ca_passes)
{
    struct rp_ocsp_trust *t = trust(1, NULL);
    int64_t exp = 0;
    cr_assert_eq(verify(t, "req-good.der", "resp-good.der", &exp), RP_OK);
    cr_assert_gt(exp, 0);
    cr_assert_eq(verify(t, "req-revoked.der", "resp-revoked.der", NULL), RP_OK);
    cr_assert_eq(verify(t, "req-unknown.der", "resp-unknown.der", NULL), RP_OK);
    cr_assert_eq(verify(t, "req-two.der", "resp-two.der", NULL), RP_OK);
    cr_assert_eq(verify(t, "req-good.der", "resp-bykey.der", NULL), RP_OK);
    rp_ocsp_trust_unref(t);
}

Test(ocsp_verify, the_issuing_ca_itself_passes)
{
    struct rp_ocsp_trust *t = trust(1, NULL);
    cr_assert_eq(verify(t, "req-good.der", "resp-ca.der", NULL), RP_OK);
    rp_ocsp_trust_unref(t);
}

Test(ocsp_verify, pinned_responder_passes_without_anchors)
{
    struct rp_ocsp_trust *t = trust(0, "resp.pem");
    cr_assert_eq(verify(t, "req-good.der", "resp-good.der", NULL), RP_OK);
    /* only the pinned one: the CA's own answer is not trusted here */
    cr_assert_eq(verify(t, "req-good.der", "resp-ca.der", NULL), RP_E_OCSP_SIGNER);
    rp_ocsp_trust_unref(t);
}

Test(ocsp_verify, forged_responder_is_refused)
{
    struct rp_ocsp_trust *t = trust(1, NULL);
    cr_assert_eq(verify(t, "req-good.der", "resp-forged.der", NULL), RP_E_OCSP_SIGNER);
    rp_ocsp_trust_unref(t);
    /* pinned: same name as the genuine responder, other key */
    t = trust(0, "resp.pem");
    cr_assert_neq(verify(t, "req-good.der", "resp-forged.der", NULL), RP_OK);
    rp_ocsp_trust_unref(t);
}

Test(ocsp_verify, responder_without_ocsp_signing_eku_is_refused)
{
    struct rp_ocsp_trust *t = trust(1, NULL);
    cr_assert_eq(verify(t, "req-good.der", "resp-noeku.der", NULL), RP_E_OCSP_SIGNER);
    rp_ocsp_trust_unref(t);
}

Test(ocsp_verify, answer_about_another_certificate_is_refused)
{
    struct rp_ocsp_trust *t = trust(1, NULL);
    cr_assert_eq(verify(t, "req-good.der", "resp-mismatch.der", NULL), RP_E_OCSP_MISMATCH);
    /* two asked, one answered */
    cr_assert_eq(verify(t, "req-two.der", "resp-good.der", NULL), RP_E_OCSP_MISMATCH);
    rp_ocsp_trust_unref(t);
}

Test(ocsp_verify, nonce_must_be_echoed)
{
    struct rp_ocsp_trust *t = trust(1, NULL);
    cr_assert_eq(verify(t, "req-nonce.der", "resp-nonce.der", NULL), RP_OK);
    cr_assert_eq(verify(t, "req-nonce.der", "resp-good.der", NULL), RP_E_OCSP_MISMATCH);
    rp_ocsp_trust_unref(t);
}

Test(ocsp_verify, no_next_update_means_not_cacheable)
{
    struct rp_ocsp_trust *t = trust(1, NULL);
    int64_t exp = 1;
    cr_assert_eq(verify(t, "req-good.der", "resp-nonext.der", &exp), RP_OK);
    cr_assert_eq(exp, 0);
    rp_ocsp_trust_unref(t);
}

Test(ocsp_verify, stale_or_future_answers_are_refused)
{
    struct rp_ocsp_trust *t = trust(1, NULL);
    struct blob a, b;
    struct rp_ocsp_req *q = req_of("req-good.der", &a);
    struct rp_ocsp_resp *r = resp_of("resp-good.der", &b);
    int64_t exp, tu = r->singles[0].this_update, nu = r->singles[0].next_update;
    cr_assert_eq(rp_ocsp_verify(t, q, r, nu + RP_OCSP_SKEW_S + 1, &exp), RP_E_OCSP_STALE);
    cr_assert_eq(rp_ocsp_verify(t, q, r, tu - RP_OCSP_SKEW_S - 1, &exp), RP_E_OCSP_STALE);
    cr_assert_eq(rp_ocsp_verify(t, q, r, nu - 1, &exp), RP_OK);
    rp_ocsp_trust_unref(t);
    free(a.p);
    free(b.p);
}

Test(ocsp_verify, wrong_signature_is_refused)
{
    struct rp_ocsp_trust *t = trust(1, NULL);
    struct blob a, b;
    struct rp_ocsp_req *q = req_of("req-good.der", &a);
    struct rp_ocsp_resp *r = resp_of("resp-good.der", &b);
    /* the last octet of ECDSA's s: still DER, no longer the signature */
    size_t at = (size_t)(r->sig.bytes.p - b.p) + r->sig.bytes.len - 1;
    b.p[at] ^= 0x5a;
    cr_assert_eq(rp_ocsp_resp_parse(b.p, b.len, r, NULL), RP_OK);
    int64_t exp;
    cr_assert_eq(rp_ocsp_verify(t, q, r, r->produced_at + 5, &exp), RP_E_OCSP_SIGNATURE);
    rp_ocsp_trust_unref(t);
    free(a.p);
    free(b.p);
}

Test(ocsp_trust, unreadable_or_empty_files_fail)
{
    struct rp_ocsp_trust *t = NULL;
    char *none[] = {"/nonexistent/ca.pem"};
    cr_assert_eq(rp_ocsp_trust_load(&t, NULL, none, 1), RP_E_KEY_LOAD);
    cr_assert_null(t);
    cr_assert_eq(rp_ocsp_trust_load(&t, NULL, NULL, 0), RP_E_INVAL);
    char idx[700];
    snprintf(idx, sizeof idx, "%s/index.txt", fixtures());
    cr_assert_eq(rp_ocsp_trust_load(&t, idx, NULL, 0), RP_E_KEY_LOAD);
}

Test(ocsp_b64, decodes_standard_and_url_safe_alphabets)
{
    uint8_t out[16];
    size_t n;
    cr_assert_eq(rp_ocsp_b64_decode("aGVsbG8=", 8, out, sizeof out, &n), RP_OK);
    cr_assert_eq(n, 5);
    cr_assert_eq(memcmp(out, "hello", 5), 0);
    cr_assert_eq(rp_ocsp_b64_decode("aGVsbG8", 7, out, sizeof out, &n), RP_OK);
    cr_assert_eq(n, 5);
    cr_assert_eq(rp_ocsp_b64_decode("-_8=", 4, out, sizeof out, &n), RP_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(out[0], 0xfb);
    cr_assert_eq(out[1], 0xff);
    cr_assert_eq(rp_ocsp_b64_decode("+/8=", 4, out, sizeof out, &n), RP_OK);
    cr_assert_eq(out[0], 0xfb);
}

Test(ocsp_b64, refuses_bad_input)
{
    uint8_t out[4];
    size_t n;
    cr_assert_eq(rp_ocsp_b64_decode("aGV sbG8=", 9, out, sizeof out, &n), RP_E_INVAL);
    cr_assert_eq(rp_ocsp_b64_decode("aGVsbG8=", 8, out, 4, &n), RP_E_INVAL); /* too small */
    cr_assert_eq(rp_ocsp_b64_decode("a", 1, out, sizeof out, &n), RP_E_INVAL);
    cr_assert_eq(rp_ocsp_b64_decode("aR==", 4, out, sizeof out, &n), RP_E_INVAL); /* bits */
    cr_assert_eq(rp_ocsp_b64_decode("aQ==aQ==", 8, out, sizeof out, &n), RP_E_INVAL);
}
