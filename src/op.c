/* op: what every operation a task awaits shares. An operation prepares one
 * SQE; urt__op_run makes it the task's next I/O (with a linked timeout for
 * the task's deadline), parks the task, and returns the CQE's result once
 * that CQE, and no other event, has woken the task. */
#define _GNU_SOURCE /* struct statx */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <unistd.h>

#include "op.h"

static void io_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__io_wait *io = (struct urt__io_wait *)((char *)op - offsetof(struct urt__io_wait, op));

	(void)flags;
	io->done = true;
	urt__wake(io->task, res);
}

static void io_interrupt(struct urt_task *t, int res);

/* Park until the operation's own CQE arrives: never earlier, even when the
 * task is cancelled meanwhile (urt__io_cancel only asks the kernel). With
 * a deadline, an IORING_OP_LINK_TIMEOUT follows sqe in the same submit and
 * the kernel cancels the operation when it fires: -ETIMEDOUT. */
static int io_wait(struct urt__io_wait *io, struct io_uring_sqe *sqe)
{
	struct urt_task *t = io->task;
	int res;

	if (t->deadline != UINT64_MAX) {
		struct io_uring_sqe *lt;

		sqe->flags |= IOSQE_IO_LINK;
		urt__timespec_of(&io->ts, t->deadline);
		lt = urt__ring_sqe(&t->loop->ring, NULL);
		assert(lt); /* op_start reserved it */
		io_uring_prep_link_timeout(lt, &io->ts, IORING_TIMEOUT_ABS);
		io->linked = true;
	}
	res = urt__park(t, io_interrupt, io);
	assert(io->done);
	/* The timeout cancelled the operation: -ECANCELED, or -EINTR from
	 * one that had started in an io-wq thread. */
	if (io->linked && !io->cancel_sent && (res == -ECANCELED || res == -EINTR))
		return -ETIMEDOUT;
	return res;
}

void urt__io_cancel(struct urt_task *t)
{
	struct urt__io_wait *io = t->wait.obj;
	struct io_uring_sqe *sqe;

	if (io->cancel_sent || io->done)
		return;
	sqe = urt__ring_sqe(&t->loop->ring, NULL);
	if (!sqe)
		return; /* the ring is unusable: the loop's run reports it */
	io->cancel_sent = true;
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&io->op, 0);
}

/* The calling task's next I/O operation: an SQE for io, or NULL with *err
 * set (-EPERM outside a task, -ECANCELED once the task is cancelled,
 * -ETIMEDOUT once its deadline has passed). With a deadline, room is made
 * for the linked timeout that io_wait adds. */
static struct io_uring_sqe *op_start(struct urt__io_wait *io, int *err)
{
	struct urt_task *t = urt__cur_task;
	struct io_uring_sqe *sqe;

	if (!t) {
		*err = -EPERM;
		return NULL;
	}
	*err = urt__wait_check(t);
	if (*err)
		return NULL;
	if (t->deadline != UINT64_MAX) {
		*err = urt__ring_reserve(&t->loop->ring, 2);
		if (*err)
			return NULL;
	}
	io->op = (struct urt__op){ .done = io_done };
	io->task = t;
	io->done = false;
	io->cancel_sent = false;
	io->linked = false;
	sqe = urt__ring_sqe(&t->loop->ring, &io->op);
	if (!sqe)
		*err = t->loop->ring.error;
	return sqe;
}

/*
 * Every operation's body: prep is the SQE as the operation wants it (an
 * io_uring_prep_* call on a local SQE); it goes to the ring as the calling
 * task's next I/O and the task parks until its CQE. Returns the CQE's
 * result, or, with nothing sent, -EPERM (outside a task), -ECANCELED,
 * -ETIMEDOUT. io is the operation's record, for what the caller reads
 * after (fd_result).
 */
int urt__op_run(const struct io_uring_sqe *prep, struct urt__io_wait *io)
{
	int err = 0;
	struct io_uring_sqe *sqe = op_start(io, &err);

	if (!sqe)
		return err;
	*sqe = *prep;
	io_uring_sqe_set_data(sqe, &io->op);
	return io_wait(io, sqe);
}

/* An operation's own argument check failed: err, but -EPERM outside a
 * task, which comes first for every call. */
int urt__op_refuse(int err)
{
	return urt__cur_task ? err : -EPERM;
}

/* A cancelled open or accept that the kernel completed anyway (the cancel
 * came too late to stop it): the task is cancelled, so it is told
 * -ECANCELED and never sees the fd; close it here, or it leaks. */
int urt__op_fd_result(struct urt__io_wait *io, int res)
{
	if (res >= 0 && io->cancel_sent) {
		close(res);
		return -ECANCELED;
	}
	return res;
}

/* One buffer, one SQE: read, write, recv, send and their fixed forms share
 * it. msg_flags goes to recv and send, buf_index to the fixed forms. The
 * length is capped as read(2) and write(2) cap it. */

ssize_t urt__op_buf(int opcode, int fd, const void *buf, size_t len, uint64_t offset,
		      int msg_flags, unsigned buf_index, unsigned sqe_flags)
{
	struct io_uring_sqe sqe;
	struct urt__io_wait io;
	int res;

	if (len > SSIZE_MAX)
		return urt__op_refuse(-EINVAL);
	if (len > URT__MAX_RW)
		len = URT__MAX_RW;
	io_uring_prep_rw(opcode, &sqe, fd, buf, (unsigned)len, offset);
	sqe.msg_flags = (uint32_t)msg_flags;
	sqe.buf_index = (uint16_t)buf_index;
	sqe.flags |= (uint8_t)sqe_flags;
	res = urt__op_run(&sqe, &io);
#if URT__VALGRIND
	/* The kernel filled the buffer behind valgrind's back. */
	if (res > 0 && (opcode == IORING_OP_READ || opcode == IORING_OP_RECV ||
			opcode == IORING_OP_READ_FIXED))
		VALGRIND_MAKE_MEM_DEFINED(buf, (size_t)res);
#endif
	return res;
}

/* A cancel (or a deadline, which I/O carries as a linked timeout instead)
 * asks the kernel to cancel the operation; the task wakes with its CQE. */
static void io_interrupt(struct urt_task *t, int res)
{
	(void)res;
	urt__io_cancel(t);
}
