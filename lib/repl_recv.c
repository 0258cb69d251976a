/* repl_recv.c - see repl_recv.h. */
#include "repl_recv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "event.h"
#include "log.h"
#include "image_batch.h"
#include "names.h"
#include "disk.h"
#include "save.h"
#include "stream.h"
#include "understudy.pb-c.h"
#include "wire.h"


/* The receiving end: the daemon's hooks and the syncer. */
struct repl_recv {
	struct repl_recv_ops ops;
	pthread_t syncer;
	pthread_mutex_t sync_lock;  /* guards is_sync_needed, is_stopping */
	pthread_cond_t sync_cond;
	bool is_sync_needed;
	bool is_stopping;
};

/* An event for the daemon's log, through its hook: lib/ never logs. */
#define emit(ops, level, ...) event_emit((ops)->on_event, (ops)->arg, (level), __VA_ARGS__)


struct repl_push {
	struct repl_recv *r;
	struct rpc_call *call;
	pthread_mutex_t lock;       /* guards is_finished */
	bool is_finished;           /* rpc_call_finish done: the call is not touched again */
	struct repl_ns *ns;              /* set by the Hello (worker thread only) */
	struct repl_ns *hello_ns;        /* the namespace a Hello named, also when refused:
				     * where its refusals are counted */
	char node_id[64];
	struct stream_frame frame;  /* decode scratch (worker thread only) */
	struct buf out;             /* pack scratch for the worker's own sends */
	/* A full copy being received, SeedBegin .. SeedEnd (worker thread only):
	 * built aside in DATA_DIR/ns/.seed-NAME, swapped in whole at the end. */
	struct store *seed;
	struct store_position seed_pos;
	uint64_t seed_entries;
	struct save_queue seed_q;          /* the save file's pieces as they come */
	struct save_reader *seed_r;        /* reading it, from the header on */
	struct image_batch *seed_batch;    /* its entries, on their way into seed */
};

/* Ends the call once; later calls do nothing. */
static void push_finish(struct repl_push *p, int code, const char *msg)
{
	pthread_mutex_lock(&p->lock);
	if (!p->is_finished) {
		p->is_finished = true;
		rpc_call_finish(p->call, code, msg, NULL, 0);
	}
	pthread_mutex_unlock(&p->lock);
}

/* Packs an Ack and queues it, unless the call is finished. Caller holds no
 * push lock. */
static void push_send_ack(struct repl_push *p, Understudy__V1__Ack *ack, struct buf *tmp)
{
	if (wire_pack(&ack->base, tmp))
		return; /* out of memory: the site sees no ack and retries later */
	pthread_mutex_lock(&p->lock);
	if (!p->is_finished)
		rpc_call_push(p->call, tmp->p, tmp->len);
	pthread_mutex_unlock(&p->lock);
}

static void send_progress(struct repl_push *p, uint64_t applied, uint64_t durable, struct buf *tmp)
{
	Understudy__V1__Ack ack;
	Understudy__V1__Progress pr;

	understudy__v1__progress__init(&pr);
	pr.applied_seq = applied;
	pr.durable_seq = durable;
	understudy__v1__ack__init(&ack);
	ack.body_case = UNDERSTUDY__V1__ACK__BODY_PROGRESS;
	ack.progress = &pr;
	push_send_ack(p, &ack, tmp);
}

/* Tells the site it was superseded: this node is the primary now. */
static void send_fenced(struct repl_push *p, uint64_t generation, uint64_t first_seq)
{
	Understudy__V1__Ack ack;
	Understudy__V1__Fenced f;

	understudy__v1__fenced__init(&f);
	f.generation = generation;
	f.first_seq = first_seq;
	understudy__v1__ack__init(&ack);
	ack.body_case = UNDERSTUDY__V1__ACK__BODY_FENCED;
	ack.fenced = &f;
	push_send_ack(p, &ack, &p->out);
}

/* Refuses: logs, ends the call with code and the message. A site that is
 * refused retries (backing off up to US_LINK_BACKOFF_MAX_MS): the same
 * refusal again is logged at DEBUG, not once per retry. */
static void refuse(struct repl_push *p, const struct us_err *err)
{
	struct repl_ns *ns = p->ns ? p->ns : p->hello_ns;
	bool is_repeat = false;
	uint64_t n = 1;

	if (ns) {
		pthread_mutex_lock(&ns->lock);
		/* the same refusal of the same node again: one outage */
		is_repeat = ns->refusals > 0 && ns->refusal_code == err->code &&
			    strcmp(ns->refused_node, p->node_id) == 0;
		snprintf(ns->refused_node, sizeof(ns->refused_node), "%s", p->node_id);
		if (ns->refusals++ == 0)
			ns->refused_since_ms = (int64_t)clock_wall_ms();
		ns->refusal_code = err->code;
		snprintf(ns->refusal, sizeof(ns->refusal), "%.*s", (int)sizeof(ns->refusal) - 1,
			 err->msg);
		n = ns->refusals;
		pthread_mutex_unlock(&ns->lock);
	}
	emit(&p->r->ops, is_repeat ? LOG_LVL_DEBUG : LOG_LVL_WARN,
		  "ns=%s event=push_refused node=%s peer=%s code=%d refusals=%llu reason=\"%s\"",
		  ns ? ns->name : "-", p->node_id[0] ? p->node_id : "-",
		  rpc_call_peer(p->call), err->code, (unsigned long long)n, err->msg);
	push_finish(p, err->code, err->msg);
}

/* A frame of node applied: its outage of refusals is over (another node's
 * refusals go on counting: a second site with this namespace). ns->lock
 * held. */
static void note_applied(const struct repl_recv *r, struct repl_ns *ns, const char *node)
{
	if (ns->refusals == 0 || strcmp(ns->refused_node, node) != 0)
		return;
	emit(&r->ops, LOG_LVL_INFO, "ns=%s event=push_recovered refusals=%llu refused_ms=%lld", ns->name,
		 (unsigned long long)ns->refusals,
		 (long long)((int64_t)clock_wall_ms() - ns->refused_since_ms));
	ns->refusals = 0;
	ns->refusal[0] = '\0';
}

/* Keeps behind_since_ms: set when the site is first seen ahead of what is
 * applied here, cleared once caught up. ns->lock held. */
static void note_lag(struct repl_ns *ns, uint64_t applied)
{
	if (ns->master_seq <= applied)
		ns->behind_since_ms = 0;
	else if (ns->behind_since_ms == 0)
		ns->behind_since_ms = (int64_t)clock_wall_ms();
}

/* The site spoke (a frame that carries no position news: a full copy's). */
static void note_heard(struct repl_ns *ns)
{
	pthread_mutex_lock(&ns->lock);
	ns->heartbeat_ms = (int64_t)clock_wall_ms();
	pthread_mutex_unlock(&ns->lock);
}

/* ---- the syncer ---- */

static void *syncer_main(void *arg)
{
	struct repl_recv *r = arg;
	struct buf tmp;

	pthread_setname_np(pthread_self(), "us-syncer");
	buf_init(&tmp);
	pthread_mutex_lock(&r->sync_lock);
	for (;;) {
		while (!r->is_sync_needed && !r->is_stopping)
			pthread_cond_wait(&r->sync_cond, &r->sync_lock);
		if (!r->is_sync_needed && r->is_stopping)
			break;
		r->is_sync_needed = false;
		pthread_mutex_unlock(&r->sync_lock);

		bool is_retry_needed = false;

		for (size_t i = 0;; i++) {
			struct store_position pos;
			struct us_err err;
			uint64_t durable;
			struct repl_ns *ns;
			bool is_dirty;

			ns = r->ops.ns_at(r->ops.arg, i);
			if (!ns)
				break;
			pthread_mutex_lock(&ns->lock);
			is_dirty = ns->is_dirty;
			ns->is_dirty = false;
			pthread_mutex_unlock(&ns->lock);
			if (!is_dirty || repl_ns_acquire(ns, &err))
				continue; /* a full copy being swapped in is synced already */
			if (store_sync(ns->store, &durable, &err)) {
				/* one ERROR when syncing starts failing, retries at DEBUG */
				emit(&r->ops, ns->is_sync_failing ? LOG_LVL_DEBUG : LOG_LVL_ERROR,
					  "ns=%s event=sync_failed reason=\"%s\"", ns->name, err.msg);
				ns->is_sync_failing = true;
				repl_ns_release(ns);
				/* durable stays behind (the site keeps its journal); try
				 * again on the next round rather than wait for a frame */
				pthread_mutex_lock(&ns->lock);
				ns->is_dirty = true;
				pthread_mutex_unlock(&ns->lock);
				is_retry_needed = true;
				continue;
			}
			if (ns->is_sync_failing)
				emit(&r->ops, LOG_LVL_INFO, "ns=%s event=sync_recovered", ns->name);
			ns->is_sync_failing = false;
			store_get_position(ns->store, &pos);
			/* still a reader here: no swap or adopt can replace the store
			 * between its sync and the durable seq published from it */
			pthread_mutex_lock(&ns->lock);
			if (durable > ns->durable_seq)
				ns->durable_seq = durable;
			if (ns->push)
				send_progress(ns->push, pos.seq, ns->durable_seq, &tmp);
			pthread_mutex_unlock(&ns->lock);
			repl_ns_release(ns);
		}
		pthread_mutex_lock(&r->sync_lock);
		if (is_retry_needed && !r->is_stopping) {
			struct timespec ts = clock_deadline(1000);

			r->is_sync_needed = true;
			pthread_cond_timedwait(&r->sync_cond, &r->sync_lock, &ts);
		}
	}
	pthread_mutex_unlock(&r->sync_lock);
	buf_release(&tmp);
	return NULL;
}

static void request_sync(struct repl_recv *r, struct repl_ns *ns)
{
	pthread_mutex_lock(&ns->lock);
	ns->is_dirty = true;
	pthread_mutex_unlock(&ns->lock);
	pthread_mutex_lock(&r->sync_lock);
	r->is_sync_needed = true;
	pthread_cond_signal(&r->sync_cond);
	pthread_mutex_unlock(&r->sync_lock);
}

int repl_recv_new(struct repl_recv **out, const struct repl_recv_ops *ops, struct us_err *err)
{
	struct repl_recv *r = calloc(1, sizeof(*r));
	int rc;

	*out = NULL;
	if (!r)
		return err_set(err, US_ENOMEM, "out of memory");
	r->ops = *ops;
	pthread_mutex_init(&r->sync_lock, NULL);
	pthread_cond_init(&r->sync_cond, NULL);
	rc = pthread_create(&r->syncer, NULL, syncer_main, r);
	if (rc) {
		pthread_cond_destroy(&r->sync_cond);
		pthread_mutex_destroy(&r->sync_lock);
		free(r);
		return err_set(err, US_EIO, "cannot start the syncer thread: error %d", rc);
	}
	*out = r;
	return 0;
}

void repl_recv_free(struct repl_recv *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->sync_lock);
	r->is_stopping = true;
	pthread_cond_signal(&r->sync_cond);
	pthread_mutex_unlock(&r->sync_lock);
	pthread_join(r->syncer, NULL);
	pthread_cond_destroy(&r->sync_cond);
	pthread_mutex_destroy(&r->sync_lock);
	free(r);
}

/* ---- namespaces ---- */

void repl_ns_init(struct repl_ns *ns, const char *name)
{
	memset(ns, 0, sizeof(*ns));
	snprintf(ns->name, sizeof(ns->name), "%s", name);
	pthread_mutex_init(&ns->lock, NULL);
	pthread_mutex_init(&ns->apply_lock, NULL);
	pthread_cond_init(&ns->readers_cond, NULL);
}

void repl_ns_destroy(struct repl_ns *ns)
{
	pthread_mutex_destroy(&ns->lock);
	pthread_mutex_destroy(&ns->apply_lock);
	pthread_cond_destroy(&ns->readers_cond);
}

int repl_ns_acquire(struct repl_ns *ns, struct us_err *err)
{
	pthread_mutex_lock(&ns->lock);
	if (ns->is_swapping) {
		bool is_unavailable = !ns->store;

		pthread_mutex_unlock(&ns->lock);
		return err_set(err, US_EUNAVAIL,
			       is_unavailable
				       ? "namespace %s is unavailable: its store could not be opened "
					 "(see the archiver's log); it is tried again when its site "
					 "connects"
				       : "namespace %s is taking a full copy from its site: retry shortly",
			       ns->name);
	}
	ns->readers++;
	pthread_mutex_unlock(&ns->lock);
	return 0;
}

void repl_ns_release(struct repl_ns *ns)
{
	pthread_mutex_lock(&ns->lock);
	if (--ns->readers == 0)
		pthread_cond_broadcast(&ns->readers_cond);
	pthread_mutex_unlock(&ns->lock);
}

/* ---- frames ---- */

/* Every name and bound of a Hello, before anything of it is used or shown
 * (wire_unpack has already refused a NUL inside a string). */
static int check_hello(const Understudy__V1__Hello *h, struct us_err *err)
{
	int rc;

	if (h->protocol != US_PROTOCOL_VERSION)
		return err_set(err, US_EPRECOND, "protocol %u is not spoken here (want %d)",
			       h->protocol, US_PROTOCOL_VERSION);
	if ((rc = names_check_namespace(h->namespace_, strlen(h->namespace_), err)) ||
	    (rc = names_check_node_id(h->node_id, strlen(h->node_id), err)))
		return err_wrap(err, "hello");
	if (h->generation == 0 || h->generation > US_SEQ_MAX)
		return err_set(err, US_EINVAL, "hello: generation %llu out of range 1..%llu",
			       (unsigned long long)h->generation, (unsigned long long)US_SEQ_MAX);
	if (h->last_seq > US_SEQ_MAX)
		return err_set(err, US_EINVAL, "hello: last seq %llu over the limit of %llu",
			       (unsigned long long)h->last_seq, (unsigned long long)US_SEQ_MAX);
	if (h->first_seq > h->last_seq + 1)
		return err_set(err, US_EINVAL, "hello: first retained seq %llu is past last seq %llu",
			       (unsigned long long)h->first_seq, (unsigned long long)h->last_seq);
	if (h->heartbeat_ms > US_HEARTBEAT_MAX_MS)
		return err_set(err, US_EINVAL, "hello: heartbeat interval %u ms over the limit of %u",
			       h->heartbeat_ms, US_HEARTBEAT_MAX_MS);
	return 0;
}

/* The refusal of a site whose history differs from this copy's at seq. */
static int history_differs(const struct repl_ns *ns, uint64_t seq, struct us_err *err)
{
	return err_set(err, US_EPRECOND,
		       "namespace %s: the site's history differs from this copy's at seq %llu "
		       "(a site restored from an older copy or rebuilt from another save, or "
		       "another site): nothing applied; to replace this copy with the site's, "
		       "run `understudy adopt %s` on the archiver",
		       ns->name, (unsigned long long)seq, ns->name);
}

/* The site's retained journal begins at first_seq: this copy, which reaches
 * first_seq - 1, must hold the same history up to there. US_ENOTFOUND when
 * this copy's journal does not reach back so far (it began with a full copy):
 * then nothing is known either way. Caller holds ns->apply_lock. */
static int check_first_chain(const struct repl_ns *ns, const Understudy__V1__Hello *h,
			     struct us_err *err)
{
	uint64_t mine;
	int rc = store_chain_before(ns->store, h->first_seq, &mine, err);

	if (rc)
		return rc;
	return mine == h->first_chain ? 0 : history_differs(ns, h->first_seq - 1, err);
}

static int on_hello(struct repl_push *p, const Understudy__V1__Hello *h, struct us_err *err)
{
	Understudy__V1__Ack ack;
	Understudy__V1__Welcome w;
	struct store_position pos;
	struct repl_push *old;
	struct repl_ns *ns;
	int rc;

	if ((rc = check_hello(h, err)))
		return rc;
	snprintf(p->node_id, sizeof(p->node_id), "%s", h->node_id);
	rc = p->r->ops.get_ns(p->r->ops.arg, h->namespace_, false, &ns, err);
	if (rc == US_ENOTFOUND) {
		/* A new namespace starts at generation 1, seq 0: check the Hello
		 * against that before anything is created, so a refusal leaves no
		 * trace. */
		if (h->generation != 1)
			return err_set(err, US_EPRECOND,
				       "namespace %s: the site is at generation %llu, this archiver "
				       "has no copy of it yet (a new copy starts at generation 1)",
				       h->namespace_, (unsigned long long)h->generation);
		rc = p->r->ops.get_ns(p->r->ops.arg, h->namespace_, true, &ns, err);
	}
	if (rc)
		return rc;
	p->hello_ns = ns;
	pthread_mutex_lock(&ns->apply_lock);
	/* A store that did not open (at start, after a full copy) is tried
	 * again at each of its site's connections: space may be back. */
	if ((!ns->store || store_is_failed(ns->store)) && (rc = p->r->ops.reopen(p->r->ops.arg, ns, err))) {
		pthread_mutex_unlock(&ns->apply_lock);
		return err_wrap(err, "namespace %s is unavailable", ns->name);
	}
	store_get_position(ns->store, &pos);
	if (store_role(ns->store) == ROLE_PRIMARY && store_site_id(ns->store)[0] &&
	    strcmp(store_site_id(ns->store), h->node_id) == 0 && h->generation < pos.generation) {
		uint64_t first = 0;

		(void)store_generation_start(ns->store, pos.generation, &first, NULL);
		/* the site this copy took the role from: told in a message of its
		 * own that it is fenced (only it: another node is refused below
		 * and changes nothing there), then by the status */
		send_fenced(p, pos.generation, first);
		rc = err_set(err, US_EPRECOND,
			     "namespace %s was promoted here: this node is its primary at generation "
			     "%llu (from seq %llu); the site, at generation %llu, is fenced: its "
			     "commits go to the primary, and it rejoins to follow it",
			     ns->name, (unsigned long long)pos.generation, (unsigned long long)first,
			     (unsigned long long)h->generation);
	} else if (store_role(ns->store) == ROLE_PRIMARY) {
		rc = err_set(err, US_EPRECOND,
			     "namespace %s is primary here at generation %llu: it takes no stream "
			     "from node %s at generation %llu",
			     ns->name, (unsigned long long)pos.generation, h->node_id,
			     (unsigned long long)h->generation);
	} else if (h->generation != pos.generation)
		rc = err_set(err, US_EPRECOND,
			     "namespace %s: the site is at generation %llu, this archiver at %llu",
			     ns->name, (unsigned long long)h->generation,
			     (unsigned long long)pos.generation);
	else if (store_site_id(ns->store)[0] && strcmp(store_site_id(ns->store), h->node_id) != 0)
		/* One history a namespace: another site (or this one rebuilt
		 * with a new data dir) is never merged into this copy. */
		rc = err_set(err, US_EPRECOND,
			     "namespace %s holds the history of site node %s, not of node %s "
			     "(another site with this namespace, or one rebuilt elsewhere): "
			     "nothing applied; `understudy adopt %s` on the archiver accepts it",
			     ns->name, store_site_id(ns->store), h->node_id, ns->name);
	else if (h->last_seq < pos.seq)
		rc = err_set(err, US_EPRECOND,
			     "namespace %s: the site's last seq %llu is behind this archiver's %llu "
			     "(the site lost journal: restore it or rejoin)",
			     ns->name, (unsigned long long)h->last_seq, (unsigned long long)pos.seq);
	else if (h->last_seq == pos.seq && h->chain != pos.chain)
		rc = history_differs(ns, pos.seq, err);
	else if (h->first_seq > 1 && h->first_seq - 1 <= pos.seq &&
		 (rc = check_first_chain(ns, h, err)) == US_ENOTFOUND) {
		err_clear(err); /* this copy began with a full copy after first_seq */
		rc = 0;
	}
	if (rc == 0 && !store_site_id(ns->store)[0])
		rc = store_bind_site(ns->store, h->node_id, err);
	if (rc) {
		pthread_mutex_unlock(&ns->apply_lock);
		return rc;
	}
	pthread_mutex_lock(&ns->lock);
	old = ns->push;
	if (old) {
		emit(&p->r->ops, LOG_LVL_INFO, "ns=%s event=push_replaced node=%s", ns->name, p->node_id);
		push_finish(old, US_EUNAVAIL, "replaced by a newer connection of the same site");
	}
	ns->push = p;
	ns->is_connected = true;
	ns->silence_ms = us_silence_ms(h->heartbeat_ms);
	ns->master_seq = h->last_seq;
	note_lag(ns, pos.seq);
	ns->heartbeat_ms = (int64_t)clock_wall_ms();
	p->ns = ns;
	understudy__v1__welcome__init(&w);
	w.generation = pos.generation;
	w.applied_seq = pos.seq;
	w.durable_seq = ns->durable_seq;
	w.node_id = (char *)(p->r->ops.node_name ? p->r->ops.node_name : "");
	w.chain = pos.chain;
	understudy__v1__ack__init(&ack);
	ack.body_case = UNDERSTUDY__V1__ACK__BODY_WELCOME;
	ack.welcome = &w;
	push_send_ack(p, &ack, &p->out);
	pthread_mutex_unlock(&ns->lock);
	pthread_mutex_unlock(&ns->apply_lock);
	emit(&p->r->ops, LOG_LVL_INFO, "ns=%s event=push_attached node=%s peer=%s site_seq=%llu applied_seq=%llu",
		 ns->name, p->node_id, rpc_call_peer(p->call), (unsigned long long)h->last_seq,
		 (unsigned long long)pos.seq);
	return 0;
}

static int on_entries(struct repl_push *p, const Understudy__V1__Entries *e, struct us_err *err)
{
	struct repl_ns *ns = p->ns;
	bool is_attached;
	int rc;

	if ((rc = stream_decode_entries(e->first_seq, e->count, e->raw_len, e->block.data,
					e->block.len, &p->frame, err)))
		return rc;
	pthread_mutex_lock(&ns->apply_lock);
	pthread_mutex_lock(&ns->lock);
	is_attached = ns->push == p;
	pthread_mutex_unlock(&ns->lock);
	if (is_attached) {
		struct store_position pos;

		store_get_position(ns->store, &pos);
		if (e->first_seq == pos.seq + 1 && e->prev_chain != pos.chain) {
			pthread_mutex_unlock(&ns->apply_lock);
			return history_differs(ns, pos.seq, err);
		}
	}
	if (!is_attached)
		rc = err_set(err, US_EUNAVAIL, "replaced by a newer connection of the same site");
	else
		rc = store_apply_entries(ns->store, p->frame.first_seq, p->frame.entries,
					 p->frame.n, p->frame.raw.p, p->frame.raw.len, false, err);
	pthread_mutex_unlock(&ns->apply_lock);
	if (rc) {
		err_wrap(err, "namespace %s", ns->name);
		return rc;
	}
	pthread_mutex_lock(&ns->lock);
	if (e->first_seq + e->count - 1 > ns->master_seq)
		ns->master_seq = e->first_seq + e->count - 1;
	note_lag(ns, e->first_seq + e->count - 1);
	ns->heartbeat_ms = (int64_t)clock_wall_ms();
	note_applied(p->r, ns, p->node_id);
	pthread_mutex_unlock(&ns->lock);
	request_sync(p->r, ns);
	return 0;
}

/* Each push builds its copy in a directory of its own, ".seed-NAME.<push>",
 * so that a replaced push abandoning its copy never touches its successor's. */
static void seed_dir(const struct repl_push *p, char *out, size_t size)
{
	char prefix[64];

	snprintf(prefix, sizeof(prefix), ".seed-%p.", (const void *)p);
	p->r->ops.ns_dir(p->r->ops.arg, p->ns->name, prefix, out, size);
}

/* The copy's reading ends (taken or given up). */
static void seed_reader_end(struct repl_push *p)
{
	save_reader_free(p->seed_r);
	p->seed_r = NULL;
	save_queue_release(&p->seed_q);
	image_batch_free(p->seed_batch);
	p->seed_batch = NULL;
}

static void seed_abandon(struct repl_push *p)
{
	char dir[1400];

	seed_reader_end(p);
	if (!p->seed)
		return;
	store_close(p->seed);
	p->seed = NULL;
	seed_dir(p, dir, sizeof(dir));
	disk_rmtree(dir);
}

static int on_seed_begin(struct repl_push *p, const Understudy__V1__SeedBegin *b, struct us_err *err)
{
	struct store_opts o = p->r->ops.seed_opts;
	struct repl_ns *ns = p->ns;
	struct store_position pos;
	char dir[1400];
	int rc;

	bool is_open;

	if (p->seed)
		return err_set(err, US_EINVAL, "a second SeedBegin before SeedEnd");
	pthread_mutex_lock(&ns->apply_lock);
	is_open = ns->store != NULL; /* read once: another push may reopen it */
	if (is_open)
		store_get_position(ns->store, &pos);
	pthread_mutex_unlock(&ns->apply_lock);
	if (!is_open)
		return err_set(err, US_EUNAVAIL, "namespace %s is unavailable", ns->name);
	if (b->generation != pos.generation)
		return err_set(err, US_EPRECOND, "full copy of generation %llu, this archiver is at %llu",
			       (unsigned long long)b->generation, (unsigned long long)pos.generation);
	if (b->seq < pos.seq)
		return err_set(err, US_EPRECOND,
			       "full copy at seq %llu is older than this archiver's seq %llu",
			       (unsigned long long)b->seq, (unsigned long long)pos.seq);
	if (b->seq == pos.seq && b->chain != pos.chain)
		return history_differs(ns, pos.seq, err);
	seed_dir(p, dir, sizeof(dir));
	disk_rmtree(dir);
	p->seed_batch = image_batch_new();
	if (!p->seed_batch)
		return err_set(err, US_ENOMEM, "out of memory");
	if ((rc = store_open(&p->seed, dir, &o, err)))
		return err_wrap(err, "cannot start a full copy of %s", ns->name);
	p->seed_pos = (struct store_position){.generation = b->generation, .seq = b->seq,
					      .time_ms = b->time_ms, .chain = b->chain};
	p->seed_entries = 0;
	save_queue_init(&p->seed_q);
	emit(&p->r->ops, LOG_LVL_INFO, "ns=%s event=seed_begin node=%s seq=%llu", ns->name, p->node_id,
		 (unsigned long long)b->seq);
	note_heard(ns);
	return 0;
}

/* The save's header must be the copy SeedBegin announced. */
static int check_seed_header(const struct repl_push *p, const struct save_header *h,
			     struct us_err *err)
{
	if (h->kind != SAVE_KIND_SEED || strcmp(h->ns, p->ns->name) != 0 || h->scope_account[0] ||
	    h->generation != p->seed_pos.generation || h->seq != p->seed_pos.seq ||
	    h->time_ms != p->seed_pos.time_ms || h->chain != p->seed_pos.chain)
		return err_set(err, US_ECORRUPT,
			       "its save header (kind %u, namespace %s, seq %llu, generation %llu) is "
			       "not the copy SeedBegin announced (seq %llu, generation %llu)",
			       (unsigned)h->kind, h->ns, (unsigned long long)h->seq,
			       (unsigned long long)h->generation,
			       (unsigned long long)p->seed_pos.seq,
			       (unsigned long long)p->seed_pos.generation);
	return 0;
}

/* Reads what the queue holds into the copy: until the reader wants more
 * (SAVE_MORE), or the end of the save (0: the whole of it checked). */
static int seed_read(struct repl_push *p, struct us_err *err)
{
	struct entry e;
	int rc;

	if (!p->seed_r) {
		struct save_header h;

		if ((rc = save_reader_new(&p->seed_r, save_queue_source, &p->seed_q, &h, err)) ||
		    (rc = check_seed_header(p, &h, err)))
			return rc;
		return SAVE_MORE;
	}
	int got;

	while ((got = save_reader_next(p->seed_r, &e, err)) == 1) {
		if ((rc = image_batch_add(p->seed_batch, &e)))
			return err_set(err, rc, "out of memory");
		p->seed_entries++;
		if (image_batch_is_full(p->seed_batch) &&
		    (rc = image_batch_load(p->seed_batch, p->seed, err)))
			return rc;
	}
	if (got < 0)
		return got;
	/* at a frame's end, or the save's: what was read goes in now */
	if ((rc = image_batch_load(p->seed_batch, p->seed, err)))
		return rc;
	return got; /* 0: the end, checked; SAVE_MORE */
}

static int on_seed_data(struct repl_push *p, const Understudy__V1__SeedData *d, struct us_err *err)
{
	int rc;

	if (!p->seed)
		return err_set(err, US_EPRECOND, "a piece of a full copy without SeedBegin");
	if (p->seed_q.is_ended || (p->seed_r && save_reader_summary(p->seed_r)))
		return err_set(err, US_ECORRUPT, "full copy of %s: bytes after its save's trailer",
			       p->ns->name);
	if ((rc = save_queue_push(&p->seed_q, d->data.data, d->data.len, err)))
		return rc;
	rc = seed_read(p, err);
	if (rc < 0) {
		err_wrap(err, "full copy of %s", p->ns->name);
		return rc;
	}
	note_heard(p->ns);
	return 0;
}

static int on_seed_end(struct repl_push *p, const Understudy__V1__SeedEnd *e, struct us_err *err)
{
	struct repl_ns *ns = p->ns;
	char sdir[1400], ready_dir[1400];
	int rc;

	if (!p->seed)
		return err_set(err, US_EPRECOND, "SeedEnd without SeedBegin");
	/* the save's end: its trailer checked, or the copy refused */
	save_queue_end(&p->seed_q);
	if (!p->seed_r)
		return err_set(err, US_ECORRUPT, "full copy of %s ended before its save header",
			       ns->name);
	if ((rc = seed_read(p, err)) != 0) {
		if (rc > 0)
			rc = err_set(err, US_ECORRUPT, "its save has no trailer");
		return err_wrap(err, "full copy of %s", ns->name);
	}
	if (e->seq != p->seed_pos.seq || e->entries != p->seed_entries)
		return err_set(err, US_ECORRUPT,
			       "full copy ends at seq %llu with %llu entries, but began at seq %llu "
			       "and carried %llu",
			       (unsigned long long)e->seq, (unsigned long long)e->entries,
			       (unsigned long long)p->seed_pos.seq,
			       (unsigned long long)p->seed_entries);
	seed_reader_end(p);
	if ((rc = store_set_position(p->seed, &p->seed_pos, err)))
		return rc;
	store_close(p->seed);
	p->seed = NULL;
	seed_dir(p, sdir, sizeof(sdir));
	p->r->ops.ns_dir(p->r->ops.arg, ns->name, ".ready-", ready_dir, sizeof(ready_dir));
	pthread_mutex_lock(&ns->apply_lock);
	/* Only the attached push may swap, and never backwards: a push replaced
	 * while it was sending its copy gives it up. */
	pthread_mutex_lock(&ns->lock);
	rc = ns->push != p ? err_set(err, US_EUNAVAIL,
				     "replaced by a newer connection of the same site")
	     : !ns->store ? err_set(err, US_EUNAVAIL, "namespace %s is unavailable", ns->name)
			  : 0;
	if (rc == 0) {
		struct store_position pos;

		store_get_position(ns->store, &pos);
		if (pos.seq > p->seed_pos.seq)
			rc = err_set(err, US_EPRECOND, "full copy at seq %llu is older than seq %llu here",
				     (unsigned long long)p->seed_pos.seq,
				     (unsigned long long)pos.seq);
	}
	pthread_mutex_unlock(&ns->lock);
	if (rc == 0) {
		disk_rmtree(ready_dir);
		if (rename(sdir, ready_dir) != 0)
			rc = err_set(err, US_EIO, "cannot keep the full copy of %s: %s", ns->name,
				     strerror(errno));
	}
	if (rc == 0)
		rc = p->r->ops.swap_store(p->r->ops.arg, ns, err);
	pthread_mutex_unlock(&ns->apply_lock);
	disk_rmtree(sdir);
	if (rc)
		return rc;
	emit(&p->r->ops, LOG_LVL_INFO, "ns=%s event=seeded node=%s seq=%llu entries=%llu", ns->name, p->node_id,
		 (unsigned long long)e->seq, (unsigned long long)e->entries);
	/* the site may have spoken while the swap kept this worker busy */
	note_heard(ns);
	pthread_mutex_lock(&ns->lock);
	note_applied(p->r, ns, p->node_id);
	pthread_mutex_unlock(&ns->lock);
	send_progress(p, e->seq, e->seq, &p->out);
	return 0;
}

static int on_heartbeat(struct repl_push *p, const Understudy__V1__Heartbeat *h, struct us_err *err)
{
	struct repl_ns *ns = p->ns;
	struct store_position pos;
	uint64_t durable;

	if (h->last_seq > US_SEQ_MAX)
		return err_set(err, US_EINVAL, "heartbeat: last seq %llu over the limit of %llu",
			       (unsigned long long)h->last_seq, (unsigned long long)US_SEQ_MAX);
	pthread_mutex_lock(&ns->lock);
	if (ns->push != p || !ns->store) {
		pthread_mutex_unlock(&ns->lock);
		return err_set(err, US_EUNAVAIL, "replaced by a newer connection, or the namespace "
			       "was adopted or is unavailable");
	}
	store_get_position(ns->store, &pos);
	if (h->last_seq > ns->master_seq)
		ns->master_seq = h->last_seq;
	note_lag(ns, pos.seq);
	ns->heartbeat_ms = (int64_t)clock_wall_ms();
	durable = ns->durable_seq;
	pthread_mutex_unlock(&ns->lock);
	/* The answer is the heartbeat the other way. */
	send_progress(p, pos.seq, durable, &p->out);
	return 0;
}

static void *push_open(struct rpc_call *call, void *arg)
{
	struct repl_push *p = calloc(1, sizeof(*p));

	if (!p) {
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		return NULL;
	}
	p->r = arg;
	p->call = call;
	pthread_mutex_init(&p->lock, NULL);
	stream_frame_init(&p->frame);
	buf_init(&p->out);
	if (rpc_call_recv_more(call))
		push_finish(p, US_EIO, "cannot read the stream");
	return p;
}

static void push_message(struct rpc_call *call, void *ctx, const uint8_t *msg, size_t len)
{
	struct repl_push *p = ctx;
	struct us_err err;
	Understudy__V1__Frame *f = (Understudy__V1__Frame *)wire_unpack(
		&understudy__v1__frame__descriptor, msg, len, &err);
	int rc = 0;

	if (!f) {
		rc = err.code;
	} else if (f->body_case == UNDERSTUDY__V1__FRAME__BODY_HELLO) {
		rc = p->ns ? err_set(&err, US_EINVAL, "a second Hello on one stream")
			   : on_hello(p, f->hello, &err);
	} else if (!p->ns) {
		rc = err_set(&err, US_EPRECOND, "the first frame must be a Hello");
	} else if (f->body_case == UNDERSTUDY__V1__FRAME__BODY_ENTRIES) {
		rc = p->seed ? err_set(&err, US_EPRECOND, "entries inside a full copy")
			     : on_entries(p, f->entries, &err);
	} else if (f->body_case == UNDERSTUDY__V1__FRAME__BODY_HEARTBEAT) {
		rc = on_heartbeat(p, f->heartbeat, &err);
	} else if (f->body_case == UNDERSTUDY__V1__FRAME__BODY_SEED_BEGIN) {
		rc = on_seed_begin(p, f->seed_begin, &err);
	} else if (f->body_case == UNDERSTUDY__V1__FRAME__BODY_SEED_DATA) {
		rc = on_seed_data(p, f->seed_data, &err);
	} else if (f->body_case == UNDERSTUDY__V1__FRAME__BODY_SEED_CHUNK) {
		rc = err_set(&err, US_EPRECOND,
			     "a full copy in bare chunks (protocol 2): this archiver takes copies as "
			     "save files (protocol 3)");
	} else if (f->body_case == UNDERSTUDY__V1__FRAME__BODY_SEED_END) {
		rc = on_seed_end(p, f->seed_end, &err);
	} else {
		rc = err_set(&err, US_EINVAL, "frame with no known body (case %d)", (int)f->body_case);
	}
	if (f)
		understudy__v1__frame__free_unpacked(f, NULL);
	if (rc) {
		seed_abandon(p);
		refuse(p, &err);
		return;
	}
	if (rpc_call_recv_more(call))
		push_finish(p, US_EIO, "cannot read the stream");
}

static void push_end(struct rpc_call *call, void *ctx, bool is_cancelled)
{
	struct repl_push *p = ctx;

	(void)call;
	if (!p)
		return;
	if (p->ns) {
		pthread_mutex_lock(&p->ns->lock);
		if (p->ns->push == p) {
			p->ns->push = NULL;
			p->ns->is_connected = false;
			emit(&p->r->ops, LOG_LVL_INFO, "ns=%s event=push_detached node=%s cancelled=%d", p->ns->name,
				 p->node_id, is_cancelled);
		}
		pthread_mutex_unlock(&p->ns->lock);
	}
	push_finish(p, is_cancelled ? US_ECANCELLED : 0, is_cancelled ? "stream ended" : NULL);
	seed_abandon(p);
	stream_frame_release(&p->frame);
	buf_release(&p->out);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

void repl_recv_end_ns(struct repl_ns *ns, const char *why)
{
	pthread_mutex_lock(&ns->lock);
	if (ns->push) {
		push_finish(ns->push, US_EUNAVAIL, why);
		/* detached now: a frame of it still in flight is refused as
		 * replaced, never applied (its on_end finds itself detached) */
		ns->push = NULL;
		ns->is_connected = false;
	}
	pthread_mutex_unlock(&ns->lock);
}

void repl_recv_end_all(struct repl_recv *r)
{
	struct repl_ns *ns;

	for (size_t i = 0; (ns = r->ops.ns_at(r->ops.arg, i)) != NULL; i++) {
		pthread_mutex_lock(&ns->lock);
		if (ns->push)
			push_finish(ns->push, US_EUNAVAIL, "the archiver is stopping");
		pthread_mutex_unlock(&ns->lock);
	}
}

size_t repl_recv_methods(struct repl_recv *r, struct rpc_bidi_method *out, size_t max)
{
	if (max < 1)
		return 0;
	out[0] = (struct rpc_bidi_method){
		.path = "/understudy.v1.Replication/Push",
		.on_open = push_open,
		.on_message = push_message,
		.on_end = push_end,
		.arg = r,
	};
	return 1;
}
