/* names.c - see names.h. */
#include "names.h"

#include <stdbool.h>
#include <string.h>

#include "buf.h"
#include "us_limits.h"

/* Room for an escaped name in a message: a namespace, account or file is at
 * most 64 bytes, 4 escaped bytes each at worst; ids are cut with "...". */
#define NAMES_SHOWN_MAX 96

static bool is_namespace_first(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_namespace_char(uint8_t c)
{
	return is_namespace_first(c) || c == '_' || c == '.' || c == '-';
}

static bool is_name_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* The bad byte as text for a message: 'c' when printable, else \xNN. */
static const char *show_byte(uint8_t c, char *out, size_t out_size)
{
	return names_escape(&c, 1, out, out_size);
}

int names_check_namespace(const char *s, size_t len, struct us_err *err)
{
	const uint8_t *p = (const uint8_t *)s;
	char shown[NAMES_SHOWN_MAX];
	char c[8];

	if (len == 0)
		return err_set(err, US_EINVAL, "bad namespace '': empty (want %s)",
			       "[a-z0-9][a-z0-9_.-]{0,62}");
	/* shown is formatted only on the way to an error: the checks run per op */
	if (len > US_NAMESPACE_MAX_LEN)
		return err_set(err, US_EINVAL,
			       "bad namespace '%s': %zu bytes, longer than %d",
			       names_escape(p, len, shown, sizeof(shown)), len, US_NAMESPACE_MAX_LEN);
	if (!is_namespace_first(p[0]))
		return err_set(err, US_EINVAL,
			       "bad namespace '%s': first character '%s' not in [a-z0-9]",
			       names_escape(p, len, shown, sizeof(shown)),
			       show_byte(p[0], c, sizeof(c)));
	for (size_t i = 1; i < len; i++) {
		if (!is_namespace_char(p[i]))
			return err_set(err, US_EINVAL,
				       "bad namespace '%s': character '%s' at %zu not in [a-z0-9_.-]",
				       names_escape(p, len, shown, sizeof(shown)),
				       show_byte(p[i], c, sizeof(c)), i + 1);
	}
	return 0;
}

/* Accounts and files share one rule: [A-Za-z0-9_.-]{1,max_len}. */
static int check_name(const char *what, const char *s, size_t len, size_t max_len,
		      struct us_err *err)
{
	const uint8_t *p = (const uint8_t *)s;
	char shown[NAMES_SHOWN_MAX];
	char c[8];

	if (len == 0)
		return err_set(err, US_EINVAL, "bad %s name '': empty", what);
	if (len > max_len)
		return err_set(err, US_EINVAL, "bad %s name '%s': %zu bytes, longer than %zu",
			       what, names_escape(p, len, shown, sizeof(shown)), len, max_len);
	for (size_t i = 0; i < len; i++) {
		if (!is_name_char(p[i]))
			return err_set(err, US_EINVAL,
				       "bad %s name '%s': character '%s' at %zu not in [A-Za-z0-9_.-]",
				       what, names_escape(p, len, shown, sizeof(shown)),
				       show_byte(p[i], c, sizeof(c)), i + 1);
	}
	return 0;
}

int names_check_account(const char *s, size_t len, struct us_err *err)
{
	return check_name("account", s, len, US_ACCOUNT_MAX_LEN, err);
}

int names_check_file(const char *s, size_t len, struct us_err *err)
{
	return check_name("file", s, len, US_FILE_MAX_LEN, err);
}

int names_check_node_id(const char *s, size_t len, struct us_err *err)
{
	return check_name("node id", s, len, US_NODE_ID_MAX_LEN, err);
}

int names_check_id(const uint8_t *id, size_t len, struct us_err *err)
{
	char shown[NAMES_SHOWN_MAX];

	if (len == 0)
		return err_set(err, US_EINVAL, "bad item id '': empty");
	if (len > US_ID_MAX_LEN)
		return err_set(err, US_EINVAL, "bad item id '%s': %zu bytes, longer than %d",
			       names_escape(id, len, shown, sizeof(shown)), len, US_ID_MAX_LEN);
	for (size_t i = 0; i < len; i++) {
		if (id[i] == 0)
			return err_set(err, US_EINVAL, "bad item id '%s': NUL byte at %zu",
				       names_escape(id, len, shown, sizeof(shown)), i + 1);
		if (id[i] >= US_MARK_LOWEST)
			return err_set(err, US_EINVAL,
				       "bad item id '%s': mark byte \\x%02X at %zu",
				       names_escape(id, len, shown, sizeof(shown)),
				       id[i], i + 1);
	}
	return 0;
}

int names_check_body(size_t len, size_t max_body, struct us_err *err)
{
	size_t limit = max_body;

	if (limit == 0 || limit > US_BODY_MAX_BYTES)
		limit = US_BODY_MAX_BYTES;
	if (len > limit)
		return err_set(err, US_ETOOBIG, "item body of %zu bytes over the limit of %zu",
			       len, limit);
	return 0;
}

/* Writes the escaped form of c into t (at least 5 bytes); returns its length. */
static size_t escape_one(uint8_t c, char *t)
{
	static const char hex[] = "0123456789ABCDEF";

	if (c == '\\') {
		t[0] = '\\';
		t[1] = '\\';
		return 2;
	}
	if (c >= 0x20 && c < 0x7f) {
		t[0] = (char)c;
		return 1;
	}
	t[0] = '\\';
	t[1] = 'x';
	t[2] = hex[c >> 4];
	t[3] = hex[c & 0xf];
	return 4;
}

char *names_escape(const uint8_t *p, size_t len, char *out, size_t out_size)
{
	size_t total = 0, limit, pos = 0;
	char t[5];

	if (out_size == 0)
		return out;
	for (size_t i = 0; i < len; i++)
		total += escape_one(p[i], t);
	if (total <= out_size - 1) {
		for (size_t i = 0; i < len; i++) {
			size_t n = escape_one(p[i], t);
			memcpy(out + pos, t, n);
			pos += n;
		}
		out[pos] = '\0';
		return out;
	}
	/* Too long: as many whole escapes as leave room for "..." and the NUL. */
	limit = out_size - 1 > 3 ? out_size - 1 - 3 : 0;
	for (size_t i = 0; i < len; i++) {
		size_t n = escape_one(p[i], t);
		if (pos + n > limit)
			break;
		memcpy(out + pos, t, n);
		pos += n;
	}
	for (int i = 0; i < 3 && pos < out_size - 1; i++)
		out[pos++] = '.';
	out[pos] = '\0';
	return out;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int names_unescape(const char *s, size_t len, struct buf *out, struct us_err *err)
{
	size_t start_len = out->len;
	char shown[16];
	int rc;

	/* The result is never longer than s: one allocation up front. */
	rc = buf_reserve(out, len);
	if (rc)
		return err_set(err, rc, "cannot unescape %zu bytes: out of memory", len);
	for (size_t i = 0; i < len; i++) {
		uint8_t c = (uint8_t)s[i];
		size_t col = i + 1;

		if (c == '\\') {
			if (i + 1 >= len) {
				rc = err_set(err, US_EINVAL,
					     "bad escape at column %zu: a lone backslash at the end",
					     col);
				goto out_undo;
			}
			switch (s[i + 1]) {
			case '\\': c = '\\'; i++; break;
			case 't': c = '\t'; i++; break;
			case 'n': c = '\n'; i++; break;
			case 'r': c = '\r'; i++; break;
			case 'x': {
				int hi = i + 2 < len ? hex_value(s[i + 2]) : -1;
				int lo = i + 3 < len ? hex_value(s[i + 3]) : -1;

				if (hi < 0 || lo < 0) {
					size_t n = len - i < 4 ? len - i : 4;
					names_escape((const uint8_t *)s + i, n, shown,
						     sizeof(shown));
					rc = err_set(err, US_EINVAL,
						     "bad escape '%s' at column %zu: want \\x and two hex digits",
						     shown, col);
					goto out_undo;
				}
				c = (uint8_t)(hi << 4 | lo);
				i += 3;
				break;
			}
			default:
				names_escape((const uint8_t *)s + i, 2, shown, sizeof(shown));
				rc = err_set(err, US_EINVAL,
					     "bad escape '%s' at column %zu: want \\xNN, \\\\, \\t, \\n or \\r",
					     shown, col);
				goto out_undo;
			}
		}
		rc = buf_append_u8(out, c);
		if (rc) {
			err_set(err, rc, "cannot unescape: out of memory");
			goto out_undo;
		}
	}
	return 0;

out_undo:
	out->len = start_len;
	return rc;
}
