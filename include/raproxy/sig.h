/* Signatures with wolfCrypt: the primitives that CMP protection checks, POP checks and
 * the RA's own signing use. No wolfSSL type appears here; keys are opaque.
 *
 * Thread safety: an rp_pubkey may be shared by threads (verification of one key is
 * serialised by a lock inside: wolfCrypt keeps per-operation state in its RSA key).
 * An rp_privkey is built for several workers signing at once: it holds a small pool of
 * key copies, each with its own RNG, and a signer takes a free one.
 *
 * Every sign/verify calls rp_guard_crypto() first (see guard.h). */
#ifndef RAPROXY_SIG_H
#define RAPROXY_SIG_H

#include "raproxy/pkcs11.h"
#include "raproxy/view.h"

#include <stddef.h>
#include <stdint.h>

enum rp_sig_alg {
    RP_SIG_ECDSA_SHA256,
    RP_SIG_ECDSA_SHA384,
    RP_SIG_ECDSA_SHA512,
    RP_SIG_ED25519,
    RP_SIG_RSA_SHA256, /* RSASSA-PKCS1-v1_5 */
    RP_SIG_RSA_SHA384,
    RP_SIG_RSA_SHA512,
    RP_SIG_RSA_PSS_SHA256, /* RSASSA-PSS, MGF1 with the same hash, salt = hash length */
    RP_SIG_RSA_PSS_SHA384,
    RP_SIG_RSA_PSS_SHA512,
    RP_SIG_ALG_COUNT
};

struct rp_pubkey;
struct rp_privkey;

enum rp_key_type { RP_KEY_EC, RP_KEY_RSA, RP_KEY_ED25519 };
enum rp_ec_curve { RP_EC_NONE, RP_EC_P256, RP_EC_P384, RP_EC_P521 };

/* Largest signature any supported key makes (RSA-4096: 512 bytes, with room to spare). */
#define RP_SIG_MAX 1024u
/* RSA moduli accepted, in bits. */
#define RP_RSA_MIN_BITS 1024u
#define RP_RSA_MAX_BITS 4096u

/* AlgorithmIdentifier DER (the whole SEQUENCE TLV) to an algorithm. Compared against the
 * canonical encodings: ECDSA and Ed25519 with absent parameters (RFC 5758, RFC 8410),
 * PKCS#1 v1.5 with NULL or absent parameters (RFC 4055 §5 allows both), RSASSA-PSS only
 * with the RFC 4055 parameters for SHA-256/384/512, MGF1 with the same hash, salt = hash
 * length, trailerField absent. Anything else (SHA-1, MD5, other PSS parameters, unknown
 * OIDs, trailing bytes) is RP_E_BAD_ALG. */
int rp_sig_alg_parse(struct rp_view alg_id_tlv, enum rp_sig_alg *out);
/* Canonical AlgorithmIdentifier DER for protectionAlg / signatureAlgorithm (static). */
struct rp_view rp_sig_alg_der(enum rp_sig_alg a);
/* "ecdsa-sha256", "ed25519", "rsa-pkcs1-sha256", "rsa-pss-sha256"; "?" when invalid. */
const char *rp_sig_alg_name(enum rp_sig_alg a);
/* The configuration's algorithm name for this algorithm used with this key: "ecdsa-p256",
 * "ecdsa-p384", "ecdsa-p521" (by the key's curve), "ed25519", "rsa-pkcs1", "rsa-pss".
 * NULL when the algorithm cannot be used with the key. */
const char *rp_sig_policy_name(enum rp_sig_alg a, const struct rp_pubkey *k);

/* SubjectPublicKeyInfo DER: id-ecPublicKey with a named curve P-256/384/521, rsaEncryption
 * (RP_RSA_MIN_BITS..RP_RSA_MAX_BITS), Ed25519. RP_E_BAD_ALG for other key types or
 * curves, RP_E_DER_* / RP_E_KEY_LOAD for malformed keys. */
int rp_pubkey_from_spki(struct rp_view spki, struct rp_pubkey **out);
void rp_pubkey_free(struct rp_pubkey *k);
enum rp_key_type rp_pubkey_type(const struct rp_pubkey *k);
enum rp_ec_curve rp_pubkey_curve(const struct rp_pubkey *k); /* RP_EC_NONE unless EC */
unsigned rp_pubkey_bits(const struct rp_pubkey *k); /* RSA modulus / curve / 256 for Ed25519 */

/* RP_OK, RP_E_BAD_MESSAGE_CHECK (wrong signature, malformed signature), or RP_E_BAD_ALG
 * when the algorithm does not fit the key type (any ECDSA hash with any supported curve
 * is allowed). */
int rp_sig_verify(enum rp_sig_alg a, const struct rp_pubkey *k, const uint8_t *data, size_t n,
                  const uint8_t *sig, size_t siglen);

/* PEM file: "EC PRIVATE KEY" (SEC1), "RSA PRIVATE KEY" (PKCS#1) or "PRIVATE KEY" (PKCS#8:
 * EC, RSA, Ed25519), as openssl genpkey/req/ecparam write them. Encrypted keys are not
 * supported. RP_E_KEY_LOAD (unreadable, malformed) or RP_E_BAD_ALG (unsupported type). */
int rp_privkey_load_pem(const char *path, struct rp_privkey **out);
/* Same from PEM text in memory. */
int rp_privkey_from_pem(const char *pem, size_t len, struct rp_privkey **out);
/* A key setting: a PKCS#11 URI ("pkcs11:token=…;object=…", the key stays in the token and
 * every signature is made there, see pkcs11.h) or a PEM file as above. o (may be NULL for
 * PEM files) names the module and PIN. RP_OK, or RP_E_KEY_LOAD / RP_E_BAD_ALG with a
 * message in why[0..cap) (may be NULL). */
int rp_privkey_load(const char *spec, const struct rp_p11_opts *o, struct rp_privkey **out,
                    char *why, size_t cap);
/* The key can sign now: always for keys in memory; for a token key, while its token is up. */
bool rp_privkey_available(const struct rp_privkey *k);
/* A token key, as wolfSSL's TLS layer takes it (wolfSSL_CTX_use_PrivateKey_Id / _Label). */
struct rp_privkey_device {
    int dev_id;
    const char *label; /* NULL when found by id */
    const uint8_t *id;
    size_t id_len;
};
/* true (and *out filled) for a key in a PKCS#11 token. */
bool rp_privkey_device(const struct rp_privkey *k, struct rp_privkey_device *out);
void rp_privkey_free(struct rp_privkey *k);
enum rp_key_type rp_privkey_type(const struct rp_privkey *k);
/* P-256 → ECDSA-SHA256, P-384 → SHA384, P-521 → SHA512, RSA → PKCS#1-SHA256, Ed25519. */
enum rp_sig_alg rp_privkey_default_alg(const struct rp_privkey *k);
/* Thread-safe. Signature (DER ECDSA-Sig-Value for ECDSA) into sig[0..cap). RP_OK,
 * RP_E_BAD_ALG (algorithm does not fit the key), RP_E_INVAL (cap too small: RP_SIG_MAX
 * always suffices) or RP_E_CRYPTO. A token key also fails with RP_E_KEY_UNAVAILABLE (the
 * token is known to be down: nothing was sent to it) or RP_E_KEY_TOKEN (the token failed
 * this signature; it is now marked down and being reconnected). */
int rp_privkey_sign(struct rp_privkey *k, enum rp_sig_alg a, const uint8_t *data, size_t n,
                    uint8_t *sig, size_t cap, size_t *siglen);
/* 1 when the SubjectPublicKeyInfo holds this key's public half, 0 when not, < 0 when the
 * SPKI cannot be read. */
int rp_privkey_matches_spki(const struct rp_privkey *k, struct rp_view spki);

/* Release the per-thread caches wolfCrypt keeps (FP_ECC point tables) before a thread that
 * did ECC work ends; without it they leak once per thread. */
void rp_sig_thread_cleanup(void);

#endif
