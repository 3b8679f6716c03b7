/*
 * The timer heap on its own (linked statically, through the internal
 * header): deadlines added and removed in any order come out earliest
 * first as they come due, and a removed task is gone: its entry, left
 * in the heap (deletion is lazy), never fires, and such entries do not
 * pile up.
 * The heap is a struct of its own, and needs tasks' timer_gen only: no
 * loop, no ring, no stacks.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* No child is earlier than its parent, each run is in order, the live
 * entries are as many as the tasks with a timer, and the top is live. */
static void check_heap(void)
{
	size_t live = 0, n = tm.heap_n;

	for (size_t i = 0; i < tm.heap_n; i++) {
		if (tm.heap[i].task->timer_gen == tm.heap[i].gen)
			live++;
		if (i)
			assert_true(tm.heap[(i - 1) / URT__TIMER_ARITY].deadline <= tm.heap[i].deadline);
	}
	for (int j = 0; j < URT__TIMER_RUNS; j++) {
		const struct urt__timer_run *r = &tm.run[j];

		for (size_t i = 0; i < r->n; i++) {
			const struct urt__timer *e = urt__timer_run_entry(r, i);

			if (e->task->timer_gen == e->gen)
				live++;
			if (i)
				assert_true(urt__timer_run_entry(r, i - 1)->deadline <= e->deadline);
		}
		n += r->n;
	}
	assert_int_equal(n, tm.n);
	assert_int_equal(live, tm.live);
	if (tm.n)
		assert_int_equal(urt__timer_top(&tm)->task->timer_gen, urt__timer_top(&tm)->gen);
	assert_true(tm.n <= 2 * tm.live + 64);
}

static void test_heap_orders_and_removes(void **state)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull, last = 0;
	size_t removed = 0, popped = 0;

	(void)state;
	urt__timers_init(&tm);
	for (int i = 0; i < N; i++) {
		/* Few distinct deadlines, so that ties are many. */
		assert_int_equal(urt__timer_add(&tm, &tasks[i], next_rand(&seed) % 1000), 0);
	}
	assert_int_equal(tm.n, N);
	assert_int_equal(tm.live, N);
	check_heap();
	/* Remove a third, from anywhere in the heap. */
	for (int i = 0; i < N; i += 3) {
		urt__timer_del(&tm, &tasks[i]);
		assert_false(urt__timer_on(&tasks[i]));
		removed++;
		check_heap();
	}
	urt__timer_del(&tm, &tasks[0]); /* twice: nothing happens */
	assert_int_equal(tm.live, N - removed);
	check_heap();
	/* The rest come out earliest first, each once, as they come due. */
	for (uint64_t now = 0; now < 1000; now++) {
		struct urt_task *t;

		while ((t = urt__timer_due(&tm, now))) {
			assert_false(urt__timer_on(t));
			assert_true(last <= now);
			last = now;
			assert_int_not_equal((int)(t - tasks) % 3, 0);
			popped++;
		}
		/* What stays is not due yet. */
		if (tm.n)
			assert_true(urt__timer_next(&tm) > now);
	}
	assert_int_equal(tm.n, 0);
	assert_int_equal(tm.live, 0);
	assert_int_equal(popped, N - removed);
	urt__timers_fini(&tm);
	assert_null(tm.heap);
	for (int j = 0; j < URT__TIMER_RUNS; j++)
		assert_null(tm.run[j].e);
}

/* A task whose timer is taken off and put back later is not woken by its
 * old entry: neither at the old deadline, nor twice. */
static void test_old_entry_never_fires(void **state)
{
	struct urt_task *a = &tasks[0], *b = &tasks[1];

	(void)state;
	memset(tasks, 0, sizeof(tasks));
	urt__timers_init(&tm);
	assert_int_equal(urt__timer_add(&tm, b, 50), 0);
	assert_int_equal(urt__timer_add(&tm, a, 100), 0);
	urt__timer_del(&tm, a);
	assert_int_equal(urt__timer_add(&tm, a, 500), 0);
	assert_ptr_equal(urt__timer_due(&tm, 200), b);
	assert_null(urt__timer_due(&tm, 200));
	/* The top is a's new entry; its old one is gone. */
	assert_int_equal(tm.n, 1);
	assert_int_equal(urt__timer_next(&tm), 500);
	/* Taken off and put back at the same deadline: one wake-up. */
	urt__timer_del(&tm, a);
	assert_int_equal(tm.n, 0);
	assert_int_equal(urt__timer_add(&tm, b, 400), 0);
	assert_int_equal(urt__timer_add(&tm, a, 500), 0);
	urt__timer_del(&tm, a);
	assert_int_equal(urt__timer_add(&tm, a, 500), 0);
	assert_int_equal(tm.n, 3);
	assert_ptr_equal(urt__timer_due(&tm, 1000), b);
	assert_ptr_equal(urt__timer_due(&tm, 1000), a);
	assert_null(urt__timer_due(&tm, 1000));
	assert_int_equal(tm.n, 0);
	urt__timers_fini(&tm);
}

/* One task waiting again and again under the same far deadline (a
 * timeout scope around many reads), beside sleepers that stay: stale
 * entries are swept before they pass twice the live ones (and a slack). */
static void test_stale_entries_swept(void **state)
{
	struct urt_task *t = &tasks[N - 1];

	(void)state;
	memset(tasks, 0, sizeof(tasks));
	urt__timers_init(&tm);
	for (int i = 0; i < 100; i++)
		assert_int_equal(urt__timer_add(&tm, &tasks[i], 1000 + (uint64_t)i), 0);
	for (int i = 0; i < 100000; i++) {
		assert_int_equal(urt__timer_add(&tm, t, 5000), 0);
		urt__timer_del(&tm, t);
		assert_true(tm.n <= 2 * tm.live + 64);
	}
	assert_int_equal(tm.live, 100);
	check_heap();
	for (int i = 0; i < 100; i++)
		assert_ptr_equal(urt__timer_due(&tm, 5000), &tasks[i]);
	assert_null(urt__timer_due(&tm, UINT64_MAX));
	assert_int_equal(tm.n, 0);
	urt__timers_fini(&tm);
}

/* The deadline task i was given in test_runs_keep_order. */
static uint64_t run_deadline(int i)
{
	if (i < 2000)
		return 1000 + (uint64_t)i / 10;  /* one duration, ties by ten */
	if (i < 3000)
		return 5000 + 2 * (uint64_t)(i - 2000) + 1; /* a longer one */
	if (i == 3000)
		return 100000;                   /* a far one, alone */
	return 1198 - (uint64_t)(i - 3100);  /* out of order, earlier and earlier */
}

/* Deadlines of one duration, added in order (ties in groups of 10), go on
 * a run and come out in the order they were added. A second duration
 * interleaved with it, and a far deadline alone, take runs of their own
 * and divert neither; deadlines out of order go on the heap. Everything
 * comes out earliest first; the rings wrap, and a sweep keeps the runs'
 * order. */
static void test_runs_keep_order(void **state)
{
	struct urt_task *t;
	int next = 0;
	size_t runs_n, left;
	uint64_t last = 0;
	int last_of_a = -1, last_of_b = -1;

	(void)state;
	memset(tasks, 0, sizeof(tasks));
	urt__timers_init(&tm);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(urt__timer_add(&tm, &tasks[i], run_deadline(i)), 0);
	assert_int_equal(tm.heap_n, 0);
	check_heap();
	/* The first 500, in the order they were added. */
	while ((t = urt__timer_due(&tm, 1049)))
		assert_ptr_equal(t, &tasks[next++]);
	assert_int_equal(next, 500);
	assert_int_equal(urt__timer_next(&tm), 1050);
	/* 1,000 more of the first duration (its ring wraps), 500 of the
	 * second between them, and the far one in the middle. */
	for (int i = 1000; i < 2000; i++) {
		assert_int_equal(urt__timer_add(&tm, &tasks[i], run_deadline(i)), 0);
		if (i % 2)
			assert_int_equal(urt__timer_add(&tm, &tasks[2000 + i / 2 - 500],
							run_deadline(2000 + i / 2 - 500)), 0);
		if (i == 1500)
			assert_int_equal(urt__timer_add(&tm, &tasks[3000], run_deadline(3000)), 0);
	}
	assert_int_equal(tm.heap_n, 0);
	/* 200 out of order: the first takes the last empty run, the rest go
	 * on the heap. */
	for (int i = 3100; i < 3300; i++)
		assert_int_equal(urt__timer_add(&tm, &tasks[i], run_deadline(i)), 0);
	runs_n = 0;
	for (int j = 0; j < URT__TIMER_RUNS; j++)
		runs_n += tm.run[j].n;
	assert_int_equal(runs_n, 500 + 1000 + 500 + 1 + 1);
	assert_int_equal(tm.heap_n, 199);
	check_heap();
	/* Two thirds of the first duration's later ones go, four fifths of
	 * the second's and of the heap's: stale entries would pass twice the
	 * live ones, so a sweep goes through (check_heap holds the bound). */
	for (int i = 1000; i < 3300; i++)
		if ((i < 2000 && i % 3) || (i >= 2000 && i < 3000 && i % 5) || (i >= 3100 && i % 5))
			urt__timer_del(&tm, &tasks[i]);
	check_heap();
	left = tm.live;
	/* Earliest first; each duration's in the order they came. */
	while ((t = urt__timer_due(&tm, UINT64_MAX))) {
		int i = (int)(t - tasks);

		assert_true(run_deadline(i) >= last);
		last = run_deadline(i);
		if (i < 2000) {
			assert_true(i >= 500 && (i < 1000 || i % 3 == 0));
			assert_true(i > last_of_a);
			last_of_a = i;
		} else if (i < 3000) {
			assert_int_equal(i % 5, 0);
			assert_true(i > last_of_b);
			last_of_b = i;
		} else if (i > 3000) {
			assert_true(i == 3100 || i % 5 == 0);
		}
		left--;
	}
	assert_int_equal(left, 0);
	assert_int_equal(last, 100000);
	assert_int_equal(tm.n, 0);
	assert_int_equal(tm.live, 0);
	urt__timers_fini(&tm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_heap_orders_and_removes),
		cmocka_unit_test(test_old_entry_never_fires),
		cmocka_unit_test(test_stale_entries_swept),
		cmocka_unit_test(test_runs_keep_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
