/*
 * replication.c - the archiver's hooks for the receiving end of the stream
 * (lib/repl_recv.h): its namespaces, their directories and the swap of a
 * full copy; and the sending end of Pull (lib/repl_pull.h), for a site
 * that follows a namespace promoted here. Everything about the stream itself is in lib/repl_recv.c.
 */
#include "archiver.h"
#include "log.h"

static int get_ns(void *arg, const char *name, bool is_create, struct repl_ns **out,
		  struct us_err *err)
{
	return archiver_get_ns(arg, name, is_create, out, err);
}

static struct repl_ns *ns_at(void *arg, size_t i)
{
	struct archiver *a = arg;
	struct repl_ns *ns;

	pthread_mutex_lock(&a->ns_lock);
	ns = i < a->n_ns ? a->ns[i] : NULL;
	pthread_mutex_unlock(&a->ns_lock);
	return ns;
}

static int reopen(void *arg, struct repl_ns *ns, struct us_err *err)
{
	return archiver_ns_reopen(arg, ns, err);
}

static void ns_dir(void *arg, const char *name, const char *prefix, char *out, size_t size)
{
	archiver_ns_dir(arg, name, prefix, out, size);
}

static int swap_store(void *arg, struct repl_ns *ns, struct us_err *err)
{
	return archiver_swap_store(arg, ns, err);
}

int archiver_replication_start(struct archiver *a, struct us_err *err)
{
	struct repl_pull_ops pull_ops;
	int rc;

	a->recv_ops = (struct repl_recv_ops){
		.get_ns = get_ns,
		.ns_at = ns_at,
		.reopen = reopen,
		.ns_dir = ns_dir,
		.swap_store = swap_store,
		.on_event = log_event_line,
		.arg = a,
		.node_name = "archiver",
		.seed_opts = {.role = ROLE_STANDBY, .max_body = a->cfg.max_body,
			      .cache = a->cache, .reserve = &a->cfg.reserve},
	};
	if ((rc = repl_recv_new(&a->recv, &a->recv_ops, err)))
		return rc;
	pull_ops = (struct repl_pull_ops){.store_ops = &a->store_ops,
					  .on_event = log_event_line, .arg = a};
	if ((rc = repl_pull_new(&a->pull, &pull_ops, err))) {
		repl_recv_free(a->recv);
		a->recv = NULL;
	}
	return rc;
}
