/*
 * W5's floor on raw liburing: one thread, one ring, a 1 ms periodic timer
 * for D seconds; lateness = (t_k - t_{k-1}) - period, p50/p99/max in us.
 * The timer is an IORING_OP_TIMEOUT with IORING_TIMEOUT_ABS at the last
 * tick + period (never early, as urt's sleep). Loads, as urt-bench-timer's:
 *
 *  idle     the timer alone;
 *  offload  two blocking jobs (usleep 5 ms) always in flight: two worker
 *           threads, each handed one job at a time under a mutex, posting
 *           its completion into the main ring with IORING_OP_MSG_RING from
 *           a small ring of its own; the main thread checks the answer and
 *           hands the worker its next job;
 *  inline   the main thread spins 5 ms of CPU between looks at the ring.
 *
 * The main ring gets urt's flags (DEFER_TASKRUN and the rest, dropped on
 * -EINVAL), so that the comparison is of the runtime, not the ring setup.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"

#define PERIOD_NS (1 * BENCH_MS)
#define WORK_NS (5 * BENCH_MS)
#define TAG_TIMER 1u
#define TAG_WORKER 2u		/* + worker index */
#define NWORKERS 2

enum load { IDLE, OFFLOAD, INLINE };
static const char *const load_names[] = { "idle", "offload", "inline" };

struct worker {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool has_job, stop;
	uint64_t in, out;
	unsigned idx;
	int main_fd;
	struct io_uring ring;	/* the source of its MSG_RINGs */
	uint64_t done;
};

static uint64_t answer(uint64_t in)
{
	return in * 0x9e3779b97f4a7c15ull + 1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (;;) {
		struct io_uring_sqe *sqe;
		struct io_uring_cqe *cqe;
		uint64_t in;
		int ret;

		pthread_mutex_lock(&w->mu);
		while (!w->has_job && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop) {
			pthread_mutex_unlock(&w->mu);
			return NULL;
		}
		in = w->in;
		pthread_mutex_unlock(&w->mu);
		usleep(WORK_NS / 1000);
		pthread_mutex_lock(&w->mu);
		w->out = answer(in);
		w->has_job = false;
		pthread_mutex_unlock(&w->mu);
		sqe = io_uring_get_sqe(&w->ring);
		if (!sqe)
			bench_die("worker ring: no SQE");
		io_uring_prep_msg_ring(sqe, w->main_fd, 0, TAG_WORKER + w->idx, 0);
		io_uring_sqe_set_data64(sqe, 0);
		ret = io_uring_submit_and_wait(&w->ring, 1);
		if (ret < 0)
			bench_die("worker submit: %s", strerror(-ret));
		ret = io_uring_peek_cqe(&w->ring, &cqe);
		if (ret < 0 || cqe->res < 0)
			bench_die("MSG_RING: %s", strerror(ret < 0 ? -ret : -cqe->res));
		io_uring_cqe_seen(&w->ring, cqe);
	}
}

static void hand_job(struct worker *w, uint64_t in)
{
	pthread_mutex_lock(&w->mu);
	w->in = in;
	w->has_job = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static const unsigned ring_flags[] = {
	IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_COOP_TASKRUN,
	IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_COOP_TASKRUN,
	0,
};

static void ring_init(struct io_uring *ring)
{
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(ring_flags) / sizeof(ring_flags[0]); i++) {
		ret = io_uring_queue_init(16, ring, ring_flags[i]);
		if (ret == 0)
			return;
		if (ret != -EINVAL)
			break;
	}
	bench_die("io_uring_queue_init: %s", strerror(-ret));
}

static struct __kernel_timespec armed_ts;

static void arm(struct io_uring *ring, uint64_t deadline)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		bench_die("no free SQE");
	armed_ts.tv_sec = (long long)(deadline / 1000000000u);
	armed_ts.tv_nsec = (long long)(deadline % 1000000000u);
	io_uring_prep_timeout(sqe, &armed_ts, 0, IORING_TIMEOUT_ABS);
	io_uring_sqe_set_data64(sqe, TAG_TIMER);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "load", required_argument, NULL, 'l' },
		{ "seconds", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	static struct worker workers[NWORKERS];
	uint64_t duration = 3000 * BENCH_MS, start, prev, next_in = 0, jobs = 0, sink = 0;
	enum load load = IDLE;
	struct io_uring ring;
	int64_t *late;
	size_t n = 0, cap;
	unsigned inflight = 0;
	bool stopping = false;
	char wl[32];
	int c, ret;

	bench_prog = "urt-bench-raw-timer";
	while ((c = getopt_long(argc, argv, "l:s:", lo, NULL)) != -1) {
		switch (c) {
		case 'l':
			for (load = IDLE; load <= INLINE; load++)
				if (!strcmp(optarg, load_names[load]))
					break;
			if (load > INLINE)
				bench_die("--load: idle, offload or inline, not '%s'", optarg);
			break;
		case 's':
			duration = (uint64_t)(atof(optarg) * 1e9);
			if (duration < PERIOD_NS || duration > 3600e9)
				bench_die("--seconds: from 0.001 to 3600");
			break;
		default:
			fprintf(stderr, "usage: urt-bench-raw-timer [--load idle|offload|inline] "
					"[--seconds D]\n");
			return 2;
		}
	}
	cap = duration / PERIOD_NS + 2;
	late = calloc(cap, sizeof(*late));
	if (!late)
		bench_die("out of memory");
	ring_init(&ring);
	if (load == OFFLOAD) {
		for (unsigned i = 0; i < NWORKERS; i++) {
			struct worker *w = &workers[i];

			w->idx = i;
			w->main_fd = ring.ring_fd;
			pthread_mutex_init(&w->mu, NULL);
			pthread_cond_init(&w->cv, NULL);
			ret = io_uring_queue_init(2, &w->ring, 0);
			if (ret < 0)
				bench_die("worker ring: %s", strerror(-ret));
			ret = pthread_create(&w->thread, NULL, worker_main, w);
			if (ret)
				bench_die("pthread_create: %s", strerror(ret));
			hand_job(w, next_in++);
			inflight++;
		}
	}
	start = prev = bench_now_ns();
	arm(&ring, prev + PERIOD_NS);
	/* Until the time is up and the last job is back. */
	while (!stopping || inflight) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		bool ticked = false;

		if (load == INLINE && !stopping) {
			sink += bench_spin_ns(WORK_NS);
			/* Look without waiting: the work goes on either way. */
			ret = io_uring_submit_and_get_events(&ring);
		} else {
			ret = io_uring_submit_and_wait(&ring, 1);
		}
		if (ret < 0 && ret != -EINTR && ret != -ETIME)
			bench_die("io_uring_enter: %s", strerror(-ret));
		io_uring_for_each_cqe(&ring, head, cqe) {
			uint64_t tag = io_uring_cqe_get_data64(cqe);

			seen++;
			if (tag == TAG_TIMER) {
				if (cqe->res != -ETIME)
					bench_die("timeout CQE: %s", strerror(-cqe->res));
				ticked = true;
			} else if (tag >= TAG_WORKER && tag < TAG_WORKER + NWORKERS) {
				struct worker *w = &workers[tag - TAG_WORKER];

				pthread_mutex_lock(&w->mu);
				if (w->has_job || w->out != answer(w->in))
					bench_die("job %llu came back without its answer",
						  (unsigned long long)w->in);
				pthread_mutex_unlock(&w->mu);
				w->done++;
				jobs++;
				inflight--;
				if (!stopping) {
					hand_job(w, next_in++);
					inflight++;
				}
			} else {
				bench_die("a CQE of no one's (%llu)", (unsigned long long)tag);
			}
		}
		io_uring_cq_advance(&ring, seen);
		if (ticked) {
			uint64_t now = bench_now_ns();

			if (now - prev < PERIOD_NS)
				bench_die("the timer fired %llu ns early",
					  (unsigned long long)(PERIOD_NS - (now - prev)));
			if (n == cap)
				bench_die("more ticks than %zu", cap);
			late[n++] = (int64_t)(now - prev - PERIOD_NS);
			prev = now;
			if (now - start >= duration)
				stopping = true;
			else
				arm(&ring, now + PERIOD_NS);
		}
	}
	if (load == OFFLOAD) {
		for (unsigned i = 0; i < NWORKERS; i++) {
			struct worker *w = &workers[i];

			pthread_mutex_lock(&w->mu);
			w->stop = true;
			pthread_cond_signal(&w->cv);
			pthread_mutex_unlock(&w->mu);
			pthread_join(w->thread, NULL);
			io_uring_queue_exit(&w->ring);
			if (!w->done)
				bench_die("worker %u never completed a job", i);
		}
		if (jobs != next_in)
			bench_die("%llu jobs handed out, %llu came back",
				  (unsigned long long)next_in, (unsigned long long)jobs);
	}
	io_uring_queue_exit(&ring);
	if (!n)
		bench_die("the timer never ticked");
	snprintf(wl, sizeof(wl), "W5.%s", load_names[load]);
	bench_lateness_report(wl, "raw", late, n);
	free(late);
	return (int)(sink & 0);
}
