/* wait: waits a cancel or a deadline can end (interruptible waits, wait
 * queues, sleeps), the cancel itself, the deadlines that come due, and the
 * timeout scopes that give a task its deadline. */
#include <assert.h>
#include <errno.h>

#include "wait.h"

bool urt__wait_interrupt(struct urt_task *t, int res)
{
	if (!t->wait.interrupt)
		return false;
	/* The interrupt may leave t parked (a group, I/O): no timer stays. */
	urt__timer_del(&t->loop->timers, t);
	t->wait.interrupt(t, res);
	return true;
}


/* Wake every task whose timer has passed: sleepers with 0, other waits
 * with -ETIMEDOUT. The clock is read after the kernel's timeout fired, so
 * no sleep ends before its deadline. */
void urt__deadlines_expire(struct urt_loop *loop)
{
	struct urt_task *t;
	uint64_t now;

	if (!loop->timers.n)
		return;
	now = urt_now_ns();
	while ((t = urt__timer_due(&loop->timers, now))) {
		bool ok = urt__wait_interrupt(t, -ETIMEDOUT);

		assert(ok);
		(void)ok;
	}
}

int urt__park_interruptible(struct urt_task *t, void *obj, void (*interrupt)(struct urt_task *, int),
		    uint64_t deadline)
{
	int ret;

	if (deadline != UINT64_MAX) {
		ret = urt__timer_add(&t->loop->timers, t, deadline);
		if (ret)
			return ret;
	}
	return urt__park(t, interrupt, obj);
}

/* ---- sleeps ---- */

/* A sleep ends at its timer (0) or at a cancel. */
static void sleep_interrupt(struct urt_task *t, int res)
{
	urt__wake(t, res == -ETIMEDOUT ? 0 : res);
}

int urt_sleep_ns(uint64_t ns)
{
	struct urt_task *t = urt__cur_task;
	uint64_t until, at;
	int ret;

	if (!t)
		return -EPERM;
	ret = urt__wait_check(t);
	if (ret)
		return ret;
	until = urt__deadline_after(ns);
	at = until < t->deadline ? until : t->deadline;
	ret = urt__timer_add(&t->loop->timers, t, at);
	if (ret)
		return ret;
	ret = urt__park(t, sleep_interrupt, NULL);
	if (ret == 0 && at < until)
		return -ETIMEDOUT; /* the task's deadline came first */
	return ret;
}

/* ---- wait queues ---- */

static void waitq_interrupt(struct urt_task *t, int res)
{
	urt__waitq_wake(t->wait.obj, res);
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
	TAILQ_INSERT_TAIL(&q->waiters, w, link);
	ret = urt__park_interruptible(t, w, waitq_interrupt, at);
	if (w->q) /* not parked after all (-ENOMEM arming the deadline) */
		urt__waitq_wake(w, ret);
	return ret;
}

void urt__waitq_wake(struct urt__waiter *w, int res)
{
	TAILQ_REMOVE(&w->q->waiters, w, link);
	w->q = NULL;
	if (w->task->state == URT__PARKED)
		urt__wake(w->task, res);
}

void urt__waitq_wake_all(struct urt__waitq *q, int res)
{
	struct urt__waiter *w;

	while ((w = urt__waitq_first(q)))
		urt__waitq_wake(w, res);
}


int urt_cancel(urt_task *t)
{
	if (!t || t->state == URT__FREED)
		return -EINVAL;
	if (!urt__owned(t->loop))
		return -EPERM;
	if (t->state == URT__DONE)
		return -ESRCH;
	if (t->cancelled)
		return 0;
	t->cancelled = true;
	if (t->state != URT__PARKED)
		return 0;
	/* A wait ends through its own interrupt; urt_to_thread's has none
	 * (its fn runs or is queued on the task's stack): the task stays
	 * parked until the job completes. */
	(void)urt__wait_interrupt(t, -ECANCELED);
	return 0;
}

void urt__cancel_all(struct urt_loop *loop)
{
	struct urt_task *t;

	LIST_FOREACH(t, &loop->all, all_link)
		if (t->state != URT__DONE)
			(void)urt_cancel(t);
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

