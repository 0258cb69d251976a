/*
 * switchover.c - hand a promoted namespace's primary role back to the site
 * that rejoined it (docs/failover.md, "Switchover"):
 *
 *   1. hold: the store refuses commits (store_hold_commits), naming the site;
 *   2. drain: an empty commit through the namespace's group commit comes
 *      back only after every group before it was written; the position is
 *      then final: last = its seq;
 *   3. wait until the site's pull reports last durable (at most timeout_ms;
 *      else the hold ends and nothing changed: the archiver stays primary);
 *   4. store_hand_over: generation + 1 from last + 1 is the site's, this
 *      store its standby, written in one synced batch;
 *   5. the pull gets a Handover and ends; the site promotes itself and
 *      streams to this archiver again.
 * A crash before 4 leaves the archiver primary at its generation; after it,
 * the site hears the Handover at its next pull (repl_pull.c), whichever
 * side crashed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "archiver.h"
#include "clock.h"
#include "log.h"
#include "role.h"

struct barrier {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool is_done;
};

static void barrier_done(struct store_commit *c, void *arg)
{
	struct barrier *b = arg;

	(void)c;
	pthread_mutex_lock(&b->lock);
	b->is_done = true;
	pthread_cond_signal(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

/* Returns once every commit group submitted before the call was written:
 * 0, or the committer's refusal to take the barrier (stopping, out of
 * memory; then the position may not be final). */
static int drain(struct committer *cm, struct us_err *err)
{
	struct store_commit c;
	struct barrier b = {.is_done = false};

	memset(&c, 0, sizeof(c)); /* empty: refused, after the groups before it */
	pthread_mutex_init(&b.lock, NULL);
	pthread_cond_init(&b.cond, NULL);
	committer_submit(cm, &c, 0, barrier_done, &b);
	pthread_mutex_lock(&b.lock);
	while (!b.is_done)
		pthread_cond_wait(&b.cond, &b.lock);
	pthread_mutex_unlock(&b.lock);
	pthread_cond_destroy(&b.cond);
	pthread_mutex_destroy(&b.lock);
	if (c.rc == US_EINVAL || c.rc == US_EPRECOND)
		return 0; /* refused as the empty commit it is: behind every group */
	return err_set(err, c.rc ? c.rc : US_EIO, "the namespace's group commit did not drain: %s",
		       c.rc ? c.err.msg : "an empty commit was taken");
}

/* Already handed over: to whom. */
static int switched_already(struct repl_ns *ns, struct archiver_switched *out, struct us_err *err)
{
	struct store_primary_info pi;
	struct store_position pos;

	store_primary(ns->store, &pi);
	store_get_position(ns->store, &pos);
	if (store_role(ns->store) != ROLE_STANDBY || !pi.addr[0] || pi.generation != pos.generation)
		return err_set(err, US_EPRECOND,
			       "namespace %s is %s here, not primary: there is nothing to switch "
			       "over (a switchover hands a namespace promoted here back to its site)",
			       ns->name, role_name(store_role(ns->store)));
	out->was_switched = true;
	snprintf(out->site, sizeof(out->site), "%s", store_site_id(ns->store));
	snprintf(out->site_addr, sizeof(out->site_addr), "%s", pi.addr);
	out->generation = pi.generation;
	out->first_seq = pi.first_seq;
	return 0;
}

int archiver_switchover(struct archiver *a, struct repl_ns *ns, uint64_t timeout_ms,
			struct archiver_switched *out, struct us_err *err)
{
	struct archiver_ns *an = archiver_ns_of(ns);
	struct repl_pull_status ps;
	struct store_primary_info to;
	struct store_position pos;
	struct committer *cm;
	char why[US_ERR_MSG_MAX];
	uint64_t began;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = repl_ns_acquire(ns, err)))
		return rc;
	if (store_role(ns->store) != ROLE_PRIMARY) {
		rc = switched_already(ns, out, err);
		goto out;
	}
	repl_pull_status(a->pull, ns->name, &ps);
	if (!ps.is_connected || strcmp(ps.node_id, store_site_id(ns->store)) != 0) {
		rc = err_set(err, US_EPRECOND,
			     "namespace %s: no site follows it here (its site rejoins first: it does "
			     "so by itself once fenced, or with understudy rejoin at the site); the "
			     "archiver stays primary",
			     ns->name);
		goto out;
	}
	if (!ps.addr[0]) {
		rc = err_set(err, US_EPRECOND,
			     "namespace %s: its site did not say where it serves (a site of an older "
			     "version): clients could not follow it; the archiver stays primary",
			     ns->name);
		goto out;
	}
	if (timeout_ms == 0 || timeout_ms > US_SWITCHOVER_WAIT_MAX_MS)
		timeout_ms = timeout_ms ? US_SWITCHOVER_WAIT_MAX_MS : US_SWITCHOVER_WAIT_MS;
	pthread_mutex_lock(&ns->lock);
	cm = an->committer;
	pthread_mutex_unlock(&ns->lock);
	began = clock_mono_ms();
	snprintf(why, sizeof(why),
		 "namespace %s is switching over to its site %s: this node takes no more commits "
		 "for it; commit there",
		 ns->name, ps.addr);
	store_hold_commits(ns->store, why);
	if (cm && (rc = drain(cm, err))) {
		store_release_commits(ns->store);
		goto out;
	}
	store_get_position(ns->store, &pos);
	log_info("ns=%s event=switchover_holding last_seq=%" PRIu64 " site=%s", ns->name, pos.seq,
		 ps.addr);
	rc = repl_pull_wait_durable(a->pull, ns->name, pos.seq, began + timeout_ms, &ps);
	if (rc) {
		store_release_commits(ns->store);
		err_set(err, rc,
			"namespace %s: its site had seq %" PRIu64 " of %" PRIu64 " durably after %" PRIu64
			" ms (%s): the switchover is abandoned, this archiver is still its primary and "
			"takes commits again",
			ns->name, ps.durable_seq, pos.seq, clock_mono_ms() - began,
			ps.is_connected ? "following" : "its pull ended");
		log_warn("ns=%s event=switchover_abandoned reason=\"%s\"", ns->name, err->msg);
		goto out;
	}
	memset(&to, 0, sizeof(to));
	snprintf(to.addr, sizeof(to.addr), "%s", ps.addr);
	to.generation = pos.generation + 1;
	to.first_seq = pos.seq + 1;
	if ((rc = store_hand_over(ns->store, &to, err))) {
		store_release_commits(ns->store);
		goto out;
	}
	out->pause_ms = clock_mono_ms() - began;
	/* written: from here on the site is the primary, told now or at its
	 * next pull */
	if (repl_pull_hand_over(a->pull, ns->name, to.generation, to.first_seq))
		log_warn("ns=%s event=handover_deferred reason=\"the site's pull ended: it hears "
			 "it at its next one\"", ns->name);
	snprintf(out->site, sizeof(out->site), "%s", store_site_id(ns->store));
	snprintf(out->site_addr, sizeof(out->site_addr), "%s", to.addr);
	out->generation = to.generation;
	out->first_seq = to.first_seq;
	log_info("ns=%s event=switched_over site=%s generation=%" PRIu64 " first_seq=%" PRIu64
		 " pause_ms=%" PRIu64, ns->name, to.addr, to.generation, to.first_seq,
		 out->pause_ms);
out:
	repl_ns_release(ns);
	return rc;
}
