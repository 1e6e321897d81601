#ifndef RAPROXY_CLOCK_H
#define RAPROXY_CLOCK_H

#include <stdint.h>

/* Monotonic time. */
uint64_t rp_clock_ns(void);
uint64_t rp_clock_ms(void);
/* Wall clock, seconds and milliseconds since the epoch. */
int64_t rp_clock_wall_s(void);
int64_t rp_clock_wall_ms(void);

#endif
