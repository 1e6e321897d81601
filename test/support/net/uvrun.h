/* Driving a libuv loop from a test: run it until a condition holds, with a deadline. For
 * unit tests of the net layer and above (links rp_net). */
#ifndef RP_TEST_UVRUN_H
#define RP_TEST_UVRUN_H

#include <stdbool.h>
#include <uv.h>

/* Runs the loop until cond(arg) holds or timeout_ms pass; a ticking timer keeps
 * UV_RUN_ONCE from blocking forever. Returns whether cond held. */
bool rpt_run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, int timeout_ms);

/* Conditions on a struct rp_redis *: connected (and scripts loaded), or not. */
bool rpt_redis_is_ready(void *redis);
bool rpt_redis_is_down(void *redis);

#endif
