/*
 * What the peer benchmarks (urt, raw liburing, libuv) share: the clock,
 * dying with a message, percentiles, CPU spinning, peak RSS, the W4 data
 * file, and the one line format run.sh collects:
 *
 *	result <workload> <implementation> <metric> <value>
 *
 * e.g. "result W4 raw-read iops 1123456". Everything else a program prints
 * is for people; run.sh reads only these lines, so that a program may say
 * more without breaking the table.
 */
#ifndef URT_BENCH_UTIL_H
#define URT_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_MS 1000000ull

/* CLOCK_MONOTONIC, the clock urt's timers use. */
uint64_t bench_now_ns(void);

/* Print "<prog>: error: ..." on stderr and exit 1: a failed check, or a
 * setup that cannot go on. */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Set once from main, for bench_die's messages. */
extern const char *bench_prog;

/* One "result" line, flushed at once so that a later crash keeps it. */
/* One figure for report.py: "result W IMPL METRIC VALUE". An impl named
 * urt... becomes urt...-epoll when URT_BACKEND=epoll (the same program on
 * the epoll backend), and urt...-watched with URT_BENCH_METRICS=1 (its
 * loops with metrics and a lag monitor, see bench_loop.h). */
void bench_result(const char *workload, const char *impl, const char *metric, double value);

/* Sort v and return its p-th percentile (nearest rank; p in 0..100). */
uint64_t bench_pct(uint64_t *v, size_t n, double p);

/* The same for signed samples (W5's lateness, which a peer's timer may
 * make negative by firing early). */
int64_t bench_pct_i64(int64_t *v, size_t n, double p);

/* Largest of v (unsorted). */
int64_t bench_max_i64(const int64_t *v, size_t n);

/* Sort v ascending: per-run figures (times, rates) to take medians of. */
void bench_sort_double(double *v, size_t n);

/* Sort v and return its median, the mean of the middle two when n is even
 * (0 when n is 0). */
double bench_median(double *v, size_t n);

/*
 * W5's figures for one run: p50, p99 and max of the lateness samples (ns),
 * printed for people and as "result <workload> <impl> p50_us|p99_us|max_us".
 * Sorts v.
 */
void bench_lateness_report(const char *workload, const char *impl, int64_t *v, size_t n);

/* Burn CPU for ns without a syscall: the "inline" load of W5. Returns a
 * value the caller must consume so that the work is not optimised away. */
uint64_t bench_spin_ns(uint64_t ns);

/* Peak resident set of the process, KiB (getrusage's ru_maxrss). */
long bench_peak_rss_kib(void);

/* Parse a positive count ("100000", also "100k", "1m"); dies on junk. */
uint64_t bench_count(const char *s, const char *what);

/* The same for an option with a ceiling: dies above max too. */
unsigned bench_count_max(const char *s, const char *what, unsigned max);

/*
 * W4's file: blocks of 4 KiB, block i starting with i as a little-endian
 * u64 (the rest a pattern). Opened read-only; created (or re-created) when
 * it is missing or of another size, then read once whole so that every
 * block sits in the page cache before anything is timed.
 */
#define BENCH_BLOCK 4096u
int bench_open_blocks(const char *path, uint64_t blocks);

/* W4's options, the same for urt and for the raw floors. */
#define BENCH_W4_MAX_INFLIGHT 1024u
struct bench_w4_opts {
	const char *file;
	uint64_t mib;
	uint64_t reads;
	unsigned inflight;
};
/* Parse --file, --file-mib, --reads, --inflight, --help into *o (defaults:
 * urt-bench-w4.dat, 256 MiB, 1,000,000 reads, 32 in flight); usage prints
 * the program's help. Exits 0 on --help, 2 on a bad argument. */
void bench_w4_parse(int argc, char **argv, struct bench_w4_opts *o, void (*usage)(FILE *f));

/* ECHO's servers' command line, the same for each: --port P (0 to 65535,
 * default 0: any free port) and --help. Returns P; exits 0 on --help, 2
 * on a bad argument (usage prints the program's help). */
unsigned bench_echo_parse(int argc, char **argv, void (*usage)(FILE *f));

/* Check a block read from W4's file: its first 8 bytes are want, LE. */
static inline int bench_block_ok(const void *buf, uint64_t want)
{
	const unsigned char *b = buf;
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v == want;
}

/* A small, fast generator for W4's offsets (xorshift64*): every program
 * draws its offsets the same way, from a seed per reader. */
static inline uint64_t bench_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

#endif
