/*
 * understudy-collector - a site's database server.
 *
 * Threads
 *   main         parses the config, opens the store, starts the others, then
 *                waits in sigwait() for SIGTERM/SIGINT (both blocked in every
 *                thread, so no signal handler runs anywhere) and shuts down.
 *   us-rpc-N     gRPC workers (lib/rpc.c), one completion queue each; they run
 *                the Store and Admin handlers, which never block.
 *   us-writer    the committer (lib/committer.c): the only writer of the store.
 *   us-link-N    the stream to archiver N (lib/repl_send.c, the sending end),
 *                its hooks here: acks to the guard, Fenced to the store.
 *   us-guard     the loss bound's timers (guard.c); us-retention trims the
 *                journal the archivers have (retention.c).
 *   us-snapreap  ends idle snapshots (lib/snapshots.c).
 *   us-save      one per streamed save (lib/save_service.c), at nice 10.
 *   us-query     one per report (Store.Query, lib/query_service.c), at nice 10,
 *                at most 8; a COUNT or a sort reads with a second thread
 *                of the same priority (lib/pick_exec.c).
 *   us-follow    once the site is fenced, rejoining or standby: its rejoin
 *                (export, rewind) and then the pull from its primary
 *                (lib/repl_follow.c), applying into the store, the other
 *                writer of it while the site is not primary (the committer
 *                then takes no commit: the store refuses them).
 *   us-rejoin    one per Admin.Rejoin while it waits (admin_service.c).
 *   (RocksDB and gRPC run threads of their own.)
 *
 * State: one struct collector (collector.h), filled by main before any thread
 * starts and read-only afterwards, but for the follower (started by main, or
 * by the first link told of a fence; follow_lock) and is_stopping; the
 * store's position and role are guarded inside the store, the commit queue
 * inside the committer.
 *
 * An application's commit: client -> gRPC -> us-rpc-N: Store.Commit decodes,
 * checks the namespace, queues the commit -> us-writer takes every queued
 * commit, validates each against the catalog, builds one RocksDB write batch
 * (items + journal entries + new position), writes it with sync (one fsync for
 * the whole group) -> calls each commit's done callback, which answers its gRPC
 * call with the commit's seq range. Nothing is acknowledged before it is synced.
 *
 * SIGTERM: stop accepting calls, let calls in flight finish (5 s grace, then
 * cancel), drain the commit queue, close the store, exit 0. SIGKILL loses
 * nothing acknowledged: every acknowledged commit was synced first.
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector.h"
#include "log.h"
#include "names.h"
#include "journal_service.h"
#include "save_service.h"

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const commit_modes[] = {"async", "sync", NULL};
static const char *const fallbacks[] = {"block", "async", NULL};
static const char *const rejoin_modes[] = {"auto", "manual", NULL};

static int check_ns_value(const char *v, struct us_err *err)
{
	return names_check_namespace(v, strlen(v), err);
}

static int check_disk_reserve(const char *v, struct us_err *err)
{
	struct disk_reserve r;

	return disk_parse_reserve(v, &r, err);
}

#define F(x) offsetof(struct collector_config, x)
static const struct config_key collector_keys[] = {
	{"namespace", CFG_STRING, F(ns), sizeof(((struct collector_config *)0)->ns),
	 US_DEFAULT_NAMESPACE, 0, 0, NULL, check_ns_value, "the site's namespace"},
	{"listen", CFG_STRING, F(listen), sizeof(((struct collector_config *)0)->listen),
	 US_DEFAULT_COLLECTOR_ADDR, 0, 0, NULL, NULL, "gRPC address HOST:PORT"},
	{"data_dir", CFG_STRING, F(data_dir), sizeof(((struct collector_config *)0)->data_dir),
	 US_DEFAULT_COLLECTOR_DATA_DIR, 0, 0, NULL, NULL, "the store's directory"},
	{"max_body", CFG_SIZE, F(max_body), 0, "16MiB", 0, US_BODY_MAX_BYTES, NULL, NULL,
	 "largest item body accepted"},
	{"rpc_threads", CFG_UINT, F(rpc_threads), 0, "2", 1, 64, NULL, NULL,
	 "gRPC worker threads"},
	{"log_level", CFG_ENUM, F(log_level), 0, "info", 0, 0, log_levels, NULL,
	 "error, warn, info or debug"},
	{"syslog", CFG_BOOL, F(is_syslog), 0, "off", 0, 0, NULL, NULL,
	 "also log to syslog"},
	{"archiver", CFG_LIST, F(archivers), 0, NULL, 0, 0, NULL, NULL,
	 "archiver HOST:PORT to stream the journal to (repeat, or comma-separate, for several)"},
	{"heartbeat_interval", CFG_DURATION, F(heartbeat_ms), 0, "1s", 10, 3600000, NULL, NULL,
	 "heartbeat to each archiver when idle this long"},
	{"commit", CFG_ENUM, F(commit_mode), 0, "async", 0, 0, commit_modes, NULL,
	 "async (answer once durable here) or sync (once durable on an archiver too)"},
	{"rejoin", CFG_ENUM, F(rejoin_mode), 0, "auto", 0, 0, rejoin_modes, NULL,
	 "once superseded (fenced): auto rejoins the primary at once (export of this site's "
	 "own tail, rewind, follow); manual waits for `understudy rejoin`"},
	{"max_lag", CFG_DURATION, F(max_lag_ms), 0, "5m", 0, 0, NULL, NULL,
	 "async: commits wait, then fail UNAVAILABLE, rather than leave updates older than "
	 "this unshipped (0: no bound)"},
	{"sync_timeout", CFG_DURATION, F(sync_timeout_ms), 0, "5s", 1, 0, NULL, NULL,
	 "how long a commit waits for the archivers: for an ack (sync), for the lag to fall "
	 "under max_lag (async)"},
	{"journal_retention", CFG_DURATION, F(journal_retention_ms), 0, "24h", 0, 0, NULL, NULL,
	 "how long journal no archiver still needs is kept"},
	{"journal_max", CFG_UINT, F(journal_max), 0, "10000000", 1000, 0, NULL, NULL,
	 "most journal entries kept for an archiver that lags; past it, it takes a full copy"},
	{"sync_fallback", CFG_ENUM, F(sync_fallback), 0, "block", 0, 0, fallbacks, NULL,
	 "sync: after sync_timeout without an ack, keep waiting (block) or answer as async"},
	{"disk_reserve", CFG_STRING, F(disk_reserve_text),
	 sizeof(((struct collector_config *)0)->disk_reserve_text), DISK_RESERVE_DEFAULT, 0, 0,
	 NULL, check_disk_reserve,
	 "free space kept on the data dir's disk: a size and/or a percentage, the smaller "
	 "applies (0: none); below it, commits are refused with RESOURCE_EXHAUSTED"},
	{"snapshot_ttl", CFG_DURATION, F(snapshot_ttl_ms), 0, "10m", 100, 604800000, NULL, NULL,
	 "a snapshot (understudy snapshot) ends after this long without a read"},
	{"max_snapshots", CFG_UINT, F(max_snapshots), 0, "64", 1, US_SNAPSHOTS_MAX_PER_NS, NULL,
	 NULL, "most snapshots open at once in one namespace"},
	{"save_max_rate", CFG_SIZE, F(save_max_rate), 0, "0", 0, 0, NULL, NULL,
	 "bytes a second a save may read and send, per save (0: no bound), to leave CPU and "
	 "disk to the stream and the commits"},
};
#undef F

static const struct config_schema collector_schema = {
	.keys = collector_keys,
	.n_keys = sizeof(collector_keys) / sizeof(collector_keys[0]),
};

/* The Store service's namespace lookup: this collector serves one. */
static int acquire_ns(void *arg, const char *ns, bool is_write, struct ns_handle *h,
		      struct us_err *err)
{
	struct collector *col = arg;

	if (strcmp(ns, col->cfg.ns) != 0)
		return err_set(err, US_EPRECOND,
			       "namespace %s is not served here: this collector serves %s", ns,
			       col->cfg.ns);
	h->store = col->store;
	h->committer = is_write ? col->committer : NULL;
	return 0;
}

/* Store service hooks: the loss bound (guard.h). */
static void admit_commit(void *arg, struct ns_handle *h,
			 void (*go)(void *ctx, int rc, const struct us_err *err), void *ctx)
{
	struct collector *col = arg;

	(void)h;
	/* not primary: the store refuses it, naming the role; the loss bound
	 * is a primary's */
	if (store_role(col->store) != ROLE_PRIMARY) {
		go(ctx, 0, NULL);
		return;
	}
	guard_admit(col->guard, go, ctx);
}

static void await_ack(void *arg, struct ns_handle *h, uint64_t last_seq,
		      void (*reply)(void *ctx, int rc, const struct us_err *err), void *ctx)
{
	struct collector *col = arg;

	(void)h;
	guard_await(col->guard, last_seq, reply, ctx);
}

static void on_acked(void *arg, uint64_t durable_seq)
{
	struct collector *col = arg;

	guard_acked(col->guard, durable_seq);
}

/* A link was told this site was superseded: no commit is taken from now on
 * (the role is kept across restarts). */
static void on_fenced(void *arg, uint64_t generation, uint64_t first_seq, const char *primary)
{
	struct collector *col = arg;
	struct store_primary_info p;
	struct store_position pos;
	struct us_err err;

	store_get_position(col->store, &pos);
	if (generation <= pos.generation) {
		log_warn("ns=%s event=fence_ignored primary=%s generation=%llu "
			 "reason=\"not newer than this site's generation %llu\"",
			 col->cfg.ns, primary, (unsigned long long)generation,
			 (unsigned long long)pos.generation);
		return;
	}
	if (store_role(col->store) == ROLE_FENCED)
		return;
	memset(&p, 0, sizeof(p));
	snprintf(p.addr, sizeof(p.addr), "%s", primary);
	p.generation = generation;
	p.first_seq = first_seq;
	if (store_fence(col->store, &p, &err)) {
		log_error("ns=%s event=fence_failed primary=%s reason=\"%s\"", col->cfg.ns, primary,
			  err.msg);
		return;
	}
	log_warn("ns=%s event=fenced primary=%s generation=%llu first_seq=%llu "
		 "reason=\"superseded: no commits here until this site rejoins\"",
		 col->cfg.ns, primary, (unsigned long long)generation,
		 (unsigned long long)first_seq);
	if (col->cfg.rejoin_mode == 0 && collector_start_follower(col, &err))
		log_error("ns=%s event=follower_failed reason=\"%s\"", col->cfg.ns, err.msg);
}

/* A switchover made this site the primary: its links stream again now. */
static void on_took_over(void *arg)
{
	struct collector *col = arg;
	struct store_position pos;

	store_get_position(col->store, &pos);
	guard_acked(col->guard, pos.seq);
	for (size_t i = 0; i < col->n_links; i++)
		repl_sender_notify(col->links[i], pos.seq);
}

/* What a following site applied came from its primary, which holds it
 * durably: nothing of it is this site's to ship (the loss bound). */
static void on_applied(void *arg, uint64_t seq)
{
	struct collector *col = arg;

	guard_acked(col->guard, seq);
}

int collector_start_follower(struct collector *col, struct us_err *err)
{
	struct repl_follower_opts o = {.store = col->store, .ns = col->cfg.ns,
				       .export_dir = col->export_dir,
				       .heartbeat_ms = col->cfg.heartbeat_ms,
				       .addr = col->cfg.listen,
				       .on_event = log_event_line, .on_took_over = on_took_over,
				       .on_applied = on_applied,
				       .arg = col};
	int rc = 0;

	if (store_role(col->store) == ROLE_PRIMARY)
		return 0;
	pthread_mutex_lock(&col->follow_lock);
	if (!col->is_stopping && !col->follower) /* none once shutting down */
		rc = repl_follower_new(&col->follower, &o, err);
	else if (col->follower)
		repl_follower_kick(col->follower); /* fenced again: rejoin now */
	pthread_mutex_unlock(&col->follow_lock);
	return rc;
}

/* Committer hook: new journal entries; wake every link. */
static void on_written(void *arg, uint64_t last_seq)
{
	struct collector *col = arg;

	for (size_t i = 0; i < col->n_links; i++)
		repl_sender_notify(col->links[i], last_seq);
}

static int start_links(struct collector *col, struct us_err *err)
{
	int rc;

	if (col->cfg.archivers.n == 0)
		return 0;
	col->links = calloc(col->cfg.archivers.n, sizeof(*col->links));
	if (!col->links)
		return err_set(err, US_ENOMEM, "out of memory");
	col->sender_ops =
		(struct repl_sender_ops){.on_acked = on_acked, .on_fenced = on_fenced,
					 .on_event = log_event_line, .arg = col};
	for (size_t i = 0; i < col->cfg.archivers.n; i++) {
		struct repl_sender_opts o = {.addr = col->cfg.archivers.v[i], .ns = col->cfg.ns,
					     .store = col->store,
					     .heartbeat_ms = col->cfg.heartbeat_ms, .index = (int)i,
					     .ops = &col->sender_ops};

		if ((rc = repl_sender_new(&col->links[i], &o, err)))
			return err_wrap(err, "archiver %s", col->cfg.archivers.v[i]);
		col->n_links++;
	}
	committer_on_written(col->committer, on_written, col);
	return 0;
}

static int start_retention(struct collector *col, struct us_err *err)
{
	struct retention_opts o = {.store = col->store, .links = col->links,
				   .n_links = col->n_links,
				   .retention_ms = col->cfg.journal_retention_ms,
				   .journal_max = col->cfg.journal_max, .ns = col->cfg.ns};

	return retention_new(&col->retention, &o, err);
}

static void stop_links(struct collector *col)
{
	for (size_t i = 0; i < col->n_links; i++)
		repl_sender_free(col->links[i]);
	free(col->links);
	col->links = NULL;
	col->n_links = 0;
}

/* Stops the follower for good: a link told of a fence from now on starts
 * none. */
static void stop_follower(struct collector *col)
{
	struct repl_follower *f;

	pthread_mutex_lock(&col->follow_lock);
	col->is_stopping = true;
	f = col->follower;
	col->follower = NULL;
	pthread_mutex_unlock(&col->follow_lock);
	repl_follower_free(f);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: understudy-collector [--config FILE] [--help]\n"
		   "A site's database server: serves the Store and Admin gRPC services.\n"
		   "With no --config it runs on embedded defaults. Config keys:\n");
	config_print_help(&collector_schema, f);
}

int main(int argc, char **argv)
{
	struct collector col;
	const char *config_path = NULL;
	struct rpc_method methods[US_RPC_METHODS_MAX];
	size_t n_methods = 0;
	sigset_t sigs;
	struct us_err err;
	int sig = 0;
	int rc = 1;

	memset(&col, 0, sizeof(col));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else {
			fprintf(stderr, "understudy-collector: unknown argument '%s' (see --help)\n",
				argv[i]);
			return 2;
		}
	}
	if (config_load(&collector_schema, &col.cfg, config_path, &err)) {
		fprintf(stderr, "understudy-collector: %s\n", err.msg);
		config_release(&collector_schema, &col.cfg);
		return 1;
	}
	log_init("collector", (enum log_level)col.cfg.log_level, col.cfg.is_syslog);
	if (col.cfg.commit_mode == 1 && col.cfg.archivers.n == 0) {
		fprintf(stderr, "understudy-collector: %s: commit = sync needs at least one "
				"archiver (set archiver = HOST:PORT)\n",
			config_path ? config_path : "embedded defaults");
		config_release(&collector_schema, &col.cfg);
		return 1;
	}

	/* Block the stop signals before any thread exists: all threads inherit it,
	 * and only sigwait below receives them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	disk_parse_reserve(col.cfg.disk_reserve_text, &col.cfg.reserve, NULL); /* checked */
	struct store_opts sopts = {.max_body = col.cfg.max_body, .reserve = &col.cfg.reserve};
	if (store_open(&col.store, col.cfg.data_dir, &sopts, &err)) {
		log_error("ns=%s event=store_open_failed dir=%s reason=\"%s\"", col.cfg.ns,
			  col.cfg.data_dir, err.msg);
		fprintf(stderr, "understudy-collector: %s\n", err.msg);
		goto out_config;
	}
	struct guard_opts gopts = {
		.mode = col.cfg.archivers.n == 0 ? GUARD_LOCAL
			: col.cfg.commit_mode == 1 ? GUARD_SYNC : GUARD_ASYNC,
		.max_lag_ms = col.cfg.max_lag_ms,
		.timeout_ms = col.cfg.sync_timeout_ms,
		.fallback = (enum guard_fallback)col.cfg.sync_fallback,
		.store = col.store,
		.ns = col.cfg.ns,
	};
	if (guard_new(&col.guard, &gopts, &err)) {
		fprintf(stderr, "understudy-collector: %s\n", err.msg);
		goto out_store;
	}
	if (committer_new(&col.committer, col.store, &err)) {
		fprintf(stderr, "understudy-collector: %s\n", err.msg);
		goto out_guard;
	}
	if (snapshots_new(&col.snapshots, col.cfg.snapshot_ttl_ms, (uint32_t)col.cfg.max_snapshots,
			  &err)) {
		fprintf(stderr, "understudy-collector: %s\n", err.msg);
		goto out_committer;
	}
	col.store_ops = (struct store_service_ops){.acquire = acquire_ns, .arg = &col,
						   .admit = admit_commit, .await_ack = await_ack,
						   .snapshots = col.snapshots};
	n_methods += store_service_methods(&col.store_ops, methods + n_methods,
					US_RPC_METHODS_MAX - n_methods);
	col.save_ops = (struct save_service_ops){.store = &col.store_ops,
						  .max_rate = col.cfg.save_max_rate};
	n_methods += save_service_methods(&col.save_ops, methods + n_methods,
					US_RPC_METHODS_MAX - n_methods);
	/* a large sort's temporary file: unnamed (O_TMPFILE) in the store's
	 * directory, where RocksDB does not look */
	col.query_ops = (struct query_service_ops){.store = &col.store_ops,
						    .tmp_dir = col.cfg.data_dir};
	n_methods += query_service_methods(&col.query_ops, methods + n_methods,
					   US_RPC_METHODS_MAX - n_methods);
	n_methods += journal_service_methods(&col.store_ops, methods + n_methods,
					US_RPC_METHODS_MAX - n_methods);
	n_methods += admin_service_methods(&col, methods + n_methods,
					US_RPC_METHODS_MAX - n_methods);

	rpc_set_log_hook(log_grpc_line);
	rpc_global_init();
	pthread_mutex_init(&col.follow_lock, NULL);
	snprintf(col.export_dir, sizeof(col.export_dir), "%s/exports", col.cfg.data_dir);
	/* a fenced site waits for `understudy rejoin` with rejoin = manual; a
	 * rejoined one follows its primary again at once */
	if (start_links(&col, &err) || start_retention(&col, &err) ||
	    ((col.cfg.rejoin_mode == 0 || store_role(col.store) != ROLE_FENCED) &&
	     collector_start_follower(&col, &err))) {
		fprintf(stderr, "understudy-collector: %s\n", err.msg);
		retention_free(col.retention);
		stop_follower(&col);
		stop_links(&col);
		goto out_committer;
	}
	struct rpc_server_opts ropts = {
		.listen = col.cfg.listen,
		.threads = (int)col.cfg.rpc_threads,
		.max_message_bytes = US_RPC_MAX_MESSAGE_BYTES,
	};
	if (rpc_server_start(&col.rpc, &ropts, methods, n_methods, &err)) {
		log_error("ns=%s event=listen_failed addr=%s reason=\"%s\"", col.cfg.ns,
			  col.cfg.listen, err.msg);
		fprintf(stderr, "understudy-collector: %s\n", err.msg);
		retention_free(col.retention);
		stop_follower(&col);
		stop_links(&col);
		goto out_committer;
	}
	{
		struct store_position pos;

		store_get_position(col.store, &pos);
		log_info("ns=%s event=listening addr=%s port=%d data_dir=%s gen=%llu seq=%llu",
			 col.cfg.ns, col.cfg.listen, rpc_server_port(col.rpc), col.cfg.data_dir,
			 (unsigned long long)pos.generation, (unsigned long long)pos.seq);
	}

	if (sigwait(&sigs, &sig) != 0)
		sig = SIGTERM;
	log_info("ns=%s event=stopping signal=%s", col.cfg.ns, sig == SIGINT ? "SIGINT" : "SIGTERM");
	rc = 0;
	/* Sync answers still waiting for an archiver get 4 s, then UNAVAILABLE, so
	 * that the server's 5 s grace can end every call. */
	guard_stop_waiting_after(col.guard, 4000);
	rpc_server_stop(col.rpc, 5000);
	committer_free(col.committer);
	col.committer = NULL;
	retention_free(col.retention);
	stop_follower(&col); /* first: a handover it takes wakes the links */
	stop_links(&col);
out_committer:
	committer_free(col.committer);
	snapshots_free(col.snapshots); /* no call is in flight: the server stopped */
	rpc_global_shutdown();
out_guard:
	guard_free(col.guard);
out_store:
	store_close(col.store);
	if (rc == 0)
		log_info("ns=%s event=stopped", col.cfg.ns);
out_config:
	config_release(&collector_schema, &col.cfg);
	return rc;
}
