/* Configuration problems, reported by key path: the map of key paths the file (or the
 * environment) set, with their lines, and the one writer of "FILE:LINE: KEY: message" lines.
 * A leaf: the YAML walk, the environment overrides, post-processing and the checks all call
 * into it, and it calls none of them. */
#include "config_internal.h"

#include <stdlib.h>
#include <string.h>

/* Key paths a load starts with room for; the map doubles from there. */
#define ENTS_INITIAL 64

struct rp_cfgx_ent *rp_cfgx_find(const struct rp_cfgx *x, const char *path)
{
    for (size_t i = 0; i < x->n_ents; i++)
        if (strcmp(x->ents[i].path, path) == 0)
            return &x->ents[i];
    return NULL;
}

struct rp_cfgx_ent *rp_cfgx_add(struct rp_cfgx *x, const char *path, unsigned line)
{
    struct rp_cfgx_ent *e = rp_cfgx_find(x, path);
    if (e)
        return e;
    if (x->n_ents == x->cap_ents) {
        size_t cap = x->cap_ents ? 2 * x->cap_ents : ENTS_INITIAL;
        struct rp_cfgx_ent *n = realloc(x->ents, cap * sizeof *n);
        if (!n) {
            x->oom = 1;
            return NULL;
        }
        x->ents = n;
        x->cap_ents = cap;
    }
    char *p = strdup(path);
    if (!p) {
        x->oom = 1;
        return NULL;
    }
    e = &x->ents[x->n_ents++];
    *e = (struct rp_cfgx_ent){.path = p, .line = line};
    return e;
}

int rp_cfgx_present(const struct rp_cfgx *x, const char *path)
{
    return rp_cfgx_find(x, path) != NULL;
}

void rp_cfgx_from_env(struct rp_cfgx *x, const char *path, const char *env)
{
    struct rp_cfgx_ent *e = rp_cfgx_add(x, path, 0);
    if (e)
        e->env = env;
}

void rp_cfgx_release(struct rp_cfgx *x)
{
    for (size_t i = 0; i < x->n_ents; i++)
        free(x->ents[i].path);
    free(x->ents);
    x->ents = NULL;
    x->n_ents = x->cap_ents = 0;
}

/* Drop the last component: "a.b[2]" → "a.b" → "a" → "". */
static int path_parent(char *p)
{
    size_t n = strlen(p);
    if (n == 0)
        return 0;
    while (n > 0 && p[n - 1] != '.' && p[n - 1] != '[')
        n--;
    if (n > 0)
        n--; /* the separator itself */
    p[n] = 0;
    return 1;
}

static void report(struct rp_cfgx *x, const char *path, unsigned line, const char *fmt, va_list ap)
{
    x->problems++;
    if (!x->errs)
        return;
    const char *env = NULL;
    if (line == 0) {
        char p[RP_CFGX_PATH_MAX];
        rp_cfgx_key(p, "%s", path);
        do {
            const struct rp_cfgx_ent *e = rp_cfgx_find(x, p);
            if (e && (e->env || e->line)) {
                env = e->env;
                line = e->line;
                break;
            }
        } while (path_parent(p));
    }
    if (env)
        fprintf(x->errs, "environment %s: ", env);
    else
        fprintf(x->errs, "%s:%u: ", x->file, line ? line : 1);
    fprintf(x->errs, "%s: ", *path ? path : "(top level)");
    vfprintf(x->errs, fmt, ap);
    fputc('\n', x->errs);
}

void rp_cfgx_problem(struct rp_cfgx *x, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(x, path, 0, fmt, ap);
    va_end(ap);
}

void rp_cfgx_problem_at(struct rp_cfgx *x, unsigned line, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(x, path, line, fmt, ap);
    va_end(ap);
}

void rp_cfgx_key(char *dst, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, RP_CFGX_PATH_MAX, fmt, ap);
    va_end(ap);
}

void rp_cfgx_join(char *dst, const char *a, const char *sep, const char *b)
{
    rp_cfgx_key(dst, "%s%s%s", a, *a ? sep : "", b);
}

char *rp_cfgx_strdup(struct rp_cfgx *x, const char *s)
{
    char *d = strdup(s);
    if (!d)
        x->oom = 1;
    return d;
}
