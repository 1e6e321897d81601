/* PasswordBasedMac and PBMAC1 over wolfCrypt's hashes, HMAC and PBKDF2. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/pwdbased.h>

#include "raproxy/config.h"
#include "raproxy/der.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/guard.h"
#include "raproxy/mac.h"

#include <stdbool.h>
#include <string.h>

/* Room for either AlgorithmIdentifier the builders write (~80 bytes plus the salt). */
#define ALGID_CAP (96u + RP_MAC_MAX_SALT)

_Static_assert(RP_MAC_MIN_ITERATIONS == RP_CFG_PBM_MIN_ITERATIONS,
               "the configuration's lower bound for pbm_max_iterations is the verifier's");

enum scheme { SCHEME_PBM, SCHEME_PBMAC1 };

struct mac_params {
    enum scheme scheme;
    struct rp_view salt;
    uint32_t iterations;
    enum wc_HashType kdf_hash; /* PBM: the OWF; PBMAC1: the PBKDF2 PRF's hash */
    enum wc_HashType mac_hash; /* the HMAC */
    size_t key_len;            /* PBMAC1 only */
};

static const struct {
    enum rp_mac_hash id;
    enum wc_HashType wc;
    struct rp_view hash_oid, hmac_oid;
} hashes[] = {
    {RP_MAC_SHA1, WC_HASH_TYPE_SHA, RP_OID_VIEW(RP_OID_SHA1), RP_OID_VIEW(RP_OID_HMAC_SHA1)},
    {RP_MAC_SHA256, WC_HASH_TYPE_SHA256, RP_OID_VIEW(RP_OID_SHA256),
     RP_OID_VIEW(RP_OID_HMAC_SHA256)},
    {RP_MAC_SHA384, WC_HASH_TYPE_SHA384, RP_OID_VIEW(RP_OID_SHA384),
     RP_OID_VIEW(RP_OID_HMAC_SHA384)},
    {RP_MAC_SHA512, WC_HASH_TYPE_SHA512, RP_OID_VIEW(RP_OID_SHA512),
     RP_OID_VIEW(RP_OID_HMAC_SHA512)},
};
#define NHASHES (sizeof hashes / sizeof hashes[0])

static bool params_absent_or_null(struct rp_view p)
{
    return !rp_view_present(p) || (p.len == 2 && p.p[0] == RP_DER_NULL && p.p[1] == 0);
}

/* An AlgorithmIdentifier naming a hash (hmac = false) or an HMAC (hmac = true), with NULL
 * or absent parameters. Returns the hashes[] index or -1. */
static int hash_from_algid(const struct rp_der *d, const struct rp_der_tlv *t, bool hmac)
{
    struct rp_der_algid ai;
    if (rp_der_algid(d, t, &ai) < 0 || !params_absent_or_null(ai.params))
        return -1;
    for (size_t i = 0; i < NHASHES; i++)
        if (rp_view_eq(ai.oid, hmac ? hashes[i].hmac_oid : hashes[i].hash_oid))
            return (int)i;
    return -1;
}

static int read_iterations(const struct rp_der *d, const struct rp_der_tlv *t, uint32_t max,
                           uint32_t *out)
{
    int64_t v;
    if (t->ident != RP_DER_INTEGER || rp_der_int64(d, t, &v) < 0 || v < RP_MAC_MIN_ITERATIONS ||
        v > (int64_t)max)
        return RP_E_BAD_ALG;
    *out = (uint32_t)v;
    return RP_OK;
}

static int read_salt(const struct rp_der_tlv *t, struct rp_view *out)
{
    if (t->ident != RP_DER_OCTET_STRING || t->val.len < RP_MAC_MIN_SALT ||
        t->val.len > RP_MAC_MAX_SALT)
        return RP_E_BAD_ALG;
    *out = t->val;
    return RP_OK;
}

/* PBMParameter ::= SEQUENCE { salt OCTET STRING, owf AlgorithmIdentifier,
 *                             iterationCount INTEGER, mac AlgorithmIdentifier } */
static int parse_pbm(struct rp_view params, uint32_t max_iter, struct mac_params *mp)
{
    struct rp_der top, c;
    struct rp_der_tlv t;
    int h;
    rp_der_init(&top, params.p, params.len, NULL);
    if (rp_der_expect_enter(&top, RP_DER_SEQUENCE, &c, &t, NULL) < 0 ||
        rp_der_finish(&top, NULL) < 0 || rp_der_next(&c, &t) < 0 || read_salt(&t, &mp->salt) < 0)
        return RP_E_BAD_ALG;
    if (rp_der_next(&c, &t) < 0 || (h = hash_from_algid(&c, &t, false)) < 0)
        return RP_E_BAD_ALG;
    mp->kdf_hash = hashes[h].wc;
    if (rp_der_next(&c, &t) < 0 || read_iterations(&c, &t, max_iter, &mp->iterations) < 0)
        return RP_E_BAD_ALG;
    if (rp_der_next(&c, &t) < 0 || (h = hash_from_algid(&c, &t, true)) < 0 ||
        rp_der_finish(&c, NULL) < 0)
        return RP_E_BAD_ALG;
    mp->mac_hash = hashes[h].wc;
    mp->scheme = SCHEME_PBM;
    return RP_OK;
}

/* PBKDF2-params ::= SEQUENCE { salt CHOICE { specified OCTET STRING, ... },
 *   iterationCount INTEGER, keyLength INTEGER OPTIONAL, prf AlgorithmIdentifier DEFAULT
 *   hmacWithSHA1 }. The default PRF (SHA-1) is refused: RFC 9481 §6.1.1 wants SHA-2. */
static int parse_pbkdf2(struct rp_der *outer, const struct rp_der_tlv *kdf, uint32_t max_iter,
                        struct mac_params *mp)
{
    struct rp_der_algid ai;
    struct rp_der p, c;
    struct rp_der_tlv t;
    int64_t key_len;
    int h;
    if (rp_der_algid(outer, kdf, &ai) < 0 || !rp_oid_is(ai.oid, RP_OID_PBKDF2) ||
        !rp_view_present(ai.params))
        return RP_E_BAD_ALG;
    rp_der_init(&p, ai.params.p, ai.params.len, NULL);
    if (rp_der_expect_enter(&p, RP_DER_SEQUENCE, &c, &t, NULL) < 0 || rp_der_finish(&p, NULL) < 0 ||
        rp_der_next(&c, &t) < 0 || read_salt(&t, &mp->salt) < 0 || rp_der_next(&c, &t) < 0 ||
        read_iterations(&c, &t, max_iter, &mp->iterations) < 0 || rp_der_next(&c, &t) < 0)
        return RP_E_BAD_ALG;
    mp->key_len = 0; /* absent: the MAC's hash size, set by the caller */
    if (t.ident == RP_DER_INTEGER) {
        /* the lower bound (the MAC's output size) is checked once the MAC is known */
        if (rp_der_int64(&c, &t, &key_len) < 0 || key_len < 1 || key_len > RP_MAC_MAX)
            return RP_E_BAD_ALG;
        mp->key_len = (size_t)key_len;
        if (rp_der_next(&c, &t) < 0)
            return RP_E_BAD_ALG;
    }
    if ((h = hash_from_algid(&c, &t, true)) < 1 || rp_der_finish(&c, NULL) < 0)
        return RP_E_BAD_ALG;
    mp->kdf_hash = hashes[h].wc;
    return RP_OK;
}

/* PBMAC1-params ::= SEQUENCE { keyDerivationFunc AlgorithmIdentifier {PBKDF2},
 *                              messageAuthScheme AlgorithmIdentifier } */
static int parse_pbmac1(struct rp_view params, uint32_t max_iter, struct mac_params *mp)
{
    struct rp_der top, c;
    struct rp_der_tlv t;
    int h;
    rp_der_init(&top, params.p, params.len, NULL);
    if (rp_der_expect_enter(&top, RP_DER_SEQUENCE, &c, &t, NULL) < 0 ||
        rp_der_finish(&top, NULL) < 0 || rp_der_next(&c, &t) < 0 ||
        parse_pbkdf2(&c, &t, max_iter, mp) < 0)
        return RP_E_BAD_ALG;
    /* index 0 is SHA-1: not for PBMAC1 */
    if (rp_der_next(&c, &t) < 0 || (h = hash_from_algid(&c, &t, true)) < 1 ||
        rp_der_finish(&c, NULL) < 0)
        return RP_E_BAD_ALG;
    mp->mac_hash = hashes[h].wc;
    /* A key shorter than the MAC makes the MAC only as strong as the key: with keyLength 1
     * an HMAC key has 256 values and a blind guess forges the MAC (RFC 9481 §6.1.1 asks
     * for a key as long as the MAC's output). */
    size_t mac_len = (size_t)wc_HashGetDigestSize(mp->mac_hash);
    if (mp->key_len == 0)
        mp->key_len = mac_len;
    else if (mp->key_len < mac_len)
        return RP_E_BAD_ALG;
    mp->scheme = SCHEME_PBMAC1;
    return RP_OK;
}

static int parse(struct rp_view alg_id_tlv, uint32_t max_iter, struct mac_params *mp)
{
    struct rp_der d;
    struct rp_der_tlv t;
    struct rp_der_algid ai;
    if (!alg_id_tlv.p || rp_der_parse_one(alg_id_tlv.p, alg_id_tlv.len, &t, NULL) < 0)
        return RP_E_BAD_ALG;
    rp_der_init(&d, alg_id_tlv.p, alg_id_tlv.len, NULL);
    if (rp_der_algid(&d, &t, &ai) < 0 || !rp_view_present(ai.params))
        return RP_E_BAD_ALG;
    if (rp_oid_is(ai.oid, RP_OID_PBM))
        return parse_pbm(ai.params, max_iter, mp);
    if (rp_oid_is(ai.oid, RP_OID_PBMAC1))
        return parse_pbmac1(ai.params, max_iter, mp);
    return RP_E_BAD_ALG;
}

/* PBM key: OWF(secret || salt), then OWF of that, iterationCount times in all. */
static int pbm_key(const struct mac_params *mp, const uint8_t *secret, size_t secret_len,
                   uint8_t *key, size_t *key_len)
{
    wc_HashAlg h;
    int sz = wc_HashGetDigestSize(mp->kdf_hash);
    int bad = sz <= 0 || wc_HashInit(&h, mp->kdf_hash) != 0;
    if (bad)
        return RP_E_CRYPTO;
    bad = wc_HashUpdate(&h, mp->kdf_hash, secret, (word32)secret_len) != 0 ||
          wc_HashUpdate(&h, mp->kdf_hash, mp->salt.p, (word32)mp->salt.len) != 0 ||
          wc_HashFinal(&h, mp->kdf_hash, key) != 0;
    wc_HashFree(&h, mp->kdf_hash);
    for (uint32_t i = 1; !bad && i < mp->iterations; i++)
        bad = wc_Hash(mp->kdf_hash, key, (word32)sz, key, (word32)sz) != 0;
    *key_len = (size_t)sz;
    return bad ? RP_E_CRYPTO : RP_OK;
}

static int compute(const struct mac_params *mp, const uint8_t *secret, size_t secret_len,
                   const uint8_t *data, size_t n, uint8_t *out, size_t *outlen)
{
    uint8_t key[WC_MAX_DIGEST_SIZE];
    size_t key_len = 0;
    Hmac hmac;
    int rc = RP_OK;
    if (mp->scheme == SCHEME_PBM) {
        rc = pbm_key(mp, secret, secret_len, key, &key_len);
    } else {
        key_len = mp->key_len;
        if (wc_PBKDF2(key, secret, (int)secret_len, mp->salt.p, (int)mp->salt.len,
                      (int)mp->iterations, (int)key_len, (int)mp->kdf_hash) != 0)
            rc = RP_E_CRYPTO;
    }
    if (rc < 0)
        goto out;
    if (wc_HmacInit(&hmac, NULL, INVALID_DEVID) != 0) {
        rc = RP_E_CRYPTO;
        goto out;
    }
    if (wc_HmacSetKey(&hmac, (int)mp->mac_hash, key, (word32)key_len) != 0 ||
        wc_HmacUpdate(&hmac, data, (word32)n) != 0 || wc_HmacFinal(&hmac, out) != 0)
        rc = RP_E_CRYPTO;
    wc_HmacFree(&hmac);
    *outlen = (size_t)wc_HashGetDigestSize(mp->mac_hash);
out:
    explicit_bzero(key, sizeof key);
    return rc;
}

static int check_args(const uint8_t *secret, size_t secret_len, const uint8_t *data, size_t n)
{
    if ((!secret && secret_len > 0) || (!data && n > 0) || secret_len > INT32_MAX || n > UINT32_MAX)
        return RP_E_INVAL;
    return RP_OK;
}

int rp_mac_verify(struct rp_view alg_id_tlv, const uint8_t *secret, size_t secret_len,
                  const uint8_t *data, size_t n, const uint8_t *mac, size_t maclen,
                  uint32_t max_iterations)
{
    struct mac_params mp;
    uint8_t want[RP_MAC_MAX];
    size_t want_len = 0;
    int rc;
    rp_guard_crypto();
    if ((rc = check_args(secret, secret_len, data, n)) < 0)
        return rc;
    if ((rc = parse(alg_id_tlv, max_iterations, &mp)) < 0)
        return rc;
    if ((rc = compute(&mp, secret, secret_len, data, n, want, &want_len)) < 0)
        return rc;
    /* Constant time over the whole MAC: no early exit tells how many bytes matched. */
    uint8_t diff = (uint8_t)(maclen != want_len || !mac);
    for (size_t i = 0; mac && i < want_len && i < maclen; i++)
        diff |= (uint8_t)(mac[i] ^ want[i]);
    explicit_bzero(want, sizeof want);
    return diff ? RP_E_BAD_MESSAGE_CHECK : RP_OK;
}

int rp_mac_protect(struct rp_view alg_id_tlv, const uint8_t *secret, size_t secret_len,
                   const uint8_t *data, size_t n, uint8_t *out, size_t cap, size_t *outlen,
                   uint32_t max_iterations)
{
    struct mac_params mp;
    uint8_t mac[RP_MAC_MAX];
    size_t len = 0;
    int rc;
    rp_guard_crypto();
    if ((rc = check_args(secret, secret_len, data, n)) < 0)
        return rc;
    if ((rc = parse(alg_id_tlv, max_iterations, &mp)) < 0)
        return rc;
    if (!out || !outlen || cap < (size_t)wc_HashGetDigestSize(mp.mac_hash))
        return RP_E_INVAL;
    if ((rc = compute(&mp, secret, secret_len, data, n, mac, &len)) < 0)
        return rc;
    memcpy(out, mac, len);
    *outlen = len;
    return RP_OK;
}

/* ---- AlgorithmIdentifier builders ---- */

static void write_algid(struct rp_derw *w, struct rp_view oid, bool null_params)
{
    rp_derw_begin(w, RP_DER_SEQUENCE);
    rp_derw_oid(w, oid);
    if (null_params)
        rp_derw_null(w);
    rp_derw_end(w);
}

static bool salt_ok(struct rp_view salt)
{
    return salt.p && salt.len >= RP_MAC_MIN_SALT && salt.len <= RP_MAC_MAX_SALT;
}

int rp_mac_pbm_algid(struct rp_arena *a, enum rp_mac_hash owf, enum rp_mac_hash mac,
                     struct rp_view salt, uint32_t iterations, struct rp_view *out)
{
    struct rp_derw w;
    int rc;
    if ((unsigned)owf >= NHASHES || (unsigned)mac >= NHASHES || !salt_ok(salt) ||
        iterations < RP_MAC_MIN_ITERATIONS)
        return RP_E_INVAL;
    if ((rc = rp_derw_init(&w, a, ALGID_CAP)) < 0)
        return rc;
    /* Hash and HMAC identifiers without parameters, as OpenSSL writes them. */
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_PBM));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_octets(&w, salt);
    write_algid(&w, hashes[owf].hash_oid, false);
    rp_derw_int64(&w, RP_DER_INTEGER, iterations);
    write_algid(&w, hashes[mac].hmac_oid, false);
    rp_derw_end(&w);
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}

int rp_mac_pbmac1_algid(struct rp_arena *a, enum rp_mac_hash prf, enum rp_mac_hash mac,
                        struct rp_view salt, uint32_t iterations, struct rp_view *out)
{
    struct rp_derw w;
    int rc;
    if ((unsigned)prf >= NHASHES || (unsigned)mac >= NHASHES || prf == RP_MAC_SHA1 ||
        mac == RP_MAC_SHA1 || !salt_ok(salt) || iterations < RP_MAC_MIN_ITERATIONS)
        return RP_E_INVAL;
    if ((rc = rp_derw_init(&w, a, ALGID_CAP)) < 0)
        return rc;
    /* RFC 8018 Appendix B.1: HMAC identifiers carry NULL parameters. */
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_PBMAC1));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, RP_OID_VIEW(RP_OID_PBKDF2));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_octets(&w, salt);
    rp_derw_int64(&w, RP_DER_INTEGER, iterations);
    rp_derw_int64(&w, RP_DER_INTEGER, wc_HashGetDigestSize(hashes[mac].wc));
    write_algid(&w, hashes[prf].hmac_oid, true);
    rp_derw_end(&w);
    rp_derw_end(&w);
    write_algid(&w, hashes[mac].hmac_oid, true);
    rp_derw_end(&w);
    rp_derw_end(&w);
    return rp_derw_finish(&w, out);
}
