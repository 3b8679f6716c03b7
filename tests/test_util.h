/*
 * Helpers shared by the test programs.
 *
 * cmocka's assert_* must not run inside a task: a failure longjmps out of the
 * task's stack and leaves the loop half-run. Tasks record what they saw (in
 * their own structs, or with TASK_CHECK), and the test body asserts after the
 * loop has returned.
 */
#ifndef URT_TEST_UTIL_H
#define URT_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <urt.h>

#define MS (1000000ull)
#define SEC (1000 * MS)

/* Failed TASK_CHECKs since the last check_tasks(). */
static inline int *task_failures(void)
{
	static int n;

	return &n;
}

/* An assertion usable inside a task: counts and reports, does not jump. */
#define TASK_CHECK(cond)                                                        \
	do {                                                                    \
		if (!(cond)) {                                                  \
			(*task_failures())++;                                   \
			print_error("%s:%d: task check failed: %s\n", __FILE__, \
				    __LINE__, #cond);                           \
		}                                                               \
	} while (0)

/* Fail the test when a task's TASK_CHECK failed. */
static inline void check_tasks(void)
{
	int n = *task_failures();

	*task_failures() = 0;
	assert_int_equal(n, 0);
}

static inline urt_loop *loop_new(const struct urt_loop_opts *opts)
{
	urt_loop *loop = NULL;

	assert_int_equal(urt_loop_create(&loop, opts), 0);
	assert_non_null(loop);
	return loop;
}

static inline void spawn_ok(urt_loop *loop, urt_task **out, urt_task_fn fn, void *arg)
{
	assert_int_equal(urt_spawn(loop, out, fn, arg), 0);
}

/* Run until no task is left (run must return 0), destroy, check the tasks. */
static inline void run_and_destroy(urt_loop *loop)
{
	assert_int_equal(urt_loop_run(loop), 0);
	urt_loop_destroy(loop);
	assert_null(urt_current_loop());
	check_tasks();
}

static inline void make_pipe(int fds[2])
{
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
}

static inline void close_pipe(int fds[2])
{
	assert_int_equal(close(fds[0]), 0);
	assert_int_equal(close(fds[1]), 0);
}

static inline void write_exact(int fd, const void *buf, size_t len)
{
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
}

/* A temporary file in /tmp holding data, already unlinked; returns its fd. */
static inline int temp_file(const void *data, size_t len)
{
	char path[] = "/tmp/urt-test-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(unlink(path), 0);
	write_exact(fd, data, len);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

/* Open file descriptors of the process, from /proc/self/fd (the
 * directory's own fd not counted). */
#include <dirent.h>
static inline int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and d's own fd */
}

/* A task that cancels the task *arg points to: spawned right after it,
 * it runs in the same pass, after that task has parked with its SQE
 * queued, so the cancel goes to the kernel in the same submit. */
static inline int cancel_target(void *arg)
{
	return urt_cancel(*(urt_task **)arg);
}

static inline uint64_t ms_since(uint64_t start_ns)
{
	return (urt_now_ns() - start_ns) / MS;
}

#endif
