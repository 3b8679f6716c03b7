/* A loop for urt's benchmark programs (a header of its own: the peers'
 * programs share bench_util without linking urt). */
#ifndef URT_BENCH_LOOP_H
#define URT_BENCH_LOOP_H

#include <stdlib.h>
#include <string.h>

#include <urt.h>

#include "bench_util.h"

/* A loop with flags and, with URT_BENCH_METRICS=1 in the environment,
 * URT_LOOP_METRICS and a 10 ms lag monitor, to measure what watching a loop
 * costs. Exits on failure. */
static inline urt_loop *bench_loop_new_flags(unsigned flags)
{
	const char *env = getenv("URT_BENCH_METRICS");
	int watch = env && !strcmp(env, "1");
	struct urt_loop_opts o = { .flags = flags | (watch ? URT_LOOP_METRICS : 0) };
	urt_loop *loop;
	int ret = urt_loop_create(&loop, &o);

	if (ret < 0)
		bench_die("urt_loop_create: %s", strerror(-ret));
	if (watch) {
		ret = urt_lag_monitor_start(loop, 10000000);
		if (ret < 0)
			bench_die("urt_lag_monitor_start: %s", strerror(-ret));
	}
	return loop;
}

static inline urt_loop *bench_loop_new(void)
{
	return bench_loop_new_flags(0);
}

#endif
