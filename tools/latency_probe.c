/*
 * urt-latency-probe: how late does a task that sleeps 1 ms wake up, while
 * the loop is idle, while blocking work is offloaded properly, while CPU work
 * wrongly runs inline, while many tasks read? And how late does a plain
 * thread wake, with no runtime at all (the kernel's own floor)?
 *
 * Each load runs in turn on a fresh loop; ticker tasks sleep one interval at
 * a time and record lateness = (woke - slept_at) - interval. The runtime's
 * stall detector is on, and its reports are counted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <urt.h>

#define US 1000ull
#define MS 1000000ull
#define CRUNCH_NS (5 * MS)    /* one chunk of CPU work, offloaded or inline */

enum load_id { L_BASELINE, L_IDLE, L_OFFLOAD, L_INLINE, L_READ, L_COUNT };

static const char *const load_names[L_COUNT] = { "baseline", "idle", "offload", "inline", "read" };
static const char *const load_desc[L_COUNT] = {
	"plain thread, clock_nanosleep, no runtime, no timer slack",
	"the loop with only the tickers",
	"sleeping and CPU jobs in flight via urt_to_thread",
	"the same CPU work on the loop, yielding every 5 ms",
	"64 tasks reading a file and a pipe",
};

/* A growable array of nanosecond samples. */
struct samples {
	uint64_t *v;
	size_t n, cap;
};

struct load_result {
	bool ran;
	struct samples late;      /* every tick's lateness */
	struct samples *per_ticker;
	unsigned stalls;
	uint64_t stall_max_ns;
	char stall_example[128];
};

struct opts {
	bool want[L_COUNT];
	double duration_s;
	uint64_t interval_ns;
	unsigned tickers;
	unsigned workers;
	unsigned rounds;
	double stall_ms;
	bool json;
	const char *csv, *svg;
};

static struct opts opt = {
	.duration_s = 2.0,
	.interval_ns = 1 * MS,
	.tickers = 1,
	.workers = 0,
	.rounds = 4,
	.stall_ms = 2.0,
};

static struct load_result res[L_COUNT];
static struct samples round_trips;  /* urt_to_thread overhead during offload */
static bool show_progress;
static unsigned round_no;   /* the round running, from 0 */

/* One load's share of one round. Loads take turns, round after round, so
 * that a noisy spell on a shared machine falls on all of them alike. */
static uint64_t slice_ns(void)
{
	return (uint64_t)(opt.duration_s * 1e9 / opt.rounds);
}

/* ---- small helpers ---- */

static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "urt-latency-probe: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'urt-latency-probe --help'.\n");
	exit(2);
}

static void die(const char *what, int err)
{
	fprintf(stderr, "urt-latency-probe: %s: %s\n", what, strerror(err));
	exit(1);
}

static void push(struct samples *s, uint64_t v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4096;
		uint64_t *nv = realloc(s->v, cap * sizeof(*nv));

		if (!nv)
			die("out of memory", ENOMEM);
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = v;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Percentile of sorted samples, nearest rank. */
static uint64_t pct(const struct samples *s, double p)
{
	size_t i;

	if (!s->n)
		return 0;
	i = (size_t)ceil(p / 100.0 * (double)s->n);
	return s->v[i ? i - 1 : 0];
}

static double us(uint64_t ns)
{
	return (double)ns / 1e3;
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

static void progress_done(void)
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

/* ---- the tickers ---- */

struct ticker {
	enum load_id load;
	struct samples *out;
	uint64_t start, end;
	bool *stop;          /* set when the run is over: loads stop too */
	unsigned *running;
};

static int ticker_task(void *arg)
{
	struct ticker *tk = arg;
	uint64_t now = urt_now_ns();

	while (now < tk->end) {
		uint64_t t0 = now;
		int ret = urt_sleep_ns(opt.interval_ns);

		if (ret < 0)
			return ret;
		now = urt_now_ns();
		push(tk->out, now - t0 - opt.interval_ns);
		progress(tk->load, tk->start, now);
	}
	if (--*tk->running == 0)
		*tk->stop = true;
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

static void run_urt_load(enum load_id l)
{
	struct load_result *r = &res[l];
	struct urt_pool_opts po = { .threads = opt.workers };
	struct urt_loop_opts o = {
		.pool_opts = &po,
		.stall_ns = (uint64_t)(opt.stall_ms * 1e6),
		.on_stall = on_stall,
		.stall_ctx = r,
	};
	struct load_ctx ctx[64];
	struct ticker *tk = calloc(opt.tickers, sizeof(*tk));
	bool stop = false;
	unsigned running = opt.tickers;
	urt_loop *loop;
	uint64_t start;
	int ret, fd = -1, pfd[2] = { -1, -1 };

	if (!tk)
		die("out of memory", ENOMEM);
	ret = urt_loop_create(&loop, &o);
	if (ret < 0)
		die("urt_loop_create", -ret);
	if (l == L_READ) {
		fd = make_read_file();
		if (pipe2(pfd, O_NONBLOCK | O_CLOEXEC) < 0)
			die("pipe2", errno);
	}
	for (unsigned i = 0; i < 64; i++)
		ctx[i] = (struct load_ctx){ .stop = &stop, .fd = fd, .pipe_r = pfd[0],
					    .pipe_w = pfd[1], .seed = i };
	start = urt_now_ns();
	for (unsigned i = 0; i < opt.tickers; i++) {
		tk[i] = (struct ticker){ .load = l, .out = &r->per_ticker[i], .start = start,
					 .end = start + slice_ns(),
					 .stop = &stop, .running = &running };
		spawn_or_die(loop, ticker_task, &tk[i]);
	}
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
	urt_loop_destroy(loop);
	if (fd >= 0)
		close(fd);
	if (pfd[0] >= 0)
		close(pfd[0]);
	free(tk);
}

struct baseline_arg {
	struct samples *out;
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
		push(b->out, now - t0 - opt.interval_ns);
		if (b->lead)
			progress(L_BASELINE, b->start, now);
	}
	return NULL;
}

/* The kernel's own wake-up latency: one plain thread per ticker. */
static void run_baseline(void)
{
	struct baseline_arg *b = calloc(opt.tickers, sizeof(*b));
	pthread_t *th = calloc(opt.tickers, sizeof(*th));
	uint64_t start = urt_now_ns();

	if (!b || !th)
		die("out of memory", ENOMEM);
	for (unsigned i = 0; i < opt.tickers; i++) {
		b[i] = (struct baseline_arg){ .out = &res[L_BASELINE].per_ticker[i], .start = start,
					      .end = start + slice_ns(),
					      .lead = i == 0 };
		if ((errno = pthread_create(&th[i], NULL, baseline_thread, &b[i])))
			die("pthread_create", errno);
	}
	for (unsigned i = 0; i < opt.tickers; i++)
		pthread_join(th[i], NULL);
	free(b);
	free(th);
}

/* ---- reporting ---- */

struct bucket {
	uint64_t below;      /* upper bound, ns */
	const char *label;
};

static const struct bucket buckets[] = {
	{ 10 * US, "<10us" },     { 20 * US, "10-20us" },   { 50 * US, "20-50us" },
	{ 100 * US, "50-100us" }, { 200 * US, ".1-.2ms" },  { 500 * US, ".2-.5ms" },
	{ 1 * MS, ".5-1ms" },     { 2 * MS, "1-2ms" },      { 5 * MS, "2-5ms" },
	{ 10 * MS, "5-10ms" },    { UINT64_MAX, ">=10ms" },
};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

static void histogram(const struct samples *s, size_t counts[NBUCKETS])
{
	size_t b = 0;

	memset(counts, 0, NBUCKETS * sizeof(counts[0]));
	for (size_t i = 0; i < s->n; i++) { /* sorted: walk the buckets along */
		while (s->v[i] >= buckets[b].below)
			b++;
		counts[b]++;
	}
}

static void print_table(void)
{
	printf("\nwake-up lateness of a %.0f us sleep, %u ticker%s, %.1f s per load in %u "
	       "interleaved rounds (us)\n\n",
	       us(opt.interval_ns), opt.tickers, opt.tickers == 1 ? "" : "s", opt.duration_s,
	       opt.rounds);
	printf("%-9s %9s %9s %9s %9s %9s %8s  %s\n", "load", "p50", "p90", "p99", "p99.9",
	       "max", "ticks", "what runs");
	for (int l = 0; l < L_COUNT; l++) {
		const struct samples *s = &res[l].late;

		if (!res[l].ran)
			continue;
		printf("%-9s %9.1f %9.1f %9.1f %9.1f %9.1f %8zu  %s\n", load_names[l],
		       us(pct(s, 50)), us(pct(s, 90)), us(pct(s, 99)), us(pct(s, 99.9)),
		       us(s->n ? s->v[s->n - 1] : 0), s->n, load_desc[l]);
	}
	if (round_trips.n)
		printf("\nurt_to_thread round trip during offload (hand-off + completion, fn's own "
		       "time excluded): p50 %.1f  p90 %.1f  p99 %.1f  max %.1f us, %zu jobs\n",
		       us(pct(&round_trips, 50)), us(pct(&round_trips, 90)),
		       us(pct(&round_trips, 99)), us(round_trips.v[round_trips.n - 1]),
		       round_trips.n);
}

static void print_histograms(void)
{
	printf("\nlateness histogram (share of ticks per bucket)\n");
	for (int l = 0; l < L_COUNT; l++) {
		size_t counts[NBUCKETS];

		if (!res[l].ran || !res[l].late.n)
			continue;
		histogram(&res[l].late, counts);
		printf("\n%s\n", load_names[l]);
		for (size_t b = 0; b < NBUCKETS; b++) {
			double f = (double)counts[b] / (double)res[l].late.n;
			int bar = (int)lround(f * 40);

			if (!counts[b])
				continue;
			printf("  %8s %5.1f%% %.*s%s\n", buckets[b].label, f * 100, bar,
			       "########################################", bar ? "" : ".");
		}
	}
}

/* The verdict, in plain words; also the JSON's "verdict". */
static void verdict(char *out, size_t len)
{
	size_t n = 0;

#define SAY(...) (n += (size_t)snprintf(out + n, n < len ? len - n : 0, __VA_ARGS__))
	if (res[L_IDLE].ran && res[L_BASELINE].ran) {
		double ratio = (double)pct(&res[L_IDLE].late, 99) /
			       (double)(pct(&res[L_BASELINE].late, 99) ? pct(&res[L_BASELINE].late, 99) : 1);

		SAY("Idle, the loop woke %.0f us late at p99, %.2fx a plain thread's %.0f us "
		    "(the kernel's own wake-up latency on this machine). ",
		    us(pct(&res[L_IDLE].late, 99)), ratio, us(pct(&res[L_BASELINE].late, 99)));
	}
	if (res[L_INLINE].ran && res[L_OFFLOAD].ran)
		SAY("Inline CPU work delayed wake-ups by %.1f ms at p50 (%.1f ms at p99); "
		    "offloaded with urt_to_thread, the same work cost %.0f us at p50 (%.0f us at p99). ",
		    us(pct(&res[L_INLINE].late, 50)) / 1e3, us(pct(&res[L_INLINE].late, 99)) / 1e3,
		    us(pct(&res[L_OFFLOAD].late, 50)), us(pct(&res[L_OFFLOAD].late, 99)));
	else if (res[L_INLINE].ran)
		SAY("Inline CPU work delayed wake-ups by %.1f ms at p50. ",
		    us(pct(&res[L_INLINE].late, 50)) / 1e3);
	if (res[L_READ].ran && res[L_IDLE].ran)
		SAY("Under 64 reading tasks, p99 was %.0f us against %.0f us idle. ",
		    us(pct(&res[L_READ].late, 99)), us(pct(&res[L_IDLE].late, 99)));
	if (res[L_INLINE].ran)
		SAY("The stall detector (threshold %.1f ms) reported %u stall%s under inline%s%s%s.",
		    opt.stall_ms, res[L_INLINE].stalls, res[L_INLINE].stalls == 1 ? "" : "s",
		    res[L_INLINE].stalls ? ", e.g. \"" : "", res[L_INLINE].stall_example,
		    res[L_INLINE].stalls ? "\"" : "");
#undef SAY
}

static void print_json(const char *verdict_text)
{
	printf("{\n  \"interval_us\": %.3f,\n  \"duration_s\": %.3f,\n  \"rounds\": %u,\n"
	       "  \"tickers\": %u,\n"
	       "  \"stall_threshold_ms\": %.3f,\n  \"loads\": [",
	       us(opt.interval_ns), opt.duration_s, opt.rounds, opt.tickers, opt.stall_ms);
	for (int l = 0, first = 1; l < L_COUNT; l++) {
		const struct samples *s = &res[l].late;
		size_t counts[NBUCKETS];

		if (!res[l].ran)
			continue;
		histogram(s, counts);
		printf("%s\n    {\"name\": \"%s\", \"ticks\": %zu, \"lateness_us\": {\"p50\": %.3f, "
		       "\"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}, "
		       "\"stalls\": %u, \"histogram\": {",
		       first ? "" : ",", load_names[l], s->n, us(pct(s, 50)), us(pct(s, 90)),
		       us(pct(s, 99)), us(pct(s, 99.9)), us(s->n ? s->v[s->n - 1] : 0),
		       res[l].stalls);
		for (size_t b = 0; b < NBUCKETS; b++)
			printf("%s\"%s\": %zu", b ? ", " : "", buckets[b].label, counts[b]);
		printf("}}");
		first = 0;
	}
	printf("\n  ],\n  \"offload_round_trip_us\": {\"jobs\": %zu, \"p50\": %.3f, \"p90\": %.3f, "
	       "\"p99\": %.3f},\n",
	       round_trips.n, us(pct(&round_trips, 50)), us(pct(&round_trips, 90)),
	       us(pct(&round_trips, 99)));
	printf("  \"verdict\": \"");
	for (const char *p = verdict_text; *p; p++) {
		if (*p == '"' || *p == '\\')
			putchar('\\');
		putchar(*p);
	}
	printf("\"\n}\n");
}

static void write_csv(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		die(path, errno);
	fprintf(f, "load,ticker,tick,lateness_ns\n");
	for (int l = 0; l < L_COUNT; l++)
		for (unsigned t = 0; res[l].ran && t < opt.tickers; t++)
			for (size_t i = 0; i < res[l].per_ticker[t].n; i++)
				fprintf(f, "%s,%u,%zu,%llu\n", load_names[l], t, i,
					(unsigned long long)res[l].per_ticker[t].v[i]);
	if (fclose(f))
		die(path, errno);
}

/* A CDF of every load's lateness on a log-scaled x axis, as plain SVG. */
static void write_svg(const char *path)
{
	static const char *const colors[L_COUNT] = { "#555555", "#1f77b4", "#2ca02c", "#d62728",
						     "#9467bd" };
	const double W = 760, H = 440, left = 70, right = 170, top = 40, bottom = 60;
	const double pw = W - left - right, ph = H - top - bottom;
	double lo = 1, hi = 10; /* decades of microseconds */
	FILE *f = fopen(path, "w");

	if (!f)
		die(path, errno);
	for (int l = 0; l < L_COUNT; l++)
		if (res[l].ran && res[l].late.n)
			while (hi < us(res[l].late.v[res[l].late.n - 1]))
				hi *= 10;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		   "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
		   "height=\"100%%\" fill=\"white\"/>\n", W, H);
	fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\">urt-latency-probe: wake-up "
		   "lateness of a %.0f us sleep (CDF)</text>\n", left, us(opt.interval_ns));
	for (double d = lo; d <= hi; d *= 10) {
		double x = left + pw * log10(d / lo) / log10(hi / lo);

		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
			   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
			x, top, x, top + ph, x, top + ph + 18,
			d >= 1000 ? (d >= 1e6 ? (d >= 1e7 ? "10 s" : "1 s") :
					       (d >= 1e5 ? "100 ms" : d >= 1e4 ? "10 ms" : "1 ms")) :
				    (d >= 100 ? "100 us" : d >= 10 ? "10 us" : "1 us"));
	}
	for (int q = 0; q <= 4; q++) {
		double y = top + ph - ph * q / 4.0;

		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
			   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n",
			left, y, left + pw, y, left - 6, y + 4, q / 4.0);
	}
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">lateness (log scale)</text>\n"
		   "<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\">"
		   "share of ticks at or below</text>\n",
		left + pw / 2, H - 18, top + ph / 2);
	for (int l = 0, k = 0; l < L_COUNT; l++) {
		const struct samples *s = &res[l].late;
		size_t step;

		if (!res[l].ran || !s->n)
			continue;
		step = s->n / 600 + 1;
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
			colors[l]);
		for (size_t i = 0; i < s->n; i += step) {
			double v = us(s->v[i]) < lo ? lo : us(s->v[i]);

			fprintf(f, "%.1f,%.1f ", left + pw * log10(v / lo) / log10(hi / lo),
				top + ph - ph * (double)(i + 1) / (double)s->n);
		}
		fprintf(f, "%.1f,%.1f\"/>\n",
			left + pw * log10((us(s->v[s->n - 1]) < lo ? lo : us(s->v[s->n - 1])) / lo) /
				       log10(hi / lo),
			top);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
			   "stroke-width=\"3\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
			W - right + 15, top + 10 + 20.0 * k, W - right + 40, top + 10 + 20.0 * k,
			colors[l], W - right + 46, top + 14 + 20.0 * k, load_names[l]);
		k++;
	}
	fprintf(f, "</svg>\n");
	if (fclose(f))
		die(path, errno);
}

/* ---- arguments ---- */

static void usage(void)
{
	printf("usage: urt-latency-probe [options]\n\n"
	       "Measures how late a task that sleeps one interval wakes up, under each load\n"
	       "in turn, and prints a table, a histogram per load and a verdict.\n\n"
	       "  --load LIST      loads to run, comma separated (default: all):\n"
	       "                   baseline, idle, offload, inline, read\n"
	       "  --duration SEC   seconds per load (default 2)\n"
	       "  --rounds N       split each load's time into N rounds, the loads taking\n"
	       "                   turns, so that noise falls on all alike (default 4)\n"
	       "  --interval US    sleep length in microseconds (default 1000)\n"
	       "  --tickers N      ticker tasks (baseline: threads) per load (default 1)\n"
	       "  --workers N      pool threads for offload (default: online CPUs)\n"
	       "  --stall-ms MS    the runtime's stall threshold (default 2)\n"
	       "  --json           print one JSON document instead of the table\n"
	       "  --csv FILE       write every sample (load,ticker,tick,lateness_ns)\n"
	       "  --svg FILE       write a CDF chart of all loads (log-scaled x axis)\n"
	       "  --help           this text\n\n"
	       "Exit status: 0 done, 1 a run failed, 2 bad arguments.\n");
}

static double num_arg(const char *name, const char *v, double min, double max)
{
	char *end;
	double d;

	if (!v)
		die_usage("%s needs a value", name);
	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || !(d >= min && d <= max))
		die_usage("%s: '%s' is not a number in [%g, %g]", name, v, min, max);
	return d;
}

static void parse_loads(const char *list)
{
	char *copy, *tok, *save;

	if (!list)
		die_usage("--load needs a value");
	copy = strdup(list);
	memset(opt.want, 0, sizeof(opt.want));
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int l;

		for (l = 0; l < L_COUNT && strcmp(tok, load_names[l]); l++)
			;
		if (l == L_COUNT)
			die_usage("--load: unknown load '%s' (baseline, idle, offload, inline, read)",
				  tok);
		opt.want[l] = true;
	}
	free(copy);
	for (int l = 0; l < L_COUNT; l++)
		if (opt.want[l])
			return;
	die_usage("--load: no load given");
}

static void parse_args(int argc, char **argv)
{
	for (int l = 0; l < L_COUNT; l++)
		opt.want[l] = true;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage();
			exit(0);
		} else if (!strcmp(a, "--json")) {
			opt.json = true;
			continue;
		} else if (!strcmp(a, "--load")) {
			parse_loads(v);
		} else if (!strcmp(a, "--duration")) {
			opt.duration_s = num_arg(a, v, 0.01, 3600);
		} else if (!strcmp(a, "--interval")) {
			opt.interval_ns = (uint64_t)(num_arg(a, v, 10, 10e6) * 1e3);
		} else if (!strcmp(a, "--tickers")) {
			opt.tickers = (unsigned)num_arg(a, v, 1, 10000);
		} else if (!strcmp(a, "--rounds")) {
			opt.rounds = (unsigned)num_arg(a, v, 1, 1000);
		} else if (!strcmp(a, "--workers")) {
			opt.workers = (unsigned)num_arg(a, v, 1, 1024);
		} else if (!strcmp(a, "--stall-ms")) {
			opt.stall_ms = num_arg(a, v, 0.001, 60000);
		} else if (!strcmp(a, "--csv")) {
			if (!v)
				die_usage("--csv needs a file name");
			opt.csv = v;
		} else if (!strcmp(a, "--svg")) {
			if (!v)
				die_usage("--svg needs a file name");
			opt.svg = v;
		} else {
			die_usage("unknown argument '%s'", a);
		}
		i++;
	}
}

int main(int argc, char **argv)
{
	char verdict_text[2048] = "";

	parse_args(argc, argv);
	show_progress = isatty(STDERR_FILENO);
	for (int l = 0; l < L_COUNT; l++) {
		if (!opt.want[l])
			continue;
		res[l].per_ticker = calloc(opt.tickers, sizeof(struct samples));
		if (!res[l].per_ticker)
			die("out of memory", ENOMEM);
		res[l].ran = true;
	}
	for (round_no = 0; round_no < opt.rounds; round_no++)
		for (int l = 0; l < L_COUNT; l++) {
			if (!opt.want[l])
				continue;
			if (l == L_BASELINE)
				run_baseline();
			else
				run_urt_load((enum load_id)l);
		}
	progress_done();
	for (int l = 0; l < L_COUNT; l++) {
		for (unsigned t = 0; res[l].ran && t < opt.tickers; t++)
			for (size_t i = 0; i < res[l].per_ticker[t].n; i++)
				push(&res[l].late, res[l].per_ticker[t].v[i]);
		qsort(res[l].late.v, res[l].late.n, sizeof(uint64_t), cmp_u64);
	}
	qsort(round_trips.v, round_trips.n, sizeof(uint64_t), cmp_u64);
	verdict(verdict_text, sizeof(verdict_text));
	if (opt.json) {
		print_json(verdict_text);
	} else {
		print_table();
		print_histograms();
		printf("\nverdict: %s\n", verdict_text);
	}
	if (opt.csv)
		write_csv(opt.csv);
	if (opt.svg)
		write_svg(opt.svg);
	return 0;
}
