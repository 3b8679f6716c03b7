/* offload: the loop's side of the pool. A task's job is queued for the
 * loop's next turn, handed to the pool with the turn's others, and
 * completed from the loop's finished list, which the loop looks at each
 * turn; a loop that sleeps in the kernel with jobs out is woken by the
 * pool's message. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "op.h"

/*
 * The loop's side of the pool, allocated with the loop. Its finished list
 * comes first, on lines of its own, since pool workers write it.
 */
struct urt__offload {
	struct urt__done done;      /* finished jobs, from the pool */
	struct urt_loop *loop;
	struct urt_pool *pool;      /* NULL until the first job, unless shared */
	bool own_pool;
	int pool_err;               /* why the own pool could not start */
	struct urt_pool_opts pool_opts;
	struct urt__job *handoff_head, *handoff_tail; /* jobs to hand to the pool
						       * at the end of this turn */
	unsigned handoff_n;
	struct urt__job *sqe_head, *sqe_tail; /* the ring's SQEs, this batch */
	unsigned sqe_n;
	struct urt__closable closable;
	uint64_t inflight;          /* jobs submitted, not back yet */
	bool marked;                /* the finished list carries our sleep mark */
	int owed;                   /* messages of marks that workers took, on
				     * their way (0 or 1 between turns; -1
				     * within a turn whose message came before
				     * its mark was found taken) */
	uint64_t spin_ns;
	bool timed;                 /* URT_LOOP_METRICS: time each job */
	uint64_t jobs_done, job_wait_ns, job_run_ns;
};

/* ---- offloaded jobs ---- */

static struct urt__offload *off_of_done(struct urt__done *d)
{
	return (struct urt__offload *)((char *)d - offsetof(struct urt__offload, done));
}

/* A job goes out (to be handed to the pool): the loop expects its
 * completion, which done() gets, and destroy can drop it. */
static void job_out(struct urt__offload *off, struct urt__job *job,
		    void (*done)(struct urt__op *op, int32_t res, uint32_t flags))
{
	job->op = (struct urt__op){ .done = done };
	job->done = &off->done;
	job->owner = off;
	job->next = NULL;
	job->timed = off->timed;
	if (job->timed)
		job->t_queued = urt_now_ns();
	off->inflight++;
	urt__ring_expect(&off->loop->ring);
}

/* A job is back (its done() runs with res): no longer out, and counted
 * when it ran. Returns its loop's side. Only the job's line of the loop's
 * is read, but for the worker's times when they were taken. */
static struct urt__offload *job_back(struct urt__job *job, int32_t res)
{
	struct urt__offload *off = job->owner;

	off->inflight--;
	if (off->timed && res >= 0) {
		off->jobs_done++;
		off->job_wait_ns += job->t_start - job->t_queued;
		off->job_run_ns += job->t_end - job->t_start;
	}
	return off;
}

static void job_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__job *job = (struct urt__job *)((char *)op - offsetof(struct urt__job, op));
	struct urt_task *t = job->waiter;
	(void)flags;
	(void)job_back(job, res);
	if (!job->owned) {
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

static void done_one(void *ctx, struct urt__job *j, int32_t res)
{
	urt__ring_complete(ctx, &j->op, res);
}

/* Complete every job on the finished list, in the order the workers
 * finished them: whether there was one. */
static bool done_complete(struct urt__offload *off)
{
	return urt__done_take(&off->done, done_one, &off->loop->ring);
}

/* A wake-up from the pool: the message that settles our sleep mark. */
static void done_wake(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__done *d = (struct urt__done *)((char *)op - offsetof(struct urt__done, wake));

	(void)res;
	(void)flags;
	urt__msg_acquired(&d->wake); /* what its sender read of ours, before */
	off_of_done(d)->owed--;
	(void)done_complete(off_of_done(d));
}

/* Queue a job for the loop's next turn, which hands every job queued in the
 * turn to the pool at once. */
static int job_submit(struct urt_task *t, struct urt__job *job)
{
	struct urt_loop *loop = t->loop;
	struct urt__offload *off = loop->offload;

	if (loop->closing)
		return -ESHUTDOWN;
	if (!urt_loop_pool(loop))
		return off->pool_err;
	job->waiter = t;
	job_out(off, job, job_done);
	if (off->handoff_tail)
		off->handoff_tail->next = job;
	else
		off->handoff_head = job;
	off->handoff_tail = job;
	if (!off->handoff_n++)
		loop->turn_due++;
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
	struct urt__job job;
	int ret = offload_allowed(t, fn);

	if (ret)
		return ret;
	/* Only what job_submit and job_out leave alone is set here: zeroing
	 * the whole record (four cache lines, which a worker wrote last time)
	 * cost W3 a tenth of its rate. */
	job.fn = fn;
	job.arg = arg;
	job.dtor = NULL;
	job.owned = false;
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

/* Take the jobs of this turn back from the hand-off: returned as a list
 * linked by next. */
static struct urt__job *handoff_take(struct urt__offload *off)
{
	struct urt__job *head = off->handoff_head;

	if (off->handoff_n)
		off->loop->turn_due--;
	off->handoff_head = off->handoff_tail = NULL;
	off->handoff_n = 0;
	return head;
}

/* Complete a list of jobs (linked by next) that never ran. */
static void complete_dropped(struct urt__ring *ring, struct urt__job *j)
{
	while (j) {
		struct urt__job *next = j->next; /* an owned job is freed */

		urt__ring_complete(ring, &j->op, -ECANCELED);
		j = next;
	}
}

/* Loop destroy, once its tasks are cancelled: drop every job no worker
 * has taken (a worker that takes one later drops it too). */
static void jobs_drop(struct urt__offload *off)
{
	struct urt__ring *ring = &off->loop->ring;

	/* Jobs not yet handed to the pool complete here and now; so do jobs
	 * still in the pool's queue, taken back. */
	complete_dropped(ring, handoff_take(off));
	if (off->pool)
		complete_dropped(ring, urt__pool_drop(off->pool, &off->done));
}

static void jobs_close_with_loop(struct urt__closable *c, enum urt__close_stage stage)
{
	struct urt__offload *off = (struct urt__offload *)((char *)c -
							   offsetof(struct urt__offload, closable));

	if (stage == URT__CLOSE_CANCEL)
		jobs_drop(off);
}


/* ---- SQEs the epoll backend cannot run without blocking ---- */

/* A job that runs one SQE for the ring (regular-file I/O, open, statx,
 * fsync on the epoll backend). The ring runs its SQEs in the turn, after
 * the turn's hand-off of jobs: the SQEs' jobs go to the pool in a batch of
 * their own when the ring says its batch is complete. */
struct sqe_job {
	struct urt__job job;
	struct urt__ring_exec *x;
	int32_t res;
};

static void sqe_job_run(void *arg)
{
	struct sqe_job *sj = arg;

	sj->res = urt__ring_exec_run(sj->x);
}

static void sqe_job_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct sqe_job *sj = (struct sqe_job *)((char *)op - offsetof(struct sqe_job, job.op));
	struct urt__offload *off = job_back(&sj->job, res);

	(void)flags;
	/* Dropped before it ran (the loop is being destroyed): -ECANCELED. */
	urt__ring_exec_done(&off->loop->ring, sj->x, res < 0 ? res : sj->res);
	free(sj);
}

static int sqe_job_submit(void *ctx, struct urt__ring_exec *x)
{
	struct urt__offload *off = ctx;
	struct sqe_job *sj;

	if (!x || x == URT__RING_EXEC_WAIT) {
		if (off->sqe_n)
			urt__pool_push(off->pool, off->sqe_head, off->sqe_tail, off->sqe_n);
		off->sqe_head = off->sqe_tail = NULL;
		off->sqe_n = 0;
		/* The turn waits next, maybe with these jobs out: the first
		 * to finish must wake it. */
		return x && !urt__offload_sleep(off->loop);
	}
	if (!urt_loop_pool(off->loop))
		return off->pool_err;
	sj = aligned_alloc(_Alignof(struct sqe_job), sizeof(*sj));
	if (!sj)
		return -ENOMEM;
	memset(sj, 0, sizeof(*sj));
	sj->x = x;
	sj->job.fn = sqe_job_run;
	sj->job.arg = sj;
	job_out(off, &sj->job, sqe_job_done);
	if (off->sqe_tail)
		off->sqe_tail->next = &sj->job;
	else
		off->sqe_head = &sj->job;
	off->sqe_tail = &sj->job;
	off->sqe_n++;
	return 0;
}

/* ---- the loop's side of the pool ---- */

int urt__offload_init(struct urt_loop *loop, struct urt_pool *pool,
		      const struct urt_pool_opts *pool_opts, uint64_t spin_ns, bool timed)
{
	struct urt__offload *off = urt__alloc_lines(sizeof(*off));

	if (!off)
		return -ENOMEM;
	off->loop = loop;
	off->done.wake.done = done_wake;
	off->done.ring = &loop->ring;
	if (pool_opts)
		off->pool_opts = *pool_opts;
	if (pool) {
		off->pool = pool;
		urt__pool_attach(pool);
	}
	off->spin_ns = spin_ns;
	off->timed = timed;
	off->closable.close = jobs_close_with_loop;
	urt__closable_add(loop, &off->closable);
	urt__ring_set_exec(&loop->ring, sqe_job_submit, off);
	loop->offload = off;
	loop->done = &off->done;
	return 0;
}

bool urt__offload_fini(struct urt_loop *loop, bool drained)
{
	struct urt__offload *off = loop->offload;
	bool busy;

	busy = !drained && off->inflight && !off->own_pool;
	if (off->pool) {
		/* A pool that runs on may have a worker still looking at our
		 * finished list, after its last job was taken. */
		if (!off->own_pool && !busy)
			urt__pool_quiesce(off->pool, &off->done);
		urt__pool_detach(off->pool);
		/* Joins the workers: none touches this loop afterwards. */
		if (off->own_pool)
			urt_pool_destroy(off->pool);
	}
	if (!busy) {
		urt__closable_del(loop, &off->closable);
		free(off);
		loop->offload = NULL;
		loop->done = NULL;
	}
	return busy;
}

void urt__offload_metrics(struct urt_loop *loop, struct urt_loop_metrics *m)
{
	struct urt__offload *off = loop->offload;

	m->jobs_inflight = off->inflight;
	m->pool_queued = off->pool ? urt__pool_queued(off->pool) : 0;
	m->jobs_done = off->jobs_done;
	m->job_wait_ns = off->job_wait_ns;
	m->job_run_ns = off->job_run_ns;
}

urt_pool *urt_loop_pool(urt_loop *loop)
{
	struct urt__offload *off;

	if (!loop)
		return NULL;
	off = loop->offload;
	if (!off->pool && !off->pool_err) {
		int ret = urt__pool_start(&off->pool, &off->pool_opts);

		if (ret) {
			off->pool_err = ret;
			return NULL;
		}
		off->own_pool = true;
		urt__pool_attach(off->pool);
	}
	return off->pool;
}

void urt__offload_flush(struct urt_loop *loop)
{
	struct urt__offload *off = loop->offload;
	struct urt__job *tail = off->handoff_tail;
	unsigned n = off->handoff_n;

	if (n)
		urt__pool_push(off->pool, handoff_take(off), tail, n);
}

void urt__offload_poll(struct urt_loop *loop)
{
	struct urt__offload *off = loop->offload;

	if (off->inflight)
		(void)done_complete(off);
}

bool urt__offload_sleep(struct urt_loop *loop)
{
	struct urt__offload *off = loop->offload;
	bool ready;

	if (!off->inflight)
		return true;
	/* Jobs that finished meanwhile wake their tasks, which run first;
	 * so does one that finishes as we mark. */
	if (done_complete(off))
		return false;
	/* Marked in this turn already (the epoll backend's batch), or a
	 * message is on its way: it wakes us. */
	if (off->marked || off->owed > 0)
		return true;
	if (!urt__done_mark(&off->done, &ready))
		return false;
	off->marked = true;
	urt__ring_expect(&loop->ring); /* the message that settles the mark */
	/* A job came as we marked: run its task first; the mark is taken
	 * back (or its message awaited) after the turn, as any other. */
	return !ready;
}

void urt__offload_awake(struct urt_loop *loop)
{
	struct urt__offload *off = loop->offload;

	if (!off->marked)
		return;
	off->marked = false;
	if (urt__done_unmark(&off->done))
		urt__ring_unexpect(&loop->ring); /* no worker took the mark */
	else
		off->owed++; /* its message comes, or came in this turn */
}

bool urt__offload_owed(struct urt_loop *loop)
{
	return loop->offload->owed > 0;
}

bool urt__offload_done_ready(void *loop)
{
	return urt__done_ready(&((struct urt_loop *)loop)->offload->done);
}

/* With jobs in flight, a completion is often microseconds away, and waking
 * from a sleep in the kernel costs more than that on an idle CPU (see the
 * README): spin for it a bounded while, watching the finished list and
 * the ring. */
bool urt__offload_spin(struct urt_loop *loop)
{
	struct urt__offload *off = loop->offload;

	if (!off->inflight || !off->spin_ns)
		return false;
	return urt__ring_spin(&loop->ring, off->spin_ns, urt__offload_done_ready, loop);
}
