/*
 * bench.c - understudy-bench, the load generator of understudy.
 *
 * Built on the public C client library only (include/understudy.h), so it
 * measures what an application at a site sees: the end-to-end cost of a
 * durable commit through gRPC, the collector's group commit and its store.
 *
 *   understudy-bench commit [--addr HOST:PORT] [--ns NS] [--account A]
 *       [--file F] [--clients N] [--ops N] [--body BYTES] [--duration D]
 *       [--warmup D] [--json]
 *
 * Threads: main sets up (reachability check, create-file), then starts
 * --clients workers, each with its own us_client (a client is not
 * thread-safe). A worker commits in a loop, each commit --ops writes of
 * distinct ids "c<worker>-<n>-<i>" with bodies of --body bytes holding Pick
 * marks, until the deadline. Only commits that START after the warmup are
 * measured; the run ends for a worker at the first commit it would start past
 * warmup + duration. Each worker keeps its own latency array (no lock on the
 * hot path); main merges and sorts them after the join, so the percentiles
 * are exact (nearest rank), not histogram estimates.
 *
 * Errors: the first failed commit stops every worker (stop flag); the count
 * of failed commits and the first message are reported and the exit status
 * is 1. Exit 2 on a usage error, 0 on success.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "understudy.h"

/* Bounds of the options; the commit bounds are the SPEC's (lib/limits.h,
 * repeated here because this program uses the public header only). */
#define BENCH_MAX_CLIENTS 4096
#define BENCH_MAX_OPS 100000
#define BENCH_MAX_BODY (16u * 1024u * 1024u)
#define BENCH_MAX_COMMIT_BYTES (64ull * 1024u * 1024u)
#define BENCH_ID_MAX 48
#define BENCH_STATUS_TIMEOUT_MS 5000
#define BENCH_MARK_EVERY 10 /* one mark byte every this many body bytes */

struct bench_opts {
	const char *addr;
	const char *ns;
	const char *account;
	const char *file;
	long clients;
	long ops;
	long body_bytes;
	int64_t duration_ns;
	int64_t warmup_ns;
	int is_json;
};

/* Shared by main and the workers. Written by main before the workers start,
 * except the fields marked otherwise. */
struct bench_run {
	const struct bench_opts *opts;
	int64_t measure_start_ns; /* monotonic: warmup over, measuring from here */
	int64_t measure_end_ns;   /* monotonic: start no commit past this */
	atomic_int is_stopping;   /* any worker: set on the first failed commit */
	pthread_mutex_t err_lock; /* guards the two fields below */
	uint64_t n_errors;        /* workers, under err_lock */
	char first_error[US_ERR_MSG_MAX + 64]; /* workers, under err_lock */
};

/* One worker's state; only that worker writes it until it is joined. */
struct bench_worker {
	struct bench_run *run;
	long index;
	us_client_t *client;
	uint64_t *lat_ns;     /* latencies of measured commits */
	size_t n_lat, cap_lat;
	uint64_t n_measured;  /* measured commits that succeeded */
	int64_t last_end_ns;  /* monotonic end of its last measured commit */
	int is_oom;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: understudy-bench commit [options]\n"
		"\n"
		"Commits in a loop from N concurrent clients and reports throughput and\n"
		"commit latency (each commit is durable on the collector when acknowledged).\n"
		"\n"
		"options:\n"
		"  --addr HOST:PORT   collector to load (default 127.0.0.1:7441)\n"
		"  --ns NS            namespace (default site-a)\n"
		"  --account A        account (default BENCH)\n"
		"  --file F           file, created when missing (default BENCH)\n"
		"  --clients N        concurrent clients, one thread and connection each (default 64)\n"
		"  --ops N            item writes per commit (default 1)\n"
		"  --body BYTES       body size of each item, with Pick marks (default 100)\n"
		"  --duration D       measured time: 500ms, 10s, 2m (default 10s)\n"
		"  --warmup D         unmeasured time before it (default 1s)\n"
		"  --json             one JSON object on stdout\n"
		"  --help             this text\n"
		"\n"
		"exit status: 0 success, 1 server unreachable or a commit failed, 2 usage\n");
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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

static int is_value_option(const char *name)
{
	static const char *const names[] = { "--addr", "--ns", "--account", "--file",
					      "--clients", "--ops", "--body", "--duration",
					      "--warmup" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return 1;
	return 0;
}

/* Returns 0 to run, 1 after --help, 2 on a usage error (message printed). */
static int parse_args(int argc, char **argv, struct bench_opts *o)
{
	int have_cmd = 0;

	o->addr = "127.0.0.1:7441";
	o->ns = "site-a";
	o->account = "BENCH";
	o->file = "BENCH";
	o->clients = 64;
	o->ops = 1;
	o->body_bytes = 100;
	o->duration_ns = 10000000000LL;
	o->warmup_ns = 1000000000LL;
	o->is_json = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = NULL;
		char name[32];
		const char *eq;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return 1;
		if (strncmp(a, "--", 2) != 0) {
			if (!have_cmd && strcmp(a, "commit") == 0) {
				have_cmd = 1;
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
		if (!is_value_option(name)) {
			fprintf(stderr, "understudy-bench: unknown option %s\n", name);
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
		} else if (strcmp(name, "--ops") == 0) {
			if (parse_long(val, 1, BENCH_MAX_OPS, &o->ops) != 0) {
				fprintf(stderr, "understudy-bench: --ops must be 1..%d, not '%s'\n",
					BENCH_MAX_OPS, val);
				return 2;
			}
		} else if (strcmp(name, "--body") == 0) {
			if (parse_long(val, 0, (long)BENCH_MAX_BODY, &o->body_bytes) != 0) {
				fprintf(stderr, "understudy-bench: --body must be 0..%u bytes, not '%s'\n",
					BENCH_MAX_BODY, val);
				return 2;
			}
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
		}
	}
	if (!have_cmd) {
		fprintf(stderr, "understudy-bench: missing command (commit)\n");
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

static void record_error(struct bench_run *run, long worker, const us_err_t *err)
{
	pthread_mutex_lock(&run->err_lock);
	if (run->n_errors == 0)
		snprintf(run->first_error, sizeof(run->first_error), "client %ld: %s", worker,
			 err->msg[0] ? err->msg : us_strerror(err->code));
	run->n_errors++;
	pthread_mutex_unlock(&run->err_lock);
	atomic_store(&run->is_stopping, 1);
}

static int push_latency(struct bench_worker *w, uint64_t ns)
{
	if (w->n_lat == w->cap_lat) {
		size_t cap = w->cap_lat ? w->cap_lat * 2 : 4096;
		uint64_t *p = realloc(w->lat_ns, cap * sizeof(*p));
		if (!p)
			return -1;
		w->lat_ns = p;
		w->cap_lat = cap;
	}
	w->lat_ns[w->n_lat++] = ns;
	return 0;
}

static void *worker_main(void *arg)
{
	struct bench_worker *w = arg;
	struct bench_run *run = w->run;
	const struct bench_opts *o = run->opts;
	size_t n_ops = (size_t)o->ops;
	us_op_t *ops = calloc(n_ops, sizeof(*ops));
	char (*ids)[BENCH_ID_MAX] = calloc(n_ops, BENCH_ID_MAX);
	uint8_t *body = malloc(o->body_bytes ? (size_t)o->body_bytes : 1);
	uint64_t n_commit = 0;
	char thread_name[16];
	us_err_t err;

	snprintf(thread_name, sizeof(thread_name), "us-bench-%ld", w->index);
	pthread_setname_np(pthread_self(), thread_name);
	if (!ops || !ids || !body) {
		err.code = US_ENOMEM;
		snprintf(err.msg, sizeof(err.msg), "out of memory for a commit of %zu ops", n_ops);
		record_error(run, w->index, &err);
		goto out_free;
	}
	fill_body(body, (size_t)o->body_bytes, w->index);
	for (size_t i = 0; i < n_ops; i++) {
		ops[i].kind = US_OP_WRITE;
		ops[i].account = o->account;
		ops[i].file = o->file;
		ops[i].id = (const uint8_t *)ids[i];
		ops[i].body = body;
		ops[i].body_len = (size_t)o->body_bytes;
	}

	while (!atomic_load(&run->is_stopping)) {
		int64_t t0 = now_ns();
		int64_t t1;
		int rc;

		if (t0 >= run->measure_end_ns)
			break;
		for (size_t i = 0; i < n_ops; i++) {
			int n = snprintf(ids[i], BENCH_ID_MAX, "c%ld-%" PRIu64 "-%zu", w->index,
					 n_commit, i);
			ops[i].id_len = (size_t)n;
		}
		n_commit++;
		rc = us_commit(w->client, o->ns, ops, n_ops, NULL, &err);
		t1 = now_ns();
		if (rc != 0) {
			if (err.code == 0)
				err.code = rc;
			record_error(run, w->index, &err);
			break;
		}
		if (t0 >= run->measure_start_ns) {
			if (push_latency(w, (uint64_t)(t1 - t0)) != 0) {
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

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array; 0 when empty. */
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

/* One line: the library's message when it names the address already. */
static void print_unreachable(const char *addr, const us_err_t *err)
{
	const char *msg = err->msg[0] ? err->msg : us_strerror(err->code);

	if (strstr(msg, addr))
		fprintf(stderr, "understudy-bench: %s\n", msg);
	else
		fprintf(stderr, "understudy-bench: cannot reach %s: %s\n", addr, msg);
}

/* Checks the collector answers and creates the file (existing is fine).
 * Returns 0, or 1 with the reason printed. */
static int setup(const struct bench_opts *o)
{
	us_client_opts_t copts = { .timeout_ms = BENCH_STATUS_TIMEOUT_MS };
	us_client_t *c;
	us_status_t *st = NULL;
	us_err_t err;
	us_op_t op;
	int rc;

	c = us_client_new(o->addr, &copts, &err);
	if (!c) {
		print_unreachable(o->addr, &err);
		return 1;
	}
	rc = us_status(c, &st, &err);
	if (rc != 0) {
		if (err.code == 0)
			err.code = rc;
		print_unreachable(o->addr, &err);
		us_client_free(c);
		return 1;
	}
	us_status_free(st);

	memset(&op, 0, sizeof(op));
	op.kind = US_OP_CREATE_FILE;
	op.account = o->account;
	op.file = o->file;
	op.is_logged = 1;
	rc = us_commit(c, o->ns, &op, 1, NULL, &err);
	us_client_free(c);
	if (rc != 0 && rc != US_EEXIST) {
		fprintf(stderr, "understudy-bench: cannot create file %s/%s/%s: %s\n", o->ns,
			o->account, o->file, err.msg[0] ? err.msg : us_strerror(rc));
		return 1;
	}
	return 0;
}

static void report(const struct bench_opts *o, uint64_t commits, double elapsed_s,
		   double p50, double p99, double max, uint64_t n_errors)
{
	double cps = elapsed_s > 0 ? (double)commits / elapsed_s : 0;
	double ops_s = cps * (double)o->ops;

	if (o->is_json) {
		json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:f, s:I, s:I,"
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
				      "latency_max_ms", max, "errors", (json_int_t)n_errors);
		if (j) {
			json_dumpf(j, stdout, JSON_COMPACT | JSON_REAL_PRECISION(10));
			fputc('\n', stdout);
			json_decref(j);
		}
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

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct bench_run run;
	struct bench_worker *w = NULL;
	pthread_t *tids = NULL;
	uint64_t *all = NULL;
	size_t n_all = 0;
	uint64_t commits = 0;
	int64_t last_end = 0;
	long started = 0;
	int rc, status = 1;

	rc = parse_args(argc, argv, &o);
	if (rc == 1) {
		usage(stdout);
		return 0;
	}
	if (rc == 2) {
		usage(stderr);
		return 2;
	}
	if (setup(&o) != 0)
		return 1;

	memset(&run, 0, sizeof(run));
	run.opts = &o;
	atomic_init(&run.is_stopping, 0);
	pthread_mutex_init(&run.err_lock, NULL);

	w = calloc((size_t)o.clients, sizeof(*w));
	tids = calloc((size_t)o.clients, sizeof(*tids));
	if (!w || !tids) {
		fprintf(stderr, "understudy-bench: out of memory for %ld clients\n", o.clients);
		goto out_free;
	}
	for (long i = 0; i < o.clients; i++) {
		us_err_t err;

		w[i].run = &run;
		w[i].index = i;
		w[i].client = us_client_new(o.addr, NULL, &err);
		if (!w[i].client) {
			fprintf(stderr, "understudy-bench: cannot create client %ld for %s: %s\n", i,
				o.addr, err.msg);
			goto out_clients;
		}
	}

	run.measure_start_ns = now_ns() + o.warmup_ns;
	run.measure_end_ns = run.measure_start_ns + o.duration_ns;
	for (; started < o.clients; started++) {
		if (pthread_create(&tids[started], NULL, worker_main, &w[started]) != 0) {
			fprintf(stderr, "understudy-bench: cannot start thread %ld\n", started);
			atomic_store(&run.is_stopping, 1);
			break;
		}
	}
	for (long i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	if (started < o.clients)
		goto out_clients;

	for (long i = 0; i < o.clients; i++) {
		commits += w[i].n_measured;
		n_all += w[i].n_lat;
		if (w[i].last_end_ns > last_end)
			last_end = w[i].last_end_ns;
		if (w[i].is_oom) {
			fprintf(stderr, "understudy-bench: out of memory for latencies\n");
			goto out_clients;
		}
	}
	all = malloc((n_all ? n_all : 1) * sizeof(*all));
	if (!all) {
		fprintf(stderr, "understudy-bench: out of memory for %zu latencies\n", n_all);
		goto out_clients;
	}
	n_all = 0;
	for (long i = 0; i < o.clients; i++) {
		if (w[i].n_lat)
			memcpy(all + n_all, w[i].lat_ns, w[i].n_lat * sizeof(*all));
		n_all += w[i].n_lat;
	}
	qsort(all, n_all, sizeof(*all), cmp_u64);

	{
		/* The window runs from the end of the warmup to the end of the last
		 * measured commit: the last commits may finish after the deadline. */
		int64_t window = last_end > run.measure_start_ns ? last_end - run.measure_start_ns
								 : o.duration_ns;
		double elapsed_s = (double)window / 1e9;

		report(&o, commits, elapsed_s, pct_ms(all, n_all, 50), pct_ms(all, n_all, 99),
		       n_all ? (double)all[n_all - 1] / 1e6 : 0, run.n_errors);
	}
	if (run.n_errors) {
		fprintf(stderr, "understudy-bench: %" PRIu64 " commit%s failed; first: %s\n",
			run.n_errors, run.n_errors == 1 ? "" : "s", run.first_error);
		goto out_clients;
	}
	if (commits == 0) {
		fprintf(stderr, "understudy-bench: no commit completed in the measured window\n");
		goto out_clients;
	}
	status = 0;

out_clients:
	for (long i = 0; i < o.clients; i++) {
		us_client_free(w[i].client);
		free(w[i].lat_ns);
	}
out_free:
	free(all);
	free(tids);
	free(w);
	pthread_mutex_destroy(&run.err_lock);
	return status;
}
