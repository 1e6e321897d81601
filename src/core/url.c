/* URL parsing shared by configuration checks and the runtime (see url.h). */
#include "raproxy/url.h"

#include "raproxy/err.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int pct_decode(char *s)
{
    char *w = s;
    for (const char *p = s; *p; p++) {
        if (*p == '%') {
            int hi = hexval((unsigned char)p[1]);
            int lo = hi < 0 ? -1 : hexval((unsigned char)p[2]);
            if (lo < 0)
                return RP_E_CONFIG;
            *w++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return RP_OK;
}

static int parse_uint(const char *s, long max, long *out)
{
    char *end;
    if (!*s || !isdigit((unsigned char)*s))
        return RP_E_CONFIG;
    long v = strtol(s, &end, 10);
    if (*end || v > max)
        return RP_E_CONFIG;
    *out = v;
    return RP_OK;
}

static int parse_userinfo(struct rp_redis_url *o, char *s)
{
    char *colon = strchr(s, ':');
    /* a user without a password cannot AUTH: refuse rather than guess */
    if (!colon)
        return RP_E_CONFIG;
    *colon = '\0';
    if (pct_decode(s) != RP_OK || pct_decode(colon + 1) != RP_OK)
        return RP_E_CONFIG;
    o->user = *s ? s : NULL;
    o->pass = colon + 1;
    return RP_OK;
}

static int parse_hostport(struct rp_redis_url *o, char *s)
{
    char *port = NULL;
    if (*s == '[') {
        char *e = strchr(s, ']');
        if (!e)
            return RP_E_CONFIG;
        *e = '\0';
        o->host = s + 1;
        if (e[1] == ':')
            port = e + 2;
        else if (e[1])
            return RP_E_CONFIG;
    } else {
        char *colon = strrchr(s, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
        o->host = s;
    }
    if (!*o->host)
        return RP_E_CONFIG;
    if (port) {
        long v;
        if (parse_uint(port, 65535, &v) != RP_OK || v == 0)
            return RP_E_CONFIG;
        o->port = (int)v;
    }
    return RP_OK;
}

int rp_redis_url_parse(const char *url, struct rp_redis_url *o)
{
    static const char scheme[] = "redis://";
    memset(o, 0, sizeof *o);
    o->port = RP_REDIS_DEFAULT_PORT;
    if (!url || strlen(url) >= sizeof o->buf)
        return RP_E_CONFIG;
    if (strncmp(url, "unix:", 5) == 0) {
        const char *p = url + 5;
        if (strncmp(p, "//", 2) == 0)
            p += 2;
        if (*p != '/')
            return RP_E_CONFIG;
        strcpy(o->buf, p);
        o->path = o->buf;
        return RP_OK;
    }
    if (strncmp(url, scheme, sizeof scheme - 1) != 0)
        return RP_E_CONFIG;
    char *s = o->buf;
    strcpy(s, url + sizeof scheme - 1);
    char *slash = strchr(s, '/');
    if (slash) {
        *slash = '\0';
        long db = 0;
        if (slash[1] && parse_uint(slash + 1, 1 << 20, &db) != RP_OK)
            return RP_E_CONFIG;
        o->db = (int)db;
    }
    char *at = strrchr(s, '@');
    char *hostport = s;
    if (at) {
        *at = '\0';
        hostport = at + 1;
        if (parse_userinfo(o, s) != RP_OK)
            return RP_E_CONFIG;
    }
    return parse_hostport(o, hostport);
}

void rp_redis_url_redact(const char *url, char *out, size_t cap)
{
    if (!cap)
        return;
    out[0] = '\0';
    if (!url)
        return;
    const char *scheme = strstr(url, "://");
    const char *auth = scheme ? scheme + 3 : url;
    const char *at = strrchr(auth, '@');
    const char *slash = strchr(auth, '/');
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!at || (slash && slash < at) || !colon) {
        snprintf(out, cap, "%s", url);
        return;
    }
    snprintf(out, cap, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

/* ------------------------------------------------------------------- HTTP URLs */

#define HTTP_DEFAULT_PORT  80
#define HTTPS_DEFAULT_PORT 443
#define PORT_DIGITS_MAX    5

static bool host_name_ok(const char *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-' && h[i] != '_')
            return false;
    return n > 0;
}

static int port_parse(const char *p, size_t n, uint16_t *port)
{
    if (n == 0 || n > PORT_DIGITS_MAX)
        return RP_E_CONFIG;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return RP_E_CONFIG;
        v = v * 10u + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > UINT16_MAX)
        return RP_E_CONFIG;
    *port = (uint16_t)v;
    return RP_OK;
}

int rp_url_authority_parse(const char *p, size_t n, char *host, size_t cap, uint16_t *port)
{
    const char *h = p, *hend, *colon = NULL;
    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (!close)
            return RP_E_CONFIG;
        h = p + 1;
        hend = close;
        if (close + 1 < p + n) {
            if (close[1] != ':')
                return RP_E_CONFIG;
            colon = close + 1;
        }
    } else {
        colon = memchr(p, ':', n);
        hend = colon ? colon : p + n;
    }
    size_t hlen = (size_t)(hend - h);
    if (hlen == 0 || hlen >= cap)
        return RP_E_CONFIG;
    memcpy(host, h, hlen);
    host[hlen] = 0;
    if (p[0] == '[') {
        unsigned char a6[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET6, host, a6) != 1)
            return RP_E_CONFIG;
    } else if (!host_name_ok(host, hlen)) {
        return RP_E_CONFIG;
    }
    if (colon && port_parse(colon + 1, (size_t)(p + n - colon - 1), port) != RP_OK)
        return RP_E_CONFIG;
    return RP_OK;
}

static bool url_char_ok(char c)
{
    return (unsigned char)c > ' ' && c != 0x7f && c != '?' && c != '#';
}

bool rp_url_path_ok(const char *path)
{
    if (!path || path[0] != '/')
        return false;
    for (; *path; path++)
        if (!url_char_ok(*path))
            return false;
    return true;
}

int rp_http_url_parse(const char *url, struct rp_http_url *out)
{
    if (!url || !out)
        return RP_E_CONFIG;
    memset(out, 0, sizeof *out);
    for (const char *c = url; *c; c++)
        if (!url_char_ok(*c))
            return RP_E_CONFIG;
    const char *rest;
    if (strncasecmp(url, "http://", 7) == 0) {
        rest = url + 7;
        out->port = HTTP_DEFAULT_PORT;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        rest = url + 8;
        out->port = HTTPS_DEFAULT_PORT;
        out->tls = true;
    } else {
        return RP_E_CONFIG;
    }
    size_t alen = strcspn(rest, "/");
    if (memchr(rest, '@', alen) ||
        rp_url_authority_parse(rest, alen, out->host, sizeof out->host, &out->port) != RP_OK)
        return RP_E_CONFIG;
    const char *path = rest[alen] ? rest + alen : "/";
    size_t plen = strlen(path);
    if (plen >= sizeof out->path)
        return RP_E_CONFIG;
    memcpy(out->path, path, plen + 1);
    return RP_OK;
}

/* ---- request paths ---- */

static size_t without_query(struct rp_view path)
{
    for (size_t i = 0; i < path.len; i++)
        if (path.p[i] == '?')
            return i;
    return path.len;
}

static size_t without_trailing_slash(const uint8_t *p, size_t n)
{
    while (n > 1 && p[n - 1] == '/')
        n--;
    return n;
}

bool rp_url_path_is(struct rp_view path, const char *want)
{
    size_t plen = without_trailing_slash(path.p, without_query(path));
    size_t wlen = without_trailing_slash((const uint8_t *)want, strlen(want));
    return plen == wlen && (plen == 0 || memcmp(path.p, want, plen) == 0);
}

bool rp_url_path_under(struct rp_view path, const char *base, struct rp_view *rest)
{
    size_t plen = without_query(path);
    size_t blen = without_trailing_slash((const uint8_t *)base, strlen(base));
    bool ok = blen == 1 ? plen >= 1 && path.p[0] == '/'
                        : blen > 0 && plen >= blen && memcmp(path.p, base, blen) == 0 &&
                              (plen == blen || path.p[blen] == '/');
    if (ok && rest)
        *rest = rp_view_make(path.p + blen, plen - blen);
    return ok;
}
