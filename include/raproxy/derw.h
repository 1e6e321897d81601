/* DER writer (X.690 §10) into an arena.
 *
 * A struct rp_derw owns one arena allocation of a capacity fixed at rp_derw_init(); values
 * are appended front to back. A constructed element is opened with rp_derw_begin() and
 * closed with rp_derw_end(), which writes its length in the minimal form (moving the content
 * when the length needs more than one octet). Errors are sticky: after the first failure
 * every call is a no-op returning that error, so an encoder can write a whole structure and
 * check once, at rp_derw_finish(). rp_derw_finish() gives the unused part of the
 * allocation back to the arena when nothing was allocated after it.
 *
 * Only single-octet identifiers are written (tag numbers < 31: every CMP, CRMF and X.509
 * tag). Identifier constants are those of raproxy/der.h: RP_DER_SEQUENCE, RP_DER_CTX(n)
 * for an IMPLICIT primitive [n], RP_DER_CTX_CONS(n) for EXPLICIT [n] or an IMPLICIT
 * constructed [n]. */
#ifndef RAPROXY_DERW_H
#define RAPROXY_DERW_H

#include "raproxy/arena.h"
#include "raproxy/der.h"
#include "raproxy/view.h"

#include <stddef.h>
#include <stdint.h>

/* Constructed elements open at the same time. */
#define RP_DERW_MAX_DEPTH 16
/* Largest identifier + length header the writer emits: 1 + 1 + sizeof(size_t). */
#define RP_DERW_MAX_HEADER (2 + sizeof(size_t))

struct rp_derw {
    struct rp_arena *arena;
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err;                        /* first error (RP_E_*), sticky; 0 while all is well */
    unsigned depth;                 /* open constructed elements */
    size_t open[RP_DERW_MAX_DEPTH]; /* offset of each open element's content */
};

/* Take `cap` bytes from the arena (RP_E_ARENA when they are not there; also stored in w). */
int rp_derw_init(struct rp_derw *w, struct rp_arena *a, size_t cap);
/* All elements closed: *out = the bytes written, unused capacity returned to the arena.
 * Returns the sticky error, RP_E_DER_ENCODE if an element is still open. */
int rp_derw_finish(struct rp_derw *w, struct rp_view *out);

/* Open / close a constructed element with identifier `ident` (SEQUENCE, SET, [n]). */
int rp_derw_begin(struct rp_derw *w, uint8_t ident);
int rp_derw_end(struct rp_derw *w);

/* Bytes that are already a complete encoding (a TLV or a run of them), copied verbatim. */
int rp_derw_raw(struct rp_derw *w, struct rp_view der);
/* A primitive element: identifier, minimal length, then `content`. */
int rp_derw_prim(struct rp_derw *w, uint8_t ident, struct rp_view content);
/* INTEGER (or ENUMERATED / IMPLICIT [n] via ident) in minimal two's complement. */
int rp_derw_int64(struct rp_derw *w, uint8_t ident, int64_t v);
/* Non-negative INTEGER from big-endian magnitude bytes (serial numbers): leading zero
 * octets dropped, a 0x00 prefixed when the top bit is set; empty magnitude is 0. */
int rp_derw_uint_bytes(struct rp_derw *w, struct rp_view magnitude);
int rp_derw_octets(struct rp_derw *w, struct rp_view v);
/* BIT STRING of whole `bytes` with `unused` (0..7) trailing bits, which must be zero. */
int rp_derw_bits(struct rp_derw *w, struct rp_view bytes, unsigned unused);
/* Named-bit-list BIT STRING (KeyUsage, PKIFailureInfo): bit i of `bits` is named bit i
 * (bit 0 = MSB of the first octet). DER form: trailing zero bits dropped, so 0 encodes as
 * 03 01 00. */
int rp_derw_named_bits(struct rp_derw *w, uint32_t bits);
/* OBJECT IDENTIFIER from its content octets (e.g. RP_OID_VIEW(RP_OID_ECDSA_SHA256)). */
int rp_derw_oid(struct rp_derw *w, struct rp_view oid);
int rp_derw_null(struct rp_derw *w);
int rp_derw_bool(struct rp_derw *w, int v);
/* UTF8String; the caller vouches for well-formed UTF-8. */
int rp_derw_utf8(struct rp_derw *w, struct rp_view s);
/* GeneralizedTime "YYYYMMDDHHMMSSZ" from seconds since the epoch (years 0000..9999). */
int rp_derw_gentime(struct rp_derw *w, int64_t epoch);

#endif
