/* The RA application on top of the net layer: builds snapshots from a configuration and
 * handles CMP exchanges. main.c wires these to the loops. */
#ifndef RAPROXY_SERVER_H
#define RAPROXY_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct rp_config;
struct rp_snapshot;
struct rp_exchange;
struct rp_loop;

/* Builds a snapshot (TLS contexts, RA state) and takes ownership of cfg, also on failure.
 * Problems are written to errs (may be NULL) and logged. */
int rp_server_snapshot(struct rp_config *cfg, struct rp_snapshot **out, FILE *errs);

struct rp_workers;
struct rp_limiter;
struct rp_server;

/* What every loop of the process shares (main.c makes them). */
struct rp_server_opts {
    struct rp_workers *workers; /* the crypto workers; required */
    struct rp_limiter *limiter; /* the in-process limiter (no Redis, or Redis down); required */
};

/* The process-wide context of the RA (given to each loop as rp_loop_opts.ctx): the options'
 * workers and limiter, and the in-process delayed-delivery queue made here. RP_OK, RP_E_INVAL
 * (no workers or limiter) or RP_E_NOMEM. */
int rp_server_new(struct rp_server **out, const struct rp_server_opts *o);
/* After the loops are gone. */
void rp_server_free(struct rp_server *srv);
/* The handler of CMP listeners (rp_loop_opts.on_exchange). */
void rp_server_on_exchange(struct rp_exchange *ex);
/* Loop hooks (rp_loop_opts.on_snapshot / on_stop), with rp_loop_opts.ctx a struct
 * rp_server: the loop's resources built from the snapshot — the CA pool, the VA pool, the
 * Redis client, admission and delayed delivery — and the port where worker jobs come back
 * (src/ra/ra.h, struct ra_loop). Without them the RA cannot judge requests, so a loop whose
 * first on_snapshot fails does not start; a later failure is logged and the loop keeps what
 * it had. */
int rp_server_on_snapshot(struct rp_loop *l, struct rp_snapshot *s);
void rp_server_on_stop(struct rp_loop *l);
/* /readyz (rp_loop_opts.ready): false only while Redis is down and some domain refuses
 * without it (on_redis_failure: closed). */
bool rp_server_redis_ready(struct rp_loop *l);
/* The earliest nextUpdate of the snapshot's CRLs (epoch seconds, 0: none), for the timer
 * that rebuilds the snapshot when a CRL is due. */
int64_t rp_server_crl_due(const struct rp_snapshot *s);
/* Each domain's revocation state as "crl <domain>: <state>" lines into buf (/readyz, and
 * the reload log); returns how many domains cannot use their CRLs now. */
unsigned rp_server_crl_report(const struct rp_snapshot *s, char *buf, size_t cap);
/* rp_loop_opts.ready_detail: the CRL lines of the loop's snapshot. */
void rp_server_ready_detail(struct rp_loop *l, char *buf, size_t cap);

#endif
