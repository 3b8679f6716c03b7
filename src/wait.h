/* Waits (wait.c): parking with a deadline and an interrupt, wait queues,
 * deadlines that come due; and the API's task lifetime (spawn.c) and
 * channels and groups (sync.c) built on them. */
#ifndef URT_WAIT_H
#define URT_WAIT_H

#include "sched.h"

/* Park t (the running task) in the wait (interrupt, obj), with a timer at
 * deadline on the heap (UINT64_MAX: none; usually t->deadline). Returns
 * the wake result: the waker's, or -ECANCELED / -ETIMEDOUT from interrupt;
 * -ENOMEM, not parked, when the timer finds no room. The caller checks
 * cancellation and the deadline first (urt__wait_check). */
int urt__park_interruptible(struct urt_task *t, void *obj, void (*interrupt)(struct urt_task *, int),
		    uint64_t deadline);
/* End t's wait through its interrupt, for a cancel (res -ECANCELED) or
 * the task's deadline (-ETIMEDOUT); its timer goes. False for a wait only
 * its completion ends (urt_to_thread). */
bool urt__wait_interrupt(struct urt_task *t, int res);
/* Cancel every task of loop that has not returned (destroy, a set's
 * cancel). */
void urt__cancel_all(struct urt_loop *loop);
/* End the waits whose deadline has passed (the clock read now). */
void urt__deadlines_expire(struct urt_loop *loop);


/* A task parked on a wait queue (a channel's senders or receivers, an
 * acceptor's takers). Lives on the parked task's stack. */
struct urt__waiter {
	TAILQ_ENTRY(urt__waiter) link;
	struct urt__waitq *q;     /* NULL once woken */
	struct urt_task *task;
	void *data;          /* what the waiter carries (an element to send, a
			      * place to receive into) */
};

struct urt__waitq {
	TAILQ_HEAD(, urt__waiter) waiters;
};

/* An empty queue (a zeroed one is not: call this first). */
static inline void urt__waitq_init(struct urt__waitq *q)
{
	TAILQ_INIT(&q->waiters);
}

/* The longest waiting, or NULL. */
static inline struct urt__waiter *urt__waitq_first(struct urt__waitq *q)
{
	return TAILQ_FIRST(&q->waiters);
}

/* Park the running task t at the back of q until urt__waitq_wake (its
 * result), a cancel (-ECANCELED) or t's deadline (-ETIMEDOUT). Checks
 * both before parking. */
int urt__waitq_park(struct urt__waitq *q, struct urt__waiter *w, struct urt_task *t);
/* The same with a timer at at (no later than t's deadline) instead of t's
 * deadline: -ETIMEDOUT when it fires. */
int urt__waitq_park_until(struct urt__waitq *q, struct urt__waiter *w, struct urt_task *t,
			  uint64_t at);
/* Take w off its queue and make its task ready, its wait returning res. */
void urt__waitq_wake(struct urt__waiter *w, int res);
/* Wake every waiter of q with res. */
void urt__waitq_wake_all(struct urt__waitq *q, int res);

#endif
