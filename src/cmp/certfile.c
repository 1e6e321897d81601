/* Certificate files: the one loader for every file of certificates raproxy reads (trust
 * anchors, intermediates, the RA's chain, administrators, OCSP validation certificates).
 * PEM text is decoded by wolfCrypt; each certificate is checked with rp_cert_parse. */
#include "raproxy/cert.h"
#include "raproxy/err.h"
#include "raproxy/file.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include <stdlib.h>
#include <string.h>

#define PEM_CERT_BEGIN "-----BEGIN CERTIFICATE-----"
#define PEM_CERT_END   "-----END CERTIFICATE-----"

static int add(struct rp_cert_file *f, size_t max_certs, const uint8_t *der, size_t len)
{
    struct rp_cert c;
    if (rp_cert_parse(der, len, &c) != RP_OK || f->n >= max_certs)
        return RP_E_KEY_LOAD;
    f->ders[f->n++] = rp_view_make(der, len);
    return RP_OK;
}

/* Each CERTIFICATE block of text[0..len), decoded one after the other into f->der. */
static int pem_blocks(struct rp_cert_file *f, size_t max_certs, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    size_t used = 0;
    int rc = RP_OK;
    while (rc == RP_OK && (p = rp_memfind(p, (size_t)(end - p), PEM_CERT_BEGIN)) != NULL) {
        const char *e = rp_memfind(p, (size_t)(end - p), PEM_CERT_END);
        if (!e)
            return RP_E_KEY_LOAD;
        e += strlen(PEM_CERT_END);
        int n = wc_CertPemToDer((const unsigned char *)p, (int)(e - p), f->der + used,
                                (int)(len - used), CERT_TYPE);
        rc = n > 0 ? add(f, max_certs, f->der + used, (size_t)n) : RP_E_KEY_LOAD;
        used += n > 0 ? (size_t)n : 0;
        p = e;
    }
    return rc;
}

int rp_cert_file_load(const char *path, size_t max_bytes, size_t max_certs,
                      struct rp_cert_file *out)
{
    uint8_t *data;
    size_t len;
    memset(out, 0, sizeof *out);
    int rc = rp_file_read(path, max_bytes, &data, &len);
    if (rc != RP_OK)
        return rc;
    /* DER is shorter than its base64, and a file holds at most one certificate per block */
    out->der = malloc(len ? len : 1);
    out->ders = calloc(max_certs ? max_certs : 1, sizeof *out->ders);
    if (!out->der || !out->ders)
        rc = RP_E_NOMEM;
    else if (len && data[0] == 0x30) /* a DER SEQUENCE: the file is one certificate */
        rc = add(out, max_certs, memcpy(out->der, data, len), len);
    else
        rc = pem_blocks(out, max_certs, (const char *)data, len);
    free(data);
    if (rc == RP_OK && out->n == 0)
        rc = RP_E_KEY_LOAD;
    if (rc != RP_OK)
        rp_cert_file_free(out);
    return rc;
}

void rp_cert_file_free(struct rp_cert_file *f)
{
    free(f->der);
    free(f->ders);
    memset(f, 0, sizeof *f);
}
