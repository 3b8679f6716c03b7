/* Soak: a seeded random mix of spawns, sleeps, reads, cancels, yields and
 * offloads over thousands of tasks. At the end every task has returned
 * what its work says, and the loop's counters balance: every SQE and every
 * expected message produced exactly one completion.
 *
 *   test_soak                         the short run ctest does (3,000 tasks)
 *   test_soak TASKS [SEED [ROUNDS]]   by hand: test_soak 100000 1 100 runs
 *                                     100 rounds of 100,000 tasks (minutes)
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <urt.h>

#define BLOCKS 256          /* the shared file: 256 blocks of 512 bytes */
#define BLOCK 512
#define OPS 12              /* operations per task */

static long n_tasks = 3000;
static unsigned seed = 20261125;
static long rounds = 1;

struct soak {
	urt_loop *loop;
	int file;
	int pipe[2];          /* every task writes one byte before it reads one,
			       * so no read waits for ever */
	urt_task **handles;   /* joinable tasks, for the canceller and joiners */
	long spawned;
	long finished_ok;     /* tasks that did all their work */
	long cancelled;       /* tasks that saw -ECANCELED */
	long bad;             /* a result that was not what it had to be */
	long ops[8];
};

struct worker_arg {
	struct soak *s;
	unsigned seed;
};

struct square {
	uint64_t in, out;
};

static void square_fn(struct square *q)
{
	q->out = q->in * q->in;
}

/* Squares handed to the pool by a job_run that returned -ETIMEDOUT or
 * -ECANCELED, and those its destructor has freed (on the loop's thread):
 * the difference is jobs still out after the tasks have ended. */
static long squares_given, squares_freed;

static void free_square(struct square *q)
{
	squares_freed++;
	free(q);
}

static int child(void *arg)
{
	(void)arg;
	return urt_sleep_ns(100000) == 0 ? 7 : -ECANCELED;
}

/* One random operation; 0 when it did what it should, -ECANCELED when the
 * task was cancelled, 1 when a result was wrong. */
static int one_op(struct soak *s, unsigned *seed_p)
{
	int op = rand_r(seed_p) % 8, ret;

	s->ops[op]++;
	switch (op) {
	case 0: /* sleep 0-2 ms */
		return urt_sleep_ns((uint64_t)(rand_r(seed_p) % 2000) * 1000);
	case 1:
		return urt_yield();
	case 2: { /* a block of the shared file: its index in every byte */
		unsigned char buf[BLOCK];
		int b = rand_r(seed_p) % BLOCKS;
		ssize_t n = urt_read(s->file, buf, BLOCK, (int64_t)b * BLOCK);

		if (n < 0)
			return (int)n;
		return n == BLOCK && buf[0] == (unsigned char)b && buf[BLOCK - 1] == (unsigned char)b ? 0 : 1;
	}
	case 3: { /* a byte written to the shared pipe, then one read */
		char c = 0;
		ssize_t n;

		if (write(s->pipe[1], "s", 1) != 1)
			return errno == EAGAIN ? 0 : 1; /* full: skip */
		n = urt_read(s->pipe[0], &c, 1, -1);
		if (n < 0)
			return (int)n;
		return n == 1 && c == 's' ? 0 : 1;
	}
	case 4: { /* offload */
		struct square q = { .in = (uint64_t)rand_r(seed_p) };

		ret = urt_to_thread(square_fn, &q);
		if (ret)
			return ret;
		return q.out == q.in * q.in ? 0 : 1;
	}
	case 5: { /* an owned job whose deadline may pass */
		struct square *q = malloc(sizeof(*q));

		if (!q)
			return 1;
		q->in = 3;
		ret = urt_job_run(square_fn, q, free_square, (uint64_t)(rand_r(seed_p) % 3) * 1000);
		if (ret == 0) {
			ret = q->out == 9 ? 0 : 1;
			free(q);
			return ret;
		}
		/* -ETIMEDOUT or -ECANCELED: the pool owns q and frees it. */
		if (ret == -ETIMEDOUT || ret == -ECANCELED)
			squares_given++;
		return ret == -ETIMEDOUT ? 0 : ret;
	}
	case 6: { /* spawn a child and join it */
		urt_task *t;
		int res = 0;

		if (urt_spawn(NULL, &t, child, NULL))
			return 1;
		ret = urt_join(t, &res);
		if (ret == -ECANCELED) {
			/* A cancelled task cannot wait for its child: cancel
			 * the child too and let it go. */
			urt_cancel(t);
			return urt_detach(t) == 0 ? -ECANCELED : 1;
		}
		return ret == 0 && res == 7 ? 0 : 1;
	}
	default: { /* cancel a random joinable task */
		urt_task *t = s->handles[rand_r(seed_p) % s->spawned];

		if (t)
			urt_cancel(t);
		return 0;
	}
	}
}

static int soak_task(void *arg)
{
	struct worker_arg *w = arg;
	struct soak *s = w->s;

	for (int i = 0; i < OPS; i++) {
		int ret = one_op(s, &w->seed);

		if (ret == -ECANCELED) {
			s->cancelled++;
			return -ECANCELED;
		}
		if (ret) {
			if (s->bad++ < 10)
				fprintf(stderr, "soak: op failed with %d\n", ret);
			return ret;
		}
	}
	s->finished_ok++;
	return 0;
}

static int make_file(void)
{
	char path[] = "/tmp/urt-soak-XXXXXX";
	unsigned char block[BLOCK];
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	for (int b = 0; b < BLOCKS; b++) {
		memset(block, b, sizeof(block));
		assert_int_equal(write(fd, block, sizeof(block)), BLOCK);
	}
	return fd;
}

static void soak_round(unsigned round_seed)
{
	struct urt_pool_opts po = { .threads = 2 };
	struct urt_loop_opts o = { .ring_entries = 64, .cq_entries = 128, .pool_opts = &po,
				   .stack_size = 32 * 1024 };
	struct worker_arg *args = calloc((size_t)n_tasks, sizeof(*args));
	struct soak s = { .file = make_file() };
	struct urt_loop_stats st;
	long joined = 0, squares_out;
	int res, ret;

	s.handles = calloc((size_t)n_tasks, sizeof(*s.handles));
	assert_non_null(args);
	assert_non_null(s.handles);
	assert_int_equal(urt_loop_create(&s.loop, &o), 0);
	assert_int_equal(pipe(s.pipe), 0);
	/* The write end only: the loop's thread must never block in write(). */
	assert_int_equal(fcntl(s.pipe[1], F_SETFL, O_NONBLOCK), 0);
	for (long i = 0; i < n_tasks; i++) {
		args[i] = (struct worker_arg){ &s, round_seed + (unsigned)i };
		assert_int_equal(urt_spawn(s.loop, &s.handles[i], soak_task, &args[i]), 0);
		s.spawned++;
	}
	ret = urt_loop_run(s.loop);
	assert_int_equal(ret, 0);
	for (long i = 0; i < n_tasks; i++) {
		assert_int_equal(urt_join(s.handles[i], &res), 0);
		assert_true(res == 0 || res == -ECANCELED);
		s.handles[i] = NULL;
		joined++;
	}
	assert_int_equal(urt_loop_stats(s.loop, &st), 0);
	squares_out = squares_given - squares_freed;
	urt_loop_destroy(s.loop); /* waits for the jobs still out */
	assert_int_equal(squares_freed, squares_given);
	close(s.file);
	close(s.pipe[0]);
	close(s.pipe[1]);

	assert_int_equal(s.bad, 0);
	assert_int_equal(s.finished_ok + s.cancelled, n_tasks);
	assert_int_equal(joined, n_tasks);
	assert_int_equal(st.live, 0);
	/* Every completion arrived exactly once, none is left but the
	 * loop's own timeout, which may still be armed, and the owned jobs
	 * whose waiters left them (the run ends with its tasks). */
	assert_true(st.inflight <= 1 + (uint64_t)squares_out);
	assert_int_equal(st.sqes + st.more + st.messages, st.cqes + st.settled + st.inflight);
	print_message("soak: %ld tasks (%ld did all %d ops, %ld cancelled), %llu spawned in all; "
		      "%llu SQEs + %llu messages = %llu CQEs + %llu settled + %llu in flight; "
		      "ops sleep %ld yield %ld file %ld pipe %ld offload %ld owned %ld child %ld "
		      "cancel %ld\n",
		      n_tasks, s.finished_ok, OPS, s.cancelled, (unsigned long long)st.spawned,
		      (unsigned long long)st.sqes, (unsigned long long)st.messages,
		      (unsigned long long)st.cqes, (unsigned long long)st.settled,
		      (unsigned long long)st.inflight, s.ops[0], s.ops[1], s.ops[2], s.ops[3],
		      s.ops[4], s.ops[5], s.ops[6], s.ops[7]);
	free(args);
	free(s.handles);
}

static void test_soak(void **state)
{
	(void)state;
	for (long r = 0; r < rounds; r++)
		soak_round(seed + (unsigned)(r * n_tasks));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_soak),
	};

	if (argc > 1)
		n_tasks = strtol(argv[1], NULL, 10);
	if (argc > 2)
		seed = (unsigned)strtoul(argv[2], NULL, 10);
	if (argc > 3)
		rounds = strtol(argv[3], NULL, 10);
	if (n_tasks < 1 || n_tasks > 10000000 || rounds < 1) {
		fprintf(stderr, "usage: test_soak [tasks (1..10000000)] [seed] [rounds]\n");
		return 2;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
