/* `raproxy allowlist import|count|export` against a real redis-server. */
#include "raproxy/allowlist_cli.h"
#include "raproxy/clock.h"
#include "fixtures.h"
#include "support.h"

#include <criterion/criterion.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS   5000
#define N_SERIALS 100000
#define N_TIMED   1000000

/* children die with the test process, so a failed assertion leaves no redis-server behind */
TestSuite(allowlist_cli);

static void srv_start(struct rpt_redis *s)
{
    memset(s, 0, sizeof *s);
    cr_assert_eq(rpt_redis_start(s, NULL), 0, "redis-server did not start");
}

/* Runs the CLI with stdout captured into `out` (may be NULL). */
static int cli(const char *out, const char *a1, const char *a2, const char *a3, const char *a4,
               const char *a5, const char *a6, const char *a7, const char *a8)
{
    char *argv[] = {"allowlist", (char *)a1, (char *)a2, (char *)a3, (char *)a4,
                    (char *)a5,  (char *)a6, (char *)a7, (char *)a8, NULL};
    int argc = 0;
    while (argv[argc])
        argc++;
    int saved = -1;
    if (out) {
        fflush(stdout);
        saved = dup(1);
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        cr_assert_geq(fd, 0);
        dup2(fd, 1);
        close(fd);
    }
    int rc = rp_allowlist_cli(argc, argv);
    if (out) {
        fflush(stdout);
        dup2(saved, 1);
        close(saved);
    }
    return rc;
}

static void write_serials(const char *path, int n, bool decorate)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    if (decorate)
        fputs("# vendor batch 42\n\n", f);
    for (int i = 0; i < n; i++)
        fprintf(f, decorate && i % 1000 == 0 ? "  SN%08d \r\n" : "SN%08d\n", i);
    cr_assert_eq(fclose(f), 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(allowlist_cli, import_count_export_round_trip, .timeout = 120)
{
    struct rpt_redis s;
    srv_start(&s);
    char *dir = rpt_tmpdir();
    char in[512], out[512], cnt[512];
    snprintf(in, sizeof in, "%s/serials.txt", dir);
    snprintf(out, sizeof out, "%s/export.txt", dir);
    snprintf(cnt, sizeof cnt, "%s/count.txt", dir);
    write_serials(in, N_SERIALS, true);

    cr_assert_eq(cli(NULL, "import", "--redis", s.url, "--domain", "m", in, NULL, NULL), 0);
    /* importing again adds nothing new and is not an error */
    cr_assert_eq(cli(NULL, "import", "--redis", s.url, "--domain", "m", in, NULL, NULL), 0);
    cr_assert_eq(cli(cnt, "count", "--redis", s.url, "--domain", "m", NULL, NULL, NULL), 0);
    size_t len;
    char *c = (char *)rpt_read_file(cnt, &len);
    cr_assert_eq(atol(c), N_SERIALS);
    free(c);
    /* another domain and another prefix are other sets */
    cr_assert_eq(cli(cnt, "count", "--redis", s.url, "--domain", "m", "--key-prefix", "x:", NULL),
                 0);
    c = (char *)rpt_read_file(cnt, &len);
    cr_assert_eq(atol(c), 0);
    free(c);

    cr_assert_eq(cli(NULL, "export", "--redis", s.url, "--domain", "m", "--output", out, NULL), 0);
    char *text = (char *)rpt_read_file(out, &len);
    cr_assert_not_null(text);
    char **lines = calloc(N_SERIALS + 1, sizeof *lines);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(text, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
        cr_assert_lt(n, N_SERIALS, "more serials exported than imported");
        lines[n++] = t;
    }
    cr_assert_eq(n, N_SERIALS);
    qsort(lines, (size_t)n, sizeof *lines, cmp_str);
    char want[32];
    for (int i = 0; i < n; i++) {
        snprintf(want, sizeof want, "SN%08d", i);
        cr_assert_str_eq(lines[i], want);
    }
    free(lines);
    free(text);
    rpt_stop(&s.p, SIGKILL, WAIT_MS);
    rpt_rmdir(dir);
    free(dir);
}

Test(allowlist_cli, usage_and_connection_errors)
{
    cr_assert_eq(cli(NULL, "import", "--domain", "m", "f", NULL, NULL, NULL, NULL), 2);
    cr_assert_eq(cli(NULL, "frobnicate", "--redis", "redis://x", "--domain", "m", NULL, NULL, NULL),
                 2);
    cr_assert_eq(cli(NULL, "count", "--redis", "redis://x", "--domain", "m", "extra", NULL, NULL),
                 2);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", rpt_free_port());
    cr_assert_eq(cli(NULL, "count", "--redis", url, "--domain", "m", NULL, NULL, NULL), 1);
}

/* Not asserted (timing belongs in bench/): how long one million serials take. */
Test(allowlist_cli, import_one_million_timing, .timeout = 300)
{
    struct rpt_redis s;
    srv_start(&s);
    char *dir = rpt_tmpdir();
    char in[512];
    snprintf(in, sizeof in, "%s/million.txt", dir);
    write_serials(in, N_TIMED, false);
    uint64_t t0 = rp_clock_ns();
    cr_assert_eq(cli(NULL, "import", "--redis", s.url, "--domain", "big", in, NULL, NULL), 0);
    double secs = (double)(rp_clock_ns() - t0) / 1e9;
    fprintf(stderr, "allowlist import: %d serials in %.2f s (%.0f/s)\n", N_TIMED, secs,
            N_TIMED / secs);
    rpt_stop(&s.p, SIGKILL, WAIT_MS);
    rpt_rmdir(dir);
    free(dir);
}

/* "ANCHOR SERIAL" lines become the identity "ANCHOR/SERIAL" of a domain of several vendors. */
Test(allowlist_cli, anchor_qualified_lines_import_as_identities, .timeout = 60)
{
    struct rpt_redis s;
    srv_start(&s);
    char *dir = rpt_tmpdir();
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/serials.txt", dir);
    snprintf(out, sizeof out, "%s/export.txt", dir);
    const char *text = "acme SN0001\nglobex\tSN0001\n  SN0003  \n";
    cr_assert_eq(rpt_write_file(in, text, strlen(text)), 0);
    cr_assert_eq(cli(NULL, "import", "--redis", s.url, "--domain", "v", in, NULL, NULL), 0);
    cr_assert_eq(cli(NULL, "export", "--redis", s.url, "--domain", "v", "--output", out, NULL), 0);
    cr_expect_eq(rpt_file_count(out, "acme/SN0001\n"), 1);
    cr_expect_eq(rpt_file_count(out, "globex/SN0001\n"), 1);
    cr_expect_eq(rpt_file_count(out, "SN0003\n"), 1);
    cr_expect_eq(rpt_file_count(out, " "), 0);
    rpt_stop(&s.p, SIGKILL, WAIT_MS);
    rpt_rmdir(dir);
    free(dir);
}
