/*
 * save.c - see save.h and docs/save-format.md for the byte tables.
 *
 * Writer and reader share one check of the image's order and content
 * (struct image, image_check): the writer refuses with US_EINVAL what the
 * reader would refuse with US_ECORRUPT, so that nothing unreadable is ever
 * written. The writer hashes every byte it gives the sink; the reader hashes
 * every byte it consumes, so that the trailer's XXH64 covers the whole save
 * without the reader holding more than one frame.
 *
 * The reader never trusts a length: a string's is bounded by its name's
 * limit, the header's by US_SAVE_HEADER_MAX_BYTES, a frame's raw_len by
 * US_SAVE_FRAME_MAX_RAW_BYTES and its comp_len by LZ4_compressBound(raw_len),
 * all before anything is allocated from them; the compressed bytes are read
 * into a buffer grown as they arrive, so a truncated save with a large
 * claimed frame costs only the bytes present.
 */
#include "save.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <xxhash.h>

#include "names.h"

#define HEADER_FIXED_BYTES 10  /* magic, version, kind, header_len */
#define HEADER_LEN_OFFSET 6
#define CHECKSUM32_BYTES 4
#define TRAILER_FIXED_BYTES 25 /* tag, entries, frames, files */
#define BLOCK_MIN_RAW_BYTES (ENTRY_BLOCK_HEADER_BYTES + 3 + CHECKSUM32_BYTES)
#define READ_BUF_BYTES (64u * 1024u)
/* Compressed bytes are read in steps of at most this. */
#define READ_STEP_BYTES (1024u * 1024u)

/* ---- the image: declarations, counts, and the order check ---- */

/* A declared file, or an account whose logging is off (file_len 0). */
struct image_name {
	uint64_t data_items;
	uint64_t dict_items;
	uint8_t account_len;
	uint8_t file_len;
	char account[US_ACCOUNT_MAX_LEN];
	char file[US_FILE_MAX_LEN];
};

struct image {
	uint64_t time_ms;              /* every entry carries the header's */
	const char *scope_account;     /* the header's, NUL-terminated */
	const char *scope_file;
	struct image_name *names;      /* in declaration order */
	size_t n_names;
	size_t cap_names;
	uint32_t *slots;               /* open addressing: index + 1, 0 empty */
	size_t n_slots;                /* a power of two, at least 2 x n_names */
	size_t last;                   /* the name of the last write (a hint) */
	bool is_writing;               /* a WRITE seen: declarations are over */
	bool is_export;                /* kind 3: journaled entries, export_check's rules */
	bool is_in_commit;             /* export: an entry without END was the last */
	uint64_t entries;
	uint64_t items;
	uint64_t files;
};

static void image_init(struct image *im, const struct save_header *h)
{
	memset(im, 0, sizeof(*im));
	im->time_ms = h->time_ms;
	im->scope_account = h->scope_account;
	im->scope_file = h->scope_file;
	im->last = SIZE_MAX;
	im->is_export = h->kind == SAVE_KIND_EXPORT;
}

static void image_release(struct image *im)
{
	free(im->names);
	free(im->slots);
	memset(im, 0, sizeof(*im));
}

static uint64_t name_hash(const char *a, size_t alen, const char *f, size_t flen)
{
	uint8_t key[2 + US_ACCOUNT_MAX_LEN + US_FILE_MAX_LEN];

	key[0] = (uint8_t)alen;
	memcpy(key + 1, a, alen);
	key[1 + alen] = (uint8_t)flen;
	memcpy(key + 2 + alen, f, flen);
	return XXH64(key, 2 + alen + flen, 0);
}

static bool name_is(const struct image_name *n, const char *a, size_t alen, const char *f,
		    size_t flen)
{
	return n->account_len == alen && n->file_len == flen && memcmp(n->account, a, alen) == 0 &&
	       memcmp(n->file, f, flen) == 0;
}

/* The index of a declared name, or SIZE_MAX. */
static size_t image_find(const struct image *im, const char *a, size_t alen, const char *f,
			 size_t flen)
{
	size_t mask = im->n_slots - 1, i;

	if (im->n_slots == 0)
		return SIZE_MAX;
	for (i = (size_t)name_hash(a, alen, f, flen) & mask; im->slots[i]; i = (i + 1) & mask) {
		size_t at = im->slots[i] - 1;

		if (name_is(&im->names[at], a, alen, f, flen))
			return at;
	}
	return SIZE_MAX;
}

static void slots_put(uint32_t *slots, size_t n_slots, const struct image_name *n, size_t at)
{
	size_t mask = n_slots - 1;
	size_t i = (size_t)name_hash(n->account, n->account_len, n->file, n->file_len) & mask;

	while (slots[i])
		i = (i + 1) & mask;
	slots[i] = (uint32_t)(at + 1);
}

/* Room for one more name, so that image_declare cannot fail. */
static int image_reserve(struct image *im, struct us_err *err)
{
	if (im->n_names >= UINT32_MAX - 1)
		return err_set(err, US_ETOOBIG, "save: over %u files and accounts", UINT32_MAX - 1);
	if (im->n_names == im->cap_names) {
		size_t cap = im->cap_names ? im->cap_names * 2 : 16;
		struct image_name *v = realloc(im->names, cap * sizeof(*v));

		if (!v)
			return err_set(err, US_ENOMEM, "save: out of memory for %zu files", cap);
		im->names = v;
		im->cap_names = cap;
	}
	if ((im->n_names + 1) * 2 > im->n_slots) {
		size_t n_slots = im->n_slots ? im->n_slots * 2 : 64;
		uint32_t *slots = calloc(n_slots, sizeof(*slots));

		if (!slots)
			return err_set(err, US_ENOMEM, "save: out of memory for %zu files", n_slots);
		for (size_t i = 0; i < im->n_names; i++)
			slots_put(slots, n_slots, &im->names[i], i);
		free(im->slots);
		im->slots = slots;
		im->n_slots = n_slots;
	}
	return 0;
}

static void image_declare(struct image *im, const struct entry *e)
{
	struct image_name *n = &im->names[im->n_names];

	memset(n, 0, sizeof(*n));
	n->account_len = (uint8_t)e->account_len;
	memcpy(n->account, e->account, e->account_len);
	n->file_len = (uint8_t)e->file_len;
	if (e->file_len)
		memcpy(n->file, e->file, e->file_len);
	slots_put(im->slots, im->n_slots, n, im->n_names);
	im->n_names++;
	if (e->op == ENTRY_CREATE_FILE)
		im->files++;
}

/* account/file of an entry, printable, for messages. */
static const char *show_names(const struct entry *e, char *out, size_t size)
{
	char a[US_ACCOUNT_MAX_LEN * 4 + 1], f[US_FILE_MAX_LEN * 4 + 1];

	names_escape((const uint8_t *)e->account, e->account_len, a, sizeof(a));
	names_escape((const uint8_t *)e->file, e->file_len, f, sizeof(f));
	snprintf(out, size, "%s/%s", a, f);
	return out;
}

/* A names.h check's refusal, as code (US_EINVAL or US_ECORRUPT). */
static int name_refused(struct us_err *err, int code, const char *what)
{
	err->code = code;
	return err_wrap(err, "%s", what);
}

static bool is_in_scope(const char *scope, const char *s, size_t len)
{
	return scope[0] == '\0' || (strlen(scope) == len && memcmp(scope, s, len) == 0);
}

/* An export's entry (kind 3): a site's own commits as it journaled them,
 * in order, each with its commit time and END: any data or file op, names
 * and sizes as a commit's. No declarations and no scope. */
static int export_check(const struct entry *e, int code, struct us_err *err)
{
	const char *op = entry_op_name(e->op);

	if (e->op != ENTRY_WRITE && e->op != ENTRY_DELETE && e->op != ENTRY_CREATE_FILE &&
	    e->op != ENTRY_CLEAR_FILE && e->op != ENTRY_DELETE_FILE && e->op != ENTRY_SET_LOGGING)
		return err_set(err, code, "a %s entry (op %u) has no place in an export", op, e->op);
	if (names_check_account(e->account, e->account_len, err))
		return name_refused(err, code, op);
	if ((e->op != ENTRY_SET_LOGGING || e->file_len != 0) &&
	    names_check_file(e->file, e->file_len, err))
		return name_refused(err, code, op);
	if ((e->op == ENTRY_WRITE || e->op == ENTRY_DELETE || e->op == ENTRY_CLEAR_FILE) &&
	    e->section != SECTION_DATA && e->section != SECTION_DICT)
		return err_set(err, code, "%s entry: bad section %u", op, e->section);
	if ((e->op == ENTRY_WRITE || e->op == ENTRY_DELETE) && names_check_id(e->id, e->id_len, err))
		return name_refused(err, code, op);
	if (e->op == ENTRY_WRITE && e->body_len > US_BODY_MAX_BYTES)
		return err_set(err, code, "%s entry: body of %zu bytes over the limit of %u", op,
			       e->body_len, US_BODY_MAX_BYTES);
	return 0;
}

/* Whether e may come next, as the writer would write it: 0, or code (the
 * writer's US_EINVAL, the reader's US_ECORRUPT) and a message without a
 * prefix. *at: the name a WRITE goes to, SIZE_MAX for a declaration. Changes
 * nothing. */
static int image_check(const struct image *im, const struct entry *e, int code, size_t *at,
		       struct us_err *err)
{
	char shown[US_ACCOUNT_MAX_LEN * 4 + US_FILE_MAX_LEN * 4 + 2];
	const char *op = entry_op_name(e->op);

	*at = SIZE_MAX;
	if (im->is_export)
		return export_check(e, code, err);
	if (e->op != ENTRY_WRITE && e->op != ENTRY_CREATE_FILE && e->op != ENTRY_SET_LOGGING)
		return err_set(err, code, "a %s entry (op %u) has no place in a save", op, e->op);
	if (e->account_len > US_ACCOUNT_MAX_LEN || e->file_len > US_FILE_MAX_LEN)
		return err_set(err, code, "%s entry: account or file name over %d bytes", op,
			       US_FILE_MAX_LEN);
	if (e->op == ENTRY_WRITE) {
		size_t i = im->last;

		if (i == SIZE_MAX || !name_is(&im->names[i], e->account, e->account_len, e->file,
					      e->file_len))
			i = image_find(im, e->account, e->account_len, e->file, e->file_len);
		if (i == SIZE_MAX || e->file_len == 0)
			return err_set(err, code, "write to %s, a file not declared before",
				       show_names(e, shown, sizeof(shown)));
		if (e->section != SECTION_DATA && e->section != SECTION_DICT)
			return err_set(err, code, "write to %s: bad section %u",
				       show_names(e, shown, sizeof(shown)), e->section);
		if (names_check_id(e->id, e->id_len, err))
			return name_refused(err, code, "write");
		if (e->body_len > US_BODY_MAX_BYTES)
			return err_set(err, code, "write to %s: body of %zu bytes over the limit of %u",
				       show_names(e, shown, sizeof(shown)), e->body_len,
				       US_BODY_MAX_BYTES);
		*at = i;
		return 0;
	}
	if (im->is_writing)
		return err_set(err, code, "%s entry for %s after the first write (declarations come first)",
			       op, show_names(e, shown, sizeof(shown)));
	if (names_check_account(e->account, e->account_len, err))
		return name_refused(err, code, op);
	if (!is_in_scope(im->scope_account, e->account, e->account_len))
		return err_set(err, code, "%s entry for %s out of the save's scope (account %s)", op,
			       show_names(e, shown, sizeof(shown)), im->scope_account);
	if (e->op == ENTRY_CREATE_FILE) {
		if (names_check_file(e->file, e->file_len, err))
			return name_refused(err, code, op);
		if (!is_in_scope(im->scope_file, e->file, e->file_len))
			return err_set(err, code, "%s entry for %s out of the save's scope (file %s)",
				       op, show_names(e, shown, sizeof(shown)), im->scope_file);
		if (e->is_reset)
			return err_set(err, code, "%s entry for %s is a reset (a stream's, not a save's)",
				       op, show_names(e, shown, sizeof(shown)));
		if (image_find(im, e->account, e->account_len, e->file, e->file_len) != SIZE_MAX)
			return err_set(err, code, "file %s declared twice",
				       show_names(e, shown, sizeof(shown)));
		return 0;
	}
	/* SET_LOGGING: an account's flag, only when off (on is the default) */
	if (e->file_len != 0)
		return err_set(err, code,
			       "%s entry for file %s (a file's flag is its create-file entry's)", op,
			       show_names(e, shown, sizeof(shown)));
	if (e->flag)
		return err_set(err, code,
			       "%s entry turns account %.*s on (only an account whose logging is off is declared)",
			       op, (int)e->account_len, e->account);
	if (image_find(im, e->account, e->account_len, "", 0) != SIZE_MAX)
		return err_set(err, code, "account %.*s declared twice", (int)e->account_len,
			       e->account);
	return 0;
}

/* Counts e, which image_check took (at: its answer); a declaration needs
 * image_reserve first. */
static void image_take(struct image *im, const struct entry *e, size_t at)
{
	if (im->is_export) {
		im->items += e->op == ENTRY_WRITE;
		im->is_in_commit = !e->is_commit_end;
	} else if (e->op == ENTRY_WRITE) {
		struct image_name *n = &im->names[at];

		if (e->section == SECTION_DATA)
			n->data_items++;
		else
			n->dict_items++;
		im->last = at;
		im->is_writing = true;
		im->items++;
	} else {
		image_declare(im, e);
	}
	im->entries++;
}

/* ---- header ---- */

static int check_str(const char *s, size_t max, bool may_be_empty,
		     int (*check)(const char *, size_t, struct us_err *), const char *what,
		     int code, struct us_err *err)
{
	size_t len = strnlen(s, max + 1);

	if (len > max)
		return err_set(err, code, "save header: %s over %zu bytes", what, max);
	if (len == 0 && may_be_empty)
		return 0;
	if (check(s, len, err))
		return name_refused(err, code, "save header");
	return 0;
}

/* What the writer refuses in h, and the reader after decoding it. */
static int check_header(const struct save_header *h, int code, struct us_err *err)
{
	int rc;

	if (h->kind < SAVE_KIND_SAVE || h->kind > SAVE_KIND_EXPORT)
		return err_set(err, code, "save header: unknown kind %u", h->kind);
	if (h->kind == SAVE_KIND_EXPORT && (h->scope_account[0] || h->scope_file[0]))
		return err_set(err, code, "save header: an export (kind 3) has no scope");
	if ((rc = check_str(h->ns, US_NAMESPACE_MAX_LEN, false, names_check_namespace,
			    "namespace", code, err)) ||
	    (rc = check_str(h->scope_account, US_ACCOUNT_MAX_LEN, true, names_check_account,
			    "scope account", code, err)) ||
	    (rc = check_str(h->scope_file, US_FILE_MAX_LEN, true, names_check_file, "scope file",
			    code, err)) ||
	    (rc = check_str(h->creator, US_NODE_ID_MAX_LEN, false, names_check_node_id, "creator",
			    code, err)) ||
	    (rc = check_str(h->site, US_NODE_ID_MAX_LEN, true, names_check_node_id, "site", code,
			    err)))
		return rc;
	if (h->scope_file[0] && !h->scope_account[0])
		return err_set(err, code, "save header: scope file %s without an account",
			       h->scope_file);
	if (h->seq > US_SEQ_MAX || h->generation > US_SEQ_MAX)
		return err_set(err, code,
			       "save header: generation %" PRIu64 " or seq %" PRIu64 " over %" PRIu64,
			       h->generation, h->seq, (uint64_t)US_SEQ_MAX);
	return 0;
}

static int append_str(struct buf *b, const char *s)
{
	size_t len = strlen(s);
	int rc = buf_append_varint(b, len);

	return rc ? rc : buf_append(b, s, len);
}

static int encode_header(const struct save_header *h, struct buf *b)
{
	int rc = 0;

	rc = rc ? rc : buf_append(b, SAVE_MAGIC, 4);
	rc = rc ? rc : buf_append_u8(b, SAVE_FORMAT_VERSION);
	rc = rc ? rc : buf_append_u8(b, h->kind);
	rc = rc ? rc : buf_append_u32le(b, 0); /* header_len, below */
	rc = rc ? rc : append_str(b, h->ns);
	rc = rc ? rc : append_str(b, h->scope_account);
	rc = rc ? rc : append_str(b, h->scope_file);
	rc = rc ? rc : buf_append_u64le(b, h->generation);
	rc = rc ? rc : buf_append_u64le(b, h->seq);
	rc = rc ? rc : buf_append_u64le(b, h->time_ms);
	rc = rc ? rc : buf_append_u64le(b, h->chain);
	rc = rc ? rc : append_str(b, h->creator);
	rc = rc ? rc : append_str(b, h->site);
	rc = rc ? rc : buf_append_u64le(b, h->created_ms);
	if (rc)
		return rc;
	buf_put_u32le(b->p + HEADER_LEN_OFFSET, (uint32_t)(b->len + CHECKSUM32_BYTES));
	return buf_append_u32le(b, XXH32(b->p, b->len, 0));
}

/* ---- writer ---- */

enum writer_state {
	W_OPEN,     /* takes entries; -> W_FINISHED by finish, -> W_FAILED by a sink error */
	W_FINISHED, /* trailer written; takes nothing */
	W_FAILED,   /* the sink failed: the save is incomplete; takes nothing */
};

struct save_writer {
	save_sink_fn sink;
	void *arg;
	struct save_header h;
	struct image im;
	struct buf block;                 /* the frame being filled: an entry block */
	struct entry_block_writer bw;     /* valid while is_block_open */
	bool is_block_open;
	struct buf out;                   /* a frame or the trailer on its way to the sink */
	XXH64_state_t *hash;              /* of every byte given to the sink */
	uint64_t offset;                  /* bytes given to the sink */
	uint64_t frames;
	enum writer_state state;
};

static int writer_emit(struct save_writer *w, const uint8_t *p, size_t len, struct us_err *err)
{
	int rc;

	XXH64_update(w->hash, p, len);
	rc = w->sink(w->arg, p, len, err);
	if (rc) {
		w->state = W_FAILED;
		return rc;
	}
	w->offset += len;
	return 0;
}

/* Compresses the block being filled into one frame and sends it. */
static int writer_flush(struct save_writer *w, struct us_err *err)
{
	uint32_t raw_len;
	int bound, comp;
	int rc;

	if (!w->is_block_open)
		return 0;
	w->is_block_open = false;
	if ((rc = entry_block_finish(&w->bw, err))) {
		w->state = W_FAILED;
		return rc;
	}
	if (w->block.len > US_SAVE_FRAME_MAX_RAW_BYTES) { /* cannot happen: save.h */
		w->state = W_FAILED;
		return err_set(err, US_EIO, "save frame of %zu bytes over the limit of %u",
			       w->block.len, US_SAVE_FRAME_MAX_RAW_BYTES);
	}
	raw_len = (uint32_t)w->block.len;
	bound = LZ4_compressBound((int)raw_len);
	buf_reset(&w->out);
	if (buf_reserve(&w->out, SAVE_FRAME_HEADER_BYTES + (size_t)bound)) {
		w->state = W_FAILED;
		return err_set(err, US_ENOMEM, "cannot write save frame of %u bytes: out of memory",
			       raw_len);
	}
	comp = LZ4_compress_default((const char *)w->block.p,
				    (char *)w->out.p + SAVE_FRAME_HEADER_BYTES, (int)raw_len, bound);
	if (comp <= 0) {
		w->state = W_FAILED;
		return err_set(err, US_EIO, "cannot compress save frame of %u bytes", raw_len);
	}
	w->out.p[0] = SAVE_TAG_FRAME;
	buf_put_u32le(w->out.p + 1, raw_len);
	buf_put_u32le(w->out.p + 5, (uint32_t)comp);
	w->out.len = SAVE_FRAME_HEADER_BYTES + (size_t)comp;
	if ((rc = writer_emit(w, w->out.p, w->out.len, err)))
		return rc;
	w->frames++;
	buf_reset(&w->block);
	return 0;
}

int save_writer_new(struct save_writer **out, const struct save_header *h, save_sink_fn sink,
		    void *arg, struct us_err *err)
{
	struct save_writer *w;
	struct us_err scratch;
	int rc;

	if (!err)
		err = &scratch;
	*out = NULL;
	if ((rc = check_header(h, US_EINVAL, err)))
		return rc;
	w = calloc(1, sizeof(*w));
	if (!w)
		return err_set(err, US_ENOMEM, "cannot start a save: out of memory");
	w->sink = sink;
	w->arg = arg;
	w->h = *h;
	image_init(&w->im, &w->h);
	buf_init(&w->block);
	buf_init(&w->out);
	w->hash = XXH64_createState();
	if (!w->hash || XXH64_reset(w->hash, 0) != XXH_OK) {
		rc = err_set(err, US_ENOMEM, "cannot start a save: out of memory");
		goto out_free;
	}
	if (encode_header(&w->h, &w->out)) {
		rc = err_set(err, US_ENOMEM, "cannot start a save: out of memory");
		goto out_free;
	}
	if ((rc = writer_emit(w, w->out.p, w->out.len, err)))
		goto out_free;
	w->state = W_OPEN;
	*out = w;
	return 0;

out_free:
	save_writer_free(w);
	return rc;
}

static int writer_refuse_state(const struct save_writer *w, struct us_err *err)
{
	if (w->state == W_FAILED)
		return err_set(err, US_EIO, "save writer failed earlier: the save is incomplete");
	return err_set(err, US_EINVAL, "save writer already finished");
}

int save_writer_add(struct save_writer *w, const struct entry *e, struct us_err *err)
{
	struct us_err scratch;
	struct entry copy;
	size_t at;
	int rc;

	if (!err)
		err = &scratch;
	if (w->state != W_OPEN)
		return writer_refuse_state(w, err);
	if ((rc = image_check(&w->im, e, US_EINVAL, &at, err))) {
		err_wrap(err, "cannot add entry %" PRIu64 " to a save", w->im.entries + 1);
		return rc;
	}
	if (e->op != ENTRY_WRITE && !w->im.is_export && (rc = image_reserve(&w->im, err)))
		return rc;
	if (!w->is_block_open) {
		buf_reset(&w->block);
		if (entry_block_begin(&w->bw, &w->block, w->im.entries + 1))
			return err_set(err, US_ENOMEM, "cannot add to a save: out of memory");
		w->is_block_open = true;
	}
	copy = *e;
	if (!w->im.is_export) { /* an image has no commits; an export keeps them */
		copy.is_commit_end = true;
		copy.time_ms = w->h.time_ms;
	}
	if ((rc = entry_block_add(&w->bw, &copy, err))) {
		err_wrap(err, "cannot add entry %" PRIu64 " to a save", w->im.entries + 1);
		if (w->bw.count == 0) { /* nothing in it: as before the call */
			w->is_block_open = false;
			buf_reset(&w->block);
		}
		return rc;
	}
	image_take(&w->im, e, at);
	if (w->block.len >= US_SAVE_FRAME_TARGET_BYTES)
		return writer_flush(w, err);
	return 0;
}

int save_writer_finish(struct save_writer *w, struct save_summary *out, struct us_err *err)
{
	struct us_err scratch;
	uint64_t sum;
	int rc;

	if (!err)
		err = &scratch;
	if (w->state != W_OPEN)
		return writer_refuse_state(w, err);
	if (w->im.is_export && w->im.is_in_commit)
		return err_set(err, US_EINVAL,
			       "cannot finish an export inside a commit (its last entry has no END)");
	if ((rc = writer_flush(w, err)))
		return rc;
	buf_reset(&w->out);
	rc = buf_append_u8(&w->out, SAVE_TAG_TRAILER);
	rc = rc ? rc : buf_append_u64le(&w->out, w->im.entries);
	rc = rc ? rc : buf_append_u64le(&w->out, w->frames);
	rc = rc ? rc : buf_append_u64le(&w->out, w->im.files);
	for (size_t i = 0; i < w->im.n_names && !rc; i++) {
		const struct image_name *n = &w->im.names[i];

		if (n->file_len == 0)
			continue; /* an account's flag */
		rc = buf_append_varint(&w->out, n->account_len);
		rc = rc ? rc : buf_append(&w->out, n->account, n->account_len);
		rc = rc ? rc : buf_append_varint(&w->out, n->file_len);
		rc = rc ? rc : buf_append(&w->out, n->file, n->file_len);
		rc = rc ? rc : buf_append_u64le(&w->out, n->data_items);
		rc = rc ? rc : buf_append_u64le(&w->out, n->dict_items);
	}
	rc = rc ? rc : buf_append_u64le(&w->out, w->offset + w->out.len + 8);
	if (rc) {
		w->state = W_FAILED;
		return err_set(err, US_ENOMEM, "cannot finish a save: out of memory");
	}
	XXH64_update(w->hash, w->out.p, w->out.len);
	sum = XXH64_digest(w->hash);
	if (buf_append_u64le(&w->out, sum)) {
		w->state = W_FAILED;
		return err_set(err, US_ENOMEM, "cannot finish a save: out of memory");
	}
	/* the hash has the trailer already: the sink alone now */
	if ((rc = w->sink(w->arg, w->out.p, w->out.len, err))) {
		w->state = W_FAILED;
		return rc;
	}
	w->offset += w->out.len;
	w->state = W_FINISHED;
	if (out) {
		out->entries = w->im.entries;
		out->items = w->im.items;
		out->files = w->im.files;
		out->frames = w->frames;
		out->bytes = w->offset;
		out->xxh64 = sum;
	}
	return 0;
}

void save_writer_free(struct save_writer *w)
{
	if (!w)
		return;
	image_release(&w->im);
	buf_release(&w->block);
	buf_release(&w->out);
	if (w->hash)
		XXH64_freeState(w->hash);
	free(w);
}

/* ---- reader ---- */

enum reader_state {
	R_FRAMES,   /* at a tag: a frame or the trailer; -> R_IN_FRAME, R_DONE */
	R_IN_FRAME, /* yielding a frame's entries; -> R_FRAMES at its end */
	R_DONE,     /* trailer read and checked; next returns 0 */
	R_FAILED,   /* an error was returned; next returns it again */
};

struct save_reader {
	save_source_fn src;
	void *arg;
	uint8_t *in;                      /* READ_BUF_BYTES read ahead from the source */
	size_t in_pos;
	size_t in_len;
	bool is_eof;                      /* the source said so: ask no more */
	uint64_t offset;                  /* of the next byte to consume */
	XXH64_state_t *hash;              /* of every byte consumed */
	struct save_header h;
	struct image im;
	struct buf comp;                  /* a frame's LZ4 bytes */
	struct buf raw;                   /* its entry block; entries borrow from it */
	struct entry_block_reader br;
	uint64_t frame_offset;            /* of the current frame's tag */
	uint64_t frames;
	struct save_summary sum;
	enum reader_state state;
	struct us_err failed;             /* the error that failed it */
};

/* Refills the read-ahead when it is empty and the source has more. */
static int reader_fill(struct save_reader *r, struct us_err *err)
{
	size_t got = 0;
	int rc;

	if (r->in_pos < r->in_len || r->is_eof)
		return 0;
	r->in_pos = r->in_len = 0;
	if ((rc = r->src(r->arg, r->in, READ_BUF_BYTES, &got, err)))
		return rc; /* an error, or SAVE_MORE: nothing consumed */
	if (got > READ_BUF_BYTES)
		return err_set(err, US_EIO, "save source returned %zu bytes for %u", got,
			       READ_BUF_BYTES);
	r->in_len = got;
	if (got == 0)
		r->is_eof = true;
	return 0;
}

/* Consumes up to n bytes into p; *got < n only at the end of the save; or
 * SAVE_MORE from a fed source that has none yet. */
static int reader_read(struct save_reader *r, void *p, size_t n, size_t *got,
		       struct us_err *err)
{
	uint8_t *d = p;
	int rc;

	*got = 0;
	while (*got < n) {
		size_t k;

		if ((rc = reader_fill(r, err)))
			return rc;
		k = r->in_len - r->in_pos;
		if (k == 0)
			break;
		if (k > n - *got)
			k = n - *got;
		memcpy(d + *got, r->in + r->in_pos, k);
		XXH64_update(r->hash, r->in + r->in_pos, k);
		r->in_pos += k;
		r->offset += k;
		*got += k;
	}
	return 0;
}

/* A truncation inside the thing at offset at, of wants bytes (0: unknown). */
static int truncated(const struct save_reader *r, const char *what, uint64_t at, uint64_t wants,
		     struct us_err *err)
{
	if (wants)
		return err_set(err, US_ECORRUPT,
			       "truncated save: %s at offset %" PRIu64 " wants %" PRIu64
			       " bytes, only %" PRIu64 " left",
			       what, at, wants, r->offset - at);
	return err_set(err, US_ECORRUPT,
		       "truncated save: %s at offset %" PRIu64 " ends after %" PRIu64 " bytes", what,
		       at, r->offset - at);
}

/* n bytes of the thing (what, at, wants: for truncated) into p, or an error. */
static int reader_need(struct save_reader *r, void *p, size_t n, const char *what, uint64_t at,
		       uint64_t wants, struct us_err *err)
{
	size_t got;
	int rc;

	if ((rc = reader_read(r, p, n, &got, err)) == SAVE_MORE)
		return err_set(err, US_ECORRUPT,
			       "save source ran dry inside the %s at offset %" PRIu64
			       " (its feeder must hand over whole frames)",
			       what, at);
	if (rc)
		return rc;
	if (got < n)
		return truncated(r, what, at, wants, err);
	return 0;
}

static int reader_need_u64(struct save_reader *r, uint64_t *v, const char *what, uint64_t at,
			   struct us_err *err)
{
	uint8_t b[8];
	int rc;

	if ((rc = reader_need(r, b, 8, what, at, 0, err)))
		return rc;
	*v = buf_get_u64le(b);
	return 0;
}

/* A str of the trailer, into s (room for max bytes). */
static int reader_need_str(struct save_reader *r, char *s, size_t max, size_t *len,
			   const char *what, uint64_t at, struct us_err *err)
{
	uint64_t v = 0;
	uint64_t field = r->offset;
	int rc;

	for (unsigned shift = 0;; shift += 7) {
		uint8_t b;

		if ((rc = reader_need(r, &b, 1, what, at, 0, err)))
			return rc;
		if (shift == 63 && b > 1)
			return err_set(err, US_ECORRUPT,
				       "damaged save: %s at offset %" PRIu64 ": varint over 64 bits",
				       what, field);
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break; /* always by shift 63: b <= 1 there */
	}
	if (v > max)
		return err_set(err, US_ECORRUPT,
			       "damaged save: %s at offset %" PRIu64 ": length %" PRIu64
			       " over the limit of %zu",
			       what, field, v, max);
	*len = (size_t)v;
	return reader_need(r, s, (size_t)v, what, at, 0, err);
}

/* A cursor over the header's bytes, for the fields after header_len. */
struct hcursor {
	const uint8_t *p;
	const uint8_t *end;
	const uint8_t *start;  /* offset 0 of the save */
};

static int hc_str(struct hcursor *c, const char *what, char *out, size_t max,
		  struct us_err *err)
{
	size_t at = (size_t)(c->p - c->start);
	uint64_t n;

	if (buf_read_varint(&c->p, c->end, &n))
		return err_set(err, US_ECORRUPT,
			       "damaged save: header field %s at offset %zu: bad length", what, at);
	if (n > max)
		return err_set(err, US_ECORRUPT,
			       "damaged save: header field %s at offset %zu: length %" PRIu64
			       " over the limit of %zu",
			       what, at, n, max);
	if (n > (uint64_t)(c->end - c->p))
		return err_set(err, US_ECORRUPT,
			       "damaged save: header field %s at offset %zu: length %" PRIu64
			       " past the header's end",
			       what, at, n);
	if (n && memchr(c->p, '\0', (size_t)n))
		return err_set(err, US_ECORRUPT,
			       "damaged save: header field %s at offset %zu holds a NUL byte", what, at);
	memcpy(out, c->p, (size_t)n);
	out[n] = '\0';
	c->p += n;
	return 0;
}

static int hc_u64(struct hcursor *c, const char *what, uint64_t *v, struct us_err *err)
{
	if (c->end - c->p < 8)
		return err_set(err, US_ECORRUPT,
			       "damaged save: header field %s at offset %zu past the header's end", what,
			       (size_t)(c->p - c->start));
	*v = buf_get_u64le(c->p);
	c->p += 8;
	return 0;
}

static int reader_header(struct save_reader *r, struct us_err *err)
{
	uint8_t hb[US_SAVE_HEADER_MAX_BYTES];
	struct save_header *h = &r->h;
	struct hcursor c;
	uint32_t len, want, got;
	size_t n;
	int rc;

	memset(h, 0, sizeof(*h));
	/* the magic alone first: "not a save" says more than "truncated" */
	if ((rc = reader_read(r, hb, 4, &n, err)) == SAVE_MORE)
		return err_set(err, US_ECORRUPT, "save source ran dry before the header");
	if (rc)
		return rc;
	if (n < 4 && memcmp(hb, SAVE_MAGIC, n) == 0)
		return truncated(r, "header", 0, HEADER_FIXED_BYTES, err);
	if (memcmp(hb, SAVE_MAGIC, 4) != 0) {
		char shown[20];

		names_escape(hb, n, shown, sizeof(shown));
		return err_set(err, US_ECORRUPT,
			       "not a save: magic '%s' at offset 0 (want '%s')", shown, SAVE_MAGIC);
	}
	if ((rc = reader_need(r, hb + 4, HEADER_FIXED_BYTES - 4, "header", 0, HEADER_FIXED_BYTES,
			      err)))
		return rc;
	if (hb[4] != SAVE_FORMAT_VERSION)
		return err_set(err, US_EUNIMPL,
			       "save format version %u at offset 4 is not supported (this program reads %d)",
			       hb[4], SAVE_FORMAT_VERSION);
	len = buf_get_u32le(hb + HEADER_LEN_OFFSET);
	if (len < SAVE_HEADER_MIN_BYTES || len > US_SAVE_HEADER_MAX_BYTES)
		return err_set(err, US_ECORRUPT,
			       "damaged save: header length %" PRIu32 " at offset %d out of %d..%u", len,
			       HEADER_LEN_OFFSET, SAVE_HEADER_MIN_BYTES, US_SAVE_HEADER_MAX_BYTES);
	if ((rc = reader_need(r, hb + HEADER_FIXED_BYTES, len - HEADER_FIXED_BYTES, "header", 0,
			      len, err)))
		return rc;
	want = buf_get_u32le(hb + len - CHECKSUM32_BYTES);
	got = XXH32(hb, len - CHECKSUM32_BYTES, 0);
	if (want != got)
		return err_set(err, US_ECORRUPT,
			       "damaged save: header checksum mismatch at offset %u (stored %08x, computed %08x)",
			       len - CHECKSUM32_BYTES, want, got);
	h->kind = hb[5];
	c = (struct hcursor){ .p = hb + HEADER_FIXED_BYTES, .end = hb + len - CHECKSUM32_BYTES,
			      .start = hb };
	if ((rc = hc_str(&c, "namespace", h->ns, US_NAMESPACE_MAX_LEN, err)) ||
	    (rc = hc_str(&c, "scope account", h->scope_account, US_ACCOUNT_MAX_LEN, err)) ||
	    (rc = hc_str(&c, "scope file", h->scope_file, US_FILE_MAX_LEN, err)) ||
	    (rc = hc_u64(&c, "generation", &h->generation, err)) ||
	    (rc = hc_u64(&c, "seq", &h->seq, err)) ||
	    (rc = hc_u64(&c, "time_ms", &h->time_ms, err)) ||
	    (rc = hc_u64(&c, "chain", &h->chain, err)) ||
	    (rc = hc_str(&c, "creator", h->creator, US_NODE_ID_MAX_LEN, err)) ||
	    (rc = hc_str(&c, "site", h->site, US_NODE_ID_MAX_LEN, err)) ||
	    (rc = hc_u64(&c, "created_ms", &h->created_ms, err)))
		return rc;
	if (c.p != c.end)
		return err_set(err, US_ECORRUPT,
			       "damaged save: %zu unknown bytes at offset %zu at the end of the header",
			       (size_t)(c.end - c.p), (size_t)(c.p - c.start));
	if ((rc = check_header(h, US_ECORRUPT, err))) {
		err_wrap(err, "damaged save");
		return rc;
	}
	return 0;
}

int save_reader_new(struct save_reader **out, save_source_fn src, void *arg,
		    struct save_header *h, struct us_err *err)
{
	struct save_reader *r;
	struct us_err scratch;
	int rc;

	if (!err)
		err = &scratch;
	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return err_set(err, US_ENOMEM, "cannot read a save: out of memory");
	r->src = src;
	r->arg = arg;
	buf_init(&r->comp);
	buf_init(&r->raw);
	r->in = malloc(READ_BUF_BYTES);
	r->hash = XXH64_createState();
	if (!r->in || !r->hash || XXH64_reset(r->hash, 0) != XXH_OK) {
		rc = err_set(err, US_ENOMEM, "cannot read a save: out of memory");
		goto out_free;
	}
	if ((rc = reader_header(r, err)))
		goto out_free;
	image_init(&r->im, &r->h);
	r->state = R_FRAMES;
	*h = r->h;
	*out = r;
	return 0;

out_free:
	save_reader_free(r);
	return rc;
}

/* Reads the frame whose tag was just consumed at r->frame_offset, and opens
 * its block. */
static int reader_frame(struct save_reader *r, struct us_err *err)
{
	uint64_t at = r->frame_offset;
	uint8_t fh[SAVE_FRAME_HEADER_BYTES - 1];
	uint32_t raw_len, comp_len;
	uint64_t want_seq;
	int bound, n;
	int rc;

	if ((rc = reader_need(r, fh, sizeof(fh), "frame", at, SAVE_FRAME_HEADER_BYTES, err)))
		return rc;
	raw_len = buf_get_u32le(fh);
	comp_len = buf_get_u32le(fh + 4);
	if (raw_len < BLOCK_MIN_RAW_BYTES || raw_len > US_SAVE_FRAME_MAX_RAW_BYTES)
		return err_set(err, US_ECORRUPT,
			       "damaged save: frame at offset %" PRIu64 ": raw length %" PRIu32
			       " out of %d..%u",
			       at, raw_len, BLOCK_MIN_RAW_BYTES, US_SAVE_FRAME_MAX_RAW_BYTES);
	bound = LZ4_compressBound((int)raw_len);
	if (comp_len < 1 || comp_len > (uint32_t)bound)
		return err_set(err, US_ECORRUPT,
			       "damaged save: frame at offset %" PRIu64 ": compressed length %" PRIu32
			       " out of 1..%d for %" PRIu32 " raw bytes",
			       at, comp_len, bound, raw_len);
	/* grown as the bytes arrive: a truncated save costs what it holds */
	buf_reset(&r->comp);
	while (r->comp.len < comp_len) {
		size_t step = comp_len - r->comp.len;

		if (step > READ_STEP_BYTES)
			step = READ_STEP_BYTES;
		if (buf_reserve(&r->comp, step))
			return err_set(err, US_ENOMEM, "cannot read save frame at offset %" PRIu64
				       ": out of memory", at);
		if ((rc = reader_need(r, r->comp.p + r->comp.len, step, "frame", at,
				      SAVE_FRAME_HEADER_BYTES + (uint64_t)comp_len, err)))
			return rc;
		r->comp.len += step;
	}
	buf_reset(&r->raw);
	if (buf_reserve(&r->raw, raw_len))
		return err_set(err, US_ENOMEM, "cannot read save frame at offset %" PRIu64
			       ": out of memory", at);
	n = LZ4_decompress_safe((const char *)r->comp.p, (char *)r->raw.p, (int)comp_len,
				(int)raw_len);
	if (n != (int)raw_len)
		return err_set(err, US_ECORRUPT,
			       "damaged save: frame at offset %" PRIu64
			       " does not decompress to %" PRIu32 " bytes",
			       at, raw_len);
	r->raw.len = raw_len;
	if ((rc = entry_block_open(&r->br, r->raw.p, r->raw.len, err))) {
		err_wrap(err, "damaged save: frame at offset %" PRIu64, at);
		return rc;
	}
	want_seq = r->im.entries + 1;
	if (r->br.first_seq != want_seq)
		return err_set(err, US_ECORRUPT,
			       "damaged save: frame at offset %" PRIu64 " starts at entry %" PRIu64
			       ", want %" PRIu64,
			       at, r->br.first_seq, want_seq);
	r->frames++;
	return 0;
}

/* The trailer whose tag was just consumed at offset at; then the end. */
static int reader_trailer(struct save_reader *r, uint64_t at, struct us_err *err)
{
	uint8_t t[TRAILER_FIXED_BYTES - 1];
	uint64_t entries, frames, files, len, stored, computed, field;
	size_t i, k = 0;
	int rc;

	if ((rc = reader_need(r, t, sizeof(t), "trailer", at, 0, err)))
		return rc;
	entries = buf_get_u64le(t);
	frames = buf_get_u64le(t + 8);
	files = buf_get_u64le(t + 16);
	if (r->im.is_in_commit)
		return err_set(err, US_ECORRUPT,
			       "damaged export: it ends inside a commit (entry %" PRIu64 " has no END)",
			       r->im.entries);
	if (entries != r->im.entries || frames != r->frames || files != r->im.files)
		return err_set(err, US_ECORRUPT,
			       "damaged save: trailer at offset %" PRIu64 " counts %" PRIu64
			       " entries, %" PRIu64 " frames, %" PRIu64 " files; read %" PRIu64 ", %" PRIu64
			       ", %" PRIu64,
			       at, entries, frames, files, r->im.entries, r->frames, r->im.files);
	for (i = 0; i < r->im.n_names; i++) {
		const struct image_name *n = &r->im.names[i];
		char account[US_ACCOUNT_MAX_LEN], file[US_FILE_MAX_LEN];
		size_t alen, flen;
		uint64_t data_items, dict_items;

		if (n->file_len == 0)
			continue;
		field = r->offset;
		k++;
		if ((rc = reader_need_str(r, account, US_ACCOUNT_MAX_LEN, &alen, "trailer", at,
					  err)) ||
		    (rc = reader_need_str(r, file, US_FILE_MAX_LEN, &flen, "trailer", at, err)) ||
		    (rc = reader_need_u64(r, &data_items, "trailer", at, err)) ||
		    (rc = reader_need_u64(r, &dict_items, "trailer", at, err)))
			return rc;
		if (alen != n->account_len || flen != n->file_len ||
		    memcmp(account, n->account, alen) != 0 || memcmp(file, n->file, flen) != 0)
			return err_set(err, US_ECORRUPT,
				       "damaged save: trailer's file record %zu at offset %" PRIu64
				       " is not %.*s/%.*s (declared as file %zu)",
				       k, field, (int)n->account_len, n->account, (int)n->file_len,
				       n->file, k);
		if (data_items != n->data_items || dict_items != n->dict_items)
			return err_set(err, US_ECORRUPT,
				       "damaged save: trailer at offset %" PRIu64 " counts %" PRIu64
				       " DATA and %" PRIu64 " DICT items in %.*s/%.*s; read %" PRIu64
				       " and %" PRIu64,
				       field, data_items, dict_items, (int)n->account_len, n->account,
				       (int)n->file_len, n->file, n->data_items, n->dict_items);
	}
	field = r->offset;
	if ((rc = reader_need_u64(r, &len, "trailer", at, err)))
		return rc;
	if (len != field + 8)
		return err_set(err, US_ECORRUPT,
			       "damaged save: trailer at offset %" PRIu64 " says the checksum is at offset %"
			       PRIu64 ", it is at %" PRIu64,
			       field, len, field + 8);
	field = r->offset;
	computed = XXH64_digest(r->hash);
	if ((rc = reader_need_u64(r, &stored, "trailer", at, err)))
		return rc;
	if (stored != computed)
		return err_set(err, US_ECORRUPT,
			       "damaged save: checksum mismatch at offset %" PRIu64 " (stored %016" PRIx64
			       ", computed %016" PRIx64 ")",
			       field, stored, computed);
	/* nothing after it; a fed source that has nothing more yet is done too
	 * (its feeder refuses what would come after the trailer) */
	if ((rc = reader_fill(r, err)) && rc != SAVE_MORE)
		return rc;
	if (r->in_pos < r->in_len)
		return err_set(err, US_ECORRUPT,
			       "damaged save: trailing bytes at offset %" PRIu64 " after the trailer",
			       r->offset);
	r->sum = (struct save_summary){ .entries = entries, .items = r->im.items, .files = files,
					.frames = frames, .bytes = r->offset, .xxh64 = stored };
	return 0;
}

/* Checks and counts the entry the block reader just gave. */
static int reader_take(struct save_reader *r, const struct entry *e, struct us_err *err)
{
	uint64_t n = r->im.entries + 1;
	size_t at;
	int rc;

	if (!r->im.is_export && (!e->is_commit_end || e->time_ms != r->h.time_ms))
		return err_set(err, US_ECORRUPT,
			       "damaged save: entry %" PRIu64 " (frame at offset %" PRIu64
			       ") is not a whole commit at the header's time",
			       n, r->frame_offset);
	if ((rc = image_check(&r->im, e, US_ECORRUPT, &at, err))) {
		err_wrap(err, "damaged save: entry %" PRIu64 " (frame at offset %" PRIu64 ")", n,
			 r->frame_offset);
		return rc;
	}
	if (e->op != ENTRY_WRITE && !r->im.is_export && (rc = image_reserve(&r->im, err)))
		return rc;
	image_take(&r->im, e, at);
	return 0;
}

static int reader_step(struct save_reader *r, struct entry *e, struct us_err *err)
{
	uint64_t seq;
	uint8_t tag;
	size_t got;
	int rc;

	for (;;) {
		if (r->state == R_IN_FRAME) {
			rc = entry_block_next(&r->br, e, &seq, err);
			if (rc < 0) {
				err_wrap(err, "damaged save: frame at offset %" PRIu64,
					 r->frame_offset);
				return rc;
			}
			if (rc == 1) {
				if ((rc = reader_take(r, e, err)))
					return rc;
				return 1;
			}
			r->state = R_FRAMES;
		}
		r->frame_offset = r->offset;
		/* between frames: the one place a fed source may say "not yet" */
		if ((rc = reader_read(r, &tag, 1, &got, err)))
			return rc;
		if (got == 0)
			return err_set(err, US_ECORRUPT,
				       "truncated save: ends at offset %" PRIu64 " without its trailer",
				       r->offset);
		if (tag == SAVE_TAG_TRAILER) {
			if ((rc = reader_trailer(r, r->frame_offset, err)))
				return rc;
			r->state = R_DONE;
			return 0;
		}
		if (tag != SAVE_TAG_FRAME)
			return err_set(err, US_ECORRUPT,
				       "damaged save: unknown tag 0x%02x at offset %" PRIu64
				       " (want a frame or the trailer)",
				       tag, r->frame_offset);
		if ((rc = reader_frame(r, err)))
			return rc;
		r->state = R_IN_FRAME;
	}
}

int save_reader_next(struct save_reader *r, struct entry *e, struct us_err *err)
{
	struct us_err scratch;
	int rc;

	if (!err)
		err = &scratch;
	if (r->state == R_DONE)
		return 0;
	if (r->state == R_FAILED) {
		*err = r->failed;
		return err->code;
	}
	rc = reader_step(r, e, err);
	if (rc == SAVE_MORE)
		return rc; /* nothing consumed: call again with more */
	if (rc < 0) {
		r->state = R_FAILED;
		r->failed = *err;
		r->failed.code = rc;
	}
	return rc;
}

const struct save_summary *save_reader_summary(const struct save_reader *r)
{
	return r->state == R_DONE ? &r->sum : NULL;
}

void save_reader_free(struct save_reader *r)
{
	if (!r)
		return;
	image_release(&r->im);
	buf_release(&r->comp);
	buf_release(&r->raw);
	free(r->in);
	if (r->hash)
		XXH64_freeState(r->hash);
	free(r);
}

/* ---- sinks and sources ---- */

int save_file_sink(void *arg, const uint8_t *p, size_t len, struct us_err *err)
{
	FILE *f = arg;

	if (len && fwrite(p, 1, len, f) != len) {
		int e = errno;

		return err_set(err, e == ENOSPC ? US_ENOSPC : US_EIO, "cannot write save: %s",
			       strerror(e));
	}
	return 0;
}

int save_file_source(void *arg, uint8_t *p, size_t len, size_t *got, struct us_err *err)
{
	FILE *f = arg;

	*got = fread(p, 1, len, f);
	if (*got < len && ferror(f))
		return err_set(err, US_EIO, "cannot read save: %s", strerror(errno));
	return 0;
}

int save_buf_sink(void *arg, const uint8_t *p, size_t len, struct us_err *err)
{
	if (buf_append(arg, p, len))
		return err_set(err, US_ENOMEM, "cannot keep a save of %zu more bytes: out of memory",
			       len);
	return 0;
}

int save_mem_source(void *arg, uint8_t *p, size_t len, size_t *got, struct us_err *err)
{
	struct save_mem_source *m = arg;
	size_t left = m->len - m->pos;

	(void)err;
	*got = len < left ? len : left;
	if (*got)
		memcpy(p, m->p + m->pos, *got);
	m->pos += *got;
	return 0;
}

void save_queue_init(struct save_queue *q)
{
	buf_init(&q->b);
	q->pos = 0;
	q->is_ended = false;
}

void save_queue_release(struct save_queue *q)
{
	buf_release(&q->b);
	q->pos = 0;
}

int save_queue_push(struct save_queue *q, const uint8_t *p, size_t len, struct us_err *err)
{
	/* what was read goes, once it is most of the buffer */
	if (q->pos > 0 && q->pos >= q->b.len / 2) {
		memmove(q->b.p, q->b.p + q->pos, q->b.len - q->pos);
		q->b.len -= q->pos;
		q->pos = 0;
	}
	if (buf_append(&q->b, p, len))
		return err_set(err, US_ENOMEM, "out of memory for %zu bytes of a save", len);
	return 0;
}

void save_queue_end(struct save_queue *q)
{
	q->is_ended = true;
}

int save_queue_source(void *arg, uint8_t *p, size_t len, size_t *got, struct us_err *err)
{
	struct save_queue *q = arg;
	size_t left = q->b.len - q->pos;

	(void)err;
	*got = 0;
	if (left == 0)
		return q->is_ended ? 0 : SAVE_MORE;
	*got = len < left ? len : left;
	memcpy(p, q->b.p + q->pos, *got);
	q->pos += *got;
	return 0;
}
