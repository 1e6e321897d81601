/* Every real message we have (the .der files of test/corpus from the encoder work, and the openssl
 * samples of samples.h) decodes, names its body type in its file name, and survives
 * truncation at every length and 1,000 single-bit flips without a crash. */
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/err.h"

#include "samples.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <stdlib.h>

#define MAX_FILES      256
#define FLIPS_PER_FILE 1000
#define ARENA_SIZE     (256 * 1024)
#define NAME_BUF       512

struct corpus_file {
    char path[700];
    char name[256];
};

static struct corpus_file files[MAX_FILES];
static size_t n_files;
static uint8_t arena_mem[ARENA_SIZE];

static void scan(const char *dir)
{
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *e;
    if (!d)
        return;
    while ((e = readdir(d)) && n_files < MAX_FILES) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".der") != 0 || l >= sizeof files[0].name)
            continue;
        struct corpus_file *f = &files[n_files++];
        snprintf(f->path, sizeof f->path, "%s/%s", dir, e->d_name);
        snprintf(f->name, sizeof f->name, "%s", e->d_name);
    }
    closedir(d);
}

static void setup(void)
{
    char corpus[600];
    snprintf(corpus, sizeof corpus, "%s/test/corpus", rpt_src());
    n_files = 0;
    scan(corpus);
    size_t shared = n_files;
    scan(samples_dir());
    if (shared == 0)
        cr_log_warn("test/corpus has no .der files yet: using only the openssl samples");
    if (n_files == 0)
        cr_log_warn("no CMP messages found at all: nothing to check");
}

/* Decode, then touch what a consumer would: certificates, names, the protected part. */
static int decode_and_use(const uint8_t *p, size_t n)
{
    struct rp_arena a;
    struct rp_cmp_msg m;
    struct rp_cmp_err e;
    struct rp_cert c;
    struct rp_view pp;
    char name[NAME_BUF];
    rp_arena_init(&a, arena_mem, sizeof arena_mem);
    int rc = rp_cmp_decode(p, n, &a, &m, &e);
    if (rc < 0) {
        cr_assert_not_null(e.expected, "every failure says what was expected");
        cr_assert_leq(e.offset, n);
        return rc;
    }
    for (size_t i = 0; i < m.n_extra_certs; i++)
        if (rp_cert_parse(m.extra_certs[i].p, m.extra_certs[i].len, &c) == RP_OK)
            rp_name_to_string(c.subject, name, sizeof name);
    if (m.header.sender.name.p)
        rp_name_to_string(m.header.sender.name, name, sizeof name);
    if (m.body.type == RP_CMP_IP || m.body.type == RP_CMP_CP || m.body.type == RP_CMP_KUP)
        for (size_t i = 0; i < m.body.rep.n; i++)
            if (m.body.rep.resps[i].cert.p)
                rp_cert_parse(m.body.rep.resps[i].cert.p, m.body.rep.resps[i].cert.len, &c);
    cr_assert_eq(rp_cmp_protected_part(&m, &a, &pp), RP_OK);
    return rc;
}

TestSuite(cmp_corpus, .init = setup);

Test(cmp_corpus, every_message_decodes_with_the_type_its_name_says)
{
    for (size_t i = 0; i < n_files; i++) {
        size_t n;
        uint8_t *p = rpt_read_file(files[i].path, &n);
        cr_assert_not_null(p);
        struct rp_arena a;
        struct rp_cmp_msg m;
        struct rp_cmp_err e;
        rp_arena_init(&a, arena_mem, sizeof arena_mem);
        int rc = rp_cmp_decode(p, n, &a, &m, &e);
        cr_assert_eq(rc, RP_OK, "%s: %s at offset %zu, expected %s", files[i].path, rp_err_name(rc),
                     e.offset, e.expected ? e.expected : "-");
        /* "ir.der", "ir-rsa.der", "cp-waiting.der": the body name is the prefix */
        char prefix[256];
        snprintf(prefix, sizeof prefix, "%s", files[i].name);
        prefix[strcspn(prefix, "-.")] = 0;
        int want = rp_cmp_body_from_name(prefix);
        if (want < 0)
            cr_log_warn("%s: file name names no body type, type not checked", files[i].name);
        else
            cr_assert_eq((int)m.body.type, want, "%s decoded as %s", files[i].path,
                         rp_cmp_body_name(m.body.type));
        cr_assert_eq(decode_and_use(p, n), RP_OK);
        free(p);
    }
}

Test(cmp_corpus, every_truncation_fails_cleanly)
{
    for (size_t i = 0; i < n_files; i++) {
        size_t n;
        uint8_t *p = rpt_read_file(files[i].path, &n);
        cr_assert_not_null(p);
        for (size_t k = 0; k < n; k++) {
            /* a fresh allocation of exactly k bytes, so ASan sees any over-read */
            uint8_t *t = malloc(k ? k : 1);
            memcpy(t, p, k);
            cr_assert_lt(decode_and_use(t, k), 0, "%s truncated to %zu decoded", files[i].name, k);
            free(t);
        }
        free(p);
    }
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

Test(cmp_corpus, bit_flips_fail_cleanly_or_decode)
{
    for (size_t i = 0; i < n_files; i++) {
        size_t n, ok = 0;
        uint8_t *p = rpt_read_file(files[i].path, &n);
        cr_assert_not_null(p);
        uint64_t seed = 0x9E3779B97F4A7C15ull ^ n;
        for (const char *c = files[i].name; *c; c++)
            seed = seed * 131 + (uint8_t)*c;
        uint8_t *t = malloc(n);
        for (int k = 0; k < FLIPS_PER_FILE; k++) {
            memcpy(t, p, n);
            uint64_t r = xorshift(&seed);
            t[(r >> 3) % n] ^= (uint8_t)(1u << (r & 7));
            ok += decode_and_use(t, n) == RP_OK;
        }
        cr_log_info("%s: %zu of %d flips still decode", files[i].name, ok, FLIPS_PER_FILE);
        free(t);
        free(p);
    }
}
