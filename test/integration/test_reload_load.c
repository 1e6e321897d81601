/* Reloads under load (issue: "Authenticate requests in trust domains on pinned crypto
 * workers"): a running raproxy receives a few thousand genuine, distinct ir messages (an
 * openssl cmp -reqout capture of dev1 and dev2, re-signed with the device key under a fresh
 * transactionID and senderNonce each; one in five with a broken signature) from parallel
 * clients while the test swaps its configuration with SIGHUP several times. The two
 * configurations differ only in the allowlist: dev2 (SN0002) is on it in one, not in the
 * other. The upstream is a closed port, so a request that passes every check ends as an
 * RA-signed systemUnavail.
 *
 * Every request must get exactly one answer, a CMP error signed by the RA that answers its
 * transaction, with the one legal failInfo: badMessageCheck for a broken signature,
 * systemUnavail for dev1, systemUnavail or notAuthorized for dev2 (whichever snapshot the
 * exchange started on). Each swap must show up in dev2's answers while the load runs.
 * Afterwards raproxy is still up, /metrics shows no crypto on a loop thread and every
 * verification and every signature counted as a worker job, the dead CA cost about one
 * connection attempt per forwarded request (checked while the load runs, so a reconnect
 * storm stops the test at once), and SIGTERM ends it with 0.
 *
 * Signed refusals are budgeted (RP_ADMIT_ERRSIG_RATE per domain and second; above it the
 * answer is an unsigned HTTP 503). With the CA down every answer here is a signed refusal,
 * so each client has a domain of its own and paces itself under that budget; the clients
 * still run in parallel, so reloads meet jobs in flight on the workers. */
#include "fixtures.h"
#include "httpc.h"
#include "msgbuild.h"
#include "support.h"

#include "raproxy/admit.h"
#include "raproxy/arena.h"
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/sig.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS           6   /* parallel clients, each with its own domain */
#define PER_CLIENT        500 /* requests per client */
#define TOTAL             (CLIENTS * PER_CLIENT)
#define RELOADS           6 /* SIGHUPs, alternating the two configurations */
#define BAD_EVERY         5 /* every 5th request carries a broken signature */
#define ARENA             (256u * 1024u)
#define RESP_MAX          (64u * 1024u)
#define ANSWER_MS         30000 /* one exchange, ASan build included */
#define UPSTREAM_MS       10000 /* raproxy's deadline for the CA, well inside ANSWER_MS */
#define STORM_CHECK_EVERY 40    /* wait_count polls, 5 ms each */
#define MAX_FAILURES      20 /* the clients stop early after this many: a broken build fails fast */
#define PHASE_MS          120000 /* most a reload may take to show in the answers */
#define NONCE_LEN         16
#define MANUF_PREFIX      "/.well-known/cmp/p/vendor"

/* Each client sends at most 4/5 of the signed-refusal budget of its domain. */
#define PACE_NS (1000000000ull * 5u / (4u * RP_ADMIT_ERRSIG_RATE))

static char *g_dir;
static const char *g_pki;
static int g_port, g_admin, g_dead;
static struct rpt_proc g_rp;
static uint8_t *g_base[2]; /* genuine ir of dev1 and dev2 */
static size_t g_base_len[2];
static struct rp_arena g_base_arena;
static struct rp_cmp_msg g_base_msg[2];
static uint8_t *g_ra;
static size_t g_ra_len;

/* What came back, counted by the clients and read by the reload driver. */
enum outcome { OUT_DEV1_UNAVAIL, OUT_DEV2_UNAVAIL, OUT_DEV2_DENIED, OUT_BAD_SIG, OUT_COUNT };
static atomic_uint g_count[OUT_COUNT];
static atomic_uint g_answered, g_failed, g_clients_done;
static atomic_bool g_stop; /* the driver saw enough: clients stop sending */
static pthread_mutex_t g_why_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_why[512]; /* the first failure, for the assertion message */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    atomic_fetch_add(&g_failed, 1);
    pthread_mutex_lock(&g_why_lock);
    if (!g_why[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_why, sizeof g_why, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&g_why_lock);
}

/* ---- configuration --------------------------------------------------------------- */

static void write_config(const char *name, const char *allowlist)
{
    char cfg[8192], path[600];
    int n = snprintf(cfg, sizeof cfg,
                     "loops: 2\nworkers: 2\n"
                     "listeners:\n  - address: 127.0.0.1:%d\n    tls: off\n"
                     "admin: {address: 127.0.0.1:%d}\n"
                     "upstream: {url: \"http://127.0.0.1:%d/pkix/\", connect_timeout_ms: 500, "
                     "timeout_ms: %d}\n"
                     "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
                     "chain: %s/operator/ra.chain.pem}\n"
                     "domains:\n",
                     g_port, g_admin, g_dead, UPSTREAM_MS, g_pki, g_pki, g_pki);
    for (int i = 0; i < CLIENTS; i++)
        n += snprintf(cfg + n, sizeof cfg - (size_t)n,
                      "  - name: vendor%d\n"
                      "    trust_anchors: [%s/vendor/root.pem]\n"
                      "    allow: [ir, certConf, error]\n"
                      "    algorithms: [ecdsa-p256]\n"
                      "    allowlist: %s/%s\n",
                      i, g_pki, g_dir, allowlist);
    cr_assert_lt((size_t)n, sizeof cfg);
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    cr_assert_eq(rpt_write_file(path, cfg, (size_t)n), 0);
}

/* Replace raproxy.yaml atomically: a reload never reads half a file. */
static void install_config(const char *name)
{
    char from[600], tmp[600], to[600];
    snprintf(from, sizeof from, "%s/%s", g_dir, name);
    snprintf(tmp, sizeof tmp, "%s/raproxy.yaml.tmp", g_dir);
    snprintf(to, sizeof to, "%s/raproxy.yaml", g_dir);
    size_t len;
    uint8_t *data = rpt_read_file(from, &len);
    cr_assert_not_null(data);
    cr_assert_eq(rpt_write_file(tmp, data, len), 0);
    free(data);
    cr_assert_eq(rename(tmp, to), 0, "rename: %s", strerror(errno));
}

static void setup(void)
{
    g_pki = rpt_pki();
    cr_assert_not_null(g_pki);
    g_dir = rpt_tmpdir();
    g_port = rpt_free_port();
    g_admin = rpt_free_port();
    g_dead = rpt_free_port(); /* nothing listens: the CA is down */
    char path[600];
    snprintf(path, sizeof path, "%s/allow-both.txt", g_dir);
    cr_assert_eq(rpt_write_file(path, "SN0001\nSN0002\n", 14), 0);
    snprintf(path, sizeof path, "%s/allow-dev1.txt", g_dir);
    cr_assert_eq(rpt_write_file(path, "SN0001\n", 7), 0);
    write_config("cfg-both.yaml", "allow-both.txt");
    write_config("cfg-dev1.yaml", "allow-dev1.txt");
    install_config("cfg-both.yaml");
    snprintf(path, sizeof path, "%s/raproxy.yaml", g_dir);
    cr_assert_eq(rpt_raproxy_start(&g_rp, g_dir, path, g_port), 0, "%s", g_rp.log);
    cr_assert_eq(rpt_wait_port(g_admin, 10000), 0);

    g_base[0] = rpt_capture_device(g_dir, g_pki, "ir", "vendor/dev1", &g_base_len[0]);
    g_base[1] = rpt_capture_device(g_dir, g_pki, "ir", "vendor/dev2", &g_base_len[1]);
    cr_assert(g_base[0] && g_base[1], "openssl cmp -reqout wrote no request");
    cr_assert_eq(rp_arena_new(&g_base_arena, ARENA), RP_OK);
    for (int d = 0; d < 2; d++)
        cr_assert_eq(rp_cmp_decode(g_base[d], g_base_len[d], &g_base_arena, &g_base_msg[d], NULL),
                     RP_OK);

    char pem[600], der[600];
    snprintf(pem, sizeof pem, "%s/operator/ra.pem", g_pki);
    snprintf(der, sizeof der, "%s/ra.der", g_dir);
    const char *x[] = {"openssl", "x509", "-in", pem, "-outform", "DER", "-out", der, NULL};
    cr_assert_eq(rpt_run(x, 10000, NULL), 0);
    g_ra = rpt_read_file(der, &g_ra_len);
    cr_assert_not_null(g_ra);
}

static void teardown(void)
{
    if (g_rp.pid > 0)
        rpt_stop(&g_rp, SIGKILL, 5000);
    free(g_base[0]);
    free(g_base[1]);
    free(g_ra);
    if (g_base_arena.base)
        rp_arena_free(&g_base_arena);
    rpt_rmdir(g_dir);
    free(g_dir);
}

TestSuite(reload_load, .init = setup, .fini = teardown, .timeout = 900);

/* ---- one client ------------------------------------------------------------------- */

struct client {
    int index;
    pthread_t thread;
    struct rp_privkey *key[2];
    struct rp_pubkey *ra_pub;
    struct rp_arena arena;
    int fd;
    char *resp;
};

/* The genuine request of `dev` under a fresh transactionID and senderNonce and the current
 * messageTime, signed again with the device's key (then broken when `bad`). */
static int build(struct client *c, int dev, bool bad, struct rp_view *out)
{
    struct rp_arena *a = &c->arena;
    const struct rp_cmp_msg *in = &g_base_msg[dev];
    const struct rp_cmp_header *h = &in->header;
    uint8_t fresh[2 * NONCE_LEN];
    if (getrandom(fresh, sizeof fresh, 0) != (ssize_t)sizeof fresh)
        return -1;
    struct rp_derw w;
    rp_derw_init(&w, a, in->header_raw.len + 256);
    rp_derw_begin(&w, 0x30);
    rp_derw_int64(&w, 0x02, h->pvno);
    rp_derw_raw(&w, h->sender.raw);
    rp_derw_raw(&w, h->recipient.raw);
    rp_derw_begin(&w, 0xa0);
    rp_derw_gentime(&w, (int64_t)time(NULL));
    rp_derw_end(&w);
    rp_derw_raw(&w, h->protection_alg_raw);
    rp_derw_raw(&w, h->sender_kid.raw);
    rp_derw_begin(&w, 0xa4);
    rp_derw_octets(&w, rp_view_make(fresh, NONCE_LEN));
    rp_derw_end(&w);
    rp_derw_begin(&w, 0xa5);
    rp_derw_octets(&w, rp_view_make(fresh + NONCE_LEN, NONCE_LEN));
    rp_derw_end(&w);
    rp_derw_end(&w);
    struct rp_view hdr, pp;
    if (rp_derw_finish(&w, &hdr) != RP_OK ||
        rp_cmp_enc_protected_part(a, hdr, in->body_raw, &pp) != RP_OK)
        return -1;
    uint8_t *sig = rp_arena_alloc(a, RP_SIG_MAX);
    size_t siglen = 0;
    if (!sig || rp_privkey_sign(c->key[dev], RP_SIG_ECDSA_SHA256, pp.p, pp.len, sig, RP_SIG_MAX,
                                &siglen) != RP_OK)
        return -1;
    if (bad)
        sig[siglen / 2] ^= 0x01;
    return rp_cmp_enc_message(a, hdr, in->body_raw, rp_view_make(sig, siglen), in->extra_certs,
                              in->n_extra_certs, out) == RP_OK
               ? 0
               : -1;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Length of one complete response at the start of buf, 0 while incomplete. */
static size_t response_len(const char *buf, size_t n, int *status, size_t *body_off,
                           size_t *body_len, char *ctype, size_t ctype_cap)
{
    const char *end = NULL;
    for (size_t i = 3; i < n && !end; i++)
        if (memcmp(buf + i - 3, "\r\n\r\n", 4) == 0)
            end = buf + i + 1;
    if (!end)
        return 0;
    size_t hlen = (size_t)(end - buf), clen = 0;
    *status = 0;
    sscanf(buf, "HTTP/1.%*d %d", status);
    ctype[0] = 0;
    for (const char *p = buf; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        if (strncasecmp(p, "content-length:", 15) == 0)
            clen = (size_t)strtoul(p + 15, NULL, 10);
        if (strncasecmp(p, "content-type:", 13) == 0) {
            const char *v = p + 13;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(eol - v);
            while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            if (vl >= ctype_cap)
                vl = ctype_cap - 1;
            memcpy(ctype, v, vl);
            ctype[vl] = 0;
        }
        p = eol + 1;
    }
    if (n < hlen + clen)
        return 0;
    *body_off = hlen;
    *body_len = clen;
    return hlen + clen;
}

/* One request on the client's keep-alive connection and the one response to it: no more
 * bytes may follow it. Returns 0 and the body's view into c->resp. */
static int exchange(struct client *c, const char *path, struct rp_view req, struct rp_view *body)
{
    if (c->fd < 0 && (c->fd = rpt_connect(g_port)) < 0) {
        fail("client %d: cannot connect", c->index);
        return -1;
    }
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/pkixcmp\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      path, req.len);
    if (write_all(c->fd, head, (size_t)hn) != 0 || write_all(c->fd, req.p, req.len) != 0) {
        fail("client %d: send failed: %s", c->index, strerror(errno));
        return -1;
    }
    size_t n = 0, body_off = 0, body_len = 0, total = 0;
    int status = 0;
    char ctype[128];
    long deadline = rpt_mono_ms() + ANSWER_MS;
    while (!total && n < RESP_MAX && rpt_mono_ms() < deadline) {
        struct pollfd pfd = {c->fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t r = read(c->fd, c->resp + n, RESP_MAX - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        total = response_len(c->resp, n, &status, &body_off, &body_len, ctype, sizeof ctype);
    }
    if (!total) {
        fail("client %d: no complete answer (%zu bytes)", c->index, n);
        return -1;
    }
    if (n != total) {
        fail("client %d: %zu bytes after the answer", c->index, n - total);
        return -1;
    }
    if (status != 200 || strcmp(ctype, "application/pkixcmp") != 0) {
        fail("client %d: HTTP %d %s: %.*s", c->index, status, ctype, (int)body_len,
             c->resp + body_off);
        return -1;
    }
    *body = rp_view_make(c->resp + body_off, body_len);
    return 0;
}

/* The answer is a CMP error for this request, signed by the RA: its failInfo bits. */
static int check_answer(struct client *c, struct rp_view req, struct rp_view resp,
                        uint32_t *fail_info)
{
    struct rp_arena *a = &c->arena;
    struct rp_cmp_msg *m = rp_arena_calloc(a, 1, sizeof *m), *q = rp_arena_calloc(a, 1, sizeof *q);
    if (!m || !q || rp_cmp_decode(resp.p, resp.len, a, m, NULL) != RP_OK ||
        rp_cmp_decode(req.p, req.len, a, q, NULL) != RP_OK) {
        fail("client %d: answer does not decode", c->index);
        return -1;
    }
    if (m->body.type != RP_CMP_ERROR || m->body.error.status.status != RP_CMP_STATUS_REJECTION) {
        fail("client %d: answer is %s, not a rejection", c->index, rp_cmp_body_name(m->body.type));
        return -1;
    }
    if (!rp_view_eq(m->header.transaction_id.val, q->header.transaction_id.val) ||
        !rp_view_eq(m->header.recip_nonce.val, q->header.sender_nonce.val)) {
        fail("client %d: answer belongs to another transaction", c->index);
        return -1;
    }
    enum rp_sig_alg alg;
    struct rp_view pp;
    if (m->n_extra_certs < 1 || !rp_view_eq(m->extra_certs[0], rp_view_make(g_ra, g_ra_len)) ||
        rp_sig_alg_parse(m->header.protection_alg.raw, &alg) != RP_OK ||
        rp_cmp_protected_part(m, a, &pp) != RP_OK ||
        rp_sig_verify(alg, c->ra_pub, pp.p, pp.len, m->protection.bytes.p,
                      m->protection.bytes.len) != RP_OK) {
        fail("client %d: answer is not signed by the RA", c->index);
        return -1;
    }
    *fail_info = m->body.error.status.fail_info;
    return 0;
}

static void pace(struct timespec *next)
{
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next, NULL);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t t = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec + PACE_NS;
    next->tv_sec = (time_t)(t / 1000000000ull);
    next->tv_nsec = (long)(t % 1000000000ull);
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    char path[64];
    snprintf(path, sizeof path, "%s%d", MANUF_PREFIX, c->index);
    struct timespec next = {0, 0};
    for (int k = 0;
         k < PER_CLIENT && !atomic_load(&g_stop) && atomic_load(&g_failed) < MAX_FAILURES; k++) {
        int dev = (k + c->index) % 2;
        bool bad = k % BAD_EVERY == BAD_EVERY - 1;
        rp_arena_reset(&c->arena);
        struct rp_view req, resp;
        uint32_t fi = 0;
        pace(&next);
        if (build(c, dev, bad, &req) != 0) {
            fail("client %d: cannot build request %d", c->index, k);
            continue;
        }
        int rc = exchange(c, path, req, &resp);
        if (rc == 0)
            rc = check_answer(c, req, resp, &fi);
        atomic_fetch_add(&g_answered, 1);
        if (rc != 0) {
            if (c->fd >= 0)
                close(c->fd);
            c->fd = -1; /* the connection's state is unknown */
            continue;
        }
        if (bad && fi == 1u << RP_FI_BAD_MESSAGE_CHECK)
            atomic_fetch_add(&g_count[OUT_BAD_SIG], 1);
        else if (!bad && fi == 1u << RP_FI_SYSTEM_UNAVAIL)
            atomic_fetch_add(&g_count[dev ? OUT_DEV2_UNAVAIL : OUT_DEV1_UNAVAIL], 1);
        else if (!bad && dev == 1 && fi == 1u << RP_FI_NOT_AUTHORIZED)
            atomic_fetch_add(&g_count[OUT_DEV2_DENIED], 1);
        else
            fail("client %d: dev%d%s answered with failInfo 0x%x", c->index, dev + 1,
                 bad ? " (broken signature)" : "", fi);
    }
    /* Nothing more may arrive: half-close and expect EOF with no byte before it. */
    if (c->fd >= 0) {
        shutdown(c->fd, SHUT_WR);
        long deadline = rpt_mono_ms() + ANSWER_MS;
        for (;;) {
            struct pollfd pfd = {c->fd, POLLIN, 0};
            if (rpt_mono_ms() >= deadline) {
                fail("client %d: connection not closed after half-close", c->index);
                break;
            }
            if (poll(&pfd, 1, 100) <= 0)
                continue;
            char extra[256];
            ssize_t r = read(c->fd, extra, sizeof extra);
            if (r > 0)
                fail("client %d: %zd unexpected bytes after the last answer", c->index, r);
            if (r <= 0)
                break;
        }
        close(c->fd);
    }
    atomic_fetch_add(&g_clients_done, 1);
    return NULL;
}

static void client_init(struct client *c, int index)
{
    c->index = index;
    c->fd = -1;
    for (int d = 0; d < 2; d++) {
        char keyf[600];
        snprintf(keyf, sizeof keyf, "%s/vendor/dev%d.key", g_pki, d + 1);
        cr_assert_eq(rp_privkey_load_pem(keyf, &c->key[d]), RP_OK);
    }
    struct rp_cert ra;
    cr_assert_eq(rp_cert_parse(g_ra, g_ra_len, &ra), RP_OK);
    cr_assert_eq(rp_pubkey_from_spki(ra.spki, &c->ra_pub), RP_OK);
    cr_assert_eq(rp_arena_new(&c->arena, ARENA), RP_OK);
    c->resp = malloc(RESP_MAX);
    cr_assert_not_null(c->resp);
}

static void client_free(struct client *c)
{
    rp_privkey_free(c->key[0]);
    rp_privkey_free(c->key[1]);
    rp_pubkey_free(c->ra_pub);
    rp_arena_free(&c->arena);
    free(c->resp);
}

/* ---- the reload driver ------------------------------------------------------------ */

/* A sample value from Prometheus text: the line `series value`; -1 when absent. */
static long long metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

static long long admin_metric(const char *series)
{
    struct rpt_resp r;
    long long v = -1;
    if (rpt_http(g_admin, "GET", "/metrics", NULL, NULL, 0, 10000, &r) == 0 && r.status == 200)
        v = metric((const char *)r.body, series);
    rpt_resp_free(&r);
    return v;
}

/* A dead CA costs about one connection attempt per forwarded request (each failed attempt
 * fails the requests queued for it), not a storm of reconnects. */
static bool connect_storm(void)
{
    long long errors = admin_metric("raproxy_upstream_connect_errors_total");
    unsigned forwarded =
        atomic_load(&g_count[OUT_DEV1_UNAVAIL]) + atomic_load(&g_count[OUT_DEV2_UNAVAIL]) + CLIENTS;
    if (errors <= 2LL * forwarded)
        return false;
    fail("%lld upstream connection errors for at most %u forwarded requests", errors, forwarded);
    atomic_store(&g_stop, true);
    return true;
}

/* Wait until `counter` exceeds `above` (false when the clients finished, the deadline
 * passed or the upstream storms first). */
static bool wait_count(atomic_uint *counter, unsigned above, long deadline)
{
    for (unsigned i = 0; atomic_load(counter) <= above; i++) {
        if (rpt_mono_ms() >= deadline || atomic_load(&g_clients_done) == CLIENTS ||
            (i % STORM_CHECK_EVERY == 0 && connect_storm()))
            return atomic_load(counter) > above;
        usleep(5000);
    }
    return true;
}

Test(reload_load, every_request_one_signed_answer_across_reloads)
{
    static struct client clients[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        client_init(&clients[i], i);
    for (int i = 0; i < CLIENTS; i++)
        cr_assert_eq(pthread_create(&clients[i].thread, NULL, client_main, &clients[i]), 0);

    /* Reload k happens once k/(RELOADS+1) of the load is answered; it counts when dev2's
     * answers change to the new configuration's while the clients keep sending. */
    int confirmed = 0;
    for (int k = 1; k <= RELOADS && !atomic_load(&g_stop); k++) {
        long deadline = rpt_mono_ms() + PHASE_MS;
        wait_count(&g_answered, (unsigned)(TOTAL * k / (RELOADS + 1)) - 1, deadline);
        bool deny = k % 2 == 1;
        atomic_uint *flip = &g_count[deny ? OUT_DEV2_DENIED : OUT_DEV2_UNAVAIL];
        unsigned before = atomic_load(flip);
        install_config(deny ? "cfg-dev1.yaml" : "cfg-both.yaml");
        cr_assert_eq(kill(g_rp.pid, SIGHUP), 0);
        if (wait_count(flip, before, deadline))
            confirmed++;
        else
            cr_log_error("reload %d (%s) not seen in the answers", k,
                         deny ? "dev2 off the allowlist" : "dev2 back on it");
    }
    wait_count(&g_clients_done, CLIENTS - 1, rpt_mono_ms() + PHASE_MS);
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(clients[i].thread, NULL);
        client_free(&clients[i]);
    }

    unsigned n[OUT_COUNT];
    for (int i = 0; i < OUT_COUNT; i++)
        n[i] = atomic_load(&g_count[i]);
    cr_log_info("answers: dev1 systemUnavail %u, dev2 systemUnavail %u, dev2 notAuthorized %u, "
                "broken signature badMessageCheck %u",
                n[OUT_DEV1_UNAVAIL], n[OUT_DEV2_UNAVAIL], n[OUT_DEV2_DENIED], n[OUT_BAD_SIG]);
    unsigned failed = atomic_load(&g_failed), answered = atomic_load(&g_answered);
    cr_expect_eq(failed, 0, "%u failures, first: %s", failed, g_why);
    cr_expect_eq(answered, TOTAL);
    cr_expect_eq(n[OUT_DEV1_UNAVAIL] + n[OUT_DEV2_UNAVAIL] + n[OUT_DEV2_DENIED] + n[OUT_BAD_SIG],
                 TOTAL);
    cr_expect_eq(n[OUT_BAD_SIG], TOTAL / BAD_EVERY);
    cr_expect_eq(confirmed, RELOADS, "every reload shows in the answers under load");

    int st = 0;
    cr_assert_eq(rpt_alive(&g_rp, &st), 1, "raproxy exited (status %d)", st);
    struct rpt_resp r;
    cr_assert_eq(rpt_http(g_admin, "GET", "/metrics", NULL, NULL, 0, 10000, &r), 0);
    cr_assert_eq(r.status, 200);
    const char *text = (const char *)r.body;
    long long on_loop = metric(text, "raproxy_crypto_on_loop_total");
    long long ok = metric(text, "raproxy_worker_jobs_total{result=\"ok\"}");
    long long err = metric(text, "raproxy_worker_jobs_total{result=\"error\"}");
    long long rejected = metric(text, "raproxy_worker_jobs_total{result=\"rejected\"}");
    long long connect_errors = metric(text, "raproxy_upstream_connect_errors_total");
    cr_log_info("worker jobs: ok %lld, error %lld, rejected %lld; upstream connect errors %lld", ok,
                err, rejected, connect_errors);
    cr_expect_leq(connect_errors, 2LL * (n[OUT_DEV1_UNAVAIL] + n[OUT_DEV2_UNAVAIL] + CLIENTS),
                  "no reconnect storm while the CA is down");
    cr_expect_eq(on_loop, 0, "raproxy_crypto_on_loop_total");
    /* each request: its verification (and re-protection) job, then its refusal's signing */
    cr_expect_geq((ok < 0 ? 0 : ok) + (err < 0 ? 0 : err), 2LL * TOTAL,
                  "worker jobs: ok %lld + error %lld", ok, err);
    cr_expect_leq(rejected, 0, "no job was refused for a full queue");
    rpt_resp_free(&r);

    cr_expect_eq(rpt_stop(&g_rp, SIGTERM, 30000), 0, "SIGTERM drains and exits 0");
    cr_expect_eq(rpt_file_count(g_rp.log, "(generation"), RELOADS, "every reload accepted");
    cr_expect_eq(rpt_file_count(g_rp.log, "configuration rejected"), 0);
    cr_expect_eq(rpt_file_count(g_rp.log, "AddressSanitizer"), 0);
    cr_expect_eq(rpt_file_count(g_rp.log, "runtime error"), 0, "UndefinedBehaviorSanitizer");
    cr_expect_eq(rpt_file_count(g_rp.log, "ThreadSanitizer"), 0);
}
