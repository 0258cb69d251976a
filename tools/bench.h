/*
 * bench.h - inside understudy-bench: what its files share (tools/bench.c:
 * commit, replicate, apply and main; tools/bench_archive.c: snapshot, save,
 * restore; tools/bench_failover.c: failover).
 */
#ifndef US_BENCH_H
#define US_BENCH_H

#include <jansson.h>

/* Prints j (taken) on stdout, one line. */
void bench_print_json(json_t *j);

/* `understudy-bench snapshot|save|restore ...` (argv[1] is the command). */
int bench_archive_main(int argc, char **argv);
/* `understudy-bench failover ...` (tools/bench_failover.c). */
int bench_failover_main(int argc, char **argv);

#endif
