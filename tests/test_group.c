/* Task groups: urt_group_wait returns 0 once every member has returned 0;
 * the first failure cancels the other members and is what the wait
 * returns; a cancelling group refuses new members; a member may spawn
 * members; cancelling the waiting task, or its deadline, cancels the
 * members, and the wait still returns only after all of them, even one
 * that keeps working after the cancel; argument and caller errors; a group
 * never waited for is freed with its loop. */
#include "test_util.h"

/* What one group saw: a clock of events and the members' returns. */
struct ctx {
	urt_group *g;
	urt_task *waiter;
	int steps;        /* ++ at each member's return and the wait's */
	int done;         /* members returned */
	int create_ret;
	int spawn_ret[8];
	int wait_ret;
	int wait_at;      /* step of the wait's return */
	int done_at_wait; /* members returned when the wait returned */
	uint64_t start, end;
};

struct member {
	struct ctx *ctx;
	uint64_t sleep_ns;
	int fail;         /* returned instead of the sleep's result, if not 0 */
	bool ran;
	int sleep_ret;
	int at;           /* step of its return */
};

/* Sleep, then return fail, or else what the sleep returned. */
static int member_fn(void *arg)
{
	struct member *m = arg;

	m->ran = true;
	m->sleep_ret = urt_sleep_ns(m->sleep_ns);
	m->at = ++m->ctx->steps;
	m->ctx->done++;
	return m->fail ? m->fail : m->sleep_ret;
}

/* Spawn members m[0..n-1] into c->g, recording each spawn's return. */
static void spawn_members(struct ctx *c, struct member *m, int n)
{
	for (int i = 0; i < n; i++)
		c->spawn_ret[i] = urt_group_spawn(c->g, member_fn, &m[i]);
}

/* Create c->g and spawn members m[0..n-1] into it. */
static void group_start(struct ctx *c, struct member *m, int n)
{
	c->create_ret = urt_group_create(&c->g);
	spawn_members(c, m, n);
}

static void wait_group(struct ctx *c)
{
	c->wait_ret = urt_group_wait(c->g);
	c->end = urt_now_ns();
	c->wait_at = ++c->steps;
	c->done_at_wait = c->done;
}

static void ctx_init(struct ctx *c)
{
	memset(c, 0, sizeof(*c));
	c->create_ret = c->wait_ret = -1000;
	for (int i = 0; i < 8; i++)
		c->spawn_ret[i] = -1000;
}

static void members_init(struct ctx *c, struct member *m, int n, uint64_t sleep_ns)
{
	for (int i = 0; i < n; i++)
		m[i] = (struct member){ .ctx = c, .sleep_ns = sleep_ns, .sleep_ret = -1000 };
}

/* ---- every member succeeds ---- */

struct all_ok {
	struct ctx c;
	struct member m[5];
};

static int all_ok_waiter(void *arg)
{
	struct all_ok *a = arg;

	group_start(&a->c, a->m, 5);
	wait_group(&a->c);
	return 0;
}

static void test_all_succeed(void **state)
{
	struct all_ok a;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&a.c);
	members_init(&a.c, a.m, 5, 0);
	for (int i = 0; i < 5; i++)
		a.m[i].sleep_ns = (uint64_t)(5 - i) * MS;
	spawn_ok(loop, NULL, all_ok_waiter, &a);
	run_and_destroy(loop);
	assert_int_equal(a.c.create_ret, 0);
	assert_int_equal(a.c.wait_ret, 0);
	assert_int_equal(a.c.done_at_wait, 5);
	assert_int_equal(a.c.wait_at, 6); /* after all five */
	for (int i = 0, seen = 0; i < 5; i++) {
		assert_int_equal(a.c.spawn_ret[i], 0);
		assert_true(a.m[i].ran);
		assert_int_equal(a.m[i].sleep_ret, 0);
		/* Steps 1..5, each once (their order depends on the clock). */
		assert_true(a.m[i].at >= 1 && a.m[i].at <= 5);
		assert_false(seen & (1 << a.m[i].at));
		seen |= 1 << a.m[i].at;
	}
}

/* ---- the first failure cancels the others ---- */

struct fail_case {
	struct ctx c;
	struct member m[6];
};

static int fail_waiter(void *arg)
{
	struct fail_case *f = arg;

	group_start(&f->c, f->m, 6);
	wait_group(&f->c);
	return 0;
}

/* m[0] fails with -EIO after 20 ms; m[1] succeeds at once; m[2..4] sleep
 * 10 s and return what the sleep returned; m[5] sleeps 10 s and then
 * fails with -ENOENT, a later failure that does not count. */
static void test_first_failure_cancels(void **state)
{
	struct fail_case f;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&f.c);
	members_init(&f.c, f.m, 6, 10 * SEC);
	f.m[0].sleep_ns = 20 * MS;
	f.m[0].fail = -EIO;
	f.m[1].sleep_ns = 0;
	f.m[5].fail = -ENOENT;
	spawn_ok(loop, NULL, fail_waiter, &f);
	run_and_destroy(loop);
	assert_int_equal(f.c.create_ret, 0);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(f.c.spawn_ret[i], 0);
		assert_true(f.m[i].ran);
	}
	assert_int_equal(f.c.wait_ret, -EIO); /* not -ECANCELED, not -ENOENT */
	assert_int_equal(f.m[0].sleep_ret, 0);
	assert_int_equal(f.m[1].sleep_ret, 0);
	for (int i = 2; i < 6; i++)
		assert_int_equal(f.m[i].sleep_ret, -ECANCELED);
	assert_int_equal(f.m[1].at, 1);
	assert_int_equal(f.m[0].at, 2);
	assert_int_equal(f.c.done_at_wait, 6);
	assert_int_equal(f.c.wait_at, 7);
}

/* A failure need not be negative: any non-zero return is one. */
static void test_positive_failure(void **state)
{
	struct fail_case f;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&f.c);
	members_init(&f.c, f.m, 6, 10 * SEC);
	f.m[0].sleep_ns = 20 * MS;
	f.m[0].fail = 7;
	f.m[1].sleep_ns = 0;
	spawn_ok(loop, NULL, fail_waiter, &f);
	run_and_destroy(loop);
	assert_int_equal(f.c.wait_ret, 7);
	for (int i = 2; i < 6; i++)
		assert_int_equal(f.m[i].sleep_ret, -ECANCELED);
	assert_int_equal(f.c.done_at_wait, 6);
}

/* ---- a cancelling group refuses new members ---- */

struct refuse_case {
	struct ctx c;
	int late_ran;
	int waiter_spawn, member_spawn;
	int member_sleep;
	bool failed_before_spawn;
};

static int late_member(void *arg)
{
	struct refuse_case *r = arg;

	r->late_ran++;
	return 0;
}

static int fail_now(void *arg)
{
	struct refuse_case *r = arg;

	r->c.done++;
	return -EIO;
}

static int spawning_sleeper(void *arg)
{
	struct refuse_case *r = arg;

	r->member_sleep = urt_sleep_ns(10 * SEC);
	r->member_spawn = urt_group_spawn(r->c.g, late_member, r);
	r->c.done++;
	return r->member_sleep;
}

static int refuse_waiter(void *arg)
{
	struct refuse_case *r = arg;

	r->c.create_ret = urt_group_create(&r->c.g);
	r->c.spawn_ret[0] = urt_group_spawn(r->c.g, fail_now, r);
	r->c.spawn_ret[1] = urt_group_spawn(r->c.g, spawning_sleeper, r);
	TASK_CHECK(urt_yield() == 0); /* both members run: the group cancels */
	r->failed_before_spawn = r->c.done == 2;
	r->waiter_spawn = urt_group_spawn(r->c.g, late_member, r);
	wait_group(&r->c);
	return 0;
}

static void test_spawn_into_cancelling_group(void **state)
{
	struct refuse_case r = { .waiter_spawn = -1000, .member_spawn = -1000, .member_sleep = -1000 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&r.c);
	spawn_ok(loop, NULL, refuse_waiter, &r);
	run_and_destroy(loop);
	assert_int_equal(r.c.create_ret, 0);
	assert_int_equal(r.c.spawn_ret[0], 0);
	assert_int_equal(r.c.spawn_ret[1], 0);
	assert_true(r.failed_before_spawn);
	assert_int_equal(r.member_sleep, -ECANCELED); /* cancelled before it ran */
	assert_int_equal(r.member_spawn, -ECANCELED);
	assert_int_equal(r.waiter_spawn, -ECANCELED);
	assert_int_equal(r.late_ran, 0); /* nothing was spawned */
	assert_int_equal(r.c.wait_ret, -EIO);
	assert_int_equal(r.c.done_at_wait, 2);
}

/* ---- members spawning members ---- */

struct nest_case {
	struct ctx c;
	int child_spawn;
	bool child_done;
	bool parent_done;
	bool child_done_at_wait;
};

static int nest_child(void *arg)
{
	struct nest_case *n = arg;

	TASK_CHECK(urt_sleep_ns(20 * MS) == 0);
	n->child_done = true;
	return 0;
}

static int nest_parent(void *arg)
{
	struct nest_case *n = arg;

	TASK_CHECK(urt_sleep_ns(5 * MS) == 0);
	n->child_spawn = urt_group_spawn(n->c.g, nest_child, n);
	n->parent_done = true;
	return 0;
}

static int nest_waiter(void *arg)
{
	struct nest_case *n = arg;

	n->c.create_ret = urt_group_create(&n->c.g);
	n->c.spawn_ret[0] = urt_group_spawn(n->c.g, nest_parent, n);
	wait_group(&n->c);
	n->child_done_at_wait = n->child_done;
	return 0;
}

/* A member spawns another and returns at once: the wait counts the new one. */
static void test_member_spawns_member(void **state)
{
	struct nest_case n = { .child_spawn = -1000 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&n.c);
	spawn_ok(loop, NULL, nest_waiter, &n);
	run_and_destroy(loop);
	assert_int_equal(n.c.create_ret, 0);
	assert_int_equal(n.c.spawn_ret[0], 0);
	assert_int_equal(n.child_spawn, 0);
	assert_true(n.parent_done);
	assert_true(n.child_done_at_wait);
	assert_int_equal(n.c.wait_ret, 0);
}

/* The last member returns and wakes the waiter; before the waiter runs,
 * another task spawns a new member. The waiter must wait for that one. */
struct late_case {
	struct ctx c;
	bool waiter_returned;
	bool spawned_after_return; /* would be a use of a freed group */
	int late_spawn;
	bool late_ran;
	bool late_ran_at_wait;
};

static int quick_member(void *arg)
{
	(void)arg;
	return 0;
}

static int late_joined(void *arg)
{
	struct late_case *l = arg;

	l->late_ran = true;
	return 0;
}

static int late_spawner(void *arg)
{
	struct late_case *l = arg;

	if (l->waiter_returned) {
		l->spawned_after_return = true;
		return 0;
	}
	l->late_spawn = urt_group_spawn(l->c.g, late_joined, l);
	return 0;
}

static int late_waiter(void *arg)
{
	struct late_case *l = arg;

	l->c.create_ret = urt_group_create(&l->c.g);
	l->c.spawn_ret[0] = urt_group_spawn(l->c.g, quick_member, NULL);
	/* Ready after the member: it runs after the member returned and
	 * before the woken waiter. */
	l->c.spawn_ret[1] = urt_spawn(NULL, NULL, late_spawner, l);
	wait_group(&l->c);
	l->waiter_returned = true;
	l->late_ran_at_wait = l->late_ran;
	return 0;
}

static void test_member_joins_after_last_returned(void **state)
{
	struct late_case l = { .late_spawn = -1000 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&l.c);
	spawn_ok(loop, NULL, late_waiter, &l);
	run_and_destroy(loop);
	assert_int_equal(l.c.create_ret, 0);
	assert_int_equal(l.c.spawn_ret[0], 0);
	assert_int_equal(l.c.spawn_ret[1], 0);
	assert_false(l.spawned_after_return);
	assert_int_equal(l.late_spawn, 0);
	assert_true(l.late_ran_at_wait);
	assert_int_equal(l.c.wait_ret, 0);
}

/* ---- cancelling the waiter ---- */

struct waiter_case {
	struct ctx c;
	struct member m[3];
	int cancel_ret;
	int join_ret, join_result;
	int enter, leave;
};

static int cancel_waiter_fn(void *arg)
{
	struct waiter_case *w = arg;

	group_start(&w->c, w->m, 3);
	wait_group(&w->c);
	return 0;
}

static int cancel_the_waiter(void *arg)
{
	struct waiter_case *w = arg;

	TASK_CHECK(urt_sleep_ns(10 * MS) == 0);
	w->cancel_ret = urt_cancel(w->c.waiter);
	return 0;
}

/* The waiter is cancelled while the members sleep: they are cancelled, and
 * the wait returns -ECANCELED after every one of them has returned. */
static void test_cancel_waiter(void **state)
{
	struct waiter_case w = { .cancel_ret = -1000, .join_result = -1000 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&w.c);
	members_init(&w.c, w.m, 3, 10 * SEC);
	spawn_ok(loop, &w.c.waiter, cancel_waiter_fn, &w);
	spawn_ok(loop, NULL, cancel_the_waiter, &w);
	assert_int_equal(urt_loop_run(loop), 0);
	w.join_ret = urt_join(w.c.waiter, &w.join_result);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(w.join_ret, 0);
	assert_int_equal(w.join_result, 0);
	assert_int_equal(w.cancel_ret, 0);
	assert_int_equal(w.c.create_ret, 0);
	assert_int_equal(w.c.wait_ret, -ECANCELED);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(w.c.spawn_ret[i], 0);
		assert_int_equal(w.m[i].sleep_ret, -ECANCELED);
		assert_true(w.m[i].at >= 1 && w.m[i].at <= 3);
	}
	assert_int_equal(w.c.done_at_wait, 3);
	assert_int_equal(w.c.wait_at, 4); /* after every member */
}

static int deadline_waiter_fn(void *arg)
{
	struct waiter_case *w = arg;
	struct urt_timeout to;

	w->c.start = urt_now_ns();
	w->enter = urt_timeout_enter(&to, 20 * MS);
	group_start(&w->c, w->m, 3);
	wait_group(&w->c);
	w->leave = urt_timeout_leave(&to);
	return 0;
}

/* The waiter's deadline passes while the members sleep 10 s: they are
 * cancelled, and the wait returns -ETIMEDOUT after all of them. */
static void test_waiter_deadline(void **state)
{
	struct waiter_case w = { .enter = -1000, .leave = -1000 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&w.c);
	members_init(&w.c, w.m, 3, 10 * SEC);
	spawn_ok(loop, NULL, deadline_waiter_fn, &w);
	run_and_destroy(loop);
	assert_int_equal(w.enter, 0);
	assert_int_equal(w.c.create_ret, 0);
	assert_int_equal(w.c.wait_ret, -ETIMEDOUT);
	assert_true(w.c.end - w.c.start >= 20 * MS);
	assert_int_equal(w.leave, -ETIMEDOUT);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(w.c.spawn_ret[i], 0);
		assert_int_equal(w.m[i].sleep_ret, -ECANCELED); /* cancelled, not timed out */
	}
	assert_int_equal(w.c.done_at_wait, 3);
	assert_int_equal(w.c.wait_at, 4);
}

static int precancelled_waiter_fn(void *arg)
{
	struct waiter_case *w = arg;

	group_start(&w->c, w->m, 3);
	w->cancel_ret = urt_cancel(urt_current_task());
	wait_group(&w->c);
	return 0;
}

/* A waiter already cancelled when it calls wait: the members are cancelled
 * (before they first run: their first wait returns -ECANCELED), and the
 * wait returns -ECANCELED once they have returned. */
static void test_waiter_cancelled_before_wait(void **state)
{
	struct waiter_case w = { .cancel_ret = -1000 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&w.c);
	members_init(&w.c, w.m, 3, 10 * SEC);
	spawn_ok(loop, NULL, precancelled_waiter_fn, &w);
	run_and_destroy(loop);
	assert_int_equal(w.cancel_ret, 0);
	assert_int_equal(w.c.wait_ret, -ECANCELED);
	for (int i = 0; i < 3; i++) {
		assert_true(w.m[i].ran);
		assert_int_equal(w.m[i].sleep_ret, -ECANCELED);
	}
	assert_int_equal(w.c.done_at_wait, 3);
	assert_int_equal(w.c.wait_at, 4);
}

static int expired_waiter_fn(void *arg)
{
	struct waiter_case *w = arg;
	struct urt_timeout to;

	w->c.start = urt_now_ns();
	w->enter = urt_timeout_enter(&to, 10 * MS);
	group_start(&w->c, w->m, 3);
	w->cancel_ret = urt_sleep_ns(10 * SEC); /* ends at the deadline */
	wait_group(&w->c);
	w->leave = urt_timeout_leave(&to);
	return 0;
}

/* The deadline passed before the wait: the wait cancels the members and
 * returns -ETIMEDOUT once they have returned. */
static void test_deadline_passed_before_wait(void **state)
{
	struct waiter_case w = { .enter = -1000, .leave = -1000, .cancel_ret = -1000 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&w.c);
	members_init(&w.c, w.m, 3, 10 * SEC);
	spawn_ok(loop, NULL, expired_waiter_fn, &w);
	run_and_destroy(loop);
	assert_int_equal(w.enter, 0);
	assert_int_equal(w.cancel_ret, -ETIMEDOUT); /* the sleep */
	assert_int_equal(w.c.wait_ret, -ETIMEDOUT);
	assert_true(w.c.end - w.c.start >= 10 * MS);
	assert_int_equal(w.leave, -ETIMEDOUT);
	for (int i = 0; i < 3; i++)
		assert_int_equal(w.m[i].sleep_ret, -ECANCELED);
	assert_int_equal(w.c.done_at_wait, 3);
	assert_int_equal(w.c.wait_at, 4);
}

/* ---- a member that keeps working after the cancel ---- */

struct nap {
	unsigned ms;
	uint64_t begun, ended; /* written by the pool thread */
};

static void nap_fn(struct nap *n)
{
	n->begun = urt_now_ns();
	usleep(n->ms * 1000);
	n->ended = urt_now_ns();
}

struct stubborn_case {
	struct ctx c;
	struct nap nap;
	int to_thread_ret, later_ret;
	bool finished;
	bool finished_at_wait;
	int enter, leave;
};

/* Offloads a sleep of nap.ms; a cancel cannot stop it, and the task
 * resumes only when it is over. */
static int stubborn_member(void *arg)
{
	struct stubborn_case *s = arg;

	s->to_thread_ret = urt_to_thread(nap_fn, &s->nap);
	s->later_ret = urt_sleep_ns(0); /* the cancel is seen here */
	s->finished = true;
	return 0;
}

static int fail_eio(void *arg)
{
	(void)arg;
	return -EIO;
}

static int stubborn_waiter(void *arg)
{
	struct stubborn_case *s = arg;

	s->c.create_ret = urt_group_create(&s->c.g);
	s->c.spawn_ret[0] = urt_group_spawn(s->c.g, stubborn_member, s);
	/* Runs after the stubborn member has offloaded its nap. */
	s->c.spawn_ret[1] = urt_group_spawn(s->c.g, fail_eio, NULL);
	wait_group(&s->c);
	s->finished_at_wait = s->finished;
	return 0;
}

/* A member fails while another sits 30 ms in urt_to_thread: the wait
 * returns the failure only once that one has returned too. */
static void test_failure_waits_for_stubborn_member(void **state)
{
	struct stubborn_case s = { .nap.ms = 30, .to_thread_ret = -1000, .later_ret = -1000 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&s.c);
	spawn_ok(loop, NULL, stubborn_waiter, &s);
	run_and_destroy(loop);
	assert_int_equal(s.c.spawn_ret[0], 0);
	assert_int_equal(s.c.spawn_ret[1], 0);
	assert_int_equal(s.to_thread_ret, 0);      /* fn ran to its end */
	assert_int_equal(s.later_ret, -ECANCELED); /* it was cancelled */
	assert_true(s.finished_at_wait);
	assert_int_equal(s.c.wait_ret, -EIO);
	assert_true(s.nap.ended - s.nap.begun >= 30 * MS);
	assert_true(s.c.end >= s.nap.ended);
}

static int stubborn_deadline_waiter(void *arg)
{
	struct stubborn_case *s = arg;
	struct urt_timeout to;

	s->enter = urt_timeout_enter(&to, 10 * MS);
	s->c.create_ret = urt_group_create(&s->c.g);
	s->c.spawn_ret[0] = urt_group_spawn(s->c.g, stubborn_member, s);
	wait_group(&s->c);
	s->finished_at_wait = s->finished;
	s->leave = urt_timeout_leave(&to);
	return 0;
}

/* The waiter's deadline (10 ms) passes while the member is in a 100 ms
 * urt_to_thread: the wait goes on, untimed, until the member returns. */
static void test_deadline_waits_for_stubborn_member(void **state)
{
	struct stubborn_case s = { .nap.ms = 100, .to_thread_ret = -1000, .later_ret = -1000,
				   .enter = -1000, .leave = -1000 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&s.c);
	spawn_ok(loop, NULL, stubborn_deadline_waiter, &s);
	run_and_destroy(loop);
	assert_int_equal(s.enter, 0);
	assert_int_equal(s.c.spawn_ret[0], 0);
	assert_int_equal(s.to_thread_ret, 0);
	assert_int_equal(s.later_ret, -ECANCELED);
	assert_true(s.finished_at_wait);
	assert_int_equal(s.c.wait_ret, -ETIMEDOUT);
	assert_int_equal(s.leave, -ETIMEDOUT);
	assert_true(s.nap.ended - s.nap.begun >= 100 * MS);
	assert_true(s.c.end >= s.nap.ended);
}

/* ---- argument and caller errors ---- */

struct args_case {
	int create_null, spawn_null_group, spawn_null_fn, wait_null;
	int wait_ret;
	urt_group *g;
};

static int args_task(void *arg)
{
	struct args_case *a = arg;

	a->create_null = urt_group_create(NULL);
	TASK_CHECK(urt_group_create(&a->g) == 0);
	a->spawn_null_group = urt_group_spawn(NULL, quick_member, NULL);
	a->spawn_null_fn = (urt_group_spawn)(a->g, NULL, NULL); /* unchecked */
	a->wait_null = urt_group_wait(NULL);
	a->wait_ret = urt_group_wait(a->g);
	return 0;
}

static void test_bad_arguments(void **state)
{
	struct args_case a = { -1000, -1000, -1000, -1000, -1000, NULL };
	urt_group *g = NULL;
	urt_loop *loop;

	(void)state;
	/* Outside a task. */
	assert_int_equal(urt_group_create(&g), -EPERM);
	assert_null(g);
	assert_int_equal(urt_group_create(NULL), -EINVAL);
	assert_int_equal(urt_group_spawn(NULL, quick_member, NULL), -EINVAL);
	assert_int_equal(urt_group_wait(NULL), -EINVAL);
	/* Inside one. */
	loop = loop_new(NULL);
	spawn_ok(loop, NULL, args_task, &a);
	run_and_destroy(loop);
	assert_int_equal(a.create_null, -EINVAL);
	assert_int_equal(a.spawn_null_group, -EINVAL);
	assert_int_equal(a.spawn_null_fn, -EINVAL);
	assert_int_equal(a.wait_null, -EINVAL);
	assert_int_equal(a.wait_ret, 0); /* the bad calls spawned nothing */
}

struct owner_case {
	urt_group *g;
	int member_ran;
	int other_loop_wait;
	int wait_ret;
};

static int counted_member(void *arg)
{
	struct owner_case *o = arg;

	o->member_ran++;
	return 0;
}

static int make_group(void *arg)
{
	struct owner_case *o = arg;

	TASK_CHECK(urt_group_create(&o->g) == 0);
	TASK_CHECK(urt_group_spawn(o->g, counted_member, o) == 0);
	return 0; /* leaves without waiting */
}

static int wait_other_loop(void *arg)
{
	struct owner_case *o = arg;

	o->other_loop_wait = urt_group_wait(o->g);
	return 0;
}

static int wait_own_loop(void *arg)
{
	struct owner_case *o = arg;

	o->wait_ret = urt_group_wait(o->g);
	return 0;
}

/* urt_group_wait outside a task, or from a task of another loop, is
 * -EPERM and leaves the group alive: a task of its loop waits it later. */
static void test_wait_wrong_caller(void **state)
{
	struct owner_case o = { .other_loop_wait = -1000, .wait_ret = -1000 };
	urt_loop *a = loop_new(NULL);
	urt_loop *b = loop_new(NULL);

	(void)state;
	spawn_ok(a, NULL, make_group, &o);
	assert_int_equal(urt_loop_run(a), 0);
	assert_non_null(o.g);
	assert_int_equal(o.member_ran, 1);
	assert_int_equal(urt_group_wait(o.g), -EPERM);
	spawn_ok(b, NULL, wait_other_loop, &o);
	assert_int_equal(urt_loop_run(b), 0);
	assert_int_equal(o.other_loop_wait, -EPERM);
	spawn_ok(a, NULL, wait_own_loop, &o);
	assert_int_equal(urt_loop_run(a), 0);
	assert_int_equal(o.wait_ret, 0);
	urt_loop_destroy(b);
	urt_loop_destroy(a);
	check_tasks();
}

struct twice_case {
	struct ctx c;
	struct member m;
	int second_wait;
};

static int second_waiter(void *arg)
{
	struct twice_case *t = arg;

	t->second_wait = urt_group_wait(t->c.g);
	return 0;
}

static int first_waiter(void *arg)
{
	struct twice_case *t = arg;

	group_start(&t->c, &t->m, 1);
	t->c.spawn_ret[1] = urt_spawn(NULL, NULL, second_waiter, t);
	wait_group(&t->c);
	return 0;
}

/* A second task waiting while one already waits: -EINVAL. */
static void test_second_waiter(void **state)
{
	struct twice_case t = { .second_wait = -1000 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&t.c);
	members_init(&t.c, &t.m, 1, 20 * MS);
	spawn_ok(loop, NULL, first_waiter, &t);
	run_and_destroy(loop);
	assert_int_equal(t.c.spawn_ret[0], 0);
	assert_int_equal(t.c.spawn_ret[1], 0);
	assert_int_equal(t.second_wait, -EINVAL);
	assert_int_equal(t.c.wait_ret, 0);
	assert_int_equal(t.m.sleep_ret, 0);
	assert_int_equal(t.c.done_at_wait, 1);
}

struct empty_case {
	int create_ret, wait_ret;
	bool other_ran, other_ran_at_wait;
};

static int other_task(void *arg)
{
	struct empty_case *e = arg;

	e->other_ran = true;
	return 0;
}

static int empty_waiter(void *arg)
{
	struct empty_case *e = arg;
	urt_group *g = NULL;

	TASK_CHECK(urt_spawn(NULL, NULL, other_task, e) == 0);
	e->create_ret = urt_group_create(&g);
	e->wait_ret = urt_group_wait(g);
	e->other_ran_at_wait = e->other_ran; /* false: the wait did not park */
	return 0;
}

static void test_wait_empty_group(void **state)
{
	struct empty_case e = { -1000, -1000, false, true };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, NULL, empty_waiter, &e);
	run_and_destroy(loop);
	assert_int_equal(e.create_ret, 0);
	assert_int_equal(e.wait_ret, 0);
	assert_false(e.other_ran_at_wait);
	assert_true(e.other_ran);
}

/* ---- groups and loop destroy ---- */

struct orphan_case {
	struct ctx c;
	struct member m[2];
	int respawn[2];
};

struct orphan_member {
	struct orphan_case *o;
	int i;
};

/* Sleeps 10 s; when cancelled (by the loop's destroy), tries to spawn. */
static int orphan_member_fn(void *arg)
{
	struct orphan_member *om = arg;
	struct member *m = &om->o->m[om->i];

	m->ran = true;
	m->sleep_ret = urt_sleep_ns(10 * SEC);
	om->o->respawn[om->i] = urt_group_spawn(om->o->c.g, quick_member, NULL);
	m->at = ++om->o->c.steps;
	return m->sleep_ret;
}

static int orphan_maker(void *arg)
{
	struct orphan_member *om = arg;
	struct orphan_case *o = om[0].o;

	o->c.create_ret = urt_group_create(&o->c.g);
	for (int i = 0; i < 2; i++)
		o->c.spawn_ret[i] = urt_group_spawn(o->c.g, orphan_member_fn, &om[i]);
	return 0; /* never waits */
}

static int stop_later(void *arg)
{
	(void)arg;
	TASK_CHECK(urt_sleep_ns(10 * MS) == 0);
	TASK_CHECK(urt_loop_stop(urt_current_loop()) == 0);
	return 0;
}

/* A group never waited for, its members still sleeping when the loop is
 * destroyed: they are cancelled, and the group is freed with the loop
 * (ASan's leak check would see a leak). The first member to wake spawns
 * into a group that is not cancelling, of a loop being destroyed:
 * -ESHUTDOWN; it returns -ECANCELED, a failure, so the group cancels and
 * the second member's spawn is -ECANCELED. */
static void test_destroy_with_unwaited_group(void **state)
{
	struct orphan_case o = { .respawn = { -1000, -1000 } };
	struct orphan_member om[2] = { { &o, 0 }, { &o, 1 } };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	ctx_init(&o.c);
	members_init(&o.c, o.m, 2, 10 * SEC);
	spawn_ok(loop, NULL, orphan_maker, om);
	spawn_ok(loop, NULL, stop_later, NULL);
	assert_int_equal(urt_loop_run(loop), -EINTR);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(o.c.create_ret, 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(o.c.spawn_ret[i], 0);
		assert_true(o.m[i].ran);
		assert_int_equal(o.m[i].sleep_ret, -ECANCELED);
		assert_int_equal(o.respawn[i], o.m[i].at == 1 ? -ESHUTDOWN : -ECANCELED);
	}
	assert_int_equal(o.m[0].at + o.m[1].at, 3); /* 1 and 2 */
}

static int finished_orphan_maker(void *arg)
{
	struct owner_case *o = arg;

	TASK_CHECK(urt_group_create(&o->g) == 0);
	for (int i = 0; i < 3; i++)
		TASK_CHECK(urt_group_spawn(o->g, counted_member, o) == 0);
	return 0;
}

/* A group whose members all returned, never waited for: freed by destroy. */
static void test_destroy_with_finished_group(void **state)
{
	struct owner_case o = { 0 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, NULL, finished_orphan_maker, &o);
	run_and_destroy(loop);
	assert_int_equal(o.member_ran, 3);
}

/* The loop destroyed while a task waits on a group: the waiter and the
 * members are cancelled; the wait still returns after the members. */
static void test_destroy_while_waiting(void **state)
{
	struct waiter_case w;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	memset(&w, 0, sizeof(w));
	ctx_init(&w.c);
	members_init(&w.c, w.m, 3, 10 * SEC);
	spawn_ok(loop, NULL, cancel_waiter_fn, &w);
	spawn_ok(loop, NULL, stop_later, NULL);
	assert_int_equal(urt_loop_run(loop), -EINTR);
	assert_int_equal(w.c.wait_ret, -1000); /* still waiting */
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(w.c.wait_ret, -ECANCELED);
	for (int i = 0; i < 3; i++)
		assert_int_equal(w.m[i].sleep_ret, -ECANCELED);
	assert_int_equal(w.c.done_at_wait, 3);
	assert_int_equal(w.c.wait_at, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_succeed),
		cmocka_unit_test(test_first_failure_cancels),
		cmocka_unit_test(test_positive_failure),
		cmocka_unit_test(test_spawn_into_cancelling_group),
		cmocka_unit_test(test_member_spawns_member),
		cmocka_unit_test(test_member_joins_after_last_returned),
		cmocka_unit_test(test_cancel_waiter),
		cmocka_unit_test(test_waiter_deadline),
		cmocka_unit_test(test_waiter_cancelled_before_wait),
		cmocka_unit_test(test_deadline_passed_before_wait),
		cmocka_unit_test(test_failure_waits_for_stubborn_member),
		cmocka_unit_test(test_deadline_waits_for_stubborn_member),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_wait_wrong_caller),
		cmocka_unit_test(test_second_waiter),
		cmocka_unit_test(test_wait_empty_group),
		cmocka_unit_test(test_destroy_with_unwaited_group),
		cmocka_unit_test(test_destroy_with_finished_group),
		cmocka_unit_test(test_destroy_while_waiting),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
