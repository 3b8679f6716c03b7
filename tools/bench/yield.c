/* W6: two tasks ping-pong with urt_yield; ns per switch. Each task counts
 * its turns and checks that the other ran in between. */
#include <stdio.h>
#include <stdlib.h>

#include <urt.h>

#include "bench_loop.h"

struct pp {
	long rounds;
	long turn;      /* whose turn: incremented by each task in order */
	int bad;
};

struct side {
	struct pp *pp;
	long parity;
};

static int player(void *arg)
{
	struct side *s = arg;
	struct pp *pp = s->pp;

	for (long i = 0; i < pp->rounds; i++) {
		if (pp->turn % 2 != s->parity)
			pp->bad = 1;
		pp->turn++;
		urt_yield();
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct pp pp = { .rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 10000000 };
	struct side a = { &pp, 0 }, b = { &pp, 1 };
	urt_loop *loop;
	uint64_t t0;
	double ns;

	if (pp.rounds <= 0)
		return 2;
	loop = bench_loop_new();
	urt_spawn(loop, NULL, player, &a);
	urt_spawn(loop, NULL, player, &b);
	t0 = urt_now_ns();
	if (urt_loop_run(loop) < 0 || pp.bad || pp.turn != 2 * pp.rounds) {
		fprintf(stderr, "ping-pong went wrong\n");
		return 1;
	}
	ns = (double)(urt_now_ns() - t0) / (double)(2 * pp.rounds);
	printf("%ld yields: %.1f ns per switch\n", 2 * pp.rounds, ns);
	bench_result("W6", "urt", "ns_per_switch", ns);
	urt_loop_destroy(loop);
	return 0;
}
