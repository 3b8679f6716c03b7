/*
 * The timer heap on its own (linked statically, through the internal
 * header): deadlines added and removed in any order come out earliest
 * first as they come due, each task's back-index stays true, and a
 * removed task is gone.
 * The heap is a struct of its own, and needs tasks' heap_idx only: no
 * loop, no ring, no stacks.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "../src/timer.h"

#define N 5000

static struct urt__timers tm;
static struct urt_task tasks[N];

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Every entry's back-index points at it, and no child is earlier than its
 * parent. */
static void check_heap(void)
{
	for (size_t i = 0; i < tm.n; i++) {
		assert_int_equal(tm.heap[i].task->heap_idx, i);
		if (i)
			assert_true(tm.heap[(i - 1) / 2].deadline <= tm.heap[i].deadline);
	}
}

static void test_heap_orders_and_removes(void **state)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull, last = 0;
	size_t removed = 0, popped = 0;

	(void)state;
	urt__timers_init(&tm);
	for (int i = 0; i < N; i++) {
		tasks[i].heap_idx = SIZE_MAX;
		/* Few distinct deadlines, so that ties are many. */
		assert_int_equal(urt__timer_add(&tm, &tasks[i], next_rand(&seed) % 1000), 0);
	}
	assert_int_equal(tm.n, N);
	check_heap();
	/* Remove a third, from anywhere in the heap. */
	for (int i = 0; i < N; i += 3) {
		urt__timer_del(&tm, &tasks[i]);
		assert_int_equal(tasks[i].heap_idx, SIZE_MAX);
		removed++;
	}
	urt__timer_del(&tm, &tasks[0]); /* twice: nothing happens */
	assert_int_equal(tm.n, N - removed);
	check_heap();
	/* The rest come out earliest first, each once, as they come due. */
	for (uint64_t now = 0; now < 1000; now++) {
		struct urt_task *t;

		while ((t = urt__timer_due(&tm, now))) {
			assert_int_equal(t->heap_idx, SIZE_MAX);
			assert_true(last <= now);
			last = now;
			assert_int_not_equal((int)(t - tasks) % 3, 0);
			popped++;
		}
		/* What stays is not due yet. */
		if (tm.n)
			assert_true(tm.heap[0].deadline > now);
	}
	assert_int_equal(tm.n, 0);
	assert_int_equal(popped, N - removed);
	urt__timers_fini(&tm);
	assert_null(tm.heap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_heap_orders_and_removes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
