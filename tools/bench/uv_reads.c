/*
 * W4 on libuv: 32 uv_fs_read requests in flight, 4 KiB each at random
 * aligned offsets of a page-cached file, N reads in all; IOPS. Slot i draws
 * its offsets as urt-bench-reads' task i does; each read's length and block
 * index are checked. libuv 1.44 (Debian 12) runs file reads on its thread
 * pool, left at its default size (4 threads, or UV_THREADPOOL_SIZE).
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "bench_util.h"

#define MAX_INFLIGHT 1024u

struct slot {
	uv_fs_t req;
	uint64_t left;
	uint64_t seed;
	uint64_t block;
	char buf[BENCH_BLOCK];
};

struct state {
	uv_loop_t *loop;
	int fd;
	uint64_t blocks;
	uint64_t done;
};

static struct state st;

static void on_read(uv_fs_t *req);

static void issue(struct slot *s)
{
	uv_buf_t b = uv_buf_init(s->buf, BENCH_BLOCK);
	int ret;

	s->block = bench_rand(&s->seed) % st.blocks;
	s->left--;
	ret = uv_fs_read(st.loop, &s->req, st.fd, &b, 1, (int64_t)(s->block * BENCH_BLOCK),
			 on_read);
	if (ret < 0)
		bench_die("uv_fs_read: %s", uv_strerror(ret));
}

static void on_read(uv_fs_t *req)
{
	struct slot *s = (struct slot *)req;	/* req is the first member */
	ssize_t res = req->result;

	uv_fs_req_cleanup(req);
	if (res != (ssize_t)BENCH_BLOCK)
		bench_die("read of block %llu: %s", (unsigned long long)s->block,
			  res < 0 ? uv_strerror((int)res) : "short");
	if (!bench_block_ok(s->buf, s->block))
		bench_die("block %llu came back without its index", (unsigned long long)s->block);
	st.done++;
	if (s->left)
		issue(s);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "file-mib", required_argument, NULL, 'm' },
		{ "reads", required_argument, NULL, 'n' },
		{ "inflight", required_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = "urt-bench-w4.dat";
	uint64_t mib = 256, reads = 1000000, t0, ns;
	unsigned q = 32;
	struct slot *slots;
	int c;

	bench_prog = "urt-bench-uv-reads";
	while ((c = getopt_long(argc, argv, "f:m:n:q:", lo, NULL)) != -1) {
		switch (c) {
		case 'f':
			file = optarg;
			break;
		case 'm':
			mib = bench_count(optarg, "--file-mib");
			break;
		case 'n':
			reads = bench_count(optarg, "--reads");
			break;
		case 'q':
			q = (unsigned)bench_count(optarg, "--inflight");
			if (q > MAX_INFLIGHT)
				bench_die("--inflight: at most %u", MAX_INFLIGHT);
			break;
		default:
			fprintf(stderr, "usage: urt-bench-uv-reads [--file PATH] [--file-mib M] "
					"[--reads N] [--inflight Q]\n");
			return 2;
		}
	}
	st.blocks = mib * (1 << 20) / BENCH_BLOCK;
	st.fd = bench_open_blocks(file, st.blocks);
	st.loop = uv_default_loop();
	slots = calloc(q, sizeof(*slots));
	if (!slots)
		bench_die("out of memory");
	for (unsigned i = 0; i < q; i++) {
		slots[i].left = reads / q + (i < reads % q);
		slots[i].seed = 0x9e3779b97f4a7c15ull * (i + 1);
	}
	t0 = bench_now_ns();
	for (unsigned i = 0; i < q; i++)
		if (slots[i].left)
			issue(&slots[i]);
	if (uv_run(st.loop, UV_RUN_DEFAULT) < 0)
		bench_die("uv_run failed");
	ns = bench_now_ns() - t0;
	if (st.done != reads)
		bench_die("%llu reads checked, expected %llu", (unsigned long long)st.done,
			  (unsigned long long)reads);
	printf("libuv %s: %llu reads of 4 KiB, %u in flight: %.3f s, %.0f IOPS\n",
	       uv_version_string(), (unsigned long long)reads, q, (double)ns / 1e9,
	       (double)reads * 1e9 / (double)ns);
	bench_result("W4", "libuv", "iops", (double)reads * 1e9 / (double)ns);
	uv_loop_close(st.loop);
	free(slots);
	close(st.fd);
	return 0;
}
