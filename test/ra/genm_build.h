/* Test helpers shared by test/ra/test_genm.c and test/integration/test_pki_info.c: build
 * genm requests (InfoTypes OpenSSL 3.0's CLI cannot send, such as crlStatusList) and read
 * the RA's genp back. Header-only; everything static. */
#ifndef RP_TEST_GENM_BUILD_H
#define RP_TEST_GENM_BUILD_H

#include "raproxy/arena.h"
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/crl.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/sig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define TG_OID_ROOT_CA_CERT    "\x2b\x06\x01\x05\x05\x07\x04\x14"
#define TG_OID_CRL_STATUS_LIST "\x2b\x06\x01\x05\x05\x07\x04\x16"
#define TG_OID_CRLS            "\x2b\x06\x01\x05\x05\x07\x04\x17"
#define TG_OID_SIGN_KEY_TYPES  "\x2b\x06\x01\x05\x05\x07\x04\x02"

/* Everything a request keeps alive: the arena its views point into. */
struct tg_req {
    uint8_t txid[16], nonce[16];
    struct rp_view der;
};

/* PEM file → DER of its first certificate (malloc'ed). */
static inline uint8_t *tg_cert_der(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char pem[65536];
    size_t n = fread(pem, 1, sizeof pem - 1, f);
    fclose(f);
    pem[n] = 0;
    const char *b = strstr(pem, "-----BEGIN CERTIFICATE-----");
    const char *e = b ? strstr(b, "-----END CERTIFICATE-----") : NULL;
    if (!e)
        return NULL;
    e += strlen("-----END CERTIFICATE-----");
    /* base64 between the lines, decoded by hand to stay independent of wolfSSL here */
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t *out = malloc((size_t)(e - b));
    size_t o = 0;
    unsigned acc = 0, bits = 0;
    for (const char *p = b + strlen("-----BEGIN CERTIFICATE-----"); p < e && *p != '-'; p++) {
        const char *q = *p ? strchr(tbl, *p) : NULL;
        if (!q)
            continue;
        acc = (acc << 6) | (unsigned)(q - tbl);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *len = o;
    return out;
}

/* The ITAV SEQUENCE { type, value } (value may be absent). */
static inline struct rp_view tg_itav(struct rp_arena *a, struct rp_view type, struct rp_view value)
{
    struct rp_derw w;
    struct rp_view out = RP_VIEW_NULL;
    rp_derw_init(&w, a, type.len + value.len + 32);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, type);
    if (rp_view_present(value))
        rp_derw_raw(&w, value);
    rp_derw_end(&w);
    rp_derw_finish(&w, &out);
    return out;
}

/* CRLStatusList with one CRLStatus { issuer [1] { directoryName issuer }, thisUpdate }
 * (this_update < 0: absent). */
static inline struct rp_view tg_crl_status(struct rp_arena *a, struct rp_view issuer,
                                           int64_t this_update)
{
    struct rp_derw w;
    struct rp_view out = RP_VIEW_NULL;
    rp_derw_init(&w, a, issuer.len + 64);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_CTX_CONS(1));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_CTX_CONS(4));
    rp_derw_raw(&w, issuer);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    if (this_update >= 0)
        rp_derw_gentime(&w, this_update);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_finish(&w, &out);
    return out;
}

/* A genm from `sender` (Name TLV) with the given ITAVs; protected with key/alg and the
 * certificates `extra` when key is not NULL. */
static inline int tg_genm(struct rp_arena *a, struct tg_req *r, struct rp_view sender,
                          const struct rp_view *itavs, size_t n, struct rp_privkey *key,
                          const struct rp_view *extra, size_t n_extra)
{
    if (getrandom(r->txid, sizeof r->txid, 0) != sizeof r->txid ||
        getrandom(r->nonce, sizeof r->nonce, 0) != sizeof r->nonce)
        return RP_E_CRYPTO;
    enum rp_sig_alg alg = key ? rp_privkey_default_alg(key) : RP_SIG_ECDSA_SHA256;
    struct rp_derw w;
    struct rp_view hdr, body, sig = RP_VIEW_NULL;
    rp_derw_init(&w, a, sender.len + 256);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, 2);
    rp_derw_begin(&w, RP_DER_CTX_CONS(4));
    rp_derw_raw(&w, sender);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(4));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(0)); /* messageTime: domains require it */
    rp_derw_gentime(&w, (int64_t)time(NULL));
    rp_derw_end(&w);
    if (key) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(1));
        rp_derw_raw(&w, rp_sig_alg_der(alg));
        rp_derw_end(&w);
    }
    rp_derw_begin(&w, RP_DER_CTX_CONS(4));
    rp_derw_octets(&w, rp_view_make(r->txid, sizeof r->txid));
    rp_derw_end(&w);
    rp_derw_begin(&w, RP_DER_CTX_CONS(5));
    rp_derw_octets(&w, rp_view_make(r->nonce, sizeof r->nonce));
    rp_derw_end(&w);
    rp_derw_end(&w);
    int rc = rp_derw_finish(&w, &hdr);
    size_t room = 32;
    for (size_t i = 0; i < n; i++)
        room += itavs[i].len + 8;
    if (rc == RP_OK)
        rc = rp_derw_init(&w, a, room);
    rp_derw_begin(&w, RP_DER_CTX_CONS(RP_CMP_GENM));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    for (size_t i = 0; i < n; i++)
        rp_derw_raw(&w, itavs[i]);
    rp_derw_end(&w);
    rp_derw_end(&w);
    if (rc == RP_OK)
        rc = rp_derw_finish(&w, &body);
    if (rc == RP_OK && key) {
        struct rp_view pp;
        uint8_t *s = rp_arena_alloc(a, RP_SIG_MAX);
        size_t slen = 0;
        rc = rp_cmp_enc_protected_part(a, hdr, body, &pp);
        if (rc == RP_OK)
            rc = rp_privkey_sign(key, alg, pp.p, pp.len, s, RP_SIG_MAX, &slen);
        sig = rp_view_make(s, slen);
    }
    if (rc == RP_OK)
        rc = rp_cmp_enc_message(a, hdr, body, sig, extra, n_extra, &r->der);
    return rc;
}

/* RA signature of an answer over its ProtectedPart with the RA certificate's key. */
static inline int tg_verify_ra(const struct rp_cmp_msg *m, struct rp_view ra_cert_der,
                               struct rp_arena *a)
{
    struct rp_cert c;
    struct rp_pubkey *pk;
    enum rp_sig_alg alg;
    struct rp_view pp;
    int rc = rp_cert_parse(ra_cert_der.p, ra_cert_der.len, &c);
    if (rc == RP_OK)
        rc = rp_sig_alg_parse(m->header.protection_alg.raw, &alg);
    if (rc == RP_OK)
        rc = rp_cmp_protected_part(m, a, &pp);
    if (rc != RP_OK || (rc = rp_pubkey_from_spki(c.spki, &pk)) != RP_OK)
        return rc;
    rc = rp_sig_verify(alg, pk, pp.p, pp.len, m->protection.bytes.p, m->protection.bytes.len);
    rp_pubkey_free(pk);
    return rc;
}

#endif
