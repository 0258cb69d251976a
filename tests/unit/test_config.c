/* test_config.c - the table-driven INI loader (lib/config.h), on a schema of
 * its own that has a key of every type and one kind of section. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "us_limits.h"
#include "names.h"

#define N_NS_MAX 4
/* Longer than any line the loader accepts. */
#define CONFIG_TEST_LONG (4 * US_CONFIG_MAX_VALUE_LEN)

struct ns_conf {
	char name[US_NAMESPACE_MAX_LEN + 1];
	char token[32];
	uint64_t quota_bytes;
	int is_read_only;
};

struct conf {
	char name[US_NAMESPACE_MAX_LEN + 1];
	char listen[128];
	char note[16];
	char alert_command[US_CONFIG_MAX_VALUE_LEN + 1];
	uint64_t threads;
	int is_tls;
	uint64_t max_lag_ms;
	uint64_t journal_max_bytes;
	int commit;
	struct config_list archivers;
	struct config_list peers;
	struct ns_conf ns[N_NS_MAX];
	size_t n_ns;
};

enum { COMMIT_ASYNC, COMMIT_SYNC };
static const char *const commit_choices[] = { "async", "sync", NULL };

static int check_namespace(const char *value, struct us_err *err)
{
	return names_check_namespace(value, strlen(value), err);
}

#define KEY(n, t, field, d) \
	.name = n, .type = t, .offset = offsetof(struct conf, field), .def = d

static const struct config_key conf_keys[] = {
	{ KEY("namespace", CFG_STRING, name, "site-a"), .size = US_NAMESPACE_MAX_LEN + 1,
	  .check = check_namespace, .help = "this site's namespace" },
	{ KEY("listen", CFG_STRING, listen, "127.0.0.1:7441"), .size = 128,
	  .help = "gRPC address" },
	{ KEY("note", CFG_STRING, note, NULL), .size = 16, .help = "a short note" },
	{ KEY("alert_command", CFG_STRING, alert_command, NULL),
	  .size = US_CONFIG_MAX_VALUE_LEN + 1, .help = "run on an alert" },
	{ KEY("threads", CFG_UINT, threads, "2"), .min = 1, .max = 64,
	  .help = "worker threads" },
	{ KEY("tls", CFG_BOOL, is_tls, "off"), .help = "use TLS" },
	{ KEY("max_lag", CFG_DURATION, max_lag_ms, "5s"), .min = 1, .max = 86400000,
	  .help = "bound on unshipped updates" },
	{ KEY("journal_max", CFG_SIZE, journal_max_bytes, "1GiB"), .min = 65536,
	  .help = "most unacknowledged journal" },
	{ KEY("commit", CFG_ENUM, commit, "async"), .choices = commit_choices,
	  .help = "commit mode" },
	{ KEY("archiver", CFG_LIST, archivers, "127.0.0.1:7440"), .help = "archivers" },
	{ KEY("peer", CFG_LIST, peers, NULL), .help = "peers" },
};

#define NS_KEY(n, t, field, d) \
	.name = n, .type = t, .offset = offsetof(struct ns_conf, field), .def = d

static const struct config_key ns_keys[] = {
	{ NS_KEY("token", CFG_STRING, token, "none"), .size = 32, .help = "token" },
	{ NS_KEY("quota", CFG_SIZE, quota_bytes, "16MiB"), .max = 1024ull << 30,
	  .help = "store quota" },
	{ NS_KEY("read_only", CFG_BOOL, is_read_only, NULL), .help = "refuse writes" },
};

static void *add_ns(void *target, const char *name, struct us_err *err)
{
	struct conf *c = target;
	struct ns_conf *ns;

	if (names_check_namespace(name, strlen(name), err))
		return NULL;
	for (size_t i = 0; i < c->n_ns; i++) {
		if (strcmp(c->ns[i].name, name) == 0) {
			err_set(err, US_EINVAL, "duplicate namespace '%s'", name);
			return NULL;
		}
	}
	if (c->n_ns == N_NS_MAX) {
		err_set(err, US_EINVAL, "more than %d namespaces", N_NS_MAX);
		return NULL;
	}
	ns = &c->ns[c->n_ns++];
	memset(ns, 0, sizeof(*ns));
	memcpy(ns->name, name, strlen(name) + 1);
	return ns;
}

static const struct config_section sections[] = {
	{ .kind = "namespace", .keys = ns_keys, .n_keys = sizeof(ns_keys) / sizeof(ns_keys[0]),
	  .add = add_ns },
};

static const struct config_schema schema = {
	.keys = conf_keys,
	.n_keys = sizeof(conf_keys) / sizeof(conf_keys[0]),
	.sections = sections,
	.n_sections = 1,
};

/* Writes len bytes of text to a new temp file; its name goes to path. */
static void write_conf_bytes(const char *text, size_t len, char *path, size_t path_size)
{
	int fd;

	assert_true(path_size > 32);
	strcpy(path, "/tmp/test_config_XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static void write_conf(const char *text, char *path, size_t path_size)
{
	write_conf_bytes(text, strlen(text), path, path_size);
}

/* Loads text into c; returns config_load's code, err filled. */
static int load_text(const char *text, struct conf *c, struct us_err *err, char *path,
		     size_t path_size)
{
	int rc;

	memset(c, 0, sizeof(*c));
	write_conf(text, path, path_size);
	rc = config_load(&schema, c, path, err);
	assert_int_equal(unlink(path), 0);
	return rc;
}

/* The text must be refused with US_ECONFIG, naming path:line and containing
 * want (when not NULL). */
static void assert_refused(const char *text, int line, const char *want)
{
	char path[64], where[96];
	struct us_err err;
	struct conf c;
	int rc;

	rc = load_text(text, &c, &err, path, sizeof(path));
	config_release(&schema, &c);
	if (rc != US_ECONFIG)
		fail_msg("not refused (%d): %s", rc, text);
	assert_int_equal(err.code, US_ECONFIG);
	snprintf(where, sizeof(where), "%s:%d: ", path, line);
	if (strncmp(err.msg, where, strlen(where)) != 0)
		fail_msg("want '%s' at the start of '%s'", where, err.msg);
	if (want && !strstr(err.msg, want))
		fail_msg("want '%s' in '%s'", want, err.msg);
	assert_null(strchr(err.msg, '\n'));
}

static void test_defaults(void **state)
{
	struct us_err err;
	struct conf c;

	(void)state;
	memset(&c, 0x5a, sizeof(c)); /* config_load must not trust what is there */
	c.n_ns = 0;
	assert_int_equal(config_load(&schema, &c, NULL, &err), 0);
	assert_string_equal(c.name, "site-a");
	assert_string_equal(c.listen, "127.0.0.1:7441");
	assert_string_equal(c.note, "");
	assert_true(c.threads == 2);
	assert_int_equal(c.is_tls, 0);
	assert_true(c.max_lag_ms == 5000);
	assert_true(c.journal_max_bytes == 1ull << 30);
	assert_int_equal(c.commit, COMMIT_ASYNC);
	assert_int_equal(c.archivers.n, 1);
	assert_string_equal(c.archivers.v[0], "127.0.0.1:7440");
	assert_int_equal(c.peers.n, 0);
	assert_null(c.peers.v);
	assert_int_equal(c.n_ns, 0);
	config_release(&schema, &c);
	assert_int_equal(c.archivers.n, 0);
	assert_null(c.archivers.v);
	config_release(&schema, &c); /* twice is harmless */
}

static void test_good_file(void **state)
{
	static const char text[] =
		"# a collector\n"
		"; with both comment styles\n"
		"\n"
		"namespace = site-b\n"
		"listen=0.0.0.0:9000\n"
		"  threads = 64  \n"
		"tls = yes\n"
		"max_lag = 250ms ; inline comment\n"
		"journal_max = 64KiB\n"
		"commit = sync\n"
		"archiver = 10.0.0.1:7440\n"
		"archiver = 10.0.0.2:7440, 10.0.0.3:7440 ,10.0.0.4:7440\n"
		"peer = p1\n"
		"note = fifteen chars..\n"
		"\n"
		"[namespace alpha]\n"
		"token = secret-a\n"
		"quota = 1GiB\n"
		"[namespace beta]\n"
		"read_only = true\n"
		"[namespace gamma]\n";
	char path[64];
	struct us_err err;
	struct conf c;

	(void)state;
	assert_int_equal(load_text(text, &c, &err, path, sizeof(path)), 0);
	assert_string_equal(c.name, "site-b");
	assert_string_equal(c.listen, "0.0.0.0:9000");
	assert_string_equal(c.note, "fifteen chars..");
	assert_true(c.threads == 64);
	assert_int_equal(c.is_tls, 1);
	assert_true(c.max_lag_ms == 250);
	assert_true(c.journal_max_bytes == 65536);
	assert_int_equal(c.commit, COMMIT_SYNC);
	/* the file's items replace the default, repeated and comma-separated */
	assert_int_equal(c.archivers.n, 4);
	assert_string_equal(c.archivers.v[0], "10.0.0.1:7440");
	assert_string_equal(c.archivers.v[1], "10.0.0.2:7440");
	assert_string_equal(c.archivers.v[2], "10.0.0.3:7440");
	assert_string_equal(c.archivers.v[3], "10.0.0.4:7440");
	assert_int_equal(c.peers.n, 1);
	assert_string_equal(c.peers.v[0], "p1");
	/* sections, each with its defaults and its own values */
	assert_int_equal(c.n_ns, 3);
	assert_string_equal(c.ns[0].name, "alpha");
	assert_string_equal(c.ns[0].token, "secret-a");
	assert_true(c.ns[0].quota_bytes == 1ull << 30);
	assert_int_equal(c.ns[0].is_read_only, 0);
	assert_string_equal(c.ns[1].name, "beta");
	assert_string_equal(c.ns[1].token, "none");
	assert_true(c.ns[1].quota_bytes == 16ull << 20);
	assert_int_equal(c.ns[1].is_read_only, 1);
	assert_string_equal(c.ns[2].name, "gamma");
	assert_string_equal(c.ns[2].token, "none");
	config_release(&schema, &c);
}

static void test_crlf_and_long_section_name(void **state)
{
	char text[512], name[US_NAMESPACE_MAX_LEN + 1];
	char path[64];
	struct us_err err;
	struct conf c;

	(void)state;
	/* a 63-byte namespace: longer than the 49 bytes inih keeps of a section */
	memset(name, 'n', US_NAMESPACE_MAX_LEN);
	name[US_NAMESPACE_MAX_LEN] = '\0';
	snprintf(text, sizeof(text),
		 "threads = 3\r\ncommit = sync\r\n[namespace %s]\r\ntoken = t\r\n", name);
	assert_int_equal(load_text(text, &c, &err, path, sizeof(path)), 0);
	assert_true(c.threads == 3);
	assert_int_equal(c.commit, COMMIT_SYNC);
	assert_int_equal(c.n_ns, 1);
	assert_string_equal(c.ns[0].name, name);
	assert_string_equal(c.ns[0].token, "t");
	config_release(&schema, &c);
}

static void test_errors(void **state)
{
	char long_line[CONFIG_TEST_LONG];

	(void)state;
	assert_refused("threads = 2\n\nfoo = 1\n", 3, "unknown key 'foo'");
	assert_refused("threads = 2\n# c\nthreads = 3\n", 3,
		       "duplicate key 'threads' (first set on line 1)");
	assert_refused("tls = on\nmax_lag = 5 parsecs\n", 2,
		       "bad value for max_lag: '5 parsecs' (want a duration like 250ms, 5s, 10m, 24h)");
	assert_refused("max_lag = 5\n", 1, "want a duration");
	assert_refused("max_lag = 25h\n", 1, "value for max_lag out of range: 25h (want 1ms..24h)");
	assert_refused("max_lag = 0ms\n", 1, "out of range");
	assert_refused("\n\n\n\njournal_max = 12 potatoes\n", 5,
		       "bad value for journal_max: '12 potatoes' (want a size like 64KiB, 16MiB, 1GiB)");
	assert_refused("journal_max = 64KB\n", 1, "want a size");
	assert_refused("journal_max = 1KiB\n", 1,
		       "value for journal_max out of range: 1KiB (want at least 64KiB)");
	assert_refused("threads = 0\n", 1, "value for threads out of range: 0 (want 1..64)");
	assert_refused("threads = 65\n", 1, "out of range: 65");
	assert_refused("threads = -1\n", 1, "want an unsigned integer");
	assert_refused("threads = 99999999999999999999999\n", 1, "want an unsigned integer");
	assert_refused("threads = 2x\n", 1, "want an unsigned integer");
	assert_refused("commit = maybe\n", 1,
		       "bad value for commit: 'maybe' (want one of async, sync)");
	assert_refused("tls = perhaps\n", 1, "bad value for tls: 'perhaps'");
	assert_refused("threads = 2\n[zone x]\nfoo = 1\n", 2, "unknown section kind 'zone'");
	assert_refused("namespace = Site_A\n", 1, "bad value for namespace");
	assert_refused("note = sixteen chars...\n", 1, "too long");
	assert_refused("archiver = a,,b\n", 1, "empty item");
	assert_refused("archiver = \n", 1, "empty item");
	assert_refused("threads =\n", 1, "want an unsigned integer");
	/* sections: keys of their own, the add() callback's refusals */
	assert_refused("[namespace a]\nthreads = 2\n", 2, "unknown key 'threads' in [namespace a]");
	assert_refused("[namespace a]\nquota = 1KiB\nquota = 2KiB\n", 3, "duplicate key 'quota'");
	assert_refused("[namespace a]\n[namespace b]\n[namespace a]\n", 3,
		       "duplicate namespace 'a'");
	assert_refused("[namespace Bad]\n", 1, "bad namespace");
	assert_refused("[namespace]\n", 1, "want [kind name]");
	assert_refused("[namespace a b]\n", 1, "want [kind name]");
	assert_refused("[]\n", 1, "want [kind name]");
	assert_refused("[namespace a]\nquota = lots\n", 2, "bad value for quota");
	/* syntax errors inih finds, and the first error wins */
	assert_refused("threads = 2\njust words\nfoo = 1\n", 2, "syntax error");
	assert_refused("threads = 2\n[namespace a\n", 2, "syntax error");
	assert_refused("foo = 1\njust words\n", 1, "unknown key");
	/* an indented line is not a continuation of the previous value */
	assert_refused("threads = 2\n  threads = 3\n", 2, "duplicate key");
	/* a line too long for the parser */
	memset(long_line, 'x', sizeof(long_line) - 1);
	memcpy(long_line, "note = ", 7);
	long_line[sizeof(long_line) - 2] = '\n';
	long_line[sizeof(long_line) - 1] = '\0';
	assert_refused(long_line, 1, "line longer than");
}

static void test_line_limits(void **state)
{
	static const char with_nul[] = "threads = 2\nnote = a\0b\n";
	char text[CONFIG_TEST_LONG], path[64];
	struct us_err err;
	struct conf c;
	size_t n;

	(void)state;
	/* the longest value fits on a line */
	n = (size_t)snprintf(text, sizeof(text), "alert_command = ");
	memset(text + n, 'c', US_CONFIG_MAX_VALUE_LEN);
	text[n + US_CONFIG_MAX_VALUE_LEN] = '\n';
	text[n + US_CONFIG_MAX_VALUE_LEN + 1] = '\0';
	assert_int_equal(load_text(text, &c, &err, path, sizeof(path)), 0);
	assert_int_equal(strlen(c.alert_command), US_CONFIG_MAX_VALUE_LEN);
	config_release(&schema, &c);
	/* one more byte is refused */
	text[n + US_CONFIG_MAX_VALUE_LEN] = 'c';
	text[n + US_CONFIG_MAX_VALUE_LEN + 1] = '\n';
	text[n + US_CONFIG_MAX_VALUE_LEN + 2] = '\0';
	assert_refused(text, 1, "value for alert_command too long: 1025 bytes (max 1024)");
	/* a NUL byte in a line */
	memset(&c, 0, sizeof(c));
	write_conf_bytes(with_nul, sizeof(with_nul) - 1, path, sizeof(path));
	assert_int_equal(config_load(&schema, &c, path, &err), US_ECONFIG);
	assert_int_equal(unlink(path), 0);
	assert_non_null(strstr(err.msg, ":2: NUL byte"));
	config_release(&schema, &c);
}

static void test_missing_file(void **state)
{
	struct us_err err;
	struct conf c;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(config_load(&schema, &c, "/nonexistent/dir/c.ini", &err), US_ECONFIG);
	assert_string_equal(err.msg,
			    "cannot read config /nonexistent/dir/c.ini: No such file or directory");
	config_release(&schema, &c);
}

static void test_bad_default(void **state)
{
	static const struct config_key keys[] = {
		{ KEY("threads", CFG_UINT, threads, "lots") },
	};
	static const struct config_schema bad = { .keys = keys, .n_keys = 1 };
	struct us_err err;
	struct conf c;

	(void)state;
	assert_int_equal(config_load(&bad, &c, NULL, &err), US_ECONFIG);
	assert_non_null(strstr(err.msg, "bad default"));
}

static void test_parse_duration(void **state)
{
	static const struct {
		const char *s;
		uint64_t ms;
	} good[] = {
		{ "250ms", 250 }, { "5s", 5000 }, { "10m", 600000 }, { "24h", 86400000 },
		{ "0ms", 0 }, { "0s", 0 }, { "1h", 3600000 }, { "007s", 7000 },
	};
	static const char *const bad[] = {
		"", "5", "ms", "5 s", "5S", "5sec", "-5s", "+5s", "1.5s", "5s ", " 5s", "5d",
		"99999999999999999999h", "5124095576030432h", "5ms5",
	};
	struct us_err err;
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(config_parse_duration_ms(good[i].s, &v, &err), 0);
		assert_true(v == good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (config_parse_duration_ms(bad[i], &v, &err) != US_EINVAL)
			fail_msg("'%s' parsed", bad[i]);
		assert_int_equal(err.code, US_EINVAL);
	}
	assert_int_equal(config_parse_duration_ms("5 parsecs", &v, &err), US_EINVAL);
	assert_non_null(strstr(err.msg, "'5 parsecs'"));
	assert_non_null(strstr(err.msg, "250ms, 5s, 10m, 24h"));
}

static void test_parse_size(void **state)
{
	static const struct {
		const char *s;
		uint64_t bytes;
	} good[] = {
		{ "64KiB", 65536 }, { "16MiB", 16777216 }, { "1GiB", 1073741824 },
		{ "10B", 10 }, { "0B", 0 }, { "4096GiB", 4096ull << 30 },
	};
	static const char *const bad[] = {
		"", "64", "64KB", "64kib", "64 KiB", "KiB", "1TiB", "-1B", "1.5MiB",
		"17179869184GiB", "99999999999999999999B",
	};
	struct us_err err;
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(config_parse_size(good[i].s, &v, &err), 0);
		assert_true(v == good[i].bytes);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (config_parse_size(bad[i], &v, &err) != US_EINVAL)
			fail_msg("'%s' parsed", bad[i]);
	}
}

static void test_bools_and_lists(void **state)
{
	static const char *const yes[] = { "on", "true", "yes", "1", "ON", "True" };
	static const char *const no[] = { "off", "false", "no", "0", "OFF" };
	char text[64], path[64];
	struct us_err err;
	struct conf c;

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		snprintf(text, sizeof(text), "tls = %s\n", yes[i]);
		assert_int_equal(load_text(text, &c, &err, path, sizeof(path)), 0);
		assert_int_equal(c.is_tls, 1);
		config_release(&schema, &c);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		snprintf(text, sizeof(text), "tls = %s\n", no[i]);
		assert_int_equal(load_text(text, &c, &err, path, sizeof(path)), 0);
		assert_int_equal(c.is_tls, 0);
		config_release(&schema, &c);
	}
	/* comma-separated only */
	assert_int_equal(load_text("peer = a,b , c\n", &c, &err, path, sizeof(path)), 0);
	assert_int_equal(c.peers.n, 3);
	assert_string_equal(c.peers.v[0], "a");
	assert_string_equal(c.peers.v[1], "b");
	assert_string_equal(c.peers.v[2], "c");
	assert_int_equal(c.archivers.n, 1); /* untouched: its default */
	config_release(&schema, &c);
	/* repeated only */
	assert_int_equal(load_text("peer = x\npeer = y\npeer = z\n", &c, &err, path,
				   sizeof(path)), 0);
	assert_int_equal(c.peers.n, 3);
	assert_string_equal(c.peers.v[2], "z");
	config_release(&schema, &c);
}

/* config_load_buffer: the file's parser on bytes in memory, NUL bytes
 * included, with the caller's name in messages. */
static void test_load_buffer(void **state)
{
	static const char text[] = "threads = 7\ncommit = sync\npeer = a, b\n"
				   "[namespace alpha]\nquota = 1GiB\n";
	static const char with_nul[] = "threads = 7\ntls = o\0n\n";
	struct us_err err;
	struct conf c;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_int_equal(config_load_buffer(&schema, &c, "mem", text, strlen(text), &err), 0);
	assert_true(c.threads == 7);
	assert_int_equal(c.commit, COMMIT_SYNC);
	assert_int_equal(c.peers.n, 2);
	assert_string_equal(c.peers.v[1], "b");
	assert_int_equal(c.n_ns, 1);
	assert_true(c.ns[0].quota_bytes == 1ull << 30);
	config_release(&schema, &c);

	/* nothing at all: the defaults, as with no file */
	memset(&c, 0, sizeof(c));
	assert_int_equal(config_load_buffer(&schema, &c, "mem", NULL, 0, &err), 0);
	assert_true(c.threads == 2);
	assert_int_equal(c.archivers.n, 1);
	config_release(&schema, &c);

	memset(&c, 0, sizeof(c));
	assert_int_equal(config_load_buffer(&schema, &c, "mem", "threads = 65\n", 13, &err),
			 US_ECONFIG);
	assert_string_equal(err.msg, "mem:1: value for threads out of range: 65 (want 1..64)");
	config_release(&schema, &c);

	memset(&c, 0, sizeof(c));
	assert_int_equal(config_load_buffer(&schema, &c, "mem", with_nul, sizeof(with_nul) - 1,
					    &err), US_ECONFIG);
	assert_string_equal(err.msg, "mem:2: NUL byte in line");
	config_release(&schema, &c);
}

static void test_help(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	f = open_memstream(&text, &len);
	assert_non_null(f);
	config_print_help(&schema, f);
	assert_int_equal(fclose(f), 0);
	assert_non_null(strstr(text, "  threads (default 2): worker threads\n"));
	assert_non_null(strstr(text, "  commit (default async; one of async, sync): commit mode\n"));
	assert_non_null(strstr(text, "  note (default none): a short note\n"));
	assert_non_null(strstr(text, "[namespace NAME]"));
	assert_non_null(strstr(text, "    quota (default 16MiB): store quota\n"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_good_file),
		cmocka_unit_test(test_crlf_and_long_section_name),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_line_limits),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_bad_default),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_bools_and_lists),
		cmocka_unit_test(test_load_buffer),
		cmocka_unit_test(test_help),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
