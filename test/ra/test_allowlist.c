#include "raproxy/allowlist.h"
#include "raproxy/err.h"
#include "support.h"

#include <criterion/criterion.h>
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
