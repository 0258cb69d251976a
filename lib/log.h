/*
 * log.h - one line per event on stderr (and syslog when enabled):
 *   2026-11-25T10:00:00.123Z INFO collector ns=site-a event=resume seq=1042 gen=1
 * Used by the daemons and tools only: lib/ modules return errors and never log.
 * Thread-safe: each line is written with one write(2).
 */
#ifndef US_LOG_H
#define US_LOG_H

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN = 1, LOG_LVL_INFO = 2, LOG_LVL_DEBUG = 3 };

/* program: the word after the level ("collector"); kept by pointer, so static.
 * is_syslog: also send each line to syslog(3) under that ident. */
void log_init(const char *program, enum log_level level, int is_syslog);
/* Parses "error", "warn", "info", "debug"; -1 if none. */
int log_level_parse(const char *s);
/* fmt is the key=value part of the line, without a newline. */
void log_event(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line of gRPC core's own log (rpc_set_log_hook's signature), as one DEBUG
 * event: its internal error dumps are no reason a user acts on, the
 * daemon's own line after it is. */
void log_grpc_line(int is_error, const char *file, int line, const char *msg);

/* An event_fn (event.h) for the daemons: a lib/ module's event line into
 * this log, at its level. arg is unused. */
void log_event_line(void *arg, int level, const char *line);

#define log_error(...) log_event(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_event(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_event(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_event(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
