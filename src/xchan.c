/* xchan: channels between loops. Elements go through a bounded lock-free
 * ring in shared memory (each slot's sequence number says whose turn it
 * is, after Vyukov's bounded queue): any thread sends, the tasks of one
 * loop, the consumer, receive. Nobody is woken per element: a receiver
 * that finds the ring empty sets the waiting bit of pub, the word every
 * sender adds its count to after publishing, and only the sender whose add
 * finds the bit set sends the consumer's loop one message. A sender that
 * finds the ring full queues itself (the one lock, off the fast path) and
 * the consumer wakes it when it has made room.
 *
 * Every hand-off between a sender and the consumer goes through a
 * read-modify-write of one word (pub, nsenders, tail): their order is the
 * word's modification order, so neither side can miss the other's last
 * step (no fences, which ThreadSanitizer does not model). */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "op.h"

/* A sender waiting for room, on its own stack until it is woken. */
struct xsender {
	TAILQ_ENTRY(xsender) link;
	struct urt_xchan *c;
	struct urt_loop *loop;      /* NULL: a thread without a loop */
	struct urt_task *task;
	struct urt__msg msg;        /* its wake-up, sent to loop */
	_Atomic uint32_t woken;     /* a thread's futex word; a task's flag */
	int res;                    /* a task's interrupt (-ECANCELED, ...) */
	bool linked;                /* on the channel's list */
};

struct urt_xchan {
	/* Senders, any thread. */
	_Atomic size_t tail __attribute__((aligned(128)));
	/* Written by the consumer's loop only (read by urt_xchan_len). */
	_Atomic size_t head __attribute__((aligned(128)));
	struct urt__waitq receivers;
	bool armed;                 /* pub's waiting bit is ours: a sender will
				     * post rwake */
	bool wake_inflight;         /* a sender took the bit: rwake is coming */
	/* Elements published, times 2, plus 1 while a receiver waits. */
	_Atomic uint64_t pub __attribute__((aligned(128)));
	/* Read by every send, written once (closed: at the close). */
	_Atomic bool closed __attribute__((aligned(128)));
	struct urt_loop *consumer;
	size_t elem_size, stride, mask;
	unsigned char *slots;
	struct urt__msg rwake;      /* wakes the receivers */
	/* Senders queued on the list: the consumer reads it (with a
	 * read-modify-write) after every batch, on a line of its own. */
	_Atomic unsigned nsenders __attribute__((aligned(128)));
	pthread_mutex_t mu;         /* the senders' list */
	TAILQ_HEAD(, xsender) senders;
};

/* A slot: its sequence number, whether its sender found the channel
 * closed once it had claimed it (the consumer skips it), the element. */
struct slot {
	_Atomic size_t seq;
	size_t dead;
	unsigned char data[];
};

/* An element's copy: the common small sizes with a copy the compiler
 * inlines, the rest through memcpy. */
static inline void copy_elem(void *dst, const void *src, size_t size)
{
	switch (size) {
	case 4:
		memcpy(dst, src, 4);
		break;
	case 8:
		memcpy(dst, src, 8);
		break;
	case 16:
		memcpy(dst, src, 16);
		break;
	default:
		memcpy(dst, src, size);
	}
}

static struct slot *slot_of(struct urt_xchan *c, size_t pos)
{
	return (struct slot *)(c->slots + (pos & c->mask) * c->stride);
}

/* Claim the next k slots at once and fill them: k; 0 when the ring has no
 * room for k (the consumer frees slots in order, so the last of them free
 * means all are; a batch then goes one by one); -EPIPE when closed (slots
 * claimed as the close came are published dead). The caller then
 * publishes (publish()). */
static int push_n(struct urt_xchan *c, const unsigned char *elems, size_t k)
{
	size_t pos;
	bool dead;

	if (atomic_load(&c->closed))
		return -EPIPE;
	pos = atomic_load_explicit(&c->tail, memory_order_relaxed);
	for (;;) {
		size_t seq = atomic_load_explicit(&slot_of(c, pos + k - 1)->seq,
						  memory_order_acquire);
		intptr_t dif = (intptr_t)seq - (intptr_t)(pos + k - 1);

		if (dif == 0) {
			if (atomic_compare_exchange_weak(&c->tail, &pos, pos + k))
				break;
		} else if (dif < 0) {
			return 0; /* no room */
		} else {
			pos = atomic_load_explicit(&c->tail, memory_order_relaxed);
		}
	}
	/* Closed since the first look: the consumer may have seen the end
	 * already, so the elements are not delivered. */
	dead = atomic_load(&c->closed);
	for (size_t j = 0; j < k; j++) {
		struct slot *sl = slot_of(c, pos + j);

		sl->dead = dead;
		if (!dead)
			copy_elem(sl->data, elems + j * c->elem_size, c->elem_size);
		atomic_store_explicit(&sl->seq, pos + j + 1, memory_order_release);
	}
	return dead ? -EPIPE : (int)k;
}

static int push(struct urt_xchan *c, const void *elem)
{
	return push_n(c, elem, 1);
}

/* The consumer's side: one element into elem; false when empty. */
static bool pop(struct urt_xchan *c, void *elem)
{
	for (;;) {
		size_t pos = atomic_load_explicit(&c->head, memory_order_relaxed);
		struct slot *sl = slot_of(c, pos);
		bool dead;

		if (atomic_load_explicit(&sl->seq, memory_order_acquire) != pos + 1)
			return false;
		dead = sl->dead;
		if (!dead)
			copy_elem(elem, sl->data, c->elem_size);
		atomic_store_explicit(&sl->seq, pos + c->mask + 1, memory_order_release);
		atomic_store_explicit(&c->head, pos + 1, memory_order_relaxed);
		if (!dead)
			return true;
	}
}

static bool nonempty(struct urt_xchan *c)
{
	size_t pos = atomic_load_explicit(&c->head, memory_order_relaxed);

	return atomic_load_explicit(&slot_of(c, pos)->seq, memory_order_acquire) == pos + 1;
}

/* ---- waking ---- */

/* On the consumer's loop: wake every receiver; they look again. */
static void rwake_run(struct urt__msg *m, struct urt_loop *loop)
{
	struct urt_xchan *c = (struct urt_xchan *)((char *)m - offsetof(struct urt_xchan, rwake));

	(void)loop;
	c->armed = false;
	c->wake_inflight = false;
	urt__waitq_wake_all(&c->receivers, 0);
}

/* After k elements (or dead slots) were pushed, or a close: a receiver
 * that waits gets one message, from whichever sender takes the bit. */
static void publish(struct urt_xchan *c, size_t k)
{
	uint64_t old = atomic_fetch_add_explicit(&c->pub, 2 * (uint64_t)k, memory_order_acq_rel);

	if ((old & 1) && (atomic_fetch_and(&c->pub, ~(uint64_t)1) & 1))
		(void)urt__xloop_post(c->consumer, &c->rwake);
}

/* On the sender's loop: room was made, or the channel closed. */
static void swake_run(struct urt__msg *m, struct urt_loop *loop)
{
	struct xsender *w = (struct xsender *)((char *)m - offsetof(struct xsender, msg));

	(void)loop;
	atomic_store_explicit(&w->woken, 1, memory_order_relaxed);
	if (w->task->state == URT__PARKED)
		urt__wake(w->task, w->res);
}

/* The consumer made room (or the channel closed): wake every queued
 * sender. After the post or the futex wake, w is its owner's again. */
static void wake_senders(struct urt_xchan *c)
{
	struct xsender *w;

	/* A read-modify-write, so that a sender that queued itself after the
	 * consumer freed a slot sees that slot (see the top). */
	if (!atomic_fetch_add_explicit(&c->nsenders, 0, memory_order_acq_rel))
		return;
	pthread_mutex_lock(&c->mu);
	while ((w = TAILQ_FIRST(&c->senders))) {
		TAILQ_REMOVE(&c->senders, w, link);
		w->linked = false;
		atomic_fetch_sub(&c->nsenders, 1);
		if (w->loop) {
			w->msg.run = swake_run;
			(void)urt__xloop_post(w->loop, &w->msg);
		} else {
			atomic_store_explicit(&w->woken, 1, memory_order_release);
			syscall(SYS_futex, &w->woken, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		}
	}
	pthread_mutex_unlock(&c->mu);
}

/* ---- the API ---- */

int urt_xchan_create(urt_xchan **out, urt_loop *consumer, size_t elem_size, size_t capacity)
{
	struct urt_xchan *c;
	size_t cap = 2, stride;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!consumer || !elem_size || !capacity || capacity > ((size_t)1 << 30) ||
	    elem_size > ((size_t)1 << 20))
		return -EINVAL;
	while (cap < capacity)
		cap *= 2;
	stride = (sizeof(struct slot) + elem_size + 7) & ~(size_t)7;
	c = urt__alloc_lines(sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->slots = malloc(cap * stride);
	if (!c->slots) {
		free(c);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cap; i++)
		atomic_init(&((struct slot *)(c->slots + i * stride))->seq, i);
	c->consumer = consumer;
	c->elem_size = elem_size;
	c->stride = stride;
	c->mask = cap - 1;
	c->rwake.run = rwake_run;
	urt__waitq_init(&c->receivers);
	TAILQ_INIT(&c->senders);
	pthread_mutex_init(&c->mu, NULL);
	*out = c;
	return 0;
}

/* Stop saying that a receiver waits: withdrawn, or a sender took the bit
 * first and its rwake is on the way. */
static void disarm(struct urt_xchan *c)
{
	if (!c->armed)
		return;
	c->armed = false;
	if (!(atomic_fetch_and(&c->pub, ~(uint64_t)1) & 1))
		c->wake_inflight = true;
}

/* Closed, and every slot claimed has been taken: the end. */
static bool drained(struct urt_xchan *c)
{
	return atomic_load(&c->closed) &&
	       atomic_load(&c->tail) == atomic_load_explicit(&c->head, memory_order_relaxed);
}

ssize_t urt__xchan_recv(urt_xchan *c, void *elems, size_t size, size_t max)
{
	struct urt_task *t = urt__cur_task;
	unsigned char *p = elems;
	int ret;

	if (!c || !elems || size != c->elem_size || !max)
		return -EINVAL;
	if (!t || t->loop != c->consumer)
		return -EPERM;
	ret = urt__wait_check(t);
	if (ret)
		return ret;
	for (;;) {
		struct urt__waiter w;
		size_t n = 0;

		while (n < max && pop(c, p + n * size))
			n++;
		if (n) {
			wake_senders(c);
			return (ssize_t)n;
		}
		if (drained(c))
			return 0;
		/* Say that a receiver waits, then look once more: a sender
		 * either finds the bit or its element is seen here. */
		if (!c->armed && !c->wake_inflight) {
			c->armed = true;
			atomic_fetch_or_explicit(&c->pub, 1, memory_order_acq_rel);
			if (nonempty(c) || drained(c)) {
				disarm(c);
				continue;
			}
		}
		ret = urt__waitq_park(&c->receivers, &w, t);
		if (ret)
			return ret;
	}
}

/* Take w off its channel's list: true, or false when the consumer took
 * it off first and its wake-up is on the way to w. */
static bool unqueue(struct xsender *w)
{
	struct urt_xchan *c = w->c;
	bool was = false;

	pthread_mutex_lock(&c->mu);
	if (w->linked) {
		TAILQ_REMOVE(&c->senders, w, link);
		w->linked = false;
		atomic_fetch_sub(&c->nsenders, 1);
		was = true;
	}
	pthread_mutex_unlock(&c->mu);
	return was;
}

/* A task's wait for room ended by a cancel or its deadline. */
static void sender_interrupt(struct urt_task *t, int res)
{
	struct xsender *w = t->wait.obj;

	if (unqueue(w)) {
		urt__wake(t, res);
		return;
	}
	/* Its wake-up is on its way, to w on this stack: that wakes the
	 * task, with res. */
	w->res = res;
}

/* Until w's wake-up has come (it was taken off the list). */
static void wait_woken(struct xsender *w)
{
	while (!atomic_load_explicit(&w->woken, memory_order_acquire)) {
		if (w->task)
			(void)urt__park(w->task, NULL, w);
		else
			syscall(SYS_futex, &w->woken, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	}
}

static int wait_for_room(struct urt_xchan *c, const void *elem, int *pushed)
{
	struct urt_task *t = urt__cur_task;
	struct xsender w = { .c = c, .loop = t ? t->loop : NULL, .task = t };
	int ret;

	if (!t && urt__cur_loop)
		return -EAGAIN; /* a loop's turn cannot wait */
	pthread_mutex_lock(&c->mu);
	TAILQ_INSERT_TAIL(&c->senders, &w, link);
	w.linked = true;
	atomic_fetch_add(&c->nsenders, 1);
	pthread_mutex_unlock(&c->mu);
	/* Room made (or a close) since the last look: leave the list. */
	*pushed = push(c, elem);
	if (*pushed) {
		if (!unqueue(&w))
			wait_woken(&w);
		return 0;
	}
	if (!t) {
		wait_woken(&w);
		return 0;
	}
	ret = urt__park_interruptible(t, &w, sender_interrupt, t->deadline);
	if (ret == -ENOMEM && !w.woken) {
		/* Never parked (no room for the deadline's timer): leave the
		 * list, or wait for the wake-up already on its way. */
		if (!unqueue(&w))
			wait_woken(&w);
	}
	return ret;
}

int urt__xchan_send(urt_xchan *c, const void *elems, size_t size, size_t n)
{
	const unsigned char *p = elems;
	size_t i = 0, unpublished = 0;
	int ret = 0;

	if (!c || !elems || size != c->elem_size || !n || n > INT32_MAX)
		return -EINVAL;
	if (urt__cur_task) {
		ret = urt__wait_check(urt__cur_task);
		if (ret)
			return ret;
	} else if (!urt__xloop_sender()) {
		return -ENOMEM; /* no way to wake the consumer */
	}
	while (i < n) {
		size_t k = n - i < 64 ? n - i : 64;
		int pushed;

		/* Batches claim their slots with one compare-and-swap. */
		if (k > 1 && k <= c->mask + 1) {
			pushed = push_n(c, p + i * size, k);
			if (pushed > 0) {
				unpublished += k;
				i += k;
				continue;
			}
			if (pushed < 0) {
				unpublished += k;
				break;
			}
		}
		pushed = push(c, p + i * size);

		if (pushed == 0) {
			/* Full: the consumer learns of what was sent so far,
			 * then this sender waits for room. */
			if (unpublished)
				publish(c, unpublished);
			unpublished = 0;
			ret = wait_for_room(c, p + i * size, &pushed);
			if (pushed)
				unpublished++;
			if (pushed == 1)
				i++;
			if (ret || pushed < 0)
				break;
			continue;
		}
		unpublished++;
		if (pushed < 0)
			break;
		i++;
	}
	if (unpublished)
		publish(c, unpublished);
	if (i)
		return (int)i;
	return ret ? ret : -EPIPE;
}

int urt_xchan_close(urt_xchan *c)
{
	if (!c)
		return -EINVAL;
	if (atomic_exchange(&c->closed, true))
		return -EALREADY;
	if (!urt__xloop_sender())
		return -ENOMEM;
	publish(c, 0);
	wake_senders(c);
	return 0;
}

size_t urt_xchan_len(const urt_xchan *c)
{
	size_t tail, head;

	if (!c)
		return 0;
	head = atomic_load_explicit(&((struct urt_xchan *)c)->head, memory_order_relaxed);
	tail = atomic_load_explicit(&((struct urt_xchan *)c)->tail, memory_order_relaxed);
	return tail > head ? tail - head : 0;
}

int urt_xchan_destroy(urt_xchan *c)
{
	if (!c)
		return -EINVAL;
	disarm(c);
	if (urt__waitq_first(&c->receivers) || atomic_load(&c->nsenders) || c->wake_inflight)
		return -EBUSY;
	pthread_mutex_destroy(&c->mu);
	free(c->slots);
	free(c);
	return 0;
}
