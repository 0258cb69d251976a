/* admin_service.c - the collector's Admin service: Status. */
#include <stdlib.h>

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
	out.divergent_entries =
		primary.first_seq && pos.seq >= primary.first_seq ? pos.seq - primary.first_seq + 1 : 0;
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

size_t admin_service_methods(struct collector *col, struct rpc_method *out, size_t max)
{
	if (max < 1)
		return 0;
	out[0] = (struct rpc_method){"/understudy.v1.Admin/Status", on_status, col};
	return 1;
}
