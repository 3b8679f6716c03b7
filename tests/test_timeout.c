/* Timeout scopes: every wait inside one shares its deadline and returns
 * -ETIMEDOUT once it passes; scopes nest; the scope whose deadline bound the
 * waits reports it when left; cancellation comes first. (I/O deadlines, the
 * linked timeouts, are in test_net.) Timing is checked from below only. */
#include "test_util.h"

struct sc {
	int sleep_short, sleep_cut, leave1;
	uint64_t cut_ms;
	int inner_leave, outer_leave, wait_in_inner;
	int outer_first_inner, outer_first_outer;
	int yield_res, join_res, joined, after_leave;
	int wrong_leave, null_enter, null_leave, right_leave;
	int cancel_res;
	urt_task *child;
};

static int long_child(void *arg)
{
	(void)arg;
	return urt_sleep_ns(50 * MS) == 0 ? 7 : -1;
}

static int scopes(void *arg)
{
	struct sc *s = arg;
	struct urt_timeout a, b;
	uint64_t t0;

	/* A sleep shorter than the scope ends normally; a longer one is cut
	 * at the deadline. */
	t0 = urt_now_ns(); /* before the deadline is set: a lower bound */
	TASK_CHECK(urt_timeout_enter(&a, 30 * MS) == 0);
	s->sleep_short = urt_sleep_ns(1 * MS);
	s->sleep_cut = urt_sleep_ns(10 * SEC);
	s->cut_ms = ms_since(t0);
	s->yield_res = urt_yield(); /* past the deadline: at once */
	s->leave1 = urt_timeout_leave(&a);
	s->after_leave = urt_sleep_ns(1 * MS); /* no deadline any more */

	/* Inner scope shorter: it reports; the outer does not. */
	TASK_CHECK(urt_timeout_enter(&a, 10 * SEC) == 0);
	TASK_CHECK(urt_timeout_enter(&b, 5 * MS) == 0);
	s->wait_in_inner = urt_sleep_ns(10 * SEC);
	s->inner_leave = urt_timeout_leave(&b);
	s->outer_leave = urt_timeout_leave(&a);

	/* Outer scope shorter: the inner inherits its deadline and does not
	 * report; the outer does. */
	TASK_CHECK(urt_timeout_enter(&a, 5 * MS) == 0);
	TASK_CHECK(urt_timeout_enter(&b, 10 * SEC) == 0);
	(void)urt_sleep_ns(10 * SEC);
	s->outer_first_inner = urt_timeout_leave(&b);
	s->outer_first_outer = urt_timeout_leave(&a);

	/* A join is cut at the deadline; the child goes on and is joined. */
	TASK_CHECK(urt_spawn(NULL, &s->child, long_child, NULL) == 0);
	TASK_CHECK(urt_timeout_enter(&a, 5 * MS) == 0);
	s->join_res = urt_join(s->child, NULL);
	(void)urt_timeout_leave(&a);
	TASK_CHECK(urt_join(s->child, &s->joined) == 0);

	/* Leaving out of order, or NULL, is refused. */
	TASK_CHECK(urt_timeout_enter(&a, 10 * SEC) == 0);
	TASK_CHECK(urt_timeout_enter(&b, 10 * SEC) == 0);
	s->wrong_leave = urt_timeout_leave(&a);
	s->null_enter = urt_timeout_enter(NULL, 1);
	s->null_leave = urt_timeout_leave(NULL);
	TASK_CHECK(urt_timeout_leave(&b) == 0);
	s->right_leave = urt_timeout_leave(&a);

	/* Cancellation comes first. */
	TASK_CHECK(urt_timeout_enter(&a, 0) == 0);
	TASK_CHECK(urt_cancel(urt_current_task()) == 0);
	s->cancel_res = urt_sleep_ns(1 * MS);
	(void)urt_timeout_leave(&a);
	return 0;
}

static void test_scopes(void **state)
{
	struct sc s = { 0 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, NULL, scopes, &s);
	run_and_destroy(loop);
	assert_int_equal(s.sleep_short, 0);
	assert_int_equal(s.sleep_cut, -ETIMEDOUT);
	assert_true(s.cut_ms >= 30); /* the deadline, 30 ms after entering */
	assert_int_equal(s.yield_res, -ETIMEDOUT);
	assert_int_equal(s.leave1, -ETIMEDOUT);
	assert_int_equal(s.after_leave, 0);
	assert_int_equal(s.wait_in_inner, -ETIMEDOUT);
	assert_int_equal(s.inner_leave, -ETIMEDOUT);
	assert_int_equal(s.outer_leave, 0);
	assert_int_equal(s.outer_first_inner, 0);
	assert_int_equal(s.outer_first_outer, -ETIMEDOUT);
	assert_int_equal(s.join_res, -ETIMEDOUT);
	assert_int_equal(s.joined, 7);
	assert_int_equal(s.wrong_leave, -EINVAL);
	assert_int_equal(s.null_enter, -EINVAL);
	assert_int_equal(s.null_leave, -EINVAL);
	assert_int_equal(s.right_leave, 0);
	assert_int_equal(s.cancel_res, -ECANCELED);
}

/* A wait that ended just before its deadline, in the same turn in which
 * the deadline passes: the child ends (waking its joiner) only once the
 * joiner's deadline is past, before the loop looks at the timers. The
 * joiner's timer must have gone with the wake-up: the join succeeded. */
struct race {
	uint64_t deadline;
	int join_res, result;
};

static int late_child(void *arg)
{
	struct race *r = arg;

	urt_sleep_ns(2 * MS);
	while (urt_now_ns() <= r->deadline + 1 * MS)
		; /* past the joiner's deadline, without a wait */
	return 3;
}

static int racing_joiner(void *arg)
{
	struct race *r = arg;
	struct urt_timeout to;
	urt_task *child;

	TASK_CHECK(urt_spawn(NULL, &child, late_child, r) == 0);
	/* 50 ms: the child's 2 ms sleep ends well before it, even on a
	 * loaded machine (5 ms was crossed once, in a CI run under load). */
	TASK_CHECK(urt_timeout_enter(&to, 50 * MS) == 0);
	r->deadline = to.at;
	r->join_res = urt_join(child, &r->result);
	(void)urt_timeout_leave(&to);
	if (r->join_res)
		TASK_CHECK(urt_join(child, &r->result) == 0);
	return 0;
}

static void test_wake_beats_deadline(void **state)
{
	struct race r = { 0 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, NULL, racing_joiner, &r);
	run_and_destroy(loop);
	assert_int_equal(r.join_res, 0);
	assert_int_equal(r.result, 3);
}

static void test_outside_task(void **state)
{
	struct urt_timeout a;

	(void)state;
	assert_int_equal(urt_timeout_enter(&a, 1), -EPERM);
	assert_int_equal(urt_timeout_leave(&a), -EPERM);
}

/* Offloaded work: urt_job_run's wait ends at the task's deadline (the pool
 * owns arg and runs dtor); urt_to_thread's does not (fn cannot be stopped),
 * but once the deadline has passed it does not start. */
struct work {
	int ran;
	int freed;
};

static void slow(struct work *w)
{
	usleep(40 * 1000);
	w->ran++;
}

static void freed(struct work *w)
{
	w->freed++;
}

struct jobc {
	struct work jw, tw, late;
	int job_res, thread_res, late_res;
};

static int jobs(void *arg)
{
	struct jobc *c = arg;
	struct urt_timeout a;

	TASK_CHECK(urt_timeout_enter(&a, 5 * MS) == 0);
	c->job_res = urt_job_run(slow, &c->jw, freed, 10 * SEC);
	c->thread_res = urt_to_thread(slow, &c->tw); /* past the deadline */
	(void)urt_timeout_leave(&a);
	TASK_CHECK(urt_timeout_enter(&a, 5 * MS) == 0);
	/* Started before the deadline: runs to its end, returns 0. */
	c->late_res = urt_to_thread(slow, &c->late);
	(void)urt_timeout_leave(&a);
	return 0;
}

static void test_offload(void **state)
{
	static struct jobc c; /* the pool may touch jw until the loop is gone */
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, NULL, jobs, &c);
	run_and_destroy(loop);
	assert_int_equal(c.job_res, -ETIMEDOUT);
	assert_int_equal(c.jw.ran, 1);   /* it ran to its end meanwhile */
	assert_int_equal(c.jw.freed, 1); /* and the pool ran dtor once */
	assert_int_equal(c.thread_res, -ETIMEDOUT);
	assert_int_equal(c.tw.ran, 0);
	assert_int_equal(c.late_res, 0);
	assert_int_equal(c.late.ran, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scopes),
		cmocka_unit_test(test_wake_beats_deadline),
		cmocka_unit_test(test_outside_task),
		cmocka_unit_test(test_offload),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
