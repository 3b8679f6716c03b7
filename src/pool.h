/* The pool (pool.c): worker threads, the jobs they run and the lists that
 * bring finished jobs back to their loop. Knows nothing of tasks. */
#ifndef URT_POOL_H
#define URT_POOL_H

#include <pthread.h>
#include <stdatomic.h>

#include "ring.h"

/*
 * One offloaded job. For urt_to_thread it lives on the parked task's stack;
 * for urt_job_run it is allocated, since the caller may leave before it ends.
 * A worker reads what it needs, runs fn, then pushes the job onto its
 * loop's finished list (struct urt__done): after the push it never touches
 * the job again. Two cache lines: what a worker reads and writes on the
 * first, what only the loop touches on the second, so that a job costs one
 * line's trip to the worker and back, not two.
 */
struct urt__done;

struct __attribute__((aligned(128))) urt__job {
	/* The worker's line. */
	void (*fn)(void *);
	void *arg;
	struct urt__job *next;      /* the pool's queue, then the finished list */
	struct urt__done *done;     /* where the finished job goes */
	uint64_t t_start, t_end;    /* urt_now_ns(), when timed */
	int32_t res;                /* 0: fn ran; -ECANCELED: dropped unstarted */
	bool timed;                 /* the worker notes t_start and t_end */
	/* The loop's line. */
	struct urt__op op __attribute__((aligned(64)));
	struct urt_task *waiter;    /* NULL once an owned job is abandoned */
	void (*dtor)(void *);       /* owned jobs */
	uint64_t t_queued;          /* urt_now_ns(), when timed */
	bool owned;
};
_Static_assert(sizeof(struct urt__job) == 128, "a job is two cache lines");

/*
 * Where pool workers put a loop's finished jobs: a lock-free stack that the
 * loop takes whole, looking at it each turn. A loop about to sleep in the
 * kernel with jobs out marks the stack (head URT__DONE_SLEEPING, from
 * empty): the worker whose push replaces that mark wakes the loop with one
 * IORING_OP_MSG_RING (user_data: wake); every other push is seen by the
 * loop's next look, with no message and no system call. Marking and
 * pushing are operations on the one word, so a push either finds the mark
 * (and wakes the loop) or comes before it (and the mark fails): no wake-up
 * is lost, and a worker touches nothing of the loop's after its push (the
 * loop may take the job and go away). Each mark is settled once: by the
 * message its taker sends, or by the loop taking it back itself
 * (urt__done_unmark), so the loop knows how many messages are still on
 * their way.
 */
#define URT__DONE_SLEEPING ((struct urt__job *)1)

struct __attribute__((aligned(128))) urt__done {
	_Atomic(struct urt__job *) head; /* newest first, or the mark */
	struct urt__ring *ring;          /* the loop's ring */
	struct urt__op wake;
	bool dropping;              /* under the pool's lock: see urt__pool_drop */
};

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
/* Take back the jobs bound for done that no worker has taken: returned as
 * a list linked by next, for the caller to complete. From then on, a
 * worker completes any job bound for done it takes with -ECANCELED,
 * without running it (the loop is going away). */
struct urt__job *urt__pool_drop(struct urt_pool *pool, struct urt__done *done);
/* Jobs in the pool's queue now, every loop's (a relaxed read). */
unsigned urt__pool_queued(struct urt_pool *pool);
/* The finished jobs on done, oldest first, linked by next; NULL when there
 * are none (the loop's side: each turn, and when a wake-up arrives). A mark
 * stays where it is. */
struct urt__job *urt__done_take(struct urt__done *done);
/* Whether a finished job waits on done (a relaxed look, for spinning). */
static inline bool urt__done_ready(struct urt__done *done)
{
	struct urt__job *h = atomic_load_explicit(&done->head, memory_order_relaxed);

	return h && h != URT__DONE_SLEEPING;
}
/* The loop is about to sleep: mark done, when it is empty. true: marked,
 * and one message will settle it unless urt__done_unmark takes it back;
 * false: finished jobs wait (take them instead of sleeping). */
bool urt__done_mark(struct urt__done *done);
/* The loop is awake: take its mark back. true: taken back (no message will
 * come for it); false: a worker's push took it, and that worker's message
 * comes (or came). */
bool urt__done_unmark(struct urt__done *done);
/* CPUs the process may run on: spinning for another thread only helps
 * when that thread can run meanwhile. */
int urt__cpus_allowed(void);

#endif
