/* Sleeps: never early, deadline order, re-arming, and waits outside a task. */
#include <pthread.h>
#include <time.h>

#include "test_util.h"

struct sleeper {
	uint64_t ns;       /* how long to sleep */
	int ret;           /* what urt_sleep_ns returned */
	uint64_t start;    /* urt_now_ns before the sleep */
	uint64_t woke;     /* urt_now_ns after it */
	int *order;        /* when set, appends ns / MS here at wake-up */
	size_t *order_len;
};

static int sleeper_task(void *arg)
{
	struct sleeper *s = arg;

	s->start = urt_now_ns();
	s->ret = urt_sleep_ns(s->ns);
	s->woke = urt_now_ns();
	if (s->order)
		s->order[(*s->order_len)++] = (int)(s->ns / MS);
	return 0;
}

/* Did s sleep at least its length, and return 0? */
static bool slept_fully(const struct sleeper *s)
{
	return s->ret == 0 && s->woke - s->start >= s->ns;
}

/* A 10 ms sleep returns 0 after at least 10 ms (and well under 2 s). */
static void test_sleep_10ms(void **state)
{
	struct sleeper s = { .ns = 10 * MS, .ret = 1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, NULL, sleeper_task, &s);
	run_and_destroy(loop);
	assert_int_equal(s.ret, 0);
	assert_true(s.woke - s.start >= 10 * MS);
	assert_true(s.woke - s.start < 2 * SEC);
}

/* A zero-length sleep returns 0. */
static void test_sleep_zero(void **state)
{
	struct sleeper s = { .ns = 0, .ret = 1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, NULL, sleeper_task, &s);
	run_and_destroy(loop);
	assert_int_equal(s.ret, 0);
}

/* ThreadSanitizer keeps a large state per fiber (one per task) and runs
 * out of memory near 10,000 of them: it checks 1,000. */
#if defined(__SANITIZE_THREAD__)
#define MANY 1000
#else
#define MANY 10000
#endif

/* 10,000 sleepers of 1..50 ms all wake, none before its deadline. */
static void test_many_sleepers(void **state)
{
	struct sleeper *s = calloc(MANY, sizeof(*s));
	urt_loop *loop = loop_new(NULL);
	uint64_t start = urt_now_ns();
	int full = 0;

	(void)state;
	assert_non_null(s);
	for (int i = 0; i < MANY; i++) {
		s[i].ns = (uint64_t)(1 + (i * 7) % 50) * MS;
		s[i].ret = 1;
		spawn_ok(loop, NULL, sleeper_task, &s[i]);
	}
	run_and_destroy(loop);
	for (int i = 0; i < MANY; i++)
		full += slept_fully(&s[i]);
	assert_int_equal(full, MANY);
	assert_true(ms_since(start) < 10000);
	free(s);
}

/* Sleepers of different lengths, spawned out of order, wake in deadline
 * order. */
static void test_deadline_order(void **state)
{
	static const int ms[] = { 50, 10, 40, 20, 30 };
	struct sleeper s[5];
	int order[5] = { 0 };
	size_t n = 0;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	for (int i = 0; i < 5; i++) {
		s[i] = (struct sleeper){ .ns = (uint64_t)ms[i] * MS, .ret = 1,
					 .order = order, .order_len = &n };
		spawn_ok(loop, NULL, sleeper_task, &s[i]);
	}
	run_and_destroy(loop);
	assert_int_equal(n, 5);
	assert_int_equal(order[0], 10);
	assert_int_equal(order[1], 20);
	assert_int_equal(order[2], 30);
	assert_int_equal(order[3], 40);
	assert_int_equal(order[4], 50);
	for (int i = 0; i < 5; i++)
		assert_true(slept_fully(&s[i]));
}

struct rearm {
	int pipe[2];
	uint64_t start;
	struct sleeper long_sleep;  /* 500 ms, armed first */
	struct sleeper short_sleep; /* 5 ms, added while the 500 ms is armed */
	ssize_t read_ret;
	ssize_t write_ret; /* the thread's write: no cmocka asserts there */
	int join_ret;
};

/* Writes one byte into the pipe after 20 ms: the only thing besides the
 * 500 ms timeout that can wake the loop. */
static void *late_writer(void *arg)
{
	struct rearm *r = arg;
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	r->write_ret = write(r->pipe[1], "x", 1);
	return NULL;
}

static int rearm_task(void *arg)
{
	struct rearm *r = arg;
	urt_task *t;
	char c;

	/* While this read is parked, the loop waits with only the 500 ms
	 * timeout armed. */
	r->read_ret = urt_read(r->pipe[0], &c, 1, -1);
	TASK_CHECK(urt_spawn(NULL, &t, sleeper_task, &r->short_sleep) == 0);
	r->join_ret = urt_join(t, NULL);
	return 0;
}

/* A sleep whose deadline is earlier than the armed timeout's wakes on time,
 * not when the armed one fires. */
static void test_earlier_deadline(void **state)
{
	struct rearm r = {
		.long_sleep = { .ns = 500 * MS, .ret = 1 },
		.short_sleep = { .ns = 5 * MS, .ret = 1 },
		.read_ret = -1,
		.join_ret = 1,
	};
	urt_loop *loop = loop_new(NULL);
	pthread_t th;

	(void)state;
	make_pipe(r.pipe);
	spawn_ok(loop, NULL, sleeper_task, &r.long_sleep);
	spawn_ok(loop, NULL, rearm_task, &r);
	r.start = urt_now_ns();
	assert_int_equal(pthread_create(&th, NULL, late_writer, &r), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(r.write_ret, 1);
	assert_int_equal(r.read_ret, 1);
	assert_int_equal(r.join_ret, 0);
	assert_true(slept_fully(&r.short_sleep));
	assert_true(r.short_sleep.woke - r.start < 400 * MS);
	assert_true(slept_fully(&r.long_sleep));
	close_pipe(r.pipe);
}

struct busy {
	bool woke;        /* set by the sleeper */
	bool gave_up;     /* the yielder stopped after 2 s */
	struct sleeper s;
};

static int busy_sleeper(void *arg)
{
	struct busy *b = arg;

	sleeper_task(&b->s);
	b->woke = true;
	return 0;
}

static int busy_yielder(void *arg)
{
	struct busy *b = arg;
	uint64_t start = urt_now_ns();

	while (!b->woke) {
		if (urt_now_ns() - start > 2 * SEC) {
			b->gave_up = true;
			break;
		}
		TASK_CHECK(urt_yield() == 0);
	}
	return 0;
}

/* A sleeper wakes while another task keeps the run queue busy yielding. */
static void test_sleep_while_busy(void **state)
{
	struct busy b = { .s = { .ns = 10 * MS, .ret = 1 } };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, NULL, busy_sleeper, &b);
	spawn_ok(loop, NULL, busy_yielder, &b);
	run_and_destroy(loop);
	assert_false(b.gave_up);
	assert_true(b.woke);
	assert_true(slept_fully(&b.s));
}

/* Every wait called outside a task returns -EPERM at once. */
static void test_waits_outside_task(void **state)
{
	urt_loop *loop = loop_new(NULL);
	uint64_t start = urt_now_ns();
	urt_task *t;
	char buf[4] = "abc";
	int fds[2];

	(void)state;
	make_pipe(fds);
	assert_int_equal(urt_sleep_ns(10 * SEC), -EPERM);
	assert_int_equal(urt_sleep_ns(0), -EPERM);
	assert_int_equal(urt_read(fds[0], buf, sizeof(buf), -1), -EPERM);
	assert_string_equal(buf, "abc");
	assert_int_equal(urt_yield(), -EPERM);
	spawn_ok(loop, &t, sleeper_task, &(struct sleeper){ .ns = 0 });
	assert_int_equal(urt_join(t, NULL), -EPERM);
	assert_true(ms_since(start) < 2000);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_join(t, NULL), 0);
	urt_loop_destroy(loop);
	close_pipe(fds);
}

/* A cancelled sleep leaves the loop's timeout armed in the kernel: that
 * timeout must not hide a deadlock until the sleep's deadline. */
struct stale {
	urt_task *sleeper;
	urt_task *peer[2];
	int fd;
	int sleep_ret;
	ssize_t read_ret;
	int cancel_ret;
};

static int stale_sleeper(void *arg)
{
	struct stale *s = arg;

	s->sleep_ret = urt_sleep_ns(10 * SEC);
	return 0;
}

/* Woken by its read (a regular file: complete at the first submit, while
 * the loop waits with the timeout armed for the 10 s sleep), it cancels the
 * sleeper: the heap is empty, the timeout is stale. */
static int stale_canceller(void *arg)
{
	struct stale *s = arg;
	char c;

	s->read_ret = urt_read(s->fd, &c, 1, 0);
	s->cancel_ret = urt_cancel(s->sleeper);
	return 0;
}

static int stale_join_1(void *arg)
{
	struct stale *s = arg;

	return urt_join(s->peer[1], NULL);
}

static int stale_join_0(void *arg)
{
	struct stale *s = arg;

	return urt_join(s->peer[0], NULL);
}

/* Two tasks joining each other are reported at once (-EDEADLK), not when
 * a cancelled sleep's timeout would have fired. */
static void test_deadlock_after_cancelled_sleep(void **state)
{
	struct stale s = { .sleep_ret = 1, .read_ret = -1, .cancel_ret = 1 };
	urt_loop *loop = loop_new(NULL);
	uint64_t start;

	(void)state;
	s.fd = temp_file("x", 1);
	spawn_ok(loop, &s.sleeper, stale_sleeper, &s);
	spawn_ok(loop, NULL, stale_canceller, &s);
	spawn_ok(loop, &s.peer[0], stale_join_1, &s);
	spawn_ok(loop, &s.peer[1], stale_join_0, &s);
	start = urt_now_ns();
	assert_int_equal(urt_loop_run(loop), -EDEADLK);
	assert_true(ms_since(start) < 2000); /* not at the 10 s deadline */
	assert_int_equal(s.read_ret, 1);
	assert_int_equal(s.cancel_ret, 0);
	assert_int_equal(s.sleep_ret, -ECANCELED);
	urt_loop_destroy(loop);
	assert_int_equal(close(s.fd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sleep_10ms),
		cmocka_unit_test(test_sleep_zero),
		cmocka_unit_test(test_many_sleepers),
		cmocka_unit_test(test_deadline_order),
		cmocka_unit_test(test_earlier_deadline),
		cmocka_unit_test(test_sleep_while_busy),
		cmocka_unit_test(test_waits_outside_task),
		cmocka_unit_test(test_deadlock_after_cancelled_sleep),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
