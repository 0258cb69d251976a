/*
 * repl_follow.c - rejoin, then follow the primary (repl_follow.h).
 *
 * Locks: f->lock guards the status fields, is_stopping, is_kicked and the
 * published bidi (woken under it; unpublished under it before it is freed).
 */
#include "repl_follow.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "role.h"
#include "rpc.h"
#include "stream.h"
#include "understudy.pb-c.h"
#include "wire.h"

#define emit(f, level, ...) event_emit((f)->on_event, (f)->arg, (level), __VA_ARGS__)
#define PULL_METHOD "/understudy.v1.Replication/Pull"

struct repl_follower {
	struct store *store;
	char ns[US_NAMESPACE_MAX_LEN + 1];
	char export_dir[US_DIR_MAX_LEN + 16];
	char addr[US_ADDR_MAX_LEN + 1];
	uint64_t heartbeat_ms;
	event_fn on_event;
	void (*on_took_over)(void *arg);
	void (*on_applied)(void *arg, uint64_t seq);
	void *arg;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool is_stopping;
	bool is_kicked;
	uint64_t attempts;          /* rejoin attempts that failed */
	struct rpc_bidi *b;         /* the pull in progress, for wakes */
	struct repl_follower_status st;
};

static bool is_stopping(struct repl_follower *f)
{
	bool v;

	pthread_mutex_lock(&f->lock);
	v = f->is_stopping;
	pthread_mutex_unlock(&f->lock);
	return v;
}

static void note_failure(struct repl_follower *f, const struct us_err *err)
{
	pthread_mutex_lock(&f->lock);
	f->st.last_rc = err->code;
	snprintf(f->st.last_error, sizeof(f->st.last_error), "%s", err->msg);
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static int send_ack(struct rpc_bidi *b, Understudy__V1__Ack *a, struct buf *tmp,
		    struct us_err *err)
{
	if (wire_pack(&a->base, tmp))
		return err_set(err, US_ENOMEM, "out of memory");
	return rpc_bidi_send(b, tmp->p, tmp->len, err);
}

static int send_hello(struct repl_follower *f, struct rpc_bidi *b, struct buf *tmp,
		      struct us_err *err)
{
	Understudy__V1__Ack a;
	Understudy__V1__PullHello h;
	struct store_position pos;

	store_get_position(f->store, &pos);
	understudy__v1__pull_hello__init(&h);
	h.namespace_ = f->ns;
	h.node_id = (char *)store_node_id(f->store);
	h.generation = pos.generation;
	h.last_seq = pos.seq;
	h.chain = pos.chain;
	h.heartbeat_ms = (uint32_t)f->heartbeat_ms;
	h.addr = f->addr;
	understudy__v1__ack__init(&a);
	a.body_case = UNDERSTUDY__V1__ACK__BODY_PULL_HELLO;
	a.pull_hello = &h;
	return send_ack(b, &a, tmp, err);
}

static int send_progress(struct rpc_bidi *b, uint64_t seq, struct buf *tmp, struct us_err *err)
{
	Understudy__V1__Ack a;
	Understudy__V1__Progress p;

	understudy__v1__progress__init(&p);
	p.applied_seq = seq;
	p.durable_seq = seq;
	understudy__v1__ack__init(&a);
	a.body_case = UNDERSTUDY__V1__ACK__BODY_PROGRESS;
	a.progress = &p;
	return send_ack(b, &a, tmp, err);
}

/* The primary's last seq is master: a rejoining store there is caught up. */
static void note_master(struct repl_follower *f, uint64_t master)
{
	struct store_position pos;
	struct us_err err;

	pthread_mutex_lock(&f->lock);
	if (master > f->st.master_seq)
		f->st.master_seq = master;
	master = f->st.master_seq;
	f->st.heard_ms = (int64_t)clock_wall_ms();
	pthread_mutex_unlock(&f->lock);
	store_get_position(f->store, &pos);
	if (store_role(f->store) != ROLE_REJOINING || pos.seq < master)
		return;
	if (store_caught_up(f->store, &err)) {
		emit(f, LOG_LVL_WARN, "ns=%s event=caught_up_failed reason=\"%s\"", f->ns, err.msg);
		return;
	}
	emit(f, LOG_LVL_INFO, "ns=%s event=caught_up role=standby seq=%" PRIu64, f->ns, pos.seq);
}

/* A switchover: this node is the primary from now on. Only at exactly the
 * handover's position (everything of the old primary's durable here). */
static int take_over(struct repl_follower *f, const Understudy__V1__Handover *h,
		     struct us_err *err)
{
	struct store_position pos;
	int rc;

	store_get_position(f->store, &pos);
	if (store_role(f->store) != ROLE_STANDBY || h->generation != pos.generation + 1 ||
	    h->first_seq != pos.seq + 1)
		return err_set(err, US_EPRECOND,
			       "a handover of generation %" PRIu64 " from seq %" PRIu64
			       " does not continue this node (%s at generation %" PRIu64
			       ", seq %" PRIu64 ")",
			       h->generation, h->first_seq, role_name(store_role(f->store)),
			       pos.generation, pos.seq);
	if ((rc = store_promote(f->store, &pos, err)))
		return rc;
	emit(f, LOG_LVL_WARN, "ns=%s event=took_over role=primary generation=%" PRIu64
	     " first_seq=%" PRIu64 " reason=\"switchover: this site is the namespace's primary\"",
	     f->ns, pos.generation, pos.seq + 1);
	if (f->on_took_over)
		f->on_took_over(f->arg);
	return 0;
}

static int on_frame(struct repl_follower *f, const uint8_t *msg, size_t len,
		    struct stream_frame *fr, bool *is_applied, struct us_err *err)
{
	Understudy__V1__Frame *m = (Understudy__V1__Frame *)wire_unpack(
		&understudy__v1__frame__descriptor, msg, len, err);
	int rc = 0;

	*is_applied = false;
	if (!m)
		return err->code;
	if (m->body_case == UNDERSTUDY__V1__FRAME__BODY_ENTRIES) {
		const Understudy__V1__Entries *e = m->entries;
		struct store_position pos;

		store_get_position(f->store, &pos);
		if (e->prev_chain != pos.chain)
			rc = err_set(err, US_EPRECOND,
				     "the primary's frame at seq %" PRIu64 " continues another history "
				     "(chain %016" PRIx64 ", here %016" PRIx64 ")",
				     e->first_seq, e->prev_chain, pos.chain);
		if (rc == 0)
			rc = stream_decode_entries(e->first_seq, e->count, e->raw_len, e->block.data,
						   e->block.len, fr, err);
		if (rc == 0)
			rc = store_apply_entries(f->store, e->first_seq, fr->entries, fr->n,
						 fr->raw.p, fr->raw.len, true, err);
		*is_applied = rc == 0;
		if (rc == 0 && f->on_applied)
			f->on_applied(f->arg, e->first_seq + e->count - 1);
		if (rc == 0)
			note_master(f, e->first_seq + e->count - 1);
	} else if (m->body_case == UNDERSTUDY__V1__FRAME__BODY_HEARTBEAT) {
		note_master(f, m->heartbeat->last_seq);
	} else if (m->body_case == UNDERSTUDY__V1__FRAME__BODY_HANDOVER) {
		rc = take_over(f, m->handover, err);
	} else {
		rc = err_set(err, US_EINVAL, "a pull takes Entries and Heartbeat frames, not case %d",
			     (int)m->body_case);
	}
	understudy__v1__frame__free_unpacked(m, NULL);
	return rc;
}

static int pull_session(struct repl_follower *f, struct rpc_channel **ch, bool *was_up,
			struct us_err *err)
{
	struct store_primary_info pi;
	struct stream_frame fr;
	struct rpc_bidi *b = NULL;
	struct buf tmp;
	uint64_t silence_ms = us_silence_ms(f->heartbeat_ms), last_heard = clock_mono_ms();
	bool is_progress_due = false;
	int rc;

	store_primary(f->store, &pi);
	if (!pi.addr[0])
		return err_set(err, US_EPRECOND, "this node does not know its primary's address");
	if (!*ch && (rc = rpc_channel_new(ch, pi.addr, NULL, err)))
		return rc;
	if ((rc = rpc_bidi_open(*ch, PULL_METHOD, 0, &b, err)))
		return rc;
	pthread_mutex_lock(&f->lock);
	f->b = b;
	snprintf(f->st.primary, sizeof(f->st.primary), "%s", pi.addr);
	pthread_mutex_unlock(&f->lock);
	buf_init(&tmp);
	stream_frame_init(&fr);
	rc = send_hello(f, b, &tmp, err);
	while (rc == 0 && !is_stopping(f)) {
		uint8_t *msg = NULL;
		size_t len = 0;
		bool is_applied = false;
		int ev = rpc_bidi_wait(b, (int)f->heartbeat_ms, &msg, &len, err);

		if (ev == RPC_BIDI_END) {
			rc = err->code ? err->code : err_set(err, US_EUNAVAIL, "the primary ended the pull");
			break;
		}
		if (ev == RPC_BIDI_MESSAGE) {
			last_heard = clock_mono_ms();
			if (!*was_up) {
				*was_up = true;
				pthread_mutex_lock(&f->lock);
				f->st.is_connected = true;
				f->st.last_rc = 0;
				f->st.last_error[0] = '\0';
				pthread_mutex_unlock(&f->lock);
				emit(f, LOG_LVL_INFO, "ns=%s event=following primary=%s", f->ns, pi.addr);
			}
			rc = on_frame(f, msg, len, &fr, &is_applied, err);
			free(msg);
			is_progress_due |= is_applied;
			if (rc == 0 && store_role(f->store) == ROLE_PRIMARY)
				break; /* took over: nothing to pull any more */
		} else if (ev == RPC_BIDI_TIMEOUT && clock_mono_ms() - last_heard > silence_ms) {
			rc = err_set(err, US_ETIMEOUT, "the primary %s said nothing for %" PRIu64 " ms",
				     pi.addr, silence_ms);
		}
		if (rc == 0 && is_progress_due && !rpc_bidi_is_sending(b)) {
			struct store_position pos;

			store_get_position(f->store, &pos);
			rc = send_progress(b, pos.seq, &tmp, err);
			is_progress_due = false;
		}
	}
	pthread_mutex_lock(&f->lock);
	f->b = NULL;
	f->st.is_connected = false;
	pthread_mutex_unlock(&f->lock);
	rpc_bidi_free(b);
	stream_frame_release(&fr);
	buf_release(&tmp);
	return rc;
}

static void *follow_main(void *arg)
{
	struct repl_follower *f = arg;
	struct rpc_channel *ch = NULL;
	uint64_t backoff = US_LINK_BACKOFF_MIN_MS;

	pthread_setname_np(pthread_self(), "us-follow");
	while (!is_stopping(f)) {
		enum ns_role role = store_role(f->store);
		struct us_err err;
		bool was_up = false;
		int rc = 0;

		err_clear(&err);
		if (role == ROLE_FENCED) {
			struct rejoin_opts o = {.store = f->store, .ns = f->ns,
						.export_dir = f->export_dir,
						.on_event = f->on_event, .arg = f->arg};
			struct rejoin_result res;

			rc = rejoin_run(&o, &res, &err);
			pthread_mutex_lock(&f->lock);
			if (rc == 0 && res.is_rewound)
				f->st.rejoin = res;
			pthread_mutex_unlock(&f->lock);
			if (rc == 0 && res.is_rewound && f->on_applied)
				f->on_applied(f->arg, res.to.seq);
			if (rc) {
				uint64_t n;

				pthread_mutex_lock(&f->lock);
				n = ++f->attempts;
				pthread_mutex_unlock(&f->lock);
				emit(f, n > 1 ? LOG_LVL_DEBUG : LOG_LVL_WARN,
				     "ns=%s event=rejoin_failed attempts=%" PRIu64 " code=%d reason=\"%s\"",
				     f->ns, n, rc, err.msg);
				note_failure(f, &err);
			} else {
				pthread_mutex_lock(&f->lock);
				f->attempts = 0;
				f->st.last_rc = 0;
				f->st.last_error[0] = '\0';
				pthread_cond_broadcast(&f->cond);
				pthread_mutex_unlock(&f->lock);
				backoff = US_LINK_BACKOFF_MIN_MS;
				continue;
			}
		} else if (role == ROLE_REJOINING || role == ROLE_STANDBY) {
			rc = pull_session(f, &ch, &was_up, &err);
			if (!is_stopping(f) && store_role(f->store) != ROLE_PRIMARY) {
				emit(f, was_up ? LOG_LVL_WARN : LOG_LVL_DEBUG,
				     "ns=%s event=pull_lost code=%d reason=\"%s\"", f->ns, rc, err.msg);
				note_failure(f, &err);
			}
			if (was_up)
				backoff = US_LINK_BACKOFF_MIN_MS;
			/* a hung connection would be shared by the next call: dial afresh */
			rpc_channel_free(ch);
			ch = NULL;
		}
		pthread_mutex_lock(&f->lock);
		if (!f->is_stopping && !f->is_kicked) {
			struct timespec until = clock_deadline(role == ROLE_PRIMARY ? 1000 : backoff);

			pthread_cond_timedwait(&f->cond, &f->lock, &until);
		}
		f->is_kicked = false;
		pthread_mutex_unlock(&f->lock);
		backoff = backoff * 2 > US_LINK_BACKOFF_MAX_MS ? US_LINK_BACKOFF_MAX_MS : backoff * 2;
	}
	rpc_channel_free(ch);
	return NULL;
}

int repl_follower_new(struct repl_follower **out, const struct repl_follower_opts *o,
		      struct us_err *err)
{
	struct repl_follower *f = calloc(1, sizeof(*f));

	if (!f)
		return err_set(err, US_ENOMEM, "out of memory");
	f->store = o->store;
	snprintf(f->ns, sizeof(f->ns), "%s", o->ns);
	snprintf(f->export_dir, sizeof(f->export_dir), "%s", o->export_dir);
	f->heartbeat_ms = o->heartbeat_ms ? o->heartbeat_ms : 1000;
	snprintf(f->addr, sizeof(f->addr), "%s", o->addr ? o->addr : "");
	f->on_event = o->on_event;
	f->on_took_over = o->on_took_over;
	f->on_applied = o->on_applied;
	f->arg = o->arg;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	/* a rejoin before a restart: its export is still the one to show */
	(void)store_rewound_export(f->store, f->st.rejoin.export_path,
				   sizeof(f->st.rejoin.export_path), &f->st.rejoin.exported, NULL);
	if (pthread_create(&f->thread, NULL, follow_main, f)) {
		pthread_cond_destroy(&f->cond);
		pthread_mutex_destroy(&f->lock);
		free(f);
		return err_set(err, US_ENOMEM, "cannot start the follower's thread");
	}
	*out = f;
	return 0;
}

void repl_follower_kick(struct repl_follower *f)
{
	pthread_mutex_lock(&f->lock);
	f->is_kicked = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

int repl_follower_wait_rejoined(struct repl_follower *f, uint64_t timeout_ms, struct us_err *err)
{
	struct timespec until = clock_deadline(timeout_ms);
	uint64_t failures;
	int rc = 0;

	pthread_mutex_lock(&f->lock);
	failures = f->attempts;
	f->is_kicked = true;
	pthread_cond_broadcast(&f->cond);
	while (store_role(f->store) == ROLE_FENCED) {
		if (f->attempts > failures) {
			rc = err_set(err, f->st.last_rc, "%s", f->st.last_error);
			break;
		}
		if (pthread_cond_timedwait(&f->cond, &f->lock, &until)) {
			rc = err_set(err, US_ETIMEOUT, "the rejoin did not end within %" PRIu64 " ms",
				     timeout_ms);
			break;
		}
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

void repl_follower_status(struct repl_follower *f, struct repl_follower_status *st)
{
	pthread_mutex_lock(&f->lock);
	*st = f->st;
	pthread_mutex_unlock(&f->lock);
}

void repl_follower_free(struct repl_follower *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->lock);
	f->is_stopping = true;
	if (f->b)
		rpc_bidi_wake(f->b);
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->thread, NULL);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	free(f);
}
