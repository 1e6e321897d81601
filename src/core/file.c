#include "raproxy/file.h"
#include "raproxy/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_READ_STEP 8192u

int rp_file_read(const char *path, size_t max, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return RP_E_IO;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = RP_OK;
    for (;;) {
        if (n + 1 >= cap) { /* full (one byte kept for the NUL): grow, up to max + 1 */
            if (cap == max + 1) {
                if (fgetc(f) != EOF) /* a byte beyond max: too large */
                    rc = RP_E_IO;
                break;
            }
            size_t ncap = cap ? cap * 2 : FILE_READ_STEP;
            if (ncap > max + 1)
                ncap = max + 1;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                rc = RP_E_NOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    if (rc == RP_OK && (ferror(f) || n > max))
        rc = RP_E_IO;
    fclose(f);
    if (rc != RP_OK) {
        free(buf);
        return rc;
    }
    if (!buf) {
        buf = malloc(1);
        if (!buf)
            return RP_E_NOMEM;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return RP_OK;
}

const char *rp_memfind(const char *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; m && i + m <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0)
            return hay + i;
    return NULL;
}
