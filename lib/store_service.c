/*
 * store_service.c - the Store service (Commit, Read, Scan, ListFiles,
 * OpenSnapshot, ReleaseSnapshot), shared by the collector and the archiver:
 * each daemon says how a namespace maps to a store (struct
 * store_service_ops) and keeps its table of snapshots (snapshots.h).
 *
 * Handlers run on the gRPC worker threads and never block: Commit decodes,
 * finds the namespace's committer and hands the commit over (the writer
 * thread answers the call once the group is synced); Read, Scan and ListFiles
 * read the store directly (RocksDB reads are thread-safe). Scan streams chunks
 * of at most US_SCAN_CHUNK_BYTES / US_SCAN_CHUNK_ITEMS, one send in flight.
 * A read at a snapshot holds it (snapshots_use) and the namespace (acquire)
 * until it ends, so that neither goes from under it.
 */
#include "store_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "us_limits.h"
#include "understudy.pb-c.h"
#include "wire.h"

/* Finds ns's store (and committer, for a write) through the daemon's ops. */
int store_service_acquire(const struct store_service_ops *ops, const char *ns, bool is_write,
			  struct ns_handle *h, struct us_err *err)
{
	int rc;

	if ((rc = names_check_namespace(ns, strlen(ns), err)))
		return rc;
	memset(h, 0, sizeof(*h));
	return ops->acquire(ops->arg, ns, is_write, h, err);
}

void store_service_release(const struct store_service_ops *ops, struct ns_handle *h)
{
	if (h->store && ops->release)
		ops->release(ops->arg, h);
	memset(h, 0, sizeof(*h));
}

/* For a read at snapshot id (0: none, *at stays NULL) of the namespace h
 * holds: the snapshot to read at, held until done_snapshot. */
int store_service_use_snapshot(const struct store_service_ops *ops, const char *ns, uint64_t id,
			       const struct ns_handle *h, const struct store_snap **at,
			       struct us_err *err)
{
	*at = NULL;
	if (id == 0)
		return 0;
	if (!ops->snapshots)
		return err_set(err, US_EUNIMPL, "snapshots are not served here");
	return snapshots_use(ops->snapshots, ns, id, h->store, at, err);
}

void store_service_done_snapshot(const struct store_service_ops *ops, uint64_t id,
				 const struct store_snap *at)
{
	if (at)
		snapshots_done(ops->snapshots, id);
}


/* ---- Commit ---- */

struct commit_ctx {
	const struct store_service_ops *svc;
	struct ns_handle h;
	struct rpc_call *call;
	Understudy__V1__CommitRequest *req;  /* owns the bytes the ops point into */
	struct entry *ops;
	struct store_commit commit;
	uint64_t generation;
	size_t bytes;
};

static void commit_ctx_free(struct commit_ctx *ctx)
{
	if (!ctx)
		return;
	store_service_release(ctx->svc, &ctx->h);
	if (ctx->req)
		understudy__v1__commit_request__free_unpacked(ctx->req, NULL);
	free(ctx->ops);
	free(ctx);
}

/* Runs on the writer thread once the commit is durable or refused. */
/* The answer may go (the daemon's await_ack said so, or it has none). */
static void commit_reply(void *arg, int rc, const struct us_err *err)
{
	struct commit_ctx *ctx = arg;
	Understudy__V1__CommitResponse out;

	if (rc) {
		rpc_call_finish_err(ctx->call, err);
		commit_ctx_free(ctx);
		return;
	}
	understudy__v1__commit_response__init(&out);
	out.first_seq = ctx->commit.first_seq;
	out.last_seq = ctx->commit.last_seq;
	out.generation = ctx->generation;
	wire_finish(ctx->call, &out.base);
	commit_ctx_free(ctx);
}

/* Runs on the writer thread once the commit is durable or refused. */
static void commit_done(struct store_commit *c, void *arg)
{
	struct commit_ctx *ctx = arg;

	if (c->rc) {
		rpc_call_finish_err(ctx->call, &c->err);
		commit_ctx_free(ctx);
		return;
	}
	if (ctx->svc->await_ack)
		ctx->svc->await_ack(ctx->svc->arg, &ctx->h, c->last_seq, commit_reply, ctx);
	else
		commit_reply(ctx, 0, NULL);
}

/* The daemon admitted (or refused) the commit: write it. */
static void commit_go(void *arg, int rc, const struct us_err *err)
{
	struct commit_ctx *ctx = arg;

	if (rc) {
		rpc_call_finish_err(ctx->call, err);
		commit_ctx_free(ctx);
		return;
	}
	committer_submit(ctx->h.committer, &ctx->commit, ctx->bytes, commit_done, ctx);
}

static int map_op(const Understudy__V1__Op *in, struct entry *e, size_t i, struct us_err *err)
{
	memset(e, 0, sizeof(*e));
	switch (in->kind) {
	case UNDERSTUDY__V1__OP__KIND__WRITE: e->op = ENTRY_WRITE; break;
	case UNDERSTUDY__V1__OP__KIND__DELETE: e->op = ENTRY_DELETE; break;
	case UNDERSTUDY__V1__OP__KIND__CREATE_FILE: e->op = ENTRY_CREATE_FILE; break;
	case UNDERSTUDY__V1__OP__KIND__CLEAR_FILE: e->op = ENTRY_CLEAR_FILE; break;
	case UNDERSTUDY__V1__OP__KIND__DELETE_FILE: e->op = ENTRY_DELETE_FILE; break;
	case UNDERSTUDY__V1__OP__KIND__SET_LOGGING: e->op = ENTRY_SET_LOGGING; break;
	default:
		return err_set(err, US_EINVAL, "operation %zu: unknown kind %d", i + 1, (int)in->kind);
	}
	e->account = in->account;
	e->account_len = strlen(in->account);
	e->file = in->file;
	e->file_len = strlen(in->file);
	e->section = in->dict ? SECTION_DICT : SECTION_DATA;
	e->id = in->id.data;
	e->id_len = in->id.len;
	e->body = in->body.data;
	e->body_len = in->body.len;
	e->flag = in->logged;
	/* A file name is required except for an account's logging flag. */
	if (e->file_len == 0 && e->op != ENTRY_SET_LOGGING)
		return err_set(err, US_EINVAL, "operation %zu (%s): file name is empty", i + 1,
			       entry_op_name(e->op));
	return 0;
}

static void on_commit(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	const struct store_service_ops *ops = arg;
	struct store_position pos;
	struct commit_ctx *ctx;
	struct us_err err;
	size_t bytes = 0;

	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		return;
	}
	ctx->svc = ops;
	ctx->call = call;
	ctx->req = (Understudy__V1__CommitRequest *)wire_unpack(
		&understudy__v1__commit_request__descriptor, req, req_len, &err);
	if (!ctx->req)
		goto out_refuse;
	if (store_service_acquire(ops, ctx->req->namespace_, true, &ctx->h, &err))
		goto out_refuse;
	if (ctx->req->n_ops == 0) {
		err_set(&err, US_EINVAL, "commit to %s has no operations", ctx->req->namespace_);
		goto out_refuse;
	}
	if (ctx->req->n_ops > US_COMMIT_MAX_OPS) {
		err_set(&err, US_ETOOBIG, "commit of %zu operations, over the limit of %u",
			ctx->req->n_ops, US_COMMIT_MAX_OPS);
		goto out_refuse;
	}
	ctx->ops = calloc(ctx->req->n_ops, sizeof(*ctx->ops));
	if (!ctx->ops) {
		err_set(&err, US_ENOMEM, "out of memory");
		goto out_refuse;
	}
	for (size_t i = 0; i < ctx->req->n_ops; i++) {
		if (map_op(ctx->req->ops[i], &ctx->ops[i], i, &err))
			goto out_refuse;
		bytes += ctx->ops[i].id_len + ctx->ops[i].body_len + 64;
	}
	if (bytes > US_COMMIT_MAX_BYTES) {
		err_set(&err, US_ETOOBIG, "commit of %zu bytes, over the limit of %u", bytes,
			US_COMMIT_MAX_BYTES);
		goto out_refuse;
	}
	ctx->commit.ops = ctx->ops;
	ctx->commit.n_ops = ctx->req->n_ops;
	store_get_position(ctx->h.store, &pos);
	ctx->generation = pos.generation;
	ctx->bytes = bytes;
	if (ops->admit)
		ops->admit(ops->arg, &ctx->h, commit_go, ctx);
	else
		commit_go(ctx, 0, NULL);
	return;

out_refuse:
	rpc_call_finish_err(call, &err);
	commit_ctx_free(ctx);
}

/* ---- Read ---- */

static void on_read(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	const struct store_service_ops *ops = arg;
	struct ns_handle h = {0};
	const struct store_snap *at = NULL;
	Understudy__V1__ReadRequest *in;
	Understudy__V1__ReadResponse out;
	struct us_err err;
	struct buf body;

	buf_init(&body);
	in = (Understudy__V1__ReadRequest *)wire_unpack(&understudy__v1__read_request__descriptor, req,
							 req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	if (store_service_acquire(ops, in->namespace_, false, &h, &err) ||
	    store_service_use_snapshot(ops, in->namespace_, in->snapshot, &h, &at, &err))
		goto out_err;
	if (store_get(h.store, at, in->account, in->file, in->dict ? SECTION_DICT : SECTION_DATA,
		      in->id.data, in->id.len, &body, &err))
		goto out_err;
	understudy__v1__read_response__init(&out);
	out.body.data = body.p;
	out.body.len = body.len;
	wire_finish(call, &out.base);
	store_service_done_snapshot(ops, in->snapshot, at);
	store_service_release(ops, &h);
	buf_release(&body);
	understudy__v1__read_request__free_unpacked(in, NULL);
	return;

out_err:
	rpc_call_finish_err(call, &err);
	store_service_done_snapshot(ops, in->snapshot, at);
	store_service_release(ops, &h);
	buf_release(&body);
	understudy__v1__read_request__free_unpacked(in, NULL);
}

/* ---- Scan ---- */

struct scan_ctx {
	const struct store_service_ops *ops;
	struct ns_handle h;  /* held until the scan ends */
	uint64_t snapshot;   /* the id read at (0: none) ... */
	const struct store_snap *at; /* ... held until the scan ends */
	struct store_iter *it;
	uint64_t limit;      /* 0: none */
	uint64_t sent;       /* items put in chunks so far */
	bool is_keys_only;
	bool is_done;        /* the iterator is exhausted or the limit reached */
	struct buf chunk;    /* one ScanResponse, encoded by hand (see append_item) */
};

static void scan_ctx_free(struct scan_ctx *ctx)
{
	if (!ctx)
		return;
	store_iter_free(ctx->it);
	store_service_done_snapshot(ctx->ops, ctx->snapshot, ctx->at);
	store_service_release(ctx->ops, &ctx->h);
	buf_release(&ctx->chunk);
	free(ctx);
}

/* Protobuf wire format of one `repeated Item items = 1` element:
 * 0x0a len Item, with Item = 0x0a len id [0x12 len body]. Written directly so
 * that ids and bodies are copied once, from RocksDB's buffer to the chunk. */
static size_t varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static int append_item(struct buf *b, const uint8_t *id, size_t id_len, const uint8_t *body,
		       size_t body_len, bool has_body)
{
	size_t item_len = 1 + varint_len(id_len) + id_len;

	if (has_body)
		item_len += 1 + varint_len(body_len) + body_len;
	if (buf_append_u8(b, 0x0a) || buf_append_varint(b, item_len) || buf_append_u8(b, 0x0a) ||
	    buf_append_varint(b, id_len) || buf_append(b, id, id_len))
		return US_ENOMEM;
	if (has_body && (buf_append_u8(b, 0x12) || buf_append_varint(b, body_len) ||
			 buf_append(b, body, body_len)))
		return US_ENOMEM;
	return 0;
}

/* Fills the next chunk; 0 or an error code with err set. */
static int scan_fill(struct scan_ctx *ctx, struct us_err *err)
{
	size_t items = 0;

	buf_reset(&ctx->chunk);
	while (!ctx->is_done && items < US_SCAN_CHUNK_ITEMS &&
	       ctx->chunk.len < US_SCAN_CHUNK_BYTES) {
		const uint8_t *id, *body;
		size_t id_len, body_len;
		int rc;

		if (ctx->limit && ctx->sent >= ctx->limit) {
			ctx->is_done = true;
			break;
		}
		rc = store_iter_next(ctx->it, &id, &id_len, &body, &body_len, err);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			ctx->is_done = true;
			break;
		}
		if (append_item(&ctx->chunk, id, id_len, body, body_len, !ctx->is_keys_only))
			return err_set(err, US_ENOMEM, "out of memory");
		items++;
		ctx->sent++;
	}
	return 0;
}

/* Sends the next chunk or finishes; also the `more` callback of each send. */
static void scan_step(struct rpc_call *call, void *arg)
{
	struct scan_ctx *ctx = arg;
	struct us_err err;

	if (rpc_call_is_cancelled(call)) {
		rpc_call_finish(call, US_ECANCELLED, "scan cancelled", NULL, 0);
		scan_ctx_free(ctx);
		return;
	}
	if (scan_fill(ctx, &err)) {
		rpc_call_finish_err(call, &err);
		scan_ctx_free(ctx);
		return;
	}
	if (ctx->chunk.len == 0) {
		rpc_call_finish(call, 0, NULL, NULL, 0);
		scan_ctx_free(ctx);
		return;
	}
	if (rpc_call_send(call, ctx->chunk.p, ctx->chunk.len, scan_step, ctx)) {
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		scan_ctx_free(ctx);
	}
}

static void on_scan(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	const struct store_service_ops *ops = arg;
	Understudy__V1__ScanRequest *in;
	struct scan_ctx *ctx = NULL;
	struct us_err err;

	in = (Understudy__V1__ScanRequest *)wire_unpack(&understudy__v1__scan_request__descriptor, req,
							 req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		err_set(&err, US_ENOMEM, "out of memory");
		goto out_err;
	}
	ctx->ops = ops;
	buf_init(&ctx->chunk);
	ctx->limit = in->limit;
	ctx->is_keys_only = in->keys_only;
	if (store_service_acquire(ops, in->namespace_, false, &ctx->h, &err) ||
	    store_service_use_snapshot(ops, in->namespace_, in->snapshot, &ctx->h, &ctx->at, &err))
		goto out_err;
	ctx->snapshot = in->snapshot;
	if (store_iter_new(ctx->h.store, ctx->at, in->account, in->file, in->dict ? SECTION_DICT : SECTION_DATA,
			   in->start_after.data, in->start_after.len, &ctx->it, &err))
		goto out_err;
	understudy__v1__scan_request__free_unpacked(in, NULL);
	scan_step(call, ctx);
	return;

out_err:
	rpc_call_finish_err(call, &err);
	scan_ctx_free(ctx);
	understudy__v1__scan_request__free_unpacked(in, NULL);
}

/* ---- ListFiles ---- */

static void on_list_files(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	const struct store_service_ops *ops = arg;
	struct ns_handle h = {0};
	const struct store_snap *at = NULL;
	Understudy__V1__ListFilesRequest *in;
	Understudy__V1__ListFilesResponse out;
	Understudy__V1__FileInfo *infos = NULL, **ptrs = NULL;
	struct store_file_info *files = NULL;
	size_t n = 0;
	struct us_err err;

	in = (Understudy__V1__ListFilesRequest *)wire_unpack(
		&understudy__v1__list_files_request__descriptor, req, req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	if (store_service_acquire(ops, in->namespace_, false, &h, &err) ||
	    store_service_use_snapshot(ops, in->namespace_, in->snapshot, &h, &at, &err))
		goto out_err;
	if ((in->names_only ? store_list_file_names : store_list_files)(
		    h.store, at, in->account[0] ? in->account : NULL, &files, &n, &err))
		goto out_err;
	infos = calloc(n ? n : 1, sizeof(*infos));
	ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	if (!infos || !ptrs) {
		err_set(&err, US_ENOMEM, "out of memory");
		goto out_err;
	}
	for (size_t i = 0; i < n; i++) {
		understudy__v1__file_info__init(&infos[i]);
		infos[i].account = files[i].account;
		infos[i].file = files[i].file;
		infos[i].logged = files[i].is_logged;
		infos[i].account_logged = files[i].is_account_logged;
		infos[i].data_items = files[i].data_items;
		infos[i].dict_items = files[i].dict_items;
		infos[i].stale_since_seq = files[i].stale_since_seq;
		ptrs[i] = &infos[i];
	}
	understudy__v1__list_files_response__init(&out);
	out.n_files = n;
	out.files = ptrs;
	wire_finish(call, &out.base);
	goto out_free;

out_err:
	rpc_call_finish_err(call, &err);
out_free:
	store_service_done_snapshot(ops, in->snapshot, at);
	store_service_release(ops, &h);
	free(infos);
	free(ptrs);
	free(files);
	understudy__v1__list_files_request__free_unpacked(in, NULL);
}

/* ---- OpenSnapshot, ReleaseSnapshot ---- */

static void on_open_snapshot(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	const struct store_service_ops *ops = arg;
	struct ns_handle h = {0};
	Understudy__V1__OpenSnapshotRequest *in;
	Understudy__V1__OpenSnapshotResponse out;
	struct snapshot_info info;
	struct us_err err;

	in = (Understudy__V1__OpenSnapshotRequest *)wire_unpack(
		&understudy__v1__open_snapshot_request__descriptor, req, req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	if (!ops->snapshots) {
		err_set(&err, US_EUNIMPL, "snapshots are not served here");
		goto out_err;
	}
	if (store_service_acquire(ops, in->namespace_, false, &h, &err) ||
	    snapshots_open(ops->snapshots, in->namespace_, h.store, &info, &err))
		goto out_err;
	understudy__v1__open_snapshot_response__init(&out);
	out.snapshot = info.id;
	out.generation = info.pos.generation;
	out.seq = info.pos.seq;
	out.time_ms = info.pos.time_ms;
	out.ttl_ms = info.ttl_ms;
	wire_finish(call, &out.base);
	goto out_free;

out_err:
	rpc_call_finish_err(call, &err);
out_free:
	store_service_release(ops, &h);
	understudy__v1__open_snapshot_request__free_unpacked(in, NULL);
}

static void on_release_snapshot(struct rpc_call *call, const uint8_t *req, size_t req_len,
				void *arg)
{
	const struct store_service_ops *ops = arg;
	Understudy__V1__ReleaseSnapshotRequest *in;
	Understudy__V1__ReleaseSnapshotResponse out;
	struct us_err err;

	in = (Understudy__V1__ReleaseSnapshotRequest *)wire_unpack(
		&understudy__v1__release_snapshot_request__descriptor, req, req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	/* no acquire: a release only ever frees a snapshot whose store is open
	 * (snapshots_end_store ends them first), and must work while the
	 * namespace is busy swapping */
	if (names_check_namespace(in->namespace_, strlen(in->namespace_), &err)) {
		rpc_call_finish_err(call, &err);
	} else if (!ops->snapshots) {
		rpc_call_finish(call, US_EUNIMPL, "snapshots are not served here", NULL, 0);
	} else if (snapshots_release(ops->snapshots, in->namespace_, in->snapshot, &err)) {
		rpc_call_finish_err(call, &err);
	} else {
		understudy__v1__release_snapshot_response__init(&out);
		wire_finish(call, &out.base);
	}
	understudy__v1__release_snapshot_request__free_unpacked(in, NULL);
}

size_t store_service_methods(const struct store_service_ops *ops, struct rpc_method *out,
			     size_t max)
{
	void *arg = (void *)ops;
	const struct rpc_method methods[] = {
		{"/understudy.v1.Store/Commit", on_commit, arg},
		{"/understudy.v1.Store/Read", on_read, arg},
		{"/understudy.v1.Store/Scan", on_scan, arg},
		{"/understudy.v1.Store/ListFiles", on_list_files, arg},
		{"/understudy.v1.Store/OpenSnapshot", on_open_snapshot, arg},
		{"/understudy.v1.Store/ReleaseSnapshot", on_release_snapshot, arg},
	};
	size_t n = sizeof(methods) / sizeof(methods[0]);

	if (n > max)
		return 0;
	memcpy(out, methods, sizeof(methods));
	return n;
}
