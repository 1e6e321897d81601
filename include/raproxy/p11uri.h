/* RFC 7512 PKCS#11 URIs naming a private key: "pkcs11:token=raproxy;object=ra-key". Parsing
 * only; opening what a URI names is src/cmp/pkcs11.c's job (pkcs11.h). */
#ifndef RAPROXY_P11URI_H
#define RAPROXY_P11URI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The scheme prefix; a key setting starting with it is a URI, anything else a PEM file. */
#define RP_P11_SCHEME "pkcs11:"
/* Longest PIN read from a file or the environment. */
#define RP_P11_PIN_MAX 256u
/* CKA_LABEL / CKA_ID lengths wolfSSL can carry in a key (ECC_MAX_LABEL_LEN, ECC_MAX_ID_LEN). */
#define RP_P11_LABEL_MAX 32u
#define RP_P11_ID_MAX    32u

/* What a URI selects. Strings are NUL-terminated, percent-decoded; empty = not given. */
struct rp_p11_uri {
    /* token attributes (CK_TOKEN_INFO) */
    char token[33], manufacturer[33], model[17], serial[17];
    /* slot attributes (CK_SLOT_INFO) */
    char slot_description[65], slot_manufacturer[33];
    bool has_slot_id;
    unsigned long slot_id;
    /* object attributes */
    char object[RP_P11_LABEL_MAX + 1];
    uint8_t id[RP_P11_ID_MAX];
    size_t id_len;
    bool has_id;
    /* query attributes: where the PIN and the module are (may be empty) */
    char pin_source[512];
    char pin_value[RP_P11_PIN_MAX + 1];
    char module_path[512];
};

/* true when s is a PKCS#11 URI (the scheme is case-insensitive). */
bool rp_p11_is_uri(const char *s);
/* Parse an RFC 7512 URI that names one private key. RP_OK, or RP_E_CONFIG with *why a
 * static explanation ("unknown attribute", "type must be private", "object label longer
 * than 32 bytes", "no object or id: which key?"…). */
int rp_p11_uri_parse(const char *uri, struct rp_p11_uri *out, const char **why);

#endif
