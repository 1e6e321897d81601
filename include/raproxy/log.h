/* JSON-lines logging on stdout: one line per exchange plus leveled events.
 * Each line goes out whole in one write(2) of at most PIPE_BUF bytes, so lines from several
 * threads never interleave, even on a pipe. */
#ifndef RAPROXY_LOG_H
#define RAPROXY_LOG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum rp_log_level { RP_LOG_DEBUG, RP_LOG_INFO, RP_LOG_WARN, RP_LOG_ERROR, RP_LOG_OFF };

#define RP_LOG_LINE_MAX 4096 /* not above PIPE_BUF */

struct rp_logline {
    char buf[RP_LOG_LINE_MAX];
    size_t len;
    int truncated;
    bool urgent; /* warn and error: written at once even when the thread holds lines */
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

/* Held lines: between rp_log_hold and rp_log_release, the calling thread's lines are
 * collected (up to RP_LOG_HOLD_BYTES, PIPE_BUF: a pipe takes it whole) and written by
 * rp_log_flush in one write(2); a warn or
 * error line flushes at once. A loop thread holds its lines and flushes before each poll,
 * so a busy loop writes its exchange records once per iteration instead of once each. */
#define RP_LOG_HOLD_BYTES PIPE_BUF
int rp_log_hold(void); /* RP_E_NOMEM: lines are written one by one, as without it */
void rp_log_flush(void);
void rp_log_release(void); /* flushes */

/* A one-shot event with a printf message: {"ts":…,"level":…,"event":…,"msg":…}. */
void rp_log(enum rp_log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define rp_log_debug(ev, ...) rp_log(RP_LOG_DEBUG, ev, __VA_ARGS__)
#define rp_log_info(ev, ...)  rp_log(RP_LOG_INFO, ev, __VA_ARGS__)
#define rp_log_warn(ev, ...)  rp_log(RP_LOG_WARN, ev, __VA_ARGS__)
#define rp_log_error(ev, ...) rp_log(RP_LOG_ERROR, ev, __VA_ARGS__)

#endif
