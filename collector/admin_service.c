/* admin_service.c - the collector's Admin service: Status, Rejoin. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "role.h"
#include "wire.h"

#include "collector.h"
#include "understudy.pb-c.h"

static void on_status(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	struct collector *col = arg;
	Understudy__V1__StatusRequest *in;
	Understudy__V1__StatusResponse out;
	Understudy__V1__ArchiverLink links[64], *plinks[64];
	struct repl_sender_status ls[64];
	size_t n_links = col->n_links < 64 ? col->n_links : 64;
	struct store_position pos;
	struct store_primary_info primary;
	struct repl_follower_status fs;
	uint8_t *bytes;
	size_t len;

	in = understudy__v1__status_request__unpack(NULL, req_len, req);
	if (!in) {
		rpc_call_finish(call, US_EINVAL, "cannot decode StatusRequest", NULL, 0);
		return;
	}
	understudy__v1__status_request__free_unpacked(in, NULL);
	store_get_position(col->store, &pos);
	understudy__v1__status_response__init(&out);
	out.node = "collector";
	out.namespace_ = col->cfg.ns;
	out.role = (char *)role_name(store_role(col->store));
	store_primary(col->store, &primary);
	out.primary = primary.addr;
	out.primary_generation = primary.generation;
	out.fork_seq = primary.first_seq;
	/* a fenced site's own commits from the fork on: what rejoin exports */
	if (store_role(col->store) == ROLE_FENCED)
		out.divergent_entries = primary.first_seq && pos.seq >= primary.first_seq
						? pos.seq - primary.first_seq + 1
						: 0;
	pthread_mutex_lock(&col->follow_lock);
	if (col->follower) {
		repl_follower_status(col->follower, &fs);
		out.following = fs.is_connected;
		out.master_seq = fs.master_seq;
		out.lag_entries = fs.master_seq > pos.seq ? fs.master_seq - pos.seq : 0;
		out.export_path = fs.rejoin.export_path;
		out.exported = fs.rejoin.exported;
		out.follow_error = fs.last_error;
	}
	pthread_mutex_unlock(&col->follow_lock);
	out.generation = pos.generation;
	out.last_seq = pos.seq;
	{
		uint64_t first = 0;

		if (store_journal_first(col->store, &first, NULL) == 0)
			out.journal_first_seq = first;
		out.snapshots = snapshots_count(col->snapshots, col->cfg.ns);
	}
	out.commit_mode = (char *)guard_mode_name(col->guard);
	for (size_t i = 0; i < n_links; i++) {
		repl_sender_status(col->links[i], &ls[i]);
		understudy__v1__archiver_link__init(&links[i]);
		links[i].addr = ls[i].addr;
		links[i].connected = ls[i].is_connected;
		links[i].acked_seq = ls[i].acked_seq;
		links[i].lag_entries = pos.seq > ls[i].acked_seq ? pos.seq - ls[i].acked_seq : 0;
		plinks[i] = &links[i];
	}
	out.n_archivers = n_links;
	out.archivers = plinks;
	len = understudy__v1__status_response__get_packed_size(&out);
	bytes = malloc(len ? len : 1);
	if (!bytes) {
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		return;
	}
	understudy__v1__status_response__pack(&out, bytes);
	rpc_call_finish(call, 0, NULL, bytes, len);
	free(bytes);
}

/* Rejoin waits for the rewind (seconds): on a thread of its own, not the
 * gRPC worker. */
struct rejoin_call {
	struct collector *col;
	struct rpc_call *call;
};

static void *rejoin_main(void *arg)
{
	struct rejoin_call *rc_ = arg;
	struct collector *col = rc_->col;
	Understudy__V1__RejoinResponse out;
	struct repl_follower_status fs;
	struct store_primary_info pi;
	struct store_position pos;
	struct buf msg;
	struct us_err err;
	bool was_rejoined = store_role(col->store) != ROLE_FENCED;
	int rc;

	pthread_setname_np(pthread_self(), "us-rejoin");
	rc = collector_start_follower(col, &err);
	if (rc == 0)
		rc = repl_follower_wait_rejoined(col->follower, US_REJOIN_WAIT_MS, &err);
	if (rc) {
		rpc_call_finish_err(rc_->call, &err);
		free(rc_);
		return NULL;
	}
	repl_follower_status(col->follower, &fs);
	store_primary(col->store, &pi);
	store_get_position(col->store, &pos);
	understudy__v1__rejoin_response__init(&out);
	out.was_rejoined = was_rejoined;
	out.role = (char *)role_name(store_role(col->store));
	out.primary = pi.addr;
	out.generation = fs.rejoin.is_rewound ? fs.rejoin.to.generation : pos.generation;
	out.seq = fs.rejoin.is_rewound ? fs.rejoin.to.seq : pos.seq;
	out.fork_seq = pi.first_seq;
	out.export_path = fs.rejoin.export_path;
	out.exported = fs.rejoin.exported;
	out.keys = fs.rejoin.keys;
	out.bytes = fs.rejoin.bytes;
	buf_init(&msg);
	if (wire_pack(&out.base, &msg))
		rpc_call_finish(rc_->call, US_ENOMEM, "out of memory", NULL, 0);
	else
		rpc_call_finish(rc_->call, 0, NULL, msg.p ? msg.p : (const uint8_t *)"", msg.len);
	buf_release(&msg);
	free(rc_);
	return NULL;
}

static void on_rejoin(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	struct collector *col = arg;
	Understudy__V1__RejoinRequest *in;
	struct rejoin_call *rc_;
	struct us_err err;
	pthread_t t;

	in = (Understudy__V1__RejoinRequest *)wire_unpack(&understudy__v1__rejoin_request__descriptor,
							  req, req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	if (in->namespace_[0] && strcmp(in->namespace_, col->cfg.ns) != 0) {
		rpc_call_finish(call, US_ENOTFOUND, "this collector does not serve that namespace",
				NULL, 0);
		understudy__v1__rejoin_request__free_unpacked(in, NULL);
		return;
	}
	understudy__v1__rejoin_request__free_unpacked(in, NULL);
	if (store_role(col->store) == ROLE_PRIMARY) {
		rpc_call_finish(call, US_EPRECOND,
				"this site is its namespace's primary: there is nothing to rejoin "
				"(a site rejoins once it was superseded: promote elsewhere fences it)",
				NULL, 0);
		return;
	}
	rc_ = malloc(sizeof(*rc_));
	if (!rc_) {
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		return;
	}
	rc_->col = col;
	rc_->call = call;
	if (pthread_create(&t, NULL, rejoin_main, rc_)) {
		free(rc_);
		rpc_call_finish(call, US_ENOMEM, "cannot start the rejoin's thread", NULL, 0);
		return;
	}
	pthread_detach(t);
}

size_t admin_service_methods(struct collector *col, struct rpc_method *out, size_t max)
{
	if (max < 2)
		return 0;
	out[0] = (struct rpc_method){"/understudy.v1.Admin/Status", on_status, col};
	out[1] = (struct rpc_method){"/understudy.v1.Admin/Rejoin", on_rejoin, col};
	return 2;
}
