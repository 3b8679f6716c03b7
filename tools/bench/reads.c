/*
 * W4 on urt: 4 KiB reads at random 4 KiB-aligned offsets of a page-cached
 * file, 32 in flight (32 tasks, each calling urt_read in a loop), N reads in
 * all; IOPS. Every block starts with its index as a little-endian u64, and
 * every read is checked for its length and that index.
 *
 * With --fixed, the file and the readers' buffers are registered with the
 * loop's ring and every read is urt_read_fixed (IORING_OP_READ_FIXED on a
 * fixed file): the counterpart of the raw READ_FIXED floor.
 *
 * The workload's file is 1 GiB; the default here is 256 MiB so that the
 * whole suite stays short (random reads of a page-cached file cost the same
 * per read at either size as long as it fits in memory; --file-mib 1024 runs
 * the workload as written).
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <urt.h>

#include "bench_util.h"

#define MAX_INFLIGHT BENCH_W4_MAX_INFLIGHT

struct reader {
	int fd;
	bool fixed;		/* fd is fixed file 0; buf lies in fixed buffer 0 */
	char *buf;		/* BENCH_BLOCK bytes */
	uint64_t blocks;	/* in the file */
	uint64_t reads;		/* this reader's share */
	uint64_t seed;
	uint64_t done;
	int err;		/* negative errno, or 1: wrong content */
	uint64_t bad_block;
};

static int reader_task(void *arg)
{
	struct reader *r = arg;
	char *buf = r->buf;

	for (uint64_t i = 0; i < r->reads; i++) {
		uint64_t b = bench_rand(&r->seed) % r->blocks;
		int64_t off = (int64_t)(b * BENCH_BLOCK);
		ssize_t n = r->fixed ? urt_read_fixed(0, buf, BENCH_BLOCK, off, 0, URT_FIXED_FILE)
				     : urt_read(r->fd, buf, BENCH_BLOCK, off);

		if (n != (ssize_t)BENCH_BLOCK) {
			r->err = n < 0 ? (int)n : 1;
			r->bad_block = b;
			return 0;
		}
		if (!bench_block_ok(buf, b)) {
			r->err = 1;
			r->bad_block = b;
			return 0;
		}
		r->done++;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: urt-bench-reads [--fixed] [--file PATH] [--file-mib M] [--reads N]\n"
		"                       [--inflight Q]\n"
		"\n"
		"W4 on urt: Q tasks (default 32) each urt_read 4 KiB at random aligned\n"
		"offsets of a page-cached file until N reads (default 1000000) are done.\n"
		"The file (default ./urt-bench-w4.dat, M MiB, default 256; the workload\n"
		"says 1024) is created when missing or of another size, then read once\n"
		"to fill the page cache. --fixed registers the file and the buffers with\n"
		"the ring and reads with urt_read_fixed.\n");
}

int main(int argc, char **argv)
{
	static struct reader r[MAX_INFLIGHT];
	static char bufs[MAX_INFLIGHT][BENCH_BLOCK] __attribute__((aligned(4096)));
	struct bench_w4_opts o;
	bool fixed = false;
	uint64_t blocks, t0, ns, total = 0;
	urt_loop *loop;
	int fd, ret;

	bench_prog = "urt-bench-reads";
	/* --fixed is ours; the rest are W4's common options. */
	if (argc > 1 && !strcmp(argv[1], "--fixed")) {
		fixed = true;
		argv[1] = argv[0];
		argv++;
		argc--;
	}
	bench_w4_parse(argc, argv, &o, usage);
	blocks = o.mib * (1 << 20) / BENCH_BLOCK;
	fd = bench_open_blocks(o.file, blocks);
	ret = urt_loop_create(&loop, NULL);
	if (ret < 0)
		bench_die("urt_loop_create: %s", strerror(-ret));
	if (fixed) {
		struct iovec iov = { bufs, sizeof(bufs) };

		ret = urt_loop_register_files(loop, &fd, 1);
		if (!ret)
			ret = urt_loop_register_buffers(loop, &iov, 1);
		if (ret < 0)
			bench_die("registering the file and buffers: %s", strerror(-ret));
	}
	for (unsigned i = 0; i < o.inflight; i++) {
		r[i] = (struct reader){
			.fd = fd,
			.fixed = fixed,
			.buf = bufs[i],
			.blocks = blocks,
			.reads = o.reads / o.inflight + (i < o.reads % o.inflight),
			.seed = 0x9e3779b97f4a7c15ull * (i + 1),
		};
		ret = urt_spawn(loop, NULL, reader_task, &r[i]);
		if (ret < 0)
			bench_die("urt_spawn: %s", strerror(-ret));
	}
	t0 = bench_now_ns();
	ret = urt_loop_run(loop);
	ns = bench_now_ns() - t0;
	if (ret < 0)
		bench_die("urt_loop_run: %s", strerror(-ret));
	urt_loop_destroy(loop);
	close(fd);
	for (unsigned i = 0; i < o.inflight; i++) {
		if (r[i].err < 0)
			bench_die("reader %u: read of block %llu: %s", i,
				  (unsigned long long)r[i].bad_block, strerror(-r[i].err));
		if (r[i].err)
			bench_die("reader %u: block %llu came back short or without its index",
				  i, (unsigned long long)r[i].bad_block);
		total += r[i].done;
	}
	if (total != o.reads)
		bench_die("%llu reads checked, expected %llu", (unsigned long long)total,
			  (unsigned long long)o.reads);
	printf("%s: %llu reads of 4 KiB, %u in flight, %llu MiB file: %.3f s, %.0f IOPS\n",
	       fixed ? "urt-fixed" : "urt", (unsigned long long)o.reads, o.inflight,
	       (unsigned long long)o.mib, (double)ns / 1e9, (double)o.reads * 1e9 / (double)ns);
	bench_result("W4", fixed ? "urt-fixed" : "urt", "iops", (double)o.reads * 1e9 / (double)ns);
	return 0;
}
