/*
 * W5 on libuv: a repeating 1 ms uv_timer_t for D seconds; lateness =
 * (t_k - t_{k-1}) - period from CLOCK_MONOTONIC read in each callback,
 * p50/p99/max in us. Loads: idle (the timer alone) and offload (two
 * uv_queue_work jobs of usleep 5 ms always in flight, on libuv's default
 * pool). libuv's timers count in whole milliseconds of a clock cached per
 * loop iteration, so that an interval can come out shorter than the period:
 * lateness may be negative here, and is reported as it is.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "bench_util.h"

#define PERIOD_NS (1 * BENCH_MS)
#define WORK_US 5000u

struct job {
	uv_work_t req;
	uint64_t in, out;
};

static struct {
	uv_loop_t *loop;
	uv_timer_t timer;
	uint64_t duration, start, prev, next_in, jobs;
	int64_t *late;
	size_t n, cap;
	bool stop;
} st;

static uint64_t answer(uint64_t in)
{
	return in * 0x9e3779b97f4a7c15ull + 1;
}

static void on_tick(uv_timer_t *t)
{
	uint64_t now = bench_now_ns();

	if (st.n == st.cap)
		bench_die("more ticks than %zu", st.cap);
	st.late[st.n++] = (int64_t)(now - st.prev) - (int64_t)PERIOD_NS;
	st.prev = now;
	if (now - st.start >= st.duration) {
		uv_timer_stop(t);
		st.stop = true;
	}
}

static void work(uv_work_t *req)
{
	struct job *j = (struct job *)req;	/* req is the first member */

	usleep(WORK_US);
	j->out = answer(j->in);
}

static void after(uv_work_t *req, int status);

static void submit(struct job *j)
{
	int ret;

	j->in = st.next_in++;
	j->out = 0;
	ret = uv_queue_work(st.loop, &j->req, work, after);
	if (ret < 0)
		bench_die("uv_queue_work: %s", uv_strerror(ret));
}

static void after(uv_work_t *req, int status)
{
	struct job *j = (struct job *)req;

	if (status < 0 || j->out != answer(j->in))
		bench_die("job %llu came back without its answer", (unsigned long long)j->in);
	st.jobs++;
	if (!st.stop)
		submit(j);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "load", required_argument, NULL, 'l' },
		{ "seconds", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	static struct job jobs[2];
	bool offload = false;
	int c, ret;

	bench_prog = "urt-bench-uv-timer";
	st.duration = 3000 * BENCH_MS;
	while ((c = getopt_long(argc, argv, "l:s:", lo, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (strcmp(optarg, "idle") && strcmp(optarg, "offload"))
				bench_die("--load: idle or offload, not '%s'", optarg);
			offload = !strcmp(optarg, "offload");
			break;
		case 's':
			st.duration = (uint64_t)(atof(optarg) * 1e9);
			if (st.duration < PERIOD_NS || st.duration > 3600e9)
				bench_die("--seconds: from 0.001 to 3600");
			break;
		default:
			fprintf(stderr, "usage: urt-bench-uv-timer [--load idle|offload] [--seconds D]\n");
			return 2;
		}
	}
	/* A timer that fires early can tick more often than once a period. */
	st.cap = 2 * (st.duration / PERIOD_NS) + 16;
	st.late = calloc(st.cap, sizeof(*st.late));
	if (!st.late)
		bench_die("out of memory");
	st.loop = uv_default_loop();
	ret = uv_timer_init(st.loop, &st.timer);
	if (ret < 0)
		bench_die("uv_timer_init: %s", uv_strerror(ret));
	if (offload)
		for (int i = 0; i < 2; i++)
			submit(&jobs[i]);
	uv_update_time(st.loop);
	st.start = st.prev = bench_now_ns();
	ret = uv_timer_start(&st.timer, on_tick, 1, 1);
	if (ret < 0)
		bench_die("uv_timer_start: %s", uv_strerror(ret));
	uv_run(st.loop, UV_RUN_DEFAULT);
	if (!st.n || (offload && st.jobs < 2))
		bench_die("the timer or the jobs never ran");
	if (offload && st.jobs != st.next_in)
		bench_die("%llu jobs handed out, %llu came back", (unsigned long long)st.next_in,
			  (unsigned long long)st.jobs);
	uv_close((uv_handle_t *)&st.timer, NULL);
	uv_run(st.loop, UV_RUN_DEFAULT);
	bench_lateness_report(offload ? "W5.offload" : "W5.idle", "libuv", st.late, st.n);
	uv_loop_close(st.loop);
	free(st.late);
	return 0;
}
