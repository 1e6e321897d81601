#include "raproxy/log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = RP_LOG_INFO;
static _Atomic int log_fd = 1;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void rp_log_set_level(enum rp_log_level lvl)
{
    atomic_store(&log_level, (int)lvl);
}

enum rp_log_level rp_log_get_level(void)
{
    return (enum rp_log_level)atomic_load(&log_level);
}

int rp_log_parse_level(const char *s)
{
    for (int i = 0; i <= RP_LOG_OFF; i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void rp_log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

static void put(struct rp_logline *l, const char *s, size_t n)
{
    /* keep room for the closing "}\n" */
    size_t room = sizeof l->buf - 2 - l->len;
    if (n > room) {
        n = room;
        l->truncated = 1;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put_escaped(struct rp_logline *l, const char *s, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    put(l, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(l, esc, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            /* bytes outside printable ASCII are escaped, so a log line is always valid JSON */
            memcpy(esc, "\\u00", 4);
            esc[4] = hexd[c >> 4];
            esc[5] = hexd[c & 15];
            put(l, esc, 6);
        } else {
            put(l, (const char *)&c, 1);
        }
    }
    put(l, "\"", 1);
}

static void put_key(struct rp_logline *l, const char *key)
{
    put(l, ",", 1);
    put_escaped(l, key, strlen(key));
    put(l, ":", 1);
}

static int begin(struct rp_logline *l, enum rp_log_level lvl, const char *event);

int rp_log_begin(struct rp_logline *l, enum rp_log_level lvl, const char *event)
{
    if ((int)lvl < atomic_load(&log_level))
        return 0;
    return begin(l, lvl, event);
}

int rp_log_begin_record(struct rp_logline *l, const char *event)
{
    if (atomic_load(&log_level) == RP_LOG_OFF)
        return 0;
    return begin(l, RP_LOG_INFO, event);
}

/* The digits of v, written backwards from end; returns where they start. */
static char *digits(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* d in decimal, zero-padded to at least `width` digits. */
static void put_fixed(struct rp_logline *l, uint64_t d, int width)
{
    char b[24];
    char *end = b + sizeof b, *p = digits(end, d);
    while (end - p < width)
        *--p = '0';
    put(l, p, (size_t)(end - p));
}

/* The line's opening: the time to the millisecond, UTC. The date and time of day change once a
 * second: each thread keeps them formatted (one line per exchange made this a tenth of the
 * loop's formatting work). */
static void put_time(struct rp_logline *l)
{
    static _Thread_local struct {
        time_t sec;
        char text[32];
        size_t len;
    } last = {.sec = -1};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != last.sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        int n = snprintf(last.text, sizeof last.text, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec);
        last.len = n > 0 && (size_t)n < sizeof last.text ? (size_t)n : 0;
        last.sec = ts.tv_sec;
    }
    put(l, last.text, last.len);
    put_fixed(l, (uint64_t)ts.tv_nsec / 1000000u, 3);
    put(l, "Z\"", 2);
}

static int begin(struct rp_logline *l, enum rp_log_level lvl, const char *event)
{
    l->len = 0;
    l->truncated = 0;
    put_time(l);
    rp_log_str(l, "level", level_names[lvl]);
    rp_log_str(l, "event", event);
    return 1;
}

void rp_log_str(struct rp_logline *l, const char *key, const char *val)
{
    if (!val)
        return;
    rp_log_strn(l, key, val, strlen(val));
}

void rp_log_strn(struct rp_logline *l, const char *key, const char *val, size_t n)
{
    put_key(l, key);
    put_escaped(l, val, n);
}

void rp_log_int(struct rp_logline *l, const char *key, int64_t val)
{
    put_key(l, key);
    if (val < 0)
        put(l, "-", 1);
    put_fixed(l, val < 0 ? 0 - (uint64_t)val : (uint64_t)val, 1);
}

/* As printf's "%.3f" (durations in ms on every exchange line), without printf. */
#define DBL_FAST_MAX 9.0e12 /* thousandths still fit an int64 exactly */
void rp_log_dbl(struct rp_logline *l, const char *key, double val)
{
    if (!(val > -DBL_FAST_MAX && val < DBL_FAST_MAX)) { /* huge, inf, NaN */
        char b[48];
        int n = snprintf(b, sizeof b, "%.3f", val);
        put_key(l, key);
        put(l, b, n > 0 ? (size_t)n : 0);
        return;
    }
    long long m = llround(val * 1000.0);
    uint64_t mag = m < 0 ? 0 - (uint64_t)m : (uint64_t)m;
    put_key(l, key);
    if (signbit(val)) /* as printf: -0.0004 is "-0.000" */
        put(l, "-", 1);
    put_fixed(l, mag / 1000u, 1);
    put(l, ".", 1);
    put_fixed(l, mag % 1000u, 3);
}

void rp_log_hex(struct rp_logline *l, const char *key, const uint8_t *p, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    put_key(l, key);
    put(l, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        char h[2] = {hexd[p[i] >> 4], hexd[p[i] & 15]};
        put(l, h, 2);
    }
    put(l, "\"", 1);
}

void rp_log_end(struct rp_logline *l)
{
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    size_t off = 0;
    int fd = atomic_load(&log_fd);
    while (off < l->len) {
        ssize_t w = write(fd, l->buf + off, l->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* logging must never take the process down */
        off += (size_t)w;
    }
}

void rp_log(enum rp_log_level lvl, const char *event, const char *fmt, ...)
{
    struct rp_logline l;
    if (!rp_log_begin(&l, lvl, event))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof msg)
        n = (int)sizeof msg - 1;
    rp_log_strn(&l, "msg", msg, (size_t)n);
    rp_log_end(&l);
}
