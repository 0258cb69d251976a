/* err.c - see err.h. */
#include "err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int err_set(struct us_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

int err_wrap(struct us_err *err, const char *fmt, ...)
{
	char line[2 * US_ERR_MSG_MAX + 2];
	va_list ap;
	int n;

	if (!err)
		return US_EIO;
	va_start(ap, fmt);
	n = vsnprintf(line, US_ERR_MSG_MAX, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n >= US_ERR_MSG_MAX)
		n = US_ERR_MSG_MAX - 1;
	memcpy(line + n, ": ", 2);
	memcpy(line + n + 2, err->msg, strnlen(err->msg, US_ERR_MSG_MAX - 1) + 1);
	memcpy(err->msg, line, US_ERR_MSG_MAX - 1); /* truncated to the record's size */
	err->msg[US_ERR_MSG_MAX - 1] = '\0';
	return err->code;
}

void err_clear(struct us_err *err)
{
	if (!err)
		return;
	err->code = US_OK;
	err->msg[0] = '\0';
}

const char *us_strerror(int code)
{
	switch (code) {
	case US_OK: return "ok";
	case US_EINVAL: return "invalid argument";
	case US_ENOTFOUND: return "not found";
	case US_EEXIST: return "already exists";
	case US_EPRECOND: return "failed precondition";
	case US_ETOOBIG: return "too big";
	case US_EUNAVAIL: return "unavailable";
	case US_ETIMEOUT: return "deadline exceeded";
	case US_EPERM: return "permission denied";
	case US_EUNAUTH: return "unauthenticated";
	case US_EIO: return "i/o or internal error";
	case US_ECORRUPT: return "data corrupt";
	case US_ENOMEM: return "out of memory";
	case US_ECANCELLED: return "cancelled";
	case US_EUNIMPL: return "unimplemented";
	case US_ERANGE: return "out of range";
	case US_ECONFIG: return "bad configuration";
	case US_ENOSPC: return "disk full";
	default: return "unknown error";
	}
}

/* The numbers are grpc_status_code's (grpc/impl/codegen/status.h), fixed by
 * the gRPC wire protocol; lib/err.c keeps them here so that it needs no gRPC
 * header. */
enum {
	GS_OK = 0, GS_CANCELLED = 1, GS_UNKNOWN = 2, GS_INVALID_ARGUMENT = 3,
	GS_DEADLINE_EXCEEDED = 4, GS_NOT_FOUND = 5, GS_ALREADY_EXISTS = 6,
	GS_PERMISSION_DENIED = 7, GS_RESOURCE_EXHAUSTED = 8,
	GS_FAILED_PRECONDITION = 9, GS_ABORTED = 10, GS_OUT_OF_RANGE = 11,
	GS_UNIMPLEMENTED = 12, GS_INTERNAL = 13, GS_UNAVAILABLE = 14,
	GS_DATA_LOSS = 15, GS_UNAUTHENTICATED = 16,
};

int err_to_grpc_status(int code)
{
	switch (code) {
	case US_OK: return GS_OK;
	case US_EINVAL: return GS_INVALID_ARGUMENT;
	case US_ECONFIG: return GS_INVALID_ARGUMENT;
	case US_ENOTFOUND: return GS_NOT_FOUND;
	case US_EEXIST: return GS_ALREADY_EXISTS;
	case US_EPRECOND: return GS_FAILED_PRECONDITION;
	case US_ETOOBIG: return GS_RESOURCE_EXHAUSTED;
	case US_ENOMEM: return GS_RESOURCE_EXHAUSTED;
	case US_ENOSPC: return GS_RESOURCE_EXHAUSTED;
	case US_EUNAVAIL: return GS_UNAVAILABLE;
	case US_ETIMEOUT: return GS_DEADLINE_EXCEEDED;
	case US_EPERM: return GS_PERMISSION_DENIED;
	case US_EUNAUTH: return GS_UNAUTHENTICATED;
	case US_ECORRUPT: return GS_DATA_LOSS;
	case US_ECANCELLED: return GS_CANCELLED;
	case US_EUNIMPL: return GS_UNIMPLEMENTED;
	case US_ERANGE: return GS_OUT_OF_RANGE;
	default: return GS_INTERNAL;
	}
}

int err_from_grpc_status(int status)
{
	switch (status) {
	case GS_OK: return US_OK;
	case GS_CANCELLED: return US_ECANCELLED;
	case GS_INVALID_ARGUMENT: return US_EINVAL;
	case GS_DEADLINE_EXCEEDED: return US_ETIMEOUT;
	case GS_NOT_FOUND: return US_ENOTFOUND;
	case GS_ALREADY_EXISTS: return US_EEXIST;
	case GS_PERMISSION_DENIED: return US_EPERM;
	case GS_RESOURCE_EXHAUSTED: return US_ETOOBIG;
	case GS_FAILED_PRECONDITION: return US_EPRECOND;
	case GS_ABORTED: return US_EUNAVAIL;
	case GS_OUT_OF_RANGE: return US_ERANGE;
	case GS_UNIMPLEMENTED: return US_EUNIMPL;
	case GS_UNAVAILABLE: return US_EUNAVAIL;
	case GS_DATA_LOSS: return US_ECORRUPT;
	case GS_UNAUTHENTICATED: return US_EUNAUTH;
	default: return US_EIO;
	}
}

const char *err_show(char *out, size_t size, const void *p, size_t len)
{
	const uint8_t *b = p;
	size_t at = 0;

	if (size == 0)
		return out;
	for (size_t i = 0; i < len; i++) {
		char tmp[5];
		size_t n;

		if (b[i] >= 0x20 && b[i] < 0x7F) {
			tmp[0] = (char)b[i];
			n = 1;
		} else {
			n = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02X", b[i]);
		}
		if (at + n + 4 > size) { /* room for "..." and the NUL */
			memcpy(out + at, "...", at + 4 <= size ? 3 : 0);
			at += at + 4 <= size ? 3 : 0;
			break;
		}
		memcpy(out + at, tmp, n);
		at += n;
	}
	out[at] = '\0';
	return out;
}
