/* urt-latency-probe's loads: on a loop whose lag monitor sleeps one
 * interval at a time and records how late it wakes, offloaded jobs, inline
 * CPU work or reading tasks; and plain threads for the kernel's own floor. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <urt.h>

#include "probe.h"

/* One load's share of one round. Loads take turns, round after round, so
 * that a noisy spell on a shared machine falls on all of them alike. */
static uint64_t slice_ns(void)
{
	return (uint64_t)(opt.duration_s * 1e9 / opt.rounds);
}

static void progress(enum load_id l, uint64_t start, uint64_t now)
{
	static uint64_t last;
	double slice = (double)slice_ns() / 1e9;
	double done = round_no * slice + (double)(now - start) / 1e9, frac = done / opt.duration_s;
	int width = 30, fill;

	if (!show_progress || now - last < 100 * MS)
		return;
	last = now;
	if (frac > 1)
		frac = 1;
	fill = (int)(frac * width);
	fprintf(stderr, "\r  %-9s [%.*s%*s] %4.1f/%.1f s, round %u/%u", load_names[l], fill,
		"##############################", width - fill, "", done, opt.duration_s,
		round_no + 1, opt.rounds);
}

void progress_done(void)
{
	if (show_progress)
		fprintf(stderr, "\r%*s\r", 60, "");
}

/* CPU work: spin doing arithmetic for ns nanoseconds. */
static uint64_t crunch(uint64_t ns)
{
	uint64_t until = urt_now_ns() + ns, x = 88172645463325252ull;

	do {
		for (int i = 0; i < 1000; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
	} while (urt_now_ns() < until);
	return x;
}

/* ---- the clock of a urt load ---- */

/* Ends the load's slice: sets stop, which the load's tasks look at, and
 * stops the lag monitor, so that the loop's run returns. The slice starts
 * when the loop runs, not before the load's tasks are made: under a
 * sanitizer, making 64 tasks took longer than a short slice, which then
 * ended before the monitor's first tick. */
struct keeper {
	enum load_id load;
	uint64_t start, end;
	bool *stop;
};

static int keeper_task(void *arg)
{
	struct keeper *k = arg;
	uint64_t now;

	urt_task_set_name(NULL, "probe-clock");
	k->start = urt_now_ns();
	k->end = k->start + slice_ns();
	while ((now = urt_now_ns()) < k->end) {
		uint64_t left = k->end - now;
		int ret = urt_sleep_ns(left < 100 * MS ? left : 100 * MS);

		if (ret < 0)
			return ret;
		progress(k->load, k->start, urt_now_ns());
	}
	*k->stop = true;
	return urt_lag_monitor_stop(urt_current_loop());
}

/* --tickers N: N - 1 more sleepers beside the monitor. */
static int sleeper_task(void *arg)
{
	bool *stop = arg;

	while (!*stop) {
		int ret = urt_sleep_ns(opt.interval_ns);

		if (ret < 0)
			return ret;
	}
	return 0;
}

/* ---- the loads ---- */

struct job {
	bool cpu;            /* crunch, else sleep */
	uint64_t ran_ns;     /* time inside fn, to subtract from the round trip */
	uint64_t sink;
};

static void job_fn(struct job *j)
{
	uint64_t t0 = urt_now_ns();

	if (j->cpu)
		j->sink += crunch(CRUNCH_NS);
	else
		usleep(CRUNCH_NS / US);
	j->ran_ns = urt_now_ns() - t0;
}

struct load_ctx {
	bool *stop;
	int fd;              /* read: the file */
	int pipe_r, pipe_w;  /* read: the pipe */
	unsigned seed;
};

static int offload_task(void *arg)
{
	struct load_ctx *c = arg;
	struct job j = { .cpu = c->seed & 1 };

	urt_task_set_name(NULL, j.cpu ? "offload-cpu" : "offload-sleep");
	while (!*c->stop) {
		uint64_t t0 = urt_now_ns(), total;
		int ret = urt_to_thread(job_fn, &j);

		if (ret < 0)
			return ret;
		total = urt_now_ns() - t0;
		push(&round_trips, total > j.ran_ns ? total - j.ran_ns : 0);
	}
	return 0;
}

static int inline_task(void *arg)
{
	struct load_ctx *c = arg;
	uint64_t sink = 0;

	urt_task_set_name(NULL, "inline-cpu");
	while (!*c->stop) {
		sink += crunch(CRUNCH_NS);
		if (urt_yield() < 0)
			break;
	}
	return (int)(sink & 0);
}

static int file_reader_task(void *arg)
{
	struct load_ctx *c = arg;
	char buf[4096];

	while (!*c->stop) {
		off_t off = (off_t)(rand_r(&c->seed) % 2048) * 4096;
		ssize_t n = urt_read(c->fd, buf, sizeof(buf), off);

		if (n != (ssize_t)sizeof(buf))
			return n < 0 ? (int)n : -EIO;
	}
	return 0;
}

static int pipe_reader_task(void *arg)
{
	struct load_ctx *c = arg;
	char buf[4096];

	while (!*c->stop) {
		ssize_t n = urt_read(c->pipe_r, buf, sizeof(buf), -1);

		if (n <= 0)
			return n < 0 ? (int)n : 0;
	}
	return 0;
}

/* Writes to the non-blocking pipe; yields while it is full. Closing the
 * write end at the end wakes the pipe readers with end of file. */
static int pipe_writer_task(void *arg)
{
	struct load_ctx *c = arg;
	char buf[4096];

	memset(buf, 'u', sizeof(buf));
	while (!*c->stop) {
		if (write(c->pipe_w, buf, sizeof(buf)) < 0 && errno != EAGAIN)
			return -errno;
		if (urt_yield() < 0)
			break;
	}
	close(c->pipe_w);
	c->pipe_w = -1;
	return 0;
}

static int make_read_file(void)
{
	char path[] = "/tmp/urt-probe-XXXXXX";
	char block[4096];
	int fd = mkstemp(path);

	if (fd < 0)
		die("mkstemp", errno);
	unlink(path);
	memset(block, 'p', sizeof(block));
	for (int i = 0; i < 2048; i++)
		if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
			die("write", errno);
	return fd;
}

static void on_stall(void *ctx, urt_task *task, const char *name, uint64_t ran_ns)
{
	struct load_result *r = ctx;

	(void)task;
	if (!r->stalls)
		snprintf(r->stall_example, sizeof(r->stall_example),
			 "task \"%s\" ran %.1f ms without yielding", name, (double)ran_ns / 1e6);
	r->stalls++;
	if (ran_ns > r->stall_max_ns)
		r->stall_max_ns = ran_ns;
}

static void spawn_or_die(urt_loop *loop, urt_task_fn fn, void *arg)
{
	int ret = urt_spawn(loop, NULL, fn, arg);

	if (ret < 0)
		die("urt_spawn", -ret);
}

/* Add what loop saw of itself to r: lateness, schedule delay, utilization,
 * the worst tick and its culprit. */
static void view_add(struct load_result *r, urt_loop *loop)
{
	struct urt_loop_metrics m;
	struct urt_hist *lag = hist_new(), *sched = hist_new();
	struct urt_lag_info info;
	int ret;

	if (!r->view.sched)
		r->view.sched = hist_new();
	if (urt_loop_metrics(loop, &m) == 0) {
		r->view.busy_ns += m.busy_ns;
		r->view.idle_ns += m.idle_ns;
	}
	ret = urt_loop_lag(loop, lag, sched, &info);
	if (ret < 0)
		die("urt_loop_lag", -ret);
	hist_add(r->late, lag);
	hist_add(r->view.sched, sched);
	r->view.wakeups += info.wakeups;
	if (info.ticks && info.worst_late_ns >= r->worst_late_ns) {
		r->worst_late_ns = info.worst_late_ns;
		r->worst_ran_ns = info.worst_culprit_ran_ns;
		r->worst_round = round_no;
		snprintf(r->worst_culprit, sizeof(r->worst_culprit), "%s", info.worst_culprit);
	}
	free(lag);
	free(sched);
}

void run_urt_load(enum load_id l)
{
	struct load_result *r = &res[l];
	struct urt_pool_opts po = {
		.threads = opt.workers,
		.flags = !strcmp(opt.pool_priority, "same") ? URT_POOL_SAME_PRIORITY :
			 !strcmp(opt.pool_priority, "idle") ? URT_POOL_SCHED_IDLE : 0,
	};
	struct urt_loop_opts o = {
		.flags = URT_LOOP_METRICS,
		.idle_poll_ns = opt.idle_poll_ns,
		.pool_opts = &po,
		.stall_ns = (uint64_t)(opt.stall_ms * 1e6),
		.on_stall = on_stall,
		.stall_ctx = r,
	};
	struct load_ctx ctx[64];
	struct keeper k = { .load = l };
	bool stop = false;
	urt_loop *loop;
	int ret, fd = -1, pfd[2] = { -1, -1 };

	ret = urt_loop_create(&loop, &o);
	if (ret < 0)
		die("urt_loop_create", -ret);
	if (!backend_name) {
		const char *why = "";

		backend_name = urt_loop_backend(loop, &why) == URT_BACKEND_EPOLL ? "epoll" : "io_uring";
		snprintf(backend_why, sizeof(backend_why), "%s", why);
	}
	/* The ticker: the loop's own lag monitor, as a service would run it. */
	ret = urt_lag_monitor_start(loop, opt.interval_ns);
	if (ret < 0)
		die("urt_lag_monitor_start", -ret);
	if (l == L_READ) {
		fd = make_read_file();
		if (pipe2(pfd, O_NONBLOCK | O_CLOEXEC) < 0)
			die("pipe2", errno);
	}
	for (unsigned i = 0; i < 64; i++)
		ctx[i] = (struct load_ctx){ .stop = &stop, .fd = fd, .pipe_r = pfd[0],
					    .pipe_w = pfd[1], .seed = i };
	k.stop = &stop;
	spawn_or_die(loop, keeper_task, &k);
	for (unsigned i = 1; i < opt.tickers; i++)
		spawn_or_die(loop, sleeper_task, &stop);
	switch (l) {
	case L_OFFLOAD:
		/* Two jobs in flight: one sleeping, one crunching. */
		spawn_or_die(loop, offload_task, &ctx[0]);
		spawn_or_die(loop, offload_task, &ctx[1]);
		break;
	case L_INLINE:
		spawn_or_die(loop, inline_task, &ctx[0]);
		break;
	case L_READ:
		for (unsigned i = 0; i < 56; i++)
			spawn_or_die(loop, file_reader_task, &ctx[i]);
		for (unsigned i = 56; i < 63; i++)
			spawn_or_die(loop, pipe_reader_task, &ctx[i]);
		spawn_or_die(loop, pipe_writer_task, &ctx[63]);
		break;
	default:
		break;
	}
	ret = urt_loop_run(loop);
	if (ret < 0)
		die("urt_loop_run", -ret);
	view_add(r, loop);
	urt_loop_destroy(loop);
	if (fd >= 0)
		close(fd);
	if (pfd[0] >= 0)
		close(pfd[0]);
}

struct baseline_arg {
	struct urt_hist *out;
	uint64_t start, end;
	bool lead;           /* the one that draws the progress bar */
};

static void *baseline_thread(void *arg)
{
	struct baseline_arg *b = arg;
	uint64_t now;

	/* A thread's sleeps get 50 us of timer slack by default, io_uring's
	 * timeouts none: compare like with like. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	now = urt_now_ns();

	while (now < b->end) {
		uint64_t t0 = now, at = t0 + opt.interval_ns;
		struct timespec ts = { (time_t)(at / 1000000000u), (long)(at % 1000000000u) };

		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		now = urt_now_ns();
		urt_hist_record(b->out, now - t0 - opt.interval_ns);
		if (b->lead)
			progress(L_BASELINE, b->start, now);
	}
	return NULL;
}

/* The kernel's own wake-up latency: one plain thread per ticker. */
void run_baseline(void)
{
	struct baseline_arg *b = calloc(opt.tickers, sizeof(*b));
	pthread_t *th = calloc(opt.tickers, sizeof(*th));
	uint64_t start = urt_now_ns();

	if (!b || !th)
		die("out of memory", ENOMEM);
	for (unsigned i = 0; i < opt.tickers; i++) {
		b[i] = (struct baseline_arg){ .out = hist_new(), .start = start,
					      .end = start + slice_ns(),
					      .lead = i == 0 };
		if ((errno = pthread_create(&th[i], NULL, baseline_thread, &b[i])))
			die("pthread_create", errno);
	}
	for (unsigned i = 0; i < opt.tickers; i++) {
		pthread_join(th[i], NULL);
		hist_add(res[L_BASELINE].late, b[i].out);
		free(b[i].out);
	}
	free(b);
	free(th);
}
