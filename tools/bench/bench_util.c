/* Helpers the peer benchmarks share; see bench_util.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

const char *bench_prog = "bench";

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "%s: error: ", bench_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void bench_result(const char *workload, const char *impl, const char *metric, double value)
{
	const char *backend = getenv("URT_BACKEND"), *watch = getenv("URT_BENCH_METRICS");
	bool urt = !strncmp(impl, "urt", 3);
	bool epoll = urt && backend && !strcmp(backend, "epoll");
	bool watched = urt && watch && !strcmp(watch, "1");

	printf("result %s %s%s%s %s %.6g\n", workload, impl, epoll ? "-epoll" : "",
	       watched ? "-watched" : "", metric, value);
	fflush(stdout);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t bench_pct(uint64_t *v, size_t n, double p)
{
	size_t rank;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	/* Nearest rank: the smallest value with at least p% at or below it. */
	rank = (size_t)((p / 100.0) * (double)n + 0.999999);
	return v[rank ? rank - 1 : 0];
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

int64_t bench_pct_i64(int64_t *v, size_t n, double p)
{
	size_t rank;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_i64);
	rank = (size_t)((p / 100.0) * (double)n + 0.999999);
	return v[rank ? rank - 1 : 0];
}

int64_t bench_max_i64(const int64_t *v, size_t n)
{
	int64_t m = n ? v[0] : 0;

	for (size_t i = 1; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void bench_sort_double(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
}

double bench_median(double *v, size_t n)
{
	if (!n)
		return 0;
	bench_sort_double(v, n);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_lateness_report(const char *workload, const char *impl, int64_t *v, size_t n)
{
	int64_t mx = bench_max_i64(v, n);
	double p50 = (double)bench_pct_i64(v, n, 50) / 1e3;
	double p99 = (double)bench_pct_i64(v, n, 99) / 1e3;

	printf("%s %s: %zu ticks, lateness p50 %.1f us, p99 %.1f us, max %.1f us\n", workload,
	       impl, n, p50, p99, (double)mx / 1e3);
	bench_result(workload, impl, "p50_us", p50);
	bench_result(workload, impl, "p99_us", p99);
	bench_result(workload, impl, "max_us", (double)mx / 1e3);
}

uint64_t bench_spin_ns(uint64_t ns)
{
	uint64_t until = bench_now_ns() + ns, x = 88172645463325252ull;

	/* The clock is read every 1,000 rounds (a vDSO call, no syscall), so
	 * that the spin overshoots by well under a microsecond. */
	do {
		for (int i = 0; i < 1000; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
	} while (bench_now_ns() < until);
	return x;
}

long bench_peak_rss_kib(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		bench_die("getrusage: %s", strerror(errno));
	return ru.ru_maxrss;
}

uint64_t bench_count(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end == 'k' || *end == 'K')
		v *= 1000, end++;
	else if (*end == 'm' || *end == 'M')
		v *= 1000000, end++;
	if (errno || end == s || *end || v == 0)
		bench_die("%s: want a positive count, got '%s'", what, s);
	return v;
}

unsigned bench_count_max(const char *s, const char *what, unsigned max)
{
	uint64_t v = bench_count(s, what);

	if (v > max)
		bench_die("%s: at most %u", what, max);
	return (unsigned)v;
}

static void fill_block(unsigned char *b, uint64_t i)
{
	for (int k = 0; k < 8; k++)
		b[k] = (unsigned char)(i >> (8 * k));
	/* The rest varies with i too, so that a block is never all alike. */
	for (unsigned k = 8; k < BENCH_BLOCK; k++)
		b[k] = (unsigned char)(i * 31 + k);
}

static void write_blocks(const char *path, uint64_t blocks)
{
	char tmp[4096];
	unsigned char *buf;
	const uint64_t chunk = 256;	/* blocks per write: 1 MiB */
	int fd;

	/* Written beside the target and renamed, so that a run cut short
	 * never leaves a file of the right size with the wrong content. */
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		bench_die("path too long: %s", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		bench_die("creating %s: %s", tmp, strerror(errno));
	buf = malloc(chunk * BENCH_BLOCK);
	if (!buf)
		bench_die("out of memory");
	for (uint64_t i = 0; i < blocks; i += chunk) {
		uint64_t n = blocks - i < chunk ? blocks - i : chunk;
		size_t len = (size_t)n * BENCH_BLOCK;

		for (uint64_t k = 0; k < n; k++)
			fill_block(buf + k * BENCH_BLOCK, i + k);
		if (write(fd, buf, len) != (ssize_t)len)
			bench_die("writing %s: %s", tmp, strerror(errno));
	}
	free(buf);
	if (close(fd) || rename(tmp, path))
		bench_die("finishing %s: %s", path, strerror(errno));
}

int bench_open_blocks(const char *path, uint64_t blocks)
{
	unsigned char *buf;
	struct stat st;
	int fd;

	if (stat(path, &st) || (uint64_t)st.st_size != blocks * BENCH_BLOCK)
		write_blocks(path, blocks);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		bench_die("opening %s: %s", path, strerror(errno));
	/* Pull every block into the page cache, and check the file on the
	 * way: the timed reads must hit the cache, and a stale file of the
	 * right size but another layout must fail here, not mid-run. */
	buf = malloc(1 << 20);
	if (!buf)
		bench_die("out of memory");
	for (uint64_t off = 0; off < blocks * BENCH_BLOCK;) {
		ssize_t n = pread(fd, buf, 1 << 20, (off_t)off);

		if (n <= 0 || n % BENCH_BLOCK)
			bench_die("reading %s: %s", path, n < 0 ? strerror(errno) : "short");
		for (ssize_t k = 0; k < n; k += BENCH_BLOCK)
			if (!bench_block_ok(buf + k, (off + (uint64_t)k) / BENCH_BLOCK))
				bench_die("%s: block %llu does not carry its index", path,
					  (unsigned long long)((off + (uint64_t)k) / BENCH_BLOCK));
		off += (uint64_t)n;
	}
	free(buf);
	return fd;
}

void bench_w4_parse(int argc, char **argv, struct bench_w4_opts *o, void (*usage)(FILE *f))
{
	static const struct option lo[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "file-mib", required_argument, NULL, 'm' },
		{ "reads", required_argument, NULL, 'n' },
		{ "inflight", required_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct bench_w4_opts){ "urt-bench-w4.dat", 256, 1000000, 32 };
	while ((c = getopt_long(argc, argv, "f:m:n:q:h", lo, NULL)) != -1) {
		switch (c) {
		case 'f':
			o->file = optarg;
			break;
		case 'm':
			o->mib = bench_count(optarg, "--file-mib");
			break;
		case 'n':
			o->reads = bench_count(optarg, "--reads");
			break;
		case 'q':
			o->inflight = (unsigned)bench_count(optarg, "--inflight");
			if (o->inflight > BENCH_W4_MAX_INFLIGHT)
				bench_die("--inflight: at most %u", BENCH_W4_MAX_INFLIGHT);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		usage(stderr);
		exit(2);
	}
}

unsigned bench_echo_parse(int argc, char **argv, void (*usage)(FILE *f))
{
	static const struct option lo[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long port = 0;
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "p:h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			errno = 0;
			port = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || port > 65535)
				bench_die("--port: want 0 to 65535, got '%s'", optarg);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		usage(stderr);
		exit(2);
	}
	return (unsigned)port;
}
