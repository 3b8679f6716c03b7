/* spawn: a task's life as the API sees it: spawn, join, detach. */
#include <errno.h>

#include "wait.h"

/* ---- the task API ---- */

int (urt_spawn)(urt_loop *loop, urt_task **out, urt_task_fn fn, void *arg)
{
	struct urt_task *t;
	int ret;

	if (!fn)
		return -EINVAL;
	if (!loop)
		loop = urt__cur_loop;
	if (!loop)
		return -EINVAL;
	if (!urt__owned(loop))
		return -EPERM;
	if (loop->closing)
		return -ESHUTDOWN;
	ret = urt__task_new(loop, &t);
	if (ret)
		return ret;
	t->fn = fn;
	t->arg = arg;
	t->detached = !out;
	urt__task_start(t);
	urt__task_link(loop, t);
	urt__ready(t);
	if (out)
		*out = t;
	return 0;
}

/* A cancel or the deadline ends a join: the task joined stays unjoined. */
static void join_interrupt(struct urt_task *self, int res)
{
	((struct urt_task *)self->wait.obj)->joiner = NULL;
	urt__wake(self, res);
}

static void join_collect(struct urt_task *t, int *result)
{
	if (result)
		*result = t->result;
	urt__task_release(t);
}

int urt_join(urt_task *t, int *result)
{
	struct urt_task *self = urt__cur_task;
	int ret;

	if (!t || t->detached || t->joiner || t->state == URT__FREED)
		return -EINVAL;
	if (!urt__owned(t->loop))
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
	ret = urt__park_interruptible(self, t, join_interrupt, self->deadline);
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
	if (!urt__owned(t->loop))
		return -EPERM;
	if (t->state == URT__DONE)
		urt__task_release(t);
	else
		t->detached = true;
	return 0;
}

