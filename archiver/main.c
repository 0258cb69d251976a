/*
 * understudy-archiver - the central server: one store per site namespace.
 *
 * Threads
 *   main         parses the config, opens the namespaces found on disk, starts
 *                the gRPC server, then waits in sigwait() for SIGTERM/SIGINT
 *                (blocked in every thread) and shuts down.
 *   us-rpc-N     gRPC workers (lib/rpc.c), one completion queue each; they run
 *                the Store (read side), Admin and Replication.Push handlers.
 *                A Push handler (lib/repl_recv.c, the stream's receiving end,
 *                hooked to the namespaces by replication.c) checks and
 *                applies each frame without fsync.
 *   us-syncer    (lib/repl_recv.c) fsyncs what the pushes applied (one fsync
 *                for every frame of every namespace applied meanwhile) and
 *                acks it to the sites.
 *   us-saver     the on-line archive (archive.c): takes the saves asked for
 *                (save --archive) and those save_every schedules, one at a
 *                time, into save_dir; prunes beyond keep_saves.
 *   us-snapreap  ends snapshots idle for snapshot_ttl (lib/snapshots.c).
 *   us-save      one per streamed save (lib/save_service.c), at nice 10.
 *   us-query     one per report (Store.Query, lib/query_service.c), at nice 10,
 *                at most 8; a COUNT or a sort reads with a second thread
 *                of the same priority (lib/pick_exec.c).
 *   us-promote   one per Admin.Promote while it runs (admin_service.c).
 *   us-switchover one per Admin.Switchover while it runs (switchover.c): holds
 *                the namespace's commits, waits for the site, hands over.
 *   us-writer    one per namespace promoted here (lib/committer.c).
 *   us-pull      one per Replication.Pull attached (lib/repl_pull.c): a
 *                rejoined site follows a namespace promoted here; it sends
 *                the journal, woken by the namespace's us-writer.
 *   (RocksDB and gRPC run threads of their own.)
 *
 * State: one struct archiver (archiver.h). Settings are written by main before
 * any thread starts. The namespace table is guarded by ns_lock (entries are
 * only ever added); each namespace's link fields by its own lock.
 *
 * A site's update: its collector's link -> Push frame (whole commits, LZ4) ->
 * us-rpc-N decodes and checks the whole frame, applies it to the namespace's
 * store in one batch (items, journal, position) -> us-syncer fsyncs -> a
 * Progress{applied, durable} ack goes back; the site drops journal only once
 * an archiver has it durably.
 *
 * A report's read: understudy get/list/files -> Store.Read/Scan/ListFiles on a
 * worker -> the namespace's store (RocksDB reads are thread-safe and see only
 * whole batches); understudy query -> Store.Query -> a us-query thread reads
 * one snapshot and streams the rows. Writes are refused while a namespace is a standby of its
 * site; once promoted here (understudy promote), its commits go through a
 * group commit of its own (us-writer), as on a site.
 *
 * SIGTERM: stop accepting calls, let calls in flight finish (5 s grace, then
 * cancel), close every store, exit 0.
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archiver.h"
#include "config.h"
#include "disk.h"
#include "log.h"
#include "names.h"
#include "journal_service.h"
#include "save_service.h"

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

static int check_disk_reserve(const char *v, struct us_err *err)
{
	struct disk_reserve r;

	return disk_parse_reserve(v, &r, err);
}

#define F(x) offsetof(struct archiver_config, x)
#define SZ(x) sizeof(((struct archiver_config *)0)->x)
static const struct config_key archiver_keys[] = {
	{"listen", CFG_STRING, F(listen), SZ(listen), US_DEFAULT_ARCHIVER_ADDR, 0, 0, NULL, NULL,
	 "gRPC address HOST:PORT for sites, reports and admin"},
	{"data_dir", CFG_STRING, F(data_dir), SZ(data_dir), US_DEFAULT_ARCHIVER_DATA_DIR, 0, 0, NULL,
	 NULL, "where the namespaces' stores live (DATA_DIR/ns/NAME)"},
	{"max_body", CFG_SIZE, F(max_body), 0, "16MiB", 0, US_BODY_MAX_BYTES, NULL, NULL,
	 "largest item body accepted"},
	{"rpc_threads", CFG_UINT, F(rpc_threads), 0, "2", 1, 64, NULL, NULL, "gRPC worker threads"},
	{"block_cache", CFG_SIZE, F(block_cache_bytes), 0, "256MiB", 1048576, 0, NULL, NULL,
	 "one block cache shared by every namespace's store"},
	{"log_level", CFG_ENUM, F(log_level), 0, "info", 0, 0, log_levels, NULL,
	 "error, warn, info or debug"},
	{"syslog", CFG_BOOL, F(is_syslog), 0, "off", 0, 0, NULL, NULL, "also log to syslog"},
	{"disk_reserve", CFG_STRING, F(disk_reserve_text), SZ(disk_reserve_text),
	 DISK_RESERVE_DEFAULT, 0, 0, NULL, check_disk_reserve,
	 "free space kept on the data dir's disk: a size and/or a percentage, the smaller "
	 "applies (0: none); below it, sites' frames are refused (RESOURCE_EXHAUSTED) and "
	 "they keep their journal until space returns"},
	{"snapshot_ttl", CFG_DURATION, F(snapshot_ttl_ms), 0, "10m", 100, 604800000, NULL, NULL,
	 "a snapshot (understudy snapshot) ends after this long without a read"},
	{"max_snapshots", CFG_UINT, F(max_snapshots), 0, "64", 1, US_SNAPSHOTS_MAX_PER_NS, NULL,
	 NULL, "most snapshots open at once in one namespace"},
	{"save_dir", CFG_STRING, F(save_dir), SZ(save_dir), "", 0, 0, NULL, NULL,
	 "where the on-line archive keeps saves (SAVE_DIR/NAMESPACE/; empty: DATA_DIR/saves)"},
	{"save_every", CFG_DURATION, F(save_every_ms), 0, "0", 0, 0, NULL, NULL,
	 "take a save of every namespace this often into the archive (0: only on request)"},
	{"save_max_rate", CFG_SIZE, F(save_max_rate), 0, "0", 0, 0, NULL, NULL,
	 "bytes a second a save may read and send, per save (0: no bound), to leave CPU and "
	 "disk to the stream and the commits"},
	{"journal_retention", CFG_DURATION, F(journal_retention_ms), 0, "168h", 0, 0, NULL, NULL,
	 "each namespace's journal is kept back to its oldest kept save, and at least this "
	 "long; the rest is trimmed"},
	{"keep_saves", CFG_UINT, F(keep_saves), 0, "7", 1, 100000, NULL, NULL,
	 "whole-namespace saves kept per namespace; older ones are removed"},
};
#undef F
#undef SZ

/* [namespace NAME]: a namespace this archiver accepts (none listed: any). */
static void *add_namespace(void *target, const char *name, struct us_err *err)
{
	struct archiver_config *cfg = target;
	struct ns_config *v;

	if (names_check_namespace(name, strlen(name), err))
		return NULL;
	for (size_t i = 0; i < cfg->n_namespaces; i++)
		if (strcmp(cfg->namespaces[i].name, name) == 0) {
			err_set(err, US_ECONFIG, "namespace %s is listed twice", name);
			return NULL;
		}
	if (cfg->n_namespaces == ARCHIVER_MAX_NAMESPACES) {
		err_set(err, US_ECONFIG, "more than %d namespaces", ARCHIVER_MAX_NAMESPACES);
		return NULL;
	}
	v = realloc(cfg->namespaces, (cfg->n_namespaces + 1) * sizeof(*v));
	if (!v) {
		err_set(err, US_ENOMEM, "out of memory");
		return NULL;
	}
	cfg->namespaces = v;
	memset(&v[cfg->n_namespaces], 0, sizeof(*v));
	snprintf(v[cfg->n_namespaces].name, sizeof(v->name), "%s", name);
	return &v[cfg->n_namespaces++];
}

static const struct config_section archiver_sections[] = {
	{"namespace", NULL, 0, add_namespace},
};

static const struct config_schema archiver_schema = {
	.keys = archiver_keys,
	.n_keys = sizeof(archiver_keys) / sizeof(archiver_keys[0]),
	.sections = archiver_sections,
	.n_sections = sizeof(archiver_sections) / sizeof(archiver_sections[0]),
};

/* The Store service's view: every namespace readable; a namespace promoted
 * here writable too, through its own group commit, as on a site. */
static int acquire_ns(void *arg, const char *name, bool is_write, struct ns_handle *h,
		      struct us_err *err)
{
	struct archiver *a = arg;
	struct committer *cm;
	struct repl_ns *ns;
	int rc;

	if ((rc = archiver_get_ns(a, name, false, &ns, err)))
		return rc;
	pthread_mutex_lock(&ns->lock);
	cm = archiver_ns_of(ns)->committer;
	pthread_mutex_unlock(&ns->lock);
	if (is_write && !cm)
		return err_set(err, US_EPRECOND,
			       "namespace %s is a standby on this archiver: commit at its site "
			       "(or promote it here)",
			       name);
	if ((rc = repl_ns_acquire(ns, err)))
		return rc;
	h->store = ns->store;
	h->committer = is_write ? cm : NULL;
	h->priv = ns;
	return 0;
}

static void release_ns(void *arg, struct ns_handle *h)
{
	(void)arg;
	if (h->priv)
		repl_ns_release(h->priv);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: understudy-archiver [--config FILE] [--help]\n"
		   "The central server: one store per site namespace, read-only until promoted.\n"
		   "With no --config it runs on embedded defaults. Config keys:\n");
	config_print_help(&archiver_schema, f);
	fprintf(f, "  [namespace NAME] sections: when any is given, only those namespaces are "
		   "accepted\n");
}

int main(int argc, char **argv)
{
	struct archiver *a;
	const char *config_path = NULL;
	struct rpc_method methods[US_RPC_METHODS_MAX];
	struct rpc_bidi_method bidi[4];
	size_t n_methods = 0, n_bidi = 0;
	sigset_t sigs;
	struct us_err err;
	int sig = 0;
	int rc = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else {
			fprintf(stderr, "understudy-archiver: unknown argument '%s' (see --help)\n",
				argv[i]);
			return 2;
		}
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		fprintf(stderr, "understudy-archiver: out of memory\n");
		return 1;
	}
	pthread_mutex_init(&a->ns_lock, NULL);
	if (config_load(&archiver_schema, &a->cfg, config_path, &err)) {
		fprintf(stderr, "understudy-archiver: %s\n", err.msg);
		goto out_config;
	}
	log_init("archiver", (enum log_level)a->cfg.log_level, a->cfg.is_syslog);
	disk_parse_reserve(a->cfg.disk_reserve_text, &a->cfg.reserve, NULL); /* checked */

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* A data dir that cannot take a file is refused now, not at the first
	 * site's first frame. */
	if (disk_mkdir_p(a->cfg.data_dir, &err) || disk_probe_writable(a->cfg.data_dir, &err)) {
		if (err.code != US_ENOSPC) {
			log_error("event=open_failed reason=\"%s\"", err.msg);
			fprintf(stderr, "understudy-archiver: %s\n", err.msg);
			goto out_config;
		}
		/* full: start anyway, serve reads; frames wait for space */
		log_warn("event=disk_full reason=\"%s\"", err.msg);
	}
	a->cache = store_cache_new(a->cfg.block_cache_bytes);
	if (archiver_open_namespaces(a, &err)) {
		log_error("event=open_failed reason=\"%s\"", err.msg);
		fprintf(stderr, "understudy-archiver: %s\n", err.msg);
		goto out_ns;
	}
	if (snapshots_new(&a->snapshots, a->cfg.snapshot_ttl_ms, (uint32_t)a->cfg.max_snapshots,
			  &err)) {
		fprintf(stderr, "understudy-archiver: %s\n", err.msg);
		goto out_ns;
	}
	a->store_ops = (struct store_service_ops){.acquire = acquire_ns, .release = release_ns,
						 .arg = a, .snapshots = a->snapshots};
	n_methods += store_service_methods(&a->store_ops, methods + n_methods,
					US_RPC_METHODS_MAX - n_methods);
	if (archive_start(a, &err)) {
		log_error("event=open_failed reason=\"%s\"", err.msg);
		fprintf(stderr, "understudy-archiver: %s\n", err.msg);
		goto out_ns;
	}
	a->save_ops = (struct save_service_ops){.store = &a->store_ops,
						.max_rate = a->cfg.save_max_rate,
						.keep = archive_keep,
						.arg = a};
	n_methods += save_service_methods(&a->save_ops, methods + n_methods,
					US_RPC_METHODS_MAX - n_methods);
	a->query_ops = (struct query_service_ops){.store = &a->store_ops,
						  .tmp_dir = a->cfg.data_dir};
	n_methods += query_service_methods(&a->query_ops, methods + n_methods,
					   US_RPC_METHODS_MAX - n_methods);
	n_methods += journal_service_methods(&a->store_ops, methods + n_methods,
					US_RPC_METHODS_MAX - n_methods);
	n_methods += archiver_admin_methods(a, methods + n_methods,
					US_RPC_METHODS_MAX - n_methods);
	if (archiver_replication_start(a, &err)) {
		fprintf(stderr, "understudy-archiver: %s\n", err.msg);
		archive_stop(a);
		goto out_ns;
	}
	n_bidi += repl_recv_methods(a->recv, bidi + n_bidi, 4 - n_bidi);
	n_bidi += repl_pull_methods(a->pull, bidi + n_bidi, 4 - n_bidi);

	rpc_set_log_hook(log_grpc_line);
	rpc_global_init();
	struct rpc_server_opts ropts = {
		.listen = a->cfg.listen,
		.threads = (int)a->cfg.rpc_threads,
		.max_message_bytes = US_RPC_MAX_MESSAGE_BYTES,
		.bidi = bidi,
		.n_bidi = n_bidi,
	};
	if (rpc_server_start(&a->rpc, &ropts, methods, n_methods, &err)) {
		log_error("event=listen_failed addr=%s reason=\"%s\"", a->cfg.listen, err.msg);
		fprintf(stderr, "understudy-archiver: %s\n", err.msg);
		rpc_global_shutdown();
		repl_recv_free(a->recv);
		repl_pull_free(a->pull);
		archive_stop(a);
		goto out_ns;
	}
	log_info("event=listening addr=%s port=%d data_dir=%s namespaces=%zu", a->cfg.listen,
		 rpc_server_port(a->rpc), a->cfg.data_dir, a->n_ns);

	if (sigwait(&sigs, &sig) != 0)
		sig = SIGTERM;
	log_info("event=stopping signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
	repl_recv_end_all(a->recv); /* streams never end by themselves */
	repl_pull_end(a->pull, NULL, "the archiver is stopping");
	archive_stop(a);        /* a save in progress is given up, its call answered */
	rpc_server_stop(a->rpc, 5000);
	rpc_global_shutdown();
	repl_recv_free(a->recv); /* last sync of what the pushes applied */
	repl_pull_free(a->pull);
	rc = 0;
out_ns:
	archive_free(a); /* the server is stopped: no call reaches it */
	snapshots_free(a->snapshots); /* before the stores close; no call is in flight */
	archiver_close_namespaces(a);
	store_cache_free(a->cache);
	if (rc == 0)
		log_info("event=stopped");
out_config:
	config_release(&archiver_schema, &a->cfg);
	free(a->cfg.namespaces);
	pthread_mutex_destroy(&a->ns_lock);
	free(a);
	return rc;
}
