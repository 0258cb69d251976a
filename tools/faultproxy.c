/*
 * understudy-faultproxy - a fault-injecting TCP proxy for the system tests.
 *
 *   understudy-faultproxy --listen HOST:PORT --target HOST:PORT [--seed N]
 *       [--control PATH] [--stall-ms MIN-MAX] [--cut-after-bytes MIN-MAX]
 *       [--mode pass|chaos] [--help]
 *
 * The tests put it between the sites and the archiver (gRPC over HTTP/2 over
 * TCP, so it relays bytes and knows nothing of the protocol) and make it stall,
 * cut and reset connections while loads run; then they check that nothing
 * acknowledged was lost or duplicated. It never alters, drops from the middle,
 * or reorders bytes: what a peer receives is always a prefix of what the other
 * peer sent. Exit status: 0 after SIGTERM/SIGINT, 1 on a bad argument value or
 * when it cannot start (one line on stderr), 2 on usage (unknown flag, missing
 * value or required flag), like the project's other programs.
 *
 * Threads: one. main parses the arguments, opens the listener, the control
 * socket and a signalfd for SIGTERM/SIGINT (blocked, so no handler runs and no
 * sig_atomic_t flag is needed), then runs the event loop: level-triggered epoll,
 * non-blocking sockets, and a timeout that is the nearest stall's end.
 *
 * State: one struct proxy (px), written only by the loop (the only thread).
 *
 * A connection: accept -> non-blocking connect to the target (CONNECTING; the
 * client is not read meanwhile) -> RELAYING: each direction has a ring buffer
 * of FP_BUF_BYTES; a direction reads its source only while its buffer has
 * room (backpressure: a full buffer stops reading, TCP stops the sender) and
 * writes its destination while the buffer holds data. A source's EOF is passed
 * on with shutdown(SHUT_WR) once its buffer is drained; when both directions
 * are shut the connection is closed. A socket error on either side resets the
 * other (SO_LINGER 0), as the peer's reset would have reached it without us.
 * A socket is registered with epoll only while the loop wants something from it,
 * so that a stalled or hung-up socket cannot spin the loop.
 *
 * Chaos (mode chaos): each connection has its own random generator seeded from
 * (--seed, the connection's accept number), so a run's faults depend on the
 * seed and the bytes relayed, not on timing. All positions count the bytes
 * relayed (written to a destination) in both directions together:
 *   - its fault: at a position drawn from --cut-after-bytes, either a clean
 *     cut (shutdown both sockets, then close) or a reset (SO_LINGER 0, close:
 *     both peers get an RST), one or the other at even odds. Writes are capped
 *     so that exactly that many bytes are relayed before the fault;
 *   - stalls: every FP_STALL_GAP_MIN..MAX_BYTES bytes, one direction or both
 *     (even odds) stop reading and writing for a time drawn from --stall-ms.
 * A clean cut sends FIN to both peers, but close(2) turns it into an RST toward
 * a peer whose bytes were still unread in our socket: the kernel's rule.
 *
 * Control (--control PATH): a UNIX stream socket; one command a line, each
 * answered by one line, "ok" or "error REASON" (stats: one JSON object):
 *   mode pass|chaos  pass: disarm every connection's plan and end its stalls;
 *                    chaos: arm a plan on every connection (from its position)
 *   cut all          clean cut of every connection now
 *   reset all        reset of every connection now
 *   stall all MS     stall both directions of every connection for MS ms
 *   block            cut every connection and reset each new one as soon as it
 *                    is accepted (the archiver looks down); unblock ends that
 *   stats            {"mode":..,"blocked":..,"accepted":N,"active":N,...}
 *
 * SIGTERM/SIGINT: close every connection and the control clients, remove the
 * control socket, log event=stopped, exit 0.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define FP_PROG "understudy-faultproxy"

#define FP_EXIT_FAIL 1
#define FP_EXIT_USAGE 2

/* Per direction of a connection: at most this many bytes read and not yet written. */
#define FP_BUF_BYTES (256u * 1024u)
/* Open connections; one more is reset as soon as it is accepted. */
#define FP_MAX_CONNS 1024u
#define FP_EVENTS_MAX 64
/* Read/write rounds per wakeup of a connection before the loop serves others. */
#define FP_PUMP_ROUNDS 8
/* After accept fails for want of descriptors or memory, stop accepting this long. */
#define FP_ACCEPT_PAUSE_MS 100u
/* Bounds of the arguments. */
#define FP_STALL_MAX_MS 3600000u
#define FP_CUT_MAX_BYTES (UINT64_C(1) << 60)
/* In chaos mode, a stall every this many relayed bytes (drawn per stall). */
#define FP_STALL_GAP_MIN_BYTES (16u * 1024u)
#define FP_STALL_GAP_MAX_BYTES (1024u * 1024u)
/* Defaults of --stall-ms and --cut-after-bytes. */
#define FP_DEFAULT_STALL_MIN_MS 50u
#define FP_DEFAULT_STALL_MAX_MS 500u
#define FP_DEFAULT_CUT_MIN_BYTES (64u * 1024u)
#define FP_DEFAULT_CUT_MAX_BYTES (4u * 1024u * 1024u)
/* Control: longest command line, and unsent answers kept per client. */
#define FP_CONTROL_LINE_MAX 256
#define FP_CONTROL_OUT_MAX 4096
#define FP_CONTROL_BACKLOG 16
/* "[v6 address]:port" with its NUL, and room to spare for the compiler's check. */
#define FP_PEER_MAX (INET6_ADDRSTRLEN + 16)

enum mode { MODE_PASS, MODE_CHAOS };

static const char *const mode_names[] = {[MODE_PASS] = "pass", [MODE_CHAOS] = "chaos"};

struct range {
	uint64_t min, max; /* inclusive */
};

/* What an epoll event points to: the kind says what owner is. */
enum watch_kind {
	W_LISTENER,         /* px.listener; owner NULL */
	W_CONTROL_LISTENER, /* px.control_listener; owner NULL */
	W_SIGNALS,          /* px.signals, a signalfd; owner NULL */
	W_CONTROL,          /* a control client; owner struct control */
	W_CLIENT,           /* a connection's accepted socket; owner struct conn */
	W_TARGET,           /* a connection's socket to the target; owner struct conn */
};

struct watch {
	enum watch_kind kind;
	int fd;          /* -1 once closed */
	uint32_t events; /* interest registered with epoll; 0: not registered */
	void *owner;
};

/* The directions of a connection, the index of conn.dirs. */
enum { DIR_TO_TARGET = 0, DIR_TO_CLIENT = 1 };

static const char *const dir_names[] = {"to_target", "to_client", "both"};

/* One direction: bytes read from its source, waiting to be written to its
 * destination. Invariant: len <= FP_BUF_BYTES; is_shut implies is_eof and
 * len == 0 (EOF is passed on only after the last byte). */
struct dir {
	uint8_t *buf;             /* ring of FP_BUF_BYTES; owned */
	size_t head, len;         /* data: buf[head], ... len bytes, wrapping */
	uint64_t relayed;         /* bytes written to the destination */
	uint64_t stall_until_ms;  /* monotonic; 0 or past: not stalled */
	bool is_eof;              /* the source said EOF */
	bool is_shut;             /* the destination's write side is shut */
};

/* A connection's chaos plan. Invariant while armed and the connection lives:
 * fault_at and stall_at are above the bytes relayed (conn_check_plan keeps
 * it), so the write budget is never 0. */
struct plan {
	bool is_armed;     /* mode chaos applies to this connection */
	bool is_reset;     /* the fault is a reset, else a clean cut */
	uint64_t fault_at; /* relayed bytes (both ways) at which the fault strikes */
	uint64_t stall_at; /* relayed bytes at which the next stall starts */
};

/*
 * A connection's life; any state but DEAD may go to DEAD at once (fault,
 * command, socket error, stop):
 *   CONN_CONNECTING  connect to the target in progress; the client is not read
 *                    -> RELAYING when it succeeds, -> DEAD when it fails
 *   CONN_RELAYING    both sockets open, directions relaying -> DEAD
 *   CONN_DEAD        sockets closed, on px.dead; freed at the end of the loop
 *                    turn, since later events of the same epoll_wait batch may
 *                    still point to it
 */
enum conn_state { CONN_CONNECTING, CONN_RELAYING, CONN_DEAD };

struct conn {
	struct watch client, target;
	enum conn_state state;
	uint64_t serial; /* accept number, from 1: "conn=N" in the log */
	uint64_t rng;    /* its random generator's state */
	struct dir dirs[2];
	struct plan plan;
	char peer[FP_PEER_MAX];
	struct conn *prev, *next; /* in px.conns, or next in px.dead */
};

/* How a connection ends. */
enum end_how {
	END_CLOSE, /* plain close */
	END_CUT,   /* shutdown(SHUT_RDWR) then close: FIN to both peers */
	END_RESET, /* SO_LINGER 0 then close: RST to both peers */
};

static const char *const end_names[] = {[END_CLOSE] = "closed", [END_CUT] = "cut",
					[END_RESET] = "reset"};

/* A control client: a line buffer in, answers out. */
struct control {
	struct watch w;
	char in[FP_CONTROL_LINE_MAX];
	size_t in_len;
	char out[FP_CONTROL_OUT_MAX];
	size_t out_len;
	bool is_closing; /* read no more; freed once out is sent */
	struct control *prev, *next;
};

struct stats {
	uint64_t accepted;         /* every accepted socket, refused ones included */
	uint64_t active;           /* connections open now */
	uint64_t refused;          /* reset at accept: blocked or over FP_MAX_CONNS */
	uint64_t connect_failures; /* the target could not be reached */
	uint64_t bytes_to_target;
	uint64_t bytes_to_client;
	uint64_t cuts;   /* injected clean cuts (chaos, cut all, block) */
	uint64_t resets; /* injected resets (chaos, reset all) */
	uint64_t stalls; /* stalls started, per connection */
};

/* The proxy's state. The argument fields are set by main before the loop;
 * everything is then written only by the loop, the only thread. */
static struct proxy {
	/* arguments */
	const char *listen_arg, *target_arg, *control_path;
	struct sockaddr_storage target_addr;
	socklen_t target_len;
	uint64_t seed;
	struct range stall_ms, cut_bytes;
	/* loop */
	enum mode mode;
	bool is_blocked;
	bool is_control_bound; /* control_path is ours to unlink */
	bool is_stopping;
	int epfd;
	struct watch listener, control_listener, signals;
	uint64_t accept_paused_until_ms; /* 0: accepting */
	uint64_t now_ms;                 /* monotonic, updated after each wait */
	uint64_t serial;                 /* of the last connection accepted */
	struct conn *conns;              /* CONNECTING and RELAYING */
	struct conn *dead;               /* DEAD, freed at the end of the turn */
	struct control *controls;
	struct stats st;
} px;

/* ---- time and randomness ---- */

static uint64_t clock_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return px.now_ms;
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* splitmix64: small, and good enough to pick fault points. */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));

	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* Uniform in [r.min, r.max] (the modulo bias is far below what a test sees). */
static uint64_t rng_range(uint64_t *state, struct range r)
{
	uint64_t span = r.max - r.min;

	if (span == UINT64_MAX)
		return rng_next(state);
	return r.min + rng_next(state) % (span + 1);
}

/* ---- sockets ---- */

static int watch_set(struct watch *w, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};
	int op;

	if (w->fd < 0 || events == w->events)
		return 0;
	op = w->events == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
	if (epoll_ctl(px.epfd, op, w->fd, &ev) != 0)
		return -errno;
	w->events = events;
	return 0;
}

/* Closes fd; close(2) also takes it out of epoll (no fd is ever duplicated). */
static void fd_close(int fd, const char *what)
{
	if (close(fd) != 0 && errno != EINTR)
		log_warn("event=close_failed socket=%s error=\"%s\"", what, strerror(errno));
}

/* SO_LINGER 0 then close: the peer gets an RST, unsent data is dropped. */
static void fd_reset_close(int fd, const char *what)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) != 0)
		log_warn("event=linger_failed socket=%s error=\"%s\"", what, strerror(errno));
	fd_close(fd, what);
}

static void watch_close(struct watch *w, enum end_how how, const char *what)
{
	if (w->fd < 0)
		return;
	if (how == END_RESET)
		fd_reset_close(w->fd, what);
	else
		fd_close(w->fd, what);
	w->fd = -1;
	w->events = 0;
}

static void format_peer(const struct sockaddr *sa, socklen_t len, char *out, size_t out_size)
{
	char host[INET6_ADDRSTRLEN], serv[8];

	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		snprintf(out, out_size, "?");
	else if (sa->sa_family == AF_INET6)
		snprintf(out, out_size, "[%s]:%s", host, serv);
	else
		snprintf(out, out_size, "%s:%s", host, serv);
}

/* ---- connections ---- */

static uint64_t conn_relayed(const struct conn *c)
{
	return c->dirs[DIR_TO_TARGET].relayed + c->dirs[DIR_TO_CLIENT].relayed;
}

static bool dir_is_stalled(const struct dir *d)
{
	return d->stall_until_ms > px.now_ms;
}

static bool dir_wants_read(const struct dir *d)
{
	return !dir_is_stalled(d) && !d->is_eof && d->len < FP_BUF_BYTES;
}

static bool dir_wants_write(const struct dir *d)
{
	return !dir_is_stalled(d) && d->len > 0;
}

static int dir_src_fd(const struct conn *c, int i)
{
	return i == DIR_TO_TARGET ? c->client.fd : c->target.fd;
}

static int dir_dst_fd(const struct conn *c, int i)
{
	return i == DIR_TO_TARGET ? c->target.fd : c->client.fd;
}

/* Bytes the connection may relay before its next chaos event. */
static uint64_t conn_budget(const struct conn *c)
{
	uint64_t total = conn_relayed(c), next;

	if (!c->plan.is_armed)
		return UINT64_MAX;
	next = c->plan.fault_at < c->plan.stall_at ? c->plan.fault_at : c->plan.stall_at;
	return next > total ? next - total : 0;
}

/* Ends c: closes both sockets as how says, moves it to px.dead. is_injected:
 * a fault of ours (counted), not the end of the conversation or a peer's error.
 * errnum: the socket error behind it, or 0. */
static void conn_end(struct conn *c, enum end_how how, bool is_injected, const char *reason,
		     int errnum)
{
	assert(c->state == CONN_CONNECTING || c->state == CONN_RELAYING);
	if (how == END_CUT && c->state == CONN_RELAYING) {
		/* FIN to both before either close; an unconnected or reset socket
		 * has nothing to shut, so the errors say nothing */
		(void)shutdown(c->client.fd, SHUT_RDWR);
		(void)shutdown(c->target.fd, SHUT_RDWR);
	}
	watch_close(&c->client, how, "client");
	watch_close(&c->target, how, "target");
	if (c->prev)
		c->prev->next = c->next;
	else
		px.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = px.dead;
	px.dead = c;
	c->state = CONN_DEAD;
	px.st.active--;
	if (is_injected && how == END_CUT)
		px.st.cuts++;
	else if (is_injected && how == END_RESET)
		px.st.resets++;
	log_info("event=%s conn=%" PRIu64 " reason=%s%s%s%s after_bytes=%" PRIu64
		 " to_target=%" PRIu64 " to_client=%" PRIu64,
		 is_injected ? end_names[how] : "closed", c->serial, reason,
		 errnum ? " error=\"" : "", errnum ? strerror(errnum) : "", errnum ? "\"" : "",
		 conn_relayed(c), c->dirs[DIR_TO_TARGET].relayed, c->dirs[DIR_TO_CLIENT].relayed);
}

static void conn_free(struct conn *c)
{
	if (!c)
		return;
	assert(c->client.fd < 0 && c->target.fd < 0);
	free(c->dirs[DIR_TO_TARGET].buf);
	free(c->dirs[DIR_TO_CLIENT].buf);
	free(c);
}

static void conns_free_dead(void)
{
	while (px.dead) {
		struct conn *c = px.dead;

		px.dead = c->next;
		conn_free(c);
	}
}

/* Registers with epoll what c wants now. false when that failed and c ended. */
static bool conn_update(struct conn *c)
{
	const struct dir *up = &c->dirs[DIR_TO_TARGET], *down = &c->dirs[DIR_TO_CLIENT];
	uint32_t client_events = 0, target_events = 0;
	int rc;

	if (c->state == CONN_DEAD)
		return false;
	if (c->state == CONN_CONNECTING) {
		target_events = EPOLLOUT;
	} else {
		client_events = (dir_wants_read(up) ? EPOLLIN : 0) |
				(dir_wants_write(down) ? EPOLLOUT : 0);
		target_events = (dir_wants_read(down) ? EPOLLIN : 0) |
				(dir_wants_write(up) ? EPOLLOUT : 0);
	}
	if ((rc = watch_set(&c->client, client_events)) ||
	    (rc = watch_set(&c->target, target_events))) {
		conn_end(c, END_CLOSE, false, "epoll_failed", -rc);
		return false;
	}
	return true;
}

/* Stops relaying (which: a direction, or 2 for both) for ms. */
static void conn_stall(struct conn *c, int which, uint64_t ms, const char *reason)
{
	uint64_t until = px.now_ms + ms;

	if (ms == 0)
		return;
	for (int i = 0; i < 2; i++) {
		struct dir *d = &c->dirs[i];

		if ((which == i || which == 2) && d->stall_until_ms < until)
			d->stall_until_ms = until;
	}
	px.st.stalls++;
	log_info("event=stall conn=%" PRIu64 " dir=%s ms=%" PRIu64 " reason=%s after_bytes=%" PRIu64,
		 c->serial, dir_names[which], ms, reason, conn_relayed(c));
}

/* Draws c's plan from its position on. */
static void conn_arm(struct conn *c)
{
	uint64_t total = conn_relayed(c);
	struct range gap = {FP_STALL_GAP_MIN_BYTES, FP_STALL_GAP_MAX_BYTES};

	c->plan.is_armed = true;
	c->plan.fault_at = total + rng_range(&c->rng, px.cut_bytes);
	c->plan.is_reset = (rng_next(&c->rng) & 1) != 0;
	c->plan.stall_at = total + rng_range(&c->rng, gap);
}

static void conn_disarm(struct conn *c)
{
	c->plan.is_armed = false;
	c->dirs[DIR_TO_TARGET].stall_until_ms = 0;
	c->dirs[DIR_TO_CLIENT].stall_until_ms = 0;
}

/* Strikes what c's position has reached. Writes stop exactly at fault_at and
 * at stall_at (conn_budget), so at most one stall starts per call.
 * false when c ended. */
static bool conn_check_plan(struct conn *c)
{
	struct plan *p = &c->plan;
	uint64_t total = conn_relayed(c);
	struct range gap = {FP_STALL_GAP_MIN_BYTES, FP_STALL_GAP_MAX_BYTES};

	if (!p->is_armed)
		return true;
	if (total >= p->fault_at) {
		conn_end(c, p->is_reset ? END_RESET : END_CUT, true, "chaos", 0);
		return false;
	}
	if (total >= p->stall_at) {
		uint64_t ms = rng_range(&c->rng, px.stall_ms);
		int which = (int)(rng_next(&c->rng) % 3);

		conn_stall(c, which, ms, "chaos");
		p->stall_at = total + rng_range(&c->rng, gap);
	}
	return true;
}

/* One read from direction i's source into its ring (which has room).
 * 1 progress (bytes or EOF), 0 nothing to read, -errno on a socket error. */
static int dir_read(struct conn *c, int i)
{
	struct dir *d = &c->dirs[i];
	struct iovec iov[2];
	int n_iov = 1;
	size_t tail;
	ssize_t n;

	assert(d->len < FP_BUF_BYTES);
	if (d->len == 0)
		d->head = 0; /* one contiguous free run */
	tail = (d->head + d->len) % FP_BUF_BYTES;
	if (tail >= d->head) {
		/* free: tail..end, then 0..head */
		iov[0] = (struct iovec){d->buf + tail, FP_BUF_BYTES - tail};
		if (d->head > 0)
			iov[n_iov++] = (struct iovec){d->buf, d->head};
	} else {
		iov[0] = (struct iovec){d->buf + tail, d->head - tail};
	}
	n = readv(dir_src_fd(c, i), iov, n_iov);
	if (n > 0) {
		d->len += (size_t)n;
		return 1;
	}
	if (n == 0) {
		d->is_eof = true;
		return 1;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return 0;
	return -errno;
}

/* One write of at most budget bytes from direction i's ring to its
 * destination. 1 progress, 0 would block, -errno on a socket error. */
static int dir_write(struct conn *c, int i, uint64_t budget)
{
	struct dir *d = &c->dirs[i];
	size_t want = d->len < budget ? d->len : (size_t)budget;
	size_t first = want < FP_BUF_BYTES - d->head ? want : FP_BUF_BYTES - d->head;
	struct iovec iov[2] = {{d->buf + d->head, first}, {d->buf, want - first}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = want > first ? 2 : 1};
	ssize_t n;

	if (want == 0)
		return 0;
	n = sendmsg(dir_dst_fd(c, i), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n > 0) {
		d->head = (d->head + (size_t)n) % FP_BUF_BYTES;
		d->len -= (size_t)n;
		d->relayed += (uint64_t)n;
		if (i == DIR_TO_TARGET)
			px.st.bytes_to_target += (uint64_t)n;
		else
			px.st.bytes_to_client += (uint64_t)n;
		return 1;
	}
	if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return 0;
	return -errno;
}

/* Moves what can move now in both directions, strikes the plan, passes EOFs
 * on, then registers what c waits for. false when c ended. */
static bool conn_pump(struct conn *c)
{
	if (c->state != CONN_RELAYING)
		return c->state == CONN_CONNECTING;
	for (int round = 0; round < FP_PUMP_ROUNDS; round++) {
		bool is_progress = false;

		for (int i = 0; i < 2; i++) {
			struct dir *d = &c->dirs[i];
			int rc;

			if (dir_wants_read(d)) {
				rc = dir_read(c, i);
				if (rc < 0) {
					conn_end(c, END_RESET, false,
						 i == DIR_TO_TARGET ? "client_error" : "target_error",
						 -rc);
					return false;
				}
				is_progress |= rc > 0;
			}
			if (dir_wants_write(d)) {
				rc = dir_write(c, i, conn_budget(c));
				if (rc < 0) {
					conn_end(c, END_RESET, false,
						 i == DIR_TO_TARGET ? "target_error" : "client_error",
						 -rc);
					return false;
				}
				if (rc > 0) {
					is_progress = true;
					if (!conn_check_plan(c))
						return false;
				}
			}
			if (d->is_eof && d->len == 0 && !d->is_shut && !dir_is_stalled(d)) {
				/* ENOTCONN: the destination is gone; its error comes
				 * with the next read or write, or both sides are done */
				(void)shutdown(dir_dst_fd(c, i), SHUT_WR);
				d->is_shut = true;
				is_progress = true;
			}
		}
		if (c->dirs[DIR_TO_TARGET].is_shut && c->dirs[DIR_TO_CLIENT].is_shut) {
			conn_end(c, END_CLOSE, false, "eof", 0);
			return false;
		}
		if (!is_progress)
			break;
	}
	return conn_update(c);
}

/* The target's connect finished (or failed). */
static void conn_on_connected(struct conn *c)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	assert(c->state == CONN_CONNECTING);
	if (getsockopt(c->target.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
		soerr = errno;
	if (soerr == EINPROGRESS || soerr == EALREADY)
		return;
	if (soerr) {
		px.st.connect_failures++;
		conn_end(c, END_CLOSE, false, "connect_failed", soerr);
		return;
	}
	c->state = CONN_RELAYING;
	log_debug("event=connected conn=%" PRIu64, c->serial);
	if (conn_check_plan(c))
		conn_pump(c);
}

static void set_nodelay(int fd)
{
	int one = 1;

	/* latency only: gRPC's small frames should not wait for Nagle */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Takes an accepted socket: starts its connection, or resets it. */
static void conn_open(int fd, const struct sockaddr *peer, socklen_t peer_len)
{
	struct conn *c;
	int tfd, rc;

	px.serial++;
	c = calloc(1, sizeof(*c));
	if (c) {
		c->dirs[DIR_TO_TARGET].buf = malloc(FP_BUF_BYTES);
		c->dirs[DIR_TO_CLIENT].buf = malloc(FP_BUF_BYTES);
	}
	if (!c || !c->dirs[DIR_TO_TARGET].buf || !c->dirs[DIR_TO_CLIENT].buf) {
		log_error("event=refused conn=%" PRIu64 " reason=out_of_memory", px.serial);
		px.st.refused++;
		fd_reset_close(fd, "client");
		if (c) {
			free(c->dirs[DIR_TO_TARGET].buf);
			free(c->dirs[DIR_TO_CLIENT].buf);
			free(c);
		}
		return;
	}
	c->serial = px.serial;
	c->rng = px.seed ^ (c->serial * UINT64_C(0xD1B54A32D192ED03));
	(void)rng_next(&c->rng);
	c->client = (struct watch){.kind = W_CLIENT, .fd = fd, .owner = c};
	c->target = (struct watch){.kind = W_TARGET, .fd = -1, .owner = c};
	c->state = CONN_CONNECTING;
	format_peer(peer, peer_len, c->peer, sizeof(c->peer));
	c->next = px.conns;
	if (px.conns)
		px.conns->prev = c;
	px.conns = c;
	px.st.active++;
	if (px.mode == MODE_CHAOS)
		conn_arm(c);
	log_info("event=accepted conn=%" PRIu64 " peer=%s mode=%s", c->serial, c->peer,
		 mode_names[px.mode]);
	set_nodelay(fd);

	tfd = socket(px.target_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (tfd < 0) {
		px.st.connect_failures++;
		conn_end(c, END_CLOSE, false, "connect_failed", errno);
		return;
	}
	c->target.fd = tfd;
	set_nodelay(tfd);
	rc = connect(tfd, (const struct sockaddr *)&px.target_addr, px.target_len);
	if (rc != 0 && errno != EINPROGRESS) {
		px.st.connect_failures++;
		conn_end(c, END_CLOSE, false, "connect_failed", errno);
		return;
	}
	if (rc == 0) {
		c->state = CONN_RELAYING;
		if (conn_check_plan(c))
			conn_pump(c);
		return;
	}
	conn_update(c);
}

static void listener_pause(void)
{
	px.accept_paused_until_ms = px.now_ms + FP_ACCEPT_PAUSE_MS;
	if (watch_set(&px.listener, 0) != 0)
		log_warn("event=epoll_failed socket=listener error=\"%s\"", strerror(errno));
}

static void on_accept(void)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(px.listener.fd, (struct sockaddr *)&ss, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			log_warn("event=accept_failed error=\"%s\" pause_ms=%u", strerror(errno),
				 FP_ACCEPT_PAUSE_MS);
			listener_pause();
			return;
		}
		px.st.accepted++;
		if (px.is_blocked || px.st.active >= FP_MAX_CONNS) {
			char peer[FP_PEER_MAX];

			format_peer((struct sockaddr *)&ss, len, peer, sizeof(peer));
			px.st.refused++;
			log_info("event=refused peer=%s reason=%s", peer,
				 px.is_blocked ? "blocked" : "too_many_connections");
			fd_reset_close(fd, "client");
			continue;
		}
		conn_open(fd, (struct sockaddr *)&ss, len);
	}
}

/* Ends every open connection as how says. */
static void conns_end_all(enum end_how how, bool is_injected, const char *reason)
{
	while (px.conns)
		conn_end(px.conns, how, is_injected, reason, 0);
}

/* Ends stalls that are due and lets their connections move. */
static void conns_tick(void)
{
	struct conn *c, *next;

	for (c = px.conns; c; c = next) {
		bool is_due = false;

		next = c->next;
		for (int i = 0; i < 2; i++) {
			struct dir *d = &c->dirs[i];

			if (d->stall_until_ms && d->stall_until_ms <= px.now_ms) {
				d->stall_until_ms = 0;
				is_due = true;
			}
		}
		if (is_due)
			conn_pump(c);
	}
	if (px.accept_paused_until_ms && px.accept_paused_until_ms <= px.now_ms) {
		px.accept_paused_until_ms = 0;
		if (watch_set(&px.listener, EPOLLIN) != 0)
			log_warn("event=epoll_failed socket=listener error=\"%s\"", strerror(errno));
	}
}

/* Milliseconds until the next stall ends (or accepting resumes); -1: none. */
static int next_timeout_ms(void)
{
	uint64_t next = px.accept_paused_until_ms ? px.accept_paused_until_ms : UINT64_MAX;

	for (const struct conn *c = px.conns; c; c = c->next) {
		for (int i = 0; i < 2; i++) {
			uint64_t t = c->dirs[i].stall_until_ms;

			if (t && t < next)
				next = t;
		}
	}
	if (next == UINT64_MAX)
		return -1;
	if (next <= px.now_ms)
		return 0;
	return next - px.now_ms > INT_MAX ? INT_MAX : (int)(next - px.now_ms);
}

/* ---- control ---- */

static void control_free(struct control *ctl)
{
	if (!ctl)
		return;
	watch_close(&ctl->w, END_CLOSE, "control");
	if (ctl->prev)
		ctl->prev->next = ctl->next;
	else
		px.controls = ctl->next;
	if (ctl->next)
		ctl->next->prev = ctl->prev;
	free(ctl);
}

/* Queues one answer line; a client that does not read its answers is dropped. */
static void control_reply(struct control *ctl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void control_reply(struct control *ctl, const char *fmt, ...)
{
	size_t room = sizeof(ctl->out) - ctl->out_len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(ctl->out + ctl->out_len, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n + 1 >= room) {
		ctl->is_closing = true;
		return;
	}
	ctl->out_len += (size_t)n;
	ctl->out[ctl->out_len++] = '\n';
}

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;
	unsigned long long n;

	if (!s || s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*v = n;
	return true;
}

static void control_stats(struct control *ctl)
{
	control_reply(ctl,
		      "{\"mode\":\"%s\",\"blocked\":%s,\"accepted\":%" PRIu64 ",\"active\":%" PRIu64
		      ",\"refused\":%" PRIu64 ",\"connect_failures\":%" PRIu64
		      ",\"bytes_to_target\":%" PRIu64 ",\"bytes_to_client\":%" PRIu64
		      ",\"cuts\":%" PRIu64 ",\"resets\":%" PRIu64 ",\"stalls\":%" PRIu64
		      ",\"seed\":%" PRIu64 "}",
		      mode_names[px.mode], px.is_blocked ? "true" : "false", px.st.accepted,
		      px.st.active, px.st.refused, px.st.connect_failures, px.st.bytes_to_target,
		      px.st.bytes_to_client, px.st.cuts, px.st.resets, px.st.stalls, px.seed);
}

/* Runs one command line and answers it. */
static void control_command(struct control *ctl, char *line)
{
	char *argv[4], *save = NULL, *t;
	int argc = 0;
	uint64_t ms;

	for (t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
		if (argc == 4) {
			control_reply(ctl, "error too many words");
			return;
		}
		argv[argc++] = t;
	}
	if (argc == 0) {
		control_reply(ctl, "error empty command");
		return;
	}
	if (strcmp(argv[0], "stats") == 0 && argc == 1) {
		control_stats(ctl);
		return;
	}
	if (strcmp(argv[0], "mode") == 0 && argc == 2 &&
	    (strcmp(argv[1], "pass") == 0 || strcmp(argv[1], "chaos") == 0)) {
		struct conn *c, *next;

		px.mode = strcmp(argv[1], "pass") == 0 ? MODE_PASS : MODE_CHAOS;
		log_info("event=mode mode=%s", mode_names[px.mode]);
		for (c = px.conns; c; c = next) {
			next = c->next;
			if (px.mode == MODE_PASS) {
				conn_disarm(c);
				conn_pump(c);
			} else if (!c->plan.is_armed) {
				conn_arm(c);
				if (c->state == CONN_RELAYING && conn_check_plan(c))
					conn_pump(c);
			}
		}
		control_reply(ctl, "ok");
		return;
	}
	if ((strcmp(argv[0], "cut") == 0 || strcmp(argv[0], "reset") == 0) && argc == 2 &&
	    strcmp(argv[1], "all") == 0) {
		log_info("event=command command=%s_all connections=%" PRIu64, argv[0],
			 px.st.active);
		conns_end_all(argv[0][0] == 'c' ? END_CUT : END_RESET, true, "command");
		control_reply(ctl, "ok");
		return;
	}
	if (strcmp(argv[0], "stall") == 0 && argc == 3 && strcmp(argv[1], "all") == 0) {
		if (!parse_u64(argv[2], &ms) || ms > FP_STALL_MAX_MS) {
			control_reply(ctl, "error bad stall time '%s' (want 0..%u ms)", argv[2],
				      FP_STALL_MAX_MS);
			return;
		}
		log_info("event=command command=stall_all ms=%" PRIu64 " connections=%" PRIu64, ms,
			 px.st.active);
		for (struct conn *c = px.conns, *next; c; c = next) {
			next = c->next;
			conn_stall(c, 2, ms, "command");
			conn_update(c);
		}
		control_reply(ctl, "ok");
		return;
	}
	if (strcmp(argv[0], "block") == 0 && argc == 1) {
		px.is_blocked = true;
		log_info("event=blocked connections=%" PRIu64, px.st.active);
		conns_end_all(END_CUT, true, "block");
		control_reply(ctl, "ok");
		return;
	}
	if (strcmp(argv[0], "unblock") == 0 && argc == 1) {
		px.is_blocked = false;
		log_info("event=unblocked");
		control_reply(ctl, "ok");
		return;
	}
	control_reply(ctl, "error unknown command '%.64s' (want mode pass|chaos, cut all, "
			   "reset all, stall all MS, block, unblock, stats)",
		      argv[0]);
}

/* Runs the complete lines in ctl->in. */
static void control_run_lines(struct control *ctl)
{
	char *nl;

	while (!ctl->is_closing && (nl = memchr(ctl->in, '\n', ctl->in_len))) {
		size_t line_len = (size_t)(nl - ctl->in);

		*nl = '\0';
		control_command(ctl, ctl->in);
		ctl->in_len -= line_len + 1;
		memmove(ctl->in, nl + 1, ctl->in_len);
	}
	if (ctl->in_len == sizeof(ctl->in)) {
		control_reply(ctl, "error line too long (over %d bytes)", FP_CONTROL_LINE_MAX - 1);
		ctl->is_closing = true;
	}
}

static void control_on_event(struct control *ctl, uint32_t events)
{
	if (!ctl->is_closing && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		ssize_t n = recv(ctl->w.fd, ctl->in + ctl->in_len, sizeof(ctl->in) - ctl->in_len, 0);

		if (n > 0) {
			ctl->in_len += (size_t)n;
			control_run_lines(ctl);
		} else if (n == 0) {
			/* a last line without its newline still counts */
			if (ctl->in_len > 0 && ctl->in_len < sizeof(ctl->in)) {
				ctl->in[ctl->in_len] = '\0';
				control_command(ctl, ctl->in);
				ctl->in_len = 0;
			}
			ctl->is_closing = true;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			control_free(ctl);
			return;
		}
	}
	while (ctl->out_len > 0) {
		ssize_t n = send(ctl->w.fd, ctl->out, ctl->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			control_free(ctl);
			return;
		}
		ctl->out_len -= (size_t)n;
		memmove(ctl->out, ctl->out + n, ctl->out_len);
	}
	if (ctl->is_closing && ctl->out_len == 0) {
		control_free(ctl);
		return;
	}
	if (watch_set(&ctl->w, (ctl->is_closing ? 0 : EPOLLIN) | (ctl->out_len ? EPOLLOUT : 0)))
		control_free(ctl);
}

static void on_control_accept(void)
{
	for (;;) {
		int fd = accept4(px.control_listener.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct control *ctl;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_warn("event=control_accept_failed error=\"%s\"", strerror(errno));
			return;
		}
		ctl = calloc(1, sizeof(*ctl));
		if (!ctl) {
			log_error("event=control_refused reason=out_of_memory");
			fd_close(fd, "control");
			continue;
		}
		ctl->w = (struct watch){.kind = W_CONTROL, .fd = fd, .owner = ctl};
		ctl->next = px.controls;
		if (px.controls)
			px.controls->prev = ctl;
		px.controls = ctl;
		if (watch_set(&ctl->w, EPOLLIN) != 0) {
			log_warn("event=epoll_failed socket=control error=\"%s\"", strerror(errno));
			control_free(ctl);
		}
	}
}

/* ---- signals and the loop ---- */

static void on_signal(void)
{
	struct signalfd_siginfo si;
	ssize_t n = read(px.signals.fd, &si, sizeof(si));

	if (n != (ssize_t)sizeof(si))
		return;
	log_info("event=stopping signal=%s", si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
	px.is_stopping = true;
}

static void dispatch(struct watch *w, uint32_t events)
{
	struct conn *c;

	switch (w->kind) {
	case W_LISTENER:
		on_accept();
		break;
	case W_CONTROL_LISTENER:
		on_control_accept();
		break;
	case W_SIGNALS:
		on_signal();
		break;
	case W_CONTROL:
		control_on_event(w->owner, events);
		break;
	case W_CLIENT:
	case W_TARGET:
		c = w->owner;
		if (c->state == CONN_CONNECTING && w->kind == W_TARGET)
			conn_on_connected(c);
		else
			conn_pump(c); /* a DEAD one returns at once */
		break;
	}
}

static int run_loop(void)
{
	struct epoll_event events[FP_EVENTS_MAX];

	while (!px.is_stopping) {
		int n = epoll_wait(px.epfd, events, FP_EVENTS_MAX, next_timeout_ms());

		if (n < 0 && errno != EINTR) {
			log_error("event=epoll_wait_failed error=\"%s\"", strerror(errno));
			return -1;
		}
		px.now_ms = clock_ms();
		for (int i = 0; i < n; i++)
			dispatch(events[i].data.ptr, events[i].events);
		conns_tick();
		conns_free_dead();
	}
	return 0;
}

/* ---- arguments and setup ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " FP_PROG " --listen HOST:PORT --target HOST:PORT [--seed N]\n"
		"       [--control PATH] [--stall-ms MIN-MAX] [--cut-after-bytes MIN-MAX]\n"
		"       [--mode pass|chaos] [--help]\n"
		"A TCP proxy for the system tests that stalls, cuts and resets connections.\n"
		"  --listen HOST:PORT         where to accept (port 0: any free port, logged as\n"
		"                             event=listening port=N)\n"
		"  --target HOST:PORT         where to connect for each accepted connection\n"
		"  --seed N                   seed of the chaos (default: from the clock, logged)\n"
		"  --control PATH             UNIX socket taking commands, one a line:\n"
		"                             mode pass|chaos, cut all, reset all, stall all MS,\n"
		"                             block, unblock, stats; answers ok, error REASON,\n"
		"                             or one JSON line\n"
		"  --stall-ms MIN-MAX         length of chaos stalls (default %u-%u)\n"
		"  --cut-after-bytes MIN-MAX  relayed bytes before a chaos cut or reset\n"
		"                             (default %u-%u)\n"
		"  --mode pass|chaos          start mode (default chaos)\n"
		"Exit status: 0 after SIGTERM or SIGINT, 1 bad value or cannot start, 2 usage.\n",
		FP_DEFAULT_STALL_MIN_MS, FP_DEFAULT_STALL_MAX_MS, FP_DEFAULT_CUT_MIN_BYTES,
		FP_DEFAULT_CUT_MAX_BYTES);
}

/* "MIN-MAX" or "N" (MIN = MAX = N), decimal, MIN <= MAX <= max. */
static bool parse_range(const char *s, uint64_t max, struct range *r)
{
	char lo[24];
	const char *dash = strchr(s, '-');
	size_t n = dash ? (size_t)(dash - s) : strlen(s);

	if (n == 0 || n >= sizeof(lo))
		return false;
	memcpy(lo, s, n);
	lo[n] = '\0';
	if (!parse_u64(lo, &r->min))
		return false;
	if (!dash)
		r->max = r->min;
	else if (!parse_u64(dash + 1, &r->max))
		return false;
	return r->min <= r->max && r->max <= max;
}

/* "HOST:PORT", "[V6]:PORT" or, when is_passive, ":PORT" (every address) into
 * the first address getaddrinfo gives. 0, or -1 with msg filled. */
static int resolve(const char *flag, const char *arg, bool is_passive, bool is_zero_port_ok,
		   struct sockaddr_storage *out, socklen_t *out_len, char *msg, size_t msg_size)
{
	char host[256];
	const char *colon, *port;
	size_t host_len;
	uint64_t port_n;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV | (is_passive ? AI_PASSIVE : 0)};
	struct addrinfo *res;
	int rc;

	if (arg[0] == '[') {
		const char *bracket = strchr(arg, ']');

		if (!bracket || bracket[1] != ':')
			goto out_bad;
		host_len = (size_t)(bracket - arg - 1);
		if (host_len == 0 || host_len >= sizeof(host))
			goto out_bad;
		memcpy(host, arg + 1, host_len);
		port = bracket + 2;
	} else {
		colon = strrchr(arg, ':');
		if (!colon)
			goto out_bad;
		host_len = (size_t)(colon - arg);
		if (host_len >= sizeof(host) || memchr(arg, ':', host_len))
			goto out_bad;
		memcpy(host, arg, host_len);
		port = colon + 1;
	}
	host[host_len] = '\0';
	if ((host_len == 0 && !is_passive) || !parse_u64(port, &port_n) || port_n > 65535 ||
	    (port_n == 0 && !is_zero_port_ok))
		goto out_bad;
	rc = getaddrinfo(host_len ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		snprintf(msg, msg_size, "cannot resolve %s address '%s': %s", flag, arg,
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	memcpy(out, res->ai_addr, res->ai_addrlen);
	*out_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
out_bad:
	snprintf(msg, msg_size, "bad %s address '%s' (want HOST:PORT, PORT 1-65535%s)", flag, arg,
		 is_zero_port_ok ? " or 0" : "");
	return -1;
}

/* Parses argv into px. 0 to run, or the exit status (message printed). */
static int parse_args(int argc, char **argv, bool *is_seeded)
{
	const char *mode = NULL, *stall = NULL, *cut = NULL, *seed = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val, *eq;
		const char **slot;
		char name[24];
		size_t n;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return -1;
		}
		eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
		n = eq ? (size_t)(eq - a) : strlen(a);
		if (n >= sizeof(name))
			n = sizeof(name) - 1;
		memcpy(name, a, n);
		name[n] = '\0';
		if (strcmp(name, "--listen") == 0)
			slot = &px.listen_arg;
		else if (strcmp(name, "--target") == 0)
			slot = &px.target_arg;
		else if (strcmp(name, "--control") == 0)
			slot = &px.control_path;
		else if (strcmp(name, "--seed") == 0)
			slot = &seed;
		else if (strcmp(name, "--stall-ms") == 0)
			slot = &stall;
		else if (strcmp(name, "--cut-after-bytes") == 0)
			slot = &cut;
		else if (strcmp(name, "--mode") == 0)
			slot = &mode;
		else {
			fprintf(stderr, FP_PROG ": unknown argument '%s' (see --help)\n", a);
			return FP_EXIT_USAGE;
		}
		if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fprintf(stderr, FP_PROG ": %s needs a value (see --help)\n", a);
			return FP_EXIT_USAGE;
		}
		*slot = val;
	}
	if (!px.listen_arg || !px.target_arg) {
		fprintf(stderr, FP_PROG ": --listen and --target are required (see --help)\n");
		return FP_EXIT_USAGE;
	}
	px.mode = MODE_CHAOS;
	if (mode && strcmp(mode, "pass") == 0) {
		px.mode = MODE_PASS;
	} else if (mode && strcmp(mode, "chaos") != 0) {
		fprintf(stderr, FP_PROG ": bad --mode '%s' (want pass or chaos)\n", mode);
		return FP_EXIT_FAIL;
	}
	px.stall_ms = (struct range){FP_DEFAULT_STALL_MIN_MS, FP_DEFAULT_STALL_MAX_MS};
	if (stall && !parse_range(stall, FP_STALL_MAX_MS, &px.stall_ms)) {
		fprintf(stderr, FP_PROG ": bad --stall-ms '%s' (want MIN-MAX milliseconds, "
				"MIN <= MAX <= %u)\n", stall, FP_STALL_MAX_MS);
		return FP_EXIT_FAIL;
	}
	px.cut_bytes = (struct range){FP_DEFAULT_CUT_MIN_BYTES, FP_DEFAULT_CUT_MAX_BYTES};
	if (cut && !parse_range(cut, FP_CUT_MAX_BYTES, &px.cut_bytes)) {
		fprintf(stderr, FP_PROG ": bad --cut-after-bytes '%s' (want MIN-MAX bytes, "
				"MIN <= MAX <= %" PRIu64 ")\n", cut, FP_CUT_MAX_BYTES);
		return FP_EXIT_FAIL;
	}
	*is_seeded = seed != NULL;
	if (seed && !parse_u64(seed, &px.seed)) {
		fprintf(stderr, FP_PROG ": bad --seed '%s' (want a whole number)\n", seed);
		return FP_EXIT_FAIL;
	}
	if (px.control_path &&
	    (px.control_path[0] == '\0' ||
	     strlen(px.control_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))) {
		fprintf(stderr, FP_PROG ": bad --control path '%s' (want 1-%zu bytes)\n",
			px.control_path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return FP_EXIT_FAIL;
	}
	return 0;
}

/* Binds and listens on --listen; fills *port. 0 or -1 with msg. */
static int open_listener(int *port, char *msg, size_t msg_size)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	if (resolve("--listen", px.listen_arg, true, true, &ss, &len, msg, msg_size))
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out_errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, SOMAXCONN) != 0)
		goto out_close;
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		goto out_close;
	*port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					 : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	px.listener = (struct watch){.kind = W_LISTENER, .fd = fd};
	return 0;
out_close:
	snprintf(msg, msg_size, "cannot listen on %s: %s", px.listen_arg, strerror(errno));
	fd_close(fd, "listener");
	return -1;
out_errno:
	snprintf(msg, msg_size, "cannot listen on %s: %s", px.listen_arg, strerror(errno));
	return -1;
}

/* Creates the control socket at --control. A stale socket file (nobody
 * answers on it) is replaced; a live one or another file is an error. */
static int open_control(char *msg, size_t msg_size)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", px.control_path);
	if (lstat(px.control_path, &st) == 0) {
		int probe;

		if (!S_ISSOCK(st.st_mode)) {
			snprintf(msg, msg_size, "cannot create control socket %s: a file that is "
				 "not a socket is in the way", px.control_path);
			return -1;
		}
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			fd_close(probe, "control");
			snprintf(msg, msg_size, "cannot create control socket %s: another process "
				 "listens on it", px.control_path);
			return -1;
		}
		if (probe >= 0)
			fd_close(probe, "control");
		if (unlink(px.control_path) != 0 && errno != ENOENT)
			goto out_errno;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto out_errno;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		snprintf(msg, msg_size, "cannot create control socket %s: %s", px.control_path,
			 strerror(errno));
		fd_close(fd, "control");
		return -1;
	}
	px.is_control_bound = true;
	if (listen(fd, FP_CONTROL_BACKLOG) != 0) {
		snprintf(msg, msg_size, "cannot listen on control socket %s: %s", px.control_path,
			 strerror(errno));
		fd_close(fd, "control");
		return -1;
	}
	px.control_listener = (struct watch){.kind = W_CONTROL_LISTENER, .fd = fd};
	return 0;
out_errno:
	snprintf(msg, msg_size, "cannot create control socket %s: %s", px.control_path,
		 strerror(errno));
	return -1;
}

static uint64_t clock_seed(void)
{
	struct timespec ts;
	uint64_t s;

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	s = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 32);
	return rng_next(&s) % 1000000000u; /* short enough to retype */
}

int main(int argc, char **argv)
{
	char msg[512];
	sigset_t sigs;
	bool is_seeded = false;
	int port = 0, rc;

	px.listener.fd = px.control_listener.fd = px.signals.fd = px.epfd = -1;
	rc = parse_args(argc, argv, &is_seeded);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (!is_seeded)
		px.seed = clock_seed();
	if (resolve("--target", px.target_arg, false, false, &px.target_addr, &px.target_len, msg,
		    sizeof(msg))) {
		fprintf(stderr, FP_PROG ": %s\n", msg);
		return FP_EXIT_FAIL;
	}
	log_init("faultproxy", LOG_LVL_INFO, 0);

	/* SIGTERM and SIGINT arrive only through the signalfd. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	rc = FP_EXIT_FAIL;
	if (sigprocmask(SIG_BLOCK, &sigs, NULL) != 0 || signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		fprintf(stderr, FP_PROG ": cannot set up signals: %s\n", strerror(errno));
		return FP_EXIT_FAIL;
	}
	px.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (px.epfd < 0) {
		fprintf(stderr, FP_PROG ": cannot create epoll: %s\n", strerror(errno));
		return FP_EXIT_FAIL;
	}
	px.signals = (struct watch){.kind = W_SIGNALS,
				    .fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)};
	if (px.signals.fd < 0 || watch_set(&px.signals, EPOLLIN) != 0) {
		fprintf(stderr, FP_PROG ": cannot watch signals: %s\n", strerror(errno));
		goto out_epoll;
	}
	if (open_listener(&port, msg, sizeof(msg)) != 0) {
		fprintf(stderr, FP_PROG ": %s\n", msg);
		goto out_signals;
	}
	if (watch_set(&px.listener, EPOLLIN) != 0) {
		fprintf(stderr, FP_PROG ": cannot watch the listener: %s\n", strerror(errno));
		goto out_listener;
	}
	if (px.control_path) {
		if (open_control(msg, sizeof(msg)) != 0) {
			fprintf(stderr, FP_PROG ": %s\n", msg);
			goto out_control;
		}
		if (watch_set(&px.control_listener, EPOLLIN) != 0) {
			fprintf(stderr, FP_PROG ": cannot watch the control socket: %s\n",
				strerror(errno));
			goto out_control;
		}
	}
	px.now_ms = clock_ms();
	/* last: once this line is out, the port and the control socket answer */
	log_info("event=listening addr=%s port=%d target=%s mode=%s seed=%" PRIu64
		 " stall_ms=%" PRIu64 "-%" PRIu64 " cut_after_bytes=%" PRIu64 "-%" PRIu64
		 " control=%s",
		 px.listen_arg, port, px.target_arg, mode_names[px.mode], px.seed, px.stall_ms.min,
		 px.stall_ms.max, px.cut_bytes.min, px.cut_bytes.max,
		 px.control_path ? px.control_path : "-");

	rc = run_loop() == 0 ? 0 : FP_EXIT_FAIL;

	conns_end_all(END_CLOSE, false, "stop");
	conns_free_dead();
	while (px.controls)
		control_free(px.controls);
out_control:
	if (px.control_listener.fd >= 0)
		watch_close(&px.control_listener, END_CLOSE, "control");
	if (px.is_control_bound && unlink(px.control_path) != 0 && errno != ENOENT)
		log_warn("event=unlink_failed path=%s error=\"%s\"", px.control_path,
			 strerror(errno));
out_listener:
	watch_close(&px.listener, END_CLOSE, "listener");
out_signals:
	if (px.signals.fd >= 0)
		watch_close(&px.signals, END_CLOSE, "signalfd");
out_epoll:
	fd_close(px.epfd, "epoll");
	if (rc == 0)
		log_info("event=stopped accepted=%" PRIu64 " cuts=%" PRIu64 " resets=%" PRIu64
			 " stalls=%" PRIu64,
			 px.st.accepted, px.st.cuts, px.st.resets, px.st.stalls);
	return rc;
}
