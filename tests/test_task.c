/* Tasks: run, spawn, join, detach, yield order, and the errors of each. */
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>

#include "test_util.h"

static int return_42(void *arg)
{
	(void)arg;
	return 42;
}

/* Returns its argument, an int smuggled in the pointer. */
static int return_arg(void *arg)
{
	return (int)(intptr_t)arg;
}

/* urt_run hands main's return value back, and accepts a NULL result. */
static void test_run_returns_result(void **state)
{
	int result = 0;

	(void)state;
	assert_int_equal(urt_run(return_42, NULL, &result), 0);
	assert_int_equal(result, 42);
	assert_int_equal(urt_run(return_42, NULL, NULL), 0);
	assert_int_equal(urt_run(NULL, NULL, &result), -EINVAL);
}

struct parent {
	int child_arg;
	int spawn_ret;
	int join_ret;
	int child_result;
};

/* Spawns a child on the current loop and joins it. */
static int parent_task(void *arg)
{
	struct parent *p = arg;
	urt_task *child;

	p->spawn_ret = urt_spawn(NULL, &child, return_arg, (void *)(intptr_t)p->child_arg);
	if (p->spawn_ret)
		return p->spawn_ret;
	p->join_ret = urt_join(child, &p->child_result);
	return p->child_result + 1;
}

/* A task spawned from outside before the run spawns a child from inside;
 * join inside returns the child's result, join outside the parent's. */
static void test_spawn_and_join(void **state)
{
	struct parent p = { .child_arg = 7 };
	urt_loop *loop = loop_new(NULL);
	urt_task *t;
	int result = 0;

	(void)state;
	spawn_ok(loop, &t, parent_task, &p);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(p.spawn_ret, 0);
	assert_int_equal(p.join_ret, 0);
	assert_int_equal(p.child_result, 7);
	/* Finished: joins from outside any task. */
	assert_int_equal(urt_join(t, &result), 0);
	assert_int_equal(result, 8);
	urt_loop_destroy(loop);
}

/* A finished task joins from outside with a NULL result too. */
static void test_join_finished_outside(void **state)
{
	urt_loop *loop = loop_new(NULL);
	urt_task *t;

	(void)state;
	spawn_ok(loop, &t, return_42, NULL);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_join(t, NULL), 0);
	urt_loop_destroy(loop);
}

static int detached_count;

static int count_task(void *arg)
{
	(void)arg;
	TASK_CHECK(urt_yield() == 0);
	detached_count++;
	return 0;
}

/* Spawns two detached children, which outlive it. */
static int spawn_two_detached(void *arg)
{
	(void)arg;
	TASK_CHECK(urt_spawn(NULL, NULL, count_task, NULL) == 0);
	TASK_CHECK(urt_spawn(urt_current_loop(), NULL, count_task, NULL) == 0);
	detached_count++;
	return 0;
}

/* Detached tasks, spawned outside and inside, all run to completion and the
 * run waits for them. */
static void test_detached_complete(void **state)
{
	urt_loop *loop = loop_new(NULL);

	(void)state;
	detached_count = 0;
	for (int i = 0; i < 10; i++)
		spawn_ok(loop, NULL, spawn_two_detached, NULL);
	run_and_destroy(loop);
	assert_int_equal(detached_count, 30);
}

static char trace[64];
static size_t trace_len;

static void trace_add(char who, int step)
{
	if (trace_len + 2 < sizeof(trace)) {
		trace[trace_len++] = who;
		trace[trace_len++] = (char)('0' + step);
		trace[trace_len] = '\0';
	}
}

static void trace_reset(void)
{
	trace_len = 0;
	trace[0] = '\0';
}

/* Records its letter (the argument) and step three times, yielding between. */
static int yielder(void *arg)
{
	char who = (char)(intptr_t)arg;

	for (int i = 1; i <= 3; i++) {
		trace_add(who, i);
		if (i < 3)
			TASK_CHECK(urt_yield() == 0);
	}
	return 0;
}

/* Two yielding tasks interleave exactly. */
static void test_yield_order(void **state)
{
	urt_loop *loop = loop_new(NULL);

	(void)state;
	trace_reset();
	spawn_ok(loop, NULL, yielder, (void *)'A');
	spawn_ok(loop, NULL, yielder, (void *)'B');
	run_and_destroy(loop);
	assert_string_equal(trace, "A1B1A2B2A3B3");
}

static int trace_once(void *arg)
{
	trace_add((char)(intptr_t)arg, 1);
	return 0;
}

/* Spawns C, then goes on: C first runs after the spawner parks (FIFO). */
static int spawn_then_yield(void *arg)
{
	(void)arg;
	trace_add('S', 1);
	TASK_CHECK(urt_spawn(NULL, NULL, trace_once, (void *)'C') == 0);
	trace_add('S', 2);
	TASK_CHECK(urt_yield() == 0);
	trace_add('S', 3);
	return 0;
}

/* A spawned task runs after the tasks already ready, in spawn order. */
static void test_spawn_order(void **state)
{
	urt_loop *loop = loop_new(NULL);

	(void)state;
	trace_reset();
	spawn_ok(loop, NULL, trace_once, (void *)'A');
	spawn_ok(loop, NULL, spawn_then_yield, NULL);
	spawn_ok(loop, NULL, trace_once, (void *)'B');
	run_and_destroy(loop);
	assert_string_equal(trace, "A1S1S2B1C1S3");
}

/* A loop runs again after a run has returned, with tasks spawned between. */
static void test_run_again(void **state)
{
	urt_loop *loop = loop_new(NULL);
	urt_task *t;
	int result = 0;

	(void)state;
	for (int i = 0; i < 3; i++) {
		spawn_ok(loop, &t, return_arg, (void *)(intptr_t)i);
		assert_int_equal(urt_loop_run(loop), 0);
		assert_int_equal(urt_join(t, &result), 0);
		assert_int_equal(result, i);
	}
	urt_loop_destroy(loop);
}

struct join_errs {
	urt_task *target;  /* a task to join */
	int self_ret;      /* urt_join(self) */
	int detached_ret;  /* urt_join of a detached task */
	int second_ret;    /* a second joiner of target */
	int first_ret;     /* the first joiner of target */
	int xdev_ret;      /* urt_join of another loop's task */
	urt_task *detached;
	urt_task *foreign;
};

/* Detached: publishes its handle, stays alive for two turns. urt_spawn
 * gives no handle for a detached task, so it can only be named from inside
 * (urt_current_task) and joined by tasks while it lives. */
static int detached_alive(void *arg)
{
	struct join_errs *e = arg;

	e->detached = urt_current_task();
	TASK_CHECK(urt_join(e->detached, NULL) == -EINVAL);
	TASK_CHECK(urt_yield() == 0);
	TASK_CHECK(urt_yield() == 0);
	return 0;
}

static int sleep_20ms(void *arg)
{
	(void)arg;
	TASK_CHECK(urt_sleep_ns(20 * MS) == 0);
	return 3;
}

static int first_joiner(void *arg)
{
	struct join_errs *e = arg;
	int result = 0;

	e->first_ret = urt_join(e->target, &result);
	TASK_CHECK(result == 3);
	return 0;
}

static int join_checker(void *arg)
{
	struct join_errs *e = arg;

	e->self_ret = urt_join(urt_current_task(), NULL);
	/* detached_alive ran in this turn, before us: it is alive. */
	e->detached_ret = urt_join(e->detached, NULL);
	/* first_joiner parked in its join before we ran. */
	e->second_ret = urt_join(e->target, NULL);
	e->xdev_ret = urt_join(e->foreign, NULL);
	return 0;
}

/* urt_join's errors: NULL, detached, being joined -> -EINVAL; oneself ->
 * -EDEADLK; unfinished from outside -> -EPERM; another loop's -> -EXDEV. */
static void test_join_errors(void **state)
{
	struct join_errs e = { 0 };
	urt_loop *loop = loop_new(NULL), *other = loop_new(NULL);
	urt_task *checker, *unfinished;

	(void)state;
	assert_int_equal(urt_join(NULL, NULL), -EINVAL);
	spawn_ok(other, &e.foreign, return_42, NULL);
	spawn_ok(loop, &e.target, sleep_20ms, NULL);
	spawn_ok(loop, NULL, detached_alive, &e);
	spawn_ok(loop, NULL, first_joiner, &e);
	spawn_ok(loop, &checker, join_checker, &e);
	spawn_ok(loop, &unfinished, return_42, NULL);
	assert_int_equal(urt_join(unfinished, NULL), -EPERM);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(e.self_ret, -EDEADLK);
	assert_int_equal(e.detached_ret, -EINVAL);
	assert_int_equal(e.second_ret, -EINVAL);
	assert_int_equal(e.first_ret, 0);
	assert_int_equal(e.xdev_ret, -EXDEV);
	/* The failed joins left the handles valid. */
	assert_int_equal(urt_join(checker, NULL), 0);
	assert_int_equal(urt_join(unfinished, NULL), 0);
	urt_loop_destroy(loop);
	/* other never ran: destroy runs its task and frees the handle. */
	urt_loop_destroy(other);
	check_tasks();
}

struct loop_seen {
	urt_loop *loop;
	urt_task *task;
	int run_ret;
	int run_null_ret;
};

static int see_loop(void *arg)
{
	struct loop_seen *s = arg;

	s->loop = urt_current_loop();
	s->task = urt_current_task();
	s->run_ret = urt_loop_run(s->loop);
	s->run_null_ret = urt_loop_run(NULL);
	return 0;
}

/* urt_current_loop/task: NULL outside, the running ones inside; running a
 * loop from inside one of its tasks is -EBUSY. */
static void test_current_loop(void **state)
{
	struct loop_seen s = { 0 };
	urt_loop *loop = loop_new(NULL);
	urt_task *t;

	(void)state;
	assert_null(urt_current_loop());
	assert_null(urt_current_task());
	spawn_ok(loop, &t, see_loop, &s);
	assert_null(urt_current_loop());
	assert_int_equal(urt_loop_run(loop), 0);
	assert_null(urt_current_loop());
	assert_null(urt_current_task());
	assert_ptr_equal(s.loop, loop);
	assert_ptr_equal(s.task, t);
	assert_int_equal(s.run_ret, -EBUSY);
	assert_int_equal(s.run_null_ret, -EINVAL);
	assert_int_equal(urt_join(t, NULL), 0);
	urt_loop_destroy(loop);
}

/* urt_spawn: NULL fn and NULL loop outside a loop are -EINVAL. */
static void test_spawn_errors(void **state)
{
	urt_loop *loop = loop_new(NULL);
	urt_task *t;

	(void)state;
	assert_int_equal((urt_spawn)(loop, &t, NULL, NULL), -EINVAL); /* unchecked: the run-time check */
	assert_int_equal(urt_spawn(NULL, &t, return_42, NULL), -EINVAL);
	assert_int_equal(urt_spawn(NULL, NULL, return_42, NULL), -EINVAL);
	run_and_destroy(loop); /* nothing was spawned: returns at once */
}

/* urt_loop_create: NULL out and unknown flags are -EINVAL; known flags and
 * small options work. */
static void test_loop_create_errors(void **state)
{
	struct urt_loop_opts bad = { .flags = 1u << 31 };
	struct urt_loop_opts ok = {
		.flags = URT_LOOP_NO_GUARD, .stack_size = 1, .ring_entries = 2,
	};
	urt_loop *loop;
	urt_task *t;
	int result = 0;

	(void)state;
	assert_int_equal(urt_loop_create(NULL, NULL), -EINVAL);
	assert_int_equal(urt_loop_create(NULL, &ok), -EINVAL);
	assert_int_equal(urt_loop_create(&loop, &bad), -EINVAL);
	loop = loop_new(&ok);
	spawn_ok(loop, &t, parent_task, &(struct parent){ .child_arg = 1 });
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_join(t, &result), 0);
	assert_int_equal(result, 2);
	urt_loop_destroy(loop);
	urt_loop_destroy(NULL); /* ignored */
}

struct mutual {
	urt_task *peer[2];
	int join_ret[2];
	int result[2];
};

static int mutual_a(void *arg)
{
	struct mutual *m = arg;

	m->join_ret[0] = urt_join(m->peer[1], &m->result[0]);
	return 10;
}

static int mutual_b(void *arg)
{
	struct mutual *m = arg;

	m->join_ret[1] = urt_join(m->peer[0], &m->result[1]);
	return 20;
}

/* Two tasks joining each other: the run reports -EDEADLK, and destroy
 * cancels both out of their joins. */
static void test_mutual_join_deadlock(void **state)
{
	struct mutual m = { .join_ret = { 1, 1 } };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, &m.peer[0], mutual_a, &m);
	spawn_ok(loop, &m.peer[1], mutual_b, &m);
	assert_int_equal(urt_loop_run(loop), -EDEADLK);
	assert_int_equal(m.join_ret[0], 1); /* still parked */
	assert_int_equal(m.join_ret[1], 1);
	urt_loop_destroy(loop);
	assert_int_equal(m.join_ret[0], -ECANCELED);
	assert_int_equal(m.join_ret[1], -ECANCELED);
}

/* After -EDEADLK, cancelling one of them from outside breaks the cycle: the
 * next run completes and the other's join receives its result. */
static void test_deadlock_broken_by_cancel(void **state)
{
	struct mutual m = { .join_ret = { 1, 1 } };
	urt_loop *loop = loop_new(NULL);
	int result = 0;

	(void)state;
	spawn_ok(loop, &m.peer[0], mutual_a, &m);
	spawn_ok(loop, &m.peer[1], mutual_b, &m);
	assert_int_equal(urt_loop_run(loop), -EDEADLK);
	assert_int_equal(urt_cancel(m.peer[0]), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(m.join_ret[0], -ECANCELED);
	assert_int_equal(m.join_ret[1], 0);
	assert_int_equal(m.result[1], 10);
	/* peer[0] was joined by peer[1]; peer[1] is ours to join. */
	assert_int_equal(urt_join(m.peer[1], &result), 0);
	assert_int_equal(result, 20);
	urt_loop_destroy(loop);
}

struct stop_seen {
	urt_loop *loop;
	int stop_ret;
	int sleep_ret;
	uint64_t start, woke;
};

static int stop_then_return(void *arg)
{
	struct stop_seen *s = arg;

	s->stop_ret = urt_loop_stop(s->loop);
	return 0;
}

static int sleep_10ms(void *arg)
{
	struct stop_seen *s = arg;

	s->start = urt_now_ns();
	s->sleep_ret = urt_sleep_ns(10 * MS);
	s->woke = urt_now_ns();
	return 9;
}

/* urt_loop_stop: the run returns -EINTR after the turn with a task still
 * parked; the next run goes on and completes it. */
static void test_loop_stop(void **state)
{
	struct stop_seen s = { .stop_ret = 1, .sleep_ret = 1 };
	urt_task *t;
	int result = 0;

	(void)state;
	assert_int_equal(urt_loop_stop(NULL), -EINVAL);
	s.loop = loop_new(NULL);
	spawn_ok(s.loop, &t, sleep_10ms, &s);
	spawn_ok(s.loop, NULL, stop_then_return, &s);
	assert_int_equal(urt_loop_run(s.loop), -EINTR);
	assert_int_equal(s.stop_ret, 0);
	assert_int_equal(s.sleep_ret, 1); /* still parked */
	assert_int_equal(urt_join(t, NULL), -EPERM);
	assert_int_equal(urt_loop_run(s.loop), 0);
	assert_int_equal(s.sleep_ret, 0);
	assert_true(s.woke - s.start >= 10 * MS);
	assert_int_equal(urt_join(t, &result), 0);
	assert_int_equal(result, 9);
	urt_loop_destroy(s.loop);
	check_tasks();
}

struct foreign {
	urt_loop *loop;
	urt_task *task;
	int spawn_ret, spawn_cur_ret, cancel_ret, join_ret, run_ret, stop_ret;
};

static void *foreign_thread(void *arg)
{
	struct foreign *f = arg;
	urt_task *t = NULL;

	f->spawn_ret = urt_spawn(f->loop, &t, return_42, NULL);
	f->spawn_cur_ret = urt_spawn(NULL, &t, return_42, NULL);
	f->cancel_ret = urt_cancel(f->task);
	f->join_ret = urt_join(f->task, NULL);
	f->run_ret = urt_loop_run(f->loop);
	f->stop_ret = urt_loop_stop(f->loop);
	return NULL;
}

/* Another thread can't spawn on, cancel in, join in, run or stop a loop. */
static void test_other_thread(void **state)
{
	struct foreign f = { 0 };
	pthread_t th;
	int result = 0;

	(void)state;
	f.loop = loop_new(NULL);
	spawn_ok(f.loop, &f.task, return_42, NULL);
	assert_int_equal(pthread_create(&th, NULL, foreign_thread, &f), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(f.spawn_ret, -EPERM);
	assert_int_equal(f.spawn_cur_ret, -EINVAL); /* no loop on that thread */
	assert_int_equal(f.cancel_ret, -EPERM);
	assert_int_equal(f.join_ret, -EPERM);
	assert_int_equal(f.run_ret, -EPERM);
	assert_int_equal(f.stop_ret, -EPERM);
	assert_int_equal(urt_loop_run(f.loop), 0);
	assert_int_equal(urt_join(f.task, &result), 0);
	assert_int_equal(result, 42);
	urt_loop_destroy(f.loop);
}

#define FAMILIES 1000

static int families_ok;

static int family(void *arg)
{
	struct parent p = { .child_arg = (int)(intptr_t)arg };

	if (parent_task(&p) == p.child_arg + 1 && p.spawn_ret == 0 &&
	    p.join_ret == 0 && p.child_result == p.child_arg)
		families_ok++;
	return 0;
}

/* 1,000 tasks each spawn a child and join it, all on one loop. */
static void test_many_families(void **state)
{
	urt_loop *loop = loop_new(NULL);

	(void)state;
	families_ok = 0;
	for (int i = 0; i < FAMILIES; i++)
		spawn_ok(loop, NULL, family, (void *)(intptr_t)i);
	run_and_destroy(loop);
	assert_int_equal(families_ok, FAMILIES);
}

/* A stop asked for in a run's last turn ends with that run. */
static int stop_and_return(void *arg)
{
	TASK_CHECK(urt_loop_stop(arg) == 0);
	return 0;
}

static int sleep_1ms(void *arg)
{
	(void)arg;
	TASK_CHECK(urt_sleep_ns(1 * MS) == 0);
	return 0;
}

static void test_stop_does_not_outlive_its_run(void **state)
{
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, NULL, stop_and_return, loop);
	assert_int_equal(urt_loop_run(loop), 0); /* no task left */
	spawn_ok(loop, NULL, sleep_1ms, NULL);
	assert_int_equal(urt_loop_run(loop), 0); /* not stopped again */
	urt_loop_destroy(loop);
	check_tasks();
}

/* Found by the fuzzer: a task finishes while one task waits to join it;
 * before the waiter runs, a second task tries to join the finished task.
 * The second join must fail (-EINVAL), not free the handle under the
 * waiter. */
struct claim {
	urt_task *target;
	int first, second, result;
};

static int claim_target(void *arg)
{
	(void)arg;
	return 5;
}

static int claim_first(void *arg)
{
	struct claim *c = arg;

	c->first = urt_join(c->target, &c->result);
	return 0;
}

static int claim_second(void *arg)
{
	struct claim *c = arg;

	c->second = urt_join(c->target, NULL);
	return 0;
}

static void test_join_claimed_by_waiter(void **state)
{
	struct claim c = { .first = 1, .second = 1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	/* first parks joining target; target returns and wakes first; second
	 * runs before first resumes. */
	spawn_ok(loop, NULL, claim_first, &c);
	spawn_ok(loop, &c.target, claim_target, NULL);
	spawn_ok(loop, NULL, claim_second, &c);
	run_and_destroy(loop);
	assert_int_equal(c.first, 0);
	assert_int_equal(c.result, 5);
	assert_int_equal(c.second, -EINVAL);
}

/* Found by CI's fuzz run: J1 parks joining P and is cancelled; J2 then
 * parks joining P; P returns and wakes J2. J1's join returns -ECANCELED
 * and must leave J2's claim alone: J1's second join is refused, and J2
 * collects P (a second collect freed P twice). */
struct reclaim {
	urt_task *p;
	urt_task *j1;
	int first, second, j2, result;
};

static int reclaim_j1(void *arg)
{
	struct reclaim *r = arg;

	r->first = urt_join(r->p, NULL);
	r->second = urt_join(r->p, NULL);
	return 0;
}

static int reclaim_c(void *arg)
{
	struct reclaim *r = arg;

	return urt_cancel(r->j1);
}

static int reclaim_j2(void *arg)
{
	struct reclaim *r = arg;

	r->j2 = urt_join(r->p, &r->result);
	return 0;
}

static int reclaim_p(void *arg)
{
	(void)arg;
	return 7;
}

static void test_cancelled_join_keeps_other_claim(void **state)
{
	struct reclaim r = { .first = 1, .second = 1, .j2 = 1 };
	urt_loop *loop = loop_new(NULL);
	urt_task *a, *b;

	(void)state;
	spawn_ok(loop, &r.j1, reclaim_j1, &r);
	spawn_ok(loop, NULL, reclaim_c, &r);
	spawn_ok(loop, NULL, reclaim_j2, &r);
	spawn_ok(loop, &r.p, reclaim_p, NULL);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(r.first, -ECANCELED);
	assert_int_equal(r.second, -EINVAL);
	assert_int_equal(r.j2, 0);
	assert_int_equal(r.result, 7);
	assert_int_equal(urt_join(r.j1, NULL), 0);
	/* Two later spawns get two records: a record freed twice would be
	 * handed out twice. */
	spawn_ok(loop, &a, reclaim_p, NULL);
	spawn_ok(loop, &b, reclaim_p, NULL);
	assert_ptr_not_equal(a, b);
	run_and_destroy(loop);
}

/* The same with P collected before J1 resumes: a task joins P after P has
 * returned and frees it (reclaim_j2). J1's interrupted join must not touch P on its way
 * out (ASan, which poisons freed records, reports it if it does). */
static int reclaim_j1_once(void *arg)
{
	struct reclaim *r = arg;

	r->first = urt_join(r->p, NULL);
	return 0;
}

static void test_cancelled_join_target_collected(void **state)
{
	struct reclaim r = { .first = 1, .j2 = 1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, &r.j1, reclaim_j1_once, &r);
	spawn_ok(loop, NULL, reclaim_c, &r);
	spawn_ok(loop, &r.p, reclaim_p, NULL);
	spawn_ok(loop, NULL, reclaim_j2, &r);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(r.first, -ECANCELED);
	assert_int_equal(r.j2, 0);
	assert_int_equal(r.result, 7);
	assert_int_equal(urt_join(r.j1, NULL), 0);
	run_and_destroy(loop);
}

/* ---- loops used from another loop's task ---- */

struct nested {
	int run_res;
	int fds_inside;        /* fds while B lives */
	int sleep_res, read_res;
	int pipe[2];
	int spawn_res;
	uint64_t slept_ms;
};

static int nested_quick(void *arg)
{
	(void)arg;
	return 0;
}

/* urt_run inside a task: -EBUSY, and nothing made (a loop and its ring
 * fd used to leak). */
static int run_in_task(void *arg)
{
	struct nested *n = arg;
	int res;

	n->run_res = urt_run(nested_quick, NULL, &res);
	return 0;
}

static void test_run_inside_task_makes_nothing(void **state)
{
	struct nested n = { .run_res = 1 };
	int fds = open_fds();

	(void)state;
	assert_int_equal(urt_run(run_in_task, &n, NULL), 0);
	assert_int_equal(n.run_res, -EBUSY);
	assert_int_equal(open_fds(), fds);
}

static int b_sleeper(void *arg)
{
	struct nested *n = arg;

	n->sleep_res = urt_sleep_ns(10 * SEC);
	return 0;
}

static int b_reader(void *arg)
{
	struct nested *n = arg;
	char c;

	n->read_res = (int)urt_read(n->pipe[0], &c, 1, -1);
	return 0;
}

/* A task of loop A creates loop B, starts tasks on it, and destroys it:
 * B's tasks are cancelled and run to their end on this task's stack, and
 * B's ring goes (destroy from a task used to do nothing). */
static int destroy_other(void *arg)
{
	struct nested *n = arg;
	uint64_t t0 = urt_now_ns();
	urt_loop *b;

	if (urt_loop_create(&b, NULL))
		return -1;
	n->spawn_res = urt_spawn(b, NULL, b_sleeper, n) | urt_spawn(b, NULL, b_reader, n);
	n->fds_inside = open_fds();
	urt_loop_destroy(b);
	n->slept_ms = ms_since(t0);
	/* A is still this task's loop. */
	return urt_current_loop() && urt_sleep_ns(MS) == 0 ? 0 : -2;
}

static void test_destroy_other_loop_from_task(void **state)
{
	struct nested n = { .sleep_res = 1, .read_res = 1 };
	int fds, res = 1;

	(void)state;
	make_pipe(n.pipe);
	fds = open_fds();
	assert_int_equal(urt_run(destroy_other, &n, &res), 0);
	assert_int_equal(res, 0);
	assert_int_equal(n.spawn_res, 0);
	assert_true(n.fds_inside > fds); /* B's ring */
	assert_int_equal(open_fds(), fds);
	/* B's tasks ran before B went: started, then cancelled. */
	assert_int_equal(n.sleep_res, -ECANCELED);
	assert_int_equal(n.read_res, -ECANCELED);
	assert_true(n.slept_ms < 5000);
	close_pipe(n.pipe);
}

static int destroy_own(void *arg)
{
	(void)arg;
	urt_loop_destroy(urt_current_loop()); /* running: ignored */
	return urt_sleep_ns(MS);
}

static void test_destroy_own_loop_from_task_ignored(void **state)
{
	urt_loop *loop = loop_new(NULL);
	urt_task *t;
	int res = 1;

	(void)state;
	spawn_ok(loop, &t, destroy_own, NULL);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_join(t, &res), 0);
	assert_int_equal(res, 0);
	run_and_destroy(loop);
}

/* A task that touches 16 KiB of its stack, notes where its frame lies and
 * sleeps, so that all of a burst live at once. */
static int burst_task(void *arg)
{
	void **frame = arg;
	volatile char buf[16384];

	for (size_t i = 0; i < sizeof(buf); i += 512)
		buf[i] = (char)i;
	*frame = __builtin_frame_address(0);
	TASK_CHECK(urt_sleep_ns(2 * MS) == 0);
	return buf[512];
}

/* How many of the n frames' pages are in memory; -1 when mincore fails
 * (from a task too). */
static int resident_frames(void **frame, int n)
{
	long ps = sysconf(_SC_PAGESIZE);
	int in = 0;

	for (int i = 0; i < n; i++) {
		unsigned char v = 0;
		void *page = (void *)((uintptr_t)frame[i] & ~(uintptr_t)(ps - 1));

		if (mincore(page, (size_t)ps, &v))
			return -1;
		in += v & 1;
	}
	return in;
}

/* A task that outlives a burst, so that the loop then waits with it
 * alone: for quiet_ms, or (until) until no more than until of the burst's
 * stack pages are in memory, looking every 20 ms, 10 s at most (so the
 * loop's speed, under valgrind or TSan, sets no bound). */
struct quiet {
	void **frame;
	int n, until;
	unsigned quiet_ms;
};

static int quiet_task(void *arg)
{
	struct quiet *q = arg;

	if (q->until < 0) {
		TASK_CHECK(urt_sleep_ns((uint64_t)q->quiet_ms * MS) == 0);
		return 0;
	}
	for (int i = 0; i < 500 && resident_frames(q->frame, q->n) > q->until; i++)
		TASK_CHECK(urt_sleep_ns(20 * MS) == 0);
	return 0;
}

/* Runs a burst of n burst_tasks beside a quiet_task, then returns how many
 * of the burst's stack pages are in memory. */
static int burst_resident(urt_loop *loop, int n, struct quiet q)
{
	void **frame = calloc((size_t)n, sizeof(*frame));
	int in;

	assert_non_null(frame);
	q.frame = frame;
	q.n = n;
	for (int i = 0; i < n; i++)
		spawn_ok(loop, NULL, burst_task, &frame[i]);
	spawn_ok(loop, NULL, quiet_task, &q);
	assert_int_equal(urt_loop_run(loop), 0);
	check_tasks();
	for (int i = 0; i < n; i++)
		assert_non_null(frame[i]);
	in = resident_frames(frame, n);
	free(frame);
	return in;
}

/* After a burst of 50 tasks, a loop that stays quiet (no more live tasks
 * than stack_resident) for 200 ms gives back the pages of all cached
 * stacks but that many (the mappings stay: the next burst runs on them);
 * with SIZE_MAX, none. */
static void test_stacks_given_back(void **state)
{
	size_t keeps[] = { 4, SIZE_MAX };

	(void)state;
	for (size_t k = 0; k < 2; k++) {
		struct urt_loop_opts o = { .stack_resident = keeps[k] };
		urt_loop *loop = loop_new(&o);
		struct quiet q = { .until = 4 };

		if (keeps[k] == SIZE_MAX) {
			q.until = -1;
			q.quiet_ms = 300;
		}
		for (int round = 0; round < 2; round++)
			assert_int_equal(burst_resident(loop, 50, q), keeps[k] == 4 ? 4 : 50);
		urt_loop_destroy(loop);
	}
}

/* Quiet for less than that between bursts: every stack keeps its pages,
 * and a repeated fan-out does not fault them in again (W1 at 10,000 tasks
 * was 5x slower warm when the pages went back at the first quiet wait). */
static void test_stacks_kept_between_bursts(void **state)
{
	struct urt_loop_opts o = { .stack_resident = 4 };
	urt_loop *loop = loop_new(&o);
	struct quiet q = { .until = -1, .quiet_ms = 20 };

	(void)state;
	for (int round = 0; round < 3; round++)
		assert_int_equal(burst_resident(loop, 50, q), 50);
	urt_loop_destroy(loop);
}

/* More stacks than one slice (256) go back a slice per wait, 10 ms apart,
 * each going on where the last stopped: 600 of them, 4 kept. */
static void test_stacks_given_back_in_slices(void **state)
{
	struct urt_loop_opts o = { .stack_resident = 4 };
	urt_loop *loop = loop_new(&o);
	struct quiet q = { .until = 4 };

	(void)state;
	assert_int_equal(burst_resident(loop, 600, q), 4);
	urt_loop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run_returns_result),
		cmocka_unit_test(test_spawn_and_join),
		cmocka_unit_test(test_join_finished_outside),
		cmocka_unit_test(test_detached_complete),
		cmocka_unit_test(test_yield_order),
		cmocka_unit_test(test_spawn_order),
		cmocka_unit_test(test_run_again),
		cmocka_unit_test(test_join_errors),
		cmocka_unit_test(test_join_claimed_by_waiter),
		cmocka_unit_test(test_cancelled_join_keeps_other_claim),
		cmocka_unit_test(test_cancelled_join_target_collected),
		cmocka_unit_test(test_current_loop),
		cmocka_unit_test(test_spawn_errors),
		cmocka_unit_test(test_loop_create_errors),
		cmocka_unit_test(test_mutual_join_deadlock),
		cmocka_unit_test(test_deadlock_broken_by_cancel),
		cmocka_unit_test(test_loop_stop),
		cmocka_unit_test(test_stop_does_not_outlive_its_run),
		cmocka_unit_test(test_other_thread),
		cmocka_unit_test(test_many_families),
		cmocka_unit_test(test_run_inside_task_makes_nothing),
		cmocka_unit_test(test_destroy_other_loop_from_task),
		cmocka_unit_test(test_destroy_own_loop_from_task_ignored),
		cmocka_unit_test(test_stacks_given_back),
		cmocka_unit_test(test_stacks_kept_between_bursts),
		cmocka_unit_test(test_stacks_given_back_in_slices),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
