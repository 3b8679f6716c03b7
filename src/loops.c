/* loops: a set of loops, one per CPU, each on a thread of its own that
 * makes, runs and destroys its loop (a ring is its creating thread's), all
 * sharing one pool. The calling thread commands them: run, then exit. */
#define _GNU_SOURCE /* CPU_*, pthread_setaffinity_np */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "op.h"

#define MAX_LOOPS 1024u

enum command { CMD_NONE, CMD_RUN, CMD_EXIT };

struct loop_thread {
	struct urt_loops *set;
	unsigned index;
	int cpu;                    /* -1: not pinned */
	pthread_t thread;
	urt_loop *loop;
	int err;                    /* creating or running the loop */
	int result;                 /* the first task's value */
};

struct urt_loops {
	struct urt__mesh mesh;
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* commands to the threads, and replies */
	enum command cmd;
	unsigned gen;               /* commands given so far */
	unsigned answered;          /* threads done with the current command */
	bool running;
	urt_task_fn fn;
	void *arg;
	struct urt_loop_opts loop_opts;
	urt_pool *pool;
	unsigned n;
	struct loop_thread *threads;
};

/* Tell the controlling thread that this thread is done with a command. */
static void answer(struct urt_loops *set)
{
	pthread_mutex_lock(&set->mu);
	set->answered++;
	pthread_cond_broadcast(&set->cv);
	pthread_mutex_unlock(&set->mu);
}

static void run_once(struct loop_thread *lt)
{
	struct urt_loops *set = lt->set;
	urt_task *t = NULL;
	int ret;

	urt__xloop_run_begin(lt->loop);
	ret = urt_spawn(lt->loop, &t, set->fn, set->arg);
	lt->result = ret;
	lt->err = urt_loop_run(lt->loop);
	/* Every loop idle: the first task has returned (unless the ring
	 * failed, and then the loop's destroy frees it). */
	if (!ret && !lt->err)
		(void)urt_join(t, &lt->result);
}

static void *loop_main(void *arg)
{
	struct loop_thread *lt = arg;
	struct urt_loops *set = lt->set;
	unsigned seen = 0;

	if (lt->cpu >= 0) {
		cpu_set_t one;

		CPU_ZERO(&one);
		CPU_SET(lt->cpu, &one);
		/* Best effort: a CPU taken away since is not an error. */
		(void)pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
	}
	lt->err = urt_loop_create(&lt->loop, &set->loop_opts);
	if (!lt->err) {
		lt->err = urt__xloop_join(lt->loop, &set->mesh, lt->index);
		if (lt->err) {
			urt_loop_destroy(lt->loop);
			lt->loop = NULL;
		}
	}
	answer(set);
	if (lt->err)
		return NULL;
	for (;;) {
		enum command cmd;

		pthread_mutex_lock(&set->mu);
		while (set->gen == seen)
			pthread_cond_wait(&set->cv, &set->mu);
		seen = set->gen;
		cmd = set->cmd;
		pthread_mutex_unlock(&set->mu);
		if (cmd == CMD_EXIT)
			break;
		run_once(lt);
		answer(set);
	}
	urt_loop_destroy(lt->loop);
	return NULL;
}

/* Give every thread cmd and wait until each has answered. */
static void command(struct urt_loops *set, enum command cmd, unsigned threads)
{
	pthread_mutex_lock(&set->mu);
	set->cmd = cmd;
	set->gen++;
	set->answered = 0;
	pthread_cond_broadcast(&set->cv);
	while (cmd != CMD_EXIT && set->answered < threads)
		pthread_cond_wait(&set->cv, &set->mu);
	pthread_mutex_unlock(&set->mu);
}

/* Stop and join the first started threads, destroy the pool, free. */
static void set_free(struct urt_loops *set, unsigned started)
{
	atomic_store(&set->mesh.closing, true);
	command(set, CMD_EXIT, started);
	for (unsigned i = 0; i < started; i++)
		pthread_join(set->threads[i].thread, NULL);
	if (set->pool)
		(void)urt_pool_destroy(set->pool);
	pthread_cond_destroy(&set->cv);
	pthread_mutex_destroy(&set->mu);
	free(set->mesh.loops);
	free(set->threads);
	free(set);
}

int urt_loops_create(urt_loops **out, const struct urt_loops_opts *opts)
{
	struct urt_loops_opts o = { 0 };
	struct urt_loops *set;
	cpu_set_t cpus;
	unsigned ncpus, i, started;
	int ret = 0, cpu;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (opts)
		o = *opts;
	if (o.flags & ~URT_LOOPS_NO_PIN || o.loops > MAX_LOOPS)
		return -EINVAL;
	if (urt__cur_task)
		return -EPERM;
	if (sched_getaffinity(0, sizeof(cpus), &cpus))
		return -errno;
	ncpus = (unsigned)CPU_COUNT(&cpus);
	if (!o.loops)
		o.loops = ncpus < MAX_LOOPS ? ncpus : MAX_LOOPS;
	set = urt__alloc_lines(sizeof(*set));
	if (!set)
		return -ENOMEM;
	set->threads = calloc(o.loops, sizeof(*set->threads));
	set->mesh.loops = calloc(o.loops, sizeof(*set->mesh.loops));
	if (!set->threads || !set->mesh.loops) {
		free(set->threads);
		free(set->mesh.loops);
		free(set);
		return -ENOMEM;
	}
	pthread_mutex_init(&set->mu, NULL);
	pthread_cond_init(&set->cv, NULL);
	set->n = o.loops;
	set->mesh.n = o.loops;
	set->mesh.set = set;
	if (o.loop_opts)
		set->loop_opts = *o.loop_opts;
	ret = urt_pool_create(&set->pool, o.pool_opts);
	if (ret) {
		set->pool = NULL;
		set_free(set, 0);
		return ret;
	}
	set->loop_opts.pool = set->pool;
	set->loop_opts.pool_opts = NULL;
	/* Loop i on the i-th CPU of the mask, modulo their number. */
	for (i = 0, cpu = -1, started = 0; i < o.loops; i++) {
		struct loop_thread *lt = &set->threads[i];

		do
			cpu = (cpu + 1) % CPU_SETSIZE;
		while (!CPU_ISSET(cpu, &cpus));
		*lt = (struct loop_thread){ .set = set, .index = i,
					    .cpu = (o.flags & URT_LOOPS_NO_PIN) ? -1 : cpu };
		ret = -pthread_create(&lt->thread, NULL, loop_main, lt);
		if (ret)
			break;
		started++;
	}
	/* Every started thread answers once its loop is made (or not). */
	pthread_mutex_lock(&set->mu);
	while (set->answered < started)
		pthread_cond_wait(&set->cv, &set->mu);
	pthread_mutex_unlock(&set->mu);
	for (i = 0; i < started; i++) {
		if (!ret && set->threads[i].err)
			ret = set->threads[i].err;
		set->mesh.loops[i] = set->threads[i].loop;
	}
	if (ret) {
		set_free(set, started);
		return ret;
	}
	*out = set;
	return 0;
}

int urt_loops_run(urt_loops *set, urt_task_fn fn, void *arg)
{
	int ret = 0;

	if (!set || !fn)
		return -EINVAL;
	if (urt__cur_task)
		return -EPERM;
	pthread_mutex_lock(&set->mu);
	if (set->running) {
		pthread_mutex_unlock(&set->mu);
		return -EBUSY;
	}
	set->running = true;
	set->fn = fn;
	set->arg = arg;
	pthread_mutex_unlock(&set->mu);
	/* Every loop counts as busy until it finds itself idle. */
	atomic_fetch_add(&set->mesh.active, (long)set->n);
	atomic_fetch_add(&set->mesh.run_gen, 1);
	atomic_store(&set->mesh.running, true);
	command(set, CMD_RUN, set->n);
	atomic_store(&set->mesh.running, false);
	for (unsigned i = 0; i < set->n; i++) {
		if (set->threads[i].err < 0) {
			ret = set->threads[i].err;
			break;
		}
		if (!ret && set->threads[i].result)
			ret = set->threads[i].result;
	}
	pthread_mutex_lock(&set->mu);
	set->running = false;
	pthread_mutex_unlock(&set->mu);
	return ret;
}

int urt_loops_cancel(urt_loops *set)
{
	struct urt__msg_sender *s;

	if (!set)
		return -EINVAL;
	s = urt__xloop_sender();
	if (!s)
		return -ENOMEM;
	urt__mesh_cancel(&set->mesh, s);
	return 0;
}

void urt_loops_destroy(urt_loops *set)
{
	if (!set || set->running || urt__cur_task)
		return;
	set_free(set, set->n);
}

unsigned urt_loops_count(const urt_loops *set)
{
	return set ? set->n : 0;
}

urt_loop *urt_loops_get(const urt_loops *set, unsigned i)
{
	return set && i < set->n ? set->mesh.loops[i] : NULL;
}
