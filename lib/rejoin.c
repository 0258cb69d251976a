/*
 * rejoin.c - export and rewind (rejoin.h).
 */
#include "rejoin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "disk.h"
#include "log.h"
#include "role.h"
#include "save.h"
#include "stream.h"
#include "understudy.h"
#include "us_limits.h"

#define emit(o, level, ...) event_emit((o)->on_event, (o)->arg, (level), __VA_ARGS__)

/* ---- what the divergence touched ---- */

enum touched_kind { T_ACCOUNT = 'A', T_FILE = 'F', T_ITEM = 'I' };

struct touched {
	char kind;                               /* enum touched_kind */
	char account[US_ACCOUNT_MAX_LEN + 1];
	char file[US_FILE_MAX_LEN + 1];
	uint8_t section;
	uint8_t *id;                             /* owned */
	size_t id_len;
};

struct touched_set {
	struct touched *v;
	size_t n, cap;
};

static int touched_add(struct touched_set *t, const struct entry *e, struct us_err *err)
{
	struct touched *x;

	if (e->op < ENTRY_WRITE || e->op > ENTRY_SET_LOGGING)
		return 0; /* heartbeats and marks touch nothing */
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct touched *v = realloc(t->v, cap * sizeof(*v));

		if (!v)
			return err_set(err, US_ENOMEM, "out of memory");
		t->v = v;
		t->cap = cap;
	}
	x = &t->v[t->n];
	memset(x, 0, sizeof(*x));
	snprintf(x->account, sizeof(x->account), "%.*s", (int)e->account_len, e->account);
	snprintf(x->file, sizeof(x->file), "%.*s", (int)e->file_len, e->file);
	if (e->op == ENTRY_SET_LOGGING && e->file_len == 0) {
		x->kind = T_ACCOUNT;
	} else if (e->op == ENTRY_WRITE || e->op == ENTRY_DELETE) {
		x->kind = T_ITEM;
		x->section = e->section;
		x->id = malloc(e->id_len ? e->id_len : 1);
		if (!x->id)
			return err_set(err, US_ENOMEM, "out of memory");
		memcpy(x->id, e->id, e->id_len);
		x->id_len = e->id_len;
	} else {
		x->kind = T_FILE; /* create, clear, delete, a file's logging */
	}
	t->n++;
	return 0;
}

static int touched_cmp(const void *pa, const void *pb)
{
	const struct touched *a = pa, *b = pb;
	int c;

	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	if ((c = strcmp(a->account, b->account)) || (c = strcmp(a->file, b->file)))
		return c;
	if (a->section != b->section)
		return a->section < b->section ? -1 : 1;
	if (a->id_len != b->id_len)
		return a->id_len < b->id_len ? -1 : 1;
	return a->id_len ? memcmp(a->id, b->id, a->id_len) : 0;
}

/* Sorted (accounts, files, items) and without repeats. */
static void touched_sort(struct touched_set *t)
{
	size_t k = 0;

	if (t->n == 0)
		return;
	qsort(t->v, t->n, sizeof(*t->v), touched_cmp);
	for (size_t i = 1; i < t->n; i++) {
		if (touched_cmp(&t->v[k], &t->v[i]) == 0) {
			free(t->v[i].id);
			continue;
		}
		t->v[++k] = t->v[i];
	}
	t->n = k + 1;
}

static bool touched_has_file(const struct touched_set *t, const char *account, const char *file)
{
	for (size_t i = 0; i < t->n && t->v[i].kind <= T_FILE; i++)
		if (t->v[i].kind == T_FILE && strcmp(t->v[i].account, account) == 0 &&
		    strcmp(t->v[i].file, file) == 0)
			return true;
	return false;
}

static void touched_release(struct touched_set *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].id);
	free(t->v);
	memset(t, 0, sizeof(*t));
}

/* ---- the image: entries that own their bytes ---- */

struct image_list {
	struct entry *v;
	void **mem;
	size_t n, cap;
	uint64_t bytes;
};

static int image_add(struct image_list *im, uint8_t op, const char *account, const char *file,
		     uint8_t section, const uint8_t *id, size_t id_len, const uint8_t *body,
		     size_t body_len, bool flag, struct us_err *err)
{
	size_t alen = strlen(account), flen = strlen(file);
	struct entry *e;
	char *m;

	if (im->n == im->cap) {
		size_t cap = im->cap ? im->cap * 2 : 64;
		struct entry *v = realloc(im->v, cap * sizeof(*v));
		void **mem;

		if (!v)
			return err_set(err, US_ENOMEM, "out of memory");
		im->v = v;
		mem = realloc(im->mem, cap * sizeof(*mem));
		if (!mem)
			return err_set(err, US_ENOMEM, "out of memory");
		im->mem = mem;
		im->cap = cap;
	}
	m = malloc(alen + flen + id_len + body_len + 1);
	if (!m)
		return err_set(err, US_ENOMEM, "out of memory");
	e = &im->v[im->n];
	im->mem[im->n] = m;
	im->n++;
	memset(e, 0, sizeof(*e));
	e->op = op;
	e->is_commit_end = true;
	memcpy(m, account, alen);
	e->account = m;
	e->account_len = alen;
	memcpy(m + alen, file, flen);
	e->file = m + alen;
	e->file_len = flen;
	e->section = section;
	if (id_len)
		memcpy(m + alen + flen, id, id_len);
	e->id = (const uint8_t *)m + alen + flen;
	e->id_len = id_len;
	if (body_len)
		memcpy(m + alen + flen + id_len, body, body_len);
	e->body = (const uint8_t *)m + alen + flen + id_len;
	e->body_len = body_len;
	e->flag = flag;
	im->bytes += alen + flen + id_len + body_len;
	if (im->bytes > US_REWIND_MAX_BYTES)
		return err_set(err, US_ETOOBIG,
			       "what the divergence touched is over %u MiB: too much for a rewind "
			       "(rebuild this site from a save of the primary: understudy save, "
			       "understudy restore)",
			       US_REWIND_MAX_BYTES >> 20);
	return 0;
}

static void image_release(struct image_list *im)
{
	for (size_t i = 0; i < im->n; i++)
		free(im->mem[i]);
	free(im->v);
	free(im->mem);
	memset(im, 0, sizeof(*im));
}

/* ---- 1. the export ---- */

static int export_tail(const struct rejoin_opts *o, uint64_t fork, const struct store_position *pos,
		       struct touched_set *t, struct rejoin_result *res, struct us_err *err)
{
	struct store *s = o->store;
	struct save_header h;
	struct save_writer *w = NULL;
	struct store_journal_iter *it = NULL;
	char partial[sizeof(res->export_path) + 32];
	struct entry e;
	uint64_t seq, chain, want = fork;
	FILE *f = NULL;
	int rc;

	if ((rc = disk_mkdir_p(o->export_dir, err)))
		return rc;
	if ((rc = store_chain_before(s, fork, &chain, err)))
		return err_wrap(err, "the history before seq %" PRIu64, fork);
	snprintf(res->export_path, sizeof(res->export_path), "%s/%s-g%" PRIu64 "-%" PRIu64 "-%" PRIu64
		 ".export", o->export_dir, o->ns, pos->generation, fork, pos->seq);
	snprintf(partial, sizeof(partial), "%s.partial", res->export_path);
	memset(&h, 0, sizeof(h));
	h.kind = SAVE_KIND_EXPORT;
	snprintf(h.ns, sizeof(h.ns), "%s", o->ns);
	h.generation = pos->generation;
	h.seq = fork - 1;
	h.chain = chain;
	snprintf(h.creator, sizeof(h.creator), "%s", store_node_id(s));
	snprintf(h.site, sizeof(h.site), "%s", store_node_id(s));
	h.created_ms = clock_wall_ms();
	f = fopen(partial, "wb");
	if (!f)
		return err_set(err, errno == ENOSPC ? US_ENOSPC : US_EIO, "cannot create %s: %s",
			       partial, strerror(errno));
	if ((rc = save_writer_new(&w, &h, save_file_sink, f, err)) ||
	    (rc = store_journal_iter_new(s, fork, &it, err)))
		goto out;
	for (; (rc = store_journal_iter_next(it, &seq, &e, NULL, NULL, err)) == 1; want++) {
		if (seq > pos->seq)
			break;
		if (seq != want) {
			rc = err_set(err, US_ECORRUPT, "the journal does not reach back to seq %" PRIu64
				     ": this site's own tail is not all there to export", fork);
			goto out;
		}
		if ((rc = touched_add(t, &e, err)))
			goto out;
		if (e.op > ENTRY_SET_LOGGING)
			continue;
		if ((rc = save_writer_add(w, &e, err)))
			goto out;
		res->exported++;
	}
	if (rc < 0)
		goto out;
	if (want != pos->seq + 1) {
		rc = err_set(err, US_ECORRUPT,
			     "the journal ends at seq %" PRIu64 ", before the position's %" PRIu64
			     ": this site's own tail is not all there to export",
			     want - 1, pos->seq);
		goto out;
	}
	if ((rc = save_writer_finish(w, NULL, err)))
		goto out;
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		rc = err_set(err, errno == ENOSPC ? US_ENOSPC : US_EIO, "cannot write %s: %s", partial,
			     strerror(errno));
		goto out;
	}
	rc = fclose(f);
	f = NULL;
	if (rc != 0) {
		rc = err_set(err, errno == ENOSPC ? US_ENOSPC : US_EIO, "cannot write %s: %s", partial,
			     strerror(errno));
		goto out;
	}
	if (rename(partial, res->export_path) != 0) {
		rc = err_set(err, US_EIO, "cannot rename %s: %s", partial, strerror(errno));
		goto out;
	}
	rc = disk_sync_path(o->export_dir, true, err);
out:
	store_journal_iter_free(it);
	save_writer_free(w);
	if (f)
		fclose(f);
	if (rc)
		unlink(partial);
	return rc;
}

/* ---- 2. what the primary touched since the fork ---- */

struct journal_walk {
	uint64_t fork, upto;     /* fork .. upto (the snapshot's seq) */
	uint64_t next;           /* the seq the next frame must begin at */
	uint64_t chain;          /* before fork (this site's), then after what was folded */
	bool is_first;
	struct touched_set *t;
	struct stream_frame frame;
	struct rejoin_result *res;
	struct us_err err;
};

static int on_journal(void *arg, uint64_t first_seq, uint32_t count, uint32_t raw_len,
		      const uint8_t *block, size_t block_len, uint64_t prev_chain)
{
	struct journal_walk *jw = arg;

	if (first_seq > jw->upto)
		return 1;
	if (!jw->is_first && (first_seq != jw->next || prev_chain != jw->chain))
		return err_set(&jw->err, US_ECORRUPT,
			       "the primary's journal frame at seq %" PRIu64 " does not continue the "
			       "one before it (want seq %" PRIu64 ")",
			       first_seq, jw->next);
	if (jw->is_first) {
		jw->is_first = false;
		if (first_seq != jw->fork || prev_chain != jw->chain)
			return err_set(&jw->err, US_EPRECOND,
				       "the primary's history does not continue this site's before "
				       "seq %" PRIu64 " (its journal starts at seq %" PRIu64
				       ", chain %016" PRIx64 ", here %016" PRIx64
				       "): a namespace has one history; rebuild this site from a "
				       "save of the primary",
				       jw->fork, first_seq, prev_chain, jw->chain);
	}
	jw->res->bytes += block_len;
	if (stream_decode_entries(first_seq, count, raw_len, block, block_len, &jw->frame,
				  &jw->err))
		return jw->err.code;
	for (size_t i = 0; i < jw->frame.n && first_seq + i <= jw->upto; i++)
		if (touched_add(jw->t, &jw->frame.entries[i], &jw->err))
			return jw->err.code;
	if (entry_block_chain(jw->frame.raw.p, jw->frame.raw.len, jw->upto, &jw->chain, &jw->err))
		return jw->err.code;
	jw->next = first_seq + count;
	return 0;
}

/* ---- 3. the image at the snapshot ---- */

struct scan_ctx {
	struct image_list *im;
	const char *account, *file;
	uint8_t section;
	struct us_err err;
};

static int on_item(void *arg, const uint8_t *id, size_t id_len, const uint8_t *body,
		   size_t body_len)
{
	struct scan_ctx *sc = arg;

	return image_add(sc->im, ENTRY_WRITE, sc->account, sc->file, sc->section, id, id_len, body,
			 body_len, false, &sc->err) ? sc->err.code : 0;
}

static const us_file_info_t *find_file(const us_file_info_t *files, size_t n, const char *account,
				       const char *file)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(files[i].account, account) == 0 &&
		    (!file || strcmp(files[i].file, file) == 0))
			return &files[i];
	return NULL;
}

static int build_image(us_client_t *c, const char *ns, uint64_t snap, const struct touched_set *t,
		       struct image_list *im, struct rejoin_result *res, struct us_err *err)
{
	us_file_info_t *files = NULL;
	size_t n_files = 0;
	int rc;

	if ((rc = us_list_file_names(c, ns, NULL, snap, &files, &n_files, err)))
		return err_wrap(err, "the primary's files");
	for (size_t i = 0; i < t->n && rc == 0; i++) {
		const struct touched *x = &t->v[i];
		const us_file_info_t *fi = find_file(files, n_files, x->account,
						     x->kind == T_ACCOUNT ? NULL : x->file);

		res->keys++;
		if (x->kind == T_ACCOUNT) {
			if (fi) /* an account with no file there: nothing to say */
				rc = image_add(im, ENTRY_SET_LOGGING, x->account, "", 0, NULL, 0,
					       NULL, 0, fi->is_account_logged != 0, err);
		} else if (x->kind == T_FILE) {
			rc = image_add(im, ENTRY_DELETE_FILE, x->account, x->file, 0, NULL, 0, NULL,
				       0, false, err);
			if (rc == 0 && fi)
				rc = image_add(im, ENTRY_CREATE_FILE, x->account, x->file, 0, NULL,
					       0, NULL, 0, fi->is_logged != 0, err);
			for (int sec = 0; rc == 0 && fi && sec < 2; sec++) {
				struct scan_ctx sc = {.im = im, .account = x->account,
						      .file = x->file, .section = (uint8_t)sec};
				us_scan_opts_t so = {.is_dict = sec, .snapshot = snap};

				rc = us_scan(c, ns, x->account, x->file, &so, on_item, &sc, err);
				if (rc && sc.err.code)
					*err = sc.err;
			}
		} else if (fi && !touched_has_file(t, x->account, x->file)) {
			uint8_t *body = NULL;
			size_t body_len = 0;

			rc = us_read(c, ns, x->account, x->file, x->section, x->id, x->id_len, snap,
				     &body, &body_len, err);
			if (rc == 0)
				rc = image_add(im, ENTRY_WRITE, x->account, x->file, x->section, x->id,
					       x->id_len, body, body_len, false, err);
			else if (rc == US_ENOTFOUND)
				rc = image_add(im, ENTRY_DELETE, x->account, x->file, x->section,
					       x->id, x->id_len, NULL, 0, false, err);
			free(body);
		}
	}
	free(files);
	res->bytes += im->bytes;
	return rc;
}

/* ---- the whole ---- */

static int rewind_from(const struct rejoin_opts *o, const struct store_primary_info *pi,
		       struct touched_set *t, struct rejoin_result *res, struct us_err *err)
{
	us_client_t *c;
	us_snapshot_t snap;
	struct journal_walk jw;
	struct image_list im;
	struct store_rewind rw;
	int rc;

	memset(&im, 0, sizeof(im));
	memset(&jw, 0, sizeof(jw));
	c = us_client_new(pi->addr, NULL, err);
	if (!c)
		return err->code;
	if ((rc = us_open_snapshot(c, o->ns, &snap, err))) {
		err_wrap(err, "a snapshot of %s at the primary %s", o->ns, pi->addr);
		goto out_client;
	}
	if (snap.generation != pi->generation) {
		rc = err_set(err, US_EPRECOND,
			     "the primary %s of %s is at generation %" PRIu64 ", not %" PRIu64
			     " as when this site was fenced: it changed hands since; this site "
			     "can only rejoin the generation that fenced it",
			     pi->addr, o->ns, snap.generation, pi->generation);
		goto out_snap;
	}
	jw.fork = pi->first_seq;
	jw.upto = snap.seq;
	jw.next = pi->first_seq;
	jw.is_first = true;
	jw.t = t;
	jw.res = res;
	stream_frame_init(&jw.frame);
	if ((rc = store_chain_before(o->store, pi->first_seq, &jw.chain, err)))
		goto out_frame;
	if (snap.seq >= pi->first_seq) {
		rc = us_read_journal(c, o->ns, pi->first_seq, on_journal, &jw, err);
		if (rc == 1)
			rc = 0; /* stopped past the snapshot */
		if (rc && jw.err.code)
			*err = jw.err;
		if (rc)
			goto out_frame;
	}
	/* every seq from the fork to the snapshot was read, no less */
	if (jw.next <= snap.seq) {
		rc = err_set(err, US_ERANGE,
			     "the primary's journal of %s ended at seq %" PRIu64 ", before its "
			     "snapshot's %" PRIu64 ": what it committed since the fork is not all there",
			     o->ns, jw.next - 1, snap.seq);
		goto out_frame;
	}
	touched_sort(t);
	if ((rc = build_image(c, o->ns, snap.id, t, &im, res, err)))
		goto out_frame;
	memset(&rw, 0, sizeof(rw));
	rw.to.generation = snap.generation;
	rw.to.seq = snap.seq;
	rw.to.time_ms = snap.time_ms;
	rw.to.chain = jw.chain;
	rw.first_seq = pi->first_seq;
	rw.image = im.v;
	rw.n_image = im.n;
	rw.export_path = res->export_path;
	rw.exported = res->exported;
	if ((rc = store_rewind(o->store, &rw, err)))
		goto out_frame;
	res->to = rw.to;
	res->is_rewound = true;
out_frame:
	stream_frame_release(&jw.frame);
out_snap:
	if (us_release_snapshot(c, o->ns, snap.id, NULL) != 0 && rc == 0)
		emit(o, LOG_LVL_DEBUG, "ns=%s event=snapshot_not_released id=%" PRIu64
		     " reason=\"it ends by itself after its ttl\"", o->ns, snap.id);
out_client:
	us_client_free(c);
	image_release(&im);
	return rc;
}

int rejoin_run(const struct rejoin_opts *o, struct rejoin_result *res, struct us_err *err)
{
	struct store_primary_info pi;
	struct store_position pos;
	struct touched_set t;
	int rc;

	memset(res, 0, sizeof(*res));
	if (store_role(o->store) != ROLE_FENCED)
		return 0;
	store_primary(o->store, &pi);
	store_get_position(o->store, &pos);
	res->fork_seq = pi.first_seq;
	if (pi.first_seq == 0 || pos.seq + 1 < pi.first_seq)
		return err_set(err, US_EPRECOND,
			       "this site is at seq %" PRIu64 ", before the fork at seq %" PRIu64
			       ": it lacks history the primary has; rebuild it from a save of the "
			       "primary",
			       pos.seq, pi.first_seq);
	memset(&t, 0, sizeof(t));
	if (pos.seq >= pi.first_seq && (rc = export_tail(o, pi.first_seq, &pos, &t, res, err))) {
		err_wrap(err, "the export of this site's own tail");
		touched_release(&t);
		return rc;
	}
	if (res->exported)
		emit(o, LOG_LVL_WARN, "ns=%s event=tail_exported entries=%" PRIu64 " from_seq=%" PRIu64
		     " to_seq=%" PRIu64 " file=%s reason=\"commits made here after the fork, "
		     "never shipped: not in the rejoined store\"",
		     o->ns, res->exported, pi.first_seq, pos.seq, res->export_path);
	rc = rewind_from(o, &pi, &t, res, err);
	touched_release(&t);
	if (rc)
		return rc;
	emit(o, LOG_LVL_INFO, "ns=%s event=rewound primary=%s generation=%" PRIu64 " seq=%" PRIu64
	     " keys=%" PRIu64 " bytes=%" PRIu64, o->ns, pi.addr, res->to.generation, res->to.seq,
	     res->keys, res->bytes);
	return 0;
}
