/* io: the operations a task awaits. Each prepares at most one SQE whose
 * record lives on the task's stack, parks the task, and returns the CQE's
 * result once that CQE, and no other event, has woken the task. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>

#include "urt_internal.h"

/* The most read(2) transfers in one call. */
#define URT__MAX_RW 0x7ffff000u

static void iop_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__iop *iop = (struct urt__iop *)((char *)op - offsetof(struct urt__iop, op));

	(void)flags;
	iop->res = res;
	iop->done = true;
	urt__wake(iop->task, res);
}


static struct io_uring_sqe *iop_begin(struct urt_task *t, struct urt__iop *iop)
{
	iop->op.done = iop_done;
	iop->task = t;
	iop->res = 0;
	iop->done = false;
	iop->cancel_sent = false;
	return urt__ring_sqe(&t->loop->ring, &iop->op);
}

/* Park until the operation's own CQE arrives: never earlier, even when the
 * task is cancelled meanwhile (urt__iop_cancel only asks the kernel). */
static int iop_wait(struct urt_task *t, struct urt__iop *iop)
{
	t->iop = iop;
	urt__park(t, URT__WAIT_IO);
	t->iop = NULL;
	assert(iop->done);
	return iop->res;
}

void urt__iop_cancel(struct urt_task *t)
{
	struct urt__iop *iop = t->iop;
	struct io_uring_sqe *sqe;

	if (iop->cancel_sent)
		return;
	iop->cancel_sent = true;
	sqe = urt__ring_sqe(&t->loop->ring, NULL);
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&iop->op, 0);
}

int urt_sleep_ns(uint64_t ns)
{
	struct urt_task *t = urt__cur_task;
	uint64_t now, deadline;
	int ret;

	if (!t)
		return -EPERM;
	if (t->cancelled)
		return -ECANCELED;
	now = urt_now_ns();
	deadline = ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
	ret = urt__timer_add(t->loop, t, deadline);
	if (ret)
		return ret;
	return urt__park(t, URT__WAIT_SLEEP);
}

ssize_t urt_read(int fd, void *buf, size_t len, int64_t offset)
{
	struct urt_task *t = urt__cur_task;
	struct io_uring_sqe *sqe;
	struct urt__iop iop;
	int res;

	if (!t)
		return -EPERM;
	if (len > SSIZE_MAX)
		return -EINVAL;
	if (t->cancelled)
		return -ECANCELED;
	if (len > URT__MAX_RW)
		len = URT__MAX_RW;
	sqe = iop_begin(t, &iop);
	io_uring_prep_read(sqe, fd, buf, (unsigned)len, offset < 0 ? (uint64_t)-1 : (uint64_t)offset);
	res = iop_wait(t, &iop);
#if URT__VALGRIND
	/* The kernel filled the buffer behind valgrind's back. */
	if (res > 0)
		VALGRIND_MAKE_MEM_DEFINED(buf, (size_t)res);
#endif
	return res;
}
