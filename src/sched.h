/* The scheduler (sched.c): the loop's state, its tasks, the run queue,
 * park and wake, the check before a wait, what closes with the loop. */
#ifndef URT_SCHED_H
#define URT_SCHED_H

#include <errno.h>
#include <pthread.h>

#include "pool.h"
#include "task.h"
#include "timer.h"

struct urt__offload;
struct urt__xloop;
struct urt__metrics_pub;
struct urt__lag;
struct urt__stall_watch;

/*
 * What lives on a loop and closes with it (an acceptor, a task group, the
 * loop's jobs) registers itself, as libuv's handles do, and
 * urt_loop_destroy walks the registered ones at each stage of its close,
 * knowing nothing of what they are.
 */
enum urt__close_stage {
	URT__CLOSE_BEGIN,   /* before the tasks are cancelled: stop, wake waiters */
	URT__CLOSE_CANCEL,  /* the tasks are cancelled: drop what nobody started */
	URT__CLOSE_FREE,    /* every CQE is in, or the ring failed: free */
};

struct urt__closable {
	LIST_ENTRY(urt__closable) link;
	void (*close)(struct urt__closable *c, enum urt__close_stage stage);
};

struct urt_loop {
	struct urt__tasks tasks;    /* first: see urt__tasks_of */
	struct urt__ring ring;
	pthread_t owner;
	struct urt_task *rq_head, *rq_tail;
	size_t rq_len;
	size_t batch_left;          /* tasks of the current pass not yet run */
	/* Tasks that yielded: they rejoin the run queue after the turn's
	 * completions, so that yielding lets woken tasks go first. */
	struct urt_task *yq_head, *yq_tail;
	size_t yq_len;
	LIST_HEAD(, urt_task) all;   /* every task not yet freed */
	size_t live;                /* tasks spawned and not yet returned */
	uint64_t spawned;
	struct urt__timers timers;  /* the deadlines of waiting tasks */
	LIST_HEAD(, urt__closable) closables; /* what closes with the loop */
	struct urt__offload *offload; /* offload.c's: the loop's side of the pool */
	/* Its finished list, which the pool fills with no message to a loop
	 * that does not sleep: a yield looks at it before skipping a turn. */
	struct urt__done *done;
	struct urt__xloop *xloop;   /* xloop.c's: messages from other threads */
	/* Work a layer above queued for the end of this turn (offload's jobs
	 * to hand over): while there is some, a yield does not skip the
	 * turn. */
	unsigned turn_due;
	uint64_t stall_ns;          /* 0: stall detection off */
	struct urt__stall_watch *stall_watch; /* URT_LOOP_STALL_BACKTRACE's */
	void (*on_stall)(void *ctx, urt_task *task, const char *name, uint64_t ran_ns);
	void *stall_ctx;
	/* Metrics (loop.c): turns always; the rest with URT_LOOP_METRICS. */
	uint64_t turns;
	uint64_t idle_poll_ns;      /* 0: off */
	size_t stack_resident;      /* cached stacks kept whole when quiet */
	uint64_t trim_at;           /* when the rest go back if still quiet;
				     * 0: not quiet */
	bool trimming;              /* giving them back, a slice at a time */
	bool metrics;
	uint64_t busy_ns, idle_ns, mark_ns; /* mark: where busy time counts from */
	struct urt__metrics_pub *pub; /* the snapshot for other threads */
	struct urt__lag *lag;       /* the lag monitor (loop.c), NULL: never on */
	uint64_t sched_wakeups;     /* woken tasks resumed while sched_hist */
	uint64_t sched_rng;         /* which wake-ups sched_hist samples */
	struct urt_hist *sched_hist; /* NULL, or where the scheduler records
				      * sampled woken tasks' wait to run
				      * (urt__sched_delay_measure) */
	/* With stall_ns: the longest run of a task since the lag monitor's
	 * last tick (which resets it), and that task's name. */
	uint64_t longest_ns;
	char longest_name[32];
	bool running;
	bool stop;                  /* urt_loop_stop asked for a return */
	bool destroying;
	/* No new task, job or acceptor: the loop is being destroyed, or its
	 * set's run was cancelled. */
	bool closing;
};
_Static_assert(offsetof(struct urt_loop, tasks) == 0, "urt__tasks_of needs it first");

/* Whether the calling thread owns loop (made it): the only thread that
 * may run it and use its tasks. */
static inline bool urt__owned(const struct urt_loop *loop)
{
	return pthread_equal(loop->owner, pthread_self());
}

/* Register c to be closed with loop, at each stage of its destroy. */
static inline void urt__closable_add(struct urt_loop *loop, struct urt__closable *c)
{
	LIST_INSERT_HEAD(&loop->closables, c, link);
}

/* c closed itself early, or is gone: loop's destroy will not call it. */
static inline void urt__closable_del(struct urt_loop *loop, struct urt__closable *c)
{
	(void)loop;
	LIST_REMOVE(c, link);
}

/* Stall detection (stall.c). The watchdog of URT_LOOP_STALL_BACKTRACE:
 * started on the loop's thread (0, -ENOMEM, -EBUSY: the application's
 * SIGURG handler, -EAGAIN: no thread), stopped (joined) at its destroy.
 * The scheduler marks each task run's beginning (at now) and end; the
 * report of a run comes between them. */
int urt__stall_watch_start(struct urt_loop *loop);
void urt__stall_watch_stop(struct urt_loop *loop);
void urt__stall_run_begin(struct urt__stall_watch *w, uint64_t now);
void urt__stall_run_end(struct urt__stall_watch *w);
void urt__stall_report(struct urt_loop *loop, struct urt_task *t, const char *name,
		       uint64_t ran_ns);

/* Measure woken tasks' wait to run into h, a random eighth of them, each
 * wake-up counted in sched_wakeups (reset); NULL: stop measuring. */
void urt__sched_delay_measure(struct urt_loop *loop, struct urt_hist *h);

extern URT__TLS struct urt_loop *urt__cur_loop;

/* Put a task at the back of the run queue. */
void urt__ready(struct urt_task *t);
/* Park the running task in the wait (interrupt, obj) until someone calls
 * urt__wake; returns wake_res. */
int urt__park(struct urt_task *t, void (*interrupt)(struct urt_task *, int), void *obj);
/* Make a parked task ready, its wait returning res. */
void urt__wake(struct urt_task *t, int res);

/* Before a wait: -ECANCELED once t is cancelled, -ETIMEDOUT once its
 * deadline has passed, else 0. Inline: every job, I/O operation, sleep
 * and yield asks it. */
static inline int urt__wait_check(struct urt_task *t)
{
	if (t->cancelled)
		return -ECANCELED;
	if (t->deadline != UINT64_MAX && urt_now_ns() >= t->deadline)
		return -ETIMEDOUT;
	return 0;
}

/* One pass: run the tasks ready now (those made ready meanwhile wait for
 * the next turn); free detached tasks that ended. */
void urt__sched_run_ready(struct urt_loop *loop);
/* Move the tasks that yielded this turn to the back of the run queue. */
void urt__sched_splice_yielded(struct urt_loop *loop);

/* Put a new task on its loop's list of tasks, counted as live. */
void urt__task_link(struct urt_loop *loop, struct urt_task *t);
/* t no longer counts live: the loop's run ends without it (the lag
 * monitor's task). Its end is not counted either. */
void urt__task_daemon(struct urt_task *t);
/* Take an ended (or, at destroy, any) task off the list and free it. */
void urt__task_release(struct urt_task *t);

#endif
