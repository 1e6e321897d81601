/* A view: pointer + length into someone else's buffer. Never owns memory. */
#ifndef RAPROXY_VIEW_H
#define RAPROXY_VIEW_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct rp_view {
    const uint8_t *p;
    size_t len;
};

#define RP_VIEW_NULL ((struct rp_view){NULL, 0})

static inline struct rp_view rp_view_make(const void *p, size_t len)
{
    return (struct rp_view){(const uint8_t *)p, len};
}

static inline struct rp_view rp_view_str(const char *s)
{
    return (struct rp_view){(const uint8_t *)s, s ? strlen(s) : 0};
}

static inline int rp_view_present(struct rp_view v)
{
    return v.p != NULL;
}

static inline int rp_view_eq(struct rp_view a, struct rp_view b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* The bytes of v in lowercase hex at out: 2 * v.len characters, then a NUL. */
static inline void rp_view_hex(struct rp_view v, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < v.len; i++) {
        out[2 * i] = digits[v.p[i] >> 4];
        out[2 * i + 1] = digits[v.p[i] & 15];
    }
    out[2 * v.len] = '\0';
}

#endif
