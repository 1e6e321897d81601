#include "raproxy/arena.h"
#include "raproxy/buf.h"
#include "raproxy/err.h"
#include "raproxy/file.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/pool.h"
#include "raproxy/url.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

Test(err, table_round_trips_names_status_and_failinfo)
{
    cr_assert_str_eq(rp_err_name(RP_E_DER_TRUNCATED), "DER_TRUNCATED");
    cr_assert_eq(rp_err_failinfo(RP_E_DER_TRUNCATED), RP_FI_BAD_DATA_FORMAT);
    cr_assert_str_eq(rp_failinfo_name(rp_err_failinfo(RP_E_TXID_IN_USE)), "transactionIdInUse");
    cr_assert_eq(rp_err_http(RP_E_HTTP_METHOD), 405);
    cr_assert_str_eq(rp_err_name(RP_OK), "OK");
    cr_assert_str_eq(rp_err_name(-100000), "UNKNOWN");
    cr_assert_str_eq(rp_err_name(5), "UNKNOWN");
    cr_assert_null(rp_failinfo_name(RP_FI_NONE));
    cr_assert_str_eq(rp_failinfo_name(RP_FI_DUPLICATE_CERT_REQ), "duplicateCertReq");
}

Test(arena, refuses_allocation_beyond_cap)
{
    uint8_t mem[256];
    struct rp_arena a;
    rp_arena_init(&a, mem, sizeof mem);
    cr_assert_not_null(rp_arena_alloc(&a, 100));
    cr_assert_not_null(rp_arena_alloc(&a, 100));
    cr_assert_null(rp_arena_alloc(&a, 100));
    cr_assert_null(rp_arena_alloc(&a, (size_t)-1));
    cr_assert_null(rp_arena_calloc(&a, (size_t)1 << 40, (size_t)1 << 40));
    rp_arena_reset(&a);
    cr_assert_not_null(rp_arena_alloc(&a, 200));
    cr_assert_eq(((uintptr_t)rp_arena_alloc(&a, 1) - (uintptr_t)mem) % 16, 0);
}

Test(arena, new_arena_allocates_at_first_use_and_never_moves)
{
    struct rp_arena a;
    cr_assert_eq(rp_arena_new(&a, 1u << 20), RP_OK);
    cr_assert_null(a.base, "an arena nobody used holds no memory");
    uint8_t *p = rp_arena_alloc(&a, 100);
    cr_assert_not_null(p);
    cr_assert_eq(p, a.base);
    uint8_t *q = rp_arena_alloc(&a, (1u << 20) - 200);
    cr_assert_not_null(q, "the whole cap is there at once");
    cr_assert_eq(a.base, p, "views into the arena stay valid");
    cr_assert_null(rp_arena_alloc(&a, 200));
    rp_arena_free(&a);
    cr_assert_eq(rp_arena_new(&a, 4096), RP_OK);
    rp_arena_free(&a); /* never used: nothing to free */
}

Test(buf, enforces_max_and_compacts)
{
    struct rp_buf b;
    rp_buf_init(&b, 1000);
    uint8_t chunk[300];
    memset(chunk, 'x', sizeof chunk);
    cr_assert_eq(rp_buf_append(&b, chunk, 300), RP_OK);
    cr_assert_eq(rp_buf_append(&b, chunk, 300), RP_OK);
    cr_assert_eq(rp_buf_append(&b, chunk, 300), RP_OK);
    cr_assert_eq(rp_buf_append(&b, chunk, 300), RP_E_ARENA);
    rp_buf_consume(&b, 600);
    cr_assert_eq(rp_buf_avail(&b), 300);
    cr_assert_eq(rp_buf_append(&b, chunk, 300), RP_OK);
    cr_assert_eq(rp_buf_avail(&b), 600);
    rp_buf_free(&b);
}

/* A block freed on a thread serves the next allocation of its class there; each class keeps
 * a bounded number of blocks, larger sizes go straight to malloc. */
Test(pool, reuses_blocks_per_class_and_keeps_a_bounded_number)
{
    cr_expect_eq(rp_pool_size(1), RP_POOL_MIN_BLOCK);
    cr_expect_eq(rp_pool_size(RP_POOL_MIN_BLOCK + 1), 2 * RP_POOL_MIN_BLOCK);
    cr_expect_eq(rp_pool_size(RP_POOL_MAX_BLOCK + 1), RP_POOL_MAX_BLOCK + 1);
    void *a = rp_pool_get(3000);
    cr_assert_not_null(a);
    memset(a, 0xa5, rp_pool_size(3000)); /* the whole class is usable */
    rp_pool_put(a, 3000);
    cr_expect_eq(rp_pool_get(4096), a, "the freed 4 KiB block comes back");
    rp_pool_put(a, 4096);
    /* fill one class far beyond its bound: only RP_POOL_CLASS_BYTES stay */
    enum { N = 200 };
    void *v[N];
    for (int i = 0; i < N; i++)
        cr_assert_not_null(v[i] = rp_pool_get(RP_POOL_MIN_BLOCK));
    for (int i = 0; i < N; i++)
        rp_pool_put(v[i], RP_POOL_MIN_BLOCK);
    int reused = 0;
    for (int i = 0; i < N; i++) {
        void *p = rp_pool_get(RP_POOL_MIN_BLOCK);
        for (int j = 0; j < N; j++)
            reused += p == v[j];
        v[i] = p;
    }
    cr_expect_leq(reused, (int)(RP_POOL_CLASS_BYTES / RP_POOL_MIN_BLOCK));
    for (int i = 0; i < N; i++)
        rp_pool_put(v[i], RP_POOL_MIN_BLOCK);
    void *big = rp_pool_get(RP_POOL_MAX_BLOCK + 1);
    cr_assert_not_null(big);
    rp_pool_put(big, RP_POOL_MAX_BLOCK + 1);
    rp_pool_put(NULL, 64);
}

static void *pool_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++) /* left in the pool: freed when the thread ends (LSan) */
        rp_pool_put(rp_pool_get(1024), 1024);
    struct rp_buf b;
    rp_buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        if (rp_buf_printf(&b, "line %d of a buffer that grows\n", i) != RP_OK)
            return (void *)1;
    rp_buf_free(&b);
    return NULL;
}

Test(pool, a_threads_blocks_are_freed_when_it_ends)
{
    pthread_t t;
    void *rc = (void *)2;
    cr_assert_eq(pthread_create(&t, NULL, pool_thread, NULL), 0);
    cr_assert_eq(pthread_join(t, &rc), 0);
    cr_expect_null(rc);
}

Test(metrics, renders_prometheus_text)
{
    rp_metrics_help("t_requests_total", RP_METRIC_COUNTER, "Requests.");
    struct rp_metric *c = rp_metric_get("t_requests_total", RP_METRIC_COUNTER, "code=\"200\"");
    rp_metric_add(c, 3);
    struct rp_metric *h = rp_metric_get("t_latency_seconds", RP_METRIC_HISTOGRAM, NULL);
    rp_metric_observe_ns(h, 3000000); /* 3 ms */
    struct rp_buf out;
    rp_buf_init(&out, 0);
    cr_assert_eq(rp_metrics_render(&out), RP_OK);
    rp_buf_append(&out, "", 1);
    const char *s = (const char *)rp_buf_head(&out);
    cr_assert(strstr(s, "# TYPE t_requests_total counter\n"));
    cr_assert(strstr(s, "t_requests_total{code=\"200\"} 3\n"));
    cr_assert(strstr(s, "t_latency_seconds_bucket{le=\"0.002\"} 0\n"));
    cr_assert(strstr(s, "t_latency_seconds_bucket{le=\"0.005\"} 1\n"));
    cr_assert(strstr(s, "t_latency_seconds_count 1\n"));
    cr_assert_float_eq(rp_metrics_quantile(h, 0.99), 0.005, 1e-9);
    rp_buf_free(&out);
    rp_metrics_reset();
}

/* A cap below the read step (a PIN file read with a 258-byte cap) used to refuse every
 * file, however short, as too large. */
Test(file, reads_a_short_file_under_a_small_cap)
{
    char path[] = "/tmp/rp-file-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "4711\n", 5), 5);
    close(fd);
    uint8_t *data = NULL;
    size_t len = 0;
    cr_expect_eq(rp_file_read(path, 16, &data, &len), RP_OK);
    cr_expect_eq(len, 5);
    cr_expect(data && memcmp(data, "4711\n", 5) == 0);
    free(data);
    data = NULL;
    cr_expect_eq(rp_file_read(path, 4, &data, &len), RP_E_IO, "control: over the cap");
    cr_expect_eq(rp_file_read(path, 5, &data, &len), RP_OK, "exactly the cap");
    free(data);
    unlink(path);
}

/* The log goes to a fresh file at `lvl`; log_read gives its text back (and the log stdout). */
static int log_to_file(char path[19], enum rp_log_level lvl)
{
    memcpy(path, "/tmp/rp-log-XXXXXX", 19);
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    rp_log_set_fd(fd);
    rp_log_set_level(lvl);
    return fd;
}

static ssize_t log_read(int fd, const char *path, char *buf, size_t cap)
{
    rp_log_set_fd(1);
    ssize_t n = pread(fd, buf, cap - 1, 0);
    close(fd);
    unlink(path);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

Test(log, record_lines_pass_every_level_but_off)
{
    char path[19];
    int fd = log_to_file(path, RP_LOG_WARN);
    struct rp_logline l;
    cr_expect_eq(rp_log_begin(&l, RP_LOG_INFO, "event"), 0, "info filtered at warn");
    cr_assert_neq(rp_log_begin_record(&l, "exchange"), 0, "a record is written at warn");
    rp_log_end(&l);
    rp_log_set_level(RP_LOG_OFF);
    cr_expect_eq(rp_log_begin_record(&l, "exchange"), 0, "nothing when logging is off");
    char buf[512];
    cr_assert_gt(log_read(fd, path, buf, sizeof buf), 0);
    cr_expect(strstr(buf, "\"level\":\"info\",\"event\":\"exchange\""), "%s", buf);
}

/* ---- request paths (url.c) ---- */

static struct rp_view vp(const char *s)
{
    return rp_view_make(s, strlen(s));
}

Test(url_path, is_ignores_the_query_and_a_trailing_slash)
{
    cr_assert(rp_url_path_is(vp("/pkix"), "/pkix"));
    cr_assert(rp_url_path_is(vp("/pkix/"), "/pkix"));
    cr_assert(rp_url_path_is(vp("/pkix"), "/pkix/"));
    cr_assert(rp_url_path_is(vp("/pkix//?a=b"), "/pkix"));
    cr_assert(rp_url_path_is(vp("/livez?verbose"), "/livez"));
    cr_assert(rp_url_path_is(vp("/"), "/"));
    cr_assert_not(rp_url_path_is(vp("/pkixx"), "/pkix"));
    cr_assert_not(rp_url_path_is(vp("/pki"), "/pkix"));
    cr_assert_not(rp_url_path_is(vp("/pkix/a"), "/pkix"));
    cr_assert_not(rp_url_path_is(vp("/PKIX"), "/pkix"), "paths are case-sensitive");
    cr_assert_not(rp_url_path_is(vp(""), "/"));
    cr_assert_not(rp_url_path_is(RP_VIEW_NULL, "/livez"));
}

Test(url_path, under_stops_at_a_segment_and_gives_the_rest)
{
    struct rp_view rest;
    cr_assert(rp_url_path_under(vp("/ocsp"), "/ocsp", &rest));
    cr_assert_eq(rest.len, 0);
    cr_assert(rp_url_path_under(vp("/ocsp/MEU%3D?x"), "/ocsp/", &rest));
    cr_assert(rp_view_eq(rest, vp("/MEU%3D")));
    cr_assert_not(rp_url_path_under(vp("/ocspx"), "/ocsp", NULL));
    cr_assert_not(rp_url_path_under(vp("/oc"), "/ocsp", NULL));
    cr_assert(rp_url_path_under(vp("/anything/at/all"), "/", &rest), "\"/\" covers every path");
    cr_assert(rp_view_eq(rest, vp("anything/at/all")));
    cr_assert_not(rp_url_path_under(vp("relative"), "/", NULL));
}

/* Numbers and the time stamp are formatted without printf on the exchange path: the same
 * text as printf's "%lld", "%.3f" and the ISO time it used to write. */
Test(log, numbers_and_time_read_as_printf_wrote_them)
{
    char path[19];
    int fd = log_to_file(path, RP_LOG_INFO);
    const int64_t ints[] = {0, 7, -7, 1234567890123LL, INT64_MAX, INT64_MIN};
    const double dbls[] = {0.0,        0.0004, 1.0,     5.461,        0.436, 282.308,
                           123456.789, -2.25,  -0.0004, 1e11 + 0.125, 1e13,  -1e13};
    struct rp_logline l;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        cr_assert(rp_log_begin(&l, RP_LOG_INFO, "n"));
        rp_log_int(&l, "v", ints[i]);
        rp_log_end(&l);
    }
    for (size_t i = 0; i < sizeof dbls / sizeof dbls[0]; i++) {
        cr_assert(rp_log_begin(&l, RP_LOG_INFO, "d"));
        rp_log_dbl(&l, "v", dbls[i]);
        rp_log_end(&l);
    }
    char buf[8192];
    cr_assert_gt(log_read(fd, path, buf, sizeof buf), 0);
    char *line = buf;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] + sizeof dbls / sizeof dbls[0]; i++) {
        char *nl = strchr(line, '\n');
        cr_assert_not_null(nl);
        *nl = 0;
        int y, mo, d, h, mi, s, ms;
        char z;
        cr_expect_eq(sscanf(line, "{\"ts\":\"%4d-%2d-%2dT%2d:%2d:%2d.%3d%c\"", &y, &mo, &d, &h, &mi,
                            &s, &ms, &z),
                     8, "%s", line);
        cr_expect(z == 'Z' && line[31] == '"' && y >= 2024 && ms >= 0 && ms < 1000, "%s", line);
        char want[64];
        if (i < sizeof ints / sizeof ints[0])
            snprintf(want, sizeof want, "\"v\":%lld}", (long long)ints[i]);
        else
            snprintf(want, sizeof want, "\"v\":%.3f}", dbls[i - sizeof ints / sizeof ints[0]]);
        cr_expect_not_null(strstr(line, want), "%s lacks %s", line, want);
        line = nl + 1;
    }
}
