/* Loop-thread guard: public-key and MAC work must never run on an I/O loop thread (a
 * 1 ms RSA signature there stalls every connection of the loop). Loops and workers mark
 * their threads; the crypto primitives call rp_guard_crypto() first. A call on a loop
 * thread is not refused (refusing would turn a performance bug into an outage) but
 * counted, and logged once per process, so tests and /metrics can catch it. */
#ifndef RAPROXY_GUARD_H
#define RAPROXY_GUARD_H

/* Mark the calling thread (call once, at the thread's start). */
void rp_guard_mark_loop_thread(void);
void rp_guard_mark_worker_thread(void);
/* Called at the top of every sign/verify/MAC. */
void rp_guard_crypto(void);
/* Crypto calls seen on loop threads since the process started. */
unsigned long rp_guard_violations(void);

#endif
