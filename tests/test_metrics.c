/* urt_loop_metrics: the values now on the loop's thread, with exact task
 * counts on a scripted workload; what URT_LOOP_METRICS adds; a consistent
 * snapshot read from another thread while the loop runs. */
#include <pthread.h>
#include <stdatomic.h>

#include "test_util.h"

static const struct urt_loop_opts with_metrics = { .flags = URT_LOOP_METRICS };

/* The identity of urt_loop_stats, which a torn snapshot would break. */
static bool balanced(const struct urt_loop_metrics *m)
{
	return m->sqes + m->more + m->messages == m->cqes + m->settled + m->inflight;
}

struct script {
	struct urt_loop_metrics first, second, after_sleep;
	int job_runs;
};

static void job(int *runs)
{
	usleep(2000);
	(*runs)++;
}

/* Runs first: the second task is ready, this one runs. */
static int first_task(void *arg)
{
	struct script *s = arg;

	TASK_CHECK(urt_loop_metrics(urt_current_loop(), &s->first) == 0);
	TASK_CHECK(urt_sleep_ns(5 * MS) == 0);
	TASK_CHECK(urt_loop_metrics(urt_current_loop(), &s->after_sleep) == 0);
	TASK_CHECK(urt_to_thread(job, &s->job_runs) == 0);
	TASK_CHECK(urt_to_thread(job, &s->job_runs) == 0);
	return 0;
}

/* Runs second: the first task sleeps. */
static int second_task(void *arg)
{
	struct script *s = arg;

	TASK_CHECK(urt_loop_metrics(urt_current_loop(), &s->second) == 0);
	return 0;
}

static void run_script(const struct urt_loop_opts *opts, struct script *s,
		       struct urt_loop_metrics *end)
{
	urt_loop *loop = loop_new(opts);

	spawn_ok(loop, NULL, first_task, s);
	spawn_ok(loop, NULL, second_task, s);
	assert_int_equal(urt_loop_run(loop), 0);
	check_tasks();
	assert_int_equal(urt_loop_metrics(loop, end), 0);
	urt_loop_destroy(loop);
}

static void test_scripted(void **state)
{
	struct script s = { 0 };
	struct urt_loop_metrics end;

	(void)state;
	run_script(&with_metrics, &s, &end);
	/* Two tasks: the running one, the other ready; then one parked in
	 * its sleep while the other runs. */
	assert_int_equal(s.first.tasks_live, 2);
	assert_int_equal(s.first.tasks_ready, 1);
	assert_int_equal(s.first.tasks_parked, 0);
	assert_int_equal(s.second.tasks_live, 2);
	assert_int_equal(s.second.tasks_ready, 0);
	assert_int_equal(s.second.tasks_parked, 1);
	assert_int_equal(s.after_sleep.tasks_live, 1);
	assert_int_equal(s.after_sleep.tasks_parked, 0);
	/* The sleep took a turn that waited in the kernel. */
	assert_true(s.after_sleep.turns > s.first.turns);
	assert_true(s.after_sleep.idle_ns > 0);
	/* At the end: nothing left, two jobs done and timed, all balanced. */
	assert_int_equal(end.tasks_live, 0);
	assert_int_equal(end.tasks_ready, 0);
	assert_int_equal(end.tasks_parked, 0);
	assert_int_equal(end.inflight, 0);
	assert_int_equal(end.jobs_inflight, 0);
	assert_int_equal(end.pool_queued, 0);
	assert_int_equal(end.cq_overflows, 0);
	assert_int_equal(s.job_runs, 2);
	assert_int_equal(end.jobs_done, 2);
	assert_true(end.job_run_ns >= 2 * 2000000ull); /* two 2 ms jobs */
	assert_true(end.busy_ns > 0);
	/* The loop's time is busy or idle: at least the 5 ms sleep in all. */
	assert_true(end.busy_ns + end.idle_ns >= 5 * MS);
	assert_true(balanced(&end));
	assert_true(end.sqes >= 1); /* the sleep's timeout */
}

static int three_reads(void *arg)
{
	int *fds = arg;
	char c;

	for (int i = 0; i < 3; i++)
		TASK_CHECK(urt_read(fds[0], &c, 1, -1) == 1);
	return 0;
}

/* Three reads that find their bytes waiting: one SQE, one CQE and one turn
 * each, and nothing else, on both backends. */
static void test_exact_counts(void **state)
{
	struct urt_loop_metrics m;
	urt_loop *loop = loop_new(&with_metrics);
	int fds[2];

	(void)state;
	make_pipe(fds);
	write_exact(fds[1], "abc", 3);
	spawn_ok(loop, NULL, three_reads, fds);
	assert_int_equal(urt_loop_run(loop), 0);
	check_tasks();
	assert_int_equal(urt_loop_metrics(loop, &m), 0);
	assert_int_equal(m.turns, 3);
	assert_int_equal(m.sqes, 3);
	assert_int_equal(m.cqes, 3);
	assert_int_equal(m.messages, 0);
	assert_int_equal(m.settled, 0);
	assert_int_equal(m.inflight, 0);
	assert_int_equal(m.more, 0);
	assert_int_equal(m.jobs_done, 0);
	urt_loop_destroy(loop);
	close_pipe(fds);
}

/* Without URT_LOOP_METRICS: the counters, but nothing timed. */
static void test_without_flag(void **state)
{
	struct script s = { 0 };
	struct urt_loop_metrics end;

	(void)state;
	run_script(NULL, &s, &end);
	assert_int_equal(s.first.tasks_live, 2);
	assert_int_equal(s.second.tasks_parked, 1);
	assert_true(end.turns > 0);
	assert_int_equal(end.busy_ns, 0);
	assert_int_equal(end.idle_ns, 0);
	assert_int_equal(end.jobs_done, 0);
	assert_int_equal(end.job_wait_ns, 0);
	assert_int_equal(end.job_run_ns, 0);
	assert_true(balanced(&end));
}

struct watcher {
	urt_loop *loop;
	atomic_bool stop;
	int err;
	unsigned reads, bad;
	struct urt_loop_metrics last;
};

static void *watch(void *arg)
{
	struct watcher *w = arg;

	while (!atomic_load(&w->stop)) {
		struct urt_loop_metrics m;

		w->err = urt_loop_metrics(w->loop, &m);
		if (w->err)
			break;
		w->reads++;
		/* Consistent, and never going back. */
		if (!balanced(&m) || m.turns < w->last.turns || m.cqes < w->last.cqes ||
		    m.busy_ns < w->last.busy_ns || m.idle_ns < w->last.idle_ns)
			w->bad++;
		w->last = m;
	}
	return NULL;
}

static void add_one(int *n)
{
	(*n)++;
}

static int busy_task(void *arg)
{
	int *n = arg;

	for (int i = 0; i < 200; i++) {
		TASK_CHECK(urt_yield() == 0);
		TASK_CHECK(urt_sleep_ns(100000) == 0);
		TASK_CHECK(urt_to_thread(add_one, n) == 0);
	}
	return 0;
}

static void test_snapshot_from_thread(void **state)
{
	struct watcher w = { 0 };
	struct urt_loop_metrics m;
	pthread_t th;
	int n[4] = { 0 };

	(void)state;
	w.loop = loop_new(&with_metrics);
	for (int i = 0; i < 4; i++)
		spawn_ok(w.loop, NULL, busy_task, &n[i]);
	assert_int_equal(pthread_create(&th, NULL, watch, &w), 0);
	assert_int_equal(urt_loop_run(w.loop), 0);
	atomic_store(&w.stop, true);
	assert_int_equal(pthread_join(th, NULL), 0);
	check_tasks();
	assert_int_equal(w.err, 0);
	assert_true(w.reads > 0);
	assert_int_equal(w.bad, 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(n[i], 200);
	/* On the loop's thread: the values now. */
	assert_int_equal(urt_loop_metrics(w.loop, &m), 0);
	assert_int_equal(m.jobs_done, 800);
	urt_loop_destroy(w.loop);
}

struct one_sleeper {
	urt_loop *loop;
	atomic_bool stop;
	atomic_uint reads;
	unsigned bad;
	unsigned ready_turns;       /* snapshots (by turn) with a task ready */
	uint64_t last_turn, last_ticks;
};

static void *watch_one(void *arg)
{
	struct one_sleeper *w = arg;

	while (!atomic_load(&w->stop)) {
		struct urt_loop_metrics m;

		if (urt_loop_metrics(w->loop, &m))
			break;
		w->reads++;
		/* One task, then none once it has returned. */
		if (m.tasks_live > 1 || m.tasks_ready + m.tasks_parked != m.tasks_live)
			w->bad++;
		if (m.tasks_ready && m.turns != w->last_turn)
			w->ready_turns++;
		if (m.lag_ticks < w->last_ticks || m.lag_p50_ns > m.lag_p99_ns ||
		    m.lag_p99_ns > m.lag_max_ns)
			w->bad++;
		w->last_ticks = m.lag_ticks;
		w->last_turn = m.turns;
	}
	return NULL;
}

static int sleep_20ms(void *arg)
{
	(void)arg;
	TASK_CHECK(urt_sleep_ns(20 * MS) == 0);
	return 0;
}

/* The lag monitor's task counts nowhere: with one task sleeping beside it,
 * every snapshot shows that task, ready or parked, until it returns. */
static void test_monitor_not_counted(void **state)
{
	struct one_sleeper w = { 0 };
	pthread_t th;

	(void)state;
	w.loop = loop_new(&with_metrics);
	assert_int_equal(urt_lag_monitor_start(w.loop, 200000), 0);
	spawn_ok(w.loop, NULL, sleep_20ms, NULL);
	/* One turn: the task sleeps; then the watcher starts. */
	assert_int_equal(urt_loop_stop(w.loop), 0);
	assert_int_equal(urt_loop_run(w.loop), -EINTR);
	assert_int_equal(pthread_create(&th, NULL, watch_one, &w), 0);
	assert_int_equal(urt_loop_run(w.loop), 0);
	/* Two more reads: one of them began after the run's last snapshot.
	 * (A watcher starved while the loop ran, as beside CPU hogs under
	 * TSan, may have read only snapshots from before the first tick.) */
	for (unsigned r = atomic_load(&w.reads); atomic_load(&w.reads) < r + 2;)
		sched_yield();
	atomic_store(&w.stop, true);
	assert_int_equal(pthread_join(th, NULL), 0);
	check_tasks();
	assert_true(w.reads > 0);
	assert_int_equal(w.bad, 0);
	/* Ready only when its own sleep ended, not at each of the monitor's
	 * 100 or so wake-ups. */
	assert_true(w.ready_turns <= 2);
	/* The monitor's ticks reached the other thread. */
	assert_true(w.last_ticks > 0);
	urt_loop_destroy(w.loop);
}

static void *read_once(void *arg)
{
	struct urt_loop_metrics m;

	return (void *)(intptr_t)urt_loop_metrics(arg, &m);
}

static void test_bad_calls(void **state)
{
	struct urt_loop_metrics m;
	urt_loop *loop = loop_new(NULL);
	pthread_t th;
	void *ret;

	(void)state;
	assert_int_equal(urt_loop_metrics(NULL, &m), -EINVAL);
	assert_int_equal(urt_loop_metrics(loop, NULL), -EINVAL);
	/* Another thread, without URT_LOOP_METRICS: nothing published. */
	assert_int_equal(pthread_create(&th, NULL, read_once, loop), 0);
	assert_int_equal(pthread_join(th, &ret), 0);
	assert_int_equal((intptr_t)ret, -EPERM);
	urt_loop_destroy(loop);
}

/* ---- the histogram ---- */

static uint64_t off_by(uint64_t got, uint64_t want)
{
	return got > want ? got - want : want - got;
}

/* 1 to 100,000 us, each once: every percentile within 1% of the exact
 * nearest-rank value; the extremes exact; the buckets tile the range. */
static void test_hist_known_samples(void **state)
{
	struct urt_hist *h = malloc(sizeof(*h));
	const double ps[] = { 1, 10, 50, 90, 99, 99.9, 99.99 };
	uint64_t lo, hi, prev_hi = 0, total = 0;

	(void)state;
	assert_non_null(h);
	urt_hist_reset(h);
	assert_int_equal(urt_hist_percentile(h, 50), 0);
	for (uint64_t i = 1; i <= 100000; i++)
		urt_hist_record(h, i * 1000);
	assert_int_equal(h->count, 100000);
	assert_int_equal(h->min, 1000);
	assert_int_equal(h->max, 100000000);
	assert_int_equal(h->sum, 5000050000000ull);
	for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
		uint64_t want = (uint64_t)(ps[k] * 1000 + 0.5) * 1000; /* rank p% of 1e5 */
		uint64_t got = urt_hist_percentile(h, ps[k]);

		assert_true(off_by(got, want) * 100 <= want);
	}
	assert_int_equal(urt_hist_percentile(h, 100), 100000000);
	assert_int_equal(urt_hist_percentile(h, 0), 1000);
	for (size_t i = 0; i < URT_HIST_BUCKETS; i++) {
		uint64_t lo_only = 0, hi_only = 0;

		total += urt_hist_bucket(h, i, &lo, &hi);
		assert_int_equal(lo, prev_hi);
		assert_true(hi > lo);
		prev_hi = hi;
		/* Either bound alone. */
		assert_int_equal(urt_hist_bucket(h, i, &lo_only, NULL), h->counts[i]);
		assert_int_equal(urt_hist_bucket(h, i, NULL, &hi_only), h->counts[i]);
		assert_int_equal(lo_only, lo);
		assert_int_equal(hi_only, hi);
	}
	assert_int_equal(total, 100000);
	assert_int_equal(urt_hist_bucket(h, URT_HIST_BUCKETS, &lo, &hi), 0);
	/* Small values are exact. */
	urt_hist_reset(h);
	for (uint64_t v = 0; v < 256; v++)
		urt_hist_record(h, v);
	assert_int_equal(urt_hist_percentile(h, 50), 127);
	free(h);
}

/* ---- the lag monitor ---- */

struct lag_case {
	int stop_ret;
	uint64_t ticks_before_stall;
};

static int stall_then_stop(void *arg)
{
	struct lag_case *c = arg;
	struct urt_lag_info info;
	uint64_t until;

	TASK_CHECK(urt_task_set_name(NULL, "stall-15ms") == 0);
	TASK_CHECK(urt_sleep_ns(20 * MS) == 0);
	TASK_CHECK(urt_loop_lag(urt_current_loop(), NULL, NULL, &info) == 0);
	c->ticks_before_stall = info.ticks;
	/* CPU work inline: every tick due meanwhile wakes late. */
	until = urt_now_ns() + 15 * MS;
	while (urt_now_ns() < until)
		;
	TASK_CHECK(urt_sleep_ns(20 * MS) == 0);
	return 0;
}

static void quiet_stall(void *ctx, urt_task *task, const char *name, uint64_t ran_ns)
{
	(void)ctx;
	(void)task;
	(void)name;
	(void)ran_ns;
}

static void test_lag_monitor(void **state)
{
	/* Stall detection on: the ticks name their culprit. */
	struct urt_loop_opts o = { .stall_ns = 5 * MS, .on_stall = quiet_stall };
	urt_loop *loop = loop_new(&o);
	struct urt_hist *late = malloc(sizeof(*late)), *sched = malloc(sizeof(*sched));
	struct urt_lag_info info;
	struct urt_loop_metrics m;
	struct lag_case c = { 0 };

	(void)state;
	assert_non_null(late);
	assert_non_null(sched);
	assert_int_equal(urt_loop_lag(loop, late, sched, &info), -ENOENT);
	assert_int_equal(urt_lag_monitor_stop(loop), -ENOENT);
	assert_int_equal(urt_lag_monitor_start(loop, 0), -EINVAL);
	assert_int_equal(urt_lag_monitor_start(NULL, MS), -EINVAL);
	assert_int_equal(urt_lag_monitor_start(loop, MS), 0);
	assert_int_equal(urt_lag_monitor_start(loop, MS), -EBUSY);
	spawn_ok(loop, NULL, stall_then_stop, &c);
	/* The monitor does not keep the run going once the task is done. */
	assert_int_equal(urt_loop_run(loop), 0);
	check_tasks();
	assert_int_equal(urt_loop_lag(loop, late, sched, &info), 0);
	assert_int_equal(info.interval_ns, MS);
	assert_true(c.ticks_before_stall >= 1);
	assert_true(info.ticks > c.ticks_before_stall);
	assert_int_equal(late->count, info.ticks);
	/* A tick was due within the first interval of the 15 ms stall. */
	assert_true(info.worst_late_ns >= 13 * MS);
	assert_int_equal(late->max, info.worst_late_ns);
	assert_true(info.worst_at_ns <= info.last_at_ns);
	assert_string_equal(info.worst_culprit, "stall-15ms");
	assert_true(info.worst_culprit_ran_ns >= 15 * MS);
	/* Each tick's wake-up waited to run: counted, a sample recorded. */
	assert_true(info.wakeups >= info.ticks);
	assert_true(sched->count <= info.wakeups);
	/* The same lag through urt_loop_metrics, which other threads read. */
	assert_int_equal(urt_loop_metrics(loop, &m), 0);
	assert_int_equal(m.lag_ticks, info.ticks);
	assert_int_equal(m.lag_p50_ns, urt_hist_percentile(late, 50));
	assert_int_equal(m.lag_p99_ns, urt_hist_percentile(late, 99));
	assert_int_equal(m.lag_max_ns, late->max);
	assert_int_equal(urt_lag_monitor_stop(loop), 0);
	assert_int_equal(urt_lag_monitor_stop(loop), -ENOENT);
	/* Its task ends at the next run; the figures stay. */
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_loop_lag(loop, late, NULL, NULL), 0);
	assert_int_equal(late->count, info.ticks);
	assert_int_equal(urt_lag_monitor_start(loop, MS), 0);
	assert_int_equal(urt_loop_lag(loop, late, NULL, NULL), 0);
	assert_int_equal(late->count, 0);
	urt_loop_destroy(loop); /* with the monitor on */
	free(late);
	free(sched);
}

struct reads20 {
	int fd;
};

static int reads20_task(void *arg)
{
	struct reads20 *r = arg;
	char b[4];

	for (int i = 0; i < 20; i++)
		TASK_CHECK(urt_read(r->fd, b, sizeof(b), 0) == sizeof(b));
	return 0;
}

/* Every wake-up is counted once, whichever way its task is resumed: by the
 * scheduler's pass, or straight from a task that parks (8 tasks x 20
 * reads, each read a park and a wake; the monitor's own 10 s sleep never
 * ends in the run); the histogram holds a sample of them (one in 8 on
 * average: none at all in 160 has odds below 1e-9). */
static void test_sched_delay_every_wake(void **state)
{
	urt_loop *loop = loop_new(NULL);
	struct urt_hist *sched = malloc(sizeof(*sched));
	struct reads20 r = { .fd = temp_file("abcd", 4) };
	struct urt_lag_info info;

	(void)state;
	assert_non_null(sched);
	assert_int_equal(urt_lag_monitor_start(loop, 10 * SEC), 0);
	for (int i = 0; i < 8; i++)
		spawn_ok(loop, NULL, reads20_task, &r);
	assert_int_equal(urt_loop_run(loop), 0);
	check_tasks();
	assert_int_equal(urt_loop_lag(loop, NULL, sched, &info), 0);
	assert_int_equal(info.wakeups, 8 * 20);
	assert_true(sched->count >= 1 && sched->count < 8 * 20);
	assert_true(sched->max < 10 * SEC);
	urt_loop_destroy(loop);
	assert_int_equal(close(r.fd), 0);
	free(sched);
}

static int yield_for_30ms(void *arg)
{
	uint64_t until = urt_now_ns() + 30 * MS;

	(void)arg;
	while (urt_now_ns() < until)
		TASK_CHECK(urt_yield() == 0);
	return 0;
}

/* A task that only yields (which switches straight to the next task while
 * no sleeper's time can come unseen) does not starve the monitor's sleep. */
static void test_lag_monitor_under_yields(void **state)
{
	urt_loop *loop = loop_new(NULL);
	struct urt_lag_info info;

	(void)state;
	assert_int_equal(urt_lag_monitor_start(loop, MS), 0);
	spawn_ok(loop, NULL, yield_for_30ms, NULL);
	assert_int_equal(urt_loop_run(loop), 0);
	check_tasks();
	assert_int_equal(urt_loop_lag(loop, NULL, NULL, &info), 0);
	assert_true(info.ticks >= 2);
	urt_loop_destroy(loop);
}

struct poll_case {
	int fds[2];
	ssize_t got;
	char buf[8];
};

static void *write_after_5ms(void *arg)
{
	struct poll_case *p = arg;

	usleep(5000);
	write_exact(p->fds[1], "polled", 6);
	return NULL;
}

static int sleep_and_read(void *arg)
{
	struct poll_case *p = arg;

	for (int i = 0; i < 10; i++)
		TASK_CHECK(urt_sleep_ns(MS) == 0);
	p->got = urt_read(p->fds[0], p->buf, sizeof(p->buf), -1);
	return 0;
}

/* Idle poll: sleeps and a read that another thread completes arrive while
 * the loop spins, which it counts busy; the loop never waits in the kernel
 * (on io_uring; epoll ignores the option). */
static void test_idle_poll(void **state)
{
	struct urt_loop_opts o = { .flags = URT_LOOP_METRICS, .idle_poll_ns = SEC };
	struct poll_case p = { 0 };
	struct urt_loop_metrics m;
	urt_loop *loop = loop_new(&o);
	pthread_t th;

	(void)state;
	make_pipe(p.fds);
	spawn_ok(loop, NULL, sleep_and_read, &p);
	assert_int_equal(pthread_create(&th, NULL, write_after_5ms, &p), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	check_tasks();
	assert_int_equal(p.got, 6);
	assert_memory_equal(p.buf, "polled", 6);
	assert_int_equal(urt_loop_metrics(loop, &m), 0);
	assert_true(balanced(&m));
	if (urt_loop_backend(loop, NULL) == URT_BACKEND_IO_URING) {
		assert_int_equal(m.idle_ns, 0);
		assert_true(m.busy_ns >= 10 * MS);
	}
	urt_loop_destroy(loop);
	close_pipe(p.fds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hist_known_samples),
		cmocka_unit_test(test_lag_monitor),
		cmocka_unit_test(test_lag_monitor_under_yields),
		cmocka_unit_test(test_sched_delay_every_wake),
		cmocka_unit_test(test_idle_poll),
		cmocka_unit_test(test_monitor_not_counted),
		cmocka_unit_test(test_scripted),
		cmocka_unit_test(test_exact_counts),
		cmocka_unit_test(test_without_flag),
		cmocka_unit_test(test_snapshot_from_thread),
		cmocka_unit_test(test_bad_calls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
