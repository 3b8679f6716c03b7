/* urt-echo-server: a TCP echo server over every core. One loop per CPU
 * (a set of loops), each with a listening socket of its own on the same
 * port (SO_REUSEPORT: the kernel spreads the connections) served by an
 * acceptor (one multishot accept); each connection is a task of its loop's
 * group that receives and sends back until the peer closes. With
 * --one-acceptor, loop 0 alone accepts and hands each connection, fd and
 * all, to the loops in turn (urt_spawn_on). SIGINT or SIGTERM, read from a
 * signalfd by a task of loop 0, shuts it down gracefully: every task of
 * every loop is cancelled (urt_loops_cancel) and has closed its socket
 * before the server reports and exits 0.
 *
 *	urt-echo-server [--port P] [--bind ADDR] [--loops N] [--one-acceptor]
 *	                [--no-metrics]
 *
 * The first line on stdout is "port N" (the port bound; --port 0, the
 * default, picks a free one), for whoever drives the server. At exit it
 * prints "connections C bytes B" (B: bytes echoed).
 *
 * Every loop runs with URT_LOOP_METRICS and a lag monitor (10 ms). On
 * SIGUSR1, and at exit, one line of key=value on stderr sums them up:
 * utilization, turns, tasks, SQEs and CQEs over all loops, and the worst
 * loop's lag percentiles. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

/* One loop's share. */
struct shard {
	struct server *srv;
	int lfd;                    /* -1: this loop does not accept */
	urt_acceptor *acceptor;
	urt_group *conns;
	unsigned long long connections, bytes;
	int accept_err;
};

struct server {
	urt_loops *set;
	struct shard *shards;
	unsigned n;
	unsigned next;              /* --one-acceptor: the next loop to serve */
	bool one_acceptor;
	bool watch;                 /* metrics and lag monitor (not --no-metrics) */
	int sigfd;
};

struct conn {
	struct shard *sh;
	int fd;
};

/* Echo until the peer closes, an error, or the server's shutdown cancels
 * the task. A connection's end is not the group's failure: return 0. */
static int conn_task(struct conn *arg)
{
	struct conn c = *arg;
	struct shard *sh;
	char buf[16384];
	ssize_t n;

	free(arg);
	/* Handed over by loop 0: count it where it runs. */
	sh = &c.sh->srv->shards[urt_loop_index(urt_current_loop())];
	while ((n = urt_recv(c.fd, buf, sizeof(buf), 0)) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = urt_send(c.fd, buf + off, (size_t)(n - off), 0);

			if (w < 0)
				goto out;
			off += w;
		}
		sh->bytes += (unsigned long long)n;
	}
out:
	/* close(2), not urt_close: a cancelled task's urt_close would not
	 * run, and the socket must go either way. */
	close(c.fd);
	return 0;
}

/* A connection another loop could not take (it is shutting down). */
static void conn_drop(struct conn *c)
{
	close(c->fd);
	free(c);
}

/* Start a connection's task: here, in the group, or on the next loop. */
static int serve(struct shard *sh, int fd)
{
	struct server *srv = sh->srv;
	struct conn *c = malloc(sizeof(*c));
	unsigned to = 0;
	int ret;

	if (!c)
		return -ENOMEM;
	*c = (struct conn){ sh, fd };
	if (srv->one_acceptor)
		to = srv->next++ % srv->n;
	if (to == 0)
		ret = urt_group_spawn(sh->conns, conn_task, c);
	else
		ret = urt_spawn_on(urt_loops_get(srv->set, to), conn_task, c, conn_drop);
	if (ret < 0)
		free(c);
	return ret;
}

/* Take connections until cancelled; each becomes a member of the group. */
static int accept_task(struct shard *sh)
{
	for (;;) {
		int fd = urt_acceptor_next(sh->acceptor);

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
			sh->accept_err = fd;
			return fd;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
		if (serve(sh, fd) < 0) {
			close(fd);
			continue;
		}
		sh->connections++;
	}
}

#define LAG_INTERVAL_NS 10000000ull

/* One line of key=value on stderr: the loops' metrics summed and the worst
 * loop's lag, from the snapshots each loop publishes (read here, on loop
 * 0's thread). */
static void print_metrics(struct server *srv)
{
	struct urt_loop_metrics m, sum = { 0 };
	uint64_t p50 = 0, p99 = 0, max = 0;
	double util;

	for (unsigned i = 0; i < srv->n; i++) {
		if (urt_loop_metrics(urt_loops_get(srv->set, i), &m))
			continue;
		sum.busy_ns += m.busy_ns;
		sum.idle_ns += m.idle_ns;
		sum.turns += m.turns;
		sum.tasks_live += m.tasks_live;
		sum.sqes += m.sqes;
		sum.cqes += m.cqes;
		sum.cq_overflows += m.cq_overflows;
		p50 = m.lag_p50_ns > p50 ? m.lag_p50_ns : p50;
		p99 = m.lag_p99_ns > p99 ? m.lag_p99_ns : p99;
		max = m.lag_max_ns > max ? m.lag_max_ns : max;
	}
	util = sum.busy_ns + sum.idle_ns ? (double)sum.busy_ns / (double)(sum.busy_ns + sum.idle_ns)
					 : 0;
	fprintf(stderr,
		"urt-echo-server: loops=%u utilization=%.3f busy_ms=%.1f idle_ms=%.1f turns=%llu "
		"tasks=%llu sqes=%llu cqes=%llu cq_overflows=%llu lag_p50_us=%.1f "
		"lag_p99_us=%.1f lag_max_us=%.1f\n",
		srv->n, util, (double)sum.busy_ns / 1e6, (double)sum.idle_ns / 1e6,
		(unsigned long long)sum.turns, (unsigned long long)sum.tasks_live,
		(unsigned long long)sum.sqes, (unsigned long long)sum.cqes,
		(unsigned long long)sum.cq_overflows, (double)p50 / 1e3, (double)p99 / 1e3,
		(double)max / 1e3);
}

/* Wait for SIGINT or SIGTERM, then print the metrics and cancel every task
 * of every loop; print the metrics on SIGUSR1 too. */
static int signal_task(struct server *srv)
{
	struct signalfd_siginfo si;
	ssize_t n;

	while ((n = urt_read(srv->sigfd, &si, sizeof(si), -1)) == (ssize_t)sizeof(si) &&
	       si.ssi_signo == SIGUSR1)
		if (srv->watch)
			print_metrics(srv);
	if (n == (ssize_t)sizeof(si))
		fprintf(stderr, "urt-echo-server: %s, shutting down\n", strsignal((int)si.ssi_signo));
	if (n != -ECANCELED) {
		if (srv->watch)
			print_metrics(srv);
		urt_loops_cancel(srv->set);
	}
	return 0;
}

/* Every loop's first task. */
static int main_task(struct server *srv)
{
	int i = urt_loop_index(urt_current_loop());
	struct shard *sh = &srv->shards[i];
	int ret = 0;

	if (srv->watch)
		ret = urt_lag_monitor_start(urt_current_loop(), LAG_INTERVAL_NS);
	if (!ret && i == 0)
		ret = urt_spawn(NULL, NULL, signal_task, srv);
	if (!ret)
		ret = urt_group_create(&sh->conns);
	if (!ret && sh->lfd >= 0)
		ret = urt_acceptor_create(NULL, &sh->acceptor, sh->lfd, SOCK_CLOEXEC);
	if (!ret && sh->acceptor)
		ret = urt_group_spawn(sh->conns, accept_task, sh);
	if (ret) {
		fprintf(stderr, "urt-echo-server: %s\n", strerror(-ret));
		urt_loops_cancel(srv->set);
		return ret;
	}
	/* -ECANCELED: the signal came; a loop that does not accept has no
	 * member and waits for the connections handed to it (detached). */
	ret = urt_group_wait(sh->conns);
	if (sh->acceptor)
		urt_acceptor_close(sh->acceptor);
	if (ret && ret != -ECANCELED)
		urt_loops_cancel(srv->set); /* an accept error ends the server */
	return ret == -ECANCELED ? 0 : ret;
}

/* A listening socket on host:port (port 0: any free one, returned in
 * *port), shared with the other loops' when reuseport is set. */
static int listen_on(const char *host, int *port, bool reuseport)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)*port) };
	socklen_t len = sizeof(a);
	int fd;

	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "urt-echo-server: bad address %s\n", host);
		return -1;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int)) ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &(int){ 1 }, sizeof(int))) ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4096) ||
	    getsockname(fd, (struct sockaddr *)&a, &len)) {
		perror("urt-echo-server: listen");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: urt-echo-server [--port P] [--bind ADDR] [--loops N] [--one-acceptor]\n"
		   "                       [--no-metrics]\n"
		   "Echoes TCP connections on ADDR:P (default 127.0.0.1, port 0: any free one)\n"
		   "on N loops (default: one per CPU the process may run on), each accepting\n"
		   "on a socket of its own (SO_REUSEPORT), or with --one-acceptor loop 0 alone\n"
		   "accepting and handing connections to the loops in turn. Prints \"port N\"\n"
		   "first. SIGINT or SIGTERM shuts it down. SIGUSR1 (and the exit) prints the\n"
		   "loops' metrics on stderr, one line of key=value (not with --no-metrics,\n"
		   "which runs the loops without metrics and lag monitor).\n");
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
	struct server srv = { .sigfd = -1, .watch = true };
	struct urt_loops_opts lo = { 0 };
	unsigned long long connections = 0, bytes = 0;
	const char *host = "127.0.0.1";
	int port = 0, ret = 1;
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
		} else if (!strcmp(argv[i], "--loops") && i + 1 < argc) {
			long n = strtol(argv[++i], &end, 10);

			if (*end || n < 1 || n > 1024) {
				usage(stderr);
				return 2;
			}
			lo.loops = (unsigned)n;
		} else if (!strcmp(argv[i], "--one-acceptor")) {
			srv.one_acceptor = true;
		} else if (!strcmp(argv[i], "--no-metrics")) {
			srv.watch = false;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	raise_fd_limit();
	/* The signals go to the signalfd only. Blocked (before the loops'
	 * threads start, which inherit the mask), they queue even when they
	 * arrive ignored, as a shell's background job has SIGINT. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) ||
	    (srv.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0) {
		perror("urt-echo-server: signalfd");
		return 1;
	}
	lo.loop_opts = &(struct urt_loop_opts){ .flags = srv.watch ? URT_LOOP_METRICS : 0 };
	ret = urt_loops_create(&srv.set, &lo);
	if (ret) {
		fprintf(stderr, "urt-echo-server: %s\n", strerror(-ret));
		return 1;
	}
	srv.n = urt_loops_count(srv.set);
	srv.shards = calloc(srv.n, sizeof(*srv.shards));
	if (!srv.shards)
		goto out;
	for (unsigned i = 0; i < srv.n; i++) {
		struct shard *sh = &srv.shards[i];

		*sh = (struct shard){ .srv = &srv, .lfd = -1 };
		if (srv.one_acceptor && i > 0)
			continue;
		sh->lfd = listen_on(host, &port, !srv.one_acceptor);
		if (sh->lfd < 0)
			goto out;
	}
	printf("port %d\n", port);
	fflush(stdout);
	ret = urt_loops_run(srv.set, (urt_task_fn)main_task, &srv);
	for (unsigned i = 0; i < srv.n; i++) {
		connections += srv.shards[i].connections;
		bytes += srv.shards[i].bytes;
	}
	if (ret)
		fprintf(stderr, "urt-echo-server: %s\n", strerror(ret < 0 ? -ret : ret));
	else
		printf("connections %llu bytes %llu\n", connections, bytes);
out:
	urt_loops_destroy(srv.set);
	for (unsigned i = 0; srv.shards && i < srv.n; i++)
		if (srv.shards[i].lfd >= 0)
			close(srv.shards[i].lfd);
	free(srv.shards);
	close(srv.sigfd);
	return ret ? 1 : 0;
}
