/* A domain's serial-number allowlist loaded from a file: one serial per line ('#' starts a
 * comment, surrounding blanks ignored). Open addressing over one string block: millions of
 * entries load in well under a second and a lookup is O(1). Immutable once built, so any
 * thread may look up. */
#ifndef RAPROXY_ALLOWLIST_H
#define RAPROXY_ALLOWLIST_H

#include "raproxy/view.h"

#include <stdbool.h>
#include <stddef.h>

struct rp_allowlist;

/* RP_OK, RP_E_IO (file), RP_E_NOMEM. */
int rp_allowlist_load(const char *path, struct rp_allowlist **out);
int rp_allowlist_from_buffer(const char *data, size_t len, struct rp_allowlist **out);
bool rp_allowlist_contains(const struct rp_allowlist *a, struct rp_view serial);
size_t rp_allowlist_count(const struct rp_allowlist *a);
void rp_allowlist_free(struct rp_allowlist *a);

#endif
