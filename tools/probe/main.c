/*
 * urt-latency-probe: how late does a task that sleeps 1 ms wake up, while
 * the loop is idle, while blocking work is offloaded properly, while CPU work
 * wrongly runs inline, while many tasks read? And how late does a plain
 * thread wake, with no runtime at all (the kernel's own floor)?
 *
 * Each load runs in turn on a fresh loop, whose own lag monitor sleeps one
 * interval at a time and records lateness = (woke - slept_at) - interval:
 * the probe reads the runtime's metrics (urt_loop_lag, urt_loop_metrics),
 * as a service would. The runtime's stall detector is on: its reports are
 * counted, and the worst tick names the task that ran instead.
 *
 * This file: the options, the shared results and helpers, main. The loads
 * are in loads.c, the report's forms in report.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <urt.h>

#include "probe.h"

const char *const load_names[L_COUNT] = { "baseline", "idle", "offload", "inline", "read" };
const char *const load_desc[L_COUNT] = {
	"plain thread, clock_nanosleep, no runtime, no timer slack",
	"the loop with only the lag monitor",
	"sleeping and CPU jobs in flight via urt_to_thread",
	"the same CPU work on the loop, yielding every 5 ms",
	"64 tasks reading a file and a pipe",
};

struct opts opt = {
	.duration_s = 2.0,
	.interval_ns = 1 * MS,
	.tickers = 1,
	.workers = 0,
	.rounds = 4,
	.stall_ms = 2.0,
	.pool_priority = "batch",
};

struct load_result res[L_COUNT];
struct samples round_trips;
const char *backend_name;
char backend_why[160];
bool show_progress;
unsigned round_no;

/* ---- small helpers ---- */

void die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "urt-latency-probe: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'urt-latency-probe --help'.\n");
	exit(2);
}

void die(const char *what, int err)
{
	fprintf(stderr, "urt-latency-probe: %s: %s\n", what, strerror(err));
	exit(1);
}

struct urt_hist *hist_new(void)
{
	struct urt_hist *h = calloc(1, sizeof(*h));

	if (!h)
		die("out of memory", ENOMEM);
	return h;
}

void hist_add(struct urt_hist *a, const struct urt_hist *b)
{
	if (!b->count)
		return;
	if (!a->count || b->min < a->min)
		a->min = b->min;
	if (b->max > a->max)
		a->max = b->max;
	a->count += b->count;
	a->sum += b->sum;
	for (size_t i = 0; i < URT_HIST_BUCKETS; i++)
		a->counts[i] += b->counts[i];
}

void push(struct samples *s, uint64_t v)
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

void samples_sort(struct samples *s)
{
	qsort(s->v, s->n, sizeof(uint64_t), cmp_u64);
}

/* Percentile of sorted samples, nearest rank. */
uint64_t pct(const struct samples *s, double p)
{
	size_t i;

	if (!s->n)
		return 0;
	i = (size_t)ceil(p / 100.0 * (double)s->n);
	return s->v[i ? i - 1 : 0];
}

double us(uint64_t ns)
{
	return (double)ns / 1e3;
}

/* ---- arguments ---- */

static void usage(void)
{
	printf("usage: urt-latency-probe [options]\n\n"
	       "Measures how late a task that sleeps one interval wakes up, under each load\n"
	       "in turn, with the loop's own lag monitor (urt_lag_monitor_start), and prints\n"
	       "a table, a histogram per load, the worst tick and its culprit, and a verdict.\n\n"
	       "  --load LIST      loads to run, comma separated (default: all):\n"
	       "                   baseline, idle, offload, inline, read\n"
	       "  --duration SEC   seconds per load (default 2)\n"
	       "  --rounds N       split each load's time into N rounds, the loads taking\n"
	       "                   turns, so that noise falls on all alike (default 4)\n"
	       "  --interval US    sleep length in microseconds (default 1000)\n"
	       "  --tickers N      baseline: N threads, all measured; urt loads: N-1 more\n"
	       "                   tasks sleeping the interval beside the lag monitor,\n"
	       "                   which is measured (default 1)\n"
	       "  --workers N      pool threads for offload (default: online CPUs)\n"
	       "  --stall-ms MS    the runtime's stall threshold (default 2)\n"
	       "  --pool-priority P  the pool's workers: batch (urt's default: SCHED_BATCH,\n"
	       "                   10 nice steps below the loop), same (as the loop),\n"
	       "                   idle (SCHED_IDLE)\n"
	       "  --idle-poll US   the loops spin up to US before sleeping in the kernel\n"
	       "                   (urt_loop_opts.idle_poll_ns; default 0: off)\n"
	       "  --cpu-dma-latency  hold /dev/cpu_dma_latency at 0 while running: no deep\n"
	       "                   CPU sleep states (needs root)\n"
	       "  --json           print one JSON document instead of the table\n"
	       "  --csv FILE       write each load's lateness histogram, its buckets that\n"
	       "                   hold ticks (load,lo_ns,hi_ns,count)\n"
	       "  --svg FILE       write charts of all loads: a CDF (log-scaled x axis) and\n"
	       "                   the percentile plot (log 1/(1-q) axis, 50%% to 99.99%%)\n"
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
		} else if (!strcmp(a, "--pool-priority")) {
			if (!v || (strcmp(v, "batch") && strcmp(v, "same") && strcmp(v, "idle")))
				die_usage("--pool-priority: batch, same or idle");
			opt.pool_priority = v;
		} else if (!strcmp(a, "--idle-poll")) {
			opt.idle_poll_ns = (uint64_t)(num_arg(a, v, 0, 10e6) * 1e3);
		} else if (!strcmp(a, "--cpu-dma-latency")) {
			opt.dma_latency = true;
			continue;
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

	int dma_fd = -1;

	parse_args(argc, argv);
	show_progress = isatty(STDERR_FILENO);
	/* The request holds while the fd stays open: until the probe exits. */
	if (opt.dma_latency) {
		int32_t zero = 0;

		dma_fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);
		if (dma_fd < 0 || write(dma_fd, &zero, sizeof(zero)) != (ssize_t)sizeof(zero))
			die("/dev/cpu_dma_latency", errno);
	}
	for (int l = 0; l < L_COUNT; l++) {
		if (!opt.want[l])
			continue;
		res[l].late = hist_new();
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
	samples_sort(&round_trips);
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
	if (dma_fd >= 0)
		close(dma_fd);
	return 0;
}
