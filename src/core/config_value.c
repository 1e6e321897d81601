/* The text forms of configuration values that YAML does not type itself: unsigned integers,
 * booleans, rates with their unit ("20/s"), the short form of a limit ("3/day burst 3") and
 * durations or shares of a lifetime ("30d", "33%"). Pure functions over strings, a leaf. */
#include "config_internal.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int core_cfg_parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max)
            return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int core_cfg_parse_bool(const char *s, int *v)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < COUNT(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *v = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *v = 0, 0;
    }
    return -1;
}

static const char *skip_spaces(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Read a run of digits at *sp into v; advances *sp. */
static int take_u32(const char **sp, uint32_t *v)
{
    char digits[16];
    size_t n = 0;
    const char *s = *sp;
    while (isdigit((unsigned char)s[n]) && n < sizeof digits - 1) {
        digits[n] = s[n];
        n++;
    }
    digits[n] = 0;
    if (n == 0 || core_cfg_parse_u32(digits, UINT32_MAX, v) != 0)
        return -1;
    *sp = s + n;
    return 0;
}

/* The unit after "N/": s, min, h or day (RP_CFG_PER_*); advances *sp past it. */
static int take_rate_unit(const char **sp, uint32_t *period_s)
{
    static const struct {
        const char *name;
        uint32_t seconds;
    } units[] = {
        {"s", RP_CFG_PER_S}, {"min", RP_CFG_PER_MIN}, {"h", RP_CFG_PER_H}, {"day", RP_CFG_PER_DAY}};
    const char *s = *sp;
    size_t n = 0;
    while (isalpha((unsigned char)s[n]))
        n++;
    for (size_t i = 0; i < COUNT(units); i++) {
        if (strlen(units[i].name) == n && strncmp(s, units[i].name, n) == 0) {
            *period_s = units[i].seconds;
            *sp = s + n;
            return 0;
        }
    }
    return -1;
}

/* A rate: "N" (per second, as before units existed) or "N/s", "N/min", "N/h", "N/day". */
static int take_rate(const char **sp, uint32_t *rate, uint32_t *period_s)
{
    const char *s = skip_spaces(*sp);
    if (take_u32(&s, rate) != 0)
        return -1;
    s = skip_spaces(s);
    *period_s = RP_CFG_PER_S;
    if (*s == '/') {
        s = skip_spaces(s + 1);
        if (take_rate_unit(&s, period_s) != 0)
            return -1;
    }
    *sp = s;
    return 0;
}

int core_cfg_parse_rate(const char *s, uint32_t *rate, uint32_t *period_s)
{
    if (take_rate(&s, rate, period_s) != 0)
        return -1;
    return *skip_spaces(s) == 0 ? 0 : -1;
}

int core_cfg_parse_limit(const char *s, uint32_t *rate, uint32_t *period_s, uint32_t *burst,
                         int *has_burst)
{
    const char *start = skip_spaces(s);
    if (take_rate(&s, rate, period_s) != 0 || !strchr(start, '/'))
        return -1; /* the short form always names its unit */
    s = skip_spaces(s);
    *has_burst = 0;
    if (*s == 0)
        return 0;
    if (strncmp(s, "burst", 5) != 0 || (s[5] != ' ' && s[5] != '\t'))
        return -1;
    s = skip_spaces(s + 5);
    if (take_u32(&s, burst) != 0)
        return -1;
    *has_burst = 1;
    return *skip_spaces(s) == 0 ? 0 : -1;
}

int core_cfg_parse_span(const char *text, struct rp_cfg_span *out)
{
    static const struct {
        const char *name;
        uint32_t seconds;
    } units[] = {{"", 1},
                 {"s", 1},
                 {"min", RP_CFG_PER_MIN},
                 {"h", RP_CFG_PER_H},
                 {"d", RP_CFG_PER_DAY},
                 {"day", RP_CFG_PER_DAY},
                 {"days", RP_CFG_PER_DAY}};
    const char *s = skip_spaces(text);
    uint32_t n;
    if (take_u32(&s, &n) != 0)
        return -1;
    s = skip_spaces(s);
    *out = (struct rp_cfg_span){.set = true};
    if (*s == '%') {
        out->pct = n;
        return n >= 1 && n <= 100 && *skip_spaces(s + 1) == 0 ? 0 : -1;
    }
    size_t len = 0;
    while (isalpha((unsigned char)s[len]))
        len++;
    if (*skip_spaces(s + len) != 0)
        return -1;
    for (size_t i = 0; i < COUNT(units); i++)
        if (strlen(units[i].name) == len && strncmp(s, units[i].name, len) == 0) {
            if (n > UINT32_MAX / units[i].seconds)
                return -1;
            out->seconds = n * units[i].seconds;
            return 0;
        }
    return -1;
}
