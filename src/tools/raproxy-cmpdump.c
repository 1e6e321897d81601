/* raproxy-cmpdump FILE...: print each DER PKIMessage as one line of JSON.
 *
 * For operators and tests: what a device or CA really sent, through raproxy's own decoder
 * (so it shows exactly what raproxy sees). An undecodable file prints
 * {"file":..., "error":"DER_TRUNCATED", "message":..., "offset":N, "expected":...}; the exit
 * status is 1 when any file failed, 2 on usage errors. */
#include "raproxy/arena.h"
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/der.h"
#include "raproxy/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Largest file accepted: far above any real PKIMessage, small enough to read whole. */
#define MAX_FILE (16u * 1024u * 1024u)
/* Decoded views for one file: lists of requests, certificates, ... */
#define ARENA_CAP (4u * 1024u * 1024u)
#define NAME_BUF  1024
#define OID_BUF   128
#define TIME_BUF  32

/* A JSON object or array being written: whether a member was written yet. */
struct out {
    FILE *f;
    int first;
};

static void json_str(FILE *f, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c < 0x20 || c == 0x7F) {
            fprintf(f, "\\u00%c%c", hex[c >> 4], hex[c & 0xF]);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static void key(struct out *o, const char *k)
{
    if (!o->first)
        fputc(',', o->f);
    o->first = 0;
    if (k) {
        json_str(o->f, k, strlen(k));
        fputc(':', o->f);
    }
}

static void open_obj(struct out *o, const char *k, struct out *child, char bracket)
{
    key(o, k);
    fputc(bracket, o->f);
    *child = (struct out){o->f, 1};
}

static void close_obj(struct out *child, char bracket)
{
    fputc(bracket, child->f);
}

static void put_str(struct out *o, const char *k, const char *s)
{
    key(o, k);
    if (s)
        json_str(o->f, s, strlen(s));
    else
        fputs("null", o->f);
}

static void put_int(struct out *o, const char *k, long long v)
{
    key(o, k);
    fprintf(o->f, "%lld", v);
}

static void put_bool(struct out *o, const char *k, int v)
{
    key(o, k);
    fputs(v ? "true" : "false", o->f);
}

static void put_hex(struct out *o, const char *k, struct rp_view v)
{
    key(o, k);
    fputc('"', o->f);
    for (size_t i = 0; i < v.len; i++)
        fprintf(o->f, "%02x", v.p[i]);
    fputc('"', o->f);
}

/* Optional OCTET STRING fields: written only when present. */
static void put_hex_opt(struct out *o, const char *k, struct rp_view v)
{
    if (rp_view_present(v))
        put_hex(o, k, v);
}

/* An INTEGER's content as a serial number: without the sign octet, which is not part of the
 * number (and not shown by openssl either). */
static void put_serial(struct out *o, const char *k, struct rp_view serial)
{
    if (serial.len > 1 && serial.p[0] == 0) {
        serial.p++;
        serial.len--;
    }
    put_hex(o, k, serial);
}

static void put_time(struct out *o, const char *k, int64_t epoch)
{
    char buf[TIME_BUF];
    struct tm tm;
    time_t t = (time_t)epoch;
    if (gmtime_r(&t, &tm) && strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm))
        put_str(o, k, buf);
    else
        put_int(o, k, (long long)epoch);
}

static void put_name(struct out *o, const char *k, struct rp_view name)
{
    char buf[NAME_BUF];
    if (rp_name_to_string(name, buf, sizeof buf) < 0)
        put_str(o, k, NULL);
    else
        put_str(o, k, buf);
}

static void put_gname(struct out *o, const char *k, const struct rp_cmp_gname *g)
{
    char buf[OID_BUF];
    if (!rp_view_present(g->raw))
        return;
    if (g->choice == RP_GNAME_DIRECTORY_NAME) {
        put_name(o, k, g->name);
        return;
    }
    snprintf(buf, sizeof buf, "GeneralName[%u]", g->choice);
    put_str(o, k, buf);
}

struct oid_name {
    const char *oid; /* content octets */
    size_t len;
    const char *name;
};

/* id-it (1.3.6.1.5.5.7.4): the InfoTypeAndValue types of RFC 9810 §5.3.19 */
#define ID_IT "\x2b\x06\x01\x05\x05\x07\x04"
#define OID_NAME(lit, name)                                                                        \
    {                                                                                              \
        lit, sizeof(lit) - 1, name                                                                 \
    }

static const struct oid_name oid_names[] = {
    OID_NAME(RP_OID_ECDSA_SHA256, "ecdsa-with-SHA256"),
    OID_NAME(RP_OID_ECDSA_SHA384, "ecdsa-with-SHA384"),
    OID_NAME(RP_OID_ECDSA_SHA512, "ecdsa-with-SHA512"),
    OID_NAME(RP_OID_SHA256_WITH_RSA, "sha256WithRSAEncryption"),
    OID_NAME(RP_OID_SHA384_WITH_RSA, "sha384WithRSAEncryption"),
    OID_NAME(RP_OID_SHA512_WITH_RSA, "sha512WithRSAEncryption"),
    OID_NAME(RP_OID_RSASSA_PSS, "RSASSA-PSS"),
    OID_NAME(RP_OID_ED25519, "Ed25519"),
    OID_NAME(RP_OID_ED448, "Ed448"),
    OID_NAME(RP_OID_PBM, "passwordBasedMac"),
    OID_NAME(RP_OID_PBMAC1, "PBMAC1"),
    OID_NAME(RP_OID_EC_PUBLIC_KEY, "id-ecPublicKey"),
    OID_NAME(RP_OID_RSA_ENCRYPTION, "rsaEncryption"),
    OID_NAME(RP_OID_SHA256, "sha256"),
    OID_NAME(RP_OID_SHA384, "sha384"),
    OID_NAME(RP_OID_SHA512, "sha512"),
    OID_NAME(RP_OID_IT_IMPLICIT_CONFIRM, "implicitConfirm"),
    OID_NAME(RP_OID_IT_CONFIRM_WAIT_TIME, "confirmWaitTime"),
    OID_NAME(RP_OID_IT_CA_CERTS, "caCerts"),
    OID_NAME(RP_OID_IT_ROOT_CA_KEY_UPDATE, "rootCaKeyUpdate"),
    OID_NAME(RP_OID_IT_CERT_REQ_TEMPLATE, "certReqTemplate"),
    OID_NAME(ID_IT "\x01", "caProtEncCert"),
    OID_NAME(ID_IT "\x02", "signKeyPairTypes"),
    OID_NAME(ID_IT "\x03", "encKeyPairTypes"),
    OID_NAME(ID_IT "\x04", "preferredSymmAlg"),
    OID_NAME(ID_IT "\x06", "currentCRL"),
    OID_NAME(ID_IT "\x0f", "origPKIMessage"),
};

static const char *oid_name(struct rp_view oid)
{
    for (size_t i = 0; i < sizeof oid_names / sizeof oid_names[0]; i++)
        if (oid.len == oid_names[i].len && memcmp(oid.p, oid_names[i].oid, oid.len) == 0)
            return oid_names[i].name;
    return NULL;
}

/* {"oid": "1.2...", "name": "..."} */
static void put_oid(struct out *o, const char *k, struct rp_view oid)
{
    char buf[OID_BUF];
    struct out c;
    open_obj(o, k, &c, '{');
    put_str(&c, "oid", rp_der_oid_str(oid, buf, sizeof buf) < 0 ? NULL : buf);
    put_str(&c, "name", oid_name(oid));
    close_obj(&c, '}');
}

/* PKIFreeText (SEQUENCE OF UTF8String) as an array of strings. */
static void put_freetext(struct out *o, const char *k, struct rp_view text)
{
    struct rp_der d, seq;
    struct rp_der_tlv t;
    struct out c;
    if (!rp_view_present(text))
        return;
    open_obj(o, k, &c, '[');
    rp_der_init(&d, text.p, text.len, NULL);
    if (rp_der_next(&d, &t) == RP_OK && rp_der_enter(&d, &t, &seq) == RP_OK)
        while (rp_der_left(&seq) && rp_der_next(&seq, &t) == RP_OK) {
            key(&c, NULL);
            json_str(c.f, (const char *)t.val.p, t.val.len);
        }
    close_obj(&c, ']');
}

static const char *status_name(int64_t s)
{
    static const char *const names[] = {
        "accepted",          "grantedWithMods",        "rejection",        "waiting",
        "revocationWarning", "revocationNotification", "keyUpdateWarning",
    };
    return s >= 0 && (size_t)s < sizeof names / sizeof names[0] ? names[s] : "unknown";
}

static void put_status(struct out *o, const char *k, const struct rp_cmp_status *s)
{
    struct out c, fi;
    open_obj(o, k, &c, '{');
    put_str(&c, "status", status_name(s->status));
    if (s->has_fail_info) {
        open_obj(&c, "failInfo", &fi, '[');
        for (int bit = 0; bit <= RP_FI_DUPLICATE_CERT_REQ; bit++)
            if (s->fail_info & (1u << bit))
                put_str(&fi, NULL, rp_failinfo_name((enum rp_failinfo)bit));
        close_obj(&fi, ']');
    }
    put_freetext(&c, "statusString", s->status_string);
    close_obj(&c, '}');
}

/* A certificate's identity, or its parse error. */
static void put_cert(struct out *o, const char *k, struct rp_view der)
{
    struct rp_cert cert;
    struct out c;
    open_obj(o, k, &c, '{');
    int rc = rp_cert_parse(der.p, der.len, &cert);
    if (rc < 0) {
        put_str(&c, "error", rp_err_name(rc));
    } else {
        put_name(&c, "subject", cert.subject);
        put_name(&c, "issuer", cert.issuer);
        put_serial(&c, "serial", cert.serial);
        put_time(&c, "notAfter", cert.not_after);
    }
    close_obj(&c, '}');
}

static void put_certs(struct out *o, const char *k, const struct rp_view *certs, size_t n)
{
    struct out c;
    open_obj(o, k, &c, '[');
    for (size_t i = 0; i < n; i++)
        put_cert(&c, NULL, certs[i]);
    close_obj(&c, ']');
}

static const char *pop_name(enum rp_crmf_pop_type t)
{
    switch (t) {
    case RP_CRMF_POP_RA_VERIFIED:
        return "raVerified";
    case RP_CRMF_POP_SIGNATURE:
        return "signature";
    case RP_CRMF_POP_KEY_ENCIPHERMENT:
        return "keyEncipherment";
    case RP_CRMF_POP_KEY_AGREEMENT:
        return "keyAgreement";
    default:
        return "none";
    }
}

static void put_requests(struct out *o, const struct rp_cmp_certreqs *r)
{
    struct out arr, c;
    open_obj(o, "requests", &arr, '[');
    for (size_t i = 0; i < r->n; i++) {
        const struct rp_crmf_req *q = &r->reqs[i];
        open_obj(&arr, NULL, &c, '{');
        put_int(&c, "certReqId", (long long)q->cert_req_id);
        if (rp_view_present(q->tmpl.subject))
            put_name(&c, "subject", q->tmpl.subject);
        if (rp_view_present(q->tmpl.public_key_raw))
            put_oid(&c, "publicKey", q->tmpl.public_key_alg.oid);
        put_str(&c, "pop", pop_name(q->pop.type));
        if (q->pop.type == RP_CRMF_POP_SIGNATURE)
            put_oid(&c, "popAlg", q->pop.alg.oid);
        if (q->has_old_cert_id)
            put_serial(&c, "oldCertSerial", q->old_cert_id.serial);
        close_obj(&c, '}');
    }
    close_obj(&arr, ']');
}

static void put_certrep(struct out *o, const struct rp_cmp_certrep *r)
{
    struct out arr, c;
    open_obj(o, "responses", &arr, '[');
    for (size_t i = 0; i < r->n; i++) {
        const struct rp_cmp_certresp *s = &r->resps[i];
        open_obj(&arr, NULL, &c, '{');
        put_int(&c, "certReqId", (long long)s->cert_req_id);
        put_status(&c, "status", &s->status);
        if (rp_view_present(s->cert))
            put_cert(&c, "cert", s->cert);
        close_obj(&c, '}');
    }
    close_obj(&arr, ']');
    if (rp_view_present(r->ca_pubs_raw))
        put_certs(o, "caPubs", r->ca_pubs, r->n_ca_pubs);
}

static void put_itavs(struct out *o, const char *k, const struct rp_cmp_itav *items, size_t n)
{
    struct out arr;
    open_obj(o, k, &arr, '[');
    for (size_t i = 0; i < n; i++)
        put_oid(&arr, NULL, items[i].type);
    close_obj(&arr, ']');
}

static void put_msg(struct out *o, const struct rp_cmp_msg *m);

static void put_body(struct out *o, const struct rp_cmp_body *b)
{
    struct out arr, c;
    switch (b->type) {
    case RP_CMP_IR:
    case RP_CMP_CR:
    case RP_CMP_KUR:
        put_requests(o, &b->reqs);
        break;
    case RP_CMP_P10CR:
        put_name(o, "subject", b->p10.subject);
        put_oid(o, "publicKey", b->p10.spki_alg.oid);
        break;
    case RP_CMP_IP:
    case RP_CMP_CP:
    case RP_CMP_KUP:
        put_certrep(o, &b->rep);
        break;
    case RP_CMP_CERTCONF:
        open_obj(o, "certStatus", &arr, '[');
        for (size_t i = 0; i < b->conf.n; i++) {
            open_obj(&arr, NULL, &c, '{');
            put_int(&c, "certReqId", (long long)b->conf.items[i].cert_req_id);
            put_hex(&c, "certHash", b->conf.items[i].cert_hash);
            if (b->conf.items[i].has_status)
                put_status(&c, "status", &b->conf.items[i].status);
            close_obj(&c, '}');
        }
        close_obj(&arr, ']');
        break;
    case RP_CMP_RR:
        open_obj(o, "revocations", &arr, '[');
        for (size_t i = 0; i < b->rr.n; i++) {
            const struct rp_cmp_revdetails *r = &b->rr.items[i];
            open_obj(&arr, NULL, &c, '{');
            if (rp_view_present(r->tmpl.issuer))
                put_name(&c, "issuer", r->tmpl.issuer);
            if (rp_view_present(r->tmpl.serial))
                put_serial(&c, "serial", r->tmpl.serial);
            if (r->reason != RP_CRL_REASON_NONE)
                put_int(&c, "reason", r->reason);
            close_obj(&c, '}');
        }
        close_obj(&arr, ']');
        break;
    case RP_CMP_RP:
        open_obj(o, "statuses", &arr, '[');
        for (size_t i = 0; i < b->rp.n_status; i++)
            put_status(&arr, NULL, &b->rp.status[i]);
        close_obj(&arr, ']');
        break;
    case RP_CMP_GENM:
    case RP_CMP_GENP:
        put_itavs(o, "infoTypes", b->gen.items, b->gen.n);
        break;
    case RP_CMP_POLLREQ:
        open_obj(o, "certReqIds", &arr, '[');
        for (size_t i = 0; i < b->pollreq.n; i++)
            put_int(&arr, NULL, (long long)b->pollreq.cert_req_ids[i]);
        close_obj(&arr, ']');
        break;
    case RP_CMP_POLLREP:
        open_obj(o, "polls", &arr, '[');
        for (size_t i = 0; i < b->pollrep.n; i++) {
            open_obj(&arr, NULL, &c, '{');
            put_int(&c, "certReqId", (long long)b->pollrep.items[i].cert_req_id);
            put_int(&c, "checkAfter", (long long)b->pollrep.items[i].check_after);
            put_freetext(&c, "reason", b->pollrep.items[i].reason);
            close_obj(&c, '}');
        }
        close_obj(&arr, ']');
        break;
    case RP_CMP_ERROR:
        put_status(o, "error", &b->error.status);
        if (b->error.has_error_code)
            put_int(o, "errorCode", (long long)b->error.error_code);
        put_freetext(o, "errorDetails", b->error.error_details);
        break;
    case RP_CMP_NESTED:
        open_obj(o, "messages", &arr, '[');
        for (size_t i = 0; i < b->nested.n; i++) {
            open_obj(&arr, NULL, &c, '{');
            put_msg(&c, &b->nested.msgs[i]);
            close_obj(&c, '}');
        }
        close_obj(&arr, ']');
        break;
    default: /* pkiconf and bodies raproxy does not look into */
        break;
    }
}

static void put_msg(struct out *o, const struct rp_cmp_msg *m)
{
    const struct rp_cmp_header *h = &m->header;
    put_int(o, "pvno", h->pvno);
    put_gname(o, "sender", &h->sender);
    put_gname(o, "recipient", &h->recipient);
    if (h->has_message_time)
        put_time(o, "messageTime", h->message_time);
    if (rp_view_present(h->protection_alg_raw))
        put_oid(o, "protectionAlg", h->protection_alg.oid);
    put_hex_opt(o, "senderKID", h->sender_kid.val);
    put_hex_opt(o, "recipKID", h->recip_kid.val);
    put_hex_opt(o, "transactionID", h->transaction_id.val);
    put_hex_opt(o, "senderNonce", h->sender_nonce.val);
    put_hex_opt(o, "recipNonce", h->recip_nonce.val);
    put_freetext(o, "freeText", h->free_text);
    put_bool(o, "implicitConfirm", h->implicit_confirm);
    if (h->n_general_info)
        put_itavs(o, "generalInfo", h->general_info, h->n_general_info);
    put_str(o, "body", rp_cmp_body_name(m->body.type));
    put_body(o, &m->body);
    put_bool(o, "protected", m->has_protection);
    put_certs(o, "extraCerts", m->extra_certs, m->n_extra_certs);
}

/* Read a whole file; NULL (and *err set) on failure. */
static uint8_t *read_all(const char *path, size_t *len, int *err)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t n = 0;
    *err = RP_E_IO;
    if (!f)
        return NULL;
    buf = malloc(MAX_FILE + 1);
    if (!buf) {
        *err = RP_E_NOMEM;
        goto out;
    }
    n = fread(buf, 1, MAX_FILE + 1, f);
    if (ferror(f) || n > MAX_FILE) {
        *err = n > MAX_FILE ? RP_E_HTTP_BODY_TOO_LARGE : RP_E_IO;
        free(buf);
        buf = NULL;
        goto out;
    }
    *len = n;
    *err = RP_OK;
out:
    fclose(f);
    return buf;
}

static int dump(const char *path, struct rp_arena *a)
{
    struct out top = {stdout, 1};
    struct rp_cmp_msg m;
    struct rp_cmp_err where = {0};
    size_t len = 0;
    int rc;
    uint8_t *data = read_all(path, &len, &rc);
    fputc('{', stdout);
    put_str(&top, "file", path);
    if (data) {
        put_int(&top, "size", (long long)len);
        rc = rp_cmp_decode(data, len, a, &m, &where);
    }
    if (rc == RP_OK) {
        put_msg(&top, &m);
    } else {
        put_str(&top, "error", rp_err_name(rc));
        put_str(&top, "message", rp_err_msg(rc));
        if (data) {
            put_int(&top, "offset", (long long)where.offset);
            if (where.expected)
                put_str(&top, "expected", where.expected);
        }
    }
    fputs("}\n", stdout);
    free(data);
    rp_arena_reset(a);
    return rc;
}

int main(int argc, char **argv)
{
    struct rp_arena arena;
    int failed = 0;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fprintf(stderr,
                "usage: %s FILE...\n"
                "Prints each DER PKIMessage as one line of JSON; exit 1 if any file "
                "does not decode.\n",
                argv[0]);
        return argc < 2 ? 2 : 0;
    }
    if (rp_arena_new(&arena, ARENA_CAP) != RP_OK) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (dump(argv[i], &arena) != RP_OK)
            failed = 1;
    rp_arena_free(&arena);
    return failed;
}
