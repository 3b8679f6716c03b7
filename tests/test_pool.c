/* Blocking work offloaded to the pool: urt_to_thread and owned jobs, on
 * both completion paths (ring-less MSG_RING, and workers' own rings). */
#include <errno.h>
#include <sched.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <urt.h>

#define MS 1000000ull

/* Which completion path the current group runs on. */
static unsigned pool_flags;

static urt_loop *new_loop(unsigned threads)
{
	struct urt_pool_opts po = { .threads = threads, .flags = pool_flags };
	struct urt_loop_opts o = { .pool_opts = &po };
	urt_loop *loop;

	assert_int_equal(urt_loop_create(&loop, &o), 0);
	return loop;
}

/* ---- fn runs on a pool thread and its result reaches the caller ---- */

struct square {
	long in, out;
	pthread_t ran_on;
};

static void square_fn(struct square *s)
{
	s->out = s->in * s->in;
	s->ran_on = pthread_self();
}

static int square_task(void *arg)
{
	struct square s = { .in = 12 };
	int ret = urt_to_thread(square_fn, &s);

	assert_int_equal(ret, 0);
	assert_int_equal(s.out, 144);
	assert_false(pthread_equal(s.ran_on, pthread_self()));
	*(int *)arg = 1;
	return 0;
}

static void test_result_reaches_caller(void **state)
{
	urt_loop *loop = new_loop(2);
	int done = 0;

	(void)state;
	assert_int_equal(urt_spawn(loop, NULL, square_task, &done), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(done, 1);
	/* Forced worker rings, or the kernel's choice (ring-less on 6.13+). */
	if (pool_flags & URT_POOL_WORKER_RINGS)
		assert_int_equal(urt_pool_uses_worker_rings(urt_loop_pool(loop)), 1);
	else
		assert_in_range(urt_pool_uses_worker_rings(urt_loop_pool(loop)), 0, 1);
	urt_loop_destroy(loop);
}

/* ---- 1,000 offloaded 5 ms sleeps while a ticker keeps ticking ---- */

struct nap {
	unsigned us;
	atomic_int *ran;
};

static void nap_fn(struct nap *n)
{
	usleep(n->us);
	atomic_fetch_add(n->ran, 1);
}

static int nap_task(void *arg)
{
	struct nap n = { .us = 5000, .ran = arg };

	return urt_to_thread(nap_fn, &n);
}

struct ticker {
	int ticks;
	uint64_t worst_late;
	atomic_int *ran;
	int target;
};

static int ticker_task(void *arg)
{
	struct ticker *tk = arg;

	while (atomic_load(tk->ran) < tk->target) {
		uint64_t t0 = urt_now_ns(), late;

		assert_int_equal(urt_sleep_ns(MS), 0);
		late = urt_now_ns() - t0 - MS;
		if (late > tk->worst_late)
			tk->worst_late = late;
		tk->ticks++;
	}
	return 0;
}

static void test_thousand_offloads_ticker_ticks(void **state)
{
	urt_loop *loop = new_loop(8);
	atomic_int ran = 0;
	struct ticker tk = { .ran = &ran, .target = 1000 };
	urt_task *tasks[1000];
	int res;

	(void)state;
	assert_int_equal(urt_spawn(loop, NULL, ticker_task, &tk), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(urt_spawn(loop, &tasks[i], nap_task, &ran), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(urt_join(tasks[i], &res), 0);
		assert_int_equal(res, 0);
	}
	assert_int_equal(atomic_load(&ran), 1000);
	/* 1,000 x 5 ms on 8 threads: about 625 ms, so hundreds of ticks. A
	 * generous bound only: the loop never stalled for half a second. */
	assert_true(tk.ticks >= 50);
	assert_true(tk.worst_late < 500 * MS);
	print_message("ticker: %d ticks, worst lateness %.0f us\n", tk.ticks,
		      (double)tk.worst_late / 1e3);
	urt_loop_destroy(loop);
}

/* ---- cancel while the job runs: the task stays parked until fn returns ---- */

struct slow {
	atomic_int finished;
	int seen_finished;
	int to_thread_ret;
	int next_wait_ret;
};

static void slow_fn(struct slow *s)
{
	usleep(50000);
	atomic_store(&s->finished, 1);
}

static int slow_task(void *arg)
{
	struct slow *s = arg;

	s->to_thread_ret = urt_to_thread(slow_fn, s);
	s->seen_finished = atomic_load(&s->finished);
	s->next_wait_ret = urt_sleep_ns(MS);
	return 0;
}

static int cancel_after_10ms(void *arg)
{
	assert_int_equal(urt_sleep_ns(10 * MS), 0);
	assert_int_equal(urt_cancel(arg), 0);
	return 0;
}

static void test_cancel_running_job(void **state)
{
	urt_loop *loop = new_loop(1);
	struct slow s = { 0 };
	urt_task *t;

	(void)state;
	assert_int_equal(urt_spawn(loop, &t, slow_task, &s), 0);
	assert_int_equal(urt_spawn(loop, NULL, cancel_after_10ms, t), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(s.to_thread_ret, 0);     /* fn ran to its end */
	assert_int_equal(s.seen_finished, 1);     /* before the task resumed */
	assert_int_equal(s.next_wait_ret, -ECANCELED);
	assert_int_equal(urt_join(t, NULL), 0);
	urt_loop_destroy(loop);
}

/* ---- owned jobs: deadline, destructor once and only after fn ---- */

struct owned {
	atomic_int fn_started;
	atomic_int fn_done;
	atomic_int dtor_runs;
	int dtor_saw_fn_done;
	unsigned us;
};

static void owned_fn(struct owned *o)
{
	atomic_store(&o->fn_started, 1);
	usleep(o->us);
	atomic_store(&o->fn_done, 1);
}

static void owned_dtor(struct owned *o)
{
	o->dtor_saw_fn_done = atomic_load(&o->fn_done);
	atomic_fetch_add(&o->dtor_runs, 1);
}

struct owned_case {
	struct owned *o;
	uint64_t timeout;
	int ret;
	int dtor_runs_at_return;
	uint64_t waited;
};

static int owned_task(void *arg)
{
	struct owned_case *c = arg;
	uint64_t t0 = urt_now_ns();

	c->ret = urt_job_run(owned_fn, c->o, owned_dtor, c->timeout);
	c->waited = urt_now_ns() - t0;
	c->dtor_runs_at_return = atomic_load(&c->o->dtor_runs);
	return 0;
}

static void test_owned_job_deadline(void **state)
{
	urt_loop *loop = new_loop(1);
	struct owned *o = calloc(1, sizeof(*o));
	struct owned_case c = { .o = o, .timeout = 10 * MS };

	(void)state;
	o->us = 200000;
	assert_int_equal(urt_spawn(loop, NULL, owned_task, &c), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(c.ret, -ETIMEDOUT);
	assert_true(c.waited >= 10 * MS);
	assert_true(c.waited < 150 * MS);   /* did not wait for fn */
	assert_int_equal(c.dtor_runs_at_return, 0);
	/* Destroy waits for the running job; then its destructor runs. On a
	 * loaded machine the worker may not have started the job yet: destroy
	 * then drops it, and the destructor runs without fn. */
	urt_loop_destroy(loop);
	assert_int_equal(atomic_load(&o->dtor_runs), 1);
	assert_int_equal(o->dtor_saw_fn_done, atomic_load(&o->fn_started));
	assert_int_equal(atomic_load(&o->fn_done), atomic_load(&o->fn_started));
	free(o);
}

static void test_owned_job_completes(void **state)
{
	urt_loop *loop = new_loop(1);
	struct owned *o = calloc(1, sizeof(*o));
	struct owned_case c = { .o = o, .timeout = 5000 * MS };

	(void)state;
	o->us = 1000;
	assert_int_equal(urt_spawn(loop, NULL, owned_task, &c), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(c.ret, 0);
	assert_int_equal(atomic_load(&o->fn_done), 1);
	urt_loop_destroy(loop);
	/* Returned 0: arg is the caller's again, no destructor. */
	assert_int_equal(atomic_load(&o->dtor_runs), 0);
	free(o);
}

static int owned_cancel_task(void *arg)
{
	struct owned_case *c = arg;

	c->ret = urt_job_run(owned_fn, c->o, owned_dtor, 0);
	c->dtor_runs_at_return = atomic_load(&c->o->dtor_runs);
	return 0;
}

struct cancel_once_started {
	struct owned *o;
	urt_task *t;
};

/* Cancel t once its job runs: a job still queued when the task is
 * cancelled would be dropped at destroy without running, which a loaded
 * machine can make happen at any fixed delay. */
static int cancel_once_started(void *arg)
{
	struct cancel_once_started *c = arg;

	while (!atomic_load(&c->o->fn_started))
		assert_int_equal(urt_sleep_ns(MS), 0);
	assert_int_equal(urt_cancel(c->t), 0);
	return 0;
}

static void test_owned_job_cancelled(void **state)
{
	urt_loop *loop = new_loop(1);
	struct owned *o = calloc(1, sizeof(*o));
	struct owned_case c = { .o = o };
	struct cancel_once_started cs = { .o = o };
	urt_task *t;

	(void)state;
	o->us = 100000;
	assert_int_equal(urt_spawn(loop, &t, owned_cancel_task, &c), 0);
	cs.t = t;
	assert_int_equal(urt_spawn(loop, NULL, cancel_once_started, &cs), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(c.ret, -ECANCELED);
	assert_int_equal(c.dtor_runs_at_return, 0);
	assert_int_equal(urt_join(t, NULL), 0);
	urt_loop_destroy(loop);
	assert_int_equal(atomic_load(&o->dtor_runs), 1);
	assert_int_equal(o->dtor_saw_fn_done, 1);
	free(o);
}

/* ---- shutdown with queued and running jobs ---- */

struct queued {
	int ret;
	atomic_int *ran;
	atomic_int *started;
};

static void busy_fn(struct queued *q)
{
	atomic_fetch_add(q->started, 1);
	usleep(30000);
	atomic_fetch_add(q->ran, 1);
}

static int queued_task(void *arg)
{
	struct queued *q = arg;

	q->ret = urt_to_thread(busy_fn, q);
	return 0;
}

struct stopper {
	urt_loop *loop;
	atomic_int *started;
	int errors;      /* calls that failed; asserted after the run */
};

/* Stop the loop once the worker has started a job (not after a fixed
 * time: on a loaded machine the worker may not have run yet). */
static int stop_once_started(void *arg)
{
	struct stopper *st = arg;

	while (atomic_load(st->started) == 0)
		st->errors += urt_sleep_ns(1 * MS) != 0;
	st->errors += urt_loop_stop(st->loop) != 0;
	return 0;
}

static void test_shutdown_queued_and_running(void **state)
{
	urt_loop *loop = new_loop(1);
	atomic_int ran = 0, started = 0;
	struct stopper st = { loop, &started, 0 };
	struct queued q[6];
	int ran_jobs = 0, dropped = 0;

	(void)state;
	for (int i = 0; i < 6; i++) {
		q[i] = (struct queued){ .ret = 1, .ran = &ran, .started = &started };
		assert_int_equal(urt_spawn(loop, NULL, queued_task, &q[i]), 0);
	}
	assert_int_equal(urt_spawn(loop, NULL, stop_once_started, &st), 0);
	/* One worker: once it runs a job (30 ms), the other five are queued. */
	assert_int_equal(urt_loop_run(loop), -EINTR);
	urt_loop_destroy(loop);
	assert_int_equal(st.errors, 0);
	for (int i = 0; i < 6; i++) {
		if (q[i].ret == 0)
			ran_jobs++;
		else if (q[i].ret == -ECANCELED)
			dropped++;
	}
	/* The running job was waited for; every queued one was dropped. */
	assert_int_equal(ran_jobs, atomic_load(&ran));
	assert_true(ran_jobs >= 1);
	assert_int_equal(ran_jobs + dropped, 6);
	assert_true(dropped >= 1);
}

/* ---- errors ---- */

static void nop_fn(int *p)
{
	(*p)++;
}

static void test_outside_task(void **state)
{
	int x = 0;

	(void)state;
	assert_int_equal(urt_to_thread(nop_fn, &x), -EPERM);
	assert_int_equal(urt_job_run(nop_fn, &x, NULL, 0), -EPERM);
	assert_int_equal(x, 0);
	assert_int_equal(urt_pool_destroy(NULL), -EINVAL);
	assert_int_equal(urt_pool_uses_worker_rings(NULL), -EINVAL);
	assert_int_equal(urt_pool_create(NULL, NULL), -EINVAL);
}

static int after_cancel_task(void *arg)
{
	int x = 0;

	(void)arg;
	assert_int_equal(urt_cancel(urt_current_task()), 0);
	assert_int_equal(urt_to_thread(nop_fn, &x), -ECANCELED);
	assert_int_equal(x, 0);
	return 0;
}

static void test_cancelled_before_call(void **state)
{
	(void)state;
	assert_int_equal(urt_run(after_cancel_task, NULL, NULL), 0);
}

/* ---- a pool shared by two loops ---- */

struct shared_arg {
	urt_pool *pool;
	int sum;
};

static void add_fn(int *p)
{
	*p += 1;
}

static int add_task(void *arg)
{
	int *sum = arg;

	for (int i = 0; i < 100; i++) {
		int x = i;

		assert_int_equal(urt_to_thread(add_fn, &x), 0);
		*sum += x;
	}
	return 0;
}

static void *loop_thread(void *arg)
{
	struct shared_arg *a = arg;
	struct urt_loop_opts o = { .pool = a->pool };
	urt_loop *loop;

	assert_int_equal(urt_loop_create(&loop, &o), 0);
	assert_ptr_equal(urt_loop_pool(loop), a->pool);
	for (int i = 0; i < 4; i++)
		assert_int_equal(urt_spawn(loop, NULL, add_task, &a->sum), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	urt_loop_destroy(loop);
	return NULL;
}

static void test_shared_pool(void **state)
{
	struct urt_pool_opts po = { .threads = 2, .flags = pool_flags };
	struct shared_arg a[2];
	pthread_t th[2];
	urt_pool *pool;

	(void)state;
	assert_int_equal(urt_pool_create(&pool, &po), 0);
	for (int i = 0; i < 2; i++) {
		a[i] = (struct shared_arg){ .pool = pool };
		assert_int_equal(pthread_create(&th[i], NULL, loop_thread, &a[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		/* 4 tasks x sum over i of (i + 1) for i < 100 */
		assert_int_equal(a[i].sum, 4 * 5050);
	}
	assert_int_equal(urt_pool_destroy(pool), 0);
}

/* ---- loops that come and go on a shared pool, some with jobs out ---- */

#define CG_THREADS 3
#define CG_ROUNDS 9   /* per thread; every third is stopped with jobs out */
#define CG_TASKS 50
#define CG_JOBS 4     /* per task */

struct cg_job {
	long in, out;
};

struct cg_round {
	atomic_int done;  /* jobs whose right answer came back */
	atomic_int wrong; /* answers that were not */
	atomic_int other; /* errors other than a drop at destroy */
};

static void cg_fn(struct cg_job *j)
{
	j->out = 3 * j->in + 1;
}

static int cg_task(void *arg)
{
	struct cg_round *r = arg;

	for (long i = 0; i < CG_JOBS; i++) {
		struct cg_job j = { .in = i };
		int ret = urt_to_thread(cg_fn, &j);

		if (ret == -ECANCELED)
			return 0; /* dropped unstarted, or cancelled: the destroy */
		if (ret != 0) {
			atomic_fetch_add(&r->other, 1);
			return ret;
		}
		if (j.out != 3 * i + 1)
			atomic_fetch_add(&r->wrong, 1);
		else
			atomic_fetch_add(&r->done, 1);
	}
	return 0;
}

static int cg_stopper(void *arg)
{
	(void)urt_sleep_ns(50000);
	return urt_loop_stop(arg);
}

struct cg_thread {
	urt_pool *pool;
	struct cg_round *rounds;
	int run_ret[CG_ROUNDS];
	int create_ret[CG_ROUNDS];
};

static void *cg_thread_main(void *arg)
{
	struct cg_thread *c = arg;

	for (int round = 0; round < CG_ROUNDS; round++) {
		struct urt_loop_opts o = { .pool = c->pool,
					   .flags = (round & 1) ? URT_LOOP_NO_SPIN : 0 };
		urt_loop *loop;

		c->create_ret[round] = urt_loop_create(&loop, &o);
		if (c->create_ret[round])
			continue;
		for (int i = 0; i < CG_TASKS; i++)
			(void)urt_spawn(loop, NULL, cg_task, &c->rounds[round]);
		if (round % 3 == 2)
			(void)urt_spawn(loop, NULL, cg_stopper, loop);
		c->run_ret[round] = urt_loop_run(loop);
		/* A stopped loop goes with jobs of its tasks still out: queued
		 * ones are dropped, running ones waited for, while the pool's
		 * workers go on with the other loops' jobs. */
		urt_loop_destroy(loop);
	}
	return NULL;
}

static void test_loops_come_and_go_on_shared_pool(void **state)
{
	struct urt_pool_opts po = { .threads = 3, .flags = pool_flags };
	struct cg_thread c[CG_THREADS];
	pthread_t th[CG_THREADS];
	urt_pool *pool;

	(void)state;
	assert_int_equal(urt_pool_create(&pool, &po), 0);
	for (int i = 0; i < CG_THREADS; i++) {
		c[i] = (struct cg_thread){ .pool = pool };
		c[i].rounds = calloc(CG_ROUNDS, sizeof(*c[i].rounds));
		assert_non_null(c[i].rounds);
		assert_int_equal(pthread_create(&th[i], NULL, cg_thread_main, &c[i]), 0);
	}
	/* Every thread is joined before the first check, which would leave
	 * the test (and these frames) with threads still using them. */
	for (int i = 0; i < CG_THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < CG_THREADS; i++) {
		for (int round = 0; round < CG_ROUNDS; round++) {
			struct cg_round *r = &c[i].rounds[round];

			assert_int_equal(c[i].create_ret[round], 0);
			assert_int_equal(atomic_load(&r->wrong), 0);
			assert_int_equal(atomic_load(&r->other), 0);
			if (round % 3 == 2 && c[i].run_ret[round] == -EINTR) {
				/* Stopped: no more jobs than asked. */
				assert_true(atomic_load(&r->done) <= CG_TASKS * CG_JOBS);
			} else {
				/* Ran to its end (a stop asked in the turn the
				 * last task ended returns 0): every job back. */
				assert_int_equal(c[i].run_ret[round], 0);
				assert_int_equal(atomic_load(&r->done), CG_TASKS * CG_JOBS);
			}
		}
		free(c[i].rounds);
	}
	/* Every loop is gone and none of its jobs is left with the pool. */
	assert_int_equal(urt_pool_destroy(pool), 0);
}

static void test_pool_busy_while_used(void **state)
{
	struct urt_loop_opts o = { 0 };
	urt_loop *loop;
	urt_pool *pool;

	(void)state;
	assert_int_equal(urt_pool_create(&pool, NULL), 0);
	o.pool = pool;
	assert_int_equal(urt_loop_create(&loop, &o), 0);
	assert_int_equal(urt_pool_destroy(pool), -EBUSY);
	urt_loop_destroy(loop);
	assert_int_equal(urt_pool_destroy(pool), 0);
}

/* ---- under pressure: jobs that block far longer than their deadlines ---- */

struct pressure {
	atomic_int fn_done;
	atomic_int dtor_runs;
	atomic_int dtor_before_fn; /* a destructor that ran before fn ended */
};

static void pressure_fn(struct pressure *p)
{
	usleep(300000);
	atomic_fetch_add(&p->fn_done, 1);
}

static atomic_int pressure_dtor_total;

static void pressure_dtor(struct pressure *p)
{
	if (!atomic_load(&p->fn_done))
		atomic_fetch_add(&p->dtor_before_fn, 1);
	atomic_fetch_add(&p->dtor_runs, 1);
	atomic_fetch_add(&pressure_dtor_total, 1);
	free(p);
}

static int pressure_task(void *arg)
{
	int *timeouts = arg;
	struct pressure *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	/* 5 ms against 300 ms of work: the wait ends, the work does not. */
	if (urt_job_run(pressure_fn, p, pressure_dtor, 5 * MS) == -ETIMEDOUT)
		(*timeouts)++;
	return 0;
}

static void test_owned_jobs_under_pressure(void **state)
{
	urt_loop *loop = new_loop(2);
	int timeouts = 0;
	uint64_t t0 = urt_now_ns(), ran;

	(void)state;
	atomic_store(&pressure_dtor_total, 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(urt_spawn(loop, NULL, pressure_task, &timeouts), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	ran = urt_now_ns() - t0;
	assert_int_equal(timeouts, 8);
	assert_true(ran < 250 * MS); /* the tasks did not wait for the work */
	/* Destroy waits for all 8 (two threads: 4 x 300 ms), then frees each
	 * argument exactly once, after its fn; ASan sees no use after free and
	 * no leak. */
	urt_loop_destroy(loop);
	assert_int_equal(atomic_load(&pressure_dtor_total), 8);
}

/* ---- a tiny CQ under sleeps, reads and offloaded jobs at once ---- */

struct flood {
	int fds[2];
	int done;
	int bad;
};

static int flood_reader(void *arg)
{
	struct flood *f = arg;
	char c = 0;

	if (urt_read(f->fds[0], &c, 1, -1) != 1 || c != 'f')
		f->bad++;
	f->done++;
	return 0;
}

static int flood_offloader(void *arg)
{
	struct flood *f = arg;
	int x = 41;

	if (urt_to_thread(nop_fn, &x) != 0 || x != 42)
		f->bad++;
	f->done++;
	return 0;
}

static int flood_sleeper(void *arg)
{
	struct flood *f = arg;

	if (urt_sleep_ns(MS) != 0)
		f->bad++;
	f->done++;
	return 0;
}

static void test_tiny_cq_mixed(void **state)
{
	struct urt_pool_opts po = { .threads = 2, .flags = pool_flags };
	struct urt_loop_opts o = { .ring_entries = 4, .cq_entries = 8, .pool_opts = &po };
	struct flood f[300];
	struct urt_loop_stats st;
	urt_loop *loop;
	int done = 0, bad = 0;

	(void)state;
	assert_int_equal(urt_loop_create(&loop, &o), 0);
	for (int i = 0; i < 300; i++) {
		f[i] = (struct flood){ .done = 0 };
		assert_int_equal(pipe(f[i].fds), 0);
		assert_int_equal(urt_spawn(loop, NULL, flood_reader, &f[i]), 0);
		assert_int_equal(urt_spawn(loop, NULL, flood_offloader, &f[i]), 0);
		assert_int_equal(urt_spawn(loop, NULL, flood_sleeper, &f[i]), 0);
	}
	/* Every reader's byte is there before the loop runs: 300 reads, 300
	 * jobs (their wake-up messages) and the sleepers' timeout complete
	 * together into 8 CQEs. */
	for (int i = 0; i < 300; i++)
		assert_int_equal(write(f[i].fds[1], "f", 1), 1);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_loop_stats(loop, &st), 0);
	urt_loop_destroy(loop);
	for (int i = 0; i < 300; i++) {
		done += f[i].done;
		bad += f[i].bad;
		close(f[i].fds[0]);
		close(f[i].fds[1]);
	}
	assert_int_equal(bad, 0);
	assert_int_equal(done, 900);
	assert_true(st.messages >= 300);
	assert_int_equal(st.sqes + st.more + st.messages, st.cqes + st.settled + st.inflight);
}

/* ---- jobs offloaded in one turn: every idle worker takes one ---- */

/* A loop whose own pool of threads has started and gone to sleep. */
static urt_loop *idle_pool_loop(unsigned threads)
{
	urt_loop *loop = new_loop(threads);

	assert_non_null(urt_loop_pool(loop));
	usleep(50 * 1000); /* past the workers' spin: they sleep */
	return loop;
}

struct spread {
	_Atomic unsigned running, most;
	unsigned ms;
	int errs;
};

static void spread_job(struct spread *s)
{
	unsigned now = atomic_fetch_add(&s->running, 1) + 1, most = atomic_load(&s->most);

	while (now > most && !atomic_compare_exchange_weak(&s->most, &most, now))
		;
	usleep(s->ms * 1000u);
	atomic_fetch_sub(&s->running, 1);
}

static int spread_task(void *arg)
{
	struct spread *s = arg;

	if (urt_to_thread(spread_job, s) != 0)
		s->errs++;
	return 0;
}

/* Eight 50 ms jobs offloaded in one turn to four sleeping workers: four run
 * at once (it was one: a push woke one worker per 16 jobs). */
static void test_same_turn_jobs_spread(void **state)
{
	struct spread s = { .ms = 50 };
	urt_loop *loop = idle_pool_loop(4);

	(void)state;
	for (int i = 0; i < 8; i++)
		assert_int_equal(urt_spawn(loop, NULL, spread_task, &s), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	urt_loop_destroy(loop);
	assert_int_equal(s.errs, 0);
	assert_int_equal(atomic_load(&s.most), 4);
}

struct pair {
	sem_t posted;
	int waited;
	atomic_bool long_done;
	bool long_done_seen;
};

static void pair_wait(struct pair *p)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 2;
	while ((p->waited = sem_timedwait(&p->posted, &ts)) != 0 && errno == EINTR)
		;
}

static void pair_post(struct pair *p)
{
	sem_post(&p->posted);
}

static int pair_a(void *arg)
{
	return urt_to_thread(pair_wait, (struct pair *)arg);
}

static int pair_b(void *arg)
{
	return urt_to_thread(pair_post, (struct pair *)arg);
}

/* A job that waits (up to 2 s) for a second job offloaded in the same
 * turn sees it start: it used to time out, the second job queued behind
 * it while the other workers slept. */
static void test_job_sees_sibling_start(void **state)
{
	struct pair p = { .waited = 1 };
	urt_loop *loop = idle_pool_loop(2);

	(void)state;
	assert_int_equal(sem_init(&p.posted, 0, 0), 0);
	assert_int_equal(urt_spawn(loop, NULL, pair_a, &p), 0);
	assert_int_equal(urt_spawn(loop, NULL, pair_b, &p), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	urt_loop_destroy(loop);
	assert_int_equal(p.waited, 0);
	sem_destroy(&p.posted);
}

/* Eight jobs in one turn on two idle workers; the first waits (up to 2 s)
 * until the other seven have ended. A worker may take several queued jobs
 * with one lock, but the ones it has not started are the other worker's
 * to take while it is held up: all seven end while the first waits. */
struct held {
	atomic_int ended;
	int seen;
};

static void held_first_job(struct held *h)
{
	uint64_t until = urt_now_ns() + 2000 * MS;

	while (atomic_load(&h->ended) < 7 && urt_now_ns() < until)
		usleep(100);
	h->seen = atomic_load(&h->ended);
}

static void held_other_job(struct held *h)
{
	atomic_fetch_add(&h->ended, 1);
}

static int held_first_task(void *arg)
{
	return urt_to_thread(held_first_job, (struct held *)arg);
}

static int held_other_task(void *arg)
{
	return urt_to_thread(held_other_job, (struct held *)arg);
}

static void test_held_jobs_not_stuck_behind_a_long_one(void **state)
{
	struct held h = { .seen = -1 };
	urt_loop *loop = idle_pool_loop(2);
	urt_task *t[8];
	int res;

	(void)state;
	atomic_store(&h.ended, 0);
	assert_int_equal(urt_spawn(loop, &t[0], held_first_task, &h), 0);
	for (int i = 1; i < 8; i++)
		assert_int_equal(urt_spawn(loop, &t[i], held_other_task, &h), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(urt_join(t[i], &res), 0);
		assert_int_equal(res, 0);
	}
	urt_loop_destroy(loop);
	assert_int_equal(h.seen, 7);
	assert_int_equal(atomic_load(&h.ended), 7);
}

static void short_job(struct pair *p)
{
	(void)p;
}

static void long_job(struct pair *p)
{
	usleep(200 * 1000);
	atomic_store(&p->long_done, true);
}

static int short_task(void *arg)
{
	struct pair *p = arg;
	int ret = urt_to_thread(short_job, p);

	p->long_done_seen = atomic_load(&p->long_done);
	return ret;
}

static int long_task(void *arg)
{
	return urt_to_thread(long_job, (struct pair *)arg);
}

/* One worker, a short job and a 200 ms one offloaded in one turn: the short
 * job's waiter resumes as soon as its job ends, not when the long one
 * behind it does (completions used to go out per batch of jobs). */
static void test_completion_as_job_ends(void **state)
{
	struct pair p = { 0 };
	urt_loop *loop = idle_pool_loop(1);
	urt_task *a, *b;
	int ra = 1, rb = 1;

	(void)state;
	assert_int_equal(urt_spawn(loop, &a, short_task, &p), 0);
	assert_int_equal(urt_spawn(loop, &b, long_task, &p), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_join(a, &ra), 0);
	assert_int_equal(urt_join(b, &rb), 0);
	urt_loop_destroy(loop);
	assert_int_equal(ra, 0);
	assert_int_equal(rb, 0);
	assert_false(p.long_done_seen);
	assert_true(atomic_load(&p.long_done));
}

/* ---- a loop that sleeps between jobs ---- */

/* The loop does not spin: nearly every completion finds it going to sleep,
 * or asleep, in the kernel, and a wake-up lost in that window would leave a
 * task parked for good (the test would hang). The worker spins, so it takes
 * each job at once, and the jobs' lengths vary, so that completions land at
 * every point of the loop's way to sleep. */
#define SLEEPY_JOBS 4000

struct sleepy {
	_Atomic unsigned ran;
	unsigned done;
};

static void sleepy_fn(struct sleepy *s)
{
	unsigned n = atomic_fetch_add(&s->ran, 1) % 97;

	for (volatile unsigned i = 0; i < n * 8; i++)
		;
}

static int sleepy_task(void *arg)
{
	struct sleepy *s = arg;

	for (int i = 0; i < SLEEPY_JOBS; i++) {
		int ret = urt_to_thread(sleepy_fn, s);

		if (ret)
			return ret;
		s->done++;
	}
	return 0;
}

static void test_loop_sleeps_between_jobs(void **state)
{
	struct urt_pool_opts po = { .threads = 1, .flags = pool_flags };
	struct urt_loop_opts o = { .pool_opts = &po, .flags = URT_LOOP_NO_SPIN };
	struct sleepy s = { 0 };
	urt_loop *loop;
	urt_task *t[2];
	int r[2] = { 1, 1 };

	(void)state;
	assert_int_equal(urt_loop_create(&loop, &o), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(urt_spawn(loop, &t[i], sleepy_task, &s), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(urt_join(t[i], &r[i]), 0);
		assert_int_equal(r[i], 0);
	}
	urt_loop_destroy(loop);
	assert_int_equal(s.done, 2 * SLEEPY_JOBS);
	assert_int_equal(atomic_load(&s.ran), 2 * SLEEPY_JOBS);
}

/* ---- a busy loop takes its jobs back without messages ---- */

#define BUSY_JOBS 100

struct busy {
	long in, sum;
	uint64_t nap_ns;  /* each job sleeps this long */
	bool over;
};

static void add_in_fn(struct busy *b)
{
	b->sum += b->in;
	if (b->nap_ns)
		nanosleep(&(struct timespec){ 0, (long)b->nap_ns }, NULL);
}

static int busy_offloader(void *arg)
{
	struct busy *b = arg;

	for (long i = 1; i <= BUSY_JOBS; i++) {
		int ret;

		b->in = i;
		ret = urt_to_thread(add_in_fn, b);
		if (ret)
			return ret;
	}
	b->over = true;
	return 0;
}

/* Keeps the loop busy: it never waits in the kernel while this task is
 * ready. sched_yield lets the worker run under valgrind, which runs one
 * thread at a time and may hand the CPU back to a thread that spins. */
static int busy_yielder(void *arg)
{
	const struct busy *b = arg;

	while (!b->over) {
		int ret = urt_yield();

		if (ret)
			return ret;
		sched_yield();
	}
	return 0;
}

/* A loop that never waits in the kernel (a task yields throughout) finds
 * each finished job on its own look at the finished list: no worker sends
 * it a message, so the ring sees no CQE at all, and each job is expected
 * and settled once. Then the same loop with nothing to do but wait, whose
 * destroy waits for the last message if one is still on its way. */
static void test_busy_loop_takes_jobs_without_messages(void **state)
{
	struct urt_pool_opts po = { .threads = 1, .flags = pool_flags };
	struct urt_loop_opts o = { .pool_opts = &po, .flags = URT_LOOP_NO_SPIN };
	struct busy b = { 0 };
	struct urt_loop_stats st;
	urt_loop *loop;

	(void)state;
	assert_int_equal(urt_loop_create(&loop, &o), 0);
	assert_int_equal(urt_spawn(loop, NULL, busy_offloader, &b), 0);
	assert_int_equal(urt_spawn(loop, NULL, busy_yielder, &b), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(b.sum, BUSY_JOBS * (BUSY_JOBS + 1) / 2);
	assert_int_equal(urt_loop_stats(loop, &st), 0);
	assert_int_equal(st.cqes, 0);
	assert_int_equal(st.messages, BUSY_JOBS);
	assert_int_equal(st.settled, BUSY_JOBS);
	assert_int_equal(st.inflight, 0);

	b = (struct busy){ 0 };
	assert_int_equal(urt_spawn(loop, NULL, busy_offloader, &b), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	urt_loop_destroy(loop);
	assert_int_equal(b.sum, BUSY_JOBS * (BUSY_JOBS + 1) / 2);
}

/* ---- more finished jobs than the finished list has slots ---- */

#define MANY_JOBS 700 /* the list has 256 slots: the rest go on its stack */

struct many {
	atomic_long ran;
	long out[MANY_JOBS];
};

struct many_arg {
	struct many *m;
	long i, res;
};

static void many_fn(struct many_arg *a)
{
	a->res = a->i * 3 + 1;
	atomic_fetch_add(&a->m->ran, 1);
}

static int many_offloader(void *arg)
{
	struct many_arg *a = arg;
	int ret = urt_to_thread(many_fn, a);

	if (ret)
		return ret;
	a->m->out[a->i] = a->res;
	return 0;
}

/*
 * A job counts itself before its worker puts it on the finished list, so
 * a count of 700 does not say that the list holds them all. Two jobs of a
 * second loop on the same pool, handed over once all 700 have run, do: a
 * worker takes its next job only after it has put its last one on its
 * loop's list, and these two block until released, so each of the two
 * workers takes one of them, and once both have started, both workers are
 * past their last put.
 */
struct blockers {
	urt_pool *pool;
	int fd[2];                  /* each job reads a byte: its release */
	atomic_int started;
	atomic_int err;             /* of the second loop's thread */
};

static void blocker_fn(struct blockers *b)
{
	char c;

	atomic_fetch_add(&b->started, 1);
	if (read(b->fd[0], &c, 1) != 1)
		b->err = -EIO;
}

static int blocker_task(void *arg)
{
	struct blockers *b = arg;
	int ret = urt_to_thread(blocker_fn, b);

	if (ret)
		atomic_store(&b->err, ret); /* the holder stops waiting */
	return ret;
}

static void *blocker_loop(void *arg)
{
	struct blockers *b = arg;
	struct urt_loop_opts o = { .pool = b->pool };
	urt_loop *loop = NULL;
	int ret = urt_loop_create(&loop, &o);

	for (int i = 0; ret == 0 && i < 2; i++)
		ret = urt_spawn(loop, NULL, blocker_task, b);
	if (ret == 0)
		ret = urt_loop_run(loop);
	if (loop)
		urt_loop_destroy(loop);
	if (ret)
		b->err = ret;
	return NULL;
}

struct many_holder_arg {
	struct many *m;
	struct blockers *b;
	pthread_t th;
	bool th_made;
	int err;
};

/* Holds the loop, after the turn that hands the jobs over, until every job
 * is on the finished list (above): their completions pile up unseen. */
static int many_holder(void *arg)
{
	struct many_holder_arg *h = arg;
	int ret = urt_yield();

	if (ret)
		return ret;
	while (atomic_load(&h->m->ran) < MANY_JOBS)
		sched_yield();
	h->err = pthread_create(&h->th, NULL, blocker_loop, h->b);
	if (h->err)
		return 0;
	h->th_made = true;
	while (atomic_load(&h->b->started) < 2 && !atomic_load(&h->b->err))
		sched_yield();
	return 0;
}

/* 700 jobs finish while the loop looks away: 256 fill the list's slots,
 * the rest go on its stack, and the loop's next look completes each once,
 * with its own result, and no message (the loop never slept). Every stack
 * stays resident: when the workers finish more than 256 jobs before the
 * loop's first look, those tasks end before the holder's turn, and at the
 * turn after it (fewer than 256 tasks live, more than 256 stacks cached)
 * the loop would arm its timeout for the quiet trim, an SQE in flight. */
static void test_more_finished_jobs_than_slots(void **state)
{
	struct urt_pool_opts po = { .threads = 2, .flags = pool_flags };
	struct urt_loop_opts o = { .flags = URT_LOOP_NO_SPIN, .stack_resident = 2 * MANY_JOBS };
	static struct many m;
	static struct many_arg args[MANY_JOBS];
	struct blockers b = { 0 };
	struct many_holder_arg h = { .m = &m, .b = &b };
	struct urt_loop_stats st;
	urt_loop *loop;

	(void)state;
	atomic_store(&m.ran, 0);
	assert_int_equal(pipe(b.fd), 0);
	assert_int_equal(urt_pool_create(&b.pool, &po), 0);
	o.pool = b.pool;
	assert_int_equal(urt_loop_create(&loop, &o), 0);
	for (long i = 0; i < MANY_JOBS; i++) {
		m.out[i] = -1;
		args[i] = (struct many_arg){ .m = &m, .i = i };
		assert_int_equal(urt_spawn(loop, NULL, many_offloader, &args[i]), 0);
	}
	assert_int_equal(urt_spawn(loop, NULL, many_holder, &h), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_loop_stats(loop, &st), 0);
	urt_loop_destroy(loop);
	/* Release the second loop's jobs and join it before any check. */
	assert_int_equal(write(b.fd[1], "xx", 2), 2);
	if (h.th_made)
		pthread_join(h.th, NULL);
	close(b.fd[0]);
	close(b.fd[1]);
	assert_int_equal(h.err, 0);
	assert_true(h.th_made);
	assert_int_equal(atomic_load(&b.err), 0);
	assert_int_equal(atomic_load(&b.started), 2);
	assert_int_equal(urt_pool_destroy(b.pool), 0);
	for (long i = 0; i < MANY_JOBS; i++)
		assert_int_equal(m.out[i], i * 3 + 1);
	assert_int_equal(st.cqes, 0);
	assert_int_equal(st.messages, MANY_JOBS);
	assert_int_equal(st.settled, MANY_JOBS);
	assert_int_equal(st.inflight, 0);
}

/* A loop that waits between jobs: each wait is marked, and the job that
 * ends it wakes the loop with one message, or the loop takes the mark
 * back itself. */

static void test_sleeping_loop_marks_settle(void **state)
{
	struct urt_pool_opts po = { .threads = 1, .flags = pool_flags };
	struct urt_loop_opts o = { .pool_opts = &po, .flags = URT_LOOP_NO_SPIN };
	struct busy b = { .nap_ns = 2 * MS };
	struct urt_loop_stats st;
	urt_loop *loop;

	(void)state;
	assert_int_equal(urt_loop_create(&loop, &o), 0);
	for (int i = 0; i < 2; i++) {
		b.sum = 0;
		assert_int_equal(urt_spawn(loop, NULL, busy_offloader, &b), 0);
		assert_int_equal(urt_loop_run(loop), 0);
		assert_int_equal(b.sum, BUSY_JOBS * (BUSY_JOBS + 1) / 2);
		assert_int_equal(urt_loop_stats(loop, &st), 0);
		/* Every job expected and settled; every mark settled by its
		 * message (a CQE) or taken back (settled): a run does not
		 * end with a message on its way, though the waiter of the
		 * job that took the mark may end first. Nothing in flight
		 * but, maybe, the loop's own timeout. Jobs of 2 ms find the
		 * loop asleep. */
		assert_int_equal(st.sqes + st.more + st.messages, st.cqes + st.settled + st.inflight);
		assert_true(st.inflight <= 1);
		assert_true(st.settled >= (uint64_t)(i + 1) * BUSY_JOBS);
		assert_true(st.cqes >= 1);
	}
	urt_loop_destroy(loop); /* waits for what is still on its way */
}

/* ---- the workers' priority ---- */

struct prio {
	int policy, nice;
};

static void prio_fn(struct prio *q)
{
	errno = 0;
	q->nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	q->policy = errno ? -1 : sched_getscheduler(0);
}

static int prio_task(void *arg)
{
	return urt_to_thread(prio_fn, (struct prio *)arg);
}

/* Workers run SCHED_BATCH 10 nice steps below the thread that made the
 * pool (at most 19), unless told to stay as made or to be SCHED_IDLE; both
 * flags at once are -EINVAL. */
static void test_worker_priority(void **state)
{
	static const unsigned flags[] = { 0, URT_POOL_SAME_PRIORITY, URT_POOL_SCHED_IDLE };
	static const int policy[] = { SCHED_BATCH, SCHED_OTHER, SCHED_IDLE };
	struct urt_pool_opts po = { .threads = 1 };
	struct urt_loop_opts o = { .pool_opts = &po };
	int base;
	urt_loop *loop;

	(void)state;
	errno = 0;
	base = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	assert_int_equal(errno, 0);
	for (size_t i = 0; i < 3; i++) {
		struct prio q = { -2, -100 };

		po.flags = flags[i];
		assert_int_equal(urt_loop_create(&loop, &o), 0);
		assert_int_equal(urt_spawn(loop, NULL, prio_task, &q), 0);
		assert_int_equal(urt_loop_run(loop), 0);
		urt_loop_destroy(loop);
		assert_int_equal(q.policy, policy[i]);
		if (policy[i] == SCHED_BATCH)
			assert_int_equal(q.nice, base + 10 > 19 ? 19 : base + 10);
		else if (policy[i] == SCHED_OTHER)
			assert_int_equal(q.nice, base);
	}
	po.flags = URT_POOL_SAME_PRIORITY | URT_POOL_SCHED_IDLE;
	assert_int_equal(urt_loop_create(&loop, &o), -EINVAL);
}

static int set_ringless(void **state)
{
	(void)state;
	pool_flags = 0;
	return 0;
}

static int set_worker_rings(void **state)
{
	(void)state;
	pool_flags = URT_POOL_WORKER_RINGS;
	return 0;
}

#define POOL_TESTS                                                   \
	cmocka_unit_test(test_result_reaches_caller),                \
	cmocka_unit_test(test_thousand_offloads_ticker_ticks),       \
	cmocka_unit_test(test_cancel_running_job),                   \
	cmocka_unit_test(test_owned_job_deadline),                   \
	cmocka_unit_test(test_owned_job_completes),                  \
	cmocka_unit_test(test_owned_job_cancelled),                  \
	cmocka_unit_test(test_shutdown_queued_and_running),          \
	cmocka_unit_test(test_shared_pool),                          \
	cmocka_unit_test(test_loops_come_and_go_on_shared_pool),     \
	cmocka_unit_test(test_owned_jobs_under_pressure),            \
	cmocka_unit_test(test_tiny_cq_mixed),                        \
	cmocka_unit_test(test_same_turn_jobs_spread),                \
	cmocka_unit_test(test_job_sees_sibling_start),               \
	cmocka_unit_test(test_held_jobs_not_stuck_behind_a_long_one), \
	cmocka_unit_test(test_completion_as_job_ends),               \
	cmocka_unit_test(test_loop_sleeps_between_jobs),             \
	cmocka_unit_test(test_busy_loop_takes_jobs_without_messages), \
	cmocka_unit_test(test_more_finished_jobs_than_slots),        \
	cmocka_unit_test(test_sleeping_loop_marks_settle)

int main(void)
{
	const struct CMUnitTest path_tests[] = { POOL_TESTS };
	const struct CMUnitTest other_tests[] = {
		cmocka_unit_test(test_outside_task),
		cmocka_unit_test(test_cancelled_before_call),
		cmocka_unit_test(test_pool_busy_while_used),
		cmocka_unit_test(test_worker_priority),
	};
	int failed = 0;

	failed += _cmocka_run_group_tests("pool, kernel's default path", path_tests,
					  sizeof(path_tests) / sizeof(path_tests[0]),
					  set_ringless, NULL);
	failed += _cmocka_run_group_tests("pool, workers' own rings", path_tests,
					  sizeof(path_tests) / sizeof(path_tests[0]),
					  set_worker_rings, NULL);
	failed += cmocka_run_group_tests(other_tests, NULL, NULL);
	return failed;
}
