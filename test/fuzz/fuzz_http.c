/* libFuzzer target for the HTTP parsers: the input is fed to the request parser and the
 * response parser, in pieces whose sizes come from the first byte, so that split points
 * and pipelining are exercised too. Every reported view must lie inside parser memory. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "raproxy/err.h"
#include "raproxy/http.h"

#define FUZZ_MAX_HDR   2048
#define FUZZ_MAX_BODY  8192
#define FUZZ_MAX_STEPS 4096

static void touch(struct rp_view v)
{
    /* reading every byte lets ASan catch a view pointing outside live memory */
    volatile uint8_t sink = 0;
    for (size_t i = 0; v.p && i < v.len; i++)
        sink ^= v.p[i];
    (void)sink;
}

static size_t piece_len(uint8_t seed, size_t left)
{
    size_t n = seed ? (size_t)seed : left;
    return n < left ? n : left;
}

static void run_server(const uint8_t *p, size_t n, uint8_t seed)
{
    const struct rp_http_limits l = {FUZZ_MAX_HDR, FUZZ_MAX_BODY};
    struct rp_http_server s;
    rp_http_server_init(&s, &l);
    size_t off = 0;
    for (int step = 0; step < FUZZ_MAX_STEPS && off < n; step++) {
        size_t len = piece_len(seed, n - off), used = 0;
        struct rp_http_req *r = NULL;
        int rc = rp_http_server_feed(&s, p + off, len, &used, &r);
        if (used > len)
            __builtin_trap();
        off += used;
        if (rc == RP_OK) {
            touch(r->path);
            touch(r->content_type);
            touch(r->host);
            touch(r->body);
            (void)rp_http_media_type_is(r->content_type, "application/pkixcmp");
            rp_http_server_next(&s);
        } else if (rc != RP_E_AGAIN) {
            break;
        }
    }
    rp_http_server_free(&s);
}

static void run_client(const uint8_t *p, size_t n, uint8_t seed)
{
    const struct rp_http_limits l = {FUZZ_MAX_HDR, FUZZ_MAX_BODY};
    struct rp_http_client c;
    rp_http_client_init(&c, &l);
    size_t off = 0;
    int rc = RP_E_AGAIN;
    for (int step = 0; step < FUZZ_MAX_STEPS && off < n; step++) {
        size_t len = piece_len(seed, n - off), used = 0;
        struct rp_http_resp *r = NULL;
        rc = rp_http_client_feed(&c, p + off, len, &used, &r);
        if (used > len)
            __builtin_trap();
        off += used;
        if (rc == RP_OK) {
            touch(r->content_type);
            touch(r->retry_after);
            touch(r->body);
            rp_http_client_next(&c);
        } else if (rc != RP_E_AGAIN) {
            break;
        }
    }
    if (rc == RP_E_AGAIN) {
        struct rp_http_resp *r = NULL;
        if (rp_http_client_eof(&c, &r) == RP_OK)
            touch(r->body);
    }
    rp_http_client_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t seed = data[0];
    run_server(data + 1, size - 1, seed);
    run_client(data + 1, size - 1, seed);
    return 0;
}
