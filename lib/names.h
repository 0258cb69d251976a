/*
 * names.h - the SPEC's name and size rules, in one place.
 *
 * namespace  [a-z0-9][a-z0-9_.-]{0,62}
 * account    [A-Za-z0-9_.-]{1,64}, case-sensitive
 * file       same charset as account, 1-64
 * node id    same charset as account, 1-63 (a store's is 32 hex digits)
 * item id    1-1024 bytes, no NUL, no mark byte 0xFC-0xFF
 * item body  0..max_body bytes (max_body <= US_BODY_MAX_BYTES), any bytes;
 *            names_check_body reads a max_body of 0 or over the SPEC's bound as
 *            US_BODY_MAX_BYTES
 *
 * Each check returns 0 or US_EINVAL (US_ETOOBIG for a body over the limit) and
 * fills err with a message that names the offending value, escaped so that it
 * prints on one line.
 */
#ifndef US_NAMES_H
#define US_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

int names_check_namespace(const char *s, size_t len, struct us_err *err);
int names_check_account(const char *s, size_t len, struct us_err *err);
int names_check_file(const char *s, size_t len, struct us_err *err);
int names_check_node_id(const char *s, size_t len, struct us_err *err);
int names_check_id(const uint8_t *id, size_t len, struct us_err *err);
int names_check_body(size_t len, size_t max_body, struct us_err *err);

/* Writes a printable, one-line form of bytes into out (always NUL-terminated,
 * truncated with "..." past out_size): printable ASCII as is, backslash as
 * "\\", everything else as "\xNN". Returns out. */
char *names_escape(const uint8_t *p, size_t len, char *out, size_t out_size);

/* Parses the escapes of `understudy load` and of a BODY argument: "\xNN" (two
 * hex digits), "\\", "\t", "\n", "\r"; every other byte stands for itself.
 * Appends the result to out. Returns 0, US_EINVAL on a bad or truncated escape
 * (err names the column), US_ENOMEM. */
struct buf;
int names_unescape(const char *s, size_t len, struct buf *out, struct us_err *err);

#endif
