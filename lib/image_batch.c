/* image_batch.c - see image_batch.h. */
#include "image_batch.h"

#include <stdlib.h>

#include "buf.h"

/* An entry whose bytes are at offsets of batch.bytes (its pointers are set
 * only when the batch is loaded: bytes may move as it grows). */
struct pending {
	struct entry e;
	size_t account_off, file_off, id_off, body_off;
};

struct image_batch {
	struct pending p[IMAGE_BATCH_ENTRIES];
	struct entry e[IMAGE_BATCH_ENTRIES];
	size_t n;
	struct buf bytes;
};

struct image_batch *image_batch_new(void)
{
	struct image_batch *b = calloc(1, sizeof(*b));

	if (b)
		buf_init(&b->bytes);
	return b;
}

void image_batch_free(struct image_batch *b)
{
	if (!b)
		return;
	buf_release(&b->bytes);
	free(b);
}

int image_batch_add(struct image_batch *b, const struct entry *e)
{
	struct pending *p = &b->p[b->n];
	size_t len = b->bytes.len;

	if (b->n == IMAGE_BATCH_ENTRIES)
		return US_ENOMEM;
	p->e = *e;
	p->account_off = b->bytes.len;
	if (buf_append(&b->bytes, e->account, e->account_len))
		goto out_undo;
	p->file_off = b->bytes.len;
	if (buf_append(&b->bytes, e->file, e->file_len))
		goto out_undo;
	p->id_off = b->bytes.len;
	if (buf_append(&b->bytes, e->id, e->id_len))
		goto out_undo;
	p->body_off = b->bytes.len;
	if (buf_append(&b->bytes, e->body, e->body_len))
		goto out_undo;
	b->n++;
	return 0;

out_undo:
	b->bytes.len = len;
	return US_ENOMEM;
}

bool image_batch_is_full(const struct image_batch *b)
{
	return b->n == IMAGE_BATCH_ENTRIES || b->bytes.len >= IMAGE_BATCH_BYTES;
}

int image_batch_load(struct image_batch *b, struct store *s, struct us_err *err)
{
	const char *base = (const char *)b->bytes.p;
	int rc;

	for (size_t i = 0; i < b->n; i++) {
		struct pending *p = &b->p[i];

		b->e[i] = p->e;
		b->e[i].account = p->e.account_len ? base + p->account_off : "";
		b->e[i].file = p->e.file_len ? base + p->file_off : "";
		b->e[i].id = p->e.id_len ? (const uint8_t *)base + p->id_off : NULL;
		b->e[i].body = p->e.body_len ? (const uint8_t *)base + p->body_off : NULL;
	}
	rc = b->n ? store_load_entries(s, b->e, b->n, err) : 0;
	b->n = 0;
	buf_reset(&b->bytes);
	return rc;
}
