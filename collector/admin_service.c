/* admin_service.c - the collector's Admin service: Status. */
#include <stdlib.h>

#include "collector.h"
#include "understudy.pb-c.h"

static void on_status(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	struct collector *col = arg;
	Understudy__V1__StatusRequest *in;
	Understudy__V1__StatusResponse out;
	struct store_position pos;
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
	out.role = "primary";
	out.generation = pos.generation;
	out.last_seq = pos.seq;
	out.commit_mode = "local";
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
