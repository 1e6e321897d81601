#include "support.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long rpt_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

void rpt_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Ports come from below the kernel's ephemeral range (32768+ here): a port the kernel hands
 * out as a client's source port can sit in TIME-WAIT and make a later listen() fail, which
 * made tests flaky while many connections were opened in parallel.
 *
 * Every test process (ctest -j, Criterion --jobs) takes the next port from one counter in a
 * file under flock, so no two tests running at once get the same port. A random pick
 * checked with a probe bind was not enough: raproxy listens with SO_REUSEPORT, so two
 * instances that picked the same port both bound it and the kernel split one test's
 * devices between them (seen as "transactionID differs" from the other test's mock CA). */
#define FREE_PORT_LO 20000
#define FREE_PORT_HI 32000

static bool port_bindable(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0;
    close(fd);
    return ok;
}

/* The next port from the shared counter; -1 when the file cannot be used. */
static int next_shared_port(void)
{
    int fd = open("/tmp/rpt-ports.seq", O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX) != 0) {
        close(fd);
        return -1;
    }
    char buf[16] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    long cur = n > 0 ? strtol(buf, NULL, 10) : 0;
    if (cur < FREE_PORT_LO || cur >= FREE_PORT_HI) /* first use, or wrapped */
        cur = FREE_PORT_LO + (long)(((unsigned)getpid() * 2654435761u) % 1000u);
    int len = snprintf(buf, sizeof buf, "%ld\n", cur + 1);
    if (pwrite(fd, buf, (size_t)len, 0) != len || ftruncate(fd, len) != 0)
        cur = -1;
    flock(fd, LOCK_UN);
    close(fd);
    return (int)cur;
}

int rpt_free_port(void)
{
    for (int attempt = 0; attempt < 200; attempt++) {
        int port = next_shared_port();
        if (port < 0) { /* no shared counter: fall back to a random pick */
            static unsigned seed;
            if (!seed)
                seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
            seed = seed * 1103515245u + 12345u;
            port = FREE_PORT_LO + (int)((seed >> 8) % (FREE_PORT_HI - FREE_PORT_LO));
        }
        if (port_bindable(port))
            return port;
    }
    return -1;
}

int rpt_wait_port(int port, int timeout_ms)
{
    long deadline = rpt_mono_ms() + timeout_ms;
    do {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok)
            return 0;
        usleep(20000);
    } while (rpt_mono_ms() < deadline);
    return -1;
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

static pid_t spawn_to(const char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644)
                      : open("/dev/null", O_WRONLY);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0) {
        dup2(nul, 0);
        close(nul);
    }
    setpgid(0, 0);
    /* a failed assertion ends the test process without cleanup: take the child along */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

int rpt_spawn(struct rpt_proc *p, const char *const argv[])
{
    static int seq;
    if (!p->log[0])
        snprintf(p->log, sizeof p->log, "%s/rpt-%d-%d-%s.log",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid(), seq++,
                 strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0]);
    p->pid = spawn_to(argv, p->log);
    return p->pid > 0 ? 0 : -1;
}

static int wait_timeout(pid_t pid, int timeout_ms, int *st)
{
    long deadline = rpt_mono_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, st, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
        if (rpt_mono_ms() >= deadline)
            return -1;
        usleep(5000);
    }
}

int rpt_run(const char *const argv[], int timeout_ms, const char *log_path)
{
    pid_t pid = spawn_to(argv, log_path);
    if (pid < 0)
        return -1;
    int st;
    if (wait_timeout(pid, timeout_ms, &st) != 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        return -1;
    }
    return status_code(st);
}

int rpt_stop(struct rpt_proc *p, int sig, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    int st;
    kill(p->pid, sig);
    int rc;
    if (wait_timeout(p->pid, timeout_ms, &st) != 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
        rc = -1;
    } else {
        rc = status_code(st);
    }
    p->pid = 0;
    return rc;
}

int rpt_alive(struct rpt_proc *p, int *status)
{
    int st;
    if (p->pid <= 0)
        return 0;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == 0)
        return 1;
    if (status)
        *status = r == p->pid ? status_code(st) : -1;
    p->pid = 0;
    return 0;
}

char *rpt_tmpdir(void)
{
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "%s/rpt-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

void rpt_rmdir(const char *dir)
{
    if (!dir || strncmp(dir, "/tmp/", 5) != 0 || getenv("RPT_KEEP"))
        return; /* RPT_KEEP=1 keeps test directories (logs, configs) for debugging */
    const char *argv[] = {"rm", "-rf", dir, NULL};
    rpt_run(argv, 10000, NULL);
}

uint8_t *rpt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (d && fread(d, 1, (size_t)n, f) != (size_t)n) {
        free(d);
        d = NULL;
    }
    fclose(f);
    if (d) {
        d[n] = 0;
        if (len)
            *len = (size_t)n;
    }
    return d;
}

int rpt_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

int rpt_file_count(const char *path, const char *needle)
{
    size_t len;
    char *d = (char *)rpt_read_file(path, &len);
    if (!d)
        return 0;
    int n = 0;
    for (char *p = d; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(d);
    return n;
}

int rpt_dir_count(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        n += strstr(de->d_name, needle) != NULL;
    if (d)
        closedir(d);
    return n;
}

const char *rpt_file_tail(const char *path, char *buf, size_t cap)
{
    if (!cap)
        return buf;
    buf[0] = '\0';
    size_t n = 0;
    uint8_t *data = rpt_read_file(path, &n);
    if (data) {
        size_t keep = n < cap - 1 ? n : cap - 1;
        memcpy(buf, data + n - keep, keep);
        buf[keep] = '\0';
    }
    free(data);
    return buf;
}

const char *rpt_src(void)
{
    return RP_SOURCE_DIR;
}

const char *rpt_bin(void)
{
    return RP_BINARY_DIR;
}

/* FNV-1a of a whole file, as 16 hex digits ("" when unreadable). */
static void file_digest(const char *path, char out[17])
{
    size_t n = 0;
    uint8_t *data = rpt_read_file(path, &n);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; data && i < n; i++)
        h = (h ^ data[i]) * 0x100000001b3ull;
    snprintf(out, 17, "%016llx", data ? (unsigned long long)h : 0ull);
    free(data);
}

/* The PKI is rebuilt when scripts/test-pki.sh changed since it was made: a build tree
 * must never test against certificates an older script wrote. */
const char *rpt_pki(void)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/test-pki", RP_BINARY_DIR);
    char lock[600], script[600], done[600], stamp[600], want[17], have[32] = "";
    snprintf(lock, sizeof lock, "%s/test-pki.lock", RP_BINARY_DIR);
    snprintf(script, sizeof script, "%s/scripts/test-pki.sh", RP_SOURCE_DIR);
    snprintf(done, sizeof done, "%s/.done", dir);
    snprintf(stamp, sizeof stamp, "%s/test-pki.script", RP_BINARY_DIR);
    file_digest(script, want);
    int fd = open(lock, O_CREAT | O_RDWR, 0644);
    if (fd < 0)
        return NULL;
    flock(fd, LOCK_EX);
    size_t n = 0;
    char *old = (char *)rpt_read_file(stamp, &n);
    if (old)
        snprintf(have, sizeof have, "%s", old);
    free(old);
    if (strcmp(have, want) != 0) {
        /* with the fixtures other tests derived from the old certificates */
        char ocsp[600];
        snprintf(ocsp, sizeof ocsp, "%s/test-ocsp", RP_BINARY_DIR);
        const char *rm[] = {"rm", "-rf", dir, ocsp, NULL};
        rpt_run(rm, 10000, NULL);
    }
    int ok = access(done, F_OK) == 0;
    if (!ok) {
        const char *argv[] = {"bash", script, dir, NULL};
        char log[600];
        snprintf(log, sizeof log, "%s/test-pki.log", RP_BINARY_DIR);
        ok = rpt_run(argv, 120000, log) == 0 && access(done, F_OK) == 0 &&
             rpt_write_file(stamp, want, strlen(want)) == 0;
    }
    flock(fd, LOCK_UN);
    close(fd);
    return ok ? dir : NULL;
}
