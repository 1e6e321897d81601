/* X.509 extensions as a device asks for them (RFC 5280 §4.2): the Extensions of a CRMF
 * CertTemplate or of a PKCS#10 extensionRequest, the values an RA judges (subjectAltName,
 * keyUsage, extendedKeyUsage, basicConstraints), the attributes of a CSR, and the encoders
 * the RA uses when it writes a template itself.
 *
 * Parsers check structure strictly and return views into the input (nothing is copied);
 * they return RP_OK or a negative RP_E_DER_* (RP_E_DER_COUNT beyond a caller's cap). */
#ifndef RAPROXY_EXT_H
#define RAPROXY_EXT_H

#include "raproxy/arena.h"
#include "raproxy/cmp.h"
#include "raproxy/view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most extensions, GeneralNames, purposes or CSR attributes a request may hold. */
#define RP_EXT_MAX 32

/* One Extension. */
struct rp_ext {
    struct rp_view raw;   /* the Extension SEQUENCE TLV */
    struct rp_view oid;   /* extnID content */
    int critical;         /* 0 when absent */
    struct rp_view value; /* extnValue OCTET STRING content: the extension's own DER */
};

/* Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension, under any tag (a CertTemplate's [9]
 * IMPLICIT, a CSR's SEQUENCE). An extension listed twice is RP_E_DER_TAG. */
int rp_ext_list(struct rp_view exts_tlv, struct rp_ext *out, size_t cap, size_t *n);

/* GeneralNames (subjectAltName's value): each GeneralName's choice and views. */
int rp_ext_general_names(struct rp_view value, struct rp_cmp_gname *out, size_t cap, size_t *n);
/* The content octets of a GeneralName of a primitive choice (dNSName, rfc822Name, URI,
 * iPAddress, registeredID); RP_VIEW_NULL for the constructed ones. */
struct rp_view rp_ext_general_name_value(const struct rp_cmp_gname *g);
/* KeyUsage: bits as rp_der_named_bits (RP_KU_*). */
int rp_ext_key_usage(struct rp_view value, uint32_t *bits);
/* ExtKeyUsageSyntax: the KeyPurposeId OID contents. */
int rp_ext_eku(struct rp_view value, struct rp_view *oids, size_t cap, size_t *n);
/* BasicConstraints: cA (0/1) and pathLenConstraint (-1 when absent). */
int rp_ext_basic_constraints(struct rp_view value, int *ca, int64_t *path_len);

/* One Attribute of a PKCS#10 CertificationRequestInfo. */
struct rp_p10_attr {
    struct rp_view type;   /* OID content */
    struct rp_view values; /* SET OF value TLV */
    size_t n_values;
};
/* The [0] IMPLICIT SET OF Attribute of a CSR (rp_cmp_p10.attributes_raw). */
int rp_p10_attrs(struct rp_view attributes_raw, struct rp_p10_attr *out, size_t cap, size_t *n);
/* extensionRequest's value (a one-element SET OF Extensions): the Extensions TLV. */
int rp_p10_ext_request(const struct rp_p10_attr *a, struct rp_view *exts_tlv);

/* ---- encoders (DER into the arena) ---- */

/* Extension { extnID, critical (only when true), extnValue OCTET STRING { value_der } } */
int rp_ext_encode(struct rp_arena *a, struct rp_view oid, bool critical, struct rp_view value_der,
                  struct rp_view *out);
/* One GeneralName to encode: choice 1 rfc822Name, 2 dNSName, 6 URI (IA5String content), or
 * 7 iPAddress (the address octets). */
struct rp_ext_gname {
    unsigned choice;
    struct rp_view value;
};
/* GeneralNames SEQUENCE (n >= 1). */
int rp_ext_encode_general_names(struct rp_arena *a, const struct rp_ext_gname *names, size_t n,
                                struct rp_view *out);

#endif
