/* URLs that configuration names and the runtime connects to, parsed by one function each,
 * so that `--check-config` accepts exactly what the running process can use. */
#ifndef RAPROXY_URL_H
#define RAPROXY_URL_H

#include <stddef.h>

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

#endif
