/*
 * understudy-inspect - checks a store on disk: the journal is contiguous and
 * ends at the position, every record decodes, the last commit is whole; counts
 * items and files. Opens the store read-only (no lock), so it may run beside a
 * live daemon, though it then sees a moment's state. Exit 0 when healthy,
 * 1 when a check fails or the store cannot be read, 2 on usage.
 */
#include <stdio.h>
#include <string.h>

#include "store.h"

int main(int argc, char **argv)
{
	const char *dir = NULL;
	int is_json = 0;
	struct store_opts opts = {.is_read_only = true};
	struct store_check c;
	struct store *s;
	struct us_err err;
	int is_healthy;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			is_json = 1;
		else if (strcmp(argv[i], "--help") == 0) {
			printf("usage: understudy-inspect DATA_DIR [--json]\n");
			return 0;
		} else if (!dir && argv[i][0] != '-')
			dir = argv[i];
		else {
			fprintf(stderr, "usage: understudy-inspect DATA_DIR [--json]\n");
			return 2;
		}
	}
	if (!dir) {
		fprintf(stderr, "usage: understudy-inspect DATA_DIR [--json]\n");
		return 2;
	}
	if (store_open(&s, dir, &opts, &err)) {
		fprintf(stderr, "understudy-inspect: %s\n", err.msg);
		return 1;
	}
	if (store_check(s, &c, &err)) {
		fprintf(stderr, "understudy-inspect: %s\n", err.msg);
		store_close(s);
		return 1;
	}
	store_close(s);
	/* An empty journal is healthy (a full copy leaves none behind it). */
	is_healthy = c.gaps == 0 && c.bad_records == 0 && c.chain_mismatches == 0 &&
		     (c.entries == 0 || c.last_seq == c.position_seq);
	if (is_json)
		printf("{\"first_seq\":%llu,\"last_seq\":%llu,\"entries\":%llu,\"gaps\":%llu,"
		       "\"bad_records\":%llu,\"chain_mismatches\":%llu,\"position_seq\":%llu,"
		       "\"generation\":%llu,\"items\":%llu,\"files\":%llu,\"healthy\":%s}\n",
		       (unsigned long long)c.first_seq, (unsigned long long)c.last_seq,
		       (unsigned long long)c.entries, (unsigned long long)c.gaps,
		       (unsigned long long)c.bad_records, (unsigned long long)c.chain_mismatches,
		       (unsigned long long)c.position_seq,
		       (unsigned long long)c.generation, (unsigned long long)c.items,
		       (unsigned long long)c.files, is_healthy ? "true" : "false");
	else
		printf("journal %llu..%llu (%llu entries, %llu gaps, %llu bad records, %llu history "
		       "chain mismatches), position gen %llu seq %llu, %llu items in %llu files: %s\n",
		       (unsigned long long)c.first_seq, (unsigned long long)c.last_seq,
		       (unsigned long long)c.entries, (unsigned long long)c.gaps,
		       (unsigned long long)c.bad_records, (unsigned long long)c.chain_mismatches,
		       (unsigned long long)c.generation,
		       (unsigned long long)c.position_seq, (unsigned long long)c.items,
		       (unsigned long long)c.files, is_healthy ? "healthy" : "NOT HEALTHY");
	return is_healthy ? 0 : 1;
}
