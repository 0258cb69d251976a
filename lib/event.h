/*
 * event.h - events a lib/ module hands its daemon for the log: lib/ never
 * logs, the daemon's hook does (STYLE.md).
 */
#ifndef US_EVENT_H
#define US_EVENT_H

/* A daemon's hook: level is an enum log_level (log.h), line one line of
 * key=value fields. */
typedef void (*event_fn)(void *arg, int level, const char *line);

/* Formats the line and hands it to fn (NULL: nothing). */
void event_emit(event_fn fn, void *arg, int level, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
