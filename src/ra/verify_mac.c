/* MAC-based protection (PBM, RFC 9810 §5.1.3.1; PBMAC1, RFC 9481), on a crypto worker: the
 * shared secret is looked up by senderKID in the domain's secrets file. */
#include "ra.h"

#include "raproxy/err.h"
#include "raproxy/exchange.h"

#if __has_include("raproxy/mac.h")
#include "raproxy/mac.h"

int ra_verify_mac(struct ra_exchange *rx, const char **why)
{
    const struct rp_cmp_msg *m = &rx->msg;
    const struct ra_secret *s = ra_domain_secret(rx->domain, m->header.sender_kid.val);
    if (!s) {
        *why = "no shared secret for this senderKID";
        return RP_E_SIGNER_NOT_TRUSTED;
    }
    rx->mac_id = s; /* a failure is counted against this kid (lock-out) */
    struct rp_view pp;
    if (rp_cmp_protected_part(m, &rx->ex->arena, &pp) != RP_OK) {
        *why = "message too large";
        return RP_E_ARENA;
    }
    int rc =
        rp_mac_verify(m->header.protection_alg.raw, s->secret, s->secret_len, pp.p, pp.len,
                      m->protection.bytes.p, m->protection.bytes.len, rx->dcfg->pbm_max_iterations);
    if (rc == RP_E_BAD_ALG)
        *why = "MAC algorithm or its parameters not accepted";
    else if (rc != RP_OK)
        *why = "MAC does not verify";
    if (rc != RP_OK)
        return rc;
    /* the kid is an identity: what it may ask for is judged by authorize() in verify.c */
    ra_identity_mac(rx, s);
    return RP_OK;
}
#else
int ra_verify_mac(struct ra_exchange *rx, const char **why)
{
    (void)rx;
    *why = "MAC protection is not available in this build";
    return RP_E_WRONG_INTEGRITY;
}
#endif
