/* Test helpers: loopback ports, child processes, files. Used by integration tests that
 * run real raproxy, redis-server and `openssl cmp` processes. */
#ifndef RP_TEST_SUPPORT_H
#define RP_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Milliseconds of CLOCK_MONOTONIC: for deadlines of polling loops, never for asserting speed. */
long rpt_mono_ms(void);
void rpt_sleep_ms(long ms);

/* A free TCP port on 127.0.0.1 (bound then released; racy only against other programs). */
int rpt_free_port(void);
/* Poll until something accepts on 127.0.0.1:port, up to timeout_ms. 0 on success. */
int rpt_wait_port(int port, int timeout_ms);

struct rpt_proc {
    pid_t pid;
    char log[512]; /* stdout+stderr of the child go here */
};

/* Start argv[0] (PATH lookup) with stdout/stderr to a log file in the test tmp dir.
 * Returns 0 or -1. */
int rpt_spawn(struct rpt_proc *p, const char *const argv[]);
/* Run to completion with a timeout; returns exit status (0..255), 128+sig, or -1 on timeout. */
int rpt_run(const char *const argv[], int timeout_ms, const char *log_path);
/* Send sig and wait up to timeout_ms; SIGKILL afterwards. Returns the exit status like rpt_run. */
int rpt_stop(struct rpt_proc *p, int sig, int timeout_ms);
/* Non-blocking: 1 while running, 0 once exited (status stored in *status). */
int rpt_alive(struct rpt_proc *p, int *status);

/* A fresh directory under $TMPDIR for this test: "/tmp/rpt-XXXXXX". Caller frees. */
char *rpt_tmpdir(void);
void rpt_rmdir(const char *dir);
/* Whole file into a malloc'ed buffer (NUL-terminated). NULL on error. */
uint8_t *rpt_read_file(const char *path, size_t *len);
int rpt_write_file(const char *path, const void *data, size_t len);
/* The last `cap - 1` bytes of a file (NUL-terminated; "" when unreadable): for assertion
 * messages, since a test's directory is gone when its report is read. */
const char *rpt_file_tail(const char *path, char *buf, size_t cap);
/* Count occurrences of needle in the file. */
int rpt_file_count(const char *path, const char *needle);
/* Count the entries of a directory whose name contains needle (0 when unreadable). */
int rpt_dir_count(const char *dir, const char *needle);

/* Paths: the source tree and the build tree (compile-time constants). */
const char *rpt_src(void);
const char *rpt_bin(void);

/* The test PKI made by scripts/test-pki.sh, generated once per build tree into
 * <build>/test-pki (idempotent, locked). Returns the directory or NULL. */
const char *rpt_pki(void);

#endif
