/* Strict DER reader. Every byte read is bounds-checked against the cursor's end, which
 * is itself inside the parent's content; nothing here allocates. */
#include "raproxy/der.h"
#include "raproxy/err.h"

#include <stdio.h>

/* Long-form tag numbers: at most this many base-128 octets (28 bits). */
#define TAG_MAX_OCTETS 4
/* Long-form lengths: at most this many octets; nothing we read comes near 4 GiB. */
#define LEN_MAX_OCTETS     4
#define LEN_RESERVED       0xFFu
#define LEN_INDEFINITE     0x80u
#define UNIVERSAL_EOC      0u
#define UNIVERSAL_SEQUENCE 16u
#define UNIVERSAL_SET      17u
#define BITS_MAX_UNUSED    7u
#define UTC_TIME_LEN       13u /* YYMMDDHHMMSSZ */
#define GEN_TIME_MIN_LEN   15u /* YYYYMMDDHHMMSSZ */
#define UTC_PIVOT_YEAR     50  /* RFC 5280: YY >= 50 is 19YY */
#define SECONDS_PER_DAY    86400
#define NAMED_BITS_MAX     32u

void rp_der_init(struct rp_der *d, const uint8_t *p, size_t n, struct rp_der_err *err)
{
    d->base = p;
    d->p = p;
    d->end = p ? p + n : p; /* NULL + 0 is undefined behaviour in C */
    d->depth = 0;
    d->err = err;
}

int rp_der_fail(const struct rp_der *d, const uint8_t *at, int code, const char *what)
{
    /* The innermost failure is the informative one: keep the first recorded. */
    if (d->err && d->err->code == 0) {
        d->err->code = code;
        d->err->offset = at && at >= d->base ? (size_t)(at - d->base) : 0;
        d->err->expected = what;
    }
    return code;
}

/* Identifier octets at *pp. On success *pp is past them. */
static int read_ident(const struct rp_der *d, const uint8_t **pp, struct rp_der_tlv *t)
{
    const uint8_t *p = *pp, *start = *pp;
    uint8_t b = *p++;
    t->ident = b;
    t->cls = (uint8_t)(b & RP_DER_CLASS_MASK);
    t->constructed = (b & RP_DER_CONSTRUCTED) != 0;
    t->number = b & 0x1Fu;
    if (t->number == 0x1Fu) {
        uint32_t num = 0;
        unsigned i;
        for (i = 0;; i++) {
            if (p >= d->end)
                return rp_der_fail(d, start, RP_E_DER_TRUNCATED, "tag number octets");
            if (i == TAG_MAX_OCTETS)
                return rp_der_fail(d, start, RP_E_DER_TAG, "tag number below 2^28");
            b = *p++;
            if (i == 0 && b == 0x80u)
                return rp_der_fail(d, start, RP_E_DER_NONMINIMAL, "minimal long-form tag");
            num = (num << 7) | (b & 0x7Fu);
            if (!(b & 0x80u))
                break;
        }
        if (num < 0x1Fu)
            return rp_der_fail(d, start, RP_E_DER_NONMINIMAL, "short-form tag for number < 31");
        t->number = num;
    }
    if (t->cls == RP_DER_CLASS_UNIVERSAL) {
        int must_construct = t->number == UNIVERSAL_SEQUENCE || t->number == UNIVERSAL_SET;
        if (t->number == UNIVERSAL_EOC)
            return rp_der_fail(d, start, RP_E_DER_TAG, "a tag (end-of-contents is BER)");
        /* DER: SEQUENCE/SET constructed, every string and scalar primitive. */
        if (must_construct != (int)t->constructed)
            return rp_der_fail(d, start, RP_E_DER_TAG, "primitive/constructed as DER requires");
    }
    *pp = p;
    return RP_OK;
}

static int read_len(const struct rp_der *d, const uint8_t **pp, const uint8_t *start, size_t *len)
{
    const uint8_t *p = *pp;
    if (p >= d->end)
        return rp_der_fail(d, start, RP_E_DER_TRUNCATED, "length octets");
    uint8_t b = *p++;
    if (b < 0x80u) {
        *len = b;
    } else if (b == LEN_INDEFINITE) {
        return rp_der_fail(d, start, RP_E_DER_INDEFINITE, "definite length");
    } else if (b == LEN_RESERVED) {
        return rp_der_fail(d, start, RP_E_DER_NONMINIMAL, "length (0xFF is reserved)");
    } else {
        unsigned n = b & 0x7Fu;
        size_t v = 0;
        if (n > LEN_MAX_OCTETS)
            return rp_der_fail(d, start, RP_E_DER_TRUNCATED, "length below 4 GiB");
        if ((size_t)(d->end - p) < n)
            return rp_der_fail(d, start, RP_E_DER_TRUNCATED, "length octets");
        if (p[0] == 0)
            return rp_der_fail(d, start, RP_E_DER_NONMINIMAL, "length without leading zero");
        for (unsigned i = 0; i < n; i++)
            v = (v << 8) | p[i];
        p += n;
        if (v < 0x80u)
            return rp_der_fail(d, start, RP_E_DER_NONMINIMAL, "short-form length below 128");
        *len = v;
    }
    if ((size_t)(d->end - p) < *len)
        return rp_der_fail(d, start, RP_E_DER_TRUNCATED, "content within the enclosing element");
    *pp = p;
    return RP_OK;
}

int rp_der_peek(const struct rp_der *d, struct rp_der_tlv *t)
{
    const uint8_t *p = d->p;
    size_t len;
    int rc;
    if (p >= d->end)
        return rp_der_fail(d, p, RP_E_DER_TRUNCATED, "another element");
    if ((rc = read_ident(d, &p, t)) < 0)
        return rc;
    if ((rc = read_len(d, &p, d->p, &len)) < 0)
        return rc;
    t->val = rp_view_make(p, len);
    t->raw = rp_view_make(d->p, (size_t)(p - d->p) + len);
    return RP_OK;
}

int rp_der_next(struct rp_der *d, struct rp_der_tlv *t)
{
    int rc = rp_der_peek(d, t);
    if (rc == RP_OK)
        d->p = t->raw.p + t->raw.len;
    return rc;
}

int rp_der_expect(struct rp_der *d, uint8_t ident, struct rp_der_tlv *t, const char *what)
{
    struct rp_der_tlv tmp;
    int rc;
    if (d->p >= d->end)
        return rp_der_fail(d, d->p, RP_E_DER_TRUNCATED, what);
    if ((rc = rp_der_peek(d, &tmp)) < 0)
        return rc;
    if (tmp.ident != ident || tmp.number >= 0x1Fu)
        return rp_der_fail(d, d->p, RP_E_DER_TAG, what);
    *t = tmp;
    d->p = tmp.raw.p + tmp.raw.len;
    return RP_OK;
}

int rp_der_optional(struct rp_der *d, uint8_t ident, struct rp_der_tlv *t)
{
    struct rp_der_tlv tmp;
    int rc;
    if (d->p >= d->end)
        return 0;
    if ((rc = rp_der_peek(d, &tmp)) < 0)
        return rc;
    if (tmp.ident != ident || tmp.number >= 0x1Fu)
        return 0;
    *t = tmp;
    d->p = tmp.raw.p + tmp.raw.len;
    return 1;
}

int rp_der_enter(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_der *child)
{
    if (!t->constructed)
        return rp_der_fail(d, t->raw.p, RP_E_DER_TAG, "constructed element");
    if (d->depth + 1 > RP_DER_MAX_DEPTH)
        return rp_der_fail(d, t->raw.p, RP_E_DER_DEPTH, "nesting within the depth cap");
    child->base = d->base;
    child->p = t->val.p;
    child->end = t->val.p + t->val.len;
    child->depth = d->depth + 1;
    child->err = d->err;
    return RP_OK;
}

int rp_der_expect_enter(struct rp_der *d, uint8_t ident, struct rp_der *child, struct rp_der_tlv *t,
                        const char *what)
{
    struct rp_der_tlv tmp;
    int rc = rp_der_expect(d, ident, t ? t : &tmp, what);
    if (rc < 0)
        return rc;
    return rp_der_enter(d, t ? t : &tmp, child);
}

int rp_der_finish(const struct rp_der *d, const char *what)
{
    if (d->p != d->end)
        return rp_der_fail(d, d->p, RP_E_DER_TRAILING, what);
    return RP_OK;
}

int rp_der_count(const struct rp_der *d, size_t min, size_t max, size_t *count)
{
    struct rp_der c = *d;
    struct rp_der_tlv t;
    size_t n = 0;
    int rc;
    while (rp_der_left(&c) > 0) {
        if (n == max)
            return rp_der_fail(d, c.p, RP_E_DER_COUNT, "no more elements than the cap");
        if ((rc = rp_der_next(&c, &t)) < 0)
            return rc;
        n++;
    }
    if (n < min)
        return rp_der_fail(d, d->p, RP_E_DER_COUNT, "at least one element");
    *count = n;
    return RP_OK;
}

int rp_der_parse_one(const uint8_t *p, size_t n, struct rp_der_tlv *t, struct rp_der_err *err)
{
    struct rp_der d;
    int rc;
    rp_der_init(&d, p, n, err);
    if ((rc = rp_der_next(&d, t)) < 0)
        return rc;
    return rp_der_finish(&d, "end of input after the element");
}

/* Type checks for universal primitives met inside opaque values. */
static int check_universal(const struct rp_der *d, const struct rp_der_tlv *t)
{
    struct rp_view v;
    struct rp_der_bits b;
    int64_t tm;
    int x;
    switch (t->ident) {
    case RP_DER_BOOLEAN:
        return rp_der_bool(d, t, &x);
    case RP_DER_INTEGER:
    case RP_DER_ENUMERATED:
        return rp_der_int(d, t, &v);
    case RP_DER_BIT_STRING:
        return rp_der_bits(d, t, &b);
    case RP_DER_NULL:
        return rp_der_null(d, t);
    case RP_DER_OID:
        return rp_der_oid(d, t, &v);
    case RP_DER_UTC_TIME:
    case RP_DER_GENERALIZED_TIME:
        return rp_der_time(d, t, &tm);
    default:
        return rp_der_string(d, t);
    }
}

int rp_der_validate(const struct rp_der *d, const struct rp_der_tlv *t)
{
    struct rp_der c;
    struct rp_der_tlv k;
    size_t n = 0;
    int rc;
    if (!t->constructed)
        return t->cls == RP_DER_CLASS_UNIVERSAL ? check_universal(d, t) : RP_OK;
    if ((rc = rp_der_enter(d, t, &c)) < 0)
        return rc;
    while (rp_der_left(&c) > 0) {
        /* Bound the work on hostile input: depth x elements stays small. */
        if (n++ == RP_DER_MAX_ELEMENTS)
            return rp_der_fail(d, c.p, RP_E_DER_COUNT, "no more elements than the cap");
        if ((rc = rp_der_next(&c, &k)) < 0)
            return rc;
        if ((rc = rp_der_validate(&c, &k)) < 0)
            return rc;
    }
    return RP_OK;
}

int rp_der_int(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_view *out)
{
    const uint8_t *p = t->val.p;
    if (t->val.len == 0)
        return rp_der_fail(d, t->raw.p, RP_E_DER_INTEGER, "INTEGER with content");
    if (t->val.len > 1 && ((p[0] == 0x00 && !(p[1] & 0x80u)) || (p[0] == 0xFF && (p[1] & 0x80u))))
        return rp_der_fail(d, t->raw.p, RP_E_DER_INTEGER, "minimally encoded INTEGER");
    *out = t->val;
    return RP_OK;
}

int rp_der_int64(const struct rp_der *d, const struct rp_der_tlv *t, int64_t *out)
{
    struct rp_view v;
    int rc = rp_der_int(d, t, &v);
    if (rc < 0)
        return rc;
    if (v.len > sizeof(int64_t))
        return rp_der_fail(d, t->raw.p, RP_E_DER_INTEGER, "INTEGER within 64 bits");
    uint64_t u = (v.p[0] & 0x80u) ? UINT64_MAX : 0; /* sign extension */
    for (size_t i = 0; i < v.len; i++)
        u = (u << 8) | v.p[i];
    *out = (int64_t)u;
    return RP_OK;
}

int rp_der_uint_bytes(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_view *out)
{
    struct rp_view v;
    int rc = rp_der_int(d, t, &v);
    if (rc < 0)
        return rc;
    if (v.p[0] & 0x80u)
        return rp_der_fail(d, t->raw.p, RP_E_DER_INTEGER, "non-negative INTEGER");
    if (v.len > 1 && v.p[0] == 0) {
        v.p++;
        v.len--;
    }
    *out = v;
    return RP_OK;
}

int rp_der_bool(const struct rp_der *d, const struct rp_der_tlv *t, int *out)
{
    if (t->val.len != 1 || (t->val.p[0] != 0x00 && t->val.p[0] != 0xFF))
        return rp_der_fail(d, t->raw.p, RP_E_DER_BOOLEAN, "BOOLEAN 0x00 or 0xFF");
    *out = t->val.p[0] != 0;
    return RP_OK;
}

int rp_der_null(const struct rp_der *d, const struct rp_der_tlv *t)
{
    if (t->val.len != 0)
        return rp_der_fail(d, t->raw.p, RP_E_DER_TAG, "NULL without content");
    return RP_OK;
}

int rp_der_bits(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_der_bits *out)
{
    const uint8_t *p = t->val.p;
    size_t n = t->val.len;
    if (n == 0)
        return rp_der_fail(d, t->raw.p, RP_E_DER_BITSTRING, "BIT STRING unused-bits octet");
    unsigned unused = p[0];
    if (unused > BITS_MAX_UNUSED || (n == 1 && unused != 0))
        return rp_der_fail(d, t->raw.p, RP_E_DER_BITSTRING, "unused bits 0..7 (0 when empty)");
    if (unused && (p[n - 1] & ((1u << unused) - 1u)))
        return rp_der_fail(d, t->raw.p, RP_E_DER_BITSTRING, "zero unused bits");
    out->bytes = rp_view_make(p + 1, n - 1);
    out->unused = unused;
    return RP_OK;
}

int rp_der_named_bits(const struct rp_der *d, const struct rp_der_tlv *t, uint32_t *out)
{
    struct rp_der_bits b;
    uint32_t v = 0;
    int rc = rp_der_bits(d, t, &b);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < b.bytes.len; i++) {
        for (unsigned k = 0; k < 8; k++) {
            if (!(b.bytes.p[i] & (0x80u >> k)))
                continue;
            size_t bit = i * 8 + k;
            if (bit >= NAMED_BITS_MAX)
                return rp_der_fail(d, t->raw.p, RP_E_DER_BITSTRING, "named bits below 32");
            v |= 1u << bit;
        }
    }
    *out = v;
    return RP_OK;
}

int rp_der_oid(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_view *out)
{
    const uint8_t *p = t->val.p;
    size_t n = t->val.len;
    if (n == 0)
        return rp_der_fail(d, t->raw.p, RP_E_DER_OID, "OBJECT IDENTIFIER with content");
    if (p[n - 1] & 0x80u)
        return rp_der_fail(d, t->raw.p, RP_E_DER_OID, "complete last sub-identifier");
    for (size_t i = 0; i < n; i++) {
        int first = i == 0 || !(p[i - 1] & 0x80u);
        if (first && p[i] == 0x80u)
            return rp_der_fail(d, t->raw.p, RP_E_DER_OID, "minimal sub-identifier");
    }
    *out = t->val;
    return RP_OK;
}

int rp_der_oid_str(struct rp_view oid, char *buf, size_t cap)
{
    size_t w = 0, i = 0;
    int first = 1;
    if (cap)
        buf[0] = 0;
    if (oid.len == 0)
        return RP_E_DER_OID;
    while (i < oid.len) {
        uint64_t v = 0;
        do {
            if (i >= oid.len || v > (UINT64_MAX >> 7))
                return RP_E_DER_OID;
            v = (v << 7) | (oid.p[i] & 0x7Fu);
        } while (oid.p[i++] & 0x80u);
        char part[48];
        int k;
        if (first) {
            /* The first sub-identifier packs two arcs: 40 * X + Y, X in 0..2. */
            uint64_t x = v < 40 ? 0 : v < 80 ? 1 : 2;
            k = snprintf(part, sizeof part, "%llu.%llu", (unsigned long long)x,
                         (unsigned long long)(v - 40 * x));
            first = 0;
        } else {
            k = snprintf(part, sizeof part, ".%llu", (unsigned long long)v);
        }
        if (k < 0 || w + (size_t)k + 1 > cap)
            return RP_E_INVAL;
        memcpy(buf + w, part, (size_t)k + 1);
        w += (size_t)k;
    }
    return (int)w;
}

static int digits(const uint8_t *p, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), H. Hinnant's algorithm. */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int rp_der_time(const struct rp_der *d, const struct rp_der_tlv *t, int64_t *epoch)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const uint8_t *p = t->val.p;
    size_t n = t->val.len;
    int year, mon, day, hh, mm, ss;
    const char *what;
    if (t->ident == RP_DER_UTC_TIME) {
        what = "UTCTime YYMMDDHHMMSSZ";
        if (n != UTC_TIME_LEN || p[n - 1] != 'Z' || digits(p, 2, &year) < 0)
            return rp_der_fail(d, t->raw.p, RP_E_DER_TIME, what);
        year += year >= UTC_PIVOT_YEAR ? 1900 : 2000;
        p += 2;
    } else if (t->ident == RP_DER_GENERALIZED_TIME) {
        what = "GeneralizedTime YYYYMMDDHHMMSS[.f]Z";
        if (n < GEN_TIME_MIN_LEN || p[n - 1] != 'Z' || digits(p, 4, &year) < 0)
            return rp_der_fail(d, t->raw.p, RP_E_DER_TIME, what);
        if (n > GEN_TIME_MIN_LEN) {
            /* ".f+" between seconds and Z: digits, no trailing zero (X.690 §11.7). */
            const uint8_t *f = p + GEN_TIME_MIN_LEN - 1, *z = p + n - 1;
            int dummy;
            if (f[0] != '.' || z - f < 2 || z[-1] == '0' ||
                digits(f + 1, (size_t)(z - f - 1), &dummy) < 0)
                return rp_der_fail(d, t->raw.p, RP_E_DER_TIME, what);
        }
        p += 4;
    } else {
        return rp_der_fail(d, t->raw.p, RP_E_DER_TAG, "UTCTime or GeneralizedTime");
    }
    if (digits(p, 2, &mon) < 0 || digits(p + 2, 2, &day) < 0 || digits(p + 4, 2, &hh) < 0 ||
        digits(p + 6, 2, &mm) < 0 || digits(p + 8, 2, &ss) < 0)
        return rp_der_fail(d, t->raw.p, RP_E_DER_TIME, what);
    if (mon < 1 || mon > 12 || day < 1 || hh > 23 || mm > 59 || ss > 59)
        return rp_der_fail(d, t->raw.p, RP_E_DER_TIME, what);
    if (day > mdays[mon - 1] + (mon == 2 && is_leap(year)))
        return rp_der_fail(d, t->raw.p, RP_E_DER_TIME, what);
    *epoch = days_from_civil(year, mon, day) * SECONDS_PER_DAY + hh * 3600 + mm * 60 + ss;
    return RP_OK;
}

int rp_der_algid(const struct rp_der *d, const struct rp_der_tlv *t, struct rp_der_algid *out)
{
    struct rp_der c;
    struct rp_der_tlv k;
    int rc;
    if (t->ident != RP_DER_SEQUENCE)
        return rp_der_fail(d, t->raw.p, RP_E_DER_TAG, "AlgorithmIdentifier SEQUENCE");
    if ((rc = rp_der_enter(d, t, &c)) < 0)
        return rc;
    if ((rc = rp_der_expect(&c, RP_DER_OID, &k, "OID algorithm")) < 0)
        return rc;
    if ((rc = rp_der_oid(&c, &k, &out->oid)) < 0)
        return rc;
    out->params = RP_VIEW_NULL;
    if (rp_der_left(&c) > 0) {
        if ((rc = rp_der_next(&c, &k)) < 0)
            return rc;
        if ((rc = rp_der_validate(&c, &k)) < 0)
            return rc;
        out->params = k.raw;
    }
    if ((rc = rp_der_finish(&c, "end of AlgorithmIdentifier")) < 0)
        return rc;
    out->raw = t->raw;
    return RP_OK;
}

static int printable(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           memchr(" '()+,-./:=?", c, 12) != NULL;
}

/* Well-formed UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static int utf8_ok(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80u) {
            i++;
            continue;
        } else if ((c & 0xE0u) == 0xC0u) {
            k = 1, cp = c & 0x1Fu, min = 0x80;
        } else if ((c & 0xF0u) == 0xE0u) {
            k = 2, cp = c & 0x0Fu, min = 0x800;
        } else if ((c & 0xF8u) == 0xF0u) {
            k = 3, cp = c & 0x07u, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i - 1 < k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0u) != 0x80u)
                return 0;
            cp = (cp << 6) | (p[i + j] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFFu || (cp >= 0xD800u && cp <= 0xDFFFu))
            return 0;
        i += k + 1;
    }
    return 1;
}

int rp_der_string(const struct rp_der *d, const struct rp_der_tlv *t)
{
    const uint8_t *p = t->val.p;
    size_t n = t->val.len;
    int ok = 1;
    switch (t->ident) {
    case RP_DER_UTF8_STRING:
        ok = utf8_ok(p, n);
        break;
    case RP_DER_PRINTABLE_STRING:
        for (size_t i = 0; i < n && ok; i++)
            ok = printable(p[i]);
        break;
    case RP_DER_IA5_STRING:
        for (size_t i = 0; i < n && ok; i++)
            ok = p[i] < 0x80u;
        break;
    case RP_DER_BMP_STRING:
        ok = n % 2 == 0;
        break;
    case RP_DER_UNIVERSAL_STRING:
        ok = n % 4 == 0;
        break;
    default:
        break;
    }
    if (!ok)
        return rp_der_fail(d, t->raw.p, RP_E_DER_STRING, "well-formed character string");
    return RP_OK;
}
