/* An RA exchange without a loop, for the worker-side unit tests (test_verify.c,
 * test_protect.c): a configuration with the test PKI, its RA state and snapshot, and one
 * decoded request at a time, as the pipeline hands them to a worker. Real requests come from
 * `openssl cmp` (rpt_capture_device) and are altered with rpt_rebuild. Header-only. */
#ifndef RP_TEST_RX_FIXTURE_H
#define RP_TEST_RX_FIXTURE_H

#include "msgbuild.h"
#include "ra/ra.h"
#include "raproxy/cert.h"
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"
#include "raproxy/snapshot.h"
#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RFX_ARENA    (4u << 20)
#define RFX_PATH_LEN 600
#define RFX_CFG_LEN  4096

struct rfx {
    char *dir;
    const char *pki;
    struct rp_config *cfg;
    struct ra_state *st;
    struct rp_snapshot snap;
    struct rp_exchange ex;
    struct ra_exchange rx;
    struct rp_arena a; /* the test's own messages */
};

static inline void rfx_path(const struct rfx *f, char *buf, const char *rel)
{
    snprintf(buf, RFX_PATH_LEN, "%s/%s", f->pki, rel);
}

/* One manufacturer domain over the vendor root; `extra`: further domain keys, indented four
 * spaces (may be NULL). */
static inline void rfx_up(struct rfx *f, const char *extra)
{
    memset(f, 0, sizeof *f);
    f->pki = rpt_pki();
    cr_assert_not_null(f->pki);
    f->dir = rpt_tmpdir();
    const char *p = f->pki;
    char cfg[RFX_CFG_LEN], path[RFX_PATH_LEN];
    int n = snprintf(cfg, sizeof cfg,
                     "listeners: [{address: 127.0.0.1:1, tls: off}]\n"
                     "upstream: {url: \"http://127.0.0.1:1/pkix/\"}\n"
                     "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
                     "chain: %s/operator/ra.chain.pem}\n"
                     "domains:\n"
                     "  - name: manufacturer\n"
                     "    trust_anchors: [%s/vendor/root.pem]\n"
                     "    allow: [ir, cr, certConf]\n"
                     "%s",
                     p, p, p, p, extra ? extra : "");
    cr_assert(n > 0 && (size_t)n < sizeof cfg);
    snprintf(path, sizeof path, "%s/raproxy.yaml", f->dir);
    cr_assert_eq(rpt_write_file(path, cfg, (size_t)n), 0);
    cr_assert_eq(rp_config_load(path, &f->cfg, stderr), RP_OK);
    cr_assert_eq(ra_state_build(f->cfg, &f->st, stderr), RP_OK);
    f->snap.cfg = f->cfg;
    f->snap.ra = f->st;
    f->ex.snap = &f->snap;
    cr_assert_eq(rp_arena_new(&f->ex.arena, RFX_ARENA), RP_OK);
    cr_assert_eq(rp_arena_new(&f->a, RFX_ARENA), RP_OK);
}

static inline void rfx_down(struct rfx *f)
{
    ra_state_free(f->st);
    rp_config_free(f->cfg);
    rp_arena_free(&f->ex.arena);
    rp_arena_free(&f->a);
    rpt_rmdir(f->dir);
    free(f->dir);
}

/* A fresh exchange of the first domain holding `req`, decoded, as a worker receives it. */
static inline void rfx_load(struct rfx *f, struct rp_view req)
{
    rp_arena_reset(&f->ex.arena);
    memset(&f->rx, 0, sizeof f->rx);
    f->rx.ex = &f->ex;
    f->rx.dcfg = &f->cfg->domains[0];
    f->rx.domain = ra_state_domain(f->st, f->rx.dcfg);
    f->rx.now = (int64_t)time(NULL);
    uint8_t *copy = rp_arena_dup(&f->ex.arena, req.p, req.len);
    cr_assert_not_null(copy);
    cr_assert_eq(rp_cmp_decode(copy, req.len, &f->ex.arena, &f->rx.msg, NULL), RP_OK);
    f->rx.step = RA_VERIFY; /* on a worker: verify and re-protect */
}

/* `openssl cmp -cmd <cmd>` signed by <pki>/<cert>.pem, in the test's arena. */
static inline struct rp_view rfx_capture(struct rfx *f, const char *cmd, const char *cert)
{
    size_t len = 0;
    uint8_t *der = rpt_capture_device(f->dir, f->pki, cmd, cert, &len);
    cr_assert_not_null(der, "openssl cmp wrote no %s for %s", cmd, cert);
    struct rp_view v = rp_view_make(rp_arena_dup(&f->a, der, len), len);
    free(der);
    return v;
}

/* The first certificate of a PKI file, parsed (views into the test's arena). */
static inline struct rp_cert rfx_cert(struct rfx *f, const char *rel, struct rp_view *der)
{
    char path[RFX_PATH_LEN];
    rfx_path(f, path, rel);
    *der = rpt_cert_der(&f->a, path);
    cr_assert(rp_view_present(*der), "%s", path);
    struct rp_cert c;
    cr_assert_eq(rp_cert_parse(der->p, der->len, &c), RP_OK, "%s", path);
    return c;
}

#endif
