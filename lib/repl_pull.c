/*
 * repl_pull.c - Replication.Pull, the primary's end (repl_pull.h).
 *
 * A pull's context is held by two owners: its call (until on_end) and,
 * once the Hello was taken, its thread; the last one to let go frees it.
 * Locks: r->lock (the list of attached pulls) before a pull's lock.
 */
#include "repl_pull.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "names.h"
#include "role.h"
#include "stream.h"
#include "understudy.pb-c.h"
#include "wire.h"

struct pull {
	struct repl_pull *r;
	struct rpc_call *call;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned refs;             /* the call's, the thread's */
	bool is_finished;          /* rpc_call_finish was called */
	bool is_ended;             /* no more to send: on_end ran, or refused */
	bool is_woken;
	bool has_thread;
	pthread_t thread;
	struct ns_handle h;        /* held from the Hello to the thread's end */
	bool has_handle;
	char ns[US_NAMESPACE_MAX_LEN + 1];
	char node_id[US_NODE_ID_MAX_LEN + 1];
	char addr[US_ADDR_MAX_LEN + 1];   /* where the site serves (its Hello) */
	char peer[US_ADDR_MAX_LEN + 16];
	uint64_t heartbeat_ms;
	uint64_t next;             /* the next seq to send */
	uint64_t chain;            /* the history chain before next */
	uint64_t applied, durable; /* the site's last Progress */
	/* the last seq of each frame sent and not yet durable there, oldest first */
	uint64_t window[US_STREAM_WINDOW_FRAMES];
	size_t win_head, win_n;
	struct store_primary_info handover; /* check_hello's PULL_HANDOVER */
	struct pull *next_attached;
};

#define PULL_HANDOVER 1

struct repl_pull {
	struct repl_pull_ops ops;
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* a thread ended, or a site's Progress came */
	struct pull *attached;     /* one per namespace at most */
	unsigned threads;          /* pulls' threads still running */
};

#define emit(r, level, ...) event_emit((r)->ops.on_event, (r)->ops.arg, (level), __VA_ARGS__)

static void pull_unref(struct pull *p)
{
	bool is_last;

	pthread_mutex_lock(&p->lock);
	is_last = --p->refs == 0;
	pthread_mutex_unlock(&p->lock);
	if (!is_last)
		return;
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* Ends the call once (later calls do nothing) and wakes the thread. */
static void pull_finish(struct pull *p, int code, const char *msg)
{
	pthread_mutex_lock(&p->lock);
	if (!p->is_finished) {
		p->is_finished = true;
		rpc_call_finish(p->call, code, msg, NULL, 0);
	}
	p->is_ended = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void detach(struct pull *p)
{
	struct repl_pull *r = p->r;

	pthread_mutex_lock(&r->lock);
	for (struct pull **at = &r->attached; *at; at = &(*at)->next_attached) {
		if (*at == p) {
			*at = p->next_attached;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
}

/* Queues a Frame unless the call is finished: 0, or US_EUNAVAIL. */
static int push_frame(struct pull *p, Understudy__V1__Frame *f, struct buf *tmp)
{
	int rc = US_EUNAVAIL;

	if (wire_pack(&f->base, tmp))
		return US_ENOMEM;
	pthread_mutex_lock(&p->lock);
	if (!p->is_finished)
		rc = rpc_call_push(p->call, tmp->p, tmp->len);
	pthread_mutex_unlock(&p->lock);
	return rc;
}

static int send_heartbeat(struct pull *p, uint64_t last_seq, struct buf *tmp)
{
	Understudy__V1__Frame f;
	Understudy__V1__Heartbeat hb;

	understudy__v1__heartbeat__init(&hb);
	hb.time_ms = clock_wall_ms();
	hb.last_seq = last_seq;
	understudy__v1__frame__init(&f);
	f.body_case = UNDERSTUDY__V1__FRAME__BODY_HEARTBEAT;
	f.heartbeat = &hb;
	return push_frame(p, &f, tmp);
}

/* Tells the site it is the primary now, then ends the call OK. */
static int send_handover(struct pull *p, uint64_t generation, uint64_t first_seq)
{
	Understudy__V1__Frame f;
	Understudy__V1__Handover ho;
	struct buf tmp;
	int rc;

	understudy__v1__handover__init(&ho);
	ho.generation = generation;
	ho.first_seq = first_seq;
	understudy__v1__frame__init(&f);
	f.body_case = UNDERSTUDY__V1__FRAME__BODY_HANDOVER;
	f.handover = &ho;
	buf_init(&tmp);
	rc = push_frame(p, &f, &tmp);
	buf_release(&tmp);
	if (rc == 0)
		pull_finish(p, 0, NULL);
	return rc;
}

/* Sends the frame at p->next; *is_sent false when the journal ends before. */
static int send_entries(struct pull *p, struct buf *scratch, struct buf *block, struct buf *tmp,
			bool *is_sent, struct us_err *err)
{
	Understudy__V1__Frame f;
	Understudy__V1__Entries m;
	uint64_t first = 0, chain = p->chain;
	uint32_t count = 0, raw_len = 0;
	int rc;

	*is_sent = false;
	if ((rc = stream_build_entries(p->h.store, p->next, US_FRAME_TARGET_BYTES, scratch, block,
				       &first, &count, &raw_len, err)))
		return rc;
	if (count == 0)
		return 0;
	if ((rc = entry_block_chain(scratch->p, scratch->len, UINT64_MAX, &chain, err)))
		return rc;
	understudy__v1__entries__init(&m);
	m.first_seq = first;
	m.count = count;
	m.raw_len = raw_len;
	m.block.data = block->p;
	m.block.len = block->len;
	m.prev_chain = p->chain;
	understudy__v1__frame__init(&f);
	f.body_case = UNDERSTUDY__V1__FRAME__BODY_ENTRIES;
	f.entries = &m;
	if (wire_pack(&f.base, tmp))
		return err_set(err, US_ENOMEM, "out of memory");
	/* the window and next move with the send, so that a Progress for it
	 * (which may come at once) finds them */
	pthread_mutex_lock(&p->lock);
	rc = p->is_finished ? US_EUNAVAIL : rpc_call_push(p->call, tmp->p, tmp->len);
	if (rc == 0) {
		p->window[(p->win_head + p->win_n) % US_STREAM_WINDOW_FRAMES] = first + count - 1;
		p->win_n++;
		p->next = first + count;
		p->chain = chain;
	}
	pthread_mutex_unlock(&p->lock);
	if (rc)
		return err_set(err, rc, "the call ended");
	*is_sent = true;
	return 0;
}

/* Whether another frame may go: the window has room (p->lock held). */
static bool has_room(struct pull *p)
{
	return p->win_n < US_STREAM_WINDOW_FRAMES &&
	       (p->is_finished || rpc_call_queued_bytes(p->call) < US_STREAM_WINDOW_BYTES);
}

static void *pull_main(void *arg)
{
	struct pull *p = arg;
	struct repl_pull *r;
	struct buf scratch, block, tmp;
	uint64_t last_send = clock_mono_ms();
	struct us_err err;
	int rc = 0;

	pthread_setname_np(pthread_self(), "us-pull");
	buf_init(&scratch);
	buf_init(&block);
	buf_init(&tmp);
	for (;;) {
		struct store_position pos;
		bool is_sent = false, may_send;

		store_get_position(p->h.store, &pos);
		pthread_mutex_lock(&p->lock);
		if (p->is_ended) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		may_send = p->next <= pos.seq && has_room(p);
		pthread_mutex_unlock(&p->lock);
		if (may_send) {
			if ((rc = send_entries(p, &scratch, &block, &tmp, &is_sent, &err)))
				break;
		}
		if (is_sent) {
			last_send = clock_mono_ms();
			continue;
		}
		if (clock_mono_ms() - last_send >= p->heartbeat_ms) {
			if ((rc = send_heartbeat(p, pos.seq, &tmp))) {
				err_set(&err, rc, "cannot send a heartbeat");
				break;
			}
			last_send = clock_mono_ms();
		}
		pthread_mutex_lock(&p->lock);
		if (!p->is_ended && !p->is_woken) {
			struct timespec until = clock_deadline(p->heartbeat_ms);

			pthread_cond_timedwait(&p->cond, &p->lock, &until);
		}
		p->is_woken = false;
		pthread_mutex_unlock(&p->lock);
	}
	if (rc && rc != US_EUNAVAIL) {
		emit(p->r, LOG_LVL_WARN, "ns=%s event=pull_failed node=%s code=%d reason=\"%s\"",
		     p->ns, p->node_id, rc, err.msg);
		pull_finish(p, rc, err.msg);
	}
	/* the namespace back before the daemon may close it (repl_pull_free
	 * waits for this thread) */
	store_service_release(p->r->ops.store_ops, &p->h);
	buf_release(&scratch);
	buf_release(&block);
	buf_release(&tmp);
	detach(p);
	r = p->r;
	pull_unref(p);
	pthread_mutex_lock(&r->lock);
	r->threads--;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* Checks the Hello against ns's store (held in p->h): 0, or the refusal. */
static int check_hello(struct pull *p, const Understudy__V1__PullHello *h, struct us_err *err)
{
	struct store_position pos;
	const char *site = store_site_id(p->h.store);
	uint64_t chain;
	int rc;

	store_get_position(p->h.store, &pos);
	if (store_role(p->h.store) == ROLE_STANDBY) {
		struct store_primary_info pi;

		/* handed over to this site, which has not heard it yet (a crash
		 * of either side in between): tell it again */
		store_primary(p->h.store, &pi);
		if (pi.addr[0] && pi.generation == pos.generation &&
		    h->generation + 1 == pi.generation && h->last_seq + 1 == pi.first_seq &&
		    site[0] && strcmp(site, h->node_id) == 0) {
			p->handover = pi;
			return PULL_HANDOVER;
		}
	}
	if (store_role(p->h.store) != ROLE_PRIMARY)
		return err_set(err, US_EPRECOND,
			       "namespace %s is not primary on this node (role %s): pull from its "
			       "primary",
			       p->ns, role_name(store_role(p->h.store)));
	if (site[0] && strcmp(site, h->node_id) != 0)
		return err_set(err, US_EPRECOND,
			       "namespace %s is bound to site %s, not to node %s: a namespace has one "
			       "history",
			       p->ns, site, h->node_id);
	if (h->generation != pos.generation)
		return err_set(err, US_EPRECOND,
			       "the site of %s is at generation %" PRIu64 ", the primary at %" PRIu64
			       ": rejoin it first",
			       p->ns, h->generation, pos.generation);
	if (h->last_seq > pos.seq)
		return err_set(err, US_EPRECOND,
			       "the site of %s is at seq %" PRIu64 ", beyond the primary's %" PRIu64
			       ": its history differs; rejoin it",
			       p->ns, h->last_seq, pos.seq);
	if ((rc = store_chain_before(p->h.store, h->last_seq + 1, &chain, err))) {
		if (rc == US_ENOTFOUND)
			return err_set(err, US_ERANGE,
				       "the journal of %s retained here does not reach back to seq %" PRIu64
				       ": the site needs a full copy",
				       p->ns, h->last_seq + 1);
		return rc;
	}
	if (chain != h->chain)
		return err_set(err, US_EPRECOND,
			       "the site of %s is on another history at seq %" PRIu64
			       " (chain %016" PRIx64 ", here %016" PRIx64 "): rejoin it",
			       p->ns, h->last_seq, h->chain, chain);
	p->next = h->last_seq + 1;
	p->chain = chain;
	p->applied = p->durable = h->last_seq;
	return 0;
}

static int on_hello(struct pull *p, const Understudy__V1__PullHello *h, struct us_err *err)
{
	struct repl_pull *r = p->r;
	struct pull *old = NULL;
	int rc;

	if (!h->namespace_ || !h->node_id)
		return err_set(err, US_EINVAL, "PullHello without a namespace or node id");
	if ((rc = names_check_namespace(h->namespace_, strlen(h->namespace_), err)) ||
	    (rc = names_check_node_id(h->node_id, strlen(h->node_id), err)))
		return err_wrap(err, "PullHello");
	snprintf(p->ns, sizeof(p->ns), "%s", h->namespace_);
	snprintf(p->node_id, sizeof(p->node_id), "%s", h->node_id);
	p->heartbeat_ms = h->heartbeat_ms ? h->heartbeat_ms : 1000;
	if (p->heartbeat_ms > US_HEARTBEAT_MAX_MS)
		p->heartbeat_ms = US_HEARTBEAT_MAX_MS;
	if ((rc = store_service_acquire(r->ops.store_ops, p->ns, false, &p->h, err)))
		return rc;
	p->has_handle = true;
	if (h->addr)
		snprintf(p->addr, sizeof(p->addr), "%s", h->addr);
	if ((rc = check_hello(p, h, err)) == PULL_HANDOVER) {
		emit(r, LOG_LVL_INFO, "ns=%s event=handover_again node=%s generation=%" PRIu64
		     " first_seq=%" PRIu64, p->ns, p->node_id, p->handover.generation,
		     p->handover.first_seq);
		if (send_handover(p, p->handover.generation, p->handover.first_seq))
			return err_set(err, US_EUNAVAIL, "the call ended");
		return 0;
	}
	if (rc)
		return rc;
	pthread_mutex_lock(&r->lock);
	for (struct pull *q = r->attached; q; q = q->next_attached) {
		if (strcmp(q->ns, p->ns) == 0) {
			old = q;
			break;
		}
	}
	p->next_attached = r->attached;
	r->attached = p;
	if (old)
		pull_finish(old, US_EUNAVAIL, "replaced by a newer pull of the same namespace");
	p->refs++;
	p->has_thread = true;
	r->threads++;
	pthread_mutex_unlock(&r->lock);
	if (pthread_create(&p->thread, NULL, pull_main, p)) {
		detach(p);
		pthread_mutex_lock(&r->lock);
		r->threads--;
		pthread_mutex_unlock(&r->lock);
		p->refs--;
		p->has_thread = false;
		return err_set(err, US_ENOMEM, "cannot start the pull's thread");
	}
	pthread_detach(p->thread);
	emit(r, LOG_LVL_INFO, "ns=%s event=pull_attached node=%s peer=%s from_seq=%" PRIu64, p->ns,
	     p->node_id, p->peer, p->next);
	return 0;
}

static int on_progress(struct pull *p, const Understudy__V1__Progress *pr, struct us_err *err)
{
	pthread_mutex_lock(&p->lock);
	if (pr->applied_seq >= p->next || pr->durable_seq > pr->applied_seq) {
		pthread_mutex_unlock(&p->lock);
		return err_set(err, US_EINVAL,
			       "Progress applied %" PRIu64 " durable %" PRIu64
			       " beyond what was sent (%" PRIu64 ")",
			       pr->applied_seq, pr->durable_seq, p->next - 1);
	}
	if (pr->applied_seq > p->applied)
		p->applied = pr->applied_seq;
	if (pr->durable_seq > p->durable)
		p->durable = pr->durable_seq;
	while (p->win_n > 0 && p->window[p->win_head] <= p->durable) {
		p->win_head = (p->win_head + 1) % US_STREAM_WINDOW_FRAMES;
		p->win_n--;
	}
	p->is_woken = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_lock(&p->r->lock); /* repl_pull_wait_durable */
	pthread_cond_broadcast(&p->r->cond);
	pthread_mutex_unlock(&p->r->lock);
	return 0;
}

static void *pull_open(struct rpc_call *call, void *arg)
{
	struct pull *p = calloc(1, sizeof(*p));

	if (!p) {
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		return NULL;
	}
	p->r = arg;
	p->call = call;
	p->refs = 1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	snprintf(p->peer, sizeof(p->peer), "%s", rpc_call_peer(call));
	if (rpc_call_recv_more(call))
		pull_finish(p, US_EIO, "cannot read the stream");
	return p;
}

static void pull_message(struct rpc_call *call, void *ctx, const uint8_t *msg, size_t len)
{
	struct pull *p = ctx;
	struct us_err err;
	Understudy__V1__Ack *a = (Understudy__V1__Ack *)wire_unpack(&understudy__v1__ack__descriptor,
								     msg, len, &err);
	int rc;

	if (!a) {
		rc = err.code;
	} else if (a->body_case == UNDERSTUDY__V1__ACK__BODY_PULL_HELLO) {
		rc = p->has_handle ? err_set(&err, US_EINVAL, "a second PullHello on one stream")
				   : on_hello(p, a->pull_hello, &err);
	} else if (!p->has_thread) {
		rc = err_set(&err, US_EPRECOND, "the first message of a pull must be a PullHello");
	} else if (a->body_case == UNDERSTUDY__V1__ACK__BODY_PROGRESS) {
		rc = on_progress(p, a->progress, &err);
	} else if (a->body_case == UNDERSTUDY__V1__ACK__BODY_HEARTBEAT) {
		rc = 0;
	} else {
		rc = err_set(&err, US_EINVAL, "a pull takes PullHello, Progress and Heartbeat, not "
					      "case %d", (int)a->body_case);
	}
	if (a)
		understudy__v1__ack__free_unpacked(a, NULL);
	if (rc) {
		emit(p->r, LOG_LVL_WARN, "ns=%s event=pull_refused node=%s peer=%s code=%d reason=\"%s\"",
		     p->ns[0] ? p->ns : "-", p->node_id[0] ? p->node_id : "-", p->peer, rc, err.msg);
		pull_finish(p, rc, err.msg);
		return;
	}
	if (rpc_call_recv_more(call))
		pull_finish(p, US_EIO, "cannot read the stream");
}

static void pull_end(struct rpc_call *call, void *ctx, bool is_cancelled)
{
	struct pull *p = ctx;

	(void)call;
	if (!p)
		return;
	if (p->has_thread)
		emit(p->r, LOG_LVL_INFO, "ns=%s event=pull_detached node=%s cancelled=%d", p->ns,
		     p->node_id, is_cancelled);
	pull_finish(p, is_cancelled ? US_ECANCELLED : 0, is_cancelled ? "stream ended" : NULL);
	if (!p->has_thread && p->has_handle)
		store_service_release(p->r->ops.store_ops, &p->h);
	pull_unref(p);
}

int repl_pull_new(struct repl_pull **out, const struct repl_pull_ops *ops, struct us_err *err)
{
	struct repl_pull *r = calloc(1, sizeof(*r));

	if (!r)
		return err_set(err, US_ENOMEM, "out of memory");
	r->ops = *ops;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	*out = r;
	return 0;
}

void repl_pull_free(struct repl_pull *r)
{
	if (!r)
		return;
	/* the threads end once their calls did */
	pthread_mutex_lock(&r->lock);
	while (r->threads > 0)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

int repl_pull_wait_durable(struct repl_pull *r, const char *ns, uint64_t seq,
			   uint64_t deadline_ms, struct repl_pull_status *st)
{
	struct timespec until = clock_deadline(deadline_ms > clock_mono_ms()
						       ? deadline_ms - clock_mono_ms()
						       : 0);
	int rc = 0;

	for (;;) {
		repl_pull_status(r, ns, st);
		if (st->is_connected && st->durable_seq >= seq)
			return 0;
		if (!st->is_connected)
			return US_EUNAVAIL;
		if (rc == ETIMEDOUT || clock_mono_ms() >= deadline_ms)
			return US_ETIMEOUT;
		pthread_mutex_lock(&r->lock);
		rc = pthread_cond_timedwait(&r->cond, &r->lock, &until);
		pthread_mutex_unlock(&r->lock);
	}
}

size_t repl_pull_methods(struct repl_pull *r, struct rpc_bidi_method *out, size_t max)
{
	if (max < 1)
		return 0;
	out[0] = (struct rpc_bidi_method){
		.path = "/understudy.v1.Replication/Pull",
		.on_open = pull_open,
		.on_message = pull_message,
		.on_end = pull_end,
		.arg = r,
	};
	return 1;
}

void repl_pull_notify(struct repl_pull *r, const char *ns)
{
	pthread_mutex_lock(&r->lock);
	for (struct pull *p = r->attached; p; p = p->next_attached) {
		if (strcmp(p->ns, ns) != 0)
			continue;
		pthread_mutex_lock(&p->lock);
		p->is_woken = true;
		pthread_cond_signal(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	pthread_mutex_unlock(&r->lock);
}

void repl_pull_status(struct repl_pull *r, const char *ns, struct repl_pull_status *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&r->lock);
	for (struct pull *p = r->attached; p; p = p->next_attached) {
		if (strcmp(p->ns, ns) != 0)
			continue;
		pthread_mutex_lock(&p->lock);
		st->is_connected = !p->is_ended;
		snprintf(st->node_id, sizeof(st->node_id), "%s", p->node_id);
		snprintf(st->addr, sizeof(st->addr), "%s", p->addr);
		snprintf(st->peer, sizeof(st->peer), "%s", p->peer);
		st->applied_seq = p->applied;
		st->durable_seq = p->durable;
		st->sent_seq = p->next - 1;
		pthread_mutex_unlock(&p->lock);
		break;
	}
	pthread_mutex_unlock(&r->lock);
}

int repl_pull_hand_over(struct repl_pull *r, const char *ns, uint64_t generation,
			uint64_t first_seq)
{
	struct pull *p = NULL;
	int rc = US_EUNAVAIL;

	pthread_mutex_lock(&r->lock);
	for (p = r->attached; p; p = p->next_attached)
		if (strcmp(p->ns, ns) == 0)
			break;
	if (p)
		rc = send_handover(p, generation, first_seq);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

void repl_pull_end(struct repl_pull *r, const char *ns, const char *why)
{
	pthread_mutex_lock(&r->lock);
	for (struct pull *p = r->attached; p; p = p->next_attached) {
		if (!ns || strcmp(p->ns, ns) == 0)
			pull_finish(p, US_EUNAVAIL, why);
	}
	pthread_mutex_unlock(&r->lock);
}
