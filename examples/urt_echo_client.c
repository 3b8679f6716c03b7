/* urt-echo-client: drives an echo server with C concurrent connections, a
 * task each, in one group. Each connection sends B bytes in messages of M
 * bytes (a pattern of its own), and reads every message back before it
 * sends the next, checking each byte. The whole run has a deadline: the
 * group's wait carries it, so a server that stops answering fails the run
 * instead of hanging it.
 *
 *	urt-echo-client --port P [--host ADDR] [--conns C] [--bytes B]
 *	                [--msg M] [--timeout-ms T]
 *
 * Prints "connections C bytes N" (N: bytes echoed and verified) and exits 0
 * when every connection moved all its bytes; 1 otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#define MAX_MSG 16384 /* two buffers of it on a task's 64 KiB stack */

struct client {
	struct sockaddr_in addr;
	unsigned conns;
	unsigned long long bytes, msg; /* per connection */
	unsigned long long timeout_ms;
	unsigned long long verified;
	unsigned next_id, done;
};

static unsigned char pattern(unsigned id, unsigned long long i)
{
	return (unsigned char)(id * 131u + i * 7u + (i >> 9));
}

/* One connection's work; 0, or -errno for the group (the first failure
 * cancels the other connections). */
static int conn_task(void *arg)
{
	struct client *cl = arg;
	unsigned id = cl->next_id++;
	unsigned char out[MAX_MSG], in[MAX_MSG];
	unsigned long long sent = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int ret;

	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	ret = urt_connect(fd, (struct sockaddr *)&cl->addr, sizeof(cl->addr));
	while (!ret && sent < cl->bytes) {
		size_t n = (size_t)(cl->bytes - sent < cl->msg ? cl->bytes - sent : cl->msg);
		size_t got = 0;

		for (size_t i = 0; i < n; i++)
			out[i] = pattern(id, sent + i);
		for (size_t off = 0; off < n;) {
			ssize_t w = urt_send(fd, out + off, n - off, 0);

			if (w < 0) {
				ret = (int)w;
				goto out;
			}
			off += (size_t)w;
		}
		while (got < n) {
			ssize_t r = urt_recv(fd, in, n - got, 0);

			if (r <= 0) {
				ret = r < 0 ? (int)r : -ECONNRESET;
				goto out;
			}
			for (ssize_t i = 0; i < r; i++)
				if (in[i] != pattern(id, sent + got + (size_t)i)) {
					fprintf(stderr, "urt-echo-client: connection %u: byte %llu differs\n",
						id, sent + got + (unsigned long long)i);
					ret = -EBADMSG;
					goto out;
				}
			got += (size_t)r;
		}
		sent += n;
		cl->verified += n;
	}
	if (!ret)
		ret = urt_shutdown(fd, SHUT_WR);
out:
	close(fd);
	if (!ret)
		cl->done++;
	return ret;
}

static int main_task(void *arg)
{
	struct client *cl = arg;
	struct urt_timeout to;
	urt_group *g;
	int ret, left;

	ret = urt_group_create(&g);
	if (ret)
		return ret;
	for (unsigned i = 0; i < cl->conns && !ret; i++)
		ret = urt_group_spawn(g, conn_task, cl);
	urt_timeout_enter(&to, cl->timeout_ms * 1000000ull);
	left = urt_group_wait(g);
	urt_timeout_leave(&to);
	return ret ? ret : left;
}

static unsigned long long number(const char *s, const char *what, unsigned long long max)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (*end || !*s || v == 0 || v > max) {
		fprintf(stderr, "urt-echo-client: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	struct client cl = { .conns = 100, .bytes = 1 << 20, .msg = 4096, .timeout_ms = 60000 };
	const char *host = "127.0.0.1";
	int port = -1, ret, result = 0;

	for (int i = 1; i + 1 < argc || (i < argc && !strcmp(argv[i], "--help")); i += 2) {
		const char *o = argv[i], *v = argv[i + 1];

		if (!strcmp(o, "--help")) {
			printf("usage: urt-echo-client --port P [--host ADDR] [--conns C] [--bytes B]\n"
			       "                       [--msg M] [--timeout-ms T]\n");
			return 0;
		} else if (!strcmp(o, "--port"))
			port = (int)number(v, "port", 65535);
		else if (!strcmp(o, "--host"))
			host = v;
		else if (!strcmp(o, "--conns"))
			cl.conns = (unsigned)number(v, "connection count", 100000);
		else if (!strcmp(o, "--bytes"))
			cl.bytes = number(v, "byte count", 1ull << 40);
		else if (!strcmp(o, "--msg"))
			cl.msg = number(v, "message size", MAX_MSG);
		else if (!strcmp(o, "--timeout-ms"))
			cl.timeout_ms = number(v, "timeout", 1ull << 40);
		else {
			fprintf(stderr, "urt-echo-client: unknown option %s\n", o);
			return 2;
		}
	}
	if (port < 0 || (argc % 2) == 0) {
		fprintf(stderr, "urt-echo-client: --port is required (options take a value)\n");
		return 2;
	}
	cl.addr.sin_family = AF_INET;
	cl.addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &cl.addr.sin_addr) != 1) {
		fprintf(stderr, "urt-echo-client: bad address %s\n", host);
		return 2;
	}
	ret = urt_run(main_task, &cl, &result);
	printf("connections %u bytes %llu\n", cl.done, cl.verified);
	if (ret || result) {
		fprintf(stderr, "urt-echo-client: %s\n", strerror(-(ret ? ret : result)));
		return 1;
	}
	return cl.done == cl.conns && cl.verified == cl.bytes * cl.conns ? 0 : 1;
}
