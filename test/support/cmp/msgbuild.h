/* Real CMP messages for tests: a genuine request written by `openssl cmp -reqout`, then
 * altered and protected again (signature with a device key, or a MAC with a secret). Links
 * the cmp layer; used by the unit tests above it and the integration tests. */
#ifndef RP_TEST_MSGBUILD_H
#define RP_TEST_MSGBUILD_H

#include "raproxy/arena.h"
#include "raproxy/cmp.h"
#include "raproxy/view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* `openssl cmp <args…> -server 127.0.0.1:1 -reqout OUT` (it fails to send after writing the
 * request); returns the request (malloc'ed) or NULL. args: NULL-terminated, without
 * -server/-path/-reqout. dir: where OUT and the log go. */
uint8_t *rpt_capture_request(const char *dir, const char *name, const char *const *args,
                             size_t *len);

/* The usual device request: `-cmd <cmd>` signed with <pki>/<cert>.pem/.key (+ vendor ICA),
 * new key ca/issued.key, the subject of the device certificate. cmd: ir, cr, p10cr, kur, rr. */
uint8_t *rpt_capture_device(const char *dir, const char *pki, const char *cmd, const char *cert,
                            size_t *len);
/* A MAC-protected (PBM) request with secret/kid, new key ca/issued.key, subject (an openssl
 * -subject; NULL: "/CN=Device"). */
uint8_t *rpt_capture_mac(const char *dir, const char *pki, const char *cmd, const char *secret,
                         const char *kid, const char *subject, size_t *len);

/* How to alter a genuine request; zero values keep the original. */
struct rpt_mut {
    int pvno;
    int64_t time_shift;   /* messageTime = now + shift */
    bool no_time;         /* omit messageTime */
    struct rp_view nonce; /* absent: a fresh random one */
    struct rp_view txid;
    struct rp_view alg;        /* protectionAlg DER, for a signature (default: the key's) */
    struct rp_view sender_kid; /* replaces the senderKID */
    bool no_sender_kid;
    struct rp_view sender;             /* replaces the sender GeneralName TLV */
    struct rp_view body;               /* replaces the body TLV */
    struct rp_view general_info;       /* replaces generalInfo (the [8] TLV) */
    const struct rp_view *extra_certs; /* replaces extraCerts (n_extra_certs of them) */
    size_t n_extra_certs;
    bool flip_protection;
    /* protection: a key file (PEM) to sign with (the default algorithm of its key), or a
     * MAC computed here (independently of src/cmp/mac.c) with mac_secret; neither: the
     * message goes unprotected */
    const char *key_file;
    enum rpt_mac { RPT_MAC_NONE, RPT_MAC_PBM, RPT_MAC_PBMAC1 } mac;
    const char *mac_secret;
    uint32_t mac_iterations; /* 0: 1000 */
    int64_t mac_key_len;     /* PBMAC1 keyLength; 0: absent */
};

/* Fields a test builds itself, with the codec's encoders. */

/* The DER of the first certificate of a PEM (or DER) file, in the arena; RP_VIEW_NULL. */
struct rp_view rpt_cert_der(struct rp_arena *a, const char *path);
/* A Name from "C=DE, O=Vendor, CN=x, serialNumber=SN0001" (labels of cert.h), in the arena. */
struct rp_view rpt_name(struct rp_arena *a, const char *text);
/* An Extension { oid, critical, OCTET STRING { value } } */
struct rp_view rpt_ext(struct rp_arena *a, struct rp_view oid, bool critical, struct rp_view value);
/* generalInfo [8] { certProfile ITAV { SEQUENCE OF UTF8String profile } } */
struct rp_view rpt_general_info_profile(struct rp_arena *a, const char *profile);

/* One CertReqMsg. Its POP: */
enum rpt_pop {
    RPT_POP_SIGNATURE,  /* signature over CertRequest with pop_key (or pop_sig as given) */
    RPT_POP_POPOSK,     /* signature over poposkInput (poposk as given, or built from
                           poposk_sender and spki) with pop_key, or pop_sig as given */
    RPT_POP_NONE,       /* central key generation */
    RPT_POP_RAVERIFIED, /* raVerified, as only an RA may send */
};
struct rpt_certreq {
    struct rp_view issuer, subject; /* Name TLVs, or absent */
    struct rp_view spki;            /* SubjectPublicKeyInfo SEQUENCE, or absent */
    bool key_alg_only;              /* publicKey with its algorithm and an empty key */
    struct rp_view validity_raw;    /* the [4] TLV, or absent */
    const struct rp_view *exts;     /* Extension TLVs */
    size_t n_exts;
    struct rp_view controls_raw; /* Controls SEQUENCE, or absent */
    enum rpt_pop pop;
    const char *pop_key;             /* PEM private key file */
    struct rp_view pop_sig, pop_alg; /* a given signature (and its AlgorithmIdentifier) */
    struct rp_view poposk;           /* a given [0] poposkInput TLV */
    struct rp_view poposk_sender;    /* GeneralName TLV for a built poposkInput */
};
/* ir/cr/kur [type] CertReqMessages of n requests (certReqId 0..n-1). */
struct rp_view rpt_certreqs(struct rp_arena *a, enum rp_cmp_body_type type,
                            const struct rpt_certreq *r, size_t n);
/* A sender GeneralName: directoryName [4] { name } */
struct rp_view rpt_directory_name(struct rp_arena *a, struct rp_view name);

/* The altered message, in the arena. */
struct rp_view rpt_rebuild(struct rp_arena *a, const uint8_t *base, size_t len,
                           const struct rpt_mut *m);

/* POST to raproxy; the CMP answer decoded into *out (arena a). Returns the HTTP status. */
int rpt_post_cmp(int port, const char *path, struct rp_view req, struct rp_arena *a,
                 struct rp_cmp_msg *out);

#endif
