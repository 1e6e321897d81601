/* bench/cmp_decode: how many PKIMessages per second one core decodes with rp_cmp_decode,
 * against OpenSSL's d2i_OSSL_CMP_MSG on the same bytes, and the ratio.
 *
 *   bench_cmp_decode [FILE.der] [ITERATIONS]
 *
 * FILE defaults to test/corpus/ir.der (an ir of ~1.5 KB with a 2-certificate chain in
 * extraCerts). Each side decodes the message ITERATIONS times; CPU time of this process. */
#include "raproxy/cmp.h"
#include "raproxy/err.h"

#include <openssl/cmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define DEFAULT_ITERATIONS 200000L
#define ARENA_SIZE         (64 * 1024)
#define MAX_MSG            (1024 * 1024)

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static uint8_t msg[MAX_MSG], mem[ARENA_SIZE];
    const char *path = argc > 1 ? argv[1] : RP_SOURCE_DIR "/test/corpus/ir.der";
    long iters = argc > 2 ? atol(argv[2]) : DEFAULT_ITERATIONS;
    FILE *f = fopen(path, "rb");
    if (!f || iters <= 0) {
        fprintf(stderr, "usage: %s [FILE.der] [ITERATIONS]  (cannot open %s)\n", argv[0], path);
        return 2;
    }
    size_t n = fread(msg, 1, sizeof msg, f);
    fclose(f);

    struct rp_arena a;
    struct rp_cmp_msg m;
    struct rp_cmp_err e;
    rp_arena_init(&a, mem, sizeof mem);
    int rc = rp_cmp_decode(msg, n, &a, &m, &e);
    if (rc != RP_OK) {
        fprintf(stderr, "%s: %s at offset %zu (expected %s)\n", path, rp_err_name(rc), e.offset,
                e.expected ? e.expected : "-");
        return 1;
    }
    printf("message: %s, %zu bytes, body %s, %zu extraCerts, arena %zu bytes\n", path, n,
           rp_cmp_body_name(m.body.type), m.n_extra_certs, a.used);

    double t0 = cpu_seconds();
    for (long i = 0; i < iters; i++) {
        rp_arena_reset(&a);
        if (rp_cmp_decode(msg, n, &a, &m, &e) != RP_OK)
            return 1;
    }
    double ours = (double)iters / (cpu_seconds() - t0);

    t0 = cpu_seconds();
    for (long i = 0; i < iters; i++) {
        const unsigned char *p = msg;
        OSSL_CMP_MSG *o = d2i_OSSL_CMP_MSG(NULL, &p, (long)n);
        if (!o)
            return 1;
        OSSL_CMP_MSG_free(o);
    }
    double theirs = (double)iters / (cpu_seconds() - t0);

    printf("rp_cmp_decode      %10.0f msgs/s/core  (%.2f us/msg)\n", ours, 1e6 / ours);
    printf("d2i_OSSL_CMP_MSG   %10.0f msgs/s/core  (%.2f us/msg, includes free)\n", theirs,
           1e6 / theirs);
    printf("ratio              %10.1fx\n", ours / theirs);
    return 0;
}
