/*
 * archive.c - the archiver's on-line archive: saves of its namespaces kept
 * under save_dir (DATA_DIR/saves when not set), taken on request (Admin.Save
 * with archive set: `understudy save NS --archive`) and every save_every per
 * namespace, the oldest beyond keep_saves pruned.
 *
 * Layout: save_dir/NS/NAME.save, the save file (docs/save-format.md), and
 * save_dir/NS/NAME.meta, one JSON object saying what it holds (position,
 * scope, counts, checksum) so that listing never reads a save. NAME is
 * TIME-gGEN-sSEQ[-ACCOUNT[-FILE]], TIME the wall clock the save was taken
 * (YYYYmmddTHHMMSS.mmmZ). A save is written to .partial-NAME.save, fsynced,
 * its meta written and fsynced and renamed into place, then the save renamed
 * and the directory fsynced: a save is listed only once both are in place,
 * so a crash never leaves half a save listed. At start, partial files and a
 * meta without its save are removed.
 *
 * The archived journal: each namespace's copy keeps its journal back to the
 * oldest whole save kept (so that a restore from it can be rolled forward)
 * and at least journal_retention; every US_ARCHIVE_TRIM_PERIOD_MS the rest
 * is trimmed, in whole blocks (store_journal_trim).
 *
 * Thread "us-saver" runs every save, one at a time (a save reads a snapshot
 * and fsyncs: never on a gRPC worker), and the trimming. Jobs come from the Admin.Save handler
 * (archive_keep, any thread) through a queue under archive.lock; the
 * schedule is per namespace, from the time of its newest kept whole save.
 * Lock order: archive.lock alone (never held while a save runs, nor with
 * ns_lock or a namespace's lock).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "archiver.h"
#include "rpc_pump.h"
#include "clock.h"
#include "disk.h"
#include "log.h"
#include "names.h"
#include "snapshots.h"

struct archive_job {
	struct keep_request req;
	keep_done_fn done;           /* NULL: a scheduled save */
	void *ctx;
	struct archive_job *next;
};

/* When a namespace's next scheduled save is due. */
struct schedule {
	char ns[US_NAMESPACE_MAX_LEN + 1];
	uint64_t due_ms;             /* wall clock */
};

/* A namespace's archive figures (status), kept by the saver thread. */
struct archive_ns {
	char ns[US_NAMESPACE_MAX_LEN + 1];
	struct archive_status st;
	bool is_trim_failing;        /* one WARN when trimming starts failing */
};

struct archive {
	struct archiver *a;
	char dir[1100];              /* save_dir as used */
	pthread_t thread;
	pthread_mutex_t lock;        /* guards the fields below */
	pthread_cond_t cond;
	bool is_stopping;
	bool is_joined;              /* the saver thread is gone (archive_stop; main only) */
	struct archive_job *head, *tail;
	struct schedule *sched;
	size_t n_sched;
	struct archive_ns *stats;    /* guarded by lock too */
	size_t n_stats;
	uint64_t trim_due_ms;        /* monotonic: the next trimming round */
};

/* ---- files ---- */

static void name_of(char *out, size_t size, const struct kept_save *ks)
{
	time_t secs = (time_t)(ks->created_ms / 1000);
	char when[32];
	struct tm tm;

	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y%m%dT%H%M%S", &tm);
	snprintf(out, size, "%s.%03uZ-g%" PRIu64 "-s%" PRIu64 "%s%s%s%s", when,
		 (unsigned)(ks->created_ms % 1000), ks->pos.generation, ks->pos.seq,
		 ks->account[0] ? "-" : "", ks->account, ks->file[0] ? "-" : "", ks->file);
}

static int write_meta(const char *path, const char *ns, const struct kept_save *ks,
		      struct us_err *err)
{
	char xxh[17];
	json_t *o;
	int rc = 0;

	snprintf(xxh, sizeof(xxh), "%016" PRIx64, ks->summary.xxh64);
	o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s}", "namespace", ns,
		      "save", ks->name, "account", ks->account, "file", ks->file, "generation",
		      (json_int_t)ks->pos.generation, "seq", (json_int_t)ks->pos.seq, "time_ms",
		      (json_int_t)ks->pos.time_ms, "created_ms", (json_int_t)ks->created_ms,
		      "items", (json_int_t)ks->summary.items, "files",
		      (json_int_t)ks->summary.files, "bytes", (json_int_t)ks->summary.bytes,
		      "xxh64", xxh);
	if (!o)
		return err_set(err, US_ENOMEM, "out of memory");
	if (json_dump_file(o, path, JSON_COMPACT) != 0)
		rc = err_set(err, US_EIO, "cannot write %s", path);
	json_decref(o);
	return rc ? rc : disk_sync_path(path, false, err);
}

/* Reads NAME.meta in dir into ks; 0, or -1 for a file that is not one of ours. */
static int read_meta(const char *dir, const char *meta_name, struct kept_save *ks)
{
	char path[1400];
	json_error_t jerr;
	const char *save, *account, *file, *xxh;
	json_int_t gen, seq, time_ms, created, items, files, bytes;
	struct stat st;
	json_t *o;
	int rc = -1;

	snprintf(path, sizeof(path), "%s/%s", dir, meta_name);
	o = json_load_file(path, 0, &jerr);
	if (!o)
		return -1;
	if (json_unpack(o, "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s}", "save", &save,
			"account", &account, "file", &file, "generation", &gen, "seq", &seq,
			"time_ms", &time_ms, "created_ms", &created, "items", &items, "files",
			&files, "bytes", &bytes, "xxh64", &xxh) == 0 &&
	    strlen(save) < sizeof(ks->name) && strchr(save, '/') == NULL &&
	    strlen(account) <= US_ACCOUNT_MAX_LEN && strlen(file) <= US_FILE_MAX_LEN) {
		memset(ks, 0, sizeof(*ks));
		snprintf(ks->name, sizeof(ks->name), "%s", save);
		snprintf(ks->path, sizeof(ks->path), "%s/%s", dir, save);
		snprintf(ks->account, sizeof(ks->account), "%s", account);
		snprintf(ks->file, sizeof(ks->file), "%s", file);
		ks->pos.generation = (uint64_t)gen;
		ks->pos.seq = (uint64_t)seq;
		ks->pos.time_ms = (uint64_t)time_ms;
		ks->created_ms = (uint64_t)created;
		ks->summary.items = (uint64_t)items;
		ks->summary.files = (uint64_t)files;
		ks->summary.bytes = (uint64_t)bytes;
		ks->summary.xxh64 = strtoull(xxh, NULL, 16);
		/* listed only with its save in place */
		rc = stat(ks->path, &st) == 0 ? 0 : -1;
	}
	json_decref(o);
	return rc;
}

static int cmp_kept(const void *x, const void *y)
{
	const struct kept_save *a = x, *b = y;

	if (a->created_ms != b->created_ms)
		return a->created_ms < b->created_ms ? -1 : 1;
	return strcmp(a->name, b->name);
}

static void ns_dir(const struct archive *ar, const char *ns, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", ar->dir, ns);
}

static int list_dir(const struct archive *ar, const char *ns, struct kept_save **out, size_t *n,
		    struct us_err *err)
{
	struct kept_save *v = NULL;
	size_t cap = 0, k = 0;
	char dir[1200];
	struct dirent *de;
	DIR *d;

	ns_dir(ar, ns, dir, sizeof(dir));
	*out = NULL;
	*n = 0;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0
				       : err_set(err, US_EIO, "cannot read %s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".meta") != 0)
			continue;
		if (k == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct kept_save *p = realloc(v, ncap * sizeof(*p));

			if (!p) {
				free(v);
				closedir(d);
				return err_set(err, US_ENOMEM, "out of memory");
			}
			v = p;
			cap = ncap;
		}
		if (read_meta(dir, de->d_name, &v[k]) == 0)
			k++;
	}
	closedir(d);
	qsort(v, k, sizeof(*v), cmp_kept);
	*out = v;
	*n = k;
	return 0;
}

int archive_list(struct archiver *a, const char *ns, struct kept_save **out, size_t *n,
		 struct us_err *err)
{
	int rc;

	if ((rc = names_check_namespace(ns, strlen(ns), err)))
		return rc;
	return list_dir(a->archive, ns, out, n, err);
}

/* Removes the whole-namespace saves of ns beyond the newest keep_saves. */
static void prune(struct archive *ar, const char *ns)
{
	struct kept_save *v;
	size_t n, whole = 0;
	struct us_err err;

	if (list_dir(ar, ns, &v, &n, &err)) {
		log_warn("ns=%s event=prune_failed reason=\"%s\"", ns, err.msg);
		return;
	}
	for (size_t i = 0; i < n; i++)
		whole += !v[i].account[0];
	for (size_t i = 0; i < n && whole > ar->a->cfg.keep_saves; i++) {
		char meta[1500];

		if (v[i].account[0])
			continue;
		/* the save first: a meta without its save is not listed */
		snprintf(meta, sizeof(meta), "%.*s.meta", (int)(strlen(v[i].path) - 5), v[i].path);
		if (unlink(v[i].path) != 0 || unlink(meta) != 0) {
			log_warn("ns=%s event=prune_failed save=%s reason=\"%s\"", ns, v[i].name,
				 strerror(errno));
			break;
		}
		log_info("ns=%s event=save_pruned save=%s seq=%" PRIu64, ns, v[i].name,
			 v[i].pos.seq);
		whole--;
	}
	free(v);
}

/* The file sink, given up when the archiver stops (a long save must not
 * hold the shutdown). */
struct stoppable_sink {
	struct archive *ar;
	FILE *f;
	struct pacer pace;  /* save_max_rate */
};

static bool is_stopping(void *arg)
{
	const struct archive *ar = arg;

	return __atomic_load_n(&ar->is_stopping, __ATOMIC_RELAXED);
}

static int stoppable_file_sink(void *arg, const uint8_t *p, size_t len, struct us_err *err)
{
	struct stoppable_sink *ss = arg;

	pacer_sleep(&ss->pace, US_PACE_SLICE_MS, is_stopping, ss->ar);
	if (is_stopping(ss->ar))
		return err_set(err, US_EUNAVAIL, "the archiver is stopping: the save was given up");
	pacer_take(&ss->pace, len);
	return save_file_sink(ss->f, p, len, err);
}

/* Runs one save into the archive. */
static int run_save(struct archive *ar, const struct keep_request *req, struct kept_save *ks,
		    struct us_err *err)
{
	struct archiver *a = ar->a;
	struct store_snap *own = NULL;
	const struct store_snap *at = NULL;
	char dir[1200], partial[1600], meta[1600], meta_tmp[1600], final[1500];
	struct repl_ns *ns;
	FILE *f = NULL;
	int rc;

	if ((rc = archiver_get_ns(a, req->ns, false, &ns, err)))
		return rc;
	if ((rc = repl_ns_acquire(ns, err)))
		return rc;
	if (req->snapshot) {
		if ((rc = snapshots_use(a->snapshots, req->ns, req->snapshot, ns->store, &at, err)))
			goto out_release;
	} else if ((rc = store_snap_new(ns->store, &own, err))) {
		goto out_release;
	}
	memset(ks, 0, sizeof(*ks));
	snprintf(ks->account, sizeof(ks->account), "%s", req->account);
	snprintf(ks->file, sizeof(ks->file), "%s", req->file);
	ks->pos = *store_snap_position(at ? at : own);
	ks->created_ms = clock_wall_ms();
	name_of(ks->name, sizeof(ks->name) - 5, ks);
	strcat(ks->name, ".save");
	ns_dir(ar, req->ns, dir, sizeof(dir));
	if ((rc = disk_mkdir_p(dir, err)) || (rc = disk_check_space(dir, &a->cfg.reserve, err)))
		goto out_snap;
	snprintf(partial, sizeof(partial), "%s/.partial-%s", dir, ks->name);
	snprintf(final, sizeof(final), "%s/%s", dir, ks->name);
	snprintf(meta, sizeof(meta), "%s/%.*s.meta", dir, (int)(strlen(ks->name) - 5), ks->name);
	snprintf(meta_tmp, sizeof(meta_tmp), "%s/.partial-%.*s.meta", dir,
		 (int)(strlen(ks->name) - 5), ks->name);
	snprintf(ks->path, sizeof(ks->path), "%s", final);
	f = fopen(partial, "wb");
	if (!f) {
		rc = err_set(err, errno == ENOSPC ? US_ENOSPC : US_EIO, "cannot create %s: %s",
			     partial, strerror(errno));
		goto out_snap;
	}
	{
		struct stoppable_sink ss = {.ar = ar, .f = f};

		pacer_init(&ss.pace, a->cfg.save_max_rate);

		rc = save_service_write(ns->store, at ? at : own, req->ns, req->account, req->file,
					stoppable_file_sink, &ss, &ks->summary, NULL, err);
	}
	if (rc == 0 && fflush(f) != 0)
		rc = err_set(err, errno == ENOSPC ? US_ENOSPC : US_EIO, "cannot write %s: %s",
			     partial, strerror(errno));
	if (rc == 0 && fsync(fileno(f)) != 0)
		rc = err_set(err, errno == ENOSPC ? US_ENOSPC : US_EIO, "cannot sync %s: %s",
			     partial, strerror(errno));
	if (fclose(f) != 0 && rc == 0)
		rc = err_set(err, US_EIO, "cannot close %s: %s", partial, strerror(errno));
	if (rc == 0)
		rc = write_meta(meta_tmp, req->ns, ks, err);
	if (rc == 0 && rename(meta_tmp, meta) != 0)
		rc = err_set(err, US_EIO, "cannot rename %s: %s", meta_tmp, strerror(errno));
	if (rc == 0 && rename(partial, final) != 0)
		rc = err_set(err, US_EIO, "cannot rename %s: %s", partial, strerror(errno));
	if (rc == 0)
		rc = disk_sync_path(dir, true, err);
	if (rc) {
		unlink(partial);
		unlink(meta_tmp);
		if (access(final, F_OK) != 0)
			unlink(meta);
	}
out_snap:
	store_snap_free(own);
	if (at)
		snapshots_done(a->snapshots, req->snapshot);
out_release:
	repl_ns_release(ns);
	return rc;
}

static void run_job(struct archive *ar, struct archive_job *job)
{
	struct kept_save ks;
	struct us_err err;
	uint64_t t0 = clock_mono_ms();
	int rc = run_save(ar, &job->req, &ks, &err);

	if (rc == 0) {
		log_info("ns=%s event=save_kept save=%s seq=%" PRIu64 " items=%" PRIu64
			 " bytes=%" PRIu64 " ms=%" PRIu64 "%s",
			 job->req.ns, ks.name, ks.pos.seq, ks.summary.items, ks.summary.bytes,
			 clock_mono_ms() - t0, job->done ? "" : " scheduled=yes");
		if (!job->req.account[0])
			prune(ar, job->req.ns);
		/* status and the journal's reach follow the saves kept now */
		pthread_mutex_lock(&ar->lock);
		ar->trim_due_ms = 0;
		pthread_mutex_unlock(&ar->lock);
	} else if (job->done) {
		/* the one who asked is told */
		log_info("ns=%s event=save_failed reason=\"%s\"", job->req.ns, err.msg);
	} else {
		log_warn("ns=%s event=save_failed reason=\"%s\" scheduled=yes", job->req.ns,
			 err.msg);
	}
	if (job->done)
		job->done(job->ctx, rc, rc ? &err : NULL, rc ? NULL : &ks);
}

/* ---- the archived journal ---- */

/* The last seq of ns's journal that may go: at the end of a commit, no
 * younger than journal_retention, and (with a whole save kept) not after
 * the oldest one's seq. 0: none. */
static int trim_point(struct archive *ar, struct store *s, uint64_t oldest_save_seq,
		      uint64_t *upto, struct us_err *err)
{
	uint64_t now = clock_wall_ms(), retention = ar->a->cfg.journal_retention_ms;
	uint64_t cutoff = now > retention ? now - retention : 0, seq;
	struct store_journal_iter *it;
	struct entry e;
	int rc;

	*upto = 0;
	if ((rc = store_journal_iter_new(s, 0, &it, err)))
		return rc;
	/* in time order: stop at the first entry too young or past the save */
	while ((rc = store_journal_iter_next(it, &seq, &e, NULL, NULL, err)) == 1) {
		if (e.time_ms > cutoff || (oldest_save_seq && seq > oldest_save_seq))
			break;
		if (e.is_commit_end)
			*upto = seq;
	}
	store_journal_iter_free(it);
	return rc < 0 ? rc : 0;
}

/* ns's entry in the status table (added when new). Caller holds ar->lock;
 * NULL when out of memory. */
static struct archive_ns *stats_of(struct archive *ar, const char *ns)
{
	struct archive_ns *v;

	for (size_t i = 0; i < ar->n_stats; i++)
		if (strcmp(ar->stats[i].ns, ns) == 0)
			return &ar->stats[i];
	v = realloc(ar->stats, (ar->n_stats + 1) * sizeof(*v));
	if (!v)
		return NULL;
	ar->stats = v;
	v = &ar->stats[ar->n_stats++];
	memset(v, 0, sizeof(*v));
	snprintf(v->ns, sizeof(v->ns), "%s", ns);
	return v;
}

/* One namespace: its saves' figures, then its journal trimmed. */
static void trim_one(struct archive *ar, struct repl_ns *ns)
{
	struct archive_status st = {0};
	struct kept_save *v;
	struct us_err err;
	uint64_t upto = 0;
	bool is_failed = false;
	size_t n;

	if (list_dir(ar, ns->name, &v, &n, &err) != 0) {
		/* not knowing the oldest save, trim nothing: it may need it all */
		is_failed = true;
		goto out_stats;
	}
	for (size_t i = 0; i < n; i++) {
		st.saves++;
		st.save_bytes += v[i].summary.bytes;
		if (!v[i].account[0] && (!st.oldest_save_seq || v[i].pos.seq < st.oldest_save_seq))
			st.oldest_save_seq = v[i].pos.seq;
	}
	free(v);
	if (repl_ns_acquire(ns, &err) == 0) {
		if (!store_is_failed(ns->store) &&
		    trim_point(ar, ns->store, st.oldest_save_seq, &upto, &err) == 0 && upto &&
		    store_journal_trim(ns->store, upto, &err))
			is_failed = true;
		store_journal_first(ns->store, &st.journal_first_seq, NULL);
		repl_ns_release(ns);
	}
out_stats:
	pthread_mutex_lock(&ar->lock);
	{
		struct archive_ns *an = stats_of(ar, ns->name);

		if (an) {
			if (is_failed && !an->is_trim_failing)
				log_warn("ns=%s event=trim_failed upto=%" PRIu64 " reason=\"%s\"",
					 ns->name, upto, err.msg);
			else if (!is_failed && an->is_trim_failing)
				log_info("ns=%s event=trim_recovered", ns->name);
			an->is_trim_failing = is_failed;
			an->st = st;
		}
	}
	pthread_mutex_unlock(&ar->lock);
}

static void trim_all(struct archive *ar)
{
	struct archiver *a = ar->a;
	size_t n_ns;

	pthread_mutex_lock(&a->ns_lock);
	n_ns = a->n_ns;
	pthread_mutex_unlock(&a->ns_lock);
	for (size_t i = 0; i < n_ns && !__atomic_load_n(&ar->is_stopping, __ATOMIC_RELAXED); i++)
		trim_one(ar, a->ns[i]); /* entries of a->ns never move or go */
}

int archive_get_status(struct archiver *a, const char *ns, struct archive_status *out)
{
	struct archive *ar = a->archive;
	int rc = US_ENOTFOUND;

	memset(out, 0, sizeof(*out));
	if (!ar)
		return rc;
	pthread_mutex_lock(&ar->lock);
	for (size_t i = 0; i < ar->n_stats; i++)
		if (strcmp(ar->stats[i].ns, ns) == 0) {
			*out = ar->stats[i].st;
			rc = 0;
		}
	pthread_mutex_unlock(&ar->lock);
	return rc;
}

/* ---- schedule ---- */

/* The schedule entry of ns (added, due from its newest whole save, when
 * new). Caller holds ar->lock; NULL when out of memory. */
static struct schedule *schedule_of(struct archive *ar, const char *ns)
{
	struct kept_save *v;
	struct schedule *s;
	size_t n;
	uint64_t newest = 0;
	struct us_err err;

	for (size_t i = 0; i < ar->n_sched; i++)
		if (strcmp(ar->sched[i].ns, ns) == 0)
			return &ar->sched[i];
	s = realloc(ar->sched, (ar->n_sched + 1) * sizeof(*s));
	if (!s)
		return NULL;
	ar->sched = s;
	s = &ar->sched[ar->n_sched++];
	snprintf(s->ns, sizeof(s->ns), "%s", ns);
	if (list_dir(ar, ns, &v, &n, &err) == 0) {
		for (size_t i = 0; i < n; i++)
			if (!v[i].account[0] && v[i].created_ms > newest)
				newest = v[i].created_ms;
		free(v);
	}
	/* none yet: due now */
	s->due_ms = newest ? newest + ar->a->cfg.save_every_ms : 0;
	return s;
}

/* The first namespace due now (copied into ns), or the ms until one is
 * (UINT64_MAX: no schedule). Caller holds ar->lock. */
static uint64_t next_due(struct archive *ar, char *ns, size_t size)
{
	struct archiver *a = ar->a;
	uint64_t now = clock_wall_ms(), wait = UINT64_MAX;
	size_t n_ns;

	ns[0] = '\0';
	if (!a->cfg.save_every_ms)
		return UINT64_MAX;
	pthread_mutex_lock(&a->ns_lock);
	n_ns = a->n_ns;
	pthread_mutex_unlock(&a->ns_lock);
	for (size_t i = 0; i < n_ns; i++) {
		/* entries of a->ns never move or go (archiver.h) */
		struct schedule *s = schedule_of(ar, a->ns[i]->name);

		if (!s)
			continue;
		if (s->due_ms <= now) {
			snprintf(ns, size, "%s", s->ns);
			return 0;
		}
		if (s->due_ms - now < wait)
			wait = s->due_ms - now;
	}
	return wait;
}

static void *saver(void *arg)
{
	struct archive *ar = arg;
	char ns[US_NAMESPACE_MAX_LEN + 1];

	pthread_setname_np(pthread_self(), "us-saver");
	rpc_pump_lower_priority();
	pthread_mutex_lock(&ar->lock);
	while (!ar->is_stopping) {
		struct archive_job *job = ar->head;
		uint64_t wait;

		if (job) {
			ar->head = job->next;
			if (!ar->head)
				ar->tail = NULL;
			pthread_mutex_unlock(&ar->lock);
			run_job(ar, job);
			free(job);
			pthread_mutex_lock(&ar->lock);
			continue;
		}
		if (clock_mono_ms() >= ar->trim_due_ms) {
			pthread_mutex_unlock(&ar->lock);
			trim_all(ar);
			pthread_mutex_lock(&ar->lock);
			ar->trim_due_ms = clock_mono_ms() + US_ARCHIVE_TRIM_PERIOD_MS;
			continue;
		}
		wait = next_due(ar, ns, sizeof(ns));
		if (wait == 0) {
			struct archive_job sched = {0};
			struct schedule *s = schedule_of(ar, ns);

			snprintf(sched.req.ns, sizeof(sched.req.ns), "%s", ns);
			/* due again one period on, whether it worked or not (a
			 * failure is logged, and retried then) */
			if (s)
				s->due_ms = clock_wall_ms() + ar->a->cfg.save_every_ms;
			pthread_mutex_unlock(&ar->lock);
			run_job(ar, &sched);
			pthread_mutex_lock(&ar->lock);
			continue;
		}
		{
			/* until the next save due, the next trimming round, a job, a
			 * new namespace (archive_wake) or the stop */
			uint64_t now = clock_mono_ms();
			uint64_t trim_wait = ar->trim_due_ms > now ? ar->trim_due_ms - now : 0;
			struct timespec until = clock_deadline(wait < trim_wait ? wait : trim_wait);

			pthread_cond_timedwait(&ar->cond, &ar->lock, &until);
		}
	}
	pthread_mutex_unlock(&ar->lock);
	return NULL;
}

/* ---- start, stop, keep ---- */

/* Removes what a crash left: partial files, a meta without its save. */
static void clean(struct archive *ar)
{
	DIR *top = opendir(ar->dir);
	struct dirent *nde;

	if (!top)
		return;
	while ((nde = readdir(top)) != NULL) {
		char dir[1200];
		struct dirent *de;
		DIR *d;

		if (nde->d_name[0] == '.' || names_check_namespace(nde->d_name, strlen(nde->d_name),
								    NULL))
			continue;
		ns_dir(ar, nde->d_name, dir, sizeof(dir));
		d = opendir(dir);
		if (!d)
			continue;
		while ((de = readdir(d)) != NULL) {
			char path[1500], save[1500];
			size_t len = strlen(de->d_name);

			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			if (strncmp(de->d_name, ".partial-", 9) == 0) {
				unlink(path);
			} else if (len > 5 && strcmp(de->d_name + len - 5, ".meta") == 0) {
				snprintf(save, sizeof(save), "%s/%.*s.save", dir, (int)(len - 5),
					 de->d_name);
				if (access(save, F_OK) != 0)
					unlink(path);
			}
		}
		closedir(d);
	}
	closedir(top);
}

int archive_start(struct archiver *a, struct us_err *err)
{
	struct archive *ar = calloc(1, sizeof(*ar));
	int rc;

	if (!ar)
		return err_set(err, US_ENOMEM, "out of memory");
	ar->a = a;
	if (a->cfg.save_dir[0])
		snprintf(ar->dir, sizeof(ar->dir), "%s", a->cfg.save_dir);
	else
		snprintf(ar->dir, sizeof(ar->dir), "%s/saves", a->cfg.data_dir);
	if ((rc = disk_mkdir_p(ar->dir, err))) {
		free(ar);
		return err_wrap(err, "save_dir");
	}
	/* absolute: the paths it hands out are read by clients elsewhere */
	{
		char *abs = realpath(ar->dir, NULL);

		if (abs && strlen(abs) < sizeof(ar->dir))
			snprintf(ar->dir, sizeof(ar->dir), "%s", abs);
		free(abs);
	}
	clean(ar);
	pthread_mutex_init(&ar->lock, NULL);
	pthread_cond_init(&ar->cond, NULL);
	if (pthread_create(&ar->thread, NULL, saver, ar) != 0) {
		pthread_cond_destroy(&ar->cond);
		pthread_mutex_destroy(&ar->lock);
		free(ar);
		return err_set(err, US_ENOMEM, "cannot start the saver thread");
	}
	a->archive = ar;
	return 0;
}

void archive_stop(struct archiver *a)
{
	struct archive *ar = a->archive;
	struct archive_job *jobs;
	struct us_err err;

	if (!ar || ar->is_joined)
		return;
	pthread_mutex_lock(&ar->lock);
	__atomic_store_n(&ar->is_stopping, true, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&ar->cond);
	pthread_mutex_unlock(&ar->lock);
	pthread_join(ar->thread, NULL);
	ar->is_joined = true;
	/* archive_keep queues nothing once is_stopping is set: these are all */
	pthread_mutex_lock(&ar->lock);
	jobs = ar->head;
	ar->head = ar->tail = NULL;
	pthread_mutex_unlock(&ar->lock);
	err_set(&err, US_EUNAVAIL, "the archiver is stopping: the save was not taken");
	while (jobs) {
		struct archive_job *job = jobs;

		jobs = job->next;
		if (job->done)
			job->done(job->ctx, US_EUNAVAIL, &err, NULL);
		free(job);
	}
}

void archive_free(struct archiver *a)
{
	struct archive *ar = a->archive;

	if (!ar)
		return;
	archive_stop(a);
	free(ar->sched);
	free(ar->stats);
	pthread_cond_destroy(&ar->cond);
	pthread_mutex_destroy(&ar->lock);
	free(ar);
	a->archive = NULL;
}

void archive_wake(struct archiver *a)
{
	struct archive *ar = a->archive;

	if (!ar)
		return;
	pthread_mutex_lock(&ar->lock);
	pthread_cond_broadcast(&ar->cond);
	pthread_mutex_unlock(&ar->lock);
}

void archive_keep(void *arg, const struct keep_request *req, keep_done_fn done, void *ctx)
{
	struct archiver *a = arg;
	struct archive *ar = a->archive;
	struct archive_job *job = calloc(1, sizeof(*job));
	struct us_err err;

	if (!job) {
		err_set(&err, US_ENOMEM, "out of memory");
		done(ctx, US_ENOMEM, &err, NULL);
		return;
	}
	job->req = *req;
	job->done = done;
	job->ctx = ctx;
	pthread_mutex_lock(&ar->lock);
	if (ar->is_stopping) {
		pthread_mutex_unlock(&ar->lock);
		free(job);
		err_set(&err, US_EUNAVAIL, "the archiver is stopping: the save was not taken");
		done(ctx, US_EUNAVAIL, &err, NULL);
		return;
	}
	if (ar->tail)
		ar->tail->next = job;
	else
		ar->head = job;
	ar->tail = job;
	pthread_cond_broadcast(&ar->cond);
	pthread_mutex_unlock(&ar->lock);
}
