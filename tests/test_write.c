/* Writes, fsync and close: each parks the task on one SQE and returns the
 * CQE's result, exact byte counts and exact errors. */
#include "test_util.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

struct file_case {
	int fd;
	ssize_t w1, w2, w3;
	int sync, dsync, bad_flag;
};

/* Two writes at the file position, then one at an offset over them. */
static int file_writer(void *arg)
{
	struct file_case *c = arg;

	c->w1 = urt_write(c->fd, "hello ", 6, -1);
	c->w2 = urt_write(c->fd, "world", 5, -1);
	c->w3 = urt_write(c->fd, "W", 1, 6);
	c->sync = urt_fsync(c->fd, 0);
	c->dsync = urt_fsync(c->fd, URT_FSYNC_DATA);
	c->bad_flag = urt_fsync(c->fd, 1u << 7);
	return 0;
}

static void test_file_write(void **state)
{
	struct file_case c = { .fd = temp_file("", 0) };
	char buf[32] = { 0 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	spawn_ok(loop, NULL, file_writer, &c);
	run_and_destroy(loop);
	assert_int_equal(c.w1, 6);
	assert_int_equal(c.w2, 5);
	assert_int_equal(c.w3, 1);
	assert_int_equal(c.sync, 0);
	assert_int_equal(c.dsync, 0);
	assert_int_equal(c.bad_flag, -EINVAL);
	assert_int_equal(pread(c.fd, buf, sizeof(buf), 0), 11);
	assert_string_equal(buf, "hello World");
	assert_int_equal(lseek(c.fd, 0, SEEK_CUR), 11); /* the position advanced */
	assert_int_equal(close(c.fd), 0);
}

struct pipe_case {
	int fds[2];
	ssize_t wrote, read;
	int fsync_pipe;
	char got[8];
};

static int pipe_writer(void *arg)
{
	struct pipe_case *c = arg;

	c->wrote = urt_write(c->fds[1], "urt", 3, -1);
	c->fsync_pipe = urt_fsync(c->fds[1], 0);
	return 0;
}

static int pipe_reader(void *arg)
{
	struct pipe_case *c = arg;

	c->read = urt_read(c->fds[0], c->got, sizeof(c->got), -1);
	return 0;
}

/* The reader parks first; the writer's bytes wake it. */
static void test_pipe_write(void **state)
{
	struct pipe_case c = { .wrote = -1, .read = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	make_pipe(c.fds);
	spawn_ok(loop, NULL, pipe_reader, &c);
	spawn_ok(loop, NULL, pipe_writer, &c);
	run_and_destroy(loop);
	assert_int_equal(c.wrote, 3);
	assert_int_equal(c.read, 3);
	assert_memory_equal(c.got, "urt", 3);
	assert_int_equal(c.fsync_pipe, -EINVAL);
	close_pipe(c.fds);
}

struct close_case {
	int fd;
	int first, second, bad_write, bad_sync;
	ssize_t huge;
};

static int closer(void *arg)
{
	struct close_case *c = arg;
	char b = 0;

	c->first = urt_close(c->fd);
	c->second = urt_close(c->fd);
	c->bad_write = (int)urt_write(-1, &b, 1, 0);
	c->bad_sync = urt_fsync(-1, 0);
	c->huge = urt_write(c->fd, &b, (size_t)SSIZE_MAX + 1, 0);
	return 0;
}

static void test_close_and_errors(void **state)
{
	struct close_case c = { .fd = open("/dev/null", O_WRONLY | O_CLOEXEC) };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	assert_true(c.fd >= 0);
	spawn_ok(loop, NULL, closer, &c);
	run_and_destroy(loop);
	assert_int_equal(c.first, 0);
	assert_int_equal(c.second, -EBADF);
	assert_int_equal(fcntl(c.fd, F_GETFD), -1); /* really closed */
	assert_int_equal(c.bad_write, -EBADF);
	assert_int_equal(c.bad_sync, -EBADF);
	assert_int_equal(c.huge, -EINVAL);
}

static void test_outside_task(void **state)
{
	(void)state;
	assert_int_equal(urt_write(1, "x", 1, -1), -EPERM);
	assert_int_equal(urt_fsync(1, 0), -EPERM);
	assert_int_equal(urt_close(1000), -EPERM);
}

/* A write parked on a full pipe, cancelled: -ECANCELED, and the pipe holds
 * exactly what filled it (the cancelled write put nothing in). */
struct full_case {
	int fds[2];
	size_t filled;
	ssize_t ret;
	urt_task *writer;
};

static int blocked_writer(void *arg)
{
	struct full_case *c = arg;
	char b[4096];

	memset(b, 'c', sizeof(b));
	c->ret = urt_write(c->fds[1], b, sizeof(b), -1);
	return 0;
}

static int cancel_later(void *arg)
{
	struct full_case *c = arg;

	TASK_CHECK(urt_sleep_ns(10 * MS) == 0);
	TASK_CHECK(urt_cancel(c->writer) == 0);
	return 0;
}

static void test_cancel_blocked_write(void **state)
{
	struct full_case c = { .ret = 1 };
	char b[4096];
	size_t drained = 0;
	ssize_t n;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	make_pipe(c.fds);
	/* Fill the pipe without blocking this thread. */
	assert_int_equal(fcntl(c.fds[1], F_SETFL, O_NONBLOCK), 0);
	memset(b, 'f', sizeof(b));
	while ((n = write(c.fds[1], b, sizeof(b))) > 0)
		c.filled += (size_t)n;
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(fcntl(c.fds[1], F_SETFL, 0), 0);
	spawn_ok(loop, &c.writer, blocked_writer, &c);
	spawn_ok(loop, NULL, cancel_later, &c);
	run_and_destroy(loop);
	assert_int_equal(c.ret, -ECANCELED);
	assert_int_equal(fcntl(c.fds[0], F_SETFL, O_NONBLOCK), 0);
	while ((n = read(c.fds[0], b, sizeof(b))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			assert_int_equal(b[i], 'f');
		drained += (size_t)n;
	}
	assert_int_equal(drained, c.filled);
	close_pipe(c.fds);
}

/* Vectors, open, statx: a file created with urt_openat, written with
 * urt_writev, read back with urt_readv, sized with urt_statx. */
struct vec_case {
	char path[64];
	int fd, enoent, efault, closed;
	ssize_t wrote, read;
	int stat;
	struct statx st;
	char a[4], b[8];
};

static int vec_task(void *arg)
{
	struct vec_case *c = arg;
	struct iovec out[3] = { { "one", 3 }, { "-two", 4 }, { "-three", 6 } };
	struct iovec in[2] = { { c->a, sizeof(c->a) }, { c->b, sizeof(c->b) } };

	c->fd = urt_openat(AT_FDCWD, c->path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	if (c->fd < 0)
		return c->fd;
	c->wrote = urt_writev(c->fd, out, 3, 0);
	c->read = urt_readv(c->fd, in, 2, 0);
	c->stat = urt_statx(AT_FDCWD, c->path, 0, STATX_SIZE, &c->st);
	c->closed = urt_close(c->fd);
	c->enoent = urt_openat(AT_FDCWD, "/nonexistent/urt", O_RDONLY, 0);
	c->efault = urt_openat(AT_FDCWD, NULL, O_RDONLY, 0);
	return 0;
}

static void test_vectors_open_statx(void **state)
{
	struct vec_case c = { .fd = -1 };
	int fd;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	/* A fresh name: create one, then remove it for urt_openat to make. */
	snprintf(c.path, sizeof(c.path), "/tmp/urt-vec-XXXXXX");
	fd = mkstemp(c.path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(unlink(c.path), 0);
	spawn_ok(loop, NULL, vec_task, &c);
	run_and_destroy(loop);
	assert_true(c.fd >= 0);
	assert_int_equal(c.wrote, 13);
	assert_int_equal(c.read, 12); /* 4 + 8: the buffers' room */
	assert_memory_equal(c.a, "one-", 4);
	assert_memory_equal(c.b, "two-thre", 8);
	assert_int_equal(c.stat, 0);
	assert_int_equal(c.st.stx_size, 13);
	assert_int_equal(c.closed, 0);
	assert_int_equal(c.enoent, -ENOENT);
	assert_int_equal(c.efault, -EFAULT);
	assert_int_equal(unlink(c.path), 0);
}

static void test_vectors_outside_task(void **state)
{
	struct statx st;
	struct iovec v = { NULL, 0 };

	(void)state;
	assert_int_equal(urt_readv(0, &v, 1, -1), -EPERM);
	assert_int_equal(urt_writev(1, &v, 1, -1), -EPERM);
	assert_int_equal(urt_openat(AT_FDCWD, "/", O_RDONLY, 0), -EPERM);
	assert_int_equal(urt_statx(AT_FDCWD, "/", 0, STATX_SIZE, &st), -EPERM);
}

/* An open cancelled in the submit that carries it: the kernel opens the
 * file at once (a cached lookup), before the cancel reaches it. The task is
 * told -ECANCELED and never sees the fd, so urt must close it. */
static int open_then_cancelled(void *arg)
{
	int *res = arg;

	*res = urt_openat(AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC, 0);
	return 0;
}

static void test_cancelled_open_no_leak(void **state)
{
	int before = open_fds();

	(void)state;
	for (int i = 0; i < 50; i++) {
		urt_loop *loop = loop_new(NULL);
		urt_task *t;
		int res = 1;

		spawn_ok(loop, &t, open_then_cancelled, &res);
		spawn_ok(loop, NULL, cancel_target, &t);
		assert_int_equal(urt_loop_run(loop), 0);
		assert_int_equal(urt_join(t, NULL), 0);
		urt_loop_destroy(loop);
		assert_int_equal(res, -ECANCELED);
	}
	assert_int_equal(open_fds(), before);
}

/* Registered files and buffers: READ_FIXED and WRITE_FIXED, by fd and by
 * fixed-file index; the kernel's range and index checks. */
struct fixed_case {
	int fd;
	char *region;
	ssize_t w_fd, w_idx, r_fd, r_idx, outside, bad_index, bad_flag;
};

static int fixed_task(void *arg)
{
	struct fixed_case *c = arg;
	char outside[16];

	memcpy(c->region, "fixed-data", 10);
	c->w_fd = urt_write_fixed(c->fd, c->region, 10, 0, 0, 0);
	memcpy(c->region + 100, "INDEX", 5);
	c->w_idx = urt_write_fixed(0, c->region + 100, 5, 10, 0, URT_FIXED_FILE);
	memset(c->region, 0, 4096);
	c->r_fd = urt_read_fixed(c->fd, c->region + 4000, 15, 0, 0, 0);
	c->r_idx = urt_read_fixed(0, c->region + 2000, 5, 10, 0, URT_FIXED_FILE);
	c->outside = urt_read_fixed(c->fd, outside, sizeof(outside), 0, 0, 0);
	c->bad_index = urt_read_fixed(c->fd, c->region, 4, 0, 7, 0);
	c->bad_flag = urt_read_fixed(c->fd, c->region, 4, 0, 0, 1u << 5);
	return 0;
}

static void test_fixed(void **state)
{
	struct fixed_case c = { .fd = temp_file("", 0) };
	static char region[4096] __attribute__((aligned(4096)));
	struct iovec iov = { region, sizeof(region) };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	c.region = region;
	assert_int_equal(urt_loop_register_files(NULL, &c.fd, 1), -EINVAL);
	assert_int_equal(urt_loop_register_files(loop, NULL, 1), -EINVAL);
	assert_int_equal(urt_loop_register_buffers(loop, &iov, 0), -EINVAL);
	if (urt_loop_backend(loop, NULL) == URT_BACKEND_EPOLL) {
		/* No registered files or buffers without io_uring; the fixed
		 * calls say so too. */
		assert_int_equal(urt_loop_register_files(loop, &c.fd, 1), -EOPNOTSUPP);
		assert_int_equal(urt_loop_register_buffers(loop, &iov, 1), -EOPNOTSUPP);
		spawn_ok(loop, NULL, fixed_task, &c);
		run_and_destroy(loop);
		assert_int_equal(c.w_fd, -EOPNOTSUPP);
		assert_int_equal(c.r_idx, -EOPNOTSUPP);
		assert_int_equal(c.bad_flag, -EINVAL);
		close(c.fd);
		return;
	}
	assert_int_equal(urt_loop_register_files(loop, &c.fd, 1), 0);
	assert_int_equal(urt_loop_register_buffers(loop, &iov, 1), 0);
	assert_int_equal(urt_loop_register_buffers(loop, &iov, 1), -EBUSY);
	spawn_ok(loop, NULL, fixed_task, &c);
	run_and_destroy(loop);
	assert_int_equal(c.w_fd, 10);
	assert_int_equal(c.w_idx, 5);
	assert_int_equal(c.r_fd, 15);
	assert_memory_equal(region + 4000, "fixed-dataINDEX", 15);
	assert_int_equal(c.r_idx, 5);
	assert_memory_equal(region + 2000, "INDEX", 5);
	assert_int_equal(c.outside, -EFAULT);
	assert_int_equal(c.bad_index, -EFAULT);
	assert_int_equal(c.bad_flag, -EINVAL);
	assert_int_equal(urt_read_fixed(c.fd, region, 1, 0, 0, 0), -EPERM);
	assert_int_equal(close(c.fd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_write),
		cmocka_unit_test(test_pipe_write),
		cmocka_unit_test(test_close_and_errors),
		cmocka_unit_test(test_outside_task),
		cmocka_unit_test(test_cancel_blocked_write),
		cmocka_unit_test(test_vectors_open_statx),
		cmocka_unit_test(test_vectors_outside_task),
		cmocka_unit_test(test_cancelled_open_no_leak),
		cmocka_unit_test(test_fixed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
