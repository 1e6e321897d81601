/* CMP PKIMessage model and decoder (RFC 9810, CRMF RFC 4211, PKCS#10 RFC 2986).
 *
 * rp_cmp_decode() checks the whole message against the ASN.1 of RFC 9810 Appendix A in
 * DER and fills a struct rp_cmp_msg of views into the input buffer: nothing is copied,
 * and the input must outlive the message. Lists (requests, certificates, ...) are
 * arrays allocated from the caller's arena.
 *
 * Naming of views in the model:
 *   *_raw / .raw   the complete encoding of a field, from its first identifier octet to
 *                  the end, including an EXPLICIT [n] wrapper when the field has one. An
 *                  encoder that keeps a field copies exactly these bytes.
 *   everything else is the decoded value: an OCTET STRING's or OID's content octets, a
 *                  Name's full SEQUENCE TLV, an ANY value's full TLV.
 * An absent OPTIONAL field has .p == NULL (test with rp_view_present()). */
#ifndef RAPROXY_CMP_H
#define RAPROXY_CMP_H

#include "raproxy/arena.h"
#include "raproxy/der.h"
#include "raproxy/view.h"

#include <stddef.h>
#include <stdint.h>

/* pvno values (RFC 9810 §5.1.1). */
#define RP_CMP_PVNO_CMP2000 2
#define RP_CMP_PVNO_CMP2021 3
/* How many PKIMessages may be nested inside each other (nested body). */
#define RP_CMP_MAX_NESTED 4
/* Upper bound on any list in a message (extraCerts, caPubs, requests, statuses, ITAVs). */
#define RP_CMP_MAX_LIST RP_DER_MAX_ELEMENTS

/* PKIBody choice numbers, RFC 9810 §5.1.2. */
enum rp_cmp_body_type {
    RP_CMP_IR = 0,
    RP_CMP_IP = 1,
    RP_CMP_CR = 2,
    RP_CMP_CP = 3,
    RP_CMP_P10CR = 4,
    RP_CMP_POPDECC = 5,
    RP_CMP_POPDECR = 6,
    RP_CMP_KUR = 7,
    RP_CMP_KUP = 8,
    RP_CMP_KRR = 9,
    RP_CMP_KRP = 10,
    RP_CMP_RR = 11,
    RP_CMP_RP = 12,
    RP_CMP_CCR = 13,
    RP_CMP_CCP = 14,
    RP_CMP_CKUANN = 15,
    RP_CMP_CANN = 16,
    RP_CMP_RANN = 17,
    RP_CMP_CRLANN = 18,
    RP_CMP_PKICONF = 19,
    RP_CMP_NESTED = 20,
    RP_CMP_GENM = 21,
    RP_CMP_GENP = 22,
    RP_CMP_ERROR = 23,
    RP_CMP_CERTCONF = 24,
    RP_CMP_POLLREQ = 25,
    RP_CMP_POLLREP = 26,
    RP_CMP_BODY_COUNT
};

/* PKIStatus values. */
enum rp_cmp_status_value {
    RP_CMP_STATUS_ACCEPTED = 0,
    RP_CMP_STATUS_GRANTED_WITH_MODS = 1,
    RP_CMP_STATUS_REJECTION = 2,
    RP_CMP_STATUS_WAITING = 3,
    RP_CMP_STATUS_REVOCATION_WARNING = 4,
    RP_CMP_STATUS_REVOCATION_NOTIFICATION = 5,
    RP_CMP_STATUS_KEY_UPDATE_WARNING = 6,
};

/* Where decoding stopped: code (RP_E_*), byte offset into the input, what was expected. */
struct rp_cmp_err {
    int code;
    size_t offset;
    const char *expected;
};

/* GeneralName (RFC 5280). */
struct rp_cmp_gname {
    struct rp_view raw;  /* the GeneralName TLV, e.g. A4 .. { Name } */
    unsigned choice;     /* 0 otherName .. 8 registeredID */
    struct rp_view name; /* directoryName [4]: the Name (SEQUENCE) TLV; else p == NULL */
};
#define RP_GNAME_DIRECTORY_NAME 4u

/* An EXPLICIT [n] OCTET STRING header field (senderKID, transactionID, nonces). */
struct rp_cmp_octets {
    struct rp_view raw; /* the [n] TLV */
    struct rp_view val; /* the OCTET STRING content */
};

/* InfoTypeAndValue / AttributeTypeAndValue. */
struct rp_cmp_itav {
    struct rp_view raw;   /* SEQUENCE TLV */
    struct rp_view type;  /* OID content */
    struct rp_view value; /* value's full TLV; p == NULL when absent (ITAV only) */
};

/* PKIStatusInfo. */
struct rp_cmp_status {
    struct rp_view raw;
    int64_t status;               /* enum rp_cmp_status_value */
    struct rp_view status_string; /* PKIFreeText SEQUENCE TLV, or absent */
    int has_fail_info;
    uint32_t fail_info; /* bit i = 1u << i, i = enum rp_failinfo */
};

struct rp_cmp_header {
    struct rp_view raw; /* the PKIHeader SEQUENCE (== msg.header_raw) */
    struct rp_view pvno_raw;
    int pvno;
    struct rp_cmp_gname sender;
    struct rp_cmp_gname recipient;
    struct rp_view message_time_raw; /* [0] TLV */
    int has_message_time;
    int64_t message_time;                /* epoch seconds */
    struct rp_view protection_alg_raw;   /* [1] TLV */
    struct rp_der_algid protection_alg;  /* the AlgorithmIdentifier inside */
    struct rp_cmp_octets sender_kid;     /* [2] */
    struct rp_cmp_octets recip_kid;      /* [3] */
    struct rp_cmp_octets transaction_id; /* [4] */
    struct rp_cmp_octets sender_nonce;   /* [5] */
    struct rp_cmp_octets recip_nonce;    /* [6] */
    struct rp_view free_text_raw;        /* [7] TLV */
    struct rp_view free_text;            /* the PKIFreeText SEQUENCE inside */
    struct rp_view general_info_raw;     /* [8] TLV */
    struct rp_cmp_itav *general_info;
    size_t n_general_info;
    int implicit_confirm;      /* generalInfo has id-it-implicitConfirm */
    int has_confirm_wait_time; /* generalInfo has id-it-confirmWaitTime */
    int64_t confirm_wait_time; /* its GeneralizedTime, epoch seconds */
};

/* CRMF CertTemplate (RFC 4211 §5; IMPLICIT tags). */
struct rp_crmf_template {
    struct rp_view raw; /* the CertTemplate SEQUENCE (or [n] IMPLICIT) TLV */
    int has_version;
    int64_t version;
    struct rp_view serial;          /* [1] INTEGER content, absent if none */
    struct rp_view signing_alg_raw; /* [2] TLV */
    struct rp_view issuer;          /* Name TLV inside [3] */
    struct rp_view validity_raw;    /* [4] TLV */
    int has_not_before, has_not_after;
    int64_t not_before, not_after;
    struct rp_view subject;        /* Name TLV inside [5] */
    struct rp_view public_key_raw; /* [6] IMPLICIT SubjectPublicKeyInfo TLV (tag A6) */
    struct rp_der_algid public_key_alg;
    struct rp_der_bits public_key_bits;
    struct rp_view issuer_uid_raw;  /* [7] */
    struct rp_view subject_uid_raw; /* [8] */
    struct rp_view extensions_raw;  /* [9] IMPLICIT Extensions TLV (tag A9) */
};

/* CertId (oldCertID control, revCerts). */
struct rp_crmf_certid {
    struct rp_view raw;
    struct rp_cmp_gname issuer;
    struct rp_view serial; /* INTEGER content */
};

enum rp_crmf_pop_type {
    RP_CRMF_POP_NONE = -1,
    RP_CRMF_POP_RA_VERIFIED = 0,
    RP_CRMF_POP_SIGNATURE = 1,
    RP_CRMF_POP_KEY_ENCIPHERMENT = 2,
    RP_CRMF_POP_KEY_AGREEMENT = 3,
};

/* ProofOfPossession. */
struct rp_crmf_pop {
    enum rp_crmf_pop_type type;
    struct rp_view raw; /* the [0..3] TLV */
    /* signature [1] POPOSigningKey */
    struct rp_view poposk_input_raw; /* [0] IMPLICIT POPOSigningKeyInput TLV, or absent */
    struct rp_der_algid alg;
    struct rp_der_bits signature;
    /* keyEncipherment / keyAgreement: POPOPrivKey CHOICE */
    int privkey_choice;         /* 0 thisMessage .. 4 encryptedKey; -1 n/a */
    struct rp_view privkey_raw; /* the chosen alternative's TLV */
    int64_t subsequent_message; /* choice 1: 0 encrCert, 1 challengeResp */
};

/* One CertReqMsg. */
struct rp_crmf_req {
    struct rp_view raw;          /* CertReqMsg SEQUENCE */
    struct rp_view cert_req_raw; /* CertRequest SEQUENCE: what a signature POP signs */
    int64_t cert_req_id;
    struct rp_crmf_template tmpl;
    struct rp_view controls_raw; /* Controls SEQUENCE, or absent */
    struct rp_cmp_itav *controls;
    size_t n_controls;
    int has_old_cert_id;
    struct rp_crmf_certid old_cert_id;
    struct rp_view reg_token;     /* regToken UTF8String content, or absent */
    struct rp_view authenticator; /* authenticator UTF8String content, or absent */
    struct rp_crmf_pop pop;
    struct rp_view reg_info_raw; /* SEQUENCE, or absent */
};

/* ir, cr, kur: CertReqMessages. */
struct rp_cmp_certreqs {
    struct rp_crmf_req *reqs;
    size_t n;
};

/* p10cr: PKCS#10 CertificationRequest. */
struct rp_cmp_p10 {
    struct rp_view raw;     /* CertificationRequest SEQUENCE */
    struct rp_view cri_raw; /* certificationRequestInfo SEQUENCE: what the signature signs */
    int64_t version;
    struct rp_view subject;  /* Name TLV */
    struct rp_view spki_raw; /* SubjectPublicKeyInfo SEQUENCE */
    struct rp_der_algid spki_alg;
    struct rp_der_bits spki_bits;
    struct rp_view attributes_raw; /* [0] IMPLICIT SET OF Attribute TLV */
    struct rp_der_algid sig_alg;
    struct rp_der_bits signature;
};

/* One CertResponse of ip/cp/kup. */
struct rp_cmp_certresp {
    struct rp_view raw;
    int64_t cert_req_id;
    struct rp_cmp_status status;
    struct rp_view certified_key_pair_raw; /* SEQUENCE, or absent */
    struct rp_view cert;                   /* certificate [0]: the Certificate TLV */
    struct rp_view encrypted_cert_raw;     /* encryptedCert [1] TLV */
    struct rp_view private_key_raw;        /* [0] TLV */
    struct rp_view publication_info_raw;   /* [1] TLV */
    struct rp_view rsp_info;               /* OCTET STRING content */
};

/* ip, cp, kup: CertRepMessage. */
struct rp_cmp_certrep {
    struct rp_view ca_pubs_raw; /* [1] TLV, or absent */
    struct rp_view *ca_pubs;    /* Certificate TLVs */
    size_t n_ca_pubs;
    struct rp_cmp_certresp *resps;
    size_t n;
};

/* certConf: CertStatus. */
struct rp_cmp_certstatus {
    struct rp_view raw;
    struct rp_view cert_hash; /* OCTET STRING content */
    int64_t cert_req_id;
    int has_status;
    struct rp_cmp_status status;
    int has_hash_alg;
    struct rp_der_algid hash_alg;
};

struct rp_cmp_certconf {
    struct rp_cmp_certstatus *items; /* may be empty (n == 0): all rejected */
    size_t n;
};

/* CRLReason (RFC 5280 §5.3.1); -1 when absent. */
#define RP_CRL_REASON_NONE (-1)

/* rr: RevDetails. */
struct rp_cmp_revdetails {
    struct rp_view raw;
    struct rp_crmf_template tmpl; /* certDetails: serial + issuer identify the cert */
    struct rp_view crl_entry_details_raw;
    int reason; /* CRLReason from crlEntryDetails, or RP_CRL_REASON_NONE */
};

struct rp_cmp_revreq {
    struct rp_cmp_revdetails *items;
    size_t n;
};

/* rp: RevRepContent. */
struct rp_cmp_revrep {
    struct rp_cmp_status *status;
    size_t n_status;
    struct rp_view rev_certs_raw; /* [0] TLV */
    struct rp_crmf_certid *rev_certs;
    size_t n_rev_certs;
    struct rp_view crls_raw; /* [1] TLV */
};

/* genm, genp. */
struct rp_cmp_genmsg {
    struct rp_cmp_itav *items;
    size_t n;
};

/* pollReq. */
struct rp_cmp_pollreq {
    int64_t *cert_req_ids;
    size_t n;
};

/* pollRep. */
struct rp_cmp_pollrep_item {
    struct rp_view raw;
    int64_t cert_req_id;
    int64_t check_after;   /* seconds */
    struct rp_view reason; /* PKIFreeText SEQUENCE TLV, or absent */
};

struct rp_cmp_pollrep {
    struct rp_cmp_pollrep_item *items;
    size_t n;
};

/* error: ErrorMsgContent. */
struct rp_cmp_errmsg {
    struct rp_cmp_status status;
    int has_error_code;
    int64_t error_code;
    struct rp_view error_details; /* PKIFreeText SEQUENCE TLV, or absent */
};

struct rp_cmp_msg;

/* nested: PKIMessages, each decoded. */
struct rp_cmp_nested {
    struct rp_cmp_msg *msgs;
    size_t n;
};

struct rp_cmp_body {
    enum rp_cmp_body_type type;
    struct rp_view raw;     /* the [type] TLV (== msg.body_raw) */
    struct rp_view content; /* the TLV inside the EXPLICIT [type] tag */
    union {
        struct rp_cmp_certreqs reqs;   /* ir, cr, kur */
        struct rp_cmp_p10 p10;         /* p10cr */
        struct rp_cmp_certrep rep;     /* ip, cp, kup */
        struct rp_cmp_certconf conf;   /* certConf */
        struct rp_cmp_revreq rr;       /* rr */
        struct rp_cmp_revrep rp;       /* rp */
        struct rp_cmp_genmsg gen;      /* genm, genp */
        struct rp_cmp_pollreq pollreq; /* pollReq */
        struct rp_cmp_pollrep pollrep; /* pollRep */
        struct rp_cmp_errmsg error;    /* error */
        struct rp_cmp_nested nested;   /* nested */
    };                                 /* pkiconf and the other types: only raw/content */
};

struct rp_cmp_msg {
    struct rp_view raw;        /* the PKIMessage SEQUENCE */
    struct rp_view header_raw; /* PKIHeader TLV; header_raw and body_raw are adjacent */
    struct rp_view body_raw;   /* PKIBody TLV */
    struct rp_cmp_header header;
    struct rp_cmp_body body;
    struct rp_view protection_raw; /* [0] TLV, or absent */
    int has_protection;
    struct rp_der_bits protection;  /* BIT STRING content: signature or MAC bytes */
    struct rp_view extra_certs_raw; /* [1] TLV, or absent */
    struct rp_view *extra_certs;    /* Certificate TLVs; rp_cert_parse() on demand */
    size_t n_extra_certs;
};

/* Decode one DER PKIMessage spanning exactly p[0..n). Returns RP_OK or a negative RP_E_*
 * (RP_E_DER_* for encoding errors, RP_E_CMP_* for structure, RP_E_ARENA when the arena is
 * full); `where` (may be NULL) gets the code, byte offset and what was expected. On
 * failure *out is left partially filled and must not be used, with one exception:
 * RP_E_CMP_VERSION (pvno not 2 or 3) is only returned after everything else decoded, so
 * *out is complete and the caller can answer with unsupportedVersion in the same
 * transaction. Never reads outside p[0..n), whatever the input. */
int rp_cmp_decode(const uint8_t *p, size_t n, struct rp_arena *a, struct rp_cmp_msg *out,
                  struct rp_cmp_err *where);

/* ProtectedPart ::= SEQUENCE { header PKIHeader, body PKIBody }: the bytes protection is
 * computed over. Allocates the (at most 6-byte) SEQUENCE header plus the copy of header
 * and body from the arena once. */
int rp_cmp_protected_part(const struct rp_cmp_msg *m, struct rp_arena *a, struct rp_view *out);

/* Turn a CertTemplate's [6] IMPLICIT SubjectPublicKeyInfo into a standard SPKI SEQUENCE
 * (one arena allocation; same content, tag 0x30). RP_E_NOT_FOUND when absent. */
int rp_crmf_template_spki(const struct rp_crmf_template *t, struct rp_arena *a,
                          struct rp_view *out);

/* POPOSigningKeyInput (RFC 4211 §4.1), parsed from rp_crmf_pop.poposk_input_raw. */
enum rp_crmf_auth { RP_CRMF_AUTH_SENDER = 0, RP_CRMF_AUTH_PUBLIC_KEY_MAC = 1 };
struct rp_crmf_poposk_input {
    enum rp_crmf_auth auth;
    struct rp_cmp_gname sender;   /* authInfo sender [0] */
    struct rp_der_algid mac_alg;  /* authInfo publicKeyMAC: PKMACValue algId … */
    struct rp_der_bits mac_value; /* … and value */
    struct rp_view public_key;    /* SubjectPublicKeyInfo SEQUENCE TLV */
};
/* RP_OK or RP_E_DER_* when it is not a POPOSigningKeyInput. */
int rp_crmf_poposk_input_parse(struct rp_view raw, struct rp_crmf_poposk_input *out);

/* "ir", "certConf", ...; "unknown" outside 0..26. */
const char *rp_cmp_body_name(enum rp_cmp_body_type t);
/* Inverse of rp_cmp_body_name (exact, case-sensitive); -1 when unknown. */
int rp_cmp_body_from_name(const char *name);

#endif
