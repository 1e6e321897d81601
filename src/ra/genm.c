/* PKI information at the edge (RFC 9483 §4.3): with `genm: local`, a verified genm asking
 * for CA certificates, a root CA key update, a certificate request template or fresher CRLs
 * is answered by raproxy from its configured files, in a genp signed by the RA, so that a
 * fleet polling for them never reaches the CA. A genm with any other InfoType is forwarded
 * whole. ASN.1 from RFC 9810 Appendix A (EXPLICIT TAGS):
 *
 *   CaCertsValue          ::= SEQUENCE SIZE (1..MAX) OF CMPCertificate
 *   RootCaKeyUpdateContent ::= SEQUENCE { newWithNew CMPCertificate,
 *                              newWithOld [0] CMPCertificate OPTIONAL,
 *                              oldWithNew [1] CMPCertificate OPTIONAL }
 *   CertReqTemplateValue  ::= CertReqTemplateContent
 *   CRLStatusListValue    ::= SEQUENCE SIZE (1..MAX) OF CRLStatus
 *   CRLStatus             ::= SEQUENCE { source CRLSource, thisUpdate Time OPTIONAL }
 *   CRLSource             ::= CHOICE { dpn [0] DistributionPointName, issuer [1] GeneralNames }
 *   CRLsValue             ::= SEQUENCE SIZE (1..MAX) OF CertificateList
 *
 * An answer without news (no update for this root, no CRL newer than the device's) is the
 * InfoType with its value absent, as RFC 9483 asks. */
#include "ra.h"

#include "raproxy/cmp_encode.h"
#include "raproxy/crl.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"
#include "raproxy/log.h"
#include "raproxy/sig.h"
#include "raproxy/snapshot.h"

#include <stdlib.h>
#include <string.h>

/* id-it (1.3.6.1.5.5.7.4.x) InfoTypes der.h does not name. */
#define OID_IT_ROOT_CA_CERT    "\x2b\x06\x01\x05\x05\x07\x04\x14" /* .20 */
#define OID_IT_CRL_STATUS_LIST "\x2b\x06\x01\x05\x05\x07\x04\x16" /* .22 */
#define OID_IT_CRLS            "\x2b\x06\x01\x05\x05\x07\x04\x17" /* .23 */

/* Room for an ITAV's own headers around its material (SEQUENCE, OID, value wrappers). */
#define ITAV_OVERHEAD 64u
/* senderNonce of the genp */

enum info_kind { INFO_CA_CERTS, INFO_ROOT_UPDATE, INFO_TEMPLATE, INFO_CRLS, INFO_OTHER };

struct ra_pki_info {
    struct ra_der_list ca_certs;
    struct ra_der_list new_with_new, new_with_old, old_with_new; /* 0 or 1 certificate each */
    struct ra_der cert_req_template;
    struct ra_der_list crls; /* DER, from the domain's `crls` */
    struct rp_crl *crl;      /* crls parsed, same order */
};

/* ---- loading ----------------------------------------------------------------------- */

void ra_pki_info_free(struct ra_pki_info *p)
{
    if (!p)
        return;
    ra_der_list_free(&p->ca_certs);
    ra_der_list_free(&p->new_with_new);
    ra_der_list_free(&p->new_with_old);
    ra_der_list_free(&p->old_with_new);
    free(p->cert_req_template.p);
    ra_der_list_free(&p->crls);
    free(p->crl);
    free(p);
}

static int load_one_cert(const char *path, struct ra_der_list *l, FILE *errs)
{
    if (!path)
        return RP_OK;
    int rc = ra_load_certs(path, l, errs);
    if (rc == RP_OK && l->n != 1) {
        if (errs)
            fprintf(errs, "%s: expected exactly one certificate\n", path);
        rc = RP_E_KEY_LOAD;
    }
    return rc;
}

/* CertReqTemplateContent ::= SEQUENCE { certTemplate CertTemplate, keySpec Controls
 * OPTIONAL }: checked for shape here, sent as is. */
static int check_template(const uint8_t *p, size_t n)
{
    struct rp_der d, seq;
    struct rp_der_tlv t, part;
    int rc;
    rp_der_init(&d, p, n, NULL);
    if ((rc = rp_der_expect(&d, RP_DER_SEQUENCE, &t, "CertReqTemplateContent")) < 0 ||
        (rc = rp_der_finish(&d, "end of file")) < 0 || (rc = rp_der_validate(&d, &t)) < 0 ||
        (rc = rp_der_enter(&d, &t, &seq)) < 0)
        return rc;
    if ((rc = rp_der_expect(&seq, RP_DER_SEQUENCE, &part, "certTemplate")) < 0)
        return rc;
    if ((rc = rp_der_optional(&seq, RP_DER_SEQUENCE, &part)) < 0)
        return rc;
    return rp_der_finish(&seq, "end of CertReqTemplateContent");
}

static int load_template(const char *path, struct ra_pki_info *pi, FILE *errs)
{
    uint8_t *data;
    size_t len;
    if (!path)
        return RP_OK;
    int rc = ra_read_file(path, &data, &len);
    if (rc == RP_OK && check_template(data, len) != RP_OK) {
        free(data);
        rc = RP_E_KEY_LOAD;
    }
    if (rc != RP_OK) {
        if (errs)
            fprintf(errs, "%s: not a DER CertReqTemplateContent\n", path);
        return rc;
    }
    pi->cert_req_template.p = data;
    pi->cert_req_template.len = len;
    return RP_OK;
}

static int add_crl(struct ra_pki_info *pi, const uint8_t *der, size_t len)
{
    struct rp_crl c;
    if (rp_crl_parse(der, len, &c) != RP_OK)
        return RP_E_KEY_LOAD;
    struct ra_der *nv = realloc(pi->crls.v, (pi->crls.n + 1) * sizeof *nv);
    if (!nv)
        return RP_E_NOMEM;
    pi->crls.v = nv;
    uint8_t *copy = malloc(len);
    if (!copy)
        return RP_E_NOMEM;
    memcpy(copy, der, len);
    pi->crls.v[pi->crls.n].p = copy;
    pi->crls.v[pi->crls.n].len = len;
    pi->crls.n++;
    return RP_OK;
}

/* The domain's CRL files (PEM or DER, as state.c read them) as DER CRLs. */
static int load_crls(const struct rp_cfg_domain *c, const struct ra_domain *d,
                     struct ra_pki_info *pi, FILE *errs)
{
    int rc = RP_OK;
    for (size_t i = 0; i < d->crls.n && rc == RP_OK; i++) {
        const struct ra_der *f = &d->crls.v[i];
        size_t before = pi->crls.n;
        if (f->len && f->p[0] == RP_DER_SEQUENCE) {
            rc = add_crl(pi, f->p, f->len);
        } else {
            size_t pos = 0, dlen;
            uint8_t *der;
            int r;
            while (rc == RP_OK && pi->crls.n - before < RP_CRL_MAX_PER_FILE &&
                   (r = rp_crl_pem_next((const char *)f->p, f->len, &pos, &der, &dlen)) !=
                       RP_E_NOT_FOUND) {
                rc = r == RP_OK ? add_crl(pi, der, dlen) : RP_E_KEY_LOAD;
                if (r == RP_OK)
                    free(der);
            }
        }
        if (rc == RP_OK && pi->crls.n == before)
            rc = RP_E_KEY_LOAD;
        if (rc != RP_OK && errs)
            fprintf(errs, "%s: not a CRL (PEM or DER)\n", i < c->crls_count ? c->crls[i] : "?");
    }
    if (rc != RP_OK || !pi->crls.n)
        return rc;
    pi->crl = calloc(pi->crls.n, sizeof *pi->crl);
    if (!pi->crl)
        return RP_E_NOMEM;
    for (size_t i = 0; i < pi->crls.n; i++)
        rp_crl_parse(pi->crls.v[i].p, pi->crls.v[i].len, &pi->crl[i]);
    return RP_OK;
}

int ra_pki_info_load(const struct rp_cfg_domain *c, struct ra_domain *d, FILE *errs)
{
    if (c->genm != RP_GENM_LOCAL)
        return RP_OK;
    struct ra_pki_info *pi = calloc(1, sizeof *pi);
    if (!pi)
        return RP_E_NOMEM;
    int rc = RP_OK;
    const struct rp_cfg_pki_info *cfg = c->pki_info;
    if (cfg && cfg->ca_certs)
        rc = ra_load_certs(cfg->ca_certs, &pi->ca_certs, errs);
    const struct rp_cfg_root_ca_update *r = cfg ? cfg->root_ca_update : NULL;
    if (rc == RP_OK && r) {
        rc = load_one_cert(r->new_with_new, &pi->new_with_new, errs);
        if (rc == RP_OK)
            rc = load_one_cert(r->new_with_old, &pi->new_with_old, errs);
        if (rc == RP_OK)
            rc = load_one_cert(r->old_with_new, &pi->old_with_new, errs);
    }
    if (rc == RP_OK && cfg)
        rc = load_template(cfg->cert_req_template, pi, errs);
    if (rc == RP_OK)
        rc = load_crls(c, d, pi, errs);
    if (rc != RP_OK) {
        ra_pki_info_free(pi);
        return rc;
    }
    d->pki = pi;
    return RP_OK;
}

/* ---- which InfoTypes ------------------------------------------------------------- */

static enum info_kind kind_of(struct rp_view type)
{
    if (rp_oid_is(type, RP_OID_IT_CA_CERTS))
        return INFO_CA_CERTS;
    /* RFC 9483 §4.3.2 asks with id-it-rootCaCert; OpenSSL 3.0 can only send the answer's
     * InfoType (-infotype rootCaKeyUpdate): both get RootCaKeyUpdateContent */
    if (rp_oid_is(type, OID_IT_ROOT_CA_CERT) || rp_oid_is(type, RP_OID_IT_ROOT_CA_KEY_UPDATE))
        return INFO_ROOT_UPDATE;
    if (rp_oid_is(type, RP_OID_IT_CERT_REQ_TEMPLATE))
        return INFO_TEMPLATE;
    if (rp_oid_is(type, OID_IT_CRL_STATUS_LIST))
        return INFO_CRLS;
    return INFO_OTHER;
}

static size_t list_size(const struct ra_der_list *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        n += l->v[i].len;
    return n;
}

/* What an answer of this kind can take at most; 0 when it is not answered here. */
static size_t answer_room(const struct ra_pki_info *pi, enum info_kind k)
{
    switch (k) {
    case INFO_CA_CERTS:
        return pi->ca_certs.n ? list_size(&pi->ca_certs) + ITAV_OVERHEAD : 0;
    case INFO_ROOT_UPDATE:
        return pi->new_with_new.n ? list_size(&pi->new_with_new) + list_size(&pi->new_with_old) +
                                        list_size(&pi->old_with_new) + ITAV_OVERHEAD
                                  : 0;
    case INFO_TEMPLATE:
        return pi->cert_req_template.p ? pi->cert_req_template.len + ITAV_OVERHEAD : 0;
    case INFO_CRLS:
        return pi->crls.n ? list_size(&pi->crls) + ITAV_OVERHEAD : 0;
    default:
        return 0;
    }
}

/* ---- the answers ------------------------------------------------------------------- */

static void write_list(struct rp_derw *w, const struct ra_der_list *l)
{
    rp_derw_begin(w, RP_DER_SEQUENCE);
    for (size_t i = 0; i < l->n; i++)
        rp_derw_raw(w, rp_view_make(l->v[i].p, l->v[i].len));
    rp_derw_end(w);
}

static void write_wrapped(struct rp_derw *w, uint8_t tag, const struct ra_der_list *l)
{
    if (!l->n)
        return;
    rp_derw_begin(w, RP_DER_CTX_CONS(tag));
    rp_derw_raw(w, rp_view_make(l->v[0].p, l->v[0].len));
    rp_derw_end(w);
}

/* Whether the update is news for a device holding old_root (a Certificate TLV, or absent
 * when the device did not say): not when it already has the new root, nor when the
 * update's newWithOld was signed by another root than the device's. */
static int root_update_applies(const struct ra_pki_info *pi, struct rp_view old_root, bool *yes)
{
    struct rp_cert old, nwo;
    *yes = true;
    if (!rp_view_present(old_root))
        return RP_OK;
    if (rp_cert_parse(old_root.p, old_root.len, &old) != RP_OK)
        return RP_E_CMP_CERT;
    if (rp_view_eq(old_root, rp_view_make(pi->new_with_new.v[0].p, pi->new_with_new.v[0].len))) {
        *yes = false;
        return RP_OK;
    }
    if (pi->new_with_old.n &&
        rp_cert_parse(pi->new_with_old.v[0].p, pi->new_with_old.v[0].len, &nwo) == RP_OK)
        *yes = rp_name_eq(nwo.issuer, old.subject) &&
               (!rp_view_present(nwo.aki_key_id) || !rp_view_present(old.ski) ||
                rp_view_eq(nwo.aki_key_id, old.ski));
    return RP_OK;
}

static int write_root_update(struct rp_derw *w, const struct ra_pki_info *pi,
                             const struct rp_cmp_itav *req)
{
    bool yes;
    /* id-it-rootCaCert carries the device's current root; id-it-rootCaKeyUpdate nothing */
    struct rp_view old = rp_oid_is(req->type, OID_IT_ROOT_CA_CERT) ? req->value : RP_VIEW_NULL;
    int rc = root_update_applies(pi, old, &yes);
    if (rc != RP_OK)
        return rc;
    rp_derw_oid(w, RP_OID_VIEW(RP_OID_IT_ROOT_CA_KEY_UPDATE));
    if (!yes)
        return RP_OK;
    rp_derw_begin(w, RP_DER_SEQUENCE);
    rp_derw_raw(w, rp_view_make(pi->new_with_new.v[0].p, pi->new_with_new.v[0].len));
    write_wrapped(w, 0, &pi->new_with_old);
    write_wrapped(w, 1, &pi->old_with_new);
    rp_derw_end(w);
    return RP_OK;
}

/* CRLSource matches a CRL: dpn by the CRL's issuingDistributionPoint name, issuer by a
 * directoryName among the GeneralNames. */
static int source_matches(struct rp_der *st, const struct rp_der_tlv *src, const struct rp_crl *c,
                          bool *match)
{
    struct rp_der in, gn;
    struct rp_der_tlv t;
    int rc;
    *match = false;
    if ((rc = rp_der_enter(st, src, &in)) < 0)
        return rc;
    if (src->ident == RP_DER_CTX_CONS(0)) {
        if ((rc = rp_der_next(&in, &t)) < 0)
            return rc;
        *match = rp_view_present(c->idp_name) && rp_view_eq(t.raw, c->idp_name);
        return rp_der_finish(&in, "end of dpn");
    }
    if ((rc = rp_der_expect_enter(&in, RP_DER_SEQUENCE, &gn, NULL, "GeneralNames")) < 0)
        return rc;
    while (rp_der_left(&gn) > 0) {
        if ((rc = rp_der_next(&gn, &t)) < 0)
            return rc;
        if (t.ident != RP_DER_CTX_CONS(RP_GNAME_DIRECTORY_NAME))
            continue;
        struct rp_der dn;
        struct rp_der_tlv name;
        if ((rc = rp_der_enter(&gn, &t, &dn)) < 0 ||
            (rc = rp_der_expect(&dn, RP_DER_SEQUENCE, &name, "directoryName")) < 0)
            return rc;
        if (rp_name_eq(name.raw, c->issuer))
            *match = true;
    }
    return rp_der_finish(&in, "end of issuer");
}

/* Mark in `pick` every CRL one CRLStatus asks for. */
static int read_status(struct rp_der *list, const struct ra_pki_info *pi, bool *pick)
{
    struct rp_der st;
    struct rp_der_tlv src, t;
    int64_t since = INT64_MIN;
    int rc;
    if ((rc = rp_der_expect_enter(list, RP_DER_SEQUENCE, &st, NULL, "CRLStatus")) < 0)
        return rc;
    if ((rc = rp_der_next(&st, &src)) < 0)
        return rc;
    if (src.ident != RP_DER_CTX_CONS(0) && src.ident != RP_DER_CTX_CONS(1))
        return rp_der_fail(&st, src.raw.p, RP_E_DER_TAG, "CRLSource [0] or [1]");
    if (rp_der_left(&st) > 0) {
        if ((rc = rp_der_next(&st, &t)) < 0 || (rc = rp_der_time(&st, &t, &since)) < 0)
            return rc;
    }
    if ((rc = rp_der_finish(&st, "end of CRLStatus")) < 0)
        return rc;
    for (size_t i = 0; i < pi->crls.n; i++) {
        bool match;
        if ((rc = source_matches(&st, &src, &pi->crl[i], &match)) < 0)
            return rc;
        if (match && pi->crl[i].this_update > since)
            pick[i] = true;
    }
    return RP_OK;
}

static int write_crls(struct rp_derw *w, const struct ra_pki_info *pi,
                      const struct rp_cmp_itav *req, struct rp_arena *a)
{
    struct rp_der d, list;
    struct rp_der_tlv t;
    size_t n;
    int rc;
    bool *pick = rp_arena_calloc(a, pi->crls.n, sizeof *pick);
    if (!pick)
        return RP_E_ARENA;
    if (!rp_view_present(req->value))
        return RP_E_CMP_BODY;
    rp_der_init(&d, req->value.p, req->value.len, NULL);
    if ((rc = rp_der_expect_enter(&d, RP_DER_SEQUENCE, &list, &t, "CRLStatusList")) < 0 ||
        (rc = rp_der_count(&list, 1, RP_CMP_MAX_LIST, &n)) < 0)
        return RP_E_CMP_BODY;
    while (rp_der_left(&list) > 0)
        if (read_status(&list, pi, pick) < 0)
            return RP_E_CMP_BODY;
    bool any = false;
    for (size_t i = 0; i < pi->crls.n; i++)
        any |= pick[i];
    rp_derw_oid(w, RP_OID_VIEW(OID_IT_CRLS));
    if (!any)
        return RP_OK;
    rp_derw_begin(w, RP_DER_SEQUENCE);
    for (size_t i = 0; i < pi->crls.n; i++)
        if (pick[i])
            rp_derw_raw(w, rp_view_make(pi->crls.v[i].p, pi->crls.v[i].len));
    rp_derw_end(w);
    return RP_OK;
}

/* One InfoTypeAndValue of the genp, into the scratch arena. */
static int write_itav(struct rp_arena *scratch, const struct ra_pki_info *pi,
                      const struct rp_cmp_itav *req, enum info_kind k, struct rp_view *out)
{
    struct rp_derw w;
    int rc = rp_derw_init(&w, scratch, answer_room(pi, k));
    if (rc != RP_OK)
        return rc;
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    switch (k) {
    case INFO_CA_CERTS:
        rp_derw_oid(&w, RP_OID_VIEW(RP_OID_IT_CA_CERTS));
        write_list(&w, &pi->ca_certs);
        break;
    case INFO_ROOT_UPDATE:
        rc = write_root_update(&w, pi, req);
        break;
    case INFO_TEMPLATE:
        rp_derw_oid(&w, RP_OID_VIEW(RP_OID_IT_CERT_REQ_TEMPLATE));
        rp_derw_raw(&w, rp_view_make(pi->cert_req_template.p, pi->cert_req_template.len));
        break;
    case INFO_CRLS:
        rc = write_crls(&w, pi, req, scratch);
        break;
    default:
        rc = RP_E_INTERNAL;
    }
    if (rc != RP_OK)
        return rc;
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

/* ---- signing ----------------------------------------------------------------------- */

int ra_genm_answer(struct ra_exchange *rx)
{
    const struct rp_cmp_msg *m = &rx->msg;
    const struct ra_pki_info *pi = rx->domain ? rx->domain->pki : NULL;
    if (m->body.type != RP_CMP_GENM || !pi || !rx->dcfg || rx->dcfg->genm != RP_GENM_LOCAL ||
        m->body.gen.n == 0)
        return RP_E_NOT_FOUND;
    const struct rp_cmp_genmsg *g = &m->body.gen;
    /* the ITAVs are built in scratch memory so the exchange's arena holds each answer once
     * in the body, not twice: CRLs can be large */
    size_t room = 0;
    unsigned seen = 0;
    for (size_t i = 0; i < g->n; i++) {
        enum info_kind k = kind_of(g->items[i].type);
        size_t r = answer_room(pi, k);
        if (r == 0)
            return RP_E_NOT_FOUND; /* the CA answers the whole genm */
        /* Each InfoType once: the scratch memory is then bounded by what is configured
         * (every CRL at most once), not by how often a request repeats crlStatusList. */
        if (seen & (1u << k)) {
            rx->why = "an InfoType is asked more than once";
            return RP_E_BAD_REQUEST;
        }
        seen |= 1u << k;
        room += r + 16; /* arena alignment */
    }
    struct rp_arena scratch;
    room += g->n * sizeof(bool) * (pi->crls.n + 16);
    if (rp_arena_new(&scratch, room) != RP_OK)
        return RP_E_NOMEM;
    struct rp_view *itavs = rp_arena_calloc(&rx->ex->arena, g->n, sizeof *itavs);
    int rc = itavs ? RP_OK : RP_E_ARENA;
    for (size_t i = 0; i < g->n && rc == RP_OK; i++)
        rc = write_itav(&scratch, pi, &g->items[i], kind_of(g->items[i].type), &itavs[i]);
    struct rp_view body;
    if (rc == RP_OK)
        rc = rp_cmp_enc_body_genp(&rx->ex->arena, itavs, g->n, &body);
    rp_arena_free(&scratch);
    if (rc == RP_OK)
        rc = ra_sign_response(rx, body);
    if (rc == RP_E_ARENA)
        rp_log_warn("genm", "domain %s: the genp does not fit the exchange memory (large CRLs?)",
                    rx->dcfg->name);
    return rc;
}
