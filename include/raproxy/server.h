/* The RA application on top of the net layer: builds snapshots from a configuration and
 * handles CMP exchanges. main.c wires these to the loops. */
#ifndef RAPROXY_SERVER_H
#define RAPROXY_SERVER_H

#include <stdio.h>

struct rp_config;
struct rp_snapshot;
struct rp_exchange;
struct rp_loop;

/* Builds a snapshot (TLS contexts, RA state) and takes ownership of cfg, also on failure.
 * Problems are written to errs (may be NULL) and logged. */
int rp_server_snapshot(struct rp_config *cfg, struct rp_snapshot **out, FILE *errs);

/* The handler of CMP listeners (rp_loop_opts.on_exchange). */
void rp_server_on_exchange(struct rp_exchange *ex);

#endif
