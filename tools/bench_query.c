/*
 * bench_query.c - `understudy-bench query`: a report's time, beside the
 * same query in PostgreSQL, in the same run, round by round.
 *
 *   understudy-bench query --addr ADDR --ns NS --account ACC --sentence S
 *                          [--rounds R] [--pg-port P --pg-sql SQL [--pg-db DB]]
 *                          [--json]
 *
 * Each round runs the sentence through Store.Query (the C client in this
 * process: the daemon reads, selects, sorts and converts; the rows are
 * received and counted, not printed) and, when --pg-port is given, SQL
 * through `psql -qAtX -c SQL` against PostgreSQL on 127.0.0.1:P as user
 * postgres (its output read from a pipe and counted). Which one goes first
 * alternates from round to round. Both answers must agree: for a COUNT
 * the count PostgreSQL prints, else as many lines as the report has item
 * rows (use COPY (...) TO STDOUT, or a query printing one line a row).
 * Prints each round's times and PostgreSQL's time over ours (above 1:
 * understudy is faster), then the medians.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"
#include "understudy.h"

#define Q_MAX_ROUNDS 64

struct q_count {
	uint64_t rows;     /* item rows */
	uint64_t bytes;    /* bytes of ids and values received */
};

static int count_row(void *arg, const us_query_row_t *row)
{
	struct q_count *c = arg;

	if (row->kind != US_ROW_ITEM)
		return 0;
	c->rows++;
	c->bytes += row->id_len;
	for (size_t i = 0; i < row->n_cells; i++)
		for (size_t j = 0; j < row->cells[i].n_values; j++)
			c->bytes += row->cells[i].values[j].len;
	return 0;
}

/* Ours: seconds, the count (COUNT) or item rows. */
static int run_ours(us_client_t *c, const char *ns, const char *account, const char *sentence,
		    double *secs, uint64_t *result)
{
	struct q_count cnt = {0};
	us_query_sink_t sink = {.on_row = count_row, .arg = &cnt};
	us_queried_t q;
	us_err_t err;
	int64_t t0 = bench_now_ns();

	if (us_query(c, ns, account, sentence, 0, &sink, &q, &err)) {
		fprintf(stderr, "understudy-bench: query: %s\n", err.msg);
		return 1;
	}
	*secs = (double)(bench_now_ns() - t0) / 1e9;
	*result = cnt.rows ? cnt.rows : q.count;
	return 0;
}

/* PostgreSQL through psql: seconds, and the first line as a number when
 * is_count, else the lines printed. */
static int run_pg(const char *port, const char *db, const char *sql, int is_count, double *secs,
		  uint64_t *result)
{
	int fds[2], status;
	char buf[65536], first[64] = "";
	size_t n_first = 0;
	uint64_t lines = 0;
	int64_t t0 = bench_now_ns();
	pid_t pid;
	ssize_t n;

	if (pipe(fds) != 0) {
		fprintf(stderr, "understudy-bench: pipe: %s\n", strerror(errno));
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "understudy-bench: fork: %s\n", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return 1;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		dup2(fds[1], STDOUT_FILENO);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		close(fds[0]);
		close(fds[1]);
		execlp("psql", "psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", db,
		       "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (lines == 0 && buf[i] != '\n' && n_first + 1 < sizeof(first))
				first[n_first++] = buf[i];
			lines += buf[i] == '\n';
		}
	}
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	*secs = (double)(bench_now_ns() - t0) / 1e9;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "understudy-bench: psql on port %s failed (status %d)\n", port,
			status);
		return 1;
	}
	first[n_first] = '\0';
	*result = is_count ? strtoull(first, NULL, 10) : lines;
	return 0;
}

int bench_query_main(int argc, char **argv)
{
	const char *addr = NULL, *ns = NULL, *account = NULL, *sentence = NULL;
	const char *pg_port = NULL, *pg_sql = NULL, *pg_db = "postgres";
	double ours[Q_MAX_ROUNDS], pg[Q_MAX_ROUNDS], ratio[Q_MAX_ROUNDS];
	uint64_t got_ours = 0, got_pg = 0;
	long rounds = 5;
	int is_json = 0, is_count, rc = 1;
	us_client_t *c = NULL;
	us_err_t err;

	for (int i = 2; i < argc; i++) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(opt, "--json") == 0) {
			is_json = 1;
			continue;
		}
		if (!val) {
			fprintf(stderr, "understudy-bench: query: %s needs a value\n", opt);
			return 2;
		}
		if (strcmp(opt, "--addr") == 0)
			addr = val;
		else if (strcmp(opt, "--ns") == 0)
			ns = val;
		else if (strcmp(opt, "--account") == 0)
			account = val;
		else if (strcmp(opt, "--sentence") == 0)
			sentence = val;
		else if (strcmp(opt, "--pg-port") == 0)
			pg_port = val;
		else if (strcmp(opt, "--pg-sql") == 0)
			pg_sql = val;
		else if (strcmp(opt, "--pg-db") == 0)
			pg_db = val;
		else if (strcmp(opt, "--rounds") == 0) {
			rounds = strtol(val, NULL, 10);
			if (rounds < 1 || rounds > Q_MAX_ROUNDS) {
				fprintf(stderr, "understudy-bench: query: --rounds takes 1 to %d\n",
					Q_MAX_ROUNDS);
				return 2;
			}
		} else {
			fprintf(stderr, "understudy-bench: query: bad option %s\n", opt);
			return 2;
		}
		i++;
	}
	if (!addr || !ns || !account || !sentence || (!pg_port != !pg_sql)) {
		fprintf(stderr, "understudy-bench: query needs --addr, --ns, --account and "
				"--sentence (and --pg-port with --pg-sql)\n");
		return 2;
	}
	is_count = strncasecmp(sentence, "COUNT", 5) == 0;
	c = us_client_new(addr, NULL, &err);
	if (!c) {
		fprintf(stderr, "understudy-bench: %s: %s\n", addr, err.msg);
		return 1;
	}
	for (long r = 0; r < rounds; r++) {
		int is_pg_first = pg_port && (r % 2 == 1);

		pg[r] = 0;
		if (is_pg_first && run_pg(pg_port, pg_db, pg_sql, is_count, &pg[r], &got_pg))
			goto out;
		if (run_ours(c, ns, account, sentence, &ours[r], &got_ours))
			goto out;
		if (pg_port && !is_pg_first &&
		    run_pg(pg_port, pg_db, pg_sql, is_count, &pg[r], &got_pg))
			goto out;
		if (pg_port && got_pg != got_ours) {
			fprintf(stderr, "understudy-bench: the answers differ: understudy %" PRIu64
					", PostgreSQL %" PRIu64 " %s\n",
				got_ours, got_pg, is_count ? "counted" : "rows");
			goto out;
		}
		ratio[r] = pg_port ? pg[r] / ours[r] : 0;
		if (!is_json) {
			printf("round %ld: understudy %.3f s", r + 1, ours[r]);
			if (pg_port)
				printf(", PostgreSQL %.3f s: %.2fx", pg[r], ratio[r]);
			printf(" (%" PRIu64 " %s)\n", got_ours, is_count ? "counted" : "rows");
		}
	}
	{
		double mo = bench_median(ours, rounds);
		double mp = pg_port ? bench_median(pg, rounds) : 0;
		double mr = pg_port ? bench_median(ratio, rounds) : 0;

		if (is_json)
			bench_print_json(json_pack("{s:s,s:s,s:i,s:I,s:f,s:f,s:f}", "bench", "query",
						   "sentence", sentence, "rounds", (int)rounds,
						   is_count ? "count" : "rows", (json_int_t)got_ours,
						   "understudy_s", mo, "postgresql_s", mp, "ratio", mr));
		else if (pg_port)
			printf("median of %ld rounds: understudy %.3f s, PostgreSQL %.3f s: %.2fx\n",
			       rounds, mo, mp, mr);
		else
			printf("median of %ld rounds: understudy %.3f s\n", rounds, mo);
	}
	rc = 0;
out:
	us_client_free(c);
	return rc;
}
