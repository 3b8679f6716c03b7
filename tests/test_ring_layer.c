/*
 * The ring layer on its own (linked statically, through its internal
 * header): every CQE is dispatched exactly once and in order, also when a
 * completion handler needs SQEs while the kernel wants CQEs reaped first.
 * On kernels that never answer a submit with -EBUSY or -EAGAIN that path
 * is not reached from the public API, so the test takes it by hand: a
 * handler holds the CQ's CQEs (as the -EBUSY path does) and then takes
 * more SQEs than the SQ has, flushing it from inside the reap.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../src/ring.h"

#define FIRST 8   /* NOPs in the CQ before the turn */
#define MORE 6    /* NOPs the handler of op HOLDER submits */
#define HOLDER 2
#define N (FIRST + MORE)

struct nop {
	struct urt__op op;
	int index;
};

static struct urt__ring ring;
static struct nop nops[N];
static int times[N];      /* dispatches per op */
static int order[2 * N];  /* indexes in dispatch order */
static int seen;

static void nop_prep(int i)
{
	struct io_uring_sqe *sqe = urt__ring_sqe(&ring, &nops[i].op);

	assert_non_null(sqe);
	io_uring_prep_nop(sqe);
}

static void nop_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct nop *n = (struct nop *)op;

	(void)flags;
	assert_int_equal(res, 0);
	times[n->index]++;
	order[seen++] = n->index;
	if (n->index != HOLDER)
		return;
	/* What the -EBUSY path does, from inside the reap: the CQEs still
	 * in the CQ are held, undispatched. Then more SQEs than the 4-entry
	 * SQ has, so that urt__ring_sqe flushes it from here. */
	assert_int_equal(urt__ring_hold(&ring), 0);
	assert_int_equal(ring.held_n, FIRST - HOLDER - 1);
	for (int i = FIRST; i < N; i++)
		nop_prep(i);
}

static void test_held_cqes_dispatched_once_in_order(void **state)
{
	uint64_t guard = 0;

	(void)state;
	assert_int_equal(urt__ring_init(&ring, 4, 16, URT__WANT_IO_URING), 0);
	for (int i = 0; i < N; i++)
		nops[i] = (struct nop){ .op = { .done = nop_done }, .index = i };
	/* Eight NOPs, all completed in the CQ before the turn. */
	for (int i = 0; i < FIRST; i++) {
		nop_prep(i);
		if (i % 4 == 3)
			assert_int_equal(io_uring_submit(&ring.ring), 4);
	}
	while (io_uring_cq_ready(&ring.ring) < FIRST)
		assert_true(io_uring_get_events(&ring.ring) >= 0 && guard++ < 1000);
	while (ring.inflight)
		assert_true(urt__ring_turn(&ring, true) >= 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(times[i], 1);
	assert_int_equal(seen, N);
	for (int i = 0; i < N; i++) /* held ones before what came after */
		assert_int_equal(order[i], i);
	assert_int_equal(ring.sqes, N);
	assert_int_equal(ring.cqes, N);
	assert_int_equal(ring.held_n, 0);
	urt__ring_fini(&ring);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_held_cqes_dispatched_once_in_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
