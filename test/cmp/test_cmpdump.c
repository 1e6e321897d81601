/* raproxy-cmpdump over the real corpus: one valid JSON line per file, the right body type,
 * the fields an operator looks for, and a JSON error with the offset for broken input. */
#include "support.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_TIMEOUT_MS 30000
#define MAX_CORPUS     64
#define MAX_ARGS       (MAX_CORPUS + 2)

static char *dir;
static char tool[512], log_path[600];

static void setup(void)
{
    dir = rpt_tmpdir();
    snprintf(tool, sizeof tool, "%s/raproxy-cmpdump", rpt_bin());
    snprintf(log_path, sizeof log_path, "%s/out.jsonl", dir);
    FILE *f = fopen(tool, "rb");
    cr_assert_not_null(f, "%s not built (cmake --build ... --target raproxy-cmpdump)", tool);
    fclose(f);
}

static void teardown(void)
{
    rpt_rmdir(dir);
    free(dir);
}

TestSuite(cmpdump, .init = setup, .fini = teardown);

static char corpus_paths[MAX_CORPUS][1024];

/* Paths of every corpus *.der; returns the count. */
static size_t corpus(void)
{
    char cdir[512];
    snprintf(cdir, sizeof cdir, "%s/test/corpus", rpt_src());
    DIR *d = opendir(cdir);
    cr_assert_not_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".der") != 0)
            continue;
        cr_assert_lt(n, MAX_CORPUS);
        snprintf(corpus_paths[n++], sizeof corpus_paths[0], "%s/%s", cdir, e->d_name);
    }
    closedir(d);
    cr_assert_geq(n, 20);
    return n;
}

static int run(const char *const *files, size_t n)
{
    const char *argv[MAX_ARGS + 1];
    size_t k = 0;
    argv[k++] = tool;
    for (size_t i = 0; i < n && k < MAX_ARGS; i++)
        argv[k++] = files[i];
    argv[k] = NULL;
    return rpt_run(argv, RUN_TIMEOUT_MS, log_path);
}

/* The output line for the file whose path ends in `name` (malloc'ed), or NULL. */
static char *line_for(const char *name)
{
    size_t len;
    char *text = (char *)rpt_read_file(log_path, &len);
    cr_assert_not_null(text);
    char needle[256];
    snprintf(needle, sizeof needle, "/%s\"", name);
    char *hit = strstr(text, needle), *out = NULL;
    if (hit) {
        char *start = hit, *end = strchr(hit, '\n');
        while (start > text && start[-1] != '\n')
            start--;
        out = strndup(start, end ? (size_t)(end - start) : strlen(start));
    }
    free(text);
    return out;
}

static void assert_has(const char *name, const char *needle)
{
    char *line = line_for(name);
    cr_assert_not_null(line, "no output line for %s", name);
    cr_assert_not_null(strstr(line, needle), "%s: no %s in %s", name, needle, line);
    free(line);
}

Test(cmpdump, prints_one_json_object_per_corpus_file_with_its_body_type)
{
    size_t n = corpus();
    const char *files[MAX_CORPUS];
    for (size_t i = 0; i < n; i++)
        files[i] = corpus_paths[i];
    cr_assert_eq(run(files, n), 0);
    cr_assert_eq(rpt_file_count(log_path, "\n"), (int)n);
    for (size_t i = 0; i < n; i++) {
        const char *base = strrchr(files[i], '/') + 1;
        size_t plen = strcspn(base, "-.");
        char want[64];
        snprintf(want, sizeof want, "\"body\":\"%.*s\"", (int)plen, base);
        assert_has(base, want);
    }
    /* and every line is JSON to a real parser */
    char script[512], check_log[600];
    snprintf(script, sizeof script,
             "import json,sys\n"
             "lines=open(sys.argv[1]).read().splitlines()\n"
             "[json.loads(l) for l in lines]\n");
    snprintf(check_log, sizeof check_log, "%s/json.log", dir);
    const char *argv[] = {"/usr/bin/python3", "-c", script, log_path, NULL};
    cr_assert_eq(rpt_run(argv, RUN_TIMEOUT_MS, check_log), 0, "output is not JSON lines");
}

Test(cmpdump, shows_what_an_operator_looks_for)
{
    size_t n = corpus();
    const char *files[MAX_CORPUS];
    for (size_t i = 0; i < n; i++)
        files[i] = corpus_paths[i];
    cr_assert_eq(run(files, n), 0);
    assert_has("ir.der", "\"sender\":\"C=DE, O=Vendor, CN=Device 1, serialNumber=SN0001\"");
    assert_has("ir.der", "\"name\":\"ecdsa-with-SHA256\"");
    assert_has("ir.der", "\"pop\":\"signature\"");
    assert_has("ir.der", "\"certReqId\":0");
    assert_has("ir.der", "\"subject\":\"C=DE, O=Vendor, CN=Vendor ICA\"");
    assert_has("ir.der", "\"transactionID\":\"");
    assert_has("ir.der", "\"implicitConfirm\":false");
    assert_has("ir-implicit.der", "\"implicitConfirm\":true");
    assert_has("ir-mac.der", "\"name\":\"passwordBasedMac\"");
    assert_has("ir-mac.der", "\"senderKID\":\"6b69642d31\""); /* "kid-1" */
    assert_has("ir-ed25519.der", "\"name\":\"Ed25519\"");
    assert_has("ir-rsa.der", "serialNumber=SN0003");
    assert_has("ip.der", "\"caPubs\":[{\"subject\":\"O=Operator, CN=Operator Root CA\"");
    assert_has("ip.der", "\"status\":{\"status\":\"accepted\"}");
    assert_has("error.der", "\"status\":\"rejection\",\"failInfo\":[\"badRequest\"]");
    assert_has("pollRep.der", "\"checkAfter\":0");
    assert_has("rr.der", "\"reason\":1");
    assert_has("genm.der", "\"name\":\"signKeyPairTypes\"");
    assert_has("p10cr.der", "\"subject\":\"O=Operator, CN=Device 1, serialNumber=SN0001\"");
}

Test(cmpdump, truncated_message_gives_a_json_error_with_offset_and_exit_1)
{
    char src[600], bad[600];
    size_t len;
    snprintf(src, sizeof src, "%s/test/corpus/ir.der", rpt_src());
    snprintf(bad, sizeof bad, "%s/ir-truncated.der", dir);
    uint8_t *data = rpt_read_file(src, &len);
    cr_assert_not_null(data);
    cr_assert_eq(rpt_write_file(bad, data, len - 10), 0);
    free(data);
    const char *files[] = {src, bad};
    cr_assert_eq(run(files, 2), 1);
    cr_assert_eq(rpt_file_count(log_path, "\n"), 2);
    assert_has("ir.der", "\"body\":\"ir\"");
    assert_has("ir-truncated.der", "\"error\":\"DER_TRUNCATED\"");
    assert_has("ir-truncated.der", "\"offset\":");
}

Test(cmpdump, missing_file_is_an_io_error)
{
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nothing-here.der", dir);
    const char *files[] = {missing};
    cr_assert_eq(run(files, 1), 1);
    assert_has("nothing-here.der", "\"error\":\"IO\"");
}

Test(cmpdump, no_arguments_is_a_usage_error)
{
    cr_assert_eq(run(NULL, 0), 2);
}
