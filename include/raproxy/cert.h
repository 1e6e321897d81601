/* X.509 certificate view (RFC 5280) and Name helpers.
 *
 * rp_cert_parse() checks the DER structure of a Certificate and fills views into the
 * input; it verifies nothing (signatures and paths are wolfSSL's job). */
#ifndef RAPROXY_CERT_H
#define RAPROXY_CERT_H

#include "raproxy/arena.h"
#include "raproxy/der.h"
#include "raproxy/view.h"

#include <stddef.h>
#include <stdint.h>

/* Most extKeyUsage purposes kept; more is an error (RP_E_DER_COUNT). */
#define RP_CERT_MAX_EKU 16
/* Most extensions in one certificate. */
#define RP_CERT_MAX_EXTENSIONS 64

/* KeyUsage bits (RFC 5280 §4.2.1.3), as rp_der_named_bits() returns them. */
#define RP_KU_DIGITAL_SIGNATURE (1u << 0)
#define RP_KU_NON_REPUDIATION   (1u << 1)
#define RP_KU_KEY_ENCIPHERMENT  (1u << 2)
#define RP_KU_DATA_ENCIPHERMENT (1u << 3)
#define RP_KU_KEY_AGREEMENT     (1u << 4)
#define RP_KU_KEY_CERT_SIGN     (1u << 5)
#define RP_KU_CRL_SIGN          (1u << 6)
#define RP_KU_ENCIPHER_ONLY     (1u << 7)
#define RP_KU_DECIPHER_ONLY     (1u << 8)

struct rp_cert {
    struct rp_view raw;          /* Certificate SEQUENCE */
    struct rp_view tbs;          /* TBSCertificate SEQUENCE: what the signature signs */
    int version;                 /* 1, 2 or 3 */
    struct rp_view serial;       /* INTEGER content (as encoded, sign byte included) */
    struct rp_der_algid sig_alg; /* outer signatureAlgorithm */
    struct rp_der_bits sig;
    struct rp_view issuer; /* Name TLVs */
    struct rp_view subject;
    struct rp_view subject_serial; /* serialNumber (2.5.4.5) value content, or absent */
    struct rp_view subject_cn;     /* commonName value content, or absent */
    int64_t not_before, not_after; /* epoch seconds */
    struct rp_view spki;           /* SubjectPublicKeyInfo SEQUENCE */
    struct rp_der_algid spki_alg;
    struct rp_view spki_curve; /* namedCurve OID content when id-ecPublicKey, else absent */
    struct rp_der_bits spki_key;
    struct rp_view extensions_raw; /* [3] TLV, or absent */
    struct rp_view ski;            /* subjectKeyIdentifier content, or absent */
    struct rp_view aki_key_id;     /* authorityKeyIdentifier keyIdentifier, or absent */
    int has_basic_constraints;
    int ca;
    int path_len; /* -1 when absent */
    int has_key_usage;
    uint32_t key_usage; /* RP_KU_* */
    int has_eku;
    struct rp_view eku[RP_CERT_MAX_EKU]; /* OID contents */
    size_t n_eku;
    int unknown_critical; /* a critical extension this parser does not understand */
    /* nameConstraints present (framing checked): wolfSSL applies them when it verifies a
     * certificate this CA issued */
    int has_name_constraints;
};

/* Parse one DER Certificate spanning exactly p[0..n). RP_OK, RP_E_DER_* or RP_E_CMP_CERT.
 * `err` (may be NULL) gets the offset into p[0..n) and what was expected. */
int rp_cert_parse(const uint8_t *p, size_t n, struct rp_cert *out);
int rp_cert_parse_err(const uint8_t *p, size_t n, struct rp_cert *out, struct rp_der_err *err);
/* Every certificate of a file, in order: the CERTIFICATE blocks of PEM text (text around
 * them is skipped), or the whole file when it is one DER certificate. Each must parse
 * (rp_cert_parse). ders[i] point into der; free both with rp_cert_file_free.
 * RP_E_IO: unreadable or over max_bytes; RP_E_KEY_LOAD: no certificate, a block without
 * its end or not base64, a certificate that does not parse, more than max_certs;
 * RP_E_NOMEM. */
struct rp_cert_file {
    uint8_t *der;
    struct rp_view *ders;
    size_t n;
};
int rp_cert_file_load(const char *path, size_t max_bytes, size_t max_certs,
                      struct rp_cert_file *out);
void rp_cert_file_free(struct rp_cert_file *f);

/* 1 if the extKeyUsage extension lists this purpose (OID content literal view). */
int rp_cert_has_eku(const struct rp_cert *c, struct rp_view oid);

/* Check a Name TLV (SEQUENCE OF SET OF AttributeTypeAndValue) structurally. */
int rp_name_check(struct rp_view name);
/* One-line rendering for logs, attributes in encoded order: "C=DE, O=Vendor, CN=Device 1,
 * serialNumber=SN0001". Unknown attribute types print as dotted OIDs; non-printable bytes
 * and ',' '\\' '"' are escaped as \xx. Truncates (with NUL) when cap is short. Returns the
 * full length it wanted (like snprintf) or a negative RP_E_* for a malformed Name. */
int rp_name_to_string(struct rp_view name, char *buf, size_t cap);
/* Names compared byte for byte (their DER). RFC 5280 §7.1 allows a smarter match
 * (case folding of PrintableString etc.); we use binary equality because the issuer in a
 * certificate is copied from its CA's subject, and the CMP fields we compare are copied
 * from certificates. Returns 1 when equal. */
int rp_name_eq(struct rp_view a, struct rp_view b);
/* First attribute of type `oid` (OID content) in the Name: its value content in *value.
 * 1 found, 0 not found, < 0 malformed. */
int rp_name_find(struct rp_view name, struct rp_view oid, struct rp_view *value);

/* One attribute of a Name, in encoded order. */
struct rp_name_attr {
    struct rp_view type;  /* OID content */
    uint8_t tag;          /* the value's string type (RP_DER_UTF8_STRING, …) */
    struct rp_view value; /* the string's content octets */
    int multi;            /* a further member of a multi-valued RDN */
};
/* Every attribute of a Name TLV into out[cap], in encoded order. RP_OK, RP_E_DER_* for a
 * malformed Name, RP_E_DER_COUNT when it holds more than cap. */
int rp_name_attrs(struct rp_view name, struct rp_name_attr *out, size_t cap, size_t *n);
/* "CN", "serialNumber", "C", "O", "OU", "L", "ST", "SN", "GN", "title", "dnQualifier",
 * "emailAddress", "DC", "UID": the attribute's OID and the string type X.520 gives it
 * (PrintableString for C, serialNumber and dnQualifier, IA5String for emailAddress and DC,
 * UTF8String otherwise). RP_E_NOT_FOUND for other labels. */
int rp_name_attr_oid(const char *label, struct rp_view *oid, uint8_t *tag);
/* The label of an attribute type, or NULL. */
const char *rp_name_attr_label(struct rp_view oid);
/* 1 when v is a non-empty value of string type tag (PrintableString alphabet, IA5 ASCII, no
 * NUL). */
int rp_name_value_ok(uint8_t tag, struct rp_view v);
/* A Name with one attribute per RDN, in the given order (`multi` is ignored). RP_E_INVAL
 * for a value its string type cannot hold, RP_E_ARENA. */
int rp_name_encode(struct rp_arena *a, const struct rp_name_attr *attrs, size_t n,
                   struct rp_view *out);

#endif
