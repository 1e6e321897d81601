/* The exchange's state machine (src/ra/pipeline.c): the transition table as a table (step ×
 * event → next step) — the paths an accepted request takes, a refusal from every step that
 * can refuse reaching the signed error, the moves the table must not have — and a completion
 * or an event arriving in a step that does not wait for it being caught (the process aborts
 * before it touches the exchange). Then the pipeline itself, in this process with the mock
 * CA as its upstream: the path an accepted ir takes, and a refusal at each stage. */
#include "fixtures.h"
#include "msgbuild.h"
#include "ra/ra.h"
#include "raproxy/arena.h"
#include "raproxy/cmp.h"
#include "raproxy/config.h"
#include "raproxy/err.h"
#include "raproxy/limiter.h"
#include "raproxy/log.h"
#include "raproxy/loop.h"
#include "raproxy/server.h"
#include "raproxy/snapshot.h"
#include "raproxy/worker.h"
#include "support.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(pipeline_step);

/* Moves from `from` by each event in turn; each step reached must be the expected one. */
static enum ra_step walk(enum ra_step from, const enum ra_event *ev, const enum ra_step *want,
                         size_t n)
{
    enum ra_step s = from;
    for (size_t i = 0; i < n; i++) {
        enum ra_step next = ra_step_next(s, ev[i]);
        cr_assert_eq(next, want[i], "%s --%s--> %s, expected %s", ra_step_name(s),
                     ra_event_name(ev[i]), ra_step_name(next), ra_step_name(want[i]));
        s = next;
    }
    return s;
}

#define WALK(from, ev, want)                                                                       \
    do {                                                                                           \
        cr_assert_eq(sizeof(ev) / sizeof(ev)[0], sizeof(want) / sizeof(want)[0]);                  \
        walk(from, ev, want, sizeof(ev) / sizeof(ev)[0]);                                          \
    } while (0)

Test(pipeline_step, an_accepted_ir_is_admitted_verified_recorded_sent_and_relayed)
{
    const enum ra_event ev[] = {RA_EV_OK, RA_EV_OK, RA_EV_OK, RA_EV_OK, RA_EV_SEND, RA_EV_ANSWERED};
    const enum ra_step want[] = {RA_CHECK, RA_ADMIT, RA_VERIFY, RA_RECORD, RA_UPSTREAM, RA_DONE};
    WALK(RA_START, ev, want);
}

Test(pipeline_step, an_ir_within_the_cas_budget_and_a_signed_ca_answer)
{
    /* the CA's budget says go; upstream.ca_trust: the answer's signature on a worker */
    const enum ra_event ev[] = {RA_EV_GATE, RA_EV_SEND, RA_EV_CHECK, RA_EV_ANSWERED};
    const enum ra_step want[] = {RA_GATE, RA_UPSTREAM, RA_CA_VERIFY, RA_DONE};
    WALK(RA_RECORD, ev, want);
}

Test(pipeline_step, delayed_delivery_answers_waiting_and_a_poll_from_the_record)
{
    const enum ra_event queued[] = {RA_EV_GATE, RA_EV_SIGN, RA_EV_ANSWERED};
    const enum ra_step queued_to[] = {RA_GATE, RA_SIGN_ANSWER, RA_DONE};
    WALK(RA_RECORD, queued, queued_to);
    const enum ra_event poll[] = {RA_EV_LOOKUP, RA_EV_SIGN, RA_EV_ANSWERED};
    const enum ra_step poll_to[] = {RA_DELAYED, RA_SIGN_ANSWER, RA_DONE};
    WALK(RA_RECORD, poll, poll_to);
    /* a poll of a transaction not delayed here goes to the CA (its own polling) */
    const enum ra_event fwd[] = {RA_EV_LOOKUP, RA_EV_SEND, RA_EV_ANSWERED};
    const enum ra_step fwd_to[] = {RA_DELAYED, RA_UPSTREAM, RA_DONE};
    WALK(RA_RECORD, fwd, fwd_to);
    /* sent at once, the CA did not take it: requeued, the device is answered waiting */
    const enum ra_event requeued[] = {RA_EV_LOOKUP, RA_EV_SIGN};
    const enum ra_step requeued_to[] = {RA_DELAYED, RA_SIGN_ANSWER};
    WALK(RA_UPSTREAM, requeued, requeued_to);
}

Test(pipeline_step, a_genm_answered_at_the_edge_is_recorded_then_answered_by_the_ra)
{
    const enum ra_event ev[] = {RA_EV_LOCAL, RA_EV_ANSWERED};
    const enum ra_step want[] = {RA_RECORD_LOCAL, RA_DONE};
    WALK(RA_VERIFY, ev, want);
    cr_expect_eq(ra_step_next(RA_RECORD_LOCAL, RA_EV_SEND), RA_NONE,
                 "the RA's own answer never goes to the CA");
}

Test(pipeline_step, a_nested_request_records_each_inner_message_then_goes_to_the_ca)
{
    const enum ra_event ev[] = {RA_EV_INNER, RA_EV_INNER, RA_EV_INNER, RA_EV_GATE};
    const enum ra_step want[] = {RA_RECORD_INNER, RA_RECORD_INNER, RA_RECORD_INNER, RA_GATE};
    WALK(RA_RECORD, ev, want);
    cr_expect_eq(ra_step_next(RA_RECORD_INNER, RA_EV_SEND), RA_UPSTREAM);
}

Test(pipeline_step, without_a_trust_domain_the_request_is_relayed_unchecked)
{
    const enum ra_event ev[] = {RA_EV_RELAY, RA_EV_ANSWERED};
    const enum ra_step want[] = {RA_RELAY, RA_DONE};
    WALK(RA_START, ev, want);
    cr_expect_eq(ra_step_next(RA_RELAY, RA_EV_FAIL), RA_DONE, "an HTTP error");
    for (int s = RA_CHECK; s < RA_STEP_COUNT; s++)
        cr_expect_eq(ra_step_next((enum ra_step)s, RA_EV_RELAY), RA_NONE,
                     "%s: only a request not yet decoded can be relayed unchecked",
                     ra_step_name((enum ra_step)s));
}

/* Every step that checks something, waits for a store or for the CA can refuse. */
static const enum ra_step k_refusing[] = {
    RA_START,        RA_CHECK, RA_ADMIT,   RA_VERIFY,   RA_RECORD,    RA_RECORD_INNER,
    RA_RECORD_LOCAL, RA_GATE,  RA_DELAYED, RA_UPSTREAM, RA_CA_VERIFY,
};

Test(pipeline_step, a_refusal_at_every_stage_reaches_the_signed_error)
{
    for (size_t i = 0; i < sizeof k_refusing / sizeof k_refusing[0]; i++) {
        enum ra_step s = k_refusing[i];
        cr_expect_eq(ra_step_next(s, RA_EV_REFUSE), RA_SIGN_ERROR, "%s", ra_step_name(s));
        cr_expect_eq(ra_step_next(s, RA_EV_FAIL), RA_DONE, "%s: an HTTP error ends it",
                     ra_step_name(s));
    }
    cr_expect_eq(ra_step_next(RA_SIGN_ERROR, RA_EV_ANSWERED), RA_DONE, "the signed error");
    cr_expect_eq(ra_step_next(RA_SIGN_ERROR, RA_EV_FAIL), RA_DONE, "cannot sign: HTTP 503");
}

Test(pipeline_step, an_exchange_being_answered_is_not_refused_again)
{
    const enum ra_step answering[] = {RA_SIGN_ERROR, RA_SIGN_ANSWER, RA_RELAY, RA_DONE};
    for (size_t i = 0; i < sizeof answering / sizeof answering[0]; i++)
        cr_expect_eq(ra_step_next(answering[i], RA_EV_REFUSE), RA_NONE, "%s",
                     ra_step_name(answering[i]));
}

Test(pipeline_step, nothing_reaches_the_ca_before_it_is_verified_and_recorded)
{
    const enum ra_step early[] = {RA_START, RA_CHECK, RA_ADMIT, RA_VERIFY, RA_RECORD_LOCAL};
    for (size_t i = 0; i < sizeof early / sizeof early[0]; i++) {
        cr_expect_eq(ra_step_next(early[i], RA_EV_SEND), RA_NONE, "%s", ra_step_name(early[i]));
        cr_expect_eq(ra_step_next(early[i], RA_EV_GATE), RA_NONE, "%s", ra_step_name(early[i]));
        cr_expect_eq(ra_step_next(early[i], RA_EV_SIGN), RA_NONE, "%s", ra_step_name(early[i]));
    }
    /* and no answer is relayed before the CA gave one */
    for (int s = RA_START; s <= RA_DELAYED; s++)
        if (s != RA_RECORD_LOCAL)
            cr_expect_eq(ra_step_next((enum ra_step)s, RA_EV_ANSWERED), RA_NONE, "%s",
                         ra_step_name((enum ra_step)s));
}

Test(pipeline_step, a_finished_exchange_takes_no_event)
{
    for (int e = 0; e < RA_EVENT_COUNT; e++) {
        cr_expect_eq(ra_step_next(RA_DONE, (enum ra_event)e), RA_NONE, "%s",
                     ra_event_name((enum ra_event)e));
        cr_expect_eq(ra_step_next(RA_NONE, (enum ra_event)e), RA_NONE, "not started: %s",
                     ra_event_name((enum ra_event)e));
    }
    cr_expect_eq(ra_step_next(RA_STEP_COUNT, RA_EV_OK), RA_NONE, "out of range");
    cr_expect_eq(ra_step_next(RA_START, RA_EVENT_COUNT), RA_NONE, "out of range");
}

/* The steps reached from `from` by any events. */
static void reach(enum ra_step from, bool seen[RA_STEP_COUNT])
{
    memset(seen, 0, RA_STEP_COUNT * sizeof seen[0]);
    seen[from] = true;
    for (int round = 0; round < RA_STEP_COUNT; round++)
        for (int s = 0; s < RA_STEP_COUNT; s++)
            for (int e = 0; seen[s] && e < RA_EVENT_COUNT; e++)
                seen[ra_step_next((enum ra_step)s, (enum ra_event)e)] = true;
}

/* The table has no dead end: every step is reached from START, and DONE from every step. */
Test(pipeline_step, every_step_is_reachable_and_every_step_can_end)
{
    bool seen[RA_STEP_COUNT];
    reach(RA_START, seen);
    for (int s = RA_START; s < RA_STEP_COUNT; s++)
        cr_expect(seen[s], "%s is not reached from start", ra_step_name((enum ra_step)s));
    for (int s = RA_START; s < RA_DONE; s++) {
        reach((enum ra_step)s, seen);
        cr_expect(seen[RA_DONE], "%s never ends", ra_step_name((enum ra_step)s));
    }
}

/* ---- caught --------------------------------------------------------------------------- */

Test(pipeline_step, a_completion_in_the_step_that_waits_for_it_passes)
{
    struct ra_exchange rx;
    memset(&rx, 0, sizeof rx);
    rx.step = RA_RECORD_LOCAL;
    ra_step_expect(&rx, RA_STEP_BIT(RA_RECORD) | RA_STEP_BIT(RA_RECORD_LOCAL));
    cr_expect_eq(rx.step, RA_RECORD_LOCAL);
}

Test(pipeline_step, an_admission_answer_arriving_while_verifying_is_caught, .signal = SIGABRT)
{
    struct ra_exchange rx;
    memset(&rx, 0, sizeof rx);
    rx.step = RA_VERIFY;
    ra_step_expect(&rx, RA_STEP_BIT(RA_ADMIT)); /* what on_admitted checks first */
}

Test(pipeline_step, a_ca_answer_after_the_exchange_ended_is_caught, .signal = SIGABRT)
{
    struct ra_exchange rx;
    memset(&rx, 0, sizeof rx);
    rx.step = RA_DONE;
    ra_step_expect(&rx, RA_STEP_BIT(RA_UPSTREAM) | RA_STEP_BIT(RA_RELAY)); /* on_upstream */
}

/* rx->ex is NULL: any work done before the check would crash with SIGSEGV, not abort. */
Test(pipeline_step, forwarding_an_exchange_not_yet_verified_is_caught, .signal = SIGABRT)
{
    struct ra_exchange rx;
    memset(&rx, 0, sizeof rx);
    rx.step = RA_ADMIT;
    ra_pipeline_forward(&rx);
}

Test(pipeline_step, refusing_an_exchange_whose_error_is_being_signed_is_caught, .signal = SIGABRT)
{
    struct ra_exchange rx;
    memset(&rx, 0, sizeof rx);
    rx.step = RA_SIGN_ERROR;
    ra_pipeline_refuse(&rx, RP_E_SYSTEM_UNAVAIL, "twice");
}

Test(pipeline_step, answering_a_finished_exchange_is_caught, .signal = SIGABRT)
{
    struct ra_exchange rx;
    memset(&rx, 0, sizeof rx);
    rx.step = RA_DONE;
    ra_pipeline_answer(&rx, NULL, "waiting");
}

Test(pipeline_step, an_error_answers_the_request_unless_it_was_refused_undecoded)
{
    struct ra_exchange rx;
    memset(&rx, 0, sizeof rx);
    cr_expect_eq(ra_answered_request(&rx), &rx.msg, "a genp or waiting answer");
    rx.refused_at = RA_CHECK; /* decoded: pvno, header checks */
    cr_expect_eq(ra_answered_request(&rx), &rx.msg);
    rx.refused_at = RA_START; /* malformed: no transactionID or nonce to echo */
    cr_expect_null(ra_answered_request(&rx));
}

/* ---- the pipeline in process ------------------------------------------------------------ */

/* raproxy's loop, workers and admission run in this process (as main.c starts them) with
 * the mock CA (`openssl cmp -port`) as the upstream; log_level debug makes every move of an
 * exchange a "step" line, so a test reads the path each request took through the table. */

#define TRACE_MAX    512
#define WAIT_DONE_MS 10000
#define GRACE_MS     2000u

struct run {
    char *dir, log[600];
    int port, ca, log_fd;
    long log_off;
    struct rpt_proc mock;
    struct rp_workers *workers;
    struct rp_limiter *limiter;
    struct rp_server *server;
    struct rp_snapshot *snap;
    struct rp_loop *loop;
    struct rp_arena a;
};

static struct run g_run;

static void pki_path(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", rpt_pki(), rel);
}

static void write_config(char *path, size_t cap)
{
    const char *p = rpt_pki();
    char cfg[4096];
    snprintf(cfg, sizeof cfg,
             "log_level: debug\n"
             "listeners:\n  - address: 127.0.0.1:%d\n    tls: off\n"
             "upstream: {url: \"http://127.0.0.1:%d/pkix/\", keep_alive: false, "
             "connect_timeout_ms: 500}\n"
             "ra: {cert: %s/operator/ra.pem, key: %s/operator/ra.key, "
             "chain: %s/operator/ra.chain.pem}\n"
             "domains:\n"
             "  - name: manufacturer\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir, cr, certConf, pollReq, error]\n"
             "  - name: limited\n"
             "    trust_anchors: [%s/vendor/root.pem]\n"
             "    allow: [ir]\n"
             "    limits: {per_ip: \"1/h\"}\n"
             "  - name: operator\n"
             "    trust_anchors: [%s/operator/root.pem]\n"
             "    allow: [kur, rr]\n",
             g_run.port, g_run.ca, p, p, p, p, p, p);
    snprintf(path, cap, "%s/raproxy.yaml", g_run.dir);
    cr_assert_eq(rpt_write_file(path, cfg, strlen(cfg)), 0);
}

static void run_setup(void)
{
    memset(&g_run, 0, sizeof g_run);
    cr_assert_not_null(rpt_pki());
    g_run.dir = rpt_tmpdir();
    g_run.port = rpt_free_port();
    g_run.ca = rpt_free_port();
    char trusted[600], cfg_path[700];
    pki_path(trusted, sizeof trusted, "operator/root.pem");
    cr_assert_eq(rpt_mockca_start(&g_run.mock, g_run.dir, g_run.ca, trusted, NULL), 0);
    snprintf(g_run.log, sizeof g_run.log, "%s/raproxy.log", g_run.dir);
    g_run.log_fd = open(g_run.log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    cr_assert_geq(g_run.log_fd, 0);
    rp_log_set_fd(g_run.log_fd);
    write_config(cfg_path, sizeof cfg_path);
    struct rp_config *cfg = NULL;
    cr_assert_eq(rp_config_load(cfg_path, &cfg, stderr), RP_OK);
    rp_log_set_level(RP_LOG_DEBUG);
    cr_assert_eq(rp_server_snapshot(cfg, &g_run.snap, stderr), RP_OK);
    struct rp_workers_opts wo = {.count = 1};
    cr_assert_eq(rp_workers_start(&g_run.workers, &wo), RP_OK);
    cr_assert_eq(rp_limiter_new(&g_run.limiter, NULL), RP_OK);
    struct rp_server_opts so = {.workers = g_run.workers, .limiter = g_run.limiter};
    cr_assert_eq(rp_server_new(&g_run.server, &so), RP_OK);
    struct rp_loop_opts o = {
        .snap = g_run.snap,
        .on_exchange = rp_server_on_exchange,
        .ctx = g_run.server,
        .on_snapshot = rp_server_on_snapshot,
        .on_stop = rp_server_on_stop,
    };
    cr_assert_eq(rp_loop_start(&g_run.loop, &o), RP_OK);
    cr_assert_eq(rp_arena_new(&g_run.a, 1u << 20), RP_OK);
}

static void run_teardown(void)
{
    rp_loop_drain(g_run.loop, GRACE_MS);
    rp_loop_join(g_run.loop);
    rp_workers_stop(g_run.workers);
    rp_limiter_free(g_run.limiter);
    rp_server_free(g_run.server);
    rp_snapshot_unref(g_run.snap);
    rp_log_set_fd(1);
    close(g_run.log_fd);
    rpt_stop(&g_run.mock, SIGTERM, 5000);
    rp_arena_free(&g_run.a);
    rpt_rmdir(g_run.dir);
    free(g_run.dir);
}

TestSuite(pipeline_run, .init = run_setup, .fini = run_teardown, .timeout = 120);

/* The steps of the exchanges logged since the last call, "start>check>…>done" (one
 * exchange at a time); waits until the last one is done. */
static void trace(char *out, size_t cap)
{
    long t0 = rpt_mono_ms();
    size_t len = 0;
    char *s = NULL;
    for (;;) {
        free(s);
        s = (char *)rpt_read_file(g_run.log, &len);
        cr_assert_not_null(s);
        if (strstr(s + g_run.log_off, "-> done") || rpt_mono_ms() - t0 > WAIT_DONE_MS)
            break;
        rpt_sleep_ms(20);
    }
    out[0] = '\0';
    size_t n = 0;
    for (char *l = s + g_run.log_off; (l = strstr(l, "\"event\":\"step\"")) != NULL;) {
        char *arrow = strstr(l, " -> ");
        char *end = arrow ? strpbrk(arrow + 4, " \"") : NULL;
        cr_assert_not_null(end);
        const char *to = arrow + 4;
        n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%.*s", n ? ">" : "",
                              (int)(end - to), to);
        l = end;
    }
    g_run.log_off = (long)len;
    free(s);
}

/* POSTs req to path; the CMP answer's body type (-1: not a CMP answer) and its path. */
static int post(const char *path, struct rp_view req, char *steps, size_t cap)
{
    struct rp_cmp_msg m;
    int status = rpt_post_cmp(g_run.port, path, req, &g_run.a, &m);
    trace(steps, cap);
    return status == 200 ? (int)m.body.type : -1;
}

static struct rp_view device_ir(const char *dev)
{
    size_t len = 0;
    uint8_t *der = rpt_capture_device(g_run.dir, rpt_pki(), "ir", dev, &len);
    cr_assert_not_null(der, "openssl cmp -reqout wrote no request");
    struct rp_view v = rp_view_make(rp_arena_dup(&g_run.a, der, len), len);
    free(der);
    return v;
}

#define MANUF "/.well-known/cmp/p/manufacturer"

Test(pipeline_run, an_accepted_ir_goes_admit_verify_record_upstream_and_is_relayed)
{
    char steps[TRACE_MAX];
    cr_assert_eq(post(MANUF, device_ir("vendor/dev1"), steps, sizeof steps), RP_CMP_IP, "%s",
                 steps);
    /* gate: a certificate request asks the CA's budget (one at a time per device) */
    cr_expect_str_eq(steps, "start>check>admit>verify>record>gate>upstream>done");
}

Test(pipeline_run, a_refusal_at_each_stage_reaches_the_signed_error)
{
    char steps[TRACE_MAX];
    static const uint8_t junk[] = "\x30\x03\x02\x01\x02 not CMP";
    cr_expect_eq(post(MANUF, rp_view_make(junk, sizeof junk - 1), steps, sizeof steps),
                 RP_CMP_ERROR);
    cr_expect_str_eq(steps, "start>sign_error>done", "undecodable");

    struct rp_view ir = device_ir("vendor/dev1");
    cr_expect_eq(post("/.well-known/cmp/p/operator", ir, steps, sizeof steps), RP_CMP_ERROR);
    cr_expect_str_eq(steps, "start>check>sign_error>done", "ir is not allowed there");

    char key[600];
    pki_path(key, sizeof key, "vendor/dev1.key");
    struct rpt_mut flip = {.key_file = key, .flip_protection = true};
    struct rp_view forged = rpt_rebuild(&g_run.a, ir.p, ir.len, &flip);
    cr_assert(rp_view_present(forged));
    cr_expect_eq(post(MANUF, forged, steps, sizeof steps), RP_CMP_ERROR);
    cr_expect_str_eq(steps, "start>check>admit>verify>sign_error>done", "bad signature");

    cr_expect_eq(post(MANUF, ir, steps, sizeof steps), RP_CMP_IP, "the genuine one: %s", steps);
    cr_expect_eq(post(MANUF, ir, steps, sizeof steps), RP_CMP_ERROR);
    cr_expect_str_eq(steps, "start>check>admit>verify>record>sign_error>done", "replayed nonce");

    struct rp_view ir2 = device_ir("vendor/dev2");
    cr_expect_eq(post("/.well-known/cmp/p/limited", ir2, steps, sizeof steps), RP_CMP_IP, "%s",
                 steps);
    cr_expect_eq(post("/.well-known/cmp/p/limited", ir2, steps, sizeof steps), RP_CMP_ERROR);
    cr_expect_str_eq(steps, "start>check>admit>sign_error>done", "over per_ip");

    rpt_stop(&g_run.mock, SIGTERM, 5000); /* openssl ends by the signal */
    cr_expect_eq(post(MANUF, device_ir("vendor/dev2"), steps, sizeof steps), RP_CMP_ERROR);
    cr_expect_str_eq(steps, "start>check>admit>verify>record>gate>upstream>sign_error>done",
                     "the CA is down");
}
