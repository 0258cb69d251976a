/*
 * rpc.h - gRPC core plumbing: the only module that touches completion queues,
 * tags, byte buffers and call objects. Others see serialized protobuf bytes.
 *
 * Server: N worker threads ("us-rpc-N"), each polling its own completion queue
 * (CQ); every call lives on the CQ of the thread that accepted it. A handler
 * runs on that thread and must not block (no fsync, no waiting on a lock held
 * across I/O): it answers at once or hands the call to another thread, which
 * answers later with rpc_call_finish() - callable from any thread.
 *
 * Call lifecycle (server):
 *   accepted -> handler(call, request bytes)
 *   -> [rpc_call_send()* for server streaming] -> rpc_call_finish() exactly once
 *   -> the plumbing frees the call when every batch it started has completed.
 * A cancelled call (client gone, deadline) still needs its rpc_call_finish():
 * it is then a no-op on the wire.
 *
 * Bidi call lifecycle (server, struct rpc_bidi_method):
 *   accepted -> on_open -> [rpc_call_recv_more -> on_message]* and
 *   rpc_call_push* from any thread -> on_end exactly once and
 *   rpc_call_finish exactly once, in either order -> freed when both have
 *   happened and every batch has completed.
 *
 * Client: a channel per server address; unary calls and server-streaming
 * reads, synchronous, on a private pluck CQ; bidi calls on a CQ of their
 * own. A channel is used by one thread at a time.
 */
#ifndef US_RPC_H
#define US_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct rpc_server;
struct rpc_call;
struct rpc_channel;

/* req (never NULL, even when req_len is 0) is borrowed for the handler's
 * duration only (copy what must outlive it). Runs on a worker thread: answer
 * with rpc_call_finish, start a stream with rpc_call_send, or hand the call to
 * another thread. A request without a message never reaches the handler (the
 * client gets INVALID_ARGUMENT "missing request message").
 * For a client-streaming or bidi method this is not used (see later issues). */
typedef void (*rpc_handler_fn)(struct rpc_call *call, const uint8_t *req, size_t req_len,
			       void *arg);

struct rpc_method {
	const char *path;   /* "/understudy.v1.Store/Commit" */
	rpc_handler_fn fn;
	void *arg;
};

/* A bidirectional streaming method (Replication.Push). The plumbing keeps at
 * most one receive in flight and starts it only when the handler asks
 * (rpc_call_recv_more), so a slow handler holds its client back (flow
 * control: with BDP probing off, the client's sends stop completing one or
 * two HTTP/2 stream windows of 64 KiB ahead of the reads, measured); sends
 * are queued (rpc_call_push) and go out one at a time. A bidi method takes
 * precedence over a unary rpc_method of the same path. The callbacks of one
 * call never run concurrently with each other (all on its worker), but may
 * run concurrently with the handler's own threads calling rpc_call_*. */
struct rpc_bidi_method {
	const char *path;
	/* A new call: returns the handler's context for it, or NULL after
	 * finishing the call itself (a refusal: then on_end never runs). Runs
	 * on the call's worker. The first message is read only after
	 * rpc_call_recv_more (which may be called from here). */
	void *(*on_open)(struct rpc_call *call, void *arg);
	/* One message (borrowed for this callback). Runs on the call's worker.
	 * The next one is read only after rpc_call_recv_more (from here or any
	 * thread). Not called after the call is finished. Throughput: asking
	 * for the next message here while the handler's own queue is under its
	 * bound, rather than from the thread that processed this one, saves a
	 * thread hand-off per message (measured: about twice the messages/s
	 * for 1 KiB frames). */
	void (*on_message)(struct rpc_call *call, void *ctx, const uint8_t *msg, size_t len);
	/* Runs once, on the call's worker: no message will come any more.
	 * is_cancelled false: the client half-closed and the handler had not
	 * finished the call; it should answer (rpc_call_finish, OK or not).
	 * is_cancelled true: the call died (client cancelled or gone,
	 * deadline, connection lost, server stopping; also while the handler
	 * was not reading: it is told all the same), or the handler had
	 * already finished it (a refusal mid-stream: on_end then follows soon,
	 * whatever the client does). The handler must still finish the call
	 * exactly once (perhaps already has); ctx is the handler's to free once
	 * it has finished the call and on_end ran. */
	void (*on_end)(struct rpc_call *call, void *ctx, bool is_cancelled);
	void *arg;
};

struct rpc_server_opts {
	const char *listen;        /* HOST:PORT; port 0 picks a free one */
	int threads;               /* worker threads (CQs), 1 to 64 */
	size_t max_message_bytes;  /* receive limit per message; 0: US_RPC_MAX_MESSAGE_BYTES */
	const char *tls_cert_file; /* PEM chain; NULL: plaintext (then key NULL too) */
	const char *tls_key_file;  /* PEM private key */
	const struct rpc_bidi_method *bidi; /* bidirectional methods (copied), may be NULL */
	size_t n_bidi;
};

/* Binds, starts the worker threads and returns a new server. Methods are
 * copied. An unknown method gets UNIMPLEMENTED ("unknown method /x.Y/Z").
 * Errors: a malformed address or thread count is US_EINVAL; an unreadable or
 * non-PEM certificate or key file is US_ECONFIG naming the file; a port in use
 * (SO_REUSEPORT is off) is US_EUNAVAIL ("cannot listen on 127.0.0.1:7441:
 * address in use or not available"). */
int rpc_server_start(struct rpc_server **out, const struct rpc_server_opts *opts,
		     const struct rpc_method *methods, size_t n_methods, struct us_err *err);
/* The bound port (useful with port 0). */
int rpc_server_port(const struct rpc_server *s);
/* Stops accepting calls, lets calls in flight finish for up to grace_ms, then
 * cancels the rest, waits until every call is freed, joins the threads and
 * frees the server. The caller must make sure that whoever holds a call it
 * handed off finishes it (the cancel makes that immediate); until then this
 * blocks. Must not run on a worker thread (from a handler). NULL: no-op. */
void rpc_server_stop(struct rpc_server *s, int grace_ms);

/* Sends the response message and the status, then releases the call: the
 * call must not be used afterwards. resp non-NULL sends one message of
 * resp_len bytes (0 allowed: an empty protobuf message is 0 bytes, so a unary
 * OK answer passes a non-NULL pointer even then); resp NULL sends none (an
 * error, or the end of a server stream). code is a US_E* code (0 = OK) mapped
 * with err_to_grpc_status; msg (may be NULL: us_strerror(code)) becomes the
 * gRPC status details that the client shows verbatim. Thread-safe; exactly
 * once per call, also for a cancelled call, and not while a send is in
 * flight when resp is non-NULL (wait for more).
 * Bidi call: stops reading (a message already on its way is dropped; on_end
 * still runs once, with is_cancelled true if it had not run yet); resp, if
 * non-NULL, is pushed as a last message; the status goes out after every
 * pushed message has been taken by grpc, or at once, dropping the queue, if
 * the call is dead. Pushes and recv_more are refused from here on. */
void rpc_call_finish(struct rpc_call *call, int code, const char *msg,
		     const uint8_t *resp, size_t resp_len);
/* Same with the error record. */
void rpc_call_finish_err(struct rpc_call *call, const struct us_err *err);

/* Server streaming: sends one message (copied). When grpc has taken it,
 * more(call, arg) runs on the call's worker thread, and must call
 * rpc_call_send() again or rpc_call_finish() (more NULL: the caller finishes
 * by other means). If the call has died (cancelled), more still runs, with
 * rpc_call_is_cancelled() true, and should finish. At most one send in flight.
 * Any thread may call it. Returns 0, or a negative code (a send already in
 * flight, a finished call: US_EINVAL; grpc refused: US_EIO) and then more will
 * not run and the caller must finish the call. */
typedef void (*rpc_more_fn)(struct rpc_call *call, void *arg);
int rpc_call_send(struct rpc_call *call, const uint8_t *msg, size_t len, rpc_more_fn more,
		  void *arg);
bool rpc_call_is_cancelled(const struct rpc_call *call);

/* Bidi: asks for the next message (on_message or on_end follows, on the
 * worker). Any thread (serialized with the call's lock), until the call is
 * finished; a second request while one is pending, or any after on_end ran,
 * is a no-op returning 0. US_EINVAL on a finished (or non-bidi) call; US_EIO
 * if grpc refused (the call is then cancelled and on_end follows). */
int rpc_call_recv_more(struct rpc_call *call);
/* Bidi: queues msg (copied) to be sent after those queued before it; one
 * send is in flight at a time (the pusher starts it when none is, the
 * worker starts the next one). Any thread, until the call is finished
 * (US_EINVAL after). US_EUNAVAIL when the call has died (queued messages are
 * then dropped), US_ENOMEM. rpc_call_finish (resp NULL) sends the status
 * after the queue has drained. The queue is not bounded here: the handler
 * bounds it with rpc_call_queued_bytes. */
int rpc_call_push(struct rpc_call *call, const uint8_t *msg, size_t len);
/* Bytes pushed whose send has not completed yet (the queue plus the send in
 * flight); 0 once the call died and the queue was dropped. Any thread,
 * until the call is finished. */
size_t rpc_call_queued_bytes(struct rpc_call *call);

/* The value of request metadata key (lower case) and its length in *len
 * (required: the value is not NUL-terminated), borrowed until the call is
 * finished; NULL (and *len 0) if absent. Any thread. */
const char *rpc_call_metadata(const struct rpc_call *call, const char *key, size_t *len);
/* "ipv4:127.0.0.1:52314"; borrowed until finished. Any thread. */
const char *rpc_call_peer(struct rpc_call *call);

/* ---- client ---- */

struct rpc_channel_opts {
	size_t max_message_bytes;  /* receive limit; 0: US_RPC_MAX_MESSAGE_BYTES */
	const char *tls_ca_file;   /* PEM CA; NULL: plaintext */
	const char *token;         /* sent as "authorization: Bearer <token>"; NULL: none */
};

/* A new channel to addr (HOST:PORT, port not 0); opts may be NULL. No
 * connection is made until the first call; the channel has its own
 * connection (not shared with other channels). Errors: US_EINVAL (address,
 * token not printable ASCII), US_ECONFIG (CA file unreadable or not PEM,
 * named). Free every stream of a channel before the channel; NULL: no-op. */
int rpc_channel_new(struct rpc_channel **out, const char *addr,
		    const struct rpc_channel_opts *opts, struct us_err *err);
void rpc_channel_free(struct rpc_channel *ch);

/* Unary call, timeout_ms <= 0: no deadline. The call does not wait for the
 * channel to connect: with no server it fails at once. On success *resp is a
 * new buffer (free(); non-NULL even when empty) of *resp_len bytes. On failure
 * the US_E* code of the gRPC status (err_from_grpc_status) and err->msg = the
 * server's status details verbatim; for failures grpc makes up locally,
 * "cannot reach ADDR: <grpc details>" (US_EUNAVAIL), "METHOD on ADDR: no
 * answer within N ms" (US_ETIMEOUT) or "METHOD on ADDR: <details>". */
int rpc_unary(struct rpc_channel *ch, const char *method, const uint8_t *req, size_t req_len,
	      int timeout_ms, uint8_t **resp, size_t *resp_len, struct us_err *err);

/* Server-streaming call: open sends the request (timeout_ms <= 0: no
 * deadline for the whole stream) and fails only locally; a failure of the
 * call itself comes from next. next returns 1 with a new message (free();
 * non-NULL even when empty), 0 at the end of a successful stream, or a
 * negative code with err as for rpc_unary; after the end it keeps returning
 * the same. Free the stream (cancelling it if unfinished; the server's more
 * then sees it cancelled) with rpc_stream_free; NULL: no-op. */
struct rpc_stream;
int rpc_stream_open(struct rpc_channel *ch, const char *method, const uint8_t *req,
		    size_t req_len, int timeout_ms, struct rpc_stream **out, struct us_err *err);
int rpc_stream_next(struct rpc_stream *st, uint8_t **msg, size_t *len, struct us_err *err);
void rpc_stream_free(struct rpc_stream *st);

/* Bidirectional call, driven by one thread with rpc_bidi_wait (its own CQ);
 * rpc_bidi_wake may come from any thread. A receive is always in flight, so
 * messages arrive while the thread sends; it is re-armed when its message is
 * handed out, so at most one received message waits here and a driver that
 * stops waiting holds the server back (HTTP/2 flow control). Every function
 * but rpc_bidi_wake runs on the driving thread. */
struct rpc_bidi;

enum rpc_bidi_event {
	RPC_BIDI_TIMEOUT = 0,  /* nothing happened within the timeout */
	RPC_BIDI_MESSAGE = 1,  /* *msg is a new message (free(); non-NULL even when empty) */
	RPC_BIDI_SENT = 2,     /* the send in flight was taken by grpc: the next may
				* start (a failed send gives no SENT: END follows) */
	RPC_BIDI_WOKEN = 3,    /* rpc_bidi_wake was called */
	RPC_BIDI_END = 4,      /* the call is over: err has its status (code 0: OK);
				* every later wait returns RPC_BIDI_END again */
};

/* Opens method on ch (timeout_ms <= 0: no deadline for the whole call),
 * sending the channel's token. Fails only locally; a failed connection shows
 * as RPC_BIDI_END with US_EUNAVAIL "cannot reach ADDR: ..." (at once: the
 * call does not wait for the channel to connect). *out is freed with
 * rpc_bidi_free, before its channel. */
int rpc_bidi_open(struct rpc_channel *ch, const char *method, int timeout_ms,
		  struct rpc_bidi **out, struct us_err *err);
/* Starts sending msg (copied). At most one send in flight: US_EINVAL while
 * one is (until its RPC_BIDI_SENT has been returned by rpc_bidi_wait) or
 * after rpc_bidi_close_send; US_EUNAVAIL once the call is over (its status
 * has arrived, END is due). A completed send means grpc took the message, not that the
 * server read it. */
int rpc_bidi_send(struct rpc_bidi *b, const uint8_t *msg, size_t len, struct us_err *err);
/* True from rpc_bidi_send until its RPC_BIDI_SENT is returned (or for good
 * if that send failed: END follows). */
bool rpc_bidi_is_sending(const struct rpc_bidi *b);
/* Half-closes (no more sends) once the send in flight is done. Again, or
 * after the end: a no-op returning 0. */
int rpc_bidi_close_send(struct rpc_bidi *b, struct us_err *err);
/* Waits up to timeout_ms (< 0: no limit; 0: polls) for one event (enum
 * rpc_bidi_event); events are returned in the order they happened, one per
 * call, END last. err is cleared for every event but END. */
int rpc_bidi_wait(struct rpc_bidi *b, int timeout_ms, uint8_t **msg, size_t *len,
		  struct us_err *err);
/* Any thread: makes the current or next rpc_bidi_wait return RPC_BIDI_WOKEN
 * (several wakes before a wait may give one event; after END, no effect).
 * Thread-safe against every other rpc_bidi_* call on b except rpc_bidi_free:
 * the caller must make sure no wake is running or starts once free has
 * begun (e.g. the waker looks b up under a lock that the owner takes to
 * unpublish b before freeing it). Never blocks on the network. */
void rpc_bidi_wake(struct rpc_bidi *b);
/* Cancels the call if unfinished, waits for every batch it started (wakes
 * included) to come back, frees undelivered messages and destroys the CQ;
 * NULL: no-op. The server sees the call cancelled (on_end(true)). */
void rpc_bidi_free(struct rpc_bidi *b);

/* grpc_init/grpc_shutdown, ref-counted by gRPC itself; call once per program
 * around all use. rpc_global_init also takes gRPC's own log lines (ERROR and
 * up, or what GRPC_VERBOSITY says) away from stderr, where they came as long
 * internal dumps before a program's own one-line reason (a port in use):
 * they go to the hook set with rpc_set_log_hook (a daemon's DEBUG lines), or
 * nowhere; with GRPC_VERBOSITY set they stay gRPC's, on stderr, for
 * debugging. It also does abseil's one-time CPU frequency probe (about 3 ms)
 * up front: done lazily on a gRPC thread, it can make a connection fail
 * spuriously (see rpc.c). */
void rpc_global_init(void);
/* hook(is_error, file, line, message) gets gRPC's log lines; set before
 * rpc_global_init; called on any thread; must not block. */
typedef void (*rpc_log_hook)(int is_error, const char *file, int line, const char *msg);
void rpc_set_log_hook(rpc_log_hook hook);
void rpc_global_shutdown(void);

#endif
