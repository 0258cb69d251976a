/*
 * pick_exec.c - a query run against a store (pick_exec.h).
 *
 * Sorting compares keys made once per item, when it is added, so that a
 * comparison is a memcmp: each value of a BY attribute (after its
 * correlative) becomes a normalized string, in an order that is total:
 *   - justified L (and T): the value's bytes (Pick's text order);
 *   - justified R: class 0 for an empty value, 1 for a number (then its
 *     double, as 8 bytes that memcmp orders as the numbers), 2 for any
 *     other text (then its length, 4 bytes big-endian, then its bytes:
 *     shorter first, as right-justified text sorts when every character is
 *     above a blank).
 * A key is the attribute's values one by one, each normalized then
 * escaped (0x00 as 0x00 0xFF) and ended by 0x00 0x01, the list ended by
 * 0x00 0x00: so a list that ends first sorts first, and memcmp of two
 * encodings orders them as the values; BY-DSND inverts its key's bytes.
 * The sort record (sorter.h, compared as bytes) is
 *   key... [idkey] id' | id | body | u32 LE key_len | u32 LE id_len
 * where idkey is the id normalized when @ID is justified R and id' the
 * raw id escaped (the last tie-break); key_len counts everything before
 * the raw id.
 */
#include "pick_exec.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "pick_eval.h"
#include "sorter.h"
#include "us_limits.h"

/* A column's running sum. */
struct sum {
	long long i;
	long double f;
	bool is_float;
};

/* One scanning thread's part of the work: its sorter (sorted queries),
 * its scratch, its counts and its error. */
struct half {
	struct exec *x;
	bool is_reverse;            /* reads ids downward (the second half) */
	struct sorter *sorter;
	struct buf rec, key;        /* a sort record, a normalized value */
	uint64_t scanned, counted;  /* items read; COUNT: items selected */
	struct buf batch;           /* the items read, id and body, not yet taken */
	size_t *offs;               /* each batch item's offset in batch */
	int rc;
	struct us_err err;
};

struct exec {
	struct store *s;
	const struct store_snap *at;
	const char *account;
	const struct pick_query *q;
	const struct pick_exec_opts *opts;
	const struct pick_sink *sink;
	struct pick_exec_stats *st;
	struct us_err *err;
	uint8_t section;                     /* what the query reads: DATA or DICT */
	struct pick_attr **cache;            /* attributes looked up, by name */
	size_t n_cache;
	const struct pick_attr *id_attr;     /* @ID */
	const struct pick_attr **cond_attrs; /* one a selection */
	const struct pick_attr **sort_attrs; /* one a BY */
	struct pick_column *cols;
	size_t n_cols;
	struct buf *cells;                   /* one a column */
	size_t *break_cols;                  /* column of each break level, outer first */
	size_t n_breaks;
	struct buf *break_prev;              /* each level's value on the last row */
	bool has_prev;                       /* an ITEM row went out */
	struct sum *sums;                    /* [level * n_cols + col]; level n_breaks: grand */
	bool has_total;
	struct buf conv, body;
	struct half halves[2];               /* [0]: upward; [1]: downward, when parallel */
	size_t n_halves;
	bool is_sorting;
	/* where the two halves meet (under meet_lock): the highest id the
	 * first has taken, the lowest the second has */
	pthread_mutex_t meet_lock;
	struct buf meet_up, meet_down;
	bool has_up, has_down;
	atomic_bool is_failed;               /* a half failed: the other stops */
};

/* ---- the dictionary ---- */

static int lookup(struct exec *x, const char *name, const struct pick_attr **out)
{
	struct pick_attr *a, **cache;
	struct buf body;
	int rc;

	for (size_t i = 0; i < x->n_cache; i++)
		if (strcmp(x->cache[i]->name, name) == 0) {
			*out = x->cache[i];
			return 0;
		}
	a = calloc(1, sizeof(*a));
	cache = realloc(x->cache, (x->n_cache + 1) * sizeof(*cache));
	if (!a || !cache) {
		free(a);
		if (cache)
			x->cache = cache;
		return err_set(x->err, US_ENOMEM, "out of memory");
	}
	x->cache = cache;
	buf_init(&body);
	rc = store_get(x->s, x->at, x->account, x->q->file, SECTION_DICT, (const uint8_t *)name,
		       strlen(name), &body, x->err);
	if (rc == 0) {
		rc = pick_dict_parse((const uint8_t *)name, strlen(name), body.p, body.len, a,
				     x->err);
	} else if (rc == US_ENOTFOUND && strcmp(name, "@ID") == 0) {
		pick_dict_id(a);
		rc = 0;
	} else if (rc == US_ENOTFOUND) {
		char shown[80];

		rc = err_set(x->err, US_EINVAL,
			     "'%s' is not an attribute of %s: its dictionary has no item %s",
			     err_show(shown, sizeof(shown), (const uint8_t *)name, strlen(name)),
			     x->q->file, err_show(shown, sizeof(shown), (const uint8_t *)name,
						  strlen(name)));
	}
	buf_release(&body);
	if (rc) {
		free(a);
		return rc;
	}
	x->cache[x->n_cache++] = a;
	*out = a;
	return 0;
}

static int add_column(struct exec *x, const char *name, bool is_total, bool is_break)
{
	struct pick_column *cols = realloc(x->cols, (x->n_cols + 1) * sizeof(*cols));
	const struct pick_attr *a;
	int rc;

	if (!cols)
		return err_set(x->err, US_ENOMEM, "out of memory");
	x->cols = cols;
	if ((rc = lookup(x, name, &a)))
		return rc;
	cols[x->n_cols].attr = *a;
	cols[x->n_cols].is_total = is_total;
	cols[x->n_cols].is_break = is_break;
	x->n_cols++;
	return 0;
}

/* LIST or SORT naming no column: the dictionary items 1, 2, 3... */
static int add_default_columns(struct exec *x)
{
	struct buf body;
	int rc = 0;

	buf_init(&body);
	for (int i = 1; i <= US_PICK_COLS_MAX && rc == 0; i++) {
		char name[16];

		snprintf(name, sizeof(name), "%d", i);
		rc = store_get(x->s, x->at, x->account, x->q->file, SECTION_DICT,
			       (const uint8_t *)name, strlen(name), &body, x->err);
		if (rc == US_ENOTFOUND) {
			rc = 0;
			break;
		}
		if (rc == 0)
			rc = add_column(x, name, false, false);
	}
	buf_release(&body);
	return rc;
}

static int resolve(struct exec *x)
{
	const struct pick_query *q = x->q;
	int rc;

	if ((rc = lookup(x, "@ID", &x->id_attr)))
		return rc;
	x->cond_attrs = calloc(q->n_conds + 1, sizeof(*x->cond_attrs));
	x->sort_attrs = calloc(q->n_sorts + 1, sizeof(*x->sort_attrs));
	if (!x->cond_attrs || !x->sort_attrs)
		return err_set(x->err, US_ENOMEM, "out of memory");
	for (size_t i = 0; i < q->n_conds; i++)
		if ((rc = lookup(x, q->conds[i].attr, &x->cond_attrs[i])))
			return rc;
	for (size_t i = 0; i < q->n_sorts; i++)
		if ((rc = lookup(x, q->sorts[i].attr, &x->sort_attrs[i])))
			return rc;
	if (q->verb == PICK_COUNT || q->verb == PICK_SELECT)
		return 0;
	if (!q->is_id_supp && (rc = add_column(x, "@ID", false, false)))
		return rc;
	for (size_t i = 0; i < q->n_cols; i++)
		if ((rc = add_column(x, q->cols[i].attr, q->cols[i].is_total, q->cols[i].is_break)))
			return rc;
	if (q->n_cols == 0 && (rc = add_default_columns(x)))
		return rc;
	x->cells = calloc(x->n_cols + 1, sizeof(*x->cells));
	x->break_cols = calloc(x->n_cols + 1, sizeof(*x->break_cols));
	x->break_prev = calloc(x->n_cols + 1, sizeof(*x->break_prev));
	if (!x->cells || !x->break_cols || !x->break_prev)
		return err_set(x->err, US_ENOMEM, "out of memory");
	for (size_t i = 0; i < x->n_cols; i++) {
		buf_init(&x->cells[i]);
		buf_init(&x->break_prev[i]);
		if (x->cols[i].is_break)
			x->break_cols[x->n_breaks++] = i;
		x->has_total = x->has_total || x->cols[i].is_total;
	}
	x->sums = calloc((x->n_breaks + 1) * x->n_cols + 1, sizeof(*x->sums));
	if (!x->sums)
		return err_set(x->err, US_ENOMEM, "out of memory");
	return 0;
}

/* ---- cells ---- */

/* The attribute's bytes in the item (marks included), empty if absent. */
static void field_span(const struct pick_attr *a, const struct pick_item *it, const uint8_t **out,
		       size_t *len)
{
	const uint8_t *p = it->body, *end = it->body + it->len;

	if (a->field == 0) {
		*out = it->id;
		*len = it->id_len;
		return;
	}
	for (uint32_t f = 1; f < a->field; f++) {
		const uint8_t *am = memchr(p, PICK_AM, (size_t)(end - p));

		if (!am) {
			*out = (const uint8_t *)"";
			*len = 0;
			return;
		}
		p = am + 1;
	}
	{
		const uint8_t *am = memchr(p, PICK_AM, (size_t)(end - p));

		*out = p;
		*len = (size_t)((am ? am : end) - p);
	}
}

/* One value through the correlative then the conversion, appended to out. */
static int show_value(struct exec *x, const struct pick_attr *a, const uint8_t *v, size_t len,
		      struct buf *out)
{
	if (a->correlative.n) {
		buf_reset(&x->conv);
		if (pick_conv_apply(&a->correlative, v, len, &x->conv))
			return US_ENOMEM;
		v = x->conv.p ? x->conv.p : (const uint8_t *)"";
		len = x->conv.len;
	}
	if (a->conv.n)
		return pick_conv_apply(&a->conv, v, len, out);
	return buf_append(out, v, len);
}

/* The cell of attribute a for the item, marks kept between values. */
static int build_cell(struct exec *x, const struct pick_attr *a, const struct pick_item *it,
		      struct buf *out)
{
	const uint8_t *p, *end;
	size_t len;

	buf_reset(out);
	field_span(a, it, &p, &len);
	end = p + len;
	for (;;) {
		const uint8_t *stop = p;

		while (stop < end && *stop != PICK_VM && *stop != PICK_SVM)
			stop++;
		if (show_value(x, a, p, (size_t)(stop - p), out))
			return err_set(x->err, US_ENOMEM, "out of memory");
		if (stop >= end)
			break;
		if (buf_append_u8(out, *stop))
			return err_set(x->err, US_ENOMEM, "out of memory");
		p = stop + 1;
	}
	return 0;
}

/* ---- totals ---- */

static int add_to_sum(void *arg, const uint8_t *v, size_t len)
{
	struct sum *sum = arg;
	double d;
	bool is_int = len > 0 && len < 19;

	if (!pick_number(v, len, &d))
		return 0;
	for (size_t i = 0; i < len && is_int; i++)
		is_int = (v[i] >= '0' && v[i] <= '9') || (i == 0 && (v[i] == '-' || v[i] == '+'));
	if (is_int && !sum->is_float) {
		char tmp[20];
		long long n;

		memcpy(tmp, v, len);
		tmp[len] = '\0';
		long long total;

		n = strtoll(tmp, NULL, 10);
		if (!__builtin_add_overflow(sum->i, n, &total)) {
			sum->i = total;
			return 0;
		}
		/* past a long long: on in long double, from the sum before */
		sum->f = (long double)sum->i + (long double)n;
		sum->is_float = true;
		return 0;
	}
	if (!sum->is_float) {
		sum->f = (long double)sum->i;
		sum->is_float = true;
	}
	sum->f += (long double)d;
	return 0;
}

/* The sum as shown: its text through the column's conversion. */
static int show_sum(struct exec *x, const struct pick_column *c, const struct sum *sum,
		    struct buf *out)
{
	char text[64];

	if (sum->is_float)
		snprintf(text, sizeof(text), "%.15Lg", sum->f);
	else
		snprintf(text, sizeof(text), "%lld", sum->i);
	buf_reset(out);
	if (c->attr.conv.n)
		return pick_conv_apply(&c->attr.conv, (const uint8_t *)text, strlen(text), out);
	(void)x;
	return buf_append(out, text, strlen(text));
}

/* A BREAK row for level (or the TOTAL row for level n_breaks), then its
 * sums start again. */
static int emit_sums(struct exec *x, size_t level)
{
	struct sum *sums = &x->sums[level * x->n_cols];
	bool is_marked = false;
	int rc;

	for (size_t c = 0; c < x->n_cols; c++) {
		struct buf *cell = &x->cells[c];

		buf_reset(cell);
		if (x->cols[c].is_total) {
			if (show_sum(x, &x->cols[c], &sums[c], cell))
				return err_set(x->err, US_ENOMEM, "out of memory");
		} else if ((level < x->n_breaks && c == x->break_cols[level]) ||
			   (level == x->n_breaks && !is_marked && c == 0)) {
			if (buf_append(cell, "***", 3))
				return err_set(x->err, US_ENOMEM, "out of memory");
		}
		is_marked = true;
		memset(&sums[c], 0, sizeof(sums[c]));
	}
	rc = x->sink->on_row(x->sink->arg, level < x->n_breaks ? PICK_ROW_BREAK : PICK_ROW_TOTAL,
			     (const uint8_t *)"", 0, x->cells, x->n_cols);
	return rc;
}

/* ---- rows ---- */

static int emit_item(struct exec *x, const struct pick_item *it)
{
	int rc;

	x->st->items++;
	if (x->q->verb == PICK_COUNT)
		return 0;
	if (x->q->verb == PICK_SELECT)
		return x->sink->on_row(x->sink->arg, PICK_ROW_ITEM, it->id, it->id_len, NULL, 0);
	for (size_t c = 0; c < x->n_cols; c++)
		if ((rc = build_cell(x, &x->cols[c].attr, it, &x->cells[c])))
			return rc;
	if (x->n_breaks) {
		size_t changed = x->n_breaks;

		for (size_t l = 0; x->has_prev && l < x->n_breaks; l++) {
			const struct buf *now = &x->cells[x->break_cols[l]], *was = &x->break_prev[l];

			if (now->len != was->len || (now->len && memcmp(now->p, was->p, now->len))) {
				changed = l;
				break;
			}
		}
		if (changed < x->n_breaks) {
			/* the break rows reuse the cells: build this row's again after */
			for (size_t l = x->n_breaks; l-- > changed;)
				if ((rc = emit_sums(x, l)))
					return rc;
			for (size_t c = 0; c < x->n_cols; c++)
				if ((rc = build_cell(x, &x->cols[c].attr, it, &x->cells[c])))
					return rc;
		}
		for (size_t l = 0; l < x->n_breaks; l++) {
			const struct buf *now = &x->cells[x->break_cols[l]];

			buf_reset(&x->break_prev[l]);
			if (buf_append(&x->break_prev[l], now->p ? now->p : (const uint8_t *)"",
				       now->len))
				return err_set(x->err, US_ENOMEM, "out of memory");
		}
	}
	for (size_t c = 0; c < x->n_cols; c++) {
		if (!x->cols[c].is_total)
			continue;
		for (size_t l = 0; l <= x->n_breaks; l++)
			pick_attr_values(&x->cols[c].attr, it, add_to_sum, &x->sums[l * x->n_cols + c]);
	}
	x->has_prev = true;
	return x->sink->on_row(x->sink->arg, PICK_ROW_ITEM, it->id, it->id_len, x->cells, x->n_cols);
}

/* After the last row: every level's break, then the grand totals. */
static int emit_end(struct exec *x)
{
	int rc;

	if (!x->has_prev)
		return 0;
	for (size_t l = x->n_breaks; l-- > 0;)
		if ((rc = emit_sums(x, l)))
			return rc;
	if (x->has_total)
		return emit_sums(x, x->n_breaks);
	return 0;
}

/* ---- sorting ---- */

static bool is_sorted(const struct pick_query *q)
{
	return q->verb == PICK_SORT || q->n_sorts > 0;
}

/* Appends v normalized for a memcmp in justify's order (see the top). */
static int append_norm(struct buf *b, const uint8_t *v, size_t len, char justify)
{
	double d;

	if (justify != 'R')
		return buf_append(b, v, len);
	if (len == 0)
		return buf_append_u8(b, 0);
	if (pick_number(v, len, &d)) {
		uint64_t bits;

		if (d == 0)
			d = 0; /* -0 sorts as 0 */
		memcpy(&bits, &d, sizeof(bits));
		bits = (bits & (1ull << 63)) ? ~bits : bits | (1ull << 63);
		return buf_append_u8(b, 1) || buf_append_u64be(b, bits);
	}
	{
		uint8_t be[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
				 (uint8_t)len};

		return buf_append_u8(b, 2) || buf_append(b, be, 4) || buf_append(b, v, len);
	}
}

/* Appends v escaped so that the encoding keeps v's byte order and is
 * prefix-free: 0x00 as 0x00 0xFF, then the end 0x00 0x01. */
static int append_escaped(struct buf *b, const uint8_t *v, size_t len)
{
	for (size_t i = 0; i < len;) {
		const uint8_t *z = memchr(v + i, 0, len - i);
		size_t n = z ? (size_t)(z - (v + i)) : len - i;

		if (buf_append(b, v + i, n))
			return US_ENOMEM;
		i += n;
		if (z) {
			if (buf_append_u8(b, 0) || buf_append_u8(b, 0xFF))
				return US_ENOMEM;
			i++;
		}
	}
	return buf_append_u8(b, 0) || buf_append_u8(b, 1) ? US_ENOMEM : 0;
}

struct key_ctx {
	struct buf *b;
	struct buf *tmp;
	char justify;
};

/* One value of a sort key, normalized then escaped. */
static int append_key_value(void *arg, const uint8_t *v, size_t len)
{
	struct key_ctx *k = arg;

	buf_reset(k->tmp);
	if (append_norm(k->tmp, v, len, k->justify))
		return US_ENOMEM;
	return append_escaped(k->b, k->tmp->p ? k->tmp->p : (const uint8_t *)"", k->tmp->len);
}

/* The item's sort record (see the top): its sort key, id, body and the
 * two lengths, into h's sorter. */
static int sort_add(struct half *h, const struct pick_item *it)
{
	struct exec *x = h->x;
	struct buf *r = &h->rec;
	size_t key_len;

	buf_reset(r);
	for (size_t k = 0; k < x->q->n_sorts; k++) {
		struct key_ctx kc = {.b = r, .tmp = &h->key, .justify = x->sort_attrs[k]->justify};
		size_t at = r->len;

		if (pick_attr_values(x->sort_attrs[k], it, append_key_value, &kc) ||
		    buf_append_u8(r, 0) || buf_append_u8(r, 0))
			return err_set(&h->err, US_ENOMEM, "out of memory");
		if (x->q->sorts[k].is_desc)
			for (size_t i = at; i < r->len; i++)
				r->p[i] = (uint8_t)~r->p[i];
	}
	if (x->id_attr->justify == 'R') {
		struct key_ctx kc = {.b = r, .tmp = &h->key, .justify = 'R'};

		if (append_key_value(&kc, it->id, it->id_len))
			return err_set(&h->err, US_ENOMEM, "out of memory");
	}
	if (append_escaped(r, it->id, it->id_len))
		return err_set(&h->err, US_ENOMEM, "out of memory");
	key_len = r->len;
	if (buf_append(r, it->id, it->id_len) || buf_append(r, it->body, it->len) ||
	    buf_append_u32le(r, (uint32_t)key_len) || buf_append_u32le(r, (uint32_t)it->id_len))
		return err_set(&h->err, US_ENOMEM, "out of memory");
	if (r->len > US_SORTER_RECORD_MAX_BYTES) {
		char shown[80];

		return err_set(&h->err, US_ETOOBIG,
			       "item %s is too large to sort (%zu bytes with its sort keys, over %u)",
			       err_show(shown, sizeof(shown), it->id, it->id_len), r->len,
			       US_SORTER_RECORD_MAX_BYTES);
	}
	return sorter_add(h->sorter, r->p, r->len, &h->err);
}

static int memcmp_len(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	int c = al && bl ? memcmp(a, b, al < bl ? al : bl) : 0;

	return c ? c : (al > bl) - (al < bl);
}

static int emit_record(struct exec *x, const uint8_t *rec, size_t len)
{
	size_t key_len = buf_get_u32le(rec + len - 8);
	struct pick_item it = {.id = rec + key_len, .id_len = buf_get_u32le(rec + len - 4)};

	it.body = it.id + it.id_len;
	it.len = len - 8 - key_len - it.id_len;
	return emit_item(x, &it);
}

/* The halves' sorted records, merged (two sorters, or one). */
static int emit_sorted(struct exec *x)
{
	const uint8_t *rec[2] = {NULL, NULL};
	size_t len[2] = {0, 0};
	int has[2] = {0, 0};
	int rc = 0;

	for (size_t i = 0; i < x->n_halves; i++) {
		if ((rc = sorter_finish(x->halves[i].sorter, x->err)))
			return rc;
		if ((has[i] = sorter_next(x->halves[i].sorter, &rec[i], &len[i], x->err)) < 0)
			return has[i];
		x->st->sort_runs += sorter_runs(x->halves[i].sorter);
	}
	while (has[0] == 1 || has[1] == 1) {
		size_t i = has[0] != 1 ? 1
			   : has[1] != 1 ? 0
			   : memcmp_len(rec[0], len[0], rec[1], len[1]) <= 0 ? 0 : 1;

		if ((rc = emit_record(x, rec[i], len[i])))
			return rc;
		has[i] = sorter_next(x->halves[i].sorter, &rec[i], &len[i], x->err);
		if (has[i] < 0)
			return has[i];
	}
	return 0;
}

/* ---- the items ---- */

static bool is_cancelled(struct exec *x)
{
	return atomic_load(&x->is_failed) ||
	       (x->opts && x->opts->is_cancelled && x->opts->is_cancelled(x->opts->cancel_arg));
}

/* An item read: selected, then counted, sorted or shown (shown only in a
 * scan of one thread, in id order). */
static int take(struct half *h, const struct pick_item *it)
{
	struct exec *x = h->x;

	h->scanned++;
	if (!pick_select(x->q, x->cond_attrs, it))
		return 0;
	if (x->q->verb == PICK_COUNT) {
		h->counted++;
		return 0;
	}
	if (h->sorter)
		return sort_add(h, it);
	return emit_item(x, it);
}

/* A failure of h's on the query's thread: its words go to the query's err
 * when it was h's own (a sort, a read), not the sink's. */
static int half_err(struct exec *x, const struct half *h, int rc)
{
	if (rc && h->err.code)
		*x->err = h->err;
	return rc;
}

static int take_ids(struct exec *x)
{
	struct half *h = &x->halves[0];
	int rc = 0;

	for (size_t i = 0; i < x->q->n_ids && rc == 0; i++) {
		const char *id = x->q->ids[i];
		struct pick_item it = {.id = (const uint8_t *)id, .id_len = strlen(id)};

		buf_reset(&x->body);
		rc = store_get(x->s, x->at, x->account, x->q->file, x->section, it.id, it.id_len,
			       &x->body, x->err);
		if (rc == US_ENOTFOUND) {
			x->st->missing++;
			rc = x->sink->on_row(x->sink->arg, PICK_ROW_MISSING, it.id, it.id_len, NULL, 0);
			continue;
		}
		if (rc)
			break;
		it.body = x->body.p ? x->body.p : (const uint8_t *)"";
		it.len = x->body.len;
		rc = take(h, &it);
	}
	return half_err(x, h, rc);
}

/* One thread's scan, alone: every item in id order. */
static int scan_alone(struct exec *x)
{
	struct half *h = &x->halves[0];
	struct store_iter *iter = NULL;
	int rc;

	if ((rc = store_iter_new(x->s, x->at, x->account, x->q->file, x->section, NULL, 0, &iter,
				 &h->err)))
		return rc;
	for (;;) {
		struct pick_item it;

		if ((h->scanned & 1023) == 0 && is_cancelled(x)) {
			rc = err_set(&h->err, US_ECANCELLED, "query cancelled");
			break;
		}
		rc = store_iter_next(iter, &it.id, &it.id_len, &it.body, &it.len, &h->err);
		if (rc <= 0)
			break;
		if ((rc = take(h, &it)))
			break;
	}
	store_iter_free(iter);
	return rc;
}

/* ---- a scan in two halves ----
 * COUNT and sorted queries do not need the items in id order: two threads
 * read the file, the first upward from the first id, the second downward
 * from the last, US_PICK_SCAN_BATCH items at a time (copied out of the
 * iterator). Before taking a batch, a thread keeps only the items the other
 * has not taken (under meet_lock: ids below the second's lowest, or above
 * the first's highest), records the last one it keeps, and stops at the
 * first it may not keep: each reads a run of ids without gaps, so every
 * item is taken exactly once, wherever the two meet, and the faster thread
 * takes the larger part. */

static int batch_item(const struct half *h, size_t i, struct pick_item *it)
{
	const uint8_t *p = h->batch.p + h->offs[i];

	it->id_len = buf_get_u32le(p);
	it->id = p + 4;
	it->len = buf_get_u32le(p + 4 + it->id_len);
	it->body = p + 8 + it->id_len;
	return 0;
}

/* How many of the batch's n items h may take; records its frontier. */
static size_t claim(struct half *h, size_t n, bool *is_met)
{
	struct exec *x = h->x;
	struct buf *mine = h->is_reverse ? &x->meet_down : &x->meet_up;
	const struct buf *theirs = h->is_reverse ? &x->meet_up : &x->meet_down;
	bool has_theirs;
	size_t keep = 0;

	pthread_mutex_lock(&x->meet_lock);
	has_theirs = h->is_reverse ? x->has_up : x->has_down;
	for (; keep < n; keep++) {
		struct pick_item it;
		int c;

		if (!has_theirs)
			continue;
		batch_item(h, keep, &it);
		c = memcmp_len(it.id, it.id_len, theirs->p, theirs->len);
		if (h->is_reverse ? c <= 0 : c >= 0)
			break;
	}
	*is_met = keep < n;
	if (keep > 0) {
		struct pick_item last;

		batch_item(h, keep - 1, &last);
		/* room for the new frontier first: a failure leaves the old one */
		if (buf_reserve(mine, last.id_len)) {
			pthread_mutex_unlock(&x->meet_lock);
			*is_met = true;
			return SIZE_MAX;
		}
		buf_reset(mine);
		(void)buf_append(mine, last.id, last.id_len); /* cannot fail: reserved */
		if (h->is_reverse)
			x->has_down = true;
		else
			x->has_up = true;
	}
	pthread_mutex_unlock(&x->meet_lock);
	return keep;
}

static void *scan_half(void *arg)
{
	struct half *h = arg;
	struct exec *x = h->x;
	struct store_iter *iter = NULL;
	bool is_end = false;
	int rc;

	if (h->is_reverse)
		rc = store_iter_new_reverse(x->s, x->at, x->account, x->q->file, x->section, &iter,
					    &h->err);
	else
		rc = store_iter_new(x->s, x->at, x->account, x->q->file, x->section, NULL, 0,
				    &iter, &h->err);
	while (rc == 0 && !is_end) {
		size_t n = 0, keep;
		bool is_met;

		if (is_cancelled(x)) {
			rc = err_set(&h->err, US_ECANCELLED, "query cancelled");
			break;
		}
		buf_reset(&h->batch);
		while (n < US_PICK_SCAN_BATCH && (n == 0 || h->batch.len < US_PICK_SCAN_BATCH_BYTES)) {
			struct pick_item it;
			int got = store_iter_next(iter, &it.id, &it.id_len, &it.body, &it.len,
						  &h->err);

			if (got < 0) {
				rc = got;
				break;
			}
			if (got == 0) {
				is_end = true;
				break;
			}
			h->offs[n++] = h->batch.len;
			if (buf_append_u32le(&h->batch, (uint32_t)it.id_len) ||
			    buf_append(&h->batch, it.id, it.id_len) ||
			    buf_append_u32le(&h->batch, (uint32_t)it.len) ||
			    buf_append(&h->batch, it.body, it.len)) {
				rc = err_set(&h->err, US_ENOMEM, "out of memory");
				break;
			}
		}
		if (rc)
			break;
		keep = claim(h, n, &is_met);
		if (keep == SIZE_MAX) {
			rc = err_set(&h->err, US_ENOMEM, "out of memory");
			break;
		}
		for (size_t i = 0; i < keep && rc == 0; i++) {
			struct pick_item it;

			batch_item(h, i, &it);
			rc = take(h, &it);
		}
		if (is_met)
			break;
	}
	store_iter_free(iter);
	h->rc = rc;
	if (rc)
		atomic_store(&x->is_failed, true); /* the other half stops too */
	return NULL;
}

static int scan_parallel(struct exec *x)
{
	pthread_t thread;
	int rc;

	for (size_t i = 0; i < 2; i++) {
		x->halves[i].offs = calloc(US_PICK_SCAN_BATCH, sizeof(size_t));
		if (!x->halves[i].offs)
			return err_set(x->err, US_ENOMEM, "out of memory");
	}
	/* the second half on a thread of its own (nice as this one: Linux
	 * threads inherit it), the first on this one */
	if (pthread_create(&thread, NULL, scan_half, &x->halves[1]) != 0)
		return half_err(x, &x->halves[0], scan_alone(x));
	scan_half(&x->halves[0]);
	if (pthread_join(thread, NULL) != 0)
		return err_set(x->err, US_EIO, "cannot join a query's second thread");
	/* the first failure, not the cancel it caused in the other half */
	for (size_t i = 0; i < 2; i++)
		if ((rc = x->halves[i].rc) && rc != US_ECANCELLED) {
			*x->err = x->halves[i].err;
			return rc;
		}
	for (size_t i = 0; i < 2; i++)
		if ((rc = x->halves[i].rc)) {
			*x->err = x->halves[i].err;
			return rc;
		}
	return 0;
}

/* The scan: in two halves when the order of reading does not matter. */
static int take_scan(struct exec *x)
{
	if (x->n_halves == 2)
		return scan_parallel(x);
	return half_err(x, &x->halves[0], scan_alone(x));
}

static void exec_release(struct exec *x)
{
	for (size_t i = 0; i < x->n_cache; i++)
		free(x->cache[i]);
	free(x->cache);
	free(x->cond_attrs);
	free(x->sort_attrs);
	for (size_t i = 0; x->cells && i < x->n_cols; i++)
		buf_release(&x->cells[i]);
	for (size_t i = 0; x->break_prev && i < x->n_cols; i++)
		buf_release(&x->break_prev[i]);
	free(x->cells);
	free(x->break_prev);
	free(x->break_cols);
	free(x->cols);
	free(x->sums);
	buf_release(&x->conv);
	buf_release(&x->body);
	for (size_t i = 0; i < 2; i++) {
		sorter_free(x->halves[i].sorter);
		buf_release(&x->halves[i].rec);
		buf_release(&x->halves[i].key);
		buf_release(&x->halves[i].batch);
		free(x->halves[i].offs);
	}
	buf_release(&x->meet_up);
	buf_release(&x->meet_down);
	pthread_mutex_destroy(&x->meet_lock);
}

int pick_exec_run(struct store *s, const struct store_snap *at, const char *account,
		  const struct pick_query *q, const struct pick_exec_opts *opts,
		  const struct pick_sink *sink, struct pick_exec_stats *stats,
		  struct us_err *err)
{
	struct exec x = {.s = s, .at = at, .account = account, .q = q, .opts = opts,
			 .sink = sink, .st = stats, .err = err,
			 .section = q->is_dict ? SECTION_DICT : SECTION_DATA};
	bool is_found = false;
	int rc;

	memset(stats, 0, sizeof(*stats));
	buf_init(&x.conv);
	buf_init(&x.body);
	buf_init(&x.meet_up);
	buf_init(&x.meet_down);
	pthread_mutex_init(&x.meet_lock, NULL);
	for (size_t i = 0; i < 2; i++) {
		x.halves[i].x = &x;
		x.halves[i].is_reverse = i == 1;
		buf_init(&x.halves[i].rec);
		buf_init(&x.halves[i].key);
		buf_init(&x.halves[i].batch);
	}
	if ((rc = store_has_files(s, at, account, q->file, &is_found, err)))
		goto out;
	if (!is_found) {
		rc = err_set(err, US_ENOTFOUND, "file %s/%s does not exist", account, q->file);
		goto out;
	}
	if ((rc = resolve(&x)))
		goto out;
	if (sink->on_columns && (rc = sink->on_columns(sink->arg, x.cols, x.n_cols)))
		goto out;
	x.is_sorting = is_sorted(q) && q->verb != PICK_COUNT;
	/* two threads read when the order they read in does not matter */
	x.n_halves = !q->n_ids && (x.is_sorting || q->verb == PICK_COUNT) &&
				 !(opts && opts->is_one_thread)
			     ? 2 : 1;
	for (size_t i = 0; x.is_sorting && i < x.n_halves; i++) {
		size_t mem = opts && opts->sort_mem_bytes ? opts->sort_mem_bytes
							  : US_PICK_SORT_MEM_BYTES;

		if ((rc = sorter_new(&x.halves[i].sorter, NULL, NULL, mem / x.n_halves,
				     opts && opts->tmp_dir ? opts->tmp_dir : "/tmp", err)))
			goto out;
	}
	rc = q->n_ids ? take_ids(&x) : take_scan(&x);
	for (size_t i = 0; i < x.n_halves; i++) {
		stats->scanned += x.halves[i].scanned;
		stats->items += x.halves[i].counted;
	}
	if (rc == 0 && x.is_sorting)
		rc = emit_sorted(&x);
	if (rc == 0)
		rc = emit_end(&x);
out:
	exec_release(&x);
	return rc;
}
