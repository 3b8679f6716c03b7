/*
 * libFuzzer target: the public API driven by byte-coded programs. The
 * input is split into up to 8 task programs; each byte of a program is one
 * call (sleep, yield, read a pipe or a file, write the pipe, cancel, join or
 * detach a sibling, offload, an owned job with a deadline, spawn a child;
 * and, after an escape byte, channels, timeout scopes, task groups and
 * socket calls).
 * The loop runs a bounded number of turns (urt_loop_stop), then is
 * destroyed with whatever is left parked. Any crash, sanitizer report or
 * unbalanced counter (every SQE and message gives one completion) is a
 * finding.
 *
 * Build with clang: cmake -DCMAKE_C_COMPILER=clang -DURT_SANITIZE=address
 * -DURT_FUZZ=ON; run: build/tests/fuzz/urt-fuzz-api -max_total_time=60
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <urt.h>

#define TASKS 8
#define TURNS 64

struct world {
	urt_task *task[TASKS];
	const uint8_t *prog[TASKS];
	size_t len[TASKS];
	int pipe[2];
	int pair[2];
	int file;
	urt_chan *chan;
};

struct slot {
	struct world *w;
	int i;
};

static void bump(int *p)
{
	(*p)++;
}

static void free_int(int *p)
{
	free(p);
}

static int leaf(void *arg)
{
	(void)arg;
	return urt_sleep_ns(1000);
}

#define SCOPES 4

/* The escape byte's calls: v picks one. */
static void extended(struct world *w, uint8_t v, struct urt_timeout *scope, int *depth,
		     urt_group **g)
{
	int x = v;
	char buf[8];

	switch (v) {
	case 0: urt_chan_send(w->chan, &x); break;
	case 1: urt_chan_recv(w->chan, &x); break;
	case 2: urt_chan_try_send(w->chan, &x); break;
	case 3: urt_chan_try_recv(w->chan, &x); break;
	case 4: urt_chan_close(w->chan); break;
	case 5:
	case 12:
		if (*depth < SCOPES && urt_timeout_enter(&scope[*depth], v == 5 ? 20000 : 0) == 0)
			(*depth)++;
		break;
	case 6:
		if (*depth > 0)
			urt_timeout_leave(&scope[--(*depth)]);
		break;
	case 7:
		if (*g || urt_group_create(g) == 0)
			urt_group_spawn(*g, leaf, NULL);
		break;
	case 8:
		if (*g) {
			urt_group_wait(*g);
			*g = NULL;
		}
		break;
	case 9: urt_recv(w->pair[0], buf, sizeof(buf), 0); break;
	case 10: urt_send(w->pair[1], buf, sizeof(buf), MSG_DONTWAIT); break;
	case 11: urt_poll(w->pair[0], POLLIN); break;
	default: break;
	}
}

static int program(void *arg)
{
	struct slot *sl = arg;
	struct world *w = sl->w;
	const uint8_t *p = w->prog[sl->i];
	struct urt_timeout scope[SCOPES];
	urt_group *g = NULL;
	int depth = 0;
	char buf[64];

	for (size_t k = 0; k < w->len[sl->i]; k++) {
		uint8_t b = p[k], v = b >> 4;
		urt_task *peer = w->task[v % TASKS];

		switch (b & 15) {
		case 0: urt_sleep_ns((uint64_t)v * 10000); break;
		case 1: urt_yield(); break;
		case 2: urt_read(w->pipe[0], buf, v + 1u, -1); break;
		case 3: (void)!write(w->pipe[1], buf, v + 1u); break;
		case 4: urt_read(w->file, buf, sizeof(buf), (int64_t)v * 7); break;
		case 5: if (peer) urt_cancel(peer); break;
		case 6:
			/* A joined handle is gone: forget it, as a program must. */
			if (peer && urt_join(peer, NULL) == 0)
				w->task[v % TASKS] = NULL;
			break;
		case 7: { int x = 0; urt_to_thread(bump, &x); break; }
		case 8: {
			int *x = malloc(sizeof(*x));

			if (!x)
				break;
			*x = 0;
			/* 0 hands x back; anything else leaves it with the pool
			 * or was never submitted (-ESHUTDOWN). */
			int r = urt_job_run(bump, x, free_int, (uint64_t)v * 1000);

			if (r == 0 || r == -ESHUTDOWN)
				free(x);
			break;
		}
		case 9: {
			urt_task *t;

			if (urt_spawn(NULL, &t, leaf, NULL) == 0)
				urt_detach(t);
			break;
		}
		case 10: urt_spawn(NULL, NULL, leaf, NULL); break;
		case 11: urt_task_set_name(NULL, "fuzz"); break;
		case 12: urt_read(-1 - (int)v, buf, 1, 0); break;
		case 13: urt_read(w->file, NULL, 0, 0); break;
		case 14: urt_cancel(urt_current_task()); break;
		case 15: extended(w, v, scope, &depth, &g); break;
		default: break;
		}
	}
	while (depth > 0)
		urt_timeout_leave(&scope[--depth]);
	/* A group left unwaited on odd lengths: the loop's destroy frees it. */
	if (g && !(w->len[sl->i] & 1))
		urt_group_wait(g);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct urt_pool_opts po = { .threads = 1 };
	struct urt_loop_opts o = { .ring_entries = 8, .cq_entries = 16, .pool_opts = &po,
				   .stack_size = 32 * 1024 };
	struct world w;
	struct slot sl[TASKS];
	struct urt_loop_stats st;
	urt_loop *loop;
	size_t per;

	memset(&w, 0, sizeof(w));
	if (size == 0 || urt_loop_create(&loop, &o))
		return 0;
	if (pipe(w.pipe))
		abort();
	fcntl(w.pipe[1], F_SETFL, O_NONBLOCK);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, w.pair) ||
	    urt_chan_create(&w.chan, sizeof(int), 2))
		abort();
	w.file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	per = (size + TASKS - 1) / TASKS;
	for (int i = 0; i < TASKS && (size_t)i * per < size; i++) {
		w.prog[i] = data + (size_t)i * per;
		w.len[i] = size - (size_t)i * per < per ? size - (size_t)i * per : per;
		sl[i] = (struct slot){ &w, i };
		urt_spawn(loop, &w.task[i], program, &sl[i]);
	}
	for (int turn = 0; turn < TURNS; turn++) {
		urt_loop_stop(loop);
		if (urt_loop_run(loop) != -EINTR)
			break;
	}
	/* Destroy cancels what is left and waits for every completion; the
	 * handles left unjoined are freed with the loop. */
	urt_loop_stats(loop, &st);
	if (st.sqes + st.more + st.messages != st.cqes + st.settled + st.inflight)
		abort();
	urt_loop_destroy(loop);
	if (urt_chan_destroy(w.chan)) /* no task waits on it any more */
		abort();
	close(w.pair[0]);
	close(w.pair[1]);
	close(w.pipe[0]);
	close(w.pipe[1]);
	close(w.file);
	return 0;
}
