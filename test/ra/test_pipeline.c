/* The exchange's state machine (src/ra/pipeline.c): the transition table as a table (step ×
 * event → next step) — the paths an accepted request takes, a refusal from every step that
 * can refuse reaching the signed error, the moves the table must not have — and a completion
 * or an event arriving in a step that does not wait for it being caught (the process aborts
 * before it touches the exchange). The whole pipeline with real peers is driven by the
 * integration tests (test_enroll, test_refusals, test_delivery, …). */
#include "ra/ra.h"
#include "raproxy/err.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>

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
