/*
 * urt-bench-xloop: work between two loops of a set, against the raw floors
 * of the same hand-off, in one run.
 *
 *  - round trip: loop 0 calls a no-op on loop 1 (urt_call) and waits; both
 *    loops sleep in the kernel between calls, so each call wakes loop 1 and
 *    its reply wakes loop 0. Floors: two threads, each with its own ring
 *    (the flags urt asks for), ping-ponging IORING_OP_MSG_RING; and two
 *    threads ping-ponging over two eventfds. Loop i and floor thread i run
 *    on the same CPU.
 *  - throughput: loop 0 spawns S no-op tasks on loop 1 (urt_spawn_on) as
 *    fast as it can; 64 tasks on loop 0 each call loop 1 C times; and loop
 *    0 sends M 8-byte messages through a channel (urt_xchan, 4096 slots)
 *    to a task of loop 1, one by one and in batches of 64. Floor: two
 *    pinned threads passing the same messages through a single-producer
 *    ring of the same size, both polling, never sleeping: what shared
 *    memory alone costs, and what per-pair rings would at best give.
 *
 * Runs alternate (urt, MSG_RING, eventfd) R times; medians of each run's
 * p50, and ratios to the MSG_RING floor of the same run. Prints "result"
 * lines (bench_util.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <urt.h>

#include "bench_util.h"

#define MAX_RUNS 99u
#define CALLERS 64u

struct opts {
	unsigned calls, spawns, runs, msgs;
};

static int cpus[2] = { -1, -1 };

/* The first two CPUs of the affinity mask (the same CPU twice on one). */
static void cpus_init(void)
{
	cpu_set_t set;
	int n = 0;

	if (sched_getaffinity(0, sizeof(set), &set))
		bench_die("sched_getaffinity: %s", strerror(errno));
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			cpus[n++] = c;
	if (n == 1)
		cpus[1] = cpus[0];
}

static void pin(int cpu)
{
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	if ((errno = pthread_setaffinity_np(pthread_self(), sizeof(one), &one)))
		bench_die("pinning: %s", strerror(errno));
}

/* ---- urt ---- */

struct urt_case {
	urt_loops *set;
	unsigned n;
	uint64_t *lat;
	uint64_t t0, t1;
	atomic_uint left;
};

static int noop(struct urt_case *c)
{
	(void)c;
	return 0;
}

static int rt_first(void *arg)
{
	struct urt_case *c = arg;
	urt_loop *peer;

	if (urt_loop_index(urt_current_loop()) != 0)
		return 0;
	peer = urt_loops_get(c->set, 1);
	for (unsigned i = 0; i < c->n; i++) {
		uint64_t t0 = urt_now_ns();
		int ret = urt_call(peer, noop, c);

		if (ret)
			bench_die("urt_call: %s", strerror(-ret));
		c->lat[i] = urt_now_ns() - t0;
	}
	return 0;
}

static int spawned(struct urt_case *c)
{
	if (atomic_fetch_sub_explicit(&c->left, 1, memory_order_relaxed) == 1)
		c->t1 = bench_now_ns();
	return 0;
}

static int spawn_first(void *arg)
{
	struct urt_case *c = arg;
	urt_loop *peer;

	if (urt_loop_index(urt_current_loop()) != 0)
		return 0;
	peer = urt_loops_get(c->set, 1);
	c->t0 = bench_now_ns();
	for (unsigned i = 0; i < c->n; i++) {
		int ret;

		while ((ret = urt_spawn_on(peer, spawned, c, NULL)) == -ENOMEM)
			urt_yield();
		if (ret)
			bench_die("urt_spawn_on: %s", strerror(-ret));
		/* Let the turn go on now and then, as a service would. */
		if (i % 1024 == 1023)
			urt_yield();
	}
	return 0;
}

static int call_many(struct urt_case *c)
{
	urt_loop *peer = urt_loops_get(c->set, 1);

	for (unsigned i = 0; i < c->n / CALLERS; i++) {
		int ret = urt_call(peer, noop, c);

		if (ret)
			bench_die("urt_call: %s", strerror(-ret));
	}
	return 0;
}

static int calls_first(void *arg)
{
	struct urt_case *c = arg;

	if (urt_loop_index(urt_current_loop()) != 0)
		return 0;
	c->t0 = bench_now_ns();
	for (unsigned i = 0; i < CALLERS; i++)
		if (urt_spawn(NULL, NULL, (urt_task_fn)call_many, c))
			bench_die("urt_spawn");
	return 0;
}

/* ---- a channel between the loops ---- */

#define BATCH 64u

struct chan_case {
	urt_loops *set;
	urt_xchan *ch;
	uint64_t n, got, sum;
	unsigned batch;
	uint64_t t0, t1;
};

static int chan_first(void *arg)
{
	struct chan_case *c = arg;
	uint64_t buf[BATCH];

	if (urt_loop_index(urt_current_loop()) == 0) {
		c->t0 = bench_now_ns();
		for (uint64_t i = 0; i < c->n;) {
			unsigned k = c->n - i < c->batch ? (unsigned)(c->n - i) : c->batch;
			int ret;

			for (unsigned j = 0; j < k; j++)
				buf[j] = i + j;
			ret = k == 1 ? urt_xchan_send(c->ch, &buf[0])
				     : urt_xchan_send_many(c->ch, buf, k);
			if (ret != (int)k)
				bench_die("urt_xchan_send: %d", ret);
			i += k;
		}
		if (urt_xchan_close(c->ch))
			bench_die("urt_xchan_close");
		return 0;
	}
	for (;;) {
		ssize_t got = urt_xchan_recv_many(c->ch, buf, BATCH);

		if (got < 0)
			bench_die("urt_xchan_recv: %s", strerror((int)-got));
		if (!got)
			break;
		for (ssize_t j = 0; j < got; j++)
			c->sum += buf[j];
		c->got += (uint64_t)got;
	}
	c->t1 = bench_now_ns();
	return 0;
}

/* Messages per second through a channel, sent batch at a time. */
static double chan_run(urt_loops *set, uint64_t n, unsigned batch)
{
	struct chan_case c = { .set = set, .n = n, .batch = batch };
	int ret;

	if ((ret = urt_xchan_create(&c.ch, urt_loops_get(set, 1), sizeof(uint64_t), 4096)))
		bench_die("urt_xchan_create: %s", strerror(-ret));
	if ((ret = urt_loops_run(set, chan_first, &c)))
		bench_die("urt_loops_run: %s", strerror(-ret));
	if (c.got != n || c.sum != n * (n - 1) / 2)
		bench_die("the channel delivered %llu messages, expected %llu",
			  (unsigned long long)c.got, (unsigned long long)n);
	if ((ret = urt_xchan_destroy(c.ch)))
		bench_die("urt_xchan_destroy: %s", strerror(-ret));
	return (double)n / ((double)(c.t1 - c.t0) / 1e9);
}

static void urt_runs(urt_loops *set, unsigned n, uint64_t *lat, double *spawn_rate,
		     double *call_rate, unsigned spawns)
{
	struct urt_case c = { .set = set, .n = n, .lat = lat };
	int ret;

	if ((ret = urt_loops_run(set, rt_first, &c)))
		bench_die("urt_loops_run: %s", strerror(-ret));
	c = (struct urt_case){ .set = set, .n = spawns };
	atomic_store(&c.left, spawns);
	if ((ret = urt_loops_run(set, spawn_first, &c)))
		bench_die("urt_loops_run: %s", strerror(-ret));
	*spawn_rate = spawns / ((double)(c.t1 - c.t0) / 1e9);
	c = (struct urt_case){ .set = set, .n = n * 4 };
	if ((ret = urt_loops_run(set, calls_first, &c)))
		bench_die("urt_loops_run: %s", strerror(-ret));
	*call_rate = (double)(c.n / CALLERS * CALLERS) / ((double)(bench_now_ns() - c.t0) / 1e9);
}

/* ---- the raw MSG_RING floor ---- */

struct raw_side {
	struct io_uring ring;
	int cpu;
	struct raw_side *peer;
	unsigned n;
	uint64_t *lat;              /* side 0 only */
	atomic_int ready;
};

/* The flags urt asks for, dropped one by one as the kernel refuses them. */
static void raw_ring_init(struct io_uring *ring)
{
	static const unsigned flags[] = {
		IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
			IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_COOP_TASKRUN,
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int ret = -EINVAL;

	for (unsigned i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		struct io_uring_params p = { .flags = flags[i] };

		ret = io_uring_queue_init_params(64, ring, &p);
		if (ret != -EINVAL)
			break;
	}
	if (ret)
		bench_die("io_uring setup: %s", strerror(-ret));
}

static void raw_send(struct raw_side *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	io_uring_prep_msg_ring(sqe, s->peer->ring.ring_fd, 0, 1, 0);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

static void raw_wait(struct raw_side *s)
{
	struct io_uring_cqe *cqe;
	int ret;

	while ((ret = io_uring_submit_and_wait(&s->ring, 1)) == -EINTR)
		;
	if (ret < 0)
		bench_die("io_uring_submit_and_wait: %s", strerror(-ret));
	while ((ret = io_uring_peek_cqe(&s->ring, &cqe)) == -EAGAIN)
		if ((ret = io_uring_wait_cqe(&s->ring, &cqe)) == 0)
			break;
	if (ret)
		bench_die("io_uring_wait_cqe: %s", strerror(-ret));
	if (cqe->res < 0)
		bench_die("MSG_RING: %s", strerror(-cqe->res));
	io_uring_cqe_seen(&s->ring, cqe);
}

static void *raw_main(void *arg)
{
	struct raw_side *s = arg;

	pin(s->cpu);
	raw_ring_init(&s->ring); /* a ring is its creating thread's */
	atomic_store(&s->ready, 1);
	while (!atomic_load(&s->peer->ready))
		;
	for (unsigned i = 0; i < s->n; i++) {
		if (s->lat) {
			uint64_t t0 = bench_now_ns();

			raw_send(s);
			raw_wait(s);
			s->lat[i] = bench_now_ns() - t0;
		} else {
			raw_wait(s);
			raw_send(s);
			io_uring_submit(&s->ring);
		}
	}
	io_uring_queue_exit(&s->ring);
	return NULL;
}

static void raw_run(unsigned n, uint64_t *lat)
{
	struct raw_side s[2] = { { .cpu = cpus[0], .n = n, .lat = lat },
				 { .cpu = cpus[1], .n = n } };
	pthread_t th[2];

	s[0].peer = &s[1];
	s[1].peer = &s[0];
	for (int i = 0; i < 2; i++)
		if ((errno = pthread_create(&th[i], NULL, raw_main, &s[i])))
			bench_die("pthread_create: %s", strerror(errno));
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
}

/* ---- the eventfd floor ---- */

struct efd_side {
	int in, out, cpu;
	unsigned n;
	uint64_t *lat;
};

static void efd_read(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		if (errno != EINTR)
			bench_die("eventfd read: %s", strerror(errno));
}

static void efd_write(int fd)
{
	uint64_t v = 1;

	if (write(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		bench_die("eventfd write: %s", strerror(errno));
}

static void *efd_main(void *arg)
{
	struct efd_side *s = arg;

	pin(s->cpu);
	for (unsigned i = 0; i < s->n; i++) {
		if (s->lat) {
			uint64_t t0 = bench_now_ns();

			efd_write(s->out);
			efd_read(s->in);
			s->lat[i] = bench_now_ns() - t0;
		} else {
			efd_read(s->in);
			efd_write(s->out);
		}
	}
	return NULL;
}

static void efd_run(unsigned n, uint64_t *lat)
{
	int a = eventfd(0, EFD_CLOEXEC), b = eventfd(0, EFD_CLOEXEC);
	struct efd_side s[2] = { { .in = a, .out = b, .cpu = cpus[0], .n = n, .lat = lat },
				 { .in = b, .out = a, .cpu = cpus[1], .n = n } };
	pthread_t th[2];

	if (a < 0 || b < 0)
		bench_die("eventfd: %s", strerror(errno));
	for (int i = 0; i < 2; i++)
		if ((errno = pthread_create(&th[i], NULL, efd_main, &s[i])))
			bench_die("pthread_create: %s", strerror(errno));
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	close(a);
	close(b);
}

/* ---- the shared-memory floor: one producer, one consumer, polling ---- */

#define SPSC_SLOTS 4096u

struct spsc {
	_Atomic uint64_t head __attribute__((aligned(128)));
	_Atomic uint64_t tail __attribute__((aligned(128)));
	uint64_t buf[SPSC_SLOTS] __attribute__((aligned(128)));
	uint64_t n, sum, t0, t1;
};

static inline void relax(void)
{
#if defined(__x86_64__)
	__builtin_ia32_pause();
#endif
}

static void *spsc_producer(void *arg)
{
	struct spsc *q = arg;
	uint64_t tail = 0, head = 0;

	pin(cpus[0]);
	q->t0 = bench_now_ns();
	while (tail < q->n) {
		uint64_t k = q->n - tail < BATCH ? q->n - tail : BATCH;

		while (tail + k - head > SPSC_SLOTS) {
			head = atomic_load_explicit(&q->head, memory_order_acquire);
			relax();
		}
		for (uint64_t j = 0; j < k; j++)
			q->buf[(tail + j) % SPSC_SLOTS] = tail + j;
		tail += k;
		atomic_store_explicit(&q->tail, tail, memory_order_release);
	}
	return NULL;
}

static void *spsc_consumer(void *arg)
{
	struct spsc *q = arg;
	uint64_t head = 0;

	pin(cpus[1]);
	while (head < q->n) {
		uint64_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);

		if (tail == head) {
			relax();
			continue;
		}
		if (tail - head > BATCH)
			tail = head + BATCH;
		for (; head < tail; head++)
			q->sum += q->buf[head % SPSC_SLOTS];
		atomic_store_explicit(&q->head, head, memory_order_release);
	}
	q->t1 = bench_now_ns();
	return NULL;
}

/* Messages per second through the floor's ring. */
static double spsc_run(uint64_t n)
{
	struct spsc *q = aligned_alloc(128, sizeof(*q));
	pthread_t th[2];
	double rate;

	if (!q)
		bench_die("out of memory");
	memset(q, 0, sizeof(*q));
	q->n = n;
	if ((errno = pthread_create(&th[1], NULL, spsc_consumer, q)) ||
	    (errno = pthread_create(&th[0], NULL, spsc_producer, q)))
		bench_die("pthread_create: %s", strerror(errno));
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	if (q->sum != n * (n - 1) / 2)
		bench_die("the floor's ring lost messages");
	rate = (double)n / ((double)(q->t1 - q->t0) / 1e9);
	free(q);
	return rate;
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f, "usage: urt-bench-xloop [--calls N] [--spawns N] [--msgs N] [--runs R]\n\n"
		   "Round trips between two loops (urt_call) against MSG_RING and eventfd\n"
		   "ping-pong floors; spawns, calls and channel messages per second between\n"
		   "them.\n\n"
		   "  --calls N    round trips per run (default 20000; 4x for calls/s)\n"
		   "  --spawns N   spawns per run (default 1000000)\n"
		   "  --msgs N     channel messages per run in batches (default 10000000;\n"
		   "               a quarter of it one by one)\n"
		   "  --runs R     runs of each, alternating (default 5, at most 99)\n");
}

static void parse(int argc, char **argv, struct opts *o)
{
	static const struct option longs[] = {
		{ "calls", required_argument, NULL, 'c' },
		{ "spawns", required_argument, NULL, 's' },
		{ "msgs", required_argument, NULL, 'm' },
		{ "runs", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	*o = (struct opts){ .calls = 20000, .spawns = 1000000, .runs = 5, .msgs = 10000000 };
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->calls = bench_count_max(optarg, "--calls", 10000000);
			break;
		case 's':
			o->spawns = bench_count_max(optarg, "--spawns", 100000000);
			break;
		case 'm':
			o->msgs = bench_count_max(optarg, "--msgs", 1000000000);
			break;
		case 'r':
			o->runs = bench_count_max(optarg, "--runs", MAX_RUNS);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	struct urt_loops_opts lo = { .loops = 2 };
	double urt_p50[MAX_RUNS], raw_p50[MAX_RUNS], efd_p50[MAX_RUNS], ratio[MAX_RUNS],
		efd_ratio[MAX_RUNS], urt_p99[MAX_RUNS], raw_p99[MAX_RUNS], spawn_rate[MAX_RUNS],
		call_rate[MAX_RUNS], msg_rate[MAX_RUNS], msg1_rate[MAX_RUNS], spsc_rate[MAX_RUNS],
		msg_ratio[MAX_RUNS];
	uint64_t *lat;
	urt_loops *set;
	struct opts o;
	int ret;

	bench_prog = "urt-bench-xloop";
	parse(argc, argv, &o);
	cpus_init();
	lat = malloc(o.calls * sizeof(*lat));
	if (!lat)
		bench_die("out of memory");
	if ((ret = urt_loops_create(&set, &lo)))
		bench_die("urt_loops_create: %s", strerror(-ret));
	/* One run untimed: the loops' stack caches and the allocator's
	 * arenas fill once, as in a service that has been up a while. */
	urt_runs(set, o.calls, lat, &spawn_rate[0], &call_rate[0], o.spawns);
	printf("round trip between two loops on CPUs %d and %d, %u calls per run, %u runs\n\n",
	       cpus[0], cpus[1], o.calls, o.runs);
	printf("%-4s %12s %12s %12s %12s %12s %14s %14s %14s %14s\n", "run", "urt p50", "raw p50",
	       "efd p50", "urt/raw", "efd/raw", "spawns/s", "calls/s", "msgs/s x64", "msgs/s x1");
	for (unsigned r = 0; r < o.runs; r++) {
		urt_runs(set, o.calls, lat, &spawn_rate[r], &call_rate[r], o.spawns);
		urt_p50[r] = (double)bench_pct(lat, o.calls, 50);
		urt_p99[r] = (double)bench_pct(lat, o.calls, 99);
		raw_run(o.calls, lat);
		raw_p50[r] = (double)bench_pct(lat, o.calls, 50);
		raw_p99[r] = (double)bench_pct(lat, o.calls, 99);
		efd_run(o.calls, lat);
		efd_p50[r] = (double)bench_pct(lat, o.calls, 50);
		ratio[r] = urt_p50[r] / raw_p50[r];
		efd_ratio[r] = efd_p50[r] / raw_p50[r];
		msg_rate[r] = chan_run(set, o.msgs, BATCH);
		msg1_rate[r] = chan_run(set, o.msgs / 4, 1);
		spsc_rate[r] = spsc_run(o.msgs);
		msg_ratio[r] = msg_rate[r] / spsc_rate[r];
		printf("%-4u %10.0f ns %9.0f ns %9.0f ns %11.2fx %11.2fx %14.0f %14.0f %14.0f %14.0f\n",
		       r + 1, urt_p50[r], raw_p50[r], efd_p50[r], ratio[r], efd_ratio[r],
		       spawn_rate[r], call_rate[r], msg_rate[r], msg1_rate[r]);
	}
	urt_loops_destroy(set);
	printf("\nmedians: urt %.0f ns (p99 %.0f), raw MSG_RING %.0f ns (p99 %.0f), eventfd %.0f ns;"
	       " urt/raw %.2fx, eventfd/raw %.2fx;\n         %.2f M spawns/s, %.2f M calls/s"
	       " (%u callers);\n         channel: %.2f M msgs/s in batches of %u, %.2f M one by one;"
	       " polling SPSC floor %.2f M (urt %.2fx)\n",
	       bench_median(urt_p50, o.runs), bench_median(urt_p99, o.runs),
	       bench_median(raw_p50, o.runs), bench_median(raw_p99, o.runs),
	       bench_median(efd_p50, o.runs), bench_median(ratio, o.runs),
	       bench_median(efd_ratio, o.runs), bench_median(spawn_rate, o.runs) / 1e6,
	       bench_median(call_rate, o.runs) / 1e6, CALLERS, bench_median(msg_rate, o.runs) / 1e6,
	       BATCH, bench_median(msg1_rate, o.runs) / 1e6, bench_median(spsc_rate, o.runs) / 1e6,
	       bench_median(msg_ratio, o.runs));
	bench_result("XLOOP", "urt", "rt_p50_ns", bench_median(urt_p50, o.runs));
	bench_result("XLOOP", "raw-msg-ring", "rt_p50_ns", bench_median(raw_p50, o.runs));
	bench_result("XLOOP", "eventfd", "rt_p50_ns", bench_median(efd_p50, o.runs));
	bench_result("XLOOP", "urt", "rt_over_raw", bench_median(ratio, o.runs));
	bench_result("XLOOP", "urt", "spawns_per_s", bench_median(spawn_rate, o.runs));
	bench_result("XLOOP", "urt", "calls_per_s", bench_median(call_rate, o.runs));
	bench_result("XLOOP", "urt", "chan_msgs_per_s_batched", bench_median(msg_rate, o.runs));
	bench_result("XLOOP", "urt", "chan_msgs_per_s", bench_median(msg1_rate, o.runs));
	bench_result("XLOOP", "spsc-floor", "chan_msgs_per_s_batched", bench_median(spsc_rate, o.runs));
	bench_result("XLOOP", "urt", "chan_over_spsc", bench_median(msg_ratio, o.runs));
	free(lat);
	return 0;
}
