/*
 * alert.h - alert_command (issue 11): each incident's open and close handed
 * to the operator's command, once, on a thread of its own ("us-alert"), so
 * that a command that hangs or fails never holds the stream or a commit.
 *
 * The command runs as `/bin/sh -c COMMAND`, in a process group of its own,
 * with stdin, stdout and stderr on /dev/null, the signal mask and
 * dispositions reset, and the incident in its environment:
 *   UNDERSTUDY_INCIDENT_ID, UNDERSTUDY_INCIDENT_KIND,
 *   UNDERSTUDY_INCIDENT_SEVERITY, UNDERSTUDY_INCIDENT_NAMESPACE,
 *   UNDERSTUDY_INCIDENT_STATE (open or closed), UNDERSTUDY_INCIDENT_TEXT
 * added to the daemon's own. Past timeout_ms its whole group is killed
 * (SIGKILL). Commands run one at a time, in the order posted; at most
 * US_ALERT_QUEUE wait, a post beyond is dropped (and said so to done).
 */
#ifndef US_ALERT_H
#define US_ALERT_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "incidents.h"

struct alert_result {
	bool is_dropped;     /* the queue was full: never run */
	bool is_timeout;     /* killed past the timeout */
	int spawn_errno;     /* it could not be started (0: it was) */
	int exit_status;     /* its exit code; -1 killed by a signal */
	uint64_t ms;         /* how long it ran */
};

/* Runs on the us-alert thread after each command (or on the poster's
 * thread for a dropped one): the daemon logs a failure. */
typedef void (*alert_done_fn)(void *arg, const struct incident *inc,
			      const struct alert_result *r);

struct alert;

/* command (copied) and timeout_ms (1..) ; done may be NULL. */
int alert_new(struct alert **out, const char *command, uint64_t timeout_ms, alert_done_fn done,
	      void *arg, struct us_err *err);
/* Queues inc (copied) for the command; never blocks on the command. */
void alert_post(struct alert *a, const struct incident *inc);
/* Stops: waits for the command running now (at most its timeout); those
 * still queued are not run, each handed to done as dropped. NULL: a
 * no-op. */
void alert_free(struct alert *a);

#endif
