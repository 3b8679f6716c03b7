/*
 * urt: an io_uring completion runtime.
 *
 * A loop runs stackful tasks on one thread. A task that waits (sleep, read,
 * join) submits at most one io_uring SQE and is parked; the loop submits the
 * SQEs of every task that parked during a turn with one io_uring_enter and
 * resumes each task when its own CQE arrives.
 *
 * Conventions, for every function below:
 *  - failure is a negative errno value; errno is never set, nothing aborts;
 *  - a wait (sleep, read, join of an unfinished task, yield) called outside a
 *    task returns -EPERM at once;
 *  - a loop belongs to the thread that created it: it is run, and its tasks are
 *    spawned, joined and cancelled, from that thread only (-EPERM otherwise).
 *
 * Cancellation (urt_cancel):
 *  - it is sticky: once a task is cancelled, its current wait and every later
 *    one return -ECANCELED, so the task unwinds;
 *  - a task parked in a sleep or a join is woken at once;
 *  - a task parked in I/O is woken only when that operation's own CQE has
 *    arrived (the loop asks the kernel with IORING_OP_ASYNC_CANCEL). The kernel
 *    may still write into the caller's buffer until then, so a cancelled read
 *    can never write into memory the task has moved on from. If the operation
 *    had already completed, its result is returned (no data is lost) and the
 *    cancellation is seen at the next wait;
 *  - a task cancelled before it first runs still runs, and sees -ECANCELED at
 *    its first wait.
 */
#ifndef URT_H
#define URT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define URT_VERSION_MAJOR 0
#define URT_VERSION_MINOR 1
#define URT_VERSION_PATCH 0

#if defined(__GNUC__)
#define URT_API __attribute__((visibility("default")))
#else
#define URT_API
#endif

typedef struct urt_loop urt_loop;
typedef struct urt_task urt_task;

/* A task's body. Its return value reaches urt_join's *result. */
typedef int (*urt_task_fn)(void *arg);

/* Loop options. Zero in any field means its default. */
struct urt_loop_opts {
	/* Submission queue entries (default 256; rounded up to a power of two
	 * by the kernel). A full SQ is flushed and refilled, never an error. */
	unsigned ring_entries;
	/* Completion queue entries (default 4 x ring_entries). */
	unsigned cq_entries;
	/* Usable stack bytes per task (default 64 KiB, minimum 16 KiB, rounded
	 * up to whole pages). Untouched stack pages cost no memory. */
	size_t stack_size;
	/* Finished tasks' stacks kept for reuse (default: all of them, until the
	 * loop is destroyed). */
	size_t stack_cache;
	/* URT_LOOP_* flags. */
	unsigned flags;
};

/* Never put a PROT_NONE guard page under task stacks (by default stacks get
 * one while the process's VMA budget allows, see the README). The canary at
 * the bottom of each stack is always checked. */
#define URT_LOOP_NO_GUARD (1u << 0)

/*
 * Create a loop. *out receives it; opts NULL means all defaults.
 * Returns 0, -EINVAL (NULL out, bad option), -ENOMEM, or the kernel's error
 * from io_uring_setup (-EPERM or -ENOSYS where io_uring is disabled or
 * filtered). The calling thread owns the loop. Callable outside a task.
 */
URT_API int urt_loop_create(urt_loop **out, const struct urt_loop_opts *opts);

/*
 * Run the loop until no task is left. Returns 0; -EINVAL (NULL loop);
 * -EBUSY when called from inside a task or while the loop already runs;
 * -EPERM from a thread that does not own the loop; -EDEADLK when tasks are
 * left that nothing can ever wake (they join each other); -errno when the
 * ring fails. Callable outside a task only.
 */
URT_API int urt_loop_run(urt_loop *loop);

/*
 * Destroy a loop: every task left is cancelled and run until it returns,
 * every in-flight CQE is waited for, then stacks, unjoined task handles and
 * the ring are freed. A task that ignores -ECANCELED and keeps waiting keeps
 * destroy waiting. Call it outside the loop's tasks, from the owning thread;
 * NULL is ignored.
 */
URT_API void urt_loop_destroy(urt_loop *loop);

/*
 * Create a loop with default options, spawn fn(arg), run, destroy. *result
 * (when result is not NULL) receives fn's return value. Returns 0 or -errno
 * (from urt_loop_create, urt_spawn or urt_loop_run). Outside a task only.
 */
URT_API int urt_run(urt_task_fn fn, void *arg, int *result);

/*
 * Spawn fn(arg) as a new task; it first runs at the loop's next turn, after
 * the tasks already ready (FIFO). loop NULL means the current loop (the one
 * running the caller). out NULL makes the task detached: it is freed when it
 * returns. Otherwise *out is a handle that must be joined once with urt_join
 * (or is freed by urt_loop_destroy). arg is the caller's and is only passed.
 * Returns 0, -EINVAL (NULL fn, or NULL loop outside a loop), -ESHUTDOWN (the
 * loop is being destroyed), -EPERM (not the owning thread), -ENOMEM.
 * Callable inside a task and outside one (before or between runs).
 */
URT_API int urt_spawn(urt_loop *loop, urt_task **out, urt_task_fn fn, void *arg);

/*
 * Wait for a task to return and free its handle; *result (when not NULL)
 * receives its return value. A finished task joins from anywhere on the
 * owning thread; an unfinished one only from another task of the same loop.
 * Returns 0; -EINVAL (NULL, detached, already joined or being joined);
 * -EPERM (unfinished task, caller outside a task); -EDEADLK (joining
 * oneself); -EXDEV (a task of another loop); -ECANCELED (the caller was
 * cancelled: the task is not joined and its handle stays valid).
 */
URT_API int urt_join(urt_task *task, int *result);

/*
 * Cancel a task (see "Cancellation" above). Returns 0, -EINVAL (NULL),
 * -ESRCH (the task has already returned), -EPERM (not the owning thread).
 * Callable inside a task (also on itself) and outside one.
 */
URT_API int urt_cancel(urt_task *task);

/*
 * Let every other ready task run, then continue. Returns 0, -ECANCELED (the
 * task is cancelled), -EPERM (outside a task).
 */
URT_API int urt_yield(void);

/* The loop running the caller, or NULL outside a loop. */
URT_API urt_loop *urt_current_loop(void);

/* The calling task, or NULL outside a task. */
URT_API urt_task *urt_current_task(void);

/* CLOCK_MONOTONIC in nanoseconds. Callable anywhere. */
URT_API uint64_t urt_now_ns(void);

/*
 * Park the calling task for at least ns nanoseconds (never less). All the
 * loop's sleepers share one kernel timeout armed for the earliest deadline.
 * Returns 0, -ECANCELED, -EPERM (outside a task), -ENOMEM.
 */
URT_API int urt_sleep_ns(uint64_t ns);

/*
 * Read up to len bytes from fd into buf with IORING_OP_READ, parking the
 * task until the read completes. offset >= 0 reads at that offset; offset < 0
 * reads at (and advances) the file position. Works on files, pipes, sockets
 * and terminals. Returns the bytes read, 0 at end of file, or -errno: the
 * kernel's (-EBADF, -EISDIR, -EFAULT, ...), -EINVAL (len above SSIZE_MAX),
 * -ECANCELED, -EPERM (outside a task). len is capped at 0x7ffff000, as by
 * read(2). buf stays the caller's; the kernel writes into it only until the
 * task resumes.
 */
URT_API ssize_t urt_read(int fd, void *buf, size_t len, int64_t offset);

#ifdef __cplusplus
}
#endif
#endif
