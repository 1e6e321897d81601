/* libFuzzer target: the CRL parser on arbitrary bytes, as DER and as PEM. Every revoked
 * serial is walked (the revocation index does the same at load) and nextUpdate read. */
#include "raproxy/crl.h"
#include "raproxy/err.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void use_crl(const uint8_t *p, size_t n)
{
    struct rp_crl c;
    struct rp_crl_iter it;
    struct rp_view serial;
    int64_t t;
    size_t count = 0;
    if (rp_crl_parse(p, n, &c) != RP_OK)
        return;
    rp_crl_revoked_begin(&c, &it);
    while (rp_crl_revoked_next(&it, &serial) == 1)
        count++;
    /* the parser counted and checked every entry: the walk must agree */
    if (count != c.n_revoked)
        abort();
    rp_crl_next_update(c.raw, &t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    use_crl(data, size);
    size_t pos = 0, len;
    uint8_t *der;
    for (unsigned i = 0; i < RP_CRL_MAX_PER_FILE; i++) {
        int rc = rp_crl_pem_next((const char *)data, size, &pos, &der, &len);
        if (rc != RP_OK)
            break;
        use_crl(der, len);
        free(der);
    }
    return 0;
}
