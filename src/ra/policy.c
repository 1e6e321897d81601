/* The template policy of a domain (README "Template policy"): what a verified device may
 * ask the CA for, on a crypto worker after its proof of possession and authorization.
 *
 * EJBCA in RA mode issues what the RA signs, so every field of a certificate request that
 * reaches the CA under the RA's signature is either proven here or written here:
 * - the subject is the authenticated identity: checked (`check`: bound attributes equal the
 *   identity's, other attributes from a list) or written by the RA from a pattern
 *   (`rewrite`, RFC 9483 §5.2.3.2: then the RA, having checked the POP itself, forwards
 *   raVerified);
 * - extensions come from allowlists (subjectAltName types and values, keyUsage bits,
 *   extendedKeyUsage purposes, basicConstraints without cA); anything else is refused;
 * - validity is dropped (the CA's profile decides) or kept within max_validity_days;
 * - fields a device never sets (serialNumber, signingAlg, unique identifiers, regInfo,
 *   controls other than oldCertID and protocolEncrKey) are refused;
 * - generalInfo certProfile values come from a list; at most max_requests CertReqMsg;
 * - kur keeps the subject of the certificate it renews; p10cr's CSR (which the RA cannot
 *   change) is held to the check rules in both modes.
 * Every refusal here is badCertTemplate, except too many requests and unaccepted controls
 * (badRequest). */
#include "ra.h"

#include "raproxy/cert.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/der.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"
#include "raproxy/ext.h"
#include "raproxy/pattern.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(err, text)                                                                            \
    do {                                                                                           \
        *why = (text);                                                                             \
        return (err);                                                                              \
    } while (0)

#define SECS_PER_DAY 86400
#define MAX_ATTRS    64 /* attributes of one subject judged */
#define OID_MAX      32 /* bytes of one configured EKU OID */
#define NAME_ATTRS   16 /* subject attribute labels */
#define KU_MAX_BIT   9u
#define CRL_REASONS  11u

/* GeneralName choices (RFC 5280 §4.2.1.6). */
enum { GN_EMAIL = 1, GN_DNS = 2, GN_DIRNAME = 4, GN_URI = 6, GN_IP = 7, GN_RID = 8 };

#define OID_CERT_PROFILE "\x2b\x06\x01\x05\x05\x07\x04\x15"     /* id-it-certProfile */
#define OID_PROTO_ENCR   "\x2b\x06\x01\x05\x05\x07\x05\x01\x06" /* id-regCtrl-protocolEncrKey */
#define OID_EXT_REQUEST  "\x2a\x86\x48\x86\xf7\x0d\x01\x09\x0e" /* PKCS#9 extensionRequest */
#define OID_KP_PREFIX    "\x2b\x06\x01\x05\x05\x07\x03"         /* id-kp */

struct pattern_part {
    struct rp_view oid;
    uint8_t tag;
    struct rp_view value; /* into the configuration string */
};

struct san_pattern {
    unsigned choice;
    struct rp_view value;
};

struct ra_policy {
    enum rp_template_mode mode;
    struct rp_view bind[NAME_ATTRS];
    size_t n_bind;
    struct rp_view attrs[NAME_ATTRS];
    size_t n_attrs;
    struct pattern_part subject[RP_PATTERN_MAX_PARTS];
    size_t n_subject;
    struct san_pattern san[RP_EXT_MAX];
    size_t n_san;
    uint32_t san_types; /* bit per GeneralName choice */
    uint32_t key_usage; /* RP_KU_* */
    uint8_t eku_der[RP_EXT_MAX][OID_MAX];
    struct rp_view eku[RP_EXT_MAX];
    size_t n_eku;
    uint32_t reasons; /* bit per CRLReason a device may use */
};

/* ---- loading ------------------------------------------------------------------------ */

static const char *const default_attrs[] = {"C", "ST", "L", "O", "OU", "CN", "serialNumber"};
static const char *const default_bind[] = {"serialNumber"};
static const char *const default_reasons[] = {"unspecified", "keyCompromise", "affiliationChanged",
                                              "superseded", "cessationOfOperation"};
/* CRLReason values by name (RFC 5280 §5.3.1; 7 unused). */
static const char *const reason_names[CRL_REASONS] = {
    "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
    "superseded",    "cessationOfOperation", "certificateHold", NULL,
    "removeFromCRL", "privilegeWithdrawn",   "aACompromise"};
static const char *const ku_names[KU_MAX_BIT] = {"digitalSignature",
                                                 "nonRepudiation",
                                                 "keyEncipherment",
                                                 "dataEncipherment",
                                                 "keyAgreement",
                                                 NULL,
                                                 NULL,
                                                 "encipherOnly",
                                                 "decipherOnly"};
static const struct {
    const char *name;
    uint8_t last;
} eku_names[] = {{"serverAuth", 1},      {"clientAuth", 2},   {"codeSigning", 3},
                 {"emailProtection", 4}, {"timeStamping", 8}, {"OCSPSigning", 9}};
static const struct {
    const char *name;
    unsigned choice;
} san_types[] = {{"email", GN_EMAIL}, {"dns", GN_DNS}, {"dirName", GN_DIRNAME},
                 {"uri", GN_URI},     {"ip", GN_IP},   {"rid", GN_RID}};

static int labels_to_oids(char *const *v, unsigned n, const char *const *def, size_t n_def,
                          bool given, struct rp_view *out, size_t *count)
{
    size_t k = given ? n : n_def;
    *count = 0;
    for (size_t i = 0; i < k && *count < NAME_ATTRS; i++)
        if (rp_name_attr_oid(given ? v[i] : def[i], &out[*count], NULL) == RP_OK)
            (*count)++;
        else
            return RP_E_CONFIG;
    return RP_OK;
}

/* Dotted OID to DER content octets (base-128 arcs, the first two combined). */
static int oid_from_dotted(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    uint64_t arcs[OID_MAX];
    size_t n = 0;
    for (const char *p = s; *p && n < OID_MAX;) {
        char *end;
        arcs[n++] = strtoull(p, &end, 10);
        p = *end == '.' ? end + 1 : end;
        if (end == p && *p)
            return RP_E_CONFIG;
    }
    if (n < 2 || arcs[0] > 2)
        return RP_E_CONFIG;
    *len = 0;
    for (size_t i = 1; i < n; i++) {
        uint64_t v = i == 1 ? arcs[0] * 40 + arcs[1] : arcs[i];
        uint8_t tmp[10];
        size_t k = 0;
        do {
            tmp[k++] = (uint8_t)(v & 0x7f);
            v >>= 7;
        } while (v);
        if (*len + k > cap)
            return RP_E_CONFIG;
        while (k--)
            out[(*len)++] = (uint8_t)(tmp[k] | (k ? 0x80 : 0));
    }
    return RP_OK;
}

static int load_eku(struct ra_policy *p, const struct rp_cfg_template *t)
{
    for (unsigned i = 0; i < t->extended_key_usage_count && p->n_eku < RP_EXT_MAX; i++) {
        const char *e = t->extended_key_usage[i];
        size_t len = 0;
        uint8_t *der = p->eku_der[p->n_eku];
        for (size_t k = 0; k < sizeof eku_names / sizeof eku_names[0] && !len; k++)
            if (strcmp(e, eku_names[k].name) == 0) {
                len = sizeof OID_KP_PREFIX;
                memcpy(der, OID_KP_PREFIX, len - 1);
                der[len - 1] = eku_names[k].last;
            }
        if (!len && oid_from_dotted(e, der, OID_MAX, &len) != RP_OK)
            return RP_E_CONFIG;
        p->eku[p->n_eku++] = rp_view_make(der, len);
    }
    return RP_OK;
}

static int load_patterns(struct ra_policy *p, const struct rp_cfg_template *t, const char **why)
{
    struct rp_pattern_part parts[RP_PATTERN_MAX_PARTS];
    size_t n = 0;
    if (t->subject && rp_pattern_subject_parse(t->subject, parts, RP_PATTERN_MAX_PARTS, &n, why))
        return RP_E_CONFIG;
    for (size_t i = 0; i < n; i++) {
        char label[32];
        snprintf(label, sizeof label, "%.*s", (int)parts[i].label.len,
                 (const char *)parts[i].label.p);
        struct pattern_part *pp = &p->subject[p->n_subject++];
        if (rp_name_attr_oid(label, &pp->oid, &pp->tag) != RP_OK) {
            *why = "subject: attribute label unknown to the encoder";
            return RP_E_CONFIG;
        }
        pp->value = parts[i].value;
    }
    for (unsigned i = 0; i < t->san_count && p->n_san < RP_EXT_MAX; i++) {
        const char *v = t->san[i], *colon = strchr(v, ':');
        unsigned choice = strncmp(v, "dns:", 4) == 0   ? GN_DNS
                          : strncmp(v, "uri:", 4) == 0 ? GN_URI
                                                       : GN_EMAIL;
        p->san[p->n_san++] = (struct san_pattern){choice, rp_view_str(colon + 1)};
    }
    return RP_OK;
}

static uint32_t name_mask(char *const *v, unsigned n, const char *const *names, size_t count)
{
    uint32_t m = 0;
    for (unsigned i = 0; i < n; i++)
        for (size_t k = 0; k < count; k++)
            if (names[k] && strcmp(v[i], names[k]) == 0)
                m |= 1u << k;
    return m;
}

int ra_policy_load(const struct rp_cfg_domain *c, struct ra_domain *d, FILE *errs)
{
    const struct rp_cfg_template *t = &c->tmpl;
    struct ra_policy *p = calloc(1, sizeof *p);
    const char *why = "bad attribute label";
    if (!p)
        return RP_E_NOMEM;
    d->policy = p;
    p->mode = t->mode;
    int rc =
        labels_to_oids(t->bind, t->bind_count, default_bind, 1, t->bind_given, p->bind, &p->n_bind);
    if (rc == RP_OK)
        rc = labels_to_oids(t->subject_attributes, t->subject_attributes_count, default_attrs,
                            sizeof default_attrs / sizeof default_attrs[0],
                            t->subject_attributes_given, p->attrs, &p->n_attrs);
    if (rc == RP_OK)
        rc = load_patterns(p, t, &why);
    if (rc == RP_OK && (rc = load_eku(p, t)) != RP_OK)
        why = "extended_key_usage: not a purpose name or dotted OID";
    for (unsigned i = 0; i < t->san_types_count; i++)
        for (size_t k = 0; k < sizeof san_types / sizeof san_types[0]; k++)
            if (strcmp(t->san_types[i], san_types[k].name) == 0)
                p->san_types |= 1u << san_types[k].choice;
    p->key_usage = name_mask(t->key_usage, t->key_usage_count, ku_names, KU_MAX_BIT);
    p->reasons = c->rr_reasons_given
                     ? name_mask(c->rr_reasons, c->rr_reasons_count, reason_names, CRL_REASONS)
                     : name_mask((char *const *)default_reasons,
                                 sizeof default_reasons / sizeof default_reasons[0], reason_names,
                                 CRL_REASONS);
    if (rc != RP_OK && errs)
        fprintf(errs, "domain %s: template: %s\n", c->name, why);
    return rc;
}

void ra_policy_free(struct ra_policy *p)
{
    free(p);
}

bool ra_policy_rr_reason_ok(const struct ra_domain *d, int reason, bool admin)
{
    if (admin)
        return true;
    unsigned r = reason == RP_CRL_REASON_NONE ? 0u : (unsigned)reason;
    return r < CRL_REASONS && (d->policy->reasons & (1u << r));
}

int ra_policy_name_from_text(const char *text, uint8_t **der, size_t *len, const char **why)
{
    struct rp_pattern_part parts[RP_PATTERN_MAX_PARTS];
    struct rp_name_attr attrs[RP_PATTERN_MAX_PARTS];
    char values[RP_PATTERN_MAX_PARTS][RP_PATTERN_VALUE_MAX];
    size_t n;
    struct rp_pattern_vars none = {RP_VIEW_NULL, RP_VIEW_NULL, RP_VIEW_NULL};
    if (rp_pattern_subject_parse(text, parts, RP_PATTERN_MAX_PARTS, &n, why) != 0)
        return RP_E_CONFIG;
    for (size_t i = 0; i < n; i++) {
        char label[32];
        size_t vlen;
        snprintf(label, sizeof label, "%.*s", (int)parts[i].label.len,
                 (const char *)parts[i].label.p);
        if (rp_name_attr_oid(label, &attrs[i].type, &attrs[i].tag) != RP_OK ||
            rp_pattern_expand(parts[i].value, &none, values[i], sizeof values[i], &vlen, why))
            return RP_E_CONFIG;
        attrs[i].value = rp_view_make(values[i], vlen);
        attrs[i].multi = 0;
    }
    struct rp_arena a;
    struct rp_view out;
    if (rp_arena_new(&a, 4096) != RP_OK)
        return RP_E_NOMEM;
    int rc = rp_name_encode(&a, attrs, n, &out);
    if (rc == RP_OK && (*der = malloc(out.len)) != NULL) {
        memcpy(*der, out.p, out.len);
        *len = out.len;
    } else {
        *why = rc == RP_OK ? "out of memory" : "a value does not fit its attribute's string type";
        rc = rc == RP_OK ? RP_E_NOMEM : RP_E_CONFIG;
    }
    rp_arena_free(&a);
    return rc;
}

/* ---- judging a request ---------------------------------------------------------------- */

struct judge {
    struct ra_exchange *rx;
    const struct ra_policy *p;
    struct rp_pattern_vars vars;
    const char **why;
};

static bool oid_in(struct rp_view oid, const struct rp_view *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rp_view_eq(oid, set[i]))
            return true;
    return false;
}

/* The value the identity has for a bound attribute: its serial for serialNumber, else the
 * attribute of its authenticated subject. */
static struct rp_view identity_value(const struct judge *j, struct rp_view oid)
{
    struct rp_view v = RP_VIEW_NULL;
    if (rp_oid_is(oid, RP_OID_AT_SERIAL))
        return j->rx->dev_serial;
    if (rp_view_present(j->rx->subject) && rp_name_find(j->rx->subject, oid, &v) != 1)
        v = RP_VIEW_NULL;
    return v;
}

/* A MAC kid with subject= may ask for exactly that subject (attribute by attribute, any
 * string type). */
static bool same_attrs(struct rp_view a, struct rp_view b)
{
    struct rp_name_attr x[MAX_ATTRS], y[MAX_ATTRS];
    size_t nx, ny;
    if (rp_name_attrs(a, x, MAX_ATTRS, &nx) != RP_OK ||
        rp_name_attrs(b, y, MAX_ATTRS, &ny) != RP_OK || nx != ny)
        return false;
    for (size_t i = 0; i < nx; i++)
        if (!rp_view_eq(x[i].type, y[i].type) || !rp_view_eq(x[i].value, y[i].value))
            return false;
    return true;
}

/* check: the requested subject carries the identity. */
static int check_subject(const struct judge *j, struct rp_view subject)
{
    const char **why = j->why;
    const struct ra_policy *p = j->p;
    struct rp_name_attr attrs[MAX_ATTRS];
    size_t n = 0;
    if (!rp_view_present(subject) || rp_name_attrs(subject, attrs, MAX_ATTRS, &n) != RP_OK ||
        n == 0)
        FAIL(RP_E_BAD_CERT_TEMPLATE, "the request names no subject");
    if (j->rx->mac_id && j->rx->mac_id->subject_der) {
        if (!same_attrs(subject, j->rx->subject))
            FAIL(RP_E_BAD_CERT_TEMPLATE, "subject is not the one this senderKID may ask for");
        return RP_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (!oid_in(attrs[i].type, p->attrs, p->n_attrs))
            FAIL(RP_E_BAD_CERT_TEMPLATE, "the subject holds an attribute that is not accepted");
    for (size_t b = 0; b < p->n_bind; b++) {
        struct rp_view want = identity_value(j, p->bind[b]);
        size_t seen = 0;
        for (size_t i = 0; i < n; i++) {
            if (!rp_view_eq(attrs[i].type, p->bind[b]))
                continue;
            seen++;
            if (!rp_view_present(want) || !rp_view_eq(attrs[i].value, want))
                FAIL(RP_E_BAD_CERT_TEMPLATE,
                     "the subject names another identity than the authenticated one");
        }
        if (!seen)
            FAIL(RP_E_BAD_CERT_TEMPLATE,
                 "the subject lacks an attribute bound to the authenticated identity");
    }
    return RP_OK;
}

/* One expanded SAN pattern, as the GeneralName content it stands for. */
static int expand_san(const struct judge *j, const struct san_pattern *sp, char *buf, size_t cap,
                      struct rp_view *out)
{
    size_t len;
    const char **why = j->why;
    if (rp_pattern_expand(sp->value, &j->vars, buf, cap, &len, why) != 0)
        return RP_E_BAD_CERT_TEMPLATE;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        bool ok = c > 0x20 && c < 0x7f;
        if (sp->choice == GN_DNS)
            ok = isalnum(c) || c == '-' || c == '.';
        if (!ok)
            FAIL(RP_E_BAD_CERT_TEMPLATE, "the identity does not fit the SAN pattern");
    }
    *out = rp_view_make(buf, len);
    return RP_OK;
}

static int check_san(const struct judge *j, struct rp_view value)
{
    const char **why = j->why;
    struct rp_cmp_gname g[RP_EXT_MAX];
    size_t n;
    if (rp_ext_general_names(value, g, RP_EXT_MAX, &n) != RP_OK)
        FAIL(RP_E_BAD_CERT_TEMPLATE, "malformed subjectAltName");
    for (size_t i = 0; i < n; i++) {
        if (g[i].choice > 31 || !(j->p->san_types & (1u << g[i].choice)))
            FAIL(RP_E_BAD_CERT_TEMPLATE, "subjectAltName of a type that is not accepted");
        if (!j->p->n_san)
            continue;
        struct rp_view have = rp_ext_general_name_value(&g[i]);
        bool match = false;
        for (size_t k = 0; k < j->p->n_san && !match; k++) {
            char buf[RP_PATTERN_VALUE_MAX];
            struct rp_view want;
            match = j->p->san[k].choice == g[i].choice &&
                    expand_san(j, &j->p->san[k], buf, sizeof buf, &want) == RP_OK &&
                    rp_view_eq(have, want);
        }
        if (!match)
            FAIL(RP_E_BAD_CERT_TEMPLATE, "subjectAltName is not one the identity may have");
    }
    return RP_OK;
}

/* Every extension against the allowlists. `skip_san`: rewrite replaces it anyway. */
static int check_extensions(const struct judge *j, struct rp_view exts_tlv, bool skip_san)
{
    const char **why = j->why;
    struct rp_ext e[RP_EXT_MAX];
    size_t n = 0;
    if (!rp_view_present(exts_tlv))
        return RP_OK;
    if (rp_ext_list(exts_tlv, e, RP_EXT_MAX, &n) != RP_OK)
        FAIL(RP_E_BAD_CERT_TEMPLATE, "malformed extensions");
    for (size_t i = 0; i < n; i++) {
        struct rp_view oid = e[i].oid;
        int rc = RP_OK;
        if (rp_oid_is(oid, RP_OID_CE_SAN)) {
            if (!skip_san)
                rc = check_san(j, e[i].value);
        } else if (rp_oid_is(oid, RP_OID_CE_KEY_USAGE)) {
            uint32_t bits;
            if (rp_ext_key_usage(e[i].value, &bits) != RP_OK || (bits & ~j->p->key_usage))
                FAIL(RP_E_BAD_CERT_TEMPLATE, "keyUsage asks for a usage that is not accepted");
        } else if (rp_oid_is(oid, RP_OID_CE_EXT_KEY_USE)) {
            struct rp_view purposes[RP_EXT_MAX];
            size_t np;
            if (rp_ext_eku(e[i].value, purposes, RP_EXT_MAX, &np) != RP_OK)
                FAIL(RP_E_BAD_CERT_TEMPLATE, "malformed extendedKeyUsage");
            for (size_t k = 0; k < np; k++)
                if (!oid_in(purposes[k], j->p->eku, j->p->n_eku))
                    FAIL(RP_E_BAD_CERT_TEMPLATE,
                         "extendedKeyUsage asks for a purpose that is not accepted");
        } else if (rp_oid_is(oid, RP_OID_CE_BASIC_CONS)) {
            int ca;
            int64_t path_len;
            if (rp_ext_basic_constraints(e[i].value, &ca, &path_len) != RP_OK || ca ||
                path_len >= 0)
                FAIL(RP_E_BAD_CERT_TEMPLATE, "a device may not ask for a CA certificate");
        } else {
            FAIL(RP_E_BAD_CERT_TEMPLATE, "an extension that is not accepted");
        }
        if (rc != RP_OK)
            return rc;
    }
    return RP_OK;
}

/* keep: notBefore not in the past (beyond the clock skew), notAfter within
 * max_validity_days of the later of now and notBefore. */
static int check_validity(const struct judge *j, const struct rp_crmf_template *t)
{
    const char **why = j->why;
    const struct rp_cfg_domain *c = j->rx->dcfg;
    int64_t now = j->rx->now, start = now;
    if (t->has_not_before) {
        if (t->not_before < now - (int64_t)c->max_clock_skew_s)
            FAIL(RP_E_BAD_CERT_TEMPLATE, "validity starts in the past");
        start = t->not_before;
    }
    if (t->has_not_after &&
        (t->not_after < start ||
         t->not_after - start > (int64_t)c->tmpl.max_validity_days * SECS_PER_DAY))
        FAIL(RP_E_BAD_CERT_TEMPLATE, "validity longer than the domain allows");
    return RP_OK;
}

static int check_controls(const struct judge *j, const struct rp_crmf_req *r, bool kur, bool keygen)
{
    const char **why = j->why;
    for (size_t i = 0; i < r->n_controls; i++) {
        struct rp_view t = r->controls[i].type;
        if ((kur && rp_oid_is(t, RP_OID_REGCTRL_OLD_CERT_ID)) ||
            (keygen && rp_oid_is(t, OID_PROTO_ENCR)))
            continue;
        FAIL(RP_E_BAD_REQUEST, "a registration control that is not accepted");
    }
    if (rp_view_present(r->reg_info_raw))
        FAIL(RP_E_BAD_REQUEST, "regInfo is not accepted");
    return RP_OK;
}

/* The subject the RA writes from the pattern. */
static int build_subject(const struct judge *j, struct rp_view *out)
{
    const char **why = j->why;
    const struct ra_policy *p = j->p;
    struct rp_name_attr attrs[RP_PATTERN_MAX_PARTS];
    struct rp_arena *a = &j->rx->ex->arena;
    for (size_t i = 0; i < p->n_subject; i++) {
        char *buf = rp_arena_alloc(a, RP_PATTERN_VALUE_MAX);
        size_t len;
        if (!buf)
            FAIL(RP_E_ARENA, "out of memory");
        if (rp_pattern_expand(p->subject[i].value, &j->vars, buf, RP_PATTERN_VALUE_MAX, &len, why))
            return RP_E_BAD_CERT_TEMPLATE;
        attrs[i] =
            (struct rp_name_attr){p->subject[i].oid, p->subject[i].tag, rp_view_make(buf, len), 0};
        if (!rp_name_value_ok(attrs[i].tag, attrs[i].value))
            FAIL(RP_E_BAD_CERT_TEMPLATE, "the identity does not fit the subject pattern");
    }
    if (rp_name_encode(a, attrs, p->n_subject, out) != RP_OK)
        FAIL(RP_E_ARENA, "out of memory");
    return RP_OK;
}

/* The SAN extension the RA writes from the patterns, or absent without patterns. */
static int build_san(const struct judge *j, struct rp_view *out)
{
    const char **why = j->why;
    const struct ra_policy *p = j->p;
    struct rp_ext_gname names[RP_EXT_MAX];
    struct rp_arena *a = &j->rx->ex->arena;
    struct rp_view gn;
    *out = RP_VIEW_NULL;
    for (size_t i = 0; i < p->n_san; i++) {
        char *buf = rp_arena_alloc(a, RP_PATTERN_VALUE_MAX);
        if (!buf)
            FAIL(RP_E_ARENA, "out of memory");
        int rc = expand_san(j, &p->san[i], buf, RP_PATTERN_VALUE_MAX, &names[i].value);
        if (rc != RP_OK)
            return rc;
        names[i].choice = p->san[i].choice;
    }
    if (p->n_san == 0)
        return RP_OK;
    if (rp_ext_encode_general_names(a, names, p->n_san, &gn) != RP_OK ||
        rp_ext_encode(a, RP_OID_VIEW(RP_OID_CE_SAN), false, gn, out) != RP_OK)
        FAIL(RP_E_ARENA, "out of memory");
    return RP_OK;
}

/* The template as the RA forwards it: issuer and public key as requested; subject and SAN
 * written (rewrite) or as requested (check); other extensions as requested (they passed the
 * allowlists); validity kept only with `validity: keep`. */
static int rebuild(const struct judge *j, const struct rp_crmf_req *r,
                   struct rp_cmp_enc_certreq *out)
{
    struct rp_arena *a = &j->rx->ex->arena;
    const struct rp_crmf_template *t = &r->tmpl;
    bool rewrite = j->p->mode == RP_TEMPLATE_REWRITE;
    struct rp_ext e[RP_EXT_MAX];
    size_t n = 0;
    struct rp_view *exts = rp_arena_calloc(a, RP_EXT_MAX + 1, sizeof *exts), san;
    if (!exts)
        return RP_E_ARENA;
    if (rp_view_present(t->extensions_raw) && rp_ext_list(t->extensions_raw, e, RP_EXT_MAX, &n))
        return RP_E_BAD_CERT_TEMPLATE;
    memset(out, 0, sizeof *out);
    out->cert_req_id = r->cert_req_id;
    out->tmpl.issuer = t->issuer;
    out->tmpl.public_key_raw = t->public_key_raw;
    if (j->rx->dcfg->tmpl.validity == RP_VALIDITY_KEEP)
        out->tmpl.validity_raw = t->validity_raw;
    out->tmpl.subject = t->subject;
    if (rewrite) {
        int rc = build_subject(j, &out->tmpl.subject);
        if (rc == RP_OK)
            rc = build_san(j, &san);
        if (rc != RP_OK)
            return rc;
        if (rp_view_present(san))
            exts[out->tmpl.n_extensions++] = san;
    }
    for (size_t i = 0; i < n; i++)
        if (!(rewrite && rp_oid_is(e[i].oid, RP_OID_CE_SAN)))
            exts[out->tmpl.n_extensions++] = e[i].raw;
    out->tmpl.extensions = exts;
    out->controls_raw = r->controls_raw;
    out->ra_verified = r->pop.type != RP_CRMF_POP_NONE; /* none: central key generation */
    return RP_OK;
}

static bool central_keygen(const struct rp_crmf_req *r)
{
    return r->pop.type == RP_CRMF_POP_NONE;
}

/* One CertReqMsg of ir/cr/kur/krr/ccr. *rewrite: the RA must write this template. */
static int check_certreq(const struct judge *j, const struct rp_crmf_req *r,
                         const struct rp_cert *signer, bool *rewrite)
{
    const char **why = j->why;
    const struct rp_crmf_template *t = &r->tmpl;
    bool kur = j->rx->msg.body.type == RP_CMP_KUR;
    int rc = check_controls(j, r, kur, central_keygen(r));
    if (rc != RP_OK)
        return rc;
    if ((t->has_version && t->version != 2) || rp_view_present(t->serial) ||
        rp_view_present(t->signing_alg_raw) || rp_view_present(t->issuer_uid_raw) ||
        rp_view_present(t->subject_uid_raw))
        FAIL(RP_E_BAD_CERT_TEMPLATE,
             "the template sets a field only the CA sets (version, serialNumber, signingAlg, "
             "unique identifiers)");
    if (kur) {
        /* the certificate being renewed is the one that signs the kur (authorize()) */
        bool same =
            !rp_view_present(t->subject) || (signer && rp_name_eq(t->subject, signer->subject));
        if (!same && !j->rx->dcfg->tmpl.kur_subject_change)
            FAIL(RP_E_BAD_CERT_TEMPLATE, "kur may not change the certificate's subject");
        if (!same && (rc = check_subject(j, t->subject)) != RP_OK)
            return rc;
    } else if (j->p->mode == RP_TEMPLATE_CHECK && (rc = check_subject(j, t->subject)) != RP_OK) {
        return rc;
    }
    bool by_ra = j->p->mode == RP_TEMPLATE_REWRITE && !kur;
    if ((rc = check_extensions(j, t->extensions_raw, by_ra)) != RP_OK)
        return rc;
    if (rp_view_present(t->validity_raw)) {
        if (j->rx->dcfg->tmpl.validity == RP_VALIDITY_KEEP)
            rc = check_validity(j, t);
        else
            by_ra = true; /* dropped: the CA's profile decides */
    }
    *rewrite = *rewrite || by_ra;
    return rc;
}

/* A rewritten template needs the RA's own signature: not for kur (its signature proves the
 * old key and is never replaced) nor when the domain forwards unchanged. */
static int rewrite_body(const struct judge *j)
{
    const char **why = j->why;
    struct ra_exchange *rx = j->rx;
    const struct rp_cmp_certreqs *q = &rx->msg.body.reqs;
    if (rx->msg.body.type == RP_CMP_KUR)
        FAIL(RP_E_BAD_CERT_TEMPLATE, "kur cannot be changed by the RA: drop validity");
    if (rx->dcfg->forward != RP_FORWARD_REPROTECT)
        FAIL(RP_E_BAD_CERT_TEMPLATE,
             "the template would have to be changed, and this domain forwards unchanged");
    struct rp_cmp_enc_certreq *out = rp_arena_calloc(&rx->ex->arena, q->n, sizeof *out);
    if (!out)
        FAIL(RP_E_ARENA, "out of memory");
    for (size_t i = 0; i < q->n; i++) {
        int rc = rebuild(j, &q->reqs[i], &out[i]);
        if (rc != RP_OK) {
            if (!*why)
                *why = "cannot rewrite the template";
            return rc;
        }
    }
    if (rp_cmp_enc_body_certreqs(&rx->ex->arena, rx->msg.body.type, out, q->n, &rx->body_out))
        FAIL(RP_E_ARENA, "out of memory");
    return RP_OK;
}

static int check_p10(const struct judge *j)
{
    const char **why = j->why;
    const struct rp_cmp_p10 *p = &j->rx->msg.body.p10;
    struct rp_p10_attr attrs[RP_EXT_MAX];
    size_t n;
    int rc = check_subject(j, p->subject);
    if (rc != RP_OK)
        return rc;
    if (rp_p10_attrs(p->attributes_raw, attrs, RP_EXT_MAX, &n) != RP_OK)
        FAIL(RP_E_BAD_CERT_TEMPLATE, "malformed CSR attributes");
    for (size_t i = 0; i < n; i++) {
        struct rp_view exts;
        if (!rp_oid_is(attrs[i].type, OID_EXT_REQUEST))
            FAIL(RP_E_BAD_CERT_TEMPLATE, "a CSR attribute that is not accepted");
        if (rp_p10_ext_request(&attrs[i], &exts) != RP_OK)
            FAIL(RP_E_BAD_CERT_TEMPLATE, "malformed extensionRequest");
        if ((rc = check_extensions(j, exts, false)) != RP_OK)
            return rc;
    }
    return RP_OK;
}

/* generalInfo id-it-certProfile (RFC 9483 §3.1): SEQUENCE OF UTF8String, each listed. */
static int check_profiles(const struct judge *j)
{
    const char **why = j->why;
    const struct rp_cmp_header *h = &j->rx->msg.header;
    const struct rp_cfg_template *t = &j->rx->dcfg->tmpl;
    for (size_t i = 0; i < h->n_general_info; i++) {
        const struct rp_cmp_itav *it = &h->general_info[i];
        struct rp_der d, s;
        struct rp_der_tlv k;
        if (!rp_oid_is(it->type, OID_CERT_PROFILE))
            continue;
        rp_der_init(&d, it->value.p, it->value.len, NULL);
        if (!rp_view_present(it->value) ||
            rp_der_expect_enter(&d, RP_DER_SEQUENCE, &s, NULL, "certProfile") < 0 ||
            rp_der_left(&s) == 0)
            FAIL(RP_E_BAD_REQUEST, "malformed certProfile");
        while (rp_der_left(&s) > 0) {
            if (rp_der_expect(&s, RP_DER_UTF8_STRING, &k, "UTF8String profile") < 0)
                FAIL(RP_E_BAD_REQUEST, "malformed certProfile");
            bool listed = false;
            for (unsigned p = 0; p < t->cert_profiles_count && !listed; p++)
                listed = rp_view_eq(k.val, rp_view_str(t->cert_profiles[p]));
            if (!listed)
                FAIL(RP_E_BAD_CERT_TEMPLATE, "certificate profile not accepted in this domain");
        }
    }
    return RP_OK;
}

int ra_policy_check(struct ra_exchange *rx, const struct rp_cert *signer, const char **why)
{
    struct judge j = {rx, rx->domain->policy, {rx->dev_serial, rx->subject_cn, rx->anchor}, why};
    enum rp_cmp_body_type t = rx->msg.body.type;
    *why = NULL;
    int rc = check_profiles(&j);
    if (rc != RP_OK || !ra_is_cert_request(t))
        return rc;
    if (t == RP_CMP_P10CR)
        return check_p10(&j);
    const struct rp_cmp_certreqs *q = &rx->msg.body.reqs;
    if (q->n > rx->dcfg->max_requests)
        FAIL(RP_E_BAD_REQUEST, "more certificate requests in one message than the domain allows");
    bool rewrite = false;
    for (size_t i = 0; i < q->n; i++)
        if ((rc = check_certreq(&j, &q->reqs[i], signer, &rewrite)) != RP_OK)
            return rc;
    return rewrite ? rewrite_body(&j) : RP_OK;
}
