/* Internals of the RA layer: the per-snapshot RA state (keys, domains, trust material),
 * the per-loop state and the per-exchange state shared by pipeline.c, verify.c and
 * protect.c. */
#ifndef RP_RA_INT_H
#define RP_RA_INT_H

#include "raproxy/admit.h"
#include "raproxy/arena.h"
#include "raproxy/cert.h"
#include "raproxy/cmp.h"
#include "raproxy/config.h"
#include "raproxy/upstream.h"
#include "raproxy/view.h"
#include "raproxy/worker.h"

#include "deliver.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

struct rp_allowlist;
struct rp_ocsp_cache;
struct rp_ocsp_trust;
struct rp_privkey;
struct rp_snapshot;
struct rp_admit;
struct rp_redis;
struct rp_limiter;
struct rp_exchange;
struct rp_loop;
struct ra_pki_info;

/* A DER blob owned by the RA state. */
struct ra_der {
    uint8_t *p;
    size_t len;
};

struct ra_der_list {
    struct ra_der *v;
    size_t n;
};

/* The RA's signing identity. */
struct ra_identity {
    struct rp_privkey *key;
    int alg; /* enum rp_sig_alg */
    struct rp_view alg_der;
    struct ra_der_list certs; /* RA certificate first, then its chain: extraCerts */
    struct rp_view *extra;    /* views of certs, for the encoders */
    struct rp_cert cert;      /* parsed RA certificate */
};

/* One line of a domain's mac_secrets file: a MAC kid is an identity like a certificate. */
struct ra_secret {
    char *kid;
    uint8_t *secret;
    size_t kid_len, secret_len;
    char *serial;         /* serial=: the device serial it stands for; NULL = the kid itself */
    char *subject;        /* subject=: the subject it may ask for (template policy); or NULL */
    uint32_t body_mask;   /* bodies=: bit per enum rp_cmp_body_type; 0 = the domain's allow */
    char *identity;       /* the identity: serial (or kid), "mac/" + it in a qualified domain */
    uint8_t *subject_der; /* subject= as a DER Name; NULL without subject= */
    size_t subject_der_len;
};

#define RA_CHAIN_CACHE_SLOTS 4096u
/* Most intermediates taken from a request's extraCerts (and per path). */
#define RA_MAX_INTERMEDIATES 8u

struct ra_chain_entry {
    uint8_t key[32]; /* SHA-256 over the chain's DER */
    int64_t until;   /* epoch seconds; 0 = empty */
};

/* Verified chains, so a returning device costs one signature check, not a path build. */
struct ra_chain_cache {
    pthread_mutex_t lock;
    struct ra_chain_entry slots[RA_CHAIN_CACHE_SLOTS];
    uint64_t hits, misses;
};

struct ra_policy;
struct ra_claims;

struct ra_domain {
    const struct rp_cfg_domain *cfg;
    uint32_t allow_mask; /* bit per enum rp_cmp_body_type */
    uint32_t alg_mask;   /* bit per allowed policy name, see verify.c */
    struct ra_der_list anchors;
    unsigned *anchor_file; /* per anchors.v[i]: its trust_anchors file (cfg->anchor_names) */
    /* several anchor names: identities are "ANCHOR/SERIAL" (README "Identities") */
    bool qualified;
    struct ra_der_list intermediates;
    struct ra_der_list crls;        /* raw file contents (PEM or DER); empty: unreadable */
    struct ra_trust *trust;         /* prepared anchors, intermediates, CRLs (trust.c) */
    struct rp_allowlist *allowlist; /* NULL: none or Redis */
    struct ra_secret *secrets;
    size_t n_secrets;
    struct ra_der_list admins; /* administrator certificates (admins.c) */
    struct ra_pki_info *pki;   /* what genm: local answers (genm.c); NULL otherwise */
    struct ra_policy *policy;  /* template, extension and revocation policy (policy.c) */
    struct ra_claims *claims;  /* file allowlist + consume: claimed serials (claims.c) */
};

struct ra_state {
    struct ra_identity ra;
    struct ra_domain *domains;
    size_t n_domains;
    /* upstream.ca_trust: anchors for the CA's own protection on its answers; an answer's
     * signer is one of them (pinned) or chains to them and has one of ca_signers */
    bool has_ca_trust;
    struct ra_domain ca;
    char *const *ca_signers; /* upstream.ca_signers (config strings) */
    unsigned n_ca_signers;
    /* validation: who may sign the VA's answers (responder_cert, trust_anchors), loaded
     * with the snapshot (a file that does not load rejects it); NULL without validation */
    struct rp_ocsp_trust *ocsp_trust;
};

int ra_state_build(const struct rp_config *cfg, struct ra_state **out, FILE *errs);
/* The RA key can sign now (a key in a PKCS#11 token: its token is up). */
bool ra_identity_ready(const struct ra_identity *id);
/* Every certificate of a PEM (or DER) file appended to l; RP_E_KEY_LOAD when it has none. */
int ra_load_certs(const char *path, struct ra_der_list *l, FILE *errs);
void ra_der_list_free(struct ra_der_list *l);
/* A whole file (at most 16 MiB), NUL-terminated, malloc'ed. RP_E_KEY_LOAD when unreadable. */
int ra_read_file(const char *path, uint8_t **out, size_t *len);
void ra_state_free(void *state);
struct ra_domain *ra_state_domain(struct ra_state *s, const struct rp_cfg_domain *cfg);
/* The secrets line of a senderKID (O(log n): called on the loop), or NULL. */
const struct ra_secret *ra_domain_secret(const struct ra_domain *d, struct rp_view kid);
/* The identity a MAC kid stands for: its serial= (or the kid itself), under the anchor name
 * "mac" in a qualified domain. */
static inline struct rp_view ra_secret_identity(const struct ra_secret *s)
{
    return rp_view_str(s->identity);
}

/* The bit of a domain's alg_mask for a policy name ("ecdsa-p256", …, "rsa-pss"), 0 when
 * unknown; RA_ALG_POLICY_ALL when a domain names none. */
#define RA_ALG_POLICY_ALL 0x3fu
uint32_t ra_alg_policy_bit(const char *name);

/* trust.c — a domain's trust material, prepared once per snapshot. crl_files are the
 * domain's raw CRL files (an empty entry: unreadable), crl_names their paths. A CRL that
 * cannot be used does not fail the build: it makes ra_trust_check refuse (or, with
 * crl_warn, count and accept). */
struct ra_trust;
int ra_trust_build(struct ra_trust **out, const char *domain, const struct ra_der_list *anchors,
                   const struct ra_der_list *inters, const struct ra_der_list *crl_files,
                   char *const *crl_names, bool crl_warn, FILE *errs);
void ra_trust_free(struct ra_trust *t);
/* On a worker: the leaf (parsed) chains to an anchor through configured intermediates and
 * the request's extraCerts (all but extra[signer]), every CA of the path may sign
 * certificates, nothing on the path is revoked. RP_OK, RP_E_SIGNER_NOT_TRUSTED,
 * RP_E_CERT_REVOKED or RP_E_NOMEM with *why set. Thread-safe. */
int ra_trust_check(struct ra_trust *t, const struct rp_cert *leaf, const struct rp_view *extra,
                   size_t n_extra, size_t signer, int64_t now, const char **why);
/* upstream.ca_trust: the signer of a CA answer (extraCerts[idx], parsed) is one of the
 * configured certificates (pinned, valid now), or chains to them and its subject is one of
 * upstream.ca_signers; a device certificate under the same root is not the CA. */
int ra_ca_signer_check(struct ra_state *s, const struct rp_cmp_msg *m, size_t idx,
                       const struct rp_cert *signer, int64_t now, const char **why);
/* Earliest nextUpdate of the domain's CRLs (0: none), for the reload timer. */
int64_t ra_trust_crl_next_update(const struct ra_trust *t);
/* Whether the CRLs are usable at `now`; refreshes the domain's CRL metrics. */
bool ra_trust_crl_refresh(struct ra_trust *t, int64_t now);
#define RP_CRL_REPORT_MAX 512
/* One line for /readyz and logs: "none", "ok (…)", "refusing (FILE: problem): …". */
int ra_trust_crl_report(const struct ra_trust *t, int64_t now, char *buf, size_t cap);
struct ra_chain_cache *ra_trust_cache(struct ra_trust *t);
/* Benchmarks: false makes every check a cache miss (the cost of a new device). */
void ra_trust_set_cache(struct ra_trust *t, bool on);

/* Chain cache (thread-safe). */
bool ra_chain_cache_get(struct ra_chain_cache *c, const uint8_t key[32], int64_t now);
void ra_chain_cache_put(struct ra_chain_cache *c, const uint8_t key[32], int64_t until);

/* ---- per exchange ---------------------------------------------------------------- */

/* What an exchange waits for (pipeline.c's table says which event leads where). RA_NONE is
 * a zeroed exchange, not yet started. */
enum ra_step {
    RA_NONE = 0,
    RA_START,        /* received: decoding (a refusal here has no request to answer) */
    RA_CHECK,        /* decoded: the cheap header checks on the loop */
    RA_ADMIT,        /* waiting for admission */
    RA_VERIFY,       /* on a worker: verify and re-protect */
    RA_RECORD,       /* waiting for the after-verification record */
    RA_RECORD_INNER, /* waiting for the record of a nested request's inner message next_inner */
    RA_RECORD_LOCAL, /* waiting for the record, then the RA answers itself (genp) */
    RA_GATE,         /* asking the CA's budget whether the request may go now (deliver.c) */
    RA_DELAYED,      /* waiting for the delayed-delivery store: a poll, a requeue (deliver.c) */
    RA_UPSTREAM,     /* waiting for the CA */
    RA_RELAY,        /* waiting for the CA, relayed unchecked (no trust domain configured) */
    RA_CA_VERIFY,    /* on a worker: the CA's signature on its answer (upstream.ca_trust) */
    RA_SIGN_ANSWER,  /* on a worker: the RA's own answer (waiting, a delayed answer) */
    RA_SIGN_ERROR,   /* on a worker: signing a refusal */
    RA_DONE,         /* answered */
    RA_STEP_COUNT,
};

/* What a step's completion reports; pipeline.c's table turns (step, event) into the next
 * step. */
enum ra_event {
    RA_EV_OK,       /* the step passed: on to the usual next step */
    RA_EV_LOCAL,    /* verified, and the RA answers itself (genm answered at the edge) */
    RA_EV_INNER,    /* recorded: a nested request's next inner message is recorded */
    RA_EV_GATE,     /* the CA's budget is asked (deliver.c) */
    RA_EV_LOOKUP,   /* the delayed-delivery store is asked (deliver.c) */
    RA_EV_SEND,     /* the request goes to the CA */
    RA_EV_RELAY,    /* no trust domain: the request goes to the CA unchecked */
    RA_EV_CHECK,    /* the CA answered: its signature is checked on a worker */
    RA_EV_SIGN,     /* the RA signs its own answer on a worker */
    RA_EV_ANSWERED, /* the device's CMP answer is ready (relayed or signed) */
    RA_EV_REFUSE,   /* refused: the RA signs a CMP error */
    RA_EV_FAIL,     /* no CMP answer can be made: an HTTP error */
    RA_EVENT_COUNT,
};

#define RA_STEP_BIT(s) (1u << (s))

/* allowlist_consume: whether an exchange claimed its identity's serial (claims.c, admit.c). */
enum ra_claim {
    RA_CLAIM_NONE = 0, /* nothing claimed (no consume, or not a certificate request) */
    RA_CLAIM_JOINED,   /* the claim of its transaction existed (a retry, a poll) */
    RA_CLAIM_CREATED,  /* this exchange claimed the serial: it gives it back if it fails */
};

struct ra_nested;

struct ra_exchange {
    struct rp_exchange *ex;
    struct ra_loop *rl;
    const struct rp_cfg_domain *dcfg; /* NULL: default path without a domain */
    struct ra_domain *domain;
    enum ra_step step;       /* read and moved only by pipeline.c's table */
    enum ra_step refused_at; /* the step a refusal came from (RA_START: nothing decoded) */
    enum ra_event job_event; /* what a job on a worker found, for its completion */
    struct rp_cmp_msg msg;
    /* results of verification */
    int verdict;                    /* RP_OK or the refusal */
    const char *why;                /* short freeText for a refusal */
    struct rp_view serial;          /* the sender's identity: certificate serialNumber, or the MAC
                                       kid's serial= (the kid itself without one); "ANCHOR/…"
                                       in a qualified domain (identity.c) */
    struct rp_view dev_serial;      /* the serial alone, for the template policy */
    struct rp_view anchor;          /* the trust anchor's name ("mac" for a MAC kid) */
    struct rp_view subject;         /* the authenticated subject (certificate, MAC subject=) */
    struct rp_view subject_cn;      /* its commonName, or absent */
    const struct ra_secret *mac_id; /* MAC-protected: the secrets line that verified */
    struct rp_view body_out;        /* the body the RA rewrote (policy.c), or absent */
    enum ra_claim claim;            /* allowlist_consume: what this exchange holds */
    struct ra_nested *nested;       /* a nested request's inner exchanges (nested.c), or NULL */
    bool inner;                     /* an inner message of a nested request */
    size_t next_inner;              /* a nested request: the inner message being recorded */
    struct rp_view signer;          /* protecting certificate DER */
    struct rp_view out;             /* the message to forward, or the signed error */
    int64_t now;
    struct rp_job job;
    struct rp_upstream_req up;
    const char *extra_headers; /* of the answer: Retry-After */
    struct rp_cmp_msg *answer; /* the CA's answer, decoded from a copy in the arena */
    struct rp_view relay;      /* what goes back to the device */
    /* the CA's budget (deliver.c): the lease a request sent at once holds until the CA is
     * done with it; empty when it holds none */
    char ca_lease[RA_DD_TOKEN_MAX];
    uint32_t check_after_s; /* a pollRep's checkAfter (deliver.c) */
    bool dd_queued;         /* this exchange queued its request: its waiting answer is owed */
};

struct ra_deliver;
struct ra_redis_set;

/* A loop's resources (resources.c), built by rp_server_on_snapshot from the configuration
 * snapshot on the loop thread — never on the request path — and replaced the same way. What
 * can fail to load (certificate files, TLS contexts, the OCSP trust) was loaded when the
 * snapshot was built, so a bad configuration is refused whole before it gets here.
 *
 * Ownership:
 * - for the loop's life: this struct (exchanges and deliveries point to it), the job port
 *   (worker jobs come back here whatever was reloaded meanwhile), the crypto workers and
 *   the in-process limiter and delayed-delivery queue (process-wide, from struct
 *   rp_server);
 * - following the snapshot, rebuilt when a new snapshot changes what they are made of:
 *   - the CA pool (upstream.*): held by the net loop for /readyz and the drain
 *     (rp_loop_upstream); the one it replaces is retired: requests it accepted finish on
 *     it, never sent again;
 *   - the VA pool (validation.*), retired the same way;
 *   - the Redis set (redis.*): client, admission and delayed delivery (`dd`: the CA's
 *     budget and the dispatcher, whose store is that Redis). A new set is staged until
 *     its client is connected (at most STAGE_MAX_MS), the running one serving meanwhile.
 *     A replaced set stops taking new work: its dispatcher stops, its deliveries in
 *     flight finish on it (they hold it), and it is closed once nothing waits on it (no
 *     delivery, no Redis reply owed).
 * Exchanges read redis/admit/dd at each step: one that straddles a reload takes its next
 * step with the new set. */
struct ra_loop {
    struct rp_loop *loop;
    struct rp_job_port port;
    bool port_open;
    struct rp_workers *workers;
    struct rp_limiter *limiter;
    struct ra_dd_mem *dd_mem;
    struct rp_snapshot *snap; /* what the resources below were built from (a reference) */
    struct rp_redis *redis;   /* NULL without a redis section */
    struct rp_admit *admit;
    struct ra_deliver *dd;       /* the CA's budget, delayed delivery, the dispatcher (deliver.c) */
    struct ra_redis_set *staged; /* the next set, until its Redis client is connected */
    uint64_t staged_until;       /* loop ms: then it takes over, connected or not */
    struct ra_redis_set *retired;     /* replaced sets still finishing their work */
    struct rp_loop_timer *sets_timer; /* promotes the staged set, closes retired ones */
    struct rp_upstream *va;           /* the OCSP relay's pool to the VA, or NULL */
    struct rp_ocsp_cache *ocsp_cache; /* the relay's shared cache, or NULL */
};

/* verify.c — on a worker */
void ra_verify_request(struct ra_exchange *rx);
/* A signature by spki over data; `bad` is the refusal when it does not verify (badPOP,
 * badMessageCheck), after the domain's algorithm policy. */
int ra_verify_sig(struct rp_view spki, struct rp_view alg_der, struct rp_view data,
                  const struct rp_der_bits *sig, int bad, const struct ra_domain *d,
                  const char **why);
/* Bodies that ask for a certificate: ir, cr, p10cr, kur, krr, ccr. */
static inline bool ra_is_cert_request(enum rp_cmp_body_type t)
{
    return t == RP_CMP_IR || t == RP_CMP_CR || t == RP_CMP_P10CR || t == RP_CMP_KUR ||
           t == RP_CMP_KRR || t == RP_CMP_CCR;
}
bool ra_is_mac_alg(struct rp_view oid);
/* verify_mac.c — on a worker: PBM / PBMAC1 with the domain's secret for the senderKID */
int ra_verify_mac(struct ra_exchange *rx, const char **why);
/* upstream.ca_trust: the CA's answer is signed by a certificate chaining to those anchors */
int ra_verify_answer(struct ra_state *s, const struct rp_cmp_msg *m, struct rp_arena *a,
                     int64_t now, const char **why);
/* identity.c — after the protection holds: the namespaced identity (README "Identities") */
int ra_identity_qualify(struct ra_exchange *rx, const struct rp_cert *signer, const char **why);
void ra_identity_mac(struct ra_exchange *rx, const struct ra_secret *s);
/* The trust_anchors file index the verified leaf chains to, through the domain's
 * intermediates and extra[] (all but extra[signer]). RP_E_SIGNER_NOT_TRUSTED when none or
 * ambiguous. */
int ra_anchor_of(const struct ra_domain *d, const struct rp_cert *leaf, const struct rp_view *extra,
                 size_t n_extra, size_t signer, size_t *anchor);
/* pop.c — proof of possession (RFC 4211 §4.1, RFC 9483 §4.1.6 central key generation) */
int ra_check_pop(struct ra_exchange *rx, const char **why);
/* policy.c — what a request asks for (README "Template policy") */
int ra_policy_load(const struct rp_cfg_domain *c, struct ra_domain *d, FILE *errs);
void ra_policy_free(struct ra_policy *p);
/* The request against the domain's template policy, after POP and authorization: may set
 * rx->body_out (a rewritten ir/cr with raVerified). signer NULL for MAC protection. */
int ra_policy_check(struct ra_exchange *rx, const struct rp_cert *signer, const char **why);
/* May a sender (admin or not) revoke with this CRLReason (RP_CRL_REASON_NONE: absent)? */
bool ra_policy_rr_reason_ok(const struct ra_domain *d, int reason, bool admin);
/* subject= of a mac_secrets line as a DER Name (malloc'ed), RP_E_CONFIG with *why. */
int ra_policy_name_from_text(const char *text, uint8_t **der, size_t *len, const char **why);
/* pipeline.c — the cheap header checks (also for inner messages, on a worker) */
int ra_check_header(const struct ra_exchange *rx, const char **why);
/* nested.c — a nested request's inner messages, each as if sent alone */
int ra_nested_verify(struct ra_exchange *rx, const char **why);
size_t ra_nested_count(const struct ra_exchange *rx);
struct ra_exchange *ra_nested_inner(struct ra_exchange *rx, size_t i);
/* The inner request an inner answer belongs to (by transactionID), or NULL. */
struct ra_exchange *ra_nested_for(const struct ra_exchange *rx, const struct rp_cmp_msg *answer);
/* Gives back what the inner messages claimed (file allowlist_consume). */
void ra_nested_release_claims(struct ra_exchange *rx);
/* claims.c — allowlist_consume for a file allowlist, persisted to allowlist_state */
int ra_claims_open(const char *path, struct ra_claims **out, FILE *errs);
void ra_claims_close(struct ra_claims *c);
/* On a worker: claim id for transaction txid. RP_OK (*how: created or joined),
 * RP_E_NOT_AUTHORIZED (consumed, or claimed by another transaction), RP_E_IO. */
int ra_claims_claim(struct ra_claims *c, struct rp_view id, struct rp_view txid,
                    enum ra_claim *how);
/* enum rp_admit_settle: consume, release or keep the claim of transaction txid (no-op when
 * the serial is not claimed by it). */
void ra_claims_settle(struct ra_claims *c, struct rp_view id, struct rp_view txid, int how);
/* protect.c — on a worker */
int ra_protect_forward(struct ra_exchange *rx);
/* A queued request as it is sent now (delayed delivery): protected as the domain forwards
 * it, with a fresh messageTime where the RA signs the header. */
int ra_protect_queued(struct rp_arena *a, const struct ra_state *st, const struct rp_cfg_domain *d,
                      const struct rp_cmp_msg *m, struct rp_view body_out, int64_t now,
                      struct rp_view *out);
/* The CA's answer to a delayed request, for the device's poll (or retry) rx: re-signed by
 * the RA for this exchange — recipient the device, recipNonce the poll's senderNonce (what
 * clients check), the CA's senderNonce kept (what the CA checks in the certConf); body and
 * the CA's extraCerts kept after the RA's certificates. Into rx->out. */
int ra_protect_relay(struct ra_exchange *rx, const struct rp_cmp_msg *answer);
int ra_protect_error(struct ra_exchange *rx, int err, const char *why);
/* raproxy_ra_key_failures_total{reason} exists from the start (at 0). */
void ra_key_metrics_init(void);
/* The RA's answer to the device with `body` (error, genp): a response header for the
 * request's transaction, signed with the RA key, RA certificates in extraCerts. */
int ra_sign_response(struct ra_exchange *rx, struct rp_view body);
/* pipeline.c — the exchange's state machine (the table at the top of pipeline.c) */
/* The step event e leads to from step s; RA_NONE when the table has no such move. */
enum ra_step ra_step_next(enum ra_step s, enum ra_event e);
const char *ra_step_name(enum ra_step s);
const char *ra_event_name(enum ra_event e);
/* A completion checks it arrives in a step that waits for it (mask of RA_STEP_BIT): one
 * arriving in another step is a bug that would answer twice or touch a finished exchange,
 * so it is logged and the process aborts, as libuv does on a broken invariant. */
void ra_step_expect(const struct ra_exchange *rx, unsigned steps);
/* Move rx by e (caught like ra_step_expect when the table has no such move) and start the
 * new step's work; RA_GATE and RA_DELAYED are started by their caller (deliver.c). */
void ra_pipeline_advance(struct ra_exchange *rx, enum ra_event e);
/* The request an RA-signed answer answers: NULL when it was refused undecoded. */
static inline const struct rp_cmp_msg *ra_answered_request(const struct ra_exchange *rx)
{
    return rx->refused_at == RA_START ? NULL : &rx->msg;
}
/* pipeline.c — what other files of the RA continue an exchange with */
/* Forward rx->out to the CA now. */
void ra_pipeline_forward(struct ra_exchange *rx);
/* Answer with an RA-signed CMP error carrying err's failInfo (rx->extra_headers kept). */
void ra_pipeline_refuse(struct ra_exchange *rx, int err, const char *why); /* gives back a claim */
/* Sign the RA's own answer to a delayed transaction on a worker (`run` writes rx->out, its
 * result in j->result) and send it; `result` is the log's. It runs ahead of new work (the
 * transaction has started: waiting, a poll's answer, the CA's answer); when it cannot be
 * made, ra_deliver_unanswered is told before the device gets an HTTP error. */
void ra_pipeline_answer(struct ra_exchange *rx, void (*run)(struct rp_job *j), const char *result);
/* deliver.c: the RA's answer to a delayed transaction could not be made: a request this
 * exchange queued, whose device was never told waiting, is cancelled while still queued. */
void ra_deliver_unanswered(struct ra_exchange *rx);
/* Settle the allowlist_consume claim of identity id for transaction txid (no-op without
 * one); keep_ms: how long a KEEP holds it (0: the transaction TTL). */
void ra_claim_settle(struct ra_loop *rl, const struct rp_cfg_domain *d, struct ra_domain *dom,
                     struct rp_view id, struct rp_view txid, enum rp_admit_settle how,
                     uint32_t keep_ms);

/* deliver.c — the CA's budget and delayed delivery (deliver.h, README "Delayed delivery") */
/* One per Redis set of the loop (resources.c): its store is `redis` (NULL: `mem`). */
int ra_deliver_new(struct ra_deliver **out, struct ra_loop *rl, struct rp_redis *redis,
                   struct ra_dd_mem *mem);
/* A reload replaced it: its dispatcher takes no new request; its deliveries finish. */
void ra_deliver_retire(struct ra_deliver *d);
/* No delivery in flight and no store call of the dispatcher pending: it may be closed. */
bool ra_deliver_idle(const struct ra_deliver *d);
/* No new work; every delivery has ended (the loop stops: they hold it; or it is idle). */
void ra_deliver_close(struct ra_deliver *d);
/* After recording, instead of forwarding: a request that opens a transaction asks the CA's
 * budget; it goes now, is kept for later (answered waiting), joins its delayed transaction,
 * or is refused (another certificate request of this identity in progress; no room). */
void ra_deliver_to_ca(struct ra_exchange *rx);
/* A pollReq after recording: answered from its delayed transaction's record, or forwarded
 * when it has none. */
void ra_deliver_poll(struct ra_exchange *rx);
/* Admission could not check a pollReq's transaction (Redis answered late; the in-process
 * fallback cannot know a transaction kept in Redis): with delayed delivery, the device is
 * told to poll again (pollRep). False when that does not apply. */
bool ra_deliver_poll_unchecked(struct ra_exchange *rx);
/* The CA did not take a request sent at once (not sent, or HTTP 5xx but 504): true when it
 * is kept for later instead (the exchange is answered waiting). Otherwise its lease goes. */
bool ra_deliver_not_taken(struct ra_exchange *rx, int err, bool sent, int status);
/* The CA is done with a request sent at once: its lease and its identity's marker go. */
void ra_deliver_answered(struct ra_exchange *rx);

/* ocsp.c — the OCSP relay's per-loop resources (resources.c builds them) */
/* The VA pool for snapshot s on loop l (s has a validation section). */
int ra_ocsp_pool_new(struct rp_loop *l, const struct rp_snapshot *s, struct rp_upstream **out);
/* Whether a VA pool built for a serves b (same URL, deadline and TLS context). */
bool ra_ocsp_pool_same(const struct rp_snapshot *a, const struct rp_snapshot *b);
/* The shared OCSP cache, sized for s; the first loop to see a new generation empties it (a
 * reload may change the trusted responders). NULL without validation. */
struct rp_ocsp_cache *ra_ocsp_cache_for(const struct rp_snapshot *s);

/* answer.c — the CA's answer */
/* A CA answer of type resp may answer a request of type req. */
bool ra_answer_fits(enum rp_cmp_body_type req, enum rp_cmp_body_type resp);
/* The CA's answer resp to a request that is not nested: decoded from `a` into *outer (what
 * the CA signed), *relay_msg and *relay (what goes to the device: a nested answer of one
 * message unwrapped). NULL when it belongs to the request (transactionID, the request's
 * nonce echoed, a fitting body), else why not. */
const char *ra_answer_check(const struct rp_cmp_msg *req, struct rp_view resp, struct rp_arena *a,
                            struct rp_cmp_msg **outer, struct rp_cmp_msg **relay_msg,
                            struct rp_view *relay);
/* What the CA's answer (as relayed) means for an allowlist claim: enum rp_admit_settle
 * (issued: consume, waiting: keep, refused: release), or -1 when nothing is to settle. */
int ra_answer_settles(enum rp_cmp_body_type req, const struct rp_cmp_msg *m);
/* The answer says waiting (pollRep, status waiting). */
bool ra_answer_waits(const struct rp_cmp_msg *m);

/* admins.c — administrators of a domain (lost or stolen devices): rr for any certificate
 * the domain's CAs issued. signer_der is the verified protecting certificate. */
bool ra_is_admin(const struct ra_domain *d, struct rp_view signer_der);
/* issuer_name (a Name TLV) is the subject of one of the domain's anchors or intermediates. */
bool ra_domain_issued(const struct ra_domain *d, struct rp_view issuer_name);
/* genm.c — PKI information at the edge (RFC 9483 §4.3) */
int ra_pki_info_load(const struct rp_cfg_domain *c, struct ra_domain *d, FILE *errs);
void ra_pki_info_free(struct ra_pki_info *p);
/* On a worker, after verification: with genm: local, answer a genm whose every InfoType is
 * known here with a genp signed by the RA in rx->out: RP_OK. RP_E_NOT_FOUND when the genm
 * is to be forwarded (other domain mode, an InfoType not answered locally, no InfoType),
 * another RP_E_* to refuse (malformed crlStatusList, arena full). */
int ra_genm_answer(struct ra_exchange *rx);

#endif
