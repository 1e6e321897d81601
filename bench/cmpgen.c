/* The CMP and X.509 encoders of the load-test tools (see bench.h): what a device writes
 * (ir with a signature POP, certConf), what a CA writes (ip, a certificate). Built on
 * raproxy/derw.h; candidates for src/cmp. */
#include "bench.h"

#include <wolfssl/wolfcrypt/sha256.h>

#include "raproxy/cmp_encode.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"

#include <string.h>
#include <time.h>

/* Room for a writer: the inputs plus this many bytes of headers and fixed fields. */
#define ENC_SLACK 256u
/* PKIHeader tags (RFC 9810 §5.1.1, EXPLICIT). */
#define HDR_MESSAGE_TIME   0
#define HDR_PROTECTION_ALG 1
#define HDR_SENDER_KID     2
#define HDR_TXID           4
#define HDR_SENDER_NONCE   5
#define HDR_RECIP_NONCE    6
/* CertTemplate fields (RFC 4211 §5). */
#define TMPL_SUBJECT    5
#define TMPL_PUBLIC_KEY 6
/* ProofOfPossession signature [1], CertOrEncCert certificate [0], Certificate extensions [3]. */
#define POP_SIGNATURE    1
#define CERT_CERTIFICATE 0
#define TBS_VERSION      0
#define TBS_EXTENSIONS   3
#define X509_V3          2
/* UTCTime holds years 1950..2049 (RFC 5280 §4.1.2.5). */
#define UTCTIME_LAST_YEAR 2049
#define SECONDS_PER_DAY   86400
#define BACKDATE_S        3600
#define SKI_LEN           20

static const uint8_t alg_ecdsa_sha256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                           0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

struct rp_view bench_alg_ecdsa_sha256(void)
{
    return rp_view_make(alg_ecdsa_sha256, sizeof alg_ecdsa_sha256);
}

int bench_enc_name(struct rp_arena *a, const struct bench_rdn *rdn, size_t n, struct rp_view *out)
{
    struct rp_derw w;
    size_t payload = 0;
    for (size_t i = 0; i < n; i++)
        payload += rdn[i].oid_len + strlen(rdn[i].value) + 4 * RP_DERW_MAX_HEADER;
    rp_derw_init(&w, a, payload + ENC_SLACK);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    for (size_t i = 0; i < n; i++) {
        struct rp_view oid = rp_view_make(rdn[i].oid, rdn[i].oid_len);
        /* countryName and serialNumber are PrintableString (RFC 5280 Appendix A) */
        uint8_t type = rp_oid_is(oid, RP_OID_AT_C) || rp_oid_is(oid, RP_OID_AT_SERIAL)
                           ? RP_DER_PRINTABLE_STRING
                           : RP_DER_UTF8_STRING;
        rp_derw_begin(&w, RP_DER_SET);
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_oid(&w, oid);
        rp_derw_prim(&w, type, rp_view_str(rdn[i].value));
        rp_derw_end(&w);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

static void enc_time(struct rp_derw *w, int64_t epoch)
{
    struct tm tm;
    char s[16];
    time_t t = (time_t)epoch;
    gmtime_r(&t, &tm);
    if (tm.tm_year + 1900 > UTCTIME_LAST_YEAR) {
        rp_derw_gentime(w, epoch);
        return;
    }
    size_t n = strftime(s, sizeof s, "%y%m%d%H%M%SZ", &tm);
    rp_derw_prim(w, RP_DER_UTC_TIME, rp_view_make(s, n));
}

/* extnID, critical, extnValue OCTET STRING wrapping `value` (a complete TLV). */
static void enc_extension(struct rp_derw *w, struct rp_view oid, int critical, struct rp_view value)
{
    rp_derw_begin(w, RP_DER_SEQUENCE);
    rp_derw_oid(w, oid);
    if (critical)
        rp_derw_bool(w, 1);
    rp_derw_octets(w, value);
    rp_derw_end(w);
}

static void enc_extensions(struct rp_derw *w, struct rp_view spki, struct rp_view issuer_ski)
{
    static const uint8_t not_ca[] = {RP_DER_SEQUENCE, 0};
    /* BIT STRING digitalSignature: 1 octet, 7 unused bits, 0x80 */
    static const uint8_t ku_digital_signature[] = {RP_DER_BIT_STRING, 2, 7, 0x80};
    uint8_t ski[2 + WC_SHA256_DIGEST_SIZE], aki[4 + WC_SHA256_DIGEST_SIZE];
    uint8_t hash[WC_SHA256_DIGEST_SIZE];
    wc_Sha256Hash(spki.p, (word32)spki.len, hash);
    ski[0] = RP_DER_OCTET_STRING;
    ski[1] = SKI_LEN;
    memcpy(ski + 2, hash, SKI_LEN);
    rp_derw_begin(w, RP_DER_CTX_CONS(TBS_EXTENSIONS));
    rp_derw_begin(w, RP_DER_SEQUENCE);
    enc_extension(w, RP_OID_VIEW(RP_OID_CE_BASIC_CONS), 1, rp_view_make(not_ca, sizeof not_ca));
    enc_extension(w, RP_OID_VIEW(RP_OID_CE_KEY_USAGE), 1,
                  rp_view_make(ku_digital_signature, sizeof ku_digital_signature));
    enc_extension(w, RP_OID_VIEW(RP_OID_CE_SKI), 0, rp_view_make(ski, 2 + SKI_LEN));
    if (rp_view_present(issuer_ski) && issuer_ski.len <= WC_SHA256_DIGEST_SIZE) {
        /* AuthorityKeyIdentifier { keyIdentifier [0] IMPLICIT OCTET STRING } */
        aki[0] = RP_DER_SEQUENCE;
        aki[1] = (uint8_t)(issuer_ski.len + 2);
        aki[2] = RP_DER_CTX(0);
        aki[3] = (uint8_t)issuer_ski.len;
        memcpy(aki + 4, issuer_ski.p, issuer_ski.len);
        enc_extension(w, RP_OID_VIEW(RP_OID_CE_AKI), 0, rp_view_make(aki, 4 + issuer_ski.len));
    }
    rp_derw_end(w);
    rp_derw_end(w);
}

int bench_enc_cert(struct rp_arena *a, WC_RNG *rng, const struct bench_issuer *ca,
                   struct rp_view serial, struct rp_view subject, struct rp_view spki, int days,
                   struct rp_view *out)
{
    struct rp_derw w;
    struct rp_view tbs;
    uint8_t sig[BENCH_SIG_MAX];
    size_t sig_len = 0;
    int64_t now = (int64_t)time(NULL);
    size_t payload = serial.len + ca->subject.len + subject.len + spki.len + ca->ski.len;
    rp_derw_init(&w, a, payload + 2 * ENC_SLACK);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_CTX_CONS(TBS_VERSION));
    rp_derw_int64(&w, RP_DER_INTEGER, X509_V3);
    rp_derw_end(&w);
    rp_derw_uint_bytes(&w, serial);
    rp_derw_raw(&w, bench_alg_ecdsa_sha256());
    rp_derw_raw(&w, ca->subject);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    enc_time(&w, now - BACKDATE_S);
    enc_time(&w, now + (int64_t)days * SECONDS_PER_DAY);
    rp_derw_end(&w);
    rp_derw_raw(&w, subject);
    rp_derw_raw(&w, spki);
    enc_extensions(&w, spki, ca->ski);
    rp_derw_end(&w);
    int rc = rp_derw_finish(&w, &tbs);
    if (rc == RP_OK)
        rc = bench_sign(ca->key, rng, tbs, sig, &sig_len);
    if (rc != RP_OK)
        return rc;
    rp_derw_init(&w, a, tbs.len + sig_len + ENC_SLACK);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_raw(&w, tbs);
    rp_derw_raw(&w, bench_alg_ecdsa_sha256());
    rp_derw_bits(&w, rp_view_make(sig, sig_len), 0);
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

static void octets_field(struct rp_derw *w, unsigned tag, struct rp_view v)
{
    rp_derw_begin(w, RP_DER_CTX_CONS(tag));
    rp_derw_octets(w, v);
    rp_derw_end(w);
}

int bench_cmp_enc_req_header(struct rp_arena *a, const struct bench_req_hdr *h, struct rp_view *out)
{
    static const uint8_t null_dn[] = {RP_DER_SEQUENCE, 0};
    struct rp_view recipient =
        rp_view_present(h->recipient) ? h->recipient : rp_view_make(null_dn, sizeof null_dn);
    struct rp_derw w;
    size_t payload = h->sender.len + recipient.len + h->sender_kid.len + h->txid.len +
                     h->nonce.len + h->recip_nonce.len;
    rp_derw_init(&w, a, payload + ENC_SLACK);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, RP_CMP_PVNO_CMP2000);
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_GNAME_DIRECTORY_NAME));
    rp_derw_raw(&w, h->sender);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_GNAME_DIRECTORY_NAME));
    rp_derw_raw(&w, recipient);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(HDR_MESSAGE_TIME));
    rp_derw_gentime(&w, h->now);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(HDR_PROTECTION_ALG));
    rp_derw_raw(&w, bench_alg_ecdsa_sha256());
    rp_derw_end(&w);
    if (rp_view_present(h->sender_kid))
        octets_field(&w, HDR_SENDER_KID, h->sender_kid);
    octets_field(&w, HDR_TXID, h->txid);
    octets_field(&w, HDR_SENDER_NONCE, h->nonce);
    if (rp_view_present(h->recip_nonce))
        octets_field(&w, HDR_RECIP_NONCE, h->recip_nonce);
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

/* The content of a TLV (an SPKI SEQUENCE's, to re-tag it [6] IMPLICIT). */
static int tlv_content(struct rp_view tlv, struct rp_view *out)
{
    struct rp_der_tlv t;
    int rc = rp_der_parse_one(tlv.p, tlv.len, &t, NULL);
    if (rc == RP_OK)
        *out = t.val;
    return rc;
}

int bench_cmp_enc_body_ir(struct rp_arena *a, WC_RNG *rng, struct bench_key *newkey,
                          struct rp_view subject, struct rp_view *out)
{
    struct rp_derw w;
    struct rp_view spki = rp_view_make(newkey->spki, newkey->spki_len), spki_content, cert_req;
    uint8_t sig[BENCH_SIG_MAX];
    size_t sig_len = 0;
    int rc = tlv_content(spki, &spki_content);
    if (rc != RP_OK)
        return rc;
    /* CertRequest { certReqId 0, CertTemplate { subject [5], publicKey [6] } } */
    rp_derw_init(&w, a, subject.len + spki.len + ENC_SLACK);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, 0);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_CTX_CONS(TMPL_SUBJECT));
    rp_derw_raw(&w, subject);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(TMPL_PUBLIC_KEY));
    rp_derw_raw(&w, spki_content);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    if ((rc = rp_derw_finish(&w, &cert_req)) != RP_OK)
        return rc;
    /* POPOSigningKey without poposkInput: the signature covers the CertRequest DER */
    if ((rc = bench_sign(newkey, rng, cert_req, sig, &sig_len)) != RP_OK)
        return rc;
    rp_derw_init(&w, a, cert_req.len + sig_len + ENC_SLACK);
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_CMP_IR));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_raw(&w, cert_req);
    rp_derw_begin(&w, RP_DER_CTX_CONS(POP_SIGNATURE));
    rp_derw_raw(&w, bench_alg_ecdsa_sha256());
    rp_derw_bits(&w, rp_view_make(sig, sig_len), 0);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

int bench_cmp_enc_body_certconf(struct rp_arena *a, struct rp_view cert, struct rp_view *out)
{
    struct rp_derw w;
    uint8_t hash[WC_SHA256_DIGEST_SIZE];
    if (wc_Sha256Hash(cert.p, (word32)cert.len, hash) != 0)
        return RP_E_CRYPTO;
    rp_derw_init(&w, a, sizeof hash + ENC_SLACK);
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_CMP_CERTCONF));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_octets(&w, rp_view_make(hash, sizeof hash));
    rp_derw_int64(&w, RP_DER_INTEGER, 0);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

int bench_cmp_enc_body_pollreq(struct rp_arena *a, int64_t cert_req_id, struct rp_view *out)
{
    struct rp_derw w;
    rp_derw_init(&w, a, ENC_SLACK);
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_CMP_POLLREQ));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, cert_req_id);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

int bench_cmp_enc_body_ip(struct rp_arena *a, int64_t cert_req_id, struct rp_view cert,
                          struct rp_view *out)
{
    struct rp_derw w;
    rp_derw_init(&w, a, cert.len + ENC_SLACK);
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_CMP_IP));
    rp_derw_begin(&w, RP_DER_SEQUENCE); /* CertRepMessage */
    rp_derw_begin(&w, RP_DER_SEQUENCE); /* response */
    rp_derw_begin(&w, RP_DER_SEQUENCE); /* CertResponse */
    rp_derw_int64(&w, RP_DER_INTEGER, cert_req_id);
    rp_derw_begin(&w, RP_DER_SEQUENCE); /* PKIStatusInfo */
    rp_derw_int64(&w, RP_DER_INTEGER, RP_CMP_STATUS_ACCEPTED);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_SEQUENCE); /* CertifiedKeyPair */
    rp_derw_begin(&w, RP_DER_CTX_CONS(CERT_CERTIFICATE));
    rp_derw_raw(&w, cert);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

int bench_cmp_sign_message(struct rp_arena *a, WC_RNG *rng, struct bench_key *key,
                           struct rp_view header, struct rp_view body, const struct rp_view *extra,
                           size_t n_extra, struct rp_view *out)
{
    struct rp_view part;
    uint8_t sig[BENCH_SIG_MAX];
    size_t sig_len = 0;
    int rc = rp_cmp_enc_protected_part(a, header, body, &part);
    if (rc == RP_OK)
        rc = bench_sign(key, rng, part, sig, &sig_len);
    if (rc == RP_OK)
        rc = rp_cmp_enc_message(a, header, body, rp_view_make(sig, sig_len), extra, n_extra, out);
    return rc;
}
