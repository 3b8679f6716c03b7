/* loop: a loop's life: create, run (the turn: run the ready tasks, hand
 * jobs to the pool, arm the timeout, submit and wait, dispatch), stop,
 * destroy; its counters. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "op.h"


#define DEFAULT_ENTRIES 256u
#define DEFAULT_STACK (64u * 1024u)
#define DEFAULT_RESIDENT 256u
#define TRIM_QUIET_NS (200u * 1000000u) /* quiet this long: stacks go back */
#define TRIM_SLICE 256u                     /* stacks given back per wait */
#define TRIM_GAP_NS (10u * 1000000u)        /* between two such waits */
#define MIN_STACK (16u * 1024u)
#define MAX_STACK ((size_t)1 << 30)
#define DEFAULT_SPIN_NS 20000u

/* ---- metrics ---- */

/* The lag monitor (below): its task, its figures. */
struct urt__lag {
	struct urt_lag_info info;
	struct urt_task *task;      /* NULL once it has ended */
	bool on;
	uint64_t p_ticks, p50, p99; /* the percentiles as of p_ticks ticks */
	struct urt_hist late, sched;
};


#define NMETRICS (sizeof(struct urt_loop_metrics) / sizeof(uint64_t))

/* The snapshot other threads read: a sequence count, odd while the loop
 * writes, around the values (a seqlock; every access atomic). */
struct urt__metrics_pub {
	_Atomic uint64_t seq;
	_Atomic uint64_t v[NMETRICS];
};

static void metrics_now(struct urt_loop *loop, struct urt_loop_metrics *m)
{
	/* The lag monitor's task is no task of the service's: not live, so
	 * neither ready nor running. */
	const struct urt_task *cur = urt__cur_task;
	const struct urt_task *mon = loop->lag ? loop->lag->task : NULL;
	uint64_t ready = loop->rq_len + loop->yq_len - (mon && mon->state == URT__READY ? 1 : 0);
	uint64_t running = cur && cur->loop == loop && !cur->daemon ? 1 : 0;

	*m = (struct urt_loop_metrics){
		.busy_ns = loop->busy_ns,
		.idle_ns = loop->idle_ns,
		.turns = loop->turns,
		.tasks_live = loop->live,
		.tasks_ready = ready,
		.tasks_parked = loop->live > ready + running ? loop->live - ready - running : 0,
		.sqes = loop->ring.sqes,
		.cqes = loop->ring.cqes,
		.messages = loop->ring.expected,
		.settled = loop->ring.settled,
		.inflight = loop->ring.inflight,
		.more = loop->ring.more,
		.cq_overflows = loop->ring.overflows,
	};
	/* Busy time up to now, while the loop runs. */
	if (loop->metrics && loop->running)
		m->busy_ns += urt_now_ns() - loop->mark_ns;
	urt__offload_metrics(loop, m);
	if (loop->lag) {
		struct urt__lag *lag = loop->lag;

		if (lag->p_ticks != lag->info.ticks) {
			lag->p50 = urt_hist_percentile(&lag->late, 50);
			lag->p99 = urt_hist_percentile(&lag->late, 99);
			lag->p_ticks = lag->info.ticks;
		}
		m->lag_ticks = lag->info.ticks;
		m->lag_p50_ns = lag->p50;
		m->lag_p99_ns = lag->p99;
		m->lag_max_ns = lag->late.max;
	}
}

static void metrics_publish(struct urt_loop *loop)
{
	struct urt__metrics_pub *p = loop->pub;
	struct urt_loop_metrics m;
	const uint64_t *v = (const uint64_t *)&m;

	metrics_now(loop, &m);
	atomic_fetch_add_explicit(&p->seq, 1, memory_order_acq_rel);
	for (size_t i = 0; i < NMETRICS; i++)
		atomic_store_explicit(&p->v[i], v[i], memory_order_relaxed);
	atomic_fetch_add_explicit(&p->seq, 1, memory_order_release);
}

static void metrics_read(struct urt__metrics_pub *p, struct urt_loop_metrics *m)
{
	uint64_t *v = (uint64_t *)m, s;

	for (;;) {
		s = atomic_load_explicit(&p->seq, memory_order_acquire);
		if (s & 1)
			continue; /* the loop is writing: a dozen stores */
		for (size_t i = 0; i < NMETRICS; i++)
			v[i] = atomic_load_explicit(&p->v[i], memory_order_relaxed);
		/* A read-modify-write orders the loads above before it. */
		if (atomic_fetch_add_explicit(&p->seq, 0, memory_order_acq_rel) == s)
			return;
	}
}

int urt_loop_metrics(urt_loop *loop, struct urt_loop_metrics *out)
{
	if (!loop || !out)
		return -EINVAL;
	if (urt__owned(loop)) {
		metrics_now(loop, out);
		return 0;
	}
	if (!loop->pub)
		return -EPERM;
	metrics_read(loop->pub, out);
	return 0;
}

/* ---- the lag monitor ---- */

static int lag_task(void *arg)
{
	struct urt_loop *loop = arg;
	struct urt__lag *lag = loop->lag;

	while (lag->on) {
		uint64_t due = urt_now_ns() + lag->info.interval_ns, now, late;

		if (urt_sleep_ns(lag->info.interval_ns))
			break; /* cancelled: stopped, or the loop is destroyed */
		now = urt_now_ns();
		late = now > due ? now - due : 0;
		urt_hist_record(&lag->late, late);
		lag->info.ticks++;
		lag->info.last_at_ns = now;
		lag->info.last_late_ns = late;
		/* The culprit: the longest run since the tick before. */
		lag->info.last_culprit_ran_ns = loop->longest_ns;
		snprintf(lag->info.last_culprit, sizeof(lag->info.last_culprit), "%s",
			 loop->longest_ns ? loop->longest_name : "");
		loop->longest_ns = 0;
		if (late >= lag->info.worst_late_ns) {
			lag->info.worst_late_ns = late;
			lag->info.worst_at_ns = now;
			lag->info.worst_culprit_ran_ns = lag->info.last_culprit_ran_ns;
			snprintf(lag->info.worst_culprit, sizeof(lag->info.worst_culprit), "%s",
				 lag->info.last_culprit);
		}
	}
	lag->task = NULL;
	return 0;
}

int urt_lag_monitor_start(urt_loop *loop, uint64_t interval_ns)
{
	struct urt__lag *lag;
	int ret;

	if (!loop || !interval_ns)
		return -EINVAL;
	if (!urt__owned(loop))
		return -EPERM;
	if (loop->closing)
		return -ESHUTDOWN;
	if (loop->lag && (loop->lag->on || loop->lag->task))
		return -EBUSY;
	if (!loop->lag) {
		loop->lag = calloc(1, sizeof(*loop->lag));
		if (!loop->lag)
			return -ENOMEM;
	}
	lag = loop->lag;
	urt_hist_reset(&lag->late);
	urt_hist_reset(&lag->sched);
	lag->info = (struct urt_lag_info){ .interval_ns = interval_ns };
	lag->p_ticks = 0;
	lag->p50 = lag->p99 = 0;
	lag->on = true;
	ret = urt_spawn(loop, &lag->task, lag_task, loop);
	if (ret) {
		lag->on = false;
		lag->task = NULL;
		return ret;
	}
	(void)urt_task_set_name(lag->task, "urt-lag-monitor");
	/* A daemon: the loop's run ends when the others have. */
	urt__task_daemon(lag->task);
	(void)urt_detach(lag->task);
	urt__sched_delay_measure(loop, &lag->sched);
	return 0;
}

int urt_lag_monitor_stop(urt_loop *loop)
{
	struct urt__lag *lag;

	if (!loop)
		return -EINVAL;
	if (!urt__owned(loop))
		return -EPERM;
	lag = loop->lag;
	if (!lag || !lag->on)
		return -ENOENT;
	lag->on = false;
	urt__sched_delay_measure(loop, NULL);
	if (lag->task)
		(void)urt_cancel(lag->task);
	return 0;
}

int urt_loop_lag(urt_loop *loop, struct urt_hist *lateness, struct urt_hist *sched_delay,
		 struct urt_lag_info *info)
{
	if (!loop)
		return -EINVAL;
	if (!urt__owned(loop))
		return -EPERM;
	if (!loop->lag)
		return -ENOENT;
	if (lateness)
		*lateness = loop->lag->late;
	if (sched_delay)
		*sched_delay = loop->lag->sched;
	if (info) {
		*info = loop->lag->info;
		info->wakeups = loop->sched_wakeups;
	}
	return 0;
}

/* Before the loop sleeps: spin up to idle_poll_ns for a completion (or a
 * timeout's expiry, which the ring flags, or a finished job). True when
 * something came. */
static bool idle_poll(struct urt_loop *loop)
{
	if (!loop->idle_poll_ns || !urt__ring_watches_timeouts(&loop->ring))
		return false;
	/* What this turn prepared goes to the kernel first, or nothing it
	 * asked for could come while we spin. */
	if (urt__ring_queued(&loop->ring) && urt__ring_turn(&loop->ring, false) != 0)
		return true; /* completions (or the ring's error, for the turn) */
	return urt__ring_spin(&loop->ring, loop->idle_poll_ns, urt__offload_done_ready, loop);
}

/* The loop is about to wait in the kernel. Once it has been quiet (no
 * more live tasks than stack_resident, more stacks resident than that)
 * for TRIM_QUIET_NS, the stacks past stack_resident give their pages back,
 * TRIM_SLICE at a wait, TRIM_GAP_NS apart (a madvise each: giving back
 * 500,000 at once held a loop up for seconds); until then its waits end
 * by that time at the latest. A wait with more live tasks calls it off: a
 * burst that comes back soon (a fan-out repeated) finds its stacks' pages
 * still there. 0, or the ring's error. */
static int trim_when_quiet(struct urt_loop *loop)
{
	uint64_t now;

	if (loop->live > loop->stack_resident ||
	    urt__tasks_resident(&loop->tasks) <= loop->stack_resident) {
		loop->trim_at = 0;
		loop->trimming = false;
		return 0;
	}
	now = urt_now_ns();
	if (!loop->trim_at)
		loop->trim_at = now + TRIM_QUIET_NS;
	if (now < loop->trim_at)
		return urt__timer_arm_at(&loop->timers, &loop->ring, loop->trim_at);
	/* The first slice of a quiet spell starts at the most recent. */
	loop->trimming = urt__tasks_trim(&loop->tasks, loop->stack_resident, TRIM_SLICE,
					 !loop->trimming);
	if (!loop->trimming) {
		loop->trim_at = 0;
		return 0;
	}
	loop->trim_at = now + TRIM_GAP_NS;
	return urt__timer_arm_at(&loop->timers, &loop->ring, loop->trim_at);
}

static int run_loop(struct urt_loop *loop)
{
	if (loop->metrics)
		loop->mark_ns = urt_now_ns();
	for (;;) {
		bool wait;
		int ret;

		urt__sched_run_ready(loop);
		urt__xloop_flush(loop);
		/* No task left: done, unless the loop's set is not idle yet
		 * (another loop may still send it work), or a wake-up from
		 * the pool is still on its way (a run leaves nothing of its
		 * own in flight but the loop's timeout). */
		if (!loop->live && urt__xloop_idle(loop) && !urt__offload_owed(loop))
			return 0;
		urt__deadlines_expire(loop);
		urt__offload_flush(loop);
		wait = !loop->rq_head && !loop->yq_head && !loop->stop;
		/* Armed also when the loop will not wait: the kernel then
		 * tells of a sleeper's time, and yields need no turn to see
		 * it (direct_switch_ok). */
		if (loop->timers.n) {
			ret = urt__timer_arm(&loop->timers, &loop->ring);
			if (ret)
				return ret;
		}
		if (wait) {
			if (!loop->timers.n &&
			    loop->ring.inflight == (loop->timers.armed ? 1u : 0u) &&
			    !urt__xloop_in_set(loop)) {
				return -EDEADLK; /* a stale timeout wakes no task */
			}
			if (urt__offload_spin(loop) || idle_poll(loop))
				wait = false;
		}
		/* A burst is over: the stacks it left give their memory
		 * back, once the loop has stayed quiet a while. */
		if (wait) {
			ret = trim_when_quiet(loop);
			if (ret)
				return ret;
		}
		/* Jobs out: the next to finish must wake us (the pool only
		 * messages a loop that has said it sleeps). */
		if (wait && !urt__offload_sleep(loop))
			wait = false;
		loop->turns++;
		if (loop->metrics && wait) {
			uint64_t t0 = urt_now_ns();

			loop->busy_ns += t0 - loop->mark_ns;
			ret = urt__ring_turn(&loop->ring, wait);
			loop->mark_ns = urt_now_ns();
			loop->idle_ns += loop->mark_ns - t0;
		} else {
			ret = urt__ring_turn(&loop->ring, wait);
		}
		urt__offload_awake(loop);
		/* Published after a turn that waited, and every 64 turns of a
		 * loop too busy to wait. */
		if (loop->pub && (wait || !(loop->turns & 63)))
			metrics_publish(loop);
		if (ret < 0)
			return ret;
		urt__offload_poll(loop);
		urt__deadlines_expire(loop);
		urt__sched_splice_yielded(loop);
		if (loop->stop && !loop->destroying) {
			loop->stop = false;
			return -EINTR;
		}
	}
}

int urt_loop_stats(urt_loop *loop, struct urt_loop_stats *out)
{
	if (!loop || !out)
		return -EINVAL;
	*out = (struct urt_loop_stats){
		.sqes = loop->ring.sqes,
		.messages = loop->ring.expected,
		.cqes = loop->ring.cqes,
		.settled = loop->ring.settled,
		.inflight = loop->ring.inflight,
		.spawned = loop->spawned,
		.live = loop->live,
		.more = loop->ring.more,
	};
	return 0;
}

int urt_loop_stop(urt_loop *loop)
{
	if (!loop)
		return -EINVAL;
	if (!urt__owned(loop))
		return -EPERM;
	/* One loop leaving its set's run early would leave the others
	 * waiting for it, and messages to it unanswered. */
	if (urt__xloop_in_set(loop))
		return -EOPNOTSUPP;
	loop->stop = true;
	return 0;
}

/* The calling thread starts running loop (its run, or its destroy's last
 * turns): -EBUSY from a task or while it runs already, -EPERM off its
 * thread. */
static int run_begin(struct urt_loop *loop)
{
	if (urt__cur_task)
		return -EBUSY;
	if (loop->running)
		return -EBUSY;
	if (!urt__owned(loop))
		return -EPERM;
	loop->running = true;
	urt__cur_loop = loop;
	urt__tasks_begin(&loop->tasks);
	return 0;
}

static void run_end(struct urt_loop *loop)
{
	if (loop->metrics)
		loop->busy_ns += urt_now_ns() - loop->mark_ns;
	loop->running = false;
	/* Between runs, other threads see the loop as it was left. */
	if (loop->pub)
		metrics_publish(loop);
	loop->stop = false;
	urt__cur_loop = NULL;
}

int urt_loop_run(urt_loop *loop)
{
	int ret;

	if (!loop)
		return -EINVAL;
	ret = run_begin(loop);
	if (ret)
		return ret;
	ret = run_loop(loop);
	run_end(loop);
	return ret;
}

/* The backend the flags, else URT_BACKEND, ask for (*by: which, or
 * NULL). 0 or -EINVAL. */
static int backend_wanted(unsigned flags, enum urt__backend_want *want, const char **by)
{
	const char *env;

	if ((flags & URT_LOOP_IO_URING) && (flags & URT_LOOP_EPOLL))
		return -EINVAL;
	*want = (flags & URT_LOOP_IO_URING) ? URT__WANT_IO_URING :
		(flags & URT_LOOP_EPOLL)    ? URT__WANT_EPOLL :
					      URT__WANT_ANY;
	*by = *want != URT__WANT_ANY ? "the loop's flags" : NULL;
	env = getenv("URT_BACKEND");
	if (*want != URT__WANT_ANY || !env || !*env)
		return 0;
	if (!strcmp(env, "io_uring"))
		*want = URT__WANT_IO_URING;
	else if (!strcmp(env, "epoll"))
		*want = URT__WANT_EPOLL;
	else
		return -EINVAL;
	*by = "URT_BACKEND";
	return 0;
}

int urt_loop_backend(const urt_loop *loop, const char **why)
{
	if (!loop)
		return -EINVAL;
	if (why)
		*why = loop->ring.why;
	return loop->ring.ep ? URT_BACKEND_EPOLL : URT_BACKEND_IO_URING;
}

int urt_loop_create(urt_loop **out, const struct urt_loop_opts *opts)
{
	enum urt__backend_want want;
	const char *by;
	struct urt_loop_opts o = { 0 };
	struct urt_loop *loop;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t spin_ns;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (opts)
		o = *opts;
	if (o.flags & ~(URT_LOOP_NO_GUARD | URT_LOOP_NO_SPIN | URT_LOOP_IO_URING | URT_LOOP_EPOLL |
			URT_LOOP_METRICS | URT_LOOP_FILES_ON_POOL | URT_LOOP_STALL_BACKTRACE) ||
	    ((o.flags & URT_LOOP_STALL_BACKTRACE) && !o.stall_ns))
		return -EINVAL;
	ret = backend_wanted(o.flags, &want, &by);
	if (ret)
		return ret;
	if (o.stack_size > MAX_STACK)
		return -EINVAL;
	/* The own pool starts at the first offload: its options are checked
	 * now, so that a bad one fails here rather than there. */
	if (o.pool_opts && urt__pool_opts_check(o.pool_opts))
		return -EINVAL;
	if (!o.ring_entries)
		o.ring_entries = DEFAULT_ENTRIES;
	if (o.ring_entries < 2)
		o.ring_entries = 2; /* an operation and its linked timeout */
	if (!o.cq_entries)
		o.cq_entries = 4 * o.ring_entries;
	if (!o.stack_size)
		o.stack_size = DEFAULT_STACK;
	if (o.stack_size < MIN_STACK)
		o.stack_size = MIN_STACK;
	o.stack_size = (o.stack_size + ps - 1) & ~(ps - 1);

	loop = urt__alloc_lines(sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	ret = urt__ring_init(&loop->ring, o.ring_entries, o.cq_entries, want);
	if (!ret && by) {
		size_t n = strlen(loop->ring.why);

		snprintf(loop->ring.why + n, sizeof(loop->ring.why) - n, " (asked for by %s)", by);
	}
	if (ret)
		goto out_free;
	if (o.flags & URT_LOOP_FILES_ON_POOL)
		urt__ring_files_on_pool(&loop->ring);
	ret = urt__overflow_report_install();
	if (ret)
		goto out_ring;
	loop->owner = pthread_self();
	urt__tasks_init(&loop->tasks, o.stack_size, o.stack_cache ? o.stack_cache : SIZE_MAX,
			!(o.flags & URT_LOOP_NO_GUARD));
	urt__timers_init(&loop->timers);
	loop->stall_ns = o.stall_ns;
	loop->idle_poll_ns = o.idle_poll_ns;
	loop->stack_resident = o.stack_resident ? o.stack_resident : DEFAULT_RESIDENT;
	loop->on_stall = o.on_stall;
	loop->stall_ctx = o.on_stall ? o.stall_ctx : NULL;
	spin_ns = (o.flags & URT_LOOP_NO_SPIN) ? 0 : o.spin_ns ? o.spin_ns : DEFAULT_SPIN_NS;
	if (urt__cpus_allowed() < 2)
		spin_ns = 0; /* the worker could not run while we spin */
	loop->metrics = o.flags & URT_LOOP_METRICS;
	if (loop->metrics) {
		loop->pub = urt__alloc_lines(sizeof(*loop->pub));
		if (!loop->pub) {
			ret = -ENOMEM;
			goto out_report;
		}
	}
	ret = urt__offload_init(loop, o.pool, o.pool_opts, spin_ns, loop->metrics);
	if (ret)
		goto out_report;
	ret = urt__xloop_init(loop);
	if (ret)
		goto out_offload;
	if (o.flags & URT_LOOP_STALL_BACKTRACE) {
		ret = urt__stall_watch_start(loop);
		if (ret)
			goto out_xloop;
	}
	*out = loop;
	return 0;

out_xloop:
	urt__xloop_fini(loop);
out_offload:
	(void)urt__offload_fini(loop, true);

out_report:
	free(loop->pub);
	urt__overflow_report_remove();
out_ring:
	urt__ring_fini(&loop->ring);
out_free:
	free(loop);
	return ret;
}

/* One stage of destroy for everything registered; a close may free itself
 * (and leave the list). */
static void close_all(struct urt_loop *loop, enum urt__close_stage stage)
{
	struct urt__closable *c, *next;

	for (c = LIST_FIRST(&loop->closables); c; c = next) {
		next = LIST_NEXT(c, link);
		c->close(c, stage);
	}
}

/* Destroy's last wait: the armed timeout removed, every SQE's CQE in.
 * 0, or the ring's error. */
static int drain(struct urt_loop *loop)
{
	int ret;

	ret = urt__timer_disarm(&loop->timers, &loop->ring);
	if (ret)
		return ret;
	while (loop->ring.inflight) {
		bool wait = urt__offload_sleep(loop);

		ret = urt__ring_turn(&loop->ring, wait);
		urt__offload_awake(loop);
		if (ret < 0)
			return ret;
	}
	return 0;
}

void urt_loop_destroy(urt_loop *loop)
{
	struct urt_loop *outer_loop = urt__cur_loop;
	struct urt_task *outer_task = urt__cur_task, *t;
	bool drained, keep_loop;

	/* From a task of another loop of this thread, that task's loop waits:
	 * this loop's tasks run on the task's stack until they have ended. A
	 * loop that runs (the caller's own) cannot be destroyed. */
	if (!loop || loop->running || !urt__owned(loop))
		return;
	urt__cur_task = NULL;
	if (run_begin(loop)) {
		urt__cur_task = outer_task;
		return;
	}
	/* Its signal would find only tasks being cancelled. */
	urt__stall_watch_stop(loop);
	loop->destroying = true;
	loop->closing = true;
	loop->stop = false;
	close_all(loop, URT__CLOSE_BEGIN);
	urt__cancel_all(loop);
	/* Jobs no worker has started are dropped: their waiters see
	 * -ECANCELED. Running ones are waited for below. */
	close_all(loop, URT__CLOSE_CANCEL);
	/* Cancelled tasks run to their end: their waits return -ECANCELED
	 * at once, or when the cancelled operation's CQE arrives. */
	drained = run_loop(loop) == 0 && drain(loop) == 0;
	run_end(loop);
	close_all(loop, URT__CLOSE_FREE);
	/*
	 * Not drained (the ring failed): the kernel may still write into what
	 * its operations target (buffers on the tasks' stacks) until it has
	 * cancelled them, after the ring is gone; and a worker of a shared
	 * pool may still finish a job of this loop, writing the job's record,
	 * pushing it onto the loop's finished list and messaging the ring.
	 * What they may write is left allocated, deliberately: the stacks and
	 * records, and with a shared pool's jobs in flight the loop, its ring
	 * and its side of the pool too.
	 */
	keep_loop = urt__offload_fini(loop, drained);
	if (!keep_loop) {
		urt__xloop_fini(loop);
		urt__ring_fini(&loop->ring); /* before a stack is unmapped */
	}
	if (drained) {
		while ((t = LIST_FIRST(&loop->all)))
			urt__task_release(t);
		urt__tasks_fini(&loop->tasks);
	}
	urt__overflow_report_remove();
	urt__timers_fini(&loop->timers);
	free(loop->lag);
	if (!keep_loop) {
		free(loop->pub);
		free(loop);
	}
	urt__cur_loop = outer_loop;
	urt__cur_task = outer_task;
}

int urt_run(urt_task_fn fn, void *arg, int *result)
{
	urt_loop *loop;
	urt_task *t;
	int ret;

	if (!fn)
		return -EINVAL;
	if (urt__cur_task)
		return -EBUSY; /* before anything is made: a task cannot run a loop */
	ret = urt_loop_create(&loop, NULL);
	if (ret)
		return ret;
	ret = urt_spawn(loop, &t, fn, arg);
	if (!ret) {
		ret = urt_loop_run(loop);
		if (!ret)
			ret = urt_join(t, result);
	}
	urt_loop_destroy(loop);
	return ret;
}

