#include "raproxy/allowlist.h"
#include "raproxy/err.h"
#include "support.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(allowlist, finds_listed_serials_ignoring_blanks_and_comments)
{
    const char text[] = "SN0001\n  SN0002 \r\n# a comment\nSN0003 # trailing\n\nSN0001\n";
    struct rp_allowlist *a;
    cr_assert_eq(rp_allowlist_from_buffer(text, sizeof text - 1, &a), RP_OK);
    cr_expect_eq(rp_allowlist_count(a), 3);
    cr_expect(rp_allowlist_contains(a, rp_view_str("SN0001")));
    cr_expect(rp_allowlist_contains(a, rp_view_str("SN0002")));
    cr_expect(rp_allowlist_contains(a, rp_view_str("SN0003")));
    cr_expect_not(rp_allowlist_contains(a, rp_view_str("SN000")));
    cr_expect_not(rp_allowlist_contains(a, rp_view_str("SN00011")));
    cr_expect_not(rp_allowlist_contains(a, rp_view_str("# a comment")));
    cr_expect_not(rp_allowlist_contains(a, rp_view_str("")));
    rp_allowlist_free(a);
}

Test(allowlist, loads_two_million_serials_from_a_file)
{
    char *dir = rpt_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/allow.txt", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 2000000; i++)
        fprintf(f, "SN%09d\n", i * 3);
    fclose(f);
    struct rp_allowlist *a;
    cr_assert_eq(rp_allowlist_load(path, &a), RP_OK);
    cr_expect_eq(rp_allowlist_count(a), 2000000);
    char s[32];
    int hits = 0;
    for (int i = 0; i < 30000; i++) {
        snprintf(s, sizeof s, "SN%09d", i);
        hits += rp_allowlist_contains(a, rp_view_str(s));
    }
    cr_expect_eq(hits, 10000);
    rp_allowlist_free(a);
    cr_expect_eq(rp_allowlist_load("/nonexistent/allow.txt", &a), RP_E_IO);
    rpt_rmdir(dir);
    free(dir);
}

static int load_named(const char *text, bool qualified, struct rp_allowlist **a, char *err,
                      size_t cap)
{
    static const char *const names[] = {"acme", "globex"};
    char *dir = rpt_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/allow.txt", dir);
    cr_assert_eq(rpt_write_file(path, text, strlen(text)), 0);
    struct rp_allowlist_names nm = {names, qualified ? 2 : 1, qualified, "mac"};
    int rc = rp_allowlist_load_named(path, &nm, a, err, cap);
    rpt_rmdir(dir);
    free(dir);
    return rc;
}

Test(allowlist, lines_are_keyed_by_anchor_in_a_domain_of_several_vendors)
{
    struct rp_allowlist *a;
    char err[128] = "";
    cr_assert_eq(
        load_named("acme SN0001\nglobex  SN0002 # note\nmac kid-1\n", true, &a, err, sizeof err),
        RP_OK, "%s", err);
    cr_expect(rp_allowlist_contains(a, rp_view_str("acme/SN0001")));
    cr_expect(rp_allowlist_contains(a, rp_view_str("globex/SN0002")));
    cr_expect(rp_allowlist_contains(a, rp_view_str("mac/kid-1")));
    cr_expect_not(rp_allowlist_contains(a, rp_view_str("globex/SN0001")), "another vendor's");
    cr_expect_not(rp_allowlist_contains(a, rp_view_str("SN0001")));
    rp_allowlist_free(a);
    cr_expect_eq(load_named("acme SN0001\nSN0002\n", true, &a, err, sizeof err), RP_E_CONFIG);
    cr_expect_str_eq(err, "line 2: the domain has several anchor names: write ANCHOR SERIAL");
    cr_expect_eq(load_named("initech SN0001\n", true, &a, err, sizeof err), RP_E_CONFIG);
    cr_expect_str_eq(err, "line 1: unknown anchor name");
    cr_expect_eq(load_named("acme SN0001 extra\n", true, &a, err, sizeof err), RP_E_CONFIG);
}

Test(allowlist, one_vendor_keeps_plain_serials)
{
    struct rp_allowlist *a;
    char err[128] = "";
    cr_assert_eq(load_named("SN0001\nacme SN0002\n", false, &a, err, sizeof err), RP_OK, "%s", err);
    cr_expect(rp_allowlist_contains(a, rp_view_str("SN0001")));
    cr_expect(rp_allowlist_contains(a, rp_view_str("SN0002")), "the domain's one anchor");
    cr_expect_eq(rp_allowlist_count(a), 2);
    rp_allowlist_free(a);
}
