/* libFuzzer target for the RFC 7512 PKCS#11 URI parser (ra.key, listeners[].tls.key): any
 * input either parses into NUL-terminated fields within their bounds or is refused with a
 * reason; never a read or write outside them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "raproxy/err.h"
#include "raproxy/p11uri.h"

/* Longer than any URI a configuration holds; keeps runs fast. */
#define FUZZ_MAX_URI 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_URI)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    struct rp_p11_uri u;
    const char *why = NULL;
    if (rp_p11_uri_parse(s, &u, &why) == RP_OK) {
        /* every text field is terminated inside its array */
        if (strnlen(u.token, sizeof u.token) == sizeof u.token ||
            strnlen(u.object, sizeof u.object) == sizeof u.object ||
            strnlen(u.pin_source, sizeof u.pin_source) == sizeof u.pin_source ||
            strnlen(u.module_path, sizeof u.module_path) == sizeof u.module_path ||
            u.id_len > sizeof u.id || (!u.object[0] && !u.has_id))
            abort();
    } else if (!why) {
        abort();
    }
    free(s);
    return 0;
}
