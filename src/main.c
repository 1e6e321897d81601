/* raproxy: wiring only. Parses flags, loads the configuration, starts loops and workers,
 * and turns signals into reloads (SIGHUP) and drains (SIGTERM, SIGINT). */
#include "raproxy/allowlist_cli.h"
#include "raproxy/config.h"
#include "raproxy/crl.h"
#include "raproxy/sig.h"
#include "raproxy/err.h"
#include "raproxy/pkcs11.h"
#include "raproxy/guard.h"
#include "raproxy/http.h"
#include "raproxy/limiter.h"
#include "raproxy/log.h"
#include "raproxy/loop.h"
#include "raproxy/server.h"
#include "raproxy/snapshot.h"
#include "raproxy/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#define MAX_LOOPS            64
#define PROBE_TIMEOUT_S      5
#define RP_RELOAD_REPORT_MAX 4096 /* the CRL lines of a reload's log */

struct app {
    const char *config_path;
    struct rp_snapshot *snap;
    struct rp_loop *loops[MAX_LOOPS];
    unsigned nloops;
    uv_loop_t uv;
    uv_signal_t sighup, sigterm, sigint;
    uv_timer_t crl_timer; /* reloads when a configured CRL reaches its nextUpdate */
    bool draining;
    struct rp_workers *workers;
    struct rp_limiter *limiter;
    struct rp_server *server; /* what the loops share: workers, limiter, delayed queue */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: raproxy --config FILE [--check-config]\n"
            "       raproxy --probe URL\n"
            "       raproxy allowlist import|export|count --redis URL --domain D ...\n"
            "       raproxy --version | --help\n"
            "\n"
            "  -c, --config FILE   YAML configuration (see README.md)\n"
            "      --check-config  validate the configuration, load its certificates and keys,\n"
            "                      print problems as FILE:LINE: KEY: message; exit 1 on error\n"
            "      --probe URL     GET an http:// URL (e.g. http://127.0.0.1:9090/livez);\n"
            "                      exit 0 on HTTP 200 (container health checks)\n"
            "  -V, --version       print version and build information\n"
            "  -h, --help          this text\n"
            "\n"
            "Signals: SIGHUP reloads the configuration and certificates; SIGTERM drains\n"
            "(readiness 503, listeners closed, in-flight exchanges finish) and exits 0.\n");
}

static int load(const char *path, struct rp_snapshot **out, FILE *errs)
{
    struct rp_config *cfg = NULL;
    int rc = rp_config_load(path, &cfg, errs);
    if (rc != RP_OK)
        return rc;
    return rp_server_snapshot(cfg, out, errs);
}

static void arm_crl_timer(struct app *a);

static void reload(struct app *a)
{
    struct rp_snapshot *s = NULL;
    char *msg = NULL;
    size_t msglen = 0;
    FILE *errs = open_memstream(&msg, &msglen);
    int rc = load(a->config_path, &s, errs);
    if (errs)
        fclose(errs);
    if (rc != RP_OK) {
        rp_log_error("reload", "configuration rejected, keeping the running one: %s",
                     msg ? msg : rp_err_msg(rc));
        free(msg);
        arm_crl_timer(a);
        return;
    }
    free(msg);
    for (unsigned i = 0; i < a->nloops; i++)
        rp_loop_set_snapshot(a->loops[i], s);
    rp_snapshot_unref(a->snap);
    a->snap = s;
    /* A CRL that could not be used does not block the rest of a reload, but the reload is
     * not reported as a clean load: its domains refuse (or warn) until a good CRL comes. */
    char crl[RP_RELOAD_REPORT_MAX];
    if (rp_server_crl_report(s, crl, sizeof crl))
        rp_log_error("reload", "configuration %s applied (generation %llu) with unusable CRLs:\n%s",
                     a->config_path, (unsigned long long)s->generation, crl);
    else
        rp_log_info("reload", "configuration %s loaded (generation %llu)", a->config_path,
                    (unsigned long long)s->generation);
    arm_crl_timer(a);
}

static void on_crl_due(uv_timer_t *t)
{
    struct app *a = t->data;
    rp_log_info("reload", "a configured CRL reached its nextUpdate: reloading");
    reload(a);
}

/* CRLs come with the snapshot; a fresh snapshot is built when the earliest one expires, so
 * a CRL file replaced by a cron job is picked up without a SIGHUP. The due time comes from
 * the CRLs the snapshot holds (the files may have changed or vanished since). */
static void arm_crl_timer(struct app *a)
{
    if (a->draining)
        return;
    int64_t next = rp_server_crl_due(a->snap);
    uv_timer_stop(&a->crl_timer);
    if (next == 0)
        return;
    int64_t now = (int64_t)time(NULL);
    int64_t wait = next > now ? next - now : RP_CRL_STALE_RETRY_S;
    uv_timer_start(&a->crl_timer, on_crl_due, (uint64_t)wait * 1000u, 0);
}

static void drain(struct app *a)
{
    if (a->draining)
        return;
    a->draining = true;
    uint32_t grace_ms = a->snap->cfg->shutdown_grace_s * 1000u;
    rp_log_info("shutdown", "draining %u loops (grace %u s)", a->nloops,
                a->snap->cfg->shutdown_grace_s);
    rp_ready_set_draining();
    for (unsigned i = 0; i < a->nloops; i++)
        rp_loop_drain(a->loops[i], grace_ms);
    uv_close((uv_handle_t *)&a->sighup, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->crl_timer, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct app *a = h->data;
    if (signum == SIGHUP)
        reload(a);
    else
        drain(a);
}

static int run(struct app *a)
{
    signal(SIGPIPE, SIG_IGN);
    const struct rp_config *cfg = a->snap->cfg;
    int lvl = rp_log_parse_level(cfg->log_level ? cfg->log_level : "info");
    rp_log_set_level(lvl < 0 ? RP_LOG_INFO : (enum rp_log_level)lvl);
    unsigned n = cfg->loops ? cfg->loops : 1;
    if (n > MAX_LOOPS)
        n = MAX_LOOPS;
    uv_loop_init(&a->uv);
    uv_signal_init(&a->uv, &a->sighup);
    uv_signal_init(&a->uv, &a->sigterm);
    uv_signal_init(&a->uv, &a->sigint);
    a->sighup.data = a->sigterm.data = a->sigint.data = a;
    uv_timer_init(&a->uv, &a->crl_timer);
    a->crl_timer.data = a;
    /* signals first: a SIGTERM that arrives while loops start still drains */
    uv_signal_start(&a->sighup, on_signal, SIGHUP);
    uv_signal_start(&a->sigterm, on_signal, SIGTERM);
    uv_signal_start(&a->sigint, on_signal, SIGINT);
    struct rp_workers_opts wo = {.count = cfg->workers,
                                 .queue_cap = cfg->worker_queue,
                                 .queue_ms = cfg->worker_queue_ms,
                                 .pin = true,
                                 .on_thread_start = rp_p11_thread_start,
                                 .on_thread_stop = rp_p11_thread_stop};
    int rc = rp_workers_start(&a->workers, &wo);
    if (rc == RP_OK)
        rc = rp_limiter_new(&a->limiter, NULL);
    if (rc == RP_OK)
        rc = rp_server_new(&a->server,
                           &(struct rp_server_opts){.workers = a->workers, .limiter = a->limiter});
    for (unsigned i = 0; i < n && rc == RP_OK; i++) {
        struct rp_loop_opts o = {
            .index = i,
            .snap = a->snap,
            .on_exchange = rp_server_on_exchange,
            .ctx = a->server,
            .admin = i == 0,
            .on_snapshot = rp_server_on_snapshot,
            .on_stop = rp_server_on_stop,
            .ready = rp_server_redis_ready,
            .ready_detail = rp_server_ready_detail,
        };
        rc = rp_loop_start(&a->loops[i], &o);
        if (rc == RP_OK)
            a->nloops++;
    }
    if (rc != RP_OK) {
        rp_log_error("start", "cannot start: %s", rp_err_msg(rc));
        drain(a);
    } else {
        arm_crl_timer(a);
        rp_log_info("start", "raproxy %s: %u loops, %u workers, %u listeners (wolfSSL %s)",
                    RAPROXY_VERSION, a->nloops, rp_workers_count(a->workers), cfg->listeners_count,
                    RP_WOLFSSL_INFO);
    }
    uv_run(&a->uv, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < a->nloops; i++)
        rp_loop_join(a->loops[i]);
    /* loops are gone, so no job can be submitted any more */
    if (a->workers)
        rp_workers_stop(a->workers);
    if (a->limiter)
        rp_limiter_free(a->limiter);
    rp_server_free(a->server);
    uv_loop_close(&a->uv);
    rp_sig_thread_cleanup();
    rp_snapshot_unref(a->snap);
    rp_p11_shutdown(); /* after the last key of a token went with the snapshot */
    rp_log_info("shutdown", "stopped");
    return rc == RP_OK ? 0 : 1;
}

/* A minimal blocking HTTP GET for health checks in images without curl. */
static int probe(const char *url_s)
{
    struct rp_http_url url;
    if (rp_http_url_parse(url_s, &url) != RP_OK || url.tls) {
        fprintf(stderr, "raproxy: --probe takes an http:// URL\n");
        return 2;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", url.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(url.host, port, &hints, &res) != 0 || !res) {
        fprintf(stderr, "raproxy: cannot resolve %s\n", url.host);
        return 1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    struct timeval tv = {PROBE_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int ok = connect(fd, res->ai_addr, res->ai_addrlen) == 0;
    freeaddrinfo(res);
    char buf[512];
    int n = 0;
    if (ok) {
        int len =
            snprintf(buf, sizeof buf, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", url.path, url.host);
        ok = write(fd, buf, (size_t)len) == len;
    }
    if (ok)
        n = (int)read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        fprintf(stderr, "raproxy: %s: no answer\n", url_s);
        return 1;
    }
    buf[n] = 0;
    int status = 0;
    if (sscanf(buf, "HTTP/%*d.%*d %d", &status) != 1 || status != 200) {
        fprintf(stderr, "raproxy: %s: HTTP %d\n", url_s, status);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
        {"probe", required_argument, NULL, 'P'},  {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    if (argc > 1 && strcmp(argv[1], "allowlist") == 0)
        return rp_allowlist_cli(argc - 1, argv + 1);
    struct app a = {0};
    bool check = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            a.config_path = optarg;
            break;
        case 'C':
            check = true;
            break;
        case 'P':
            return probe(optarg);
        case 'V':
            printf("raproxy %s\nwolfSSL %s, %s\n", RAPROXY_VERSION, wolfSSL_lib_version(),
                   RP_WOLFSSL_INFO);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!a.config_path || optind != argc) {
        usage(stderr);
        return 2;
    }
    int rc = load(a.config_path, &a.snap, stderr);
    if (check) {
        rp_sig_thread_cleanup();
        if (rc == RP_OK) {
            printf("%s: ok\n", a.config_path);
            rp_snapshot_unref(a.snap);
        }
        rp_p11_shutdown();
        return rc == RP_OK ? 0 : 1;
    }
    if (rc != RP_OK) {
        rp_p11_shutdown();
        fprintf(stderr, "raproxy: %s: configuration rejected\n", a.config_path);
        return 1;
    }
    return run(&a);
}
