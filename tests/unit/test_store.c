/* test_store.c - lib/store.c on a real RocksDB store in a temp dir. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "us_limits.h"
#include "store.h"

static char tmpl[] = "/tmp/us-test-store-XXXXXX";

static int setup(void **state)
{
	char *dir = strdup(tmpl);

	assert_non_null(mkdtemp(dir));
	*state = dir;
	return 0;
}

static int teardown(void **state)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", (char *)*state);
	assert_int_equal(system(cmd), 0);
	free(*state);
	return 0;
}

static struct store *open_store(const char *dir, size_t max_body)
{
	struct store_opts o = {.max_body = max_body};
	struct store *s = NULL;
	struct us_err err;
	int rc = store_open(&s, dir, &o, &err);

	if (rc)
		fail_msg("store_open: %s", err.msg);
	return s;
}

/* A store in the standby role: it applies a primary's stream and images. */
static struct store *open_replica(const char *dir)
{
	struct store_opts o = {.role = ROLE_STANDBY};
	struct store *s = NULL;
	struct us_err err;

	if (store_open(&s, dir, &o, &err))
		fail_msg("store_open: %s", err.msg);
	return s;
}

static struct entry op(uint8_t kind, const char *account, const char *file, const char *id,
		       const char *body)
{
	struct entry e = {.op = kind, .account = account, .account_len = strlen(account),
			  .file = file, .file_len = strlen(file), .section = SECTION_DATA,
			  .flag = true};

	if (id) {
		e.id = (const uint8_t *)id;
		e.id_len = strlen(id);
	}
	if (body) {
		e.body = (const uint8_t *)body;
		e.body_len = strlen(body);
	}
	return e;
}

/* Commits one commit alone; returns its rc. */
static int commit1(struct store *s, struct entry *ops, size_t n, uint64_t *first, uint64_t *last)
{
	struct store_commit c = {.ops = ops, .n_ops = n};
	struct store_commit *pc = &c;
	struct us_err err;

	assert_int_equal(store_commit_group(s, &pc, 1, 1000, &err), 0);
	if (first)
		*first = c.first_seq;
	if (last)
		*last = c.last_seq;
	return c.rc;
}

static void assert_body_at(struct store *s, const struct store_snap *at, const char *file,
			   uint8_t section, const char *id, const char *want)
{
	struct buf b;
	struct us_err err;
	int rc;

	buf_init(&b);
	rc = store_get(s, at, "ACC", file, section, (const uint8_t *)id, strlen(id), &b, &err);
	if (!want) {
		assert_int_equal(rc, US_ENOTFOUND);
	} else {
		if (rc)
			fail_msg("get %s: %s", id, err.msg);
		assert_int_equal(b.len, strlen(want));
		assert_memory_equal(b.p, want, b.len);
	}
	buf_release(&b);
}

static void assert_body(struct store *s, const char *file, uint8_t section, const char *id,
			const char *want)
{
	assert_body_at(s, NULL, file, section, id, want);
}

/* RocksDB's own last sequence number of the (closed) store in dir: grows by
 * one for every key written, range deletes included. */
static uint64_t rocks_latest_seq(const char *dir)
{
	rocksdb_options_t *o = rocksdb_options_create();
	char *errptr = NULL;
	rocksdb_t *db = rocksdb_open_for_read_only(o, dir, 0, &errptr);
	uint64_t seq;

	if (errptr)
		fail_msg("open %s: %s", dir, errptr);
	seq = rocksdb_get_latest_sequence_number(db);
	rocksdb_close(db);
	rocksdb_options_destroy(o);
	return seq;
}

static uint64_t pos_seq(struct store *s)
{
	struct store_position p;

	store_get_position(s, &p);
	return p.seq;
}

static void test_fresh_and_reopen(void **state)
{
	struct store *s = open_store(*state, 0);
	struct store_position p;
	struct entry ops[2] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL),
			       op(ENTRY_WRITE, "ACC", "F", "k", "a\xfe" "b\xfd" "c\xfc")};
	uint64_t first, last;

	store_get_position(s, &p);
	assert_int_equal(p.generation, 1);
	assert_int_equal(p.seq, 0);
	assert_int_equal(commit1(s, ops, 2, &first, &last), 0);
	assert_int_equal(first, 1);
	assert_int_equal(last, 2);
	store_close(s);

	s = open_store(*state, 0);
	store_get_position(s, &p);
	assert_int_equal(p.seq, 2);
	assert_int_equal(p.time_ms, 1000);
	assert_body(s, "F", SECTION_DATA, "k", "a\xfe" "b\xfd" "c\xfc");
	store_close(s);
}

/* A group: a refused commit in the middle gives back its seqs and changes nothing. */
static void test_group_refusal(void **state)
{
	struct store *s = open_store(*state, 0);
	struct entry a[1] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)};
	struct entry b[1] = {op(ENTRY_WRITE, "ACC", "F", "x", "1")};
	/* creates G then writes to missing H: the whole commit must go, G included */
	struct entry c[3] = {op(ENTRY_CREATE_FILE, "ACC", "G", NULL, NULL),
			     op(ENTRY_WRITE, "ACC", "G", "y", "2"),
			     op(ENTRY_WRITE, "ACC", "H", "z", "3")};
	struct entry d[1] = {op(ENTRY_WRITE, "ACC", "F", "w", "4")};
	struct store_commit cs[4] = {{.ops = a, .n_ops = 1}, {.ops = b, .n_ops = 1},
				     {.ops = c, .n_ops = 3}, {.ops = d, .n_ops = 1}};
	struct store_commit *pcs[4] = {&cs[0], &cs[1], &cs[2], &cs[3]};
	struct us_err err;
	struct store_check chk;

	assert_int_equal(store_commit_group(s, pcs, 4, 5, &err), 0);
	assert_int_equal(cs[0].rc, 0);
	assert_int_equal(cs[1].rc, 0);
	assert_int_equal(cs[2].rc, US_ENOTFOUND);
	assert_non_null(strstr(cs[2].err.msg, "ACC/H"));
	assert_int_equal(cs[3].rc, 0);
	assert_int_equal(cs[0].first_seq, 1);
	assert_int_equal(cs[1].first_seq, 2);
	assert_int_equal(cs[2].first_seq, 0);
	assert_int_equal(cs[3].first_seq, 3);
	assert_int_equal(pos_seq(s), 3);
	assert_body(s, "F", SECTION_DATA, "x", "1");
	assert_body(s, "F", SECTION_DATA, "w", "4");
	/* G was rolled back out of the catalog and the store: it can be created now */
	assert_body(s, "G", SECTION_DATA, "y", NULL);
	assert_int_equal(commit1(s, c, 1, NULL, NULL), 0);
	assert_int_equal(store_check(s, &chk, &err), 0);
	assert_int_equal(chk.gaps, 0);
	assert_int_equal(chk.bad_records, 0);
	assert_int_equal(chk.first_seq, 1);
	assert_int_equal(chk.last_seq, 4);
	assert_int_equal(chk.position_seq, 4);
	store_close(s);
}

static void test_bad_input_changes_nothing(void **state)
{
	struct store *s = open_store(*state, 8);
	struct entry mk[1] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)};
	struct entry bad[][1] = {
		{op(ENTRY_WRITE, "ACC", "F", "a\xfe" "b", "v")},   /* mark in id */
		{op(ENTRY_WRITE, "ACC", "F", "", "v")},            /* empty id */
		{op(ENTRY_WRITE, "bad name", "F", "k", "v")},      /* account */
		{op(ENTRY_WRITE, "ACC", "F/x", "k", "v")},         /* file */
		{op(ENTRY_WRITE, "ACC", "F", "k", "123456789")},   /* body over 8 */
		{op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)},   /* exists */
		{op(ENTRY_HEARTBEAT, "ACC", "F", NULL, NULL)},     /* internal op */
	};
	const int want[] = {US_EINVAL, US_EINVAL, US_EINVAL, US_EINVAL, US_ETOOBIG, US_EEXIST,
			    US_EINVAL};
	char id[US_ID_MAX_LEN + 2];

	assert_int_equal(commit1(s, mk, 1, NULL, NULL), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(commit1(s, bad[i], 1, NULL, NULL), want[i]);
		assert_int_equal(pos_seq(s), 1);
	}
	memset(id, 'i', sizeof(id));
	id[US_ID_MAX_LEN + 1] = '\0';
	struct entry long_id[1] = {op(ENTRY_WRITE, "ACC", "F", id, "v")};
	assert_int_equal(commit1(s, long_id, 1, NULL, NULL), US_EINVAL);
	id[US_ID_MAX_LEN] = '\0';
	long_id[0] = op(ENTRY_WRITE, "ACC", "F", id, "v");
	assert_int_equal(commit1(s, long_id, 1, NULL, NULL), 0);
	assert_int_equal(pos_seq(s), 2);
	store_close(s);
}

static void test_logging_and_files(void **state)
{
	struct store *s = open_store(*state, 0);
	struct entry mk[2] = {op(ENTRY_CREATE_FILE, "ACC", "U", NULL, NULL),
			      op(ENTRY_CREATE_FILE, "ACC", "L", NULL, NULL)};
	struct entry w[1] = {op(ENTRY_WRITE, "ACC", "U", "k", "v")};
	struct entry on[1] = {op(ENTRY_SET_LOGGING, "ACC", "U", NULL, NULL)};
	struct entry acc_off[1] = {op(ENTRY_SET_LOGGING, "ACC", "", NULL, NULL)};
	struct entry wl[1] = {op(ENTRY_WRITE, "ACC", "L", "k", "v")};
	struct store_file_info *fi;
	size_t n;
	uint64_t first, last;
	struct us_err err;

	mk[0].flag = false; /* U is created unlogged: not journaled */
	assert_int_equal(commit1(s, mk, 2, &first, &last), 0);
	assert_int_equal(first, 1);
	assert_int_equal(last, 1);
	assert_int_equal(commit1(s, w, 1, &first, &last), 0);
	assert_int_equal(last, 0); /* unlogged: no seq */
	assert_int_equal(pos_seq(s), 1);
	/* logging on re-ships the file: a CREATE_FILE reset, WRITE k, then the marker */
	assert_int_equal(commit1(s, on, 1, &first, &last), 0);
	assert_int_equal(first, 2);
	assert_int_equal(last, 4);
	{
		static const uint8_t ops[3] = {ENTRY_CREATE_FILE, ENTRY_WRITE, ENTRY_SET_LOGGING};
		struct buf rec;
		struct entry e;

		buf_init(&rec);
		for (uint64_t q = 2; q <= 4; q++) {
			assert_int_equal(store_journal_get(s, q, &rec, &e, &err), 0);
			assert_int_equal(e.op, ops[q - 2]);
			assert_int_equal(e.is_commit_end, q == 4);
			assert_int_equal(e.is_reset, q == 2);
		}
		assert_int_equal(e.flag, true);
		buf_release(&rec);
	}
	assert_int_equal(commit1(s, w, 1, &first, &last), 0);
	assert_int_equal(last, 5);
	acc_off[0].flag = false;
	assert_int_equal(commit1(s, acc_off, 1, &first, &last), 0);
	assert_int_equal(last, 6);
	assert_int_equal(commit1(s, wl, 1, &first, &last), 0);
	assert_int_equal(last, 0); /* the account is off */

	assert_int_equal(store_list_files(s, NULL, NULL, &fi, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(fi[0].file, "L");
	assert_string_equal(fi[1].file, "U");
	assert_true(fi[0].is_logged);
	assert_false(fi[0].is_account_logged);
	assert_int_equal(fi[0].data_items, 1);
	assert_int_equal(fi[1].data_items, 1);
	free(fi);
	store_close(s);
}

static void test_clear_delete_and_scan(void **state)
{
	struct store *s = open_store(*state, 0);
	struct entry mk[1] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)};
	const char *ids[] = {"b", "A", "10", "9", "a", "B"};
	const char *sorted[] = {"10", "9", "A", "B", "a", "b"};
	struct entry ws[7];
	struct entry clr[1] = {op(ENTRY_CLEAR_FILE, "ACC", "F", NULL, NULL)};
	struct entry del[1] = {op(ENTRY_DELETE_FILE, "ACC", "F", NULL, NULL)};
	struct store_iter *it;
	const uint8_t *id, *body;
	size_t id_len, body_len;
	struct us_err err;
	int i = 0;

	assert_int_equal(commit1(s, mk, 1, NULL, NULL), 0);
	for (int j = 0; j < 6; j++)
		ws[j] = op(ENTRY_WRITE, "ACC", "F", ids[j], ids[j]);
	ws[6] = op(ENTRY_WRITE, "ACC", "F", "d1", "dict body");
	ws[6].section = SECTION_DICT;
	assert_int_equal(commit1(s, ws, 7, NULL, NULL), 0);

	assert_int_equal(store_iter_new(s, NULL, "ACC", "F", SECTION_DATA, NULL, 0, &it, &err), 0);
	while (store_iter_next(it, &id, &id_len, &body, &body_len, &err) == 1) {
		assert_true(i < 6);
		assert_int_equal(id_len, strlen(sorted[i]));
		assert_memory_equal(id, sorted[i], id_len);
		i++;
	}
	assert_int_equal(i, 6);
	store_iter_free(it);
	assert_int_equal(store_iter_new(s, NULL, "ACC", "F", SECTION_DATA, (const uint8_t *)"A", 1,
					&it, &err), 0);
	assert_int_equal(store_iter_next(it, &id, &id_len, &body, &body_len, &err), 1);
	assert_memory_equal(id, "B", 1);
	store_iter_free(it);

	assert_int_equal(commit1(s, clr, 1, NULL, NULL), 0); /* DATA only */
	assert_body(s, "F", SECTION_DATA, "a", NULL);
	assert_body(s, "F", SECTION_DICT, "d1", "dict body");
	assert_int_equal(commit1(s, del, 1, NULL, NULL), 0);
	assert_body(s, "F", SECTION_DICT, "d1", NULL);
	assert_int_equal(store_iter_new(s, NULL, "ACC", "F", SECTION_DATA, NULL, 0, &it, &err),
			 US_ENOTFOUND);
	assert_int_equal(commit1(s, ws, 1, NULL, NULL), US_ENOTFOUND);
	assert_int_equal(commit1(s, del, 1, NULL, NULL), US_ENOTFOUND);
	store_close(s);
}

static void test_lock_and_foreign_db(void **state)
{
	struct store *s = open_store(*state, 0);
	struct store *t = NULL;
	struct us_err err;
	char other[256];
	rocksdb_options_t *o;
	rocksdb_t *db;
	char *errptr = NULL;

	assert_int_equal(store_open(&t, *state, NULL, &err), US_EUNAVAIL);
	assert_non_null(strstr(err.msg, "in use"));
	store_close(s);

	snprintf(other, sizeof(other), "%s/foreign", (char *)*state);
	o = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(o, 1);
	db = rocksdb_open(o, other, &errptr);
	assert_null(errptr);
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	rocksdb_put(db, wo, "k", 1, "v", 1, &errptr);
	rocksdb_writeoptions_destroy(wo);
	assert_null(errptr);
	rocksdb_close(db);
	rocksdb_options_destroy(o);
	assert_int_equal(store_open(&t, other, NULL, &err), US_ECORRUPT);
	assert_non_null(strstr(err.msg, "not an understudy store"));
}

/* A primary takes commits and applies nothing; a standby the reverse; the
 * roles' transitions are role.h's and no other. */
static void test_roles(void **state)
{
	char rdir[512];
	struct store *p = open_store(*state, 0), *r;
	struct entry mk[1] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)};
	struct store_commit c = {.ops = mk, .n_ops = 1};
	struct store_commit *pc = &c;
	struct us_err err;

	mk[0].is_commit_end = true;
	snprintf(rdir, sizeof(rdir), "%s/replica", (const char *)*state);
	r = open_replica(rdir);
	assert_int_equal(store_role(p), ROLE_PRIMARY);
	assert_int_equal(store_role(r), ROLE_STANDBY);
	assert_int_equal(store_apply_entries(p, 1, mk, 1, NULL, 0, false, &err), US_EPRECOND);
	assert_non_null(strstr(err.msg, "this node is primary for the namespace"));
	assert_int_equal(store_load_entries(p, mk, 1, &err), US_EPRECOND);
	assert_int_equal(store_commit_group(r, &pc, 1, 1000, &err), US_EPRECOND);
	assert_int_equal(c.rc, US_EPRECOND);
	assert_non_null(strstr(c.err.msg, "standby for the namespace, not its primary"));
	assert_int_equal(pos_seq(r), 0);
	assert_int_equal(pos_seq(p), 0);
	/* the standby applies, is promoted, then commits; the old primary,
	 * fenced, does neither */
	assert_int_equal(store_apply_entries(r, 1, mk, 1, NULL, 0, false, &err), 0);
	store_set_role(r, ROLE_PRIMARY);
	store_set_role(p, ROLE_FENCED);
	c.ops = (struct entry[]){op(ENTRY_WRITE, "ACC", "F", "k", "v")};
	assert_int_equal(store_commit_group(r, &pc, 1, 1000, &err), 0);
	assert_int_equal(c.rc, 0);
	assert_int_equal(pos_seq(r), 2);
	assert_int_equal(store_commit_group(p, &pc, 1, 1000, &err), US_EPRECOND);
	assert_int_equal(store_apply_entries(p, 1, mk, 1, NULL, 0, false, &err), US_EPRECOND);
	assert_non_null(strstr(err.msg, "fenced"));
	store_set_role(p, ROLE_REJOINING);
	assert_int_equal(store_apply_entries(p, 1, mk, 1, NULL, 0, false, &err), 0);
	store_set_role(p, ROLE_STANDBY);
	store_close(r);
	store_close(p);
	/* every transition, against the table of role.h */
	{
		static const bool may[4][4] = {
			/* to: primary standby fenced rejoining */
			[ROLE_PRIMARY] = {false, true, true, true},
			[ROLE_STANDBY] = {true, false, false, true},
			[ROLE_FENCED] = {false, false, false, true},
			[ROLE_REJOINING] = {false, true, false, false},
		};

		for (int from = 0; from < 4; from++)
			for (int to = 0; to < 4; to++)
				assert_int_equal(role_may_become(from, to), may[from][to]);
		assert_string_equal(role_name(ROLE_REJOINING), "rejoining");
		assert_true(role_takes_commits(ROLE_PRIMARY) && !role_takes_commits(ROLE_FENCED));
		assert_true(role_applies_stream(ROLE_REJOINING) &&
			    !role_applies_stream(ROLE_FENCED));
	}
}

/* Promote: generation + 1 and its history record, durably, with the role;
 * a reopened store keeps its role over the one it is opened with. */
static void test_promote(void **state)
{
	struct store *r = open_replica(*state);
	struct entry mk[1] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)};
	struct store_position pos;
	struct us_err err;
	uint64_t first;

	mk[0].is_commit_end = true;
	assert_int_equal(store_apply_entries(r, 1, mk, 1, NULL, 0, true, &err), 0);
	assert_int_equal(store_generation_start(r, 1, &first, &err), 0);
	assert_int_equal(first, 1);
	assert_int_equal(store_generation_start(r, 2, &first, &err), US_ENOTFOUND);
	assert_int_equal(store_promote(r, &pos, &err), 0);
	assert_int_equal(pos.generation, 2);
	assert_int_equal(pos.seq, 1);
	assert_int_equal(store_role(r), ROLE_PRIMARY);
	assert_int_equal(store_generation_start(r, 2, &first, &err), 0);
	assert_int_equal(first, 2);
	/* a primary is not promoted again: the caller says so */
	assert_int_equal(store_promote(r, NULL, &err), US_EPRECOND);
	assert_non_null(strstr(err.msg, "cannot promote: only a standby is"));
	store_close(r);
	/* opened "as a standby": it is the namespace's primary, and commits */
	r = open_replica(*state);
	assert_int_equal(store_role(r), ROLE_PRIMARY);
	store_get_position(r, &pos);
	assert_int_equal(pos.generation, 2);
	mk[0] = op(ENTRY_WRITE, "ACC", "F", "k", "v");
	assert_int_equal(commit1(r, mk, 1, NULL, NULL), 0);
	assert_int_equal(pos_seq(r), 2);
	store_close(r);
}

/* Fence: a superseded primary refuses commits naming the primary, and stays
 * fenced when reopened. */
static void test_fence(void **state)
{
	struct store *s = open_store(*state, 0);
	struct entry mk[1] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)};
	struct store_commit c = {.ops = mk, .n_ops = 1};
	struct store_commit *pc = &c;
	struct store_primary_info p = {.generation = 2, .first_seq = 2}, got;
	struct us_err err;

	assert_int_equal(commit1(s, mk, 1, NULL, NULL), 0);
	store_primary(s, &got);
	assert_string_equal(got.addr, "");
	assert_int_equal(store_fence(s, &p, &err), US_EINVAL); /* no address */
	assert_int_equal(store_role(s), ROLE_PRIMARY);
	snprintf(p.addr, sizeof(p.addr), "arch.example:7440");
	assert_int_equal(store_fence(s, &p, &err), 0);
	assert_int_equal(store_fence(s, &p, &err), 0); /* again: nothing */
	assert_int_equal(store_role(s), ROLE_FENCED);
	mk[0] = op(ENTRY_WRITE, "ACC", "F", "k", "v");
	assert_int_equal(store_commit_group(s, &pc, 1, 1000, &err), US_EPRECOND);
	assert_non_null(strstr(c.err.msg, "primary is arch.example:7440 (generation 2)"));
	assert_int_equal(pos_seq(s), 1);
	store_close(s);
	s = open_store(*state, 0);
	assert_int_equal(store_role(s), ROLE_FENCED);
	store_primary(s, &got);
	assert_string_equal(got.addr, "arch.example:7440");
	assert_int_equal(got.generation, 2);
	assert_int_equal(got.first_seq, 2);
	assert_int_equal(store_commit_group(s, &pc, 1, 1000, &err), US_EPRECOND);
	assert_int_equal(store_promote(s, NULL, &err), US_EPRECOND);
	store_close(s);
}

/* Rewind: a fenced store takes the primary's state of what the divergence
 * touched, its position and history, in one batch; its journal goes; role
 * rejoining, then standby once caught up. Refused unless fenced, and a
 * refused entry changes nothing. */
static void test_rewind(void **state)
{
	struct store *s = open_store(*state, 0);
	struct entry mk[2] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL),
			      op(ENTRY_CREATE_FILE, "ACC", "G", NULL, NULL)};
	struct entry w = op(ENTRY_WRITE, "ACC", "F", "k", "site");
	struct store_primary_info p = {.addr = "arch.example:7440", .generation = 2,
				       .first_seq = 4}, got;
	struct store_rewind rw = {.to = {.generation = 2, .seq = 5, .time_ms = 99, .chain = 0x55},
				  .first_seq = 4};
	struct entry image[4] = {op(ENTRY_WRITE, "ACC", "F", "k", "primary's"),
				 op(ENTRY_DELETE_FILE, "ACC", "G", NULL, NULL),
				 op(ENTRY_CREATE_FILE, "ACC", "J", NULL, NULL),
				 op(ENTRY_WRITE, "ACC", "J", "j", "new")};
	struct store_position pos;
	struct us_err err;
	uint64_t first;

	mk[0].flag = mk[1].flag = image[2].flag = true;
	assert_int_equal(commit1(s, mk, 2, NULL, NULL), 0);
	assert_int_equal(commit1(s, &w, 1, NULL, NULL), 0);     /* seq 3: shared */
	w.body = (const uint8_t *)"own";
	w.body_len = 3;
	assert_int_equal(commit1(s, &w, 1, NULL, NULL), 0);     /* seq 4: the site's own */
	rw.image = image;
	rw.n_image = 4;
	assert_int_equal(store_rewind(s, &rw, &err), US_EPRECOND); /* a primary */
	assert_int_equal(store_fence(s, &p, &err), 0);
	/* a refused entry (a write to a file that is not there) changes nothing */
	rw.n_image = 1;
	image[0].file = "Z";
	assert_int_equal(store_rewind(s, &rw, &err), US_ENOTFOUND);
	assert_int_equal(store_role(s), ROLE_FENCED);
	assert_int_equal(pos_seq(s), 4);
	assert_body(s, "F", SECTION_DATA, "k", "own");
	image[0].file = "F";
	rw.n_image = 4;
	rw.export_path = "/exports/site-a-g1-4-4.export";
	rw.exported = 1;
	assert_int_equal(store_rewind(s, &rw, &err), 0);
	assert_int_equal(store_role(s), ROLE_REJOINING);
	store_close(s);
	s = open_store(*state, 0);
	assert_int_equal(store_role(s), ROLE_REJOINING);
	store_get_position(s, &pos);
	assert_true(pos.generation == 2 && pos.seq == 5 && pos.time_ms == 99 && pos.chain == 0x55);
	assert_int_equal(store_generation_start(s, 2, &first, &err), 0);
	assert_int_equal(first, 4);
	store_primary(s, &got);
	assert_string_equal(got.addr, "arch.example:7440");
	{
		char path[200];
		uint64_t exported;

		assert_int_equal(store_rewound_export(s, path, sizeof(path), &exported, &err), 0);
		assert_string_equal(path, "/exports/site-a-g1-4-4.export");
		assert_int_equal(exported, 1);
	}
	assert_body(s, "F", SECTION_DATA, "k", "primary's");
	assert_body(s, "J", SECTION_DATA, "j", "new");
	{
		bool is_found = true;

		assert_int_equal(store_has_files(s, NULL, "ACC", "G", &is_found, &err), 0);
		assert_false(is_found);
	}
	{
		/* the files and flags without counting their items */
		struct store_file_info *fi;
		size_t n;

		assert_int_equal(store_list_file_names(s, NULL, NULL, &fi, &n, &err), 0);
		assert_int_equal(n, 2);
		assert_string_equal(fi[0].file, "F");
		assert_string_equal(fi[1].file, "J");
		assert_true(fi[1].is_logged && fi[1].data_items == 0);
		free(fi);
		assert_int_equal(store_list_files(s, NULL, NULL, &fi, &n, &err), 0);
		assert_true(n == 2 && fi[1].data_items == 1);
		free(fi);
	}
	assert_int_equal(store_journal_first(s, &first, &err), 0);
	assert_int_equal(first, 0); /* the journal went: the tail is exported first */
	assert_int_equal(store_rewind(s, &rw, &err), US_EPRECOND); /* not fenced now */
	{
		struct store_commit c = {.ops = &w, .n_ops = 1};
		struct store_commit *pc = &c;

		/* a rejoining store takes no commits */
		assert_int_equal(store_commit_group(s, &pc, 1, 1000, &err), US_EPRECOND);
		assert_int_equal(pos_seq(s), 5);
	}
	assert_int_equal(store_caught_up(s, &err), 0);
	assert_int_equal(store_caught_up(s, &err), 0); /* again: nothing */
	assert_int_equal(store_role(s), ROLE_STANDBY);
	store_close(s);
	s = open_store(*state, 0);
	assert_int_equal(store_role(s), ROLE_STANDBY);
	assert_int_equal(pos_seq(s), 5);
	store_close(s);
}

/* The archiver's side: replicated entries at given seqs. */
static void test_replica_apply(void **state)
{
	struct store *s = open_replica(*state);
	struct entry e[4] = {op(ENTRY_WRITE, "ACC", "F", "k1", "v1"),
			     op(ENTRY_WRITE, "ACC", "F", "k2", "v2"),
			     op(ENTRY_SET_LOGGING, "ACC", "F", NULL, NULL),
			     op(ENTRY_HEARTBEAT, "", "", NULL, NULL)};
	struct store_file_info *fi;
	struct store_check chk;
	struct us_err err;
	uint64_t durable;
	size_t n;

	e[0].time_ms = e[1].time_ms = 77;
	e[1].is_commit_end = true;
	/* a gap, an overlap and a half commit are refused and change nothing */
	assert_int_equal(store_apply_entries(s, 2, e, 2, NULL, 0, false, &err), US_ERANGE);
	assert_non_null(strstr(err.msg, "gap"));
	assert_int_equal(store_apply_entries(s, 1, e, 1, NULL, 0, false, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "inside a commit"));
	assert_int_equal(pos_seq(s), 0);
	/* a write to a file the replica does not hold is refused, as a site
	 * refuses it, and creates nothing */
	assert_int_equal(store_apply_entries(s, 1, e, 2, NULL, 0, false, &err), US_ENOTFOUND);
	assert_non_null(strstr(err.msg, "seq 1"));
	assert_non_null(strstr(err.msg, "ACC/F does not exist"));
	assert_int_equal(pos_seq(s), 0);
	assert_int_equal(store_list_files(s, NULL, NULL, &fi, &n, &err), 0);
	assert_int_equal(n, 0);
	free(fi);
	/* a CREATE_FILE reset (a site's re-ship) makes it, then writes apply */
	struct entry reset[3] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL), e[0], e[1]};
	reset[0].is_reset = true;
	reset[0].flag = false;
	assert_int_equal(store_apply_entries(s, 1, reset, 3, NULL, 0, false, &err), 0);
	assert_int_equal(store_apply_entries(s, 1, reset, 3, NULL, 0, false, &err), US_ERANGE);
	assert_non_null(strstr(err.msg, "overlap"));
	assert_body(s, "F", SECTION_DATA, "k2", "v2");
	assert_int_equal(store_sync(s, &durable, &err), 0);
	assert_int_equal(durable, 3);
	/* reset until the marker: stale since the reset's seq, and the marker
	 * (logging on) clears it */
	assert_int_equal(store_list_files(s, NULL, NULL, &fi, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(fi[0].stale_since_seq, 1);
	free(fi);
	/* logging off: the file is stale since that seq; heartbeats are journaled */
	e[2].flag = false;
	e[2].is_commit_end = true;
	e[3].is_commit_end = true;
	assert_int_equal(store_apply_entries(s, 4, &e[2], 2, NULL, 0, true, &err), 0);
	assert_int_equal(store_list_files(s, NULL, NULL, &fi, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(fi[0].stale_since_seq, 4);
	assert_int_equal(fi[0].data_items, 2);
	free(fi);
	/* a bad entry refuses the whole frame */
	struct entry bad[2] = {op(ENTRY_CREATE_FILE, "ACC", "G", NULL, NULL),
			       op(ENTRY_WRITE, "ACC", "G", "a\xfe", "1")};
	bad[1].is_commit_end = true;
	assert_int_equal(store_apply_entries(s, 6, bad, 2, NULL, 0, true, &err), US_EINVAL);
	assert_int_equal(pos_seq(s), 5);
	/* so do a file created twice, a delete or a clear in a file not held */
	struct entry twice[1] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)};
	struct entry del[1] = {op(ENTRY_DELETE, "ACC", "NONE", "k1", NULL)};
	struct entry clr[1] = {op(ENTRY_CLEAR_FILE, "ACC", "NONE", NULL, NULL)};
	twice[0].is_commit_end = del[0].is_commit_end = clr[0].is_commit_end = true;
	assert_int_equal(store_apply_entries(s, 6, twice, 1, NULL, 0, true, &err), US_EEXIST);
	assert_int_equal(store_apply_entries(s, 6, del, 1, NULL, 0, true, &err), US_ENOTFOUND);
	assert_int_equal(store_apply_entries(s, 6, clr, 1, NULL, 0, true, &err), US_ENOTFOUND);
	assert_int_equal(pos_seq(s), 5);
	assert_int_equal(store_list_files(s, NULL, NULL, &fi, &n, &err), 0);
	assert_int_equal(n, 1); /* G was not created */
	free(fi);
	/* DELETE_FILE and SET_LOGGING of a file not held: journaled, nothing made */
	struct entry gone[2] = {op(ENTRY_DELETE_FILE, "ACC", "NONE", NULL, NULL),
				op(ENTRY_SET_LOGGING, "ACC", "NONE2", NULL, NULL)};
	gone[1].is_commit_end = true;
	assert_int_equal(store_apply_entries(s, 6, gone, 2, NULL, 0, true, &err), 0);
	assert_int_equal(pos_seq(s), 7);
	assert_int_equal(store_list_files(s, NULL, NULL, &fi, &n, &err), 0);
	assert_int_equal(n, 1);
	free(fi);
	assert_int_equal(store_check(s, &chk, &err), 0);
	assert_int_equal(chk.gaps + chk.bad_records, 0);
	assert_int_equal(chk.last_seq, 7);
	store_close(s);
}

/* A full copy: what ships is exactly the logged files, and it loads into a
 * fresh store at the source's position. */
static void test_seed_copy_and_trim(void **state)
{
	char dir2[512];
	struct store *s = open_store(*state, 0);
	struct entry mk[3] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL),
			      op(ENTRY_CREATE_FILE, "ACC", "U", NULL, NULL),
			      op(ENTRY_CREATE_FILE, "OFF", "G", NULL, NULL)};
	struct entry w[5] = {op(ENTRY_WRITE, "ACC", "F", "a", "1"),
			     op(ENTRY_WRITE, "ACC", "F", "b", "2\xfe"),
			     op(ENTRY_WRITE, "ACC", "F", "d", "dict"),
			     op(ENTRY_WRITE, "ACC", "U", "secret", "x"),
			     op(ENTRY_WRITE, "OFF", "G", "g", "x")};
	struct entry off[1] = {op(ENTRY_SET_LOGGING, "OFF", "", NULL, NULL)};
	const struct store_image_opts ship = {.is_shipped_only = true};
	struct store_image_iter *it;
	struct store_position pos, pos2;
	struct entry e[16];
	struct store *t;
	struct us_err err;
	uint64_t first;
	size_t n = 0;
	int rc;

	mk[1].flag = false;
	w[2].section = SECTION_DICT;
	off[0].flag = false;
	assert_int_equal(commit1(s, mk, 3, NULL, NULL), 0);
	assert_int_equal(commit1(s, w, 5, NULL, NULL), 0);
	assert_int_equal(commit1(s, off, 1, NULL, NULL), 0);
	assert_int_equal(store_image_iter_new(s, NULL, &ship, &it, &pos, &err), 0);
	/* a commit after the snapshot is not in the copy */
	struct entry late[1] = {op(ENTRY_WRITE, "ACC", "F", "late", "1")};
	assert_int_equal(commit1(s, late, 1, NULL, NULL), 0);
	snprintf(dir2, sizeof(dir2), "%s/copy", (char *)*state);
	t = open_replica(dir2);
	while ((rc = store_image_iter_next(it, &e[n], &err)) == 1) {
		assert_true(n < 16);
		assert_true(e[n].is_commit_end);
		/* entries borrow from the iterator: load each at once */
		assert_int_equal(store_load_entries(t, &e[n], 1, &err), 0);
		n++;
	}
	assert_int_equal(rc, 0);
	store_image_iter_free(it);
	assert_int_equal(n, 4); /* CREATE ACC/F, then a, b (DATA), d (DICT) */
	assert_int_equal(store_set_position(t, &pos, &err), 0);
	store_get_position(t, &pos2);
	assert_int_equal(pos2.seq, pos.seq);
	assert_int_equal(pos2.generation, 1);
	assert_body(t, "F", SECTION_DATA, "b", "2\xfe");
	assert_body(t, "F", SECTION_DICT, "d", "dict");
	assert_body(t, "F", SECTION_DATA, "late", NULL);
	assert_body(t, "U", SECTION_DATA, "secret", NULL);
	store_close(t);

	/* trim: the journal starts at the block holding the seq after the cut
	 * (each commit here wrote one block), whole blocks before it go, the
	 * position stays */
	assert_int_equal(store_journal_trim(s, 3, &err), 0);
	assert_int_equal(store_journal_first(s, &first, &err), 0);
	assert_true(first > 1 && first <= 4);
	{
		struct buf raw;
		struct entry e;

		buf_init(&raw);
		assert_int_equal(store_journal_get(s, 4, &raw, &e, &err), 0);
		assert_int_equal(store_journal_get(s, first, &raw, &e, &err), 0);
		assert_int_equal(store_journal_get(s, first - 1, &raw, &e, &err), US_ENOTFOUND);
		buf_release(&raw);
	}
	assert_int_equal(pos_seq(s), pos.seq + 1);
	store_close(s);
}

/* A write to an unlogged file, then logging on for it, in one group: the
 * re-ship must carry the write (it is journaled nowhere else). */
static void test_logging_on_after_write_in_group(void **state)
{
	struct store *s = open_store(*state, 0);
	struct entry mk[1] = {op(ENTRY_CREATE_FILE, "ACC", "U", NULL, NULL)};
	struct entry w[1] = {op(ENTRY_WRITE, "ACC", "U", "x", "written before")};
	struct entry on[1] = {op(ENTRY_SET_LOGGING, "ACC", "U", NULL, NULL)};
	struct store_commit cs[2] = {{.ops = w, .n_ops = 1}, {.ops = on, .n_ops = 1}};
	struct store_commit *pcs[2] = {&cs[0], &cs[1]};
	struct us_err err;
	struct buf rec;
	struct entry e;
	bool is_shipped = false;

	mk[0].flag = false;
	assert_int_equal(commit1(s, mk, 1, NULL, NULL), 0);
	assert_int_equal(store_commit_group(s, pcs, 2, 9, &err), 0);
	assert_int_equal(cs[0].rc, 0);
	assert_int_equal(cs[0].last_seq, 0); /* unlogged at the time */
	assert_int_equal(cs[1].rc, 0);
	buf_init(&rec);
	for (uint64_t q = cs[1].first_seq; q <= cs[1].last_seq; q++) {
		assert_int_equal(store_journal_get(s, q, &rec, &e, &err), 0);
		if (e.op == ENTRY_WRITE && e.id_len == 1 && e.id[0] == 'x')
			is_shipped = true;
	}
	buf_release(&rec);
	assert_true(is_shipped);
	store_close(s);
}

/* The journal in small blocks (journal_block_bytes 64: a block is put every
 * few entries, also inside a commit): a commit refused after some of its
 * entries went into the batch in blocks of their own takes exactly its own
 * entries back out, and the journal reads back contiguous from any seq. */
static void test_journal_blocks(void **state)
{
	struct store_opts o = {.journal_block_bytes = 64};
	struct store *s = NULL, *r = NULL;
	struct entry mk[1] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)};
	struct entry a[3], b[21], c[2];
	struct store_commit cs[3] = {{.ops = a, .n_ops = 3}, {.ops = b, .n_ops = 21},
				     {.ops = c, .n_ops = 2}};
	struct store_commit *pcs[3] = {&cs[0], &cs[1], &cs[2]};
	struct store_journal_iter *it;
	struct store_check chk;
	struct us_err err;
	char ids[21][8];
	uint64_t seq, want, first;
	struct entry e;
	struct buf raw;
	int rc;

	assert_int_equal(store_open(&s, *state, &o, &err), 0);
	mk[0].flag = true;
	assert_int_equal(commit1(s, mk, 1, NULL, NULL), 0);
	for (int i = 0; i < 21; i++) {
		snprintf(ids[i], sizeof(ids[i]), "b%02d", i);
		b[i] = op(ENTRY_WRITE, "ACC", "F", ids[i], "a body of some length");
	}
	b[20] = op(ENTRY_WRITE, "ACC", "NOPE", "x", "1"); /* no such file: refused */
	a[0] = op(ENTRY_WRITE, "ACC", "F", "a0", "first commit");
	a[1] = op(ENTRY_WRITE, "ACC", "F", "a1", "first commit");
	a[2] = op(ENTRY_DELETE, "ACC", "F", "a0", NULL);
	c[0] = op(ENTRY_WRITE, "ACC", "F", "c0", "third commit");
	c[1] = op(ENTRY_WRITE, "ACC", "F", "c1", "third commit");
	assert_int_equal(store_commit_group(s, pcs, 3, 5, &err), 0);
	assert_int_equal(cs[0].rc, 0);
	assert_int_equal(cs[0].first_seq, 2);
	assert_int_equal(cs[0].last_seq, 4);
	assert_int_not_equal(cs[1].rc, 0);
	assert_int_equal(cs[2].rc, 0);
	assert_int_equal(cs[2].first_seq, 5);
	assert_int_equal(cs[2].last_seq, 6);
	assert_body(s, "F", SECTION_DATA, "b00", NULL);
	assert_body(s, "F", SECTION_DATA, "c1", "third commit");
	assert_int_equal(store_check(s, &chk, &err), 0);
	assert_int_equal(chk.gaps + chk.bad_records, 0);
	assert_int_equal(chk.entries, 6);
	assert_int_equal(chk.last_seq, 6);

	/* from every seq: contiguous to the end, END on 1, 4 and 6 */
	for (uint64_t from = 1; from <= 7; from++) {
		assert_int_equal(store_journal_iter_new(s, from, &it, &err), 0);
		want = from;
		while ((rc = store_journal_iter_next(it, &seq, &e, NULL, NULL, &err)) == 1) {
			assert_true(seq == want);
			assert_int_equal(e.is_commit_end, seq == 1 || seq == 4 || seq == 6);
			assert_int_equal(e.op, seq == 1 ? ENTRY_CREATE_FILE
					       : seq == 4 ? ENTRY_DELETE : ENTRY_WRITE);
			want++;
		}
		assert_int_equal(rc, 0);
		assert_true(want == 7);
		store_journal_iter_free(it);
	}
	buf_init(&raw);
	assert_int_equal(store_journal_get(s, 5, &raw, &e, &err), 0);
	assert_int_equal(e.id_len, 2);
	assert_memory_equal(e.id, "c0", 2);
	assert_int_equal(store_journal_get(s, 7, &raw, &e, &err), US_ENOTFOUND);

	/* a replica stores a frame's block as it is; a block of other entries is refused */
	{
		struct entry_block_writer w;
		struct entry fe[2] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL),
				      op(ENTRY_WRITE, "ACC", "F", "k", "v")};
		struct buf blk;
		char rdir[512];

		fe[0].flag = true;
		fe[0].is_commit_end = true; /* two whole commits: n = 1 fails on the count alone */
		fe[1].is_commit_end = true;
		snprintf(rdir, sizeof(rdir), "%s/replica", (const char *)*state);
		r = open_replica(rdir);
		buf_init(&blk);
		assert_int_equal(entry_block_begin(&w, &blk, 2), 0);
		assert_int_equal(entry_block_add(&w, &fe[0], &err), 0);
		assert_int_equal(entry_block_add(&w, &fe[1], &err), 0);
		assert_int_equal(entry_block_finish(&w, &err), 0);
		assert_int_equal(store_apply_entries(r, 1, fe, 2, blk.p, blk.len, false, &err),
				 US_EINVAL);
		assert_int_equal(store_apply_entries(r, 1, fe, 1, blk.p, blk.len, false, &err),
				 US_EINVAL);
		assert_int_equal(pos_seq(r), 0);
		buf_put_u64le(blk.p + 5, 1); /* what the first seq says is checked, not the checksum */
		assert_int_equal(store_apply_entries(r, 1, fe, 2, blk.p, blk.len, false, &err), 0);
		assert_int_equal(store_check(r, &chk, &err), 0);
		assert_int_equal(chk.bad_records, 1); /* the resealing was skipped on purpose */
		buf_release(&blk);
		store_close(r);
	}

	/* trim to 3: the block holding 4 stays; 4 and after read back */
	assert_int_equal(store_journal_trim(s, 3, &err), 0);
	assert_int_equal(store_journal_first(s, &first, &err), 0);
	assert_true(first >= 2 && first <= 4);
	assert_int_equal(store_journal_get(s, 4, &raw, &e, &err), 0);
	assert_int_equal(store_journal_get(s, 1, &raw, &e, &err), US_ENOTFOUND);
	buf_release(&raw);

	/* past the last seq the last block stays; trimming again writes nothing
	 * (retention trims an idle site every period) */
	assert_int_equal(store_journal_trim(s, 6, &err), 0);
	assert_int_equal(store_journal_get(s, 6, &raw, &e, &err), 0);
	store_close(s);
	s = open_store(*state, 0);
	store_close(s);
	want = rocks_latest_seq(*state);
	s = open_store(*state, 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(store_journal_trim(s, 6, &err), 0);
		assert_int_equal(store_journal_trim(s, 1000, &err), 0);
	}
	assert_int_equal(store_journal_get(s, 6, &raw, &e, &err), 0);
	store_close(s);
	assert_true(rocks_latest_seq(*state) == want);
	buf_release(&raw);
}

/* A block that does not decode in the middle of the journal is one bad
 * record: not also a gap before the next block. */
static void test_check_bad_block(void **state)
{
	struct store_opts o = {.journal_block_bytes = 64};
	struct entry mk[1] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)};
	struct store *s = NULL;
	struct store_check chk;
	struct us_err err;
	rocksdb_options_t *ro;
	rocksdb_readoptions_t *rdo;
	rocksdb_writeoptions_t *wo;
	rocksdb_iterator_t *it;
	rocksdb_t *db;
	char *errptr = NULL;
	int n_blocks = 0;

	assert_int_equal(store_open(&s, *state, &o, &err), 0);
	mk[0].flag = true;
	assert_int_equal(commit1(s, mk, 1, NULL, NULL), 0);
	for (int i = 0; i < 12; i++) {
		char id[8];
		struct entry w[1];

		snprintf(id, sizeof(id), "i%02d", i);
		w[0] = op(ENTRY_WRITE, "ACC", "F", id, "a body long enough to fill a block");
		assert_int_equal(commit1(s, w, 1, NULL, NULL), 0);
	}
	assert_int_equal(store_check(s, &chk, &err), 0);
	assert_int_equal(chk.bad_records + chk.gaps, 0);
	store_close(s);

	/* flip one byte in the body of the third block */
	ro = rocksdb_options_create();
	db = rocksdb_open(ro, *state, &errptr);
	assert_null(errptr);
	rdo = rocksdb_readoptions_create();
	wo = rocksdb_writeoptions_create();
	it = rocksdb_create_iterator(db, rdo);
	for (rocksdb_iter_seek(it, "J", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
		size_t klen, vlen;
		const char *k = rocksdb_iter_key(it, &klen);
		const char *v = rocksdb_iter_value(it, &vlen);

		if (k[0] != 'J')
			break;
		if (++n_blocks == 3) {
			char *bad = malloc(vlen);

			memcpy(bad, v, vlen);
			bad[vlen - 1] ^= 0x01;
			rocksdb_put(db, wo, k, klen, bad, vlen, &errptr);
			assert_null(errptr);
			free(bad);
		}
	}
	rocksdb_iter_destroy(it);
	rocksdb_readoptions_destroy(rdo);
	rocksdb_writeoptions_destroy(wo);
	rocksdb_close(db);
	rocksdb_options_destroy(ro);
	assert_true(n_blocks >= 5);

	s = open_store(*state, 0);
	assert_int_equal(store_check(s, &chk, &err), 0);
	assert_int_equal(chk.bad_records, 1);
	assert_int_equal(chk.gaps, 0);
	assert_int_equal(chk.first_seq, 1);
	assert_int_equal(chk.last_seq, 13);
	store_close(s);
}


/* The history chain: a replica that applies a site's journal block by block
 * folds to the site's chain at every seq; a store with one entry different
 * does not; store_check finds the kept chains consistent, and a flipped one. */
static void test_history_chain(void **state)
{
	struct store_opts o = {.journal_block_bytes = 64};
	struct store *s = NULL, *r = NULL, *x = NULL;
	struct entry mk[1] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)};
	struct entry w[3] = {op(ENTRY_WRITE, "ACC", "F", "a", "1"),
			     op(ENTRY_WRITE, "ACC", "F", "b", "2"),
			     op(ENTRY_WRITE, "ACC", "F", "c", "3")};
	struct entry w2[1] = {op(ENTRY_WRITE, "ACC", "F", "a", "other")};
	struct store_position ps, pr, px;
	struct store_check chk;
	struct us_err err;
	char rdir[512], xdir[512];
	uint64_t cs, cr, prev = 0;

	snprintf(rdir, sizeof(rdir), "%s/replica", (const char *)*state);
	snprintf(xdir, sizeof(xdir), "%s/other", (const char *)*state);
	assert_int_equal(store_open(&s, *state, &o, &err), 0);
	assert_int_equal(store_open(&x, xdir, &o, &err), 0);
	r = open_replica(rdir);
	assert_int_equal(commit1(s, mk, 1, NULL, NULL), 0);
	assert_int_equal(commit1(x, mk, 1, NULL, NULL), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(commit1(s, w, 3, NULL, NULL), 0);
	assert_int_equal(commit1(x, w2, 1, NULL, NULL), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(commit1(x, w, 3, NULL, NULL), 0);
	store_get_position(s, &ps);
	assert_int_equal(ps.seq, 13);
	/* replicate seq by seq, one commit a frame, through blocks built anew */
	for (uint64_t seq = 1; seq <= ps.seq;) {
		struct store_journal_iter *it;
		struct entry es[4];
		struct buf raws[4];
		size_t n = 0;
		uint64_t got;
		int rc;

		assert_int_equal(store_journal_iter_new(s, seq, &it, &err), 0);
		while ((rc = store_journal_iter_next(it, &got, &es[n], NULL, NULL, &err)) == 1) {
			buf_init(&raws[n]);
			assert_int_equal(store_journal_get(s, got, &raws[n], &es[n], &err), 0);
			if (es[n++].is_commit_end)
				break;
		}
		store_journal_iter_free(it);
		assert_int_equal(store_apply_entries(r, seq, es, n, NULL, 0, false, &err), 0);
		seq += n;
		for (size_t i = 0; i < n; i++)
			buf_release(&raws[i]);
	}
	store_get_position(r, &pr);
	assert_true(ps.chain == pr.chain);
	assert_true(ps.chain != 0);
	/* the same at every seq, and a different chain at every one */
	for (uint64_t next = 1; next <= ps.seq + 1; next++) {
		assert_int_equal(store_chain_before(s, next, &cs, &err), 0);
		assert_int_equal(store_chain_before(r, next, &cr, &err), 0);
		assert_true(cs == cr);
		assert_true(next == 1 ? cs == 0 : cs != prev);
		prev = cs;
	}
	assert_int_equal(store_chain_before(s, ps.seq + 2, &cs, &err), US_ERANGE);
	/* another history of the same length and seqs: its chain differs from 2 on */
	store_get_position(x, &px);
	assert_int_equal(px.seq, ps.seq + 1);
	assert_int_equal(store_chain_before(x, 2, &cr, &err), 0);
	assert_int_equal(store_chain_before(s, 2, &cs, &err), 0);
	assert_true(cs == cr); /* seq 1 is the same CREATE_FILE at the same time */
	assert_int_equal(store_chain_before(x, 3, &cr, &err), 0);
	assert_int_equal(store_chain_before(s, 3, &cs, &err), 0);
	assert_true(cs != cr);
	/* the chains kept with the blocks are consistent; trimming keeps them so */
	assert_int_equal(store_check(s, &chk, &err), 0);
	assert_int_equal(chk.chain_mismatches, 0);
	assert_int_equal(store_check(r, &chk, &err), 0);
	assert_int_equal(chk.chain_mismatches, 0);
	assert_int_equal(store_journal_trim(s, 6, &err), 0);
	assert_int_equal(store_check(s, &chk, &err), 0);
	assert_true(chk.first_seq > 1);
	assert_int_equal(chk.chain_mismatches, 0);
	assert_int_equal(store_chain_before(s, ps.seq + 1, &cs, &err), 0);
	assert_true(cs == ps.chain);
	assert_int_equal(store_chain_before(s, 1, &cs, &err), 0); /* seq 0: no history */
	assert_int_equal(store_chain_before(s, 2, &cs, &err), US_ENOTFOUND);
	store_close(s);
	store_close(r);
	store_close(x);
	/* a position whose chain is not what the journal folds to is found */
	{
		char *errptr = NULL;
		rocksdb_options_t *ro = rocksdb_options_create();
		rocksdb_t *db = rocksdb_open(ro, rdir, &errptr);
		rocksdb_readoptions_t *rdo = rocksdb_readoptions_create();
		rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
		size_t len;
		char *v;

		assert_null(errptr);
		v = rocksdb_get(db, rdo, "Mpos", 4, &len, &errptr);
		assert_non_null(v);
		assert_int_equal(len, 32);
		v[24] ^= 1;
		rocksdb_put(db, wo, "Mpos", 4, v, len, &errptr);
		assert_null(errptr);
		rocksdb_free(v);
		rocksdb_writeoptions_destroy(wo);
		rocksdb_readoptions_destroy(rdo);
		rocksdb_close(db);
		rocksdb_options_destroy(ro);
	}
	r = open_store(rdir, 0);
	assert_int_equal(store_check(r, &chk, &err), 0);
	assert_int_equal(chk.chain_mismatches, 1);
	store_close(r);
}

/* An op on a file before the op that turns its logging on, in one commit,
 * would be neither journaled nor re-shipped: refused, changing nothing; the
 * other order ships everything. */
static void test_reship_order(void **state)
{
	struct store *s = open_store(*state, 0);
	struct entry bad[3] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL),
			       op(ENTRY_WRITE, "ACC", "F", "x", "1"),
			       op(ENTRY_SET_LOGGING, "ACC", "F", NULL, NULL)};
	struct entry acc[2] = {op(ENTRY_WRITE, "ACC", "F", "y", "2"),
			       op(ENTRY_SET_LOGGING, "ACC", "", NULL, NULL)};
	struct entry mk[1] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL)};
	struct entry good[2] = {op(ENTRY_SET_LOGGING, "ACC", "F", NULL, NULL),
				op(ENTRY_WRITE, "ACC", "F", "x", "1")};
	struct store_commit c = {.ops = bad, .n_ops = 3};
	struct store_commit *pc = &c;
	struct store_check chk;
	struct us_err err;
	uint64_t first, last;

	bad[0].flag = false;
	assert_int_equal(store_commit_group(s, &pc, 1, 1000, &err), 0);
	assert_int_equal(c.rc, US_EINVAL);
	assert_non_null(strstr(c.err.msg, "operation 2 (write) on ACC/F"));
	assert_int_equal(pos_seq(s), 0);
	mk[0].flag = false;
	assert_int_equal(commit1(s, mk, 1, NULL, NULL), 0);
	/* the account's flag: every op in it counts */
	c = (struct store_commit){.ops = acc, .n_ops = 2};
	assert_int_equal(store_commit_group(s, &pc, 1, 1000, &err), 0);
	assert_int_equal(c.rc, US_EINVAL);
	assert_body(s, "F", SECTION_DATA, "y", NULL);
	/* logging on first: reset, marker, then the write, all journaled */
	assert_int_equal(commit1(s, good, 2, &first, &last), 0);
	assert_int_equal(first, 1);
	assert_int_equal(last, 3);
	assert_int_equal(store_check(s, &chk, &err), 0);
	assert_int_equal(chk.entries, 3);
	store_close(s);
}


/* A snapshot shows the state after one commit, whatever comes after it:
 * items, scans, the file list and its counts, and its own position. */
static void test_snapshot_reads(void **state)
{
	struct store *s = open_store(*state, 0);
	struct entry create = op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL);
	struct entry w[2] = {op(ENTRY_WRITE, "ACC", "F", "A", "a1"),
			     op(ENTRY_WRITE, "ACC", "F", "B", "b1")};
	struct entry later[3] = {op(ENTRY_WRITE, "ACC", "F", "A", "a2"),
				 op(ENTRY_DELETE, "ACC", "F", "B", NULL),
				 op(ENTRY_WRITE, "ACC", "F", "C", "c2")};
	struct entry create_g = op(ENTRY_CREATE_FILE, "ACC", "G", NULL, NULL);
	struct store_snap *snap, *empty;
	struct store_file_info *fi;
	struct store_iter *it;
	const uint8_t *id, *body;
	size_t id_len, body_len, n;
	struct us_err err;
	uint64_t last;

	assert_int_equal(store_snap_new(s, &empty, &err), 0);
	assert_int_equal(store_snap_position(empty)->seq, 0);
	assert_int_equal(commit1(s, &create, 1, NULL, NULL), 0);
	assert_int_equal(commit1(s, w, 2, NULL, &last), 0);
	assert_int_equal(store_snap_new(s, &snap, &err), 0);
	assert_int_equal(store_snap_position(snap)->seq, last);
	assert_int_equal(store_snap_position(snap)->generation, 1);
	assert_true(store_snap_position(snap)->time_ms > 0);
	assert_int_equal(commit1(s, later, 3, NULL, NULL), 0);
	assert_int_equal(commit1(s, &create_g, 1, NULL, NULL), 0);

	/* now vs at the snapshot */
	assert_body(s, "F", SECTION_DATA, "A", "a2");
	assert_body(s, "F", SECTION_DATA, "B", NULL);
	assert_body_at(s, snap, "F", SECTION_DATA, "A", "a1");
	assert_body_at(s, snap, "F", SECTION_DATA, "B", "b1");
	assert_body_at(s, snap, "F", SECTION_DATA, "C", NULL);
	/* a file made after it does not exist at it */
	{
		struct buf b;

		buf_init(&b);
		assert_int_equal(store_get(s, snap, "ACC", "G", SECTION_DATA, (const uint8_t *)"X",
					   1, &b, &err), US_ENOTFOUND);
		assert_non_null(strstr(err.msg, "does not exist"));
		assert_int_equal(store_get(s, empty, "ACC", "F", SECTION_DATA, (const uint8_t *)"A",
					   1, &b, &err), US_ENOTFOUND);
		buf_release(&b);
	}
	assert_int_equal(store_iter_new(s, snap, "ACC", "G", SECTION_DATA, NULL, 0, &it, &err),
			 US_ENOTFOUND);

	/* a scan at it sees A=a1, B=b1 and nothing else */
	assert_int_equal(store_iter_new(s, snap, "ACC", "F", SECTION_DATA, NULL, 0, &it, &err), 0);
	assert_int_equal(store_iter_next(it, &id, &id_len, &body, &body_len, &err), 1);
	assert_memory_equal(id, "A", 1);
	assert_memory_equal(body, "a1", 2);
	assert_int_equal(store_iter_next(it, &id, &id_len, &body, &body_len, &err), 1);
	assert_memory_equal(id, "B", 1);
	assert_int_equal(store_iter_next(it, &id, &id_len, &body, &body_len, &err), 0);
	store_iter_free(it);

	/* the file list at it: F only, with its counts then */
	assert_int_equal(store_list_files(s, snap, NULL, &fi, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(fi[0].file, "F");
	assert_int_equal(fi[0].data_items, 2);
	free(fi);
	assert_int_equal(store_list_files(s, NULL, NULL, &fi, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(fi[0].data_items, 2); /* A and C */
	free(fi);
	assert_int_equal(store_list_files(s, empty, NULL, &fi, &n, &err), 0);
	assert_int_equal(n, 0);
	free(fi);

	store_snap_free(snap);
	store_snap_free(empty);
	store_snap_free(NULL);
	store_close(s);
}

/* The image of a store as a save holds it: one line an entry. */
static void image_text(struct store *s, const struct store_image_opts *o, char *out, size_t size)
{
	struct store_image_iter *it;
	struct store_position pos;
	struct us_err err;
	struct entry e;
	size_t len = 0;
	int rc;

	out[0] = '\0';
	assert_int_equal(store_image_iter_new(s, NULL, o, &it, &pos, &err), 0);
	while ((rc = store_image_iter_next(it, &e, &err)) == 1) {
		assert_true(e.is_commit_end);
		len += (size_t)snprintf(out + len, size - len, "%s %.*s/%.*s%s%.*s%s%s;",
					entry_op_name(e.op), (int)e.account_len, e.account,
					(int)e.file_len, e.file_len ? e.file : "",
					e.op == ENTRY_WRITE ? (e.section ? " dict " : " ") : "",
					(int)e.id_len, e.id ? (const char *)e.id : "",
					e.op != ENTRY_WRITE && e.flag ? " on" : "",
					e.op != ENTRY_WRITE && !e.flag ? " off" : "");
		assert_true(len < size);
	}
	assert_int_equal(rc, 0);
	store_image_iter_free(it);
}

static void test_image_scope(void **state)
{
	struct store *s = open_store(*state, 0);
	struct entry mk[5] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL),
			      op(ENTRY_CREATE_FILE, "ACC", "FX", NULL, NULL),
			      op(ENTRY_CREATE_FILE, "ACC2", "H", NULL, NULL),
			      op(ENTRY_CREATE_FILE, "OFF", "G", NULL, NULL),
			      op(ENTRY_SET_LOGGING, "OFF", "", NULL, NULL)};
	struct entry w[6] = {op(ENTRY_WRITE, "ACC", "F", "b", "2"),
			     op(ENTRY_WRITE, "ACC", "F", "a", "1"),
			     op(ENTRY_WRITE, "ACC", "F", "d", "dict"),
			     op(ENTRY_WRITE, "ACC", "FX", "x", "x"),
			     op(ENTRY_WRITE, "ACC2", "H", "h", "h"),
			     op(ENTRY_WRITE, "OFF", "G", "g", "g")};
	struct store_image_opts o = {0};
	char text[1024];

	mk[1].flag = false;
	mk[4].flag = false;
	w[2].section = SECTION_DICT;
	assert_int_equal(commit1(s, mk, 5, NULL, NULL), 0);
	assert_int_equal(commit1(s, w, 6, NULL, NULL), 0);

	image_text(s, &o, text, sizeof(text));
	assert_string_equal(text, "set-logging OFF/ off;"
				  "create-file ACC/F on;create-file ACC/FX off;"
				  "create-file ACC2/H on;create-file OFF/G on;"
				  "write ACC/F a;write ACC/F b;write ACC/F dict d;write ACC/FX x;"
				  "write ACC2/H h;write OFF/G g;");
	o.account = "ACC";
	image_text(s, &o, text, sizeof(text));
	assert_string_equal(text, "create-file ACC/F on;create-file ACC/FX off;"
				  "write ACC/F a;write ACC/F b;write ACC/F dict d;write ACC/FX x;");
	o.file = "F";
	image_text(s, &o, text, sizeof(text));
	assert_string_equal(text, "create-file ACC/F on;write ACC/F a;write ACC/F b;"
				  "write ACC/F dict d;");
	o.account = "OFF";
	o.file = NULL;
	image_text(s, &o, text, sizeof(text));
	assert_string_equal(text, "set-logging OFF/ off;create-file OFF/G on;write OFF/G g;");
	o.account = "NONE";
	image_text(s, &o, text, sizeof(text));
	assert_string_equal(text, "");
	/* a full copy: what ships, created logged */
	o = (struct store_image_opts){.is_shipped_only = true};
	image_text(s, &o, text, sizeof(text));
	assert_string_equal(text, "create-file ACC/F on;create-file ACC2/H on;"
				  "write ACC/F a;write ACC/F b;write ACC/F dict d;write ACC2/H h;");
	store_close(s);
}

/* Every entry of a store's image, bodies included, one after the other in
 * out (a buf): what two stores must share to be equal. */
static void image_bytes(struct store *s, struct buf *out)
{
	struct store_image_iter *it;
	struct store_position pos;
	struct us_err err;
	struct entry e;
	int rc;

	out->len = 0;
	assert_int_equal(store_image_iter_new(s, NULL, NULL, &it, &pos, &err), 0);
	while ((rc = store_image_iter_next(it, &e, &err)) == 1) {
		uint8_t head[4] = {e.op, e.section, e.flag, e.is_reset};
		uint8_t lens[8];

		assert_int_equal(buf_append(out, head, sizeof(head)), 0);
		buf_put_u64le(lens, e.account_len);
		assert_int_equal(buf_append(out, lens, 8), 0);
		assert_int_equal(buf_append(out, e.account, e.account_len), 0);
		buf_put_u64le(lens, e.file_len);
		assert_int_equal(buf_append(out, lens, 8), 0);
		assert_int_equal(buf_append(out, e.file, e.file_len), 0);
		buf_put_u64le(lens, e.id_len);
		assert_int_equal(buf_append(out, lens, 8), 0);
		assert_int_equal(buf_append(out, e.id, e.id_len), 0);
		buf_put_u64le(lens, e.body_len);
		assert_int_equal(buf_append(out, lens, 8), 0);
		assert_int_equal(buf_append(out, e.body, e.body_len), 0);
	}
	assert_int_equal(rc, 0);
	store_image_iter_free(it);
}

/* A restore: a save's kind of image (an unlogged file, an account off, DICT
 * items, empty bodies, every byte value) loaded into a fresh store, then put
 * at the source's position, is the source: the same files, flags (none
 * stale) and items; its journal is empty and sound; the next commit gets the
 * next seq and the same history chain as on the source. */
static void test_restore_image(void **state)
{
	char dir2[512];
	uint8_t every[256];
	struct store *s = open_store(*state, 0);
	struct entry mk[5] = {op(ENTRY_CREATE_FILE, "ACC", "F", NULL, NULL),
			      op(ENTRY_CREATE_FILE, "ACC", "U", NULL, NULL),
			      op(ENTRY_CREATE_FILE, "OFF", "G", NULL, NULL),
			      op(ENTRY_CREATE_FILE, "OFF", "GU", NULL, NULL),
			      op(ENTRY_SET_LOGGING, "OFF", "", NULL, NULL)};
	struct entry w[7] = {op(ENTRY_WRITE, "ACC", "F", "a", "1"),
			     op(ENTRY_WRITE, "ACC", "F", "empty", ""),
			     op(ENTRY_WRITE, "ACC", "F", "every", NULL),
			     op(ENTRY_WRITE, "ACC", "F", "d", "dict"),
			     op(ENTRY_WRITE, "ACC", "F", "de", ""),
			     op(ENTRY_WRITE, "ACC", "U", "secret", "x"),
			     op(ENTRY_WRITE, "OFF", "G", "g", "\xfe\xff")};
	struct entry next[1] = {op(ENTRY_WRITE, "ACC", "F", "after", "restore")};
	struct store_file_info *fa, *fb;
	struct store_image_iter *it;
	struct store_position pos, pos2, after_s, after_t;
	struct store_check chk;
	struct buf ia, ib;
	struct entry e;
	struct store *t;
	struct us_err err;
	size_t na, nb, n = 0;
	uint64_t first, last;
	int rc;

	for (int i = 0; i < 256; i++)
		every[i] = (uint8_t)i;
	w[2].body = every;
	w[2].body_len = sizeof(every);
	w[3].section = w[4].section = SECTION_DICT;
	mk[1].flag = mk[3].flag = mk[4].flag = false;
	assert_int_equal(commit1(s, mk, 5, NULL, NULL), 0);
	assert_int_equal(commit1(s, w, 7, NULL, NULL), 0);

	snprintf(dir2, sizeof(dir2), "%s/restored", (char *)*state);
	t = open_replica(dir2);
	assert_string_not_equal(store_node_id(t), store_node_id(s)); /* a new node */
	/* what an image never holds is refused, and changes nothing */
	{
		struct entry bad[4] = {op(ENTRY_CREATE_FILE, "ACC", "R", NULL, NULL),
				       op(ENTRY_SET_LOGGING, "ACC", "F", NULL, NULL),
				       op(ENTRY_SET_LOGGING, "ON", "", NULL, NULL),
				       op(ENTRY_DELETE, "ACC", "F", "a", NULL)};
		struct entry late[2] = {op(ENTRY_CREATE_FILE, "ACC", "Z", NULL, NULL),
					op(ENTRY_WRITE, "ACC", "NOFILE", "a", "1")};
		struct store_file_info *fi;
		size_t nf;

		bad[0].is_reset = true;
		bad[1].flag = false;
		for (int i = 0; i < 4; i++)
			assert_int_equal(store_load_entries(t, &bad[i], 1, &err), US_EINVAL);
		assert_int_equal(store_load_entries(t, late, 2, &err), US_ENOTFOUND);
		assert_int_equal(store_list_files(t, NULL, NULL, &fi, &nf, &err), 0);
		assert_int_equal(nf, 0); /* Z of the refused call was not kept */
		free(fi);
	}
	/* in batches, as restore loads them (entries borrow from the iterator:
	 * load each batch before the next call, here one entry at a time in
	 * the declarations, then two at a time through a copy) */
	assert_int_equal(store_image_iter_new(s, NULL, NULL, &it, &pos, &err), 0);
	{
		struct entry pend;
		struct buf id, body;
		char account[65], file[65];
		bool is_pending = false;

		buf_init(&id);
		buf_init(&body);
		while ((rc = store_image_iter_next(it, &e, &err)) == 1) {
			n++;
			if (e.op != ENTRY_WRITE) {
				assert_int_equal(store_load_entries(t, &e, 1, &err), 0);
				continue;
			}
			if (!is_pending) {
				/* keep a copy: every byte e points to goes at
				 * the next call */
				pend = e;
				id.len = body.len = 0;
				assert_int_equal(buf_append(&id, e.id, e.id_len), 0);
				assert_int_equal(buf_append(&body, e.body, e.body_len), 0);
				memcpy(account, e.account, e.account_len);
				memcpy(file, e.file, e.file_len);
				pend.account = account;
				pend.file = file;
				pend.id = id.p;
				pend.body = body.len ? body.p : NULL;
				is_pending = true;
				continue;
			}
			{
				struct entry two[2] = {pend, e};

				assert_int_equal(store_load_entries(t, two, 2, &err), 0);
			}
			is_pending = false;
		}
		assert_int_equal(rc, 0);
		if (is_pending)
			assert_int_equal(store_load_entries(t, &pend, 1, &err), 0);
		buf_release(&id);
		buf_release(&body);
	}
	store_image_iter_free(it);
	assert_int_equal(n, 12); /* 1 account, 4 files, 7 items */
	assert_int_equal(store_set_position(t, &pos, &err), 0);
	store_close(t);
	t = open_store(dir2, 0);
	store_get_position(t, &pos2);
	assert_memory_equal(&pos2, &pos, sizeof(pos));

	/* the same image, bodies and flags included */
	buf_init(&ia);
	buf_init(&ib);
	image_bytes(s, &ia);
	image_bytes(t, &ib);
	assert_true(ia.len > 256);
	assert_int_equal(ia.len, ib.len);
	assert_memory_equal(ia.p, ib.p, ia.len);
	buf_release(&ia);
	buf_release(&ib);
	assert_body(t, "F", SECTION_DATA, "empty", "");
	assert_body(t, "F", SECTION_DICT, "de", "");
	assert_body(t, "U", SECTION_DATA, "secret", "x");
	/* the same files, flags and counts; none stale */
	assert_int_equal(store_list_files(s, NULL, NULL, &fa, &na, &err), 0);
	assert_int_equal(store_list_files(t, NULL, NULL, &fb, &nb, &err), 0);
	assert_int_equal(na, 4);
	assert_int_equal(nb, na);
	for (size_t i = 0; i < na; i++) {
		assert_string_equal(fb[i].account, fa[i].account);
		assert_string_equal(fb[i].file, fa[i].file);
		assert_int_equal(fb[i].is_logged, fa[i].is_logged);
		assert_int_equal(fb[i].is_account_logged, fa[i].is_account_logged);
		assert_int_equal(fb[i].data_items, fa[i].data_items);
		assert_int_equal(fb[i].dict_items, fa[i].dict_items);
		assert_int_equal(fb[i].stale_since_seq, 0);
	}
	assert_false(fb[1].is_logged);   /* ACC/U */
	assert_false(fb[2].is_account_logged); /* OFF/G */
	free(fa);
	free(fb);

	/* an empty journal at position S is sound: no gap, no bad record, no
	 * chain mismatch (understudy-inspect calls it healthy) */
	assert_int_equal(store_check(t, &chk, &err), 0);
	assert_int_equal(chk.entries, 0);
	assert_int_equal(chk.first_seq, 0);
	assert_int_equal(chk.gaps + chk.bad_records + chk.chain_mismatches, 0);
	assert_int_equal(chk.position_seq, pos.seq);
	assert_int_equal(chk.items, 7);
	assert_int_equal(chk.files, 4);
	assert_int_equal(store_journal_first(t, &first, &err), 0);
	assert_int_equal(first, 0);

	/* the sequence goes on: the same commit on both gets seq S + 1 and
	 * leaves both at the same history chain */
	assert_int_equal(commit1(s, next, 1, &first, &last), 0);
	assert_int_equal(first, pos.seq + 1);
	assert_int_equal(commit1(t, next, 1, &first, &last), 0);
	assert_int_equal(first, pos.seq + 1);
	assert_int_equal(last, pos.seq + 1);
	store_get_position(s, &after_s);
	store_get_position(t, &after_t);
	assert_memory_equal(&after_t, &after_s, sizeof(after_s));
	assert_int_equal(store_check(t, &chk, &err), 0);
	assert_int_equal(chk.first_seq, pos.seq + 1);
	assert_int_equal(chk.last_seq, pos.seq + 1);
	assert_int_equal(chk.gaps + chk.bad_records + chk.chain_mismatches, 0);
	store_close(t);
	store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fresh_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_refusal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logging_and_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clear_delete_and_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_and_foreign_db, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roles, setup, teardown),
		cmocka_unit_test_setup_teardown(test_promote, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rewind, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replica_apply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seed_copy_and_trim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logging_on_after_write_in_group, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_bad_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_history_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reship_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_image_scope, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_image, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
