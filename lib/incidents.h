/*
 * incidents.h - a daemon's incidents (issue 11): a condition an operator
 * must hear of (a link lost, a lag over its bound, a missed canary...),
 * opened once when it starts to hold, closed once when it clears, and kept
 * durably so that a restart neither forgets an open one nor opens it again.
 *
 * An incident is keyed by (kind, namespace): raising one that is open
 * changes nothing; clearing one that is not open changes nothing. Each
 * change is appended to the daemon's incident log and synced before it is
 * handed to the daemon's hook (which logs it and runs alert_command), so a
 * hook never hears of a change a crash could undo, and hears of each open
 * and each close exactly once (a crash between the sync and the hook loses
 * that one call, never repeats it).
 *
 * The log (docs/incidents-format.md): a 16-byte header, then records.
 *   header: 8 bytes magic "USINCID\0", u8 version 1, 3 bytes zero, u32le
 *           XXH32 of the 12 bytes before it (seed 0)
 *   record: u32le length L (1 .. US_INCIDENT_RECORD_MAX_BYTES), u32le XXH32
 *           of the L bytes that follow (seed 0), then L bytes of JSON:
 *           {"id":N,"kind":"link_lost","severity":"critical","ns":"site-a",
 *            "state":"open"|"closed","at_ms":N,"text":"..."}
 * Every append is one write then fdatasync. At open, the log is read to its
 * end; a torn last record (short, or a bad checksum, with nothing valid
 * after it: the append a crash cut) is cut off; a bad record followed by
 * more bytes is corruption, refused naming the file and offset.
 */
#ifndef US_INCIDENTS_H
#define US_INCIDENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "us_limits.h"

enum incident_kind {
	INCIDENT_LINK_LOST = 1,
	INCIDENT_LAG,
	INCIDENT_CANARY_MISSED,
	INCIDENT_VERIFY_MISMATCH,
	INCIDENT_FENCED,
	INCIDENT_AUTH_FAILURE,
	INCIDENT_DISK_LOW,
	INCIDENT_SYNC_FALLBACK,
	INCIDENT_FULL_COPY,
	INCIDENT_STORE_ERROR,
	INCIDENT_KIND_MAX = INCIDENT_STORE_ERROR,
};

struct incident {
	uint64_t id;                 /* 1, 2, 3... in the order opened */
	uint8_t kind;                /* enum incident_kind */
	char ns[US_NAMESPACE_MAX_LEN + 1]; /* "" for the daemon as a whole */
	uint64_t opened_ms;          /* wall clock */
	uint64_t closed_ms;          /* 0 while open */
	char text[US_INCIDENT_TEXT_MAX_LEN + 1];
};

/* "link_lost", ...; NULL for a kind that is not one. */
const char *incident_kind_name(uint8_t kind);
/* "critical" or "warning": a kind's severity. */
const char *incident_severity(uint8_t kind);

struct incidents;

/* Runs after each change is durable, outside the module's lock, on the
 * thread that made it: inc (borrowed for the call) has closed_ms 0 when
 * it was opened. */
typedef void (*incident_fn)(void *arg, const struct incident *inc);

/* Opens (creating) the log at path and reads it. on_change may be NULL.
 * US_ECORRUPT naming the file and offset for a log it cannot trust; US_EIO
 * for a file it cannot read or write. */
int incidents_open(struct incidents **out, const char *path, incident_fn on_change, void *arg,
		   struct us_err *err);
void incidents_close(struct incidents *ins);  /* NULL: a no-op */

/* Opens incident (kind, ns) at now_ms with text, unless it is open: 0 and
 * *id (may be NULL) its id either way. US_EIO when it cannot be made
 * durable (nothing changed then). */
int incidents_raise(struct incidents *ins, uint8_t kind, const char *ns, const char *text,
		    uint64_t now_ms, uint64_t *id, struct us_err *err);
/* Closes incident (kind, ns) at now_ms if it is open. */
int incidents_clear(struct incidents *ins, uint8_t kind, const char *ns, uint64_t now_ms,
		    struct us_err *err);
/* Whether (kind, ns) is open. */
bool incidents_is_open(struct incidents *ins, uint8_t kind, const char *ns);

/* The incidents (only the open ones with is_open_only), most recent first,
 * at most US_INCIDENTS_LISTED: *out is a new array (free()) of *n. */
int incidents_list(struct incidents *ins, bool is_open_only, struct incident **out, size_t *n,
		   struct us_err *err);

#endif
