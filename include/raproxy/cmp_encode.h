/* CMP encoders (RFC 9810): the messages the RA writes itself and the re-protected requests
 * it forwards.
 *
 * Everything is built from DER pieces (views) into the caller's arena; fields the RA keeps
 * are copied byte-exact from the decoded request (struct rp_cmp_msg views), so what the
 * device's software wrote reaches the CA unchanged. No signing here: the caller encodes the
 * header and body, signs rp_cmp_enc_protected_part() with its key and passes the signature
 * to rp_cmp_enc_message().
 *
 * All functions return RP_OK or a negative RP_E_* (RP_E_ARENA when the arena is full,
 * RP_E_INVAL for arguments that cannot form a valid message). */
#ifndef RAPROXY_CMP_ENCODE_H
#define RAPROXY_CMP_ENCODE_H

#include "raproxy/arena.h"
#include "raproxy/cmp.h"
#include "raproxy/err.h"
#include "raproxy/view.h"

#include <stddef.h>
#include <stdint.h>

/* Length of the senderNonce rp_cmp_enc_response_header() expects (128 bits, RFC 9483
 * §3.1). */
#define RP_CMP_NONCE_LEN 16

/* ProtectedPart ::= SEQUENCE { header, body }: the bytes a signature or MAC covers. */
int rp_cmp_enc_protected_part(struct rp_arena *a, struct rp_view header_tlv,
                              struct rp_view body_tlv, struct rp_view *out);

/* PKIMessage { header, body, [0] protection BIT STRING (omitted when protection_sig is
 * absent), [1] extraCerts (omitted when n_extra == 0) }. extra_certs are Certificate TLVs,
 * written in the given order (the signer's certificate first). */
int rp_cmp_enc_message(struct rp_arena *a, struct rp_view header_tlv, struct rp_view body_tlv,
                       struct rp_view protection_sig, const struct rp_view *extra_certs,
                       size_t n_extra, struct rp_view *out);

/* The request's header for forwarding under the RA's protection: pvno, recipient,
 * messageTime, transactionID, senderNonce, recipNonce, freeText and generalInfo copied
 * byte-exact; sender := directoryName [4] new_sender_name (a Name SEQUENCE TLV);
 * senderKID := new_sender_kid (omitted when absent); protectionAlg := new_protection_alg (an
 * AlgorithmIdentifier SEQUENCE TLV; omitted when absent); recipKID dropped. */
int rp_cmp_enc_reprotect_header(struct rp_arena *a, const struct rp_cmp_msg *in,
                                struct rp_view new_sender_name, struct rp_view new_sender_kid,
                                struct rp_view new_protection_alg, struct rp_view *out);

/* Header of an answer from the RA (error, pkiConf, genp): pvno = the request's (2 without
 * one), sender = directoryName sender_name, recipient = the request's sender GeneralName
 * (NULL-DN directoryName without one), messageTime = now_epoch, protectionAlg / senderKID as
 * given (omitted when absent), transactionID copied, senderNonce = fresh_nonce (at least
 * RP_CMP_NONCE_LEN random bytes from the caller), recipNonce = the request's senderNonce.
 * req may be NULL (the request did not decode). */
int rp_cmp_enc_response_header(struct rp_arena *a, const struct rp_cmp_msg *req,
                               struct rp_view sender_name, struct rp_view sender_kid,
                               struct rp_view prot_alg, struct rp_view fresh_nonce,
                               int64_t now_epoch, struct rp_view *out);

/* The header of a message the RA signs on behalf of an earlier one, `in` (RFC 9483
 * §5.2.3): a queued request sent to the CA later, or the CA's answer relayed to a device's
 * pollReq. pvno, transactionID, senderNonce, freeText and generalInfo are copied
 * byte-exact from `in`; sender := directoryName new_sender_name, senderKID := new_sender_kid
 * and protectionAlg := new_protection_alg (each omitted when absent, recipKID dropped);
 * messageTime := now_epoch (the message is sent now, not when `in` was written);
 * recipient := the GeneralName TLV `recipient` when present (the device an answer goes
 * to), else `in`'s; recipNonce := recip_nonce when present (the senderNonce of the
 * request this answers), else `in`'s. */
int rp_cmp_enc_rewrap_header(struct rp_arena *a, const struct rp_cmp_msg *in,
                             struct rp_view new_sender_name, struct rp_view new_sender_kid,
                             struct rp_view new_protection_alg, int64_t now_epoch,
                             struct rp_view recipient, struct rp_view recip_nonce,
                             struct rp_view *out);

/* ip, cp or kup [type] CertRepMessage whose every CertResponse has status waiting (RFC 9483
 * §4.4: the answer comes later, through pollReq): one CertResponse per certReqId (n of
 * them, 1..RP_CMP_MAX_LIST; -1 for p10cr), statusString { freetext } when present, no
 * caPubs. */
int rp_cmp_enc_body_certrep_waiting(struct rp_arena *a, enum rp_cmp_body_type type,
                                    const int64_t *cert_req_ids, size_t n, struct rp_view freetext,
                                    struct rp_view *out);

/* pollRep [26] PollRepContent: one { certReqId, checkAfter (seconds), reason { freetext }
 * (omitted when absent) } per certReqId (n of them, 1..RP_CMP_MAX_LIST). */
int rp_cmp_enc_body_pollrep(struct rp_arena *a, const int64_t *cert_req_ids, size_t n,
                            int64_t check_after_s, struct rp_view freetext, struct rp_view *out);

/* error [23] ErrorMsgContent { PKIStatusInfo { status, statusString { freetext } (omitted
 * when absent), failInfo with the one bit `bit` (omitted for RP_FI_NONE) } }. status is a
 * PKIStatus, normally RP_CMP_STATUS_REJECTION; RP_CMP_STATUS_WAITING with RP_FI_NONE is the
 * RFC 9483 §4.4 error that starts polling for a request other than ir/cr/p10cr/kur. */
int rp_cmp_enc_body_error(struct rp_arena *a, enum rp_failinfo bit, int status,
                          struct rp_view freetext, struct rp_view *out);

/* pkiconf [19] PKIConfirmContent (NULL). */
int rp_cmp_enc_body_pkiconf(struct rp_arena *a, struct rp_view *out);

/* genp [22] GenRepContent: the InfoTypeAndValue TLVs in order (n may be 0). */
int rp_cmp_enc_body_genp(struct rp_arena *a, const struct rp_view *itavs, size_t n,
                         struct rp_view *out);

/* nested [20] PKIMessages: the PKIMessage TLVs in order (n >= 1). */
int rp_cmp_enc_body_nested(struct rp_arena *a, const struct rp_view *msgs, size_t n,
                           struct rp_view *out);

/* The ir/cr/kur body of `in` with every CertReqMsg's POP replaced by raVerified [0] NULL
 * (certReq and regInfo byte-exact): after the RA checked the POP itself, for CAs that then
 * skip it (EJBCA allowraverifypopo). RP_E_INVAL for other body types. */
int rp_cmp_enc_body_pop_raverified(struct rp_arena *a, const struct rp_cmp_msg *in,
                                   struct rp_view *out);

/* A CertTemplate the RA writes itself (RFC 4211 §5): only the fields it vouches for. Each
 * present view is written in template order: issuer [3] (a Name TLV, wrapped), validity [4]
 * (the OptionalValidity [4] TLV as decoded), subject [5] (a Name TLV, wrapped), publicKey
 * [6] (the [6] IMPLICIT SubjectPublicKeyInfo TLV as decoded), extensions [9] (Extension
 * SEQUENCE TLVs; omitted when n_extensions is 0). */
struct rp_cmp_enc_template {
    struct rp_view issuer;
    struct rp_view validity_raw;
    struct rp_view subject;
    struct rp_view public_key_raw;
    const struct rp_view *extensions;
    size_t n_extensions;
};

/* One CertReqMsg: CertRequest { certReqId, certTemplate, controls (the decoded Controls
 * SEQUENCE TLV, omitted when absent) }, then POP raVerified [0] NULL when ra_verified, no
 * POP otherwise (central key generation), no regInfo. */
struct rp_cmp_enc_certreq {
    int64_t cert_req_id;
    struct rp_cmp_enc_template tmpl;
    struct rp_view controls_raw;
    int ra_verified;
};

/* ir/cr/kur/krr/ccr [type] CertReqMessages of n (1..RP_CMP_MAX_LIST) requests. */
int rp_cmp_enc_body_certreqs(struct rp_arena *a, enum rp_cmp_body_type type,
                             const struct rp_cmp_enc_certreq *reqs, size_t n, struct rp_view *out);

#endif
