/* timer: the heap of absolute deadlines, one per waiting task, and its one
 * armed kernel timeout (IORING_OP_TIMEOUT with IORING_TIMEOUT_ABS, moved
 * earlier with IORING_TIMEOUT_UPDATE). What a deadline ends is the wait
 * layer's business (wait.c). */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "timer.h"

/* ---- timers: a 4-ary min-heap by deadline, and runs in order ---- */

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

/* A run's first deadline, or the heap's top, whichever is earliest. */
int urt__timer_top_at(const struct urt__timers *tm)
{
	bool any = tm->heap_n != 0;
	uint64_t min = any ? tm->heap[0].deadline : 0;
	int at = -1;

	for (int i = 0; i < URT__TIMER_RUNS; i++) {
		const struct urt__timer_run *r = &tm->run[i];

		if (r->n && (!any || r->first < min)) {
			min = r->first;
			at = i;
			any = true;
		}
	}
	return at;
}

static void heap_pop(struct urt__timers *tm)
{
	tm->heap[0] = tm->heap[--tm->heap_n];
	if (tm->heap_n)
		heap_down(tm->heap, tm->heap_n, 0);
}

/* Take the earliest entry away: at is where it is (urt__timer_top_at). */
static void top_pop(struct urt__timers *tm, int at)
{
	if (at >= 0) {
		struct urt__timer_run *r = &tm->run[at];

		r->head = (r->head + 1) & (r->cap - 1);
		if (--r->n)
			r->first = urt__timer_run_entry(r, 0)->deadline;
	} else {
		heap_pop(tm);
	}
	tm->n--;
}

/* Keep the top live: stale entries that reach it leave. */
static void top_clean(struct urt__timers *tm)
{
	while (tm->n) {
		int at = urt__timer_top_at(tm);

		if (!entry_stale(urt__timer_entry_at(tm, at)))
			break;
		top_pop(tm, at);
	}
}

/* Stale entries outnumber the live ones: keep the live, each run's in
 * their order, and heapify the heap's again (linear, as sweeping them
 * costs, once per as many deletions). */
static void sweep(struct urt__timers *tm)
{
	size_t k = 0;

	for (size_t i = 0; i < tm->heap_n; i++)
		if (!entry_stale(&tm->heap[i]))
			tm->heap[k++] = tm->heap[i];
	tm->heap_n = k;
	tm->n = k;
	/* From the last parent up. */
	for (size_t i = k > 1 ? (k - 2) / ARITY + 1 : 0; i-- > 0;)
		heap_down(tm->heap, k, i);
	for (int j = 0; j < URT__TIMER_RUNS; j++) {
		struct urt__timer_run *r = &tm->run[j];

		k = 0;
		for (size_t i = 0; i < r->n; i++) {
			struct urt__timer e = *urt__timer_run_entry(r, i);

			if (!entry_stale(&e))
				*urt__timer_run_entry(r, k++) = e;
		}
		r->n = k;
		tm->n += k;
		if (k) {
			r->first = urt__timer_run_entry(r, 0)->deadline;
			r->last = urt__timer_run_entry(r, k - 1)->deadline;
		}
	}
	assert(tm->n == tm->live);
}

/* Room for one more entry on r: 0 or -ENOMEM. */
static int run_grow(struct urt__timer_run *r)
{
	size_t cap = r->cap ? r->cap * 2 : 256;
	struct urt__timer *e;

	if (r->n < r->cap)
		return 0;
	e = malloc(cap * sizeof(*e));
	if (!e)
		return -ENOMEM;
	for (size_t i = 0; i < r->n; i++)
		e[i] = *urt__timer_run_entry(r, i);
	free(r->e);
	r->e = e;
	r->head = 0;
	r->cap = cap;
	return 0;
}

/* Room for one more entry on the heap: 0 or -ENOMEM. */
static int heap_grow(struct urt__timers *tm)
{
	size_t cap = tm->cap ? tm->cap * 2 : 256;
	struct urt__timer *h;

	if (tm->heap_n < tm->cap)
		return 0;
	h = realloc(tm->heap, cap * sizeof(*h));
	if (!h)
		return -ENOMEM;
	tm->heap = h;
	tm->cap = cap;
	return 0;
}

/* The run a deadline goes on: the one whose last is the latest no later
 * than it, else an empty one; NULL: the heap. */
static struct urt__timer_run *run_for(struct urt__timers *tm, uint64_t deadline)
{
	struct urt__timer_run *fit = NULL, *empty = NULL;
	uint64_t fit_last = 0;

	for (int i = 0; i < URT__TIMER_RUNS; i++) {
		struct urt__timer_run *r = &tm->run[i];

		if (!r->n) {
			if (!empty)
				empty = r;
		} else if (r->last <= deadline && (!fit || r->last > fit_last)) {
			fit = r;
			fit_last = r->last;
		}
	}
	return fit ? fit : empty;
}

int urt__timer_add(struct urt__timers *tm, struct urt_task *t, uint64_t deadline)
{
	struct urt__timer e = { deadline, t, t->timer_gen + 1 };
	struct urt__timer_run *r = run_for(tm, deadline);

	assert(!urt__timer_on(t));
	if (r) {
		if (run_grow(r))
			return -ENOMEM;
		*urt__timer_run_entry(r, r->n++) = e;
		if (r->n == 1)
			r->first = deadline;
		r->last = deadline;
	} else {
		if (heap_grow(tm))
			return -ENOMEM;
		tm->heap[tm->heap_n] = e;
		heap_up(tm->heap, tm->heap_n++);
	}
	t->timer_gen++;
	tm->live++;
	tm->n++;
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
	const struct urt__timer *top;
	struct urt_task *t;
	int at;

	if (!tm->n)
		return NULL;
	at = urt__timer_top_at(tm);
	top = urt__timer_entry_at(tm, at);
	if (top->deadline > now)
		return NULL;
	t = top->task;
	t->timer_gen++;
	tm->live--;
	top_pop(tm, at);
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
	return urt__timer_arm_at(tm, r, urt__timer_next(tm));
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
	tm->n = tm->heap_n = tm->cap = 0;
	for (int i = 0; i < URT__TIMER_RUNS; i++) {
		free(tm->run[i].e);
		tm->run[i] = (struct urt__timer_run){ 0 };
	}
}
