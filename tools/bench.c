/*
 * bench.c - understudy-bench, the load generator of understudy.
 *
 *   understudy-bench commit [--addr HOST:PORT] [--ns NS] [--account A]
 *       [--file F] [--clients N] [--ops N] [--body BYTES] [--duration D]
 *       [--warmup D] [--json]
 *   understudy-bench replicate --archiver HOST:PORT --sites ADDR[,ADDR...]
 *       [--ns-prefix P] [--account A] [--file F] [--clients N] [--ops N]
 *       [--body BYTES] [--duration D] [--warmup D] [--rate R] [--lag-poll D]
 *       [--json]
 *   understudy-bench apply --from DATA_DIR [--frames N] [--tmp-dir DIR] [--json]
 *   understudy-bench snapshot|save ...   (tools/bench_archive.c)
 *
 * commit and replicate are built on the public C client library only
 * (include/understudy.h), so they measure what an application at a site sees.
 * apply links lib/ (store, stream) as the archiver does, to time the
 * archiver's apply path alone, without gRPC and without a site.
 *
 * commit: the end-to-end cost of a durable commit through gRPC, the
 * collector's group commit and its store. main sets up (reachability check,
 * create-file), then starts --clients workers, each with its own us_client (a
 * client is not thread-safe). A worker commits in a loop, each commit --ops
 * writes of distinct ids "c<worker>-<n>-<i>" with bodies of --body bytes
 * holding Pick marks, until the deadline. Only commits that START after the
 * warmup are measured; the run ends for a worker at the first commit it would
 * start past warmup + duration. Each worker keeps its own latency array (no
 * lock on the hot path); main merges and sorts them after the join, so the
 * percentiles are exact (nearest rank), not histogram estimates.
 *
 * replicate: the same load into one or more running collectors (sites), each
 * streaming to the archiver, measured where it ends: items durable on the
 * archiver per second, and the replication lag of each commit. Threads:
 *   main        sets up each site (Status gives its namespace; create-file;
 *               waits until the archiver holds that namespace durably up to
 *               the site's last seq), starts the others, joins the workers,
 *               then waits (condition variable, deadline) until the archiver
 *               has made every acknowledged commit durable.
 *   us-bench-S-N  --clients workers per site, as in commit; with --rate each
 *               follows a fixed schedule (rate / workers commits/s each,
 *               phases spread; a commit is measured by its scheduled start,
 *               so a late one never adds to the window). A measured
 *               commit's (last_seq, ack time) goes into its site's queue
 *               (site.q_lock).
 *   us-lag      polls the archiver's Status every --lag-poll (1 ms); for each
 *               site moves the queue into its own seq-sorted pending list and
 *               matches every sample with seq <= the namespace's durable_seq:
 *               lag = time of the Status answer - ack time (an upper bound,
 *               coarser by at most one poll period, which is reported).
 *   us-sample   from the end of the warmup to the end of the window, every
 *               BENCH_SAMPLE_NS and once exactly at each end: the archiver's
 *               durable_seq/applied_seq per namespace and each site's
 *               last_seq. Replicated items/s = durable seqs advanced between
 *               the first and last sample / the time between them (every
 *               write of a logged file is one seq); a sample's time is the
 *               midpoint of its Status call, each site's its own.
 * Lock order: site.q_lock and run.lock are never held together.
 *
 * apply (tools/bench_apply.c): opens a collector's store read-only (no lock taken: it may be
 * running), builds every frame of its journal as the collector's link does
 * (stream_build_entries, US_FRAME_TARGET_BYTES) into memory, then times only
 * decoding (stream_decode_entries) and applying (store_apply_entries) them
 * into a fresh store in a temp dir: once with one store_sync at the end, once
 * with a store_sync after every frame (the archiver's syncer at its worst).
 *
 * Errors: the first failed commit stops every worker (stop flag); the count
 * of failed commits and the first message are reported and the exit status
 * is 1. Exit 1 with one line when a server cannot be reached or a store
 * cannot be read, 2 on a usage error, 0 on success.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"

#include "understudy.h"
/* apply only: the archiver's own path (lib/) */
#include "us_limits.h"

/* Bounds of the options; the commit bounds are the SPEC's (us_limits.h). */
#define BENCH_MAX_CLIENTS 4096     /* workers in all, every site together */
#define BENCH_MAX_OPS US_COMMIT_MAX_OPS
#define BENCH_MAX_BODY US_BODY_MAX_BYTES
#define BENCH_MAX_COMMIT_BYTES ((unsigned long long)US_COMMIT_MAX_BYTES)
#define BENCH_MAX_RATE 10000000L   /* commits/s */
#define BENCH_ID_MAX 48
#define BENCH_STATUS_TIMEOUT_MS 5000
#define BENCH_MARK_EVERY 10        /* one mark byte every this many body bytes */
#define BENCH_LAG_POLL_NS 1000000LL        /* archiver Status for the lag: 1 ms */
#define BENCH_LAG_POLL_MIN_NS 100000LL     /* --lag-poll bounds: 100 us .. 1 s */
#define BENCH_LAG_POLL_MAX_NS 1000000000LL
#define BENCH_SAMPLE_NS 50000000LL         /* throughput samples: 50 ms */
#define BENCH_LINK_WAIT_NS 30000000000LL   /* setup: the archiver must catch up in 30 s */
#define BENCH_DRAIN_NS 60000000000LL       /* after the load: everything durable in 60 s */

static const char *const cmd_names[] = { "", "commit", "replicate", "apply" };



static void usage(FILE *out)
{
	fprintf(out,
		"usage: understudy-bench commit [options]\n"
		"       understudy-bench replicate --archiver HOST:PORT --sites ADDR[,ADDR...] [options]\n"
		"       understudy-bench apply --from DATA_DIR [options]\n"
		"       understudy-bench snapshot --addr HOST:PORT --ns NS [--count N] [--json]\n"
		"       understudy-bench save --addr HOST:PORT --ns NS --store DIR [--rounds R]\n"
		"                             [--out-dir D] [--json]\n"
		"       understudy-bench restore --save FILE --store DIR [--rounds R] [--out-dir D]\n"
		"                                [--json]\n"
		"       understudy-bench failover --archiver HOST:PORT --ns NS[,NS...]\n"
		"                                 [--sites ADDR[,ADDR...]] [--json]\n"
		"       understudy-bench switchover --archiver HOST:PORT --site HOST:PORT [--rounds R]\n"
		"                                   [--json]\n"
		"       understudy-bench query --addr HOST:PORT --ns NS --account ACC --sentence S\n"
		"                              [--rounds R] [--pg-port P --pg-sql SQL [--pg-db DB]]\n"
		"                              [--json]\n"
		"         (snapshot, save, restore: tools/bench_archive.c's header says what they do;\n"
		"         failover: tools/bench_failover.c's; switchover: tools/bench_switchover.c's;\n"
		"         query: tools/bench_query.c's; tools/bench-query runs it beside PostgreSQL)\n"
		"\n"
		"commit: commits in a loop from N concurrent clients and reports throughput and\n"
		"commit latency (each commit is durable on the collector when acknowledged).\n"
		"  --addr HOST:PORT   collector to load (default 127.0.0.1:7441)\n"
		"  --ns NS            namespace (default site-a)\n"
		"\n"
		"replicate: the same load into running collectors that stream to one archiver;\n"
		"reports items durable on the archiver per second and the replication lag\n"
		"(acknowledgement at the site to durable on the archiver).\n"
		"  --archiver HOST:PORT  the archiver the sites stream to\n"
		"  --sites A[,A...]   collectors, each with its own namespace (found with Status)\n"
		"  --ns-prefix P      every site's namespace must start with P (default site;\n"
		"                     '' accepts any)\n"
		"  --rate R           commits/s offered over all clients, fixed schedule\n"
		"                     (default 0: as fast as possible)\n"
		"  --lag-poll D       period of the archiver Status polls that time the lag\n"
		"                     (default 1ms; each poll costs the archiver CPU)\n"
		"\n"
		"commit and replicate:\n"
		"  --account A        account (default BENCH)\n"
		"  --file F           file, created (logged) when missing (default BENCH)\n"
		"  --clients N        concurrent clients, one thread and connection each; for\n"
		"                     replicate per site (default 64 for commit, 4 for replicate)\n"
		"  --ops N            item writes per commit (default 1)\n"
		"  --body BYTES       body size of each item, with Pick marks (default 100)\n"
		"  --body-kind K      same (one body for every item, the default) or text (random\n"
		"                     words, different for every item: compresses like real data)\n"
		"  --duration D       measured time: 500ms, 10s, 2m (default 10s)\n"
		"  --warmup D         unmeasured time before it (default 1s)\n"
		"\n"
		"apply: the archiver's apply path alone: builds every stream frame of a\n"
		"collector's journal in memory, then times decoding and applying them into a\n"
		"fresh store (one sync at the end, then again with a sync per frame).\n"
		"  --from DATA_DIR    the collector's store (opened read-only; it may run)\n"
		"  --frames N         only the first N frames (default 0: all)\n"
		"  --tmp-dir DIR      where the fresh store is made and removed (default\n"
		"                     $TMPDIR or /tmp; put it on the disk to measure)\n"
		"\n"
		"  --json             one JSON object on stdout\n"
		"  --help             this text\n"
		"\n"
		"exit status: 0 success, 1 a server unreachable, a commit failed or a store\n"
		"unreadable, 2 usage\n");
}

/* ---- small helpers ---- */

static int cmp_double_asc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double bench_median(double *v, long n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double_asc);
	return v[(n - 1) / 2];
}

int64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timespec mono_ts(int64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000) };

	return ts;
}

/* Pacing only (a fixed-rate schedule), never to wait for a condition. */
static void sleep_until_ns(int64_t t)
{
	struct timespec ts = mono_ts(t);

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* "500ms", "10s", "2m", "1h"; a bare number is seconds. Returns 0 or -1. */
static int parse_duration(const char *s, int64_t *out_ns)
{
	char *end;
	double v;
	double mult;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || v < 0)
		return -1;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		mult = 1e9;
	else if (strcmp(end, "ms") == 0)
		mult = 1e6;
	else if (strcmp(end, "us") == 0)
		mult = 1e3;
	else if (strcmp(end, "m") == 0)
		mult = 60e9;
	else if (strcmp(end, "h") == 0)
		mult = 3600e9;
	else
		return -1;
	if (v * mult > 1e18)
		return -1;
	*out_ns = (int64_t)(v * mult);
	return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array, in ms; 0 when empty. */
static double pct_ms(const uint64_t *v, size_t n, double p)
{
	size_t rank;

	if (n == 0)
		return 0;
	rank = (size_t)((p / 100.0) * (double)n + 0.999999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1e6;
}

/* Appends v to a growing array; 0 or -1 (out of memory, array unchanged). */
static int push_u64(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 4096;
		uint64_t *p = realloc(*v, c * sizeof(*p));

		if (!p)
			return -1;
		*v = p;
		*cap = c;
	}
	(*v)[(*n)++] = x;
	return 0;
}

void bench_print_json(json_t *j)
{
	if (!j) {
		fprintf(stderr, "understudy-bench: out of memory for the JSON report\n");
		return;
	}
	json_dumpf(j, stdout, JSON_COMPACT | JSON_REAL_PRECISION(10));
	fputc('\n', stdout);
	json_decref(j);
}

/* One line: the library's message when it names the address already. */
static void print_unreachable(const char *addr, const us_err_t *err)
{
	const char *msg = err->msg[0] ? err->msg : us_strerror(err->code);

	if (strstr(msg, addr))
		fprintf(stderr, "understudy-bench: %s\n", msg);
	else
		fprintf(stderr, "understudy-bench: cannot reach %s: %s\n", addr, msg);
}

/* ---- options ---- */

#define ON_COMMIT (1u << CMD_COMMIT)
#define ON_REPLICATE (1u << CMD_REPLICATE)
#define ON_APPLY (1u << CMD_APPLY)

struct opt_def {
	const char *name;
	unsigned cmds;       /* the subcommands that take it */
};

static const struct opt_def opt_defs[] = {
	{ "--addr", ON_COMMIT },
	{ "--ns", ON_COMMIT },
	{ "--account", ON_COMMIT | ON_REPLICATE },
	{ "--file", ON_COMMIT | ON_REPLICATE },
	{ "--clients", ON_COMMIT | ON_REPLICATE },
	{ "--ops", ON_COMMIT | ON_REPLICATE },
	{ "--body", ON_COMMIT | ON_REPLICATE },
	{ "--body-kind", ON_COMMIT | ON_REPLICATE },
	{ "--duration", ON_COMMIT | ON_REPLICATE },
	{ "--warmup", ON_COMMIT | ON_REPLICATE },
	{ "--archiver", ON_REPLICATE },
	{ "--sites", ON_REPLICATE },
	{ "--ns-prefix", ON_REPLICATE },
	{ "--rate", ON_REPLICATE },
	{ "--lag-poll", ON_REPLICATE },
	{ "--from", ON_APPLY },
	{ "--frames", ON_APPLY },
	{ "--tmp-dir", ON_APPLY },
};

static const struct opt_def *find_opt(const char *name)
{
	for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++)
		if (strcmp(name, opt_defs[i].name) == 0)
			return &opt_defs[i];
	return NULL;
}

/* Cuts o->sites_arg at the commas into o->sites. 0 or -1 (message printed). */
static int split_sites(struct bench_opts *o)
{
	char *p = o->sites_arg;

	o->n_sites = 0;
	for (;;) {
		char *comma = strchr(p, ',');

		if (comma)
			*comma = '\0';
		if (*p == '\0') {
			fprintf(stderr, "understudy-bench: --sites has an empty address\n");
			return -1;
		}
		if (o->n_sites == BENCH_MAX_SITES) {
			fprintf(stderr, "understudy-bench: --sites lists more than %d addresses\n",
				BENCH_MAX_SITES);
			return -1;
		}
		for (size_t i = 0; i < o->n_sites; i++)
			if (strcmp(o->sites[i], p) == 0) {
				fprintf(stderr, "understudy-bench: --sites lists %s twice\n", p);
				return -1;
			}
		o->sites[o->n_sites++] = p;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

/* Returns 0 to run, 1 after --help, 2 on a usage error (message printed). */
static int parse_args(int argc, char **argv, struct bench_opts *o)
{
	bool is_clients_set = false;

	memset(o, 0, sizeof(*o));
	o->addr = US_DEFAULT_COLLECTOR_ADDR;
	o->ns = US_DEFAULT_NAMESPACE;
	o->account = "BENCH";
	o->file = "BENCH";
	o->ops = 1;
	o->body_bytes = 100;
	o->duration_ns = 10000000000LL;
	o->warmup_ns = 1000000000LL;
	o->ns_prefix = "site";
	o->lag_poll_ns = BENCH_LAG_POLL_NS;
	o->tmp_dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const struct opt_def *d;
		const char *val = NULL;
		char name[32];
		const char *eq;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return 1;
		if (strncmp(a, "--", 2) != 0) {
			enum bench_cmd c = CMD_NONE;

			for (int k = CMD_COMMIT; k <= CMD_APPLY; k++)
				if (strcmp(a, cmd_names[k]) == 0)
					c = (enum bench_cmd)k;
			if (o->cmd == CMD_NONE && c != CMD_NONE) {
				o->cmd = c;
				continue;
			}
			fprintf(stderr, "understudy-bench: unknown command or argument '%s'\n", a);
			return 2;
		}
		if (strcmp(a, "--json") == 0) {
			o->is_json = 1;
			continue;
		}
		/* --name VALUE or --name=VALUE */
		eq = strchr(a, '=');
		if (eq) {
			size_t n = (size_t)(eq - a);
			if (n >= sizeof(name))
				n = sizeof(name) - 1;
			memcpy(name, a, n);
			name[n] = '\0';
			val = eq + 1;
		} else {
			snprintf(name, sizeof(name), "%s", a);
		}
		d = find_opt(name);
		if (!d) {
			fprintf(stderr, "understudy-bench: unknown option %s\n", name);
			return 2;
		}
		if (o->cmd == CMD_NONE) {
			fprintf(stderr, "understudy-bench: %s before the command (commit, replicate "
				"or apply)\n", name);
			return 2;
		}
		if (!(d->cmds & (1u << o->cmd))) {
			fprintf(stderr, "understudy-bench: %s is not an option of %s\n", name,
				cmd_names[o->cmd]);
			return 2;
		}
		if (!eq) {
			if (i + 1 >= argc) {
				fprintf(stderr, "understudy-bench: option %s needs a value\n", a);
				return 2;
			}
			val = argv[++i];
		}
		if (strcmp(name, "--addr") == 0) {
			o->addr = val;
		} else if (strcmp(name, "--ns") == 0) {
			o->ns = val;
		} else if (strcmp(name, "--account") == 0) {
			o->account = val;
		} else if (strcmp(name, "--file") == 0) {
			o->file = val;
		} else if (strcmp(name, "--clients") == 0) {
			if (parse_long(val, 1, BENCH_MAX_CLIENTS, &o->clients) != 0) {
				fprintf(stderr, "understudy-bench: --clients must be 1..%d, not '%s'\n",
					BENCH_MAX_CLIENTS, val);
				return 2;
			}
			is_clients_set = true;
		} else if (strcmp(name, "--ops") == 0) {
			if (parse_long(val, 1, BENCH_MAX_OPS, &o->ops) != 0) {
				fprintf(stderr, "understudy-bench: --ops must be 1..%u, not '%s'\n",
					BENCH_MAX_OPS, val);
				return 2;
			}
		} else if (strcmp(name, "--body") == 0) {
			if (parse_long(val, 0, (long)BENCH_MAX_BODY, &o->body_bytes) != 0) {
				fprintf(stderr, "understudy-bench: --body must be 0..%u bytes, not '%s'\n",
					BENCH_MAX_BODY, val);
				return 2;
			}
		} else if (strcmp(name, "--body-kind") == 0) {
			if (strcmp(val, "same") != 0 && strcmp(val, "text") != 0) {
				fprintf(stderr, "understudy-bench: --body-kind is same or text, not '%s'\n",
					val);
				return 2;
			}
			o->is_text_body = strcmp(val, "text") == 0;
		} else if (strcmp(name, "--duration") == 0) {
			if (parse_duration(val, &o->duration_ns) != 0 || o->duration_ns <= 0) {
				fprintf(stderr, "understudy-bench: bad --duration '%s' (e.g. 500ms, 10s, 2m)\n", val);
				return 2;
			}
		} else if (strcmp(name, "--warmup") == 0) {
			if (parse_duration(val, &o->warmup_ns) != 0) {
				fprintf(stderr, "understudy-bench: bad --warmup '%s' (e.g. 0s, 500ms, 1s)\n", val);
				return 2;
			}
		} else if (strcmp(name, "--archiver") == 0) {
			o->archiver = val;
		} else if (strcmp(name, "--sites") == 0) {
			free(o->sites_arg);
			o->sites_arg = strdup(val);
			if (!o->sites_arg) {
				fprintf(stderr, "understudy-bench: out of memory\n");
				return 2;
			}
			if (split_sites(o) != 0)
				return 2;
		} else if (strcmp(name, "--ns-prefix") == 0) {
			o->ns_prefix = val;
		} else if (strcmp(name, "--rate") == 0) {
			if (parse_long(val, 0, BENCH_MAX_RATE, &o->rate) != 0) {
				fprintf(stderr, "understudy-bench: --rate must be 0..%ld commits/s, not '%s'\n",
					BENCH_MAX_RATE, val);
				return 2;
			}
		} else if (strcmp(name, "--lag-poll") == 0) {
			if (parse_duration(val, &o->lag_poll_ns) != 0 ||
			    o->lag_poll_ns < BENCH_LAG_POLL_MIN_NS ||
			    o->lag_poll_ns > BENCH_LAG_POLL_MAX_NS) {
				fprintf(stderr, "understudy-bench: --lag-poll must be 100us..1s, not '%s'\n",
					val);
				return 2;
			}
		} else if (strcmp(name, "--from") == 0) {
			o->from = val;
		} else if (strcmp(name, "--frames") == 0) {
			if (parse_long(val, 0, LONG_MAX, &o->frames) != 0) {
				fprintf(stderr, "understudy-bench: --frames must be 0 or more, not '%s'\n",
					val);
				return 2;
			}
		} else if (strcmp(name, "--tmp-dir") == 0) {
			o->tmp_dir = val;
		}
	}
	if (o->cmd == CMD_NONE) {
		fprintf(stderr, "understudy-bench: missing command (commit, replicate or apply)\n");
		return 2;
	}
	if (!is_clients_set)
		o->clients = o->cmd == CMD_COMMIT ? 64 : 4;
	if (o->cmd == CMD_REPLICATE) {
		if (!o->archiver || !*o->archiver) {
			fprintf(stderr, "understudy-bench: replicate needs --archiver HOST:PORT\n");
			return 2;
		}
		if (o->n_sites == 0) {
			fprintf(stderr, "understudy-bench: replicate needs --sites ADDR[,ADDR...]\n");
			return 2;
		}
		if ((unsigned long long)o->clients * o->n_sites > BENCH_MAX_CLIENTS) {
			fprintf(stderr, "understudy-bench: %ld clients x %zu sites is over %d threads\n",
				o->clients, o->n_sites, BENCH_MAX_CLIENTS);
			return 2;
		}
	}
	if (o->cmd == CMD_APPLY && (!o->from || !*o->from)) {
		fprintf(stderr, "understudy-bench: apply needs --from DATA_DIR\n");
		return 2;
	}
	if ((unsigned long long)o->ops * ((unsigned long long)o->body_bytes + BENCH_ID_MAX) >
	    BENCH_MAX_COMMIT_BYTES) {
		fprintf(stderr, "understudy-bench: --ops x --body exceeds the %llu-byte commit limit\n",
			BENCH_MAX_COMMIT_BYTES);
		return 2;
	}
	return 0;
}

/* ---- the load: workers shared by commit and replicate ---- */

struct lag_sample {
	uint64_t seq;        /* the commit's last seq */
	int64_t ack_ns;      /* monotonic: when the site acknowledged it */
};

/* One site of replicate (commit uses one, unnamed). */
struct site {
	const char *addr;
	char ns[US_NAMESPACE_MAX_LEN + 1];
	uint64_t seq_before;       /* main: the site's last_seq once set up */
	uint64_t seq_after;        /* main: after the workers ended */
	uint64_t total_commits;    /* main, after the join: every commit, warmup too */
	uint64_t commits;          /* main, after the join: measured ones */
	pthread_mutex_t q_lock;    /* guards q, q_n, q_cap */
	struct lag_sample *q;      /* workers append measured commits */
	size_t q_n, q_cap;
	/* us-lag only */
	struct lag_sample *pend;   /* unmatched samples, sorted by seq from pend_head */
	size_t pend_head, pend_n, pend_cap;
	struct lag_sample *spare;  /* swapped with q */
	size_t spare_cap;
	atomic_uint_least64_t durable_seen; /* us-lag writes: the archiver's durable_seq */
	atomic_int is_seen;        /* us-lag writes: the archiver lists the namespace */
	/* us-sample only, read by main after the join */
	uint64_t durable_first, durable_last, applied_last, last_seq_first, last_seq_last;
	int64_t site_first_ns, site_last_ns;  /* midpoints of the site's own Status calls */
};

/* Shared by main and the threads. Written by main before the threads start,
 * except the fields marked otherwise. */
struct bench_run {
	const struct bench_opts *opts;
	struct site *sites;
	size_t n_sites;
	size_t n_workers;          /* in all */
	int64_t start_ns;          /* monotonic: workers start their schedule here */
	int64_t measure_start_ns;  /* monotonic: warmup over, measuring from here */
	int64_t measure_end_ns;    /* monotonic: start no commit past this */
	int64_t interval_ns;       /* --rate: one worker's schedule period; 0 unpaced */
	atomic_int is_stopping;    /* any thread: set on the first failure */
	pthread_mutex_t err_lock;  /* guards the two fields below */
	uint64_t n_errors;
	char first_error[US_ERR_MSG_MAX + 256];
	/* us-lag and us-sample stop; us-lag signals each poll (run.lock) */
	pthread_mutex_t lock;
	pthread_cond_t cond;       /* CLOCK_MONOTONIC */
	bool is_done;              /* main: the observers end */
	uint64_t n_polls;          /* us-lag, under lock */
	/* us-lag's, read by main after its join */
	uint64_t *lags_ns;
	size_t n_lags, cap_lags;
	int64_t first_poll_ns, last_poll_ns;
	/* us-sample's, read by main after its join */
	int64_t sample_first_ns, sample_last_ns;
	uint64_t n_samples;
	uint64_t backlog_max;      /* max over samples of sum(last_seq - durable) */
};

/* One worker's state; only that worker writes it until it is joined. */
struct bench_worker {
	struct bench_run *run;
	struct site *site;
	long index;           /* within its site */
	size_t global_index;  /* over every site: the schedule's phase */
	us_client_t *client;
	uint64_t *lat_ns;     /* latencies of measured commits */
	size_t n_lat, cap_lat;
	uint64_t n_measured;  /* measured commits that succeeded */
	uint64_t n_total;     /* every commit that succeeded */
	int64_t last_end_ns;  /* monotonic end of its last measured commit */
	int is_oom;
};

static void record_error(struct bench_run *run, const char *who, const us_err_t *err)
{
	pthread_mutex_lock(&run->err_lock);
	if (run->n_errors == 0)
		snprintf(run->first_error, sizeof(run->first_error), "%.200s: %s", who,
			 err->msg[0] ? err->msg : us_strerror(err->code));
	run->n_errors++;
	pthread_mutex_unlock(&run->err_lock);
	atomic_store(&run->is_stopping, 1);
}

/* Fills a body of len bytes that looks like a Pick record: printable
 * attribute text with an AM (0xFE) or VM (0xFD) every BENCH_MARK_EVERY bytes. */
static void fill_body(uint8_t *p, size_t len, long seed)
{
	for (size_t i = 0; i < len; i++) {
		if (i % BENCH_MARK_EVERY == BENCH_MARK_EVERY - 1)
			p[i] = (i / BENCH_MARK_EVERY) % 3 == 2 ? 0xFD : 0xFE;
		else
			p[i] = (uint8_t)('A' + (i + (size_t)seed) % 26);
	}
}

/* --body-kind text: random lower-case words with an AM or VM where a
 * BENCH_MARK_EVERY-th byte falls, different for every item, compressing
 * about as little as names and addresses do (xorshift64*, state per worker). */
static void fill_text(uint8_t *p, size_t len, uint64_t *state)
{
	size_t word = 0;

	for (size_t i = 0; i < len; i++) {
		uint64_t x = *state;

		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		*state = x;
		x *= 0x2545F4914F6CDD1DULL;
		if (i % BENCH_MARK_EVERY == BENCH_MARK_EVERY - 1)
			p[i] = (x >> 60) % 3 == 2 ? 0xFD : 0xFE;
		else if (word >= 3 + (x >> 61)) {
			p[i] = ' ';
			word = 0;
			continue;
		} else
			p[i] = (uint8_t)('a' + (x >> 32) % 26);
		word++;
	}
}

static int queue_lag_sample(struct site *s, uint64_t seq, int64_t ack_ns)
{
	int rc = 0;

	pthread_mutex_lock(&s->q_lock);
	if (s->q_n == s->q_cap) {
		size_t cap = s->q_cap ? s->q_cap * 2 : 1024;
		struct lag_sample *p = realloc(s->q, cap * sizeof(*p));

		if (!p) {
			rc = -1;
			goto out;
		}
		s->q = p;
		s->q_cap = cap;
	}
	s->q[s->q_n++] = (struct lag_sample){ .seq = seq, .ack_ns = ack_ns };
out:
	pthread_mutex_unlock(&s->q_lock);
	return rc;
}

static void *worker_main(void *arg)
{
	struct bench_worker *w = arg;
	struct bench_run *run = w->run;
	const struct bench_opts *o = run->opts;
	size_t n_ops = (size_t)o->ops;
	us_op_t *ops = calloc(n_ops, sizeof(*ops));
	char (*ids)[BENCH_ID_MAX] = calloc(n_ops, BENCH_ID_MAX);
	size_t body_n = o->is_text_body ? n_ops : 1; /* text: one body an op */
	uint8_t *body = malloc(o->body_bytes ? body_n * (size_t)o->body_bytes : 1);
	uint64_t rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(w->index + 1) * 0x100000001B3ULL;
	const char *ns = run->n_sites ? w->site->ns : o->ns;
	bool is_lag = run->n_sites > 0;
	uint64_t n_commit = 0;
	char who[64];
	char thread_name[16];
	int64_t next_ns = 0;
	us_err_t err;

	if (run->n_sites)
		snprintf(thread_name, sizeof(thread_name), "us-bench-%zu-%ld",
			 (size_t)(w->site - run->sites), w->index);
	else
		snprintf(thread_name, sizeof(thread_name), "us-bench-%ld", w->index);
	pthread_setname_np(pthread_self(), thread_name);
	if (run->n_sites)
		snprintf(who, sizeof(who), "site %s client %ld", w->site->addr, w->index);
	else
		snprintf(who, sizeof(who), "client %ld", w->index);
	if (!ops || !ids || !body) {
		err.code = US_ENOMEM;
		snprintf(err.msg, sizeof(err.msg), "out of memory for a commit of %zu ops", n_ops);
		record_error(run, who, &err);
		goto out_free;
	}
	fill_body(body, (size_t)o->body_bytes, w->index);
	for (size_t i = 0; i < n_ops; i++) {
		ops[i].kind = US_OP_WRITE;
		ops[i].account = o->account;
		ops[i].file = o->file;
		ops[i].id = (const uint8_t *)ids[i];
		ops[i].body = body + (o->is_text_body ? i * (size_t)o->body_bytes : 0);
		ops[i].body_len = (size_t)o->body_bytes;
	}
	if (run->interval_ns) /* phases spread over one period */
		next_ns = run->start_ns +
			  (int64_t)((double)run->interval_ns * (double)w->global_index /
				    (double)run->n_workers);

	while (!atomic_load(&run->is_stopping)) {
		uint64_t last_seq = 0;
		int64_t t0, t1, t_start;
		int rc;

		if (o->is_text_body) /* before the clock starts: not the commit's cost */
			for (size_t i = 0; i < n_ops; i++)
				fill_text(body + i * (size_t)o->body_bytes, (size_t)o->body_bytes, &rng);
		if (run->interval_ns) {
			/* paced: a commit belongs to the window of its scheduled time,
			 * so a late one does not add to the next window */
			if (next_ns >= run->measure_end_ns)
				break;
			sleep_until_ns(next_ns);
			t_start = next_ns;
			next_ns += run->interval_ns;
			t0 = bench_now_ns();
		} else {
			t0 = bench_now_ns();
			t_start = t0;
			if (t0 >= run->measure_end_ns)
				break;
		}
		for (size_t i = 0; i < n_ops; i++) {
			int n = snprintf(ids[i], BENCH_ID_MAX, "c%ld-%" PRIu64 "-%zu", w->index,
					 n_commit, i);
			ops[i].id_len = (size_t)n;
		}
		n_commit++;
		rc = us_commit(w->client, ns, ops, n_ops, &last_seq, &err);
		t1 = bench_now_ns();
		if (rc != 0) {
			if (err.code == 0)
				err.code = rc;
			record_error(run, who, &err);
			break;
		}
		w->n_total++;
		if (t_start >= run->measure_start_ns) {
			if (push_u64(&w->lat_ns, &w->n_lat, &w->cap_lat, (uint64_t)(t1 - t0)) != 0 ||
			    (is_lag && last_seq && queue_lag_sample(w->site, last_seq, t1) != 0)) {
				w->is_oom = 1;
				atomic_store(&run->is_stopping, 1);
				break;
			}
			w->n_measured++;
			w->last_end_ns = t1;
		}
	}
out_free:
	free(body);
	free(ids);
	free(ops);
	return NULL;
}

/* Creates the file (existing is fine) in ns at addr. Returns 0, or 1 with
 * the reason printed. */
static int create_bench_file(us_client_t *c, const struct bench_opts *o, const char *ns)
{
	us_err_t err;
	us_op_t op;
	int rc;

	memset(&op, 0, sizeof(op));
	op.kind = US_OP_CREATE_FILE;
	op.account = o->account;
	op.file = o->file;
	op.is_logged = 1;
	rc = us_commit(c, ns, &op, 1, NULL, &err);
	if (rc != 0 && rc != US_EEXIST) {
		fprintf(stderr, "understudy-bench: cannot create file %s/%s/%s: %s\n", ns,
			o->account, o->file, err.msg[0] ? err.msg : us_strerror(rc));
		return 1;
	}
	return 0;
}

/* A client for addr whose first Status answered; NULL with one line printed. */
static us_client_t *connect_status(const char *addr, us_status_t **st)
{
	us_client_opts_t copts = { .timeout_ms = BENCH_STATUS_TIMEOUT_MS };
	us_client_t *c;
	us_err_t err;
	int rc;

	c = us_client_new(addr, &copts, &err);
	if (!c) {
		print_unreachable(addr, &err);
		return NULL;
	}
	rc = us_status(c, st, &err);
	if (rc != 0) {
		if (err.code == 0)
			err.code = rc;
		print_unreachable(addr, &err);
		us_client_free(c);
		return NULL;
	}
	return c;
}

/* Makes the clients, starts the workers, joins them. Returns 0, or 1 with
 * the reason printed (the workers' own errors are in run). */
static int run_workers(struct bench_run *run, struct bench_worker *w, const char *commit_addr)
{
	pthread_t *tids = calloc(run->n_workers, sizeof(*tids));
	size_t started = 0;
	int status = 0;

	if (!tids) {
		fprintf(stderr, "understudy-bench: out of memory for %zu clients\n", run->n_workers);
		return 1;
	}
	for (size_t i = 0; i < run->n_workers; i++) {
		const char *addr = w[i].site ? w[i].site->addr : commit_addr;
		us_err_t err;

		w[i].client = us_client_new(addr, NULL, &err);
		if (!w[i].client) {
			fprintf(stderr, "understudy-bench: cannot create client %zu for %s: %s\n", i,
				addr, err.msg);
			free(tids);
			return 1;
		}
	}
	for (; started < run->n_workers; started++) {
		if (pthread_create(&tids[started], NULL, worker_main, &w[started]) != 0) {
			fprintf(stderr, "understudy-bench: cannot start thread %zu\n", started);
			atomic_store(&run->is_stopping, 1);
			status = 1;
			break;
		}
	}
	for (size_t i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	free(tids);
	for (size_t i = 0; i < run->n_workers && status == 0; i++)
		if (w[i].is_oom) {
			fprintf(stderr, "understudy-bench: out of memory for latencies\n");
			status = 1;
		}
	return status;
}

/* Merges the workers' latencies, sorted. NULL on out of memory (printed). */
static uint64_t *merge_latencies(struct bench_worker *w, size_t n_workers, size_t *n_all)
{
	uint64_t *all;
	size_t n = 0;

	for (size_t i = 0; i < n_workers; i++)
		n += w[i].n_lat;
	all = malloc((n ? n : 1) * sizeof(*all));
	if (!all) {
		fprintf(stderr, "understudy-bench: out of memory for %zu latencies\n", n);
		return NULL;
	}
	n = 0;
	for (size_t i = 0; i < n_workers; i++) {
		if (w[i].n_lat)
			memcpy(all + n, w[i].lat_ns, w[i].n_lat * sizeof(*all));
		n += w[i].n_lat;
	}
	qsort(all, n, sizeof(*all), cmp_u64);
	*n_all = n;
	return all;
}

/* The window runs from the end of the warmup to the end of the last measured
 * commit: the last commits may finish after the deadline. */
static double window_s(const struct bench_run *run, const struct bench_worker *w)
{
	int64_t last_end = 0;

	for (size_t i = 0; i < run->n_workers; i++)
		if (w[i].last_end_ns > last_end)
			last_end = w[i].last_end_ns;
	if (last_end > run->measure_start_ns)
		return (double)(last_end - run->measure_start_ns) / 1e9;
	return (double)run->opts->duration_ns / 1e9;
}

static void free_workers(struct bench_worker *w, size_t n)
{
	if (!w)
		return;
	for (size_t i = 0; i < n; i++) {
		us_client_free(w[i].client);
		free(w[i].lat_ns);
	}
	free(w);
}

/* ---- commit ---- */

static void report_commit(const struct bench_opts *o, uint64_t commits, double elapsed_s,
			  double p50, double p99, double max, uint64_t n_errors)
{
	double cps = elapsed_s > 0 ? (double)commits / elapsed_s : 0;
	double ops_s = cps * (double)o->ops;

	if (o->is_json) {
		bench_print_json(json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:I, s:I,"
				     " s:f, s:f, s:f, s:f, s:f, s:I}",
				     "addr", o->addr, "namespace", o->ns, "account", o->account,
				     "file", o->file, "clients", (json_int_t)o->clients,
				     "ops_per_commit", (json_int_t)o->ops,
				     "body_bytes", (json_int_t)o->body_bytes,
				     "duration_s", elapsed_s,
				     "commits", (json_int_t)commits,
				     "ops", (json_int_t)(commits * (uint64_t)o->ops),
				     "commits_per_s", cps, "ops_per_s", ops_s,
				     "latency_p50_ms", p50, "latency_p99_ms", p99,
				     "latency_max_ms", max, "errors", (json_int_t)n_errors));
	} else {
		printf("clients      %ld\n", o->clients);
		printf("ops/commit   %ld\n", o->ops);
		printf("body         %ld B\n", o->body_bytes);
		printf("duration     %.3f s\n", elapsed_s);
		printf("commits      %" PRIu64 "\n", commits);
		printf("commits/s    %.1f\n", cps);
		printf("ops/s        %.1f\n", ops_s);
		printf("latency p50  %.3f ms\n", p50);
		printf("latency p99  %.3f ms\n", p99);
		printf("latency max  %.3f ms\n", max);
		printf("errors       %" PRIu64 "\n", n_errors);
	}
	fflush(stdout);
}

static int cmd_commit(const struct bench_opts *o, struct bench_run *run)
{
	struct bench_worker *w = NULL;
	us_status_t *st = NULL;
	us_client_t *c;
	uint64_t *all = NULL;
	uint64_t commits = 0;
	size_t n_all = 0;
	int status = 1;

	c = connect_status(o->addr, &st);
	if (!c)
		return 1;
	us_status_free(st);
	if (create_bench_file(c, o, o->ns) != 0) {
		us_client_free(c);
		return 1;
	}
	us_client_free(c);

	run->n_workers = (size_t)o->clients;
	w = calloc(run->n_workers, sizeof(*w));
	if (!w) {
		fprintf(stderr, "understudy-bench: out of memory for %ld clients\n", o->clients);
		return 1;
	}
	for (size_t i = 0; i < run->n_workers; i++) {
		w[i].run = run;
		w[i].index = (long)i;
		w[i].global_index = i;
	}
	run->start_ns = bench_now_ns();
	run->measure_start_ns = run->start_ns + o->warmup_ns;
	run->measure_end_ns = run->measure_start_ns + o->duration_ns;
	if (run_workers(run, w, o->addr) != 0)
		goto out;
	for (size_t i = 0; i < run->n_workers; i++)
		commits += w[i].n_measured;
	if (!(all = merge_latencies(w, run->n_workers, &n_all)))
		goto out;
	report_commit(o, commits, window_s(run, w), pct_ms(all, n_all, 50), pct_ms(all, n_all, 99),
		      n_all ? (double)all[n_all - 1] / 1e6 : 0, run->n_errors);
	if (run->n_errors) {
		fprintf(stderr, "understudy-bench: %" PRIu64 " commit%s failed; first: %s\n",
			run->n_errors, run->n_errors == 1 ? "" : "s", run->first_error);
		goto out;
	}
	if (commits == 0) {
		fprintf(stderr, "understudy-bench: no commit completed in the measured window\n");
		goto out;
	}
	status = 0;
out:
	free(all);
	free_workers(w, run->n_workers);
	return status;
}

/* ---- replicate: the observers ---- */

/* Waits on run->cond until t (monotonic) or the end; true when ending. */
static bool wait_tick(struct bench_run *run, int64_t t)
{
	struct timespec ts = mono_ts(t);
	bool is_done;

	pthread_mutex_lock(&run->lock);
	while (!run->is_done &&
	       pthread_cond_timedwait(&run->cond, &run->lock, &ts) == 0)
		;
	is_done = run->is_done;
	pthread_mutex_unlock(&run->lock);
	return is_done;
}

static const us_ns_status_t *find_ns(const us_status_t *st, const char *ns)
{
	for (size_t i = 0; i < st->n_namespaces; i++)
		if (strcmp(st->namespaces[i].ns, ns) == 0)
			return &st->namespaces[i];
	return NULL;
}

/* Moves a site's new samples into its pending list, kept sorted by seq
 * (workers of one site ack out of seq order only within a group commit: the
 * insertion is short). -1 on out of memory. */
static int take_samples(struct site *s)
{
	struct lag_sample *t;
	size_t n, tcap;

	pthread_mutex_lock(&s->q_lock);
	t = s->q;
	n = s->q_n;
	tcap = s->q_cap;
	s->q = s->spare;
	s->q_cap = s->spare_cap;
	s->q_n = 0;
	pthread_mutex_unlock(&s->q_lock);
	s->spare = t;
	s->spare_cap = tcap;
	if (n == 0)
		return 0;
	if (s->pend_head > 0 && s->pend_head * 2 >= s->pend_n) {
		memmove(s->pend, s->pend + s->pend_head,
			(s->pend_n - s->pend_head) * sizeof(*s->pend));
		s->pend_n -= s->pend_head;
		s->pend_head = 0;
	}
	if (s->pend_n + n > s->pend_cap) {
		size_t cap = s->pend_cap ? s->pend_cap : 1024;
		struct lag_sample *p;

		while (cap < s->pend_n + n)
			cap *= 2;
		p = realloc(s->pend, cap * sizeof(*p));
		if (!p)
			return -1;
		s->pend = p;
		s->pend_cap = cap;
	}
	for (size_t i = 0; i < n; i++) {
		size_t j = s->pend_n++;

		while (j > s->pend_head && s->pend[j - 1].seq > t[i].seq) {
			s->pend[j] = s->pend[j - 1];
			j--;
		}
		s->pend[j] = t[i];
	}
	return 0;
}

/* us-lag: see the file comment. */
static void *lag_main(void *arg)
{
	struct bench_run *run = arg;
	us_client_opts_t copts = { .timeout_ms = BENCH_STATUS_TIMEOUT_MS };
	us_client_t *c;
	us_err_t err;
	int64_t next = bench_now_ns();

	pthread_setname_np(pthread_self(), "us-lag");
	c = us_client_new(run->opts->archiver, &copts, &err);
	if (!c) {
		record_error(run, "lag poller", &err);
		goto out_wake;
	}
	for (;;) {
		us_status_t *st = NULL;
		int64_t t_recv;
		int rc;

		rc = us_status(c, &st, &err);
		t_recv = bench_now_ns();
		if (rc != 0) {
			if (err.code == 0)
				err.code = rc;
			record_error(run, run->opts->archiver, &err);
			break;
		}
		for (size_t i = 0; i < run->n_sites; i++) {
			struct site *s = &run->sites[i];
			const us_ns_status_t *n = find_ns(st, s->ns);
			uint64_t durable = n ? n->durable_seq : 0;

			if (take_samples(s) != 0) {
				err.code = US_ENOMEM;
				snprintf(err.msg, sizeof(err.msg), "out of memory for lag samples");
				record_error(run, "lag poller", &err);
				break;
			}
			while (s->pend_head < s->pend_n && s->pend[s->pend_head].seq <= durable) {
				int64_t lag = t_recv - s->pend[s->pend_head].ack_ns;

				if (push_u64(&run->lags_ns, &run->n_lags, &run->cap_lags,
					     lag > 0 ? (uint64_t)lag : 0) != 0) {
					err.code = US_ENOMEM;
					snprintf(err.msg, sizeof(err.msg), "out of memory for lags");
					record_error(run, "lag poller", &err);
					break;
				}
				s->pend_head++;
			}
			atomic_store(&s->durable_seen, durable);
			atomic_store(&s->is_seen, n != NULL);
		}
		us_status_free(st);
		if (!run->first_poll_ns)
			run->first_poll_ns = t_recv;
		run->last_poll_ns = t_recv;
		pthread_mutex_lock(&run->lock);
		run->n_polls++;
		pthread_cond_broadcast(&run->cond);
		pthread_mutex_unlock(&run->lock);
		if (atomic_load(&run->is_stopping))
			break;
		next += run->opts->lag_poll_ns;
		if (next < t_recv)
			next = t_recv; /* behind: poll again at once, do not burst */
		if (wait_tick(run, next))
			break;
	}
	us_client_free(c);
out_wake:
	pthread_mutex_lock(&run->lock);
	pthread_cond_broadcast(&run->cond);
	pthread_mutex_unlock(&run->lock);
	return NULL;
}

/* us-sample: see the file comment. */
static void *sample_main(void *arg)
{
	struct bench_run *run = arg;
	us_client_opts_t copts = { .timeout_ms = BENCH_STATUS_TIMEOUT_MS };
	us_client_t *arch, **sc;
	int64_t t = run->measure_start_ns;
	us_err_t err;

	pthread_setname_np(pthread_self(), "us-sample");
	sc = calloc(run->n_sites, sizeof(*sc));
	arch = us_client_new(run->opts->archiver, &copts, &err);
	if (!sc || !arch) {
		if (!sc)
			snprintf(err.msg, sizeof(err.msg), "out of memory");
		record_error(run, "sampler", &err);
		goto out;
	}
	for (size_t i = 0; i < run->n_sites; i++)
		if (!(sc[i] = us_client_new(run->sites[i].addr, &copts, &err))) {
			record_error(run, "sampler", &err);
			goto out;
		}
	for (;;) {
		us_status_t *st = NULL;
		int64_t t0, t1;
		uint64_t backlog = 0;
		bool is_last = t >= run->measure_end_ns;
		int rc;

		if (wait_tick(run, t) || atomic_load(&run->is_stopping))
			break;
		t0 = bench_now_ns();
		rc = us_status(arch, &st, &err);
		t1 = bench_now_ns();
		if (rc != 0) {
			record_error(run, run->opts->archiver, &err);
			break;
		}
		for (size_t i = 0; i < run->n_sites; i++) {
			struct site *s = &run->sites[i];
			const us_ns_status_t *n = find_ns(st, s->ns);

			s->durable_last = n ? n->durable_seq : 0;
			s->applied_last = n ? n->applied_seq : 0;
			if (run->n_samples == 0)
				s->durable_first = s->durable_last;
		}
		us_status_free(st);
		/* The archiver's answer is the sample's time: its midpoint. */
		if (run->n_samples == 0)
			run->sample_first_ns = t0 + (t1 - t0) / 2;
		run->sample_last_ns = t0 + (t1 - t0) / 2;
		for (size_t i = 0; i < run->n_sites; i++) {
			struct site *s = &run->sites[i];

			st = NULL;
			t0 = bench_now_ns();
			if ((rc = us_status(sc[i], &st, &err)) != 0) {
				record_error(run, s->addr, &err);
				break;
			}
			t1 = bench_now_ns();
			s->last_seq_last = st->last_seq;
			s->site_last_ns = t0 + (t1 - t0) / 2;
			if (run->n_samples == 0) {
				s->last_seq_first = st->last_seq;
				s->site_first_ns = s->site_last_ns;
			}
			if (st->last_seq > s->durable_last)
				backlog += st->last_seq - s->durable_last;
			us_status_free(st);
		}
		if (rc != 0)
			break;
		if (backlog > run->backlog_max)
			run->backlog_max = backlog;
		run->n_samples++;
		if (is_last)
			break;
		t += BENCH_SAMPLE_NS;
		if (t < bench_now_ns()) /* behind: skip ticks, keep the last at the end */
			t = bench_now_ns();
		if (t > run->measure_end_ns)
			t = run->measure_end_ns;
	}
out:
	if (sc)
		for (size_t i = 0; i < run->n_sites; i++)
			us_client_free(sc[i]);
	free(sc);
	us_client_free(arch);
	return NULL;
}

/* ---- replicate ---- */

/* Sets up every site: its namespace, the file, and an archiver that holds it
 * durably up to the site's last seq. Returns 0, or 1 with one line printed. */
static int setup_sites(const struct bench_opts *o, struct site *sites, size_t n_sites)
{
	us_client_t *arch;
	us_status_t *st = NULL;
	int64_t deadline;
	us_err_t err;
	int status = 1;

	arch = connect_status(o->archiver, &st);
	if (!arch)
		return 1;
	if (strcmp(st->node, "archiver") != 0) {
		fprintf(stderr, "understudy-bench: %s is not an archiver (its Status says %s)\n",
			o->archiver, st->node);
		us_status_free(st);
		goto out;
	}
	us_status_free(st);
	for (size_t i = 0; i < n_sites; i++) {
		struct site *s = &sites[i];
		us_client_t *c = connect_status(s->addr, &st);
		int rc;

		if (!c)
			goto out;
		if (strcmp(st->node, "collector") != 0) {
			fprintf(stderr, "understudy-bench: site %s is not a collector (its Status "
				"says %s)\n", s->addr, st->node);
			rc = 1;
		} else if (strncmp(st->ns, o->ns_prefix, strlen(o->ns_prefix)) != 0) {
			fprintf(stderr, "understudy-bench: site %s serves namespace %s, which does "
				"not start with --ns-prefix '%s'\n", s->addr, st->ns, o->ns_prefix);
			rc = 1;
		} else if (st->n_archivers == 0) {
			fprintf(stderr, "understudy-bench: site %s (namespace %s) streams to no "
				"archiver: configure archiver = %s\n", s->addr, st->ns, o->archiver);
			rc = 1;
		} else {
			snprintf(s->ns, sizeof(s->ns), "%s", st->ns);
			rc = 0;
		}
		us_status_free(st);
		for (size_t j = 0; j < i && rc == 0; j++)
			if (strcmp(sites[j].ns, s->ns) == 0) {
				fprintf(stderr, "understudy-bench: sites %s and %s serve the same "
					"namespace %s\n", sites[j].addr, s->addr, s->ns);
				rc = 1;
			}
		if (rc == 0)
			rc = create_bench_file(c, o, s->ns);
		if (rc == 0) {
			if ((rc = us_status(c, &st, &err)) != 0) {
				print_unreachable(s->addr, &err);
				rc = 1;
			} else {
				s->seq_before = st->last_seq;
				us_status_free(st);
			}
		}
		us_client_free(c);
		if (rc)
			goto out;
	}
	/* The streams must be up before the load: no setup time in the figures. */
	deadline = bench_now_ns() + BENCH_LINK_WAIT_NS;
	for (size_t i = 0; i < n_sites;) {
		const us_ns_status_t *n;
		int rc = us_status(arch, &st, &err);

		if (rc != 0) {
			if (err.code == 0)
				err.code = rc;
			print_unreachable(o->archiver, &err);
			goto out;
		}
		n = find_ns(st, sites[i].ns);
		if (n && n->durable_seq >= sites[i].seq_before) {
			us_status_free(st);
			i++;
			continue;
		}
		if (bench_now_ns() >= deadline) {
			fprintf(stderr, "understudy-bench: archiver %s has not made namespace %s "
				"durable up to seq %" PRIu64 " within %lld s (%s): does site %s "
				"stream to it (archiver = %s)?\n", o->archiver, sites[i].ns,
				sites[i].seq_before, BENCH_LINK_WAIT_NS / 1000000000LL,
				n ? "it is behind" : "it does not hold it", sites[i].addr, o->archiver);
			us_status_free(st);
			goto out;
		}
		us_status_free(st);
		/* a remote condition: poll it, with the deadline above */
		sleep_until_ns(bench_now_ns() + 20000000LL);
	}
	status = 0;
out:
	us_client_free(arch);
	return status;
}

static bool is_drained(struct bench_run *run)
{
	for (size_t i = 0; i < run->n_sites; i++) {
		struct site *s = &run->sites[i];

		if (!atomic_load(&s->is_seen) || atomic_load(&s->durable_seen) < s->seq_after)
			return false;
	}
	return true;
}

/* Waits until us-lag has seen every site's last seq durable on the archiver
 * (every measured commit's lag matched), the poller failed, or the deadline.
 * Only a poll that began after the workers were joined counts: its
 * take_samples saw every sample. */
static int wait_drained(struct bench_run *run)
{
	struct timespec ts = mono_ts(bench_now_ns() + BENCH_DRAIN_NS);
	bool is_ok = false;
	uint64_t n0;

	pthread_mutex_lock(&run->lock);
	n0 = run->n_polls;
	for (;;) {
		if (run->n_polls >= n0 + 2) {
			pthread_mutex_unlock(&run->lock);
			is_ok = is_drained(run);
			pthread_mutex_lock(&run->lock);
			if (is_ok)
				break;
		}
		if (atomic_load(&run->is_stopping))
			break;
		if (pthread_cond_timedwait(&run->cond, &run->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&run->lock);
	return is_ok ? 0 : -1;
}

static json_t *site_json(const struct site *s, const struct bench_opts *o, double sample_s)
{
	uint64_t repl = s->durable_last - s->durable_first;

	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I}",
			 "addr", s->addr, "namespace", s->ns,
			 "seq_before", (json_int_t)s->seq_before,
			 "seq_after", (json_int_t)s->seq_after,
			 "durable_seq_after", (json_int_t)atomic_load(&s->durable_seen),
			 "total_commits", (json_int_t)s->total_commits,
			 "total_items", (json_int_t)(s->total_commits * (uint64_t)o->ops),
			 "commits", (json_int_t)s->commits,
			 "replicated_items", (json_int_t)repl,
			 "replicated_items_per_s", sample_s > 0 ? (double)repl / sample_s : 0.0,
			 "durable_seq_first", (json_int_t)s->durable_first,
			 "durable_seq_last", (json_int_t)s->durable_last,
			 "applied_seq_last", (json_int_t)s->applied_last);
}

struct repl_figures {
	double elapsed_s;          /* workers' measured window */
	uint64_t commits, total_commits;
	double lat_p50, lat_p99;
	double sample_s;           /* the samplers' window */
	uint64_t replicated;
	double site_seqs_per_s;    /* every site over its own sample times */
	double lag_p50, lag_p99, lag_max, poll_ms;
	uint64_t lag_unmatched;
};

static void report_replicate(const struct bench_opts *o, const struct bench_run *run,
			     const struct repl_figures *f)
{
	double cps = f->elapsed_s > 0 ? (double)f->commits / f->elapsed_s : 0;
	double rps = f->sample_s > 0 ? (double)f->replicated / f->sample_s : 0;
	double sps = f->site_seqs_per_s;

	if (o->is_json) {
		json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I,"
				      " s:f, s:f, s:f, s:f, s:f, s:I, s:f, s:f, s:I, s:I, s:f,"
				      " s:f, s:f, s:f, s:I, s:I}",
				      "archiver", o->archiver, "n_sites", (json_int_t)run->n_sites,
				      "clients_per_site", (json_int_t)o->clients,
				      "ops_per_commit", (json_int_t)o->ops,
				      "body_bytes", (json_int_t)o->body_bytes,
				      "rate", (json_int_t)o->rate,
				      "duration_s", f->elapsed_s,
				      "commits", (json_int_t)f->commits,
				      "items", (json_int_t)(f->commits * (uint64_t)o->ops),
				      "total_commits", (json_int_t)f->total_commits,
				      "total_items", (json_int_t)(f->total_commits * (uint64_t)o->ops),
				      "commits_per_s", cps, "items_per_s", cps * (double)o->ops,
				      "commit_latency_p50_ms", f->lat_p50,
				      "commit_latency_p99_ms", f->lat_p99,
				      "sample_s", f->sample_s,
				      "replicated_items", (json_int_t)f->replicated,
				      "replicated_items_per_s", rps, "site_seqs_per_s", sps,
				      "backlog_items_max", (json_int_t)run->backlog_max,
				      "lag_samples", (json_int_t)run->n_lags,
				      "lag_p50_ms", f->lag_p50, "lag_p99_ms", f->lag_p99,
				      "lag_max_ms", f->lag_max, "lag_poll_ms", f->poll_ms,
				      "lag_unmatched", (json_int_t)f->lag_unmatched,
				      "errors", (json_int_t)run->n_errors);
		json_t *a = json_array();

		for (size_t i = 0; j && a && i < run->n_sites; i++)
			json_array_append_new(a, site_json(&run->sites[i], o, f->sample_s));
		if (j && a)
			json_object_set_new(j, "sites", a);
		else
			json_decref(a);
		bench_print_json(j);
	} else {
		printf("archiver          %s\n", o->archiver);
		printf("sites             %zu x %ld clients\n", run->n_sites, o->clients);
		printf("ops/commit        %ld\n", o->ops);
		printf("body              %ld B\n", o->body_bytes);
		printf("rate              %s\n", o->rate ? "paced" : "as fast as possible");
		if (o->rate)
			printf("offered           %ld commits/s\n", o->rate);
		printf("duration          %.3f s\n", f->elapsed_s);
		printf("commits/s         %.1f (acknowledged at the sites)\n", cps);
		printf("items/s           %.1f (acknowledged at the sites)\n", cps * (double)o->ops);
		printf("commit p50/p99    %.3f / %.3f ms\n", f->lat_p50, f->lat_p99);
		printf("replicated/s      %.1f items durable on the archiver\n", rps);
		printf("site seqs/s       %.1f\n", sps);
		printf("backlog max       %" PRIu64 " items\n", run->backlog_max);
		printf("lag p50           %.3f ms\n", f->lag_p50);
		printf("lag p99           %.3f ms\n", f->lag_p99);
		printf("lag max           %.3f ms\n", f->lag_max);
		printf("lag poll          %.3f ms (%zu samples)\n", f->poll_ms, run->n_lags);
		for (size_t i = 0; i < run->n_sites; i++) {
			const struct site *s = &run->sites[i];

			printf("site %-12s ns=%s replicated/s=%.1f seq %" PRIu64 "..%" PRIu64
			       " durable %" PRIu64 "\n", s->addr, s->ns,
			       f->sample_s > 0 ? (double)(s->durable_last - s->durable_first) /
							 f->sample_s : 0,
			       s->seq_before, s->seq_after, (uint64_t)atomic_load(&s->durable_seen));
		}
		printf("errors            %" PRIu64 "\n", run->n_errors);
	}
	fflush(stdout);
}

static void release_sites(struct site *sites, size_t n)
{
	if (!sites)
		return;
	for (size_t i = 0; i < n; i++) {
		pthread_mutex_destroy(&sites[i].q_lock);
		free(sites[i].q);
		free(sites[i].pend);
		free(sites[i].spare);
	}
	free(sites);
}

static int cmd_replicate(const struct bench_opts *o, struct bench_run *run)
{
	struct bench_worker *w = NULL;
	struct repl_figures f;
	pthread_t lag_tid, sample_tid;
	bool is_lag = false, is_sample = false;
	uint64_t *all = NULL;
	size_t n_all = 0;
	int status = 1;

	memset(&f, 0, sizeof(f));
	run->n_sites = o->n_sites;
	run->sites = calloc(o->n_sites, sizeof(*run->sites));
	if (!run->sites) {
		fprintf(stderr, "understudy-bench: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < o->n_sites; i++) {
		run->sites[i].addr = o->sites[i];
		pthread_mutex_init(&run->sites[i].q_lock, NULL);
		atomic_init(&run->sites[i].durable_seen, 0);
		atomic_init(&run->sites[i].is_seen, 0);
	}
	if (setup_sites(o, run->sites, run->n_sites) != 0)
		goto out;

	run->n_workers = (size_t)o->clients * run->n_sites;
	w = calloc(run->n_workers, sizeof(*w));
	if (!w) {
		fprintf(stderr, "understudy-bench: out of memory for %zu clients\n", run->n_workers);
		goto out;
	}
	for (size_t i = 0; i < run->n_workers; i++) {
		/* interleaved: consecutive phases go to different sites */
		w[i].run = run;
		w[i].site = &run->sites[i % run->n_sites];
		w[i].index = (long)(i / run->n_sites);
		w[i].global_index = i;
	}
	if (o->rate)
		run->interval_ns = (int64_t)(1e9 * (double)run->n_workers / (double)o->rate);
	run->start_ns = bench_now_ns();
	run->measure_start_ns = run->start_ns + o->warmup_ns;
	run->measure_end_ns = run->measure_start_ns + o->duration_ns;
	if (pthread_create(&lag_tid, NULL, lag_main, run) != 0) {
		fprintf(stderr, "understudy-bench: cannot start the lag poller\n");
		goto out;
	}
	is_lag = true;
	if (pthread_create(&sample_tid, NULL, sample_main, run) != 0) {
		fprintf(stderr, "understudy-bench: cannot start the sampler\n");
		goto out;
	}
	is_sample = true;
	if (run_workers(run, w, NULL) != 0)
		goto out;
	pthread_join(sample_tid, NULL);
	is_sample = false;

	for (size_t i = 0; i < run->n_workers; i++) {
		w[i].site->commits += w[i].n_measured;
		w[i].site->total_commits += w[i].n_total;
		f.commits += w[i].n_measured;
		f.total_commits += w[i].n_total;
	}
	for (size_t i = 0; i < run->n_sites && !atomic_load(&run->is_stopping); i++) {
		struct site *s = &run->sites[i];
		us_status_t *st = NULL;
		us_client_t *c = connect_status(s->addr, &st);

		if (!c)
			goto out;
		s->seq_after = st->last_seq;
		us_status_free(st);
		us_client_free(c);
	}
	if (!atomic_load(&run->is_stopping) && wait_drained(run) != 0 &&
	    !atomic_load(&run->is_stopping)) {
		for (size_t i = 0; i < run->n_sites; i++) {
			struct site *s = &run->sites[i];

			if (atomic_load(&s->durable_seen) < s->seq_after) {
				fprintf(stderr, "understudy-bench: archiver %s made namespace %s durable "
					"up to seq %" PRIu64 " only, not the site's %" PRIu64 ", %lld s "
					"after the load ended\n", o->archiver, s->ns,
					(uint64_t)atomic_load(&s->durable_seen), s->seq_after,
					BENCH_DRAIN_NS / 1000000000LL);
				break;
			}
		}
		goto out;
	}
	pthread_mutex_lock(&run->lock);
	run->is_done = true;
	pthread_cond_broadcast(&run->cond);
	pthread_mutex_unlock(&run->lock);
	pthread_join(lag_tid, NULL);
	is_lag = false;

	if (!(all = merge_latencies(w, run->n_workers, &n_all)))
		goto out;
	f.elapsed_s = window_s(run, w);
	f.lat_p50 = pct_ms(all, n_all, 50);
	f.lat_p99 = pct_ms(all, n_all, 99);
	f.sample_s = (double)(run->sample_last_ns - run->sample_first_ns) / 1e9;
	for (size_t i = 0; i < run->n_sites; i++) {
		struct site *s = &run->sites[i];

		f.replicated += s->durable_last - s->durable_first;
		if (s->site_last_ns > s->site_first_ns)
			f.site_seqs_per_s += (double)(s->last_seq_last - s->last_seq_first) /
					     ((double)(s->site_last_ns - s->site_first_ns) / 1e9);
		f.lag_unmatched += s->pend_n - s->pend_head;
	}
	qsort(run->lags_ns, run->n_lags, sizeof(*run->lags_ns), cmp_u64);
	f.lag_p50 = pct_ms(run->lags_ns, run->n_lags, 50);
	f.lag_p99 = pct_ms(run->lags_ns, run->n_lags, 99);
	f.lag_max = run->n_lags ? (double)run->lags_ns[run->n_lags - 1] / 1e6 : 0;
	f.poll_ms = run->n_polls > 1 ? (double)(run->last_poll_ns - run->first_poll_ns) / 1e6 /
					       (double)(run->n_polls - 1)
				     : 0;
	report_replicate(o, run, &f);
	if (run->n_errors)
		goto out;
	if (f.commits == 0) {
		fprintf(stderr, "understudy-bench: no commit completed in the measured window\n");
		goto out;
	}
	if (run->n_samples < 2) {
		fprintf(stderr, "understudy-bench: the archiver was sampled fewer than twice\n");
		goto out;
	}
	status = 0;
out:
	if (is_sample || is_lag) {
		atomic_store(&run->is_stopping, 1);
		pthread_mutex_lock(&run->lock);
		run->is_done = true;
		pthread_cond_broadcast(&run->cond);
		pthread_mutex_unlock(&run->lock);
		if (is_sample)
			pthread_join(sample_tid, NULL);
		if (is_lag)
			pthread_join(lag_tid, NULL);
	}
	if (status && run->n_errors)
		fprintf(stderr, "understudy-bench: %" PRIu64 " error%s; first: %s\n",
			run->n_errors, run->n_errors == 1 ? "" : "s", run->first_error);
	free(all);
	free_workers(w, run->n_workers);
	free(run->lags_ns);
	release_sites(run->sites, run->n_sites);
	run->sites = NULL;
	return status;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct bench_run run;
	pthread_condattr_t ca;
	int rc, status = 1;

	if (argc > 1 && (strcmp(argv[1], "snapshot") == 0 || strcmp(argv[1], "save") == 0 ||
			 strcmp(argv[1], "restore") == 0))
		return bench_archive_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "failover") == 0)
		return bench_failover_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "switchover") == 0)
		return bench_switchover_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "query") == 0)
		return bench_query_main(argc, argv);
	rc = parse_args(argc, argv, &o);
	if (rc == 1) {
		free(o.sites_arg);
		usage(stdout);
		return 0;
	}
	if (rc == 2) {
		free(o.sites_arg);
		usage(stderr);
		return 2;
	}
	if (o.cmd == CMD_APPLY)
		return bench_apply(&o);

	memset(&run, 0, sizeof(run));
	run.opts = &o;
	atomic_init(&run.is_stopping, 0);
	pthread_mutex_init(&run.err_lock, NULL);
	pthread_mutex_init(&run.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&run.cond, &ca);
	pthread_condattr_destroy(&ca);
	if (o.cmd == CMD_COMMIT)
		status = cmd_commit(&o, &run);
	else
		status = cmd_replicate(&o, &run);
	pthread_cond_destroy(&run.cond);
	pthread_mutex_destroy(&run.lock);
	pthread_mutex_destroy(&run.err_lock);
	free(o.sites_arg);
	return status;
}
