/*
 * store_read.c - the store's reads (items, scans, the file list) and its
 * snapshots; store.h is the contract, store_int.h what this file shares
 * with store.c and store_journal.c.
 *
 * Every read sees one state: a RocksDB read sees whole write batches only,
 * and a commit, its journal entries and the position it moves to are one
 * batch (store.c), so a read never sees half a commit. A snapshot pins that
 * state for as long as it lives: each read "at" it reads through the same
 * RocksDB snapshot, and its position is read through it too, so the
 * position it reports is the one of the data it shows.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "store_int.h"

struct store_iter {
	rocksdb_iterator_t *it;
	rocksdb_readoptions_t *ro;
	struct buf lower;     /* the section's key prefix */
	struct buf upper;     /* first key after the section: the iterator's bound */
	bool is_started;
	bool is_reverse;      /* ids in descending order (store_iter_new_reverse) */
};

/* ---- snapshots ---- */

int store_snap_new(struct store *s, struct store_snap **out, struct us_err *err)
{
	struct store_snap *snap = calloc(1, sizeof(*snap));
	char *errptr = NULL;
	size_t len;
	char *v;
	int rc;

	if (!snap)
		return err_set(err, US_ENOMEM, "out of memory");
	snap->s = s;
	snap->snap = rocksdb_create_snapshot(s->db);
	snap->ro = rocksdb_readoptions_create();
	rocksdb_readoptions_set_snapshot(snap->ro, snap->snap);
	/* the position as of the snapshot: written in the same batches as the data */
	v = rocksdb_get(s->db, snap->ro, KEY_POS, strlen(KEY_POS), &len, &errptr);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read the position of a snapshot")))
		goto out_free;
	rc = store__decode_pos(v, len, &snap->pos);
	rocksdb_free(v);
	if (rc) {
		err_set(err, rc, "missing or bad position record");
		goto out_free;
	}
	*out = snap;
	return 0;

out_free:
	store_snap_free(snap);
	return rc;
}

void store_snap_free(struct store_snap *snap)
{
	if (!snap)
		return;
	if (snap->ro)
		rocksdb_readoptions_destroy(snap->ro);
	if (snap->snap)
		rocksdb_release_snapshot(snap->s->db, snap->snap);
	free(snap);
}

const struct store_position *store_snap_position(const struct store_snap *snap)
{
	return &snap->pos;
}

/* The read options of a point read at `at` (NULL: the latest state). */
static rocksdb_readoptions_t *read_opts_at(struct store *s, const struct store_snap *at)
{
	assert(!at || at->s == s);
	return at ? at->ro : s->read_opts;
}

/* New read options for an iterator over [.., upper) at `at`; the caller
 * destroys them after the iterator (upper is borrowed as long). */
static rocksdb_readoptions_t *iter_opts_at(const struct store_snap *at, const struct buf *upper)
{
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();

	rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)upper->p, upper->len);
	if (at)
		rocksdb_readoptions_set_snapshot(ro, at->snap);
	return ro;
}

/* ---- reads ---- */

static int check_file_exists(struct store *s, rocksdb_readoptions_t *ro, const char *account,
			     const char *file, struct us_err *err)
{
	struct buf k;
	char *errptr = NULL;
	size_t len;
	char *v;
	int rc;

	buf_init(&k);
	if (store__key_file(&k, 'F', account, strlen(account), file, strlen(file))) {
		buf_release(&k);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	v = rocksdb_get(s->db, ro, (char *)k.p, k.len, &len, &errptr);
	buf_release(&k);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read file record")))
		return rc;
	if (!v)
		return err_set(err, US_ENOTFOUND, "file %s/%s does not exist", account, file);
	rocksdb_free(v);
	return 0;
}

static int check_read_names(const char *account, const char *file, uint8_t section,
			    struct us_err *err)
{
	int rc;

	if ((rc = names_check_account(account, strlen(account), err)) ||
	    (rc = names_check_file(file, strlen(file), err)))
		return rc;
	if (section != SECTION_DATA && section != SECTION_DICT)
		return err_set(err, US_EINVAL, "bad section %u", section);
	return 0;
}

int store_get(struct store *s, const struct store_snap *at, const char *account, const char *file,
	      uint8_t section, const uint8_t *id, size_t id_len, struct buf *body,
	      struct us_err *err)
{
	struct entry e = {.account = account, .account_len = strlen(account), .file = file,
			  .file_len = strlen(file), .section = section, .id = id, .id_len = id_len};
	rocksdb_readoptions_t *ro = read_opts_at(s, at);
	struct buf k;
	char *errptr = NULL;
	size_t len;
	char *v;
	int rc;

	if ((rc = check_read_names(account, file, section, err)) ||
	    (rc = names_check_id(id, id_len, err)))
		return rc;
	buf_init(&k);
	if (store__key_item(&k, &e)) {
		buf_release(&k);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	v = rocksdb_get(s->db, ro, (char *)k.p, k.len, &len, &errptr);
	buf_release(&k);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read item")))
		return rc;
	if (!v) {
		char esc[80];

		if ((rc = check_file_exists(s, ro, account, file, err)))
			return rc;
		return err_set(err, US_ENOTFOUND, "no item %s in %s/%s%s",
			       names_escape(id, id_len, esc, sizeof(esc)), account, file,
			       section == SECTION_DICT ? " (dict)" : "");
	}
	buf_reset(body);
	rc = buf_append(body, v, len);
	if (rc == 0 && body->p == NULL)
		rc = buf_reserve(body, 1); /* a 0-byte body still gets a buffer */
	rocksdb_free(v);
	if (rc)
		return err_set(err, US_ENOMEM, "out of memory");
	return 0;
}

/* A new iterator over a section's items at `at`, bounded to the section
 * (upper always; lower too when is_reverse), not positioned yet. */
static int iter_open(struct store *s, const struct store_snap *at, const char *account,
		     const char *file, uint8_t section, bool is_reverse, struct store_iter **out,
		     struct us_err *err)
{
	struct store_iter *it;
	int rc;

	*out = NULL;
	if ((rc = check_read_names(account, file, section, err)) ||
	    (rc = check_file_exists(s, read_opts_at(s, at), account, file, err)))
		return rc;
	it = calloc(1, sizeof(*it));
	if (!it)
		return err_set(err, US_ENOMEM, "out of memory");
	buf_init(&it->lower);
	buf_init(&it->upper);
	if (store__key_section(&it->lower, account, strlen(account), file, strlen(file), section) ||
	    store__key_successor(&it->upper, it->lower.p, it->lower.len)) {
		store_iter_free(it);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	/* without a snapshot the iterator takes its own, implicitly, here */
	it->ro = iter_opts_at(at, &it->upper);
	/* a backward scan must stop at the section's start */
	if (is_reverse)
		rocksdb_readoptions_set_iterate_lower_bound(it->ro, (char *)it->lower.p,
							    it->lower.len);
	it->it = rocksdb_create_iterator(s->db, it->ro);
	it->is_reverse = is_reverse;
	it->is_started = true;
	*out = it;
	return 0;
}

int store_iter_new(struct store *s, const struct store_snap *at, const char *account,
		   const char *file, uint8_t section, const uint8_t *start_after,
		   size_t start_after_len, struct store_iter **out, struct us_err *err)
{
	struct store_iter *it = NULL;
	int rc;

	if ((rc = iter_open(s, at, account, file, section, false, &it, err)))
		return rc;
	if (start_after && start_after_len) {
		struct buf k;

		buf_init(&k);
		if (buf_append(&k, it->lower.p, it->lower.len) ||
		    buf_append(&k, start_after, start_after_len)) {
			buf_release(&k);
			store_iter_free(it);
			return err_set(err, US_ENOMEM, "out of memory");
		}
		rocksdb_iter_seek(it->it, (char *)k.p, k.len);
		if (rocksdb_iter_valid(it->it)) {
			size_t klen;
			const char *key = rocksdb_iter_key(it->it, &klen);

			if (klen == k.len && memcmp(key, k.p, klen) == 0)
				rocksdb_iter_next(it->it);
		}
		buf_release(&k);
	} else {
		rocksdb_iter_seek(it->it, (char *)it->lower.p, it->lower.len);
	}
	*out = it;
	return 0;
}

int store_iter_new_reverse(struct store *s, const struct store_snap *at, const char *account,
			   const char *file, uint8_t section, struct store_iter **out,
			   struct us_err *err)
{
	int rc;

	if ((rc = iter_open(s, at, account, file, section, true, out, err)))
		return rc;
	rocksdb_iter_seek_to_last((*out)->it);
	return 0;
}

int store_iter_next(struct store_iter *it, const uint8_t **id, size_t *id_len,
		    const uint8_t **body, size_t *body_len, struct us_err *err)
{
	char *errptr = NULL;
	const char *k, *v;
	size_t klen, vlen;

	if (!it->is_started) {
		if (it->is_reverse)
			rocksdb_iter_prev(it->it);
		else
			rocksdb_iter_next(it->it);
	}
	it->is_started = false;
	if (!rocksdb_iter_valid(it->it)) {
		rocksdb_iter_get_error(it->it, &errptr);
		return store__take_rocks_err(&errptr, err, "cannot scan items");
	}
	k = rocksdb_iter_key(it->it, &klen);
	v = rocksdb_iter_value(it->it, &vlen);
	if (klen <= it->lower.len)
		return err_set(err, US_ECORRUPT, "item key without an id");
	*id = (const uint8_t *)k + it->lower.len;
	*id_len = klen - it->lower.len;
	*body = (const uint8_t *)v;
	*body_len = vlen;
	return 1;
}

void store_iter_free(struct store_iter *it)
{
	if (!it)
		return;
	if (it->it)
		rocksdb_iter_destroy(it->it);
	if (it->ro)
		rocksdb_readoptions_destroy(it->ro);
	buf_release(&it->lower);
	buf_release(&it->upper);
	free(it);
}

/* Counts the keys in [prefix, successor(prefix)) at `at`. */
static int count_prefix(struct store *s, const struct store_snap *at, const struct buf *prefix,
			uint64_t *count, struct us_err *err)
{
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	struct buf upper;
	char *errptr = NULL;
	uint64_t n = 0;

	buf_init(&upper);
	if (store__key_successor(&upper, prefix->p, prefix->len))
		return err_set(err, US_ENOMEM, "out of memory");
	ro = iter_opts_at(at, &upper);
	it = rocksdb_create_iterator(s->db, ro);
	for (rocksdb_iter_seek(it, (char *)prefix->p, prefix->len); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it))
		n++;
	rocksdb_iter_get_error(it, &errptr);
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	buf_release(&upper);
	*count = n;
	return store__take_rocks_err(&errptr, err, "cannot count items");
}

int store_has_files(struct store *s, const struct store_snap *at, const char *account,
		    const char *file, bool *is_found, struct us_err *err)
{
	rocksdb_iterator_t *it;
	struct buf prefix, upper;
	char *errptr = NULL;
	int rc;

	*is_found = false;
	if (file) {
		rc = check_file_exists(s, read_opts_at(s, at), account, file, err);
		*is_found = rc == 0;
		return rc == US_ENOTFOUND ? 0 : rc;
	}
	buf_init(&prefix);
	buf_init(&upper);
	if (store__key_file(&prefix, 'F', account, strlen(account), "", 0) ||
	    store__key_successor(&upper, prefix.p, prefix.len)) {
		rc = err_set(err, US_ENOMEM, "out of memory");
		goto out;
	}
	{
		rocksdb_readoptions_t *ro = iter_opts_at(at, &upper);

		it = rocksdb_create_iterator(s->db, ro);
		rocksdb_iter_seek(it, (char *)prefix.p, prefix.len);
		*is_found = rocksdb_iter_valid(it);
		rocksdb_iter_get_error(it, &errptr);
		rocksdb_iter_destroy(it);
		rocksdb_readoptions_destroy(ro);
	}
	rc = store__take_rocks_err(&errptr, err, "cannot read the file list");
out:
	buf_release(&prefix);
	buf_release(&upper);
	return rc;
}

/* An account's logged flag and stale seq (no record: logged, not stale). */
static int read_account_flags(struct store *s, const struct store_snap *at, const char *account,
			      size_t len, bool *is_logged, uint64_t *stale_since_seq,
			      struct us_err *err)
{
	char key[1 + US_ACCOUNT_MAX_LEN];
	char *errptr = NULL;
	size_t vlen;
	char *v;
	int rc;

	key[0] = 'A';
	memcpy(key + 1, account, len);
	v = rocksdb_get(s->db, read_opts_at(s, at), key, 1 + len, &vlen, &errptr);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read account record")))
		return rc;
	*is_logged = !v || vlen < 1 || (v[0] & FLAG_LOGGED) != 0;
	*stale_since_seq = v && vlen >= 9 ? buf_get_u64le((uint8_t *)v + 1) : 0;
	rocksdb_free(v);
	return 0;
}

/* One 'F' record (key, value) into fi, with its account's flags and its counts. */
static int file_info(struct store *s, const struct store_snap *at, const char *key, size_t klen,
		     const char *v, size_t vlen, bool is_counted, struct store_file_info *fi,
		     struct us_err *err)
{
	const char *sep = memchr(key + 1, 0, klen - 1);
	uint64_t account_stale;
	size_t alen, flen;
	struct buf k;
	int rc;

	if (!sep || vlen < 1)
		return err_set(err, US_ECORRUPT, "bad file record");
	alen = (size_t)(sep - key - 1);
	flen = klen - alen - 2;
	if (alen > US_ACCOUNT_MAX_LEN || flen > US_FILE_MAX_LEN)
		return err_set(err, US_ECORRUPT, "bad file record");
	memset(fi, 0, sizeof(*fi));
	memcpy(fi->account, key + 1, alen);
	memcpy(fi->file, sep + 1, flen);
	fi->is_logged = (v[0] & FLAG_LOGGED) != 0;
	fi->stale_since_seq = vlen >= 9 ? buf_get_u64le((const uint8_t *)v + 1) : 0;
	rc = read_account_flags(s, at, fi->account, alen, &fi->is_account_logged, &account_stale,
				err);
	if (rc)
		return rc;
	if (account_stale && (!fi->stale_since_seq || account_stale < fi->stale_since_seq))
		fi->stale_since_seq = account_stale;
	buf_init(&k);
	for (uint8_t sec = SECTION_DATA; sec <= SECTION_DICT && !rc && is_counted; sec++) {
		if (store__key_section(&k, fi->account, alen, fi->file, flen, sec))
			rc = err_set(err, US_ENOMEM, "out of memory");
		else
			rc = count_prefix(s, at, &k,
					  sec == SECTION_DATA ? &fi->data_items : &fi->dict_items, err);
	}
	buf_release(&k);
	return rc;
}

static int list_files_at(struct store *s, const struct store_snap *at, const char *account,
			 bool is_counted, struct store_file_info **files, size_t *n_files,
			 struct us_err *err)
{
	struct store_file_info *out = NULL;
	size_t n = 0, cap = 0;
	rocksdb_iterator_t *it;
	struct buf prefix;
	char *errptr = NULL;
	int rc = 0;

	buf_init(&prefix);
	if (buf_append_u8(&prefix, 'F') ||
	    (account && (buf_append(&prefix, account, strlen(account)) || buf_append_u8(&prefix, 0)))) {
		buf_release(&prefix);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	it = rocksdb_create_iterator(s->db, read_opts_at(s, at));
	for (rocksdb_iter_seek(it, (char *)prefix.p, prefix.len); rocksdb_iter_valid(it);
	     rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *key = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);

		if (klen < prefix.len || memcmp(key, prefix.p, prefix.len) != 0)
			break;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct store_file_info *p = realloc(out, ncap * sizeof(*p));

			if (!p) {
				rc = err_set(err, US_ENOMEM, "out of memory");
				break;
			}
			out = p;
			cap = ncap;
		}
		if ((rc = file_info(s, at, key, klen, v, vlen, is_counted, &out[n], err)))
			break;
		n++;
	}
	if (!rc) {
		rocksdb_iter_get_error(it, &errptr);
		rc = store__take_rocks_err(&errptr, err, "cannot list files");
	}
	rocksdb_iter_destroy(it);
	buf_release(&prefix);
	if (rc) {
		free(out);
		return rc;
	}
	*files = out;
	*n_files = n;
	return 0;
}

static int list_files(struct store *s, const struct store_snap *at, const char *account,
		      bool is_counted, struct store_file_info **files, size_t *n_files,
		      struct us_err *err)
{
	struct store_snap *now = NULL;
	int rc;

	if (account && (rc = names_check_account(account, strlen(account), err)))
		return rc;
	/* the list and its counts are read at one point, a snapshot of now
	 * when none is given */
	if (!at && (rc = store_snap_new(s, &now, err)))
		return rc;
	rc = list_files_at(s, at ? at : now, account, is_counted, files, n_files, err);
	store_snap_free(now);
	return rc;
}

int store_list_files(struct store *s, const struct store_snap *at, const char *account,
		     struct store_file_info **files, size_t *n_files, struct us_err *err)
{
	return list_files(s, at, account, true, files, n_files, err);
}

int store_list_file_names(struct store *s, const struct store_snap *at, const char *account,
			  struct store_file_info **files, size_t *n_files, struct us_err *err)
{
	return list_files(s, at, account, false, files, n_files, err);
}

int store_generation_start(struct store *s, uint64_t generation, uint64_t *first_seq,
			   struct us_err *err)
{
	uint8_t genkey[KEY_GEN_BYTES];
	char *errptr = NULL;
	size_t len;
	char *v;
	int rc;

	store__key_gen(genkey, generation);
	v = rocksdb_get(s->db, s->read_opts, (char *)genkey, sizeof(genkey), &len, &errptr);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read the generation history")))
		return rc;
	if (!v)
		return err_set(err, US_ENOTFOUND, "generation %llu is not in this store's history",
			       (unsigned long long)generation);
	rc = len == 8 ? 0 : err_set(err, US_ECORRUPT, "bad history record of generation %llu",
				    (unsigned long long)generation);
	if (rc == 0)
		*first_seq = buf_get_u64le((const uint8_t *)v);
	rocksdb_free(v);
	return rc;
}
