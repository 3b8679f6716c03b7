/*
 * W2 and W3 on libuv's thread pool (uv_queue_work), one per process since
 * the pool's size is fixed at its first use:
 *
 *  rt N [NAME]  W2: N no-op jobs one at a time after 1,000 warm-up, 1 pool
 *         thread; round trip ns from uv_queue_work to its after-work
 *         callback on the loop, p50/p90/p99, reported as workload NAME
 *         (default W2; run.sh says W2.1cpu when it pins the process);
 *  tp N   W3: N no-op jobs, 64 in flight, 2 pool threads; jobs per second.
 *
 * Unpinned, as urt-bench-offload's "unpinned" rows. Every job writes an
 * answer computed from its input, checked on the loop; counts and input sums
 * must match exactly.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bench_util.h"

#define WARMUP 1000u
#define TP_INFLIGHT 64u

struct job {
	uv_work_t req;
	uint64_t in, out;
	uint64_t t0;
};

static struct {
	uv_loop_t *loop;
	uint64_t next, total, done, sum;
	uint64_t *lat;		/* rt: per measured job */
} st;

static uint64_t answer(uint64_t in)
{
	return (in * 0x9e3779b97f4a7c15ull) ^ 0x7572742162656e63ull;
}

static void work(uv_work_t *req)
{
	struct job *j = (struct job *)req;	/* req is the first member */

	j->out = answer(j->in);
}

static void after(uv_work_t *req, int status);

static void submit(struct job *j)
{
	int ret;

	j->in = st.next++;
	j->out = 0;
	j->t0 = bench_now_ns();
	ret = uv_queue_work(st.loop, &j->req, work, after);
	if (ret < 0)
		bench_die("uv_queue_work: %s", uv_strerror(ret));
}

static void after(uv_work_t *req, int status)
{
	struct job *j = (struct job *)req;
	uint64_t ns = bench_now_ns() - j->t0;

	if (status < 0 || j->out != answer(j->in))
		bench_die("job %llu came back without its answer (%s)",
			  (unsigned long long)j->in, status < 0 ? uv_strerror(status) : "no error");
	if (st.lat && j->in >= WARMUP)
		st.lat[j->in - WARMUP] = ns;
	st.done++;
	st.sum += j->in;
	if (st.next < st.total)
		submit(j);
}

int main(int argc, char **argv)
{
	int rt = (argc == 3 || argc == 4) && !strcmp(argv[1], "rt");
	const char *wl = argc == 4 ? argv[3] : "W2";
	uint64_t n, t0, ns;
	struct job *jobs;
	unsigned inflight;

	bench_prog = "urt-bench-uv-offload";
	if (!rt && (argc != 3 || strcmp(argv[1], "tp"))) {
		fprintf(stderr, "usage: urt-bench-uv-offload rt JOBS [WORKLOAD] | tp JOBS\n");
		return 2;
	}
	n = bench_count(argv[2], "jobs");
	/* Read by libuv when its pool starts, at the first uv_queue_work. */
	if (setenv("UV_THREADPOOL_SIZE", rt ? "1" : "2", 1))
		bench_die("setenv failed");
	st.loop = uv_default_loop();
	st.total = rt ? WARMUP + n : n;
	inflight = rt ? 1 : TP_INFLIGHT;
	jobs = calloc(inflight, sizeof(*jobs));
	st.lat = rt ? calloc(n, sizeof(*st.lat)) : NULL;
	if (!jobs || (rt && !st.lat))
		bench_die("out of memory");
	t0 = bench_now_ns();
	for (unsigned i = 0; i < inflight && st.next < st.total; i++)
		submit(&jobs[i]);
	uv_run(st.loop, UV_RUN_DEFAULT);
	ns = bench_now_ns() - t0;
	if (st.done != st.total || st.sum != st.total * (st.total - 1) / 2)
		bench_die("%llu jobs completed (input sum %llu), expected %llu",
			  (unsigned long long)st.done, (unsigned long long)st.sum,
			  (unsigned long long)st.total);
	if (rt) {
		/* bench_pct sorts: p50 first, then the others on sorted data. */
		double p50 = (double)bench_pct(st.lat, n, 50), p90 = (double)bench_pct(st.lat, n, 90);
		double p99 = (double)bench_pct(st.lat, n, 99);

		printf("libuv %s uv_queue_work, 1 thread, %llu jobs one at a time: "
		       "p50 %.0f p90 %.0f p99 %.0f ns\n", uv_version_string(),
		       (unsigned long long)n, p50, p90, p99);
		bench_result(wl, "libuv", "p50_ns", p50);
		bench_result(wl, "libuv", "p90_ns", p90);
		bench_result(wl, "libuv", "p99_ns", p99);
	} else {
		printf("libuv %s uv_queue_work, 2 threads, %llu jobs, %u in flight: %.0f jobs/s\n",
		       uv_version_string(), (unsigned long long)n, TP_INFLIGHT,
		       (double)n * 1e9 / (double)ns);
		bench_result("W3", "libuv", "jobs_per_s", (double)n * 1e9 / (double)ns);
	}
	uv_loop_close(st.loop);
	free(st.lat);
	free(jobs);
	return 0;
}
