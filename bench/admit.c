/* bench/admit: admissions per second through rp_admit_start on one loop (one Redis
 * connection, pipelined), against `redis-benchmark -t set -n N -q` on the same redis-server in
 * the same run, and the latency an admission adds to a request (one at a time: p50, p99).
 *
 *   bench_admit [N] [WINDOW]
 *
 * Starts its own redis-server (`--save '' --appendonly no`) on a free loopback port. N
 * admissions per throughput run (default 50000), WINDOW of them in flight (default 256).
 * Every run is bounded by RUN_DEADLINE_MS; Redis failing during a run is reported, not hidden
 * (the result then counts as degraded and the run is marked). */
#include "raproxy/admit.h"
#include "raproxy/clock.h"
#include "raproxy/err.h"
#include "raproxy/limiter.h"
#include "raproxy/redis.h"

#include <uv.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_N       50000u
#define DEFAULT_WINDOW  256u
#define MAX_WINDOW      4096u
#define LATENCY_N       5000u
#define WARMUP_N        1000u
#define ADDRS           4096u /* distinct client addresses, so per-address buckets differ */
#define ADDR_LEN        24
#define RUN_DEADLINE_MS 120000u
#define START_WAIT_MS   10000u
#define TICK_MS         10u
#define BIG_RATE        100000000u /* a limit that never refuses: the cost, not the refusals */
#define NS_PER_US       1000u
#define NS_PER_SEC      1e9

extern char **environ;

static char g_addr[ADDRS][ADDR_LEN];

struct op {
    struct drive *d;
    uint64_t t0;
};

struct drive {
    struct rp_admit *a;
    struct rp_admit_in in;
    uint64_t n, issued, done, refused, failed, degraded;
    unsigned window, inflight;
    bool pumping;
    struct op ops[MAX_WINDOW];
    unsigned free_ops[MAX_WINDOW], nfree;
    uint64_t *lat_ns; /* per admission, or NULL */
};

static void pump(struct drive *d);

static void on_admit(void *arg, const struct rp_admit_result *res)
{
    struct op *o = arg;
    struct drive *d = o->d;
    uint64_t ns = rp_clock_ns() - o->t0;
    if (d->lat_ns)
        d->lat_ns[d->done] = ns;
    d->done++;
    d->inflight--;
    d->refused += res->err == RP_E_RATE_LIMITED;
    d->failed += res->err != RP_OK && res->err != RP_E_RATE_LIMITED;
    d->degraded += res->degraded;
    d->free_ops[d->nfree++] = (unsigned)(o - d->ops);
    pump(d);
}

/* Keeps `window` admissions in flight. Re-entrant calls (a callback fired inside
 * rp_admit_start) return at once; the outer loop goes on. */
static void pump(struct drive *d)
{
    if (d->pumping)
        return;
    d->pumping = true;
    while (d->inflight < d->window && d->issued < d->n) {
        struct op *o = &d->ops[d->free_ops[--d->nfree]];
        o->d = d;
        d->in.client_addr = g_addr[d->issued % ADDRS];
        d->issued++;
        d->inflight++;
        o->t0 = rp_clock_ns();
        rp_admit_start(d->a, &d->in, on_admit, o);
    }
    d->pumping = false;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until done() or the deadline; false on the deadline. */
static bool run_until(uv_loop_t *loop, bool (*done)(void *), void *arg)
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, TICK_MS, TICK_MS);
    uint64_t deadline = rp_clock_ns() + (uint64_t)RUN_DEADLINE_MS * 1000000u;
    bool ok;
    while (!(ok = done(arg)) && rp_clock_ns() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static bool drive_done(void *arg)
{
    struct drive *d = arg;
    return d->done == d->n;
}

static bool redis_ready(void *arg)
{
    return rp_redis_ready(arg);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct result {
    double per_s;
    double p50_us, p99_us;
    uint64_t refused, failed, degraded;
    bool complete;
};

static struct result drive(uv_loop_t *loop, struct rp_admit *a, const struct rp_cfg_limits *lim,
                           uint64_t n, unsigned window, bool latency)
{
    static struct drive d;
    memset(&d, 0, sizeof d);
    d.a = a;
    d.in = (struct rp_admit_in){.domain = "bench", .limits = lim};
    d.n = n;
    d.window = window;
    for (unsigned i = 0; i < window; i++)
        d.free_ops[d.nfree++] = i;
    if (latency)
        d.lat_ns = calloc(n, sizeof *d.lat_ns);
    uint64_t t0 = rp_clock_ns();
    pump(&d);
    struct result r = {0};
    r.complete = run_until(loop, drive_done, &d);
    double secs = (double)(rp_clock_ns() - t0) / NS_PER_SEC;
    r.per_s = (double)d.done / secs;
    r.refused = d.refused;
    r.failed = d.failed;
    r.degraded = d.degraded;
    if (d.lat_ns && d.done) {
        qsort(d.lat_ns, d.done, sizeof *d.lat_ns, cmp_u64);
        r.p50_us = (double)d.lat_ns[d.done / 2] / NS_PER_US;
        r.p99_us = (double)d.lat_ns[d.done * 99 / 100] / NS_PER_US;
    }
    free(d.lat_ns);
    return r;
}

/* ---- redis-server and redis-benchmark --------------------------------------------------- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* argv with stdout and stderr to `out` (or /dev/null). */
static pid_t spawn(const char *const argv[], const char *out)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? pid : -1;
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* redis-benchmark -t set -n N -q: SET requests per second, or a negative value. */
static double redis_benchmark(int port, uint64_t n)
{
    char portstr[16], nstr[24], out[] = "/tmp/bench_admit_rb_XXXXXX";
    int fd = mkstemp(out);
    if (fd < 0)
        return -1;
    close(fd);
    snprintf(portstr, sizeof portstr, "%d", port);
    snprintf(nstr, sizeof nstr, "%llu", (unsigned long long)n);
    const char *argv[] = {
        "redis-benchmark", "-h", "127.0.0.1", "-p", portstr, "-t", "set", "-n", nstr, "-q", NULL};
    pid_t pid = spawn(argv, out);
    int st = -1;
    if (pid > 0)
        waitpid(pid, &st, 0);
    double v = -1;
    FILE *f = fopen(out, "r");
    if (f && pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        char buf[8192];
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        buf[len] = '\0';
        /* -q prints progress lines ending in \r, then the result: take the last "SET: " */
        char *last = NULL;
        for (char *p = buf; (p = strstr(p, "SET: ")) != NULL; p++)
            last = p;
        if (last)
            v = strtod(last + 5, NULL);
    }
    if (f)
        fclose(f);
    unlink(out);
    return v;
}

/* ---- the table ------------------------------------------------------------------------- */

static void row(const char *what, const struct result *r, unsigned evalsha_per)
{
    char lat[48] = "";
    if (r->p99_us > 0)
        snprintf(lat, sizeof lat, "%8.1f %8.1f", r->p50_us, r->p99_us);
    printf("%-40s %12.0f %11.0f  %-17s%s\n", what, r->per_s, r->per_s * evalsha_per, lat,
           !r->complete                             ? "  (deadline: incomplete)"
           : r->failed || r->degraded || r->refused ? "  (Redis failures: see below)"
                                                    : "");
    if (r->failed || r->degraded || r->refused)
        printf("    refused %llu, failed %llu, decided in process %llu\n",
               (unsigned long long)r->refused, (unsigned long long)r->failed,
               (unsigned long long)r->degraded);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : DEFAULT_N;
    unsigned window = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : DEFAULT_WINDOW;
    if (n == 0 || window == 0 || window > MAX_WINDOW) {
        fprintf(stderr, "usage: %s [N] [WINDOW 1..%u]\n", argv[0], MAX_WINDOW);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    for (unsigned i = 0; i < ADDRS; i++)
        snprintf(g_addr[i], ADDR_LEN, "10.0.%u.%u", i / 256, i % 256);

    int port = free_port();
    char portstr[16], url[64];
    snprintf(portstr, sizeof portstr, "%d", port);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    const char *srv[] = {"redis-server", "--save",    "",       "--appendonly", "no",
                         "--bind",       "127.0.0.1", "--port", portstr,        NULL};
    pid_t rpid = spawn(srv, NULL);
    if (rpid <= 0) {
        fprintf(stderr, "cannot start redis-server\n");
        return 1;
    }
    int rc = 1;
    uint64_t t0 = rp_clock_ns();
    while (!port_open(port) && rp_clock_ns() - t0 < (uint64_t)START_WAIT_MS * 1000000u)
        usleep(TICK_MS * 1000);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rp_limiter *lim = NULL;
    struct rp_redis *redis = NULL;
    struct rp_admit *a = NULL, *local = NULL;
    if (rp_limiter_new(&lim, &(struct rp_limiter_opts){0}) != RP_OK ||
        rp_redis_new(&redis, &loop, &(struct rp_redis_opts){.url = url, .timeout_ms = 1000}) !=
            RP_OK ||
        rp_admit_new(&a, &(struct rp_admit_opts){.redis = redis, .limiter = lim}) != RP_OK ||
        rp_admit_new(&local, &(struct rp_admit_opts){.limiter = lim}) != RP_OK) {
        fprintf(stderr, "setup failed\n");
        goto out;
    }
    if (!run_until(&loop, redis_ready, redis)) {
        fprintf(stderr, "redis-server on port %d never became ready\n", port);
        goto out;
    }

    struct rp_cfg_limits three = {.global = {BIG_RATE, BIG_RATE},
                                  .domain = {BIG_RATE, BIG_RATE},
                                  .per_ip = {BIG_RATE, BIG_RATE}};
    struct rp_cfg_limits one = {.per_ip = {BIG_RATE, BIG_RATE}};
    drive(&loop, a, &three, WARMUP_N, window, false);

    printf("bench_admit: rp_admit_start on one loop, one pipelined Redis connection "
           "(redis-server on 127.0.0.1:%d); N=%llu\n\n",
           port, (unsigned long long)n);
    printf("%-40s %12s %11s  %8s %8s\n", "run", "admissions/s", "EVALSHA/s", "p50 us", "p99 us");
    char what[64];
    snprintf(what, sizeof what, "3 buckets (ip+domain+global), window %u", window);
    struct result r3 = drive(&loop, a, &three, n, window, false);
    row(what, &r3, 3);
    snprintf(what, sizeof what, "1 bucket (per_ip), window %u", window);
    struct result r1 = drive(&loop, a, &one, n, window, false);
    row(what, &r1, 1);
    struct result l3 = drive(&loop, a, &three, LATENCY_N, 1, true);
    row("3 buckets, one at a time (added latency)", &l3, 3);
    struct result l1 = drive(&loop, a, &one, LATENCY_N, 1, true);
    row("1 bucket, one at a time (added latency)", &l1, 1);
    struct result lp = drive(&loop, local, &three, LATENCY_N, 1, true);
    row("3 buckets in process (no Redis)", &lp, 0);

    double set = redis_benchmark(port, n);
    if (set <= 0) {
        printf("\nredis-benchmark -t set -n %llu -q: failed\n", (unsigned long long)n);
    } else {
        printf("\nredis-benchmark -t set -n %llu -q (50 clients, no pipelining): %.0f SET/s\n",
               (unsigned long long)n, set);
        printf("ratio admissions/s / SET/s: 3 buckets %.2f, 1 bucket %.2f "
               "(EVALSHA/s / SET/s: %.2f, %.2f)\n",
               r3.per_s / set, r1.per_s / set, 3 * r3.per_s / set, r1.per_s / set);
    }
    rc = r3.complete && r1.complete && l3.complete && l1.complete && lp.complete ? 0 : 1;
out:
    if (redis)
        rp_redis_close(redis); /* fires nothing: every admission has answered */
    uv_run(&loop, UV_RUN_DEFAULT);
    rp_admit_free(a);
    rp_admit_free(local);
    rp_limiter_free(lim);
    uv_loop_close(&loop);
    kill(rpid, SIGKILL);
    waitpid(rpid, NULL, 0);
    return rc;
}
