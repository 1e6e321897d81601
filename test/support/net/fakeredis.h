/* A Redis peer on the test's own loop, for replies a real redis-server never gives: it
 * answers every EVALSHA with `reply` (raw RESP, changeable between commands) and anything
 * else (a client's SCRIPT LOADs and PING) with +OK. One client connection. */
#ifndef RP_TEST_FAKEREDIS_H
#define RP_TEST_FAKEREDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#define RPT_FAKE_REDIS_IN_MAX 65536

struct rpt_fake_redis {
    const char *reply;
    char url[64];
    /* private */
    uv_tcp_t srv, conn;
    bool has_conn;
    char in[RPT_FAKE_REDIS_IN_MAX];
    size_t len;
};

/* Listens on a free loopback port (url: redis://127.0.0.1:PORT); f must stay put. */
void rpt_fake_redis_start(struct rpt_fake_redis *f, uv_loop_t *loop);
/* Closes its handles (the loop's next run finishes that). */
void rpt_fake_redis_stop(struct rpt_fake_redis *f);

#endif
