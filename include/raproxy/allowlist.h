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
/* A domain's allowlist keyed by identity (README "Identities"): a line is "SERIAL" or
 * "ANCHOR SERIAL". In a domain with several anchor names (qualified) every line names its
 * anchor and is kept as "ANCHOR/SERIAL"; otherwise the anchor, when written, must be the
 * domain's and the key is "SERIAL". mac_name is the anchor name of MAC identities. A bad
 * line is RP_E_CONFIG with "line N: why" in err. */
struct rp_allowlist_names {
    const char *const *names;
    size_t n;
    bool qualified;
    const char *mac_name;
};
int rp_allowlist_load_named(const char *path, const struct rp_allowlist_names *names,
                            struct rp_allowlist **out, char *err, size_t errcap);
bool rp_allowlist_contains(const struct rp_allowlist *a, struct rp_view serial);
size_t rp_allowlist_count(const struct rp_allowlist *a);
void rp_allowlist_free(struct rp_allowlist *a);

#endif
