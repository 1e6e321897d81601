/* One table of every error raproxy can report: its name, message, HTTP status and the
 * CMP PKIFailureInfo bit (RFC 9810 §5.2.3) a device sees. Logs, metrics and CMP error
 * messages all read from here so that an error has one spelling.
 *
 * Errors are negative ints: RP_E_<NAME> == -(row index + 1). 0 is success. */
#ifndef RAPROXY_ERR_H
#define RAPROXY_ERR_H

/* PKIFailureInfo bit numbers, RFC 9810 §5.2.3. */
enum rp_failinfo {
    RP_FI_NONE = -1,
    RP_FI_BAD_ALG = 0,
    RP_FI_BAD_MESSAGE_CHECK = 1,
    RP_FI_BAD_REQUEST = 2,
    RP_FI_BAD_TIME = 3,
    RP_FI_BAD_CERT_ID = 4,
    RP_FI_BAD_DATA_FORMAT = 5,
    RP_FI_WRONG_AUTHORITY = 6,
    RP_FI_INCORRECT_DATA = 7,
    RP_FI_MISSING_TIME_STAMP = 8,
    RP_FI_BAD_POP = 9,
    RP_FI_CERT_REVOKED = 10,
    RP_FI_CERT_CONFIRMED = 11,
    RP_FI_WRONG_INTEGRITY = 12,
    RP_FI_BAD_RECIPIENT_NONCE = 13,
    RP_FI_TIME_NOT_AVAILABLE = 14,
    RP_FI_UNACCEPTED_POLICY = 15,
    RP_FI_UNACCEPTED_EXTENSION = 16,
    RP_FI_ADD_INFO_NOT_AVAILABLE = 17,
    RP_FI_BAD_SENDER_NONCE = 18,
    RP_FI_BAD_CERT_TEMPLATE = 19,
    RP_FI_SIGNER_NOT_TRUSTED = 20,
    RP_FI_TRANSACTION_ID_IN_USE = 21,
    RP_FI_UNSUPPORTED_VERSION = 22,
    RP_FI_NOT_AUTHORIZED = 23,
    RP_FI_SYSTEM_UNAVAIL = 24,
    RP_FI_SYSTEM_FAILURE = 25,
    RP_FI_DUPLICATE_CERT_REQ = 26,
};

/* X(NAME, "message", http_status, failinfo)
 * Append new rows inside the section they belong to; the order carries no meaning
 * beyond the numeric value, which is never persisted. */
#define RP_ERRORS(X)                                                                               \
    /* generic */                                                                                  \
    X(NOMEM, "out of memory", 500, RP_FI_SYSTEM_FAILURE)                                           \
    X(INVAL, "invalid argument", 500, RP_FI_SYSTEM_FAILURE)                                        \
    X(AGAIN, "operation would block", 500, RP_FI_SYSTEM_FAILURE)                                   \
    X(IO, "I/O error", 500, RP_FI_SYSTEM_FAILURE)                                                  \
    X(ARENA, "exchange memory cap reached", 413, RP_FI_BAD_REQUEST)                                \
    X(INTERNAL, "internal error", 500, RP_FI_SYSTEM_FAILURE)                                       \
    X(CONFIG, "configuration error", 500, RP_FI_SYSTEM_FAILURE)                                    \
    X(NOT_FOUND, "not found", 404, RP_FI_BAD_REQUEST)                                              \
    X(SHUTDOWN, "shutting down", 503, RP_FI_SYSTEM_UNAVAIL)                                        \
    X(KEY_UNAVAILABLE, "private key unavailable: its PKCS#11 token is down", 503,                  \
      RP_FI_SYSTEM_UNAVAIL)                                                                        \
    X(KEY_TOKEN, "the PKCS#11 token failed the private-key operation", 503, RP_FI_SYSTEM_UNAVAIL)  \
    /* DER reader */                                                                               \
    X(DER_TRUNCATED, "DER: length beyond end of input", 400, RP_FI_BAD_DATA_FORMAT)                \
    X(DER_INDEFINITE, "DER: indefinite length", 400, RP_FI_BAD_DATA_FORMAT)                        \
    X(DER_NONMINIMAL, "DER: non-minimal length or tag encoding", 400, RP_FI_BAD_DATA_FORMAT)       \
    X(DER_TAG, "DER: unexpected tag", 400, RP_FI_BAD_DATA_FORMAT)                                  \
    X(DER_TRAILING, "DER: trailing bytes", 400, RP_FI_BAD_DATA_FORMAT)                             \
    X(DER_DEPTH, "DER: nesting too deep", 400, RP_FI_BAD_DATA_FORMAT)                              \
    X(DER_COUNT, "DER: too many elements", 400, RP_FI_BAD_DATA_FORMAT)                             \
    X(DER_INTEGER, "DER: malformed INTEGER", 400, RP_FI_BAD_DATA_FORMAT)                           \
    X(DER_BOOLEAN, "DER: malformed BOOLEAN", 400, RP_FI_BAD_DATA_FORMAT)                           \
    X(DER_BITSTRING, "DER: malformed BIT STRING", 400, RP_FI_BAD_DATA_FORMAT)                      \
    X(DER_OID, "DER: malformed OBJECT IDENTIFIER", 400, RP_FI_BAD_DATA_FORMAT)                     \
    X(DER_TIME, "DER: malformed time", 400, RP_FI_BAD_DATA_FORMAT)                                 \
    X(DER_STRING, "DER: malformed string", 400, RP_FI_BAD_DATA_FORMAT)                             \
    X(DER_ENCODE, "DER: encoder output does not fit", 500, RP_FI_SYSTEM_FAILURE)                   \
    /* CMP message structure */                                                                    \
    X(CMP_VERSION, "CMP: unsupported pvno", 200, RP_FI_UNSUPPORTED_VERSION)                        \
    X(CMP_BODY, "CMP: unknown or malformed body", 200, RP_FI_BAD_DATA_FORMAT)                      \
    X(CMP_HEADER, "CMP: malformed header", 200, RP_FI_BAD_DATA_FORMAT)                             \
    X(CMP_CERT, "CMP: malformed certificate", 200, RP_FI_BAD_DATA_FORMAT)                          \
    X(CMP_UNSUPPORTED, "CMP: unsupported feature", 200, RP_FI_BAD_REQUEST)                         \
    /* HTTP front end */                                                                           \
    X(HTTP_PARSE, "HTTP: malformed request", 400, RP_FI_NONE)                                      \
    X(HTTP_METHOD, "HTTP: method not allowed", 405, RP_FI_NONE)                                    \
    X(HTTP_CTYPE, "HTTP: unsupported content type", 415, RP_FI_NONE)                               \
    X(HTTP_PATH, "HTTP: no such path", 404, RP_FI_NONE)                                            \
    X(HTTP_BODY_TOO_LARGE, "HTTP: body too large", 413, RP_FI_NONE)                                \
    X(HTTP_HEADER_TOO_LARGE, "HTTP: header too large", 431, RP_FI_NONE)                            \
    X(HTTP_LENGTH_REQUIRED, "HTTP: length required", 411, RP_FI_NONE)                              \
    X(HTTP_TIMEOUT, "HTTP: request timeout", 408, RP_FI_NONE)                                      \
    X(HTTP_OVERLOADED, "HTTP: too many requests", 429, RP_FI_SYSTEM_UNAVAIL)                       \
    /* TLS */                                                                                      \
    X(TLS_HANDSHAKE, "TLS: handshake failed", 400, RP_FI_NONE)                                     \
    X(TLS_PROTOCOL, "TLS: protocol error", 400, RP_FI_NONE)                                        \
    X(TLS_CLOSED, "TLS: peer closed", 400, RP_FI_NONE)                                             \
    X(TLS_SETUP, "TLS: context setup failed", 500, RP_FI_SYSTEM_FAILURE)                           \
    /* upstream CA */                                                                              \
    X(UPSTREAM_CONNECT, "upstream: connection failed", 502, RP_FI_SYSTEM_UNAVAIL)                  \
    X(UPSTREAM_TIMEOUT, "upstream: timed out", 504, RP_FI_SYSTEM_UNAVAIL)                          \
    X(UPSTREAM_STATUS, "upstream: non-200 answer", 502, RP_FI_SYSTEM_UNAVAIL)                      \
    X(UPSTREAM_PROTOCOL, "upstream: malformed answer", 502, RP_FI_SYSTEM_UNAVAIL)                  \
    X(UPSTREAM_QUEUE_FULL, "upstream: queue full", 503, RP_FI_SYSTEM_UNAVAIL)                      \
    X(UPSTREAM_CLOSED, "upstream: connection closed", 502, RP_FI_SYSTEM_UNAVAIL)                   \
    X(UPSTREAM_MISMATCH, "upstream: answer does not match the request", 502, RP_FI_SYSTEM_UNAVAIL) \
    /* RA decisions (CMP error messages to the device) */                                          \
    X(BAD_SENDER_NONCE, "senderNonce missing, short or replayed", 200, RP_FI_BAD_SENDER_NONCE)     \
    X(BAD_RECIP_NONCE, "recipNonce does not match", 200, RP_FI_BAD_RECIPIENT_NONCE)                \
    X(BAD_TIME, "messageTime outside the allowed window", 200, RP_FI_BAD_TIME)                     \
    X(BAD_REQUEST, "request not acceptable", 200, RP_FI_BAD_REQUEST)                               \
    X(NOT_AUTHORIZED, "not authorized", 200, RP_FI_NOT_AUTHORIZED)                                 \
    X(WRONG_INTEGRITY, "protection missing or of a kind not allowed", 200, RP_FI_WRONG_INTEGRITY)  \
    X(BAD_ALG, "algorithm not allowed", 200, RP_FI_BAD_ALG)                                        \
    X(BAD_MESSAGE_CHECK, "protection does not verify", 200, RP_FI_BAD_MESSAGE_CHECK)               \
    X(SIGNER_NOT_TRUSTED, "signer certificate not trusted", 200, RP_FI_SIGNER_NOT_TRUSTED)         \
    X(CERT_REVOKED, "certificate revoked", 200, RP_FI_CERT_REVOKED)                                \
    X(BAD_POP, "proof of possession failed", 200, RP_FI_BAD_POP)                                   \
    X(BAD_CERT_TEMPLATE, "certificate template not acceptable", 200, RP_FI_BAD_CERT_TEMPLATE)      \
    X(TXID_IN_USE, "transactionID in use by another sender", 200, RP_FI_TRANSACTION_ID_IN_USE)     \
    X(UNKNOWN_TXN, "no such transaction", 200, RP_FI_BAD_REQUEST)                                  \
    X(SYSTEM_UNAVAIL, "service unavailable", 200, RP_FI_SYSTEM_UNAVAIL)                            \
    X(RATE_LIMITED, "rate limit exceeded", 429, RP_FI_SYSTEM_UNAVAIL)                              \
    X(QUEUE_FULL, "crypto workers busy", 200, RP_FI_SYSTEM_UNAVAIL)                                \
    X(TABLE_FULL, "replay or transaction table full", 200, RP_FI_SYSTEM_UNAVAIL)                   \
    X(MAC_LOCKED, "senderKID locked out after failed MACs", 200, RP_FI_BAD_MESSAGE_CHECK)          \
    /* OCSP relay (validation) */                                                                  \
    X(OCSP_RESPONSE, "OCSP: malformed or unsupported response", 502, RP_FI_SYSTEM_UNAVAIL)         \
    X(OCSP_MISMATCH, "OCSP: response does not answer the request", 502, RP_FI_SYSTEM_UNAVAIL)      \
    X(OCSP_STALE, "OCSP: response outside its validity period", 502, RP_FI_SYSTEM_UNAVAIL)         \
    X(OCSP_SIGNER, "OCSP: responder not authorized", 502, RP_FI_SIGNER_NOT_TRUSTED)                \
    X(OCSP_SIGNATURE, "OCSP: response signature does not verify", 502, RP_FI_BAD_MESSAGE_CHECK)    \
    /* crypto */                                                                                   \
    X(CRYPTO, "cryptographic operation failed", 500, RP_FI_SYSTEM_FAILURE)                         \
    X(KEY_LOAD, "cannot load key or certificate", 500, RP_FI_SYSTEM_FAILURE)                       \
    /* Redis */                                                                                    \
    X(REDIS_DOWN, "redis: not connected", 503, RP_FI_SYSTEM_UNAVAIL)                               \
    X(REDIS_TIMEOUT, "redis: command timed out", 503, RP_FI_SYSTEM_UNAVAIL)                        \
    X(REDIS_REPLY, "redis: unexpected reply", 503, RP_FI_SYSTEM_UNAVAIL)                           \
    X(REDIS_BUSY, "redis: too many commands in flight", 503, RP_FI_SYSTEM_UNAVAIL)                 \
    X(REDIS_NOSCRIPT, "redis: script not loaded", 503, RP_FI_SYSTEM_UNAVAIL)

#define RP_OK 0

enum rp_err_idx_ {
#define RP_ERR_ENUM_(name, msg, http, fi) RP_E_##name##_IDX_,
    RP_ERRORS(RP_ERR_ENUM_)
#undef RP_ERR_ENUM_
        RP_E_COUNT_
};

#define RP_ERR_CODE_(name, msg, http, fi) RP_E_##name = -(1 + RP_E_##name##_IDX_),
enum rp_err_code { RP_ERRORS(RP_ERR_CODE_) };
#undef RP_ERR_CODE_

/* "DER_TRUNCATED"; "OK" for 0; "UNKNOWN" for anything not in the table. */
const char *rp_err_name(int err);
const char *rp_err_msg(int err);
int rp_err_http(int err);
/* The PKIFailureInfo bit, or RP_FI_NONE. */
enum rp_failinfo rp_err_failinfo(int err);
/* "badDataFormat" etc., or NULL for RP_FI_NONE. */
const char *rp_failinfo_name(enum rp_failinfo fi);

#endif
