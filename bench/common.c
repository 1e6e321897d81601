/* Keys, signatures, files and the fleet file for the load-test tools: see bench.h. */
#include "bench.h"

#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/sha512.h>

#include "raproxy/cert.h"
#include "raproxy/der.h"
#include "raproxy/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define P256_BYTES       32
#define PEM_CERT_BEGIN   "-----BEGIN CERTIFICATE-----"
#define PEM_CERT_END     "-----END CERTIFICATE-----"
#define DER_FROM_PEM_MAX 8192

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double bench_thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_random(WC_RNG *rng, uint8_t *p, size_t n)
{
    return wc_RNG_GenerateBlock(rng, p, (word32)n) == 0 ? 0 : RP_E_CRYPTO;
}

static int export_spki(struct bench_key *k)
{
    int n = wc_EccPublicKeyToDer(&k->key, k->spki, sizeof k->spki, 1);
    if (n <= 0)
        return RP_E_CRYPTO;
    k->spki_len = (size_t)n;
    return 0;
}

int bench_key_gen(struct bench_key *k, WC_RNG *rng)
{
    memset(k, 0, sizeof *k);
    if (wc_ecc_init(&k->key) != 0)
        return RP_E_CRYPTO;
    if (wc_ecc_make_key_ex(rng, P256_BYTES, &k->key, ECC_SECP256R1) != 0)
        return RP_E_CRYPTO;
    return export_spki(k);
}

int bench_key_load(struct bench_key *k, const char *path)
{
    size_t len = 0;
    int rc = RP_E_CRYPTO;
    uint8_t *pem = bench_read_file(path, &len);
    uint8_t *der = malloc(len + 1);
    memset(k, 0, sizeof *k);
    if (!pem || !der || wc_ecc_init(&k->key) != 0)
        goto out;
    int n = wc_KeyPemToDer(pem, (int)len, der, (int)len, NULL);
    if (n <= 0)
        goto out;
    word32 idx = 0;
    if (wc_GetPkcs8TraditionalOffset(der, &idx, (word32)n) < 0)
        idx = 0;
    if (wc_EccPrivateKeyDecode(der, &idx, &k->key, (word32)n) != 0)
        goto out;
    if (k->key.type == ECC_PRIVATEKEY_ONLY && wc_ecc_make_pub(&k->key, NULL) != 0)
        goto out;
    rc = export_spki(k);
out:
    if (rc)
        fprintf(stderr, "%s: not a P-256 private key\n", path);
    free(pem);
    free(der);
    return rc;
}

/* The public key point of an SPKI and its curve. */
static int spki_point(struct rp_view spki, struct rp_view *point, int *curve)
{
    struct rp_der d, s, a;
    struct rp_der_tlv t, alg, bits;
    struct rp_der_bits b;
    struct rp_view oid;
    rp_der_init(&d, spki.p, spki.len, NULL);
    if (rp_der_expect_enter(&d, RP_DER_SEQUENCE, &s, &t, "SPKI") ||
        rp_der_expect_enter(&s, RP_DER_SEQUENCE, &a, &alg, "alg") ||
        rp_der_expect(&a, RP_DER_OID, &t, "alg") || rp_der_expect(&a, RP_DER_OID, &t, "curve") ||
        rp_der_oid(&a, &t, &oid) || rp_der_expect(&s, RP_DER_BIT_STRING, &bits, "key") ||
        rp_der_bits(&s, &bits, &b))
        return RP_E_CMP_CERT;
    if (rp_oid_is(oid, RP_OID_PRIME256V1))
        *curve = ECC_SECP256R1;
    else if (rp_oid_is(oid, RP_OID_SECP384R1))
        *curve = ECC_SECP384R1;
    else
        return RP_E_BAD_ALG;
    *point = b.bytes;
    return 0;
}

int bench_key_import(struct bench_key *k, const uint8_t priv[BENCH_PRIV_LEN], struct rp_view spki)
{
    struct rp_view pt;
    int curve = 0;
    memset(k, 0, sizeof *k);
    if (spki.len > sizeof k->spki || spki_point(spki, &pt, &curve) || curve != ECC_SECP256R1)
        return RP_E_INVAL;
    if (wc_ecc_init(&k->key) != 0 ||
        wc_ecc_import_private_key_ex(priv, BENCH_PRIV_LEN, pt.p, (word32)pt.len, &k->key,
                                     ECC_SECP256R1) != 0)
        return RP_E_CRYPTO;
    memcpy(k->spki, spki.p, spki.len);
    k->spki_len = spki.len;
    return 0;
}

void bench_key_free(struct bench_key *k)
{
    wc_ecc_free(&k->key);
}

int bench_sign(struct bench_key *k, WC_RNG *rng, struct rp_view msg, uint8_t *sig, size_t *sig_len)
{
    uint8_t hash[WC_SHA256_DIGEST_SIZE];
    word32 len = BENCH_SIG_MAX;
    if (wc_Sha256Hash(msg.p, (word32)msg.len, hash) != 0 ||
        wc_ecc_sign_hash(hash, sizeof hash, sig, &len, rng, &k->key) != 0)
        return RP_E_CRYPTO;
    *sig_len = len;
    return 0;
}

int bench_verify(struct rp_view spki, struct rp_view alg_oid, struct rp_view msg,
                 struct rp_view sig)
{
    uint8_t hash[WC_SHA384_DIGEST_SIZE];
    word32 hash_len;
    struct rp_view pt;
    int curve = 0, ok = 0, rc;
    ecc_key key;
    if ((rc = spki_point(spki, &pt, &curve)) != 0)
        return rc;
    if (rp_oid_is(alg_oid, RP_OID_ECDSA_SHA256)) {
        hash_len = WC_SHA256_DIGEST_SIZE;
        rc = wc_Sha256Hash(msg.p, (word32)msg.len, hash);
    } else if (rp_oid_is(alg_oid, RP_OID_ECDSA_SHA384)) {
        hash_len = WC_SHA384_DIGEST_SIZE;
        rc = wc_Sha384Hash(msg.p, (word32)msg.len, hash);
    } else {
        return RP_E_BAD_ALG;
    }
    if (rc != 0 || wc_ecc_init(&key) != 0)
        return RP_E_CRYPTO;
    rc = wc_ecc_import_x963_ex(pt.p, (word32)pt.len, &key, curve);
    if (rc == 0)
        rc = wc_ecc_verify_hash(sig.p, (word32)sig.len, hash, hash_len, &ok, &key);
    wc_ecc_free(&key);
    if (rc != 0)
        return RP_E_CRYPTO;
    return ok == 1 ? 0 : -1;
}

uint8_t *bench_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long size;
    if (!f)
        goto fail;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto fail;
    buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size)
        goto fail;
    buf[size] = 0;
    fclose(f);
    *len = (size_t)size;
    return buf;
fail:
    fprintf(stderr, "%s: %s\n", path, strerror(errno ? errno : EIO));
    free(buf);
    if (f)
        fclose(f);
    return NULL;
}

int bench_pem_certs(const char *path, uint8_t **der, size_t *der_len, int max)
{
    size_t len = 0;
    int n = 0;
    char *pem = (char *)bench_read_file(path, &len);
    if (!pem)
        return -1;
    for (char *p = strstr(pem, PEM_CERT_BEGIN); p && n < max; p = strstr(p, PEM_CERT_BEGIN)) {
        char *e = strstr(p, PEM_CERT_END);
        if (!e)
            break;
        e += strlen(PEM_CERT_END);
        uint8_t *d = malloc(DER_FROM_PEM_MAX);
        int dl = d ? wc_CertPemToDer((const unsigned char *)p, (int)(e - p), d, DER_FROM_PEM_MAX,
                                     CERT_TYPE)
                   : -1;
        if (dl <= 0) {
            free(d);
            fprintf(stderr, "%s: unreadable certificate #%d\n", path, n + 1);
            n = -1;
            break;
        }
        der[n] = d;
        der_len[n++] = (size_t)dl;
        p = e;
    }
    free(pem);
    return n;
}

static uint32_t get_be(const uint8_t *p, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int bench_fleet_load(struct bench_fleet *f, const char *path)
{
    size_t len = 0, off = sizeof BENCH_FLEET_MAGIC - 1 + 4;
    memset(f, 0, sizeof *f);
    f->file = bench_read_file(path, &len);
    if (!f->file)
        return -1;
    if (len < off || memcmp(f->file, BENCH_FLEET_MAGIC, sizeof BENCH_FLEET_MAGIC - 1) != 0)
        goto bad;
    f->n = get_be(f->file + off - 4, 4);
    f->dev = calloc(f->n ? f->n : 1, sizeof *f->dev);
    if (!f->dev)
        goto bad;
    for (size_t i = 0; i < f->n; i++) {
        struct rp_cert c;
        if (off + 2 > len)
            goto bad;
        size_t cl = get_be(f->file + off, 2);
        off += 2;
        if (off + cl + BENCH_PRIV_LEN > len || rp_cert_parse(f->file + off, cl, &c) != RP_OK)
            goto bad;
        f->dev[i] = (struct bench_device){c.raw, c.subject, c.spki, f->file + off + cl};
        off += cl + BENCH_PRIV_LEN;
    }
    return 0;
bad:
    fprintf(stderr, "%s: not a fleet file (run bench/make-fleet.sh)\n", path);
    bench_fleet_free(f);
    return -1;
}

void bench_fleet_free(struct bench_fleet *f)
{
    free(f->file);
    free(f->dev);
    memset(f, 0, sizeof *f);
}
