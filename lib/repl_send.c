/* repl_send.c - see repl_send.h. */
#include "repl_send.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "event.h"
#include "log.h"
#include "role.h"
#include "save.h"
#include "rpc.h"
#include "stream.h"
#include "understudy.pb-c.h"
#include "wire.h"
#include "us_limits.h"

#define PUSH_METHOD "/understudy.v1.Replication/Push"

/* An event for the daemon's log, through its hook: lib/ never logs. */
#define emit(ops, level, ...) event_emit((ops)->on_event, (ops)->arg, (level), __VA_ARGS__)

enum link_state {
	LINK_IDLE,       /* not connected; waiting out the backoff */
	LINK_CONNECTING, /* stream open, Hello sent, waiting for the Welcome */
	LINK_STREAMING,  /* sending frames, receiving acks */
	LINK_STOPPED,    /* repl_sender_free: the thread ends */
};

/* One frame sent and not yet durable on the archiver. */
struct inflight {
	uint64_t last_seq;
	size_t bytes;
};

struct repl_sender {
	char addr[US_ADDR_MAX_LEN + 1];
	char ns[US_NAMESPACE_MAX_LEN + 1];
	struct store *store;
	uint64_t heartbeat_ms;
	int index;
	struct repl_sender_ops ops;
	pthread_t thread;
	struct rpc_channel *ch;      /* the link thread's; NULL until (re)dialled */
	/* An archiver that sends nothing (no Progress, no answer to a heartbeat)
	 * this long is taken for hung although its TCP connection stands (a hung
	 * process, a black-holed route): the link drops the connection and dials
	 * a new one. See US_SILENCE_HEARTBEATS. */
	uint64_t silence_ms;
	/* The retry backoff (link thread only): US_LINK_BACKOFF_MIN_MS doubling
	 * to _MAX_MS after each failed session, started over only by real
	 * progress (note_progress), never by a Welcome alone: an archiver that
	 * welcomes, then refuses every frame, is retried at the slow pace.
	 * failures counts failed sessions since the last progress: one WARN at
	 * the first (the outage begins), DEBUG for the others, one INFO when
	 * progress ends the outage. */
	uint64_t backoff_ms;
	uint64_t failures;
	uint64_t down_since_ms;      /* monotonic: the outage's first failure */

	pthread_mutex_t lock;        /* guards the fields below */
	pthread_cond_t cond;         /* backoff wait; signalled by repl_sender_free */
	enum link_state state;
	bool is_stopping;
	struct rpc_bidi *bidi;       /* set while a stream is open: wake it under lock */
	bool is_connected;           /* welcomed, streaming */
	uint64_t acked_seq;
	uint64_t applied_seq;
};

static void set_state(struct repl_sender *l, enum link_state to)
{
	pthread_mutex_lock(&l->lock);
	/* STOPPED is final; the others cycle IDLE -> CONNECTING -> STREAMING. */
	assert(l->state != LINK_STOPPED);
	assert(to == LINK_STOPPED || to == LINK_IDLE ||
	       (to == LINK_CONNECTING && l->state == LINK_IDLE) ||
	       (to == LINK_STREAMING && l->state == LINK_CONNECTING));
	l->state = to;
	pthread_mutex_unlock(&l->lock);
}

static bool is_stopping(struct repl_sender *l)
{
	bool v;

	pthread_mutex_lock(&l->lock);
	v = l->is_stopping;
	pthread_mutex_unlock(&l->lock);
	return v;
}

/* Packs a Frame and starts sending it. */
static int send_frame(struct rpc_bidi *b, Understudy__V1__Frame *f, struct buf *tmp,
		      struct us_err *err)
{
	if (wire_pack(&f->base, tmp))
		return err_set(err, US_ENOMEM, "out of memory");
	return rpc_bidi_send(b, tmp->p, tmp->len, err);
}

static int send_hello(struct repl_sender *l, struct rpc_bidi *b, struct buf *tmp, struct us_err *err)
{
	Understudy__V1__Frame f;
	Understudy__V1__Hello h;
	struct store_position pos;
	uint64_t first = 0;
	int rc;

	understudy__v1__hello__init(&h);
	if ((rc = store_journal_first(l->store, &first, err)))
		return rc;
	store_get_position(l->store, &pos);
	if (first > 1 && (rc = store_chain_before(l->store, first, &h.first_chain, err)))
		return rc;
	h.namespace_ = l->ns;
	h.node_id = (char *)store_node_id(l->store);
	h.generation = pos.generation;
	h.last_seq = pos.seq;
	h.first_seq = first;
	h.protocol = US_PROTOCOL_VERSION;
	h.heartbeat_ms = (uint32_t)l->heartbeat_ms;
	h.chain = pos.chain;
	understudy__v1__frame__init(&f);
	f.body_case = UNDERSTUDY__V1__FRAME__BODY_HELLO;
	f.hello = &h;
	return send_frame(b, &f, tmp, err);
}

static int send_heartbeat(struct repl_sender *l, struct rpc_bidi *b, struct buf *tmp,
			  struct us_err *err)
{
	Understudy__V1__Frame f;
	Understudy__V1__Heartbeat h;
	struct store_position pos;

	store_get_position(l->store, &pos);
	understudy__v1__heartbeat__init(&h);
	h.time_ms = clock_wall_ms();
	h.last_seq = pos.seq;
	understudy__v1__frame__init(&f);
	f.body_case = UNDERSTUDY__V1__FRAME__BODY_HEARTBEAT;
	f.heartbeat = &h;
	return send_frame(b, &f, tmp, err);
}

/* The state of one connection, owned by the link thread. */
struct session {
	struct rpc_bidi *b;
	uint64_t next_seq;           /* first seq not yet sent */
	uint64_t chain;              /* the history chain before next_seq */
	/* The highest seq the archiver may hold: its Welcome's, then the last
	 * one sent (a full copy's seq from its SeedBegin). An ack past it is
	 * refused: it would let the site drop journal, or answer a sync commit,
	 * on a position the archiver cannot have. */
	uint64_t sent_upto;
	struct inflight win[US_STREAM_WINDOW_FRAMES];
	size_t win_head, win_n;      /* ring of frames sent, not yet durable */
	size_t win_bytes;
	uint64_t last_send_ms;       /* monotonic: for heartbeats */
	uint64_t last_recv_ms;       /* monotonic: the archiver's last message */
	/* A full copy was sent and the archiver has not answered yet: it is
	 * swapping the copy in (syncs, closes, reopens), which may take long, so
	 * silence is not counted until it answers (TCP keepalive still is). */
	bool is_seed_unanswered;
	bool was_up;                 /* this session got its welcome */
	uint64_t up_since_ms;        /* monotonic: when it did */
	bool is_silent;              /* it ended because the archiver went silent */
	struct buf scratch, block, msg;
};

/* Real progress (link thread): the backoff starts over; an outage ends. */
static void note_progress(struct repl_sender *l)
{
	if (l->failures > 0)
		emit(&l->ops, LOG_LVL_INFO, "ns=%s event=link_restored archiver=%s failures=%llu down_ms=%llu", l->ns,
			 l->addr, (unsigned long long)l->failures,
			 (unsigned long long)(clock_mono_ms() - l->down_since_ms));
	l->failures = 0;
	l->backoff_ms = US_LINK_BACKOFF_MIN_MS;
}

/* Handles one Ack; 0 or an error that ends the session. */
static int on_ack(struct repl_sender *l, struct session *ss, const uint8_t *msg, size_t len,
		  struct us_err *err)
{
	Understudy__V1__Ack *a =
		(Understudy__V1__Ack *)wire_unpack(&understudy__v1__ack__descriptor, msg, len, err);

	if (!a)
		return err_wrap(err, "archiver %s sent a bad ack", l->addr);
	if (a->body_case == UNDERSTUDY__V1__ACK__BODY_PROGRESS) {
		uint64_t durable = a->progress->durable_seq;
		bool is_progress;

		if (durable > ss->sent_upto || a->progress->applied_seq > ss->sent_upto ||
		    durable > a->progress->applied_seq) {
			err_set(err, US_ECORRUPT,
				"archiver %s acknowledged applied %llu, durable %llu, beyond what "
				"was sent to it (up to %llu)",
				l->addr, (unsigned long long)a->progress->applied_seq,
				(unsigned long long)durable, (unsigned long long)ss->sent_upto);
			understudy__v1__ack__free_unpacked(a, NULL);
			return err->code;
		}
		pthread_mutex_lock(&l->lock);
		is_progress = durable > l->acked_seq;
		if (durable > l->acked_seq)
			l->acked_seq = durable;
		if (a->progress->applied_seq > l->applied_seq)
			l->applied_seq = a->progress->applied_seq;
		pthread_mutex_unlock(&l->lock);
		if (is_progress)
			note_progress(l);
		if (l->ops.on_acked)
			l->ops.on_acked(l->ops.arg, durable);
		while (ss->win_n && ss->win[ss->win_head].last_seq <= durable) {
			ss->win_bytes -= ss->win[ss->win_head].bytes;
			ss->win_head = (ss->win_head + 1) % US_STREAM_WINDOW_FRAMES;
			ss->win_n--;
		}
	}
	understudy__v1__ack__free_unpacked(a, NULL);
	return 0;
}

/* Sends the next frame if there is journal to send and room in the window.
 * *is_sent tells whether it did. */
static int maybe_send_entries(struct repl_sender *l, struct session *ss, bool *is_sent,
			      struct us_err *err)
{
	Understudy__V1__Frame f;
	Understudy__V1__Entries e;
	struct store_position pos;
	uint64_t first;
	uint32_t count, raw_len;
	int rc;

	*is_sent = false;
	store_get_position(l->store, &pos);
	if (ss->next_seq > pos.seq || ss->win_n == US_STREAM_WINDOW_FRAMES ||
	    ss->win_bytes >= US_STREAM_WINDOW_BYTES)
		return 0;
	rc = stream_build_entries(l->store, ss->next_seq, US_FRAME_TARGET_BYTES, &ss->scratch,
				  &ss->block, &first, &count, &raw_len, err);
	if (rc)
		return rc;
	if (count == 0) {
		/* The position is past next_seq but the journal holds nothing from
		 * there: trimmed away, so this archiver needs a full copy. */
		if (ss->next_seq <= pos.seq)
			return err_set(err, US_ENOTFOUND, "journal entry %llu is not retained",
				       (unsigned long long)ss->next_seq);
		return 0;
	}
	uint64_t chain = ss->chain;

	if ((rc = entry_block_chain(ss->scratch.p, ss->scratch.len, UINT64_MAX, &chain, err)))
		return rc;
	understudy__v1__entries__init(&e);
	e.first_seq = first;
	e.count = count;
	e.raw_len = raw_len;
	e.block.data = ss->block.p;
	e.block.len = ss->block.len;
	e.prev_chain = ss->chain;
	understudy__v1__frame__init(&f);
	f.body_case = UNDERSTUDY__V1__FRAME__BODY_ENTRIES;
	f.entries = &e;
	if ((rc = send_frame(ss->b, &f, &ss->msg, err)))
		return rc;
	ss->win[(ss->win_head + ss->win_n) % US_STREAM_WINDOW_FRAMES] =
		(struct inflight){.last_seq = first + count - 1, .bytes = ss->msg.len};
	ss->win_n++;
	ss->win_bytes += ss->msg.len;
	ss->next_seq = first + count;
	ss->sent_upto = first + count - 1;
	ss->chain = chain;
	*is_sent = true;
	return 0;
}

/* Waits until the send in flight is done, handling acks meanwhile. */
static int wait_sent(struct repl_sender *l, struct session *ss, struct us_err *err)
{
	while (rpc_bidi_is_sending(ss->b)) {
		uint8_t *msg = NULL;
		size_t len = 0;
		int ev = rpc_bidi_wait(ss->b, 1000, &msg, &len, err);
		int rc;

		if (is_stopping(l)) {
			free(msg);
			return err_set(err, US_ECANCELLED, "stopping");
		}
		if (ev == RPC_BIDI_MESSAGE) {
			rc = on_ack(l, ss, msg, len, err);
			free(msg);
			if (rc)
				return rc;
		} else if (ev == RPC_BIDI_END) {
			return err->code ? err->code
					 : err_set(err, US_EUNAVAIL, "archiver %s ended the stream",
						   l->addr);
		} else if (ev < 0) {
			return ev;
		}
	}
	return 0;
}

/* The save writer's sink of a full copy: each piece (the header, a frame,
 * the trailer) goes as one SeedData. */
struct seed_out {
	struct repl_sender *l;
	struct session *ss;
};

static int send_seed_piece(void *arg, const uint8_t *p, size_t len, struct us_err *err)
{
	struct seed_out *so = arg;
	Understudy__V1__Frame f;
	Understudy__V1__SeedData d;
	int rc;

	if (is_stopping(so->l))
		return err_set(err, US_ECANCELLED, "stopping");
	understudy__v1__seed_data__init(&d);
	d.data.data = (uint8_t *)p;
	d.data.len = len;
	understudy__v1__frame__init(&f);
	f.body_case = UNDERSTUDY__V1__FRAME__BODY_SEED_DATA;
	f.seed_data = &d;
	if ((rc = wait_sent(so->l, so->ss, err)) || (rc = send_frame(so->ss->b, &f, &so->ss->msg, err)))
		return rc;
	return 0;
}

/* A full copy: SeedBegin, a save file of one consistent state in SeedData
 * pieces (docs/save-format.md), SeedEnd; the journal tail follows from the
 * copy's seq + 1. The site keeps committing. */
static int send_seed(struct repl_sender *l, struct session *ss, struct us_err *err)
{
	Understudy__V1__Frame f;
	Understudy__V1__SeedBegin sb;
	Understudy__V1__SeedEnd se;
	const struct store_image_opts ship = {.is_shipped_only = true};
	struct seed_out so = {.l = l, .ss = ss};
	struct store_image_iter *it;
	struct save_writer *w = NULL;
	struct save_summary sum;
	struct save_header h;
	struct store_position pos;
	struct entry e;
	int rc;

	if ((rc = store_image_iter_new(l->store, NULL, &ship, &it, &pos, err)))
		return rc;
	emit(&l->ops, LOG_LVL_INFO, "ns=%s event=seed_begin archiver=%s seq=%llu", l->ns, l->addr,
		 (unsigned long long)pos.seq);
	understudy__v1__seed_begin__init(&sb);
	sb.seq = pos.seq;
	sb.generation = pos.generation;
	sb.time_ms = pos.time_ms;
	sb.chain = pos.chain;
	ss->sent_upto = pos.seq;
	understudy__v1__frame__init(&f);
	f.body_case = UNDERSTUDY__V1__FRAME__BODY_SEED_BEGIN;
	f.seed_begin = &sb;
	if ((rc = wait_sent(l, ss, err)) || (rc = send_frame(ss->b, &f, &ss->msg, err)))
		goto out_it;
	memset(&h, 0, sizeof(h));
	h.kind = SAVE_KIND_SEED;
	snprintf(h.ns, sizeof(h.ns), "%s", l->ns);
	h.generation = pos.generation;
	h.seq = pos.seq;
	h.time_ms = pos.time_ms;
	h.chain = pos.chain;
	snprintf(h.creator, sizeof(h.creator), "%s", store_node_id(l->store));
	snprintf(h.site, sizeof(h.site), "%s", store_node_id(l->store));
	h.created_ms = clock_wall_ms();
	if ((rc = save_writer_new(&w, &h, send_seed_piece, &so, err)))
		goto out_it;
	while ((rc = store_image_iter_next(it, &e, err)) == 1)
		if ((rc = save_writer_add(w, &e, err)))
			goto out_it;
	if (rc < 0 || (rc = save_writer_finish(w, &sum, err)))
		goto out_it;
	understudy__v1__seed_end__init(&se);
	se.seq = pos.seq;
	se.entries = sum.entries;
	understudy__v1__frame__init(&f);
	f.body_case = UNDERSTUDY__V1__FRAME__BODY_SEED_END;
	f.seed_end = &se;
	if ((rc = wait_sent(l, ss, err)) || (rc = send_frame(ss->b, &f, &ss->msg, err)) ||
	    (rc = wait_sent(l, ss, err)))
		goto out_it;
	ss->next_seq = pos.seq + 1;
	ss->chain = pos.chain;
	emit(&l->ops, LOG_LVL_INFO, "ns=%s event=seed_sent archiver=%s seq=%llu entries=%llu bytes=%llu", l->ns,
		 l->addr, (unsigned long long)pos.seq, (unsigned long long)sum.entries,
		 (unsigned long long)sum.bytes);
out_it:
	save_writer_free(w);
	store_image_iter_free(it);
	return rc;
}

/* The archiver's copy must hold this site's history up to where it stands:
 * compares the Welcome's chain with this store's at that seq, and keeps it
 * as the chain before the first frame. A seq no longer retained here cannot
 * be compared: a full copy follows then, which replaces that copy. */
static int check_history(struct repl_sender *l, struct session *ss, const Understudy__V1__Welcome *w,
			 struct us_err *err)
{
	uint64_t mine;
	int rc = store_chain_before(l->store, w->applied_seq + 1, &mine, err);

	if (rc == US_ENOTFOUND) {
		ss->chain = 0;
		err_clear(err);
		return 0;
	}
	if (rc)
		return rc;
	if (mine != w->chain)
		return err_set(err, US_EPRECOND,
			       "archiver %s holds another history of namespace %s at seq %llu "
			       "(this data dir restored from elsewhere, or the archiver's copy is "
			       "another site's): not streaming to it; `understudy adopt %s` on the "
			       "archiver replaces its copy with this site's",
			       l->addr, l->ns, (unsigned long long)w->applied_seq, l->ns);
	ss->chain = mine;
	return 0;
}

/* Waits for the Welcome; fills ss->next_seq. */
static int await_welcome(struct repl_sender *l, struct session *ss, struct us_err *err)
{
	uint64_t deadline = clock_mono_ms() + US_LINK_WELCOME_TIMEOUT_MS;

	for (;;) {
		uint64_t now = clock_mono_ms();
		uint8_t *msg = NULL;
		size_t len = 0;
		int ev;

		if (now >= deadline) {
			ss->is_silent = true; /* the connection may be hung: dial afresh */
			return err_set(err, US_ETIMEOUT, "archiver %s sent no welcome within %d ms",
				       l->addr, US_LINK_WELCOME_TIMEOUT_MS);
		}
		ev = rpc_bidi_wait(ss->b, (int)(deadline - now), &msg, &len, err);
		if (ev == RPC_BIDI_END)
			return err->code ? err->code : err_set(err, US_EUNAVAIL,
							       "archiver %s ended the stream",
							       l->addr);
		if (ev < 0)
			return ev;
		if (is_stopping(l)) {
			free(msg);
			return err_set(err, US_ECANCELLED, "stopping");
		}
		if (ev != RPC_BIDI_MESSAGE)
			continue;
		Understudy__V1__Ack *a = (Understudy__V1__Ack *)wire_unpack(
			&understudy__v1__ack__descriptor, msg, len, NULL);
		free(msg);
		if (a && a->body_case == UNDERSTUDY__V1__ACK__BODY_FENCED) {
			const char *primary = a->fenced->primary[0] ? a->fenced->primary : l->addr;
			int rc = err_set(err, US_EPRECOND,
					 "superseded: the namespace's primary is %s at generation "
					 "%llu (from seq %llu): this site is fenced",
					 primary, (unsigned long long)a->fenced->generation,
					 (unsigned long long)a->fenced->first_seq);

			if (l->ops.on_fenced)
				l->ops.on_fenced(l->ops.arg, a->fenced->generation,
						 a->fenced->first_seq, primary);
			understudy__v1__ack__free_unpacked(a, NULL);
			return rc;
		}
		if (!a || a->body_case != UNDERSTUDY__V1__ACK__BODY_WELCOME) {
			if (a)
				understudy__v1__ack__free_unpacked(a, NULL);
			return err_set(err, US_ECORRUPT, "archiver %s did not answer with a welcome",
				       l->addr);
		}
		struct store_position pos;
		int rc = 0;

		store_get_position(l->store, &pos);
		if (a->welcome->generation != pos.generation)
			rc = err_set(err, US_EPRECOND,
				     "archiver %s is at generation %llu, this site at %llu",
				     l->addr, (unsigned long long)a->welcome->generation,
				     (unsigned long long)pos.generation);
		else if (a->welcome->applied_seq > pos.seq)
			rc = err_set(err, US_EPRECOND,
				     "archiver %s has applied up to seq %llu, beyond this site's %llu",
				     l->addr, (unsigned long long)a->welcome->applied_seq,
				     (unsigned long long)pos.seq);
		else if (a->welcome->durable_seq > a->welcome->applied_seq)
			rc = err_set(err, US_ECORRUPT,
				     "archiver %s says seq %llu is durable but only %llu applied",
				     l->addr, (unsigned long long)a->welcome->durable_seq,
				     (unsigned long long)a->welcome->applied_seq);
		if (rc == 0)
			rc = check_history(l, ss, a->welcome, err);
		if (rc == 0) {
			ss->next_seq = a->welcome->applied_seq + 1;
			ss->sent_upto = a->welcome->applied_seq;
			pthread_mutex_lock(&l->lock);
			l->applied_seq = a->welcome->applied_seq;
			l->acked_seq = a->welcome->durable_seq;
			pthread_mutex_unlock(&l->lock);
			if (l->ops.on_acked)
				l->ops.on_acked(l->ops.arg, a->welcome->durable_seq);
			/* during an outage, a Welcome is no news: link_restored is */
			emit(&l->ops, l->failures ? LOG_LVL_DEBUG : LOG_LVL_INFO,
				"ns=%s event=link_up archiver=%s resume_seq=%llu durable_seq=%llu "
				"last_seq=%llu",
				l->ns, l->addr, (unsigned long long)ss->next_seq,
				 (unsigned long long)a->welcome->durable_seq,
				 (unsigned long long)pos.seq);
		}
		understudy__v1__ack__free_unpacked(a, NULL);
		return rc;
	}
}

/* One connection, from open to failure (or stop). Returns the reason. */
static int run_session(struct repl_sender *l, struct session *ss, struct us_err *err)
{
	bool is_sending = false;
	int rc;

	if (!l->ch && (rc = rpc_channel_new(&l->ch, l->addr, NULL, err)))
		return rc;
	if ((rc = rpc_bidi_open(l->ch, PUSH_METHOD, 0, &ss->b, err)))
		return rc;
	pthread_mutex_lock(&l->lock);
	l->bidi = ss->b;
	rc = l->is_stopping; /* a stop that came before l->bidi was set woke nothing */
	pthread_mutex_unlock(&l->lock);
	if (rc)
		return err_set(err, US_ECANCELLED, "stopping");
	set_state(l, LINK_CONNECTING);
	if ((rc = send_hello(l, ss->b, &ss->msg, err)) || (rc = await_welcome(l, ss, err)))
		return rc;
	set_state(l, LINK_STREAMING);
	ss->was_up = true;
	ss->up_since_ms = clock_mono_ms();
	pthread_mutex_lock(&l->lock);
	l->is_connected = true;
	pthread_mutex_unlock(&l->lock);
	ss->last_send_ms = ss->last_recv_ms = clock_mono_ms();
	is_sending = rpc_bidi_is_sending(ss->b);

	while (!is_stopping(l)) {
		uint8_t *msg = NULL;
		size_t len = 0;
		int ev, timeout;

		if (!is_sending) {
			bool is_sent;

			rc = maybe_send_entries(l, ss, &is_sent, err);
			if (rc == US_ENOTFOUND) {
				/* The archiver's position is older than the retained
				 * journal: a full copy, then the tail. */
				if ((rc = send_seed(l, ss, err)))
					return rc;
				ss->is_seed_unanswered = true;
				continue;
			}
			if (rc)
				return rc;
			if (!is_sent && clock_mono_ms() - ss->last_send_ms >= l->heartbeat_ms) {
				if ((rc = send_heartbeat(l, ss->b, &ss->msg, err)))
					return rc;
				is_sent = true;
			}
			if (is_sent) {
				is_sending = true;
				ss->last_send_ms = clock_mono_ms();
			}
		}
		timeout = (int)l->heartbeat_ms;
		ev = rpc_bidi_wait(ss->b, timeout, &msg, &len, err);
		switch (ev) {
		case RPC_BIDI_MESSAGE:
			ss->last_recv_ms = clock_mono_ms();
			ss->is_seed_unanswered = false;
			rc = on_ack(l, ss, msg, len, err);
			free(msg);
			if (rc)
				return rc;
			break;
		case RPC_BIDI_SENT:
			is_sending = false;
			break;
		case RPC_BIDI_END:
			return err->code ? err->code
					 : err_set(err, US_EUNAVAIL, "archiver %s ended the stream",
						   l->addr);
		case RPC_BIDI_TIMEOUT:
		case RPC_BIDI_WOKEN:
			break;
		default:
			return ev < 0 ? ev : err_set(err, US_EIO, "unexpected stream event %d", ev);
		}
		if (l->failures && clock_mono_ms() - ss->up_since_ms >= US_LINK_BACKOFF_MAX_MS)
			note_progress(l); /* up and answered a whole backoff period */
		if (!ss->is_seed_unanswered && clock_mono_ms() - ss->last_recv_ms > l->silence_ms) {
			ss->is_silent = true;
			return err_set(err, US_ETIMEOUT, "archiver %s sent nothing for %llu ms",
				       l->addr, (unsigned long long)l->silence_ms);
		}
	}
	return err_set(err, US_ECANCELLED, "stopping");
}

static void end_session(struct repl_sender *l, struct session *ss)
{
	pthread_mutex_lock(&l->lock);
	l->bidi = NULL;
	l->is_connected = false;
	/* freed under the lock: repl_sender_notify wakes it under the same lock */
	rpc_bidi_free(ss->b);
	pthread_mutex_unlock(&l->lock);
	ss->b = NULL;
	ss->win_head = ss->win_n = 0;
	ss->win_bytes = 0;
	ss->is_seed_unanswered = false;
}

/* A backoff of ms, +-20 %: links that failed together do not retry in step. */
static uint64_t jitter_ms(uint64_t ms, unsigned *state)
{
	uint64_t span = ms * 2 / 5;

	return ms - ms / 5 + (span ? (uint64_t)rand_r(state) % (span + 1) : 0);
}

static void *link_main(void *arg)
{
	struct repl_sender *l = arg;
	struct session ss;
	unsigned rand_state = (unsigned)clock_mono_ms() ^ (unsigned)(uintptr_t)l;
	char name[16];

	snprintf(name, sizeof(name), "us-link-%d", l->index);
	pthread_setname_np(pthread_self(), name);
	memset(&ss, 0, sizeof(ss));
	buf_init(&ss.scratch);
	buf_init(&ss.block);
	buf_init(&ss.msg);
	while (!is_stopping(l)) {
		struct us_err err;
		struct timespec until;
		int rc;

		err_clear(&err);
		if (store_role(l->store) != ROLE_PRIMARY) {
			/* fenced, or following a primary elsewhere: nothing of
			 * this node's to send until it is primary again */
			until = clock_deadline(US_LINK_BACKOFF_MAX_MS / 5);
			pthread_mutex_lock(&l->lock);
			if (!l->is_stopping)
				pthread_cond_timedwait(&l->cond, &l->lock, &until);
			pthread_mutex_unlock(&l->lock);
			continue;
		}
		rc = run_session(l, &ss, &err);
		end_session(l, &ss);
		set_state(l, LINK_IDLE);
		if (ss.is_silent) {
			/* A new call would share the hung connection: dial afresh. */
			rpc_channel_free(l->ch);
			l->ch = NULL;
			ss.is_silent = false;
		}
		if (is_stopping(l))
			break;
		/* A session that stayed up a whole backoff period was real
		 * progress too (an idle site gets no new durable acks). */
		if (ss.was_up && clock_mono_ms() - ss.up_since_ms >= US_LINK_BACKOFF_MAX_MS)
			note_progress(l);
		if (l->failures++ == 0) {
			l->down_since_ms = clock_mono_ms();
			emit(&l->ops, LOG_LVL_WARN, "ns=%s event=link_lost archiver=%s code=%d retry_ms=%llu reason=\"%s\"",
				 l->ns, l->addr, rc, (unsigned long long)l->backoff_ms, err.msg);
		} else {
			emit(&l->ops, LOG_LVL_DEBUG, "ns=%s event=link_retry_failed archiver=%s failures=%llu code=%d "
				  "retry_ms=%llu reason=\"%s\"",
				  l->ns, l->addr, (unsigned long long)l->failures, rc,
				  (unsigned long long)l->backoff_ms, err.msg);
		}
		ss.was_up = false;
		until = clock_deadline(jitter_ms(l->backoff_ms, &rand_state));
		pthread_mutex_lock(&l->lock);
		while (!l->is_stopping &&
		       pthread_cond_timedwait(&l->cond, &l->lock, &until) == 0)
			;
		pthread_mutex_unlock(&l->lock);
		l->backoff_ms = l->backoff_ms * 2 > US_LINK_BACKOFF_MAX_MS ? US_LINK_BACKOFF_MAX_MS
									  : l->backoff_ms * 2;
	}
	buf_release(&ss.scratch);
	buf_release(&ss.block);
	buf_release(&ss.msg);
	return NULL;
}

int repl_sender_new(struct repl_sender **out, const struct repl_sender_opts *o, struct us_err *err)
{
	struct repl_sender *l = calloc(1, sizeof(*l));
	int rc;

	if (!l)
		return err_set(err, US_ENOMEM, "out of memory");
	snprintf(l->addr, sizeof(l->addr), "%s", o->addr);
	snprintf(l->ns, sizeof(l->ns), "%s", o->ns);
	l->store = o->store;
	l->heartbeat_ms = o->heartbeat_ms ? o->heartbeat_ms : 1000;
	l->silence_ms = us_silence_ms(l->heartbeat_ms);
	l->index = o->index;
	if (o->ops)
		l->ops = *o->ops;
	l->state = LINK_IDLE;
	l->backoff_ms = US_LINK_BACKOFF_MIN_MS;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	if ((rc = rpc_channel_new(&l->ch, l->addr, NULL, err)))
		goto out_free;
	rc = pthread_create(&l->thread, NULL, link_main, l);
	if (rc) {
		rc = err_set(err, US_EIO, "cannot start the link thread: error %d", rc);
		goto out_free;
	}
	*out = l;
	return 0;

out_free:
	rpc_channel_free(l->ch);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	free(l);
	return rc;
}

void repl_sender_notify(struct repl_sender *l, uint64_t last_seq)
{
	(void)last_seq;
	pthread_mutex_lock(&l->lock);
	if (l->bidi)
		rpc_bidi_wake(l->bidi);
	pthread_cond_broadcast(&l->cond); /* a link idle while not primary looks again */
	pthread_mutex_unlock(&l->lock);
}

void repl_sender_status(struct repl_sender *l, struct repl_sender_status *st)
{
	pthread_mutex_lock(&l->lock);
	snprintf(st->addr, sizeof(st->addr), "%s", l->addr);
	st->is_connected = l->is_connected;
	st->acked_seq = l->acked_seq;
	st->applied_seq = l->applied_seq;
	pthread_mutex_unlock(&l->lock);
}

void repl_sender_free(struct repl_sender *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->is_stopping = true;
	if (l->bidi)
		rpc_bidi_wake(l->bidi);
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->thread, NULL);
	set_state(l, LINK_STOPPED);
	rpc_channel_free(l->ch);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	free(l);
}
