/* X.509 CRL view (RFC 5280 §5): what raproxy reads from the CRLs it is configured with —
 * the issuer and thisUpdate to answer a device's crlStatusList (RFC 9483 §4.3.4),
 * nextUpdate to reload a CRL when it is due, the revoked serial numbers and the signature
 * for the domain's revocation index (src/ra/trust.c). Structure only: the parser verifies
 * no signature; trust.c does, against the issuer, before a CRL is used. */
#ifndef RAPROXY_CRL_H
#define RAPROXY_CRL_H

#include "raproxy/der.h"
#include "raproxy/view.h"

#include <stddef.h>
#include <stdint.h>

/* Most CRLs one PEM file may hold. */
#define RP_CRL_MAX_PER_FILE 64u
/* Largest CRL file read (bytes). */
#define RP_CRL_MAX_FILE (64u * 1024u * 1024u)
/* When a CRL's nextUpdate has passed and the reload brought no fresher one, try again after
 * this long rather than reloading in a loop. */
#define RP_CRL_STALE_RETRY_S 60

#define RP_OID_CE_CRL_NUMBER "\x55\x1d\x14" /* 2.5.29.20 */
#define RP_OID_CE_IDP        "\x55\x1d\x1c" /* 2.5.29.28 issuingDistributionPoint */
#define RP_OID_CE_DELTA      "\x55\x1d\x1b" /* 2.5.29.27 deltaCRLIndicator */
#define RP_OID_CE_IAN        "\x55\x1d\x12" /* 2.5.29.18 issuerAltName */
#define RP_OID_CE_FRESHEST   "\x55\x1d\x2e" /* 2.5.29.46 freshestCRL */
#define RP_OID_CE_INVALIDITY "\x55\x1d\x18" /* 2.5.29.24 invalidityDate (entry) */
#define RP_OID_PE_AIA        "\x2b\x06\x01\x05\x05\x07\x01\x01" /* authorityInfoAccess */

struct rp_crl {
    struct rp_view raw;    /* CertificateList SEQUENCE */
    struct rp_view tbs;    /* TBSCertList SEQUENCE */
    struct rp_view issuer; /* Name TLV */
    int64_t this_update;   /* epoch seconds */
    int has_next_update;
    int64_t next_update;
    /* issuingDistributionPoint's distributionPoint: the DistributionPointName TLV inside
     * its [0], or absent */
    struct rp_view idp_name;
    struct rp_der_algid sig_alg; /* outer signatureAlgorithm (equal to the TBS one) */
    struct rp_der_bits sig;      /* signatureValue */
    struct rp_view revoked;      /* content of revokedCertificates, or absent */
    size_t n_revoked;            /* entries in it, each checked by the parser */
    /* A critical extension this parser does not understand, on the CRL or on an entry
     * (deltaCRLIndicator, certificateIssuer of indirect CRLs, …): RFC 5280 §5.2 says such
     * a CRL must not be used to decide revocation. */
    int unknown_critical;
};

/* Cursor over the revoked entries of a parsed CRL. */
struct rp_crl_iter {
    struct rp_der d;
};

/* Parse one DER CertificateList spanning exactly p[0..n). RP_OK or RP_E_DER_*. */
int rp_crl_parse(const uint8_t *p, size_t n, struct rp_crl *out);

/* The userCertificate serials of the revoked entries, in CRL order: begin, then next until
 * it returns 0. next: 1 with *serial the INTEGER content (as encoded, so equal serials are
 * equal bytes under DER), 0 at the end, < 0 on malformed input (not after a successful
 * rp_crl_parse of the same bytes). */
void rp_crl_revoked_begin(const struct rp_crl *c, struct rp_crl_iter *it);
int rp_crl_revoked_next(struct rp_crl_iter *it, struct rp_view *serial);

/* The CRL's nextUpdate in epoch seconds. RP_E_NOT_FOUND when the CRL has none (it is then
 * reloaded only on SIGHUP), RP_E_DER_* when crl_der is not a CRL. */
int rp_crl_next_update(struct rp_view crl_der, int64_t *out);

/* The next "X509 CRL" PEM block of text[0..len) at or after *pos: its DER in a malloc'ed
 * *der (free() it), *pos moved past the block. RP_E_NOT_FOUND when no block is left,
 * RP_E_DER_* for bad base64, RP_E_NOMEM. */
int rp_crl_pem_next(const char *text, size_t len, size_t *pos, uint8_t **der, size_t *der_len);

/* The earliest nextUpdate of the CRLs in a file (DER, or PEM with one or more CRLs), for
 * the reload timer. RP_E_NOT_FOUND when none carries one, RP_E_IO when the file cannot be
 * read, RP_E_DER_* when it holds something else. */
int rp_crl_file_next_update(const char *path, int64_t *out);

#endif
