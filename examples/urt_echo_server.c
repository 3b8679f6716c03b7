/* urt-echo-server: a TCP echo server on one loop. An acceptor takes the
 * connections (one multishot accept); each connection is a task of a group
 * that receives and sends back until the peer closes. SIGINT or SIGTERM,
 * read from a signalfd by a task of its own, shuts it down gracefully: the
 * group's waiter is cancelled, so every connection task is cancelled and
 * has closed its socket before the server reports and exits 0.
 *
 *	urt-echo-server [--port P] [--bind ADDR]
 *
 * The first line on stdout is "port N" (the port bound; --port 0, the
 * default, picks a free one), for whoever drives the server. At exit it
 * prints "connections C bytes B" (B: bytes echoed). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

struct server {
	int lfd, sigfd;
	urt_acceptor *acceptor;
	urt_group *conns;
	urt_task *main, *signals;
	unsigned long long connections, bytes;
	int accept_err;
};

struct conn {
	struct server *srv;
	int fd;
};

/* Echo until the peer closes, an error, or the server's shutdown cancels
 * the task. A connection's end is not the group's failure: return 0. */
static int conn_task(void *arg)
{
	struct conn c = *(struct conn *)arg;
	char buf[16384];
	ssize_t n;

	free(arg);
	while ((n = urt_recv(c.fd, buf, sizeof(buf), 0)) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = urt_send(c.fd, buf + off, (size_t)(n - off), 0);

			if (w < 0)
				goto out;
			off += w;
		}
		c.srv->bytes += (unsigned long long)n;
	}
out:
	/* close(2), not urt_close: a cancelled task's urt_close would not
	 * run, and the socket must go either way. */
	close(c.fd);
	return 0;
}

/* Take connections until cancelled; each becomes a member of the group. */
static int accept_task(void *arg)
{
	struct server *srv = arg;

	for (;;) {
		int fd = urt_acceptor_next(srv->acceptor);
		struct conn *c;

		if (fd == -ECANCELED)
			return 0;
		if (fd < 0) {
			/* -EMFILE and its kin pass (the acceptor says "out of
			 * fds" once per episode, then waits and retries on its
			 * own); anything else ends the server, as a failure of
			 * the group. */
			if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM ||
			    fd == -ECONNABORTED) {
				fprintf(stderr, "urt-echo-server: accept: %s\n", strerror(-fd));
				urt_sleep_ns(10 * 1000000ull);
				continue;
			}
			srv->accept_err = fd;
			return fd;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
		c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		*c = (struct conn){ srv, fd };
		if (urt_group_spawn(srv->conns, conn_task, c) < 0) {
			close(fd);
			free(c);
			continue;
		}
		srv->connections++;
	}
}

/* Wait for SIGINT or SIGTERM, then cancel the main task: its group wait
 * cancels every member and returns once all have returned. */
static int signal_task(void *arg)
{
	struct server *srv = arg;
	struct signalfd_siginfo si;
	ssize_t n = urt_read(srv->sigfd, &si, sizeof(si), -1);

	if (n == (ssize_t)sizeof(si))
		fprintf(stderr, "urt-echo-server: %s, shutting down\n", strsignal((int)si.ssi_signo));
	if (n != -ECANCELED)
		urt_cancel(srv->main);
	return 0;
}

static int main_task(void *arg)
{
	struct server *srv = arg;
	int ret;

	srv->main = urt_current_task();
	ret = urt_acceptor_create(NULL, &srv->acceptor, srv->lfd, SOCK_CLOEXEC);
	if (!ret)
		ret = urt_group_create(&srv->conns);
	if (!ret)
		ret = urt_spawn(NULL, &srv->signals, signal_task, srv);
	if (ret) {
		fprintf(stderr, "urt-echo-server: %s\n", strerror(-ret));
		return ret;
	}
	ret = urt_group_spawn(srv->conns, accept_task, srv);
	if (!ret)
		ret = urt_group_wait(srv->conns); /* -ECANCELED: the signal came */
	urt_acceptor_close(srv->acceptor);
	/* Ended otherwise (an accept error): the signal task goes too. */
	urt_cancel(srv->signals);
	urt_join(srv->signals, NULL);
	return ret == -ECANCELED ? 0 : ret;
}

static int listen_on(const char *host, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	socklen_t len = sizeof(a);
	int fd;

	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "urt-echo-server: bad address %s\n", host);
		return -1;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int)) ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4096) ||
	    getsockname(fd, (struct sockaddr *)&a, &len)) {
		perror("urt-echo-server: listen");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	printf("port %u\n", ntohs(a.sin_port));
	fflush(stdout);
	return fd;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: urt-echo-server [--port P] [--bind ADDR]\n"
		   "Echoes TCP connections on ADDR:P (default 127.0.0.1, port 0: any free one);\n"
		   "prints \"port N\" first. SIGINT or SIGTERM shuts it down.\n");
}

/* A server holds an fd per connection: take the whole of the hard limit
 * (Debian's soft one is 1,024), as Go does for every program. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct server srv = { 0 };
	const char *host = "127.0.0.1";
	int port = 0, result = 0, ret;
	sigset_t sigs;

	for (int i = 1; i < argc; i++) {
		char *end;

		if (!strcmp(argv[i], "--port") && i + 1 < argc) {
			long p = strtol(argv[++i], &end, 10);

			if (*end || p < 0 || p > 65535) {
				usage(stderr);
				return 2;
			}
			port = (int)p;
		} else if (!strcmp(argv[i], "--bind") && i + 1 < argc) {
			host = argv[++i];
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	raise_fd_limit();
	/* The signals go to the signalfd only. Blocked, they queue even when
	 * they arrive ignored, as a shell's background job has SIGINT. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) ||
	    (srv.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0) {
		perror("urt-echo-server: signalfd");
		return 1;
	}
	srv.lfd = listen_on(host, port);
	if (srv.lfd < 0)
		return 1;
	ret = urt_run(main_task, &srv, &result);
	if (ret || result) {
		fprintf(stderr, "urt-echo-server: %s\n", strerror(-(ret ? ret : result)));
		return 1;
	}
	close(srv.lfd);
	close(srv.sigfd);
	printf("connections %llu bytes %llu\n", srv.connections, srv.bytes);
	return 0;
}
