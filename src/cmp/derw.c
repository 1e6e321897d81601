/* DER writer: see include/raproxy/derw.h. */
#include "raproxy/derw.h"
#include "raproxy/err.h"

#include <string.h>

/* Lengths below this fit in the identifier's single length octet (short form). */
#define SHORT_LEN_MAX   0x7Fu
#define LONG_LEN_FLAG   0x80u
#define BITS_PER_OCTET  8u
#define MAX_UNUSED_BITS 7u
/* "YYYYMMDDHHMMSSZ" */
#define GENTIME_LEN      15u
#define GENTIME_MAX_YEAR 9999
#define SECS_PER_DAY     86400
#define SECS_PER_HOUR    3600
#define SECS_PER_MIN     60
/* Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar, and the length
 * of a 400-year era: the constants of the days-to-civil conversion below. */
#define DAYS_0000_03_01_TO_EPOCH 719468
#define DAYS_PER_ERA             146097
#define YEARS_PER_ERA            400

static int fail(struct rp_derw *w, int err)
{
    if (!w->err)
        w->err = err;
    return w->err;
}

int rp_derw_init(struct rp_derw *w, struct rp_arena *a, size_t cap)
{
    memset(w, 0, sizeof *w);
    w->arena = a;
    w->buf = rp_arena_alloc(a, cap ? cap : 1);
    if (!w->buf)
        return fail(w, RP_E_ARENA);
    w->cap = cap;
    return RP_OK;
}

static size_t len_octets(size_t n)
{
    size_t k = 0;
    if (n <= SHORT_LEN_MAX)
        return 1;
    for (; n; n >>= BITS_PER_OCTET)
        k++;
    return 1 + k;
}

static void put_len(uint8_t *p, size_t n, size_t octets)
{
    if (octets == 1) {
        p[0] = (uint8_t)n;
        return;
    }
    p[0] = (uint8_t)(LONG_LEN_FLAG | (octets - 1));
    for (size_t i = octets - 1; i > 0; i--, n >>= BITS_PER_OCTET)
        p[i] = (uint8_t)n;
}

static uint8_t *reserve(struct rp_derw *w, size_t n)
{
    if (w->err)
        return NULL;
    if (n > w->cap - w->len) {
        fail(w, RP_E_DER_ENCODE);
        return NULL;
    }
    uint8_t *p = w->buf + w->len;
    w->len += n;
    return p;
}

int rp_derw_begin(struct rp_derw *w, uint8_t ident)
{
    if (w->err)
        return w->err;
    if (w->depth == RP_DERW_MAX_DEPTH)
        return fail(w, RP_E_DER_ENCODE);
    /* one length octet now; rp_derw_end() widens it if the content turns out longer */
    uint8_t *p = reserve(w, 2);
    if (!p)
        return w->err;
    p[0] = ident;
    w->open[w->depth++] = w->len;
    return RP_OK;
}

int rp_derw_end(struct rp_derw *w)
{
    if (w->err)
        return w->err;
    if (w->depth == 0)
        return fail(w, RP_E_DER_ENCODE);
    size_t start = w->open[--w->depth];
    size_t n = w->len - start;
    size_t octets = len_octets(n);
    if (octets > 1) {
        if (!reserve(w, octets - 1))
            return w->err;
        memmove(w->buf + start + octets - 1, w->buf + start, n);
    }
    put_len(w->buf + start - 1, n, octets);
    return RP_OK;
}

int rp_derw_finish(struct rp_derw *w, struct rp_view *out)
{
    if (w->err)
        return w->err;
    if (w->depth != 0)
        return fail(w, RP_E_DER_ENCODE);
    /* Hand back what was not used, if nothing was allocated after us. */
    struct rp_arena *a = w->arena;
    size_t off = (size_t)(w->buf - a->base);
    if (rp_arena_mark(a) == off + (w->cap ? w->cap : 1))
        rp_arena_rewind(a, off + w->len);
    *out = rp_view_make(w->buf, w->len);
    return RP_OK;
}

int rp_derw_raw(struct rp_derw *w, struct rp_view der)
{
    uint8_t *p = reserve(w, der.len);
    if (!p)
        return w->err;
    if (der.len)
        memcpy(p, der.p, der.len);
    return RP_OK;
}

int rp_derw_prim(struct rp_derw *w, uint8_t ident, struct rp_view content)
{
    size_t octets = len_octets(content.len);
    if (w->err)
        return w->err;
    if (content.len > SIZE_MAX - 1 - octets)
        return fail(w, RP_E_DER_ENCODE);
    uint8_t *p = reserve(w, 1 + octets + content.len);
    if (!p)
        return w->err;
    p[0] = ident;
    put_len(p + 1, content.len, octets);
    if (content.len)
        memcpy(p + 1 + octets, content.p, content.len);
    return RP_OK;
}

int rp_derw_int64(struct rp_derw *w, uint8_t ident, int64_t v)
{
    uint8_t b[sizeof v];
    uint64_t u = (uint64_t)v;
    for (size_t i = sizeof b; i-- > 0; u >>= BITS_PER_OCTET)
        b[i] = (uint8_t)u;
    /* Minimal two's complement: drop a leading octet while the next one's top bit repeats
     * it (X.690 §8.3.2). */
    size_t i = 0;
    while (i + 1 < sizeof b &&
           ((b[i] == 0x00 && !(b[i + 1] & 0x80)) || (b[i] == 0xFF && (b[i + 1] & 0x80))))
        i++;
    return rp_derw_prim(w, ident, rp_view_make(b + i, sizeof b - i));
}

int rp_derw_uint_bytes(struct rp_derw *w, struct rp_view m)
{
    static const uint8_t zero = 0;
    while (m.len > 0 && m.p[0] == 0) {
        m.p++;
        m.len--;
    }
    if (m.len == 0)
        return rp_derw_prim(w, RP_DER_INTEGER, rp_view_make(&zero, 1));
    if (!(m.p[0] & 0x80))
        return rp_derw_prim(w, RP_DER_INTEGER, m);
    size_t octets = len_octets(m.len + 1);
    uint8_t *p = reserve(w, 1 + octets + 1 + m.len);
    if (!p)
        return w->err;
    p[0] = RP_DER_INTEGER;
    put_len(p + 1, m.len + 1, octets);
    p[1 + octets] = 0;
    memcpy(p + 2 + octets, m.p, m.len);
    return RP_OK;
}

int rp_derw_octets(struct rp_derw *w, struct rp_view v)
{
    return rp_derw_prim(w, RP_DER_OCTET_STRING, v);
}

int rp_derw_bits(struct rp_derw *w, struct rp_view bytes, unsigned unused)
{
    if (w->err)
        return w->err;
    if (unused > MAX_UNUSED_BITS || (unused && bytes.len == 0) ||
        (unused && (bytes.p[bytes.len - 1] & ((1u << unused) - 1u))))
        return fail(w, RP_E_DER_ENCODE);
    size_t octets = len_octets(bytes.len + 1);
    uint8_t *p = reserve(w, 1 + octets + 1 + bytes.len);
    if (!p)
        return w->err;
    p[0] = RP_DER_BIT_STRING;
    put_len(p + 1, bytes.len + 1, octets);
    p[1 + octets] = (uint8_t)unused;
    if (bytes.len)
        memcpy(p + 2 + octets, bytes.p, bytes.len);
    return RP_OK;
}

int rp_derw_named_bits(struct rp_derw *w, uint32_t bits)
{
    uint8_t b[sizeof bits];
    size_t nbytes = 0;
    unsigned highest = 0;
    memset(b, 0, sizeof b);
    for (unsigned i = 0; i < sizeof bits * BITS_PER_OCTET; i++) {
        if (bits & (1u << i)) {
            b[i / BITS_PER_OCTET] |= (uint8_t)(0x80u >> (i % BITS_PER_OCTET));
            highest = i;
            nbytes = i / BITS_PER_OCTET + 1;
        }
    }
    /* X.690 §11.2.2: no trailing zero bits, so the last named bit set ends the string. */
    unsigned unused = nbytes ? MAX_UNUSED_BITS - highest % BITS_PER_OCTET : 0;
    return rp_derw_bits(w, rp_view_make(b, nbytes), unused);
}

int rp_derw_oid(struct rp_derw *w, struct rp_view oid)
{
    if (oid.len == 0)
        return fail(w, RP_E_DER_ENCODE);
    return rp_derw_prim(w, RP_DER_OID, oid);
}

int rp_derw_null(struct rp_derw *w)
{
    return rp_derw_prim(w, RP_DER_NULL, rp_view_make(NULL, 0));
}

int rp_derw_bool(struct rp_derw *w, int v)
{
    uint8_t b = v ? 0xFF : 0x00;
    return rp_derw_prim(w, RP_DER_BOOLEAN, rp_view_make(&b, 1));
}

int rp_derw_utf8(struct rp_derw *w, struct rp_view s)
{
    return rp_derw_prim(w, RP_DER_UTF8_STRING, s);
}

static void put_digits(char *p, int64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
}

int rp_derw_gentime(struct rp_derw *w, int64_t epoch)
{
    int64_t days = epoch / SECS_PER_DAY, secs = epoch % SECS_PER_DAY;
    if (secs < 0) {
        secs += SECS_PER_DAY;
        days--;
    }
    /* Days to civil date (H. Hinnant's algorithm): eras of 400 years from 0000-03-01. */
    int64_t z = days + DAYS_0000_03_01_TO_EPOCH;
    int64_t era = (z >= 0 ? z : z - (DAYS_PER_ERA - 1)) / DAYS_PER_ERA;
    int64_t doe = z - era * DAYS_PER_ERA;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / (DAYS_PER_ERA - 1)) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1;
    int64_t month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * YEARS_PER_ERA + (month <= 2);
    if (year < 0 || year > GENTIME_MAX_YEAR)
        return fail(w, RP_E_DER_ENCODE);
    char t[GENTIME_LEN];
    put_digits(t, year, 4);
    put_digits(t + 4, month, 2);
    put_digits(t + 6, day, 2);
    put_digits(t + 8, secs / SECS_PER_HOUR, 2);
    put_digits(t + 10, secs % SECS_PER_HOUR / SECS_PER_MIN, 2);
    put_digits(t + 12, secs % SECS_PER_MIN, 2);
    t[14] = 'Z';
    return rp_derw_prim(w, RP_DER_GENERALIZED_TIME, rp_view_make(t, sizeof t));
}
