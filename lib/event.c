/* event.c - see event.h. */
#include "event.h"

#include <stdarg.h>
#include <stdio.h>

#include "err.h"

void event_emit(event_fn fn, void *arg, int level, const char *fmt, ...)
{
	char line[US_ERR_MSG_MAX + 512];
	va_list ap;

	if (!fn)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fn(arg, level, line);
}
