/* libFuzzer target: the PBM / PBMAC1 parameter parser and MAC check on arbitrary bytes.
 * The input is an AlgorithmIdentifier followed by the protected data; the iteration cap is
 * kept low so that a valid identifier costs little (the real cap is checked before any
 * hashing, which is what this target is meant to keep true). Seeds: test/corpus/mac/. */
#include "raproxy/der.h"
#include "raproxy/mac.h"

#include <stddef.h>
#include <stdint.h>

#define FUZZ_MAX_ITER 2000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t secret[] = "fuzz-secret";
    uint8_t mac[RP_MAC_MAX] = {0};
    size_t n = 0;
    struct rp_der d;
    struct rp_der_tlv t;
    /* the first TLV is the AlgorithmIdentifier, the rest the data it protects */
    struct rp_view alg = rp_view_make(data, size), rest = rp_view_make(data + size, 0);
    rp_der_init(&d, data, size, NULL);
    if (rp_der_next(&d, &t) >= 0) {
        alg = t.raw;
        rest = rp_view_make(t.raw.p + t.raw.len, size - t.raw.len);
    }
    rp_mac_verify(alg, secret, sizeof secret - 1, rest.p, rest.len, mac, 32, FUZZ_MAX_ITER);
    rp_mac_protect(alg, secret, sizeof secret - 1, rest.p, rest.len, mac, sizeof mac, &n,
                   FUZZ_MAX_ITER);
    return 0;
}
