#include "raproxy/arena.h"
#include "raproxy/err.h"
#include "raproxy/pool.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 16u

void rp_arena_init(struct rp_arena *a, void *mem, size_t cap)
{
    a->base = mem;
    a->cap = cap;
    a->used = 0;
    a->high = 0;
    a->owned = 0;
}

int rp_arena_new(struct rp_arena *a, size_t cap)
{
    /* the block is allocated by the first allocation: an exchange answered without its
     * arena (an HTTP refusal, a 404) costs no memory, and one flooded with them no
     * allocator traffic */
    rp_arena_init(a, NULL, cap);
    a->owned = 1;
    return RP_OK;
}

void rp_arena_free(struct rp_arena *a)
{
    if (a->owned)
        rp_pool_put(a->base, a->cap ? a->cap : 1);
    memset(a, 0, sizeof *a);
}

void *rp_arena_alloc(struct rp_arena *a, size_t n)
{
    if (!a->base) {
        /* from the thread's pool: the next exchange on this loop gets the same block */
        if (!a->owned || !(a->base = rp_pool_get(a->cap ? a->cap : 1)))
            return NULL;
    }
    size_t start = (a->used + (ARENA_ALIGN - 1)) & ~(size_t)(ARENA_ALIGN - 1);
    if (start < a->used || start > a->cap || n > a->cap - start)
        return NULL;
    a->used = start + n;
    if (a->used > a->high)
        a->high = a->used;
    return a->base + start;
}

void *rp_arena_calloc(struct rp_arena *a, size_t count, size_t size)
{
    if (size && count > (size_t)-1 / size)
        return NULL;
    void *p = rp_arena_alloc(a, count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *rp_arena_dup(struct rp_arena *a, const void *p, size_t n)
{
    void *d = rp_arena_alloc(a, n);
    if (d && n)
        memcpy(d, p, n);
    return d;
}

void rp_arena_reset(struct rp_arena *a)
{
    a->used = 0;
}

size_t rp_arena_mark(const struct rp_arena *a)
{
    return a->used;
}

void rp_arena_rewind(struct rp_arena *a, size_t mark)
{
    if (mark <= a->used)
        a->used = mark;
}
