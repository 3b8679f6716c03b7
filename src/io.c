/* io: the operations a task awaits. Each prepares at most one SQE whose
 * record lives on the task's stack, parks the task, and returns the CQE's
 * result once that CQE, and no other event, has woken the task. */
#define _GNU_SOURCE /* struct statx */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "urt_internal.h"

#if URT__TSAN
#include <sanitizer/tsan_interface.h>
#define TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define TSAN_ACQUIRE(p) ((void)0)
#endif

/* The most read(2) transfers in one call. */
#define URT__MAX_RW 0x7ffff000u

static void iop_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__iop *iop = (struct urt__iop *)((char *)op - offsetof(struct urt__iop, op));

	(void)flags;
	iop->res = res;
	iop->done = true;
	urt__wake(iop->task, res);
}


static struct io_uring_sqe *iop_begin(struct urt_task *t, struct urt__iop *iop)
{
	iop->op.done = iop_done;
	iop->task = t;
	iop->res = 0;
	iop->done = false;
	iop->cancel_sent = false;
	return urt__ring_sqe(&t->loop->ring, &iop->op);
}

/* Park until the operation's own CQE arrives: never earlier, even when the
 * task is cancelled meanwhile (urt__iop_cancel only asks the kernel). */
static int iop_wait(struct urt_task *t, struct urt__iop *iop)
{
	t->iop = iop;
	urt__park(t, URT__WAIT_IO);
	t->iop = NULL;
	assert(iop->done);
	return iop->res;
}

/* Now plus ns on CLOCK_MONOTONIC, saturating: "never" stays never. */
static uint64_t deadline_after(uint64_t ns)
{
	uint64_t now = urt_now_ns();

	return ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
}

void urt__iop_cancel(struct urt_task *t)
{
	struct urt__iop *iop = t->iop;
	struct io_uring_sqe *sqe;

	if (iop->cancel_sent)
		return;
	iop->cancel_sent = true;
	sqe = urt__ring_sqe(&t->loop->ring, NULL);
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&iop->op, 0);
}

int urt_sleep_ns(uint64_t ns)
{
	struct urt_task *t = urt__cur_task;
	int ret;

	if (!t)
		return -EPERM;
	if (t->cancelled)
		return -ECANCELED;
	ret = urt__timer_add(t->loop, t, deadline_after(ns));
	if (ret)
		return ret;
	return urt__park(t, URT__WAIT_SLEEP);
}

/* The calling task's next I/O operation: an SQE for iop, or NULL with *err
 * set (-EPERM outside a task, -ECANCELED once the task is cancelled). */
static struct io_uring_sqe *op_start(struct urt__iop *iop, int *err)
{
	struct urt_task *t = urt__cur_task;

	if (!t) {
		*err = -EPERM;
		return NULL;
	}
	if (t->cancelled) {
		*err = -ECANCELED;
		return NULL;
	}
	return iop_begin(t, iop);
}

static uint64_t rw_offset(int64_t offset)
{
	return offset < 0 ? (uint64_t)-1 : (uint64_t)offset;
}

/* The start shared by urt_read and urt_write: the checks in their order
 * (-EPERM, then the length, then cancellation), and the length capped as
 * read(2) and write(2) cap it. NULL with *err set, or an SQE for iop. */
static struct io_uring_sqe *rw_start(struct urt__iop *iop, size_t *len, int *err)
{
	if (!urt__cur_task) {
		*err = -EPERM;
		return NULL;
	}
	if (*len > SSIZE_MAX) {
		*err = -EINVAL;
		return NULL;
	}
	if (*len > URT__MAX_RW)
		*len = URT__MAX_RW;
	return op_start(iop, err);
}

ssize_t urt_read(int fd, void *buf, size_t len, int64_t offset)
{
	struct urt__iop iop;
	int res = 0;
	struct io_uring_sqe *sqe = rw_start(&iop, &len, &res);

	if (!sqe)
		return res;
	io_uring_prep_read(sqe, fd, buf, (unsigned)len, rw_offset(offset));
	res = iop_wait(urt__cur_task, &iop);
#if URT__VALGRIND
	/* The kernel filled the buffer behind valgrind's back. */
	if (res > 0)
		VALGRIND_MAKE_MEM_DEFINED(buf, (size_t)res);
#endif
	return res;
}

ssize_t urt_write(int fd, const void *buf, size_t len, int64_t offset)
{
	struct urt__iop iop;
	int res = 0;
	struct io_uring_sqe *sqe = rw_start(&iop, &len, &res);

	if (!sqe)
		return res;
	io_uring_prep_write(sqe, fd, buf, (unsigned)len, rw_offset(offset));
	return iop_wait(urt__cur_task, &iop);
}

int urt_fsync(int fd, unsigned flags)
{
	struct io_uring_sqe *sqe;
	struct urt__iop iop;
	int res = 0;

	if (!urt__cur_task)
		return -EPERM;
	if (flags & ~URT_FSYNC_DATA)
		return -EINVAL;
	sqe = op_start(&iop, &res);
	if (!sqe)
		return res;
	io_uring_prep_fsync(sqe, fd, (flags & URT_FSYNC_DATA) ? IORING_FSYNC_DATASYNC : 0);
	return iop_wait(urt__cur_task, &iop);
}

/* Vectored read or write: the kernel checks the vector (-EINVAL for more
 * than IOV_MAX entries, -EFAULT for a bad one). */
static ssize_t rwv(int fd, const struct iovec *iov, int iovcnt, int64_t offset, bool write)
{
	struct io_uring_sqe *sqe;
	struct urt__iop iop;
	int res = 0;

	if (!urt__cur_task)
		return -EPERM;
	if (iovcnt < 0)
		return -EINVAL;
	sqe = op_start(&iop, &res);
	if (!sqe)
		return res;
	if (write)
		io_uring_prep_writev(sqe, fd, iov, (unsigned)iovcnt, rw_offset(offset));
	else
		io_uring_prep_readv(sqe, fd, iov, (unsigned)iovcnt, rw_offset(offset));
	res = iop_wait(urt__cur_task, &iop);
#if URT__VALGRIND
	for (int i = 0, left = res; !write && i < iovcnt && left > 0; i++) {
		size_t n = iov[i].iov_len < (size_t)left ? iov[i].iov_len : (size_t)left;

		VALGRIND_MAKE_MEM_DEFINED(iov[i].iov_base, n);
		left -= (int)n;
	}
#endif
	return res;
}

ssize_t urt_readv(int fd, const struct iovec *iov, int iovcnt, int64_t offset)
{
	return rwv(fd, iov, iovcnt, offset, false);
}

ssize_t urt_writev(int fd, const struct iovec *iov, int iovcnt, int64_t offset)
{
	return rwv(fd, iov, iovcnt, offset, true);
}

int urt_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	struct io_uring_sqe *sqe;
	struct urt__iop iop;
	int res = 0;

	if (!urt__cur_task)
		return -EPERM;
	if (!path)
		return -EFAULT;
	sqe = op_start(&iop, &res);
	if (!sqe)
		return res;
	io_uring_prep_openat(sqe, dirfd, path, flags, mode);
	res = iop_wait(urt__cur_task, &iop);
	/* Cancelled, but the kernel opened it anyway: the caller was told
	 * -ECANCELED and will never close this fd, so close it here. */
	if (res >= 0 && iop.cancel_sent) {
		close(res);
		res = -ECANCELED;
	}
	return res;
}

int urt_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out)
{
	struct io_uring_sqe *sqe;
	struct urt__iop iop;
	int res = 0;

	if (!urt__cur_task)
		return -EPERM;
	if (!path || !out)
		return -EFAULT;
	sqe = op_start(&iop, &res);
	if (!sqe)
		return res;
	io_uring_prep_statx(sqe, dirfd, path, flags, mask, out);
	res = iop_wait(urt__cur_task, &iop);
#if URT__VALGRIND
	if (res == 0)
		VALGRIND_MAKE_MEM_DEFINED(out, sizeof(*out));
#endif
	return res;
}

int urt_close(int fd)
{
	struct io_uring_sqe *sqe;
	struct urt__iop iop;
	int res = 0;

	sqe = op_start(&iop, &res);
	if (!sqe)
		return res;
	io_uring_prep_close(sqe, fd);
	return iop_wait(urt__cur_task, &iop);
}

/* ---- offloaded jobs ---- */

static struct urt_loop *loop_of_ring(struct urt__ring *r)
{
	return (struct urt_loop *)((char *)r - offsetof(struct urt_loop, ring));
}

static void job_done(struct urt__op *op, int32_t res, uint32_t flags)
{
	struct urt__job *job = (struct urt__job *)((char *)op - offsetof(struct urt__job, op));
	struct urt_loop *loop = loop_of_ring(job->ring);
	struct urt_task *t = job->waiter;

	(void)flags;
	TSAN_ACQUIRE(job);
	loop->jobs_inflight--;
	if (job->lprev)
		job->lprev->lnext = job->lnext;
	else
		loop->jobs = job->lnext;
	if (job->lnext)
		job->lnext->lprev = job->lprev;
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
	if (t) {
		t->job = NULL;
		urt__timer_del(t->loop, t);
		urt__wake(t, res);
	}
	free(job);
}

void urt__job_abandon(struct urt_task *t, int res)
{
	t->job->waiter = NULL;
	t->job = NULL;
	urt__timer_del(t->loop, t);
	urt__wake(t, res);
}

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
	job->op.done = job_done;
	job->waiter = t;
	job->ring = &loop->ring;
	job->ring_fd = loop->ring.ring.ring_fd;
	job->next = NULL;
	job->res = 0;
	atomic_init(&job->state, URT__JOB_QUEUED);
	job->lprev = NULL;
	job->lnext = loop->jobs;
	if (loop->jobs)
		loop->jobs->lprev = job;
	loop->jobs = job;
	if (loop->jq_tail)
		loop->jq_tail->next = job;
	else
		loop->jq_head = job;
	loop->jq_tail = job;
	loop->jq_n++;
	loop->jobs_inflight++;
	urt__ring_expect(&loop->ring);
	return 0;
}

/* Whether the calling task t may offload fn: 0 or -errno. */
static int offload_allowed(const struct urt_task *t, void (*fn)(void *))
{
	if (!t)
		return -EPERM;
	if (!fn)
		return -EINVAL;
	if (t->cancelled)
		return -ECANCELED;
	return 0;
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
	return urt__park(t, URT__WAIT_POOL);
}

int urt__job_run(void (*fn)(void *), void *arg, void (*dtor)(void *), uint64_t timeout_ns)
{
	struct urt_task *t = urt__cur_task;
	struct urt__job *job;
	int ret = offload_allowed(t, fn);

	/* -ECANCELED always hands arg to the pool, also before submitting:
	 * the caller cannot tell the two apart, so both must mean the same. */
	if (ret == -ECANCELED && dtor)
		dtor(arg);
	if (ret)
		return ret;
	job = calloc(1, sizeof(*job));
	if (!job)
		return -ENOMEM;
	job->fn = fn;
	job->arg = arg;
	job->dtor = dtor;
	job->owned = true;
	ret = job_submit(t, job);
	if (ret) {
		free(job);
		return ret;
	}
	t->job = job;
	/* On -ENOMEM the job is queued already: wait without a deadline
	 * rather than leave it without an owner. */
	if (timeout_ns)
		(void)urt__timer_add(t->loop, t, deadline_after(timeout_ns));
	return urt__park(t, URT__WAIT_JOB);
}

void urt__jobs_drop(struct urt_loop *loop)
{
	struct urt__job *j;

	/* A job a worker has claimed but not started is marked: the worker
	 * posts its completion with -ECANCELED instead of running it. */
	for (j = loop->jobs; j; j = j->lnext) {
		int queued = URT__JOB_QUEUED;

		atomic_compare_exchange_strong(&j->state, &queued, URT__JOB_DROPPED);
	}
	/* Jobs not yet handed to the pool complete here and now. */
	while ((j = loop->jq_head)) {
		loop->jq_head = j->next;
		urt__ring_complete(&loop->ring, &j->op, -ECANCELED);
	}
	loop->jq_tail = NULL;
	loop->jq_n = 0;
	/* Jobs still in the pool's queue are taken back and complete here. */
	if (loop->pool)
		urt__pool_drop(loop->pool, &loop->ring);
}
