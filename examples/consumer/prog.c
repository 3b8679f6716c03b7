/* A program built against an installed urt (run.sh builds it three ways): a reader
 * task parks on a pipe, the main task sleeps 1 ms and then has a pool thread
 * write into the pipe with urt_to_thread, which wakes the reader. Prints
 * urt_version() and exits 0 only when all of it worked and the library is
 * the version of the header it was compiled with. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <urt.h>

struct shared {
	int fds[2];
	char buf[16];
	ssize_t got;
	int wrote;
};

static void write_hello(struct shared *s) /* on a pool thread */
{
	s->wrote = (int)write(s->fds[1], "hello", 5);
}

static int reader(void *arg)
{
	struct shared *s = arg;

	s->got = urt_read(s->fds[0], s->buf, sizeof(s->buf) - 1, -1);
	return s->got == 5 && memcmp(s->buf, "hello", 5) == 0 ? 0 : 1;
}

static int fail(const char *what, int ret)
{
	fprintf(stderr, "%s: %s\n", what, ret < 0 ? strerror(-ret) : "wrong result");
	return 1;
}

static int main_task(void *arg)
{
	struct shared *s = arg;
	uint64_t start = urt_now_ns();
	urt_task *t;
	int ret, res = -1;

	ret = urt_spawn(NULL, &t, reader, s);
	if (ret < 0)
		return fail("urt_spawn", ret);
	ret = urt_sleep_ns(1000000);
	if (ret < 0 || urt_now_ns() - start < 1000000)
		return fail("urt_sleep_ns", ret);
	ret = urt_to_thread(write_hello, s);
	if (ret < 0 || s->wrote != 5)
		return fail("urt_to_thread", ret);
	ret = urt_join(t, &res);
	if (ret < 0 || res != 0)
		return fail("urt_join (the reader)", ret);
	return 0;
}

int main(void)
{
	struct shared s = { .got = -1 };
	char want[64];
	int ret, result = -1;

	snprintf(want, sizeof(want), "%d.%d.%d", URT_VERSION_MAJOR, URT_VERSION_MINOR,
		 URT_VERSION_PATCH);
	printf("urt %s (header %s)\n", urt_version(), want);
	if (strcmp(urt_version(), want) != 0) {
		fprintf(stderr, "the library is not the header's version\n");
		return 1;
	}
	if (pipe(s.fds) < 0) {
		perror("pipe");
		return 1;
	}
	ret = urt_run(main_task, &s, &result);
	if (ret < 0) {
		fprintf(stderr, "urt_run: %s\n", strerror(-ret));
		return 1;
	}
	if (result != 0)
		return 1;
	printf("a task slept 1 ms and read \"%s\" from a pipe written by a pool thread\n", s.buf);
	return 0;
}
