/* urt-latency-probe's parts: the loads (loads.c), the report (report.c)
 * and the command line (main.c) share the options, the results and a few
 * helpers declared here. */
#ifndef URT_PROBE_H
#define URT_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <urt.h>

#define US 1000ull
#define MS 1000000ull
#define CRUNCH_NS (5 * MS)    /* one chunk of CPU work, offloaded or inline */

enum load_id { L_BASELINE, L_IDLE, L_OFFLOAD, L_INLINE, L_READ, L_COUNT };

extern const char *const load_names[L_COUNT];
extern const char *const load_desc[L_COUNT];

/* A growable array of nanosecond samples. */
struct samples {
	uint64_t *v;
	size_t n, cap;
};

/* What the runtime itself saw during a urt load (urt_loop_metrics and the
 * lag monitor's schedule delay), summed over the load's rounds. */
struct loop_view {
	uint64_t busy_ns, idle_ns;
	uint64_t wakeups;         /* woken tasks resumed (urt_lag_info) */
	struct urt_hist *sched;   /* woken task to running, a sample of the
				   * wake-ups; NULL: none */
};

struct load_result {
	bool ran;
	/* How late each tick woke, over all rounds: for urt loads the lag
	 * monitor's histogram (urt_loop_lag), for the baseline its threads'. */
	struct urt_hist *late;
	struct loop_view view;
	unsigned stalls;
	uint64_t stall_max_ns;
	char stall_example[128];
	/* The worst tick of a urt load (urt_lag_info): how late, in which
	 * round, and what ran instead (the stall detector's longest run). */
	uint64_t worst_late_ns, worst_ran_ns;
	unsigned worst_round;
	char worst_culprit[32];
};

struct opts {
	bool want[L_COUNT];
	double duration_s;
	uint64_t interval_ns;
	unsigned tickers;
	unsigned workers;
	unsigned rounds;
	double stall_ms;
	uint64_t idle_poll_ns;    /* the loops' idle poll (0: off) */
	const char *pool_priority; /* "batch" (urt's default), "same", "idle" */
	bool dma_latency;         /* hold /dev/cpu_dma_latency at 0 */
	bool json;
	const char *csv, *svg;
};

extern struct opts opt;
extern struct load_result res[L_COUNT];
extern struct samples round_trips;  /* urt_to_thread overhead during offload */
extern bool show_progress;          /* a progress bar on stderr */
extern unsigned round_no;           /* the round running, from 0 */
/* The backend the urt loads ran on, as urt_loop_backend says it. */
extern const char *backend_name;    /* "io_uring", "epoll"; NULL: none ran */
extern char backend_why[160];

/* main.c: exit 2 with a message and a pointer to --help. */
void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* main.c: exit 1 with "what: strerror(err)". */
void die(const char *what, int err) __attribute__((noreturn));
/* main.c: a zeroed histogram (exits when out of memory). */
struct urt_hist *hist_new(void);
/* main.c: add b's counts to a. */
void hist_add(struct urt_hist *a, const struct urt_hist *b);
/* main.c: append v to s (exits when out of memory). */
void push(struct samples *s, uint64_t v);
/* main.c: sort s's samples, which pct() needs. */
void samples_sort(struct samples *s);
/* main.c: percentile of sorted samples, nearest rank; 0 when empty. */
uint64_t pct(const struct samples *s, double p);
/* main.c: ns as us. */
double us(uint64_t ns);

/* loads.c: one round's slice of a plain thread per ticker (the kernel's
 * own wake-up latency), or of a urt load, whose lateness the loop's lag
 * monitor measures; both add to res[l]. */
void run_baseline(void);
void run_urt_load(enum load_id l);
/* loads.c: clear the progress bar's line. */
void progress_done(void);

/* report.c: the forms of the result, from res[] and round_trips (sorted). */
void verdict(char *out, size_t len);
void print_table(void);
void print_histograms(void);
void print_json(const char *verdict_text);
void write_csv(const char *path);
void write_svg(const char *path);

#endif
