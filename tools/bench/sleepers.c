/* W1: N tasks each sleep 10 ms once, spawned back to back; cold (the first
 * fan-out in a fresh process) and warm (the same fan-out again on the same
 * loop, stacks reused). Prints wall time from first spawn to last finish and
 * peak RSS; checks that every task woke, none before its deadline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <urt.h>

#define SLEEP_NS 10000000ull

struct sleeper {
	uint64_t start;
	int ok;
};

static int sleep_once(void *arg)
{
	struct sleeper *s = arg;

	if (urt_sleep_ns(SLEEP_NS) == 0 && urt_now_ns() - s->start >= SLEEP_NS)
		s->ok = 1;
	return 0;
}

static long peak_rss_kib(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static int fan_out(urt_loop *loop, struct sleeper *s, long n, double *ms)
{
	uint64_t t0 = urt_now_ns();
	int ret;

	for (long i = 0; i < n; i++) {
		s[i].start = urt_now_ns();
		s[i].ok = 0;
		ret = urt_spawn(loop, NULL, sleep_once, &s[i]);
		if (ret < 0) {
			fprintf(stderr, "spawn %ld: %s\n", i, strerror(-ret));
			return ret;
		}
	}
	ret = urt_loop_run(loop);
	*ms = (double)(urt_now_ns() - t0) / 1e6;
	if (ret < 0)
		return ret;
	for (long i = 0; i < n; i++)
		if (!s[i].ok) {
			fprintf(stderr, "task %ld did not sleep its 10 ms\n", i);
			return -1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
	size_t stack = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 0;
	struct urt_loop_opts o = { .stack_size = stack };
	long rss0 = peak_rss_kib(), rss1;
	struct sleeper *s;
	double cold, warm;
	uint64_t t0;
	urt_loop *loop;
	int ret;

	if (n <= 0 || n > 100000000) {
		fprintf(stderr, "usage: urt-bench-sleepers [tasks] [stack bytes]\n");
		return 2;
	}
	s = calloc((size_t)n, sizeof(*s));
	if (!s)
		return 1;
	ret = urt_loop_create(&loop, &o);
	if (ret < 0) {
		fprintf(stderr, "urt_loop_create: %s\n", strerror(-ret));
		return 1;
	}
	if (fan_out(loop, s, n, &cold))
		return 1;
	rss1 = peak_rss_kib();
	if (fan_out(loop, s, n, &warm))
		return 1;
	printf("%ld tasks x one 10 ms sleep: cold %.1f ms, warm %.1f ms; peak RSS %ld KiB "
	       "(%.2f KiB per task over the %ld KiB before)\n",
	       n, cold, warm, rss1, (double)(rss1 - rss0) / (double)n, rss0);
	t0 = urt_now_ns();
	urt_loop_destroy(loop); /* unmaps the n stacks the loop kept */
	printf("loop destroyed in %.1f ms\n", (double)(urt_now_ns() - t0) / 1e6);
	free(s);
	return 0;
}
