/* Who a verified sender is, as one string every namespace uses (allowlist, allowlist
 * consumption, per-device quota, nonces, transaction owners): the device serial under the
 * name of the trust anchor its certificate chains to (README "Identities").
 *
 * A domain whose anchors carry one name keeps the plain serial (existing Redis keys stay
 * valid); with several names the identity is "ANCHOR/SERIAL", so SN0001 of one vendor is
 * not SN0001 of another trusted in the same domain. MAC identities are "mac/SERIAL" there.
 *
 * Which anchor: the chain was verified before (the domain's chain check); this walks from
 * the leaf through the configured intermediates and the request's extraCerts to an anchor
 * by issuer name and key identifier, and checks a signature only where two certificates
 * could have issued the same one (so a look-alike intermediate under another vendor's root
 * cannot borrow a name). Kept apart from the chain check so that a verifier which reports
 * the anchor itself can feed ra_identity_qualify directly. */
#include "ra.h"

#include "raproxy/cert.h"
#include "raproxy/err.h"
#include "raproxy/exchange.h"
#include "raproxy/sig.h"

#include <stdlib.h>
#include <string.h>

/* Steps from the leaf to an anchor, at most (intermediates of the domain and request). */
#define WALK_MAX_STEPS 18u
#define NO_ANCHOR      ((size_t)-1)

struct walk_cand {
    struct rp_cert cert;
    size_t anchor; /* anchor file index, or NO_ANCHOR for an intermediate */
};

/* c could have issued `child`: its subject is child's issuer, and key identifiers, where
 * both are present, agree. */
static bool may_issue(const struct rp_cert *c, const struct rp_cert *child)
{
    if (!rp_name_eq(c->subject, child->issuer))
        return false;
    return !rp_view_present(child->aki_key_id) || !rp_view_present(c->ski) ||
           rp_view_eq(child->aki_key_id, c->ski);
}

static bool signed_by(const struct rp_cert *child, const struct rp_cert *issuer)
{
    enum rp_sig_alg alg;
    struct rp_pubkey *pk;
    if (rp_sig_alg_parse(child->sig_alg.raw, &alg) != RP_OK ||
        rp_pubkey_from_spki(issuer->spki, &pk) != RP_OK)
        return false;
    bool ok =
        child->sig.unused == 0 && rp_sig_verify(alg, pk, child->tbs.p, child->tbs.len,
                                                child->sig.bytes.p, child->sig.bytes.len) == RP_OK;
    rp_pubkey_free(pk);
    return ok;
}

/* The next certificate up from cur: the only one that may have issued it, or the one among
 * several whose key verifies cur's signature. NULL when none (or two that verify but lead
 * to different anchor names). */
static const struct walk_cand *issuer_of(const struct ra_domain *d, const struct walk_cand *v,
                                         size_t n, const struct rp_cert *cur)
{
    const struct walk_cand *only = NULL;
    size_t matches = 0;
    for (size_t i = 0; i < n; i++)
        if (may_issue(&v[i].cert, cur) && !rp_view_eq(v[i].cert.raw, cur->raw)) {
            only = &v[i];
            matches++;
        }
    if (matches <= 1)
        return only;
    const struct walk_cand *found = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!may_issue(&v[i].cert, cur) || rp_view_eq(v[i].cert.raw, cur->raw) ||
            !signed_by(cur, &v[i].cert))
            continue;
        if (found &&
            (found->anchor == NO_ANCHOR || v[i].anchor == NO_ANCHOR ||
             strcmp(d->cfg->anchor_names[found->anchor], d->cfg->anchor_names[v[i].anchor]) != 0))
            return NULL; /* the same key under two names: no way to tell */
        found = &v[i];
    }
    return found;
}

static size_t add_list(struct walk_cand *v, size_t n, const struct ra_der_list *l,
                       const unsigned *anchor_of)
{
    for (size_t i = 0; i < l->n; i++) {
        if (rp_cert_parse(l->v[i].p, l->v[i].len, &v[n].cert) != RP_OK)
            continue;
        v[n++].anchor = anchor_of ? anchor_of[i] : NO_ANCHOR;
    }
    return n;
}

int ra_anchor_of(const struct ra_domain *d, const struct rp_cert *leaf, const struct rp_view *extra,
                 size_t n_extra, size_t signer, size_t *anchor)
{
    for (size_t i = 0; i < d->anchors.n; i++)
        if (rp_view_eq(rp_view_make(d->anchors.v[i].p, d->anchors.v[i].len), leaf->raw)) {
            *anchor = d->anchor_file[i]; /* a pinned certificate */
            return RP_OK;
        }
    if (n_extra > WALK_MAX_STEPS)
        n_extra = WALK_MAX_STEPS;
    struct walk_cand *v = calloc(d->anchors.n + d->intermediates.n + n_extra + 1, sizeof *v);
    if (!v)
        return RP_E_NOMEM;
    size_t n = add_list(v, 0, &d->anchors, d->anchor_file);
    n = add_list(v, n, &d->intermediates, NULL);
    for (size_t i = 0; i < n_extra; i++)
        if (i != signer && rp_cert_parse(extra[i].p, extra[i].len, &v[n].cert) == RP_OK)
            v[n++].anchor = NO_ANCHOR;
    int rc = RP_E_SIGNER_NOT_TRUSTED;
    const struct rp_cert *cur = leaf;
    for (unsigned step = 0; step < WALK_MAX_STEPS; step++) {
        const struct walk_cand *up = issuer_of(d, v, n, cur);
        if (!up)
            break;
        if (up->anchor != NO_ANCHOR) {
            *anchor = up->anchor;
            rc = RP_OK;
            break;
        }
        cur = &up->cert;
    }
    free(v);
    return rc;
}

/* "ANCHOR/SERIAL" in the exchange's arena. */
static int qualified(struct ra_exchange *rx, struct rp_view anchor, struct rp_view serial)
{
    char *id = rp_arena_alloc(&rx->ex->arena, anchor.len + 1 + serial.len);
    if (!id)
        return RP_E_ARENA;
    memcpy(id, anchor.p, anchor.len);
    id[anchor.len] = '/';
    memcpy(id + anchor.len + 1, serial.p, serial.len);
    rx->serial = rp_view_make(id, anchor.len + 1 + serial.len);
    return RP_OK;
}

int ra_identity_qualify(struct ra_exchange *rx, const struct rp_cert *signer, const char **why)
{
    const struct ra_domain *d = rx->domain;
    rx->subject = signer->subject;
    rx->subject_cn = signer->subject_cn;
    rx->dev_serial = signer->subject_serial;
    if (!rp_view_present(signer->subject_serial) || signer->subject_serial.len == 0) {
        rx->dev_serial = rx->serial; /* an administrator's own name ("admin:…") */
        return RP_OK;
    }
    if (d->cfg->anchor_names_count == 0)
        return RP_OK;
    size_t a = 0; /* one name for every anchor: no need to know which */
    if (d->qualified) {
        if (ra_anchor_of(d, signer, rx->msg.extra_certs, rx->msg.n_extra_certs, 0, &a) != RP_OK) {
            *why = "cannot tell which trust anchor the protection certificate chains to";
            return RP_E_SIGNER_NOT_TRUSTED;
        }
    }
    rx->anchor = rp_view_str(d->cfg->anchor_names[a]);
    if (!d->qualified)
        return RP_OK;
    int rc = qualified(rx, rx->anchor, signer->subject_serial);
    if (rc != RP_OK)
        *why = "out of memory";
    return rc;
}

void ra_identity_mac(struct ra_exchange *rx, const struct ra_secret *s)
{
    rx->serial = ra_secret_identity(s);
    rx->dev_serial = s->serial ? rp_view_str(s->serial) : rp_view_make(s->kid, s->kid_len);
    rx->anchor = rp_view_str(RP_CFG_MAC_ANCHOR_NAME);
    rx->subject = s->subject_der ? rp_view_make(s->subject_der, s->subject_der_len) : RP_VIEW_NULL;
    rx->subject_cn = RP_VIEW_NULL;
    if (s->subject_der)
        rp_name_find(rx->subject, RP_OID_VIEW(RP_OID_AT_CN), &rx->subject_cn);
}
