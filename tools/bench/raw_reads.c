/*
 * W4's floors on raw liburing: one thread keeps 32 4 KiB reads in flight at
 * random 4 KiB-aligned offsets of a page-cached file, N reads in all; IOPS.
 * Two variants, each run once per invocation: IORING_OP_READ (what urt_read
 * submits), and IORING_OP_READ_FIXED from registered buffers on a
 * registered file. Slot i draws its offsets exactly as urt-bench-reads'
 * task i does, and every read's length and block index are checked.
 *
 * The ring gets urt's flags (DEFER_TASKRUN and the rest, dropped one by one
 * on -EINVAL), so that urt's ratio to this floor is what the runtime adds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench_util.h"

#define MAX_INFLIGHT BENCH_W4_MAX_INFLIGHT
#define WARMUP 20000u

struct slot {
	uint64_t left;		/* reads still to issue */
	uint64_t seed;
	uint64_t block;		/* of the read in flight */
	char *buf;
};

static const unsigned ring_flags[] = {
	IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_COOP_TASKRUN |
		IORING_SETUP_SUBMIT_ALL,
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_TASKRUN_FLAG |
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
	IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
	IORING_SETUP_SUBMIT_ALL,
	0,
};

static void ring_init(struct io_uring *ring, unsigned entries)
{
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(ring_flags) / sizeof(ring_flags[0]); i++) {
		ret = io_uring_queue_init(entries, ring, ring_flags[i]);
		if (ret == 0) {
			/* As urt: saves an fd lookup per io_uring_enter. */
			(void)io_uring_register_ring_fd(ring);
			return;
		}
		if (ret != -EINVAL)
			break;
	}
	bench_die("io_uring_queue_init: %s", strerror(-ret));
}

static void issue(struct io_uring *ring, struct slot *s, unsigned idx, int fd, bool fixed,
		  uint64_t blocks)
{
	/* The SQ has an entry per slot and every slot has at most one read
	 * in flight, so that an SQE is always free. */
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		bench_die("no free SQE");
	s->block = bench_rand(&s->seed) % blocks;
	if (fixed)
		io_uring_prep_read_fixed(sqe, 0, s->buf, BENCH_BLOCK, s->block * BENCH_BLOCK,
					 (int)idx);
	else
		io_uring_prep_read(sqe, fd, s->buf, BENCH_BLOCK, s->block * BENCH_BLOCK);
	if (fixed)
		sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, idx);
	s->left--;
}

/* n reads through q slots; returns ns. Every CQE is checked. */
static uint64_t run(int fd, uint64_t blocks, uint64_t n, unsigned q, bool fixed, char *bufs)
{
	static struct slot slots[MAX_INFLIGHT];
	struct io_uring ring;
	struct iovec iov[MAX_INFLIGHT];
	uint64_t done = 0, t0, ns;
	int ret;

	ring_init(&ring, q);
	for (unsigned i = 0; i < q; i++) {
		slots[i] = (struct slot){
			.left = n / q + (i < n % q),
			.seed = 0x9e3779b97f4a7c15ull * (i + 1),
			.buf = bufs + (size_t)i * BENCH_BLOCK,
		};
		iov[i] = (struct iovec){ slots[i].buf, BENCH_BLOCK };
	}
	if (fixed) {
		ret = io_uring_register_buffers(&ring, iov, q);
		if (ret < 0)
			bench_die("io_uring_register_buffers: %s", strerror(-ret));
		ret = io_uring_register_files(&ring, &fd, 1);
		if (ret < 0)
			bench_die("io_uring_register_files: %s", strerror(-ret));
	}
	t0 = bench_now_ns();
	for (unsigned i = 0; i < q; i++)
		if (slots[i].left)
			issue(&ring, &slots[i], i, fd, fixed, blocks);
	while (done < n) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret < 0 && ret != -EINTR)
			bench_die("io_uring_submit_and_wait: %s", strerror(-ret));
		io_uring_for_each_cqe(&ring, head, cqe) {
			uint64_t idx = io_uring_cqe_get_data64(cqe);
			struct slot *s;

			if (idx >= q)
				bench_die("a CQE for no slot (%llu)", (unsigned long long)idx);
			s = &slots[idx];
			if (cqe->res != (int)BENCH_BLOCK)
				bench_die("read of block %llu: %s", (unsigned long long)s->block,
					  cqe->res < 0 ? strerror(-cqe->res) : "short");
			if (!bench_block_ok(s->buf, s->block))
				bench_die("block %llu came back without its index",
					  (unsigned long long)s->block);
			done++;
			seen++;
			if (s->left)
				issue(&ring, s, (unsigned)idx, fd, fixed, blocks);
		}
		io_uring_cq_advance(&ring, seen);
	}
	ns = bench_now_ns() - t0;
	io_uring_queue_exit(&ring);
	return ns;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: urt-bench-raw-reads [--file PATH] [--file-mib M] [--reads N] [--inflight Q]\n"
		"\n"
		"W4 floors on raw liburing: IORING_OP_READ, and READ_FIXED on a registered\n"
		"file and buffers, Q (default 32) in flight, N reads (default 1000000) each,\n"
		"at random aligned offsets of the file (as urt-bench-reads: default\n"
		"./urt-bench-w4.dat, M MiB, default 256).\n");
}

int main(int argc, char **argv)
{
	static const char *const names[2] = { "raw-read", "raw-read-fixed" };
	struct bench_w4_opts o;
	uint64_t blocks;
	char *bufs;
	int fd;

	bench_prog = "urt-bench-raw-reads";
	bench_w4_parse(argc, argv, &o, usage);
	blocks = o.mib * (1 << 20) / BENCH_BLOCK;
	fd = bench_open_blocks(o.file, blocks);
	if (posix_memalign((void **)&bufs, 4096, (size_t)o.inflight * BENCH_BLOCK))
		bench_die("out of memory");
	for (int fixed = 0; fixed < 2; fixed++) {
		uint64_t ns;

		/* A short untimed pass first, so that neither variant pays for
		 * the first touches of the buffers or the ring. */
		run(fd, blocks, WARMUP, o.inflight, fixed, bufs);
		ns = run(fd, blocks, o.reads, o.inflight, fixed, bufs);
		printf("%s: %llu reads of 4 KiB, %u in flight: %.3f s, %.0f IOPS\n", names[fixed],
		       (unsigned long long)o.reads, o.inflight, (double)ns / 1e9,
		       (double)o.reads * 1e9 / (double)ns);
		bench_result("W4", names[fixed], "iops", (double)o.reads * 1e9 / (double)ns);
	}
	free(bufs);
	close(fd);
	return 0;
}
