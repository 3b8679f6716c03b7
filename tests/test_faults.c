/* Faults from outside: io_uring denied by a seccomp filter, the address
 * space exhausted. Each case runs in a child process, whose exit status
 * says which check failed. */
#include <dirent.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <urt.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

/* Run body in a child; returns its exit code (-1 when it died of a signal). */
static int in_child(int (*body)(void))
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(body());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* A filter that answers the system call nr with EPERM, as a container's
 * seccomp profile does for io_uring_setup, and allows everything else. */
static int deny_syscall(long nr)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		return -errno;
	return 0;
}

static int never_runs(void *arg)
{
	(void)arg;
	return 99;
}

static void add_one(int *n)
{
	(*n)++;
}

/* On the epoll backend: a sleep, a pipe's write and read, and a job on the
 * pool (whose workers have no ring to send from). */
static int works_without_io_uring(void *arg)
{
	int p[2], n = 41;
	char buf[4] = { 0 };

	(void)arg;
	if (urt_sleep_ns(1000000) != 0)
		return 1;
	if (pipe(p))
		return 2;
	if (urt_write(p[1], "abc", 3, -1) != 3 || urt_read(p[0], buf, sizeof(buf), -1) != 3 ||
	    strcmp(buf, "abc") != 0)
		return 3;
	close(p[0]);
	close(p[1]);
	if (urt_to_thread(add_one, &n) != 0 || n != 42)
		return 4;
	return 99;
}

static int io_uring_denied(void)
{
	struct urt_loop_opts only = { .flags = URT_LOOP_IO_URING };
	int before, result = 0;
	urt_loop *loop = (urt_loop *)&result;
	const char *why = NULL;

	unsetenv("URT_BACKEND");
	if (deny_syscall(__NR_io_uring_setup))
		return 10;
	before = open_fds();
	/* io_uring alone: refused, nothing made. */
	if (urt_loop_create(&loop, &only) != -EPERM)
		return 11;
	if (loop != NULL)
		return 12; /* *out is cleared on failure */
	if (open_fds() != before)
		return 13;
	/* By default: a loop on epoll, which says why. */
	if (urt_loop_create(&loop, NULL) != 0)
		return 14;
	if (urt_loop_backend(loop, &why) != URT_BACKEND_EPOLL || !why ||
	    strcmp(why, "epoll: io_uring_setup returned -EPERM (a seccomp filter, as "
			"Docker's default profile)") != 0)
		return 15;
	urt_loop_destroy(loop);
	if (urt_run(works_without_io_uring, NULL, &result) != 0 || result != 99)
		return 16;
	if (urt_run(never_runs, NULL, &result) != 0 || result != 99)
		return 17;
	if (open_fds() != before)
		return 18; /* nothing leaked: no fd left open */
	/* Without epoll_pwait2 too (an older container profile): epoll_wait
	 * with its timeout in ms serves, sleeps included. */
	if (deny_syscall(__NR_epoll_pwait2))
		return 19;
	result = 0;
	if (urt_run(works_without_io_uring, NULL, &result) != 0 || result != 99)
		return 20;
	return 0;
}

static void test_io_uring_denied(void **state)
{
	(void)state;
	assert_int_equal(in_child(io_uring_denied), 0);
}

/* ---- address space exhausted ---- */

static int counted(void *arg)
{
	int *n = arg;

	if (urt_yield() != 0)
		return -1;
	(*n)++;
	return 0;
}

static int spawn_until_enomem(void)
{
	struct urt_loop_opts o = { .stack_cache = 1 };
	struct rlimit rl;
	urt_loop *loop;
	int spawned = 0, ran = 0, ret;
	long vm_kib = 0;
	char line[256];
	FILE *f;

	if (urt_loop_create(&loop, &o))
		return 20;
	f = fopen("/proc/self/status", "r");
	if (!f)
		return 21;
	while (fgets(line, sizeof(line), f))
		sscanf(line, "VmSize: %ld kB", &vm_kib);
	fclose(f);
	/* Room for a few hundred 68 KiB stacks beyond what is mapped now. */
	rl.rlim_cur = rl.rlim_max = (rlim_t)(vm_kib + 16 * 1024) * 1024;
	if (setrlimit(RLIMIT_AS, &rl))
		return 22;
	while ((ret = urt_spawn(loop, NULL, counted, &ran)) == 0)
		if (++spawned > 1000000)
			return 23;
	if (ret != -ENOMEM)
		return 24;
	if (spawned < 1)
		return 25;
	/* The loop still runs every task it has. */
	if (urt_loop_run(loop) != 0 || ran != spawned)
		return 26;
	/* And takes new ones once stacks are free again (the cache keeps one). */
	if (urt_spawn(loop, NULL, counted, &ran) || urt_loop_run(loop) || ran != spawned + 1)
		return 27;
	urt_loop_destroy(loop);
	return 0;
}

static void test_spawn_enomem(void **state)
{
	(void)state;
#ifdef SANITIZED
	/* The sanitizers reserve terabytes of address space: RLIMIT_AS would
	 * stop them before main, not urt. */
	(void)spawn_until_enomem;
	skip();
#else
	assert_int_equal(in_child(spawn_until_enomem), 0);
#endif
}

/* ---- the ring fails while destroy drains it ---- */

static char *volatile parked_buf; /* a buffer on a parked task's stack */

static int parked_reader(void *arg)
{
	char buf[64];
	int *fd = arg;

	parked_buf = buf;
	return (int)urt_read(*fd, buf, sizeof(buf), -1);
}

/* A task is parked in a read into its stack when io_uring_enter starts to
 * fail (a filter installed after the loop was made): destroy cannot drain
 * the ring, the read may still be written until the kernel has cancelled
 * it, so destroy returns with the task's stack still mapped (it used to
 * unmap it, and before the ring was gone). */
static int drain_fails(void)
{
	/* io_uring's own fault, whatever URT_BACKEND says. */
	struct urt_loop_opts o = { .flags = URT_LOOP_IO_URING };
	int p[2], page = (int)sysconf(_SC_PAGESIZE);
	urt_loop *loop;

	if (pipe(p) || urt_loop_create(&loop, &o))
		return 30;
	if (urt_spawn(loop, NULL, parked_reader, &p[0]))
		return 31;
	/* One turn: the task parks, its read goes to the kernel. */
	if (urt_loop_stop(loop) || urt_loop_run(loop) != -EINTR || !parked_buf)
		return 32;
	if (deny_syscall(__NR_io_uring_enter))
		return 33;
	urt_loop_destroy(loop);
	/* msync fails with ENOMEM on an address that is not mapped. */
	if (msync((void *)((uintptr_t)parked_buf & ~(uintptr_t)(page - 1)), (size_t)page, MS_ASYNC))
		return 34;
	return 0;
}

static void test_destroy_drain_fails(void **state)
{
	(void)state;
	assert_int_equal(in_child(drain_fails), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_io_uring_denied),
		cmocka_unit_test(test_spawn_enomem),
		cmocka_unit_test(test_destroy_drain_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
