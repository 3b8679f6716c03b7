/* Internal declarations shared by the layers: ring, task, loop, io. */
#ifndef URT_INTERNAL_H
#define URT_INTERNAL_H

#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h> /* every list: LIST_* (unordered), TAILQ_* (FIFO) */

#include "urt.h"

#define URT__TLS __thread __attribute__((tls_model("initial-exec")))

#if defined(__SANITIZE_ADDRESS__)
#define URT__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define URT__ASAN 1
#endif
#endif
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>) && __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#define URT__VALGRIND 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define URT__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define URT__TSAN 1
#endif
#endif

/* Zeroed memory of its own 128-byte blocks (a cache line and the line the
 * hardware prefetches with it), for a structure that one thread writes while
 * another thread writes a different one: allocated with calloc, a loop and
 * its pool could share a block, and each write would move it between CPUs.
 * NULL when out of memory; free with free(). */
static inline void *urt__alloc_lines(size_t size)
{
	size_t len = (size + 127) & ~(size_t)127;
	void *p = aligned_alloc(128, len);

	if (p)
		memset(p, 0, len);
	return p;
}

/* ---- ring: io_uring setup, SQE acquisition, submit, reap, dispatch ---- */

/*
 * One in-flight SQE. Its address is the SQE's user_data; the CQE is handed to
 * done(). The record lives wherever its owner keeps it (a parked task's stack,
 * the loop), never allocated per operation.
 */
struct urt__op {
	void (*done)(struct urt__op *op, int32_t res, uint32_t cqe_flags);
	/* Its CQEs come with no SQE of ours and nobody waits for them (the
	 * pool's wake-up messages): each is counted as a message when it
	 * arrives, not as an SQE's completion. */
	bool unsolicited;
};

struct urt__ring {
	struct io_uring ring;
	unsigned setup_flags; /* the flags the kernel accepted */
	unsigned features;
	uint64_t inflight;    /* SQEs prepared whose CQE has not been reaped */
	uint64_t sqes;        /* SQEs prepared, ever */
	uint64_t expected;    /* CQEs expected without an SQE (urt__ring_expect) */
	uint64_t cqes;        /* CQEs reaped, ever */
	uint64_t more;        /* of which flagged IORING_CQE_F_MORE */
	uint64_t settled;     /* expected CQEs settled by urt__ring_complete */
	/* CQEs moved out of the CQ, undispatched, when the kernel wanted room
	 * for SQEs: the next turn dispatches them first. */
	struct io_uring_cqe *held;
	size_t held_head, held_n, held_cap;
	int error;            /* why urt__ring_sqe last returned NULL */
	bool reaping;
};

int urt__ring_init(struct urt__ring *r, unsigned entries, unsigned cq_entries);
void urt__ring_fini(struct urt__ring *r);
/* A free SQE, flushing the SQ to the kernel when it is full. user_data is set
 * to op (NULL: a CQE nobody waits for, a cancel's or a timeout update's).
 * Safe anywhere, also in a completion handler: when the kernel wants CQEs
 * reaped first, they are held for the next turn, never dispatched here.
 * NULL when the SQ cannot be flushed (the ring is unusable, or the kernel
 * stays short of memory): r->error says why. */
struct io_uring_sqe *urt__ring_sqe(struct urt__ring *r, struct urt__op *op);
/* Make room for n SQEs that must reach the kernel in one submit (a linked
 * pair): flushes the SQ first when fewer than n entries are free. 0, or
 * -errno as urt__ring_sqe; after 0, n calls of urt__ring_sqe succeed. */
int urt__ring_reserve(struct urt__ring *r, unsigned n);
/* Move every CQE out of the CQ into r->held, undispatched: the room the
 * kernel wants (-EBUSY, -EAGAIN) before it takes more SQEs. The next turn
 * dispatches them first, in order. 0 or -ENOMEM. */
int urt__ring_hold(struct urt__ring *r);
/* Count a CQE that arrives without an SQE of ours (a MSG_RING from a pool
 * worker), so that the loop waits for it. */
static inline void urt__ring_expect(struct urt__ring *r)
{
	r->inflight++;
	r->expected++;
}
/* Deliver a result to op as if its CQE had arrived (for an expected CQE that
 * will never come, e.g. a job dropped before it was sent). */
void urt__ring_complete(struct urt__ring *r, struct urt__op *op, int32_t res);
/* True when a CQE is ready or held, or the kernel holds work that would
 * post one. */
bool urt__ring_pending(struct urt__ring *r);
/* Submit what is queued; wait for at least one CQE when wait is set. Then
 * dispatch every CQE available. Returns the CQEs dispatched, or -errno. */
int urt__ring_turn(struct urt__ring *r, bool wait);

/* ---- task: stacks, context switch, run queue ---- */

enum urt__state {
	URT__READY,   /* in the run queue */
	URT__RUNNING,
	URT__PARKED,  /* waiting for a wake-up */
	URT__DONE,    /* returned; handle waits for its join */
	URT__FREED,   /* joined or detached and gone: while the stack waits in
		       * the cache, a stale handle is caught (-EINVAL) */
};

struct urt_task;

/*
 * A parked task's wait: what it waits on, and how a cancel (res
 * -ECANCELED) or the task's deadline (-ETIMEDOUT) ends it. Whoever parks
 * the task fills it in: a sleep wakes the task, a job is abandoned, a wait
 * queue's waiter is unlinked, an I/O operation is cancelled in the kernel
 * (the task wakes with the operation's CQE), a group cancels its members
 * and goes on waiting. interrupt NULL: only the wait's own completion ends
 * it (urt_to_thread, whose function runs on the task's stack).
 */
struct urt__wait {
	void (*interrupt)(struct urt_task *t, int res);
	void *obj;
};

struct __attribute__((aligned(64))) urt_task {
	/* What every switch, park and wake-up touches: the first cache line. */
	void *sp;                 /* saved stack pointer while not running */
	struct urt_loop *loop;
	struct urt_task *next;    /* run queue */
	uint64_t *canary;         /* the zero window at the bottom of the stack */
	size_t heap_idx;          /* on the timer heap: its index, else SIZE_MAX */
	uint64_t deadline;        /* urt_timeout_enter; UINT64_MAX: none */
	int wake_res;             /* what the current wait returns */
	int result;               /* fn's return value */
	uint8_t state;
	bool detached;
	bool cancelled;
	bool guarded;
	/* The rest, by the wait or event that needs it. */
	urt_task_fn fn;
	void *arg;
	struct urt_task *joiner;  /* the task parked joining this one */
	/* Called when fn has returned (a group's member tells its group). */
	void (*on_end)(struct urt_task *t);
	struct urt_group *group;  /* the group the task is a member of */
	struct urt__wait wait;    /* parked: what ends the wait */
	struct urt_timeout *scope; /* the innermost timeout scope */
	LIST_ENTRY(urt_task) group_link; /* the group's members */
	LIST_ENTRY(urt_task) all_link;   /* the loop's tasks */
	void *map;                /* the stack mapping (guard page included) */
	size_t map_len;
	char name[32];            /* urt_task_set_name; empty: unnamed */
#if URT__ASAN
	const void *asan_bottom;
	size_t asan_size;
	void *asan_fake;
#endif
#if URT__TSAN
	void *tsan_fiber;
#endif
#if URT__VALGRIND
	unsigned vg_id;
#endif
};

/* A heap entry carries its deadline, so that sifting compares without
 * touching the sleeping tasks' stacks. */
struct urt__timer {
	uint64_t deadline;
	struct urt_task *task;
};

/* The deadlines of waiting tasks: a binary min-heap by deadline (each
 * task's heap_idx says where it is, SIZE_MAX: not on it), with one
 * absolute IORING_OP_TIMEOUT armed in the kernel for the earliest. */
struct urt__timers {
	struct urt__timer *heap;
	size_t n, cap;
	struct urt__op op;          /* the armed timeout's */
	bool armed;
	uint64_t at;                /* when the armed timeout fires */
	struct __kernel_timespec ts;
	struct __kernel_timespec update_ts;
};

/* A task's wait for one I/O operation: the operation (op, its SQE's
 * user_data) and what the wait needs to know of it. */
struct urt__io_wait {
	struct urt__op op;
	struct urt_task *task;
	bool done;          /* its CQE has come (the result is the wake's) */
	bool cancel_sent;
	bool linked;        /* an IORING_OP_LINK_TIMEOUT follows the SQE */
	struct __kernel_timespec ts; /* the linked timeout's deadline */
};

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

/* Finished tasks' records wait for reuse on a free list, most with their
 * stacks still mapped; n counts those stacks, limit caps them. */
struct urt__stack_cache {
	size_t n, limit;
};

/* Task records come from slabs, dense and apart from the stacks: the
 * scheduler's bookkeeping (run queue, timer heap, task list) then touches
 * a few pages of records rather than a page per task. */
#define URT__SLAB_RECS 256
struct urt__rec_slab {
	struct urt__rec_slab *next;
	size_t used;
	struct urt_task rec[URT__SLAB_RECS];
};

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


/*
 * The task layer's state on each loop: the records and stacks it hands
 * out, and the scheduler's side of every switch. It is the first member
 * of struct urt_loop, so that the task layer reaches it from a task's
 * loop without knowing the rest of the loop.
 */
struct urt__tasks {
	void *sched_sp;             /* the scheduler's saved stack pointer */
	struct urt__stack_cache stacks;
	struct urt__rec_slab *slabs;   /* every record, live or free */
	struct urt_task *rec_free;     /* free records, linked by next */
	void *chunk;                /* unguarded stacks not handed out yet */
	unsigned chunk_left;
	size_t stack_size;          /* usable bytes per stack */
	bool guard;                 /* a guard page below each stack, within
				     * the budget */
#if URT__ASAN
	const void *asan_sched_bottom;
	size_t asan_sched_size;
	void *asan_sched_fake;
	bool asan_from_task;        /* the switch under way leaves a task */
#endif
#if URT__TSAN
	void *tsan_sched;           /* the scheduler's fiber */
#endif
};

static inline struct urt__tasks *urt__tasks_of(struct urt_loop *loop)
{
	return (struct urt__tasks *)(void *)loop; /* its first member */
}

/* No task yet; stacks of stack_size usable bytes, at most cache_limit
 * kept when their tasks end, guarded when guard is set. */
void urt__tasks_init(struct urt__tasks *ts, size_t stack_size, size_t cache_limit, bool guard);
/* Unmap every record and stack; every task must have been freed. */
void urt__tasks_fini(struct urt__tasks *ts);
/* Allocate a task with its stack (a free record, with its stack when it
 * kept one, or a new record and a new stack). */
int urt__task_new(struct urt_loop *loop, struct urt_task **out);
/* Put a finished task's record on the free list, its stack kept for the
 * next task (or unmapped past the cache's limit). */
void urt__task_free(struct urt_task *t);
/* Prepare a new task's first frame: its first resume calls t->fn(t->arg).
 * When fn returns, the task is URT__DONE and switches to the scheduler
 * for good (urt__task_resume returns it). */
void urt__task_start(struct urt_task *t);
/* Switch from the scheduler into t; returns when a task switches back to
 * the scheduler (parks, yields or ends): t, or one that t switched to. That
 * task is returned. */
struct urt_task *urt__task_resume(struct urt_task *t);
/* Switch from the running task straight to another ready one, bypassing the
 * scheduler. */
void urt__task_switch(struct urt_task *from, struct urt_task *to);
/* Switch from the running task back to the scheduler. */
void urt__task_suspend(struct urt_task *t);
/* Name the task that hits its guard page: while a loop exists, a SIGSEGV
 * handler of urt's (where the application has none), and an alternate
 * signal stack on each thread that has a loop (its own, or one urt sets
 * up). Each loop's create installs, its destroy removes; what the
 * application set up, before or since, is left as it is. */
int urt__overflow_report_install(void);
void urt__overflow_report_remove(void);
/* Verify a task's stack canary; reports and returns false when it is gone. */
bool urt__task_stack_ok(struct urt_task *t);

/* Context switch (arch/): saves callee-saved registers on the current stack,
 * stores the stack pointer in *save, continues on the stack at load. */
void urt__ctx_switch(void **save, void *load);
/* First frame of a task: calls entry(arg) where entry/arg were placed by
 * urt__ctx_init. entry must not return. */
void *urt__ctx_init(void *stack_top, void (*entry)(void *), void *arg);

/* ---- pool: the records a job and its way back are made of ---- */

/*
 * One offloaded job. For urt_to_thread it lives on the parked task's stack;
 * for urt_job_run it is allocated, since the caller may leave before it ends.
 * A worker reads what it needs, runs fn, then pushes the job onto its
 * loop's finished list (struct urt__done): after the push it never touches
 * the job again.
 */
enum urt__job_state {
	URT__JOB_QUEUED,   /* not started; the loop may still drop it */
	URT__JOB_RUNNING,  /* a worker claimed it: it runs to its end */
	URT__JOB_DROPPED,  /* the loop dropped it: it completes with -ECANCELED */
};

struct urt__done;

struct __attribute__((aligned(128))) urt__job {
	struct urt__op op;
	void (*fn)(void *);
	void *arg;
	struct urt__job *next;      /* the pool's queue, then the finished list */
	LIST_ENTRY(urt__job) out_link; /* the loop's jobs out */
	_Atomic int state;          /* enum urt__job_state */
	struct urt__done *done;     /* where the finished job goes */
	int32_t res;                /* 0: fn ran; -ECANCELED: dropped unstarted */
	struct urt_task *waiter;    /* NULL once an owned job is abandoned */
	void (*dtor)(void *);       /* owned jobs */
	bool owned;
};

/*
 * Where pool workers put a loop's finished jobs: a lock-free stack that the
 * loop takes whole. The worker whose push finds it empty wakes the loop
 * with one IORING_OP_MSG_RING (user_data: wake); the others push and go
 * on, so that a loop busy with many completions gets one message for all.
 * The loop takes the stack only when a wake-up arrives: every wake-up
 * then finds the stack its sender made non-empty, and none is in flight
 * once the loop's last job has come back (the loop may be destroyed).
 */
struct __attribute__((aligned(128))) urt__done {
	_Atomic(struct urt__job *) head; /* newest first */
	int ring_fd;                     /* the loop's ring */
	struct urt__op wake;
};

/* ---- loop ---- */

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
	struct urt_pool *pool;
	bool own_pool;
	int pool_err;               /* why the own pool could not start */
	struct urt_pool_opts pool_opts;
	struct urt__job *handoff_head, *handoff_tail; /* jobs to hand to the pool
						       * at the end of this turn */
	unsigned handoff_n;
	LIST_HEAD(, urt__job) jobs_out; /* jobs submitted, not back yet */
	struct urt__done done;      /* finished jobs, from the pool */
	LIST_HEAD(, urt__closable) closables; /* what closes with the loop */
	struct urt__closable jobs_closable; /* offload's, once it has jobs */
	uint64_t jobs_inflight;
	uint64_t spin_ns;
	uint64_t stall_ns;          /* 0: stall detection off */
	void (*on_stall)(void *ctx, urt_task *task, const char *name, uint64_t ran_ns);
	void *stall_ctx;
	bool running;
	bool stop;                  /* urt_loop_stop asked for a return */
	bool destroying;
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

extern URT__TLS struct urt_loop *urt__cur_loop;
extern URT__TLS struct urt_task *urt__cur_task;

/* Put a task at the back of the run queue. */
void urt__ready(struct urt_task *t);
/* Park the running task in the wait (interrupt, obj) until someone calls
 * urt__wake; returns wake_res. */
int urt__park(struct urt_task *t, void (*interrupt)(struct urt_task *, int), void *obj);
/* Make a parked task ready, its wait returning res. */
void urt__wake(struct urt_task *t, int res);

/* Park t (the running task) in the wait (interrupt, obj), with a timer at
 * deadline on the heap (UINT64_MAX: none; usually t->deadline). Returns
 * the wake result: the waker's, or -ECANCELED / -ETIMEDOUT from interrupt;
 * -ENOMEM, not parked, when the timer finds no room. The caller checks
 * cancellation and the deadline first (urt__wait_check). */
int urt__park_interruptible(struct urt_task *t, void *obj, void (*interrupt)(struct urt_task *, int),
		    uint64_t deadline);
/* Before a wait: -ECANCELED once t is cancelled, -ETIMEDOUT once its
 * deadline has passed, else 0. */
int urt__wait_check(struct urt_task *t);

/* An absolute CLOCK_MONOTONIC time in ns as the kernel's timeouts take it. */
static inline void urt__timespec_of(struct __kernel_timespec *ts, uint64_t ns)
{
	ts->tv_sec = (long long)(ns / 1000000000u);
	ts->tv_nsec = (long long)(ns % 1000000000u);
}

/* Now plus ns on CLOCK_MONOTONIC, saturating: "never" stays never. */
static inline uint64_t urt__deadline_after(uint64_t ns)
{
	uint64_t now = urt_now_ns();

	return ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
}

/* ---- sched.c ---- */
/* One pass: run the tasks ready now (those made ready meanwhile wait for
 * the next turn); free detached tasks that ended. */
void urt__sched_run_ready(struct urt_loop *loop);
/* Move the tasks that yielded this turn to the back of the run queue. */
void urt__sched_splice_yielded(struct urt_loop *loop);

/* Put a new task on its loop's list of tasks, counted as live. */
void urt__task_link(struct urt_loop *loop, struct urt_task *t);
/* Take an ended (or, at destroy, any) task off the list and free it. */
void urt__task_release(struct urt_task *t);

/* ---- timer.c ---- */
/* An empty heap with nothing armed. */
void urt__timers_init(struct urt__timers *tm);
/* Free the heap (its tasks are the caller's). */
void urt__timers_fini(struct urt__timers *tm);
/* Put t on the heap at deadline (t must not be on it). 0 or -ENOMEM. */
int urt__timer_add(struct urt__timers *tm, struct urt_task *t, uint64_t deadline);
/* Take t off the heap; nothing when it is not on it. */
void urt__timer_del(struct urt__timers *tm, struct urt_task *t);
/* The task whose deadline is earliest, when it is no later than now,
 * taken off the heap; else NULL. */
struct urt_task *urt__timer_due(struct urt__timers *tm, uint64_t now);
/* Keep the one kernel timeout armed on r no later than the earliest
 * deadline (the heap must not be empty). 0, or the ring's error. */
int urt__timer_arm(struct urt__timers *tm, struct urt__ring *r);
/* Remove the armed timeout, if any (its CQE still comes). 0, or the
 * ring's error. */
int urt__timer_disarm(struct urt__timers *tm, struct urt__ring *r);

/* ---- wait.c ---- */
/* End t's wait through its interrupt, for a cancel (res -ECANCELED) or
 * the task's deadline (-ETIMEDOUT); its timer goes. False for a wait only
 * its completion ends (urt_to_thread). */
bool urt__wait_interrupt(struct urt_task *t, int res);
/* End the waits whose deadline has passed (the clock read now). */
void urt__deadlines_expire(struct urt_loop *loop);

/* ---- offload.c: the loop's side of the pool ---- */
/* Hand the jobs queued during this turn to the pool, in one batch. */
void urt__offload_flush(struct urt_loop *loop);
/* Before the loop sleeps with jobs in flight: spin a bounded while for a
 * completion. True when something arrived. */
bool urt__offload_spin(struct urt_loop *loop);

/* Ask the kernel to cancel the I/O operation t is parked in (op.c): t
 * wakes when the operation's CQE comes. */
void urt__io_cancel(struct urt_task *t);

/* ---- pool ---- */

struct urt_pool;
/* 0 for options urt_pool_create accepts, else -EINVAL. */
int urt__pool_opts_check(const struct urt_pool_opts *o);
int urt__pool_start(struct urt_pool **out, const struct urt_pool_opts *opts);
void urt__pool_attach(struct urt_pool *pool);
void urt__pool_detach(struct urt_pool *pool);
/* Hand a list of jobs to the workers (one lock, one wake-up at most per
 * sleeping worker). */
void urt__pool_push(struct urt_pool *pool, struct urt__job *head, struct urt__job *tail,
		    unsigned n);
/* Take back the jobs bound for done that no worker has started: returned
 * as a list linked by next, for the caller to complete. */
struct urt__job *urt__pool_drop(struct urt_pool *pool, const struct urt__done *done);
/* The finished jobs on done, oldest first, linked by next (the loop's
 * side, when a wake-up arrives). */
struct urt__job *urt__done_take(struct urt__done *done);
/* CPUs the process may run on: spinning for another thread only helps
 * when that thread can run meanwhile. */
int urt__cpus_allowed(void);

#endif
