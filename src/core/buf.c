#include "raproxy/buf.h"
#include "raproxy/err.h"
#include "raproxy/pool.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MIN_CAP 256u
/* Buffers larger than this are released when they drain, so idle connections stay small. */
#define BUF_KEEP_CAP 16384u

void rp_buf_init(struct rp_buf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

/* Blocks come from this thread's pool (raproxy/pool.h): a buffer that fills and drains at
 * every exchange costs no malloc once the pool holds its class. b->cap is the block's size. */
void rp_buf_free(struct rp_buf *b)
{
    rp_pool_put(b->data, b->cap);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

int rp_buf_reserve(struct rp_buf *b, size_t extra)
{
    size_t unread = b->len - b->off;
    if (extra > (size_t)-1 / 2 - unread)
        return RP_E_ARENA;
    size_t need = unread + extra;
    if (b->max && need > b->max)
        return RP_E_ARENA;
    if (b->len + extra <= b->cap)
        return RP_OK;
    if (b->off) {
        memmove(b->data, b->data + b->off, unread);
        b->off = 0;
        b->len = unread;
        if (need <= b->cap)
            return RP_OK;
    }
    size_t ncap = b->cap ? b->cap : BUF_MIN_CAP;
    while (ncap < need)
        ncap *= 2;
    if (b->max && ncap > b->max && need <= b->max)
        ncap = need; /* the pool rounds it up to its class */
    ncap = rp_pool_size(ncap);
    uint8_t *nd = rp_pool_get(ncap);
    if (!nd)
        return RP_E_NOMEM;
    if (unread)
        memcpy(nd, b->data + b->off, unread);
    rp_pool_put(b->data, b->cap);
    b->data = nd;
    b->off = 0;
    b->len = unread;
    b->cap = ncap;
    return RP_OK;
}

int rp_buf_append(struct rp_buf *b, const void *p, size_t n)
{
    int rc = rp_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return RP_OK;
}

int rp_buf_printf(struct rp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return RP_E_INVAL;
    int rc = rp_buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return RP_OK;
}

void rp_buf_consume(struct rp_buf *b, size_t n)
{
    if (n > b->len - b->off)
        n = b->len - b->off;
    b->off += n;
    if (b->off == b->len)
        b->off = b->len = 0;
}

void rp_buf_compact(struct rp_buf *b)
{
    size_t unread = b->len - b->off;
    if (unread == 0 && b->cap > BUF_KEEP_CAP) {
        rp_buf_free(b);
        return;
    }
    if (b->off) {
        memmove(b->data, b->data + b->off, unread);
        b->off = 0;
        b->len = unread;
    }
}

void rp_buf_clear(struct rp_buf *b)
{
    b->off = b->len = 0;
}
