/* guard.c - see guard.h. */
#include "guard.h"
#include "clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* A commit waiting: for admission (seq 0) or for an archiver's ack. */
struct waiter {
	uint64_t seq;
	uint64_t deadline_ms;   /* monotonic */
	void (*fn)(void *ctx, int rc, const struct us_err *err);
	void *ctx;
	struct waiter *next;
};

struct wlist {
	struct waiter *head, *tail;
};

struct guard {
	enum guard_mode mode;
	uint64_t max_lag_ms;
	uint64_t timeout_ms;
	enum guard_fallback fallback;
	struct store *store;
	char ns[64];
	pthread_t thread;

	pthread_mutex_t lock;      /* guards everything below */
	pthread_cond_t cond;
	uint64_t acked_seq;        /* the best archiver's durable seq */
	uint64_t oldest_unacked_ms;/* commit time of acked_seq + 1; 0: to be read */
	bool is_fallen_back;       /* sync answering as async until caught up */
	uint64_t fallback_seq;     /* caught up again once acked reaches this */
	bool is_block_warned;      /* the current block episode was logged */
	bool is_lag_warned;
	uint64_t stop_at_ms;       /* 0, or when waiting ends (shutdown) */
	bool is_stopping;
	struct wlist gates;        /* admissions waiting, FIFO */
	struct wlist acks;         /* answers waiting, FIFO in seq order */
};

static void wlist_push(struct wlist *l, struct waiter *w)
{
	w->next = NULL;
	if (l->tail)
		l->tail->next = w;
	else
		l->head = w;
	l->tail = w;
}

static struct waiter *wlist_pop(struct wlist *l)
{
	struct waiter *w = l->head;

	if (w) {
		l->head = w->next;
		if (!l->head)
			l->tail = NULL;
		w->next = NULL; /* detached: the caller chains it elsewhere */
	}
	return w;
}

/* Moves the whole list out (to run its continuations without the lock). */
static struct waiter *wlist_take(struct wlist *l)
{
	struct waiter *w = l->head;

	l->head = l->tail = NULL;
	return w;
}

static void run_all(struct waiter *w, int rc, const struct us_err *err)
{
	while (w) {
		struct waiter *next = w->next;

		w->fn(w->ctx, rc, err);
		free(w);
		w = next;
	}
}

/* How old the oldest update no archiver has durably is (ms); lock held. */
static uint64_t lag_ms(struct guard *g)
{
	struct store_position pos;
	uint64_t now = clock_wall_ms();

	store_get_position(g->store, &pos);
	if (pos.seq <= g->acked_seq)
		return 0;
	if (g->oldest_unacked_ms == 0) {
		struct buf rec;
		struct entry e;

		buf_init(&rec);
		if (store_journal_get(g->store, g->acked_seq + 1, &rec, &e, NULL) == 0)
			g->oldest_unacked_ms = e.time_ms;
		else
			g->oldest_unacked_ms = 1; /* trimmed unacknowledged (journal_max): as old as can be */
		buf_release(&rec);
	}
	return now > g->oldest_unacked_ms ? now - g->oldest_unacked_ms : 0;
}

static bool is_lag_ok(struct guard *g)
{
	return g->mode != GUARD_ASYNC || g->max_lag_ms == 0 || lag_ms(g) <= g->max_lag_ms;
}

static void *guard_main(void *arg)
{
	struct guard *g = arg;

	pthread_setname_np(pthread_self(), "us-guard");
	pthread_mutex_lock(&g->lock);
	while (!g->is_stopping) {
		struct waiter *go = NULL, *done = NULL, *refused = NULL, *stopped = NULL;
		/* refused is built newest-first; order does not matter for refusals */
		struct waiter **go_tail = &go, **done_tail = &done;
		uint64_t now = clock_mono_ms(), next = UINT64_MAX;
		struct us_err refusal, stop_err;

		/* Answers: acknowledged ones, or all while fallen back. */
		while (g->acks.head && (g->is_fallen_back || g->acks.head->seq <= g->acked_seq)) {
			*done_tail = wlist_pop(&g->acks);
			done_tail = &(*done_tail)->next;
		}
		if (g->is_fallen_back && g->acked_seq >= g->fallback_seq) {
			g->is_fallen_back = false;
			log_info("ns=%s event=sync_restored acked_seq=%llu", g->ns,
				 (unsigned long long)g->acked_seq);
		}
		if (g->acks.head && now >= g->acks.head->deadline_ms) {
			struct store_position pos;

			store_get_position(g->store, &pos);
			if (g->fallback == GUARD_FALLBACK_ASYNC) {
				g->is_fallen_back = true;
				g->fallback_seq = pos.seq;
				log_warn("ns=%s event=sync_fallback to=async waited_ms=%llu acked_seq=%llu "
					 "last_seq=%llu",
					 g->ns, (unsigned long long)g->timeout_ms,
					 (unsigned long long)g->acked_seq, (unsigned long long)pos.seq);
				while (g->acks.head) {
					*done_tail = wlist_pop(&g->acks);
					done_tail = &(*done_tail)->next;
				}
			} else if (!g->is_block_warned) {
				g->is_block_warned = true;
				log_warn("ns=%s event=sync_blocked waited_ms=%llu acked_seq=%llu last_seq=%llu",
					 g->ns, (unsigned long long)g->timeout_ms,
					 (unsigned long long)g->acked_seq, (unsigned long long)pos.seq);
			}
		}
		if (!g->acks.head)
			g->is_block_warned = false;
		/* Admissions: all of them once the lag is back under the bound. */
		if (g->gates.head && is_lag_ok(g)) {
			*go_tail = wlist_take(&g->gates);
			g->is_lag_warned = false;
		}
		while (g->gates.head && now >= g->gates.head->deadline_ms) {
			struct waiter *w = wlist_pop(&g->gates);

			w->next = refused;
			refused = w;
		}
		if (refused) {
			uint64_t lag = lag_ms(g);

			if (g->oldest_unacked_ms == 1)
				/* not in the journal: trimmed (journal_max), or a store
				 * restored from a save, whose image was never journaled */
				err_set(&refusal, US_EUNAVAIL,
					"commit refused: no archiver has this site's updates after seq "
					"%llu, and they are not in its journal (trimmed, or restored from "
					"a save): they reach an archiver only as a full copy (max_lag %llu "
					"ms)",
					(unsigned long long)g->acked_seq,
					(unsigned long long)g->max_lag_ms);
			else
				err_set(&refusal, US_EUNAVAIL,
					"commit refused: no archiver has this site's updates of the last "
					"%llu ms (max_lag %llu ms)",
					(unsigned long long)lag, (unsigned long long)g->max_lag_ms);
			if (!g->is_lag_warned) {
				g->is_lag_warned = true;
				log_warn("ns=%s event=max_lag_reached lag_ms=%llu max_lag_ms=%llu", g->ns,
					 (unsigned long long)lag, (unsigned long long)g->max_lag_ms);
			}
		}
		if (g->stop_at_ms && now >= g->stop_at_ms) {
			err_set(&stop_err, US_EUNAVAIL,
				"the collector is stopping: the commit is durable here but no archiver "
				"has acknowledged it");
			stopped = wlist_take(&g->acks);
			/* admissions never got written: refused with the plainer reason */
			if (g->gates.head) {
				err_set(&refusal, US_EUNAVAIL, "the collector is stopping: commit not written");
				struct waiter *w = wlist_take(&g->gates);
				while (w) {
					struct waiter *n = w->next;
					w->next = refused;
					refused = w;
					w = n;
				}
			}
		}
		pthread_mutex_unlock(&g->lock);
		run_all(done, 0, NULL);
		run_all(go, 0, NULL);
		run_all(refused, US_EUNAVAIL, &refusal);
		run_all(stopped, US_EUNAVAIL, &stop_err);
		pthread_mutex_lock(&g->lock);

		if (g->acks.head && g->acks.head->deadline_ms < next && !g->is_block_warned)
			next = g->acks.head->deadline_ms;
		if (g->gates.head) {
			/* the lag falls under the bound by itself as time passes only via
			 * acks, but check now and then in case an ack was missed */
			uint64_t t = g->gates.head->deadline_ms;

			if (now + 50 < t)
				t = now + 50;
			if (t < next)
				next = t;
		}
		if (g->stop_at_ms && g->stop_at_ms > now && g->stop_at_ms < next)
			next = g->stop_at_ms; /* once past, nothing waits: no deadline to keep */
		if (g->is_stopping)
			break;
		if ((g->acks.head && (g->is_fallen_back || g->acks.head->seq <= g->acked_seq)))
			continue;
		if (next == UINT64_MAX) {
			pthread_cond_wait(&g->cond, &g->lock);
		} else if (next > clock_mono_ms()) {
			struct timespec ts = clock_deadline(next - clock_mono_ms());

			pthread_cond_timedwait(&g->cond, &g->lock, &ts);
		}
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

int guard_new(struct guard **out, const struct guard_opts *o, struct us_err *err)
{
	struct guard *g = calloc(1, sizeof(*g));
	int rc;

	if (!g)
		return err_set(err, US_ENOMEM, "out of memory");
	g->mode = o->mode;
	g->max_lag_ms = o->max_lag_ms;
	g->timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
	g->fallback = o->fallback;
	g->store = o->store;
	snprintf(g->ns, sizeof(g->ns), "%s", o->ns);
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	rc = pthread_create(&g->thread, NULL, guard_main, g);
	if (rc) {
		pthread_cond_destroy(&g->cond);
		pthread_mutex_destroy(&g->lock);
		free(g);
		return err_set(err, US_EIO, "cannot start the guard thread: error %d", rc);
	}
	*out = g;
	return 0;
}

static int queue(struct guard *g, struct wlist *l, uint64_t seq, guard_done_fn fn, void *ctx)
{
	struct waiter *w = malloc(sizeof(*w));

	if (!w)
		return US_ENOMEM;
	*w = (struct waiter){.seq = seq, .deadline_ms = clock_mono_ms() + g->timeout_ms, .fn = fn,
			     .ctx = ctx};
	wlist_push(l, w);
	pthread_cond_signal(&g->cond);
	return 0;
}

void guard_admit(struct guard *g, guard_admit_fn go, void *ctx)
{
	struct us_err err;
	int rc;

	pthread_mutex_lock(&g->lock);
	if (!g->gates.head && is_lag_ok(g)) {
		pthread_mutex_unlock(&g->lock);
		go(ctx, 0, NULL);
		return;
	}
	rc = g->stop_at_ms ? US_EUNAVAIL : queue(g, &g->gates, 0, go, ctx);
	pthread_mutex_unlock(&g->lock);
	if (rc) {
		err_set(&err, rc, rc == US_ENOMEM ? "out of memory" : "the collector is stopping");
		go(ctx, rc, &err);
	}
}

void guard_await(struct guard *g, uint64_t last_seq, guard_done_fn done, void *ctx)
{
	struct us_err err;
	int rc;

	pthread_mutex_lock(&g->lock);
	if (g->mode != GUARD_SYNC || g->is_fallen_back || last_seq == 0 ||
	    last_seq <= g->acked_seq) {
		pthread_mutex_unlock(&g->lock);
		done(ctx, 0, NULL);
		return;
	}
	rc = queue(g, &g->acks, last_seq, done, ctx);
	pthread_mutex_unlock(&g->lock);
	if (rc) {
		err_set(&err, rc, "out of memory");
		done(ctx, rc, &err);
	}
}

void guard_acked(struct guard *g, uint64_t durable_seq)
{
	pthread_mutex_lock(&g->lock);
	if (durable_seq > g->acked_seq) {
		g->acked_seq = durable_seq;
		g->oldest_unacked_ms = 0;
		pthread_cond_signal(&g->cond);
	}
	pthread_mutex_unlock(&g->lock);
}

const char *guard_mode_name(struct guard *g)
{
	const char *s;

	pthread_mutex_lock(&g->lock);
	switch (g->mode) {
	case GUARD_ASYNC: s = "async"; break;
	case GUARD_SYNC: s = g->is_fallen_back ? "sync (fallen back to async)" : "sync"; break;
	default: s = "local"; break;
	}
	pthread_mutex_unlock(&g->lock);
	return s;
}

void guard_stop_waiting_after(struct guard *g, uint64_t grace_ms)
{
	pthread_mutex_lock(&g->lock);
	g->stop_at_ms = clock_mono_ms() + grace_ms;
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

void guard_free(struct guard *g)
{
	struct waiter *acks, *gates;
	struct us_err err;

	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->is_stopping = true;
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->thread, NULL);
	acks = wlist_take(&g->acks);
	gates = wlist_take(&g->gates);
	err_set(&err, US_EUNAVAIL,
		"the collector is stopping: the commit is durable here but no archiver has "
		"acknowledged it");
	run_all(acks, US_EUNAVAIL, &err);
	err_set(&err, US_EUNAVAIL, "the collector is stopping: commit not written");
	run_all(gates, US_EUNAVAIL, &err);
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
	free(g);
}
