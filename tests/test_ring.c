/* The ring under pressure (more parked tasks than SQ entries, bursts of
 * completions larger than the CQ), I/O progress while tasks keep the run
 * queue busy, and urt_loop_destroy with tasks left. */
#include <stdio.h>
#include <sys/resource.h>

#include "test_util.h"

/* Make room for n more fds, or skip the test when the hard limit is lower. */
static void need_fds(rlim_t n)
{
	struct rlimit rl;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < n + 64) {
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < n + 64) {
			print_message("RLIMIT_NOFILE hard limit %lu < %lu\n",
				      (unsigned long)rl.rlim_max, (unsigned long)(n + 64));
			skip();
		}
		rl.rlim_cur = n + 64;
		assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
}

/* A reader with its own pipe and the tag it expects. */
struct reader {
	int fds[2];
	char tag[8];     /* what the writer puts in, 8 bytes */
	int completions; /* reads that returned the expected bytes */
	int bad;         /* reads that returned anything else */
};

static struct reader *readers_new(int n)
{
	struct reader *r = calloc((size_t)n, sizeof(*r));

	assert_non_null(r);
	need_fds(2 * (rlim_t)n);
	for (int i = 0; i < n; i++) {
		make_pipe(r[i].fds);
		snprintf(r[i].tag, sizeof(r[i].tag), "%07d", i);
		r[i].tag[7] = '#'; /* all 8 bytes matter */
	}
	return r;
}

static void readers_free(struct reader *r, int n)
{
	for (int i = 0; i < n; i++)
		close_pipe(r[i].fds);
	free(r);
}

/* Reads once (twice its tag's room) and checks it got exactly the tag. */
static void read_tag(struct reader *r)
{
	char buf[16];
	ssize_t n = urt_read(r->fds[0], buf, sizeof(buf), -1);

	if (n == 8 && memcmp(buf, r->tag, 8) == 0)
		r->completions++;
	else
		r->bad++;
}

/* Writes every reader's tag, after delay_ns. */
struct writer {
	struct reader *r;
	int n;
	uint64_t delay_ns;
};

static int writer_task(void *arg)
{
	struct writer *w = arg;

	if (w->delay_ns)
		TASK_CHECK(urt_sleep_ns(w->delay_ns) == 0);
	for (int i = 0; i < w->n; i++)
		TASK_CHECK(write(w->r[i].fds[1], w->r[i].tag, 8) == 8);
	return 0;
}

/* Each reader got its tag `want` times and nothing else. */
static void assert_readers(const struct reader *r, int n, int want)
{
	int total = 0, bad = 0, exact = 0;

	for (int i = 0; i < n; i++) {
		total += r[i].completions;
		bad += r[i].bad;
		exact += r[i].completions == want;
	}
	assert_int_equal(bad, 0);
	assert_int_equal(exact, n);
	assert_int_equal(total, n * want);
}

/* First read: its tag is already in the pipe. Then a 1 ms sleep. Second
 * read: parks until the writer's second round. */
static int read_sleep_read(void *arg)
{
	struct reader *r = arg;

	read_tag(r);
	TASK_CHECK(urt_sleep_ns(1 * MS) == 0);
	read_tag(r);
	return 0;
}

#define SMALL_SQ_TASKS 1000

/* An SQ of 4 entries and 1,000 tasks that each submit in the same turn (a
 * read, later a sleep, then a read that parks): a full SQ is flushed, never
 * an error, and every read returns its own bytes. */
static void test_small_sq(void **state)
{
	struct urt_loop_opts o = { .ring_entries = 4 };
	struct reader *r = readers_new(SMALL_SQ_TASKS);
	struct writer w = { r, SMALL_SQ_TASKS, 20 * MS };
	urt_loop *loop = loop_new(&o);

	(void)state;
	for (int i = 0; i < SMALL_SQ_TASKS; i++) {
		write_exact(r[i].fds[1], r[i].tag, 8);
		spawn_ok(loop, NULL, read_sleep_read, &r[i]);
	}
	spawn_ok(loop, NULL, writer_task, &w);
	run_and_destroy(loop);
	assert_readers(r, SMALL_SQ_TASKS, 2);
	readers_free(r, SMALL_SQ_TASKS);
}

static int read_once(void *arg)
{
	read_tag(arg);
	return 0;
}

#define BURST_TASKS 2000

/* SQ 4, CQ 8: 2,000 readers parked on empty pipes complete at once when one
 * task writes to every pipe. Every completion arrives exactly once. */
static void test_small_cq_burst(void **state)
{
	struct urt_loop_opts o = { .ring_entries = 4, .cq_entries = 8 };
	struct reader *r = readers_new(BURST_TASKS);
	struct writer w = { r, BURST_TASKS, 10 * MS };
	urt_loop *loop = loop_new(&o);

	(void)state;
	for (int i = 0; i < BURST_TASKS; i++)
		spawn_ok(loop, NULL, read_once, &r[i]);
	spawn_ok(loop, NULL, writer_task, &w);
	run_and_destroy(loop);
	assert_readers(r, BURST_TASKS, 1);
	readers_free(r, BURST_TASKS);
}

struct busy_io {
	struct reader r;
	bool done;
	bool gave_up;
};

static int busy_reader(void *arg)
{
	struct busy_io *b = arg;

	read_tag(&b->r);
	b->done = true;
	return 0;
}

static int busy_yielder(void *arg)
{
	struct busy_io *b = arg;
	uint64_t start = urt_now_ns();

	while (!b->done) {
		if (urt_now_ns() - start > 2 * SEC) {
			b->gave_up = true;
			break;
		}
		TASK_CHECK(urt_yield() == 0);
	}
	return 0;
}

/* A read completes while another task keeps the run queue busy (the loop
 * never waits): completions are reaped without waiting too. */
static void test_io_while_busy(void **state)
{
	struct busy_io b = { 0 };
	struct writer w = { &b.r, 1, 10 * MS };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	make_pipe(b.r.fds);
	memcpy(b.r.tag, "busy-io!", 8);
	spawn_ok(loop, NULL, busy_reader, &b);
	spawn_ok(loop, NULL, writer_task, &w);
	spawn_ok(loop, NULL, busy_yielder, &b);
	run_and_destroy(loop);
	assert_false(b.gave_up);
	assert_true(b.done);
	assert_int_equal(b.r.completions, 1);
	assert_int_equal(b.r.bad, 0);
	close_pipe(b.r.fds);
}

/* ---- urt_loop_destroy with tasks left ---- */

/* What a task left to destroy saw. */
struct left {
	urt_task *peer;  /* join: the task to join */
	int fd;          /* read: an empty pipe */
	bool ran;
	int ret;         /* its wait */
	int spawn_ret;   /* an urt_spawn after it */
};

static int nop(void *arg)
{
	(void)arg;
	return 0;
}

static int left_sleep(void *arg)
{
	struct left *l = arg;

	l->ran = true;
	l->ret = urt_sleep_ns(10 * SEC);
	l->spawn_ret = urt_spawn(NULL, NULL, nop, NULL);
	return 0;
}

static int left_read(void *arg)
{
	struct left *l = arg;
	char buf[8];

	l->ran = true;
	l->ret = (int)urt_read(l->fd, buf, sizeof(buf), -1);
	return 0;
}

static int left_join(void *arg)
{
	struct left *l = arg;

	l->ran = true;
	l->ret = urt_join(l->peer, NULL);
	return 0;
}

static int left_yield(void *arg)
{
	struct left *l = arg;

	l->ran = true;
	while ((l->ret = urt_yield()) == 0)
		;
	return 0;
}

/* Destroys the loop; it must take well under the 10 s sleeps. */
static void destroy_promptly(urt_loop *loop)
{
	uint64_t start = urt_now_ns();

	urt_loop_destroy(loop);
	assert_true(ms_since(start) < 2000);
	assert_null(urt_current_loop());
}

static void assert_all_cancelled(const struct left *l, int n)
{
	for (int i = 0; i < n; i++) {
		assert_true(l[i].ran);
		assert_int_equal(l[i].ret, -ECANCELED);
	}
}

/* Destroy a loop that never ran: each task still runs, its first wait
 * (sleep, read, join, yield) returns -ECANCELED, and a spawn from it is
 * -ESHUTDOWN. Joinable and detached handles are freed. */
static void test_destroy_unstarted(void **state)
{
	struct left l[8];
	urt_task *sleeper;
	int fds[2];
	char c[2];
	urt_loop *loop = loop_new(NULL);

	(void)state;
	make_pipe(fds);
	for (int i = 0; i < 8; i++)
		l[i] = (struct left){ .fd = fds[0], .ret = 1, .spawn_ret = 1 };
	/* The joiner runs first, while the task it joins is unfinished. */
	spawn_ok(loop, NULL, left_join, &l[4]);
	spawn_ok(loop, &sleeper, left_sleep, &l[0]);
	l[4].peer = sleeper;
	spawn_ok(loop, NULL, left_sleep, &l[1]);
	spawn_ok(loop, NULL, left_read, &l[2]);
	spawn_ok(loop, NULL, left_read, &l[3]);
	spawn_ok(loop, NULL, left_yield, &l[5]);
	spawn_ok(loop, NULL, left_sleep, &l[6]);
	spawn_ok(loop, NULL, left_read, &l[7]);
	destroy_promptly(loop);
	assert_all_cancelled(l, 8);
	assert_int_equal(l[0].spawn_ret, -ESHUTDOWN);
	assert_int_equal(l[1].spawn_ret, -ESHUTDOWN);
	write_exact(fds[1], "z", 1); /* the cancelled reads took nothing */
	assert_int_equal(read(fds[0], c, 2), 1);
	assert_int_equal(c[0], 'z');
	close_pipe(fds);
}

static int stopper(void *arg)
{
	TASK_CHECK(urt_loop_stop(arg) == 0);
	return 0;
}

/* Destroy with tasks parked in the kernel: a run stopped (urt_loop_stop)
 * after its first turn leaves 10 s sleeps, reads on an empty pipe, a join
 * and a yielding task behind. Destroy wakes each with -ECANCELED without
 * waiting 10 s, and the cancelled reads took nothing from the pipe. */
static void test_destroy_parked(void **state)
{
	struct left l[7];
	urt_task *sleeper;
	int fds[2];
	char c[2];
	urt_loop *loop = loop_new(NULL);

	(void)state;
	make_pipe(fds);
	for (int i = 0; i < 7; i++)
		l[i] = (struct left){ .fd = fds[0], .ret = 1, .spawn_ret = 1 };
	spawn_ok(loop, &sleeper, left_sleep, &l[0]);
	spawn_ok(loop, NULL, left_sleep, &l[1]);
	spawn_ok(loop, NULL, left_read, &l[2]);
	spawn_ok(loop, NULL, left_read, &l[3]);
	l[4].peer = sleeper;
	spawn_ok(loop, NULL, left_join, &l[4]);
	spawn_ok(loop, NULL, left_yield, &l[5]);
	spawn_ok(loop, NULL, left_read, &l[6]);
	spawn_ok(loop, NULL, stopper, loop);
	assert_int_equal(urt_loop_run(loop), -EINTR);
	for (int i = 0; i < 7; i++) {
		assert_true(l[i].ran);
		assert_int_equal(l[i].ret, 1); /* parked, or queued by its yield */
	}
	destroy_promptly(loop);
	check_tasks();
	assert_all_cancelled(l, 7);
	assert_int_equal(l[0].spawn_ret, -ESHUTDOWN);
	write_exact(fds[1], "z", 1);
	assert_int_equal(read(fds[0], c, 2), 1);
	assert_int_equal(c[0], 'z');
	close_pipe(fds);
}

/* Destroy after the run reported -EDEADLK: three tasks parked joining each
 * other in a cycle, plus tasks spawned afterwards that never ran. All
 * their waits return -ECANCELED. */
static void test_destroy_deadlocked(void **state)
{
	struct left l[6];
	urt_task *cycle[3];
	int fds[2];
	urt_loop *loop = loop_new(NULL);

	(void)state;
	make_pipe(fds);
	for (int i = 0; i < 6; i++)
		l[i] = (struct left){ .fd = fds[0], .ret = 1, .spawn_ret = 1 };
	for (int i = 0; i < 3; i++)
		spawn_ok(loop, &cycle[i], left_join, &l[i]);
	for (int i = 0; i < 3; i++)
		l[i].peer = cycle[(i + 1) % 3];
	assert_int_equal(urt_loop_run(loop), -EDEADLK);
	for (int i = 0; i < 3; i++) {
		assert_true(l[i].ran);
		assert_int_equal(l[i].ret, 1); /* parked */
	}
	spawn_ok(loop, NULL, left_sleep, &l[3]);
	spawn_ok(loop, NULL, left_read, &l[4]);
	spawn_ok(loop, NULL, left_yield, &l[5]);
	destroy_promptly(loop);
	assert_all_cancelled(l, 6);
	close_pipe(fds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_sq),
		cmocka_unit_test(test_small_cq_burst),
		cmocka_unit_test(test_io_while_busy),
		cmocka_unit_test(test_destroy_unstarted),
		cmocka_unit_test(test_destroy_parked),
		cmocka_unit_test(test_destroy_deadlocked),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
