/* bench/mkfleet: mint a fleet of vendor device certificates in one go (bench/make-fleet.sh
 * calls it). Each device gets a fresh P-256 key and a certificate "C=DE, O=Vendor,
 * CN=Device N, serialNumber=<prefix>NNNNNNN" signed by the vendor CA given, valid ten
 * years. Writes the fleet file (bench.h, BENCH_FLEET_MAGIC) and the allowlist of serials.
 *
 *   bench_mkfleet --ca-cert ica.pem --ca-key ica.key --count N --out fleet.bin
 *                 [--allowlist serials.txt] [--prefix BN]
 */
#include "bench.h"

#include "raproxy/cert.h"
#include "raproxy/err.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLEET_MAX      1000000
#define DEVICE_DAYS    3650
#define SERIAL_LEN     16
#define NAME_MAX_LEN   64
#define DEVICE_ARENA   16384
#define DEFAULT_PREFIX "BN"

struct mkfleet_opts {
    const char *ca_cert, *ca_key, *out, *allowlist, *prefix;
    long count;
};

static void usage(void)
{
    fprintf(stderr, "usage: bench_mkfleet --ca-cert PEM --ca-key PEM --count N --out FILE "
                    "[--allowlist FILE] [--prefix BN]\n");
    exit(2);
}

static void parse(int argc, char **argv, struct mkfleet_opts *o)
{
    static const struct option lo[] = {
        {"ca-cert", 1, 0, 'c'},   {"ca-key", 1, 0, 'k'}, {"count", 1, 0, 'n'}, {"out", 1, 0, 'o'},
        {"allowlist", 1, 0, 'a'}, {"prefix", 1, 0, 'p'}, {0, 0, 0, 0}};
    int c;
    *o = (struct mkfleet_opts){.prefix = DEFAULT_PREFIX, .count = 0};
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->ca_cert = optarg;
            break;
        case 'k':
            o->ca_key = optarg;
            break;
        case 'n':
            o->count = strtol(optarg, NULL, 10);
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'a':
            o->allowlist = optarg;
            break;
        case 'p':
            o->prefix = optarg;
            break;
        default:
            usage();
        }
    }
    if (!o->ca_cert || !o->ca_key || !o->out || o->count < 1 || o->count > FLEET_MAX)
        usage();
}

static void put_be(FILE *f, uint32_t v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        fputc((int)(v >> (8 * i)) & 0xff, f);
}

/* One device: key, subject, certificate; appended to the fleet file and the allowlist. */
static int mint(WC_RNG *rng, const struct bench_issuer *ca, const struct mkfleet_opts *o, long i,
                FILE *out, FILE *allow)
{
    static uint8_t mem[DEVICE_ARENA];
    struct rp_arena a;
    struct bench_key k;
    char cn[NAME_MAX_LEN], sn[NAME_MAX_LEN];
    uint8_t serial[SERIAL_LEN], priv[BENCH_PRIV_LEN];
    word32 priv_len = sizeof priv;
    struct rp_view subject, cert;
    rp_arena_init(&a, mem, sizeof mem);
    snprintf(cn, sizeof cn, "Device %ld", i + 1);
    snprintf(sn, sizeof sn, "%s%07ld", o->prefix, i + 1);
    const struct bench_rdn rdn[] = {
        {RP_OID_AT_C, sizeof RP_OID_AT_C - 1, "DE"},
        {RP_OID_AT_O, sizeof RP_OID_AT_O - 1, "Vendor"},
        {RP_OID_AT_CN, sizeof RP_OID_AT_CN - 1, cn},
        {RP_OID_AT_SERIAL, sizeof RP_OID_AT_SERIAL - 1, sn},
    };
    int rc = bench_key_gen(&k, rng);
    if (rc == RP_OK)
        rc = bench_random(rng, serial, sizeof serial);
    serial[0] &= 0x7f;
    serial[0] |= 0x01; /* positive and of full length */
    if (rc == RP_OK)
        rc = bench_enc_name(&a, rdn, sizeof rdn / sizeof rdn[0], &subject);
    if (rc == RP_OK)
        rc = bench_enc_cert(&a, rng, ca, rp_view_make(serial, sizeof serial), subject,
                            rp_view_make(k.spki, k.spki_len), DEVICE_DAYS, &cert);
    if (rc == RP_OK && wc_ecc_export_private_only(&k.key, priv, &priv_len) != 0)
        rc = RP_E_CRYPTO;
    if (rc == RP_OK && priv_len != BENCH_PRIV_LEN)
        rc = RP_E_CRYPTO;
    if (rc == RP_OK) {
        put_be(out, (uint32_t)cert.len, 2);
        fwrite(cert.p, 1, cert.len, out);
        fwrite(priv, 1, sizeof priv, out);
        if (allow)
            fprintf(allow, "%s\n", sn);
    }
    bench_key_free(&k);
    return rc;
}

int main(int argc, char **argv)
{
    struct mkfleet_opts o;
    struct bench_key ca_key;
    struct rp_cert ca_cert;
    uint8_t *der[BENCH_PEM_MAX_CERTS];
    size_t der_len[BENCH_PEM_MAX_CERTS];
    WC_RNG rng;
    int status = 1;
    parse(argc, argv, &o);
    if (wc_InitRng(&rng) != 0 || bench_key_load(&ca_key, o.ca_key) != 0)
        return 1;
    int n = bench_pem_certs(o.ca_cert, der, der_len, BENCH_PEM_MAX_CERTS);
    if (n < 1 || rp_cert_parse(der[0], der_len[0], &ca_cert) != RP_OK) {
        fprintf(stderr, "%s: no certificate\n", o.ca_cert);
        return 1;
    }
    struct bench_issuer ca = {&ca_key, ca_cert.raw, ca_cert.subject, ca_cert.ski};
    FILE *out = fopen(o.out, "wb");
    FILE *allow = o.allowlist ? fopen(o.allowlist, "w") : NULL;
    if (!out || (o.allowlist && !allow)) {
        perror("bench_mkfleet: output");
        goto out;
    }
    fwrite(BENCH_FLEET_MAGIC, 1, sizeof BENCH_FLEET_MAGIC - 1, out);
    put_be(out, (uint32_t)o.count, 4);
    for (long i = 0; i < o.count; i++) {
        if (mint(&rng, &ca, &o, i, out, allow) != RP_OK) {
            fprintf(stderr, "bench_mkfleet: device %ld failed\n", i + 1);
            goto out;
        }
    }
    status = 0;
    printf("bench_mkfleet: %ld devices in %s\n", o.count, o.out);
out:
    if (out && fclose(out) != 0)
        status = 1;
    if (allow && fclose(allow) != 0)
        status = 1;
    for (int i = 0; i < n; i++)
        free(der[i]);
    bench_key_free(&ca_key);
    wc_FreeRng(&rng);
    return status;
}
