/*
 * cli_save.c - `understudy save` and `understudy dump`.
 *
 * save streams Admin.Save into FILE.partial-PID next to FILE, fsyncs it and
 * renames it into place only once the server said the save is whole (and
 * removes it otherwise), so a FILE that exists is a whole save; -o - writes
 * to stdout instead. On a terminal, stderr shows progress (items, MB, MB/s
 * and, from the item counts of the snapshot it reads, an ETA).
 *
 * dump reads a save or an export locally (lib/save.h) and prints its items
 * (an export: every entry, its other ops on "#OP" lines). Lines
 * are printed as frames are read, each frame checked on its own; the whole
 * file's checksum is checked at the end, and a save that fails it (or is
 * truncated) exits 1 after the lines of the frames before the damage.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "disk.h"
#include "err.h"
#include "save.h"
#include "us_limits.h"

/* ---- escapes ---- */

int cli_put_escaped(FILE *f, const uint8_t *p, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < len; i++) {
		uint8_t c = p[i];
		int rc;

		if (c == '\\')
			rc = fputs("\\\\", f);
		else if (c == '\t')
			rc = fputs("\\t", f);
		else if (c == '\n')
			rc = fputs("\\n", f);
		else if (c == '\r')
			rc = fputs("\\r", f);
		else if (c >= 0x20 && c < 0x7f)
			rc = putc(c, f);
		else
			rc = fprintf(f, "\\x%c%c", hex[c >> 4], hex[c & 15]);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* ---- save ---- */

struct save_out {
	FILE *f;
	const char *path;        /* what the user named ("-": stdout) */
	uint64_t bytes;
	uint64_t items;
	uint64_t total_items;    /* 0: unknown (no ETA) */
	bool is_progress;        /* stderr is a terminal */
	struct timespec t0, last;
	int write_errno;
};

static double seconds_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void show_progress(struct save_out *so, bool is_final)
{
	double s = seconds_since(&so->t0);
	double mb = (double)so->bytes / 1e6;
	double rate = s > 0 ? mb / s : 0;

	fprintf(stderr, "\rsaving: %" PRIu64 " items, %.1f MB, %.1f MB/s", so->items, mb, rate);
	if (so->total_items && !is_final && so->items > 0 && so->items <= so->total_items) {
		double eta = s * (double)(so->total_items - so->items) / (double)so->items;

		fprintf(stderr, ", %.0f%%, ETA %.0f s   ",
			100.0 * (double)so->items / (double)so->total_items, eta);
	} else {
		fputs("               ", stderr);
	}
	if (is_final)
		fputc('\n', stderr);
	clock_gettime(CLOCK_MONOTONIC, &so->last);
}

static int save_chunk(void *arg, const uint8_t *data, size_t len, uint64_t items)
{
	struct save_out *so = arg;

	if (fwrite(data, 1, len, so->f) != len) {
		so->write_errno = errno ? errno : EIO;
		return US_EIO;
	}
	so->bytes += len;
	so->items = items;
	if (so->is_progress && seconds_since(&so->last) >= 0.5)
		show_progress(so, false);
	return 0;
}

/* The items in the save's scope at snapshot snap: for the ETA only. */
static uint64_t count_items(struct cli *cli, uint64_t snap)
{
	const char *account = cli->n_args > 1 ? cli->args[1] : NULL;
	const char *file = cli->n_args > 2 ? cli->args[2] : NULL;
	us_file_info_t *files;
	uint64_t n = 0;
	size_t nf;
	us_err_t err;

	if (us_list_files(cli->client, cli->args[0], account, snap, &files, &nf, &err))
		return 0;
	for (size_t i = 0; i < nf; i++)
		if (!file || strcmp(files[i].file, file) == 0)
			n += files[i].data_items + files[i].dict_items;
	free(files);
	return n;
}

/* Makes path's rename durable: fsync of its directory. */
static int sync_dir_of(const char *path, us_err_t *err)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash == path ? 1 : slash - path), path);
	return disk_sync_path(dir, true, err);
}

static int no_bytes(void *arg, const uint8_t *data, size_t len, uint64_t items)
{
	(void)arg;
	(void)data;
	(void)len;
	(void)items;
	return 0;
}

static json_t *saved_json(const char *ns, const us_saved_t *s)
{
	char xxh[17];

	snprintf(xxh, sizeof(xxh), "%016" PRIx64, s->xxh64);
	return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:s}", "namespace", ns, "path",
			 s->path, "generation", (json_int_t)s->generation, "seq",
			 (json_int_t)s->seq, "time_ms", (json_int_t)s->time_ms, "items",
			 (json_int_t)s->items, "files", (json_int_t)s->files, "bytes",
			 (json_int_t)s->bytes, "xxh64", xxh);
}

/* save --archive: the archiver takes it and keeps it. */
static int save_archive(struct cli *cli)
{
	us_save_opts_t opts = {.account = cli->n_args > 1 ? cli->args[1] : NULL,
			       .file = cli->n_args > 2 ? cli->args[2] : NULL,
			       .snapshot = cli->at, .is_archive = 1};
	us_saved_t saved;
	us_err_t err;

	if (us_save(cli->client, cli->args[0], &opts, no_bytes, NULL, &saved, &err))
		return cli_fail_err(&err);
	if (cli->is_json)
		return cli_print_json(stdout, saved_json(cli->args[0], &saved));
	printf("kept %s at seq %" PRIu64 " (generation %" PRIu64 "): %" PRIu64 " items in %" PRIu64
	       " files, %" PRIu64 " bytes, xxh64 %016" PRIx64 ", in %s\n",
	       cli->args[0], saved.seq, saved.generation, saved.items, saved.files, saved.bytes,
	       saved.xxh64, saved.path);
	return 0;
}

int cmd_saves(struct cli *cli)
{
	us_saved_t *v;
	size_t n;
	us_err_t err;

	if (us_list_saves(cli->client, cli->args[0], &v, &n, &err))
		return cli_fail_err(&err);
	if (cli->is_json) {
		json_t *a = json_array();

		for (size_t i = 0; i < n; i++) {
			json_t *o = saved_json(cli->args[0], &v[i]);

			json_object_set_new(o, "name", json_string(v[i].name));
			json_object_set_new(o, "account", json_string(v[i].account));
			json_object_set_new(o, "file", json_string(v[i].file));
			json_object_set_new(o, "created_ms", json_integer((json_int_t)v[i].created_ms));
			json_array_append_new(a, o);
		}
		free(v);
		return cli_print_json(stdout, json_pack("{s:s,s:o}", "namespace", cli->args[0],
							"saves", a));
	}
	for (size_t i = 0; i < n; i++) {
		char when[64];
		char scope[140];

		cli_fmt_time_ms(v[i].created_ms, when, sizeof(when));
		snprintf(scope, sizeof(scope), "%s%s%s", v[i].account[0] ? v[i].account : "all",
			 v[i].file[0] ? "/" : "", v[i].file);
		printf("%s\tseq=%" PRIu64 "\tgeneration=%" PRIu64 "\tscope=%s\titems=%" PRIu64
		       "\tbytes=%" PRIu64 "\txxh64=%016" PRIx64 "\t%s\n",
		       when, v[i].seq, v[i].generation, scope, v[i].items, v[i].bytes, v[i].xxh64,
		       v[i].path);
	}
	free(v);
	return 0;
}

int cmd_save(struct cli *cli)
{
	const char *ns = cli->args[0];
	const char *account = cli->n_args > 1 ? cli->args[1] : NULL;
	const char *file = cli->n_args > 2 ? cli->args[2] : NULL;
	struct save_out so = {0};
	char partial[4096 + 64] = "";
	bool is_stdout;
	uint64_t snap = cli->at, own = 0;
	us_saved_t saved;
	us_err_t err;
	FILE *info;
	int rc;

	if (cli->is_archive && cli->output)
		return cli_fail(EXIT_USAGE, "save takes -o FILE or --archive, not both");
	if (cli->is_archive)
		return save_archive(cli);
	if (!cli->output)
		return cli_fail(EXIT_USAGE, "save needs -o FILE (or -o - for stdout, or --archive)");
	is_stdout = strcmp(cli->output, "-") == 0;
	if (is_stdout && isatty(STDOUT_FILENO))
		return cli_fail(EXIT_USAGE, "save -o - writes binary to stdout, which is a terminal: "
					    "redirect it, or give -o FILE");
	so.path = cli->output;
	so.is_progress = isatty(STDERR_FILENO);
	if (so.is_progress) {
		/* the ETA wants the item count of the snapshot the save reads */
		if (!snap) {
			us_snapshot_t s;

			if (us_open_snapshot(cli->client, ns, &s, &err) == 0)
				snap = own = s.id;
		}
		so.total_items = snap ? count_items(cli, snap) : 0;
	}
	if (is_stdout) {
		so.f = stdout;
	} else {
		snprintf(partial, sizeof(partial), "%s.partial-%ld", cli->output, (long)getpid());
		so.f = fopen(partial, "wb");
		if (!so.f) {
			rc = cli_fail(EXIT_FAIL, "cannot create %s: %s", partial, strerror(errno));
			goto out_release;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &so.t0);
	so.last = so.t0;
	{
		us_save_opts_t opts = {.account = account, .file = file, .snapshot = snap};

		rc = us_save(cli->client, ns, &opts, save_chunk, &so, &saved, &err);
	}
	if (rc == US_EIO && so.write_errno) {
		rc = cli_fail(EXIT_FAIL, "cannot write %s: %s", is_stdout ? "stdout" : partial,
			      strerror(so.write_errno));
		goto out_file;
	}
	if (rc) {
		if (so.is_progress)
			fputc('\n', stderr);
		rc = cli_fail_err(&err);
		goto out_file;
	}
	if (so.is_progress)
		show_progress(&so, true);
	if (fflush(so.f) != 0 || (!is_stdout && fsync(fileno(so.f)) != 0)) {
		rc = cli_fail(EXIT_FAIL, "cannot write %s: %s", is_stdout ? "stdout" : partial,
			      strerror(errno));
		goto out_file;
	}
	if (!is_stdout) {
		if (fclose(so.f) != 0) {
			so.f = NULL;
			rc = cli_fail(EXIT_FAIL, "cannot write %s: %s", partial, strerror(errno));
			goto out_file;
		}
		so.f = NULL;
		if (rename(partial, cli->output) != 0) {
			rc = cli_fail(EXIT_FAIL, "cannot rename %s to %s: %s", partial, cli->output,
				      strerror(errno));
			goto out_file;
		}
		partial[0] = '\0';
		if (sync_dir_of(cli->output, &err) != 0) {
			rc = cli_fail(EXIT_FAIL, "saved %s, but %s", cli->output, err.msg);
			goto out_release;
		}
	}
	/* what it holds: on stdout, unless the save itself went there */
	info = is_stdout ? stderr : stdout;
	if (cli->is_json) {
		snprintf(saved.path, sizeof(saved.path), "%s", cli->output);
		rc = cli_print_json(info, saved_json(ns, &saved));
	} else {
		fprintf(info, "saved %s at seq %" PRIu64 " (generation %" PRIu64 "): %" PRIu64
			      " items in %" PRIu64 " files, %" PRIu64 " bytes, xxh64 %016" PRIx64
			      ", to %s\n",
			ns, saved.seq, saved.generation, saved.items, saved.files, saved.bytes,
			saved.xxh64, is_stdout ? "stdout" : cli->output);
		rc = 0;
	}
	goto out_release;

out_file:
	if (so.f && !is_stdout)
		fclose(so.f);
	if (partial[0])
		unlink(partial);
out_release:
	if (own)
		us_release_snapshot(cli->client, ns, own, &err);
	return rc;
}

/* ---- dump ---- */

/* An export's op as dump names it ("DELETE", "CLEAR-FILE", ...). */
static const char *dump_op_name(uint8_t op)
{
	switch (op) {
	case ENTRY_WRITE: return "WRITE";
	case ENTRY_DELETE: return "DELETE";
	case ENTRY_CREATE_FILE: return "CREATE-FILE";
	case ENTRY_CLEAR_FILE: return "CLEAR-FILE";
	case ENTRY_DELETE_FILE: return "DELETE-FILE";
	case ENTRY_SET_LOGGING: return "SET-LOGGING";
	default: return "?";
	}
}

/* The flag of a CREATE_FILE or SET_LOGGING as dump prints it. */
static const char *dump_flag(const struct entry *e)
{
	if (e->op == ENTRY_CREATE_FILE)
		return e->is_reset ? "reset" : e->flag ? "logged" : "unlogged";
	return e->flag ? "on" : "off";
}

/* One entry: a save's item (is_export false: WRITEs only reach here), or an
 * export's entry seq. Text: an item is ACCOUNT<TAB>FILE<TAB>ID<TAB>BODY
 * (a DICT item's file "DICT FILE"); an export's other ops are
 * "#OP<TAB>ACCOUNT<TAB>FILE[<TAB>ID or flag]". JSON: one object a line. */
static int dump_entry(const struct entry *e, bool is_export, uint64_t seq, bool is_json,
		      FILE *f)
{
	bool has_id = e->op == ENTRY_WRITE || e->op == ENTRY_DELETE;
	bool has_section = has_id || e->op == ENTRY_CLEAR_FILE;
	bool has_flag = e->op == ENTRY_CREATE_FILE || e->op == ENTRY_SET_LOGGING;
	FILE *m;
	char *text = NULL;
	size_t text_len = 0;
	json_t *o;
	int rc;

	if (!is_json) {
		if (e->op != ENTRY_WRITE && fprintf(f, "#%s\t", dump_op_name(e->op)) < 0)
			return -1;
		if (fprintf(f, "%.*s\t%s%.*s", (int)e->account_len, e->account,
			    has_section && e->section == SECTION_DICT ? "DICT " : "",
			    (int)e->file_len, e->file) < 0)
			return -1;
		if (has_id && (putc('\t', f) < 0 || cli_put_escaped(f, e->id, e->id_len)))
			return -1;
		if (e->op == ENTRY_WRITE &&
		    (putc('\t', f) < 0 || cli_put_escaped(f, e->body, e->body_len)))
			return -1;
		if (has_flag && fprintf(f, "\t%s", dump_flag(e)) < 0)
			return -1;
		return putc('\n', f) < 0 ? -1 : 0;
	}
	/* JSON: the same escaped text as strings (bodies are bytes, JSON text is
	 * UTF-8) */
	m = open_memstream(&text, &text_len);
	if (!m)
		return -1;
	cli_put_escaped(m, e->id, e->id_len);
	putc(0, m);
	cli_put_escaped(m, e->body, e->body_len);
	if (fclose(m) != 0) {
		free(text);
		return -1;
	}
	o = json_pack("{s:s%,s:s%}", "account", e->account, e->account_len, "file", e->file,
		      e->file_len);
	rc = o ? 0 : -1;
	if (!rc && has_section)
		rc = json_object_set_new(o, "dict", json_boolean(e->section == SECTION_DICT));
	if (!rc && has_id)
		rc = json_object_set_new(o, "id", json_string(text));
	if (!rc && e->op == ENTRY_WRITE)
		rc = json_object_set_new(o, "body", json_string(text + strlen(text) + 1));
	if (!rc && is_export) {
		rc = json_object_set_new(o, "op", json_string(dump_op_name(e->op)));
		rc = rc ? rc : json_object_set_new(o, "seq", json_integer((json_int_t)seq));
		rc = rc ? rc : json_object_set_new(o, "time_ms", json_integer((json_int_t)e->time_ms));
		rc = rc || !has_flag ? rc : json_object_set_new(o, "flag", json_string(dump_flag(e)));
		rc = rc ? rc : json_object_set_new(o, "end", json_boolean(e->is_commit_end));
	}
	free(text);
	if (rc) {
		json_decref(o);
		return -1;
	}
	return cli_print_json(f, o);
}

int cmd_dump(struct cli *cli)
{
	const char *path = cli->args[0];
	struct save_reader *r = NULL;
	struct save_header h;
	struct us_err err;
	struct entry e;
	uint64_t seq = 0;   /* entries read */
	FILE *f;
	int rc;

	f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f)
		return cli_fail(errno == ENOENT ? EXIT_NOTFOUND : EXIT_FAIL, "cannot open %s: %s",
				path, strerror(errno));
	if (save_reader_new(&r, save_file_source, f, &h, &err)) {
		rc = cli_fail(EXIT_FAIL, "%s: %s", path, err.msg);
		goto out;
	}
	while ((rc = save_reader_next(r, &e, &err)) == 1) {
		bool is_export = h.kind == SAVE_KIND_EXPORT;

		seq++;
		if (e.op != ENTRY_WRITE && !is_export)
			continue; /* a save's declarations */
		if (dump_entry(&e, is_export, h.seq + seq, cli->is_json, stdout)) {
			rc = cli_fail(EXIT_FAIL, "cannot write to stdout: %s", strerror(errno));
			goto out;
		}
	}
	if (rc < 0) {
		fflush(stdout);
		rc = cli_fail(EXIT_FAIL, "%s: %s", path, err.msg);
		goto out;
	}
	if (fflush(stdout) != 0) {
		rc = cli_fail(EXIT_FAIL, "cannot write to stdout: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	save_reader_free(r);
	if (f != stdin)
		fclose(f);
	return rc;
}
