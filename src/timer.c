/* timer: the heap of absolute deadlines, one per waiting task, and its one
 * armed kernel timeout (IORING_OP_TIMEOUT with IORING_TIMEOUT_ABS, moved
 * earlier with IORING_TIMEOUT_UPDATE). What a deadline ends is the wait
 * layer's business (wait.c). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "timer.h"

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

int urt__timer_add(struct urt__timers *tm, struct urt_task *t, uint64_t deadline)
{
	if (tm->n == tm->cap) {
		size_t cap = tm->cap ? tm->cap * 2 : 256;
		struct urt__timer *h = realloc(tm->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		tm->heap = h;
		tm->cap = cap;
	}
	tm->heap[tm->n] = (struct urt__timer){ deadline, t };
	heap_up(tm->heap, tm->n++);
	return 0;
}

void urt__timer_del(struct urt__timers *tm, struct urt_task *t)
{
	size_t i = t->heap_idx;

	if (i == SIZE_MAX)
		return;
	t->heap_idx = SIZE_MAX;
	tm->n--;
	if (i == tm->n)
		return;
	tm->heap[i] = tm->heap[tm->n];
	heap_down(tm->heap, tm->n, i);
	heap_up(tm->heap, i);
}


struct urt_task *urt__timer_due(struct urt__timers *tm, uint64_t now)
{
	struct urt_task *t;

	if (!tm->n || tm->heap[0].deadline > now)
		return NULL;
	t = tm->heap[0].task;
	urt__timer_del(tm, t);
	return t;
}


/* The armed timeout fired or was removed: none is armed now. */
static void timer_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__timers *tm = (struct urt__timers *)((char *)op - offsetof(struct urt__timers, op));

	(void)res;
	(void)flags;
	tm->armed = false;
	tm->at = UINT64_MAX;
}

/* Keep one absolute timeout armed no later than at. An armed timeout that
 * is too late is moved with IORING_TIMEOUT_UPDATE; one that is too early
 * fires, finds nothing due and is armed again. */
int urt__timer_arm_at(struct urt__timers *tm, struct urt__ring *r, uint64_t at)
{
	struct io_uring_sqe *sqe;

	if (tm->armed && at >= tm->at)
		return 0;
	sqe = urt__ring_sqe(r, tm->armed ? NULL : &tm->op);
	if (!sqe)
		return r->error;
	if (!tm->armed) {
		urt__timespec_of(&tm->ts, at);
		io_uring_prep_timeout(sqe, &tm->ts, 0, IORING_TIMEOUT_ABS);
		tm->armed = true;
	} else {
		urt__timespec_of(&tm->update_ts, at);
		io_uring_prep_timeout_update(sqe, &tm->update_ts, (uint64_t)(uintptr_t)&tm->op,
					     IORING_TIMEOUT_ABS);
	}
	tm->at = at;
	return 0;
}

int urt__timer_arm(struct urt__timers *tm, struct urt__ring *r)
{
	return urt__timer_arm_at(tm, r, tm->heap[0].deadline);
}

int urt__timer_disarm(struct urt__timers *tm, struct urt__ring *r)
{
	struct io_uring_sqe *sqe;

	if (!tm->armed)
		return 0;
	sqe = urt__ring_sqe(r, NULL);
	if (!sqe)
		return r->error;
	io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)&tm->op, 0);
	return 0;
}

void urt__timers_init(struct urt__timers *tm)
{
	*tm = (struct urt__timers){ .op.done = timer_done, .at = UINT64_MAX };
}

void urt__timers_fini(struct urt__timers *tm)
{
	free(tm->heap);
	tm->heap = NULL;
	tm->n = tm->cap = 0;
}
