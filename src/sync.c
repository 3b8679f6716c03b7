/* sync: how the tasks of one loop coordinate without the kernel: channels
 * (a bounded FIFO with parking senders and receivers) and task groups
 * (spawn, wait for all, the first failure cancels the rest). Both park
 * and wake tasks through the wait queues and interruptible waits of
 * wait.c, and need no lock, since a loop's tasks all run on its thread. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wait.h"

/* ---- channels ---- */

struct urt_chan {
	unsigned char *buf;        /* cap elements of size bytes, a ring */
	size_t size, cap;
	size_t head, len;          /* the oldest element; how many there are */
	struct urt__waitq senders;   /* waiter->data: the element to send */
	struct urt__waitq receivers; /* waiter->data: where to put one */
	pthread_t owner;           /* the thread that made it: no lock, so
				    * every call comes from there */
	bool closed;
};

static bool chan_owned(const struct urt_chan *c)
{
	return pthread_equal(c->owner, pthread_self());
}

int urt_chan_create(urt_chan **out, size_t elem_size, size_t capacity)
{
	struct urt_chan *c;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!elem_size || !capacity || capacity > SIZE_MAX / elem_size)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->buf = malloc(capacity * elem_size);
	if (!c->buf) {
		free(c);
		return -ENOMEM;
	}
	urt__waitq_init(&c->senders);
	urt__waitq_init(&c->receivers);
	c->size = elem_size;
	c->cap = capacity;
	c->owner = pthread_self();
	*out = c;
	return 0;
}

static void *slot(struct urt_chan *c, size_t i)
{
	return c->buf + ((c->head + i) % c->cap) * c->size;
}

/* What send and receive check first: the arguments, then, for a call that
 * may wait in a task, cancellation and the deadline. */
static int chan_check(const struct urt_chan *c, const void *elem, size_t size, int wait)
{
	struct urt_task *t = urt__cur_task;

	if (!c || !elem || size != c->size)
		return -EINVAL;
	if (!chan_owned(c))
		return -EPERM;
	return t && wait ? urt__wait_check(t) : 0;
}

int urt__chan_send(urt_chan *c, const void *elem, size_t size, int wait)
{
	struct urt_task *t = urt__cur_task;
	struct urt__waiter w;
	int ret = chan_check(c, elem, size, wait);

	if (ret)
		return ret;
	if (c->closed)
		return -EPIPE;
	/* A receiver waits only while the channel is empty: hand it over. */
	if (urt__waitq_first(&c->receivers)) {
		struct urt__waiter *r = urt__waitq_first(&c->receivers);

		memcpy(r->data, elem, c->size);
		urt__waitq_wake(r, 1);
		return 0;
	}
	if (c->len < c->cap) {
		memcpy(slot(c, c->len), elem, c->size);
		c->len++;
		return 0;
	}
	if (!wait)
		return -EAGAIN;
	if (!t)
		return -EPERM;
	/* The receiver that makes room copies the element from here. */
	w.data = (void *)(uintptr_t)elem;
	return urt__waitq_park(&c->senders, &w, t);
}

int urt__chan_recv(urt_chan *c, void *elem, size_t size, int wait)
{
	struct urt_task *t = urt__cur_task;
	struct urt__waiter w;
	int ret = chan_check(c, elem, size, wait);

	if (ret)
		return ret;
	if (c->len) {
		memcpy(elem, slot(c, 0), c->size);
		c->head = (c->head + 1) % c->cap;
		c->len--;
		/* Room: the first waiting sender's element goes in at the
		 * back, and that sender is done. */
		if (urt__waitq_first(&c->senders)) {
			struct urt__waiter *s = urt__waitq_first(&c->senders);

			memcpy(slot(c, c->len), s->data, c->size);
			c->len++;
			urt__waitq_wake(s, 0);
		}
		return 1;
	}
	if (c->closed)
		return 0;
	if (!wait)
		return -EAGAIN;
	if (!t)
		return -EPERM;
	w.data = elem;
	return urt__waitq_park(&c->receivers, &w, t);
}

int urt_chan_close(urt_chan *c)
{
	if (!c)
		return -EINVAL;
	if (!chan_owned(c))
		return -EPERM;
	if (c->closed)
		return -EALREADY;
	c->closed = true;
	urt__waitq_wake_all(&c->senders, -EPIPE);
	urt__waitq_wake_all(&c->receivers, 0);
	return 0;
}

size_t urt_chan_len(const urt_chan *c)
{
	return c && chan_owned(c) ? c->len : 0;
}

int urt_chan_destroy(urt_chan *c)
{
	if (!c)
		return -EINVAL;
	if (!chan_owned(c))
		return -EPERM;
	if (urt__waitq_first(&c->senders) || urt__waitq_first(&c->receivers))
		return -EBUSY;
	free(c->buf);
	free(c);
	return 0;
}

/* ---- task groups ---- */

struct urt_group {
	struct urt_loop *loop;
	struct urt__closable closable; /* freed with the loop if never waited */
	LIST_HEAD(, urt_task) members; /* running members */
	size_t running;
	struct urt_task *waiter;
	int result;                    /* the first failure, or the waiter's
					* -ECANCELED / -ETIMEDOUT */
	bool cancelling;
};

/* A group nobody waited for goes with its loop. */
static void group_close_with_loop(struct urt__closable *c, enum urt__close_stage stage)
{
	struct urt_group *g = (struct urt_group *)((char *)c - offsetof(struct urt_group, closable));

	if (stage == URT__CLOSE_FREE) {
		urt__closable_del(g->loop, c);
		free(g);
	}
}

int urt_group_create(urt_group **out)
{
	struct urt_task *t = urt__cur_task;
	struct urt_group *g;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!t)
		return -EPERM;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->loop = t->loop;
	g->closable.close = group_close_with_loop;
	urt__closable_add(g->loop, &g->closable);
	*out = g;
	return 0;
}

/* The group stops: result is what urt_group_wait will return; every
 * running member is cancelled. */
static void group_cancel(struct urt_group *g, int result)
{
	struct urt_task *m;

	if (g->cancelling)
		return;
	g->cancelling = true;
	g->result = result;
	LIST_FOREACH(m, &g->members, group_link)
		(void)urt_cancel(m);
}

static void group_member_done(struct urt_task *m);

int (urt_group_spawn)(urt_group *g, urt_task_fn fn, void *arg)
{
	struct urt_task *m;
	int ret;

	if (!g || !fn)
		return -EINVAL;
	if (g->cancelling)
		return -ECANCELED;
	ret = urt_spawn(g->loop, &m, fn, arg);
	if (ret)
		return ret;
	(void)urt_detach(m);
	m->group = g;
	m->on_end = group_member_done;
	LIST_INSERT_HEAD(&g->members, m, group_link);
	g->running++;
	return 0;
}

/* A member has returned. */
static void group_member_done(struct urt_task *m)
{
	struct urt_group *g = m->group;

	LIST_REMOVE(m, group_link);
	m->group = NULL;
	g->running--;
	if (m->result != 0)
		group_cancel(g, m->result);
	/* The waiter may be ready already, woken by an earlier last member
	 * when a new one joined since. */
	if (!g->running && g->waiter && g->waiter->state == URT__PARKED)
		urt__wake(g->waiter, 0);
}

/* The waiting task was cancelled or its deadline passed: cancel the
 * members and keep waiting for them (the wait is not ended here). */
static void group_interrupt(struct urt_task *t, int res)
{
	group_cancel(t->wait.obj, res);
}

int urt_group_wait(urt_group *g)
{
	struct urt_task *t = urt__cur_task;
	int ret;

	if (!g || g->waiter)
		return -EINVAL;
	if (!t || t->loop != g->loop)
		return -EPERM;
	ret = urt__wait_check(t);
	if (ret)
		group_cancel(g, ret);
	g->waiter = t;
	while (g->running) {
		/* Once cancelling, the deadline no longer applies: the wait
		 * goes on until the members have returned. */
		ret = urt__park_interruptible(t, g, group_interrupt,
				     g->cancelling ? UINT64_MAX : t->deadline);
		if (ret == -ENOMEM) /* no room for the deadline's timer */
			group_cancel(g, ret);
	}
	ret = g->result;
	urt__closable_del(g->loop, &g->closable);
	free(g);
	return ret;
}
