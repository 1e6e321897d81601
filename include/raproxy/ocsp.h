/* OCSP (RFC 6960): request and response views, response verification, status-only
 * responses.
 *
 * The parsers are zero-copy like the CMP decoder: every view points into the input, which
 * must outlive the struct. rp_ocsp_verify() decides whether a response may be relayed to a
 * device: it answers the request (every CertID, the nonce when one was sent), it is within
 * its validity period, its signer is authorized (RFC 6960 §4.2.2.2: the issuing CA itself,
 * a certificate issued by that CA with EKU id-kp-OCSPSigning, or the locally configured
 * responder) and its signature verifies (raproxy/sig.h). It is thread-safe: the trust it
 * reads is immutable. */
#ifndef RAPROXY_OCSP_H
#define RAPROXY_OCSP_H

#include "raproxy/cert.h"
#include "raproxy/der.h"
#include "raproxy/view.h"

#include <stddef.h>
#include <stdint.h>

/* Most CertIDs in one request / SingleResponses in one response. Devices ask about one
 * certificate (two or three with a chain); a VA answering more is refused. */
#define RP_OCSP_MAX_CERTIDS 16
/* Most certificates in BasicOCSPResponse.certs. */
#define RP_OCSP_MAX_CERTS 8
/* Clock skew tolerated on thisUpdate / nextUpdate (seconds). */
#define RP_OCSP_SKEW_S 300
/* Longest nonce accepted (RFC 8954 says 1..32 octets; older clients send up to 64). */
#define RP_OCSP_MAX_NONCE 128

/* OCSPResponseStatus */
enum rp_ocsp_resp_status {
    RP_OCSP_SUCCESSFUL = 0,
    RP_OCSP_MALFORMED_REQUEST = 1,
    RP_OCSP_INTERNAL_ERROR = 2,
    RP_OCSP_TRY_LATER = 3,
    RP_OCSP_SIG_REQUIRED = 5,
    RP_OCSP_UNAUTHORIZED = 6,
};

/* CertStatus choice */
enum rp_ocsp_cert_status { RP_OCSP_GOOD = 0, RP_OCSP_REVOKED = 1, RP_OCSP_UNKNOWN = 2 };

/* id-pkix-ocsp-basic 1.3.6.1.5.5.7.48.1.1 and id-pkix-ocsp-nonce .48.1.2 (OID contents) */
#define RP_OID_OCSP_BASIC "\x2b\x06\x01\x05\x05\x07\x30\x01\x01"
#define RP_OID_OCSP_NONCE "\x2b\x06\x01\x05\x05\x07\x30\x01\x02"
/* id-kp-OCSPSigning 1.3.6.1.5.5.7.3.9 */
#define RP_OID_KP_OCSP_SIGNING "\x2b\x06\x01\x05\x05\x07\x03\x09"

struct rp_ocsp_certid {
    struct rp_view raw;       /* CertID SEQUENCE */
    struct rp_view hash_alg;  /* hashAlgorithm OID content */
    struct rp_view name_hash; /* issuerNameHash content */
    struct rp_view key_hash;  /* issuerKeyHash content */
    struct rp_view serial;    /* serialNumber INTEGER content */
};

struct rp_ocsp_req {
    struct rp_view raw; /* OCSPRequest SEQUENCE */
    struct rp_ocsp_certid ids[RP_OCSP_MAX_CERTIDS];
    size_t n_ids;
    struct rp_view nonce; /* extnValue content of the nonce extension, or absent */
    int is_signed;        /* optionalSignature present (relayed, not checked) */
};

struct rp_ocsp_single {
    struct rp_ocsp_certid id;
    enum rp_ocsp_cert_status status;
    int64_t revocation_time; /* when revoked */
    int64_t this_update;
    int64_t next_update; /* 0 when absent */
};

struct rp_ocsp_resp {
    struct rp_view raw; /* OCSPResponse SEQUENCE */
    enum rp_ocsp_resp_status status;
    /* The rest only for a successful response (it then always carries a basic response). */
    struct rp_view tbs;          /* ResponseData TLV: what the signature covers */
    int responder_by_key;        /* 1: ResponderID byKey, 0: byName */
    struct rp_view responder_id; /* byName: Name TLV; byKey: SHA-1 key hash */
    int64_t produced_at;
    struct rp_ocsp_single singles[RP_OCSP_MAX_CERTIDS];
    size_t n_singles;
    struct rp_view nonce; /* extnValue content of the nonce extension, or absent */
    int unknown_critical; /* a critical response or single extension we do not know */
    struct rp_der_algid sig_alg;
    struct rp_der_bits sig;
    struct rp_view certs[RP_OCSP_MAX_CERTS]; /* Certificate TLVs */
    size_t n_certs;
};

/* Parse one DER OCSPRequest spanning p[0..n). RP_OK or RP_E_DER_* / RP_E_OCSP_RESPONSE
 * (too many CertIDs, a nonce too long). err may be NULL. */
int rp_ocsp_req_parse(const uint8_t *p, size_t n, struct rp_ocsp_req *out, struct rp_der_err *err);
/* Parse one DER OCSPResponse spanning p[0..n). A non-successful status with no
 * responseBytes is fine; a successful one must carry id-pkix-ocsp-basic. RP_OK or
 * RP_E_DER_* / RP_E_OCSP_RESPONSE. */
int rp_ocsp_resp_parse(const uint8_t *p, size_t n, struct rp_ocsp_resp *out,
                       struct rp_der_err *err);

/* Who may sign responses: the issuing CAs (trust_anchors) and/or one pinned responder. */
struct rp_ocsp_trust;

/* Load PEM files: responder_cert (may be NULL) and CA files (each may hold several
 * certificates). At least one certificate in all. RP_OK, RP_E_KEY_LOAD (the file is
 * logged), RP_E_NOMEM. The result is reference counted (starts at 1) and immutable. */
int rp_ocsp_trust_load(struct rp_ocsp_trust **out, const char *responder_cert,
                       char *const *ca_files, unsigned n_ca_files);
/* Same from DER certificates in memory (tests). cas may be NULL when n_cas is 0. */
int rp_ocsp_trust_new(struct rp_ocsp_trust **out, struct rp_view responder_cert,
                      const struct rp_view *cas, size_t n_cas);
struct rp_ocsp_trust *rp_ocsp_trust_ref(struct rp_ocsp_trust *t);
/* Thread-safe; NULL is a no-op. */
void rp_ocsp_trust_unref(struct rp_ocsp_trust *t);

/* Whether `resp` (status successful) is a genuine answer to `req` at time `now` (epoch s).
 * On RP_OK *expires is the earliest nextUpdate of the SingleResponses answering the
 * request (0 when one of them has none: then it must not be cached). Errors:
 * RP_E_OCSP_MISMATCH (CertIDs or nonce), RP_E_OCSP_STALE (thisUpdate in the future,
 * nextUpdate past), RP_E_OCSP_SIGNER (no authorized signer), RP_E_OCSP_SIGNATURE,
 * RP_E_BAD_ALG (signature algorithm or key not supported), RP_E_OCSP_RESPONSE (not
 * successful, unknown critical extension). */
int rp_ocsp_verify(const struct rp_ocsp_trust *t, const struct rp_ocsp_req *req,
                   const struct rp_ocsp_resp *resp, int64_t now, int64_t *expires);

/* The status-only OCSPResponse (responseStatus, no responseBytes): 30 03 0A 01 <s>. */
#define RP_OCSP_STATUS_RESPONSE_LEN 5
void rp_ocsp_status_response(enum rp_ocsp_resp_status s, uint8_t out[RP_OCSP_STATUS_RESPONSE_LEN]);

/* Base64 (RFC 4648 §4, or the URL-safe §5 alphabet), padding optional, no whitespace.
 * RP_OK with *outlen, RP_E_INVAL on a bad character or when out is too small. */
int rp_ocsp_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen);

#endif
