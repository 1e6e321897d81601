/* Per-exchange bump allocator with a hard cap. Everything an exchange needs comes
 * from it, and it is dropped in one call when the exchange ends. */
#ifndef RAPROXY_ARENA_H
#define RAPROXY_ARENA_H

#include <stddef.h>
#include <stdint.h>

struct rp_arena {
    uint8_t *base;
    size_t cap;
    size_t used;
    size_t high; /* high-water mark, for metrics */
    int owned;   /* base was malloc'ed by rp_arena_new */
};

/* Wrap caller memory. */
void rp_arena_init(struct rp_arena *a, void *mem, size_t cap);
/* An arena of `cap` bytes, allocated once, by the first allocation (an arena never used
 * costs nothing); returns RP_OK. */
int rp_arena_new(struct rp_arena *a, size_t cap);
void rp_arena_free(struct rp_arena *a);
/* 16-byte aligned; NULL when the cap would be exceeded (never grows). */
void *rp_arena_alloc(struct rp_arena *a, size_t n);
void *rp_arena_calloc(struct rp_arena *a, size_t count, size_t size);
void *rp_arena_dup(struct rp_arena *a, const void *p, size_t n);
/* Drop everything allocated so far (keeps the memory). */
void rp_arena_reset(struct rp_arena *a);
size_t rp_arena_mark(const struct rp_arena *a);
void rp_arena_rewind(struct rp_arena *a, size_t mark);

#endif
