/*
 * cli.h - inside the `understudy` command line: what its files share
 * (tools/understudy.c: the table, options and the data commands;
 * tools/cli_save.c: save and dump; tools/cli_restore.c: restore;
 * tools/cli_query.c: query).
 */
#ifndef US_CLI_H
#define US_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "understudy.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_NOTFOUND 3

#define MAX_ARGS 16
#define LOAD_BATCH_DEFAULT 1000
#define LOAD_BATCH_MAX_BYTES (8u * 1024u * 1024u)

struct cli {
	const char *addr;
	bool is_json;
	bool is_help;
	bool is_dict;
	bool is_unlogged;
	const char *token_file;
	const char *tls_ca;
	uint64_t limit;
	uint64_t batch;
	uint64_t at;
	const char *output;   /* -o FILE, or "-" for stdout */
	bool is_archive;      /* save --archive */
	bool is_force;        /* promote --force */
	uint64_t wait_ms;     /* switchover --wait DURATION (0: the server's default) */
	bool is_prefer_standby; /* --prefer standby */
	const char *data_dir; /* --data-dir DIR (restore) */
	const char *ns;       /* --namespace NS (restore) */
	const char *until;    /* --until SEQ|TIME (restore) */
	const char *journal_from; /* --journal-from ADDR (restore) */
	bool is_csv;          /* query --csv */
	const char *vm_sep;   /* query --vm-sep S (CSV: between values) */
	const char *sv_sep;   /* query --sv-sep S (CSV, JSON: between subvalues) */
	const char *cmd;
	char *args[MAX_ARGS]; /* positionals after the command */
	int n_args;
	us_client_t *client;
};

struct command {
	const char *name;
	int min_args, max_args;
	const char *usage;
	const char *help;
	int (*run)(struct cli *cli);
	bool is_local;        /* needs no server (dump, restore) */
};

/* One line on stderr ("understudy: ..."); returns code. */
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* err's message, exit 3 for US_ENOTFOUND, else 1. */
int cli_fail_err(const us_err_t *err);
/* Prints obj (taken) compactly, one line, on f; 0 or 1. */
int cli_print_json(FILE *f, json_t *obj);
/* ISO 8601 UTC with ms of a wall time in ms since the epoch, "-" for 0. */
const char *cli_fmt_time_ms(uint64_t ms, char *out, size_t size);
/* Writes len bytes as `load` reads them: printable ASCII as is, \\ \t \n \r,
 * every other byte \xNN. 0, or -1 when f fails. */
int cli_put_escaped(FILE *f, const uint8_t *p, size_t len);

int cmd_save(struct cli *cli);
int cmd_saves(struct cli *cli);
int cmd_dump(struct cli *cli);
int cmd_restore(struct cli *cli);
int cmd_rebuild(struct cli *cli);
int cmd_query(struct cli *cli);

#endif
