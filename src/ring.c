/* ring: io_uring setup with feature fallback, SQE acquisition that never
 * fails, batched submit-and-wait, and dispatch of each CQE to its op. */
#include <errno.h>
#include <string.h>

#include "urt_internal.h"

/* Setup flags wanted, most demanding first. When the kernel answers -EINVAL
 * the first one left is dropped and setup is tried again. DEFER_TASKRUN needs
 * SINGLE_ISSUER, so it goes before it. */
static const unsigned wanted_flags[] = {
	IORING_SETUP_DEFER_TASKRUN,
	IORING_SETUP_SINGLE_ISSUER,
	IORING_SETUP_TASKRUN_FLAG,
	IORING_SETUP_COOP_TASKRUN,
	IORING_SETUP_SUBMIT_ALL,
};

int urt__ring_init(struct urt__ring *r, unsigned entries, unsigned cq_entries)
{
	unsigned flags = IORING_SETUP_CQSIZE;
	size_t drop = 0;
	int ret;

	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < sizeof(wanted_flags) / sizeof(wanted_flags[0]); i++)
		flags |= wanted_flags[i];
	for (;;) {
		struct io_uring_params p;

		memset(&p, 0, sizeof(p));
		p.flags = flags;
		p.cq_entries = cq_entries;
		ret = io_uring_queue_init_params(entries, &r->ring, &p);
		if (ret == 0) {
			r->setup_flags = flags;
			r->features = p.features;
			break;
		}
		if (ret != -EINVAL || drop == sizeof(wanted_flags) / sizeof(wanted_flags[0]))
			return ret;
		flags &= ~wanted_flags[drop++];
		/* TASKRUN_FLAG is only valid with COOP or DEFER taskrun. */
		if (!(flags & (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_DEFER_TASKRUN)))
			flags &= ~IORING_SETUP_TASKRUN_FLAG;
	}
	/* Without NODROP an overflowing CQ loses completions; without the
	 * timeout update (5.11, with IORING_FEAT_EXT_ARG) a sleep shorter than
	 * the armed timeout would wake late. Refuse such kernels. */
	if (!(r->features & IORING_FEAT_NODROP) || !(r->features & IORING_FEAT_EXT_ARG)) {
		io_uring_queue_exit(&r->ring);
		return -EOPNOTSUPP;
	}
	/* Saves an fdget per io_uring_enter; optional. */
	(void)io_uring_register_ring_fd(&r->ring);
	return 0;
}

void urt__ring_fini(struct urt__ring *r)
{
	io_uring_queue_exit(&r->ring);
}

void urt__ring_complete(struct urt__ring *r, struct urt__op *op, int32_t res)
{
	r->inflight--;
	r->settled++;
	op->done(op, res, 0);
}

bool urt__ring_pending(struct urt__ring *r)
{
	unsigned sq_flags = IO_URING_READ_ONCE(*r->ring.sq.kflags);

	return io_uring_cq_ready(&r->ring) ||
	       (sq_flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW));
}

static void dispatch(struct urt__ring *r, struct io_uring_cqe *cqe)
{
	struct urt__op *op = io_uring_cqe_get_data(cqe);
	int32_t res = cqe->res;
	uint32_t flags = cqe->flags;

	r->cqes++;
	if (op && op->unsolicited)
		r->expected++;
	else if (flags & IORING_CQE_F_MORE)
		r->more++;
	else
		r->inflight--;
	if (op)
		op->done(op, res, flags);
}

/* Dispatch every CQE in the ring. A done() callback only records results and
 * queues tasks, so it is safe to call from anywhere, also from a task. */
static int reap(struct urt__ring *r)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&r->ring, head, cqe) {
		dispatch(r, cqe);
		n++;
	}
	io_uring_cq_advance(&r->ring, n);
	return (int)n;
}

struct io_uring_sqe *urt__ring_sqe(struct urt__ring *r, struct urt__op *op)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&r->ring))) {
		int ret = io_uring_submit(&r->ring);

		/* -EBUSY: the kernel holds overflowed CQEs and wants them
		 * reaped first. Reaping only queues tasks, so it is safe here. */
		if (ret == -EBUSY || ret == -EAGAIN) {
			(void)io_uring_get_events(&r->ring);
			reap(r);
		}
	}
	io_uring_sqe_set_data(sqe, op);
	r->inflight++;
	r->sqes++;
	return sqe;
}

void urt__ring_reserve(struct urt__ring *r, unsigned n)
{
	while (io_uring_sq_space_left(&r->ring) < n) {
		int ret = io_uring_submit(&r->ring);

		if (ret == -EBUSY || ret == -EAGAIN) {
			(void)io_uring_get_events(&r->ring);
			reap(r);
		}
	}
}

int urt__ring_turn(struct urt__ring *r, bool wait)
{
	int ret;

	for (;;) {
		if (wait)
			ret = io_uring_submit_and_wait(&r->ring, 1);
		else
			ret = io_uring_submit(&r->ring);
		if (ret >= 0 || ret == -ETIME)
			break;
		if (ret == -EINTR)
			continue;
		if (ret == -EBUSY || ret == -EAGAIN) {
			/* Overflowed CQEs are waiting: reap, which frees room,
			 * and come back for the rest. */
			(void)io_uring_get_events(&r->ring);
			if (reap(r) > 0)
				return 1;
			continue;
		}
		return ret;
	}
	return reap(r);
}
