#include "uvrun.h"

#include "raproxy/redis.h"
#include "support.h"

/* How often the loop wakes up to look at the condition. */
#define TICK_MS 5

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

bool rpt_run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, int timeout_ms)
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, TICK_MS, TICK_MS);
    long deadline = rpt_mono_ms() + timeout_ms;
    bool ok;
    while (!(ok = cond(arg)) && rpt_mono_ms() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

bool rpt_redis_is_ready(void *redis)
{
    return rp_redis_ready(redis);
}

bool rpt_redis_is_down(void *redis)
{
    return !rp_redis_ready(redis);
}
