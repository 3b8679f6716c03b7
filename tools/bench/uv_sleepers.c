/*
 * W1 on libuv: N uv_timer_t, each started for 10 ms once, back to back;
 * wall ms from the first start to uv_run's return, cold (first fan-out in
 * the process) and warm (the same handles started again on the same loop),
 * and peak RSS after the cold one. Every timer is checked to fire exactly
 * once per fan-out.
 *
 * libuv reckons a timer's due time from the loop's cached clock (updated
 * once per loop iteration), so that timers started late in a long fan-out
 * may fire before 10 ms of real time have passed since their own start:
 * that is how libuv timers behave, and the count of them is printed rather
 * than failed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bench_util.h"

#define SLEEP_MS 10u

struct sleeper {
	uv_timer_t t;
	uint64_t start;
	unsigned fired;		/* in this fan-out */
};

static uint64_t early;

static void on_timer(uv_timer_t *t)
{
	struct sleeper *s = (struct sleeper *)t;	/* t is the first member */

	s->fired++;
	if (bench_now_ns() - s->start < SLEEP_MS * BENCH_MS)
		early++;
}

static uint64_t fan_out(uv_loop_t *loop, struct sleeper *s, size_t n, int init)
{
	uint64_t t0 = bench_now_ns();
	int ret;

	for (size_t i = 0; i < n; i++) {
		s[i].start = bench_now_ns();
		s[i].fired = 0;
		if (init && (ret = uv_timer_init(loop, &s[i].t)) < 0)
			bench_die("uv_timer_init: %s", uv_strerror(ret));
		ret = uv_timer_start(&s[i].t, on_timer, SLEEP_MS, 0);
		if (ret < 0)
			bench_die("uv_timer_start: %s", uv_strerror(ret));
	}
	uv_run(loop, UV_RUN_DEFAULT);
	t0 = bench_now_ns() - t0;
	for (size_t i = 0; i < n; i++)
		if (s[i].fired != 1)
			bench_die("timer %zu fired %u times", i, s[i].fired);
	return t0;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? (size_t)bench_count(argv[1], "tasks") : 100000;
	long rss0 = bench_peak_rss_kib(), rss1;
	struct sleeper *s;
	uv_loop_t *loop;
	double cold, warm;
	uint64_t early_cold;
	char wl[32];

	bench_prog = "urt-bench-uv-sleepers";
	/* Allocated, not touched: the cold run pays the first touches, as
	 * urt's and the raw floor's do. */
	s = calloc(n, sizeof(*s));
	if (!s)
		bench_die("out of memory");
	loop = uv_default_loop();
	/* The loop's cached clock was read at its creation; a program that
	 * starts timers before uv_run refreshes it first. */
	uv_update_time(loop);
	cold = (double)fan_out(loop, s, n, 1) / 1e6;
	rss1 = bench_peak_rss_kib();
	early_cold = early;
	uv_update_time(loop);
	warm = (double)fan_out(loop, s, n, 0) / 1e6;
	for (size_t i = 0; i < n; i++)
		uv_close((uv_handle_t *)&s[i].t, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	printf("libuv %s: %zu timers x 10 ms: cold %.1f ms, warm %.1f ms; peak RSS %ld KiB "
	       "(%.2f KiB per timer over the %ld KiB before); fired before 10 ms of their own: "
	       "%llu cold, %llu warm\n",
	       uv_version_string(), n, cold, warm, rss1, (double)(rss1 - rss0) / (double)n, rss0,
	       (unsigned long long)early_cold, (unsigned long long)(early - early_cold));
	snprintf(wl, sizeof(wl), "W1.%zu", n);
	bench_result(wl, "libuv", "cold_ms", cold);
	bench_result(wl, "libuv", "warm_ms", warm);
	bench_result(wl, "libuv", "peak_rss_kib", (double)rss1);
	bench_result(wl, "libuv", "kib_per_task", (double)(rss1 - rss0) / (double)n);
	if (uv_loop_close(loop))
		bench_die("uv_loop_close: handles left");
	free(s);
	return 0;
}
