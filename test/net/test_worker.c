/* Crypto workers and job ports with real threads and real libuv loops. */
#include "raproxy/err.h"
#include "raproxy/guard.h"
#include "raproxy/metrics.h"
#include "raproxy/sig.h"
#include "raproxy/worker.h"

#include "support.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MANY_JOBS     10000
#define WINDOW        256 /* jobs a loop keeps in flight */
#define TWO_LOOP_JOBS 3000
#define POLL_US       1000
#define POLL_MAX      20000 /* 20 s of 1 ms polls: a bound, not a timing assertion */
#define SMALL_CAP     4
#define STOP_BACKLOG  50
#define STOP_POOL     2000 /* submissions tried while stop runs: ~2 s of 1 ms polls */

/* ---- a loop that submits jobs from its own thread ---- */

struct tjob {
    struct rp_job job;
    struct driver *drv;
    atomic_int runs;
    int dones;
    pthread_t ran_on;
    int fail; /* run() sets result < 0 */
};

struct driver {
    uv_loop_t loop;
    struct rp_job_port port;
    uv_timer_t retry; /* re-submits after a refusal when none of our jobs is out */
    struct rp_workers *w;
    pthread_t thread;
    struct tjob *jobs;
    int total, submitted, done, wrong_thread, rejected;
    bool closed;
};

static void tjob_run(struct rp_job *j)
{
    struct tjob *t = (struct tjob *)j;
    atomic_fetch_add(&t->runs, 1);
    t->ran_on = pthread_self();
    j->result = t->fail ? RP_E_CRYPTO : RP_OK;
}

static void submit_next(struct driver *d);

static void tjob_done(struct rp_job *j)
{
    struct tjob *t = (struct tjob *)j;
    struct driver *d = t->drv;
    t->dones++;
    if (!pthread_equal(pthread_self(), d->thread) || j->port != &d->port ||
        pthread_equal(t->ran_on, d->thread))
        d->wrong_thread++;
    d->done++;
    submit_next(d);
    if (d->done == d->total) {
        rp_job_port_close(&d->port, NULL);
        uv_close((uv_handle_t *)&d->retry, NULL);
    }
}

static void on_retry(uv_timer_t *t)
{
    submit_next(t->data);
}

static void submit_next(struct driver *d)
{
    while (d->submitted < d->total && d->submitted - d->done < WINDOW) {
        struct tjob *t = &d->jobs[d->submitted];
        t->drv = d;
        t->job.run = tjob_run;
        t->job.done = tjob_done;
        int rc = rp_workers_submit(d->w, &t->job, &d->port);
        if (rc == RP_E_QUEUE_FULL) {
            /* The other loop filled the queues. Our next done() retries; with none of ours
             * out, a timer does. */
            d->rejected++;
            if (d->submitted == d->done)
                uv_timer_start(&d->retry, on_retry, 1, 0);
            return;
        }
        cr_assert_eq(rc, RP_OK, "%s", rp_err_name(rc));
        d->submitted++;
    }
}

static void driver_init(struct driver *d, struct rp_workers *w, int total)
{
    memset(d, 0, sizeof *d);
    d->w = w;
    d->total = total;
    d->jobs = calloc((size_t)total, sizeof *d->jobs);
    cr_assert_not_null(d->jobs);
}

/* Runs on the driver's own thread: loop, port, submissions, and the done callbacks. */
static void *driver_main(void *arg)
{
    struct driver *d = arg;
    d->thread = pthread_self();
    rp_guard_mark_loop_thread();
    cr_assert_eq(uv_loop_init(&d->loop), 0);
    cr_assert_eq(rp_job_port_init(&d->port, &d->loop), RP_OK);
    cr_assert_eq(uv_timer_init(&d->loop, &d->retry), 0);
    d->retry.data = d;
    submit_next(d);
    uv_run(&d->loop, UV_RUN_DEFAULT); /* returns once the port is closed */
    cr_assert_eq(uv_loop_close(&d->loop), 0);
    return NULL;
}

static void driver_check(struct driver *d)
{
    cr_expect_eq(d->done, d->total);
    cr_expect_eq(d->wrong_thread, 0, "done() off the loop thread or run() on it");
    for (int i = 0; i < d->total; i++) {
        cr_expect_eq(atomic_load(&d->jobs[i].runs), 1, "job %d ran %d times", i,
                     atomic_load(&d->jobs[i].runs));
        cr_expect_eq(d->jobs[i].dones, 1, "job %d done %d times", i, d->jobs[i].dones);
    }
    free(d->jobs);
}

static int64_t metric(const char *name, enum rp_metric_kind kind, const char *labels)
{
    struct rp_metric *m = rp_metric_get(name, kind, labels);
    cr_assert_not_null(m);
    return kind == RP_METRIC_HISTOGRAM ? (int64_t)atomic_load(&m->count) : atomic_load(&m->value);
}

Test(workers, ten_thousand_jobs_come_back_once_on_the_submitting_loop_thread)
{
    struct rp_workers *w;
    struct rp_workers_opts o = {.count = 2, .queue_cap = 64, .pin = true};
    cr_assert_eq(rp_workers_start(&w, &o), RP_OK);
    cr_expect_eq(rp_workers_count(w), 2u);
    int64_t ok0 = metric("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"ok\"");
    int64_t err0 = metric("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"error\"");
    int64_t hist0 = metric("raproxy_worker_job_seconds", RP_METRIC_HISTOGRAM, NULL);

    struct driver d;
    driver_init(&d, w, MANY_JOBS);
    for (int i = 0; i < MANY_JOBS; i += 100)
        d.jobs[i].fail = 1;
    driver_main(&d); /* this thread is the loop */
    rp_workers_stop(w);
    driver_check(&d);

    int64_t failed = MANY_JOBS / 100;
    cr_expect_eq(metric("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"ok\"") - ok0,
                 MANY_JOBS - failed);
    cr_expect_eq(metric("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"error\"") - err0,
                 failed);
    cr_expect_eq(metric("raproxy_worker_job_seconds", RP_METRIC_HISTOGRAM, NULL) - hist0,
                 MANY_JOBS);
    cr_expect_eq(metric("raproxy_worker_queue_depth", RP_METRIC_GAUGE, "worker=\"0\""), 0);
    cr_expect_eq(metric("raproxy_worker_queue_depth", RP_METRIC_GAUGE, "worker=\"1\""), 0);
}

Test(workers, two_loops_submit_concurrently_and_each_gets_its_own_jobs_back)
{
    struct rp_workers *w;
    struct rp_workers_opts o = {.count = 2, .queue_cap = 32, .pin = false};
    cr_assert_eq(rp_workers_start(&w, &o), RP_OK);
    struct driver d[2];
    for (int i = 0; i < 2; i++)
        driver_init(&d[i], w, TWO_LOOP_JOBS);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, driver_main, &d[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    rp_workers_stop(w);
    for (int i = 0; i < 2; i++)
        driver_check(&d[i]);
}

/* ---- a gate that holds a worker inside run() ---- */

struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    atomic_bool entered;
};

static struct gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};

static void gated_run(struct rp_job *j)
{
    atomic_store(&gate.entered, true);
    pthread_mutex_lock(&gate.lock);
    while (!gate.open)
        pthread_cond_wait(&gate.cond, &gate.lock);
    pthread_mutex_unlock(&gate.lock);
    j->result = RP_OK;
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.lock);
    gate.open = true;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
}

static void gate_wait_entered(void)
{
    for (int i = 0; i < POLL_MAX && !atomic_load(&gate.entered); i++)
        usleep(POLL_US);
    cr_assert(atomic_load(&gate.entered), "the worker never started the gated job");
}

struct counted {
    struct rp_job job;
    int *done;
};

static void counted_run(struct rp_job *j)
{
    j->result = RP_OK;
}

static void counted_done(struct rp_job *j)
{
    struct counted *c = (struct counted *)j;
    (*c->done)++;
}

/* A pool under test and a loop of the test's own with its port. */
struct pool {
    struct rp_workers *w;
    uv_loop_t loop;
    struct rp_job_port port;
};

static void pool_up(struct pool *p, const struct rp_workers_opts *o)
{
    cr_assert_eq(rp_workers_start(&p->w, o), RP_OK);
    cr_assert_eq(uv_loop_init(&p->loop), 0);
    cr_assert_eq(rp_job_port_init(&p->port, &p->loop), RP_OK);
}

/* The one worker busy with a job held at the gate: what is submitted next queues. */
static void hold_worker(struct pool *p, struct counted *blocker, int *done)
{
    *blocker = (struct counted){.job = {.run = gated_run, .done = counted_done}, .done = done};
    cr_assert_eq(rp_workers_submit(p->w, &blocker->job, &p->port), RP_OK);
    gate_wait_entered();
}

static bool port_closed;
static void on_port_closed(struct rp_job_port *p)
{
    (void)p;
    port_closed = true;
}

Test(workers, full_queue_is_refused_and_nothing_is_lost)
{
    struct rp_workers_opts o = {.count = 1, .queue_cap = SMALL_CAP, .pin = false};
    struct pool p;
    pool_up(&p, &o);
    struct rp_workers *w = p.w;
    int64_t rej0 = metric("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"rejected\"");

    int done = 0;
    struct counted blocker;
    hold_worker(&p, &blocker, &done); /* the worker holds the blocker: its queue is empty again */

    struct counted jobs[SMALL_CAP + 1];
    for (int i = 0; i < SMALL_CAP; i++) {
        jobs[i] =
            (struct counted){.job = {.run = counted_run, .done = counted_done}, .done = &done};
        cr_assert_eq(rp_workers_submit(w, &jobs[i].job, &p.port), RP_OK, "job %d", i);
    }
    jobs[SMALL_CAP] =
        (struct counted){.job = {.run = counted_run, .done = counted_done}, .done = &done};
    cr_expect_eq(rp_workers_submit(w, &jobs[SMALL_CAP].job, &p.port), RP_E_QUEUE_FULL);
    cr_expect_eq(metric("raproxy_worker_queue_depth", RP_METRIC_GAUGE, "worker=\"0\""), SMALL_CAP);
    cr_expect_eq(
        metric("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"rejected\"") - rej0, 1);

    gate_open();
    port_closed = false;
    rp_job_port_close(&p.port, on_port_closed); /* closes only after the 5 accepted came back */
    uv_run(&p.loop, UV_RUN_DEFAULT);
    cr_expect(port_closed);
    cr_expect_eq(done, SMALL_CAP + 1, "every accepted job came back, the refused one did not");
    cr_assert_eq(uv_loop_close(&p.loop), 0);
    rp_workers_stop(w);
}

struct stopper {
    struct rp_workers *w;
};

static void *stop_main(void *arg)
{
    rp_workers_stop(((struct stopper *)arg)->w);
    return NULL;
}

Test(workers, stop_runs_queued_jobs_and_delivers_them)
{
    struct rp_workers_opts o = {.count = 1, .queue_cap = STOP_POOL, .pin = false};
    struct pool p;
    pool_up(&p, &o);
    struct rp_workers *w = p.w;

    int done = 0, accepted = 0;
    struct counted blocker;
    hold_worker(&p, &blocker, &done);
    static struct counted jobs[STOP_POOL];
    for (int i = 0; i < STOP_POOL; i++)
        jobs[i] =
            (struct counted){.job = {.run = counted_run, .done = counted_done}, .done = &done};
    for (; accepted < STOP_BACKLOG; accepted++)
        cr_assert_eq(rp_workers_submit(w, &jobs[accepted].job, &p.port), RP_OK);

    /* Stop while the worker is held: it must refuse new jobs yet finish the backlog. Keep
     * submitting until the refusal shows (bounded by the pool). */
    struct stopper s = {w};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, stop_main, &s), 0);
    int rc = RP_OK;
    while (accepted < STOP_POOL) {
        rc = rp_workers_submit(w, &jobs[accepted].job, &p.port);
        if (rc != RP_OK)
            break;
        accepted++;
        usleep(POLL_US);
    }
    cr_expect_eq(rc, RP_E_SHUTDOWN, "submit during stop: %s", rp_err_name(rc));
    gate_open();
    rp_job_port_close(&p.port, NULL);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    cr_expect_eq(done, accepted + 1, "queued jobs delivered after stop (%d of %d)", done,
                 accepted + 1);
    cr_assert_eq(uv_loop_close(&p.loop), 0);
}

Test(workers, port_close_waits_for_jobs_in_flight)
{
    struct rp_workers_opts o = {.count = 1, .queue_cap = 8, .pin = false};
    struct pool p;
    pool_up(&p, &o);
    struct rp_workers *w = p.w;
    int done = 0;
    struct counted blocker;
    hold_worker(&p, &blocker, &done);
    port_closed = false;
    rp_job_port_close(&p.port, on_port_closed);
    uv_run(&p.loop, UV_RUN_NOWAIT);
    cr_expect_not(port_closed, "closed with a job still running");
    gate_open();
    uv_run(&p.loop, UV_RUN_DEFAULT);
    cr_expect(port_closed);
    cr_expect_eq(done, 1);
    cr_assert_eq(uv_loop_close(&p.loop), 0);
    rp_workers_stop(w);
}

Test(workers, refuses_jobs_without_callbacks)
{
    struct rp_workers *w;
    struct rp_workers_opts o = {.count = 1, .queue_cap = 1, .pin = false};
    cr_assert_eq(rp_workers_start(&w, &o), RP_OK);
    struct rp_job_port port;
    struct rp_job j = {.run = counted_run};
    cr_expect_eq(rp_workers_submit(w, &j, &port), RP_E_INVAL);
    rp_workers_stop(w);
}

/* ---- the guard sees signatures on loop threads, not on workers ---- */

static struct rp_privkey *sign_key;
static const uint8_t sign_data[] = "protected part";

static void sign_run(struct rp_job *j)
{
    uint8_t sig[RP_SIG_MAX];
    size_t n;
    j->result = rp_privkey_sign(sign_key, RP_SIG_ECDSA_SHA256, sign_data, sizeof sign_data, sig,
                                sizeof sig, &n);
}

static void sign_done(struct rp_job *j)
{
    cr_expect_eq(j->result, RP_OK);
    rp_job_port_close(j->port, NULL);
}

Test(workers, guard_counts_a_sign_on_the_loop_thread_and_none_on_workers)
{
    char *dir = rpt_tmpdir();
    char key[600], cmd[800];
    snprintf(key, sizeof key, "%s/k.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
             "-out %s 2>/dev/null",
             key);
    const char *argv[] = {"sh", "-c", cmd, NULL};
    cr_assert_eq(rpt_run(argv, 60000, NULL), 0);
    cr_assert_eq(rp_privkey_load_pem(key, &sign_key), RP_OK);

    struct rp_workers_opts o = {.count = 1, .queue_cap = 4, .pin = true};
    struct pool p;
    pool_up(&p, &o);
    struct rp_workers *w = p.w;
    rp_guard_mark_loop_thread();
    unsigned long before = rp_guard_violations();

    struct rp_job j = {.run = sign_run, .done = sign_done};
    cr_assert_eq(rp_workers_submit(w, &j, &p.port), RP_OK);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    cr_expect_eq(rp_guard_violations(), before, "sign on a worker is not a violation");

    sign_run(&j); /* the mistake the guard exists for */
    cr_expect_eq(j.result, RP_OK);
    cr_expect_eq(rp_guard_violations(), before + 1);

    cr_assert_eq(uv_loop_close(&p.loop), 0);
    rp_workers_stop(w);
    rp_privkey_free(sign_key);
    rpt_rmdir(dir);
    free(dir);
}

/* ---- classes, deadline, batches ---- */

struct ordered {
    struct rp_job job;
    int id;
    int *order, *n; /* run order, filled on the worker (one worker: no race) */
};

static void ordered_run(struct rp_job *j)
{
    struct ordered *o = (struct ordered *)j;
    o->order[(*o->n)++] = o->id;
    j->result = RP_OK;
}

static void ordered_done(struct rp_job *j)
{
    (void)j;
}

Test(workers, finishing_work_overtakes_queued_new_work)
{
    struct rp_workers_opts o = {.count = 1, .queue_cap = 64, .pin = false};
    struct pool p;
    pool_up(&p, &o);
    struct rp_workers *w = p.w;
    int done = 0;
    struct counted blocker;
    hold_worker(&p, &blocker, &done);
    /* five new requests queue up, then a certConf arrives */
    int order[8], n = 0;
    struct ordered jobs[6];
    for (int i = 0; i < 6; i++) {
        jobs[i] = (struct ordered){
            .job = {.run = ordered_run, .done = ordered_done}, .id = i, .order = order, .n = &n};
        jobs[i].job.cls = i == 5 ? RP_JOB_FINISH : RP_JOB_NEW;
        cr_assert_eq(rp_workers_submit(w, &jobs[i].job, &p.port), RP_OK);
    }
    gate_open();
    rp_job_port_close(&p.port, NULL);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    cr_assert_eq(n, 6);
    cr_expect_eq(order[0], 5, "the finishing job ran first, not %d", order[0]);
    for (int i = 1; i < 6; i++)
        cr_expect_eq(order[i], i - 1, "new work keeps its order");
    cr_assert_eq(uv_loop_close(&p.loop), 0);
    rp_workers_stop(w);
}

/* The expected wait (jobs ahead x the cost of a job, 1 ms before any job finished) decides,
 * long before the count cap: with 20 ms, about 20 new jobs wait behind a busy worker; work
 * that finishes a transaction gets twice that. Without a deadline the count cap alone. */
static int fill_until_refused(uint32_t queue_ms, enum rp_job_class cls, int64_t *deadline_refusals)
{
    struct rp_workers_opts o = {.count = 1, .queue_cap = 1000, .queue_ms = queue_ms};
    struct pool p;
    pool_up(&p, &o);
    struct rp_workers *w = p.w;
    int64_t d0 = metric("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"deadline\"");
    gate.open = false; /* closed again: one gate serves the three rounds */
    atomic_store(&gate.entered, false);
    int done = 0;
    struct counted blocker;
    hold_worker(&p, &blocker, &done);
    static struct counted jobs[1001];
    int accepted = 0, rc = RP_OK;
    while (accepted < 1001) {
        jobs[accepted] =
            (struct counted){.job = {.run = counted_run, .done = counted_done}, .done = &done};
        jobs[accepted].job.cls = cls;
        if ((rc = rp_workers_submit(w, &jobs[accepted].job, &p.port)) != RP_OK)
            break;
        accepted++;
    }
    cr_expect_eq(rc, RP_E_QUEUE_FULL);
    *deadline_refusals =
        metric("raproxy_worker_jobs_total", RP_METRIC_COUNTER, "result=\"deadline\"") - d0;
    gate_open();
    rp_job_port_close(&p.port, NULL);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    cr_expect_eq(done, accepted + 1, "every accepted job came back");
    cr_assert_eq(uv_loop_close(&p.loop), 0);
    rp_workers_stop(w);
    return accepted;
}

Test(workers, expected_wait_over_the_deadline_is_refused_before_the_count_cap)
{
    int64_t late = 0;
    int n = fill_until_refused(20, RP_JOB_NEW, &late);
    cr_expect(n >= 15 && n <= 25, "new work accepted up to ~20 ms of expected wait: %d", n);
    cr_expect_eq(late, 1, "counted as a deadline refusal");
    n = fill_until_refused(20, RP_JOB_FINISH, &late);
    cr_expect(n >= 35 && n <= 45, "finishing work up to twice the deadline: %d", n);
    n = fill_until_refused(0, RP_JOB_NEW, &late);
    cr_expect_eq(n, 1000, "no deadline: the count cap only");
    cr_expect_eq(late, 0);
}

static atomic_int ran_count;

static void count_run(struct rp_job *j)
{
    atomic_fetch_add(&ran_count, 1);
    j->result = RP_OK;
}

/* Jobs that finish while the loop is busy come back in one wake-up, none lost. */
Test(workers, a_batch_of_finished_jobs_is_one_wakeup)
{
    struct rp_workers_opts o = {.count = 2, .queue_cap = 64, .pin = false};
    struct pool p;
    pool_up(&p, &o);
    struct rp_workers *w = p.w;
    int done = 0;
    struct counted jobs[40];
    for (int i = 0; i < 40; i++) {
        jobs[i] = (struct counted){.job = {.run = count_run, .done = counted_done}, .done = &done};
        cr_assert_eq(rp_workers_submit(w, &jobs[i].job, &p.port), RP_OK);
    }
    for (int i = 0; i < POLL_MAX && atomic_load(&ran_count) < 40; i++)
        usleep(POLL_US);
    cr_assert_eq(atomic_load(&ran_count), 40);
    usleep(10000); /* the last deliveries are in the port's list */
    uv_run(&p.loop, UV_RUN_NOWAIT);
    cr_expect_eq(done, 40);
    cr_expect_eq(p.port.wakeups, 1, "%llu wake-ups for 40 jobs",
                 (unsigned long long)p.port.wakeups);
    rp_job_port_close(&p.port, NULL);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&p.loop), 0);
    rp_workers_stop(w);
}
