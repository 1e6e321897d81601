/* The RA state of one snapshot: its signing identity and, per trust domain, the anchors,
 * intermediates, CRLs, allowlist, MAC secrets and chain cache. Built on the main thread,
 * read-only afterwards (the chain cache has its own lock). */
#include "ra.h"

#include "raproxy/admit.h"
#include "raproxy/allowlist.h"
#include "raproxy/err.h"
#include "raproxy/file.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/ocsp.h"
#include "raproxy/sig.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RA_MAX_FILE  (16u * 1024u * 1024u)
#define RA_MAX_CERTS 256u
/* Room for why a key did not load (module, token, PIN, object). */
#define RA_KEY_WHY_MAX 512

static int read_file(const char *path, uint8_t **out, size_t *len)
{
    int rc = rp_file_read(path, RA_MAX_FILE, out, len);
    return rc == RP_E_IO ? RP_E_KEY_LOAD : rc;
}

static int list_push(struct ra_der_list *l, const uint8_t *p, size_t len)
{
    if (l->n >= RA_MAX_CERTS)
        return RP_E_KEY_LOAD;
    struct ra_der *nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (!nv)
        return RP_E_NOMEM;
    l->v = nv;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return RP_E_NOMEM;
    memcpy(copy, p, len);
    l->v[l->n].p = copy;
    l->v[l->n].len = len;
    l->n++;
    return RP_OK;
}

static void list_free(struct ra_der_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].p);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Every certificate of a PEM file (or the one certificate of a DER file), in order. */
static int load_certs(const char *path, struct ra_der_list *l, FILE *errs)
{
    struct rp_cert_file f;
    int rc = rp_cert_file_load(path, RA_MAX_FILE, RA_MAX_CERTS, &f);
    if (rc == RP_E_IO) {
        if (errs)
            fprintf(errs, "%s: cannot read\n", path);
        return RP_E_KEY_LOAD;
    }
    for (size_t i = 0; rc == RP_OK && i < f.n; i++)
        rc = list_push(l, f.ders[i].p, f.ders[i].len);
    rp_cert_file_free(&f);
    if (rc != RP_OK && errs)
        fprintf(errs, "%s: no valid certificate\n", path);
    return rc;
}

/* raproxy_ra_cert_not_after_seconds: the RA certificate of the newest snapshot, so that
 * its expiry can be alerted on (and a rotation seen to take effect). */
static void export_not_after(int64_t not_after)
{
    static struct rp_metric *m;
    if (!m) {
        rp_metrics_help("raproxy_ra_cert_not_after_seconds", RP_METRIC_GAUGE,
                        "notAfter of the RA certificate in use, Unix seconds.");
        m = rp_metric_get("raproxy_ra_cert_not_after_seconds", RP_METRIC_GAUGE, NULL);
    }
    rp_metric_set(m, not_after);
}

static int load_identity(const struct rp_cfg_ra *cfg, struct ra_identity *id, FILE *errs)
{
    struct rp_p11_opts p11 = {
        .module = cfg->pkcs11.module, .pin = cfg->pkcs11.pin, .pin_file = cfg->pkcs11.pin_file};
    char why[RA_KEY_WHY_MAX];
    int rc = rp_privkey_load(cfg->key, &p11, &id->key, why, sizeof why);
    if (rc != RP_OK) {
        if (errs)
            fprintf(errs, "ra.key: cannot load the private key: %s\n", why);
        return rc;
    }
    rc = load_certs(cfg->cert, &id->certs, errs);
    if (rc == RP_OK && cfg->chain)
        rc = load_certs(cfg->chain, &id->certs, errs);
    if (rc != RP_OK)
        return rc;
    rc = rp_cert_parse(id->certs.v[0].p, id->certs.v[0].len, &id->cert);
    int match = rc == RP_OK ? rp_privkey_matches_spki(id->key, id->cert.spki) : 1;
    if (match != 1) {
        if (errs)
            fprintf(errs, "%s: ra.key does not belong to the certificate %s%s\n", cfg->key,
                    cfg->cert, match < 0 ? " (the key could not sign)" : "");
        return RP_E_KEY_LOAD;
    }
    if (rc == RP_OK && !rp_view_present(id->cert.ski) && errs)
        rp_log_warn("config",
                    "RA certificate %s has no subjectKeyIdentifier: senderKID is "
                    "omitted from re-protected messages",
                    cfg->cert);
    id->alg = (int)rp_privkey_default_alg(id->key);
    if (rp_privkey_type(id->key) == RP_KEY_RSA && cfg->rsa_signature == RP_RSA_SIG_PSS)
        id->alg = RP_SIG_RSA_PSS_SHA256; /* RFC 4055 parameters: SHA-256, MGF1, salt 32 */
    id->alg_der = rp_sig_alg_der((enum rp_sig_alg)id->alg);
    id->extra = calloc(id->certs.n, sizeof *id->extra);
    if (!id->extra)
        return RP_E_NOMEM;
    for (size_t i = 0; i < id->certs.n; i++)
        id->extra[i] = rp_view_make(id->certs.v[i].p, id->certs.v[i].len);
    return rc;
}

static int kid_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    if (alen != blen)
        return alen < blen ? -1 : 1;
    return memcmp(a, b, alen);
}

static int secret_order(const void *x, const void *y)
{
    const struct ra_secret *a = x, *b = y;
    return kid_cmp((const uint8_t *)a->kid, a->kid_len, (const uint8_t *)b->kid, b->kid_len);
}

/* Splits the next whitespace-separated token off *s; a token may be written in double
 * quotes to hold spaces (subject="CN=Device 1, O=Vendor"). NULL at the end of the line. */
static char *next_token(char **s, bool *bad)
{
    char *p = *s;
    while (*p && isspace((unsigned char)*p))
        p++;
    if (!*p)
        return NULL;
    char *tok = p, *w = p;
    bool quoted = false;
    for (; *p && (quoted || !isspace((unsigned char)*p)); p++) {
        if (*p == '"')
            quoted = !quoted;
        else
            *w++ = *p;
    }
    if (quoted)
        *bad = true;
    if (*p)
        p++;
    *w = '\0';
    *s = p;
    return tok;
}

static int secret_attr(struct ra_secret *sec, char *tok, const char **why)
{
    char *eq = strchr(tok, '=');
    if (!eq || eq == tok || !eq[1]) {
        *why = "expected key=value after the secret (a secret cannot contain spaces)";
        return RP_E_CONFIG;
    }
    *eq = '\0';
    const char *val = eq + 1;
    char **dst = strcmp(tok, "serial") == 0    ? &sec->serial
                 : strcmp(tok, "subject") == 0 ? &sec->subject
                                               : NULL;
    if (dst) {
        if (*dst) {
            *why = "attribute given twice";
            return RP_E_CONFIG;
        }
        *dst = strdup(val);
        return *dst ? RP_OK : RP_E_NOMEM;
    }
    if (strcmp(tok, "bodies") != 0) {
        *why = "unknown attribute (serial=, subject=, bodies=)";
        return RP_E_CONFIG;
    }
    char *list = strdup(val), *save = NULL;
    if (!list)
        return RP_E_NOMEM;
    int rc = RP_OK;
    for (char *b = strtok_r(list, ",", &save); b && rc == RP_OK; b = strtok_r(NULL, ",", &save)) {
        int t = rp_cmp_body_from_name(b);
        if (t < 0) {
            *why = "bodies=: unknown CMP body type";
            rc = RP_E_CONFIG;
        } else {
            sec->body_mask |= 1u << t;
        }
    }
    free(list);
    return rc;
}

static void secret_free(struct ra_secret *s)
{
    if (s->secret)
        explicit_bzero(s->secret, s->secret_len);
    free(s->kid);
    free(s->secret);
    free(s->serial);
    free(s->subject);
    free(s->identity);
    free(s->subject_der);
}

/* One line: "<senderKID> <secret> [serial=…] [subject=…] [bodies=ir,certConf,…]". */
static int parse_secret_line(char *line, struct ra_secret *sec, const char **why)
{
    bool bad = false;
    char *kid = next_token(&line, &bad), *secret = next_token(&line, &bad);
    if (!kid || !secret) {
        *why = "expected <senderKID> <secret>";
        return RP_E_CONFIG;
    }
    sec->kid_len = strlen(kid);
    sec->secret_len = strlen(secret);
    sec->kid = strdup(kid);
    sec->secret = (uint8_t *)strdup(secret);
    if (!sec->kid || !sec->secret)
        return RP_E_NOMEM;
    int rc = RP_OK;
    for (char *tok; rc == RP_OK && (tok = next_token(&line, &bad)) != NULL;)
        rc = secret_attr(sec, tok, why);
    if (rc == RP_OK && bad) {
        *why = "unterminated quote";
        rc = RP_E_CONFIG;
    }
    if (rc == RP_OK && strlen(sec->serial ? sec->serial : sec->kid) > RP_ADMIT_MAX_SERIAL) {
        *why = "the identity (serial=, or the senderKID itself) is too long";
        rc = RP_E_CONFIG;
    }
    return rc;
}

bool ra_identity_ready(const struct ra_identity *id)
{
    return id->key && rp_privkey_available(id->key);
}

/* The identity of a kid (README "Identities") and its subject= as a DER Name. */
static int secret_identity(const struct ra_domain *d, struct ra_secret *sec, const char **why)
{
    const char *serial = sec->serial ? sec->serial : sec->kid;
    size_t n = strlen(RP_CFG_MAC_ANCHOR_NAME "/") + strlen(serial) + 1;
    sec->identity = malloc(n);
    if (!sec->identity)
        return RP_E_NOMEM;
    snprintf(sec->identity, n, "%s%s", d->qualified ? RP_CFG_MAC_ANCHOR_NAME "/" : "", serial);
    if (!sec->subject)
        return RP_OK;
    int rc = ra_policy_name_from_text(sec->subject, &sec->subject_der, &sec->subject_der_len, why);
    return rc;
}

static int load_secrets(const char *path, struct ra_domain *d, FILE *errs)
{
    uint8_t *data;
    size_t len;
    if (read_file(path, &data, &len) != RP_OK) {
        if (errs)
            fprintf(errs, "%s: cannot read the MAC secrets\n", path);
        return RP_E_KEY_LOAD;
    }
    int rc = RP_OK;
    unsigned lineno = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)data, "\n", &save); line && rc == RP_OK;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        while (isspace((unsigned char)*line))
            line++;
        if (!*line || *line == '#')
            continue;
        struct ra_secret *ns = realloc(d->secrets, (d->n_secrets + 1) * sizeof *ns);
        if (!ns) {
            rc = RP_E_NOMEM;
            break;
        }
        d->secrets = ns;
        struct ra_secret *sec = &d->secrets[d->n_secrets++];
        memset(sec, 0, sizeof *sec);
        const char *why = "out of memory";
        rc = parse_secret_line(line, sec, &why);
        if (rc == RP_OK)
            rc = secret_identity(d, sec, &why);
        if (rc != RP_OK && errs)
            fprintf(errs, "%s:%u: %s\n", path, lineno, why);
    }
    /* sorted, so that the loop finds a kid in O(log n) before any work is spent on it */
    if (rc == RP_OK && d->n_secrets)
        qsort(d->secrets, d->n_secrets, sizeof *d->secrets, secret_order);
    for (size_t i = 1; rc == RP_OK && i < d->n_secrets; i++)
        if (secret_order(&d->secrets[i - 1], &d->secrets[i]) == 0) {
            if (errs)
                fprintf(errs, "%s: senderKID %s listed twice\n", path, d->secrets[i].kid);
            rc = RP_E_CONFIG;
        }
    /* the secrets stay in memory as long as the snapshot; wipe the file copy */
    explicit_bzero(data, len);
    free(data);
    return rc == RP_E_CONFIG ? RP_E_KEY_LOAD : rc;
}

const struct ra_secret *ra_domain_secret(const struct ra_domain *d, struct rp_view kid)
{
    size_t lo = 0, hi = d->n_secrets;
    while (kid.p && lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct ra_secret *s = &d->secrets[mid];
        int c = kid_cmp(kid.p, kid.len, (const uint8_t *)s->kid, s->kid_len);
        if (c == 0)
            return s;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* The names of rp_sig_policy_name() (the config's `algorithms`), bit i = names[i]. */
static const char *const alg_policy_names[] = {"ecdsa-p256", "ecdsa-p384", "ecdsa-p521",
                                               "ed25519",    "rsa-pkcs1",  "rsa-pss"};
_Static_assert((1u << (sizeof alg_policy_names / sizeof alg_policy_names[0])) - 1 ==
                   RA_ALG_POLICY_ALL,
               "RA_ALG_POLICY_ALL names every policy bit");

uint32_t ra_alg_policy_bit(const char *name)
{
    for (unsigned k = 0; name && k < sizeof alg_policy_names / sizeof alg_policy_names[0]; k++)
        if (strcmp(name, alg_policy_names[k]) == 0)
            return 1u << k;
    return 0;
}

static int load_domain(const struct rp_cfg_domain *c, struct ra_domain *d, FILE *errs)
{
    d->cfg = c;
    int rc = RP_OK;
    for (unsigned i = 0; i < c->allow_count; i++) {
        int t = rp_cmp_body_from_name(c->allow[i]);
        if (t >= 0)
            d->allow_mask |= 1u << t;
    }
    for (unsigned i = 0; i < c->algorithms_count; i++)
        d->alg_mask |= ra_alg_policy_bit(c->algorithms[i]);
    if (!d->alg_mask)
        d->alg_mask = RA_ALG_POLICY_ALL;
    for (unsigned i = 0; i < c->trust_anchors_count && rc == RP_OK; i++) {
        size_t before = d->anchors.n;
        rc = load_certs(c->trust_anchors[i], &d->anchors, errs);
        unsigned *nf = rc == RP_OK ? realloc(d->anchor_file, d->anchors.n * sizeof *nf) : NULL;
        if (rc == RP_OK && !nf)
            rc = RP_E_NOMEM;
        if (rc == RP_OK)
            d->anchor_file = nf;
        for (size_t k = before; rc == RP_OK && k < d->anchors.n; k++)
            d->anchor_file[k] = i;
    }
    for (unsigned i = 1; i < c->anchor_names_count; i++)
        if (strcmp(c->anchor_names[i], c->anchor_names[0]) != 0)
            d->qualified = true;
    for (unsigned i = 0; i < c->intermediates_count && rc == RP_OK; i++)
        rc = load_certs(c->intermediates[i], &d->intermediates, errs);
    /* A CRL file that cannot be read (it vanished after the config check) still takes its
     * place, empty: the domain then refuses instead of running without it (trust.c). */
    for (unsigned i = 0; i < c->crls_count && rc == RP_OK; i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        if (read_file(c->crls[i], &data, &len) != RP_OK) {
            rp_log_error("config", "domain %s: cannot read the CRL %s", c->name, c->crls[i]);
            len = 0;
        }
        rc = list_push(&d->crls, data ? data : (const uint8_t *)"", len);
        free(data);
    }
    if (rc == RP_OK)
        rc = ra_trust_build(&d->trust, c->name, &d->anchors, &d->intermediates, &d->crls, c->crls,
                            c->crl_stale == RP_CRL_STALE_WARN, errs);
    if (rc == RP_OK && c->crls_count) {
        char state[256];
        ra_trust_crl_report(d->trust, (int64_t)time(NULL), state, sizeof state);
        if (ra_trust_crl_refresh(d->trust, (int64_t)time(NULL)))
            rp_log_info("config", "domain %s: revocation %s", c->name, state);
        else
            rp_log_error("config", "domain %s: revocation %s", c->name, state);
    }
    if (rc == RP_OK && c->allowlist && strcmp(c->allowlist, "redis") != 0) {
        struct rp_allowlist_names nm = {(const char *const *)c->anchor_names, c->anchor_names_count,
                                        d->qualified, RP_CFG_MAC_ANCHOR_NAME};
        char why[128] = "";
        rc = rp_allowlist_load_named(c->allowlist, &nm, &d->allowlist, why, sizeof why);
        if (rc != RP_OK && errs)
            fprintf(errs, "%s: cannot load the allowlist: %s\n", c->allowlist,
                    why[0] ? why : rp_err_msg(rc));
        else
            rp_log_info("config", "domain %s: %zu serials allowed", c->name,
                        rp_allowlist_count(d->allowlist));
    }
    if (rc == RP_OK && c->allowlist_consume && c->allowlist_state)
        rc = ra_claims_open(c->allowlist_state, &d->claims, errs);
    if (rc == RP_OK && c->mac_secrets)
        rc = load_secrets(c->mac_secrets, d, errs);
    for (unsigned i = 0; i < c->admins_count && rc == RP_OK; i++)
        rc = load_certs(c->admins[i], &d->admins, errs);
    if (rc == RP_OK)
        rc = ra_policy_load(c, d, errs);
    if (rc == RP_OK)
        rc = ra_pki_info_load(c, d, errs);
    return rc;
}

static void free_domain(struct ra_domain *d)
{
    list_free(&d->anchors);
    free(d->anchor_file);
    list_free(&d->intermediates);
    ra_policy_free(d->policy);
    ra_claims_close(d->claims);
    list_free(&d->crls);
    ra_trust_free(d->trust);
    rp_allowlist_free(d->allowlist);
    for (size_t i = 0; i < d->n_secrets; i++)
        secret_free(&d->secrets[i]);
    free(d->secrets);
    list_free(&d->admins);
    ra_pki_info_free(d->pki);
}

void ra_state_free(void *state)
{
    struct ra_state *s = state;
    if (!s)
        return;
    for (size_t i = 0; i < s->n_domains; i++)
        free_domain(&s->domains[i]);
    free(s->domains);
    if (s->has_ca_trust)
        free_domain(&s->ca);
    rp_ocsp_trust_unref(s->ocsp_trust);
    rp_privkey_free(s->ra.key);
    list_free(&s->ra.certs);
    free(s->ra.extra);
    free(s);
}

static void wolfssl_init_once(void)
{
    wolfSSL_Init();
}

int ra_state_build(const struct rp_config *cfg, struct ra_state **out, FILE *errs)
{
    /* Without a TLS listener nothing else initialises wolfSSL on the main thread, and two
     * workers starting it lazily at once race inside its RNG setup. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, wolfssl_init_once);
    struct ra_state *s = calloc(1, sizeof *s);
    if (!s)
        return RP_E_NOMEM;
    int rc = RP_OK;
    if (cfg->ra.key && cfg->ra.cert)
        rc = load_identity(&cfg->ra, &s->ra, errs);
    if (rc == RP_OK && cfg->domains_count) {
        s->domains = calloc(cfg->domains_count, sizeof *s->domains);
        if (!s->domains)
            rc = RP_E_NOMEM;
    }
    for (unsigned i = 0; rc == RP_OK && i < cfg->domains_count; i++) {
        s->n_domains++;
        rc = load_domain(&cfg->domains[i], &s->domains[i], errs);
    }
    if (rc == RP_OK && cfg->upstream.ca_trust) {
        /* the CA is judged like a domain with only anchors: any algorithm, RSA >= 2048 */
        static const struct rp_cfg_domain ca_policy = {.name = "upstream",
                                                       .rsa_min_bits = RP_DEF_RSA_MIN_BITS};
        s->has_ca_trust = true;
        s->ca.cfg = &ca_policy;
        s->ca.alg_mask = ~0u;
        rc = load_certs(cfg->upstream.ca_trust, &s->ca.anchors, errs);
        if (rc == RP_OK)
            rc = ra_trust_build(&s->ca.trust, "upstream", &s->ca.anchors, &s->ca.intermediates,
                                &s->ca.crls, NULL, false, errs);
        s->ca_signers = cfg->upstream.ca_signers;
        s->n_ca_signers = cfg->upstream.ca_signers_count;
    }
    if (rc != RP_OK) {
        ra_state_free(s);
        return rc;
    }
    if (s->ra.key) {
        export_not_after(s->ra.cert.not_after); /* the snapshot is complete: it goes live */
        ra_key_metrics_init();
    }
    *out = s;
    return RP_OK;
}

struct ra_domain *ra_state_domain(struct ra_state *s, const struct rp_cfg_domain *cfg)
{
    for (size_t i = 0; s && i < s->n_domains; i++)
        if (s->domains[i].cfg == cfg)
            return &s->domains[i];
    return NULL;
}

/* Direct-mapped: the key is a SHA-256, so its first bytes index evenly. */
static struct ra_chain_entry *cache_slot(struct ra_chain_cache *c, const uint8_t key[32])
{
    size_t i;
    memcpy(&i, key, sizeof i);
    return &c->slots[i % RA_CHAIN_CACHE_SLOTS];
}

bool ra_chain_cache_get(struct ra_chain_cache *c, const uint8_t key[32], int64_t now)
{
    struct ra_chain_entry *e = cache_slot(c, key);
    pthread_mutex_lock(&c->lock);
    bool hit = e->until > now && memcmp(e->key, key, 32) == 0;
    if (hit)
        c->hits++;
    else
        c->misses++;
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void ra_chain_cache_put(struct ra_chain_cache *c, const uint8_t key[32], int64_t until)
{
    struct ra_chain_entry *e = cache_slot(c, key);
    pthread_mutex_lock(&c->lock);
    memcpy(e->key, key, 32); /* direct-mapped: a colliding chain simply replaces it */
    e->until = until;
    pthread_mutex_unlock(&c->lock);
}

int ra_load_certs(const char *path, struct ra_der_list *l, FILE *errs)
{
    return load_certs(path, l, errs);
}

void ra_der_list_free(struct ra_der_list *l)
{
    list_free(l);
}

int ra_read_file(const char *path, uint8_t **out, size_t *len)
{
    return read_file(path, out, len);
}
