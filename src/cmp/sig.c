/* Signature algorithms, public and private keys over wolfCrypt. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include "raproxy/der.h"
#include "raproxy/err.h"
#include "raproxy/file.h"
#include "raproxy/guard.h"
#include "raproxy/pkcs11.h"
#include "raproxy/pool.h"
#include "raproxy/sig.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Key copies per private key: signers on different threads each take one, so the pool
 * should be about the number of workers; more costs memory and an RNG each. */
#define PRIVKEY_MAX_SLOTS 64u
/* Largest PEM key file read. */
#define PEM_MAX_BYTES (64u * 1024u)
/* Public key material as compared by rp_privkey_matches_spki: an uncompressed P-521 point
 * (133 bytes), or an RSA-4096 modulus and exponent with their lengths. */
#define PUB_MATERIAL_MAX 1100u
/* DigestInfo of SHA-512: 19 bytes of header + 64. */
#define DIGEST_INFO_MAX 96u

#define OID_MGF1 "\x2a\x86\x48\x86\xf7\x0d\x01\x01\x08" /* 1.2.840.113549.1.1.8 */

union key {
    ecc_key ec;
    RsaKey rsa;
    ed25519_key ed;
};

struct rp_pubkey {
    enum rp_key_type type;
    enum rp_ec_curve curve;
    unsigned bits;
    pthread_mutex_t lock; /* wolfCrypt's RsaKey carries per-operation state */
    union key u;
};

struct slot {
    pthread_mutex_t lock;
    bool key_ok, rng_ok;
    WC_RNG rng;
    union key u;
};

struct rp_privkey {
    struct rp_p11_key *p11; /* NULL: the key is in memory */
    enum rp_key_type type;
    enum rp_ec_curve curve;
    unsigned bits;
    unsigned nslots;
    uint8_t pub[PUB_MATERIAL_MAX];
    size_t pub_len;
    struct slot slots[];
};

/* ---- algorithms ---- */

struct alg_info {
    const char *name;
    const char *policy; /* NULL for ECDSA: depends on the curve */
    enum rp_key_type key;
    enum wc_HashType hash; /* WC_HASH_TYPE_NONE for Ed25519 (hashes inside) */
    int mgf;               /* PSS only */
    bool pss;
    const uint8_t *der;
    size_t der_len;
};

#define DER(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* Canonical AlgorithmIdentifiers: RFC 5758 §3.2 (ECDSA, parameters absent), RFC 8410 §3
 * (Ed25519, absent), RFC 4055 §5 (PKCS#1 v1.5 with NULL, as OpenSSL and wolfSSL write),
 * RFC 4055 §3.1 (PSS: hash and MGF1 hash with NULL parameters, salt = hash length, the
 * trailerField default omitted). */
static const struct alg_info algs[RP_SIG_ALG_COUNT] = {
    [RP_SIG_ECDSA_SHA256] = {"ecdsa-sha256", NULL, RP_KEY_EC, WC_HASH_TYPE_SHA256, 0, false,
                             DER("\x30\x0a\x06\x08" RP_OID_ECDSA_SHA256)},
    [RP_SIG_ECDSA_SHA384] = {"ecdsa-sha384", NULL, RP_KEY_EC, WC_HASH_TYPE_SHA384, 0, false,
                             DER("\x30\x0a\x06\x08" RP_OID_ECDSA_SHA384)},
    [RP_SIG_ECDSA_SHA512] = {"ecdsa-sha512", NULL, RP_KEY_EC, WC_HASH_TYPE_SHA512, 0, false,
                             DER("\x30\x0a\x06\x08" RP_OID_ECDSA_SHA512)},
    [RP_SIG_ED25519] = {"ed25519", "ed25519", RP_KEY_ED25519, WC_HASH_TYPE_NONE, 0, false,
                        DER("\x30\x05\x06\x03" RP_OID_ED25519)},
    [RP_SIG_RSA_SHA256] = {"rsa-pkcs1-sha256", "rsa-pkcs1", RP_KEY_RSA, WC_HASH_TYPE_SHA256, 0,
                           false, DER("\x30\x0d\x06\x09" RP_OID_SHA256_WITH_RSA "\x05\x00")},
    [RP_SIG_RSA_SHA384] = {"rsa-pkcs1-sha384", "rsa-pkcs1", RP_KEY_RSA, WC_HASH_TYPE_SHA384, 0,
                           false, DER("\x30\x0d\x06\x09" RP_OID_SHA384_WITH_RSA "\x05\x00")},
    [RP_SIG_RSA_SHA512] = {"rsa-pkcs1-sha512", "rsa-pkcs1", RP_KEY_RSA, WC_HASH_TYPE_SHA512, 0,
                           false, DER("\x30\x0d\x06\x09" RP_OID_SHA512_WITH_RSA "\x05\x00")},
    [RP_SIG_RSA_PSS_SHA256] = {"rsa-pss-sha256", "rsa-pss", RP_KEY_RSA, WC_HASH_TYPE_SHA256,
                               WC_MGF1SHA256, true,
                               DER("\x30\x41\x06\x09" RP_OID_RSASSA_PSS "\x30\x34"
                                   "\xa0\x0f\x30\x0d\x06\x09" RP_OID_SHA256 "\x05\x00"
                                   "\xa1\x1c\x30\x1a\x06\x09" OID_MGF1
                                   "\x30\x0d\x06\x09" RP_OID_SHA256 "\x05\x00"
                                   "\xa2\x03\x02\x01\x20")},
    [RP_SIG_RSA_PSS_SHA384] = {"rsa-pss-sha384", "rsa-pss", RP_KEY_RSA, WC_HASH_TYPE_SHA384,
                               WC_MGF1SHA384, true,
                               DER("\x30\x41\x06\x09" RP_OID_RSASSA_PSS "\x30\x34"
                                   "\xa0\x0f\x30\x0d\x06\x09" RP_OID_SHA384 "\x05\x00"
                                   "\xa1\x1c\x30\x1a\x06\x09" OID_MGF1
                                   "\x30\x0d\x06\x09" RP_OID_SHA384 "\x05\x00"
                                   "\xa2\x03\x02\x01\x30")},
    [RP_SIG_RSA_PSS_SHA512] = {"rsa-pss-sha512", "rsa-pss", RP_KEY_RSA, WC_HASH_TYPE_SHA512,
                               WC_MGF1SHA512, true,
                               DER("\x30\x41\x06\x09" RP_OID_RSASSA_PSS "\x30\x34"
                                   "\xa0\x0f\x30\x0d\x06\x09" RP_OID_SHA512 "\x05\x00"
                                   "\xa1\x1c\x30\x1a\x06\x09" OID_MGF1
                                   "\x30\x0d\x06\x09" RP_OID_SHA512 "\x05\x00"
                                   "\xa2\x03\x02\x01\x40")},
};

static const struct alg_info *alg_get(enum rp_sig_alg a)
{
    return (unsigned)a < RP_SIG_ALG_COUNT ? &algs[a] : NULL;
}

struct rp_view rp_sig_alg_der(enum rp_sig_alg a)
{
    const struct alg_info *ai = alg_get(a);
    return ai ? rp_view_make(ai->der, ai->der_len) : RP_VIEW_NULL;
}

const char *rp_sig_alg_name(enum rp_sig_alg a)
{
    const struct alg_info *ai = alg_get(a);
    return ai ? ai->name : "?";
}

static const char *ec_policy_name(enum rp_ec_curve c)
{
    switch (c) {
    case RP_EC_P256:
        return "ecdsa-p256";
    case RP_EC_P384:
        return "ecdsa-p384";
    case RP_EC_P521:
        return "ecdsa-p521";
    default:
        return NULL;
    }
}

const char *rp_sig_policy_name(enum rp_sig_alg a, const struct rp_pubkey *k)
{
    const struct alg_info *ai = alg_get(a);
    if (!ai || !k || ai->key != k->type)
        return NULL;
    return ai->key == RP_KEY_EC ? ec_policy_name(k->curve) : ai->policy;
}

/* A hash AlgorithmIdentifier inside PSS parameters: the expected OID with NULL or absent
 * parameters (RFC 4055 §2.1 makes implementations accept both). */
static bool hash_algid_is(struct rp_der *d, const struct rp_der_tlv *t, struct rp_view oid)
{
    struct rp_der_algid h;
    if (rp_der_algid(d, t, &h) < 0 || !rp_view_eq(h.oid, oid))
        return false;
    return !rp_view_present(h.params) ||
           (h.params.len == 2 && h.params.p[0] == RP_DER_NULL && h.params.p[1] == 0);
}

static int pss_params(struct rp_view params, enum rp_sig_alg *out)
{
    static const struct {
        enum rp_sig_alg alg;
        struct rp_view oid;
        int64_t salt;
    } hashes[] = {
        {RP_SIG_RSA_PSS_SHA256, RP_OID_VIEW(RP_OID_SHA256), 32},
        {RP_SIG_RSA_PSS_SHA384, RP_OID_VIEW(RP_OID_SHA384), 48},
        {RP_SIG_RSA_PSS_SHA512, RP_OID_VIEW(RP_OID_SHA512), 64},
    };
    struct rp_der top, seq, ctx, mgf;
    struct rp_der_tlv t, k;
    int64_t salt;
    rp_der_init(&top, params.p, params.len, NULL);
    /* Every field must be present: hashAlgorithm and maskGenAlgorithm default to SHA-1,
     * which we refuse; saltLength defaults to 20, which no SHA-2 profile uses. */
    if (rp_der_expect_enter(&top, RP_DER_SEQUENCE, &seq, &t, NULL) < 0 ||
        rp_der_finish(&top, NULL) < 0 ||
        rp_der_expect_enter(&seq, RP_DER_CTX_CONS(0), &ctx, &t, NULL) < 0 ||
        rp_der_next(&ctx, &k) < 0 || rp_der_finish(&ctx, NULL) < 0)
        return RP_E_BAD_ALG;
    for (size_t i = 0; i < sizeof hashes / sizeof hashes[0]; i++) {
        struct rp_der c = ctx, s = seq, m;
        struct rp_der_tlv mt, mh, st;
        struct rp_der_algid ma;
        if (!hash_algid_is(&c, &k, hashes[i].oid))
            continue;
        if (rp_der_expect_enter(&s, RP_DER_CTX_CONS(1), &mgf, &mt, NULL) < 0 ||
            rp_der_next(&mgf, &mt) < 0 || rp_der_finish(&mgf, NULL) < 0 ||
            rp_der_algid(&mgf, &mt, &ma) < 0 || !rp_oid_is(ma.oid, OID_MGF1) ||
            !rp_view_present(ma.params))
            return RP_E_BAD_ALG;
        rp_der_init(&m, ma.params.p, ma.params.len, NULL);
        if (rp_der_next(&m, &mh) < 0 || rp_der_finish(&m, NULL) < 0 ||
            !hash_algid_is(&m, &mh, hashes[i].oid))
            return RP_E_BAD_ALG;
        if (rp_der_expect_enter(&s, RP_DER_CTX_CONS(2), &m, &st, NULL) < 0 ||
            rp_der_expect(&m, RP_DER_INTEGER, &st, NULL) < 0 || rp_der_finish(&m, NULL) < 0 ||
            rp_der_int64(&m, &st, &salt) < 0 || salt != hashes[i].salt)
            return RP_E_BAD_ALG;
        /* trailerField: only the default (1) exists, and DER omits defaults. */
        if (rp_der_finish(&s, NULL) < 0)
            return RP_E_BAD_ALG;
        *out = hashes[i].alg;
        return RP_OK;
    }
    return RP_E_BAD_ALG;
}

int rp_sig_alg_parse(struct rp_view alg_id_tlv, enum rp_sig_alg *out)
{
    struct rp_der d;
    struct rp_der_tlv t;
    struct rp_der_algid ai;
    if (!alg_id_tlv.p || rp_der_parse_one(alg_id_tlv.p, alg_id_tlv.len, &t, NULL) < 0)
        return RP_E_BAD_ALG;
    rp_der_init(&d, alg_id_tlv.p, alg_id_tlv.len, NULL);
    if (rp_der_algid(&d, &t, &ai) < 0)
        return RP_E_BAD_ALG;
    if (rp_oid_is(ai.oid, RP_OID_RSASSA_PSS))
        return rp_view_present(ai.params) ? pss_params(ai.params, out) : RP_E_BAD_ALG;
    for (int a = 0; a < RP_SIG_ALG_COUNT; a++) {
        if (algs[a].pss)
            continue;
        if (rp_view_eq(alg_id_tlv, rp_view_make(algs[a].der, algs[a].der_len))) {
            *out = (enum rp_sig_alg)a;
            return RP_OK;
        }
        /* PKCS#1 v1.5 with the NULL left out: RFC 4055 §5 says accept it. */
        if (algs[a].key == RP_KEY_RSA && !rp_view_present(ai.params)) {
            struct rp_der ad;
            struct rp_der_tlv at;
            struct rp_der_algid canon;
            rp_der_init(&ad, algs[a].der, algs[a].der_len, NULL);
            if (rp_der_next(&ad, &at) == 0 && rp_der_algid(&ad, &at, &canon) == 0 &&
                rp_view_eq(canon.oid, ai.oid)) {
                *out = (enum rp_sig_alg)a;
                return RP_OK;
            }
        }
    }
    return RP_E_BAD_ALG;
}

/* ---- key helpers ---- */

static int curve_from_oid(struct rp_view oid, enum rp_ec_curve *c, int *wc_id)
{
    if (rp_oid_is(oid, RP_OID_PRIME256V1)) {
        *c = RP_EC_P256;
        *wc_id = ECC_SECP256R1;
    } else if (rp_oid_is(oid, RP_OID_SECP384R1)) {
        *c = RP_EC_P384;
        *wc_id = ECC_SECP384R1;
    } else if (rp_oid_is(oid, RP_OID_SECP521R1)) {
        *c = RP_EC_P521;
        *wc_id = ECC_SECP521R1;
    } else {
        return RP_E_BAD_ALG;
    }
    return RP_OK;
}

static unsigned curve_bits(enum rp_ec_curve c)
{
    return c == RP_EC_P256 ? 256u : c == RP_EC_P384 ? 384u : c == RP_EC_P521 ? 521u : 0u;
}

static void key_free(enum rp_key_type type, union key *u)
{
    switch (type) {
    case RP_KEY_EC:
        wc_ecc_free(&u->ec);
        break;
    case RP_KEY_RSA:
        wc_FreeRsaKey(&u->rsa);
        break;
    case RP_KEY_ED25519:
        wc_ed25519_free(&u->ed);
        break;
    }
}

/* The public half in one comparable form: uncompressed EC point, RSA 2-byte modulus
 * length || modulus || exponent, or the 32 Ed25519 bytes. Also gives the RSA size. */
static int pub_material(enum rp_key_type type, union key *u, uint8_t *out, size_t *len,
                        unsigned *bits)
{
    word32 n = PUB_MATERIAL_MAX;
    switch (type) {
    case RP_KEY_EC:
        if (wc_ecc_export_x963(&u->ec, out, &n) != 0)
            return RP_E_KEY_LOAD;
        break;
    case RP_KEY_ED25519:
        if (wc_ed25519_export_public(&u->ed, out, &n) != 0)
            return RP_E_KEY_LOAD;
        break;
    case RP_KEY_RSA: {
        uint8_t e[16];
        word32 elen = sizeof e, nlen = PUB_MATERIAL_MAX - 2 - sizeof e;
        if (wc_RsaFlattenPublicKey(&u->rsa, e, &elen, out + 2, &nlen) != 0 || nlen == 0)
            return RP_E_KEY_LOAD;
        out[0] = (uint8_t)(nlen >> 8);
        out[1] = (uint8_t)nlen;
        memcpy(out + 2 + nlen, e, elen);
        n = 2 + nlen + elen;
        unsigned top = 8;
        while (top > 0 && !(out[2] & (1u << (top - 1))))
            top--;
        *bits = (nlen - 1) * 8 + top;
        break;
    }
    }
    *len = n;
    return RP_OK;
}

/* ---- public keys ---- */

static int pubkey_decode(struct rp_view spki, struct rp_pubkey *k)
{
    struct rp_der d, c;
    struct rp_der_tlv t, at, kt;
    struct rp_der_algid ai;
    struct rp_der_bits bits;
    int rc, wc_id = 0;
    rp_der_init(&d, spki.p, spki.len, NULL);
    if ((rc = rp_der_expect_enter(&d, RP_DER_SEQUENCE, &c, &t, "SubjectPublicKeyInfo")) < 0 ||
        (rc = rp_der_finish(&d, "end of SubjectPublicKeyInfo")) < 0 ||
        (rc = rp_der_next(&c, &at)) < 0 || (rc = rp_der_algid(&c, &at, &ai)) < 0 ||
        (rc = rp_der_expect(&c, RP_DER_BIT_STRING, &kt, "subjectPublicKey")) < 0 ||
        (rc = rp_der_bits(&c, &kt, &bits)) < 0 || (rc = rp_der_finish(&c, "end of SPKI")) < 0)
        return rc;
    if (bits.unused != 0)
        return RP_E_KEY_LOAD;

    if (rp_oid_is(ai.oid, RP_OID_EC_PUBLIC_KEY)) {
        struct rp_der_tlv ct;
        /* namedCurve only (RFC 5480 §2.1.1: explicit parameters MUST NOT be used). */
        if (!rp_view_present(ai.params) ||
            rp_der_parse_one(ai.params.p, ai.params.len, &ct, NULL) < 0 || ct.ident != RP_DER_OID)
            return RP_E_BAD_ALG;
        if ((rc = curve_from_oid(ct.val, &k->curve, &wc_id)) < 0)
            return rc;
        k->type = RP_KEY_EC;
        if (wc_ecc_init(&k->u.ec) != 0)
            return RP_E_CRYPTO;
        k->bits = curve_bits(k->curve);
        if (wc_ecc_import_x963_ex(bits.bytes.p, (word32)bits.bytes.len, &k->u.ec, wc_id) != 0)
            goto bad_key;
        return RP_OK;
    }
    if (rp_oid_is(ai.oid, RP_OID_RSA_ENCRYPTION)) {
        uint8_t mat[PUB_MATERIAL_MAX];
        size_t mlen;
        word32 idx = 0;
        if (rp_view_present(ai.params) &&
            !(ai.params.len == 2 && ai.params.p[0] == RP_DER_NULL && ai.params.p[1] == 0))
            return RP_E_BAD_ALG;
        k->type = RP_KEY_RSA;
        if (wc_InitRsaKey(&k->u.rsa, NULL) != 0)
            return RP_E_CRYPTO;
        if (wc_RsaPublicKeyDecode(spki.p, &idx, &k->u.rsa, (word32)spki.len) != 0 ||
            idx != spki.len || pub_material(RP_KEY_RSA, &k->u, mat, &mlen, &k->bits) < 0)
            goto bad_key;
        if (k->bits < RP_RSA_MIN_BITS || k->bits > RP_RSA_MAX_BITS) {
            key_free(k->type, &k->u);
            return RP_E_BAD_ALG;
        }
        return RP_OK;
    }
    if (rp_oid_is(ai.oid, RP_OID_ED25519)) {
        if (rp_view_present(ai.params)) /* RFC 8410 §3: parameters MUST be absent */
            return RP_E_BAD_ALG;
        k->type = RP_KEY_ED25519;
        k->bits = 256;
        if (wc_ed25519_init(&k->u.ed) != 0)
            return RP_E_CRYPTO;
        if (bits.bytes.len != ED25519_PUB_KEY_SIZE ||
            wc_ed25519_import_public(bits.bytes.p, (word32)bits.bytes.len, &k->u.ed) != 0)
            goto bad_key;
        return RP_OK;
    }
    return RP_E_BAD_ALG;

bad_key:
    key_free(k->type, &k->u);
    return RP_E_KEY_LOAD;
}

int rp_pubkey_from_spki(struct rp_view spki, struct rp_pubkey **out)
{
    *out = NULL;
    if (!spki.p)
        return RP_E_INVAL;
    struct rp_pubkey *k = rp_pool_get(sizeof *k); /* per verification, on a worker */
    if (!k)
        return RP_E_NOMEM;
    memset(k, 0, sizeof *k);
    int rc = pubkey_decode(spki, k);
    if (rc < 0) {
        rp_pool_put(k, sizeof *k);
        return rc;
    }
    pthread_mutex_init(&k->lock, NULL);
    *out = k;
    return RP_OK;
}

void rp_pubkey_free(struct rp_pubkey *k)
{
    if (!k)
        return;
    key_free(k->type, &k->u);
    pthread_mutex_destroy(&k->lock);
    rp_pool_put(k, sizeof *k);
}

enum rp_key_type rp_pubkey_type(const struct rp_pubkey *k)
{
    return k->type;
}

enum rp_ec_curve rp_pubkey_curve(const struct rp_pubkey *k)
{
    return k->type == RP_KEY_EC ? k->curve : RP_EC_NONE;
}

unsigned rp_pubkey_bits(const struct rp_pubkey *k)
{
    return k->bits;
}

/* ---- verification ---- */

static int digest(enum wc_HashType h, const uint8_t *data, size_t n, uint8_t *out, word32 *len)
{
    int sz = wc_HashGetDigestSize(h);
    if (sz <= 0 || wc_Hash(h, data, (word32)n, out, (word32)sz) != 0)
        return RP_E_CRYPTO;
    *len = (word32)sz;
    return RP_OK;
}

/* DER DigestInfo of RFC 8017 §9.2, which PKCS#1 v1.5 signs. */
static int digest_info(enum wc_HashType h, const uint8_t *hash, word32 hlen, uint8_t *out,
                       word32 *len)
{
    int oid = wc_HashGetOID(h);
    if (oid <= 0)
        return RP_E_CRYPTO;
    *len = wc_EncodeSignature(out, hash, hlen, oid);
    return *len > 0 ? RP_OK : RP_E_CRYPTO;
}

/* ECDSA-Sig-Value must be DER (minimal INTEGERs, exact length): re-encoding r and s must
 * give back the same bytes, so the signature bytes are not malleable. */
static bool ecdsa_sig_is_der(const uint8_t *sig, size_t siglen)
{
    uint8_t r[MAX_ECC_BYTES + 1], s[MAX_ECC_BYTES + 1], re[RP_SIG_MAX];
    word32 rlen = sizeof r, slen = sizeof s, relen = sizeof re;
    if (siglen > sizeof re || wc_ecc_sig_to_rs(sig, (word32)siglen, r, &rlen, s, &slen) != 0 ||
        wc_ecc_rs_raw_to_sig(r, rlen, s, slen, re, &relen) != 0)
        return false;
    return relen == siglen && memcmp(re, sig, siglen) == 0;
}

static int verify_locked(const struct alg_info *ai, struct rp_pubkey *k, const uint8_t *data,
                         size_t n, const uint8_t *sig, size_t siglen)
{
    uint8_t h[WC_MAX_DIGEST_SIZE];
    word32 hlen = 0;
    int res = 0, rc;
    if (ai->hash != WC_HASH_TYPE_NONE && (rc = digest(ai->hash, data, n, h, &hlen)) < 0)
        return rc;
    switch (ai->key) {
    case RP_KEY_EC:
        if (!ecdsa_sig_is_der(sig, siglen) ||
            wc_ecc_verify_hash(sig, (word32)siglen, h, hlen, &res, &k->u.ec) != 0)
            return RP_E_BAD_MESSAGE_CHECK;
        return res == 1 ? RP_OK : RP_E_BAD_MESSAGE_CHECK;
    case RP_KEY_ED25519:
        if (siglen != ED25519_SIG_SIZE ||
            wc_ed25519_verify_msg(sig, (word32)siglen, data, (word32)n, &res, &k->u.ed) != 0)
            return RP_E_BAD_MESSAGE_CHECK;
        return res == 1 ? RP_OK : RP_E_BAD_MESSAGE_CHECK;
    case RP_KEY_RSA: {
        uint8_t out[RP_RSA_MAX_BITS / 8];
        if (siglen != (size_t)wc_RsaEncryptSize(&k->u.rsa))
            return RP_E_BAD_MESSAGE_CHECK;
        if (ai->pss) {
            /* Salt length: wolfCrypt's default is the hash length, and nothing else passes. */
            /* wolfCrypt's prototype takes a mutable input; give it a copy. */
            uint8_t in[RP_RSA_MAX_BITS / 8];
            memcpy(in, sig, siglen);
            rc = wc_RsaPSS_VerifyCheck(in, (word32)siglen, out, sizeof out, h, hlen, ai->hash,
                                       ai->mgf, &k->u.rsa);
            return rc > 0 ? RP_OK : RP_E_BAD_MESSAGE_CHECK;
        }
        uint8_t want[DIGEST_INFO_MAX];
        word32 wlen;
        if ((rc = digest_info(ai->hash, h, hlen, want, &wlen)) < 0)
            return rc;
        rc = wc_RsaSSL_Verify(sig, (word32)siglen, out, sizeof out, &k->u.rsa);
        return rc == (int)wlen && memcmp(out, want, wlen) == 0 ? RP_OK : RP_E_BAD_MESSAGE_CHECK;
    }
    }
    return RP_E_INTERNAL;
}

int rp_sig_verify(enum rp_sig_alg a, const struct rp_pubkey *k, const uint8_t *data, size_t n,
                  const uint8_t *sig, size_t siglen)
{
    const struct alg_info *ai = alg_get(a);
    rp_guard_crypto();
    if (!ai || !k || ai->key != k->type)
        return RP_E_BAD_ALG;
    if (!sig || siglen == 0 || siglen > RP_SIG_MAX || (!data && n > 0))
        return RP_E_BAD_MESSAGE_CHECK;
    /* The key is logically read-only; the lock covers wolfCrypt's scratch state in it. */
    struct rp_pubkey *mk = (struct rp_pubkey *)k;
    pthread_mutex_lock(&mk->lock);
    int rc = verify_locked(ai, mk, data, n, sig, siglen);
    pthread_mutex_unlock(&mk->lock);
    return rc;
}

/* ---- private keys ---- */

struct pem_key {
    enum rp_key_type type;
    enum rp_ec_curve curve; /* from the PKCS#8 AlgorithmIdentifier; RP_EC_NONE if SEC1 */
    int wc_curve;
};

/* What a DER private key is. "EC PRIVATE KEY" and "RSA PRIVATE KEY" say it in the PEM
 * label; PKCS#8 in its AlgorithmIdentifier, where EC also names its curve. */
static int classify_pkcs8(const uint8_t *der, size_t len, struct pem_key *pk)
{
    struct rp_der d, c;
    struct rp_der_tlv t;
    struct rp_der_algid ai;
    rp_der_init(&d, der, len, NULL);
    if (rp_der_expect_enter(&d, RP_DER_SEQUENCE, &c, &t, NULL) < 0 ||
        rp_der_expect(&c, RP_DER_INTEGER, &t, NULL) < 0 || rp_der_next(&c, &t) < 0 ||
        rp_der_algid(&c, &t, &ai) < 0)
        return RP_E_KEY_LOAD;
    if (rp_oid_is(ai.oid, RP_OID_RSA_ENCRYPTION)) {
        pk->type = RP_KEY_RSA;
        return RP_OK;
    }
    if (rp_oid_is(ai.oid, RP_OID_ED25519)) {
        pk->type = RP_KEY_ED25519;
        return RP_OK;
    }
    if (rp_oid_is(ai.oid, RP_OID_EC_PUBLIC_KEY)) {
        struct rp_der_tlv ct;
        pk->type = RP_KEY_EC;
        if (!rp_view_present(ai.params) ||
            rp_der_parse_one(ai.params.p, ai.params.len, &ct, NULL) < 0 || ct.ident != RP_DER_OID)
            return RP_E_BAD_ALG;
        return curve_from_oid(ct.val, &pk->curve, &pk->wc_curve);
    }
    return RP_E_BAD_ALG;
}

static enum rp_ec_curve curve_of(const ecc_key *k)
{
    if (!k->dp)
        return RP_EC_NONE;
    switch (k->dp->id) {
    case ECC_SECP256R1:
        return RP_EC_P256;
    case ECC_SECP384R1:
        return RP_EC_P384;
    case ECC_SECP521R1:
        return RP_EC_P521;
    default:
        return RP_EC_NONE;
    }
}

/* Decode der into one slot's key (each slot decodes its own copy). */
static int slot_decode(struct slot *s, const struct pem_key *pk, const uint8_t *der, size_t len,
                       enum rp_ec_curve *curve)
{
    word32 idx = 0;
    switch (pk->type) {
    case RP_KEY_EC:
        if (wc_ecc_init(&s->u.ec) != 0)
            return RP_E_CRYPTO;
        s->key_ok = true;
        if (wc_EccPrivateKeyDecode(der, &idx, &s->u.ec, (word32)len) != 0)
            return RP_E_KEY_LOAD;
        /* wolfCrypt guesses a curve from the key size when SEC1 omits it: insist that it
         * is the one the PKCS#8 wrapper named, and one we support. */
        *curve = curve_of(&s->u.ec);
        if (*curve == RP_EC_NONE || (pk->curve != RP_EC_NONE && pk->curve != *curve))
            return RP_E_BAD_ALG;
        if (wc_ecc_set_rng(&s->u.ec, &s->rng) != 0)
            return RP_E_CRYPTO;
        if (s->u.ec.type == ECC_PRIVATEKEY_ONLY && wc_ecc_make_pub_ex(&s->u.ec, NULL, &s->rng) != 0)
            return RP_E_KEY_LOAD;
        return RP_OK;
    case RP_KEY_RSA:
        if (wc_InitRsaKey(&s->u.rsa, NULL) != 0)
            return RP_E_CRYPTO;
        s->key_ok = true;
        if (wc_RsaPrivateKeyDecode(der, &idx, &s->u.rsa, (word32)len) != 0)
            return RP_E_KEY_LOAD;
        if (wc_RsaSetRNG(&s->u.rsa, &s->rng) != 0)
            return RP_E_CRYPTO;
        return RP_OK;
    case RP_KEY_ED25519:
        if (wc_ed25519_init(&s->u.ed) != 0)
            return RP_E_CRYPTO;
        s->key_ok = true;
        if (wc_Ed25519PrivateKeyDecode(der, &idx, &s->u.ed, (word32)len) != 0)
            return RP_E_KEY_LOAD;
        if (!s->u.ed.pubKeySet) {
            /* PKCS#8 without the optional public key: derive it, signing needs it. */
            uint8_t priv[ED25519_KEY_SIZE], pub[ED25519_PUB_KEY_SIZE];
            word32 plen = sizeof priv;
            int bad = wc_ed25519_export_private_only(&s->u.ed, priv, &plen) != 0 ||
                      wc_ed25519_make_public(&s->u.ed, pub, sizeof pub) != 0 ||
                      wc_ed25519_import_private_key(priv, plen, pub, sizeof pub, &s->u.ed) != 0;
            explicit_bzero(priv, sizeof priv);
            if (bad)
                return RP_E_KEY_LOAD;
        }
        return RP_OK;
    }
    return RP_E_INTERNAL;
}

static unsigned slot_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return (unsigned long)n > PRIVKEY_MAX_SLOTS ? PRIVKEY_MAX_SLOTS : (unsigned)n;
}

static int privkey_build(const uint8_t *der, size_t len, const struct pem_key *pk,
                         struct rp_privkey **out)
{
    unsigned ns = slot_count();
    struct rp_privkey *k = calloc(1, sizeof *k + ns * sizeof k->slots[0]);
    int rc = RP_OK;
    if (!k)
        return RP_E_NOMEM;
    k->type = pk->type;
    for (unsigned i = 0; i < ns; i++) {
        struct slot *s = &k->slots[i];
        pthread_mutex_init(&s->lock, NULL);
        k->nslots = i + 1;
        if (wc_InitRng(&s->rng) != 0) {
            rc = RP_E_CRYPTO;
            goto out;
        }
        s->rng_ok = true;
        if ((rc = slot_decode(s, pk, der, len, &k->curve)) < 0)
            goto out;
    }
    unsigned rsa_bits = 0;
    if ((rc = pub_material(k->type, &k->slots[0].u, k->pub, &k->pub_len, &rsa_bits)) < 0)
        goto out;
    k->bits = k->type == RP_KEY_RSA ? rsa_bits : k->type == RP_KEY_EC ? curve_bits(k->curve) : 256;
    if (k->type == RP_KEY_RSA && (k->bits < RP_RSA_MIN_BITS || k->bits > RP_RSA_MAX_BITS))
        rc = RP_E_BAD_ALG;
out:
    if (rc < 0) {
        rp_privkey_free(k);
        return rc;
    }
    *out = k;
    return RP_OK;
}

int rp_privkey_from_pem(const char *pem, size_t len, struct rp_privkey **out)
{
    static const struct {
        const char *begin, *end;
        int pkcs8; /* -1: PKCS#8, else the key type its label implies */
    } labels[] = {
        {"-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----", -1},
        {"-----BEGIN EC PRIVATE KEY-----", "-----END EC PRIVATE KEY-----", RP_KEY_EC},
        {"-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", RP_KEY_RSA},
    };
    *out = NULL;
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        const char *b = rp_memfind(pem, len, labels[i].begin);
        if (!b)
            continue;
        b += strlen(labels[i].begin);
        const char *e = rp_memfind(b, len - (size_t)(b - pem), labels[i].end);
        if (!e)
            return RP_E_KEY_LOAD;
        size_t b64 = (size_t)(e - b);
        word32 dlen = (word32)b64;
        uint8_t *der = malloc(b64 ? b64 : 1);
        if (!der)
            return RP_E_NOMEM;
        int rc = RP_OK;
        struct pem_key pk = {.curve = RP_EC_NONE};
        if (Base64_Decode((const byte *)b, (word32)b64, der, &dlen) != 0) {
            rc = RP_E_KEY_LOAD;
            goto done;
        }
        if (labels[i].pkcs8 < 0)
            rc = classify_pkcs8(der, dlen, &pk);
        else
            pk.type = (enum rp_key_type)labels[i].pkcs8;
        if (rc == RP_OK)
            rc = privkey_build(der, dlen, &pk, out);
    done:
        explicit_bzero(der, b64);
        free(der);
        return rc;
    }
    return RP_E_KEY_LOAD; /* no private key block (encrypted keys land here too) */
}

int rp_privkey_load_pem(const char *path, struct rp_privkey **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return RP_E_KEY_LOAD;
    char *buf = malloc(PEM_MAX_BYTES);
    size_t n = buf ? fread(buf, 1, PEM_MAX_BYTES, f) : 0;
    int too_big = buf && n == PEM_MAX_BYTES;
    fclose(f);
    if (!buf)
        return RP_E_NOMEM;
    int rc = too_big ? RP_E_KEY_LOAD : rp_privkey_from_pem(buf, n, out);
    explicit_bzero(buf, n);
    free(buf);
    return rc;
}

void rp_privkey_free(struct rp_privkey *k)
{
    if (!k)
        return;
    for (unsigned i = 0; i < k->nslots; i++) {
        struct slot *s = &k->slots[i];
        if (s->key_ok)
            key_free(k->type, &s->u);
        if (s->rng_ok)
            wc_FreeRng(&s->rng);
        pthread_mutex_destroy(&s->lock);
    }
    rp_p11_key_free(k->p11);
    free(k);
}

/* ---- keys in a PKCS#11 token ---- */

/* One slot's key bound to the token: wolfCrypt finds the object by id or label and sends
 * the private-key operation to the token's device. The public half (curve, RSA modulus)
 * is set so that wolfCrypt sizes signatures without asking the token. */
static int slot_bind(struct slot *s, const struct rp_p11_key_info *in)
{
    if (in->type == RP_P11_KEY_EC) {
        int rc = in->label ? wc_ecc_init_label(&s->u.ec, in->label, NULL, in->dev_id)
                           : wc_ecc_init_id(&s->u.ec, (unsigned char *)in->id, (int)in->id_len,
                                            NULL, in->dev_id);
        if (rc != 0)
            return RP_E_CRYPTO;
        s->key_ok = true;
        return wc_ecc_set_curve(&s->u.ec, 0, in->wc_curve) == 0 ? RP_OK : RP_E_CRYPTO;
    }
    int rc = in->label ? wc_InitRsaKey_Label(&s->u.rsa, in->label, NULL, in->dev_id)
                       : wc_InitRsaKey_Id(&s->u.rsa, (unsigned char *)in->id, (int)in->id_len, NULL,
                                          in->dev_id);
    if (rc != 0)
        return RP_E_CRYPTO;
    s->key_ok = true;
    if (wc_RsaPublicKeyDecodeRaw(in->rsa_n, (word32)in->rsa_n_len, in->rsa_e, (word32)in->rsa_e_len,
                                 &s->u.rsa) != 0 ||
        wc_RsaSetRNG(&s->u.rsa, &s->rng) != 0)
        return RP_E_KEY_LOAD;
    return RP_OK;
}

static enum rp_ec_curve curve_from_wc(int wc)
{
    return wc == ECC_SECP256R1   ? RP_EC_P256
           : wc == ECC_SECP384R1 ? RP_EC_P384
           : wc == ECC_SECP521R1 ? RP_EC_P521
                                 : RP_EC_NONE;
}

static int privkey_from_token(struct rp_p11_key *pk, struct rp_privkey **out)
{
    struct rp_p11_key_info in;
    rp_p11_key_info(pk, &in);
    unsigned ns = slot_count();
    struct rp_privkey *k = calloc(1, sizeof *k + ns * sizeof k->slots[0]);
    if (!k) {
        rp_p11_key_free(pk);
        return RP_E_NOMEM;
    }
    k->p11 = pk;
    k->type = in.type == RP_P11_KEY_EC ? RP_KEY_EC : RP_KEY_RSA;
    k->curve = in.type == RP_P11_KEY_EC ? curve_from_wc(in.wc_curve) : RP_EC_NONE;
    k->bits = in.bits;
    int rc = RP_OK;
    if (k->type == RP_KEY_RSA && (k->bits < RP_RSA_MIN_BITS || k->bits > RP_RSA_MAX_BITS))
        rc = RP_E_BAD_ALG;
    for (unsigned i = 0; i < ns && rc == RP_OK; i++) {
        struct slot *s = &k->slots[i];
        pthread_mutex_init(&s->lock, NULL);
        k->nslots = i + 1;
        if (wc_InitRng(&s->rng) != 0) {
            rc = RP_E_CRYPTO;
            break;
        }
        s->rng_ok = true;
        rc = slot_bind(s, &in);
    }
    if (rc < 0) {
        rp_privkey_free(k);
        return rc;
    }
    *out = k;
    return RP_OK;
}

int rp_privkey_load(const char *spec, const struct rp_p11_opts *o, struct rp_privkey **out,
                    char *why, size_t cap)
{
    *out = NULL;
    if (why && cap)
        why[0] = 0;
    if (!rp_p11_is_uri(spec)) {
        int rc = rp_privkey_load_pem(spec, out);
        if (rc != RP_OK && why && cap)
            snprintf(why, cap, "%s: %s", spec,
                     rc == RP_E_BAD_ALG ? "unsupported key type"
                                        : "cannot read an unencrypted PEM private key");
        return rc;
    }
    struct rp_p11_key *pk;
    int rc = rp_p11_key_open(spec, o, &pk, why, cap);
    if (rc == RP_OK)
        rc = privkey_from_token(pk, out);
    if (rc == RP_E_BAD_ALG && why && cap)
        snprintf(why, cap, "%s: RSA key outside %u..%u bits", spec, RP_RSA_MIN_BITS,
                 RP_RSA_MAX_BITS);
    return rc;
}

bool rp_privkey_available(const struct rp_privkey *k)
{
    return k && (!k->p11 || rp_p11_key_available(k->p11));
}

bool rp_privkey_device(const struct rp_privkey *k, struct rp_privkey_device *out)
{
    if (!k || !k->p11)
        return false;
    struct rp_p11_key_info in;
    rp_p11_key_info(k->p11, &in);
    out->dev_id = in.dev_id;
    out->label = in.label;
    out->id = in.id;
    out->id_len = in.id_len;
    return true;
}

enum rp_key_type rp_privkey_type(const struct rp_privkey *k)
{
    return k->type;
}

enum rp_sig_alg rp_privkey_default_alg(const struct rp_privkey *k)
{
    switch (k->type) {
    case RP_KEY_EC:
        return k->curve == RP_EC_P521   ? RP_SIG_ECDSA_SHA512
               : k->curve == RP_EC_P384 ? RP_SIG_ECDSA_SHA384
                                        : RP_SIG_ECDSA_SHA256;
    case RP_KEY_ED25519:
        return RP_SIG_ED25519;
    case RP_KEY_RSA:
    default:
        return RP_SIG_RSA_SHA256;
    }
}

/* A free key copy, preferring this thread's usual one so a worker keeps its cache-warm
 * copy; when every copy is busy, wait for that one. */
static struct slot *slot_take(struct rp_privkey *k)
{
    static atomic_uint next_hint;
    static _Thread_local unsigned hint = UINT32_MAX;
    if (hint == UINT32_MAX)
        hint = atomic_fetch_add_explicit(&next_hint, 1, memory_order_relaxed);
    for (unsigned i = 0; i < k->nslots; i++) {
        struct slot *s = &k->slots[(hint + i) % k->nslots];
        if (pthread_mutex_trylock(&s->lock) == 0)
            return s;
    }
    struct slot *s = &k->slots[hint % k->nslots];
    pthread_mutex_lock(&s->lock);
    return s;
}

static int sign_with(const struct alg_info *ai, struct slot *s, const uint8_t *data, size_t n,
                     uint8_t *sig, word32 *len)
{
    uint8_t h[WC_MAX_DIGEST_SIZE];
    word32 hlen = 0;
    int rc;
    if (ai->hash != WC_HASH_TYPE_NONE && (rc = digest(ai->hash, data, n, h, &hlen)) < 0)
        return rc;
    switch (ai->key) {
    case RP_KEY_EC:
        return wc_ecc_sign_hash(h, hlen, sig, len, &s->rng, &s->u.ec) == 0 ? RP_OK : RP_E_CRYPTO;
    case RP_KEY_ED25519:
        return wc_ed25519_sign_msg(data, (word32)n, sig, len, &s->u.ed) == 0 ? RP_OK : RP_E_CRYPTO;
    case RP_KEY_RSA:
        if (ai->pss) {
            rc = wc_RsaPSS_Sign_ex(h, hlen, sig, *len, ai->hash, ai->mgf, RSA_PSS_SALT_LEN_DEFAULT,
                                   &s->u.rsa, &s->rng);
        } else {
            uint8_t di[DIGEST_INFO_MAX];
            word32 dlen;
            if ((rc = digest_info(ai->hash, h, hlen, di, &dlen)) < 0)
                return rc;
            rc = wc_RsaSSL_Sign(di, dlen, sig, *len, &s->u.rsa, &s->rng);
        }
        if (rc <= 0)
            return RP_E_CRYPTO;
        *len = (word32)rc;
        return RP_OK;
    }
    return RP_E_INTERNAL;
}

/* wolfSSL 5.5.4's PKCS#11 RSA path imports the public key again on every operation
 * (Pkcs11GetRsaPublicKey), and mp_init forgets, without freeing, the raw copies that
 * HAVE_WOLF_BIGINT keeps of n and e: release them first, or every RSA signature made in a
 * token leaks them (LeakSanitizer found 260 bytes per RSA-2048 signature). */
static void rsa_raw_release(RsaKey *key)
{
#ifdef HAVE_WOLF_BIGINT
    WC_BIGINT *raw[] = {&key->n.raw, &key->e.raw};
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        if (raw[i]->buf)
            XFREE(raw[i]->buf, raw[i]->heap, DYNAMIC_TYPE_WOLF_BIGINT);
        raw[i]->buf = NULL;
        raw[i]->len = 0;
    }
#else
    (void)key;
#endif
}

int rp_privkey_sign(struct rp_privkey *k, enum rp_sig_alg a, const uint8_t *data, size_t n,
                    uint8_t *sig, size_t cap, size_t *siglen)
{
    const struct alg_info *ai = alg_get(a);
    rp_guard_crypto();
    if (!ai || !k || ai->key != k->type)
        return RP_E_BAD_ALG;
    if (!sig || !siglen || (!data && n > 0))
        return RP_E_INVAL;
    /* Worst case of this key, so a short buffer fails the same way every time rather than
     * only when an ECDSA signature happens to come out long. */
    size_t need = k->type == RP_KEY_RSA ? (k->bits + 7) / 8
                  : k->type == RP_KEY_ED25519
                      ? ED25519_SIG_SIZE
                      : (size_t)wc_ecc_sig_size_calc((int)((curve_bits(k->curve) + 7) / 8));
    if (cap < need)
        return RP_E_INVAL;
    word32 len = cap > RP_SIG_MAX ? RP_SIG_MAX : (word32)cap;
    if (k->p11 && !rp_p11_key_available(k->p11))
        return RP_E_KEY_UNAVAILABLE; /* fail fast: the token is being reconnected */
    struct slot *s = slot_take(k);
    if (k->p11 && k->type == RP_KEY_RSA)
        rsa_raw_release(&s->u.rsa);
    int rc = sign_with(ai, s, data, n, sig, &len);
    pthread_mutex_unlock(&s->lock);
    if (rc == RP_OK)
        *siglen = len;
    else if (k->p11)
        rc = RP_E_KEY_TOKEN;
    return rc;
}

/* A token key's public half is not read back: sign a probe in the token and verify it. */
static int matches_by_probe(const struct rp_privkey *k, const struct rp_pubkey *pk)
{
    static const uint8_t probe[] = "raproxy key/certificate pair check";
    uint8_t sig[RP_SIG_MAX];
    size_t len = 0;
    enum rp_sig_alg a = rp_privkey_default_alg(k);
    if (pk->type != k->type || (k->type == RP_KEY_EC && pk->curve != k->curve))
        return 0;
    int rc = rp_privkey_sign((struct rp_privkey *)k, a, probe, sizeof probe, sig, sizeof sig, &len);
    if (rc < 0)
        return rc;
    return rp_sig_verify(a, pk, probe, sizeof probe, sig, len) == RP_OK;
}

int rp_privkey_matches_spki(const struct rp_privkey *k, struct rp_view spki)
{
    struct rp_pubkey *pk;
    uint8_t mat[PUB_MATERIAL_MAX];
    size_t mlen;
    unsigned bits;
    int rc = rp_pubkey_from_spki(spki, &pk);
    if (rc == RP_E_BAD_ALG)
        return 0; /* a key type we do not support cannot be ours */
    if (rc < 0)
        return rc;
    if (k->p11) {
        rc = matches_by_probe(k, pk);
        rp_pubkey_free(pk);
        return rc;
    }
    rc = pk->type == k->type && pub_material(pk->type, &pk->u, mat, &mlen, &bits) == RP_OK &&
         mlen == k->pub_len && memcmp(mat, k->pub, mlen) == 0;
    rp_pubkey_free(pk);
    return rc;
}

void rp_sig_thread_cleanup(void)
{
#ifdef FP_ECC
    wc_ecc_fp_free();
#endif
}
