/* The operations layer's own declarations (op.c, file.c, net.c,
 * acceptor.c, offload.c). */
#ifndef URT_OP_H
#define URT_OP_H

#include "urt_internal.h"

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
