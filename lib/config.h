/*
 * config.h - INI configuration with a table-driven schema (one row per key).
 *
 * File syntax (inih): scalar settings as `key = value` lines before any section
 * header; repeated entities as sections whose header is `[kind name]`
 * (`[namespace site-a]`). `#` and `;` start comments. Values:
 *   CFG_STRING     text (up to US_CONFIG_MAX_VALUE_LEN bytes)
 *   CFG_UINT       decimal, within [min, max]
 *   CFG_BOOL       on/off, true/false, yes/no, 1/0
 *   CFG_DURATION   integer + unit: ms, s, m, h (250ms, 5s, 10m, 24h), stored in ms
 *   CFG_SIZE       integer + unit: B, KiB, MiB, GiB (64KiB, 16MiB), stored in bytes
 *   CFG_ENUM       one of choices[], stored as its index (int)
 *   CFG_LIST       one or more addresses: a key given several times, or a value
 *                  with comma-separated items; stored as struct config_list
 * Every key has a default (applied first, parsed by the same code as a file
 * value, bounds included, but not given to check()) so that a program runs
 * with no file at all. A list key's first line in the file replaces its
 * default items; its later lines append. A line is at most
 * US_CONFIG_MAX_VALUE_LEN + 256 bytes; a value is taken as written (no
 * quotes), except that " ;" starts a comment; an indented line is a line of
 * its own, not a continuation. An unknown key, a scalar
 * key given twice, an unknown section kind, a bad value or a value out of
 * bounds is an error naming the file and line:
 *   "conf/c.ini:7: bad value for max_lag: '5 parsecs' (want a duration like 250ms, 5s, 10m, 24h)"
 */
#ifndef US_CONFIG_H
#define US_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum config_type {
	CFG_STRING,
	CFG_UINT,
	CFG_BOOL,
	CFG_DURATION,
	CFG_SIZE,
	CFG_ENUM,
	CFG_LIST,
};

/* Storage of a CFG_LIST value: owned strings, freed by config_release. */
struct config_list {
	char **v;
	size_t n;
};

struct config_key {
	const char *name;
	enum config_type type;
	size_t offset;          /* offsetof(target struct, field) */
	size_t size;            /* CFG_STRING: size of the char array field */
	const char *def;        /* default, as file text; NULL: empty / 0 / no items */
	uint64_t min, max;      /* CFG_UINT, CFG_DURATION, CFG_SIZE bounds (max 0: none) */
	const char *const *choices; /* CFG_ENUM: NULL-terminated */
	/* Extra check of the parsed text (a namespace name, say); may be NULL. */
	int (*check)(const char *value, struct us_err *err);
	const char *help;       /* one line for --help */
};

/* Field types by config type: CFG_STRING char[size]; CFG_UINT uint64_t;
 * CFG_BOOL int; CFG_DURATION uint64_t (ms); CFG_SIZE uint64_t (bytes);
 * CFG_ENUM int; CFG_LIST struct config_list. */

/* A kind of section, `[kind name]`: add() makes room for one more entity in
 * target and returns a pointer to it (defaults are then applied to it with
 * keys), or NULL with err set (a duplicate name, too many). */
struct config_section {
	const char *kind;
	const struct config_key *keys;
	size_t n_keys;
	void *(*add)(void *target, const char *name, struct us_err *err);
};

struct config_schema {
	const struct config_key *keys;      /* top-level keys */
	size_t n_keys;
	const struct config_section *sections;
	size_t n_sections;
};

/* Applies the defaults to target, then, when path is not NULL, the file.
 * Every field of the schema is overwritten first (lists start empty whatever
 * they held: config_release before loading again). Not thread-safe against
 * other users of inih in the process: it sets inih's global options once.
 * Returns 0, US_ECONFIG with err naming file and line, US_ENOMEM. On error
 * target may hold partial values: call config_release and exit. */
int config_load(const struct config_schema *schema, void *target, const char *path,
		struct us_err *err);

/* The same from len bytes of text at p (borrowed for the call) instead of a
 * file: what the file would hold, NUL bytes and all; name stands for the
 * file's path in messages ("NAME:LINE: ..."). One parser serves both. Returns
 * as config_load (US_EIO if no stream can be opened on the bytes). */
int config_load_buffer(const struct config_schema *schema, void *target, const char *name,
		       const void *p, size_t len, struct us_err *err);

/* Frees what config_load allocated in target's top-level keys (CFG_LIST) and
 * empties those lists; NULL schema or target is a no-op. A CFG_LIST key of a
 * section is the owner of the entity's to free (each v[i], then v). */
void config_release(const struct config_schema *schema, void *target);

/* Value parsers, also used by the command-line tools. 0 or US_EINVAL. */
int config_parse_duration_ms(const char *s, uint64_t *ms, struct us_err *err);
int config_parse_size(const char *s, uint64_t *bytes, struct us_err *err);

/* Writes "  key (default D): help" lines for --help to f (a FILE *). */
void config_print_help(const struct config_schema *schema, void *f);

#endif
