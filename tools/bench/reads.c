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
 * With --loops L (L >= 2), a set of L loops (one per CPU, pinned) each runs
 * Q readers of its own for its share of the reads: QD Q per loop.
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

#include "bench_loop.h"
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

/* One loop's readers, for --loops. */
struct shard {
	struct reader *r;
	unsigned n;
	bool fixed;
	int fd;
	int err;
};

static struct shard *shards;

static int shard_first(void *arg)
{
	struct shard *s = &shards[urt_loop_index(urt_current_loop())];
	int ret = 0;

	(void)arg;
	if (s->fixed) {
		struct iovec iov = { s->r[0].buf, (size_t)s->n * BENCH_BLOCK };

		ret = urt_loop_register_files(urt_current_loop(), &s->fd, 1);
		if (!ret)
			ret = urt_loop_register_buffers(urt_current_loop(), &iov, 1);
	}
	for (unsigned i = 0; !ret && i < s->n; i++)
		ret = urt_spawn(NULL, NULL, reader_task, &s->r[i]);
	s->err = ret;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: urt-bench-reads [--fixed | --pool] [--loops L] [--file PATH]\n"
		"                       [--file-mib M] [--reads N] [--inflight Q]\n"
		"\n"
		"W4 on urt: Q tasks (default 32) each urt_read 4 KiB at random aligned\n"
		"offsets of a page-cached file until N reads (default 1000000) are done.\n"
		"The file (default ./urt-bench-w4.dat, M MiB, default 256; the workload\n"
		"says 1024) is created when missing or of another size, then read once\n"
		"to fill the page cache. --fixed registers the file and the buffers with\n"
		"the ring and reads with urt_read_fixed. --loops L runs Q readers on each\n"
		"of L loops (a set, one per CPU, pinned). --pool makes the loop with\n"
		"URT_LOOP_FILES_ON_POOL: on the epoll backend every read runs on the\n"
		"pool, as libuv's uv_fs_read does.\n");
}

/* Check every reader's result and print the figures. */
static void report(struct reader *r, unsigned n, const struct bench_w4_opts *o, bool fixed,
		   bool pool, unsigned loops, uint64_t ns)
{
	uint64_t total = 0;
	char impl[32];

	for (unsigned i = 0; i < n; i++) {
		if (r[i].err < 0)
			bench_die("reader %u: read of block %llu: %s", i,
				  (unsigned long long)r[i].bad_block, strerror(-r[i].err));
		if (r[i].err)
			bench_die("reader %u: block %llu came back short or without its index",
				  i, (unsigned long long)r[i].bad_block);
		total += r[i].done;
	}
	if (total != o->reads)
		bench_die("%llu reads checked, expected %llu", (unsigned long long)total,
			  (unsigned long long)o->reads);
	snprintf(impl, sizeof(impl), "%s%s", fixed ? "urt-fixed" : pool ? "urt-pool" : "urt",
		 loops > 1 ? (loops == 2 ? "-2loops" : "-loops") : "");
	printf("%s: %llu reads of 4 KiB, %u in flight per loop, %u loop%s, %llu MiB file: "
	       "%.3f s, %.0f IOPS\n",
	       impl, (unsigned long long)o->reads, o->inflight, loops, loops == 1 ? "" : "s",
	       (unsigned long long)o->mib, (double)ns / 1e9, (double)o->reads * 1e9 / (double)ns);
	bench_result("W4", impl, "iops", (double)o->reads * 1e9 / (double)ns);
}

/* --loops: Q readers per loop, the reads split over all of them. */
static int run_loops(const struct bench_w4_opts *o, unsigned loops, bool fixed, int fd,
		     uint64_t blocks)
{
	struct urt_loops_opts lo = { .loops = loops };
	unsigned n = o->inflight * loops;
	struct reader *r = calloc(n, sizeof(*r));
	char *bufs = aligned_alloc(4096, (size_t)n * BENCH_BLOCK);
	urt_loops *set;
	uint64_t t0, ns;
	int ret;

	shards = calloc(loops, sizeof(*shards));
	if (!r || !bufs || !shards)
		bench_die("out of memory");
	for (unsigned i = 0; i < n; i++)
		r[i] = (struct reader){
			.fd = fd,
			.fixed = fixed,
			.buf = bufs + (size_t)i * BENCH_BLOCK,
			.blocks = blocks,
			.reads = o->reads / n + (i < o->reads % n),
			.seed = 0x9e3779b97f4a7c15ull * (i + 1),
		};
	for (unsigned l = 0; l < loops; l++)
		shards[l] = (struct shard){ r + l * o->inflight, o->inflight, fixed, fd, 0 };
	ret = urt_loops_create(&set, &lo);
	if (ret)
		bench_die("urt_loops_create: %s", strerror(-ret));
	t0 = bench_now_ns();
	ret = urt_loops_run(set, shard_first, NULL);
	ns = bench_now_ns() - t0;
	if (ret)
		bench_die("urt_loops_run: %s", strerror(ret < 0 ? -ret : ret));
	for (unsigned l = 0; l < loops; l++)
		if (shards[l].err)
			bench_die("loop %u: %s", l, strerror(-shards[l].err));
	urt_loops_destroy(set);
	close(fd);
	report(r, n, o, fixed, false, loops, ns);
	free(r);
	free(bufs);
	free(shards);
	return 0;
}

int main(int argc, char **argv)
{
	static struct reader r[MAX_INFLIGHT];
	static char bufs[MAX_INFLIGHT][BENCH_BLOCK] __attribute__((aligned(4096)));
	struct bench_w4_opts o;
	bool fixed = false, pool = false;
	unsigned loops = 1;
	uint64_t blocks, t0, ns;
	urt_loop *loop;
	int fd, ret;

	bench_prog = "urt-bench-reads";
	/* --fixed, --pool and --loops are ours; the rest are W4's common
	 * options. */
	for (;;) {
		if (argc > 1 && (!strcmp(argv[1], "--fixed") || !strcmp(argv[1], "--pool"))) {
			*(argv[1][2] == 'f' ? &fixed : &pool) = true;
			argv[1] = argv[0];
			argv++;
			argc--;
		} else if (argc > 2 && !strcmp(argv[1], "--loops")) {
			loops = (unsigned)bench_count_max(argv[2], "--loops", 64);
			argv[2] = argv[0];
			argv += 2;
			argc -= 2;
		} else {
			break;
		}
	}
	bench_w4_parse(argc, argv, &o, usage);
	if (pool && (fixed || loops > 1))
		bench_die("--pool goes with neither --fixed nor --loops");
	blocks = o.mib * (1 << 20) / BENCH_BLOCK;
	fd = bench_open_blocks(o.file, blocks);
	if (loops > 1)
		return run_loops(&o, loops, fixed, fd, blocks);
	loop = bench_loop_new_flags(pool ? URT_LOOP_FILES_ON_POOL : 0);
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
	report(r, o.inflight, &o, fixed, pool, 1, ns);
	return 0;
}
