/* urt_cancel: a parked task's wait returns -ECANCELED (sleep, read, join,
 * yield), cancellation is sticky, a cancelled read consumes nothing. */
#include <sys/ioctl.h>

#include "test_util.h"

/* What a victim task saw. */
struct victim {
	urt_task *task;
	int fd;                /* read: the pipe's read end */
	urt_task *child;       /* join: the task it joins */
	bool *child_done;      /* join: set by the child when it ends */
	bool child_done_seen;  /* join: *child_done when the join returned */
	int wait_ret;          /* its first wait */
	int later[4];          /* sleep, yield, read, join after that */
	uint64_t start, resumed;
	bool ran;
	char buf[64];
};

/* After a cancelled wait, every later wait returns -ECANCELED too. */
static void later_waits(struct victim *v)
{
	char c = 0;

	v->later[0] = urt_sleep_ns(0);
	v->later[1] = urt_yield();
	v->later[2] = (int)urt_read(v->fd, &c, 1, -1);
	v->later[3] = v->child ? urt_join(v->child, NULL) : -ECANCELED;
}

static void assert_later_cancelled(const struct victim *v)
{
	for (int i = 0; i < 4; i++)
		assert_int_equal(v->later[i], -ECANCELED);
}

static int sleep_victim(void *arg)
{
	struct victim *v = arg;

	v->ran = true;
	v->start = urt_now_ns();
	v->wait_ret = urt_sleep_ns(10 * SEC);
	v->resumed = urt_now_ns();
	later_waits(v);
	return 0;
}

static int read_victim(void *arg)
{
	struct victim *v = arg;

	v->ran = true;
	memset(v->buf, 0xaa, sizeof(v->buf));
	v->start = urt_now_ns();
	v->wait_ret = (int)urt_read(v->fd, v->buf, sizeof(v->buf), -1);
	v->resumed = urt_now_ns();
	later_waits(v);
	return 0;
}

/* Sleeps 20 ms, returns 7. */
static int slow_child(void *arg)
{
	bool *done = arg;

	TASK_CHECK(urt_sleep_ns(20 * MS) == 0);
	*done = true;
	return 7;
}

static int join_victim(void *arg)
{
	struct victim *v = arg;
	int result = -1;

	v->ran = true;
	v->wait_ret = urt_join(v->child, &result);
	v->child_done_seen = *v->child_done;
	TASK_CHECK(result == -1); /* not joined: no result */
	later_waits(v);
	return 0;
}

/* Cancels the victim after delay_ns (0: at once, in the same turn). */
struct canceller {
	struct victim *v;
	uint64_t delay_ns;
	int ret;
};

static int canceller_task(void *arg)
{
	struct canceller *c = arg;

	if (c->delay_ns)
		TASK_CHECK(urt_sleep_ns(c->delay_ns) == 0);
	c->ret = urt_cancel(c->v->task);
	return 0;
}

/* Spawns fn(v) and a canceller of it after delay_ns; runs to the end. */
static void run_cancelled(urt_task_fn fn, struct victim *v, uint64_t delay_ns)
{
	struct canceller c = { .v = v, .delay_ns = delay_ns, .ret = 1 };
	urt_loop *loop = loop_new(NULL);

	spawn_ok(loop, &v->task, fn, v);
	spawn_ok(loop, NULL, canceller_task, &c);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(c.ret, 0);
	assert_int_equal(urt_cancel(v->task), -ESRCH); /* finished */
	assert_int_equal(urt_join(v->task, NULL), 0);
	urt_loop_destroy(loop);
	check_tasks();
}

/* A 10 s sleep cancelled after 10 ms returns -ECANCELED promptly; later
 * waits return -ECANCELED too (sticky). */
static void test_cancel_sleep(void **state)
{
	struct victim v = { .fd = -1 };
	uint64_t start = urt_now_ns();

	(void)state;
	run_cancelled(sleep_victim, &v, 10 * MS);
	/* Nor does destroy wait for the 10 s timeout still armed. */
	assert_true(ms_since(start) < 2000);
	assert_true(v.ran);
	assert_int_equal(v.wait_ret, -ECANCELED);
	assert_true(v.resumed - v.start >= 10 * MS);
	assert_true(v.resumed - v.start < 2 * SEC);
	assert_later_cancelled(&v);
}

/* The pipe holds exactly want (len bytes), nothing more. */
static void assert_pipe_holds(int fd, const char *want, int len)
{
	char buf[64];
	int avail = -1;

	assert_int_equal(ioctl(fd, FIONREAD, &avail), 0);
	assert_int_equal(avail, len);
	if (len) {
		assert_int_equal(read(fd, buf, sizeof(buf)), len);
		assert_memory_equal(buf, want, (size_t)len);
	}
}

/* A read parked on an empty pipe, cancelled after delay_ns: it returns
 * -ECANCELED, its buffer is untouched, and data written afterwards is
 * still in the pipe (the cancelled read took nothing). */
static void check_cancel_read(uint64_t delay_ns)
{
	struct victim v = { 0 };
	char pattern[sizeof(v.buf)];
	int fds[2];

	make_pipe(fds);
	v.fd = fds[0];
	run_cancelled(read_victim, &v, delay_ns);
	assert_int_equal(v.wait_ret, -ECANCELED);
	memset(pattern, 0xaa, sizeof(pattern));
	assert_memory_equal(v.buf, pattern, sizeof(v.buf));
	assert_true(v.resumed - v.start < 2 * SEC);
	assert_later_cancelled(&v);
	write_exact(fds[1], "xyz", 3);
	assert_pipe_holds(fds[0], "xyz", 3);
	close_pipe(fds);
}

/* Cancelled once the read is in the kernel. */
static void test_cancel_read_parked(void **state)
{
	(void)state;
	check_cancel_read(10 * MS);
}

/* Cancelled in the turn it parked, before its SQE reached the kernel. */
static void test_cancel_read_same_turn(void **state)
{
	(void)state;
	check_cancel_read(0);
}

/* A task cancelled before it first runs still runs; its first wait
 * returns -ECANCELED at once. */
static void test_cancel_before_start(void **state)
{
	struct victim v = { .fd = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, &v.task, sleep_victim, &v);
	assert_int_equal(urt_cancel(v.task), 0);
	assert_int_equal(urt_cancel(v.task), 0); /* again: still fine */
	assert_int_equal(urt_loop_run(loop), 0);
	assert_true(v.ran);
	assert_int_equal(v.wait_ret, -ECANCELED);
	assert_true(v.resumed - v.start < 2 * SEC);
	assert_later_cancelled(&v);
	assert_int_equal(urt_join(v.task, NULL), 0);
	urt_loop_destroy(loop);
}

static int return_5(void *arg)
{
	(void)arg;
	return 5;
}

/* Cancelling a finished, unjoined task is -ESRCH (and leaves it joinable);
 * cancelling NULL is -EINVAL. */
static void test_cancel_errors(void **state)
{
	urt_loop *loop = loop_new(NULL);
	urt_task *t;
	int result = 0;

	(void)state;
	assert_int_equal(urt_cancel(NULL), -EINVAL);
	spawn_ok(loop, &t, return_5, NULL);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_cancel(t), -ESRCH);
	assert_int_equal(urt_join(t, &result), 0);
	assert_int_equal(result, 5);
	urt_loop_destroy(loop);
}

/* A task parked in urt_join, cancelled: the join returns -ECANCELED before
 * the child ends, and the child stays joinable (here from outside). */
static void test_cancel_join(void **state)
{
	bool child_done = false;
	struct victim v = { .fd = -1, .child_done = &child_done };
	struct canceller c = { .v = &v, .delay_ns = 5 * MS, .ret = 1 };
	urt_loop *loop = loop_new(NULL);
	int result = 0;

	(void)state;
	spawn_ok(loop, &v.child, slow_child, &child_done);
	spawn_ok(loop, &v.task, join_victim, &v);
	spawn_ok(loop, NULL, canceller_task, &c);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(c.ret, 0);
	assert_int_equal(v.wait_ret, -ECANCELED);
	assert_false(v.child_done_seen);
	assert_later_cancelled(&v);
	assert_true(child_done);
	assert_int_equal(urt_join(v.child, &result), 0);
	assert_int_equal(result, 7);
	assert_int_equal(urt_join(v.task, NULL), 0);
	urt_loop_destroy(loop);
	check_tasks();
}

struct yielders {
	urt_task *a;
	int a_ret;      /* A's yield, cancelled while A was queued */
	int self_ret;   /* urt_cancel on oneself */
	int after_self; /* the yield after it */
};

static int yield_a(void *arg)
{
	struct yielders *y = arg;

	y->a_ret = urt_yield();
	return 0;
}

static int yield_b(void *arg)
{
	struct yielders *y = arg;

	/* A yielded before we ran: it is in the run queue, not parked. */
	TASK_CHECK(urt_cancel(y->a) == 0);
	y->self_ret = urt_cancel(urt_current_task());
	y->after_self = urt_yield();
	return 0;
}

/* urt_yield returns -ECANCELED in a cancelled task: cancelled while
 * queued by its yield, or cancelled by itself. */
static void test_cancel_yield(void **state)
{
	struct yielders y = { .a_ret = 1, .self_ret = 1, .after_self = 1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, &y.a, yield_a, &y);
	spawn_ok(loop, NULL, yield_b, &y);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(y.a_ret, -ECANCELED);
	assert_int_equal(y.self_ret, 0);
	assert_int_equal(y.after_self, -ECANCELED);
	assert_int_equal(urt_join(y.a, NULL), 0);
	urt_loop_destroy(loop);
	check_tasks();
}

struct race {
	struct victim v;
	int fds[2];
	ssize_t write_ret;
	int cancel_ret;
};

static int write_and_cancel(void *arg)
{
	struct race *r = arg;

	TASK_CHECK(urt_sleep_ns(5 * MS) == 0);
	r->write_ret = write(r->fds[1], "xyz", 3);
	r->cancel_ret = urt_cancel(r->v.task);
	return 0;
}

/* A cancel racing with the read's completion loses no data: either the
 * read returns the bytes, or it returns -ECANCELED and they stay in the
 * pipe. Either way the next wait is -ECANCELED. */
static void test_cancel_racing_completion(void **state)
{
	struct race r = { 0 };
	urt_loop *loop = loop_new(NULL);
	int got;

	(void)state;
	make_pipe(r.fds);
	r.v.fd = r.fds[0];
	spawn_ok(loop, &r.v.task, read_victim, &r.v);
	spawn_ok(loop, NULL, write_and_cancel, &r);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(r.write_ret, 3);
	assert_int_equal(r.cancel_ret, 0);
	got = r.v.wait_ret;
	if (got == -ECANCELED) {
		assert_pipe_holds(r.fds[0], "xyz", 3);
	} else {
		assert_int_equal(got, 3);
		assert_memory_equal(r.v.buf, "xyz", 3);
		assert_pipe_holds(r.fds[0], "", 0);
	}
	assert_later_cancelled(&r.v);
	assert_int_equal(urt_join(r.v.task, NULL), 0);
	urt_loop_destroy(loop);
	check_tasks();
	close_pipe(r.fds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cancel_sleep),
		cmocka_unit_test(test_cancel_read_parked),
		cmocka_unit_test(test_cancel_read_same_turn),
		cmocka_unit_test(test_cancel_before_start),
		cmocka_unit_test(test_cancel_errors),
		cmocka_unit_test(test_cancel_join),
		cmocka_unit_test(test_cancel_yield),
		cmocka_unit_test(test_cancel_racing_completion),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
