/*
 * committer.c - group commit. See committer.h.
 *
 * Lock order: committer.lock is a leaf (nothing else is taken under it); the
 * store is called without it, so submitters never wait behind an fsync.
 */
#include "committer.h"
#include "clock.h"

#include <pthread.h>
#include <stdlib.h>

#include "us_limits.h"

struct pending {
	struct store_commit *c;
	size_t bytes;
	committer_done_fn done;
	void *arg;
	struct pending *next;
};

struct committer {
	struct store *s;         /* borrowed */
	pthread_t thread;
	pthread_mutex_t lock;    /* guards head, tail, is_stopping */
	pthread_cond_t cond;     /* signalled on submit and on stop */
	struct pending *head, *tail;
	bool is_stopping;
	committer_written_fn on_written; /* set before the first submit, then read-only */
	void *on_written_arg;
};

static void *writer_main(void *arg)
{
	struct committer *cm = arg;
	struct store_commit **group = malloc(US_GROUP_MAX_COMMITS * sizeof(*group));
	struct pending *batch[US_GROUP_MAX_COMMITS];

	pthread_setname_np(pthread_self(), "us-writer");
	for (;;) {
		size_t n = 0, bytes = 0;
		struct us_err err;

		pthread_mutex_lock(&cm->lock);
		while (!cm->head && !cm->is_stopping)
			pthread_cond_wait(&cm->cond, &cm->lock);
		if (!cm->head) {
			pthread_mutex_unlock(&cm->lock);
			break; /* stopping and drained */
		}
		/* Take what is queued, bounded; one commit always fits. */
		while (cm->head && n < US_GROUP_MAX_COMMITS &&
		       (n == 0 || bytes + cm->head->bytes <= US_GROUP_MAX_BYTES)) {
			struct pending *p = cm->head;

			cm->head = p->next;
			bytes += p->bytes;
			batch[n++] = p;
		}
		if (!cm->head)
			cm->tail = NULL;
		pthread_mutex_unlock(&cm->lock);

		if (!group) {
			for (size_t i = 0; i < n; i++) {
				batch[i]->c->rc = err_set(&batch[i]->c->err, US_ENOMEM,
							  "commit failed: out of memory");
			}
		} else {
			for (size_t i = 0; i < n; i++)
				group[i] = batch[i]->c;
			struct store_position before, after;

			/* Each commit's rc tells its outcome, also when the batch failed. */
			store_get_position(cm->s, &before);
			store_commit_group(cm->s, group, n, clock_wall_ms(), &err);
			store_get_position(cm->s, &after);
			if (cm->on_written && after.seq != before.seq)
				cm->on_written(cm->on_written_arg, after.seq);
		}
		for (size_t i = 0; i < n; i++) {
			batch[i]->done(batch[i]->c, batch[i]->arg);
			free(batch[i]);
		}
	}
	free(group);
	return NULL;
}

int committer_new(struct committer **out, struct store *s, struct us_err *err)
{
	struct committer *cm = calloc(1, sizeof(*cm));
	int rc;

	if (!cm)
		return err_set(err, US_ENOMEM, "cannot start writer: out of memory");
	cm->s = s;
	pthread_mutex_init(&cm->lock, NULL);
	pthread_cond_init(&cm->cond, NULL);
	rc = pthread_create(&cm->thread, NULL, writer_main, cm);
	if (rc) {
		pthread_cond_destroy(&cm->cond);
		pthread_mutex_destroy(&cm->lock);
		free(cm);
		return err_set(err, US_EIO, "cannot start writer thread: error %d", rc);
	}
	*out = cm;
	return 0;
}

void committer_on_written(struct committer *cm, committer_written_fn fn, void *arg)
{
	cm->on_written = fn;
	cm->on_written_arg = arg;
}

void committer_submit(struct committer *cm, struct store_commit *c, size_t bytes,
		      committer_done_fn done, void *arg)
{
	struct pending *p = malloc(sizeof(*p));

	if (!p) {
		c->rc = err_set(&c->err, US_ENOMEM, "commit refused: out of memory");
		done(c, arg);
		return;
	}
	*p = (struct pending){.c = c, .bytes = bytes, .done = done, .arg = arg};
	pthread_mutex_lock(&cm->lock);
	if (cm->is_stopping) {
		pthread_mutex_unlock(&cm->lock);
		free(p);
		c->rc = err_set(&c->err, US_EUNAVAIL, "commit refused: the server is shutting down");
		done(c, arg);
		return;
	}
	if (cm->tail)
		cm->tail->next = p;
	else
		cm->head = p;
	cm->tail = p;
	pthread_cond_signal(&cm->cond);
	pthread_mutex_unlock(&cm->lock);
}

void committer_free(struct committer *cm)
{
	if (!cm)
		return;
	pthread_mutex_lock(&cm->lock);
	cm->is_stopping = true;
	pthread_cond_signal(&cm->cond);
	pthread_mutex_unlock(&cm->lock);
	pthread_join(cm->thread, NULL);
	pthread_cond_destroy(&cm->cond);
	pthread_mutex_destroy(&cm->lock);
	free(cm);
}
