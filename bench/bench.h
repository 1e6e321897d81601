/* Shared code of the load-test tools (bench/fleet, bench/mockca, bench/ceiling,
 * bench/mkfleet): P-256 keys and ECDSA with wolfCrypt, files, PEM certificate lists, the
 * fleet file, and the CMP/X.509 encoders the tools need (a device's ir and certConf, the
 * CA's ip and pkiConf, a certificate signed by a CA key).
 *
 * The encoders are written on raproxy's DER writer (raproxy/derw.h) and reuse
 * raproxy/cmp_encode.h where it has what is needed; they are candidates to move into
 * src/cmp once the RA itself has to write requests (bench_cmp_enc_ir and friends). */
#ifndef RAPROXY_BENCH_H
#define RAPROXY_BENCH_H

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include "raproxy/arena.h"
#include "raproxy/cmp.h"
#include "raproxy/view.h"

#include <stddef.h>
#include <stdint.h>

/* SubjectPublicKeyInfo of a P-256 key: 26 bytes of header + 65 bytes of point. */
#define BENCH_SPKI_MAX 96
/* DER ECDSA signature of P-256: at most 72 bytes. */
#define BENCH_SIG_MAX 80
/* Most certificates a PEM file given to a tool may hold. */
#define BENCH_PEM_MAX_CERTS 16
/* A private P-256 scalar. */
#define BENCH_PRIV_LEN 32

/* A P-256 key pair and its SPKI (the public key as it goes into a CertTemplate). */
struct bench_key {
    ecc_key key;
    uint8_t spki[BENCH_SPKI_MAX];
    size_t spki_len;
};

int bench_key_gen(struct bench_key *k, WC_RNG *rng);
/* PEM private key (PKCS#8 or SEC1 "EC PRIVATE KEY"), P-256 only. */
int bench_key_load(struct bench_key *k, const char *path);
/* Private scalar + the SPKI of the matching certificate. */
int bench_key_import(struct bench_key *k, const uint8_t priv[BENCH_PRIV_LEN], struct rp_view spki);
void bench_key_free(struct bench_key *k);

/* SHA-256 of msg, signed with ECDSA: DER signature into sig (BENCH_SIG_MAX bytes). */
int bench_sign(struct bench_key *k, WC_RNG *rng, struct rp_view msg, uint8_t *sig, size_t *sig_len);
/* ECDSA over SHA-256 (P-256) or SHA-384 (P-384) of msg with the public key of an SPKI,
 * per the signature algorithm OID (RP_OID_ECDSA_SHA256 / _SHA384). 0 when it verifies,
 * -1 when it does not, another negative value on a malformed key or unsupported alg. */
int bench_verify(struct rp_view spki, struct rp_view alg_oid, struct rp_view msg,
                 struct rp_view sig);

/* Whole file, malloc'ed; NULL on error (reported on stderr). */
uint8_t *bench_read_file(const char *path, size_t *len);
/* Every CERTIFICATE block of a PEM file as DER (malloc'ed, caller frees each). Returns the
 * count, or -1. */
int bench_pem_certs(const char *path, uint8_t **der, size_t *der_len, int max);

/* The fleet file bench/mkfleet writes: "RPFLEET1", a u32 count, then per device a u16
 * certificate length, the certificate DER and the 32-byte private scalar (big endian). */
#define BENCH_FLEET_MAGIC "RPFLEET1"
struct bench_device {
    struct rp_view cert;
    struct rp_view subject; /* Name TLV inside cert */
    struct rp_view spki;
    const uint8_t *priv;
};
struct bench_fleet {
    uint8_t *file;
    size_t n;
    struct bench_device *dev;
};
int bench_fleet_load(struct bench_fleet *f, const char *path);
void bench_fleet_free(struct bench_fleet *f);

/* ---- encoders (into the arena) ---- */

/* A Name of RDNs given as (attribute OID content, UTF8String value) pairs. */
struct bench_rdn {
    const char *oid; /* RP_OID_AT_* literal */
    size_t oid_len;
    const char *value;
};
int bench_enc_name(struct rp_arena *a, const struct bench_rdn *rdn, size_t n, struct rp_view *out);

/* An end-entity certificate (v3, ecdsa-with-SHA256): serial, issuer = the CA's subject,
 * validity now-1h .. now+days, subject, spki; basicConstraints CA:FALSE, keyUsage
 * digitalSignature, SKI, and AKI = the CA certificate's SKI (when it has one). */
struct bench_issuer {
    struct bench_key *key;
    struct rp_view cert;    /* the CA certificate DER */
    struct rp_view subject; /* its subject Name TLV */
    struct rp_view ski;     /* its subjectKeyIdentifier (may be absent) */
};
int bench_enc_cert(struct rp_arena *a, WC_RNG *rng, const struct bench_issuer *ca,
                   struct rp_view serial, struct rp_view subject, struct rp_view spki, int days,
                   struct rp_view *out);

/* Fields of a request header the device chooses. */
struct bench_req_hdr {
    struct rp_view sender;      /* Name TLV */
    struct rp_view recipient;   /* Name TLV; absent: the NULL-DN */
    struct rp_view sender_kid;  /* may be absent */
    struct rp_view txid;        /* 16 bytes */
    struct rp_view nonce;       /* 16 bytes */
    struct rp_view recip_nonce; /* may be absent */
    int64_t now;
};

/* PKIHeader of a signature-protected request (pvno 2, ecdsa-with-SHA256). */
int bench_cmp_enc_req_header(struct rp_arena *a, const struct bench_req_hdr *h,
                             struct rp_view *out);
/* ir [0] with one CertReqMsg: certReqId 0, template { subject, publicKey }, POP signature
 * by the new key over the CertRequest. */
int bench_cmp_enc_body_ir(struct rp_arena *a, WC_RNG *rng, struct bench_key *newkey,
                          struct rp_view subject, struct rp_view *out);
/* certConf [24] accepting the certificate of certReqId 0 (certHash = SHA-256 of it). */
int bench_cmp_enc_body_certconf(struct rp_arena *a, struct rp_view cert, struct rp_view *out);
/* pollReq [25] for one certReqId (RFC 9483 §4.4). */
int bench_cmp_enc_body_pollreq(struct rp_arena *a, int64_t cert_req_id, struct rp_view *out);
/* ip [1] with one CertResponse: certReqId, status accepted, the certificate. */
int bench_cmp_enc_body_ip(struct rp_arena *a, int64_t cert_req_id, struct rp_view cert,
                          struct rp_view *out);
/* header + body signed with key (ecdsa-with-SHA256), extraCerts in order. */
int bench_cmp_sign_message(struct rp_arena *a, WC_RNG *rng, struct bench_key *key,
                           struct rp_view header, struct rp_view body, const struct rp_view *extra,
                           size_t n_extra, struct rp_view *out);
/* The AlgorithmIdentifier ecdsa-with-SHA256 (no parameters). */
struct rp_view bench_alg_ecdsa_sha256(void);

/* Monotonic nanoseconds and thread CPU seconds. */
uint64_t bench_now_ns(void);
double bench_thread_cpu_s(void);
/* Random bytes (wolfCrypt RNG). */
int bench_random(WC_RNG *rng, uint8_t *p, size_t n);

#endif
