/* Per-thread block pools (see pool.h). A free block's first bytes link it to the next one of
 * its class; a thread-specific key's destructor frees what a thread leaves behind. */
#include "raproxy/pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define MIN_SHIFT 8u  /* RP_POOL_MIN_BLOCK */
#define MAX_SHIFT 20u /* RP_POOL_MAX_BLOCK */
#define N_CLASSES (MAX_SHIFT - MIN_SHIFT + 1u)

_Static_assert(RP_POOL_MIN_BLOCK == 1u << MIN_SHIFT, "MIN_SHIFT matches pool.h");
_Static_assert(RP_POOL_MAX_BLOCK == 1u << MAX_SHIFT, "MAX_SHIFT matches pool.h");

struct free_block {
    struct free_block *next;
};

struct pool {
    struct free_block *head[N_CLASSES];
    unsigned count[N_CLASSES];
    bool registered;
};

static __thread struct pool tls_pool;
static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_drain(void *arg)
{
    struct pool *p = arg;
    for (unsigned c = 0; c < N_CLASSES; c++) {
        while (p->head[c]) {
            struct free_block *b = p->head[c];
            p->head[c] = b->next;
            free(b);
        }
        p->count[c] = 0;
    }
    p->registered = false;
}

static void key_init(void)
{
    (void)pthread_key_create(&pool_key, pool_drain);
}

/* Class index of a size, or -1 when it is served by malloc directly. */
static int class_of(size_t size)
{
    if (size > RP_POOL_MAX_BLOCK)
        return -1;
    unsigned c = 0;
    while (((size_t)RP_POOL_MIN_BLOCK << c) < size)
        c++;
    return (int)c;
}

static unsigned class_keep(unsigned c)
{
    size_t bytes = (size_t)RP_POOL_MIN_BLOCK << c;
    size_t n = RP_POOL_CLASS_BYTES / bytes;
    return n ? (unsigned)n : 1u;
}

size_t rp_pool_size(size_t size)
{
    int c = class_of(size);
    return c < 0 ? size : (size_t)RP_POOL_MIN_BLOCK << c;
}

void *rp_pool_get(size_t size)
{
    int c = class_of(size);
    if (c < 0)
        return malloc(size);
    struct pool *p = &tls_pool;
    struct free_block *b = p->head[c];
    if (b) {
        p->head[c] = b->next;
        p->count[c]--;
        return b;
    }
    return malloc((size_t)RP_POOL_MIN_BLOCK << c);
}

void rp_pool_put(void *ptr, size_t size)
{
    if (!ptr)
        return;
    int c = class_of(size);
    struct pool *p = &tls_pool;
    if (c < 0 || p->count[c] >= class_keep((unsigned)c)) {
        free(ptr);
        return;
    }
    if (!p->registered) {
        /* the destructor runs when this thread ends and frees what the pool holds */
        pthread_once(&pool_once, key_init);
        if (pthread_setspecific(pool_key, p) != 0) {
            free(ptr);
            return;
        }
        p->registered = true;
    }
    struct free_block *b = ptr;
    b->next = p->head[c];
    p->head[c] = b;
    p->count[c]++;
}
