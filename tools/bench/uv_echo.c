/*
 * ECHO on libuv: the echo server as libuv's users write it, one loop. Each
 * connection reads (uv_read_start) into a buffer of its own; each read is
 * sent back by uv_write with a request that owns a copy of the bytes, freed
 * in its callback (uv_write tries the send at once and only queues what
 * the socket did not take). A connection whose queued writes pass 64 KiB
 * stops reading until they are gone, so that a client that does not read
 * cannot make the server buffer without bound.
 *
 *	urt-bench-uv-echo [--port P]
 *
 * Binds 127.0.0.1:P (0, the default: any free port), prints "port N" as its
 * first line, and runs until SIGINT or SIGTERM (uv_signal), then closes
 * every handle, checks that the loop closes, and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "bench_util.h"

#define BUF_SIZE 16384
#define HIGH_WATER 65536u

struct conn {
	uv_tcp_t tcp;		/* first member: the handle is the connection */
	struct conn *prev, *next;
	bool reading;
	char buf[BUF_SIZE];
};

struct wreq {
	uv_write_t req;		/* first member */
	char data[];
};

static struct {
	uv_loop_t *loop;
	uv_tcp_t server;
	uv_signal_t sigs[2];
	struct conn head;	/* of the list of open connections */
	unsigned long accepted;
} st;

static void on_close(uv_handle_t *h)
{
	struct conn *c = (struct conn *)h;

	c->prev->next = c->next;
	c->next->prev = c->prev;
	free(c);
}

static void conn_close(struct conn *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = (struct conn *)h;

	(void)suggested;
	/* Reused: on_read copies out of it before the next read. */
	*buf = uv_buf_init(c->buf, sizeof(c->buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
	struct conn *c = (struct conn *)req->handle;

	free(req);
	/* UV_ECANCELED: the connection is closing, its queue dropped. */
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (!c->reading && !uv_is_closing((uv_handle_t *)&c->tcp) &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
		if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
			conn_close(c);
			return;
		}
		c->reading = true;
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = (struct conn *)s;
	struct wreq *w;
	uv_buf_t b;

	if (nread == 0)
		return;		/* EAGAIN */
	if (nread < 0) {
		conn_close(c);	/* UV_EOF, or a reset: the client's business */
		return;
	}
	w = malloc(sizeof(*w) + (size_t)nread);
	if (!w)
		bench_die("out of memory");
	memcpy(w->data, buf->base, (size_t)nread);
	b = uv_buf_init(w->data, (unsigned)nread);
	if (uv_write(&w->req, s, &b, 1, on_write) < 0) {
		free(w);
		conn_close(c);
		return;
	}
	if (uv_stream_get_write_queue_size(s) > HIGH_WATER) {
		uv_read_stop(s);
		c->reading = false;
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	struct conn *c;
	int ret;

	if (status < 0) {
		fprintf(stderr, "urt-bench-uv-echo: listen: %s\n", uv_strerror(status));
		return;
	}
	c = malloc(sizeof(*c));
	if (!c)
		bench_die("out of memory");
	ret = uv_tcp_init(st.loop, &c->tcp);
	if (ret < 0)
		bench_die("uv_tcp_init: %s", uv_strerror(ret));
	c->next = st.head.next;
	c->prev = &st.head;
	c->next->prev = c;
	st.head.next = c;
	c->reading = false;
	ret = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (ret < 0) {
		conn_close(c);
		return;
	}
	st.accepted++;
	/* The echo is one small send: never hold it back for an ACK. */
	uv_tcp_nodelay(&c->tcp, 1);
	ret = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (ret < 0) {
		conn_close(c);
		return;
	}
	c->reading = true;
}

static void on_signal(uv_signal_t *sig, int signum)
{
	(void)sig;
	(void)signum;
	for (int i = 0; i < 2; i++)
		if (!uv_is_closing((uv_handle_t *)&st.sigs[i]))
			uv_close((uv_handle_t *)&st.sigs[i], NULL);
	if (!uv_is_closing((uv_handle_t *)&st.server))
		uv_close((uv_handle_t *)&st.server, NULL);
	/* on_close unlinks later, in the loop's close phase. */
	for (struct conn *c = st.head.next; c != &st.head; c = c->next)
		conn_close(c);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: urt-bench-uv-echo [--port P]\n"
		   "  A libuv echo server on 127.0.0.1:P (default 0: any free port); prints\n"
		   "  \"port N\" first, exits 0 on SIGINT or SIGTERM.\n");
}

int main(int argc, char **argv)
{
	static const int signums[2] = { SIGINT, SIGTERM };
	struct sockaddr_storage ss;
	struct sockaddr_in sa;
	int ret, len = sizeof(ss);
	unsigned port;

	bench_prog = "urt-bench-uv-echo";
	port = bench_echo_parse(argc, argv, usage);

	st.loop = uv_default_loop();
	st.head.next = st.head.prev = &st.head;
	/* uv_signal installs its own handler, which also undoes the SIG_IGN a
	 * non-interactive shell's & leaves on SIGINT. */
	for (int i = 0; i < 2; i++) {
		ret = uv_signal_init(st.loop, &st.sigs[i]);
		if (ret == 0)
			ret = uv_signal_start(&st.sigs[i], on_signal, signums[i]);
		if (ret < 0)
			bench_die("uv_signal: %s", uv_strerror(ret));
	}
	ret = uv_tcp_init(st.loop, &st.server);
	if (ret == 0)
		ret = uv_ip4_addr("127.0.0.1", (int)port, &sa);
	if (ret == 0)
		ret = uv_tcp_bind(&st.server, (const struct sockaddr *)&sa, 0);
	if (ret == 0)
		ret = uv_listen((uv_stream_t *)&st.server, SOMAXCONN, on_connection);
	if (ret == 0)
		ret = uv_tcp_getsockname(&st.server, (struct sockaddr *)&ss, &len);
	if (ret < 0)
		bench_die("listening on 127.0.0.1:%u: %s", port, uv_strerror(ret));

	/* Listening already: a client may connect as soon as it reads this. */
	printf("port %u\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
	if (fflush(stdout))
		bench_die("writing the port: %s", strerror(errno));

	ret = uv_run(st.loop, UV_RUN_DEFAULT);
	if (ret < 0)
		bench_die("uv_run: %s", uv_strerror(ret));
	/* Every handle closed and every request called back, or this fails:
	 * a leak here is a bug in this server. */
	ret = uv_loop_close(st.loop);
	if (ret < 0)
		bench_die("uv_loop_close: %s", uv_strerror(ret));
	fprintf(stderr, "urt-bench-uv-echo: stopped, %lu connections served\n", st.accepted);
	return 0;
}
