/* io: the operations a task awaits. Each prepares at most one SQE whose
 * record lives on the task's stack, parks the task, and returns the CQE's
 * result once that CQE, and no other event, has woken the task. */
#define _GNU_SOURCE /* struct statx */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

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


static void ts_of(struct __kernel_timespec *ts, uint64_t ns)
{
	ts->tv_sec = (long long)(ns / 1000000000u);
	ts->tv_nsec = (long long)(ns % 1000000000u);
}

/* Park until the operation's own CQE arrives: never earlier, even when the
 * task is cancelled meanwhile (urt__iop_cancel only asks the kernel). With
 * a deadline, an IORING_OP_LINK_TIMEOUT follows sqe in the same submit and
 * the kernel cancels the operation when it fires: -ETIMEDOUT. */
static int iop_wait(struct urt__iop *iop, struct io_uring_sqe *sqe)
{
	struct urt_task *t = iop->task;

	if (t->deadline != UINT64_MAX) {
		struct io_uring_sqe *lt;

		sqe->flags |= IOSQE_IO_LINK;
		ts_of(&iop->ts, t->deadline);
		lt = urt__ring_sqe(&t->loop->ring, NULL);
		assert(lt); /* op_start reserved it */
		io_uring_prep_link_timeout(lt, &iop->ts, IORING_TIMEOUT_ABS);
		iop->linked = true;
	}
	t->iop = iop;
	urt__park(t, URT__WAIT_IO);
	t->iop = NULL;
	assert(iop->done);
	/* The timeout cancelled the operation: -ECANCELED, or -EINTR from
	 * one that had started in an io-wq thread. */
	if (iop->linked && !iop->cancel_sent && (iop->res == -ECANCELED || iop->res == -EINTR))
		return -ETIMEDOUT;
	return iop->res;
}

void urt__iop_cancel(struct urt_task *t)
{
	struct urt__iop *iop = t->iop;
	struct io_uring_sqe *sqe;

	if (iop->cancel_sent || iop->done)
		return;
	sqe = urt__ring_sqe(&t->loop->ring, NULL);
	if (!sqe)
		return; /* the ring is unusable: the loop's run reports it */
	iop->cancel_sent = true;
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&iop->op, 0);
}

int urt_sleep_ns(uint64_t ns)
{
	struct urt_task *t = urt__cur_task;
	uint64_t until, at;
	int ret;

	if (!t)
		return -EPERM;
	ret = urt__wait_check(t);
	if (ret)
		return ret;
	until = urt__deadline_after(ns);
	at = until < t->deadline ? until : t->deadline;
	ret = urt__timer_add(t->loop, t, at);
	if (ret)
		return ret;
	ret = urt__park(t, URT__WAIT_SLEEP);
	if (ret == 0 && at < until)
		return -ETIMEDOUT; /* the task's deadline came first */
	return ret;
}

/* The calling task's next I/O operation: an SQE for iop, or NULL with *err
 * set (-EPERM outside a task, -ECANCELED once the task is cancelled,
 * -ETIMEDOUT once its deadline has passed). With a deadline, room is made
 * for the linked timeout that iop_wait adds. */
static struct io_uring_sqe *op_start(struct urt__iop *iop, int *err)
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
	iop->op = (struct urt__op){ .done = iop_done };
	iop->task = t;
	iop->res = 0;
	iop->done = false;
	iop->cancel_sent = false;
	iop->linked = false;
	sqe = urt__ring_sqe(&t->loop->ring, &iop->op);
	if (!sqe)
		*err = t->loop->ring.error;
	return sqe;
}

/*
 * Every operation's body: prep is the SQE as the operation wants it (an
 * io_uring_prep_* call on a local SQE); it goes to the ring as the calling
 * task's next I/O and the task parks until its CQE. Returns the CQE's
 * result, or, with nothing sent, -EPERM (outside a task), -ECANCELED,
 * -ETIMEDOUT. iop is the operation's record, for what the caller reads
 * after (fd_result).
 */
static int op_run(const struct io_uring_sqe *prep, struct urt__iop *iop)
{
	int err = 0;
	struct io_uring_sqe *sqe = op_start(iop, &err);

	if (!sqe)
		return err;
	*sqe = *prep;
	io_uring_sqe_set_data(sqe, &iop->op);
	return iop_wait(iop, sqe);
}

/* An operation's own argument check failed: err, but -EPERM outside a
 * task, which comes first for every call. */
static int op_refuse(int err)
{
	return urt__cur_task ? err : -EPERM;
}

static uint64_t rw_offset(int64_t offset)
{
	return offset < 0 ? (uint64_t)-1 : (uint64_t)offset;
}

/* A cancelled open or accept that the kernel completed anyway (the cancel
 * came too late to stop it): the task is cancelled, so it is told
 * -ECANCELED and never sees the fd; close it here, or it leaks. */
static int fd_result(struct urt__iop *iop, int res)
{
	if (res >= 0 && iop->cancel_sent) {
		close(res);
		return -ECANCELED;
	}
	return res;
}

/* One buffer, one SQE: read, write, recv, send and their fixed forms share
 * it. msg_flags goes to recv and send, buf_index to the fixed forms. The
 * length is capped as read(2) and write(2) cap it. */
static ssize_t buf_op(int opcode, int fd, const void *buf, size_t len, uint64_t offset,
		      int msg_flags, unsigned buf_index, unsigned sqe_flags)
{
	struct io_uring_sqe sqe;
	struct urt__iop iop;
	int res;

	if (len > SSIZE_MAX)
		return op_refuse(-EINVAL);
	if (len > URT__MAX_RW)
		len = URT__MAX_RW;
	io_uring_prep_rw(opcode, &sqe, fd, buf, (unsigned)len, offset);
	sqe.msg_flags = (uint32_t)msg_flags;
	sqe.buf_index = (uint16_t)buf_index;
	sqe.flags |= (uint8_t)sqe_flags;
	res = op_run(&sqe, &iop);
#if URT__VALGRIND
	/* The kernel filled the buffer behind valgrind's back. */
	if (res > 0 && (opcode == IORING_OP_READ || opcode == IORING_OP_RECV ||
			opcode == IORING_OP_READ_FIXED))
		VALGRIND_MAKE_MEM_DEFINED(buf, (size_t)res);
#endif
	return res;
}

ssize_t urt_read(int fd, void *buf, size_t len, int64_t offset)
{
	return buf_op(IORING_OP_READ, fd, buf, len, rw_offset(offset), 0, 0, 0);
}

ssize_t urt_write(int fd, const void *buf, size_t len, int64_t offset)
{
	return buf_op(IORING_OP_WRITE, fd, buf, len, rw_offset(offset), 0, 0, 0);
}

/* ---- registered files and buffers ---- */

int urt_loop_register_files(urt_loop *loop, const int *fds, unsigned n)
{
	if (!loop || !fds || !n)
		return -EINVAL;
	if (!pthread_equal(loop->owner, pthread_self()))
		return -EPERM;
	return io_uring_register_files(&loop->ring.ring, fds, n);
}

int urt_loop_register_buffers(urt_loop *loop, const struct iovec *iov, unsigned n)
{
	if (!loop || !iov || !n)
		return -EINVAL;
	if (!pthread_equal(loop->owner, pthread_self()))
		return -EPERM;
	return io_uring_register_buffers(&loop->ring.ring, iov, n);
}

static ssize_t rw_fixed(int opcode, int fd, const void *buf, size_t len, int64_t offset,
			unsigned buf_index, unsigned flags)
{
	if (flags & ~URT_FIXED_FILE)
		return op_refuse(-EINVAL);
	return buf_op(opcode, fd, buf, len, rw_offset(offset), 0, buf_index,
		      (flags & URT_FIXED_FILE) ? IOSQE_FIXED_FILE : 0);
}

ssize_t urt_read_fixed(int fd, void *buf, size_t len, int64_t offset, unsigned buf_index,
		       unsigned flags)
{
	return rw_fixed(IORING_OP_READ_FIXED, fd, buf, len, offset, buf_index, flags);
}

ssize_t urt_write_fixed(int fd, const void *buf, size_t len, int64_t offset,
			unsigned buf_index, unsigned flags)
{
	return rw_fixed(IORING_OP_WRITE_FIXED, fd, buf, len, offset, buf_index, flags);
}

int urt_fsync(int fd, unsigned flags)
{
	struct io_uring_sqe sqe;
	struct urt__iop iop;

	if (flags & ~URT_FSYNC_DATA)
		return op_refuse(-EINVAL);
	io_uring_prep_fsync(&sqe, fd, (flags & URT_FSYNC_DATA) ? IORING_FSYNC_DATASYNC : 0);
	return op_run(&sqe, &iop);
}

/* Vectored read or write: the kernel checks the vector (-EINVAL for more
 * than IOV_MAX entries, -EFAULT for a bad one). */
static ssize_t rwv(int fd, const struct iovec *iov, int iovcnt, int64_t offset, bool write)
{
	struct io_uring_sqe sqe;
	struct urt__iop iop;
	int res;

	if (iovcnt < 0)
		return op_refuse(-EINVAL);
	if (write)
		io_uring_prep_writev(&sqe, fd, iov, (unsigned)iovcnt, rw_offset(offset));
	else
		io_uring_prep_readv(&sqe, fd, iov, (unsigned)iovcnt, rw_offset(offset));
	res = op_run(&sqe, &iop);
#if URT__VALGRIND
	for (int i = 0, left = res; !write && i < iovcnt && left > 0; i++) {
		size_t n = iov[i].iov_len < (size_t)left ? iov[i].iov_len : (size_t)left;

		VALGRIND_MAKE_MEM_DEFINED(iov[i].iov_base, n);
		left -= (int)n;
	}
#endif
	return res;
}

ssize_t urt_readv(int fd, const struct iovec *iov, int iovcnt, int64_t offset)
{
	return rwv(fd, iov, iovcnt, offset, false);
}

ssize_t urt_writev(int fd, const struct iovec *iov, int iovcnt, int64_t offset)
{
	return rwv(fd, iov, iovcnt, offset, true);
}

int urt_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	struct io_uring_sqe sqe;
	struct urt__iop iop;

	if (!path)
		return op_refuse(-EFAULT);
	io_uring_prep_openat(&sqe, dirfd, path, flags, mode);
	return fd_result(&iop, op_run(&sqe, &iop));
}

int urt_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out)
{
	struct io_uring_sqe sqe;
	struct urt__iop iop;
	int res;

	if (!path || !out)
		return op_refuse(-EFAULT);
	io_uring_prep_statx(&sqe, dirfd, path, flags, mask, out);
	res = op_run(&sqe, &iop);
#if URT__VALGRIND
	if (res == 0)
		VALGRIND_MAKE_MEM_DEFINED(out, sizeof(*out));
#endif
	return res;
}

int urt_close(int fd)
{
	struct io_uring_sqe sqe;
	struct urt__iop iop;

	io_uring_prep_close(&sqe, fd);
	return op_run(&sqe, &iop);
}

/* ---- sockets ---- */

int urt_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
	struct io_uring_sqe sqe;
	struct urt__iop iop;
	int res;

	io_uring_prep_accept(&sqe, fd, addr, addrlen, flags);
	res = fd_result(&iop, op_run(&sqe, &iop));
#if URT__VALGRIND
	if (res >= 0 && addr && addrlen)
		VALGRIND_MAKE_MEM_DEFINED(addr, *addrlen);
#endif
	return res;
}

int urt_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	struct io_uring_sqe sqe;
	struct urt__iop iop;

	io_uring_prep_connect(&sqe, fd, addr, addrlen);
	return op_run(&sqe, &iop);
}

ssize_t urt_recv(int fd, void *buf, size_t len, int flags)
{
	return buf_op(IORING_OP_RECV, fd, buf, len, 0, flags, 0, 0);
}

ssize_t urt_send(int fd, const void *buf, size_t len, int flags)
{
	return buf_op(IORING_OP_SEND, fd, buf, len, 0, flags | MSG_NOSIGNAL, 0, 0);
}

int urt_shutdown(int fd, int how)
{
	struct io_uring_sqe sqe;
	struct urt__iop iop;

	io_uring_prep_shutdown(&sqe, fd, how);
	return op_run(&sqe, &iop);
}

int urt_poll(int fd, unsigned events)
{
	struct io_uring_sqe sqe;
	struct urt__iop iop;

	io_uring_prep_poll_add(&sqe, fd, events);
	return op_run(&sqe, &iop);
}

/* ---- acceptors: one multishot accept, connections queued ---- */

#define ACCEPT_QUEUE 64u

struct urt_acceptor {
	struct urt__op op;
	struct urt_loop *loop;
	struct urt_acceptor *prev, *next; /* the loop's acceptors */
	int fd, flags;
	int *queue;                /* accepted, not taken yet (a ring) */
	unsigned head, len, cap;
	int err;                   /* an accept error for the next taker */
	struct urt__waitq takers;
	/* One-by-one mode: the takers parked in their own accept, which a
	 * close cancels; the acceptor is freed when the last has returned. */
	struct oneshot *oneshots;
	unsigned users;            /* takers inside urt_acceptor_next: a closed
				    * acceptor is freed when the last leaves */
	uint64_t pause_ns;         /* out of fds: the takers' next pause */
	bool exhausted;            /* out of fds, reported: pause, not again */
	bool armed;                /* the multishot accept is in flight */
	bool pausing;              /* a cancel is on its way: the queue is full */
	bool multishot;            /* false: the kernel has no multishot accept */
	bool closed;               /* urt_acceptor_close: free once disarmed */
};

/* A taker's plain accept in one-by-one mode, on the taker's stack. */
struct oneshot {
	struct oneshot *prev, *next;
	struct urt_task *task;
};

static void acceptor_free(struct urt_acceptor *a)
{
	if (a->prev)
		a->prev->next = a->next;
	else
		a->loop->acceptors = a->next;
	if (a->next)
		a->next->prev = a->prev;
	free(a->queue);
	free(a);
}

/* Arm the multishot accept. Without an SQE (the ring is unusable) the
 * next taker hears why. */
static void acceptor_arm(struct urt_acceptor *a)
{
	struct io_uring_sqe *sqe = urt__ring_sqe(&a->loop->ring, &a->op);

	if (!sqe) {
		if (!a->err)
			a->err = a->loop->ring.error;
		return;
	}
	io_uring_prep_multishot_accept(sqe, a->fd, NULL, NULL, a->flags);
	a->armed = true;
}

/* Ask the kernel to end the multishot accept; its last CQE (without
 * IORING_CQE_F_MORE) tells when it has. */
static void acceptor_disarm(struct urt_acceptor *a)
{
	struct io_uring_sqe *sqe = urt__ring_sqe(&a->loop->ring, NULL);

	if (!sqe)
		return; /* stays armed: the ring is unusable anyway */
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&a->op, 0);
	a->pausing = true;
}

/* Queue an accepted socket. Past ACCEPT_QUEUE the acceptor pauses, but
 * the kernel may post a few more before the cancel reaches it: the queue
 * grows for those. 0 or -ENOMEM. */
static int acceptor_queue(struct urt_acceptor *a, int fd)
{
	if (a->len == a->cap) {
		unsigned cap = a->cap ? 2 * a->cap : ACCEPT_QUEUE;
		int *q = malloc(cap * sizeof(*q));

		if (!q)
			return -ENOMEM;
		for (unsigned i = 0; i < a->len; i++)
			q[i] = a->queue[(a->head + i) % a->cap];
		free(a->queue);
		a->queue = q;
		a->head = 0;
		a->cap = cap;
	}
	a->queue[(a->head + a->len) % a->cap] = fd;
	a->len++;
	return 0;
}

/* The oldest queued socket. */
static int acceptor_take(struct urt_acceptor *a)
{
	int fd = a->queue[a->head];

	a->head = (a->head + 1) % a->cap;
	a->len--;
	return fd;
}

static void acceptor_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt_acceptor *a = (struct urt_acceptor *)op;

	if (!(flags & IORING_CQE_F_MORE)) {
		a->armed = false;
		a->pausing = false;
	}
	if (a->closed) {
		if (res >= 0)
			close(res);
		if (!a->armed && !a->users)
			acceptor_free(a);
		return;
	}
	if (res >= 0) {
		a->exhausted = false; /* the episode is over */
		if (a->takers.head) {
			urt__waitq_wake(a->takers.head, res);
		} else if (acceptor_queue(a, res)) {
			/* Out of memory: the connection is reset, the next
			 * taker hears why. */
			close(res);
			if (!a->err)
				a->err = -ENOMEM;
		} else if (a->len >= ACCEPT_QUEUE && a->armed && !a->pausing) {
			acceptor_disarm(a);
		}
		/* The kernel ended the multishot (its CQ overflowed, ...):
		 * arm it again while there is room. */
		if (!a->armed && a->len < ACCEPT_QUEUE)
			acceptor_arm(a);
		return;
	}
	if (res == -ECANCELED && !a->armed) {
		/* Paused: urt_acceptor_next arms it again, or now, for a
		 * taker that came while the cancel was on its way. */
		if (a->takers.head)
			acceptor_arm(a);
		return;
	}
	if (res == -EINVAL && a->multishot && !a->armed) {
		/* No multishot accept in this kernel: takers accept one by
		 * one. Wake the waiting ones to do so. */
		a->multishot = false;
		urt__waitq_wake_all(&a->takers, -EAGAIN);
		return;
	}
	/* An accept error (-EMFILE, ...): the next taker gets it; the
	 * acceptor arms again at the next urt_acceptor_next. */
	if (a->takers.head)
		urt__waitq_wake(a->takers.head, res);
	else if (!a->err)
		a->err = res;
}

int urt_acceptor_create(urt_loop *loop, urt_acceptor **out, int fd, int flags)
{
	struct urt_acceptor *a;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!loop)
		loop = urt__cur_loop;
	if (!loop || fd < 0 || (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC | URT_ACCEPTOR_ONESHOT)))
		return -EINVAL;
	if (!pthread_equal(loop->owner, pthread_self()))
		return -EPERM;
	if (loop->destroying)
		return -ESHUTDOWN;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->op.done = acceptor_done;
	a->loop = loop;
	a->fd = fd;
	a->flags = flags & ~URT_ACCEPTOR_ONESHOT;
	a->multishot = !(flags & URT_ACCEPTOR_ONESHOT);
	a->next = loop->acceptors;
	if (a->next)
		a->next->prev = a;
	loop->acceptors = a;
	if (a->multishot)
		acceptor_arm(a);
	*out = a;
	return 0;
}

/* One-by-one mode: a plain accept of the taker's own, which
 * urt_acceptor_close cancels. A connection accepted as the acceptor closes
 * is closed: the taker gets -EBADF (or -ECANCELED, cancelled itself). */
static int acceptor_accept_one(struct urt_acceptor *a, struct urt_task *t)
{
	struct oneshot os = { .next = a->oneshots, .task = t };
	int fd;

	if (os.next)
		os.next->prev = &os;
	a->oneshots = &os;
	fd = urt_accept(a->fd, NULL, NULL, a->flags);
	if (os.prev)
		os.prev->next = os.next;
	else
		a->oneshots = os.next;
	if (os.next)
		os.next->prev = os.prev;
	if (a->closed) {
		/* The close's own cancel, or a connection that came first:
		 * -EBADF. Another end (a deadline, an error) stays. */
		if (fd >= 0 || (fd == -ECANCELED && !t->cancelled)) {
			if (fd >= 0)
				close(fd);
			fd = -EBADF;
		}
	} else if (fd >= 0) {
		a->exhausted = false;
	}
	return fd;
}

/* The process or the system is out of file descriptors. */
static bool fds_exhausted(int err)
{
	return err == -EMFILE || err == -ENFILE;
}

#define PAUSE_FIRST_NS (10 * 1000 * 1000ull)
#define PAUSE_MAX_NS (1000 * 1000 * 1000ull)

/* Out of fds, already reported: wait on the takers' queue for the pause,
 * then try again. 0 when the pause is over; a connection (another taker
 * armed the accept meanwhile); or -errno (closed, cancelled, the task's
 * deadline). Pauses double from 10 ms to 1 s within an episode. */
static int acceptor_pause(struct urt_acceptor *a, struct urt_task *t)
{
	uint64_t until = urt__deadline_after(a->pause_ns);
	struct urt__waiter w;
	int ret;

	if (a->pause_ns < PAUSE_MAX_NS)
		a->pause_ns *= 2;
	/* Another taker's accept failing again wakes the queue's head: the
	 * pause goes on. */
	do
		ret = urt__waitq_park_until(&a->takers, &w, t,
					    until < t->deadline ? until : t->deadline);
	while (fds_exhausted(ret) && !a->closed);
	if (ret == -ETIMEDOUT && urt_now_ns() < t->deadline)
		return 0;
	return ret;
}

static int acceptor_next(struct urt_acceptor *a, struct urt_task *t)
{
	struct urt__waiter w;
	int ret;

	for (;;) {
		if (a->closed)
			return -EBADF;
		if (a->len) {
			ret = acceptor_take(a);
		} else if (a->err) {
			ret = a->err;
			a->err = 0;
		} else if (!a->multishot) {
			ret = acceptor_accept_one(a, t);
		} else {
			if (!a->armed) {
				acceptor_arm(a);
				if (!a->armed)
					continue; /* no SQE: a->err says why */
			}
			ret = urt__waitq_park(&a->takers, &w, t);
			if (ret == -EAGAIN)
				continue; /* the kernel has no multishot: go on */
		}
		/*
		 * Out of fds: the first taker hears it; then, until a
		 * connection is accepted again, takers pause and retry
		 * rather than spin on the kernel's error, and the clients
		 * wait in the listen backlog.
		 */
		if (fds_exhausted(ret) && !a->closed) {
			if (a->exhausted) {
				ret = acceptor_pause(a, t);
				if (ret == 0)
					continue;
				if (ret >= 0)
					a->exhausted = false;
				return ret;
			}
			a->exhausted = true;
			a->pause_ns = PAUSE_FIRST_NS;
			return ret;
		}
		/* Accept again if the multishot was paused or ended on an
		 * error. */
		if (!a->closed && !a->armed && a->multishot && !a->err)
			acceptor_arm(a);
		return ret;
	}
}

int urt_acceptor_next(urt_acceptor *a)
{
	struct urt_task *t = urt__cur_task;
	int ret;

	if (!a || a->closed)
		return -EINVAL;
	if (!t)
		return -EPERM;
	if (t->loop != a->loop)
		return -EXDEV;
	ret = urt__wait_check(t);
	if (ret)
		return ret;
	a->users++;
	ret = acceptor_next(a, t);
	if (!--a->users && a->closed && !a->armed)
		acceptor_free(a);
	return ret;
}

int urt_acceptor_close(urt_acceptor *a)
{
	if (!a || a->closed)
		return -EINVAL;
	if (!pthread_equal(a->loop->owner, pthread_self()))
		return -EPERM;
	a->closed = true;
	while (a->len)
		close(acceptor_take(a));
	urt__waitq_wake_all(&a->takers, -EBADF);
	for (struct oneshot *os = a->oneshots; os; os = os->next)
		urt__iop_cancel(os->task);
	if (!a->armed && !a->users)
		acceptor_free(a);
	else if (!a->pausing)
		acceptor_disarm(a);
	return 0;
}

void urt__acceptors_close(struct urt_loop *loop, bool free_all)
{
	struct urt_acceptor *a, *next;

	for (a = loop->acceptors; a; a = next) {
		next = a->next;
		if (free_all)
			acceptor_free(a);
		else if (!a->closed)
			urt_acceptor_close(a);
	}
}

/* ---- offloaded jobs ---- */

static struct urt_loop *loop_of_done(struct urt__done *d)
{
	return (struct urt_loop *)((char *)d - offsetof(struct urt_loop, done));
}

static void job_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__job *job = (struct urt__job *)((char *)op - offsetof(struct urt__job, op));
	struct urt_loop *loop = loop_of_done(job->done);
	struct urt_task *t = job->waiter;

	(void)flags;
	loop->jobs_inflight--;
	if (job->lprev)
		job->lprev->lnext = job->lnext;
	else
		loop->jobs = job->lnext;
	if (job->lnext)
		job->lnext->lprev = job->lprev;
	if (!job->owned) {
		job->res = res;
		urt__wake(t, res);
		return;
	}
	/* An owned job: whoever owns arg now is told, then the record goes.
	 * A dropped job's arg belongs to the pool, as an abandoned one's. */
	if (!t || res < 0) {
		if (job->dtor)
			job->dtor(job->arg);
	}
	if (t) {
		t->job = NULL;
		urt__wake(t, res);
	}
	free(job);
}

void urt__job_abandon(struct urt_task *t, int res)
{
	t->job->waiter = NULL;
	t->job = NULL;
	urt__wake(t, res);
}

/* A wake-up from the pool: every job on the finished list completes, in
 * the order the workers finished them. */
static void done_wake(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__done *d = (struct urt__done *)((char *)op - offsetof(struct urt__done, wake));
	struct urt_loop *loop = loop_of_done(d);
	struct urt__job *j, *next;

	(void)res;
	(void)flags;
	for (j = urt__done_take(d); j; j = next) {
		next = j->next; /* an owned job is freed as it completes */
		urt__ring_complete(&loop->ring, &j->op, j->res);
	}
}

/* Queue a job for the loop's next turn, which hands every job queued in the
 * turn to the pool at once. */
static int job_submit(struct urt_task *t, struct urt__job *job)
{
	struct urt_loop *loop = t->loop;
	struct urt_pool *pool;

	if (loop->destroying)
		return -ESHUTDOWN;
	pool = urt_loop_pool(loop);
	if (!pool)
		return loop->pool_err;
	if (!loop->done.wake.done) {
		loop->done.wake.done = done_wake;
		loop->done.wake.unsolicited = true;
		loop->done.ring_fd = loop->ring.ring.ring_fd;
	}
	job->op = (struct urt__op){ .done = job_done };
	job->waiter = t;
	job->done = &loop->done;
	job->next = NULL;
	job->res = 0;
	atomic_init(&job->state, URT__JOB_QUEUED);
	job->lprev = NULL;
	job->lnext = loop->jobs;
	if (loop->jobs)
		loop->jobs->lprev = job;
	loop->jobs = job;
	if (loop->jq_tail)
		loop->jq_tail->next = job;
	else
		loop->jq_head = job;
	loop->jq_tail = job;
	loop->jq_n++;
	loop->jobs_inflight++;
	urt__ring_expect(&loop->ring);
	return 0;
}

/* Whether the calling task t may offload fn: 0 or -errno. */
static int offload_allowed(struct urt_task *t, void (*fn)(void *))
{
	if (!t)
		return -EPERM;
	if (!fn)
		return -EINVAL;
	return urt__wait_check(t);
}

int urt__to_thread(void (*fn)(void *), void *arg)
{
	struct urt_task *t = urt__cur_task;
	struct urt__job job = { .fn = fn, .arg = arg };
	int ret = offload_allowed(t, fn);

	if (ret)
		return ret;
	ret = job_submit(t, &job);
	if (ret)
		return ret;
	/* The job lives in this frame: only its completion may wake us. */
	return urt__park(t, URT__WAIT_POOL);
}

int urt__job_run(void (*fn)(void *), void *arg, void (*dtor)(void *), uint64_t timeout_ns)
{
	struct urt_task *t = urt__cur_task;
	struct urt__job *job;
	uint64_t at;
	int ret = offload_allowed(t, fn);

	/* -ECANCELED and -ETIMEDOUT always hand arg to the pool, also before
	 * submitting: the caller cannot tell the cases apart, so they must
	 * mean the same. */
	if ((ret == -ECANCELED || ret == -ETIMEDOUT) && dtor)
		dtor(arg);
	if (ret)
		return ret;
	job = aligned_alloc(_Alignof(struct urt__job), sizeof(*job));
	if (!job)
		return -ENOMEM;
	memset(job, 0, sizeof(*job));
	job->fn = fn;
	job->arg = arg;
	job->dtor = dtor;
	job->owned = true;
	ret = job_submit(t, job);
	if (ret) {
		free(job);
		return ret;
	}
	t->job = job;
	/* The earlier of its own timeout and the task's deadline. On -ENOMEM
	 * the job is queued already: wait without a deadline rather than
	 * leave it without an owner. */
	at = timeout_ns ? urt__deadline_after(timeout_ns) : UINT64_MAX;
	if (t->deadline < at)
		at = t->deadline;
	if (at != UINT64_MAX)
		(void)urt__timer_add(t->loop, t, at);
	return urt__park(t, URT__WAIT_JOB);
}

void urt__jobs_drop(struct urt_loop *loop)
{
	struct urt__job *j;

	/* A job a worker has claimed but not started is marked: the worker
	 * posts its completion with -ECANCELED instead of running it. */
	for (j = loop->jobs; j; j = j->lnext) {
		int queued = URT__JOB_QUEUED;

		atomic_compare_exchange_strong(&j->state, &queued, URT__JOB_DROPPED);
	}
	/* Jobs not yet handed to the pool complete here and now. */
	while ((j = loop->jq_head)) {
		loop->jq_head = j->next;
		urt__ring_complete(&loop->ring, &j->op, -ECANCELED);
	}
	loop->jq_tail = NULL;
	loop->jq_n = 0;
	/* Jobs still in the pool's queue are taken back and complete here. */
	if (loop->pool) {
		struct urt__job *next;

		for (j = urt__pool_drop(loop->pool, &loop->done); j; j = next) {
			next = j->next;
			urt__ring_complete(&loop->ring, &j->op, -ECANCELED);
		}
	}
}
