/*
 * rpc.c - gRPC core plumbing (see rpc.h). The only file of the project that
 * touches completion queues (CQs), tags, grpc_call, byte buffers, metadata
 * and channel args.
 *
 * Server
 * ------
 * Threads: N workers "us-rpc-0".."us-rpc-N-1", each blocked in
 * grpc_completion_queue_next on its own CQ. Worker i keeps one generic
 * grpc_server_request_call armed on CQ i (bound CQ = notification CQ = CQ i),
 * so every event of a call arrives on the thread that accepted it.
 *
 * Per call, the plumbing starts these batches (each yields exactly one tag):
 *   new     request_call                              -> t_new
 *   A       {SEND_INITIAL_METADATA, RECV_CLOSE_ON_SERVER} -> t_close; completes
 *           only when the call is over on the wire (cancelled flag: client
 *           gone, deadline, server stop)
 *   R       {RECV_MESSAGE}                            -> t_recv; then the handler
 *   S       {SEND_MESSAGE} (rpc_call_send), one at a time -> t_send; then more()
 *   F       {[SEND_MESSAGE,] SEND_STATUS_FROM_SERVER} (rpc_call_finish) -> t_status
 * Only the worker thread runs completions; rpc_call_send/finish may run on
 * any thread, so every grpc_call_start_batch of a call happens under the
 * call's mutex, which also guards `pending` (started batches whose tag has not
 * been handled yet) and `state`.
 *
 * A bidi call (struct rpc_bidi_method) starts A, then runs on_open; after
 * that the handler drives it from any thread:
 *   R       {RECV_MESSAGE} only when asked (rpc_call_recv_more), at most one
 *           -> t_recv; then on_message, or on_end for none (half-close) or a
 *           failure
 *   S       {SEND_MESSAGE} of the head of the push queue, at most one
 *           -> t_send; the completion starts the next (or the pusher does
 *           when none is in flight), then the deferred status F once the
 *           queue is empty
 *   E       {} (empty batch) -> t_end: only to run on_end on the worker when
 *           the handler finished before on_end and no R is pending (an empty
 *           batch posts its tag at once)
 * on_end runs exactly once, always on the worker, from the first of: R
 * completing without a message, A completing with no R pending, E.
 * is_end_done (under mu, set before the callback runs) keeps it single.
 *
 * Freeing invariant: a call context is freed exactly when pending == 0,
 * state == CALL_FINISHED and is_end_done (always true for a unary call; for
 * a bidi call, on_end has run or never will: on_open refused). A completion
 * handler counts as pending until it has returned (the decrement is its last
 * act), so a handler, more(), on_open, on_message or on_end callback always
 * runs on a live context; rpc_call_finish never touches the context after
 * releasing its mutex (the worker may free it at once). Whenever pending
 * drops to 0 on a live bidi call, A has completed, so on_end has run (A runs
 * it unless an R or E is pending, and those run it in turn).
 *
 * Server accounting: s->n_calls counts live contexts (armed and accepted).
 * rpc_server_stop waits (condition variable, no sleeps) for n_calls == 0 and
 * the shutdown tag, before shutting the CQs down; a CQ then has no pending
 * tag left, so its worker sees GRPC_QUEUE_SHUTDOWN and exits.
 *
 * Lock order: call->mu, then server->mu (call_free takes s->mu after the
 * call's mutex is released; nothing takes call->mu under s->mu).
 *
 * Client
 * ------
 * A channel owns one pluck CQ. Every tag started on it is plucked before the
 * function that started it returns, except a stream's, which rpc_stream_next
 * or rpc_stream_free pluck; so the CQ is empty when the channel is freed.
 *
 * A bidi call owns its own NEXT CQ, polled only by rpc_bidi_wait (and
 * rpc_bidi_free) on the driving thread. Batches on it:
 *   start   {SEND_INITIAL_METADATA, RECV_INITIAL_METADATA}
 *   status  {RECV_STATUS_ON_CLIENT}: completes last (after the transport
 *           has handed out every message)
 *   recv    {RECV_MESSAGE}: always one in flight, re-armed when the wait
 *           that hands the message out returns, so at most one received
 *           message is buffered here and grpc's HTTP/2 flow control holds
 *           the server back beyond that
 *   send    {SEND_MESSAGE}: at most one (rpc_bidi_send)
 *   close   {SEND_CLOSE_FROM_CLIENT}: after the send in flight
 *   wake    {} (empty batch): rpc_bidi_wake, at most one posted at a time
 * Completions become events in a small FIFO (at most one each of MESSAGE,
 * SENT, WOKEN, END can be queued: BIDI_MAX_EVENTS) so that each wait
 * returns one, in order. END is queued once the status has arrived and no
 * batch but a wake is pending, so no MESSAGE or SENT can follow it (a WOKEN
 * queued after END is never returned: waits return END from then on). b->mu
 * serializes every grpc_call_start_batch on the call, because a wake comes
 * from another thread (grpc documents empty batches as thread-compatible
 * only).
 */
#include "rpc.h"

#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

#include "buf.h"
#include "us_limits.h"

/* Keepalive: the client pings an idle connection every 10 s (also with no
 * call open, and without waiting for data), and drops it after 10 s without
 * an answer. The server must accept pings that often (min interval <= client
 * interval), else it answers GOAWAY "too_many_pings" (notes/grpc-core.md §7).
 * The server pings its clients every 30 s to detect dead peers of long
 * streams. */
#define RPC_CLIENT_KEEPALIVE_TIME_MS 10000
#define RPC_CLIENT_KEEPALIVE_TIMEOUT_MS 10000
#define RPC_SERVER_MIN_PING_INTERVAL_MS 5000
#define RPC_SERVER_KEEPALIVE_TIME_MS 30000
#define RPC_SERVER_KEEPALIVE_TIMEOUT_MS 10000

/* Bound on a PEM file (certificate chain, key, CA bundle). */
#define RPC_PEM_MAX_BYTES (1024 * 1024)

/* Bound on worker threads. */
#define RPC_MAX_THREADS 64

/* ------------------------------------------------------------------------ */
/* shared helpers */

static grpc_arg arg_int(const char *key, int value)
{
	grpc_arg a;

	memset(&a, 0, sizeof(a));
	a.type = GRPC_ARG_INTEGER;
	a.key = (char *)key; /* grpc copies the args at create time */
	a.value.integer = value;
	return a;
}

static int clamp_int(size_t v)
{
	return v > (size_t)INT_MAX ? INT_MAX : (int)v;
}

/* Checks HOST:PORT: a non-empty host (a bracketed IPv6 literal allowed) and a
 * decimal port 0..65535. Fills host (NUL-terminated, brackets removed). */
static bool addr_split(const char *addr, char *host, size_t host_size, long *port)
{
	const char *colon, *h = addr, *h_end;
	char *end;

	if (!addr || !*addr)
		return false;
	if (addr[0] == '[') {
		h = addr + 1;
		h_end = strchr(h, ']');
		if (!h_end || h_end[1] != ':')
			return false;
		colon = h_end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
			return false; /* none, or an unbracketed IPv6 literal */
		h_end = colon;
	}
	if (h_end == h || (size_t)(h_end - h) >= host_size)
		return false;
	if (colon[1] < '0' || colon[1] > '9')
		return false;
	errno = 0;
	*port = strtol(colon + 1, &end, 10);
	if (errno || *end || *port < 0 || *port > 65535)
		return false;
	memcpy(host, h, (size_t)(h_end - h));
	host[h_end - h] = '\0';
	return true;
}

/* 0 if host resolves, else a getaddrinfo error code: a name that does not is
 * a bad address (US_EINVAL), which grpc's bind failure would not tell apart
 * from a port in use. Start-up only: a name may need a DNS lookup. */
static int host_check(const char *host)
{
	struct addrinfo hints, *ai = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_PASSIVE;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, NULL, &hints, &ai);
	if (rc == 0)
		freeaddrinfo(ai);
	return rc;
}

/* Reads a PEM file into a new NUL-terminated string (free()). what names the
 * file's role in messages ("tls certificate"). */
static int pem_read(const char *path, const char *what, char **out, struct us_err *err)
{
	struct stat st;
	char *p = NULL;
	size_t len = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, US_ECONFIG, "cannot read %s %s: %s", what, path,
			       strerror(errno));
	if (fstat(fd, &st) != 0) {
		rc = err_set(err, US_ECONFIG, "cannot read %s %s: %s", what, path,
			     strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > RPC_PEM_MAX_BYTES) {
		rc = err_set(err, US_ECONFIG, "cannot read %s %s: not a regular file of at most %d bytes",
			     what, path, RPC_PEM_MAX_BYTES);
		goto out_close;
	}
	p = malloc((size_t)st.st_size + 1);
	if (!p) {
		rc = err_set(err, US_ENOMEM, "cannot read %s %s: out of memory", what, path);
		goto out_close;
	}
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, p + len, (size_t)st.st_size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = err_set(err, US_ECONFIG, "cannot read %s %s: %s", what, path,
				     strerror(errno));
			goto out_free;
		}
		if (n == 0)
			break; /* shrank meanwhile: take what is there */
		len += (size_t)n;
	}
	p[len] = '\0';
	if (!strstr(p, "-----BEGIN ")) {
		rc = err_set(err, US_ECONFIG, "bad %s %s: no PEM block", what, path);
		goto out_free;
	}
	if (close(fd) != 0) {
		fd = -1;
		rc = err_set(err, US_ECONFIG, "cannot read %s %s: %s", what, path,
			     strerror(errno));
		goto out_free;
	}
	*out = p;
	return 0;

out_free:
	free(p);
out_close:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* A new byte buffer holding a copy of p[0..len). */
static grpc_byte_buffer *bb_from(const uint8_t *p, size_t len)
{
	grpc_slice s = grpc_slice_malloc(len);
	grpc_byte_buffer *bb;

	if (len)
		memcpy(GRPC_SLICE_START_PTR(s), p, len);
	bb = grpc_raw_byte_buffer_create(&s, 1); /* takes its own ref */
	grpc_slice_unref(s);
	return bb;
}

/* Copies a received message into a new malloc'd buffer (non-NULL even when
 * empty). The reader decompresses if the peer compressed. */
static int bb_copy_out(grpc_byte_buffer *bb, uint8_t **out, size_t *out_len)
{
	grpc_byte_buffer_reader r;
	struct buf b;
	grpc_slice s;
	int rc = 0;

	buf_init(&b);
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return US_ECORRUPT;
	/* exact size for an uncompressed buffer; grows otherwise */
	if (buf_reserve(&b, grpc_byte_buffer_length(bb)) != 0)
		rc = US_ENOMEM;
	while (grpc_byte_buffer_reader_next(&r, &s)) {
		if (rc == 0 && buf_append(&b, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s)) != 0)
			rc = US_ENOMEM;
		grpc_slice_unref(s);
	}
	grpc_byte_buffer_reader_destroy(&r);
	if (rc == 0 && !b.p && buf_reserve(&b, 1) != 0)
		rc = US_ENOMEM;
	if (rc != 0) {
		buf_release(&b);
		return rc;
	}
	*out = buf_detach(&b, out_len);
	return 0;
}

static void slice_to_str(grpc_slice s, char *out, size_t out_size)
{
	size_t n = GRPC_SLICE_LENGTH(s);

	if (n >= out_size)
		n = out_size - 1;
	memcpy(out, GRPC_SLICE_START_PTR(s), n);
	out[n] = '\0';
}

/* ------------------------------------------------------------------------ */
/* server */

enum tag_kind {
	TAG_NEW,      /* request_call matched a call (or failed: server stopping) */
	TAG_CLOSE,    /* batch A: the call is over on the wire */
	TAG_RECV,     /* batch R: the request message (or none) */
	TAG_SEND,     /* batch S: one streamed message taken by grpc */
	TAG_STATUS,   /* batch F: response and status sent (or the call was dead) */
	TAG_END,      /* batch E (bidi): empty, to run on_end on the worker */
	TAG_SHUTDOWN, /* grpc_server_shutdown_and_notify completed */
};

struct tag {
	enum tag_kind kind;
	struct rpc_call *call; /* NULL for TAG_SHUTDOWN */
};

/*
 * Call states; transitions (under call->mu except ARMED -> READING, which
 * happens before anyone else knows the call):
 *   CALL_ARMED   -> CALL_READING  (t_new, success; A and R started)
 *   CALL_ARMED   -> CALL_OPEN     (t_new, success, bidi method; A started)
 *   CALL_ARMED   -> freed         (t_new, failure: server shut down)
 *   CALL_READING -> CALL_OPEN     (t_recv with a message: the handler runs)
 *   CALL_READING -> CALL_FINISHED (unknown method, no message, dead call)
 *   CALL_OPEN    -> CALL_FINISHED (rpc_call_finish)
 *   CALL_OPEN    -> CALL_FINISHING (bidi: rpc_call_finish with pushes unsent)
 *   CALL_FINISHING -> CALL_FINISHED (the queue drained, or the call died)
 *   CALL_FINISHED -> freed        (pending == 0 and is_end_done)
 */
enum call_state {
	CALL_ARMED,     /* request_call outstanding, no grpc_call yet */
	CALL_READING,   /* accepted; waiting for the request message */
	CALL_OPEN,      /* the handler or its delegate owns it; sends allowed */
	CALL_FINISHING, /* bidi: finished by the handler, status waits for the queue */
	CALL_FINISHED,  /* status batch started (or nothing left to send) */
};

/* A message queued by rpc_call_push. */
struct push {
	struct push *next;
	grpc_byte_buffer *bb;
	size_t len;
};

struct worker {
	struct rpc_server *s;
	int idx;
	grpc_completion_queue *cq; /* NEXT queue, polled only by this worker */
	pthread_t thread;
	bool is_running;           /* thread created (written by the starter) */
};

struct rpc_server {
	grpc_server *srv;
	struct worker *workers;
	int n_workers;
	struct rpc_method *methods; /* copies; paths strdup'd */
	size_t n_methods;
	struct rpc_bidi_method *bidi; /* copies; paths strdup'd */
	size_t n_bidi;
	int port;
	char *listen;
	struct tag t_shutdown;

	pthread_mutex_t mu;        /* guards the fields below */
	pthread_cond_t cv;         /* n_calls reached 0 or the shutdown tag came */
	size_t n_calls;            /* live call contexts; workers and finishers */
	bool is_shutting_down;     /* shutdown_and_notify called; no more arming */
	bool is_shutdown_done;     /* t_shutdown arrived (worker 0 writes) */
};

struct rpc_call {
	struct rpc_server *s;
	struct worker *w;
	const struct rpc_method *method; /* NULL: unknown (or bidi) */
	const struct rpc_bidi_method *bidi; /* NULL: not a bidi call */
	grpc_call *call;
	grpc_call_details details;
	grpc_metadata_array md;          /* request metadata, read-only once accepted */
	struct tag t_new, t_close, t_recv, t_send, t_status, t_end;
	int close_cancelled;             /* out-param of RECV_CLOSE_ON_SERVER */
	grpc_byte_buffer *recv_bb;       /* out-param of RECV_MESSAGE */
	atomic_bool is_cancelled;        /* dead on the wire (close, a failed send or recv) */
	void *bidi_ctx;                  /* on_open's result; written on the worker
					  * before any other callback can run */

	pthread_mutex_t mu;              /* serializes start_batch; guards below */
	enum call_state state;
	int pending;                     /* batches started, tag not yet handled */
	bool is_send_pending;            /* batch S in flight */
	grpc_byte_buffer *send_bb;       /* batch S's message */
	rpc_more_fn more;
	void *more_arg;
	grpc_byte_buffer *resp_bb;       /* batch F's message */
	grpc_slice status_details;       /* batch F's details; alive until freed */
	bool has_status_details;
	char *peer;                      /* gpr_malloc'd by grpc_call_get_peer */
	/* bidi only */
	bool is_recv_pending;            /* batch R in flight */
	bool is_end_posted;              /* batch E in flight */
	bool is_end_done;                /* on_end ran or never will; true for unary */
	struct push *q_head, *q_tail;    /* pushed, not yet started */
	size_t q_bytes;                  /* queued + in flight (rpc_call_queued_bytes) */
	size_t send_len;                 /* batch S's message length */
	int finish_code;                 /* CALL_FINISHING: the status to send */
};

static void tag_set(struct tag *t, enum tag_kind kind, struct rpc_call *c)
{
	t->kind = kind;
	t->call = c;
}

static void push_list_free(struct push *p)
{
	while (p) {
		struct push *next = p->next;

		grpc_byte_buffer_destroy(p->bb);
		free(p);
		p = next;
	}
}

/* Frees the context's own resources; no server accounting. */
static void call_destroy(struct rpc_call *c)
{
	if (c->call)
		grpc_call_unref(c->call);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->md);
	if (c->recv_bb)
		grpc_byte_buffer_destroy(c->recv_bb);
	if (c->send_bb)
		grpc_byte_buffer_destroy(c->send_bb);
	if (c->resp_bb)
		grpc_byte_buffer_destroy(c->resp_bb);
	if (c->has_status_details)
		grpc_slice_unref(c->status_details);
	push_list_free(c->q_head);
	gpr_free(c->peer);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* Frees a counted context (s->n_calls). */
static void call_free(struct rpc_call *c)
{
	struct rpc_server *s = c->s;

	call_destroy(c);
	pthread_mutex_lock(&s->mu);
	assert(s->n_calls > 0);
	if (--s->n_calls == 0)
		pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* Starts a batch under the call's mutex (held by the caller) and counts it. */
static grpc_call_error call_start_locked(struct rpc_call *c, const grpc_op *ops, size_t n,
					 struct tag *t)
{
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);

	if (e == GRPC_CALL_OK)
		c->pending++;
	return e;
}

/* The freeing invariant (see the top of the file). */
static bool call_is_done_locked(const struct rpc_call *c)
{
	return c->pending == 0 && c->state == CALL_FINISHED && c->is_end_done;
}

/* A completion handler's last act: drops its batch and frees the context if
 * that was the last one of a finished call. */
static void call_unpin(struct rpc_call *c)
{
	bool is_free;

	pthread_mutex_lock(&c->mu);
	assert(c->pending > 0);
	c->pending--;
	is_free = call_is_done_locked(c);
	pthread_mutex_unlock(&c->mu);
	if (is_free)
		call_free(c);
}

/* Arms a new generic request on w's CQ. Not after shutdown_and_notify: both
 * happen under s->mu. */
static int worker_arm(struct worker *w)
{
	struct rpc_server *s = w->s;
	struct rpc_call *c;
	grpc_call_error e;

	c = calloc(1, sizeof(*c));
	if (!c)
		return US_ENOMEM;
	c->s = s;
	c->w = w;
	c->state = CALL_ARMED;
	c->is_end_done = true; /* until it turns out to be a bidi call */
	atomic_init(&c->is_cancelled, false);
	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->md);
	tag_set(&c->t_new, TAG_NEW, c);
	tag_set(&c->t_close, TAG_CLOSE, c);
	tag_set(&c->t_recv, TAG_RECV, c);
	tag_set(&c->t_send, TAG_SEND, c);
	tag_set(&c->t_status, TAG_STATUS, c);
	tag_set(&c->t_end, TAG_END, c);
	if (pthread_mutex_init(&c->mu, NULL) != 0) {
		grpc_call_details_destroy(&c->details);
		grpc_metadata_array_destroy(&c->md);
		free(c);
		return US_ENOMEM;
	}

	pthread_mutex_lock(&s->mu);
	if (s->is_shutting_down) {
		pthread_mutex_unlock(&s->mu);
		call_destroy(c);
		return 0;
	}
	s->n_calls++;
	e = grpc_server_request_call(s->srv, &c->call, &c->details, &c->md, w->cq, w->cq,
				     &c->t_new);
	pthread_mutex_unlock(&s->mu);
	if (e != GRPC_CALL_OK) {
		call_free(c);
		return US_EIO;
	}
	return 0;
}

/* Starts batch F with c->status_details (set by the caller) and the response
 * bb (may be NULL; owned by the context from here on). Called with c->mu
 * held. */
static void call_status_start_locked(struct rpc_call *c, int code, grpc_byte_buffer *resp_bb)
{
	grpc_op ops[2];
	size_t n = 0;

	assert(c->has_status_details);
	c->state = CALL_FINISHED;
	c->resp_bb = resp_bb;
	memset(ops, 0, sizeof(ops));
	if (resp_bb) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = resp_bb;
		n++;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = (grpc_status_code)err_to_grpc_status(code);
	ops[n].data.send_status_from_server.status_details = &c->status_details;
	ops[n].data.send_status_from_server.trailing_metadata_count = 0;
	n++;
	/* A failure here (a send still in flight: contract violation) leaves
	 * the call without a status; cancel it so that the client learns. */
	if (call_start_locked(c, ops, n, &c->t_status) != GRPC_CALL_OK)
		grpc_call_cancel(c->call, NULL);
}

/* Starts batch F. The response bb and details slice are built by the caller
 * and owned by the context from here on. Called with c->mu held. Returns
 * whether the context must be freed now (nothing pending). */
static bool call_finish_locked(struct rpc_call *c, int code, grpc_slice details,
			       grpc_byte_buffer *resp_bb)
{
	assert(c->state == CALL_READING || c->state == CALL_OPEN);
	c->status_details = details;
	c->has_status_details = true;
	call_status_start_locked(c, code, resp_bb);
	return call_is_done_locked(c);
}

/* Finish from the plumbing itself, on the worker (unknown method, no request). */
static void call_finish_internal(struct rpc_call *c, int code, const char *msg)
{
	grpc_slice details = grpc_slice_from_copied_string(msg);
	bool is_free;

	pthread_mutex_lock(&c->mu);
	is_free = call_finish_locked(c, code, details, NULL);
	pthread_mutex_unlock(&c->mu);
	if (is_free)
		call_free(c);
}

static const struct rpc_method *method_find(const struct rpc_server *s, grpc_slice path)
{
	for (size_t i = 0; i < s->n_methods; i++)
		if (grpc_slice_str_cmp(path, s->methods[i].path) == 0)
			return &s->methods[i];
	return NULL;
}

static const struct rpc_bidi_method *bidi_find(const struct rpc_server *s, grpc_slice path)
{
	for (size_t i = 0; i < s->n_bidi; i++)
		if (grpc_slice_str_cmp(path, s->bidi[i].path) == 0)
			return &s->bidi[i];
	return NULL;
}

static void bidi_open(struct rpc_call *c);

static void on_new(struct worker *w, struct rpc_call *c, bool ok)
{
	grpc_op ops[2];
	grpc_call_error e;
	char msg[US_ERR_MSG_MAX];

	if (!ok) {
		/* server shutting down: the request comes back unmatched */
		call_free(c);
		return;
	}
	/* re-arm first, so that the next call does not wait for this one */
	(void)worker_arm(w);

	/* a bidi method wins over a unary one of the same path */
	c->bidi = bidi_find(c->s, c->details.method);
	if (!c->bidi)
		c->method = method_find(c->s, c->details.method);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = 0;
	ops[1].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[1].data.recv_close_on_server.cancelled = &c->close_cancelled;

	pthread_mutex_lock(&c->mu);
	c->state = CALL_READING;
	e = call_start_locked(c, ops, 2, &c->t_close);
	if (e == GRPC_CALL_OK && c->bidi) {
		c->state = CALL_OPEN;
		c->is_end_done = false;
		c->pending++; /* pins the context while on_open runs */
	} else if (e == GRPC_CALL_OK && c->method) {
		memset(ops, 0, sizeof(ops));
		ops[0].op = GRPC_OP_RECV_MESSAGE;
		ops[0].data.recv_message.recv_message = &c->recv_bb;
		e = call_start_locked(c, ops, 1, &c->t_recv);
	}
	pthread_mutex_unlock(&c->mu);

	if (e != GRPC_CALL_OK) {
		snprintf(msg, sizeof(msg), "cannot start call: grpc call error %d", (int)e);
		call_finish_internal(c, US_EIO, msg);
	} else if (c->bidi) {
		bidi_open(c);
		call_unpin(c);
	} else if (!c->method) {
		snprintf(msg, sizeof(msg), "unknown method %.*s",
			 (int)GRPC_SLICE_LENGTH(c->details.method),
			 (const char *)GRPC_SLICE_START_PTR(c->details.method));
		call_finish_internal(c, US_EUNIMPL, msg);
	}
}

static void on_recv(struct rpc_call *c, bool ok)
{
	grpc_byte_buffer *bb = c->recv_bb;
	grpc_byte_buffer_reader r;
	grpc_slice req;

	c->recv_bb = NULL;
	if (!ok || !bb) {
		if (bb)
			grpc_byte_buffer_destroy(bb);
		/* !ok: the call died (cancelled, deadline, over the size limit:
		 * grpc has sent its own status, ours is a no-op) */
		call_finish_internal(c, ok ? US_EINVAL : US_ECANCELLED,
				     ok ? "missing request message"
					: "call ended before its request arrived");
		return;
	}
	if (!grpc_byte_buffer_reader_init(&r, bb)) {
		grpc_byte_buffer_destroy(bb);
		call_finish_internal(c, US_EINVAL, "cannot decompress request message");
		return;
	}
	/* one slice: a reference when the message is one slice, else a copy */
	req = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	grpc_byte_buffer_destroy(bb);

	pthread_mutex_lock(&c->mu);
	assert(c->state == CALL_READING);
	c->state = CALL_OPEN;
	pthread_mutex_unlock(&c->mu);
	c->method->fn(c, GRPC_SLICE_START_PTR(req), GRPC_SLICE_LENGTH(req), c->method->arg);
	grpc_slice_unref(req);
}

static void on_send(struct rpc_call *c, bool ok)
{
	grpc_byte_buffer *bb;
	rpc_more_fn more;
	void *arg;

	pthread_mutex_lock(&c->mu);
	bb = c->send_bb;
	c->send_bb = NULL;
	c->is_send_pending = false;
	more = c->more;
	arg = c->more_arg;
	pthread_mutex_unlock(&c->mu);
	grpc_byte_buffer_destroy(bb);
	if (!ok)
		atomic_store(&c->is_cancelled, true);
	if (more)
		more(c, arg);
}

/* ---- bidi calls (server) ---- */

static void bidi_open(struct rpc_call *c)
{
	void *ctx = c->bidi->on_open(c, c->bidi->arg);
	bool is_unfinished;

	pthread_mutex_lock(&c->mu);
	c->bidi_ctx = ctx;
	if (!ctx)
		c->is_end_done = true; /* refused: on_end never runs */
	is_unfinished = !ctx && c->state == CALL_OPEN;
	pthread_mutex_unlock(&c->mu);
	/* a refusal must have finished the call; do not leave the client hanging */
	if (is_unfinished)
		rpc_call_finish(c, US_EIO, "stream refused by the server without a status", NULL,
				0);
}

/* Takes every queued (not started) push out of the queue. */
static struct push *bidi_queue_take_locked(struct rpc_call *c)
{
	struct push *p = c->q_head;

	for (struct push *i = p; i; i = i->next)
		c->q_bytes -= i->len;
	c->q_head = NULL;
	c->q_tail = NULL;
	return p;
}

/* Starts batch S with the head of the queue (not empty, no S in flight). On
 * failure the message is dropped and US_EIO returned. */
static int bidi_send_next_locked(struct rpc_call *c)
{
	struct push *p = c->q_head;
	grpc_op op;

	assert(p && !c->is_send_pending);
	c->q_head = p->next;
	if (!c->q_head)
		c->q_tail = NULL;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = p->bb;
	if (call_start_locked(c, &op, 1, &c->t_send) != GRPC_CALL_OK) {
		c->q_bytes -= p->len;
		grpc_byte_buffer_destroy(p->bb);
		free(p);
		return US_EIO;
	}
	c->send_bb = p->bb;
	c->send_len = p->len;
	c->is_send_pending = true;
	free(p);
	return 0;
}

/* The call cannot go on (grpc refused a batch): cancel it; its batches
 * complete and on_end follows. Returns the dropped queue. */
static struct push *bidi_abort_locked(struct rpc_call *c)
{
	atomic_store(&c->is_cancelled, true);
	grpc_call_cancel(c->call, NULL);
	return bidi_queue_take_locked(c);
}

/* Makes sure on_end will run when nothing else would run it soon: no R is
 * pending (its completion would). Posts batch E. If even that fails, A's
 * completion runs it when the call is over. */
static void bidi_post_end_locked(struct rpc_call *c)
{
	if (c->is_end_done || c->is_recv_pending || c->is_end_posted)
		return;
	if (call_start_locked(c, NULL, 0, &c->t_end) == GRPC_CALL_OK)
		c->is_end_posted = true;
}

static void bidi_run_end(struct rpc_call *c, bool is_cancelled)
{
	c->bidi->on_end(c, c->bidi_ctx, is_cancelled);
}

/* Batch R completed: a message for on_message, or the end of reading. */
static void bidi_on_recv(struct rpc_call *c, bool ok)
{
	grpc_byte_buffer *bb;
	grpc_byte_buffer_reader r;
	grpc_slice msg;
	bool is_deliver, is_end = false, is_dead = false, is_cancelled = true;

	pthread_mutex_lock(&c->mu);
	bb = c->recv_bb;
	c->recv_bb = NULL;
	c->is_recv_pending = false;
	is_deliver = ok && bb && c->state == CALL_OPEN && !c->is_end_done;
	if (!is_deliver) {
		/* No message: a clean half-close, unless grpc says the call
		 * failed. Seen with grpc 1.51: a client cancel, a deadline and
		 * a server stop complete a pending R with success and no
		 * message, before A reports the cancel; only
		 * grpc_call_failed_before_recv_message tells them from a
		 * half-close. A message after the handler finished is
		 * dropped. */
		is_dead = !ok || atomic_load(&c->is_cancelled) ||
			  (!bb && grpc_call_failed_before_recv_message(c->call));
		is_cancelled = is_dead || bb != NULL || c->state != CALL_OPEN;
		is_end = !c->is_end_done;
		c->is_end_done = true;
	}
	pthread_mutex_unlock(&c->mu);

	if (is_deliver) {
		if (grpc_byte_buffer_reader_init(&r, bb)) {
			/* one slice: a reference when the message is one slice, else a copy */
			msg = grpc_byte_buffer_reader_readall(&r);
			grpc_byte_buffer_reader_destroy(&r);
			grpc_byte_buffer_destroy(bb);
			c->bidi->on_message(c, c->bidi_ctx, GRPC_SLICE_START_PTR(msg),
					    GRPC_SLICE_LENGTH(msg));
			grpc_slice_unref(msg);
			return;
		}
		/* a compressed message grpc cannot inflate: end the call */
		grpc_call_cancel_with_status(c->call, GRPC_STATUS_INVALID_ARGUMENT,
					     "cannot decompress message", NULL);
		pthread_mutex_lock(&c->mu);
		is_end = !c->is_end_done;
		c->is_end_done = true;
		pthread_mutex_unlock(&c->mu);
		is_dead = true;
		is_cancelled = true;
	}
	if (bb)
		grpc_byte_buffer_destroy(bb);
	if (is_dead)
		atomic_store(&c->is_cancelled, true);
	if (is_end)
		bidi_run_end(c, is_cancelled);
}

/* Batch A completed: the call is over on the wire. The handler must learn
 * it even when it is not reading. */
static void bidi_on_close(struct rpc_call *c)
{
	bool is_end;

	pthread_mutex_lock(&c->mu);
	is_end = !c->is_end_done && !c->is_recv_pending && !c->is_end_posted;
	if (is_end)
		c->is_end_done = true;
	pthread_mutex_unlock(&c->mu);
	/* not cancelled on the wire means the status went out: the handler
	 * finished first, which counts as cancelled for on_end */
	if (is_end)
		bidi_run_end(c, true);
}

/* Batch E: the handler finished before on_end. */
static void bidi_on_end_tag(struct rpc_call *c)
{
	bool is_end;

	pthread_mutex_lock(&c->mu);
	c->is_end_posted = false;
	is_end = !c->is_end_done;
	c->is_end_done = true;
	pthread_mutex_unlock(&c->mu);
	if (is_end)
		bidi_run_end(c, true);
}

/* Batch S completed: start the next push, or the deferred status. */
static void bidi_on_send(struct rpc_call *c, bool ok)
{
	struct push *dropped = NULL;
	grpc_byte_buffer *bb;

	pthread_mutex_lock(&c->mu);
	bb = c->send_bb;
	c->send_bb = NULL;
	c->is_send_pending = false;
	c->q_bytes -= c->send_len;
	c->send_len = 0;
	if (!ok)
		atomic_store(&c->is_cancelled, true);
	if (atomic_load(&c->is_cancelled))
		dropped = bidi_queue_take_locked(c); /* nobody will read them */
	else if (c->q_head && bidi_send_next_locked(c) != 0)
		dropped = bidi_abort_locked(c);
	if (c->state == CALL_FINISHING && !c->is_send_pending)
		call_status_start_locked(c, c->finish_code, NULL);
	pthread_mutex_unlock(&c->mu);
	grpc_byte_buffer_destroy(bb);
	push_list_free(dropped);
}

/* rpc_call_finish of a bidi call (the response, if any, already pushed).
 * While alive, the queue is empty unless a send is in flight (a push starts
 * at once when none is), so the status waits for that send's completion. */
static bool bidi_finish_locked(struct rpc_call *c, int code, grpc_slice details,
			       struct push **dropped)
{
	assert(c->state == CALL_OPEN);
	c->status_details = details;
	c->has_status_details = true;
	if (c->is_send_pending && !atomic_load(&c->is_cancelled)) {
		c->state = CALL_FINISHING;
		c->finish_code = code;
	} else {
		/* a dead call: drop what is queued, the status is a no-op */
		*dropped = bidi_queue_take_locked(c);
		call_status_start_locked(c, code, NULL);
	}
	bidi_post_end_locked(c); /* reading stops; on_end still runs once */
	return call_is_done_locked(c);
}

int rpc_call_recv_more(struct rpc_call *call)
{
	grpc_op op;
	int rc = 0;

	pthread_mutex_lock(&call->mu);
	if (!call->bidi || call->state != CALL_OPEN) {
		rc = US_EINVAL;
	} else if (!call->is_recv_pending && !call->is_end_done && !call->is_end_posted) {
		memset(&op, 0, sizeof(op));
		op.op = GRPC_OP_RECV_MESSAGE;
		op.data.recv_message.recv_message = &call->recv_bb;
		if (call_start_locked(call, &op, 1, &call->t_recv) == GRPC_CALL_OK) {
			call->is_recv_pending = true;
		} else {
			/* cannot happen with one R at most; end the call */
			push_list_free(bidi_abort_locked(call));
			bidi_post_end_locked(call);
			rc = US_EIO;
		}
	}
	pthread_mutex_unlock(&call->mu);
	return rc;
}

int rpc_call_push(struct rpc_call *call, const uint8_t *msg, size_t len)
{
	struct push *p, *dropped = NULL;
	int rc = 0;

	p = malloc(sizeof(*p));
	if (!p)
		return US_ENOMEM;
	p->next = NULL;
	p->bb = bb_from(msg, len);
	p->len = len;

	pthread_mutex_lock(&call->mu);
	if (!call->bidi || call->state != CALL_OPEN)
		rc = US_EINVAL;
	else if (atomic_load(&call->is_cancelled))
		rc = US_EUNAVAIL;
	if (rc) {
		pthread_mutex_unlock(&call->mu);
		push_list_free(p);
		return rc;
	}
	if (call->q_tail)
		call->q_tail->next = p;
	else
		call->q_head = p;
	call->q_tail = p;
	call->q_bytes += len;
	if (!call->is_send_pending && bidi_send_next_locked(call) != 0) {
		dropped = bidi_abort_locked(call);
		rc = US_EUNAVAIL;
	}
	pthread_mutex_unlock(&call->mu);
	push_list_free(dropped);
	return rc;
}

size_t rpc_call_queued_bytes(struct rpc_call *call)
{
	size_t n;

	pthread_mutex_lock(&call->mu);
	n = call->q_bytes;
	pthread_mutex_unlock(&call->mu);
	return n;
}

static void worker_handle(struct worker *w, struct tag *t, bool ok)
{
	struct rpc_server *s = w->s;
	struct rpc_call *c = t->call;

	switch (t->kind) {
	case TAG_SHUTDOWN:
		pthread_mutex_lock(&s->mu);
		s->is_shutdown_done = true;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
		return;
	case TAG_NEW:
		on_new(w, c, ok);
		return; /* not a counted batch */
	case TAG_CLOSE:
		if (c->close_cancelled)
			atomic_store(&c->is_cancelled, true);
		if (c->bidi)
			bidi_on_close(c);
		break;
	case TAG_RECV:
		if (c->bidi)
			bidi_on_recv(c, ok);
		else
			on_recv(c, ok);
		break;
	case TAG_SEND:
		if (c->bidi)
			bidi_on_send(c, ok);
		else
			on_send(c, ok);
		break;
	case TAG_END:
		bidi_on_end_tag(c);
		break;
	case TAG_STATUS:
		break;
	}
	call_unpin(c);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "us-rpc-%d", w->idx);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(
			w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE)
			worker_handle(w, ev.tag, ev.success != 0);
	}
	return NULL;
}

/* Shuts down the CQs of running workers, joins them, destroys the grpc
 * server (if any) and every CQ, frees s. */
static void server_free(struct rpc_server *s)
{
	for (int i = 0; i < s->n_workers; i++)
		if (s->workers[i].is_running)
			grpc_completion_queue_shutdown(s->workers[i].cq);
	for (int i = 0; i < s->n_workers; i++)
		if (s->workers[i].is_running)
			pthread_join(s->workers[i].thread, NULL);
	if (s->srv)
		grpc_server_destroy(s->srv);
	for (int i = 0; i < s->n_workers; i++) {
		struct worker *w = &s->workers[i];

		if (!w->cq)
			continue;
		if (!w->is_running) {
			/* never polled: drain here (nothing was started on it) */
			grpc_completion_queue_shutdown(w->cq);
			while (grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
							  NULL).type != GRPC_QUEUE_SHUTDOWN)
				;
		}
		grpc_completion_queue_destroy(w->cq);
	}
	for (size_t i = 0; i < s->n_methods; i++)
		free((char *)s->methods[i].path);
	free(s->methods);
	for (size_t i = 0; i < s->n_bidi; i++)
		free((char *)s->bidi[i].path);
	free(s->bidi);
	free(s->workers);
	free(s->listen);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static bool server_is_idle_locked(const struct rpc_server *s)
{
	return s->is_shutdown_done && s->n_calls == 0;
}

int rpc_server_start(struct rpc_server **out, const struct rpc_server_opts *opts,
		     const struct rpc_method *methods, size_t n_methods, struct us_err *err)
{
	struct rpc_server *s;
	pthread_condattr_t ca;
	char host[US_ADDR_MAX_LEN + 1];
	long port;
	char *cert = NULL, *key = NULL;
	grpc_server_credentials *creds;
	grpc_arg args[8];
	grpc_channel_args cargs;
	size_t n_args = 0;
	int rc;

	*out = NULL;
	if (!opts || !addr_split(opts->listen, host, sizeof(host), &port))
		return err_set(err, US_EINVAL, "bad listen address %s: expected HOST:PORT",
			       opts && opts->listen ? opts->listen : "(none)");
	if (opts->threads < 1 || opts->threads > RPC_MAX_THREADS)
		return err_set(err, US_EINVAL, "bad rpc thread count %d: expected 1 to %d",
			       opts->threads, RPC_MAX_THREADS);
	rc = host_check(host);
	if (rc != 0)
		return err_set(err, US_EINVAL, "bad listen address %s: %s", opts->listen,
			       gai_strerror(rc));
	if (!opts->tls_cert_file != !opts->tls_key_file)
		return err_set(err, US_EINVAL, "cannot listen on %s: tls needs both a certificate and a key file",
			       opts->listen);
	for (size_t i = 0; i < n_methods; i++)
		if (!methods[i].path || methods[i].path[0] != '/' || !methods[i].fn)
			return err_set(err, US_EINVAL, "bad rpc method %zu: needs a /package.Service/Method path and a handler",
				       i);
	if (opts->n_bidi && !opts->bidi)
		return err_set(err, US_EINVAL, "bad rpc bidi methods: n_bidi is %zu but no array is given",
			       opts->n_bidi);
	for (size_t i = 0; i < opts->n_bidi; i++) {
		const struct rpc_bidi_method *b = &opts->bidi[i];

		if (!b->path || b->path[0] != '/' || !b->on_open || !b->on_message || !b->on_end)
			return err_set(err, US_EINVAL, "bad rpc bidi method %zu: needs a /package.Service/Method path and three handlers",
				       i);
	}
	if (opts->tls_cert_file) {
		rc = pem_read(opts->tls_cert_file, "tls certificate", &cert, err);
		if (rc)
			return rc;
		rc = pem_read(opts->tls_key_file, "tls key", &key, err);
		if (rc)
			goto out_pem;
	}

	rc = err_set(err, US_ENOMEM, "cannot start rpc server on %s: out of memory", opts->listen);
	s = calloc(1, sizeof(*s));
	if (!s)
		goto out_pem;
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		free(s);
		goto out_pem;
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&s->cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		pthread_mutex_destroy(&s->mu);
		free(s);
		goto out_pem;
	}
	pthread_condattr_destroy(&ca);
	tag_set(&s->t_shutdown, TAG_SHUTDOWN, NULL);
	s->listen = strdup(opts->listen);
	s->workers = calloc((size_t)opts->threads, sizeof(*s->workers));
	s->methods = calloc(n_methods ? n_methods : 1, sizeof(*s->methods));
	s->bidi = calloc(opts->n_bidi ? opts->n_bidi : 1, sizeof(*s->bidi));
	if (!s->listen || !s->workers || !s->methods || !s->bidi)
		goto out_server;
	s->n_workers = opts->threads;
	for (size_t i = 0; i < n_methods; i++) {
		s->methods[i] = methods[i];
		s->methods[i].path = strdup(methods[i].path);
		if (!s->methods[i].path)
			goto out_server;
		s->n_methods++;
	}
	for (size_t i = 0; i < opts->n_bidi; i++) {
		s->bidi[i] = opts->bidi[i];
		s->bidi[i].path = strdup(opts->bidi[i].path);
		if (!s->bidi[i].path)
			goto out_server;
		s->n_bidi++;
	}

	args[n_args++] = arg_int(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
				 clamp_int(opts->max_message_bytes ? opts->max_message_bytes
								   : US_RPC_MAX_MESSAGE_BYTES));
	args[n_args++] = arg_int(GRPC_ARG_ALLOW_REUSEPORT, 0);
	args[n_args++] = arg_int(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
				 RPC_SERVER_MIN_PING_INTERVAL_MS);
	args[n_args++] = arg_int(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
	args[n_args++] = arg_int(GRPC_ARG_KEEPALIVE_TIME_MS, RPC_SERVER_KEEPALIVE_TIME_MS);
	args[n_args++] = arg_int(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, RPC_SERVER_KEEPALIVE_TIMEOUT_MS);
	/* bounds how far a stream's sends run ahead of the reader (notes §8) */
	args[n_args++] = arg_int(GRPC_ARG_HTTP2_BDP_PROBE, 0);
	cargs.num_args = n_args;
	cargs.args = args;
	s->srv = grpc_server_create(&cargs, NULL);

	for (int i = 0; i < s->n_workers; i++) {
		struct worker *w = &s->workers[i];

		w->s = s;
		w->idx = i;
		w->cq = grpc_completion_queue_create_for_next(NULL);
		grpc_server_register_completion_queue(s->srv, w->cq, NULL);
	}
	/* Workers start before the port is bound, so that a failure from here
	 * on unwinds with nothing listening and no call possible. */
	for (int i = 0; i < s->n_workers; i++) {
		struct worker *w = &s->workers[i];

		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			rc = err_set(err, US_ENOMEM, "cannot start rpc server on %s: cannot create thread",
				     opts->listen);
			goto out_server;
		}
		w->is_running = true;
	}

	if (cert) {
		grpc_ssl_pem_key_cert_pair pair = { key, cert };

		creds = grpc_ssl_server_credentials_create_ex(
			NULL, &pair, 1, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, NULL);
	} else {
		creds = grpc_insecure_server_credentials_create();
	}
	s->port = grpc_server_add_http2_port(s->srv, opts->listen, creds);
	grpc_server_credentials_release(creds);
	if (s->port == 0) {
		rc = err_set(err, US_EUNAVAIL, cert
			     ? "cannot listen on %s: address in use or not available, or tls certificate/key not usable"
			     : "cannot listen on %s: address in use or not available",
			     opts->listen);
		goto out_server;
	}
	grpc_server_start(s->srv);
	for (int i = 0; i < s->n_workers; i++) {
		rc = worker_arm(&s->workers[i]);
		if (rc) {
			rpc_server_stop(s, 0);
			s = NULL;
			rc = err_set(err, rc, "cannot start rpc server on %s: cannot accept calls",
				     opts->listen);
			goto out_pem;
		}
	}
	free(cert);
	free(key);
	err_clear(err);
	*out = s;
	return 0;

out_server:
	/* no port bound (so grpc_server_destroy needs no shutdown), not
	 * started: no call exists, nothing is pending on any CQ */
	server_free(s);
out_pem:
	free(cert);
	free(key);
	return rc;
}

int rpc_server_port(const struct rpc_server *s)
{
	return s->port;
}

void rpc_server_stop(struct rpc_server *s, int grace_ms)
{
	struct timespec deadline;
	bool is_idle;

	if (!s)
		return;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	if (grace_ms > 0) {
		deadline.tv_sec += grace_ms / 1000;
		deadline.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
	}

	pthread_mutex_lock(&s->mu);
	/* under s->mu: no worker arms a request after this */
	s->is_shutting_down = true;
	grpc_server_shutdown_and_notify(s->srv, s->workers[0].cq, &s->t_shutdown);
	while (!server_is_idle_locked(s)) {
		if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT)
			break;
	}
	is_idle = server_is_idle_locked(s);
	pthread_mutex_unlock(&s->mu);

	if (!is_idle) {
		/* Ends every call on the wire; its batches complete, but a call
		 * handed off is freed only when its holder calls finish. */
		grpc_server_cancel_all_calls(s->srv);
		pthread_mutex_lock(&s->mu);
		while (!server_is_idle_locked(s))
			pthread_cond_wait(&s->cv, &s->mu);
		pthread_mutex_unlock(&s->mu);
	}
	/* every tag has been handled: each CQ is empty */
	server_free(s);
}

void rpc_call_finish(struct rpc_call *call, int code, const char *msg, const uint8_t *resp,
		     size_t resp_len)
{
	struct push *dropped = NULL;
	grpc_byte_buffer *bb = NULL;
	grpc_slice details;
	bool is_free;

	if (call->bidi && resp) {
		/* the last message: after those pushed before (dead call: dropped) */
		(void)rpc_call_push(call, resp, resp_len);
		resp = NULL;
	}
	if (!msg || (!*msg && code != 0))
		msg = code ? us_strerror(code) : "";
	details = grpc_slice_from_copied_string(msg);
	if (resp) /* a message, maybe empty; NULL: none (error, end of a stream) */
		bb = bb_from(resp, resp_len);

	pthread_mutex_lock(&call->mu);
	if (call->state == CALL_FINISHED || call->state == CALL_FINISHING) {
		/* finished twice: contract violation; keep the first */
		assert(!"rpc_call_finish called twice");
		pthread_mutex_unlock(&call->mu);
		grpc_slice_unref(details);
		if (bb)
			grpc_byte_buffer_destroy(bb);
		return;
	}
	if (call->bidi)
		is_free = bidi_finish_locked(call, code, details, &dropped);
	else
		is_free = call_finish_locked(call, code, details, bb);
	pthread_mutex_unlock(&call->mu);
	push_list_free(dropped);
	/* the context may be gone from here (worker completions) */
	if (is_free)
		call_free(call);
}

void rpc_call_finish_err(struct rpc_call *call, const struct us_err *err)
{
	if (!err)
		rpc_call_finish(call, US_EIO, NULL, NULL, 0);
	else
		rpc_call_finish(call, err->code, err->msg, NULL, 0);
}

int rpc_call_send(struct rpc_call *call, const uint8_t *msg, size_t len, rpc_more_fn more,
		  void *arg)
{
	grpc_byte_buffer *bb = bb_from(msg, len);
	grpc_op op;
	grpc_call_error e;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = bb;

	pthread_mutex_lock(&call->mu);
	if (call->state != CALL_OPEN || call->is_send_pending || call->bidi) {
		assert(!"rpc_call_send on a finished or bidi call or with a send in flight");
		pthread_mutex_unlock(&call->mu);
		grpc_byte_buffer_destroy(bb);
		return US_EINVAL;
	}
	call->send_bb = bb;
	call->more = more;
	call->more_arg = arg;
	e = call_start_locked(call, &op, 1, &call->t_send);
	if (e == GRPC_CALL_OK)
		call->is_send_pending = true;
	else
		call->send_bb = NULL;
	pthread_mutex_unlock(&call->mu);
	if (e != GRPC_CALL_OK) {
		grpc_byte_buffer_destroy(bb);
		return US_EIO;
	}
	return 0;
}

bool rpc_call_is_cancelled(const struct rpc_call *call)
{
	return atomic_load(&call->is_cancelled);
}

const char *rpc_call_metadata(const struct rpc_call *call, const char *key, size_t *len)
{
	for (size_t i = 0; i < call->md.count; i++) {
		const grpc_metadata *m = &call->md.metadata[i];

		if (grpc_slice_str_cmp(m->key, key) == 0) {
			*len = GRPC_SLICE_LENGTH(m->value);
			return (const char *)GRPC_SLICE_START_PTR(m->value);
		}
	}
	*len = 0;
	return NULL;
}

const char *rpc_call_peer(struct rpc_call *call)
{
	const char *peer;

	pthread_mutex_lock(&call->mu);
	if (!call->peer)
		call->peer = grpc_call_get_peer(call->call);
	peer = call->peer;
	pthread_mutex_unlock(&call->mu);
	return peer;
}

/* ------------------------------------------------------------------------ */
/* client */

struct rpc_channel {
	grpc_channel *ch;
	grpc_completion_queue *cq; /* PLUCK; empty between calls (streams aside) */
	char *addr;
	grpc_metadata md[1];       /* authorization, when a token is set */
	size_t n_md;
	size_t n_streams;          /* open streams, must be 0 at free */
};

struct rpc_stream {
	struct rpc_channel *ch;
	char *method;
	int timeout_ms;
	grpc_call *call;
	grpc_byte_buffer *send_bb;
	grpc_byte_buffer *recv_bb;
	grpc_metadata_array md_initial;
	grpc_metadata_array md_trailing;
	grpc_status_code status;
	grpc_slice details;
	const char *error_string;
	/* tags: the addresses of these bytes */
	char tag_start, tag_recv, tag_status;
	bool is_start_pending;  /* started, not plucked */
	bool is_status_pending;
	bool is_done;           /* status plucked; end_rc/end_err final */
	int end_rc;
	struct us_err end_err;
};

static bool token_is_valid(const char *t)
{
	for (; *t; t++)
		if (*t < 0x20 || *t > 0x7e)
			return false;
	return true;
}

int rpc_channel_new(struct rpc_channel **out, const char *addr,
		    const struct rpc_channel_opts *opts, struct us_err *err)
{
	static const struct rpc_channel_opts no_opts;
	struct rpc_channel *ch;
	grpc_channel_credentials *creds;
	grpc_arg args[8];
	grpc_channel_args cargs;
	size_t n_args = 0;
	char host[US_ADDR_MAX_LEN + 1];
	long port;
	char *ca = NULL;
	char *auth = NULL;
	int rc;

	*out = NULL;
	if (!opts)
		opts = &no_opts;
	if (!addr_split(addr, host, sizeof(host), &port) || port == 0)
		return err_set(err, US_EINVAL, "bad server address %s: expected HOST:PORT",
			       addr ? addr : "(none)");
	if (opts->token && (!*opts->token || !token_is_valid(opts->token)))
		return err_set(err, US_EINVAL, "bad token: expected printable ascii characters");
	if (opts->tls_ca_file) {
		rc = pem_read(opts->tls_ca_file, "tls ca", &ca, err);
		if (rc)
			return rc;
	}
	rc = err_set(err, US_ENOMEM, "cannot create channel to %s: out of memory", addr);
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		goto out_ca;
	ch->addr = strdup(addr);
	if (!ch->addr)
		goto out_ch;
	if (opts->token) {
		size_t n = strlen(opts->token) + sizeof("Bearer ");

		auth = malloc(n);
		if (!auth)
			goto out_ch;
		snprintf(auth, n, "Bearer %s", opts->token);
		ch->md[0].key = grpc_slice_from_static_string("authorization");
		ch->md[0].value = grpc_slice_from_copied_string(auth);
		ch->n_md = 1;
		free(auth);
	}

	args[n_args++] = arg_int(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
				 clamp_int(opts->max_message_bytes ? opts->max_message_bytes
								   : US_RPC_MAX_MESSAGE_BYTES));
	args[n_args++] = arg_int(GRPC_ARG_KEEPALIVE_TIME_MS, RPC_CLIENT_KEEPALIVE_TIME_MS);
	args[n_args++] = arg_int(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, RPC_CLIENT_KEEPALIVE_TIMEOUT_MS);
	args[n_args++] = arg_int(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
	args[n_args++] = arg_int(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
	args[n_args++] = arg_int(GRPC_ARG_HTTP2_BDP_PROBE, 0);
	/* one connection per channel, not shared through the global pool */
	args[n_args++] = arg_int(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
	cargs.num_args = n_args;
	cargs.args = args;

	creds = ca ? grpc_ssl_credentials_create(ca, NULL, NULL, NULL)
		   : grpc_insecure_credentials_create();
	ch->ch = grpc_channel_create(addr, creds, &cargs);
	grpc_channel_credentials_release(creds);
	ch->cq = grpc_completion_queue_create_for_pluck(NULL);
	free(ca);
	err_clear(err);
	*out = ch;
	return 0;

out_ch:
	free(ch->addr);
	free(ch);
out_ca:
	free(ca);
	return rc;
}

void rpc_channel_free(struct rpc_channel *ch)
{
	if (!ch)
		return;
	assert(ch->n_streams == 0);
	grpc_channel_destroy(ch->ch);
	grpc_completion_queue_shutdown(ch->cq);
	/* every tag was plucked: this returns GRPC_QUEUE_SHUTDOWN at once */
	while (grpc_completion_queue_pluck(ch->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME),
					   NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(ch->cq);
	if (ch->n_md) {
		grpc_slice_unref(ch->md[0].key);
		grpc_slice_unref(ch->md[0].value);
	}
	free(ch->addr);
	free(ch);
}

static grpc_call *channel_call(struct rpc_channel *ch, const char *method, int timeout_ms)
{
	grpc_slice path = grpc_slice_from_copied_string(method);
	gpr_timespec deadline;
	grpc_call *call;

	if (timeout_ms > 0)
		deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	else
		deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
	call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, ch->cq, path, NULL,
					deadline, NULL);
	grpc_slice_unref(path);
	return call;
}

/* Blocks until tag completes on ch's CQ. The call's deadline (or a cancel)
 * bounds the wait. */
static bool channel_pluck(struct rpc_channel *ch, void *tag)
{
	grpc_event ev = grpc_completion_queue_pluck(ch->cq, tag,
						    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

	assert(ev.type == GRPC_OP_COMPLETE);
	return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Maps a final status to a code and err->msg. The server's own details are
 * what the user must see, verbatim; a status made up locally by grpc (no
 * connection, deadline, a local limit) gets the address and method. */
static int status_to_err(struct rpc_channel *ch, const char *method, grpc_status_code status,
			 grpc_slice details, const char *error_string, int timeout_ms,
			 struct us_err *err)
{
	char text[US_ERR_MSG_MAX];
	int code;
	bool is_from_server;

	if (status == GRPC_STATUS_OK)
		return 0;
	code = err_from_grpc_status((int)status);
	slice_to_str(details, text, sizeof(text));
	/* grpc's debug string says so for a status read from the wire */
	is_from_server = error_string && strstr(error_string, "Error received from peer");
	/* grpc's own words, from either side: say which call and how long */
	if (status == GRPC_STATUS_DEADLINE_EXCEEDED && strcmp(text, "Deadline Exceeded") == 0)
		return timeout_ms > 0
		       ? err_set(err, code, "%s on %s: no answer within %d ms", method, ch->addr,
				 timeout_ms)
		       : err_set(err, code, "%s on %s: deadline exceeded", method, ch->addr);
	if (is_from_server)
		return err_set(err, code, "%s", text[0] ? text : us_strerror(code));
	if (status == GRPC_STATUS_UNAVAILABLE)
		return err_set(err, code, "cannot reach %s: %s", ch->addr, text);
	return err_set(err, code, "%s on %s: %s", method, ch->addr,
		       text[0] ? text : us_strerror(code));
}

int rpc_unary(struct rpc_channel *ch, const char *method, const uint8_t *req, size_t req_len,
	      int timeout_ms, uint8_t **resp, size_t *resp_len, struct us_err *err)
{
	grpc_metadata_array md_initial, md_trailing;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	const char *error_string = NULL;
	grpc_byte_buffer *send_bb, *recv_bb = NULL;
	grpc_call *call;
	grpc_op ops[6];
	grpc_call_error e;
	char tag;
	int rc;

	*resp = NULL;
	*resp_len = 0;
	call = channel_call(ch, method, timeout_ms);
	if (!call)
		return err_set(err, US_EIO, "cannot call %s on %s: grpc refused the call", method,
			       ch->addr);
	grpc_metadata_array_init(&md_initial);
	grpc_metadata_array_init(&md_trailing);
	send_bb = bb_from(req, req_len);

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = ch->n_md;
	ops[0].data.send_initial_metadata.metadata = ch->md;
	ops[0].flags = 0; /* no WAIT_FOR_READY: a dead server fails fast */
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send_bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_initial;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &recv_bb;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &md_trailing;
	ops[5].data.recv_status_on_client.status = &status;
	ops[5].data.recv_status_on_client.status_details = &details;
	ops[5].data.recv_status_on_client.error_string = &error_string;
	e = grpc_call_start_batch(call, ops, 6, &tag, NULL);
	if (e != GRPC_CALL_OK) {
		rc = err_set(err, US_EIO, "cannot call %s on %s: grpc call error %d", method,
			     ch->addr, (int)e);
		goto out;
	}
	(void)channel_pluck(ch, &tag); /* the status tells */

	rc = status_to_err(ch, method, status, details, error_string, timeout_ms, err);
	if (rc)
		goto out;
	if (!recv_bb) {
		rc = err_set(err, US_EIO, "%s on %s: no response message", method, ch->addr);
		goto out;
	}
	rc = bb_copy_out(recv_bb, resp, resp_len);
	if (rc) {
		err_set(err, rc, "%s on %s: cannot read response message", method, ch->addr);
		goto out;
	}
	err_clear(err);
out:
	if (recv_bb)
		grpc_byte_buffer_destroy(recv_bb);
	grpc_byte_buffer_destroy(send_bb);
	grpc_slice_unref(details);
	gpr_free((void *)error_string);
	grpc_metadata_array_destroy(&md_initial);
	grpc_metadata_array_destroy(&md_trailing);
	grpc_call_unref(call);
	return rc;
}

static void stream_release(struct rpc_stream *st)
{
	if (st->recv_bb)
		grpc_byte_buffer_destroy(st->recv_bb);
	if (st->send_bb)
		grpc_byte_buffer_destroy(st->send_bb);
	grpc_slice_unref(st->details);
	gpr_free((void *)st->error_string);
	grpc_metadata_array_destroy(&st->md_initial);
	grpc_metadata_array_destroy(&st->md_trailing);
	if (st->call)
		grpc_call_unref(st->call);
	free(st->method);
	st->ch->n_streams--;
	free(st);
}

int rpc_stream_open(struct rpc_channel *ch, const char *method, const uint8_t *req,
		    size_t req_len, int timeout_ms, struct rpc_stream **out, struct us_err *err)
{
	struct rpc_stream *st;
	grpc_op ops[4];
	grpc_call_error e;
	int rc;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return err_set(err, US_ENOMEM, "cannot call %s on %s: out of memory", method,
			       ch->addr);
	st->ch = ch;
	ch->n_streams++;
	st->timeout_ms = timeout_ms;
	st->status = GRPC_STATUS_UNKNOWN;
	st->details = grpc_empty_slice();
	grpc_metadata_array_init(&st->md_initial);
	grpc_metadata_array_init(&st->md_trailing);
	st->method = strdup(method);
	if (!st->method) {
		rc = err_set(err, US_ENOMEM, "cannot call %s on %s: out of memory", method,
			     ch->addr);
		goto out_stream;
	}
	st->call = channel_call(ch, method, timeout_ms);
	if (!st->call) {
		rc = err_set(err, US_EIO, "cannot call %s on %s: grpc refused the call", method,
			     ch->addr);
		goto out_stream;
	}
	st->send_bb = bb_from(req, req_len);

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = ch->n_md;
	ops[0].data.send_initial_metadata.metadata = ch->md;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = st->send_bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &st->md_initial;
	e = grpc_call_start_batch(st->call, ops, 4, &st->tag_start, NULL);
	if (e != GRPC_CALL_OK) {
		rc = err_set(err, US_EIO, "cannot call %s on %s: grpc call error %d", method,
			     ch->addr, (int)e);
		goto out_stream;
	}
	st->is_start_pending = true;

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &st->md_trailing;
	ops[0].data.recv_status_on_client.status = &st->status;
	ops[0].data.recv_status_on_client.status_details = &st->details;
	ops[0].data.recv_status_on_client.error_string = &st->error_string;
	e = grpc_call_start_batch(st->call, ops, 1, &st->tag_status, NULL);
	if (e != GRPC_CALL_OK) {
		rc = err_set(err, US_EIO, "cannot call %s on %s: grpc call error %d", method,
			     ch->addr, (int)e);
		goto out_stream;
	}
	st->is_status_pending = true;
	err_clear(err);
	*out = st;
	return 0;

out_stream:
	rpc_stream_free(st);
	return rc;
}

/* Plucks what is still pending (after the end of the stream or a cancel). */
static void stream_drain(struct rpc_stream *st)
{
	if (st->is_start_pending) {
		(void)channel_pluck(st->ch, &st->tag_start);
		st->is_start_pending = false;
	}
	if (st->is_status_pending) {
		(void)channel_pluck(st->ch, &st->tag_status);
		st->is_status_pending = false;
	}
}

/* Ends the stream: with the status when rc is 0, else with rc and the
 * message already in st->end_err. */
static int stream_end(struct rpc_stream *st, int rc, struct us_err *err)
{
	stream_drain(st);
	if (rc == 0)
		rc = status_to_err(st->ch, st->method, st->status, st->details, st->error_string,
				   st->timeout_ms, &st->end_err);
	st->is_done = true;
	st->end_rc = rc;
	if (err) {
		if (rc)
			*err = st->end_err;
		else
			err_clear(err);
	}
	return rc;
}

int rpc_stream_next(struct rpc_stream *st, uint8_t **msg, size_t *len, struct us_err *err)
{
	grpc_op op;
	grpc_call_error e;
	int rc;

	*msg = NULL;
	*len = 0;
	if (st->is_done) {
		if (err)
			*err = st->end_err;
		return st->end_rc;
	}
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &st->recv_bb;
	e = grpc_call_start_batch(st->call, &op, 1, &st->tag_recv, NULL);
	if (e != GRPC_CALL_OK) {
		grpc_call_cancel(st->call, NULL);
		err_set(&st->end_err, US_EIO, "%s on %s: grpc call error %d", st->method,
			st->ch->addr, (int)e);
		return stream_end(st, US_EIO, err);
	}
	(void)channel_pluck(st->ch, &st->tag_recv);
	if (!st->recv_bb)
		return stream_end(st, 0, err); /* end of stream: the status tells */
	rc = bb_copy_out(st->recv_bb, msg, len);
	grpc_byte_buffer_destroy(st->recv_bb);
	st->recv_bb = NULL;
	if (rc) {
		grpc_call_cancel(st->call, NULL);
		err_set(&st->end_err, rc, "%s on %s: cannot read message", st->method,
			st->ch->addr);
		return stream_end(st, rc, err);
	}
	return 1;
}

void rpc_stream_free(struct rpc_stream *st)
{
	if (!st)
		return;
	if (st->call && (st->is_start_pending || st->is_status_pending))
		grpc_call_cancel(st->call, NULL); /* unfinished: the tags come back now */
	stream_drain(st);
	stream_release(st);
}

/* ---- bidi calls (client) ---- */

/* Capacity of the event FIFO: at most one each of MESSAGE (the receive is
 * re-armed only when its message is handed out), SENT (one send in flight),
 * WOKEN (wakes coalesce while one is queued or posted) and END (once). */
#define BIDI_MAX_EVENTS 4

struct bidi_event {
	enum rpc_bidi_event type;
	uint8_t *msg; /* MESSAGE: malloc'd, handed to the caller */
	size_t len;
};

struct rpc_bidi {
	struct rpc_channel *ch;
	char *method;
	int timeout_ms;
	grpc_completion_queue *cq;   /* NEXT; polled by the driving thread only */
	grpc_call *call;
	grpc_metadata_array md_initial;
	grpc_metadata_array md_trailing;
	grpc_status_code status;
	grpc_slice details;
	const char *error_string;
	grpc_byte_buffer *send_bb;   /* the send in flight's message */
	grpc_byte_buffer *recv_bb;   /* out-param of the receive */
	/* tags: the addresses of these bytes */
	char tag_start, tag_recv, tag_send, tag_close, tag_status, tag_wake;

	/* Serializes grpc_call_start_batch (wake comes from any thread) and
	 * guards is_wake_posted. Everything else belongs to the driving
	 * thread. */
	pthread_mutex_t mu;
	bool is_wake_posted;         /* a wake tag is in the CQ, not yet handled */

	bool is_start_pending, is_recv_pending, is_send_pending, is_close_pending,
	     is_status_pending;      /* batches started, tag not yet handled */
	bool is_sending;             /* a send started, its SENT not yet returned */
	bool is_close_wanted;        /* rpc_bidi_close_send called */
	bool is_status_done;         /* the status has arrived */
	bool is_woken_queued;        /* a WOKEN event is in the FIFO */
	bool is_end_queued;          /* END is in the FIFO (or returned) */
	bool is_done;                /* END returned: end_rc/end_err final */
	bool is_freeing;             /* rpc_bidi_free draining: start nothing */
	int local_rc;                /* a local failure that overrides the status */
	struct us_err local_err;
	int end_rc;
	struct us_err end_err;
	struct bidi_event ev[BIDI_MAX_EVENTS];
	size_t ev_head, ev_n;
};

static void bidi_push_event(struct rpc_bidi *b, enum rpc_bidi_event type, uint8_t *msg,
			    size_t len)
{
	struct bidi_event *e;

	assert(b->ev_n < BIDI_MAX_EVENTS);
	e = &b->ev[(b->ev_head + b->ev_n) % BIDI_MAX_EVENTS];
	e->type = type;
	e->msg = msg;
	e->len = len;
	b->ev_n++;
}

static grpc_call_error bidi_start(struct rpc_bidi *b, const grpc_op *ops, size_t n, void *tag)
{
	grpc_call_error e;

	pthread_mutex_lock(&b->mu);
	e = grpc_call_start_batch(b->call, ops, n, tag, NULL);
	pthread_mutex_unlock(&b->mu);
	return e;
}

/* Records a local failure (first one wins) and cancels the call: its
 * batches complete, the status arrives, and END reports this failure. */
static void bidi_fail(struct rpc_bidi *b, int rc, const char *what)
{
	if (!b->local_rc) {
		b->local_rc = rc;
		err_set(&b->local_err, rc, "%s on %s: %s", b->method, b->ch->addr, what);
	}
	grpc_call_cancel(b->call, NULL);
}

static void bidi_arm_recv(struct rpc_bidi *b)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &b->recv_bb;
	if (bidi_start(b, &op, 1, &b->tag_recv) == GRPC_CALL_OK)
		b->is_recv_pending = true;
	else
		bidi_fail(b, US_EIO, "cannot receive: grpc refused the batch");
}

static void bidi_start_close(struct rpc_bidi *b)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	if (bidi_start(b, &op, 1, &b->tag_close) == GRPC_CALL_OK)
		b->is_close_pending = true;
	else
		bidi_fail(b, US_EIO, "cannot half-close: grpc refused the batch");
}

/* Queues END once the status is in and nothing but a wake is pending, so
 * that it follows every other event. */
static void bidi_check_end(struct rpc_bidi *b)
{
	if (b->is_end_queued || !b->is_status_done || b->is_start_pending ||
	    b->is_recv_pending || b->is_send_pending || b->is_close_pending)
		return;
	if (b->local_rc) {
		b->end_rc = b->local_rc;
		b->end_err = b->local_err;
	} else {
		b->end_rc = status_to_err(b->ch, b->method, b->status, b->details,
					  b->error_string, b->timeout_ms, &b->end_err);
		if (b->end_rc == 0)
			err_clear(&b->end_err);
	}
	b->is_end_queued = true;
	bidi_push_event(b, RPC_BIDI_END, NULL, 0);
}

/* One completion of the bidi's CQ, on the driving thread. */
static void bidi_handle(struct rpc_bidi *b, void *tag, bool ok)
{
	if (tag == &b->tag_wake) {
		pthread_mutex_lock(&b->mu);
		b->is_wake_posted = false;
		pthread_mutex_unlock(&b->mu);
		if (!b->is_woken_queued && !b->is_freeing) {
			b->is_woken_queued = true;
			bidi_push_event(b, RPC_BIDI_WOKEN, NULL, 0);
		}
		return;
	}
	if (tag == &b->tag_start) {
		b->is_start_pending = false;
	} else if (tag == &b->tag_recv) {
		grpc_byte_buffer *bb = b->recv_bb;

		b->recv_bb = NULL;
		b->is_recv_pending = false;
		if (bb && ok && !b->is_freeing) {
			uint8_t *msg;
			size_t len;
			int rc = bb_copy_out(bb, &msg, &len);

			if (rc == 0)
				bidi_push_event(b, RPC_BIDI_MESSAGE, msg, len);
			else
				bidi_fail(b, rc, "cannot read message");
		}
		/* no message: the server is done sending; the status follows */
		if (bb)
			grpc_byte_buffer_destroy(bb);
	} else if (tag == &b->tag_send) {
		grpc_byte_buffer_destroy(b->send_bb);
		b->send_bb = NULL;
		b->is_send_pending = false;
		/* a failed send means the call is over: END tells why */
		if (ok && !b->is_freeing) {
			bidi_push_event(b, RPC_BIDI_SENT, NULL, 0);
			if (b->is_close_wanted && !b->is_status_done)
				bidi_start_close(b);
		}
	} else if (tag == &b->tag_close) {
		b->is_close_pending = false;
	} else if (tag == &b->tag_status) {
		b->is_status_pending = false;
		b->is_status_done = true;
	} else {
		assert(!"unknown bidi tag");
	}
	if (!b->is_freeing)
		bidi_check_end(b);
}

static bool bidi_is_draining(struct rpc_bidi *b)
{
	bool is_wake;

	pthread_mutex_lock(&b->mu);
	is_wake = b->is_wake_posted;
	pthread_mutex_unlock(&b->mu);
	return is_wake || b->is_start_pending || b->is_recv_pending || b->is_send_pending ||
	       b->is_close_pending || b->is_status_pending;
}

void rpc_bidi_free(struct rpc_bidi *b)
{
	if (!b)
		return;
	b->is_freeing = true;
	if (b->call) {
		if (!b->is_status_done)
			grpc_call_cancel(b->call, NULL); /* unfinished: the tags come back now */
		while (bidi_is_draining(b)) {
			grpc_event ev = grpc_completion_queue_next(
				b->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

			assert(ev.type == GRPC_OP_COMPLETE);
			if (ev.type == GRPC_OP_COMPLETE)
				bidi_handle(b, ev.tag, ev.success != 0);
		}
	}
	for (; b->ev_n; b->ev_n--) {
		free(b->ev[b->ev_head].msg);
		b->ev_head = (b->ev_head + 1) % BIDI_MAX_EVENTS;
	}
	if (b->recv_bb)
		grpc_byte_buffer_destroy(b->recv_bb);
	if (b->send_bb)
		grpc_byte_buffer_destroy(b->send_bb);
	grpc_slice_unref(b->details);
	gpr_free((void *)b->error_string);
	grpc_metadata_array_destroy(&b->md_initial);
	grpc_metadata_array_destroy(&b->md_trailing);
	if (b->call)
		grpc_call_unref(b->call);
	if (b->cq) {
		grpc_completion_queue_shutdown(b->cq);
		/* drained above: this returns GRPC_QUEUE_SHUTDOWN at once */
		while (grpc_completion_queue_next(b->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
						  NULL).type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(b->cq);
	}
	pthread_mutex_destroy(&b->mu);
	free(b->method);
	b->ch->n_streams--;
	free(b);
}

int rpc_bidi_open(struct rpc_channel *ch, const char *method, int timeout_ms,
		  struct rpc_bidi **out, struct us_err *err)
{
	struct rpc_bidi *b;
	grpc_slice path;
	gpr_timespec deadline;
	grpc_op ops[2];
	grpc_call_error e;
	int rc;

	*out = NULL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return err_set(err, US_ENOMEM, "cannot call %s on %s: out of memory", method,
			       ch->addr);
	if (pthread_mutex_init(&b->mu, NULL) != 0) {
		free(b);
		return err_set(err, US_ENOMEM, "cannot call %s on %s: out of memory", method,
			       ch->addr);
	}
	b->ch = ch;
	ch->n_streams++;
	b->timeout_ms = timeout_ms;
	b->status = GRPC_STATUS_UNKNOWN;
	b->details = grpc_empty_slice();
	grpc_metadata_array_init(&b->md_initial);
	grpc_metadata_array_init(&b->md_trailing);
	b->method = strdup(method);
	if (!b->method) {
		rc = err_set(err, US_ENOMEM, "cannot call %s on %s: out of memory", method,
			     ch->addr);
		goto out_bidi;
	}
	b->cq = grpc_completion_queue_create_for_next(NULL);

	path = grpc_slice_from_copied_string(method);
	if (timeout_ms > 0)
		deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	else
		deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
	b->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, b->cq, path,
					   NULL, deadline, NULL);
	grpc_slice_unref(path);
	if (!b->call) {
		rc = err_set(err, US_EIO, "cannot call %s on %s: grpc refused the call", method,
			     ch->addr);
		goto out_bidi;
	}

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].data.send_initial_metadata.count = ch->n_md;
	ops[0].data.send_initial_metadata.metadata = ch->md;
	ops[0].flags = 0; /* no WAIT_FOR_READY: a dead server ends the call at once */
	ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[1].data.recv_initial_metadata.recv_initial_metadata = &b->md_initial;
	e = bidi_start(b, ops, 2, &b->tag_start);
	if (e != GRPC_CALL_OK)
		goto out_batch;
	b->is_start_pending = true;

	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &b->md_trailing;
	ops[0].data.recv_status_on_client.status = &b->status;
	ops[0].data.recv_status_on_client.status_details = &b->details;
	ops[0].data.recv_status_on_client.error_string = &b->error_string;
	e = bidi_start(b, ops, 1, &b->tag_status);
	if (e != GRPC_CALL_OK)
		goto out_batch;
	b->is_status_pending = true;

	bidi_arm_recv(b);
	if (b->local_rc) {
		rc = err_set(err, b->local_rc, "%s", b->local_err.msg);
		goto out_bidi;
	}
	err_clear(err);
	*out = b;
	return 0;

out_batch:
	rc = err_set(err, US_EIO, "cannot call %s on %s: grpc call error %d", method, ch->addr,
		     (int)e);
out_bidi:
	rpc_bidi_free(b);
	return rc;
}

int rpc_bidi_send(struct rpc_bidi *b, const uint8_t *msg, size_t len, struct us_err *err)
{
	grpc_op op;

	/* the status in: the call is over even if END is not queued yet */
	if (b->is_end_queued || b->is_status_done || b->local_rc)
		return err_set(err, US_EUNAVAIL, "cannot send on %s to %s: the call is over",
			       b->method, b->ch->addr);
	if (b->is_sending)
		return err_set(err, US_EINVAL, "cannot send on %s to %s: a send is in flight",
			       b->method, b->ch->addr);
	if (b->is_close_wanted)
		return err_set(err, US_EINVAL, "cannot send on %s to %s: sending is closed",
			       b->method, b->ch->addr);
	b->send_bb = bb_from(msg, len);
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = b->send_bb;
	if (bidi_start(b, &op, 1, &b->tag_send) != GRPC_CALL_OK) {
		grpc_byte_buffer_destroy(b->send_bb);
		b->send_bb = NULL;
		return err_set(err, US_EIO, "cannot send on %s to %s: grpc refused the batch",
			       b->method, b->ch->addr);
	}
	b->is_send_pending = true;
	b->is_sending = true;
	err_clear(err);
	return 0;
}

bool rpc_bidi_is_sending(const struct rpc_bidi *b)
{
	return b->is_sending;
}

int rpc_bidi_close_send(struct rpc_bidi *b, struct us_err *err)
{
	/* after the status a batch could only fail, and hide the status */
	if (b->is_close_wanted || b->is_end_queued || b->is_status_done) {
		err_clear(err);
		return 0;
	}
	b->is_close_wanted = true;
	/* else the send's completion starts it */
	if (!b->is_send_pending)
		bidi_start_close(b);
	if (b->local_rc)
		return err_set(err, b->local_rc, "%s", b->local_err.msg);
	err_clear(err);
	return 0;
}

int rpc_bidi_wait(struct rpc_bidi *b, int timeout_ms, uint8_t **msg, size_t *len,
		  struct us_err *err)
{
	gpr_timespec deadline;
	struct bidi_event e;

	*msg = NULL;
	*len = 0;
	if (b->is_done) {
		if (err)
			*err = b->end_err;
		return RPC_BIDI_END;
	}
	if (timeout_ms < 0)
		deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
	else
		deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
					gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	while (b->ev_n == 0) {
		grpc_event ev = grpc_completion_queue_next(b->cq, deadline, NULL);

		if (ev.type == GRPC_QUEUE_TIMEOUT) {
			err_clear(err);
			return RPC_BIDI_TIMEOUT;
		}
		assert(ev.type == GRPC_OP_COMPLETE);
		bidi_handle(b, ev.tag, ev.success != 0);
	}
	e = b->ev[b->ev_head];
	b->ev_head = (b->ev_head + 1) % BIDI_MAX_EVENTS;
	b->ev_n--;
	switch (e.type) {
	case RPC_BIDI_MESSAGE:
		*msg = e.msg;
		*len = e.len;
		/* the next message may come now; after the status none will */
		if (!b->is_status_done && !b->local_rc)
			bidi_arm_recv(b);
		break;
	case RPC_BIDI_SENT:
		b->is_sending = false;
		break;
	case RPC_BIDI_WOKEN:
		b->is_woken_queued = false;
		break;
	case RPC_BIDI_END:
		b->is_done = true;
		if (err)
			*err = b->end_err;
		return RPC_BIDI_END;
	case RPC_BIDI_TIMEOUT:
		assert(!"timeout queued");
		break;
	}
	err_clear(err);
	return (int)e.type;
}

void rpc_bidi_wake(struct rpc_bidi *b)
{
	pthread_mutex_lock(&b->mu);
	/* one posted wake is enough: the waiter sees WOKEN once for several */
	if (!b->is_wake_posted &&
	    grpc_call_start_batch(b->call, NULL, 0, &b->tag_wake, NULL) == GRPC_CALL_OK)
		b->is_wake_posted = true;
	pthread_mutex_unlock(&b->mu);
}

/* ------------------------------------------------------------------------ */

/*
 * Works around a spurious connect failure of grpc 1.51 with abseil 20220623
 * ("cannot reach ADDR: ...: No such file or directory", UNAVAILABLE, on a
 * live server). grpc's tcp_client_posix.cc reads errno after connect() only
 * once it has also called grpc_fd_create, which takes an absl::Mutex. The first
 * contended absl::Mutex of the process calls
 * absl::base_internal::NominalCPUFrequency() once, which opens
 * /sys/devices/system/cpu/cpu0/tsc_freq_khz - absent on most VMs - leaving
 * errno = ENOENT; if that lands in the window, grpc takes the EINPROGRESS
 * connect for a failed one (seen by strace: connect() = EINPROGRESS, then the
 * openat = ENOENT on the same thread; about once in 60 runs of test_rpc under
 * ASan). Making that first call here, before any connection, closes the
 * window. Looked up at run time: a missing symbol (another abseil) is no error.
 */
static void absl_warm_up(void)
{
	static const char *const names[] = {
		"_ZN4absl7debian313base_internal19NominalCPUFrequencyEv", /* Debian's inline ns */
		"_ZN4absl13base_internal19NominalCPUFrequencyEv",
	};
	double (*fn)(void);

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		void *sym = dlsym(RTLD_DEFAULT, names[i]);

		if (sym) {
			memcpy(&fn, &sym, sizeof(fn));
			(void)fn();
			return;
		}
	}
}

static rpc_log_hook log_hook;

void rpc_set_log_hook(rpc_log_hook hook)
{
	log_hook = hook;
}

static void forward_log(gpr_log_func_args *args)
{
	if (log_hook)
		log_hook(args->severity == GPR_LOG_SEVERITY_ERROR, args->file, args->line,
			 args->message);
}

void rpc_global_init(void)
{
	/* before grpc_init, so that its own start-up lines obey it too */
	if (!getenv("GRPC_VERBOSITY")) {
		gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
		gpr_set_log_function(forward_log);
	}
	absl_warm_up();
	grpc_init();
}

void rpc_global_shutdown(void)
{
	grpc_shutdown();
}
