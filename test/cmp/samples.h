/* Real CMP messages for the decoder tests: test/cmp/make-samples.sh run once per build tree
 * (under a lock, like rpt_pki()) into <build>/cmp-samples. Header-only so each test
 * executable can include it. */
#ifndef RP_TEST_CMP_SAMPLES_H
#define RP_TEST_CMP_SAMPLES_H

#include "support.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#define SAMPLES_TIMEOUT_MS 120000

/* The directory with <body>.der files and pki/, or NULL when they cannot be made. */
static inline const char *samples_dir(void)
{
    static char dir[512];
    char lock[600], script[600], done[600], log[600];
    snprintf(dir, sizeof dir, "%s/cmp-samples", rpt_bin());
    snprintf(lock, sizeof lock, "%s/cmp-samples.lock", rpt_bin());
    snprintf(script, sizeof script, "%s/test/cmp/make-samples.sh", rpt_src());
    snprintf(done, sizeof done, "%s/.done", dir);
    snprintf(log, sizeof log, "%s/cmp-samples.log", rpt_bin());
    int fd = open(lock, O_CREAT | O_RDWR, 0644);
    if (fd < 0)
        return NULL;
    flock(fd, LOCK_EX);
    if (access(done, F_OK) != 0) {
        const char *argv[] = {"bash", script, dir, NULL};
        rpt_run(argv, SAMPLES_TIMEOUT_MS, log);
    }
    int ok = access(done, F_OK) == 0;
    flock(fd, LOCK_UN);
    close(fd);
    return ok ? dir : NULL;
}

/* samples_dir()/name read whole; NULL if missing. Caller frees. */
static inline uint8_t *sample_read(const char *name, size_t *len)
{
    const char *d = samples_dir();
    char path[700];
    if (!d)
        return NULL;
    snprintf(path, sizeof path, "%s/%s", d, name);
    return rpt_read_file(path, len);
}

/* Run `openssl <cmd> -in samples_dir()/pki/<file> <args...> -outform DER -out TMP` and read
 * TMP (per-process name: tests run in parallel). Caller frees. */
static inline uint8_t *sample_openssl_der(const char *cmd, const char *file, const char *extra,
                                          size_t *len)
{
    const char *d = samples_dir();
    char in[700], out[700];
    if (!d)
        return NULL;
    snprintf(in, sizeof in, "%s/pki/%s", d, file);
    snprintf(out, sizeof out, "%s/pki/%s.%d.der", d, file, (int)getpid());
    const char *argv[10];
    int k = 0;
    argv[k++] = "openssl";
    argv[k++] = cmd;
    argv[k++] = "-in";
    argv[k++] = in;
    if (extra)
        argv[k++] = extra;
    argv[k++] = "-outform";
    argv[k++] = "DER";
    argv[k++] = "-out";
    argv[k++] = out;
    argv[k] = NULL;
    uint8_t *data = rpt_run(argv, 10000, NULL) == 0 ? rpt_read_file(out, len) : NULL;
    unlink(out);
    return data;
}

/* A certificate of samples_dir()/pki as DER. */
static inline uint8_t *sample_cert_der(const char *pem, size_t *len)
{
    return sample_openssl_der("x509", pem, NULL, len);
}

/* The SubjectPublicKeyInfo of a key file in samples_dir()/pki, DER. */
static inline uint8_t *sample_pub_der(const char *key, size_t *len)
{
    return sample_openssl_der("pkey", key, "-pubout", len);
}

#endif
