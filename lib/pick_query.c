/*
 * pick_query.c - the sentence parser (pick_query.h): a tokenizer (words and
 * quoted strings, each with its position) and one pass over the tokens.
 */
#include "pick_query.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct token {
	const char *p;   /* into the sentence (a quoted one: inside the quotes) */
	size_t len;
	size_t pos;      /* 1-based position of its first character */
	bool is_quoted;
};

struct parser {
	struct token *t;
	size_t n, at;
	struct pick_query *q;
	struct us_err *err;
};

static int tokenize(const char *s, struct token **out, size_t *n_out, struct us_err *err)
{
	size_t len = strlen(s), n = 0, cap = 0, i = 0;
	struct token *t = NULL;

	while (i < len) {
		struct token k = {0};

		if (isspace((unsigned char)s[i])) {
			i++;
			continue;
		}
		k.pos = i + 1;
		if (s[i] == '"' || s[i] == '\'' || s[i] == '\\') {
			const char *end = memchr(s + i + 1, s[i], len - i - 1);

			if (!end) {
				free(t);
				return err_set(err, US_EINVAL,
					       "a quoted string at position %zu is not closed", k.pos);
			}
			k.p = s + i + 1;
			k.len = (size_t)(end - k.p);
			k.is_quoted = true;
			i = (size_t)(end - s) + 1;
		} else {
			k.p = s + i;
			while (i < len && !isspace((unsigned char)s[i]) && s[i] != '"' && s[i] != '\'')
				i++;
			k.len = (size_t)(s + i - k.p);
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct token *nt = realloc(t, ncap * sizeof(*nt));

			if (!nt) {
				free(t);
				return err_set(err, US_ENOMEM, "out of memory");
			}
			t = nt;
			cap = ncap;
		}
		t[n++] = k;
	}
	*out = t;
	*n_out = n;
	return 0;
}

static bool is_word(const struct token *k, const char *w)
{
	return k && !k->is_quoted && k->len == strlen(w) && strncasecmp(k->p, w, k->len) == 0;
}

static const struct token *peek(const struct parser *ps)
{
	return ps->at < ps->n ? &ps->t[ps->at] : NULL;
}

static int unexpected(struct parser *ps, const struct token *k, const char *want)
{
	char shown[80];

	if (!k)
		return err_set(ps->err, US_EINVAL, "the sentence ends where %s was expected", want);
	return err_set(ps->err, US_EINVAL, "unexpected '%s' at position %zu: %s expected",
		       err_show(shown, sizeof(shown), k->p, k->len), k->pos, want);
}

static char *dup_token(const struct token *k)
{
	char *s = malloc(k->len + 1);

	if (s) {
		memcpy(s, k->p, k->len);
		s[k->len] = '\0';
	}
	return s;
}

/* Grows *v (n elements of size) by one, zeroed; NULL on no memory. */
static void *grow(void **v, size_t *n, size_t size)
{
	char *p = realloc(*v, (*n + 1) * size);

	if (!p)
		return NULL;
	*v = p;
	memset(p + *n * size, 0, size);
	return p + (*n)++ * size;
}

static const char *const keywords[] = {"WITH", "WITHOUT", "AND", "OR", "BY", "BY-DSND", "TOTAL",
				       "BREAK-ON", "ID-SUPP", "HDR-SUPP", "COL-HDR-SUPP", NULL};

static bool is_keyword(const struct token *k)
{
	for (size_t i = 0; keywords[i]; i++)
		if (is_word(k, keywords[i]))
			return true;
	return false;
}

/* An attribute name: a bare word that is not a keyword. */
static int attr_name(struct parser *ps, char **out, const char *after)
{
	const struct token *k = peek(ps);
	char want[64];

	snprintf(want, sizeof(want), "an attribute name after %s", after);
	if (!k || k->is_quoted || is_keyword(k))
		return unexpected(ps, k, want);
	if (k->len > US_ID_MAX_LEN)
		return err_set(ps->err, US_EINVAL, "attribute name at position %zu is over %d bytes",
			       k->pos, US_ID_MAX_LEN);
	if (!(*out = dup_token(k)))
		return err_set(ps->err, US_ENOMEM, "out of memory");
	ps->at++;
	return 0;
}

static int parse_op(const struct token *k, uint8_t *op)
{
	static const struct {
		const char *w;
		uint8_t op;
	} ops[] = {{"=", PICK_OP_EQ},   {"EQ", PICK_OP_EQ}, {"#", PICK_OP_NE},    {"NE", PICK_OP_NE},
		   {"NOT", PICK_OP_NE}, {"<", PICK_OP_LT},  {"LT", PICK_OP_LT},   {">", PICK_OP_GT},
		   {"GT", PICK_OP_GT},  {"<=", PICK_OP_LE}, {"LE", PICK_OP_LE},   {">=", PICK_OP_GE},
		   {"GE", PICK_OP_GE},  {"LIKE", PICK_OP_LIKE}};

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (is_word(k, ops[i].w)) {
			*op = ops[i].op;
			return 0;
		}
	return -1;
}

static int parse_cond(struct parser *ps, bool is_without, bool is_or)
{
	struct pick_cond *c = grow((void **)&ps->q->conds, &ps->q->n_conds, sizeof(*c));
	const struct token *k;
	int rc;

	if (!c)
		return err_set(ps->err, US_ENOMEM, "out of memory");
	c->is_without = is_without;
	c->is_or = is_or;
	if ((rc = attr_name(ps, &c->attr, is_without ? "WITHOUT" : "WITH")))
		return rc;
	k = peek(ps);
	if (k && !k->is_quoted && parse_op(k, &c->op) == 0) {
		ps->at++;
		if (!peek(ps) || !peek(ps)->is_quoted)
			return unexpected(ps, peek(ps), "a quoted value after the operator");
	} else if (k && k->is_quoted) {
		c->op = PICK_OP_EQ; /* WITH STATE "CA": equal */
	}
	while ((k = peek(ps)) && k->is_quoted) {
		char **v = grow((void **)&c->values, &c->n_values, sizeof(*v));

		if (!v || !(*v = dup_token(k)))
			return err_set(ps->err, US_ENOMEM, "out of memory");
		ps->at++;
	}
	return 0;
}

int pick_query_parse(const char *sentence, struct pick_query *q, struct us_err *err)
{
	struct parser ps = {.q = q, .err = err};
	const struct token *k;
	bool is_cond_next_or = false;
	int rc;

	memset(q, 0, sizeof(*q));
	if (strlen(sentence) > US_PICK_SENTENCE_MAX_LEN)
		return err_set(err, US_EINVAL, "the sentence is over %d bytes",
			       US_PICK_SENTENCE_MAX_LEN);
	if ((rc = tokenize(sentence, &ps.t, &ps.n, err)))
		return rc;
	k = peek(&ps);
	if (is_word(k, "LIST"))
		q->verb = PICK_LIST;
	else if (is_word(k, "SORT"))
		q->verb = PICK_SORT;
	else if (is_word(k, "COUNT"))
		q->verb = PICK_COUNT;
	else if (is_word(k, "SELECT") || is_word(k, "SSELECT"))
		q->verb = PICK_SELECT;
	else {
		rc = unexpected(&ps, k, "LIST, SORT, COUNT or SELECT");
		goto out;
	}
	ps.at++;
	if (is_word(peek(&ps), "DICT")) {
		q->is_dict = true;
		ps.at++;
	}
	if ((rc = attr_name(&ps, &q->file, "the verb")))
		goto out;
	while ((k = peek(&ps)) && k->is_quoted) {
		char **v = grow((void **)&q->ids, &q->n_ids, sizeof(*v));

		if (!v || !(*v = dup_token(k))) {
			rc = err_set(err, US_ENOMEM, "out of memory");
			goto out;
		}
		ps.at++;
	}
	while ((k = peek(&ps)) && rc == 0) {
		if (is_word(k, "WITH") || is_word(k, "WITHOUT")) {
			ps.at++;
			rc = parse_cond(&ps, is_word(k, "WITHOUT"), is_cond_next_or);
			is_cond_next_or = false;
		} else if (is_word(k, "AND") || is_word(k, "OR")) {
			if (q->n_conds == 0) {
				rc = unexpected(&ps, k, "a selection (WITH) before AND or OR");
				break;
			}
			is_cond_next_or = is_word(k, "OR");
			ps.at++;
			k = peek(&ps);
			if (is_word(k, "WITH") || is_word(k, "WITHOUT"))
				continue;
			/* AND attr ...: an implied WITH */
			rc = parse_cond(&ps, false, is_cond_next_or);
			is_cond_next_or = false;
		} else if (is_word(k, "BY") || is_word(k, "BY-DSND")) {
			struct pick_sort *s = grow((void **)&q->sorts, &q->n_sorts, sizeof(*s));

			ps.at++;
			if (!s) {
				rc = err_set(err, US_ENOMEM, "out of memory");
				break;
			}
			s->is_desc = is_word(k, "BY-DSND");
			rc = attr_name(&ps, &s->attr, s->is_desc ? "BY-DSND" : "BY");
		} else if (is_word(k, "TOTAL") || is_word(k, "BREAK-ON") || !is_keyword(k)) {
			struct pick_col *c;

			if (k->is_quoted) { /* ids were taken right after the file */
				char shown[80];

				rc = err_set(err, US_EINVAL,
					     "item id '%s' at position %zu after a clause: ids come "
					     "right after the file name",
					     err_show(shown, sizeof(shown), k->p, k->len), k->pos);
				break;
			}
			c = grow((void **)&q->cols, &q->n_cols, sizeof(*c));
			if (!c) {
				rc = err_set(err, US_ENOMEM, "out of memory");
				break;
			}
			if (is_word(k, "TOTAL") || is_word(k, "BREAK-ON")) {
				c->is_total = is_word(k, "TOTAL");
				c->is_break = !c->is_total;
				ps.at++;
			}
			rc = attr_name(&ps, &c->attr,
				       c->is_total ? "TOTAL" : c->is_break ? "BREAK-ON" : "the file");
		} else if (is_word(k, "ID-SUPP")) {
			q->is_id_supp = true;
			ps.at++;
		} else if (is_word(k, "HDR-SUPP")) {
			q->is_hdr_supp = true;
			ps.at++;
		} else {
			q->is_col_hdr_supp = true; /* COL-HDR-SUPP: the last keyword */
			ps.at++;
		}
	}
	if (rc == 0 && (q->n_conds > US_PICK_COLS_MAX || q->n_sorts > US_PICK_COLS_MAX ||
			q->n_cols > US_PICK_COLS_MAX)) {
		rc = err_set(err, US_EINVAL, "the sentence has over %d selections, sort keys or "
					     "output attributes", US_PICK_COLS_MAX);
	}
	if (rc == 0 && q->verb == PICK_COUNT && (q->n_cols || q->n_sorts)) {
		rc = err_set(err, US_EINVAL, "COUNT takes selections only: no sort keys and no "
					     "output attributes");
	}
out:
	free(ps.t);
	return rc;
}

void pick_query_release(struct pick_query *q)
{
	free(q->file);
	for (size_t i = 0; i < q->n_ids; i++)
		free(q->ids[i]);
	free(q->ids);
	for (size_t i = 0; i < q->n_conds; i++) {
		free(q->conds[i].attr);
		for (size_t j = 0; j < q->conds[i].n_values; j++)
			free(q->conds[i].values[j]);
		free(q->conds[i].values);
	}
	free(q->conds);
	for (size_t i = 0; i < q->n_sorts; i++)
		free(q->sorts[i].attr);
	free(q->sorts);
	for (size_t i = 0; i < q->n_cols; i++)
		free(q->cols[i].attr);
	free(q->cols);
	memset(q, 0, sizeof(*q));
}
