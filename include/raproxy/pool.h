/* Per-thread pools of memory blocks in power-of-two size classes, for what the exchange
 * path allocates and frees at every step (I/O buffers, request records): a block freed on a
 * thread is kept for the next allocation of its class on that thread instead of going back
 * to malloc. Each class keeps at most RP_POOL_CLASS_BYTES of free blocks (at least one),
 * so a pool never holds more than about 3 MiB per thread, and the memory an attack made the
 * process allocate still goes back to the allocator (then to the OS) when it ends. Blocks
 * larger than RP_POOL_MAX_BLOCK come from malloc directly. A thread's pool is emptied when
 * the thread ends. */
#ifndef RAPROXY_POOL_H
#define RAPROXY_POOL_H

#include <stddef.h>

#define RP_POOL_MIN_BLOCK   256u
#define RP_POOL_MAX_BLOCK   (1u << 20)
#define RP_POOL_CLASS_BYTES (128u << 10)

/* The size a request for `size` bytes really gets (its class), so callers may use it all. */
size_t rp_pool_size(size_t size);
/* Like malloc(size); the block holds rp_pool_size(size) bytes. NULL when out of memory. */
void *rp_pool_get(size_t size);
/* Like free(p); size is what was asked of rp_pool_get (or its rp_pool_size). NULL is fine. */
void rp_pool_put(void *p, size_t size);

#endif
