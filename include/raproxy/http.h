/* HTTP/1.1 over byte buffers (llhttp): the request parser and response writer for the
 * device side (http.c), the request writer, response parser and URL parser for the
 * upstream side (httpc.c). No sockets here.
 *
 * Both parsers copy what they report (path, a few header values, the body) into memory
 * they own, so the caller may reuse its input buffer at once. Views stay valid until
 * rp_http_server_next / rp_http_client_next / *_free. The parser structs are embedded in
 * a connection; do not move them after init (llhttp keeps a pointer back). Policy (method,
 * media type, paths) is the caller's: the parsers enforce syntax and sizes only. */
#ifndef RAPROXY_HTTP_H
#define RAPROXY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "raproxy/buf.h"
#include "raproxy/url.h"
#include "raproxy/view.h"

struct rp_http_limits {
    size_t max_header_bytes; /* request/status line + header section, CRLFs included */
    size_t max_body_bytes;   /* decoded body */
};

enum rp_http_phase { RP_HTTP_IDLE, RP_HTTP_HEADERS, RP_HTTP_BODY };

/* Internal: the parsing engine shared by the server and client parsers. */
struct rp_http_span_ {
    uint32_t off, len;
    bool set;
};
enum rp_http_field_ {
    RP_HTTP_F_OTHER_,
    RP_HTTP_F_CONTENT_TYPE_,
    RP_HTTP_F_HOST_,
    RP_HTTP_F_RETRY_AFTER_,
    RP_HTTP_F_COUNT_
};
#define RP_HTTP_FIELD_NAME_MAX_ 16
struct rp_http_msg_ {
    llhttp_t parser;
    struct rp_http_limits limits;
    enum rp_http_phase phase;
    bool ready;        /* a complete message waits for *_next */
    bool headers_done; /* paused at headers-complete: size checks pending */
    int err;           /* sticky error once failed */
    size_t hdr_bytes;  /* wire bytes of the header section so far */
    size_t trailer_bytes;
    size_t ext_bytes;   /* chunk-extension bytes (not part of the body, still capped) */
    struct rp_buf strs; /* captured url and header values */
    struct rp_buf body;
    struct rp_http_span_ url;
    struct rp_http_span_ fields[RP_HTTP_F_COUNT_];
    char name[RP_HTTP_FIELD_NAME_MAX_];
    uint8_t name_len;        /* > RP_HTTP_FIELD_NAME_MAX_: too long to be one we keep */
    uint8_t cur;             /* enum rp_http_field_ of the header value being read */
    uint64_t content_length; /* as announced, captured at headers-complete */
    uint16_t flags;          /* llhttp flags at headers-complete */
    int header_err;          /* error codes (server vs client flavour): header section too large, */
    int body_err;            /* body too large, */
    int syntax_err;          /* malformed */
};

/* ---- server side: requests from devices ---- */

struct rp_http_req {
    int method;                  /* llhttp_method_t, e.g. HTTP_POST */
    struct rp_view path;         /* request target as sent (path and query) */
    struct rp_view content_type; /* whole value incl. parameters; p == NULL when absent */
    struct rp_view host;         /* p == NULL when absent */
    bool keep_alive;             /* false for HTTP/1.0 without keep-alive, Connection: close */
    bool has_length;             /* Content-Length was present */
    bool chunked;                /* Transfer-Encoding: chunked */
    uint64_t content_length;
    struct rp_view body; /* contiguous, owned by the parser */
    int http_minor;
};

struct rp_http_server {
    struct rp_http_msg_ m;
    struct rp_http_req req;
};

void rp_http_server_init(struct rp_http_server *s, const struct rp_http_limits *l);
void rp_http_server_free(struct rp_http_server *s);
/* Feed bytes. RP_OK: one complete request is in *req; *consumed says how many bytes were
 * used, the rest is NOT consumed (feed it after rp_http_server_next: that is pipelining).
 * RP_E_AGAIN: all bytes consumed, more needed. Errors (sticky; close after answering):
 * RP_E_HTTP_PARSE (400), RP_E_HTTP_HEADER_TOO_LARGE (431), RP_E_HTTP_BODY_TOO_LARGE (413,
 * from Content-Length at headers-complete before any body byte is read, or while reading a
 * chunked body), RP_E_NOMEM. RP_E_INVAL if called while a request is ready. */
int rp_http_server_feed(struct rp_http_server *s, const uint8_t *p, size_t n, size_t *consumed,
                        struct rp_http_req **req);
/* Done with the current request: releases its memory and readies the next one. */
void rp_http_server_next(struct rp_http_server *s);
/* IDLE between requests (idle timeout), HEADERS (header timeout), BODY (body timeout). */
enum rp_http_phase rp_http_server_phase(const struct rp_http_server *s);

/* Append a complete response: status line, Content-Type (omitted when NULL),
 * Content-Length, Connection: keep-alive|close, extra_headers (each line ending in CRLF,
 * e.g. "Retry-After: 3\r\n"; NULL for none), then the body. */
int rp_http_write_response(struct rp_buf *out, int status, const char *content_type,
                           const uint8_t *body, size_t len, bool keep_alive,
                           const char *extra_headers);
/* "OK", "Not Found", …; "Unknown" for codes not in the table. */
const char *rp_http_reason(int status);
/* Media type of a Content-Type value equals type (case-insensitive), ignoring parameters
 * and surrounding whitespace: "Application/PKIXCMP; charset=x" is "application/pkixcmp". */
bool rp_http_media_type_is(struct rp_view ct, const char *type);

/* ---- client side: requests to the upstream CA ---- */

/* Host header value for a URL: "host", "host:port" when not the default, "[v6]:port". */
int rp_url_host_header(const struct rp_http_url *u, char *out, size_t outlen);

/* Append a request with Host, Content-Type (omitted when NULL), Content-Length (always, so
 * the CA never waits for a close), Connection, and the body. */
int rp_http_write_request(struct rp_buf *out, const char *method, const char *host_header,
                          const char *path, const char *content_type, const uint8_t *body,
                          size_t len, bool keep_alive);

struct rp_http_resp {
    int status;
    struct rp_view content_type; /* p == NULL when absent */
    bool keep_alive;
    struct rp_view body;
    struct rp_view retry_after; /* raw header value, p == NULL when absent */
};

struct rp_http_client {
    struct rp_http_msg_ m;
    struct rp_http_resp resp;
};

void rp_http_client_init(struct rp_http_client *c, const struct rp_http_limits *l);
void rp_http_client_free(struct rp_http_client *c);
/* Same contract as rp_http_server_feed. Interim 1xx responses are skipped. Errors:
 * RP_E_UPSTREAM_PROTOCOL (malformed, header or body over the limits), RP_E_NOMEM. */
int rp_http_client_feed(struct rp_http_client *c, const uint8_t *p, size_t n, size_t *consumed,
                        struct rp_http_resp **resp);
/* The upstream closed: completes a close-delimited response (RP_OK, *resp set, keep_alive
 * false) or returns RP_E_UPSTREAM_CLOSED (nothing or a truncated response received). */
int rp_http_client_eof(struct rp_http_client *c, struct rp_http_resp **resp);
void rp_http_client_next(struct rp_http_client *c);
enum rp_http_phase rp_http_client_phase(const struct rp_http_client *c);

/* Internal, shared by http.c and httpc.c. */
void rp_http_msg_init_(struct rp_http_msg_ *m, llhttp_type_t type, const struct rp_http_limits *l,
                       int header_err, int body_err, int syntax_err);
void rp_http_msg_free_(struct rp_http_msg_ *m);
void rp_http_msg_reset_(struct rp_http_msg_ *m);
int rp_http_msg_feed_(struct rp_http_msg_ *m, const uint8_t *p, size_t n, size_t *consumed);
struct rp_view rp_http_msg_view_(const struct rp_http_msg_ *m, struct rp_http_span_ s);

#endif
