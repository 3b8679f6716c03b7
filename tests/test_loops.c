/*
 * A set of loops: each loop runs the first task, calls and spawns go
 * between loops and from plain threads, cancels and deadlines end a call
 * after its remote task, the run ends when every loop is idle, and
 * destroy hands what was queued back to its owner, file descriptors
 * included.
 *
 * Tasks run on several threads here: they record what they saw with
 * atomics, and the test body asserts after the run.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "test_util.h"

static atomic_int failures;

#define CHECK(cond)                                                               \
	do {                                                                      \
		if (!(cond)) {                                                    \
			atomic_fetch_add(&failures, 1);                           \
			print_error("%s:%d: check failed: %s\n", __FILE__, __LINE__, \
				    #cond);                                       \
		}                                                                 \
	} while (0)

static void checks_passed(void)
{
	assert_int_equal(atomic_exchange(&failures, 0), 0);
}

static urt_loops *set_new(unsigned n)
{
	struct urt_loops_opts o = { .loops = n };
	urt_loops *set = NULL;

	assert_int_equal(urt_loops_create(&set, &o), 0);
	assert_non_null(set);
	assert_int_equal(urt_loops_count(set), n);
	return set;
}

static int index_here(void)
{
	return urt_loop_index(urt_current_loop());
}

static void test_bad_arguments(void **state)
{
	struct urt_loops_opts bad_flags = { .flags = 1u << 7 }, too_many = { .loops = 5000 };
	urt_loops *set = (urt_loops *)1;
	int x = 0;

	(void)state;
	assert_int_equal(urt_loops_create(NULL, NULL), -EINVAL);
	assert_int_equal(urt_loops_create(&set, &bad_flags), -EINVAL);
	assert_null(set);
	assert_int_equal(urt_loops_create(&set, &too_many), -EINVAL);
	assert_int_equal(urt_loops_run(NULL, NULL, NULL), -EINVAL);
	assert_int_equal(urt_loops_cancel(NULL), -EINVAL);
	assert_int_equal(urt_loops_count(NULL), 0);
	assert_null(urt_loops_get(NULL, 0));
	assert_null(urt_loop_set(NULL));
	assert_int_equal(urt_loop_index(NULL), -EINVAL);
	assert_int_equal(urt_call((urt_loop *)NULL, (int (*)(int *))NULL, &x), -EINVAL);
	assert_int_equal(urt_spawn_on((urt_loop *)NULL, (int (*)(int *))NULL, &x, NULL), -EINVAL);
	urt_loops_destroy(NULL);
}

/* ---- the first task on every loop ---- */

struct firsts {
	atomic_int seen[4];
	atomic_int count;
	int fail_on;            /* the loop whose first task returns 7 */
};

static int first(struct firsts *f)
{
	urt_loop *loop = urt_current_loop();
	int i = index_here();

	CHECK(i >= 0 && i < 4);
	CHECK(urt_loop_stop(loop) == -EOPNOTSUPP); /* urt_loops_cancel is the way */
	CHECK(urt_loops_count(urt_loop_set(loop)) == 2);
	CHECK(urt_loops_get(urt_loop_set(loop), (unsigned)i) == loop);
	atomic_fetch_add(&f->seen[i], 1);
	atomic_fetch_add(&f->count, 1);
	return i == f->fail_on ? 7 : 0;
}

static void test_first_task_on_every_loop(void **state)
{
	urt_loops *set = set_new(2);
	struct firsts f = { .fail_on = -1 };
	struct urt_loop_stats st;

	(void)state;
	assert_int_equal(urt_loop_index(urt_loops_get(set, 0)), 0);
	assert_int_equal(urt_loop_index(urt_loops_get(set, 1)), 1);
	assert_ptr_equal(urt_loop_set(urt_loops_get(set, 1)), set);
	assert_null(urt_loops_get(set, 2));
	assert_int_equal(urt_loops_run(set, (urt_task_fn)first, &f), 0);
	assert_int_equal(f.seen[0], 1);
	assert_int_equal(f.seen[1], 1);
	/* Again, and a first task's value comes back. */
	f.fail_on = 1;
	assert_int_equal(urt_loops_run(set, (urt_task_fn)first, &f), 7);
	assert_int_equal(f.count, 4);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(urt_loop_stats(urt_loops_get(set, i), &st), 0);
		assert_int_equal(st.sqes + st.more + st.messages, st.cqes + st.settled + st.inflight);
		assert_int_equal(st.spawned, 2);
		assert_int_equal(st.live, 0);
	}
	urt_loops_destroy(set);
	checks_passed();
}

/* ---- calls ---- */

struct add {
	int x;
	int where;              /* the loop fn ran on */
};

static int add_one(struct add *a)
{
	a->where = index_here();
	return a->x + 1;
}

#define CALLS 1000

static int caller(void *arg)
{
	urt_loops *set = arg;

	if (index_here() != 0)
		return 0;
	for (int i = 0; i < CALLS; i++) {
		struct add a = { .x = i, .where = -1 };

		CHECK(urt_call(urt_loops_get(set, 1), add_one, &a) == i + 1);
		CHECK(a.where == 1);
	}
	/* To its own loop, too. */
	struct add self = { .x = 41, .where = -1 };

	CHECK(urt_call(urt_current_loop(), add_one, &self) == 42);
	CHECK(self.where == 0);
	return 0;
}

static void test_calls_between_loops(void **state)
{
	urt_loops *set = set_new(2);
	struct urt_loop_stats st;

	(void)state;
	assert_int_equal(urt_loops_run(set, caller, set), 0);
	checks_passed();
	/* Loop 1 ran a task per call; loop 0 its first and the call to
	 * itself. */
	assert_int_equal(urt_loop_stats(urt_loops_get(set, 1), &st), 0);
	assert_int_equal(st.spawned, 1 + CALLS);
	assert_int_equal(urt_loop_stats(urt_loops_get(set, 0), &st), 0);
	assert_int_equal(st.spawned, 2);
	assert_int_equal(st.inflight, 0);
	urt_loops_destroy(set);
}

/* A thread that runs no loop calls into the set while it runs: loop 0's
 * first task waits for it. */
struct outside {
	urt_loops *set;
	atomic_int done;
	int ret;
	struct add a;
};

static void *outside_caller(void *arg)
{
	struct outside *o = arg;

	o->a = (struct add){ .x = 99, .where = -1 };
	o->ret = urt_call(urt_loops_get(o->set, 1), add_one, &o->a);
	atomic_store(&o->done, 1);
	return NULL;
}

/* Loop 0's first task: keep the run going until *done (at most 10 s). */
static int wait_for_flag(atomic_int *done)
{
	uint64_t until = urt_now_ns() + 10 * SEC;

	if (index_here() != 0)
		return 0;
	while (!atomic_load(done) && urt_now_ns() < until)
		CHECK(urt_sleep_ns(MS) == 0);
	return 0;
}

static void test_call_from_a_thread(void **state)
{
	struct outside o = { .set = set_new(2) };
	pthread_t th;

	(void)state;
	assert_int_equal(pthread_create(&th, NULL, outside_caller, &o), 0);
	assert_int_equal(urt_loops_run(o.set, (urt_task_fn)wait_for_flag, &o.done), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(o.done, 1);
	assert_int_equal(o.ret, 100);
	assert_int_equal(o.a.where, 1);
	/* A thread that owns a loop but is not in a task would wait for
	 * itself. */
	urt_loop *mine = loop_new(NULL);

	assert_int_equal(urt_call(mine, add_one, &o.a), -EDEADLK);
	urt_loop_destroy(mine);
	urt_loops_destroy(o.set);
	checks_passed();
}

/* A task of a loop that is not in the set calls into it; and a task may
 * not make or run a set. */
struct lone {
	urt_loops *set;
	atomic_int done;
	int ret, create_ret, run_ret;
	struct add a;
};

static void *run_set(void *arg)
{
	struct lone *l = arg;

	l->run_ret = urt_loops_run(l->set, (urt_task_fn)wait_for_flag, &l->done);
	return NULL;
}

static int lone_task(struct lone *l)
{
	urt_loops *other = NULL;

	l->create_ret = urt_loops_create(&other, NULL);
	l->a = (struct add){ .x = 6, .where = -1 };
	l->ret = urt_call(urt_loops_get(l->set, 1), add_one, &l->a);
	atomic_store(&l->done, 1);
	return 0;
}

static void test_call_from_a_loop_outside_the_set(void **state)
{
	struct lone l = { .set = set_new(2), .run_ret = 1 };
	urt_loop *mine = loop_new(NULL);
	pthread_t th;

	(void)state;
	assert_int_equal(pthread_create(&th, NULL, run_set, &l), 0);
	assert_int_equal(urt_spawn(mine, NULL, lone_task, &l), 0);
	assert_int_equal(urt_loop_run(mine), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(l.create_ret, -EPERM);
	assert_int_equal(l.ret, 7);
	assert_int_equal(l.a.where, 1);
	assert_int_equal(l.run_ret, 0);
	urt_loop_destroy(mine);
	urt_loops_destroy(l.set);
	checks_passed();
}

/* ---- spawns ---- */

#define SPAWNS 100

struct counted {
	atomic_int *ran, *dropped;
	int where;
};

static int count_run(struct counted *c)
{
	CHECK(index_here() == c->where);
	atomic_fetch_add(c->ran, 1);
	free(c);
	return 0;
}

static void count_drop(struct counted *c)
{
	atomic_fetch_add(c->dropped, 1);
	free(c);
}

struct spawner {
	urt_loops *set;
	atomic_int ran, dropped;
};

static int spawner(struct spawner *sp)
{
	if (index_here() != 0)
		return 0;
	for (int i = 0; i < SPAWNS; i++) {
		struct counted *c = malloc(sizeof(*c));

		*c = (struct counted){ &sp->ran, &sp->dropped, 1 };
		CHECK(urt_spawn_on(urt_loops_get(sp->set, 1), count_run, c, count_drop) == 0);
	}
	return 0;
}

static void test_spawn_on_another_loop(void **state)
{
	struct spawner sp = { .set = set_new(2) };

	(void)state;
	/* The run ends only once every spawned task has run. */
	assert_int_equal(urt_loops_run(sp.set, (urt_task_fn)spawner, &sp), 0);
	assert_int_equal(sp.ran, SPAWNS);
	assert_int_equal(sp.dropped, 0);
	urt_loops_destroy(sp.set);
	checks_passed();
}

/* Queued while the set does not run: destroy hands arg to dtor. */
static void test_spawn_dropped_at_destroy(void **state)
{
	urt_loops *set = set_new(2);
	atomic_int ran = 0, dropped = 0;

	(void)state;
	for (int i = 0; i < 3; i++) {
		struct counted *c = malloc(sizeof(*c));

		*c = (struct counted){ &ran, &dropped, 1 };
		assert_int_equal(urt_spawn_on(urt_loops_get(set, 1), count_run, c, count_drop), 0);
	}
	urt_loops_destroy(set);
	assert_int_equal(ran, 0);
	assert_int_equal(dropped, 3);
	checks_passed();
}

/* ---- file descriptors handed between loops ---- */

struct handed {
	int fd;
	atomic_int *closed_by_task, *closed_by_dtor;
};

/* The receiving loop owns the fd: it reads the peer's byte, then closes. */
static int take_fd(struct handed *h)
{
	char c = 0;

	CHECK(urt_read(h->fd, &c, 1, -1) == 1 && c == 'x');
	CHECK(close(h->fd) == 0);
	atomic_fetch_add(h->closed_by_task, 1);
	free(h);
	return 0;
}

static void drop_fd(struct handed *h)
{
	CHECK(close(h->fd) == 0);
	atomic_fetch_add(h->closed_by_dtor, 1);
	free(h);
}

struct handoff {
	urt_loops *set;
	atomic_int by_task, by_dtor;
};

#define HANDOFFS 50

/* Loop 0 makes socket pairs and hands one end of each to loop 1. */
static int hand_fds(struct handoff *ho)
{
	if (index_here() != 0)
		return 0;
	for (int i = 0; i < HANDOFFS; i++) {
		struct handed *h = malloc(sizeof(*h));
		int sv[2];

		CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
		CHECK(write(sv[1], "x", 1) == 1);
		CHECK(close(sv[1]) == 0);
		*h = (struct handed){ sv[0], &ho->by_task, &ho->by_dtor };
		CHECK(urt_spawn_on(urt_loops_get(ho->set, 1), take_fd, h, drop_fd) == 0);
	}
	return 0;
}

static void test_fds_handed_between_loops(void **state)
{
	struct handoff ho = { .set = set_new(2) };
	int before = open_fds();

	(void)state;
	assert_int_equal(urt_loops_run(ho.set, (urt_task_fn)hand_fds, &ho), 0);
	assert_int_equal(ho.by_task, HANDOFFS);
	assert_int_equal(ho.by_dtor, 0);
	assert_int_equal(open_fds(), before);
	/* Handed while the set does not run: destroy gives each to dtor. */
	for (int i = 0; i < 3; i++) {
		struct handed *h = malloc(sizeof(*h));
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		close(sv[1]);
		*h = (struct handed){ sv[0], &ho.by_task, &ho.by_dtor };
		assert_int_equal(urt_spawn_on(urt_loops_get(ho.set, 1), take_fd, h, drop_fd), 0);
	}
	urt_loops_destroy(ho.set);
	assert_int_equal(ho.by_dtor, 3);
	/* The loops' own fds (rings, pool) went with the set too. */
	assert_true(open_fds() < before);
	checks_passed();
}

/* ---- cancels and deadlines ---- */

struct sleeper {
	int slept;              /* what the remote sleep returned */
	int where;
};

static int sleep_long(struct sleeper *s)
{
	s->where = index_here();
	s->slept = urt_sleep_ns(60 * SEC);
	return 5;
}

struct cancel_case {
	urt_loops *set;
	urt_task *caller;
	int call_ret, timed_ret;
	struct sleeper s, t;
	uint64_t took;
};

static int cancelled_caller(struct cancel_case *cc)
{
	uint64_t t0 = urt_now_ns();

	cc->call_ret = urt_call(urt_loops_get(cc->set, 1), sleep_long, &cc->s);
	cc->took = urt_now_ns() - t0;
	return 0;
}

static int cancel_first(struct cancel_case *cc)
{
	struct urt_timeout scope;

	if (index_here() != 0)
		return 0;
	CHECK(urt_spawn(NULL, &cc->caller, (urt_task_fn)cancelled_caller, cc) == 0);
	CHECK(urt_sleep_ns(20 * MS) == 0);
	CHECK(urt_cancel(cc->caller) == 0);
	CHECK(urt_join(cc->caller, NULL) == 0);
	/* The same with a deadline. */
	CHECK(urt_timeout_enter(&scope, 20 * MS) == 0);
	cc->timed_ret = urt_call(urt_loops_get(cc->set, 1), sleep_long, &cc->t);
	CHECK(urt_timeout_leave(&scope) == -ETIMEDOUT);
	return 0;
}

static void test_cancel_and_deadline_end_a_call(void **state)
{
	struct cancel_case cc = { .set = set_new(2), .s = { 1, -1 }, .t = { 1, -1 } };

	(void)state;
	assert_int_equal(urt_loops_run(cc.set, (urt_task_fn)cancel_first, &cc), 0);
	assert_int_equal(cc.call_ret, -ECANCELED);
	assert_int_equal(cc.s.where, 1);
	assert_int_equal(cc.s.slept, -ECANCELED); /* the remote task was cancelled */
	assert_true(cc.took < 30 * SEC);
	assert_int_equal(cc.timed_ret, -ETIMEDOUT);
	assert_int_equal(cc.t.where, 1);
	assert_int_equal(cc.t.slept, -ECANCELED);
	urt_loops_destroy(cc.set);
	checks_passed();
}

/* urt_loops_cancel from a task: every loop's tasks end, calls between
 * them included, and spawns are refused until the run ends. */
struct cancel_all {
	urt_loops *set;
	atomic_int slept_cancelled, calls_cancelled, spawn_refused;
};

static int sleep_and_count(struct cancel_all *ca)
{
	if (urt_sleep_ns(60 * SEC) == -ECANCELED)
		atomic_fetch_add(&ca->slept_cancelled, 1);
	return 0;
}

static int call_and_count(struct cancel_all *ca)
{
	struct sleeper s = { 0, -1 };

	if (urt_call(urt_loops_get(ca->set, 1 - (unsigned)index_here()), sleep_long, &s) ==
	    -ECANCELED)
		atomic_fetch_add(&ca->calls_cancelled, 1);
	return 0;
}

static int cancel_all_first(struct cancel_all *ca)
{
	for (int i = 0; i < 3; i++) {
		CHECK(urt_spawn(NULL, NULL, (urt_task_fn)sleep_and_count, ca) == 0);
		CHECK(urt_spawn(NULL, NULL, (urt_task_fn)call_and_count, ca) == 0);
	}
	if (index_here() == 0) {
		CHECK(urt_sleep_ns(30 * MS) == 0);
		CHECK(urt_loops_cancel(ca->set) == 0);
		/* This task is cancelled too: its sleep says so. */
		CHECK(urt_sleep_ns(60 * SEC) == -ECANCELED);
		if (urt_spawn(NULL, NULL, (urt_task_fn)sleep_and_count, ca) == -ESHUTDOWN)
			atomic_fetch_add(&ca->spawn_refused, 1);
		return -ECANCELED;
	}
	return 0;
}

static void test_cancel_every_loop(void **state)
{
	struct cancel_all ca = { .set = set_new(2) };

	(void)state;
	assert_int_equal(urt_loops_run(ca.set, (urt_task_fn)cancel_all_first, &ca), -ECANCELED);
	assert_int_equal(ca.slept_cancelled, 6);
	assert_int_equal(ca.calls_cancelled, 6);
	assert_int_equal(ca.spawn_refused, 1);
	/* The next run is not cancelled. */
	struct firsts f = { .fail_on = -1 };

	assert_int_equal(urt_loops_run(ca.set, (urt_task_fn)first, &f), 0);
	assert_int_equal(f.count, 2);
	urt_loops_destroy(ca.set);
	checks_passed();
}

/* ---- channels between loops ---- */

#define XN 100000

struct xcase {
	urt_loops *set;
	urt_xchan *ch;
	atomic_int outside_done;
	long long sum;
	long got, from_outside;
	int order_breaks, closed_ret, send_after_close, senders_done;
	int wrong_loop;
};

struct tagged {
	int who;                /* 0: loop 0's task, 1: the outside thread */
	int seq;
};

static int x_producer(struct xcase *x)
{
	for (int i = 0; i < XN; i++) {
		struct tagged m = { 0, i };

		CHECK(urt_xchan_send(x->ch, &m) == 1);
	}
	return 0;
}

static int x_consumer(struct xcase *x)
{
	struct tagged batch[16];
	int next[2] = { 0, 0 };
	ssize_t n;

	while ((n = urt_xchan_recv_many(x->ch, batch, 16)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			struct tagged *m = &batch[i];

			if (m->seq != next[m->who])
				x->order_breaks++;
			next[m->who] = m->seq + 1;
			x->sum += m->seq;
			x->got++;
			x->from_outside += m->who;
		}
		/* Both producers done: close (the consumer may, too). */
		if (x->got == 2 * XN)
			CHECK(urt_xchan_close(x->ch) == 0);
	}
	x->closed_ret = (int)n;
	return 0;
}

static void *x_outside(void *arg)
{
	struct xcase *x = arg;
	struct tagged ms[100];

	for (int i = 0; i < XN; i += 100) {
		for (int k = 0; k < 100; k++)
			ms[k] = (struct tagged){ 1, i + k };
		CHECK(urt_xchan_send_many(x->ch, ms, 100) == 100);
	}
	atomic_store(&x->outside_done, 1);
	return NULL;
}

static int x_first(struct xcase *x)
{
	struct tagged m;

	if (index_here() == 0) {
		/* Only the consumer's tasks receive. */
		x->wrong_loop = (int)urt_xchan_recv(x->ch, &m);
		return x_producer(x);
	}
	return x_consumer(x);
}

static void test_channel_between_loops(void **state)
{
	struct xcase x = { .set = set_new(2) };
	struct tagged m = { 0, 0 };
	pthread_t th;

	(void)state;
	assert_int_equal(urt_xchan_create(NULL, urt_loops_get(x.set, 1), 8, 64), -EINVAL);
	assert_int_equal(urt_xchan_create(&x.ch, NULL, 8, 64), -EINVAL);
	assert_int_equal(urt_xchan_create(&x.ch, urt_loops_get(x.set, 1), 0, 64), -EINVAL);
	assert_int_equal(urt_xchan_create(&x.ch, urt_loops_get(x.set, 1), 8, 0), -EINVAL);
	/* A small ring: senders wait for room again and again. */
	assert_int_equal(urt_xchan_create(&x.ch, urt_loops_get(x.set, 1), sizeof(struct tagged), 64),
			 0);
	assert_int_equal(urt_xchan_recv(x.ch, &m), -EPERM); /* outside a task */
	assert_int_equal(pthread_create(&th, NULL, x_outside, &x), 0);
	assert_int_equal(urt_loops_run(x.set, (urt_task_fn)x_first, &x), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(x.wrong_loop, -EPERM);
	assert_int_equal(x.got, 2 * XN);
	assert_int_equal(x.from_outside, XN);
	assert_int_equal(x.order_breaks, 0);
	assert_int_equal(x.sum, 2 * ((long long)XN * (XN - 1) / 2));
	assert_int_equal(x.closed_ret, 0);
	assert_int_equal(urt_xchan_send(x.ch, &m), -EPIPE);
	assert_int_equal(urt_xchan_close(x.ch), -EALREADY);
	assert_int_equal(urt_xchan_len(x.ch), 0);
	urt_loops_destroy(x.set);
	assert_int_equal(urt_xchan_destroy(x.ch), 0); /* the consumer's loop is gone */
	checks_passed();
}

/* Waits that end otherwise: a receiver cancelled, a sender on a full
 * channel cancelled, and senders woken by a close. */
struct xwait {
	urt_loops *set;
	urt_xchan *ch;
	urt_task *receiver, *sender;
	int recv_ret, send_ret, cancelled_send_ret, closed_send_ret, destroy_ret;
	atomic_int phase;
};

static int xw_receiver(struct xwait *w)
{
	int v;

	w->recv_ret = (int)urt_xchan_recv(w->ch, &v);
	return 0;
}

static int xw_sender(struct xwait *w)
{
	int v = 7;

	w->send_ret = urt_xchan_send(w->ch, &v); /* the ring is full: waits */
	return 0;
}

static int xw_first(struct xwait *w)
{
	int v = 1;

	if (index_here() == 1) {
		/* The consumer: a receiver on the empty channel, cancelled. */
		CHECK(urt_spawn(NULL, &w->receiver, xw_receiver, w) == 0);
		CHECK(urt_sleep_ns(20 * MS) == 0);
		CHECK(urt_cancel(w->receiver) == 0);
		CHECK(urt_join(w->receiver, NULL) == 0);
		atomic_store(&w->phase, 1);
		/* Then nobody receives until loop 0 is done. */
		while (atomic_load(&w->phase) != 2)
			CHECK(urt_sleep_ns(MS) == 0);
		CHECK(urt_xchan_recv(w->ch, &v) == 1 && v == 1);
		CHECK(urt_xchan_recv(w->ch, &v) == 1 && v == 2);
		CHECK(urt_xchan_recv(w->ch, &v) == 0); /* closed, drained */
		w->destroy_ret = urt_xchan_destroy(w->ch);
		return 0;
	}
	while (atomic_load(&w->phase) != 1)
		CHECK(urt_sleep_ns(MS) == 0);
	/* Capacity 2: two fit, the third waits; cancelled, it is not sent. */
	CHECK(urt_xchan_send(w->ch, &v) == 1);
	v = 2;
	CHECK(urt_xchan_send(w->ch, &v) == 1);
	CHECK(urt_spawn(NULL, &w->sender, xw_sender, w) == 0);
	CHECK(urt_sleep_ns(20 * MS) == 0);
	CHECK(urt_cancel(w->sender) == 0);
	CHECK(urt_join(w->sender, NULL) == 0);
	w->cancelled_send_ret = w->send_ret;
	/* Another waits and is woken by the close. */
	CHECK(urt_spawn(NULL, &w->sender, xw_sender, w) == 0);
	CHECK(urt_sleep_ns(20 * MS) == 0);
	CHECK(urt_xchan_close(w->ch) == 0);
	CHECK(urt_join(w->sender, NULL) == 0);
	w->closed_send_ret = w->send_ret;
	atomic_store(&w->phase, 2);
	return 0;
}

static void test_channel_waits_end(void **state)
{
	struct xwait w = { .set = set_new(2) };

	(void)state;
	assert_int_equal(urt_xchan_create(&w.ch, urt_loops_get(w.set, 1), sizeof(int), 2), 0);
	assert_int_equal(urt_loops_run(w.set, (urt_task_fn)xw_first, &w), 0);
	assert_int_equal(w.recv_ret, -ECANCELED);
	assert_int_equal(w.cancelled_send_ret, -ECANCELED);
	assert_int_equal(w.closed_send_ret, -EPIPE);
	assert_int_equal(w.destroy_ret, 0);
	urt_loops_destroy(w.set);
	checks_passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_first_task_on_every_loop),
		cmocka_unit_test(test_calls_between_loops),
		cmocka_unit_test(test_call_from_a_thread),
		cmocka_unit_test(test_call_from_a_loop_outside_the_set),
		cmocka_unit_test(test_spawn_on_another_loop),
		cmocka_unit_test(test_spawn_dropped_at_destroy),
		cmocka_unit_test(test_fds_handed_between_loops),
		cmocka_unit_test(test_cancel_and_deadline_end_a_call),
		cmocka_unit_test(test_cancel_every_loop),
		cmocka_unit_test(test_channel_between_loops),
		cmocka_unit_test(test_channel_waits_end),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
