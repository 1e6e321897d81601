/* bench/ocsp: OCSP requests per second that raproxy answers from its cache, against those it
 * forwards to the VA (and verifies), and the ratio.
 *
 *   bench_ocsp [SECONDS] [CONNECTIONS]
 *
 * Starts `openssl ocsp -port` as the VA (a delegated responder issued by the test PKI's
 * vendor ICA) and <build>/raproxy with a `validation` section, then drives raproxy over
 * CONNECTIONS keep-alive connections for SECONDS per phase:
 *   cached     the same request without a nonce: every answer after the first is a hit;
 *   forwarded  the same request with a nonce: the cache is bypassed, the VA signs, raproxy
 *              verifies.
 * An answer that is not a 200 with a full OCSP response (tryLater is 5 bytes) counts as an
 * error. The forwarded rate includes the VA's own signing (one openssl process): it is the
 * rate a device fleet sees without the cache. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SECONDS 5
#define DEFAULT_CONNS   4
#define MAX_CONNS       64
#define RESP_MAX        16384
#define MIN_FULL_ANSWER 64 /* a status-only response is 5 bytes */
#define START_TRIES     500
#define START_WAIT_US   20000

static const char setup_script[] =
    "set -eu\n"
    "P=$1; cd \"$2\"; V=$P/vendor\n"
    "printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature\\n"
    "extendedKeyUsage=OCSPSigning\\n' > resp.ext\n"
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out resp.key\n"
    "openssl req -new -key resp.key -subj '/C=DE/O=Vendor/CN=Vendor OCSP' -out resp.csr\n"
    "openssl x509 -req -in resp.csr -CA $V/ica.pem -CAkey $V/ica.key -set_serial 0x4f01 "
    "-days 30 -extfile resp.ext -out resp.pem\n"
    "s=$(openssl x509 -in $V/dev1.pem -noout -serial | cut -d= -f2)\n"
    "printf 'V\\t351231235959Z\\t\\t%s\\tunknown\\t/CN=x\\n' \"$s\" > index.txt\n"
    "openssl ocsp -issuer $V/ica.pem -cert $V/dev1.pem -no_nonce -reqout plain.der\n"
    "openssl ocsp -issuer $V/ica.pem -cert $V/dev1.pem -reqout nonce.der\n";

struct phase {
    int port;
    const uint8_t *req;
    size_t len;
    double seconds;
    atomic_long ok, errors;
    atomic_bool stop;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run(const char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (log && !freopen(log, "a", stdout))
            _exit(127);
        dup2(1, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int st = 0;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = malloc(RESP_MAX);
    *len = f && buf ? fread(buf, 1, RESP_MAX, f) : 0;
    if (f)
        fclose(f);
    return buf;
}

static int file_has(const char *path, const char *needle)
{
    size_t n;
    uint8_t *b = slurp(path, &n);
    int found = b && n < RESP_MAX && memmem(b, n, needle, strlen(needle)) != NULL;
    free(b);
    return found;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int port = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                       getsockname(fd, (struct sockaddr *)&a, &l) == 0
                   ? ntohs(a.sin_port)
                   : -1;
    close(fd);
    return port;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One request/answer on a keep-alive connection; the body length of a 200, else -1. */
static long exchange(int fd, const char *head, size_t hlen, const struct phase *ph)
{
    static _Thread_local char buf[RESP_MAX];
    if (write(fd, head, hlen) != (ssize_t)hlen || write(fd, ph->req, ph->len) != (ssize_t)ph->len)
        return -1;
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
        buf[got] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        char *cl = strcasestr(buf, "Content-Length:");
        if (!end || !cl)
            continue;
        long body = strtol(cl + 15, NULL, 10);
        if ((long)(got - (size_t)(end + 4 - buf)) < body)
            continue;
        return strncmp(buf, "HTTP/1.1 200", 12) == 0 ? body : -1;
    }
}

static void *client(void *arg)
{
    struct phase *ph = arg;
    char head[256];
    int hlen = snprintf(head, sizeof head,
                        "POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                        "application/ocsp-request\r\nContent-Length: %zu\r\n\r\n",
                        ph->len);
    int fd = dial(ph->port);
    while (fd >= 0 && !atomic_load(&ph->stop)) {
        long body = exchange(fd, head, (size_t)hlen, ph);
        if (body >= MIN_FULL_ANSWER) {
            atomic_fetch_add(&ph->ok, 1);
            continue;
        }
        atomic_fetch_add(&ph->errors, 1);
        if (body < 0) { /* the connection is gone: a new one */
            close(fd);
            fd = dial(ph->port);
        }
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static double drive(struct phase *ph, int conns)
{
    pthread_t t[MAX_CONNS];
    double t0 = now_s();
    for (int i = 0; i < conns; i++)
        pthread_create(&t[i], NULL, client, ph);
    usleep((useconds_t)(ph->seconds * 1e6));
    atomic_store(&ph->stop, true);
    for (int i = 0; i < conns; i++)
        pthread_join(t[i], NULL);
    return (double)atomic_load(&ph->ok) / (now_s() - t0);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : DEFAULT_SECONDS;
    int conns = argc > 2 ? atoi(argv[2]) : DEFAULT_CONNS;
    if (seconds <= 0 || conns < 1 || conns > MAX_CONNS) {
        fprintf(stderr, "usage: %s [SECONDS] [CONNECTIONS 1..%d]\n", argv[0], MAX_CONNS);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char dir[] = "/tmp/bench-ocsp-XXXXXX", pki[600], path[700], log[700], cfg[2048];
    if (!mkdtemp(dir))
        return 1;
    snprintf(pki, sizeof pki, "%s/test-pki", RP_BINARY_DIR);
    char pki_script[600];
    snprintf(pki_script, sizeof pki_script, "%s/scripts/test-pki.sh", RP_SOURCE_DIR);
    snprintf(log, sizeof log, "%s/setup.log", dir);
    const char *mkpki[] = {"bash", pki_script, pki, NULL};
    snprintf(path, sizeof path, "%s/setup.sh", dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(setup_script, f) < 0 || fclose(f) != 0)
        return 1;
    const char *setup[] = {"bash", path, pki, dir, NULL};
    if (wait_exit(run(mkpki, log)) != 0 || wait_exit(run(setup, log)) != 0) {
        fprintf(stderr, "setup failed, see %s\n", log);
        return 1;
    }
    int va_port = free_port(), port = free_port();
    char vport[16], index[700], ica[700], rcert[700], rkey[700], valog[700], rplog[700];
    snprintf(vport, sizeof vport, "%d", va_port);
    snprintf(index, sizeof index, "%s/index.txt", dir);
    snprintf(ica, sizeof ica, "%s/vendor/ica.pem", pki);
    snprintf(rcert, sizeof rcert, "%s/resp.pem", dir);
    snprintf(rkey, sizeof rkey, "%s/resp.key", dir);
    snprintf(valog, sizeof valog, "%s/va.log", dir);
    snprintf(rplog, sizeof rplog, "%s/raproxy.log", dir);
    const char *va[] = {"openssl", "ocsp", "-port",       vport,      "-index", index,
                        "-CA",     ica,    "-rsigner",    rcert,      "-rkey",  rkey,
                        "-nmin",   "60",   "-ignore_err", "-timeout", "5",      NULL};
    pid_t va_pid = run(va, valog);
    snprintf(cfg, sizeof cfg,
             "log_level: warn\nlisteners:\n  - address: 127.0.0.1:%d\n    tls: off\n"
             "upstream:\n  url: http://127.0.0.1:9/unused\n"
             "validation:\n  url: http://127.0.0.1:%d/\n  trust_anchors: [%s]\n"
             /* one load generator, one address: admission is measured, not the limit */
             "  per_ip: {rate: 1000000, burst: 1000000}\n",
             port, va_port, ica);
    snprintf(path, sizeof path, "%s/raproxy.yaml", dir);
    f = fopen(path, "w");
    if (!f || fputs(cfg, f) < 0 || fclose(f) != 0)
        return 1;
    char bin[600];
    snprintf(bin, sizeof bin, "%s/raproxy", RP_BINARY_DIR);
    const char *rp[] = {bin, "--config", path, NULL};
    pid_t rp_pid = run(rp, rplog);
    int up = 0;
    for (int i = 0; i < START_TRIES && !up; i++) {
        int fd = dial(port);
        up = fd >= 0 && file_has(valog, "waiting for OCSP client");
        if (fd >= 0)
            close(fd);
        if (!up)
            usleep(START_WAIT_US);
    }
    int rc = 1;
    if (up) {
        size_t plain_len, nonce_len;
        snprintf(path, sizeof path, "%s/plain.der", dir);
        uint8_t *plain = slurp(path, &plain_len);
        snprintf(path, sizeof path, "%s/nonce.der", dir);
        uint8_t *nonce = slurp(path, &nonce_len);
        struct phase cached = {.port = port, .req = plain, .len = plain_len, .seconds = seconds};
        struct phase fwd = {.port = port, .req = nonce, .len = nonce_len, .seconds = seconds};
        double c = drive(&cached, conns), w = drive(&fwd, conns);
        printf("ocsp relay, %d connections, %.0f s per phase\n", conns, seconds);
        printf("  cached     %10.0f req/s  (%ld errors)\n", c, atomic_load(&cached.errors));
        printf("  forwarded  %10.0f req/s  (%ld errors)\n", w, atomic_load(&fwd.errors));
        printf("  ratio      %10.1f x\n", w > 0 ? c / w : 0.0);
        rc = atomic_load(&cached.errors) || atomic_load(&fwd.errors) ? 1 : 0;
        free(plain);
        free(nonce);
    } else {
        fprintf(stderr, "raproxy or the VA did not start, see %s and %s\n", rplog, valog);
    }
    kill(rp_pid, SIGTERM);
    kill(va_pid, SIGKILL);
    wait_exit(rp_pid);
    wait_exit(va_pid);
    if (rc == 0) {
        const char *rm[] = {"rm", "-rf", dir, NULL};
        wait_exit(run(rm, NULL));
    }
    return rc;
}
