/*
 * query_service.c - Store.Query (query_service.h).
 *
 * A QueryResponse goes out as protobuf-c packs its fixed fields (the head,
 * the end), with the rows appended as query_wire.h encodes them.
 */
#include "query_service.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "pick_exec.h"
#include "pick_query.h"
#include "query_wire.h"
#include "rpc_pump.h"
#include "understudy.pb-c.h"
#include "us_limits.h"
#include "wire.h"

/* Queries being run by this process, each on its own thread. */
static atomic_int n_running;

struct query_ctx {
	struct rpc_call *call;
	struct rpc_pump pump;          /* one message in flight */
	const struct query_service_ops *svc;
	struct ns_handle h;            /* held until the query ends */
	uint64_t snapshot;             /* the id read at (0: own) ... */
	const struct store_snap *at;   /* ... held until the query ends */
	struct store_snap *own;        /* taken for this query when none was named */
	char account[US_ACCOUNT_MAX_LEN + 1];
	struct pick_query q;
	struct buf msg;                /* the message being filled */
	struct buf row, cell;          /* one row, one cell being encoded */
	size_t rows;                   /* rows in msg */
	struct pick_exec_stats stats;
};

static void query_ctx_free(struct query_ctx *ctx)
{
	if (!ctx)
		return;
	pick_query_release(&ctx->q);
	store_snap_free(ctx->own);
	store_service_done_snapshot(ctx->svc->store, ctx->snapshot, ctx->at);
	store_service_release(ctx->svc->store, &ctx->h);
	buf_release(&ctx->msg);
	buf_release(&ctx->row);
	buf_release(&ctx->cell);
	rpc_pump_release(&ctx->pump);
	free(ctx);
}

static const char *verb_name(uint8_t verb)
{
	switch (verb) {
	case PICK_LIST: return "LIST";
	case PICK_SORT: return "SORT";
	case PICK_COUNT: return "COUNT";
	default: return "SELECT";
	}
}

/* ---- sending ---- */

/* Sends msg and starts it again (rpc_call_send copied it). */
static int send_msg(struct query_ctx *ctx, struct us_err *err)
{
	int rc;

	if ((rc = rpc_pump_send(&ctx->pump, ctx->msg.p, ctx->msg.len, err)))
		return rc == US_ECANCELLED ? err_set(err, rc, "query cancelled") : rc;
	buf_reset(&ctx->msg);
	ctx->rows = 0;
	return 0;
}

struct query_sink {
	struct query_ctx *ctx;
	struct us_err *err;
};

static int on_columns(void *arg, const struct pick_column *cols, size_t n)
{
	struct query_sink *qs = arg;
	struct query_ctx *ctx = qs->ctx;
	Understudy__V1__QueryResponse m;
	Understudy__V1__QueryColumn *qc = calloc(n + 1, sizeof(*qc));
	Understudy__V1__QueryColumn **ptrs = calloc(n + 1, sizeof(*ptrs));
	/* a heading of h bytes has at most h + 1 lines (value marks split them) */
	ProtobufCBinaryData *lines = calloc(n * (US_PICK_HEADING_MAX_LEN + 1) + 1, sizeof(*lines));
	const struct store_position *pos = store_snap_position(ctx->at ? ctx->at : ctx->own);
	static const char *const justify[] = {"L", "R", "T"};
	size_t n_lines = 0;
	int rc = 0;

	if (!qc || !ptrs || !lines) {
		rc = err_set(qs->err, US_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct pick_attr *a = &cols[i].attr;
		const char *h = a->heading, *end = h + strlen(h);

		understudy__v1__query_column__init(&qc[i]);
		qc[i].name = (char *)a->name;
		qc[i].heading = &lines[n_lines];
		for (;;) {
			const char *vm = memchr(h, PICK_VM, (size_t)(end - h));

			lines[n_lines].data = (uint8_t *)h;
			lines[n_lines++].len = (size_t)((vm ? vm : end) - h);
			qc[i].n_heading++;
			if (!vm)
				break;
			h = vm + 1;
		}
		qc[i].width = a->width;
		qc[i].justify = (char *)(a->justify == 'R' ? justify[1]
					 : a->justify == 'T' ? justify[2] : justify[0]);
		qc[i].total = cols[i].is_total;
		qc[i].break_on = cols[i].is_break;
		ptrs[i] = &qc[i];
	}
	understudy__v1__query_response__init(&m);
	m.n_columns = n;
	m.columns = ptrs;
	m.generation = pos->generation;
	m.seq = pos->seq;
	m.time_ms = pos->time_ms;
	m.verb = (char *)verb_name(ctx->q.verb);
	m.file = ctx->q.file;
	m.hdr_supp = ctx->q.is_hdr_supp;
	m.col_hdr_supp = ctx->q.is_col_hdr_supp;
	if (wire_pack(&m.base, &ctx->msg))
		rc = err_set(qs->err, US_ENOMEM, "out of memory");
out:
	free(qc);
	free(ptrs);
	free(lines);
	return rc;
}

static int on_row(void *arg, uint8_t kind, const uint8_t *id, size_t id_len,
		  const struct buf *cells, size_t n)
{
	struct query_sink *qs = arg;
	struct query_ctx *ctx = qs->ctx;
	if (query_wire_append_row(&ctx->msg, &ctx->row, &ctx->cell, kind, id, id_len, cells, n))
		return err_set(qs->err, US_ENOMEM, "out of memory");
	if (++ctx->rows >= US_QUERY_CHUNK_ROWS || ctx->msg.len >= US_QUERY_CHUNK_BYTES)
		return send_msg(ctx, qs->err);
	return 0;
}

/* The last message: what is left of the rows, done and the counts. */
static int send_done(struct query_ctx *ctx, struct us_err *err)
{
	Understudy__V1__QueryResponse m;
	struct buf tail;
	int rc = 0;

	understudy__v1__query_response__init(&m);
	m.done = true;
	m.count = ctx->stats.items;
	m.missing = ctx->stats.missing;
	buf_init(&tail);
	if (wire_pack(&m.base, &tail) || buf_append(&ctx->msg, tail.p, tail.len))
		rc = err_set(err, US_ENOMEM, "out of memory");
	buf_release(&tail);
	return rc ? rc : send_msg(ctx, err);
}

static bool is_call_cancelled(void *arg)
{
	return rpc_call_is_cancelled(arg);
}

static void *query_thread(void *arg)
{
	struct query_ctx *ctx = arg;
	struct rpc_call *call = ctx->call;
	struct us_err err;
	struct query_sink qs = {.ctx = ctx, .err = &err};
	struct pick_sink sink = {.on_columns = on_columns, .on_row = on_row, .arg = &qs};
	struct pick_exec_opts eo = {.tmp_dir = ctx->svc->tmp_dir, .is_cancelled = is_call_cancelled,
				    .cancel_arg = call};
	int rc;

	pthread_setname_np(pthread_self(), "us-query");
	rpc_pump_lower_priority();
	rc = pick_exec_run(ctx->h.store, ctx->at ? ctx->at : ctx->own, ctx->account, &ctx->q, &eo,
			   &sink, &ctx->stats, &err);
	if (rc == 0)
		rc = send_done(ctx, &err);
	rpc_pump_wait(&ctx->pump);
	if (!rc && rpc_call_is_cancelled(call))
		rc = err_set(&err, US_ECANCELLED, "query cancelled");
	/* everything the query holds goes before the call ends: a daemon
	 * stopping waits for its calls, then frees the stores */
	query_ctx_free(ctx);
	atomic_fetch_sub(&n_running, 1);
	if (rc)
		rpc_call_finish_err(call, &err);
	else
		rpc_call_finish(call, 0, NULL, NULL, 0);
	return NULL;
}

static int query_start(struct query_ctx *ctx, const Understudy__V1__QueryRequest *in,
		       struct us_err *err)
{
	const struct store_service_ops *ops = ctx->svc->store;
	int rc;

	if ((rc = names_check_account(in->account, strlen(in->account), err)))
		return rc;
	snprintf(ctx->account, sizeof(ctx->account), "%s", in->account);
	if ((rc = pick_query_parse(in->sentence, &ctx->q, err)))
		return rc;
	if ((rc = names_check_file(ctx->q.file, strlen(ctx->q.file), err)))
		return rc;
	if ((rc = store_service_acquire(ops, in->namespace_, false, &ctx->h, err)) ||
	    (rc = store_service_use_snapshot(ops, in->namespace_, in->snapshot, &ctx->h, &ctx->at,
					     err)))
		return rc;
	ctx->snapshot = in->snapshot;
	if (!ctx->at && (rc = store_snap_new(ctx->h.store, &ctx->own, err)))
		return rc;
	return 0;
}

static void on_query(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	const struct query_service_ops *svc = arg;
	Understudy__V1__QueryRequest *in;
	struct query_ctx *ctx;
	struct us_err err;
	int rc;

	in = (Understudy__V1__QueryRequest *)wire_unpack(&understudy__v1__query_request__descriptor,
							  req, req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	if (atomic_fetch_add(&n_running, 1) >= US_QUERIES_RUNNING_MAX) {
		atomic_fetch_sub(&n_running, 1);
		understudy__v1__query_request__free_unpacked(in, NULL);
		err_set(&err, US_ETOOBIG,
			"%d queries are running here, the most one daemon runs at once: try again "
			"when one has ended", US_QUERIES_RUNNING_MAX);
		rpc_call_finish_err(call, &err);
		return;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		atomic_fetch_sub(&n_running, 1);
		understudy__v1__query_request__free_unpacked(in, NULL);
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		return;
	}
	ctx->call = call;
	ctx->svc = svc;
	rpc_pump_init(&ctx->pump, call);
	buf_init(&ctx->msg);
	buf_init(&ctx->row);
	buf_init(&ctx->cell);
	rc = query_start(ctx, in, &err);
	understudy__v1__query_request__free_unpacked(in, NULL);
	if (!rc)
		rc = rpc_pump_start(query_thread, ctx, "query", &err);
	if (rc) {
		query_ctx_free(ctx);
		atomic_fetch_sub(&n_running, 1);
		rpc_call_finish_err(call, &err);
	}
}

size_t query_service_methods(const struct query_service_ops *ops, struct rpc_method *out,
			     size_t max)
{
	if (max < 1)
		return 0;
	out[0] = (struct rpc_method){"/understudy.v1.Store/Query", on_query, (void *)ops};
	return 1;
}
