/* Domain administrators: the operator's staff who revoke or suspend (certificateHold) a
 * lost or stolen device's certificate. A device may only revoke the certificate that signs
 * its rr; an administrator — a certificate listed in the domain's `admins`, which has
 * already passed the same chain and signature checks as any sender — may name any
 * certificate that the domain's own CAs issued. */
#include "ra.h"

#include "raproxy/cert.h"
#include "raproxy/err.h"

bool ra_is_admin(const struct ra_domain *d, struct rp_view signer_der)
{
    if (!d || !rp_view_present(signer_der))
        return false;
    for (size_t i = 0; i < d->admins.n; i++)
        if (rp_view_eq(signer_der, rp_view_make(d->admins.v[i].p, d->admins.v[i].len)))
            return true;
    return false;
}

static bool subject_in(const struct ra_der_list *l, struct rp_view name)
{
    for (size_t i = 0; i < l->n; i++) {
        struct rp_cert c;
        if (rp_cert_parse(l->v[i].p, l->v[i].len, &c) == RP_OK && rp_name_eq(c.subject, name))
            return true;
    }
    return false;
}

bool ra_domain_issued(const struct ra_domain *d, struct rp_view issuer_name)
{
    if (!d || !rp_view_present(issuer_name))
        return false;
    return subject_in(&d->anchors, issuer_name) || subject_in(&d->intermediates, issuer_name);
}
