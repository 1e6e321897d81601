#include "raproxy/snapshot.h"
#include "raproxy/config.h"

#include <stdlib.h>

void rp_snapshot_unref(struct rp_snapshot *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (s->ra && s->ra_free)
        s->ra_free(s->ra);
    if (s->release)
        s->release(s);
    rp_config_free(s->cfg);
    free(s);
}
