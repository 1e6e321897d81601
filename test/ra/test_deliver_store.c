/* The delayed-delivery store against a real redis-server, and the same decisions in process:
 * the CA's budget, duplicate suppression, the queue oldest first, the claim that sends a
 * request at most once, and the states a device's poll sees. */
#include "ra/deliver.h"
#include "raproxy/err.h"
#include "raproxy/redis.h"
#include "fakeredis.h"
#include "fixtures.h"
#include "support.h"
#include "uvrun.h"

#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS     5000
#define LEASE_MS    30000u
#define TTL_MS      60000u
#define MAX_WAIT_MS 60000u
#define KEEP_MS     60000u
#define RESERVE_MS  5000u

TestSuite(deliver_store);

/* What a call answered; its views are copied into memory that lasts for the test (a
 * result is passed around by value). */
struct out {
    int calls;
    struct ra_dd_result res;
};

static uint8_t g_kept[1u << 16];
static size_t g_kept_used;

static void keep(struct rp_view *v)
{
    if (!rp_view_present(*v))
        return;
    cr_assert_leq(g_kept_used + v->len, sizeof g_kept);
    memcpy(g_kept + g_kept_used, v->p, v->len);
    *v = rp_view_make(g_kept + g_kept_used, v->len);
    g_kept_used += v->len;
}

static void on_result(void *arg, const struct ra_dd_result *r)
{
    struct out *o = arg;
    o->calls++;
    o->res = *r;
    keep(&o->res.txid);
    keep(&o->res.req);
    keep(&o->res.body);
    keep(&o->res.answer);
    keep(&o->res.domain);
    keep(&o->res.identity);
}

static bool answered(void *arg)
{
    return ((struct out *)arg)->calls > 0;
}

/* One store: Redis (url) or in process, with its loop. */
struct world {
    uv_loop_t loop;
    struct rp_redis *redis;
    struct ra_dd_mem *mem;
    struct ra_dd_store *s;
};

static int timer_new(void *ctx, rp_loop_timer_fn cb, void *arg, struct rp_loop_timer **out)
{
    return rp_loop_timer_new_uv(ctx, cb, arg, out);
}

/* With `fake`, the store's Redis is that peer, started on the world's loop. */
static void world_init_on(struct world *w, const char *url, struct rpt_fake_redis *fake)
{
    memset(w, 0, sizeof *w);
    uv_loop_init(&w->loop);
    if (fake) {
        rpt_fake_redis_start(fake, &w->loop);
        url = fake->url;
    }
    if (url) {
        struct rp_redis_opts o = {.url = url, .timeout_ms = 1000};
        cr_assert_eq(rp_redis_new(&w->redis, &w->loop, &o), RP_OK);
    } else {
        cr_assert_eq(ra_dd_mem_new(&w->mem), RP_OK);
    }
    cr_assert_eq(ra_dd_store_new(&w->s, w->redis, w->mem, timer_new, &w->loop), RP_OK);
    if (url)
        cr_assert(rpt_run_until(&w->loop, rpt_redis_is_ready, w->redis, WAIT_MS));
}

static void world_init(struct world *w, const char *url)
{
    world_init_on(w, url, NULL);
}

static void world_free(struct world *w)
{
    ra_dd_store_close(w->s);
    if (w->redis)
        rp_redis_close(w->redis);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&w->loop), 0, "a libuv handle was left open");
    ra_dd_store_free(w->s);
    ra_dd_mem_free(w->mem);
}

static void wait_for(struct world *w, struct out *o)
{
    cr_assert(rpt_run_until(&w->loop, answered, o, WAIT_MS));
    cr_assert_eq(o->calls, 1);
    cr_assert_eq(o->res.err, RP_OK, "%s", rp_err_name(o->res.err));
}

static struct ra_dd_offer offer_in(const char *txid, const char *id, enum ra_offer_mode mode)
{
    return (struct ra_dd_offer){
        .txid = rp_view_str(txid),
        .domain = rp_view_str("manufacturer"),
        .identity = rp_view_str(id),
        .mode = mode,
        .exclusive = true,
        .budget = {.max_in_flight = 2, .lease_ms = LEASE_MS},
        .busy_ttl_ms = TTL_MS,
        .record_ttl_ms = TTL_MS,
        .max_waiting = 100,
        .req = rp_view_str(txid), /* the "request" names its transaction, to tell them apart */
        .body = rp_view_str("body"),
    };
}

static struct out offer(struct world *w, struct ra_dd_offer in)
{
    struct out o = {0};
    ra_dd_offer(w->s, &in, on_result, &o);
    wait_for(w, &o);
    return o;
}

static struct out next(struct world *w, const struct ra_dd_budget *b)
{
    struct out o = {0};
    ra_dd_next(w->s, b, RESERVE_MS, on_result, &o);
    wait_for(w, &o);
    return o;
}

static struct out claim(struct world *w, struct rp_view txid, uint32_t lease_ms,
                        uint32_t max_wait_ms)
{
    struct out o = {0};
    ra_dd_claim(w->s, txid, lease_ms, max_wait_ms, KEEP_MS, on_result, &o);
    wait_for(w, &o);
    return o;
}

/* A poll by device `id` of domain `dom`. */
static struct out poll_as(struct world *w, const char *txid, const char *dom, const char *id,
                          uint32_t max_wait_ms)
{
    struct out o = {0};
    ra_dd_poll(w->s, rp_view_str(txid), rp_view_str(dom), rp_view_str(id), max_wait_ms, on_result,
               &o);
    wait_for(w, &o);
    return o;
}

static struct out poll_(struct world *w, const char *txid, const char *id, uint32_t max_wait_ms)
{
    return poll_as(w, txid, "manufacturer", id, max_wait_ms);
}

/* Fire-and-forget calls reach Redis before the next command of the same client: a poll
 * afterwards is a barrier. */
static void barrier(struct world *w)
{
    (void)poll_(w, "barrier", "SN0", MAX_WAIT_MS);
}

static const struct ra_dd_budget two = {.max_in_flight = 2, .lease_ms = LEASE_MS};

/* ---- the cases, on either store ----------------------------------------------------------- */

/* A certificate request goes at once while the CA has room; a second one of the same device
 * (another transaction) is refused until the first has its answer. */
static void duplicate_case(struct world *w)
{
    struct out a = offer(w, offer_in("tx-a1", "SN1", RA_OFFER_QUEUE));
    cr_assert_eq(a.res.gate, RA_GATE_GO);
    cr_assert_neq(a.res.token[0], 0, "a lease to give back");
    cr_assert_eq(offer(w, offer_in("tx-a2", "SN1", RA_OFFER_QUEUE)).res.gate, RA_GATE_DUPLICATE);
    cr_assert_eq(offer(w, offer_in("tx-a2", "SN1", RA_OFFER_DIRECT)).res.gate, RA_GATE_DUPLICATE);
    /* control: another device is not held back, and a body without the rule neither */
    struct ra_dd_offer rr = offer_in("tx-a3", "SN1", RA_OFFER_DIRECT);
    rr.exclusive = false;
    struct out c = offer(w, rr);
    cr_assert_eq(c.res.gate, RA_GATE_GO);
    ra_dd_release(w->s, c.res.token, rr.txid, rr.domain, rr.identity);
    ra_dd_release(w->s, a.res.token, rp_view_str("tx-a1"), rp_view_str("manufacturer"),
                  rp_view_str("SN1"));
    barrier(w);
    struct out d = offer(w, offer_in("tx-a2", "SN1", RA_OFFER_QUEUE));
    cr_assert_eq(d.res.gate, RA_GATE_GO, "the device may ask again once answered");
}

/* Over max_in_flight: queued (delayed delivery) or busy (without); queued requests come out
 * oldest first, one claim each, and a request is claimed once. */
static void queue_case(struct world *w)
{
    struct out g1 = offer(w, offer_in("tx-b1", "SN1", RA_OFFER_QUEUE));
    struct out g2 = offer(w, offer_in("tx-b2", "SN2", RA_OFFER_QUEUE));
    cr_assert_eq(g1.res.gate, RA_GATE_GO);
    cr_assert_eq(g2.res.gate, RA_GATE_GO);
    struct out busy = offer(w, offer_in("tx-b0", "SN0", RA_OFFER_DIRECT));
    cr_assert_eq(busy.res.gate, RA_GATE_BUSY);
    cr_assert_eq(busy.res.retry_ms, -1, "the in-flight limit, not the rate");
    cr_assert_eq(offer(w, offer_in("tx-b3", "SN3", RA_OFFER_QUEUE)).res.gate, RA_GATE_QUEUED);
    cr_assert_eq(offer(w, offer_in("tx-b4", "SN4", RA_OFFER_QUEUE)).res.gate, RA_GATE_QUEUED);
    /* a retry of a queued transaction joins it; a new request of that device is refused */
    struct out j = offer(w, offer_in("tx-b3", "SN3", RA_OFFER_QUEUE));
    cr_assert_eq(j.res.gate, RA_GATE_JOINED);
    cr_assert_eq(j.res.state, RA_DD_QUEUED);
    cr_assert_eq(offer(w, offer_in("tx-b9", "SN3", RA_OFFER_QUEUE)).res.gate, RA_GATE_DUPLICATE);
    cr_assert_eq(poll_(w, "tx-b3", "SN3", MAX_WAIT_MS).res.state, RA_DD_QUEUED);
    cr_assert_eq(poll_(w, "tx-nope", "SN0", MAX_WAIT_MS).res.state, RA_DD_NONE);
    /* no room yet */
    struct out n = next(w, &two);
    cr_assert_not(rp_view_present(n.res.txid));
    cr_assert_eq(n.res.retry_ms, -1);
    ra_dd_release(w->s, g1.res.token, rp_view_str("tx-b1"), rp_view_str("manufacturer"),
                  rp_view_str("SN1"));
    n = next(w, &two);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-b3")), "oldest first");
    struct out c = claim(w, n.res.txid, LEASE_MS, MAX_WAIT_MS);
    cr_assert_eq(c.res.state, RA_DD_SENDING);
    cr_assert(rp_view_eq(c.res.req, rp_view_str("tx-b3")));
    cr_assert(rp_view_eq(c.res.body, rp_view_str("body")));
    cr_assert(rp_view_eq(c.res.identity, rp_view_str("SN3")));
    cr_assert(rp_view_eq(c.res.domain, rp_view_str("manufacturer")));
    /* at most once: nobody claims it again */
    cr_assert_eq(claim(w, rp_view_str("tx-b3"), LEASE_MS, MAX_WAIT_MS).res.state, RA_DD_SENDING);
    struct out again = claim(w, rp_view_str("tx-b3"), LEASE_MS, MAX_WAIT_MS);
    cr_assert_null(again.res.req.p, "claimed twice");
    cr_assert_eq(poll_(w, "tx-b3", "SN3", MAX_WAIT_MS).res.state, RA_DD_SENDING);
    /* full: tx-b2 and tx-b3 are at the CA */
    cr_assert_eq(next(w, &two).res.retry_ms, -1);
    ra_dd_finish(w->s, rp_view_str("tx-b3"), RA_DD_ANSWERED, rp_view_str("the CA's ip"), KEEP_MS,
                 rp_view_str("manufacturer"), rp_view_str("SN3"));
    struct out p = poll_(w, "tx-b3", "SN3", MAX_WAIT_MS);
    cr_assert_eq(p.res.state, RA_DD_ANSWERED);
    cr_assert(rp_view_eq(p.res.answer, rp_view_str("the CA's ip")));
    j = offer(w, offer_in("tx-b3", "SN3", RA_OFFER_QUEUE));
    cr_assert_eq(j.res.gate, RA_GATE_JOINED, "a retry gets the answer like a poll");
    cr_assert_eq(j.res.state, RA_DD_ANSWERED);
    cr_assert(rp_view_eq(j.res.answer, rp_view_str("the CA's ip")));
    /* the answer freed the device and the CA's slot: the next one is tx-b4 */
    n = next(w, &two);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-b4")));
    cr_assert_eq(claim(w, n.res.txid, LEASE_MS, MAX_WAIT_MS).res.state, RA_DD_SENDING);
    cr_assert_eq(offer(w, offer_in("tx-b5", "SN3", RA_OFFER_QUEUE)).res.gate, RA_GATE_QUEUED,
                 "SN3 may ask again (queued: the CA is full)");
}

/* Not sent (the CA was down): a dispatched request returns to the front, a direct one
 * becomes a waiting record; neither is lost. */
static void requeue_case(struct world *w)
{
    struct out g = offer(w, offer_in("tx-c1", "SN1", RA_OFFER_QUEUE));
    cr_assert_eq(g.res.gate, RA_GATE_GO);
    struct ra_dd_offer in = offer_in("tx-c1", "SN1", RA_OFFER_QUEUE);
    struct out r = {0};
    ra_dd_requeue(w->s, &in, g.res.token, on_result, &r);
    wait_for(w, &r);
    cr_assert_eq(r.res.gate, RA_GATE_QUEUED);
    cr_assert_eq(poll_(w, "tx-c1", "SN1", MAX_WAIT_MS).res.state, RA_DD_QUEUED);
    cr_assert_eq(offer(w, offer_in("tx-c2", "SN2", RA_OFFER_QUEUE)).res.gate, RA_GATE_QUEUED);
    struct out n = next(w, &two);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-c1")));
    struct out c = claim(w, n.res.txid, LEASE_MS, MAX_WAIT_MS);
    cr_assert_eq(c.res.state, RA_DD_SENDING);
    r = (struct out){0};
    ra_dd_requeue(w->s, &in, c.res.token, on_result, &r);
    wait_for(w, &r);
    cr_assert_eq(r.res.gate, RA_GATE_QUEUED);
    n = next(w, &two);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-c1")), "back at its place, the front");
    /* FORCE queues even with room (the CA is known to be down) */
    cr_assert_eq(offer(w, offer_in("tx-c3", "SN3", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
}

/* A claimed request whose lease ends without an answer (its replica was killed) is lost:
 * never sent again, its device told so and free to start over. */
static void lost_case(struct world *w)
{
    struct ra_dd_budget one = {.max_in_flight = 1, .lease_ms = 1};
    struct ra_dd_offer in = offer_in("tx-d1", "SN1", RA_OFFER_FORCE);
    cr_assert_eq(offer(w, in).res.gate, RA_GATE_QUEUED);
    struct out n = next(w, &one);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-d1")));
    cr_assert_eq(claim(w, n.res.txid, 1, MAX_WAIT_MS).res.state, RA_DD_SENDING);
    usleep(20000);
    cr_assert_eq(poll_(w, "tx-d1", "SN1", MAX_WAIT_MS).res.state, RA_DD_LOST);
    /* the CA's answer after all: the device was told lost (and may start again): it stays so */
    ra_dd_finish(w->s, rp_view_str("tx-d1"), RA_DD_ANSWERED, rp_view_str("late ip"), KEEP_MS,
                 rp_view_str("manufacturer"), rp_view_str("SN1"));
    struct out late = poll_(w, "tx-d1", "SN1", MAX_WAIT_MS);
    cr_assert_eq(late.res.state, RA_DD_LOST, "a lost record came back answered");
    cr_assert_null(late.res.answer.p);
    barrier(w);
    cr_assert_eq(next(w, &one).res.retry_ms, 0, "the lease ended: room again, nothing waiting");
    cr_assert_eq(offer(w, offer_in("tx-d2", "SN1", RA_OFFER_QUEUE)).res.gate, RA_GATE_GO,
                 "the device starts over");
}

static struct out extend(struct world *w, const char *txid, uint32_t lease_ms)
{
    struct out o = {0};
    ra_dd_extend(w->s, rp_view_str(txid), lease_ms, on_result, &o);
    wait_for(w, &o);
    return o;
}

/* The lease starts over when the request is handed to the CA (after the worker queue and
 * the signature): a request being sent is not declared lost while its send runs. One whose
 * lease ended before the send is not sent: lost. */
static void extend_case(struct world *w)
{
    cr_assert_eq(offer(w, offer_in("tx-l1", "SN1", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
    struct out n = next(w, &two);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-l1")));
    cr_assert_eq(claim(w, n.res.txid, 100, MAX_WAIT_MS).res.state, RA_DD_SENDING);
    cr_assert_eq(extend(w, "tx-l1", LEASE_MS).res.state, RA_DD_SENDING, "to be sent");
    usleep(200000); /* past the claim's lease */
    cr_assert_eq(poll_(w, "tx-l1", "SN1", MAX_WAIT_MS).res.state, RA_DD_SENDING,
                 "declared lost while its send runs");
    /* the lease ended before the send: not sent, lost (its device is told on its poll) */
    cr_assert_eq(offer(w, offer_in("tx-l2", "SN2", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
    n = next(w, &two);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-l2")));
    cr_assert_eq(claim(w, n.res.txid, 1, MAX_WAIT_MS).res.state, RA_DD_SENDING);
    usleep(20000);
    cr_assert_eq(extend(w, "tx-l2", LEASE_MS).res.state, RA_DD_LOST);
    /* the dispatcher ends it so: its lease and the device's marker go */
    ra_dd_finish(w->s, rp_view_str("tx-l2"), RA_DD_LOST, RP_VIEW_NULL, KEEP_MS,
                 rp_view_str("manufacturer"), rp_view_str("SN2"));
    cr_assert_eq(poll_(w, "tx-l2", "SN2", MAX_WAIT_MS).res.state, RA_DD_LOST);
    barrier(w);
    cr_assert_eq(offer(w, offer_in("tx-l3", "SN2", RA_OFFER_QUEUE)).res.gate, RA_GATE_GO,
                 "its device may start again");
}

static struct out cancel(struct world *w, const char *txid, const char *dom, const char *id)
{
    struct out o = {0};
    ra_dd_cancel(w->s, rp_view_str(txid), rp_view_str(dom), rp_view_str(id), on_result, &o);
    wait_for(w, &o);
    return o;
}

/* A request queued for a device that could not be told waiting is cancelled while still
 * queued: never sent unseen, its device free to ask again. Not another requester's, and not
 * once a dispatcher has claimed it (it goes its way then). */
static void cancel_case(struct world *w)
{
    cr_assert_eq(offer(w, offer_in("tx-m1", "SN1", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
    cr_assert_eq(offer(w, offer_in("tx-m2", "SN2", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
    cr_assert_neq(cancel(w, "tx-m1", "manufacturer", "SN9").res.state, RA_DD_QUEUED,
                  "another requester cancelled it");
    cr_assert_eq(cancel(w, "tx-m1", "manufacturer", "SN1").res.state, RA_DD_QUEUED);
    cr_assert_eq(poll_(w, "tx-m1", "SN1", MAX_WAIT_MS).res.state, RA_DD_NONE);
    struct out n = next(w, &two);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-m2")), "the cancelled one is not sent");
    cr_assert_eq(claim(w, n.res.txid, LEASE_MS, MAX_WAIT_MS).res.state, RA_DD_SENDING);
    cr_assert_eq(cancel(w, "tx-m2", "manufacturer", "SN2").res.state, RA_DD_SENDING,
                 "too late: claimed");
    cr_assert_eq(poll_(w, "tx-m2", "SN2", MAX_WAIT_MS).res.state, RA_DD_SENDING);
    cr_assert_eq(offer(w, offer_in("tx-m3", "SN1", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED,
                 "SN1 may ask again");
    /* a reservation a dispatcher holds for a request cancelled before its claim: the claim
     * finds nothing and the in-flight slot comes back */
    n = next(w, &two);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-m3")));
    cr_assert_eq(cancel(w, "tx-m3", "manufacturer", "SN1").res.state, RA_DD_QUEUED);
    cr_assert_neq(claim(w, n.res.txid, LEASE_MS, MAX_WAIT_MS).res.state, RA_DD_SENDING);
    ra_dd_finish(w->s, rp_view_str("tx-m2"), RA_DD_ANSWERED, rp_view_str("ip"), KEEP_MS,
                 rp_view_str("manufacturer"), rp_view_str("SN2"));
    cr_assert_eq(offer(w, offer_in("tx-m4", "SN4", RA_OFFER_QUEUE)).res.gate, RA_GATE_GO,
                 "both slots free again");
}

/* Not sent within max_wait: expired, at the claim or at a poll. */
static void expired_case(struct world *w)
{
    cr_assert_eq(offer(w, offer_in("tx-e1", "SN1", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
    cr_assert_eq(offer(w, offer_in("tx-e2", "SN2", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
    usleep(30000);
    struct out n = next(w, &two);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-e1")));
    struct out c = claim(w, n.res.txid, LEASE_MS, 10);
    cr_assert_eq(c.res.state, RA_DD_EXPIRED);
    cr_assert(rp_view_eq(c.res.identity, rp_view_str("SN1")), "to give its claim back");
    cr_assert_eq(poll_(w, "tx-e1", "SN1", MAX_WAIT_MS).res.state, RA_DD_EXPIRED);
    cr_assert_eq(poll_(w, "tx-e2", "SN2", 10).res.state, RA_DD_EXPIRED);
    barrier(w);
    cr_assert_eq(offer(w, offer_in("tx-e3", "SN2", RA_OFFER_QUEUE)).res.gate, RA_GATE_GO,
                 "both devices may start over and nothing waits any more");
    cr_assert_eq(offer(w, offer_in("tx-e4", "SN1", RA_OFFER_QUEUE)).res.gate, RA_GATE_GO);
}

/* upstream.rate: one request per interval after the burst. */
static void rate_case(struct world *w)
{
    struct ra_dd_offer in = offer_in("tx-f1", "SN1", RA_OFFER_DIRECT);
    in.budget = (struct ra_dd_budget){.interval_us = 10000000, .burst = 1, .lease_ms = LEASE_MS};
    cr_assert_eq(offer(w, in).res.gate, RA_GATE_GO);
    in = offer_in("tx-f2", "SN2", RA_OFFER_DIRECT);
    in.budget = (struct ra_dd_budget){.interval_us = 10000000, .burst = 1, .lease_ms = LEASE_MS};
    struct out o = offer(w, in);
    cr_assert_eq(o.res.gate, RA_GATE_BUSY);
    cr_assert(o.res.retry_ms > 9000 && o.res.retry_ms <= 10000, "retry %d", o.res.retry_ms);
    in.mode = RA_OFFER_QUEUE;
    cr_assert_eq(offer(w, in).res.gate, RA_GATE_QUEUED);
    struct out n = next(w, &in.budget);
    cr_assert_not(rp_view_present(n.res.txid));
    cr_assert_gt(n.res.retry_ms, 9000);
}

/* max_waiting bounds what is kept. */
static void full_case(struct world *w)
{
    struct ra_dd_offer in = offer_in("tx-g1", "SN1", RA_OFFER_FORCE);
    in.max_waiting = 1;
    cr_assert_eq(offer(w, in).res.gate, RA_GATE_QUEUED);
    in = offer_in("tx-g2", "SN2", RA_OFFER_FORCE);
    in.max_waiting = 1;
    cr_assert_eq(offer(w, in).res.gate, RA_GATE_FULL);
    barrier(w);
    in = offer_in("tx-g3", "SN2", RA_OFFER_QUEUE);
    cr_assert_eq(offer(w, in).res.gate, RA_GATE_QUEUED, "a refused device holds nothing");
}

/* A delayed transaction stays its requester's: another device (same domain, or the same
 * serial under another domain) naming its transactionID neither joins it nor polls it — not
 * while it waits, and not once the CA's answer is there. The owner, beside, still does. */
static void foreign_case(struct world *w)
{
    cr_assert_eq(offer(w, offer_in("tx-k1", "SN1", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
    struct out o = offer(w, offer_in("tx-k1", "SN2", RA_OFFER_QUEUE));
    cr_assert_eq(o.res.gate, RA_GATE_FOREIGN, "another device of the domain");
    struct ra_dd_offer other = offer_in("tx-k1", "SN1", RA_OFFER_QUEUE);
    other.domain = rp_view_str("other-vendor");
    cr_assert_eq(offer(w, other).res.gate, RA_GATE_FOREIGN, "the same serial in another domain");
    struct out p = poll_(w, "tx-k1", "SN2", MAX_WAIT_MS);
    cr_assert(p.res.foreign);
    cr_assert_eq(p.res.state, RA_DD_NONE);
    cr_assert(poll_as(w, "tx-k1", "other-vendor", "SN1", MAX_WAIT_MS).res.foreign);
    /* control: the owner joins and polls */
    struct out j = offer(w, offer_in("tx-k1", "SN1", RA_OFFER_QUEUE));
    cr_assert_eq(j.res.gate, RA_GATE_JOINED);
    p = poll_(w, "tx-k1", "SN1", MAX_WAIT_MS);
    cr_assert_not(p.res.foreign);
    cr_assert_eq(p.res.state, RA_DD_QUEUED);
    /* answered: the answer goes to its owner only */
    struct out n = next(w, &two);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-k1")));
    cr_assert_eq(claim(w, n.res.txid, LEASE_MS, MAX_WAIT_MS).res.state, RA_DD_SENDING);
    ra_dd_finish(w->s, rp_view_str("tx-k1"), RA_DD_ANSWERED, rp_view_str("the CA's ip"), KEEP_MS,
                 rp_view_str("manufacturer"), rp_view_str("SN1"));
    p = poll_(w, "tx-k1", "SN2", MAX_WAIT_MS);
    cr_assert(p.res.foreign);
    cr_assert_null(p.res.answer.p, "the answer leaked to another device");
    o = offer(w, offer_in("tx-k1", "SN2", RA_OFFER_QUEUE));
    cr_assert_eq(o.res.gate, RA_GATE_FOREIGN);
    cr_assert_null(o.res.answer.p);
    p = poll_(w, "tx-k1", "SN1", MAX_WAIT_MS);
    cr_assert_eq(p.res.state, RA_DD_ANSWERED);
    cr_assert(rp_view_eq(p.res.answer, rp_view_str("the CA's ip")));
    /* a request sent at once that the CA did not take meets, at its requeue, a record another
     * requester made for its transactionID meanwhile: refused, its device's marker gone */
    struct out g = offer(w, offer_in("tx-k2", "SN5", RA_OFFER_QUEUE));
    cr_assert_eq(g.res.gate, RA_GATE_GO);
    struct ra_dd_offer theirs = offer_in("tx-k2", "SN5", RA_OFFER_FORCE);
    theirs.domain = rp_view_str("other-vendor");
    cr_assert_eq(offer(w, theirs).res.gate, RA_GATE_QUEUED);
    struct ra_dd_offer mine = offer_in("tx-k2", "SN5", RA_OFFER_FORCE);
    struct out r = {0};
    ra_dd_requeue(w->s, &mine, g.res.token, on_result, &r);
    wait_for(w, &r);
    cr_assert_eq(r.res.gate, RA_GATE_FOREIGN);
    cr_assert_eq(offer(w, offer_in("tx-k3", "SN5", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED,
                 "the refused device may ask again");
}

#define BOTH(name)                                                                                 \
    Test(deliver_store, redis_##name, .timeout = 60)                                               \
    {                                                                                              \
        struct rpt_redis srv = {0};                                                                \
        cr_assert_eq(rpt_redis_start(&srv, NULL), 0);                                              \
        struct world w;                                                                            \
        world_init(&w, srv.url);                                                                   \
        name##_case(&w);                                                                           \
        world_free(&w);                                                                            \
        rpt_redis_stop(&srv);                                                                      \
    }                                                                                              \
    Test(deliver_store, in_process_##name, .timeout = 60)                                          \
    {                                                                                              \
        struct world w;                                                                            \
        world_init(&w, NULL);                                                                      \
        name##_case(&w);                                                                           \
        world_free(&w);                                                                            \
    }

BOTH(duplicate)
BOTH(queue)
BOTH(requeue)
BOTH(lost)
BOTH(expired)
BOTH(rate)
BOTH(full)
BOTH(foreign)
BOTH(extend)
BOTH(cancel)

/* Redis only: a dispatcher that took a request and died before claiming it (SIGKILL between
 * two commands) does not lose it; its reservation ends and the request is first again. */
Test(deliver_store, redis_reservation_of_a_dead_dispatcher_returns, .timeout = 60)
{
    struct rpt_redis srv = {0};
    cr_assert_eq(rpt_redis_start(&srv, NULL), 0);
    struct world w;
    world_init(&w, srv.url);
    cr_assert_eq(offer(&w, offer_in("tx-h1", "SN1", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
    struct ra_dd_budget b = {.max_in_flight = 5, .lease_ms = 30};
    struct out o = {0};
    ra_dd_next(w.s, &b, 30, on_result, &o);
    wait_for(&w, &o);
    cr_assert(rp_view_eq(o.res.txid, rp_view_str("tx-h1")));
    usleep(60000);
    struct out n = next(&w, &b);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-h1")), "back from the dead dispatcher");
    cr_assert_eq(claim(&w, n.res.txid, LEASE_MS, MAX_WAIT_MS).res.state, RA_DD_SENDING);
    world_free(&w);
    rpt_redis_stop(&srv);
}

/* An answer of a shape the offer script never gives is refused (RP_E_REDIS_REPLY, not a
 * "maybe": Redis did answer), never read as a gate; the control {1, 0} is GO. */
Test(deliver_store, redis_an_offer_answer_of_the_wrong_shape_is_refused, .timeout = 60)
{
    static const char *const wrong[] = {
        "$2\r\nok\r\n",        /* a string */
        "+OK\r\n",             /* a status */
        "$-1\r\n",             /* nil */
        ":1\r\n",              /* an integer */
        "*1\r\n:1\r\n",        /* one element */
        "*2\r\n:99\r\n:0\r\n", /* a code the script does not have */
    };
    struct rpt_fake_redis *f = malloc(sizeof *f);
    cr_assert_not_null(f);
    struct world w;
    world_init_on(&w, NULL, f);
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        f->reply = wrong[i];
        struct ra_dd_offer in = offer_in("tx-shape", "SN1", RA_OFFER_QUEUE);
        struct out o = {0};
        ra_dd_offer(w.s, &in, on_result, &o);
        cr_assert(rpt_run_until(&w.loop, answered, &o, WAIT_MS));
        cr_assert_eq(o.res.err, RP_E_REDIS_REPLY, "reply %zu: %s", i, rp_err_name(o.res.err));
        cr_assert_not(o.res.maybe, "reply %zu", i);
    }
    f->reply = "*2\r\n:1\r\n:0\r\n";
    cr_assert_eq(offer(&w, offer_in("tx-shape", "SN1", RA_OFFER_QUEUE)).res.gate, RA_GATE_GO);
    rpt_fake_redis_stop(f);
    world_free(&w);
    free(f);
}

/* Two replicas (two clients of one Redis) share one budget and one queue. */
Test(deliver_store, redis_replicas_share_budget_and_queue, .timeout = 60)
{
    struct rpt_redis srv = {0};
    cr_assert_eq(rpt_redis_start(&srv, NULL), 0);
    struct world a, b;
    world_init(&a, srv.url);
    world_init(&b, srv.url);
    cr_assert_eq(offer(&a, offer_in("tx-i1", "SN1", RA_OFFER_QUEUE)).res.gate, RA_GATE_GO);
    cr_assert_eq(offer(&b, offer_in("tx-i2", "SN2", RA_OFFER_QUEUE)).res.gate, RA_GATE_GO);
    cr_assert_eq(offer(&b, offer_in("tx-i3", "SN3", RA_OFFER_QUEUE)).res.gate, RA_GATE_QUEUED);
    cr_assert_eq(offer(&a, offer_in("tx-i4", "SN1", RA_OFFER_QUEUE)).res.gate, RA_GATE_DUPLICATE,
                 "SN1's request is in flight at the other replica");
    cr_assert_eq(poll_(&a, "tx-i3", "SN3", MAX_WAIT_MS).res.state, RA_DD_QUEUED,
                 "any replica answers the poll");
    world_free(&a);
    world_free(&b);
    rpt_redis_stop(&srv);
}

/* Redis only: a queueing offer whose answer comes too late (its device is answered waiting)
 * is settled by the command sent behind it: the request is queued, and the lease the late
 * offer took for it (there was room) goes back, so the dispatcher can send it. */
Test(deliver_store, redis_a_late_queueing_offer_is_settled_into_the_queue, .timeout = 60)
{
    struct rpt_redis srv = {0};
    cr_assert_eq(rpt_redis_start(&srv, NULL), 0);
    struct world w;
    world_init(&w, srv.url);
    struct ra_dd_offer in = offer_in("tx-j1", "SN1", RA_OFFER_QUEUE);
    kill(srv.p.pid, SIGSTOP);
    struct out o = {0};
    ra_dd_offer(w.s, &in, on_result, &o);
    cr_assert(rpt_run_until(&w.loop, answered, &o, WAIT_MS));
    cr_assert_eq(o.res.err, RP_E_REDIS_TIMEOUT);
    cr_assert(o.res.maybe, "it was sent: it may still run");
    in.mode = RA_OFFER_FORCE;
    ra_dd_settle(w.s, &in, o.res.token);
    kill(srv.p.pid, SIGCONT);
    barrier(&w);
    cr_assert_eq(poll_(&w, "tx-j1", "SN1", MAX_WAIT_MS).res.state, RA_DD_QUEUED);
    struct ra_dd_budget one = {.max_in_flight = 1, .lease_ms = LEASE_MS};
    struct out n = next(&w, &one);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-j1")), "the late offer's lease went back");
    /* control: a settle after an offer that queued leaves the record as it is */
    struct out q = offer(&w, offer_in("tx-j2", "SN2", RA_OFFER_FORCE));
    cr_assert_eq(q.res.gate, RA_GATE_QUEUED);
    struct ra_dd_offer in2 = offer_in("tx-j2", "SN2", RA_OFFER_FORCE);
    ra_dd_settle(w.s, &in2, q.res.token);
    barrier(&w);
    cr_assert_eq(poll_(&w, "tx-j2", "SN2", MAX_WAIT_MS).res.state, RA_DD_QUEUED);
    world_free(&w);
    rpt_redis_stop(&srv);
}

/* A transactionID longer than 22 bytes (RFC 4210 allows any length; raproxy takes up to 64):
 * the dispatched request's lease is named by its whole txid, so its finish gives the CA's slot
 * back. Before, the lease name was cut at 22 bytes and the slot stayed taken until the
 * lease expired: long txids throttled the dispatcher. */
static void long_txid_case(struct world *w)
{
    static const char txid[] = "tx-0123456789abcdef0123456789abcdef0123456789abcdef0123456789a";
    struct ra_dd_budget one = {.max_in_flight = 1, .lease_ms = LEASE_MS};
    cr_assert_eq(offer(w, offer_in(txid, "SN1", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
    struct out n = next(w, &one);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str(txid)));
    cr_assert_eq(claim(w, n.res.txid, LEASE_MS, MAX_WAIT_MS).res.state, RA_DD_SENDING);
    cr_assert_eq(next(w, &one).res.retry_ms, 0, "nothing else waits");
    ra_dd_finish(w->s, rp_view_str(txid), RA_DD_ANSWERED, rp_view_str("ip"), KEEP_MS,
                 rp_view_str("manufacturer"), rp_view_str("SN1"));
    cr_assert_eq(offer(w, offer_in("tx-o2", "SN2", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
    n = next(w, &one);
    cr_assert(rp_view_eq(n.res.txid, rp_view_str("tx-o2")), "the finished one still holds the "
                                                            "CA's only slot");
}

BOTH(long_txid)

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* Redis only: the connection is lost when a queued request is settled and a dispatched one
 * finished (both fire and forget, both idempotent): they are retried once the client is
 * back, so the device's answer is stored and the request it was told waits for is queued.
 * Before, both were dropped: the answer lost after the CA issued, the request never queued. */
Test(deliver_store, redis_settle_and_finish_are_retried_over_a_lost_connection, .timeout = 60)
{
    struct rpt_redis srv = {0};
    cr_assert_eq(rpt_redis_start(&srv, NULL), 0);
    struct world w;
    world_init(&w, srv.url);
    cr_assert_eq(offer(&w, offer_in("tx-n1", "SN1", RA_OFFER_FORCE)).res.gate, RA_GATE_QUEUED);
    struct out n = next(&w, &two);
    cr_assert_eq(claim(&w, n.res.txid, LEASE_MS, MAX_WAIT_MS).res.state, RA_DD_SENDING);
    char port[16];
    snprintf(port, sizeof port, "%d", srv.port);
    const char *kill_argv[] = {"redis-cli", "-p", port, "CLIENT", "KILL", "TYPE", "normal", NULL};
    cr_assert_eq(rpt_run(kill_argv, 10000, "/dev/null"), 0);
    cr_assert(rpt_run_until(&w.loop, rpt_redis_is_down, w.redis, WAIT_MS),
              "the client did not see the loss");
    ra_dd_finish(w.s, rp_view_str("tx-n1"), RA_DD_ANSWERED, rp_view_str("the CA's ip"), KEEP_MS,
                 rp_view_str("manufacturer"), rp_view_str("SN1"));
    struct ra_dd_offer in = offer_in("tx-n2", "SN2", RA_OFFER_FORCE);
    ra_dd_settle(w.s, &in, "");
    cr_assert(rpt_run_until(&w.loop, rpt_redis_is_ready, w.redis, WAIT_MS));
    struct out p = {0};
    long t0 = rpt_mono_ms();
    do {
        (void)rpt_run_until(&w.loop, never, NULL, 100); /* the retries' timers */
        p = poll_(&w, "tx-n1", "SN1", MAX_WAIT_MS);
    } while (p.res.state != RA_DD_ANSWERED && rpt_mono_ms() - t0 < WAIT_MS);
    cr_assert_eq(p.res.state, RA_DD_ANSWERED, "the CA's answer was lost");
    cr_assert(rp_view_eq(p.res.answer, rp_view_str("the CA's ip")));
    cr_assert_eq(poll_(&w, "tx-n2", "SN2", MAX_WAIT_MS).res.state, RA_DD_QUEUED,
                 "the request its device was told waits is not queued");
    world_free(&w);
    rpt_redis_stop(&srv);
}
