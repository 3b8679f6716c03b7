/* timer: the heap of absolute deadlines, one per waiting task, and its one
 * armed kernel timeout (IORING_OP_TIMEOUT with IORING_TIMEOUT_ABS, moved
 * earlier with IORING_TIMEOUT_UPDATE). What a deadline ends is the wait
 * layer's business (wait.c). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "urt_internal.h"

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


struct urt_task *urt__timer_due(struct urt_loop *loop, uint64_t now)
{
	struct urt_task *t;

	if (!loop->heap_n || loop->heap[0].deadline > now)
		return NULL;
	t = loop->heap[0].task;
	urt__timer_del(loop, t);
	return t;
}


/* The armed timeout fired or was removed: none is armed now. */
static void timer_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt_loop *loop = (struct urt_loop *)((char *)op - offsetof(struct urt_loop, timer_op));

	(void)res;
	(void)flags;
	loop->timer_armed = false;
}

/* Keep one absolute timeout armed no later than the earliest deadline. An
 * armed timeout that is too late is moved with IORING_TIMEOUT_UPDATE; one
 * that is too early fires, finds nothing due and is armed again. */
int urt__timer_arm(struct urt_loop *loop)
{
	uint64_t at = loop->heap[0].deadline;
	struct io_uring_sqe *sqe;

	if (loop->timer_armed && at >= loop->timer_at)
		return 0;
	sqe = urt__ring_sqe(&loop->ring, loop->timer_armed ? NULL : &loop->timer_op);
	if (!sqe)
		return loop->ring.error;
	if (!loop->timer_armed) {
		urt__timespec_of(&loop->timer_ts, at);
		io_uring_prep_timeout(sqe, &loop->timer_ts, 0, IORING_TIMEOUT_ABS);
		loop->timer_armed = true;
	} else {
		urt__timespec_of(&loop->update_ts, at);
		io_uring_prep_timeout_update(sqe, &loop->update_ts,
					     (uint64_t)(uintptr_t)&loop->timer_op, IORING_TIMEOUT_ABS);
	}
	loop->timer_at = at;
	return 0;
}

void urt__timers_init(struct urt_loop *loop)
{
	loop->timer_op.done = timer_done;
}
