/* Compiled by ctest, never linked: with no CASE defined every call below is
 * well typed and must compile cleanly; each CASE is one mistake that must
 * not compile (the test looks for the static assertion's message). */
#include <urt.h>

struct req {
	int in, out;
};
struct other {
	long x;
};

static void work(struct req *r)
{
	r->out = r->in * 2;
}

static void req_free(struct req *r)
{
	(void)r;
}

int offload_types(void);

int offload_types(void)
{
	struct req r = { .in = 1 };
	void (*fp)(struct req *) = work;
	int ret = 0;

	ret += urt_to_thread(work, &r);
	ret += urt_to_thread(fp, &r);
	ret += urt_job_run(work, &r, req_free, 1000);
	ret += urt_job_run(work, &r, NULL, 0);
#if CASE == 1 /* another struct */
	struct other o;
	ret += urt_to_thread(work, &o);
#elif CASE == 2 /* the type erased behind void * */
	void *v = &r;
	ret += urt_to_thread(work, v);
#elif CASE == 3 /* const dropped */
	const struct req *c = &r;
	ret += urt_to_thread(work, c);
#elif CASE == 4 /* a value, not a pointer */
	ret += urt_to_thread(work, r.in);
#elif CASE == 5 /* owned job, wrong argument */
	struct other o;
	ret += urt_job_run(work, &o, NULL, 0);
#elif CASE == 6 /* owned job, destructor of another type */
	ret += urt_job_run(work, &r, offload_types, 0);
#endif
	return ret;
}
