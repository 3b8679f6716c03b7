/* hist: a log-linear histogram of nanosecond values (urt_hist_*), the
 * layout of HdrHistogram with 7 bits below the leading one: exact below
 * 256, then 128 buckets per power of two (at most 1/128 wide, relative). */
#include "base.h"

#define SUB_BITS 7
#define SUB (1u << SUB_BITS)   /* buckets per power of two */
#define TOP 40                 /* the last power of two with buckets */

static size_t index_of(uint64_t v)
{
	unsigned e;

	if (v < 2 * SUB)
		return (size_t)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	if (e > TOP)
		return URT_HIST_BUCKETS - 1;
	return 2 * SUB + (size_t)(e - SUB_BITS - 1) * SUB + (size_t)((v >> (e - SUB_BITS)) & (SUB - 1));
}

/* Bucket i's bounds, [lo, hi). */
static void bounds(size_t i, uint64_t *lo, uint64_t *hi)
{
	size_t e, m;

	if (i < 2 * SUB) {
		*lo = i;
		*hi = i + 1;
		return;
	}
	e = (i - 2 * SUB) / SUB + SUB_BITS + 1;
	m = (i - 2 * SUB) % SUB;
	*lo = ((uint64_t)1 << e) + ((uint64_t)m << (e - SUB_BITS));
	*hi = *lo + ((uint64_t)1 << (e - SUB_BITS));
}

void urt_hist_reset(struct urt_hist *h)
{
	if (h)
		memset(h, 0, sizeof(*h));
}

void urt_hist_record(struct urt_hist *h, uint64_t v)
{
	if (!h)
		return;
	if (!h->count || v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	h->count++;
	h->sum += v;
	h->counts[index_of(v)]++;
}

uint64_t urt_hist_percentile(const struct urt_hist *h, double p)
{
	uint64_t rank, seen = 0, lo, hi;

	if (!h || !h->count)
		return 0;
	if (p >= 100)
		return h->max;
	if (p <= 0)
		return h->min;
	/* The nearest rank: the smallest value with p% of the values at or
	 * below it. */
	rank = (uint64_t)(p / 100 * (double)h->count + 0.999999999);
	if (rank < 1)
		rank = 1;
	for (size_t i = 0; i < URT_HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen >= rank) {
			bounds(i, &lo, &hi);
			if (hi - lo == 1)
				return lo;
			lo += (hi - lo) / 2;
			/* Never outside what was recorded. */
			return lo < h->min ? h->min : lo > h->max ? h->max : lo;
		}
	}
	return h->max;
}

uint64_t urt_hist_bucket(const struct urt_hist *h, size_t i, uint64_t *lo, uint64_t *hi)
{
	uint64_t l, u;

	if (!h || i >= URT_HIST_BUCKETS)
		return 0;
	bounds(i, &l, &u);
	if (lo)
		*lo = l;
	if (hi)
		*hi = u;
	return h->counts[i];
}
