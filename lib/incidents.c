/*
 * incidents.c - a daemon's incidents and their log (incidents.h).
 *
 * In memory: every incident read or made, oldest first, up to
 * US_INCIDENTS_KEPT (beyond it the oldest closed ones go; open ones stay).
 * One mutex guards them and the log's appends.
 */
#include "incidents.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "buf.h"

#define HEADER_BYTES 16
static const char magic[8] = "USINCID";  /* and its NUL */

static const struct {
	const char *name;
	const char *severity;
} kinds[] = {
	[INCIDENT_LINK_LOST] = {"link_lost", "critical"},
	[INCIDENT_LAG] = {"lag", "warning"},
	[INCIDENT_CANARY_MISSED] = {"canary_missed", "critical"},
	[INCIDENT_VERIFY_MISMATCH] = {"verify_mismatch", "critical"},
	[INCIDENT_FENCED] = {"fenced", "critical"},
	[INCIDENT_AUTH_FAILURE] = {"auth_failure", "warning"},
	[INCIDENT_DISK_LOW] = {"disk_low", "critical"},
	[INCIDENT_SYNC_FALLBACK] = {"sync_fallback", "warning"},
	[INCIDENT_FULL_COPY] = {"full_copy", "warning"},
	[INCIDENT_STORE_ERROR] = {"store_error", "critical"},
};

struct incidents {
	pthread_mutex_t lock;
	char path[US_DIR_MAX_LEN + 32];
	int fd;
	struct incident *v;          /* oldest first */
	size_t n, cap;
	uint64_t next_id;
	incident_fn on_change;
	void *arg;
};

const char *incident_kind_name(uint8_t kind)
{
	return kind >= 1 && kind <= INCIDENT_KIND_MAX ? kinds[kind].name : NULL;
}

const char *incident_severity(uint8_t kind)
{
	return kind >= 1 && kind <= INCIDENT_KIND_MAX ? kinds[kind].severity : "warning";
}

static uint8_t kind_of(const char *name)
{
	for (uint8_t k = 1; k <= INCIDENT_KIND_MAX; k++)
		if (strcmp(kinds[k].name, name) == 0)
			return k;
	return 0;
}

/* ---- memory ---- */

static struct incident *find_open(struct incidents *ins, uint8_t kind, const char *ns)
{
	for (size_t i = ins->n; i-- > 0;)
		if (ins->v[i].kind == kind && ins->v[i].closed_ms == 0 &&
		    strcmp(ins->v[i].ns, ns) == 0)
			return &ins->v[i];
	return NULL;
}

static struct incident *find_id(struct incidents *ins, uint64_t id)
{
	for (size_t i = ins->n; i-- > 0;)
		if (ins->v[i].id == id)
			return &ins->v[i];
	return NULL;
}

/* Room for one more: past US_INCIDENTS_KEPT the oldest closed one goes. */
static struct incident *add_slot(struct incidents *ins)
{
	if (ins->n >= US_INCIDENTS_KEPT) {
		for (size_t i = 0; i < ins->n; i++)
			if (ins->v[i].closed_ms) {
				memmove(&ins->v[i], &ins->v[i + 1], (ins->n - i - 1) * sizeof(*ins->v));
				ins->n--;
				break;
			}
	}
	if (ins->n == ins->cap) {
		size_t cap = ins->cap ? ins->cap * 2 : 16;
		struct incident *v = realloc(ins->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		ins->v = v;
		ins->cap = cap;
	}
	memset(&ins->v[ins->n], 0, sizeof(*ins->v));
	return &ins->v[ins->n++];
}

/* ---- the log ---- */

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Appends one change and syncs it; on a failure the log is cut back to
 * where it was, so that a half record never stays before a good one. */
static int append(struct incidents *ins, const struct incident *inc, bool is_open,
		  uint64_t at_ms, struct us_err *err)
{
	json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s,s:I,s:s}", "id", (json_int_t)inc->id, "kind",
			      incident_kind_name(inc->kind), "severity",
			      incident_severity(inc->kind), "ns", inc->ns, "state",
			      is_open ? "open" : "closed", "at_ms", (json_int_t)at_ms, "text",
			      inc->text);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	off_t end = lseek(ins->fd, 0, SEEK_END);
	struct buf rec;
	int rc = 0;

	json_decref(o);
	buf_init(&rec);
	if (!text || end < 0) {
		free(text);
		return err_set(err, text ? US_EIO : US_ENOMEM, "cannot write incident log %s",
			       ins->path);
	}
	if (buf_append_u32le(&rec, (uint32_t)strlen(text)) ||
	    buf_append_u32le(&rec, XXH32(text, strlen(text), 0)) ||
	    buf_append(&rec, text, strlen(text)))
		rc = err_set(err, US_ENOMEM, "out of memory");
	else if (write_all(ins->fd, rec.p, rec.len) != 0 || fdatasync(ins->fd) != 0) {
		rc = err_set(err, US_EIO, "cannot write incident log %s: %s", ins->path,
			     strerror(errno));
		if (ftruncate(ins->fd, end) != 0) {
			/* the torn record is cut off at the next open */
		}
	}
	free(text);
	buf_release(&rec);
	return rc;
}

/* One record's JSON into memory. */
static int apply_record(struct incidents *ins, const char *text, size_t len, struct us_err *err,
			long long off)
{
	json_error_t je;
	json_t *o = json_loadb(text, len, 0, &je);
	json_int_t id = 0, at = 0;
	const char *kind = NULL, *ns = NULL, *state = NULL, *t = NULL;
	struct incident *inc;
	uint8_t k;
	int rc = 0;

	if (!o || json_unpack(o, "{s:I,s:s,s:s,s:s,s:I,s:s}", "id", &id, "kind", &kind, "ns", &ns,
			      "state", &state, "at_ms", &at, "text", &t) != 0 ||
	    !(k = kind_of(kind)) || id <= 0 || at < 0 || strlen(ns) > US_NAMESPACE_MAX_LEN) {
		rc = err_set(err, US_ECORRUPT, "incident log %s: bad record at offset %lld",
			     ins->path, off);
		goto out;
	}
	if (strcmp(state, "open") == 0) {
		if (!(inc = add_slot(ins))) {
			rc = err_set(err, US_ENOMEM, "out of memory");
			goto out;
		}
		inc->id = (uint64_t)id;
		inc->kind = k;
		snprintf(inc->ns, sizeof(inc->ns), "%s", ns);
		snprintf(inc->text, sizeof(inc->text), "%s", t);
		inc->opened_ms = (uint64_t)at;
	} else if ((inc = find_id(ins, (uint64_t)id))) {
		inc->closed_ms = at ? (uint64_t)at : 1;
	}
	if ((uint64_t)id >= ins->next_id)
		ins->next_id = (uint64_t)id + 1;
out:
	json_decref(o);
	return rc;
}

static int load(struct incidents *ins, struct us_err *err)
{
	struct stat st;
	uint8_t *all = NULL;
	size_t len, off = HEADER_BYTES;
	int rc = 0;

	if (fstat(ins->fd, &st) != 0)
		return err_set(err, US_EIO, "cannot read incident log %s: %s", ins->path,
			       strerror(errno));
	if (st.st_size == 0) { /* new: the header */
		uint8_t h[HEADER_BYTES] = {0};

		memcpy(h, magic, 8);
		h[8] = 1;
		buf_put_u32le(h + 12, XXH32(h, 12, 0));
		if (write_all(ins->fd, h, sizeof(h)) != 0 || fdatasync(ins->fd) != 0)
			return err_set(err, US_EIO, "cannot write incident log %s: %s", ins->path,
				       strerror(errno));
		return 0;
	}
	if ((uint64_t)st.st_size > US_INCIDENT_LOG_MAX_BYTES)
		return err_set(err, US_ECORRUPT, "incident log %s is %lld bytes, over %llu",
			       ins->path, (long long)st.st_size,
			       (unsigned long long)US_INCIDENT_LOG_MAX_BYTES);
	len = (size_t)st.st_size;
	if (!(all = malloc(len)))
		return err_set(err, US_ENOMEM, "out of memory");
	if (pread(ins->fd, all, len, 0) != (ssize_t)len) {
		free(all);
		return err_set(err, US_EIO, "cannot read incident log %s", ins->path);
	}
	if (len < HEADER_BYTES || memcmp(all, magic, 8) != 0 || all[8] != 1 ||
	    buf_get_u32le(all + 12) != XXH32(all, 12, 0)) {
		free(all);
		return err_set(err, US_ECORRUPT, "%s is not an incident log (version 1)", ins->path);
	}
	while (off < len && rc == 0) {
		size_t r = len - off, rl = r >= 8 ? buf_get_u32le(all + off) : 0;
		bool is_sane = rl >= 1 && rl <= US_INCIDENT_RECORD_MAX_BYTES;
		bool is_whole = r >= 8 && is_sane && 8 + rl <= r &&
				buf_get_u32le(all + off + 4) == XXH32(all + off + 8, rl, 0);

		if (!is_whole) {
			/* what a crash can leave of the last append: a prefix of
			 * it, or zeros; anything else is corruption */
			bool is_torn = r < 8 || (is_sane && 8 + rl >= r);

			for (size_t i = off; !is_torn && i < len && all[i] == 0; i++)
				is_torn = i == len - 1;
			if (!is_torn) {
				rc = err_set(err, US_ECORRUPT,
					     "incident log %s: bad record at offset %zu", ins->path,
					     off);
				break;
			}
			if (ftruncate(ins->fd, (off_t)off) != 0 || fdatasync(ins->fd) != 0)
				rc = err_set(err, US_EIO, "cannot cut incident log %s: %s",
					     ins->path, strerror(errno));
			break;
		}
		rc = apply_record(ins, (const char *)all + off + 8, rl, err, (long long)off);
		off += 8 + rl;
	}
	free(all);
	return rc;
}

int incidents_open(struct incidents **out, const char *path, incident_fn on_change, void *arg,
		   struct us_err *err)
{
	struct incidents *ins;
	int rc;

	*out = NULL;
	if (strlen(path) >= sizeof(ins->path))
		return err_set(err, US_EINVAL, "incident log path too long: %s", path);
	if (!(ins = calloc(1, sizeof(*ins))))
		return err_set(err, US_ENOMEM, "out of memory");
	snprintf(ins->path, sizeof(ins->path), "%s", path);
	ins->on_change = on_change;
	ins->arg = arg;
	ins->next_id = 1;
	pthread_mutex_init(&ins->lock, NULL);
	ins->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (ins->fd < 0) {
		rc = err_set(err, US_EIO, "cannot open incident log %s: %s", path, strerror(errno));
		incidents_close(ins);
		return rc;
	}
	if ((rc = load(ins, err))) {
		incidents_close(ins);
		return rc;
	}
	*out = ins;
	return 0;
}

void incidents_close(struct incidents *ins)
{
	if (!ins)
		return;
	if (ins->fd >= 0)
		close(ins->fd);
	pthread_mutex_destroy(&ins->lock);
	free(ins->v);
	free(ins);
}

int incidents_raise(struct incidents *ins, uint8_t kind, const char *ns, const char *text,
		    uint64_t now_ms, uint64_t *id, struct us_err *err)
{
	struct incident *inc, made;
	int rc;

	if (!incident_kind_name(kind) || strlen(ns) > US_NAMESPACE_MAX_LEN)
		return err_set(err, US_EINVAL, "bad incident kind %u or namespace", kind);
	pthread_mutex_lock(&ins->lock);
	if ((inc = find_open(ins, kind, ns))) {
		if (id)
			*id = inc->id;
		pthread_mutex_unlock(&ins->lock);
		return 0;
	}
	memset(&made, 0, sizeof(made));
	made.id = ins->next_id;
	made.kind = kind;
	made.opened_ms = now_ms ? now_ms : 1;
	snprintf(made.ns, sizeof(made.ns), "%s", ns);
	snprintf(made.text, sizeof(made.text), "%s", text);
	if ((rc = append(ins, &made, true, made.opened_ms, err)) == 0) {
		if (!(inc = add_slot(ins))) {
			/* durable, not in memory: the next open reads it */
			rc = err_set(err, US_ENOMEM, "out of memory");
		} else {
			*inc = made;
		}
		ins->next_id++;
	}
	pthread_mutex_unlock(&ins->lock);
	if (rc)
		return rc;
	if (id)
		*id = made.id;
	if (ins->on_change)
		ins->on_change(ins->arg, &made);
	return 0;
}

int incidents_clear(struct incidents *ins, uint8_t kind, const char *ns, uint64_t now_ms,
		    struct us_err *err)
{
	struct incident *inc, closed;
	int rc;

	pthread_mutex_lock(&ins->lock);
	if (!(inc = find_open(ins, kind, ns))) {
		pthread_mutex_unlock(&ins->lock);
		return 0;
	}
	closed = *inc;
	closed.closed_ms = now_ms ? now_ms : 1;
	if ((rc = append(ins, &closed, false, closed.closed_ms, err)) == 0)
		*inc = closed;
	pthread_mutex_unlock(&ins->lock);
	if (rc)
		return rc;
	if (ins->on_change)
		ins->on_change(ins->arg, &closed);
	return 0;
}

bool incidents_is_open(struct incidents *ins, uint8_t kind, const char *ns)
{
	bool is_open;

	pthread_mutex_lock(&ins->lock);
	is_open = find_open(ins, kind, ns) != NULL;
	pthread_mutex_unlock(&ins->lock);
	return is_open;
}

int incidents_list(struct incidents *ins, bool is_open_only, struct incident **out, size_t *n,
		   struct us_err *err)
{
	struct incident *v;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&ins->lock);
	v = calloc(ins->n + 1, sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&ins->lock);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	for (size_t i = ins->n; i-- > 0 && *n < US_INCIDENTS_LISTED;)
		if (!is_open_only || ins->v[i].closed_ms == 0)
			v[(*n)++] = ins->v[i];
	pthread_mutex_unlock(&ins->lock);
	*out = v;
	return 0;
}
