#include "raproxy/guard.h"
#include "raproxy/log.h"
#include "raproxy/metrics.h"

#include <stdatomic.h>
#include <stdbool.h>

enum thread_kind { THREAD_UNMARKED, THREAD_LOOP, THREAD_WORKER };

static _Thread_local enum thread_kind this_thread;
static atomic_ulong violations;
static atomic_bool logged;

void rp_guard_mark_loop_thread(void)
{
    this_thread = THREAD_LOOP;
}

void rp_guard_mark_worker_thread(void)
{
    this_thread = THREAD_WORKER;
}

void rp_guard_crypto(void)
{
    if (this_thread != THREAD_LOOP)
        return;
    atomic_fetch_add_explicit(&violations, 1, memory_order_relaxed);
    rp_metric_inc(rp_metric_get("raproxy_guard_violations_total", RP_METRIC_COUNTER, NULL));
    /* One line is enough to find the caller; a line per request would flood the log. */
    if (!atomic_exchange_explicit(&logged, true, memory_order_relaxed))
        rp_log_error("guard_violation",
                     "public-key or MAC operation on an I/O loop thread (logged once)");
}

unsigned long rp_guard_violations(void)
{
    return atomic_load_explicit(&violations, memory_order_relaxed);
}
