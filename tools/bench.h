/*
 * bench.h - inside understudy-bench: what its files share (tools/bench.c:
 * commit, replicate and main; tools/bench_apply.c: apply;
 * tools/bench_archive.c: snapshot, save, restore; tools/bench_failover.c:
 * failover; tools/bench_query.c: query).
 */
#ifndef US_BENCH_H
#define US_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define BENCH_MAX_SITES 64


enum bench_cmd {
	CMD_NONE = 0,
	CMD_COMMIT = 1,
	CMD_REPLICATE = 2,
	CMD_APPLY = 3,
};

struct bench_opts {
	enum bench_cmd cmd;
	/* commit */
	const char *addr;
	const char *ns;
	/* commit, replicate */
	const char *account;
	const char *file;
	long clients;          /* commit: in all; replicate: per site */
	long ops;
	long body_bytes;
	int is_text_body;      /* --body-kind text: each item its own random words */
	int64_t duration_ns;
	int64_t warmup_ns;
	/* replicate */
	const char *archiver;
	char *sites_arg;       /* a copy of --sites, cut at the commas */
	const char *sites[BENCH_MAX_SITES];
	size_t n_sites;
	const char *ns_prefix;
	long rate;             /* commits/s over all workers; 0: as fast as possible */
	int64_t lag_poll_ns;   /* us-lag's period */
	/* apply */
	const char *from;
	long frames;           /* 0: all */
	const char *tmp_dir;
	int is_json;
};

/* The monotonic clock, in ns. */
int64_t bench_now_ns(void);
/* The median of v[0..n) (sorts v). */
double bench_median(double *v, long n);
/* `understudy-bench apply` (tools/bench_apply.c): 0, or 1 with one line. */
int bench_apply(const struct bench_opts *o);

/* Prints j (taken) on stdout, one line. */
void bench_print_json(json_t *j);

/* `understudy-bench snapshot|save|restore ...` (argv[1] is the command). */
int bench_archive_main(int argc, char **argv);
/* `understudy-bench failover ...` (tools/bench_failover.c). */
int bench_failover_main(int argc, char **argv);
/* `understudy-bench switchover ...` (tools/bench_switchover.c). */
int bench_switchover_main(int argc, char **argv);
/* `understudy-bench query ...` (tools/bench_query.c). */
int bench_query_main(int argc, char **argv);

#endif
