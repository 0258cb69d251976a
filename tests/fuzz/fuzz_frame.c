/*
 * fuzz_frame.c - a replication Frame as the archiver takes it off a Push
 * stream (lib/repl_recv.c): wire_unpack (our walk of the wire, refusing a
 * string that holds a NUL, then protobuf-c's unpack), then, for an Entries
 * or a SeedChunk body, stream_decode_entries on its fields; for a Hello, the
 * name checks. Everything is freed.
 *
 * protobuf-c's own decoder is Debian's shared library, not instrumented: the
 * fuzzer is not guided inside it, but ASan sees its allocations and LSan its
 * leaks.
 */
#include "fuzz.h"
#include "names.h"
#include "stream.h"
#include "understudy.pb-c.h"
#include "wire.h"

static void check_entries(const Understudy__V1__Entries *e)
{
	struct stream_frame f;
	struct us_err err;
	int rc;

	stream_frame_init(&f);
	err_clear(&err);
	rc = stream_decode_entries(e->first_seq, e->count, e->raw_len, e->block.data,
				   e->block.len, &f, &err);
	if (rc) {
		fuzz_check_refusal(rc, &err);
		FUZZ_CHECK(rc == US_ECORRUPT || rc == US_ETOOBIG);
	} else {
		FUZZ_CHECK(f.first_seq == e->first_seq && f.n == e->count);
		FUZZ_CHECK(f.entries[f.n - 1].is_commit_end);
		for (size_t i = 0; i < f.n; i++)
			fuzz_check_entry(&f.entries[i], f.raw.p, f.raw.p + f.raw.len);
	}
	stream_frame_release(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Understudy__V1__Frame *f;
	struct us_err err;
	int rc;

	if (size > US_RPC_MAX_MESSAGE_BYTES)
		return 0; /* gRPC refuses it before the archiver sees it */
	err_clear(&err);
	f = (Understudy__V1__Frame *)wire_unpack(&understudy__v1__frame__descriptor, data, size,
						 &err);
	if (!f) {
		fuzz_check_refusal(err.code, &err);
		return 0;
	}
	switch (f->body_case) {
	case UNDERSTUDY__V1__FRAME__BODY_ENTRIES:
		check_entries(f->entries);
		break;
	case UNDERSTUDY__V1__FRAME__BODY_SEED_CHUNK:
		check_entries(f->seed_chunk);
		break;
	case UNDERSTUDY__V1__FRAME__BODY_HELLO:
		FUZZ_CHECK(f->hello && f->hello->namespace_ && f->hello->node_id);
		err_clear(&err);
		rc = names_check_namespace(f->hello->namespace_, strlen(f->hello->namespace_),
					   &err);
		if (rc)
			fuzz_check_refusal(rc, &err);
		err_clear(&err);
		rc = names_check_node_id(f->hello->node_id, strlen(f->hello->node_id), &err);
		if (rc)
			fuzz_check_refusal(rc, &err);
		break;
	default:
		break;
	}
	understudy__v1__frame__free_unpacked(f, NULL);
	return 0;
}
