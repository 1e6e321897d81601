/* Private keys in a PKCS#11 token (an HSM, SoftHSM2 in tests), named by RFC 7512 URIs
 * ("pkcs11:token=raproxy;object=ra-key"). Signing happens in the token through wolfSSL's
 * PKCS#11 support: every token is a wolfCrypt crypto-callback device, and keys bound to it
 * (see rp_privkey_load in sig.h) send their private-key operations there.
 *
 * Sessions: one per crypto worker and token, opened on the worker thread at its start
 * (rp_p11_thread_start) and again on that thread after a token error; threads that are not
 * workers (the TLS handshakes of a listener key on an I/O loop, the main thread checking a
 * key at load) share a few sessions opened by the main thread or the reconnect thread, never
 * by a loop.
 *
 * A token that fails an operation is marked down: every later operation on it fails at once
 * (no token call) until a background thread has reconnected it — with back-off, and with a
 * full C_Finalize/C_Initialize of the module when a fresh session is not enough (SoftHSM2
 * and many network-HSM clients need that after the token was away).
 *
 * Thread safety: everything here may be called from any thread. */
#ifndef RAPROXY_PKCS11_H
#define RAPROXY_PKCS11_H

#include "raproxy/p11uri.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Worker indexes below this get a session of their own; others share the common ones. */
#define RP_P11_WORKER_SESSIONS 256u
/* Reconnect back-off after a token error: first try after MIN, doubling up to MAX. */
#define RP_P11_RETRY_MIN_MS 100u
#define RP_P11_RETRY_MAX_MS 5000u

/* Where the module and the PIN come from; the options win over the URI's module-path,
 * pin-source and pin-value. The PIN is the first of: pin, the first line of pin_file, the
 * URI's pin-source file, its pin-value; none: no login. */
struct rp_p11_opts {
    const char *module;   /* path of the PKCS#11 library */
    const char *pin;      /* the user PIN (RAPROXY_RA_PIN) */
    const char *pin_file; /* a file holding it (a mounted secret) */
};

enum rp_p11_key_type { RP_P11_KEY_EC, RP_P11_KEY_RSA };

/* One private key object on an open token. */
struct rp_p11_key;

/* Opens (or shares) the module and the token, logs in, finds exactly one private key the
 * URI names and reads its type, curve or modulus. On the calling thread (the main thread:
 * at start and on SIGHUP). RP_OK, or RP_E_KEY_LOAD with a message in why[0..cap) saying
 * what is wrong (module not loadable, no such token, wrong PIN, no such key, two keys match,
 * unsupported key type, token down). */
int rp_p11_key_open(const char *uri, const struct rp_p11_opts *o, struct rp_p11_key **out,
                    char *why, size_t cap);
void rp_p11_key_free(struct rp_p11_key *k);

/* What wolfCrypt needs to bind a key to the token. */
struct rp_p11_key_info {
    enum rp_p11_key_type type;
    int dev_id;        /* the token's crypto-callback device */
    int wc_curve;      /* EC: ECC_SECP256R1 … */
    unsigned bits;     /* EC: curve bits; RSA: modulus bits */
    const char *label; /* set when wolfSSL finds the key by CKA_LABEL */
    const uint8_t *id; /* else by CKA_ID */
    size_t id_len;
    const uint8_t *rsa_n, *rsa_e; /* RSA public half (big-endian) */
    size_t rsa_n_len, rsa_e_len;
};
void rp_p11_key_info(const struct rp_p11_key *k, struct rp_p11_key_info *out);

/* The token is up (last operation worked or it was reconnected). Cheap: an atomic load. */
bool rp_p11_key_available(const struct rp_p11_key *k);

/* A crypto worker thread starts / ends: remember its index and open / close its session on
 * every token in use. Called on that thread. */
void rp_p11_thread_start(unsigned worker_index);
void rp_p11_thread_stop(void);

/* Close every session, stop the reconnect thread, finalize the modules (process exit). */
void rp_p11_shutdown(void);

#endif
