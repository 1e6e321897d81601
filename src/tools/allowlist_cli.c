/* `raproxy allowlist import|export|count` (see allowlist_cli.h). A one-shot tool, so it uses
 * synchronous hiredis; speed comes from pipelining: SADD with BATCH_MEMBERS members each,
 * PIPELINE_DEPTH of them in flight. */
#include "raproxy/allowlist_cli.h"

#include "raproxy/admit.h"
#include "raproxy/clock.h"
#include "raproxy/err.h"
#include "raproxy/redis.h"

#include <hiredis/hiredis.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define BATCH_MEMBERS   1000
#define PIPELINE_DEPTH  16
#define CONNECT_TIMEOUT 5  /* s */
#define COMMAND_TIMEOUT 30 /* s: one SADD batch or SSCAN page */
#define SCAN_COUNT      "10000"
#define KEY_CAP         512u
#define EXIT_FAIL       1
#define EXIT_USAGE      2
#define NS_PER_SEC      1e9

struct cli_opts {
    const char *cmd;
    const char *url;
    const char *domain;
    const char *prefix;
    const char *output;
    const char *file;
    char key[KEY_CAP];
};

static void usage(FILE *out)
{
    fprintf(out, "usage: raproxy allowlist import --redis URL --domain D [--key-prefix P] FILE|-\n"
                 "       raproxy allowlist export --redis URL --domain D [--key-prefix P]"
                 " [--output FILE]\n"
                 "       raproxy allowlist count  --redis URL --domain D [--key-prefix P]\n");
}

static int parse_args(int argc, char **argv, struct cli_opts *o)
{
    static const struct option longopts[] = {
        {"redis", required_argument, NULL, 'r'},
        {"domain", required_argument, NULL, 'd'},
        {"key-prefix", required_argument, NULL, 'p'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    if (argc < 2)
        return EXIT_USAGE;
    o->cmd = argv[1];
    /* parse argv[1..] as its own vector; optind = 0 fully resets GNU getopt between calls */
    argc--;
    argv++;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+r:d:p:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            o->url = optarg;
            break;
        case 'd':
            o->domain = optarg;
            break;
        case 'p':
            o->prefix = optarg;
            break;
        case 'o':
            o->output = optarg;
            break;
        default:
            return EXIT_USAGE;
        }
    }
    if (optind < argc)
        o->file = argv[optind++];
    bool import = strcmp(o->cmd, "import") == 0;
    if (!o->url || !o->domain || optind != argc || import != (o->file != NULL))
        return EXIT_USAGE;
    if (rp_admit_allowlist_key(o->key, sizeof o->key, o->prefix, o->domain) < 0)
        return EXIT_USAGE;
    return 0;
}

static bool reply_ok(redisContext *c, redisReply *rep, const char *what)
{
    if (!rep) {
        fprintf(stderr, "allowlist: %s: %s\n", what, c->errstr);
        return false;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "allowlist: %s: %s\n", what, rep->str);
        freeReplyObject(rep);
        return false;
    }
    return true;
}

static redisContext *connect_redis(const char *url)
{
    struct rp_redis_url u;
    if (rp_redis_url_parse(url, &u) != RP_OK) {
        fprintf(stderr, "allowlist: bad --redis URL\n");
        return NULL;
    }
    struct timeval ct = {.tv_sec = CONNECT_TIMEOUT}, rt = {.tv_sec = COMMAND_TIMEOUT};
    redisContext *c = u.path ? redisConnectUnixWithTimeout(u.path, ct)
                             : redisConnectWithTimeout(u.host, u.port, ct);
    if (!c || c->err) {
        fprintf(stderr, "allowlist: cannot connect to redis: %s\n", c ? c->errstr : "no memory");
        goto fail;
    }
    redisSetTimeout(c, rt);
    redisReply *rep = NULL;
    if (u.pass) {
        rep = u.user ? redisCommand(c, "AUTH %s %s", u.user, u.pass)
                     : redisCommand(c, "AUTH %s", u.pass);
        if (!reply_ok(c, rep, "AUTH"))
            goto fail;
        freeReplyObject(rep);
    }
    if (u.db) {
        rep = redisCommand(c, "SELECT %d", u.db);
        if (!reply_ok(c, rep, "SELECT"))
            goto fail;
        freeReplyObject(rep);
    }
    return c;
fail:
    if (c)
        redisFree(c);
    return NULL;
}

/* ---- import ----------------------------------------------------------------------------- */

struct importer {
    redisContext *c;
    const char *key;
    int inflight;
    long long added;
    bool failed;
    /* the batch being filled: argv[0] SADD, argv[1] key, then members (malloc'ed lines) */
    const char *argv[BATCH_MEMBERS + 2];
    size_t argvlen[BATCH_MEMBERS + 2];
    char *lines[BATCH_MEMBERS];
    int n;
};

static bool read_one(struct importer *im)
{
    redisReply *rep = NULL;
    if (redisGetReply(im->c, (void **)&rep) != REDIS_OK || !reply_ok(im->c, rep, "SADD")) {
        im->failed = true;
        return false;
    }
    if (rep->type == REDIS_REPLY_INTEGER)
        im->added += rep->integer;
    freeReplyObject(rep);
    im->inflight--;
    return true;
}

static bool flush_batch(struct importer *im)
{
    if (im->n == 0)
        return true;
    im->argv[0] = "SADD";
    im->argvlen[0] = 4;
    im->argv[1] = im->key;
    im->argvlen[1] = strlen(im->key);
    /* the command is formatted (copied) into hiredis' output buffer here */
    int rc = redisAppendCommandArgv(im->c, im->n + 2, im->argv, im->argvlen);
    for (int i = 0; i < im->n; i++)
        free(im->lines[i]);
    im->n = 0;
    if (rc != REDIS_OK) {
        fprintf(stderr, "allowlist: %s\n", im->c->errstr);
        im->failed = true;
        return false;
    }
    im->inflight++;
    return im->inflight < PIPELINE_DEPTH || read_one(im);
}

/* The identity a line stands for: "SERIAL", or "ANCHOR SERIAL" as "ANCHOR/SERIAL" (README
 * "Identities"). Trims blanks; NULL for blank lines and comments. */
static char *serial_of(char *line, size_t *len)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                 line[n - 1] == '\t'))
        n--;
    line[n] = '\0';
    while (*line == ' ' || *line == '\t') {
        line++;
        n--;
    }
    if (n == 0 || *line == '#')
        return NULL;
    char *gap = strpbrk(line, " \t");
    if (gap) {
        char *serial = gap + strspn(gap, " \t");
        *gap = '/';
        memmove(gap + 1, serial, strlen(serial) + 1);
        n = strlen(line);
    }
    *len = n;
    return line;
}

static int cmd_import(redisContext *c, const struct cli_opts *o)
{
    FILE *in = strcmp(o->file, "-") == 0 ? stdin : fopen(o->file, "r");
    if (!in) {
        perror(o->file);
        return EXIT_FAIL;
    }
    struct importer *im = calloc(1, sizeof *im);
    if (!im) {
        if (in != stdin)
            fclose(in);
        return EXIT_FAIL;
    }
    im->c = c;
    im->key = o->key;
    uint64_t t0 = rp_clock_ns();
    long long total = 0, skipped = 0;
    char *line = NULL;
    size_t cap = 0;
    while (!im->failed && getline(&line, &cap, in) != -1) {
        size_t len;
        char *s = serial_of(line, &len);
        if (!s)
            continue;
        if (len > RP_ADMIT_MAX_SERIAL) {
            skipped++;
            continue;
        }
        char *copy = strndup(s, len);
        if (!copy) {
            im->failed = true;
            break;
        }
        im->lines[im->n] = copy;
        im->argv[im->n + 2] = copy;
        im->argvlen[im->n + 2] = len;
        im->n++;
        total++;
        if (im->n == BATCH_MEMBERS)
            flush_batch(im);
    }
    free(line);
    if (!im->failed)
        flush_batch(im);
    while (!im->failed && im->inflight > 0)
        read_one(im);
    for (int i = 0; i < im->n; i++)
        free(im->lines[i]);
    if (in != stdin)
        fclose(in);
    int rc = im->failed ? EXIT_FAIL : 0;
    if (rc == 0)
        printf("imported %lld (%lld new, %lld skipped) in %.2f s\n", total, im->added, skipped,
               (double)(rp_clock_ns() - t0) / NS_PER_SEC);
    free(im);
    return rc;
}

/* ---- export and count --------------------------------------------------------------------- */

static int cmd_export(redisContext *c, const struct cli_opts *o)
{
    FILE *out = o->output ? fopen(o->output, "w") : stdout;
    if (!out) {
        perror(o->output);
        return EXIT_FAIL;
    }
    int rc = 0;
    char cursor[32] = "0";
    do {
        const char *argv[] = {"SSCAN", o->key, cursor, "COUNT", SCAN_COUNT};
        redisReply *rep = redisCommandArgv(c, 5, argv, NULL);
        if (!reply_ok(c, rep, "SSCAN")) {
            rc = EXIT_FAIL;
            break;
        }
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING || rep->element[0]->len >= sizeof cursor) {
            fprintf(stderr, "allowlist: unexpected SSCAN reply\n");
            freeReplyObject(rep);
            rc = EXIT_FAIL;
            break;
        }
        memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
        cursor[rep->element[0]->len] = '\0';
        const redisReply *members = rep->element[1];
        for (size_t i = 0; i < members->elements; i++) {
            fwrite(members->element[i]->str, 1, members->element[i]->len, out);
            fputc('\n', out);
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
    if (fflush(out) != 0)
        rc = EXIT_FAIL;
    if (out != stdout && fclose(out) != 0)
        rc = EXIT_FAIL;
    return rc;
}

static int cmd_count(redisContext *c, const struct cli_opts *o)
{
    const char *argv[] = {"SCARD", o->key};
    redisReply *rep = redisCommandArgv(c, 2, argv, NULL);
    if (!reply_ok(c, rep, "SCARD"))
        return EXIT_FAIL;
    printf("%lld\n", rep->integer);
    freeReplyObject(rep);
    return 0;
}

int rp_allowlist_cli(int argc, char **argv)
{
    struct cli_opts o;
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    int (*run)(redisContext *, const struct cli_opts *) = strcmp(o.cmd, "import") == 0 ? cmd_import
                                                          : strcmp(o.cmd, "export") == 0
                                                              ? cmd_export
                                                          : strcmp(o.cmd, "count") == 0 ? cmd_count
                                                                                        : NULL;
    if (!run) {
        usage(stderr);
        return EXIT_USAGE;
    }
    redisContext *c = connect_redis(o.url);
    if (!c)
        return EXIT_FAIL;
    int rc = run(c, &o);
    redisFree(c);
    fflush(stdout);
    return rc;
}
