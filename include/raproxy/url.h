/* URLs that configuration names and the runtime connects to, parsed by one function each,
 * so that `--check-config` accepts exactly what the running process can use. */
#ifndef RAPROXY_URL_H
#define RAPROXY_URL_H

#include "raproxy/view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RP_REDIS_DEFAULT_PORT 6379
#define RP_REDIS_URL_MAX      511u

/* redis://[[user]:pass@]host[:port][/db] or unix:/path (also unix:///path). Strings point
 * into `buf`; user and password are percent-decoded. */
struct rp_redis_url {
    const char *host; /* NULL for unix sockets */
    int port;
    const char *path; /* unix socket path, or NULL */
    const char *user; /* NULL when not given */
    const char *pass; /* NULL when not given */
    int db;
    char buf[RP_REDIS_URL_MAX + 1];
};

/* RP_E_CONFIG on anything malformed: a user without a password (AUTH needs one), a bad
 * percent-escape, a port outside 1..65535, a db that is not a number, a scheme other than
 * redis:// or unix:. */
int rp_redis_url_parse(const char *url, struct rp_redis_url *out);

/* The URL with its password replaced by "***", for logs and error messages: a secret never
 * leaves the process. Always NUL-terminates `out` (truncating). */
void rp_redis_url_redact(const char *url, char *out, size_t cap);

#define RP_URL_HOST_MAX 255u
#define RP_URL_PATH_MAX 1023u

/* "host[:port]" or "[v6][:port]" in p[0..n): a DNS name (letters, digits, '-', '.', '_') or an
 * IP literal (IPv6 in brackets, stored without them); the port 1..65535 when given, else
 * *port is left as it is. RP_OK, or RP_E_CONFIG when malformed or host does not fit cap. */
int rp_url_authority_parse(const char *p, size_t n, char *host, size_t cap, uint16_t *port);

/* A path as a URL or a domain names it: starts with '/', no query or fragment, no spaces or
 * control characters. */
bool rp_url_path_ok(const char *path);

/* http[s]://host[:port][/path] — what upstream.url and validation.url name. */
struct rp_http_url {
    bool tls;
    uint16_t port; /* explicit, or 80 / 443 */
    char host[RP_URL_HOST_MAX + 1];
    char path[RP_URL_PATH_MAX + 1]; /* "/" when absent */
};

/* The one parser for HTTP URLs, used by --check-config and by the runtime alike. The scheme
 * in any case; refused: userinfo (a password would reach the logs), a query or fragment (a
 * CMP or OCSP endpoint is a path; the pool would send a query on or drop a fragment
 * silently), spaces and control characters. RP_OK or RP_E_CONFIG. */
int rp_http_url_parse(const char *url, struct rp_http_url *out);

/* Request paths, matched one way everywhere (domains, the OCSP relay, the admin listener):
 * without the query ("?..."), and with a trailing slash optional ("/pkix" and "/pkix/"
 * are one path; "/" stays "/"). */
/* The path is `want`. */
bool rp_url_path_is(struct rp_view path, const char *want);
/* The path is `base` or below it: "/ocsp" covers "/ocsp" and "/ocsp/x", not "/ocspx"; "/"
 * covers every path. *rest (may be NULL): what follows base, without the query. */
bool rp_url_path_under(struct rp_view path, const char *base, struct rp_view *rest);

#endif
