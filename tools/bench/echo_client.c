/*
 * ECHO's load generator: C connections to an echo server on 127.0.0.1:P,
 * each doing ping-pong -- write S bytes, wait until exactly those S bytes
 * have come back, check every one, start the next round. One thread, plain
 * epoll and non-blocking sockets (TCP_NODELAY), no runtime of its own: the
 * same client for every server, so that the servers are what differs.
 *
 * Every round's bytes are a pattern drawn from (connection, round), so that
 * a server that echoes another connection's bytes, a stale round, or a
 * short, long or reordered answer fails the run. So does a connection the
 * server closes or resets, and a connection it leaves without a single
 * round trip in the measured window.
 *
 * Timeline: --warmup seconds (not counted), then --seconds counted, then
 * every connection finishes the round it is in (checked, not counted) and
 * closes cleanly, so that the server sees an EOF, never a reset with data
 * left unread. Result: round trips per second over all connections.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_util.h"

#define MAX_MSG (16u << 20)
#define MAX_EVENTS 256
/* No round trip anywhere for this long: the server has stalled. */
#define STALL_NS (5000 * BENCH_MS)

enum phase { WARMUP, MEASURE, DRAIN };

struct conn {
	int fd;
	unsigned id;
	bool want_out;		/* EPOLLOUT is in the interest set */
	bool done;		/* drained and closed */
	uint64_t round;		/* rounds completed */
	uint64_t round0;	/* ... when the measured window opened */
	size_t wr, rd;		/* bytes of this round sent, received back */
	unsigned char *wbuf;	/* this round's pattern */
	unsigned char *rbuf;	/* one byte longer: see do_read */
};

static struct {
	int ep;
	size_t size;
	enum phase phase;
	uint64_t rounds;	/* completed, all connections */
	uint64_t verified;	/* bytes received and compared */
	uint64_t last_progress;
	unsigned active;
} st;

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The bytes of round r on connection id: different for every pair, so
 * that neither a stale round nor a neighbour's bytes can pass. */
static void fill(unsigned char *b, size_t n, unsigned id, uint64_t r)
{
	uint64_t x = ((uint64_t)id << 40) ^ r;

	for (size_t i = 0; i < n; i += 8) {
		uint64_t z = splitmix(&x);

		memcpy(b + i, &z, n - i < 8 ? n - i : 8);
	}
}

static void set_out(struct conn *c, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };

	if (c->want_out == on)
		return;
	if (epoll_ctl(st.ep, EPOLL_CTL_MOD, c->fd, &ev))
		bench_die("epoll_ctl: %s", strerror(errno));
	c->want_out = on;
}

static void do_write(struct conn *c)
{
	while (c->wr < st.size) {
		ssize_t n = send(c->fd, c->wbuf + c->wr, st.size - c->wr, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* Only a message larger than the socket buffers gets
			 * here: wait for room, reading the echo meanwhile. */
			if (errno == EAGAIN) {
				set_out(c, true);
				return;
			}
			bench_die("connection %u, round %llu: send: %s", c->id,
				  (unsigned long long)c->round, strerror(errno));
		}
		c->wr += (size_t)n;
	}
	set_out(c, false);
}

static void start_round(struct conn *c)
{
	fill(c->wbuf, st.size, c->id, c->round);
	c->wr = c->rd = 0;
	do_write(c);
}

static void do_read(struct conn *c, uint64_t now)
{
	ssize_t n;
	size_t want = st.size - c->rd;

	/* One byte more than the round still owes: a server that sends more
	 * than it was sent shows up here, not as a mismatch a round later. */
	n = recv(c->fd, c->rbuf + c->rd, want + 1, 0);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		bench_die("connection %u, round %llu: recv after %zu of %zu bytes: %s", c->id,
			  (unsigned long long)c->round, c->rd, st.size, strerror(errno));
	}
	if (n == 0)
		bench_die("connection %u, round %llu: closed by the server after %zu of %zu bytes",
			  c->id, (unsigned long long)c->round, c->rd, st.size);
	if (c->rd + (size_t)n > c->wr)
		bench_die("connection %u, round %llu: %zu bytes back, only %zu sent", c->id,
			  (unsigned long long)c->round, c->rd + (size_t)n, c->wr);
	if (memcmp(c->rbuf + c->rd, c->wbuf + c->rd, (size_t)n)) {
		size_t k = c->rd;

		while (c->rbuf[k] == c->wbuf[k])
			k++;
		bench_die("connection %u, round %llu: byte %zu came back 0x%02x, sent 0x%02x",
			  c->id, (unsigned long long)c->round, k, c->rbuf[k], c->wbuf[k]);
	}
	c->rd += (size_t)n;
	st.verified += (uint64_t)n;
	if (c->rd < st.size)
		return;
	c->round++;
	st.rounds++;
	st.last_progress = now;
	if (st.phase != DRAIN) {
		start_round(c);
		return;
	}
	/* Nothing is left unread on it: the server sees a plain EOF. */
	close(c->fd);
	c->done = true;
	st.active--;
}

static int connect_one(const struct sockaddr_in *sa)
{
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		bench_die("socket: %s", strerror(errno));
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		bench_die("TCP_NODELAY: %s", strerror(errno));
	/* Blocking connect: loopback completes it in the kernel, whether or
	 * not the server has accepted yet. */
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)))
		bench_die("connect to 127.0.0.1:%u: %s", ntohs(sa->sin_port), strerror(errno));
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK))
		bench_die("O_NONBLOCK: %s", strerror(errno));
	return fd;
}

/* 100 connections fit any limit; thousands may not. */
static void raise_nofile(unsigned conns)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)conns + 16;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < need)
		bench_die("--conns %u: RLIMIT_NOFILE allows only %llu descriptors", conns,
			  (unsigned long long)rl.rlim_max);
}

/* CPU time of this process, user and system. */
static uint64_t cpu_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		bench_die("getrusage: %s", strerror(errno));
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

static double parse_secs(const char *s, const char *what, double min)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= min && v <= 3600))
		bench_die("%s: want seconds from %g to 3600, got '%s'", what, min, s);
	return v;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: urt-bench-echo-client --port P [--conns C] [--msg-size S] "
		   "[--seconds T] [--warmup W] [--impl NAME]\n"
		   "  C connections to 127.0.0.1:P (default 100), each writing S bytes (default\n"
		   "  64) and waiting for exactly those S bytes back, checked; W seconds of\n"
		   "  warm-up (default 0.5), then T counted (default 3). Prints\n"
		   "  \"result ECHO NAME rtps R\" (NAME default \"server\").\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "conns", required_argument, NULL, 'c' },
		{ "msg-size", required_argument, NULL, 's' },
		{ "seconds", required_argument, NULL, 't' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "impl", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct epoll_event evs[MAX_EVENTS];
	struct sockaddr_in sa = { .sin_family = AF_INET };
	const char *impl = "server";
	unsigned conns = 100, port = 0;
	double secs = 3, warmup = 0.5, elapsed, rtps;
	uint64_t t0, t_measure, t_end, t_m0 = 0, t_m1 = 0, r_m0 = 0, r_m1 = 0, cpu0 = 0, cpu1 = 0;
	uint64_t min_rounds = UINT64_MAX, max_rounds = 0;
	struct conn *cs;
	int c;

	bench_prog = "urt-bench-echo-client";
	st.size = 64;
	while ((c = getopt_long(argc, argv, "p:c:s:t:w:i:h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			port = (unsigned)bench_count(optarg, "--port");
			if (port > 65535)
				bench_die("--port: at most 65535");
			break;
		case 'c':
			conns = (unsigned)bench_count(optarg, "--conns");
			if (conns > 100000)
				bench_die("--conns: at most 100000");
			break;
		case 's':
			st.size = bench_count(optarg, "--msg-size");
			if (st.size > MAX_MSG)
				bench_die("--msg-size: at most %u", MAX_MSG);
			break;
		case 't':
			secs = parse_secs(optarg, "--seconds", 0.001);
			break;
		case 'w':
			warmup = parse_secs(optarg, "--warmup", 0);
			break;
		case 'i':
			impl = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || !port) {
		usage(stderr);
		return 2;
	}
	/* The result line is split on blanks. */
	if (!*impl || strpbrk(impl, " \t\n"))
		bench_die("--impl: one word, not '%s'", impl);

	raise_nofile(conns);
	st.ep = epoll_create1(EPOLL_CLOEXEC);
	if (st.ep < 0)
		bench_die("epoll_create1: %s", strerror(errno));
	cs = calloc(conns, sizeof(*cs));
	if (!cs)
		bench_die("out of memory");
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (unsigned i = 0; i < conns; i++) {
		struct conn *k = &cs[i];
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = k };

		k->id = i;
		k->wbuf = malloc(st.size);
		k->rbuf = malloc(st.size + 1);
		if (!k->wbuf || !k->rbuf)
			bench_die("out of memory");
		k->fd = connect_one(&sa);
		if (epoll_ctl(st.ep, EPOLL_CTL_ADD, k->fd, &ev))
			bench_die("epoll_ctl: %s", strerror(errno));
	}
	st.active = conns;

	t0 = bench_now_ns();
	t_measure = t0 + (uint64_t)(warmup * 1e9);
	t_end = t_measure + (uint64_t)(secs * 1e9);
	st.last_progress = t0;
	st.phase = WARMUP;
	for (unsigned i = 0; i < conns; i++)
		start_round(&cs[i]);
	while (st.active) {
		uint64_t now;
		int n = epoll_wait(st.ep, evs, MAX_EVENTS, 100);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			bench_die("epoll_wait: %s", strerror(errno));
		}
		now = bench_now_ns();
		for (int i = 0; i < n; i++) {
			struct conn *k = evs[i].data.ptr;

			/* An error or hang-up shows up as recv's failure or EOF. */
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				do_read(k, now);
			if (!k->done && k->wr < st.size && (evs[i].events & EPOLLOUT))
				do_write(k);
		}
		/* The window's edges are read once per batch of events, a few
		 * microseconds apart under load. */
		if (st.phase == WARMUP && now >= t_measure) {
			st.phase = MEASURE;
			t_m0 = now;
			cpu0 = cpu_ns();
			r_m0 = st.rounds;
			for (unsigned i = 0; i < conns; i++)
				cs[i].round0 = cs[i].round;
		}
		if (st.phase == MEASURE && now >= t_end) {
			st.phase = DRAIN;
			t_m1 = now;
			cpu1 = cpu_ns();
			r_m1 = st.rounds;
			for (unsigned i = 0; i < conns; i++) {
				uint64_t r = cs[i].round - cs[i].round0;

				min_rounds = r < min_rounds ? r : min_rounds;
				max_rounds = r > max_rounds ? r : max_rounds;
			}
		}
		if (now - st.last_progress > STALL_NS)
			bench_die("no round trip completed for %llu s (%s, %u connections "
				  "waiting for their echo): the server stalled, or dropped bytes",
				  STALL_NS / 1000000000ull,
				  st.phase == DRAIN ? "draining" : "running", st.active);
	}
	close(st.ep);
	/* A server may not leave a connection without service for a whole
	 * window: the total would hide it. */
	if (min_rounds == 0)
		bench_die("a connection made no round trip in the %.3f s counted: the server "
			  "starved it", (double)(t_m1 - t_m0) / 1e9);
	if (st.verified != st.rounds * st.size)
		bench_die("%llu bytes checked for %llu rounds of %zu",
			  (unsigned long long)st.verified, (unsigned long long)st.rounds, st.size);
	elapsed = (double)(t_m1 - t_m0) / 1e9;
	rtps = (double)(r_m1 - r_m0) / elapsed;
	/* The client's CPU share says whether the figure is the server's: on
	 * loopback each side's send also runs the other's receive path, so
	 * that a client near 100% busy bounds what a faster server can show. */
	printf("ECHO %s: %u connections x %zu B ping-pong, %.3f s counted: %llu round trips, "
	       "%.0f per second (%.1f us per round trip on a connection); rounds per "
	       "connection %llu..%llu; %llu bytes checked in all; client CPU %.0f%% busy\n",
	       impl, conns, st.size, elapsed, (unsigned long long)(r_m1 - r_m0), rtps,
	       (double)conns / rtps * 1e6, (unsigned long long)min_rounds,
	       (unsigned long long)max_rounds, (unsigned long long)st.verified,
	       100.0 * (double)(cpu1 - cpu0) / (double)(t_m1 - t_m0));
	bench_result("ECHO", impl, "rtps", rtps);
	for (unsigned i = 0; i < conns; i++) {
		free(cs[i].wbuf);
		free(cs[i].rbuf);
	}
	free(cs);
	return 0;
}
