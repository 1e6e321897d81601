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

/* The altered message, in the arena. */
struct rp_view rpt_rebuild(struct rp_arena *a, const uint8_t *base, size_t len,
                           const struct rpt_mut *m);

/* POST to raproxy; the CMP answer decoded into *out (arena a). Returns the HTTP status. */
int rpt_post_cmp(int port, const char *path, struct rp_view req, struct rp_arena *a,
                 struct rp_cmp_msg *out);

#endif
