/* pool: threads that run blocking jobs and hand them back to the owning
 * loop: a queue under a lock, from which each worker takes its fair share
 * of jobs (up to SHARE_MAX) while the ones it has not started stay for any
 * idle worker to take; a lock-free list of finished jobs (slots, and a
 * stack when they are full), which the loop looks at each turn; and an
 * IORING_OP_MSG_RING that wakes the loop when it sleeps. No eventfd, and no
 * lock on the way back: the loop reaps the wake-up with its other CQEs.
 *
 * Lock order: pool->mu is the only lock, held for the job queue (and the
 * jobs workers hold) only.
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
#define SHARE_MAX 4                 /* the most jobs a worker takes with one lock */

/* Each worker's record on 128-byte blocks of its own (it writes its ring's
 * fields), as are the pool's and the loop's. */
struct __attribute__((aligned(128))) worker {
	struct urt_pool *pool;
	pthread_t thread;
	struct urt__msg_sender tx;  /* sends the wake-ups */
	/* The loop's list this worker is putting a job on, or NULL: see
	 * urt__pool_quiesce. */
	_Atomic(struct urt__done *) finishing;
	/* The jobs it took with one lock beside the one it runs first (see
	 * take_locked): held[held_next] up to held[held_n - 1] are not
	 * started yet, and any worker may claim them, the owner without the
	 * lock, others (stealing) under it. held and held_n change under the
	 * lock, once every one is claimed. On a line of their own, which
	 * idle workers read while they spin: a worker that takes one job at
	 * a time never writes it. */
	_Atomic unsigned held_n __attribute__((aligned(64)));
	_Atomic unsigned held_next;
	struct urt__job *held[SHARE_MAX]; /* [0] unused */
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

/* The worker took d's mark: wake its loop. A marked loop waits for this
 * message before it can go (its ring expects it), so its ring's address is
 * read now, and only now (the ring's record is on lines the loop writes
 * every turn). TSan cannot see the order the message carries. */
static void wake(struct worker *w, struct urt__done *d)
{
	struct urt__ring_addr to = urt__ring_addr(d->ring);

	urt__msg_released(&d->wake);
	urt__msg_send(&w->tx, to, (uint64_t)(uintptr_t)&d->wake);
}

/* Claim a slot of d: its index, or UINT64_MAX when all are claimed and
 * not yet emptied. */
static uint64_t slot_claim(struct urt__done *d)
{
	uint64_t t = atomic_load_explicit(&d->tail, memory_order_relaxed);

	for (;;) {
		if (t - atomic_load_explicit(&d->emptied, memory_order_acquire) >= URT__DONE_SLOTS)
			return UINT64_MAX;
		/* Sequentially consistent: a loop whose look at tail comes
		 * before this claim marked itself before that, and the look
		 * at head after the slot is filled sees the mark. */
		if (atomic_compare_exchange_weak_explicit(&d->tail, &t, t + 1, memory_order_seq_cst,
							  memory_order_relaxed))
			return t;
	}
}

/* A job has ended (res 0) or was dropped before it started (-ECANCELED):
 * put it on its loop's finished list, in a slot, or on the stack when the
 * slots are full, and wake the loop when it had marked itself sleeping
 * (see struct urt__done). The job's memory is not touched after that: the
 * loop may take it at once. */
static void finish(struct worker *w, struct urt__job *job, int32_t res)
{
	struct urt__done *d = job->done;
	uint64_t i;

	atomic_store_explicit(&w->finishing, d, memory_order_relaxed);
	i = slot_claim(d);
	if (i != UINT64_MAX) {
		struct urt__job *h;

		/* Release: the job's results; and before the look at head
		 * (sequentially consistent, against the loop's mark). */
		atomic_store_explicit(&d->slot[i % URT__DONE_SLOTS],
				      (uintptr_t)job | (res ? 1u : 0u), memory_order_seq_cst);
		h = atomic_load_explicit(&d->head, memory_order_seq_cst);
		if (h == URT__DONE_SLEEPING &&
		    atomic_compare_exchange_strong_explicit(&d->head, &h, NULL,
							    memory_order_seq_cst,
							    memory_order_relaxed))
			wake(w, d);
	} else {
		struct urt__job *old = atomic_load_explicit(&d->head, memory_order_relaxed);

		job->res = res;
		do
			job->next = old == URT__DONE_SLEEPING ? NULL : old;
		while (!atomic_compare_exchange_weak_explicit(&d->head, &old, job,
							      memory_order_seq_cst,
							      memory_order_relaxed));
		if (old == URT__DONE_SLEEPING)
			wake(w, d);
	}
	atomic_store_explicit(&w->finishing, NULL, memory_order_release);
}

/* The stack's jobs to fn, oldest first. */
static bool stack_take(struct urt__done *d,
		       void (*fn)(void *ctx, struct urt__job *job, int32_t res), void *ctx)
{
	struct urt__job *j = atomic_load_explicit(&d->head, memory_order_relaxed);
	struct urt__job *fifo = NULL, *next;

	/* Only the loop puts the mark there, and only a worker takes it
	 * away: a list seen here stays a list until it is taken. */
	if (!j || j == URT__DONE_SLEEPING)
		return false;
	j = atomic_exchange_explicit(&d->head, NULL, memory_order_acquire);
	while (j) {
		next = j->next;
		j->next = fifo;
		fifo = j;
		j = next;
	}
	for (j = fifo; j; j = next) {
		next = j->next; /* fn may free j */
		fn(ctx, j, j->res);
	}
	return true;
}

bool urt__done_take(struct urt__done *d,
		    void (*fn)(void *ctx, struct urt__job *job, int32_t res), void *ctx)
{
	uint64_t end = atomic_load_explicit(&d->tail, memory_order_acquire);
	uint64_t i, hole = UINT64_MAX;
	bool any = false;

	/* Slots claimed but not filled yet (their workers are between the
	 * two steps) are passed over, and the filled ones after them marked
	 * taken; next stays at the first such hole. */
	for (i = d->next; i != end; i++) {
		_Atomic uintptr_t *s = &d->slot[i % URT__DONE_SLOTS];
		uintptr_t v = atomic_load_explicit(s, memory_order_acquire);

		if (!v) {
			if (hole == UINT64_MAX)
				hole = i;
			continue;
		}
		if (v != URT__DONE_TAKEN) {
			any = true;
			fn(ctx, (struct urt__job *)(v & ~(uintptr_t)1), v & 1 ? -ECANCELED : 0);
		}
		atomic_store_explicit(s, hole == UINT64_MAX ? 0 : URT__DONE_TAKEN,
				      memory_order_relaxed);
	}
	if (d->next != end) {
		d->next = hole == UINT64_MAX ? end : hole;
		atomic_store_explicit(&d->emptied, d->next, memory_order_release);
	}
	return stack_take(d, fn, ctx) || any;
}

bool urt__done_mark(struct urt__done *d, bool *ready)
{
	struct urt__job *empty = NULL;

	if (!atomic_compare_exchange_strong_explicit(&d->head, &empty, URT__DONE_SLEEPING,
						     memory_order_seq_cst, memory_order_relaxed))
		return false;
	/* Every slot claimed so far: one filled before the mark is seen
	 * here; a worker that fills one after it sees the mark. */
	*ready = urt__done_slots_ready(d, memory_order_seq_cst);
	return true;
}

bool urt__done_unmark(struct urt__done *d)
{
	struct urt__job *mark = URT__DONE_SLEEPING;

	return atomic_compare_exchange_strong_explicit(&d->head, &mark, NULL, memory_order_relaxed,
						       memory_order_relaxed);
}

void urt__pool_quiesce(struct urt_pool *p, struct urt__done *d)
{
	for (unsigned i = 0; i < p->nthreads; i++)
		while (atomic_load_explicit(&p->workers[i].finishing, memory_order_acquire) == d)
			sched_yield();
}

/* How many of the jobs v holds are not started yet (relaxed looks: exact
 * under the lock or for v itself, a hint for anyone else). */
static unsigned held_left(struct worker *v)
{
	unsigned n = atomic_load_explicit(&v->held_n, memory_order_relaxed);
	unsigned next = atomic_load_explicit(&v->held_next, memory_order_relaxed);

	return next < n ? n - next : 0;
}

/* Whether a job another worker holds is not started yet (for spinning:
 * taken under the lock, by steal_locked). */
static bool stealable(struct urt_pool *p)
{
	for (unsigned i = 0; i < p->nthreads; i++)
		if (held_left(&p->workers[i]))
			return true;
	return false;
}

/* Under the lock: a job another worker holds and has not started, claimed
 * for w, or NULL. */
static struct urt__job *steal_locked(struct urt_pool *p, struct worker *w)
{
	for (unsigned i = 0; i < p->nthreads; i++) {
		struct worker *v = &p->workers[i];
		unsigned k;

		if (v == w || !held_left(v))
			continue;
		/* held_n stays as it is: only v changes it, under the lock. */
		k = atomic_fetch_add_explicit(&v->held_next, 1, memory_order_relaxed);
		if (k < atomic_load_explicit(&v->held_n, memory_order_relaxed))
			return v->held[k];
	}
	return NULL;
}

/*
 * Under the lock: the job w runs next, or NULL when there is none. From the
 * queue, w takes its fair share (the jobs queued over the workers, at least
 * one, at most SHARE_MAX): the first to run now, the rest held where any
 * idle worker can take them (steal_locked; a spinning one sees them with
 * stealable). So no job waits in one worker's hands behind a long one
 * while another worker idles, and a busy pool takes its lock once per
 * share, not once per job. With the queue empty, w takes a job that
 * another worker holds.
 */
static struct urt__job *take_locked(struct urt_pool *p, struct worker *w)
{
	unsigned q = atomic_load_explicit(&p->queued, memory_order_relaxed), k, n = 1;
	struct urt__job *job = p->head;

	if (!job)
		return steal_locked(p, w);
	k = q / p->nthreads;
	k = k < 1 ? 1 : k > SHARE_MAX ? SHARE_MAX : k;
	p->head = job->next;
	while (n < k && p->head) {
		w->held[n++] = p->head;
		p->head = p->head->next;
	}
	if (!p->head)
		p->tail = NULL;
	atomic_fetch_sub_explicit(&p->queued, n, memory_order_relaxed);
	/* Its last share is all claimed: held_next >= held_n already. */
	if (n > 1) {
		atomic_store_explicit(&w->held_n, n, memory_order_relaxed);
		atomic_store_explicit(&w->held_next, 1, memory_order_relaxed);
	}
	return job;
}

/* Without the lock: the next job w holds, claimed, or NULL when all are
 * (by w, or by workers that took them). */
static struct urt__job *claim_own(struct worker *w)
{
	unsigned k;

	if (!held_left(w))
		return NULL;
	k = atomic_fetch_add_explicit(&w->held_next, 1, memory_order_relaxed);
	return k < atomic_load_explicit(&w->held_n, memory_order_relaxed) ? w->held[k] : NULL;
}

/* Run a job and put it on its loop's finished list; a job whose loop is
 * going away (urt__pool_drop) is put there unstarted. */
static void run_one(struct worker *w, struct urt__job *job)
{
	if (atomic_load_explicit(&job->done->dropping, memory_order_acquire)) {
		finish(w, job, -ECANCELED);
		return;
	}
	if (job->timed)
		job->t_start = urt_now_ns();
	job->fn(job->arg);
	if (job->timed)
		job->t_end = urt_now_ns();
	finish(w, job, 0);
}

/* Each job's completion goes out as the job ends. */
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
		struct urt__job *job = take_locked(p, w);

		if (!job && p->stopping)
			break;
		if (!job && p->spin_ns) {
			uint64_t until = urt_now_ns() + p->spin_ns;

			pthread_mutex_unlock(&p->mu);
			while (!atomic_load_explicit(&p->queued, memory_order_relaxed) &&
			       !stealable(p) && urt_now_ns() < until)
				urt__cpu_relax();
			pthread_mutex_lock(&p->mu);
			job = take_locked(p, w);
		}
		if (!job) {
			if (!p->stopping) {
				p->sleepers++;
				pthread_cond_wait(&p->cv, &p->mu);
				p->sleepers--;
			}
			continue;
		}
		pthread_mutex_unlock(&p->mu);
		do
			run_one(w, job);
		while ((job = claim_own(w)));
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

/*
 * The queue's lock spins a bounded while before it sleeps (glibc's
 * adaptive mutex: at most glibc.pthread.mutex_spin_count tries, 100 by
 * default), when the pool spins at all: not with URT_POOL_NO_SPIN, nor
 * where the process may use one CPU only (its holder could not run
 * meanwhile); then, and with another libc, it is the default mutex. Every
 * section under it is a few dozen instructions, but the loop's hand-over
 * and two workers taking one job each meet there millions of times a
 * second: with the default mutex, each meeting put the late one to sleep
 * in futex() and made the holder wake it, 15,000-40,000 futex calls in a
 * 2,000,000-job W3 program; spinning first, 600-1,300, and its median rate
 * went up by 1.3-2.1x (see the README).
 */
static void queue_lock_init(struct urt_pool *p)
{
#ifdef __GLIBC__
	pthread_mutexattr_t a;

	if (p->spin_ns && pthread_mutexattr_init(&a) == 0) {
		int ret = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);

		if (ret == 0)
			ret = pthread_mutex_init(&p->mu, &a);
		pthread_mutexattr_destroy(&a);
		if (ret == 0)
			return;
	}
#endif
	pthread_mutex_init(&p->mu, NULL);
}

bool urt__pool_lock_spins(struct urt_pool *p)
{
#ifdef __GLIBC__
	/* The mutex's kind, in the low bits of the word glibc keeps it in. */
	return (p->mu.__data.__kind & 3) == PTHREAD_MUTEX_ADAPTIVE_NP;
#else
	(void)p;
	return false;
#endif
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
	p->nthreads = o.threads;
	p->spin_ns = (o.flags & URT_POOL_NO_SPIN) ? 0 : o.spin_ns ? o.spin_ns : DEFAULT_SPIN_NS;
	if (urt__cpus_allowed() < 2)
		p->spin_ns = 0; /* the loop could not run while we spin */
	queue_lock_init(p);
	pthread_cond_init(&p->cv, NULL);
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
	/* Every sleeping worker that has a job to take is woken (spinning
	 * ones see the queue themselves): one that finds the queue taken by
	 * another's share takes from that share. */
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
	unsigned n = atomic_load_explicit(&p->queued, memory_order_relaxed);

	/* And the jobs workers hold, not started yet. */
	for (unsigned i = 0; i < p->nthreads; i++)
		n += held_left(&p->workers[i]);
	return n;
}

struct urt__job *urt__pool_drop(struct urt_pool *p, struct urt__done *done)
{
	struct urt__job *dropped = NULL, **pp, *j;
	unsigned n = 0;

	pthread_mutex_lock(&p->mu);
	atomic_store_explicit(&done->dropping, true, memory_order_release);
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
