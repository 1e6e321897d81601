/* A domain's trust material, prepared once per snapshot (issue 20): anchors parsed,
 * configured intermediates checked as CAs and verified against the anchors, CRLs parsed,
 * verified against their issuer and indexed by serial. A request then costs a path lookup
 * by name, one wolfSSL verification of the leaf against a certificate manager that holds
 * exactly that path (built once per distinct path and shared read-only by the workers),
 * and one binary search per certificate of the path and CRL of its issuer.
 *
 * wolfSSL does the X.509 path validation (signatures, dates, the issuer's name
 * constraints); we choose the path, which lets us apply what wolfSSL skips for CAs loaded
 * by the user: CA:TRUE, keyCertSign, pathLenConstraint, unknown critical extensions, and
 * revocation of every certificate of the path, not only of the leaf. wolfSSL trusts a
 * certificate loaded as a CA without verifying it, so a path's manager is built from the
 * anchor down and each certificate is verified against what is already loaded before it
 * is loaded itself: a forged intermediate in extraCerts never becomes trusted. */
#include "ra.h"

#include "raproxy/crl.h"
#include "raproxy/err.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/sig.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A verified chain is trusted again without a path build for this long (and never past
 * the leaf's notAfter); a reload drops the cache with its snapshot. */
#define TRUST_CHAIN_TTL_S 300
/* leaf + intermediates + anchor */
#define TRUST_PATH_MAX (RA_MAX_INTERMEDIATES + 2u)
/* Certificate managers kept per domain, one per distinct path above the leaf (a vendor
 * fleet has one or a few ICAs). Least recently used goes first. */
#define TRUST_PATH_SLOTS 32u

#define FAIL(err, text)                                                                            \
    do {                                                                                           \
        *why = (text);                                                                             \
        return (err);                                                                              \
    } while (0)

enum crl_state {
    CRL_OK,      /* signature verified with its issuer's key */
    CRL_PENDING, /* issuer not configured: verified with the first chain that carries it */
    CRL_INVALID, /* unreadable, unparseable, unsupported or wrongly signed: never used */
};

struct ra_crl {
    const char *file; /* the configured file (for logs and /readyz) */
    struct rp_view der;
    struct rp_crl v;
    struct rp_view *serials; /* revoked serials, sorted (serial_cmp) */
    size_t n_serials;
    _Atomic int state;   /* enum crl_state */
    const char *problem; /* why CRL_INVALID (static text), else NULL */
    uint8_t key[32];     /* SHA-256 of the SPKI that verified it (under trust->lock) */
    bool key_set;
};

struct path_cm {
    uint8_t key[32]; /* SHA-256 over the path's certificates above the leaf */
    WOLFSSL_CERT_MANAGER *cm;
    unsigned refs;
    uint64_t used;
    bool evicted;
};

struct ra_trust {
    const char *domain;
    struct rp_cert *anchors;
    size_t n_anchors;
    struct rp_cert *inters; /* configured intermediates that verified and are CAs */
    size_t n_inters;
    uint8_t **crl_bufs; /* DER of every CRL (owned) */
    struct ra_crl *crls;
    size_t n_crls;
    bool crl_warn; /* crl_stale: warn */
    int64_t crl_next_update;
    pthread_mutex_t lock; /* the path managers and lazy CRL verification */
    struct path_cm *paths[TRUST_PATH_SLOTS];
    uint64_t tick;
    struct ra_chain_cache cache;
    bool no_cache;
    struct rp_metric *m_usable, *m_warned, *m_next, *m_revoked;
};

/* ---- checks on one certificate ----------------------------------------------------- */

/* What a CA certificate of a path (intermediate or anchor) must be; NULL when fine. */
static const char *ca_problem(const struct rp_cert *c, bool anchor, int64_t now)
{
    if (anchor)
        return NULL; /* trusted by configuration; its pathLen is checked by the caller */
    if (!c->has_basic_constraints || !c->ca)
        return "a certificate of the chain is not a CA (basicConstraints cA)";
    if (c->has_key_usage && !(c->key_usage & RP_KU_KEY_CERT_SIGN))
        return "a CA certificate of the chain lacks keyCertSign";
    if (c->unknown_critical)
        return "a CA certificate of the chain has an unknown critical extension";
    if (now < c->not_before || now > c->not_after)
        return "a CA certificate of the chain is not valid now";
    return NULL;
}

/* The issuer of c among certs: name match, and key identifiers equal when both present
 * (how wolfSSL picks the CA too). */
static bool issued_by(const struct rp_cert *c, const struct rp_cert *ca)
{
    if (!rp_name_eq(c->issuer, ca->subject))
        return false;
    return !rp_view_present(c->aki_key_id) || !rp_view_present(ca->ski) ||
           rp_view_eq(c->aki_key_id, ca->ski);
}

static void spki_hash(struct rp_view spki, uint8_t out[32])
{
    wc_Sha256 h;
    wc_InitSha256(&h);
    wc_Sha256Update(&h, spki.p, (word32)spki.len);
    wc_Sha256Final(&h, out);
    wc_Sha256Free(&h);
}

/* ---- CRLs ------------------------------------------------------------------------- */

static int serial_cmp(const void *a, const void *b)
{
    const struct rp_view *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->p, y->p, x->len);
}

static bool crl_lists(const struct ra_crl *c, struct rp_view serial)
{
    return c->n_serials &&
           bsearch(&serial, c->serials, c->n_serials, sizeof serial, serial_cmp) != NULL;
}

/* The CRL's signature by this CA (RFC 5280 §6.3.3 (f)): cRLSign when keyUsage is present. */
static bool crl_signed_by(const struct ra_crl *c, const struct rp_cert *ca)
{
    enum rp_sig_alg alg;
    struct rp_pubkey *pk;
    if (ca->has_key_usage && !(ca->key_usage & RP_KU_CRL_SIGN))
        return false;
    if (c->v.sig.unused || rp_sig_alg_parse(c->v.sig_alg.raw, &alg) != RP_OK ||
        rp_pubkey_from_spki(ca->spki, &pk) != RP_OK)
        return false;
    bool ok = rp_sig_verify(alg, pk, c->v.tbs.p, c->v.tbs.len, c->v.sig.bytes.p,
                            c->v.sig.bytes.len) == RP_OK;
    rp_pubkey_free(pk);
    return ok;
}

static void crl_invalid(struct ra_crl *c, const char *problem)
{
    c->problem = problem;
    atomic_store(&c->state, CRL_INVALID);
}

/* Parsed, indexed, and verified when its issuer is configured. */
static void crl_prepare(struct ra_trust *t, struct ra_crl *c)
{
    if (rp_crl_parse(c->der.p, c->der.len, &c->v) != RP_OK)
        return crl_invalid(c, "not a well-formed CRL");
    if (c->v.unknown_critical)
        return crl_invalid(c, "a critical CRL extension is not supported (delta or indirect CRL)");
    if (c->v.n_revoked) {
        c->serials = calloc(c->v.n_revoked, sizeof *c->serials);
        if (!c->serials)
            return crl_invalid(c, "out of memory");
        struct rp_crl_iter it;
        size_t n = 0;
        rp_crl_revoked_begin(&c->v, &it);
        while (n < c->v.n_revoked && rp_crl_revoked_next(&it, &c->serials[n]) == 1)
            n++;
        qsort(c->serials, n, sizeof *c->serials, serial_cmp);
        c->n_serials = n;
    }
    bool named = false;
    for (size_t i = 0; i < t->n_anchors + t->n_inters; i++) {
        const struct rp_cert *ca = i < t->n_anchors ? &t->anchors[i] : &t->inters[i - t->n_anchors];
        if (!rp_name_eq(c->v.issuer, ca->subject))
            continue;
        named = true;
        if (crl_signed_by(c, ca)) {
            spki_hash(ca->spki, c->key);
            c->key_set = true;
            atomic_store(&c->state, CRL_OK);
            return;
        }
    }
    if (named)
        return crl_invalid(c, "signature does not verify with its issuer's key");
    atomic_store(&c->state, CRL_PENDING);
}

/* A CRL of `ca` that a request's path reaches: verified with ca's key once, here, when
 * its issuer was not configured (a vendor ICA sent in extraCerts). ca is genuine: wolfSSL
 * verified the path already. */
static bool crl_usable_for(struct ra_trust *t, struct ra_crl *c, const struct rp_cert *ca)
{
    uint8_t key[32];
    spki_hash(ca->spki, key);
    pthread_mutex_lock(&t->lock);
    bool known = c->key_set && memcmp(c->key, key, sizeof key) == 0;
    pthread_mutex_unlock(&t->lock);
    if (known)
        return true;
    if (!crl_signed_by(c, ca)) {
        if (atomic_load(&c->state) == CRL_PENDING)
            crl_invalid(c, "signature does not verify with its issuer's key");
        return false;
    }
    pthread_mutex_lock(&t->lock);
    memcpy(c->key, key, sizeof key);
    c->key_set = true;
    pthread_mutex_unlock(&t->lock);
    int pending = CRL_PENDING;
    atomic_compare_exchange_strong(&c->state, &pending, CRL_OK);
    return true;
}

/* The domain's revocation data as a whole: NULL when usable at `now`. */
static const char *crl_gate(const struct ra_trust *t, int64_t now, const struct ra_crl **bad)
{
    for (size_t i = 0; i < t->n_crls; i++) {
        const struct ra_crl *c = &t->crls[i];
        *bad = c;
        if (atomic_load(&c->state) == CRL_INVALID)
            return "a configured CRL is unusable";
        if (c->v.has_next_update && now > c->v.next_update)
            return "a configured CRL is past its nextUpdate";
    }
    return NULL;
}

/* ---- certificate managers per path ------------------------------------------------ */

/* Anchor loaded, then every certificate down to the leaf's issuer verified against what
 * is loaded already and only then loaded. path[0] is the leaf (not loaded). */
static int path_cm_build(const struct rp_cert *const *path, size_t n, WOLFSSL_CERT_MANAGER **out)
{
    WOLFSSL_CERT_MANAGER *cm = wolfSSL_CertManagerNew();
    if (!cm)
        return RP_E_NOMEM;
    const struct rp_cert *top = path[n - 1];
    int rc = wolfSSL_CertManagerLoadCABuffer(cm, top->raw.p, (long)top->raw.len,
                                             WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS
                 ? RP_OK
                 : RP_E_SIGNER_NOT_TRUSTED;
    for (size_t i = n - 1; rc == RP_OK && i-- > 1;) {
        const struct rp_cert *c = path[i];
        if (wolfSSL_CertManagerVerifyBuffer(cm, c->raw.p, (long)c->raw.len,
                                            WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS ||
            wolfSSL_CertManagerLoadCABuffer(cm, c->raw.p, (long)c->raw.len,
                                            WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
            rc = RP_E_SIGNER_NOT_TRUSTED;
    }
    if (rc != RP_OK) {
        wolfSSL_CertManagerFree(cm);
        return rc;
    }
    *out = cm;
    return RP_OK;
}

static void path_key(const struct rp_cert *const *path, size_t n, uint8_t out[32])
{
    wc_Sha256 h;
    wc_InitSha256(&h);
    for (size_t i = 1; i < n; i++)
        wc_Sha256Update(&h, path[i]->raw.p, (word32)path[i]->raw.len);
    wc_Sha256Final(&h, out);
    wc_Sha256Free(&h);
}

static void path_cm_unref_locked(struct path_cm *p)
{
    if (--p->refs == 0 && p->evicted) {
        wolfSSL_CertManagerFree(p->cm);
        free(p);
    }
}

/* The manager of this path, shared: built on first use, then only read (wolfSSL's
 * verification takes the manager's CA lock for the lookup; nothing is loaded after the
 * build). */
static int path_cm_get(struct ra_trust *t, const struct rp_cert *const *path, size_t n,
                       struct path_cm **out)
{
    uint8_t key[32];
    path_key(path, n, key);
    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < TRUST_PATH_SLOTS; i++) {
        struct path_cm *p = t->paths[i];
        if (p && memcmp(p->key, key, sizeof key) == 0) {
            p->refs++;
            p->used = ++t->tick;
            pthread_mutex_unlock(&t->lock);
            *out = p;
            return RP_OK;
        }
    }
    pthread_mutex_unlock(&t->lock);
    struct path_cm *p = calloc(1, sizeof *p);
    if (!p)
        return RP_E_NOMEM;
    int rc = path_cm_build(path, n, &p->cm);
    if (rc != RP_OK) {
        free(p);
        return rc;
    }
    memcpy(p->key, key, sizeof key);
    p->refs = 2; /* the slot and the caller */
    pthread_mutex_lock(&t->lock);
    p->used = ++t->tick;
    unsigned victim = 0;
    for (unsigned i = 0; i < TRUST_PATH_SLOTS; i++) {
        if (!t->paths[i]) {
            victim = i;
            break;
        }
        if (t->paths[i]->used < t->paths[victim]->used)
            victim = i;
    }
    struct path_cm *old = t->paths[victim];
    t->paths[victim] = p;
    if (old) {
        old->evicted = true;
        path_cm_unref_locked(old);
    }
    pthread_mutex_unlock(&t->lock);
    *out = p;
    return RP_OK;
}

static void path_cm_put(struct ra_trust *t, struct path_cm *p)
{
    pthread_mutex_lock(&t->lock);
    path_cm_unref_locked(p);
    pthread_mutex_unlock(&t->lock);
}

/* ---- the check ------------------------------------------------------------------- */

static const struct rp_cert *find_issuer(const struct rp_cert *c, const struct rp_cert *set,
                                         size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (issued_by(c, &set[i]))
            return &set[i];
    return NULL;
}

static bool on_path(const struct rp_cert *const *path, size_t n, const struct rp_cert *c)
{
    for (size_t i = 0; i < n; i++)
        if (path[i] == c || rp_view_eq(path[i]->raw, c->raw))
            return true;
    return false;
}

/* leaf → … → anchor by names and key identifiers: anchors first, then configured
 * intermediates, then the request's. *n is the path length, the anchor last. */
static int build_path(const struct ra_trust *t, const struct rp_cert *leaf,
                      const struct rp_cert *req, size_t n_req, const struct rp_cert **path,
                      size_t *n)
{
    path[0] = leaf;
    *n = 1;
    while (*n < TRUST_PATH_MAX) {
        const struct rp_cert *cur = path[*n - 1];
        const struct rp_cert *up = find_issuer(cur, t->anchors, t->n_anchors);
        if (up) {
            path[(*n)++] = up;
            return RP_OK;
        }
        up = find_issuer(cur, t->inters, t->n_inters);
        for (size_t i = 0; !up && i < n_req; i++)
            if (issued_by(cur, &req[i]) && !on_path(path, *n, &req[i]))
                up = &req[i];
        if (!up || on_path(path, *n, up))
            return RP_E_SIGNER_NOT_TRUSTED;
        path[(*n)++] = up;
    }
    return RP_E_SIGNER_NOT_TRUSTED;
}

static int check_cas(const struct rp_cert *const *path, size_t n, int64_t now, const char **why)
{
    for (size_t i = 1; i < n; i++) {
        const char *p = ca_problem(path[i], i == n - 1, now);
        if (p)
            FAIL(RP_E_SIGNER_NOT_TRUSTED, p);
        /* RFC 5280 §4.2.1.9: intermediates below this CA, the leaf not counted */
        if (path[i]->path_len >= 0 && (int)(i - 1) > path[i]->path_len)
            FAIL(RP_E_SIGNER_NOT_TRUSTED, "a CA's pathLenConstraint is exceeded");
    }
    return RP_OK;
}

static int check_revocation(struct ra_trust *t, const struct rp_cert *const *path, size_t n,
                            const char **why)
{
    for (size_t i = 0; i + 1 < n; i++) {
        const struct rp_cert *ca = path[i + 1];
        for (size_t k = 0; k < t->n_crls; k++) {
            struct ra_crl *c = &t->crls[k];
            if (atomic_load(&c->state) == CRL_INVALID || !rp_name_eq(c->v.issuer, ca->subject))
                continue;
            if (!crl_usable_for(t, c, ca)) {
                if (t->crl_warn)
                    continue;
                FAIL(RP_E_SIGNER_NOT_TRUSTED, "a configured CRL is not signed by its issuer");
            }
            if (crl_lists(c, path[i]->serial)) {
                rp_metric_inc(t->m_revoked);
                FAIL(RP_E_CERT_REVOKED, i == 0 ? "protection certificate revoked"
                                               : "a CA certificate of the chain is revoked");
            }
        }
    }
    return RP_OK;
}

static void chain_key(const struct rp_cert *leaf, const struct rp_view *extra, size_t n_extra,
                      size_t signer, uint8_t out[32])
{
    wc_Sha256 h;
    wc_InitSha256(&h);
    wc_Sha256Update(&h, leaf->raw.p, (word32)leaf->raw.len);
    for (size_t i = 0; i < n_extra && i <= RA_MAX_INTERMEDIATES; i++)
        if (i != signer)
            wc_Sha256Update(&h, extra[i].p, (word32)extra[i].len);
    wc_Sha256Final(&h, out);
    wc_Sha256Free(&h);
}

static int verify_leaf(struct ra_trust *t, const struct rp_cert *const *path, size_t n,
                       const char **why)
{
    struct path_cm *p;
    int rc = path_cm_get(t, path, n, &p);
    if (rc == RP_E_NOMEM)
        FAIL(rc, "out of memory");
    if (rc != RP_OK)
        FAIL(RP_E_SIGNER_NOT_TRUSTED, "a CA certificate of the chain does not verify");
    const struct rp_cert *leaf = path[0];
    rc = wolfSSL_CertManagerVerifyBuffer(p->cm, leaf->raw.p, (long)leaf->raw.len,
                                         WOLFSSL_FILETYPE_ASN1);
    path_cm_put(t, p);
    if (rc == WOLFSSL_SUCCESS)
        return RP_OK;
    rp_log_debug("verify", "chain check failed: %d", rc);
    if (rc == ASN_AFTER_DATE_E || rc == ASN_BEFORE_DATE_E)
        FAIL(RP_E_SIGNER_NOT_TRUSTED, "protection certificate not valid now");
    FAIL(RP_E_SIGNER_NOT_TRUSTED, "protection certificate does not chain to a trust anchor");
}

int ra_trust_check(struct ra_trust *t, const struct rp_cert *leaf, const struct rp_view *extra,
                   size_t n_extra, size_t signer, int64_t now, const char **why)
{
    const struct ra_crl *bad = NULL;
    const char *gate = crl_gate(t, now, &bad);
    if (gate) {
        rp_metric_set(t->m_usable, 0);
        if (!t->crl_warn)
            FAIL(RP_E_SIGNER_NOT_TRUSTED, gate);
        rp_metric_inc(t->m_warned);
    }
    uint8_t key[32];
    chain_key(leaf, extra, n_extra, signer, key);
    if (!t->no_cache && ra_chain_cache_get(&t->cache, key, now))
        return RP_OK;
    struct rp_cert req[RA_MAX_INTERMEDIATES];
    size_t n_req = 0;
    for (size_t i = 0; i < n_extra && n_req < RA_MAX_INTERMEDIATES; i++)
        if (i != signer && rp_cert_parse(extra[i].p, extra[i].len, &req[n_req]) == RP_OK &&
            !rp_name_eq(req[n_req].issuer, req[n_req].subject))
            n_req++; /* self-issued certificates in extraCerts are never anchors */
    const struct rp_cert *path[TRUST_PATH_MAX];
    size_t n = 0;
    if (build_path(t, leaf, req, n_req, path, &n) != RP_OK)
        FAIL(RP_E_SIGNER_NOT_TRUSTED, "protection certificate does not chain to a trust anchor");
    int rc = check_cas(path, n, now, why);
    if (rc == RP_OK)
        rc = verify_leaf(t, path, n, why);
    if (rc == RP_OK)
        rc = check_revocation(t, path, n, why);
    if (rc != RP_OK)
        return rc;
    int64_t until = now + TRUST_CHAIN_TTL_S;
    for (size_t i = 0; i + 1 < n; i++)
        if (path[i]->not_after < until)
            until = path[i]->not_after;
    for (size_t i = 0; i < t->n_crls; i++)
        if (t->crls[i].v.has_next_update && t->crls[i].v.next_update < until)
            until = t->crls[i].v.next_update;
    ra_chain_cache_put(&t->cache, key, until);
    return RP_OK;
}

/* ---- building ---------------------------------------------------------------------- */

static int add_crl(struct ra_trust *t, const char *file, const uint8_t *der, size_t len,
                   const char *problem)
{
    struct ra_crl *nc = realloc(t->crls, (t->n_crls + 1) * sizeof *nc);
    if (!nc)
        return RP_E_NOMEM;
    t->crls = nc;
    uint8_t **nb = realloc(t->crl_bufs, (t->n_crls + 1) * sizeof *nb);
    if (!nb)
        return RP_E_NOMEM;
    t->crl_bufs = nb;
    struct ra_crl *c = &t->crls[t->n_crls];
    memset(c, 0, sizeof *c);
    t->crl_bufs[t->n_crls] = NULL;
    t->n_crls++;
    c->file = file;
    if (problem) {
        crl_invalid(c, problem);
        return RP_OK;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return RP_E_NOMEM;
    memcpy(copy, der, len);
    t->crl_bufs[t->n_crls - 1] = copy;
    c->der = rp_view_make(copy, len);
    crl_prepare(t, c);
    return RP_OK;
}

/* One configured file: a DER CRL, or PEM with one or more. */
static int add_crl_file(struct ra_trust *t, const char *file, const struct ra_der *f)
{
    if (!f->p || !f->len)
        return add_crl(t, file, NULL, 0, "cannot read the file");
    if (f->p[0] == RP_DER_SEQUENCE)
        return add_crl(t, file, f->p, f->len, NULL);
    size_t pos = 0, before = t->n_crls, len;
    uint8_t *der;
    int rc = RP_OK, r;
    while (rc == RP_OK && t->n_crls - before < RP_CRL_MAX_PER_FILE &&
           (r = rp_crl_pem_next((const char *)f->p, f->len, &pos, &der, &len)) != RP_E_NOT_FOUND) {
        if (r != RP_OK)
            return r == RP_E_NOMEM ? r : add_crl(t, file, NULL, 0, "bad PEM");
        rc = add_crl(t, file, der, len, NULL);
        free(der);
    }
    if (rc == RP_OK && t->n_crls == before)
        rc = add_crl(t, file, NULL, 0, "not a CRL (PEM or DER)");
    return rc;
}

/* Configured intermediates: kept when they are CAs and verify against the anchors (in any
 * order, each against what verified before it). */
static int prepare_intermediates(struct ra_trust *t, const struct ra_der_list *l, int64_t now,
                                 FILE *errs)
{
    if (!l->n)
        return RP_OK;
    t->inters = calloc(l->n, sizeof *t->inters);
    bool *done = calloc(l->n, sizeof *done);
    WOLFSSL_CERT_MANAGER *cm = wolfSSL_CertManagerNew();
    int rc = t->inters && done && cm ? RP_OK : RP_E_NOMEM;
    for (size_t i = 0; rc == RP_OK && i < t->n_anchors; i++)
        wolfSSL_CertManagerLoadCABuffer(cm, t->anchors[i].raw.p, (long)t->anchors[i].raw.len,
                                        WOLFSSL_FILETYPE_ASN1);
    for (bool progress = true; rc == RP_OK && progress;) {
        progress = false;
        for (size_t i = 0; i < l->n; i++) {
            struct rp_cert c;
            if (done[i] || rp_cert_parse(l->v[i].p, l->v[i].len, &c) != RP_OK)
                continue;
            if (wolfSSL_CertManagerVerifyBuffer(cm, c.raw.p, (long)c.raw.len,
                                                WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
                continue;
            done[i] = progress = true;
            const char *p = ca_problem(&c, false, now);
            if (p) {
                rp_log_warn("config", "domain %s: intermediate %zu not used: %s", t->domain, i, p);
                if (errs)
                    fprintf(errs, "domain %s: intermediate %zu not used: %s\n", t->domain, i, p);
                continue;
            }
            wolfSSL_CertManagerLoadCABuffer(cm, c.raw.p, (long)c.raw.len, WOLFSSL_FILETYPE_ASN1);
            t->inters[t->n_inters++] = c;
        }
    }
    for (size_t i = 0; rc == RP_OK && i < l->n; i++)
        if (!done[i])
            rp_log_warn("config",
                        "domain %s: intermediate %zu does not verify against the anchors: "
                        "not used",
                        t->domain, i);
    free(done);
    if (cm)
        wolfSSL_CertManagerFree(cm);
    return rc;
}

static void register_metrics(struct ra_trust *t)
{
    char labels[128];
    snprintf(labels, sizeof labels, "domain=\"%s\"", t->domain);
    rp_metrics_help("raproxy_crl_usable", RP_METRIC_GAUGE,
                    "1 when every configured CRL of the domain is verified and current "
                    "(0: signature-protected requests refused, or accepted under "
                    "crl_stale: warn); set at load, at nextUpdate, by /readyz and when a chain "
                    "check finds it unusable.");
    rp_metrics_help("raproxy_crl_next_update_seconds", RP_METRIC_GAUGE,
                    "Earliest nextUpdate (Unix time) of the domain's CRLs.");
    rp_metrics_help("raproxy_crl_warned_total", RP_METRIC_COUNTER,
                    "Requests accepted with unusable revocation data (crl_stale: warn).");
    rp_metrics_help("raproxy_crl_revoked_total", RP_METRIC_COUNTER,
                    "Requests refused because a certificate of their chain is on a CRL.");
    t->m_usable = rp_metric_get("raproxy_crl_usable", RP_METRIC_GAUGE, labels);
    t->m_next = rp_metric_get("raproxy_crl_next_update_seconds", RP_METRIC_GAUGE, labels);
    t->m_warned = rp_metric_get("raproxy_crl_warned_total", RP_METRIC_COUNTER, labels);
    t->m_revoked = rp_metric_get("raproxy_crl_revoked_total", RP_METRIC_COUNTER, labels);
}

int ra_trust_build(struct ra_trust **out, const char *domain, const struct ra_der_list *anchors,
                   const struct ra_der_list *inters, const struct ra_der_list *crl_files,
                   char *const *crl_names, bool crl_warn, FILE *errs)
{
    struct ra_trust *t = calloc(1, sizeof *t);
    if (!t)
        return RP_E_NOMEM;
    t->domain = domain;
    t->crl_warn = crl_warn;
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->cache.lock, NULL);
    int64_t now = (int64_t)time(NULL);
    int rc = RP_OK;
    if (anchors->n && !(t->anchors = calloc(anchors->n, sizeof *t->anchors)))
        rc = RP_E_NOMEM;
    for (size_t i = 0; rc == RP_OK && i < anchors->n; i++)
        if (rp_cert_parse(anchors->v[i].p, anchors->v[i].len, &t->anchors[t->n_anchors]) == RP_OK)
            t->n_anchors++;
    if (rc == RP_OK)
        rc = prepare_intermediates(t, inters, now, errs);
    for (size_t i = 0; rc == RP_OK && i < crl_files->n; i++)
        rc = add_crl_file(t, crl_names ? crl_names[i] : "?", &crl_files->v[i]);
    if (rc != RP_OK) {
        ra_trust_free(t);
        return rc;
    }
    for (size_t i = 0; i < t->n_crls; i++)
        if (t->crls[i].v.has_next_update &&
            (!t->crl_next_update || t->crls[i].v.next_update < t->crl_next_update))
            t->crl_next_update = t->crls[i].v.next_update;
    if (t->n_crls)
        register_metrics(t);
    ra_trust_crl_refresh(t, now);
    *out = t;
    return RP_OK;
}

void ra_trust_free(struct ra_trust *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < TRUST_PATH_SLOTS; i++)
        if (t->paths[i]) {
            wolfSSL_CertManagerFree(t->paths[i]->cm);
            free(t->paths[i]);
        }
    for (size_t i = 0; i < t->n_crls; i++) {
        free(t->crls[i].serials);
        free(t->crl_bufs[i]);
    }
    free(t->crls);
    free(t->crl_bufs);
    free(t->anchors);
    free(t->inters);
    pthread_mutex_destroy(&t->lock);
    pthread_mutex_destroy(&t->cache.lock);
    free(t);
}

struct ra_chain_cache *ra_trust_cache(struct ra_trust *t)
{
    return &t->cache;
}

void ra_trust_set_cache(struct ra_trust *t, bool on)
{
    t->no_cache = !on;
}

int64_t ra_trust_crl_next_update(const struct ra_trust *t)
{
    return t ? t->crl_next_update : 0;
}

bool ra_trust_crl_refresh(struct ra_trust *t, int64_t now)
{
    const struct ra_crl *bad = NULL;
    bool ok = !t || crl_gate(t, now, &bad) == NULL;
    if (t && t->n_crls) {
        rp_metric_set(t->m_usable, ok ? 1 : 0);
        rp_metric_set(t->m_next, t->crl_next_update);
    }
    return ok;
}

int ra_trust_crl_report(const struct ra_trust *t, int64_t now, char *buf, size_t cap)
{
    if (!t || !t->n_crls)
        return snprintf(buf, cap, "none");
    const struct ra_crl *bad = NULL;
    const char *gate = crl_gate(t, now, &bad);
    size_t revoked = 0, pending = 0;
    for (size_t i = 0; i < t->n_crls; i++) {
        revoked += t->crls[i].v.n_revoked;
        pending += atomic_load(&t->crls[i].state) == CRL_PENDING;
    }
    if (!gate)
        return snprintf(buf, cap,
                        "ok (%zu CRLs, %zu revoked serials, next update %lld, %zu awaiting "
                        "their issuer in a chain)",
                        t->n_crls, revoked, (long long)t->crl_next_update, pending);
    return snprintf(buf, cap, "%s (%s: %s): %s", t->crl_warn ? "warn" : "refusing",
                    bad && bad->file ? bad->file : "?",
                    bad && bad->problem ? bad->problem : "past its nextUpdate", gate);
}

/* ---- the CA's answers (upstream.ca_trust, upstream.ca_signers) --------------------- */

/* "C=DE, O=X, CN=Y" and OpenSSL's "/C=DE/O=X/CN=Y" to "C=DE,O=X,CN=Y". */
static void dn_normalize(const char *in, char *out, size_t cap)
{
    char sep = in[0] == '/' ? '/' : ',';
    size_t o = 0;
    const char *p = in[0] == '/' ? in + 1 : in;
    while (*p && o + 1 < cap) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != sep)
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        if (o && o + 1 < cap)
            out[o++] = ',';
        for (; p < t && o + 1 < cap; p++)
            out[o++] = *p;
        p = *e ? e + 1 : e;
    }
    out[o] = 0;
}

#define TRUST_DN_MAX 1024

static bool subject_configured(const struct ra_state *s, const struct rp_cert *c)
{
    char name[TRUST_DN_MAX], have[TRUST_DN_MAX], want[TRUST_DN_MAX];
    int n = rp_name_to_string(c->subject, name, sizeof name);
    if (n < 0 || (size_t)n >= sizeof name)
        return false;
    dn_normalize(name, have, sizeof have);
    for (unsigned i = 0; i < s->n_ca_signers; i++) {
        dn_normalize(s->ca_signers[i], want, sizeof want);
        if (strcmp(have, want) == 0)
            return true;
    }
    return false;
}

int ra_ca_signer_check(struct ra_state *s, const struct rp_cmp_msg *m, size_t idx,
                       const struct rp_cert *signer, int64_t now, const char **why)
{
    const struct ra_der_list *pinned = &s->ca.anchors;
    for (size_t i = 0; i < pinned->n; i++) {
        if (!rp_view_eq(signer->raw, rp_view_make(pinned->v[i].p, pinned->v[i].len)))
            continue;
        if (now < signer->not_before || now > signer->not_after)
            FAIL(RP_E_SIGNER_NOT_TRUSTED, "the CA's certificate is not valid now");
        return RP_OK;
    }
    if (!subject_configured(s, signer))
        FAIL(RP_E_SIGNER_NOT_TRUSTED,
             "answer not signed by a configured CA certificate (upstream.ca_trust / ca_signers)");
    return ra_trust_check(s->ca.trust, signer, m->extra_certs, m->n_extra_certs, idx, now, why);
}
