/* timer: the heap of absolute deadlines, one per waiting task, and its one
 * armed kernel timeout (IORING_OP_TIMEOUT with IORING_TIMEOUT_ABS, moved
 * earlier with IORING_TIMEOUT_UPDATE). What a deadline ends is the wait
 * layer's business (wait.c). */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "timer.h"

/* ---- timers: a 4-ary min-heap by deadline ---- */

/* Stale entries may reach this many beyond twice the live ones before
 * they are swept out together. */
#define STALE_SLACK 64
#define ARITY URT__TIMER_ARITY

static void heap_up(struct urt__timer *h, size_t i)
{
	struct urt__timer e = h[i];

	while (i > 0 && e.deadline < h[(i - 1) / ARITY].deadline) {
		h[i] = h[(i - 1) / ARITY];
		i = (i - 1) / ARITY;
	}
	h[i] = e;
}

/* Four children side by side: half the levels of a binary heap, each
 * level's children on one or two cache lines (a pop from a heap of
 * 100,000 touches 9 levels instead of 17). */
static void heap_down(struct urt__timer *h, size_t n, size_t i)
{
	struct urt__timer e = h[i];

	for (;;) {
		size_t c = ARITY * i + 1, end = c + ARITY, m = c;

		if (c >= n)
			break;
		if (end > n)
			end = n;
		for (size_t k = c + 1; k < end; k++)
			if (h[k].deadline < h[m].deadline)
				m = k;
		if (e.deadline <= h[m].deadline)
			break;
		h[i] = h[m];
		i = m;
	}
	h[i] = e;
}

static bool entry_stale(const struct urt__timer *e)
{
	return e->task->timer_gen != e->gen;
}

static void heap_pop(struct urt__timers *tm)
{
	tm->heap[0] = tm->heap[--tm->n];
	if (tm->n)
		heap_down(tm->heap, tm->n, 0);
}

/* Keep the top live: stale entries that reach it leave. */
static void top_clean(struct urt__timers *tm)
{
	while (tm->n && entry_stale(&tm->heap[0]))
		heap_pop(tm);
}

/* Stale entries outnumber the live ones: keep the live, heapify them
 * again (linear, as sweeping them costs, once per as many deletions). */
static void sweep(struct urt__timers *tm)
{
	size_t k = 0;

	for (size_t i = 0; i < tm->n; i++)
		if (!entry_stale(&tm->heap[i]))
			tm->heap[k++] = tm->heap[i];
	tm->n = k;
	assert(k == tm->live);
	for (size_t i = k / ARITY + 1; i-- > 0;)
		heap_down(tm->heap, k, i);
}

int urt__timer_add(struct urt__timers *tm, struct urt_task *t, uint64_t deadline)
{
	assert(!urt__timer_on(t));
	if (tm->n == tm->cap) {
		size_t cap = tm->cap ? tm->cap * 2 : 256;
		struct urt__timer *h = realloc(tm->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		tm->heap = h;
		tm->cap = cap;
	}
	t->timer_gen++;
	tm->live++;
	tm->heap[tm->n] = (struct urt__timer){ deadline, t, t->timer_gen };
	heap_up(tm->heap, tm->n++);
	return 0;
}

void urt__timer_del(struct urt__timers *tm, struct urt_task *t)
{
	if (!urt__timer_on(t))
		return;
	t->timer_gen++;
	tm->live--;
	if (tm->n > 2 * tm->live + STALE_SLACK)
		sweep(tm);
	else
		top_clean(tm);
}

struct urt_task *urt__timer_due(struct urt__timers *tm, uint64_t now)
{
	struct urt_task *t;

	if (!tm->n || tm->heap[0].deadline > now)
		return NULL;
	t = tm->heap[0].task;
	t->timer_gen++;
	tm->live--;
	heap_pop(tm);
	top_clean(tm);
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
