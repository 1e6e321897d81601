/* bench/verify: signed ir verifications per CPU-second through raproxy's crypto worker pool,
 * against raw wolfCrypt verification of the same messages' protection, in one run.
 *
 * Messages: for each device key of the test PKI (vendor/dev1 ECDSA P-256, vendor/dev-rsa
 * RSA-2048 PKCS#1 v1.5, vendor/dev-ed25519 Ed25519) MSGS distinct ir messages written with
 * raproxy's encoders: fresh transactionID and senderNonce, the device certificate and the
 * vendor ICA in extraCerts, a CertTemplate for the device's own public key with a signature
 * POP, protected with the device key.
 *
 * Columns (every figure is operations per CPU-second):
 *   raw        wolfCrypt only, one thread: SHA-256 (Ed25519: the message) of the protected
 *              part and the signature check, with a key parsed once.
 *   pool sig   jobs on rp_workers: rp_sig_verify over rp_cmp_protected_part with a key
 *              parsed once per job slot (the pool's and raproxy's wrappers' overhead).
 *   pool RA    the RA's protection check as verify.c does it on a decoded message: the
 *              protected part, rp_sig_alg_parse, rp_pubkey_from_spki, rp_sig_verify.
 *   full+c     rp_cmp_decode + ra_verify_request (the RA's worker step 6): signer lookup,
 *              chain to the vendor root, protection signature, POP, authorization; the
 *              domain's chain cache warm (a returning device).
 *   full-c     the same with the chain cache off: the cost of a new device (the path found
 *              by name, the leaf's signature checked by wolfSSL against the path's
 *              CertManager prepared once, revocation looked up).
 *   full-c+crl the same in a domain whose CRL (the vendor ICA's) lists CRL_ENTRIES revoked
 *              serials (-c, default 100000): with the CRL indexed once at load, this should
 *              cost what full-c costs (issue 20); the CRL is made and signed here.
 * Pool figures divide by the CPU time of the whole process (workers, the submitting loop and
 * its wake-ups), so other load on the machine lowers them little; the ratio is pool/raw.
 *
 *   bench_verify [-t SECONDS_PER_CELL] [-w WORKERS] [-p TEST_PKI_DIR] [-c CRL_ENTRIES]
 * WORKERS defaults to every CPU this process may run on.
 */
#include "ra/ra.h"

#include "raproxy/arena.h"
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"
#include "raproxy/sig.h"
#include "raproxy/worker.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#ifndef RP_WOLFSSL_INFO
#define RP_WOLFSSL_INFO "?"
#endif

#define MSGS          64 /* distinct messages per key */
#define SLOTS_PER_CPU 8  /* jobs in flight per worker */
#define MSG_ARENA     (64u * 1024u)
#define JOB_ARENA     (256u * 1024u)
#define NONCE_LEN     16
#define PATH_MAX_LEN  600
#define FILE_MAX_LEN  (PATH_MAX_LEN + 64) /* the PKI directory + a file in it */
#define CELL_SECONDS  1.0

enum mode {
    MODE_SIG,
    MODE_RA_SIG,
    MODE_FULL_CACHE,
    MODE_FULL_NOCACHE,
    MODE_FULL_NOCACHE_CRL,
    MODE_COUNT,
    MODE_NOOP
};
static const char *const mode_names[MODE_COUNT] = {"pool sig", "pool RA", "full+c", "full-c",
                                                   "full-c+crl"};
#define CRL_ENTRIES_DEFAULT 100000u
#define CRL_SERIAL_LEN      16
#define CRL_VALID_S         (7 * 86400)
#define CRL_ENTRY_MAX       48 /* SEQUENCE { INTEGER (17), GeneralizedTime (17) } and framing */

struct der {
    uint8_t *p;
    size_t len;
};

/* One device key and its messages. */
struct sample {
    const char *name, *dev;
    struct rp_privkey *priv;
    enum rp_sig_alg alg;
    struct der cert, ica;
    struct rp_cert leaf;
    struct rp_arena arena;       /* the messages and their views */
    struct rp_view msg[MSGS];    /* PKIMessage DER */
    struct rp_cmp_msg dec[MSGS]; /* decoded (for the sig-only modes) */
    struct rp_view pp[MSGS];     /* protected part */
    struct rp_view sig[MSGS];    /* protection signature */
    /* raw wolfCrypt */
    int type; /* enum rp_key_type */
    ecc_key ecc;
    RsaKey rsa;
    ed25519_key ed;
};

struct slot {
    struct rp_job job;
    struct rp_exchange ex;
    struct ra_exchange rx;
    struct rp_pubkey *pk; /* MODE_SIG: this slot's own copy, so no lock is shared */
    struct run *run;
    unsigned i;
};

struct run {
    enum mode mode;
    struct sample *s;
    struct ra_domain *domain, *domain_crl;
    uv_loop_t *loop;
    struct rp_job_port port;
    struct rp_workers *w;
    struct slot *slots;
    unsigned nslots, next, inflight;
    double wall_end;
    unsigned long done;
    int failed;
};

static double now(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_verify: %s failed: %d (%s)\n", what, rc, rc < 0 ? rp_err_msg(rc) : "");
    exit(1);
}

/* ---- inputs ------------------------------------------------------------------------ */

static struct der pem_cert(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path, -1);
    static uint8_t pem[64 * 1024];
    size_t n = fread(pem, 1, sizeof pem, f);
    fclose(f);
    struct der d = {malloc(n), 0};
    int len = d.p ? wc_CertPemToDer(pem, (int)n, d.p, (int)n, CERT_TYPE) : -1;
    if (len <= 0)
        die(path, len);
    d.len = (size_t)len;
    return d;
}

/* SubjectPublicKeyInfo TLV → its content (what an IMPLICIT [6] carries). */
static struct rp_view tlv_content(struct rp_view tlv)
{
    size_t h = tlv.p[1] < 0x80 ? 2 : 2 + (tlv.p[1] & 0x7fu);
    return rp_view_make(tlv.p + h, tlv.len - h);
}

static void sign(struct sample *s, struct rp_view data, struct rp_view *sig)
{
    uint8_t *b = rp_arena_alloc(&s->arena, RP_SIG_MAX);
    size_t n = 0;
    if (!b)
        die("arena", RP_E_ARENA);
    int rc = rp_privkey_sign(s->priv, s->alg, data.p, data.len, b, RP_SIG_MAX, &n);
    if (rc != RP_OK)
        die("rp_privkey_sign", rc);
    *sig = rp_view_make(b, n);
}

/* ir [0] { CertReqMsg { certReq { 0, { [5] subject, [6] publicKey } }, [1] POP } } for the
 * device's own key; the POP signs certReq (RFC 4211 §4.1, no poposkInput). */
static struct rp_view ir_body(struct sample *s)
{
    struct rp_arena *a = &s->arena;
    struct rp_derw w;
    rp_derw_init(&w, a, s->leaf.spki.len + s->leaf.subject.len + 64);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, 0);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_CTX_CONS(5));
    rp_derw_raw(&w, s->leaf.subject);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(6));
    rp_derw_raw(&w, tlv_content(s->leaf.spki));
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    struct rp_view cert_req, pop_sig, body;
    if (rp_derw_finish(&w, &cert_req) != RP_OK)
        die("certReq", w.err);
    sign(s, cert_req, &pop_sig);
    rp_derw_init(&w, a, cert_req.len + pop_sig.len + 128);
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_CMP_IR));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_raw(&w, cert_req);
    rp_derw_begin(&w, RP_DER_CTX_CONS(1));
    rp_derw_raw(&w, rp_sig_alg_der(s->alg));
    rp_derw_bits(&w, pop_sig, 0);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    if (rp_derw_finish(&w, &body) != RP_OK)
        die("ir body", w.err);
    return body;
}

static struct rp_view header(struct sample *s)
{
    static const uint8_t null_dn[] = {0x30, 0x00};
    uint8_t fresh[2 * NONCE_LEN];
    if (getrandom(fresh, sizeof fresh, 0) != (ssize_t)sizeof fresh)
        die("getrandom", -1);
    struct rp_derw w;
    rp_derw_init(&w, &s->arena, s->leaf.subject.len + s->leaf.ski.len + 128);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, RP_CMP_PVNO_CMP2000);
    rp_derw_begin(&w, RP_DER_CTX_CONS(4));
    rp_derw_raw(&w, s->leaf.subject);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(4));
    rp_derw_raw(&w, rp_view_make(null_dn, sizeof null_dn));
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(0));
    rp_derw_gentime(&w, (int64_t)time(NULL));
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(1));
    rp_derw_raw(&w, rp_sig_alg_der(s->alg));
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(2));
    rp_derw_octets(&w, s->leaf.ski);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(4));
    rp_derw_octets(&w, rp_view_make(fresh, NONCE_LEN));
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(5));
    rp_derw_octets(&w, rp_view_make(fresh + NONCE_LEN, NONCE_LEN));
    rp_derw_end(&w);
    rp_derw_end(&w);
    struct rp_view out;
    if (rp_derw_finish(&w, &out) != RP_OK)
        die("header", w.err);
    return out;
}

static void raw_key(struct sample *s)
{
    word32 idx = 0;
    int rc;
    s->type = rp_privkey_type(s->priv);
    const uint8_t *spki = s->leaf.spki.p;
    word32 len = (word32)s->leaf.spki.len;
    switch (s->type) {
    case RP_KEY_EC:
        rc = wc_ecc_init(&s->ecc);
        if (rc == 0)
            rc = wc_EccPublicKeyDecode(spki, &idx, &s->ecc, len);
        break;
    case RP_KEY_RSA:
        rc = wc_InitRsaKey(&s->rsa, NULL);
        if (rc == 0)
            rc = wc_RsaPublicKeyDecode(spki, &idx, &s->rsa, len);
        break;
    default:
        rc = wc_ed25519_init(&s->ed);
        if (rc == 0) /* the key is the SPKI's last 32 bytes (BIT STRING content) */
            rc = wc_ed25519_import_public(spki + len - ED25519_PUB_KEY_SIZE, ED25519_PUB_KEY_SIZE,
                                          &s->ed);
        break;
    }
    if (rc != 0)
        die("raw key import", rc);
}

static void sample_init(struct sample *s, const char *pki)
{
    char path[FILE_MAX_LEN];
    snprintf(path, sizeof path, "%s/vendor/%s.key", pki, s->dev);
    int rc = rp_privkey_load_pem(path, &s->priv);
    if (rc != RP_OK)
        die(path, rc);
    s->alg = rp_privkey_default_alg(s->priv);
    snprintf(path, sizeof path, "%s/vendor/%s.pem", pki, s->dev);
    s->cert = pem_cert(path);
    snprintf(path, sizeof path, "%s/vendor/ica.pem", pki);
    s->ica = pem_cert(path);
    if ((rc = rp_cert_parse(s->cert.p, s->cert.len, &s->leaf)) != RP_OK)
        die("device certificate", rc);
    if (rp_arena_new(&s->arena, MSGS * MSG_ARENA) != RP_OK)
        die("arena", RP_E_NOMEM);
    struct rp_view body = ir_body(s);
    const struct rp_view extra[2] = {rp_view_make(s->cert.p, s->cert.len),
                                     rp_view_make(s->ica.p, s->ica.len)};
    for (unsigned i = 0; i < MSGS; i++) {
        struct rp_view hdr = header(s), pp;
        if ((rc = rp_cmp_enc_protected_part(&s->arena, hdr, body, &pp)) != RP_OK)
            die("protected part", rc);
        sign(s, pp, &s->sig[i]);
        rc = rp_cmp_enc_message(&s->arena, hdr, body, s->sig[i], extra, 2, &s->msg[i]);
        if (rc == RP_OK)
            rc = rp_cmp_decode(s->msg[i].p, s->msg[i].len, &s->arena, &s->dec[i], NULL);
        if (rc != RP_OK)
            die("message", rc);
        s->pp[i] = pp;
    }
    raw_key(s);
}

static void sample_free(struct sample *s)
{
    if (s->type == RP_KEY_EC)
        wc_ecc_free(&s->ecc);
    else if (s->type == RP_KEY_RSA)
        wc_FreeRsaKey(&s->rsa);
    else
        wc_ed25519_free(&s->ed);
    rp_privkey_free(s->priv);
    rp_arena_free(&s->arena);
    free(s->cert.p);
    free(s->ica.p);
}

/* ---- raw wolfCrypt ----------------------------------------------------------------- */

static int raw_verify(struct sample *s, unsigned i)
{
    const struct rp_view pp = s->pp[i], sig = s->sig[i];
    byte hash[WC_SHA256_DIGEST_SIZE];
    int res = 0, rc;
    if (s->type == RP_KEY_ED25519) {
        rc = wc_ed25519_verify_msg(sig.p, (word32)sig.len, pp.p, (word32)pp.len, &res, &s->ed);
        return rc == 0 && res == 1 ? 0 : -1;
    }
    if ((rc = wc_Sha256Hash(pp.p, (word32)pp.len, hash)) != 0)
        return rc;
    if (s->type == RP_KEY_EC) {
        rc = wc_ecc_verify_hash(sig.p, (word32)sig.len, hash, sizeof hash, &res, &s->ecc);
        return rc == 0 && res == 1 ? 0 : -1;
    }
    byte want[MAX_ENCODED_SIG_SZ], got[RP_SIG_MAX], copy[RP_SIG_MAX];
    int wn = wc_EncodeSignature(want, hash, sizeof hash, SHA256h);
    memcpy(copy, sig.p, sig.len);
    int gn = wc_RsaSSL_Verify(copy, (word32)sig.len, got, sizeof got, &s->rsa);
    return wn > 0 && gn == wn && memcmp(got, want, (size_t)wn) == 0 ? 0 : -1;
}

static double measure_raw(struct sample *s, double seconds)
{
    double wall_end = now(CLOCK_MONOTONIC) + seconds, cpu0 = now(CLOCK_THREAD_CPUTIME_ID);
    unsigned long n = 0;
    do {
        for (unsigned k = 0; k < 8; k++, n++)
            if (raw_verify(s, (unsigned)(n % MSGS)) != 0)
                die("raw verify", -1);
    } while (now(CLOCK_MONOTONIC) < wall_end);
    return (double)n / (now(CLOCK_THREAD_CPUTIME_ID) - cpu0);
}

/* ---- the worker pool --------------------------------------------------------------- */

/* The RA's protection check of verify.c (verify_sig) on a decoded message. */
static int ra_sig(struct slot *sl, const struct rp_cmp_msg *m)
{
    struct rp_view pp;
    enum rp_sig_alg alg;
    struct rp_pubkey *pk;
    int rc = rp_cmp_protected_part(m, &sl->ex.arena, &pp);
    if (rc == RP_OK)
        rc = rp_sig_alg_parse(m->header.protection_alg.raw, &alg);
    if (rc != RP_OK)
        return rc;
    if ((rc = rp_pubkey_from_spki(sl->run->s->leaf.spki, &pk)) != RP_OK)
        return rc;
    rc = rp_sig_verify(alg, pk, pp.p, pp.len, m->protection.bytes.p, m->protection.bytes.len);
    rp_pubkey_free(pk);
    return rc;
}

static void on_run(struct rp_job *j)
{
    struct slot *sl = container_of(j, struct slot, job);
    struct run *r = sl->run;
    struct sample *s = r->s;
    const struct rp_cmp_msg *m = &s->dec[sl->i];
    rp_arena_reset(&sl->ex.arena);
    switch (r->mode) {
    case MODE_NOOP:
        j->result = RP_OK;
        break;
    case MODE_SIG: {
        struct rp_view pp;
        j->result = rp_cmp_protected_part(m, &sl->ex.arena, &pp);
        if (j->result == RP_OK)
            j->result = rp_sig_verify(s->alg, sl->pk, pp.p, pp.len, m->protection.bytes.p,
                                      m->protection.bytes.len);
        break;
    }
    case MODE_RA_SIG:
        j->result = ra_sig(sl, m);
        break;
    default: {
        struct ra_exchange *rx = &sl->rx;
        memset(rx, 0, sizeof *rx);
        rx->ex = &sl->ex;
        rx->domain = r->mode == MODE_FULL_NOCACHE_CRL ? r->domain_crl : r->domain;
        rx->dcfg = rx->domain->cfg;
        rx->now = (int64_t)time(NULL);
        j->result =
            rp_cmp_decode(s->msg[sl->i].p, s->msg[sl->i].len, &sl->ex.arena, &rx->msg, NULL);
        if (j->result == RP_OK) {
            rx->step = RA_VERIFY;
            ra_verify_request(rx);
            j->result = rx->verdict;
        }
        break;
    }
    }
}

static void submit(struct run *r, struct slot *sl)
{
    sl->i = r->next++ % MSGS;
    int rc = rp_workers_submit(r->w, &sl->job, &r->port);
    if (rc != RP_OK)
        die("rp_workers_submit", rc);
    r->inflight++;
}

static void on_done(struct rp_job *j)
{
    struct slot *sl = container_of(j, struct slot, job);
    struct run *r = sl->run;
    r->inflight--;
    r->done++;
    if (j->result != RP_OK && !r->failed) {
        r->failed = j->result;
        fprintf(stderr, "bench_verify: %s %s: %s (%s)\n", r->s->name,
                r->mode < MODE_COUNT ? mode_names[r->mode] : "no-op", rp_err_msg(j->result),
                sl->rx.why ? sl->rx.why : "");
    }
    if (!r->failed && now(CLOCK_MONOTONIC) < r->wall_end)
        submit(r, sl);
    else if (r->inflight == 0)
        uv_stop(r->loop);
}

/* One pool measurement. The submitting loop runs on this (the main) thread, the jobs on the
 * workers: worker CPU = process CPU - this thread's. */
struct pool_rate {
    double per_worker_cpu;  /* ops per CPU-second of the workers */
    double per_process_cpu; /* ops per CPU-second of the whole process, loop included */
    double wall;            /* ops per wall second, all workers together */
    double loop_us;         /* CPU of the loop thread per job (submit, wake-up, done) */
};

static struct pool_rate measure_pool(struct run *r, double seconds)
{
    r->done = 0;
    r->next = 0;
    double t0 = now(CLOCK_MONOTONIC), cpu0 = now(CLOCK_PROCESS_CPUTIME_ID),
           loop0 = now(CLOCK_THREAD_CPUTIME_ID);
    r->wall_end = t0 + seconds;
    for (unsigned k = 0; k < r->nslots; k++)
        submit(r, &r->slots[k]);
    uv_run(r->loop, UV_RUN_DEFAULT);
    double cpu = now(CLOCK_PROCESS_CPUTIME_ID) - cpu0, loop = now(CLOCK_THREAD_CPUTIME_ID) - loop0;
    if (r->failed)
        exit(1);
    double n = (double)r->done;
    return (struct pool_rate){n / (cpu - loop), n / cpu, n / (now(CLOCK_MONOTONIC) - t0),
                              1e6 * loop / n};
}

/* ---- main -------------------------------------------------------------------------- */

static void ensure_pki(char *dir, size_t cap, const char *given)
{
    snprintf(dir, cap, "%s", given ? given : RP_BINARY_DIR "/test-pki");
    char done[PATH_MAX_LEN + 8], cmd[2 * PATH_MAX_LEN];
    snprintf(done, sizeof done, "%s/.done", dir);
    if (access(done, R_OK) == 0)
        return;
    snprintf(cmd, sizeof cmd, "bash '%s/scripts/test-pki.sh' '%s' >/dev/null", RP_SOURCE_DIR, dir);
    if (system(cmd) != 0)
        die("scripts/test-pki.sh", -1);
}

/* A CRL of the vendor ICA with `entries` random serials (none of them the devices'),
 * valid for a week, signed with the ICA key: what a vendor publishes. */
static struct ra_der make_crl(const char *pki, unsigned entries)
{
    char path[FILE_MAX_LEN];
    snprintf(path, sizeof path, "%s/vendor/ica.pem", pki);
    struct der ica = pem_cert(path);
    struct rp_cert c;
    struct rp_privkey *k;
    snprintf(path, sizeof path, "%s/vendor/ica.key", pki);
    if (rp_cert_parse(ica.p, ica.len, &c) != RP_OK || rp_privkey_load_pem(path, &k) != RP_OK)
        die("vendor ICA", -1);
    enum rp_sig_alg alg = rp_privkey_default_alg(k);
    struct rp_arena a;
    size_t cap = (size_t)entries * CRL_ENTRY_MAX + 4096;
    if (rp_arena_new(&a, 2 * cap + RP_SIG_MAX + 4096) != RP_OK)
        die("arena", RP_E_NOMEM);
    struct rp_derw w;
    int64_t t = (int64_t)time(NULL);
    rp_derw_init(&w, &a, cap);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, 1);
    rp_derw_raw(&w, rp_sig_alg_der(alg));
    rp_derw_raw(&w, c.subject);
    rp_derw_gentime(&w, t - 60);
    rp_derw_gentime(&w, t + CRL_VALID_S);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    for (unsigned i = 0; i < entries; i++) {
        uint8_t serial[CRL_SERIAL_LEN];
        if (getrandom(serial, sizeof serial, 0) != (ssize_t)sizeof serial)
            die("getrandom", -1);
        serial[0] = (uint8_t)((serial[0] & 0x7f) | 0x40); /* positive, minimal */
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_prim(&w, RP_DER_INTEGER, rp_view_make(serial, sizeof serial));
        rp_derw_gentime(&w, t - 3600);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    rp_derw_end(&w);
    struct rp_view tbs, crl;
    if (rp_derw_finish(&w, &tbs) != RP_OK)
        die("CRL TBS", w.err);
    uint8_t sig[RP_SIG_MAX];
    size_t siglen = 0;
    if (rp_privkey_sign(k, alg, tbs.p, tbs.len, sig, sizeof sig, &siglen) != RP_OK)
        die("CRL signature", -1);
    rp_derw_init(&w, &a, tbs.len + siglen + 64);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_raw(&w, tbs);
    rp_derw_raw(&w, rp_sig_alg_der(alg));
    rp_derw_bits(&w, rp_view_make(sig, siglen), 0);
    rp_derw_end(&w);
    if (rp_derw_finish(&w, &crl) != RP_OK)
        die("CRL", w.err);
    struct ra_der out = {malloc(crl.len), crl.len};
    if (!out.p)
        die("malloc", RP_E_NOMEM);
    memcpy(out.p, crl.p, crl.len);
    rp_arena_free(&a);
    rp_privkey_free(k);
    free(ica.p);
    return out;
}

static void domain_init(struct ra_domain *d, struct rp_cfg_domain *cfg, const char *pki,
                        struct ra_der *crl)
{
    char path[FILE_MAX_LEN];
    snprintf(path, sizeof path, "%s/vendor/root.pem", pki);
    static struct ra_der root;
    if (!root.p) {
        struct der r = pem_cert(path);
        root.p = r.p;
        root.len = r.len;
    }
    cfg->name = "manufacturer";
    cfg->rsa_min_bits = 2048;
    d->cfg = cfg;
    d->allow_mask = 1u << RP_CMP_IR;
    d->alg_mask = (1u << 6) - 1; /* every algorithm policy of verify.c */
    d->anchors.v = &root;
    d->anchors.n = 1;
    d->crls.v = crl;
    d->crls.n = crl ? 1 : 0;
    static char *names[] = {"bench.crl"};
    int rc = ra_trust_build(&d->trust, cfg->name, &d->anchors, &d->intermediates, &d->crls, names,
                            false, stderr);
    if (rc != RP_OK)
        die("ra_trust_build", rc);
    /* the default template policy: the ir asks for the device's own subject */
    cfg->max_requests = RP_DEF_MAX_REQUESTS;
    rc = ra_policy_load(cfg, d, stderr);
    if (rc != RP_OK)
        die("ra_policy_load", rc);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_verify [-t SECONDS_PER_CELL] [-w WORKERS] [-p TEST_PKI_DIR] "
               "[-c CRL_ENTRIES]\n");
}

int main(int argc, char **argv)
{
    double seconds = CELL_SECONDS;
    const char *pki_arg = NULL;
    unsigned workers = 0, crl_entries = CRL_ENTRIES_DEFAULT;
    int c;
    while ((c = getopt(argc, argv, "t:w:p:c:h")) != -1) {
        if (c == 'c')
            crl_entries = (unsigned)strtoul(optarg, NULL, 10);
        else if (c == 't')
            seconds = atof(optarg);
        else if (c == 'w')
            workers = (unsigned)strtoul(optarg, NULL, 10);
        else if (c == 'p')
            pki_arg = optarg;
        else {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (seconds <= 0 || seconds > 60 || workers > RP_WORKERS_MAX) {
        usage(stderr);
        return 2;
    }
    char pki[PATH_MAX_LEN];
    ensure_pki(pki, sizeof pki, pki_arg);
    wolfSSL_Init();

    struct sample samples[] = {{.name = "ECDSA P-256", .dev = "dev1"},
                               {.name = "RSA-2048", .dev = "dev-rsa"},
                               {.name = "Ed25519", .dev = "dev-ed25519"}};
    const size_t ns = sizeof samples / sizeof samples[0];
    for (size_t i = 0; i < ns; i++)
        sample_init(&samples[i], pki);
    struct rp_cfg_domain dcfg = {0}, dcfg_crl = {0};
    struct ra_domain domain = {0}, domain_crl = {0};
    struct ra_der crl = make_crl(pki, crl_entries);
    domain_init(&domain, &dcfg, pki, NULL);
    domain_init(&domain_crl, &dcfg_crl, pki, &crl);
    struct ra_chain_cache *cache = ra_trust_cache(domain.trust);
    printf("CRL of the vendor ICA: %u revoked serials, %zu bytes DER\n", crl_entries, crl.len);

    struct rp_workers *w;
    struct rp_workers_opts wo = {.count = workers, .queue_cap = 0, .pin = true};
    int rc = rp_workers_start(&w, &wo);
    if (rc != RP_OK)
        die("rp_workers_start", rc);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct run r = {.domain = &domain, .domain_crl = &domain_crl, .loop = &loop, .w = w};
    if ((rc = rp_job_port_init(&r.port, &loop)) != RP_OK)
        die("rp_job_port_init", rc);
    r.nslots = rp_workers_count(w) * SLOTS_PER_CPU;
    r.slots = calloc(r.nslots, sizeof *r.slots);
    if (!r.slots)
        die("calloc", RP_E_NOMEM);
    for (unsigned k = 0; k < r.nslots; k++) {
        struct slot *sl = &r.slots[k];
        sl->run = &r;
        sl->job.run = on_run;
        sl->job.done = on_done;
        if (rp_arena_new(&sl->ex.arena, JOB_ARENA) != RP_OK)
            die("arena", RP_E_NOMEM);
    }

    printf("bench_verify: wolfSSL %s; %u workers (pinned), %u jobs in flight, %.1f s per cell\n",
           RP_WOLFSSL_INFO, rp_workers_count(w), r.nslots, seconds);
    r.s = &samples[0];
    r.mode = MODE_NOOP;
    struct pool_rate noop = measure_pool(&r, seconds);
    printf("pool overhead, no-op jobs: %.2f us of worker CPU + %.2f us of loop CPU per job\n",
           1e6 / noop.per_worker_cpu, noop.loop_us);
    printf("ops per CPU-second of the workers; ratio = pool / raw; loop = the submitting loop's\n"
           "CPU per job; +loop = pool sig per CPU-second of the whole process / raw\n\n");
    printf("%-11s %7s | %8s %5s | %8s %5s | %8s %5s | %8s %5s | %10s %5s | %7s %5s | %s\n",
           "algorithm", "raw", mode_names[MODE_SIG], "ratio", mode_names[MODE_RA_SIG], "ratio",
           mode_names[MODE_FULL_CACHE], "ratio", mode_names[MODE_FULL_NOCACHE], "ratio",
           mode_names[MODE_FULL_NOCACHE_CRL], "/full-c", "loop us", "+loop", "full+c/s wall");
    for (size_t i = 0; i < ns; i++) {
        struct sample *s = &samples[i];
        r.s = s;
        for (unsigned k = 0; k < r.nslots; k++) {
            rp_pubkey_free(r.slots[k].pk);
            if ((rc = rp_pubkey_from_spki(s->leaf.spki, &r.slots[k].pk)) != RP_OK)
                die("rp_pubkey_from_spki", rc);
        }
        double raw = measure_raw(s, seconds), loop_us = 0;
        struct pool_rate p[MODE_COUNT];
        for (int m = 0; m < MODE_COUNT; m++) {
            r.mode = (enum mode)m;
            bool nocache = m == MODE_FULL_NOCACHE || m == MODE_FULL_NOCACHE_CRL;
            ra_trust_set_cache(domain.trust, !nocache);
            ra_trust_set_cache(domain_crl.trust, !nocache);
            uint64_t hits0 = cache->hits;
            p[m] = measure_pool(&r, seconds);
            loop_us += p[m].loop_us / MODE_COUNT;
            if (nocache && cache->hits != hits0)
                die("the no-cache run hit the chain cache", -1);
        }
        printf("%-11s %7.0f | %8.0f %5.2f | %8.0f %5.2f | %8.0f %5.2f | %8.0f %5.2f | %10.0f %5.2f "
               "| %7.1f %5.2f | %.0f\n",
               s->name, raw, p[MODE_SIG].per_worker_cpu, p[MODE_SIG].per_worker_cpu / raw,
               p[MODE_RA_SIG].per_worker_cpu, p[MODE_RA_SIG].per_worker_cpu / raw,
               p[MODE_FULL_CACHE].per_worker_cpu, p[MODE_FULL_CACHE].per_worker_cpu / raw,
               p[MODE_FULL_NOCACHE].per_worker_cpu, p[MODE_FULL_NOCACHE].per_worker_cpu / raw,
               p[MODE_FULL_NOCACHE_CRL].per_worker_cpu,
               p[MODE_FULL_NOCACHE_CRL].per_worker_cpu / p[MODE_FULL_NOCACHE].per_worker_cpu,
               loop_us, p[MODE_SIG].per_process_cpu / raw, p[MODE_FULL_CACHE].wall);
        fflush(stdout);
    }
    printf("\nchain cache: %llu hits, %llu misses\n", (unsigned long long)cache->hits,
           (unsigned long long)cache->misses);

    rp_job_port_close(&r.port, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    rp_workers_stop(w);
    uv_loop_close(&loop);
    for (unsigned k = 0; k < r.nslots; k++) {
        rp_pubkey_free(r.slots[k].pk);
        rp_arena_free(&r.slots[k].ex.arena);
    }
    free(r.slots);
    for (size_t i = 0; i < ns; i++)
        sample_free(&samples[i]);
    ra_trust_free(domain.trust);
    ra_trust_free(domain_crl.trust);
    ra_policy_free(domain.policy);
    ra_policy_free(domain_crl.policy);
    free(crl.p);
    free(domain.anchors.v[0].p);
    wolfSSL_Cleanup();
    return 0;
}
