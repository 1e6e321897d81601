/* Crypto workers: threads pinned to cores, each with two bounded FIFOs of jobs, one per
 * class: work that finishes a transaction (certConf, pollReq, the CA's answer) runs before
 * new work (ir, cr, p10cr, kur, ...). A loop submits a job with the port it wants the
 * answer on; the worker runs job->run() and hands the job back through the port, which
 * wakes the loop (once per batch of finished jobs, not once per job) and calls job->done()
 * on the loop thread.
 *
 * Jobs are never queued without bound, in count or in time: a submission is refused with
 * RP_E_QUEUE_FULL when the queue is full, or when its expected wait — the jobs ahead of it
 * times the recent cost of a job — exceeds the deadline (queue_ms; twice that for
 * finishing work). The caller turns that into systemUnavail at once, instead of letting the
 * device wait seconds for an answer it will have given up on.
 *
 * Ownership: the job memory belongs to the submitter (embed struct rp_job and use
 * container_of); the workers only link it into their lists between submit and done. */
#ifndef RAPROXY_WORKER_H
#define RAPROXY_WORKER_H

#include "raproxy/list.h"

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
    uint32_t queue_ms;  /* expected-wait deadline of new work; 0 = none */
    bool pin;           /* pin worker i to the i-th allowed CPU (modulo their number) */
    /* On each worker thread as it starts (with its index) and as it ends, e.g. to open and
     * close that worker's own PKCS#11 sessions. May be NULL. */
    void (*on_thread_start)(unsigned index);
    void (*on_thread_stop)(void);
};

/* What a job is for: work that completes a transaction goes first. */
enum rp_job_class {
    RP_JOB_NEW = 0, /* starts or answers a new request (ir, cr, p10cr, kur, rr, genm, ...) */
    RP_JOB_FINISH,  /* completes one (certConf, pollReq, error -> pkiConf, the CA's answer) */
    RP_JOB_CLASSES_
};

/* One per loop: where finished jobs come back. Embed it; touch only through the
 * functions below. */
struct rp_job_port {
    uv_async_t async;
    pthread_mutex_t lock;     /* guards done; workers append, the loop drains */
    struct rp_list_node done; /* finished jobs, oldest first */
    atomic_uint inflight;     /* submitted and not yet done() */
    bool collecting;          /* guarded by lock: the loop is draining; workers need not wake it */
    bool closing;             /* loop thread only */
    void (*on_closed)(struct rp_job_port *p);
    uint64_t wakeups; /* batches delivered (loop thread): jobs per wake-up for the bench */
    void *data;       /* free for the owner */
};

struct rp_job {
    void (*run)(struct rp_job *j);  /* on a worker thread */
    void (*done)(struct rp_job *j); /* on the port's loop thread; may free the job */
    enum rp_job_class cls;          /* set by the submitter; 0 (RP_JOB_NEW) by default */
    struct rp_job_port *port;
    int result;                        /* set by run(); < 0 counts as an error in the metrics */
    uint64_t t_submit, t_start, t_end; /* rp_clock_ns() */
    struct rp_list_node link;          /* in a worker's queue, then in its port's done list */
};

/* Start the threads. Pinning failures are logged, not fatal. */
int rp_workers_start(struct rp_workers **out, const struct rp_workers_opts *o);
/* Refuse new jobs, run every queued one (their done callbacks still go to their ports),
 * join the threads and free. Ports' loops must keep running to receive them. */
void rp_workers_stop(struct rp_workers *w);
unsigned rp_workers_count(const struct rp_workers *w);
/* Thread-safe. Queues j (j->run, j->done and j->cls set by the caller) on the worker where
 * it waits least. RP_OK, RP_E_QUEUE_FULL when every queue is full or the expected wait is
 * over the deadline (j untouched, done() never called), RP_E_SHUTDOWN after
 * rp_workers_stop began, RP_E_INVAL without run/done. */
int rp_workers_submit(struct rp_workers *w, struct rp_job *j, struct rp_job_port *port);

/* On the loop thread that will run done(). */
int rp_job_port_init(struct rp_job_port *p, uv_loop_t *loop);
/* On the port's loop thread: close once every job submitted through it came back (their
 * done() has run); then on_closed(p) (may be NULL) is called and p may be freed. */
void rp_job_port_close(struct rp_job_port *p, void (*on_closed)(struct rp_job_port *p));

#endif
