/*
 * journal_service.c - Admin.ReadJournal (journal_service.h).
 *
 * Frames are built as a site's link builds them (stream_build_entries: whole
 * commits, about US_FRAME_TARGET_BYTES raw each), one send in flight, on the
 * gRPC worker between sends. The answer ends with the frame that reaches the
 * position the store had when the call began: frames hold whole commits and
 * are filled to their size, so that last frame may also hold commits
 * journaled since (a reader stops where it wants). The namespace is held
 * (acquire) for the whole call.
 */
#include "journal_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "stream.h"
#include "understudy.pb-c.h"
#include "us_limits.h"
#include "wire.h"

struct read_ctx {
	const struct store_service_ops *ops;
	struct ns_handle h;
	char ns[US_NAMESPACE_MAX_LEN + 1];
	uint64_t next;          /* the next seq to send */
	uint64_t last;          /* the position when the call began */
	uint64_t chain;         /* the history chain before next */
	struct buf scratch, block, msg;
};

static void read_ctx_free(struct read_ctx *ctx)
{
	if (!ctx)
		return;
	store_service_release(ctx->ops, &ctx->h);
	buf_release(&ctx->scratch);
	buf_release(&ctx->block);
	buf_release(&ctx->msg);
	free(ctx);
}

static void read_step(struct rpc_call *call, void *arg)
{
	struct read_ctx *ctx = arg;
	Understudy__V1__Entries m;
	uint64_t first = 0;
	uint32_t count = 0, raw_len = 0;
	struct us_err err;

	if (rpc_call_is_cancelled(call)) {
		rpc_call_finish(call, US_ECANCELLED, "read cancelled", NULL, 0);
		read_ctx_free(ctx);
		return;
	}
	if (ctx->next > ctx->last) {
		rpc_call_finish(call, 0, NULL, NULL, 0);
		read_ctx_free(ctx);
		return;
	}
	if (stream_build_entries(ctx->h.store, ctx->next, US_FRAME_TARGET_BYTES, &ctx->scratch,
				 &ctx->block, &first, &count, &raw_len, &err)) {
		if (err.code == US_ENOTFOUND)
			err_wrap(&err, "the journal of %s was trimmed meanwhile", ctx->ns);
		rpc_call_finish_err(call, &err);
		read_ctx_free(ctx);
		return;
	}
	if (count == 0) { /* nothing at next: cannot be, next <= last */
		rpc_call_finish(call, US_EIO, "journal shorter than its position", NULL, 0);
		read_ctx_free(ctx);
		return;
	}
	understudy__v1__entries__init(&m);
	m.first_seq = first;
	m.count = count;
	m.raw_len = raw_len;
	m.block.data = ctx->block.p;
	m.block.len = ctx->block.len;
	m.prev_chain = ctx->chain;
	if (entry_block_chain(ctx->scratch.p, ctx->scratch.len, UINT64_MAX, &ctx->chain, &err)) {
		err_wrap(&err, "the journal of %s at seq %llu", ctx->ns, (unsigned long long)first);
		rpc_call_finish_err(call, &err);
		read_ctx_free(ctx);
		return;
	}
	if (wire_pack(&m.base, &ctx->msg)) {
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		read_ctx_free(ctx);
		return;
	}
	ctx->next = first + count;
	{
		int rc = rpc_call_send(call, ctx->msg.p, ctx->msg.len, read_step, ctx);

		if (rc) {
			rpc_call_finish(call, rc, "cannot send a journal frame", NULL, 0);
			read_ctx_free(ctx);
		}
	}
}

static int read_start(struct read_ctx *ctx, const Understudy__V1__ReadJournalRequest *in,
		      struct us_err *err)
{
	struct store_position pos;
	uint64_t first;
	int rc;

	if ((rc = store_service_acquire(ctx->ops, in->namespace_, false, &ctx->h, err)))
		return rc;
	snprintf(ctx->ns, sizeof(ctx->ns), "%s", in->namespace_);
	store_get_position(ctx->h.store, &pos);
	if ((rc = store_journal_first(ctx->h.store, &first, err)))
		return rc;
	if (in->from_seq == 0)
		return err_set(err, US_EINVAL, "from_seq is 0: seqs count from 1");
	if (in->from_seq > pos.seq + 1)
		return err_set(err, US_ERANGE, "the journal of %s reaches seq %llu, not %llu",
			       ctx->ns, (unsigned long long)pos.seq,
			       (unsigned long long)in->from_seq);
	if (in->from_seq <= pos.seq && (first == 0 || in->from_seq < first))
		return err_set(err, US_ERANGE,
			       "the journal of %s retained here begins at seq %llu: it does not "
			       "reach back to seq %llu",
			       ctx->ns, (unsigned long long)first, (unsigned long long)in->from_seq);
	if ((rc = store_chain_before(ctx->h.store, in->from_seq, &ctx->chain, err)))
		return err_wrap(err, "the journal of %s before seq %llu", ctx->ns,
				(unsigned long long)in->from_seq);
	ctx->next = in->from_seq;
	ctx->last = pos.seq;
	return 0;
}

static void on_read_journal(struct rpc_call *call, const uint8_t *req, size_t req_len,
			    void *arg)
{
	Understudy__V1__ReadJournalRequest *in;
	struct read_ctx *ctx;
	struct us_err err;

	in = (Understudy__V1__ReadJournalRequest *)wire_unpack(
		&understudy__v1__read_journal_request__descriptor, req, req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		understudy__v1__read_journal_request__free_unpacked(in, NULL);
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		return;
	}
	ctx->ops = arg;
	buf_init(&ctx->scratch);
	buf_init(&ctx->block);
	buf_init(&ctx->msg);
	if (read_start(ctx, in, &err)) {
		understudy__v1__read_journal_request__free_unpacked(in, NULL);
		rpc_call_finish_err(call, &err);
		read_ctx_free(ctx);
		return;
	}
	understudy__v1__read_journal_request__free_unpacked(in, NULL);
	read_step(call, ctx);
}

size_t journal_service_methods(const struct store_service_ops *ops, struct rpc_method *out,
			       size_t max)
{
	if (max < 1)
		return 0;
	out[0] = (struct rpc_method){"/understudy.v1.Admin/ReadJournal", on_read_journal,
				     (void *)ops};
	return 1;
}
