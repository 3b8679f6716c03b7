/* Task stacks: an overflow never goes unnoticed. Each case runs in a child
 * process, which must die, loudly; the parent checks how. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <urt.h>

#define STACK (64 * 1024)

/* Run body in a child with its stderr captured; returns the wait status. */
static int in_child(void (*body)(void), char *err, size_t errlen)
{
	int fds[2], status;
	ssize_t n, got = 0;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* cmocka catches these to report failures: the child must die
		 * of them as a service would. */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGILL, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		signal(SIGABRT, SIG_DFL);
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		body();
		_exit(0);
	}
	close(fds[1]);
	while (got < (ssize_t)errlen - 1 && (n = read(fds[0], err + got, errlen - 1 - (size_t)got)) > 0)
		got += n;
	err[got] = 0;
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static volatile int sink;
static char *volatile escaped; /* keeps the compiler from dropping stores */

/* Recurses until sink says stop, which it never does. */
static int recurse(int depth)
{
	volatile char frame[512];

	frame[0] = (char)depth;
	if (sink < 0)
		return frame[0];
	return recurse(depth + 1) + frame[0];
}

static int recursing_task(void *arg)
{
	(void)arg;
	urt_task_set_name(NULL, "deep-thought");
	return recurse(0);
}

static void overflow_guarded(void)
{
	struct urt_loop_opts o = { .stack_size = STACK };
	urt_loop *loop;

	if (urt_loop_create(&loop, &o) || urt_spawn(loop, NULL, recursing_task, NULL))
		_exit(3);
	urt_loop_run(loop);
	_exit(0); /* not reached: the guard page stops the recursion */
}

/* Without a guard page: a task fills a buffer down into the canary window
 * at the bottom of its stack, then yields. */
static int trampling_task(void *arg)
{
	size_t len = STACK - 128; /* from near the top to past the bottom */
	char *p = __builtin_alloca(len);

	(void)arg;
	escaped = p;
	memset(p, 0x5a, len);
	urt_yield();
	return 0;
}

static void overflow_unguarded(void)
{
	struct urt_loop_opts o = { .stack_size = STACK, .flags = URT_LOOP_NO_GUARD };
	urt_loop *loop;

	if (urt_loop_create(&loop, &o) || urt_spawn(loop, NULL, trampling_task, NULL))
		_exit(3);
	urt_loop_run(loop);
	_exit(0); /* not reached: the canary check stops the process */
}

static void test_guard_page_stops_recursion(void **state)
{
	char err[512];
	int status;

	(void)state;
	status = in_child(overflow_guarded, err, sizeof(err));
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSEGV);
	/* Named by the loop's handler, on its alternate signal stack. */
	assert_non_null(strstr(err, "urt: task \"deep-thought\" overflowed its stack of 65536 bytes"));
}

static void test_canary_catches_overflow(void **state)
{
	char err[512];
	int status;

	(void)state;
	status = in_child(overflow_unguarded, err, sizeof(err));
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGILL);
	assert_non_null(strstr(err, "overflowed its stack of 65536 bytes"));
}

/* ---- a stack past the VMA budget ---- */

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

/* TSan keeps a record per fiber and allows 8,128 of them: fewer tasks than
 * the budget this case must pass. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* Whether this kernel installs guard markers (Linux 6.13+). */
static bool guard_markers_work(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, (size_t)ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool ok;

	assert_true(p != MAP_FAILED);
	ok = madvise(p, (size_t)ps, MADV_GUARD_INSTALL) == 0;
	munmap(p, (size_t)ps);
	return ok;
}

/* The PROT_NONE guard budget: a quarter of vm.max_map_count, two VMAs per
 * stack (as the task layer reads it). */
static long guard_budget(void)
{
	long max = 65530;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");

	if (f) {
		if (fscanf(f, "%ld", &max) != 1 || max <= 0)
			max = 65530;
		fclose(f);
	}
	return max / 8;
}

static long past_budget; /* sleepers spawned before the overflowing task */

static int sleeper(void *arg)
{
	(void)arg;
	return urt_sleep_ns(10ull * 1000 * 1000 * 1000);
}

static void overflow_past_budget(void)
{
	struct urt_loop_opts o = { .stack_size = 16 * 1024 };
	urt_loop *loop;

	if (urt_loop_create(&loop, &o))
		_exit(3);
	for (long i = 0; i < past_budget; i++)
		if (urt_spawn(loop, NULL, sleeper, NULL))
			_exit(4);
	if (urt_spawn(loop, NULL, recursing_task, NULL))
		_exit(3);
	urt_loop_run(loop);
	_exit(0); /* not reached */
}

/* With guard markers, the task spawned after more stacks than the
 * PROT_NONE budget holds still has a guard page (no VMA of its own), and
 * its runaway recursion is named. (Without markers it has only its canary,
 * checked at switches, which a recursion never makes: the README says so.) */
static void test_guard_past_vma_budget(void **state)
{
	char err[512];
	int status;

	(void)state;
	past_budget = guard_budget() + 16;
	if (UNDER_TSAN || !guard_markers_work() || past_budget > 40000) {
		skip(); /* TSan, a kernel before 6.13, or vm.max_map_count raised */
		return;
	}
	status = in_child(overflow_past_budget, err, sizeof(err));
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSEGV);
	assert_non_null(strstr(err, "urt: task \"deep-thought\" overflowed its stack of 16384 bytes (guard page hit)"));
}

/* Stacks are carved 64 to a mapping, and their guard pages may go in for
 * a whole mapping at once: whatever its place in one, a stack has its
 * guard page. The task spawned after k sleepers overflows, for k at the
 * edges of the first three mappings. */
static void test_guard_under_every_stack(void **state)
{
	static const long at[] = { 63, 64, 65, 127, 128, 191 };
	char err[512];
	int status;

	(void)state;
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		past_budget = at[i];
		status = in_child(overflow_past_budget, err, sizeof(err));
		assert_true(WIFSIGNALED(status));
		assert_int_equal(WTERMSIG(status), SIGSEGV);
		assert_non_null(strstr(err, "urt: task \"deep-thought\" overflowed its stack of 16384 bytes (guard page hit)"));
	}
}

/* A deep but bounded recursion within the stack is fine, and the stack is
 * reused by the next task. */
static int deep_task(void *arg)
{
	volatile char buf[STACK / 2];

	buf[0] = 1;
	buf[sizeof(buf) - 1] = 2;
	*(int *)arg += buf[0] + buf[sizeof(buf) - 1];
	return 0;
}

static void test_deep_use_is_fine(void **state)
{
	struct urt_loop_opts o = { .stack_size = STACK };
	urt_loop *loop;
	int sum = 0;

	(void)state;
	assert_int_equal(urt_loop_create(&loop, &o), 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(urt_spawn(loop, NULL, deep_task, &sum), 0);
	assert_int_equal(urt_loop_run(loop), 0);
	urt_loop_destroy(loop);
	assert_int_equal(sum, 300);
}

/* ---- the report in every loop, and the application's own set-up kept ---- */

static int quick_task(void *arg)
{
	(void)arg;
	return 0;
}

/* Two urt_run in a row: the second loop's overflowing task is named too
 * (it used to die silently: the first loop's handler stayed, and the second
 * loop, seeing a handler, set up no alternate stack). */
static void overflow_second_run(void)
{
	int res;

	if (urt_run(quick_task, NULL, &res) || res)
		_exit(3);
	if (urt_run(recursing_task, NULL, &res))
		_exit(4);
	_exit(0);
}

static void test_report_in_second_run(void **state)
{
	char err[512];
	int status;

	(void)state;
	status = in_child(overflow_second_run, err, sizeof(err));
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSEGV);
	assert_non_null(strstr(err, "urt: task \"deep-thought\" overflowed its stack of 65536 bytes (guard page hit)"));
}

static void *overflow_thread(void *arg)
{
	int res;

	(void)arg;
	urt_run(recursing_task, NULL, &res);
	return NULL;
}

/* A loop on another thread while the main thread keeps one: the other
 * thread gets an alternate stack of its own, and its task is named. */
static void overflow_other_thread(void)
{
	urt_loop *loop;
	pthread_t th;

	if (urt_loop_create(&loop, NULL))
		_exit(3);
	if (pthread_create(&th, NULL, overflow_thread, NULL))
		_exit(4);
	pthread_join(th, NULL);
	_exit(0);
}

static void test_report_on_other_thread(void **state)
{
	char err[512];
	int status;

	(void)state;
	status = in_child(overflow_other_thread, err, sizeof(err));
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSEGV);
	assert_non_null(strstr(err, "urt: task \"deep-thought\" overflowed its stack of 65536 bytes (guard page hit)"));
}

static int unnamed_recursing_task(void *arg)
{
	(void)arg;
	return recurse(0);
}

static void overflow_unnamed(void)
{
	int res;

	urt_run(unnamed_recursing_task, NULL, &res);
	_exit(0);
}

/* An unnamed task is named by its address, formatted by hand (the handler
 * may not call snprintf). */
static void test_report_unnamed(void **state)
{
	char err[512];
	int status;

	(void)state;
	status = in_child(overflow_unnamed, err, sizeof(err));
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSEGV);
	assert_non_null(strstr(err, "urt: task@0x"));
	assert_non_null(strstr(err, " overflowed its stack of 65536 bytes (guard page hit)\n"));
}

static void app_segv(int sig)
{
	(void)sig;
}

/* What the application sets up after creating a loop outlives the loop:
 * its alternate signal stack stays enabled, its SIGSEGV handler stays.
 * Exits 0 when both do, else with a code saying which did not. */
static void app_setup_kept(void)
{
	static char app_stack[64 * 1024];
	stack_t ss = { .ss_sp = app_stack, .ss_size = sizeof(app_stack) }, now;
	struct sigaction sa = { .sa_handler = app_segv }, cur;
	urt_loop *loop;
	int res;

	if (urt_loop_create(&loop, NULL))
		_exit(3);
	if (sigaltstack(&ss, NULL) || sigaction(SIGSEGV, &sa, NULL))
		_exit(4);
	urt_loop_destroy(loop);
	if (sigaltstack(NULL, &now) || (now.ss_flags & SS_DISABLE) || now.ss_sp != app_stack)
		_exit(5);
	if (sigaction(SIGSEGV, NULL, &cur) || cur.sa_handler != app_segv)
		_exit(6);
	/* A loop made now uses them as they are, and leaves them so. */
	if (urt_run(quick_task, NULL, &res))
		_exit(7);
	if (sigaltstack(NULL, &now) || (now.ss_flags & SS_DISABLE) || now.ss_sp != app_stack)
		_exit(8);
	if (sigaction(SIGSEGV, NULL, &cur) || cur.sa_handler != app_segv)
		_exit(9);
	_exit(0);
}

static void test_app_setup_kept(void **state)
{
	char err[512];
	int status;

	(void)state;
	status = in_child(app_setup_kept, err, sizeof(err));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* urt's own set-up goes with its last loop: the signal stack and the
 * SIGSEGV action are what they were before the first (no stack and the
 * default action, or a sanitizer's own). */
static void own_setup_removed(void)
{
	stack_t before, now;
	struct sigaction sa_before, cur;
	urt_loop *a, *b;

	if (sigaltstack(NULL, &before) || sigaction(SIGSEGV, NULL, &sa_before))
		_exit(2);
	if (urt_loop_create(&a, NULL) || urt_loop_create(&b, NULL))
		_exit(3);
	urt_loop_destroy(a);
	if (sigaltstack(NULL, &now) || (now.ss_flags & SS_DISABLE))
		_exit(4); /* b still needs one */
	urt_loop_destroy(b);
	if (sigaltstack(NULL, &now) || now.ss_flags != before.ss_flags ||
	    (!(now.ss_flags & SS_DISABLE) && now.ss_sp != before.ss_sp))
		_exit(5);
	if (sigaction(SIGSEGV, NULL, &cur) || cur.sa_handler != sa_before.sa_handler)
		_exit(6);
	_exit(0);
}

static void test_own_setup_removed(void **state)
{
	char err[512];
	int status;

	(void)state;
	status = in_child(own_setup_removed, err, sizeof(err));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- a frame larger than the stack, built with -fstack-clash-protection ---- */

static size_t big_frame = 68 * 1024; /* not a constant: a real VLA */

static int big_frame_task(void *arg)
{
	(void)arg;
	urt_task_set_name(NULL, "big-frame");
	{
		volatile char big[big_frame];

		/* Without probes the array's allocation jumps over the guard
		 * page and the canary; this store lands in the next mapping. */
		big[0] = 1;
		return big[0];
	}
}

static void overflow_big_frame(void)
{
	struct urt_loop_opts o = { .stack_size = STACK };
	urt_loop *loop;

	if (urt_loop_create(&loop, &o) || urt_spawn(loop, NULL, big_frame_task, NULL))
		_exit(3);
	urt_loop_run(loop);
	_exit(0); /* not reached: a probe hits the guard page */
}

/* A 68 KiB array on a 64 KiB stack: the probes that
 * -fstack-clash-protection puts in the growing frame hit the guard page, and
 * the task is named. */
static void test_big_frame_caught(void **state)
{
	char err[512];
	int status;

	(void)state;
	status = in_child(overflow_big_frame, err, sizeof(err));
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSEGV);
	assert_non_null(strstr(err, "urt: task \"big-frame\" overflowed its stack of 65536 bytes (guard page hit)"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guard_page_stops_recursion),
		cmocka_unit_test(test_canary_catches_overflow),
		cmocka_unit_test(test_guard_past_vma_budget),
		cmocka_unit_test(test_guard_under_every_stack),
		cmocka_unit_test(test_deep_use_is_fine),
		cmocka_unit_test(test_report_in_second_run),
		cmocka_unit_test(test_report_on_other_thread),
		cmocka_unit_test(test_report_unnamed),
		cmocka_unit_test(test_app_setup_kept),
		cmocka_unit_test(test_own_setup_removed),
		cmocka_unit_test(test_big_frame_caught),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
