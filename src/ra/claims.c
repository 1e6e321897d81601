/* allowlist_consume for a file allowlist (README "Allowlists"): which serials a transaction
 * has claimed or consumed, in process, persisted to the domain's allowlist_state file so a
 * restart does not hand a serial out again.
 *
 * A claim is made on a crypto worker when the request verifies (written and fdatasync'ed
 * before the request is forwarded); it is settled when the CA answers: consumed (a
 * certificate was issued), released (the CA refused, or never answered), or kept (waiting,
 * the device polls). A claim that was never settled — the process died with the request at
 * the CA — stays: the serial is consumed, since the CA may have issued (fail closed).
 *
 * The table is process-wide per state file and shared by the snapshots that name it
 * (reference counted), so a reload neither forgets a claim in flight nor lets two tables
 * disagree. File format, one event per line, identities and tokens in hex:
 *   claim <id> <txid>    release <id> <txid>    consume <id> <txid>
 * It is compacted (rewritten with the live state) whenever it is opened. */
#include "ra.h"

#include "raproxy/admit.h"
#include "raproxy/err.h"
#include "raproxy/log.h"
#include "raproxy/view.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOKEN_MAX   (2 * RP_ADMIT_MAX_ID + 1)
#define ID_HEX_MAX  (2 * RP_ADMIT_MAX_SERIAL + 1)
#define LINE_MAX_   (16 + ID_HEX_MAX + TOKEN_MAX)
#define BUCKETS_MIN 1024u

enum claim_state { CLAIMED = 1, CONSUMED };

struct claim {
    struct claim *next;
    enum claim_state state;
    char token[TOKEN_MAX];
    size_t id_len;
    uint8_t id[];
};

struct ra_claims {
    struct ra_claims *next_open; /* the registry */
    unsigned refs;
    char *path;
    int fd;
    pthread_mutex_t lock;
    struct claim **buckets;
    size_t n_buckets, count;
};

static pthread_mutex_t g_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ra_claims *g_open;

static int from_hex(const char *s, uint8_t *out, size_t cap, size_t *n)
{
    size_t len = strlen(s);
    if (len % 2 || len / 2 > cap)
        return -1;
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    *n = len / 2;
    return 0;
}

static size_t bucket_of(const struct ra_claims *c, struct rp_view id)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < id.len; i++) {
        h ^= id.p[i];
        h *= 1099511628211ull;
    }
    return (size_t)(h % c->n_buckets);
}

static struct claim **find(struct ra_claims *c, struct rp_view id)
{
    struct claim **pp = &c->buckets[bucket_of(c, id)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->id_len == id.len && memcmp((*pp)->id, id.p, id.len) == 0)
            return pp;
    return pp;
}

static int grow(struct ra_claims *c)
{
    if (c->count < c->n_buckets)
        return RP_OK;
    size_t n = c->n_buckets ? c->n_buckets * 2 : BUCKETS_MIN;
    struct claim **nb = calloc(n, sizeof *nb);
    if (!nb)
        return RP_E_NOMEM;
    struct claim **old = c->buckets;
    size_t old_n = c->n_buckets;
    c->buckets = nb;
    c->n_buckets = n;
    for (size_t i = 0; i < old_n; i++)
        for (struct claim *e = old[i], *next; e; e = next) {
            next = e->next;
            struct claim **slot = &c->buckets[bucket_of(c, rp_view_make(e->id, e->id_len))];
            e->next = *slot;
            *slot = e;
        }
    free(old);
    return RP_OK;
}

static int put(struct ra_claims *c, struct rp_view id, const char *token, enum claim_state st)
{
    struct claim **pp = find(c, id);
    if (!*pp) {
        if (grow(c) != RP_OK)
            return RP_E_NOMEM;
        pp = find(c, id);
        struct claim *e = calloc(1, sizeof *e + id.len);
        if (!e)
            return RP_E_NOMEM;
        memcpy(e->id, id.p, id.len);
        e->id_len = id.len;
        *pp = e;
        c->count++;
    }
    (*pp)->state = st;
    snprintf((*pp)->token, sizeof(*pp)->token, "%s", token);
    return RP_OK;
}

static void drop(struct ra_claims *c, struct rp_view id)
{
    struct claim **pp = find(c, id);
    if (*pp) {
        struct claim *e = *pp;
        *pp = e->next;
        free(e);
        c->count--;
    }
}

/* One event line; sync: make it durable before returning (a claim, before forwarding). */
static int append(struct ra_claims *c, const char *what, struct rp_view id, const char *token,
                  bool sync)
{
    char line[LINE_MAX_], idhex[ID_HEX_MAX];
    rp_view_hex(id, idhex);
    int n = snprintf(line, sizeof line, "%s %s %s\n", what, idhex, token);
    if (n < 0 || (size_t)n >= sizeof line || write(c->fd, line, (size_t)n) != n ||
        (sync && fdatasync(c->fd) != 0)) {
        rp_log_error("allowlist_consume", "%s: cannot record a claim: %s", c->path,
                     strerror(errno));
        return RP_E_IO;
    }
    return RP_OK;
}

static int replay(struct ra_claims *c, FILE *f, FILE *errs)
{
    char line[LINE_MAX_ + 2], what[16], idhex[ID_HEX_MAX + 1], token[TOKEN_MAX + 1];
    unsigned lineno = 0;
    while (fgets(line, sizeof line, f)) {
        uint8_t id[RP_ADMIT_MAX_SERIAL];
        size_t n;
        lineno++;
        if (sscanf(line, "%15s %256s %128s", what, idhex, token) != 3 ||
            from_hex(idhex, id, sizeof id, &n) != 0) {
            /* a torn last line (a crash mid-write) is a claim that never completed */
            if (errs)
                fprintf(errs, "%s:%u: ignored a malformed line\n", c->path, lineno);
            continue;
        }
        struct rp_view v = rp_view_make(id, n);
        int rc = RP_OK;
        if (strcmp(what, "claim") == 0)
            rc = put(c, v, token, CLAIMED);
        else if (strcmp(what, "consume") == 0)
            rc = put(c, v, token, CONSUMED);
        else if (strcmp(what, "release") == 0)
            drop(c, v);
        if (rc != RP_OK)
            return rc;
    }
    return RP_OK;
}

/* Rewrites the file with the live state only, atomically (write, fsync, rename). */
static int compact(struct ra_claims *c)
{
    size_t n = strlen(c->path) + 8;
    char *tmp = malloc(n);
    if (!tmp)
        return RP_E_NOMEM;
    snprintf(tmp, n, "%s.tmp", c->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = fd < 0 ? RP_E_IO : RP_OK;
    c->fd = fd;
    for (size_t i = 0; rc == RP_OK && i < c->n_buckets; i++)
        for (struct claim *e = c->buckets[i]; e && rc == RP_OK; e = e->next)
            rc = append(c, e->state == CLAIMED ? "claim" : "consume",
                        rp_view_make(e->id, e->id_len), e->token, false);
    if (rc == RP_OK && (fsync(fd) != 0 || rename(tmp, c->path) != 0))
        rc = RP_E_IO;
    if (fd >= 0)
        close(fd);
    c->fd = -1;
    free(tmp);
    if (rc == RP_OK)
        c->fd = open(c->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    return rc == RP_OK && c->fd < 0 ? RP_E_IO : rc;
}

static void claims_free(struct ra_claims *c)
{
    for (size_t i = 0; i < c->n_buckets; i++)
        for (struct claim *e = c->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(c->buckets);
    if (c->fd >= 0)
        close(c->fd);
    pthread_mutex_destroy(&c->lock);
    free(c->path);
    free(c);
}

static int claims_load(const char *path, struct ra_claims **out, FILE *errs)
{
    struct ra_claims *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return RP_E_NOMEM;
    }
    c->fd = -1;
    pthread_mutex_init(&c->lock, NULL);
    int rc = grow(c);
    FILE *f = rc == RP_OK ? fopen(path, "r") : NULL;
    if (f) {
        rc = replay(c, f, errs);
        fclose(f);
    } else if (rc == RP_OK && errno != ENOENT) {
        rc = RP_E_IO;
    }
    if (rc == RP_OK)
        rc = compact(c);
    if (rc != RP_OK) {
        if (errs)
            fprintf(errs, "%s: cannot use the allowlist state file: %s\n", path, strerror(errno));
        claims_free(c);
        return rc;
    }
    rp_log_info("allowlist_consume", "%s: %zu serials claimed or consumed", path, c->count);
    *out = c;
    return RP_OK;
}

int ra_claims_open(const char *path, struct ra_claims **out, FILE *errs)
{
    pthread_mutex_lock(&g_registry_lock);
    struct ra_claims *c = g_open;
    while (c && strcmp(c->path, path) != 0)
        c = c->next_open;
    int rc = RP_OK;
    if (!c && (rc = claims_load(path, &c, errs)) == RP_OK) {
        c->next_open = g_open;
        g_open = c;
    }
    if (rc == RP_OK) {
        c->refs++;
        *out = c;
    }
    pthread_mutex_unlock(&g_registry_lock);
    return rc;
}

void ra_claims_close(struct ra_claims *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&g_registry_lock);
    bool last = --c->refs == 0;
    if (last)
        for (struct ra_claims **pp = &g_open; *pp; pp = &(*pp)->next_open)
            if (*pp == c) {
                *pp = c->next_open;
                break;
            }
    pthread_mutex_unlock(&g_registry_lock);
    if (last)
        claims_free(c);
}

int ra_claims_claim(struct ra_claims *c, struct rp_view id, struct rp_view txid, enum ra_claim *how)
{
    char token[TOKEN_MAX];
    if (id.len == 0 || id.len > RP_ADMIT_MAX_SERIAL || txid.len == 0 || txid.len > RP_ADMIT_MAX_ID)
        return RP_E_INVAL;
    rp_view_hex(txid, token);
    pthread_mutex_lock(&c->lock);
    struct claim *e = *find(c, id);
    int rc = RP_OK;
    if (e && e->state == CLAIMED && strcmp(e->token, token) == 0) {
        *how = RA_CLAIM_JOINED; /* a retry or a poll of the transaction that holds it */
    } else if (e) {
        rc = RP_E_NOT_AUTHORIZED;
    } else if ((rc = append(c, "claim", id, token, true)) == RP_OK &&
               (rc = put(c, id, token, CLAIMED)) == RP_OK) {
        *how = RA_CLAIM_CREATED;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void ra_claims_settle(struct ra_claims *c, struct rp_view id, struct rp_view txid, int how)
{
    char token[TOKEN_MAX];
    if (id.len == 0 || id.len > RP_ADMIT_MAX_SERIAL || txid.len == 0 ||
        txid.len > RP_ADMIT_MAX_ID || how == RP_ADMIT_KEEP)
        return;
    rp_view_hex(txid, token);
    pthread_mutex_lock(&c->lock);
    struct claim *e = *find(c, id);
    if (e && e->state == CLAIMED && strcmp(e->token, token) == 0) {
        /* not synced: a lost settle line leaves the serial claimed, which fails closed */
        if (how == RP_ADMIT_CONSUME) {
            append(c, "consume", id, token, false);
            e->state = CONSUMED;
        } else {
            append(c, "release", id, token, false);
            drop(c, id);
        }
    }
    pthread_mutex_unlock(&c->lock);
}
