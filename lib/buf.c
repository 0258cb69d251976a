/* buf.c - see buf.h. */
#include "buf.h"
#include "err.h"

#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_release(struct buf *b)
{
	if (!b)
		return;
	free(b->p);
	buf_init(b);
}

void buf_reset(struct buf *b)
{
	b->len = 0;
}

int buf_reserve(struct buf *b, size_t extra)
{
	size_t need, cap;
	uint8_t *p;

	if (extra > SIZE_MAX - b->len)
		return US_ENOMEM;
	need = b->len + extra;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(b->p, cap);
	if (!p)
		return US_ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int rc;

	if (n == 0)
		return 0;
	rc = buf_reserve(b, n);
	if (rc)
		return rc;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

int buf_append_u8(struct buf *b, uint8_t v)
{
	return buf_append(b, &v, 1);
}

int buf_append_u32le(struct buf *b, uint32_t v)
{
	uint8_t t[4];

	buf_put_u32le(t, v);
	return buf_append(b, t, 4);
}

int buf_append_u64le(struct buf *b, uint64_t v)
{
	uint8_t t[8];

	buf_put_u64le(t, v);
	return buf_append(b, t, 8);
}

int buf_append_u64be(struct buf *b, uint64_t v)
{
	uint8_t t[8];

	buf_put_u64be(t, v);
	return buf_append(b, t, 8);
}

int buf_append_varint(struct buf *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;

	while (v >= 0x80) {
		t[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	t[n++] = (uint8_t)v;
	return buf_append(b, t, n);
}

uint8_t *buf_detach(struct buf *b, size_t *len)
{
	uint8_t *p = b->p;

	if (len)
		*len = b->len;
	buf_init(b);
	return p;
}

int buf_read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
	const uint8_t *p = *pp;
	uint64_t r = 0;
	unsigned shift = 0;

	for (int i = 0; i < 10; i++) {
		if (p >= end)
			return US_ECORRUPT;
		uint8_t c = *p++;
		if (i == 9 && c > 1)
			return US_ECORRUPT; /* more than 64 bits */
		r |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v = r;
			*pp = p;
			return 0;
		}
		shift += 7;
	}
	return US_ECORRUPT;
}

uint32_t buf_get_u32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

uint64_t buf_get_u64le(const uint8_t *p)
{
	return (uint64_t)buf_get_u32le(p) | (uint64_t)buf_get_u32le(p + 4) << 32;
}

uint64_t buf_get_u64be(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

void buf_put_u32le(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

void buf_put_u64le(uint8_t *p, uint64_t v)
{
	buf_put_u32le(p, (uint32_t)v);
	buf_put_u32le(p + 4, (uint32_t)(v >> 32));
}

void buf_put_u64be(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}
