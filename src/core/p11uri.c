/* RFC 7512 PKCS#11 URIs: parsing only (libc), so that the configuration checks can refuse
 * a malformed key setting with its line; src/cmp/pkcs11.c opens what a URI names. */
#include "raproxy/err.h"
#include "raproxy/p11uri.h"

#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool rp_p11_is_uri(const char *s)
{
    return s && strncasecmp(s, RP_P11_SCHEME, sizeof RP_P11_SCHEME - 1) == 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode v[0..n) into out[0..cap); returns the length or -1 (bad escape, too long). */
static long pct_decode(const char *v, size_t n, uint8_t *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)v[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h1 = hexval(v[i + 1]), h2 = hexval(v[i + 2]);
            if (h1 < 0 || h2 < 0)
                return -1;
            c = h1 * 16 + h2;
            i += 2;
        }
        if (o >= cap)
            return -1;
        out[o++] = (uint8_t)c;
    }
    return (long)o;
}

/* A text attribute into dst[cap] (NUL-terminated, no NUL inside). */
static int set_text(char *dst, size_t cap, const char *v, size_t n)
{
    long len = pct_decode(v, n, (uint8_t *)dst, cap - 1);
    if (len < 0 || memchr(dst, 0, (size_t)len))
        return -1;
    dst[len] = 0;
    return 0;
}

/* What an attribute's value becomes. */
enum attr_kind {
    ATTR_TEXT,        /* NUL-terminated text at `off`, `cap` bytes */
    ATTR_SLOT_ID,     /* decimal slot number */
    ATTR_OBJECT,      /* the key's label: text, not empty */
    ATTR_ID,          /* the key's CKA_ID: bytes */
    ATTR_TYPE,        /* must be "private" */
    ATTR_MODULE_NAME, /* refused: module-path or ra.pkcs11.module name the module */
    ATTR_LIBRARY,     /* refused: library-* attributes */
};

#define TEXT_AT(field)                                                                             \
    ATTR_TEXT, offsetof(struct rp_p11_uri, field), sizeof(((struct rp_p11_uri *)0)->field)

static const struct attr {
    const char *name;
    bool query;
    enum attr_kind kind;
    size_t off, cap;
} attrs[] = {
    {"token", false, TEXT_AT(token)},
    {"manufacturer", false, TEXT_AT(manufacturer)},
    {"serial", false, TEXT_AT(serial)},
    {"model", false, TEXT_AT(model)},
    {"slot-description", false, TEXT_AT(slot_description)},
    {"slot-manufacturer", false, TEXT_AT(slot_manufacturer)},
    {"slot-id", false, ATTR_SLOT_ID, 0, 0},
    {"object", false, ATTR_OBJECT, 0, 0},
    {"id", false, ATTR_ID, 0, 0},
    {"type", false, ATTR_TYPE, 0, 0},
    {"library-manufacturer", false, ATTR_LIBRARY, 0, 0},
    {"library-description", false, ATTR_LIBRARY, 0, 0},
    {"library-version", false, ATTR_LIBRARY, 0, 0},
    {"pin-source", true, TEXT_AT(pin_source)},
    {"pin-value", true, TEXT_AT(pin_value)},
    {"module-path", true, TEXT_AT(module_path)},
    {"module-name", true, ATTR_MODULE_NAME, 0, 0},
};

_Static_assert(sizeof attrs / sizeof attrs[0] <= 32, "one `seen` bit per attribute");

static int uri_attr(struct rp_p11_uri *u, const char *name, size_t nlen, const char *v, size_t vlen,
                    bool query, unsigned *seen, const char **why)
{
    size_t k = 0, count = sizeof attrs / sizeof attrs[0];
    while (k < count && !(attrs[k].query == query && strlen(attrs[k].name) == nlen &&
                          strncmp(attrs[k].name, name, nlen) == 0))
        k++;
    if (k == count) {
        *why = query ? "unknown query attribute (pin-source, pin-value, module-path)"
                     : "unknown path attribute (token, manufacturer, serial, model, slot-id, "
                       "slot-description, slot-manufacturer, object, id, type)";
        return RP_E_CONFIG;
    }
    const struct attr *a = &attrs[k];
    if (*seen & (1u << k)) {
        *why = "an attribute appears twice";
        return RP_E_CONFIG;
    }
    *seen |= 1u << k;
    char tmp[64];
    int bad = 0;
    switch (a->kind) {
    case ATTR_TEXT:
        bad = set_text((char *)u + a->off, a->cap, v, vlen);
        break;
    case ATTR_SLOT_ID: {
        char *end;
        bad = set_text(tmp, sizeof tmp, v, vlen) || !isdigit((unsigned char)tmp[0]);
        if (!bad) {
            errno = 0;
            u->slot_id = strtoul(tmp, &end, 10);
            bad = *end != 0 || errno != 0;
            u->has_slot_id = !bad;
        }
        break;
    }
    case ATTR_OBJECT:
        if (set_text(u->object, sizeof u->object, v, vlen) || !u->object[0]) {
            *why = "object: empty, malformed or longer than 32 bytes";
            return RP_E_CONFIG;
        }
        break;
    case ATTR_ID: {
        long n = pct_decode(v, vlen, u->id, sizeof u->id);
        if (n <= 0) {
            *why = "id: empty, malformed or longer than 32 bytes";
            return RP_E_CONFIG;
        }
        u->id_len = (size_t)n;
        u->has_id = true;
        break;
    }
    case ATTR_TYPE:
        bad = set_text(tmp, sizeof tmp, v, vlen);
        if (!bad && strcmp(tmp, "private") != 0) {
            *why = "type must be private: the key signs";
            return RP_E_CONFIG;
        }
        break;
    case ATTR_MODULE_NAME:
        *why = "module-name is not supported: give module-path or ra.pkcs11.module";
        return RP_E_CONFIG;
    case ATTR_LIBRARY:
        *why = "library-* attributes are not supported: name the module with module-path "
               "or ra.pkcs11.module";
        return RP_E_CONFIG;
    }
    if (bad)
        *why =
            query ? "malformed or too long query value" : "malformed or too long attribute value";
    return bad ? RP_E_CONFIG : RP_OK;
}

/* One ';'- or '&'-separated list of name=value pairs. */
static int uri_list(struct rp_p11_uri *u, const char *s, size_t n, char sep, bool query,
                    unsigned *seen, const char **why)
{
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && s[e] != sep)
            e++;
        const char *eq = memchr(s + i, '=', e - i);
        if (!eq || eq == s + i) {
            *why = "expected name=value";
            return RP_E_CONFIG;
        }
        int rc = uri_attr(u, s + i, (size_t)(eq - (s + i)), eq + 1, (size_t)(s + e - eq - 1), query,
                          seen, why);
        if (rc != RP_OK)
            return rc;
        i = e + 1;
    }
    return RP_OK;
}

int rp_p11_uri_parse(const char *uri, struct rp_p11_uri *out, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    memset(out, 0, sizeof *out);
    if (!rp_p11_is_uri(uri)) {
        *why = "not a pkcs11: URI";
        return RP_E_CONFIG;
    }
    const char *p = uri + sizeof RP_P11_SCHEME - 1;
    const char *q = strchr(p, '?');
    size_t plen = q ? (size_t)(q - p) : strlen(p);
    unsigned seen = 0;
    int rc = uri_list(out, p, plen, ';', false, &seen, why);
    if (rc == RP_OK && q)
        rc = uri_list(out, q + 1, strlen(q + 1), '&', true, &seen, why);
    if (rc == RP_OK && !out->object[0] && !out->has_id) {
        *why = "names no key: add object= (CKA_LABEL) or id= (CKA_ID)";
        rc = RP_E_CONFIG;
    }
    if (rc == RP_OK && out->pin_source[0] && out->pin_value[0]) {
        *why = "pin-source and pin-value together";
        rc = RP_E_CONFIG;
    }
    if (rc != RP_OK)
        explicit_bzero(out->pin_value, sizeof out->pin_value);
    return rc;
}
