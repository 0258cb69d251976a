/*
 * fuzz_entry.c - entry_decode (lib/entry.h) on arbitrary bytes: one journal
 * entry, as a block or a store's journal hands it over.
 *
 * An entry it takes keeps its bounds, borrows only from the input and encodes
 * back to the same entry; a refusal is US_ECORRUPT with a one-line message.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct us_err err;
	struct entry e;
	int rc;

	err_clear(&err);
	rc = entry_decode(data, size, &e, &err);
	if (rc) {
		fuzz_check_refusal(rc, &err);
		FUZZ_CHECK(rc == US_ECORRUPT);
		return 0;
	}
	fuzz_check_entry(&e, data, data + size);
	return 0;
}
