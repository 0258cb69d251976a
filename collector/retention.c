/* retention.c - see retention.h. */
#include "retention.h"
#include "clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

#define RETENTION_PERIOD_MS 1000

struct retention {
	struct retention_opts o;
	char ns[64];
	pthread_t thread;
	pthread_mutex_t lock;   /* guards is_stopping */
	pthread_cond_t cond;
	bool is_stopping;
};

/* The last seq that may go now (0: none). */
static int trim_point(struct retention *r, uint64_t *upto, struct us_err *err)
{
	struct store_journal_iter *it;
	struct store_position pos;
	uint64_t limit, cutoff = clock_wall_ms(), seq, last_old = 0;
	struct entry e;
	int rc;

	*upto = 0;
	store_get_position(r->o.store, &pos);
	limit = pos.seq;
	for (size_t i = 0; i < r->o.n_links; i++) {
		struct repl_sender_status st;

		repl_sender_status(r->o.links[i], &st);
		if (st.acked_seq < limit)
			limit = st.acked_seq;
	}
	if (r->o.journal_max && pos.seq > r->o.journal_max && limit < pos.seq - r->o.journal_max)
		limit = pos.seq - r->o.journal_max;
	if (limit == 0)
		return 0;
	cutoff = cutoff > r->o.retention_ms ? cutoff - r->o.retention_ms : 0;
	if ((rc = store_journal_iter_new(r->o.store, 0, &it, err)))
		return rc;
	/* Records are in time order: stop at the first one too young or too new. */
	while ((rc = store_journal_iter_next(it, &seq, &e, NULL, NULL, err)) == 1) {
		if (seq > limit)
			break;
		if (e.time_ms > cutoff)
			break;
		/* Cut only at the end of a commit. Trim keeps whole blocks, so the
		 * journal may still begin inside a commit; what reads it resumes at
		 * an archiver's position, always after an END. */
		if (e.is_commit_end)
			last_old = seq;
	}
	store_journal_iter_free(it);
	if (rc < 0)
		return rc;
	*upto = last_old;
	return 0;
}

static void *retention_main(void *arg)
{
	struct retention *r = arg;

	bool is_failing = false; /* one ERROR when trimming starts failing, one INFO when it ends */

	pthread_setname_np(pthread_self(), "us-retention");
	pthread_mutex_lock(&r->lock);
	while (!r->is_stopping) {
		struct timespec ts;
		struct us_err err;
		uint64_t upto;

		pthread_mutex_unlock(&r->lock);
		if (trim_point(r, &upto, &err) == 0 && upto > 0) {
			if (store_journal_trim(r->o.store, upto, &err)) {
				log_event(is_failing ? LOG_LVL_DEBUG : LOG_LVL_ERROR,
					  "ns=%s event=trim_failed upto=%llu reason=\"%s\"", r->ns,
					  (unsigned long long)upto, err.msg);
				is_failing = true;
			} else {
				if (is_failing)
					log_info("ns=%s event=trim_recovered", r->ns);
				is_failing = false;
				log_debug("ns=%s event=journal_trimmed upto=%llu", r->ns,
					  (unsigned long long)upto);
			}
		}
		pthread_mutex_lock(&r->lock);
		ts = clock_deadline(RETENTION_PERIOD_MS);
		while (!r->is_stopping && pthread_cond_timedwait(&r->cond, &r->lock, &ts) == 0)
			;
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

int retention_new(struct retention **out, const struct retention_opts *o, struct us_err *err)
{
	struct retention *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return err_set(err, US_ENOMEM, "out of memory");
	r->o = *o;
	snprintf(r->ns, sizeof(r->ns), "%s", o->ns);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	rc = pthread_create(&r->thread, NULL, retention_main, r);
	if (rc) {
		pthread_cond_destroy(&r->cond);
		pthread_mutex_destroy(&r->lock);
		free(r);
		return err_set(err, US_EIO, "cannot start the retention thread: error %d", rc);
	}
	*out = r;
	return 0;
}

void retention_free(struct retention *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->is_stopping = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
