/* Small whole-file and text helpers shared by the loaders of keys, certificates, CRLs and
 * allowlists. */
#ifndef RAPROXY_FILE_H
#define RAPROXY_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Reads the whole file into a malloc'ed buffer, NUL-terminated (not counted in *len).
 * RP_E_IO when it cannot be read or is larger than max bytes, RP_E_NOMEM. */
int rp_file_read(const char *path, size_t max, uint8_t **out, size_t *len);
/* First occurrence of needle in hay[0..n), or NULL (hay need not be NUL-terminated). */
const char *rp_memfind(const char *hay, size_t n, const char *needle);

#endif
