/* HTTP/1.1 message parsing engine (llhttp) shared by the request and response parsers,
 * the device-side request parser and the response writer.
 *
 * llhttp hands out pointers into whatever buffer is being executed, so anything we report
 * after the call (path, header values, body) is copied into parser-owned buffers. Size
 * limits are enforced on wire bytes: while in the header phase we never hand llhttp more
 * than the remaining header budget, so a flood of header bytes is cut off exactly at the
 * limit instead of after a whole read. */
#include "raproxy/http.h"
#include "raproxy/err.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static struct rp_http_msg_ *msg_of(llhttp_t *p)
{
    return p->data;
}

static int fail(struct rp_http_msg_ *m, int err)
{
    if (!m->err)
        m->err = err;
    return HPE_USER;
}

/* Append to the captured-strings buffer, extending span s (always the latest one written,
 * so the bytes stay contiguous). */
static int capture(struct rp_http_msg_ *m, struct rp_http_span_ *s, const char *at, size_t n)
{
    if (!s->set) {
        s->set = true;
        s->off = (uint32_t)m->strs.len;
        s->len = 0;
    }
    int rc = rp_buf_append(&m->strs, at, n);
    if (rc == RP_E_ARENA)
        return fail(m, m->header_err);
    if (rc)
        return fail(m, rc);
    s->len += (uint32_t)n;
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    msg_of(p)->phase = RP_HTTP_HEADERS;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct rp_http_msg_ *m = msg_of(p);
    return capture(m, &m->url, at, n);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct rp_http_msg_ *m = msg_of(p);
    if (m->phase == RP_HTTP_BODY) {
        /* trailers after a chunked body: not reported, but bounded like headers */
        m->trailer_bytes += n;
        return m->trailer_bytes > m->limits.max_header_bytes ? fail(m, m->header_err) : 0;
    }
    /* llhttp 8 lets "Host : x" through; RFC 9112 §5.1 requires a 400 (smuggling vector) */
    if (memchr(at, ' ', n) || memchr(at, '\t', n))
        return fail(m, m->syntax_err);
    if (m->name_len > RP_HTTP_FIELD_NAME_MAX_)
        return 0;
    if (n > (size_t)(RP_HTTP_FIELD_NAME_MAX_ - m->name_len)) {
        m->name_len = RP_HTTP_FIELD_NAME_MAX_ + 1;
        return 0;
    }
    memcpy(m->name + m->name_len, at, n);
    m->name_len = (uint8_t)(m->name_len + n);
    return 0;
}

static const char *const field_names[RP_HTTP_F_COUNT_] = {
    [RP_HTTP_F_CONTENT_TYPE_] = "content-type",
    [RP_HTTP_F_HOST_] = "host",
    [RP_HTTP_F_RETRY_AFTER_] = "retry-after",
};

static int on_header_field_complete(llhttp_t *p)
{
    struct rp_http_msg_ *m = msg_of(p);
    m->cur = RP_HTTP_F_OTHER_;
    if (m->phase != RP_HTTP_BODY && m->name_len <= RP_HTTP_FIELD_NAME_MAX_) {
        for (int f = RP_HTTP_F_OTHER_ + 1; f < RP_HTTP_F_COUNT_; f++) {
            if (strlen(field_names[f]) == m->name_len &&
                strncasecmp(field_names[f], m->name, m->name_len) == 0) {
                /* a repeated Host or Content-Type is ambiguous (RFC 9112 §3.2, 9110
                 * §5.3): refuse rather than pick one */
                if (m->fields[f].set)
                    return fail(m, m->syntax_err);
                m->cur = (uint8_t)f;
                m->fields[f] = (struct rp_http_span_){(uint32_t)m->strs.len, 0, true};
                break;
            }
        }
    }
    m->name_len = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct rp_http_msg_ *m = msg_of(p);
    if (m->phase == RP_HTTP_BODY) {
        m->trailer_bytes += n;
        return m->trailer_bytes > m->limits.max_header_bytes ? fail(m, m->header_err) : 0;
    }
    if (m->cur == RP_HTTP_F_OTHER_)
        return 0;
    return capture(m, &m->fields[m->cur], at, n);
}

static int on_header_value_complete(llhttp_t *p)
{
    struct rp_http_msg_ *m = msg_of(p);
    if (m->cur != RP_HTTP_F_OTHER_) {
        struct rp_http_span_ *s = &m->fields[m->cur];
        const uint8_t *v = m->strs.data + s->off;
        while (s->len && (v[s->len - 1] == ' ' || v[s->len - 1] == '\t'))
            s->len--;
    }
    m->cur = RP_HTTP_F_OTHER_;
    return 0;
}

static int on_chunk_ext(llhttp_t *p, const char *at, size_t n)
{
    (void)at;
    struct rp_http_msg_ *m = msg_of(p);
    m->ext_bytes += n;
    return m->ext_bytes > m->limits.max_header_bytes ? fail(m, m->header_err) : 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct rp_http_msg_ *m = msg_of(p);
    m->phase = RP_HTTP_BODY;
    m->flags = p->flags;
    m->content_length = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
    if (m->content_length > m->limits.max_body_bytes) {
        /* refuse before a single body byte is read */
        fail(m, m->body_err);
        return -1;
    }
    /* one allocation for a body of announced size, so the CMP decoder gets it contiguous
     * without reallocations */
    if (m->content_length) {
        int rc = rp_buf_reserve(&m->body, (size_t)m->content_length);
        if (rc) {
            fail(m, rc == RP_E_ARENA ? m->body_err : rc);
            return -1;
        }
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct rp_http_msg_ *m = msg_of(p);
    int rc = rp_buf_append(&m->body, at, n);
    if (rc == RP_E_ARENA)
        return fail(m, m->body_err);
    if (rc)
        return fail(m, rc);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct rp_http_msg_ *m = msg_of(p);
    m->ready = true;
    /* stop right after this message: the caller handles it before the next one is parsed */
    return HPE_PAUSED;
}

static const llhttp_settings_t msg_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_chunk_extension_name = on_chunk_ext,
    .on_chunk_extension_value = on_chunk_ext,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void rp_http_msg_init_(struct rp_http_msg_ *m, llhttp_type_t type, const struct rp_http_limits *l,
                       int header_err, int body_err, int syntax_err)
{
    memset(m, 0, sizeof *m);
    llhttp_init(&m->parser, type, &msg_settings);
    m->parser.data = m;
    m->limits = *l;
    m->header_err = header_err;
    m->body_err = body_err;
    m->syntax_err = syntax_err;
    rp_buf_init(&m->strs, l->max_header_bytes);
    rp_buf_init(&m->body, l->max_body_bytes);
}

void rp_http_msg_free_(struct rp_http_msg_ *m)
{
    rp_buf_free(&m->strs);
    rp_buf_free(&m->body);
}

void rp_http_msg_reset_(struct rp_http_msg_ *m)
{
    /* idle keep-alive connections must not hold request-sized memory */
    rp_buf_free(&m->strs);
    rp_buf_free(&m->body);
    m->phase = RP_HTTP_IDLE;
    m->ready = false;
    m->hdr_bytes = m->trailer_bytes = m->ext_bytes = 0;
    m->url = (struct rp_http_span_){0, 0, false};
    memset(m->fields, 0, sizeof m->fields);
    m->name_len = 0;
    m->cur = RP_HTTP_F_OTHER_;
    m->content_length = 0;
    m->flags = 0;
    llhttp_resume(&m->parser);
}

int rp_http_msg_feed_(struct rp_http_msg_ *m, const uint8_t *p, size_t n, size_t *consumed)
{
    size_t pos = 0;
    int rc = RP_E_AGAIN;
    if (m->err) {
        rc = m->err;
        goto out;
    }
    if (m->ready) {
        rc = RP_E_INVAL;
        goto out;
    }
    while (pos < n) {
        size_t len = n - pos;
        bool in_header = m->phase != RP_HTTP_BODY;
        if (in_header) {
            size_t budget = m->limits.max_header_bytes - m->hdr_bytes;
            if (budget == 0) {
                rc = m->err = m->header_err;
                goto out;
            }
            if (len > budget)
                len = budget;
        }
        const char *start = (const char *)p + pos;
        llhttp_errno_t e = llhttp_execute(&m->parser, start, len);
        size_t used = len;
        if (e != HPE_OK) {
            const char *ep = llhttp_get_error_pos(&m->parser);
            used = ep && ep >= start && ep <= start + len ? (size_t)(ep - start) : len;
        }
        if (in_header && m->phase != RP_HTTP_BODY && !m->ready)
            m->hdr_bytes += used;
        pos += used;
        if (e == HPE_PAUSED && m->ready) {
            rc = RP_OK;
            goto out;
        }
        if (e != HPE_OK) {
            rc = m->err = m->err ? m->err : m->syntax_err;
            goto out;
        }
    }
    /* budget spent exactly at the end of this input, headers still incomplete */
    if (m->phase != RP_HTTP_BODY && m->hdr_bytes >= m->limits.max_header_bytes)
        rc = m->err = m->header_err;
out:
    if (consumed)
        *consumed = pos;
    return rc;
}

struct rp_view rp_http_msg_view_(const struct rp_http_msg_ *m, struct rp_http_span_ s)
{
    if (!s.set)
        return RP_VIEW_NULL;
    if (!m->strs.data)
        return rp_view_make("", 0);
    return rp_view_make(m->strs.data + s.off, s.len);
}

/* ---- server ---- */

void rp_http_server_init(struct rp_http_server *s, const struct rp_http_limits *l)
{
    rp_http_msg_init_(&s->m, HTTP_REQUEST, l, RP_E_HTTP_HEADER_TOO_LARGE, RP_E_HTTP_BODY_TOO_LARGE,
                      RP_E_HTTP_PARSE);
    memset(&s->req, 0, sizeof s->req);
}

void rp_http_server_free(struct rp_http_server *s)
{
    rp_http_msg_free_(&s->m);
}

static void fill_req(struct rp_http_server *s)
{
    struct rp_http_msg_ *m = &s->m;
    struct rp_http_req *r = &s->req;
    r->method = m->parser.method;
    r->path = rp_http_msg_view_(m, m->url);
    if (!r->path.p)
        r->path = rp_view_make("", 0);
    r->content_type = rp_http_msg_view_(m, m->fields[RP_HTTP_F_CONTENT_TYPE_]);
    r->host = rp_http_msg_view_(m, m->fields[RP_HTTP_F_HOST_]);
    /* an Upgrade we do not speak ends the connection after our answer */
    r->keep_alive = llhttp_should_keep_alive(&m->parser) && !m->parser.upgrade;
    r->has_length = (m->flags & F_CONTENT_LENGTH) != 0;
    r->chunked = (m->flags & F_CHUNKED) != 0;
    r->content_length = m->content_length;
    r->body = m->body.data ? rp_view_make(m->body.data, m->body.len) : rp_view_make("", 0);
    r->http_minor = m->parser.http_minor;
}

int rp_http_server_feed(struct rp_http_server *s, const uint8_t *p, size_t n, size_t *consumed,
                        struct rp_http_req **req)
{
    int rc = rp_http_msg_feed_(&s->m, p, n, consumed);
    if (rc == RP_OK) {
        fill_req(s);
        if (req)
            *req = &s->req;
    }
    return rc;
}

void rp_http_server_next(struct rp_http_server *s)
{
    rp_http_msg_reset_(&s->m);
    memset(&s->req, 0, sizeof s->req);
}

enum rp_http_phase rp_http_server_phase(const struct rp_http_server *s)
{
    return s->m.phase;
}

/* ---- response writer ---- */

const char *rp_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

#define HTTP_STATUS_MIN 100
#define HTTP_STATUS_MAX 999

int rp_http_write_response(struct rp_buf *out, int status, const char *content_type,
                           const uint8_t *body, size_t len, bool keep_alive,
                           const char *extra_headers)
{
    if (status < HTTP_STATUS_MIN || status > HTTP_STATUS_MAX || (len && !body))
        return RP_E_INVAL;
    size_t mark = out->len;
    int rc = rp_buf_printf(out, "HTTP/1.1 %d %s\r\n", status, rp_http_reason(status));
    if (!rc && content_type)
        rc = rp_buf_printf(out, "Content-Type: %s\r\n", content_type);
    if (!rc)
        rc = rp_buf_printf(out, "Content-Length: %zu\r\nConnection: %s\r\n%s\r\n", len,
                           keep_alive ? "keep-alive" : "close", extra_headers ? extra_headers : "");
    if (!rc)
        rc = rp_buf_append(out, body, len);
    if (rc)
        out->len = mark; /* never leave half a response behind */
    return rc;
}

bool rp_http_media_type_is(struct rp_view ct, const char *type)
{
    if (!ct.p || !type)
        return false;
    size_t i = 0, end;
    while (i < ct.len && (ct.p[i] == ' ' || ct.p[i] == '\t'))
        i++;
    end = i;
    while (end < ct.len && ct.p[end] != ';')
        end++;
    while (end > i && (ct.p[end - 1] == ' ' || ct.p[end - 1] == '\t'))
        end--;
    size_t tl = strlen(type);
    return end - i == tl && strncasecmp((const char *)ct.p + i, type, tl) == 0;
}
