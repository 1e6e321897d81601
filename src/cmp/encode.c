/* CMP encoders: see include/raproxy/cmp_encode.h. */
#include "raproxy/cmp_encode.h"
#include "raproxy/derw.h"

#include <stdbool.h>
#include <string.h>

/* Header octets of the fixed-size fields a response header adds beyond its inputs:
 * pvno, the NULL-DN recipient, messageTime and the wrappers of everything else. */
#define RESPONSE_HEADER_FIXED 128u
/* A PKIStatusInfo's status INTEGER and failInfo BIT STRING, at most. */
#define STATUS_INFO_FIXED 32u
/* PKIHeader fields that are wrapped: [4] sender, [1] protectionAlg, [2] senderKID plus its
 * OCTET STRING, the header SEQUENCE itself. */
#define REPROTECT_WRAPPERS 5u

/* Room for `payload` bytes inside `elements` TLV headers. */
static size_t room(size_t payload, size_t elements)
{
    return payload + elements * RP_DERW_MAX_HEADER;
}

static int done(struct rp_derw *w, struct rp_view *out)
{
    return rp_derw_finish(w, out);
}

int rp_cmp_enc_protected_part(struct rp_arena *a, struct rp_view header_tlv,
                              struct rp_view body_tlv, struct rp_view *out)
{
    struct rp_derw w;
    if (!header_tlv.p || !body_tlv.p)
        return RP_E_INVAL;
    rp_derw_init(&w, a, room(header_tlv.len + body_tlv.len, 1));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_raw(&w, header_tlv);
    rp_derw_raw(&w, body_tlv);
    rp_derw_end(&w);
    return done(&w, out);
}

int rp_cmp_enc_message(struct rp_arena *a, struct rp_view header_tlv, struct rp_view body_tlv,
                       struct rp_view protection_sig, const struct rp_view *extra_certs,
                       size_t n_extra, struct rp_view *out)
{
    struct rp_derw w;
    size_t payload = header_tlv.len + body_tlv.len + protection_sig.len;
    if (!header_tlv.p || !body_tlv.p || (n_extra && !extra_certs) || n_extra > RP_CMP_MAX_LIST)
        return RP_E_INVAL;
    for (size_t i = 0; i < n_extra; i++)
        payload += extra_certs[i].len;
    /* message SEQUENCE, [0], BIT STRING, [1], SEQUENCE OF */
    rp_derw_init(&w, a, room(payload, 5));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_raw(&w, header_tlv);
    rp_derw_raw(&w, body_tlv);
    if (rp_view_present(protection_sig)) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(0));
        rp_derw_bits(&w, protection_sig, 0);
        rp_derw_end(&w);
    }
    if (n_extra) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(1));
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        for (size_t i = 0; i < n_extra; i++)
            rp_derw_raw(&w, extra_certs[i]);
        rp_derw_end(&w);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    return done(&w, out);
}

/* [tag] EXPLICIT OCTET STRING: senderKID, senderNonce, recipNonce. */
static void octets_field(struct rp_derw *w, unsigned tag, struct rp_view v)
{
    rp_derw_begin(w, RP_DER_CTX_CONS(tag));
    rp_derw_octets(w, v);
    rp_derw_end(w);
}

/* [tag] EXPLICIT around a complete TLV: sender (directoryName), protectionAlg. */
static void wrapped_field(struct rp_derw *w, unsigned tag, struct rp_view tlv)
{
    rp_derw_begin(w, RP_DER_CTX_CONS(tag));
    rp_derw_raw(w, tlv);
    rp_derw_end(w);
}

/* PKIHeader field tags (RFC 9810 §5.1.1). */
enum {
    HDR_MESSAGE_TIME = 0,
    HDR_PROTECTION_ALG = 1,
    HDR_SENDER_KID = 2,
    HDR_SENDER_NONCE = 5,
    HDR_RECIP_NONCE = 6,
};

/* One PKIHeader field from either source: a TLV taken as it is (a field of the message the
 * header is made from), else a value wrapped here as [tag] OCTET STRING; neither: absent. */
struct hdr_octets {
    struct rp_view tlv, val;
};

/* What a header the RA writes holds: every encoder below fills it from its own sources and
 * header_write() writes it, so the three headers write each field the same way. */
struct hdr_fields {
    struct rp_view pvno_tlv; /* kept as is; absent: pvno written here */
    int64_t pvno;
    struct rp_view sender_name; /* Name, written as directoryName */
    struct rp_view recipient;   /* GeneralName TLV */
    bool fresh_time;            /* messageTime `now`, else time_tlv kept as is (or absent) */
    int64_t now;
    struct rp_view time_tlv;
    struct rp_view prot_alg;   /* AlgorithmIdentifier, or absent */
    struct rp_view sender_kid; /* its value, or absent */
    struct rp_view txid_tlv;   /* [4] transactionID, or absent */
    struct hdr_octets sender_nonce, recip_nonce;
    struct rp_view free_text_tlv, general_info_tlv; /* [7], [8] kept as they are, or absent */
};

static void octets_either(struct rp_derw *w, unsigned tag, struct hdr_octets f)
{
    if (rp_view_present(f.tlv))
        rp_derw_raw(w, f.tlv);
    else if (rp_view_present(f.val))
        octets_field(w, tag, f.val);
}

static int header_write(struct rp_arena *a, size_t cap, const struct hdr_fields *f,
                        struct rp_view *out)
{
    struct rp_derw w;
    rp_derw_init(&w, a, cap);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    if (rp_view_present(f->pvno_tlv))
        rp_derw_raw(&w, f->pvno_tlv);
    else
        rp_derw_int64(&w, RP_DER_INTEGER, f->pvno);
    wrapped_field(&w, RP_GNAME_DIRECTORY_NAME, f->sender_name);
    rp_derw_raw(&w, f->recipient);
    if (f->fresh_time) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(HDR_MESSAGE_TIME));
        rp_derw_gentime(&w, f->now);
        rp_derw_end(&w);
    } else {
        rp_derw_raw(&w, f->time_tlv);
    }
    if (rp_view_present(f->prot_alg))
        wrapped_field(&w, HDR_PROTECTION_ALG, f->prot_alg);
    if (rp_view_present(f->sender_kid))
        octets_field(&w, HDR_SENDER_KID, f->sender_kid);
    rp_derw_raw(&w, f->txid_tlv);
    octets_either(&w, HDR_SENDER_NONCE, f->sender_nonce);
    octets_either(&w, HDR_RECIP_NONCE, f->recip_nonce);
    rp_derw_raw(&w, f->free_text_tlv);
    rp_derw_raw(&w, f->general_info_tlv);
    rp_derw_end(&w);
    return done(&w, out);
}

/* The fields a header signed on behalf of `in` keeps from it. */
static struct hdr_fields kept_from(const struct rp_cmp_header *h, struct rp_view sender_name,
                                   struct rp_view sender_kid, struct rp_view prot_alg)
{
    return (struct hdr_fields){.pvno_tlv = h->pvno_raw,
                               .sender_name = sender_name,
                               .recipient = h->recipient.raw,
                               .prot_alg = prot_alg,
                               .sender_kid = sender_kid,
                               .txid_tlv = h->transaction_id.raw,
                               .sender_nonce = {.tlv = h->sender_nonce.raw},
                               .recip_nonce = {.tlv = h->recip_nonce.raw},
                               .free_text_tlv = h->free_text_raw,
                               .general_info_tlv = h->general_info_raw};
}

int rp_cmp_enc_reprotect_header(struct rp_arena *a, const struct rp_cmp_msg *in,
                                struct rp_view new_sender_name, struct rp_view new_sender_kid,
                                struct rp_view new_protection_alg, struct rp_view *out)
{
    const struct rp_cmp_header *h = &in->header;
    if (!new_sender_name.p || !h->pvno_raw.p || !h->recipient.raw.p)
        return RP_E_INVAL;
    /* The kept fields are all inside header_raw, so its length bounds them. */
    size_t payload = h->raw.len + new_sender_name.len + new_sender_kid.len + new_protection_alg.len;
    struct hdr_fields f = kept_from(h, new_sender_name, new_sender_kid, new_protection_alg);
    f.time_tlv = h->message_time_raw;
    return header_write(a, room(payload, REPROTECT_WRAPPERS), &f, out);
}

int rp_cmp_enc_rewrap_header(struct rp_arena *a, const struct rp_cmp_msg *in,
                             struct rp_view new_sender_name, struct rp_view new_sender_kid,
                             struct rp_view new_protection_alg, int64_t now_epoch,
                             struct rp_view recipient, struct rp_view recip_nonce,
                             struct rp_view *out)
{
    const struct rp_cmp_header *h = &in->header;
    if (!rp_view_present(recipient))
        recipient = h->recipient.raw;
    if (!new_sender_name.p || !h->pvno_raw.p || !recipient.p)
        return RP_E_INVAL;
    size_t payload = h->raw.len + new_sender_name.len + new_sender_kid.len +
                     new_protection_alg.len + recipient.len + recip_nonce.len;
    struct hdr_fields f = kept_from(h, new_sender_name, new_sender_kid, new_protection_alg);
    f.recipient = recipient;
    f.fresh_time = true;
    f.now = now_epoch;
    if (rp_view_present(recip_nonce))
        f.recip_nonce = (struct hdr_octets){.val = recip_nonce};
    return header_write(a, room(payload, REPROTECT_WRAPPERS) + RESPONSE_HEADER_FIXED, &f, out);
}

int rp_cmp_enc_response_header(struct rp_arena *a, const struct rp_cmp_msg *req,
                               struct rp_view sender_name, struct rp_view sender_kid,
                               struct rp_view prot_alg, struct rp_view fresh_nonce,
                               int64_t now_epoch, struct rp_view *out)
{
    /* directoryName [4] with an empty rdnSequence: "no recipient known" (RFC 9810 §5.1.1) */
    static const uint8_t null_dn[] = {RP_DER_CTX_CONS(RP_GNAME_DIRECTORY_NAME), 2, RP_DER_SEQUENCE,
                                      0};
    const struct rp_cmp_header *h = req ? &req->header : NULL;
    if (!sender_name.p || fresh_nonce.len < RP_CMP_NONCE_LEN)
        return RP_E_INVAL;
    /* answer in the request's version, unless that version is the problem (unsupportedVersion) */
    bool known =
        h && h->pvno_raw.p && (h->pvno == RP_CMP_PVNO_CMP2000 || h->pvno == RP_CMP_PVNO_CMP2021);
    struct hdr_fields f = {
        .pvno = known ? h->pvno : RP_CMP_PVNO_CMP2000,
        .sender_name = sender_name,
        .recipient = h && h->sender.raw.p ? h->sender.raw : rp_view_make(null_dn, sizeof null_dn),
        .fresh_time = true,
        .now = now_epoch,
        .prot_alg = prot_alg,
        .sender_kid = sender_kid,
        .txid_tlv = h ? h->transaction_id.raw : RP_VIEW_NULL,
        .sender_nonce = {.val = fresh_nonce},
        .recip_nonce = {.val = h ? h->sender_nonce.val : RP_VIEW_NULL},
    };
    size_t payload = sender_name.len + sender_kid.len + prot_alg.len + fresh_nonce.len +
                     f.recipient.len + f.txid_tlv.len + f.recip_nonce.val.len;
    return header_write(a, room(payload, 0) + RESPONSE_HEADER_FIXED, &f, out);
}

int rp_cmp_enc_body_error(struct rp_arena *a, enum rp_failinfo bit, int status,
                          struct rp_view freetext, struct rp_view *out)
{
    struct rp_derw w;
    if (bit < RP_FI_NONE || bit > RP_FI_DUPLICATE_CERT_REQ || status < 0)
        return RP_E_INVAL;
    /* [23] ErrorMsgContent PKIStatusInfo statusString UTF8String */
    rp_derw_init(&w, a, room(freetext.len, 5) + STATUS_INFO_FIXED);
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_CMP_ERROR));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, status);
    if (rp_view_present(freetext)) {
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_utf8(&w, freetext);
        rp_derw_end(&w);
    }
    if (bit != RP_FI_NONE)
        rp_derw_named_bits(&w, 1u << (unsigned)bit);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    return done(&w, out);
}

/* PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String, with one string. */
static void free_text(struct rp_derw *w, struct rp_view text)
{
    rp_derw_begin(w, RP_DER_SEQUENCE);
    rp_derw_utf8(w, text);
    rp_derw_end(w);
}

int rp_cmp_enc_body_certrep_waiting(struct rp_arena *a, enum rp_cmp_body_type type,
                                    const int64_t *cert_req_ids, size_t n, struct rp_view freetext,
                                    struct rp_view *out)
{
    struct rp_derw w;
    if ((type != RP_CMP_IP && type != RP_CMP_CP && type != RP_CMP_KUP) || n == 0 ||
        n > RP_CMP_MAX_LIST || !cert_req_ids)
        return RP_E_INVAL;
    /* per response: CertResponse, certReqId, PKIStatusInfo, status, statusString, UTF8String */
    rp_derw_init(&w, a, room(n * (freetext.len + STATUS_INFO_FIXED), 6 * n + 2));
    rp_derw_begin(&w, RP_DER_CTX_CONS((unsigned)type));
    rp_derw_begin(&w, RP_DER_SEQUENCE); /* CertRepMessage (no caPubs) */
    rp_derw_begin(&w, RP_DER_SEQUENCE); /* response */
    for (size_t i = 0; i < n; i++) {
        rp_derw_begin(&w, RP_DER_SEQUENCE); /* CertResponse */
        rp_derw_int64(&w, RP_DER_INTEGER, cert_req_ids[i]);
        rp_derw_begin(&w, RP_DER_SEQUENCE); /* PKIStatusInfo */
        rp_derw_int64(&w, RP_DER_INTEGER, RP_CMP_STATUS_WAITING);
        if (rp_view_present(freetext))
            free_text(&w, freetext);
        rp_derw_end(&w);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    return done(&w, out);
}

int rp_cmp_enc_body_pollrep(struct rp_arena *a, const int64_t *cert_req_ids, size_t n,
                            int64_t check_after_s, struct rp_view freetext, struct rp_view *out)
{
    struct rp_derw w;
    if (n == 0 || n > RP_CMP_MAX_LIST || !cert_req_ids || check_after_s < 0)
        return RP_E_INVAL;
    rp_derw_init(&w, a, room(n * (freetext.len + STATUS_INFO_FIXED), 5 * n + 2));
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_CMP_POLLREP));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    for (size_t i = 0; i < n; i++) {
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_int64(&w, RP_DER_INTEGER, cert_req_ids[i]);
        rp_derw_int64(&w, RP_DER_INTEGER, check_after_s);
        if (rp_view_present(freetext))
            free_text(&w, freetext);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    rp_derw_end(&w);
    return done(&w, out);
}

int rp_cmp_enc_body_pkiconf(struct rp_arena *a, struct rp_view *out)
{
    struct rp_derw w;
    rp_derw_init(&w, a, room(0, 2));
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_CMP_PKICONF));
    rp_derw_null(&w);
    rp_derw_end(&w);
    return done(&w, out);
}

/* [tag] { SEQUENCE OF { items... } } */
static int tagged_list(struct rp_arena *a, unsigned tag, const struct rp_view *items, size_t n,
                       struct rp_view *out)
{
    struct rp_derw w;
    size_t payload = 0;
    if ((n && !items) || n > RP_CMP_MAX_LIST)
        return RP_E_INVAL;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].p)
            return RP_E_INVAL;
        payload += items[i].len;
    }
    rp_derw_init(&w, a, room(payload, 2));
    rp_derw_begin(&w, RP_DER_CTX_CONS(tag));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    for (size_t i = 0; i < n; i++)
        rp_derw_raw(&w, items[i]);
    rp_derw_end(&w);
    rp_derw_end(&w);
    return done(&w, out);
}

int rp_cmp_enc_body_genp(struct rp_arena *a, const struct rp_view *itavs, size_t n,
                         struct rp_view *out)
{
    return tagged_list(a, RP_CMP_GENP, itavs, n, out);
}

int rp_cmp_enc_body_nested(struct rp_arena *a, const struct rp_view *msgs, size_t n,
                           struct rp_view *out)
{
    if (n == 0) /* PKIMessages ::= SEQUENCE SIZE (1..MAX) */
        return RP_E_INVAL;
    return tagged_list(a, RP_CMP_NESTED, msgs, n, out);
}

int rp_cmp_enc_body_pop_raverified(struct rp_arena *a, const struct rp_cmp_msg *in,
                                   struct rp_view *out)
{
    const struct rp_cmp_body *b = &in->body;
    struct rp_derw w;
    if (b->type != RP_CMP_IR && b->type != RP_CMP_CR && b->type != RP_CMP_KUR)
        return RP_E_INVAL;
    /* raVerified [0] IMPLICIT NULL: CRMF's module has IMPLICIT TAGS */
    const struct rp_view ra_verified = RP_VIEW_NULL;
    size_t payload = 0;
    for (size_t i = 0; i < b->reqs.n; i++)
        payload += room(b->reqs.reqs[i].cert_req_raw.len + b->reqs.reqs[i].reg_info_raw.len, 2);
    rp_derw_init(&w, a, room(payload, 2));
    rp_derw_begin(&w, RP_DER_CTX_CONS((unsigned)b->type));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    for (size_t i = 0; i < b->reqs.n; i++) {
        const struct rp_crmf_req *r = &b->reqs.reqs[i];
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_raw(&w, r->cert_req_raw);
        rp_derw_prim(&w, RP_DER_CTX(RP_CRMF_POP_RA_VERIFIED), ra_verified);
        rp_derw_raw(&w, r->reg_info_raw);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    rp_derw_end(&w);
    return done(&w, out);
}

/* CertTemplate field tags (RFC 4211 §5). */
enum { TPL_ISSUER = 3, TPL_SUBJECT = 5, TPL_EXTENSIONS = 9 };

static size_t template_room(const struct rp_cmp_enc_template *t)
{
    size_t payload = t->issuer.len + t->validity_raw.len + t->subject.len + t->public_key_raw.len;
    for (size_t i = 0; i < t->n_extensions; i++)
        payload += t->extensions[i].len;
    return room(payload, 6);
}

static void write_template(struct rp_derw *w, const struct rp_cmp_enc_template *t)
{
    rp_derw_begin(w, RP_DER_SEQUENCE);
    if (rp_view_present(t->issuer))
        wrapped_field(w, TPL_ISSUER, t->issuer);
    rp_derw_raw(w, t->validity_raw);
    if (rp_view_present(t->subject))
        wrapped_field(w, TPL_SUBJECT, t->subject);
    rp_derw_raw(w, t->public_key_raw);
    if (t->n_extensions) {
        rp_derw_begin(w, RP_DER_CTX_CONS(TPL_EXTENSIONS));
        for (size_t i = 0; i < t->n_extensions; i++)
            rp_derw_raw(w, t->extensions[i]);
        rp_derw_end(w);
    }
    rp_derw_end(w);
}

int rp_cmp_enc_body_certreqs(struct rp_arena *a, enum rp_cmp_body_type type,
                             const struct rp_cmp_enc_certreq *reqs, size_t n, struct rp_view *out)
{
    struct rp_derw w;
    size_t payload = 0;
    if (n == 0 || n > RP_CMP_MAX_LIST ||
        (type != RP_CMP_IR && type != RP_CMP_CR && type != RP_CMP_KUR && type != RP_CMP_KRR &&
         type != RP_CMP_CCR))
        return RP_E_INVAL;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].tmpl.n_extensions && !reqs[i].tmpl.extensions)
            return RP_E_INVAL;
        payload += template_room(&reqs[i].tmpl) + room(reqs[i].controls_raw.len, 6);
    }
    rp_derw_init(&w, a, room(payload, 2));
    rp_derw_begin(&w, RP_DER_CTX_CONS((unsigned)type));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    for (size_t i = 0; i < n; i++) {
        const struct rp_cmp_enc_certreq *r = &reqs[i];
        rp_derw_begin(&w, RP_DER_SEQUENCE); /* CertReqMsg */
        rp_derw_begin(&w, RP_DER_SEQUENCE); /* CertRequest */
        rp_derw_int64(&w, RP_DER_INTEGER, r->cert_req_id);
        write_template(&w, &r->tmpl);
        rp_derw_raw(&w, r->controls_raw);
        rp_derw_end(&w);
        if (r->ra_verified)
            rp_derw_prim(&w, RP_DER_CTX(RP_CRMF_POP_RA_VERIFIED), RP_VIEW_NULL);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    rp_derw_end(&w);
    return done(&w, out);
}
