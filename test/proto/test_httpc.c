/* Upstream-side HTTP: URL parsing, request writer, response parser. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "raproxy/buf.h"
#include "raproxy/err.h"
#include "raproxy/http.h"

static const struct rp_http_limits limits = {1024, 4096};

static const char ok_resp[] = "HTTP/1.1 200 OK\r\n"
                              "Content-Type: application/pkixcmp\r\n"
                              "Content-Length: 6\r\n"
                              "\r\n"
                              "\x30\x04\x02\x01\x00\x00";

static void expect_view(struct rp_view v, const char *want, size_t wlen)
{
    cr_assert_not_null(v.p);
    cr_assert_eq(v.len, wlen, "length %zu, want %zu", v.len, wlen);
    cr_assert(memcmp(v.p, want, wlen) == 0);
}

static int feed(struct rp_http_client *c, const char *s, size_t n, size_t *used,
                struct rp_http_resp **r)
{
    return rp_http_client_feed(c, (const uint8_t *)s, n, used, r);
}

Test(http_client, parses_a_response_split_at_every_byte_boundary)
{
    size_t n = sizeof ok_resp - 1;
    for (size_t k = 0; k <= n; k++) {
        struct rp_http_client c;
        rp_http_client_init(&c, &limits);
        struct rp_http_resp *r = NULL;
        size_t used = 0;
        int rc = feed(&c, ok_resp, k, &used, &r);
        if (k < n) {
            cr_assert_eq(rc, RP_E_AGAIN, "split %zu", k);
            cr_assert_eq(used, k);
            rc = feed(&c, ok_resp + k, n - k, &used, &r);
            cr_assert_eq(used, n - k);
        }
        cr_assert_eq(rc, RP_OK, "split %zu: %d", k, rc);
        cr_assert_eq(r->status, 200);
        cr_assert(r->keep_alive);
        expect_view(r->content_type, "application/pkixcmp", 19);
        expect_view(r->body, "\x30\x04\x02\x01\x00\x00", 6);
        cr_assert_null(r->retry_after.p);
        rp_http_client_free(&c);
    }
}

Test(http_client, parses_a_chunked_response)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                               "Content-Type: application/pkixcmp\r\n\r\n"
                               "2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n";
    struct rp_http_client c;
    rp_http_client_init(&c, &limits);
    struct rp_http_resp *r = NULL;
    size_t used;
    cr_assert_eq(feed(&c, resp, sizeof resp - 1, &used, &r), RP_OK);
    cr_assert_eq(used, sizeof resp - 1);
    expect_view(r->body, "abcde", 5);
    cr_assert(r->keep_alive);
    rp_http_client_free(&c);
}

Test(http_client, close_delimited_response_completes_at_eof)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/pkixcmp\r\n\r\nbody";
    struct rp_http_client c;
    rp_http_client_init(&c, &limits);
    struct rp_http_resp *r = NULL;
    cr_assert_eq(feed(&c, resp, sizeof resp - 1, NULL, &r), RP_E_AGAIN);
    cr_assert_eq(feed(&c, "more", 4, NULL, &r), RP_E_AGAIN);
    cr_assert_eq(rp_http_client_eof(&c, &r), RP_OK);
    cr_assert_eq(r->status, 200);
    cr_assert(!r->keep_alive);
    expect_view(r->body, "bodymore", 8);
    rp_http_client_free(&c);
}

Test(http_client, eof_without_a_complete_response_is_upstream_closed)
{
    struct rp_http_resp *r = NULL;
    struct rp_http_client c;

    rp_http_client_init(&c, &limits);
    cr_assert_eq(rp_http_client_eof(&c, &r), RP_E_UPSTREAM_CLOSED, "nothing received");
    rp_http_client_free(&c);

    rp_http_client_init(&c, &limits);
    cr_assert_eq(feed(&c, "HTTP/1.1 200 OK\r\nContent-Le", 27, NULL, &r), RP_E_AGAIN);
    cr_assert_eq(rp_http_client_eof(&c, &r), RP_E_UPSTREAM_CLOSED, "inside the headers");
    rp_http_client_free(&c);

    rp_http_client_init(&c, &limits);
    static const char trunc[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    cr_assert_eq(feed(&c, trunc, sizeof trunc - 1, NULL, &r), RP_E_AGAIN);
    cr_assert_eq(rp_http_client_eof(&c, &r), RP_E_UPSTREAM_CLOSED, "short body");
    rp_http_client_free(&c);
}

Test(http_client, reports_non_200_statuses_and_retry_after)
{
    static const char resp[] = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\n"
                               "Content-Length: 4\r\nConnection: close\r\n\r\nbusy";
    struct rp_http_client c;
    rp_http_client_init(&c, &limits);
    struct rp_http_resp *r = NULL;
    cr_assert_eq(feed(&c, resp, sizeof resp - 1, NULL, &r), RP_OK);
    cr_assert_eq(r->status, 503);
    cr_assert(!r->keep_alive);
    expect_view(r->retry_after, "30", 2);
    expect_view(r->body, "busy", 4);
    cr_assert_null(r->content_type.p);
    rp_http_client_free(&c);

    static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    rp_http_client_init(&c, &limits);
    cr_assert_eq(feed(&c, nf, sizeof nf - 1, NULL, &r), RP_OK);
    cr_assert_eq(r->status, 404);
    cr_assert_eq(r->body.len, 0);
    rp_http_client_free(&c);
}

Test(http_client, skips_interim_100_continue)
{
    static const char resp[] = "HTTP/1.1 100 Continue\r\n\r\n"
                               "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    struct rp_http_client c;
    rp_http_client_init(&c, &limits);
    struct rp_http_resp *r = NULL;
    size_t used;
    cr_assert_eq(feed(&c, resp, sizeof resp - 1, &used, &r), RP_OK);
    cr_assert_eq(used, sizeof resp - 1);
    cr_assert_eq(r->status, 200);
    expect_view(r->body, "ok", 2);
    rp_http_client_free(&c);
}

Test(http_client, keep_alive_responses_in_sequence)
{
    static const char two[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA"
                              "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB";
    struct rp_http_client c;
    rp_http_client_init(&c, &limits);
    struct rp_http_resp *r = NULL;
    size_t used, off = 0;
    cr_assert_eq(feed(&c, two, sizeof two - 1, &used, &r), RP_OK);
    expect_view(r->body, "A", 1);
    off += used;
    rp_http_client_next(&c);
    cr_assert_eq(rp_http_client_phase(&c), RP_HTTP_IDLE);
    cr_assert_eq(feed(&c, two + off, sizeof two - 1 - off, &used, &r), RP_OK);
    expect_view(r->body, "B", 1);
    cr_assert_eq(off + used, sizeof two - 1);
    rp_http_client_free(&c);
}

Test(http_client, malformed_or_oversized_answers_are_upstream_protocol)
{
    struct rp_http_client c;
    struct rp_http_resp *r = NULL;
    static const char *const bad[] = {
        "SMTP/1.0 220 hi\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rp_http_client_init(&c, &limits);
        int rc = feed(&c, bad[i], strlen(bad[i]), NULL, &r);
        cr_assert_eq(rc, RP_E_UPSTREAM_PROTOCOL, "case %zu: %s", i, rp_err_name(rc));
        rp_http_client_free(&c);
    }
    /* header section over the limit */
    rp_http_client_init(&c, &limits);
    char big[2048];
    int n = snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nX: ");
    memset(big + n, 'x', sizeof big - (size_t)n);
    cr_assert_eq(feed(&c, big, sizeof big, NULL, &r), RP_E_UPSTREAM_PROTOCOL);
    rp_http_client_free(&c);
}

Test(http_request, writes_exact_bytes)
{
    struct rp_buf b;
    rp_buf_init(&b, 0);
    cr_assert_eq(rp_http_write_request(&b, "POST", "ca:8080", "/ejbca/publicweb/cmp/ra",
                                       "application/pkixcmp", (const uint8_t *)"\x30\x00", 2, true),
                 RP_OK);
    static const char want[] = "POST /ejbca/publicweb/cmp/ra HTTP/1.1\r\n"
                               "Host: ca:8080\r\n"
                               "Content-Type: application/pkixcmp\r\n"
                               "Content-Length: 2\r\n"
                               "Connection: keep-alive\r\n"
                               "\r\n"
                               "\x30\x00";
    cr_assert_eq(b.len, sizeof want - 1);
    cr_assert(memcmp(b.data, want, b.len) == 0, "got: %.*s", (int)b.len, (const char *)b.data);

    /* and a server parser reads it back */
    struct rp_http_server s;
    rp_http_server_init(&s, &limits);
    struct rp_http_req *req = NULL;
    cr_assert_eq(rp_http_server_feed(&s, b.data, b.len, NULL, &req), RP_OK);
    cr_assert(rp_http_media_type_is(req->content_type, "application/pkixcmp"));
    cr_assert_eq(req->body.len, 2);
    rp_http_server_free(&s);
    rp_buf_free(&b);
}

/* The one HTTP URL parser (src/core/url.c) as the upstream pool, --probe and the bench use it;
 * test_config.c checks that --check-config refuses the same. */
Test(url, parses_good_urls)
{
    struct rp_http_url u;
    cr_assert_eq(rp_http_url_parse("http://ejbca:8080/ejbca/publicweb/cmp/ra", &u), RP_OK);
    cr_assert_str_eq(u.host, "ejbca");
    cr_assert_eq(u.port, 8080);
    cr_assert_str_eq(u.path, "/ejbca/publicweb/cmp/ra");
    cr_assert(!u.tls);

    cr_assert_eq(rp_http_url_parse("https://ca.example.com", &u), RP_OK);
    cr_assert(u.tls);
    cr_assert_eq(u.port, 443);
    cr_assert_str_eq(u.path, "/");
    cr_assert_str_eq(u.host, "ca.example.com");

    cr_assert_eq(rp_http_url_parse("HTTP://127.0.0.1/", &u), RP_OK); /* scheme in any case */
    cr_assert_eq(u.port, 80);
    cr_assert_str_eq(u.host, "127.0.0.1");
    cr_assert_eq(rp_http_url_parse("Https://ca/", &u), RP_OK);
    cr_assert(u.tls);

    cr_assert_eq(rp_http_url_parse("http://[::1]:8443/cmp", &u), RP_OK);
    cr_assert_str_eq(u.host, "::1");
    cr_assert_eq(u.port, 8443);
    cr_assert_str_eq(u.path, "/cmp");

    cr_assert_eq(rp_http_url_parse("https://[2001:db8::1]", &u), RP_OK);
    cr_assert_str_eq(u.host, "2001:db8::1");
    cr_assert_eq(u.port, 443);
}

Test(url, rejects_bad_urls)
{
    static const char *const bad[] = {
        "ftp://h/",       "http://",          "http:///x",       "http://h:0/",
        "http://h:65536", "http://h:8o",      "http://h:",       "http://u:p@h/",
        "http://[::1",    "http://[::1]x/",   "http://[zz::1]/", "h/x",
        "http://a b/",    "http://h/a b",     "https//h/",       "",
        "http://h?q",     "http://h/cmp?x=1", "http://h/cmp#f",  "http://[1.2.3.4]/",
        "http://h/\x01",  "http://h\x7f/",
    };
    struct rp_http_url u;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(rp_http_url_parse(bad[i], &u), RP_E_CONFIG, "accepted \"%s\"", bad[i]);
    cr_assert_eq(rp_http_url_parse(NULL, &u), RP_E_CONFIG);

    char longhost[300] = "http://";
    memset(longhost + 7, 'a', 280);
    longhost[287] = '\0';
    cr_assert_eq(rp_http_url_parse(longhost, &u), RP_E_CONFIG);
    char longpath[1100] = "http://h/";
    memset(longpath + 9, 'p', 1050);
    longpath[1059] = '\0';
    cr_assert_eq(rp_http_url_parse(longpath, &u), RP_E_CONFIG);
}

Test(url, host_header_omits_default_ports_and_brackets_v6)
{
    struct rp_http_url u;
    char h[300];
    rp_http_url_parse("http://ca/", &u);
    cr_assert_eq(rp_url_host_header(&u, h, sizeof h), RP_OK);
    cr_assert_str_eq(h, "ca");
    rp_http_url_parse("https://ca:8443/", &u);
    rp_url_host_header(&u, h, sizeof h);
    cr_assert_str_eq(h, "ca:8443");
    rp_http_url_parse("http://[::1]:8080/", &u);
    rp_url_host_header(&u, h, sizeof h);
    cr_assert_str_eq(h, "[::1]:8080");
    cr_assert_eq(rp_url_host_header(&u, h, 4), RP_E_INVAL);
}
