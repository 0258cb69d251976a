/*
 * understudy - the command line client, for people and scripts.
 *
 * Built on the C client library (include/understudy.h). Exit status: 0
 * success, 1 failure (one line on stderr), 2 usage, 3 not found. Output is
 * plain text, or with --json one JSON object on stdout (jansson).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "err.h"
#include "us_limits.h"
#include "names.h"
#include "understudy.h"
#include "cli.h"
#include "config.h"

static const struct command *find_command(const char *name);
static int parse_u64(const char *flag, const char *v, uint64_t min, uint64_t *out);

/* ---- output helpers ---- */

/* One line on stderr: server messages are one line already; make sure. */
int cli_fail(int code, const char *fmt, ...)
{
	char msg[US_ERR_MSG_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stderr, "understudy: %s\n", msg);
	return code;
}

int cli_fail_err(const us_err_t *err)
{
	return cli_fail(err->code == US_ENOTFOUND ? EXIT_NOTFOUND : EXIT_FAIL, "%s",
		    err->msg[0] ? err->msg : us_strerror(err->code));
}

int cli_print_json(FILE *f, json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT);

	json_decref(obj);
	if (!s)
		return cli_fail(EXIT_FAIL, "cannot format JSON output");
	fprintf(f, "%s\n", s);
	free(s);
	return 0;
}

static int print_seq(struct cli *cli, uint64_t seq)
{
	if (!cli->is_json)
		return 0;
	return cli_print_json(stdout, json_pack("{s:I}", "seq", (json_int_t)seq));
}

/* ---- client ---- */

static int read_token(const char *path, char *out, size_t size, us_err_t *err)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return err_set(err, US_EINVAL, "cannot read token file %s: %s", path, strerror(errno));
	n = fread(out, 1, size - 1, f);
	fclose(f);
	out[n] = '\0';
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
		out[--n] = '\0';
	return 0;
}

static int connect_client(struct cli *cli)
{
	us_client_opts_t opts = {0};
	char token[1024];
	us_err_t err;

	if (cli->token_file) {
		if (read_token(cli->token_file, token, sizeof(token), &err))
			return cli_fail_err(&err);
		opts.token = token;
	}
	opts.tls_ca_file = cli->tls_ca;
	opts.is_prefer_standby = cli->is_prefer_standby;
	cli->client = us_client_new(cli->addr, &opts, &err);
	if (!cli->client)
		return cli_fail_err(&err);
	return 0;
}

/* ---- commands ---- */

static int cmd_status(struct cli *cli)
{
	us_status_t *st;
	us_err_t err;

	if (us_status(cli->client, &st, &err))
		return cli_fail_err(&err);
	if (cli->is_json) {
		json_t *o;

		if (strcmp(st->node, "archiver") == 0) {
			json_t *a = json_array();

			for (size_t i = 0; i < st->n_namespaces; i++) {
				const us_ns_status_t *n = &st->namespaces[i];

				json_array_append_new(a, json_pack(
					"{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:I,s:I,s:s,s:I}", "namespace", n->ns,
					"role", n->role, "generation", (json_int_t)n->generation,
					"applied_seq", (json_int_t)n->applied_seq, "durable_seq",
					(json_int_t)n->durable_seq, "master_seq", (json_int_t)n->master_seq,
					"lag_entries", (json_int_t)n->lag_entries, "lag_ms",
					(json_int_t)n->lag_ms, "connected", n->is_connected,
					"heartbeat_age_ms", (json_int_t)n->heartbeat_age_ms,
					"refusals", (json_int_t)n->refusals, "refusal", n->refusal,
					"snapshots", (json_int_t)n->snapshots));
				json_t *last = json_array_get(a, json_array_size(a) - 1);

				json_object_set_new(last, "saves", json_integer((json_int_t)n->saves));
				json_object_set_new(last, "save_bytes",
						    json_integer((json_int_t)n->save_bytes));
				json_object_set_new(last, "oldest_save_seq",
						    json_integer((json_int_t)n->oldest_save_seq));
				json_object_set_new(last, "journal_first_seq",
						    json_integer((json_int_t)n->journal_first_seq));
				if (strcmp(n->role, "primary") == 0) {
					json_object_set_new(last, "site_following",
							    json_boolean(n->is_site_following));
					json_object_set_new(
						last, "site_durable_seq",
						json_integer((json_int_t)n->site_durable_seq));
				}
			}
			o = json_pack("{s:s,s:o}", "node", "archiver", "namespaces", a);
		} else {
			json_t *a = json_array();

			for (size_t i = 0; i < st->n_archivers; i++) {
				const us_archiver_link_t *l = &st->archivers[i];

				json_array_append_new(a, json_pack("{s:s,s:b,s:I,s:I}", "addr", l->addr,
								   "connected", l->is_connected,
								   "acked_seq", (json_int_t)l->acked_seq,
								   "lag_entries",
								   (json_int_t)l->lag_entries));
			}
			o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:I,s:o}", "node", st->node,
				      "namespace", st->ns, "role", st->role, "generation",
				      (json_int_t)st->generation, "last_seq", (json_int_t)st->last_seq,
				      "journal_first_seq", (json_int_t)st->journal_first_seq,
				      "commit_mode", st->commit_mode, "snapshots",
				      (json_int_t)st->snapshots, "archivers", a);
			if (o && st->primary[0]) {
				json_object_set_new(o, "primary", json_string(st->primary));
				json_object_set_new(o, "primary_generation",
						    json_integer((json_int_t)st->primary_generation));
				json_object_set_new(o, "fork_seq",
						    json_integer((json_int_t)st->fork_seq));
				json_object_set_new(o, "divergent_entries",
						    json_integer((json_int_t)st->divergent_entries));
				json_object_set_new(o, "following", json_boolean(st->is_following));
				json_object_set_new(o, "master_seq",
						    json_integer((json_int_t)st->master_seq));
				json_object_set_new(o, "lag_entries",
						    json_integer((json_int_t)st->lag_entries));
				json_object_set_new(o, "export_path", json_string(st->export_path));
				json_object_set_new(o, "exported",
						    json_integer((json_int_t)st->exported));
				json_object_set_new(o, "follow_error", json_string(st->follow_error));
			}
		}
		us_status_free(st);
		return cli_print_json(stdout, o);
	}
	if (strcmp(st->node, "archiver") == 0) {
		printf("node: archiver\n");
		for (size_t i = 0; i < st->n_namespaces; i++) {
			const us_ns_status_t *n = &st->namespaces[i];

			printf("%s role=%s generation=%llu applied_seq=%llu durable_seq=%llu "
			       "master_seq=%llu lag_entries=%llu lag_ms=%llu connected=%s "
			       "heartbeat_age_ms=%lld snapshots=%llu saves=%llu save_bytes=%llu "
			       "oldest_save_seq=%llu journal_first_seq=%llu refusals=%llu%s%s%s",
			       n->ns, n->role, (unsigned long long)n->generation,
			       (unsigned long long)n->applied_seq, (unsigned long long)n->durable_seq,
			       (unsigned long long)n->master_seq, (unsigned long long)n->lag_entries,
			       (unsigned long long)n->lag_ms, n->is_connected ? "yes" : "no",
			       (long long)n->heartbeat_age_ms, (unsigned long long)n->snapshots,
			       (unsigned long long)n->saves, (unsigned long long)n->save_bytes,
			       (unsigned long long)n->oldest_save_seq,
			       (unsigned long long)n->journal_first_seq,
			       (unsigned long long)n->refusals,
			       n->refusal[0] ? " refusal=\"" : "", n->refusal,
			       n->refusal[0] ? "\"" : "");
			if (strcmp(n->role, "primary") == 0)
				printf(" site_following=%s site_durable_seq=%llu",
				       n->is_site_following ? "yes" : "no",
				       (unsigned long long)n->site_durable_seq);
			putchar('\n');
		}
	} else {
		printf("node: %s\nnamespace: %s\nrole: %s\ngeneration: %llu\nlast_seq: %llu\n"
		       "journal_first_seq: %llu\ncommit_mode: %s\nsnapshots: %llu\n",
		       st->node, st->ns, st->role, (unsigned long long)st->generation,
		       (unsigned long long)st->last_seq,
		       (unsigned long long)st->journal_first_seq, st->commit_mode,
		       (unsigned long long)st->snapshots);
		if (st->primary[0] && strcmp(st->role, "fenced") == 0)
			printf("primary: %s (generation %llu): this site is fenced\n"
			       "fork_seq: %llu\ndivergent_entries: %llu\n",
			       st->primary, (unsigned long long)st->primary_generation,
			       (unsigned long long)st->fork_seq,
			       (unsigned long long)st->divergent_entries);
		else if (st->primary[0])
			printf("primary: %s (generation %llu): this site follows it\n"
			       "following: %s\nmaster_seq: %llu\nlag_entries: %llu\n",
			       st->primary, (unsigned long long)st->primary_generation,
			       st->is_following ? "yes" : "no", (unsigned long long)st->master_seq,
			       (unsigned long long)st->lag_entries);
		if (st->export_path[0])
			printf("export: %s (%llu entries: this site's own commits after the fork)\n",
			       st->export_path, (unsigned long long)st->exported);
		if (st->follow_error[0])
			printf("follow_error: %s\n", st->follow_error);
		for (size_t i = 0; i < st->n_archivers; i++)
			printf("archiver %s connected=%s acked_seq=%llu lag_entries=%llu\n",
			       st->archivers[i].addr, st->archivers[i].is_connected ? "yes" : "no",
			       (unsigned long long)st->archivers[i].acked_seq,
			       (unsigned long long)st->archivers[i].lag_entries);
	}
	us_status_free(st);
	return 0;
}

static int commit_one(struct cli *cli, const us_op_t *op)
{
	uint64_t seq = 0;
	us_err_t err;

	if (us_commit(cli->client, cli->args[0], op, 1, &seq, &err))
		return cli_fail_err(&err);
	return print_seq(cli, seq);
}

/* Reads all of stdin into b, refusing more than max bytes. */
static int read_stdin(struct buf *b, size_t max)
{
	uint8_t chunk[65536];
	size_t n;

	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
		if (b->len + n > max)
			return cli_fail(EXIT_FAIL, "body on stdin is over the limit of %zu bytes", max);
		if (buf_append(b, chunk, n))
			return cli_fail(EXIT_FAIL, "out of memory");
	}
	if (ferror(stdin))
		return cli_fail(EXIT_FAIL, "cannot read stdin: %s", strerror(errno));
	return 0;
}

static int cmd_put(struct cli *cli)
{
	us_op_t op = {.kind = US_OP_WRITE, .account = cli->args[1], .file = cli->args[2],
		      .is_dict = cli->is_dict, .id = (uint8_t *)cli->args[3],
		      .id_len = strlen(cli->args[3])};
	struct buf body;
	int rc;

	buf_init(&body);
	if (cli->n_args == 5) {
		op.body = (uint8_t *)cli->args[4];
		op.body_len = strlen(cli->args[4]);
	} else {
		/* +1 so that a body over the limit reaches the server and gets its message */
		if ((rc = read_stdin(&body, US_BODY_MAX_BYTES + 1)))
			goto out;
		op.body = body.p ? body.p : (const uint8_t *)"";
		op.body_len = body.len;
	}
	rc = commit_one(cli, &op);
out:
	buf_release(&body);
	return rc;
}

static int cmd_get(struct cli *cli)
{
	uint8_t *body;
	size_t len;
	us_err_t err;

	if (us_read(cli->client, cli->args[0], cli->args[1], cli->args[2], cli->is_dict,
		    (uint8_t *)cli->args[3], strlen(cli->args[3]), cli->at, &body, &len, &err))
		return cli_fail_err(&err);
	if (len && fwrite(body, 1, len, stdout) != len) {
		free(body);
		return cli_fail(EXIT_FAIL, "cannot write to stdout: %s", strerror(errno));
	}
	free(body);
	if (fflush(stdout))
		return cli_fail(EXIT_FAIL, "cannot write to stdout: %s", strerror(errno));
	return 0;
}

static int cmd_delete(struct cli *cli)
{
	us_op_t op = {.kind = US_OP_DELETE, .account = cli->args[1], .file = cli->args[2],
		      .is_dict = cli->is_dict, .id = (uint8_t *)cli->args[3],
		      .id_len = strlen(cli->args[3])};

	return commit_one(cli, &op);
}

struct list_state {
	json_t *ids;  /* --json */
	char esc[4 * US_ID_MAX_LEN + 8];
};

static int list_one(void *arg, const uint8_t *id, size_t id_len, const uint8_t *body,
		    size_t body_len)
{
	struct list_state *ls = arg;

	(void)body;
	(void)body_len;
	names_escape(id, id_len, ls->esc, sizeof(ls->esc));
	if (ls->ids)
		json_array_append_new(ls->ids, json_string(ls->esc));
	else
		puts(ls->esc);
	return 0;
}

static int cmd_list(struct cli *cli)
{
	us_scan_opts_t opts = {.is_dict = cli->is_dict, .snapshot = cli->at, .limit = cli->limit,
			       .is_keys_only = 1};
	struct list_state *ls = calloc(1, sizeof(*ls));
	us_err_t err;
	int rc;

	if (!ls)
		return cli_fail(EXIT_FAIL, "out of memory");
	if (cli->is_json)
		ls->ids = json_array();
	rc = us_scan(cli->client, cli->args[0], cli->args[1], cli->args[2], &opts, list_one, ls,
		     &err);
	if (rc) {
		json_decref(ls->ids);
		free(ls);
		return cli_fail_err(&err);
	}
	if (ls->ids)
		rc = cli_print_json(stdout, json_pack("{s:o}", "ids", ls->ids));
	free(ls);
	return rc;
}

static int cmd_files(struct cli *cli)
{
	us_file_info_t *files;
	size_t n;
	us_err_t err;

	if (us_list_files(cli->client, cli->args[0], cli->n_args > 1 ? cli->args[1] : NULL, cli->at,
			  &files, &n, &err))
		return cli_fail_err(&err);
	if (cli->is_json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n; i++)
			json_array_append_new(
				a, json_pack("{s:s,s:s,s:b,s:b,s:I,s:I,s:I}", "account",
					     files[i].account, "file", files[i].file, "logged",
					     files[i].is_logged, "account_logged",
					     files[i].is_account_logged, "data_items",
					     (json_int_t)files[i].data_items, "dict_items",
					     (json_int_t)files[i].dict_items, "stale_since_seq",
					     (json_int_t)files[i].stale_since_seq));
		free(files);
		return cli_print_json(stdout, json_pack("{s:o}", "files", a));
	}
	for (size_t i = 0; i < n; i++) {
		printf("%s\t%s\t%s\t%llu\t%llu", files[i].account, files[i].file,
		       files[i].is_logged && files[i].is_account_logged ? "logged" : "unlogged",
		       (unsigned long long)files[i].data_items,
		       (unsigned long long)files[i].dict_items);
		if (files[i].stale_since_seq)
			printf("\tstale since seq %llu", (unsigned long long)files[i].stale_since_seq);
		putchar('\n');
	}
	free(files);
	return 0;
}

static int cmd_create_file(struct cli *cli)
{
	us_op_t op = {.kind = US_OP_CREATE_FILE, .account = cli->args[1], .file = cli->args[2],
		      .is_logged = !cli->is_unlogged};

	return commit_one(cli, &op);
}

static int cmd_clear_file(struct cli *cli)
{
	us_op_t op = {.kind = US_OP_CLEAR_FILE, .account = cli->args[1], .file = cli->args[2],
		      .is_dict = cli->is_dict};

	return commit_one(cli, &op);
}

static int cmd_delete_file(struct cli *cli)
{
	us_op_t op = {.kind = US_OP_DELETE_FILE, .account = cli->args[1], .file = cli->args[2]};

	return commit_one(cli, &op);
}

static int cmd_set_logging(struct cli *cli)
{
	const char *flag = cli->args[cli->n_args - 1];
	us_op_t op = {.kind = US_OP_SET_LOGGING, .account = cli->args[1],
		      .file = cli->n_args == 4 ? cli->args[2] : ""};

	if (strcmp(flag, "on") == 0)
		op.is_logged = 1;
	else if (strcmp(flag, "off") != 0)
		return cli_fail(EXIT_USAGE, "set-logging wants on or off, not '%s'", flag);
	return commit_one(cli, &op);
}

/* ---- load ---- */

struct load {
	us_op_t *ops;
	struct buf *ids, *bodies;  /* owned copies, one per op slot */
	size_t n, cap, bytes;
	uint64_t committed, last_seq;
	struct timespec start;
	bool is_tty;
};

static double since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static int load_flush(struct cli *cli, struct load *ld)
{
	uint64_t seq = 0;
	us_err_t err;

	if (ld->n == 0)
		return 0;
	for (size_t i = 0; i < ld->n; i++) {
		ld->ops[i].id = ld->ids[i].p;
		ld->ops[i].id_len = ld->ids[i].len;
		ld->ops[i].body = ld->bodies[i].p ? ld->bodies[i].p : (const uint8_t *)"";
		ld->ops[i].body_len = ld->bodies[i].len;
	}
	if (us_commit(cli->client, cli->args[0], ld->ops, ld->n, &seq, &err)) {
		if (ld->is_tty)
			fputc('\n', stderr);
		return cli_fail(err.code == US_ENOTFOUND ? EXIT_NOTFOUND : EXIT_FAIL,
			    "%s (%llu items committed before this batch)", err.msg,
			    (unsigned long long)ld->committed);
	}
	ld->committed += ld->n;
	if (seq)
		ld->last_seq = seq;
	ld->n = 0;
	ld->bytes = 0;
	if (ld->is_tty) {
		double s = since(&ld->start);

		fprintf(stderr, "\rloaded %llu items (%.0f items/s)", (unsigned long long)ld->committed,
			s > 0 ? (double)ld->committed / s : 0.0);
	}
	return 0;
}

static int cmd_load(struct cli *cli)
{
	struct load ld = {0};
	char *line = NULL;
	size_t line_cap = 0;
	ssize_t len;
	uint64_t lineno = 0;
	us_err_t err;
	int rc = 0;

	ld.cap = cli->batch ? cli->batch : LOAD_BATCH_DEFAULT;
	ld.ops = calloc(ld.cap, sizeof(*ld.ops));
	ld.ids = calloc(ld.cap, sizeof(*ld.ids));
	ld.bodies = calloc(ld.cap, sizeof(*ld.bodies));
	if (!ld.ops || !ld.ids || !ld.bodies) {
		rc = cli_fail(EXIT_FAIL, "out of memory");
		goto out;
	}
	ld.is_tty = isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &ld.start);
	while ((len = getline(&line, &line_cap, stdin)) >= 0) {
		char *tab;
		us_op_t *op;

		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0)
			continue;
		tab = memchr(line, '\t', (size_t)len);
		if (!tab) {
			rc = cli_fail(EXIT_FAIL, "line %llu: no tab between id and body (%llu items committed before it)",
				  (unsigned long long)lineno, (unsigned long long)ld.committed);
			goto out;
		}
		buf_reset(&ld.ids[ld.n]);
		buf_reset(&ld.bodies[ld.n]);
		if (names_unescape(line, (size_t)(tab - line), &ld.ids[ld.n], &err) ||
		    names_unescape(tab + 1, (size_t)(line + len - tab - 1), &ld.bodies[ld.n], &err)) {
			rc = cli_fail(EXIT_FAIL, "line %llu: %s (%llu items committed before it)",
				  (unsigned long long)lineno, err.msg,
				  (unsigned long long)ld.committed);
			goto out;
		}
		op = &ld.ops[ld.n];
		*op = (us_op_t){.kind = US_OP_WRITE, .account = cli->args[1], .file = cli->args[2],
				.is_dict = cli->is_dict};
		ld.bytes += ld.ids[ld.n].len + ld.bodies[ld.n].len;
		ld.n++;
		if (ld.n == ld.cap || ld.bytes >= LOAD_BATCH_MAX_BYTES) {
			if ((rc = load_flush(cli, &ld)))
				goto out;
		}
	}
	if (ferror(stdin)) {
		rc = cli_fail(EXIT_FAIL, "cannot read stdin: %s", strerror(errno));
		goto out;
	}
	if ((rc = load_flush(cli, &ld)))
		goto out;
	if (ld.is_tty)
		fputc('\n', stderr);
	if (cli->is_json)
		rc = cli_print_json(stdout, json_pack("{s:I,s:I}", "seq", (json_int_t)ld.last_seq, "items",
					  (json_int_t)ld.committed));
out:
	free(line);
	for (size_t i = 0; ld.ids && ld.bodies && i < ld.cap; i++) {
		buf_release(&ld.ids[i]);
		buf_release(&ld.bodies[i]);
	}
	free(ld.ids);
	free(ld.bodies);
	free(ld.ops);
	return rc;
}

/* ISO 8601 UTC with ms of a wall time in ms since the epoch, "-" for 0. */
const char *cli_fmt_time_ms(uint64_t ms, char *out, size_t size)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;

	if (ms == 0 || !gmtime_r(&secs, &tm)) {
		snprintf(out, size, "-");
		return out;
	}
	char secs_text[32];

	strftime(secs_text, sizeof(secs_text), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, size, "%s.%03uZ", secs_text, (unsigned)(ms % 1000));
	return out;
}

static int cmd_snapshot(struct cli *cli)
{
	us_snapshot_t snap;
	char when[64];
	us_err_t err;

	if (us_open_snapshot(cli->client, cli->args[0], &snap, &err))
		return cli_fail_err(&err);
	cli_fmt_time_ms(snap.time_ms, when, sizeof(when));
	if (cli->is_json)
		return cli_print_json(stdout, json_pack("{s:I,s:s,s:I,s:I,s:I,s:s,s:I}", "snapshot",
					    (json_int_t)snap.id, "namespace", cli->args[0],
					    "generation", (json_int_t)snap.generation, "seq",
					    (json_int_t)snap.seq, "time_ms", (json_int_t)snap.time_ms,
					    "time", when, "ttl_ms", (json_int_t)snap.ttl_ms));
	/* the id first and alone in its field: SNAP=$(understudy snapshot NS | cut -f1) */
	printf("%llu\tseq=%llu\tgeneration=%llu\ttime=%s\n", (unsigned long long)snap.id,
	       (unsigned long long)snap.seq, (unsigned long long)snap.generation, when);
	return 0;
}

static int cmd_release(struct cli *cli)
{
	uint64_t id = 0;
	us_err_t err;
	int rc;

	if ((rc = parse_u64("SNAP", cli->args[1], 1, &id)))
		return rc;
	if (us_release_snapshot(cli->client, cli->args[0], id, &err))
		return cli_fail_err(&err);
	return 0;
}

static int cmd_adopt(struct cli *cli)
{
	us_adopted_t ad;
	us_err_t err;

	if (us_adopt(cli->client, cli->args[0], &ad, &err))
		return cli_fail_err(&err);
	if (cli->is_json) {
		json_t *o = json_pack("{s:s,s:s,s:I,s:s}", "namespace", cli->args[0],
				      "previous_site", ad.previous_site, "previous_seq",
				      (json_int_t)ad.previous_seq, "kept_in", ad.kept_in);

		return cli_print_json(stdout, o);
	}
	printf("adopted %s: the next site to connect starts a new copy; the old one (site %s, "
	       "seq %llu) is kept in %s\n",
	       cli->args[0], ad.previous_site[0] ? ad.previous_site : "none",
	       (unsigned long long)ad.previous_seq, ad.kept_in);
	return 0;
}

static int cmd_promote(struct cli *cli)
{
	us_promoted_t pr;
	us_err_t err;

	if (us_promote(cli->client, cli->args[0], cli->is_force, &pr, &err))
		return cli_fail_err(&err);
	if (cli->is_json) {
		json_t *o = json_pack("{s:s,s:I,s:I,s:b,s:b}", "namespace", cli->args[0],
				      "generation", (json_int_t)pr.generation, "first_seq",
				      (json_int_t)pr.first_seq, "was_primary", pr.was_primary,
				      "fenced_site", pr.fenced_site);

		return cli_print_json(stdout, o);
	}
	if (pr.was_primary)
		printf("%s is primary here already (generation %llu from seq %llu): nothing changed\n",
		       cli->args[0], (unsigned long long)pr.generation,
		       (unsigned long long)pr.first_seq);
	else
		printf("promoted %s: primary here, generation %llu from seq %llu%s\n", cli->args[0],
		       (unsigned long long)pr.generation, (unsigned long long)pr.first_seq,
		       pr.fenced_site ? "; its site's stream was ended and it is fenced" : "");
	return 0;
}

static int cmd_switchover(struct cli *cli)
{
	us_switched_t sw;
	us_err_t err;

	if (us_switchover(cli->client, cli->args[0], cli->wait_ms, &sw, &err))
		return cli_fail_err(&err);
	if (cli->is_json) {
		json_t *o = json_pack("{s:s,s:b,s:s,s:s,s:I,s:I,s:I}", "namespace", cli->args[0],
				      "was_switched", sw.was_switched, "site", sw.site, "site_addr",
				      sw.site_addr, "generation", (json_int_t)sw.generation,
				      "first_seq", (json_int_t)sw.first_seq, "pause_ms",
				      (json_int_t)sw.pause_ms);

		return cli_print_json(stdout, o);
	}
	if (sw.was_switched)
		printf("%s was handed over already: its primary is the site at %s, generation %llu "
		       "from seq %llu; nothing changed\n",
		       cli->args[0], sw.site_addr, (unsigned long long)sw.generation,
		       (unsigned long long)sw.first_seq);
	else
		printf("switched %s over: its primary is the site at %s, generation %llu from seq "
		       "%llu; this archiver is its standby (commits paused %llu ms)\n",
		       cli->args[0], sw.site_addr, (unsigned long long)sw.generation,
		       (unsigned long long)sw.first_seq, (unsigned long long)sw.pause_ms);
	return 0;
}

static int cmd_rejoin(struct cli *cli)
{
	us_rejoined_t rj;
	us_err_t err;

	if (us_rejoin(cli->client, cli->n_args ? cli->args[0] : NULL, &rj, &err))
		return cli_fail_err(&err);
	if (cli->is_json) {
		json_t *o = json_pack("{s:b,s:s,s:s,s:I,s:I,s:I,s:s,s:I,s:I,s:I}", "was_rejoined",
				      rj.was_rejoined, "role", rj.role, "primary", rj.primary,
				      "generation", (json_int_t)rj.generation, "seq",
				      (json_int_t)rj.seq, "fork_seq", (json_int_t)rj.fork_seq,
				      "export_path", rj.export_path, "exported",
				      (json_int_t)rj.exported, "keys", (json_int_t)rj.keys, "bytes",
				      (json_int_t)rj.bytes);

		return cli_print_json(stdout, o);
	}
	if (rj.was_rejoined) {
		printf("rejoined already: %s, following %s at generation %llu (seq %llu): nothing "
		       "changed\n",
		       rj.role, rj.primary, (unsigned long long)rj.generation,
		       (unsigned long long)rj.seq);
		return 0;
	}
	printf("rejoined: %s, following %s at generation %llu from seq %llu (forked at seq %llu); "
	       "moved %llu items and files, %llu bytes\n",
	       rj.role, rj.primary, (unsigned long long)rj.generation, (unsigned long long)rj.seq,
	       (unsigned long long)rj.fork_seq, (unsigned long long)rj.keys,
	       (unsigned long long)rj.bytes);
	if (rj.export_path[0])
		printf("exported %llu entries (this site's own commits after the fork, not in the "
		       "primary) to %s: understudy dump reads it\n",
		       (unsigned long long)rj.exported, rj.export_path);
	return 0;
}

/* ---- table and main ---- */

static const struct command commands[] = {
	{"status", 0, 0, "status [--json]",
	 "the node's role and position (collector) or every namespace's (archiver)", cmd_status, false},
	{"put", 4, 5, "put NS ACCOUNT FILE ID [BODY] [--dict]",
	 "commit one item write; BODY's bytes are taken as they are, from stdin when absent",
	 cmd_put, false},
	{"get", 4, 4, "get NS ACCOUNT FILE ID [--dict] [--at SNAP]",
	 "write the item's body to stdout exactly; exit 3 when absent", cmd_get, false},
	{"delete", 4, 4, "delete NS ACCOUNT FILE ID [--dict]", "commit an item delete", cmd_delete, false},
	{"list", 3, 3, "list NS ACCOUNT FILE [--dict] [--limit N] [--at SNAP]",
	 "item ids in byte order, one a line (backslash and non-printable bytes as \\\\ and \\xNN)",
	 cmd_list, false},
	{"query", 3, 3, "query NS ACCOUNT 'SENTENCE' [--at SNAP] [--csv|--json] [--vm-sep S]",
	 "a report: a Pick LIST, SORT, COUNT or SELECT sentence run on the daemon against one "
	 "file with its dictionary, at one snapshot (taken for it unless --at): the columnar "
	 "report (paged on a terminal), --csv (RFC 4180, one row an item, values joined by "
	 "--vm-sep, ] by default, subvalues by --sv-sep, \\ by default) or --json (one "
	 "object a line, each column an array of values); docs/reports.md",
	 cmd_query, false},
	{"files", 1, 2, "files NS [ACCOUNT] [--at SNAP]",
	 "files with their logged flag and item counts: account, file, logged|unlogged, "
	 "data items, dict items",
	 cmd_files, false},
	{"create-file", 3, 3, "create-file NS ACCOUNT FILE [--unlogged]", "create a file",
	 cmd_create_file, false},
	{"clear-file", 3, 3, "clear-file NS ACCOUNT FILE [--dict]",
	 "delete every item of the DATA (or DICT) section", cmd_clear_file, false},
	{"delete-file", 3, 3, "delete-file NS ACCOUNT FILE", "delete a file and its items",
	 cmd_delete_file, false},
	{"set-logging", 3, 4, "set-logging NS ACCOUNT [FILE] on|off",
	 "turn journaling of a file (or of a whole account) on or off", cmd_set_logging, false},
	{"load", 3, 3, "load NS ACCOUNT FILE [--dict] [--batch N] < items.tsv",
	 "bulk commit, one id<TAB>body a line, escapes \\xNN \\\\ \\t \\n \\r, in batches of N "
	 "(1000)",
	 cmd_load, false},
	{"snapshot", 1, 1, "snapshot NS",
	 "open a read-only snapshot: prints its id, then seq, generation and commit time of the "
	 "state it shows; get, list and files read it with --at ID",
	 cmd_snapshot, false},
	{"release", 2, 2, "release NS SNAP", "end a snapshot", cmd_release, false},
	{"save", 1, 3, "save NS [ACCOUNT [FILE]] [--at SNAP] (-o FILE|- | --archive)",
	 "a consistent save of the namespace (or of one account or file) at a snapshot (taken "
	 "for it unless --at), written to FILE (made whole, then renamed into place), to "
	 "stdout (-o -), or kept in the archiver's on-line archive (--archive); progress on "
	 "stderr when it is a terminal",
	 cmd_save, false},
	{"saves", 1, 1, "saves NS [--json]",
	 "the saves the archiver keeps for NS, oldest first: taken (UTC), seq, generation, "
	 "scope, items, bytes, xxh64, file",
	 cmd_saves, false},
	{"dump", 1, 1, "dump FILE [--json]",
	 "a save as text, one item a line: ACCOUNT<TAB>FILE<TAB>ID<TAB>BODY (DICT items: "
	 "'DICT FILE'), with load's escapes; --json: one object a line",
	 cmd_dump, true},
	{"restore", 1, 1,
	 "restore FILE --data-dir DIR [--namespace NS] [--until SEQ|TIME --journal-from ADDR]",
	 "build a store from a save (FILE, or - for stdin) in the new directory DIR, at the "
	 "save's position, for a collector or an archiver to open as it is; built aside and "
	 "renamed into place, so a failed restore leaves nothing; DIR must be absent or empty; "
	 "--namespace NS: restored as NS (another namespace than the save's); --until: rolled "
	 "forward with the journal the daemon at ADDR retains, to exactly commit SEQ, or to the "
	 "last commit at or before TIME (2026-12-03T12:00:00Z, UTC)",
	 cmd_restore, true},
	{"adopt", 1, 1, "adopt NS",
	 "on the archiver: accept a deliberately rebuilt site whose identity or history "
	 "differs; the old copy is kept aside, the next site to connect starts a new one",
	 cmd_adopt, false},
	{"rebuild", 1, 1, "rebuild NS --data-dir DIR",
	 "against the archiver NS was promoted on: build a site whose store was lost again, "
	 "from a full copy of it, as the site following that primary (start its collector on "
	 "DIR, then switch over)",
	 cmd_rebuild, false},
	{"switchover", 1, 1, "switchover NS [--wait DURATION]",
	 "on the archiver: hand a namespace promoted there back to its rejoined site, once the "
	 "site has every commit (waits up to --wait, 30s by default; else nothing changes)",
	 cmd_switchover, false},
	{"rejoin", 0, 1, "rejoin [NS]",
	 "on a collector whose namespace was promoted elsewhere: export its own tail, rewind "
	 "to the primary and follow it (it does so by itself once fenced; this waits for it)",
	 cmd_rejoin, false},
	{"promote", 1, 1, "promote NS [--force]",
	 "on the archiver: take over NS's role (generation + 1); its commits go there until "
	 "the site rejoins; refused while the site is connected unless --force, which fences it",
	 cmd_promote, false},
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: understudy [--addr HOST:PORT[,HOST:PORT...]] [--prefer standby|primary] "
		   "[--json] [--token-file F] [--tls-ca F] COMMAND ARGS\n"
		   "--addr defaults to $UNDERSTUDY_ADDR, else %s (the archiver). With several\n"
		   "addresses (a site and the archiver) commits go to the namespace's primary, found\n"
		   "from each node's status and followed across a promote; reads too, or to a\n"
		   "standby with --prefer standby; admin commands go to the first address.\n"
		   "Exit status: 0 success, 1 failure, 2 usage, 3 not found.\n\ncommands:\n",
		US_DEFAULT_ARCHIVER_ADDR);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-52s %s\n", commands[i].usage, commands[i].help);
	fprintf(f, "\n'understudy COMMAND --help' describes one command.\n");
}

static int parse_u64(const char *flag, const char *v, uint64_t min, uint64_t *out)
{
	char *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-' || n < min)
		return cli_fail(EXIT_USAGE, "%s wants a whole number >= %llu, not '%s'", flag,
			    (unsigned long long)min, v);
	*out = n;
	return 0;
}

static int parse_args(struct cli *cli, int argc, char **argv)
{
	bool is_options_done = false;
	int rc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!is_options_done && a[0] == '-' && a[1] == '-') {
			if (strcmp(a, "--") == 0) {
				is_options_done = true;
				continue;
			}
			if (strcmp(a, "--json") == 0) {
				cli->is_json = true;
			} else if (strcmp(a, "--help") == 0) {
				cli->is_help = true;
			} else if (strcmp(a, "--dict") == 0) {
				cli->is_dict = true;
			} else if (strcmp(a, "--archive") == 0) {
				cli->is_archive = true;
			} else if (strcmp(a, "--unlogged") == 0) {
				cli->is_unlogged = true;
			} else if (strcmp(a, "--force") == 0) {
				cli->is_force = true;
			} else if (strcmp(a, "--csv") == 0) {
				cli->is_csv = true;
			} else if (strcmp(a, "--addr") == 0 || strcmp(a, "--token-file") == 0 ||
				   strcmp(a, "--tls-ca") == 0 || strcmp(a, "--limit") == 0 ||
				   strcmp(a, "--batch") == 0 || strcmp(a, "--at") == 0 ||
				   strcmp(a, "--data-dir") == 0 || strcmp(a, "--namespace") == 0 ||
				   strcmp(a, "--until") == 0 || strcmp(a, "--journal-from") == 0 ||
				   strcmp(a, "--prefer") == 0 || strcmp(a, "--wait") == 0 ||
				   strcmp(a, "--vm-sep") == 0 || strcmp(a, "--sv-sep") == 0) {
				if (!val)
					return cli_fail(EXIT_USAGE, "%s needs a value", a);
				i++;
				if (strcmp(a, "--addr") == 0)
					cli->addr = val;
				else if (strcmp(a, "--token-file") == 0)
					cli->token_file = val;
				else if (strcmp(a, "--tls-ca") == 0)
					cli->tls_ca = val;
				else if (strcmp(a, "--limit") == 0 &&
					 (rc = parse_u64(a, val, 1, &cli->limit)))
					return rc;
				else if (strcmp(a, "--batch") == 0 &&
					 (rc = parse_u64(a, val, 1, &cli->batch)))
					return rc;
				else if (strcmp(a, "--at") == 0 && (rc = parse_u64(a, val, 1, &cli->at)))
					return rc;
				else if (strcmp(a, "--data-dir") == 0)
					cli->data_dir = val;
				else if (strcmp(a, "--until") == 0)
					cli->until = val;
				else if (strcmp(a, "--journal-from") == 0)
					cli->journal_from = val;
				else if (strcmp(a, "--namespace") == 0)
					cli->ns = val;
				else if (strcmp(a, "--vm-sep") == 0)
					cli->vm_sep = val;
				else if (strcmp(a, "--sv-sep") == 0)
					cli->sv_sep = val;
				else if (strcmp(a, "--wait") == 0) {
					struct us_err perr;

					if (config_parse_duration_ms(val, &cli->wait_ms, &perr) ||
					    cli->wait_ms == 0)
						return cli_fail(EXIT_USAGE,
								"--wait takes a duration such as 30s or "
								"500ms, not '%s'",
								val);
				} else if (strcmp(a, "--prefer") == 0 && strcmp(val, "standby") == 0)
					cli->is_prefer_standby = true;
				else if (strcmp(a, "--prefer") == 0 && strcmp(val, "primary") != 0)
					return cli_fail(EXIT_USAGE,
							"--prefer takes standby or primary, not '%s'", val);
			} else {
				return cli_fail(EXIT_USAGE, "unknown option %s (see understudy --help)", a);
			}
		} else if (strcmp(a, "-o") == 0 && !is_options_done) {
			if (!val)
				return cli_fail(EXIT_USAGE, "-o needs a file (or - for stdout)");
			cli->output = val;
			i++;
		} else if (!cli->cmd && !(strcmp(a, "-h") == 0)) {
			cli->cmd = a;
		} else if (strcmp(a, "-h") == 0 && !is_options_done) {
			cli->is_help = true;
		} else {
			if (cli->n_args == MAX_ARGS)
				return cli_fail(EXIT_USAGE, "too many arguments");
			cli->args[cli->n_args++] = argv[i];
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct cli cli = {0};
	const struct command *cmd;
	int rc;

	if ((rc = parse_args(&cli, argc, argv)))
		return rc;
	if (!cli.cmd) {
		usage(cli.is_help ? stdout : stderr);
		return cli.is_help ? 0 : EXIT_USAGE;
	}
	cmd = find_command(cli.cmd);
	if (!cmd)
		return cli_fail(EXIT_USAGE, "unknown command '%s' (see understudy --help)", cli.cmd);
	if (cli.is_help) {
		printf("usage: understudy [global options] %s\n%s\n", cmd->usage, cmd->help);
		return 0;
	}
	if (cli.n_args < cmd->min_args || cli.n_args > cmd->max_args)
		return cli_fail(EXIT_USAGE, "usage: understudy %s", cmd->usage);
	if (!cli.addr)
		cli.addr = getenv("UNDERSTUDY_ADDR");
	if (!cli.addr || !cli.addr[0])
		cli.addr = US_DEFAULT_ARCHIVER_ADDR;
	if (!cmd->is_local && (rc = connect_client(&cli)))
		return rc;
	rc = cmd->run(&cli);
	us_client_free(cli.client);
	return rc;
}
