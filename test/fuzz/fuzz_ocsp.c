/* libFuzzer target: the OCSP request and response parsers on arbitrary bytes (the relay
 * parses a device's request and the VA's answer), and the base64 of GET requests. Every
 * certificate a response carries goes through the certificate view too. */
#include "raproxy/cert.h"
#include "raproxy/ocsp.h"

#include <stddef.h>
#include <stdint.h>

#define FUZZ_B64_CAP 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rp_ocsp_req req;
    struct rp_ocsp_resp resp;
    struct rp_der_err err;
    struct rp_cert c;
    uint8_t b64[FUZZ_B64_CAP];
    size_t n;
    rp_ocsp_req_parse(data, size, &req, &err);
    if (rp_ocsp_resp_parse(data, size, &resp, &err) == 0)
        for (size_t i = 0; i < resp.n_certs; i++)
            rp_cert_parse(resp.certs[i].p, resp.certs[i].len, &c);
    if (rp_ocsp_b64_decode((const char *)data, size, b64, sizeof b64, &n) == 0)
        rp_ocsp_req_parse(b64, n, &req, &err);
    return 0;
}
