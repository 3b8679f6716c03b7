/* urt_read: pipes, files at an offset and at the file position, EOF, and
 * the errors a caller gets. */
#include <limits.h>
#include <stdio.h>

#include "test_util.h"

static const char data16[] = "0123456789abcdef"; /* 16 bytes in the file */

/* One read, with its arguments and what it returned. */
struct rd {
	int fd;
	size_t len;
	int64_t offset;
	ssize_t ret;
	char buf[32];
};

static int read_task(void *arg)
{
	struct rd *r = arg;

	r->ret = urt_read(r->fd, r->buf, r->len, r->offset);
	return 0;
}

/* Reads to run in order, in one task. */
struct rd_seq {
	struct rd *rd;
	int n;
};

static int read_seq_task(void *arg)
{
	struct rd_seq *s = arg;

	for (int i = 0; i < s->n; i++)
		read_task(&s->rd[i]);
	return 0;
}

/* Runs the n reads one after another in one task on a fresh loop. */
static void run_reads(struct rd *rd, int n)
{
	struct rd_seq s = { rd, n };
	urt_loop *loop = loop_new(NULL);

	for (int i = 0; i < n; i++) {
		rd[i].ret = INT_MIN;
		memset(rd[i].buf, 0, sizeof(rd[i].buf));
	}
	spawn_ok(loop, NULL, read_seq_task, &s);
	run_and_destroy(loop);
}

struct pipe_pair {
	int fds[2];
	bool written;        /* the writer has written */
	bool written_seen;   /* the reader resumed after the write */
	uint64_t write_at;
	uint64_t resumed_at;
	struct rd rd;
};

static int pipe_reader(void *arg)
{
	struct pipe_pair *p = arg;

	read_task(&p->rd);
	p->resumed_at = urt_now_ns();
	p->written_seen = p->written;
	return 0;
}

static int pipe_writer(void *arg)
{
	struct pipe_pair *p = arg;

	TASK_CHECK(urt_sleep_ns(10 * MS) == 0);
	p->write_at = urt_now_ns();
	p->written = true;
	TASK_CHECK(write(p->fds[1], "hello", 5) == 5);
	return 0;
}

/* A read on an empty pipe parks until a writer task writes, then returns
 * exactly what was written. */
static void test_pipe_parks_until_written(void **state)
{
	struct pipe_pair p = { .rd = { .len = sizeof(p.rd.buf), .offset = -1 } };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	make_pipe(p.fds);
	p.rd.fd = p.fds[0];
	spawn_ok(loop, NULL, pipe_reader, &p);
	spawn_ok(loop, NULL, pipe_writer, &p);
	run_and_destroy(loop);
	assert_true(p.written_seen);
	assert_true(p.resumed_at >= p.write_at);
	assert_int_equal(p.rd.ret, 5);
	assert_memory_equal(p.rd.buf, "hello", 6); /* and nothing past it */
	close_pipe(p.fds);
}

/* Reads at an offset return exactly those bytes and leave the file
 * position alone. */
static void test_file_offset(void **state)
{
	int fd = temp_file(data16, 16);
	struct rd rd[2] = {
		{ .fd = fd, .len = 4, .offset = 6 },
		{ .fd = fd, .len = 3, .offset = 0 },
	};

	(void)state;
	run_reads(rd, 2);
	assert_int_equal(rd[0].ret, 4);
	assert_string_equal(rd[0].buf, "6789");
	assert_int_equal(rd[1].ret, 3);
	assert_string_equal(rd[1].buf, "012");
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
	assert_int_equal(close(fd), 0);
}

/* Reads with offset -1 start at the file position and advance it. */
static void test_file_position(void **state)
{
	int fd = temp_file(data16, 16);
	struct rd rd[3] = {
		{ .fd = fd, .len = 4, .offset = -1 },
		{ .fd = fd, .len = 4, .offset = -1 },
		{ .fd = fd, .len = 5, .offset = -7 },
	};

	(void)state;
	assert_int_equal(lseek(fd, 2, SEEK_SET), 2);
	run_reads(rd, 3);
	assert_int_equal(rd[0].ret, 4);
	assert_string_equal(rd[0].buf, "2345");
	assert_int_equal(rd[1].ret, 4);
	assert_string_equal(rd[1].buf, "6789");
	/* Any negative offset means the file position. */
	assert_int_equal(rd[2].ret, 5);
	assert_string_equal(rd[2].buf, "abcde");
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 15);
	assert_int_equal(close(fd), 0);
}

/* At end of file a read returns 0; across it, the bytes left. */
static void test_file_eof(void **state)
{
	int fd = temp_file(data16, 16);
	struct rd rd[4] = {
		{ .fd = fd, .len = 8, .offset = 16 },
		{ .fd = fd, .len = 8, .offset = 1000 },
		{ .fd = fd, .len = 10, .offset = 14 },
		{ .fd = fd, .len = 8, .offset = -1 },
	};

	(void)state;
	assert_int_equal(lseek(fd, 0, SEEK_END), 16);
	run_reads(rd, 4);
	assert_int_equal(rd[0].ret, 0);
	assert_int_equal(rd[1].ret, 0);
	assert_int_equal(rd[2].ret, 2);
	assert_string_equal(rd[2].buf, "ef");
	assert_int_equal(rd[3].ret, 0);
	assert_int_equal(close(fd), 0);
}

struct direct_rd {
	int fd;
	char *buf;
	ssize_t at_block1, at_position;
};

static int direct_reader(void *arg)
{
	struct direct_rd *d = arg;

	d->at_block1 = urt_read(d->fd, d->buf, 4096, 4096);
	d->at_position = urt_read(d->fd, d->buf + 4096, 4096, -1);
	return 0;
}

/* A read that must wait for the disk (O_DIRECT: the page cache cannot
 * answer it): on epoll it runs on the pool, and returns the same as on
 * io_uring. */
static void test_file_direct(void **state)
{
	static char buf[8192] __attribute__((aligned(4096)));
	char path[64], block[8192];
	struct direct_rd d = { .buf = buf };
	int fd = temp_file("", 0);
	urt_loop *loop;

	(void)state;
	for (int i = 0; i < 8192; i++)
		block[i] = (char)('a' + i / 4096);
	write_exact(fd, block, sizeof(block));
	assert_int_equal(fsync(fd), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	d.fd = open(path, O_RDONLY | O_DIRECT);
	if (d.fd < 0 && errno == EINVAL) {
		close(fd);
		skip(); /* a file system without O_DIRECT */
	}
	assert_true(d.fd >= 0);
	loop = loop_new(NULL);
	spawn_ok(loop, NULL, direct_reader, &d);
	run_and_destroy(loop);
	assert_int_equal(d.at_block1, 4096);
	assert_memory_equal(buf, block + 4096, 4096);
	assert_int_equal(d.at_position, 4096);
	assert_memory_equal(buf + 4096, block, 4096);
	/* Not the file position after it: io_uring (Linux 6.18) sometimes
	 * leaves it at 0 after an O_DIRECT read at the position. */
	close(d.fd);
	close(fd);
}

/* What a task does on a loop made with URT_LOOP_FILES_ON_POOL. */
struct on_pool {
	int file, out, dev_null, dir, closed, pipe[2];
	ssize_t at6, at_pos, at_eof, wrote, null, isdir, badf, piped;
	char buf6[8], buf_pos[8], pipe_buf[8];
};

static int on_pool_task(void *arg)
{
	struct on_pool *p = arg;

	p->at6 = urt_read(p->file, p->buf6, 4, 6);
	p->at_pos = urt_read(p->file, p->buf_pos, 3, -1);
	p->at_eof = urt_read(p->file, p->buf6 + 4, 4, 16);
	p->wrote = urt_write(p->out, "abc", 3, 5);
	p->null = urt_read(p->dev_null, p->buf6 + 4, 4, -1);
	p->isdir = urt_read(p->dir, p->buf6 + 4, 4, 0);
	p->badf = urt_read(p->closed, p->buf6 + 4, 4, 0);
	p->piped = urt_read(p->pipe[0], p->pipe_buf, sizeof(p->pipe_buf), -1);
	return 0;
}

static int on_pool_writer(void *arg)
{
	struct on_pool *p = arg;

	TASK_CHECK(urt_sleep_ns(5 * MS) == 0);
	TASK_CHECK(write(p->pipe[1], "pipe", 4) == 4);
	return 0;
}

/* URT_LOOP_FILES_ON_POOL: file reads and writes return what they return
 * without it, a pipe still waits for its data, and a bad fd is still
 * -EBADF; on epoll each file call (a regular file, /dev/null, a directory)
 * ran on the pool: jobs_done counts exactly them. On io_uring the flag
 * changes nothing, and nothing goes to the pool. */
static void test_files_on_pool(void **state)
{
	struct urt_loop_opts o = { .flags = URT_LOOP_FILES_ON_POOL | URT_LOOP_METRICS };
	struct on_pool p = { .file = temp_file(data16, 16), .out = temp_file("", 0) };
	struct urt_loop_metrics m;
	urt_loop *loop = loop_new(&o);
	char back[8] = { 0 };

	(void)state;
	p.dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	p.dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	p.closed = fcntl(p.file, F_DUPFD_CLOEXEC, 1000);
	assert_true(p.dev_null >= 0 && p.dir >= 0 && p.closed >= 1000);
	assert_int_equal(close(p.closed), 0);
	make_pipe(p.pipe);
	spawn_ok(loop, NULL, on_pool_task, &p);
	spawn_ok(loop, NULL, on_pool_writer, &p);
	assert_int_equal(urt_loop_run(loop), 0);
	check_tasks();
	assert_int_equal(p.at6, 4);
	assert_memory_equal(p.buf6, "6789", 4);
	assert_int_equal(p.at_pos, 3);
	assert_memory_equal(p.buf_pos, "012", 3);
	assert_int_equal(lseek(p.file, 0, SEEK_CUR), 3);
	assert_int_equal(p.at_eof, 0);
	assert_int_equal(p.wrote, 3);
	assert_int_equal(pread(p.out, back, sizeof(back), 0), 8);
	assert_memory_equal(back, "\0\0\0\0\0abc", 8);
	assert_int_equal(p.null, 0);
	assert_int_equal(p.isdir, -EISDIR);
	assert_int_equal(p.badf, -EBADF);
	assert_int_equal(p.piped, 4);
	assert_memory_equal(p.pipe_buf, "pipe", 4);
	assert_int_equal(urt_loop_metrics(loop, &m), 0);
	if (urt_loop_backend(loop, NULL) == URT_BACKEND_EPOLL)
		assert_int_equal(m.jobs_done, 6);
	else
		assert_int_equal(m.jobs_done, 0);
	assert_int_equal(m.jobs_inflight, 0);
	urt_loop_destroy(loop);
	close_pipe(p.pipe);
	assert_int_equal(close(p.file), 0);
	assert_int_equal(close(p.out), 0);
	assert_int_equal(close(p.dev_null), 0);
	assert_int_equal(close(p.dir), 0);
}

/* Bad descriptors: -EBADF for -1 and for a closed fd, -EISDIR for a
 * directory. */
static void test_bad_fds(void **state)
{
	int fd = temp_file(data16, 16);
	/* A high number, so that no fd opened meanwhile (the ring's) reuses
	 * it: reading the ring's own fd would never complete. */
	int closed = fcntl(fd, F_DUPFD_CLOEXEC, 1000);
	int dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct rd rd[3] = {
		{ .fd = -1, .len = 8, .offset = 0 },
		{ .fd = closed, .len = 8, .offset = 0 },
		{ .fd = dir, .len = 8, .offset = 0 },
	};

	(void)state;
	assert_true(closed >= 1000);
	assert_true(dir >= 0);
	assert_int_equal(close(fd), 0);
	assert_int_equal(close(closed), 0);
	run_reads(rd, 3);
	assert_int_equal(rd[0].ret, -EBADF);
	assert_int_equal(rd[1].ret, -EBADF);
	assert_int_equal(rd[2].ret, -EISDIR);
	assert_int_equal(close(dir), 0);
}

/* Lengths: 0 reads nothing (also on an empty pipe, without parking); above
 * SSIZE_MAX is -EINVAL; SSIZE_MAX, and 4 GiB + 4 (not truncated to 4), are
 * capped like read(2) and read what the file holds. */
static void test_lengths(void **state)
{
	int fd = temp_file(data16, 16);
	int fds[2];
	/* On the heap, not the stack: the kernel checks the whole capped
	 * range (2 GiB) is user memory, and the main stack may lie less than
	 * 2 GiB below the top of the address space (-EFAULT then). */
	struct rd *rd = calloc(5, sizeof(*rd));

	(void)state;
	assert_non_null(rd);
	make_pipe(fds);
	rd[0] = (struct rd){ .fd = fd, .len = 0, .offset = 0 };
	rd[1] = (struct rd){ .fd = fds[0], .len = 0, .offset = -1 };
	rd[2] = (struct rd){ .fd = fd, .len = (size_t)SSIZE_MAX + 1, .offset = 0 };
	rd[3] = (struct rd){ .fd = fd, .len = SSIZE_MAX, .offset = 0 };
	rd[4] = (struct rd){ .fd = fd, .len = ((size_t)1 << 32) + 4, .offset = 0 };
	run_reads(rd, 5);
	assert_int_equal(rd[0].ret, 0);
	assert_int_equal(rd[1].ret, 0);
	assert_int_equal(rd[2].ret, -EINVAL);
	assert_int_equal(rd[2].buf[0], 0); /* untouched */
	assert_int_equal(rd[3].ret, 16);
	assert_string_equal(rd[3].buf, data16);
	assert_int_equal(rd[4].ret, 16);
	assert_string_equal(rd[4].buf, data16);
	free(rd);
	close_pipe(fds);
	assert_int_equal(close(fd), 0);
}

#define READERS 100
#define CHUNK 256

static unsigned char chunk_byte(int chunk, int i)
{
	return (unsigned char)(chunk * 7 + i * 13 + (i >> 3));
}

struct chunk_reader {
	int fd;
	int chunk;
	int *ok;
};

static int chunk_task(void *arg)
{
	struct chunk_reader *c = arg;
	unsigned char buf[CHUNK + 1];
	ssize_t n = urt_read(c->fd, buf, sizeof(buf), (int64_t)c->chunk * CHUNK);
	int good = 0;

	for (int i = 0; i < CHUNK && n >= CHUNK; i++)
		good += buf[i] == chunk_byte(c->chunk, i);
	/* The last chunk ends the file; every other one is followed by the
	 * next chunk's first byte. */
	TASK_CHECK(n == (c->chunk == READERS - 1 ? CHUNK : CHUNK + 1));
	TASK_CHECK(good == CHUNK);
	if (good == CHUNK)
		(*c->ok)++;
	return 0;
}

/* 100 tasks read the same file at once, each its own offset. */
static void test_concurrent_readers(void **state)
{
	static unsigned char file[READERS * CHUNK];
	struct chunk_reader c[READERS];
	urt_loop *loop = loop_new(NULL);
	int fd, ok = 0;

	(void)state;
	for (int k = 0; k < READERS; k++)
		for (int i = 0; i < CHUNK; i++)
			file[k * CHUNK + i] = chunk_byte(k, i);
	fd = temp_file(file, sizeof(file));
	for (int k = 0; k < READERS; k++) {
		c[k] = (struct chunk_reader){ .fd = fd, .chunk = k, .ok = &ok };
		spawn_ok(loop, NULL, chunk_task, &c[k]);
	}
	run_and_destroy(loop);
	assert_int_equal(ok, READERS);
	assert_int_equal(close(fd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipe_parks_until_written),
		cmocka_unit_test(test_file_offset),
		cmocka_unit_test(test_file_position),
		cmocka_unit_test(test_file_eof),
		cmocka_unit_test(test_file_direct),
		cmocka_unit_test(test_bad_fds),
		cmocka_unit_test(test_files_on_pool),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_concurrent_readers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
