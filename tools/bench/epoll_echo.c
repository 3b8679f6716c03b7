/*
 * ECHO's epoll peer: the echo server a competent engineer writes on plain
 * epoll, one thread. Level-triggered, so that one recv per readiness is
 * enough (edge-triggered would need a second recv to see EAGAIN, a syscall
 * per round trip for nothing); each connection reads into its own buffer
 * and sends it straight back. A send that does not take everything keeps
 * the rest and waits for EPOLLOUT, reading nothing more from that
 * connection meanwhile: the backpressure reaches the client.
 *
 *	urt-bench-epoll-echo [--port P]
 *
 * Binds 127.0.0.1:P (0, the default: any free port), prints "port N" as its
 * first line, and runs until SIGINT or SIGTERM (read from a signalfd, so
 * that neither interrupts a syscall), then closes every connection and
 * exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"

#define BUF_SIZE 16384
#define MAX_EVENTS 256

struct conn {
	int fd;
	size_t off, len;	/* buf[off..len) is still to be sent back */
	struct conn *prev, *next;
	char buf[BUF_SIZE];
};

/* What an event's data.ptr points to when it is not a connection. */
static char tag_listen, tag_signal;

static struct {
	int ep, lfd, sfd;
	struct conn head;	/* of the list of open connections */
	unsigned long accepted;
} st;

static void watch(int op, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = { .events = events, .data.ptr = ptr };

	if (epoll_ctl(st.ep, op, fd, &ev))
		bench_die("epoll_ctl: %s", strerror(errno));
}

static void conn_close(struct conn *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
	close(c->fd);	/* also takes it out of the epoll set */
	free(c);
}

static void accept_all(void)
{
	for (;;) {
		int fd = accept4(st.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct conn *c;

		if (fd < 0) {
			if (errno == EAGAIN)
				return;
			/* The peer gave up before we got to it: not ours. */
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			/* Out of descriptors or memory: a benchmark server
			 * stops loudly rather than spin on its listener. */
			bench_die("accept4: %s", strerror(errno));
		}
		/* The echo is one small send: never hold it back for an ACK. */
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
			bench_die("TCP_NODELAY: %s", strerror(errno));
		c = malloc(sizeof(*c));
		if (!c)
			bench_die("out of memory");
		c->fd = fd;
		c->off = c->len = 0;
		c->next = st.head.next;
		c->prev = &st.head;
		c->next->prev = c;
		st.head.next = c;
		st.accepted++;
		watch(EPOLL_CTL_ADD, fd, EPOLLIN, c);
	}
}

/* Send what is pending: 0 when all of it went or the socket is full,
 * -1 when the connection is broken. */
static int flush(struct conn *c)
{
	while (c->off < c->len) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		c->off += (size_t)n;
	}
	c->off = c->len = 0;
	return 0;
}

static void on_conn(struct conn *c)
{
	ssize_t n;

	if (c->len) {
		/* EPOLLOUT (or an error, which send reports). */
		if (flush(c))
			goto broken;
		if (!c->len)
			watch(EPOLL_CTL_MOD, c->fd, EPOLLIN, c);
		return;
	}
	n = recv(c->fd, c->buf, sizeof(c->buf), 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		goto broken;	/* ECONNRESET and the like: the client's business */
	}
	if (n == 0)
		goto broken;	/* EOF: the client is done */
	c->off = 0;
	c->len = (size_t)n;
	if (flush(c))
		goto broken;
	if (c->len)
		watch(EPOLL_CTL_MOD, c->fd, EPOLLOUT, c);
	return;
broken:
	conn_close(c);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: urt-bench-epoll-echo [--port P]\n"
		   "  An epoll echo server on 127.0.0.1:P (default 0: any free port); prints\n"
		   "  \"port N\" first, exits 0 on SIGINT or SIGTERM.\n");
}

int main(int argc, char **argv)
{
	struct epoll_event evs[MAX_EVENTS];
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t salen = sizeof(sa);
	unsigned port;
	bool stop = false;
	sigset_t mask;
	int one = 1;

	bench_prog = "urt-bench-epoll-echo";
	port = bench_echo_parse(argc, argv, usage);

	/* Blocked, the signals queue for the signalfd; this also holds when
	 * they arrive ignored, as a non-interactive shell's & leaves SIGINT. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &mask, NULL))
		bench_die("sigprocmask: %s", strerror(errno));
	st.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (st.sfd < 0)
		bench_die("signalfd: %s", strerror(errno));

	st.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (st.lfd < 0)
		bench_die("socket: %s", strerror(errno));
	if (setsockopt(st.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		bench_die("SO_REUSEADDR: %s", strerror(errno));
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(st.lfd, (struct sockaddr *)&sa, sizeof(sa)))
		bench_die("bind 127.0.0.1:%u: %s", port, strerror(errno));
	if (listen(st.lfd, SOMAXCONN))
		bench_die("listen: %s", strerror(errno));
	if (getsockname(st.lfd, (struct sockaddr *)&sa, &salen))
		bench_die("getsockname: %s", strerror(errno));

	st.ep = epoll_create1(EPOLL_CLOEXEC);
	if (st.ep < 0)
		bench_die("epoll_create1: %s", strerror(errno));
	st.head.next = st.head.prev = &st.head;
	watch(EPOLL_CTL_ADD, st.lfd, EPOLLIN, &tag_listen);
	watch(EPOLL_CTL_ADD, st.sfd, EPOLLIN, &tag_signal);

	/* Listening already: a client may connect as soon as it reads this. */
	printf("port %u\n", ntohs(sa.sin_port));
	if (fflush(stdout))
		bench_die("writing the port: %s", strerror(errno));

	while (!stop) {
		int n = epoll_wait(st.ep, evs, MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			bench_die("epoll_wait: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;

			if (p == &tag_listen) {
				accept_all();
			} else if (p == &tag_signal) {
				struct signalfd_siginfo si;

				if (read(st.sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
					stop = true;
			} else {
				/* A connection closed earlier in this batch
				 * cannot be here: each fd is in a batch once. */
				on_conn(p);
			}
		}
	}

	while (st.head.next != &st.head)
		conn_close(st.head.next);
	close(st.lfd);
	close(st.ep);
	close(st.sfd);
	fprintf(stderr, "urt-bench-epoll-echo: stopped, %lu connections served\n", st.accepted);
	return 0;
}
