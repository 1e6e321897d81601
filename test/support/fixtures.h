/* Real processes for integration tests: raproxy itself and `openssl cmp` as mock CA and
 * as device. Every process gets a log file in the test's directory. */
#ifndef RP_TEST_FIXTURES_H
#define RP_TEST_FIXTURES_H

#include "support.h"

/* Start <build>/raproxy --config cfg and wait until `port` accepts (10 s).
 * Returns 0 or -1 (the log is in p->log). */
int rpt_raproxy_start(struct rpt_proc *p, const char *dir, const char *cfg, int port);

/* `openssl cmp -port PORT` mock CA: signs with ca/srv, always issues ca/issued.pem,
 * trusting `trusted` (a PEM file) for request protection. extra: NULL-terminated further
 * arguments (may be NULL). Waits until the port accepts. */
int rpt_mockca_start(struct rpt_proc *p, const char *dir, int port, const char *trusted,
                     const char *const *extra);

/* `openssl cmp` as a device over TLS through raproxy: cmd ("ir", "cr", "p10cr", "kur",
 * "rr", "genm"), signing with cert/key (+ extracerts, may be NULL), new key ca/issued.key
 * for the subject of cert (a device asks for its own identity; extra may add -subject),
 * trusting operator/root.pem (+ ca chain) for responses. Writes the issued certificate
 * to certout (may be NULL). extra: further arguments. Returns openssl's exit status. */
int rpt_device(const char *dir, int port, const char *path, const char *cmd, const char *cert,
               const char *key, const char *extracerts, const char *certout,
               const char *const *extra, const char *log);

/* A redis-server on 127.0.0.1 without persistence. Set r->port first to reuse a port
 * (restart tests), else a free one is chosen; `pass` (may be NULL) sets requirepass.
 * Waits until it accepts; r->url is redis://127.0.0.1:PORT. Returns 0 or -1. Like every
 * child of the test support, it dies with the test process. */
struct rpt_redis {
    struct rpt_proc p;
    int port;
    char url[96];
};
int rpt_redis_start(struct rpt_redis *r, const char *pass);
/* SIGCONT (a test may have stopped it) then SIGKILL. */
void rpt_redis_stop(struct rpt_redis *r);

/* SoftHSM2, a real PKCS#11 token, kept in `dir` (never the system's token directory):
 * writes dir/softhsm2.conf, points SOFTHSM2_CONF at it (this process and its children) and
 * initialises a token `label` with user PIN `pin` (SO PIN the same). Returns 0 or -1. */
#define RPT_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
int rpt_softhsm_init(const char *dir, const char *label, const char *pin);
/* The token's directory (dir/tokens), to take it away and bring it back. */
void rpt_softhsm_tokendir(const char *dir, char *out, size_t cap);
/* Import a PKCS#8 PEM private key as object `label` with CKA_ID `id_hex`. 0 or -1. */
int rpt_softhsm_import(const char *dir, const char *token, const char *pin, const char *key_pem,
                       const char *label, const char *id_hex);
/* Generate a key pair inside the token (pkcs11-tool): `key_type` as pkcs11-tool spells it
 * ("EC:prime256v1", "EC:secp384r1", "rsa:2048"); the public key goes to pub_der (DER
 * SubjectPublicKeyInfo). The private key never leaves the token. 0 or -1. */
int rpt_softhsm_keygen(const char *dir, const char *token, const char *pin, const char *key_type,
                       const char *label, const char *id_hex, const char *pub_der);

#endif
