/*
 * cli_query.c - `understudy query NS ACCOUNT 'SENTENCE'`: a report run by the
 * daemon (Store.Query, docs/reports.md), shown as Pick shows it or as CSV
 * or JSON for other tools.
 *
 * Rows are printed as they come: memory does not grow with the report.
 * The columnar report goes through a pager ($PAGER, else less) only when
 * stdout is a terminal.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "cli.h"

enum report_format { FMT_TEXT, FMT_CSV, FMT_JSON };

struct report_col {
	char key[80];            /* CSV header and JSON key: the name, made unique */
	uint32_t width;
	char justify;
};

/* One line's piece of a column. */
struct piece {
	const uint8_t *p;
	size_t len;
};

struct report {
	FILE *out;
	enum report_format fmt;
	const char *vm_sep, *sv_sep;
	char verb[8];
	struct report_col *cols;
	size_t n_cols;
	struct piece **pieces;   /* per column, this row's lines */
	size_t *n_pieces, *cap_pieces;
	bool is_blank;           /* the last line printed was empty */
	bool is_failed;          /* a write failed (a pager quit): stop quietly */
};

static int put(struct report *r, const void *p, size_t len)
{
	if (len && fwrite(p, 1, len, r->out) != len) {
		r->is_failed = true;
		return -1;
	}
	return 0;
}

static int put_str(struct report *r, const char *s)
{
	return put(r, s, strlen(s));
}

static int end_line(struct report *r, bool is_blank)
{
	r->is_blank = is_blank;
	return put(r, "\n", 1);
}

/* ---- the head ---- */

static const char *const months[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
				     "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};

static int text_head(struct report *r, const us_query_head_t *h)
{
	size_t n_lines = 0;

	if (!h->is_hdr_supp) {
		char line[512];

		if (h->time_ms) {
			time_t t = (time_t)(h->time_ms / 1000);
			struct tm tm;

			gmtime_r(&t, &tm);
			snprintf(line, sizeof(line), "%s   at seq %llu   %02d:%02d:%02d %02d %s %04d UTC",
				 h->file, (unsigned long long)h->seq, tm.tm_hour, tm.tm_min,
				 tm.tm_sec, tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900);
		} else {
			snprintf(line, sizeof(line), "%s   at seq %llu", h->file,
				 (unsigned long long)h->seq);
		}
		put_str(r, line);
		end_line(r, false);
		end_line(r, true);
	}
	if (h->is_col_hdr_supp || h->n_columns == 0)
		return 0;
	for (size_t i = 0; i < h->n_columns; i++)
		if (h->columns[i].n_heading > n_lines)
			n_lines = h->columns[i].n_heading;
	for (size_t l = 0; l < n_lines; l++) {
		struct buf line;

		buf_init(&line);
		for (size_t i = 0; i < h->n_columns; i++) {
			const us_query_column_t *c = &h->columns[i];
			size_t len = l < c->n_heading ? c->heading[l].len : 0;

			if (i && buf_append_u8(&line, ' '))
				goto out_nomem;
			if (len && buf_append(&line, c->heading[l].p, len))
				goto out_nomem;
			/* Pick fills a heading's first line out with dots */
			for (size_t k = len; k < r->cols[i].width; k++)
				if (buf_append_u8(&line, l == 0 ? '.' : ' '))
					goto out_nomem;
		}
		while (line.len && line.p[line.len - 1] == ' ')
			line.len--;
		put(r, line.p, line.len);
		end_line(r, false);
		buf_release(&line);
		continue;
out_nomem:
		buf_release(&line);
		return cli_fail(EXIT_FAIL, "out of memory");
	}
	end_line(r, true);
	return 0;
}

static int csv_field(struct report *r, const uint8_t *p, size_t len)
{
	bool is_quoted = false;

	for (size_t i = 0; i < len && !is_quoted; i++)
		is_quoted = p[i] == ',' || p[i] == '"' || p[i] == '\r' || p[i] == '\n';
	if (!is_quoted)
		return put(r, p, len);
	put(r, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '"')
			put(r, "\"", 1);
		put(r, &p[i], 1);
	}
	return put(r, "\"", 1);
}

static int on_head(void *arg, const us_query_head_t *h)
{
	struct report *r = arg;

	snprintf(r->verb, sizeof(r->verb), "%s", h->verb);
	r->n_cols = h->n_columns;
	r->cols = calloc(h->n_columns + 1, sizeof(*r->cols));
	r->pieces = calloc(h->n_columns + 1, sizeof(*r->pieces));
	r->n_pieces = calloc(h->n_columns + 1, sizeof(*r->n_pieces));
	r->cap_pieces = calloc(h->n_columns + 1, sizeof(*r->cap_pieces));
	if (!r->cols || !r->pieces || !r->n_pieces || !r->cap_pieces)
		return cli_fail(EXIT_FAIL, "out of memory");
	for (size_t i = 0; i < h->n_columns; i++) {
		const us_query_column_t *c = &h->columns[i];
		struct report_col *o = &r->cols[i];
		int dup = 1;

		o->width = c->width ? c->width : 1;
		for (size_t l = 0; l < c->n_heading; l++)
			if (c->heading[l].len > o->width)
				o->width = (uint32_t)c->heading[l].len;
		o->justify = c->justify;
		for (size_t j = 0; j < i; j++)
			dup += strcmp(h->columns[j].name, c->name) == 0;
		if (dup > 1)
			snprintf(o->key, sizeof(o->key), "%.60s.%d", c->name, dup);
		else
			snprintf(o->key, sizeof(o->key), "%.70s", c->name);
	}
	if (r->fmt == FMT_TEXT)
		return strcmp(r->verb, "COUNT") == 0 || strcmp(r->verb, "SELECT") == 0
			       ? 0 : text_head(r, h);
	if (r->fmt == FMT_CSV && !h->is_col_hdr_supp) {
		if (strcmp(r->verb, "COUNT") == 0)
			put_str(r, "count\r\n");
		else if (strcmp(r->verb, "SELECT") == 0)
			put_str(r, "@ID\r\n");
		else {
			for (size_t i = 0; i < r->n_cols; i++) {
				if (i)
					put(r, ",", 1);
				csv_field(r, (const uint8_t *)r->cols[i].key, strlen(r->cols[i].key));
			}
			put_str(r, "\r\n");
		}
	}
	return 0;
}

/* ---- rows ---- */

static int add_piece(struct report *r, size_t c, const uint8_t *p, size_t len)
{
	if (r->n_pieces[c] == r->cap_pieces[c]) {
		size_t cap = r->cap_pieces[c] ? r->cap_pieces[c] * 2 : 8;
		struct piece *v = realloc(r->pieces[c], cap * sizeof(*v));

		if (!v)
			return -1;
		r->pieces[c] = v;
		r->cap_pieces[c] = cap;
	}
	r->pieces[c][r->n_pieces[c]++] = (struct piece){p, len};
	return 0;
}

/* One subvalue cut to the column's width: in chunks (L, R), or at the last
 * blank that fits (T). */
static int wrap(struct report *r, size_t c, const uint8_t *p, size_t len)
{
	size_t w = r->cols[c].width;

	if (len == 0)
		return add_piece(r, c, p, 0);
	while (len > 0) {
		size_t n = len < w ? len : w;

		if (r->cols[c].justify == 'T' && n < len && p[n] != ' ') {
			size_t k = n;

			while (k > 0 && p[k - 1] != ' ')
				k--;
			if (k > 0)
				n = k;
		}
		if (add_piece(r, c, p, n))
			return -1;
		p += n;
		len -= n;
		if (r->cols[c].justify == 'T')
			while (len > 0 && *p == ' ') {
				p++;
				len--;
			}
	}
	return 0;
}

static int text_row(struct report *r, const us_query_row_t *row)
{
	size_t n_lines = 0;
	struct buf line;
	int rc = 0;

	if (row->kind == US_ROW_TOTAL && !r->is_blank)
		end_line(r, true);
	for (size_t c = 0; c < r->n_cols && c < row->n_cells; c++) {
		const us_query_cell_t *cell = &row->cells[c];

		r->n_pieces[c] = 0;
		for (size_t v = 0; v < cell->n_values; v++) {
			const uint8_t *p = cell->values[v].p, *end = p + cell->values[v].len;

			for (;;) {
				const uint8_t *sv = p < end ? memchr(p, 0xFC, (size_t)(end - p)) : NULL;
				const uint8_t *stop = sv ? sv : end;

				/* a break or total line is not folded: its *** and sums
				 * may run past a narrow column */
				if (row->kind == US_ROW_ITEM ? wrap(r, c, p, (size_t)(stop - p))
							      : add_piece(r, c, p, (size_t)(stop - p)))
					return cli_fail(EXIT_FAIL, "out of memory");
				if (!sv)
					break;
				p = sv + 1;
			}
		}
		if (r->n_pieces[c] > n_lines)
			n_lines = r->n_pieces[c];
	}
	buf_init(&line);
	for (size_t l = 0; l < n_lines && rc == 0; l++) {
		buf_reset(&line);
		for (size_t c = 0; c < r->n_cols && rc == 0; c++) {
			const struct piece *pc =
				c < row->n_cells && l < r->n_pieces[c] ? &r->pieces[c][l] : NULL;
			size_t len = pc ? pc->len : 0;
			size_t pad = len < r->cols[c].width ? r->cols[c].width - len : 0;

			if (c && buf_append_u8(&line, ' '))
				rc = -1;
			if (r->cols[c].justify == 'R')
				for (size_t k = 0; k < pad && !rc; k++)
					rc = buf_append_u8(&line, ' ');
			if (!rc && len)
				rc = buf_append(&line, pc->p, len);
			if (r->cols[c].justify != 'R')
				for (size_t k = 0; k < pad && !rc; k++)
					rc = buf_append_u8(&line, ' ');
		}
		while (line.len && line.p[line.len - 1] == ' ')
			line.len--;
		put(r, line.p, line.len);
		end_line(r, line.len == 0);
	}
	buf_release(&line);
	if (rc)
		return cli_fail(EXIT_FAIL, "out of memory");
	if (row->kind == US_ROW_BREAK)
		end_line(r, true);
	return 0;
}

/* A cell's values joined for CSV, and for JSON each value. */
static int join_value(struct report *r, struct buf *b, const us_bytes_t *v)
{
	const uint8_t *p = v->p, *end = p + v->len;

	for (;;) {
		const uint8_t *sv = p < end ? memchr(p, 0xFC, (size_t)(end - p)) : NULL;
		const uint8_t *stop = sv ? sv : end;

		if (buf_append(b, p, (size_t)(stop - p)))
			return -1;
		if (!sv)
			return 0;
		if (buf_append(b, r->sv_sep, strlen(r->sv_sep)))
			return -1;
		p = sv + 1;
	}
}

static int csv_row(struct report *r, const us_query_row_t *row)
{
	struct buf b;

	buf_init(&b);
	for (size_t c = 0; c < row->n_cells; c++) {
		buf_reset(&b);
		for (size_t v = 0; v < row->cells[c].n_values; v++) {
			if ((v && buf_append(&b, r->vm_sep, strlen(r->vm_sep))) ||
			    join_value(r, &b, &row->cells[c].values[v])) {
				buf_release(&b);
				return cli_fail(EXIT_FAIL, "out of memory");
			}
		}
		if (c)
			put(r, ",", 1);
		csv_field(r, b.p ? b.p : (const uint8_t *)"", b.len);
	}
	buf_release(&b);
	return put_str(r, "\r\n");
}

/* A JSON string of p: as it is when it is UTF-8, else every byte above
 * 0x7F as \xNN text. */
static json_t *json_bytes(const uint8_t *p, size_t len)
{
	json_t *s = json_stringn((const char *)p, len);
	struct buf b;

	if (s)
		return s;
	buf_init(&b);
	for (size_t i = 0; i < len; i++) {
		char esc[8];

		if (p[i] < 0x80 && p[i] != 0)
			buf_append_u8(&b, p[i]);
		else {
			snprintf(esc, sizeof(esc), "\\x%02X", p[i]);
			buf_append(&b, esc, 4);
		}
	}
	s = json_stringn(b.p ? (const char *)b.p : "", b.len);
	buf_release(&b);
	return s;
}

/* obj (taken, may be NULL) as one line, its keys in their order. */
static int put_json_line(struct report *r, json_t *obj)
{
	char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(obj);
	if (!s)
		return cli_fail(EXIT_FAIL, "cannot format JSON output");
	put_str(r, s);
	free(s);
	return put(r, "\n", 1);
}

static int json_row(struct report *r, const us_query_row_t *row)
{
	json_t *obj = json_object();
	struct buf b;

	if (!obj)
		return cli_fail(EXIT_FAIL, "out of memory");
	buf_init(&b);
	for (size_t c = 0; c < row->n_cells && c < r->n_cols; c++) {
		json_t *arr = json_array();

		for (size_t v = 0; arr && v < row->cells[c].n_values; v++) {
			buf_reset(&b);
			if (join_value(r, &b, &row->cells[c].values[v]))
				break;
			json_array_append_new(arr, json_bytes(b.p ? b.p : (const uint8_t *)"", b.len));
		}
		json_object_set_new(obj, r->cols[c].key, arr ? arr : json_null());
	}
	buf_release(&b);
	return put_json_line(r, obj);
}

static int select_row(struct report *r, const us_query_row_t *row)
{
	if (r->fmt == FMT_JSON)
		return put_json_line(r, json_pack("{s:[o]}", "@ID", json_bytes(row->id, row->id_len)));
	if (r->fmt == FMT_CSV) {
		csv_field(r, row->id, row->id_len);
		return put_str(r, "\r\n");
	}
	if (cli_put_escaped(r->out, row->id, row->id_len))
		r->is_failed = true;
	return end_line(r, false);
}

static int on_row(void *arg, const us_query_row_t *row)
{
	struct report *r = arg;

	if (r->is_failed)
		return EXIT_FAIL;
	if (row->kind == US_ROW_MISSING) {
		char esc[4 * 1024 + 8];
		size_t n = 0;

		for (size_t i = 0; i < row->id_len && n + 5 < sizeof(esc); i++) {
			uint8_t ch = row->id[i];

			n += (size_t)(ch >= 0x20 && ch < 0x7F
					     ? snprintf(esc + n, sizeof(esc) - n, "%c", ch)
					     : snprintf(esc + n, sizeof(esc) - n, "\\x%02X", ch));
		}
		if (r->fmt == FMT_TEXT) {
			fprintf(r->out, "'%s' not on file.\n", esc);
			r->is_blank = false;
		} else {
			fprintf(stderr, "understudy: '%s' not on file\n", esc);
		}
		return 0;
	}
	if (strcmp(r->verb, "SELECT") == 0)
		return select_row(r, row);
	if (r->fmt == FMT_TEXT)
		return text_row(r, row);
	if (row->kind != US_ROW_ITEM) /* totals are the columnar report's */
		return 0;
	return r->fmt == FMT_CSV ? csv_row(r, row) : json_row(r, row);
}

/* The closing line of the columnar report; COUNT's answer in every format. */
static void report_end(struct report *r, const us_queried_t *q)
{
	unsigned long long n = (unsigned long long)q->count;
	const char *what = strcmp(r->verb, "COUNT") == 0    ? "counted"
			   : strcmp(r->verb, "SELECT") == 0 ? "selected"
							    : "listed";

	if (strcmp(r->verb, "COUNT") == 0 && r->fmt == FMT_JSON) {
		fprintf(r->out, "{\"count\":%llu}\n", n);
		return;
	}
	if (strcmp(r->verb, "COUNT") == 0 && r->fmt == FMT_CSV) {
		fprintf(r->out, "%llu\r\n", n);
		return;
	}
	if (r->fmt != FMT_TEXT)
		return;
	if (!r->is_blank && strcmp(r->verb, "COUNT") != 0)
		fputc('\n', r->out);
	fprintf(r->out, "%llu item%s %s.\n", n, n == 1 ? "" : "s", what);
}

/* The pager when stdout is a terminal: $PAGER ("" or cat: none), else less
 * (-FRX: it quits at once when the report fits on the screen). */
static FILE *open_pager(void)
{
	const char *pager = getenv("PAGER");
	FILE *f;

	if (!isatty(STDOUT_FILENO))
		return NULL;
	if (pager && (!pager[0] || strcmp(pager, "cat") == 0))
		return NULL;
	if (!pager) {
		if (access("/usr/bin/less", X_OK) != 0 && access("/bin/less", X_OK) != 0)
			return NULL;
		pager = "less";
		setenv("LESS", "FRX", 0);
	}
	fflush(stdout);
	f = popen(pager, "w");
	return f;
}

static void report_release(struct report *r)
{
	for (size_t i = 0; r->pieces && i < r->n_cols; i++)
		free(r->pieces[i]);
	free(r->pieces);
	free(r->n_pieces);
	free(r->cap_pieces);
	free(r->cols);
}

int cmd_query(struct cli *cli)
{
	struct report r = {.out = stdout, .vm_sep = cli->vm_sep ? cli->vm_sep : "]",
			   .sv_sep = cli->sv_sep ? cli->sv_sep : "\\"};
	us_query_sink_t sink = {.on_head = on_head, .on_row = on_row, .arg = &r};
	us_queried_t q;
	FILE *pager = NULL;
	us_err_t err;
	int rc;

	if (cli->is_csv && cli->is_json)
		return cli_fail(EXIT_USAGE, "--csv and --json: one format at a time");
	r.fmt = cli->is_csv ? FMT_CSV : cli->is_json ? FMT_JSON : FMT_TEXT;
	if (r.fmt == FMT_TEXT && (pager = open_pager())) {
		signal(SIGPIPE, SIG_IGN); /* quitting the pager early is no error */
		r.out = pager;
	}
	rc = us_query(cli->client, cli->args[0], cli->args[1], cli->args[2], cli->at, &sink, &q,
		      &err);
	if (rc == 0)
		report_end(&r, &q);
	if (fflush(r.out) != 0 && !pager && rc == 0)
		rc = cli_fail(EXIT_FAIL, "cannot write to stdout: %s", strerror(errno));
	if (pager)
		pclose(pager);
	report_release(&r);
	if (r.is_failed && pager)
		return 0; /* the pager was quit before the end */
	if (r.is_failed)
		return cli_fail(EXIT_FAIL, "cannot write to stdout: %s", strerror(errno));
	if (rc > 0) /* a callback's own exit status, already reported */
		return rc;
	if (rc < 0)
		return cli_fail_err(&err);
	return 0;
}
