/* The stall detector: a task that runs past the threshold without yielding
 * is reported once, by name, with how long it ran; one that yields in time
 * is not reported. */
#include <errno.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <urt.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

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

/* With URT_LOOP_STALL_BACKTRACE: what the reporter was given. */
struct traced {
	urt_loop *loop;
	int reports, n, bad_frames, bad_max;
	void *frames[URT_STALL_FRAMES];
};

static void collect_frames(void *ctx, urt_task *task, const char *name, uint64_t ran_ns)
{
	struct traced *tr = ctx;

	(void)task;
	(void)name;
	(void)ran_ns;
	tr->reports++;
	tr->n = urt_stall_backtrace(tr->loop, tr->frames, URT_STALL_FRAMES);
	tr->bad_frames = urt_stall_backtrace(tr->loop, NULL, 1);
	tr->bad_max = urt_stall_backtrace(tr->loop, tr->frames, -1);
}

/* Where spin_inner returns to in traced_hog: the frame the stalling
 * task's stack must show. */
static void *volatile inner_ra;

__attribute__((noinline)) static void spin_inner(uint64_t ns)
{
	inner_ra = __builtin_return_address(0);
	spin_for(ns);
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static int traced_hog(void *arg)
{
	(void)arg;
	spin_inner(150 * MS);
	return 0;
}

static void run_traced(struct traced *tr, unsigned flags)
{
	struct urt_loop_opts o = { .stall_ns = 10 * MS, .on_stall = collect_frames, .stall_ctx = tr,
				   .flags = flags };

	memset(tr, 0, sizeof(*tr));
	assert_int_equal(urt_loop_create(&tr->loop, &o), 0);
	assert_int_equal(urt_spawn(tr->loop, NULL, traced_hog, NULL), 0);
	assert_int_equal(urt_loop_run(tr->loop), 0);
	/* Outside a report: nothing. */
	assert_int_equal(urt_stall_backtrace(tr->loop, tr->frames, URT_STALL_FRAMES) > 0, 0);
	urt_loop_destroy(tr->loop);
}

/* A task that spins 150 ms against a 10 ms threshold is caught while it
 * spins: its report gets a stack that runs through traced_hog, at the very
 * return address of its call of spin_inner. */
static void test_backtrace(void **state)
{
	struct traced tr;
	int found = 0;

	(void)state;
	run_traced(&tr, URT_LOOP_STALL_BACKTRACE);
	assert_int_equal(tr.reports, 1);
	/* Not under valgrind, which delivers the signal at a point of its
	 * own choosing, and has no unwind information in its signal frame. */
	if (!RUNNING_ON_VALGRIND) {
		assert_true(tr.n > 2 && tr.n <= URT_STALL_FRAMES);
		for (int i = 0; i < tr.n; i++)
			found += tr.frames[i] == inner_ra;
		assert_int_equal(found, 1);
	}
	assert_int_equal(tr.bad_frames, -EINVAL);
	assert_int_equal(tr.bad_max, -EINVAL);

	/* Without the flag: reported, no frames. */
	run_traced(&tr, 0);
	assert_int_equal(tr.reports, 1);
	assert_int_equal(tr.n, 0);
}

static void own_handler(int sig)
{
	(void)sig;
}

/* Bad uses: the flag without a threshold; a SIGURG handler of the
 * application's own (left in place); a NULL loop. */
static void test_backtrace_refused(void **state)
{
	struct urt_loop_opts o = { .flags = URT_LOOP_STALL_BACKTRACE };
	struct sigaction sa = { .sa_handler = own_handler }, old, now;
	urt_loop *loop;
	void *frames[1];

	(void)state;
	assert_int_equal(urt_loop_create(&loop, &o), -EINVAL);
	assert_null(loop);
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGURG, &sa, &old), 0);
	o.stall_ns = 10 * MS;
	assert_int_equal(urt_loop_create(&loop, &o), -EBUSY);
	assert_int_equal(sigaction(SIGURG, &old, &now), 0);
	assert_ptr_equal(now.sa_handler, own_handler);
	assert_int_equal(urt_stall_backtrace(NULL, frames, 1), -EINVAL);
	/* Put back after the last loop: SIGURG is the application's again. */
	assert_int_equal(urt_loop_create(&loop, &o), 0);
	urt_loop_destroy(loop);
	assert_int_equal(sigaction(SIGURG, NULL, &now), 0);
	assert_ptr_equal(now.sa_handler, SIG_DFL);
	/* A handler the application installs while a loop watches stays. */
	assert_int_equal(urt_loop_create(&loop, &o), 0);
	assert_int_equal(sigaction(SIGURG, &sa, NULL), 0);
	urt_loop_destroy(loop);
	assert_int_equal(sigaction(SIGURG, &old, &now), 0);
	assert_ptr_equal(now.sa_handler, own_handler);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hog_reported),
		cmocka_unit_test(test_polite_not_reported),
		cmocka_unit_test(test_off_by_default),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_backtrace),
		cmocka_unit_test(test_backtrace_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
