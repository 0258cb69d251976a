/*
 * pick_eval.c - selections (pick_eval.h).
 */
#include "pick_eval.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

int pick_attr_values(const struct pick_attr *a, const struct pick_item *it, pick_value_fn fn,
		     void *arg)
{
	const uint8_t *p = it->body, *end = it->body + it->len;
	struct buf conv;
	int rc = 0;

	if (a->field == 0) {
		p = it->id;
		end = it->id + it->id_len;
	} else {
		for (uint32_t f = 1; f < a->field && p; f++) {
			const uint8_t *am = p < end ? memchr(p, PICK_AM, (size_t)(end - p)) : NULL;

			p = am ? am + 1 : NULL;
		}
		if (!p)
			return fn(arg, (const uint8_t *)"", 0);
		{
			const uint8_t *am = memchr(p, PICK_AM, (size_t)(end - p));

			if (am)
				end = am;
		}
	}
	buf_init(&conv);
	for (const uint8_t *v = p;; ) {
		const uint8_t *stop = v;

		while (stop < end && *stop != PICK_VM && *stop != PICK_SVM)
			stop++;
		if (a->correlative.n) {
			buf_reset(&conv);
			rc = pick_conv_apply(&a->correlative, v, (size_t)(stop - v), &conv);
			rc = rc ? rc : fn(arg, conv.p ? conv.p : (const uint8_t *)"", conv.len);
		} else {
			rc = fn(arg, v, (size_t)(stop - v));
		}
		if (rc || stop >= end)
			break;
		v = stop + 1;
	}
	buf_release(&conv);
	return rc;
}

/* A number: [+-]digits[.digits] or [+-].digits. */
bool pick_number(const uint8_t *p, size_t len, double *out)
{
	char tmp[64], *e;
	size_t i = 0, digits = 0;
	bool has_dot = false;

	if (len == 0 || len >= sizeof(tmp))
		return false;
	if (p[0] == '-' || p[0] == '+')
		i = 1;
	for (; i < len; i++) {
		if (p[i] == '.' && !has_dot)
			has_dot = true;
		else if (p[i] >= '0' && p[i] <= '9')
			digits++;
		else
			return false;
	}
	if (digits == 0)
		return false;
	memcpy(tmp, p, len);
	tmp[len] = '\0';
	*out = strtod(tmp, &e);
	return e == tmp + len;
}

int pick_compare(const uint8_t *a, size_t al, const uint8_t *b, size_t bl, char justify)
{
	double x, y;
	int c;

	if (pick_number(a, al, &x) && pick_number(b, bl, &y))
		return x < y ? -1 : x > y;
	if (justify == 'R' && al != bl) { /* the shorter padded with blanks on the left */
		size_t n = al > bl ? al : bl;

		for (size_t i = 0; i < n; i++) {
			uint8_t ca = i < n - al ? ' ' : a[i - (n - al)];
			uint8_t cb = i < n - bl ? ' ' : b[i - (n - bl)];

			if (ca != cb)
				return ca < cb ? -1 : 1;
		}
		return 0;
	}
	c = al && bl ? memcmp(a, b, al < bl ? al : bl) : 0;
	return c ? c : (al > bl) - (al < bl);
}

static bool has_at(const uint8_t *v, size_t vl, const char *s, size_t sl, size_t at)
{
	return at + sl <= vl && (sl == 0 || memcmp(v + at, s, sl) == 0);
}

static bool contains(const uint8_t *v, size_t vl, const char *s, size_t sl)
{
	for (size_t i = 0; i + sl <= vl; i++)
		if (memcmp(v + i, s, sl) == 0)
			return true;
	return sl == 0;
}

/* = with a [ ] pattern, or LIKE with ...: whether v matches pat. */
static bool pattern_matches(const uint8_t *v, size_t vl, const char *pat, bool is_like)
{
	size_t pl = strlen(pat);
	const char *wild = is_like ? "..." : NULL;
	bool is_head = false, is_tail = false; /* anything before / after */

	if (is_like) {
		if (pl >= 3 && memcmp(pat, wild, 3) == 0) {
			is_head = true;
			pat += 3;
			pl -= 3;
		}
		if (pl >= 3 && memcmp(pat + pl - 3, wild, 3) == 0) {
			is_tail = true;
			pl -= 3;
		}
	} else {
		if (pl >= 1 && pat[0] == '[') {
			is_head = true;
			pat++;
			pl--;
		}
		if (pl >= 1 && pat[pl - 1] == ']') {
			is_tail = true;
			pl--;
		}
	}
	if (is_head && is_tail)
		return contains(v, vl, pat, pl);
	if (is_head)
		return pl <= vl && has_at(v, vl, pat, pl, vl - pl);
	if (is_tail)
		return has_at(v, vl, pat, pl, 0);
	return vl == pl && (pl == 0 || memcmp(v, pat, pl) == 0);
}

static bool value_matches(const struct pick_cond *c, char justify, const uint8_t *v, size_t vl)
{
	if (c->op == PICK_OP_PRESENT)
		return vl > 0;
	for (size_t i = 0; i < c->n_values; i++) {
		const char *want = c->values[i];
		size_t wl = strlen(want);
		int cmp;

		switch (c->op) {
		case PICK_OP_EQ:
		case PICK_OP_NE: {
			bool is_pattern = wl && (want[0] == '[' || want[wl - 1] == ']');
			bool eq = is_pattern ? pattern_matches(v, vl, want, false)
					     : pick_compare(v, vl, (const uint8_t *)want, wl, justify) == 0;

			if (eq == (c->op == PICK_OP_EQ))
				return true;
			continue;
		}
		case PICK_OP_LIKE:
			if (pattern_matches(v, vl, want, true))
				return true;
			continue;
		default:
			cmp = pick_compare(v, vl, (const uint8_t *)want, wl, justify);
			if ((c->op == PICK_OP_LT && cmp < 0) || (c->op == PICK_OP_GT && cmp > 0) ||
			    (c->op == PICK_OP_LE && cmp <= 0) || (c->op == PICK_OP_GE && cmp >= 0))
				return true;
		}
	}
	return false;
}

struct match_ctx {
	const struct pick_cond *c;
	char justify;
};

static int on_value(void *arg, const uint8_t *v, size_t len)
{
	struct match_ctx *m = arg;

	return value_matches(m->c, m->justify, v, len) ? 1 : 0;
}

static bool cond_matches(const struct pick_cond *c, const struct pick_attr *a,
			 const struct pick_item *it)
{
	struct match_ctx m = {.c = c, .justify = a->justify};
	bool any = pick_attr_values(a, it, on_value, &m) == 1;

	return c->is_without ? !any : any;
}

bool pick_select(const struct pick_query *q, const struct pick_attr *const *attrs,
		 const struct pick_item *it)
{
	bool result = false, group = true;

	if (q->n_conds == 0)
		return true;
	/* OR of AND-groups */
	for (size_t i = 0; i < q->n_conds; i++) {
		if (i > 0 && q->conds[i].is_or) {
			result = result || group;
			group = true;
		}
		group = group && cond_matches(&q->conds[i], attrs[i], it);
	}
	return result || group;
}
