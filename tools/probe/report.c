/* urt-latency-probe's report: a table, histograms and a verdict for people;
 * JSON, CSV and an SVG chart for programs. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "probe.h"

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

/* h's counts in the report's coarse buckets (each of h's fine buckets, a
 * hundredth of its value wide, falls where its lower bound does). */
static void histogram(const struct urt_hist *h, uint64_t counts[NBUCKETS])
{
	size_t b = 0;

	memset(counts, 0, NBUCKETS * sizeof(counts[0]));
	for (size_t i = 0; i < URT_HIST_BUCKETS; i++) {
		uint64_t lo, c = urt_hist_bucket(h, i, &lo, NULL);

		if (!c)
			continue;
		while (lo >= buckets[b].below) /* in order: walk the buckets along */
			b++;
		counts[b] += c;
	}
}

static double utilization(const struct loop_view *v)
{
	uint64_t all = v->busy_ns + v->idle_ns;

	return all ? (double)v->busy_ns / (double)all : 0;
}

/* Percentile p of a load's lateness, in us. */
static double late_us(enum load_id l, double p)
{
	return us(urt_hist_percentile(res[l].late, p));
}

void print_table(void)
{
	if (backend_name)
		printf("\nbackend: %s\n", backend_why);
	if (opt.idle_poll_ns)
		printf("idle poll: up to %.0f us before each sleep in the kernel", us(opt.idle_poll_ns));
	else
		printf("idle poll: off (--idle-poll US)");
	printf("; /dev/cpu_dma_latency: %s; pool workers: %s (--pool-priority)\n",
	       opt.dma_latency ? "held at 0" : "not held (--cpu-dma-latency)", opt.pool_priority);
	printf("\nwake-up lateness of a %.0f us sleep, %.1f s per load in %u interleaved rounds "
	       "(us): urt loads as the loop's own lag monitor measures it (urt_loop_lag), with its "
	       "utilization and schedule delay (urt_loop_metrics)\n\n",
	       us(opt.interval_ns), opt.duration_s, opt.rounds);
	printf("%-9s %9s %9s %9s %9s %9s %8s %6s %9s  %s\n", "load", "p50", "p90", "p99", "p99.9",
	       "max", "ticks", "util", "sched p99", "what runs");
	for (int l = 0; l < L_COUNT; l++) {
		const struct loop_view *v = &res[l].view;
		char util[16] = "-", sched[16] = "-";

		if (!res[l].ran)
			continue;
		if (v->sched) {
			snprintf(util, sizeof(util), "%.0f%%", 100 * utilization(v));
			snprintf(sched, sizeof(sched), "%.1f", us(urt_hist_percentile(v->sched, 99)));
		}
		printf("%-9s %9.1f %9.1f %9.1f %9.1f %9.1f %8llu %6s %9s  %s\n", load_names[l],
		       late_us(l, 50), late_us(l, 90), late_us(l, 99), late_us(l, 99.9),
		       us(res[l].late->max), (unsigned long long)res[l].late->count, util, sched,
		       load_desc[l]);
	}
	printf("\nthe worst tick of each urt load (urt_lag_info), and what ran instead\n\n");
	for (int l = 0; l < L_COUNT; l++) {
		if (!res[l].ran || !res[l].view.sched)
			continue;
		printf("%-9s %9.1f us late (round %u)", load_names[l], us(res[l].worst_late_ns),
		       res[l].worst_round + 1);
		/* A culprit is one whose run makes up most of the lateness. */
		if (res[l].worst_culprit[0] && 2 * res[l].worst_ran_ns >= res[l].worst_late_ns)
			printf(": task \"%s\" ran %.1f ms without yielding before it\n",
			       res[l].worst_culprit, (double)res[l].worst_ran_ns / 1e6);
		else
			printf(": no task ran long before it (longest %.3f ms): the loop "
			       "itself woke late\n", (double)res[l].worst_ran_ns / 1e6);
	}
	if (round_trips.n)
		printf("\nurt_to_thread round trip during offload (hand-off + completion, fn's own "
		       "time excluded): p50 %.1f  p90 %.1f  p99 %.1f  max %.1f us, %zu jobs\n",
		       us(pct(&round_trips, 50)), us(pct(&round_trips, 90)),
		       us(pct(&round_trips, 99)), us(round_trips.v[round_trips.n - 1]),
		       round_trips.n);
}

void print_histograms(void)
{
	printf("\nlateness histogram (share of ticks per bucket)\n");
	for (int l = 0; l < L_COUNT; l++) {
		uint64_t counts[NBUCKETS];

		if (!res[l].ran || !res[l].late->count)
			continue;
		histogram(res[l].late, counts);
		printf("\n%s\n", load_names[l]);
		for (size_t b = 0; b < NBUCKETS; b++) {
			double f = (double)counts[b] / (double)res[l].late->count;
			int bar = (int)lround(f * 40);

			if (!counts[b])
				continue;
			printf("  %8s %5.1f%% %.*s%s\n", buckets[b].label, f * 100, bar,
			       "########################################", bar ? "" : ".");
		}
	}
}

/* The verdict, in plain words; also the JSON's "verdict". */
void verdict(char *out, size_t len)
{
	size_t n = 0;

#define SAY(...) (n += (size_t)snprintf(out + n, n < len ? len - n : 0, __VA_ARGS__))
	if (res[L_IDLE].ran && res[L_BASELINE].ran) {
		double base = late_us(L_BASELINE, 99);

		SAY("Idle, the loop woke %.0f us late at p99, %.2fx a plain thread's %.0f us "
		    "(the kernel's own wake-up latency on this machine). ",
		    late_us(L_IDLE, 99), late_us(L_IDLE, 99) / (base > 0 ? base : 1), base);
	}
	if (res[L_INLINE].ran && res[L_OFFLOAD].ran)
		SAY("Inline CPU work delayed wake-ups by %.1f ms at p50 (%.1f ms at p99); "
		    "offloaded with urt_to_thread, the same work cost %.0f us at p50 (%.0f us at p99). ",
		    late_us(L_INLINE, 50) / 1e3, late_us(L_INLINE, 99) / 1e3, late_us(L_OFFLOAD, 50),
		    late_us(L_OFFLOAD, 99));
	else if (res[L_INLINE].ran)
		SAY("Inline CPU work delayed wake-ups by %.1f ms at p50. ",
		    late_us(L_INLINE, 50) / 1e3);
	if (res[L_READ].ran && res[L_IDLE].ran)
		SAY("Under 64 reading tasks, p99 was %.0f us against %.0f us idle. ",
		    late_us(L_READ, 99), late_us(L_IDLE, 99));
	if (res[L_INLINE].ran)
		SAY("The stall detector (threshold %.1f ms) reported %u stall%s under inline%s%s%s.",
		    opt.stall_ms, res[L_INLINE].stalls, res[L_INLINE].stalls == 1 ? "" : "s",
		    res[L_INLINE].stalls ? ", e.g. \"" : "", res[L_INLINE].stall_example,
		    res[L_INLINE].stalls ? "\"" : "");
#undef SAY
}

void print_json(const char *verdict_text)
{
	printf("{\n  \"interval_us\": %.3f,\n  \"duration_s\": %.3f,\n  \"rounds\": %u,\n"
	       "  \"tickers\": %u,\n"
	       "  \"stall_threshold_ms\": %.3f,\n  \"idle_poll_us\": %.3f,\n"
	       "  \"cpu_dma_latency_held\": %s,\n  \"pool_priority\": \"%s\",\n",
	       us(opt.interval_ns), opt.duration_s, opt.rounds, opt.tickers, opt.stall_ms,
	       us(opt.idle_poll_ns), opt.dma_latency ? "true" : "false", opt.pool_priority);
	/* backend_why is urt's own text: no quotes or backslashes in it. */
	if (backend_name)
		printf("  \"backend\": {\"name\": \"%s\", \"why\": \"%s\"},\n", backend_name,
		       backend_why);
	printf("  \"loads\": [");
	for (int l = 0, first = 1; l < L_COUNT; l++) {
		const struct urt_hist *h = res[l].late;
		uint64_t counts[NBUCKETS];

		if (!res[l].ran)
			continue;
		histogram(h, counts);
		printf("%s\n    {\"name\": \"%s\", \"source\": \"%s\", \"ticks\": %llu, "
		       "\"lateness_us\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, "
		       "\"p999\": %.3f, \"max\": %.3f}, \"stalls\": %u, \"histogram\": {",
		       first ? "" : ",", load_names[l],
		       res[l].view.sched ? "urt_loop_lag" : "threads", (unsigned long long)h->count,
		       late_us(l, 50), late_us(l, 90), late_us(l, 99), late_us(l, 99.9),
		       us(h->max), res[l].stalls);
		for (size_t b = 0; b < NBUCKETS; b++)
			printf("%s\"%s\": %llu", b ? ", " : "", buckets[b].label,
			       (unsigned long long)counts[b]);
		printf("}");
		if (res[l].view.sched) {
			const struct loop_view *v = &res[l].view;

			/* Task names are the probe's own: no quotes in them. */
			printf(", \"utilization\": %.4f, \"sched_delay_us\": {\"wakeups\": %llu, "
			       "\"sampled\": %llu, \"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}, "
			       "\"worst\": "
			       "{\"late_us\": %.3f, \"round\": %u, \"culprit\": \"%s\", "
			       "\"culprit_ran_us\": %.3f}",
			       utilization(v), (unsigned long long)v->wakeups,
			       (unsigned long long)v->sched->count,
			       us(urt_hist_percentile(v->sched, 50)),
			       us(urt_hist_percentile(v->sched, 99)), us(v->sched->max),
			       us(res[l].worst_late_ns), res[l].worst_round + 1, res[l].worst_culprit,
			       us(res[l].worst_ran_ns));
		}
		printf("}");
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

void write_csv(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		die(path, errno);
	fprintf(f, "load,lo_ns,hi_ns,count\n");
	for (int l = 0; l < L_COUNT; l++)
		for (size_t i = 0; res[l].ran && i < URT_HIST_BUCKETS; i++) {
			uint64_t lo, hi, c = urt_hist_bucket(res[l].late, i, &lo, &hi);

			if (c)
				fprintf(f, "%s,%llu,%llu,%llu\n", load_names[l], (unsigned long long)lo,
					(unsigned long long)hi, (unsigned long long)c);
		}
	if (fclose(f))
		die(path, errno);
}

/* The label of a decade of microseconds. */
static const char *decade_label(double d)
{
	return d >= 1000 ? (d >= 1e6 ? (d >= 1e7 ? "10 s" : "1 s") :
				       (d >= 1e5 ? "100 ms" : d >= 1e4 ? "10 ms" : "1 ms")) :
			   (d >= 100 ? "100 us" : d >= 10 ? "10 us" : "1 us");
}

/*
 * The percentile plot latency engineers read, as HdrHistogram draws it,
 * from y0 down: x is the percentile on a log 1/(1-q) axis from 50% to
 * 99.99%, y the lateness on a log axis (decades lo..hi of us), one line per
 * load. The tail that a CDF squeezes against 1.0 gets most of the width.
 */
static void percentile_panel(FILE *f, double y0, double W, double H, double lo, double hi,
			     const char *const *colors)
{
	const double left = 70, right = 170, top = y0 + 40, bottom = 60;
	const double pw = W - left - right, ph = H - 40 - bottom;
	const double x_lo = log10(2), x_hi = 4; /* 1/(1-q): 2 (50%) to 1e4 (99.99%) */
	static const char *const qlabels[] = { "50%", "90%", "99%", "99.9%", "99.99%" };
	static const double qs[] = { 50, 90, 99, 99.9, 99.99 };

	fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"15\">wake-up lateness by percentile "
		   "(log axes)</text>\n", left, y0 + 22);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		double x = left + pw * (log10(1 / (1 - qs[i] / 100)) - x_lo) / (x_hi - x_lo);

		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
			   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
			x, top, x, top + ph, x, top + ph + 18, qlabels[i]);
	}
	for (double d = lo; d <= hi; d *= 10) {
		double y = top + ph - ph * log10(d / lo) / log10(hi / lo);

		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
			   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
			left, y, left + pw, y, left - 6, y + 4, decade_label(d));
	}
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">percentile</text>\n"
		   "<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\">"
		   "lateness</text>\n",
		left + pw / 2, y0 + H - 18, top + ph / 2);
	for (int l = 0; l < L_COUNT; l++) {
		if (!res[l].ran || !res[l].late->count)
			continue;
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
			colors[l]);
		for (int i = 0; i <= 300; i++) {
			double x = x_lo + (x_hi - x_lo) * i / 300.0, q = 100 * (1 - pow(10, -x));
			double v = late_us((enum load_id)l, q);

			if (v < lo)
				v = lo;
			fprintf(f, "%.1f,%.1f ", left + pw * (x - x_lo) / (x_hi - x_lo),
				top + ph - ph * log10(v / lo) / log10(hi / lo));
		}
		fprintf(f, "\"/>\n");
	}
}

/* A CDF of every load's lateness on a log-scaled x axis, and under it the
 * percentile plot, as plain SVG. */
void write_svg(const char *path)
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
		if (res[l].ran && res[l].late->count)
			while (hi < us(res[l].late->max))
				hi *= 10;
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		   "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
		   "height=\"100%%\" fill=\"white\"/>\n", W, 2 * H);
	fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\">urt-latency-probe: wake-up "
		   "lateness of a %.0f us sleep (CDF)</text>\n", left, us(opt.interval_ns));
	for (double d = lo; d <= hi; d *= 10) {
		double x = left + pw * log10(d / lo) / log10(hi / lo);

		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
			   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
			x, top, x, top + ph, x, top + ph + 18, decade_label(d));
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
		const struct urt_hist *h = res[l].late;
		uint64_t seen = 0;

		if (!res[l].ran || !h->count)
			continue;
		/* A point at the top of each bucket that holds ticks. */
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
			colors[l]);
		for (size_t i = 0; i < URT_HIST_BUCKETS; i++) {
			uint64_t hi_ns, c = urt_hist_bucket(h, i, NULL, &hi_ns);
			double v;

			if (!c)
				continue;
			seen += c;
			v = us(hi_ns > h->max ? h->max : hi_ns);
			if (v < lo)
				v = lo;
			fprintf(f, "%.1f,%.1f ", left + pw * log10(v / lo) / log10(hi / lo),
				top + ph - ph * (double)seen / (double)h->count);
		}
		fprintf(f, "\"/>\n");
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
			   "stroke-width=\"3\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
			W - right + 15, top + 10 + 20.0 * k, W - right + 40, top + 10 + 20.0 * k,
			colors[l], W - right + 46, top + 14 + 20.0 * k, load_names[l]);
		k++;
	}
	percentile_panel(f, H, W, H, lo, hi, colors);
	fprintf(f, "</svg>\n");
	if (fclose(f))
		die(path, errno);
}
