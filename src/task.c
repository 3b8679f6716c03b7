/* task: stacks (mmap, guard page within the VMA budget, canary always), the
 * context switch with the sanitizers told about it, and task records. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "task.h"

#if URT__ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if URT__TSAN
#include <sanitizer/tsan_interface.h>
#endif

/*
 * Stack mapping, low to high:
 *   [one page: the guard (a marker, or PROT_NONE), or plain stack when
 *    unguarded]
 *   [canary window: URT__CANARY_WORDS words that must stay zero]
 *   [stack, growing down from the top of the mapping]
 * The task's record lives apart, in a slab of records (see
 * struct urt__rec_slab).
 *
 * The canary is a window of zeros rather than a written pattern: reading an
 * untouched page maps the shared zero page, so a sleeping task costs one
 * resident page (the top of its stack, holding its frames), not two. An
 * overflow that reaches the window writes frames into it (return addresses,
 * saved registers), which are not all zero. A stack with a guard page is
 * not checked: an overflow past the window hits the guard page, and one
 * that stops in the window has touched nothing but this stack; reading the
 * window would only cost a fresh task a second page fault.
 */
#define URT__CANARY_WORDS 32

/* The task running on this thread; NULL in the scheduler and outside a
 * loop. The switches below keep it. */
URT__TLS struct urt_task *urt__cur_task;

/* Loops on several threads ask at once: each may compute it, all store
 * the same value. */
static size_t page_size(void)
{
	static atomic_size_t ps;
	size_t v = atomic_load_explicit(&ps, memory_order_relaxed);

	if (!v) {
		v = (size_t)sysconf(_SC_PAGESIZE);
		atomic_store_explicit(&ps, v, memory_order_relaxed);
	}
	return v;
}

/*
 * A guard page is a marker in the page table where the kernel has them
 * (MADV_GUARD_INSTALL, Linux 6.13): no VMA of its own, so every stack gets
 * one. Elsewhere it is a PROT_NONE page, which splits a stack's mapping in
 * two VMAs, and the kernel allows vm.max_map_count of them per process
 * (65,530 by default). Such guarded stacks may use a quarter of that
 * budget, leaving the rest to the application; stacks beyond it rely on
 * the canary alone.
 */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
static atomic_int guard_markers = -1; /* 1: they work; 0: they do not; -1: untried */
static atomic_long guarded_stacks;    /* the PROT_NONE ones */

static long guard_budget(void)
{
	static atomic_long budget;
	long v = atomic_load_explicit(&budget, memory_order_relaxed);

	if (!v) {
		long max = 65530;
		FILE *f = fopen("/proc/sys/vm/max_map_count", "re");

		if (f) {
			if (fscanf(f, "%ld", &max) != 1 || max <= 0)
				max = 65530;
			fclose(f);
		}
		v = max / 8; /* two mappings per guarded stack */
		atomic_store_explicit(&budget, v, memory_order_relaxed);
	}
	return v;
}

static size_t map_len(const struct urt__tasks *ts)
{
	return page_size() + ts->stack_size;
}

/* Stacks are carved from chunks of this many, one mmap per chunk instead of
 * one per stack. */
#define CHUNK_STACKS 64

static void *map_anon(size_t len)
{
	void *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);

	return map == MAP_FAILED ? NULL : map;
}

#if URT__ASAN
/* All but timer_gen, which the timer heap reads of a free record's stale
 * entries (8-byte aligned: a granule of ASan's own). */
static void rec_poison(struct urt_task *t)
{
	char *gen = (char *)&t->timer_gen, *end = (char *)(t + 1);

	ASAN_POISON_MEMORY_REGION(t, (size_t)(gen - (char *)t));
	ASAN_POISON_MEMORY_REGION(gen + sizeof(t->timer_gen),
				  (size_t)(end - gen - (ptrdiff_t)sizeof(t->timer_gen)));
}

static void rec_unpoison(struct urt_task *t)
{
	ASAN_UNPOISON_MEMORY_REGION(t, sizeof(*t));
}
#else
static void rec_poison(struct urt_task *t)
{
	(void)t;
}

static void rec_unpoison(struct urt_task *t)
{
	(void)t;
}
#endif

/* A free record (with the stack it kept, if any), or a new one, without a
 * stack, from the current slab. NULL when out of memory. */
static struct urt_task *rec_get(struct urt__tasks *ts)
{
	struct urt__rec_slab *s = ts->slabs;
	struct urt_task *t = ts->rec_free;

	if (t) {
		rec_unpoison(t);
		ts->rec_free = t->next;
		if (ts->trim_from == t)
			ts->trim_from = NULL; /* taken: the next trim restarts */
		return t;
	}
	if (!s || s->used == URT__SLAB_RECS) {
		/* A mapping of its own, apart from the malloc heap: the
		 * records must not share cache lines (or their prefetched
		 * neighbours) with data other threads write. */
		s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
		if (s == MAP_FAILED)
			return NULL;
		s->next = ts->slabs;
		s->used = 0;
		ts->slabs = s;
	}
	t = &s->rec[s->used++];
	t->map = NULL;
	return t;
}

static void rec_put(struct urt__tasks *ts, struct urt_task *t)
{
	t->next = ts->rec_free;
	ts->rec_free = t;
	/* A free record is out of bounds for everyone but rec_get: under
	 * ASan, a stale handle's use (a second join, a cancel of a freed
	 * task) is reported where it happens, as a freed malloc block's is. */
	rec_poison(t);
}

/*
 * A new chunk's guard markers in a few calls: process_madvise on the
 * process itself (any advice on itself, Linux 6.13; PIDFD_SELF, 6.14)
 * takes GUARD_BATCH guard pages as one vector. One madvise each cost a
 * system call and a look-up of the mapping per stack: 60-110 ms of a
 * first fan-out of 100,000 tasks, 600 ms in all. True when every marker
 * is in; otherwise each stack gets its own madvise as it is handed out
 * (installing a marker where one is is harmless).
 */
#ifndef PIDFD_SELF
#define PIDFD_SELF -10000
#endif
#define GUARD_BATCH 16 /* a vector of 256 bytes: spawn may run on a task */
static atomic_int bulk_markers = -1; /* as guard_markers */

static bool chunk_guard(char *chunk, size_t len, unsigned n)
{
	struct iovec iov[GUARD_BATCH];

	if (atomic_load_explicit(&guard_markers, memory_order_relaxed) != 1 ||
	    atomic_load_explicit(&bulk_markers, memory_order_relaxed) == 0)
		return false;
	for (unsigned done = 0; done < n;) {
		unsigned k = n - done < GUARD_BATCH ? n - done : GUARD_BATCH;
		long got;

		for (unsigned i = 0; i < k; i++) {
			iov[i].iov_base = chunk + (size_t)(done + i) * len;
			iov[i].iov_len = page_size();
		}
		got = syscall(SYS_process_madvise, PIDFD_SELF, iov, (size_t)k, MADV_GUARD_INSTALL,
			      0u);
		if (got != (long)(k * page_size())) {
			/* No such call, no PIDFD_SELF, not this advice, or
			 * a seccomp filter: never again. Anything else (out
			 * of memory for page tables) costs this chunk only. */
			if (got < 0 && (errno == ENOSYS || errno == EBADF || errno == EINVAL ||
					errno == EPERM))
				atomic_store_explicit(&bulk_markers, 0, memory_order_relaxed);
			return false;
		}
		done += k;
	}
	atomic_store_explicit(&bulk_markers, 1, memory_order_relaxed);
	return true;
}

/* The next stack of the loop's chunk (a new chunk when it is used up);
 * *guarded when its guard marker is in already. */
static void *stack_carve(struct urt__tasks *ts, bool *guarded)
{
	size_t len = map_len(ts);
	void *map;

	*guarded = false;
	/* Each stack of a chunk is unmapped on its own later (munmap of part
	 * of a mapping is fine): nothing tracks the chunk once carved. */
	if (!ts->chunk_left) {
		ts->chunk = map_anon(len * CHUNK_STACKS);
		if (!ts->chunk)
			return map_anon(len); /* the address space is tight: one */
		ts->chunk_left = CHUNK_STACKS;
		ts->chunk_guarded = ts->guard && chunk_guard(ts->chunk, len, CHUNK_STACKS);
	}
	map = ts->chunk;
	ts->chunk = (char *)ts->chunk + len;
	ts->chunk_left--;
	*guarded = ts->chunk_guarded;
	return map;
}

/* A stack's mapping, with its guard page when ts wants one and one can be
 * had: a marker, else PROT_NONE within the budget (*vma). NULL when out of
 * address space. */
static void *stack_map(struct urt__tasks *ts, bool *guarded, bool *vma)
{
	void *map = stack_carve(ts, guarded);

	*vma = false;
	if (!map || !ts->guard || *guarded)
		return map;
	if (atomic_load_explicit(&guard_markers, memory_order_relaxed) != 0) {
		if (madvise(map, page_size(), MADV_GUARD_INSTALL) == 0) {
			atomic_store_explicit(&guard_markers, 1, memory_order_relaxed);
			*guarded = true;
			return map;
		}
		if (errno == EINVAL) /* a kernel before 6.13 (or valgrind) */
			atomic_store_explicit(&guard_markers, 0, memory_order_relaxed);
	}
	if (atomic_fetch_add(&guarded_stacks, 1) < guard_budget() &&
	    mprotect(map, page_size(), PROT_NONE) == 0) {
		*guarded = *vma = true;
		return map;
	}
	atomic_fetch_sub(&guarded_stacks, 1);
	return map;
}

/* Everything but the munmap of a stack that goes: vma, its guard page is
 * PROT_NONE, counted in the budget. */
static void stack_release(void *map, size_t len, bool vma)
{
#if URT__ASAN
	/* A task that ended leaves its last frames' redzones poisoned, and
	 * ASan keeps a region's poison past munmap: a later mapping at the
	 * same address would inherit it. */
	ASAN_UNPOISON_MEMORY_REGION(map, len);
#else
	(void)map;
	(void)len;
#endif
	if (vma)
		atomic_fetch_sub(&guarded_stacks, 1);
}

int urt__task_new(struct urt_loop *loop, struct urt_task **out)
{
	struct urt__tasks *ts = urt__tasks_of(loop);
	size_t len = map_len(ts);
	struct urt_task *t = rec_get(ts);
	bool guarded, guard_vma;
	uint64_t gen;
	void *map;
#if URT__VALGRIND
	unsigned vg_id;
#endif

	if (!t)
		return -ENOMEM;
	if (t->map) {
		map = t->map;
		ts->stacks.n--;
		if (!t->released)
			ts->stacks.resident--;
#if URT__ASAN
		/* Frames of the previous task may have left poisoned redzones. */
		ASAN_UNPOISON_MEMORY_REGION((char *)map + page_size(), ts->stack_size);
#endif
		guarded = t->guarded;
		guard_vma = t->guard_vma;
#if URT__VALGRIND
		vg_id = t->vg_id;
#endif
	} else {
		map = stack_map(ts, &guarded, &guard_vma);
		if (!map) {
			rec_put(ts, t);
			return -ENOMEM;
		}
#if URT__VALGRIND
		vg_id = VALGRIND_STACK_REGISTER((char *)map + page_size(), (char *)map + len);
#endif
	}
	/* The timer heap may still hold stale entries of the record's
	 * earlier tasks: its generation goes on. */
	gen = t->timer_gen;
	memset(t, 0, sizeof(*t));
	t->timer_gen = gen;
	t->loop = loop;
	t->deadline = UINT64_MAX;
	t->map = map;
	t->map_len = len;
	t->guarded = guarded;
	t->guard_vma = guard_vma;
	t->canary = (uint64_t *)((char *)map + page_size());
	t->fresh = true;
#if URT__VALGRIND
	t->vg_id = vg_id;
#endif
#if URT__ASAN
	t->asan_bottom = (char *)map + page_size();
	t->asan_size = ts->stack_size;
#endif
#if URT__TSAN
	t->tsan_fiber = __tsan_create_fiber(0);
#endif
	*out = t;
	return 0;
}

/* t's stack goes, but for its munmap, which the caller does. */
static void stack_forget(struct urt_task *t)
{
#if URT__VALGRIND
	VALGRIND_STACK_DEREGISTER(t->vg_id);
#endif
	stack_release(t->map, t->map_len, t->guard_vma);
	t->map = NULL;
}

static void stack_drop(struct urt_task *t)
{
	void *map = t->map;

	stack_forget(t);
	munmap(map, t->map_len);
}

void urt__task_free(struct urt_task *t)
{
	struct urt__tasks *ts = urt__tasks_of(t->loop);

#if URT__TSAN
	__tsan_destroy_fiber(t->tsan_fiber);
#endif
	if (ts->stacks.n < ts->stacks.limit) {
		ts->stacks.n++;
		ts->stacks.resident++;
	} else {
		stack_drop(t);
	}
	rec_put(ts, t);
}

bool urt__tasks_trim(struct urt__tasks *ts, size_t keep, size_t max, bool restart)
{
	struct urt_task *t, *next;
	size_t kept = 0, given = 0;

	if (ts->stacks.resident <= keep)
		return false;
	/* Most recently freed first: the ones kept are the warmest. Going on
	 * from where the last call stopped, the keep are behind us. */
	t = ts->rec_free;
	if (!restart && ts->trim_from) {
		t = ts->trim_from;
		kept = keep;
	}
	for (; t && ts->stacks.resident > keep && given < max; t = next) {
		rec_unpoison(t);
		next = t->next;
		if (t->map && !t->released && kept++ >= keep) {
			(void)madvise((char *)t->map + page_size(), ts->stack_size, MADV_DONTNEED);
			t->released = true;
			ts->stacks.resident--;
			given++;
		}
		rec_poison(t);
	}
	ts->trim_from = t;
	return t && ts->stacks.resident > keep;
}

void urt__tasks_init(struct urt__tasks *ts, size_t stack_size, size_t cache_limit, bool guard)
{
	*ts = (struct urt__tasks){ .stack_size = stack_size, .guard = guard };
	ts->stacks.limit = cache_limit;
}

void urt__tasks_begin(struct urt__tasks *ts)
{
#if URT__TSAN
	ts->tsan_sched = __tsan_get_current_fiber();
#else
	(void)ts;
#endif
}

void urt__tasks_fini(struct urt__tasks *ts)
{
	struct urt__rec_slab *s, *next;
	char *run = NULL;            /* stacks next to each other, to unmap */
	size_t run_len = 0;

	/* Every task has been freed: each record is free, some with a
	 * stack. Stacks carved in a row from a chunk go with one munmap:
	 * one each would split the chunk's mapping every time (100,000
	 * stacks took 0.6 s). */
	for (s = ts->slabs; s; s = next) {
		next = s->next;
		for (size_t i = 0; i < s->used; i++) {
			struct urt_task *t = &s->rec[i];
			char *map;
			size_t len;

			rec_unpoison(t);
			map = t->map;
			len = t->map_len;
			if (!map)
				continue;
			stack_forget(t);
			if (run && (run + run_len == map || map + len == run)) {
				run = run < map ? run : map;
				run_len += len;
				continue;
			}
			if (run)
				munmap(run, run_len);
			run = map;
			run_len = len;
		}
	}
	if (run)
		munmap(run, run_len);
	for (s = ts->slabs; s; s = next) {
		next = s->next;
		munmap(s, sizeof(*s));
	}
	ts->slabs = NULL;
	ts->rec_free = NULL;
	ts->trim_from = NULL;
	ts->stacks.n = 0;
	if (ts->chunk_left)
		munmap(ts->chunk, map_len(ts) * ts->chunk_left);
	ts->chunk_left = 0;
}

bool urt__task_stack_ok(struct urt_task *t)
{
	if (t->guarded)
		return true;
	for (int i = 0; i < URT__CANARY_WORDS; i++)
		if (t->canary[i] != 0)
			return false;
	return true;
}

/* ---- naming an overflowing task, from a signal handler too ---- */

/* Appends to a message without the C library's formatting, which is not
 * async-signal-safe. */
struct msg {
	char buf[192];
	size_t len;
};

static void msg_str(struct msg *m, const char *s)
{
	while (*s && m->len < sizeof(m->buf))
		m->buf[m->len++] = *s++;
}

static void msg_num(struct msg *m, uintptr_t v, unsigned base)
{
	char digits[2 * sizeof(v) + 1];
	size_t n = sizeof(digits) - 1;

	digits[n] = '\0';
	do
		digits[--n] = "0123456789abcdef"[v % base];
	while ((v /= base) && n);
	msg_str(m, &digits[n]);
}

/* "urt: task "name" overflowed its stack of N bytes (why)\n", or
 * "urt: task@0x..." for an unnamed task, written to stderr with one
 * write(2). */
static void report_overflow(const struct urt_task *t, const char *why)
{
	struct msg m = { .len = 0 };

	if (t->name[0]) {
		msg_str(&m, "urt: task \"");
		msg_str(&m, t->name);
		msg_str(&m, "\"");
	} else {
		msg_str(&m, "urt: task@0x");
		msg_num(&m, (uintptr_t)t, 16);
	}
	msg_str(&m, " overflowed its stack of ");
	msg_num(&m, t->map_len - page_size(), 10);
	msg_str(&m, " bytes (");
	msg_str(&m, why);
	msg_str(&m, ")\n");
	(void)!write(STDERR_FILENO, m.buf, m.len);
}

static void stack_overflowed(struct urt_task *t)
{
	report_overflow(t, "canary overwritten");
	/* The stack of another task may be corrupted too: going on would be
	 * undefined behaviour, so the process stops here, loudly. */
	__builtin_trap();
}

/*
 * A task that runs into its guard page gets SIGSEGV on a stack it no longer
 * has room on. When the process has no SIGSEGV handler of its own, urt
 * installs one (once for all loops, removed with the last) that runs on an
 * alternate signal stack, names the task, and lets the fault kill the
 * process as it would have: the handler puts the default action back and
 * returns, and the access faults again.
 */
static void segv_handler(int sig, siginfo_t *si, void *uc)
{
	struct urt_task *t = urt__cur_task;
	char *addr = si->si_addr;
	struct sigaction dfl;

	(void)uc;
	if (t && t->guarded && addr >= (char *)t->map && addr < (char *)t->map + page_size())
		report_overflow(t, "guard page hit");
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(sig, &dfl, NULL);
}

static pthread_mutex_t segv_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned segv_users;  /* loops counting on the handler below */
static bool segv_ours;       /* the handler is urt's */

/* Each thread that runs a loop's tasks needs an alternate signal stack:
 * the thread's own when it had one, else one urt sets up with its first
 * loop and takes down with its last. */
static URT__TLS struct {
	unsigned loops;  /* this thread's loops */
	void *mine;      /* the stack urt set up, NULL: the thread had one */
} alt;

#define ALTSTACK_LEN (64 * 1024)

static int altstack_get(void)
{
	stack_t ss;

	if (alt.loops++)
		return 0;
	alt.mine = NULL;
	if (sigaltstack(NULL, &ss) || !(ss.ss_flags & SS_DISABLE))
		return 0; /* the thread's own */
	ss.ss_sp = mmap(NULL, ALTSTACK_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
	if (ss.ss_sp == MAP_FAILED) {
		alt.loops--;
		return -ENOMEM;
	}
	ss.ss_size = ALTSTACK_LEN;
	ss.ss_flags = 0;
	if (sigaltstack(&ss, NULL)) {
		munmap(ss.ss_sp, ALTSTACK_LEN);
		return 0; /* no report then, but the loop works */
	}
	alt.mine = ss.ss_sp;
	return 0;
}

/* The thread's last loop is gone: take urt's stack down, unless the
 * application has put one of its own in its place since (which stays). */
static void altstack_put(void)
{
	stack_t ss;

	if (--alt.loops || !alt.mine)
		return;
	if (sigaltstack(NULL, &ss) == 0 && ss.ss_sp == alt.mine && !(ss.ss_flags & SS_DISABLE)) {
		stack_t off = { .ss_flags = SS_DISABLE };

		if (ss.ss_flags & SS_ONSTACK)
			return; /* cannot happen outside the handler: keep it */
		sigaltstack(&off, NULL);
	}
	munmap(alt.mine, ALTSTACK_LEN);
	alt.mine = NULL;
}

int urt__overflow_report_install(void)
{
	struct sigaction old, sa;
	int ret = altstack_get();

	if (ret)
		return ret;
	pthread_mutex_lock(&segv_mu);
	if (!segv_users++ &&
	    sigaction(SIGSEGV, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
	    !(old.sa_flags & SA_SIGINFO)) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = segv_handler;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		segv_ours = sigaction(SIGSEGV, &sa, NULL) == 0;
	}
	pthread_mutex_unlock(&segv_mu);
	return 0;
}

void urt__overflow_report_remove(void)
{
	struct sigaction cur, dfl;

	pthread_mutex_lock(&segv_mu);
	/* The last loop: put back the default action urt found, unless the
	 * application has installed a handler of its own since. */
	if (!--segv_users && segv_ours) {
		segv_ours = false;
		if (sigaction(SIGSEGV, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
		    cur.sa_sigaction == segv_handler) {
			memset(&dfl, 0, sizeof(dfl));
			dfl.sa_handler = SIG_DFL;
			sigaction(SIGSEGV, &dfl, NULL);
		}
	}
	pthread_mutex_unlock(&segv_mu);
	altstack_put();
}

/*
 * ASan follows each switch between stacks: the side that leaves calls
 * __sanitizer_start_switch_fiber, the side that arrives
 * __sanitizer_finish_switch_fiber, which says where it came from. A task
 * arrives from the scheduler or, straight, from another task
 * (urt__task_switch); only the scheduler's stack is remembered, as the
 * one tasks switch back to.
 */
#if URT__ASAN
static void asan_arrived(struct urt__tasks *ts, void *fake)
{
	const void *bottom;
	size_t size;

	__sanitizer_finish_switch_fiber(fake, &bottom, &size);
	if (!ts->asan_from_task) {
		ts->asan_sched_bottom = bottom;
		ts->asan_sched_size = size;
	}
}
#endif

static void task_entry(void *arg)
{
	struct urt_task *t = arg;
	struct urt__tasks *ts = urt__tasks_of(t->loop);

#if URT__ASAN
	asan_arrived(ts, NULL);
#endif
	t->fresh = false;
	t->result = t->fn(t->arg);
	t->state = URT__DONE; /* the scheduler finishes what is left */
#if URT__ASAN
	/* NULL: this stack never runs again, free its fake frames. */
	__sanitizer_start_switch_fiber(NULL, ts->asan_sched_bottom, ts->asan_sched_size);
#endif
#if URT__TSAN
	__tsan_switch_to_fiber(ts->tsan_sched, 0);
#endif
	urt__ctx_switch(&t->sp, ts->sched_sp);
	__builtin_unreachable();
}

void urt__task_start(struct urt_task *t)
{
	t->sp = urt__ctx_init((char *)t->map + t->map_len, task_entry, t);
}

/* Checked at every switch away from a task without a guard page: the top
 * and bottom words of the window, where an overflow arrives first and
 * last. */
static void canary_check(struct urt_task *t)
{
	if (!t->guarded && (t->canary[URT__CANARY_WORDS - 1] != 0 || t->canary[0] != 0))
		stack_overflowed(t);
}

struct urt_task *urt__task_resume(struct urt_task *t)
{
	struct urt__tasks *ts = urt__tasks_of(t->loop);
	struct urt_task *back;

	t->state = URT__RUNNING;
	urt__cur_task = t;
#if URT__ASAN
	ts->asan_from_task = false;
	__sanitizer_start_switch_fiber(&ts->asan_sched_fake, t->asan_bottom, t->asan_size);
#endif
#if URT__TSAN
	__tsan_switch_to_fiber(t->tsan_fiber, 0);
#endif
	urt__ctx_switch(&ts->sched_sp, t->sp);
#if URT__ASAN
	__sanitizer_finish_switch_fiber(ts->asan_sched_fake, NULL, NULL);
#endif
	/* Not always t: tasks may have switched to one another since. */
	back = urt__cur_task;
	urt__cur_task = NULL;
	canary_check(back);
	if (back->state == URT__DONE && !urt__task_stack_ok(back))
		stack_overflowed(back);
	return back;
}

void urt__task_switch(struct urt_task *from, struct urt_task *to)
{
	canary_check(from);
	to->state = URT__RUNNING;
	urt__cur_task = to;
#if URT__ASAN
	urt__tasks_of(from->loop)->asan_from_task = true;
	__sanitizer_start_switch_fiber(&from->asan_fake, to->asan_bottom, to->asan_size);
#endif
#if URT__TSAN
	__tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
	urt__ctx_switch(&from->sp, to->sp);
#if URT__ASAN
	asan_arrived(urt__tasks_of(from->loop), from->asan_fake);
#endif
}

void urt__task_suspend(struct urt_task *t)
{
	struct urt__tasks *ts = urt__tasks_of(t->loop);

#if URT__ASAN
	__sanitizer_start_switch_fiber(&t->asan_fake, ts->asan_sched_bottom, ts->asan_sched_size);
#endif
#if URT__TSAN
	__tsan_switch_to_fiber(ts->tsan_sched, 0);
#endif
	urt__ctx_switch(&t->sp, ts->sched_sp);
#if URT__ASAN
	asan_arrived(ts, t->asan_fake);
#endif
}
