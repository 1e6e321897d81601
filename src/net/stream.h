/* Writing to a libuv stream, plain or through a TLS session: shared by client connections
 * and upstream connections. Each write owns a copy of its bytes until libuv is done. */
#ifndef RP_NET_STREAM_H
#define RP_NET_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct rp_tls;

/* Queue a copy of p[0..n) on s; nothing for n == 0. `cb` gets the request: it must call
 * rp_stream_write_done(req) to get `owner` back and free the request. *writes counts the
 * queued writes (incremented here, decremented by the caller in cb). */
int rp_stream_write(uv_stream_t *s, const uint8_t *p, size_t n, void *owner, unsigned *writes,
                    uv_write_cb cb);
/* Put the TLS session's pending ciphertext on the wire. */
int rp_stream_flush_tls(uv_stream_t *s, struct rp_tls *tls, void *owner, unsigned *writes,
                        uv_write_cb cb);
/* Plaintext out: written directly, or encrypted by tls (may be NULL) then flushed. */
int rp_stream_send(uv_stream_t *s, struct rp_tls *tls, const uint8_t *p, size_t n, void *owner,
                   unsigned *writes, uv_write_cb cb);
void *rp_stream_write_done(uv_write_t *req);

#endif
