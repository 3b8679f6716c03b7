/*
 * W1's floors on raw liburing, for N sleepers of 10 ms each:
 *
 *  - the timer floor: N plain structs in a binary min-heap of absolute
 *    deadlines, one IORING_OP_TIMEOUT with IORING_TIMEOUT_ABS armed for the
 *    earliest, re-armed for the next after each expiry; wall ms from the
 *    first "spawn" (a clock read and a heap push, as a task's sleep does) to
 *    the last wake, cold (first fan-out in the process) and warm (again,
 *    same memory);
 *  - the fault floor: the time to fault in one fresh page per sleeper,
 *    which any design with a stack of its own per task pays once: one
 *    mapping of N pages touched page by page (THP off for it), and, to show
 *    what separate mappings add, N mappings of 64 KiB (urt's default stack)
 *    each touched at its top.
 *
 * Every sleeper is checked to wake once, never before its deadline.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "bench_util.h"

#define SLEEP_NS (10 * BENCH_MS)
#define STACK_BYTES (64u << 10)

struct sleeper {
	uint64_t start;
	uint64_t deadline;
	bool woke;
};

struct heap {
	struct sleeper **v;
	size_t n;
};

static void heap_push(struct heap *h, struct sleeper *s)
{
	size_t i = h->n++;

	while (i) {
		size_t up = (i - 1) / 2;

		if (h->v[up]->deadline <= s->deadline)
			break;
		h->v[i] = h->v[up];
		i = up;
	}
	h->v[i] = s;
}

static struct sleeper *heap_pop(struct heap *h)
{
	struct sleeper *top = h->v[0], *last = h->v[--h->n];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1]->deadline < h->v[c]->deadline)
			c++;
		if (last->deadline <= h->v[c]->deadline)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

/* The kernel reads the timespec when it takes the SQE: it need only live
 * until the submit, but one static copy is simplest. */
static struct __kernel_timespec armed_ts;

static void arm(struct io_uring *ring, uint64_t deadline)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		bench_die("no free SQE");
	armed_ts.tv_sec = (long long)(deadline / 1000000000u);
	armed_ts.tv_nsec = (long long)(deadline % 1000000000u);
	io_uring_prep_timeout(sqe, &armed_ts, 0, IORING_TIMEOUT_ABS);
	io_uring_sqe_set_data64(sqe, 1);
}

/* One fan-out of n sleepers; returns wall ns from the first spawn to the
 * last wake. */
static uint64_t heap_fan_out(struct io_uring *ring, struct sleeper *s, struct heap *h, size_t n)
{
	uint64_t t0 = bench_now_ns(), now = t0;
	size_t woke = 0;
	bool armed = false;

	for (size_t i = 0; i < n; i++) {
		s[i].start = bench_now_ns();
		s[i].deadline = s[i].start + SLEEP_NS;
		s[i].woke = false;
		heap_push(h, &s[i]);
		/* Deadlines only grow here, so that this arms once; a nearer
		 * deadline would need IORING_TIMEOUT_UPDATE, as urt does. */
		if (!armed) {
			arm(ring, h->v[0]->deadline);
			armed = true;
		}
	}
	while (woke < n) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int ret = io_uring_submit_and_wait(ring, 1);

		if (ret < 0 && ret != -EINTR)
			bench_die("io_uring_submit_and_wait: %s", strerror(-ret));
		io_uring_for_each_cqe(ring, head, cqe) {
			if (io_uring_cqe_get_data64(cqe) != 1 || cqe->res != -ETIME)
				bench_die("timeout CQE: %s", strerror(-cqe->res));
			armed = false;
			seen++;
		}
		io_uring_cq_advance(ring, seen);
		if (armed)
			continue;
		/* Wake only what the clock says is due: never early. */
		now = bench_now_ns();
		while (h->n && h->v[0]->deadline <= now) {
			struct sleeper *x = heap_pop(h);

			if (x->woke || now - x->start < SLEEP_NS)
				bench_die("sleeper %zu woke twice or early", (size_t)(x - s));
			x->woke = true;
			woke++;
		}
		if (h->n) {
			arm(ring, h->v[0]->deadline);
			armed = true;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (!s[i].woke)
			bench_die("sleeper %zu never woke", i);
	return now - t0;
}

static void *map_fresh(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		bench_die("mmap of %zu bytes: %s", len, strerror(errno));
	return p;
}

/* One mapping of n pages, each touched once: the pure fault cost. */
static uint64_t fault_floor(size_t n)
{
	size_t len = n * 4096;
	volatile char *p = map_fresh(len);
	uint64_t t0, ns;

	/* Huge pages would fault 512 pages at once, which no stack gets. */
	(void)madvise((void *)p, len, MADV_NOHUGEPAGE);
	t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++)
		p[i * 4096] = 1;
	ns = bench_now_ns() - t0;
	for (size_t i = 0; i < n; i++)
		if (p[i * 4096] != 1)
			bench_die("page %zu lost its write", i);
	munmap((void *)p, len);
	return ns;
}

/* n mappings of a stack's size, each touched at its top. */
static uint64_t mmap_fault_floor(size_t n)
{
	char **maps = calloc(n, sizeof(*maps));
	uint64_t t0, ns;

	if (!maps)
		bench_die("out of memory");
	t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++) {
		maps[i] = map_fresh(STACK_BYTES);
		maps[i][STACK_BYTES - 64] = 1;
	}
	ns = bench_now_ns() - t0;
	for (size_t i = 0; i < n; i++) {
		if (maps[i][STACK_BYTES - 64] != 1)
			bench_die("mapping %zu lost its write", i);
		munmap(maps[i], STACK_BYTES);
	}
	free(maps);
	return ns;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? (size_t)bench_count(argv[1], "tasks") : 100000;
	struct io_uring ring;
	struct sleeper *s;
	struct heap h;
	char wl[32];
	double cold, warm, fault, mfault;
	int ret;

	bench_prog = "urt-bench-raw-sleepers";
	if (argc > 2) {
		fprintf(stderr, "usage: urt-bench-raw-sleepers [sleepers]\n");
		return 2;
	}
	/* Allocated, not touched, as urt-bench-sleepers does with its array:
	 * first touches belong to the cold run. */
	s = calloc(n, sizeof(*s));
	h.v = calloc(n, sizeof(*h.v));
	h.n = 0;
	if (!s || !h.v)
		bench_die("out of memory");
	ret = io_uring_queue_init(8, &ring, 0);
	if (ret < 0)
		bench_die("io_uring_queue_init: %s", strerror(-ret));
	cold = (double)heap_fan_out(&ring, s, &h, n) / 1e6;
	warm = (double)heap_fan_out(&ring, s, &h, n) / 1e6;
	io_uring_queue_exit(&ring);
	fault = (double)fault_floor(n) / 1e6;
	mfault = (double)mmap_fault_floor(n) / 1e6;
	printf("%zu sleepers x 10 ms, heap + one absolute timeout: cold %.1f ms, warm %.1f ms;\n"
	       "fault floor: one page each %.1f ms (one mapping), %.1f ms (a 64 KiB mapping each)\n",
	       n, cold, warm, fault, mfault);
	snprintf(wl, sizeof(wl), "W1.%zu", n);
	bench_result(wl, "raw-heap", "cold_ms", cold);
	bench_result(wl, "raw-heap", "warm_ms", warm);
	bench_result(wl, "raw-fault", "ms", fault);
	bench_result(wl, "raw-mmap-fault", "ms", mfault);
	free(h.v);
	free(s);
	return 0;
}
