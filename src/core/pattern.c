/* Identity patterns: see include/raproxy/pattern.h. */
#include "raproxy/pattern.h"

#include <stdbool.h>
#include <string.h>

static const char *const labels[] = {RP_PATTERN_LABELS};

static const struct {
    const char *name;
    size_t off;
} placeholders[] = {
    {"serial", offsetof(struct rp_pattern_vars, serial)},
    {"cn", offsetof(struct rp_pattern_vars, cn)},
    {"anchor", offsetof(struct rp_pattern_vars, anchor)},
};

int rp_pattern_label_known(const char *label, size_t len)
{
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++)
        if (strlen(labels[i]) == len && memcmp(labels[i], label, len) == 0)
            return 1;
    return 0;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

static struct rp_view trim(const char *p, const char *e)
{
    while (p < e && blank(*p))
        p++;
    /* a trailing blank that is escaped belongs to the value */
    while (e > p && blank(e[-1]) && !(e - 1 > p && e[-2] == '\\'))
        e--;
    return rp_view_make(p, (size_t)(e - p));
}

/* The placeholder starting at p ("{serial}"), or -1; *end past its '}'. */
static int placeholder(const char *p, const char *e, const char **end)
{
    for (size_t i = 0; i < sizeof placeholders / sizeof placeholders[0]; i++) {
        size_t n = strlen(placeholders[i].name);
        if ((size_t)(e - p) >= n + 2 && p[0] == '{' &&
            memcmp(p + 1, placeholders[i].name, n) == 0 && p[n + 1] == '}') {
            *end = p + n + 2;
            return (int)i;
        }
    }
    return -1;
}

int rp_pattern_value_check(struct rp_view tmpl, const char **why)
{
    const char *p = (const char *)tmpl.p, *e = p + tmpl.len;
    while (p < e) {
        if (*p == '\\') {
            if (p + 1 == e) {
                *why = "a value ends with a lone backslash";
                return -1;
            }
            p += 2;
        } else if (*p == '{') {
            if (placeholder(p, e, &p) < 0) {
                *why = "unknown placeholder (use {serial}, {cn} or {anchor})";
                return -1;
            }
        } else if (*p == '}') {
            *why = "unbalanced '}'";
            return -1;
        } else {
            p++;
        }
    }
    return 0;
}

int rp_pattern_subject_parse(const char *s, struct rp_pattern_part *parts, size_t cap, size_t *n,
                             const char **why)
{
    const char *p = s, *end = s + strlen(s);
    *n = 0;
    while (p < end) {
        const char *q = p;
        while (q < end && *q != ',') /* the RDN ends at an unescaped comma */
            q += (*q == '\\' && q + 1 < end) ? 2 : 1;
        const char *eq = memchr(p, '=', (size_t)(q - p));
        if (!eq) {
            *why = "expected LABEL=VALUE";
            return -1;
        }
        struct rp_view label = trim(p, eq), value = trim(eq + 1, q);
        if (!rp_pattern_label_known((const char *)label.p, label.len)) {
            *why = "unknown attribute label (C ST L O OU CN serialNumber SN GN title dnQualifier "
                   "emailAddress DC UID)";
            return -1;
        }
        if (value.len == 0) {
            *why = "empty value";
            return -1;
        }
        if (rp_pattern_value_check(value, why) != 0)
            return -1;
        if (*n == cap) {
            *why = "too many attributes";
            return -1;
        }
        parts[(*n)++] = (struct rp_pattern_part){label, value};
        p = q < end ? q + 1 : q;
    }
    if (*n == 0) {
        *why = "no attribute";
        return -1;
    }
    return 0;
}

int rp_pattern_expand(struct rp_view tmpl, const struct rp_pattern_vars *v, char *out, size_t cap,
                      size_t *len, const char **why)
{
    const char *p = (const char *)tmpl.p, *e = p + tmpl.len;
    size_t n = 0;
    while (p < e) {
        struct rp_view piece;
        int k;
        if (*p == '\\' && p + 1 < e) {
            piece = rp_view_make(p + 1, 1);
            p += 2;
        } else if (*p == '{' && (k = placeholder(p, e, &p)) >= 0) {
            piece = *(const struct rp_view *)((const char *)v + placeholders[k].off);
            if (!rp_view_present(piece) || piece.len == 0) {
                *why = "the identity has no value for a placeholder of the pattern";
                return -1;
            }
        } else {
            piece = rp_view_make(p, 1);
            p++;
        }
        if (n + piece.len >= cap) {
            *why = "the expanded value is too long";
            return -1;
        }
        memcpy(out + n, piece.p, piece.len);
        n += piece.len;
    }
    out[n] = '\0';
    *len = n;
    return 0;
}
