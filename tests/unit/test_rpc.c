/*
 * test_rpc.c - lib/rpc: a real server on 127.0.0.1:0 and real channels, with
 * test methods on raw bytes (no protobuf).
 *
 * Methods of the shared server:
 *   /test.T/Echo        answers the request bytes
 *   /test.T/Handoff     queues the call to a "writer" thread that answers later
 *   /test.T/Error       US_ENOTFOUND with a message
 *   /test.T/Meta        answers "auth=<authorization>|peer=<peer>"
 *   /test.T/Stream      request u32le count, u32le size: count messages of size
 *                       bytes (the first 4 are the index); count 0xFFFFFFFF:
 *                       endless, until cancelled
 *   /test.T/StreamFail  3 messages, then US_EPRECOND with a message
 *   /test.T/Hold        parks the call in `held` until the test finishes it
 *
 * cmocka's assertions are not thread-safe: handler and helper threads only
 * count and record; the test thread asserts. Waits have deadlines, no sleeps
 * stand in for a condition.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "rpc.h"

#define WAIT_MS 10000

static struct rpc_server *g_server;
static char g_addr[64];

/* ---- time and waiting ---- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Everything the handler threads report, behind one mutex. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n_stream_cancelled;   /* more() saw the call cancelled and finished it */
	int n_stream_done;        /* streams finished (any way) */
	struct rpc_call *held;    /* /test.T/Hold's parked call */
	int n_held;
} g_rec = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL, 0 };

/* Waits until *counter >= want; false after ms. */
static bool wait_count(int *counter, int want, int ms)
{
	struct timespec dl;
	bool ok;

	deadline_in(&dl, ms);
	pthread_mutex_lock(&g_rec.mu);
	while (*counter < want)
		if (pthread_cond_timedwait(&g_rec.cv, &g_rec.mu, &dl) == ETIMEDOUT)
			break;
	ok = *counter >= want;
	pthread_mutex_unlock(&g_rec.mu);
	return ok;
}

static void rec_bump(int *counter)
{
	pthread_mutex_lock(&g_rec.mu);
	(*counter)++;
	pthread_cond_broadcast(&g_rec.cv);
	pthread_mutex_unlock(&g_rec.mu);
}

/* ---- the "writer" thread of /test.T/Handoff ---- */

struct handoff {
	struct rpc_call *call;
	uint8_t *req;
	size_t len;
	struct handoff *next;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct handoff *head, *tail;
	bool is_stopping;
	pthread_t thread;
} g_writer = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, false, 0 };

static void *writer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_writer.mu);
	for (;;) {
		struct handoff *h = g_writer.head;

		if (!h) {
			if (g_writer.is_stopping)
				break;
			pthread_cond_wait(&g_writer.cv, &g_writer.mu);
			continue;
		}
		g_writer.head = h->next;
		if (!g_writer.head)
			g_writer.tail = NULL;
		pthread_mutex_unlock(&g_writer.mu);
		rpc_call_finish(h->call, 0, NULL, h->req, h->len);
		free(h->req);
		free(h);
		pthread_mutex_lock(&g_writer.mu);
	}
	pthread_mutex_unlock(&g_writer.mu);
	return NULL;
}

/* ---- handlers ---- */

static void h_echo(struct rpc_call *call, const uint8_t *req, size_t len, void *arg)
{
	(void)arg;
	rpc_call_finish(call, 0, NULL, req, len);
}

static void h_handoff(struct rpc_call *call, const uint8_t *req, size_t len, void *arg)
{
	struct handoff *h = calloc(1, sizeof(*h));

	(void)arg;
	if (!h || !(h->req = malloc(len ? len : 1))) {
		free(h);
		rpc_call_finish(call, US_ENOMEM, "test: out of memory", NULL, 0);
		return;
	}
	memcpy(h->req, req, len);
	h->len = len;
	h->call = call;
	pthread_mutex_lock(&g_writer.mu);
	if (g_writer.tail)
		g_writer.tail->next = h;
	else
		g_writer.head = h;
	g_writer.tail = h;
	pthread_cond_signal(&g_writer.cv);
	pthread_mutex_unlock(&g_writer.mu);
}

static void h_error(struct rpc_call *call, const uint8_t *req, size_t len, void *arg)
{
	struct us_err e;

	(void)req;
	(void)len;
	(void)arg;
	err_set(&e, US_ENOTFOUND, "no item 'k1' in file acct/f1 of namespace site-a");
	rpc_call_finish_err(call, &e);
}

static void h_meta(struct rpc_call *call, const uint8_t *req, size_t len, void *arg)
{
	const char *auth, *peer;
	size_t auth_len = 0;
	char out[512];
	int n;

	(void)req;
	(void)len;
	(void)arg;
	auth = rpc_call_metadata(call, "authorization", &auth_len);
	if (rpc_call_metadata(call, "x-no-such-key", &len) != NULL) {
		rpc_call_finish(call, US_EIO, "found a key that was not sent", NULL, 0);
		return;
	}
	peer = rpc_call_peer(call);
	n = snprintf(out, sizeof(out), "auth=%.*s|peer=%s", (int)auth_len, auth ? auth : "",
		     peer ? peer : "");
	rpc_call_finish(call, 0, NULL, (const uint8_t *)out, (size_t)n);
}

struct stream_state {
	uint32_t count; /* UINT32_MAX: endless */
	uint32_t sent;
	uint32_t fail_after; /* 0: never */
	struct buf msg;
};

static void stream_more(struct rpc_call *call, void *arg)
{
	struct stream_state *st = arg;

	if (rpc_call_is_cancelled(call)) {
		rpc_call_finish(call, US_ECANCELLED, "test: cancelled", NULL, 0);
		buf_release(&st->msg);
		free(st);
		rec_bump(&g_rec.n_stream_cancelled);
		rec_bump(&g_rec.n_stream_done);
		return;
	}
	if (st->fail_after && st->sent == st->fail_after) {
		rpc_call_finish(call, US_EPRECOND, "namespace site-a is fenced: generation 7 is newer",
				NULL, 0);
		goto out_done;
	}
	if (st->count != UINT32_MAX && st->sent == st->count) {
		rpc_call_finish(call, 0, NULL, NULL, 0);
		goto out_done;
	}
	buf_put_u32le(st->msg.p, st->sent);
	st->sent++;
	if (rpc_call_send(call, st->msg.p, st->msg.len, stream_more, st) != 0) {
		rpc_call_finish(call, US_ENOMEM, "test: send failed", NULL, 0);
		goto out_done;
	}
	return;

out_done:
	buf_release(&st->msg);
	free(st);
	rec_bump(&g_rec.n_stream_done);
}

static void stream_begin(struct rpc_call *call, const uint8_t *req, size_t len,
			 uint32_t fail_after)
{
	struct stream_state *st;
	uint32_t size;

	if (len != 8) {
		rpc_call_finish(call, US_EINVAL, "test: stream request is 8 bytes", NULL, 0);
		return;
	}
	st = calloc(1, sizeof(*st));
	buf_init(&st->msg);
	st->count = buf_get_u32le(req);
	size = buf_get_u32le(req + 4);
	st->fail_after = fail_after;
	if (size < 4)
		size = 4;
	buf_reserve(&st->msg, size);
	memset(st->msg.p, 'x', size);
	st->msg.len = size;
	stream_more(call, st);
}

static void h_stream(struct rpc_call *call, const uint8_t *req, size_t len, void *arg)
{
	(void)arg;
	stream_begin(call, req, len, 0);
}

static void h_stream_fail(struct rpc_call *call, const uint8_t *req, size_t len, void *arg)
{
	(void)arg;
	stream_begin(call, req, len, 3);
}

static void h_hold(struct rpc_call *call, const uint8_t *req, size_t len, void *arg)
{
	(void)req;
	(void)len;
	(void)arg;
	pthread_mutex_lock(&g_rec.mu);
	g_rec.held = call;
	g_rec.n_held++;
	pthread_cond_broadcast(&g_rec.cv);
	pthread_mutex_unlock(&g_rec.mu);
}

static const struct rpc_method g_methods[] = {
	{ "/test.T/Echo", h_echo, NULL },
	{ "/test.T/Handoff", h_handoff, NULL },
	{ "/test.T/Error", h_error, NULL },
	{ "/test.T/Meta", h_meta, NULL },
	{ "/test.T/Stream", h_stream, NULL },
	{ "/test.T/StreamFail", h_stream_fail, NULL },
	{ "/test.T/Hold", h_hold, NULL },
};
#define N_METHODS (sizeof(g_methods) / sizeof(g_methods[0]))

#define SERVER_MAX_MESSAGE (1024u * 1024u)

static int start_server(struct rpc_server **s, const char *listen, struct us_err *err)
{
	struct rpc_server_opts o = {
		.listen = listen,
		.threads = 2,
		.max_message_bytes = SERVER_MAX_MESSAGE,
	};

	return rpc_server_start(s, &o, g_methods, N_METHODS, err);
}

/* Takes the parked call of /test.T/Hold (waits for it). */
static struct rpc_call *take_held(int n_before)
{
	struct rpc_call *c;

	assert_true(wait_count(&g_rec.n_held, n_before + 1, WAIT_MS));
	pthread_mutex_lock(&g_rec.mu);
	c = g_rec.held;
	g_rec.held = NULL;
	pthread_mutex_unlock(&g_rec.mu);
	assert_non_null(c);
	return c;
}

static struct rpc_channel *channel(const char *addr)
{
	struct rpc_channel *ch;
	struct us_err err;

	assert_int_equal(rpc_channel_new(&ch, addr, NULL, &err), 0);
	return ch;
}

static void stream_req(uint8_t req[8], uint32_t count, uint32_t size)
{
	buf_put_u32le(req, count);
	buf_put_u32le(req + 4, size);
}

/* ---- fixture ---- */

static int group_setup(void **state)
{
	struct us_err err;

	(void)state;
	rpc_global_init();
	if (pthread_create(&g_writer.thread, NULL, writer_main, NULL) != 0)
		return -1;
	if (start_server(&g_server, "127.0.0.1:0", &err) != 0) {
		fprintf(stderr, "cannot start test server: %s\n", err.msg);
		return -1;
	}
	snprintf(g_addr, sizeof(g_addr), "127.0.0.1:%d", rpc_server_port(g_server));
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	rpc_server_stop(g_server, 1000);
	pthread_mutex_lock(&g_writer.mu);
	g_writer.is_stopping = true;
	pthread_cond_signal(&g_writer.cv);
	pthread_mutex_unlock(&g_writer.mu);
	pthread_join(g_writer.thread, NULL);
	rpc_global_shutdown();
	return 0;
}

/* ---- unary ---- */

static void test_unary_echo(void **state)
{
	static const size_t sizes[] = { 0, 1, 1000, 100 * 1000, SERVER_MAX_MESSAGE - 64 };
	struct rpc_channel *ch = channel(g_addr);
	struct us_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *req = malloc(sizes[i] + 1), *resp = NULL;
		size_t resp_len = 12345;

		for (size_t j = 0; j < sizes[i]; j++)
			req[j] = (uint8_t)(j * 7 + i);
		assert_int_equal(rpc_unary(ch, "/test.T/Echo", req, sizes[i], 5000, &resp,
					   &resp_len, &err), 0);
		assert_non_null(resp); /* even when empty */
		assert_int_equal(resp_len, sizes[i]);
		assert_memory_equal(resp, req, sizes[i] ? sizes[i] : 0);
		free(resp);
		free(req);
	}
	rpc_channel_free(ch);
}

static void test_unary_metadata_and_peer(void **state)
{
	struct rpc_channel_opts o = { .token = "s3cret-T0ken" };
	struct rpc_channel *ch;
	struct us_err err;
	uint8_t *resp;
	size_t len;
	char text[512];

	(void)state;
	assert_int_equal(rpc_channel_new(&ch, g_addr, &o, &err), 0);
	assert_int_equal(rpc_unary(ch, "/test.T/Meta", NULL, 0, 5000, &resp, &len, &err), 0);
	assert_true(len < sizeof(text));
	memcpy(text, resp, len);
	text[len] = '\0';
	free(resp);
	assert_non_null(strstr(text, "auth=Bearer s3cret-T0ken|"));
	assert_non_null(strstr(text, "|peer=ipv4:127.0.0.1:"));
	rpc_channel_free(ch);

	/* no token: no authorization metadata */
	ch = channel(g_addr);
	assert_int_equal(rpc_unary(ch, "/test.T/Meta", NULL, 0, 5000, &resp, &len, &err), 0);
	assert_true(len >= 6);
	assert_memory_equal(resp, "auth=|", 6);
	free(resp);
	rpc_channel_free(ch);
}

static void test_unary_error_message(void **state)
{
	struct rpc_channel *ch = channel(g_addr);
	struct us_err err;
	uint8_t *resp = (uint8_t *)"untouched";
	size_t len;

	(void)state;
	assert_int_equal(rpc_unary(ch, "/test.T/Error", (const uint8_t *)"k1", 2, 5000, &resp,
				   &len, &err), US_ENOTFOUND);
	assert_null(resp);
	assert_int_equal(err.code, US_ENOTFOUND);
	assert_string_equal(err.msg, "no item 'k1' in file acct/f1 of namespace site-a");
	rpc_channel_free(ch);
}

static void test_unknown_method(void **state)
{
	struct rpc_channel *ch = channel(g_addr);
	struct us_err err;
	uint8_t *resp;
	size_t len;

	(void)state;
	assert_int_equal(rpc_unary(ch, "/test.T/NoSuch", NULL, 0, 5000, &resp, &len, &err),
			 US_EUNIMPL);
	assert_non_null(strstr(err.msg, "/test.T/NoSuch"));
	rpc_channel_free(ch);
}

static void test_request_too_big(void **state)
{
	struct rpc_channel *ch = channel(g_addr);
	size_t n = SERVER_MAX_MESSAGE + 1;
	uint8_t *req = calloc(1, n), *resp;
	size_t len;
	struct us_err err;

	(void)state;
	assert_int_equal(rpc_unary(ch, "/test.T/Echo", req, n, 5000, &resp, &len, &err),
			 US_ETOOBIG);
	assert_non_null(strstr(err.msg, "larger than max"));
	/* the channel still works */
	assert_int_equal(rpc_unary(ch, "/test.T/Echo", req, 10, 5000, &resp, &len, &err), 0);
	free(resp);
	free(req);
	rpc_channel_free(ch);
}

static void test_response_too_big(void **state)
{
	struct rpc_channel_opts o = { .max_message_bytes = 1000 };
	struct rpc_channel *ch;
	uint8_t req[2000] = { 0 }, *resp;
	size_t len;
	struct us_err err;

	(void)state;
	assert_int_equal(rpc_channel_new(&ch, g_addr, &o, &err), 0);
	assert_int_equal(rpc_unary(ch, "/test.T/Echo", req, 999, 5000, &resp, &len, &err), 0);
	free(resp);
	assert_int_equal(rpc_unary(ch, "/test.T/Echo", req, sizeof(req), 5000, &resp, &len, &err),
			 US_ETOOBIG);
	rpc_channel_free(ch);
}

/* The plumbing notices the cancel on its worker thread; nothing signals the
 * holder, so look until it shows (with a deadline). */
static bool wait_cancelled(struct rpc_call *call, int ms)
{
	int64_t end = now_ms() + ms;
	struct timespec pause = { 0, 1000000 };

	while (!rpc_call_is_cancelled(call)) {
		if (now_ms() > end)
			return false;
		nanosleep(&pause, NULL);
	}
	return true;
}

/* The call outlives its deadline in a holder's hands: the client gets
 * US_ETIMEOUT with the method, address and timeout; the late finish is a
 * no-op on the wire but still releases the call. */
static void test_unary_deadline(void **state)
{
	struct rpc_channel *ch = channel(g_addr);
	struct rpc_call *held;
	struct us_err err;
	uint8_t *resp;
	size_t len;
	char want[128];
	int n_held;

	(void)state;
	pthread_mutex_lock(&g_rec.mu);
	n_held = g_rec.n_held;
	pthread_mutex_unlock(&g_rec.mu);
	assert_int_equal(rpc_unary(ch, "/test.T/Hold", NULL, 0, 200, &resp, &len, &err),
			 US_ETIMEOUT);
	snprintf(want, sizeof(want), "/test.T/Hold on %s: no answer within 200 ms", g_addr);
	assert_string_equal(err.msg, want);
	held = take_held(n_held);
	assert_true(wait_cancelled(held, WAIT_MS));
	rpc_call_finish(held, 0, NULL, (const uint8_t *)"late", 4);
	rpc_channel_free(ch);
}

#define CONC_THREADS 8
#define CONC_CALLS 500

struct conc_arg {
	int idx;
	int n_ok;
	int first_rc;
	char first_msg[US_ERR_MSG_MAX];
};

static void *conc_main(void *p)
{
	struct conc_arg *a = p;
	struct rpc_channel *ch;
	struct us_err err;

	if (rpc_channel_new(&ch, g_addr, NULL, &err) != 0) {
		a->first_rc = err.code;
		return NULL;
	}
	for (int i = 0; i < CONC_CALLS; i++) {
		uint8_t req[16], *resp = NULL;
		size_t len = 0;
		int rc;

		buf_put_u32le(req, (uint32_t)a->idx);
		buf_put_u32le(req + 4, (uint32_t)i);
		memset(req + 8, 0xAB, 8);
		rc = rpc_unary(ch, "/test.T/Handoff", req, sizeof(req), 10000, &resp, &len, &err);
		if (rc == 0 && len == sizeof(req) && memcmp(req, resp, len) == 0) {
			a->n_ok++;
		} else if (a->first_rc == 0) {
			a->first_rc = rc ? rc : US_ECORRUPT;
			snprintf(a->first_msg, sizeof(a->first_msg), "%s",
				 rc ? err.msg : "wrong echo");
		}
		free(resp);
	}
	rpc_channel_free(ch);
	return NULL;
}

static void test_handoff_concurrent(void **state)
{
	pthread_t t[CONC_THREADS];
	struct conc_arg a[CONC_THREADS];
	int64_t t0, ms;

	(void)state;
	memset(a, 0, sizeof(a));
	t0 = now_ms();
	for (int i = 0; i < CONC_THREADS; i++) {
		a[i].idx = i;
		assert_int_equal(pthread_create(&t[i], NULL, conc_main, &a[i]), 0);
	}
	for (int i = 0; i < CONC_THREADS; i++)
		pthread_join(t[i], NULL);
	ms = now_ms() - t0;
	for (int i = 0; i < CONC_THREADS; i++) {
		if (a[i].first_rc)
			fail_msg("thread %d: rc %d: %s", i, a[i].first_rc, a[i].first_msg);
		assert_int_equal(a[i].n_ok, CONC_CALLS);
	}
	print_message("handoff: %d calls from %d threads in %lld ms (%.0f calls/s)\n",
		      CONC_THREADS * CONC_CALLS, CONC_THREADS, (long long)ms,
		      CONC_THREADS * CONC_CALLS * 1000.0 / (double)(ms ? ms : 1));
}

/* ---- server streaming ---- */

static void test_stream_1000(void **state)
{
	struct rpc_channel *ch = channel(g_addr);
	struct rpc_stream *st;
	struct us_err err;
	uint8_t req[8];
	uint32_t n = 0;
	int done_before, rc;

	(void)state;
	pthread_mutex_lock(&g_rec.mu);
	done_before = g_rec.n_stream_done;
	pthread_mutex_unlock(&g_rec.mu);
	stream_req(req, 1000, 1000);
	assert_int_equal(rpc_stream_open(ch, "/test.T/Stream", req, 8, 10000, &st, &err), 0);
	for (;;) {
		uint8_t *msg;
		size_t len;

		rc = rpc_stream_next(st, &msg, &len, &err);
		if (rc != 1)
			break;
		assert_int_equal(len, 1000);
		assert_int_equal(buf_get_u32le(msg), n);
		free(msg);
		n++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(n, 1000);
	/* after the end, next keeps saying so */
	{
		uint8_t *msg;
		size_t len;

		assert_int_equal(rpc_stream_next(st, &msg, &len, &err), 0);
		assert_null(msg);
	}
	rpc_stream_free(st);
	assert_true(wait_count(&g_rec.n_stream_done, done_before + 1, WAIT_MS));
	rpc_channel_free(ch);
}

static void test_stream_empty(void **state)
{
	struct rpc_channel *ch = channel(g_addr);
	struct rpc_stream *st;
	struct us_err err;
	uint8_t req[8], *msg;
	size_t len;

	(void)state;
	stream_req(req, 0, 10);
	assert_int_equal(rpc_stream_open(ch, "/test.T/Stream", req, 8, 10000, &st, &err), 0);
	assert_int_equal(rpc_stream_next(st, &msg, &len, &err), 0);
	rpc_stream_free(st);
	rpc_channel_free(ch);
}

static void test_stream_error_after_messages(void **state)
{
	struct rpc_channel *ch = channel(g_addr);
	struct rpc_stream *st;
	struct us_err err;
	uint8_t req[8], *msg;
	size_t len;
	int n = 0, rc;

	(void)state;
	stream_req(req, 100, 16);
	assert_int_equal(rpc_stream_open(ch, "/test.T/StreamFail", req, 8, 10000, &st, &err), 0);
	while ((rc = rpc_stream_next(st, &msg, &len, &err)) == 1) {
		free(msg);
		n++;
	}
	assert_int_equal(n, 3);
	assert_int_equal(rc, US_EPRECOND);
	assert_string_equal(err.msg, "namespace site-a is fenced: generation 7 is newer");
	/* again: same answer */
	memset(&err, 0, sizeof(err));
	assert_int_equal(rpc_stream_next(st, &msg, &len, &err), US_EPRECOND);
	assert_string_equal(err.msg, "namespace site-a is fenced: generation 7 is newer");
	rpc_stream_free(st);
	rpc_channel_free(ch);
}

static void test_stream_abandoned(void **state)
{
	struct rpc_channel *ch = channel(g_addr);
	struct rpc_stream *st;
	struct us_err err;
	uint8_t req[8], *msg;
	size_t len;
	int cancelled_before;

	(void)state;
	pthread_mutex_lock(&g_rec.mu);
	cancelled_before = g_rec.n_stream_cancelled;
	pthread_mutex_unlock(&g_rec.mu);
	stream_req(req, UINT32_MAX, 100);
	assert_int_equal(rpc_stream_open(ch, "/test.T/Stream", req, 8, 0, &st, &err), 0);
	for (uint32_t i = 0; i < 50; i++) {
		assert_int_equal(rpc_stream_next(st, &msg, &len, &err), 1);
		assert_int_equal(buf_get_u32le(msg), i);
		free(msg);
	}
	rpc_stream_free(st); /* mid stream: cancels it */
	assert_true(wait_count(&g_rec.n_stream_cancelled, cancelled_before + 1, WAIT_MS));
	/* and a stream opened and freed without reading */
	assert_int_equal(rpc_stream_open(ch, "/test.T/Stream", req, 8, 0, &st, &err), 0);
	rpc_stream_free(st);
	rpc_channel_free(ch);
}

static void test_stream_deadline(void **state)
{
	struct rpc_channel *ch = channel(g_addr);
	struct rpc_stream *st;
	struct us_err err;
	uint8_t req[8], *msg;
	size_t len;
	int rc, cancelled_before;
	int64_t t0 = now_ms();

	(void)state;
	pthread_mutex_lock(&g_rec.mu);
	cancelled_before = g_rec.n_stream_cancelled;
	pthread_mutex_unlock(&g_rec.mu);
	stream_req(req, UINT32_MAX, 100);
	assert_int_equal(rpc_stream_open(ch, "/test.T/Stream", req, 8, 300, &st, &err), 0);
	while ((rc = rpc_stream_next(st, &msg, &len, &err)) == 1)
		free(msg);
	assert_int_equal(rc, US_ETIMEOUT);
	assert_non_null(strstr(err.msg, "/test.T/Stream on 127.0.0.1:"));
	assert_non_null(strstr(err.msg, ": no answer within 300 ms"));
	assert_true(now_ms() - t0 < WAIT_MS);
	rpc_stream_free(st);
	assert_true(wait_count(&g_rec.n_stream_cancelled, cancelled_before + 1, WAIT_MS));
	rpc_channel_free(ch);
}

/* ---- addresses and listening ---- */

static void test_port_in_use(void **state)
{
	struct rpc_server *s2 = NULL;
	struct us_err err;
	char msg[128];

	(void)state;
	assert_int_equal(start_server(&s2, g_addr, &err), US_EUNAVAIL);
	assert_null(s2);
	snprintf(msg, sizeof(msg), "cannot listen on %s: address in use or not available", g_addr);
	assert_string_equal(err.msg, msg);
}

static void test_bad_addresses(void **state)
{
	static const char *bad[] = { "", "7441", "127.0.0.1", "127.0.0.1:", "127.0.0.1:x",
				     "127.0.0.1:70000", ":7441", "::1:7441", "[::1]7441",
				     "127.0.0.1:-1" };
	struct rpc_server *s;
	struct rpc_channel *ch;
	struct us_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(start_server(&s, bad[i], &err), US_EINVAL);
		assert_null(s);
		assert_non_null(strstr(err.msg, "bad listen address"));
		assert_int_equal(rpc_channel_new(&ch, bad[i], NULL, &err), US_EINVAL);
		assert_null(ch);
	}
	{
		struct rpc_channel_opts o = { .token = "bad\ntoken" };

		assert_int_equal(rpc_channel_new(&ch, g_addr, &o, &err), US_EINVAL);
	}
	{
		struct rpc_server_opts o = { .listen = "127.0.0.1:0", .threads = 0 };

		assert_int_equal(rpc_server_start(&s, &o, g_methods, N_METHODS, &err), US_EINVAL);
	}
}

/* A port nothing listens on: bound, then closed. */
static int dead_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static void test_dead_address_fails_fast(void **state)
{
	char addr[64], prefix[96];
	struct rpc_channel *ch;
	struct rpc_stream *st;
	struct us_err err;
	uint8_t *resp, req[8], *msg;
	size_t len;
	int64_t t0;

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", dead_port());
	snprintf(prefix, sizeof(prefix), "cannot reach %s: ", addr);
	ch = channel(addr);
	t0 = now_ms();
	assert_int_equal(rpc_unary(ch, "/test.T/Echo", NULL, 0, 10000, &resp, &len, &err),
			 US_EUNAVAIL);
	assert_true(now_ms() - t0 < 3000);
	assert_memory_equal(err.msg, prefix, strlen(prefix));
	assert_true(strlen(err.msg) > strlen(prefix));

	stream_req(req, 10, 10);
	assert_int_equal(rpc_stream_open(ch, "/test.T/Stream", req, 8, 10000, &st, &err), 0);
	assert_int_equal(rpc_stream_next(st, &msg, &len, &err), US_EUNAVAIL);
	assert_memory_equal(err.msg, prefix, strlen(prefix));
	rpc_stream_free(st);
	rpc_channel_free(ch);
}

/* ---- stopping ---- */

struct call_thread {
	pthread_t thread;
	const char *addr;
	const char *method;
	int rc;
	struct us_err err;
	bool is_done;
};

static void *call_main(void *p)
{
	struct call_thread *c = p;
	struct rpc_channel *ch;
	uint8_t *resp = NULL;
	size_t len;

	if (rpc_channel_new(&ch, c->addr, NULL, &c->err) != 0) {
		c->rc = c->err.code;
	} else {
		c->rc = rpc_unary(ch, c->method, (const uint8_t *)"hi", 2, 20000, &resp, &len,
				  &c->err);
		free(resp);
		rpc_channel_free(ch);
	}
	pthread_mutex_lock(&g_rec.mu);
	c->is_done = true;
	pthread_cond_broadcast(&g_rec.cv);
	pthread_mutex_unlock(&g_rec.mu);
	return NULL;
}

struct stop_thread {
	pthread_t thread;
	struct rpc_server *s;
	int grace_ms;
	bool is_done;
};

static void *stop_main(void *p)
{
	struct stop_thread *t = p;

	rpc_server_stop(t->s, t->grace_ms);
	pthread_mutex_lock(&g_rec.mu);
	t->is_done = true;
	pthread_cond_broadcast(&g_rec.cv);
	pthread_mutex_unlock(&g_rec.mu);
	return NULL;
}

static bool wait_flag(bool *flag, int ms)
{
	struct timespec dl;
	bool ok;

	deadline_in(&dl, ms);
	pthread_mutex_lock(&g_rec.mu);
	while (!*flag)
		if (pthread_cond_timedwait(&g_rec.cv, &g_rec.mu, &dl) == ETIMEDOUT)
			break;
	ok = *flag;
	pthread_mutex_unlock(&g_rec.mu);
	return ok;
}

static void test_stop_waits_for_handoff(void **state)
{
	struct rpc_server *s;
	struct us_err err;
	char addr[64];
	struct call_thread c = { .addr = addr, .method = "/test.T/Hold" };
	struct stop_thread t = { .grace_ms = 100 };
	struct rpc_call *held;
	int n_held;

	(void)state;
	assert_int_equal(start_server(&s, "127.0.0.1:0", &err), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", rpc_server_port(s));
	pthread_mutex_lock(&g_rec.mu);
	n_held = g_rec.n_held;
	pthread_mutex_unlock(&g_rec.mu);
	assert_int_equal(pthread_create(&c.thread, NULL, call_main, &c), 0);
	held = take_held(n_held);

	t.s = s;
	assert_int_equal(pthread_create(&t.thread, NULL, stop_main, &t), 0);
	/* past the grace, the call is cancelled: the client learns at once */
	assert_true(wait_flag(&c.is_done, WAIT_MS));
	assert_int_equal(c.rc, US_EUNAVAIL);
	/* but the server waits for the holder (a bounded look, not a wait for
	 * a condition: stop must not have returned) */
	assert_false(wait_flag(&t.is_done, 300));
	assert_true(wait_cancelled(held, WAIT_MS));
	rpc_call_finish(held, 0, NULL, (const uint8_t *)"late", 4);
	assert_true(wait_flag(&t.is_done, WAIT_MS));
	pthread_join(t.thread, NULL);
	pthread_join(c.thread, NULL);
}

static void test_stop_graceful(void **state)
{
	struct rpc_server *s;
	struct us_err err;
	char addr[64];
	struct call_thread c = { .addr = addr, .method = "/test.T/Hold" };
	struct stop_thread t = { .grace_ms = 20000 };
	struct rpc_call *held;
	int n_held;
	int64_t t0;

	(void)state;
	assert_int_equal(start_server(&s, "127.0.0.1:0", &err), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", rpc_server_port(s));
	pthread_mutex_lock(&g_rec.mu);
	n_held = g_rec.n_held;
	pthread_mutex_unlock(&g_rec.mu);
	assert_int_equal(pthread_create(&c.thread, NULL, call_main, &c), 0);
	held = take_held(n_held);
	t.s = s;
	t0 = now_ms();
	assert_int_equal(pthread_create(&t.thread, NULL, stop_main, &t), 0);
	/* within the grace: the call ends normally */
	assert_false(rpc_call_is_cancelled(held));
	rpc_call_finish(held, 0, NULL, (const uint8_t *)"ok", 2);
	assert_true(wait_flag(&c.is_done, WAIT_MS));
	assert_int_equal(c.rc, 0);
	assert_true(wait_flag(&t.is_done, WAIT_MS));
	assert_true(now_ms() - t0 < 15000); /* did not sit out the grace */
	pthread_join(t.thread, NULL);
	pthread_join(c.thread, NULL);
}

static void test_stop_cancels_stream(void **state)
{
	struct rpc_server *s;
	struct rpc_channel *ch;
	struct rpc_stream *st;
	struct us_err err;
	char addr[64];
	uint8_t req[8], *msg;
	size_t len;
	int rc, cancelled_before;

	(void)state;
	assert_int_equal(start_server(&s, "127.0.0.1:0", &err), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", rpc_server_port(s));
	pthread_mutex_lock(&g_rec.mu);
	cancelled_before = g_rec.n_stream_cancelled;
	pthread_mutex_unlock(&g_rec.mu);
	ch = channel(addr);
	stream_req(req, UINT32_MAX, 64);
	assert_int_equal(rpc_stream_open(ch, "/test.T/Stream", req, 8, 0, &st, &err), 0);
	assert_int_equal(rpc_stream_next(st, &msg, &len, &err), 1);
	free(msg);
	rpc_server_stop(s, 50); /* returns once the stream is cancelled and finished */
	assert_true(wait_count(&g_rec.n_stream_cancelled, cancelled_before + 1, WAIT_MS));
	while ((rc = rpc_stream_next(st, &msg, &len, &err)) == 1)
		free(msg);
	assert_int_equal(rc, US_EUNAVAIL);
	rpc_stream_free(st);
	rpc_channel_free(ch);
}

/* ---- TLS ---- */

static char g_tls_dir[64];

static bool run(const char *cmd)
{
	char line[1024];

	snprintf(line, sizeof(line), "cd %s && %s >/dev/null 2>&1", g_tls_dir, cmd);
	return system(line) == 0;
}

static void tls_path(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", g_tls_dir, name);
}

static void test_tls(void **state)
{
	char cert[128], key[128], ca[128], ext[128], addr[64];
	struct rpc_server_opts so = { .listen = "127.0.0.1:0", .threads = 1 };
	struct rpc_channel_opts co = { 0 };
	struct rpc_server *s;
	struct rpc_channel *ch;
	struct us_err err;
	uint8_t *resp;
	size_t len;
	FILE *f;

	(void)state;
	snprintf(g_tls_dir, sizeof(g_tls_dir), "/tmp/us-test-rpc-XXXXXX");
	assert_non_null(mkdtemp(g_tls_dir));
	tls_path(ext, sizeof(ext), "ext.cnf");
	f = fopen(ext, "w");
	assert_non_null(f);
	fputs("subjectAltName=DNS:localhost,IP:127.0.0.1\n", f);
	fclose(f);
	if (!run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		 "-keyout ca.key -out ca.pem -days 2 -subj /CN=us-test-ca") ||
	    !run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		 "-keyout srv.key -out srv.csr -subj /CN=localhost") ||
	    !run("openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
		 "-out srv.pem -days 2 -extfile ext.cnf")) {
		run("rm -f ca.key ca.pem ca.srl srv.key srv.csr srv.pem ext.cnf");
		rmdir(g_tls_dir);
		skip(); /* no openssl command */
	}
	tls_path(cert, sizeof(cert), "srv.pem");
	tls_path(key, sizeof(key), "srv.key");
	tls_path(ca, sizeof(ca), "ca.pem");

	/* a missing file is named */
	so.tls_cert_file = "/nonexistent/cert.pem";
	so.tls_key_file = key;
	assert_int_equal(rpc_server_start(&s, &so, g_methods, N_METHODS, &err), US_ECONFIG);
	assert_non_null(strstr(err.msg, "/nonexistent/cert.pem"));
	so.tls_cert_file = cert;
	so.tls_key_file = ext; /* not PEM */
	assert_int_equal(rpc_server_start(&s, &so, g_methods, N_METHODS, &err), US_ECONFIG);
	assert_non_null(strstr(err.msg, ext));

	so.tls_key_file = key;
	assert_int_equal(rpc_server_start(&s, &so, g_methods, N_METHODS, &err), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", rpc_server_port(s));

	co.tls_ca_file = ca;
	co.token = "tok";
	assert_int_equal(rpc_channel_new(&ch, addr, &co, &err), 0);
	assert_int_equal(rpc_unary(ch, "/test.T/Meta", NULL, 0, 10000, &resp, &len, &err), 0);
	assert_true(len > 18);
	assert_memory_equal(resp, "auth=Bearer tok|", 16);
	free(resp);
	rpc_channel_free(ch);

	/* plaintext to a TLS port fails */
	ch = channel(addr);
	assert_int_equal(rpc_unary(ch, "/test.T/Echo", NULL, 0, 10000, &resp, &len, &err),
			 US_EUNAVAIL);
	rpc_channel_free(ch);

	co.tls_ca_file = "/nonexistent/ca.pem";
	assert_int_equal(rpc_channel_new(&ch, addr, &co, &err), US_ECONFIG);
	assert_non_null(strstr(err.msg, "/nonexistent/ca.pem"));

	rpc_server_stop(s, 1000);
	run("rm -f ca.key ca.pem ca.srl srv.key srv.csr srv.pem ext.cnf");
	rmdir(g_tls_dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unary_echo),
		cmocka_unit_test(test_unary_metadata_and_peer),
		cmocka_unit_test(test_unary_error_message),
		cmocka_unit_test(test_unknown_method),
		cmocka_unit_test(test_request_too_big),
		cmocka_unit_test(test_response_too_big),
		cmocka_unit_test(test_unary_deadline),
		cmocka_unit_test(test_handoff_concurrent),
		cmocka_unit_test(test_stream_1000),
		cmocka_unit_test(test_stream_empty),
		cmocka_unit_test(test_stream_error_after_messages),
		cmocka_unit_test(test_stream_abandoned),
		cmocka_unit_test(test_stream_deadline),
		cmocka_unit_test(test_port_in_use),
		cmocka_unit_test(test_bad_addresses),
		cmocka_unit_test(test_dead_address_fails_fast),
		cmocka_unit_test(test_stop_waits_for_handoff),
		cmocka_unit_test(test_stop_graceful),
		cmocka_unit_test(test_stop_cancels_stream),
		cmocka_unit_test(test_tls),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
