/* The timer layer (timer.c): the deadlines of waiting tasks on a heap and
 * on runs in order, and the one kernel timeout armed for the earliest. */
#ifndef URT_TIMER_H
#define URT_TIMER_H

#include "ring.h"
#include "task.h"

/* A heap entry carries its deadline, so that sifting compares without
 * touching the sleeping tasks' records, and the task's timer_gen when it
 * was added: the entry is stale once the task's has moved on. */
struct urt__timer {
	uint64_t deadline;
	struct urt_task *task;
	uint64_t gen;
};

/* Children per node of the heap below. */
#define URT__TIMER_ARITY 4

/* A queue of entries in deadline order: a ring of cap (a power of two),
 * with its first and last deadlines at hand (while n is not 0). */
struct urt__timer_run {
	struct urt__timer *e;
	size_t head, n, cap;
	uint64_t first, last;
};

/* The i-th entry of run r, from its first (i < r->cap). */
static inline struct urt__timer *urt__timer_run_entry(const struct urt__timer_run *r, size_t i)
{
	return &r->e[(r->head + i) & (r->cap - 1)];
}

/* Runs beside the heap. */
#define URT__TIMER_RUNS 4

/* The deadlines of waiting tasks: a 4-ary min-heap by deadline, and beside
 * it a few runs, queues of deadlines added in order (each no earlier than
 * its run's last), with one absolute IORING_OP_TIMEOUT armed in the kernel
 * for the earliest of all. Deadlines of one duration, the common case
 * (every request's timeout, every sleeper of W1), come in order: each
 * duration fills a run of its own, and its deadlines go in and out without
 * a sift, out in the order they came, ties too. A deadline goes on the run
 * whose last is the latest no later than it, else on an empty run, else on
 * the heap.
 *
 * Deletion is lazy: a task's timer_gen is odd while it has a timer, and
 * taking the timer off (or its coming due) moves it on, which makes the
 * task's entry stale wherever it is. So a sift writes the heap alone, not
 * one task record per level (with 100,000 sleepers that was a quarter of
 * W1's time). Stale entries leave when they reach the top, which is never
 * stale (n is 0 exactly when no task has a timer), or all at once when
 * they outnumber the live ones. */
struct urt__timers {
	struct urt__timer *heap;
	size_t heap_n, cap;
	struct urt__timer_run run[URT__TIMER_RUNS];
	size_t n;                   /* entries, on the heap and the runs */
	size_t live;                /* tasks with a timer; the rest are stale */
	struct urt__op op;          /* the armed timeout's */
	bool armed;
	uint64_t at;                /* when the armed timeout fires;
				     * UINT64_MAX while none is armed */
	struct __kernel_timespec ts;
	struct __kernel_timespec update_ts;
};

/* Whether t has a timer (on the heap or a run). */
static inline bool urt__timer_on(const struct urt_task *t)
{
	return t->timer_gen & 1;
}

/* Where the earliest entry is: a run's index, or -1 for the heap (tm->n
 * must not be 0). Out of line for the scheduler: inlined into its yield,
 * whose ping-pong never gets this far (no sleeper), it made the yield
 * 10% slower (W6) by the layout of its code alone. */
int urt__timer_top_at(const struct urt__timers *tm);

/* The first entry of run at, or the heap's top when at is -1. */
static inline const struct urt__timer *urt__timer_entry_at(const struct urt__timers *tm, int at)
{
	return at < 0 ? &tm->heap[0] : urt__timer_run_entry(&tm->run[at], 0);
}

/* The earliest entry (tm->n must not be 0). */
static inline const struct urt__timer *urt__timer_top(const struct urt__timers *tm)
{
	return urt__timer_entry_at(tm, urt__timer_top_at(tm));
}

/* The earliest deadline (UINT64_MAX: none). */
static inline uint64_t urt__timer_next(const struct urt__timers *tm)
{
	return tm->n ? urt__timer_top(tm)->deadline : UINT64_MAX;
}

/* Whether the armed timeout comes no later than the earliest deadline
 * (also when no deadline waits): a yield asks it each time. */
static inline bool urt__timer_covered(const struct urt__timers *tm)
{
	return tm->at <= urt__timer_next(tm);
}

/* No timer, nothing armed. */
void urt__timers_init(struct urt__timers *tm);
/* Free the heap and the runs (their tasks are the caller's). */
void urt__timers_fini(struct urt__timers *tm);
/* Give t a timer at deadline, on a run or the heap (t must have none).
 * 0 or -ENOMEM. */
int urt__timer_add(struct urt__timers *tm, struct urt_task *t, uint64_t deadline);
/* Take t's timer away; nothing when it has none. */
void urt__timer_del(struct urt__timers *tm, struct urt_task *t);
/* The task whose deadline is earliest, when it is no later than now,
 * its timer taken away; else NULL. */
struct urt_task *urt__timer_due(struct urt__timers *tm, uint64_t now);
/* Keep the one kernel timeout armed on r no later than the earliest
 * deadline (some task must have a timer). 0, or the ring's error. */
int urt__timer_arm(struct urt__timers *tm, struct urt__ring *r);
/* The same, no later than at: a time of the loop's own, not a task's
 * deadline (its expiry ends the loop's wait in the kernel, and wakes no
 * task). 0, or the ring's error. */
int urt__timer_arm_at(struct urt__timers *tm, struct urt__ring *r, uint64_t at);
/* Remove the armed timeout, if any (its CQE still comes). 0, or the
 * ring's error. */
int urt__timer_disarm(struct urt__timers *tm, struct urt__ring *r);

#endif
