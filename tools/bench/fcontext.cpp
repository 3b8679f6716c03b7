/*
 * W6's peer: boost.context's fcontext, the bare stack switch under
 * Boost.Context and Boost.Coroutine2. Two contexts (main and one made with
 * make_fcontext) ping-pong with jump_fcontext N times (default 10,000,000,
 * as urt-bench-yield's two tasks do); ns per switch, where a switch is one
 * jump_fcontext: one save of callee-saved registers and stack pointer, one
 * restore. urt's figure is per urt_yield, which is two such switches
 * (task to loop, loop to next task) plus the run queue.
 *
 * Each side counts its turns and checks that the other ran in between.
 */
#include <boost/context/detail/fcontext.hpp>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sys/mman.h>

namespace fc = boost::context::detail;

struct pingpong {
	long turn;	// incremented by each side in turn: main even, peer odd
	bool bad;
};

static void peer(fc::transfer_t t)
{
	pingpong *pp = static_cast<pingpong *>(t.data);

	for (;;) {
		if (pp->turn % 2 != 1)
			pp->bad = true;
		pp->turn++;
		t = fc::jump_fcontext(t.fctx, pp);
	}
}

static double now_ns()
{
	timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 10000000;
	const std::size_t stack = 64 << 10;	// urt's default stack size
	pingpong pp = { 0, false };

	if (rounds <= 0) {
		std::fprintf(stderr, "usage: urt-bench-fcontext [rounds]\n");
		return 2;
	}
	void *mem = mmap(nullptr, stack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	if (mem == MAP_FAILED)
		return 1;
	// make_fcontext takes the top of the stack: it grows down.
	fc::fcontext_t ctx = fc::make_fcontext(static_cast<char *>(mem) + stack, stack, peer);
	// The first jump starts the peer; untimed, as urt's tasks start first.
	pp.turn = 1;
	fc::transfer_t t = fc::jump_fcontext(ctx, &pp);
	double t0 = now_ns();
	for (long i = 0; i < rounds; i++) {
		if (pp.turn % 2 != 0)
			pp.bad = true;
		pp.turn++;
		t = fc::jump_fcontext(t.fctx, &pp);
	}
	double ns = now_ns() - t0;
	if (pp.bad || pp.turn != 2 * rounds + 2) {
		std::fprintf(stderr, "urt-bench-fcontext: error: the ping-pong went wrong\n");
		return 1;
	}
	std::printf("boost.context jump_fcontext: %ld switches: %.2f ns per switch\n", 2 * rounds,
		    ns / (double)(2 * rounds));
	std::printf("result W6 boost-fcontext ns_per_switch %.6g\n", ns / (double)(2 * rounds));
	munmap(mem, stack);
	return 0;
}
