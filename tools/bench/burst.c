/*
 * urt-bench-burst: blocking jobs offloaded in one turn, and how soon each
 * runs. Two figures:
 *
 *  - burst: J jobs of D ms (usleep) offloaded by J tasks in the same turn to
 *    a pool of W workers; wall ms from the first offload to the last
 *    completion seen by the loop, against the ideal ceil(J / W) x D. Each
 *    job also records how many jobs ran at once; the most must be
 *    min(J, W).
 *  - pair: job A waits (up to 2 s) for a semaphore that job B, offloaded in
 *    the same turn, posts; A must see B start.
 *
 * Defaults: 8 jobs of 50 ms on 4 workers, 5 runs, medians. Prints "result"
 * lines (bench_util.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <urt.h>

#include "bench_util.h"

#define MAX_JOBS 256u
#define MAX_RUNS 99u

struct burst {
	unsigned jobs, workers, ms;
	_Atomic unsigned running, most;
	unsigned done;
	uint64_t t0, t1;
};

static void sleep_job(struct burst *b)
{
	unsigned now = atomic_fetch_add(&b->running, 1) + 1, most = atomic_load(&b->most);

	while (now > most && !atomic_compare_exchange_weak(&b->most, &most, now))
		;
	usleep(b->ms * 1000u);
	atomic_fetch_sub(&b->running, 1);
}

static int burst_task(void *arg)
{
	struct burst *b = arg;
	int ret = urt_to_thread(sleep_job, b);

	if (ret)
		bench_die("urt_to_thread: %s", strerror(-ret));
	if (++b->done == b->jobs)
		b->t1 = bench_now_ns();
	return 0;
}

static int burst_main(void *arg)
{
	struct burst *b = arg;

	b->t0 = bench_now_ns();
	for (unsigned i = 0; i < b->jobs; i++)
		if (urt_spawn(NULL, NULL, burst_task, b))
			bench_die("urt_spawn failed");
	return 0;
}

/* A loop whose pool of workers has started and gone to sleep, as a
 * service's pool is between bursts. */
static urt_loop *idle_pool_loop(unsigned workers)
{
	struct urt_pool_opts po = { .threads = workers };
	struct urt_loop_opts lo = { .pool_opts = &po };
	struct burst warm = { .jobs = workers, .ms = 1 };
	urt_loop *loop;
	int ret = urt_loop_create(&loop, &lo);

	if (ret)
		bench_die("urt_loop_create: %s", strerror(-ret));
	if (urt_spawn(loop, NULL, burst_main, &warm) || urt_loop_run(loop))
		bench_die("warm-up failed");
	usleep(50 * 1000);
	return loop;
}

static double burst_once(unsigned jobs, unsigned workers, unsigned ms, unsigned *most)
{
	struct burst b = { .jobs = jobs, .workers = workers, .ms = ms };
	urt_loop *loop = idle_pool_loop(workers);

	if (urt_spawn(loop, NULL, burst_main, &b) || urt_loop_run(loop))
		bench_die("burst failed");
	urt_loop_destroy(loop);
	if (b.done != jobs)
		bench_die("%u of %u jobs completed", b.done, jobs);
	*most = atomic_load(&b.most);
	return (double)(b.t1 - b.t0) / 1e6;
}

struct pair {
	sem_t posted;
	int waited;
};

static void pair_wait(struct pair *p)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 2;
	while ((p->waited = sem_timedwait(&p->posted, &ts)) && errno == EINTR)
		;
}

static void pair_post(struct pair *p)
{
	sem_post(&p->posted);
}

static int pair_a(void *arg)
{
	return urt_to_thread(pair_wait, (struct pair *)arg);
}

static int pair_b(void *arg)
{
	return urt_to_thread(pair_post, (struct pair *)arg);
}

/* 0 when A saw B start, else -1. */
static int pair_once(unsigned workers, double *ms)
{
	struct pair p = { .waited = 1 };
	urt_loop *loop = idle_pool_loop(workers);
	uint64_t t0;

	sem_init(&p.posted, 0, 0);
	t0 = bench_now_ns();
	if (urt_spawn(loop, NULL, pair_a, &p) || urt_spawn(loop, NULL, pair_b, &p) ||
	    urt_loop_run(loop))
		bench_die("pair failed");
	*ms = (double)(bench_now_ns() - t0) / 1e6;
	urt_loop_destroy(loop);
	sem_destroy(&p.posted);
	return p.waited;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "jobs", required_argument, NULL, 'j' },
		{ "workers", required_argument, NULL, 'w' },
		{ "ms", required_argument, NULL, 'm' },
		{ "runs", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	unsigned jobs = 8, workers = 4, ms = 50, runs = 5, fails = 0, most_min = MAX_JOBS;
	double wall[MAX_RUNS], pair_ms[MAX_RUNS], ideal;
	int c;

	bench_prog = "urt-bench-burst";
	while ((c = getopt_long(argc, argv, "j:w:m:r:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': jobs = bench_count_max(optarg, "--jobs", MAX_JOBS); break;
		case 'w': workers = bench_count_max(optarg, "--workers", 1024); break;
		case 'm': ms = bench_count_max(optarg, "--ms", 10000); break;
		case 'r': runs = bench_count_max(optarg, "--runs", MAX_RUNS); break;
		case 'h':
			printf("usage: urt-bench-burst [--jobs J] [--workers W] [--ms D] [--runs N]\n"
			       "J jobs of D ms offloaded in one turn to W workers (default 8, 4, 50),\n"
			       "N runs (default 5); then a job waiting for another of its turn.\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind != argc)
		return 2;
	ideal = (double)((jobs + workers - 1) / workers * ms);
	for (unsigned r = 0; r < runs; r++) {
		unsigned most;
		int missed;

		wall[r] = burst_once(jobs, workers, ms, &most);
		if (most < most_min)
			most_min = most;
		missed = pair_once(workers, &pair_ms[r]);
		fails += missed != 0;
		printf("run %u burst %.1f ms (at most %u at once), pair %s in %.1f ms\n", r + 1,
		       wall[r], most, missed ? "timed out" : "met", pair_ms[r]);
	}
	bench_sort_double(wall, runs);
	bench_sort_double(pair_ms, runs);
	printf("\n%u jobs of %u ms, one turn, %u workers: median %.1f ms, %.2fx the ideal %.0f ms;\n"
	       "fewest at once %u (ideal %u); the waiting pair: %u of %u runs timed out, median %.1f ms\n",
	       jobs, ms, workers, wall[runs / 2], wall[runs / 2] / ideal, ideal, most_min,
	       jobs < workers ? jobs : workers, fails, runs, pair_ms[runs / 2]);
	bench_result("BURST", "urt", "wall_ms", wall[runs / 2]);
	bench_result("BURST", "urt", "ratio_to_ideal", wall[runs / 2] / ideal);
	bench_result("BURST", "urt", "pair_timeouts", fails);
	return 0;
}
