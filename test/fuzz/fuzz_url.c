/* libFuzzer target for the URL parsers of src/core/url.c (upstream.url, validation.url,
 * redis.url, listener addresses): any input either parses into terminated fields that obey
 * the documented rules or is refused; never a read or write outside them. The first byte
 * picks the parser so one corpus serves all three. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "raproxy/err.h"
#include "raproxy/http.h"
#include "raproxy/url.h"

/* Longer than any URL a configuration holds; keeps runs fast. */
#define FUZZ_MAX_URL 4096

static void check_http(const char *s)
{
    struct rp_http_url u;
    if (rp_http_url_parse(s, &u) != RP_OK)
        return;
    if (strnlen(u.host, sizeof u.host) == sizeof u.host || !u.host[0] ||
        strnlen(u.path, sizeof u.path) == sizeof u.path || !rp_url_path_ok(u.path) || u.port == 0 ||
        strchr(s, '?'))
        abort();
    const char *auth = strstr(s, "://") + 3;
    const char *at = strchr(auth, '@'), *slash = strchr(auth, '/');
    if (at && (!slash || at < slash))
        abort(); /* userinfo is refused: a password would reach the logs */
    char hh[RP_URL_HOST_MAX + 16];
    if (rp_url_host_header(&u, hh, sizeof hh) != RP_OK)
        abort(); /* any host that parsed fits a Host header */
}

static void check_redis(const char *s)
{
    struct rp_redis_url u;
    if (rp_redis_url_parse(s, &u) != RP_OK)
        return;
    if ((u.host == NULL) == (u.path == NULL) || (u.host && (u.port < 1 || u.port > 65535)) ||
        (u.user && !u.pass) || u.db < 0)
        abort();
    char red[RP_REDIS_URL_MAX + 1];
    rp_redis_url_redact(s, red, sizeof red);
    if (u.pass && !strstr(red, ":***@"))
        abort(); /* a URL with a password is always logged with it masked */
}

static void check_authority(const char *s)
{
    char host[64];
    uint16_t port = 0;
    if (rp_url_authority_parse(s, strlen(s), host, sizeof host, &port) != RP_OK)
        return;
    if (strnlen(host, sizeof host) == sizeof host || !host[0])
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX_URL)
        return 0;
    char *s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = 0;
    switch (data[0] % 3) {
    case 0:
        check_http(s);
        break;
    case 1:
        check_redis(s);
        break;
    default:
        check_authority(s);
        break;
    }
    free(s);
    return 0;
}
