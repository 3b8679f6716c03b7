/* Compiled by ctest, never linked: with no CASE defined every call below is
 * well typed and must compile cleanly; each CASE is one mistake that must
 * not compile (the test looks for the static assertion's message). Every
 * call that passes a function and its argument across a boundary is here:
 * to a pool thread, to another loop, to a new task. */
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

__attribute__((unused)) static void work_other(struct other *o)
{
	(void)o;
}

static void req_free(struct req *r)
{
	(void)r;
}

static int task(struct req *r)
{
	return r->in;
}

static int untyped(void *p)
{
	return p != 0;
}

int offload_types(void);

int offload_types(void)
{
	struct req r = { .in = 1 };
	void (*fp)(struct req *) = work;
	int (*tp)(struct req *) = task;
	urt_loop *loop = urt_current_loop();
	int ret = 0;

	ret += urt_call(loop, task, &r);
	ret += urt_call(loop, tp, &r);
	ret += urt_call(loop, untyped, &r); /* the void * form takes any pointer */
	ret += urt_spawn_on(loop, task, &r, req_free);
	ret += urt_spawn_on(loop, task, &r, NULL);
	ret += urt_spawn_on(loop, untyped, &r, NULL);
	ret += urt_spawn(loop, NULL, task, &r);
	ret += urt_spawn(loop, NULL, tp, &r);
	ret += urt_spawn(loop, NULL, untyped, &r);
	ret += urt_spawn(loop, NULL, untyped, NULL);
	ret += (urt_spawn)(loop, NULL, untyped, &r); /* the function, unchecked */
	ret += urt_group_spawn((urt_group *)0, task, &r);
	ret += urt_group_spawn((urt_group *)0, untyped, &r);

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
#elif CASE == 7 /* cross-loop call, another struct */
	struct other o;
	ret += urt_call(loop, task, &o);
#elif CASE == 8 /* cross-loop call, the type erased behind void * */
	void *v = &r;
	ret += urt_call(loop, task, v);
#elif CASE == 9 /* cross-loop call, a value for the untyped form */
	ret += urt_call(loop, untyped, r.in);
#elif CASE == 10 /* cross-loop spawn, another struct */
	struct other o;
	ret += urt_spawn_on(loop, task, &o, NULL);
#elif CASE == 11 /* cross-loop spawn, destructor of another type */
	ret += urt_spawn_on(loop, task, &r, work_other);
#elif CASE == 12 /* a task function of another return type */
	ret += urt_call(loop, work, &r);
#elif CASE == 13 /* spawn, another struct */
	struct other o;
	ret += urt_spawn(loop, NULL, task, &o);
#elif CASE == 14 /* spawn, the type erased behind void * */
	void *v = &r;
	ret += urt_spawn(loop, NULL, task, v);
#elif CASE == 15 /* spawn, a value for the untyped form */
	ret += urt_spawn(loop, NULL, untyped, r.in);
#elif CASE == 16 /* group spawn, another struct */
	struct other o;
	ret += urt_group_spawn((urt_group *)0, task, &o);
#endif
	return ret;
}
