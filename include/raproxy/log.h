/* JSON-lines logging on stdout: one line per exchange plus leveled events.
 * Each line goes out in one write(2), so lines from several threads never interleave. */
#ifndef RAPROXY_LOG_H
#define RAPROXY_LOG_H

#include <stddef.h>
#include <stdint.h>

enum rp_log_level { RP_LOG_DEBUG, RP_LOG_INFO, RP_LOG_WARN, RP_LOG_ERROR, RP_LOG_OFF };

#define RP_LOG_LINE_MAX 4096

struct rp_logline {
    char buf[RP_LOG_LINE_MAX];
    size_t len;
    int truncated;
};

void rp_log_set_level(enum rp_log_level lvl);
enum rp_log_level rp_log_get_level(void);
/* "debug" | "info" | "warn" | "error" | "off"; returns -1 when unknown. */
int rp_log_parse_level(const char *s);
/* Redirect output (tests); fd 1 by default. */
void rp_log_set_fd(int fd);

/* Returns 0 when the level is filtered out (then skip the rest). */
int rp_log_begin(struct rp_logline *l, enum rp_log_level lvl, const char *event);
/* A record line (one per exchange: the RA's audit trail), written at every level but off,
 * labelled "info". Returns 0 only when logging is off. */
int rp_log_begin_record(struct rp_logline *l, const char *event);
void rp_log_str(struct rp_logline *l, const char *key, const char *val);
void rp_log_strn(struct rp_logline *l, const char *key, const char *val, size_t n);
void rp_log_int(struct rp_logline *l, const char *key, int64_t val);
void rp_log_dbl(struct rp_logline *l, const char *key, double val);
void rp_log_hex(struct rp_logline *l, const char *key, const uint8_t *p, size_t n);
void rp_log_end(struct rp_logline *l);

/* A one-shot event with a printf message: {"ts":…,"level":…,"event":…,"msg":…}. */
void rp_log(enum rp_log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define rp_log_debug(ev, ...) rp_log(RP_LOG_DEBUG, ev, __VA_ARGS__)
#define rp_log_info(ev, ...)  rp_log(RP_LOG_INFO, ev, __VA_ARGS__)
#define rp_log_warn(ev, ...)  rp_log(RP_LOG_WARN, ev, __VA_ARGS__)
#define rp_log_error(ev, ...) rp_log(RP_LOG_ERROR, ev, __VA_ARGS__)

#endif
