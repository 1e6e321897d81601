/* bench/hsm: RA signatures per second per crypto worker with the RA key in a PKCS#11 token
 * (SoftHSM2) against the same key in memory, in the same run, with raproxy's own functions
 * (rp_privkey_load + rp_privkey_sign; worker threads open their token session the way
 * raproxy's workers do, rp_p11_thread_start).
 *
 * The tool makes its own token: a fresh SoftHSM2 directory under $TMPDIR (SOFTHSM2_CONF
 * points there; the system's tokens are never touched), keys made with openssl and imported
 * with softhsm2-util, removed at the end.
 *
 *   bench_hsm [--seconds S] [--workers N] [--module PATH]
 *     S per measurement (default 2), N the largest worker count (default: 2; runs 1..N)
 * Prints a Markdown table and one "HSM key=value ..." line per row.
 */
#include "raproxy/err.h"
#include "raproxy/log.h"
#include "raproxy/pkcs11.h"
#include "raproxy/sig.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SECONDS 2.0
#define DEFAULT_WORKERS 2u
#define MAX_WORKERS     64u
#define PIN             "1234"
#define PATH_LEN        600
#define MSG_LEN         1200 /* about a re-protected ir's ProtectedPart */
#define DEFAULT_MODULE  "/usr/lib/softhsm/libsofthsm2.so"

struct kind {
    const char *name, *genpkey_alg, *genpkey_opt, *label;
    enum rp_sig_alg alg;
};

static const struct kind kinds[] = {
    {"ECDSA P-256", "EC", "ec_paramgen_curve:P-256", "ec256", RP_SIG_ECDSA_SHA256},
    {"ECDSA P-384", "EC", "ec_paramgen_curve:P-384", "ec384", RP_SIG_ECDSA_SHA384},
    {"RSA-2048 PKCS#1 v1.5", "RSA", "rsa_keygen_bits:2048", "rsa2048", RP_SIG_RSA_SHA256},
    {"RSA-2048 PSS", "RSA", "rsa_keygen_bits:2048", "rsa2048", RP_SIG_RSA_PSS_SHA256},
};

struct worker {
    pthread_t th;
    unsigned index;
    struct rp_privkey *key;
    enum rp_sig_alg alg;
    double seconds;
    unsigned long count, failed;
};

static atomic_int go;

static int run(const char *const argv[])
{
    fflush(stdout); /* or the child's freopen writes our buffered table a second time */
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    uint8_t msg[MSG_LEN], sig[RP_SIG_MAX];
    memset(msg, 0x5a, sizeof msg);
    rp_p11_thread_start(w->index); /* as raproxy's crypto workers: own session, opened here */
    while (!atomic_load(&go))
        ;
    double end = now_s() + w->seconds;
    while (now_s() < end) {
        size_t len;
        msg[w->count % MSG_LEN] ^= 1;
        if (rp_privkey_sign(w->key, w->alg, msg, sizeof msg, sig, sizeof sig, &len) == RP_OK)
            w->count++;
        else
            w->failed++;
    }
    rp_p11_thread_stop();
    return NULL;
}

/* Signatures per second per worker with n workers sharing key. */
static double measure(struct rp_privkey *key, enum rp_sig_alg alg, unsigned n, double seconds,
                      unsigned long *failed)
{
    struct worker w[MAX_WORKERS];
    atomic_store(&go, 0);
    for (unsigned i = 0; i < n; i++) {
        w[i] = (struct worker){.index = i, .key = key, .alg = alg, .seconds = seconds};
        pthread_create(&w[i].th, NULL, worker_main, &w[i]);
    }
    atomic_store(&go, 1);
    unsigned long total = 0;
    *failed = 0;
    for (unsigned i = 0; i < n; i++) {
        pthread_join(w[i].th, NULL);
        total += w[i].count;
        *failed += w[i].failed;
    }
    return (double)total / seconds / n;
}

static int make_token(const char *dir)
{
    char conf[PATH_LEN], tokens[PATH_LEN], text[2 * PATH_LEN];
    snprintf(tokens, sizeof tokens, "%s/tokens", dir);
    snprintf(conf, sizeof conf, "%s/softhsm2.conf", dir);
    FILE *f = fopen(conf, "w");
    if (!f || mkdir(tokens, 0700) != 0)
        return -1;
    snprintf(text, sizeof text,
             "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens);
    fputs(text, f);
    fclose(f);
    setenv("SOFTHSM2_CONF", conf, 1);
    const char *init[] = {"softhsm2-util",
                          "--init-token",
                          "--free",
                          "--label",
                          "bench",
                          "--so-pin",
                          PIN,
                          "--pin",
                          PIN,
                          NULL};
    return run(init);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_hsm [--seconds S] [--workers N] [--module PATH]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"seconds", 1, 0, 's'}, {"workers", 1, 0, 'w'}, {"module", 1, 0, 'm'}, {0, 0, 0, 0}};
    double seconds = DEFAULT_SECONDS;
    unsigned max_workers = DEFAULT_WORKERS;
    const char *module = DEFAULT_MODULE;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 's')
            seconds = strtod(optarg, NULL);
        else if (c == 'w')
            max_workers = (unsigned)strtoul(optarg, NULL, 10);
        else if (c == 'm')
            module = optarg;
        else
            usage();
    }
    if (seconds <= 0 || max_workers < 1 || max_workers > MAX_WORKERS)
        usage();
    rp_log_set_fd(2); /* the table alone on stdout */
    char dir[] = "/tmp/bench-hsm-XXXXXX";
    if (!mkdtemp(dir) || make_token(dir) != 0) {
        fprintf(stderr, "bench_hsm: cannot make a SoftHSM2 token (softhsm2-util)\n");
        return 1;
    }
    printf("# RA signatures per second per worker: key in SoftHSM2 vs in memory\n\n");
    printf("%u CPUs online, %.1f s per measurement, message %u bytes, module %s\n\n",
           (unsigned)sysconf(_SC_NPROCESSORS_ONLN), seconds, MSG_LEN, module);
    printf("| key | workers | in memory, sig/s/worker | SoftHSM2, sig/s/worker | SoftHSM2 / "
           "memory |\n|---|---:|---:|---:|---:|\n");
    int rc = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        const struct kind *k = &kinds[i];
        char pem[PATH_LEN], uri[PATH_LEN], why[512];
        snprintf(pem, sizeof pem, "%s/%s.key", dir, k->label);
        if (access(pem, R_OK) != 0) {
            const char *gen[] = {"openssl",      "genpkey",  "-algorithm",
                                 k->genpkey_alg, "-pkeyopt", k->genpkey_opt,
                                 "-out",         pem,        NULL};
            const char *imp[] = {"softhsm2-util", "--import", pem,  "--token", "bench", "--label",
                                 k->label,        "--id",     "01", "--pin",   PIN,     NULL};
            char id[8];
            snprintf(id, sizeof id, "%02zx", i + 1);
            imp[8] = id;
            if (run(gen) != 0 || run(imp) != 0) {
                fprintf(stderr, "bench_hsm: cannot make or import the %s key\n", k->name);
                rc = 1;
                break;
            }
        }
        snprintf(uri, sizeof uri, "pkcs11:token=bench;object=%s", k->label);
        struct rp_p11_opts o = {.module = module, .pin = PIN};
        struct rp_privkey *mem = NULL, *tok = NULL;
        if (rp_privkey_load(pem, NULL, &mem, why, sizeof why) != RP_OK ||
            rp_privkey_load(uri, &o, &tok, why, sizeof why) != RP_OK) {
            fprintf(stderr, "bench_hsm: %s\n", why);
            rp_privkey_free(mem);
            rc = 1;
            break;
        }
        for (unsigned n = 1; n <= max_workers; n++) {
            unsigned long f1, f2;
            double m = measure(mem, k->alg, n, seconds, &f1);
            double t = measure(tok, k->alg, n, seconds, &f2);
            printf("| %s | %u | %.0f | %.0f | %.3f |\n", k->name, n, m, t, m > 0 ? t / m : 0);
            fprintf(stderr,
                    "HSM key=%s workers=%u memory=%.0f softhsm=%.0f ratio=%.3f failed=%lu\n",
                    k->label, n, m, t, m > 0 ? t / m : 0, f1 + f2);
            if (f1 + f2)
                rc = 1;
        }
        rp_privkey_free(mem);
        rp_privkey_free(tok);
    }
    rp_p11_shutdown();
    char cmd[PATH_LEN + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_hsm: could not remove %s\n", dir);
    return rc;
}
