/*
 * save_service.c - Admin.Save (save_service.h).
 *
 * A save reads a snapshot (the one the request names, or one taken for it)
 * through the store's image iterator (store.h), writes it with the save
 * writer (save.h) into a buffer, and streams the buffer in messages of about
 * US_SAVE_CHUNK_BYTES, one send in flight. The reading, encoding and
 * compressing run on a thread of the save's own, at a lower priority
 * (US_SAVE_NICE), one message ahead of the send: the gRPC workers stay free
 * for the stream and the commits, and a save takes the CPU they leave. It
 * never blocks a commit or an apply (a RocksDB snapshot read takes no lock
 * they need). The namespace is held
 * (acquire) for the whole save, so its store cannot be swapped from under
 * it; an archiver's full copy waits for it a bounded time (namespaces.c).
 */
#include "save_service.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "names.h"
#include "rpc_pump.h"
#include "save.h"
#include "understudy.pb-c.h"
#include "us_limits.h"
#include "wire.h"

/* Saves being streamed by this process, each on its own thread. */
static atomic_int n_running;

struct save_ctx {
	struct rpc_call *call;
	struct rpc_pump pump;          /* one message in flight */
	const struct store_service_ops *ops;
	const struct save_service_ops *svc;
	struct ns_handle h;            /* held until the save ends */
	uint64_t snapshot;             /* the id read at (0: own) ... */
	const struct store_snap *at;   /* ... held until the save ends */
	struct store_snap *own;        /* taken for this save when none was named */
	struct store_image_iter *it;
	struct save_writer *w;
	struct buf out;                /* the save's bytes not yet sent */
	struct buf msg;                /* one SaveResponse, packed */
	struct store_position pos;
	struct save_summary summary;
	struct pacer pace;             /* save_max_rate */
	uint64_t items;
	bool is_done;                  /* the trailer is in out */
};

static void save_ctx_free(struct save_ctx *ctx)
{
	if (!ctx)
		return;
	save_writer_free(ctx->w);
	store_image_iter_free(ctx->it);
	store_snap_free(ctx->own);
	store_service_done_snapshot(ctx->ops, ctx->snapshot, ctx->at);
	store_service_release(ctx->ops, &ctx->h);
	buf_release(&ctx->out);
	buf_release(&ctx->msg);
	rpc_pump_release(&ctx->pump);
	free(ctx);
}

/* The last message's fields: the save is whole, and what it holds. */
static void fill_done(Understudy__V1__SaveResponse *m, const struct store_position *pos,
		      const struct save_summary *sum)
{
	m->done = true;
	m->generation = pos->generation;
	m->seq = pos->seq;
	m->time_ms = pos->time_ms;
	m->files = sum->files;
	m->bytes = sum->bytes;
	m->xxh64 = sum->xxh64;
}

/* Moves entries from the image into the writer until about a chunk of the
 * save is ready, or the end (then the trailer). */
static int save_fill(struct save_ctx *ctx, struct us_err *err)
{
	while (!ctx->is_done && ctx->out.len < US_SAVE_CHUNK_BYTES) {
		struct entry e;
		int rc = store_image_iter_next(ctx->it, &e, err);

		if (rc < 0)
			return rc;
		if (rc == 0) {
			if ((rc = save_writer_finish(ctx->w, &ctx->summary, err)))
				return rc;
			ctx->is_done = true;
			break;
		}
		if ((rc = save_writer_add(ctx->w, &e, err)))
			return rc;
		ctx->items += e.op == ENTRY_WRITE;
	}
	return 0;
}

/* Packs and sends the next message; the chunk after it is read and
 * compressed while this one travels. */
static int save_send(struct save_ctx *ctx, struct us_err *err)
{
	Understudy__V1__SaveResponse m;
	int rc;

	understudy__v1__save_response__init(&m);
	m.data.data = ctx->out.p;
	m.data.len = ctx->out.len;
	m.items = ctx->items;
	if (ctx->is_done)
		fill_done(&m, &ctx->pos, &ctx->summary);
	if (wire_pack(&m.base, &ctx->msg))
		return err_set(err, US_ENOMEM, "out of memory");
	buf_reset(&ctx->out);
	if ((rc = rpc_pump_send(&ctx->pump, ctx->msg.p, ctx->msg.len, err)))
		return rc == US_ECANCELLED ? err_set(err, rc, "save cancelled") : rc;
	pacer_take(&ctx->pace, ctx->msg.len);
	return 0;
}

static bool is_call_cancelled(void *arg)
{
	return rpc_call_is_cancelled(arg);
}

/* save_max_rate: waits until the bytes sent so far are due, in slices, so
 * that a cancelled call ends at once. */
static void save_pace(struct save_ctx *ctx)
{
	pacer_sleep(&ctx->pace, US_PACE_SLICE_MS, is_call_cancelled, ctx->call);
}

/* The save's own thread, at a lower priority than the stream's apply and
 * the site's commits: reads, encodes and compresses the save, one message
 * ahead of what grpc is sending, then finishes the call. */
static void *save_thread(void *arg)
{
	struct save_ctx *ctx = arg;
	struct rpc_call *call = ctx->call;
	struct us_err err;
	int rc = 0;

	pthread_setname_np(pthread_self(), "us-save");
	rpc_pump_lower_priority();
	pacer_init(&ctx->pace, ctx->svc->max_rate);
	while (!rc && !(ctx->is_done && ctx->out.len == 0)) {
		save_pace(ctx);
		if ((rc = save_fill(ctx, &err)) == 0)
			rc = save_send(ctx, &err);
	}
	rpc_pump_wait(&ctx->pump);
	if (!rc && rpc_call_is_cancelled(call))
		rc = err_set(&err, US_ECANCELLED, "save cancelled");
	/* everything the save holds goes before the call ends: a daemon stopping
	 * waits for its calls, then frees the stores */
	save_ctx_free(ctx);
	atomic_fetch_sub(&n_running, 1);
	if (rc)
		rpc_call_finish_err(call, &err);
	else
		rpc_call_finish(call, 0, NULL, NULL, 0);
	return NULL;
}

/* The save's scope exists at the snapshot: an account with at least one
 * file, a file. */
static int check_scope(struct store *st, const struct store_snap *at, uint64_t seq,
		       const char *ns, const char *account, const char *file, struct us_err *err)
{
	bool is_found;
	int rc;

	if (!account || !account[0])
		return 0;
	if ((rc = store_has_files(st, at, account, file && file[0] ? file : NULL, &is_found, err)))
		return rc;
	if (is_found)
		return 0;
	return file && file[0]
		       ? err_set(err, US_ENOTFOUND, "file %s/%s does not exist in %s at seq %llu",
				 account, file, ns, (unsigned long long)seq)
		       : err_set(err, US_ENOTFOUND, "account %s has no files in %s at seq %llu",
				 account, ns, (unsigned long long)seq);
}

/* The header of a save of ns's store s at pos, scope account/file ("" or
 * NULL: all). */
static void fill_header(struct save_header *hdr, struct store *s, const struct store_position *pos,
			const char *ns, const char *account, const char *file)
{
	memset(hdr, 0, sizeof(*hdr));
	hdr->kind = SAVE_KIND_SAVE;
	snprintf(hdr->ns, sizeof(hdr->ns), "%s", ns);
	snprintf(hdr->scope_account, sizeof(hdr->scope_account), "%s", account ? account : "");
	snprintf(hdr->scope_file, sizeof(hdr->scope_file), "%s", file ? file : "");
	hdr->generation = pos->generation;
	hdr->seq = pos->seq;
	hdr->time_ms = pos->time_ms;
	hdr->chain = pos->chain;
	snprintf(hdr->creator, sizeof(hdr->creator), "%s", store_node_id(s));
	/* the history it holds: the site's an archiver's copy is bound to, or a
	 * site's own */
	snprintf(hdr->site, sizeof(hdr->site), "%s",
		 store_site_id(s)[0] ? store_site_id(s) : store_node_id(s));
	hdr->created_ms = clock_wall_ms();
}

int save_service_write(struct store *s, const struct store_snap *at, const char *ns,
		       const char *account, const char *file, save_sink_fn sink, void *arg,
		       struct save_summary *out, struct store_position *pos_out,
		       struct us_err *err)
{
	struct store_image_opts io = {.account = account && account[0] ? account : NULL,
				      .file = file && file[0] ? file : NULL};
	struct store_image_iter *it = NULL;
	struct save_writer *w = NULL;
	struct store_position pos;
	struct save_header hdr;
	struct entry e;
	int rc;

	if ((rc = store_image_iter_new(s, at, &io, &it, &pos, err)))
		return rc;
	if (pos_out)
		*pos_out = pos;
	if ((rc = check_scope(s, at, pos.seq, ns, account, file, err)))
		goto out;
	fill_header(&hdr, s, &pos, ns, account, file);
	if ((rc = save_writer_new(&w, &hdr, sink, arg, err)))
		goto out;
	while ((rc = store_image_iter_next(it, &e, err)) == 1)
		if ((rc = save_writer_add(w, &e, err)))
			goto out;
	if (rc == 0)
		rc = save_writer_finish(w, out, err);
out:
	save_writer_free(w);
	store_image_iter_free(it);
	return rc;
}

static int check_request(const Understudy__V1__SaveRequest *in, struct us_err *err)
{
	int rc;

	if ((rc = names_check_namespace(in->namespace_, strlen(in->namespace_), err)))
		return rc;
	if (in->account[0] && (rc = names_check_account(in->account, strlen(in->account), err)))
		return rc;
	if (in->file[0] && !in->account[0])
		return err_set(err, US_EINVAL, "a save of file %s needs its account", in->file);
	if (in->file[0] && (rc = names_check_file(in->file, strlen(in->file), err)))
		return rc;
	return 0;
}

static int save_start(struct save_ctx *ctx, const Understudy__V1__SaveRequest *in,
		      struct us_err *err)
{
	struct store_image_opts io = {0};
	struct save_header hdr;
	struct store_position pos;
	int rc;

	if ((rc = check_request(in, err)))
		return rc;
	if ((rc = store_service_acquire(ctx->ops, in->namespace_, false, &ctx->h, err)) ||
	    (rc = store_service_use_snapshot(ctx->ops, in->namespace_, in->snapshot, &ctx->h,
					     &ctx->at, err)))
		return rc;
	ctx->snapshot = in->snapshot;
	if (!ctx->at) {
		if ((rc = store_snap_new(ctx->h.store, &ctx->own, err)))
			return rc;
	}
	ctx->pos = *store_snap_position(ctx->at ? ctx->at : ctx->own);
	if ((rc = check_scope(ctx->h.store, ctx->at ? ctx->at : ctx->own, ctx->pos.seq,
			      in->namespace_, in->account, in->file, err)))
		return rc;
	io.account = in->account[0] ? in->account : NULL;
	io.file = in->file[0] ? in->file : NULL;
	if ((rc = store_image_iter_new(ctx->h.store, ctx->at ? ctx->at : ctx->own, &io, &ctx->it,
				       &pos, err)))
		return rc;
	fill_header(&hdr, ctx->h.store, &pos, in->namespace_, in->account, in->file);
	return save_writer_new(&ctx->w, &hdr, save_buf_sink, &ctx->out, err);
}

/* The one message has gone: the end. */
static void finish_ok(struct rpc_call *call, void *arg)
{
	(void)arg;
	if (rpc_call_is_cancelled(call))
		rpc_call_finish(call, US_ECANCELLED, "save cancelled", NULL, 0);
	else
		rpc_call_finish(call, 0, NULL, NULL, 0);
}

/* The archive kept the save (or did not): the one answer. */
static void kept(void *arg, int rc, const struct us_err *err, const struct kept_save *ks)
{
	struct rpc_call *call = arg;
	Understudy__V1__SaveResponse m;
	struct buf b;

	if (rc) {
		rpc_call_finish_err(call, err);
		return;
	}
	understudy__v1__save_response__init(&m);
	m.items = ks->summary.items;
	fill_done(&m, &ks->pos, &ks->summary);
	m.path = (char *)ks->path;
	buf_init(&b);
	if (wire_pack(&m.base, &b))
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
	else if ((rc = rpc_call_send(call, b.p, b.len, finish_ok, NULL)))
		rpc_call_finish(call, rc, "cannot send the answer", NULL, 0);
	buf_release(&b);
}

/* archive set: hand the save to the daemon's archive. */
static void keep_save(const struct save_service_ops *svc, struct rpc_call *call,
		      const Understudy__V1__SaveRequest *in)
{
	struct keep_request kr;
	struct us_err err;

	if (check_request(in, &err)) {
		rpc_call_finish_err(call, &err);
		return;
	}
	if (!svc->keep) {
		rpc_call_finish(call, US_EPRECOND,
				"this daemon keeps no saves: the archiver's on-line archive does "
				"(save --archive against it), or save to a file here (-o FILE)",
				NULL, 0);
		return;
	}
	memset(&kr, 0, sizeof(kr));
	snprintf(kr.ns, sizeof(kr.ns), "%s", in->namespace_);
	snprintf(kr.account, sizeof(kr.account), "%s", in->account);
	snprintf(kr.file, sizeof(kr.file), "%s", in->file);
	kr.snapshot = in->snapshot;
	svc->keep(svc->arg, &kr, kept, call);
}

static void on_save(struct rpc_call *call, const uint8_t *req, size_t req_len, void *arg)
{
	const struct save_service_ops *svc = arg;
	Understudy__V1__SaveRequest *in;
	struct save_ctx *ctx;
	struct us_err err;
	int rc;

	in = (Understudy__V1__SaveRequest *)wire_unpack(&understudy__v1__save_request__descriptor,
							 req, req_len, &err);
	if (!in) {
		rpc_call_finish_err(call, &err);
		return;
	}
	if (in->archive) {
		keep_save(svc, call, in);
		understudy__v1__save_request__free_unpacked(in, NULL);
		return;
	}
	if (atomic_fetch_add(&n_running, 1) >= US_SAVES_RUNNING_MAX) {
		atomic_fetch_sub(&n_running, 1);
		understudy__v1__save_request__free_unpacked(in, NULL);
		err_set(&err, US_ETOOBIG,
			"%d saves are running here, the most one daemon streams at once: try "
			"again when one has ended", US_SAVES_RUNNING_MAX);
		rpc_call_finish_err(call, &err);
		return;
	}
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		atomic_fetch_sub(&n_running, 1);
		understudy__v1__save_request__free_unpacked(in, NULL);
		rpc_call_finish(call, US_ENOMEM, "out of memory", NULL, 0);
		return;
	}
	ctx->call = call;
	rpc_pump_init(&ctx->pump, call);
	ctx->svc = svc;
	ctx->ops = svc->store;
	buf_init(&ctx->out);
	buf_init(&ctx->msg);
	rc = save_start(ctx, in, &err);
	understudy__v1__save_request__free_unpacked(in, NULL);
	if (!rc)
		rc = rpc_pump_start(save_thread, ctx, "save", &err);
	if (rc) {
		save_ctx_free(ctx);
		atomic_fetch_sub(&n_running, 1);
		rpc_call_finish_err(call, &err);
	}
}

size_t save_service_methods(const struct save_service_ops *ops, struct rpc_method *out,
			    size_t max)
{
	if (max < 1)
		return 0;
	out[0] = (struct rpc_method){"/understudy.v1.Admin/Save", on_save, (void *)ops};
	return 1;
}
