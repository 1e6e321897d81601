/* Identity patterns (src/core/pattern.c): what --check-config accepts is what the RA fills. */
#include "raproxy/pattern.h"

#include <criterion/criterion.h>
#include <string.h>

static struct rp_view v(const char *s)
{
    return rp_view_str(s);
}

Test(pattern, a_subject_splits_into_labelled_values)
{
    struct rp_pattern_part p[RP_PATTERN_MAX_PARTS];
    size_t n;
    const char *why = NULL;
    cr_assert_eq(rp_pattern_subject_parse(" O=Operator ,CN=Device {serial}\\, {anchor} ,"
                                          "serialNumber={serial}",
                                          p, RP_PATTERN_MAX_PARTS, &n, &why),
                 0, "%s", why);
    cr_assert_eq(n, 3);
    cr_expect(rp_view_eq(p[0].label, v("O")));
    cr_expect(rp_view_eq(p[0].value, v("Operator")));
    cr_expect(rp_view_eq(p[1].value, v("Device {serial}\\, {anchor}")));
    cr_expect(rp_view_eq(p[2].label, v("serialNumber")));
    static const char *const bad[] = {"CN", "XX=1", "CN=", "CN={kid}", "CN=a}", "CN=a\\", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_neq(rp_pattern_subject_parse(bad[i], p, RP_PATTERN_MAX_PARTS, &n, &why), 0,
                      "'%s' accepted", bad[i]);
    cr_expect_neq(rp_pattern_subject_parse("C=a,C=b,C=c", p, 2, &n, &why), 0, "over the cap");
}

Test(pattern, placeholders_expand_from_the_identity)
{
    struct rp_pattern_vars vars = {v("SN0001"), v("Device 1"), v("acme")};
    char out[64];
    size_t len;
    const char *why = NULL;
    cr_assert_eq(
        rp_pattern_expand(v("{anchor}-{serial}\\,{cn}.x"), &vars, out, sizeof out, &len, &why), 0,
        "%s", why);
    cr_expect_str_eq(out, "acme-SN0001,Device 1.x");
    cr_expect_eq(len, strlen(out));
    struct rp_pattern_vars none = {v("SN0001"), RP_VIEW_NULL, RP_VIEW_NULL};
    cr_expect_neq(rp_pattern_expand(v("CN={cn}"), &none, out, sizeof out, &len, &why), 0,
                  "an identity without commonName");
    cr_expect_neq(rp_pattern_expand(v("{serial}{serial}{serial}"), &vars, out, 12, &len, &why), 0,
                  "longer than the buffer");
}
