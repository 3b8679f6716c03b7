/* urt_cat: cat(1) on urt. One task per file reads it into its own buffer
 * while the others read theirs; the output keeps the order of the arguments
 * (each task waits for the one before it to finish writing). With no
 * argument, or "-", it reads stdin. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <urt.h>

struct file_job {
	const char *path;
	urt_task *before; /* the task that writes its output first */
	char *data;
	size_t len;
};

static int write_all(const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(STDOUT_FILENO, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int cat_one(void *arg)
{
	struct file_job *job = arg;
	int fd = STDIN_FILENO, ret = 0;
	size_t cap = 0;

	if (strcmp(job->path, "-") != 0) {
		fd = open(job->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "urt_cat: %s: %s\n", job->path, strerror(errno));
			ret = -errno;
			goto out;
		}
	}
	for (;;) {
		ssize_t n;

		if (cap - job->len < 65536) {
			char *d = realloc(job->data, cap = cap ? cap * 2 : 65536);

			if (!d) {
				ret = -ENOMEM;
				break;
			}
			job->data = d;
		}
		n = urt_read(fd, job->data + job->len, cap - job->len, -1);
		if (n < 0) {
			fprintf(stderr, "urt_cat: %s: %s\n", job->path, strerror((int)-n));
			ret = (int)n;
			break;
		}
		if (n == 0)
			break;
		job->len += (size_t)n;
	}
	if (fd != STDIN_FILENO)
		close(fd);
out:
	if (job->before) {
		int r = urt_join(job->before, NULL);

		if (r < 0 && ret == 0)
			ret = r;
	}
	if (write_all(job->data ? job->data : "", job->len) < 0 && ret == 0)
		ret = -EIO;
	free(job->data);
	return ret;
}

struct cat_args {
	int n;
	char **paths;
};

static int cat_main(void *arg)
{
	struct cat_args *a = arg;
	static char *dash[] = { "-" };
	char **paths = a->n ? a->paths : dash;
	int n = a->n ? a->n : 1, ret;
	struct file_job *jobs = calloc((size_t)n, sizeof(*jobs));
	urt_task *prev = NULL;

	if (!jobs)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		jobs[i].path = paths[i];
		jobs[i].before = prev;
		ret = urt_spawn(NULL, &prev, cat_one, &jobs[i]);
		if (ret < 0) {
			fprintf(stderr, "urt_cat: spawn: %s\n", strerror(-ret));
			return ret;
		}
	}
	/* The last task joins the one before it, and so on down the chain. */
	ret = urt_join(prev, NULL);
	free(jobs);
	return ret;
}

int main(int argc, char **argv)
{
	struct cat_args a = { argc - 1, argv + 1 };
	int result = 0, ret = urt_run(cat_main, &a, &result);

	if (ret < 0) {
		fprintf(stderr, "urt_cat: %s\n", strerror(-ret));
		return 1;
	}
	return result < 0 ? 1 : 0;
}
