/* See msgbuild.h. */
#include "msgbuild.h"

#include "httpc.h"
#include "support.h"

#include "raproxy/cert.h"
#include "raproxy/cmp_encode.h"
#include "raproxy/der.h"
#include "raproxy/derw.h"
#include "raproxy/err.h"
#include "raproxy/ext.h"
#include "raproxy/sig.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/pwdbased.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define CAPTURE_TIMEOUT_MS 20000
#define HDR_ROOM           4096
#define DEF_MAC_ITER       1000u

static const uint8_t salt[16] = "raproxy-testsalt";

uint8_t *rpt_capture_request(const char *dir, const char *name, const char *const *args,
                             size_t *len)
{
    const char *argv[64];
    char out[600], log[600];
    snprintf(out, sizeof out, "%s/%s.der", dir, name);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    size_t n = 0;
    argv[n++] = "openssl";
    argv[n++] = "cmp";
    for (size_t i = 0; args[i] && n < 50; i++)
        argv[n++] = args[i];
    const char *tail[] = {"-server",      "127.0.0.1:1", "-path",          "x", "-reqout", out,
                          "-msg_timeout", "1",           "-total_timeout", "2", NULL};
    for (size_t i = 0; tail[i]; i++)
        argv[n++] = tail[i];
    argv[n] = NULL;
    rpt_run(argv, CAPTURE_TIMEOUT_MS, log); /* fails to send, after writing the request */
    return rpt_read_file(out, len);
}

uint8_t *rpt_capture_device(const char *dir, const char *pki, const char *cmd, const char *cert,
                            size_t *len)
{
    char c[600], k[600], ica[600], newkey[600], crt[600], name[128];
    snprintf(c, sizeof c, "%s/%s.pem", pki, cert);
    snprintf(k, sizeof k, "%s/%s.key", pki, cert);
    snprintf(ica, sizeof ica, "%s/vendor/ica.pem", pki);
    snprintf(newkey, sizeof newkey, "%s/ca/issued.key", pki);
    snprintf(crt, sizeof crt, "%s/unused.pem", dir);
    snprintf(name, sizeof name, "%s-%s", cmd, strrchr(cert, '/') ? strrchr(cert, '/') + 1 : cert);
    /* no -subject: openssl asks for the subject of -oldcert, the device's own */
    const char *args[] = {"-cmd",        cmd, "-cert",      c,      "-key",     k,
                          "-extracerts", ica, "-newkey",    newkey, "-certout", crt,
                          "-oldcert",    c,   "-revreason", "0",    NULL};
    return rpt_capture_request(dir, name, args, len);
}

uint8_t *rpt_capture_mac(const char *dir, const char *pki, const char *cmd, const char *secret,
                         const char *kid, const char *subject, size_t *len)
{
    char pass[256], newkey[600], crt[600], name[128], old[600];
    snprintf(pass, sizeof pass, "pass:%s", secret);
    snprintf(newkey, sizeof newkey, "%s/ca/issued.key", pki);
    snprintf(old, sizeof old, "%s/ca/issued.pem", pki);
    snprintf(crt, sizeof crt, "%s/unused.pem", dir);
    snprintf(name, sizeof name, "mac-%s-%s", cmd, kid);
    const char *args[] = {
        "-cmd",     cmd,       "-secret",  pass,       "-ref",
        kid,        "-newkey", newkey,     "-subject", subject ? subject : "/CN=Device",
        "-certout", crt,       "-oldcert", old,        "-revreason",
        "0",        NULL};
    return rpt_capture_request(dir, name, args, len);
}

/* ---- MAC protection, computed here with wolfCrypt (an independent implementation) ---- */

static void algid(struct rp_derw *w, struct rp_view oid, bool null)
{
    rp_derw_begin(w, RP_DER_SEQUENCE);
    rp_derw_oid(w, oid);
    if (null)
        rp_derw_null(w);
    rp_derw_end(w);
}

static struct rp_view mac_alg(struct rp_arena *a, const struct rpt_mut *m)
{
    uint32_t iter = m->mac_iterations ? m->mac_iterations : DEF_MAC_ITER;
    struct rp_derw w;
    struct rp_view out = RP_VIEW_NULL;
    if (rp_derw_init(&w, a, 256) != RP_OK)
        return out;
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    if (m->mac == RPT_MAC_PBM) {
        rp_derw_oid(&w, RP_OID_VIEW(RP_OID_PBM));
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_octets(&w, rp_view_make(salt, sizeof salt));
        algid(&w, RP_OID_VIEW(RP_OID_SHA256), false);
        rp_derw_int64(&w, RP_DER_INTEGER, iter);
        algid(&w, RP_OID_VIEW(RP_OID_HMAC_SHA256), false);
        rp_derw_end(&w);
    } else {
        rp_derw_oid(&w, RP_OID_VIEW(RP_OID_PBMAC1));
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_oid(&w, RP_OID_VIEW(RP_OID_PBKDF2));
        rp_derw_begin(&w, RP_DER_SEQUENCE);
        rp_derw_octets(&w, rp_view_make(salt, sizeof salt));
        rp_derw_int64(&w, RP_DER_INTEGER, iter);
        if (m->mac_key_len)
            rp_derw_int64(&w, RP_DER_INTEGER, m->mac_key_len);
        algid(&w, RP_OID_VIEW(RP_OID_HMAC_SHA256), true);
        rp_derw_end(&w);
        rp_derw_end(&w);
        algid(&w, RP_OID_VIEW(RP_OID_HMAC_SHA256), true);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    rp_derw_finish(&w, &out);
    return out;
}

static struct rp_view mac_compute(struct rp_arena *a, const struct rpt_mut *m, struct rp_view pp)
{
    uint32_t iter = m->mac_iterations ? m->mac_iterations : DEF_MAC_ITER;
    const uint8_t *sec = (const uint8_t *)m->mac_secret;
    word32 slen = (word32)strlen(m->mac_secret);
    uint8_t key[64];
    word32 klen = WC_SHA256_DIGEST_SIZE;
    if (m->mac == RPT_MAC_PBM) {
        wc_Sha256 h;
        wc_InitSha256(&h);
        wc_Sha256Update(&h, sec, slen);
        wc_Sha256Update(&h, salt, sizeof salt);
        wc_Sha256Final(&h, key);
        wc_Sha256Free(&h);
        for (uint32_t i = 1; i < iter; i++)
            wc_Sha256Hash(key, WC_SHA256_DIGEST_SIZE, key);
    } else {
        klen = m->mac_key_len ? (word32)m->mac_key_len : WC_SHA256_DIGEST_SIZE;
        if (klen > sizeof key ||
            wc_PBKDF2(key, sec, (int)slen, salt, sizeof salt, (int)iter, (int)klen, WC_SHA256))
            return RP_VIEW_NULL;
    }
    uint8_t *out = rp_arena_alloc(a, WC_SHA256_DIGEST_SIZE);
    Hmac hmac;
    if (!out || wc_HmacInit(&hmac, NULL, INVALID_DEVID) != 0)
        return RP_VIEW_NULL;
    int bad = wc_HmacSetKey(&hmac, WC_SHA256, key, klen) != 0 ||
              wc_HmacUpdate(&hmac, pp.p, (word32)pp.len) != 0 || wc_HmacFinal(&hmac, out) != 0;
    wc_HmacFree(&hmac);
    return bad ? RP_VIEW_NULL : rp_view_make(out, WC_SHA256_DIGEST_SIZE);
}

static struct rp_view sign(struct rp_arena *a, const char *key_file, struct rp_view pp,
                           struct rp_view alg_der)
{
    struct rp_privkey *k;
    if (rp_privkey_load_pem(key_file, &k) != RP_OK)
        return RP_VIEW_NULL;
    enum rp_sig_alg alg = rp_privkey_default_alg(k);
    if (rp_view_present(alg_der))
        rp_sig_alg_parse(alg_der, &alg);
    uint8_t *s = rp_arena_alloc(a, RP_SIG_MAX);
    size_t sl = 0;
    int rc = s ? rp_privkey_sign(k, alg, pp.p, pp.len, s, RP_SIG_MAX, &sl) : RP_E_ARENA;
    rp_privkey_free(k);
    return rc == RP_OK ? rp_view_make(s, sl) : RP_VIEW_NULL;
}

/* ---- fields built here ------------------------------------------------------------------- */

struct rp_view rpt_cert_der(struct rp_arena *a, const char *path)
{
    size_t len;
    uint8_t *pem = rpt_read_file(path, &len);
    struct rp_view out = RP_VIEW_NULL;
    if (!pem)
        return out;
    uint8_t *der = rp_arena_alloc(a, len);
    int n = der ? wc_CertPemToDer(pem, (int)len, der, (int)len, CERT_TYPE) : -1;
    if (n > 0)
        out = rp_view_make(der, (size_t)n);
    else if (der && len && pem[0] == 0x30) {
        memcpy(der, pem, len);
        out = rp_view_make(der, len);
    }
    free(pem);
    return out;
}

struct rp_view rpt_name(struct rp_arena *a, const char *text)
{
    struct rp_name_attr attrs[16];
    size_t n = 0;
    char *copy = (char *)rp_arena_dup(a, text, strlen(text) + 1), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < 16; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        char *eq = strchr(t, '=');
        if (!eq)
            return RP_VIEW_NULL;
        *eq = '\0';
        if (rp_name_attr_oid(t, &attrs[n].type, &attrs[n].tag) != RP_OK)
            return RP_VIEW_NULL;
        attrs[n].value = rp_view_str(eq + 1);
        attrs[n].multi = 0;
        n++;
    }
    struct rp_view out = RP_VIEW_NULL;
    rp_name_encode(a, attrs, n, &out);
    return out;
}

struct rp_view rpt_ext(struct rp_arena *a, struct rp_view oid, bool critical, struct rp_view value)
{
    struct rp_view out = RP_VIEW_NULL;
    rp_ext_encode(a, oid, critical, value, &out);
    return out;
}

struct rp_view rpt_general_info_profile(struct rp_arena *a, const char *profile)
{
    static const uint8_t oid[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x04, 0x15};
    struct rp_derw w;
    struct rp_view out = RP_VIEW_NULL;
    rp_derw_init(&w, a, 256 + strlen(profile));
    rp_derw_begin(&w, RP_DER_CTX_CONS(8));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_oid(&w, rp_view_make(oid, sizeof oid));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_utf8(&w, rp_view_str(profile));
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_finish(&w, &out);
    return out;
}

struct rp_view rpt_directory_name(struct rp_arena *a, struct rp_view name)
{
    struct rp_derw w;
    struct rp_view out = RP_VIEW_NULL;
    rp_derw_init(&w, a, name.len + 16);
    rp_derw_begin(&w, RP_DER_CTX_CONS(4));
    rp_derw_raw(&w, name);
    rp_derw_end(&w);
    rp_derw_finish(&w, &out);
    return out;
}

/* The CertRequest SEQUENCE { certReqId, CertTemplate, controls } */
static struct rp_view cert_request(struct rp_arena *a, const struct rpt_certreq *r, int64_t id)
{
    struct rp_derw w;
    struct rp_view out = RP_VIEW_NULL;
    size_t room = 1024 + r->issuer.len + r->subject.len + r->spki.len + r->validity_raw.len +
                  r->controls_raw.len;
    for (size_t i = 0; i < r->n_exts; i++)
        room += r->exts[i].len;
    rp_derw_init(&w, a, room);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, id);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    if (rp_view_present(r->issuer)) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(3));
        rp_derw_raw(&w, r->issuer);
        rp_derw_end(&w);
    }
    rp_derw_raw(&w, r->validity_raw);
    if (rp_view_present(r->subject)) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(5));
        rp_derw_raw(&w, r->subject);
        rp_derw_end(&w);
    }
    if (rp_view_present(r->spki)) {
        /* [6] IMPLICIT SubjectPublicKeyInfo: same content, other tag */
        uint8_t *copy = rp_arena_dup(a, r->spki.p, r->spki.len);
        if (!copy)
            return RP_VIEW_NULL;
        copy[0] = RP_DER_CTX_CONS(6);
        if (r->key_alg_only) {
            struct rp_der d, c;
            struct rp_der_tlv t, alg;
            rp_der_init(&d, copy, r->spki.len, NULL);
            rp_der_next(&d, &t);
            rp_der_enter(&d, &t, &c);
            rp_der_next(&c, &alg);
            rp_derw_begin(&w, RP_DER_CTX_CONS(6));
            rp_derw_raw(&w, alg.raw);
            rp_derw_bits(&w, RP_VIEW_NULL, 0);
            rp_derw_end(&w);
        } else {
            rp_derw_raw(&w, rp_view_make(copy, r->spki.len));
        }
    }
    if (r->n_exts) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(9));
        for (size_t i = 0; i < r->n_exts; i++)
            rp_derw_raw(&w, r->exts[i]);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    rp_derw_raw(&w, r->controls_raw);
    rp_derw_end(&w);
    rp_derw_finish(&w, &out);
    return out;
}

/* [0] IMPLICIT POPOSigningKeyInput { sender [0] { GeneralName }, publicKey } */
static struct rp_view poposk_input(struct rp_arena *a, const struct rpt_certreq *r)
{
    struct rp_derw w;
    struct rp_view out = RP_VIEW_NULL;
    rp_derw_init(&w, a, 64 + r->poposk_sender.len + r->spki.len);
    rp_derw_begin(&w, RP_DER_CTX_CONS(0));
    rp_derw_begin(&w, RP_DER_CTX_CONS(0));
    rp_derw_raw(&w, r->poposk_sender);
    rp_derw_end(&w);
    rp_derw_raw(&w, r->spki);
    rp_derw_end(&w);
    rp_derw_finish(&w, &out);
    return out;
}

static struct rp_view cert_req_msg(struct rp_arena *a, const struct rpt_certreq *r, int64_t id)
{
    struct rp_view req = cert_request(a, r, id), alg = r->pop_alg, sig = r->pop_sig,
                   input = r->poposk;
    if (!rp_view_present(req))
        return RP_VIEW_NULL;
    if (r->pop == RPT_POP_POPOSK && !rp_view_present(input))
        input = poposk_input(a, r);
    if ((r->pop == RPT_POP_SIGNATURE || r->pop == RPT_POP_POPOSK) && !rp_view_present(sig)) {
        struct rp_view data = req;
        if (r->pop == RPT_POP_POPOSK) {
            uint8_t *copy = rp_arena_dup(a, input.p, input.len);
            copy[0] = RP_DER_SEQUENCE;
            data = rp_view_make(copy, input.len);
        }
        struct rp_privkey *k;
        if (!r->pop_key || rp_privkey_load_pem(r->pop_key, &k) != RP_OK)
            return RP_VIEW_NULL;
        enum rp_sig_alg sa = rp_privkey_default_alg(k);
        uint8_t *s = rp_arena_alloc(a, RP_SIG_MAX);
        size_t sl = 0;
        int rc = rp_privkey_sign(k, sa, data.p, data.len, s, RP_SIG_MAX, &sl);
        rp_privkey_free(k);
        if (rc != RP_OK)
            return RP_VIEW_NULL;
        sig = rp_view_make(s, sl);
        alg = rp_sig_alg_der(sa);
    }
    struct rp_derw w;
    struct rp_view out = RP_VIEW_NULL;
    rp_derw_init(&w, a, 256 + req.len + input.len + sig.len + alg.len);
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_raw(&w, req);
    if (r->pop == RPT_POP_RAVERIFIED) {
        rp_derw_prim(&w, RP_DER_CTX(0), RP_VIEW_NULL);
    } else if (r->pop != RPT_POP_NONE) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(1));
        if (r->pop == RPT_POP_POPOSK)
            rp_derw_raw(&w, input);
        rp_derw_raw(&w, alg);
        rp_derw_bits(&w, sig, 0);
        rp_derw_end(&w);
    }
    rp_derw_end(&w);
    rp_derw_finish(&w, &out);
    return out;
}

struct rp_view rpt_certreqs(struct rp_arena *a, enum rp_cmp_body_type type,
                            const struct rpt_certreq *r, size_t n)
{
    struct rp_view msgs[8];
    size_t total = 64;
    for (size_t i = 0; i < n && i < 8; i++) {
        msgs[i] = cert_req_msg(a, &r[i], (int64_t)i);
        if (!rp_view_present(msgs[i]))
            return RP_VIEW_NULL;
        total += msgs[i].len + 8;
    }
    struct rp_derw w;
    struct rp_view out = RP_VIEW_NULL;
    rp_derw_init(&w, a, total);
    rp_derw_begin(&w, RP_DER_CTX_CONS((unsigned)type));
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    for (size_t i = 0; i < n && i < 8; i++)
        rp_derw_raw(&w, msgs[i]);
    rp_derw_end(&w);
    rp_derw_end(&w);
    rp_derw_finish(&w, &out);
    return out;
}

/* ---- the message ----------------------------------------------------------------------- */

struct rp_view rpt_rebuild(struct rp_arena *a, const uint8_t *base, size_t len,
                           const struct rpt_mut *m)
{
    struct rp_cmp_msg *in = rp_arena_calloc(a, 1, sizeof *in);
    if (!in || rp_cmp_decode(base, len, a, in, NULL) != RP_OK)
        return RP_VIEW_NULL;
    const struct rp_cmp_header *h = &in->header;
    struct rp_view alg = RP_VIEW_NULL;
    if (m->mac != RPT_MAC_NONE)
        alg = mac_alg(a, m);
    else if (m->key_file)
        alg = rp_view_present(m->alg) ? m->alg : h->protection_alg.raw;
    struct rp_derw w;
    if (rp_derw_init(&w, a, HDR_ROOM) != RP_OK)
        return RP_VIEW_NULL;
    rp_derw_begin(&w, RP_DER_SEQUENCE);
    rp_derw_int64(&w, RP_DER_INTEGER, m->pvno ? m->pvno : h->pvno);
    rp_derw_raw(&w, rp_view_present(m->sender) ? m->sender : h->sender.raw);
    rp_derw_raw(&w, h->recipient.raw);
    if (!m->no_time) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(0));
        rp_derw_gentime(&w, (int64_t)time(NULL) + m->time_shift);
        rp_derw_end(&w);
    }
    if (rp_view_present(alg)) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(1));
        rp_derw_raw(&w, alg);
        rp_derw_end(&w);
    }
    if (rp_view_present(m->sender_kid)) {
        rp_derw_begin(&w, RP_DER_CTX_CONS(2));
        rp_derw_octets(&w, m->sender_kid);
        rp_derw_end(&w);
    } else if (!m->no_sender_kid && rp_view_present(h->sender_kid.raw)) {
        rp_derw_raw(&w, h->sender_kid.raw);
    }
    if (rp_view_present(h->recip_kid.raw))
        rp_derw_raw(&w, h->recip_kid.raw);
    rp_derw_begin(&w, RP_DER_CTX_CONS(4));
    rp_derw_octets(&w, rp_view_present(m->txid) ? m->txid : h->transaction_id.val);
    rp_derw_end(&w);
    uint8_t *fresh = rp_arena_alloc(a, 16);
    if (!fresh || getrandom(fresh, 16, 0) != 16)
        return RP_VIEW_NULL;
    rp_derw_begin(&w, RP_DER_CTX_CONS(5));
    rp_derw_octets(&w, rp_view_present(m->nonce) ? m->nonce : rp_view_make(fresh, 16));
    rp_derw_end(&w);
    if (rp_view_present(h->recip_nonce.raw))
        rp_derw_raw(&w, h->recip_nonce.raw);
    if (rp_view_present(h->free_text_raw))
        rp_derw_raw(&w, h->free_text_raw);
    if (rp_view_present(m->general_info))
        rp_derw_raw(&w, m->general_info);
    else if (rp_view_present(h->general_info_raw))
        rp_derw_raw(&w, h->general_info_raw);
    rp_derw_end(&w);
    struct rp_view hdr, pp, out = RP_VIEW_NULL;
    struct rp_view body = rp_view_present(m->body) ? m->body : in->body_raw;
    if (rp_derw_finish(&w, &hdr) != RP_OK || rp_cmp_enc_protected_part(a, hdr, body, &pp) != RP_OK)
        return RP_VIEW_NULL;
    struct rp_view prot = RP_VIEW_NULL;
    if (m->mac != RPT_MAC_NONE)
        prot = mac_compute(a, m, pp);
    else if (m->key_file)
        prot = sign(a, m->key_file, pp, alg);
    if (rp_view_present(prot) && m->flip_protection) {
        uint8_t *copy = rp_arena_dup(a, prot.p, prot.len);
        copy[prot.len / 2] ^= 0x01;
        prot = rp_view_make(copy, prot.len);
    }
    const struct rp_view *xc = m->extra_certs ? m->extra_certs : in->extra_certs;
    size_t nxc = m->extra_certs ? m->n_extra_certs : in->n_extra_certs;
    if (rp_cmp_enc_message(a, hdr, body, prot, xc, nxc, &out) != RP_OK)
        return RP_VIEW_NULL;
    return out;
}

int rpt_post_cmp(int port, const char *path, struct rp_view req, struct rp_arena *a,
                 struct rp_cmp_msg *out)
{
    struct rpt_resp r;
    if (rpt_http(port, "POST", path, "application/pkixcmp", req.p, req.len, 30000, &r) != 0)
        return 0;
    int status = r.status;
    memset(out, 0, sizeof *out);
    if (status == 200) {
        uint8_t *copy = rp_arena_dup(a, r.body, r.body_len);
        if (!copy || rp_cmp_decode(copy, r.body_len, a, out, NULL) != RP_OK)
            status = -1;
    }
    rpt_resp_free(&r);
    return status;
}
