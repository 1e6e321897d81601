/* Plain-socket HTTP/1.1 client for integration tests (no libuv, no wolfSSL): enough to
 * drive raproxy's plain listeners and admin port, one request or many in parallel. */
#ifndef RP_TEST_HTTPC_H
#define RP_TEST_HTTPC_H

#include <stddef.h>
#include <stdint.h>

struct rpt_resp {
    int status; /* 0 when no answer */
    char ctype[128];
    uint8_t *body; /* malloc'ed, NUL-terminated */
    size_t body_len;
    char headers[2048];
};

void rpt_resp_free(struct rpt_resp *r);

/* One request on a fresh connection ("Connection: close"); timeout in ms for the whole
 * exchange. Returns 0 when a complete response came back. */
int rpt_http(int port, const char *method, const char *path, const char *ctype, const void *body,
             size_t len, int timeout_ms, struct rpt_resp *out);

/* n clients at once, each on its own keep-alive connection sending `per_conn` identical
 * requests one after the other. Returns how many responses with status `want` arrived. */
int rpt_http_parallel(int port, const char *path, const char *ctype, const void *body, size_t len,
                      int n, int per_conn, int want, int timeout_ms);

/* Connect and return the socket (blocking), -1 on error. */
int rpt_connect(int port);

#endif
