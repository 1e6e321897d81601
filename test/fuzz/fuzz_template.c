/* libFuzzer target: what a device asks for, as the RA reads it before judging a request —
 * Extensions, GeneralNames, keyUsage, extendedKeyUsage, basicConstraints, CSR attributes and
 * extensionRequest, POPOSigningKeyInput, Name attributes — and the identity patterns of the
 * configuration (the first byte picks the pattern variables). Seeds: the CertTemplates and
 * CSRs of test/corpus/ (ir.der, p10cr.der, kur.der) cut to their extension and name TLVs. */
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/ext.h"
#include "raproxy/pattern.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void values(struct rp_view v)
{
    struct rp_cmp_gname g[RP_EXT_MAX];
    struct rp_view oids[RP_EXT_MAX];
    size_t n;
    uint32_t bits;
    int ca;
    int64_t path;
    if (rp_ext_general_names(v, g, RP_EXT_MAX, &n) == 0)
        for (size_t i = 0; i < n; i++)
            (void)rp_ext_general_name_value(&g[i]);
    (void)rp_ext_key_usage(v, &bits);
    (void)rp_ext_eku(v, oids, RP_EXT_MAX, &n);
    (void)rp_ext_basic_constraints(v, &ca, &path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rp_view in = rp_view_make(data, size);
    struct rp_ext e[RP_EXT_MAX];
    struct rp_p10_attr at[RP_EXT_MAX];
    struct rp_name_attr na[64];
    struct rp_crmf_poposk_input pk;
    size_t n;
    if (rp_ext_list(in, e, RP_EXT_MAX, &n) == 0)
        for (size_t i = 0; i < n; i++)
            values(e[i].value);
    values(in);
    if (rp_p10_attrs(in, at, RP_EXT_MAX, &n) == 0)
        for (size_t i = 0; i < n; i++) {
            struct rp_view exts;
            size_t ne;
            if (rp_p10_ext_request(&at[i], &exts) == 0)
                (void)rp_ext_list(exts, e, RP_EXT_MAX, &ne);
        }
    (void)rp_crmf_poposk_input_parse(in, &pk);
    (void)rp_name_attrs(in, na, 64, &n);
    char *text = malloc(size + 1), out[RP_PATTERN_VALUE_MAX];
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct rp_pattern_part parts[RP_PATTERN_MAX_PARTS];
    const char *why;
    struct rp_pattern_vars vars = {rp_view_str("SN0001"),
                                   size && data[0] & 1 ? RP_VIEW_NULL : rp_view_str("cn"),
                                   rp_view_str("acme")};
    if (rp_pattern_subject_parse(text, parts, RP_PATTERN_MAX_PARTS, &n, &why) == 0)
        for (size_t i = 0; i < n; i++) {
            size_t len;
            (void)rp_pattern_expand(parts[i].value, &vars, out, sizeof out, &len, &why);
        }
    free(text);
    return 0;
}
