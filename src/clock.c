/* clock: the one clock every layer reads (CLOCK_MONOTONIC, in ns). */
#include <time.h>

#include "base.h"

uint64_t urt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
