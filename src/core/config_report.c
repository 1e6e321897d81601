/* Configuration problems, reported by key path: the map of key paths the file (or the
 * environment) set, with their lines, and the one writer of "FILE:LINE: KEY: message" lines.
 * A leaf: the YAML walk, the environment overrides, post-processing and the checks all call
 * into it, and it calls none of them. */
#include "config_internal.h"

#include <stdlib.h>
#include <string.h>

/* Key paths a load starts with room for; the map doubles from there. */
#define ENTS_INITIAL 64

struct core_cfg_ent *core_cfg_find(const struct core_cfg *x, const char *path)
{
    for (size_t i = 0; i < x->n_ents; i++)
        if (strcmp(x->ents[i].path, path) == 0)
            return &x->ents[i];
    return NULL;
}

struct core_cfg_ent *core_cfg_add(struct core_cfg *x, const char *path, unsigned line)
{
    struct core_cfg_ent *e = core_cfg_find(x, path);
    if (e)
        return e;
    if (x->n_ents == x->cap_ents) {
        size_t cap = x->cap_ents ? 2 * x->cap_ents : ENTS_INITIAL;
        struct core_cfg_ent *n = realloc(x->ents, cap * sizeof *n);
        if (!n) {
            x->oom = 1;
            return NULL;
        }
        x->ents = n;
        x->cap_ents = cap;
    }
    char *p = core_cfg_strdup(x, path);
    if (!p)
        return NULL;
    e = &x->ents[x->n_ents++];
    *e = (struct core_cfg_ent){.path = p, .line = line};
    return e;
}

int core_cfg_present(const struct core_cfg *x, const char *path)
{
    return core_cfg_find(x, path) != NULL;
}

void core_cfg_from_env(struct core_cfg *x, const char *path, const char *env)
{
    struct core_cfg_ent *e = core_cfg_add(x, path, 0);
    if (e)
        e->env = env;
}

void core_cfg_release(struct core_cfg *x)
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

static void report(struct core_cfg *x, const char *path, unsigned line, const char *fmt, va_list ap)
{
    x->problems++;
    if (!x->errs)
        return;
    const char *env = NULL;
    if (line == 0) {
        char p[RP_CFGX_PATH_MAX];
        core_cfg_key(p, "%s", path);
        do {
            const struct core_cfg_ent *e = core_cfg_find(x, p);
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

void core_cfg_problem(struct core_cfg *x, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(x, path, 0, fmt, ap);
    va_end(ap);
}

void core_cfg_problem_at(struct core_cfg *x, unsigned line, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(x, path, line, fmt, ap);
    va_end(ap);
}

void core_cfg_key(char *dst, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, RP_CFGX_PATH_MAX, fmt, ap);
    va_end(ap);
}

void core_cfg_join(char *dst, const char *a, const char *sep, const char *b)
{
    core_cfg_key(dst, "%s%s%s", a, *a ? sep : "", b);
}

char *core_cfg_strdup(struct core_cfg *x, const char *s)
{
    char *d = strdup(s);
    if (!d)
        x->oom = 1;
    return d;
}
