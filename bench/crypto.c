/* bench/crypto: the public-key work raproxy does per enrollment, measured with the wolfSSL
 * build it was linked to, and compared with the other build in the same run.
 *
 * This file is compiled twice: bench_crypto (the tree's wolfSSL, normally the fast static
 * build) and, in a fast tree, bench_crypto_system (Debian's libwolfssl). bench_crypto runs
 * its own figures and then bench_crypto_system (as a child, --raw) in alternating rounds,
 * keeps the best of each, and prints one table with the ratio fast/system.
 *
 * Figures are operations per CPU-second of one thread (CLOCK_THREAD_CPUTIME_ID), so other
 * load on the machine lowers them little. "fresh keys": every operation uses another key
 * from a pool larger than wolfSSL's FP_ECC point cache, as a fleet of devices does.
 *
 *   bench_crypto [-t SECONDS_PER_OP] [-r ROUNDS] [--raw]
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>
#define USE_CERT_BUFFERS_2048
#include <wolfssl/certs_test.h>

#ifdef RP_BENCH_TLS
#include "raproxy/buf.h"
#include "raproxy/err.h"
#include "raproxy/tls.h"
#endif

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef RP_WOLFSSL_BUILD
#define RP_WOLFSSL_BUILD "system"
#endif

#define POOL 256 /* distinct keys per algorithm; wolfSSL's FP_ECC cache holds 15 points */

enum op {
    OP_P256_SIGN,
    OP_P256_VERIFY,
    OP_P384_VERIFY,
    OP_RSA2048_VERIFY,
    OP_ED25519_VERIFY,
    OP_TLS13_SERVER,
    OP_TLS13_BOTH,
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    [OP_P256_SIGN] = "P-256 sign (fresh keys)",
    [OP_P256_VERIFY] = "P-256 verify (fresh keys)",
    [OP_P384_VERIFY] = "P-384 verify (fresh keys)",
    [OP_RSA2048_VERIFY] = "RSA-2048 verify (PKCS#1 v1.5)",
    [OP_ED25519_VERIFY] = "Ed25519 verify (fresh keys)",
    [OP_TLS13_SERVER] = "TLS 1.3 full handshake, server side",
    [OP_TLS13_BOTH] = "TLS 1.3 full handshake, both sides",
};

struct ecc_pool {
    ecc_key key[POOL];
    byte pub[POOL][1 + 2 * 48];
    word32 pub_len[POOL];
    byte sig[POOL][ECC_MAX_SIG_SIZE];
    word32 sig_len[POOL];
};

struct ed_pool {
    byte pub[POOL][ED25519_PUB_KEY_SIZE];
    byte sig[POOL][ED25519_SIG_SIZE];
};

struct bench {
    double seconds; /* wall time per operation */
    WC_RNG rng;
    byte msg[64];
    byte hash[WC_SHA384_DIGEST_SIZE];
    struct ecc_pool *p256;
    struct ecc_pool *p384;
    struct ed_pool *ed;
    RsaKey rsa;
    byte rsa_sig[256];
    word32 rsa_sig_len;
    char tmpdir[64];
    double rate[OP_COUNT]; /* ops per CPU-second; 0 = not measured */
};

static double now(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "bench_crypto (%s): %s failed: %d\n", RP_WOLFSSL_BUILD, what, rc);
    exit(1);
}

/* Runs one(b, i) for i = 0, 1, … until `seconds` of wall time have passed; returns the
 * rate per CPU-second of this thread. */
static double measure(struct bench *b, int (*one)(struct bench *, unsigned))
{
    double wall_end = now(CLOCK_MONOTONIC) + b->seconds;
    double cpu0 = now(CLOCK_THREAD_CPUTIME_ID);
    unsigned n = 0;
    do {
        for (unsigned k = 0; k < 8; k++, n++) {
            int rc = one(b, n);
            if (rc != 0)
                fail("operation", rc);
        }
    } while (now(CLOCK_MONOTONIC) < wall_end);
    return n / (now(CLOCK_THREAD_CPUTIME_ID) - cpu0);
}

static struct ecc_pool *ecc_pool_new(struct bench *b, int curve_size, int curve_id)
{
    struct ecc_pool *p = calloc(1, sizeof *p);
    if (!p)
        fail("calloc", 0);
    for (int i = 0; i < POOL; i++) {
        int rc = wc_ecc_init(&p->key[i]);
        if (rc == 0)
            rc = wc_ecc_make_key_ex(&b->rng, curve_size, &p->key[i], curve_id);
        p->pub_len[i] = sizeof p->pub[i];
        if (rc == 0)
            rc = wc_ecc_export_x963(&p->key[i], p->pub[i], &p->pub_len[i]);
        p->sig_len[i] = sizeof p->sig[i];
        if (rc == 0)
            rc = wc_ecc_sign_hash(b->hash, (word32)curve_size, p->sig[i], &p->sig_len[i], &b->rng,
                                  &p->key[i]);
        if (rc != 0)
            fail("ECC key pool", rc);
    }
    return p;
}

static void ecc_pool_free(struct ecc_pool *p)
{
    for (int i = 0; p && i < POOL; i++)
        wc_ecc_free(&p->key[i]);
    free(p);
}

static int op_p256_sign(struct bench *b, unsigned i)
{
    byte sig[ECC_MAX_SIG_SIZE];
    word32 len = sizeof sig;
    return wc_ecc_sign_hash(b->hash, 32, sig, &len, &b->rng, &b->p256->key[i % POOL]);
}

/* What verifying a device's signature costs: load its public key, verify. */
static int ecc_verify(struct ecc_pool *p, unsigned i, const byte *hash, word32 hash_len,
                      int curve_id)
{
    ecc_key k;
    int ok = 0;
    int rc = wc_ecc_init(&k);
    if (rc == 0)
        rc = wc_ecc_import_x963_ex(p->pub[i], p->pub_len[i], &k, curve_id);
    if (rc == 0)
        rc = wc_ecc_verify_hash(p->sig[i], p->sig_len[i], hash, hash_len, &ok, &k);
    wc_ecc_free(&k);
    return rc != 0 ? rc : ok == 1 ? 0 : -1;
}

static int op_p256_verify(struct bench *b, unsigned i)
{
    return ecc_verify(b->p256, i % POOL, b->hash, 32, ECC_SECP256R1);
}

static int op_p384_verify(struct bench *b, unsigned i)
{
    return ecc_verify(b->p384, i % POOL, b->hash, 48, ECC_SECP384R1);
}

static int op_rsa_verify(struct bench *b, unsigned i)
{
    (void)i;
    byte out[256];
    int n = wc_RsaSSL_Verify(b->rsa_sig, b->rsa_sig_len, out, sizeof out, &b->rsa);
    return n == 32 ? 0 : n < 0 ? n : -1;
}

static int op_ed25519_verify(struct bench *b, unsigned i)
{
    ed25519_key k;
    int ok = 0;
    int rc = wc_ed25519_init(&k);
    if (rc == 0)
        rc = wc_ed25519_import_public(b->ed->pub[i % POOL], ED25519_PUB_KEY_SIZE, &k);
    if (rc == 0)
        rc = wc_ed25519_verify_msg(b->ed->sig[i % POOL], ED25519_SIG_SIZE, b->msg, sizeof b->msg,
                                   &ok, &k);
    wc_ed25519_free(&k);
    return rc != 0 ? rc : ok == 1 ? 0 : -1;
}

static void setup_keys(struct bench *b)
{
    int rc = wc_InitRng(&b->rng);
    if (rc != 0)
        fail("wc_InitRng", rc);
    for (size_t i = 0; i < sizeof b->msg; i++)
        b->msg[i] = (byte)i;
    wc_Sha384Hash(b->msg, sizeof b->msg, b->hash);
    b->p256 = ecc_pool_new(b, 32, ECC_SECP256R1);
    b->p384 = ecc_pool_new(b, 48, ECC_SECP384R1);

    /* RSA public operations keep no per-key state: one key (wolfSSL's test key) will do. */
    word32 idx = 0;
    rc = wc_InitRsaKey(&b->rsa, NULL);
    if (rc == 0)
        rc = wc_RsaPrivateKeyDecode(client_key_der_2048, &idx, &b->rsa, sizeof_client_key_der_2048);
    if (rc == 0)
        rc = wc_RsaSetRNG(&b->rsa, &b->rng);
    if (rc == 0) {
        rc = wc_RsaSSL_Sign(b->hash, 32, b->rsa_sig, sizeof b->rsa_sig, &b->rsa, &b->rng);
        if (rc > 0) {
            b->rsa_sig_len = (word32)rc;
            rc = 0;
        }
    }
    if (rc != 0)
        fail("RSA key", rc);

    b->ed = calloc(1, sizeof *b->ed);
    if (!b->ed)
        fail("calloc", 0);
    for (int i = 0; i < POOL; i++) {
        ed25519_key k;
        word32 len = ED25519_PUB_KEY_SIZE, slen = ED25519_SIG_SIZE;
        rc = wc_ed25519_init(&k);
        if (rc == 0)
            rc = wc_ed25519_make_key(&b->rng, ED25519_KEY_SIZE, &k);
        if (rc == 0)
            rc = wc_ed25519_export_public(&k, b->ed->pub[i], &len);
        if (rc == 0)
            rc = wc_ed25519_sign_msg(b->msg, sizeof b->msg, b->ed->sig[i], &slen, &k);
        wc_ed25519_free(&k);
        if (rc != 0)
            fail("Ed25519 key pool", rc);
    }
}

static void teardown_keys(struct bench *b)
{
    ecc_pool_free(b->p256);
    ecc_pool_free(b->p384);
    free(b->ed);
    wc_FreeRsaKey(&b->rsa);
    wc_FreeRng(&b->rng);
}

#ifdef RP_BENCH_TLS
static int write_pem(const char *path, const byte *der, word32 der_len, int type)
{
    byte pem[4096];
    int n = wc_DerToPem(der, der_len, pem, sizeof pem, type);
    if (n <= 0)
        return n < 0 ? n : -1;
    FILE *f = fopen(path, "wb");
    if (!f)
        return -errno;
    size_t w = fwrite(pem, 1, (size_t)n, f);
    return fclose(f) == 0 && w == (size_t)n ? 0 : -1;
}

/* A P-256 self-signed certificate (marked CA so the client can take it as its anchor) and
 * its key, written as PEM into b->tmpdir. */
static void make_server_cert(struct bench *b, char *cert_path, char *key_path, size_t cap)
{
    ecc_key key;
    Cert cert;
    byte der[2048];
    int rc = wc_ecc_init(&key);
    if (rc == 0)
        rc = wc_ecc_make_key_ex(&b->rng, 32, &key, ECC_SECP256R1);
    if (rc == 0)
        rc = wc_InitCert(&cert);
    if (rc != 0)
        fail("certificate setup", rc);
    snprintf(cert.subject.country, CTC_NAME_SIZE, "DE");
    snprintf(cert.subject.org, CTC_NAME_SIZE, "raproxy bench");
    snprintf(cert.subject.commonName, CTC_NAME_SIZE, "localhost");
    cert.isCA = 1;
    cert.sigType = CTC_SHA256wECDSA;
    cert.daysValid = 30;
    rc = wc_MakeCert(&cert, der, sizeof der, NULL, &key, &b->rng);
    if (rc >= 0)
        rc = wc_SignCert(cert.bodySz, cert.sigType, der, sizeof der, NULL, &key, &b->rng);
    if (rc < 0)
        fail("certificate", rc);
    snprintf(cert_path, cap, "%s/cert.pem", b->tmpdir);
    snprintf(key_path, cap, "%s/key.pem", b->tmpdir);
    rc = write_pem(cert_path, der, (word32)rc, CERT_TYPE);
    if (rc == 0) {
        rc = wc_EccKeyToDer(&key, der, sizeof der);
        if (rc > 0)
            rc = write_pem(key_path, der, (word32)rc, ECC_PRIVATEKEY_TYPE);
    }
    if (rc != 0)
        fail("writing certificate", rc);
    wc_ecc_free(&key);
}

/* Moves what `from` has for the wire into `to`. */
static int pass(struct rp_tls *from, struct rp_tls *to)
{
    struct rp_buf *o = rp_tls_out(from);
    size_t n = rp_buf_avail(o);
    if (n == 0)
        return RP_OK;
    int rc = rp_tls_feed(to, rp_buf_head(o), n);
    if (rc == RP_OK)
        rp_buf_consume(o, n);
    return rc;
}

/* One full handshake in memory (a fresh client context, so nothing is resumed), including
 * the server's NewSessionTicket. Adds the CPU time spent in server and in client calls. */
static int handshake(struct rp_tls_ctx *server_ctx, const struct rp_tls_client_opts *co,
                     double *server_cpu, double *client_cpu)
{
    struct rp_tls_ctx *cctx = NULL;
    struct rp_tls *c = NULL, *s = NULL;
    struct rp_buf plain;
    rp_buf_init(&plain, 0);
    int rc = rp_tls_ctx_client(&cctx, co); /* not timed: an upstream builds it once */
    if (rc != RP_OK)
        goto out;

    double t0 = now(CLOCK_THREAD_CPUTIME_ID);
    rc = rp_tls_new(&s, server_ctx);
    double t1 = now(CLOCK_THREAD_CPUTIME_ID);
    *server_cpu += t1 - t0;
    if (rc != RP_OK)
        goto out;
    rc = rp_tls_new(&c, cctx);
    *client_cpu += now(CLOCK_THREAD_CPUTIME_ID) - t1;
    if (rc != RP_OK)
        goto out;

    for (int round = 0; round < 16; round++) {
        t0 = now(CLOCK_THREAD_CPUTIME_ID);
        rc = rp_tls_process(c, &plain);
        if (rc == RP_OK)
            rc = pass(c, s);
        t1 = now(CLOCK_THREAD_CPUTIME_ID);
        *client_cpu += t1 - t0;
        if (rc != RP_OK)
            goto out;
        rc = rp_tls_process(s, &plain);
        if (rc == RP_OK)
            rc = pass(s, c);
        *server_cpu += now(CLOCK_THREAD_CPUTIME_ID) - t1;
        if (rc != RP_OK)
            goto out;
        if (rp_tls_handshake_done(c) && rp_tls_handshake_done(s) && !rp_tls_pending(c) &&
            rp_buf_avail(rp_tls_out(s)) == 0 && rp_buf_avail(rp_tls_out(c)) == 0 && round > 0) {
            if (rp_tls_resumed(c) || strcmp(rp_tls_version(s), "TLSv1.3") != 0)
                rc = RP_E_INTERNAL;
            goto out;
        }
    }
    rc = RP_E_INTERNAL; /* no progress */
out:
    rp_tls_free(c);
    rp_tls_free(s);
    rp_tls_ctx_unref(cctx);
    rp_buf_free(&plain);
    return rc;
}

static void measure_tls(struct bench *b)
{
    char cert[128], key[128];
    make_server_cert(b, cert, key, sizeof cert);
    struct rp_tls_server_opts so = {.cert_file = cert, .key_file = key, .min_version = RP_TLS_V13};
    struct rp_tls_client_opts co = {.ca_file = cert, .min_version = RP_TLS_V13};
    struct rp_tls_ctx *sctx = NULL;
    int rc = rp_tls_ctx_server(&sctx, &so);
    if (rc != RP_OK) {
        fprintf(stderr, "bench_crypto: rp_tls_ctx_server: %s\n", rp_err_name(rc));
        exit(1);
    }
    double server_cpu = 0, client_cpu = 0;
    double wall_end = now(CLOCK_MONOTONIC) + b->seconds;
    unsigned n = 0;
    do {
        rc = handshake(sctx, &co, &server_cpu, &client_cpu);
        if (rc != RP_OK) {
            fprintf(stderr, "bench_crypto: handshake %u: %s\n", n, rp_err_name(rc));
            exit(1);
        }
        n++;
    } while (now(CLOCK_MONOTONIC) < wall_end);
    rp_tls_ctx_unref(sctx);
    b->rate[OP_TLS13_SERVER] = n / server_cpu;
    b->rate[OP_TLS13_BOTH] = n / (server_cpu + client_cpu);
    unlink(cert);
    unlink(key);
}
#endif

static void run_all(struct bench *b)
{
    b->rate[OP_P256_SIGN] = measure(b, op_p256_sign);
    b->rate[OP_P256_VERIFY] = measure(b, op_p256_verify);
    b->rate[OP_P384_VERIFY] = measure(b, op_p384_verify);
    b->rate[OP_RSA2048_VERIFY] = measure(b, op_rsa_verify);
    b->rate[OP_ED25519_VERIFY] = measure(b, op_ed25519_verify);
#ifdef RP_BENCH_TLS
    measure_tls(b);
#endif
}

static void describe(char *out, size_t cap)
{
    snprintf(out, cap,
             "wolfSSL %s %s: SP ECC %s, SP RSA %s, SP x86-64 asm %s, Intel asm %s, AES-NI %s",
             wolfSSL_lib_version(), RP_WOLFSSL_BUILD,
#ifdef WOLFSSL_HAVE_SP_ECC
             "on",
#else
             "off",
#endif
#ifdef WOLFSSL_HAVE_SP_RSA
             "on",
#else
             "off",
#endif
#ifdef WOLFSSL_SP_X86_64_ASM
             "on",
#else
             "off",
#endif
#ifdef USE_INTEL_SPEEDUP
             "on",
#else
             "off",
#endif
#ifdef WOLFSSL_AESNI
             "on"
#else
             "off"
#endif
    );
}

/* Runs the sibling bench_crypto_system once with --raw; fills rate[] and its description. */
static int run_system(const char *exe, double seconds, double *rate, char *info, size_t cap)
{
    char cmd[PATH_MAX + 64], line[512];
    snprintf(cmd, sizeof cmd, "'%s' --raw -t %g -r 1", exe, seconds);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    while (fgets(line, sizeof line, p)) {
        int op;
        double r;
        if (sscanf(line, "op %d %lf", &op, &r) == 2 && op >= 0 && op < OP_COUNT)
            rate[op] = r;
        else if (strncmp(line, "info ", 5) == 0)
            snprintf(info, cap, "%.*s", (int)strcspn(line + 5, "\n"), line + 5);
    }
    return pclose(p) == 0 ? 0 : -1;
}

static void sibling(char *out, size_t cap)
{
    static const char name[] = "/bench_crypto_system";
    out[0] = 0;
    if (cap <= sizeof name)
        return;
    ssize_t n = readlink("/proc/self/exe", out, cap - sizeof name);
    if (n <= 0)
        return;
    out[n] = 0;
    char *slash = strrchr(out, '/');
    if (!slash)
        slash = out + n;
    memcpy(slash, name, sizeof name);
    if (access(out, X_OK) != 0)
        out[0] = 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_crypto [-t SECONDS_PER_OP] [-r ROUNDS] [--raw]\n");
}

int main(int argc, char **argv)
{
    struct bench b = {.seconds = 1.0};
    int rounds = 3;
    bool raw = false;
    static const struct option opts[] = {
        {"raw", no_argument, NULL, 'R'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "t:r:h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            b.seconds = atof(optarg);
            break;
        case 'r':
            rounds = atoi(optarg);
            break;
        case 'R':
            raw = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (b.seconds <= 0 || rounds < 1) {
        usage(stderr);
        return 2;
    }
    wolfSSL_Init();
    snprintf(b.tmpdir, sizeof b.tmpdir, "/tmp/rp-bench-crypto-XXXXXX");
    if (!mkdtemp(b.tmpdir))
        fail("mkdtemp", -errno);
    setup_keys(&b);

    char info[256], sys_info[256] = "", sys_exe[PATH_MAX];
    describe(info, sizeof info);
    double best[OP_COUNT] = {0}, sys_best[OP_COUNT] = {0};
    sibling(sys_exe, sizeof sys_exe);
    if (raw || strcmp(RP_WOLFSSL_BUILD, "fast") != 0)
        sys_exe[0] = 0;

    for (int r = 0; r < rounds; r++) {
        run_all(&b);
        for (int i = 0; i < OP_COUNT; i++)
            if (b.rate[i] > best[i])
                best[i] = b.rate[i];
        if (sys_exe[0]) {
            double rate[OP_COUNT] = {0};
            if (run_system(sys_exe, b.seconds, rate, sys_info, sizeof sys_info) != 0) {
                fprintf(stderr, "bench_crypto: %s failed\n", sys_exe);
                return 1;
            }
            for (int i = 0; i < OP_COUNT; i++)
                if (rate[i] > sys_best[i])
                    sys_best[i] = rate[i];
        }
    }

    if (raw) {
        printf("info %s\n", info);
        for (int i = 0; i < OP_COUNT; i++)
            if (best[i] > 0)
                printf("op %d %.1f\n", i, best[i]);
    } else {
        printf("bench/crypto: operations per CPU-second, one thread, best of %d rounds of %gs\n",
               rounds, b.seconds);
        const double *fast = best, *sys = sys_best;
        if (!sys_exe[0]) { /* only this build: show it in its own column */
            if (strcmp(RP_WOLFSSL_BUILD, "fast") != 0) {
                sys = best;
                fast = sys_best;
                snprintf(sys_info, sizeof sys_info, "%s", info);
                info[0] = 0;
            }
        }
        if (sys_info[0])
            printf("  system: %s\n", sys_info);
        if (info[0])
            printf("  fast:   %s\n", info);
        printf("%-38s %12s %12s %12s\n", "operation", "system", "fast", "fast/system");
        for (int i = 0; i < OP_COUNT; i++) {
            char s[32] = "-", f[32] = "-", q[32] = "-";
            if (sys[i] > 0)
                snprintf(s, sizeof s, "%.0f", sys[i]);
            if (fast[i] > 0)
                snprintf(f, sizeof f, "%.0f", fast[i]);
            if (sys[i] > 0 && fast[i] > 0)
                snprintf(q, sizeof q, "%.2fx", fast[i] / sys[i]);
            printf("%-38s %12s %12s %12s\n", op_names[i], s, f, q);
        }
#ifndef RP_BENCH_TLS
        printf("(TLS handshakes not measured: src/proto/tls.c is not in this build)\n");
#endif
    }
    teardown_keys(&b);
    rmdir(b.tmpdir);
    wolfSSL_Cleanup();
    return 0;
}
