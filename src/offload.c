/* offload: the loop's side of the pool. A task's job is queued for the
 * loop's next turn, handed to the pool with the turn's others, and
 * completed from the loop's finished list when the pool's wake-up
 * arrives. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "op.h"

/* ---- offloaded jobs ---- */

static struct urt_loop *loop_of_done(struct urt__done *d)
{
	return (struct urt_loop *)((char *)d - offsetof(struct urt_loop, done));
}

static void job_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__job *job = (struct urt__job *)((char *)op - offsetof(struct urt__job, op));
	struct urt_loop *loop = loop_of_done(job->done);
	struct urt_task *t = job->waiter;

	(void)flags;
	loop->jobs_inflight--;
	LIST_REMOVE(job, out_link);
	if (!job->owned) {
		job->res = res;
		urt__wake(t, res);
		return;
	}
	/* An owned job: whoever owns arg now is told, then the record goes.
	 * A dropped job's arg belongs to the pool, as an abandoned one's. */
	if (!t || res < 0) {
		if (job->dtor)
			job->dtor(job->arg);
	}
	if (t)
		urt__wake(t, res);
	free(job);
}

/* An owned job's waiter leaves on a cancel or its deadline: the job runs
 * on, and its completion runs the destructor. */
static void job_interrupt(struct urt_task *t, int res)
{
	struct urt__job *job = t->wait.obj;

	job->waiter = NULL;
	urt__wake(t, res);
}

/* A wake-up from the pool: every job on the finished list completes, in
 * the order the workers finished them. */
static void done_wake(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__done *d = (struct urt__done *)((char *)op - offsetof(struct urt__done, wake));
	struct urt_loop *loop = loop_of_done(d);
	struct urt__job *j, *next;

	(void)res;
	(void)flags;
	for (j = urt__done_take(d); j; j = next) {
		next = j->next; /* an owned job is freed as it completes */
		urt__ring_complete(&loop->ring, &j->op, j->res);
	}
}

static void jobs_close_with_loop(struct urt__closable *c, enum urt__close_stage stage);

/* Queue a job for the loop's next turn, which hands every job queued in the
 * turn to the pool at once. */
static int job_submit(struct urt_task *t, struct urt__job *job)
{
	struct urt_loop *loop = t->loop;
	struct urt_pool *pool;

	if (loop->destroying)
		return -ESHUTDOWN;
	pool = urt_loop_pool(loop);
	if (!pool)
		return loop->pool_err;
	if (!loop->done.wake.done) {
		loop->done.wake.done = done_wake;
		loop->done.wake.unsolicited = true;
		loop->done.ring_fd = loop->ring.ring.ring_fd;
		loop->jobs_closable.close = jobs_close_with_loop;
		urt__closable_add(loop, &loop->jobs_closable);
	}
	job->op = (struct urt__op){ .done = job_done };
	job->waiter = t;
	job->done = &loop->done;
	job->next = NULL;
	job->res = 0;
	atomic_init(&job->state, URT__JOB_QUEUED);
	LIST_INSERT_HEAD(&loop->jobs_out, job, out_link);
	if (loop->handoff_tail)
		loop->handoff_tail->next = job;
	else
		loop->handoff_head = job;
	loop->handoff_tail = job;
	loop->handoff_n++;
	loop->jobs_inflight++;
	urt__ring_expect(&loop->ring);
	return 0;
}

/* Whether the calling task t may offload fn: 0 or -errno. */
static int offload_allowed(struct urt_task *t, void (*fn)(void *))
{
	if (!t)
		return -EPERM;
	if (!fn)
		return -EINVAL;
	return urt__wait_check(t);
}

int urt__to_thread(void (*fn)(void *), void *arg)
{
	struct urt_task *t = urt__cur_task;
	struct urt__job job = { .fn = fn, .arg = arg };
	int ret = offload_allowed(t, fn);

	if (ret)
		return ret;
	ret = job_submit(t, &job);
	if (ret)
		return ret;
	/* The job lives in this frame: only its completion may wake us. */
	return urt__park(t, NULL, &job);
}

int urt__job_run(void (*fn)(void *), void *arg, void (*dtor)(void *), uint64_t timeout_ns)
{
	struct urt_task *t = urt__cur_task;
	struct urt__job *job;
	uint64_t at;
	int ret = offload_allowed(t, fn);

	/* -ECANCELED and -ETIMEDOUT always hand arg to the pool, also before
	 * submitting: the caller cannot tell the cases apart, so they must
	 * mean the same. */
	if ((ret == -ECANCELED || ret == -ETIMEDOUT) && dtor)
		dtor(arg);
	if (ret)
		return ret;
	job = aligned_alloc(_Alignof(struct urt__job), sizeof(*job));
	if (!job)
		return -ENOMEM;
	memset(job, 0, sizeof(*job));
	job->fn = fn;
	job->arg = arg;
	job->dtor = dtor;
	job->owned = true;
	ret = job_submit(t, job);
	if (ret) {
		free(job);
		return ret;
	}
	/* The earlier of its own timeout and the task's deadline. On -ENOMEM
	 * the job is queued already: wait without a deadline rather than
	 * leave it without an owner. */
	at = timeout_ns ? urt__deadline_after(timeout_ns) : UINT64_MAX;
	if (t->deadline < at)
		at = t->deadline;
	if (at != UINT64_MAX)
		(void)urt__timer_add(&t->loop->timers, t, at);
	return urt__park(t, job_interrupt, job);
}

/* Loop destroy, once its tasks are cancelled: drop every job no worker
 * has started. */
static void jobs_drop(struct urt_loop *loop)
{
	struct urt__job *j;

	/* A job a worker has claimed but not started is marked: the worker
	 * posts its completion with -ECANCELED instead of running it. */
	LIST_FOREACH(j, &loop->jobs_out, out_link) {
		int queued = URT__JOB_QUEUED;

		atomic_compare_exchange_strong(&j->state, &queued, URT__JOB_DROPPED);
	}
	/* Jobs not yet handed to the pool complete here and now. */
	while ((j = loop->handoff_head)) {
		loop->handoff_head = j->next;
		urt__ring_complete(&loop->ring, &j->op, -ECANCELED);
	}
	loop->handoff_tail = NULL;
	loop->handoff_n = 0;
	/* Jobs still in the pool's queue are taken back and complete here. */
	if (loop->pool) {
		struct urt__job *next;

		for (j = urt__pool_drop(loop->pool, &loop->done); j; j = next) {
			next = j->next;
			urt__ring_complete(&loop->ring, &j->op, -ECANCELED);
		}
	}
}

static void jobs_close_with_loop(struct urt__closable *c, enum urt__close_stage stage)
{
	struct urt_loop *loop = (struct urt_loop *)((char *)c -
						    offsetof(struct urt_loop, jobs_closable));

	if (stage == URT__CLOSE_CANCEL)
		jobs_drop(loop);
}


/* ---- the loop's side of the pool ---- */

urt_pool *urt_loop_pool(urt_loop *loop)
{
	if (!loop)
		return NULL;
	if (!loop->pool && !loop->pool_err) {
		int ret = urt__pool_start(&loop->pool, &loop->pool_opts);

		if (ret) {
			loop->pool_err = ret;
			return NULL;
		}
		loop->own_pool = true;
		urt__pool_attach(loop->pool);
	}
	return loop->pool;
}

/* Hand the jobs queued during this turn to the pool, in one batch. */
void urt__offload_flush(struct urt_loop *loop)
{
	if (!loop->handoff_n)
		return;
	urt__pool_push(loop->pool, loop->handoff_head, loop->handoff_tail, loop->handoff_n);
	loop->handoff_head = loop->handoff_tail = NULL;
	loop->handoff_n = 0;
}

/* With jobs in flight, a completion is often microseconds away, and waking
 * from a sleep in the kernel costs more than that on an idle CPU (see the
 * README): spin for it a bounded while. True when something arrived. */
bool urt__offload_spin(struct urt_loop *loop)
{
	uint64_t until;

	if (!loop->jobs_inflight || !loop->spin_ns)
		return false;
	until = urt_now_ns() + loop->spin_ns;
	do {
		for (int i = 0; i < 64; i++) {
			if (urt__ring_pending(&loop->ring))
				return true;
#if defined(__x86_64__)
			__builtin_ia32_pause();
#endif
		}
	} while (urt_now_ns() < until);
	return false;
}
