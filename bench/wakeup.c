/* bench/wakeup: what the worker pool's hand-back costs the loop, per job. A loop thread keeps
 * WINDOW jobs in flight on the crypto workers (each job spins SPIN_NS, 0 = empty, so the
 * hand-back is all there is to measure) and counts how many times the loop woke up to
 * collect finished jobs. Figures: jobs per second, CPU microseconds per job for the whole
 * process (workers + loop), loop wake-ups per job, and the loop thread's CPU per job.
 *
 *   bench_wakeup [-n JOBS] [-w WORKERS] [-k WINDOW] [-s SPIN_NS]
 *
 * Built against the pool of the tree it is in: run it on two trees (before/after a change
 * to src/net/worker.c) to compare. */
#include "raproxy/err.h"
#include "raproxy/worker.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

struct bjob {
    struct rp_job job;
    struct bench *b;
};

struct bench {
    uv_loop_t loop;
    uv_prepare_t prepare;
    struct rp_job_port port;
    struct rp_workers *w;
    struct bjob *jobs;
    long total, submitted, done, refused;
    long window, spin_ns;
    long wakeups;       /* loop turns that collected at least one job */
    long done_at_check; /* done count at the last turn */
};

static uint64_t now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long spin_ns;

static void bjob_run(struct rp_job *j)
{
    if (spin_ns) {
        uint64_t end = now_ns(CLOCK_MONOTONIC) + (uint64_t)spin_ns;
        while (now_ns(CLOCK_MONOTONIC) < end)
            ;
    }
    j->result = RP_OK;
}

static void submit_more(struct bench *b);

static void bjob_done(struct rp_job *j)
{
    struct bjob *x = (struct bjob *)j;
    struct bench *b = x->b;
    b->done++;
    submit_more(b);
    if (b->done == b->total) {
        uv_prepare_stop(&b->prepare);
        uv_close((uv_handle_t *)&b->prepare, NULL);
        rp_job_port_close(&b->port, NULL);
    }
}

static void submit_more(struct bench *b)
{
    while (b->submitted < b->total && b->submitted - b->done < b->window) {
        struct bjob *x = &b->jobs[b->submitted];
        x->b = b;
        x->job.run = bjob_run;
        x->job.done = bjob_done;
        if (rp_workers_submit(b->w, &x->job, &b->port) != RP_OK) {
            b->refused++;
            return;
        }
        b->submitted++;
    }
}

/* Runs before the loop blocks: jobs collected since the last turn mean one wake-up did it. */
static void on_prepare(uv_prepare_t *p)
{
    struct bench *b = p->data;
    if (b->done != b->done_at_check) {
        b->wakeups++;
        b->done_at_check = b->done;
    }
}

static double cpu_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    long jobs = 200000, workers = 2, window = 256;
    int opt;
    while ((opt = getopt(argc, argv, "n:w:k:s:")) != -1) {
        switch (opt) {
        case 'n':
            jobs = atol(optarg);
            break;
        case 'w':
            workers = atol(optarg);
            break;
        case 'k':
            window = atol(optarg);
            break;
        case 's':
            spin_ns = atol(optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: bench_wakeup [-n JOBS] [-w WORKERS] [-k WINDOW] [-s SPIN_NS]\n");
            return 2;
        }
    }
    struct bench b = {.total = jobs, .window = window, .spin_ns = spin_ns};
    struct rp_workers_opts o = {.count = (unsigned)workers, .queue_cap = (unsigned)window * 2};
    if (rp_workers_start(&b.w, &o) != RP_OK)
        return 1;
    b.jobs = calloc((size_t)jobs, sizeof *b.jobs); /* finished out of order: no slot reuse */
    uv_loop_init(&b.loop);
    rp_job_port_init(&b.port, &b.loop);
    uv_prepare_init(&b.loop, &b.prepare);
    b.prepare.data = &b;
    uv_prepare_start(&b.prepare, on_prepare);
    double cpu0 = cpu_s(RUSAGE_SELF), loop0 = cpu_s(RUSAGE_THREAD);
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    submit_more(&b);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    double wall = (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
    double cpu = cpu_s(RUSAGE_SELF) - cpu0, loop_cpu = cpu_s(RUSAGE_THREAD) - loop0;
    rp_workers_stop(b.w);
    uv_loop_close(&b.loop);
    printf("RESULT jobs=%ld workers=%ld window=%ld spin_ns=%ld jobs_per_s=%.0f cpu_us_per_job=%.3f "
           "loop_cpu_us_per_job=%.3f wakeups_per_job=%.4f refused=%ld\n",
           b.done, workers, window, spin_ns, (double)b.done / wall, cpu * 1e6 / (double)b.done,
           loop_cpu * 1e6 / (double)b.done, (double)b.wakeups / (double)b.done, b.refused);
    free(b.jobs);
    return 0;
}
