/* The stall detector: a task that runs past the threshold without yielding
 * is reported once, by name, with how long it ran; one that yields in time
 * is not reported. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <urt.h>

#define MS 1000000ull

struct reports {
	int n;
	char name[32];
	uint64_t ran_ns;
};

static void collect(void *ctx, urt_task *task, const char *name, uint64_t ran_ns)
{
	struct reports *r = ctx;

	assert_non_null(task);
	r->n++;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->ran_ns = ran_ns;
}

static void spin_for(uint64_t ns)
{
	uint64_t until = urt_now_ns() + ns;

	while (urt_now_ns() < until)
		;
}

static int hog(void *arg)
{
	(void)arg;
	assert_int_equal(urt_task_set_name(NULL, "hog"), 0);
	spin_for(30 * MS);
	return 0;
}

static int polite(void *arg)
{
	(void)arg;
	assert_int_equal(urt_task_set_name(NULL, "polite"), 0);
	for (int i = 0; i < 30; i++) {
		spin_for(1 * MS);
		assert_int_equal(urt_yield(), 0);
	}
	return 0;
}

static void run_one(urt_task_fn fn, struct reports *r, uint64_t threshold)
{
	struct urt_loop_opts o = { .stall_ns = threshold, .on_stall = collect, .stall_ctx = r };
	urt_loop *loop;

	assert_int_equal(urt_loop_create(&loop, &o), 0);
	assert_int_equal(urt_spawn(loop, NULL, fn, NULL), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	urt_loop_destroy(loop);
}

static void test_hog_reported(void **state)
{
	struct reports r = { 0 };

	(void)state;
	run_one(hog, &r, 10 * MS);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.name, "hog");
	assert_true(r.ran_ns >= 30 * MS);
	assert_true(r.ran_ns < 2000 * MS);
}

static void test_polite_not_reported(void **state)
{
	struct reports r = { 0 };

	(void)state;
	/* 1 ms slices against a 250 ms threshold: room for a loaded machine,
	 * whose scheduler may take the CPU away for tens of ms mid-slice (a
	 * 20 ms threshold was crossed so in a CI run). */
	run_one(polite, &r, 250 * MS);
	assert_int_equal(r.n, 0);
}

static void test_off_by_default(void **state)
{
	struct reports r = { 0 };
	struct urt_loop_opts o = { .on_stall = collect, .stall_ctx = &r };
	urt_loop *loop;

	(void)state;
	assert_int_equal(urt_loop_create(&loop, &o), 0);
	assert_int_equal(urt_spawn(loop, NULL, hog, NULL), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	urt_loop_destroy(loop);
	assert_int_equal(r.n, 0);
}

static int anonymous_hog(void *arg)
{
	(void)arg;
	spin_for(30 * MS);
	return 0;
}

static void test_names(void **state)
{
	struct reports r = { 0 };
	urt_task *t;
	urt_loop *loop;
	struct urt_loop_opts o = { .stall_ns = 10 * MS, .on_stall = collect, .stall_ctx = &r };

	(void)state;
	run_one(anonymous_hog, &r, 10 * MS);
	assert_int_equal(r.n, 1);
	assert_memory_equal(r.name, "task@", 5);

	/* Named from outside before it runs. */
	memset(&r, 0, sizeof(r));
	assert_int_equal(urt_loop_create(&loop, &o), 0);
	assert_int_equal(urt_spawn(loop, &t, anonymous_hog, NULL), 0);
	assert_int_equal(urt_task_set_name(t, "a-name-longer-than-thirty-one-bytes"), 0);
	assert_int_equal(urt_task_set_name(t, NULL), -EINVAL);
	assert_int_equal(urt_task_set_name(NULL, "x"), -EINVAL); /* outside a task */
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_join(t, NULL), 0);
	urt_loop_destroy(loop);
	/* Copied, cut at 31 bytes. */
	assert_int_equal(r.n, 1);
	assert_string_equal(r.name, "a-name-longer-than-thirty-one-b");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hog_reported),
		cmocka_unit_test(test_polite_not_reported),
		cmocka_unit_test(test_off_by_default),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
