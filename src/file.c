/* file: regular-file and generic fd operations, one SQE each: read, write
 * (also at the file position), vectored, with registered files and
 * buffers, fsync, open, statx, close. */
#define _GNU_SOURCE /* struct statx */
#include <errno.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "op.h"

ssize_t urt_read(int fd, void *buf, size_t len, int64_t offset)
{
	return urt__op_buf(IORING_OP_READ, fd, buf, len, urt__rw_offset(offset), 0, 0, 0);
}

ssize_t urt_write(int fd, const void *buf, size_t len, int64_t offset)
{
	return urt__op_buf(IORING_OP_WRITE, fd, buf, len, urt__rw_offset(offset), 0, 0, 0);
}

/* ---- registered files and buffers ---- */

int urt_loop_register_files(urt_loop *loop, const int *fds, unsigned n)
{
	if (!loop || !fds || !n)
		return -EINVAL;
	if (!pthread_equal(loop->owner, pthread_self()))
		return -EPERM;
	return urt__ring_register_files(&loop->ring, fds, n);
}

int urt_loop_register_buffers(urt_loop *loop, const struct iovec *iov, unsigned n)
{
	if (!loop || !iov || !n)
		return -EINVAL;
	if (!pthread_equal(loop->owner, pthread_self()))
		return -EPERM;
	return urt__ring_register_buffers(&loop->ring, iov, n);
}

static ssize_t rw_fixed(int opcode, int fd, const void *buf, size_t len, int64_t offset,
			unsigned buf_index, unsigned flags)
{
	if (flags & ~URT_FIXED_FILE)
		return urt__op_refuse(-EINVAL);
	return urt__op_buf(opcode, fd, buf, len, urt__rw_offset(offset), 0, buf_index,
		      (flags & URT_FIXED_FILE) ? IOSQE_FIXED_FILE : 0);
}

ssize_t urt_read_fixed(int fd, void *buf, size_t len, int64_t offset, unsigned buf_index,
		       unsigned flags)
{
	return rw_fixed(IORING_OP_READ_FIXED, fd, buf, len, offset, buf_index, flags);
}

ssize_t urt_write_fixed(int fd, const void *buf, size_t len, int64_t offset,
			unsigned buf_index, unsigned flags)
{
	return rw_fixed(IORING_OP_WRITE_FIXED, fd, buf, len, offset, buf_index, flags);
}

int urt_fsync(int fd, unsigned flags)
{
	struct io_uring_sqe sqe;
	struct urt__io_wait io;

	if (flags & ~URT_FSYNC_DATA)
		return urt__op_refuse(-EINVAL);
	io_uring_prep_fsync(&sqe, fd, (flags & URT_FSYNC_DATA) ? IORING_FSYNC_DATASYNC : 0);
	return urt__op_run(&sqe, &io);
}

/* Vectored read or write: the kernel checks the vector (-EINVAL for more
 * than IOV_MAX entries, -EFAULT for a bad one). */
static ssize_t rwv(int fd, const struct iovec *iov, int iovcnt, int64_t offset, bool write)
{
	struct io_uring_sqe sqe;
	struct urt__io_wait io;
	int res;

	if (iovcnt < 0)
		return urt__op_refuse(-EINVAL);
	if (write)
		io_uring_prep_writev(&sqe, fd, iov, (unsigned)iovcnt, urt__rw_offset(offset));
	else
		io_uring_prep_readv(&sqe, fd, iov, (unsigned)iovcnt, urt__rw_offset(offset));
	res = urt__op_run(&sqe, &io);
#if URT__VALGRIND
	for (int i = 0, left = res; !write && i < iovcnt && left > 0; i++) {
		size_t n = iov[i].iov_len < (size_t)left ? iov[i].iov_len : (size_t)left;

		VALGRIND_MAKE_MEM_DEFINED(iov[i].iov_base, n);
		left -= (int)n;
	}
#endif
	return res;
}

ssize_t urt_readv(int fd, const struct iovec *iov, int iovcnt, int64_t offset)
{
	return rwv(fd, iov, iovcnt, offset, false);
}

ssize_t urt_writev(int fd, const struct iovec *iov, int iovcnt, int64_t offset)
{
	return rwv(fd, iov, iovcnt, offset, true);
}

int urt_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	struct io_uring_sqe sqe;
	struct urt__io_wait io;

	if (!path)
		return urt__op_refuse(-EFAULT);
	io_uring_prep_openat(&sqe, dirfd, path, flags, mode);
	return urt__op_fd_result(&io, urt__op_run(&sqe, &io));
}

int urt_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out)
{
	struct io_uring_sqe sqe;
	struct urt__io_wait io;
	int res;

	if (!path || !out)
		return urt__op_refuse(-EFAULT);
	io_uring_prep_statx(&sqe, dirfd, path, flags, mask, out);
	res = urt__op_run(&sqe, &io);
#if URT__VALGRIND
	if (res == 0)
		VALGRIND_MAKE_MEM_DEFINED(out, sizeof(*out));
#endif
	return res;
}

int urt_close(int fd)
{
	struct io_uring_sqe sqe;
	struct urt__io_wait io;

	io_uring_prep_close(&sqe, fd);
	return urt__op_run(&sqe, &io);
}

