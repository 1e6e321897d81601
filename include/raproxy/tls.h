/* TLS 1.2/1.3 over memory buffers (wolfSSL). Bytes in, bytes out: wolfSSL never touches a
 * socket. The caller feeds ciphertext from the network with rp_tls_feed, calls
 * rp_tls_process to advance the handshake and collect plaintext, and sends whatever
 * rp_tls_out holds.
 *
 * A context (certificates, keys, trust, ticket key) is immutable once built, reference
 * counted and shared by every loop; each session holds a reference, so a SIGHUP that swaps
 * in a new context never frees one under a live connection. Sessions are single-threaded:
 * one session is only ever used by one loop. */
#ifndef RAPROXY_TLS_H
#define RAPROXY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raproxy/buf.h"
#include "raproxy/view.h"

struct rp_tls_ctx;
struct rp_tls;

/* Versions accepted as min_version. TLS below 1.2 is never negotiated. */
#define RP_TLS_V12 12
#define RP_TLS_V13 13

/* A private key that stays in a PKCS#11 token, opened by the caller (rp_privkey_load):
 * wolfSSL signs the handshakes through the token's crypto-callback device, on the loop
 * thread. The context keeps `owner` until it is freed, then calls release(owner). */
struct rp_tls_device_key {
    int dev_id;
    const char *label; /* CKA_LABEL, or NULL to find the key by id */
    const uint8_t *id;
    size_t id_len;
    void *owner;
    bool (*available)(const void *owner); /* false while the token is down */
    void (*release)(void *owner);
};

struct rp_tls_server_opts {
    const char *cert_file;                      /* PEM, leaf first then intermediates */
    const char *key_file;                       /* PEM; ignored with device_key */
    const struct rp_tls_device_key *device_key; /* the key in a token (the caller checked that
                                                   it belongs to cert_file) */
    const char *client_ca_file; /* PEM anchors for client certificates; NULL = do not ask */
    bool client_cert_required;  /* with client_ca_file: refuse clients without a certificate */
    int min_version;            /* RP_TLS_V12 or RP_TLS_V13; 0 means 1.2 */
};

struct rp_tls_client_opts {
    const char *ca_file;   /* NULL = no server verification (test setups only) */
    const char *cert_file; /* client certificate (PEM), optional */
    const char *key_file;
    const char *sni; /* server name sent in the ClientHello and checked against the
                        certificate when ca_file is set; may be NULL */
    int min_version; /* 0 / RP_TLS_V12 / RP_TLS_V13 */
    int max_version; /* 0 = highest (1.3); RP_TLS_V12 pins the client to TLS 1.2 */
};

/* Build a server context: TLS 1.2+ (or 1.3 only), ECDHE groups P-256, P-384, X25519,
 * session tickets on with a fresh random ticket key per context (so a new context built on
 * SIGHUP invalidates old tickets). Returns RP_OK, RP_E_KEY_LOAD (the file is logged),
 * RP_E_TLS_SETUP, RP_E_NOMEM or RP_E_INVAL. */
int rp_tls_ctx_server(struct rp_tls_ctx **out, const struct rp_tls_server_opts *o);
/* Build a client context. It remembers the last session ticket it received and offers it
 * on the next session, so reconnects to the same upstream resume. */
int rp_tls_ctx_client(struct rp_tls_ctx **out, const struct rp_tls_client_opts *o);
void rp_tls_ctx_ref(struct rp_tls_ctx *c);
/* false while the context's key sits in a PKCS#11 token that is down (handshakes fail). */
bool rp_tls_ctx_key_available(const struct rp_tls_ctx *c);
/* Drop one reference; the last one frees the context. NULL is a no-op. */
void rp_tls_ctx_unref(struct rp_tls_ctx *c);

/* One session (server or client, per the ctx). Takes a reference on ctx. */
int rp_tls_new(struct rp_tls **out, struct rp_tls_ctx *ctx);
/* Frees the session and drops its ctx reference. NULL is a no-op. */
void rp_tls_free(struct rp_tls *t);

/* Maximum unprocessed ciphertext a session buffers (feed more only after rp_tls_process). */
#define RP_TLS_IN_MAX (256u * 1024u)

/* Copy ciphertext from the network into the session's input buffer. All or nothing:
 * RP_E_AGAIN when it does not fit (call rp_tls_process first), RP_E_NOMEM. */
int rp_tls_feed(struct rp_tls *t, const uint8_t *p, size_t n);
/* Drive the handshake (a client with no input yet emits its ClientHello), then append all
 * decryptable application data to plain_out. RP_OK: progress or nothing to do (then check
 * rp_tls_out for bytes to send). Fatal: RP_E_TLS_HANDSHAKE (handshake failed, including a
 * rejected peer certificate), RP_E_TLS_PROTOCOL (after the handshake), RP_E_TLS_CLOSED
 * (peer sent close_notify; plaintext before it was delivered). When plain_out reaches its
 * max, reading stops with RP_OK; rp_tls_pending then says to call again after the caller
 * consumed plain_out. A failed handshake may still leave an alert in rp_tls_out. */
int rp_tls_process(struct rp_tls *t, struct rp_buf *plain_out);
/* Unprocessed input remains (ciphertext or decrypted-but-undelivered records). */
bool rp_tls_pending(const struct rp_tls *t);
bool rp_tls_handshake_done(const struct rp_tls *t);
/* Encrypt plaintext; the records are appended to rp_tls_out. Only after the handshake:
 * RP_E_AGAIN before it, RP_E_TLS_PROTOCOL on failure. */
int rp_tls_write(struct rp_tls *t, const uint8_t *p, size_t n);
/* Ciphertext waiting for the wire; the caller copies it out and calls rp_buf_consume. */
struct rp_buf *rp_tls_out(struct rp_tls *t);
/* Queue close_notify into rp_tls_out. */
int rp_tls_close(struct rp_tls *t);
/* Release drained I/O buffers (call when the connection goes idle; process/write also do it
 * on entry), so an idle session holds only wolfSSL's own state. */
void rp_tls_shrink(struct rp_tls *t);

/* "TLSv1.2" / "TLSv1.3" once the handshake is done, "unknown" before. */
const char *rp_tls_version(const struct rp_tls *t);
bool rp_tls_resumed(const struct rp_tls *t);
/* Server side: the client certificate (DER, view valid for the session's life) if one was
 * presented and verified. Client side: the server's certificate. RP_E_NOT_FOUND otherwise. */
int rp_tls_peer_cert(struct rp_tls *t, struct rp_view *der);

#endif
