/* Sockets and acceptors on loopback: accept, connect, recv, send, shutdown,
 * poll, each one SQE; exact byte counts and errors; cancel while parked;
 * deadlines through the linked timeout; the multishot acceptor, its queue,
 * its pause when the queue is full and its re-arm. */
#include "test_util.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* A listening TCP socket on 127.0.0.1 at an ephemeral port. */
static int listener(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	assert_int_equal(listen(fd, 256), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)addr, &len), 0);
	return fd;
}

static int tcp_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	return fd;
}

/* n client sockets connected to addr (the kernel's backlog holds them
 * until an accept takes them); returns the highest fd. */
static int connect_clients(const struct sockaddr_in *addr, int *cl, int n)
{
	int top = -1;

	for (int i = 0; i < n; i++) {
		cl[i] = tcp_socket();
		assert_int_equal(connect(cl[i], (const struct sockaddr *)addr, sizeof(*addr)), 0);
		top = cl[i] > top ? cl[i] : top;
	}
	return top;
}

static void close_clients(const int *cl, int n)
{
	for (int i = 0; i < n; i++)
		close(cl[i]);
}

/* ---- one connection, both ends in tasks ---- */

struct conv {
	int lfd;
	struct sockaddr_in addr;
	/* server */
	int sfd;
	struct sockaddr_in peer;
	socklen_t peer_len;
	ssize_t s_recv1, s_send, s_recv_eof;
	char s_got[16];
	/* client */
	int cfd;
	int c_connect, c_shutdown;
	ssize_t c_send, c_recv;
	char c_got[16];
};

static int conv_server(void *arg)
{
	struct conv *c = arg;

	c->peer_len = sizeof(c->peer);
	c->sfd = urt_accept(c->lfd, (struct sockaddr *)&c->peer, &c->peer_len, SOCK_CLOEXEC);
	if (c->sfd < 0)
		return c->sfd;
	c->s_recv1 = urt_recv(c->sfd, c->s_got, sizeof(c->s_got), 0);
	c->s_send = urt_send(c->sfd, "pong!", 5, 0);
	c->s_recv_eof = urt_recv(c->sfd, c->s_got + 8, 8, 0);
	return 0;
}

static int conv_client_exact(void *arg)
{
	struct conv *c = arg;

	c->c_connect = urt_connect(c->cfd, (struct sockaddr *)&c->addr, sizeof(c->addr));
	c->c_send = urt_send(c->cfd, "ping", 4, 0);
	c->c_recv = urt_recv(c->cfd, c->c_got, 5, MSG_WAITALL);
	c->c_shutdown = urt_shutdown(c->cfd, SHUT_WR);
	return 0;
}

static void test_conversation(void **state)
{
	struct conv c = { .sfd = -1 };
	urt_loop *loop = loop_new(NULL);

	(void)state;
	c.lfd = listener(&c.addr);
	c.cfd = tcp_socket();
	spawn_ok(loop, NULL, conv_server, &c);
	spawn_ok(loop, NULL, conv_client_exact, &c);
	run_and_destroy(loop);
	assert_true(c.sfd >= 0);
	assert_int_equal(c.peer.sin_family, AF_INET);
	assert_int_equal(c.peer.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
	assert_int_equal(c.c_connect, 0);
	assert_int_equal(c.c_send, 4);
	assert_int_equal(c.s_recv1, 4);
	assert_memory_equal(c.s_got, "ping", 4);
	assert_int_equal(c.s_send, 5);
	assert_int_equal(c.c_recv, 5);
	assert_memory_equal(c.c_got, "pong!", 5);
	assert_int_equal(c.c_shutdown, 0);
	assert_int_equal(c.s_recv_eof, 0); /* the client shut down its side */
	assert_int_equal(close(c.sfd), 0);
	assert_int_equal(close(c.cfd), 0);
	assert_int_equal(close(c.lfd), 0);
}

/* ---- errors ---- */

struct errs {
	struct sockaddr_in refused;
	int pair[2];
	int connect_refused, shutdown_unconnected, shutdown_bad_how;
	ssize_t send_closed, recv_badf, recv_huge, send_huge;
	int accept_badf, accept_not_listening, poll_badf;
};

static int error_task(void *arg)
{
	struct errs *e = arg;
	int fd = tcp_socket();
	char b[4];

	e->connect_refused = urt_connect(fd, (struct sockaddr *)&e->refused, sizeof(e->refused));
	close(fd);
	fd = tcp_socket();
	e->shutdown_unconnected = urt_shutdown(fd, SHUT_RDWR);
	e->shutdown_bad_how = urt_shutdown(e->pair[0], 42);
	e->accept_not_listening = urt_accept(fd, NULL, NULL, 0);
	close(fd);
	/* The peer is gone: -EPIPE, and no SIGPIPE (MSG_NOSIGNAL). */
	e->send_closed = urt_send(e->pair[0], "x", 1, 0);
	e->recv_badf = urt_recv(-1, b, sizeof(b), 0);
	e->recv_huge = urt_recv(e->pair[0], b, (size_t)SSIZE_MAX + 1, 0);
	e->send_huge = urt_send(e->pair[0], b, (size_t)SSIZE_MAX + 1, 0);
	e->accept_badf = urt_accept(-1, NULL, NULL, 0);
	e->poll_badf = urt_poll(-1, POLLIN);
	return 0;
}

static void test_errors(void **state)
{
	struct errs e;
	urt_loop *loop = loop_new(NULL);
	int lfd;

	(void)state;
	memset(&e, 0, sizeof(e));
	/* A port that was listening and is closed: nobody is there. */
	lfd = listener(&e.refused);
	close(lfd);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e.pair), 0);
	close(e.pair[1]);
	spawn_ok(loop, NULL, error_task, &e);
	run_and_destroy(loop);
	assert_int_equal(e.connect_refused, -ECONNREFUSED);
	assert_int_equal(e.shutdown_unconnected, -ENOTCONN);
	assert_int_equal(e.shutdown_bad_how, -EINVAL);
	assert_int_equal(e.accept_not_listening, -EINVAL);
	assert_int_equal(e.send_closed, -EPIPE);
	assert_int_equal(e.recv_badf, -EBADF);
	assert_int_equal(e.recv_huge, -EINVAL);
	assert_int_equal(e.send_huge, -EINVAL);
	assert_int_equal(e.accept_badf, -EBADF);
	assert_int_equal(e.poll_badf, -EBADF);
	close(e.pair[0]);
}

static void test_outside_task(void **state)
{
	char b[4];
	urt_acceptor *a = (urt_acceptor *)&b;

	(void)state;
	assert_int_equal(urt_accept(0, NULL, NULL, 0), -EPERM);
	assert_int_equal(urt_connect(0, NULL, 0), -EPERM);
	assert_int_equal(urt_recv(0, b, sizeof(b), 0), -EPERM);
	assert_int_equal(urt_send(0, b, sizeof(b), 0), -EPERM);
	assert_int_equal(urt_shutdown(0, SHUT_RD), -EPERM);
	assert_int_equal(urt_poll(0, POLLIN), -EPERM);
	assert_int_equal(urt_acceptor_create(NULL, &a, 3, 0), -EINVAL); /* no loop */
	assert_null(a);
	assert_int_equal(urt_acceptor_next(NULL), -EINVAL);
	assert_int_equal(urt_acceptor_close(NULL), -EINVAL);
	{
		urt_loop *loop = loop_new(NULL);

		assert_int_equal(urt_acceptor_create(loop, NULL, 3, 0), -EINVAL);
		assert_int_equal(urt_acceptor_create(loop, &a, -1, 0), -EINVAL);
		assert_int_equal(urt_acceptor_create(loop, &a, 3, O_APPEND), -EINVAL);
		urt_loop_destroy(loop);
	}
}

/* ---- poll ---- */

struct pollc {
	int pair[2];
	int in, out;
	uint64_t woke_at, wrote_at;
};

static int poll_waiter(void *arg)
{
	struct pollc *p = arg;

	p->out = urt_poll(p->pair[0], POLLOUT);
	p->in = urt_poll(p->pair[0], POLLIN);
	p->woke_at = urt_now_ns();
	return 0;
}

static int poll_writer(void *arg)
{
	struct pollc *p = arg;

	urt_sleep_ns(10 * MS);
	p->wrote_at = urt_now_ns();
	return urt_send(p->pair[1], "z", 1, 0) == 1 ? 0 : -1;
}

static void test_poll(void **state)
{
	struct pollc p = { 0 };
	urt_loop *loop = loop_new(NULL);
	char c;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.pair), 0);
	spawn_ok(loop, NULL, poll_waiter, &p);
	spawn_ok(loop, NULL, poll_writer, &p);
	run_and_destroy(loop);
	assert_int_equal(p.out, POLLOUT);
	assert_int_equal(p.in, POLLIN);
	assert_true(p.woke_at >= p.wrote_at); /* woken by the write, not before */
	assert_int_equal(read(p.pair[0], &c, 1), 1); /* poll consumed nothing */
	assert_int_equal(c, 'z');
	close(p.pair[0]);
	close(p.pair[1]);
}

/* ---- cancel while parked ---- */

struct cancelc {
	int lfd, pair[2];
	int accept_res, poll_res;
	ssize_t recv_res;
	urt_task *t[3];
};

static int park_accept(void *arg)
{
	struct cancelc *c = arg;

	c->accept_res = urt_accept(c->lfd, NULL, NULL, 0);
	return 0;
}

static int park_recv(void *arg)
{
	struct cancelc *c = arg;
	char b[8];

	c->recv_res = urt_recv(c->pair[0], b, sizeof(b), 0);
	return 0;
}

static int park_poll(void *arg)
{
	struct cancelc *c = arg;

	c->poll_res = urt_poll(c->pair[0], POLLIN);
	return 0;
}

static int canceller(void *arg)
{
	struct cancelc *c = arg;

	urt_sleep_ns(5 * MS);
	for (int i = 0; i < 3; i++)
		TASK_CHECK(urt_cancel(c->t[i]) == 0);
	return 0;
}

static void test_cancel_parked(void **state)
{
	struct cancelc c = { 0 };
	struct sockaddr_in addr;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	c.lfd = listener(&addr);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c.pair), 0);
	spawn_ok(loop, &c.t[0], park_accept, &c);
	spawn_ok(loop, &c.t[1], park_recv, &c);
	spawn_ok(loop, &c.t[2], park_poll, &c);
	spawn_ok(loop, NULL, canceller, &c);
	assert_int_equal(urt_loop_run(loop), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(urt_join(c.t[i], NULL), 0);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(c.accept_res, -ECANCELED);
	assert_int_equal(c.recv_res, -ECANCELED);
	assert_int_equal(c.poll_res, -ECANCELED);
	close(c.lfd);
	close(c.pair[0]);
	close(c.pair[1]);
}

/* An accept with a connection waiting completes in the submit that carries
 * it, before the cancel queued behind it: urt closes the socket. */
struct acc_cancel {
	int lfd, res;
};

static int accept_then_cancelled(void *arg)
{
	struct acc_cancel *c = arg;

	c->res = urt_accept(c->lfd, NULL, NULL, SOCK_CLOEXEC);
	return 0;
}

static void test_cancelled_accept_no_leak(void **state)
{
	struct sockaddr_in addr;
	struct acc_cancel c = { .res = 1 };
	int before, cl[20];

	(void)state;
	c.lfd = listener(&addr);
	connect_clients(&addr, cl, 20);
	before = open_fds();
	for (int i = 0; i < 20; i++) {
		urt_loop *loop = loop_new(NULL);
		urt_task *t;

		spawn_ok(loop, &t, accept_then_cancelled, &c);
		spawn_ok(loop, NULL, cancel_target, &t);
		assert_int_equal(urt_loop_run(loop), 0);
		assert_int_equal(urt_join(t, NULL), 0);
		urt_loop_destroy(loop);
		assert_int_equal(c.res, -ECANCELED);
	}
	assert_int_equal(open_fds(), before);
	close_clients(cl, 20);
	close(c.lfd);
}

/* ---- deadlines on I/O: IORING_OP_LINK_TIMEOUT ---- */

struct dl {
	int lfd, pair[2], pipe[2];
	ssize_t recv_res, read_res, ok_res;
	int accept_res, poll_res;
	int leave_timed, leave_ok, leave_expired_before;
	int after_res;
	uint64_t recv_ms;
	struct urt_loop_stats st;
};

static int deadline_task(void *arg)
{
	struct dl *d = arg;
	struct urt_timeout to;
	uint64_t t0;
	char b[8];

	t0 = urt_now_ns(); /* before the deadline is set: a lower bound */
	TASK_CHECK(urt_timeout_enter(&to, 20 * MS) == 0);
	d->recv_res = urt_recv(d->pair[0], b, sizeof(b), 0);
	d->recv_ms = ms_since(t0);
	/* Past the deadline: every wait fails at once, without an SQE. */
	d->after_res = urt_poll(d->pair[0], POLLIN);
	d->leave_timed = urt_timeout_leave(&to);

	TASK_CHECK(urt_timeout_enter(&to, 10 * MS) == 0);
	d->read_res = urt_read(d->pipe[0], b, sizeof(b), -1);
	d->leave_expired_before = urt_timeout_leave(&to);

	TASK_CHECK(urt_timeout_enter(&to, 10 * MS) == 0);
	d->accept_res = urt_accept(d->lfd, NULL, NULL, 0);
	d->poll_res = urt_poll(d->pair[0], POLLIN);
	(void)urt_timeout_leave(&to);

	/* An operation that completes in time returns its result. */
	TASK_CHECK(write(d->pair[1], "abc", 3) == 3);
	TASK_CHECK(urt_timeout_enter(&to, 10 * SEC) == 0);
	d->ok_res = urt_recv(d->pair[0], b, sizeof(b), 0);
	d->leave_ok = urt_timeout_leave(&to);
	return 0;
}

static void test_io_deadline(void **state)
{
	struct dl d = { 0 };
	struct sockaddr_in addr;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	d.lfd = listener(&addr);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, d.pair), 0);
	make_pipe(d.pipe);
	spawn_ok(loop, NULL, deadline_task, &d);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_loop_stats(loop, &d.st), 0);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(d.recv_res, -ETIMEDOUT);
	assert_true(d.recv_ms >= 20);
	assert_int_equal(d.after_res, -ETIMEDOUT);
	assert_int_equal(d.leave_timed, -ETIMEDOUT);
	assert_int_equal(d.read_res, -ETIMEDOUT);
	assert_int_equal(d.leave_expired_before, -ETIMEDOUT);
	assert_int_equal(d.accept_res, -ETIMEDOUT);
	assert_int_equal(d.poll_res, -ETIMEDOUT); /* the deadline has passed */
	assert_int_equal(d.ok_res, 3);
	assert_int_equal(d.leave_ok, 0);
	/* Each operation with a deadline took two SQEs, both completed. */
	assert_int_equal(d.st.inflight, 0);
	assert_int_equal(d.st.sqes, d.st.cqes);
	assert_int_equal(d.st.sqes % 2, 0);
	close(d.lfd);
	close_pipe(d.pipe);
	close(d.pair[0]);
	close(d.pair[1]);
}

/* Many operations with deadlines from one turn: the SQ (8 entries) fills,
 * and no operation may be split from its linked timeout by the flush. */
struct many {
	int pair[2];
	int timed, other;
};

static int many_waiter(void *arg)
{
	struct many *m = arg;
	struct urt_timeout to;
	char b[4];
	ssize_t r;

	(void)urt_timeout_enter(&to, 15 * MS);
	r = urt_recv(m->pair[0], b, sizeof(b), MSG_PEEK);
	(void)urt_timeout_leave(&to);
	if (r == -ETIMEDOUT)
		m->timed++;
	else
		m->other++;
	return 0;
}

static void test_deadline_full_sq(void **state)
{
	struct urt_loop_opts o = { .ring_entries = 8 };
	struct many m = { 0 };
	urt_loop *loop = loop_new(&o);

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, m.pair), 0);
	for (int i = 0; i < 37; i++)
		spawn_ok(loop, NULL, many_waiter, &m);
	run_and_destroy(loop);
	assert_int_equal(m.timed, 37);
	assert_int_equal(m.other, 0);
	/* The smallest SQ asked for still holds a pair: 1 becomes 2. */
	o.ring_entries = 1;
	loop = loop_new(&o);
	for (int i = 0; i < 3; i++)
		spawn_ok(loop, NULL, many_waiter, &m);
	run_and_destroy(loop);
	assert_int_equal(m.timed, 40);
	close(m.pair[0]);
	close(m.pair[1]);
}

/* ---- connect and send that park: cancel and deadline ---- */

/* A listener whose accept queue is full: the kernel drops further SYNs, so
 * a connect to it stays in flight (the SYN is retransmitted after 1 s). */
static int full_listener(struct sockaddr_in *addr, int *fillers, int n)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	socklen_t len = sizeof(*addr);

	assert_true(lfd >= 0);
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	assert_int_equal(listen(lfd, 0), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)addr, &len), 0);
	for (int i = 0; i < n; i++) {
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		assert_true(fillers[i] >= 0);
		(void)connect(fillers[i], (struct sockaddr *)addr, sizeof(*addr));
	}
	usleep(50 * 1000); /* the handshakes that can complete have */
	return lfd;
}

/* A connected pair whose sender's buffer is full: a send parks. */
static void full_pair(int pair[2])
{
	int small = 4096;
	char junk[4096] = { 0 };

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	assert_int_equal(setsockopt(pair[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	assert_int_equal(setsockopt(pair[0], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	while (send(pair[1], junk, sizeof(junk), MSG_DONTWAIT) > 0)
		;
	assert_int_equal(errno, EAGAIN);
}

struct parked {
	struct sockaddr_in addr;
	int pair[2], pipe[2];
	int connect_cancel, connect_timed;
	ssize_t send_cancel, send_timed, write_timed;
	int leave;
	urt_task *victim[2];
	char big[65536];
};

static int connect_cancelled(void *arg)
{
	struct parked *p = arg;
	int fd = tcp_socket();

	p->connect_cancel = urt_connect(fd, (struct sockaddr *)&p->addr, sizeof(p->addr));
	close(fd);
	return 0;
}

static int send_cancelled(void *arg)
{
	struct parked *p = arg;

	p->send_cancel = urt_send(p->pair[1], p->big, sizeof(p->big), 0);
	return 0;
}

static int cancel_both(void *arg)
{
	struct parked *p = arg;

	urt_sleep_ns(20 * MS);
	for (int i = 0; i < 2; i++)
		TASK_CHECK(urt_cancel(p->victim[i]) == 0);
	return 0;
}

static int timed_waits(void *arg)
{
	struct parked *p = arg;
	struct urt_timeout to;
	int fd = tcp_socket();

	TASK_CHECK(urt_timeout_enter(&to, 20 * MS) == 0);
	p->connect_timed = urt_connect(fd, (struct sockaddr *)&p->addr, sizeof(p->addr));
	p->leave = urt_timeout_leave(&to);
	close(fd);
	TASK_CHECK(urt_timeout_enter(&to, 20 * MS) == 0);
	p->send_timed = urt_send(p->pair[1], p->big, sizeof(p->big), 0);
	(void)urt_timeout_leave(&to);
	TASK_CHECK(urt_timeout_enter(&to, 20 * MS) == 0);
	p->write_timed = urt_write(p->pipe[1], p->big, sizeof(p->big), -1);
	(void)urt_timeout_leave(&to);
	return 0;
}

static void test_connect_send_parked(void **state)
{
	static struct parked p;
	int fill[4], lfd;
	urt_loop *loop = loop_new(NULL);

	(void)state;
	lfd = full_listener(&p.addr, fill, 4);
	full_pair(p.pair);
	make_pipe(p.pipe);
	/* Fill the pipe: a write of 64 KiB more parks. */
	assert_int_equal(fcntl(p.pipe[1], F_SETFL, O_NONBLOCK), 0);
	while (write(p.pipe[1], p.big, sizeof(p.big)) > 0)
		;
	assert_int_equal(fcntl(p.pipe[1], F_SETFL, 0), 0);
	spawn_ok(loop, &p.victim[0], connect_cancelled, &p);
	spawn_ok(loop, &p.victim[1], send_cancelled, &p);
	spawn_ok(loop, NULL, cancel_both, &p);
	spawn_ok(loop, NULL, timed_waits, &p);
	assert_int_equal(urt_loop_run(loop), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(urt_join(p.victim[i], NULL), 0);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(p.connect_cancel, -ECANCELED);
	assert_int_equal(p.send_cancel, -ECANCELED);
	assert_int_equal(p.connect_timed, -ETIMEDOUT);
	assert_int_equal(p.leave, -ETIMEDOUT);
	assert_int_equal(p.send_timed, -ETIMEDOUT);
	assert_int_equal(p.write_timed, -ETIMEDOUT);
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	close(lfd);
	close(p.pair[0]);
	close(p.pair[1]);
	close_pipe(p.pipe);
}

/* ---- acceptors ---- */

struct acc {
	int lfd;
	struct sockaddr_in addr;
	urt_acceptor *a;
	int n, want;
	uint64_t nap_ms;
	int fds[200];
	int errs;
	int parked_res, closed_res, timed_res, cancel_res;
	urt_task *victim;
	struct urt_loop_stats st;
};

/* Takes want connections (after a nap, when asked). */
static int acc_taker(void *arg)
{
	struct acc *c = arg;

	if (c->nap_ms)
		urt_sleep_ns(c->nap_ms * MS);
	while (c->n < c->want) {
		int fd = urt_acceptor_next(c->a);

		if (fd < 0) {
			c->errs++;
			break;
		}
		c->fds[c->n++] = fd;
	}
	return 0;
}

static int acc_connector(void *arg)
{
	struct acc *c = arg;

	for (int i = 0; i < c->want; i++) {
		int fd = tcp_socket();

		if (urt_connect(fd, (struct sockaddr *)&c->addr, sizeof(c->addr)) != 0)
			c->errs++;
		/* The server side keeps the connection; close ours. */
		close(fd);
	}
	return 0;
}

static void close_all(struct acc *c)
{
	for (int i = 0; i < c->n; i++)
		assert_int_equal(close(c->fds[i]), 0);
}

/* A taker parks first, then a task makes 10 connections to an acceptor
 * made with flags; returns the loop's stats once both have ended. */
static struct urt_loop_stats ten_run(int flags)
{
	struct acc c = { .want = 10 };
	urt_loop *loop = loop_new(NULL);

	c.lfd = listener(&c.addr);
	assert_int_equal(urt_acceptor_create(loop, &c.a, c.lfd, flags), 0);
	spawn_ok(loop, NULL, acc_taker, &c);     /* parks first */
	spawn_ok(loop, NULL, acc_connector, &c);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_loop_stats(loop, &c.st), 0);
	assert_int_equal(urt_acceptor_close(c.a), 0);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(c.errs, 0);
	assert_int_equal(c.n, 10);
	assert_int_equal(c.st.sqes + c.st.more + c.st.messages,
			 c.st.cqes + c.st.settled + c.st.inflight);
	for (int i = 0; i < c.n; i++)
		assert_int_equal(!!(fcntl(c.fds[i], F_GETFD) & FD_CLOEXEC), !!(flags & SOCK_CLOEXEC));
	close_all(&c);
	close(c.lfd);
	return c.st;
}

static void test_acceptor_parked(void **state)
{
	struct urt_loop_stats st = ten_run(SOCK_CLOEXEC);

	(void)state;
	/* One multishot accept for the 10 connections, still armed, and the
	 * 10 connects: 10 CQEs with F_MORE. */
	assert_int_equal(st.sqes, 11);
	assert_int_equal(st.inflight, 1);
	assert_int_equal(st.more, 10);
	assert_int_equal(st.cqes, 20);
}

/* The one-by-one mode, as on kernels without multishot accept. */
static void test_acceptor_oneshot(void **state)
{
	struct urt_loop_stats st = ten_run(URT_ACCEPTOR_ONESHOT);

	(void)state;
	/* One accept SQE per connection, one connect SQE per connection. */
	assert_int_equal(st.sqes, 20);
	assert_int_equal(st.inflight, 0);
}

/* 150 connections wait before a taker, napping first, takes them all on a
 * loop made with o; returns the loop's stats as the last task ended. */
static struct urt_loop_stats backlog_run(const struct urt_loop_opts *o)
{
	struct acc c = { .want = 150, .nap_ms = 30 };
	urt_loop *loop = loop_new(o);
	int cl[150];

	c.lfd = listener(&c.addr);
	connect_clients(&c.addr, cl, 150);
	assert_int_equal(urt_acceptor_create(loop, &c.a, c.lfd, 0), 0);
	spawn_ok(loop, NULL, acc_taker, &c);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_loop_stats(loop, &c.st), 0);
	assert_int_equal(urt_acceptor_close(c.a), 0);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(c.errs, 0);
	assert_int_equal(c.n, 150);
	assert_int_equal(c.st.sqes + c.st.more + c.st.messages,
			 c.st.cqes + c.st.settled + c.st.inflight);
	close_all(&c);
	close_clients(cl, 150);
	close(c.lfd);
	return c.st;
}

/* The queue of 64 fills, the multishot accept pauses, and is armed again
 * as the queue drains. */
static void test_acceptor_backlog(void **state)
{
	(void)state;
	(void)backlog_run(NULL);
}

/* With a completion queue of 16 the multishot accept overflows it, the
 * kernel ends the multishot (a CQE without IORING_CQE_F_MORE), and the
 * acceptor arms it again. */
static void test_acceptor_small_cq(void **state)
{
	struct urt_loop_opts o = { .ring_entries = 8, .cq_entries = 16 };

	(void)state;
	assert_true(backlog_run(&o).sqes > 2); /* armed again at least once */
}

static int acc_parked(void *arg)
{
	struct acc *c = arg;

	c->parked_res = urt_acceptor_next(c->a);
	return 0;
}

static int acc_closer(void *arg)
{
	struct acc *c = arg;

	urt_sleep_ns(20 * MS); /* after the 5 ms deadline and the cancel */
	c->closed_res = urt_acceptor_close(c->a);
	return 0;
}

static int acc_timed(void *arg)
{
	struct acc *c = arg;
	struct urt_timeout to;

	(void)urt_timeout_enter(&to, 5 * MS);
	c->timed_res = urt_acceptor_next(c->a);
	(void)urt_timeout_leave(&to);
	return 0;
}

static int acc_cancelled(void *arg)
{
	struct acc *c = arg;

	c->cancel_res = urt_acceptor_next(c->a);
	return 0;
}

static int acc_cancel(void *arg)
{
	struct acc *c = arg;

	urt_sleep_ns(2 * MS);
	return urt_cancel(c->victim);
}

/* Close wakes a parked taker with -EBADF; a deadline and a cancel take a
 * taker off the queue; with the acceptor made with flags. */
static void close_deadline_cancel_run(int flags)
{
	struct acc c = { 0 };
	urt_loop *loop = loop_new(NULL);

	c.lfd = listener(&c.addr);
	assert_int_equal(urt_acceptor_create(loop, &c.a, c.lfd, flags), 0);
	spawn_ok(loop, NULL, acc_timed, &c);
	spawn_ok(loop, &c.victim, acc_cancelled, &c);
	spawn_ok(loop, NULL, acc_cancel, &c);
	spawn_ok(loop, NULL, acc_parked, &c);
	spawn_ok(loop, NULL, acc_closer, &c);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_join(c.victim, NULL), 0);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(c.timed_res, -ETIMEDOUT);
	assert_int_equal(c.cancel_res, -ECANCELED);
	assert_int_equal(c.parked_res, -EBADF);
	assert_int_equal(c.closed_res, 0);
	close(c.lfd);
}

static void test_acceptor_close_deadline_cancel(void **state)
{
	(void)state;
	close_deadline_cancel_run(0);
}

/* The same one by one (each taker parked in an accept of its own, the path
 * of kernels before 5.19): the close used to leave the taker parked. */
static void test_acceptor_oneshot_close_deadline_cancel(void **state)
{
	(void)state;
	close_deadline_cancel_run(URT_ACCEPTOR_ONESHOT);
}

static int napper(void *arg)
{
	(void)arg;
	return urt_sleep_ns(20 * MS);
}

/* Connections queued and never taken are closed with the acceptor; an
 * acceptor left open is closed by the loop's destroy. */
static void test_acceptor_untaken(void **state)
{
	struct sockaddr_in addr;
	int lfd = listener(&addr);
	int cl[3];
	char b;

	(void)state;
	connect_clients(&addr, cl, 3);
	{
		urt_loop *loop = loop_new(NULL);
		urt_acceptor *a;

		assert_int_equal(urt_acceptor_create(loop, &a, lfd, 0), 0);
		spawn_ok(loop, NULL, napper, NULL); /* the accepts come meanwhile */
		assert_int_equal(urt_loop_run(loop), 0);
		urt_loop_destroy(loop); /* closes a and its queued sockets */
	}
	/* The server ends were closed: each client reads end of file (or a
	 * reset when the server closed before the kernel saw the accept). */
	for (int i = 0; i < 3; i++) {
		ssize_t r = read(cl[i], &b, 1);

		assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
		close(cl[i]);
	}
	close(lfd);
}

/* ---- every CQE dispatched exactly once, on the smallest rings ---- */

struct filler {
	int fd;      /* always writable */
	int polls;   /* POLLOUT seen */
};

static int sq_filler(void *arg)
{
	struct filler *f = arg;

	for (int i = 0; i < 20; i++)
		if (urt_poll(f->fd, POLLOUT) & POLLOUT)
			f->polls++;
	return 0;
}

/* A 2-entry SQ and a 4-entry CQ: a multishot accept of 150 waiting
 * connections overflows the CQ, the kernel ends it, the acceptor arms it
 * again from its completion handler, while 50 tasks keep the SQ full with
 * 1,000 polls. A CQE dispatched twice would show as a connection taken
 * twice, a poll counted twice or a wake-up of a running task, and in the
 * loop's counters. */
static void test_smallest_rings_exactly_once(void **state)
{
	struct urt_loop_opts o = { .ring_entries = 2, .cq_entries = 4 };
	struct acc c = { .want = 150 };
	struct filler f[50];
	int cl[150], pfd[2], sum = 0;
	urt_loop *loop = loop_new(&o);

	(void)state;
	make_pipe(pfd);
	c.lfd = listener(&c.addr);
	connect_clients(&c.addr, cl, 150);
	assert_int_equal(urt_acceptor_create(loop, &c.a, c.lfd, 0), 0);
	for (int i = 0; i < 50; i++) {
		f[i] = (struct filler){ .fd = pfd[1] };
		spawn_ok(loop, NULL, sq_filler, &f[i]);
	}
	spawn_ok(loop, NULL, acc_taker, &c);
	assert_int_equal(urt_loop_run(loop), 0);
	assert_int_equal(urt_loop_stats(loop, &c.st), 0);
	assert_int_equal(urt_acceptor_close(c.a), 0);
	urt_loop_destroy(loop);
	check_tasks();
	assert_int_equal(c.errs, 0);
	assert_int_equal(c.n, 150);
	for (int i = 0; i < 150; i++) /* each connection once: distinct fds */
		for (int j = i + 1; j < 150; j++)
			assert_int_not_equal(c.fds[i], c.fds[j]);
	for (int i = 0; i < 50; i++)
		sum += f[i].polls;
	assert_int_equal(sum, 1000);
	assert_true(c.st.sqes > 1000 + 1); /* the accept was armed again */
	assert_int_equal(c.st.sqes + c.st.more + c.st.messages,
			 c.st.cqes + c.st.settled + c.st.inflight);
	close_all(&c);
	close_clients(cl, 150);
	close(c.lfd);
	close_pipe(pfd);
}

/* ---- out of file descriptors: one report per episode ---- */

struct exhaust {
	struct acc c;
	struct rlimit saved;
	int other_errs;
};

static int exhaust_taker(void *arg)
{
	struct exhaust *e = arg;

	while (e->c.n < e->c.want && e->c.errs <= 1000) {
		int fd = urt_acceptor_next(e->c.a);

		if (fd >= 0)
			e->c.fds[e->c.n++] = fd;
		else if (fd == -EMFILE)
			e->c.errs++;
		else if (fd == -EBADF)
			return 0; /* closed once all were taken */
		else
			return e->other_errs++;
	}
	return 0;
}

/* Frees fds after 300 ms; closes the acceptor once every client is in,
 * which ends the taker still waiting. */
static int exhaust_releaser(void *arg)
{
	struct exhaust *e = arg;

	urt_sleep_ns(300 * MS);
	if (setrlimit(RLIMIT_NOFILE, &e->saved))
		return -1;
	while (e->c.n < e->c.want)
		urt_sleep_ns(MS);
	return urt_acceptor_close(e->c.a);
}

/* Whether the kernel holds the process to want fds (the soft limit of
 * RLIMIT_NOFILE in /proc/self/limits): valgrind keeps the setrlimit of the
 * program it runs to itself, and the kernel's accepts never see it. */
static bool fd_limit_holds(rlim_t want)
{
	char line[256];
	unsigned long soft = 0;
	bool found = false;
	FILE *f = fopen("/proc/self/limits", "r");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Max open files %lu", &soft) == 1)
			found = true;
	fclose(f);
	return found && soft == (unsigned long)want;
}

/* 20 clients wait while the process may open only a few more fds: one of
 * the two takers hears -EMFILE once, then both pause and retry (10 ms,
 * doubling) instead of hearing it again and again, and once fds are free
 * every client is accepted. */
static void fd_exhaustion_run(int flags)
{
	struct exhaust e = { .c = { .want = 20 } };
	struct rlimit low;
	int cl[20], top;
	urt_loop *loop = loop_new(NULL);

	e.c.lfd = listener(&e.c.addr);
	top = connect_clients(&e.c.addr, cl, 20);
	assert_int_equal(urt_acceptor_create(loop, &e.c.a, e.c.lfd, flags), 0);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &e.saved), 0);
	low = e.saved;
	low.rlim_cur = (rlim_t)top + 5; /* a few fds more, at most */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	if (!fd_limit_holds(low.rlim_cur)) {
		assert_int_equal(setrlimit(RLIMIT_NOFILE, &e.saved), 0);
		assert_int_equal(urt_acceptor_close(e.c.a), 0);
		urt_loop_destroy(loop);
		close_clients(cl, 20);
		close(e.c.lfd);
		skip();
	}
	spawn_ok(loop, NULL, exhaust_taker, &e);
	spawn_ok(loop, NULL, exhaust_taker, &e);
	spawn_ok(loop, NULL, exhaust_releaser, &e);
	assert_int_equal(urt_loop_run(loop), 0);
	urt_loop_destroy(loop);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &e.saved), 0);
	assert_int_equal(e.other_errs, 0);
	assert_int_equal(e.c.errs, 1);
	assert_int_equal(e.c.n, 20);
	close_all(&e.c);
	close_clients(cl, 20);
	close(e.c.lfd);
}

static void test_acceptor_fd_exhaustion(void **state)
{
	(void)state;
	fd_exhaustion_run(0);
}

static void test_acceptor_oneshot_fd_exhaustion(void **state)
{
	(void)state;
	fd_exhaustion_run(URT_ACCEPTOR_ONESHOT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conversation),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_outside_task),
		cmocka_unit_test(test_poll),
		cmocka_unit_test(test_cancel_parked),
		cmocka_unit_test(test_cancelled_accept_no_leak),
		cmocka_unit_test(test_connect_send_parked),
		cmocka_unit_test(test_io_deadline),
		cmocka_unit_test(test_deadline_full_sq),
		cmocka_unit_test(test_acceptor_parked),
		cmocka_unit_test(test_acceptor_oneshot),
		cmocka_unit_test(test_acceptor_backlog),
		cmocka_unit_test(test_acceptor_small_cq),
		cmocka_unit_test(test_acceptor_close_deadline_cancel),
		cmocka_unit_test(test_acceptor_oneshot_close_deadline_cancel),
		cmocka_unit_test(test_acceptor_untaken),
		cmocka_unit_test(test_smallest_rings_exactly_once),
		cmocka_unit_test(test_acceptor_fd_exhaustion),
		cmocka_unit_test(test_acceptor_oneshot_fd_exhaustion),
	};

	signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill the test: none may come */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
