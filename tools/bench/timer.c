/*
 * W5 on urt: a 1 ms periodic timer for D seconds (default 3); lateness =
 * (t_k - t_{k-1}) - period, p50/p99/max in us, under one of three loads:
 *
 *  idle     the ticker alone;
 *  offload  two blocking jobs (usleep 5 ms) always in flight: two tasks,
 *           each calling urt_to_thread in a loop, on a pool of 2 threads;
 *  inline   a task that spins 5 ms of CPU, then calls urt_yield, forever.
 *
 * The ticker is a task calling urt_sleep_ns(period) in a loop. urt never
 * wakes a sleeper early, so that a negative lateness is a failure; every
 * job's answer is checked too.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <urt.h>

#include "bench_util.h"

#define PERIOD_NS (1 * BENCH_MS)
#define WORK_NS (5 * BENCH_MS)

enum load { IDLE, OFFLOAD, INLINE };
static const char *const load_names[] = { "idle", "offload", "inline" };

struct state {
	uint64_t duration_ns;
	bool stop;		/* set by the ticker when its time is up */
	int64_t *late;
	size_t n, cap;
	uint64_t jobs, spins, sink;
	int err;
};

static int ticker_task(void *arg)
{
	struct state *st = arg;
	uint64_t start = urt_now_ns(), prev = start;

	while (prev - start < st->duration_ns) {
		uint64_t now;
		int ret = urt_sleep_ns(PERIOD_NS);

		if (ret < 0) {
			st->err = ret;
			break;
		}
		now = urt_now_ns();
		if (now - prev < PERIOD_NS)
			bench_die("the ticker woke %llu ns early",
				  (unsigned long long)(PERIOD_NS - (now - prev)));
		if (st->n == st->cap)
			bench_die("more ticks than %zu", st->cap);
		st->late[st->n++] = (int64_t)(now - prev - PERIOD_NS);
		prev = now;
	}
	st->stop = true;
	return 0;
}

struct job {
	uint64_t in, out;
};

static uint64_t answer(uint64_t in)
{
	return in * 0x9e3779b97f4a7c15ull + 1;
}

static void blocking_job(struct job *j)
{
	usleep(WORK_NS / 1000);
	j->out = answer(j->in);
}

static int offload_task(void *arg)
{
	struct state *st = arg;
	struct job j;

	for (uint64_t i = 0; !st->stop; i++) {
		int ret;

		j.in = i;
		j.out = 0;
		ret = urt_to_thread(blocking_job, &j);
		if (ret < 0) {
			st->err = ret;
			break;
		}
		if (j.out != answer(i))
			bench_die("job %llu came back without its answer", (unsigned long long)i);
		st->jobs++;
	}
	return 0;
}

static int inline_task(void *arg)
{
	struct state *st = arg;

	while (!st->stop) {
		st->sink += bench_spin_ns(WORK_NS);
		st->spins++;
		if (urt_yield() < 0)
			break;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "load", required_argument, NULL, 'l' },
		{ "seconds", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct urt_pool_opts po = { .threads = 2 };
	struct urt_loop_opts o = { .pool_opts = &po };
	struct state st = { .duration_ns = 3000 * BENCH_MS };
	enum load load = IDLE;
	char wl[32];
	urt_loop *loop;
	int c, ret;

	bench_prog = "urt-bench-timer";
	while ((c = getopt_long(argc, argv, "l:s:", lo, NULL)) != -1) {
		switch (c) {
		case 'l':
			for (load = IDLE; load <= INLINE; load++)
				if (!strcmp(optarg, load_names[load]))
					break;
			if (load > INLINE)
				bench_die("--load: idle, offload or inline, not '%s'", optarg);
			break;
		case 's':
			st.duration_ns = (uint64_t)(atof(optarg) * 1e9);
			if (st.duration_ns < PERIOD_NS || st.duration_ns > 3600e9)
				bench_die("--seconds: from 0.001 to 3600");
			break;
		default:
			fprintf(stderr, "usage: urt-bench-timer [--load idle|offload|inline] "
					"[--seconds D]\n");
			return 2;
		}
	}
	st.cap = st.duration_ns / PERIOD_NS + 2;
	st.late = calloc(st.cap, sizeof(*st.late));
	if (!st.late)
		bench_die("out of memory");
	ret = urt_loop_create(&loop, &o);
	if (ret < 0)
		bench_die("urt_loop_create: %s", strerror(-ret));
	ret = urt_spawn(loop, NULL, ticker_task, &st);
	for (int i = 0; ret == 0 && load == OFFLOAD && i < 2; i++)
		ret = urt_spawn(loop, NULL, offload_task, &st);
	if (ret == 0 && load == INLINE)
		ret = urt_spawn(loop, NULL, inline_task, &st);
	if (ret < 0)
		bench_die("urt_spawn: %s", strerror(-ret));
	ret = urt_loop_run(loop);
	if (ret < 0)
		bench_die("urt_loop_run: %s", strerror(-ret));
	urt_loop_destroy(loop);
	if (st.err < 0)
		bench_die("a task failed: %s", strerror(-st.err));
	if (!st.n || (load == OFFLOAD && !st.jobs) || (load == INLINE && !st.spins))
		bench_die("the load or the ticker never ran");
	snprintf(wl, sizeof(wl), "W5.%s", load_names[load]);
	bench_lateness_report(wl, "urt", st.late, st.n);
	free(st.late);
	return (int)(st.sink & 0);
}
