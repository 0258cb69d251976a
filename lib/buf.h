/*
 * buf.h - sized byte buffers for ids, bodies and encodings (bytes may be anything,
 * NUL included). Embedded struct: buf_init/buf_release.
 */
#ifndef US_BUF_H
#define US_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *p;  /* owned; NULL while cap is 0 */
	size_t len;
	size_t cap;
};

void buf_init(struct buf *b);
/* Frees the bytes; the buf is then as after buf_init. */
void buf_release(struct buf *b);
/* len = 0, keeps the allocation. */
void buf_reset(struct buf *b);
/* Ensures room for extra more bytes; 0 or US_ENOMEM (buf unchanged). */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_u8(struct buf *b, uint8_t v);
/* Little-endian fixed width. */
int buf_append_u32le(struct buf *b, uint32_t v);
int buf_append_u64le(struct buf *b, uint64_t v);
/* Big-endian fixed width (sortable keys). */
int buf_append_u64be(struct buf *b, uint64_t v);
/* LEB128 unsigned varint, at most 10 bytes. */
int buf_append_varint(struct buf *b, uint64_t v);
/* Takes the bytes out: returns b->p (caller frees with free()) and re-inits b. */
uint8_t *buf_detach(struct buf *b, size_t *len);

/* Readers of the same encodings, bounded by end; each returns 0 or US_ECORRUPT
 * (short input, varint longer than 10 bytes) and advances *p only on success. */
int buf_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);
uint32_t buf_get_u32le(const uint8_t *p);
uint64_t buf_get_u64le(const uint8_t *p);
uint64_t buf_get_u64be(const uint8_t *p);
void buf_put_u32le(uint8_t *p, uint32_t v);
void buf_put_u64le(uint8_t *p, uint64_t v);
void buf_put_u64be(uint8_t *p, uint64_t v);

#endif
