/* The operations layer's own declarations (op.c, file.c, net.c,
 * acceptor.c, offload.c). */
#ifndef URT_OP_H
#define URT_OP_H

#include "pool.h"
#include "wait.h"

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

/* The loop's side of the pool, for a new loop: pool is a shared pool to
 * use (NULL: the loop starts its own, with pool_opts, at its first job);
 * spin_ns bounds the spin before sleeping with jobs in flight; timed: each
 * job's queue wait and run time are measured. 0 or -ENOMEM. */
int urt__offload_init(struct urt_loop *loop, struct urt_pool *pool,
		      const struct urt_pool_opts *pool_opts, uint64_t spin_ns, bool timed);
/* The job fields of m: in flight, queued in the pool, and (timed) the
 * finished jobs' waits and runs. */
void urt__offload_metrics(struct urt_loop *loop, struct urt_loop_metrics *m);
/* After the loop's last turn: let go of the pool (an own pool's workers
 * are joined) and free the loop's side. drained: every CQE came in. True
 * when a shared pool's worker may still finish a job of this loop (not
 * drained): the loop and its ring must then stay allocated, as this
 * side does. */
bool urt__offload_fini(struct urt_loop *loop, bool drained);
/* Hand the jobs queued during this turn to the pool, in one batch. */
void urt__offload_flush(struct urt_loop *loop);
/* Before the loop sleeps with jobs in flight: spin a bounded while for a
 * finished job or a CQE. True when something arrived. */
bool urt__offload_spin(struct urt_loop *loop);
/* Whether a job the pool has finished waits for loop (a struct urt_loop,
 * for urt__ring_spin). */
bool urt__offload_done_ready(void *loop);
/* Complete the jobs the pool has finished (each turn: a busy loop gets
 * them with no message and no system call). */
void urt__offload_poll(struct urt_loop *loop);
/* The loop is about to wait in the kernel: with jobs in flight, mark the
 * finished list so that the next job to finish wakes the loop with a
 * message, which the ring then expects (no mark while an earlier mark's
 * message is still on its way: that one wakes the loop). False when jobs
 * had finished meanwhile (they are completed now): the loop must not
 * wait. */
bool urt__offload_sleep(struct urt_loop *loop);
/* After each turn: take back a mark set for it (no message comes then),
 * unless a worker took it (its message does). */
void urt__offload_awake(struct urt_loop *loop);
/* Whether a wake-up message from the pool is still on its way to loop: a
 * run does not end before it has come. */
bool urt__offload_owed(struct urt_loop *loop);

/* Ask the kernel to cancel the I/O operation t is parked in (op.c): t
 * wakes when the operation's CQE comes. */
void urt__io_cancel(struct urt_task *t);


/* The most read(2) transfers in one call. */
#define URT__MAX_RW 0x7ffff000u

/* An offset as the kernel takes it: < 0 is the file position. */
static inline uint64_t urt__rw_offset(int64_t offset)
{
	return offset < 0 ? (uint64_t)-1 : (uint64_t)offset;
}

/* Every operation's body: prep is the SQE as the operation wants it (an
 * io_uring_prep_* call on a local SQE); it goes to the ring as the calling
 * task's next I/O and the task parks until its CQE. Returns the CQE's
 * result, or, with nothing sent, -EPERM (outside a task), -ECANCELED,
 * -ETIMEDOUT. io is the operation's record. */
int urt__op_run(const struct io_uring_sqe *prep, struct urt__io_wait *io);
/* An operation's own argument check failed: err, but -EPERM outside a
 * task, which comes first for every call. */
int urt__op_refuse(int err);
/* The result of an operation that makes an fd (open, accept): an fd the
 * kernel made after the task's cancel had been sent is closed, and the
 * task gets -ECANCELED. */
int urt__op_fd_result(struct urt__io_wait *io, int res);
/* One buffer, one SQE: read, write, recv, send and their fixed forms.
 * msg_flags goes to recv and send, buf_index to the fixed forms; the
 * length is capped as read(2) caps it. */
ssize_t urt__op_buf(int opcode, int fd, const void *buf, size_t len, uint64_t offset,
		    int msg_flags, unsigned buf_index, unsigned sqe_flags);

/* ---- xloop.c: work sent to a loop by other threads ---- */

/* A message: run on the target loop's thread, in its turn (not in a
 * task), then never touched by the target again unless run says so. */
struct urt__msg {
	struct urt__msg *next;
	void (*run)(struct urt__msg *m, struct urt_loop *loop);
};

/* Send m to loop's inbox from any thread. 0, or -ENOMEM when the thread
 * has no way to wake a loop (its sender could not be made): m not sent.
 * Once sent, m belongs to the target until its run. */
int urt__xloop_post(struct urt_loop *loop, struct urt__msg *m);

/*
 * What a set of loops shares for its messages: which loops, and how much is
 * still to happen (loops not idle, messages on their way to one): when that
 * count falls to 0 during a run, every loop of the set is idle and none
 * can be sent work but from outside, and the run ends.
 */
struct urt__mesh {
	_Atomic long active;
	_Atomic bool running;       /* a run is under way */
	_Atomic bool closing;       /* destroy has begun: calls and spawns refused */
	_Atomic unsigned run_gen;   /* runs begun */
	_Atomic unsigned cancel_gen; /* the run urt_loops_cancel cancelled */
	unsigned n;
	struct urt_loop **loops;
	urt_loops *set;
};

/* The loop's inbox, and its thread's sender for replies. 0 or -ENOMEM. */
int urt__xloop_init(struct urt_loop *loop);
/* After destroy's last turn: run what is left in the inbox (refused, as
 * the loop is closing), then free it. */
void urt__xloop_fini(struct urt_loop *loop);
/* loop becomes loop index of mesh (before any run). 0 or -ENOMEM. */
int urt__xloop_join(struct urt_loop *loop, struct urt__mesh *mesh, unsigned index);
/* The turn's end: send the wake-ups this loop owes the loops of its set
 * (one MSG_RING SQE per loop at most, with the turn's other SQEs). */
void urt__xloop_flush(struct urt_loop *loop);
/* On the loop's thread, before its part of a set's run: the loop counts as
 * busy (the set counted it) and takes new tasks again. */
void urt__xloop_run_begin(struct urt_loop *loop);
/* loop has no task left: true when its run should end (a loop of its own,
 * or its set idle); else it waits for work from the other loops. */
bool urt__xloop_idle(struct urt_loop *loop);
/* Whether loop belongs to a set (work may come with nothing in flight). */
bool urt__xloop_in_set(const struct urt_loop *loop);
/* Cancel the run of every loop of mesh (urt_loops_cancel). */
void urt__mesh_cancel(struct urt__mesh *mesh, struct urt__msg_sender *s);
/* The calling thread's sender (made at its first use), or NULL. */
struct urt__msg_sender *urt__xloop_sender(void);

#endif
