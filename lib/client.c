/*
 * client.c - the C client library (include/understudy.h) on lib/rpc.c and the
 * generated protobuf-c code. Each call packs a request, makes one gRPC call
 * and unpacks the answer; nothing is cached between calls.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"
#include "us_limits.h"
#include "clock.h"
#include "query_wire.h"
#include "rpc.h"
#include "understudy.h"
#include "understudy.pb-c.h"
#include "wire.h"

/* One address of the client's list. */
struct node {
	struct rpc_channel *ch;
	char addr[US_ADDR_MAX_LEN + 1];
};

struct us_client {
	struct node nodes[US_CLIENT_MAX_NODES];
	size_t n_nodes;
	/* the node the next call goes to, and its address for messages */
	struct rpc_channel *ch;
	char addr[US_ADDR_MAX_LEN + 1];
	int timeout_ms;
	bool is_prefer_standby;
	/* with several nodes: where ns's primary (and, for reads, the node to
	 * read from) was found last; -1 until found, and again after a failure */
	char routed_ns[US_NAMESPACE_MAX_LEN + 1];
	int primary;
	int reader;
	int cur;                   /* index of the node ch is */
};

/* grpc_init once per process for the library's users; never shut down, so
 * that clients may come and go (gRPC's own state is freed at exit). */
static pthread_once_t client_once = PTHREAD_ONCE_INIT;

static void client_global_init(void)
{
	rpc_global_init();
}

static void use_node(us_client_t *c, int i)
{
	c->cur = i;
	c->ch = c->nodes[i].ch;
	snprintf(c->addr, sizeof(c->addr), "%s", c->nodes[i].addr);
}

us_client_t *us_client_new(const char *addr, const us_client_opts_t *opts, us_err_t *err)
{
	struct rpc_channel_opts copts = {0};
	us_client_t *c;
	const char *p;

	if (!addr || !addr[0]) {
		err_set(err, US_EINVAL, "bad server address '%s'", addr ? addr : "");
		return NULL;
	}
	pthread_once(&client_once, client_global_init);
	c = calloc(1, sizeof(*c));
	if (!c) {
		err_set(err, US_ENOMEM, "out of memory");
		return NULL;
	}
	c->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : US_DEFAULT_CALL_TIMEOUT_MS;
	c->is_prefer_standby = opts && opts->is_prefer_standby;
	c->primary = c->reader = -1;
	if (opts) {
		copts.token = opts->token;
		copts.tls_ca_file = opts->tls_ca_file;
	}
	/* HOST:PORT[,HOST:PORT...] */
	for (p = addr; *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		struct node *n = &c->nodes[c->n_nodes];

		if (len == 0 || len >= sizeof(n->addr) || c->n_nodes == US_CLIENT_MAX_NODES) {
			if (c->n_nodes == US_CLIENT_MAX_NODES)
				err_set(err, US_EINVAL, "bad server address '%s': more than %d addresses",
					addr, US_CLIENT_MAX_NODES);
			else
				err_set(err, US_EINVAL, "bad server address '%s': %s", addr,
					len ? "an address too long" : "an empty address in the list");
			us_client_free(c);
			return NULL;
		}
		memcpy(n->addr, p, len);
		n->addr[len] = '\0';
		if (rpc_channel_new(&n->ch, n->addr, &copts, err)) {
			us_client_free(c);
			return NULL;
		}
		c->n_nodes++;
		p += len;
		if (*p == ',' && !*++p) {
			err_set(err, US_EINVAL, "bad server address '%s': an empty address in the list",
				addr);
			us_client_free(c);
			return NULL;
		}
	}
	use_node(c, 0);
	return c;
}

void us_client_free(us_client_t *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_nodes; i++)
		rpc_channel_free(c->nodes[i].ch);
	free(c);
}

/* ---- several addresses: where a namespace's calls go ---- */

/* ns's role on node i, from its Status ("" when it does not hold ns; ns
 * NULL: none asked), and whether the node is an archiver. */
static int probe(us_client_t *c, int i, const char *ns, char *role, size_t size,
		 bool *is_archiver, us_err_t *err)
{
	Understudy__V1__StatusRequest req;
	Understudy__V1__StatusResponse *out;
	uint8_t bytes[8], *resp = NULL;
	size_t len, resp_len = 0;
	int rc;

	understudy__v1__status_request__init(&req);
	len = understudy__v1__status_request__pack(&req, bytes);
	rc = rpc_unary(c->nodes[i].ch, "/understudy.v1.Admin/Status", bytes, len,
		       c->timeout_ms < US_CLIENT_PROBE_TIMEOUT_MS ? c->timeout_ms
								  : US_CLIENT_PROBE_TIMEOUT_MS,
		       &resp, &resp_len, err);
	if (rc)
		return rc;
	out = understudy__v1__status_response__unpack(NULL, resp_len, resp);
	free(resp);
	if (!out)
		return err_set(err, US_ECORRUPT, "cannot decode the answer to Status");
	role[0] = '\0';
	*is_archiver = strcmp(out->node, "archiver") == 0;
	if (ns && strcmp(out->namespace_, ns) == 0)
		snprintf(role, size, "%s", out->role); /* a collector: its one namespace */
	for (size_t k = 0; ns && k < out->n_namespaces; k++)
		if (strcmp(out->namespaces[k]->namespace_, ns) == 0)
			snprintf(role, size, "%s", out->namespaces[k]->role);
	understudy__v1__status_response__free_unpacked(out, NULL);
	return 0;
}

/* Points ch at the node for ns: its primary for a write; for a read, a
 * standby when the client prefers one, else the primary, else any node
 * that holds ns. With one address: that one, unasked. Found by asking each
 * node's status; kept until a call fails. */
static int route(us_client_t *c, const char *ns, bool is_write, us_err_t *err)
{
	char why[US_ERR_MSG_MAX];
	int primary = -1, standby = -1, holder = -1, want;
	size_t at = 0;

	if (c->n_nodes == 1)
		return 0;
	if (strcmp(c->routed_ns, ns) != 0) {
		snprintf(c->routed_ns, sizeof(c->routed_ns), "%s", ns);
		c->primary = c->reader = -1;
	}
	want = is_write ? c->primary : c->reader;
	if (want >= 0) {
		use_node(c, want);
		return 0;
	}
	why[0] = '\0';
	for (size_t i = 0; i < c->n_nodes; i++) {
		char role[32];
		bool is_archiver;
		us_err_t e;

		if (probe(c, (int)i, ns, role, sizeof(role), &is_archiver, &e))
			snprintf(role, sizeof(role), "unreachable");
		else if (!role[0])
			snprintf(role, sizeof(role), "no such namespace");
		else if (strcmp(role, "primary") == 0 && primary < 0)
			primary = (int)i;
		else if (strcmp(role, "standby") == 0 && standby < 0)
			standby = (int)i;
		if (strcmp(role, "unreachable") != 0 && strcmp(role, "no such namespace") != 0 &&
		    holder < 0)
			holder = (int)i;
		if (at < sizeof(why))
			at += (size_t)snprintf(why + at, sizeof(why) - at, "%s%s: %s", i ? ", " : "",
					       c->nodes[i].addr, role);
	}
	c->primary = primary;
	c->reader = c->is_prefer_standby && standby >= 0 ? standby : primary >= 0 ? primary : holder;
	want = is_write ? c->primary : c->reader;
	if (want < 0)
		return err_set(err, US_EUNAVAIL, "no %s for namespace %s among the %zu addresses (%s)",
			       is_write ? "primary" : "node", ns, c->n_nodes, why);
	use_node(c, want);
	return 0;
}

/* A call failed: the next one asks the nodes again. */
static void route_failed(us_client_t *c, int rc)
{
	if (rc == US_EUNAVAIL || rc == US_EPRECOND || rc == US_ETIMEOUT)
		c->primary = c->reader = -1;
}

/* A call that never left: grpc found no connection to the node ("failed to
 * connect to all addresses"), so nothing of it can have been applied. */
static bool is_never_sent(int rc, const us_err_t *err)
{
	return rc == US_EUNAVAIL && strstr(err->msg, "failed to connect") != NULL;
}

/* A call sent whose answer never came: no answer in time, or the
 * connection lost during the call (grpc's own status, which rpc.c words
 * "cannot reach ADDR: ..."; a daemon's own UNAVAILABLE, such as a commit
 * refused for the loss bound, is an answer). */
static bool is_answer_lost(int rc, const us_err_t *err)
{
	if (rc == US_ETIMEOUT)
		return true;
	return rc == US_EUNAVAIL && strncmp(err->msg, "cannot reach ", 13) == 0 &&
	       !is_never_sent(rc, err);
}

/* Admin calls (promote, adopt, the archive's saves) go to the archiver: the
 * first address that answers as one, else the first address. */
static void use_archiver(us_client_t *c)
{
	for (size_t i = 0; c->n_nodes > 1 && i < c->n_nodes; i++) {
		bool is_archiver = false;
		char role[8];
		us_err_t e;

		if (probe(c, (int)i, NULL, role, sizeof(role), &is_archiver, &e) == 0 &&
		    is_archiver) {
			use_node(c, (int)i);
			return;
		}
	}
	use_node(c, 0);
}

/* Packs msg, calls method, returns the answer's bytes (caller frees). */
static int call_unary(us_client_t *c, const char *method, const ProtobufCMessage *msg,
		      uint8_t **resp, size_t *resp_len, us_err_t *err)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *req = malloc(len ? len : 1);
	int rc;

	if (!req)
		return err_set(err, US_ENOMEM, "out of memory");
	protobuf_c_message_pack(msg, req);
	rc = rpc_unary(c->ch, method, req, len, c->timeout_ms, resp, resp_len, err);
	free(req);
	return rc;
}

static int op_kind(us_op_kind_t k, Understudy__V1__Op__Kind *out)
{
	switch (k) {
	case US_OP_WRITE: *out = UNDERSTUDY__V1__OP__KIND__WRITE; return 0;
	case US_OP_DELETE: *out = UNDERSTUDY__V1__OP__KIND__DELETE; return 0;
	case US_OP_CREATE_FILE: *out = UNDERSTUDY__V1__OP__KIND__CREATE_FILE; return 0;
	case US_OP_CLEAR_FILE: *out = UNDERSTUDY__V1__OP__KIND__CLEAR_FILE; return 0;
	case US_OP_DELETE_FILE: *out = UNDERSTUDY__V1__OP__KIND__DELETE_FILE; return 0;
	case US_OP_SET_LOGGING: *out = UNDERSTUDY__V1__OP__KIND__SET_LOGGING; return 0;
	}
	return US_EINVAL;
}

static int commit_once(us_client_t *c, const char *ns, const us_op_t *ops, size_t n_ops,
		       uint64_t *last_seq, us_err_t *err)
{
	Understudy__V1__CommitRequest req;
	Understudy__V1__CommitResponse *out;
	Understudy__V1__Op *pops, **pp;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int rc;

	pops = calloc(n_ops ? n_ops : 1, sizeof(*pops));
	pp = calloc(n_ops ? n_ops : 1, sizeof(*pp));
	if (!pops || !pp) {
		rc = err_set(err, US_ENOMEM, "out of memory");
		goto out_free;
	}
	for (size_t i = 0; i < n_ops; i++) {
		understudy__v1__op__init(&pops[i]);
		if (op_kind(ops[i].kind, &pops[i].kind)) {
			rc = err_set(err, US_EINVAL, "operation %zu: unknown kind %d", i + 1,
				     (int)ops[i].kind);
			goto out_free;
		}
		pops[i].account = (char *)(ops[i].account ? ops[i].account : "");
		pops[i].file = (char *)(ops[i].file ? ops[i].file : "");
		pops[i].dict = ops[i].is_dict != 0;
		pops[i].id.data = (uint8_t *)ops[i].id;
		pops[i].id.len = ops[i].id ? ops[i].id_len : 0;
		pops[i].body.data = (uint8_t *)ops[i].body;
		pops[i].body.len = ops[i].body ? ops[i].body_len : 0;
		pops[i].logged = ops[i].is_logged != 0;
		pp[i] = &pops[i];
	}
	understudy__v1__commit_request__init(&req);
	req.namespace_ = (char *)ns;
	req.n_ops = n_ops;
	req.ops = pp;
	rc = call_unary(c, "/understudy.v1.Store/Commit", &req.base, &resp, &resp_len, err);
	if (rc)
		goto out_free;
	out = understudy__v1__commit_response__unpack(NULL, resp_len, resp);
	if (!out) {
		rc = err_set(err, US_ECORRUPT, "cannot decode the answer to Commit from %s", c->addr);
		goto out_free;
	}
	if (last_seq)
		*last_seq = out->last_seq;
	understudy__v1__commit_response__free_unpacked(out, NULL);
out_free:
	free(resp);
	free(pops);
	free(pp);
	return rc;
}

int us_commit(us_client_t *c, const char *ns, const us_op_t *ops, size_t n_ops,
	      uint64_t *last_seq, us_err_t *err)
{
	uint64_t deadline = 0; /* set at the first refusal */
	int rc;

	for (int attempt = 0;; attempt++) {
		if ((rc = route(c, ns, true, err)) == 0) {
			rc = commit_once(c, ns, ops, n_ops, last_seq, err);
			if (rc == 0 || c->n_nodes == 1)
				return rc;
			route_failed(c, rc);
			if (rc != US_EPRECOND && !is_never_sent(rc, err)) {
				if (is_answer_lost(rc, err))
					err_wrap(err, "commit at %s: outcome unknown (the answer was "
						 "lost: it may have been applied; read before "
						 "committing it again)",
						 c->addr);
				return rc;
			}
		} else if (!deadline) {
			return rc; /* no primary at the first look */
		}
		/* refused (not the primary: nothing applied) or never sent: again,
		 * at the primary found now; while there is none (the moment of a
		 * switchover, a promote), for a bounded while */
		if (!deadline)
			deadline = clock_mono_ms() + US_CLIENT_FAILOVER_WAIT_MS;
		else if (clock_mono_ms() >= deadline)
			return rc;
		if (attempt > 0) /* 2, 4, 8 ... ms, then every POLL ms */
			usleep((attempt < 5 ? 1u << attempt : US_CLIENT_FAILOVER_POLL_MS) * 1000u);
	}
}

static int read_once(us_client_t *c, const char *ns, const char *account, const char *file,
		     int is_dict, const uint8_t *id, size_t id_len, uint64_t snapshot,
		     uint8_t **body, size_t *body_len, us_err_t *err)
{
	Understudy__V1__ReadRequest req;
	Understudy__V1__ReadResponse *out;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int rc;

	understudy__v1__read_request__init(&req);
	req.namespace_ = (char *)ns;
	req.account = (char *)account;
	req.file = (char *)file;
	req.dict = is_dict != 0;
	req.id.data = (uint8_t *)id;
	req.id.len = id_len;
	req.snapshot = snapshot;
	rc = call_unary(c, "/understudy.v1.Store/Read", &req.base, &resp, &resp_len, err);
	if (rc)
		return rc;
	out = understudy__v1__read_response__unpack(NULL, resp_len, resp);
	free(resp);
	if (!out)
		return err_set(err, US_ECORRUPT, "cannot decode the answer to Read from %s", c->addr);
	*body = malloc(out->body.len ? out->body.len : 1);
	if (!*body) {
		understudy__v1__read_response__free_unpacked(out, NULL);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	if (out->body.len)
		memcpy(*body, out->body.data, out->body.len);
	*body_len = out->body.len;
	understudy__v1__read_response__free_unpacked(out, NULL);
	return 0;
}

int us_read(us_client_t *c, const char *ns, const char *account, const char *file, int is_dict,
	    const uint8_t *id, size_t id_len, uint64_t snapshot, uint8_t **body, size_t *body_len,
	    us_err_t *err)
{
	int rc;

	for (int attempt = 0;; attempt++) {
		if ((rc = route(c, ns, false, err)))
			return rc;
		rc = read_once(c, ns, account, file, is_dict, id, id_len, snapshot, body, body_len,
			       err);
		if (rc == 0 || c->n_nodes == 1)
			return rc;
		route_failed(c, rc);
		/* a read changes nothing: once more elsewhere when the node is gone */
		if (attempt == 0 && rc == US_EUNAVAIL)
			continue;
		return rc;
	}
}

int us_scan(us_client_t *c, const char *ns, const char *account, const char *file,
	    const us_scan_opts_t *opts, us_scan_fn fn, void *arg, us_err_t *err)
{
	us_scan_opts_t dflt = {0};
	Understudy__V1__ScanRequest req;
	struct rpc_stream *st = NULL;
	uint8_t *bytes;
	size_t len;
	int stop = 0;
	int rc;

	if ((rc = route(c, ns, false, err)))
		return rc;
	if (!opts)
		opts = &dflt;
	understudy__v1__scan_request__init(&req);
	req.namespace_ = (char *)ns;
	req.account = (char *)account;
	req.file = (char *)file;
	req.dict = opts->is_dict != 0;
	req.start_after.data = (uint8_t *)opts->start_after;
	req.start_after.len = opts->start_after ? opts->start_after_len : 0;
	req.limit = opts->limit;
	req.snapshot = opts->snapshot;
	req.keys_only = opts->is_keys_only != 0;
	len = understudy__v1__scan_request__get_packed_size(&req);
	bytes = malloc(len ? len : 1);
	if (!bytes)
		return err_set(err, US_ENOMEM, "out of memory");
	understudy__v1__scan_request__pack(&req, bytes);
	/* A scan may be long: no deadline beyond the stream's own progress. */
	rc = rpc_stream_open(c->ch, "/understudy.v1.Store/Scan", bytes, len, 0, &st, err);
	free(bytes);
	if (rc)
		return rc;
	for (;;) {
		Understudy__V1__ScanResponse *out;
		uint8_t *msg;
		size_t msg_len;

		rc = rpc_stream_next(st, &msg, &msg_len, err);
		if (rc <= 0)
			break;
		out = understudy__v1__scan_response__unpack(NULL, msg_len, msg);
		free(msg);
		if (!out) {
			rc = err_set(err, US_ECORRUPT, "cannot decode a Scan answer from %s", c->addr);
			break;
		}
		for (size_t i = 0; i < out->n_items && !stop; i++) {
			const Understudy__V1__Item *it = out->items[i];

			stop = fn(arg, it->id.data, it->id.len,
				  opts->is_keys_only ? NULL : it->body.data,
				  opts->is_keys_only ? 0 : it->body.len);
		}
		understudy__v1__scan_response__free_unpacked(out, NULL);
		if (stop) {
			rc = stop;
			break;
		}
	}
	rpc_stream_free(st);
	return rc;
}

/* ---- Query ---- */

/* The first answer's head (its columns and position) to the sink. */
static int query_head(const Understudy__V1__QueryResponse *m, const us_query_sink_t *sink,
		      us_err_t *err)
{
	us_query_head_t h = {.verb = m->verb, .file = m->file, .generation = m->generation,
			     .seq = m->seq, .time_ms = m->time_ms, .n_columns = m->n_columns,
			     .is_hdr_supp = m->hdr_supp, .is_col_hdr_supp = m->col_hdr_supp};
	us_query_column_t *cols = calloc(m->n_columns + 1, sizeof(*cols));
	us_bytes_t *lines;
	size_t n_lines = 0, at = 0;
	int rc;

	for (size_t i = 0; i < m->n_columns; i++)
		n_lines += m->columns[i]->n_heading;
	lines = calloc(n_lines + 1, sizeof(*lines));
	if (!cols || !lines) {
		free(cols);
		free(lines);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < m->n_columns; i++) {
		const Understudy__V1__QueryColumn *c = m->columns[i];
		us_query_column_t *o = &cols[i];

		o->name = c->name;
		o->heading = &lines[at];
		o->n_heading = c->n_heading;
		for (size_t j = 0; j < c->n_heading; j++, at++)
			lines[at] = (us_bytes_t){c->heading[j].data, c->heading[j].len};
		o->width = c->width;
		o->justify = c->justify[0] ? c->justify[0] : 'L';
		o->is_total = c->total;
		o->is_break = c->break_on;
	}
	h.columns = cols;
	rc = sink->on_head ? sink->on_head(sink->arg, &h) : 0;
	free(cols);
	free(lines);
	return rc;
}

static int sink_row(void *arg, const us_query_row_t *row)
{
	const us_query_sink_t *sink = arg;

	return sink->on_row ? sink->on_row(sink->arg, row) : 0;
}

/* One answer: the first one's head through protobuf-c, then every answer's
 * rows and end read straight from the bytes (query_wire.h: a million rows
 * unpacked by protobuf-c cost more CPU than the daemon spent on them). */
static int query_answer(const uint8_t *msg, size_t len, bool *is_head, const us_query_sink_t *sink,
			struct query_wire_reader *qr, struct query_wire_end *qe, us_err_t *err)
{
	if (!*is_head) {
		Understudy__V1__QueryResponse *m =
			understudy__v1__query_response__unpack(NULL, len, msg);
		int rc;

		if (!m)
			return err_set(err, US_ECORRUPT, "cannot decode a Query answer");
		*is_head = true;
		rc = query_head(m, sink, err);
		understudy__v1__query_response__free_unpacked(m, NULL);
		if (rc)
			return rc;
	}
	return query_wire_read(qr, msg, len, sink_row, (void *)sink, qe, err);
}

int us_query(us_client_t *c, const char *ns, const char *account, const char *sentence,
	     uint64_t snapshot, const us_query_sink_t *sink, us_queried_t *out, us_err_t *err)
{
	struct query_wire_reader qr = {0};
	struct query_wire_end qe = {0};
	Understudy__V1__QueryRequest req;
	struct rpc_stream *st = NULL;
	bool is_head = false;
	struct buf b;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = route(c, ns, false, err)))
		return rc;
	understudy__v1__query_request__init(&req);
	req.namespace_ = (char *)ns;
	req.account = (char *)account;
	req.sentence = (char *)sentence;
	req.snapshot = snapshot;
	buf_init(&b);
	if (wire_pack(&req.base, &b)) {
		buf_release(&b);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	/* a report may be long: no deadline beyond the stream's own progress */
	rc = rpc_stream_open(c->ch, "/understudy.v1.Store/Query", b.p, b.len, 0, &st, err);
	buf_release(&b);
	if (rc)
		return rc;
	for (;;) {
		uint8_t *msg;
		size_t msg_len;

		if ((rc = rpc_stream_next(st, &msg, &msg_len, err)) <= 0)
			break;
		rc = qe.is_done ? err_set(err, US_ECORRUPT, "%s sent more after the end of the query",
					  c->addr)
				: query_answer(msg, msg_len, &is_head, sink, &qr, &qe, err);
		free(msg);
		if (rc)
			break;
	}
	rpc_stream_free(st);
	query_wire_reader_release(&qr);
	if (rc == 0 && !qe.is_done)
		rc = err_set(err, US_EIO, "the query's answer from %s ended before its end", c->addr);
	out->count = qe.count;
	out->missing = qe.missing;
	return rc;
}

int us_save(us_client_t *c, const char *ns, const us_save_opts_t *opts, us_save_fn fn,
	    void *arg, us_saved_t *out, us_err_t *err)
{
	us_save_opts_t none = {0};
	Understudy__V1__SaveRequest req;
	struct rpc_stream *st = NULL;
	bool is_done = false;
	struct buf b;
	int rc;

	if (opts && opts->is_archive)
		use_archiver(c);
	else if ((rc = route(c, ns, false, err)))
		return rc;
	understudy__v1__save_request__init(&req);
	req.namespace_ = (char *)ns;
	if (!opts)
		opts = &none;
	req.account = (char *)(opts->account ? opts->account : "");
	req.file = (char *)(opts->file ? opts->file : "");
	req.snapshot = opts->snapshot;
	req.archive = opts->is_archive != 0;
	buf_init(&b);
	if (wire_pack(&req.base, &b))
		return err_set(err, US_ENOMEM, "out of memory");
	/* a save may be long: no deadline beyond the stream's own progress */
	rc = rpc_stream_open(c->ch, "/understudy.v1.Admin/Save", b.p, b.len, 0, &st, err);
	buf_release(&b);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	for (;;) {
		Understudy__V1__SaveResponse *m;
		uint8_t *msg;
		size_t msg_len;

		rc = rpc_stream_next(st, &msg, &msg_len, err);
		if (rc <= 0)
			break;
		m = understudy__v1__save_response__unpack(NULL, msg_len, msg);
		free(msg);
		if (!m) {
			rc = err_set(err, US_ECORRUPT, "cannot decode a Save answer from %s", c->addr);
			break;
		}
		rc = is_done ? err_set(err, US_ECORRUPT, "%s sent more after the end of the save",
				       c->addr)
			     : m->data.len ? fn(arg, m->data.data, m->data.len, m->items) : 0;
		if (rc == 0 && m->done) {
			is_done = true;
			*out = (us_saved_t){.generation = m->generation, .seq = m->seq,
					    .time_ms = m->time_ms, .items = m->items,
					    .files = m->files, .bytes = m->bytes,
					    .xxh64 = m->xxh64};
			snprintf(out->path, sizeof(out->path), "%s", m->path);
		}
		understudy__v1__save_response__free_unpacked(m, NULL);
		if (rc)
			break;
	}
	rpc_stream_free(st);
	if (rc == 0 && !is_done)
		rc = err_set(err, US_EUNAVAIL, "the save from %s ended before it was whole", c->addr);
	return rc;
}

int us_read_journal(us_client_t *c, const char *ns, uint64_t from, us_journal_fn fn, void *arg,
		    us_err_t *err)
{
	Understudy__V1__ReadJournalRequest req;
	struct rpc_stream *st = NULL;
	struct buf b;
	int rc;

	if ((rc = route(c, ns, false, err)))
		return rc;
	understudy__v1__read_journal_request__init(&req);
	req.namespace_ = (char *)ns;
	req.from_seq = from;
	buf_init(&b);
	if (wire_pack(&req.base, &b))
		return err_set(err, US_ENOMEM, "out of memory");
	rc = rpc_stream_open(c->ch, "/understudy.v1.Admin/ReadJournal", b.p, b.len, 0, &st, err);
	buf_release(&b);
	if (rc)
		return rc;
	for (;;) {
		Understudy__V1__Entries *m;
		uint8_t *msg;
		size_t msg_len;

		rc = rpc_stream_next(st, &msg, &msg_len, err);
		if (rc <= 0)
			break;
		m = understudy__v1__entries__unpack(NULL, msg_len, msg);
		free(msg);
		if (!m) {
			rc = err_set(err, US_ECORRUPT, "cannot decode a journal frame from %s", c->addr);
			break;
		}
		rc = fn(arg, m->first_seq, m->count, m->raw_len, m->block.data, m->block.len,
			m->prev_chain);
		understudy__v1__entries__free_unpacked(m, NULL);
		if (rc)
			break;
	}
	rpc_stream_free(st);
	return rc;
}

int us_list_saves(us_client_t *c, const char *ns, us_saved_t **saves, size_t *n,
		  us_err_t *err)
{
	Understudy__V1__ListSavesRequest req;
	Understudy__V1__ListSavesResponse *ans;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	us_saved_t *v;
	int rc;

	use_archiver(c);
	understudy__v1__list_saves_request__init(&req);
	req.namespace_ = (char *)ns;
	rc = call_unary(c, "/understudy.v1.Admin/ListSaves", &req.base, &resp, &resp_len, err);
	if (rc)
		return rc;
	ans = understudy__v1__list_saves_response__unpack(NULL, resp_len, resp);
	free(resp);
	if (!ans)
		return err_set(err, US_ECORRUPT, "cannot decode the answer to ListSaves from %s",
			       c->addr);
	v = calloc(ans->n_saves ? ans->n_saves : 1, sizeof(*v));
	if (!v) {
		understudy__v1__list_saves_response__free_unpacked(ans, NULL);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < ans->n_saves; i++) {
		const Understudy__V1__KeptSave *k = ans->saves[i];

		snprintf(v[i].name, sizeof(v[i].name), "%s", k->name);
		snprintf(v[i].path, sizeof(v[i].path), "%s", k->path);
		snprintf(v[i].account, sizeof(v[i].account), "%s", k->account);
		snprintf(v[i].file, sizeof(v[i].file), "%s", k->file);
		v[i].generation = k->generation;
		v[i].seq = k->seq;
		v[i].time_ms = k->time_ms;
		v[i].created_ms = k->created_ms;
		v[i].items = k->items;
		v[i].files = k->files;
		v[i].bytes = k->bytes;
		v[i].xxh64 = k->xxh64;
	}
	*n = ans->n_saves;
	*saves = v;
	understudy__v1__list_saves_response__free_unpacked(ans, NULL);
	return 0;
}

static int cmp_file_info(const void *a, const void *b)
{
	const us_file_info_t *x = a, *y = b;
	int r = strcmp(x->account, y->account);

	return r ? r : strcmp(x->file, y->file);
}

static int list_files(us_client_t *c, const char *ns, const char *account, uint64_t snapshot,
		      bool is_names_only, us_file_info_t **files, size_t *n, us_err_t *err)
{
	Understudy__V1__ListFilesRequest req;
	Understudy__V1__ListFilesResponse *out;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	us_file_info_t *v;
	int rc;

	if ((rc = route(c, ns, false, err)))
		return rc;
	understudy__v1__list_files_request__init(&req);
	req.namespace_ = (char *)ns;
	req.account = (char *)(account ? account : "");
	req.snapshot = snapshot;
	req.names_only = is_names_only;
	rc = call_unary(c, "/understudy.v1.Store/ListFiles", &req.base, &resp, &resp_len, err);
	if (rc)
		return rc;
	out = understudy__v1__list_files_response__unpack(NULL, resp_len, resp);
	free(resp);
	if (!out)
		return err_set(err, US_ECORRUPT, "cannot decode the answer to ListFiles from %s",
			       c->addr);
	v = calloc(out->n_files ? out->n_files : 1, sizeof(*v));
	if (!v) {
		understudy__v1__list_files_response__free_unpacked(out, NULL);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < out->n_files; i++) {
		const Understudy__V1__FileInfo *f = out->files[i];

		snprintf(v[i].account, sizeof(v[i].account), "%s", f->account);
		snprintf(v[i].file, sizeof(v[i].file), "%s", f->file);
		v[i].is_logged = f->logged;
		v[i].is_account_logged = f->account_logged;
		v[i].data_items = f->data_items;
		v[i].dict_items = f->dict_items;
		v[i].stale_since_seq = f->stale_since_seq;
	}
	*n = out->n_files;
	understudy__v1__list_files_response__free_unpacked(out, NULL);
	qsort(v, *n, sizeof(*v), cmp_file_info);
	*files = v;
	return 0;
}

int us_list_files(us_client_t *c, const char *ns, const char *account, uint64_t snapshot,
		  us_file_info_t **files, size_t *n, us_err_t *err)
{
	return list_files(c, ns, account, snapshot, false, files, n, err);
}

int us_list_file_names(us_client_t *c, const char *ns, const char *account, uint64_t snapshot,
		       us_file_info_t **files, size_t *n, us_err_t *err)
{
	return list_files(c, ns, account, snapshot, true, files, n, err);
}

int us_open_snapshot(us_client_t *c, const char *ns, us_snapshot_t *out, us_err_t *err)
{
	Understudy__V1__OpenSnapshotRequest req;
	Understudy__V1__OpenSnapshotResponse *ans;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int rc;

	if ((rc = route(c, ns, false, err)))
		return rc;
	understudy__v1__open_snapshot_request__init(&req);
	req.namespace_ = (char *)ns;
	rc = call_unary(c, "/understudy.v1.Store/OpenSnapshot", &req.base, &resp, &resp_len, err);
	if (rc)
		return rc;
	ans = understudy__v1__open_snapshot_response__unpack(NULL, resp_len, resp);
	free(resp);
	if (!ans)
		return err_set(err, US_ECORRUPT, "cannot decode the answer to OpenSnapshot from %s",
			       c->addr);
	out->id = ans->snapshot;
	out->generation = ans->generation;
	out->seq = ans->seq;
	out->time_ms = ans->time_ms;
	out->ttl_ms = ans->ttl_ms;
	understudy__v1__open_snapshot_response__free_unpacked(ans, NULL);
	return 0;
}

int us_release_snapshot(us_client_t *c, const char *ns, uint64_t id, us_err_t *err)
{
	Understudy__V1__ReleaseSnapshotRequest req;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int rc;

	if ((rc = route(c, ns, false, err)))
		return rc;
	understudy__v1__release_snapshot_request__init(&req);
	req.namespace_ = (char *)ns;
	req.snapshot = id;
	rc = call_unary(c, "/understudy.v1.Store/ReleaseSnapshot", &req.base, &resp, &resp_len,
			err);
	free(resp);
	return rc;
}

int us_adopt(us_client_t *c, const char *ns, us_adopted_t *out, us_err_t *err)
{
	Understudy__V1__AdoptRequest req;
	Understudy__V1__AdoptResponse *ans;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int rc;

	use_archiver(c);
	understudy__v1__adopt_request__init(&req);
	req.namespace_ = (char *)ns;
	rc = call_unary(c, "/understudy.v1.Admin/Adopt", &req.base, &resp, &resp_len, err);
	if (rc)
		return rc;
	ans = understudy__v1__adopt_response__unpack(NULL, resp_len, resp);
	free(resp);
	if (!ans)
		return err_set(err, US_ECORRUPT, "cannot decode the answer to Adopt from %s", c->addr);
	memset(out, 0, sizeof(*out));
	snprintf(out->previous_site, sizeof(out->previous_site), "%s", ans->previous_site);
	out->previous_seq = ans->previous_seq;
	snprintf(out->kept_in, sizeof(out->kept_in), "%s", ans->kept_in);
	understudy__v1__adopt_response__free_unpacked(ans, NULL);
	return 0;
}

int us_promote(us_client_t *c, const char *ns, int force, us_promoted_t *out, us_err_t *err)
{
	Understudy__V1__PromoteRequest req;
	Understudy__V1__PromoteResponse *ans;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int rc;

	use_archiver(c);
	understudy__v1__promote_request__init(&req);
	req.namespace_ = (char *)ns;
	req.force = force != 0;
	rc = call_unary(c, "/understudy.v1.Admin/Promote", &req.base, &resp, &resp_len, err);
	if (rc)
		return rc;
	ans = understudy__v1__promote_response__unpack(NULL, resp_len, resp);
	free(resp);
	if (!ans)
		return err_set(err, US_ECORRUPT, "cannot decode the answer to Promote from %s",
			       c->addr);
	memset(out, 0, sizeof(*out));
	out->generation = ans->generation;
	out->first_seq = ans->first_seq;
	out->was_primary = ans->was_primary;
	out->fenced_site = ans->fenced_site;
	understudy__v1__promote_response__free_unpacked(ans, NULL);
	return 0;
}

int us_switchover(us_client_t *c, const char *ns, uint64_t timeout_ms, us_switched_t *out,
		  us_err_t *err)
{
	Understudy__V1__SwitchoverRequest req;
	Understudy__V1__SwitchoverResponse *ans;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int rc;

	use_archiver(c);
	understudy__v1__switchover_request__init(&req);
	req.namespace_ = (char *)ns;
	req.timeout_ms = timeout_ms;
	{
		/* the server waits up to timeout_ms (bounded there): the call
		 * outlives that */
		int saved = c->timeout_ms;
		uint64_t wait = timeout_ms ? timeout_ms : US_SWITCHOVER_WAIT_MS;

		if (wait > US_SWITCHOVER_WAIT_MAX_MS)
			wait = US_SWITCHOVER_WAIT_MAX_MS;
		if ((uint64_t)c->timeout_ms < wait + US_CLIENT_WAIT_MARGIN_MS)
			c->timeout_ms = (int)(wait + US_CLIENT_WAIT_MARGIN_MS);
		rc = call_unary(c, "/understudy.v1.Admin/Switchover", &req.base, &resp, &resp_len,
				err);
		c->timeout_ms = saved;
	}
	if (rc)
		return rc;
	ans = understudy__v1__switchover_response__unpack(NULL, resp_len, resp);
	free(resp);
	if (!ans)
		return err_set(err, US_ECORRUPT, "cannot decode the answer to Switchover from %s",
			       c->addr);
	memset(out, 0, sizeof(*out));
	out->was_switched = ans->was_switched;
	snprintf(out->site, sizeof(out->site), "%s", ans->site);
	snprintf(out->site_addr, sizeof(out->site_addr), "%s", ans->site_addr);
	out->generation = ans->generation;
	out->first_seq = ans->first_seq;
	out->pause_ms = ans->pause_ms;
	understudy__v1__switchover_response__free_unpacked(ans, NULL);
	return 0;
}

int us_rejoin(us_client_t *c, const char *ns, us_rejoined_t *out, us_err_t *err)
{
	Understudy__V1__RejoinRequest req;
	Understudy__V1__RejoinResponse *ans;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int rc;

	use_node(c, 0); /* the site named first */
	understudy__v1__rejoin_request__init(&req);
	req.namespace_ = (char *)(ns ? ns : "");
	{
		int saved = c->timeout_ms;

		if ((uint64_t)c->timeout_ms < US_REJOIN_WAIT_MS + US_CLIENT_WAIT_MARGIN_MS)
			c->timeout_ms = (int)(US_REJOIN_WAIT_MS + US_CLIENT_WAIT_MARGIN_MS);
		rc = call_unary(c, "/understudy.v1.Admin/Rejoin", &req.base, &resp, &resp_len, err);
		c->timeout_ms = saved;
	}
	if (rc)
		return rc;
	ans = understudy__v1__rejoin_response__unpack(NULL, resp_len, resp);
	free(resp);
	if (!ans)
		return err_set(err, US_ECORRUPT, "cannot decode the answer to Rejoin from %s",
			       c->addr);
	memset(out, 0, sizeof(*out));
	out->was_rejoined = ans->was_rejoined;
	snprintf(out->role, sizeof(out->role), "%s", ans->role);
	snprintf(out->primary, sizeof(out->primary), "%s", ans->primary);
	out->generation = ans->generation;
	out->seq = ans->seq;
	out->fork_seq = ans->fork_seq;
	snprintf(out->export_path, sizeof(out->export_path), "%s", ans->export_path);
	out->exported = ans->exported;
	out->keys = ans->keys;
	out->bytes = ans->bytes;
	understudy__v1__rejoin_response__free_unpacked(ans, NULL);
	return 0;
}

int us_status(us_client_t *c, us_status_t **st, us_err_t *err)
{
	Understudy__V1__StatusRequest req;
	Understudy__V1__StatusResponse *out;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	us_status_t *s;
	int rc;

	use_node(c, 0); /* the node named first */
	understudy__v1__status_request__init(&req);
	rc = call_unary(c, "/understudy.v1.Admin/Status", &req.base, &resp, &resp_len, err);
	if (rc)
		return rc;
	out = understudy__v1__status_response__unpack(NULL, resp_len, resp);
	free(resp);
	if (!out)
		return err_set(err, US_ECORRUPT, "cannot decode the answer to Status from %s", c->addr);
	s = calloc(1, sizeof(*s));
	if (s) {
		s->archivers = calloc(out->n_archivers ? out->n_archivers : 1, sizeof(*s->archivers));
		s->namespaces = calloc(out->n_namespaces ? out->n_namespaces : 1,
				       sizeof(*s->namespaces));
	}
	if (!s || !s->archivers || !s->namespaces) {
		us_status_free(s);
		understudy__v1__status_response__free_unpacked(out, NULL);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	snprintf(s->node, sizeof(s->node), "%s", out->node);
	snprintf(s->ns, sizeof(s->ns), "%s", out->namespace_);
	snprintf(s->role, sizeof(s->role), "%s", out->role);
	snprintf(s->commit_mode, sizeof(s->commit_mode), "%s", out->commit_mode);
	s->generation = out->generation;
	s->last_seq = out->last_seq;
	s->journal_first_seq = out->journal_first_seq;
	s->snapshots = out->snapshots;
	snprintf(s->primary, sizeof(s->primary), "%s", out->primary);
	s->primary_generation = out->primary_generation;
	s->fork_seq = out->fork_seq;
	s->divergent_entries = out->divergent_entries;
	s->is_following = out->following;
	s->master_seq = out->master_seq;
	s->lag_entries = out->lag_entries;
	snprintf(s->export_path, sizeof(s->export_path), "%s", out->export_path);
	s->exported = out->exported;
	snprintf(s->follow_error, sizeof(s->follow_error), "%s", out->follow_error);
	s->n_archivers = out->n_archivers;
	for (size_t i = 0; i < out->n_archivers; i++) {
		const Understudy__V1__ArchiverLink *a = out->archivers[i];

		snprintf(s->archivers[i].addr, sizeof(s->archivers[i].addr), "%s", a->addr);
		s->archivers[i].is_connected = a->connected;
		s->archivers[i].acked_seq = a->acked_seq;
		s->archivers[i].lag_entries = a->lag_entries;
	}
	s->n_namespaces = out->n_namespaces;
	for (size_t i = 0; i < out->n_namespaces; i++) {
		const Understudy__V1__NamespaceStatus *x = out->namespaces[i];
		us_ns_status_t *y = &s->namespaces[i];

		snprintf(y->ns, sizeof(y->ns), "%s", x->namespace_);
		snprintf(y->role, sizeof(y->role), "%s", x->role);
		y->generation = x->generation;
		y->applied_seq = x->applied_seq;
		y->durable_seq = x->durable_seq;
		y->master_seq = x->master_seq;
		y->lag_entries = x->lag_entries;
		y->lag_ms = x->lag_ms;
		y->is_connected = x->connected;
		y->heartbeat_age_ms = x->heartbeat_age_ms;
		y->refusals = x->refusals;
		y->snapshots = x->snapshots;
		y->is_site_following = x->site_following;
		y->site_durable_seq = x->site_durable_seq;
		y->generation_first_seq = x->generation_first_seq;
		y->saves = x->saves;
		y->save_bytes = x->save_bytes;
		y->oldest_save_seq = x->oldest_save_seq;
		y->journal_first_seq = x->journal_first_seq;
		snprintf(y->refusal, sizeof(y->refusal), "%s", x->refusal);
	}
	understudy__v1__status_response__free_unpacked(out, NULL);
	*st = s;
	return 0;
}

void us_status_free(us_status_t *st)
{
	if (!st)
		return;
	free(st->archivers);
	free(st->namespaces);
	free(st);
}
