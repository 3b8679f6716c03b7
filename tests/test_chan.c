/* Channels: create errors; FIFO order through a small buffer; a full
 * channel parks its senders and an empty one its receivers (a send to a
 * waiting receiver is a direct hand-off); waiters are served in order;
 * close wakes every waiter (senders -EPIPE, receivers 0) and receivers
 * drain what is left; the try forms and the forms that would wait outside
 * a task; element size checks; a cancelled or timed-out waiter leaves the
 * queue and its element is not sent; destroy refuses while tasks wait;
 * struct elements are copied intact. */
#include <stdio.h>

#include "test_util.h"

#include <pthread.h>

/* ---- create ---- */

static void test_create_errors(void **state)
{
	urt_chan *c = (urt_chan *)&c; /* not NULL: a failure must clear it */

	(void)state;
	assert_int_equal(urt_chan_create(NULL, sizeof(int), 1), -EINVAL);
	assert_int_equal(urt_chan_create(&c, 0, 1), -EINVAL);
	assert_null(c);
	c = (urt_chan *)&c;
	assert_int_equal(urt_chan_create(&c, sizeof(int), 0), -EINVAL);
	assert_null(c);
	c = (urt_chan *)&c;
	/* capacity * size overflows size_t */
	assert_int_equal(urt_chan_create(&c, SIZE_MAX / 2 + 1, 2), -EINVAL);
	assert_null(c);
	c = (urt_chan *)&c;
	assert_int_equal(urt_chan_create(&c, 8, SIZE_MAX / 4), -EINVAL);
	assert_null(c);
	c = (urt_chan *)&c;
	assert_int_equal(urt_chan_create(&c, 3, (SIZE_MAX / 3) + 1), -EINVAL);
	assert_null(c);

	/* The smallest channel: one element of one byte. */
	assert_int_equal(urt_chan_create(&c, 1, 1), 0);
	assert_non_null(c);
	assert_int_equal(urt_chan_len(c), 0);
	assert_int_equal(urt_chan_destroy(c), 0);
}

/* NULL arguments, outside a task. */
static void test_null_args(void **state)
{
	urt_chan *c = NULL;
	int v = 1;

	(void)state;
	assert_int_equal(urt_chan_send((urt_chan *)NULL, &v), -EINVAL);
	assert_int_equal(urt_chan_try_send((urt_chan *)NULL, &v), -EINVAL);
	assert_int_equal(urt_chan_recv((urt_chan *)NULL, &v), -EINVAL);
	assert_int_equal(urt_chan_try_recv((urt_chan *)NULL, &v), -EINVAL);
	assert_int_equal(urt_chan_close(NULL), -EINVAL);
	assert_int_equal(urt_chan_len(NULL), 0);
	assert_int_equal(urt_chan_destroy(NULL), -EINVAL);

	assert_int_equal(urt_chan_create(&c, sizeof(int), 2), 0);
	assert_int_equal(urt_chan_send(c, (int *)NULL), -EINVAL);
	assert_int_equal(urt_chan_try_send(c, (int *)NULL), -EINVAL);
	assert_int_equal(urt_chan_try_send(c, &v), 0);
	assert_int_equal(urt_chan_recv(c, (int *)NULL), -EINVAL);
	assert_int_equal(urt_chan_try_recv(c, (int *)NULL), -EINVAL);
	assert_int_equal(urt_chan_len(c), 1); /* nothing was taken */
	assert_int_equal(urt_chan_destroy(c), 0); /* with an element left */
}

/* ---- FIFO order ---- */

#define FIFO_N 1000

struct fifo_case {
	urt_chan *c;
	int send_err;     /* the first failed send, 0 if none */
	int full_seen;    /* sends that found the channel full */
	int close_ret;
	int count;        /* elements received */
	int out_of_order; /* elements not equal to count */
	int end;          /* the recv that ended the loop */
	int after_end;    /* one more recv after the end */
};

static int fifo_producer(void *arg)
{
	struct fifo_case *fc = arg;

	for (int i = 0; i < FIFO_N; i++) {
		int ret;

		if (urt_chan_len(fc->c) == 2)
			fc->full_seen++;
		ret = urt_chan_send(fc->c, &i);
		if (ret && !fc->send_err)
			fc->send_err = ret;
	}
	fc->close_ret = urt_chan_close(fc->c);
	return 0;
}

static int fifo_consumer(void *arg)
{
	struct fifo_case *fc = arg;
	int v, n;

	while ((n = urt_chan_recv(fc->c, &v)) > 0) {
		if (v != fc->count)
			fc->out_of_order++;
		fc->count++;
	}
	fc->end = n;
	fc->after_end = urt_chan_recv(fc->c, &v);
	return 0;
}

static void test_fifo_order(void **state)
{
	struct fifo_case fc = { .end = -1, .after_end = -1, .close_ret = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&fc.c, sizeof(int), 2), 0);
	spawn_ok(loop, NULL, fifo_producer, &fc);
	spawn_ok(loop, NULL, fifo_consumer, &fc);
	run_and_destroy(loop);
	assert_int_equal(fc.send_err, 0);
	assert_int_equal(fc.close_ret, 0);
	assert_int_equal(fc.count, FIFO_N);
	assert_int_equal(fc.out_of_order, 0);
	assert_int_equal(fc.end, 0);
	assert_int_equal(fc.after_end, 0);
	assert_true(fc.full_seen > 0); /* the producer did have to wait */
	assert_int_equal(urt_chan_len(fc.c), 0);
	assert_int_equal(urt_chan_destroy(fc.c), 0);
}

/* ---- a full channel parks its sender ---- */

struct full_case {
	urt_chan *c;
	int steps;            /* a clock of events */
	int s1, s2, s3;       /* the three sends */
	int sent3_at;         /* step at which the third send returned */
	size_t len_parked;    /* seen by the receiver while the sender waits */
	bool sender_done_before_recv;
	int r1, v1;
	int recv_at;
	size_t len_after_recv; /* the parked element moved in at once */
	bool sender_done_after_recv; /* before the receiver yields */
	int r2, v2, r3, v3, r4;
};

static int full_sender(void *arg)
{
	struct full_case *f = arg;
	int a = 1, b = 2, d = 3;

	f->s1 = urt_chan_send(f->c, &a);
	f->s2 = urt_chan_send(f->c, &b);
	f->s3 = urt_chan_send(f->c, &d); /* full: parks */
	f->sent3_at = ++f->steps;
	return 0;
}

static int full_receiver(void *arg)
{
	struct full_case *f = arg;

	f->len_parked = urt_chan_len(f->c);
	f->sender_done_before_recv = f->sent3_at != 0;
	f->r1 = urt_chan_recv(f->c, &f->v1);
	f->recv_at = ++f->steps;
	f->len_after_recv = urt_chan_len(f->c);
	f->sender_done_after_recv = f->sent3_at != 0;
	TASK_CHECK(urt_yield() == 0);
	f->r2 = urt_chan_recv(f->c, &f->v2);
	f->r3 = urt_chan_recv(f->c, &f->v3);
	f->r4 = urt_chan_try_recv(f->c, &f->v3);
	return 0;
}

static void test_sender_parks_when_full(void **state)
{
	struct full_case f = { .s3 = -1, .r1 = -1, .r2 = -1, .r3 = -1, .r4 = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&f.c, sizeof(int), 2), 0);
	spawn_ok(loop, NULL, full_sender, &f);
	spawn_ok(loop, NULL, full_receiver, &f);
	run_and_destroy(loop);
	assert_int_equal(f.s1, 0);
	assert_int_equal(f.s2, 0);
	assert_int_equal(f.s3, 0);
	assert_int_equal(f.len_parked, 2);
	assert_false(f.sender_done_before_recv);
	assert_int_equal(f.r1, 1);
	assert_int_equal(f.v1, 1);
	assert_int_equal(f.len_after_recv, 2); /* 2 and the parked 3 */
	assert_false(f.sender_done_after_recv);
	assert_int_equal(f.recv_at, 1);
	assert_int_equal(f.sent3_at, 2); /* the send returned after the recv */
	assert_int_equal(f.r2, 1);
	assert_int_equal(f.v2, 2);
	assert_int_equal(f.r3, 1);
	assert_int_equal(f.v3, 3);
	assert_int_equal(f.r4, -EAGAIN);
	assert_int_equal(urt_chan_destroy(f.c), 0);
}

/* ---- an empty channel parks its receiver: direct hand-off ---- */

struct handoff_case {
	urt_chan *c;
	bool received_before_send;
	int got, recv_ret, send_ret;
	size_t len_after_send;
	bool received_after_send; /* before the sender yields */
};

static int handoff_receiver(void *arg)
{
	struct handoff_case *h = arg;

	h->recv_ret = urt_chan_recv(h->c, &h->got);
	return 0;
}

static int handoff_sender(void *arg)
{
	struct handoff_case *h = arg;
	int v = 42;

	h->received_before_send = h->recv_ret != -1;
	h->send_ret = urt_chan_send(h->c, &v);
	h->len_after_send = urt_chan_len(h->c);
	h->received_after_send = h->recv_ret != -1;
	v = 0; /* the element was copied: changing it now changes nothing */
	return 0;
}

static void test_receiver_parks_handoff(void **state)
{
	struct handoff_case h = { .recv_ret = -1, .send_ret = -1, .got = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&h.c, sizeof(int), 4), 0);
	spawn_ok(loop, NULL, handoff_receiver, &h);
	spawn_ok(loop, NULL, handoff_sender, &h);
	run_and_destroy(loop);
	assert_false(h.received_before_send);
	assert_int_equal(h.send_ret, 0);
	assert_int_equal(h.len_after_send, 0); /* never in the buffer */
	assert_false(h.received_after_send);
	assert_int_equal(h.recv_ret, 1);
	assert_int_equal(h.got, 42);
	assert_int_equal(urt_chan_len(h.c), 0);
	assert_int_equal(urt_chan_destroy(h.c), 0);
}

/* ---- waiters are served in order ---- */

struct order_case {
	urt_chan *c;
	int steps;
	int ret[3], got[3], at[3];
	int send_ret[3];
	int sent_at[3];
};

struct order_arg {
	struct order_case *oc;
	int i;
};

static int order_receiver(void *arg)
{
	struct order_arg *a = arg;

	a->oc->ret[a->i] = urt_chan_recv(a->oc->c, &a->oc->got[a->i]);
	a->oc->at[a->i] = ++a->oc->steps;
	return 0;
}

static int order_sender(void *arg)
{
	struct order_case *oc = arg;

	for (int i = 0; i < 3; i++) {
		int v = (i + 1) * 10;

		oc->send_ret[i] = urt_chan_send(oc->c, &v);
	}
	return 0;
}

/* Three receivers park in turn; three sends reach them in that order. */
static void test_receivers_in_order(void **state)
{
	struct order_case oc = { .ret = { -1, -1, -1 }, .send_ret = { -1, -1, -1 } };
	struct order_arg a[3];
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&oc.c, sizeof(int), 1), 0);
	for (int i = 0; i < 3; i++) {
		a[i] = (struct order_arg){ &oc, i };
		spawn_ok(loop, NULL, order_receiver, &a[i]);
	}
	spawn_ok(loop, NULL, order_sender, &oc);
	run_and_destroy(loop);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(oc.send_ret[i], 0);
		assert_int_equal(oc.ret[i], 1);
		assert_int_equal(oc.got[i], (i + 1) * 10);
		assert_int_equal(oc.at[i], i + 1);
	}
	assert_int_equal(urt_chan_len(oc.c), 0);
	assert_int_equal(urt_chan_destroy(oc.c), 0);
}

static int order_sender_one(void *arg)
{
	struct order_arg *a = arg;
	int v = (a->i + 1) * 10;

	a->oc->send_ret[a->i] = urt_chan_send(a->oc->c, &v);
	a->oc->sent_at[a->i] = ++a->oc->steps;
	return 0;
}

static int order_drain(void *arg)
{
	struct order_case *oc = arg;
	int v;

	/* The buffered 0, then the three parked senders' elements. */
	TASK_CHECK(urt_chan_len(oc->c) == 1);
	TASK_CHECK(urt_chan_recv(oc->c, &v) == 1 && v == 0);
	for (int i = 0; i < 3; i++) {
		oc->ret[i] = urt_chan_recv(oc->c, &oc->got[i]);
		oc->at[i] = ++oc->steps;
	}
	return 0;
}

/* Three senders park in turn on a full channel; their elements come out in
 * that order, and they are released in that order. */
static void test_senders_in_order(void **state)
{
	struct order_case oc = { .ret = { -1, -1, -1 }, .send_ret = { -1, -1, -1 } };
	struct order_arg a[3];
	int zero = 0;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&oc.c, sizeof(int), 1), 0);
	assert_int_equal(urt_chan_try_send(oc.c, &zero), 0);
	for (int i = 0; i < 3; i++) {
		a[i] = (struct order_arg){ &oc, i };
		spawn_ok(loop, NULL, order_sender_one, &a[i]);
	}
	spawn_ok(loop, NULL, order_drain, &oc);
	run_and_destroy(loop);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(oc.send_ret[i], 0);
		assert_int_equal(oc.ret[i], 1);
		assert_int_equal(oc.got[i], (i + 1) * 10);
	}
	/* The senders resumed in their order. */
	assert_true(oc.sent_at[0] < oc.sent_at[1]);
	assert_true(oc.sent_at[1] < oc.sent_at[2]);
	assert_int_equal(urt_chan_len(oc.c), 0);
	assert_int_equal(urt_chan_destroy(oc.c), 0);
}

/* ---- close ---- */

struct close_case {
	urt_chan *full, *empty;
	int send_ret[2], recv_ret[2];
	int got[2];
	bool woken_before_close;
	int close_full, close_empty, close_again;
	int send_after, try_send_after;
};

struct close_arg {
	struct close_case *cc;
	int i;
};

static int close_sender(void *arg)
{
	struct close_arg *a = arg;
	int v = 100 + a->i;

	a->cc->send_ret[a->i] = urt_chan_send(a->cc->full, &v);
	return 0;
}

static int close_receiver(void *arg)
{
	struct close_arg *a = arg;

	a->cc->recv_ret[a->i] = urt_chan_recv(a->cc->empty, &a->cc->got[a->i]);
	return 0;
}

static int closer(void *arg)
{
	struct close_case *cc = arg;
	int v = 9;

	cc->woken_before_close = cc->send_ret[0] != 1 || cc->send_ret[1] != 1 ||
				 cc->recv_ret[0] != 1 || cc->recv_ret[1] != 1;
	cc->close_full = urt_chan_close(cc->full);
	cc->close_empty = urt_chan_close(cc->empty);
	cc->close_again = urt_chan_close(cc->full);
	cc->send_after = urt_chan_send(cc->full, &v);
	cc->try_send_after = urt_chan_try_send(cc->empty, &v);
	return 0;
}

/* Two senders parked on a full channel, two receivers on an empty one: one
 * close each wakes them all. */
static void test_close_wakes_all(void **state)
{
	struct close_case cc = { .send_ret = { 1, 1 }, .recv_ret = { 1, 1 }, .got = { -1, -1 } };
	struct close_arg a[2] = { { &cc, 0 }, { &cc, 1 } };
	int first = 7, v = -1;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&cc.full, sizeof(int), 1), 0);
	assert_int_equal(urt_chan_create(&cc.empty, sizeof(int), 1), 0);
	assert_int_equal(urt_chan_try_send(cc.full, &first), 0);
	for (int i = 0; i < 2; i++) {
		spawn_ok(loop, NULL, close_sender, &a[i]);
		spawn_ok(loop, NULL, close_receiver, &a[i]);
	}
	spawn_ok(loop, NULL, closer, &cc);
	run_and_destroy(loop);
	assert_false(cc.woken_before_close);
	assert_int_equal(cc.close_full, 0);
	assert_int_equal(cc.close_empty, 0);
	assert_int_equal(cc.close_again, -EALREADY);
	assert_int_equal(cc.send_after, -EPIPE);
	assert_int_equal(cc.try_send_after, -EPIPE);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(cc.send_ret[i], -EPIPE);
		assert_int_equal(cc.recv_ret[i], 0);
		assert_int_equal(cc.got[i], -1); /* untouched */
	}
	/* The parked senders' elements were not sent: only the first is left,
	 * and recv outside a task drains it, then reports the end. */
	assert_int_equal(urt_chan_len(cc.full), 1);
	assert_int_equal(urt_chan_recv(cc.full, &v), 1);
	assert_int_equal(v, 7);
	assert_int_equal(urt_chan_recv(cc.full, &v), 0);
	assert_int_equal(urt_chan_try_recv(cc.full, &v), 0);
	assert_int_equal(urt_chan_close(cc.empty), -EALREADY);
	assert_int_equal(urt_chan_destroy(cc.full), 0);
	assert_int_equal(urt_chan_destroy(cc.empty), 0);
}

struct drain_case {
	urt_chan *c;
	int ret[6], got[6];
};

static int drainer(void *arg)
{
	struct drain_case *d = arg;

	for (int i = 0; i < 6; i++)
		d->ret[i] = urt_chan_recv(d->c, &d->got[i]);
	return 0;
}

/* Elements sent before the close are still received, in order, then 0. */
static void test_recv_drains_after_close(void **state)
{
	struct drain_case d;
	int v;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	memset(&d, 0xff, sizeof(d));
	assert_int_equal(urt_chan_create(&d.c, sizeof(int), 4), 0);
	for (v = 1; v <= 3; v++)
		assert_int_equal(urt_chan_send(d.c, &v), 0); /* room: no wait */
	assert_int_equal(urt_chan_close(d.c), 0);
	assert_int_equal(urt_chan_send(d.c, &v), -EPIPE);
	assert_int_equal(urt_chan_try_send(d.c, &v), -EPIPE);
	assert_int_equal(urt_chan_len(d.c), 3);
	spawn_ok(loop, NULL, drainer, &d);
	run_and_destroy(loop);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(d.ret[i], 1);
		assert_int_equal(d.got[i], i + 1);
	}
	for (int i = 3; i < 6; i++) {
		assert_int_equal(d.ret[i], 0);
		assert_int_equal(d.got[i], -1); /* untouched */
	}
	assert_int_equal(urt_chan_len(d.c), 0);
	assert_int_equal(urt_chan_destroy(d.c), 0);
}

/* ---- outside a task ---- */

static void test_try_forms_outside_task(void **state)
{
	urt_chan *c = NULL;
	int a = 5, b = 6, v = -1;

	(void)state;
	assert_null(urt_current_task());
	assert_int_equal(urt_chan_create(&c, sizeof(int), 1), 0);
	assert_int_equal(urt_chan_try_recv(c, &v), -EAGAIN);
	assert_int_equal(v, -1);
	assert_int_equal(urt_chan_try_send(c, &a), 0);
	assert_int_equal(urt_chan_len(c), 1);
	assert_int_equal(urt_chan_try_send(c, &b), -EAGAIN);
	assert_int_equal(urt_chan_len(c), 1);
	assert_int_equal(urt_chan_try_recv(c, &v), 1);
	assert_int_equal(v, 5);
	assert_int_equal(urt_chan_try_recv(c, &v), -EAGAIN);
	assert_int_equal(urt_chan_len(c), 0);
	assert_int_equal(urt_chan_destroy(c), 0);
}

/* The waiting forms work outside a task while they need not wait, and
 * return -EPERM where they would. */
static void test_waiting_forms_outside_task(void **state)
{
	urt_chan *c = NULL;
	int a = 5, b = 6, v = -1;

	(void)state;
	assert_int_equal(urt_chan_create(&c, sizeof(int), 1), 0);
	assert_int_equal(urt_chan_recv(c, &v), -EPERM);
	assert_int_equal(v, -1);
	assert_int_equal(urt_chan_send(c, &a), 0);
	assert_int_equal(urt_chan_send(c, &b), -EPERM);
	assert_int_equal(urt_chan_len(c), 1);
	assert_int_equal(urt_chan_recv(c, &v), 1);
	assert_int_equal(v, 5);
	assert_int_equal(urt_chan_recv(c, &v), -EPERM);
	assert_int_equal(urt_chan_len(c), 0);
	assert_int_equal(urt_chan_destroy(c), 0);
}

/* ---- element size ---- */

struct size_case {
	urt_chan *c;
	int send, try_send, recv, try_recv, recv_char;
	int ok_send, ok_recv, got;
	long l;
};

static int size_task(void *arg)
{
	struct size_case *s = arg;
	char ch = 0;
	int v = 77;

	s->l = 0x1122334455667788L;
	s->send = urt_chan_send(s->c, &s->l);
	s->try_send = urt_chan_try_send(s->c, &s->l);
	s->ok_send = urt_chan_send(s->c, &v);
	s->recv = urt_chan_recv(s->c, &s->l);
	s->try_recv = urt_chan_try_recv(s->c, &s->l);
	s->recv_char = urt_chan_recv(s->c, &ch);
	s->ok_recv = urt_chan_recv(s->c, &s->got);
	return 0;
}

static void test_element_size_mismatch(void **state)
{
	struct size_case s = { .got = -1 };
	long l = 1;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&s.c, sizeof(int), 2), 0);
	spawn_ok(loop, NULL, size_task, &s);
	run_and_destroy(loop);
	assert_int_equal(s.send, -EINVAL);
	assert_int_equal(s.try_send, -EINVAL);
	assert_int_equal(s.ok_send, 0);
	assert_int_equal(s.recv, -EINVAL);
	assert_int_equal(s.try_recv, -EINVAL);
	assert_int_equal(s.recv_char, -EINVAL);
	assert_int_equal(s.l, 0x1122334455667788L); /* not written */
	assert_int_equal(s.ok_recv, 1);
	assert_int_equal(s.got, 77);
	/* Outside a task too; an empty channel, so nothing would be taken. */
	assert_int_equal(urt_chan_try_send(s.c, &l), -EINVAL);
	assert_int_equal(urt_chan_recv(s.c, &l), -EINVAL);
	assert_int_equal(urt_chan_len(s.c), 0);
	assert_int_equal(urt_chan_destroy(s.c), 0);
}

/* ---- cancellation ---- */

struct cancel_case {
	urt_chan *c;
	urt_task *victim;
	int victim_ret, later_ret;
	int got;
	int cancel_ret, send_ret;
	size_t len_after_send;
	int seen_by_victim; /* elements the victim received: none */
};

static int cancel_recv_victim(void *arg)
{
	struct cancel_case *cc = arg;

	cc->victim_ret = urt_chan_recv(cc->c, &cc->got);
	cc->later_ret = urt_chan_recv(cc->c, &cc->got); /* sticky */
	return 0;
}

static int cancel_recv_killer(void *arg)
{
	struct cancel_case *cc = arg;
	int v = 11;

	TASK_CHECK(urt_sleep_ns(5 * MS) == 0);
	cc->cancel_ret = urt_cancel(cc->victim);
	/* The victim left the queue: the element goes to the buffer. */
	cc->send_ret = urt_chan_send(cc->c, &v);
	cc->len_after_send = urt_chan_len(cc->c);
	return 0;
}

static void test_cancel_parked_receiver(void **state)
{
	struct cancel_case cc = { .victim_ret = 1, .later_ret = 1, .got = -1, .send_ret = -1 };
	int v = -1;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&cc.c, sizeof(int), 2), 0);
	spawn_ok(loop, &cc.victim, cancel_recv_victim, &cc);
	spawn_ok(loop, NULL, cancel_recv_killer, &cc);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_join(cc.victim, NULL), 0);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(cc.cancel_ret, 0);
	assert_int_equal(cc.victim_ret, -ECANCELED);
	assert_int_equal(cc.later_ret, -ECANCELED);
	assert_int_equal(cc.got, -1);
	assert_int_equal(cc.send_ret, 0);
	assert_int_equal(cc.len_after_send, 1);
	assert_int_equal(urt_chan_len(cc.c), 1);
	assert_int_equal(urt_chan_try_recv(cc.c, &v), 1);
	assert_int_equal(v, 11);
	assert_int_equal(urt_chan_destroy(cc.c), 0);
}

static int cancel_send_victim(void *arg)
{
	struct cancel_case *cc = arg;
	int v = 22;

	cc->victim_ret = urt_chan_send(cc->c, &v);
	return 0;
}

static int cancel_send_killer(void *arg)
{
	struct cancel_case *cc = arg;

	TASK_CHECK(urt_sleep_ns(5 * MS) == 0);
	cc->cancel_ret = urt_cancel(cc->victim);
	TASK_CHECK(urt_yield() == 0); /* the victim returns */
	/* A recv makes room: no parked sender is left to fill it. */
	cc->send_ret = urt_chan_recv(cc->c, &cc->got);
	cc->len_after_send = urt_chan_len(cc->c);
	return 0;
}

/* A parked sender, cancelled: -ECANCELED, and its element never enters. */
static void test_cancel_parked_sender(void **state)
{
	struct cancel_case cc = { .victim_ret = 1, .got = -1, .send_ret = -1 };
	int first = 21, v = -1;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&cc.c, sizeof(int), 1), 0);
	assert_int_equal(urt_chan_try_send(cc.c, &first), 0);
	spawn_ok(loop, &cc.victim, cancel_send_victim, &cc);
	spawn_ok(loop, NULL, cancel_send_killer, &cc);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_join(cc.victim, NULL), 0);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(cc.cancel_ret, 0);
	assert_int_equal(cc.victim_ret, -ECANCELED);
	assert_int_equal(cc.send_ret, 1);
	assert_int_equal(cc.got, 21);
	assert_int_equal(cc.len_after_send, 0); /* 22 was not sent */
	assert_int_equal(urt_chan_try_recv(cc.c, &v), -EAGAIN);
	assert_int_equal(v, -1);
	assert_int_equal(urt_chan_destroy(cc.c), 0);
}

struct late_cancel_case {
	urt_chan *c;
	urt_task *victim;
	int recv_ret, got, later_ret;
	int send_ret, cancel_ret;
};

static int late_cancel_victim(void *arg)
{
	struct late_cancel_case *lc = arg;

	lc->recv_ret = urt_chan_recv(lc->c, &lc->got);
	lc->later_ret = urt_yield();
	return 0;
}

static int late_cancel_sender(void *arg)
{
	struct late_cancel_case *lc = arg;
	int v = 33;

	lc->send_ret = urt_chan_send(lc->c, &v); /* hands off: the victim is ready */
	lc->cancel_ret = urt_cancel(lc->victim);
	return 0;
}

/* A receiver handed an element and cancelled before it runs keeps the
 * element (the cancel is seen at its next wait): nothing is lost. */
static void test_cancel_after_handoff(void **state)
{
	struct late_cancel_case lc = { .recv_ret = -1, .got = -1, .later_ret = 1, .send_ret = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&lc.c, sizeof(int), 1), 0);
	spawn_ok(loop, &lc.victim, late_cancel_victim, &lc);
	spawn_ok(loop, NULL, late_cancel_sender, &lc);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_join(lc.victim, NULL), 0);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(lc.send_ret, 0);
	assert_int_equal(lc.cancel_ret, 0);
	assert_int_equal(lc.recv_ret, 1);
	assert_int_equal(lc.got, 33);
	assert_int_equal(lc.later_ret, -ECANCELED);
	assert_int_equal(urt_chan_len(lc.c), 0);
	assert_int_equal(urt_chan_destroy(lc.c), 0);
}

/* ---- deadlines ---- */

struct deadline_case {
	urt_chan *c;
	uint64_t start, end;
	int enter, ret, again, leave, got;
	int try_after;
	size_t len;
};

static int deadline_receiver(void *arg)
{
	struct deadline_case *d = arg;
	struct urt_timeout to;

	d->start = urt_now_ns();
	d->enter = urt_timeout_enter(&to, 20 * MS);
	d->ret = urt_chan_recv(d->c, &d->got);
	d->end = urt_now_ns();
	d->again = urt_chan_recv(d->c, &d->got); /* past the deadline: at once */
	d->leave = urt_timeout_leave(&to);
	d->try_after = urt_chan_try_recv(d->c, &d->got);
	return 0;
}

static void test_recv_deadline(void **state)
{
	struct deadline_case d = { .ret = 1, .again = 1, .got = -1, .enter = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&d.c, sizeof(int), 1), 0);
	spawn_ok(loop, NULL, deadline_receiver, &d);
	run_and_destroy(loop);
	assert_int_equal(d.enter, 0);
	assert_int_equal(d.ret, -ETIMEDOUT);
	assert_true(d.end - d.start >= 20 * MS);
	assert_int_equal(d.again, -ETIMEDOUT);
	assert_int_equal(d.leave, -ETIMEDOUT);
	assert_int_equal(d.try_after, -EAGAIN);
	assert_int_equal(d.got, -1);
	/* The waiter left the queue: destroy does not see it. */
	assert_int_equal(urt_chan_destroy(d.c), 0);
}

static int deadline_sender(void *arg)
{
	struct deadline_case *d = arg;
	struct urt_timeout to;
	int v = 2;

	d->start = urt_now_ns();
	d->enter = urt_timeout_enter(&to, 20 * MS);
	d->ret = urt_chan_send(d->c, &v);
	d->end = urt_now_ns();
	d->leave = urt_timeout_leave(&to);
	d->len = urt_chan_len(d->c);
	return 0;
}

/* A send parked on a full channel times out; its element is not sent. */
static void test_send_deadline(void **state)
{
	struct deadline_case d = { .ret = 1, .enter = -1 };
	int first = 1, v = -1;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&d.c, sizeof(int), 1), 0);
	assert_int_equal(urt_chan_try_send(d.c, &first), 0);
	spawn_ok(loop, NULL, deadline_sender, &d);
	run_and_destroy(loop);
	assert_int_equal(d.enter, 0);
	assert_int_equal(d.ret, -ETIMEDOUT);
	assert_true(d.end - d.start >= 20 * MS);
	assert_int_equal(d.leave, -ETIMEDOUT);
	assert_int_equal(d.len, 1);
	assert_int_equal(urt_chan_try_recv(d.c, &v), 1);
	assert_int_equal(v, 1);
	assert_int_equal(urt_chan_try_recv(d.c, &v), -EAGAIN);
	assert_int_equal(urt_chan_destroy(d.c), 0);
}

static int deadline_met_receiver(void *arg)
{
	struct deadline_case *d = arg;
	struct urt_timeout to;

	d->enter = urt_timeout_enter(&to, 10 * SEC);
	d->ret = urt_chan_recv(d->c, &d->got);
	d->leave = urt_timeout_leave(&to);
	return 0;
}

static int late_sender(void *arg)
{
	urt_chan *c = arg;
	int v = 5;

	TASK_CHECK(urt_sleep_ns(5 * MS) == 0);
	TASK_CHECK(urt_chan_send(c, &v) == 0);
	return 0;
}

/* A deadline that is not reached changes nothing. */
static void test_deadline_not_reached(void **state)
{
	struct deadline_case d = { .ret = -1, .leave = -1, .got = -1, .enter = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&d.c, sizeof(int), 1), 0);
	spawn_ok(loop, NULL, deadline_met_receiver, &d);
	spawn_ok(loop, NULL, late_sender, d.c);
	run_and_destroy(loop);
	assert_int_equal(d.enter, 0);
	assert_int_equal(d.ret, 1);
	assert_int_equal(d.got, 5);
	assert_int_equal(d.leave, 0);
	assert_int_equal(urt_chan_destroy(d.c), 0);
}

/* A receiver with a deadline is handed an element by a task that runs
 * past that deadline without yielding: the receiver is ready (its element
 * is in *elem) before the loop looks at its timer. The element must not be
 * lost: the recv returns 1 with it. */
struct race_case {
	urt_chan *c;
	uint64_t start;
	int recv_ret, got, send_ret;
	int leave;
	bool parked;
};

static int race_receiver(void *arg)
{
	struct race_case *r = arg;
	struct urt_timeout to;

	r->start = urt_now_ns();
	TASK_CHECK(urt_timeout_enter(&to, 20 * MS) == 0);
	r->parked = true;
	r->recv_ret = urt_chan_recv(r->c, &r->got);
	r->leave = urt_timeout_leave(&to);
	return 0;
}

static int race_sender(void *arg)
{
	struct race_case *r = arg;
	int v = 44;

	/* Runs right after the receiver parked, in the same turn: the loop
	 * cannot look at the receiver's timer before this task yields. */
	TASK_CHECK(r->parked && r->recv_ret == -100);
	/* Busy, without a wait, until the receiver's deadline has passed. */
	while (urt_now_ns() < r->start + 30 * MS)
		;
	r->send_ret = urt_chan_send(r->c, &v);
	return 0;
}

static void test_handoff_at_deadline(void **state)
{
	struct race_case r = { .recv_ret = -100, .got = -1, .send_ret = -1, .leave = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&r.c, sizeof(int), 1), 0);
	spawn_ok(loop, NULL, race_receiver, &r);
	spawn_ok(loop, NULL, race_sender, &r);
	run_and_destroy(loop);
	assert_int_equal(r.send_ret, 0);
	/* The send succeeded and handed the element over: the receiver has
	 * it, and the channel is empty. */
	assert_int_equal(urt_chan_len(r.c), 0);
	assert_int_equal(r.recv_ret, 1);
	assert_int_equal(r.got, 44);
	assert_int_equal(r.leave, -ETIMEDOUT); /* the scope's deadline did pass */
	assert_int_equal(urt_chan_destroy(r.c), 0);
}

/* The same for a sender with a deadline, parked on a full channel: a task
 * that runs past the deadline takes an element, which moves the parked
 * element in and makes the sender ready. Its element was sent, so the
 * send returns 0 (not -ETIMEDOUT, which would say it was not sent). */
static int race_parked_sender(void *arg)
{
	struct race_case *r = arg;
	struct urt_timeout to;
	int v = 55;

	r->start = urt_now_ns();
	TASK_CHECK(urt_timeout_enter(&to, 20 * MS) == 0);
	r->parked = true;
	r->send_ret = urt_chan_send(r->c, &v);
	r->leave = urt_timeout_leave(&to);
	return 0;
}

static int race_taker(void *arg)
{
	struct race_case *r = arg;

	TASK_CHECK(r->parked && r->send_ret == -100); /* the sender waits */
	while (urt_now_ns() < r->start + 30 * MS)
		;
	r->recv_ret = urt_chan_recv(r->c, &r->got);
	return 0;
}

static void test_taken_at_deadline(void **state)
{
	struct race_case r = { .recv_ret = -100, .got = -1, .send_ret = -100, .leave = -1 };
	int first = 54, v = -1;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&r.c, sizeof(int), 1), 0);
	assert_int_equal(urt_chan_try_send(r.c, &first), 0);
	spawn_ok(loop, NULL, race_parked_sender, &r);
	spawn_ok(loop, NULL, race_taker, &r);
	run_and_destroy(loop);
	assert_int_equal(r.recv_ret, 1);
	assert_int_equal(r.got, 54);
	/* The parked element went in when the taker made room. */
	assert_int_equal(urt_chan_len(r.c), 1);
	assert_int_equal(urt_chan_try_recv(r.c, &v), 1);
	assert_int_equal(v, 55);
	assert_int_equal(r.send_ret, 0);
	assert_int_equal(r.leave, -ETIMEDOUT);
	assert_int_equal(urt_chan_destroy(r.c), 0);
}

/* ---- destroy ---- */

struct destroy_case {
	urt_chan *c;
	int ret, got;
};

static int destroy_waiter(void *arg)
{
	struct destroy_case *d = arg;

	d->ret = urt_chan_recv(d->c, &d->got);
	return 0;
}

static int stopper(void *arg)
{
	(void)arg;
	TASK_CHECK(urt_loop_stop(urt_current_loop()) == 0);
	return 0;
}

/* A channel with a parked receiver cannot be destroyed; close it, let the
 * receiver run, then it can. */
static void test_destroy_busy(void **state)
{
	struct destroy_case d = { .ret = -100, .got = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&d.c, sizeof(int), 1), 0);
	spawn_ok(loop, NULL, destroy_waiter, &d);
	spawn_ok(loop, NULL, stopper, NULL);
	assert_int_equal(urt_loop_run(loop), -EINTR); /* the receiver waits */
	assert_int_equal(d.ret, -100);
	assert_int_equal(urt_chan_destroy(d.c), -EBUSY);
	assert_int_equal(urt_chan_close(d.c), 0); /* outside a task */
	run_and_destroy(loop);
	assert_int_equal(d.ret, 0);
	assert_int_equal(d.got, -1);
	assert_int_equal(urt_chan_destroy(d.c), 0);
}

/* A loop destroyed while a task waits on a channel cancels that task: it
 * leaves the queue, and the channel can be destroyed. */
static void test_loop_destroy_cancels_waiter(void **state)
{
	struct destroy_case d = { .ret = -100, .got = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&d.c, sizeof(int), 1), 0);
	spawn_ok(loop, NULL, destroy_waiter, &d);
	spawn_ok(loop, NULL, stopper, NULL);
	assert_int_equal(urt_loop_run(loop), -EINTR);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(d.ret, -ECANCELED);
	assert_int_equal(d.got, -1);
	assert_int_equal(urt_chan_destroy(d.c), 0);
}

/* ---- struct elements ---- */

struct rec {
	uint64_t id;
	double x;
	char tag[8];
};
_Static_assert(sizeof(struct rec) == 24, "a 24-byte element");

#define REC_N 50

static struct rec rec_of(int i)
{
	struct rec r;

	memset(&r, 0, sizeof(r));
	r.id = 0x0101010101010101ull * (uint64_t)(i + 1);
	r.x = i * 0.5 - 3.25;
	snprintf(r.tag, sizeof(r.tag), "r%05d", i);
	return r;
}

struct rec_case {
	urt_chan *c;
	int count, bad, end;
	int send_err;
};

static int rec_consumer(void *arg)
{
	struct rec_case *rc = arg;
	struct rec r;
	int n;

	while ((n = urt_chan_recv(rc->c, &r)) > 0) {
		struct rec want = rec_of(rc->count);

		if (memcmp(&r, &want, sizeof(r)) != 0)
			rc->bad++;
		rc->count++;
	}
	rc->end = n;
	return 0;
}

static int rec_producer(void *arg)
{
	struct rec_case *rc = arg;

	for (int i = 0; i < REC_N; i++) {
		struct rec r = rec_of(i);
		int ret = urt_chan_send(rc->c, &r);

		if (ret && !rc->send_err)
			rc->send_err = ret;
		memset(&r, 0xee, sizeof(r)); /* the channel holds its own copy */
		if (i % 7 == 0)
			TASK_CHECK(urt_yield() == 0);
	}
	TASK_CHECK(urt_chan_close(rc->c) == 0);
	return 0;
}

/* 24-byte elements through a capacity-3 ring, by every path (hand-off to a
 * parked receiver, the buffer wrapping around, a parked sender's element
 * moved in): each one arrives byte for byte. */
static void test_struct_elements(void **state)
{
	struct rec_case rc = { .end = -1 };
	struct rec r, want = rec_of(0);
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_int_equal(urt_chan_create(&rc.c, sizeof(struct rec), 3), 0);
	spawn_ok(loop, NULL, rec_consumer, &rc); /* parks first: hand-off */
	spawn_ok(loop, NULL, rec_producer, &rc);
	run_and_destroy(loop);
	assert_int_equal(rc.send_err, 0);
	assert_int_equal(rc.count, REC_N);
	assert_int_equal(rc.bad, 0);
	assert_int_equal(rc.end, 0);
	assert_int_equal(urt_chan_destroy(rc.c), 0);

	/* And outside a task, through the buffer. */
	assert_int_equal(urt_chan_create(&rc.c, sizeof(struct rec), 1), 0);
	assert_int_equal(urt_chan_try_send(rc.c, &want), 0);
	memset(&r, 0, sizeof(r));
	assert_int_equal(urt_chan_try_recv(rc.c, &r), 1);
	assert_memory_equal(&r, &want, sizeof(r));
	assert_int_equal(urt_chan_destroy(rc.c), 0);
}

/* ---- another thread: refused, the channel untouched ---- */

struct foreign {
	urt_chan *c;
	int try_send, try_recv, send, close, destroy;
	size_t len;
	int got, recv_res;
};

static void *foreign_calls(void *arg)
{
	struct foreign *f = arg;
	int x = 42;

	f->try_send = urt_chan_try_send(f->c, &x);
	f->try_recv = urt_chan_try_recv(f->c, &x);
	f->send = urt_chan_send(f->c, &x);
	f->close = urt_chan_close(f->c);
	f->destroy = urt_chan_destroy(f->c);
	f->len = urt_chan_len(f->c);
	return NULL;
}

static int foreign_receiver(void *arg)
{
	struct foreign *f = arg;

	f->recv_res = urt_chan_recv(f->c, &f->got);
	return 0;
}

/* A channel has no lock: from another thread every call is refused
 * (-EPERM) and changes nothing, here with a receiver parked on it (a
 * try_send used to hand the element over and touch the loop's run queue
 * from that thread). */
static void test_other_thread_refused(void **state)
{
	struct foreign f = { .got = 0, .recv_res = 9 };
	urt_loop *loop = loop_new(NULL);
	pthread_t th;
	int x = 7;

	(void)state;
	assert_int_equal(urt_chan_create(&f.c, sizeof(int), 1), 0);
	assert_int_equal(urt_chan_try_send(f.c, &x), 0);
	spawn_ok(loop, NULL, foreign_receiver, &f);
	/* The receiver takes 7, then parks on the empty channel. */
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(f.recv_res, 1);
	assert_int_equal(f.got, 7);
	f.recv_res = 9;
	spawn_ok(loop, NULL, foreign_receiver, &f);
	assert_int_equal(urt_loop_stop(loop), 0);
	assert_int_equal(urt_loop_run(loop), -EINTR);
	assert_int_equal(pthread_create(&th, NULL, foreign_calls, &f), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(f.try_send, -EPERM);
	assert_int_equal(f.try_recv, -EPERM);
	assert_int_equal(f.send, -EPERM);
	assert_int_equal(f.close, -EPERM);
	assert_int_equal(f.destroy, -EPERM);
	assert_int_equal(f.len, 0);
	assert_int_equal(f.recv_res, 9); /* still parked */
	x = 8;
	assert_int_equal(urt_chan_try_send(f.c, &x), 0);
	run_and_destroy(loop);
	assert_int_equal(f.recv_res, 1);
	assert_int_equal(f.got, 8);
	assert_int_equal(urt_chan_destroy(f.c), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_errors),
		cmocka_unit_test(test_null_args),
		cmocka_unit_test(test_fifo_order),
		cmocka_unit_test(test_sender_parks_when_full),
		cmocka_unit_test(test_receiver_parks_handoff),
		cmocka_unit_test(test_receivers_in_order),
		cmocka_unit_test(test_senders_in_order),
		cmocka_unit_test(test_close_wakes_all),
		cmocka_unit_test(test_recv_drains_after_close),
		cmocka_unit_test(test_try_forms_outside_task),
		cmocka_unit_test(test_waiting_forms_outside_task),
		cmocka_unit_test(test_element_size_mismatch),
		cmocka_unit_test(test_cancel_parked_receiver),
		cmocka_unit_test(test_cancel_parked_sender),
		cmocka_unit_test(test_cancel_after_handoff),
		cmocka_unit_test(test_recv_deadline),
		cmocka_unit_test(test_send_deadline),
		cmocka_unit_test(test_deadline_not_reached),
		cmocka_unit_test(test_destroy_busy),
		cmocka_unit_test(test_loop_destroy_cancels_waiter),
		cmocka_unit_test(test_struct_elements),
		cmocka_unit_test(test_other_thread_refused),
		/* Last: on a library that crashes here, they end the run. */
		cmocka_unit_test(test_handoff_at_deadline),
		cmocka_unit_test(test_taken_at_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
