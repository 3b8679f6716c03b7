/*
 * urt-bench-offload: what handing a job to a thread and seeing its completion
 * costs, urt against raw floors built from the same parts, in one run
 * (workloads W2 and W3 of the benchmark plan).
 *
 * W2, round trip: no-op jobs offloaded one at a time to one worker; ns from
 * the hand-off to the completion seen by the submitter, p50/p90/p99 per run.
 * Variants: urt_to_thread; a raw floor whose worker completes with a
 * ring-less IORING_OP_MSG_RING into the main thread's ring; a raw eventfd.
 * Each with and without the 20 us spin, under three placements.
 *
 * W3, throughput: no-op jobs, 64 in flight, 2 workers, unpinned; jobs per
 * second. urt (64 tasks, spin on and off, and with URT_POOL_WORKER_RINGS)
 * against every MSG_RING floor, the fastest being the floor: sent
 * ring-less (one syscall per job) or from a ring per worker (one
 * io_uring_enter per batch); batched (a done list, and one message when a
 * push finds it empty, as urt's pool); to a sleeper (a done list, and a
 * message only when the main thread sleeps or is about to); the ring-less
 * and batched ones also into a main ring without DEFER_TASKRUN. Beside
 * them, an eventfd written once per batch.
 *
 * The raw floors hand jobs over through a queue like urt's pool (a mutex,
 * adaptive as urt's, and a condition variable, the same optional spin on
 * both sides), except that each worker takes its fair share of it, up to
 * 16 jobs per lock, where urt's workers take up to 4 and leave the ones
 * they have not started for idle workers to take (so that no job waits
 * in one worker's hands behind a long one while another idles), and
 * their main ring is set up with urt's flags (but for the "no DEFER"
 * ones), so that urt's ratio to them is what the runtime itself adds:
 * tasks, switches, bookkeeping, the pool's promise.
 *
 * Variants are interleaved (A run 1, B run 1, ..., A run 2, ...) so that a
 * noisy neighbour on a shared VM hits them all alike; the tables show
 * medians over runs, and ratios are medians of each run's own ratio. Every
 * job writes an answer its submitter verifies, and the counts and input
 * sums must match exactly, else the program exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <urt.h>

#include "bench_util.h"

/* Kernel 6.13+: MSG_RING without a source ring (liburing 2.3 lacks it). */
#ifndef IORING_REGISTER_SEND_MSG_RING
#define IORING_REGISTER_SEND_MSG_RING 31
#endif

#define BATCH 16		/* most jobs a worker takes per lock, as urt's pool */
#define SPIN_NS 20000u		/* urt's default spin, loop and pool */
#define WARMUP 1000u
#define TP_INFLIGHT 64u
#define TP_THREADS 2u
#define TP_PER_RT 50u		/* W3 jobs per W2 job */
#define DEFAULT_RUNS 5u
#define DEFAULT_JOBS 10000u	/* the workloads: 100 k (W2), 1 M (W3) */
#define MAX_RUNS 99u

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

/* Poll ready(arg) for up to ns; true when it turned true. The clock is read
 * every 64 polls, as urt's loop does, so that polling stays cheap. */
static bool spin_until(bool (*ready)(void *), void *arg, uint64_t ns)
{
	uint64_t until = bench_now_ns() + ns;

	do {
		for (int i = 0; i < 64; i++) {
			if (ready(arg))
				return true;
			cpu_relax();
		}
	} while (bench_now_ns() < until);
	return false;
}

/* ---- placements ---- */

struct placement {
	const char *name;
	cpu_set_t main_cpus;
	cpu_set_t worker_cpus;
};

static struct placement placements[3];
static unsigned nplacements;
static cpu_set_t all_cpus;	/* the mask we started with: "unpinned" */

/* Pin the calling thread (sched_setaffinity's pid 0 is the caller's tid). */
static int pin_self(const cpu_set_t *cpus)
{
	return sched_setaffinity(0, sizeof(*cpus), cpus) ? -errno : 0;
}

static cpu_set_t one_cpu(int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	return s;
}

static void add_placement(const char *name, cpu_set_t main_cpus, cpu_set_t worker_cpus)
{
	struct placement *p = &placements[nplacements++];

	p->name = name;
	p->main_cpus = main_cpus;
	p->worker_cpus = worker_cpus;
}

static void placements_init(void)
{
	int first = -1, second = -1;

	if (sched_getaffinity(0, sizeof(all_cpus), &all_cpus))
		bench_die("sched_getaffinity: %s", strerror(errno));
	for (int c = 0; c < CPU_SETSIZE && second < 0; c++) {
		if (!CPU_ISSET(c, &all_cpus))
			continue;
		if (first < 0)
			first = c;
		else
			second = c;
	}
	add_placement("same-cpu", one_cpu(first), one_cpu(first));
	if (second >= 0)
		add_placement("split", one_cpu(first), one_cpu(second));
	add_placement("unpinned", all_cpus, all_cpus);
}

static void pin_main(const cpu_set_t *cpus)
{
	int ret = pin_self(cpus);

	if (ret)
		bench_die("pinning the main thread: %s", strerror(-ret));
}

/* ---- jobs and their verification ---- */

/* One no-op job. The answer is a function of the input, so that a job that
 * did not run, ran twice into another's slot, or was reported done before it
 * ran cannot pass for done. */
struct job {
	struct job *next;	/* hand-off queue, then the eventfd done list */
	uint64_t in;
	uint64_t out;
};

static uint64_t answer(uint64_t in)
{
	return (in * 0x9e3779b97f4a7c15ull) ^ 0x7572742162656e63ull;
}

static void job_arm(struct job *j, uint64_t in)
{
	j->next = NULL;
	j->in = in;
	j->out = 0;
}

/* Also urt_to_thread's fn: void fn(struct job *). */
static void job_run(struct job *j)
{
	j->out = answer(j->in);
}

struct tally {
	uint64_t jobs;
	uint64_t sum;		/* of the inputs */
};

/* Count a completed job. Its answer is spent, so that a second completion
 * of the same job fails. */
static void tally_add(struct tally *t, struct job *j)
{
	if (j->out != answer(j->in))
		bench_die("job %" PRIu64 " completed without its answer", j->in);
	j->out = 0;
	t->jobs++;
	t->sum += j->in;
}

/* Inputs 0 .. n-1 each completed exactly once. */
static void tally_check(const struct tally *t, uint64_t n, const char *what)
{
	uint64_t sum = n ? n * (n - 1) / 2 : 0;

	if (t->jobs != n || t->sum != sum)
		bench_die("%s: %" PRIu64 " jobs (input sum %" PRIu64 ") completed, expected %"
			  PRIu64 " (sum %" PRIu64 ")", what, t->jobs, t->sum, n, sum);
}

/* ---- the hand-off queue of the raw variants: urt's pool, minus urt ---- */

/*
 * The floors keep their own hand-off (this queue, post_*, reap_*) rather than
 * urt's pool or a shared helper: it is the thing measured, the floor urt's
 * pool is compared against, so it must not share urt's or the helpers' code
 * paths, and a change to either must not move it. Only the clock its spins
 * read is shared: bench_now_ns, a bare clock_gettime.
 */

struct hq {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;
	atomic_uint queued;	/* read by spinning workers without mu */
	unsigned sleepers;	/* workers in pthread_cond_wait */
	unsigned nworkers;
	bool stopping;
	uint64_t spin_ns;
};

/* The lock as urt's pool sets it up: glibc's adaptive mutex (a bounded
 * spin before futex()) when the workers spin and the process may use two
 * CPUs or more, else the default mutex. */
static void hq_lock_init(struct hq *q)
{
#ifdef __GLIBC__
	pthread_mutexattr_t a;
	cpu_set_t set;

	if (q->spin_ns && sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) >= 2 &&
	    pthread_mutexattr_init(&a) == 0) {
		int ret = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);

		if (ret == 0)
			ret = pthread_mutex_init(&q->mu, &a);
		pthread_mutexattr_destroy(&a);
		if (ret == 0)
			return;
	}
#endif
	pthread_mutex_init(&q->mu, NULL);
}

static void hq_init(struct hq *q, unsigned nworkers, uint64_t spin_ns)
{
	memset(q, 0, sizeof(*q));
	q->nworkers = nworkers;
	q->spin_ns = spin_ns;
	hq_lock_init(q);
	pthread_cond_init(&q->cv, NULL);
}

static void hq_fini(struct hq *q)
{
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->mu);
}

/* Queue a chain of n jobs; wake as many sleepers as batches of them, as
 * urt__pool_push does. */
static void hq_push(struct hq *q, struct job *head, struct job *tail, unsigned n)
{
	unsigned wake = (n + BATCH - 1) / BATCH;

	pthread_mutex_lock(&q->mu);
	if (q->tail)
		q->tail->next = head;
	else
		q->head = head;
	q->tail = tail;
	atomic_fetch_add_explicit(&q->queued, n, memory_order_relaxed);
	if (wake > q->sleepers)
		wake = q->sleepers;
	if (wake == q->sleepers && wake > 1)
		pthread_cond_broadcast(&q->cv);
	else
		while (wake--)
			pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

static bool hq_has_jobs(void *arg)
{
	struct hq *q = arg;

	return atomic_load_explicit(&q->queued, memory_order_relaxed) != 0;
}

/* A worker takes its fair share of the queue, at least one job and at most
 * BATCH, spinning (when set) and then sleeping while there are none, as
 * urt's worker_main does. 0: stop. */
static unsigned hq_take(struct hq *q, struct job **batch)
{
	unsigned n = 0, take;

	pthread_mutex_lock(&q->mu);
	while (!q->head && !q->stopping) {
		if (q->spin_ns) {
			pthread_mutex_unlock(&q->mu);
			spin_until(hq_has_jobs, q, q->spin_ns);
			pthread_mutex_lock(&q->mu);
			if (q->head || q->stopping)
				break;
		}
		q->sleepers++;
		pthread_cond_wait(&q->cv, &q->mu);
		q->sleepers--;
	}
	take = atomic_load_explicit(&q->queued, memory_order_relaxed) / q->nworkers;
	take = take < 1 ? 1 : take > BATCH ? BATCH : take;
	while (q->head && n < take) {
		batch[n++] = q->head;
		q->head = q->head->next;
	}
	if (!q->head)
		q->tail = NULL;
	atomic_fetch_sub_explicit(&q->queued, n, memory_order_relaxed);
	pthread_mutex_unlock(&q->mu);
	return n;
}

static void hq_stop(struct hq *q)
{
	pthread_mutex_lock(&q->mu);
	q->stopping = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

/* ---- raw floors: the queue above plus a completion channel ---- */

enum chan {
	CHAN_RINGLESS,		/* MSG_RING with no source ring, one per job */
	CHAN_WORKER_RING,	/* MSG_RINGs of a batch in one io_uring_enter */
	CHAN_EVENTFD,		/* a done list, and one eventfd write per batch */
	CHAN_LIST_MSG,		/* a done list, a MSG_RING when it was empty */
	CHAN_LIST_SLEEPER,	/* a done list, a MSG_RING when the main sleeps */
};

static const char *const chan_names[] = {
	[CHAN_RINGLESS] = "raw MSG_RING ring-less",
	[CHAN_WORKER_RING] = "raw MSG_RING worker rings",
	[CHAN_EVENTFD] = "raw eventfd",
	[CHAN_LIST_MSG] = "raw MSG_RING batched",
	[CHAN_LIST_SLEEPER] = "raw MSG_RING to sleeper",
};

static bool ringless_ok;	/* set in main: the kernel sends ring-less */

struct raw;

struct raw_worker {
	struct raw *raw;
	pthread_t thread;
	struct io_uring ring;	/* CHAN_WORKER_RING; the done lists without ring-less */
	bool has_ring;
	int pin_err;
};

struct raw {
	enum chan chan;
	struct hq q;
	uint64_t spin_ns;
	const cpu_set_t *worker_cpus;
	struct io_uring ring;		/* MSG_RING channels: the main thread's */
	int efd;			/* CHAN_EVENTFD */
	_Atomic(struct job *) done;	/* the done lists: completed, newest first */
	_Atomic int sleeping;		/* CHAN_LIST_SLEEPER: the main thread's mark */
	unsigned wakes_owed;		/* CHAN_LIST_SLEEPER: messages still to reap */
	unsigned nworkers;
	struct raw_worker workers[TP_THREADS];
};

/* urt's loop ring flags, most demanding first; fall back on -EINVAL. */
static const unsigned ring_flag_sets[] = {
	IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_COOP_TASKRUN,
	IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_COOP_TASKRUN,
	0,
};

static unsigned raw_ring_flags;	/* what the kernel took, for the header */

/* urt's flags, or from the first set without DEFER_TASKRUN when plain. */
static void main_ring_init(struct io_uring *ring, bool plain)
{
	int ret = -EINVAL;

	for (size_t i = plain ? 1 : 0; i < sizeof(ring_flag_sets) / sizeof(ring_flag_sets[0]);
	     i++) {
		struct io_uring_params p = {
			.flags = ring_flag_sets[i] | IORING_SETUP_CQSIZE,
			.cq_entries = 4 * TP_INFLIGHT,
		};

		ret = io_uring_queue_init_params(8, ring, &p);
		if (ret == 0) {
			if (!plain)
				raw_ring_flags = ring_flag_sets[i];
			/* As urt: saves an fdget per io_uring_enter. */
			(void)io_uring_register_ring_fd(ring);
			return;
		}
		if (ret != -EINVAL)
			break;
	}
	bench_die("io_uring setup: %s", strerror(-ret));
}

/* Learn the flags the kernel takes, for the header. */
static void probe_ring_flags(void)
{
	struct io_uring ring;

	main_ring_init(&ring, false);
	io_uring_queue_exit(&ring);
}

static void msg_prep(struct io_uring_sqe *sqe, int ring_fd, struct job *j)
{
	memset(sqe, 0, sizeof(*sqe));
	io_uring_prep_msg_ring(sqe, ring_fd, 0, (uint64_t)(uintptr_t)j, 0);
}

static int send_ringless(struct io_uring_sqe *sqe)
{
	long ret = syscall(__NR_io_uring_register, -1, IORING_REGISTER_SEND_MSG_RING, sqe, 1);

	return ret < 0 ? -errno : (int)ret;
}

/* Whether this kernel sends ring-less MSG_RINGs (6.13+). */
static bool ringless_works(void)
{
	struct io_uring ring;
	struct io_uring_sqe sqe;
	struct io_uring_cqe *cqe;
	struct job j;
	bool ok = false;

	if (io_uring_queue_init(2, &ring, 0) < 0)
		return false;
	msg_prep(&sqe, ring.ring_fd, &j);
	if (send_ringless(&sqe) == 0 && io_uring_peek_cqe(&ring, &cqe) == 0)
		ok = io_uring_cqe_get_data(cqe) == &j;
	io_uring_queue_exit(&ring);
	return ok;
}

/* A full target CQ refuses a message for now; anything else is a bug. */
static bool send_retry(int ret)
{
	return ret == -EAGAIN || ret == -EBUSY || ret == -EOVERFLOW;
}

static void post_ringless(struct raw_worker *w, struct job **jobs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_sqe sqe;
		int ret;

		msg_prep(&sqe, w->raw->ring.ring_fd, jobs[i]);
		while ((ret = send_ringless(&sqe)) < 0)
			if (!send_retry(ret))
				bench_die("ring-less MSG_RING: %s", strerror(-ret));
	}
}

/* Every message of the batch goes in one io_uring_enter. */
static void post_worker_ring(struct raw_worker *w, struct job **jobs, unsigned n)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int ret;

	for (unsigned i = 0; i < n; i++) {
		/* The ring has BATCH entries and each batch is submitted. */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

		if (!sqe)
			bench_die("worker ring: no SQE");
		msg_prep(sqe, w->raw->ring.ring_fd, jobs[i]);
	}
	ret = io_uring_submit_and_wait(&w->ring, n);
	if (ret < 0)
		bench_die("worker ring submit: %s", strerror(-ret));
	io_uring_for_each_cqe(&w->ring, head, cqe) {
		if (cqe->res < 0)
			bench_die("MSG_RING from a worker ring: %s", strerror(-cqe->res));
		seen++;
	}
	if (seen != n)
		bench_die("worker ring: %u of %u MSG_RING CQEs", seen, n);
	io_uring_cq_advance(&w->ring, seen);
}

/* One message, ring-less where the kernel has it, else from the worker's
 * ring. */
static void post_one(struct raw_worker *w, struct job *j)
{
	if (ringless_ok)
		post_ringless(w, &j, 1);
	else
		post_worker_ring(w, &j, 1);
}

/* Push the batch onto the done list (one CAS, sequentially consistent for
 * the sleeper's mark); true when the list was empty. */
static bool push_done(struct raw *r, struct job **jobs, unsigned n)
{
	struct job *old = atomic_load_explicit(&r->done, memory_order_relaxed);

	for (unsigned i = 0; i + 1 < n; i++)
		jobs[i]->next = jobs[i + 1];
	do
		jobs[n - 1]->next = old;
	while (!atomic_compare_exchange_weak_explicit(&r->done, &old, jobs[0],
						      memory_order_seq_cst,
						      memory_order_relaxed));
	return !old;
}

/* The batch onto the done list, then one eventfd write. */
static void post_eventfd(struct raw_worker *w, struct job **jobs, unsigned n)
{
	uint64_t one = 1;

	push_done(w->raw, jobs, n);
	if (write(w->raw->efd, &one, sizeof(one)) != sizeof(one))
		bench_die("eventfd write: %s", strerror(errno));
}

/* The batch onto the done list; a message only when it was empty (the main
 * thread takes the list when a message arrives). */
static void post_list_msg(struct raw_worker *w, struct job **jobs, unsigned n)
{
	if (push_done(w->raw, jobs, n))
		post_one(w, NULL);
}

/* The batch onto the done list; a message only to a main thread that has
 * marked itself sleeping, by the worker that clears the mark. */
static void post_list_sleeper(struct raw_worker *w, struct job **jobs, unsigned n)
{
	struct raw *r = w->raw;

	push_done(r, jobs, n);
	if (atomic_load_explicit(&r->sleeping, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&r->sleeping, 0, memory_order_relaxed))
		post_one(w, NULL);
}

static void post(struct raw_worker *w, struct job **jobs, unsigned n)
{
	switch (w->raw->chan) {
	case CHAN_RINGLESS:
		post_ringless(w, jobs, n);
		break;
	case CHAN_WORKER_RING:
		post_worker_ring(w, jobs, n);
		break;
	case CHAN_EVENTFD:
		post_eventfd(w, jobs, n);
		break;
	case CHAN_LIST_MSG:
		post_list_msg(w, jobs, n);
		break;
	case CHAN_LIST_SLEEPER:
		post_list_sleeper(w, jobs, n);
		break;
	}
}

static void *raw_worker_main(void *arg)
{
	struct raw_worker *w = arg;
	struct job *batch[BATCH];
	unsigned n;

	w->pin_err = pin_self(w->raw->worker_cpus);
	while ((n = hq_take(&w->raw->q, batch))) {
		for (unsigned i = 0; i < n; i++)
			job_run(batch[i]);
		post(w, batch, n);
	}
	return NULL;
}

/* With DEFER_TASKRUN a MSG_RING's CQE shows up only once the main thread
 * enters the kernel; until then the kernel raises IORING_SQ_TASKRUN. */
static bool msg_ready(void *arg)
{
	struct io_uring *ring = arg;

	return io_uring_cq_ready(ring) ||
	       (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_TASKRUN);
}

static bool done_ready(void *arg)
{
	struct raw *r = arg;

	return atomic_load_explicit(&r->done, memory_order_relaxed) != NULL;
}

/* Wait for completions (at least one) and store up to max of them. */
static unsigned reap_msg(struct raw *r, struct job **out, unsigned max)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int ret;

	if (r->spin_ns)
		spin_until(msg_ready, &r->ring, r->spin_ns);
	do
		ret = io_uring_wait_cqe(&r->ring, &cqe);
	while (ret == -EINTR);
	if (ret < 0)
		bench_die("io_uring_wait_cqe: %s", strerror(-ret));
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		if (n == max)
			break;
		out[n++] = io_uring_cqe_get_data(cqe);
	}
	io_uring_cq_advance(&r->ring, n);
	return n;
}

/* The done list, oldest first, into out; its length. */
static unsigned take_done(struct raw *r, struct job **out, unsigned max)
{
	struct job *j = atomic_exchange_explicit(&r->done, NULL, memory_order_acquire);
	unsigned n = 0;

	for (; j; j = j->next) {
		if (n == max)
			bench_die("%s: more completions than jobs in flight", chan_names[r->chan]);
		out[n++] = j;
	}
	for (unsigned i = 0; i < n / 2; i++) {
		struct job *t = out[i];

		out[i] = out[n - 1 - i];
		out[n - 1 - i] = t;
	}
	return n;
}

/* Take the done list; block in read() only after seeing it empty. A worker
 * always writes after pushing, so no wake-up is lost; a write whose list a
 * spin already took only makes a later read() return early, and the loop
 * reads again. */
static unsigned reap_eventfd(struct raw *r, struct job **out, unsigned max)
{
	for (;;) {
		unsigned n = take_done(r, out, max);
		uint64_t v;

		if (n)
			return n;
		if (r->spin_ns && spin_until(done_ready, r, r->spin_ns))
			continue;
		if (read(r->efd, &v, sizeof(v)) < 0 && errno != EINTR)
			bench_die("eventfd read: %s", strerror(errno));
	}
}

/* Wait for messages (at least one), and reap them all: how many. */
static unsigned wait_msgs(struct raw *r)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int ret;

	do
		ret = io_uring_wait_cqe(&r->ring, &cqe);
	while (ret == -EINTR);
	if (ret < 0)
		bench_die("io_uring_wait_cqe: %s", strerror(-ret));
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		if (cqe->res < 0)
			bench_die("%s: a message failed: %s", chan_names[r->chan], strerror(-cqe->res));
		n++;
	}
	io_uring_cq_advance(&r->ring, n);
	return n;
}

/* The list is taken when a message comes: every message finds the list its
 * sender made non-empty, or an earlier message's taking emptied it. */
static unsigned reap_list_msg(struct raw *r, struct job **out, unsigned max)
{
	for (;;) {
		unsigned n;

		if (r->spin_ns)
			spin_until(msg_ready, &r->ring, r->spin_ns);
		wait_msgs(r);
		n = take_done(r, out, max);
		if (n)
			return n;
	}
}

/* Take the list whenever it has jobs; sleep in the ring only after marking
 * the sleep and finding the list still empty. A mark cleared by a worker
 * means its message is on the way: it is reaped before the next sleep's. */
static unsigned reap_list_sleeper(struct raw *r, struct job **out, unsigned max)
{
	for (;;) {
		unsigned n = take_done(r, out, max);

		if (n)
			return n;
		if (r->spin_ns && spin_until(done_ready, r, r->spin_ns))
			continue;
		if (r->wakes_owed) {
			r->wakes_owed -= wait_msgs(r);
			continue;
		}
		atomic_store_explicit(&r->sleeping, 1, memory_order_seq_cst);
		if (!atomic_load_explicit(&r->done, memory_order_seq_cst)) {
			r->wakes_owed = 1;
			r->wakes_owed -= wait_msgs(r);
			continue;
		}
		if (!atomic_exchange_explicit(&r->sleeping, 0, memory_order_relaxed))
			r->wakes_owed++;
	}
}

static unsigned raw_reap(struct raw *r, struct job **out, unsigned max)
{
	switch (r->chan) {
	case CHAN_EVENTFD:
		return reap_eventfd(r, out, max);
	case CHAN_LIST_MSG:
		return reap_list_msg(r, out, max);
	case CHAN_LIST_SLEEPER:
		return reap_list_sleeper(r, out, max);
	default:
		return reap_msg(r, out, max);
	}
}

/* plain: the main ring without DEFER_TASKRUN. */
static void raw_start(struct raw *r, enum chan chan, unsigned nworkers, bool spin, bool plain,
		      const cpu_set_t *worker_cpus)
{
	memset(r, 0, sizeof(*r));
	r->chan = chan;
	r->spin_ns = spin ? SPIN_NS : 0;
	r->worker_cpus = worker_cpus;
	r->nworkers = nworkers;
	r->efd = -1;
	hq_init(&r->q, nworkers, r->spin_ns);
	if (chan == CHAN_EVENTFD) {
		r->efd = eventfd(0, EFD_CLOEXEC);
		if (r->efd < 0)
			bench_die("eventfd: %s", strerror(errno));
	} else {
		main_ring_init(&r->ring, plain);
	}
	for (unsigned i = 0; i < nworkers; i++) {
		struct raw_worker *w = &r->workers[i];
		int ret;

		w->raw = r;
		w->has_ring = chan == CHAN_WORKER_RING ||
			      ((chan == CHAN_LIST_MSG || chan == CHAN_LIST_SLEEPER) && !ringless_ok);
		if (w->has_ring) {
			ret = io_uring_queue_init(BATCH, &w->ring, 0);
			if (ret < 0)
				bench_die("worker ring: %s", strerror(-ret));
		}
		ret = pthread_create(&w->thread, NULL, raw_worker_main, w);
		if (ret)
			bench_die("pthread_create: %s", strerror(ret));
	}
}

static void raw_stop(struct raw *r)
{
	hq_stop(&r->q);
	for (unsigned i = 0; i < r->nworkers; i++) {
		struct raw_worker *w = &r->workers[i];

		pthread_join(w->thread, NULL);
		if (w->pin_err)
			bench_die("pinning a worker: %s", strerror(-w->pin_err));
		if (w->has_ring)
			io_uring_queue_exit(&w->ring);
	}
	if (r->chan == CHAN_EVENTFD)
		close(r->efd);
	else
		io_uring_queue_exit(&r->ring);
	hq_fini(&r->q);
}

/* ---- urt ---- */

static urt_loop *urt_setup(unsigned threads, bool spin, unsigned pool_flags)
{
	struct urt_pool_opts po = {
		.threads = threads,
		.flags = pool_flags | (spin ? 0 : URT_POOL_NO_SPIN),
	};
	struct urt_loop_opts lo = {
		.flags = spin ? 0 : URT_LOOP_NO_SPIN,
		.pool_opts = &po,
	};
	urt_loop *loop;
	int ret = urt_loop_create(&loop, &lo);

	if (ret)
		bench_die("urt_loop_create: %s", strerror(-ret));
	return loop;
}

static void urt_run_all(urt_loop *loop)
{
	int ret = urt_loop_run(loop);

	if (ret)
		bench_die("urt_loop_run: %s", strerror(-ret));
}

struct pin_arg {
	const cpu_set_t *cpus;
	int err;
};

static void pin_job(struct pin_arg *p)
{
	p->err = pin_self(p->cpus);
}

/* ---- W2: round trip ---- */

enum impl { IMPL_URT, IMPL_RAW };

struct rt_variant {
	const char *name;
	enum impl impl;
	enum chan chan;		/* IMPL_RAW */
	bool spin;
};

/* Set in main: the ring-less MSG_RING floor, or worker rings before 6.13. */
static struct rt_variant rt_variants[] = {
	{ "urt_to_thread", IMPL_URT, 0, true },
	{ NULL, IMPL_RAW, CHAN_RINGLESS, true },
	{ NULL, IMPL_RAW, CHAN_EVENTFD, true },
	{ "urt_to_thread", IMPL_URT, 0, false },
	{ NULL, IMPL_RAW, CHAN_RINGLESS, false },
	{ NULL, IMPL_RAW, CHAN_EVENTFD, false },
};
#define NRT (sizeof(rt_variants) / sizeof(rt_variants[0]))

struct rt_run {
	uint64_t *lat;		/* ns per measured job */
	unsigned n;		/* measured jobs, after WARMUP */
	const cpu_set_t *worker_cpus;
	struct tally tally;
	int err;
};

/* One task: a job that pins the pool's only worker, the warm-up, then the
 * measured jobs. */
static int rt_urt_task(void *arg)
{
	struct rt_run *run = arg;
	struct pin_arg pin = { run->worker_cpus, 0 };
	struct job job;

	run->err = urt_to_thread(pin_job, &pin);
	if (!run->err)
		run->err = pin.err;
	if (run->err)
		return 0;
	for (uint64_t i = 0; i < WARMUP + run->n; i++) {
		uint64_t t0;

		job_arm(&job, i);
		t0 = bench_now_ns();
		run->err = urt_to_thread(job_run, &job);
		if (i >= WARMUP)
			run->lat[i - WARMUP] = bench_now_ns() - t0;
		if (run->err)
			return 0;
		tally_add(&run->tally, &job);
	}
	return 0;
}

static void rt_urt(const struct rt_variant *v, struct rt_run *run)
{
	urt_loop *loop = urt_setup(1, v->spin, 0);
	int ret = urt_spawn(loop, NULL, rt_urt_task, run);

	if (ret)
		bench_die("urt_spawn: %s", strerror(-ret));
	urt_run_all(loop);
	urt_loop_destroy(loop);
	if (run->err)
		bench_die("W2 urt task: %s", strerror(-run->err));
}

static void rt_raw(const struct rt_variant *v, struct rt_run *run)
{
	struct raw r;
	struct job job, *got;

	raw_start(&r, v->chan, 1, v->spin, false, run->worker_cpus);
	for (uint64_t i = 0; i < WARMUP + run->n; i++) {
		uint64_t t0;
		unsigned n;

		job_arm(&job, i);
		t0 = bench_now_ns();
		hq_push(&r.q, &job, &job, 1);
		n = raw_reap(&r, &got, 1);
		if (i >= WARMUP)
			run->lat[i - WARMUP] = bench_now_ns() - t0;
		if (n != 1 || got != &job)
			bench_die("W2 %s: a completion for another job", chan_names[v->chan]);
		tally_add(&run->tally, &job);
	}
	raw_stop(&r);
}

/* Per run: the p50, p90 and p99 of its measured jobs. */
static const unsigned pcts[] = { 50, 90, 99 };
#define NPCT (sizeof(pcts) / sizeof(pcts[0]))

struct lat_stats {
	uint64_t ns[NPCT];
};

/* Nearest-rank percentiles; sorts v. */
static struct lat_stats lat_stats(uint64_t *v, size_t n)
{
	struct lat_stats s;

	for (unsigned i = 0; i < NPCT; i++)
		s.ns[i] = bench_pct(v, n, pcts[i]);
	return s;
}

static struct lat_stats rt_cell(const struct rt_variant *v, const struct placement *pl,
				uint64_t *lat, unsigned n)
{
	struct rt_run run = { .lat = lat, .n = n, .worker_cpus = &pl->worker_cpus };

	/* Before the loop or the worker exists: threads inherit the mask. */
	pin_main(&pl->main_cpus);
	if (v->impl == IMPL_URT)
		rt_urt(v, &run);
	else
		rt_raw(v, &run);
	tally_check(&run.tally, WARMUP + n, v->name);
	return lat_stats(lat, n);
}

/* ---- W3: throughput ---- */

struct tp_variant {
	const char *name;
	enum impl impl;
	enum chan chan;		/* IMPL_RAW */
	bool spin;
	unsigned pool_flags;	/* IMPL_URT */
	bool floor;		/* a raw MSG_RING floor (the fastest one counts) */
	bool plain;		/* IMPL_RAW: the main ring without DEFER_TASKRUN */
};

static struct tp_variant tp_variants[] = {
	{ "urt_to_thread", IMPL_URT, 0, true, 0, false, false },
	{ "urt_to_thread", IMPL_URT, 0, false, 0, false, false },
	{ "urt_to_thread WORKER_RINGS", IMPL_URT, 0, true, URT_POOL_WORKER_RINGS, false, false },
	{ NULL, IMPL_RAW, CHAN_RINGLESS, true, 0, true, false },
	{ NULL, IMPL_RAW, CHAN_WORKER_RING, true, 0, true, false },
	{ NULL, IMPL_RAW, CHAN_LIST_MSG, true, 0, true, false },
	{ NULL, IMPL_RAW, CHAN_LIST_SLEEPER, true, 0, true, false },
	{ NULL, IMPL_RAW, CHAN_RINGLESS, true, 0, true, true },
	{ NULL, IMPL_RAW, CHAN_LIST_MSG, true, 0, true, true },
	{ NULL, IMPL_RAW, CHAN_EVENTFD, true, 0, false, false },
};
#define NTP (sizeof(tp_variants) / sizeof(tp_variants[0]))

struct tp_task {
	uint64_t first, n;
	struct tally tally;
	int err;
};

static int tp_urt_task(void *arg)
{
	struct tp_task *t = arg;
	struct job job;

	for (uint64_t i = 0; i < t->n; i++) {
		job_arm(&job, t->first + i);
		t->err = urt_to_thread(job_run, &job);
		if (t->err)
			return 0;
		tally_add(&t->tally, &job);
	}
	return 0;
}

/* TP_INFLIGHT tasks, each offloading its share of the jobs one by one. */
static uint64_t tp_urt(const struct tp_variant *v, uint64_t total, struct tally *tally)
{
	struct tp_task tasks[TP_INFLIGHT];
	urt_loop *loop = urt_setup(TP_THREADS, v->spin, v->pool_flags);
	uint64_t first = 0, t0, t1;

	for (unsigned i = 0; i < TP_INFLIGHT; i++) {
		int ret;

		tasks[i] = (struct tp_task){ .first = first,
					     .n = total / TP_INFLIGHT + (i < total % TP_INFLIGHT) };
		first += tasks[i].n;
		ret = urt_spawn(loop, NULL, tp_urt_task, &tasks[i]);
		if (ret)
			bench_die("urt_spawn: %s", strerror(-ret));
	}
	t0 = bench_now_ns();
	urt_run_all(loop);
	t1 = bench_now_ns();
	urt_loop_destroy(loop);
	for (unsigned i = 0; i < TP_INFLIGHT; i++) {
		if (tasks[i].err)
			bench_die("W3 urt task: %s", strerror(-tasks[i].err));
		tally->jobs += tasks[i].tally.jobs;
		tally->sum += tasks[i].tally.sum;
	}
	return t1 - t0;
}

/* Give the slots the next inputs and hand them over with one push. */
static void tp_issue(struct hq *q, struct job **slots, unsigned n, uint64_t *next,
		     uint64_t total)
{
	struct job *head = NULL, *tail = NULL;
	unsigned k = 0;

	for (unsigned i = 0; i < n && *next < total; i++, k++) {
		job_arm(slots[i], (*next)++);
		if (tail)
			tail->next = slots[i];
		else
			head = slots[i];
		tail = slots[i];
	}
	if (k)
		hq_push(q, head, tail, k);
}

/* The main thread keeps TP_INFLIGHT jobs in flight: each turn it reaps what
 * completed and hands those same slots over again, in one push. */
static uint64_t tp_raw(const struct tp_variant *v, uint64_t total, struct tally *tally)
{
	struct job jobs[TP_INFLIGHT], *slots[TP_INFLIGHT];
	struct raw r;
	uint64_t next = 0, t0, t1;

	for (unsigned i = 0; i < TP_INFLIGHT; i++)
		slots[i] = &jobs[i];
	raw_start(&r, v->chan, TP_THREADS, v->spin, v->plain, &all_cpus);
	t0 = bench_now_ns();
	tp_issue(&r.q, slots, TP_INFLIGHT, &next, total);
	while (tally->jobs < total) {
		unsigned n = raw_reap(&r, slots, TP_INFLIGHT);

		for (unsigned i = 0; i < n; i++)
			tally_add(tally, slots[i]);
		tp_issue(&r.q, slots, n, &next, total);
	}
	t1 = bench_now_ns();
	raw_stop(&r);
	return t1 - t0;
}

static double tp_cell(const struct tp_variant *v, uint64_t total)
{
	struct tally tally = { 0 };
	uint64_t ns;

	pin_main(&all_cpus);
	ns = v->impl == IMPL_URT ? tp_urt(v, total, &tally) : tp_raw(v, total, &tally);
	tally_check(&tally, total, v->name);
	return (double)total * 1e9 / (double)ns;
}

/* ---- driver and report ---- */

struct opts {
	unsigned runs;
	unsigned jobs;		/* W2; W3 runs TP_PER_RT times as many */
};

static uint64_t tp_jobs(const struct opts *o)
{
	return (uint64_t)o->jobs * TP_PER_RT;
}

static struct lat_stats rt_res[3][NRT][MAX_RUNS];
static double tp_res[NTP][MAX_RUNS];

static const char *spin_name(bool spin)
{
	return spin ? "on" : "off";
}

static void run_once(const struct opts *o, unsigned r, uint64_t *lat)
{
	for (unsigned p = 0; p < nplacements; p++) {
		for (unsigned v = 0; v < NRT; v++) {
			struct lat_stats *s = &rt_res[p][v][r];

			*s = rt_cell(&rt_variants[v], &placements[p], lat, o->jobs);
			printf("run %u W2 %-9s %-26s spin %-3s", r + 1, placements[p].name,
			       rt_variants[v].name, spin_name(rt_variants[v].spin));
			for (unsigned i = 0; i < NPCT; i++)
				printf(" p%u %7" PRIu64, pcts[i], s->ns[i]);
			printf(" ns\n");
			fflush(stdout);
		}
	}
	for (unsigned v = 0; v < NTP; v++) {
		tp_res[v][r] = tp_cell(&tp_variants[v], tp_jobs(o));
		printf("run %u W3 %-36s spin %-3s %10.0f jobs/s\n", r + 1, tp_variants[v].name,
		       spin_name(tp_variants[v].spin), tp_res[v][r]);
		fflush(stdout);
	}
}

/* Median over runs of a W3 cell, taken of a copy: tp_res[v][r] must stay
 * beside its run's floor for the ratios. */
static double tp_median(unsigned v, unsigned runs)
{
	double tmp[MAX_RUNS];

	memcpy(tmp, tp_res[v], runs * sizeof(*tmp));
	return bench_median(tmp, runs);
}

/* The raw MSG_RING variant with the same spin setting. */
static unsigned rt_floor(unsigned v)
{
	for (unsigned f = 0; f < NRT; f++)
		if (rt_variants[f].impl == IMPL_RAW && rt_variants[f].chan != CHAN_EVENTFD &&
		    rt_variants[f].spin == rt_variants[v].spin)
			return f;
	return v;
}

/* Median over runs of one percentile of a W2 cell; with over set, of its
 * ratio to the same run's floor (the noise of a shared VM moves a whole run,
 * so that the ratio within a run is steadier than one of medians). */
static double rt_median(unsigned p, unsigned v, unsigned runs, unsigned pct, bool over)
{
	double x[MAX_RUNS];

	for (unsigned r = 0; r < runs; r++) {
		x[r] = (double)rt_res[p][v][r].ns[pct];
		if (over)
			x[r] /= (double)rt_res[p][rt_floor(v)][r].ns[pct];
	}
	return bench_median(x, runs);
}

static void report_rt(const struct opts *o)
{
	printf("\nW2 round trip: %u no-op jobs one at a time after %u warm-up, 1 worker;\n"
	       "ns, medians over %u runs of each run's percentiles; p50/floor: median of\n"
	       "each run's p50 over the raw MSG_RING floor's, same spin and placement\n\n",
	       o->jobs, WARMUP, o->runs);
	printf("%-9s %-26s %-4s %8s %8s %8s %9s\n", "placement", "variant", "spin",
	       "p50", "p90", "p99", "p50/floor");
	for (unsigned p = 0; p < nplacements; p++) {
		for (unsigned v = 0; v < NRT; v++) {
			printf("%-9s %-26s %-4s", v ? "" : placements[p].name,
			       rt_variants[v].name, spin_name(rt_variants[v].spin));
			for (unsigned i = 0; i < NPCT; i++)
				printf(" %8.0f", rt_median(p, v, o->runs, i, false));
			printf(" %8.2fx\n", rt_median(p, v, o->runs, 0, true));
		}
	}
}

/* The raw MSG_RING floor with the highest median. */
static unsigned tp_floor(unsigned runs)
{
	unsigned best = NTP;

	for (unsigned v = 0; v < NTP; v++)
		if (tp_variants[v].floor &&
		    (best == NTP || tp_median(v, runs) > tp_median(best, runs)))
			best = v;
	return best;
}

static void report_tp(const struct opts *o)
{
	unsigned f = tp_floor(o->runs);

	printf("\nW3 throughput: %" PRIu64 " no-op jobs, %u in flight, %u workers, unpinned;\n"
	       "medians over %u runs; the raw variants spin 20 us, as urt does by default;\n"
	       "/floor: median of each run's ratio to the fastest raw MSG_RING floor,\n"
	       "which is %s\n\n",
	       tp_jobs(o), TP_INFLIGHT, TP_THREADS, o->runs, tp_variants[f].name);
	printf("%-36s %-4s %11s %11s %11s %7s\n", "variant", "spin", "jobs/s", "min", "max",
	       "/floor");
	for (unsigned v = 0; v < NTP; v++) {
		double lo = tp_res[v][0], hi = tp_res[v][0], ratio[MAX_RUNS];

		for (unsigned r = 0; r < o->runs; r++) {
			lo = tp_res[v][r] < lo ? tp_res[v][r] : lo;
			hi = tp_res[v][r] > hi ? tp_res[v][r] : hi;
			ratio[r] = tp_res[v][r] / tp_res[f][r];
		}
		printf("%-36s %-4s %11.0f %11.0f %11.0f %6.2fx\n", tp_variants[v].name,
		       spin_name(tp_variants[v].spin), tp_median(v, o->runs), lo, hi,
		       bench_median(ratio, o->runs));
	}
}

/* Before 6.13 the ring-less floors fall back on worker rings. */
static void name_raw(const char **name, enum chan *chan, bool ringless)
{
	if (*chan == CHAN_RINGLESS && !ringless)
		*chan = CHAN_WORKER_RING;
	*name = chan_names[*chan];
}

static void name_variants(bool ringless)
{
	static char plain_names[NTP][48];

	for (unsigned v = 0; v < NRT; v++)
		if (rt_variants[v].impl == IMPL_RAW)
			name_raw(&rt_variants[v].name, &rt_variants[v].chan, ringless);
	for (unsigned v = 0; v < NTP; v++) {
		struct tp_variant *t = &tp_variants[v];

		if (t->impl != IMPL_RAW)
			continue;
		name_raw(&t->name, &t->chan, ringless);
		if (t->plain) {
			snprintf(plain_names[v], sizeof(plain_names[v]), "%s no DEFER", t->name);
			t->name = plain_names[v];
		}
	}
}

static void print_header(const struct opts *o, bool ringless)
{
	struct utsname u;

	uname(&u);
	printf("urt-bench-offload: kernel %s, %ld CPUs, %u runs, W2 %u jobs, W3 %" PRIu64
	       " jobs\n", u.release, sysconf(_SC_NPROCESSORS_ONLN), o->runs, o->jobs, tp_jobs(o));
	printf("raw main ring flags 0x%x%s; ring-less MSG_RING %s\n", raw_ring_flags,
	       raw_ring_flags & IORING_SETUP_DEFER_TASKRUN ? " (DEFER_TASKRUN, as urt)" : "",
	       ringless ? "available (urt's pool uses it by default)" :
			  "unavailable: the floors use worker rings");
	if (nplacements < 3)
		printf("one CPU only: no split placement\n");
	printf("\n");
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: urt-bench-offload [--runs N] [--jobs N]\n"
		"\n"
		"What urt_to_thread costs against raw floors with the same hand-off:\n"
		"W2 round trip (one job at a time, 1 worker, 3 placements, spin on/off) and\n"
		"W3 throughput (%u in flight, %u workers); variants interleaved run by run.\n"
		"\n"
		"  --runs N   runs of every variant (default %u, at most %u)\n"
		"  --jobs N   W2 measured jobs per run (default %u); W3 runs %u x N\n"
		"  --help     this text\n"
		"\n"
		"The workloads are 100,000 jobs (W2) and 1,000,000 (W3); the defaults are\n"
		"%u and %u, so that a run stays under a minute on 2 CPUs: W2 has 18\n"
		"cells, and in 6 of them every job waits tens of us (two threads spinning\n"
		"on one CPU, or an idle CPU waking). --jobs 100000 runs the workloads' W2\n"
		"(and 5 M W3 jobs) in about 6 minutes; --jobs 1000 --runs 1 is a smoke test.\n",
		TP_INFLIGHT, TP_THREADS, DEFAULT_RUNS, MAX_RUNS, DEFAULT_JOBS, TP_PER_RT,
		DEFAULT_JOBS, DEFAULT_JOBS * TP_PER_RT);
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "runs", required_argument, NULL, 'r' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->runs = DEFAULT_RUNS;
	o->jobs = DEFAULT_JOBS;
	while ((c = getopt_long(argc, argv, "r:j:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			o->runs = bench_count_max(optarg, "--runs", MAX_RUNS);
			break;
		case 'j':
			/* W3 runs TP_PER_RT x jobs, counted in a uint64_t but
			 * printed as unsigned. */
			o->jobs = bench_count_max(optarg, "--jobs", UINT32_MAX / TP_PER_RT);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		usage(stderr);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	uint64_t *lat, t0 = bench_now_ns();
	bool ringless;

	bench_prog = "urt-bench-offload";
	parse_opts(argc, argv, &o);
	placements_init();
	ringless = ringless_works();
	ringless_ok = ringless;
	name_variants(ringless);
	probe_ring_flags();
	print_header(&o, ringless);
	lat = calloc(o.jobs, sizeof(*lat));
	if (!lat)
		bench_die("out of memory");
	for (unsigned r = 0; r < o.runs; r++)
		run_once(&o, r, lat);
	report_rt(&o);
	report_tp(&o);
	printf("\ntotal wall time %.1f s\n", (double)(bench_now_ns() - t0) / 1e9);
	free(lat);
	return 0;
}
