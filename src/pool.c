/* pool: threads that run blocking jobs and complete them into the owning
 * loop's ring with IORING_OP_MSG_RING. No eventfd, and no lock on the way
 * back: a worker's message is a CQE the loop reaps with the others.
 *
 * Lock order: pool->mu is the only lock, held for the job queue only.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "urt_internal.h"

#if URT__TSAN
#include <sanitizer/tsan_interface.h>
#define TSAN_RELEASE(p) __tsan_release(p)
#else
#define TSAN_RELEASE(p) ((void)0)
#endif

/* Kernel 6.13+: a MSG_RING sent with no source ring (liburing 2.3 has no
 * helper for it). */
#ifndef IORING_REGISTER_SEND_MSG_RING
#define IORING_REGISTER_SEND_MSG_RING 31
#endif

#define MAX_THREADS 1024
#define BATCH 16                 /* jobs a worker takes per lock */
#define DEFAULT_SPIN_NS 20000u

/* Each worker's record on 128-byte blocks of its own (it writes its ring's
 * fields), as are the pool's and the loop's. */
struct __attribute__((aligned(128))) worker {
	struct urt_pool *pool;
	pthread_t thread;
	struct io_uring ring;       /* sends batches (and lone messages too in
				     * worker-ring mode) */
	bool has_ring;
};

struct urt_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct urt__job *head, *tail;
	atomic_uint queued;         /* read by spinning workers without mu */
	unsigned sleepers;          /* workers in pthread_cond_wait */
	bool stopping;
	bool worker_rings;
	uint64_t spin_ns;
	unsigned nthreads;
	atomic_uint loops;          /* loops attached */
	struct worker *workers;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

static int send_ringless(struct io_uring_sqe *sqe)
{
	long ret = syscall(__NR_io_uring_register, -1, IORING_REGISTER_SEND_MSG_RING, sqe, 1);

	return ret < 0 ? -errno : (int)ret;
}

/* Whether this kernel sends ring-less MSG_RINGs: send one to a scratch ring
 * and look for its CQE. */
static bool probe_ringless(void)
{
	struct io_uring ring;
	struct io_uring_sqe sqe;
	struct io_uring_cqe *cqe;
	bool ok = false;

	if (io_uring_queue_init(2, &ring, 0) < 0)
		return false;
	memset(&sqe, 0, sizeof(sqe));
	io_uring_prep_msg_ring(&sqe, ring.ring_fd, 7, 0x75727421, 0);
	if (send_ringless(&sqe) == 0 && io_uring_peek_cqe(&ring, &cqe) == 0)
		ok = cqe->user_data == 0x75727421 && cqe->res == 7;
	io_uring_queue_exit(&ring);
	return ok;
}

/* Post the completions of a batch. Every message is prepared before the
 * first goes: the moment the loop sees a CQE, that job's memory may be gone.
 * A message the kernel refuses (the target's CQ cannot take it) is sent
 * again until it goes: a lost completion would park its task forever. */
static void post(struct worker *w, struct urt__job **jobs, unsigned n)
{
	struct io_uring_sqe msgs[BATCH];
	bool sent[BATCH] = { false };
	unsigned left = n;

	for (unsigned i = 0; i < n; i++) {
		memset(&msgs[i], 0, sizeof(msgs[i]));
		io_uring_prep_msg_ring(&msgs[i], jobs[i]->ring_fd, (unsigned)jobs[i]->res,
				       (uint64_t)(uintptr_t)&jobs[i]->op, 0);
		io_uring_sqe_set_data64(&msgs[i], i);
		TSAN_RELEASE(jobs[i]);
	}
	while (left) {
		/* One message: one ring-less syscall where the kernel has it.
		 * Several: one io_uring_enter from the worker's ring for all
		 * (W3 in urt-bench-offload: 1.07 M jobs/s with a syscall per
		 * message, 1.46 M batched). */
		if (n == 1 && !w->pool->worker_rings) {
			for (unsigned i = 0; i < n; i++)
				if (!sent[i] && send_ringless(&msgs[i]) == 0) {
					sent[i] = true;
					left--;
				}
		} else {
			unsigned queued = 0;

			for (unsigned i = 0; i < n; i++) {
				if (!sent[i]) {
					*io_uring_get_sqe(&w->ring) = msgs[i];
					queued++;
				}
			}
			/* One enter for the whole batch; then every CQE,
			 * so that nothing is sent twice. */
			io_uring_submit_and_wait(&w->ring, queued);
			while (queued) {
				struct io_uring_cqe *cqe;

				if (io_uring_wait_cqe(&w->ring, &cqe) < 0)
					continue;
				if (cqe->res >= 0) {
					sent[cqe->user_data] = true;
					left--;
				}
				io_uring_cqe_seen(&w->ring, cqe);
				queued--;
			}
		}
		if (left)
			usleep(50);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct urt_pool *p = w->pool;
	struct urt__job *batch[BATCH];

	pthread_mutex_lock(&p->mu);
	for (;;) {
		unsigned n = 0, take;

		while (!p->head && !p->stopping) {
			if (p->spin_ns) {
				uint64_t until = urt_now_ns() + p->spin_ns;

				pthread_mutex_unlock(&p->mu);
				while (!atomic_load_explicit(&p->queued, memory_order_relaxed) &&
				       urt_now_ns() < until)
					cpu_relax();
				pthread_mutex_lock(&p->mu);
				if (p->head || p->stopping)
					break;
			}
			p->sleepers++;
			pthread_cond_wait(&p->cv, &p->mu);
			p->sleepers--;
		}
		if (!p->head)
			break;
		/* Batches cut the lock traffic of short jobs, but a worker
		 * that took several long jobs would run them one after the
		 * other while its peers idle: take a fair share only. */
		take = atomic_load_explicit(&p->queued, memory_order_relaxed) / p->nthreads;
		if (take < 1)
			take = 1;
		if (take > BATCH)
			take = BATCH;
		while (p->head && n < take) {
			batch[n++] = p->head;
			p->head = p->head->next;
		}
		if (!p->head)
			p->tail = NULL;
		atomic_fetch_sub_explicit(&p->queued, n, memory_order_relaxed);
		pthread_mutex_unlock(&p->mu);

		for (unsigned i = 0; i < n; i++) {
			int queued = URT__JOB_QUEUED;

			/* The loop may have dropped it since we took it. */
			if (atomic_compare_exchange_strong(&batch[i]->state, &queued,
							   URT__JOB_RUNNING)) {
				batch[i]->fn(batch[i]->arg);
				batch[i]->res = 0;
			} else {
				batch[i]->res = -ECANCELED;
			}
		}
		post(w, batch, n);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Whether a worker's ring can send a MSG_RING (5.18+): send one to a
 * scratch ring. Without it no job could ever complete. */
static bool probe_msg_ring(struct io_uring *from)
{
	struct io_uring to;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	bool ok = false;

	if (io_uring_queue_init(2, &to, 0) < 0)
		return false;
	sqe = io_uring_get_sqe(from);
	io_uring_prep_msg_ring(sqe, to.ring_fd, 0, 0x75727421, 0);
	if (io_uring_submit_and_wait(from, 1) == 1 && io_uring_peek_cqe(from, &cqe) == 0) {
		ok = cqe->res == 0;
		io_uring_cqe_seen(from, cqe);
	}
	io_uring_queue_exit(&to);
	return ok;
}

static void pool_free(struct urt_pool *p, unsigned started)
{
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < started; i++)
		pthread_join(p->workers[i].thread, NULL);
	for (unsigned i = 0; i < p->nthreads; i++)
		if (p->workers[i].has_ring)
			io_uring_queue_exit(&p->workers[i].ring);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->workers);
	free(p);
}

int urt__pool_start(struct urt_pool **out, const struct urt_pool_opts *opts)
{
	struct urt_pool_opts o = { 0 };
	struct urt_pool *p;
	unsigned i;
	int ret = 0;

	if (opts)
		o = *opts;
	if (o.flags & ~(URT_POOL_WORKER_RINGS | URT_POOL_NO_SPIN) || o.threads > MAX_THREADS)
		return -EINVAL;
	if (!o.threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		o.threads = n > 0 ? (unsigned)(n < MAX_THREADS ? n : MAX_THREADS) : 1;
	}
	p = urt__alloc_lines(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->workers = urt__alloc_lines(o.threads * sizeof(*p->workers));
	if (!p->workers) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->nthreads = o.threads;
	p->spin_ns = (o.flags & URT_POOL_NO_SPIN) ? 0 : o.spin_ns ? o.spin_ns : DEFAULT_SPIN_NS;
	if (urt__cpus_allowed() < 2)
		p->spin_ns = 0; /* the loop could not run while we spin */
	p->worker_rings = (o.flags & URT_POOL_WORKER_RINGS) || !probe_ringless();
	for (i = 0; i < o.threads; i++) {
		ret = io_uring_queue_init(BATCH, &p->workers[i].ring, 0);
		if (ret < 0)
			break;
		p->workers[i].has_ring = true;
		if (i == 0 && !probe_msg_ring(&p->workers[0].ring)) {
			ret = -EOPNOTSUPP;
			break;
		}
	}
	if (ret < 0) {
		pool_free(p, 0);
		return ret;
	}
	for (i = 0; i < o.threads; i++) {
		p->workers[i].pool = p;
		ret = -pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
		if (ret < 0)
			break;
	}
	if (ret < 0) {
		pool_free(p, i);
		return ret;
	}
	*out = p;
	return 0;
}

/* The CPUs the process could use when it started (a container's cpuset,
 * taskset), read once before the application pins any thread: a loop
 * thread pinned to one CPU may still have a worker on another. */
static int process_cpus = -1;

__attribute__((constructor)) static void read_process_cpus(void)
{
	cpu_set_t set;

	process_cpus = sched_getaffinity(0, sizeof(set), &set) ? 1 : CPU_COUNT(&set);
}

int urt__cpus_allowed(void)
{
	if (process_cpus < 0)
		read_process_cpus();
	return process_cpus;
}

int urt_pool_create(urt_pool **out, const struct urt_pool_opts *opts)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return urt__pool_start(out, opts);
}

int urt_pool_destroy(urt_pool *pool)
{
	if (!pool)
		return -EINVAL;
	if (atomic_load(&pool->loops))
		return -EBUSY;
	pool_free(pool, pool->nthreads);
	return 0;
}

int urt_pool_uses_worker_rings(const urt_pool *pool)
{
	if (!pool)
		return -EINVAL;
	return pool->worker_rings;
}

void urt__pool_attach(struct urt_pool *pool)
{
	atomic_fetch_add(&pool->loops, 1);
}

void urt__pool_detach(struct urt_pool *pool)
{
	atomic_fetch_sub(&pool->loops, 1);
}

void urt__pool_push(struct urt_pool *p, struct urt__job *head, struct urt__job *tail, unsigned n)
{
	unsigned wake;

	pthread_mutex_lock(&p->mu);
	if (p->tail)
		p->tail->next = head;
	else
		p->head = head;
	p->tail = tail;
	atomic_fetch_add_explicit(&p->queued, n, memory_order_relaxed);
	/* A worker takes up to BATCH jobs: wake as many as the jobs need. */
	wake = (n + BATCH - 1) / BATCH;
	if (wake > p->sleepers)
		wake = p->sleepers;
	if (wake == p->sleepers && wake > 1)
		pthread_cond_broadcast(&p->cv);
	else
		while (wake--)
			pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void urt__pool_drop(struct urt_pool *p, struct urt__ring *ring)
{
	struct urt__job *dropped = NULL, **pp, *j;
	unsigned n = 0;

	pthread_mutex_lock(&p->mu);
	p->tail = NULL;
	for (pp = &p->head; (j = *pp);) {
		if (j->ring == ring) {
			*pp = j->next;
			j->next = dropped;
			dropped = j;
			n++;
		} else {
			p->tail = j;
			pp = &j->next;
		}
	}
	atomic_fetch_sub_explicit(&p->queued, n, memory_order_relaxed);
	pthread_mutex_unlock(&p->mu);
	while ((j = dropped)) {
		dropped = j->next;
		urt__ring_complete(ring, &j->op, -ECANCELED);
	}
}
