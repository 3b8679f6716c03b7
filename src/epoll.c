/* epoll: the ring layer where io_uring is denied. The SQEs the layers above
 * prepare are run in user space: each is tried as the nonblocking system
 * call it names (a regular file's cached pages are read at once); one that
 * would block waits for its fd's readiness in an epoll set and is tried
 * again; one that would block on a regular file, for the disk (or open,
 * statx, fsync), is handed to the layer above to run on a thread.
 * Results go into a completion queue of our own and reach their ops'
 * done() from the loop's turn, exactly as CQEs do. Timeouts (the timer
 * layer's one armed timeout, each operation's linked timeout) are a heap
 * that bounds epoll_wait's sleep. Messages from other threads come through
 * a mailbox, a bounded lock-free queue, and an eventfd that wakes the loop
 * only when it sleeps in epoll_wait. */
#define _GNU_SOURCE /* preadv2, RWF_NOWAIT, accept4, statx */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ring.h"

/* One SQE being run: waiting for its fd, for its time (a timeout), or on a
 * thread. Allocated per operation from a free list. */
struct urt__ring_exec {
	struct io_uring_sqe sqe;
	struct urt__op *op;          /* its user_data */
	struct ep_fd *on;            /* the fd it waits on, NULL if none */
	TAILQ_ENTRY(urt__ring_exec) fd_link;
	uint32_t events;             /* what it waits for on its fd */
	uint64_t deadline;           /* a timeout's, or the linked timeout's */
	size_t heap_i;               /* in the deadline heap; NO_HEAP: not */
	uint64_t link_ud;            /* the linked timeout's user_data */
	size_t moved;                /* MSG_WAITALL: bytes moved so far */
	int32_t res;                 /* set by the thread that ran it */
	bool linked;                 /* a linked timeout follows it */
	bool timeout;                /* an IORING_OP_TIMEOUT */
	bool connecting;             /* a connect that is in progress */
	bool running;                /* handed to the layer above */
	struct urt__ring_exec *next_free;
};

#define NO_HEAP SIZE_MAX

struct ep_fd {
	TAILQ_HEAD(, urt__ring_exec) waiters; /* oldest first */
	uint32_t armed;              /* events the (one-shot) interest has */
};

/* Messages from any thread: a bounded multi-producer queue of user_data
 * values (Vyukov's, one sequence number per slot), and an eventfd that a
 * sender writes only when the loop sleeps (or is about to) in epoll_wait:
 * a loop that runs or spins reads the queue itself, with no system call on
 * either side. It outlives the ring while a sender holds a reference.
 *
 * The loop sets sleeping, then looks at the queue once more before it
 * waits; a sender publishes its message, then looks at sleeping. Both in
 * sequentially consistent order: either the loop sees the message, or the
 * sender sees sleeping and wakes the loop (one sender per sleep: the one
 * that clears it). */
struct box_slot {
	_Atomic uint64_t seq;
	uint64_t ud;
};

struct urt__box {
	_Atomic long refs;
	int evfd;
	_Atomic int sleeping;        /* the loop waits, or is about to */
	uint64_t mask;
	_Atomic uint64_t tail __attribute__((aligned(128))); /* senders */
	uint64_t head __attribute__((aligned(128)));         /* the loop */
	struct box_slot slots[];
};

struct urt__ep {
	int epfd;
	struct urt__box *box;
	struct io_uring_sqe *sq;     /* prepared, not yet run */
	unsigned sq_n, sq_cap;
	struct io_uring_cqe *cq;     /* results, not yet dispatched */
	size_t cq_head, cq_n, cq_cap;
	struct urt__ring_exec **heap; /* deadlines, earliest first */
	size_t heap_n, heap_cap;
	struct ep_fd **fds;          /* by fd number */
	size_t nfds;
	size_t waiting;              /* records waiting on an fd */
	struct urt__ring_exec *free_list;
	urt__ring_exec_fn exec;
	void *exec_ctx;
	bool files_on_pool;          /* no file I/O on the loop's thread */
};

/* ---- the mailbox ---- */

static struct urt__box *box_new(unsigned entries)
{
	uint64_t cap = 64;
	struct urt__box *b;

	while (cap < entries)
		cap *= 2;
	b = urt__alloc_lines(sizeof(*b) + cap * sizeof(b->slots[0]));
	if (!b)
		return NULL;
	b->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->evfd < 0) {
		free(b);
		return NULL;
	}
	for (uint64_t i = 0; i < cap; i++)
		atomic_init(&b->slots[i].seq, i);
	b->mask = cap - 1;
	atomic_init(&b->refs, 1);
	return b;
}

void urt__box_put(struct urt__box *b)
{
	if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
		close(b->evfd);
		free(b);
	}
}

void urt__box_get(struct urt__box *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

int urt__box_send(struct urt__box *b, uint64_t ud)
{
	uint64_t pos = atomic_load_explicit(&b->tail, memory_order_relaxed);
	struct box_slot *s;

	for (;;) {
		int64_t d;

		s = &b->slots[pos & b->mask];
		d = (int64_t)(atomic_load_explicit(&s->seq, memory_order_acquire) - pos);
		if (d == 0) {
			if (atomic_compare_exchange_weak_explicit(&b->tail, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed))
				break;
		} else if (d < 0) {
			return -EOVERFLOW; /* full: as a full CQ answers MSG_RING */
		} else {
			pos = atomic_load_explicit(&b->tail, memory_order_relaxed);
		}
	}
	s->ud = ud;
	/* Sequentially consistent, as the loop's side: see struct urt__box. */
	atomic_store_explicit(&s->seq, pos + 1, memory_order_seq_cst);
	if (atomic_load_explicit(&b->sleeping, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&b->sleeping, 0, memory_order_relaxed)) {
		uint64_t one = 1;

		/* Cannot fail short of a full counter, which it never is. */
		(void)!write(b->evfd, &one, sizeof(one));
	}
	return 0;
}

/* The loop takes one message; false when there is none (yet). */
static bool box_take(struct urt__box *b, uint64_t *ud)
{
	struct box_slot *s = &b->slots[b->head & b->mask];

	if (atomic_load_explicit(&s->seq, memory_order_acquire) != b->head + 1)
		return false;
	*ud = s->ud;
	atomic_store_explicit(&s->seq, b->head + b->mask + 1, memory_order_release);
	b->head++;
	return true;
}

/* ---- the completion queue ---- */

/* Grow the CQ by a step. A result cannot be dropped (its waiter would park
 * for good), so a failed allocation is tried again after a pause, as a
 * message to a full CQ is. */
static void cq_grow(struct urt__ep *ep)
{
	size_t cap = ep->cq_cap ? 2 * ep->cq_cap : 256;
	struct io_uring_cqe *cq;

	while (!(cq = realloc(ep->cq, cap * sizeof(*cq))))
		usleep(1000);
	ep->cq = cq;
	ep->cq_cap = cap;
}

static void post(struct urt__ep *ep, uint64_t ud, int32_t res, uint32_t flags)
{
	if (ep->cq_head + ep->cq_n == ep->cq_cap) {
		if (ep->cq_head) {
			memmove(ep->cq, ep->cq + ep->cq_head, ep->cq_n * sizeof(*ep->cq));
			ep->cq_head = 0;
		} else {
			cq_grow(ep);
		}
	}
	ep->cq[ep->cq_head + ep->cq_n++] = (struct io_uring_cqe){ .user_data = ud, .res = res,
								   .flags = flags };
}

/* ---- the deadline heap ---- */

static void heap_set(struct urt__ep *ep, size_t i, struct urt__ring_exec *x)
{
	ep->heap[i] = x;
	x->heap_i = i;
}

static void heap_up(struct urt__ep *ep, size_t i)
{
	struct urt__ring_exec *x = ep->heap[i];

	while (i) {
		size_t p = (i - 1) / 2;

		if (ep->heap[p]->deadline <= x->deadline)
			break;
		heap_set(ep, i, ep->heap[p]);
		i = p;
	}
	heap_set(ep, i, x);
}

static void heap_down(struct urt__ep *ep, size_t i)
{
	struct urt__ring_exec *x = ep->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= ep->heap_n)
			break;
		if (c + 1 < ep->heap_n && ep->heap[c + 1]->deadline < ep->heap[c]->deadline)
			c++;
		if (ep->heap[c]->deadline >= x->deadline)
			break;
		heap_set(ep, i, ep->heap[c]);
		i = c;
	}
	heap_set(ep, i, x);
}

static int heap_add(struct urt__ep *ep, struct urt__ring_exec *x)
{
	if (ep->heap_n == ep->heap_cap) {
		size_t cap = ep->heap_cap ? 2 * ep->heap_cap : 64;
		struct urt__ring_exec **h = realloc(ep->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		ep->heap = h;
		ep->heap_cap = cap;
	}
	heap_set(ep, ep->heap_n++, x);
	heap_up(ep, ep->heap_n - 1);
	return 0;
}

static void heap_del(struct urt__ep *ep, struct urt__ring_exec *x)
{
	size_t i = x->heap_i;

	if (i == NO_HEAP)
		return;
	x->heap_i = NO_HEAP;
	if (i == --ep->heap_n)
		return;
	heap_set(ep, i, ep->heap[ep->heap_n]);
	heap_down(ep, i);
	heap_up(ep, ep->heap[i]->heap_i);
}

/* ---- fds and their waiters ---- */

static struct ep_fd *fd_state(struct urt__ep *ep, int fd)
{
	if ((size_t)fd >= ep->nfds) {
		size_t n = ep->nfds ? ep->nfds : 64;
		struct ep_fd **f;

		while (n <= (size_t)fd)
			n *= 2;
		f = realloc(ep->fds, n * sizeof(*f));
		if (!f)
			return NULL;
		memset(f + ep->nfds, 0, (n - ep->nfds) * sizeof(*f));
		ep->fds = f;
		ep->nfds = n;
	}
	if (!ep->fds[fd]) {
		ep->fds[fd] = calloc(1, sizeof(struct ep_fd));
		if (!ep->fds[fd])
			return NULL;
		TAILQ_INIT(&ep->fds[fd]->waiters);
	}
	return ep->fds[fd];
}

/* Give fd's one-shot interest every event its waiters want. 0 or -errno. */
static int fd_arm(struct urt__ep *ep, int fd, struct ep_fd *f)
{
	struct urt__ring_exec *x;
	struct epoll_event ev = { .data.fd = fd };
	uint32_t want = 0;

	TAILQ_FOREACH(x, &f->waiters, fd_link)
		want |= x->events;
	if (!want || (want & ~f->armed) == 0)
		return 0;
	ev.events = want | EPOLLONESHOT;
	/* MOD first: the fd is usually known. Its other errors (EPERM for a
	 * file epoll refuses, EBADF) are the answer, as ADD's are. */
	if (epoll_ctl(ep->epfd, EPOLL_CTL_MOD, fd, &ev) &&
	    (errno != ENOENT || epoll_ctl(ep->epfd, EPOLL_CTL_ADD, fd, &ev)))
		return -errno;
	f->armed = want;
	return 0;
}

/* ---- running an SQE ---- */

enum tried { DONE, WAIT, RUN_ELSEWHERE };

static struct urt__ring_exec *exec_new(struct urt__ep *ep)
{
	struct urt__ring_exec *x = ep->free_list;

	if (x)
		ep->free_list = x->next_free;
	else
		x = malloc(sizeof(*x));
	if (x)
		memset(x, 0, sizeof(*x));
	return x;
}

static void exec_free(struct urt__ep *ep, struct urt__ring_exec *x)
{
	x->next_free = ep->free_list;
	ep->free_list = x;
}

/* A call on fd as if it were O_NONBLOCK: fd's flags are set for the call
 * and put back after it, when they lacked O_NONBLOCK. */
#define NONBLOCK_CALL(fd, ret, call)                                              \
	do {                                                                      \
		int fl_ = fcntl((fd), F_GETFL);                                   \
		if (fl_ >= 0 && !(fl_ & O_NONBLOCK))                              \
			(void)fcntl((fd), F_SETFL, fl_ | O_NONBLOCK);             \
		(ret) = (call);                                                   \
		if (fl_ >= 0 && !(fl_ & O_NONBLOCK)) {                            \
			int e_ = errno;                                           \
			(void)fcntl((fd), F_SETFL, fl_);                          \
			errno = e_;                                               \
		}                                                                 \
	} while (0)

static bool would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK;
}

/* Whether fd is a regular file or a block device: epoll calls those always
 * ready, and their calls block in the kernel. */
static bool blocks_anyway(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode));
}

/* The SQE's buffers past the first skip bytes (what a first try moved):
 * into iov (room for the SQE's count); returns their count. */
static int rw_iov(const struct io_uring_sqe *s, size_t skip, struct iovec *iov)
{
	const struct iovec *src = (const struct iovec *)(uintptr_t)s->addr;
	struct iovec one = { (void *)(uintptr_t)s->addr, s->len };
	int cnt = 1, n = 0;

	if (s->opcode == IORING_OP_READV || s->opcode == IORING_OP_WRITEV)
		cnt = (int)s->len;
	else
		src = &one;
	for (int i = 0; i < cnt; i++) {
		if (skip >= src[i].iov_len) {
			skip -= src[i].iov_len;
			continue;
		}
		iov[n].iov_base = (char *)src[i].iov_base + skip;
		iov[n++].iov_len = src[i].iov_len - skip;
		skip = 0;
	}
	return n;
}

static bool is_rw(const struct io_uring_sqe *s)
{
	return s->opcode == IORING_OP_READ || s->opcode == IORING_OP_READV ||
	       s->opcode == IORING_OP_WRITE || s->opcode == IORING_OP_WRITEV;
}

static bool rw_reads(const struct io_uring_sqe *s)
{
	return s->opcode == IORING_OP_READ || s->opcode == IORING_OP_READV;
}

/* The call of a read or write SQE, from x->moved bytes on (which a
 * thread's call may be: the loop's is the first). */
static ssize_t rw_call(struct urt__ring_exec *x, int flags)
{
	struct io_uring_sqe *s = &x->sqe;
	struct iovec one = { (void *)(uintptr_t)s->addr, s->len }, *iov = &one, *rest = NULL;
	int cnt = 1;
	off_t off = (off_t)s->off == -1 ? -1 : (off_t)(s->off + x->moved);
	ssize_t n;

	if (s->opcode == IORING_OP_READV || s->opcode == IORING_OP_WRITEV) {
		iov = (struct iovec *)(uintptr_t)s->addr;
		cnt = (int)s->len;
	}
	if (x->moved) {
		rest = malloc((size_t)cnt * sizeof(*rest));
		if (!rest) {
			errno = ENOMEM;
			return -1;
		}
		cnt = rw_iov(s, x->moved, rest);
		iov = rest;
	}
	if (!cnt)
		n = 0;
	else if (rw_reads(s))
		n = preadv2(s->fd, iov, cnt, off, flags);
	else
		n = pwritev2(s->fd, iov, cnt, off, flags);
	if (rest) {
		int e = errno;

		free(rest);
		errno = e;
	}
	return n;
}

/* Read or write (vectored or not) without blocking, as io_uring does: a
 * regular file's cached pages are read here and now; what would wait for
 * the disk (or a partial count, for the rest) goes to a thread; a pipe,
 * socket or terminal that is not ready waits for readiness. */
static enum tried try_rw(struct urt__ring_exec *x, bool files_on_pool, int32_t *res)
{
	struct io_uring_sqe *s = &x->sqe;
	const struct iovec *src = (const struct iovec *)(uintptr_t)s->addr;
	bool rd = rw_reads(s);
	size_t want = s->len;
	ssize_t n;

	if (s->opcode == IORING_OP_READV || s->opcode == IORING_OP_WRITEV) {
		if ((int)s->len < 0 || s->len > IOV_MAX) {
			*res = -EINVAL;
			return DONE;
		}
		want = 0;
		for (unsigned i = 0; i < s->len; i++)
			want += src[i].iov_len;
	}
	if (files_on_pool) {
		/* Readiness or, for a file (which epoll refuses), a thread. */
		x->events = rd ? EPOLLIN : EPOLLOUT;
		return WAIT;
	}
	n = rw_call(x, RWF_NOWAIT);
	if (n >= 0 && (size_t)n == want) {
		*res = (int32_t)n;
		return DONE;
	}
	if (n < 0 && would_block(errno)) {
		/* Arming the fd tells a file from the rest: epoll refuses a
		 * file, which then goes to a thread (no fstat per read). */
		x->events = rd ? EPOLLIN : EPOLLOUT;
		return WAIT;
	}
	if (n > 0 || (n < 0 && errno == EOPNOTSUPP)) {
		int err = n < 0 ? errno : 0;

		if (blocks_anyway(s->fd)) {
			/* The rest on a thread, which adds what moved here. */
			x->moved = n > 0 ? (size_t)n : 0;
			return RUN_ELSEWHERE;
		}
		if (n > 0) {
			*res = (int32_t)n;
			return DONE;
		}
		if (err == EOPNOTSUPP) {
			/* A file without RWF_NOWAIT (a terminal, some devices). */
			NONBLOCK_CALL(s->fd, n, rw_call(x, 0));
			if (n >= 0 || !would_block(errno)) {
				*res = n < 0 ? -errno : (int32_t)n;
				return DONE;
			}
		}
		x->events = rd ? EPOLLIN : EPOLLOUT;
		return WAIT;
	}
	*res = n < 0 ? -errno : (int32_t)n;
	return DONE;
}

static enum tried try_sock(struct urt__ring_exec *x, int32_t *res)
{
	struct io_uring_sqe *s = &x->sqe;
	char *buf = (char *)(uintptr_t)s->addr + x->moved;
	size_t len = s->len - x->moved;
	int flags = (int)s->msg_flags;
	bool rd = s->opcode == IORING_OP_RECV;
	ssize_t n;

	if (rd)
		n = recv(s->fd, buf, len, flags | MSG_DONTWAIT);
	else
		n = send(s->fd, buf, len, flags | MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && would_block(errno)) {
		x->events = rd ? EPOLLIN : EPOLLOUT;
		/* What MSG_WAITALL moved before is the result when nothing
		 * more comes: as io_uring, a partial count beats an error. */
		return WAIT;
	}
	if (n > 0 && (flags & MSG_WAITALL) && (size_t)n < len) {
		x->moved += (size_t)n;
		x->events = rd ? EPOLLIN : EPOLLOUT;
		return WAIT;
	}
	if (n < 0)
		*res = x->moved ? (int32_t)x->moved : -errno;
	else
		*res = (int32_t)(x->moved + (size_t)n);
	return DONE;
}

static enum tried try_accept(struct urt__ring_exec *x, int32_t *res)
{
	struct io_uring_sqe *s = &x->sqe;
	int fd;

	NONBLOCK_CALL(s->fd, fd,
		      accept4(s->fd, (struct sockaddr *)(uintptr_t)s->addr,
			      (socklen_t *)(uintptr_t)s->addr2, (int)s->accept_flags));
	if (fd < 0 && would_block(errno)) {
		x->events = EPOLLIN;
		return WAIT;
	}
	*res = fd < 0 ? -errno : fd;
	return DONE;
}

static enum tried try_connect(struct urt__ring_exec *x, int32_t *res)
{
	struct io_uring_sqe *s = &x->sqe;
	int ret, err = 0;
	socklen_t len = sizeof(err);

	if (x->connecting) {
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len))
			err = errno;
		*res = -err;
		return DONE;
	}
	NONBLOCK_CALL(s->fd, ret,
		      connect(s->fd, (const struct sockaddr *)(uintptr_t)s->addr,
			      (socklen_t)s->off));
	if (ret < 0 && errno == EINPROGRESS) {
		x->connecting = true;
		x->events = EPOLLOUT;
		return WAIT;
	}
	*res = ret < 0 ? -errno : 0;
	return DONE;
}

static enum tried try_poll(struct urt__ring_exec *x, int32_t *res)
{
	struct pollfd p = { .fd = x->sqe.fd, .events = (short)x->sqe.poll32_events };
	int n = poll(&p, 1, 0);

	if (n < 0) {
		*res = -errno;
		return DONE;
	}
	if (n == 0 || !p.revents) {
		x->events = x->sqe.poll32_events & (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP);
		return WAIT;
	}
	*res = p.revents & POLLNVAL ? -EBADF : p.revents;
	return DONE;
}

/* Try the SQE of x: DONE with *res, WAIT for x->events on its fd, or
 * RUN_ELSEWHERE (on a thread). */
static enum tried try_sqe(struct urt__ep *ep, struct urt__ring_exec *x, int32_t *res)
{
	struct io_uring_sqe *s = &x->sqe;

	if (s->flags & IOSQE_FIXED_FILE) {
		*res = -EOPNOTSUPP;
		return DONE;
	}
	switch (s->opcode) {
	case IORING_OP_NOP:
		*res = 0;
		return DONE;
	case IORING_OP_READ:
	case IORING_OP_WRITE:
	case IORING_OP_READV:
	case IORING_OP_WRITEV:
		/* Files on the pool: a first try finds out whether it is one. */
		return try_rw(x, ep->files_on_pool && !x->on, res);
	case IORING_OP_RECV:
	case IORING_OP_SEND:
		return try_sock(x, res);
	case IORING_OP_ACCEPT:
		return try_accept(x, res);
	case IORING_OP_CONNECT:
		return try_connect(x, res);
	case IORING_OP_POLL_ADD:
		return try_poll(x, res);
	case IORING_OP_SHUTDOWN:
		*res = shutdown(s->fd, (int)s->len) ? -errno : 0;
		return DONE;
	case IORING_OP_CLOSE:
		(void)epoll_ctl(ep->epfd, EPOLL_CTL_DEL, s->fd, NULL);
		if ((size_t)s->fd < ep->nfds && ep->fds[s->fd])
			ep->fds[s->fd]->armed = 0;
		*res = close(s->fd) ? -errno : 0;
		return DONE;
	case IORING_OP_OPENAT:
	case IORING_OP_STATX:
	case IORING_OP_FSYNC:
		return RUN_ELSEWHERE;
	default:
		/* Registered buffers, and what urt never asks for. */
		*res = -EOPNOTSUPP;
		return DONE;
	}
}

int32_t urt__ring_exec_run(struct urt__ring_exec *x)
{
	struct io_uring_sqe *s = &x->sqe;
	ssize_t n;

	switch (s->opcode) {
	case IORING_OP_READV:
	case IORING_OP_WRITEV:
	case IORING_OP_READ:
	case IORING_OP_WRITE:
		/* What the loop's first try moved counts: an error after it
		 * is the next call's to see. */
		n = rw_call(x, 0);
		if (n < 0)
			return x->moved ? (int32_t)x->moved : -errno;
		return (int32_t)(x->moved + (size_t)n);
	case IORING_OP_OPENAT:
		n = openat(s->fd, (const char *)(uintptr_t)s->addr, (int)s->open_flags,
			   (mode_t)s->len);
		return n < 0 ? -errno : (int32_t)n;
	case IORING_OP_STATX:
		return statx(s->fd, (const char *)(uintptr_t)s->addr, (int)s->statx_flags, s->len,
			     (struct statx *)(uintptr_t)s->off) ? -errno : 0;
	case IORING_OP_FSYNC:
		return ((s->fsync_flags & IORING_FSYNC_DATASYNC) ? fdatasync(s->fd) : fsync(s->fd))
			       ? -errno
			       : 0;
	default:
		return -EOPNOTSUPP;
	}
}

/* x has its result: post its CQE (and its linked timeout's) and let it go. */
static void finish(struct urt__ep *ep, struct urt__ring_exec *x, int32_t res)
{
	if (x->on) {
		TAILQ_REMOVE(&x->on->waiters, x, fd_link);
		x->on = NULL;
		ep->waiting--;
	}
	heap_del(ep, x);
	if (x->op)
		x->op->ep = NULL;
	post(ep, (uint64_t)(uintptr_t)x->op, res, 0);
	/* A linked timeout that did not fire ends -ECANCELED, as io_uring's. */
	if (x->linked)
		post(ep, x->link_ud, -ECANCELED, 0);
	exec_free(ep, x);
}

void urt__ring_exec_done(struct urt__ring *r, struct urt__ring_exec *x, int32_t res)
{
	x->running = false;
	finish(r->ep, x, res);
}

/* x to a thread (the layer above's pool), or, without one, here. */
static void run_elsewhere(struct urt__ep *ep, struct urt__ring_exec *x)
{
	x->running = true;
	if (!ep->exec || ep->exec(ep->exec_ctx, x)) {
		/* No thread to run it on: here, blocking. */
		x->running = false;
		finish(ep, x, urt__ring_exec_run(x));
	}
}

/* Try x until it is done, waits, or goes to a thread. A multishot accept
 * posts each socket (IORING_CQE_F_MORE) and goes on; after a batch it
 * waits for the next readiness, which lets the loop's other work in. */
static void attempt(struct urt__ring *r, struct urt__ring_exec *x)
{
	struct urt__ep *ep = r->ep;
	bool multishot = x->sqe.opcode == IORING_OP_ACCEPT &&
			 (x->sqe.ioprio & IORING_ACCEPT_MULTISHOT);
	int32_t res = 0;

	for (int i = 0;; i++) {
		enum tried t = try_sqe(ep, x, &res);

		if (t == RUN_ELSEWHERE) {
			run_elsewhere(ep, x);
			return;
		}
		if (t == WAIT)
			break;
		if (!multishot || res < 0) {
			finish(ep, x, res);
			return;
		}
		post(ep, (uint64_t)(uintptr_t)x->op, res, IORING_CQE_F_MORE);
		if (i == 63) {
			x->events = EPOLLIN;
			break;
		}
	}
	if (!x->on) {
		struct ep_fd *f = x->sqe.fd < 0 ? NULL : fd_state(ep, x->sqe.fd);

		if (!f) {
			finish(ep, x, x->sqe.fd < 0 ? -EBADF : -ENOMEM);
			return;
		}
		/* The first waiter: whatever interest the fd had may have gone
		 * with a file closed behind our back, so it is set again. */
		if (TAILQ_EMPTY(&f->waiters))
			f->armed = 0;
		x->on = f;
		TAILQ_INSERT_TAIL(&f->waiters, x, fd_link);
		ep->waiting++;
	}
	res = fd_arm(ep, x->sqe.fd, x->on);
	if (res == -EPERM && is_rw(&x->sqe)) {
		/* A regular file or a block device: a thread's call. */
		TAILQ_REMOVE(&x->on->waiters, x, fd_link);
		ep->waiting--;
		x->on = NULL;
		run_elsewhere(ep, x);
	} else if (res) {
		finish(ep, x, res); /* -EPERM: epoll refuses the fd; -EBADF */
	}
}

static int32_t cancel(struct urt__ep *ep, uint64_t ud)
{
	struct urt__op *op = (struct urt__op *)(uintptr_t)ud;
	struct urt__ring_exec *x = op ? op->ep : NULL;

	if (!x)
		return -ENOENT;
	if (x->running)
		return -EALREADY; /* on a thread: it runs to its end */
	finish(ep, x, -ECANCELED);
	return 0;
}

/* Deadlines due by now: a timeout fires (-ETIME), a linked timeout cancels
 * its operation (the operation -ECANCELED, the timeout -ETIME). */
static void expire(struct urt__ep *ep, uint64_t now)
{
	while (ep->heap_n && ep->heap[0]->deadline <= now) {
		struct urt__ring_exec *x = ep->heap[0];

		heap_del(ep, x);
		if (x->timeout) {
			finish(ep, x, -ETIME);
		} else if (!x->running) {
			x->linked = false;
			post(ep, x->link_ud, -ETIME, 0);
			finish(ep, x, -ECANCELED);
		}
	}
}

static uint64_t ts_ns(uint64_t addr)
{
	const struct __kernel_timespec *ts = (const struct __kernel_timespec *)(uintptr_t)addr;

	return (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec;
}

static uint64_t deadline_of(uint64_t addr, unsigned flags)
{
	return (flags & IORING_TIMEOUT_ABS) ? ts_ns(addr) : urt_now_ns() + ts_ns(addr);
}

static void run_sq_only(struct urt__ring *r);

/* Run the SQEs prepared since the last run, in order, and hand what goes
 * to threads over in one batch. In a turn about to wait (wait), true when
 * the layer above has completions ready: the turn must not. */
static bool run_sq(struct urt__ring *r, bool wait)
{
	run_sq_only(r);
	return r->ep->exec && r->ep->exec(r->ep->exec_ctx, wait ? URT__RING_EXEC_WAIT : NULL);
}

static void run_sq_only(struct urt__ring *r)
{
	struct urt__ep *ep = r->ep;

	for (unsigned i = 0; i < ep->sq_n; i++) {
		struct io_uring_sqe *s = &ep->sq[i];
		struct urt__op *op = (struct urt__op *)(uintptr_t)s->user_data;
		struct urt__ring_exec *x;
		int32_t res;

		switch (s->opcode) {
		case IORING_OP_ASYNC_CANCEL:
			post(ep, s->user_data, cancel(ep, s->addr), 0);
			continue;
		case IORING_OP_TIMEOUT_REMOVE: {
			struct urt__op *t = (struct urt__op *)(uintptr_t)s->addr;

			x = t ? t->ep : NULL;
			if (!x || !x->timeout) {
				res = -ENOENT;
			} else if (s->timeout_flags & IORING_TIMEOUT_UPDATE) {
				heap_del(ep, x);
				x->deadline = deadline_of(s->off, s->timeout_flags);
				res = heap_add(ep, x);
			} else {
				finish(ep, x, -ECANCELED);
				res = 0;
			}
			post(ep, s->user_data, res, 0);
			continue;
		}
		case IORING_OP_LINK_TIMEOUT:
			/* Not after a linked operation (which takes it). */
			post(ep, s->user_data, -EINVAL, 0);
			continue;
		default:
			break;
		}
		x = exec_new(ep);
		if (!x) {
			post(ep, s->user_data, -ENOMEM, 0);
			continue;
		}
		x->sqe = *s;
		x->op = op;
		x->heap_i = NO_HEAP;
		if ((s->flags & IOSQE_IO_LINK) && i + 1 < ep->sq_n &&
		    ep->sq[i + 1].opcode == IORING_OP_LINK_TIMEOUT) {
			struct io_uring_sqe *lt = &ep->sq[++i];

			x->linked = true;
			x->link_ud = lt->user_data;
			x->deadline = deadline_of(lt->addr, lt->timeout_flags);
		}
		if (op)
			op->ep = x;
		if (s->opcode == IORING_OP_TIMEOUT) {
			x->timeout = true;
			x->deadline = deadline_of(s->addr, s->timeout_flags);
		}
		if ((x->timeout || x->linked) && heap_add(ep, x)) {
			x->linked = false; /* its CQE: below */
			post(ep, ep->sq[i].user_data, -ENOMEM, 0);
			finish(ep, x, -ENOMEM);
			continue;
		}
		if (!x->timeout)
			attempt(r, x);
	}
	ep->sq_n = 0;
}

/* ---- the ring layer's calls, for an epoll ring ---- */

int urt__ep_init(struct urt__ring *r, unsigned entries, unsigned cq_entries)
{
	struct urt__ep *ep = calloc(1, sizeof(*ep));
	struct epoll_event ev = { .events = EPOLLIN };

	if (!ep)
		return -ENOMEM;
	ep->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ep->epfd < 0) {
		int err = -errno;

		free(ep);
		return err;
	}
	ep->sq_cap = entries;
	ep->sq = calloc(entries, sizeof(*ep->sq));
	ep->box = box_new(cq_entries);
	if (ep->box) {
		ev.data.fd = ep->box->evfd;
		if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->box->evfd, &ev)) {
			urt__box_put(ep->box);
			ep->box = NULL;
		}
	}
	if (!ep->sq || !ep->box) {
		urt__box_put(ep->box);
		free(ep->sq);
		close(ep->epfd);
		free(ep);
		return -ENOMEM;
	}
	r->ep = ep;
	return 0;
}

void urt__ep_fini(struct urt__ring *r)
{
	struct urt__ep *ep = r->ep;
	struct urt__ring_exec *x;

	for (size_t i = 0; i < ep->nfds; i++)
		free(ep->fds[i]);
	while ((x = ep->free_list)) {
		ep->free_list = x->next_free;
		free(x);
	}
	/* Pending records (a drain that failed) stay: a thread may run one. */
	free(ep->fds);
	free(ep->heap);
	free(ep->cq);
	free(ep->sq);
	close(ep->epfd);
	urt__box_put(ep->box);
	free(ep);
	r->ep = NULL;
}

struct io_uring_sqe *urt__ep_sqe(struct urt__ring *r)
{
	struct urt__ep *ep = r->ep;

	if (ep->sq_n == ep->sq_cap)
		(void)run_sq(r, false);
	memset(&ep->sq[ep->sq_n], 0, sizeof(ep->sq[0]));
	return &ep->sq[ep->sq_n++];
}

unsigned urt__ep_sq_space(struct urt__ring *r)
{
	return r->ep->sq_cap - r->ep->sq_n;
}

void urt__ep_flush(struct urt__ring *r)
{
	(void)run_sq(r, false);
}

bool urt__ep_queued(struct urt__ring *r)
{
	return r->ep->sq_n != 0;
}

/* Whether the next message is published. Sequentially consistent for
 * box_sleep's second look (see struct urt__box); on x86 as cheap as an
 * acquire load. */
static bool box_ready(const struct urt__box *b)
{
	return atomic_load_explicit(&b->slots[b->head & b->mask].seq, memory_order_seq_cst) ==
	       b->head + 1;
}

bool urt__ep_pending(struct urt__ring *r)
{
	/* An fd may have become ready: only epoll_wait can tell, in a turn. */
	return r->ep->cq_n || r->ep->waiting || box_ready(r->ep->box);
}

struct urt__box *urt__ep_box(const struct urt__ring *r)
{
	return r->ep->box;
}

void urt__ep_files_on_pool(struct urt__ring *r)
{
	r->ep->files_on_pool = true;
}

void urt__ep_set_exec(struct urt__ring *r, urt__ring_exec_fn fn, void *ctx)
{
	r->ep->exec = fn;
	r->ep->exec_ctx = ctx;
}

/* Messages in the mailbox become CQEs (no system call: the eventfd only
 * wakes a loop that sleeps). A message behind a slot whose sender has not
 * published yet waits for the next turn: that sender wakes the loop if it
 * sleeps by then. */
static void take_mail(struct urt__ep *ep)
{
	uint64_t ud;

	while (box_take(ep->box, &ud))
		post(ep, ud, 0, 0);
}

/* Before a wait that may block: true when the loop may sleep (a sender
 * will wake it), false when mail has come meanwhile. */
static bool box_sleep(struct urt__box *b)
{
	atomic_store_explicit(&b->sleeping, 1, memory_order_seq_cst);
	if (!box_ready(b))
		return true;
	atomic_store_explicit(&b->sleeping, 0, memory_order_relaxed);
	return false;
}

bool urt__ep_next_cqe(struct urt__ring *r, struct io_uring_cqe *out)
{
	struct urt__ep *ep = r->ep;

	if (!ep->cq_n)
		return false;
	*out = ep->cq[ep->cq_head++];
	if (!--ep->cq_n)
		ep->cq_head = 0;
	return true;
}

#define MAX_EVENTS 128

/* epoll_pwait2 (5.11) takes a timeout in ns. Where it is missing or
 * filtered (an older container profile, valgrind), epoll_wait with the
 * timeout rounded up to whole ms: a sleep may wake up to 1 ms late, never
 * early. */
static atomic_int pwait2_ok = 1;

static int wait_events(int epfd, struct epoll_event *evs, const struct timespec *ts)
{
	int n;

	if (atomic_load_explicit(&pwait2_ok, memory_order_relaxed)) {
		n = epoll_pwait2(epfd, evs, MAX_EVENTS, ts, NULL);
		if (n >= 0 || (errno != ENOSYS && errno != EPERM))
			return n;
		atomic_store_explicit(&pwait2_ok, 0, memory_order_relaxed);
	}
	if (!ts)
		return epoll_wait(epfd, evs, MAX_EVENTS, -1);
	if (ts->tv_sec > INT_MAX / 1000 - 1)
		return epoll_wait(epfd, evs, MAX_EVENTS, INT_MAX);
	return epoll_wait(epfd, evs, MAX_EVENTS,
			  (int)(ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000));
}

int urt__ep_turn(struct urt__ring *r, bool wait)
{
	struct urt__ep *ep = r->ep;
	struct epoll_event evs[MAX_EVENTS];
	struct timespec ts, *tsp = NULL;
	bool sleeps = false;
	int n = 0;

	if (run_sq(r, wait))
		wait = false;
	expire(ep, urt_now_ns());
	if (ep->cq_n || box_ready(ep->box))
		wait = false;
	if (!wait) {
		ts = (struct timespec){ 0 };
		tsp = &ts;
	} else if (ep->heap_n) {
		uint64_t now = urt_now_ns(), at = ep->heap[0]->deadline;
		uint64_t d = at > now ? at - now : 0;

		ts = (struct timespec){ .tv_sec = (time_t)(d / 1000000000u),
					.tv_nsec = (long)(d % 1000000000u) };
		tsp = &ts;
	}
	if (!tsp || tsp->tv_sec || tsp->tv_nsec) {
		sleeps = box_sleep(ep->box);
		if (!sleeps) {
			ts = (struct timespec){ 0 };
			tsp = &ts;
		}
	}
	/* A look that cannot wait needs the kernel only for fds' readiness:
	 * the mailbox is read below either way. */
	if (sleeps || ep->waiting)
		n = wait_events(ep->epfd, evs, tsp);
	if (sleeps)
		atomic_store_explicit(&ep->box->sleeping, 0, memory_order_relaxed);
	if (n < 0 && errno != EINTR)
		return -errno;
	for (int i = 0; i < n; i++) {
		int fd = evs[i].data.fd;
		struct ep_fd *f;
		struct urt__ring_exec *x, *next;
		uint32_t e = evs[i].events;

		if (fd == ep->box->evfd) {
			uint64_t v;

			/* Reset it; the mailbox is read below, every turn.
			 * (A sender that saw the loop about to sleep may
			 * write it after the loop woke for something else:
			 * the next wait then returns at once, once.) */
			(void)!read(fd, &v, sizeof(v));
			continue;
		}
		if ((size_t)fd >= ep->nfds || !(f = ep->fds[fd]))
			continue;
		f->armed = 0; /* one-shot: disarmed by this event */
		for (x = TAILQ_FIRST(&f->waiters); x; x = next) {
			next = TAILQ_NEXT(x, fd_link);
			if (e & (x->events | EPOLLERR | EPOLLHUP))
				attempt(r, x);
		}
		/* Waiters whose event did not come wait on. */
		if (!TAILQ_EMPTY(&f->waiters)) {
			int32_t err = fd_arm(ep, fd, f);

			while (err && (x = TAILQ_FIRST(&f->waiters)))
				finish(ep, x, err);
		}
	}
	take_mail(ep);
	expire(ep, urt_now_ns());
	return 0;
}
