/* The OCSP response cache: verified responses by CertID, shared by every loop.
 *
 * An LRU with a hard cap on entries; an entry lives until min(its nextUpdate, stored +
 * max_age). Keys are the DER of the request's CertIDs (concatenated when a request asks
 * about several), values the VA's OCSPResponse DER exactly as relayed. Only responses that
 * passed rp_ocsp_verify() go in, so a hit is relayed with no upstream call and no
 * signature work. Thread-safe (one mutex; a hit copies the value out under it). */
#ifndef RAPROXY_OCSP_CACHE_H
#define RAPROXY_OCSP_CACHE_H

#include "raproxy/arena.h"
#include "raproxy/view.h"

#include <stddef.h>
#include <stdint.h>

/* Largest key / value stored; larger ones are not cached. */
#define RP_OCSP_CACHE_MAX_KEY   4096u
#define RP_OCSP_CACHE_MAX_VALUE 65536u

struct rp_ocsp_cache;

/* max_entries >= 1, max_age_s >= 1. RP_OK, RP_E_NOMEM, RP_E_INVAL. */
int rp_ocsp_cache_new(struct rp_ocsp_cache **out, uint32_t max_entries, uint32_t max_age_s);
void rp_ocsp_cache_free(struct rp_ocsp_cache *c);
/* New bounds (a reload): the least recently used entries beyond max_entries go at once;
 * a shorter max_age applies to entries stored from now on. */
void rp_ocsp_cache_configure(struct rp_ocsp_cache *c, uint32_t max_entries, uint32_t max_age_s);

/* 1 and a copy of the value in the arena (*out) on a hit, which also makes the entry the
 * most recently used; 0 on a miss (an expired entry is removed); RP_E_ARENA when the copy
 * does not fit. `now` is wall-clock epoch seconds. */
int rp_ocsp_cache_get(struct rp_ocsp_cache *c, struct rp_view key, int64_t now, struct rp_arena *a,
                      struct rp_view *out);
/* Store (or replace) key → value until min(next_update, now + max_age). 1 stored, 0 not
 * (already expired, too large), RP_E_NOMEM. Evicts the least recently used entry when
 * full. */
int rp_ocsp_cache_put(struct rp_ocsp_cache *c, struct rp_view key, struct rp_view value,
                      int64_t next_update, int64_t now);
size_t rp_ocsp_cache_count(struct rp_ocsp_cache *c);
void rp_ocsp_cache_clear(struct rp_ocsp_cache *c);

/* The process-wide cache: created on the first call with these bounds, reconfigured by
 * later calls that pass other bounds. NULL only when out of memory. Thread-safe. */
struct rp_ocsp_cache *rp_ocsp_cache_shared(uint32_t max_entries, uint32_t max_age_s);

#endif
