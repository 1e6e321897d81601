/* MAC-based CMP protection (RFC 9810 §5.1.3.1, RFC 9481 §6.1):
 *   PasswordBasedMac (1.2.840.113533.7.66.13): key = OWF^iterationCount(secret || salt),
 *     MAC = HMAC(key, data); OWF SHA-1/256/384/512, MAC HMAC-SHA1/256/384/512.
 *   PBMAC1 (RFC 8018 §7.1): key = PBKDF2(secret, salt, iterationCount, keyLength, PRF
 *     HMAC-SHA256/384/512), MAC = HMAC-SHA256/384/512(key, data).
 *
 * The iteration count is attacker-chosen: it is checked against the caller's maximum
 * (and RP_MAC_MIN_ITERATIONS) before any hashing. Every call runs rp_guard_crypto(). */
#ifndef RAPROXY_MAC_H
#define RAPROXY_MAC_H

#include "raproxy/arena.h"
#include "raproxy/view.h"

#include <stddef.h>
#include <stdint.h>

/* Fewer iterations make an offline guess of the secret from one captured message cheap;
 * OpenSSL's CRMF code refuses fewer than 100 as well. */
#define RP_MAC_MIN_ITERATIONS 100u
/* Salt lengths accepted (RFC 9481 asks for at least 64 bits; 128 bytes is plenty). */
#define RP_MAC_MIN_SALT 8u
#define RP_MAC_MAX_SALT 128u
/* Largest MAC (HMAC-SHA512), and the largest PBMAC1 keyLength accepted. A PBMAC1
 * keyLength, when present, must be at least the MAC's output size (RP_E_BAD_ALG otherwise). */
#define RP_MAC_MAX 64u

enum rp_mac_hash { RP_MAC_SHA1, RP_MAC_SHA256, RP_MAC_SHA384, RP_MAC_SHA512 };

/* RP_OK when mac is the MAC of data[0..n) under secret with the AlgorithmIdentifier
 * (whole SEQUENCE TLV) alg_id_tlv; RP_E_BAD_MESSAGE_CHECK when it is not (also for a
 * MAC of the wrong length); RP_E_BAD_ALG for unknown or malformed parameters, SHA-1 in
 * PBMAC1, or an iteration count outside RP_MAC_MIN_ITERATIONS..max_iterations. */
int rp_mac_verify(struct rp_view alg_id_tlv, const uint8_t *secret, size_t secret_len,
                  const uint8_t *data, size_t n, const uint8_t *mac, size_t maclen,
                  uint32_t max_iterations);
/* Compute the MAC for alg_id_tlv into out[0..cap) (RP_E_INVAL when cap is short). */
int rp_mac_protect(struct rp_view alg_id_tlv, const uint8_t *secret, size_t secret_len,
                   const uint8_t *data, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                   uint32_t max_iterations);

/* AlgorithmIdentifier DER for protectionAlg, allocated from the arena. */
int rp_mac_pbm_algid(struct rp_arena *a, enum rp_mac_hash owf, enum rp_mac_hash mac,
                     struct rp_view salt, uint32_t iterations, struct rp_view *out);
/* PBMAC1 with PBKDF2 (keyLength = the MAC hash size, PRF = HMAC with prf). SHA-1 is
 * refused (RP_E_INVAL) for both. */
int rp_mac_pbmac1_algid(struct rp_arena *a, enum rp_mac_hash prf, enum rp_mac_hash mac,
                        struct rp_view salt, uint32_t iterations, struct rp_view *out);

#endif
