/*
 * pick_dict.c - dictionary items (pick_dict.h).
 */
#include "pick_dict.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Attribute n (1-based) of body: *p and *len (0 when absent). */
static void attr_at(const uint8_t *body, size_t len, unsigned n, const uint8_t **p, size_t *plen)
{
	size_t at = 0;

	for (unsigned i = 1; i < n && at <= len; i++) {
		const uint8_t *am = memchr(body + at, PICK_AM, len - at);

		if (!am) {
			at = len + 1;
			break;
		}
		at = (size_t)(am - body) + 1;
	}
	if (at > len) {
		*p = body + len;
		*plen = 0;
		return;
	}
	{
		const uint8_t *am = memchr(body + at, PICK_AM, len - at);

		*p = body + at;
		*plen = am ? (size_t)(am - (body + at)) : len - at;
	}
}

/* A whole number of at most 9 digits: 0 and *out, else -1. */
static int read_u32(const uint8_t *p, size_t len, uint32_t *out)
{
	uint32_t n = 0;

	if (len == 0 || len > 9)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit(p[i]))
			return -1;
		n = n * 10 + (uint32_t)(p[i] - '0');
	}
	*out = n;
	return 0;
}

static int bad(const struct pick_attr *a, struct us_err *err, const char *what, const uint8_t *p,
	       size_t len)
{
	char name[80], shown[80];

	return err_set(err, US_EINVAL, "dictionary item %s: %s '%s'",
		       err_show(name, sizeof(name), a->name, strlen(a->name)), what,
		       err_show(shown, sizeof(shown), p, len));
}

static int conv_of(struct pick_attr *a, const uint8_t *p, size_t len, struct pick_conv *out,
		   struct us_err *err)
{
	if (pick_conv_parse((const char *)p, len, out, err)) {
		char name[80];

		return err_wrap(err, "dictionary item %s",
				err_show(name, sizeof(name), a->name, strlen(a->name)));
	}
	return 0;
}

static void copy_text(char *dst, size_t size, const uint8_t *p, size_t len)
{
	size_t n = len < size - 1 ? len : size - 1;

	memcpy(dst, p, n);
	dst[n] = '\0';
}

void pick_dict_id(struct pick_attr *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "@ID");
	snprintf(out->heading, sizeof(out->heading), "@ID");
	out->justify = 'L';
	out->width = 10;
}

int pick_dict_parse(const uint8_t *id, size_t id_len, const uint8_t *body, size_t len,
		    struct pick_attr *out, struct us_err *err)
{
	const uint8_t *p;
	size_t n;
	int rc;

	memset(out, 0, sizeof(*out));
	copy_text(out->name, sizeof(out->name), id, id_len);
	out->justify = 'L';
	out->width = 10;
	if (len == 0) {
		char name[80];

		return err_set(err, US_EINVAL, "dictionary item %s: empty, not an attribute "
					       "definition (type A, S or D)",
			       err_show(name, sizeof(name), out->name, strlen(out->name)));
	}
	attr_at(body, len, 1, &p, &n);
	if (n >= 1 && (p[0] == 'A' || p[0] == 'S') && (n == 1 || p[1] == ' ')) {
		/* Advanced Pick / D3 */
		out->is_multi = true;
		attr_at(body, len, 2, &p, &n);
		if (read_u32(p, n, &out->field))
			return bad(out, err, "attribute number", p, n);
		attr_at(body, len, 3, &p, &n);
		copy_text(out->heading, sizeof(out->heading), n ? p : id, n ? n : id_len);
		attr_at(body, len, 7, &p, &n);
		if ((rc = conv_of(out, p, n, &out->conv, err)))
			return rc;
		attr_at(body, len, 8, &p, &n);
		if ((rc = conv_of(out, p, n, &out->correlative, err)))
			return rc;
		attr_at(body, len, 9, &p, &n);
		if (n > 1 || (n == 1 && p[0] != 'L' && p[0] != 'R' && p[0] != 'T'))
			return bad(out, err, "justification (L, R or T)", p, n);
		if (n == 1)
			out->justify = (char)p[0];
		attr_at(body, len, 10, &p, &n);
		if (n && (read_u32(p, n, &out->width) || out->width == 0 ||
			  out->width > US_PICK_WIDTH_MAX))
			return bad(out, err, "width", p, n);
		return 0;
	}
	if (n >= 1 && p[0] == 'D' && (n == 1 || p[1] == ' ')) {
		/* U2 / OpenQM */
		attr_at(body, len, 2, &p, &n);
		if (read_u32(p, n, &out->field))
			return bad(out, err, "field number", p, n);
		attr_at(body, len, 3, &p, &n);
		if ((rc = conv_of(out, p, n, &out->conv, err)))
			return rc;
		attr_at(body, len, 4, &p, &n);
		copy_text(out->heading, sizeof(out->heading), n ? p : id, n ? n : id_len);
		attr_at(body, len, 5, &p, &n);
		if (n) {
			size_t digits = 0;

			while (digits < n && isdigit(p[digits]))
				digits++;
			if (digits == 0 || digits + 1 != n ||
			    (p[digits] != 'L' && p[digits] != 'R' && p[digits] != 'T') ||
			    read_u32(p, digits, &out->width) || out->width == 0 ||
			    out->width > US_PICK_WIDTH_MAX)
				return bad(out, err, "format (width, then L, R or T)", p, n);
			out->justify = (char)p[digits];
		}
		attr_at(body, len, 6, &p, &n);
		if (n > 1 || (n == 1 && p[0] != 'S' && p[0] != 'M'))
			return bad(out, err, "single or multi (S or M)", p, n);
		out->is_multi = n == 1 && p[0] == 'M';
		return 0;
	}
	return bad(out, err, "not an attribute definition (type A, S or D)", p, n);
}
