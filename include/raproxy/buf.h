/* Growable byte buffer with a hard maximum. Used for connection I/O where the
 * size is not known in advance; the exchange's own data lives in its arena. */
#ifndef RAPROXY_BUF_H
#define RAPROXY_BUF_H

#include <stddef.h>
#include <stdint.h>

struct rp_buf {
    uint8_t *data;
    size_t off; /* bytes already consumed from the front */
    size_t len; /* end of valid data (data[off..len) is unread) */
    size_t cap;
    size_t max; /* 0 = unlimited */
};

void rp_buf_init(struct rp_buf *b, size_t max);
void rp_buf_free(struct rp_buf *b);
/* RP_OK, RP_E_NOMEM, or RP_E_ARENA when `max` would be exceeded. */
int rp_buf_reserve(struct rp_buf *b, size_t extra);
int rp_buf_append(struct rp_buf *b, const void *p, size_t n);
int rp_buf_printf(struct rp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline size_t rp_buf_avail(const struct rp_buf *b)
{
    return b->len - b->off;
}
static inline uint8_t *rp_buf_head(const struct rp_buf *b)
{
    return b->data + b->off;
}
void rp_buf_consume(struct rp_buf *b, size_t n);
/* Move unread bytes to the front; frees the memory when empty and large. */
void rp_buf_compact(struct rp_buf *b);
void rp_buf_clear(struct rp_buf *b);

#endif
