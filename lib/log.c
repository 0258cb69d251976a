/*
 * log.c - see log.h.
 *
 * The settings are written once by log_init, before the program starts its
 * threads, and only read afterwards. A line is built in a buffer on the stack
 * and written with one write(2); lines are at most PIPE_BUF bytes, so that
 * lines of several threads (or processes sharing a pipe) never interleave.
 */
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX PIPE_BUF
#define LOG_TRUNCATED "..."

static const char *log_program = "understudy";
static enum log_level log_max_level = LOG_LVL_INFO;
static bool log_is_syslog;

static const char *const level_names[] = {
	[LOG_LVL_ERROR] = "ERROR",
	[LOG_LVL_WARN] = "WARN",
	[LOG_LVL_INFO] = "INFO",
	[LOG_LVL_DEBUG] = "DEBUG",
};

static const int level_priorities[] = {
	[LOG_LVL_ERROR] = LOG_ERR,
	[LOG_LVL_WARN] = LOG_WARNING,
	[LOG_LVL_INFO] = LOG_INFO,
	[LOG_LVL_DEBUG] = LOG_DEBUG,
};

void log_init(const char *program, enum log_level level, int is_syslog)
{
	if (log_is_syslog)
		closelog();
	log_program = program ? program : "understudy";
	log_max_level = level;
	log_is_syslog = is_syslog != 0;
	if (log_is_syslog)
		openlog(log_program, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

int log_level_parse(const char *s)
{
	if (!s)
		return -1;
	for (int i = LOG_LVL_ERROR; i <= LOG_LVL_DEBUG; i++) {
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	}
	if (strcasecmp(s, "warning") == 0)
		return LOG_LVL_WARN;
	return -1;
}

/* "2026-11-25T10:00:00.123Z" into out (at least 25 bytes); returns its length. */
static size_t format_time(char *out, size_t out_size)
{
	struct timespec ts;
	struct tm tm;
	size_t n;
	int m;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || !gmtime_r(&ts.tv_sec, &tm))
		return (size_t)snprintf(out, out_size, "0000-00-00T00:00:00.000Z");
	n = strftime(out, out_size, "%Y-%m-%dT%H:%M:%S", &tm);
	m = snprintf(out + n, out_size - n, ".%03ldZ", ts.tv_nsec / 1000000);
	if (m < 0)
		return n;
	return n + (size_t)m;
}

/* One event is one line: a newline or carriage return inside the message
 * would split it, so they become spaces. */
static void flatten(char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n' || p[i] == '\r')
			p[i] = ' ';
	}
}

void log_event(enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	size_t head, len, room;
	int saved_errno = errno;
	va_list ap;
	int n;

	if ((int)level < LOG_LVL_ERROR || level > LOG_LVL_DEBUG || level > log_max_level)
		return;
	head = format_time(line, sizeof(line));
	n = snprintf(line + head, sizeof(line) - head, " %s %s ", level_names[level],
		     log_program);
	if (n < 0)
		goto out_restore;
	head += (size_t)n;
	if (head >= sizeof(line) - 1)
		head = sizeof(line) - 2;
	room = sizeof(line) - 1 - head; /* keep one byte for the newline */
	va_start(ap, fmt);
	n = vsnprintf(line + head, room + 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		goto out_restore;
	if ((size_t)n > room) {
		/* cut, and say so */
		len = sizeof(line) - 1;
		memcpy(line + len - strlen(LOG_TRUNCATED), LOG_TRUNCATED, strlen(LOG_TRUNCATED));
	} else {
		len = head + (size_t)n;
	}
	flatten(line + head, len - head);
	line[len++] = '\n';
	if (log_is_syslog) {
		/* syslog adds its own time and ident: send the message only */
		syslog(level_priorities[level], "%.*s", (int)(len - 1 - head), line + head);
	}
	/* One write per line; a failed write to stderr has nowhere to be reported. */
	while (write(STDERR_FILENO, line, len) < 0 && errno == EINTR)
		;
out_restore:
	errno = saved_errno;
}

void log_grpc_line(int is_error, const char *file, int line, const char *msg)
{
	char flat[1024];
	size_t n = 0;

	/* one line, and no quote that would end the value early */
	for (const char *p = msg; *p && n + 1 < sizeof(flat); p++)
		flat[n++] = *p == '\n' || *p == '\r' ? ' ' : *p == '"' ? '\'' : *p;
	flat[n] = '\0';
	log_event(LOG_LVL_DEBUG, "event=grpc_log severity=%s file=%s:%d msg=\"%s\"",
		  is_error ? "error" : "info", file, line, flat);
}

void log_event_line(void *arg, int level, const char *line)
{
	(void)arg;
	log_event((enum log_level)level, "%s", line);
}
