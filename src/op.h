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
 * spin_ns bounds the spin before sleeping with jobs in flight. 0 or
 * -ENOMEM. */
int urt__offload_init(struct urt_loop *loop, struct urt_pool *pool,
		      const struct urt_pool_opts *pool_opts, uint64_t spin_ns);
/* After the loop's last turn: let go of the pool (an own pool's workers
 * are joined) and free the loop's side. drained: every CQE came in. True
 * when a shared pool's worker may still finish a job of this loop (not
 * drained): the loop and its ring must then stay allocated, as this
 * side does. */
bool urt__offload_fini(struct urt_loop *loop, bool drained);
/* Hand the jobs queued during this turn to the pool, in one batch. */
void urt__offload_flush(struct urt_loop *loop);
/* Before the loop sleeps with jobs in flight: spin a bounded while for a
 * completion. True when something arrived. */
bool urt__offload_spin(struct urt_loop *loop);

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

#endif
