/* loop: the scheduler. Run ready tasks, arm the one timeout for all sleepers,
 * submit everything with one io_uring_enter, dispatch completions. Also the
 * task API that is about scheduling: spawn, join, cancel, yield. */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "urt_internal.h"

#if URT__TSAN
#include <sanitizer/tsan_interface.h>
#endif

URT__TLS struct urt_loop *urt__cur_loop;
URT__TLS struct urt_task *urt__cur_task;

#define DEFAULT_ENTRIES 256u
#define DEFAULT_STACK (64u * 1024u)
#define MIN_STACK (16u * 1024u)
#define MAX_STACK ((size_t)1 << 30)
#define DEFAULT_SPIN_NS 20000u

uint64_t urt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

urt_loop *urt_current_loop(void)
{
	return urt__cur_loop;
}

urt_task *urt_current_task(void)
{
	return urt__cur_task;
}

static bool owned(const struct urt_loop *loop)
{
	return pthread_equal(loop->owner, pthread_self());
}

/* ---- run queue ---- */

static void enqueue(struct urt_task **head, struct urt_task **tail, struct urt_task *t)
{
	t->state = URT__READY;
	t->next = NULL;
	if (*tail)
		(*tail)->next = t;
	else
		*head = t;
	*tail = t;
}

void urt__ready(struct urt_task *t)
{
	enqueue(&t->loop->rq_head, &t->loop->rq_tail, t);
	t->loop->rq_len++;
}

/* Move the tasks that yielded this turn to the back of the run queue. */
static void yq_splice(struct urt_loop *loop)
{
	if (!loop->yq_head)
		return;
	loop->rq_len += loop->yq_len;
	loop->yq_len = 0;
	if (loop->rq_tail)
		loop->rq_tail->next = loop->yq_head;
	else
		loop->rq_head = loop->yq_head;
	loop->rq_tail = loop->yq_tail;
	loop->yq_head = loop->yq_tail = NULL;
}

static struct urt_task *rq_pop(struct urt_loop *loop)
{
	struct urt_task *t = loop->rq_head;

	if (t) {
		loop->rq_head = t->next;
		if (!loop->rq_head)
			loop->rq_tail = NULL;
		loop->rq_len--;
	}
	return t;
}

int urt__park(struct urt_task *t, enum urt__wait why)
{
	t->state = URT__PARKED;
	t->wait = (uint8_t)why;
#if !URT__ASAN
	struct urt_loop *loop = t->loop;

	/* More tasks to run in this pass: switch straight to the next, as
	 * the scheduler would (one switch instead of two). Not with the stall
	 * detector, which times each task from the scheduler. */
	if (loop->batch_left && !loop->stall_ns) {
		loop->batch_left--;
		urt__task_switch(t, rq_pop(loop));
	} else
#endif
		urt__task_suspend(t);
	t->wait = URT__WAIT_NONE;
	return t->wake_res;
}

void urt__wake(struct urt_task *t, int res)
{
	/* Whatever ended the wait, its deadline's timer goes with it: a
	 * timer left behind would interrupt a wait that is over. */
	if (t->heap_idx != SIZE_MAX)
		urt__timer_del(t->loop, t);
	t->wake_res = res;
	urt__ready(t);
}

/* ---- the task list ---- */

static void link_task(struct urt_loop *loop, struct urt_task *t)
{
	t->all_prev = NULL;
	t->all_next = loop->all;
	if (loop->all)
		loop->all->all_prev = t;
	loop->all = t;
}

static void free_task(struct urt_task *t)
{
	struct urt_loop *loop = t->loop;

	if (t->all_prev)
		t->all_prev->all_next = t->all_next;
	else
		loop->all = t->all_next;
	if (t->all_next)
		t->all_next->all_prev = t->all_prev;
	t->state = URT__FREED;
	urt__task_free(t);
}

void urt__task_finished(struct urt_task *t)
{
	t->state = URT__DONE;
	t->loop->live--;
	if (t->group)
		urt__group_member_done(t);
	if (t->joiner) {
		/* t->joiner stays set: the handle is claimed until the joiner
		 * runs and frees it, so no other join can take it meanwhile. */
		urt__wake(t->joiner, 0);
	}
}

/* ---- timers: a binary min-heap by deadline ---- */

static void heap_set(struct urt__timer *h, size_t i, struct urt__timer e)
{
	h[i] = e;
	e.task->heap_idx = i;
}

static void heap_up(struct urt__timer *h, size_t i)
{
	struct urt__timer e = h[i];

	while (i > 0 && e.deadline < h[(i - 1) / 2].deadline) {
		heap_set(h, i, h[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(h, i, e);
}

static void heap_down(struct urt__timer *h, size_t n, size_t i)
{
	struct urt__timer e = h[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && h[c + 1].deadline < h[c].deadline)
			c++;
		if (e.deadline <= h[c].deadline)
			break;
		heap_set(h, i, h[c]);
		i = c;
	}
	heap_set(h, i, e);
}

int urt__timer_add(struct urt_loop *loop, struct urt_task *t, uint64_t deadline)
{
	if (loop->heap_n == loop->heap_cap) {
		size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 256;
		struct urt__timer *h = realloc(loop->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		loop->heap = h;
		loop->heap_cap = cap;
	}
	loop->heap[loop->heap_n] = (struct urt__timer){ deadline, t };
	heap_up(loop->heap, loop->heap_n++);
	return 0;
}

void urt__timer_del(struct urt_loop *loop, struct urt_task *t)
{
	size_t i = t->heap_idx;

	if (i == SIZE_MAX)
		return;
	t->heap_idx = SIZE_MAX;
	loop->heap_n--;
	if (i == loop->heap_n)
		return;
	loop->heap[i] = loop->heap[loop->heap_n];
	heap_down(loop->heap, loop->heap_n, i);
	heap_up(loop->heap, i);
}

/* End a wait that can be cut short (by a cancel, res -ECANCELED, or by
 * the task's deadline, res -ETIMEDOUT). A sleep whose own deadline came is
 * woken by timers_expire, not here. Returns false for a wait that only
 * its own completion ends (I/O, urt_to_thread). */
static bool wait_interrupt(struct urt_task *t, int res)
{
	switch (t->wait) {
	case URT__WAIT_SLEEP:
		urt__wake(t, res);
		return true;
	case URT__WAIT_JOB:
		urt__job_abandon(t, res);
		return true;
	case URT__WAIT_HOOK:
		/* The hook may leave t parked (a group): no timer stays. */
		urt__timer_del(t->loop, t);
		t->interrupt(t, res);
		return true;
	default:
		return false;
	}
}

/* Wake every task whose timer has passed: sleepers with 0, other waits
 * with -ETIMEDOUT. The clock is read after the kernel's timeout fired, so
 * no sleep ends before its deadline. */
static void timers_expire(struct urt_loop *loop)
{
	uint64_t now;

	if (!loop->heap_n)
		return;
	now = urt_now_ns();
	while (loop->heap_n && loop->heap[0].deadline <= now) {
		struct urt_task *t = loop->heap[0].task;
		bool ok;

		urt__timer_del(loop, t);
		if (t->wait == URT__WAIT_SLEEP) {
			urt__wake(t, 0);
		} else {
			ok = wait_interrupt(t, -ETIMEDOUT);
			assert(ok);
			(void)ok;
		}
	}
}

int urt__wait_check(struct urt_task *t)
{
	if (t->cancelled)
		return -ECANCELED;
	if (t->deadline != UINT64_MAX && urt_now_ns() >= t->deadline)
		return -ETIMEDOUT;
	return 0;
}

int urt__park_hook(struct urt_task *t, void *obj, void (*interrupt)(struct urt_task *, int),
		    uint64_t deadline)
{
	int ret;

	t->interrupt = interrupt;
	t->wait_obj = obj;
	if (deadline != UINT64_MAX) {
		ret = urt__timer_add(t->loop, t, deadline);
		if (ret)
			return ret;
	}
	ret = urt__park(t, URT__WAIT_HOOK);
	t->interrupt = NULL;
	t->wait_obj = NULL;
	return ret;
}

/* ---- wait queues ---- */

static void waitq_interrupt(struct urt_task *t, int res)
{
	urt__waitq_wake(t->wait_obj, res);
}

int urt__waitq_park(struct urt__waitq *q, struct urt__waiter *w, struct urt_task *t)
{
	return urt__waitq_park_until(q, w, t, t->deadline);
}

int urt__waitq_park_until(struct urt__waitq *q, struct urt__waiter *w, struct urt_task *t,
			  uint64_t at)
{
	int ret = urt__wait_check(t);

	if (ret)
		return ret;
	w->task = t;
	w->q = q;
	w->next = NULL;
	w->prev = q->tail;
	if (q->tail)
		q->tail->next = w;
	else
		q->head = w;
	q->tail = w;
	ret = urt__park_hook(t, w, waitq_interrupt, at);
	if (w->q) /* not parked after all (-ENOMEM arming the deadline) */
		urt__waitq_wake(w, ret);
	return ret;
}

void urt__waitq_wake(struct urt__waiter *w, int res)
{
	struct urt__waitq *q = w->q;

	if (w->prev)
		w->prev->next = w->next;
	else
		q->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		q->tail = w->prev;
	w->q = NULL;
	if (w->task->state == URT__PARKED)
		urt__wake(w->task, res);
}

void urt__waitq_wake_all(struct urt__waitq *q, int res)
{
	while (q->head)
		urt__waitq_wake(q->head, res);
}

static void timer_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt_loop *loop = (struct urt_loop *)((char *)op - offsetof(struct urt_loop, timer_op));

	(void)res;
	(void)flags;
	loop->timer_armed = false;
}

static void ts_of(struct __kernel_timespec *ts, uint64_t ns)
{
	ts->tv_sec = (long long)(ns / 1000000000u);
	ts->tv_nsec = (long long)(ns % 1000000000u);
}

/* Keep one absolute timeout armed no later than the earliest deadline. An
 * armed timeout that is too late is moved with IORING_TIMEOUT_UPDATE; one
 * that is too early fires, finds nothing due and is armed again. */
static int timer_arm(struct urt_loop *loop)
{
	uint64_t at = loop->heap[0].deadline;
	struct io_uring_sqe *sqe;

	if (loop->timer_armed && at >= loop->timer_at)
		return 0;
	sqe = urt__ring_sqe(&loop->ring, loop->timer_armed ? NULL : &loop->timer_op);
	if (!sqe)
		return loop->ring.error;
	if (!loop->timer_armed) {
		ts_of(&loop->timer_ts, at);
		io_uring_prep_timeout(sqe, &loop->timer_ts, 0, IORING_TIMEOUT_ABS);
		loop->timer_armed = true;
	} else {
		ts_of(&loop->update_ts, at);
		io_uring_prep_timeout_update(sqe, &loop->update_ts,
					     (uint64_t)(uintptr_t)&loop->timer_op, IORING_TIMEOUT_ABS);
	}
	loop->timer_at = at;
	return 0;
}

/* ---- the scheduler ---- */

void urt_stall_print(void *ctx, urt_task *task, const char *name, uint64_t ran_ns)
{
	(void)ctx;
	fprintf(stderr, "urt: task \"%s\" ran %.1f ms without yielding (stall threshold %.1f ms)\n",
		name, (double)ran_ns / 1e6, (double)task->loop->stall_ns / 1e6);
}

static void report_stall(struct urt_loop *loop, struct urt_task *t, uint64_t ran_ns)
{
	char anon[32];
	const char *name = t->name;

	if (!name[0]) {
		snprintf(anon, sizeof(anon), "task@%p", (void *)t);
		name = anon;
	}
	if (loop->on_stall)
		loop->on_stall(loop->stall_ctx, t, name, ran_ns);
	else
		urt_stall_print(NULL, t, name, ran_ns);
}

int urt_task_set_name(urt_task *t, const char *name)
{
	if (!t)
		t = urt__cur_task;
	if (!t || !name)
		return -EINVAL;
	snprintf(t->name, sizeof(t->name), "%s", name);
	return 0;
}

/* Run the tasks that are ready now; tasks made ready meanwhile (a yield, a
 * spawn) wait for the next turn, so I/O is submitted between them. */
static void run_ready(struct urt_loop *loop)
{
	uint64_t t0 = 0;

	loop->batch_left = loop->rq_len;
	if (!loop->batch_left)
		return;
	if (loop->stall_ns)
		t0 = urt_now_ns();
	while (loop->batch_left) {
		struct urt_task *t;

		loop->batch_left--;
		t = urt__task_resume(rq_pop(loop));
		/* One clock read per switch: each task's end is the next
		 * one's start. */
		if (loop->stall_ns) {
			uint64_t t1 = urt_now_ns();

			if (t1 - t0 > loop->stall_ns)
				report_stall(loop, t, t1 - t0);
			t0 = t1;
		}
		if (t->state == URT__DONE && t->detached)
			free_task(t);
	}
}

/* Hand the jobs queued during this turn to the pool, in one batch. */
static void jobs_flush(struct urt_loop *loop)
{
	if (!loop->jq_n)
		return;
	urt__pool_push(loop->pool, loop->jq_head, loop->jq_tail, loop->jq_n);
	loop->jq_head = loop->jq_tail = NULL;
	loop->jq_n = 0;
}

/* With jobs in flight, a completion is often microseconds away, and waking
 * from a sleep in the kernel costs more than that on an idle CPU (see the
 * README): spin for it a bounded while. True when something arrived. */
static bool spin_for_jobs(struct urt_loop *loop)
{
	uint64_t until;

	if (!loop->jobs_inflight || !loop->spin_ns)
		return false;
	until = urt_now_ns() + loop->spin_ns;
	do {
		for (int i = 0; i < 64; i++) {
			if (urt__ring_pending(&loop->ring))
				return true;
#if defined(__x86_64__)
			__builtin_ia32_pause();
#endif
		}
	} while (urt_now_ns() < until);
	return false;
}

static int run_loop(struct urt_loop *loop)
{
	for (;;) {
		bool wait;
		int ret;

		run_ready(loop);
		if (!loop->live)
			return 0;
		timers_expire(loop);
		jobs_flush(loop);
		wait = !loop->rq_head && !loop->yq_head && !loop->stop;
		if (wait) {
			if (loop->heap_n) {
				ret = timer_arm(loop);
				if (ret)
					return ret;
			} else if (loop->ring.inflight == (loop->timer_armed ? 1u : 0u)) {
				return -EDEADLK; /* a stale timeout wakes no task */
			}
			if (spin_for_jobs(loop))
				wait = false;
		}
		ret = urt__ring_turn(&loop->ring, wait);
		if (ret < 0)
			return ret;
		timers_expire(loop);
		yq_splice(loop);
		if (loop->stop && !loop->destroying) {
			loop->stop = false;
			return -EINTR;
		}
	}
}

int urt_loop_stats(urt_loop *loop, struct urt_loop_stats *out)
{
	if (!loop || !out)
		return -EINVAL;
	*out = (struct urt_loop_stats){
		.sqes = loop->ring.sqes,
		.messages = loop->ring.expected,
		.cqes = loop->ring.cqes,
		.settled = loop->ring.settled,
		.inflight = loop->ring.inflight,
		.spawned = loop->spawned,
		.live = loop->live,
		.more = loop->ring.more,
	};
	return 0;
}

int urt_loop_stop(urt_loop *loop)
{
	if (!loop)
		return -EINVAL;
	if (!owned(loop))
		return -EPERM;
	loop->stop = true;
	return 0;
}

static int enter(struct urt_loop *loop)
{
	if (urt__cur_task)
		return -EBUSY;
	if (loop->running)
		return -EBUSY;
	if (!owned(loop))
		return -EPERM;
	loop->running = true;
	urt__cur_loop = loop;
#if URT__TSAN
	loop->tsan_sched = __tsan_get_current_fiber();
#endif
	return 0;
}

static void leave(struct urt_loop *loop)
{
	loop->running = false;
	loop->stop = false;
	urt__cur_loop = NULL;
}

int urt_loop_run(urt_loop *loop)
{
	int ret;

	if (!loop)
		return -EINVAL;
	ret = enter(loop);
	if (ret)
		return ret;
	ret = run_loop(loop);
	leave(loop);
	return ret;
}

int urt_loop_create(urt_loop **out, const struct urt_loop_opts *opts)
{
	struct urt_loop_opts o = { 0 };
	struct urt_loop *loop;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (opts)
		o = *opts;
	if (o.flags & ~(URT_LOOP_NO_GUARD | URT_LOOP_NO_SPIN))
		return -EINVAL;
	if (o.stack_size > MAX_STACK)
		return -EINVAL;
	/* The own pool starts at the first offload: its options are checked
	 * now, so that a bad one fails here rather than there. */
	if (o.pool_opts && urt__pool_opts_check(o.pool_opts))
		return -EINVAL;
	if (!o.ring_entries)
		o.ring_entries = DEFAULT_ENTRIES;
	if (o.ring_entries < 2)
		o.ring_entries = 2; /* an operation and its linked timeout */
	if (!o.cq_entries)
		o.cq_entries = 4 * o.ring_entries;
	if (!o.stack_size)
		o.stack_size = DEFAULT_STACK;
	if (o.stack_size < MIN_STACK)
		o.stack_size = MIN_STACK;
	o.stack_size = (o.stack_size + ps - 1) & ~(ps - 1);

	loop = urt__alloc_lines(sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	ret = urt__ring_init(&loop->ring, o.ring_entries, o.cq_entries);
	if (ret)
		goto out_free;
	ret = urt__overflow_report_install();
	if (ret)
		goto out_ring;
	loop->owner = pthread_self();
	loop->stack_size = o.stack_size;
	loop->stacks.limit = o.stack_cache ? o.stack_cache : SIZE_MAX;
	loop->flags = o.flags;
	loop->timer_op.done = timer_done;
	loop->stall_ns = o.stall_ns;
	loop->on_stall = o.on_stall;
	loop->stall_ctx = o.on_stall ? o.stall_ctx : NULL;
	loop->spin_ns = (o.flags & URT_LOOP_NO_SPIN) ? 0 : o.spin_ns ? o.spin_ns : DEFAULT_SPIN_NS;
	if (urt__cpus_allowed() < 2)
		loop->spin_ns = 0; /* the worker could not run while we spin */
	if (o.pool_opts)
		loop->pool_opts = *o.pool_opts;
	if (o.pool) {
		loop->pool = o.pool;
		urt__pool_attach(o.pool);
	}
	*out = loop;
	return 0;

out_ring:
	urt__ring_fini(&loop->ring);
out_free:
	free(loop);
	return ret;
}

/* Destroy's last wait: the armed timeout removed, every SQE's CQE in.
 * 0, or the ring's error. */
static int drain(struct urt_loop *loop)
{
	int ret;

	if (loop->timer_armed) {
		struct io_uring_sqe *sqe = urt__ring_sqe(&loop->ring, NULL);

		if (!sqe)
			return loop->ring.error;
		io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)&loop->timer_op, 0);
	}
	while (loop->ring.inflight) {
		ret = urt__ring_turn(&loop->ring, true);
		if (ret < 0)
			return ret;
	}
	return 0;
}

void urt_loop_destroy(urt_loop *loop)
{
	struct urt_loop *outer_loop = urt__cur_loop;
	struct urt_task *outer_task = urt__cur_task, *t, *next;
	bool drained, keep_loop;

	/* From a task of another loop of this thread, that task's loop waits:
	 * this loop's tasks run on the task's stack until they have ended. A
	 * loop that runs (the caller's own) cannot be destroyed. */
	if (!loop || loop->running || !owned(loop))
		return;
	urt__cur_task = NULL;
	if (enter(loop)) {
		urt__cur_task = outer_task;
		return;
	}
	loop->destroying = true;
	loop->stop = false;
	urt__acceptors_close(loop, false);
	for (t = loop->all; t; t = t->all_next)
		if (t->state != URT__DONE)
			urt_cancel(t);
	/* Jobs no worker has started are dropped: their waiters see
	 * -ECANCELED. Running ones are waited for below. */
	urt__jobs_drop(loop);
	/* Cancelled tasks run to their end: their waits return -ECANCELED
	 * at once, or when the cancelled operation's CQE arrives. */
	drained = run_loop(loop) == 0 && drain(loop) == 0;
	leave(loop);
	urt__acceptors_close(loop, true);
	urt__groups_free(loop);
	if (loop->pool) {
		urt__pool_detach(loop->pool);
		/* Joins the workers: none touches this loop afterwards. */
		if (loop->own_pool)
			urt_pool_destroy(loop->pool);
	}
	/*
	 * Not drained (the ring failed): the kernel may still write into what
	 * its operations target (buffers on the tasks' stacks) until it has
	 * cancelled them, after the ring is gone; and a worker of a shared
	 * pool may still finish a job of this loop, writing the job's record,
	 * pushing it onto loop->done and messaging the ring. What they may
	 * write is left allocated, deliberately: the stacks and records, and
	 * with a shared pool's jobs in flight the loop and its ring too.
	 */
	keep_loop = !drained && loop->jobs_inflight && !loop->own_pool;
	if (!keep_loop)
		urt__ring_fini(&loop->ring); /* before a stack is unmapped */
	if (drained) {
		for (t = loop->all; t; t = next) {
			next = t->all_next;
			free_task(t);
		}
		urt__stack_cache_fini(loop);
	}
	urt__overflow_report_remove();
	free(loop->heap);
	if (!keep_loop)
		free(loop);
	urt__cur_loop = outer_loop;
	urt__cur_task = outer_task;
}

urt_pool *urt_loop_pool(urt_loop *loop)
{
	if (!loop)
		return NULL;
	if (!loop->pool && !loop->pool_err) {
		int ret = urt__pool_start(&loop->pool, &loop->pool_opts);

		if (ret) {
			loop->pool_err = ret;
			return NULL;
		}
		loop->own_pool = true;
		urt__pool_attach(loop->pool);
	}
	return loop->pool;
}

int urt_run(urt_task_fn fn, void *arg, int *result)
{
	urt_loop *loop;
	urt_task *t;
	int ret;

	if (!fn)
		return -EINVAL;
	if (urt__cur_task)
		return -EBUSY; /* before anything is made: a task cannot run a loop */
	ret = urt_loop_create(&loop, NULL);
	if (ret)
		return ret;
	ret = urt_spawn(loop, &t, fn, arg);
	if (!ret) {
		ret = urt_loop_run(loop);
		if (!ret)
			ret = urt_join(t, result);
	}
	urt_loop_destroy(loop);
	return ret;
}

/* ---- the task API ---- */

int urt_spawn(urt_loop *loop, urt_task **out, urt_task_fn fn, void *arg)
{
	struct urt_task *t;
	int ret;

	if (!fn)
		return -EINVAL;
	if (!loop)
		loop = urt__cur_loop;
	if (!loop)
		return -EINVAL;
	if (!owned(loop))
		return -EPERM;
	if (loop->destroying)
		return -ESHUTDOWN;
	ret = urt__task_new(loop, &t);
	if (ret)
		return ret;
	t->fn = fn;
	t->arg = arg;
	t->detached = !out;
	urt__task_start(t);
	link_task(loop, t);
	loop->live++;
	loop->spawned++;
	urt__ready(t);
	if (out)
		*out = t;
	return 0;
}

/* A cancel or the deadline ends a join: the task joined stays unjoined. */
static void join_interrupt(struct urt_task *self, int res)
{
	((struct urt_task *)self->wait_obj)->joiner = NULL;
	urt__wake(self, res);
}

static void join_collect(struct urt_task *t, int *result)
{
	if (result)
		*result = t->result;
	free_task(t);
}

int urt_join(urt_task *t, int *result)
{
	struct urt_task *self = urt__cur_task;
	int ret;

	if (!t || t->detached || t->joiner || t->state == URT__FREED)
		return -EINVAL;
	if (!owned(t->loop))
		return -EPERM;
	if (t->state == URT__DONE) {
		join_collect(t, result);
		return 0;
	}
	if (!self)
		return -EPERM;
	if (t == self)
		return -EDEADLK;
	if (t->loop != self->loop)
		return -EXDEV;
	ret = urt__wait_check(self);
	if (ret)
		return ret;
	t->joiner = self;
	ret = urt__park_hook(self, t, join_interrupt, self->deadline);
	if (ret) {
		/* Never parked (-ENOMEM arming the deadline, the one error
		 * the wait itself returns): let go of t. Interrupted (a cancel,
		 * the deadline): join_interrupt let go already, and since then
		 * another task may have claimed t, or collected and freed it:
		 * t is not ours to touch. */
		if (ret == -ENOMEM)
			t->joiner = NULL;
		return ret;
	}
	join_collect(t, result);
	return 0;
}

int urt_detach(urt_task *t)
{
	if (!t || t->detached || t->joiner || t->state == URT__FREED)
		return -EINVAL;
	if (!owned(t->loop))
		return -EPERM;
	if (t->state == URT__DONE)
		free_task(t);
	else
		t->detached = true;
	return 0;
}

int urt_cancel(urt_task *t)
{
	if (!t || t->state == URT__FREED)
		return -EINVAL;
	if (!owned(t->loop))
		return -EPERM;
	if (t->state == URT__DONE)
		return -ESRCH;
	if (t->cancelled)
		return 0;
	t->cancelled = true;
	if (t->state != URT__PARKED)
		return 0;
	/* urt_to_thread's fn is running or queued on the task's stack: the
	 * task stays parked until the job completes. */
	if (!wait_interrupt(t, -ECANCELED) && t->wait == URT__WAIT_IO)
		urt__iop_cancel(t);
	return 0;
}

/* ---- timeout scopes ---- */

int urt_timeout_enter(struct urt_timeout *scope, uint64_t ns)
{
	struct urt_task *t = urt__cur_task;

	if (!t)
		return -EPERM;
	if (!scope)
		return -EINVAL;
	scope->at = urt__deadline_after(ns);
	scope->outer_at = t->deadline;
	scope->outer = t->scope;
	t->scope = scope;
	if (scope->at < t->deadline)
		t->deadline = scope->at;
	return 0;
}

int urt_timeout_leave(struct urt_timeout *scope)
{
	struct urt_task *t = urt__cur_task;

	if (!t)
		return -EPERM;
	if (!scope || t->scope != scope)
		return -EINVAL;
	t->scope = scope->outer;
	t->deadline = scope->outer_at;
	/* Only the scope whose deadline bound the block's waits reports it:
	 * an outer one that came first reports it when it is left. */
	if (scope->at <= scope->outer_at && urt_now_ns() >= scope->at)
		return -ETIMEDOUT;
	return 0;
}

/*
 * A yield may go straight to the next ready task, as the scheduler would
 * next: within the current pass, or into the next one when the turn between
 * would do nothing (no SQE to submit, no completion or kernel work waiting,
 * no sleeper, no job to hand over, no stop asked). Saves two switches and
 * a turn per yield. Not with the stall detector, which times each task from
 * the scheduler, nor under ASan.
 */
#if !URT__ASAN
static bool direct_switch_ok(struct urt_loop *loop)
{
	if (loop->stall_ns)
		return false;
	if (loop->batch_left)
		return true;
	return !loop->heap_n && !loop->jq_n && !loop->stop &&
	       !io_uring_sq_ready(&loop->ring.ring) && !urt__ring_pending(&loop->ring);
}
#endif

int urt_yield(void)
{
	struct urt_task *self = urt__cur_task;
	int ret;

	if (!self)
		return -EPERM;
	ret = urt__wait_check(self);
	if (ret)
		return ret;
	enqueue(&self->loop->yq_head, &self->loop->yq_tail, self);
	self->loop->yq_len++;
#if !URT__ASAN
	if (direct_switch_ok(self->loop)) {
		struct urt_loop *loop = self->loop;
		struct urt_task *next;

		/* The pass is over and a turn would find nothing to do:
		 * start the next pass here. */
		if (!loop->batch_left) {
			yq_splice(loop);
			loop->batch_left = loop->rq_len;
		}
		loop->batch_left--;
		next = rq_pop(loop);
		if (next != self)
			urt__task_switch(self, next);
		else
			self->state = URT__RUNNING; /* the only ready task */
		return self->cancelled ? -ECANCELED : 0;
	}
#endif
	urt__task_suspend(self);
	return self->cancelled ? -ECANCELED : 0;
}
