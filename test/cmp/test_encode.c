/* CMP encoders against the real corpus (test/corpus, made by openssl cmp), our decoder and
 * an independent decoder (pyasn1_modules.rfc4210 via check_rfc4210.py). */
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "fixtures.h"
#include "support.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CAP     (1024u * 1024u)
#define MAX_CORPUS    64
#define PY_TIMEOUT_MS 30000
#define NOW           1798761599 /* 2026-12-31T23:59:59Z */

static struct rp_arena arena;

static void setup(void)
{
    cr_assert_eq(rp_arena_new(&arena, ARENA_CAP), RP_OK);
}

static void teardown(void)
{
    rp_arena_free(&arena);
}

TestSuite(encode, .init = setup, .fini = teardown);

struct corpus_file {
    char name[256];
    uint8_t *data;
    size_t len;
};

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct corpus_file *)a)->name, ((const struct corpus_file *)b)->name);
}

/* Every *.der of test/corpus, sorted; the caller frees with corpus_free. */
static size_t corpus_load(struct corpus_file *files)
{
    char dir[512], path[768];
    snprintf(dir, sizeof dir, "%s/test/corpus", rpt_src());
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no %s", dir);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".der") != 0)
            continue;
        cr_assert_lt(n, MAX_CORPUS);
        snprintf(files[n].name, sizeof files[n].name, "%s", e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        files[n].data = rpt_read_file(path, &files[n].len);
        cr_assert_not_null(files[n].data, "%s", path);
        n++;
    }
    closedir(d);
    cr_assert_geq(n, 20, "corpus has only %zu files", n);
    qsort(files, n, sizeof files[0], by_name);
    return n;
}

static void corpus_free(struct corpus_file *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(files[i].data);
}

static uint8_t *load(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/test/corpus/%s", rpt_src(), name);
    uint8_t *p = rpt_read_file(path, len);
    cr_assert_not_null(p, "%s", path);
    return p;
}

static void decode(struct rp_view der, struct rp_cmp_msg *m, const char *what)
{
    struct rp_cmp_err where = {0};
    int rc = rp_cmp_decode(der.p, der.len, &arena, m, &where);
    cr_assert_eq(rc, RP_OK, "%s: decode %s at offset %zu (%s)", what, rp_err_name(rc), where.offset,
                 where.expected ? where.expected : "");
}

static struct rp_view protection_of(const struct rp_cmp_msg *m)
{
    if (!m->has_protection)
        return RP_VIEW_NULL;
    cr_assert_eq(m->protection.unused, 0);
    /* a zero-length signature is still present: keep p non-NULL */
    return rp_view_make(m->protection.bytes.p ? m->protection.bytes.p : (const uint8_t *)"",
                        m->protection.bytes.len);
}

Test(encode, message_from_decoded_parts_reproduces_every_corpus_file)
{
    struct corpus_file files[MAX_CORPUS];
    size_t n = corpus_load(files);
    for (size_t i = 0; i < n; i++) {
        struct rp_cmp_msg m;
        struct rp_view in = rp_view_make(files[i].data, files[i].len), out;
        decode(in, &m, files[i].name);
        cr_assert_eq(rp_cmp_enc_message(&arena, m.header_raw, m.body_raw, protection_of(&m),
                                        m.extra_certs, m.n_extra_certs, &out),
                     RP_OK, "%s", files[i].name);
        cr_assert(rp_view_eq(in, out), "%s: re-encoding differs (%zu vs %zu bytes)", files[i].name,
                  out.len, in.len);
        rp_arena_reset(&arena);
    }
    corpus_free(files, n);
}

Test(encode, protected_part_matches_the_decoders)
{
    struct corpus_file files[MAX_CORPUS];
    size_t n = corpus_load(files);
    for (size_t i = 0; i < n; i++) {
        struct rp_cmp_msg m;
        struct rp_view mine, theirs;
        decode(rp_view_make(files[i].data, files[i].len), &m, files[i].name);
        cr_assert_eq(rp_cmp_enc_protected_part(&arena, m.header_raw, m.body_raw, &mine), RP_OK);
        cr_assert_eq(rp_cmp_protected_part(&m, &arena, &theirs), RP_OK);
        cr_assert(rp_view_eq(mine, theirs), "%s", files[i].name);
        rp_arena_reset(&arena);
    }
    corpus_free(files, n);
}

/* Name "O=Operator, CN=raproxy RA" built with the writer. */
static struct rp_view ra_name(void)
{
    struct rp_derw w;
    struct rp_view out;
    rp_derw_init(&w, &arena, 128);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SET);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_AT_O));
    rp_derw_utf8(&w, rp_view_str("Operator"));
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_SET);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_AT_CN));
    rp_derw_utf8(&w, rp_view_str("raproxy RA"));
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    return out;
}

static struct rp_view ecdsa_sha256_alg(void)
{
    struct rp_derw w;
    struct rp_view out;
    rp_derw_init(&w, &arena, 32);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_ECDSA_SHA256));
    rp_derw_end(&w);
    cr_assert_eq(rp_derw_finish(&w, &out), RP_OK);
    return out;
}

#define assert_same(a, b, what, file)                                                              \
    cr_assert(rp_view_present(a) == rp_view_present(b) && rp_view_eq(a, b), "%s: %s differs",      \
              file, what)

Test(encode, reprotected_header_keeps_the_listed_fields_byte_exact)
{
    static const uint8_t kid[] = {0xB4, 0xA0, 0xDD, 0x49, 0xAB, 0x2F, 0xC9, 0xA0, 0xE9, 0x0A};
    struct corpus_file files[MAX_CORPUS];
    size_t n = corpus_load(files);
    for (size_t i = 0; i < n; i++) {
        struct rp_cmp_msg in, out;
        struct rp_view name = ra_name(), alg = ecdsa_sha256_alg(), hdr, msg;
        decode(rp_view_make(files[i].data, files[i].len), &in, files[i].name);
        cr_assert_eq(rp_cmp_enc_reprotect_header(&arena, &in, name, rp_view_make(kid, sizeof kid),
                                                 alg, &hdr),
                     RP_OK);
        cr_assert_eq(rp_cmp_enc_message(&arena, hdr, in.body_raw, protection_of(&in),
                                        in.extra_certs, in.n_extra_certs, &msg),
                     RP_OK);
        decode(msg, &out, files[i].name);
        const struct rp_cmp_header *a = &in.header, *b = &out.header;
        const char *f = files[i].name;
        assert_same(a->pvno_raw, b->pvno_raw, "pvno", f);
        assert_same(a->recipient.raw, b->recipient.raw, "recipient", f);
        assert_same(a->message_time_raw, b->message_time_raw, "messageTime", f);
        assert_same(a->transaction_id.raw, b->transaction_id.raw, "transactionID", f);
        assert_same(a->sender_nonce.raw, b->sender_nonce.raw, "senderNonce", f);
        assert_same(a->recip_nonce.raw, b->recip_nonce.raw, "recipNonce", f);
        assert_same(a->free_text_raw, b->free_text_raw, "freeText", f);
        assert_same(a->general_info_raw, b->general_info_raw, "generalInfo", f);
        assert_same(in.body_raw, out.body_raw, "body", f);
        cr_assert_eq(b->sender.choice, RP_GNAME_DIRECTORY_NAME);
        cr_assert(rp_view_eq(b->sender.name, name), "%s: sender", f);
        cr_assert(rp_view_eq(b->sender_kid.val, rp_view_make(kid, sizeof kid)), "%s: kid", f);
        cr_assert(rp_view_eq(b->protection_alg.raw, alg), "%s: protectionAlg", f);
        cr_assert(!rp_view_present(b->recip_kid.raw), "%s: recipKID kept", f);
        rp_arena_reset(&arena);
    }
    corpus_free(files, n);
}

Test(encode, reprotected_header_omits_absent_kid_and_alg)
{
    size_t len;
    uint8_t *der = load("ir-implicit.der", &len);
    struct rp_cmp_msg in, out;
    struct rp_view hdr, msg;
    decode(rp_view_make(der, len), &in, "ir-implicit.der");
    cr_assert(in.header.implicit_confirm);
    cr_assert_eq(
        rp_cmp_enc_reprotect_header(&arena, &in, ra_name(), RP_VIEW_NULL, RP_VIEW_NULL, &hdr),
        RP_OK);
    cr_assert_eq(rp_cmp_enc_message(&arena, hdr, in.body_raw, RP_VIEW_NULL, NULL, 0, &msg), RP_OK);
    decode(msg, &out, "reprotected");
    cr_assert(!rp_view_present(out.header.sender_kid.raw));
    cr_assert(!rp_view_present(out.header.protection_alg_raw));
    cr_assert(!out.has_protection);
    cr_assert_eq(out.n_extra_certs, 0);
    cr_assert(out.header.implicit_confirm, "generalInfo lost");
    free(der);
}

/* Write `der` to a temp file and run check_rfc4210.py on it; its exit status. Its complaint
 * is logged when `expect_ok`. */
static int pyasn1_run(struct rp_view der, const char *body, int expect_ok)
{
    char *dir = rpt_tmpdir();
    char file[512], log[512], script[512];
    snprintf(file, sizeof file, "%s/msg.der", dir);
    snprintf(log, sizeof log, "%s/check.log", dir);
    snprintf(script, sizeof script, "%s/test/cmp/check_rfc4210.py", rpt_src());
    cr_assert_eq(rpt_write_file(file, der.p, der.len), 0);
    const char *argv[] = {"/usr/bin/python3", script, file, body, NULL};
    int rc = rpt_run(argv, PY_TIMEOUT_MS, log);
    if (rc != 0 && expect_ok) {
        size_t n;
        char *text = (char *)rpt_read_file(log, &n);
        cr_log_error("check_rfc4210.py: %s", text ? text : "(no log)");
        free(text);
    }
    rpt_rmdir(dir);
    free(dir);
    return rc;
}

static int pyasn1_check(struct rp_view der, const char *body)
{
    return pyasn1_run(der, body, 1);
}

static const uint8_t nonce[RP_CMP_NONCE_LEN] = {1, 2,  3,  4,  5,  6,  7,  8,
                                                9, 10, 11, 12, 13, 14, 15, 16};

/* An RA answer to `req` (may be NULL) with `body`, unprotected. */
static struct rp_view answer(const struct rp_cmp_msg *req, struct rp_view body)
{
    struct rp_view hdr, msg;
    cr_assert_eq(rp_cmp_enc_response_header(&arena, req, ra_name(), RP_VIEW_NULL,
                                            ecdsa_sha256_alg(), rp_view_make(nonce, sizeof nonce),
                                            NOW, &hdr),
                 RP_OK);
    cr_assert_eq(rp_cmp_enc_message(&arena, hdr, body, RP_VIEW_NULL, NULL, 0, &msg), RP_OK);
    return msg;
}

Test(encode, error_answer_decodes_here_and_in_pyasn1)
{
    size_t len;
    uint8_t *der = load("ir.der", &len);
    struct rp_cmp_msg req, out;
    struct rp_view body;
    decode(rp_view_make(der, len), &req, "ir.der");
    cr_assert_eq(rp_cmp_enc_body_error(&arena, RP_FI_NOT_AUTHORIZED, RP_CMP_STATUS_REJECTION,
                                       rp_view_str("SN0999 is not on the allowlist"), &body),
                 RP_OK);
    struct rp_view msg = answer(&req, body);
    decode(msg, &out, "error");
    cr_assert_eq(out.body.type, RP_CMP_ERROR);
    cr_assert_eq(out.body.error.status.status, RP_CMP_STATUS_REJECTION);
    cr_assert(out.body.error.status.has_fail_info);
    cr_assert_eq(out.body.error.status.fail_info, 1u << RP_FI_NOT_AUTHORIZED);
    cr_assert(rp_view_present(out.body.error.status.status_string));
    /* the header answers the request */
    const struct rp_cmp_header *h = &out.header;
    cr_assert_eq(h->pvno, req.header.pvno);
    cr_assert(rp_view_eq(h->recipient.raw, req.header.sender.raw));
    cr_assert(rp_view_eq(h->transaction_id.raw, req.header.transaction_id.raw));
    cr_assert(rp_view_eq(h->recip_nonce.val, req.header.sender_nonce.val));
    cr_assert(rp_view_eq(h->sender_nonce.val, rp_view_make(nonce, sizeof nonce)));
    cr_assert(h->has_message_time);
    cr_assert_eq(h->message_time, NOW);
    cr_assert(rp_view_eq(h->sender.name, ra_name()));
    cr_assert_eq(pyasn1_check(msg, "error"), 0);
    free(der);
}

Test(encode, error_answer_without_a_request_has_a_null_dn_recipient)
{
    struct rp_cmp_msg out;
    struct rp_view body;
    cr_assert_eq(rp_cmp_enc_body_error(&arena, RP_FI_BAD_DATA_FORMAT, RP_CMP_STATUS_REJECTION,
                                       RP_VIEW_NULL, &body),
                 RP_OK);
    struct rp_view msg = answer(NULL, body);
    decode(msg, &out, "error");
    cr_assert_eq(out.header.pvno, RP_CMP_PVNO_CMP2000);
    cr_assert_eq(out.header.recipient.choice, RP_GNAME_DIRECTORY_NAME);
    static const uint8_t empty_name[] = {0x30, 0x00};
    cr_assert(rp_view_eq(out.header.recipient.name, rp_view_make(empty_name, 2)));
    cr_assert(!rp_view_present(out.header.transaction_id.raw));
    cr_assert(!rp_view_present(out.header.recip_nonce.raw));
    cr_assert(!rp_view_present(out.body.error.status.status_string));
    cr_assert_eq(out.body.error.status.fail_info, 1u << RP_FI_BAD_DATA_FORMAT);
    cr_assert_eq(pyasn1_check(msg, "error"), 0);
}

Test(encode, every_failinfo_bit_round_trips_and_none_omits_it)
{
    for (int bit = RP_FI_NONE; bit <= RP_FI_DUPLICATE_CERT_REQ; bit++) {
        struct rp_cmp_msg out;
        struct rp_view body;
        cr_assert_eq(rp_cmp_enc_body_error(&arena, (enum rp_failinfo)bit, RP_CMP_STATUS_REJECTION,
                                           rp_view_str("x"), &body),
                     RP_OK);
        decode(answer(NULL, body), &out, "error");
        if (bit == RP_FI_NONE) {
            cr_assert(!out.body.error.status.has_fail_info);
        } else {
            cr_assert(out.body.error.status.has_fail_info, "bit %d", bit);
            cr_assert_eq(out.body.error.status.fail_info, 1u << bit, "bit %d", bit);
        }
        rp_arena_reset(&arena);
    }
}

Test(encode, error_body_rejects_an_unknown_bit)
{
    struct rp_view body;
    cr_assert_eq(rp_cmp_enc_body_error(&arena, (enum rp_failinfo)27, 2, RP_VIEW_NULL, &body),
                 RP_E_INVAL);
}

Test(encode, pkiconf_answer_decodes_here_and_in_pyasn1)
{
    size_t len;
    uint8_t *der = load("certConf.der", &len);
    struct rp_cmp_msg req, out;
    struct rp_view body;
    decode(rp_view_make(der, len), &req, "certConf.der");
    cr_assert_eq(rp_cmp_enc_body_pkiconf(&arena, &body), RP_OK);
    static const uint8_t want[] = {0xB3, 0x02, 0x05, 0x00};
    cr_assert(rp_view_eq(body, rp_view_make(want, sizeof want)));
    struct rp_view msg = answer(&req, body);
    decode(msg, &out, "pkiconf");
    cr_assert_eq(out.body.type, RP_CMP_PKICONF);
    cr_assert_eq(pyasn1_check(msg, "pkiconf"), 0);
    free(der);
}

Test(encode, genp_answer_carries_the_itavs_verbatim)
{
    size_t len;
    uint8_t *der = load("genm.der", &len);
    struct rp_cmp_msg req, out;
    struct rp_view body;
    decode(rp_view_make(der, len), &req, "genm.der");
    cr_assert_geq(req.body.gen.n, 1);
    struct rp_view *itavs = rp_arena_calloc(&arena, req.body.gen.n, sizeof *itavs);
    for (size_t i = 0; i < req.body.gen.n; i++)
        itavs[i] = req.body.gen.items[i].raw;
    cr_assert_eq(rp_cmp_enc_body_genp(&arena, itavs, req.body.gen.n, &body), RP_OK);
    struct rp_view msg = answer(&req, body);
    decode(msg, &out, "genp");
    cr_assert_eq(out.body.type, RP_CMP_GENP);
    cr_assert_eq(out.body.gen.n, req.body.gen.n);
    for (size_t i = 0; i < out.body.gen.n; i++)
        cr_assert(rp_view_eq(out.body.gen.items[i].raw, itavs[i]));
    cr_assert_eq(pyasn1_check(msg, "gen"), 0);
    /* an empty genp is valid too */
    cr_assert_eq(rp_cmp_enc_body_genp(&arena, NULL, 0, &body), RP_OK);
    msg = answer(&req, body);
    decode(msg, &out, "empty genp");
    cr_assert_eq(out.body.gen.n, 0);
    cr_assert_eq(pyasn1_check(msg, "gen"), 0);
    free(der);
}

Test(encode, nested_message_wraps_real_requests)
{
    size_t l1, l2;
    uint8_t *ir = load("ir.der", &l1), *cr = load("cr.der", &l2);
    struct rp_view msgs[] = {rp_view_make(ir, l1), rp_view_make(cr, l2)}, body;
    struct rp_cmp_msg req, out;
    decode(msgs[0], &req, "ir.der");
    cr_assert_eq(rp_cmp_enc_body_nested(&arena, msgs, 2, &body), RP_OK);
    struct rp_view msg = answer(&req, body);
    decode(msg, &out, "nested");
    cr_assert_eq(out.body.type, RP_CMP_NESTED);
    cr_assert_eq(out.body.nested.n, 2);
    cr_assert(rp_view_eq(out.body.nested.msgs[0].raw, msgs[0]));
    cr_assert(rp_view_eq(out.body.nested.msgs[1].raw, msgs[1]));
    cr_assert_eq(out.body.nested.msgs[1].body.type, RP_CMP_CR);
    cr_assert_eq(pyasn1_check(msg, "nested"), 0);
    cr_assert_eq(rp_cmp_enc_body_nested(&arena, msgs, 0, &body), RP_E_INVAL);
    free(ir);
    free(cr);
}

Test(encode, raverified_replaces_every_pop_and_keeps_cert_requests)
{
    static const char *const names[] = {"ir.der", "cr.der", "kur.der", "ir-rsa.der", "ir-mac.der"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t len;
        uint8_t *der = load(names[i], &len);
        struct rp_cmp_msg in, out;
        struct rp_view body, msg;
        decode(rp_view_make(der, len), &in, names[i]);
        cr_assert_eq(rp_cmp_enc_body_pop_raverified(&arena, &in, &body), RP_OK, "%s", names[i]);
        cr_assert_eq(rp_cmp_enc_message(&arena, in.header_raw, body, RP_VIEW_NULL, NULL, 0, &msg),
                     RP_OK);
        decode(msg, &out, names[i]);
        cr_assert_eq(out.body.type, in.body.type);
        cr_assert_eq(out.body.reqs.n, in.body.reqs.n);
        for (size_t k = 0; k < out.body.reqs.n; k++) {
            cr_assert_eq(out.body.reqs.reqs[k].pop.type, RP_CRMF_POP_RA_VERIFIED);
            cr_assert(
                rp_view_eq(out.body.reqs.reqs[k].cert_req_raw, in.body.reqs.reqs[k].cert_req_raw));
            cr_assert(
                rp_view_eq(out.body.reqs.reqs[k].reg_info_raw, in.body.reqs.reqs[k].reg_info_raw));
        }
        cr_assert_eq(pyasn1_check(msg, NULL), 0, "%s", names[i]);
        free(der);
        rp_arena_reset(&arena);
    }
}

Test(encode, raverified_refuses_bodies_without_crmf_requests)
{
    size_t len;
    uint8_t *der = load("p10cr.der", &len);
    struct rp_cmp_msg in;
    struct rp_view body;
    decode(rp_view_make(der, len), &in, "p10cr.der");
    cr_assert_eq(rp_cmp_enc_body_pop_raverified(&arena, &in, &body), RP_E_INVAL);
    free(der);
}

Test(encode, response_header_needs_a_full_length_nonce)
{
    struct rp_view hdr;
    cr_assert_eq(rp_cmp_enc_response_header(&arena, NULL, ra_name(), RP_VIEW_NULL, RP_VIEW_NULL,
                                            rp_view_make(nonce, RP_CMP_NONCE_LEN - 1), NOW, &hdr),
                 RP_E_INVAL);
}

/* Delayed delivery (RFC 9483 §4.4): ip/cp/kup with status waiting, one CertResponse per
 * request, as the device's certReqIds. */
Test(encode, waiting_certrep_decodes_here_and_in_pyasn1)
{
    static const struct {
        enum rp_cmp_body_type type;
        const char *name;
        int64_t ids[2];
        size_t n;
    } cases[] = {
        {RP_CMP_IP, "ip", {0, 1}, 2}, {RP_CMP_CP, "cp", {-1}, 1}, {RP_CMP_KUP, "kup", {0}, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rp_view body;
        struct rp_cmp_msg out;
        cr_assert_eq(rp_cmp_enc_body_certrep_waiting(&arena, cases[i].type, cases[i].ids,
                                                     cases[i].n, rp_view_str("queued for the CA"),
                                                     &body),
                     RP_OK);
        struct rp_view msg = answer(NULL, body);
        decode(msg, &out, cases[i].name);
        cr_assert_eq(out.body.type, cases[i].type);
        cr_assert_eq(out.body.rep.n, cases[i].n);
        cr_assert(!rp_view_present(out.body.rep.ca_pubs_raw));
        for (size_t j = 0; j < cases[i].n; j++) {
            const struct rp_cmp_certresp *r = &out.body.rep.resps[j];
            cr_assert_eq(r->cert_req_id, cases[i].ids[j]);
            cr_assert_eq(r->status.status, RP_CMP_STATUS_WAITING);
            cr_assert(!r->status.has_fail_info);
            cr_assert(rp_view_present(r->status.status_string));
            cr_assert(!rp_view_present(r->certified_key_pair_raw));
        }
        cr_assert_eq(pyasn1_check(msg, cases[i].name), 0);
    }
    struct rp_view body;
    int64_t id = 0;
    cr_assert_eq(rp_cmp_enc_body_certrep_waiting(&arena, RP_CMP_ERROR, &id, 1, RP_VIEW_NULL, &body),
                 RP_E_INVAL);
    cr_assert_eq(rp_cmp_enc_body_certrep_waiting(&arena, RP_CMP_IP, &id, 0, RP_VIEW_NULL, &body),
                 RP_E_INVAL);
}

Test(encode, pollrep_and_error_with_waiting_decode_here_and_in_pyasn1)
{
    int64_t ids[] = {0, 3};
    struct rp_view body;
    struct rp_cmp_msg out;
    cr_assert_eq(rp_cmp_enc_body_pollrep(&arena, ids, 2, 7, rp_view_str("queued"), &body), RP_OK);
    struct rp_view msg = answer(NULL, body);
    decode(msg, &out, "pollRep");
    cr_assert_eq(out.body.type, RP_CMP_POLLREP);
    cr_assert_eq(out.body.pollrep.n, 2);
    cr_assert_eq(out.body.pollrep.items[1].cert_req_id, 3);
    cr_assert_eq(out.body.pollrep.items[1].check_after, 7);
    cr_assert(rp_view_present(out.body.pollrep.items[0].reason));
    cr_assert_eq(pyasn1_check(msg, "pollRep"), 0);
    cr_assert_eq(rp_cmp_enc_body_pollrep(&arena, ids, 1, -1, RP_VIEW_NULL, &body), RP_E_INVAL);
    /* the RFC 9483 §4.4 error that starts polling: status waiting, no failInfo */
    cr_assert_eq(rp_cmp_enc_body_error(&arena, RP_FI_NONE, RP_CMP_STATUS_WAITING,
                                       rp_view_str("queued"), &body),
                 RP_OK);
    msg = answer(NULL, body);
    decode(msg, &out, "error");
    cr_assert_eq(out.body.error.status.status, RP_CMP_STATUS_WAITING);
    cr_assert(!out.body.error.status.has_fail_info);
    cr_assert_eq(pyasn1_check(msg, "error"), 0);
}

/* The header of a queued request sent later, and of the CA's answer relayed on a poll:
 * what the message says is kept byte-exact, the time is now and the recipNonce the one
 * the caller names. */
Test(encode, rewrapped_header_has_a_fresh_time_and_the_given_recip_nonce)
{
    static const uint8_t kid[] = {0xB4, 0xA0, 0xDD, 0x49};
    static const uint8_t poll_nonce[RP_CMP_NONCE_LEN] = {9, 9, 9, 9, 9, 9, 9, 9,
                                                         9, 9, 9, 9, 9, 9, 9, 9};
    const char *names[] = {"ip.der", "ip-implicit.der", "ir.der"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t len;
        uint8_t *der = load(names[i], &len);
        struct rp_cmp_msg in, out;
        struct rp_view hdr, msg, name = ra_name(), alg = ecdsa_sha256_alg();
        decode(rp_view_make(der, len), &in, names[i]);
        bool keep = strcmp(names[i], "ir.der") == 0; /* a request keeps its recipNonce */
        struct rp_view rn = keep ? RP_VIEW_NULL : rp_view_make(poll_nonce, sizeof poll_nonce);
        /* an answer goes to the device (the poll's sender), a request keeps its recipient */
        static const uint8_t device[] = {0xa4, 0x02, 0x30, 0x00};
        struct rp_view to = keep ? RP_VIEW_NULL : rp_view_make(device, sizeof device);
        cr_assert_eq(rp_cmp_enc_rewrap_header(&arena, &in, name, rp_view_make(kid, sizeof kid), alg,
                                              NOW, to, rn, &hdr),
                     RP_OK);
        cr_assert_eq(rp_cmp_enc_message(&arena, hdr, in.body_raw, protection_of(&in),
                                        in.extra_certs, in.n_extra_certs, &msg),
                     RP_OK);
        decode(msg, &out, names[i]);
        const struct rp_cmp_header *a = &in.header, *b = &out.header;
        assert_same(a->pvno_raw, b->pvno_raw, "pvno", names[i]);
        if (keep)
            assert_same(a->recipient.raw, b->recipient.raw, "recipient", names[i]);
        else
            cr_assert(rp_view_eq(b->recipient.raw, to), "%s: recipient", names[i]);
        assert_same(a->transaction_id.raw, b->transaction_id.raw, "transactionID", names[i]);
        assert_same(a->sender_nonce.raw, b->sender_nonce.raw, "senderNonce", names[i]);
        assert_same(a->free_text_raw, b->free_text_raw, "freeText", names[i]);
        assert_same(a->general_info_raw, b->general_info_raw, "generalInfo", names[i]);
        assert_same(in.body_raw, out.body_raw, "body", names[i]);
        cr_assert_eq(b->implicit_confirm, a->implicit_confirm, "%s", names[i]);
        cr_assert(b->has_message_time);
        cr_assert_eq(b->message_time, NOW, "%s: messageTime is the sending time", names[i]);
        cr_assert(rp_view_eq(b->sender.name, name));
        cr_assert(rp_view_eq(b->sender_kid.val, rp_view_make(kid, sizeof kid)));
        if (keep)
            assert_same(a->recip_nonce.raw, b->recip_nonce.raw, "recipNonce", names[i]);
        else
            cr_assert(rp_view_eq(b->recip_nonce.val, rn), "%s: recipNonce", names[i]);
        cr_assert_eq(pyasn1_check(msg, keep ? "ir" : "ip"), 0);
        free(der);
        rp_arena_reset(&arena);
    }
}

/* The header fields after the recipient (messageTime … recipNonce) of `hdr`, as a view into
 * the message built around it. */
static struct rp_view header_tail(struct rp_view hdr, const struct rp_cmp_msg *for_body,
                                  struct rp_cmp_msg *out, const char *what)
{
    struct rp_view msg;
    cr_assert_eq(rp_cmp_enc_message(&arena, hdr, for_body->body_raw, RP_VIEW_NULL, NULL, 0, &msg),
                 RP_OK);
    decode(msg, out, what);
    const struct rp_cmp_header *h = &out->header;
    const uint8_t *from = h->recipient.raw.p + h->recipient.raw.len;
    cr_assert(rp_view_present(h->recip_nonce.raw), "%s: no recipNonce", what);
    const uint8_t *to = h->recip_nonce.raw.p + h->recip_nonce.raw.len;
    return rp_view_make(from, (size_t)(to - from));
}

/* The RA's own answer header and the header it signs for a relayed message write the same
 * fields after the recipient from the same inputs: messageTime now, protectionAlg,
 * senderKID, the transactionID, the senderNonce, the recipNonce. And a re-protected header
 * is the rewrapped one at the message's own time, without a new recipient or recipNonce. */
Test(encode, the_three_header_encoders_write_the_same_fields_alike)
{
    static const uint8_t kid[] = {0xB4, 0xA0, 0xDD, 0x49, 0xAB, 0x2F, 0xC9, 0xA0, 0xE9, 0x0A};
    struct corpus_file files[MAX_CORPUS];
    size_t n = corpus_load(files), tails = 0, whole = 0;
    for (size_t i = 0; i < n; i++) {
        struct rp_cmp_msg x, r_out, w_out;
        struct rp_view name = ra_name(), alg = ecdsa_sha256_alg(),
                       k = rp_view_make(kid, sizeof kid);
        struct rp_view r, w, p, w2;
        const char *f = files[i].name;
        decode(rp_view_make(files[i].data, files[i].len), &x, f);
        const struct rp_cmp_header *h = &x.header;
        if (h->sender_nonce.val.len < RP_CMP_NONCE_LEN || !rp_view_present(h->sender.raw))
            continue;
        /* an answer to x whose fresh nonce is x's own nonce, and x rewrapped towards x's
         * sender with x's nonce as recipNonce: the same inputs */
        cr_assert_eq(
            rp_cmp_enc_response_header(&arena, &x, name, k, alg, h->sender_nonce.val, NOW, &r),
            RP_OK);
        cr_assert_eq(rp_cmp_enc_rewrap_header(&arena, &x, name, k, alg, NOW, h->sender.raw,
                                              h->sender_nonce.val, &w),
                     RP_OK);
        struct rp_view rt = header_tail(r, &x, &r_out, f), wt = header_tail(w, &x, &w_out, f);
        cr_assert(rp_view_eq(rt, wt), "%s: the tails differ", f);
        tails++;
        if (!rp_view_present(h->free_text_raw) && !rp_view_present(h->general_info_raw) &&
            (h->pvno == RP_CMP_PVNO_CMP2000 || h->pvno == RP_CMP_PVNO_CMP2021)) {
            cr_assert(rp_view_eq(r, w), "%s: whole headers differ", f);
            whole++;
        }
        if (h->has_message_time) {
            cr_assert_eq(rp_cmp_enc_reprotect_header(&arena, &x, name, k, alg, &p), RP_OK);
            cr_assert_eq(rp_cmp_enc_rewrap_header(&arena, &x, name, k, alg, h->message_time,
                                                  RP_VIEW_NULL, RP_VIEW_NULL, &w2),
                         RP_OK);
            cr_assert(rp_view_eq(p, w2), "%s: re-protected and rewrapped headers differ", f);
        }
        rp_arena_reset(&arena);
    }
    cr_assert_geq(tails, 10, "most of the corpus compared");
    cr_assert_geq(whole, 1);
    corpus_free(files, n);
}

Test(encode, encoders_report_a_full_arena)
{
    uint8_t small_mem[64];
    struct rp_arena small;
    struct rp_view out;
    size_t len;
    uint8_t *der = load("ir.der", &len);
    rp_arena_init(&small, small_mem, sizeof small_mem);
    cr_assert_eq(rp_cmp_enc_message(&small, rp_view_make(der, 4), rp_view_make(der + 4, len - 4),
                                    RP_VIEW_NULL, NULL, 0, &out),
                 RP_E_ARENA);
    free(der);
}

Test(encode, pyasn1_checker_rejects_garbage_and_trailing_bytes)
{
    size_t len;
    uint8_t *der = load("error.der", &len);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, der, len);
    longer[len] = 0;
    cr_assert_eq(pyasn1_check(rp_view_make(der, len), "error"), 0);
    cr_assert_neq(pyasn1_run(rp_view_make(longer, len + 1), NULL, 0), 0);
    cr_assert_neq(pyasn1_run(rp_view_make(der, len - 1), NULL, 0), 0);
    cr_assert_neq(pyasn1_run(rp_view_make(der, len), "pkiconf", 0), 0);
    free(longer);
    free(der);
}

/* ---- end to end: a re-protected ir accepted by a real CA (openssl cmp -port) ---- */

#define CA_TIMEOUT_MS   60000
#define STOP_TIMEOUT_MS 5000

static void run_ok(const char *const *argv, const char *dir, const char *what)
{
    char log[600];
    snprintf(log, sizeof log, "%s/%s.log", dir, what);
    cr_assert_eq(rpt_run(argv, CA_TIMEOUT_MS, log), 0, "%s failed (log %s)", what, log);
}

/* PEM certificate file -> DER bytes (malloc'ed), via openssl x509. */
static uint8_t *cert_der(const char *pem, const char *dir, const char *name, size_t *len)
{
    char der[600];
    snprintf(der, sizeof der, "%s/%s.der", dir, name);
    const char *argv[] = {"openssl", "x509", "-in", pem, "-outform", "DER", "-out", der, NULL};
    run_ok(argv, dir, name);
    uint8_t *p = rpt_read_file(der, len);
    cr_assert_not_null(p);
    return p;
}

/* The corpus ir re-protected by the RA of the test PKI: header rewritten by us, ProtectedPart
 * signed with operator/ra.key by `openssl dgst` (ECDSA-SHA256, DER signature), extraCerts =
 * RA cert + operator ica. */
static struct rp_view ra_protected_ir(const char *pki, const char *dir)
{
    char ra_pem[600], ica_pem[600], ra_key[600], pp_path[600], sig_path[600];
    snprintf(ra_pem, sizeof ra_pem, "%s/operator/ra.pem", pki);
    snprintf(ica_pem, sizeof ica_pem, "%s/operator/ica.pem", pki);
    snprintf(ra_key, sizeof ra_key, "%s/operator/ra.key", pki);
    snprintf(pp_path, sizeof pp_path, "%s/protected-part.der", dir);
    snprintf(sig_path, sizeof sig_path, "%s/protection.sig", dir);
    size_t ra_len, ica_len, ir_len, sig_len;
    uint8_t *ra = cert_der(ra_pem, dir, "ra", &ra_len);
    uint8_t *ica = cert_der(ica_pem, dir, "ica", &ica_len);
    uint8_t *ir = load("ir.der", &ir_len);
    struct rp_cert cert;
    cr_assert_eq(rp_cert_parse(ra, ra_len, &cert), RP_OK);
    struct rp_cmp_msg in;
    struct rp_view hdr, pp, msg;
    decode(rp_view_make(ir, ir_len), &in, "ir.der");
    cr_assert_eq(
        rp_cmp_enc_reprotect_header(&arena, &in, cert.subject, cert.ski, ecdsa_sha256_alg(), &hdr),
        RP_OK);
    cr_assert_eq(rp_cmp_enc_protected_part(&arena, hdr, in.body_raw, &pp), RP_OK);
    cr_assert_eq(rpt_write_file(pp_path, pp.p, pp.len), 0);
    const char *sign[] = {"openssl", "dgst",   "-sha256", "-sign", ra_key,
                          "-out",    sig_path, pp_path,   NULL};
    run_ok(sign, dir, "sign");
    uint8_t *sig = rpt_read_file(sig_path, &sig_len);
    cr_assert_not_null(sig);
    struct rp_view certs[] = {rp_view_make(ra, ra_len), rp_view_make(ica, ica_len)};
    cr_assert_eq(
        rp_cmp_enc_message(&arena, hdr, in.body_raw, rp_view_make(sig, sig_len), certs, 2, &msg),
        RP_OK);
    /* the arena copy outlives the inputs */
    free(ra);
    free(ica);
    free(ir);
    free(sig);
    return msg;
}

/* POST `msg` to the mock CA and decode its answer. */
static void post(int port, struct rp_view msg, const char *dir, const char *name,
                 struct rp_cmp_msg *answer)
{
    char req[600], rsp[600], url[128];
    snprintf(req, sizeof req, "%s/%s-req.der", dir, name);
    snprintf(rsp, sizeof rsp, "%s/%s-rsp.der", dir, name);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/pkix/", port);
    char data[620];
    snprintf(data, sizeof data, "@%s", req);
    cr_assert_eq(rpt_write_file(req, msg.p, msg.len), 0);
    const char *argv[] = {"curl",
                          "-sS",
                          "--max-time",
                          "30",
                          "--data-binary",
                          data,
                          "-H",
                          "Content-Type: application/pkixcmp",
                          "-o",
                          rsp,
                          url,
                          NULL};
    run_ok(argv, dir, name);
    size_t len;
    uint8_t *p = rpt_read_file(rsp, &len);
    cr_assert_not_null(p);
    uint8_t *copy = rp_arena_dup(&arena, p, len);
    free(p);
    decode(rp_view_make(copy, len), answer, name);
}

Test(encode, ra_reprotected_ir_is_accepted_by_an_openssl_mock_ca, .timeout = 120)
{
    const char *pki = rpt_pki();
    cr_assert_not_null(pki, "test PKI");
    char *dir = rpt_tmpdir(), trusted[600];
    snprintf(trusted, sizeof trusted, "%s/operator/root.pem", pki);
    struct rp_view msg = ra_protected_ir(pki, dir);

    /* the same message with one signature byte changed: the CA must refuse it */
    uint8_t *forged = rp_arena_dup(&arena, msg.p, msg.len);
    struct rp_cmp_msg parsed;
    decode(msg, &parsed, "re-protected ir");
    forged[parsed.protection.bytes.p - msg.p + parsed.protection.bytes.len / 2] ^= 0x01;

    struct rpt_proc ca;
    int port = rpt_free_port();
    cr_assert_eq(rpt_mockca_start(&ca, dir, port, trusted, NULL), 0, "mock CA (log %s)", ca.log);
    struct rp_cmp_msg good, bad;
    post(port, msg, dir, "good", &good);
    post(port, rp_view_make(forged, msg.len), dir, "forged", &bad);
    rpt_stop(&ca, 15, STOP_TIMEOUT_MS);

    cr_assert_eq(good.body.type, RP_CMP_IP, "answer is %s (mock CA log %s)",
                 rp_cmp_body_name(good.body.type), ca.log);
    cr_assert_eq(good.body.rep.n, 1);
    cr_assert_eq(good.body.rep.resps[0].status.status, RP_CMP_STATUS_ACCEPTED);
    cr_assert(rp_view_eq(good.header.transaction_id.val, parsed.header.transaction_id.val));
    cr_assert(rp_view_eq(good.header.recip_nonce.val, parsed.header.sender_nonce.val));
    cr_assert_eq(bad.body.type, RP_CMP_ERROR, "forged protection answered with %s",
                 rp_cmp_body_name(bad.body.type));
    rpt_rmdir(dir);
    free(dir);
}
