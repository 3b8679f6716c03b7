/*
 * The loop's side of a finished list on its own (linked statically, through
 * the pool's internal header), with the workers' steps taken by hand: a
 * worker claims a slot (tail) and fills it later, and a loop that looks in
 * between must hand out the jobs after the hole, leave the hole for its
 * next look, and not count it as a finished job when it marks itself
 * sleeping. Threads cannot make that interleaving happen on purpose.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../src/pool.h"

static struct urt__done d;
static struct urt__job jobs[4];

struct seen {
	struct urt__job *job[8];
	int32_t res[8];
	int n;
};

static void record(void *ctx, struct urt__job *job, int32_t res)
{
	struct seen *s = ctx;

	s->job[s->n] = job;
	s->res[s->n++] = res;
}

/* A worker's first step: the next slot is its own. */
static uint64_t claim(void)
{
	return atomic_fetch_add(&d.tail, 1);
}

/* Its second: the job's address in the slot, tagged when dropped. */
static void fill(uint64_t i, struct urt__job *job, int32_t res)
{
	atomic_store(&d.slot[i % URT__DONE_SLOTS], (uintptr_t)job | (res ? 1u : 0u));
}

static uintptr_t slot(uint64_t i)
{
	return atomic_load(&d.slot[i % URT__DONE_SLOTS]);
}

static void test_hole_is_passed_over(void **state)
{
	struct seen s = { 0 };
	uint64_t a, b;
	bool ready;

	(void)state;
	assert_false(urt__done_take(&d, record, &s));
	a = claim(); /* worker A: claimed, not filled yet */
	b = claim();
	fill(b, &jobs[1], 0);
	assert_true(urt__done_ready(&d));

	/* B's job is handed out past A's hole, which stays the next to look
	 * at; B's slot is marked taken, not emptied. */
	assert_true(urt__done_take(&d, record, &s));
	assert_int_equal(s.n, 1);
	assert_ptr_equal(s.job[0], &jobs[1]);
	assert_int_equal(s.res[0], 0);
	assert_int_equal(d.next, a);
	assert_int_equal(atomic_load(&d.emptied), a);
	assert_int_equal(slot(b), URT__DONE_TAKEN);
	assert_false(urt__done_ready(&d));

	/* Nothing new: the loop may mark itself sleeping, and finds no job
	 * waiting (the hole and the taken slot are not jobs). */
	assert_false(urt__done_take(&d, record, &s));
	assert_true(urt__done_mark(&d, &ready));
	assert_false(ready);

	/* A fills its slot (a dropped job), then looks at head: the mark is
	 * there, A takes it (and would send the wake-up), so the loop cannot
	 * take it back. */
	fill(a, &jobs[0], -ECANCELED);
	{
		struct urt__job *h = URT__DONE_SLEEPING;

		assert_true(atomic_compare_exchange_strong(&d.head, &h, NULL));
	}
	assert_false(urt__done_unmark(&d));

	/* The loop's next look hands out A's job, empties both slots and
	 * moves past them. */
	assert_true(urt__done_take(&d, record, &s));
	assert_int_equal(s.n, 2);
	assert_ptr_equal(s.job[1], &jobs[0]);
	assert_int_equal(s.res[1], -ECANCELED);
	assert_int_equal(d.next, b + 1);
	assert_int_equal(atomic_load(&d.emptied), b + 1);
	assert_int_equal(slot(a), 0);
	assert_int_equal(slot(b), 0);
	assert_false(urt__done_ready(&d));
}

/* A job in a slot when the loop marks: marked, but not to sleep; the mark
 * is taken back after the turn. */
static void test_mark_sees_filled_slot(void **state)
{
	struct seen s = { 0 };
	bool ready;

	(void)state;
	fill(claim(), &jobs[2], 0);
	assert_true(urt__done_mark(&d, &ready));
	assert_true(ready);
	assert_true(urt__done_unmark(&d));
	assert_true(urt__done_take(&d, record, &s));
	assert_int_equal(s.n, 1);
	assert_ptr_equal(s.job[0], &jobs[2]);
}

/* The stack (when every slot is claimed): its jobs come oldest first,
 * with the results their workers wrote, and a mark cannot be set over
 * them. */
static void test_stack_oldest_first(void **state)
{
	struct seen s = { 0 };
	bool ready;

	(void)state;
	jobs[2].res = 0;
	jobs[2].next = NULL;
	jobs[3].res = -ECANCELED;
	jobs[3].next = &jobs[2]; /* pushed after jobs[2]: newest first */
	atomic_store(&d.head, &jobs[3]);
	assert_true(urt__done_ready(&d));
	assert_false(urt__done_mark(&d, &ready));
	assert_true(urt__done_take(&d, record, &s));
	assert_int_equal(s.n, 2);
	assert_ptr_equal(s.job[0], &jobs[2]);
	assert_int_equal(s.res[0], 0);
	assert_ptr_equal(s.job[1], &jobs[3]);
	assert_int_equal(s.res[1], -ECANCELED);
	assert_null(atomic_load(&d.head));
	assert_false(urt__done_ready(&d));
}

/* The queue's lock spins before it sleeps (glibc's adaptive mutex) when
 * the pool's workers spin, and not with URT_POOL_NO_SPIN: threads pinned
 * to one CPU by hand would spin while the lock's holder cannot run. */
static void test_lock_spins_with_the_pool(void **state)
{
	struct urt_pool_opts o = { .threads = 1 };
	struct urt_pool *p;

	(void)state;
	assert_int_equal(urt__pool_start(&p, &o), 0);
#ifdef __GLIBC__
	assert_int_equal(urt__pool_lock_spins(p), urt__cpus_allowed() >= 2);
#else
	assert_false(urt__pool_lock_spins(p));
#endif
	assert_int_equal(urt_pool_destroy(p), 0);
	o.flags = URT_POOL_NO_SPIN;
	assert_int_equal(urt__pool_start(&p, &o), 0);
	assert_false(urt__pool_lock_spins(p));
	assert_int_equal(urt_pool_destroy(p), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hole_is_passed_over),
		cmocka_unit_test(test_mark_sees_filled_slot),
		cmocka_unit_test(test_stack_oldest_first),
		cmocka_unit_test(test_lock_spins_with_the_pool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
