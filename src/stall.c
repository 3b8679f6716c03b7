/* stall: the stall reporter, and with URT_LOOP_STALL_BACKTRACE a watchdog
 * thread per loop that has the loop's thread record the stack of a task
 * that runs past the threshold, while it still runs (as Seastar's stall
 * detector does).
 *
 * The scheduler numbers each task run: odd while a task runs, even between
 * runs (urt__stall_run_begin/_end, two stores per switch). The watchdog
 * looks every half threshold; a run that is still the same one past the
 * threshold gets one signal (SIGURG), whose handler, on the loop's thread
 * and on its alternate stack, calls backtrace(3) into the watch. The report
 * at the end of the run hands those frames out (urt_stall_backtrace). */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "sched.h"

#define WATCH_SIGNAL SIGURG

struct urt__stall_watch {
	struct urt_loop *loop;
	pthread_t thread, target;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	_Atomic uint64_t run;       /* odd: a task runs (the loop's thread) */
	_Atomic uint64_t run_start; /* when it began (urt_now_ns) */
	_Atomic uint64_t want;      /* the run the watchdog signalled for */
	/* The loop's thread only (the handler runs there): */
	volatile uint64_t got;      /* the run whose frames are in frames */
	volatile int nframes;
	void *frames[URT_STALL_FRAMES];
	uint64_t reporting;         /* the run being reported, 0: none */
};

/* The handler's users: installed with the first watch, put back with the
 * last. */
static pthread_mutex_t sig_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned sig_users;
static struct sigaction sig_old;

/* Where the signal interrupted the thread. */
static void *interrupted_pc(void *uc)
{
#if defined(__x86_64__)
	return (void *)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	return (void *)((ucontext_t *)uc)->uc_mcontext.pc;
#else
	(void)uc;
	return NULL;
#endif
}

static void watch_handler(int sig, siginfo_t *si, void *uc)
{
	struct urt_task *t = urt__cur_task;
	struct urt__stall_watch *w = t ? t->loop->stall_watch : NULL;
	int saved = errno, n, skip = 0;
	uint64_t run;
	void *pc;

	(void)sig;
	(void)si;
	if (!w)
		return;
	run = atomic_load_explicit(&w->run, memory_order_relaxed);
	if ((run & 1) && run == atomic_load_explicit(&w->want, memory_order_relaxed) &&
	    w->got != run) {
		n = backtrace(w->frames, URT_STALL_FRAMES);
		/* The stack from the interrupted code on: not this handler's
		 * frame nor the signal's. */
		pc = interrupted_pc(uc);
		while (skip < n && w->frames[skip] != pc)
			skip++;
		if (skip == n)
			skip = 0;
		memmove(w->frames, w->frames + skip, (size_t)(n - skip) * sizeof(void *));
		w->nframes = n - skip;
		w->got = run;
	}
	errno = saved;
}

static int sig_get(void)
{
	struct sigaction sa, old;
	int ret = 0;

	pthread_mutex_lock(&sig_mu);
	if (!sig_users) {
		if (sigaction(WATCH_SIGNAL, NULL, &old) == 0 &&
		    ((old.sa_flags & SA_SIGINFO) ||
		     (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))) {
			ret = -EBUSY; /* the application's own handler */
		} else {
			memset(&sa, 0, sizeof(sa));
			sa.sa_sigaction = watch_handler;
			sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
			sigemptyset(&sa.sa_mask);
			if (sigaction(WATCH_SIGNAL, &sa, &sig_old))
				ret = -errno;
		}
	}
	if (!ret)
		sig_users++;
	pthread_mutex_unlock(&sig_mu);
	return ret;
}

/* The last user puts back what was there, unless the application has put
 * a handler of its own in place since (which stays). */
static void sig_put(void)
{
	struct sigaction now;

	pthread_mutex_lock(&sig_mu);
	if (!--sig_users && sigaction(WATCH_SIGNAL, NULL, &now) == 0 &&
	    (now.sa_flags & SA_SIGINFO) && now.sa_sigaction == watch_handler)
		(void)sigaction(WATCH_SIGNAL, &sig_old, NULL);
	pthread_mutex_unlock(&sig_mu);
}

static void *watchdog_main(void *arg)
{
	struct urt__stall_watch *w = arg;
	uint64_t threshold = w->loop->stall_ns, period = threshold / 2;
	struct timespec at;

	if (period < 1000000)
		period = 1000000; /* 1 ms: no finer than the threshold needs */
	pthread_mutex_lock(&w->mu);
	clock_gettime(CLOCK_MONOTONIC, &at);
	while (!w->stop) {
		uint64_t run, start;

		at.tv_nsec += (long)(period % 1000000000u);
		at.tv_sec += (time_t)(period / 1000000000u) + at.tv_nsec / 1000000000;
		at.tv_nsec %= 1000000000;
		if (pthread_cond_timedwait(&w->cv, &w->mu, &at) != ETIMEDOUT)
			continue; /* stop, or a spurious wake-up */
		/* The run, then its start: a start read after a newer run began
		 * is later, never a false stall. */
		run = atomic_load_explicit(&w->run, memory_order_acquire);
		start = atomic_load_explicit(&w->run_start, memory_order_relaxed);
		if ((run & 1) && urt_now_ns() - start >= threshold &&
		    atomic_load_explicit(&w->want, memory_order_relaxed) != run) {
			atomic_store_explicit(&w->want, run, memory_order_relaxed);
			(void)pthread_kill(w->target, WATCH_SIGNAL);
		}
		clock_gettime(CLOCK_MONOTONIC, &at);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int urt__stall_watch_start(struct urt_loop *loop)
{
	struct urt__stall_watch *w = calloc(1, sizeof(*w));
	pthread_condattr_t ca;
	void *warm[1];
	int ret;

	if (!w)
		return -ENOMEM;
	/* backtrace loads the unwinder at its first call: here, not in the
	 * handler. */
	(void)backtrace(warm, 1);
	ret = sig_get();
	if (ret) {
		free(w);
		return ret;
	}
	w->loop = loop;
	w->target = pthread_self();
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	loop->stall_watch = w;
	ret = -pthread_create(&w->thread, NULL, watchdog_main, w);
	if (ret) {
		loop->stall_watch = NULL;
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		sig_put();
		free(w);
	}
	return ret;
}

void urt__stall_watch_stop(struct urt_loop *loop)
{
	struct urt__stall_watch *w = loop->stall_watch;

	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	loop->stall_watch = NULL;
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	sig_put();
	free(w);
}

void urt__stall_run_begin(struct urt__stall_watch *w, uint64_t now)
{
	uint64_t run = atomic_load_explicit(&w->run, memory_order_relaxed);

	atomic_store_explicit(&w->run_start, now, memory_order_relaxed);
	atomic_store_explicit(&w->run, run + 1, memory_order_release);
}

void urt__stall_run_end(struct urt__stall_watch *w)
{
	uint64_t run = atomic_load_explicit(&w->run, memory_order_relaxed);

	atomic_store_explicit(&w->run, run + 1, memory_order_relaxed);
}

void urt_stall_print(void *ctx, urt_task *task, const char *name, uint64_t ran_ns)
{
	void *frames[URT_STALL_FRAMES];
	int n = urt_stall_backtrace(task->loop, frames, URT_STALL_FRAMES);

	(void)ctx;
	fprintf(stderr, "urt: task \"%s\" ran %.1f ms without yielding (stall threshold %.1f ms)%s\n",
		name, (double)ran_ns / 1e6, (double)task->loop->stall_ns / 1e6,
		n > 0 ? ", while it ran:" : "");
	if (n > 0) {
		fflush(stderr);
		backtrace_symbols_fd(frames, n, STDERR_FILENO);
	}
}

void urt__stall_report(struct urt_loop *loop, struct urt_task *t, const char *name,
		       uint64_t ran_ns)
{
	struct urt__stall_watch *w = loop->stall_watch;

	if (w) /* the run that just ended: run_end has not counted it yet */
		w->reporting = atomic_load_explicit(&w->run, memory_order_relaxed);
	if (loop->on_stall)
		loop->on_stall(loop->stall_ctx, t, name, ran_ns);
	else
		urt_stall_print(NULL, t, name, ran_ns);
	if (w)
		w->reporting = 0;
}

int urt_stall_backtrace(urt_loop *loop, void **frames, int max)
{
	struct urt__stall_watch *w;
	int n;

	if (!loop || (!frames && max) || max < 0)
		return -EINVAL;
	if (!urt__owned(loop))
		return -EPERM;
	w = loop->stall_watch;
	if (!w || !w->reporting || w->got != w->reporting)
		return 0;
	n = w->nframes < max ? w->nframes : max;
	memcpy(frames, w->frames, (size_t)n * sizeof(*frames));
	return n;
}
