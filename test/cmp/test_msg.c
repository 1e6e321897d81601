/* PKIMessage decoding on real messages made by `openssl cmp` (see samples.h), and on
 * messages rebuilt from them to break one rule at a time. */
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/err.h"

#include "samples.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#define ARENA_SIZE (64 * 1024)

static uint8_t arena_mem[ARENA_SIZE];
static struct rp_arena arena;
static uint8_t *data;
static size_t data_len;
static struct rp_cmp_msg msg;
static struct rp_cmp_err err;

static void setup(void)
{
    rp_arena_init(&arena, arena_mem, sizeof arena_mem);
    cr_assert_not_null(samples_dir(),
                       "openssl cmp samples could not be made (see cmp-samples.log)");
}

static void teardown(void)
{
    free(data);
    data = NULL;
}

/* Load a sample and decode it; the test fails on any decode error. */
static const struct rp_cmp_msg *load(const char *name)
{
    free(data);
    data = sample_read(name, &data_len);
    cr_assert_not_null(data, "sample %s missing", name);
    int rc = rp_cmp_decode(data, data_len, &arena, &msg, &err);
    cr_assert_eq(rc, RP_OK, "%s: %s at %zu, expected %s", name, rp_err_name(rc), err.offset,
                 err.expected ? err.expected : "-");
    return &msg;
}

static int decode(const uint8_t *p, size_t n)
{
    rp_arena_reset(&arena);
    memset(&err, 0, sizeof err);
    return rp_cmp_decode(p, n, &arena, &msg, &err);
}

/* ---- a tiny DER writer for the hostile cases ---- */

struct wbuf {
    uint8_t *p;
    size_t len, cap;
};

static void wput(struct wbuf *w, const void *p, size_t n)
{
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2;
        w->p = realloc(w->p, w->cap);
    }
    memcpy(w->p + w->len, p, n);
    w->len += n;
}

/* Append tag + minimal length + content. */
static void wtlv(struct wbuf *w, uint8_t tag, const void *c, size_t n)
{
    uint8_t h[6];
    size_t hl = 0;
    h[hl++] = tag;
    if (n < 0x80) {
        h[hl++] = (uint8_t)n;
    } else {
        size_t k = n < 0x100 ? 1 : n < 0x10000 ? 2 : 3;
        h[hl++] = (uint8_t)(0x80 | k);
        for (size_t j = k; j-- > 0;)
            h[hl++] = (uint8_t)(n >> (8 * j));
    }
    wput(w, h, hl);
    wput(w, c, n);
}

/* A PKIMessage from parts (each a full TLV, NULL to omit). */
static struct wbuf message(struct rp_view header, struct rp_view body, struct rp_view prot,
                           struct rp_view extra)
{
    struct wbuf in = {0}, out = {0};
    wput(&in, header.p, header.len);
    wput(&in, body.p, body.len);
    if (prot.p)
        wput(&in, prot.p, prot.len);
    if (extra.p)
        wput(&in, extra.p, extra.len);
    wtlv(&out, RP_DER_SEQUENCE, in.p, in.len);
    free(in.p);
    return out;
}

/* ---- real messages ---- */

TestSuite(cmp_decode, .init = setup, .fini = teardown);

Test(cmp_decode, reads_an_ir_header_completely)
{
    const struct rp_cmp_msg *m = load("ir.der");
    const struct rp_cmp_header *h = &m->header;
    size_t n;
    uint8_t *dev = sample_cert_der("dev.pem", &n);
    struct rp_cert c;
    cr_assert_eq(rp_cert_parse(dev, n, &c), RP_OK);

    cr_assert_eq(m->raw.len, data_len);
    cr_assert_eq(h->pvno, RP_CMP_PVNO_CMP2000);
    cr_assert_eq(h->sender.choice, RP_GNAME_DIRECTORY_NAME);
    cr_assert(rp_name_eq(h->sender.name, c.subject), "sender is the signer's subject");
    cr_assert_eq(h->recipient.choice, RP_GNAME_DIRECTORY_NAME);
    cr_assert(h->has_message_time);
    cr_assert_gt(h->message_time, 1700000000);
    cr_assert_eq(h->message_time_raw.p[0], RP_DER_CTX_CONS(0));
    cr_assert(rp_oid_is(h->protection_alg.oid, RP_OID_ECDSA_SHA256));
    cr_assert_null(h->protection_alg.params.p);
    cr_assert_eq(h->protection_alg_raw.p[0], RP_DER_CTX_CONS(1));
    cr_assert(rp_view_eq(h->sender_kid.val, c.ski), "senderKID is the signer's SKI");
    cr_assert_eq(h->transaction_id.val.len, 16);
    cr_assert_eq(h->sender_nonce.val.len, 16);
    cr_assert_eq(h->sender_nonce.raw.p[0], RP_DER_CTX_CONS(5));
    cr_assert_null(h->recip_nonce.raw.p);
    cr_assert_eq(h->implicit_confirm, 0);
    cr_assert(m->has_protection);
    cr_assert_gt(m->protection.bytes.len, 60);
    cr_assert_eq(m->n_extra_certs, 2);
    cr_assert(rp_view_eq(m->extra_certs[0], rp_view_make(dev, n)), "signer cert first");
    free(dev);
}

Test(cmp_decode, reads_an_ir_request_and_its_pop)
{
    const struct rp_cmp_msg *m = load("ir.der");
    cr_assert_eq(m->body.type, RP_CMP_IR);
    cr_assert_eq(m->body.reqs.n, 1);
    const struct rp_crmf_req *r = &m->body.reqs.reqs[0];
    char name[128];
    cr_assert_eq(r->cert_req_id, 0);
    cr_assert_gt(rp_name_to_string(r->tmpl.subject, name, sizeof name), 0);
    cr_assert_str_eq(name, "CN=Issued");
    cr_assert(rp_oid_is(r->tmpl.public_key_alg.oid, RP_OID_EC_PUBLIC_KEY));
    cr_assert_eq(r->pop.type, RP_CRMF_POP_SIGNATURE);
    cr_assert_null(r->pop.poposk_input_raw.p);
    cr_assert(rp_oid_is(r->pop.alg.oid, RP_OID_ECDSA_SHA256));
    cr_assert_gt(r->pop.signature.bytes.len, 60);
    /* the CertRequest a POP signs lies inside the CertReqMsg, before the POP */
    cr_assert(r->cert_req_raw.p > r->raw.p &&
              r->cert_req_raw.p + r->cert_req_raw.len <= r->pop.raw.p);

    struct rp_view spki;
    size_t n;
    uint8_t *pub = sample_pub_der("new.key", &n);
    cr_assert_eq(rp_crmf_template_spki(&r->tmpl, &arena, &spki), RP_OK);
    cr_assert(rp_view_eq(spki, rp_view_make(pub, n)), "template key is the -newkey");
    free(pub);
}

Test(cmp_decode, header_and_body_form_the_protected_part)
{
    const struct rp_cmp_msg *m = load("ir.der");
    struct rp_view pp;
    struct rp_der_tlv t;
    cr_assert_eq(m->header_raw.p + m->header_raw.len, m->body_raw.p, "adjacent");
    cr_assert_eq(rp_cmp_protected_part(m, &arena, &pp), RP_OK);
    cr_assert_eq(rp_der_parse_one(pp.p, pp.len, &t, NULL), RP_OK);
    cr_assert_eq(t.ident, RP_DER_SEQUENCE);
    cr_assert_eq(t.val.len, m->header_raw.len + m->body_raw.len);
    cr_assert_eq(memcmp(t.val.p, m->header_raw.p, t.val.len), 0);

    struct rp_arena tiny;
    uint8_t small[64];
    rp_arena_init(&tiny, small, sizeof small);
    cr_assert_eq(rp_cmp_protected_part(m, &tiny, &pp), RP_E_ARENA);
}

Test(cmp_decode, reads_ip_with_capubs_and_certificate)
{
    struct rp_view ir_nonce, ir_txid;
    const struct rp_cmp_msg *m = load("ir.der");
    uint8_t *ir = data;
    data = NULL;
    ir_nonce = m->header.sender_nonce.val;
    ir_txid = m->header.transaction_id.val;
    m = load("ip.der");
    cr_assert_eq(m->body.type, RP_CMP_IP);
    cr_assert(rp_view_eq(m->header.recip_nonce.val, ir_nonce));
    cr_assert(rp_view_eq(m->header.transaction_id.val, ir_txid));
    const struct rp_cmp_certrep *rep = &m->body.rep;
    cr_assert_eq(rep->n_ca_pubs, 1);
    cr_assert_eq(rep->n, 1);
    cr_assert_eq(rep->resps[0].cert_req_id, 0);
    cr_assert_eq(rep->resps[0].status.status, RP_CMP_STATUS_ACCEPTED);
    struct rp_cert c;
    char name[64];
    cr_assert_eq(rp_cert_parse(rep->resps[0].cert.p, rep->resps[0].cert.len, &c), RP_OK);
    rp_name_to_string(c.subject, name, sizeof name);
    cr_assert_str_eq(name, "CN=Issued");
    cr_assert_eq(rp_cert_parse(rep->ca_pubs[0].p, rep->ca_pubs[0].len, &c), RP_OK);
    rp_name_to_string(c.subject, name, sizeof name);
    cr_assert_str_eq(name, "C=DE, O=Test, CN=Test CA");
    free(ir);
}

Test(cmp_decode, reads_certconf_and_pkiconf)
{
    const struct rp_cmp_msg *m = load("certConf.der");
    cr_assert_eq(m->body.type, RP_CMP_CERTCONF);
    cr_assert_eq(m->body.conf.n, 1);
    cr_assert_eq(m->body.conf.items[0].cert_hash.len, 32);
    cr_assert_eq(m->body.conf.items[0].cert_req_id, 0);
    m = load("pkiconf.der");
    cr_assert_eq(m->body.type, RP_CMP_PKICONF);
    cr_assert_eq(m->body.content.len, 2);
}

Test(cmp_decode, reads_implicit_confirm_in_general_info)
{
    const struct rp_cmp_msg *m = load("cr.der");
    cr_assert_eq(m->body.type, RP_CMP_CR);
    cr_assert(m->header.implicit_confirm);
    cr_assert_geq(m->header.n_general_info, 1);
    cr_assert_eq(m->header.general_info_raw.p[0], RP_DER_CTX_CONS(8));
}

Test(cmp_decode, reads_p10cr)
{
    const struct rp_cmp_msg *m = load("p10cr.der");
    const struct rp_cmp_p10 *p = &m->body.p10;
    char name[64];
    size_t n;
    uint8_t *pub = sample_pub_der("new.key", &n);
    cr_assert_eq(m->body.type, RP_CMP_P10CR);
    cr_assert_eq(p->version, 0);
    rp_name_to_string(p->subject, name, sizeof name);
    cr_assert_str_eq(name, "CN=Issued");
    cr_assert(rp_view_eq(p->spki_raw, rp_view_make(pub, n)));
    cr_assert(rp_oid_is(p->sig_alg.oid, RP_OID_ECDSA_SHA256));
    cr_assert(p->cri_raw.p > p->raw.p);
    free(pub);
}

Test(cmp_decode, reads_kur_old_cert_id)
{
    size_t n;
    uint8_t *issued = sample_cert_der("issued.pem", &n);
    struct rp_cert c;
    cr_assert_eq(rp_cert_parse(issued, n, &c), RP_OK);
    const struct rp_cmp_msg *m = load("kur.der");
    cr_assert_eq(m->body.type, RP_CMP_KUR);
    const struct rp_crmf_req *r = &m->body.reqs.reqs[0];
    cr_assert(r->has_old_cert_id);
    cr_assert_eq(r->old_cert_id.issuer.choice, RP_GNAME_DIRECTORY_NAME);
    cr_assert(rp_name_eq(r->old_cert_id.issuer.name, c.issuer));
    cr_assert(rp_view_eq(r->old_cert_id.serial, c.serial));
    free(issued);
    m = load("kup.der");
    cr_assert_eq(m->body.type, RP_CMP_KUP);
}

Test(cmp_decode, reads_rr_and_rp)
{
    size_t n;
    uint8_t *issued = sample_cert_der("issued.pem", &n);
    struct rp_cert c;
    cr_assert_eq(rp_cert_parse(issued, n, &c), RP_OK);
    const struct rp_cmp_msg *m = load("rr.der");
    cr_assert_eq(m->body.type, RP_CMP_RR);
    cr_assert_eq(m->body.rr.n, 1);
    const struct rp_cmp_revdetails *d = &m->body.rr.items[0];
    cr_assert(rp_view_eq(d->tmpl.serial, c.serial));
    cr_assert(rp_name_eq(d->tmpl.issuer, c.issuer));
    cr_assert_eq(d->reason, 1); /* keyCompromise */
    free(issued);
    m = load("rp.der");
    cr_assert_eq(m->body.type, RP_CMP_RP);
    cr_assert_eq(m->body.rp.n_status, 1);
    cr_assert_eq(m->body.rp.status[0].status, RP_CMP_STATUS_ACCEPTED);
}

Test(cmp_decode, reads_genm_and_genp)
{
    /* id-it-signKeyPairTypes 1.3.6.1.5.5.7.4.2 */
    static const char oid[] = "\x2b\x06\x01\x05\x05\x07\x04\x02";
    const struct rp_cmp_msg *m = load("genm.der");
    cr_assert_eq(m->body.type, RP_CMP_GENM);
    cr_assert_eq(m->body.gen.n, 1);
    cr_assert(rp_oid_is(m->body.gen.items[0].type, oid));
    m = load("genp.der");
    cr_assert_eq(m->body.type, RP_CMP_GENP);
    cr_assert_geq(m->body.gen.n, 1);
}

Test(cmp_decode, reads_error_message)
{
    const struct rp_cmp_msg *m = load("error.der");
    cr_assert_eq(m->body.type, RP_CMP_ERROR);
    cr_assert_eq(m->body.error.status.status, RP_CMP_STATUS_REJECTION);
}

Test(cmp_decode, reads_polling)
{
    const struct rp_cmp_msg *m = load("cp-waiting.der");
    cr_assert_eq(m->body.rep.resps[0].status.status, RP_CMP_STATUS_WAITING);
    cr_assert_null(m->body.rep.resps[0].cert.p);
    m = load("pollReq.der");
    cr_assert_eq(m->body.type, RP_CMP_POLLREQ);
    cr_assert_eq(m->body.pollreq.n, 1);
    cr_assert_eq(m->body.pollreq.cert_req_ids[0], 0);
    m = load("pollRep.der");
    cr_assert_eq(m->body.type, RP_CMP_POLLREP);
    cr_assert_eq(m->body.pollrep.n, 1);
    cr_assert_eq(m->body.pollrep.items[0].check_after, 0);
}

Test(cmp_decode, reads_mac_protected_ir)
{
    const struct rp_cmp_msg *m = load("ir-mac.der");
    cr_assert(rp_oid_is(m->header.protection_alg.oid, RP_OID_PBM));
    cr_assert_not_null(m->header.protection_alg.params.p);
    cr_assert(rp_view_eq(m->header.sender_kid.val, rp_view_str("kid-1")));
    cr_assert_eq(m->n_extra_certs, 0);
    cr_assert_null(m->extra_certs_raw.p);
    m = load("ir-rsa.der");
    cr_assert(rp_oid_is(m->header.protection_alg.oid, RP_OID_SHA256_WITH_RSA));
}

Test(cmp_decode, names_body_types)
{
    cr_assert_str_eq(rp_cmp_body_name(RP_CMP_IR), "ir");
    cr_assert_str_eq(rp_cmp_body_name(RP_CMP_CERTCONF), "certConf");
    cr_assert_str_eq(rp_cmp_body_name(RP_CMP_POLLREP), "pollRep");
    cr_assert_str_eq(rp_cmp_body_name((enum rp_cmp_body_type)27), "unknown");
    for (int i = 0; i < RP_CMP_BODY_COUNT; i++)
        cr_assert_eq(rp_cmp_body_from_name(rp_cmp_body_name((enum rp_cmp_body_type)i)), i);
    cr_assert_eq(rp_cmp_body_from_name("IR"), -1);
    cr_assert_eq(rp_cmp_body_from_name(NULL), -1);
}

/* ---- hostile variants ---- */

Test(cmp_decode, rejects_trailing_bytes_after_the_message)
{
    load("ir.der");
    uint8_t *b = malloc(data_len + 1);
    memcpy(b, data, data_len);
    b[data_len] = 0;
    cr_assert_eq(decode(b, data_len + 1), RP_E_DER_TRAILING);
    cr_assert_eq(err.offset, data_len);
    free(b);
}

Test(cmp_decode, reports_arena_exhaustion)
{
    load("ir.der");
    struct rp_arena tiny;
    uint8_t small[32];
    rp_arena_init(&tiny, small, sizeof small);
    cr_assert_eq(rp_cmp_decode(data, data_len, &tiny, &msg, &err), RP_E_ARENA);
    cr_assert_eq(err.code, RP_E_ARENA);
}

Test(cmp_decode, decodes_fully_but_flags_unsupported_pvno)
{
    const struct rp_cmp_msg *m = load("ir.der");
    size_t off = (size_t)(m->header.pvno_raw.p - data);
    uint8_t *b = malloc(data_len);
    memcpy(b, data, data_len);
    b[off + 2] = 4;
    cr_assert_eq(decode(b, data_len), RP_E_CMP_VERSION);
    cr_assert_eq(err.offset, off);
    cr_assert_eq(msg.header.pvno, 4);
    cr_assert_eq(msg.header.transaction_id.val.len, 16, "still usable for the error answer");
    cr_assert_eq(msg.n_extra_certs, 2);
    free(b);
}

Test(cmp_decode, rejects_header_fields_out_of_order)
{
    const struct rp_cmp_msg *m = load("ir.der");
    /* swap transactionID [4] and senderNonce [5]: same sizes, so only the order changes */
    const struct rp_cmp_octets *tx = &m->header.transaction_id, *sn = &m->header.sender_nonce;
    cr_assert_eq(tx->raw.p + tx->raw.len, sn->raw.p);
    uint8_t *b = malloc(data_len);
    memcpy(b, data, data_len);
    size_t o = (size_t)(tx->raw.p - data), bad = o + sn->raw.len;
    memcpy(b + o, sn->raw.p, sn->raw.len);
    memcpy(b + o + sn->raw.len, tx->raw.p, tx->raw.len);
    cr_assert_eq(decode(b, data_len), RP_E_CMP_HEADER);
    cr_assert_eq(err.offset, bad);
    free(b);
}

Test(cmp_decode, rejects_unknown_body_choice)
{
    const struct rp_cmp_msg *m = load("pkiconf.der");
    uint8_t *b = malloc(data_len);
    memcpy(b, data, data_len);
    size_t o = (size_t)(m->body_raw.p - data);
    b[o] = RP_DER_CTX_CONS(27);
    cr_assert_eq(decode(b, data_len), RP_E_CMP_BODY);
    cr_assert_eq(err.offset, o);
    b[o] = RP_DER_CTX_CONS(RP_CMP_RANN); /* known but not deep-decoded: kept raw */
    cr_assert_eq(decode(b, data_len), RP_OK);
    cr_assert_eq(msg.body.type, RP_CMP_RANN);
    b[o] = RP_DER_CTX_CONS(RP_CMP_IR); /* NULL where CertReqMessages belongs */
    cr_assert_eq(decode(b, data_len), RP_E_DER_TAG);
    free(b);
}

Test(cmp_decode, caps_extra_certs)
{
    /* copies: decoding the variants overwrites msg */
    const struct rp_cmp_msg m = *load("ir.der");
    struct rp_view cert = m.extra_certs[1];
    struct wbuf certs = {0};
    for (size_t i = 0; i <= RP_CMP_MAX_LIST; i++)
        wput(&certs, cert.p, cert.len);
    static uint8_t big[1024 * 1024];
    struct rp_arena a;
    rp_arena_init(&a, big, sizeof big);
    /* one over the cap, then exactly the cap */
    for (size_t k = 0; k < 2; k++) {
        struct wbuf seq = {0}, wrap = {0};
        wtlv(&seq, RP_DER_SEQUENCE, certs.p, certs.len - k * cert.len);
        wtlv(&wrap, RP_DER_CTX_CONS(1), seq.p, seq.len);
        struct wbuf w =
            message(m.header_raw, m.body_raw, m.protection_raw, rp_view_make(wrap.p, wrap.len));
        rp_arena_reset(&a);
        int rc = rp_cmp_decode(w.p, w.len, &a, &msg, &err);
        cr_assert_eq(rc, k == 0 ? RP_E_DER_COUNT : RP_OK);
        if (k == 1)
            cr_assert_eq(msg.n_extra_certs, RP_CMP_MAX_LIST);
        free(seq.p), free(wrap.p), free(w.p);
    }
    free(certs.p);
}

Test(cmp_decode, rejects_empty_extra_certs)
{
    const struct rp_cmp_msg *m = load("ir.der");
    static const uint8_t empty[] = {0xA1, 0x02, 0x30, 0x00};
    struct wbuf w =
        message(m->header_raw, m->body_raw, m->protection_raw, rp_view_make(empty, sizeof empty));
    cr_assert_eq(decode(w.p, w.len), RP_E_DER_COUNT);
    free(w.p);
}

/* nested body [20] { SEQUENCE { inner } } with the outer header of `m` */
static struct wbuf nest(const struct rp_cmp_msg *m, struct rp_view inner)
{
    struct wbuf seq = {0}, body = {0};
    wtlv(&seq, RP_DER_SEQUENCE, inner.p, inner.len);
    wtlv(&body, RP_DER_CTX_CONS(RP_CMP_NESTED), seq.p, seq.len);
    struct wbuf w =
        message(m->header_raw, rp_view_make(body.p, body.len), RP_VIEW_NULL, RP_VIEW_NULL);
    free(seq.p), free(body.p);
    return w;
}

Test(cmp_decode, decodes_nested_messages_up_to_the_cap)
{
    const struct rp_cmp_msg saved = *load("ir.der"), *m = &saved; /* msg is reused below */
    struct wbuf w = nest(m, rp_view_make(data, data_len));
    cr_assert_eq(decode(w.p, w.len), RP_OK);
    cr_assert_eq(msg.body.type, RP_CMP_NESTED);
    cr_assert_eq(msg.body.nested.n, 1);
    const struct rp_cmp_msg *in = &msg.body.nested.msgs[0];
    cr_assert_eq(in->body.type, RP_CMP_IR);
    cr_assert_eq(in->raw.p, w.p + (w.len - data_len), "views into the outer buffer");
    cr_assert_eq(in->n_extra_certs, 2);

    /* wrap again until the cap is crossed */
    struct wbuf cur = w;
    int levels = 1;
    int rc = RP_OK;
    while (rc == RP_OK && levels <= RP_CMP_MAX_NESTED + 1) {
        struct wbuf next = nest(m, rp_view_make(cur.p, cur.len));
        free(cur.p);
        cur = next;
        levels++;
        rc = decode(cur.p, cur.len);
    }
    cr_assert_eq(rc, RP_E_DER_DEPTH);
    cr_assert_eq(levels, RP_CMP_MAX_NESTED + 1);
    free(cur.p);
}

Test(cmp_decode, error_offsets_point_into_the_input)
{
    const struct rp_cmp_msg *m = load("ir.der");
    const struct rp_crmf_req *r = &m->body.reqs.reqs[0];
    /* make the POP's BIT STRING unused-bits octet invalid */
    size_t o = (size_t)(r->pop.signature.bytes.p - 1 - data);
    uint8_t *b = malloc(data_len);
    memcpy(b, data, data_len);
    b[o] = 9;
    cr_assert_eq(decode(b, data_len), RP_E_DER_BITSTRING);
    cr_assert_lt(err.offset, o);
    cr_assert_geq(err.offset, o - 4);
    cr_assert_not_null(err.expected);
    free(b);
}

/* A minimal pkiconf whose header carries one generalInfo ITAV (type OID + optional value). */
static struct wbuf with_general_info(const char *oid, size_t oid_len, const uint8_t *value,
                                     size_t value_len)
{
    static const uint8_t start[] = {0x02, 0x01, 0x02,        /* pvno */
                                    0xA4, 0x02, 0x30, 0x00,  /* sender: NULL-DN */
                                    0xA4, 0x02, 0x30, 0x00}; /* recipient */
    static const uint8_t body[] = {0xB3, 0x02, 0x05, 0x00};  /* [19] pkiconf NULL */
    struct wbuf itav = {0}, seq = {0}, gi = {0}, hdr = {0}, h = {0};
    wtlv(&itav, RP_DER_OID, oid, oid_len);
    if (value)
        wput(&itav, value, value_len);
    wtlv(&seq, RP_DER_SEQUENCE, itav.p, itav.len);
    wtlv(&gi, RP_DER_SEQUENCE, seq.p, seq.len);
    wput(&hdr, start, sizeof start);
    wtlv(&hdr, RP_DER_CTX_CONS(8), gi.p, gi.len);
    wtlv(&h, RP_DER_SEQUENCE, hdr.p, hdr.len);
    struct wbuf w = message(rp_view_make(h.p, h.len), rp_view_make(body, sizeof body), RP_VIEW_NULL,
                            RP_VIEW_NULL);
    free(itav.p), free(seq.p), free(gi.p), free(hdr.p), free(h.p);
    return w;
}

/* Found by fuzz_cmp_decode: a confirmWaitTime ITAV without a value made a cursor over
 * NULL (undefined behaviour). */
Test(cmp_decode, rejects_confirm_wait_time_without_value)
{
    static const char cwt[] = RP_OID_IT_CONFIRM_WAIT_TIME;
    static const uint8_t when[] = {0x18, 0x0f, '2', '0', '3', '0', '0', '1', '0',
                                   '1',  '0',  '0', '0', '0', '0', '0', 'Z'};
    struct wbuf w = with_general_info(cwt, sizeof cwt - 1, NULL, 0);
    cr_assert_eq(decode(w.p, w.len), RP_E_CMP_HEADER);
    free(w.p);
    w = with_general_info(cwt, sizeof cwt - 1, when, sizeof when);
    cr_assert_eq(decode(w.p, w.len), RP_OK);
    cr_assert(msg.header.has_confirm_wait_time);
    cr_assert_eq(msg.header.confirm_wait_time, 1893456000);
    cr_assert_eq(msg.header.sender.name.len, 2, "NULL-DN sender");
    free(w.p);
    static const char ic[] = RP_OID_IT_IMPLICIT_CONFIRM;
    static const uint8_t null[] = {0x05, 0x00}, notnull[] = {0x02, 0x01, 0x00};
    w = with_general_info(ic, sizeof ic - 1, null, sizeof null);
    cr_assert_eq(decode(w.p, w.len), RP_OK);
    cr_assert(msg.header.implicit_confirm);
    free(w.p);
    w = with_general_info(ic, sizeof ic - 1, notnull, sizeof notnull);
    cr_assert_eq(decode(w.p, w.len), RP_E_CMP_HEADER);
    free(w.p);
}
