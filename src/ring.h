/* The ring layer (ring.c, epoll.c): io_uring setup, SQE acquisition,
 * submit, reap, dispatch; or, where io_uring is denied, the same SQEs run
 * by the epoll backend (epoll.c). Knows nothing of tasks: a CQE goes to
 * its op's done(). */
#ifndef URT_RING_H
#define URT_RING_H

#include <liburing.h>

#include "base.h"

/*
 * One in-flight SQE. Its address is the SQE's user_data; the CQE is handed to
 * done(). The record lives wherever its owner keeps it (a parked task's stack,
 * the loop), never allocated per operation.
 */
struct urt__op {
	void (*done)(struct urt__op *op, int32_t res, uint32_t cqe_flags);
	/* Its CQEs come with no SQE of ours and nobody waits for them (the
	 * pool's wake-up messages): each is counted as a message when it
	 * arrives, not as an SQE's completion. */
	bool unsolicited;
	/* The epoll backend's record of the SQE in flight (cancel finds it). */
	struct urt__ring_exec *ep;
};

struct urt__ep;

struct urt__ring {
	struct io_uring ring;
	unsigned setup_flags; /* the flags the kernel accepted */
	unsigned features;
	uint64_t inflight;    /* SQEs prepared whose CQE has not been reaped */
	uint64_t sqes;        /* SQEs prepared, ever */
	uint64_t expected;    /* CQEs expected without an SQE (urt__ring_expect) */
	uint64_t cqes;        /* CQEs reaped, ever */
	uint64_t more;        /* of which flagged IORING_CQE_F_MORE */
	uint64_t settled;     /* expected CQEs settled by urt__ring_complete */
	uint64_t overflows;   /* turns that found the kernel's CQ overflowed */
	/* CQEs moved out of the CQ, undispatched, when the kernel wanted room
	 * for SQEs: the next turn dispatches them first. */
	struct io_uring_cqe *held;
	size_t held_head, held_n, held_cap;
	int error;            /* why urt__ring_sqe last returned NULL */
	bool reaping;
	bool watches_timeouts; /* see urt__ring_watches_timeouts */
	bool stamp_reaps;     /* see urt__ring_stamp_reaps */
	uint64_t reap_ns;     /* the reap's clock, with stamp_reaps */
	struct urt__ep *ep;   /* the epoll backend; NULL: io_uring */
	char why[160];        /* the backend and why it was chosen */
};

/* Which backend urt__ring_init may choose. */
enum urt__backend_want {
	URT__WANT_ANY,        /* io_uring where it works, else epoll */
	URT__WANT_IO_URING,
	URT__WANT_EPOLL,
};

/* Set up r: io_uring with the flags the kernel takes, or epoll when
 * io_uring is denied, too old or not wanted (r->why says which and why).
 * 0 or -errno (-EPERM: io_uring alone was wanted, and is denied). */
int urt__ring_init(struct urt__ring *r, unsigned entries, unsigned cq_entries,
		   enum urt__backend_want want);
void urt__ring_fini(struct urt__ring *r);
/* A free SQE, flushing the SQ to the kernel when it is full. user_data is set
 * to op (NULL: a CQE nobody waits for, a cancel's or a timeout update's).
 * Safe anywhere, also in a completion handler: when the kernel wants CQEs
 * reaped first, they are held for the next turn, never dispatched here.
 * NULL when the SQ cannot be flushed (the ring is unusable, or the kernel
 * stays short of memory): r->error says why. */
struct io_uring_sqe *urt__ring_sqe(struct urt__ring *r, struct urt__op *op);
/* Make room for n SQEs that must reach the kernel in one submit (a linked
 * pair): flushes the SQ first when fewer than n entries are free. 0, or
 * -errno as urt__ring_sqe; after 0, n calls of urt__ring_sqe succeed. */
int urt__ring_reserve(struct urt__ring *r, unsigned n);
/* Move every CQE out of the CQ into r->held, undispatched: the room the
 * kernel wants (-EBUSY, -EAGAIN) before it takes more SQEs. The next turn
 * dispatches them first, in order. 0 or -ENOMEM. */
int urt__ring_hold(struct urt__ring *r);
/* Count a CQE that arrives without an SQE of ours (a MSG_RING from a pool
 * worker), so that the loop waits for it. */
static inline void urt__ring_expect(struct urt__ring *r)
{
	r->inflight++;
	r->expected++;
}
/* An expected CQE will not come after all, and nobody waits for its
 * result (a sleep mark the loop took back): settled. */
static inline void urt__ring_unexpect(struct urt__ring *r)
{
	r->inflight--;
	r->settled++;
}
/* Deliver a result to op as if its CQE had arrived (for an expected CQE that
 * will never come, e.g. a job dropped before it was sent). */
void urt__ring_complete(struct urt__ring *r, struct urt__op *op, int32_t res);
bool urt__ep_queued(struct urt__ring *r);
bool urt__ep_pending(struct urt__ring *r);

/* True when a CQE is ready or held, or the kernel holds work that would
 * post one. Inline: a yield asks it (and urt__ring_queued) every time. */
static inline bool urt__ring_pending(struct urt__ring *r)
{
	if (r->ep)
		return urt__ep_pending(r);
	return r->held_n || io_uring_cq_ready(&r->ring) ||
	       (IO_URING_READ_ONCE(*r->ring.sq.kflags) &
		(IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW));
}
/*
 * What the epoll backend cannot run without blocking the loop (regular-file
 * I/O the page cache cannot answer, open, statx, fsync) goes to the layer
 * above, which registered fn:
 * fn(ctx, x) returns 0 once it has taken x to run urt__ring_exec_run(x) on a
 * thread, and then hands the result back on the loop's thread with
 * urt__ring_exec_done; nonzero, and x runs on the loop, blocking. Without
 * fn, too. fn(ctx, NULL) ends a batch: what it took may be handed to the
 * threads at once (it is called after the SQEs of a turn have run, before
 * the loop waits). fn(ctx, URT__RING_EXEC_WAIT) does the same in a turn
 * that is about to wait: nonzero when the layer above has completions
 * ready, so that it does not. On io_uring, the kernel does this itself:
 * no-op.
 */
struct urt__ring_exec;
#define URT__RING_EXEC_WAIT ((struct urt__ring_exec *)1)
typedef int (*urt__ring_exec_fn)(void *ctx, struct urt__ring_exec *x);
void urt__ring_set_exec(struct urt__ring *r, urt__ring_exec_fn fn, void *ctx);
int32_t urt__ring_exec_run(struct urt__ring_exec *x);
void urt__ring_exec_done(struct urt__ring *r, struct urt__ring_exec *x, int32_t res);
/* Reads and writes of regular files and block devices always go to fn's
 * threads, never tried on the loop's thread (URT_LOOP_FILES_ON_POOL). On
 * io_uring, the kernel decides: no-op. */
void urt__ring_files_on_pool(struct urt__ring *r);

/* True when an armed timeout that fires makes urt__ring_pending true
 * without a turn (io_uring: its CQE, or IORING_SQ_TASKRUN); false on epoll,
 * whose timeouts only a turn sees. */
static inline bool urt__ring_watches_timeouts(const struct urt__ring *r)
{
	return r->watches_timeouts;
}
/* Spin up to ns until urt__ring_pending, or also(arg) when also is set
 * (completions that come without a CQE): true when something came. */
bool urt__ring_spin(struct urt__ring *r, uint64_t ns, bool (*also)(void *arg), void *arg);
/* With on, each reap reads the clock once, at its first CQE: the time its
 * completions wake their tasks, for whoever measures how long they wait to
 * run (one clock read per reap, not per CQE). */
static inline void urt__ring_stamp_reaps(struct urt__ring *r, bool on)
{
	r->stamp_reaps = on;
}

/* While a completion is dispatched with stamps on: the reap's time; else 0. */
static inline uint64_t urt__ring_reap_ns(const struct urt__ring *r)
{
	return r->reaping && r->stamp_reaps ? r->reap_ns : 0;
}

/* True when SQEs wait to be submitted. */
static inline bool urt__ring_queued(struct urt__ring *r)
{
	return r->ep ? urt__ep_queued(r) : io_uring_sq_ready(&r->ring) != 0;
}
/* Register files (fds[i] becomes fixed file i) and buffers with the
 * kernel: 0 or -errno (-EBUSY: registered already). */
int urt__ring_register_files(struct urt__ring *r, const int *fds, unsigned n);
int urt__ring_register_buffers(struct urt__ring *r, const struct iovec *iov, unsigned n);
/* Submit what is queued; wait for at least one CQE when wait is set. Then
 * dispatch every CQE available. Returns the CQEs dispatched, or -errno. */
int urt__ring_turn(struct urt__ring *r, bool wait);

/*
 * A MSG_RING from a thread that has no loop (a pool worker, any thread
 * that calls into a loop): ring-less where the kernel has it (6.13+),
 * else from a small ring of the sender's own.
 */
struct urt__msg_sender {
	struct io_uring ring;
	bool has_ring;
};

/* Whether this kernel sends ring-less MSG_RINGs, and MSG_RINGs at all
 * (5.18+): each probed once per process. */
bool urt__msg_ringless_works(void);
bool urt__msg_ring_works(void);
/* own_ring: send from a ring of the sender's own (else ring-less, which
 * the caller has checked). 0 or the error from io_uring_setup. */
int urt__msg_sender_init(struct urt__msg_sender *s, bool own_ring);
void urt__msg_sender_fini(struct urt__msg_sender *s);
/*
 * Where messages to a ring go. A sender takes it before the push that may
 * let the ring's loop go away (urt__ring_addr), and urt__msg_send uses it
 * after.
 */
struct urt__ring_addr {
	int fd;                 /* an io_uring's */
	struct urt__box *box;   /* an epoll ring's mailbox, referenced */
};
struct urt__ring_addr urt__ring_addr(const struct urt__ring *r);
/* Let go of an address that no message went to. */
void urt__ring_addr_put(struct urt__ring_addr to);
/* A message from the loop of r to the ring of to: 1 when it went as an SQE
 * of r (op gets its CQE), else -errno (nothing sent; no SQE, and
 * r->error says why). */
int urt__ring_msg(struct urt__ring *r, struct urt__op *op, const struct urt__ring *to,
		  uint64_t ud);
/*
 * Post a CQE (res 0, user_data ud) into the ring at to. A
 * transient failure (the target's CQ full, memory short) is retried after
 * a pause that doubles up to 10 ms, since a lost wake-up would leave its
 * waiters parked for good; any other (the target ring is gone) is given
 * up at once.
 */
void urt__msg_send(struct urt__msg_sender *s, struct urt__ring_addr to, uint64_t ud);
/* Errors after which the same message may go through: the target's CQ
 * cannot take it yet (-EOVERFLOW), memory or the ring is short for now
 * (-EAGAIN, -EBUSY, -ENOMEM), a signal (-EINTR). */
bool urt__msg_transient(int err);

/* ---- epoll.c, for ring.c ---- */
int urt__ep_init(struct urt__ring *r, unsigned entries, unsigned cq_entries);
void urt__ep_fini(struct urt__ring *r);
struct io_uring_sqe *urt__ep_sqe(struct urt__ring *r);
unsigned urt__ep_sq_space(struct urt__ring *r);
void urt__ep_flush(struct urt__ring *r);
/* Run the SQEs, wait (when wait is set and nothing is ready), and leave
 * the results for urt__ep_next_cqe. 0 or -errno (epoll_wait's). */
int urt__ep_turn(struct urt__ring *r, bool wait);
/* The next result to dispatch, in order; false when there is none. */
bool urt__ep_next_cqe(struct urt__ring *r, struct io_uring_cqe *out);
void urt__ep_set_exec(struct urt__ring *r, urt__ring_exec_fn fn, void *ctx);
void urt__ep_files_on_pool(struct urt__ring *r);
/* The mailbox: messages from any thread into an epoll ring. */
struct urt__box;
struct urt__box *urt__ep_box(const struct urt__ring *r);
void urt__box_get(struct urt__box *b);
void urt__box_put(struct urt__box *b);
/* 0, or -EOVERFLOW when the mailbox is full (try again later). */
int urt__box_send(struct urt__box *b, uint64_t ud);

#endif
