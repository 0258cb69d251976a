/* admin_service.c - the archiver's Admin service: Status, Adopt, ListSaves,
 * Promote. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archiver.h"
#include "clock.h"
#include "log.h"
#include "names.h"
#include "understudy.pb-c.h"
#include "wire.h"

static void on_status(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	struct archiver *a = arg;
	Understudy__V1__StatusRequest *in;
	Understudy__V1__StatusResponse out;
	Understudy__V1__NamespaceStatus *st = NULL, **pst = NULL;
	char (*refusals)[sizeof(((struct repl_ns *)0)->refusal)] = NULL;
	size_t n, len;
	uint8_t *bytes;
	int64_t now;

	in = understudy__v1__status_request__unpack(NULL, req_len, req);
	if (!in) {
		rpc_call_finish(call, US_EINVAL, "cannot decode StatusRequest", NULL, 0);
		return;
	}
	understudy__v1__status_request__free_unpacked(in, NULL);
	pthread_mutex_lock(&a->ns_lock);
	n = a->n_ns;
	st = calloc(n ? n : 1, sizeof(*st));
	pst = calloc(n ? n : 1, sizeof(*pst));
	refusals = calloc(n ? n : 1, sizeof(*refusals)); /* copies: packed after ns->lock */
	if (!st || !pst || !refusals) {
		pthread_mutex_unlock(&a->ns_lock);
		free(st);
		free(pst);
		free(refusals);
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct repl_ns *ns = a->ns[i];
		struct store_position pos;
		int64_t behind_since;

		pthread_mutex_lock(&ns->lock); /* ns->store changes only under it (a full copy) */
		/* read under the lock: a heartbeat noted while this waited for it
		 * must not look younger than now */
		now = (int64_t)clock_wall_ms();
		if (ns->store)
			store_get_position(ns->store, &pos);
		else
			memset(&pos, 0, sizeof(pos)); /* unavailable after a failed swap */
		understudy__v1__namespace_status__init(&st[i]);
		st[i].namespace_ = ns->name;
		st[i].role = ns->store ? (char *)role_name(store_role(ns->store)) : "unavailable";
		st[i].generation = pos.generation;
		st[i].applied_seq = pos.seq;
		if (ns->store && store_role(ns->store) == ROLE_PRIMARY) {
			/* its own commits: each answered once synced, and it is
			 * the namespace's master */
			st[i].durable_seq = pos.seq;
			st[i].master_seq = pos.seq;
		} else {
			st[i].durable_seq = ns->durable_seq;
			st[i].master_seq = ns->master_seq > pos.seq ? ns->master_seq : pos.seq;
		}
		st[i].heartbeat_age_ms = ns->heartbeat_ms ? now - ns->heartbeat_ms : -1;
		/* attached, and heard from lately: a hung site's stream can stay
		 * open long after it stopped speaking */
		st[i].connected = ns->is_connected &&
				  (ns->silence_ms == 0 ||
				   st[i].heartbeat_age_ms <= (int64_t)ns->silence_ms);
		behind_since = ns->behind_since_ms;
		st[i].refusals = ns->refusals;
		st[i].snapshots = snapshots_count(a->snapshots, ns->name);
		memcpy(refusals[i], ns->refusal, sizeof(refusals[i]));
		st[i].refusal = refusals[i];
		pthread_mutex_unlock(&ns->lock);
		st[i].lag_entries = st[i].master_seq - pos.seq;
		/* Lag in time: how long the site has been ahead of this copy, which
		 * bounds the age of the oldest update not applied here. */
		st[i].lag_ms = st[i].lag_entries && behind_since && now > behind_since
				       ? (uint64_t)(now - behind_since)
				       : 0;
		{
			struct archive_status as;

			if (archive_get_status(a, ns->name, &as) == 0) {
				st[i].saves = as.saves;
				st[i].save_bytes = as.save_bytes;
				st[i].oldest_save_seq = as.oldest_save_seq;
				st[i].journal_first_seq = as.journal_first_seq;
			}
		}
		if (ns->store)
			(void)store_generation_start(ns->store, pos.generation,
						     &st[i].generation_first_seq, NULL);
		if (a->pull && strcmp(st[i].role, "primary") == 0) {
			struct repl_pull_status ps;

			repl_pull_status(a->pull, ns->name, &ps);
			st[i].site_following = ps.is_connected;
			st[i].site_durable_seq = ps.durable_seq;
		}
		pst[i] = &st[i];
	}
	understudy__v1__status_response__init(&out);
	out.node = "archiver";
	out.n_namespaces = n;
	out.namespaces = pst;
	len = understudy__v1__status_response__get_packed_size(&out);
	bytes = malloc(len ? len : 1);
	if (bytes)
		understudy__v1__status_response__pack(&out, bytes);
	pthread_mutex_unlock(&a->ns_lock);
	if (bytes)
		rpc_call_finish(call, 0, NULL, bytes, len);
	else
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
	free(bytes);
	free(st);
	free(pst);
	free(refusals);
}

static void on_adopt(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	struct archiver *a = arg;
	Understudy__V1__AdoptRequest *in;
	Understudy__V1__AdoptResponse out;
	struct archiver_adopted adopted;
	struct us_err err;
	struct repl_ns *ns;

	in = (Understudy__V1__AdoptRequest *)wire_unpack(&understudy__v1__adopt_request__descriptor,
							 req, req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	if (archiver_get_ns(a, in->namespace_, false, &ns, &err) ||
	    archiver_adopt(a, ns, &adopted, &err)) {
		understudy__v1__adopt_request__free_unpacked(in, NULL);
		rpc_call_finish_err(call, &err);
		return;
	}
	understudy__v1__adopt_request__free_unpacked(in, NULL);
	log_info("ns=%s event=adopted previous_site=%s previous_seq=%llu kept_in=%s", ns->name,
		 adopted.previous_site[0] ? adopted.previous_site : "-",
		 (unsigned long long)adopted.previous_seq, adopted.kept_in);
	understudy__v1__adopt_response__init(&out);
	out.previous_site = adopted.previous_site;
	out.previous_seq = adopted.previous_seq;
	out.kept_in = adopted.kept_in;
	wire_finish(call, &out.base);
}

/* Runs fn(job) on a detached thread of its own, which answers call and
 * frees job; if none starts, answers call and frees job here. */
static void start_job(struct rpc_call *call, void *(*fn)(void *), void *job, const char *what)
{
	pthread_attr_t attr;
	pthread_t thread;
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&thread, &attr, fn, job);
	pthread_attr_destroy(&attr);
	if (rc) {
		char msg[64];

		free(job);
		snprintf(msg, sizeof(msg), "cannot start a thread for the %s", what);
		rpc_call_finish(call, US_ENOMEM, msg, NULL, 0);
	}
}

/* A promote waits for the namespace's apply and fsyncs: off the gRPC
 * workers, on a thread of its own that answers the call. */
struct promote_job {
	struct archiver *a;
	struct rpc_call *call;
	char ns[US_NAMESPACE_MAX_LEN + 1];
	bool is_force;
};

static void *promote_main(void *arg)
{
	struct promote_job *job = arg;
	Understudy__V1__PromoteResponse out;
	struct archiver_promoted pr;
	struct us_err err;
	struct repl_ns *ns;
	int rc;

	pthread_setname_np(pthread_self(), "us-promote");
	rc = archiver_get_ns(job->a, job->ns, false, &ns, &err);
	if (rc == 0)
		rc = archiver_promote(job->a, ns, job->is_force, &pr, &err);
	if (rc) {
		rpc_call_finish_err(job->call, &err);
	} else {
		understudy__v1__promote_response__init(&out);
		out.generation = pr.generation;
		out.first_seq = pr.first_seq;
		out.was_primary = pr.was_primary;
		out.fenced_site = pr.fenced_site;
		wire_finish(job->call, &out.base);
	}
	free(job);
	return NULL;
}

static void on_promote(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	Understudy__V1__PromoteRequest *in;
	struct promote_job *job;
	struct us_err err;

	in = (Understudy__V1__PromoteRequest *)wire_unpack(
		&understudy__v1__promote_request__descriptor, req, req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	job = calloc(1, sizeof(*job));
	if (!job || names_check_namespace(in->namespace_, strlen(in->namespace_), &err)) {
		if (!job)
			err_set(&err, US_ENOMEM, "out of memory");
		understudy__v1__promote_request__free_unpacked(in, NULL);
		free(job);
		rpc_call_finish_err(call, &err);
		return;
	}
	job->a = arg;
	job->call = call;
	snprintf(job->ns, sizeof(job->ns), "%s", in->namespace_);
	job->is_force = in->force;
	understudy__v1__promote_request__free_unpacked(in, NULL);
	start_job(call, promote_main, job, "promote");
}

/* A switchover waits for the site (seconds): on a thread of its own. */
struct switchover_job {
	struct archiver *a;
	struct rpc_call *call;
	char ns[US_NAMESPACE_MAX_LEN + 1];
	uint64_t timeout_ms;
};

static void *switchover_main(void *arg)
{
	struct switchover_job *job = arg;
	Understudy__V1__SwitchoverResponse out;
	struct archiver_switched sw;
	struct us_err err;
	struct repl_ns *ns;
	int rc;

	pthread_setname_np(pthread_self(), "us-switchover");
	rc = archiver_get_ns(job->a, job->ns, false, &ns, &err);
	if (rc == 0)
		rc = archiver_switchover(job->a, ns, job->timeout_ms, &sw, &err);
	if (rc) {
		rpc_call_finish_err(job->call, &err);
	} else {
		understudy__v1__switchover_response__init(&out);
		out.was_switched = sw.was_switched;
		out.site = sw.site;
		out.site_addr = sw.site_addr;
		out.generation = sw.generation;
		out.first_seq = sw.first_seq;
		out.pause_ms = sw.pause_ms;
		wire_finish(job->call, &out.base);
	}
	free(job);
	return NULL;
}

static void on_switchover(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	Understudy__V1__SwitchoverRequest *in;
	struct switchover_job *job;
	struct us_err err;

	in = (Understudy__V1__SwitchoverRequest *)wire_unpack(
		&understudy__v1__switchover_request__descriptor, req, req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	job = calloc(1, sizeof(*job));
	if (!job || names_check_namespace(in->namespace_, strlen(in->namespace_), &err)) {
		if (!job)
			err_set(&err, US_ENOMEM, "out of memory");
		understudy__v1__switchover_request__free_unpacked(in, NULL);
		free(job);
		rpc_call_finish_err(call, &err);
		return;
	}
	job->a = arg;
	job->call = call;
	snprintf(job->ns, sizeof(job->ns), "%s", in->namespace_);
	job->timeout_ms = in->timeout_ms;
	understudy__v1__switchover_request__free_unpacked(in, NULL);
	start_job(call, switchover_main, job, "switchover");
}

static void on_list_saves(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	struct archiver *a = arg;
	Understudy__V1__ListSavesRequest *in;
	Understudy__V1__ListSavesResponse out;
	Understudy__V1__KeptSave *v = NULL, **pv = NULL;
	struct kept_save *ks = NULL;
	struct us_err err;
	size_t n = 0;

	in = (Understudy__V1__ListSavesRequest *)wire_unpack(
		&understudy__v1__list_saves_request__descriptor, req, req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	if (archive_list(a, in->namespace_, &ks, &n, &err)) {
		rpc_call_finish_err(call, &err);
		goto out;
	}
	v = calloc(n ? n : 1, sizeof(*v));
	pv = calloc(n ? n : 1, sizeof(*pv));
	if (!v || !pv) {
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		understudy__v1__kept_save__init(&v[i]);
		v[i].name = ks[i].name;
		v[i].path = ks[i].path;
		v[i].account = ks[i].account;
		v[i].file = ks[i].file;
		v[i].generation = ks[i].pos.generation;
		v[i].seq = ks[i].pos.seq;
		v[i].time_ms = ks[i].pos.time_ms;
		v[i].created_ms = ks[i].created_ms;
		v[i].items = ks[i].summary.items;
		v[i].files = ks[i].summary.files;
		v[i].bytes = ks[i].summary.bytes;
		v[i].xxh64 = ks[i].summary.xxh64;
		pv[i] = &v[i];
	}
	understudy__v1__list_saves_response__init(&out);
	out.n_saves = n;
	out.saves = pv;
	wire_finish(call, &out.base);
out:
	free(v);
	free(pv);
	free(ks);
	understudy__v1__list_saves_request__free_unpacked(in, NULL);
}

size_t archiver_admin_methods(struct archiver *a, struct rpc_method *out, size_t max)
{
	if (max < 5)
		return 0;
	out[0] = (struct rpc_method){"/understudy.v1.Admin/Status", on_status, a};
	out[1] = (struct rpc_method){"/understudy.v1.Admin/Adopt", on_adopt, a};
	out[2] = (struct rpc_method){"/understudy.v1.Admin/ListSaves", on_list_saves, a};
	out[3] = (struct rpc_method){"/understudy.v1.Admin/Promote", on_promote, a};
	out[4] = (struct rpc_method){"/understudy.v1.Admin/Switchover", on_switchover, a};
	return 5;
}
