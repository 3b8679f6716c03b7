/* net: socket operations, one SQE each: accept, connect, recv, send
 * (always MSG_NOSIGNAL), shutdown, poll. */
#include <errno.h>
#include <sys/socket.h>

#include "op.h"

/* ---- sockets ---- */

int urt_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
	struct io_uring_sqe sqe;
	struct urt__io_wait io;
	int res;

	io_uring_prep_accept(&sqe, fd, addr, addrlen, flags);
	res = urt__op_fd_result(&io, urt__op_run(&sqe, &io));
#if URT__VALGRIND
	if (res >= 0 && addr && addrlen)
		VALGRIND_MAKE_MEM_DEFINED(addr, *addrlen);
#endif
	return res;
}

int urt_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	struct io_uring_sqe sqe;
	struct urt__io_wait io;

	io_uring_prep_connect(&sqe, fd, addr, addrlen);
	return urt__op_run(&sqe, &io);
}

ssize_t urt_recv(int fd, void *buf, size_t len, int flags)
{
	return urt__op_buf(IORING_OP_RECV, fd, buf, len, 0, flags, 0, 0);
}

ssize_t urt_send(int fd, const void *buf, size_t len, int flags)
{
	return urt__op_buf(IORING_OP_SEND, fd, buf, len, 0, flags | MSG_NOSIGNAL, 0, 0);
}

int urt_shutdown(int fd, int how)
{
	struct io_uring_sqe sqe;
	struct urt__io_wait io;

	io_uring_prep_shutdown(&sqe, fd, how);
	return urt__op_run(&sqe, &io);
}

int urt_poll(int fd, unsigned events)
{
	struct io_uring_sqe sqe;
	struct urt__io_wait io;

	io_uring_prep_poll_add(&sqe, fd, events);
	return urt__op_run(&sqe, &io);
}

