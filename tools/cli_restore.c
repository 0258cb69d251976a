/*
 * cli_restore.c - `understudy restore FILE --data-dir DIR [--namespace NS]`:
 * a store built from a save (docs/saves.md, "Restore"), local, no daemon.
 *
 * The store is what a collector or an archiver opens as it is: the save's
 * files with their own flags, accounts, items, at the save's position
 * (generation, seq, commit time, history chain) with an empty journal, so
 * the next commit is seq + 1. It gets a new node id (store_open makes one);
 * an archiver's copy stays bound to the save's site.
 *
 * Nothing half built is ever DIR: the store is built in a hidden sibling,
 * PARENT/.NAME.restoring-PID (hidden, so that an archiver started on
 * PARENT's data dir meanwhile never takes it for a namespace), from entries
 * loaded in batches; the save's whole-file checksum comes last
 * (save_reader_next returning 0), and only then is the position set, the
 * store closed, every file of it fsynced, the directory renamed to DIR and
 * PARENT fsynced. Every failure, and SIGINT, SIGTERM or SIGHUP, removes the
 * sibling; only a SIGKILL (or a crash) can leave one behind, which nothing
 * opens and which may be deleted. DIR must not exist or be empty: a restore
 * builds a new store, it never replaces one.
 *
 * On a terminal, stderr shows progress: items, MB read, MB/s and, when FILE
 * is a regular file (its size known), a percentage and an ETA.
 *
 * --until SEQ|TIME --journal-from ADDR: once the save is in and its position
 * set, the store is rolled forward, still in the sibling, with the journal
 * the daemon at ADDR retains for the save's namespace (Admin.ReadJournal
 * from seq + 1): its first frame must continue the save's history (the
 * chain before it equal to the save's), and its commits are applied as an
 * archiver applies a site's (store_apply_entries), up to exactly commit SEQ
 * (refused when SEQ is inside a commit), or up to the last commit whose
 * time is at or before TIME (the first commit after it stops the roll).
 * A journal that does not reach back to the save, or forward to the target,
 * is refused, and nothing is left, as for any failure.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "stream.h"
#include "disk.h"
#include "err.h"
#include "image_batch.h"
#include "names.h"
#include "save.h"
#include "store.h"
#include "understudy.h"
#include "us_limits.h"

static volatile sig_atomic_t is_interrupted; /* written by the signal handler */

static void on_signal(int sig)
{
	(void)sig;
	is_interrupted = 1;
}

/* ---- the source, counted for progress ---- */

struct restore_in {
	FILE *f;
	uint64_t bytes;          /* read so far */
	uint64_t total_bytes;    /* the file's size; 0: unknown (stdin, a pipe) */
	uint64_t items;
	bool is_progress;        /* stderr is a terminal */
	struct timespec t0, last;
};

static int counted_source(void *arg, uint8_t *p, size_t len, size_t *got, struct us_err *err)
{
	struct restore_in *in = arg;
	int rc = save_file_source(in->f, p, len, got, err);

	if (rc == 0)
		in->bytes += *got;
	return rc;
}

static double seconds_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void show_progress(struct restore_in *in, bool is_final)
{
	double s = seconds_since(&in->t0);
	double mb = (double)in->bytes / 1e6;
	double rate = s > 0 ? mb / s : 0;

	fprintf(stderr, "\rrestoring: %" PRIu64 " items, %.1f MB, %.1f MB/s", in->items, mb, rate);
	if (in->total_bytes && !is_final && in->bytes > 0 && in->bytes <= in->total_bytes) {
		double eta = s * (double)(in->total_bytes - in->bytes) / (double)in->bytes;

		fprintf(stderr, ", %.0f%%, ETA %.0f s   ",
			100.0 * (double)in->bytes / (double)in->total_bytes, eta);
	} else {
		fputs("               ", stderr);
	}
	if (is_final)
		fputc('\n', stderr);
	clock_gettime(CLOCK_MONOTONIC, &in->last);
}

/* ---- directories ---- */

/* 0 when dir does not exist or is an empty directory; else an exit code,
 * the line printed. */
static int check_target(const char *dir)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	bool is_empty = true;

	if (stat(dir, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		return cli_fail(EXIT_FAIL, "cannot restore into %s: %s", dir, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return cli_fail(EXIT_FAIL, "cannot restore into %s: it exists and is not a directory",
				dir);
	d = opendir(dir);
	if (!d)
		return cli_fail(EXIT_FAIL, "cannot restore into %s: %s", dir, strerror(errno));
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			is_empty = false;
			break;
		}
	closedir(d);
	if (!is_empty)
		return cli_fail(EXIT_FAIL,
				"cannot restore into %s: it is not empty (a restore builds a new "
				"store, it never replaces one: give a new or empty directory)",
				dir);
	return 0;
}

/* fsync of one path (a file or a directory); 0 or -1 (errno). */
static int sync_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_F)
		return disk_sync_path(path, false, NULL) ? -1 : 0;
	if (flag == FTW_DP)
		return disk_sync_path(path, true, NULL) ? -1 : 0;
	return 0; /* a symlink or the like: RocksDB makes none */
}

/* Makes every file of dir, and dir itself, durable. 0 or -1 (errno). */
static int sync_tree(const char *dir)
{
	return nftw(dir, sync_one, 16, FTW_DEPTH | FTW_PHYS) != 0 ? -1 : 0;
}

/* ---- restore ---- */

struct restore {
	const char *path;          /* the save as named ("-": stdin) */
	char dir[PATH_MAX];        /* --data-dir, without trailing slashes */
	char parent[PATH_MAX];
	char tmp[2 * PATH_MAX + 64]; /* the sibling being built; "" when none to remove */
	const char *ns;            /* the namespace restored (--namespace, else the save's) */
	struct save_header h;
	struct save_summary sum;
	struct restore_in in;
	struct save_reader *r;
	struct store *store;
	struct image_batch *batch;
	char node_id[64];
	/* --until */
	bool is_until_time;
	uint64_t until_seq, until_ms;  /* the target: a seq, or a time */
	uint64_t next_seq;             /* the roll's next seq */
	uint64_t rolled_seq;           /* the last commit applied (the save's seq: none) */
	uint64_t rolled_ms;            /* its commit time */
	uint64_t journal_last_seq;     /* the last seq the journal held */
	bool is_done_rolling;          /* the target is reached */
	bool is_roll_told;             /* roll_frame printed why it stopped */
	struct stream_frame frame;
	/* rebuild: the store follows this primary as the site the save names */
	const struct store_primary_info *follow;
};

/* Splits cli's --data-dir into dir and parent, checks both. 0 or an exit
 * code, the line printed. */
static int prepare_dirs(struct restore *rs, const char *data_dir)
{
	size_t len = strlen(data_dir);
	const char *slash;
	struct stat st;
	int rc;

	while (len > 1 && data_dir[len - 1] == '/')
		len--;
	if (len == 0 || len >= sizeof(rs->dir) - 64)
		return cli_fail(EXIT_USAGE, "--data-dir wants a directory's path, not '%s'", data_dir);
	memcpy(rs->dir, data_dir, len);
	rs->dir[len] = '\0';
	if ((rc = check_target(rs->dir)))
		return rc;
	slash = strrchr(rs->dir, '/');
	if (!slash)
		snprintf(rs->parent, sizeof(rs->parent), ".");
	else if (slash == rs->dir)
		snprintf(rs->parent, sizeof(rs->parent), "/");
	else
		snprintf(rs->parent, sizeof(rs->parent), "%.*s", (int)(slash - rs->dir), rs->dir);
	if (stat(rs->parent, &st) != 0)
		return cli_fail(EXIT_FAIL, "cannot restore into %s: its parent directory %s: %s",
				rs->dir, rs->parent, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return cli_fail(EXIT_FAIL,
				"cannot restore into %s: its parent %s is not a directory", rs->dir,
				rs->parent);
	return 0;
}

/* Reads every entry into the store in the sibling, batch by batch, up to the
 * end of the save (its checksum checked). 0 or an exit code, printed. */
static int load_all(struct restore *rs)
{
	struct us_err err;
	struct entry e;
	int rc;

	while ((rc = save_reader_next(rs->r, &e, &err)) == 1) {
		if (is_interrupted)
			break;
		if (e.op == ENTRY_WRITE)
			rs->in.items++;
		if (image_batch_add(rs->batch, &e))
			return cli_fail(EXIT_FAIL, "cannot restore %s: out of memory", rs->path);
		if (image_batch_is_full(rs->batch) &&
		    (rc = image_batch_load(rs->batch, rs->store, &err)))
			return cli_fail(EXIT_FAIL, "cannot restore %s into %s: %s", rs->path, rs->tmp,
					err.msg);
		if (rs->in.is_progress && seconds_since(&rs->in.last) >= 0.5)
			show_progress(&rs->in, false);
	}
	if (is_interrupted)
		return cli_fail(EXIT_FAIL, "restore of %s interrupted: nothing kept", rs->path);
	if (rc < 0)
		return cli_fail(EXIT_FAIL, "%s: %s", rs->path, err.msg);
	if (image_batch_load(rs->batch, rs->store, &err))
		return cli_fail(EXIT_FAIL, "cannot restore %s into %s: %s", rs->path, rs->tmp,
				err.msg);
	rs->sum = *save_reader_summary(rs->r);
	return 0;
}

/* --until's value: digits are a seq, else a UTC time
 * YYYY-MM-DDTHH:MM:SS[.mmm][Z]. 0 or an exit code, printed. */
static int parse_until(struct restore *rs, const char *v)
{
	struct tm tm;
	const char *end;
	unsigned ms = 0;

	if (v[0] >= '0' && v[0] <= '9' && strspn(v, "0123456789") == strlen(v)) {
		errno = 0;
		rs->until_seq = strtoull(v, NULL, 10);
		if (errno || rs->until_seq == 0 || rs->until_seq > US_SEQ_MAX)
			return cli_fail(EXIT_USAGE, "--until %s: not a seq", v);
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(v, "%Y-%m-%dT%H:%M:%S", &tm);
	if (end && *end == '.') {
		char *e2;

		ms = (unsigned)strtoul(end + 1, &e2, 10);
		if (e2 != end + 4 || ms > 999)
			end = NULL;
		else
			end = e2;
	}
	if (end && *end == 'Z')
		end++;
	if (!end || *end)
		return cli_fail(EXIT_USAGE,
				"--until wants a seq or a UTC time like 2026-12-03T12:00:00Z, not '%s'",
				v);
	rs->is_until_time = true;
	rs->until_ms = (uint64_t)timegm(&tm) * 1000 + ms;
	return 0;
}

/* One journal frame of the roll forward (us_journal_fn). */
static int roll_frame(void *arg, uint64_t first_seq, uint32_t count, uint32_t raw_len,
		      const uint8_t *block, size_t block_len, uint64_t prev_chain)
{
	struct restore *rs = arg;
	struct store_position pos;
	struct stream_frame *f = &rs->frame;
	struct us_err err;
	size_t n = 0;

	if (is_interrupted)
		return US_ECANCELLED;
	if (rs->is_done_rolling)
		return 1; /* stop the read: the rest is not wanted */
	if (first_seq != rs->next_seq) {
		rs->is_roll_told = true;
		cli_fail(0, "the journal of %s jumps to seq %" PRIu64 " where %" PRIu64 " was due",
			 rs->h.ns, first_seq, rs->next_seq);
		return US_ECORRUPT;
	}
	store_get_position(rs->store, &pos);
	if (prev_chain != pos.chain) {
		rs->is_roll_told = true;
		cli_fail(0, "the journal of %s does not continue this save's history at seq %" PRIu64
			    " (another site's, or a copy since replaced): nothing restored",
			 rs->h.ns, first_seq - 1);
		return US_EPRECOND;
	}
	if (stream_decode_entries(first_seq, count, raw_len, block, block_len, f, &err)) {
		rs->is_roll_told = true;
		cli_fail(0, "a journal frame of %s: %s", rs->h.ns, err.msg);
		return US_ECORRUPT;
	}
	/* the whole commits up to the target (a frame holds whole commits) */
	for (size_t i = 0, start = 0; i < f->n; i++) {
		const struct entry *e = &f->entries[i];
		uint64_t seq = first_seq + i;

		if (i == start && rs->is_until_time && e->time_ms > rs->until_ms) {
			rs->is_done_rolling = true;
			break;
		}
		if (!e->is_commit_end)
			continue;
		if (!rs->is_until_time && seq > rs->until_seq) {
			rs->is_roll_told = true;
		cli_fail(0, "--until %" PRIu64 " is inside a commit of %s (seqs %" PRIu64
				    "..%" PRIu64 "): give its last seq, or the one before its first",
				 rs->until_seq, rs->h.ns, first_seq + start, seq);
			return US_EINVAL;
		}
		n = i + 1;
		start = i + 1;
		rs->rolled_ms = e->time_ms;
		if (!rs->is_until_time && seq == rs->until_seq) {
			rs->is_done_rolling = true;
			break;
		}
	}
	rs->journal_last_seq = first_seq + f->n - 1;
	if (n && store_apply_entries(rs->store, first_seq, f->entries, n, NULL, 0, false, &err)) {
		rs->is_roll_told = true;
		cli_fail(0, "cannot apply the journal of %s at seq %" PRIu64 ": %s", rs->h.ns,
			 first_seq, err.msg);
		return US_EIO;
	}
	rs->next_seq = first_seq + n;
	if (n)
		rs->rolled_seq = first_seq + n - 1;
	return 0;
}

/* Rolls the store forward to --until with the journal at --journal-from.
 * 0 or an exit code, printed. */
static int roll_forward(struct restore *rs, const struct cli *cli)
{
	us_client_t *c;
	us_err_t err;
	uint64_t durable;
	int rc;

	if (rs->h.scope_account[0])
		return cli_fail(EXIT_FAIL, "--until: %s is a save of %s%s%s only, and a journal rolls "
					   "the whole namespace forward: restore a whole save",
				rs->path, rs->h.scope_account, rs->h.scope_file[0] ? "/" : "",
				rs->h.scope_file);
	if (!rs->is_until_time && rs->until_seq < rs->h.seq)
		return cli_fail(EXIT_FAIL, "--until %" PRIu64 ": the save is past it already (it is at "
					   "seq %" PRIu64 "): restore an older save",
				rs->until_seq, rs->h.seq);
	if (rs->is_until_time && rs->until_ms < rs->h.time_ms)
		return cli_fail(EXIT_FAIL, "--until %s: the save is past it already (its last commit, "
					   "seq %" PRIu64 ", is later): restore an older save",
				cli->until, rs->h.seq);
	rs->next_seq = rs->h.seq + 1;
	rs->rolled_seq = rs->h.seq;
	rs->rolled_ms = rs->h.time_ms;
	if (!rs->is_until_time && rs->until_seq == rs->h.seq)
		return 0; /* there already */
	c = us_client_new(cli->journal_from, NULL, &err);
	if (!c)
		return cli_fail(EXIT_FAIL, "--journal-from %s: %s", cli->journal_from, err.msg);
	stream_frame_init(&rs->frame);
	err_clear(&err);
	rc = us_read_journal(c, rs->h.ns, rs->h.seq + 1, roll_frame, rs, &err);
	stream_frame_release(&rs->frame);
	us_client_free(c);
	if (rc == 1)
		rc = 0; /* stopped at the target */
	if (rc == US_ERANGE)
		return cli_fail(EXIT_FAIL, "cannot roll %s forward from the save (seq %" PRIu64
					   "): %s", rs->h.ns, rs->h.seq, err.msg);
	if (rc && rs->is_roll_told)
		return EXIT_FAIL; /* roll_frame said why */
	if (rc && is_interrupted)
		return cli_fail(EXIT_FAIL, "restore of %s interrupted: nothing kept", rs->path);
	if (rc)
		return cli_fail(EXIT_FAIL, "--journal-from %s: %s", cli->journal_from,
				err.msg[0] ? err.msg : us_strerror(rc));
	if (!rs->is_until_time && rs->rolled_seq != rs->until_seq)
		return cli_fail(EXIT_FAIL, "--until %" PRIu64 ": the journal of %s at %s reaches "
					   "only seq %" PRIu64 ": nothing restored",
				rs->until_seq, rs->h.ns, cli->journal_from,
				rs->journal_last_seq > rs->h.seq ? rs->journal_last_seq : rs->h.seq);
	if (store_sync(rs->store, &durable, &err))
		return cli_fail(EXIT_FAIL, "cannot restore %s: %s", rs->path, err.msg);
	return 0;
}

/* The whole save is in: the position, the site, then the store made
 * durable and renamed to DIR. 0 or an exit code, printed. */
static int finish(struct restore *rs, const struct cli *cli)
{
	struct store_position pos = {.generation = rs->h.generation, .seq = rs->h.seq,
				     .time_ms = rs->h.time_ms, .chain = rs->h.chain};
	struct us_err err;

	if (store_set_position(rs->store, &pos, &err))
		return cli_fail(EXIT_FAIL, "cannot restore %s: %s", rs->path, err.msg);
	/* an archiver's copy stays bound to the site whose history it is */
	if (rs->h.site[0] && store_bind_site(rs->store, rs->h.site, &err))
		return cli_fail(EXIT_FAIL, "cannot restore %s: %s", rs->path, err.msg);
	if (cli->until) {
		int rc = roll_forward(rs, cli);

		if (rc)
			return rc;
	}
	/* rebuild: the site the save's history is, following its primary */
	if (rs->follow && !rs->h.site[0])
		return cli_fail(EXIT_FAIL, "cannot rebuild from %s: the save names no site", rs->path);
	if (rs->follow && store_follow(rs->store, rs->h.site, rs->follow, &err))
		return cli_fail(EXIT_FAIL, "cannot rebuild from %s: %s", rs->path, err.msg);
	snprintf(rs->node_id, sizeof(rs->node_id), "%s", store_node_id(rs->store));
	store_close(rs->store);
	rs->store = NULL;
	if (sync_tree(rs->tmp) != 0)
		return cli_fail(EXIT_FAIL, "cannot sync %s: %s", rs->tmp, strerror(errno));
	if (is_interrupted)
		return cli_fail(EXIT_FAIL, "restore of %s interrupted: nothing kept", rs->path);
	/* onto DIR when it is an empty directory (rename(2) replaces one), and
	 * refused if something appeared in it since it was checked */
	if (rename(rs->tmp, rs->dir) != 0)
		return cli_fail(EXIT_FAIL, "cannot rename %s to %s: %s", rs->tmp, rs->dir,
				errno == ENOTEMPTY || errno == EEXIST
					? "it is no longer empty"
					: strerror(errno));
	rs->tmp[0] = '\0'; /* DIR now: never removed */
	if (disk_sync_path(rs->parent, true, &err) != 0)
		return cli_fail(EXIT_FAIL, "restored into %s, but %s", rs->dir, err.msg);
	return 0;
}

static int print_result(struct cli *cli, struct restore *rs)
{
	bool is_renamed = strcmp(rs->ns, rs->h.ns) != 0;
	char scope[US_ACCOUNT_MAX_LEN + US_FILE_MAX_LEN + 64] = "";
	char rolled[2200] = "";
	uint64_t seq = cli->until ? rs->rolled_seq : rs->h.seq;
	uint64_t time_ms = cli->until ? rs->rolled_ms : rs->h.time_ms;

	if (cli->is_json) {
		json_t *o = json_pack(
			"{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:s,s:s,s:s,s:s,s:I}", "namespace", rs->ns,
			"saved_namespace", rs->h.ns, "path", rs->path, "data_dir", rs->dir,
			"generation", (json_int_t)rs->h.generation, "seq", (json_int_t)seq, "time_ms",
			(json_int_t)time_ms, "items", (json_int_t)rs->sum.items, "files",
			(json_int_t)rs->sum.files, "scope_account", rs->h.scope_account, "scope_file",
			rs->h.scope_file, "node_id", rs->node_id, "site", rs->h.site, "save_seq",
			(json_int_t)rs->h.seq);

		if (o && cli->journal_from)
			json_object_set_new(o, "journal_from", json_string(cli->journal_from));
		return cli_print_json(stdout, o);
	}
	if (rs->h.scope_file[0])
		snprintf(scope, sizeof(scope), " (a scoped save: only %s/%s)", rs->h.scope_account,
			 rs->h.scope_file);
	else if (rs->h.scope_account[0])
		snprintf(scope, sizeof(scope), " (a scoped save: only account %s)",
			 rs->h.scope_account);
	if (cli->until)
		snprintf(rolled, sizeof(rolled),
			 ", rolled forward from the save's seq %" PRIu64 " with the journal of %s",
			 rs->h.seq, cli->journal_from);
	printf("restored %s%s%s%s at seq %" PRIu64 " (generation %" PRIu64 "): %" PRIu64
	       " items in %" PRIu64 " files%s%s into %s\n",
	       rs->ns, is_renamed ? " (saved as " : "", is_renamed ? rs->h.ns : "",
	       is_renamed ? ")" : "", seq, rs->h.generation, rs->sum.items, rs->sum.files,
	       scope, rolled, rs->dir);
	return fflush(stdout) != 0
		       ? cli_fail(EXIT_FAIL, "cannot write to stdout: %s", strerror(errno))
		       : 0;
}

static int restore_run(struct cli *cli, const struct store_primary_info *follow)
{
	struct restore *rs;
	struct sigaction sa, old_int, old_term, old_hup;
	struct us_err err;
	struct stat st;
	int rc;

	if (!cli->data_dir)
		return cli_fail(EXIT_USAGE, "restore needs --data-dir DIR (a new or empty directory)");
	if (!cli->until != !cli->journal_from)
		return cli_fail(EXIT_USAGE, "--until and --journal-from go together: roll forward to "
					    "SEQ or TIME with the journal the daemon at ADDR keeps");
	if (cli->ns && names_check_namespace(cli->ns, strlen(cli->ns), &err))
		return cli_fail(EXIT_USAGE, "--namespace: %s", err.msg);
	rs = calloc(1, sizeof(*rs));
	if (!rs)
		return cli_fail(EXIT_FAIL, "cannot restore: out of memory");
	rs->path = cli->args[0];
	rs->follow = follow;
	if (cli->until && (rc = parse_until(rs, cli->until)))
		goto out_free;
	if ((rc = prepare_dirs(rs, cli->data_dir)))
		goto out_free;

	rs->in.f = strcmp(rs->path, "-") == 0 ? stdin : fopen(rs->path, "rb");
	if (!rs->in.f) {
		rc = cli_fail(errno == ENOENT ? EXIT_NOTFOUND : EXIT_FAIL, "cannot open %s: %s",
			      rs->path, strerror(errno));
		goto out_free;
	}
	if (fstat(fileno(rs->in.f), &st) == 0 && S_ISREG(st.st_mode))
		rs->in.total_bytes = (uint64_t)st.st_size;
	rs->in.is_progress = isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &rs->in.t0);
	rs->in.last = rs->in.t0;
	/* the header first: a file that is no save leaves nothing, not even
	 * for a moment */
	if (save_reader_new(&rs->r, counted_source, &rs->in, &rs->h, &err)) {
		rc = cli_fail(EXIT_FAIL, "%s: %s", rs->path, err.msg);
		goto out_file;
	}
	rs->ns = cli->ns ? cli->ns : rs->h.ns;
	rs->batch = image_batch_new();
	if (!rs->batch) {
		rc = cli_fail(EXIT_FAIL, "cannot restore: out of memory");
		goto out_reader;
	}

	/* From here on a signal removes what was built (the handlers are the
	 * process's until it exits: nothing else runs after a command). */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);

	{
		const char *base = strrchr(rs->dir, '/');

		base = base ? base + 1 : rs->dir;
		snprintf(rs->tmp, sizeof(rs->tmp), "%s/.%s.restoring-%ld", rs->parent, base,
			 (long)getpid());
	}
	if (mkdir(rs->tmp, 0755) != 0) {
		rc = cli_fail(EXIT_FAIL, "cannot create %s: %s", rs->tmp, strerror(errno));
		rs->tmp[0] = '\0'; /* not ours to remove */
		goto out_signals;
	}
	/* a standby of the save's history while it loads and rolls forward;
	 * whoever opens DIR later decides its role there */
	if (store_open(&rs->store, rs->tmp, &(struct store_opts){.role = ROLE_STANDBY}, &err)) {
		rc = cli_fail(EXIT_FAIL, "cannot restore %s: %s", rs->path, err.msg);
		goto out_tmp;
	}
	if ((rc = load_all(rs)) || (rc = finish(rs, cli)))
		goto out_tmp;
	if (rs->in.is_progress)
		show_progress(&rs->in, true);
	rc = print_result(cli, rs);

out_tmp:
	if (rc && rs->in.is_progress)
		fputc('\n', stderr);
	store_close(rs->store);
	if (rs->tmp[0] && disk_rmtree(rs->tmp) != 0)
		cli_fail(EXIT_FAIL, "and cannot remove %s: %s", rs->tmp, strerror(errno));
out_signals:
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	image_batch_free(rs->batch);
out_reader:
	save_reader_free(rs->r);
out_file:
	if (rs->in.f != stdin)
		fclose(rs->in.f);
out_free:
	free(rs);
	return rc;
}

int cmd_restore(struct cli *cli)
{
	return restore_run(cli, NULL);
}

/* ---- rebuild ---- */

static int rebuild_sink(void *arg, const uint8_t *data, size_t len, uint64_t items)
{
	(void)items;
	return fwrite(data, 1, len, arg) == len ? 0 : -1;
}

/* `understudy --addr ARCHIVER rebuild NS --data-dir DIR`: a site whose store
 * was lost, built again from a full copy of its namespace's primary (the
 * archiver, after a promote): the archiver's save of NS, streamed to a
 * hidden file next to DIR, restored into DIR as restore does, and made the
 * namespace's site following that primary (store_follow): a collector
 * started on DIR pulls from it, and can be switched over to. */
int cmd_rebuild(struct cli *cli)
{
	const char *ns = cli->args[0];
	struct store_primary_info pi;
	struct cli rc_cli = *cli;
	us_status_t *st = NULL;
	us_saved_t saved;
	us_err_t err;
	char tmp[PATH_MAX + 64];
	const us_ns_status_t *n = NULL;
	FILE *f;
	int rc;

	if (!cli->data_dir)
		return cli_fail(EXIT_USAGE, "rebuild needs --data-dir DIR (a new or empty directory)");
	if (names_check_namespace(ns, strlen(ns), &err))
		return cli_fail(EXIT_USAGE, "%s", err.msg);
	if (us_status(cli->client, &st, &err))
		return cli_fail_err(&err);
	for (size_t i = 0; strcmp(st->node, "archiver") == 0 && i < st->n_namespaces; i++)
		if (strcmp(st->namespaces[i].ns, ns) == 0)
			n = &st->namespaces[i];
	if (!n || strcmp(n->role, "primary") != 0) {
		rc = cli_fail(n || strcmp(st->node, "archiver") != 0 ? EXIT_FAIL : EXIT_NOTFOUND,
			      "%s: %s", cli->addr,
			      strcmp(st->node, "archiver") != 0
				      ? "not an archiver: rebuild takes a site's copy from the archiver "
					"its namespace was promoted on"
				      : !n ? "no such namespace here"
					   : "the namespace is not primary here: rebuild is for a site "
					     "whose namespace was promoted on the archiver (a standby "
					     "copy is seeded by its site)");
		us_status_free(st);
		return rc;
	}
	memset(&pi, 0, sizeof(pi));
	snprintf(pi.addr, sizeof(pi.addr), "%s", cli->addr);
	pi.generation = n->generation;
	pi.first_seq = n->generation_first_seq;
	us_status_free(st);
	snprintf(tmp, sizeof(tmp), "%s.rebuild-%ld.save", cli->data_dir, (long)getpid());
	f = fopen(tmp, "wb");
	if (!f)
		return cli_fail(EXIT_FAIL, "cannot create %s: %s", tmp, strerror(errno));
	rc = us_save(cli->client, ns, &(us_save_opts_t){0}, rebuild_sink, f, &saved, &err);
	if (fclose(f) != 0 && rc == 0)
		rc = err_set(&err, US_EIO, "cannot write %s: %s", tmp, strerror(errno));
	if (rc) {
		unlink(tmp);
		return cli_fail_err(&err);
	}
	rc_cli.args[0] = tmp;
	rc_cli.ns = ns;
	rc = restore_run(&rc_cli, &pi);
	unlink(tmp);
	if (rc == 0 && !cli->is_json)
		printf("%s is the site of %s again, following its primary %s (generation %" PRIu64
		       ", seq %" PRIu64 "): start its collector on it, then switch over\n",
		       cli->data_dir, ns, pi.addr, pi.generation, saved.seq);
	return rc;
}
