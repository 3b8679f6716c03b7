/* Internal declarations shared by the layers: ring, task, loop, io. */
#ifndef URT_INTERNAL_H
#define URT_INTERNAL_H

#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

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

/* ---- ring: io_uring setup, SQE acquisition, submit, reap, dispatch ---- */

/*
 * One in-flight SQE. Its address is the SQE's user_data; the CQE is handed to
 * done(). The record lives wherever its owner keeps it (a parked task's stack,
 * the loop), never allocated per operation.
 */
struct urt__op {
	void (*done)(struct urt__op *op, int32_t res, uint32_t cqe_flags);
};

/* user_data of SQEs whose CQE nobody waits for (ASYNC_CANCEL, timeout update). */
#define URT__UD_IGNORE ((uint64_t)0)

struct urt__ring {
	struct io_uring ring;
	unsigned setup_flags; /* the flags the kernel accepted */
	unsigned features;
	uint64_t inflight;    /* SQEs prepared whose CQE has not been reaped */
	uint64_t sqes;        /* SQEs prepared, ever */
	uint64_t cqes;        /* CQEs reaped, ever */
};

int urt__ring_init(struct urt__ring *r, unsigned entries, unsigned cq_entries);
void urt__ring_fini(struct urt__ring *r);
/* A free SQE, flushing the SQ to the kernel when it is full. user_data is set
 * to op (NULL: URT__UD_IGNORE). Never NULL. */
struct io_uring_sqe *urt__ring_sqe(struct urt__ring *r, struct urt__op *op);
/* Submit what is queued; wait for at least one CQE when wait is set. Then
 * dispatch every CQE available. Returns the CQEs dispatched, or -errno. */
int urt__ring_turn(struct urt__ring *r, bool wait);

/* ---- task: stacks, context switch, run queue ---- */

enum urt__state {
	URT__READY,   /* in the run queue */
	URT__RUNNING,
	URT__PARKED,  /* waiting for a wake-up */
	URT__DONE,    /* returned; handle waits for its join */
};

enum urt__wait {
	URT__WAIT_NONE,
	URT__WAIT_SLEEP,
	URT__WAIT_IO,
	URT__WAIT_JOIN,
};

struct urt_task {
	void *sp;                 /* saved stack pointer while not running */
	struct urt_loop *loop;
	urt_task_fn fn;
	void *arg;
	struct urt_task *next;    /* run queue */
	struct urt_task *all_prev, *all_next; /* the loop's list of tasks */
	void *map;                /* the stack mapping (guard page included) */
	size_t map_len;
	uint64_t *canary;         /* the zero window at the bottom of the stack */
	size_t heap_idx;          /* sleeping: index in the loop's timer heap */
	struct urt_task *joiner;  /* the task parked joining this one */
	struct urt_task *joining; /* parked in join: the task it waits for */
	struct urt__iop *iop;     /* parked in I/O: the operation */
	int result;               /* fn's return value */
	int wake_res;             /* what the current wait returns */
	uint8_t state;
	uint8_t wait;
	bool detached;
	bool cancelled;
	bool guarded;
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

/* An I/O operation awaited by a parked task. */
struct urt__iop {
	struct urt__op op;
	struct urt_task *task;
	int32_t res;
	bool done;
	bool cancel_sent;
};

struct urt__stack_cache {
	void **free;
	size_t n, cap, limit;
};

/* Allocate a task with its stack (from the cache when one is free). */
int urt__task_new(struct urt_loop *loop, struct urt_task **out);
/* Return a finished task's stack to the cache (or unmap it). */
void urt__task_free(struct urt_task *t);
void urt__stack_cache_fini(struct urt_loop *loop);
/* Prepare a new task's first frame: its first resume calls t->fn(t->arg). */
void urt__task_start(struct urt_task *t);
/* Switch from the scheduler into t; returns when t parks, yields or ends. */
void urt__task_resume(struct urt_task *t);
/* Switch from the running task back to the scheduler. */
void urt__task_suspend(struct urt_task *t);
/* Verify a task's stack canary; reports and returns false when it is gone. */
bool urt__task_stack_ok(struct urt_task *t);

/* Context switch (arch/): saves callee-saved registers on the current stack,
 * stores the stack pointer in *save, continues on the stack at load. */
void urt__ctx_switch(void **save, void *load);
/* First frame of a task: calls entry(arg) where entry/arg were placed by
 * urt__ctx_init. entry must not return. */
void *urt__ctx_init(void *stack_top, void (*entry)(void *), void *arg);

/* ---- loop ---- */

struct urt_loop {
	struct urt__ring ring;
	pthread_t owner;
	void *sched_sp;             /* the scheduler's saved stack pointer */
	struct urt_task *rq_head, *rq_tail;
	struct urt_task *all;       /* every task not yet freed */
	size_t live;                /* tasks spawned and not yet returned */
	/* Sleepers: a binary min-heap of tasks by deadline, with one absolute
	 * IORING_OP_TIMEOUT armed for the earliest. */
	struct urt__timer *heap;
	size_t heap_n, heap_cap;
	struct urt__op timer_op;
	bool timer_armed;
	uint64_t timer_at;
	struct __kernel_timespec timer_ts;
	struct __kernel_timespec update_ts;
	struct urt__stack_cache stacks;
	size_t stack_size;          /* usable bytes per stack */
	unsigned flags;
	bool running;
	bool destroying;
#if URT__ASAN
	const void *asan_sched_bottom;
	size_t asan_sched_size;
	void *asan_sched_fake;
#endif
#if URT__TSAN
	void *tsan_sched;
#endif
};

extern URT__TLS struct urt_loop *urt__cur_loop;
extern URT__TLS struct urt_task *urt__cur_task;

/* Put a task at the back of the run queue. */
void urt__ready(struct urt_task *t);
/* Park the running task until someone calls urt__wake; returns wake_res. */
int urt__park(struct urt_task *t, enum urt__wait why);
/* Make a parked task ready, its wait returning res. */
void urt__wake(struct urt_task *t, int res);
/* Called by the task layer when a task's function has returned. */
void urt__task_finished(struct urt_task *t);

/* Timers (loop.c). */
int urt__timer_add(struct urt_loop *loop, struct urt_task *t, uint64_t deadline);
void urt__timer_del(struct urt_loop *loop, struct urt_task *t);

/* Cancel the I/O a task is parked in (io.c). */
void urt__iop_cancel(struct urt_task *t);

#endif
