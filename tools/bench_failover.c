/*
 * bench_failover.c - `understudy-bench failover`: how long a promote takes
 * while other sites stream into the same archiver.
 *
 *   understudy-bench failover --archiver ADDR --ns NS[,NS...]
 *                             [--sites ADDR[,ADDR...]] [--json]
 *
 * Each namespace of --ns is one round: a standby on the archiver (its site
 * stopped, or running: the promote is forced and fences it). Meanwhile one
 * thread per site of --sites commits one-item writes to that site, whose
 * collector streams to the archiver: the other namespaces. A round measures
 *   - promote_ms: the Admin.Promote call, from sending it to its answer;
 *   - first_commit_ms: from sending the promote to the first commit the
 *     archiver accepted for the namespace (a create-file of its own);
 *   - the other sites' commits a second before the promote, and a second
 *     from it on (what the promote cost them).
 * Prints each round and the medians. Exit 1 with one line when a call
 * fails, 2 on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"
#include "understudy.h"

#define FAILOVER_MAX_NS 64
#define FAILOVER_MAX_SITES 64
#define FAILOVER_FIRST_COMMIT_TIMEOUT_NS (30LL * 1000000000LL)

struct site_load {
	char addr[256];
	char ns[64];
	pthread_t thread;
	atomic_uint_fast64_t commits;
	atomic_int *stop;
	char error[US_ERR_MSG_MAX];
};

static int split(char *list, char **out, int max)
{
	int n = 0;

	for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == max)
			return -1;
		out[n++] = t;
	}
	return n;
}

/* One site's load: one-item commits, as fast as they are answered. */
static void *load_main(void *arg)
{
	struct site_load *l = arg;
	us_client_t *c;
	us_err_t err;
	us_op_t mk = {.kind = US_OP_CREATE_FILE, .account = "BENCH", .file = "FAILOVER",
		      .is_logged = 1};
	char id[32];
	uint64_t i = 0;

	c = us_client_new(l->addr, NULL, &err);
	if (!c) {
		snprintf(l->error, sizeof(l->error), "%s", err.msg);
		return NULL;
	}
	(void)us_commit(c, l->ns, &mk, 1, NULL, &err); /* there already: fine */
	while (!atomic_load(l->stop)) {
		us_op_t w = {.kind = US_OP_WRITE, .account = "BENCH", .file = "FAILOVER",
			     .id = (const uint8_t *)id, .body = (const uint8_t *)"x", .body_len = 1};

		w.id_len = (size_t)snprintf(id, sizeof(id), "k%" PRIu64, i++ % 100000);
		if (us_commit(c, l->ns, &w, 1, NULL, &err)) {
			snprintf(l->error, sizeof(l->error), "%s", err.msg);
			break;
		}
		atomic_fetch_add(&l->commits, 1);
	}
	us_client_free(c);
	return NULL;
}

static uint64_t total_commits(struct site_load *s, int n)
{
	uint64_t t = 0;

	for (int i = 0; i < n; i++)
		t += atomic_load(&s[i].commits);
	return t;
}

/* One round: promote ns, then commit to it until the archiver accepts. */
static int round_once(us_client_t *arch, const char *ns, int r, struct site_load *sites,
		      int n_sites, double *promote_ms, double *first_ms, double *before,
		      double *during)
{
	us_promoted_t pr;
	us_err_t err;
	char file[32];
	int64_t t0, t1, deadline;
	uint64_t c0, c1;
	us_op_t mk = {.kind = US_OP_CREATE_FILE, .account = "BENCH", .is_logged = 1};

	snprintf(file, sizeof(file), "PROMOTED%d", r);
	mk.file = file;
	c0 = total_commits(sites, n_sites);
	sleep(1);
	c1 = total_commits(sites, n_sites);
	*before = (double)(c1 - c0);
	t0 = bench_now_ns();
	if (us_promote(arch, ns, 1, &pr, &err)) {
		fprintf(stderr, "understudy-bench: promote %s: %s\n", ns, err.msg);
		return 1;
	}
	t1 = bench_now_ns();
	if (pr.was_primary) {
		fprintf(stderr, "understudy-bench: %s was primary already: give a standby\n", ns);
		return 1;
	}
	deadline = t0 + FAILOVER_FIRST_COMMIT_TIMEOUT_NS;
	while (us_commit(arch, ns, &mk, 1, NULL, &err)) {
		if (bench_now_ns() > deadline) {
			fprintf(stderr, "understudy-bench: no commit accepted for %s in 30 s: %s\n",
				ns, err.msg);
			return 1;
		}
	}
	*promote_ms = (double)(t1 - t0) / 1e6;
	*first_ms = (double)(bench_now_ns() - t0) / 1e6;
	while (bench_now_ns() < t0 + 1000000000LL)
		usleep(1000);
	*during = (double)(total_commits(sites, n_sites) - c1);
	return 0;
}

int bench_failover_main(int argc, char **argv)
{
	char *ns_arg = NULL, *sites_arg = NULL, *nss[FAILOVER_MAX_NS], *saddrs[FAILOVER_MAX_SITES];
	const char *archiver = NULL;
	double pm[FAILOVER_MAX_NS], fm[FAILOVER_MAX_NS], bf[FAILOVER_MAX_NS], du[FAILOVER_MAX_NS];
	struct site_load *sites = NULL;
	atomic_int stop = 0;
	int is_json = 0, n_ns, n_sites = 0, rc = 1;
	us_client_t *arch = NULL;
	us_err_t err;

	for (int i = 2; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(argv[i], "--json") == 0) {
			is_json = 1;
			continue;
		}
		if (!v || (strcmp(argv[i], "--archiver") != 0 && strcmp(argv[i], "--ns") != 0 &&
			   strcmp(argv[i], "--sites") != 0)) {
			fprintf(stderr, "understudy-bench: failover: bad option %s\n", argv[i]);
			goto usage;
		}
		if (strcmp(argv[i], "--archiver") == 0)
			archiver = v;
		else if (strcmp(argv[i], "--ns") == 0)
			ns_arg = strdup(v);
		else
			sites_arg = strdup(v);
		i++;
	}
	if (!archiver || !ns_arg) {
		fprintf(stderr, "understudy-bench: failover needs --archiver ADDR and --ns NS[,NS...]\n");
		goto usage;
	}
	n_ns = split(ns_arg, nss, FAILOVER_MAX_NS);
	if (sites_arg)
		n_sites = split(sites_arg, saddrs, FAILOVER_MAX_SITES);
	if (n_ns <= 0 || n_sites < 0) {
		fprintf(stderr, "understudy-bench: failover: too many or no namespaces or sites\n");
		goto usage;
	}
	arch = us_client_new(archiver, NULL, &err);
	if (!arch) {
		fprintf(stderr, "understudy-bench: %s\n", err.msg);
		goto out;
	}
	sites = calloc((size_t)(n_sites ? n_sites : 1), sizeof(*sites));
	if (!sites)
		goto out;
	for (int i = 0; i < n_sites; i++) {
		us_client_t *c = us_client_new(saddrs[i], NULL, &err);
		us_status_t *st = NULL;

		if (!c || us_status(c, &st, &err) || strcmp(st->node, "collector") != 0) {
			fprintf(stderr, "understudy-bench: site %s: %s\n", saddrs[i],
				c && st ? "not a collector" : err.msg);
			us_status_free(st);
			us_client_free(c);
			n_sites = i;
			goto out_stop;
		}
		snprintf(sites[i].addr, sizeof(sites[i].addr), "%s", saddrs[i]);
		snprintf(sites[i].ns, sizeof(sites[i].ns), "%s", st->ns);
		sites[i].stop = &stop;
		us_status_free(st);
		us_client_free(c);
		if (pthread_create(&sites[i].thread, NULL, load_main, &sites[i]) != 0) {
			n_sites = i;
			goto out_stop;
		}
	}
	sleep(1); /* the load settles */
	for (int r = 0; r < n_ns; r++) {
		if (round_once(arch, nss[r], r, sites, n_sites, &pm[r], &fm[r], &bf[r], &du[r]))
			goto out_stop;
		if (!is_json)
			printf("round %d: %s promoted in %.1f ms, first commit accepted at %.1f ms; "
			       "other sites' commits/s %.0f before, %.0f during\n",
			       r + 1, nss[r], pm[r], fm[r], bf[r], du[r]);
	}
	for (int i = 0; i < n_sites; i++)
		if (sites[i].error[0]) {
			fprintf(stderr, "understudy-bench: load on %s failed: %s\n", sites[i].addr,
				sites[i].error);
			goto out_stop;
		}
	if (is_json)
		bench_print_json(json_pack("{s:s,s:i,s:i,s:f,s:f,s:f,s:f}", "bench", "failover",
					   "rounds", n_ns, "other_sites", n_sites, "promote_ms",
					   bench_median(pm, n_ns), "first_commit_ms", bench_median(fm, n_ns),
					   "others_commits_before", bench_median(bf, n_ns),
					   "others_commits_during", bench_median(du, n_ns)));
	else
		printf("median of %d rounds with %d other sites committing: promote %.1f ms, first "
		       "commit accepted at %.1f ms; other sites' commits/s %.0f before, %.0f "
		       "during\n",
		       n_ns, n_sites, bench_median(pm, n_ns), bench_median(fm, n_ns), bench_median(bf, n_ns),
		       bench_median(du, n_ns));
	rc = 0;
out_stop:
	atomic_store(&stop, 1);
	for (int i = 0; i < n_sites; i++)
		pthread_join(sites[i].thread, NULL);
out:
	free(sites);
	us_client_free(arch);
	free(ns_arg);
	free(sites_arg);
	return rc;
usage:
	free(ns_arg);
	free(sites_arg);
	return 2;
}
