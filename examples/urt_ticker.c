/* urt_ticker: many tasks sleeping at once. N tasks (default 10,000) each
 * sleep a random 1-100 ms, T times; the loop keeps all of them in one heap
 * under a single armed kernel timeout. Prints how late the wake-ups were. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <urt.h>

struct ticker {
	unsigned seed;
	int ticks;
	uint64_t late_max_ns;
	uint64_t late_sum_ns;
};

static int tick(void *arg)
{
	struct ticker *t = arg;

	for (int i = 0; i < t->ticks; i++) {
		uint64_t ns = (1 + (uint64_t)(rand_r(&t->seed) % 100)) * 1000000u;
		uint64_t start = urt_now_ns(), late;
		int ret = urt_sleep_ns(ns);

		if (ret < 0)
			return ret;
		late = urt_now_ns() - start - ns; /* never negative: no early wake */
		t->late_sum_ns += late;
		if (late > t->late_max_ns)
			t->late_max_ns = late;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
	long ticks = argc > 2 ? strtol(argv[2], NULL, 10) : 5;
	struct ticker *tk;
	urt_loop *loop;
	uint64_t start, max = 0, sum = 0;
	int ret;

	if (n <= 0 || ticks <= 0 || n > 10000000 || ticks > 1000000) {
		fprintf(stderr, "usage: urt_ticker [tasks (1..10000000)] [ticks per task]\n");
		return 2;
	}
	tk = calloc((size_t)n, sizeof(*tk));
	if (!tk)
		return 1;
	ret = urt_loop_create(&loop, NULL);
	if (ret < 0) {
		fprintf(stderr, "urt_ticker: urt_loop_create: %s\n", strerror(-ret));
		return 1;
	}
	start = urt_now_ns();
	for (long i = 0; i < n; i++) {
		tk[i].seed = (unsigned)i + 1;
		tk[i].ticks = (int)ticks;
		ret = urt_spawn(loop, NULL, tick, &tk[i]);
		if (ret < 0) {
			fprintf(stderr, "urt_ticker: spawn %ld: %s\n", i, strerror(-ret));
			return 1;
		}
	}
	ret = urt_loop_run(loop);
	if (ret < 0)
		fprintf(stderr, "urt_ticker: run: %s\n", strerror(-ret));
	for (long i = 0; i < n; i++) {
		sum += tk[i].late_sum_ns;
		if (tk[i].late_max_ns > max)
			max = tk[i].late_max_ns;
	}
	printf("%ld tasks x %ld sleeps of 1-100 ms: %.1f ms wall, wake-up lateness mean %.1f us, max %.1f us\n",
	       n, ticks, (double)(urt_now_ns() - start) / 1e6,
	       (double)sum / (double)(n * ticks) / 1e3, (double)max / 1e3);
	urt_loop_destroy(loop);
	free(tk);
	return ret < 0 ? 1 : 0;
}
