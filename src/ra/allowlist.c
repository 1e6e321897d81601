#include "raproxy/allowlist.h"
#include "raproxy/err.h"
#include "raproxy/file.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Serials longer than this are not serial numbers: refuse to index them. */
#define SERIAL_MAX 128u
/* 4 GiB of serials is beyond any fleet; the offsets are 32-bit. */
#define ALLOWLIST_MAX_FILE ((size_t)UINT32_MAX - 1)

struct slot {
    uint32_t off; /* offset into text, +1 (0 = empty) */
    uint32_t len;
};

struct rp_allowlist {
    char *text; /* the file, serials in place */
    struct slot *slots;
    size_t mask;
    size_t count;
};

static uint64_t hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: short keys, no adversarial control */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static void insert(struct rp_allowlist *a, uint32_t off, uint32_t len)
{
    size_t i = hash((const uint8_t *)a->text + off, len) & a->mask;
    for (;; i = (i + 1) & a->mask) {
        struct slot *s = &a->slots[i];
        if (!s->off) {
            s->off = off + 1;
            s->len = len;
            a->count++;
            return;
        }
        if (s->len == len && memcmp(a->text + s->off - 1, a->text + off, len) == 0)
            return; /* duplicate line */
    }
}

static int build(struct rp_allowlist *a, size_t len)
{
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += a->text[i] == '\n';
    size_t cap = 16;
    while (cap < lines * 2)
        cap <<= 1;
    a->slots = calloc(cap, sizeof *a->slots);
    if (!a->slots)
        return RP_E_NOMEM;
    a->mask = cap - 1;
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && a->text[i] != '\n')
            i++;
        size_t end = i++;
        for (size_t k = start; k < end; k++)
            if (a->text[k] == '#') {
                end = k;
                break;
            }
        while (start < end && blank(a->text[start]))
            start++;
        while (end > start && blank(a->text[end - 1]))
            end--;
        if (end > start && end - start <= SERIAL_MAX)
            insert(a, (uint32_t)start, (uint32_t)(end - start));
    }
    return RP_OK;
}

int rp_allowlist_from_buffer(const char *data, size_t len, struct rp_allowlist **out)
{
    if (len >= UINT32_MAX)
        return RP_E_INVAL;
    struct rp_allowlist *a = calloc(1, sizeof *a);
    if (!a)
        return RP_E_NOMEM;
    a->text = malloc(len + 1);
    if (!a->text) {
        free(a);
        return RP_E_NOMEM;
    }
    memcpy(a->text, data, len);
    int rc = build(a, len);
    if (rc != RP_OK) {
        rp_allowlist_free(a);
        return rc;
    }
    *out = a;
    return RP_OK;
}

static const char *next_tok(const char **p, const char *end, size_t *len)
{
    while (*p < end && blank(**p))
        (*p)++;
    const char *t = *p;
    while (*p < end && !blank(**p))
        (*p)++;
    *len = (size_t)(*p - t);
    return *len ? t : NULL;
}

static bool known_name(const struct rp_allowlist_names *nm, const char *t, size_t len)
{
    for (size_t i = 0; i < nm->n; i++)
        if (strlen(nm->names[i]) == len && memcmp(nm->names[i], t, len) == 0)
            return true;
    return false;
}

/* One line into the key it stands for, appended to out: "SERIAL", or "ANCHOR SERIAL" as
 * "ANCHOR/SERIAL" when the domain is qualified (as "SERIAL" when it is not). */
static int line_key(const struct rp_allowlist_names *nm, const char *p, const char *end, char *out,
                    size_t *olen, const char **why)
{
    size_t l1, l2, l3;
    const char *t1 = next_tok(&p, end, &l1), *t2 = next_tok(&p, end, &l2);
    if (!t1)
        return 0;
    if (next_tok(&p, end, &l3)) {
        *why = "expected SERIAL or ANCHOR SERIAL";
        return RP_E_CONFIG;
    }
    if (!t2) {
        if (nm->qualified) {
            *why = "the domain has several anchor names: write ANCHOR SERIAL";
            return RP_E_CONFIG;
        }
        memcpy(out + *olen, t1, l1);
        *olen += l1;
        return 0;
    }
    if (!known_name(nm, t1, l1) &&
        !(l1 == strlen(nm->mac_name) && memcmp(t1, nm->mac_name, l1) == 0)) {
        *why = "unknown anchor name";
        return RP_E_CONFIG;
    }
    if (nm->qualified) {
        memcpy(out + *olen, t1, l1);
        *olen += l1;
        out[(*olen)++] = '/';
    }
    memcpy(out + *olen, t2, l2);
    *olen += l2;
    return 0;
}

int rp_allowlist_load_named(const char *path, const struct rp_allowlist_names *nm,
                            struct rp_allowlist **out, char *err, size_t errcap)
{
    uint8_t *buf;
    size_t len, olen = 0;
    int rc = rp_file_read(path, ALLOWLIST_MAX_FILE, &buf, &len);
    if (rc != RP_OK) {
        snprintf(err, errcap, "cannot read");
        return rc;
    }
    /* keys are never longer than their line: "A SERIAL" becomes "A/SERIAL" */
    char *keys = malloc(len + 1);
    const char *p = (const char *)buf, *end = p + len;
    unsigned lineno = 0;
    rc = keys ? RP_OK : RP_E_NOMEM;
    while (rc == RP_OK && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        const char *hash = memchr(p, '#', (size_t)(e - p));
        const char *why = NULL;
        size_t before = olen;
        lineno++;
        rc = line_key(nm, p, hash ? hash : e, keys, &olen, &why);
        if (rc != RP_OK)
            snprintf(err, errcap, "line %u: %s", lineno, why);
        else if (olen > before)
            keys[olen++] = '\n';
        p = nl ? nl + 1 : end;
    }
    free(buf);
    if (rc == RP_OK)
        rc = rp_allowlist_from_buffer(keys, olen, out);
    free(keys);
    return rc;
}

int rp_allowlist_load(const char *path, struct rp_allowlist **out)
{
    uint8_t *buf;
    size_t len;
    int rc = rp_file_read(path, ALLOWLIST_MAX_FILE, &buf, &len);
    if (rc != RP_OK)
        return rc;
    rc = rp_allowlist_from_buffer((const char *)buf, len, out);
    free(buf);
    return rc;
}

bool rp_allowlist_contains(const struct rp_allowlist *a, struct rp_view serial)
{
    if (!a || !serial.len || serial.len > SERIAL_MAX)
        return false;
    size_t i = hash(serial.p, serial.len) & a->mask;
    for (;; i = (i + 1) & a->mask) {
        const struct slot *s = &a->slots[i];
        if (!s->off)
            return false;
        if (s->len == serial.len && memcmp(a->text + s->off - 1, serial.p, serial.len) == 0)
            return true;
    }
}

size_t rp_allowlist_count(const struct rp_allowlist *a)
{
    return a ? a->count : 0;
}

void rp_allowlist_free(struct rp_allowlist *a)
{
    if (!a)
        return;
    free(a->text);
    free(a->slots);
    free(a);
}
