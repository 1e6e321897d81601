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

/* Process-wide: the crypto workers and the in-process limiter every loop shares; the
 * in-process delayed-delivery queue is made here. RP_OK or RP_E_NOMEM. */
int rp_server_init(struct rp_workers *workers, struct rp_limiter *limiter);
/* After the loops are gone: frees what rp_server_init made. */
void rp_server_fini(void);
/* The handler of CMP listeners (rp_loop_opts.on_exchange). */
void rp_server_on_exchange(struct rp_exchange *ex);
/* Loop hooks (rp_loop_opts.on_snapshot / on_stop): per-loop Redis client, admission and
 * the port where worker jobs come back. rp_server_init must have run: without workers or
 * this state the RA cannot judge requests, so the loop does not start. */
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
