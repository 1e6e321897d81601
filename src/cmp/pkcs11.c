/* PKCS#11 tokens through wolfSSL's PKCS#11 support (wc_Pkcs11_*, crypto-callback devices).
 *
 * wolfSSL 5.5.4's own session handling does not fit a multi-threaded server: its token
 * lookup by name walks slot indexes instead of slot IDs and compares label prefixes, a
 * second C_Login fails on CKR_USER_ALREADY_LOGGED_IN, and closing a token logs every session
 * out. So this file finds the slot, opens the sessions and logs in itself, and hands
 * wolfSSL a Pkcs11Token per session whose handle is already open; wolfSSL then only finds
 * the key object and signs (C_FindObjects, C_SignInit, C_Sign) in that session. */
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/cryptocb.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/wc_pkcs11.h>
#include <wolfssl/wolfcrypt/wc_port.h>

#include "raproxy/err.h"
#include "raproxy/file.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"
#include "raproxy/pkcs11.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#if !defined(HAVE_PKCS11) || !defined(WOLF_CRYPTO_CB)
#error "raproxy needs a wolfSSL built with PKCS#11 support (HAVE_PKCS11, WOLF_CRYPTO_CB)"
#endif

/* Return values wolfSSL's pkcs11.h leaves out (PKCS#11 v2.40 §11.1). */
#define RV_GENERAL_ERROR          0x05UL
#define RV_SLOT_ID_INVALID        0x03UL
#define RV_DEVICE_ERROR           0x30UL
#define RV_DEVICE_REMOVED         0x32UL
#define RV_PIN_INCORRECT          0xA0UL
#define RV_PIN_LOCKED             0xA4UL
#define RV_SESSION_HANDLE_INVALID 0xB3UL
#define RV_TOKEN_NOT_PRESENT      0xE0UL
#define RV_USER_ALREADY_LOGGED_IN 0x100UL
#define RV_USER_NOT_LOGGED_IN     0x101UL
#define RV_USER_PIN_NOT_INIT      0x102UL
#define RV_ALREADY_INITIALIZED    0x191UL
/* CK_TOKEN_INFO.flags: the token has been initialised (a fresh SoftHSM2 slot has not) */
#define TOKEN_INITIALIZED 0x400UL

/* wolfCrypt's device table holds 8 (MAX_CRYPTO_DEVID_CALLBACKS); leave room for others. */
#define MAX_TOKENS 6
/* Device IDs of tokens: any value other than INVALID_DEVID (-2) that nobody else uses. */
#define DEVID_BASE 0x52500000
/* Sessions shared by threads that are not workers (TLS handshakes on loops, the main thread). */
#define SHARED_SESSIONS 4
/* Slots and objects looked at when resolving a URI. */
#define MAX_SLOTS   64
#define MAX_MATCHES 2
/* Longest CKA_EC_PARAMS (a named-curve OID) and RSA modulus read. */
#define EC_PARAMS_MAX 16
#define RSA_N_MAX     512
#define RSA_E_MAX     16
/* Keys looked for again when a token is reconnected (a reload's old and new keys fit). */
#define MAX_PROBED_KEYS 16

/* ---------------------------------------------------------------- modules and tokens */

struct p11_module {
    char *path;
    Pkcs11Dev dev;
    /* Operations hold it shared; a re-initialisation (C_Finalize + C_Initialize) holds it
     * exclusively, so no call is inside the module while it restarts. */
    pthread_rwlock_t use;
    _Atomic uint64_t gen; /* bumped by every re-initialisation: older handles are void */
    struct p11_module *next;
};

struct p11_session {
    pthread_mutex_t lock; /* shared sessions only; a worker's own needs none */
    bool open;
    uint64_t gen;     /* token generation it was opened in */
    uint64_t mod_gen; /* module generation it was opened in */
    Pkcs11Token wt;   /* what wolfSSL's callback gets: handle already open, no login */
};

enum token_state { TOKEN_UP, TOKEN_DOWN };

struct p11_token {
    struct p11_module *mod;
    struct rp_p11_uri sel; /* the token and slot attributes of the URI that opened it */
    char pin[RP_P11_PIN_MAX + 1];
    size_t pin_len;
    char name[40];           /* token label, for logs and metric labels */
    _Atomic CK_SLOT_ID slot; /* rewritten by the reconnect thread (IDs may change) */
    int dev_id;
    _Atomic int state;    /* enum token_state */
    _Atomic uint64_t gen; /* bumped when reconnected: every session reopens */
    unsigned refs;        /* keys using it (under g_lock) */
    unsigned backoff_ms;
    struct timespec next_try;
    /* the private keys opened on it: the reconnect probe finds them again */
    struct p11_keyref *keys;
    struct rp_metric *m_up, *m_errors, *m_reconnect_ok, *m_reconnect_failed;
    struct p11_session shared[SHARED_SESSIONS];
    struct p11_session worker[RP_P11_WORKER_SESSIONS];
    struct p11_token *next;
};

struct p11_keyref {
    CK_ATTRIBUTE_TYPE attr; /* CKA_LABEL or CKA_ID */
    uint8_t value[RP_P11_ID_MAX + 1];
    size_t len;
    CK_KEY_TYPE type;
    struct p11_keyref *next;
};

struct rp_p11_key {
    struct p11_token *token;
    struct p11_keyref *ref; /* in token->keys */
    enum rp_p11_key_type type;
    int wc_curve;
    unsigned bits;
    char label[RP_P11_LABEL_MAX + 1];
    uint8_t id[RP_P11_ID_MAX];
    size_t id_len;
    uint8_t n[RSA_N_MAX], e[RSA_E_MAX];
    size_t n_len, e_len;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;
static struct p11_module *g_modules;
static struct p11_token *g_tokens;
static unsigned g_ntokens;
static pthread_t g_monitor;
static bool g_monitor_running, g_stop;
static _Thread_local int t_worker = -1;

static const char *rv_name(CK_RV rv)
{
    switch (rv) {
    case CKR_OK:
        return "CKR_OK";
    case RV_GENERAL_ERROR:
        return "CKR_GENERAL_ERROR";
    case RV_SLOT_ID_INVALID:
        return "CKR_SLOT_ID_INVALID";
    case RV_DEVICE_ERROR:
        return "CKR_DEVICE_ERROR";
    case RV_DEVICE_REMOVED:
        return "CKR_DEVICE_REMOVED";
    case RV_PIN_INCORRECT:
        return "CKR_PIN_INCORRECT";
    case RV_PIN_LOCKED:
        return "CKR_PIN_LOCKED";
    case RV_SESSION_HANDLE_INVALID:
        return "CKR_SESSION_HANDLE_INVALID";
    case RV_TOKEN_NOT_PRESENT:
        return "CKR_TOKEN_NOT_PRESENT";
    case RV_USER_NOT_LOGGED_IN:
        return "CKR_USER_NOT_LOGGED_IN";
    case RV_USER_PIN_NOT_INIT:
        return "CKR_USER_PIN_NOT_INITIALIZED";
    default:
        return "a PKCS#11 error";
    }
}

static void whyf(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void whyf(char *why, size_t cap, const char *fmt, ...)
{
    if (!why || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

/* A blank-padded PKCS#11 text field equals want (want empty: anything matches). */
static bool field_is(const unsigned char *field, size_t n, const char *want)
{
    if (!want[0])
        return true;
    while (n > 0 && (field[n - 1] == ' ' || field[n - 1] == 0))
        n--;
    return strlen(want) == n && memcmp(field, want, n) == 0;
}

static void field_copy(char *dst, size_t cap, const unsigned char *field, size_t n)
{
    while (n > 0 && (field[n - 1] == ' ' || field[n - 1] == 0))
        n--;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++)
        dst[o++] = isalnum(field[i]) || field[i] == '-' || field[i] == '_' || field[i] == '.'
                       ? (char)field[i]
                       : '_';
    dst[o] = 0;
}

static int module_init(struct p11_module *m, char *why, size_t cap)
{
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK; /* workers call in parallel, each in its own session */
    CK_RV rv = m->dev.func->C_Initialize(&args);
    if (rv != CKR_OK && rv != RV_ALREADY_INITIALIZED) {
        whyf(why, cap, "%s: C_Initialize: %s (0x%lx)", m->path, rv_name(rv), (unsigned long)rv);
        return RP_E_KEY_LOAD;
    }
    return RP_OK;
}

/* Under g_lock. */
static struct p11_module *module_get(const char *path, char *why, size_t cap)
{
    for (struct p11_module *m = g_modules; m; m = m->next)
        if (strcmp(m->path, path) == 0)
            return m;
    struct p11_module *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        whyf(why, cap, "out of memory");
        return NULL;
    }
    CK_RV rv = CKR_OK;
    int rc = wc_Pkcs11_Initialize_ex(&m->dev, path, NULL, &rv);
    if (rc != 0) {
        if (rc == BAD_PATH_ERROR)
            whyf(why, cap, "cannot load the PKCS#11 module %s", path);
        else
            whyf(why, cap, "%s: C_Initialize: %s (0x%lx)", path, rv_name(rv), (unsigned long)rv);
        free(m->path);
        free(m);
        return NULL;
    }
    pthread_rwlock_init(&m->use, NULL);
    m->next = g_modules;
    g_modules = m;
    return m;
}

static bool slot_matches(struct p11_module *m, CK_SLOT_ID id, const struct rp_p11_uri *u,
                         char *label, size_t label_cap)
{
    CK_TOKEN_INFO ti;
    CK_SLOT_INFO si;
    if (m->dev.func->C_GetTokenInfo(id, &ti) != CKR_OK || !(ti.flags & TOKEN_INITIALIZED))
        return false;
    field_copy(label, label_cap, ti.label, sizeof ti.label);
    if (u->has_slot_id && u->slot_id != id)
        return false;
    if (!field_is(ti.label, sizeof ti.label, u->token) ||
        !field_is(ti.manufacturerID, sizeof ti.manufacturerID, u->manufacturer) ||
        !field_is(ti.model, sizeof ti.model, u->model) ||
        !field_is(ti.serialNumber, sizeof ti.serialNumber, u->serial))
        return false;
    if (u->slot_description[0] || u->slot_manufacturer[0]) {
        if (m->dev.func->C_GetSlotInfo(id, &si) != CKR_OK ||
            !field_is(si.slotDescription, sizeof si.slotDescription, u->slot_description) ||
            !field_is(si.manufacturerID, sizeof si.manufacturerID, u->slot_manufacturer))
            return false;
    }
    return true;
}

/* The one initialised token the URI's token and slot attributes select. */
static int slot_find(struct p11_module *m, const struct rp_p11_uri *u, CK_SLOT_ID *out, char *name,
                     size_t name_cap, char *why, size_t cap)
{
    CK_SLOT_ID slots[MAX_SLOTS];
    CK_ULONG n = MAX_SLOTS;
    CK_RV rv = m->dev.func->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        whyf(why, cap, "C_GetSlotList: %s (0x%lx)", rv_name(rv), (unsigned long)rv);
        return RP_E_KEY_LOAD;
    }
    unsigned found = 0;
    char seen[256] = "", label[40];
    size_t sl = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        label[0] = 0;
        if (slot_matches(m, slots[i], u, label, sizeof label)) {
            if (found++ == 0) {
                *out = slots[i];
                snprintf(name, name_cap, "%s", label);
            }
        }
        if (label[0] && sl + strlen(label) + 4 < sizeof seen)
            sl += (size_t)snprintf(seen + sl, sizeof seen - sl, "%s'%s'", sl ? ", " : "", label);
    }
    if (found == 1)
        return RP_OK;
    if (found == 0)
        whyf(why, cap, "no token matches the URI (tokens present: %s)", sl ? seen : "none");
    else
        whyf(why, cap, "%u tokens match the URI: add serial= or slot-id=", found);
    return RP_E_KEY_LOAD;
}

/* ---------------------------------------------------------------- sessions */

/* Open s and log in (login is per token and application: a second session finds the user
 * already logged in, which is fine). The module must be held shared. */
static int session_open(struct p11_token *t, struct p11_session *s, char *why, size_t cap)
{
    CK_FUNCTION_LIST *f = t->mod->dev.func;
    CK_SESSION_HANDLE h = 0;
    CK_SLOT_ID slot = atomic_load(&t->slot);
    CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h);
    if (rv != CKR_OK) {
        whyf(why, cap, "token '%s': C_OpenSession: %s (0x%lx)", t->name, rv_name(rv),
             (unsigned long)rv);
        return RP_E_KEY_LOAD;
    }
    if (t->pin_len) {
        rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)t->pin, (CK_ULONG)t->pin_len);
        if (rv != CKR_OK && rv != RV_USER_ALREADY_LOGGED_IN) {
            f->C_CloseSession(h);
            whyf(why, cap, "token '%s': C_Login: %s (0x%lx)", t->name, rv_name(rv),
                 (unsigned long)rv);
            return RP_E_KEY_LOAD;
        }
    }
    memset(&s->wt, 0, sizeof s->wt);
    s->wt.func = f;
    s->wt.slotId = slot;
    s->wt.handle = h;
    s->gen = atomic_load(&t->gen);
    s->mod_gen = atomic_load(&t->mod->gen);
    s->open = true;
    return RP_OK;
}

/* Never C_Logout: it would log out every session of the application on that token. */
static void session_close(struct p11_token *t, struct p11_session *s)
{
    if (s->open && s->mod_gen == atomic_load(&t->mod->gen))
        t->mod->dev.func->C_CloseSession(s->wt.handle);
    s->open = false;
}

static bool session_fresh(struct p11_token *t, const struct p11_session *s)
{
    return s->open && s->gen == atomic_load(&t->gen) && s->mod_gen == atomic_load(&t->mod->gen);
}

/* The session of the calling thread: a worker's own (reopened here, on the worker, when a
 * reconnect made it stale), or a free shared one (locked; never opened here: this may be
 * an I/O loop). NULL when none can be had. */
static struct p11_session *session_take(struct p11_token *t)
{
    if (t_worker >= 0 && (unsigned)t_worker < RP_P11_WORKER_SESSIONS) {
        struct p11_session *s = &t->worker[t_worker];
        if (!session_fresh(t, s)) {
            session_close(t, s);
            if (session_open(t, s, NULL, 0) != RP_OK)
                return NULL;
        }
        return s;
    }
    static atomic_uint hint;
    unsigned start = atomic_fetch_add_explicit(&hint, 1, memory_order_relaxed);
    struct p11_session *s = NULL;
    for (unsigned i = 0; i < SHARED_SESSIONS && !s; i++)
        if (pthread_mutex_trylock(&t->shared[(start + i) % SHARED_SESSIONS].lock) == 0)
            s = &t->shared[(start + i) % SHARED_SESSIONS];
    if (!s) {
        s = &t->shared[start % SHARED_SESSIONS];
        pthread_mutex_lock(&s->lock);
    }
    if (!session_fresh(t, s)) {
        pthread_mutex_unlock(&s->lock);
        return NULL;
    }
    return s;
}

static void session_give(struct p11_token *t, struct p11_session *s)
{
    if (s && s >= t->shared && s < t->shared + SHARED_SESSIONS)
        pthread_mutex_unlock(&s->lock);
}

/* Under the module shared lock; shared-session locks taken here. */
static int shared_sessions_open(struct p11_token *t, char *why, size_t cap)
{
    int rc = RP_OK;
    for (unsigned i = 0; i < SHARED_SESSIONS && rc == RP_OK; i++) {
        pthread_mutex_lock(&t->shared[i].lock);
        session_close(t, &t->shared[i]);
        rc = session_open(t, &t->shared[i], why, cap);
        pthread_mutex_unlock(&t->shared[i].lock);
    }
    return rc;
}

/* ---------------------------------------------------------------- token state */

static void token_state(struct p11_token *t, enum token_state st, const char *why)
{
    int old = atomic_exchange(&t->state, (int)st);
    if (old == (int)st)
        return;
    rp_metric_set(t->m_up, st == TOKEN_UP);
    if (st == TOKEN_DOWN) {
        rp_log_error("pkcs11",
                     "token '%s' unavailable: %s; signing with its keys fails until "
                     "it is reconnected",
                     t->name, why);
        pthread_mutex_lock(&g_lock);
        t->backoff_ms = RP_P11_RETRY_MIN_MS;
        clock_gettime(CLOCK_MONOTONIC, &t->next_try);
        pthread_cond_signal(&g_wake);
        pthread_mutex_unlock(&g_lock);
    } else {
        rp_log_info("pkcs11", "token '%s' reconnected", t->name);
    }
}

/* A private-key operation failed: the session is suspect, the token down until the
 * reconnect thread has proven it again. */
static void token_failed(struct p11_token *t, const char *what)
{
    rp_metric_inc(t->m_errors);
    token_state(t, TOKEN_DOWN, what);
}

/* Operations with a private key bound to the token. wolfCrypt also offers every device
 * one-shot hashes (wc_ShaHash asks the first registered device): those, and anything else,
 * stay in software without a look at the token. */
static bool is_key_op(const wc_CryptoInfo *info)
{
    if (info->algo_type != WC_ALGO_TYPE_PK)
        return false;
    switch (info->pk.type) {
    case WC_PK_TYPE_ECDSA_SIGN:
    case WC_PK_TYPE_RSA:
    case WC_PK_TYPE_EC_CHECK_PRIV_KEY:
    case WC_PK_TYPE_RSA_CHECK_PRIV_KEY:
        return true;
    default:
        return false;
    }
}

/* wolfCrypt calls this for every operation on a key bound to the token's device ID. */
static int on_device(int dev_id, wc_CryptoInfo *info, void *ctx)
{
    struct p11_token *t = ctx;
    if (!is_key_op(info))
        return CRYPTOCB_UNAVAILABLE;
    if (atomic_load(&t->state) != TOKEN_UP)
        return WC_HW_E; /* fail fast: no token call while it is known to be away */
    if (pthread_rwlock_tryrdlock(&t->mod->use) != 0)
        return WC_HW_E; /* the module is being re-initialised */
    struct p11_session *s = session_take(t);
    int rc = s ? wc_Pkcs11_CryptoDevCb(dev_id, info, &s->wt) : WC_HW_E;
    /* A signature that worked at load time and fails now means the token (or its session)
     * is gone. Never let wolfCrypt fall back to software: the key is not there. */
    bool failed = rc != 0 && rc != BUFFER_E && rc != BAD_FUNC_ARG;
    if (failed && s)
        session_close(t, s);
    session_give(t, s);
    pthread_rwlock_unlock(&t->mod->use);
    if (failed) { /* outside the module lock: token_failed takes the registry's */
        token_failed(t, s ? "a signing operation failed" : "no session could be opened");
        rc = WC_HW_E;
    }
    return rc;
}

/* Find the private keys opened on t again (reconnect probe), in a shared session. The
 * list is copied under the registry lock: a reload may free keys meanwhile. */
static int probe_keys(struct p11_token *t, struct p11_session *s, char *why, size_t cap)
{
    CK_FUNCTION_LIST *f = t->mod->dev.func;
    struct p11_keyref refs[MAX_PROBED_KEYS];
    size_t n = 0;
    pthread_mutex_lock(&g_lock);
    for (struct p11_keyref *r = t->keys; r && n < MAX_PROBED_KEYS; r = r->next)
        refs[n++] = *r;
    pthread_mutex_unlock(&g_lock);
    for (size_t i = 0; i < n; i++) {
        struct p11_keyref *r = &refs[i];
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},
                               {CKA_KEY_TYPE, &r->type, sizeof r->type},
                               {r->attr, r->value, (CK_ULONG)r->len}};
        CK_OBJECT_HANDLE h;
        CK_ULONG count = 0;
        CK_RV rv = f->C_FindObjectsInit(s->wt.handle, tmpl, 3);
        if (rv == CKR_OK) {
            rv = f->C_FindObjects(s->wt.handle, &h, 1, &count);
            f->C_FindObjectsFinal(s->wt.handle);
        }
        if (rv != CKR_OK || count != 1) {
            whyf(why, cap, "token '%s': key not found (%s)", t->name,
                 rv != CKR_OK ? rv_name(rv) : "no object");
            return RP_E_KEY_LOAD;
        }
    }
    return RP_OK;
}

/* Under the module shared lock: find the slot again (IDs may change after a restart),
 * open the shared sessions, find every key. */
static int token_probe(struct p11_token *t, char *why, size_t cap)
{
    char name[40];
    CK_SLOT_ID slot;
    int rc = slot_find(t->mod, &t->sel, &slot, name, sizeof name, why, cap);
    if (rc != RP_OK)
        return rc;
    atomic_store(&t->slot, slot);
    atomic_fetch_add(&t->gen, 1); /* every worker reopens its session on its next job */
    rc = shared_sessions_open(t, why, cap);
    if (rc == RP_OK) {
        pthread_mutex_lock(&t->shared[0].lock);
        rc = probe_keys(t, &t->shared[0], why, cap);
        pthread_mutex_unlock(&t->shared[0].lock);
    }
    return rc;
}

/* C_Finalize + C_Initialize with no operation inside the module. SoftHSM2 (and many HSM
 * clients) only see a token that was away again after this. */
static int module_restart(struct p11_module *m, char *why, size_t cap)
{
    pthread_rwlock_wrlock(&m->use);
    m->dev.func->C_Finalize(NULL);
    atomic_fetch_add(&m->gen, 1);
    int rc = module_init(m, why, cap);
    pthread_rwlock_unlock(&m->use);
    return rc;
}

static int token_reconnect(struct p11_token *t, char *why, size_t cap)
{
    pthread_rwlock_rdlock(&t->mod->use);
    int rc = token_probe(t, why, cap);
    pthread_rwlock_unlock(&t->mod->use);
    if (rc == RP_OK)
        return rc;
    rc = module_restart(t->mod, why, cap);
    if (rc != RP_OK)
        return rc;
    pthread_rwlock_rdlock(&t->mod->use);
    rc = token_probe(t, why, cap);
    pthread_rwlock_unlock(&t->mod->use);
    if (rc == RP_OK) {
        /* the restart voided the sessions of the module's other tokens too */
        pthread_mutex_lock(&g_lock);
        for (struct p11_token *o = g_tokens; o; o = o->next)
            if (o != t && o->mod == t->mod && o->refs && atomic_load(&o->state) == TOKEN_UP) {
                pthread_mutex_unlock(&g_lock);
                pthread_rwlock_rdlock(&o->mod->use);
                if (token_probe(o, NULL, 0) != RP_OK)
                    token_failed(o, "its module was restarted and it did not come back");
                pthread_rwlock_unlock(&o->mod->use);
                pthread_mutex_lock(&g_lock);
            }
        pthread_mutex_unlock(&g_lock);
    }
    return rc;
}

static int64_t ts_ms(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

/* The reconnect thread: sleeps until a token in use is down, then probes it with back-off. */
static void *monitor_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_lock);
    while (!g_stop) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        struct p11_token *due = NULL;
        int64_t wait_ms = -1;
        for (struct p11_token *t = g_tokens; t; t = t->next) {
            if (!t->refs || atomic_load(&t->state) != TOKEN_DOWN)
                continue;
            int64_t left = ts_ms(&t->next_try) - ts_ms(&now);
            if (left <= 0) {
                due = t;
                break;
            }
            if (wait_ms < 0 || left < wait_ms)
                wait_ms = left;
        }
        if (!due) {
            if (wait_ms < 0) {
                pthread_cond_wait(&g_wake, &g_lock);
            } else {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                int64_t ns = until.tv_nsec + (wait_ms % 1000) * 1000000;
                until.tv_sec += (time_t)(wait_ms / 1000 + ns / 1000000000);
                until.tv_nsec = (long)(ns % 1000000000);
                pthread_cond_timedwait(&g_wake, &g_lock, &until);
            }
            continue;
        }
        pthread_mutex_unlock(&g_lock);
        char why[256] = "";
        int rc = token_reconnect(due, why, sizeof why);
        pthread_mutex_lock(&g_lock);
        if (rc == RP_OK) {
            rp_metric_inc(due->m_reconnect_ok);
            pthread_mutex_unlock(&g_lock);
            token_state(due, TOKEN_UP, NULL);
            pthread_mutex_lock(&g_lock);
        } else {
            rp_metric_inc(due->m_reconnect_failed);
            rp_log_warn("pkcs11", "token '%s': reconnect failed (%s); next try in %u ms", due->name,
                        why, due->backoff_ms);
            clock_gettime(CLOCK_MONOTONIC, &due->next_try);
            int64_t at = ts_ms(&due->next_try) + due->backoff_ms;
            due->next_try.tv_sec = (time_t)(at / 1000);
            due->next_try.tv_nsec = (long)(at % 1000) * 1000000;
            due->backoff_ms = due->backoff_ms * 2 > RP_P11_RETRY_MAX_MS ? RP_P11_RETRY_MAX_MS
                                                                        : due->backoff_ms * 2;
        }
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

static void token_metrics(struct p11_token *t)
{
    char lbl[96];
    rp_metrics_help("raproxy_pkcs11_token_up", RP_METRIC_GAUGE,
                    "1 while the PKCS#11 token answers, 0 while it is being reconnected.");
    rp_metrics_help("raproxy_pkcs11_errors_total", RP_METRIC_COUNTER,
                    "Private-key operations the PKCS#11 token failed (token lost).");
    rp_metrics_help("raproxy_pkcs11_reconnects_total", RP_METRIC_COUNTER,
                    "Attempts to reconnect a lost PKCS#11 token, by result.");
    snprintf(lbl, sizeof lbl, "token=\"%s\"", t->name);
    t->m_up = rp_metric_get("raproxy_pkcs11_token_up", RP_METRIC_GAUGE, lbl);
    t->m_errors = rp_metric_get("raproxy_pkcs11_errors_total", RP_METRIC_COUNTER, lbl);
    rp_metric_add(t->m_errors, 0);
    snprintf(lbl, sizeof lbl, "token=\"%s\",result=\"ok\"", t->name);
    t->m_reconnect_ok = rp_metric_get("raproxy_pkcs11_reconnects_total", RP_METRIC_COUNTER, lbl);
    snprintf(lbl, sizeof lbl, "token=\"%s\",result=\"failed\"", t->name);
    t->m_reconnect_failed =
        rp_metric_get("raproxy_pkcs11_reconnects_total", RP_METRIC_COUNTER, lbl);
    rp_metric_set(t->m_up, 1);
}

static bool same_selector(const struct rp_p11_uri *a, const struct rp_p11_uri *b)
{
    return strcmp(a->token, b->token) == 0 && strcmp(a->manufacturer, b->manufacturer) == 0 &&
           strcmp(a->model, b->model) == 0 && strcmp(a->serial, b->serial) == 0 &&
           strcmp(a->slot_description, b->slot_description) == 0 &&
           strcmp(a->slot_manufacturer, b->slot_manufacturer) == 0 &&
           a->has_slot_id == b->has_slot_id && a->slot_id == b->slot_id;
}

/* Under g_lock, on the main thread: the token the URI selects, opened and logged in. */
static struct p11_token *token_get(struct p11_module *m, const struct rp_p11_uri *u,
                                   const char *pin, char *why, size_t cap)
{
    size_t pin_len = pin ? strlen(pin) : 0;
    for (struct p11_token *t = g_tokens; t; t = t->next) {
        if (t->mod != m || !same_selector(&t->sel, u))
            continue;
        if (atomic_load(&t->state) != TOKEN_UP) {
            whyf(why, cap, "token '%s' is unavailable (being reconnected)", t->name);
            return NULL;
        }
        if (t->pin_len != pin_len || memcmp(t->pin, pin ? pin : "", pin_len) != 0) {
            whyf(why, cap, "token '%s' is already in use with another PIN", t->name);
            return NULL;
        }
        return t;
    }
    if (g_ntokens >= MAX_TOKENS) {
        whyf(why, cap, "more than %d distinct PKCS#11 tokens in one process", MAX_TOKENS);
        return NULL;
    }
    if (pin_len > RP_P11_PIN_MAX) {
        whyf(why, cap, "PIN longer than %u bytes", RP_P11_PIN_MAX);
        return NULL;
    }
    struct p11_token *t = calloc(1, sizeof *t);
    if (!t) {
        whyf(why, cap, "out of memory");
        return NULL;
    }
    t->mod = m;
    t->sel = *u;
    explicit_bzero(t->sel.pin_value, sizeof t->sel.pin_value);
    memcpy(t->pin, pin ? pin : "", pin_len);
    t->pin_len = pin_len;
    for (unsigned i = 0; i < SHARED_SESSIONS; i++)
        pthread_mutex_init(&t->shared[i].lock, NULL);
    pthread_rwlock_rdlock(&m->use);
    CK_SLOT_ID slot = 0;
    int rc = slot_find(m, u, &slot, t->name, sizeof t->name, why, cap);
    atomic_init(&t->slot, slot);
    if (rc == RP_OK)
        rc = shared_sessions_open(t, why, cap);
    pthread_rwlock_unlock(&m->use);
    if (rc == RP_OK && wc_CryptoCb_RegisterDevice(DEVID_BASE + (int)g_ntokens, on_device, t) != 0) {
        whyf(why, cap, "cannot register the token with wolfCrypt");
        rc = RP_E_KEY_LOAD;
    }
    if (rc != RP_OK) {
        for (unsigned i = 0; i < SHARED_SESSIONS; i++) {
            session_close(t, &t->shared[i]);
            pthread_mutex_destroy(&t->shared[i].lock);
        }
        explicit_bzero(t->pin, sizeof t->pin);
        free(t);
        return NULL;
    }
    t->dev_id = DEVID_BASE + (int)g_ntokens++;
    atomic_init(&t->state, TOKEN_UP);
    token_metrics(t);
    t->next = g_tokens;
    g_tokens = t;
    if (!g_monitor_running && pthread_create(&g_monitor, NULL, monitor_main, NULL) == 0)
        g_monitor_running = true;
    rp_log_info("pkcs11", "token '%s' (slot %lu of %s) opened", t->name, (unsigned long)slot,
                m->path);
    return t;
}

/* ---------------------------------------------------------------- keys */

static int read_pin_file(const char *path, char *out, size_t cap, char *why, size_t wcap)
{
    uint8_t *data;
    size_t len;
    if (rp_file_read(path, RP_P11_PIN_MAX + 2, &data, &len) != RP_OK) {
        whyf(why, wcap, "cannot read the PIN file %s", path);
        return RP_E_KEY_LOAD;
    }
    while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    int rc = RP_OK;
    if (len >= cap) {
        whyf(why, wcap, "PIN in %s longer than %u bytes", path, RP_P11_PIN_MAX);
        rc = RP_E_KEY_LOAD;
    } else {
        memcpy(out, data, len);
        out[len] = 0;
    }
    explicit_bzero(data, len);
    free(data);
    return rc;
}

static int ec_curve(const uint8_t *params, size_t n, int *wc_curve, unsigned *bits)
{
    /* CKA_EC_PARAMS: DER of the named curve's OID */
    static const struct {
        uint8_t der[12];
        size_t len;
        int curve;
        unsigned bits;
    } curves[] = {
        {{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, 10, ECC_SECP256R1, 256},
        {{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}, 7, ECC_SECP384R1, 384},
        {{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23}, 7, ECC_SECP521R1, 521},
    };
    for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
        if (n == curves[i].len && memcmp(params, curves[i].der, n) == 0) {
            *wc_curve = curves[i].curve;
            *bits = curves[i].bits;
            return RP_OK;
        }
    return RP_E_BAD_ALG;
}

static unsigned rsa_bits(const uint8_t *n, size_t len)
{
    while (len && !*n) {
        n++;
        len--;
    }
    if (!len)
        return 0;
    unsigned top = 8;
    while (top && !(n[0] & (1u << (top - 1))))
        top--;
    return (unsigned)(len - 1) * 8 + top;
}

/* Count private keys matching tmpl (0, 1, or MAX_MATCHES meaning "several"). */
static int find_keys(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                     CK_OBJECT_HANDLE *first, CK_ULONG *count)
{
    CK_OBJECT_HANDLE h[MAX_MATCHES];
    CK_RV rv = f->C_FindObjectsInit(s, tmpl, n);
    if (rv != CKR_OK)
        return (int)rv;
    rv = f->C_FindObjects(s, h, MAX_MATCHES, count);
    f->C_FindObjectsFinal(s);
    if (rv == CKR_OK && *count)
        *first = h[0];
    return (int)rv;
}

/* The key object: exactly one private key with every attribute the URI gives, and exactly
 * one with the attribute wolfSSL looks it up by (CKA_ID when given, else CKA_LABEL). */
static int key_find(struct p11_token *t, struct p11_session *s, const struct rp_p11_uri *u,
                    struct rp_p11_key *k, char *why, size_t cap)
{
    CK_FUNCTION_LIST *f = t->mod->dev.func;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[3] = {{CKA_CLASS, &cls, sizeof cls}};
    CK_ULONG n = 1;
    if (u->object[0])
        tmpl[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)u->object, (CK_ULONG)strlen(u->object)};
    if (u->has_id)
        tmpl[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)u->id, (CK_ULONG)u->id_len};
    CK_OBJECT_HANDLE h = 0;
    CK_ULONG count = 0;
    int rv = find_keys(f, s->wt.handle, tmpl, n, &h, &count);
    CK_ULONG by_one = count;
    if (rv == CKR_OK && count == 1 && n == 3) { /* wolfSSL uses the ID alone */
        CK_ATTRIBUTE one[2] = {tmpl[0], tmpl[2]};
        CK_OBJECT_HANDLE h2;
        rv = find_keys(f, s->wt.handle, one, 2, &h2, &by_one);
    }
    if (rv != CKR_OK) {
        whyf(why, cap, "token '%s': C_FindObjects: %s (0x%x)", t->name, rv_name((CK_RV)rv), rv);
        return RP_E_KEY_LOAD;
    }
    if (count == 0) {
        whyf(why, cap, "token '%s': no private key matches the URI%s", t->name,
             t->pin_len ? "" : " (no PIN given: private objects are invisible)");
        return RP_E_KEY_LOAD;
    }
    if (count > 1 || by_one > 1) {
        whyf(why, cap, "token '%s': several private keys match the URI: add id=", t->name);
        return RP_E_KEY_LOAD;
    }
    CK_KEY_TYPE type = 0;
    CK_BBOOL can_sign = CK_FALSE;
    CK_ATTRIBUTE a[] = {{CKA_KEY_TYPE, &type, sizeof type}, {CKA_SIGN, &can_sign, sizeof can_sign}};
    if (f->C_GetAttributeValue(s->wt.handle, h, a, 2) != CKR_OK) {
        whyf(why, cap, "token '%s': cannot read the key's type", t->name);
        return RP_E_KEY_LOAD;
    }
    if (!can_sign) {
        whyf(why, cap, "token '%s': the key may not sign (CKA_SIGN false)", t->name);
        return RP_E_KEY_LOAD;
    }
    if (type == CKK_EC) {
        uint8_t params[EC_PARAMS_MAX];
        CK_ATTRIBUTE p = {CKA_EC_PARAMS, params, sizeof params};
        if (f->C_GetAttributeValue(s->wt.handle, h, &p, 1) != CKR_OK ||
            ec_curve(params, p.ulValueLen, &k->wc_curve, &k->bits) != RP_OK) {
            whyf(why, cap, "token '%s': EC key on a curve other than P-256, P-384, P-521", t->name);
            return RP_E_KEY_LOAD;
        }
        k->type = RP_P11_KEY_EC;
    } else if (type == CKK_RSA) {
        CK_ATTRIBUTE p[] = {{CKA_MODULUS, k->n, sizeof k->n},
                            {CKA_PUBLIC_EXPONENT, k->e, sizeof k->e}};
        if (f->C_GetAttributeValue(s->wt.handle, h, p, 2) != CKR_OK) {
            whyf(why, cap, "token '%s': cannot read the RSA modulus (at most 4096 bits)", t->name);
            return RP_E_KEY_LOAD;
        }
        k->n_len = p[0].ulValueLen;
        k->e_len = p[1].ulValueLen;
        k->bits = rsa_bits(k->n, k->n_len);
        k->type = RP_P11_KEY_RSA;
    } else {
        whyf(why, cap, "token '%s': key type 0x%lx is neither EC nor RSA", t->name,
             (unsigned long)type);
        return RP_E_KEY_LOAD;
    }
    struct p11_keyref *r = calloc(1, sizeof *r);
    if (!r)
        return RP_E_NOMEM;
    r->type = type;
    if (u->has_id) {
        memcpy(k->id, u->id, u->id_len);
        k->id_len = u->id_len;
        r->attr = CKA_ID;
        memcpy(r->value, u->id, u->id_len);
        r->len = u->id_len;
    } else {
        snprintf(k->label, sizeof k->label, "%s", u->object);
        r->attr = CKA_LABEL;
        r->len = strlen(u->object);
        memcpy(r->value, u->object, r->len);
    }
    r->next = t->keys;
    t->keys = r;
    k->ref = r;
    return RP_OK;
}

static void wolfcrypt_hold(void)
{
    wolfCrypt_Init();
}

int rp_p11_key_open(const char *uri, const struct rp_p11_opts *o, struct rp_p11_key **out,
                    char *why, size_t cap)
{
    struct rp_p11_uri u;
    const char *bad = NULL;
    char pin[RP_P11_PIN_MAX + 1] = "";
    *out = NULL;
    if (rp_p11_uri_parse(uri, &u, &bad) != RP_OK) {
        whyf(why, cap, "malformed PKCS#11 URI: %s", bad);
        return RP_E_KEY_LOAD;
    }
    const char *module = o && o->module ? o->module : u.module_path[0] ? u.module_path : NULL;
    int rc = RP_OK;
    if (!module) {
        whyf(why, cap, "no PKCS#11 module: set ra.pkcs11.module (or module-path in the URI)");
        rc = RP_E_KEY_LOAD;
    } else if (o && o->pin) {
        snprintf(pin, sizeof pin, "%s", o->pin);
    } else if (o && o->pin_file) {
        rc = read_pin_file(o->pin_file, pin, sizeof pin, why, cap);
    } else if (u.pin_source[0]) {
        const char *path = strncmp(u.pin_source, "file:", 5) == 0 ? u.pin_source + 5 : u.pin_source;
        rc = read_pin_file(path, pin, sizeof pin, why, cap);
    } else {
        snprintf(pin, sizeof pin, "%s", u.pin_value);
    }
    explicit_bzero(u.pin_value, sizeof u.pin_value);
    struct rp_p11_key *k = rc == RP_OK ? calloc(1, sizeof *k) : NULL;
    if (rc == RP_OK && !k)
        rc = RP_E_NOMEM;
    if (rc != RP_OK) {
        explicit_bzero(pin, sizeof pin);
        return rc == RP_E_NOMEM ? rc : RP_E_KEY_LOAD;
    }
    /* wolfCrypt clears its device table when its reference count goes from 0 to 1: hold
     * one reference for the life of the process before registering into it. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, wolfcrypt_hold);
    pthread_mutex_lock(&g_lock);
    struct p11_module *m = module_get(module, why, cap);
    struct p11_token *t = m ? token_get(m, &u, pin[0] ? pin : NULL, why, cap) : NULL;
    explicit_bzero(pin, sizeof pin);
    rc = t ? RP_OK : RP_E_KEY_LOAD;
    if (t) {
        pthread_rwlock_rdlock(&m->use);
        pthread_mutex_lock(&t->shared[0].lock);
        rc = session_fresh(t, &t->shared[0]) ? key_find(t, &t->shared[0], &u, k, why, cap)
                                             : RP_E_KEY_LOAD;
        pthread_mutex_unlock(&t->shared[0].lock);
        pthread_rwlock_unlock(&m->use);
    }
    if (rc == RP_OK) {
        t->refs++;
        k->token = t;
        pthread_cond_signal(&g_wake);
    }
    pthread_mutex_unlock(&g_lock);
    if (rc != RP_OK) {
        free(k);
        return rc == RP_E_NOMEM ? rc : RP_E_KEY_LOAD;
    }
    *out = k;
    return RP_OK;
}

void rp_p11_key_free(struct rp_p11_key *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&g_lock);
    struct p11_token *t = k->token;
    for (struct p11_keyref **pp = &t->keys; *pp; pp = &(*pp)->next)
        if (*pp == k->ref) {
            *pp = k->ref->next;
            free(k->ref);
            break;
        }
    t->refs--;
    pthread_mutex_unlock(&g_lock);
    free(k);
}

void rp_p11_key_info(const struct rp_p11_key *k, struct rp_p11_key_info *out)
{
    memset(out, 0, sizeof *out);
    out->type = k->type;
    out->dev_id = k->token->dev_id;
    out->wc_curve = k->wc_curve;
    out->bits = k->bits;
    if (k->id_len) {
        out->id = k->id;
        out->id_len = k->id_len;
    } else {
        out->label = k->label;
    }
    out->rsa_n = k->n;
    out->rsa_n_len = k->n_len;
    out->rsa_e = k->e;
    out->rsa_e_len = k->e_len;
}

bool rp_p11_key_available(const struct rp_p11_key *k)
{
    return k && atomic_load(&k->token->state) == TOKEN_UP;
}

/* ---------------------------------------------------------------- threads, shutdown */

void rp_p11_thread_start(unsigned worker_index)
{
    t_worker = worker_index < RP_P11_WORKER_SESSIONS ? (int)worker_index : -1;
    if (t_worker < 0)
        return;
    pthread_mutex_lock(&g_lock);
    for (struct p11_token *t = g_tokens; t; t = t->next) {
        if (!t->refs || atomic_load(&t->state) != TOKEN_UP)
            continue;
        pthread_rwlock_rdlock(&t->mod->use);
        char why[200];
        if (session_open(t, &t->worker[t_worker], why, sizeof why) != RP_OK)
            rp_log_warn("pkcs11", "worker %u: %s (retried on its first job)", worker_index, why);
        pthread_rwlock_unlock(&t->mod->use);
    }
    pthread_mutex_unlock(&g_lock);
}

void rp_p11_thread_stop(void)
{
    if (t_worker < 0)
        return;
    pthread_mutex_lock(&g_lock);
    for (struct p11_token *t = g_tokens; t; t = t->next) {
        pthread_rwlock_rdlock(&t->mod->use);
        session_close(t, &t->worker[t_worker]);
        pthread_rwlock_unlock(&t->mod->use);
    }
    pthread_mutex_unlock(&g_lock);
    t_worker = -1;
}

void rp_p11_shutdown(void)
{
    pthread_mutex_lock(&g_lock);
    g_stop = true;
    pthread_cond_broadcast(&g_wake);
    bool join = g_monitor_running;
    g_monitor_running = false;
    pthread_mutex_unlock(&g_lock);
    if (join)
        pthread_join(g_monitor, NULL);
    pthread_mutex_lock(&g_lock);
    while (g_tokens) {
        struct p11_token *t = g_tokens;
        g_tokens = t->next;
        wc_CryptoCb_UnRegisterDevice(t->dev_id);
        for (unsigned i = 0; i < SHARED_SESSIONS; i++) {
            session_close(t, &t->shared[i]);
            pthread_mutex_destroy(&t->shared[i].lock);
        }
        for (unsigned i = 0; i < RP_P11_WORKER_SESSIONS; i++)
            session_close(t, &t->worker[i]);
        while (t->keys) {
            struct p11_keyref *r = t->keys;
            t->keys = r->next;
            free(r);
        }
        explicit_bzero(t->pin, sizeof t->pin);
        free(t);
    }
    g_ntokens = 0;
    while (g_modules) {
        struct p11_module *m = g_modules;
        g_modules = m->next;
        wc_Pkcs11_Finalize(&m->dev);
        pthread_rwlock_destroy(&m->use);
        free(m->path);
        free(m);
    }
    g_stop = false;
    pthread_mutex_unlock(&g_lock);
}
