/* Internal to the CMP decoder (msg.c, body.c, crmf.c): shared readers. Each reads from a
 * cursor positioned on the element and advances it; errors are recorded in the cursor's
 * sink like the rp_der_* functions. */
#ifndef RAPROXY_CMP_DECODE_H
#define RAPROXY_CMP_DECODE_H

#include "raproxy/cmp.h"
#include "raproxy/der.h"

/* Decoding context shared by one rp_cmp_decode() call. */
struct cmp_dec {
    struct rp_arena *a;
    unsigned nest;      /* PKIMessage nesting level, 0 for the outermost */
    int version_err;    /* deferred RP_E_CMP_VERSION from this message or an inner one */
    size_t version_off; /* where the first unsupported pvno is */
};

/* Arena array of `count` zeroed elements, or RP_E_ARENA recorded at `at`. */
void *cmp_alloc(struct cmp_dec *x, const struct rp_der *d, const uint8_t *at, size_t count,
                size_t size, int *rc);
/* Open the next element as a SEQUENCE OF with `min`..RP_CMP_MAX_LIST children; allocate
 * an array of that many `size`-byte zeroed elements. */
int cmp_seq_of(struct cmp_dec *x, struct rp_der *d, uint8_t ident, size_t min, size_t size,
               struct rp_der *child, struct rp_der_tlv *t, void **arr, size_t *n, const char *what);

/* A TLV with its identifier replaced (IMPLICIT tagging: same content, other tag). */
struct rp_der_tlv cmp_retag(const struct rp_der_tlv *t, uint8_t ident);

int cmp_read_gname(struct rp_der *d, struct rp_cmp_gname *out, const char *what);
int cmp_read_name(struct rp_der *d, const struct rp_der_tlv *t, struct rp_view *out);
int cmp_read_freetext(struct rp_der *d, const struct rp_der_tlv *t);
int cmp_read_status(struct rp_der *d, struct rp_cmp_status *out);
int cmp_read_itav(struct rp_der *d, struct rp_cmp_itav *out, int value_required);
int cmp_read_int(struct rp_der *d, int64_t *out, const char *what);
int cmp_read_cert_tlv(struct rp_der *d, struct rp_view *out);
int cmp_read_certid(struct rp_der *d, struct rp_crmf_certid *out);
/* A CertTemplate whose TLV has already been read (SEQUENCE, or implicitly tagged). */
int cmp_read_template(struct rp_der *d, const struct rp_der_tlv *t, struct rp_crmf_template *out);

/* Bodies. `content` is the TLV inside the EXPLICIT [type] tag, `d` the cursor it came from. */
int cmp_body_certreqs(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                      struct rp_cmp_certreqs *out);
int cmp_body_p10(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                 struct rp_cmp_p10 *out);
int cmp_body_decode(struct cmp_dec *x, struct rp_der *d, const struct rp_der_tlv *content,
                    struct rp_cmp_body *b);

/* One PKIMessage TLV from d (used for the outermost message and for nested ones). */
int cmp_msg_read(struct cmp_dec *x, struct rp_der *d, struct rp_cmp_msg *out);

#endif
