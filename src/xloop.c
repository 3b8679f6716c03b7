/* xloop: work sent to a loop by other loops and by threads that run no
 * loop. Each loop has an inbox: a lock-free stack that any thread pushes a
 * message onto, and that the loop takes whole when an IORING_OP_MSG_RING
 * wakes it; only the push that finds the inbox empty sends one, so a busy
 * loop gets one wake-up for many messages (as the pool's finished list).
 * Calls, spawns, their replies and cancels go this way; and a set of
 * loops counts what is still to happen to know when all its loops are
 * idle. */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "op.h"

struct __attribute__((aligned(128))) urt__xloop {
	/* Written by senders on any thread. */
	_Atomic(struct urt__msg *) head; /* newest first */
	/* Read by senders, written once at create. */
	struct urt__ring *ring;     /* the loop's */
	struct urt__op wake;        /* the inbox was empty: take it */
	struct urt__op quit;        /* the set may be idle: look */
	struct urt__op cancel;      /* the set's run is cancelled */
	struct urt__mesh *mesh;     /* the loop's set, NULL: a loop of its own */
	unsigned index;
	/* The loop's thread only. */
	struct urt_loop *loop __attribute__((aligned(128)));
	bool busy;                  /* counted in mesh->active */
	/* Wake-ups this loop owes the other loops of its set, sent from its
	 * ring at the end of its turn: one per loop at most, however many
	 * messages the turn sent it. */
	struct xwake *wakes;        /* one per loop of the set */
	unsigned *due;              /* indices of the wakes to send */
	unsigned ndue;
};

/* A wake-up for loop target of the set, sent as an SQE of the sender's
 * ring; op gets the send's result. */
struct xwake {
	struct urt__op op;
	struct urt__xloop *from;
	unsigned target;
	bool due;                   /* to send at the turn's end */
	bool inflight;              /* sent, its CQE not reaped yet */
};

static struct urt__xloop *xloop_of(struct urt__op *op, size_t off)
{
	return (struct urt__xloop *)((char *)op - off);
}

/* ---- the sending thread's MSG_RING sender ---- */

static pthread_key_t tx_key;
static pthread_once_t tx_once = PTHREAD_ONCE_INIT;
static URT__TLS struct urt__msg_sender *tx;

static void tx_free(void *p)
{
	urt__msg_sender_fini(p);
	free(p);
}

static void tx_key_make(void)
{
	(void)pthread_key_create(&tx_key, tx_free);
}

/* The calling thread's sender, made at its first message (ring-less where
 * the kernel has it, else a small ring of its own, freed when the thread
 * exits). NULL when it cannot be made. */
static struct urt__msg_sender *sender(void)
{
	struct urt__msg_sender *s = tx;

	if (s)
		return s;
	pthread_once(&tx_once, tx_key_make);
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	if (urt__msg_sender_init(s, !urt__msg_ringless_works())) {
		free(s);
		return NULL;
	}
	(void)pthread_setspecific(tx_key, s);
	tx = s;
	return s;
}

static void wake_due(struct urt__xloop *from, unsigned target)
{
	struct xwake *w = &from->wakes[target];

	if (w->due)
		return;
	w->due = true;
	if (!from->ndue++)
		from->loop->turn_due++;
	from->due[from->ndue - 1] = target;
}

/* Push m onto loop's inbox; wake loop when the inbox was empty: from a
 * loop of the same set, at the end of the sender's turn (with its other
 * SQEs); else now, with the thread's sender s. */
static void post(struct urt_loop *loop, struct urt__msg *m, struct urt__msg_sender *s)
{
	struct urt__xloop *xl = loop->xloop;
	struct urt__msg *old = atomic_load_explicit(&xl->head, memory_order_relaxed);
	struct urt_loop *here = urt__cur_loop;
	struct urt__ring_addr to = urt__ring_addr(xl->ring);

	/* Counted before it is visible: the set is not idle while a message
	 * is on its way. */
	if (xl->mesh)
		atomic_fetch_add(&xl->mesh->active, 1);
	do
		m->next = old;
	while (!atomic_compare_exchange_weak_explicit(&xl->head, &old, m, memory_order_release,
						      memory_order_relaxed));
	if (old) {
		urt__ring_addr_put(to);
		return;
	}
	if (here && xl->mesh && here->xloop->mesh == xl->mesh) {
		urt__ring_addr_put(to);
		wake_due(here->xloop, xl->index);
	} else {
		urt__msg_send(s, to, (uint64_t)(uintptr_t)&xl->wake);
	}
}

static void wake_sent(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct xwake *w = (struct xwake *)op;

	(void)flags;
	w->inflight = false;
	/* The target's CQ was full or memory short: again next turn. A
	 * target whose ring is gone cannot be woken. */
	if (res < 0 && urt__msg_transient(res))
		wake_due(w->from, w->target);
}

void urt__xloop_flush(struct urt_loop *loop)
{
	struct urt__xloop *xl = loop->xloop;
	unsigned kept = 0;

	if (!xl->ndue)
		return;
	for (unsigned i = 0; i < xl->ndue; i++) {
		struct xwake *w = &xl->wakes[xl->due[i]];
		struct urt__xloop *to = xl->mesh->loops[w->target]->xloop;

		/* Its last send's CQE is not in yet (it comes within the
		 * turn): next turn. Not sent (the ring failed), as well. */
		int ret = w->inflight ? -EBUSY
				      : urt__ring_msg(&loop->ring, &w->op, to->ring,
						      (uint64_t)(uintptr_t)&to->wake);

		if (ret < 0) {
			xl->due[kept++] = xl->due[i];
			continue;
		}
		w->due = false;
		w->inflight = ret == 1; /* 0: delivered already */
	}
	xl->ndue = kept;
	if (!kept)
		loop->turn_due--;
}

int urt__xloop_post(struct urt_loop *loop, struct urt__msg *m)
{
	struct urt__msg_sender *s = sender();

	if (!s)
		return -ENOMEM;
	post(loop, m, s);
	return 0;
}

/* ---- the inbox ---- */

/* A wake-up: run every message of the inbox, oldest first. */
static void inbox_wake(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__xloop *xl = xloop_of(op, offsetof(struct urt__xloop, wake));
	struct urt__msg *m = atomic_exchange_explicit(&xl->head, NULL, memory_order_acquire);
	struct urt__msg *fifo = NULL, *next;

	(void)res;
	(void)flags;
	while (m) {
		next = m->next;
		m->next = fifo;
		fifo = m;
		m = next;
	}
	if (xl->mesh && !xl->busy) {
		xl->busy = true;
		atomic_fetch_add(&xl->mesh->active, 1);
	}
	for (m = fifo; m; m = next) {
		next = m->next; /* run may hand m back to its sender */
		m->run(m, xl->loop);
		if (xl->mesh)
			atomic_fetch_sub(&xl->mesh->active, 1);
	}
}

/* The set may be idle: the loop's turn looks (urt__xloop_idle). */
static void quit_wake(struct urt__op *op, int32_t res, uint32_t flags)
{
	(void)op;
	(void)res;
	(void)flags;
}

/* The set's run is cancelled: no new task, job or acceptor here until the
 * run ends, and every task is cancelled. */
static void cancel_wake(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__xloop *xl = xloop_of(op, offsetof(struct urt__xloop, cancel));

	(void)res;
	(void)flags;
	/* Not a cancel of an earlier run that came late. */
	if (!atomic_load(&xl->mesh->running) ||
	    atomic_load(&xl->mesh->cancel_gen) != atomic_load(&xl->mesh->run_gen))
		return;
	xl->loop->closing = true;
	urt__cancel_all(xl->loop);
}

int urt__xloop_init(struct urt_loop *loop)
{
	struct urt__xloop *xl;

	/* Replies to this loop's callers are sent from its thread. */
	if (!sender())
		return -ENOMEM;
	xl = urt__alloc_lines(sizeof(*xl));
	if (!xl)
		return -ENOMEM;
	xl->ring = &loop->ring;
	xl->wake = (struct urt__op){ .done = inbox_wake, .unsolicited = true };
	xl->quit = (struct urt__op){ .done = quit_wake, .unsolicited = true };
	xl->cancel = (struct urt__op){ .done = cancel_wake, .unsolicited = true };
	xl->loop = loop;
	loop->xloop = xl;
	return 0;
}

void urt__xloop_fini(struct urt_loop *loop)
{
	struct urt__xloop *xl = loop->xloop;

	/* Messages whose wake-up never came (the ring failed), refused as a
	 * closing loop refuses them; their replies may come back here. */
	while (atomic_load(&xl->head))
		inbox_wake(&xl->wake, 0, 0);
	free(xl->wakes);
	free(xl->due);
	free(xl);
	loop->xloop = NULL;
}

/* ---- a set's accounting ---- */

int urt__xloop_join(struct urt_loop *loop, struct urt__mesh *mesh, unsigned index)
{
	struct urt__xloop *xl = loop->xloop;

	xl->wakes = calloc(mesh->n, sizeof(*xl->wakes));
	xl->due = calloc(mesh->n, sizeof(*xl->due));
	if (!xl->wakes || !xl->due)
		return -ENOMEM;
	for (unsigned i = 0; i < mesh->n; i++)
		xl->wakes[i] = (struct xwake){ .op.done = wake_sent, .from = xl, .target = i };
	xl->mesh = mesh;
	xl->index = index;
	return 0;
}

void urt__xloop_run_begin(struct urt_loop *loop)
{
	loop->xloop->busy = true; /* counted by the set, with the others */
	loop->closing = false;
}

/* Post every loop of the set the CQE of its op at offset off of its
 * struct urt__xloop (quit, cancel). */
static void send_all(struct urt__mesh *mesh, struct urt__msg_sender *s, size_t off)
{
	for (unsigned i = 0; i < mesh->n; i++) {
		struct urt__xloop *xl = mesh->loops[i]->xloop;

		urt__msg_send(s, urt__ring_addr(xl->ring), (uint64_t)(uintptr_t)((char *)xl + off));
	}
}

bool urt__xloop_idle(struct urt_loop *loop)
{
	struct urt__xloop *xl = loop->xloop;
	struct urt__mesh *mesh = xl->mesh;

	/* At destroy the set is idle: what is left in the inbox is refused
	 * by urt__xloop_fini. */
	if (!mesh || loop->destroying)
		return true;
	if (xl->busy) {
		xl->busy = false;
		if (atomic_fetch_sub(&mesh->active, 1) == 1 && atomic_load(&mesh->running))
			send_all(mesh, tx, offsetof(struct urt__xloop, quit));
	}
	return atomic_load(&mesh->active) == 0;
}

bool urt__xloop_in_set(const struct urt_loop *loop)
{
	return loop->xloop->mesh != NULL;
}

void urt__mesh_cancel(struct urt__mesh *mesh, struct urt__msg_sender *s)
{
	if (!atomic_load(&mesh->running))
		return;
	atomic_store(&mesh->cancel_gen, atomic_load(&mesh->run_gen));
	send_all(mesh, s, offsetof(struct urt__xloop, cancel));
}

struct urt__msg_sender *urt__xloop_sender(void)
{
	return sender();
}

urt_loops *urt_loop_set(const urt_loop *loop)
{
	return loop && loop->xloop->mesh ? loop->xloop->mesh->set : NULL;
}

int urt_loop_index(const urt_loop *loop)
{
	if (!loop)
		return -EINVAL;
	return (int)loop->xloop->index;
}

/* ---- calls ---- */

/*
 * A call: its record lives on the caller's stack (or the blocked thread's)
 * until the call returns, which is after fn has returned on the target
 * and after every message about it has come back.
 */
struct call {
	struct urt__msg msg;        /* the call, then its reply */
	struct urt__msg cancel;     /* the caller's cancel, then its ack */
	int (*fn)(void *);
	void *arg;
	int result;
	struct urt_loop *to;
	/* The caller's side. */
	struct urt_loop *from;      /* NULL: a thread without a loop */
	struct urt_task *caller;
	struct urt__op reply_op, ack_op; /* CQEs the caller's ring expects */
	unsigned pending;           /* the reply, and the cancel's ack */
	int interrupted;            /* -ECANCELED, -ETIMEDOUT; 0 */
	_Atomic uint32_t done;      /* a blocked thread's futex word */
	/* The target's side. */
	struct urt_task *task;      /* running fn; NULL once it returned */
};

#define CALL_OF(m, field) ((struct call *)((char *)(m) - offsetof(struct call, field)))

static void call_arrived(struct call *c)
{
	if (--c->pending == 0)
		urt__wake(c->caller, 0);
}

static void reply_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	(void)res;
	(void)flags;
	call_arrived((struct call *)((char *)op - offsetof(struct call, reply_op)));
}

static void ack_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	(void)res;
	(void)flags;
	call_arrived((struct call *)((char *)op - offsetof(struct call, ack_op)));
}

/* On the caller's loop: the reply, or the ack of the cancel. */
static void reply_run(struct urt__msg *m, struct urt_loop *loop)
{
	urt__ring_complete(&loop->ring, &CALL_OF(m, msg)->reply_op, 0);
}

static void ack_run(struct urt__msg *m, struct urt_loop *loop)
{
	urt__ring_complete(&loop->ring, &CALL_OF(m, cancel)->ack_op, 0);
}

/* On the target's loop: fn has returned or will not run. After this the
 * target touches the record only for a cancel already on its way. */
static void reply(struct call *c)
{
	if (c->from) {
		c->msg.run = reply_run;
		post(c->from, &c->msg, tx);
		return;
	}
	atomic_store_explicit(&c->done, 1, memory_order_release);
	/* The waiter may be gone already: waking an address nobody waits on
	 * is harmless. */
	syscall(SYS_futex, &c->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static int call_task(void *arg)
{
	struct call *c = arg;

	c->result = c->fn(c->arg);
	c->task = NULL;
	reply(c);
	return 0;
}

static void call_run(struct urt__msg *m, struct urt_loop *loop)
{
	struct call *c = CALL_OF(m, msg);
	urt_task *t;
	int ret = urt_spawn(loop, &t, call_task, c);

	if (ret) {
		c->result = ret;
		reply(c);
		return;
	}
	(void)urt_detach(t);
	c->task = t;
}

static void cancel_run(struct urt__msg *m, struct urt_loop *loop)
{
	struct call *c = CALL_OF(m, cancel);

	(void)loop;
	if (c->task)
		(void)urt_cancel(c->task);
	c->cancel.run = ack_run;
	post(c->from, &c->cancel, tx);
}

/* The caller was cancelled or its deadline passed: cancel the task running
 * fn, and go on waiting until it has returned and the cancel is acked. */
static void call_interrupt(struct urt_task *t, int res)
{
	struct call *c = t->wait.obj;

	if (c->interrupted)
		return;
	c->interrupted = res;
	c->pending++;
	urt__ring_expect(&t->loop->ring);
	c->cancel.run = cancel_run;
	post(c->to, &c->cancel, tx);
}

int urt__call(urt_loop *loop, int (*fn)(void *), void *arg)
{
	struct urt_task *t = urt__cur_task;
	struct urt__msg_sender *s;
	struct call c;
	int ret;

	if (!loop || !fn)
		return -EINVAL;
	if (t) {
		ret = urt__wait_check(t);
		if (ret)
			return ret;
	} else if (urt__owned(loop)) {
		return -EDEADLK;
	}
	if (loop->xloop->mesh && atomic_load(&loop->xloop->mesh->closing))
		return -ESHUTDOWN;
	s = sender();
	if (!s)
		return -ENOMEM;
	c = (struct call){ .msg.run = call_run, .fn = fn, .arg = arg, .to = loop, .pending = 1 };
	if (!t) {
		post(loop, &c.msg, s);
		while (!atomic_load_explicit(&c.done, memory_order_acquire))
			syscall(SYS_futex, &c.done, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		return c.result;
	}
	c.from = t->loop;
	c.caller = t;
	c.reply_op.done = reply_done;
	c.ack_op.done = ack_done;
	/* The deadline's timer goes first: once the call is posted, the wait
	 * cannot be refused. Without room for it, wait without one. */
	if (t->deadline != UINT64_MAX)
		(void)urt__timer_add(&t->loop->timers, t, t->deadline);
	urt__ring_expect(&t->loop->ring);
	post(loop, &c.msg, s);
	(void)urt__park(t, call_interrupt, &c);
	return c.interrupted ? c.interrupted : c.result;
}

/* ---- spawns ---- */

struct spawn {
	struct urt__msg msg;
	int (*fn)(void *);
	void *arg;
	void (*dtor)(void *);
};

static void spawn_run(struct urt__msg *m, struct urt_loop *loop)
{
	struct spawn *sp = (struct spawn *)m;

	if (urt_spawn(loop, NULL, sp->fn, sp->arg) && sp->dtor)
		sp->dtor(sp->arg);
	free(sp);
}

int urt__spawn_on(urt_loop *loop, int (*fn)(void *), void *arg, void (*dtor)(void *))
{
	struct urt__msg_sender *s;
	struct spawn *sp;

	if (!loop || !fn)
		return -EINVAL;
	if (loop->xloop->mesh && atomic_load(&loop->xloop->mesh->closing))
		return -ESHUTDOWN;
	s = sender();
	sp = malloc(sizeof(*sp));
	if (!s || !sp) {
		free(sp);
		return -ENOMEM;
	}
	*sp = (struct spawn){ .msg.run = spawn_run, .fn = fn, .arg = arg, .dtor = dtor };
	post(loop, &sp->msg, s);
	return 0;
}
