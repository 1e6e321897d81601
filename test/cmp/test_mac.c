/* PasswordBasedMac and PBMAC1 against requests written by `openssl cmp` and against the
 * openssl kdf/mac commands. */
#include "raproxy/arena.h"
#include "raproxy/cmp.h"
#include "raproxy/der.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/guard.h"
#include "raproxy/mac.h"

#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPENSSL_TIMEOUT_MS 60000
#define ARENA_CAP          (64u * 1024u)
#define MAX_ITER           10000u
#define OPENSSL_PBM_ITER   500 /* what openssl cmp writes */

static const char secret[] = "pbm-secret-1";
#define SECRET ((const uint8_t *)secret), (sizeof secret - 1)

struct req {
    uint8_t *der;
    size_t len;
    struct rp_arena arena;
    struct rp_cmp_msg msg;
    struct rp_view protected_part;
};

static void req_decode(struct req *r)
{
    cr_assert_eq(rp_arena_new(&r->arena, ARENA_CAP), RP_OK);
    int rc = rp_cmp_decode(r->der, r->len, &r->arena, &r->msg, NULL);
    cr_assert_eq(rc, RP_OK, "%s", rp_err_name(rc));
    cr_assert(r->msg.has_protection);
    cr_assert_eq(rp_cmp_protected_part(&r->msg, &r->arena, &r->protected_part), RP_OK);
}

static void req_free(struct req *r)
{
    rp_arena_free(&r->arena);
    free(r->der);
}

/* An ir MAC-protected by `openssl cmp`, written with -reqout although no server answers. */
static void openssl_ir(const char *mac, struct req *r)
{
    char *dir = rpt_tmpdir();
    char cmd[2048], out[600];
    snprintf(out, sizeof out, "%s/ir.der", dir);
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
             "-out new.key 2>/dev/null && "
             "openssl cmp -cmd ir -server 127.0.0.1:%d -path /.well-known/cmp "
             "-secret pass:%s -ref kid-1 -mac %s -newkey new.key -subject /CN=dev "
             "-recipient /CN=ca -certout cert.pem -reqout ir.der >cmp.log 2>&1; "
             "test -s ir.der",
             dir, rpt_free_port(), secret, mac);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    cr_assert_eq(rpt_run(argv, OPENSSL_TIMEOUT_MS, NULL), 0, "openssl cmp wrote no request");
    r->der = rpt_read_file(out, &r->len);
    cr_assert_not_null(r->der);
    rpt_rmdir(dir);
    free(dir);
    req_decode(r);
}

static int verify_req(const struct req *r, const uint8_t *s, size_t slen, uint32_t max_iter)
{
    return rp_mac_verify(r->msg.header.protection_alg.raw, s, slen, r->protected_part.p,
                         r->protected_part.len, r->msg.protection.bytes.p,
                         r->msg.protection.bytes.len, max_iter);
}

Test(mac, verifies_pbm_requests_written_by_openssl_cmp)
{
    const char *macs[] = {"hmac-sha1", "hmacWithSHA256"};
    for (size_t i = 0; i < 2; i++) {
        struct req r = {0};
        openssl_ir(macs[i], &r);
        cr_expect_eq(verify_req(&r, SECRET, MAX_ITER), RP_OK, "%s", macs[i]);
        cr_expect_eq(verify_req(&r, (const uint8_t *)"pbm-secret-2", 12, MAX_ITER),
                     RP_E_BAD_MESSAGE_CHECK, "wrong secret, %s", macs[i]);
        cr_expect_eq(verify_req(&r, SECRET, OPENSSL_PBM_ITER - 1), RP_E_BAD_ALG,
                     "iteration count above the maximum");

        /* one flipped bit in the body */
        uint8_t *pp = (uint8_t *)r.protected_part.p;
        pp[r.protected_part.len - 1] ^= 0x01;
        cr_expect_eq(verify_req(&r, SECRET, MAX_ITER), RP_E_BAD_MESSAGE_CHECK);
        pp[r.protected_part.len - 1] ^= 0x01;
        /* the MAC cut short */
        cr_expect_eq(rp_mac_verify(r.msg.header.protection_alg.raw, SECRET, r.protected_part.p,
                                   r.protected_part.len, r.msg.protection.bytes.p,
                                   r.msg.protection.bytes.len - 1, MAX_ITER),
                     RP_E_BAD_MESSAGE_CHECK);
        req_free(&r);
    }
}

Test(mac, verifies_the_corpus_pbm_request)
{
    char p[600];
    struct req r = {0};
    snprintf(p, sizeof p, "%s/test/corpus/ir-mac.der", rpt_src());
    r.der = rpt_read_file(p, &r.len);
    cr_assert_not_null(r.der, "%s", p);
    req_decode(&r);
    cr_expect_eq(verify_req(&r, SECRET, MAX_ITER), RP_OK);
    req_free(&r);
}

/* Our PBM identifier for openssl's parameters is byte for byte what openssl wrote, and
 * our MAC with it is openssl's MAC. */
Test(mac, pbm_builder_and_protect_match_openssl)
{
    struct req r = {0};
    openssl_ir("hmacWithSHA256", &r);
    struct rp_der_algid *ai = &r.msg.header.protection_alg;
    /* the salt is the first element of the parameters: 30 len 04 len salt... */
    cr_assert_eq(ai->params.p[2], 0x04);
    struct rp_view salt = rp_view_make(ai->params.p + 4, ai->params.p[3]);
    struct rp_view mine;
    cr_assert_eq(
        rp_mac_pbm_algid(&r.arena, RP_MAC_SHA256, RP_MAC_SHA256, salt, OPENSSL_PBM_ITER, &mine),
        RP_OK);
    cr_expect(rp_view_eq(mine, ai->raw), "builder output differs from openssl's");

    uint8_t mac[RP_MAC_MAX];
    size_t n = 0;
    cr_assert_eq(rp_mac_protect(mine, SECRET, r.protected_part.p, r.protected_part.len, mac,
                                sizeof mac, &n, MAX_ITER),
                 RP_OK);
    cr_expect_eq(n, r.msg.protection.bytes.len);
    cr_expect_eq(memcmp(mac, r.msg.protection.bytes.p, n), 0);
    cr_expect_eq(rp_mac_protect(mine, SECRET, r.protected_part.p, r.protected_part.len, mac, 31, &n,
                                MAX_ITER),
                 RP_E_INVAL);
    req_free(&r);
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

/* PBKDF2 then HMAC with the openssl CLI; returns the MAC as lowercase hex. */
static void openssl_pbmac1(const char *prf, const char *mac, size_t keylen, const uint8_t *salt,
                           size_t saltlen, unsigned iter, const char *datafile, char *out,
                           size_t cap)
{
    char salthex[2 * RP_MAC_MAX_SALT + 1], cmd[2048], res[600];
    hex(salt, saltlen, salthex);
    char *dir = rpt_tmpdir();
    snprintf(res, sizeof res, "%s/mac", dir);
    snprintf(cmd, sizeof cmd,
             "k=$(openssl kdf -keylen %zu -kdfopt digest:%s -kdfopt pass:%s "
             "-kdfopt hexsalt:%s -kdfopt iter:%u PBKDF2 | tr -d ':\\n') && "
             "openssl mac -digest %s -macopt hexkey:$k -in %s HMAC | tr -d ':\\n' "
             "| tr A-F a-f > %s",
             keylen, prf, secret, salthex, iter, mac, datafile, res);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    cr_assert_eq(rpt_run(argv, OPENSSL_TIMEOUT_MS, NULL), 0, "%s", cmd);
    size_t n;
    char *m = (char *)rpt_read_file(res, &n);
    cr_assert_not_null(m);
    snprintf(out, cap, "%s", m);
    free(m);
    rpt_rmdir(dir);
    free(dir);
}

Test(mac, pbmac1_matches_openssl_pbkdf2_and_hmac)
{
    static const struct {
        enum rp_mac_hash prf, mac;
        const char *prf_name, *mac_name;
        size_t len;
    } cases[] = {
        {RP_MAC_SHA256, RP_MAC_SHA256, "SHA256", "SHA256", 32},
        {RP_MAC_SHA512, RP_MAC_SHA384, "SHA512", "SHA384", 48},
    };
    static const uint8_t salt[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    static const uint8_t data[] = "ProtectedPart bytes";
    struct rp_arena a;
    cr_assert_eq(rp_arena_new(&a, ARENA_CAP), RP_OK);
    char *dir = rpt_tmpdir(), datafile[600];
    snprintf(datafile, sizeof datafile, "%s/data", dir);
    cr_assert_eq(rpt_write_file(datafile, data, sizeof data), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rp_view alg;
        cr_assert_eq(rp_mac_pbmac1_algid(&a, cases[i].prf, cases[i].mac,
                                         rp_view_make(salt, sizeof salt), 1000, &alg),
                     RP_OK);
        uint8_t mac[RP_MAC_MAX];
        size_t n = 0;
        cr_assert_eq(rp_mac_protect(alg, SECRET, data, sizeof data, mac, sizeof mac, &n, MAX_ITER),
                     RP_OK);
        cr_expect_eq(n, cases[i].len);
        char mine[2 * RP_MAC_MAX + 1], theirs[2 * RP_MAC_MAX + 8];
        hex(mac, n, mine);
        openssl_pbmac1(cases[i].prf_name, cases[i].mac_name, cases[i].len, salt, sizeof salt, 1000,
                       datafile, theirs, sizeof theirs);
        cr_expect_str_eq(mine, theirs, "PBMAC1 %s/%s", cases[i].prf_name, cases[i].mac_name);
        cr_expect_eq(rp_mac_verify(alg, SECRET, data, sizeof data, mac, n, MAX_ITER), RP_OK);
        mac[0] ^= 0x80;
        cr_expect_eq(rp_mac_verify(alg, SECRET, data, sizeof data, mac, n, MAX_ITER),
                     RP_E_BAD_MESSAGE_CHECK);
    }
    rpt_rmdir(dir);
    free(dir);
    rp_arena_free(&a);
}

#define B(...) rp_view_make((const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

Test(mac, refuses_bad_parameters_before_any_work)
{
    static const uint8_t data[] = "x";
    uint8_t mac[RP_MAC_MAX] = {0};
    struct rp_arena a;
    struct rp_view alg;
    static const uint8_t salt[16] = {0};
    cr_assert_eq(rp_arena_new(&a, ARENA_CAP), RP_OK);

    /* 2^31-1 iterations: refused against the maximum (hashing them would take minutes) */
    cr_assert_eq(
        rp_mac_pbm_algid(&a, RP_MAC_SHA256, RP_MAC_SHA256, rp_view_make(salt, 16), INT32_MAX, &alg),
        RP_OK);
    cr_expect_eq(rp_mac_verify(alg, SECRET, data, 1, mac, 32, MAX_ITER), RP_E_BAD_ALG);
    cr_assert_eq(rp_mac_pbmac1_algid(&a, RP_MAC_SHA256, RP_MAC_SHA256, rp_view_make(salt, 16),
                                     INT32_MAX, &alg),
                 RP_OK);
    cr_expect_eq(rp_mac_verify(alg, SECRET, data, 1, mac, 32, MAX_ITER), RP_E_BAD_ALG);

    /* builders refuse what the verifier would refuse */
    cr_expect_eq(
        rp_mac_pbm_algid(&a, RP_MAC_SHA256, RP_MAC_SHA256, rp_view_make(salt, 16), 99, &alg),
        RP_E_INVAL);
    cr_expect_eq(
        rp_mac_pbm_algid(&a, RP_MAC_SHA256, RP_MAC_SHA256, rp_view_make(salt, 4), 1000, &alg),
        RP_E_INVAL);
    cr_expect_eq(
        rp_mac_pbmac1_algid(&a, RP_MAC_SHA1, RP_MAC_SHA256, rp_view_make(salt, 16), 1000, &alg),
        RP_E_INVAL);

    /* PBM with 99 iterations: 30 33 06 09 <PBM> 30 26 04 08 <salt> 30 0b 06 09 <sha256>
     * 02 01 63 30 0a 06 08 <hmac-sha1> -- too few */
    cr_expect_eq(rp_mac_verify(B(0x30, 0x33, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf6, 0x7d, 0x07,
                                 0x42, 0x0d, 0x30, 0x26, 0x04, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x30,
                                 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                 0x01, 0x02, 0x01, 0x63, 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01,
                                 0x05, 0x05, 0x08, 0x01, 0x02),
                               SECRET, data, 1, mac, 20, MAX_ITER),
                 RP_E_BAD_ALG);
    /* the same with 100 iterations is a well-formed identifier: only the MAC is wrong */
    cr_expect_eq(rp_mac_verify(B(0x30, 0x33, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf6, 0x7d, 0x07,
                                 0x42, 0x0d, 0x30, 0x26, 0x04, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x30,
                                 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                 0x01, 0x02, 0x01, 0x64, 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01,
                                 0x05, 0x05, 0x08, 0x01, 0x02),
                               SECRET, data, 1, mac, 20, MAX_ITER),
                 RP_E_BAD_MESSAGE_CHECK);
    /* a signature algorithm is not a MAC; nothing at all is not either */
    cr_expect_eq(rp_mac_verify(B(0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70), SECRET, data, 1, mac,
                               20, MAX_ITER),
                 RP_E_BAD_ALG);
    cr_expect_eq(rp_mac_verify(RP_VIEW_NULL, SECRET, data, 1, mac, 20, MAX_ITER), RP_E_BAD_ALG);
    /* PBMAC1 whose PBKDF2 omits the PRF (default HMAC-SHA1): refused */
    cr_expect_eq(
        rp_mac_verify(B(0x30, 0x3f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05,
                        0x0e, 0x30, 0x32, 0x30, 0x22, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                        0x0d, 0x01, 0x05, 0x0c, 0x30, 0x15, 0x04, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                        10, 11, 12, 13, 14, 15, 16, 0x02, 0x01, 0x64, 0x30, 0x0c, 0x06, 0x08, 0x2a,
                        0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09, 0x05, 0x00),
                      SECRET, data, 1, mac, 32, MAX_ITER),
        RP_E_BAD_ALG);
    rp_arena_free(&a);
}

/* PBMAC1 (PBKDF2 with HMAC-SHA256, HMAC-SHA256) with an explicit keyLength. */
static struct rp_view pbmac1_with_keylen(struct rp_arena *a, int64_t key_len)
{
    static const uint8_t salt[16] = {9, 8, 7, 6, 5, 4, 3, 2, 1};
    struct rp_derw w;
    struct rp_view out;
    cr_assert_eq(rp_derw_init(&w, a, 256), RP_OK);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_PBMAC1));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_PBKDF2));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_octets(&w, rp_view_make(salt, sizeof salt));
    rp_derw_int64(&w, RP_DER_INTEGER, 1000);
    rp_derw_int64(&w, RP_DER_INTEGER, key_len);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_HMAC_SHA256));
    rp_derw_null(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_HMAC_SHA256));
    rp_derw_null(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    return out;
}

/* The forgery of the review: keyLength 1 leaves 256 HMAC keys, so a blind guess passed.
 * Any keyLength shorter than the MAC is refused before hashing; 32 (and longer) works. */
Test(mac, pbmac1_key_shorter_than_the_mac_is_bad_alg)
{
    static const uint8_t data[] = "ProtectedPart";
    struct rp_arena a;
    cr_assert_eq(rp_arena_new(&a, ARENA_CAP), RP_OK);
    uint8_t mac[RP_MAC_MAX];
    size_t n = 0;
    static const int64_t refused[] = {1, 16, 31, RP_MAC_MAX + 1, 0, -1};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        struct rp_view alg = pbmac1_with_keylen(&a, refused[i]);
        cr_expect_eq(rp_mac_protect(alg, SECRET, data, sizeof data, mac, sizeof mac, &n, MAX_ITER),
                     RP_E_BAD_ALG, "keyLength %lld", (long long)refused[i]);
        cr_expect_eq(rp_mac_verify(alg, SECRET, data, sizeof data, mac, 32, MAX_ITER), RP_E_BAD_ALG,
                     "keyLength %lld", (long long)refused[i]);
    }
    static const int64_t accepted[] = {32, 48, RP_MAC_MAX};
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        struct rp_view alg = pbmac1_with_keylen(&a, accepted[i]);
        cr_assert_eq(rp_mac_protect(alg, SECRET, data, sizeof data, mac, sizeof mac, &n, MAX_ITER),
                     RP_OK, "keyLength %lld", (long long)accepted[i]);
        cr_expect_eq(rp_mac_verify(alg, SECRET, data, sizeof data, mac, n, MAX_ITER), RP_OK);
    }
    rp_arena_free(&a);
}

Test(mac, guard_counts_a_mac_on_a_loop_thread)
{
    static const uint8_t salt[16] = {7};
    static const uint8_t data[] = "x";
    struct rp_arena a;
    struct rp_view alg;
    uint8_t mac[RP_MAC_MAX];
    size_t n;
    cr_assert_eq(rp_arena_new(&a, ARENA_CAP), RP_OK);
    cr_assert_eq(
        rp_mac_pbm_algid(&a, RP_MAC_SHA256, RP_MAC_SHA256, rp_view_make(salt, 16), 100, &alg),
        RP_OK);
    unsigned long before = rp_guard_violations();
    cr_assert_eq(rp_mac_protect(alg, SECRET, data, 1, mac, sizeof mac, &n, MAX_ITER), RP_OK);
    cr_expect_eq(rp_guard_violations(), before);
    rp_guard_mark_loop_thread();
    cr_expect_eq(rp_mac_verify(alg, SECRET, data, 1, mac, n, MAX_ITER), RP_OK);
    cr_expect_eq(rp_guard_violations(), before + 1);
    rp_arena_free(&a);
}
