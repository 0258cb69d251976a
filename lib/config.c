/*
 * config.c - see config.h.
 *
 * inih splits lines into key and value and strips comments; this module owns
 * everything else. Debian's libinih is built without INI_HANDLER_LINENO, so the
 * handler is not told the line: config_load feeds inih through its own reader
 * (ini_parse_stream) on a FILE (config_load_buffer's is an fmemopen stream on
 * the caller's bytes), which hands out exactly one physical line per call and
 * counts them. inih calls the handler for a line before it asks for the next,
 * so the reader's count is the handler's line.
 *
 * The reader also recognises section headers itself, because inih keeps only
 * the first 49 bytes of a section name (a namespace may have 63) and does not
 * tell the handler where an empty section starts: a header's entity is added
 * (and its defaults applied) when its line is read.
 *
 * inih's tunables are process-wide variables in Debian's build; they are set
 * once (pthread_once) to: a heap line buffer of CONFIG_LINE_MAX bytes, no
 * multi-line values (an indented line is a line of its own, not a
 * continuation), stop at the first error.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <ini.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "us_limits.h"
#include "names.h"

/* Longest line: a key, " = " and the longest value, with room to spare. */
#define CONFIG_LINE_MAX (US_CONFIG_MAX_VALUE_LEN + 256)
/* How much of a bad value a message quotes. */
#define CONFIG_SHOWN_MAX 160

#define WANT_DURATION "want a duration like 250ms, 5s, 10m, 24h"
#define WANT_SIZE "want a size like 64KiB, 16MiB, 1GiB"

struct load_ctx {
	const struct config_schema *schema;
	void *target;
	const char *path;
	FILE *f;
	struct us_err *err;
	int rc;                 /* first error, 0 while none */
	int lineno;             /* lines handed to inih so far */
	int error_line;         /* line of rc */
	int *top_seen;          /* per top-level key: line it was set on, 0 */
	int *section_seen;      /* the same for the current section's keys */
	const struct config_section *section; /* NULL before any header */
	void *entity;           /* what the current section's keys fill */
	char section_label[CONFIG_SHOWN_MAX]; /* "[kind name]" for messages */
};

static pthread_once_t inih_once = PTHREAD_ONCE_INIT;

static void tune_inih(void)
{
	ini_use_stack = false;
	ini_allow_realloc = false;
	ini_max_line = CONFIG_LINE_MAX + 2; /* the newline and the NUL */
	ini_initial_alloc = CONFIG_LINE_MAX + 2;
	ini_allow_multiline = false;
	ini_allow_no_value = false;
	ini_stop_on_first_error = true;
}

/* The value as it may be quoted in a message: one line, cut when long. */
static const char *show(const char *s, char *out, size_t out_size)
{
	return names_escape((const uint8_t *)s, strlen(s), out, out_size);
}

/* Records the first error as "FILE:LINE: message". */
static void fail(struct load_ctx *c, int code, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail(struct load_ctx *c, int code, int line, const char *fmt, ...)
{
	char msg[US_ERR_MSG_MAX];
	va_list ap;

	if (c->rc)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->rc = code;
	c->error_line = line;
	err_set(c->err, code, "%s:%d: %.*s", c->path, line, US_ERR_MSG_MAX - 64, msg);
}

static int parse_uint(const char *s, uint64_t *v)
{
	uint64_t r = 0;

	if (!*s)
		return US_EINVAL;
	for (; *s; s++) {
		unsigned d;

		if (*s < '0' || *s > '9')
			return US_EINVAL;
		d = (unsigned)(*s - '0');
		if (r > (UINT64_MAX - d) / 10)
			return US_EINVAL;
		r = r * 10 + d;
	}
	*v = r;
	return 0;
}

struct unit {
	const char *name;
	uint64_t mult;
};

static const struct unit duration_units[] = {
	{ "h", 3600000 }, { "m", 60000 }, { "s", 1000 }, { "ms", 1 }, { NULL, 0 },
};

static const struct unit size_units[] = {
	{ "GiB", 1024u * 1024 * 1024 }, { "MiB", 1024u * 1024 }, { "KiB", 1024 },
	{ "B", 1 }, { NULL, 0 },
};

/* Digits then exactly one unit of units[]; 0 or US_EINVAL (also on overflow). */
static int parse_with_unit(const char *s, const struct unit *units, uint64_t *v)
{
	char digits[24];
	size_t n = 0;
	uint64_t r;

	while (s[n] >= '0' && s[n] <= '9') {
		if (n + 1 >= sizeof(digits))
			return US_EINVAL;
		digits[n] = s[n];
		n++;
	}
	digits[n] = '\0';
	if (n == 0 || parse_uint(digits, &r))
		return US_EINVAL;
	if (r == 0 && s[n] == '\0') {
		*v = 0; /* zero needs no unit: "max_lag = 0" */
		return 0;
	}
	for (const struct unit *u = units; u->name; u++) {
		if (strcmp(s + n, u->name) != 0)
			continue;
		if (r > UINT64_MAX / u->mult)
			return US_EINVAL;
		*v = r * u->mult;
		return 0;
	}
	return US_EINVAL;
}

/* The largest unit that divides v exactly: 90000 ms reads "90s". */
static const char *format_with_unit(uint64_t v, const struct unit *units, char *out,
				    size_t out_size)
{
	const struct unit *u = units;

	while (u[1].name && (v == 0 || v % u->mult != 0))
		u++;
	snprintf(out, out_size, "%" PRIu64 "%s", v / u->mult, u->name);
	return out;
}

int config_parse_duration_ms(const char *s, uint64_t *ms, struct us_err *err)
{
	char shown[CONFIG_SHOWN_MAX];

	if (parse_with_unit(s, duration_units, ms))
		return err_set(err, US_EINVAL, "bad duration '%s' (" WANT_DURATION ")",
			       show(s, shown, sizeof(shown)));
	return 0;
}

int config_parse_size(const char *s, uint64_t *bytes, struct us_err *err)
{
	char shown[CONFIG_SHOWN_MAX];

	if (parse_with_unit(s, size_units, bytes))
		return err_set(err, US_EINVAL, "bad size '%s' (" WANT_SIZE ")",
			       show(s, shown, sizeof(shown)));
	return 0;
}

static int parse_bool(const char *s, int *v)
{
	static const char *const yes[] = { "on", "true", "yes", "1" };
	static const char *const no[] = { "off", "false", "no", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*v = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*v = 0;
			return 0;
		}
	}
	return US_EINVAL;
}

/* "a, b, c" into out, for messages. */
static const char *join_choices(const char *const *choices, char *out, size_t out_size)
{
	size_t pos = 0;

	out[0] = '\0';
	for (size_t i = 0; choices && choices[i]; i++) {
		int n = snprintf(out + pos, out_size - pos, "%s%s", i ? ", " : "", choices[i]);
		if (n < 0 || (size_t)n >= out_size - pos)
			break;
		pos += (size_t)n;
	}
	return out;
}

static void list_free_items(struct config_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static void list_free_array(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Splits s at commas into new strings (trimmed, none empty). */
static int list_split(const struct config_key *k, const char *s, char ***items, size_t *n_items,
		      struct us_err *err)
{
	char shown[CONFIG_SHOWN_MAX];
	char **v = NULL;
	size_t n = 0, cap = 0;
	const char *p = s;
	int rc;

	for (;;) {
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);
		const char *b = p, *e = end;

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (b == e) {
			rc = err_set(err, US_EINVAL, "bad value for %s: '%s' (an empty item)",
				     k->name, show(s, shown, sizeof(shown)));
			goto out_free;
		}
		if (n == cap) {
			size_t new_cap = cap ? cap * 2 : 4;
			char **nv = realloc(v, new_cap * sizeof(*nv));

			if (!nv) {
				rc = err_set(err, US_ENOMEM, "out of memory");
				goto out_free;
			}
			v = nv;
			cap = new_cap;
		}
		v[n] = strndup(b, (size_t)(e - b));
		if (!v[n]) {
			rc = err_set(err, US_ENOMEM, "out of memory");
			goto out_free;
		}
		n++;
		if (!comma)
			break;
		p = comma + 1;
	}
	*items = v;
	*n_items = n;
	return 0;

out_free:
	list_free_array(v, n);
	return rc;
}

/* Sets a list to its items (is_replace) or appends them. */
static int list_set(const struct config_key *k, struct config_list *l, const char *s,
		    bool is_replace, struct us_err *err)
{
	size_t keep = is_replace ? 0 : l->n;
	char **items = NULL, **v;
	size_t n = 0;
	int rc;

	rc = list_split(k, s, &items, &n, err);
	if (rc)
		return rc;
	v = malloc((keep + n) * sizeof(*v));
	if (!v) {
		list_free_array(items, n);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	if (keep)
		memcpy(v, l->v, keep * sizeof(*v));
	memcpy(v + keep, items, n * sizeof(*v));
	free(items);
	if (is_replace)
		list_free_items(l);
	else
		free(l->v);
	l->v = v;
	l->n = keep + n;
	return 0;
}

static int check_bounds(const struct config_key *k, uint64_t v, struct us_err *err)
{
	const struct unit *units = k->type == CFG_DURATION ? duration_units :
				   k->type == CFG_SIZE ? size_units : NULL;
	char sv[32], smin[32], smax[32];

	if (v >= k->min && (k->max == 0 || v <= k->max))
		return 0;
	if (units) {
		format_with_unit(v, units, sv, sizeof(sv));
		format_with_unit(k->min, units, smin, sizeof(smin));
		format_with_unit(k->max, units, smax, sizeof(smax));
	} else {
		snprintf(sv, sizeof(sv), "%" PRIu64, v);
		snprintf(smin, sizeof(smin), "%" PRIu64, k->min);
		snprintf(smax, sizeof(smax), "%" PRIu64, k->max);
	}
	if (k->max == 0)
		return err_set(err, US_EINVAL, "value for %s out of range: %s (want at least %s)",
			       k->name, sv, smin);
	return err_set(err, US_EINVAL, "value for %s out of range: %s (want %s..%s)", k->name,
		       sv, smin, smax);
}

/*
 * Parses s as k's value and stores it in base + k->offset. A list is replaced
 * (is_replace) or appended to. The field is unchanged on error; err then says
 * what was wrong, without file and line.
 */
static int set_value(const struct config_key *k, void *base, const char *s, bool is_replace,
		     bool is_checked, struct us_err *err)
{
	char *field = (char *)base + k->offset;
	char shown[CONFIG_SHOWN_MAX];
	char choices[256];
	struct us_err check_err;
	uint64_t u = 0;
	size_t len;
	int b = 0, i;

	show(s, shown, sizeof(shown));
	switch (k->type) {
	case CFG_STRING:
		len = strlen(s);
		if (len >= k->size || len > US_CONFIG_MAX_VALUE_LEN)
			return err_set(err, US_EINVAL, "value for %s too long: %zu bytes (max %zu)",
				       k->name, len,
				       k->size - 1 < US_CONFIG_MAX_VALUE_LEN ?
				       k->size - 1 : (size_t)US_CONFIG_MAX_VALUE_LEN);
		break;
	case CFG_UINT:
		if (parse_uint(s, &u))
			return err_set(err, US_EINVAL,
				       "bad value for %s: '%s' (want an unsigned integer)", k->name,
				       shown);
		if (check_bounds(k, u, err))
			return US_EINVAL;
		break;
	case CFG_BOOL:
		if (parse_bool(s, &b))
			return err_set(err, US_EINVAL,
				       "bad value for %s: '%s' (want on/off, true/false, yes/no or 1/0)",
				       k->name, shown);
		break;
	case CFG_DURATION:
		if (parse_with_unit(s, duration_units, &u))
			return err_set(err, US_EINVAL, "bad value for %s: '%s' (" WANT_DURATION ")",
				       k->name, shown);
		if (check_bounds(k, u, err))
			return US_EINVAL;
		break;
	case CFG_SIZE:
		if (parse_with_unit(s, size_units, &u))
			return err_set(err, US_EINVAL, "bad value for %s: '%s' (" WANT_SIZE ")",
				       k->name, shown);
		if (check_bounds(k, u, err))
			return US_EINVAL;
		break;
	case CFG_ENUM:
		for (i = 0; k->choices && k->choices[i]; i++) {
			if (strcmp(s, k->choices[i]) == 0)
				break;
		}
		if (!k->choices || !k->choices[i])
			return err_set(err, US_EINVAL, "bad value for %s: '%s' (want one of %s)",
				       k->name, shown,
				       join_choices(k->choices, choices, sizeof(choices)));
		b = i;
		break;
	case CFG_LIST:
		break;
	default:
		return err_set(err, US_EINVAL, "key %s has an unknown type %d", k->name, k->type);
	}
	if (is_checked && k->check) {
		err_clear(&check_err);
		if (k->check(s, &check_err))
			return err_set(err, US_EINVAL, "bad value for %s: %s", k->name,
				       check_err.msg[0] ? check_err.msg : shown);
	}
	switch (k->type) {
	case CFG_STRING:
		memcpy(field, s, strlen(s) + 1);
		break;
	case CFG_UINT:
	case CFG_DURATION:
	case CFG_SIZE:
		memcpy(field, &u, sizeof(u));
		break;
	case CFG_BOOL:
	case CFG_ENUM:
		memcpy(field, &b, sizeof(b));
		break;
	case CFG_LIST:
		return list_set(k, (struct config_list *)(void *)field, s, is_replace, err);
	}
	return 0;
}

/* Every key of keys to its default; lists start empty, whatever was there. */
static int apply_defaults(const struct config_key *keys, size_t n_keys, void *base,
			  struct us_err *err)
{
	for (size_t i = 0; i < n_keys; i++) {
		const struct config_key *k = &keys[i];
		char *field = (char *)base + k->offset;
		int rc;

		switch (k->type) {
		case CFG_STRING:
			if (k->size)
				field[0] = '\0';
			break;
		case CFG_UINT:
		case CFG_DURATION:
		case CFG_SIZE:
			memset(field, 0, sizeof(uint64_t));
			break;
		case CFG_BOOL:
		case CFG_ENUM:
			memset(field, 0, sizeof(int));
			break;
		case CFG_LIST:
			memset(field, 0, sizeof(struct config_list));
			break;
		}
		if (!k->def)
			continue;
		rc = set_value(k, base, k->def, true, false, err);
		if (rc) {
			err_wrap(err, "bad default");
			return rc;
		}
	}
	return 0;
}

static const struct config_key *find_key(const struct config_key *keys, size_t n_keys,
					 const char *name, size_t *index)
{
	for (size_t i = 0; i < n_keys; i++) {
		if (strcmp(keys[i].name, name) == 0) {
			*index = i;
			return &keys[i];
		}
	}
	return NULL;
}

/* A `[kind name]` line: a new entity of that kind, with its defaults. */
static void start_section(struct load_ctx *c, char *text)
{
	const struct config_schema *schema = c->schema;
	const struct config_section *sec = NULL;
	char shown[CONFIG_SHOWN_MAX];
	char *kind, *name, *end;
	struct us_err err;
	void *entity;

	kind = text;
	while (*kind == ' ' || *kind == '\t')
		kind++;
	end = kind + strlen(kind);
	while (end > kind && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	name = kind + strcspn(kind, " \t");
	if (*name) {
		*name++ = '\0';
		name += strspn(name, " \t");
	}
	if (!*kind || !*name || name[strcspn(name, " \t")]) {
		fail(c, US_ECONFIG, c->lineno, "bad section header '[%s%s%s]' (want [kind name])",
		     show(kind, shown, sizeof(shown)), *name ? " " : "", name);
		return;
	}
	for (size_t i = 0; i < schema->n_sections; i++) {
		if (strcmp(schema->sections[i].kind, kind) == 0)
			sec = &schema->sections[i];
	}
	if (!sec) {
		fail(c, US_ECONFIG, c->lineno, "unknown section kind '%s'",
		     show(kind, shown, sizeof(shown)));
		return;
	}
	err_clear(&err);
	entity = sec->add(c->target, name, &err);
	if (!entity) {
		fail(c, err.code == US_ENOMEM ? US_ENOMEM : US_ECONFIG, c->lineno,
		     "cannot add [%s %s]: %s", kind, show(name, shown, sizeof(shown)),
		     err.msg[0] ? err.msg : "refused");
		return;
	}
	if (apply_defaults(sec->keys, sec->n_keys, entity, &err)) {
		fail(c, err.code == US_ENOMEM ? US_ENOMEM : US_ECONFIG, c->lineno,
		     "[%s %s]: %s", kind, name, err.msg);
		return;
	}
	c->section = sec;
	c->entity = entity;
	memset(c->section_seen, 0, sizeof(int) * (sec->n_keys ? sec->n_keys : 1));
	snprintf(c->section_label, sizeof(c->section_label), "[%s %s]", kind,
		 show(name, shown, sizeof(shown)));
}

/* When line is a section header that inih will accept, starts its section. */
static void scan_header(struct load_ctx *c, const char *line)
{
	char text[CONFIG_LINE_MAX + 1];
	const char *p = line, *close;
	size_t n;

	if (c->lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	p += strspn(p, " \t\r\n\v\f");
	if (*p != '[')
		return;
	close = strchr(p + 1, ']');
	if (!close)
		return; /* inih reports the syntax error */
	n = (size_t)(close - (p + 1));
	memcpy(text, p + 1, n);
	text[n] = '\0';
	start_section(c, text);
}

/* inih's reader: one physical line per call, counted. A line longer than
 * inih's buffer would be split by inih into two lines, so it is refused. */
static char *read_line(char *str, int num, void *stream)
{
	struct load_ctx *c = stream;
	size_t n = 0, max;
	int ch;

	if (c->rc || num < 3)
		return NULL;
	max = (size_t)num - 2;
	ch = getc(c->f);
	if (ch == EOF)
		goto out_eof;
	c->lineno++;
	for (; ch != EOF; ch = getc(c->f)) {
		if (ch == '\n') {
			str[n++] = '\n';
			break;
		}
		if (ch == '\0') {
			fail(c, US_ECONFIG, c->lineno, "NUL byte in line");
			return NULL;
		}
		if (n == max) {
			fail(c, US_ECONFIG, c->lineno, "line longer than %zu bytes", max);
			return NULL;
		}
		str[n++] = (char)ch;
	}
	if (ferror(c->f))
		goto out_eof;
	str[n] = '\0';
	scan_header(c, str);
	if (c->rc)
		return NULL;
	return str;

out_eof:
	if (ferror(c->f))
		fail(c, US_ECONFIG, c->lineno + 1, "cannot read: %s", strerror(errno));
	return NULL;
}

static int handle_key(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *c = user;
	const struct config_key *keys = c->schema->keys, *k;
	size_t n_keys = c->schema->n_keys, index;
	char shown[CONFIG_SHOWN_MAX];
	const char *where = "";
	void *base = c->target;
	int *seen = c->top_seen;
	struct us_err err;

	(void)section; /* inih's copy is cut at 49 bytes: c->section is ours */
	if (c->rc)
		return 0;
	if (c->section) {
		keys = c->section->keys;
		n_keys = c->section->n_keys;
		base = c->entity;
		seen = c->section_seen;
		where = c->section_label;
	}
	k = find_key(keys, n_keys, name, &index);
	if (!k) {
		fail(c, US_ECONFIG, c->lineno, "unknown key '%s'%s%s",
		     show(name, shown, sizeof(shown)), *where ? " in " : "", where);
		return 0;
	}
	if (seen[index] && k->type != CFG_LIST) {
		fail(c, US_ECONFIG, c->lineno, "duplicate key '%s'%s%s (first set on line %d)",
		     k->name, *where ? " in " : "", where, seen[index]);
		return 0;
	}
	err_clear(&err);
	if (set_value(k, base, value, seen[index] == 0, true, &err)) {
		fail(c, err.code == US_ENOMEM ? US_ENOMEM : US_ECONFIG, c->lineno, "%s",
		     err.msg);
		return 0;
	}
	seen[index] = c->lineno;
	return 1;
}

/* Every top-level key of schema to its default. */
static int load_defaults(const struct config_schema *schema, void *target, struct us_err *err)
{
	int rc;

	rc = apply_defaults(schema->keys, schema->n_keys, target, err);
	if (rc == US_ENOMEM)
		return rc;
	if (rc) {
		/* a default the schema's own parser refuses: a bug, but a config one */
		if (err)
			err->code = US_ECONFIG;
		return US_ECONFIG;
	}
	return 0;
}

/* Parses the text of f, called name in messages, into target (its defaults
 * already applied). The one parser of both config_load and config_load_buffer;
 * the caller opens and closes f. */
static int load_stream(const struct config_schema *schema, void *target, const char *name,
		       FILE *f, struct us_err *err)
{
	struct load_ctx c = {
		.schema = schema, .target = target, .path = name, .f = f, .err = err,
	};
	size_t max_section_keys = 1;
	int rc, ini_rc;

	rc = pthread_once(&inih_once, tune_inih);
	if (rc)
		return err_set(err, US_EIO, "cannot set up the config parser: %s", strerror(rc));
	for (size_t i = 0; i < schema->n_sections; i++) {
		if (schema->sections[i].n_keys > max_section_keys)
			max_section_keys = schema->sections[i].n_keys;
	}
	c.top_seen = calloc(schema->n_keys ? schema->n_keys : 1, sizeof(int));
	c.section_seen = calloc(max_section_keys, sizeof(int));
	if (!c.top_seen || !c.section_seen) {
		rc = err_set(err, US_ENOMEM, "cannot read config %s: out of memory", name);
		goto out_free;
	}
	ini_rc = ini_parse_stream(read_line, &c, handle_key, &c);
	if (ini_rc == -2) {
		fail(&c, US_ENOMEM, c.lineno, "out of memory");
	} else if (ini_rc > 0 && (!c.rc || ini_rc < c.error_line)) {
		/* inih's own refusal (a line with no '=', a '[' with no ']') came
		 * first: it wins over a later one of ours */
		c.rc = 0;
		fail(&c, US_ECONFIG, ini_rc,
		     "syntax error (want 'key = value', '[kind name]' or a # comment)");
	} else if (ini_rc < 0 && !c.rc) {
		fail(&c, US_ECONFIG, c.lineno, "cannot parse (inih error %d)", ini_rc);
	}
	rc = c.rc;

out_free:
	free(c.top_seen);
	free(c.section_seen);
	return rc;
}

int config_load(const struct config_schema *schema, void *target, const char *path,
		struct us_err *err)
{
	FILE *f;
	int rc;

	if ((rc = load_defaults(schema, target, err)))
		return rc;
	if (!path)
		return 0;
	f = fopen(path, "r");
	if (!f)
		return err_set(err, US_ECONFIG, "cannot read config %s: %s", path, strerror(errno));
	rc = load_stream(schema, target, path, f, err);
	if (fclose(f) != 0 && !rc)
		rc = err_set(err, US_ECONFIG, "cannot read config %s: %s", path, strerror(errno));
	return rc;
}

int config_load_buffer(const struct config_schema *schema, void *target, const char *name,
		       const void *p, size_t len, struct us_err *err)
{
	static const char empty[1];
	FILE *f;
	int rc;

	if ((rc = load_defaults(schema, target, err)))
		return rc;
	/* A read-only stream on the caller's bytes: fmemopen takes a non-const
	 * pointer for its write modes, "r" never writes through it. */
	f = fmemopen((void *)(len ? p : empty), len, "r");
	if (!f)
		return err_set(err, errno == ENOMEM ? US_ENOMEM : US_EIO,
			       "cannot read config %s: %s", name, strerror(errno));
	rc = load_stream(schema, target, name, f, err);
	if (fclose(f) != 0 && !rc)
		rc = err_set(err, US_ECONFIG, "cannot read config %s: %s", name, strerror(errno));
	return rc;
}

void config_release(const struct config_schema *schema, void *target)
{
	if (!schema || !target)
		return;
	for (size_t i = 0; i < schema->n_keys; i++) {
		const struct config_key *k = &schema->keys[i];

		if (k->type == CFG_LIST)
			list_free_items((struct config_list *)(void *)((char *)target + k->offset));
	}
}

static void print_keys(FILE *f, const char *indent, const struct config_key *keys,
		       size_t n_keys)
{
	char choices[256];

	for (size_t i = 0; i < n_keys; i++) {
		const struct config_key *k = &keys[i];

		fprintf(f, "%s%s (default %s", indent, k->name,
			k->def && *k->def ? k->def : "none");
		if (k->type == CFG_ENUM)
			fprintf(f, "; one of %s", join_choices(k->choices, choices,
							       sizeof(choices)));
		fprintf(f, "): %s\n", k->help ? k->help : "");
	}
}

void config_print_help(const struct config_schema *schema, void *out)
{
	FILE *f = out;

	print_keys(f, "  ", schema->keys, schema->n_keys);
	for (size_t i = 0; i < schema->n_sections; i++) {
		const struct config_section *sec = &schema->sections[i];

		fprintf(f, "  [%s NAME] sections:\n", sec->kind);
		print_keys(f, "    ", sec->keys, sec->n_keys);
	}
}
