/* What every layer of urt uses: the public API, the lists, the sanitizers
 * the build is for, cache-line allocation and the clock's conversions. */
#ifndef URT_BASE_H
#define URT_BASE_H

#include <linux/time_types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h> /* every list: LIST_* (unordered), TAILQ_* (FIFO) */

#include "urt.h"

#define URT__TLS __thread __attribute__((tls_model("initial-exec")))

#if defined(__SANITIZE_ADDRESS__)
#define URT__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define URT__ASAN 1
#endif
#endif
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>) && __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#define URT__VALGRIND 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define URT__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define URT__TSAN 1
#endif
#endif

/* The order an IORING_OP_MSG_RING carries from its sender to the loop
 * that reaps it is real (the kernel orders it), but ThreadSanitizer cannot
 * see it: the sender releases on an address just before it sends, the
 * loop acquires on it as it dispatches the message. No-ops otherwise. */
#if URT__TSAN
#include <sanitizer/tsan_interface.h>
#define urt__msg_released(addr) __tsan_release(addr)
#define urt__msg_acquired(addr) __tsan_acquire(addr)
#else
#define urt__msg_released(addr) ((void)(addr))
#define urt__msg_acquired(addr) ((void)(addr))
#endif

/* Zeroed memory of its own 128-byte blocks (a cache line and the line the
 * hardware prefetches with it), for a structure that one thread writes while
 * another thread writes a different one: allocated with calloc, a loop and
 * its pool could share a block, and each write would move it between CPUs.
 * NULL when out of memory; free with free(). */
static inline void *urt__alloc_lines(size_t size)
{
	size_t len = (size + 127) & ~(size_t)127;
	void *p = aligned_alloc(128, len);

	if (p)
		memset(p, 0, len);
	return p;
}

/* A pause in a spin: the CPU's hint that the thread waits for a store of
 * another. */
static inline void urt__cpu_relax(void)
{
#if defined(__x86_64__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

/* An absolute CLOCK_MONOTONIC time in ns as the kernel's timeouts take it. */
static inline void urt__timespec_of(struct __kernel_timespec *ts, uint64_t ns)
{
	ts->tv_sec = (long long)(ns / 1000000000u);
	ts->tv_nsec = (long long)(ns % 1000000000u);
}

/* Now plus ns on CLOCK_MONOTONIC, saturating: "never" stays never. */
static inline uint64_t urt__deadline_after(uint64_t ns)
{
	uint64_t now = urt_now_ns();

	return ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
}

#endif
