/* TLS sessions over memory buffers. wolfSSL's I/O callbacks read from the session's input
 * buffer and append to its output buffer, so the handshake and record layer run without a
 * socket and the caller (a libuv loop, or a test) moves the bytes. */
#include "raproxy/tls.h"
#include "raproxy/cert.h"
#include "raproxy/err.h"
#include "raproxy/file.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/sig.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Session tickets as wolfSSL issues them are ~200 bytes (its SESSION_TICKET_LEN is 256). */
#define TLS_TICKET_MAX 1024
/* Largest PEM certificate chain file read to check the key against its leaf. */
#define TLS_PEM_MAX (1u << 20)
/* Plaintext of one TLS record: the most one wolfSSL_read can return. */
#define TLS_RECORD_PLAIN_MAX 16384u

/* ECDHE groups, fastest first: the first is the one a client sends a TLS 1.3 key share for. */
static int tls_groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};
#define TLS_GROUP_COUNT ((int)(sizeof tls_groups / sizeof tls_groups[0]))
/* Forward-secret AEAD suites only; wolfSSL's default list would also allow static RSA and
 * CBC suites in TLS 1.2. */
static const char tls_ciphers[] = "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"
                                  "TLS13-CHACHA20-POLY1305-SHA256:"
                                  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct rp_tls_ctx {
    WOLFSSL_CTX *ssl_ctx;
    _Atomic int refs;
    bool server;
    char *sni;
    /* client: the last session with a ticket, offered on the next connection. A private
     * copy, so a live connection updating its own session never races a reader. */
    pthread_mutex_t sess_lock;
    WOLFSSL_SESSION *sess;
    struct rp_tls_device_key device_key; /* owner set: the key is in a PKCS#11 token */
};

enum tls_state { TLS_HANDSHAKE, TLS_OPEN, TLS_CLOSED, TLS_FAILED };

struct rp_tls {
    WOLFSSL *ssl;
    struct rp_tls_ctx *ctx;
    struct rp_buf in;
    struct rp_buf out;
    enum tls_state state;
    int err;                  /* sticky error in TLS_FAILED */
    bool ticket_saved;        /* client: this connection's ticket went to the ctx cache */
    WOLFSSL_SESSION *offered; /* client: the cached session offered (identity only) */
    uint64_t stale_ticket;    /* client, TLS 1.3: fingerprint of the ticket held at the end
                                 of the handshake (the offered one, useless for the next) */
    uint8_t *peer_der;        /* the peer's verified certificate (on_verify), or NULL */
    size_t peer_der_len;
};

/* ---- process-wide setup ---- */

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_init_rc;
static struct rp_metric *m_ok_full, *m_ok_resumed, *m_failed;

static void tls_init(void)
{
    tls_init_rc = wolfSSL_Init() == WOLFSSL_SUCCESS ? RP_OK : RP_E_TLS_SETUP;
    rp_metrics_help("raproxy_tls_handshakes_total", RP_METRIC_COUNTER,
                    "TLS handshakes by result and kind (full or resumed)");
    m_ok_full = rp_metric_get("raproxy_tls_handshakes_total", RP_METRIC_COUNTER,
                              "result=\"ok\",kind=\"full\"");
    m_ok_resumed = rp_metric_get("raproxy_tls_handshakes_total", RP_METRIC_COUNTER,
                                 "result=\"ok\",kind=\"resumed\"");
    m_failed = rp_metric_get("raproxy_tls_handshakes_total", RP_METRIC_COUNTER,
                             "result=\"failed\",kind=\"full\"");
}

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    (void)ssl;
    struct rp_tls *t = arg;
    size_t avail = rp_buf_avail(&t->in);
    if (avail == 0)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    size_t n = sz > 0 && (size_t)sz < avail ? (size_t)sz : avail;
    memcpy(buf, rp_buf_head(&t->in), n);
    rp_buf_consume(&t->in, n);
    return (int)n;
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    (void)ssl;
    struct rp_tls *t = arg;
    if (sz <= 0)
        return 0;
    if (rp_buf_append(&t->out, buf, (size_t)sz))
        return WOLFSSL_CBIO_ERR_GENERAL;
    return sz;
}

/* Called for each certificate of the peer's chain as wolfSSL verifies it (the build has
 * WOLFSSL_ALWAYS_VERIFY_CB): keeps a copy of the leaf's DER for rp_tls_peer_cert, since
 * wolfSSL keeps no peer certificate in the session (that would cost every session a few
 * kilobytes). The verdict is wolfSSL's own. */
static int on_verify(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    struct rp_tls *t = store->userCtx;
    if (!preverify || !t || t->peer_der || store->totalCerts < 1 || !store->certs)
        return preverify;
    const WOLFSSL_BUFFER_INFO *leaf = &store->certs[0];
    if (leaf->length > 0 && (t->peer_der = malloc(leaf->length)) != NULL) {
        memcpy(t->peer_der, leaf->buffer, leaf->length);
        t->peer_der_len = leaf->length;
    }
    return preverify;
}

static int wolf_version(int v)
{
    return v == RP_TLS_V13 ? WOLFSSL_TLSV1_3 : WOLFSSL_TLSV1_2;
}

static int set_groups(WOLFSSL_CTX *x, int max_version)
{
    /* wolfSSL_CTX_set_groups (TLS 1.3 key-share order plus supported_groups) refuses a
     * TLS 1.2-only method; there the supported_groups extension alone does the job */
    if (max_version != RP_TLS_V12)
        return wolfSSL_CTX_set_groups(x, tls_groups, TLS_GROUP_COUNT);
    for (int i = 0; i < TLS_GROUP_COUNT; i++)
        if (wolfSSL_CTX_UseSupportedCurve(x, (word16)tls_groups[i]) != WOLFSSL_SUCCESS)
            return WOLFSSL_FAILURE;
    return WOLFSSL_SUCCESS;
}

static int ctx_alloc(struct rp_tls_ctx **out, bool server, int min_version, int max_version)
{
    pthread_once(&tls_once, tls_init);
    if (tls_init_rc)
        return tls_init_rc;
    if ((min_version && min_version != RP_TLS_V12 && min_version != RP_TLS_V13) ||
        (max_version && max_version != RP_TLS_V12 && max_version != RP_TLS_V13) ||
        (min_version && max_version && min_version > max_version))
        return RP_E_INVAL;
    struct rp_tls_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return RP_E_NOMEM;
    atomic_init(&c->refs, 1);
    c->server = server;
    pthread_mutex_init(&c->sess_lock, NULL);
    WOLFSSL_METHOD *m;
    if (max_version == RP_TLS_V12)
        m = server ? wolfTLSv1_2_server_method() : wolfTLSv1_2_client_method();
    else
        m = server ? wolfSSLv23_server_method() : wolfSSLv23_client_method();
    c->ssl_ctx = m ? wolfSSL_CTX_new(m) : NULL;
    if (!c->ssl_ctx) {
        rp_tls_ctx_unref(c);
        return RP_E_NOMEM;
    }
    WOLFSSL_CTX *x = c->ssl_ctx;
    const char *what = NULL;
    if (wolfSSL_CTX_SetMinVersion(x, wolf_version(min_version)) != WOLFSSL_SUCCESS)
        what = "minimum version";
    else if (wolfSSL_CTX_set_cipher_list(x, tls_ciphers) != WOLFSSL_SUCCESS)
        what = "cipher suites";
    else if (set_groups(x, max_version) != WOLFSSL_SUCCESS)
        what = "ECDHE groups";
    if (what) {
        rp_log_error("tls_setup", "cannot set %s", what);
        rp_tls_ctx_unref(c);
        return RP_E_TLS_SETUP;
    }
    wolfSSL_CTX_SetIORecv(x, io_recv);
    wolfSSL_CTX_SetIOSend(x, io_send);
    *out = c;
    return RP_OK;
}

/* wolfSSL_CTX_check_private_key does not compare an EC private key with the certificate's
 * public point in every build: compare the key's public part with the leaf's
 * subjectPublicKeyInfo with raproxy's own key code (no OpenSSL compatibility layer). */
static bool key_matches_cert(const char *key_file, const char *cert_file)
{
    bool ok = false;
    uint8_t *pem = NULL, *der = NULL;
    size_t pem_len = 0;
    struct rp_privkey *key = NULL;
    if (rp_file_read(cert_file, TLS_PEM_MAX, &pem, &pem_len) != RP_OK ||
        rp_privkey_load_pem(key_file, &key) != RP_OK || !(der = malloc(pem_len)))
        goto out;
    int n = wc_CertPemToDer(pem, (int)pem_len, der, (int)pem_len, CERT_TYPE); /* the leaf */
    struct rp_cert cert;
    ok = n > 0 && rp_cert_parse(der, (size_t)n, &cert) == RP_OK &&
         rp_privkey_matches_spki(key, cert.spki) == 1;
out:
    rp_privkey_free(key);
    free(der);
    free(pem);
    return ok;
}

static int load_pair(WOLFSSL_CTX *x, const char *cert, const char *key)
{
    if (wolfSSL_CTX_use_certificate_chain_file(x, cert) != WOLFSSL_SUCCESS) {
        rp_log_error("tls_key_load", "cannot load certificate chain %s", cert);
        return RP_E_KEY_LOAD;
    }
    if (wolfSSL_CTX_use_PrivateKey_file(x, key, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        rp_log_error("tls_key_load", "cannot load private key %s", key);
        return RP_E_KEY_LOAD;
    }
    if (!key_matches_cert(key, cert)) {
        rp_log_error("tls_key_load", "private key %s does not match certificate %s", key, cert);
        return RP_E_KEY_LOAD;
    }
    return RP_OK;
}

/* The certificate first: wolfSSL takes the token key's type and size from it. */
static int load_device_pair(struct rp_tls_ctx *c, const char *cert,
                            const struct rp_tls_device_key *k)
{
    if (wolfSSL_CTX_use_certificate_chain_file(c->ssl_ctx, cert) != WOLFSSL_SUCCESS) {
        rp_log_error("tls_key_load", "cannot load certificate chain %s", cert);
        return RP_E_KEY_LOAD;
    }
    int ok = k->label
                 ? wolfSSL_CTX_use_PrivateKey_Label(c->ssl_ctx, k->label, k->dev_id)
                 : wolfSSL_CTX_use_PrivateKey_Id(c->ssl_ctx, k->id, (long)k->id_len, k->dev_id);
    if (ok != WOLFSSL_SUCCESS) {
        rp_log_error("tls_key_load", "cannot use the token key for %s", cert);
        return RP_E_TLS_SETUP;
    }
    c->device_key = *k; /* the context now owns k->owner */
    return RP_OK;
}

static int load_anchors(WOLFSSL_CTX *x, const char *file)
{
    if (wolfSSL_CTX_load_verify_locations(x, file, NULL) != WOLFSSL_SUCCESS) {
        rp_log_error("tls_key_load", "cannot load CA certificates %s", file);
        return RP_E_KEY_LOAD;
    }
    return RP_OK;
}

int rp_tls_ctx_server(struct rp_tls_ctx **out, const struct rp_tls_server_opts *o)
{
    if (!out || !o || !o->cert_file || (!o->key_file && !o->device_key))
        return RP_E_INVAL;
    struct rp_tls_ctx *c = NULL;
    int rc = ctx_alloc(&c, true, o->min_version, 0);
    if (rc) {
        if (o->device_key && o->device_key->release)
            o->device_key->release(o->device_key->owner);
        return rc;
    }
    WOLFSSL_CTX *x = c->ssl_ctx;
    if (o->device_key) {
        rc = load_device_pair(c, o->cert_file, o->device_key);
        if (rc && o->device_key->release)
            o->device_key->release(o->device_key->owner);
    } else {
        rc = load_pair(x, o->cert_file, o->key_file);
    }
    if (rc)
        goto out;
    int mode = WOLFSSL_VERIFY_NONE;
    if (o->client_ca_file) {
        rc = load_anchors(x, o->client_ca_file);
        if (rc)
            goto out;
        mode = WOLFSSL_VERIFY_PEER;
        if (o->client_cert_required)
            mode |= WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    } else if (o->client_cert_required) {
        rp_log_error("tls_setup", "client certificates required but no client CA file given");
        rc = RP_E_INVAL;
        goto out;
    }
    wolfSSL_CTX_set_verify(x, mode, mode == WOLFSSL_VERIFY_NONE ? NULL : on_verify);
    /* wolfSSL's default ticket callback keeps a random key per WOLFSSL_CTX, so a context
     * rebuilt on SIGHUP stops honouring old tickets. Its session-ID cache is process-global
     * though, and would resume an old context's sessions (verified against the old client
     * CAs) under the new one: servers keep no session-ID cache; tickets resume. */
    wolfSSL_CTX_set_session_cache_mode(x, WOLFSSL_SESS_CACHE_OFF);
out:
    if (rc) {
        rp_tls_ctx_unref(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

int rp_tls_ctx_client(struct rp_tls_ctx **out, const struct rp_tls_client_opts *o)
{
    if (!out || !o || (!o->cert_file != !o->key_file))
        return RP_E_INVAL;
    struct rp_tls_ctx *c = NULL;
    int rc = ctx_alloc(&c, false, o->min_version, o->max_version);
    if (rc)
        return rc;
    WOLFSSL_CTX *x = c->ssl_ctx;
    if (o->cert_file) {
        rc = load_pair(x, o->cert_file, o->key_file);
        if (rc)
            goto out;
    }
    if (o->ca_file) {
        rc = load_anchors(x, o->ca_file);
        if (rc)
            goto out;
        wolfSSL_CTX_set_verify(x, WOLFSSL_VERIFY_PEER, on_verify);
    } else {
        wolfSSL_CTX_set_verify(x, WOLFSSL_VERIFY_NONE, NULL);
    }
    if (wolfSSL_CTX_UseSessionTicket(x) != WOLFSSL_SUCCESS) {
        rc = RP_E_TLS_SETUP;
        goto out;
    }
    if (o->sni && !(c->sni = strdup(o->sni))) {
        rc = RP_E_NOMEM;
        goto out;
    }
out:
    if (rc) {
        rp_tls_ctx_unref(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

void rp_tls_ctx_ref(struct rp_tls_ctx *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

bool rp_tls_ctx_key_available(const struct rp_tls_ctx *c)
{
    return !c->device_key.owner || !c->device_key.available ||
           c->device_key.available(c->device_key.owner);
}

void rp_tls_ctx_unref(struct rp_tls_ctx *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (c->sess)
        wolfSSL_SESSION_free(c->sess);
    if (c->ssl_ctx)
        wolfSSL_CTX_free(c->ssl_ctx);
    if (c->device_key.owner && c->device_key.release)
        c->device_key.release(c->device_key.owner);
    pthread_mutex_destroy(&c->sess_lock);
    free(c->sni);
    free(c);
}

/* ---- client session cache (one slot) ---- */

static void offer_saved_session(struct rp_tls *t)
{
    struct rp_tls_ctx *c = t->ctx;
    pthread_mutex_lock(&c->sess_lock);
    if (c->sess && wolfSSL_set_session(t->ssl, c->sess) == WOLFSSL_SUCCESS)
        t->offered = c->sess; /* failure only means a full handshake */
    pthread_mutex_unlock(&c->sess_lock);
}

/* A handshake that offered a saved session failed: forget the session, so the retry does a
 * full handshake. wolfSSL 5.5's TLS 1.2 client assumes resumption whenever it sent a ticket,
 * even when the server refused it (new ticket key after the server restarted), and then
 * fails; without this every later connection would fail the same way. */
static void drop_offered_session(struct rp_tls *t)
{
    struct rp_tls_ctx *c = t->ctx;
    if (!t->offered)
        return;
    pthread_mutex_lock(&c->sess_lock);
    WOLFSSL_SESSION *old = c->sess == t->offered ? c->sess : NULL;
    if (old)
        c->sess = NULL;
    pthread_mutex_unlock(&c->sess_lock);
    if (old)
        wolfSSL_SESSION_free(old);
    t->offered = NULL;
}

/* FNV-1a of the session's current ticket; 0 when it has none. */
static uint64_t ticket_fingerprint(struct rp_tls *t)
{
    unsigned char ticket[TLS_TICKET_MAX];
    word32 len = sizeof ticket;
    if (wolfSSL_get_SessionTicket(t->ssl, ticket, &len) != WOLFSSL_SUCCESS || len == 0)
        return 0;
    uint64_t h = 14695981039346656037ull;
    for (word32 i = 0; i < len; i++)
        h = (h ^ ticket[i]) * 1099511628211ull;
    return h ? h : 1;
}

/* TLS 1.2 tickets arrive inside the handshake, TLS 1.3 ones after it: called after each
 * processing round until this connection has stored one. A resumed TLS 1.3 connection
 * still holds the ticket it offered, which does not fit this connection's secrets: only a
 * ticket received on this connection is worth keeping. */
static void save_session(struct rp_tls *t)
{
    if (t->ctx->server || t->ticket_saved)
        return;
    uint64_t fp = ticket_fingerprint(t);
    if (fp == 0 || fp == t->stale_ticket)
        return;
    WOLFSSL_SESSION *s = wolfSSL_get_session(t->ssl);
    if (!s)
        return;
    WOLFSSL_SESSION *copy = wolfSSL_SESSION_dup(s);
    if (!copy)
        return;
    struct rp_tls_ctx *c = t->ctx;
    pthread_mutex_lock(&c->sess_lock);
    WOLFSSL_SESSION *old = c->sess;
    c->sess = copy;
    pthread_mutex_unlock(&c->sess_lock);
    if (old)
        wolfSSL_SESSION_free(old);
    t->ticket_saved = true;
}

/* ---- sessions ---- */

int rp_tls_new(struct rp_tls **out, struct rp_tls_ctx *ctx)
{
    if (!out || !ctx)
        return RP_E_INVAL;
    struct rp_tls *t = calloc(1, sizeof *t);
    if (!t)
        return RP_E_NOMEM;
    int rc = RP_E_NOMEM;
    t->ssl = wolfSSL_new(ctx->ssl_ctx);
    if (!t->ssl)
        goto out;
    rp_tls_ctx_ref(ctx);
    t->ctx = ctx;
    rp_buf_init(&t->in, RP_TLS_IN_MAX);
    rp_buf_init(&t->out, 0);
    wolfSSL_SetIOReadCtx(t->ssl, t);
    wolfSSL_SetIOWriteCtx(t->ssl, t);
    wolfSSL_SetCertCbCtx(t->ssl, t); /* on_verify's store->userCtx */
    if (!ctx->server) {
        rc = RP_E_TLS_SETUP;
        if (ctx->sni) {
            if (wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, ctx->sni,
                               (unsigned short)strlen(ctx->sni)) != WOLFSSL_SUCCESS)
                goto out;
            /* only meaningful with verification on; harmless otherwise */
            if (wolfSSL_check_domain_name(t->ssl, ctx->sni) != WOLFSSL_SUCCESS)
                goto out;
        }
        offer_saved_session(t);
    }
    rc = RP_OK;
out:
    if (rc) {
        rp_tls_free(t);
        t = NULL;
    }
    *out = t;
    return rc;
}

void rp_tls_free(struct rp_tls *t)
{
    if (!t)
        return;
    if (t->ssl) {
        if (t->state == TLS_OPEN || t->state == TLS_CLOSED)
            save_session(t);
        wolfSSL_free(t->ssl);
    }
    rp_buf_free(&t->in);
    rp_buf_free(&t->out);
    free(t->peer_der);
    rp_tls_ctx_unref(t->ctx);
    free(t);
}

int rp_tls_feed(struct rp_tls *t, const uint8_t *p, size_t n)
{
    int rc = rp_buf_append(&t->in, p, n);
    return rc == RP_E_ARENA ? RP_E_AGAIN : rc;
}

void rp_tls_shrink(struct rp_tls *t)
{
    if (rp_buf_avail(&t->in) == 0)
        rp_buf_free(&t->in);
    if (rp_buf_avail(&t->out) == 0)
        rp_buf_free(&t->out);
}

static int fail(struct rp_tls *t, int err)
{
    if (t->state == TLS_HANDSHAKE) {
        rp_metric_inc(m_failed);
        drop_offered_session(t);
    }
    t->state = TLS_FAILED;
    t->err = err;
    return err;
}

static int handshake(struct rp_tls *t)
{
    int r = wolfSSL_negotiate(t->ssl);
    if (r != WOLFSSL_SUCCESS) {
        int e = wolfSSL_get_error(t->ssl, r);
        if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
            return RP_OK;
        char msg[WOLFSSL_MAX_ERROR_SZ];
        wolfSSL_ERR_error_string_n((unsigned long)e, msg, sizeof msg);
        rp_log_info("tls_handshake_failed", "%s (%d)", msg, e);
        return fail(t, RP_E_TLS_HANDSHAKE);
    }
    t->state = TLS_OPEN;
    rp_metric_inc(wolfSSL_session_reused(t->ssl) ? m_ok_resumed : m_ok_full);
    if (!t->ctx->server && wolfSSL_version(t->ssl) == TLS1_3_VERSION)
        t->stale_ticket = ticket_fingerprint(t);
    save_session(t);
    return RP_OK;
}

/* Room for the next wolfSSL_read in plain_out: a record's worth, less if the caller's
 * buffer has a lower cap. 0 when it is full. */
static size_t plain_room(struct rp_buf *b)
{
    size_t want = TLS_RECORD_PLAIN_MAX;
    if (b->max) {
        size_t unread = rp_buf_avail(b);
        size_t left = b->max > unread ? b->max - unread : 0;
        if (left < want)
            want = left;
    }
    if (want && rp_buf_reserve(b, want))
        return 0;
    return want;
}

static int read_records(struct rp_tls *t, struct rp_buf *plain_out)
{
    while (rp_buf_avail(&t->in) > 0 || wolfSSL_has_pending(t->ssl)) {
        size_t room = plain_room(plain_out);
        if (room == 0)
            return RP_OK; /* caller's buffer full: rp_tls_pending tells it to come back */
        int n = wolfSSL_read(t->ssl, plain_out->data + plain_out->len,
                             (int)(room > INT32_MAX ? INT32_MAX : room));
        if (n > 0) {
            plain_out->len += (size_t)n;
            continue;
        }
        int e = wolfSSL_get_error(t->ssl, n);
        if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
            return RP_OK;
        if (e == WOLFSSL_ERROR_ZERO_RETURN) {
            t->state = TLS_CLOSED;
            return RP_E_TLS_CLOSED;
        }
        return fail(t, RP_E_TLS_PROTOCOL);
    }
    return RP_OK;
}

int rp_tls_process(struct rp_tls *t, struct rp_buf *plain_out)
{
    if (rp_buf_avail(&t->out) == 0)
        rp_buf_free(&t->out);
    if (t->state == TLS_FAILED)
        return t->err;
    if (t->state == TLS_CLOSED)
        return RP_E_TLS_CLOSED;
    int rc = RP_OK;
    if (t->state == TLS_HANDSHAKE) {
        rc = handshake(t);
        if (rc || t->state != TLS_OPEN)
            goto out;
    }
    rc = read_records(t, plain_out);
    if (t->state == TLS_OPEN || t->state == TLS_CLOSED)
        save_session(t);
out:
    if (rp_buf_avail(&t->in) == 0)
        rp_buf_free(&t->in);
    return rc;
}

bool rp_tls_pending(const struct rp_tls *t)
{
    return rp_buf_avail(&t->in) > 0 || wolfSSL_has_pending(t->ssl);
}

bool rp_tls_handshake_done(const struct rp_tls *t)
{
    return t->state == TLS_OPEN || t->state == TLS_CLOSED;
}

int rp_tls_write(struct rp_tls *t, const uint8_t *p, size_t n)
{
    if (t->state == TLS_FAILED)
        return t->err;
    if (t->state == TLS_HANDSHAKE)
        return RP_E_AGAIN;
    if (t->state == TLS_CLOSED)
        return RP_E_TLS_CLOSED;
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done > TLS_RECORD_PLAIN_MAX ? TLS_RECORD_PLAIN_MAX : n - done;
        int w = wolfSSL_write(t->ssl, p + done, (int)chunk);
        if (w <= 0)
            return fail(t, RP_E_TLS_PROTOCOL);
        done += (size_t)w;
    }
    return RP_OK;
}

struct rp_buf *rp_tls_out(struct rp_tls *t)
{
    return &t->out;
}

int rp_tls_close(struct rp_tls *t)
{
    if (t->state != TLS_OPEN && t->state != TLS_CLOSED)
        return RP_OK; /* nothing established to close politely */
    int r = wolfSSL_shutdown(t->ssl);
    if (r == WOLFSSL_SUCCESS || r == WOLFSSL_SHUTDOWN_NOT_DONE)
        return RP_OK;
    int e = wolfSSL_get_error(t->ssl, r);
    return e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE ? RP_OK
                                                                         : RP_E_TLS_PROTOCOL;
}

const char *rp_tls_version(const struct rp_tls *t)
{
    if (!rp_tls_handshake_done(t))
        return "unknown";
    return wolfSSL_get_version(t->ssl);
}

bool rp_tls_resumed(const struct rp_tls *t)
{
    return rp_tls_handshake_done(t) && wolfSSL_session_reused(t->ssl);
}

int rp_tls_peer_cert(struct rp_tls *t, struct rp_view *der)
{
    if (!rp_tls_handshake_done(t) || !t->peer_der)
        return RP_E_NOT_FOUND;
    *der = rp_view_make(t->peer_der, t->peer_der_len);
    return RP_OK;
}
