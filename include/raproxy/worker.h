/* Crypto workers: threads pinned to cores, each with a bounded FIFO of jobs. A loop
 * submits a job with the port it wants the answer on; the worker runs job->run() and
 * hands the job back through the port, which wakes the loop with uv_async_send and calls
 * job->done() on the loop thread. Jobs are never queued without bound: a full queue is
 * RP_E_QUEUE_FULL at submit time (back-pressure the caller turns into systemUnavail).
 *
 * Ownership: the job memory belongs to the submitter (embed struct rp_job and use
 * container_of); the workers only link it into their lists between submit and done. */
#ifndef RAPROXY_WORKER_H
#define RAPROXY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Per-worker queue capacity when rp_workers_opts.queue_cap is 0. */
#define RP_WORKERS_DEFAULT_QUEUE_CAP 1024u
/* Most worker threads (a bound for the per-worker metrics and sanity of the config). */
#define RP_WORKERS_MAX 256u

struct rp_workers;
struct rp_job;

struct rp_workers_opts {
    unsigned count;     /* 0 = the CPUs this process may run on */
    unsigned queue_cap; /* per worker; 0 = RP_WORKERS_DEFAULT_QUEUE_CAP */
    bool pin;           /* pin worker i to the i-th allowed CPU (modulo their number) */
    /* On each worker thread as it starts (with its index) and as it ends, e.g. to open and
     * close that worker's own PKCS#11 sessions. May be NULL. */
    void (*on_thread_start)(unsigned index);
    void (*on_thread_stop)(void);
};

/* One per loop: where finished jobs come back. Embed it; touch only through the
 * functions below. */
struct rp_job_port {
    uv_async_t async;
    pthread_mutex_t lock; /* guards head/tail; workers append, the loop drains */
    struct rp_job *head, *tail;
    atomic_uint inflight; /* submitted and not yet done() */
    bool closing;         /* loop thread only */
    void (*on_closed)(struct rp_job_port *p);
    void *data; /* free for the owner */
};

struct rp_job {
    void (*run)(struct rp_job *j);  /* on a worker thread */
    void (*done)(struct rp_job *j); /* on the port's loop thread; may free the job */
    struct rp_job_port *port;
    int result;                        /* set by run(); < 0 counts as an error in the metrics */
    uint64_t t_submit, t_start, t_end; /* rp_clock_ns() */
    struct rp_job *next;
};

/* Start the threads. Pinning failures are logged, not fatal. */
int rp_workers_start(struct rp_workers **out, const struct rp_workers_opts *o);
/* Refuse new jobs, run every queued one (their done callbacks still go to their ports),
 * join the threads and free. Ports' loops must keep running to receive them. */
void rp_workers_stop(struct rp_workers *w);
unsigned rp_workers_count(const struct rp_workers *w);
/* Thread-safe. Queues j (j->run and j->done set by the caller) on the worker with the
 * shortest queue. RP_OK, RP_E_QUEUE_FULL when every queue is full (j untouched, done()
 * never called), RP_E_SHUTDOWN after rp_workers_stop began, RP_E_INVAL without run/done. */
int rp_workers_submit(struct rp_workers *w, struct rp_job *j, struct rp_job_port *port);

/* On the loop thread that will run done(). */
int rp_job_port_init(struct rp_job_port *p, uv_loop_t *loop);
/* On the port's loop thread: close once every job submitted through it came back (their
 * done() has run); then on_closed(p) (may be NULL) is called and p may be freed. */
void rp_job_port_close(struct rp_job_port *p, void (*on_closed)(struct rp_job_port *p));

#endif
