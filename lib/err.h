/*
 * err.h - error codes and the caller-owned error record.
 *
 * A function that can fail returns 0 or a negative US_E* code (include/understudy.h)
 * and, when given a struct us_err, fills it with the code and a one-line message:
 * lower case, no final period, what failed first and then why, naming the thing
 * ("cannot open store ./data: lock held by another process").
 */
#ifndef US_ERR_H
#define US_ERR_H

#include "understudy.h"

/* Sets err (may be NULL) to code and the formatted message; returns code, so
 * that `return err_set(err, US_EINVAL, "...")` reads as one statement. */
int err_set(struct us_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefixes err's message with the formatted context ("ctx: old message");
 * returns err->code. */
int err_wrap(struct us_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Clears err to US_OK and an empty message. err may be NULL. */
void err_clear(struct us_err *err);
/* Someone's text (p, len bytes) fit to quote in a one-line message: into out
 * (size bytes, NUL-terminated), printable ASCII as it is, other bytes as
 * \xNN, cut with "..." when it does not fit. Returns out. */
const char *err_show(char *out, size_t size, const void *p, size_t len);

/* gRPC status code (grpc_status_code numbers) of a US_E* code, and back. */
int err_to_grpc_status(int code);
int err_from_grpc_status(int status);

#endif
