/* Patterns the RA fills with a device's authenticated identity (template.subject,
 * template.san): text with placeholders {serial}, {cn} and {anchor}.
 *
 * A subject pattern is a comma-separated list of LABEL=VALUE in the order the RDNs are
 * written ("C=DE, O=Operator, CN=Device {serial}, serialNumber={serial}"); a comma or
 * backslash inside a value is written "\," or "\\". Blanks around labels and values are
 * ignored. Labels are those of RP_PATTERN_LABELS. Used by --check-config (core) and by the
 * RA when it builds a template (ra/policy.c), so both read a pattern the same way. */
#ifndef RAPROXY_PATTERN_H
#define RAPROXY_PATTERN_H

#include "raproxy/view.h"

#include <stddef.h>

/* Attribute labels a subject pattern (and template.bind / subject_attributes) may use. */
#define RP_PATTERN_LABELS                                                                          \
    "C", "ST", "L", "O", "OU", "CN", "serialNumber", "SN", "GN", "title", "dnQualifier",           \
        "emailAddress", "DC", "UID"
/* Most RDNs in a subject pattern, and most bytes of one expanded value. */
#define RP_PATTERN_MAX_PARTS 16
#define RP_PATTERN_VALUE_MAX 256

struct rp_pattern_part {
    struct rp_view label; /* into the pattern */
    struct rp_view value; /* into the pattern: still escaped, placeholders unexpanded */
};

/* What placeholders stand for (absent: a pattern naming it cannot be expanded). */
struct rp_pattern_vars {
    struct rp_view serial; /* the device serial (without the anchor name) */
    struct rp_view cn;     /* commonName of the authenticated subject */
    struct rp_view anchor; /* the trust anchor's name */
};

/* 1 when label is one of RP_PATTERN_LABELS. */
int rp_pattern_label_known(const char *label, size_t len);
/* Split a subject pattern. 0, or -1 with *why (unknown label, empty value, no '=', unknown
 * placeholder, too many parts). */
int rp_pattern_subject_parse(const char *s, struct rp_pattern_part *parts, size_t cap, size_t *n,
                             const char **why);
/* Check a value template: only known placeholders, balanced braces. 0 or -1 with *why. */
int rp_pattern_value_check(struct rp_view tmpl, const char **why);
/* Expand a value template into out[cap] (NUL-terminated); *len its length. 0, or -1 with
 * *why (a placeholder whose value is absent, result longer than cap - 1). */
int rp_pattern_expand(struct rp_view tmpl, const struct rp_pattern_vars *v, char *out, size_t cap,
                      size_t *len, const char **why);

#endif
