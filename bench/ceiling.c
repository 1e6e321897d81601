/* bench/ceiling: what one enrollment costs in raw crypto on this machine, with the wolfSSL
 * build and the very functions raproxy uses, and the ceiling that follows in enrollments
 * per second per core.
 *
 * Operations, each timed in CPU time of one thread over real messages of the fleet (fresh
 * device keys, so no key or point cache flatters the figures):
 *   tls        server side of a full TLS 1.3 handshake (rp_tls, P-256 certificate from the
 *              test PKI, a fresh client context each time so nothing resumes)
 *   chain      the device certificate verified against vendor root + ICA
 *              (wolfSSL_CertManagerVerifyBuffer)
 *   protection rp_pubkey_from_spki + rp_sig_verify of a real ir's protection
 *   pop        rp_pubkey_from_spki + rp_sig_verify of its POP over the CertRequest
 *   ra_sign    rp_privkey_sign with the RA key over the re-protected part
 * One enrollment (ir + certConf) as raproxy does it with authentication and re-protection:
 *   storm      tls + chain + 2 protection + pop + 2 ra_sign (certConf's chain is cached)
 *   keepalive  the same without tls
 *   forward    tls only (a domain with `forward: unchanged`, no verification)
 *
 *   bench_ceiling --pki DIR --fleet FILE [--seconds S]   (S per operation, default 1)
 * Prints a table and a "CEILING key=value ..." line for bench/run.sh.
 */
#include "bench.h"

#include <wolfssl/ssl.h>

#include "raproxy/buf.h"
#include "raproxy/cmp.h"
#include "raproxy/err.h"
#include "raproxy/sig.h"
#include "raproxy/tls.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL             256 /* devices / messages cycled through */
#define MSG_ARENA        (32u * 1024u)
#define PATH_LEN         512
#define HANDSHAKE_ROUNDS 16
#define DEFAULT_SECONDS  1.0

enum op { OP_TLS, OP_CHAIN, OP_PROTECTION, OP_POP, OP_RA_SIGN, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"tls", "chain", "protection", "pop", "ra_sign"};
static const char *const op_what[OP_COUNT] = {
    "TLS 1.3 full handshake, server side", "device chain verify (CertManager)",
    "protection verify (ECDSA P-256)", "POP verify (ECDSA P-256)", "RA sign (ECDSA P-256)"};

/* One device's ir, decoded, and what the verifications need. */
struct msg {
    struct rp_arena arena;
    struct rp_cmp_msg m;
    struct rp_view part; /* protected part */
    struct rp_view pop_spki;
    struct rp_view cert;
    struct rp_view spki;
};

struct ceiling {
    double seconds;
    char pki[PATH_LEN];
    struct bench_fleet fleet;
    struct msg msg[POOL];
    size_t n_msg;
    WOLFSSL_CERT_MANAGER *cm;
    struct rp_privkey *ra;
    struct rp_tls_ctx *server;
    struct rp_tls_client_opts client_opts;
    double us[OP_COUNT]; /* CPU microseconds per operation */
};

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_ceiling: %s failed (%d %s)\n", what, rc, rp_err_name(rc));
    exit(1);
}

/* ---- setup: messages as the fleet sends them ---- */

static void make_messages(struct ceiling *c, WC_RNG *rng)
{
    uint8_t txid[16], nonce[16];
    c->n_msg = c->fleet.n < POOL ? c->fleet.n : POOL;
    for (size_t i = 0; i < c->n_msg; i++) {
        struct msg *m = &c->msg[i];
        const struct bench_device *d = &c->fleet.dev[i];
        struct bench_key dev, newkey;
        struct rp_view header, body, wire;
        if (rp_arena_new(&m->arena, MSG_ARENA) != RP_OK)
            die("arena", RP_E_NOMEM);
        bench_random(rng, txid, sizeof txid);
        bench_random(rng, nonce, sizeof nonce);
        struct bench_req_hdr h = {.sender = d->subject,
                                  .txid = rp_view_make(txid, sizeof txid),
                                  .nonce = rp_view_make(nonce, sizeof nonce),
                                  .now = (int64_t)time(NULL)};
        int rc = bench_key_import(&dev, d->priv, d->spki);
        if (rc == 0)
            rc = bench_key_gen(&newkey, rng);
        if (rc == 0)
            rc = bench_cmp_enc_req_header(&m->arena, &h, &header);
        if (rc == 0)
            rc = bench_cmp_enc_body_ir(&m->arena, rng, &newkey, d->subject, &body);
        if (rc == 0)
            rc = bench_cmp_sign_message(&m->arena, rng, &dev, header, body, &d->cert, 1, &wire);
        if (rc == 0)
            rc = rp_cmp_decode(wire.p, wire.len, &m->arena, &m->m, NULL);
        if (rc == 0)
            rc = rp_cmp_protected_part(&m->m, &m->arena, &m->part);
        if (rc == 0)
            rc = rp_crmf_template_spki(&m->m.body.reqs.reqs[0].tmpl, &m->arena, &m->pop_spki);
        if (rc != 0)
            die("building messages", rc);
        m->cert = d->cert;
        m->spki = d->spki;
        bench_key_free(&dev);
        bench_key_free(&newkey);
    }
}

static void setup(struct ceiling *c, const char *fleet)
{
    char path[PATH_LEN + 64];
    WC_RNG rng;
    if (wc_InitRng(&rng) != 0 || bench_fleet_load(&c->fleet, fleet) != 0 || c->fleet.n == 0)
        die("fleet", RP_E_INVAL);
    make_messages(c, &rng);
    wc_FreeRng(&rng);
    c->cm = wolfSSL_CertManagerNew();
    snprintf(path, sizeof path, "%s/vendor/root.pem", c->pki);
    if (!c->cm || wolfSSL_CertManagerLoadCA(c->cm, path, NULL) != WOLFSSL_SUCCESS)
        die(path, RP_E_KEY_LOAD);
    snprintf(path, sizeof path, "%s/vendor/ica.pem", c->pki);
    if (wolfSSL_CertManagerLoadCA(c->cm, path, NULL) != WOLFSSL_SUCCESS)
        die(path, RP_E_KEY_LOAD);
    snprintf(path, sizeof path, "%s/operator/ra.key", c->pki);
    int rc = rp_privkey_load_pem(path, &c->ra);
    if (rc != RP_OK)
        die(path, rc);
    char cert[PATH_LEN + 64], key[PATH_LEN + 64];
    snprintf(cert, sizeof cert, "%s/tls/server.pem", c->pki);
    snprintf(key, sizeof key, "%s/tls/server.key", c->pki);
    struct rp_tls_server_opts so = {.cert_file = cert, .key_file = key};
    if ((rc = rp_tls_ctx_server(&c->server, &so)) != RP_OK)
        die("TLS server context", rc);
}

/* ---- operations (return RP_OK) ---- */

static int op_chain(struct ceiling *c, size_t i)
{
    const struct msg *m = &c->msg[i % c->n_msg];
    return wolfSSL_CertManagerVerifyBuffer(c->cm, m->cert.p, (long)m->cert.len,
                                           WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS
               ? RP_OK
               : RP_E_SIGNER_NOT_TRUSTED;
}

static int verify_with(struct rp_view spki, struct rp_view alg, struct rp_view data,
                       struct rp_view sig)
{
    struct rp_pubkey *k = NULL;
    enum rp_sig_alg a;
    int rc = rp_sig_alg_parse(alg, &a);
    if (rc == RP_OK)
        rc = rp_pubkey_from_spki(spki, &k);
    if (rc == RP_OK)
        rc = rp_sig_verify(a, k, data.p, data.len, sig.p, sig.len);
    rp_pubkey_free(k);
    return rc;
}

static int op_protection(struct ceiling *c, size_t i)
{
    const struct msg *m = &c->msg[i % c->n_msg];
    return verify_with(m->spki, m->m.header.protection_alg.raw, m->part, m->m.protection.bytes);
}

static int op_pop(struct ceiling *c, size_t i)
{
    const struct msg *m = &c->msg[i % c->n_msg];
    const struct rp_crmf_req *r = &m->m.body.reqs.reqs[0];
    return verify_with(m->pop_spki, r->pop.alg.raw, r->cert_req_raw, r->pop.signature.bytes);
}

static int op_ra_sign(struct ceiling *c, size_t i)
{
    const struct msg *m = &c->msg[i % c->n_msg];
    uint8_t sig[RP_SIG_MAX];
    size_t len = 0;
    return rp_privkey_sign(c->ra, RP_SIG_ECDSA_SHA256, m->part.p, m->part.len, sig, sizeof sig,
                           &len);
}

static int pass(struct rp_tls *from, struct rp_tls *to)
{
    struct rp_buf *o = rp_tls_out(from);
    size_t n = rp_buf_avail(o);
    int rc = n ? rp_tls_feed(to, rp_buf_head(o), n) : RP_OK;
    if (rc == RP_OK)
        rp_buf_consume(o, n);
    return rc;
}

/* One full handshake in memory; *server_cpu gets the CPU time of the server's calls. */
static int handshake(struct ceiling *c, double *server_cpu)
{
    struct rp_tls_ctx *cctx = NULL;
    struct rp_tls *cl = NULL, *sv = NULL;
    struct rp_buf plain;
    rp_buf_init(&plain, 0);
    int rc = rp_tls_ctx_client(&cctx, &c->client_opts);
    if (rc == RP_OK)
        rc = rp_tls_new(&cl, cctx);
    double t0 = bench_thread_cpu_s();
    if (rc == RP_OK)
        rc = rp_tls_new(&sv, c->server);
    *server_cpu += bench_thread_cpu_s() - t0;
    for (int round = 0; rc == RP_OK && round < HANDSHAKE_ROUNDS; round++) {
        rc = rp_tls_process(cl, &plain);
        if (rc == RP_OK)
            rc = pass(cl, sv);
        t0 = bench_thread_cpu_s();
        if (rc == RP_OK)
            rc = rp_tls_process(sv, &plain);
        *server_cpu += bench_thread_cpu_s() - t0;
        if (rc == RP_OK)
            rc = pass(sv, cl);
        if (rc == RP_OK && rp_tls_handshake_done(cl) && rp_tls_handshake_done(sv) &&
            rp_buf_avail(rp_tls_out(sv)) == 0 && rp_buf_avail(rp_tls_out(cl)) == 0 && round > 0)
            break;
    }
    if (rc == RP_OK && (!rp_tls_handshake_done(sv) || rp_tls_resumed(sv)))
        rc = RP_E_INTERNAL;
    rp_tls_free(cl);
    t0 = bench_thread_cpu_s();
    rp_tls_free(sv);
    *server_cpu += bench_thread_cpu_s() - t0;
    rp_tls_ctx_unref(cctx);
    rp_buf_free(&plain);
    return rc;
}

/* ---- measuring ---- */

static double measure(struct ceiling *c, int (*one)(struct ceiling *, size_t))
{
    uint64_t end = bench_now_ns() + (uint64_t)(c->seconds * 1e9);
    double cpu0 = bench_thread_cpu_s();
    size_t n = 0;
    do {
        int rc = one(c, n++);
        if (rc != RP_OK)
            die("operation", rc);
    } while (bench_now_ns() < end);
    return (bench_thread_cpu_s() - cpu0) * 1e6 / (double)n;
}

static double measure_tls(struct ceiling *c)
{
    uint64_t end = bench_now_ns() + (uint64_t)(c->seconds * 1e9);
    double server_cpu = 0;
    size_t n = 0;
    do {
        int rc = handshake(c, &server_cpu);
        if (rc != RP_OK)
            die("TLS handshake", rc);
        n++;
    } while (bench_now_ns() < end);
    return server_cpu * 1e6 / (double)n;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_ceiling --pki DIR --fleet FILE [--seconds S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static struct ceiling c;
    static const struct option lo[] = {
        {"pki", 1, 0, 'p'}, {"fleet", 1, 0, 'f'}, {"seconds", 1, 0, 's'}, {0, 0, 0, 0}};
    const char *fleet = NULL;
    int opt;
    c.seconds = DEFAULT_SECONDS;
    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (opt == 'p')
            snprintf(c.pki, sizeof c.pki, "%s", optarg);
        else if (opt == 'f')
            fleet = optarg;
        else if (opt == 's')
            c.seconds = strtod(optarg, NULL);
        else
            usage();
    }
    if (!c.pki[0] || !fleet || c.seconds <= 0)
        usage();
    wolfSSL_Init();
    setup(&c, fleet);
    c.us[OP_TLS] = measure_tls(&c);
    c.us[OP_CHAIN] = measure(&c, op_chain);
    c.us[OP_PROTECTION] = measure(&c, op_protection);
    c.us[OP_POP] = measure(&c, op_pop);
    c.us[OP_RA_SIGN] = measure(&c, op_ra_sign);
    double keepalive =
        c.us[OP_CHAIN] + 2 * c.us[OP_PROTECTION] + c.us[OP_POP] + 2 * c.us[OP_RA_SIGN];
    double storm = c.us[OP_TLS] + keepalive, forward = c.us[OP_TLS];
    printf("bench_ceiling (%s): CPU time per operation, one thread\n", RP_WOLFSSL_INFO);
    for (int i = 0; i < OP_COUNT; i++)
        printf("  %-38s %8.1f us  (%7.0f/s/core)\n", op_what[i], c.us[i], 1e6 / c.us[i]);
    printf("  one enrollment (ir + certConf), RA work: storm %.1f us, keep-alive %.1f us\n", storm,
           keepalive);
    printf("  ceiling: storm %.0f, keep-alive %.0f enrollments/s/core; forward-only storm %.0f\n",
           1e6 / storm, 1e6 / keepalive, 1e6 / forward);
    printf("CEILING");
    for (int i = 0; i < OP_COUNT; i++)
        printf(" %s_us=%.1f", op_names[i], c.us[i]);
    printf(" storm_eps=%.0f keepalive_eps=%.0f forward_storm_eps=%.0f\n", 1e6 / storm,
           1e6 / keepalive, 1e6 / forward);
    for (size_t i = 0; i < c.n_msg; i++)
        rp_arena_free(&c.msg[i].arena);
    rp_tls_ctx_unref(c.server);
    rp_privkey_free(c.ra);
    wolfSSL_CertManagerFree(c.cm);
    bench_fleet_free(&c.fleet);
    wolfSSL_Cleanup();
    return 0;
}
