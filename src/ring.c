/* ring: io_uring setup with feature fallback, SQE acquisition that flushes
 * a full SQ, batched submit-and-wait, and dispatch of each CQE to its op,
 * from the loop's turn only; and MSG_RINGs from threads without a loop. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ring.h"

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

static int io_uring_init(struct urt__ring *r, unsigned entries, unsigned cq_entries)
{
	unsigned flags = IORING_SETUP_CQSIZE;
	size_t drop = 0;
	int ret;

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
	/* The pool and other loops reach a loop with MSG_RING (5.18). */
	if (!urt__msg_ring_works()) {
		io_uring_queue_exit(&r->ring);
		return -EOPNOTSUPP;
	}
	/* Saves an fdget per io_uring_enter; optional. */
	(void)io_uring_register_ring_fd(&r->ring);
	return 0;
}

/* Why io_uring_setup failed with err, in words. */
static void why_denied(struct urt__ring *r, int err)
{
	const char *cause = "";
	char buf[8] = "";
	int fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);

		close(fd);
		buf[n > 0 ? n : 0] = 0;
	}
	if (err == -EPERM && buf[0] == '2')
		cause = " (kernel.io_uring_disabled=2)";
	else if (err == -EPERM && buf[0] == '1')
		cause = " (kernel.io_uring_disabled=1, and not in kernel.io_uring_group)";
	else if (err == -EPERM)
		cause = " (a seccomp filter, as Docker's default profile)";
	else if (err == -ENOSYS)
		cause = " (a kernel without io_uring, or a seccomp filter)";
	else if (err == -EOPNOTSUPP)
		cause = " (the kernel's io_uring lacks NODROP, EXT_ARG or MSG_RING: before 5.18)";
	snprintf(r->why, sizeof(r->why), "epoll: io_uring_setup returned %s%s",
		 err == -EPERM ? "-EPERM" : err == -ENOSYS ? "-ENOSYS" :
		 err == -EOPNOTSUPP ? "-EOPNOTSUPP" : "an error", cause);
}

int urt__ring_init(struct urt__ring *r, unsigned entries, unsigned cq_entries,
		   enum urt__backend_want want)
{
	int ret;

	memset(r, 0, sizeof(*r));
	if (want != URT__WANT_EPOLL) {
		ret = io_uring_init(r, entries, cq_entries);
		if (!ret) {
			snprintf(r->why, sizeof(r->why), "io_uring");
			/* DEFER_TASKRUN or COOP_TASKRUN defer a timeout's
			 * completion to the next kernel entry: TASKRUN_FLAG
			 * makes it visible meanwhile. */
			r->watches_timeouts =
				!(r->setup_flags &
				  (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN)) ||
				(r->setup_flags & IORING_SETUP_TASKRUN_FLAG);
			return 0;
		}
		/* Denied or missing: epoll, unless io_uring alone would do. */
		if (want == URT__WANT_IO_URING ||
		    (ret != -EPERM && ret != -ENOSYS && ret != -EOPNOTSUPP))
			return ret;
		memset(r, 0, sizeof(*r));
		why_denied(r, ret);
	} else {
		snprintf(r->why, sizeof(r->why), "epoll");
	}
	return urt__ep_init(r, entries, cq_entries);
}

void urt__ring_fini(struct urt__ring *r)
{
	if (r->ep) {
		urt__ep_fini(r);
		return;
	}
	io_uring_queue_exit(&r->ring);
	free(r->held);
	r->held = NULL;
}

void urt__ring_complete(struct urt__ring *r, struct urt__op *op, int32_t res)
{
	r->inflight--;
	r->settled++;
	op->done(op, res, 0);
}

bool urt__ring_spin(struct urt__ring *r, uint64_t ns, bool (*also)(void *arg), void *arg)
{
	uint64_t until = urt_now_ns() + ns;

	do {
		for (int i = 0; i < 64; i++) {
			if (urt__ring_pending(r) || (also && also(arg)))
				return true;
			urt__cpu_relax();
		}
	} while (urt_now_ns() < until);
	return false;
}

int urt__ring_register_files(struct urt__ring *r, const int *fds, unsigned n)
{
	return r->ep ? -EOPNOTSUPP : io_uring_register_files(&r->ring, fds, n);
}

int urt__ring_register_buffers(struct urt__ring *r, const struct iovec *iov, unsigned n)
{
	return r->ep ? -EOPNOTSUPP : io_uring_register_buffers(&r->ring, iov, n);
}

void urt__ring_set_exec(struct urt__ring *r, urt__ring_exec_fn fn, void *ctx)
{
	if (r->ep)
		urt__ep_set_exec(r, fn, ctx);
}

void urt__ring_files_on_pool(struct urt__ring *r)
{
	if (r->ep)
		urt__ep_files_on_pool(r);
}

static void dispatch(struct urt__ring *r, const struct io_uring_cqe *cqe)
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

int urt__ring_hold(struct urt__ring *r)
{
	unsigned ready, n = 0, head;
	struct io_uring_cqe *cqe;

	if (r->ep)
		return 0; /* its CQ is its own: no room to make */
	ready = io_uring_cq_ready(&r->ring);
	/* The held ones first, from the start, then room for the new. */
	if (r->held_head) {
		memmove(r->held, r->held + r->held_head, r->held_n * sizeof(*r->held));
		r->held_head = 0;
	}
	if (r->held_n + ready > r->held_cap) {
		size_t cap = r->held_cap ? r->held_cap : 64;
		struct io_uring_cqe *h;

		while (cap < r->held_n + ready)
			cap *= 2;
		h = realloc(r->held, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		r->held = h;
		r->held_cap = cap;
	}
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		if (n == ready)
			break;
		r->held[r->held_n + n++] = *cqe;
	}
	r->held_n += n;
	io_uring_cq_advance(&r->ring, n);
	return 0;
}

/* The kernel refused SQEs for now: make room in the CQ (without dispatching:
 * this runs wherever an SQE is wanted, a task or a completion handler) and
 * let the caller submit again. Other errors are for the caller. */
static int make_room(struct urt__ring *r, int err)
{
	if (err != -EBUSY && err != -EAGAIN)
		return err;
	(void)io_uring_get_events(&r->ring);
	return urt__ring_hold(r);
}

/* Submit what the SQ holds, so that its entries are free again. Retries a
 * signal and, a bounded number of times, a kernel short of room. 0 or
 * -errno (the ring is unusable, or stays short of memory). */
#define SUBMIT_TRIES 64
static int flush(struct urt__ring *r)
{
	for (int tries = 0; tries < SUBMIT_TRIES; tries++) {
		int ret = io_uring_submit(&r->ring);

		if (ret >= 0)
			return 0;
		if (ret == -EINTR)
			continue;
		ret = make_room(r, ret);
		if (ret)
			return ret;
	}
	return -EAGAIN;
}

struct io_uring_sqe *urt__ring_sqe(struct urt__ring *r, struct urt__op *op)
{
	struct io_uring_sqe *sqe;

	if (r->ep)
		sqe = urt__ep_sqe(r);
	else while (!(sqe = io_uring_get_sqe(&r->ring))) {
		int ret = flush(r);

		if (ret) {
			r->error = ret;
			return NULL;
		}
	}
	io_uring_sqe_set_data(sqe, op);
	r->inflight++;
	r->sqes++;
	return sqe;
}

int urt__ring_reserve(struct urt__ring *r, unsigned n)
{
	if (r->ep) {
		if (urt__ep_sq_space(r) < n)
			urt__ep_flush(r);
		return 0;
	}
	while (io_uring_sq_space_left(&r->ring) < n) {
		int ret = flush(r);

		if (ret)
			return r->error = ret;
	}
	return 0;
}

/* The next CQE to dispatch, copied out: the held ones first (they are
 * older), then the CQ's. A CQ entry is consumed before its handler runs,
 * so that a handler that needs an SQE may hold the rest without either
 * being dispatched twice. */
static bool next_cqe(struct urt__ring *r, struct io_uring_cqe *out)
{
	struct io_uring_cqe *cqe;
	unsigned head;

	if (r->ep)
		return urt__ep_next_cqe(r, out);
	if (r->held_n) {
		*out = r->held[r->held_head++];
		if (!--r->held_n)
			r->held_head = 0;
		return true;
	}
	/* The CQ as user space sees it: io_uring_peek_cqe would enter the
	 * kernel on an empty CQ whenever task work is pending. */
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		*out = *cqe;
		io_uring_cq_advance(&r->ring, 1);
		return true;
	}
	return false;
}

/* Dispatch every CQE available. Only the loop's turn reaps, never a
 * handler: reaping never nests, and a handler (a user's destructor among
 * them) runs on the scheduler's stack, never on a task's. */
static int reap(struct urt__ring *r)
{
	struct io_uring_cqe cqe;
	int n = 0;

	assert(!r->reaping);
	r->reaping = true;
	while (next_cqe(r, &cqe)) {
		if (!n && r->stamp_reaps)
			r->reap_ns = urt_now_ns();
		dispatch(r, &cqe);
		n++;
	}
	r->reaping = false;
	return n;
}

int urt__ring_turn(struct urt__ring *r, bool wait)
{
	int ret, tries = 0;

	if (r->ep) {
		ret = urt__ep_turn(r, wait);
		return ret < 0 ? ret : reap(r);
	}
	/* CQEs held while an SQE was wanted are dispatched first; with some
	 * to dispatch, the turn does not wait. */
	if (r->held_n)
		wait = false;
	for (;;) {
		if (wait)
			ret = io_uring_submit_and_wait(&r->ring, 1);
		else
			ret = io_uring_submit(&r->ring);
		if (ret >= 0 || ret == -ETIME)
			break;
		if (ret == -EINTR)
			continue;
		/* Short of room: dispatch what is there, which frees room,
		 * and come back for the rest at the next turn. */
		if ((ret == -EBUSY || ret == -EAGAIN) && tries++ < SUBMIT_TRIES) {
			ret = make_room(r, ret);
			if (ret)
				return ret;
			if (r->held_n)
				break;
			continue;
		}
		return ret;
	}
	if (IO_URING_READ_ONCE(*r->ring.sq.kflags) & IORING_SQ_CQ_OVERFLOW)
		r->overflows++;
	return reap(r);
}


/* ---- MSG_RING from a thread without a loop ---- */

/* Kernel 6.13+: a MSG_RING sent with no source ring (liburing 2.3 has no
 * helper for it). */
#ifndef IORING_REGISTER_SEND_MSG_RING
#define IORING_REGISTER_SEND_MSG_RING 31
#endif

#define SEND_RETRY_MAX_US 10000u

/* Post a CQE (res len, user_data ud) into the ring whose fd is fd, with no
 * ring of our own. The send's result, or -errno. */
static int send_ringless(int fd, unsigned len, uint64_t ud)
{
	struct io_uring_sqe sqe;
	long ret;

	memset(&sqe, 0, sizeof(sqe));
	io_uring_prep_msg_ring(&sqe, fd, len, ud, 0);
	ret = syscall(__NR_io_uring_register, -1, IORING_REGISTER_SEND_MSG_RING, &sqe, 1);
	return ret < 0 ? -errno : (int)ret;
}

/* Once per process: 1 works, 0 does not, -1 not known yet. */
static atomic_int ringless_ok = -1, msg_ring_ok = -1;

bool urt__msg_ringless_works(void)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	int ok = atomic_load(&ringless_ok);

	if (ok >= 0)
		return ok;
	/* Send one to a scratch ring and look for its CQE. */
	ok = 0;
	if (io_uring_queue_init(2, &ring, 0) < 0)
		return false; /* not known: ask again */
	if (send_ringless(ring.ring_fd, 7, 0x75727421) == 0 && io_uring_peek_cqe(&ring, &cqe) == 0)
		ok = cqe->user_data == 0x75727421 && cqe->res == 7;
	io_uring_queue_exit(&ring);
	atomic_store(&ringless_ok, ok);
	return ok;
}

bool urt__msg_ring_works(void)
{
	struct io_uring from, to;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int ok = atomic_load(&msg_ring_ok);

	if (ok >= 0)
		return ok;
	/* Send one between two scratch rings. */
	if (io_uring_queue_init(2, &from, 0) < 0)
		return false;
	if (io_uring_queue_init(2, &to, 0) < 0) {
		io_uring_queue_exit(&from);
		return false;
	}
	sqe = io_uring_get_sqe(&from);
	io_uring_prep_msg_ring(sqe, to.ring_fd, 0, 0x75727421, 0);
	ok = io_uring_submit_and_wait(&from, 1) == 1 && io_uring_peek_cqe(&from, &cqe) == 0 &&
	     cqe->res == 0;
	io_uring_queue_exit(&to);
	io_uring_queue_exit(&from);
	atomic_store(&msg_ring_ok, ok);
	return ok;
}

int urt__msg_sender_init(struct urt__msg_sender *s, bool own_ring)
{
	int ret;

	s->has_ring = false;
	if (!own_ring)
		return 0;
	ret = io_uring_queue_init(2, &s->ring, 0);
	/* Where io_uring is denied, every loop is an epoll one, reached
	 * through its mailbox: no ring is needed. */
	if (ret == -EPERM || ret == -ENOSYS)
		return 0;
	if (ret < 0)
		return ret;
	s->has_ring = true;
	return 0;
}

void urt__msg_sender_fini(struct urt__msg_sender *s)
{
	if (s->has_ring)
		io_uring_queue_exit(&s->ring);
	s->has_ring = false;
}

/* The message from the sender's own ring. An SQE that a failed submit left
 * in the SQ goes again as it is: preparing another would send the message
 * twice. Returns the message's result or the submit's error. */
static int send_from_ring(struct urt__msg_sender *s, int fd, uint64_t ud)
{
	struct io_uring_cqe *cqe;
	int ret;

	if (!io_uring_sq_ready(&s->ring)) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

		/* Every message's CQE is consumed before the next one. */
		if (!sqe)
			return -EBUSY;
		io_uring_prep_msg_ring(sqe, fd, 0, ud, 0);
	}
	ret = io_uring_submit(&s->ring);
	if (ret < 0)
		return ret;
	while ((ret = io_uring_wait_cqe(&s->ring, &cqe)) == -EINTR)
		;
	if (ret < 0)
		return ret;
	ret = cqe->res;
	io_uring_cqe_seen(&s->ring, cqe);
	return ret;
}

bool urt__msg_transient(int err)
{
	return err == -EAGAIN || err == -EBUSY || err == -EINTR || err == -EOVERFLOW ||
	       err == -ENOMEM;
}

struct urt__ring_addr urt__ring_addr(const struct urt__ring *r)
{
	struct urt__box *b;

	if (!r->ep)
		return (struct urt__ring_addr){ .fd = r->ring.ring_fd };
	b = urt__ep_box(r);
	urt__box_get(b);
	return (struct urt__ring_addr){ .fd = -1, .box = b };
}

void urt__ring_addr_put(struct urt__ring_addr to)
{
	urt__box_put(to.box);
}

int urt__ring_msg(struct urt__ring *r, struct urt__op *op, const struct urt__ring *to,
		  uint64_t ud)
{
	struct io_uring_sqe *sqe;
	int ret;

	if (to->ep) {
		/* Into the mailbox now: op has nothing to wait for. */
		ret = urt__box_send(urt__ep_box(to), ud);
		return ret ? ret : 0;
	}
	if (r->ep) {
		/* An epoll loop has no ring to send from. */
		ret = send_ringless(to->ring.ring_fd, 0, ud);
		return ret < 0 ? ret : 0;
	}
	sqe = urt__ring_sqe(r, op);
	if (!sqe)
		return r->error;
	io_uring_prep_msg_ring(sqe, to->ring.ring_fd, 0, ud, 0);
	return 1;
}

void urt__msg_send(struct urt__msg_sender *s, struct urt__ring_addr to, uint64_t ud)
{
	int fd = to.fd;
	unsigned pause_us = 50;

	if (to.box) {
		while (urt__box_send(to.box, ud)) {
			usleep(pause_us);
			if (pause_us < SEND_RETRY_MAX_US)
				pause_us *= 2;
		}
		urt__box_put(to.box);
		return;
	}

	for (;;) {
		int ret;

		if (s->has_ring) {
			ret = send_from_ring(s, fd, ud);
		} else {
			ret = send_ringless(fd, 0, ud);
		}
		if (ret >= 0 || !urt__msg_transient(ret))
			return;
		usleep(pause_us);
		if (pause_us < SEND_RETRY_MAX_US)
			pause_us *= 2;
	}
}
