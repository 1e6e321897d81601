/* The OCSP relay (RFC 6960 over HTTP, RFC 5019 GET form): devices ask the RA, the RA asks
 * the configured Validation Authority, checks the answer is genuine and relays it.
 *
 * A verified response is cached by CertID (raproxy/ocsp_cache.h) until its nextUpdate;
 * requests with a nonce bypass the cache. A VA that is down, slow or answers something
 * unverifiable gives the device tryLater (OCSPResponse status 3), never a hang and never
 * the unverified bytes.
 *
 * Each loop has its own upstream pool to the VA, built with the loop's other resources when
 * a snapshot is installed (src/ra/resources.c) and replaced when a new snapshot changes the
 * `validation` section; the responder certificates are loaded with the snapshot. */
#ifndef RAPROXY_OCSP_RELAY_H
#define RAPROXY_OCSP_RELAY_H

#include "raproxy/view.h"

#include <stdbool.h>

struct rp_config;
struct rp_exchange;

#define RP_OCSP_REQUEST_TYPE  "application/ocsp-request"
#define RP_OCSP_RESPONSE_TYPE "application/ocsp-response"

/* True when the request path is the validation path ("/ocsp", "/ocsp/") or below it
 * ("/ocsp/<base64>"); false when cfg has no validation section. */
bool rp_ocsp_route(const struct rp_config *cfg, struct rp_view path);
/* The exchange handler for routed paths: POST application/ocsp-request, GET
 * <path>/<base64 (URL-escaped) DER request>. Answers exactly once. Loop thread. */
void rp_ocsp_handle(struct rp_exchange *ex);

#endif
