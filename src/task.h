/* The task layer (task.c, arch/): task records, stacks and their
 * overflow checks, the context switch. A task's loop is opaque here but
 * for its first member (struct urt__tasks). */
#ifndef URT_TASK_H
#define URT_TASK_H

#include "base.h"

struct urt_loop;

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
	uint64_t deadline;        /* urt_timeout_enter; UINT64_MAX: none */
	int wake_res;             /* what the current wait returns */
	int result;               /* fn's return value */
	/* Odd: a timer on the heap. Kept across the record's reuse, and
	 * readable while the record is free (the heap's stale entries may
	 * name it: see timer.h). */
	uint64_t timer_gen;
	uint8_t state;
	bool detached;
	bool cancelled;
	bool guarded;             /* a guard page under the stack */
	bool guard_vma;           /* ... made with mprotect (a VMA of its own) */
	bool daemon;              /* not counted live: the loop's run ends without it */
	bool released;            /* free, its stack's pages given back */
	bool fresh;               /* spawned, not run yet */
	uint64_t woken_ns;        /* when woken, while schedule delay is measured */
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

_Static_assert(offsetof(struct urt_task, fresh) < 64,
	       "urt__task_prefetch reads fresh beside sp, on the record's first line");

/* Finished tasks' records wait for reuse on a free list, most with their
 * stacks still mapped; n counts those stacks, limit caps them. Of those,
 * resident have not had their pages given back (urt__tasks_trim). */
struct urt__stack_cache {
	size_t n, limit;
	size_t resident;
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
	void *chunk;                /* stacks not handed out yet */
	struct urt_task *trim_from; /* a free record: where urt__tasks_trim
				     * goes on (NULL: from the head) */
	unsigned chunk_left;
	size_t stack_size;          /* usable bytes per stack */
	bool guard;                 /* a guard page below each stack, within
				     * the budget */
	bool chunk_guarded;         /* the chunk's stacks have their markers */
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
/* The scheduler runs on the calling thread's stack from now on (each run
 * of the loop): the sanitizers learn where tasks switch back to. */
void urt__tasks_begin(struct urt__tasks *ts);
/* Unmap every record and stack; every task must have been freed. */
void urt__tasks_fini(struct urt__tasks *ts);
/* Give the pages of the cached stacks past the keep most recently cached
 * back to the kernel (MADV_DONTNEED): the mappings stay, and a reused one
 * faults in zeroed pages. One madvise per stack, so a call gives back at
 * most max, in the order of the free list: restart begins at its head,
 * else where the call before stopped. True when more could go back (call
 * again); nothing when no more than keep are resident. */
bool urt__tasks_trim(struct urt__tasks *ts, size_t keep, size_t max, bool restart);
/* How many cached stacks have their pages (cheap: before a trim). */
static inline size_t urt__tasks_resident(const struct urt__tasks *ts)
{
	return ts->stacks.resident;
}
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
/* t runs soon: start fetching the top of its stack, where its saved
 * context is and the frames it returns through (four lines). A loop with
 * many tasks finds each stack out of the caches, and the switch to it
 * would wait for every line in turn. A task that has not run yet has
 * nothing to return through: what it will touch are the lines below, where
 * its first calls write their frames (three lines; the stores would
 * otherwise each wait for their line). Not for a parked task: the lines
 * below its sp are dead, and fetching them too cost W1 at 100,000 tasks
 * about 40% of what it gained. Always inline: gcc 12 at -O2 (the default
 * build) did not inline it, then deleted the calls, a function whose only
 * effect is a prefetch having none it can see; tests/prefetch_kept.sh
 * checks the compiled scheduler. */
static inline __attribute__((always_inline)) void urt__task_prefetch(const struct urt_task *t)
{
	const char *sp = t->sp;

	__builtin_prefetch(sp);
	__builtin_prefetch(sp + 64);
	__builtin_prefetch(sp + 128);
	__builtin_prefetch(sp + 192);
	if (t->fresh) {
		__builtin_prefetch(sp - 64);
		__builtin_prefetch(sp - 128);
		__builtin_prefetch(sp - 192);
	}
}
/* Switch from the running task straight to another ready one, bypassing the
 * scheduler. */
void urt__task_switch(struct urt_task *from, struct urt_task *to);
/* Switch from the running task back to the scheduler. */
void urt__task_suspend(struct urt_task *t);
extern URT__TLS struct urt_task *urt__cur_task;

/* Name the task that hits its guard page: while a loop exists, a SIGSEGV
 * handler of urt's (where the application has none), and an alternate
 * signal stack on each thread that has a loop (its own, or one urt sets
 * up). Each loop's create installs, its destroy removes; what the
 * application set up, before or since, is left as it is. */
int urt__overflow_report_install(void);
void urt__overflow_report_remove(void);
/* Whether a task's stack canary holds (true for a stack with a guard page,
 * whose canary is not checked). */
bool urt__task_stack_ok(struct urt_task *t);

/* Context switch (arch/): saves callee-saved registers on the current stack,
 * stores the stack pointer in *save, continues on the stack at load. */
void urt__ctx_switch(void **save, void *load);
/* First frame of a task: calls entry(arg) where entry/arg were placed by
 * urt__ctx_init. entry must not return. */
void *urt__ctx_init(void *stack_top, void (*entry)(void *), void *arg);

#endif
