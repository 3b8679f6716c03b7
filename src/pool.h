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
	void *owner;                /* the loop's side that handed it out */
	bool owned;
};
_Static_assert(sizeof(struct urt__job) == 128, "a job is two cache lines");

/*
 * Where pool workers put a loop's finished jobs, which the loop looks at
 * each turn: an array of slots, each a job's address (tagged with 1 when
 * the job was dropped unstarted), so that the loop learns every finished
 * job from lines of eight slots rather than by following a chain of jobs
 * (a cache miss each, one after the other), and never reads the line of a
 * job that a worker wrote; and, for when the array is full, a lock-free
 * stack of jobs linked by next.
 *
 * A worker claims the next slot (tail, by CAS, while fewer than
 * URT__DONE_SLOTS are claimed and not yet emptied), stores the job in it,
 * then looks at head. A loop about to sleep in the kernel with jobs out
 * marks head (URT__DONE_SLEEPING, from empty), then looks at every slot
 * claimed and not emptied. Both store before they look (sequentially
 * consistent), so one of them sees the other: the loop a job (it does not
 * sleep) or the worker the mark, which it takes (back to empty) and wakes
 * the loop with one IORING_OP_MSG_RING (user_data: wake). A push onto the
 * stack that replaces the mark takes it too. Every other finished job is
 * seen by the loop's next look, with no message and no system call. Each
 * mark is settled once: by the message its taker sends, or by the loop
 * taking it back itself (urt__done_unmark), so the loop knows how many
 * messages are still on their way.
 *
 * A worker reads head after its job is in a slot, when the loop may have
 * taken the job already: it says which loop's list it is in (finishing)
 * until it is done with it, and a loop that goes away while its pool runs
 * on waits until no worker is (urt__pool_quiesce).
 */
#define URT__DONE_SLEEPING ((struct urt__job *)1)
#define URT__DONE_SLOTS 256u

struct __attribute__((aligned(128))) urt__done {
	/* The workers' line. */
	_Atomic(struct urt__job *) head; /* the stack, newest first, or the mark */
	_Atomic uint64_t tail;           /* slots claimed, ever */
	struct urt__ring *ring;          /* the loop's ring */
	struct urt__op wake;
	_Atomic bool dropping;      /* set under the pool's lock: see urt__pool_drop */
	/* The loop's: every slot before next is empty; published as
	 * emptied for the workers. */
	_Atomic uint64_t emptied __attribute__((aligned(128)));
	uint64_t next;
	_Atomic uintptr_t slot[URT__DONE_SLOTS] __attribute__((aligned(128)));
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
 * worker completes with -ECANCELED, without running it, any job bound for
 * done that it has not started, those it took with others and holds among
 * them (the loop is going away). */
struct urt__job *urt__pool_drop(struct urt_pool *pool, struct urt__done *done);
/* Jobs waiting to start now, every loop's: queued, or held by a worker
 * that took them with others (relaxed reads). */
unsigned urt__pool_queued(struct urt_pool *pool);
/* Hand every finished job on done to fn (the loop's side: each turn, and
 * when a wake-up arrives), with res 0 (it ran) or -ECANCELED (dropped
 * unstarted): those in slots in the order their workers claimed them,
 * then the stack's, oldest first. fn may free the job. A mark stays where
 * it is. Whether there was one. */
bool urt__done_take(struct urt__done *done,
		    void (*fn)(void *ctx, struct urt__job *job, int32_t res), void *ctx);
/* A slot's value once the loop has handed its job out, while a slot before
 * it is still claimed and not yet filled. */
#define URT__DONE_TAKEN ((uintptr_t)2)
/* Whether a slot claimed and not yet emptied holds a job not yet handed
 * out, looking with order (relaxed for spinning; sequentially consistent
 * after a mark, against the workers' fill and look). */
static inline bool urt__done_slots_ready(struct urt__done *done, memory_order order)
{
	uint64_t end = atomic_load_explicit(&done->tail, order);

	for (uint64_t i = done->next; i != end; i++) {
		uintptr_t v = atomic_load_explicit(&done->slot[i % URT__DONE_SLOTS], order);

		if (v && v != URT__DONE_TAKEN)
			return true;
	}
	return false;
}
/* Whether a finished job waits on done (relaxed looks, for spinning). */
static inline bool urt__done_ready(struct urt__done *done)
{
	struct urt__job *h = atomic_load_explicit(&done->head, memory_order_relaxed);

	return (h && h != URT__DONE_SLEEPING) ||
	       urt__done_slots_ready(done, memory_order_relaxed);
}
/* The loop is about to sleep: mark done, when its stack is empty. true:
 * marked, and one message will settle it unless urt__done_unmark takes it
 * back; then *ready says whether a job was found in a slot after the mark
 * (the loop must not sleep, but the mark stays until it takes it back).
 * false: finished jobs wait on the stack (take them instead of sleeping). */
bool urt__done_mark(struct urt__done *done, bool *ready);
/* The loop is awake: take its mark back. true: taken back (no message will
 * come for it); false: a worker took it, and that worker's message comes
 * (or came). */
bool urt__done_unmark(struct urt__done *done);
/* Wait until no worker of pool is still looking at done (after its last
 * job has been taken): before done's memory goes, when the pool runs on. */
void urt__pool_quiesce(struct urt_pool *pool, struct urt__done *done);
/* Whether the pool's queue lock spins before it sleeps (glibc's adaptive
 * mutex, as the lock itself says): for the tests. */
bool urt__pool_lock_spins(struct urt_pool *pool);
/* CPUs the process may run on: spinning for another thread only helps
 * when that thread can run meanwhile. */
int urt__cpus_allowed(void);

#endif
