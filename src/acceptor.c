/* acceptor: a listening socket served by one multishot accept, whose
 * connections queue until a task takes one; one plain accept per taker on
 * kernels without multishot accept. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "op.h"

/* ---- acceptors: one multishot accept, connections queued ---- */

#define ACCEPT_QUEUE 64u

struct urt_acceptor {
	struct urt__op op;
	struct urt_loop *loop;
	struct urt__closable closable; /* closed with the loop */
	int fd, flags;
	int *queue;                /* accepted, not taken yet (a ring) */
	unsigned head, len, cap;
	int err;                   /* an accept error for the next taker */
	struct urt__waitq takers;
	/* One-by-one mode: the takers parked in their own accept, which a
	 * close cancels; the acceptor is freed when the last has returned. */
	LIST_HEAD(, oneshot) oneshots;
	unsigned users;            /* takers inside urt_acceptor_next: a closed
				    * acceptor is freed when the last leaves */
	uint64_t pause_ns;         /* out of fds: the takers' next pause */
	bool exhausted;            /* out of fds, reported: pause, not again */
	bool armed;                /* the multishot accept is in flight */
	bool pausing;              /* a cancel is on its way: the queue is full */
	bool multishot;            /* false: the kernel has no multishot accept */
	bool closed;               /* urt_acceptor_close: free once disarmed */
};

/* A taker's plain accept in one-by-one mode, on the taker's stack. */
struct oneshot {
	LIST_ENTRY(oneshot) link;
	struct urt_task *task;
};

static void acceptor_free(struct urt_acceptor *a)
{
	urt__closable_del(a->loop, &a->closable);
	free(a->queue);
	free(a);
}

/* Arm the multishot accept. Without an SQE (the ring is unusable) the
 * next taker hears why. */
static void acceptor_arm(struct urt_acceptor *a)
{
	struct io_uring_sqe *sqe = urt__ring_sqe(&a->loop->ring, &a->op);

	if (!sqe) {
		if (!a->err)
			a->err = a->loop->ring.error;
		return;
	}
	io_uring_prep_multishot_accept(sqe, a->fd, NULL, NULL, a->flags);
	a->armed = true;
}

/* Ask the kernel to end the multishot accept; its last CQE (without
 * IORING_CQE_F_MORE) tells when it has. */
static void acceptor_disarm(struct urt_acceptor *a)
{
	struct io_uring_sqe *sqe = urt__ring_sqe(&a->loop->ring, NULL);

	if (!sqe)
		return; /* stays armed: the ring is unusable anyway */
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&a->op, 0);
	a->pausing = true;
}

/* Queue an accepted socket. Past ACCEPT_QUEUE the acceptor pauses, but
 * the kernel may post a few more before the cancel reaches it: the queue
 * grows for those. 0 or -ENOMEM. */
static int acceptor_queue(struct urt_acceptor *a, int fd)
{
	if (a->len == a->cap) {
		unsigned cap = a->cap ? 2 * a->cap : ACCEPT_QUEUE;
		int *q = malloc(cap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		for (unsigned i = 0; i < a->len; i++)
			q[i] = a->queue[(a->head + i) % a->cap];
		free(a->queue);
		a->queue = q;
		a->head = 0;
		a->cap = cap;
	}
	a->queue[(a->head + a->len) % a->cap] = fd;
	a->len++;
	return 0;
}

/* The oldest queued socket. */
static int acceptor_take(struct urt_acceptor *a)
{
	int fd = a->queue[a->head];

	a->head = (a->head + 1) % a->cap;
	a->len--;
	return fd;
}

static void acceptor_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt_acceptor *a = (struct urt_acceptor *)op;
	struct urt__waiter *taker = urt__waitq_first(&a->takers);

	if (!(flags & IORING_CQE_F_MORE)) {
		a->armed = false;
		a->pausing = false;
	}
	if (a->closed) {
		if (res >= 0)
			close(res);
		if (!a->armed && !a->users)
			acceptor_free(a);
		return;
	}
	if (res >= 0) {
		a->exhausted = false; /* the episode is over */
		if (taker) {
			urt__waitq_wake(taker, res);
		} else if (acceptor_queue(a, res)) {
			/* Out of memory: the connection is reset, the next
			 * taker hears why. */
			close(res);
			if (!a->err)
				a->err = -ENOMEM;
		} else if (a->len >= ACCEPT_QUEUE && a->armed && !a->pausing) {
			acceptor_disarm(a);
		}
		/* The kernel ended the multishot (its CQ overflowed, ...):
		 * arm it again while there is room. */
		if (!a->armed && a->len < ACCEPT_QUEUE)
			acceptor_arm(a);
		return;
	}
	if (res == -ECANCELED && !a->armed) {
		/* Paused: urt_acceptor_next arms it again, or now, for a
		 * taker that came while the cancel was on its way. */
		if (taker)
			acceptor_arm(a);
		return;
	}
	if (res == -EINVAL && a->multishot && !a->armed) {
		/* No multishot accept in this kernel: takers accept one by
		 * one. Wake the waiting ones to do so. */
		a->multishot = false;
		urt__waitq_wake_all(&a->takers, -EAGAIN);
		return;
	}
	/* An accept error (-EMFILE, ...): the next taker gets it; the
	 * acceptor arms again at the next urt_acceptor_next. */
	if (taker)
		urt__waitq_wake(taker, res);
	else if (!a->err)
		a->err = res;
}

static void acceptor_close_with_loop(struct urt__closable *c, enum urt__close_stage stage);

int urt_acceptor_create(urt_loop *loop, urt_acceptor **out, int fd, int flags)
{
	struct urt_acceptor *a;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!loop)
		loop = urt__cur_loop;
	if (!loop || fd < 0 || (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC | URT_ACCEPTOR_ONESHOT)))
		return -EINVAL;
	if (!pthread_equal(loop->owner, pthread_self()))
		return -EPERM;
	if (loop->closing)
		return -ESHUTDOWN;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->op.done = acceptor_done;
	urt__waitq_init(&a->takers);
	a->loop = loop;
	a->fd = fd;
	a->flags = flags & ~URT_ACCEPTOR_ONESHOT;
	a->multishot = !(flags & URT_ACCEPTOR_ONESHOT);
	a->closable.close = acceptor_close_with_loop;
	urt__closable_add(loop, &a->closable);
	if (a->multishot)
		acceptor_arm(a);
	*out = a;
	return 0;
}

/* One-by-one mode: a plain accept of the taker's own, which
 * urt_acceptor_close cancels. A connection accepted as the acceptor closes
 * is closed: the taker gets -EBADF (or -ECANCELED, cancelled itself). */
static int acceptor_accept_one(struct urt_acceptor *a, struct urt_task *t)
{
	struct oneshot os = { .task = t };
	int fd;

	LIST_INSERT_HEAD(&a->oneshots, &os, link);
	fd = urt_accept(a->fd, NULL, NULL, a->flags);
	LIST_REMOVE(&os, link);
	if (a->closed) {
		/* The close's own cancel, or a connection that came first:
		 * -EBADF. Another end (a deadline, an error) stays. */
		if (fd >= 0 || (fd == -ECANCELED && !t->cancelled)) {
			if (fd >= 0)
				close(fd);
			fd = -EBADF;
		}
	} else if (fd >= 0) {
		a->exhausted = false;
	}
	return fd;
}

/* The process or the system is out of file descriptors. */
static bool fds_exhausted(int err)
{
	return err == -EMFILE || err == -ENFILE;
}

#define PAUSE_FIRST_NS (10 * 1000 * 1000ull)
#define PAUSE_MAX_NS (1000 * 1000 * 1000ull)

/* Out of fds, already reported: wait on the takers' queue for the pause,
 * then try again. 0 when the pause is over; a connection (another taker
 * armed the accept meanwhile); or -errno (closed, cancelled, the task's
 * deadline). Pauses double from 10 ms to 1 s within an episode. */
static int acceptor_pause(struct urt_acceptor *a, struct urt_task *t)
{
	uint64_t until = urt__deadline_after(a->pause_ns);
	struct urt__waiter w;
	int ret;

	if (a->pause_ns < PAUSE_MAX_NS)
		a->pause_ns *= 2;
	/* Another taker's accept failing again wakes the queue's head: the
	 * pause goes on. */
	do
		ret = urt__waitq_park_until(&a->takers, &w, t,
					    until < t->deadline ? until : t->deadline);
	while (fds_exhausted(ret) && !a->closed);
	if (ret == -ETIMEDOUT && urt_now_ns() < t->deadline)
		return 0;
	return ret;
}

static int acceptor_next(struct urt_acceptor *a, struct urt_task *t)
{
	struct urt__waiter w;
	int ret;

	for (;;) {
		if (a->closed)
			return -EBADF;
		if (a->len) {
			ret = acceptor_take(a);
		} else if (a->err) {
			ret = a->err;
			a->err = 0;
		} else if (!a->multishot) {
			ret = acceptor_accept_one(a, t);
		} else {
			if (!a->armed) {
				acceptor_arm(a);
				if (!a->armed)
					continue; /* no SQE: a->err says why */
			}
			ret = urt__waitq_park(&a->takers, &w, t);
			if (ret == -EAGAIN)
				continue; /* the kernel has no multishot: go on */
		}
		/*
		 * Out of fds: the first taker hears it; then, until a
		 * connection is accepted again, takers pause and retry
		 * rather than spin on the kernel's error, and the clients
		 * wait in the listen backlog.
		 */
		if (fds_exhausted(ret) && !a->closed) {
			if (a->exhausted) {
				/* A connection that ends the pause has ended
				 * the episode too (acceptor_done). */
				ret = acceptor_pause(a, t);
				if (ret == 0)
					continue;
				return ret;
			}
			a->exhausted = true;
			a->pause_ns = PAUSE_FIRST_NS;
			return ret;
		}
		/* Accept again if the multishot was paused or ended on an
		 * error. */
		if (!a->closed && !a->armed && a->multishot && !a->err)
			acceptor_arm(a);
		return ret;
	}
}

int urt_acceptor_next(urt_acceptor *a)
{
	struct urt_task *t = urt__cur_task;
	int ret;

	if (!a || a->closed)
		return -EINVAL;
	if (!t)
		return -EPERM;
	if (t->loop != a->loop)
		return -EXDEV;
	ret = urt__wait_check(t);
	if (ret)
		return ret;
	a->users++;
	ret = acceptor_next(a, t);
	if (!--a->users && a->closed && !a->armed)
		acceptor_free(a);
	return ret;
}

int urt_acceptor_close(urt_acceptor *a)
{
	struct oneshot *os;

	if (!a || a->closed)
		return -EINVAL;
	if (!pthread_equal(a->loop->owner, pthread_self()))
		return -EPERM;
	a->closed = true;
	while (a->len)
		close(acceptor_take(a));
	urt__waitq_wake_all(&a->takers, -EBADF);
	LIST_FOREACH(os, &a->oneshots, link)
		urt__io_cancel(os->task);
	if (!a->armed && !a->users)
		acceptor_free(a);
	else if (!a->pausing)
		acceptor_disarm(a);
	return 0;
}

/* The loop's destroy: an acceptor left open is closed with the loop, and
 * freed once no CQE can come for it. */
static void acceptor_close_with_loop(struct urt__closable *c, enum urt__close_stage stage)
{
	struct urt_acceptor *a = (struct urt_acceptor *)((char *)c -
							  offsetof(struct urt_acceptor, closable));

	if (stage == URT__CLOSE_BEGIN && !a->closed)
		urt_acceptor_close(a);
	else if (stage == URT__CLOSE_FREE)
		acceptor_free(a);
}

