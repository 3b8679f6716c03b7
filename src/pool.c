/* pool: threads that run blocking jobs and hand them back to the owning
 * loop: a lock-free list of finished jobs, which the loop looks at each
 * turn, and an IORING_OP_MSG_RING that wakes the loop when it sleeps. No
 * eventfd, and no lock on the way back: the loop reaps the wake-up with
 * its other CQEs.
 *
 * Lock order: pool->mu is the only lock, held for the job queue only.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pool.h"

#define MAX_THREADS 1024
#define DEFAULT_SPIN_NS 20000u
#define WORKER_NICE 10              /* the workers' nice over their creator's */

/* Each worker's record on 128-byte blocks of its own (it writes its ring's
 * fields), as are the pool's and the loop's. */
struct __attribute__((aligned(128))) worker {
	struct urt_pool *pool;
	pthread_t thread;
	struct urt__msg_sender tx;  /* sends the wake-ups */
};

struct urt_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct urt__job *head, *tail;
	atomic_uint queued;         /* read by spinning workers without mu */
	unsigned sleepers;          /* workers in pthread_cond_wait */
	bool stopping;
	bool worker_rings;
	int policy;                 /* the workers' (SCHED_OTHER: left alone) */
	int nice;                   /* their nice, with SCHED_BATCH */
	uint64_t spin_ns;
	unsigned nthreads;
	atomic_uint loops;          /* loops attached */
	struct worker *workers;
};

/* A job has ended (res 0) or was dropped before it started (-ECANCELED):
 * push it onto its loop's finished list, and wake the loop when the push
 * replaced its sleeping mark. Once the job is on the list the loop may take
 * it and go away, so nothing of the loop's is read after the push, except
 * when the push took the mark: a marked loop waits for that message before
 * it can go (its ring expects it), so its ring's address is read then, and
 * only then (the ring's record is on lines the loop writes every turn). */
static void finish(struct worker *w, struct urt__job *job, int32_t res)
{
	struct urt__done *d = job->done;
	struct urt__job *old = atomic_load_explicit(&d->head, memory_order_relaxed);

	job->res = res;
	do
		job->next = old == URT__DONE_SLEEPING ? NULL : old;
	while (!atomic_compare_exchange_weak_explicit(&d->head, &old, job, memory_order_release,
						      memory_order_relaxed));
	if (old == URT__DONE_SLEEPING) {
		struct urt__ring_addr to = urt__ring_addr(d->ring);

		urt__msg_released(&d->wake);
		urt__msg_send(&w->tx, to, (uint64_t)(uintptr_t)&d->wake);
	}
}

struct urt__job *urt__done_take(struct urt__done *d)
{
	struct urt__job *j = atomic_load_explicit(&d->head, memory_order_relaxed);
	struct urt__job *fifo = NULL;

	/* Only the loop puts the mark there, and only a push replaces it:
	 * a list seen here stays a list until it is taken. */
	if (!j || j == URT__DONE_SLEEPING)
		return NULL;
	j = atomic_exchange_explicit(&d->head, NULL, memory_order_acquire);
	while (j) {
		struct urt__job *next = j->next;

		j->next = fifo;
		fifo = j;
		j = next;
	}
	return fifo;
}

bool urt__done_mark(struct urt__done *d)
{
	struct urt__job *empty = NULL;

	return atomic_compare_exchange_strong_explicit(&d->head, &empty, URT__DONE_SLEEPING,
						       memory_order_relaxed, memory_order_relaxed);
}

bool urt__done_unmark(struct urt__done *d)
{
	struct urt__job *mark = URT__DONE_SLEEPING;

	return atomic_compare_exchange_strong_explicit(&d->head, &mark, NULL, memory_order_relaxed,
						       memory_order_relaxed);
}

/* Workers take one job per lock, so that no job waits in one worker's
 * hands behind a long one while another worker idles, and each job's
 * completion goes out as the job ends. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct urt_pool *p = w->pool;
	struct sched_param sp = { 0 };

	/* Below the loop: a loop that wakes takes the CPU from a worker
	 * that crunches. Lowering one's own priority is always allowed;
	 * where it fails anyway (a seccomp filter), the worker runs as is. */
	if (p->policy != SCHED_OTHER && sched_setscheduler(0, p->policy, &sp) == 0 &&
	    p->policy == SCHED_BATCH)
		(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), p->nice);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct urt__job *job;
		bool drop;

		while (!p->head && !p->stopping) {
			if (p->spin_ns) {
				uint64_t until = urt_now_ns() + p->spin_ns;

				pthread_mutex_unlock(&p->mu);
				while (!atomic_load_explicit(&p->queued, memory_order_relaxed) &&
				       urt_now_ns() < until)
					urt__cpu_relax();
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
		job = p->head;
		p->head = job->next;
		if (!p->head)
			p->tail = NULL;
		atomic_fetch_sub_explicit(&p->queued, 1, memory_order_relaxed);
		/* Its loop may be going away (urt__pool_drop, under the lock). */
		drop = job->done->dropping;
		pthread_mutex_unlock(&p->mu);

		if (!drop) {
			if (job->timed)
				job->t_start = urt_now_ns();
			job->fn(job->arg);
			if (job->timed)
				job->t_end = urt_now_ns();
			finish(w, job, 0);
		} else {
			finish(w, job, -ECANCELED);
		}
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
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
		urt__msg_sender_fini(&p->workers[i].tx);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->workers);
	free(p);
}

int urt__pool_opts_check(const struct urt_pool_opts *o)
{
	if (o->flags & ~(URT_POOL_WORKER_RINGS | URT_POOL_NO_SPIN | URT_POOL_SAME_PRIORITY |
			 URT_POOL_SCHED_IDLE) ||
	    (o->flags & URT_POOL_SAME_PRIORITY && o->flags & URT_POOL_SCHED_IDLE) ||
	    o->threads > MAX_THREADS)
		return -EINVAL;
	return 0;
}

int urt__pool_start(struct urt_pool **out, const struct urt_pool_opts *opts)
{
	struct urt_pool_opts o = { 0 };
	struct urt_pool *p;
	unsigned i;
	int ret = 0;

	if (opts)
		o = *opts;
	if (urt__pool_opts_check(&o))
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
	p->worker_rings = (o.flags & URT_POOL_WORKER_RINGS) || !urt__msg_ringless_works();
	p->policy = (o.flags & URT_POOL_SAME_PRIORITY) ? SCHED_OTHER :
		    (o.flags & URT_POOL_SCHED_IDLE) ? SCHED_IDLE : SCHED_BATCH;
	/* Ten steps below the creating thread (a loop's, for its own pool). */
	errno = 0;
	p->nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	p->nice = errno ? WORKER_NICE : p->nice + WORKER_NICE > 19 ? 19 : p->nice + WORKER_NICE;
	for (i = 0; ret == 0 && i < o.threads; i++)
		ret = urt__msg_sender_init(&p->workers[i].tx, p->worker_rings);
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
	/* A worker takes one job at a time: every sleeping worker that has a
	 * job to take is woken (spinning ones see the queue themselves). */
	wake = n < p->sleepers ? n : p->sleepers;
	if (wake == p->sleepers && wake > 1)
		pthread_cond_broadcast(&p->cv);
	else
		while (wake--)
			pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

unsigned urt__pool_queued(struct urt_pool *p)
{
	return atomic_load_explicit(&p->queued, memory_order_relaxed);
}

struct urt__job *urt__pool_drop(struct urt_pool *p, struct urt__done *done)
{
	struct urt__job *dropped = NULL, **pp, *j;
	unsigned n = 0;

	pthread_mutex_lock(&p->mu);
	done->dropping = true;
	p->tail = NULL;
	for (pp = &p->head; (j = *pp);) {
		if (j->done == done) {
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
	return dropped;
}
