/*
 * snapshots.c - the table of open snapshots (snapshots.h).
 *
 * One array of entries under one mutex: a daemon holds tens of snapshots,
 * a few thousand at most, and each call scans it once. An entry is open
 * (snap set) or ended (snap NULL, why set), and an ended one is forgotten
 * once it has been ended for the ttl or when more than
 * US_SNAPSHOTS_ENDED_KEPT are ended (the oldest first).
 *
 * Invariant: an entry's store snapshot is freed only while no read uses it
 * (users == 0): releasing one that a Scan is reading marks it ended and
 * snapshots_done frees it when that read finishes.
 */
#include "snapshots.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "us_limits.h"

struct snap_entry {
	uint64_t id;
	char ns[US_NAMESPACE_MAX_LEN + 1];
	const struct store *store;   /* the store it reads (not dereferenced here) */
	struct store_snap *snap;     /* NULL once ended */
	struct store_position pos;
	unsigned users;              /* reads using it now */
	uint64_t idle_since_ms;      /* monotonic: last use ended (or opened) */
	/* ended */
	bool is_ended;
	int end_code;                /* US_ENOTFOUND or US_EPRECOND */
	char why[160];
	uint64_t ended_ms;           /* monotonic */
};

struct snapshots {
	pthread_mutex_t lock;
	pthread_cond_t cond;         /* the reaper waits on it */
	pthread_t reaper;
	bool is_stopping;
	uint64_t ttl_ms;
	uint32_t max_per_ns;
	struct snap_entry *v;
	size_t n, cap;
};

/* Caller holds t->lock. */
static struct snap_entry *find(struct snapshots *t, uint64_t id)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].id == id)
			return &t->v[i];
	return NULL;
}

static void remove_at(struct snapshots *t, size_t i)
{
	t->v[i] = t->v[--t->n];
}

/* Ends e: frees its store snapshot now, or when its last read finishes. */
static void end_entry(struct snap_entry *e, int code, const char *why)
{
	if (!e->is_ended) {
		e->is_ended = true;
		e->end_code = code;
		snprintf(e->why, sizeof(e->why), "%s", why);
		e->ended_ms = clock_mono_ms();
	}
	if (e->users == 0) {
		store_snap_free(e->snap);
		e->snap = NULL;
	}
}

/* Forgets the oldest ended entries past the bound. Caller holds t->lock. */
static void trim_ended(struct snapshots *t)
{
	size_t ended = 0;

	for (size_t i = 0; i < t->n; i++)
		ended += t->v[i].is_ended && !t->v[i].snap;
	while (ended > US_SNAPSHOTS_ENDED_KEPT) {
		size_t oldest = t->n;

		for (size_t i = 0; i < t->n; i++)
			if (t->v[i].is_ended && !t->v[i].snap &&
			    (oldest == t->n || t->v[i].ended_ms < t->v[oldest].ended_ms))
				oldest = i;
		remove_at(t, oldest);
		ended--;
	}
}

/* Ends what has been idle for the ttl and forgets what ended that long ago;
 * returns the ms until the next such moment (UINT64_MAX: none). Caller holds
 * t->lock. */
static uint64_t expire(struct snapshots *t, uint64_t now)
{
	uint64_t next = UINT64_MAX;
	char why[160];

	for (size_t i = 0; i < t->n;) {
		struct snap_entry *e = &t->v[i];
		uint64_t since = e->is_ended ? e->ended_ms : e->idle_since_ms;

		if (!e->is_ended && e->users > 0) {
			i++;
			continue;
		}
		if (now - since >= t->ttl_ms) {
			if (e->is_ended) {
				if (!e->snap) {
					remove_at(t, i);
					continue;
				}
			} else {
				snprintf(why, sizeof(why),
					 "expired after %llu ms without a read (snapshot_ttl)",
					 (unsigned long long)t->ttl_ms);
				end_entry(e, US_ENOTFOUND, why);
				since = e->ended_ms;
			}
		}
		if (since + t->ttl_ms - now < next && since + t->ttl_ms > now)
			next = since + t->ttl_ms - now;
		i++;
	}
	return next;
}

static void *reap(void *arg)
{
	struct snapshots *t = arg;

	pthread_setname_np(pthread_self(), "us-snapreap");
	pthread_mutex_lock(&t->lock);
	while (!t->is_stopping) {
		uint64_t next = expire(t, clock_mono_ms());

		if (next == UINT64_MAX) {
			pthread_cond_wait(&t->cond, &t->lock);
		} else {
			struct timespec until = clock_deadline(next);

			pthread_cond_timedwait(&t->cond, &t->lock, &until);
		}
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int snapshots_new(struct snapshots **out, uint64_t ttl_ms, uint32_t max_per_ns,
		  struct us_err *err)
{
	struct snapshots *t = calloc(1, sizeof(*t));

	if (!t)
		return err_set(err, US_ENOMEM, "out of memory");
	t->ttl_ms = ttl_ms ? ttl_ms : 1;
	t->max_per_ns = max_per_ns;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	if (pthread_create(&t->reaper, NULL, reap, t) != 0) {
		pthread_cond_destroy(&t->cond);
		pthread_mutex_destroy(&t->lock);
		free(t);
		return err_set(err, US_ENOMEM, "cannot start the snapshot reaper thread");
	}
	*out = t;
	return 0;
}

void snapshots_free(struct snapshots *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->is_stopping = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->reaper, NULL);
	for (size_t i = 0; i < t->n; i++)
		store_snap_free(t->v[i].snap);
	free(t->v);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* A new id: random, 1 .. 2^53 - 1, not in the table. Caller holds t->lock. */
static int new_id(struct snapshots *t, uint64_t *id, struct us_err *err)
{
	for (int tries = 0; tries < 16; tries++) {
		uint64_t r;

		if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
			return err_set(err, US_EIO, "cannot make a snapshot id: getrandom failed");
		r &= (UINT64_C(1) << 53) - 1;
		if (r != 0 && !find(t, r)) {
			*id = r;
			return 0;
		}
	}
	return err_set(err, US_EIO, "cannot make a snapshot id");
}

int snapshots_open(struct snapshots *t, const char *ns, struct store *s,
		   struct snapshot_info *out, struct us_err *err)
{
	struct snap_entry e = {0};
	size_t open = 0;
	int rc;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n; i++)
		open += !t->v[i].is_ended && strcmp(t->v[i].ns, ns) == 0;
	if (open >= t->max_per_ns) {
		rc = err_set(err, US_ETOOBIG,
			     "namespace %s has %zu open snapshots, the most max_snapshots allows: "
			     "release one (understudy release %s SNAP) or let one expire",
			     ns, open, ns);
		goto out_unlock;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct snap_entry *v = realloc(t->v, cap * sizeof(*v));

		if (!v) {
			rc = err_set(err, US_ENOMEM, "out of memory");
			goto out_unlock;
		}
		t->v = v;
		t->cap = cap;
	}
	if ((rc = new_id(t, &e.id, err)) || (rc = store_snap_new(s, &e.snap, err)))
		goto out_unlock;
	snprintf(e.ns, sizeof(e.ns), "%s", ns);
	e.store = s;
	e.pos = *store_snap_position(e.snap);
	e.idle_since_ms = clock_mono_ms();
	t->v[t->n++] = e;
	out->id = e.id;
	out->pos = e.pos;
	out->ttl_ms = t->ttl_ms;
	pthread_cond_broadcast(&t->cond); /* the reaper's next moment may be earlier */
out_unlock:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* Finds id for a use or a release: the open entry, or the refusal. Caller
 * holds t->lock. */
static int lookup(struct snapshots *t, const char *ns, uint64_t id, struct snap_entry **out,
		  struct us_err *err)
{
	struct snap_entry *e = find(t, id);

	if (!e || strcmp(e->ns, ns) != 0)
		return err_set(err, US_ENOTFOUND,
			       "no snapshot %llu in namespace %s (released, expired, or opened "
			       "before the daemon restarted): open a new one",
			       (unsigned long long)id, ns);
	if (e->is_ended)
		return err_set(err, e->end_code, "snapshot %llu of %s %s%s", (unsigned long long)id,
			       ns, e->why,
			       e->end_code == US_EPRECOND ? ": open a new snapshot" : "");
	*out = e;
	return 0;
}

int snapshots_use(struct snapshots *t, const char *ns, uint64_t id, const struct store *s,
		  const struct store_snap **snap, struct us_err *err)
{
	struct snap_entry *e = NULL;
	int rc;

	pthread_mutex_lock(&t->lock);
	if ((rc = lookup(t, ns, id, &e, err)) == 0) {
		if (e->store != s) {
			/* ended with its store, always (snapshots_end_store): a
			 * belt to those braces */
			rc = err_set(err, US_EPRECOND,
				     "snapshot %llu of %s reads a store that is no longer served: "
				     "open a new snapshot",
				     (unsigned long long)id, ns);
		} else {
			e->users++;
			*snap = e->snap;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void snapshots_done(struct snapshots *t, uint64_t id)
{
	struct snap_entry *e;

	pthread_mutex_lock(&t->lock);
	e = find(t, id);
	if (e && e->users > 0 && --e->users == 0) {
		e->idle_since_ms = clock_mono_ms();
		if (e->is_ended) {
			store_snap_free(e->snap);
			e->snap = NULL;
		}
		pthread_cond_broadcast(&t->cond); /* idle from now: the reaper times it */
	}
	pthread_mutex_unlock(&t->lock);
}

int snapshots_release(struct snapshots *t, const char *ns, uint64_t id, struct us_err *err)
{
	struct snap_entry *e = NULL;
	int rc;

	pthread_mutex_lock(&t->lock);
	if ((rc = lookup(t, ns, id, &e, err)) == 0) {
		end_entry(e, US_ENOTFOUND, "was released");
		trim_ended(t);
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void snapshots_end_store(struct snapshots *t, const struct store *s, const char *why)
{
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n; i++) {
		struct snap_entry *e = &t->v[i];

		if (e->store != s || !e->snap)
			continue;
		assert(e->users == 0); /* the caller waited out every read of s */
		end_entry(e, US_EPRECOND, why);
		e->store = NULL;
	}
	trim_ended(t);
	pthread_mutex_unlock(&t->lock);
}

size_t snapshots_count(struct snapshots *t, const char *ns)
{
	size_t n = 0;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->n; i++)
		n += !t->v[i].is_ended && strcmp(t->v[i].ns, ns) == 0;
	pthread_mutex_unlock(&t->lock);
	return n;
}
