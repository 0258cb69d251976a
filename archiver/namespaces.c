/*
 * namespaces.c - the archiver's namespaces: one store each, under
 * DATA_DIR/ns/NAME, in the same format as a site's store (so that a namespace
 * can be promoted in place). A namespace appears when its site first connects
 * (refused when the config lists namespaces and this one is not among them)
 * and lives until the archiver stops.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "clock.h"

#include "archiver.h"
#include "log.h"
#include "names.h"

static bool is_listed(const struct archiver *a, const char *name)
{
	if (a->cfg.n_namespaces == 0)
		return true;
	for (size_t i = 0; i < a->cfg.n_namespaces; i++)
		if (strcmp(a->cfg.namespaces[i].name, name) == 0)
			return true;
	return false;
}

static int replace_store(struct archiver *a, struct repl_ns *ns, const char *ready, const char *aside,
			 const char *why, struct us_err *err);

/* Opens ns's store in dir and syncs what a killed process left unsynced. */
static int open_store(struct archiver *a, const char *name, struct store **out,
		      uint64_t *durable_seq, struct us_err *err)
{
	struct store_opts o = {.role = ROLE_STANDBY,
				.max_body = a->cfg.max_body, .cache = a->cache,
				.reserve = &a->cfg.reserve};
	char dir[1200];
	int rc;

	archiver_ns_dir(a, name, "", dir, sizeof(dir));
	if ((rc = store_open(out, dir, &o, err)))
		return err_wrap(err, "namespace %s", name);
	/* What a killed process wrote without fsync may still be in the page
	 * cache: sync it before telling a site it is durable. */
	if ((rc = store_sync(*out, durable_seq, err))) {
		store_close(*out);
		*out = NULL;
		return err_wrap(err, "namespace %s", name);
	}
	return 0;
}

static void on_ns_written(void *arg, uint64_t last_seq)
{
	struct repl_ns *ns = arg;

	(void)last_seq;
	repl_pull_notify(archiver_ns_of(ns)->a->pull, ns->name);
}

int archiver_committer_new(struct archiver *a, struct repl_ns *ns, struct store *st,
			   struct committer **out, struct us_err *err)
{
	int rc;

	(void)a;
	if ((rc = committer_new(out, st, err)))
		return rc;
	committer_on_written(*out, on_ns_written, ns);
	return 0;
}

/* Adds namespace name with its store. With is_kept_unavailable (at start),
 * a store that does not open (a full disk, say) still adds the namespace,
 * unavailable: the others are served meanwhile, and the site's next Hello
 * tries again (archiver_ns_reopen). */
static int open_ns(struct archiver *a, const char *name, bool is_kept_unavailable,
		   struct repl_ns **out, struct us_err *err)
{
	struct archiver_ns *an;
	struct repl_ns *ns;
	int rc;

	if (a->n_ns == ARCHIVER_MAX_NAMESPACES)
		return err_set(err, US_ETOOBIG, "cannot add namespace %s: this archiver holds %d already",
			       name, ARCHIVER_MAX_NAMESPACES);
	an = calloc(1, sizeof(*an));
	if (!an)
		return err_set(err, US_ENOMEM, "out of memory");
	ns = &an->r;
	an->a = a;
	repl_ns_init(ns, name);
	if ((rc = open_store(a, name, &ns->store, &ns->durable_seq, err))) {
		if (!is_kept_unavailable) {
			repl_ns_destroy(ns);
			free(an);
			return rc;
		}
		log_error("ns=%s event=store_unavailable reason=\"%s\"", name, err->msg);
		ns->is_swapping = true; /* refuses readers while store is NULL */
	} else if (store_role(ns->store) == ROLE_PRIMARY &&
		   (rc = archiver_committer_new(a, ns, ns->store, &an->committer, err))) {
		/* promoted before a restart: it takes its commits again */
		store_close(ns->store);
		repl_ns_destroy(ns);
		free(an);
		return err_wrap(err, "namespace %s", name);
	}
	a->ns[a->n_ns++] = ns;
	*out = ns;
	return 0;
}

int archiver_get_ns(struct archiver *a, const char *name, bool is_create, struct repl_ns **out,
		    struct us_err *err)
{
	int rc;

	if ((rc = names_check_namespace(name, strlen(name), err)))
		return rc;
	pthread_mutex_lock(&a->ns_lock);
	for (size_t i = 0; i < a->n_ns; i++) {
		if (strcmp(a->ns[i]->name, name) == 0) {
			*out = a->ns[i];
			pthread_mutex_unlock(&a->ns_lock);
			return 0;
		}
	}
	if (!is_listed(a, name))
		rc = err_set(err, US_EPERM, "namespace %s is not configured on this archiver", name);
	else if (!is_create)
		rc = err_set(err, US_ENOTFOUND, "namespace %s does not exist on this archiver", name);
	else
		rc = open_ns(a, name, false, out, err);
	pthread_mutex_unlock(&a->ns_lock);
	if (rc == 0 && is_create)
		archive_wake(a); /* its save schedule starts */
	return rc;
}

int archiver_ns_reopen(struct archiver *a, struct repl_ns *ns, struct us_err *err)
{
	struct committer *cm = NULL;
	struct store *st;
	uint64_t durable;
	int rc;

	if (archiver_ns_of(ns)->committer)
		return err_set(err, US_EUNAVAIL,
			       "namespace %s is primary here and its store failed a write: restart "
			       "the archiver once the disk is fixed",
			       ns->name);
	if (ns->store) { /* failed: close and open again, as after a kill -9 */
		if ((rc = disk_check_space(a->cfg.data_dir, &a->cfg.reserve, err)) ||
		    (rc = replace_store(a, ns, NULL, NULL,
				"ended: its store was reopened after a write failure",
				err)))
			return rc;
		log_info("ns=%s event=store_reopened after=write_failure", ns->name);
		return 0;
	}
	if ((rc = open_store(a, ns->name, &st, &durable, err)))
		return rc;
	/* promoted before it became unavailable: it takes its commits again */
	if (store_role(st) == ROLE_PRIMARY && (rc = archiver_committer_new(a, ns, st, &cm, err))) {
		store_close(st);
		return rc;
	}
	pthread_mutex_lock(&ns->lock);
	ns->store = st;
	ns->durable_seq = durable;
	ns->is_swapping = false;
	archiver_ns_of(ns)->committer = cm;
	pthread_mutex_unlock(&ns->lock);
	log_info("ns=%s event=store_reopened role=%s", ns->name, role_name(store_role(st)));
	return 0;
}

void archiver_ns_dir(const struct archiver *a, const char *name, const char *prefix, char *out,
		     size_t size)
{
	snprintf(out, size, "%s/ns/%s%s", a->cfg.data_dir, prefix, name);
}



/* Replaces ns's store: waits (bounded) for its readers, closes it, moves its
 * directory to aside, puts ready in its place (NULL: a fresh store is made
 * there) and opens the result. With aside NULL nothing moves: the store is
 * closed and opened again (one that failed a write). Caller holds ns->apply_lock. On failure the
 * old store is put back when it can be; with no store at all the namespace
 * stays unavailable until it opens again (archiver_ns_reopen). */
static int replace_store(struct archiver *a, struct repl_ns *ns, const char *ready, const char *aside,
			 const char *why, struct us_err *err)
{
	struct store_opts o = {.role = ROLE_STANDBY,
				.max_body = a->cfg.max_body, .cache = a->cache,
				.reserve = &a->cfg.reserve};
	char dir[1200];
	struct store_position pos;
	int rc = 0;

	archiver_ns_dir(a, ns->name, "", dir, sizeof(dir));
	pthread_mutex_lock(&ns->lock);
	ns->is_swapping = true;
	/* Readers (a Scan streaming to a slow client, say) get a bounded wait: a
	 * swap that cannot get the store to itself fails, the site's link
	 * reconnects and sends its copy again. This runs on a gRPC worker, which
	 * may be the very one a Scan needs to move on: hence the bound. */
	{
		struct timespec until = clock_deadline(US_SWAP_READERS_WAIT_MS);

		while (ns->readers &&
		       pthread_cond_timedwait(&ns->readers_cond, &ns->lock, &until) == 0)
			;
	}
	if (ns->readers) {
		ns->is_swapping = false;
		pthread_mutex_unlock(&ns->lock);
		return err_set(err, US_EUNAVAIL, "namespace %s: reads still open after %d ms",
			       ns->name, US_SWAP_READERS_WAIT_MS);
	}
	/* Its snapshots end with it: a read at one is then refused, saying why
	 * (docs/snapshots.md), rather than served from a store that is gone. */
	snapshots_end_store(a->snapshots, ns->store, why);
	store_close(ns->store);
	ns->store = NULL;
	if (aside)
		disk_rmtree(aside);
	if (aside && (rename(dir, aside) != 0 || (ready && rename(ready, dir) != 0))) {
		rc = err_set(err, US_EIO, "cannot replace the store of %s: %s", ns->name,
			     strerror(errno));
		if (access(dir, F_OK) != 0)
			rename(aside, dir); /* put the old store back */
	}
	/* the renames (in DATA_DIR/ns) are part of what the site is told is
	 * durable */
	if (aside && rc == 0) {
		char nsdir[1100];

		snprintf(nsdir, sizeof(nsdir), "%s/ns", a->cfg.data_dir);
		rc = disk_sync_path(nsdir, true, err);
	}
	if (store_open(&ns->store, dir, &o, rc ? NULL : err) != 0 && rc == 0)
		rc = err_wrap(err, "namespace %s after replacing its store", ns->name);
	if (ns->store) {
		store_get_position(ns->store, &pos);
		ns->durable_seq = pos.seq; /* a copy was synced before the swap */
		ns->is_swapping = false;
	}
	pthread_cond_broadcast(&ns->readers_cond);
	pthread_mutex_unlock(&ns->lock);
	return rc;
}

int archiver_swap_store(struct archiver *a, struct repl_ns *ns, struct us_err *err)
{
	char ready[1200], old[1200], prefix[64];
	struct store_position pos;
	int rc;

	/* A full copy comes when this copy is older than the site's retained
	 * journal, so nothing tells whether the site's history passes through
	 * it: a copy that held anything is kept aside, never deleted. */
	store_get_position(ns->store, &pos);
	if (pos.seq > 0)
		snprintf(prefix, sizeof(prefix), ".replaced-%llu-", (unsigned long long)clock_wall_ms());
	else
		snprintf(prefix, sizeof(prefix), ".old-");
	archiver_ns_dir(a, ns->name, ".ready-", ready, sizeof(ready));
	archiver_ns_dir(a, ns->name, prefix, old, sizeof(old));
	if ((rc = replace_store(a, ns, ready, old,
				"ended: the store was replaced by a full copy from the site", err))) {
		disk_rmtree(ready); /* never swapped in later by recover_copies */
		return err_wrap(err, "the full copy will be sent again");
	}
	if (pos.seq > 0)
		log_warn("ns=%s event=copy_replaced seq=%llu kept_in=%s", ns->name,
			 (unsigned long long)pos.seq, old);
	else
		disk_rmtree(old);
	return 0;
}

int archiver_adopt(struct archiver *a, struct repl_ns *ns, struct archiver_adopted *out,
		   struct us_err *err)
{
	struct store_position pos;
	char prefix[64];
	int rc;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&ns->apply_lock);
	if (!ns->store) {
		pthread_mutex_unlock(&ns->apply_lock);
		return err_set(err, US_EUNAVAIL, "namespace %s is unavailable", ns->name);
	}
	if (archiver_ns_of(ns)->committer) {
		pthread_mutex_unlock(&ns->apply_lock);
		return err_set(err, US_EPRECOND,
			       "namespace %s is primary here (promoted): its copy takes commits and "
			       "is not replaced by adopt",
			       ns->name);
	}
	repl_recv_end_ns(ns, "the namespace was adopted by a new site: connect again");
	store_get_position(ns->store, &pos);
	snprintf(out->previous_site, sizeof(out->previous_site), "%s", store_site_id(ns->store));
	out->previous_seq = pos.seq;
	snprintf(prefix, sizeof(prefix), ".adopted-%llu-", (unsigned long long)clock_wall_ms());
	archiver_ns_dir(a, ns->name, prefix, out->kept_in, sizeof(out->kept_in));
	rc = replace_store(a, ns, NULL, out->kept_in,
			   "ended: the namespace was adopted by a new site (its old copy is kept aside)",
			   err);
	if (rc && access(out->kept_in, F_OK) == 0)
		err_wrap(err, "the old copy was moved to %s", out->kept_in);
	if (rc == 0) {
		pthread_mutex_lock(&ns->lock);
		ns->master_seq = 0;
		ns->behind_since_ms = 0;
		ns->refusals = 0;
		ns->refusal[0] = '\0';
		pthread_mutex_unlock(&ns->lock);
	}
	pthread_mutex_unlock(&ns->apply_lock);
	return rc;
}

/* Finishes what a crash interrupted: a complete copy (".ready-") replaces its
 * namespace, whose store is kept aside (".replaced-TIME-"); partial copies
 * (".seed-") and emptied stores (".old-") go. */
static void recover_copies(struct archiver *a, DIR *d)
{
	struct dirent *de;

	while ((de = readdir(d)) != NULL) {
		char path[1400], dir[1400], old[1400], prefix[64];
		const char *name;

		if (strncmp(de->d_name, ".seed-", 6) == 0 || strncmp(de->d_name, ".old-", 5) == 0) {
			snprintf(path, sizeof(path), "%s/ns/%s", a->cfg.data_dir, de->d_name);
			disk_rmtree(path);
			continue;
		}
		if (strncmp(de->d_name, ".ready-", 7) != 0)
			continue;
		name = de->d_name + 7;
		snprintf(path, sizeof(path), "%s/ns/%s", a->cfg.data_dir, de->d_name);
		archiver_ns_dir(a, name, "", dir, sizeof(dir));
		/* kept, as archiver_swap_store keeps a replaced copy */
		snprintf(prefix, sizeof(prefix), ".replaced-%llu-",
			 (unsigned long long)clock_wall_ms());
		archiver_ns_dir(a, name, prefix, old, sizeof(old));
		if (access(dir, F_OK) == 0 && rename(dir, old) != 0)
			continue;
		rename(path, dir);
	}
	rewinddir(d);
}

int archiver_open_namespaces(struct archiver *a, struct us_err *err)
{
	char dir[1100];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	snprintf(dir, sizeof(dir), "%s/ns", a->cfg.data_dir);
	d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		return err_set(err, US_EIO, "cannot read %s: %s", dir, strerror(errno));
	}
	recover_copies(a, d);
	while ((de = readdir(d)) != NULL && rc == 0) {
		struct repl_ns *ns;

		if (de->d_name[0] == '.')
			continue;
		if (names_check_namespace(de->d_name, strlen(de->d_name), NULL))
			continue; /* not ours: leave it alone */
		pthread_mutex_lock(&a->ns_lock);
		rc = open_ns(a, de->d_name, true, &ns, err);
		pthread_mutex_unlock(&a->ns_lock);
	}
	closedir(d);
	return rc;
}

void archiver_close_namespaces(struct archiver *a)
{
	for (size_t i = 0; i < a->n_ns; i++) {
		committer_free(archiver_ns_of(a->ns[i])->committer);
		store_close(a->ns[i]->store);
		repl_ns_destroy(a->ns[i]);
		free(a->ns[i]);
		a->ns[i] = NULL;
	}
	a->n_ns = 0;
}

int archiver_promote(struct archiver *a, struct repl_ns *ns, bool is_force,
		     struct archiver_promoted *out, struct us_err *err)
{
	struct archiver_ns *an = archiver_ns_of(ns);
	struct committer *cm = NULL;
	struct store_position pos;
	bool is_connected;
	int rc = 0;

	(void)a;
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&ns->apply_lock); /* no frame is applied meanwhile */
	if (!ns->store) {
		rc = err_set(err, US_EUNAVAIL, "namespace %s is unavailable: its store could not be "
			     "opened (see the archiver's log)", ns->name);
		goto out;
	}
	store_get_position(ns->store, &pos);
	if (store_role(ns->store) == ROLE_PRIMARY) {
		out->was_primary = true;
		out->generation = pos.generation;
		rc = store_generation_start(ns->store, pos.generation, &out->first_seq, err);
		goto out;
	}
	pthread_mutex_lock(&ns->lock);
	is_connected = ns->is_connected;
	pthread_mutex_unlock(&ns->lock);
	if (is_connected && !is_force) {
		rc = err_set(err, US_EPRECOND,
			     "namespace %s: its site is connected and streaming (seq %llu applied "
			     "here): stop the site first, or promote --force, which ends its stream "
			     "and fences it (it must rejoin)",
			     ns->name, (unsigned long long)pos.seq);
		goto out;
	}
	/* the writer first: once promoted, nothing may fail on the way to
	 * taking commits */
	pthread_mutex_lock(&ns->lock);
	cm = an->committer; /* kept from a promote before a switchover */
	pthread_mutex_unlock(&ns->lock);
	if (!cm && (rc = archiver_committer_new(a, ns, ns->store, &cm, err)))
		goto out;
	if ((rc = store_promote(ns->store, &pos, err))) {
		if (cm != an->committer)
			committer_free(cm);
		goto out;
	}
	pthread_mutex_lock(&ns->lock);
	an->committer = cm;
	pthread_mutex_unlock(&ns->lock);
	out->generation = pos.generation;
	out->first_seq = pos.seq + 1;
	if (is_connected) {
		char why[200];

		snprintf(why, sizeof(why),
			 "namespace %s was promoted on the archiver (generation %llu): this site is "
			 "fenced",
			 ns->name, (unsigned long long)pos.generation);
		repl_recv_end_ns(ns, why);
		out->fenced_site = true;
	}
	log_info("ns=%s event=promoted generation=%llu first_seq=%llu fenced_site=%d", ns->name,
		 (unsigned long long)out->generation, (unsigned long long)out->first_seq,
		 out->fenced_site);
out:
	pthread_mutex_unlock(&ns->apply_lock);
	return rc;
}
