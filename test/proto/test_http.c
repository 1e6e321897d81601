/* Device-side HTTP: request parser limits, pipelining, and the response writer. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "raproxy/buf.h"
#include "raproxy/err.h"
#include "raproxy/http.h"

#define MAX_HDR  1024
#define MAX_BODY 4096

static const struct rp_http_limits limits = {MAX_HDR, MAX_BODY};

static const char good_req[] = "POST /.well-known/cmp/p/vendor HTTP/1.1\r\n"
                               "Host: ra.example:8443\r\n"
                               "Content-Type: application/pkixcmp\r\n"
                               "Content-Length: 5\r\n"
                               "\r\n"
                               "hello";

static int feed_str(struct rp_http_server *s, const char *str, size_t *consumed,
                    struct rp_http_req **req)
{
    return rp_http_server_feed(s, (const uint8_t *)str, strlen(str), consumed, req);
}

static void expect_view(struct rp_view v, const char *want)
{
    cr_assert_not_null(v.p, "expected \"%s\", got no value", want);
    cr_assert_eq(v.len, strlen(want), "length %zu, want %zu (%s)", v.len, strlen(want), want);
    cr_assert(memcmp(v.p, want, v.len) == 0, "expected \"%s\", got \"%.*s\"", want, (int)v.len,
              (const char *)v.p);
}

static void expect_good(const struct rp_http_req *r)
{
    cr_assert_eq(r->method, HTTP_POST);
    expect_view(r->path, "/.well-known/cmp/p/vendor");
    expect_view(r->host, "ra.example:8443");
    expect_view(r->content_type, "application/pkixcmp");
    cr_assert(r->has_length);
    cr_assert_eq(r->content_length, 5);
    cr_assert(!r->chunked);
    cr_assert(r->keep_alive);
    cr_assert_eq(r->http_minor, 1);
    expect_view(r->body, "hello");
}

Test(http_server, parses_a_complete_request)
{
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    cr_assert_eq(rp_http_server_phase(&s), RP_HTTP_IDLE);
    size_t used = 0;
    struct rp_http_req *r = NULL;
    cr_assert_eq(feed_str(&s, good_req, &used, &r), RP_OK);
    cr_assert_eq(used, strlen(good_req));
    expect_good(r);
    rp_http_server_next(&s);
    cr_assert_eq(rp_http_server_phase(&s), RP_HTTP_IDLE);
    cr_assert_null(s.m.body.data, "body memory released between requests");
    cr_assert_null(s.m.strs.data, "header memory released between requests");
    rp_http_server_free(&s);
}

Test(http_server, same_request_split_at_every_byte_boundary)
{
    size_t n = strlen(good_req);
    for (size_t k = 0; k <= n; k++) {
        struct rp_http_server s;
        rp_http_server_init(&s, &limits);
        size_t used = 0;
        struct rp_http_req *r = NULL;
        int rc = rp_http_server_feed(&s, (const uint8_t *)good_req, k, &used, &r);
        if (k < n) {
            cr_assert_eq(rc, RP_E_AGAIN, "split %zu: rc %d", k, rc);
            cr_assert_eq(used, k);
            /* the caller may overwrite its buffer: copies, not pointers, must be kept */
            char copy[sizeof good_req];
            memcpy(copy, good_req, n);
            memset((char *)copy, 'X', k);
            rc = rp_http_server_feed(&s, (const uint8_t *)copy + k, n - k, &used, &r);
            cr_assert_eq(used, n - k);
        }
        cr_assert_eq(rc, RP_OK, "split %zu: rc %d", k, rc);
        expect_good(r);
        rp_http_server_free(&s);
    }
}

Test(http_server, request_fed_one_byte_at_a_time_reports_phases)
{
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    size_t n = strlen(good_req), used;
    size_t body_at = strstr(good_req, "\r\n\r\n") - good_req + 4;
    struct rp_http_req *r = NULL;
    for (size_t i = 0; i < n; i++) {
        int rc = rp_http_server_feed(&s, (const uint8_t *)good_req + i, 1, &used, &r);
        cr_assert_eq(used, 1);
        if (i + 1 < n) {
            cr_assert_eq(rc, RP_E_AGAIN);
            enum rp_http_phase want = i + 1 >= body_at ? RP_HTTP_BODY : RP_HTTP_HEADERS;
            cr_assert_eq(rp_http_server_phase(&s), want, "after byte %zu", i);
        } else {
            cr_assert_eq(rc, RP_OK);
        }
    }
    expect_good(r);
    rp_http_server_free(&s);
}

static char *request_with_header_of(size_t total_header_bytes)
{
    /* request line + one filler header + final CRLF == total_header_bytes exactly */
    static const char head[] = "POST /x HTTP/1.1\r\nX-Fill: ";
    static const char tail[] = "\r\n\r\n";
    size_t fill = total_header_bytes - (sizeof head - 1) - (sizeof tail - 1);
    char *buf = malloc(total_header_bytes + 1);
    memcpy(buf, head, sizeof head - 1);
    memset(buf + sizeof head - 1, 'a', fill);
    memcpy(buf + sizeof head - 1 + fill, tail, sizeof tail);
    return buf;
}

Test(http_server, header_section_at_the_limit_is_accepted)
{
    char *req = request_with_header_of(MAX_HDR);
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    struct rp_http_req *r = NULL;
    cr_assert_eq(feed_str(&s, req, NULL, &r), RP_OK);
    cr_assert_eq(r->body.len, 0);
    cr_assert_null(r->content_type.p, "missing Content-Type is reported as absent");
    rp_http_server_free(&s);
    free(req);
}

Test(http_server, header_section_over_the_limit_is_431)
{
    char *req = request_with_header_of(MAX_HDR + 1);
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    size_t used = 0;
    struct rp_http_req *r = NULL;
    cr_assert_eq(feed_str(&s, req, &used, &r), RP_E_HTTP_HEADER_TOO_LARGE);
    cr_assert_leq(used, MAX_HDR, "never parses past the header budget");
    cr_assert_eq(rp_err_http(RP_E_HTTP_HEADER_TOO_LARGE), 431);
    /* the error is sticky */
    cr_assert_eq(feed_str(&s, "\r\n", &used, &r), RP_E_HTTP_HEADER_TOO_LARGE);
    rp_http_server_free(&s);
    free(req);
}

Test(http_server, endless_headers_in_small_pieces_are_cut_at_the_limit)
{
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    size_t used;
    struct rp_http_req *r = NULL;
    cr_assert_eq(feed_str(&s, "POST /x HTTP/1.1\r\n", &used, &r), RP_E_AGAIN);
    int rc = RP_E_AGAIN;
    for (int i = 0; i < 1000 && rc == RP_E_AGAIN; i++)
        rc = feed_str(&s, "A: b\r\n", &used, &r);
    cr_assert_eq(rc, RP_E_HTTP_HEADER_TOO_LARGE);
    rp_http_server_free(&s);
}

Test(http_server, content_length_over_the_cap_is_413_before_the_body)
{
    char req[256];
    snprintf(req, sizeof req,
             "POST /x HTTP/1.1\r\nContent-Type: application/pkixcmp\r\nContent-Length: %d\r\n\r\n",
             MAX_BODY + 1);
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    struct rp_http_req *r = NULL;
    /* no body byte has been sent: the verdict comes from the header alone */
    cr_assert_eq(feed_str(&s, req, NULL, &r), RP_E_HTTP_BODY_TOO_LARGE);
    cr_assert_null(s.m.body.data, "nothing allocated for a refused body");
    rp_http_server_free(&s);
}

Test(http_server, body_of_exactly_the_cap_is_accepted)
{
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    struct rp_buf b;
    rp_buf_init(&b, 0);
    rp_buf_printf(&b, "POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n", MAX_BODY);
    for (int i = 0; i < MAX_BODY; i++)
        rp_buf_append(&b, "z", 1);
    struct rp_http_req *r = NULL;
    cr_assert_eq(rp_http_server_feed(&s, b.data, b.len, NULL, &r), RP_OK);
    cr_assert_eq(r->body.len, MAX_BODY);
    cr_assert_eq(r->body.p[MAX_BODY - 1], 'z');
    rp_buf_free(&b);
    rp_http_server_free(&s);
}

Test(http_server, chunked_body_is_reassembled)
{
    static const char req[] = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n";
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    struct rp_http_req *r = NULL;
    size_t used;
    cr_assert_eq(feed_str(&s, req, &used, &r), RP_OK);
    cr_assert_eq(used, strlen(req));
    cr_assert(r->chunked);
    cr_assert(!r->has_length);
    expect_view(r->body, "abcdefg");
    rp_http_server_free(&s);
}

Test(http_server, chunked_body_over_the_cap_is_413)
{
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    size_t used;
    struct rp_http_req *r = NULL;
    cr_assert_eq(feed_str(&s, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &used, &r),
                 RP_E_AGAIN);
    char chunk[1024 + 16];
    int n = snprintf(chunk, sizeof chunk, "400\r\n");
    memset(chunk + n, 'q', 1024);
    memcpy(chunk + n + 1024, "\r\n", 2);
    size_t clen = (size_t)n + 1024 + 2;
    int rc = RP_E_AGAIN;
    int sent = 0;
    for (; sent < 10 && rc == RP_E_AGAIN; sent++)
        rc = rp_http_server_feed(&s, (const uint8_t *)chunk, clen, &used, &r);
    cr_assert_eq(rc, RP_E_HTTP_BODY_TOO_LARGE);
    cr_assert_eq(sent, MAX_BODY / 1024 + 1, "fails on the chunk that crosses the cap");
    rp_http_server_free(&s);
}

Test(http_server, malformed_requests_are_400)
{
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost : x\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /x HTTP/1.1\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
        "POST /x HTTP/9.9\r\n\r\n",
        "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct rp_http_server s;
        rp_http_server_init(&s, &limits);
        struct rp_http_req *r = NULL;
        int rc = feed_str(&s, bad[i], NULL, &r);
        cr_assert_eq(rc, RP_E_HTTP_PARSE, "case %zu: rc %d (%s)", i, rc, rp_err_name(rc));
        rp_http_server_free(&s);
    }
    cr_assert_eq(rp_err_http(RP_E_HTTP_PARSE), 400);
}

static void expect_pipelined(int count)
{
    struct rp_buf b;
    rp_buf_init(&b, 0);
    for (int i = 0; i < count; i++)
        rp_buf_printf(&b,
                      "POST /r%d HTTP/1.1\r\nContent-Type: application/pkixcmp\r\n"
                      "Content-Length: 2\r\n\r\nb%d",
                      i, i);
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    size_t off = 0;
    for (int i = 0; i < count; i++) {
        size_t used = 0;
        struct rp_http_req *r = NULL;
        cr_assert_eq(rp_http_server_feed(&s, b.data + off, b.len - off, &used, &r), RP_OK,
                     "request %d", i);
        char want[16];
        snprintf(want, sizeof want, "/r%d", i);
        expect_view(r->path, want);
        snprintf(want, sizeof want, "b%d", i);
        expect_view(r->body, want);
        /* a second feed before next() is a caller bug, and consumes nothing */
        size_t again = 99;
        cr_assert_eq(rp_http_server_feed(&s, b.data + off + used, b.len - off - used, &again, &r),
                     RP_E_INVAL);
        cr_assert_eq(again, 0);
        off += used;
        rp_http_server_next(&s);
    }
    cr_assert_eq(off, b.len);
    rp_buf_free(&b);
    rp_http_server_free(&s);
}

Test(http_server, two_pipelined_requests_come_out_in_order)
{
    expect_pipelined(2);
}

Test(http_server, three_pipelined_requests_come_out_in_order)
{
    expect_pipelined(3);
}

Test(http_server, http10_without_keep_alive_closes)
{
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    struct rp_http_req *r = NULL;
    cr_assert_eq(feed_str(&s, "POST /x HTTP/1.0\r\nContent-Length: 1\r\n\r\nz", NULL, &r), RP_OK);
    cr_assert_eq(r->http_minor, 0);
    cr_assert(!r->keep_alive);
    rp_http_server_free(&s);

    rp_http_server_init(&s, &limits);
    cr_assert_eq(
        feed_str(&s, "POST /x HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nz",
                 NULL, &r),
        RP_OK);
    cr_assert(r->keep_alive);
    rp_http_server_free(&s);
}

Test(http_server, connection_close_on_http11_is_reported)
{
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    struct rp_http_req *r = NULL;
    cr_assert_eq(feed_str(&s, "POST /x HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                          NULL, &r),
                 RP_OK);
    cr_assert(!r->keep_alive);
    rp_http_server_free(&s);
}

Test(http_server, reports_other_methods_and_headers_case_insensitively)
{
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    struct rp_http_req *r = NULL;
    cr_assert_eq(
        feed_str(&s, "GET /livez HTTP/1.1\r\nHOST: h\r\ncOnTeNt-TyPe:  text/plain ; q=1 \r\n\r\n",
                 NULL, &r),
        RP_OK);
    cr_assert_eq(r->method, HTTP_GET);
    expect_view(r->path, "/livez");
    expect_view(r->host, "h");
    expect_view(r->content_type, "text/plain ; q=1");
    cr_assert(!r->has_length);
    cr_assert_eq(r->body.len, 0);
    cr_assert_not_null(r->body.p);
    rp_http_server_free(&s);
}

Test(http_server, media_type_comparison_ignores_case_and_parameters)
{
    cr_assert(rp_http_media_type_is(rp_view_str("application/pkixcmp"), "application/pkixcmp"));
    cr_assert(rp_http_media_type_is(rp_view_str(" Application/PKIXCMP ; charset=binary"),
                                    "application/pkixcmp"));
    cr_assert(
        !rp_http_media_type_is(rp_view_str("application/pkixcmp-poll"), "application/pkixcmp"));
    cr_assert(!rp_http_media_type_is(rp_view_str("application/pkix"), "application/pkixcmp"));
    cr_assert(!rp_http_media_type_is(RP_VIEW_NULL, "application/pkixcmp"));
}

Test(http_response, writes_exact_bytes)
{
    struct rp_buf b;
    rp_buf_init(&b, 0);
    cr_assert_eq(rp_http_write_response(&b, 200, "application/pkixcmp", (const uint8_t *)"abc", 3,
                                        true, NULL),
                 RP_OK);
    static const char want[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: application/pkixcmp\r\n"
                               "Content-Length: 3\r\n"
                               "Connection: keep-alive\r\n"
                               "\r\n"
                               "abc";
    cr_assert_eq(b.len, sizeof want - 1);
    cr_assert(memcmp(b.data, want, b.len) == 0, "got: %.*s", (int)b.len, (const char *)b.data);
    rp_buf_free(&b);
}

Test(http_response, writes_extra_headers_and_no_content_type)
{
    struct rp_buf b;
    rp_buf_init(&b, 0);
    cr_assert_eq(rp_http_write_response(&b, 429, NULL, NULL, 0, false, "Retry-After: 3\r\n"),
                 RP_OK);
    static const char want[] = "HTTP/1.1 429 Too Many Requests\r\n"
                               "Content-Length: 0\r\n"
                               "Connection: close\r\n"
                               "Retry-After: 3\r\n"
                               "\r\n";
    cr_assert_eq(b.len, sizeof want - 1);
    cr_assert(memcmp(b.data, want, b.len) == 0, "got: %.*s", (int)b.len, (const char *)b.data);
    rp_buf_free(&b);
}

Test(http_response, our_response_parses_back)
{
    struct rp_buf b;
    rp_buf_init(&b, 0);
    cr_assert_eq(rp_http_write_response(&b, 503, "text/plain", (const uint8_t *)"busy", 4, true,
                                        "Retry-After: 7\r\n"),
                 RP_OK);
    struct rp_http_client c;
    rp_http_client_init(&c, &limits);
    struct rp_http_resp *r = NULL;
    cr_assert_eq(rp_http_client_feed(&c, b.data, b.len, NULL, &r), RP_OK);
    cr_assert_eq(r->status, 503);
    expect_view(r->retry_after, "7");
    expect_view(r->body, "busy");
    rp_http_client_free(&c);
    rp_buf_free(&b);
}

Test(http_response, full_buffer_leaves_nothing_behind)
{
    struct rp_buf b;
    rp_buf_init(&b, 64);
    rp_buf_append(&b, "x", 1);
    uint8_t body[100] = {0};
    cr_assert_eq(rp_http_write_response(&b, 200, "a/b", body, sizeof body, true, NULL), RP_E_ARENA);
    cr_assert_eq(b.len, 1, "partial response rolled back");
    rp_buf_free(&b);
}

Test(http_response, reason_phrases)
{
    cr_assert_str_eq(rp_http_reason(200), "OK");
    cr_assert_str_eq(rp_http_reason(413), "Content Too Large");
    cr_assert_str_eq(rp_http_reason(431), "Request Header Fields Too Large");
    cr_assert_str_eq(rp_http_reason(299), "Unknown");
}
