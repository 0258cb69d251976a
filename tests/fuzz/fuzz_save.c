/*
 * fuzz_save.c - the save reader (lib/save.h): save_reader_new, then
 * save_reader_next to the end, as `understudy restore` and `dump` read a
 * save and an archiver reads a full copy.
 *
 * Input: u8 mode, then the save.
 *   mode bit 0 clear: the rest is read as it is;
 *   mode bit 0 set: the rest is a save in clear that the target seals
 *   first, so that the fuzzer gets past the checksums and LZ4 to the
 *   entries and the trailer's counts: the header's checksum is set from
 *   its header_len; each frame (tag 'F' first) holds in place of its LZ4
 *   bytes an entry block in clear, of the length in its comp_len field,
 *   whose checksum the target sets and which it compresses (raw_len is
 *   set); the first byte that does not start such a frame, and the rest,
 *   are copied as they are, and the last 16 bytes of the result are set to
 *   the trailer's length and XXH64.
 * Every entry the reader yields keeps its bounds and its place in a save
 * (END set, the header's time, one of the three ops), and is taken by the
 * writer: the two agree. A save read to its end is written again from its
 * header and entries, and that save must read back to the same entries and
 * figures.
 */
#include <lz4.h>
#include <xxhash.h>

#include "fuzz.h"
#include "save.h"

#define MODE_CLEAR 0x01

/* An entry the reader gave: its bounds and its place in a save. */
static void check_entry(const struct entry *e, const struct save_header *h)
{
	struct buf out;
	struct us_err err;
	struct entry again;

	FUZZ_CHECK(e->account_len >= 1 && e->account_len <= US_ACCOUNT_MAX_LEN);
	FUZZ_CHECK(e->file_len <= US_FILE_MAX_LEN);
	FUZZ_CHECK(e->id_len <= US_ID_MAX_LEN && e->body_len <= US_BODY_MAX_BYTES);
	if (e->op != ENTRY_SET_LOGGING)
		FUZZ_CHECK(e->file_len >= 1);
	if (e->op == ENTRY_WRITE || e->op == ENTRY_DELETE)
		FUZZ_CHECK(e->id_len >= 1);
	if (h->kind == SAVE_KIND_EXPORT) {
		/* a site's journaled commits: data and file ops, as they were */
		FUZZ_CHECK(e->op >= ENTRY_WRITE && e->op <= ENTRY_SET_LOGGING);
		if (e->op == ENTRY_WRITE || e->op == ENTRY_DELETE || e->op == ENTRY_CLEAR_FILE)
			FUZZ_CHECK(e->section == SECTION_DATA || e->section == SECTION_DICT);
	} else {
		/* an image: declarations and items, each its own commit */
		FUZZ_CHECK(e->op == ENTRY_WRITE || e->op == ENTRY_CREATE_FILE ||
			   e->op == ENTRY_SET_LOGGING);
		FUZZ_CHECK(e->is_commit_end && e->time_ms == h->time_ms);
		FUZZ_CHECK(e->section == SECTION_DATA || e->section == SECTION_DICT);
		FUZZ_CHECK(!e->is_reset);
		if (e->op == ENTRY_SET_LOGGING)
			FUZZ_CHECK(e->file_len == 0 && !e->flag);
	}
	buf_init(&out);
	FUZZ_CHECK(entry_encode(e, &out, &err) == 0);
	FUZZ_CHECK(entry_decode(out.p, out.len, &again, &err) == 0);
	buf_release(&out);
}

/* Reads the save at p. With w, a writer is started on the header, writing
 * to out, and given every entry, which it must take. The entries go,
 * encoded after a u32le length, to encs. Returns the reader's last answer;
 * *sum filled on 0. */
static int read_save(const uint8_t *p, size_t len, struct save_header *h, struct save_writer **w,
		     struct buf *out, struct buf *encs, struct save_summary *sum)
{
	struct save_mem_source m = { .p = p, .len = len };
	struct save_reader *r;
	struct us_err err;
	struct entry e;
	uint64_t n = 0;
	int rc;

	err_clear(&err);
	rc = save_reader_new(&r, save_mem_source, &m, h, &err);
	if (rc) {
		fuzz_check_refusal(rc, &err);
		FUZZ_CHECK(rc == US_ECORRUPT || rc == US_EUNIMPL);
		FUZZ_CHECK(r == NULL);
		return rc;
	}
	FUZZ_CHECK(save_reader_summary(r) == NULL);
	if (w)
		FUZZ_CHECK(save_writer_new(w, h, save_buf_sink, out, &err) == 0);
	while ((rc = save_reader_next(r, &e, &err)) == 1) {
		check_entry(&e, h);
		if (w && save_writer_add(*w, &e, &err) != 0) {
			fprintf(stderr, "writer refused entry %llu: %s\n",
				(unsigned long long)n + 1, err.msg);
			FUZZ_CHECK(!"the writer takes what the reader gives");
		}
		{
			size_t at = encs->len;

			FUZZ_CHECK(buf_append_u32le(encs, 0) == 0);
			FUZZ_CHECK(entry_encode(&e, encs, &err) == 0);
			buf_put_u32le(encs->p + at, (uint32_t)(encs->len - at - 4));
		}
		n++;
	}
	if (rc) {
		fuzz_check_refusal(rc, &err);
		FUZZ_CHECK(rc == US_ECORRUPT);
		FUZZ_CHECK(save_reader_summary(r) == NULL);
	} else {
		const struct save_summary *s = save_reader_summary(r);

		FUZZ_CHECK(s && s->entries == n && s->bytes == len && s->items <= n);
		FUZZ_CHECK(s->files <= n && s->frames <= n);
		FUZZ_CHECK(s->xxh64 == buf_get_u64le(p + len - 8));
		*sum = *s;
	}
	save_reader_free(r);
	return rc;
}

/* Seals a save in clear (see the top) into out. */
static void seal(const uint8_t *p, size_t len, struct buf *out)
{
	size_t at = 0;

	FUZZ_CHECK(buf_append(out, p, len) == 0);
	if (len >= 10) {
		uint32_t hlen = buf_get_u32le(p + 6);

		if (hlen >= 14 && hlen <= len) {
			buf_put_u32le(out->p + hlen - 4, XXH32(out->p, hlen - 4, 0));
			at = hlen;
		}
	}
	if (at == 0)
		return;
	out->len = at;
	while (at + SAVE_FRAME_HEADER_BYTES <= len && p[at] == SAVE_TAG_FRAME) {
		uint32_t clear_len = buf_get_u32le(p + at + 5);
		size_t start = out->len;
		uint8_t *raw;
		int bound, comp;

		if (clear_len < 4 || clear_len > len - at - SAVE_FRAME_HEADER_BYTES)
			break;
		raw = malloc(clear_len);
		FUZZ_CHECK(raw);
		memcpy(raw, p + at + SAVE_FRAME_HEADER_BYTES, clear_len);
		buf_put_u32le(raw + clear_len - 4, XXH32(raw, clear_len - 4, 0));
		bound = LZ4_compressBound((int)clear_len);
		FUZZ_CHECK(buf_reserve(out, SAVE_FRAME_HEADER_BYTES + (size_t)bound) == 0);
		comp = LZ4_compress_default((const char *)raw,
					    (char *)out->p + start + SAVE_FRAME_HEADER_BYTES,
					    (int)clear_len, bound);
		FUZZ_CHECK(comp > 0);
		out->p[start] = SAVE_TAG_FRAME;
		buf_put_u32le(out->p + start + 1, clear_len);
		buf_put_u32le(out->p + start + 5, (uint32_t)comp);
		out->len = start + SAVE_FRAME_HEADER_BYTES + (size_t)comp;
		free(raw);
		at += SAVE_FRAME_HEADER_BYTES + clear_len;
	}
	FUZZ_CHECK(buf_append(out, p + at, len - at) == 0);
	if (len - at >= 16) {
		buf_put_u64le(out->p + out->len - 16, out->len - 8);
		buf_put_u64le(out->p + out->len - 8, XXH64(out->p, out->len - 8, 0));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct save_header h, h2;
	struct save_summary sum, ws, sum2;
	struct save_writer *w = NULL;
	struct buf sealed, encs, again, encs2;
	const uint8_t *p = data + 1;
	size_t len = size - 1;
	struct us_err err;
	int rc;

	if (size < 1)
		return 0;
	buf_init(&sealed);
	if (data[0] & MODE_CLEAR) {
		seal(data + 1, size - 1, &sealed);
		p = sealed.p;
		len = sealed.len;
	}
	buf_init(&encs);  /* the entries read, encoded */
	buf_init(&again); /* the save written again */
	buf_init(&encs2);
	rc = read_save(p, len, &h, &w, &again, &encs, &sum);
	if (rc == 0) {
		FUZZ_CHECK(save_writer_finish(w, &ws, &err) == 0);
		FUZZ_CHECK(ws.entries == sum.entries && ws.items == sum.items &&
			   ws.files == sum.files);
		FUZZ_CHECK(read_save(again.p, again.len, &h2, NULL, NULL, &encs2, &sum2) == 0);
		FUZZ_CHECK(memcmp(&ws, &sum2, sizeof(ws)) == 0);
		FUZZ_CHECK(fuzz_same_bytes(encs2.p, encs2.len, encs.p, encs.len));
		FUZZ_CHECK(h2.kind == h.kind && strcmp(h2.ns, h.ns) == 0 && h2.seq == h.seq &&
			   h2.chain == h.chain && strcmp(h2.creator, h.creator) == 0);
	}
	save_writer_free(w);
	buf_release(&encs2);
	buf_release(&again);
	buf_release(&encs);
	buf_release(&sealed);
	return 0;
}
