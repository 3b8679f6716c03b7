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
 *
 * Deadlines (urt_timeout_enter): a task may carry a deadline, and then every
 * wait it makes carries it too. A sleep, join, channel, acceptor or group
 * wait is woken with -ETIMEDOUT when the deadline passes; an I/O operation
 * is submitted with an IORING_OP_LINK_TIMEOUT linked to it, so the kernel
 * cancels it at the deadline and the call returns -ETIMEDOUT (as for a
 * cancel, only once the operation's own CQE has arrived; an operation that
 * completed first returns its result). Once the deadline has passed, every
 * wait returns -ETIMEDOUT at once, until the scope is left. Cancellation
 * comes first: a cancelled task sees -ECANCELED, not -ETIMEDOUT.
 */
#ifndef URT_H
#define URT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

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

/* The running library's version, "MAJOR.MINOR.PATCH" (a static string). Callable anywhere. */
URT_API const char *urt_version(void);

typedef struct urt_loop urt_loop;
typedef struct urt_task urt_task;
typedef struct urt_pool urt_pool;

/* A task's body. Its return value reaches urt_join's *result. */
typedef int (*urt_task_fn)(void *arg);

/*
 * Where a function and its argument cross a boundary (a new task, another
 * loop, a pool thread), the calls are macros that check at compile time
 * that fn takes what arg points to: fn is int fn(T *) (a task) or void
 * fn(T *) (a job) and arg a T *, so that a mismatch is a compile error
 * rather than a crash. A task function may also take void * (the untyped
 * form), with any pointer. In C++ the macros are absent: call the
 * functions (urt_spawn, urt_group_spawn) or the urt__ ones.
 */
/* True when fn (a function or a function pointer) is void fn(typeof(a)). */
#define urt__fn_takes_(fn, a)                                                     \
	(__builtin_types_compatible_p(__typeof__(fn), void(__typeof__(a))) ||     \
	 __builtin_types_compatible_p(__typeof__(fn), void (*)(__typeof__(a))))

/* True when fn (a function or a function pointer) is int fn(typeof(a)), or
 * the untyped int fn(void *) with a pointer a. */
#define urt__task_fn_takes_(fn, a)                                                \
	(__builtin_types_compatible_p(__typeof__(fn), int(__typeof__(a))) ||      \
	 __builtin_types_compatible_p(__typeof__(fn), int (*)(__typeof__(a))) ||  \
	 ((__builtin_types_compatible_p(__typeof__(fn), int(void *)) ||           \
	   __builtin_types_compatible_p(__typeof__(fn), int (*)(void *))) &&      \
	  __builtin_classify_type(a) == 5))

/* Loop options. Zero in any field means its default. */
struct urt_loop_opts {
	/* Submission queue entries (default 256; at least 2, for an operation
	 * and its linked timeout; rounded up to a power of two by the
	 * kernel). A full SQ is flushed and refilled, never an error. */
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
	/* A pool shared with other loops (see urt_pool_create). NULL: the loop
	 * starts a pool of its own at its first offload, shaped by pool_opts. */
	urt_pool *pool;
	/* Options of the loop's own pool; NULL: defaults. */
	const struct urt_pool_opts *pool_opts;
	/* How long the loop spins for an offloaded job's completion before it
	 * sleeps in the kernel, while jobs are in flight (default 20 us, see the
	 * README; never when the process may run on one CPU only). */
	uint64_t spin_ns;
	/* Stall detection: when a task runs longer than stall_ns without
	 * waiting or yielding, the loop calls on_stall once it switches back
	 * (0: off, the default; on, it costs one clock read per switch). */
	uint64_t stall_ns;
	/* The stall reporter (NULL: one line on stderr, see urt_stall_print).
	 * Called on the loop's thread, outside any task; name is the task's
	 * (urt_task_set_name) or "task@<address>", valid during the call.
	 * With URT_LOOP_STALL_BACKTRACE, urt_stall_backtrace gives the task's
	 * stack while it stalled. */
	void (*on_stall)(void *ctx, urt_task *task, const char *name, uint64_t ran_ns);
	void *stall_ctx;
	/* Idle poll: before sleeping in the kernel, spin up to idle_poll_ns
	 * for a completion, as Seastar does (0: off, the default). A wake-up
	 * from a sleeping CPU costs tens of us on many machines (see the
	 * README); the spin costs that CPU's time instead, counted busy in
	 * urt_loop_metrics. io_uring only: on epoll, ignored. */
	uint64_t idle_poll_ns;
	/* Finished tasks' stacks whose memory stays once a burst is over
	 * (default 256): once the loop has stayed quiet for 200 ms (each
	 * time it waited in the kernel, no more live tasks than that), the
	 * pages of the other cached stacks go back to the kernel
	 * (MADV_DONTNEED, a system call each, 256 stacks per wait 10 ms
	 * apart); their mappings stay for reuse, which faults zeroed pages
	 * in. A wait with more live tasks
	 * starts the 200 ms again, so bursts that come back sooner keep
	 * their pages. SIZE_MAX: never. */
	size_t stack_resident;
};

/* The default stall reporter: one line on stderr, such as
 * "urt: task "crunch" ran 12.3 ms without yielding (stall threshold 10.0 ms)",
 * and with URT_LOOP_STALL_BACKTRACE the task's stack while it stalled, a
 * frame per line (backtrace_symbols_fd(3): names of exported functions;
 * addr2line or gdb name the rest). ctx is unused; callable from a reporter
 * of one's own. */
URT_API void urt_stall_print(void *ctx, urt_task *task, const char *name, uint64_t ran_ns);

/* The most frames urt_stall_backtrace gives. */
#define URT_STALL_FRAMES 32

/*
 * Inside a stall reporter (on_stall): the stalling task's stack as it was
 * while it ran past the threshold, innermost first (return addresses, as
 * backtrace(3) gives them), at most max frames into frames. Returns their
 * count; 0 when the loop has no URT_LOOP_STALL_BACKTRACE, outside a report,
 * or when the task ended its run before the watchdog's signal reached it;
 * -EINVAL (NULL loop, NULL frames with max > 0, max < 0), -EPERM (not the
 * loop's thread). Callable outside a task.
 */
URT_API int urt_stall_backtrace(urt_loop *loop, void **frames, int max);

/* Never put a guard page under task stacks (by default every stack gets
 * one where the kernel has guard markers, 6.13+, and otherwise while the
 * process's VMA budget allows, see the README). Stacks without a guard page
 * have the canary at their bottom checked at every switch. */
#define URT_LOOP_NO_GUARD (1u << 0)
/* Never spin before sleeping (spin_ns ignored). */
#define URT_LOOP_NO_SPIN (1u << 1)
/*
 * The backend: by default io_uring where io_uring_setup works, else epoll
 * (io_uring_setup answered -EPERM or -ENOSYS: a seccomp filter such as
 * Docker's default profile, kernel.io_uring_disabled; or -EOPNOTSUPP: a
 * kernel before 5.18). The environment variable URT_BACKEND=io_uring or
 * URT_BACKEND=epoll chooses for loops whose flags do not; these flags
 * choose for one loop (not both). See the README's "Backends" for what
 * differs on epoll.
 */
#define URT_LOOP_IO_URING (1u << 2)
#define URT_LOOP_EPOLL (1u << 3)
/* Measure what costs to measure (see struct urt_loop_metrics): busy and
 * idle time, two clock reads per turn that waits in the kernel; each job's
 * queue wait and run time, three clock reads per job; and a snapshot other
 * threads may read, published after each turn that waited and every 64
 * turns (a clock read and twenty stores). */
#define URT_LOOP_METRICS (1u << 4)
/* On the epoll backend, reads and writes of regular files and block
 * devices always run on the pool, never tried on the loop's thread first
 * (by default what the page cache answers at once is copied on the loop,
 * as io_uring does in the kernel): for a loop that must not spend its time
 * copying large reads. A pipe or socket read with this flag waits for
 * readiness before its call. On io_uring, the kernel decides: no effect. */
#define URT_LOOP_FILES_ON_POOL (1u << 5)
/* With stall_ns: record a stalling task's stack while it runs. A watchdog
 * thread looks at the loop every stall_ns / 2 (at least 1 ms); once one run
 * of a task passes stall_ns, it sends the loop's thread one SIGURG, whose
 * handler (on the thread's alternate stack) calls backtrace(3); the report
 * at the end of the run gets the frames (urt_stall_backtrace). Costs a
 * thread per loop and two stores per switch; the signal interrupts the
 * stalling task, which sees EINTR from a call SA_RESTART does not restart
 * (nanosleep, poll). urt_loop_create returns -EINVAL without stall_ns, and
 * -EBUSY when the application has a SIGURG handler of its own. */
#define URT_LOOP_STALL_BACKTRACE (1u << 6)

/*
 * Create a loop. *out receives it; opts NULL means all defaults.
 * Returns 0, -EINVAL (NULL out, bad option, also in pool_opts: the pool
 * starts later, its options are checked now; both backend flags, or
 * URT_BACKEND set to something else than io_uring or epoll), -ENOMEM, or,
 * when io_uring alone was asked for (URT_LOOP_IO_URING, URT_BACKEND), the
 * kernel's error from io_uring_setup (-EPERM, -ENOSYS) or -EOPNOTSUPP (a
 * kernel before 5.18). The calling thread owns the loop. Callable outside
 * a task.
 */
URT_API int urt_loop_create(urt_loop **out, const struct urt_loop_opts *opts);

/* urt_loop_backend's answers. */
enum urt_backend {
	URT_BACKEND_IO_URING = 1,
	URT_BACKEND_EPOLL = 2,
};

/*
 * Which backend loop runs on: URT_BACKEND_IO_URING or URT_BACKEND_EPOLL,
 * or -EINVAL (NULL loop). When why is not NULL, *why is set to a line
 * saying which and why, e.g. "epoll: io_uring_setup returned -EPERM (a
 * seccomp filter, as Docker's default profile)"; the string is the loop's,
 * valid until it is destroyed. Callable from any thread.
 */
URT_API int urt_loop_backend(const urt_loop *loop, const char **why);

/*
 * Run the loop until no task is left, or until urt_loop_stop. Returns 0;
 * -EINTR when stopped with tasks left (they stay parked or ready; run again
 * to go on, or destroy the loop); -EINVAL (NULL loop);
 * -EBUSY when called from inside a task or while the loop already runs;
 * -EPERM from a thread that does not own the loop; -EDEADLK when tasks are
 * left that nothing can ever wake (they join each other); -errno when the
 * ring fails. Callable outside a task only.
 */
URT_API int urt_loop_run(urt_loop *loop);

/* What a loop has done: every SQE and expected completion is accounted
 * for, so that sqes + more + messages == cqes + settled + inflight always.
 * A multishot operation (an acceptor's accept) is one SQE whose CQEs but
 * the last carry IORING_CQE_F_MORE: those are counted in more. */
struct urt_loop_stats {
	uint64_t sqes;     /* SQEs prepared by the loop */
	uint64_t messages; /* completions with no SQE of the loop's: offloaded
			    * jobs (expected when offloaded, settled when
			    * the pool hands them back) and the pool's
			    * MSG_RING wake-ups (one expected each time the
			    * loop, with jobs out, is about to sleep) */
	uint64_t cqes;     /* CQEs reaped */
	uint64_t settled;  /* expected completions settled without a CQE of
			    * their own: every offloaded job, finished or
			    * dropped, and each wake-up the loop no longer
			    * needed (no job finished while it slept) */
	uint64_t inflight; /* still to come */
	uint64_t spawned;  /* tasks spawned */
	uint64_t live;     /* tasks not yet returned */
	uint64_t more;     /* CQEs of a multishot operation that stays armed
			    * (IORING_CQE_F_MORE): one per connection an
			    * acceptor's multishot accept brings */
};

/* Fill *out with the loop's counters. Returns 0 or -EINVAL (NULL).
 * Callable inside a task and outside one, from the owning thread. */
URT_API int urt_loop_stats(urt_loop *loop, struct urt_loop_stats *out);

/*
 * A histogram of nanosecond values in fixed memory (about 35 KiB): exact
 * below 256 ns, then 128 buckets per power of two, so that a percentile is
 * within 1% of the true value (HdrHistogram's log-linear layout). Values
 * above 2^40 ns (18 minutes) count in the last bucket. Not thread-safe:
 * one writer; copy it to read it elsewhere.
 */
#define URT_HIST_BUCKETS (256 + 33 * 128)
struct urt_hist {
	uint64_t count, sum, min, max;
	uint64_t counts[URT_HIST_BUCKETS];
};

/* The histogram calls need no loop: callable anywhere, on memory the
 * caller owns; a NULL h is ignored (0 returned). */
/* Empty h. */
URT_API void urt_hist_reset(struct urt_hist *h);
/* Count v (ns) in h. */
URT_API void urt_hist_record(struct urt_hist *h, uint64_t v);
/* The value at percentile p (0 to 100) of h: the middle of the bucket
 * holding it, kept within the recorded min and max (exact below 256 ns,
 * the min for p 0, the max for p 100), within 1% of the exact
 * nearest-rank value; 0 for an empty h. */
URT_API uint64_t urt_hist_percentile(const struct urt_hist *h, double p);
/* Bucket i's bounds, [*lo, *hi) in ns (lo and hi may be NULL). Returns its
 * count, or 0 for i out of range (bounds untouched). */
URT_API uint64_t urt_hist_bucket(const struct urt_hist *h, size_t i, uint64_t *lo, uint64_t *hi);

/* What a loop is doing, for a service to watch itself (urt_loop_metrics).
 * Fields marked (M) are 0 unless the loop was made with URT_LOOP_METRICS. */
struct urt_loop_metrics {
	uint64_t busy_ns;      /* (M) time in the loop's turns, running tasks
				* and completions, outside the kernel wait */
	uint64_t idle_ns;      /* (M) time asleep in the kernel, waiting for
				* completions: busy / (busy + idle) is the
				* loop's utilization */
	uint64_t turns;        /* turns of the loop: submit, wait, reap */
	uint64_t tasks_live;   /* tasks spawned and not yet returned */
	uint64_t tasks_ready;  /* of which in the run queue, or yielded */
	uint64_t tasks_parked; /* of which waiting (for I/O, a sleep, a job...) */
	uint64_t sqes, cqes, messages, settled, inflight, more; /* as in
				* urt_loop_stats, with its identity */
	uint64_t cq_overflows; /* turns that found the kernel's CQ overflowed
				* (IORING_SQ_CQ_OVERFLOW; nothing is lost, the
				* kernel holds them): a CQ too small */
	uint64_t jobs_inflight; /* the loop's offloaded jobs not back yet
				* (urt_to_thread's and, on epoll, the file
				* operations the pool runs for the loop) */
	uint64_t pool_queued;  /* jobs waiting to start in its pool, all loops' */
	uint64_t jobs_done;    /* (M) jobs back from the pool that ran */
	uint64_t job_wait_ns;  /* (M) their time queued, summed: a pool too
				* small shows here */
	uint64_t job_run_ns;   /* (M) their time running, summed */
	uint64_t lag_ticks;    /* the lag monitor's ticks (0: never on) */
	uint64_t lag_p50_ns, lag_p99_ns, lag_max_ns; /* its lateness: another
				* thread reads the loop's lag here, without
				* urt_loop_lag (a pass over the histogram per
				* tick, when read or published) */
};

/*
 * Fill *out with the loop's metrics. From the loop's own thread (inside a
 * task or outside one): the values now. From any other thread: the
 * snapshot the loop published last (after each turn that waited in the
 * kernel, and every 64 turns of a loop too busy to wait), consistent (it
 * keeps the identity of urt_loop_stats), with URT_LOOP_METRICS only.
 * Returns 0, -EINVAL (NULL), or -EPERM (another thread, and the loop was
 * made without URT_LOOP_METRICS).
 */
URT_API int urt_loop_metrics(urt_loop *loop, struct urt_loop_metrics *out);

/*
 * The lag monitor: a task of the loop's own sleeps interval_ns again and
 * again and records how late each sleep wakes (the loop's lag: what a
 * request arriving then would wait), and the scheduler records how long
 * woken tasks wait to run (their schedule delay: for a random eighth of
 * wake-ups, from the reap of the completion that woke the task, or the
 * wake-up, to its resume), each in a histogram. The monitor's task does not
 * keep urt_loop_run from returning, nor count in tasks_live; it costs a
 * turn per interval, a clock read per reap of completions, and one per
 * sampled resume.
 *
 * urt_lag_monitor_start: 0, -EINVAL (NULL loop, interval 0), -EPERM (not
 * the loop's thread), -EBUSY (on already, or its stopped task has not run
 * to its end yet: run the loop), -ENOMEM, -ESHUTDOWN (closing).
 * The histograms start empty. urt_lag_monitor_stop: 0, -EINVAL, -EPERM,
 * -ENOENT (not on); the histograms stay readable. Both callable inside a
 * task and outside one.
 */
URT_API int urt_lag_monitor_start(urt_loop *loop, uint64_t interval_ns);
URT_API int urt_lag_monitor_stop(urt_loop *loop);

/* The lag monitor's latest tick: when it woke (urt_now_ns), how late, and
 * the worst lateness so far with when it was. With stall detection on
 * (stall_ns), each also names its culprit: the task that ran longest
 * without waiting since the tick before (urt_task_set_name's name, or
 * "task@<address>"), and for how long; else "" and 0. */
struct urt_lag_info {
	uint64_t interval_ns;
	uint64_t ticks;
	uint64_t last_at_ns, last_late_ns;
	uint64_t worst_at_ns, worst_late_ns;
	char last_culprit[32], worst_culprit[32];
	uint64_t last_culprit_ran_ns, worst_culprit_ran_ns;
	/* Woken tasks that have resumed since the monitor started; the
	 * schedule-delay histogram holds a random eighth of them. */
	uint64_t wakeups;
};

/*
 * Copy the lag monitor's histograms into *lateness and *sched_delay and its
 * latest tick into *info (each may be NULL). From the loop's thread, inside
 * a task or outside one. Returns 0, -EINVAL (NULL loop), -EPERM (not the
 * loop's thread), -ENOENT (the monitor was never started).
 */
URT_API int urt_loop_lag(urt_loop *loop, struct urt_hist *lateness, struct urt_hist *sched_delay,
			 struct urt_lag_info *info);

/*
 * Make urt_loop_run return -EINTR at the end of the current turn. Returns 0,
 * -EINVAL (NULL), -EPERM (not the owning thread), -EOPNOTSUPP (a loop of a
 * set: the set's run ends when all its loops are idle; urt_loops_cancel
 * ends it early). Callable inside a task and outside one; outside a run it
 * stops the next run after its first turn.
 */
URT_API int urt_loop_stop(urt_loop *loop);

/*
 * Destroy a loop: every task left is cancelled and run until it returns,
 * every in-flight CQE is waited for, then stacks, unjoined task handles and
 * the ring are freed. A task that ignores -ECANCELED and keeps waiting keeps
 * destroy waiting. Call it from the owning thread: outside any task, or
 * from a task of another loop of that thread (whose loop then waits while
 * this one's tasks run to their end on the calling task's stack). Ignored:
 * NULL, a call from another thread, and a loop that is running (from one
 * of its own tasks): destroy it once urt_loop_run has returned. Should the
 * ring fail while destroy waits for it (io_uring_enter refused), memory
 * the kernel or a pool worker may still write (the tasks' stacks; with a
 * shared pool's jobs in flight, the loop and its ring too) is left
 * allocated rather than freed under them.
 */
URT_API void urt_loop_destroy(urt_loop *loop);

/*
 * Create a loop with default options, spawn fn(arg), run, destroy. *result
 * (when result is not NULL) receives fn's return value. Returns 0 or -errno
 * (from urt_loop_create, urt_spawn or urt_loop_run); -EBUSY inside a task,
 * before anything is created. Outside a task only.
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
#ifndef __cplusplus
/* fn checked against arg (see urt_task_fn); (urt_spawn)(...) calls the
 * function unchecked. */
#define urt_spawn(loop, out, fn, arg)                                            \
	__extension__({                                                           \
		__typeof__(arg) urt__parg_ = (arg);                               \
		_Static_assert(urt__task_fn_takes_(fn, urt__parg_),               \
			       "urt_spawn: fn must be int fn(T *) and arg a T *"); \
		(urt_spawn)((loop), (out), (urt_task_fn)(fn), (void *)urt__parg_); \
	})
#endif

/*
 * Wait for a task to return and free its handle; *result (when not NULL)
 * receives its return value. A finished task joins from anywhere on the
 * owning thread; an unfinished one only from another task of the same loop.
 * Returns 0; -EINVAL (NULL, detached, already joined or being joined; a
 * handle already joined is caught while its stack waits in the loop's
 * cache, but using it is a bug: its memory may belong to a new task);
 * -EPERM (unfinished task, caller outside a task); -EDEADLK (joining
 * oneself); -EXDEV (a task of another loop); -ECANCELED (the caller was
 * cancelled: the task is not joined and its handle stays valid).
 */
URT_API int urt_join(urt_task *task, int *result);

/*
 * Give up a task's handle: the task is freed when it returns (at once when
 * it already has), as if spawned detached. For a task that no longer needs
 * its child's result, e.g. a cancelled one, which cannot wait for the child.
 * Returns 0, -EINVAL (NULL, already detached, or being joined), -EPERM (not
 * the owning thread). Callable inside a task and outside one.
 */
URT_API int urt_detach(urt_task *task);

/*
 * Cancel a task (see "Cancellation" above). Returns 0, -EINVAL (NULL),
 * -ESRCH (the task has already returned), -EPERM (not the owning thread).
 * Callable inside a task (also on itself) and outside one.
 */
URT_API int urt_cancel(urt_task *task);

/*
 * Let every other ready task run, then continue. Returns 0, -ECANCELED (the
 * task is cancelled), -ETIMEDOUT (the deadline of the task's timeout scope
 * has passed: it returns at once, without yielding, as every wait then
 * does), -EPERM (outside a task).
 */
URT_API int urt_yield(void);

/*
 * Name a task (NULL: the calling task) for stall reports; the name is copied
 * (up to 31 bytes). Returns 0, -EINVAL (NULL name, or NULL task outside a
 * task). Callable outside a task with a task handle.
 */
URT_API int urt_task_set_name(urt_task *task, const char *name);

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
 * A timeout scope (asyncio's timeout() block): every wait of the calling
 * task between urt_timeout_enter and urt_timeout_leave shares one deadline,
 * ns from now, or the enclosing scope's when that comes first. Scopes nest
 * and are left innermost first. The struct is the caller's (usually on the
 * task's stack) and must stay until the scope is left; its fields are
 * urt's.
 *
 *	struct urt_timeout to;
 *	urt_timeout_enter(&to, 2 * 1000000000ull);
 *	n = urt_recv(fd, buf, sizeof(buf), 0);	// -ETIMEDOUT after 2 s
 *	if (urt_timeout_leave(&to) == -ETIMEDOUT) ...
 */
struct urt_timeout {
	uint64_t at;                /* this scope's deadline (CLOCK_MONOTONIC ns) */
	uint64_t outer_at;          /* the task's deadline before the scope */
	struct urt_timeout *outer;  /* the enclosing scope */
};

/* Enter a timeout scope of ns nanoseconds. Returns 0, -EINVAL (NULL
 * scope), -EPERM (outside a task). */
URT_API int urt_timeout_enter(struct urt_timeout *scope, uint64_t ns);

/*
 * Leave the innermost scope, restoring the enclosing deadline. Returns 0;
 * -ETIMEDOUT when this scope's deadline has passed (its waits returned, or
 * would have returned, -ETIMEDOUT; when an enclosing scope's deadline came
 * first, that scope reports it instead); -EINVAL (NULL, or not the
 * innermost scope); -EPERM (outside a task).
 */
URT_API int urt_timeout_leave(struct urt_timeout *scope);

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

/*
 * Write up to len bytes of buf to fd with IORING_OP_WRITE, parking the task
 * until the write completes. offset >= 0 writes at that offset; offset < 0 at
 * (and advancing) the file position. Returns the bytes written (possibly
 * fewer than len, as write(2)) or -errno: the kernel's (-EBADF, -EPIPE,
 * -ENOSPC, ...), -EINVAL (len above SSIZE_MAX), -ECANCELED, -EPERM (outside
 * a task). len is capped at 0x7ffff000. The kernel reads buf until the task
 * resumes, never after.
 */
URT_API ssize_t urt_write(int fd, const void *buf, size_t len, int64_t offset);

/*
 * Registered files and buffers: the kernel takes a reference to each file
 * and pins each buffer once, instead of at every operation.
 * urt_loop_register_files makes fds[i] the loop's fixed file i;
 * urt_loop_register_buffers makes iov[i] its fixed buffer i (the memory
 * stays the caller's and must outlive the loop or a later unregister, which
 * happens with urt_loop_destroy). Each may be done once per loop. Returns
 * 0, -EINVAL (NULL loop or array, n 0), -EPERM (not the loop's thread),
 * -EOPNOTSUPP (a loop on the epoll backend: no kernel table), or the
 * kernel's error (-EBUSY: registered already; -ENOMEM, -EFAULT, -EBADF,
 * ...). Callable inside a task and outside one.
 */
URT_API int urt_loop_register_files(urt_loop *loop, const int *fds, unsigned n);
URT_API int urt_loop_register_buffers(urt_loop *loop, const struct iovec *iov, unsigned n);

/* urt_read_fixed / urt_write_fixed flag: fd is an index into the loop's
 * registered files, not a file descriptor. */
#define URT_FIXED_FILE (1u << 0)

/*
 * As urt_read and urt_write, with IORING_OP_READ_FIXED and WRITE_FIXED:
 * buf..buf+len must lie in the loop's registered buffer buf_index. flags:
 * URT_FIXED_FILE or 0. Returns the bytes moved or -errno (the kernel's:
 * -EFAULT for a range outside the buffer or an index past the last one;
 * -EINVAL for unknown flags or len above SSIZE_MAX; -EOPNOTSUPP on the
 * epoll backend; -ECANCELED, -ETIMEDOUT, -EPERM outside a task).
 */
URT_API ssize_t urt_read_fixed(int fd, void *buf, size_t len, int64_t offset,
			       unsigned buf_index, unsigned flags);
URT_API ssize_t urt_write_fixed(int fd, const void *buf, size_t len, int64_t offset,
				unsigned buf_index, unsigned flags);

/*
 * Vectored read and write (IORING_OP_READV, IORING_OP_WRITEV): as urt_read
 * and urt_write over iovcnt buffers, filled or taken in order. Returns the
 * bytes moved or -errno (the kernel's; -EINVAL for a negative iovcnt or
 * more than IOV_MAX; -ECANCELED; -EPERM outside a task). The vector and
 * its buffers stay the caller's; the kernel uses them until the task
 * resumes, never after.
 */
URT_API ssize_t urt_readv(int fd, const struct iovec *iov, int iovcnt, int64_t offset);
URT_API ssize_t urt_writev(int fd, const struct iovec *iov, int iovcnt, int64_t offset);

/*
 * Open path relative to dirfd (AT_FDCWD: the working directory) with
 * IORING_OP_OPENAT, as openat(2). Returns the new fd, owned by the caller,
 * or -errno (the kernel's: -ENOENT, -EACCES, ...; -EFAULT for a NULL path;
 * -ECANCELED; -EPERM outside a task). When the task is cancelled while the
 * open is in flight and the kernel opens the file anyway, urt closes that
 * fd and returns -ECANCELED: no fd leaks.
 */
URT_API int urt_openat(int dirfd, const char *path, int flags, mode_t mode);

/*
 * File status with IORING_OP_STATX, as statx(2): *out is filled when it
 * returns 0. Returns 0 or -errno (the kernel's; -EFAULT for a NULL path or
 * out; -ECANCELED; -EPERM outside a task). *out is written by the kernel
 * until the task resumes, never after.
 */
struct statx;
URT_API int urt_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out);

/* urt_fsync's flag: data only, as fdatasync(2). */
#define URT_FSYNC_DATA (1u << 0)

/*
 * Flush fd's data and metadata (flags 0) or data only (URT_FSYNC_DATA) to
 * storage with IORING_OP_FSYNC. Returns 0 or -errno: the kernel's (-EBADF,
 * -EINVAL for a pipe, -EIO, ...), -EINVAL (unknown flag), -ECANCELED,
 * -EPERM (outside a task).
 */
URT_API int urt_fsync(int fd, unsigned flags);

/*
 * Close fd with IORING_OP_CLOSE. Returns 0 or -errno (-EBADF, -ECANCELED,
 * -EPERM outside a task). On -ECANCELED before the call, fd is still open.
 */
URT_API int urt_close(int fd);

/*
 * Sockets. Each call is one SQE, as for files: the task parks until its
 * CQE, and the call returns the CQE's result or -errno (the kernel's, and
 * -ECANCELED, -ETIMEDOUT, -EPERM outside a task, as above). Buffers and
 * addresses stay the caller's; the kernel uses them until the task
 * resumes, never after. The sockets themselves are made with socket(2).
 */

/*
 * Accept a connection on the listening socket fd (IORING_OP_ACCEPT, as
 * accept4(2); flags SOCK_NONBLOCK, SOCK_CLOEXEC). addr and addrlen may be
 * NULL. Returns the new socket, owned by the caller. When the task is
 * cancelled while the accept is in flight and the kernel accepted anyway,
 * urt closes that socket and returns -ECANCELED: none leaks. (An accept
 * that completes before its deadline returns the socket.)
 */
URT_API int urt_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);

/* Connect fd to addr (IORING_OP_CONNECT, as connect(2)). Returns 0 or
 * -errno (-ECONNREFUSED, -ETIMEDOUT, ...). */
URT_API int urt_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);

/* Receive up to len bytes (IORING_OP_RECV, as recv(2) with flags such as
 * MSG_WAITALL, MSG_PEEK). Returns the bytes received, 0 when the peer has
 * shut down its side, or -errno. len is capped at 0x7ffff000 (-EINVAL
 * above SSIZE_MAX). */
URT_API ssize_t urt_recv(int fd, void *buf, size_t len, int flags);

/* Send up to len bytes (IORING_OP_SEND, as send(2)). MSG_NOSIGNAL is
 * always added: a closed peer gives -EPIPE, never SIGPIPE. Returns the
 * bytes sent (possibly fewer than len) or -errno. len is capped as for
 * urt_recv. */
URT_API ssize_t urt_send(int fd, const void *buf, size_t len, int flags);

/* Shut down part of a full-duplex connection (IORING_OP_SHUTDOWN, as
 * shutdown(2); how is SHUT_RD, SHUT_WR or SHUT_RDWR). Returns 0 or -errno
 * (-ENOTCONN, -EINVAL, ...). */
URT_API int urt_shutdown(int fd, int how);

/* Wait until fd is ready for events (POLLIN, POLLOUT, ...; one-shot
 * IORING_OP_POLL_ADD). Returns the events that are ready (POLLERR and
 * POLLHUP may come unasked) or -errno. */
URT_API int urt_poll(int fd, unsigned events);

/*
 * An acceptor: a listening socket whose connections arrive by one
 * multishot IORING_OP_ACCEPT, armed once, each connection a CQE. They
 * queue in the acceptor until a task takes them with urt_acceptor_next.
 * When a CQE comes without IORING_CQE_F_MORE (the kernel ended the
 * multishot), the acceptor arms it again; while 64 connections wait
 * untaken it stops accepting (the kernel's backlog holds the rest). On a
 * kernel without multishot accept (before 5.19) each urt_acceptor_next
 * makes one plain accept.
 */
typedef struct urt_acceptor urt_acceptor;

/* urt_acceptor_create: no multishot accept, one plain accept per
 * urt_acceptor_next (a bit apart from SOCK_NONBLOCK and SOCK_CLOEXEC). */
#define URT_ACCEPTOR_ONESHOT (1 << 0)

/*
 * Make an acceptor for the listening socket fd on loop (NULL: the current
 * loop); flags SOCK_NONBLOCK and SOCK_CLOEXEC apply to every accepted
 * socket, and URT_ACCEPTOR_ONESHOT makes the acceptor accept one by one,
 * as it does on kernels without multishot accept. fd stays the caller's; close it after the acceptor. Returns 0,
 * -EINVAL (NULL out, bad flags, no loop), -EPERM (not the loop's thread),
 * -ESHUTDOWN (the loop is being destroyed), -ENOMEM. Callable inside a task
 * and outside one; the accept is submitted at the loop's next turn.
 */
URT_API int urt_acceptor_create(urt_loop *loop, urt_acceptor **out, int fd, int flags);

/*
 * The next connection: a socket owned by the caller. Parks the task until
 * one arrives. Returns the socket or -errno: an accept error the kernel
 * reported (-ECONNABORTED, ...; the acceptor arms again at the next call;
 * -EMFILE and -ENFILE once per episode of fd exhaustion: until a
 * connection is accepted again, takers pause, 10 ms doubling to 1 s, and
 * retry instead, the clients waiting in the listen backlog),
 * -EBADF (the acceptor was closed meanwhile), -ECANCELED, -ETIMEDOUT,
 * -EPERM (outside a task), -EXDEV (a task of another loop), -EINVAL
 * (NULL, or closed). Several tasks may wait; they are served in order.
 */
URT_API int urt_acceptor_next(urt_acceptor *a);

/*
 * Close an acceptor: the multishot accept is cancelled, connections queued
 * and not taken are closed, tasks waiting in urt_acceptor_next get -EBADF
 * (in one-by-one mode their accepts are cancelled, and a connection one of
 * them accepted meanwhile is closed). The acceptor is freed once the kernel
 * has answered the cancels; do not use it after this call. Returns 0, -EINVAL (NULL), -EPERM (not the loop's
 * thread). An acceptor not closed
 * is closed by urt_loop_destroy. From the loop's thread, inside a task or
 * outside one.
 */
URT_API int urt_acceptor_close(urt_acceptor *a);

/*
 * Channels: a bounded FIFO of fixed-size elements between the tasks of one
 * loop. There is no lock: a channel belongs to the thread that created it
 * (its loop's thread), and every call below from another thread returns
 * -EPERM (urt_chan_len: 0) without touching it. Elements are copied
 * in and out. A receive loop reads as iteration, a stream that ends when
 * the channel is closed and drained:
 *
 *	struct msg m;
 *	while ((n = urt_chan_recv(ch, &m)) > 0)
 *		handle(&m);
 *	// n == 0: closed and empty; n < 0: -ECANCELED, -ETIMEDOUT
 *
 * Waiting senders and receivers are served in order; an element passes
 * straight to a waiting receiver.
 */
typedef struct urt_chan urt_chan;

/* Create a channel of capacity elements (at least 1) of elem_size bytes
 * each (at least 1). Returns 0, -EINVAL (NULL out, a zero size or
 * capacity, or a size times capacity past SIZE_MAX), -ENOMEM. Callable
 * anywhere; the caller owns the channel, which belongs to the calling
 * thread. */
URT_API int urt_chan_create(urt_chan **out, size_t elem_size, size_t capacity);

/* Implementations of the macros below, which pass sizeof(*elem). */
URT_API int urt__chan_send(urt_chan *c, const void *elem, size_t size, int wait);
URT_API int urt__chan_recv(urt_chan *c, void *elem, size_t size, int wait);

/*
 * urt_chan_send(c, elem): copy *elem into the channel, parking while it is
 * full. Returns 0; -EPIPE (closed, also while waiting: the element is not
 * sent); -EINVAL (NULL, or sizeof(*elem) is not the channel's element
 * size); -ECANCELED; -ETIMEDOUT; -EPERM (it would wait, outside a task;
 * another thread). urt_chan_try_send never waits: -EAGAIN when full. Both
 * callable outside a task (the try form never waits).
 */
#define urt_chan_send(c, elem) urt__chan_send((c), (elem), urt__elem_size_(elem), 1)
#define urt_chan_try_send(c, elem) urt__chan_send((c), (elem), urt__elem_size_(elem), 0)

/*
 * urt_chan_recv(c, elem): move the oldest element into *elem, parking
 * while the channel is empty. Returns 1 (an element), 0 (closed and
 * drained: the end of the stream), -EINVAL (NULL, or sizeof(*elem) is not
 * the element size), -ECANCELED, -ETIMEDOUT, -EPERM (it would wait,
 * outside a task; another thread). urt_chan_try_recv never waits: -EAGAIN
 * when empty.
 */
#define urt_chan_recv(c, elem) urt__chan_recv((c), (elem), urt__elem_size_(elem), 1)
#define urt_chan_try_recv(c, elem) urt__chan_recv((c), (elem), urt__elem_size_(elem), 0)

/* sizeof(*p), refusing a void * at compile time. */
#define urt__elem_size_(p)                                                         \
	(sizeof(char[1 - 2 * __builtin_types_compatible_p(__typeof__(*(p)), void)]) * 0 + \
	 sizeof(*(p)))

/* Close a channel: later sends fail with -EPIPE, receivers drain what is
 * left and then get 0. Every waiting task is woken: senders with -EPIPE,
 * receivers with 0. Returns 0, -EINVAL (NULL), -EALREADY (closed before),
 * -EPERM (another thread). Callable anywhere on the channel's thread. */
URT_API int urt_chan_close(urt_chan *c);

/* Elements in the channel now (0 for NULL, or from another thread). */
URT_API size_t urt_chan_len(const urt_chan *c);

/* Free a channel and the elements left in it. Returns 0, -EINVAL (NULL),
 * -EPERM (another thread), -EBUSY while tasks wait on it (close it, let
 * them run, then destroy). */
URT_API int urt_chan_destroy(urt_chan *c);

/*
 * Task groups (structured concurrency, asyncio's TaskGroup). Members are
 * spawned into a group; urt_group_wait waits for all of them. A member
 * fails by returning non-zero: the first failure cancels every other
 * member. The group never lets urt_group_wait return while a member still
 * runs: cancelling the waiting task, or its deadline, cancels the members
 * and waits for them to return.
 *
 *	urt_group *g;
 *	urt_group_create(&g);
 *	for (i = 0; i < n; i++)
 *		urt_group_spawn(g, fetch, &urls[i]);
 *	ret = urt_group_wait(g);	// 0, or the first failure
 */
typedef struct urt_group urt_group;

/* Create a group on the calling task's loop. Returns 0, -EINVAL (NULL),
 * -EPERM (outside a task), -ENOMEM. The group lives until urt_group_wait
 * returns (or the loop is destroyed). */
URT_API int urt_group_create(urt_group **out);

/*
 * Spawn fn(arg) as a member (a detached task of the group's loop: its
 * return value goes to the group). Returns 0, -EINVAL (NULL group or fn),
 * -ECANCELED (the group is cancelling after a failure, a cancel or a
 * deadline: nothing is spawned), -EPERM (not the loop's thread), -ENOMEM,
 * -ESHUTDOWN. Callable by any task of the loop, members included.
 */
URT_API int urt_group_spawn(urt_group *g, urt_task_fn fn, void *arg);
#ifndef __cplusplus
/* fn checked against arg (see urt_task_fn); (urt_group_spawn)(...) calls
 * the function unchecked. */
#define urt_group_spawn(g, fn, arg)                                              \
	__extension__({                                                           \
		__typeof__(arg) urt__garg_ = (arg);                               \
		_Static_assert(urt__task_fn_takes_(fn, urt__garg_),               \
			       "urt_group_spawn: fn must be int fn(T *) and arg a T *"); \
		(urt_group_spawn)((g), (urt_task_fn)(fn), (void *)urt__garg_);    \
	})
#endif

/*
 * Wait until every member has returned, then free the group. Returns 0
 * when every member returned 0; otherwise the first non-zero value a
 * member returned (the members after it were cancelled); -ECANCELED or
 * -ETIMEDOUT when the waiting task was cancelled or its deadline passed
 * first (the members were cancelled and have returned). -EINVAL (NULL, or
 * a task already waits), -EPERM (outside a task, or a task of another
 * loop): the group is not freed.
 */
URT_API int urt_group_wait(urt_group *g);

/*
 * Blocking work: a pool of threads.
 *
 * A job runs a synchronous function on a pool thread while the task that
 * offloaded it is parked; the worker then posts an io_uring MSG_RING message
 * into the owning loop's ring, whose CQE resumes the task. Synchronous work
 * cannot be interrupted: cancelling or timing out a wait never stops the
 * function, so whatever it touches must live until it returns. urt_to_thread
 * keeps the task parked until then; urt_job_run hands ownership of the
 * argument to the pool so that the caller may leave early.
 */

struct urt_pool_opts {
	/* Worker threads (default: the number of online CPUs). */
	unsigned threads;
	/* How long an idle worker spins for new jobs before it sleeps on a
	 * condition variable (default 20 us, see the README; never when the
	 * process may run on one CPU only). */
	uint64_t spin_ns;
	/* URT_POOL_* flags. */
	unsigned flags;
};

/* Each worker sends every completion from its small io_uring of its own,
 * even a lone one that the kernel (6.13+) could send without a source ring.
 * (Batches always go from the worker's ring, in one io_uring_enter.) */
#define URT_POOL_WORKER_RINGS (1u << 0)
/* Workers never spin before sleeping (spin_ns ignored), and the queue's
 * lock sleeps at once when it is held (it spins a bounded while first
 * otherwise, see the README): for threads pinned to one CPU by hand. */
#define URT_POOL_NO_SPIN (1u << 1)
/*
 * The workers' priority. By default they run below the thread that made
 * the pool (a loop's thread, for a loop's own pool): SCHED_BATCH at a nice
 * value 10 higher (at most 19), so that a loop that wakes takes the CPU
 * from a worker that crunches; under CPU contention jobs get less of it
 * (see the README). URT_POOL_SAME_PRIORITY leaves them as they were made;
 * URT_POOL_SCHED_IDLE makes them SCHED_IDLE, to run only on CPUs nothing
 * else wants. Not both.
 */
#define URT_POOL_SAME_PRIORITY (1u << 2)
#define URT_POOL_SCHED_IDLE (1u << 3)

/*
 * Create a pool that several loops can share (set it in their
 * urt_loop_opts.pool); its threads start at once. opts NULL: defaults.
 * Returns 0, -EINVAL (NULL out, bad flags, more than 1024 threads), -ENOMEM,
 * -EAGAIN (no thread), or the kernel's error from io_uring_setup for a
 * worker's own ring (made where io_uring is allowed and the kernel has no
 * ring-less MSG_RING). Serves loops on either backend.
 * Callable outside a task; the caller owns the pool.
 */
URT_API int urt_pool_create(urt_pool **out, const struct urt_pool_opts *opts);

/*
 * Stop the pool's threads and free it. Returns 0, -EINVAL (NULL), or -EBUSY
 * while a loop still uses it (destroy those loops first). A loop's own pool
 * is destroyed with the loop; do not pass it here. Outside a task only.
 */
URT_API int urt_pool_destroy(urt_pool *pool);

/* 1 when the pool's workers send every completion from rings of their own,
 * 0 when a lone completion goes by the kernel's ring-less MSG_RING (batches
 * always use the workers' rings); -EINVAL for NULL. */
URT_API int urt_pool_uses_worker_rings(const urt_pool *pool);

/* The pool the loop offloads to (started on demand), or NULL when it could
 * not be started. Owned by the loop unless it was given one. */
URT_API urt_pool *urt_loop_pool(urt_loop *loop);

/* Implementation of urt_to_thread; call the macro, which checks types. */
URT_API int urt__to_thread(void (*fn)(void *), void *arg);

/*
 * urt_to_thread(fn, arg): run fn(arg) on a pool thread and park the calling
 * task until it has returned. fn is void fn(T *) and arg a T *, carrying the
 * input and the result; a fn whose parameter type is not arg's type is a
 * compile error. arg stays the caller's (usually on the task's stack).
 * Returns 0 when fn ran; -EPERM outside a task; -ECANCELED when the task was
 * cancelled before the call (fn does not run); -ESHUTDOWN once the loop is
 * being destroyed; -ECANCELED when the job was dropped unstarted at shutdown;
 * -EINVAL (NULL fn); or the error starting the pool.
 * Cancelling the task while fn runs does not stop fn and does not wake the
 * task: it resumes when fn has returned, with 0, and sees the cancellation
 * at its next wait.
 */
#define urt_to_thread(fn, arg)                                                   \
	__extension__({                                                           \
		__typeof__(arg) urt__arg_ = (arg);                                \
		_Static_assert(urt__fn_takes_(fn, urt__arg_),                     \
			       "urt_to_thread: fn must be void fn(T *) and arg a T *"); \
		urt__to_thread((void (*)(void *))(fn), (void *)urt__arg_);        \
	})

/* Implementation of urt_job_run; call the macro, which checks types. */
URT_API int urt__job_run(void (*fn)(void *), void *arg, void (*dtor)(void *),
			 uint64_t timeout_ns);

/*
 * urt_job_run(fn, arg, dtor, timeout_ns): an owned job, for work a caller
 * may abandon. fn is void fn(T *), dtor is void dtor(T *) (or NULL), arg a
 * T * the caller allocated. The pool runs fn(arg) while the task waits at
 * most timeout_ns (0: no deadline). Ownership of arg:
 *  - returns 0: fn has returned; arg is the caller's again, dtor is not run;
 *  - returns -ETIMEDOUT (the deadline passed) or -ECANCELED (the task was
 *    cancelled, before the call or while waiting, or the job was dropped
 *    unstarted at shutdown): the pool owns arg and calls dtor(arg) exactly
 *    once, on the loop's thread, after fn has returned (at once when fn
 *    never started);
 *  - returns -EPERM (outside a task), -ESHUTDOWN, -ENOMEM or -EINVAL (NULL
 *    fn): nothing was submitted, arg stays the caller's and dtor is not run.
 * A timed-out job still holds its pool thread until fn returns, and the
 * loop's destroy waits for it.
 */
#define urt_job_run(fn, arg, dtor, timeout_ns)                                   \
	__extension__({                                                           \
		__typeof__(arg) urt__jarg_ = (arg);                               \
		_Static_assert(urt__fn_takes_(fn, urt__jarg_),                    \
			       "urt_job_run: fn must be void fn(T *) and arg a T *"); \
		_Static_assert(urt__fn_takes_(dtor, urt__jarg_) ||                \
				       __builtin_types_compatible_p(__typeof__(dtor), void *), \
			       "urt_job_run: dtor must be void dtor(T *) or NULL"); \
		urt__job_run((void (*)(void *))(fn), (void *)urt__jarg_,          \
			     (void (*)(void *))(dtor), (timeout_ns));             \
	})

/*
 * Every core: a set of loops.
 *
 * A set runs one loop per CPU the process may run on (by default), each on
 * a thread of its own pinned to its CPU, with its own ring, all sharing one
 * pool. urt_loops_run runs a function as the first task of every loop and
 * returns when every loop is idle: no task left on any loop and no message
 * between them in flight.
 *
 * Between loops, and from threads that run no loop, work goes by message:
 * urt_call runs fn(arg) as a task on another loop and waits for its result;
 * urt_spawn_on starts one there and goes on. A message goes through the
 * target loop's inbox in shared memory; the target is woken with one
 * IORING_OP_MSG_RING when its inbox was empty, and takes every message
 * queued meanwhile at once.
 */
typedef struct urt_loops urt_loops;

struct urt_loops_opts {
	/* Loops (default: one per CPU of the process's affinity mask, at most
	 * 1024). */
	unsigned loops;
	/* URT_LOOPS_* flags. */
	unsigned flags;
	/* Every loop's options (NULL: defaults); their pool and pool_opts
	 * are ignored: the loops share the set's pool. */
	const struct urt_loop_opts *loop_opts;
	/* The shared pool's options (NULL: defaults). */
	const struct urt_pool_opts *pool_opts;
};

/* The loops' threads are not pinned (by default loop i runs on the i-th
 * CPU of the affinity mask, modulo their number). */
#define URT_LOOPS_NO_PIN (1u << 0)

/*
 * Create a set of loops, each on a thread of its own, and their pool.
 * opts NULL: defaults. Returns 0, -EINVAL (NULL out, bad flags or
 * options), -ENOMEM, -EAGAIN (no thread), -EPERM (called from a task), or
 * the error creating a loop or the pool. Outside a task only; the caller
 * owns the set.
 */
URT_API int urt_loops_create(urt_loops **out, const struct urt_loops_opts *opts);

/*
 * Run fn(arg) as the first task of every loop (each asks urt_loop_index
 * which it is) and run the loops until all are idle. Returns 0 when every
 * first task returned 0, else the first non-zero value in loop order;
 * -EINVAL (NULL), -EBUSY (a run is under way), -EPERM (called from a
 * task), or a loop's error (its ring failed). Blocks the calling thread;
 * outside a task only.
 */
URT_API int urt_loops_run(urt_loops *set, urt_task_fn fn, void *arg);

/*
 * Cancel every task of every loop of the set (see "Cancellation"); until
 * the run ends, the loops spawn no task and offload no job (-ESHUTDOWN).
 * The run then ends when the cancelled tasks have returned. Returns 0 or
 * -EINVAL. Callable from any thread, also from a task of the set.
 */
URT_API int urt_loops_cancel(urt_loops *set);

/*
 * Destroy the set: each loop is destroyed on its own thread (see
 * urt_loop_destroy), the threads are joined, then the pool is destroyed.
 * A call still queued for a loop returns -ESHUTDOWN to its caller; a
 * spawn's dtor runs. Not while urt_loops_run runs; no thread may call into
 * the set once this has begun. Outside a task only.
 */
URT_API void urt_loops_destroy(urt_loops *set);

/* The number of loops in the set, 0 for NULL. Callable anywhere. */
URT_API unsigned urt_loops_count(const urt_loops *set);

/* Loop i of the set, or NULL (NULL set, i out of range). Callable
 * anywhere; the loop is the set's. */
URT_API urt_loop *urt_loops_get(const urt_loops *set, unsigned i);

/* The set loop belongs to, or NULL (a loop of its own, or NULL). */
URT_API urt_loops *urt_loop_set(const urt_loop *loop);

/* loop's index in its set (0 for a loop of its own), -EINVAL for NULL. */
URT_API int urt_loop_index(const urt_loop *loop);

/* Implementation of urt_call; call the macro, which checks types. */
URT_API int urt__call(urt_loop *loop, int (*fn)(void *), void *arg);

/*
 * urt_call(loop, fn, arg): run fn(arg) as a task on loop and wait until it
 * has returned. fn is int fn(T *) and arg a T * (or fn takes void *); a
 * mismatch does not compile. arg stays the caller's throughout: the call
 * returns only after fn has returned, so arg may live on the caller's
 * stack.
 *  - From a task (of any loop, also loop itself): the task parks. Its
 *    cancel or its deadline cancels the task running fn, and the call
 *    returns -ECANCELED or -ETIMEDOUT once that task has returned.
 *  - From a thread that runs no loop: the thread blocks. A loop of a set
 *    that is not running takes the call at its next run, or refuses it at
 *    its destroy.
 * Returns fn's value; -EINVAL (NULL loop or fn), -ESHUTDOWN (loop is being
 * destroyed, or its set cancelled), -ENOMEM, -EDEADLK (called on a thread
 * that owns loop, outside a task: it would wait for itself), -ECANCELED or
 * -ETIMEDOUT (checked before the call too).
 */
#define urt_call(loop, fn, arg)                                                  \
	__extension__({                                                           \
		__typeof__(arg) urt__carg_ = (arg);                               \
		_Static_assert(urt__task_fn_takes_(fn, urt__carg_),               \
			       "urt_call: fn must be int fn(T *) and arg a T *"); \
		urt__call((loop), (int (*)(void *))(fn), (void *)urt__carg_);      \
	})

/* Implementation of urt_spawn_on; call the macro, which checks types. */
URT_API int urt__spawn_on(urt_loop *loop, int (*fn)(void *), void *arg, void (*dtor)(void *));

/*
 * urt_spawn_on(loop, fn, arg, dtor): start fn(arg) as a detached task on
 * loop and go on. fn is int fn(T *) (or takes void *), dtor void dtor(T *)
 * or NULL. Returns 0 once the message is queued: from then on arg belongs
 * to the new task, or, when loop cannot run it (it is being destroyed, its
 * set cancelled, no memory for the task), to dtor, which loop's thread
 * then calls once. Returns -EINVAL (NULL loop or fn), -ESHUTDOWN (the
 * loop's set is being destroyed), -ENOMEM: arg stays the caller's.
 * Callable from any thread.
 */
#define urt_spawn_on(loop, fn, arg, dtor)                                        \
	__extension__({                                                           \
		__typeof__(arg) urt__sarg_ = (arg);                               \
		_Static_assert(urt__task_fn_takes_(fn, urt__sarg_),               \
			       "urt_spawn_on: fn must be int fn(T *) and arg a T *"); \
		_Static_assert(urt__fn_takes_(dtor, urt__sarg_) ||                \
				       __builtin_types_compatible_p(__typeof__(dtor), void *), \
			       "urt_spawn_on: dtor must be void dtor(T *) or NULL"); \
		urt__spawn_on((loop), (int (*)(void *))(fn), (void *)urt__sarg_,  \
			      (void (*)(void *))(dtor));                          \
	})


/*
 * Channels between loops: a bounded FIFO of fixed-size elements that the
 * tasks of any loop, and threads that run no loop, send into, and the
 * tasks of one loop, its consumer, receive from. Elements are copied
 * through a lock-free ring in shared memory; nobody is woken per element:
 * a receiver that finds the channel empty says so, and only the sender
 * that sees it sends the consumer's loop one message (an
 * IORING_OP_MSG_RING when the loop may sleep). A sender on a full channel
 * waits until the consumer makes room. Capacity is rounded up to a power
 * of two.
 *
 *	// on any loop
 *	urt_xchan_send(ch, &msg);
 *	// on the consumer's loop
 *	while ((n = urt_xchan_recv_many(ch, batch, 64)) > 0)
 *		for (i = 0; i < n; i++) handle(&batch[i]);
 */
typedef struct urt_xchan urt_xchan;

/* Create a channel that consumer's tasks receive from: capacity elements
 * (rounded up to a power of two, at most 2^30) of elem_size bytes (at
 * most 1 MiB). Returns 0, -EINVAL, -ENOMEM. Callable anywhere; the caller
 * owns the channel. */
URT_API int urt_xchan_create(urt_xchan **out, urt_loop *consumer, size_t elem_size,
			     size_t capacity);

/* Implementations of the macros below, which pass sizeof(*elems). */
URT_API int urt__xchan_send(urt_xchan *c, const void *elems, size_t size, size_t n);
URT_API ssize_t urt__xchan_recv(urt_xchan *c, void *elems, size_t size, size_t max);

/*
 * urt_xchan_send_many(c, elems, n): copy n elements in, in order, waiting
 * while the channel is full (a task parks; a thread that runs no loop
 * blocks). Returns how many were sent (n, or fewer when the channel closed
 * or the wait was interrupted after some), else -EPIPE (closed), -EINVAL
 * (NULL, n 0, sizeof(*elems) not the element size), -ECANCELED,
 * -ETIMEDOUT, -EAGAIN (full, on a loop's thread outside a task), -ENOMEM.
 * urt_xchan_send(c, elem) sends one: 1 or -errno.
 */
#define urt_xchan_send(c, elem) urt__xchan_send((c), (elem), urt__elem_size_(elem), 1)
#define urt_xchan_send_many(c, elems, n) \
	urt__xchan_send((c), (elems), urt__elem_size_(elems), (n))

/*
 * urt_xchan_recv_many(c, elems, max): move up to max elements (at least
 * one) into elems, oldest first, parking while the channel is empty.
 * Returns how many; 0 when closed and drained; -EPERM (not a task of the
 * consumer loop), -EINVAL, -ECANCELED, -ETIMEDOUT. urt_xchan_recv(c,
 * elem) receives one.
 */
#define urt_xchan_recv(c, elem) urt__xchan_recv((c), (elem), urt__elem_size_(elem), 1)
#define urt_xchan_recv_many(c, elems, max) \
	urt__xchan_recv((c), (elems), urt__elem_size_(elems), (max))

/* Close: later sends get -EPIPE, waiting senders too; the consumer drains
 * what is left, then receives 0. Returns 0, -EINVAL, -EALREADY, -ENOMEM
 * (this thread cannot wake the consumer). Callable from any thread. */
URT_API int urt_xchan_close(urt_xchan *c);

/* Elements in the channel now (a snapshot; 0 for NULL). Callable anywhere. */
URT_API size_t urt_xchan_len(const urt_xchan *c);

/* Free the channel and what is left in it, once nobody uses it (from the
 * consumer's loop, or any thread after that loop's run). Returns 0,
 * -EINVAL, -EBUSY while a task waits on it or a wake-up is on its way to
 * the consumer (close it, let the consumer's loop run, then destroy). */
URT_API int urt_xchan_destroy(urt_xchan *c);

#ifdef __cplusplus
}
#endif
#endif
