/* Upstream side of HTTP/1.1: the Host header, the request writer and the response parser.
 * The response parser shares the engine in http.c; every failure is reported as
 * RP_E_UPSTREAM_PROTOCOL, because what the device should see is "the CA answered
 * garbage" (502), not the CA's size problem. */
#include "raproxy/err.h"
#include "raproxy/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_DEFAULT_PORT  80
#define HTTPS_DEFAULT_PORT 443

/* ---- URLs (parsed by rp_http_url_parse in src/core/url.c) ---- */

int rp_url_host_header(const struct rp_http_url *u, char *out, size_t outlen)
{
    bool v6 = strchr(u->host, ':') != NULL;
    bool dflt = u->port == (u->tls ? HTTPS_DEFAULT_PORT : HTTP_DEFAULT_PORT);
    int n;
    if (dflt)
        n = snprintf(out, outlen, v6 ? "[%s]" : "%s", u->host);
    else
        n = snprintf(out, outlen, v6 ? "[%s]:%u" : "%s:%u", u->host, (unsigned)u->port);
    return n < 0 || (size_t)n >= outlen ? RP_E_INVAL : RP_OK;
}

/* ---- request writer ---- */

int rp_http_write_request(struct rp_buf *out, const char *method, const char *host_header,
                          const char *path, const char *content_type, const uint8_t *body,
                          size_t len, bool keep_alive)
{
    if (!method || !host_header || !path || (len && !body))
        return RP_E_INVAL;
    size_t mark = out->len;
    int rc = rp_buf_printf(out, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host_header);
    if (!rc && content_type)
        rc = rp_buf_printf(out, "Content-Type: %s\r\n", content_type);
    if (!rc)
        rc = rp_buf_printf(out, "Content-Length: %zu\r\nConnection: %s\r\n\r\n", len,
                           keep_alive ? "keep-alive" : "close");
    if (!rc)
        rc = rp_buf_append(out, body, len);
    if (rc)
        out->len = mark;
    return rc;
}

/* ---- response parser ---- */

#define HTTP_STATUS_INFORMATIONAL_MAX 199

void rp_http_client_init(struct rp_http_client *c, const struct rp_http_limits *l)
{
    rp_http_msg_init_(&c->m, HTTP_RESPONSE, l, RP_E_UPSTREAM_PROTOCOL, RP_E_UPSTREAM_PROTOCOL,
                      RP_E_UPSTREAM_PROTOCOL);
    memset(&c->resp, 0, sizeof c->resp);
}

void rp_http_client_free(struct rp_http_client *c)
{
    rp_http_msg_free_(&c->m);
}

static void fill_resp(struct rp_http_client *c, bool at_eof)
{
    struct rp_http_msg_ *m = &c->m;
    struct rp_http_resp *r = &c->resp;
    r->status = m->parser.status_code;
    r->content_type = rp_http_msg_view_(m, m->fields[RP_HTTP_F_CONTENT_TYPE_]);
    r->retry_after = rp_http_msg_view_(m, m->fields[RP_HTTP_F_RETRY_AFTER_]);
    r->keep_alive = !at_eof && llhttp_should_keep_alive(&m->parser);
    r->body = m->body.data ? rp_view_make(m->body.data, m->body.len) : rp_view_make("", 0);
}

int rp_http_client_feed(struct rp_http_client *c, const uint8_t *p, size_t n, size_t *consumed,
                        struct rp_http_resp **resp)
{
    size_t total = 0;
    int rc;
    for (;;) {
        size_t used = 0;
        rc = rp_http_msg_feed_(&c->m, p + total, n - total, &used);
        total += used;
        if (rc != RP_OK)
            break;
        int status = c->m.parser.status_code;
        /* 100 Continue and friends precede the real answer; 101 would switch protocols,
         * which we never asked for */
        if (status > HTTP_STATUS_INFORMATIONAL_MAX || status == 101) {
            if (status == 101)
                rc = c->m.err = RP_E_UPSTREAM_PROTOCOL;
            else
                fill_resp(c, false);
            break;
        }
        rp_http_msg_reset_(&c->m);
    }
    if (consumed)
        *consumed = total;
    if (rc == RP_OK && resp)
        *resp = &c->resp;
    return rc;
}

int rp_http_client_eof(struct rp_http_client *c, struct rp_http_resp **resp)
{
    struct rp_http_msg_ *m = &c->m;
    if (m->ready) {
        if (resp)
            *resp = &c->resp;
        return RP_OK;
    }
    if (m->err || m->phase != RP_HTTP_BODY || !llhttp_message_needs_eof(&m->parser))
        return RP_E_UPSTREAM_CLOSED;
    llhttp_errno_t e = llhttp_finish(&m->parser);
    if ((e != HPE_OK && e != HPE_PAUSED) || !m->ready)
        return RP_E_UPSTREAM_CLOSED;
    fill_resp(c, true);
    if (resp)
        *resp = &c->resp;
    return RP_OK;
}

void rp_http_client_next(struct rp_http_client *c)
{
    rp_http_msg_reset_(&c->m);
    memset(&c->resp, 0, sizeof c->resp);
}

enum rp_http_phase rp_http_client_phase(const struct rp_http_client *c)
{
    return c->m.phase;
}
