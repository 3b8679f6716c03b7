/* Bad input, a table of cases each with its exact result. Every case runs
 * against one loop, inside a task or outside as its row says; after each,
 * the loop must still run a new task to its end. The README's table of bad
 * input is this table, with test_spawn_during_destroy's row. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include <cmocka.h>

#include <urt.h>

static urt_loop *loop;      /* the loop every case uses */
static urt_task *finished;  /* a joinable task that has returned */
static urt_task *unfinished;/* a task parked until the end of the test */

/* ---- the cases ---- */

static long create_null_out(void) { return urt_loop_create(NULL, NULL); }

static long create_bad_flags(void)
{
	struct urt_loop_opts o = { .flags = 1u << 30 };
	urt_loop *l;

	return urt_loop_create(&l, &o);
}

static long create_huge_stack(void)
{
	struct urt_loop_opts o = { .stack_size = (size_t)2 << 30 };
	urt_loop *l;

	return urt_loop_create(&l, &o);
}

/* The loop's own pool starts at its first offload; its options are
 * refused at create all the same. */
static long create_bad_pool_opts(unsigned threads, unsigned flags)
{
	struct urt_pool_opts po = { .threads = threads, .flags = flags };
	struct urt_loop_opts o = { .pool_opts = &po };
	urt_loop *l;

	return urt_loop_create(&l, &o);
}

static long create_pool_5000_threads(void) { return create_bad_pool_opts(5000, 0); }
static long create_pool_bad_flag(void) { return create_bad_pool_opts(0, 1u << 30); }
static long run_null(void) { return urt_loop_run(NULL); }
static long destroy_null(void) { urt_loop_destroy(NULL); return 0; }
static long stop_null(void) { return urt_loop_stop(NULL); }

static int nothing(void *arg)
{
	(void)arg;
	return 0;
}

static long spawn_null_fn(void)
{
	urt_task *t;

	return (urt_spawn)(loop, &t, NULL, NULL); /* unchecked: a NULL fn does not compile */
}

static long spawn_no_loop_outside(void) { return urt_spawn(NULL, NULL, nothing, NULL); }
static long join_null(void) { return urt_join(NULL, NULL); }
static long cancel_null(void) { return urt_cancel(NULL); }
static long cancel_finished(void) { return urt_cancel(finished); }
static long name_null_task_outside(void) { return urt_task_set_name(NULL, "x"); }
static long name_null_name(void) { return urt_task_set_name(unfinished, NULL); }
static long sleep_outside(void) { return urt_sleep_ns(1000); }

static long read_outside(void)
{
	char c;

	return (long)(urt_read(0, &c, 1, -1));
}

static long yield_outside(void) { return urt_yield(); }
static long join_unfinished_outside(void) { return urt_join(unfinished, NULL); }

static void add_one(int *p)
{
	(*p)++;
}

static long offload_outside(void)
{
	int x = 0;

	return urt_to_thread(add_one, &x);
}

static long owned_job_outside(void)
{
	int x = 0;

	return urt_job_run(add_one, &x, NULL, 0);
}

static long offload_null_fn(void) { return urt__to_thread(NULL, NULL); }
static long owned_job_null_fn(void) { return urt__job_run(NULL, NULL, NULL, 0); }

static long read_fd_minus_one(void)
{
	char c;

	return (long)(urt_read(-1, &c, 1, 0));
}

static long read_closed_fd(void)
{
	char c;
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	close(fd);
	return (long)(urt_read(fd, &c, 1, 0));
}

static long read_directory(void)
{
	char buf[16];
	int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long r = urt_read(fd, buf, sizeof(buf), 0);

	close(fd);
	return r;
}

static long read_zero_len(void)
{
	int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	long r = urt_read(fd, NULL, 0, 0);

	close(fd);
	return r;
}

static long read_len_above_ssize_max(void)
{
	char c;

	return (long)(urt_read(0, &c, (size_t)SSIZE_MAX + 1, 0));
}

static long read_null_buf(void)
{
	int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	long r = urt_read(fd, NULL, 16, 0);

	close(fd);
	return r;
}

static long run_inside_task(void) { return urt_loop_run(loop); }
static long join_self(void) { return urt_join(urt_current_task(), NULL); }

static long spawn_detached_and_join(void);

struct other_thread {
	long spawn, run, cancel, stop;
};

static void *from_other_thread(void *arg)
{
	struct other_thread *o = arg;

	o->spawn = urt_spawn(loop, NULL, nothing, NULL);
	o->run = urt_loop_run(loop);
	o->cancel = urt_cancel(unfinished);
	o->stop = urt_loop_stop(loop);
	return NULL;
}

/* Every call on the loop from a thread that does not own it: -EPERM each. */
static long other_thread(void)
{
	struct other_thread o = { 1, 1, 1, 1 };
	pthread_t th;

	if (pthread_create(&th, NULL, from_other_thread, &o))
		return -1000;
	pthread_join(th, NULL);
	if (o.spawn == -EPERM && o.run == -EPERM && o.cancel == -EPERM && o.stop == -EPERM)
		return -EPERM;
	return -1001;
}

static long pool_destroy_null(void) { return urt_pool_destroy(NULL); }

static long pool_bad_flags(void)
{
	struct urt_pool_opts o = { .flags = 1u << 30 };
	urt_pool *p;

	return urt_pool_create(&p, &o);
}

static long pool_too_many_threads(void)
{
	struct urt_pool_opts o = { .threads = 1025 };
	urt_pool *p;

	return urt_pool_create(&p, &o);
}

static long pool_null_out(void) { return urt_pool_create(NULL, NULL); }

struct row {
	const char *what;
	long (*call)(void);
	bool in_task;
	long want;
};

static const struct row rows[] = {
	{ "urt_loop_create(NULL out)", create_null_out, false, -EINVAL },
	{ "urt_loop_create, unknown flag", create_bad_flags, false, -EINVAL },
	{ "urt_loop_create, 2 GiB stacks", create_huge_stack, false, -EINVAL },
	{ "urt_loop_create, pool_opts of 5,000 threads", create_pool_5000_threads, false, -EINVAL },
	{ "urt_loop_create, pool_opts with an unknown flag", create_pool_bad_flag, false, -EINVAL },
	{ "urt_loop_run(NULL)", run_null, false, -EINVAL },
	{ "urt_loop_destroy(NULL)", destroy_null, false, 0 },
	{ "urt_loop_stop(NULL)", stop_null, false, -EINVAL },
	{ "urt_spawn, NULL fn", spawn_null_fn, false, -EINVAL },
	{ "urt_spawn, NULL loop outside a loop", spawn_no_loop_outside, false, -EINVAL },
	{ "urt_join(NULL)", join_null, false, -EINVAL },
	{ "urt_cancel(NULL)", cancel_null, false, -EINVAL },
	{ "urt_cancel, a finished task", cancel_finished, false, -ESRCH },
	{ "urt_task_set_name(NULL task) outside a task", name_null_task_outside, false, -EINVAL },
	{ "urt_task_set_name, NULL name", name_null_name, false, -EINVAL },
	{ "urt_sleep_ns outside a task", sleep_outside, false, -EPERM },
	{ "urt_read outside a task", read_outside, false, -EPERM },
	{ "urt_yield outside a task", yield_outside, false, -EPERM },
	{ "urt_join of an unfinished task, outside a task", join_unfinished_outside, false, -EPERM },
	{ "urt_to_thread outside a task", offload_outside, false, -EPERM },
	{ "urt_job_run outside a task", owned_job_outside, false, -EPERM },
	{ "urt_to_thread, NULL fn", offload_null_fn, true, -EINVAL },
	{ "urt_job_run, NULL fn", owned_job_null_fn, true, -EINVAL },
	{ "urt_read, fd -1", read_fd_minus_one, true, -EBADF },
	{ "urt_read, a closed fd", read_closed_fd, true, -EBADF },
	{ "urt_read, a directory", read_directory, true, -EISDIR },
	{ "urt_read, length 0", read_zero_len, true, 0 },
	{ "urt_read, length above SSIZE_MAX", read_len_above_ssize_max, true, -EINVAL },
	{ "urt_read, NULL buffer", read_null_buf, true, -EFAULT },
	{ "urt_loop_run inside a task", run_inside_task, true, -EBUSY },
	{ "urt_join of oneself", join_self, true, -EDEADLK },
	{ "urt_join of a detached task", spawn_detached_and_join, true, -EINVAL },
	{ "the loop used from another thread", other_thread, false, -EPERM },
	{ "urt_pool_create(NULL out)", pool_null_out, false, -EINVAL },
	{ "urt_pool_create, unknown flag", pool_bad_flags, false, -EINVAL },
	{ "urt_pool_create, 1,025 threads", pool_too_many_threads, false, -EINVAL },
	{ "urt_pool_destroy(NULL)", pool_destroy_null, false, -EINVAL },
};

/* ---- running them ---- */

struct in_task {
	long (*call)(void);
	long got;
};

static int run_case(void *arg)
{
	struct in_task *c = arg;

	c->got = c->call();
	return 0;
}

/* The only handle a detached task has is its own: it joins itself. */
static int detached_joiner(void *arg)
{
	long *got = arg;

	*got = urt_join(urt_current_task(), NULL);
	return 0;
}

static long spawn_detached_and_join(void)
{
	long got = 1;

	if (urt_spawn(NULL, NULL, detached_joiner, &got))
		return -1002;
	while (got == 1)
		urt_yield();
	return got;
}

static int count_up(void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static int park_until_cancelled(void *arg)
{
	(void)arg;
	while (urt_sleep_ns(UINT64_MAX) == 0)
		;
	return 0;
}

static void test_table(void **state)
{
	int alive = 0;

	(void)state;
	assert_int_equal(urt_loop_create(&loop, NULL), 0);
	assert_int_equal(urt_spawn(loop, &finished, nothing, NULL), 0);
	assert_int_equal(urt_spawn(loop, &unfinished, park_until_cancelled, NULL), 0);
	assert_int_equal(urt_loop_stop(loop), 0);
	assert_int_equal(urt_loop_run(loop), -EINTR);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		long got;

		if (r->in_task) {
			struct in_task c = { r->call, 1 };
			urt_task *t;

			assert_int_equal(urt_spawn(loop, &t, run_case, &c), 0);
			assert_int_equal(urt_loop_stop(loop), 0);
			/* stop ends the run once the case's task has returned */
			while (urt_loop_run(loop) == -EINTR && c.got == 1)
				assert_int_equal(urt_loop_stop(loop), 0);
			assert_int_equal(urt_join(t, NULL), 0);
			got = c.got;
		} else {
			got = r->call();
		}
		if (got != r->want)
			fail_msg("%s: got %ld, want %ld", r->what, got, r->want);
		/* The loop still runs a new task to its end. */
		assert_int_equal(urt_spawn(loop, NULL, count_up, &alive), 0);
		assert_int_equal(urt_loop_stop(loop), 0);
		assert_int_equal(urt_loop_run(loop), -EINTR);
		assert_int_equal(alive, (int)i + 1);
	}
	assert_int_equal(urt_join(finished, NULL), 0);
	urt_loop_destroy(loop); /* cancels the parked task */
}

/* A task that destroy cancels tries to spawn: -ESHUTDOWN. */
static int spawn_when_cancelled(void *arg)
{
	long *got = arg;

	urt_sleep_ns(UINT64_MAX);
	*got = urt_spawn(NULL, NULL, nothing, NULL);
	return 0;
}

static void test_spawn_during_destroy(void **state)
{
	long got = 1;

	(void)state;
	assert_int_equal(urt_loop_create(&loop, NULL), 0);
	assert_int_equal(urt_spawn(loop, NULL, spawn_when_cancelled, &got), 0);
	assert_int_equal(urt_loop_stop(loop), 0);
	assert_int_equal(urt_loop_run(loop), -EINTR);
	urt_loop_destroy(loop);
	assert_int_equal(got, -ESHUTDOWN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_spawn_during_destroy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
