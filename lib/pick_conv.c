/*
 * pick_conv.c - Pick output conversions (pick_conv.h).
 */
#include "pick_conv.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Days from 31 Dec 1967 (Pick's day 0) to 1 Jan 1970 (the civil epoch). */
#define PICK_EPOCH_TO_UNIX_DAYS 732

static const char *const months[12] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
				       "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};

/* ---- parsing ---- */

static int refuse(const char *text, size_t len, struct us_err *err)
{
	char shown[80];

	return err_set(err, US_EINVAL, "unknown conversion '%s'",
		       err_show(shown, sizeof(shown), text, len));
}

static bool is_sep(char c)
{
	return c == '/' || c == '-' || c == '.' || c == ' ';
}

/* One step, text[0..len). */
static int parse_step(const char *t, size_t len, struct pick_conv_step *s, struct us_err *err)
{
	size_t i;

	memset(s, 0, sizeof(*s));
	if (len >= 1 && t[0] == 'D') {
		s->kind = PICK_CONV_DATE;
		s->year_digits = 4;
		i = 1;
		if (i < len && t[i] >= '0' && t[i] <= '4')
			s->year_digits = (uint8_t)(t[i++] - '0');
		if (i < len && is_sep(t[i]))
			s->sep = t[i++];
		return i == len ? 0 : refuse(t, len, err);
	}
	if (len >= 2 && t[0] == 'M' && t[1] == 'T') {
		s->kind = PICK_CONV_TIME;
		i = 2;
		if (i < len && t[i] == 'H') {
			s->is_12h = true;
			i++;
		}
		if (i < len && t[i] == 'S') {
			s->is_seconds = true;
			i++;
		}
		return i == len ? 0 : refuse(t, len, err);
	}
	if (len >= 2 && t[0] == 'M' && (t[1] == 'D' || t[1] == 'R' || t[1] == 'L')) {
		s->kind = PICK_CONV_DECIMAL;
		s->justify = t[1] == 'L' ? 'L' : 'R';
		i = 2;
		if (i < len && isdigit((unsigned char)t[i]))
			s->decimals = (uint8_t)(t[i++] - '0');
		s->scale = s->decimals;
		if (i < len && isdigit((unsigned char)t[i]))
			s->scale = (uint8_t)(t[i++] - '0');
		for (; i < len; i++) {
			if (t[i] == ',' && !s->is_grouped)
				s->is_grouped = true;
			else if (t[i] == '$' && !s->is_dollar)
				s->is_dollar = true;
			else if (t[i] == '-' && !s->is_trailing_minus)
				s->is_trailing_minus = true;
			else
				return refuse(t, len, err);
		}
		return 0;
	}
	if (len == 3 && memcmp(t, "MCU", 3) == 0) {
		s->kind = PICK_CONV_UPPER;
		return 0;
	}
	if (len == 3 && memcmp(t, "MCL", 3) == 0) {
		s->kind = PICK_CONV_LOWER;
		return 0;
	}
	if (len >= 2 && t[0] == 'T' && isdigit((unsigned char)t[1])) {
		uint32_t a = 0, b = 0;
		bool has_comma = false;

		s->kind = PICK_CONV_TEXT;
		for (i = 1; i < len; i++) {
			if (t[i] == ',' && !has_comma && i > 1) {
				has_comma = true;
				continue;
			}
			if (!isdigit((unsigned char)t[i]) || (has_comma ? b : a) > 100000)
				return refuse(t, len, err);
			if (has_comma)
				b = b * 10 + (uint32_t)(t[i] - '0');
			else
				a = a * 10 + (uint32_t)(t[i] - '0');
		}
		if (has_comma && (a == 0 || t[len - 1] == ','))
			return refuse(t, len, err);
		s->from = has_comma ? a : 1;
		s->len = has_comma ? b : a;
		return 0;
	}
	return refuse(t, len, err);
}

int pick_conv_parse(const char *text, size_t len, struct pick_conv *out, struct us_err *err)
{
	size_t at = 0;

	memset(out, 0, sizeof(*out));
	while (at < len) {
		size_t end = at;
		int rc;

		while (end < len && (uint8_t)text[end] != PICK_VM && text[end] != ']')
			end++;
		if (end > at) {
			if (out->n == US_PICK_CONV_MAX_STEPS) {
				char shown[80];

				return err_set(err, US_EINVAL, "conversion '%s': over %d steps",
					       err_show(shown, sizeof(shown), text, len),
					       US_PICK_CONV_MAX_STEPS);
			}
			if ((rc = parse_step(text + at, end - at, &out->steps[out->n], err)))
				return rc;
			out->n++;
		}
		at = end + 1;
	}
	return 0;
}

/* ---- applying ---- */

/* value as a signed integer; false when it is not one (or out of range). */
static bool read_int(const uint8_t *v, size_t len, int64_t *out)
{
	bool is_neg = false;
	uint64_t n = 0;
	size_t i = 0;

	if (len > 0 && (v[0] == '-' || v[0] == '+')) {
		is_neg = v[0] == '-';
		i = 1;
	}
	if (i == len)
		return false;
	for (; i < len; i++) {
		if (v[i] < '0' || v[i] > '9' || n > (UINT64_C(1) << 62) / 10)
			return false;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	*out = is_neg ? -(int64_t)n : (int64_t)n;
	return true;
}

/* Howard Hinnant's days-to-civil: days since 1970-01-01 to y-m-d. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era, yy;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	yy = (int64_t)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = yy + (*m <= 2);
}

static int put_date(const struct pick_conv_step *s, int64_t day, struct buf *out)
{
	char t[64], year[24];
	int64_t y;
	unsigned m, d;

	civil_from_days(day - PICK_EPOCH_TO_UNIX_DAYS, &y, &m, &d);
	snprintf(year, sizeof(year), "%04" PRId64, y);
	/* the last year_digits digits */
	{
		size_t yl = strlen(year), keep = s->year_digits < yl ? s->year_digits : yl;

		memmove(year, year + yl - keep, keep + 1);
	}
	if (s->sep && year[0])
		snprintf(t, sizeof(t), "%02u%c%02u%c%s", m, s->sep, d, s->sep, year);
	else if (s->sep)
		snprintf(t, sizeof(t), "%02u%c%02u", m, s->sep, d);
	else
		snprintf(t, sizeof(t), "%02u %s%s%s", d, months[m - 1], year[0] ? " " : "", year);
	return buf_append(out, t, strlen(t));
}

static int put_time(const struct pick_conv_step *s, int64_t secs, struct buf *out)
{
	char t[32];
	int64_t v = ((secs % 86400) + 86400) % 86400;
	unsigned h = (unsigned)(v / 3600), mi = (unsigned)(v / 60 % 60), se = (unsigned)(v % 60);
	const char *ampm = "";

	if (s->is_12h) {
		ampm = h >= 12 ? "PM" : "AM";
		h = h % 12 == 0 ? 12 : h % 12;
	}
	if (s->is_seconds)
		snprintf(t, sizeof(t), "%02u:%02u:%02u%s", h, mi, se, ampm);
	else
		snprintf(t, sizeof(t), "%02u:%02u%s", h, mi, ampm);
	return buf_append(out, t, strlen(t));
}

static uint64_t pow10u(unsigned n)
{
	uint64_t p = 1;

	while (n--)
		p *= 10;
	return p;
}

/* The decimal digits of v, most significant first, into d (room for 20);
 * how many. No snprintf: a report converts a million values. */
static size_t put_digits(uint64_t v, char *d)
{
	char rev[20];
	size_t n = 0;

	do {
		rev[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		d[i] = rev[n - 1 - i];
	return n;
}

static int put_decimal(const struct pick_conv_step *s, int64_t v, struct buf *out)
{
	bool is_neg = v < 0;
	uint64_t a = is_neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	uint64_t ip, fp, p = pow10u(s->decimals);
	char digits[24], t[64];
	size_t dl, tl = 0;

	/* a / 10^scale shown with `decimals` places: scaled to 10^decimals */
	if (s->decimals >= s->scale) {
		a *= pow10u((unsigned)(s->decimals - s->scale));
	} else {
		uint64_t q = pow10u((unsigned)(s->scale - s->decimals));

		a = a / q + (a % q * 2 >= q); /* half away from zero */
	}
	is_neg = is_neg && a != 0;
	ip = a / p;
	fp = a % p;
	if (is_neg && !s->is_trailing_minus)
		t[tl++] = '-';
	if (s->is_dollar)
		t[tl++] = '$';
	dl = put_digits(ip, digits);
	for (size_t i = 0; i < dl; i++) {
		if (s->is_grouped && i > 0 && (dl - i) % 3 == 0)
			t[tl++] = ',';
		t[tl++] = digits[i];
	}
	if (s->decimals > 0) { /* decimals is one digit: 1..9; fp < 10^decimals */
		t[tl++] = '.';
		for (unsigned i = s->decimals % 10; i-- > 0; fp /= 10)
			t[tl + i] = (char)('0' + fp % 10);
		tl += s->decimals % 10;
	}
	if (is_neg && s->is_trailing_minus)
		t[tl++] = '-';
	return buf_append(out, t, tl);
}

/* One step from in (len bytes) to out (reset first). */
static int apply_step(const struct pick_conv_step *s, const uint8_t *in, size_t len,
		      struct buf *out)
{
	int64_t n;

	buf_reset(out);
	if (len == 0)
		return 0;
	switch (s->kind) {
	case PICK_CONV_DATE:
		return read_int(in, len, &n) && n > -10000000 && n < 10000000
			       ? put_date(s, n, out)
			       : buf_append(out, in, len);
	case PICK_CONV_TIME:
		return read_int(in, len, &n) ? put_time(s, n, out) : buf_append(out, in, len);
	case PICK_CONV_DECIMAL:
		return read_int(in, len, &n) ? put_decimal(s, n, out) : buf_append(out, in, len);
	case PICK_CONV_UPPER:
	case PICK_CONV_LOWER:
		if (buf_append(out, in, len))
			return US_ENOMEM;
		for (size_t i = 0; i < len; i++)
			out->p[i] = (uint8_t)(s->kind == PICK_CONV_UPPER ? toupper(out->p[i])
									  : tolower(out->p[i]));
		return 0;
	case PICK_CONV_TEXT:
		if (s->from > len)
			return 0;
		return buf_append(out, in + s->from - 1,
				  s->len < len - (s->from - 1) ? s->len : len - (s->from - 1));
	default:
		return buf_append(out, in, len);
	}
}

int pick_conv_apply(const struct pick_conv *c, const uint8_t *value, size_t len, struct buf *out)
{
	struct buf a, b;
	int rc = 0;

	if (c->n == 0)
		return buf_append(out, value, len);
	buf_init(&a);
	buf_init(&b);
	if (buf_append(&a, value, len)) {
		buf_release(&a);
		return US_ENOMEM;
	}
	for (size_t i = 0; i < c->n && rc == 0; i++) {
		rc = apply_step(&c->steps[i], a.p, a.len, &b);
		if (rc == 0) {
			struct buf t = a;

			a = b;
			b = t;
		}
	}
	if (rc == 0)
		rc = buf_append(out, a.p, a.len);
	buf_release(&a);
	buf_release(&b);
	return rc ? US_ENOMEM : 0;
}
