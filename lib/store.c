/*
 * store.c - one namespace's database on RocksDB: open and close, the catalog,
 * and every write (commits, replica applies, full-copy loads, the position).
 * See store.h for the contract and docs/store-format.md for the key layout;
 * the keys this file keeps, repeated here:
 *
 *   key                                        value
 *   'M' "format"                               "USST" u8 version (3)
 *   'M' "pos"                                  u64le generation, u64le seq, u64le time_ms,
 *                                              u64le chain
 *   'M' "gen" u64be generation                 u64le first seq of that generation
 *   'M' "node"                                 this store's node id (32 hex digits)
 *   'M' "site"                                 a replica's site node id (store_bind_site)
 *   'A' account                                u8 flags (bit 0: is_logged)
 *   'F' account 0x00 file                      u8 flags (bit 0: is_logged)
 *   'D' account 0x00 file 0x00 u8 section id   item body (opaque bytes)
 *
 * On a replica, the 'A' or 'F' record of an account or file stale since a
 * seq (logging turned off, or a file reset by a re-ship) carries u64le
 * stale_since_seq after its flags (put_flags). The journal's keys ('J'
 * blocks, 'H' chains) are lib/store_journal.c's; reads and snapshots are
 * lib/store_read.c's; lib/store_int.h is what the three share.
 *
 * Invariants kept here:
 * - seq is contiguous: every batch appends J blocks holding seq+1..seq+k and
 *   writes 'M' "pos" = seq+k in the same atomic, synced RocksDB write batch
 *   (an apply without is_sync is synced later), so the journal and the data
 *   it describes can never disagree after a crash. The journal's calls
 *   (store__journal_*) only put blocks into the batch they are given: this
 *   file makes each commit's or apply's batch and writes it.
 * - A refused commit leaves nothing in the batch (write-batch save points,
 *   with store__journal_mark and _rollback for its journal entries) and
 *   nothing in the catalog (it is restored from a copy).
 * - The catalog (accounts and files with their flags) mirrors the 'A' and 'F'
 *   keys; only the writer thread reads or changes it. If a batch write fails it
 *   is reloaded from the database, which is then the truth.
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

#include <rocksdb/c.h>

#include "names.h"
#include "store_int.h"

/* RocksDB counts key comparisons and more in thread-local perf counters by
 * default; nothing here reads them, and on the write path they cost as much
 * as a sixth of the time. The level is per thread: set on each entry point
 * that writes or scans much. */
void store__perf_off(void)
{
	rocksdb_set_perf_level(rocksdb_disable);
}

/* ---- helpers: RocksDB errors ---- */

/* Only this module touches errptr: turns it into err and frees it. */
int store__take_rocks_err(char **errptr, struct us_err *err, const char *what)
{
	int code = US_EIO;

	if (!*errptr)
		return 0;
	if (strstr(*errptr, "lock") || strstr(*errptr, "Resource temporarily unavailable"))
		code = US_EUNAVAIL;
	else if (strstr(*errptr, "No space left"))
		code = US_ENOSPC;
	else if (strstr(*errptr, "Corruption"))
		code = US_ECORRUPT;
	err_set(err, code, "%s: %s", what, *errptr);
	rocksdb_free(*errptr);
	*errptr = NULL;
	return code;
}

/* A RocksDB write or sync that failed on the WAL leaves the store failed for
 * good: once space returns, Debian's RocksDB 7.8 clears its background error
 * by itself and the next write appends to the WAL writer that saw the
 * failure, which trips an assertion and aborts the process (seen:
 * WritableFileWriter::AssertFalseAndGetStatusForPrevError from
 * log::Writer::AddRecord). So it is never written to again: reads go on, and
 * writes resume once the store is closed and opened again (store_close is
 * safe then: tried after ENOSPC and EIO on the WAL, at once and later), which
 * recovers it as after a kill -9. A failure that names no WAL file (".log": a
 * background flush or compaction, which RocksDB retries by itself) leaves
 * the WAL writer sound: the write is refused and the next one may succeed.
 * The disk reserve (disk.h) keeps a daemon's own writes from getting here. */
int store__take_write_err(struct store *s, char **errptr, struct us_err *err, const char *what)
{
	bool is_wal = *errptr && strstr(*errptr, ".log");
	int rc = store__take_rocks_err(errptr, err, what);

	if (rc && is_wal)
		atomic_store(&s->is_failed, true);
	return rc;
}

/* Before a write that will be acknowledged (disk.h): the directory is still
 * there and writable and, when is_space, the reserve is free. */
#define STORE_STR_(x) #x
#define STORE_STR(x) STORE_STR_(x)

int store__check_disk(struct store *s, bool is_space, struct us_err *err)
{
	return disk_check(s->dir, &s->dir_id, is_space ? s->reserve : NULL, err);
}

/* Whether the store takes writes at all. */
int store__check_writable(struct store *s, struct us_err *err)
{
	if (s->is_read_only)
		return err_set(err, US_EPRECOND, "store is open read-only");
	if (atomic_load(&s->is_failed))
		return err_set(err, US_EIO,
			       "store %s takes no writes since one failed (a full disk?): reads go "
			       "on; restart the daemon once the cause is gone",
			       s->dir);
	return 0;
}

/* ---- keys ---- */

int store__key_file(struct buf *k, char tag, const char *account, size_t account_len,
		    const char *file, size_t file_len)
{
	buf_reset(k);
	if (buf_append_u8(k, (uint8_t)tag) || buf_append(k, account, account_len) ||
	    buf_append_u8(k, 0) || buf_append(k, file, file_len))
		return US_ENOMEM;
	return 0;
}

int store__key_section(struct buf *k, const char *account, size_t account_len, const char *file,
		       size_t file_len, uint8_t section)
{
	if (store__key_file(k, 'D', account, account_len, file, file_len) || buf_append_u8(k, 0) ||
	    buf_append_u8(k, section))
		return US_ENOMEM;
	return 0;
}

void store__key_gen(uint8_t *out, uint64_t generation)
{
	memcpy(out, KEY_GEN, sizeof(KEY_GEN) - 1);
	buf_put_u64be(out + sizeof(KEY_GEN) - 1, generation);
}

int store__key_item(struct buf *k, const struct entry *e)
{
	if (store__key_section(k, e->account, e->account_len, e->file, e->file_len, e->section) ||
	    buf_append(k, e->id, e->id_len))
		return US_ENOMEM;
	return 0;
}

/* The first key after every key that starts with prefix (prefix has no
 * trailing 0xFF byte in our layout, so incrementing the last byte works). */
int store__key_successor(struct buf *out, const uint8_t *prefix, size_t len)
{
	buf_reset(out);
	if (buf_append(out, prefix, len))
		return US_ENOMEM;
	while (out->len > 0 && out->p[out->len - 1] == 0xff)
		out->len--;
	if (out->len == 0)
		return US_EINVAL;
	out->p[out->len - 1]++;
	return 0;
}

/* ---- catalog ---- */

static void catalog_release(struct catalog *c)
{
	free(c->rows);
	c->rows = NULL;
	c->n = c->cap = 0;
}

static int cat_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int r = memcmp(a, b, n);

	if (r)
		return r;
	return alen < blen ? -1 : alen > blen;
}

/* Index of the row with key, or -(insertion point) - 1. */
static long catalog_find(const struct catalog *c, const char *key, size_t key_len)
{
	size_t lo = 0, hi = c->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = cat_cmp(c->rows[mid].key, c->rows[mid].key_len, key, key_len);

		if (r == 0)
			return (long)mid;
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(long)lo - 1;
}

static size_t cat_key(char *out, const char *account, size_t account_len, const char *file,
		      size_t file_len)
{
	memcpy(out, account, account_len);
	out[account_len] = '\0';
	if (file_len) /* an account's row: file may be NULL (an image's entry) */
		memcpy(out + account_len + 1, file, file_len);
	return account_len + 1 + file_len;
}

static struct cat_row *catalog_get(struct catalog *c, const char *account, size_t account_len,
				   const char *file, size_t file_len)
{
	char key[sizeof(((struct cat_row *)0)->key)];
	size_t len = cat_key(key, account, account_len, file, file_len);
	long i = catalog_find(c, key, len);

	return i >= 0 ? &c->rows[i] : NULL;
}

static int catalog_put(struct catalog *c, const char *account, size_t account_len,
		       const char *file, size_t file_len, bool is_logged)
{
	struct cat_row row;
	long i;

	row.key_len = cat_key(row.key, account, account_len, file, file_len);
	row.is_logged = is_logged;
	i = catalog_find(c, row.key, row.key_len);
	if (i >= 0) {
		c->rows[i] = row;
		return 0;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct cat_row *rows = realloc(c->rows, cap * sizeof(*rows));

		if (!rows)
			return US_ENOMEM;
		c->rows = rows;
		c->cap = cap;
	}
	i = -i - 1;
	memmove(&c->rows[i + 1], &c->rows[i], (c->n - (size_t)i) * sizeof(*c->rows));
	c->rows[i] = row;
	c->n++;
	return 0;
}

static void catalog_del(struct catalog *c, const char *account, size_t account_len,
			const char *file, size_t file_len)
{
	char key[sizeof(((struct cat_row *)0)->key)];
	size_t len = cat_key(key, account, account_len, file, file_len);
	long i = catalog_find(c, key, len);

	if (i < 0)
		return;
	memmove(&c->rows[i], &c->rows[i + 1], (c->n - (size_t)i - 1) * sizeof(*c->rows));
	c->n--;
}

int store__catalog_copy(struct catalog *dst, const struct catalog *src)
{
	if (dst->cap < src->n) {
		struct cat_row *rows = realloc(dst->rows, src->cap * sizeof(*rows));

		if (!rows)
			return US_ENOMEM;
		dst->rows = rows;
		dst->cap = src->cap;
	}
	if (src->n)
		memcpy(dst->rows, src->rows, src->n * sizeof(*src->rows));
	dst->n = src->n;
	return 0;
}

/* Reads every 'A' and 'F' row visible through ro into cat (emptied first). */
static int catalog_read(struct store *s, rocksdb_readoptions_t *ro, struct catalog *cat,
			struct us_err *err)
{
	static const char tags[2] = {'A', 'F'};
	int rc = 0;

	cat->n = 0;
	for (int t = 0; t < 2 && rc == 0; t++) {
		rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, ro);
		char *errptr = NULL;

		for (rocksdb_iter_seek(it, &tags[t], 1); rocksdb_iter_valid(it);
		     rocksdb_iter_next(it)) {
			size_t klen, vlen;
			const char *k = rocksdb_iter_key(it, &klen);
			const char *v = rocksdb_iter_value(it, &vlen);
			const char *sep;
			size_t alen;

			if (klen < 2 || k[0] != tags[t])
				break;
			sep = t == 1 ? memchr(k + 1, 0, klen - 1) : NULL;
			alen = sep ? (size_t)(sep - (k + 1)) : klen - 1;
			if (vlen < 1 || alen > US_ACCOUNT_MAX_LEN || (t == 1 && !sep) ||
			    (sep && klen - 2 - alen > US_FILE_MAX_LEN)) {
				rc = err_set(err, US_ECORRUPT, "bad catalog key of %zu bytes", klen);
				break;
			}
			rc = catalog_put(cat, k + 1, alen, sep ? sep + 1 : "",
					 sep ? klen - 2 - alen : 0, (v[0] & FLAG_LOGGED) != 0);
			if (rc) {
				err_set(err, rc, "cannot load catalog: out of memory");
				break;
			}
		}
		rocksdb_iter_get_error(it, &errptr);
		if (!rc)
			rc = store__take_rocks_err(&errptr, err, "cannot load catalog");
		rocksdb_free(errptr);
		rocksdb_iter_destroy(it);
	}
	return rc;
}

/* Rebuilds the writer's catalog from the 'A' and 'F' keys. */
int store__catalog_load(struct store *s, struct us_err *err)
{
	return catalog_read(s, s->read_opts, &s->cat, err);
}

/* Does account/file ship? Its own flag and its account's (no account row:
 * logged) are both on. */
static bool catalog_is_shipped(struct catalog *c, const char *account, size_t account_len,
			       const char *file, size_t file_len)
{
	struct cat_row *f = catalog_get(c, account, account_len, file, file_len);
	struct cat_row *a = catalog_get(c, account, account_len, "", 0);

	return f && f->is_logged && (!a || a->is_logged);
}

/* ---- open / close ---- */


void store__encode_pos(uint8_t out[POS_BYTES], const struct store_position *p)
{
	buf_put_u64le(out, p->generation);
	buf_put_u64le(out + 8, p->seq);
	buf_put_u64le(out + 16, p->time_ms);
	buf_put_u64le(out + 24, p->chain);
}

/* 0, or US_ECORRUPT for a value that is not a position record. */
int store__decode_pos(const char *v, size_t len, struct store_position *p)
{
	if (!v || len != POS_BYTES)
		return US_ECORRUPT;
	p->generation = buf_get_u64le((const uint8_t *)v);
	p->seq = buf_get_u64le((const uint8_t *)v + 8);
	p->time_ms = buf_get_u64le((const uint8_t *)v + 16);
	p->chain = buf_get_u64le((const uint8_t *)v + 24);
	return 0;
}

/* Reads the format and position, initializing an empty database. */
static int load_meta(struct store *s, const char *dir, struct us_err *err)
{
	char *errptr = NULL;
	size_t len;
	char *v;
	int rc;

	v = rocksdb_get(s->db, s->read_opts, KEY_FORMAT, strlen(KEY_FORMAT), &len, &errptr);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read store format")))
		return rc;
	if (!v) {
		rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->read_opts);
		bool is_empty;
		rocksdb_writebatch_t *b;
		uint8_t fmt[5], pos[POS_BYTES], first[8];
		uint8_t genkey[KEY_GEN_BYTES];

		rocksdb_iter_seek_to_first(it);
		is_empty = !rocksdb_iter_valid(it);
		rocksdb_iter_destroy(it);
		if (!is_empty)
			return err_set(err, US_ECORRUPT,
				       "%s is a RocksDB database but not an understudy store", dir);
		if (s->is_read_only)
			return err_set(err, US_ENOTFOUND, "%s holds no understudy store", dir);
		memcpy(fmt, STORE_MAGIC, 4);
		fmt[4] = STORE_VERSION;
		s->pos = (struct store_position){.generation = 1, .seq = 0, .time_ms = 0};
		store__encode_pos(pos, &s->pos);
		store__key_gen(genkey, 1);
		buf_put_u64le(first, 1);
		b = rocksdb_writebatch_create();
		rocksdb_writebatch_put(b, KEY_FORMAT, strlen(KEY_FORMAT), (char *)fmt, sizeof(fmt));
		rocksdb_writebatch_put(b, KEY_POS, strlen(KEY_POS), (char *)pos, sizeof(pos));
		rocksdb_writebatch_put(b, (char *)genkey, sizeof(genkey), (char *)first,
				       sizeof(first));
		rocksdb_write(s->db, s->write_opts, b, &errptr);
		rocksdb_writebatch_destroy(b);
		return store__take_write_err(s, &errptr, err, "cannot initialize store");
	}
	if (len != 5 || memcmp(v, STORE_MAGIC, 4) != 0) {
		rocksdb_free(v);
		return err_set(err, US_ECORRUPT, "%s: bad store format record", dir);
	}
	if ((uint8_t)v[4] != STORE_VERSION) {
		rc = err_set(err, US_ECORRUPT, "%s: store format version %u, this build reads %u",
			     dir, (uint8_t)v[4], STORE_VERSION);
		rocksdb_free(v);
		return rc;
	}
	rocksdb_free(v);
	v = rocksdb_get(s->db, s->read_opts, KEY_POS, strlen(KEY_POS), &len, &errptr);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read store position")))
		return rc;
	if (store__decode_pos(v, len, &s->pos)) {
		rocksdb_free(v);
		return err_set(err, US_ECORRUPT, "%s: missing or bad position record", dir);
	}
	rocksdb_free(v);
	/* a role this store took (a promote) holds over the daemon's default */
	v = rocksdb_get(s->db, s->read_opts, KEY_ROLE, strlen(KEY_ROLE), &len, &errptr);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read store role")))
		return rc;
	if (v && (len != 1 || (uint8_t)v[0] > ROLE_REJOINING)) {
		rocksdb_free(v);
		return err_set(err, US_ECORRUPT, "%s: bad role record", dir);
	}
	if (v)
		atomic_store(&s->role, (int)(uint8_t)v[0]);
	rocksdb_free(v);
	v = rocksdb_get(s->db, s->read_opts, KEY_PRIMARY, strlen(KEY_PRIMARY), &len, &errptr);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read store primary")))
		return rc;
	if (v && (len < 16 || len - 16 >= sizeof(s->primary.addr))) {
		rocksdb_free(v);
		return err_set(err, US_ECORRUPT, "%s: bad primary record", dir);
	}
	if (v) {
		s->primary.generation = buf_get_u64le((const uint8_t *)v);
		s->primary.first_seq = buf_get_u64le((const uint8_t *)v + 8);
		memcpy(s->primary.addr, v + 16, len - 16);
		s->primary.addr[len - 16] = '\0';
	}
	rocksdb_free(v);
	return 0;
}

/* Reads the node id, making one for a store that has none yet. */
static int load_node_id(struct store *s, struct us_err *err)
{
	char *errptr = NULL;
	uint8_t raw[16];
	size_t len;
	char *v;
	FILE *f;
	int rc;

	v = rocksdb_get(s->db, s->read_opts, KEY_NODE, strlen(KEY_NODE), &len, &errptr);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read node id")))
		return rc;
	if (v && len == 32) {
		memcpy(s->node_id, v, 32);
		s->node_id[32] = '\0';
		rocksdb_free(v);
		return 0;
	}
	rocksdb_free(v);
	if (s->is_read_only) {
		snprintf(s->node_id, sizeof(s->node_id), "unknown");
		return 0;
	}
	f = fopen("/dev/urandom", "rb");
	if (!f || fread(raw, 1, sizeof(raw), f) != sizeof(raw)) {
		if (f)
			fclose(f);
		return err_set(err, US_EIO, "cannot make a node id: /dev/urandom unreadable");
	}
	fclose(f);
	for (int i = 0; i < 16; i++)
		snprintf(s->node_id + 2 * i, 3, "%02x", raw[i]);
	rocksdb_put(s->db, s->write_opts, KEY_NODE, strlen(KEY_NODE), s->node_id, 32, &errptr);
	return store__take_write_err(s, &errptr, err, "cannot write node id");
}

const char *store_node_id(const struct store *s)
{
	return s->node_id;
}

static int load_site_id(struct store *s, struct us_err *err)
{
	char *errptr = NULL;
	size_t len;
	char *v;
	int rc;

	v = rocksdb_get(s->db, s->read_opts, KEY_SITE, strlen(KEY_SITE), &len, &errptr);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read the site id")))
		return rc;
	s->site_id[0] = '\0';
	if (v && (len == 0 || len > US_NODE_ID_MAX_LEN)) {
		rocksdb_free(v);
		/* never read as unbound: any site could then bind the copy */
		return err_set(err, US_ECORRUPT, "%s: bad site id record of %zu bytes", s->dir, len);
	}
	if (v) {
		memcpy(s->site_id, v, len);
		s->site_id[len] = '\0';
	}
	rocksdb_free(v);
	return 0;
}

bool store_is_failed(struct store *s)
{
	return atomic_load(&s->is_failed);
}

const char *store_site_id(const struct store *s)
{
	return s->site_id;
}

enum ns_role store_role(const struct store *s)
{
	return (enum ns_role)atomic_load(&s->role);
}

/* Commits need the primary's role; applies and loads a standby's. */
static int check_role(struct store *s, bool is_commit, struct us_err *err)
{
	enum ns_role r = store_role(s);

	if (is_commit && r == ROLE_FENCED) {
		struct store_primary_info p;

		store_primary(s, &p);
		return err_set(err, US_EPRECOND,
			       "this site was superseded: the namespace's primary is %s (generation "
			       "%llu); this node is fenced and takes no commits: commit at %s, or "
			       "rejoin this site to follow it",
			       p.addr, (unsigned long long)p.generation, p.addr);
	}

	if (is_commit && !role_takes_commits(r))
		return err_set(err, US_EPRECOND,
			       "this node is %s for the namespace, not its primary: it takes no "
			       "commits",
			       role_name(r));
	if (is_commit) {
		int rc = 0;

		pthread_mutex_lock(&s->pos_lock);
		if (s->hold[0])
			rc = err_set(err, US_EPRECOND, "%s", s->hold);
		pthread_mutex_unlock(&s->pos_lock);
		if (rc)
			return rc;
	}
	if (!is_commit && !role_applies_stream(r))
		return err_set(err, US_EPRECOND,
			       "this node is %s for the namespace: it applies no primary's stream",
			       role_name(r));
	return 0;
}

int store_bind_site(struct store *s, const char *node_id, struct us_err *err)
{
	size_t len = strlen(node_id);
	char *errptr = NULL;
	int rc;

	if (len == 0 || len > US_NODE_ID_MAX_LEN)
		return err_set(err, US_EINVAL, "bad site node id of %zu bytes", len);
	if ((rc = store__check_writable(s, err)) || (rc = store__check_disk(s, true, err)))
		return rc;
	rocksdb_put(s->db, s->write_opts, KEY_SITE, strlen(KEY_SITE), node_id, len, &errptr);
	if ((rc = store__take_write_err(s, &errptr, err, "cannot bind the store to its site")))
		return rc;
	memcpy(s->site_id, node_id, len + 1);
	return 0;
}

/* struct store_cache is a rocksdb_cache_t under another name. */
struct store_cache *store_cache_new(size_t bytes)
{
	return (struct store_cache *)rocksdb_cache_create_lru(bytes ? bytes : 64u << 20);
}

void store_cache_free(struct store_cache *c)
{
	if (c)
		rocksdb_cache_destroy((rocksdb_cache_t *)c);
}

int store_open(struct store **out, const char *dir, const struct store_opts *o,
	       struct us_err *err)
{
	struct store_opts dflt = {0};
	struct store *s;
	char *errptr = NULL;
	int rc;

	if (!o)
		o = &dflt;
	s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(err, US_ENOMEM, "cannot open store %s: out of memory", dir);
	s->is_read_only = o->is_read_only;
	atomic_init(&s->role, (int)o->role);
	pthread_mutex_init(&s->role_lock, NULL);
	s->max_body = o->max_body ? o->max_body : US_BODY_MAX_BYTES;
	pthread_mutex_init(&s->pos_lock, NULL);
	buf_init(&s->key);
	store__journal_init(&s->jb, o->journal_block_bytes ? o->journal_block_bytes
							  : US_JOURNAL_BLOCK_BYTES);
	s->reserve = o->reserve;
	s->dir = strdup(dir);
	if (!s->dir) {
		rc = err_set(err, US_ENOMEM, "cannot open store %s: out of memory", dir);
		goto out_free;
	}
	if (!s->is_read_only && (rc = disk_mkdir_p(dir, err)))
		goto out_free;
	if ((rc = disk_dir_remember(dir, &s->dir_id, err)))
		goto out_free;

	s->opts = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(s->opts, !s->is_read_only);
	rocksdb_options_increase_parallelism(s->opts, 2);
	rocksdb_options_set_max_background_jobs(s->opts, 2);
	rocksdb_options_set_write_buffer_size(s->opts, 64u << 20);
	rocksdb_options_set_level0_slowdown_writes_trigger(s->opts, US_STORE_L0_SLOWDOWN);
	rocksdb_options_set_level0_stop_writes_trigger(s->opts, US_STORE_L0_STOP);
	/* RocksDB's flushes and compactions keep the normal CPU priority: at
	 * nice 19 (tried, session I of docs/performance.md) they cut the p99
	 * replication lag at half load, but starved on a saturated machine they
	 * let memtables wait, RocksDB stopped writes, and an archiver's workers
	 * blocked in them for seconds. */
	rocksdb_options_set_compression(s->opts, rocksdb_lz4_compression);
	/* Nothing in RocksDB's info LOG (it stays an empty file): once a write
	 * to it fails (a full disk), the next line trips an assertion in
	 * Debian's RocksDB 7.8 and aborts the process, at run time and again at
	 * every open until space returns (seen: WritableFileWriter::
	 * AssertFalseAndGetStatusForPrevError from EnvLogger::Logv). A level
	 * above HEADER (5) turns every line off, headers included; the daemons
	 * log what matters themselves. */
	rocksdb_options_set_info_log_level(s->opts, US_ROCKSDB_LOG_LEVEL_NONE);
	rocksdb_options_set_keep_log_file_num(s->opts, 1);
	if (!o->cache)
		s->cache = rocksdb_cache_create_lru(o->block_cache_bytes ? o->block_cache_bytes
								  : 64u << 20);
	s->table_opts = rocksdb_block_based_options_create();
	rocksdb_block_based_options_set_block_cache(
		s->table_opts, o->cache ? (rocksdb_cache_t *)o->cache : s->cache);
	rocksdb_block_based_options_set_filter_policy(s->table_opts,
						      rocksdb_filterpolicy_create_bloom(10));
	rocksdb_options_set_block_based_table_factory(s->opts, s->table_opts);
	s->read_opts = rocksdb_readoptions_create();
	s->write_opts = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(s->write_opts, 1);
	s->write_opts_nosync = rocksdb_writeoptions_create();
	s->write_opts_nowal = rocksdb_writeoptions_create();
	rocksdb_writeoptions_disable_WAL(s->write_opts_nowal, 1);

	if (s->is_read_only)
		s->db = rocksdb_open_for_read_only(s->opts, dir, 0, &errptr);
	else
		s->db = rocksdb_open(s->opts, dir, &errptr);
	if (errptr) {
		rc = store__take_rocks_err(&errptr, err, "cannot open store");
		if (rc == US_EUNAVAIL)
			err_set(err, rc, "cannot open store %s: in use by another process", dir);
		else
			err_wrap(err, "%s", dir);
		goto out_free;
	}
	if ((rc = load_meta(s, dir, err)))
		goto out_free;
	if ((rc = load_node_id(s, err)) || (rc = load_site_id(s, err)))
		goto out_free;
	if ((rc = store__catalog_load(s, err)))
		goto out_free;
	*out = s;
	return 0;

out_free:
	store_close(s);
	return rc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	free(s->dir);
	if (s->db)
		rocksdb_close(s->db);
	if (s->write_opts)
		rocksdb_writeoptions_destroy(s->write_opts);
	if (s->write_opts_nosync)
		rocksdb_writeoptions_destroy(s->write_opts_nosync);
	if (s->write_opts_nowal)
		rocksdb_writeoptions_destroy(s->write_opts_nowal);
	if (s->read_opts)
		rocksdb_readoptions_destroy(s->read_opts);
	if (s->opts)
		rocksdb_options_destroy(s->opts);
	if (s->table_opts)
		rocksdb_block_based_options_destroy(s->table_opts);
	if (s->cache)
		rocksdb_cache_destroy(s->cache);
	catalog_release(&s->cat);
	catalog_release(&s->cat_saved);
	buf_release(&s->key);
	store__journal_release(&s->jb);
	pthread_mutex_destroy(&s->pos_lock);
	pthread_mutex_destroy(&s->role_lock);
	free(s);
}

void store_get_position(struct store *s, struct store_position *pos)
{
	pthread_mutex_lock(&s->pos_lock);
	*pos = s->pos;
	pthread_mutex_unlock(&s->pos_lock);
}

/* ---- commit ---- */

static void fmt_file(char *out, size_t size, const struct entry *e)
{
	snprintf(out, size, "%.*s/%.*s", (int)e->account_len, e->account, (int)e->file_len,
		 e->file_len ? e->file : "");
}

/* Checks e's names and sizes (not the catalog). */
static int check_op(const struct store *s, const struct entry *e, struct us_err *err)
{
	int rc;

	if ((rc = names_check_account(e->account, e->account_len, err)))
		return rc;
	if (e->op == ENTRY_SET_LOGGING && e->file_len == 0)
		return 0;
	if ((rc = names_check_file(e->file, e->file_len, err)))
		return rc;
	if (e->section != SECTION_DATA && e->section != SECTION_DICT)
		return err_set(err, US_EINVAL, "bad section %u", e->section);
	if (e->op == ENTRY_WRITE || e->op == ENTRY_DELETE) {
		if ((rc = names_check_id(e->id, e->id_len, err)))
			return rc;
	}
	if (e->op == ENTRY_WRITE && (rc = names_check_body(e->body_len, s->max_body, err)))
		return rc;
	return 0;
}

static bool account_is_logged(struct store *s, const struct entry *e)
{
	struct cat_row *a = catalog_get(&s->cat, e->account, e->account_len, "", 0);

	return !a || a->is_logged; /* an account without a record is logged (default on) */
}

/* Writes an 'A' or 'F' record: u8 flags, then (archiver only, when the
 * account or file stopped shipping) u64le stale_since_seq. */
static int put_flags(rocksdb_writebatch_t *b, struct buf *k, char tag, const struct entry *e,
		     size_t file_len, bool is_logged, uint64_t stale_since_seq)
{
	uint8_t v[9];

	v[0] = is_logged ? FLAG_LOGGED : 0;
	buf_put_u64le(v + 1, stale_since_seq);
	if (store__key_file(k, tag, e->account, e->account_len, e->file, file_len))
		return US_ENOMEM;
	if (tag == 'A')
		k->len--; /* 'A' account, no separator */
	rocksdb_writebatch_put(b, (char *)k->p, k->len, (char *)v, stale_since_seq ? 9 : 1);
	return 0;
}

/* Deletes every item of e's file, both sections, in b. */
static int delete_file_items(struct store *s, rocksdb_writebatch_t *b, const struct entry *e)
{
	struct buf *k = &s->key;
	struct buf upper;

	buf_init(&upper);
	if (store__key_file(k, 'D', e->account, e->account_len, e->file, e->file_len) ||
	    buf_append_u8(k, 0) || store__key_successor(&upper, k->p, k->len)) {
		buf_release(&upper);
		return US_ENOMEM;
	}
	rocksdb_writebatch_delete_range(b, (char *)k->p, k->len, (char *)upper.p, upper.len);
	buf_release(&upper);
	return 0;
}

/* Adds op e's data changes to b and updates the catalog; *is_journaled says
 * whether e goes to the journal.
 *
 * A replica (the archiver) refuses what a site refuses: a write, delete or
 * clear of a file it does not hold (US_ENOTFOUND), a file created twice
 * (US_EEXIST), so that a stream can never create what its site did not. The
 * exceptions are the site's own ways of keeping a copy right (entry.h): a
 * CREATE_FILE reset (the re-ship when logging turns on) makes the file exist,
 * empty and stale since seq, whether it did or not; DELETE_FILE and
 * SET_LOGGING of a file the replica does not hold change nothing (a site ships
 * both for any file); SET_LOGGING off marks the file stale since seq. */
int store__apply_op(struct store *s, rocksdb_writebatch_t *b, const struct entry *e,
		    enum ns_role role, uint64_t seq, bool *is_journaled, struct us_err *err)
{
	/* a standby applies what its primary journaled; a primary commits */
	const bool is_replica = role_applies_stream(role);
	char name[US_ACCOUNT_MAX_LEN + US_FILE_MAX_LEN + 2];
	struct buf *k = &s->key;
	struct cat_row *f = NULL;
	bool is_account_op = e->op == ENTRY_SET_LOGGING && e->file_len == 0;
	int rc;

	if (e->op < ENTRY_WRITE || e->op > ENTRY_SET_LOGGING)
		return err_set(err, US_EINVAL, "operation %s is not allowed in a commit",
			       entry_op_name(e->op));
	if ((rc = check_op(s, e, err)))
		return rc;
	if (e->op == ENTRY_CREATE_FILE && e->is_reset && !is_replica)
		return err_set(err, US_EINVAL, "a file reset is not allowed in a commit");
	if (!is_account_op)
		f = catalog_get(&s->cat, e->account, e->account_len, e->file, e->file_len);
	*is_journaled = true;
	if (!f && !is_account_op && e->op != ENTRY_CREATE_FILE) {
		if (is_replica && (e->op == ENTRY_DELETE_FILE || e->op == ENTRY_SET_LOGGING))
			return 0; /* nothing held here to delete or mark */
		fmt_file(name, sizeof(name), e); /* only on the way to an error: this runs per op */
		return err_set(err, US_ENOTFOUND, "file %s does not exist", name);
	}
	/* A site journals what ships, and always a file's deletion and the
	 * logging markers (a replica may hold a stale copy of either). */
	if (!is_replica && e->op != ENTRY_DELETE_FILE && e->op != ENTRY_SET_LOGGING)
		*is_journaled = f && catalog_is_shipped(&s->cat, e->account, e->account_len,
							e->file, e->file_len);

	switch (e->op) {
	case ENTRY_WRITE:
		if (store__key_item(k, e))
			return US_ENOMEM;
		rocksdb_writebatch_put(b, (char *)k->p, k->len, (const char *)e->body, e->body_len);
		return 0;
	case ENTRY_DELETE:
		if (store__key_item(k, e))
			return US_ENOMEM;
		rocksdb_writebatch_delete(b, (char *)k->p, k->len);
		return 0;
	case ENTRY_CREATE_FILE:
		if (f && !e->is_reset) {
			fmt_file(name, sizeof(name), e);
			return err_set(err, US_EEXIST, "file %s already exists", name);
		}
		if (f) /* reset of a file held here: empty it, keep its flags */
			return delete_file_items(s, b, e);
		if (!catalog_get(&s->cat, e->account, e->account_len, "", 0)) {
			if (catalog_put(&s->cat, e->account, e->account_len, "", 0, true) ||
			    put_flags(b, k, 'A', e, 0, true, 0))
				return US_ENOMEM;
		}
		/* a reset creates the file stale until the re-ship's marker */
		if (catalog_put(&s->cat, e->account, e->account_len, e->file, e->file_len,
				e->flag) ||
		    put_flags(b, k, 'F', e, e->file_len, e->flag, e->is_reset ? seq : 0))
			return US_ENOMEM;
		if (!is_replica)
			*is_journaled = e->flag && account_is_logged(s, e);
		return 0;
	case ENTRY_CLEAR_FILE:
	case ENTRY_DELETE_FILE: {
		struct buf upper;
		uint8_t sec = e->section;

		buf_init(&upper);
		if (e->op == ENTRY_CLEAR_FILE)
			rc = store__key_section(k, e->account, e->account_len, e->file, e->file_len, sec);
		else
			rc = store__key_file(k, 'D', e->account, e->account_len, e->file, e->file_len) ||
			     buf_append_u8(k, 0);
		if (rc || store__key_successor(&upper, k->p, k->len)) {
			buf_release(&upper);
			return US_ENOMEM;
		}
		rocksdb_writebatch_delete_range(b, (char *)k->p, k->len, (char *)upper.p,
						upper.len);
		buf_release(&upper);
		if (e->op == ENTRY_DELETE_FILE) {
			if (store__key_file(k, 'F', e->account, e->account_len, e->file, e->file_len))
				return US_ENOMEM;
			rocksdb_writebatch_delete(b, (char *)k->p, k->len);
			catalog_del(&s->cat, e->account, e->account_len, e->file, e->file_len);
		}
		return 0;
	}
	case ENTRY_SET_LOGGING:
		/* The marker always ships: the archiver learns that a file stopped
		 * (or restarted) shipping at this seq. */
		*is_journaled = true;
		if (catalog_put(&s->cat, e->account, e->account_len, e->file, e->file_len,
				e->flag) ||
		    put_flags(b, k, e->file_len ? 'F' : 'A', e, e->file_len, e->flag,
			      is_replica && !e->flag ? seq : 0))
			return US_ENOMEM;
		return 0;
	default:
		return err_set(err, US_EINVAL, "bad operation %u", e->op);
	}
}

/* Turning logging on re-ships what was not shipped: for each file that starts
 * shipping, a CREATE_FILE reset (entry.h) and a WRITE per item, journaled just
 * before the SET_LOGGING marker itself (so the archiver's copy stays marked
 * stale until the marker, which comes last, clears it). The re-shipped
 * entries carry END every RESHIP_COMMIT_ENTRIES, so that a large file does
 * not make one frame too large; the archiver may show the stale file partly
 * re-filled meanwhile. The items are read as committed before this group. */
#define RESHIP_COMMIT_ENTRIES 1000

struct reship {
	bool is_needed;
	bool is_account;    /* every logged file of the account */
};

static void reship_before(struct store *s, const struct entry *e, struct reship *rs)
{
	rs->is_needed = false;
	rs->is_account = false;
	if (e->op != ENTRY_SET_LOGGING || !e->flag)
		return;
	if (e->file_len == 0) {
		rs->is_account = true;
		rs->is_needed = !account_is_logged(s, e);
		return;
	}
	/* the file exists, does not ship now, and will once its own flag is on */
	rs->is_needed = catalog_get(&s->cat, e->account, e->account_len, e->file, e->file_len) &&
			!catalog_is_shipped(&s->cat, e->account, e->account_len, e->file,
					    e->file_len) &&
			account_is_logged(s, e);
}

static int reship_file(struct store *s, rocksdb_writebatch_t *b, const struct entry *marker,
		       const char *file, size_t file_len, uint64_t *next, struct us_err *err)
{
	struct entry e = {.time_ms = marker->time_ms, .account = marker->account,
			  .account_len = marker->account_len, .file = file, .file_len = file_len};
	rocksdb_readoptions_t *ro;
	rocksdb_iterator_t *it;
	struct buf prefix, upper;
	char *errptr = NULL;
	uint64_t n = 0;
	int rc = 0;

	e.op = ENTRY_CREATE_FILE;
	e.is_reset = true;
	if ((rc = store__journal_put(s, b, &e, ++*next, err)))
		return rc;
	e.is_reset = false;
	buf_init(&prefix);
	buf_init(&upper);
	if (store__key_file(&prefix, 'D', e.account, e.account_len, file, file_len) ||
	    buf_append_u8(&prefix, 0) || store__key_successor(&upper, prefix.p, prefix.len)) {
		buf_release(&prefix);
		buf_release(&upper);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	ro = rocksdb_readoptions_create();
	rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)upper.p, upper.len);
	it = rocksdb_create_iterator(s->db, ro);
	e.op = ENTRY_WRITE;
	for (rocksdb_iter_seek(it, (char *)prefix.p, prefix.len); rocksdb_iter_valid(it) && !rc;
	     rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);

		if (klen < prefix.len + 2)
			continue;
		e.section = (uint8_t)k[prefix.len];
		e.id = (const uint8_t *)k + prefix.len + 1;
		e.id_len = klen - prefix.len - 1;
		e.body = (const uint8_t *)v;
		e.body_len = vlen;
		e.is_commit_end = ++n % RESHIP_COMMIT_ENTRIES == 0;
		rc = store__journal_put(s, b, &e, ++*next, err);
	}
	if (!rc) {
		rocksdb_iter_get_error(it, &errptr);
		rc = store__take_rocks_err(&errptr, err, "cannot read items to re-ship");
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(ro);
	buf_release(&prefix);
	buf_release(&upper);
	return rc;
}

static int reship_after(struct store *s, rocksdb_writebatch_t *b, const struct entry *e,
			const struct reship *rs, uint64_t *next, struct us_err *err)
{
	char key[US_ACCOUNT_MAX_LEN + 1];
	long i;
	int rc;

	if (!rs->is_account)
		return reship_file(s, b, e, e->file, e->file_len, next, err);
	/* Every file of the account whose own flag is on. Rows sort by
	 * "account\0file", right after the account's own row "account\0". */
	memcpy(key, e->account, e->account_len);
	key[e->account_len] = '\0';
	i = catalog_find(&s->cat, key, e->account_len + 1);
	i = i >= 0 ? i + 1 : -i - 1;
	for (; (size_t)i < s->cat.n; i++) {
		struct cat_row *r = &s->cat.rows[i];

		if (r->key_len <= e->account_len + 1 ||
		    memcmp(r->key, key, e->account_len + 1) != 0)
			break;
		if (!r->is_logged)
			continue;
		if ((rc = reship_file(s, b, e, r->key + e->account_len + 1,
				      r->key_len - e->account_len - 1, next, err)))
			return rc;
	}
	return 0;
}

static bool op_changes_catalog(uint8_t op)
{
	return op == ENTRY_CREATE_FILE || op == ENTRY_DELETE_FILE || op == ENTRY_SET_LOGGING;
}

/* Does commit c turn logging on? Its re-ship reads the committed state, so
 * the commits before it in a group must be written first. */
static bool turns_logging_on(const struct store_commit *c)
{
	for (size_t i = 0; i < c->n_ops; i++)
		if (c->ops[i].op == ENTRY_SET_LOGGING && c->ops[i].flag)
			return true;
	return false;
}

/* A re-ship (logging turned on) reads the file as committed before this
 * commit: an op on that file earlier in the same commit would be neither
 * journaled nor re-shipped, and the archiver's copy would part from the
 * site's for good. Such a commit is refused: 0 or US_EINVAL naming both ops. */
static int check_reship_order(const struct store_commit *c, struct us_err *err)
{
	for (size_t i = 0; i < c->n_ops; i++) {
		const struct entry *on = &c->ops[i];

		if (on->op != ENTRY_SET_LOGGING || !on->flag)
			continue;
		for (size_t j = 0; j < i; j++) {
			const struct entry *e = &c->ops[j];

			/* creating the file first is fine: the re-ship's reset makes it */
			if (e->op == ENTRY_SET_LOGGING || e->op == ENTRY_CREATE_FILE ||
			    e->account_len != on->account_len ||
			    memcmp(e->account, on->account, on->account_len) != 0)
				continue;
			if (on->file_len &&
			    (e->file_len != on->file_len || memcmp(e->file, on->file, on->file_len)))
				continue;
			return err_set(err, US_EINVAL,
				       "operation %zu (%s) on %.*s/%.*s comes before operation %zu "
				       "turns its logging on: turn logging on first, or in a commit "
				       "of its own",
				       j + 1, entry_op_name(e->op), (int)e->account_len, e->account,
				       (int)e->file_len, e->file, i + 1);
		}
	}
	return 0;
}

/* Adds one commit to b: its ops and its journal entries from *seq + 1.
 * On refusal b and the catalog are as before and *seq is unchanged. */
static int add_commit(struct store *s, rocksdb_writebatch_t *b, struct store_commit *c,
		      uint64_t time_ms, uint64_t *seq)
{
	uint64_t next = *seq;
	bool is_catalog_saved = false;
	long last_journaled = -1;
	char *errptr = NULL;
	int rc = 0;

	err_clear(&c->err);
	c->first_seq = c->last_seq = 0;
	if (c->n_ops == 0)
		return c->rc = err_set(&c->err, US_EINVAL, "empty commit");
	if (c->n_ops > US_COMMIT_MAX_OPS)
		return c->rc = err_set(&c->err, US_ETOOBIG, "commit of %zu operations, over the limit of %u",
				       c->n_ops, US_COMMIT_MAX_OPS);
	if (turns_logging_on(c) && (rc = check_reship_order(c, &c->err)))
		return c->rc = rc;
	for (size_t i = 0; i < c->n_ops; i++) {
		if (op_changes_catalog(c->ops[i].op)) {
			if (store__catalog_copy(&s->cat_saved, &s->cat))
				return c->rc = err_set(&c->err, US_ENOMEM, "out of memory");
			is_catalog_saved = true;
			break;
		}
	}
	rocksdb_writebatch_set_save_point(b);
	store__journal_mark(s);

	/* One pass: each op applies against the catalog as the ops before it left
	 * it, and goes to the journal right away if its file ships. */
	for (size_t i = 0; i < c->n_ops; i++) {
		struct entry *e = &c->ops[i];
		bool is_journaled = false;
		struct reship rs;

		e->time_ms = time_ms;
		e->is_commit_end = false;
		reship_before(s, e, &rs);
		rc = store__apply_op(s, b, e, ROLE_PRIMARY, 0, &is_journaled, &c->err);
		if (rc == 0 && rs.is_needed)
			rc = reship_after(s, b, e, &rs, &next, &c->err);
		if (rc == 0 && is_journaled) {
			rc = store__journal_put(s, b, e, ++next, &c->err);
			last_journaled = (long)i;
		}
		if (rc) {
			if (rc == US_ENOMEM && !c->err.msg[0])
				err_set(&c->err, rc, "out of memory");
			err_wrap(&c->err, "operation %zu (%s)", i + 1, entry_op_name(e->op));
			goto out_rollback;
		}
	}
	/* The commit's last journal entry carries END (it is in the open block:
	 * a block is put only before an entry is added). */
	if (last_journaled >= 0) {
		c->ops[last_journaled].is_commit_end = true;
		store__journal_mark_end(s);
	}
	rocksdb_writebatch_pop_save_point(b, &errptr);
	if (errptr) {
		rocksdb_free(errptr); /* cannot happen: set above; a stale save point is harmless */
		errptr = NULL;
	}
	if (next > *seq) {
		c->first_seq = *seq + 1;
		c->last_seq = next;
	}
	*seq = next;
	return c->rc = 0;

out_rollback:
	rocksdb_writebatch_rollback_to_save_point(b, &errptr);
	store__journal_rollback(s);
	if (errptr) {
		/* Cannot happen: the save point was set above. Say so loudly. */
		rocksdb_free(errptr);
		rc = US_EIO;
		err_set(&c->err, rc, "internal error: write batch rollback failed");
	}
	if (is_catalog_saved)
		store__catalog_copy(&s->cat, &s->cat_saved); /* fits: same capacity or larger */
	return c->rc = rc;
}

/* Writes (synced) the commits [from, to) of a group as one batch. */
static int write_part(struct store *s, struct store_commit **commits, size_t from, size_t to,
		      uint64_t time_ms, struct us_err *err)
{
	struct store_position pos;
	rocksdb_writebatch_t *b;
	uint64_t seq;
	uint8_t posv[POS_BYTES];
	char *errptr = NULL;
	int rc;

	if ((rc = store__check_writable(s, err))) { /* a first part of the group failed it */
		for (size_t i = from; i < to; i++) {
			commits[i]->rc = rc;
			commits[i]->err = *err;
		}
		return rc;
	}
	store_get_position(s, &pos);
	seq = pos.seq;
	b = rocksdb_writebatch_create();
	store__journal_start(s, pos.chain);
	for (size_t i = from; i < to; i++)
		add_commit(s, b, commits[i], time_ms, &seq);
	if (rocksdb_writebatch_count(b) == 0) {
		rocksdb_writebatch_destroy(b);
		return 0; /* every commit refused */
	}
	if (seq != pos.seq)
		pos.time_ms = time_ms;
	pos.seq = seq;
	pos.chain = store__journal_chain(s);
	store__encode_pos(posv, &pos);
	rocksdb_writebatch_put(b, KEY_POS, strlen(KEY_POS), (char *)posv, sizeof(posv));
	rc = store__journal_flush(s, b, err);
	if (rc == 0)
		rocksdb_write(s->db, s->write_opts, b, &errptr);
	rocksdb_writebatch_destroy(b);
	store__journal_drop(s);
	/* a synced write into a directory deleted meanwhile succeeds and keeps
	 * nothing: checked after it, and then nothing more is written */
	if (rc == 0 && !errptr && (rc = store__check_disk(s, false, err)))
		atomic_store(&s->is_failed, true);
	if (rc || (rc = store__take_write_err(s, &errptr, err, "cannot write to store"))) {
		struct us_err lerr;

		/* Nothing of this part is acknowledged; the catalog may have run
		 * ahead. */
		if (store__catalog_load(s, &lerr))
			err_wrap(err, "and reloading the catalog failed too (%s)", lerr.msg);
		for (size_t i = from; i < to; i++) {
			commits[i]->rc = rc;
			commits[i]->err = *err;
			commits[i]->first_seq = commits[i]->last_seq = 0;
		}
		return rc;
	}
	pthread_mutex_lock(&s->pos_lock);
	s->pos = pos;
	pthread_mutex_unlock(&s->pos_lock);
	return 0;
}

int store_commit_group(struct store *s, struct store_commit **commits, size_t n, uint64_t time_ms,
		       struct us_err *err)
{
	size_t from = 0;
	int rc = 0;

	store__perf_off();
	if ((rc = check_role(s, true, err)) || (rc = store__check_writable(s, err)) ||
	    (rc = store__check_disk(s, true, err))) {
		for (size_t i = 0; i < n; i++) {
			commits[i]->rc = rc;
			commits[i]->err = *err;
			commits[i]->first_seq = commits[i]->last_seq = 0;
		}
		return rc;
	}
	/* Usually one batch; a commit that turns logging on starts a new one. */
	for (size_t i = 1; i <= n; i++) {
		if (i < n && !turns_logging_on(commits[i]))
			continue;
		int part_rc = write_part(s, commits, from, i, time_ms, err);

		if (part_rc && !rc)
			rc = part_rc;
		from = i;
	}
	return rc;
}

int store_apply_entries(struct store *s, uint64_t first_seq, struct entry *entries, size_t n,
			const uint8_t *block, size_t block_len, bool is_sync, struct us_err *err)
{
	struct store_position pos;
	rocksdb_writebatch_t *b;
	uint64_t seq, chain;
	uint8_t posv[POS_BYTES];
	char *errptr = NULL;
	int rc = 0;

	store__perf_off();
	if ((rc = check_role(s, false, err)) || (rc = store__check_writable(s, err)))
		return rc;
	if (n == 0)
		return err_set(err, US_EINVAL, "no entries to apply");
	if ((rc = store__check_disk(s, true, err)))
		return rc;
	store_get_position(s, &pos);
	if (first_seq != pos.seq + 1)
		return err_set(err, US_ERANGE, "entries start at seq %llu but the store is at seq %llu: %s",
			       (unsigned long long)first_seq, (unsigned long long)pos.seq,
			       first_seq > pos.seq + 1 ? "gap" : "overlap");
	if (!entries[n - 1].is_commit_end)
		return err_set(err, US_EINVAL, "entries %llu..%llu end inside a commit",
			       (unsigned long long)first_seq,
			       (unsigned long long)(first_seq + n - 1));
	if (block && (block_len < ENTRY_BLOCK_HEADER_BYTES || buf_get_u64le(block + 5) != first_seq ||
		      buf_get_u32le(block + 13) != n))
		return err_set(err, US_EINVAL, "the block given is not the one of entries %llu..%llu",
			       (unsigned long long)first_seq,
			       (unsigned long long)(first_seq + n - 1));
	if (!block && (rc = store__journal_block_begin(s, first_seq, err)))
		return rc;
	/* The catalog may change; keep a copy to restore if an entry is refused. */
	if (store__catalog_copy(&s->cat_saved, &s->cat))
		return err_set(err, US_ENOMEM, "out of memory");
	b = rocksdb_writebatch_create();
	seq = pos.seq;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct entry *e = &entries[i];
		bool is_journaled = true;

		seq++;
		if (e->op < ENTRY_HEARTBEAT) {
			rc = store__apply_op(s, b, e, ROLE_STANDBY, seq, &is_journaled, err);
			if (rc) {
				if (rc == US_ENOMEM)
					err_set(err, rc, "out of memory");
				err_wrap(err, "entry at seq %llu (%s)", (unsigned long long)seq,
					 entry_op_name(e->op));
				break;
			}
		}
		if (!block && (rc = store__journal_block_add(s, e, err)))
			break;
	}
	if (rc == 0 && !block)
		rc = store__journal_block_finish(s, &block, &block_len, err);
	chain = pos.chain;
	if (rc == 0)
		rc = entry_block_chain(block, block_len, UINT64_MAX, &chain, err);
	if (rc == 0)
		rc = store__journal_put_block(s, b, first_seq, block, block_len, pos.chain, err);
	if (rc) {
		rocksdb_writebatch_destroy(b);
		store__catalog_copy(&s->cat, &s->cat_saved);
		return rc;
	}
	pos.seq = seq;
	pos.time_ms = entries[n - 1].time_ms;
	pos.chain = chain;
	store__encode_pos(posv, &pos);
	rocksdb_writebatch_put(b, KEY_POS, strlen(KEY_POS), (char *)posv, sizeof(posv));
	rocksdb_write(s->db, is_sync ? s->write_opts : s->write_opts_nosync, b, &errptr);
	rocksdb_writebatch_destroy(b);
	if ((rc = store__take_write_err(s, &errptr, err, "cannot write to store"))) {
		struct us_err lerr;

		if (store__catalog_load(s, &lerr))
			err_wrap(err, "and reloading the catalog failed too (%s)", lerr.msg);
		return rc;
	}
	pthread_mutex_lock(&s->pos_lock);
	s->pos = pos;
	pthread_mutex_unlock(&s->pos_lock);
	return 0;
}

int store_sync(struct store *s, uint64_t *durable_seq, struct us_err *err)
{
	struct store_position pos;
	char *errptr = NULL;
	int rc;

	if ((rc = store__check_writable(s, err)))
		return rc;
	/* Read first: what was written before the flush is durable after it. */
	store_get_position(s, &pos);
	rocksdb_flush_wal(s->db, 1, &errptr);
	if ((rc = store__take_write_err(s, &errptr, err, "cannot sync store")))
		return rc;
	/* an fsync into a directory deleted meanwhile succeeds, and is not
	 * durable: checked after it, so that nothing of it is acknowledged */
	if ((rc = store__check_disk(s, false, err)))
		return rc;
	*durable_seq = pos.seq;
	return 0;
}

struct store_image_iter {
	struct store *s;
	struct store_image_opts opts;  /* account and file point into the copies below */
	char account[US_ACCOUNT_MAX_LEN + 1];
	char file[US_FILE_MAX_LEN + 1];
	struct store_snap *own;    /* the snapshot taken here when none was given */
	const struct store_snap *at;
	rocksdb_readoptions_t *ro; /* at's snapshot, read once: no block cache fill */
	rocksdb_iterator_t *it;
	uint64_t time_ms;
	bool is_started;
	char phase;                /* 'A': accounts, 'F': files, then 'D': items */
	struct buf prefix;         /* the phase's keys in scope start with it */
	/* the file the current 'D' keys belong to, and whether it is in */
	struct buf file_prefix;
	bool is_file_in;
	struct catalog cat;        /* accounts and files as of the snapshot */
};

/* Seeks the first key of phase tag in scope. */
static int image_seek(struct store_image_iter *it, char tag)
{
	const struct store_image_opts *o = &it->opts;

	it->phase = tag;
	buf_reset(&it->prefix);
	if (buf_append_u8(&it->prefix, (uint8_t)tag))
		return US_ENOMEM;
	if (o->account && (buf_append(&it->prefix, o->account, strlen(o->account)) ||
			   (tag != 'A' && buf_append_u8(&it->prefix, 0))))
		return US_ENOMEM;
	if (o->account && o->file && tag != 'A' &&
	    (buf_append(&it->prefix, o->file, strlen(o->file)) ||
	     (tag == 'D' && buf_append_u8(&it->prefix, 0))))
		return US_ENOMEM;
	rocksdb_iter_seek(it->it, (char *)it->prefix.p, it->prefix.len);
	it->is_started = true;
	return 0;
}

int store_image_iter_new(struct store *s, const struct store_snap *at,
			 const struct store_image_opts *opts, struct store_image_iter **out,
			 struct store_position *pos, struct us_err *err)
{
	struct store_image_iter *it = calloc(1, sizeof(*it));
	int rc;

	if (!it)
		return err_set(err, US_ENOMEM, "out of memory");
	store__perf_off(); /* this thread reads the whole store */
	it->s = s;
	if (opts)
		it->opts = *opts;
	if (it->opts.account) {
		if (strlen(it->opts.account) > US_ACCOUNT_MAX_LEN ||
		    (it->opts.file && strlen(it->opts.file) > US_FILE_MAX_LEN)) {
			free(it);
			return err_set(err, US_EINVAL, "image scope: name too long");
		}
		snprintf(it->account, sizeof(it->account), "%s", it->opts.account);
		it->opts.account = it->account;
		if (it->opts.file) {
			snprintf(it->file, sizeof(it->file), "%s", it->opts.file);
			it->opts.file = it->file;
		}
	} else {
		it->opts.file = NULL;
	}
	buf_init(&it->prefix);
	buf_init(&it->file_prefix);
	if (!at && (rc = store_snap_new(s, &it->own, err)))
		goto out_free;
	it->at = at ? at : it->own;
	/* the position as of the snapshot: written in the same batches as the data */
	*pos = it->at->pos;
	it->time_ms = pos->time_ms;
	if ((rc = catalog_read(s, it->at->ro, &it->cat, err)))
		goto out_free;
	/* a whole-store scan would evict what the live reads keep in the
	 * shared block cache, and costs more for filling it */
	it->ro = rocksdb_readoptions_create();
	rocksdb_readoptions_set_snapshot(it->ro, it->at->snap);
	rocksdb_readoptions_set_fill_cache(it->ro, 0);
	rocksdb_readoptions_set_readahead_size(it->ro, US_IMAGE_READAHEAD_BYTES);
	it->it = rocksdb_create_iterator(s->db, it->ro);
	if (image_seek(it, it->opts.is_shipped_only ? 'F' : 'A')) {
		rc = err_set(err, US_ENOMEM, "out of memory");
		goto out_free;
	}
	*out = it;
	return 0;

out_free:
	store_image_iter_free(it);
	return rc;
}

/* Whether e's file is in the image. */
static bool image_has_file(struct store_image_iter *it, const struct entry *e)
{
	return !it->opts.is_shipped_only ||
	       catalog_is_shipped(&it->cat, e->account, e->account_len, e->file, e->file_len);
}

int store_image_iter_next(struct store_image_iter *it, struct entry *e, struct us_err *err)
{
	char *errptr = NULL;

	for (;;) {
		size_t klen = 0, vlen;
		const char *k = NULL, *v, *sep;
		size_t alen;

		if (!it->is_started)
			rocksdb_iter_next(it->it);
		it->is_started = false;
		if (rocksdb_iter_valid(it->it))
			k = rocksdb_iter_key(it->it, &klen);
		/* the one account's or file's record only, not "ACC2"'s after "ACC" */
		bool is_exact = (it->phase == 'A' && it->opts.account) ||
				(it->phase == 'F' && it->opts.file);

		if (!rocksdb_iter_valid(it->it) || klen < it->prefix.len ||
		    memcmp(k, it->prefix.p, it->prefix.len) != 0 ||
		    (is_exact && klen != it->prefix.len)) {
			rocksdb_iter_get_error(it->it, &errptr);
			if (errptr)
				return store__take_rocks_err(&errptr, err, "cannot read the store's image");
			if (it->phase == 'D')
				return 0;
			/* accounts, then every file, then every item */
			if (image_seek(it, it->phase == 'A' ? 'F' : 'D'))
				return err_set(err, US_ENOMEM, "out of memory");
			continue;
		}
		v = rocksdb_iter_value(it->it, &vlen);
		memset(e, 0, sizeof(*e));
		e->is_commit_end = true;
		e->time_ms = it->time_ms;
		if (k[0] == 'A') {
			/* an account whose own flag is off: its files do not ship */
			if (vlen < 1 || (v[0] & FLAG_LOGGED))
				continue;
			e->op = ENTRY_SET_LOGGING;
			e->account = k + 1;
			e->account_len = klen - 1;
			e->flag = false;
			return 1;
		}
		sep = memchr(k + 1, 0, klen - 1);
		if (!sep || (k[0] == 'F' && vlen < 1))
			return err_set(err, US_ECORRUPT, "bad %s record of %zu bytes",
				       k[0] == 'F' ? "file" : "item", klen);
		alen = (size_t)(sep - k - 1);
		e->account = k + 1;
		e->account_len = alen;
		if (k[0] == 'F') {
			e->file = sep + 1;
			e->file_len = klen - 2 - alen;
			if (!image_has_file(it, e))
				continue;
			e->op = ENTRY_CREATE_FILE;
			e->flag = it->opts.is_shipped_only || (v[0] & FLAG_LOGGED);
			return 1;
		}
		/* 'D' account 0 file 0 section id */
		const char *sep2 = memchr(sep + 1, 0, (size_t)(k + klen - sep - 1));
		if (!sep2 || (size_t)(k + klen - sep2) < 3)
			return err_set(err, US_ECORRUPT, "bad item key of %zu bytes", klen);
		e->file = sep + 1;
		e->file_len = (size_t)(sep2 - sep - 1);
		if (it->file_prefix.len != (size_t)(sep2 - k) ||
		    memcmp(it->file_prefix.p, k, it->file_prefix.len) != 0) {
			buf_reset(&it->file_prefix);
			if (buf_append(&it->file_prefix, k, (size_t)(sep2 - k)))
				return err_set(err, US_ENOMEM, "out of memory");
			it->is_file_in = image_has_file(it, e);
		}
		if (!it->is_file_in)
			continue;
		e->op = ENTRY_WRITE;
		e->section = (uint8_t)sep2[1];
		e->id = (const uint8_t *)sep2 + 2;
		e->id_len = (size_t)(k + klen - sep2 - 2);
		e->body = (const uint8_t *)v;
		e->body_len = vlen;
		return 1;
	}
}

void store_image_iter_free(struct store_image_iter *it)
{
	if (!it)
		return;
	if (it->it)
		rocksdb_iter_destroy(it->it);
	if (it->ro)
		rocksdb_readoptions_destroy(it->ro);
	store_snap_free(it->own);
	buf_release(&it->prefix);
	buf_release(&it->file_prefix);
	catalog_release(&it->cat);
	free(it);
}

int store_load_entries(struct store *s, struct entry *entries, size_t n, struct us_err *err)
{
	rocksdb_writebatch_t *b;
	char *errptr = NULL;
	int rc = 0;

	store__perf_off();
	if ((rc = check_role(s, false, err)) || (rc = store__check_writable(s, err)))
		return rc;
	if ((rc = store__check_disk(s, true, err)))
		return rc;
	if (store__catalog_copy(&s->cat_saved, &s->cat))
		return err_set(err, US_ENOMEM, "out of memory");
	b = rocksdb_writebatch_create();
	for (size_t i = 0; i < n && rc == 0; i++) {
		bool is_journaled;

		const struct entry *e = &entries[i];

		/* An image's entries only (docs/save-format.md, "Entries"): a
		 * file with its own flag, an account that is off, an item. */
		if (e->op == ENTRY_CREATE_FILE && e->is_reset) {
			rc = err_set(err, US_EINVAL, "entry %zu of a full copy resets a file", i + 1);
			break;
		}
		if (e->op == ENTRY_SET_LOGGING && (e->file_len != 0 || e->flag)) {
			rc = err_set(err, US_EINVAL,
				     "entry %zu of a full copy sets logging of a file, or turns "
				     "an account on",
				     i + 1);
			break;
		}
		if (e->op != ENTRY_CREATE_FILE && e->op != ENTRY_WRITE &&
		    e->op != ENTRY_SET_LOGGING) {
			rc = err_set(err, US_EINVAL, "entry %zu of a full copy is a %s", i + 1,
				     entry_op_name(e->op));
			break;
		}
		/* As a replica at seq 0: nothing is journaled, and a flag that
		 * is off is stale since seq 0, which is to say not stale (the
		 * record is the same one a site's own commit writes). */
		rc = store__apply_op(s, b, e, ROLE_STANDBY, 0, &is_journaled, err);
		if (rc == US_ENOMEM)
			err_set(err, rc, "out of memory");
	}
	if (rc) {
		rocksdb_writebatch_destroy(b);
		store__catalog_copy(&s->cat, &s->cat_saved);
		return rc;
	}
	if (!s->is_load_unflushed) {
		/* a bulk load: its memtables are flushed as they fill, in key
		 * order, and nothing rewrites them while it runs (the store's
		 * daemon compacts them later, mostly by moving files) */
		const char *k[] = {"disable_auto_compactions", "level0_slowdown_writes_trigger",
				   "level0_stop_writes_trigger"};
		const char *v[] = {"true", "100000", "100000"};

		rocksdb_set_options(s->db, 3, k, v, &errptr);
		if ((rc = store__take_write_err(s, &errptr, err, "cannot start a load"))) {
			rocksdb_writebatch_destroy(b);
			store__catalog_copy(&s->cat, &s->cat_saved);
			return rc;
		}
		s->is_load_unflushed = true;
	}
	rocksdb_write(s->db, s->write_opts_nowal, b, &errptr);
	rocksdb_writebatch_destroy(b);
	if ((rc = store__take_write_err(s, &errptr, err, "cannot write to store"))) {
		struct us_err lerr;

		if (store__catalog_load(s, &lerr))
			err_wrap(err, "and reloading the catalog failed too (%s)", lerr.msg);
	}
	return rc;
}

int store_set_position(struct store *s, const struct store_position *pos, struct us_err *err)
{
	rocksdb_writebatch_t *b;
	uint8_t posv[POS_BYTES], first[8];
	uint8_t genkey[KEY_GEN_BYTES];
	char *errptr = NULL;
	int rc;

	if ((rc = store__check_writable(s, err)))
		return rc;
	if (s->is_load_unflushed) {
		/* the image went in without the WAL: into SST files before the
		 * position that says it is whole */
		rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();

		const char *k[] = {"disable_auto_compactions", "level0_slowdown_writes_trigger",
				   "level0_stop_writes_trigger"};
		const char *v[] = {"false", STORE_STR(US_STORE_L0_SLOWDOWN), STORE_STR(US_STORE_L0_STOP)};

		rocksdb_flushoptions_set_wait(fo, 1);
		rocksdb_flush(s->db, fo, &errptr);
		rocksdb_flushoptions_destroy(fo);
		if ((rc = store__take_write_err(s, &errptr, err, "cannot flush the loaded image")))
			return rc;
		{
			/* so many level-0 files that RocksDB would stop the first
			 * writes until compaction caught up: compact them now */
			char *n0 = rocksdb_property_value(s->db, "rocksdb.num-files-at-level0");

			if (n0 && strtoull(n0, NULL, 10) >= US_STORE_L0_STOP)
				rocksdb_compact_range(s->db, NULL, 0, NULL, 0);
			rocksdb_free(n0);
		}
		rocksdb_set_options(s->db, 1, k, v, &errptr);
		if ((rc = store__take_write_err(s, &errptr, err, "cannot end a load")))
			return rc;
		s->is_load_unflushed = false;
	}
	store__encode_pos(posv, pos);
	store__key_gen(genkey, pos->generation);
	buf_put_u64le(first, pos->seq + 1);
	b = rocksdb_writebatch_create();
	rocksdb_writebatch_put(b, KEY_POS, strlen(KEY_POS), (char *)posv, sizeof(posv));
	/* The copy begins a stretch of this generation at seq + 1 (history). */
	rocksdb_writebatch_put(b, (char *)genkey, sizeof(genkey), (char *)first, sizeof(first));
	rocksdb_write(s->db, s->write_opts, b, &errptr);
	rocksdb_writebatch_destroy(b);
	if ((rc = store__take_write_err(s, &errptr, err, "cannot set position")))
		return rc;
	pthread_mutex_lock(&s->pos_lock);
	s->pos = *pos;
	pthread_mutex_unlock(&s->pos_lock);
	return 0;
}

int store_check(struct store *s, struct store_check *out, struct us_err *err)
{
	rocksdb_iterator_t *it;
	struct store_position pos;
	char *errptr = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	store_get_position(s, &pos);
	out->position_seq = pos.seq;
	out->generation = pos.generation;
	if ((rc = store__journal_check(s, &pos, out, err)))
		return rc;
	it = rocksdb_create_iterator(s->db, s->read_opts);
	for (rocksdb_iter_seek(it, "D", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);

		if (klen < 1 || k[0] != 'D')
			break;
		out->items++;
	}
	for (rocksdb_iter_seek(it, "F", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen;
		const char *k = rocksdb_iter_key(it, &klen);

		if (klen < 1 || k[0] != 'F')
			break;
		out->files++;
	}
	rocksdb_iter_get_error(it, &errptr);
	rocksdb_iter_destroy(it);
	return store__take_rocks_err(&errptr, err, "cannot count items");
}
