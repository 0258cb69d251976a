/*
 * store_role.c - a store's role and its changes (store.h, lib/role.h): the
 * role in memory (store_set_role, asserted), and the changes written with
 * what goes with them, each in one synced batch under role_lock: promote,
 * fence, rewind (a fenced node takes its primary's state), caught up,
 * hand over (switchover), and the commit hold. store.c has the commit and
 * apply paths these call into (store_int.h).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "role.h"
#include "store_int.h"

/* Puts where the primary is (KEY_PRIMARY: u64le generation, u64le first
 * seq, the address) into b: 0, or US_ENOMEM. */
static int put_primary(rocksdb_writebatch_t *b, const struct store_primary_info *p)
{
	struct buf v;
	int rc;

	buf_init(&v);
	rc = buf_append_u64le(&v, p->generation) || buf_append_u64le(&v, p->first_seq) ||
	     buf_append(&v, p->addr, strnlen(p->addr, sizeof(p->addr)));
	if (rc == 0)
		rocksdb_writebatch_put(b, KEY_PRIMARY, strlen(KEY_PRIMARY), (char *)v.p, v.len);
	buf_release(&v);
	return rc ? US_ENOMEM : 0;
}

void store_set_role(struct store *s, enum ns_role to)
{
	assert(role_may_become(store_role(s), to));
	atomic_store(&s->role, (int)to);
}

static int promote_locked(struct store *s, struct store_position *out, struct us_err *err);

int store_promote(struct store *s, struct store_position *out, struct us_err *err)
{
	int rc;

	pthread_mutex_lock(&s->role_lock);
	rc = promote_locked(s, out, err);
	pthread_mutex_unlock(&s->role_lock);
	return rc;
}

static int promote_locked(struct store *s, struct store_position *out, struct us_err *err)
{
	uint8_t posv[POS_BYTES], first[8], role = ROLE_PRIMARY;
	uint8_t genkey[KEY_GEN_BYTES];
	struct store_position pos;
	rocksdb_writebatch_t *b;
	char *errptr = NULL;
	int rc;

	if (store_role(s) != ROLE_STANDBY)
		return err_set(err, US_EPRECOND, "cannot promote: only a standby is, this node is %s",
			       role_name(store_role(s)));
	if ((rc = store__check_writable(s, err)) || (rc = store__check_disk(s, true, err)))
		return rc;
	store_get_position(s, &pos);
	if (pos.generation >= US_SEQ_MAX)
		return err_set(err, US_ERANGE, "generation %llu is the last one",
			       (unsigned long long)pos.generation);
	pos.generation++;
	store__encode_pos(posv, &pos);
	store__key_gen(genkey, pos.generation);
	buf_put_u64le(first, pos.seq + 1);
	/* the new generation, its place in the history and the role, at once
	 * and durably, before any commit of it is taken */
	b = rocksdb_writebatch_create();
	rocksdb_writebatch_put(b, KEY_POS, strlen(KEY_POS), (char *)posv, sizeof(posv));
	rocksdb_writebatch_put(b, (char *)genkey, sizeof(genkey), (char *)first, sizeof(first));
	rocksdb_writebatch_put(b, KEY_ROLE, strlen(KEY_ROLE), (char *)&role, 1);
	rocksdb_writebatch_delete(b, KEY_PRIMARY, strlen(KEY_PRIMARY)); /* it follows none now */
	rocksdb_write(s->db, s->write_opts, b, &errptr);
	rocksdb_writebatch_destroy(b);
	if ((rc = store__take_write_err(s, &errptr, err, "cannot promote the store")))
		return rc;
	pthread_mutex_lock(&s->pos_lock);
	s->pos.generation = pos.generation;
	memset(&s->primary, 0, sizeof(s->primary));
	pthread_mutex_unlock(&s->pos_lock);
	store_set_role(s, ROLE_PRIMARY);
	if (out)
		*out = pos;
	return 0;
}

static int fence_locked(struct store *s, const struct store_primary_info *p, struct us_err *err);

int store_fence(struct store *s, const struct store_primary_info *primary, struct us_err *err)
{
	int rc;

	pthread_mutex_lock(&s->role_lock);
	rc = fence_locked(s, primary, err);
	pthread_mutex_unlock(&s->role_lock);
	return rc;
}

static int fence_locked(struct store *s, const struct store_primary_info *p, struct us_err *err)
{
	uint8_t role = ROLE_FENCED;
	size_t plen = strnlen(p->addr, sizeof(p->addr));
	rocksdb_writebatch_t *b;
	char *errptr = NULL;
	int rc;

	if (store_role(s) == ROLE_FENCED)
		return 0;
	if (store_role(s) != ROLE_PRIMARY)
		return err_set(err, US_EPRECOND, "cannot fence: only a primary is, this node is %s",
			       role_name(store_role(s)));
	if (plen == 0 || plen >= sizeof(p->addr))
		return err_set(err, US_EINVAL, "cannot fence: bad primary address of %zu bytes",
			       plen);
	if ((rc = store__check_writable(s, err)))
		return rc;
	b = rocksdb_writebatch_create();
	rocksdb_writebatch_put(b, KEY_ROLE, strlen(KEY_ROLE), (char *)&role, 1);
	if (put_primary(b, p)) {
		rocksdb_writebatch_destroy(b);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	rocksdb_write(s->db, s->write_opts, b, &errptr);
	rocksdb_writebatch_destroy(b);
	if ((rc = store__take_write_err(s, &errptr, err, "cannot fence the store")))
		return rc;
	pthread_mutex_lock(&s->pos_lock);
	s->primary = *p;
	pthread_mutex_unlock(&s->pos_lock);
	store_set_role(s, ROLE_FENCED);
	return 0;
}

static int rewind_locked(struct store *s, const struct store_rewind *rw, struct us_err *err);

int store_rewind(struct store *s, const struct store_rewind *rw, struct us_err *err)
{
	int rc;

	store__perf_off();
	pthread_mutex_lock(&s->role_lock);
	rc = rewind_locked(s, rw, err);
	pthread_mutex_unlock(&s->role_lock);
	return rc;
}

/* Deletes every key of tag (one byte) in b. */
static void delete_tag(rocksdb_writebatch_t *b, char tag)
{
	char lo[1] = {tag}, hi[1] = {(char)(tag + 1)};

	rocksdb_writebatch_delete_range(b, lo, 1, hi, 1);
}

static int rewind_locked(struct store *s, const struct store_rewind *rw, struct us_err *err)
{
	uint8_t posv[POS_BYTES], first[8], role = ROLE_REJOINING;
	uint8_t genkey[KEY_GEN_BYTES];
	struct store_position pos;
	rocksdb_writebatch_t *b;
	char *errptr = NULL;
	int rc = 0;

	if (store_role(s) != ROLE_FENCED)
		return err_set(err, US_EPRECOND, "cannot rewind: only a fenced node is, this node is %s",
			       role_name(store_role(s)));
	if ((rc = store__check_writable(s, err)) || (rc = store__check_disk(s, true, err)))
		return rc;
	store_get_position(s, &pos);
	if (rw->to.generation <= pos.generation || rw->first_seq == 0 ||
	    rw->first_seq > rw->to.seq + 1 || rw->to.seq > US_SEQ_MAX)
		return err_set(err, US_EINVAL,
			       "cannot rewind from generation %llu to generation %llu at seq %llu "
			       "(from seq %llu)",
			       (unsigned long long)pos.generation,
			       (unsigned long long)rw->to.generation, (unsigned long long)rw->to.seq,
			       (unsigned long long)rw->first_seq);
	if (store__catalog_copy(&s->cat_saved, &s->cat))
		return err_set(err, US_ENOMEM, "out of memory");
	b = rocksdb_writebatch_create();
	/* the journal goes: it holds this node's own tail, which the export
	 * kept; the primary's history continues from to.seq + 1 */
	delete_tag(b, 'J');
	delete_tag(b, 'H');
	for (size_t i = 0; i < rw->n_image && rc == 0; i++) {
		bool is_journaled;

		rc = store__apply_op(s, b, &rw->image[i], ROLE_STANDBY, rw->to.seq, &is_journaled, err);
		if (rc) {
			if (rc == US_ENOMEM)
				err_set(err, rc, "out of memory");
			err_wrap(err, "rewind entry %zu (%s)", i + 1, entry_op_name(rw->image[i].op));
		}
	}
	if (rc) {
		rocksdb_writebatch_destroy(b);
		store__catalog_copy(&s->cat, &s->cat_saved);
		return rc;
	}
	store__encode_pos(posv, &rw->to);
	store__key_gen(genkey, rw->to.generation);
	buf_put_u64le(first, rw->first_seq);
	rocksdb_writebatch_put(b, KEY_POS, strlen(KEY_POS), (char *)posv, sizeof(posv));
	rocksdb_writebatch_put(b, (char *)genkey, sizeof(genkey), (char *)first, sizeof(first));
	rocksdb_writebatch_put(b, KEY_ROLE, strlen(KEY_ROLE), (char *)&role, 1);
	{
		const char *path = rw->export_path ? rw->export_path : "";
		struct store_primary_info p;
		struct buf v;

		store_primary(s, &p);
		p.generation = rw->to.generation;
		p.first_seq = rw->first_seq;
		buf_init(&v);
		rc = buf_append_u64le(&v, rw->exported) || buf_append(&v, path, strlen(path));
		if (rc == 0)
			rocksdb_writebatch_put(b, KEY_EXPORT, strlen(KEY_EXPORT), (char *)v.p, v.len);
		buf_release(&v);
		if (rc || put_primary(b, &p)) {
			rocksdb_writebatch_destroy(b);
			store__catalog_copy(&s->cat, &s->cat_saved);
			return err_set(err, US_ENOMEM, "out of memory");
		}
	}
	rocksdb_write(s->db, s->write_opts, b, &errptr);
	rocksdb_writebatch_destroy(b);
	if ((rc = store__take_write_err(s, &errptr, err, "cannot rewind the store"))) {
		struct us_err lerr;

		if (store__catalog_load(s, &lerr))
			err_wrap(err, "and reloading the catalog failed too (%s)", lerr.msg);
		return rc;
	}
	pthread_mutex_lock(&s->pos_lock);
	s->pos = rw->to;
	s->primary.generation = rw->to.generation;
	s->primary.first_seq = rw->first_seq;
	pthread_mutex_unlock(&s->pos_lock);
	store_set_role(s, ROLE_REJOINING);
	return 0;
}

int store_rewound_export(struct store *s, char *path, size_t size, uint64_t *exported,
			 struct us_err *err)
{
	char *errptr = NULL, *v;
	size_t len = 0;
	int rc;

	path[0] = '\0';
	*exported = 0;
	v = rocksdb_get(s->db, s->read_opts, KEY_EXPORT, strlen(KEY_EXPORT), &len, &errptr);
	if ((rc = store__take_rocks_err(&errptr, err, "cannot read the export record")))
		return rc;
	if (v && len >= 8) {
		*exported = buf_get_u64le((const uint8_t *)v);
		snprintf(path, size, "%.*s", (int)(len - 8), v + 8);
	}
	rocksdb_free(v);
	return 0;
}

static int caught_up_locked(struct store *s, struct us_err *err)
{
	uint8_t role = ROLE_STANDBY;
	char *errptr = NULL;
	int rc;

	if (store_role(s) == ROLE_STANDBY)
		return 0;
	if (store_role(s) != ROLE_REJOINING)
		return err_set(err, US_EPRECOND, "only a rejoining node catches up, this node is %s",
			       role_name(store_role(s)));
	if ((rc = store__check_writable(s, err)))
		return rc;
	rocksdb_put(s->db, s->write_opts, KEY_ROLE, strlen(KEY_ROLE), (char *)&role, 1, &errptr);
	if ((rc = store__take_write_err(s, &errptr, err, "cannot write the store's role")))
		return rc;
	store_set_role(s, ROLE_STANDBY);
	return 0;
}

int store_caught_up(struct store *s, struct us_err *err)
{
	int rc;

	pthread_mutex_lock(&s->role_lock);
	rc = caught_up_locked(s, err);
	pthread_mutex_unlock(&s->role_lock);
	return rc;
}

void store_primary(struct store *s, struct store_primary_info *out)
{
	pthread_mutex_lock(&s->pos_lock);
	*out = s->primary;
	pthread_mutex_unlock(&s->pos_lock);
}

void store_hold_commits(struct store *s, const char *why)
{
	pthread_mutex_lock(&s->pos_lock);
	snprintf(s->hold, sizeof(s->hold), "%s", why && why[0] ? why : "commits are held");
	pthread_mutex_unlock(&s->pos_lock);
}

void store_release_commits(struct store *s)
{
	pthread_mutex_lock(&s->pos_lock);
	s->hold[0] = '\0';
	pthread_mutex_unlock(&s->pos_lock);
}

static int hand_over_locked(struct store *s, const struct store_primary_info *to,
			    struct us_err *err)
{
	uint8_t posv[POS_BYTES], first[8], role = ROLE_STANDBY;
	uint8_t genkey[KEY_GEN_BYTES];
	struct store_position pos;
	rocksdb_writebatch_t *b;
	char *errptr = NULL;
	int rc;

	if (store_role(s) != ROLE_PRIMARY)
		return err_set(err, US_EPRECOND, "cannot hand over: only a primary does, this node is %s",
			       role_name(store_role(s)));
	store_get_position(s, &pos);
	if (to->generation != pos.generation + 1 || to->first_seq != pos.seq + 1 || !to->addr[0])
		return err_set(err, US_EINVAL,
			       "cannot hand over generation %llu from seq %llu to %s: this node is at "
			       "generation %llu, seq %llu",
			       (unsigned long long)to->generation, (unsigned long long)to->first_seq,
			       to->addr, (unsigned long long)pos.generation,
			       (unsigned long long)pos.seq);
	if ((rc = store__check_writable(s, err)) || (rc = store__check_disk(s, true, err)))
		return rc;
	pos.generation = to->generation;
	store__encode_pos(posv, &pos);
	store__key_gen(genkey, pos.generation);
	buf_put_u64le(first, to->first_seq);
	/* the new generation is the site's, from first_seq: this node follows
	 * it as its standby from here on, durably, before the site is told */
	b = rocksdb_writebatch_create();
	rocksdb_writebatch_put(b, KEY_POS, strlen(KEY_POS), (char *)posv, sizeof(posv));
	rocksdb_writebatch_put(b, (char *)genkey, sizeof(genkey), (char *)first, sizeof(first));
	rocksdb_writebatch_put(b, KEY_ROLE, strlen(KEY_ROLE), (char *)&role, 1);
	if (put_primary(b, to)) {
		rocksdb_writebatch_destroy(b);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	rocksdb_write(s->db, s->write_opts, b, &errptr);
	rocksdb_writebatch_destroy(b);
	if ((rc = store__take_write_err(s, &errptr, err, "cannot hand the store over")))
		return rc;
	pthread_mutex_lock(&s->pos_lock);
	s->pos.generation = pos.generation;
	s->primary = *to;
	s->hold[0] = '\0';
	pthread_mutex_unlock(&s->pos_lock);
	store_set_role(s, ROLE_STANDBY);
	return 0;
}

int store_hand_over(struct store *s, const struct store_primary_info *to, struct us_err *err)
{
	int rc;

	pthread_mutex_lock(&s->role_lock);
	rc = hand_over_locked(s, to, err);
	pthread_mutex_unlock(&s->role_lock);
	return rc;
}


static int follow_locked(struct store *s, const char *node_id,
			 const struct store_primary_info *primary, struct us_err *err)
{
	uint8_t role = ROLE_REJOINING, first[8], genkey[KEY_GEN_BYTES];
	struct store_position pos;
	rocksdb_writebatch_t *b;
	char *errptr = NULL;
	int rc;

	store_get_position(s, &pos);
	if (strlen(node_id) != 32 || strspn(node_id, "0123456789abcdef") != 32)
		return err_set(err, US_EINVAL, "cannot follow: bad node id '%s'", node_id);
	if (!primary->addr[0] || primary->generation != pos.generation || primary->first_seq == 0 ||
	    primary->first_seq > pos.seq + 1)
		return err_set(err, US_EINVAL,
			       "cannot follow %s at generation %llu from seq %llu: this store is at "
			       "generation %llu, seq %llu",
			       primary->addr, (unsigned long long)primary->generation,
			       (unsigned long long)primary->first_seq,
			       (unsigned long long)pos.generation, (unsigned long long)pos.seq);
	if ((rc = store__check_writable(s, err)))
		return rc;
	store__key_gen(genkey, pos.generation);
	buf_put_u64le(first, primary->first_seq);
	b = rocksdb_writebatch_create();
	rocksdb_writebatch_put(b, KEY_NODE, strlen(KEY_NODE), node_id, 32);
	rocksdb_writebatch_put(b, (char *)genkey, sizeof(genkey), (char *)first, sizeof(first));
	rocksdb_writebatch_put(b, KEY_ROLE, strlen(KEY_ROLE), (char *)&role, 1);
	if (put_primary(b, primary)) {
		rocksdb_writebatch_destroy(b);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	rocksdb_write(s->db, s->write_opts, b, &errptr);
	rocksdb_writebatch_destroy(b);
	if ((rc = store__take_write_err(s, &errptr, err, "cannot make the store a follower")))
		return rc;
	pthread_mutex_lock(&s->pos_lock);
	memcpy(s->node_id, node_id, 32);
	s->node_id[32] = '\0';
	s->primary = *primary;
	pthread_mutex_unlock(&s->pos_lock);
	atomic_store(&s->role, (int)ROLE_REJOINING); /* a new store's: no transition yet */
	return 0;
}

int store_follow(struct store *s, const char *node_id, const struct store_primary_info *primary,
		 struct us_err *err)
{
	int rc;

	pthread_mutex_lock(&s->role_lock);
	rc = follow_locked(s, node_id, primary, err);
	pthread_mutex_unlock(&s->role_lock);
	return rc;
}
