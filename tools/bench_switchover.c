/*
 * bench_switchover.c - `understudy-bench switchover`: the write pause of a
 * switchover under a steady load, and the rejoin before it.
 *
 *   understudy-bench switchover --archiver ADDR --site ADDR [--rounds N] [--json]
 *
 * The site's collector streams to the archiver (rejoin = auto). Each round:
 *   1. promote --force on the archiver (the site is fenced), then wait until
 *      the site has rejoined and caught up (role standby, no lag):
 *      rejoin_ms from sending the promote; the rewind's keys and bytes
 *      (Admin.Rejoin's answer);
 *   2. one client given both addresses commits one-item writes as fast as
 *      they are answered, and each answer's time is kept;
 *   3. half a second in, switchover on the archiver (its call timed);
 *      the load goes on a second after it;
 *   4. the write pause: the longest time between two answered commits from
 *      the switchover's start to a second after it, as the application
 *      sees it (the archiver's last commit to the site's first, with the
 *      client's own finding of the new primary); beside it, the median time
 *      between two commits before the switchover.
 * Every commit must be answered (a failed one ends the run: exit 1).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"
#include "understudy.h"

#define SW_MAX_ROUNDS 32
#define SW_MAX_COMMITS (4u * 1024u * 1024u)
#define SW_WAIT_NS (60LL * 1000000000LL)

struct sw_load {
	char addrs[600];
	char ns[64];
	pthread_t thread;
	atomic_int stop;
	int64_t *done_ns;          /* each answered commit's time */
	atomic_size_t n;
	char error[US_ERR_MSG_MAX];
};

static void *load_main(void *arg)
{
	struct sw_load *l = arg;
	us_op_t mk = {.kind = US_OP_CREATE_FILE, .account = "BENCH", .file = "SWITCHOVER",
		      .is_logged = 1};
	us_client_t *c;
	us_err_t err;
	char id[32];
	uint64_t i = 0;

	c = us_client_new(l->addrs, NULL, &err);
	if (!c) {
		snprintf(l->error, sizeof(l->error), "%s", err.msg);
		return NULL;
	}
	(void)us_commit(c, l->ns, &mk, 1, NULL, &err); /* there already: fine */
	while (!atomic_load(&l->stop) && atomic_load(&l->n) < SW_MAX_COMMITS) {
		us_op_t w = {.kind = US_OP_WRITE, .account = "BENCH", .file = "SWITCHOVER",
			     .id = (const uint8_t *)id, .body = (const uint8_t *)"x", .body_len = 1};

		w.id_len = (size_t)snprintf(id, sizeof(id), "k%" PRIu64, i++ % 100000);
		if (us_commit(c, l->ns, &w, 1, NULL, &err)) {
			snprintf(l->error, sizeof(l->error), "%s", err.msg);
			break;
		}
		l->done_ns[atomic_load(&l->n)] = bench_now_ns();
		atomic_fetch_add(&l->n, 1);
	}
	us_client_free(c);
	return NULL;
}

/* Waits until the site is a standby with no lag. */
static int wait_following(us_client_t *site, int64_t deadline)
{
	us_err_t err;

	for (;;) {
		us_status_t *st = NULL;
		int is_done = 0;

		if (us_status(site, &st, &err) == 0)
			is_done = strcmp(st->role, "standby") == 0 && st->is_following &&
				  st->lag_entries == 0;
		us_status_free(st);
		if (is_done)
			return 0;
		if (bench_now_ns() > deadline) {
			fprintf(stderr, "understudy-bench: the site did not rejoin within 60 s\n");
			return 1;
		}
		usleep(2000);
	}
}

struct sw_round {
	double rejoin_ms, keys, bytes, call_ms, hold_ms, pause_ms, gap_ms;
};

static int round_once(us_client_t *arch, us_client_t *site, const char *ns, const char *addrs,
		      struct sw_round *out)
{
	struct sw_load l;
	us_promoted_t pr;
	us_switched_t sw;
	us_rejoined_t rj;
	us_err_t err;
	int64_t t0, t1, end;
	size_t n;
	double *gaps;
	size_t n_gaps = 0;

	t0 = bench_now_ns();
	if (us_promote(arch, ns, 1, &pr, &err)) {
		fprintf(stderr, "understudy-bench: promote %s: %s\n", ns, err.msg);
		return 1;
	}
	if (wait_following(site, t0 + SW_WAIT_NS))
		return 1;
	out->rejoin_ms = (double)(bench_now_ns() - t0) / 1e6;
	if (us_rejoin(site, ns, &rj, &err)) {
		fprintf(stderr, "understudy-bench: rejoin at the site: %s\n", err.msg);
		return 1;
	}
	out->keys = (double)rj.keys;
	out->bytes = (double)rj.bytes;
	memset(&l, 0, sizeof(l));
	snprintf(l.addrs, sizeof(l.addrs), "%s", addrs);
	snprintf(l.ns, sizeof(l.ns), "%s", ns);
	l.done_ns = malloc(SW_MAX_COMMITS * sizeof(*l.done_ns));
	if (!l.done_ns || pthread_create(&l.thread, NULL, load_main, &l) != 0) {
		free(l.done_ns);
		return 1;
	}
	usleep(500000);
	t0 = bench_now_ns();
	if (us_switchover(arch, ns, 0, &sw, &err)) {
		atomic_store(&l.stop, 1);
		pthread_join(l.thread, NULL);
		free(l.done_ns);
		fprintf(stderr, "understudy-bench: switchover %s: %s\n", ns, err.msg);
		return 1;
	}
	t1 = bench_now_ns();
	end = t1 + 1000000000LL;
	while (bench_now_ns() < end && !l.error[0])
		usleep(1000);
	atomic_store(&l.stop, 1);
	pthread_join(l.thread, NULL);
	if (l.error[0]) {
		fprintf(stderr, "understudy-bench: a commit failed: %s\n", l.error);
		free(l.done_ns);
		return 1;
	}
	out->call_ms = (double)(t1 - t0) / 1e6;
	out->hold_ms = (double)sw.pause_ms;
	out->pause_ms = 0;
	n = atomic_load(&l.n);
	gaps = malloc((n ? n : 1) * sizeof(*gaps));
	for (size_t i = 1; gaps && i < n; i++) {
		double g = (double)(l.done_ns[i] - l.done_ns[i - 1]) / 1e6;

		if (l.done_ns[i] >= t0 && l.done_ns[i - 1] <= end) {
			if (g > out->pause_ms)
				out->pause_ms = g;
		} else if (l.done_ns[i] < t0) {
			gaps[n_gaps++] = g;
		}
	}
	out->gap_ms = gaps ? bench_median(gaps, (long)n_gaps) : 0;
	free(gaps);
	free(l.done_ns);
	return 0;
}

int bench_switchover_main(int argc, char **argv)
{
	const char *archiver = NULL, *site_addr = NULL;
	struct sw_round r[SW_MAX_ROUNDS];
	double v[7][SW_MAX_ROUNDS];
	char addrs[600];
	long rounds = 3;
	int is_json = 0, rc = 1;
	us_client_t *arch = NULL, *site = NULL;
	us_status_t *st = NULL;
	us_err_t err;

	for (int i = 2; i < argc; i++) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(argv[i], "--json") == 0) {
			is_json = 1;
			continue;
		}
		if (!val || (strcmp(argv[i], "--archiver") != 0 && strcmp(argv[i], "--site") != 0 &&
			     strcmp(argv[i], "--rounds") != 0)) {
			fprintf(stderr, "understudy-bench: switchover: bad option %s\n", argv[i]);
			return 2;
		}
		if (strcmp(argv[i], "--archiver") == 0)
			archiver = val;
		else if (strcmp(argv[i], "--site") == 0)
			site_addr = val;
		else if ((rounds = strtol(val, NULL, 10)) < 1 || rounds > SW_MAX_ROUNDS) {
			fprintf(stderr, "understudy-bench: switchover: --rounds takes 1 to %d\n",
				SW_MAX_ROUNDS);
			return 2;
		}
		i++;
	}
	if (!archiver || !site_addr) {
		fprintf(stderr, "understudy-bench: switchover needs --archiver ADDR and --site ADDR\n");
		return 2;
	}
	snprintf(addrs, sizeof(addrs), "%s,%s", site_addr, archiver);
	arch = us_client_new(archiver, NULL, &err);
	site = arch ? us_client_new(site_addr, NULL, &err) : NULL;
	if (!site || us_status(site, &st, &err) || strcmp(st->node, "collector") != 0) {
		fprintf(stderr, "understudy-bench: site %s: %s\n", site_addr,
			site && st ? "not a collector" : err.msg);
		goto out;
	}
	for (long i = 0; i < rounds; i++) {
		if (round_once(arch, site, st->ns, addrs, &r[i]))
			goto out;
		if (!is_json)
			printf("round %ld: rejoined in %.1f ms (%.0f keys, %.0f bytes moved); "
			       "switchover call %.1f ms, commits held %.0f ms; write pause %.1f ms "
			       "(commits every %.2f ms before)\n",
			       i + 1, r[i].rejoin_ms, r[i].keys, r[i].bytes, r[i].call_ms,
			       r[i].hold_ms, r[i].pause_ms, r[i].gap_ms);
		v[0][i] = r[i].rejoin_ms;
		v[1][i] = r[i].keys;
		v[2][i] = r[i].bytes;
		v[3][i] = r[i].call_ms;
		v[4][i] = r[i].hold_ms;
		v[5][i] = r[i].pause_ms;
		v[6][i] = r[i].gap_ms;
	}
	if (is_json)
		bench_print_json(json_pack("{s:s,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "bench",
					   "switchover", "rounds", (int)rounds, "rejoin_ms",
					   bench_median(v[0], rounds), "rejoin_keys",
					   bench_median(v[1], rounds), "rejoin_bytes",
					   bench_median(v[2], rounds), "switchover_call_ms",
					   bench_median(v[3], rounds), "hold_ms",
					   bench_median(v[4], rounds), "write_pause_ms",
					   bench_median(v[5], rounds), "commit_gap_ms",
					   bench_median(v[6], rounds)));
	else
		printf("median of %ld rounds: rejoin %.1f ms; switchover call %.1f ms; write pause "
		       "%.1f ms (commits every %.2f ms before)\n",
		       rounds, bench_median(v[0], rounds), bench_median(v[3], rounds),
		       bench_median(v[5], rounds), bench_median(v[6], rounds));
	rc = 0;
out:
	us_status_free(st);
	us_client_free(site);
	us_client_free(arch);
	return rc;
}
