/* sched: the scheduler. The loop's tasks, the run queue and its passes,
 * park and wake, the yield, the current loop, stall reports. */
#include <errno.h>
#include <stdio.h>

#include "sched.h"

URT__TLS struct urt_loop *urt__cur_loop;

urt_loop *urt_current_loop(void)
{
	return urt__cur_loop;
}

urt_task *urt_current_task(void)
{
	return urt__cur_task;
}


/* ---- run queue ---- */

static void enqueue(struct urt_task **head, struct urt_task **tail, struct urt_task *t)
{
	t->state = URT__READY;
	t->next = NULL;
	if (*tail)
		(*tail)->next = t;
	else
		*head = t;
	*tail = t;
}

void urt__ready(struct urt_task *t)
{
	enqueue(&t->loop->rq_head, &t->loop->rq_tail, t);
	t->loop->rq_len++;
}

/* Move the tasks that yielded this turn to the back of the run queue. */
void urt__sched_splice_yielded(struct urt_loop *loop)
{
	if (!loop->yq_head)
		return;
	loop->rq_len += loop->yq_len;
	loop->yq_len = 0;
	if (loop->rq_tail)
		loop->rq_tail->next = loop->yq_head;
	else
		loop->rq_head = loop->yq_head;
	loop->rq_tail = loop->yq_tail;
	loop->yq_head = loop->yq_tail = NULL;
}

static struct urt_task *rq_pop(struct urt_loop *loop)
{
	struct urt_task *t = loop->rq_head;

	if (t) {
		loop->rq_head = t->next;
		if (!loop->rq_head)
			loop->rq_tail = NULL;
		loop->rq_len--;
	}
	return t;
}

/* A woken task resumes while its wait to run is measured (the lag
 * monitor's schedule delay): count it, and record a sampled one. Out of
 * line: the switch to the next task stays short without it. */
static __attribute__((noinline, cold)) void woken_resumes(struct urt_loop *loop,
							  struct urt_task *t)
{
	if (loop->sched_hist) {
		loop->sched_wakeups++;
		if (t->woken_ns > 1) /* sampled */
			urt_hist_record(loop->sched_hist, urt_now_ns() - t->woken_ns);
	}
	t->woken_ns = 0;
}

/* The next ready task, about to run: a woken one's wait to run is
 * recorded, when measured. The one after it is fetched ahead: its stack's
 * top, and the record of the one after that, whose stack the next call
 * fetches (a pipeline two deep, as each stack's address is in the record
 * before it). Only while PREFETCH_FROM tasks or more wait: the stacks of
 * fewer are in the cache anyway, and fetching them cost a ping-pong of two
 * tasks 3 of its 125 instructions a yield (W6). Inline in each switch: as
 * a call it cost a yield 8 of its 132 instructions. */
#define PREFETCH_FROM 16
static inline __attribute__((always_inline)) struct urt_task *next_ready(struct urt_loop *loop)
{
	struct urt_task *t = rq_pop(loop);
	struct urt_task *n = loop->rq_head;

	if (n && loop->rq_len >= PREFETCH_FROM) {
		urt__task_prefetch(n);
		if (n->next)
			__builtin_prefetch(n->next);
	}
	if (__builtin_expect(t->woken_ns != 0, 0))
		woken_resumes(loop, t);
	return t;
}

void urt__sched_delay_measure(struct urt_loop *loop, struct urt_hist *h)
{
	loop->sched_hist = h;
	/* A completion's wake-up is stamped with its reap's clock. */
	urt__ring_stamp_reaps(&loop->ring, h != NULL);
	if (!h)
		return;
	loop->sched_wakeups = 0;
	/* Which wake-ups are sampled: from the clock, mixed (splitmix64). */
	loop->sched_rng = urt_now_ns() + 0x9e3779b97f4a7c15ull;
	loop->sched_rng = (loop->sched_rng ^ (loop->sched_rng >> 30)) * 0xbf58476d1ce4e5b9ull;
	loop->sched_rng = (loop->sched_rng ^ (loop->sched_rng >> 27)) * 0x94d049bb133111ebull;
	loop->sched_rng ^= loop->sched_rng >> 31;
}

/* Whether this wake-up's schedule delay is measured: one in 8, drawn at
 * random (the top bits of a 64-bit LCG), so that no periodic order of
 * tasks hides from the sample. Measuring costs a clock read at the resume
 * (and at the wake-up when no reap stamps it). */
static bool sample_wake(struct urt_loop *loop)
{
	loop->sched_rng = loop->sched_rng * 6364136223846793005ull + 1442695040888963407ull;
	return (loop->sched_rng >> 61) == 0;
}

int urt__park(struct urt_task *t, void (*interrupt)(struct urt_task *, int), void *obj)
{
	struct urt_loop *loop = t->loop;

	t->state = URT__PARKED;
	t->wait = (struct urt__wait){ interrupt, obj };
	/* More tasks to run in this pass: switch straight to the next, as
	 * the scheduler would (one switch instead of two). Not with the stall
	 * detector, which times each task from the scheduler. */
	if (loop->batch_left && !loop->stall_ns) {
		loop->batch_left--;
		urt__task_switch(t, next_ready(loop));
	} else {
		urt__task_suspend(t);
	}
	t->wait = (struct urt__wait){ NULL, NULL };
	return t->wake_res;
}

void urt__wake(struct urt_task *t, int res)
{
	/* Whatever ended the wait, its deadline's timer goes with it: a
	 * timer left behind would interrupt a wait that is over. */
	if (urt__timer_on(t))
		urt__timer_del(&t->loop->timers, t);
	t->wake_res = res;
	if (t->loop->sched_hist) {
		t->woken_ns = 1; /* woken: counted when it resumes */
		if (sample_wake(t->loop)) {
			/* A completion's wake-up: when its reap began. */
			uint64_t at = urt__ring_reap_ns(&t->loop->ring);

			t->woken_ns = at ? at : urt_now_ns();
		}
	}
	urt__ready(t);
}


/* ---- the loop's tasks ---- */

void urt__task_link(struct urt_loop *loop, struct urt_task *t)
{
	LIST_INSERT_HEAD(&loop->all, t, all_link);
	loop->live++;
	loop->spawned++;
}

void urt__task_daemon(struct urt_task *t)
{
	if (!t->daemon) {
		t->daemon = true;
		t->loop->live--;
	}
}

void urt__task_release(struct urt_task *t)
{
	LIST_REMOVE(t, all_link);
	t->state = URT__FREED;
	urt__task_free(t);
}

/* t's function has returned (the task layer marked it done). */
static void task_ended(struct urt_task *t)
{
	if (!t->daemon)
		t->loop->live--;
	if (t->on_end)
		t->on_end(t);
	if (t->joiner) {
		/* t->joiner stays set: the handle is claimed until the joiner
		 * runs and frees it, so no other join can take it meanwhile. */
		urt__wake(t->joiner, 0);
	}
	if (t->detached)
		urt__task_release(t);
}


/* ---- the scheduler ---- */

/* t's name, or "task@<address>" when it has none. */
static void task_name(const struct urt_task *t, char *buf, size_t len)
{
	if (t->name[0])
		snprintf(buf, len, "%s", t->name);
	else
		snprintf(buf, len, "task@%p", (const void *)t);
}

static void report_stall(struct urt_loop *loop, struct urt_task *t, uint64_t ran_ns)
{
	char name[sizeof(t->name)];

	task_name(t, name, sizeof(name));
	urt__stall_report(loop, t, name, ran_ns);
}

int urt_task_set_name(urt_task *t, const char *name)
{
	if (!t)
		t = urt__cur_task;
	if (!t || !name)
		return -EINVAL;
	snprintf(t->name, sizeof(t->name), "%s", name);
	return 0;
}

/* Run the tasks that are ready now; tasks made ready meanwhile (a yield, a
 * spawn) wait for the next turn, so I/O is submitted between them. */
void urt__sched_run_ready(struct urt_loop *loop)
{
	uint64_t t0 = 0;

	loop->batch_left = loop->rq_len;
	if (!loop->batch_left)
		return;
	if (loop->stall_ns)
		t0 = urt_now_ns();
	while (loop->batch_left) {
		struct urt_task *t;

		loop->batch_left--;
		if (loop->stall_watch)
			urt__stall_run_begin(loop->stall_watch, t0);
		t = urt__task_resume(next_ready(loop));
		/* One clock read per switch: each task's end is the next
		 * one's start. */
		if (loop->stall_ns) {
			uint64_t t1 = urt_now_ns();

			if (t1 - t0 > loop->stall_ns)
				report_stall(loop, t, t1 - t0);
			if (t1 - t0 > loop->longest_ns) {
				loop->longest_ns = t1 - t0;
				task_name(t, loop->longest_name, sizeof(loop->longest_name));
			}
			t0 = t1;
		}
		if (loop->stall_watch)
			urt__stall_run_end(loop->stall_watch);
		if (t->state == URT__DONE)
			task_ended(t);
	}
}


/* No sleeper's time can come without the ring telling: none sleeps, or the
 * earliest is covered by a timeout armed in the kernel that flags its
 * expiry (a sleeper such as the lag monitor then costs yields nothing). */
static bool timers_watched(struct urt_loop *loop)
{
	const struct urt__timers *tm = &loop->timers;

	return !tm->n || (urt__timer_covered(tm) && urt__ring_watches_timeouts(&loop->ring));
}

/*
 * A yield may go straight to the next ready task, as the scheduler would
 * next: within the current pass, or into the next one when the turn between
 * would do nothing (no SQE to submit, no completion or kernel work waiting,
 * no finished job on the loop's list, no sleeper whose time could come
 * unseen, no job to hand over, no stop asked). Saves two switches and a turn per yield. Not with the stall
 * detector, which times each task from the scheduler.
 */
static bool direct_switch_ok(struct urt_loop *loop)
{
	if (loop->stall_ns)
		return false;
	if (loop->batch_left)
		return true;
	return timers_watched(loop) && !loop->turn_due && !loop->stop &&
	       !urt__ring_queued(&loop->ring) && !urt__ring_pending(&loop->ring) &&
	       !urt__done_ready(loop->done);
}

int urt_yield(void)
{
	struct urt_task *self = urt__cur_task;
	int ret;

	if (!self)
		return -EPERM;
	ret = urt__wait_check(self);
	if (ret)
		return ret;
	enqueue(&self->loop->yq_head, &self->loop->yq_tail, self);
	self->loop->yq_len++;
	if (direct_switch_ok(self->loop)) {
		struct urt_loop *loop = self->loop;
		struct urt_task *next;

		/* The pass is over and a turn would find nothing to do:
		 * start the next pass here. */
		if (!loop->batch_left) {
			urt__sched_splice_yielded(loop);
			loop->batch_left = loop->rq_len;
		}
		loop->batch_left--;
		next = next_ready(loop);
		if (next != self)
			urt__task_switch(self, next);
		else
			self->state = URT__RUNNING; /* the only ready task */
		return self->cancelled ? -ECANCELED : 0;
	}
	urt__task_suspend(self);
	return self->cancelled ? -ECANCELED : 0;
}

