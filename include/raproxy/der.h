/* Strict DER reader (X.690 §10). Zero-copy: every result is a view into the input.
 *
 * What "strict" means here: definite, minimal lengths only; tag numbers >= 31 in the
 * long form with no leading 0x80 octet and only when < 31 would not do; every length
 * checked against what remains of its parent; nesting depth capped; INTEGER minimal,
 * BOOLEAN 0x00/0xFF, BIT STRING unused bits 0..7 and zero, OID sub-identifiers minimal,
 * UTCTime/GeneralizedTime in their DER forms ending in 'Z'.
 *
 * Usage: a struct rp_der is a cursor over a run of TLVs (the content of one constructed
 * element, or a whole buffer). rp_der_next() takes the next TLV; rp_der_enter() opens a
 * constructed one; rp_der_finish() checks nothing is left. On failure the functions
 * return a negative RP_E_DER_* code and, when the cursor has an error sink, record the
 * byte offset (from the start of the outermost input) and what was expected. */
#ifndef RAPROXY_DER_H
#define RAPROXY_DER_H

#include "raproxy/view.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Deepest nesting of constructed elements a cursor may enter. A PKIMessage with a
 * certificate inside needs about 12; nested messages add ~6 per level. */
#define RP_DER_MAX_DEPTH 32
/* Most elements a SEQUENCE OF / SET OF is allowed to hold (certificates, requests, ...). */
#define RP_DER_MAX_ELEMENTS 256
/* Largest tag number accepted in the long form (4 bytes of 7 bits = 28 bits). */
#define RP_DER_MAX_TAG_NUMBER ((1u << 28) - 1)

/* Identifier octet parts. */
#define RP_DER_CLASS_UNIVERSAL   0x00u
#define RP_DER_CLASS_APPLICATION 0x40u
#define RP_DER_CLASS_CONTEXT     0x80u
#define RP_DER_CLASS_PRIVATE     0xC0u
#define RP_DER_CLASS_MASK        0xC0u
#define RP_DER_CONSTRUCTED       0x20u

/* Identifier octets of the universal types we read (single-octet tags). */
#define RP_DER_BOOLEAN          0x01u
#define RP_DER_INTEGER          0x02u
#define RP_DER_BIT_STRING       0x03u
#define RP_DER_OCTET_STRING     0x04u
#define RP_DER_NULL             0x05u
#define RP_DER_OID              0x06u
#define RP_DER_ENUMERATED       0x0Au
#define RP_DER_UTF8_STRING      0x0Cu
#define RP_DER_PRINTABLE_STRING 0x13u
#define RP_DER_T61_STRING       0x14u
#define RP_DER_IA5_STRING       0x16u
#define RP_DER_UTC_TIME         0x17u
#define RP_DER_GENERALIZED_TIME 0x18u
#define RP_DER_UNIVERSAL_STRING 0x1Cu
#define RP_DER_BMP_STRING       0x1Eu
#define RP_DER_SEQUENCE         0x30u /* constructed bit included */
#define RP_DER_SET              0x31u

/* [n] context-specific identifiers (n < 31). */
#define RP_DER_CTX(n)      ((uint8_t)(RP_DER_CLASS_CONTEXT | (n)))
#define RP_DER_CTX_CONS(n) ((uint8_t)(RP_DER_CLASS_CONTEXT | RP_DER_CONSTRUCTED | (n)))

/* Where and why decoding stopped. `expected` is a static string ("INTEGER certReqId"). */
struct rp_der_err {
    int code;             /* RP_E_DER_* / RP_E_CMP_*; 0 when nothing failed */
    size_t offset;        /* byte offset into the outermost input */
    const char *expected; /* what the decoder was looking for */
};

/* One element. raw is the whole encoding (identifier..end of content), val the content. */
struct rp_der_tlv {
    uint8_t ident;       /* first identifier octet: class | constructed | number (31 = long form) */
    uint8_t cls;         /* RP_DER_CLASS_* */
    uint8_t constructed; /* 0 or 1 */
    uint32_t number;     /* tag number (also for the long form) */
    struct rp_view raw;
    struct rp_view val;
};

/* Cursor over a run of TLVs. Plain struct: copy it to look ahead. */
struct rp_der {
    const uint8_t *base; /* start of the outermost input: offsets are relative to it */
    const uint8_t *p;    /* next unread byte */
    const uint8_t *end;
    unsigned depth; /* constructed levels entered to get here */
    struct rp_der_err *err;
};

/* An AlgorithmIdentifier: raw SEQUENCE TLV, OID content, parameters' full TLV (p NULL
 * when absent). */
struct rp_der_algid {
    struct rp_view raw;
    struct rp_view oid;
    struct rp_view params;
};

/* A BIT STRING's content split: the bytes after the unused-bits octet and that count. */
struct rp_der_bits {
    struct rp_view bytes;
    unsigned unused;
};

/* Cursor over p[0..n). err may be NULL. */
void rp_der_init(struct rp_der *d, const uint8_t *p, size_t n, struct rp_der_err *err);
/* Bytes left in this cursor (0 at its end). */
static inline size_t rp_der_left(const struct rp_der *d)
{
    return (size_t)(d->end - d->p);
}
/* Read the next TLV. RP_E_DER_TRUNCATED at the end of the cursor. */
int rp_der_next(struct rp_der *d, struct rp_der_tlv *t);
/* Like rp_der_next without consuming. */
int rp_der_peek(const struct rp_der *d, struct rp_der_tlv *t);
/* Next TLV must have identifier octet `ident`, else RP_E_DER_TAG (recorded with `what`). */
int rp_der_expect(struct rp_der *d, uint8_t ident, struct rp_der_tlv *t, const char *what);
/* 1 and consumed when the next TLV has identifier `ident`; 0 when the cursor is empty or
 * the next TLV has another tag (nothing consumed); < 0 on malformed input. */
int rp_der_optional(struct rp_der *d, uint8_t ident, struct rp_der_tlv *t);
/* Open a constructed TLV read from d: child cursor over its content, one level deeper.
 * RP_E_DER_TAG if primitive, RP_E_DER_DEPTH beyond RP_DER_MAX_DEPTH. */
int rp_der_enter(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_der *child);
/* rp_der_expect + rp_der_enter in one step. */
int rp_der_expect_enter(struct rp_der *d, uint8_t ident, struct rp_der *child, struct rp_der_tlv *t,
                        const char *what);
/* RP_E_DER_TRAILING (recorded with `what`) unless the cursor is at its end. */
int rp_der_finish(const struct rp_der *d, const char *what);
/* Count the TLVs left in the cursor (framing checked, content not), failing with
 * RP_E_DER_COUNT above `max` and RP_E_DER_COUNT below `min` (SIZE (1..MAX)). */
int rp_der_count(const struct rp_der *d, size_t min, size_t max, size_t *count);
/* Record an error at `at` (a pointer into the input) and return `code`. */
int rp_der_fail(const struct rp_der *d, const uint8_t *at, int code, const char *what);
/* Byte offset of `at` from the start of the outermost input. */
static inline size_t rp_der_offset(const struct rp_der *d, const uint8_t *at)
{
    return (size_t)(at - d->base);
}

/* Exactly one TLV spanning p[0..n) (RP_E_DER_TRAILING otherwise). */
int rp_der_parse_one(const uint8_t *p, size_t n, struct rp_der_tlv *t, struct rp_der_err *err);
/* Walk a whole element recursively: framing of every constructed child (universal
 * SEQUENCE/SET and any constructed context/application tag), depth cap, no trailing
 * bytes. For opaque ANY values so nothing unchecked reaches a consumer. */
int rp_der_validate(const struct rp_der *d, const struct rp_der_tlv *t);

/* Primitive values. `d` is only used for error reporting (may have no sink). */
/* INTEGER content after the minimal-encoding check (two's complement, big endian). */
int rp_der_int(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_view *out);
/* INTEGER (or ENUMERATED, same rules) that fits int64_t; RP_E_DER_INTEGER if it doesn't. */
int rp_der_int64(const struct rp_der *d, const struct rp_der_tlv *t, int64_t *out);
/* Non-negative INTEGER content with a leading 0x00 sign byte removed (serial numbers). */
int rp_der_uint_bytes(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_view *out);
int rp_der_bool(const struct rp_der *d, const struct rp_der_tlv *t, int *out);
int rp_der_null(const struct rp_der *d, const struct rp_der_tlv *t);
int rp_der_bits(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_der_bits *out);
/* Named-bit BIT STRING (KeyUsage, PKIFailureInfo): bit i (0 = MSB of the first byte) sets
 * (1u << i). Bits beyond 31 are an error (RP_E_DER_BITSTRING). */
int rp_der_named_bits(const struct rp_der *d, const struct rp_der_tlv *t, uint32_t *out);
/* OBJECT IDENTIFIER content after the syntax check. */
int rp_der_oid(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_view *out);
/* UTCTime or GeneralizedTime (either tag) to seconds since 1970-01-01T00:00:00Z.
 * DER forms only: "YYMMDDHHMMSSZ" / "YYYYMMDDHHMMSS[.f+]Z" (fraction dropped, no
 * trailing zero). UTCTime years 50..99 are 19xx (RFC 5280 §4.1.2.5.1). */
int rp_der_time(const struct rp_der *d, const struct rp_der_tlv *t, int64_t *epoch);
/* An AlgorithmIdentifier SEQUENCE TLV already read from d. */
int rp_der_algid(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_der_algid *out);
/* Character-string check: PrintableString/IA5String/UTF8String (well-formed UTF-8) and
 * the other string types' length rules (BMPString even, UniversalString multiple of 4). */
int rp_der_string(const struct rp_der *d, const struct rp_der_tlv *t);

/* "1.2.840.10045.2.1" into buf (always NUL-terminated when cap > 0). Returns the length
 * written, or RP_E_DER_OID on malformed content or RP_E_INVAL when buf is too small. */
int rp_der_oid_str(struct rp_view oid, char *buf, size_t cap);

/* Compare an OID content view with a string literal of its content bytes, e.g.
 * rp_oid_is(alg.oid, RP_OID_EC_PUBLIC_KEY). */
#define rp_oid_is(v, lit) ((v).len == sizeof(lit) - 1 && memcmp((v).p, (lit), sizeof(lit) - 1) == 0)
#define RP_OID_VIEW(lit)  ((struct rp_view){(const uint8_t *)(lit), sizeof(lit) - 1})

/* OID contents used across the codebase (DER content bytes, no tag/length). */
#define RP_OID_EC_PUBLIC_KEY   "\x2a\x86\x48\xce\x3d\x02\x01"         /* 1.2.840.10045.2.1 */
#define RP_OID_PRIME256V1      "\x2a\x86\x48\xce\x3d\x03\x01\x07"     /* 1.2.840.10045.3.1.7 */
#define RP_OID_SECP384R1       "\x2b\x81\x04\x00\x22"                 /* 1.3.132.0.34 */
#define RP_OID_SECP521R1       "\x2b\x81\x04\x00\x23"                 /* 1.3.132.0.35 */
#define RP_OID_RSA_ENCRYPTION  "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01" /* 1.2.840.113549.1.1.1 */
#define RP_OID_RSASSA_PSS      "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0a" /* 1.2.840.113549.1.1.10 */
#define RP_OID_SHA256_WITH_RSA "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b" /* 1.2.840.113549.1.1.11 */
#define RP_OID_SHA384_WITH_RSA "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0c" /* 1.2.840.113549.1.1.12 */
#define RP_OID_SHA512_WITH_RSA "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0d" /* 1.2.840.113549.1.1.13 */
#define RP_OID_ECDSA_SHA256    "\x2a\x86\x48\xce\x3d\x04\x03\x02"     /* 1.2.840.10045.4.3.2 */
#define RP_OID_ECDSA_SHA384    "\x2a\x86\x48\xce\x3d\x04\x03\x03"     /* 1.2.840.10045.4.3.3 */
#define RP_OID_ECDSA_SHA512    "\x2a\x86\x48\xce\x3d\x04\x03\x04"     /* 1.2.840.10045.4.3.4 */
#define RP_OID_ED25519         "\x2b\x65\x70"                         /* 1.3.101.112 */
#define RP_OID_ED448           "\x2b\x65\x71"                         /* 1.3.101.113 */
#define RP_OID_SHA256          "\x60\x86\x48\x01\x65\x03\x04\x02\x01" /* 2.16.840.1.101.3.4.2.1 */
#define RP_OID_SHA384          "\x60\x86\x48\x01\x65\x03\x04\x02\x02" /* 2.16.840.1.101.3.4.2.2 */
#define RP_OID_SHA512          "\x60\x86\x48\x01\x65\x03\x04\x02\x03" /* 2.16.840.1.101.3.4.2.3 */
#define RP_OID_PBM             "\x2a\x86\x48\x86\xf6\x7d\x07\x42\x0d" /* 1.2.840.113533.7.66.13 */
#define RP_OID_PBMAC1          "\x2a\x86\x48\x86\xf7\x0d\x01\x05\x0e" /* 1.2.840.113549.1.5.14 */
#define RP_OID_PBKDF2          "\x2a\x86\x48\x86\xf7\x0d\x01\x05\x0c" /* 1.2.840.113549.1.5.12 */
#define RP_OID_HMAC_SHA1       "\x2b\x06\x01\x05\x05\x08\x01\x02"     /* 1.3.6.1.5.5.8.1.2 */
#define RP_OID_HMAC_SHA256     "\x2a\x86\x48\x86\xf7\x0d\x02\x09"     /* 1.2.840.113549.2.9 */
#define RP_OID_HMAC_SHA384     "\x2a\x86\x48\x86\xf7\x0d\x02\x0a"     /* 1.2.840.113549.2.10 */
#define RP_OID_HMAC_SHA512     "\x2a\x86\x48\x86\xf7\x0d\x02\x0b"     /* 1.2.840.113549.2.11 */
#define RP_OID_SHA1            "\x2b\x0e\x03\x02\x1a"                 /* 1.3.14.3.2.26 */
/* Name attributes (2.5.4.x) */
#define RP_OID_AT_CN     "\x55\x04\x03" /* commonName */
#define RP_OID_AT_SERIAL "\x55\x04\x05" /* serialNumber */
#define RP_OID_AT_C      "\x55\x04\x06"
#define RP_OID_AT_L      "\x55\x04\x07"
#define RP_OID_AT_ST     "\x55\x04\x08"
#define RP_OID_AT_O      "\x55\x04\x0a"
#define RP_OID_AT_OU     "\x55\x04\x0b"
/* Certificate extensions (2.5.29.x) */
#define RP_OID_CE_SKI         "\x55\x1d\x0e"
#define RP_OID_CE_KEY_USAGE   "\x55\x1d\x0f"
#define RP_OID_CE_SAN         "\x55\x1d\x11"
#define RP_OID_CE_BASIC_CONS  "\x55\x1d\x13"
#define RP_OID_CE_CRL_REASON  "\x55\x1d\x15"
#define RP_OID_CE_NAME_CONS   "\x55\x1d\x1e" /* 2.5.29.30 nameConstraints */
#define RP_OID_CE_AKI         "\x55\x1d\x23"
#define RP_OID_CE_EXT_KEY_USE "\x55\x1d\x25"
/* Extended key usages */
#define RP_OID_KP_SERVER_AUTH "\x2b\x06\x01\x05\x05\x07\x03\x01"
#define RP_OID_KP_CLIENT_AUTH "\x2b\x06\x01\x05\x05\x07\x03\x02"
#define RP_OID_KP_CMC_CA      "\x2b\x06\x01\x05\x05\x07\x03\x1b" /* 1.3.6.1.5.5.7.3.27 */
#define RP_OID_KP_CMC_RA      "\x2b\x06\x01\x05\x05\x07\x03\x1c" /* 1.3.6.1.5.5.7.3.28 */
#define RP_OID_KP_ANY         "\x55\x1d\x25\x00"                 /* 2.5.29.37.0 */
/* CMP InfoTypeAndValue types (id-it, 1.3.6.1.5.5.7.4.x) */
#define RP_OID_IT_IMPLICIT_CONFIRM   "\x2b\x06\x01\x05\x05\x07\x04\x0d" /* .13 */
#define RP_OID_IT_CONFIRM_WAIT_TIME  "\x2b\x06\x01\x05\x05\x07\x04\x0e" /* .14 */
#define RP_OID_IT_CA_CERTS           "\x2b\x06\x01\x05\x05\x07\x04\x11" /* .17 */
#define RP_OID_IT_ROOT_CA_KEY_UPDATE "\x2b\x06\x01\x05\x05\x07\x04\x12" /* .18 */
#define RP_OID_IT_CERT_REQ_TEMPLATE  "\x2b\x06\x01\x05\x05\x07\x04\x13" /* .19 */
/* CRMF registration controls (id-regCtrl, 1.3.6.1.5.5.7.5.1.x) */
#define RP_OID_REGCTRL_REG_TOKEN     "\x2b\x06\x01\x05\x05\x07\x05\x01\x01"
#define RP_OID_REGCTRL_AUTHENTICATOR "\x2b\x06\x01\x05\x05\x07\x05\x01\x02"
#define RP_OID_REGCTRL_OLD_CERT_ID   "\x2b\x06\x01\x05\x05\x07\x05\x01\x05"

#endif
