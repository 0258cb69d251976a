/* test_incidents.c - lib/incidents.c: an incident opened and closed once
 * each, its hook called once each, kept across a reopen; a torn last
 * record cut off, a bad one in the middle and a foreign file refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "incidents.h"

static char tmpl[] = "/tmp/us-test-incidents-XXXXXX";

struct calls {
	int opened, closed;
	struct incident last;
};

static void on_change(void *arg, const struct incident *inc)
{
	struct calls *c = arg;

	if (inc->closed_ms)
		c->closed++;
	else
		c->opened++;
	c->last = *inc;
}

static int setup(void **state)
{
	char *dir = strdup(tmpl);

	assert_non_null(mkdtemp(dir));
	*state = dir;
	return 0;
}

static int teardown(void **state)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", (char *)*state);
	assert_int_equal(system(cmd), 0);
	free(*state);
	return 0;
}

static void log_path(void **state, char *out, size_t size)
{
	snprintf(out, size, "%s/incidents.log", (char *)*state);
}

static struct incidents *open_log(const char *path, struct calls *c)
{
	struct incidents *ins = NULL;
	struct us_err err;

	if (incidents_open(&ins, path, on_change, c, &err))
		fail_msg("incidents_open: %s", err.msg);
	return ins;
}

static void test_open_close_once(void **state)
{
	char path[512];
	struct calls c = {0};
	struct incidents *ins;
	struct incident *v;
	struct us_err err;
	uint64_t id1, id2, id3;
	size_t n;

	log_path(state, path, sizeof(path));
	ins = open_log(path, &c);
	assert_int_equal(incidents_raise(ins, INCIDENT_LINK_LOST, "site-a", "link down 12 s", 1000,
					 &id1, &err), 0);
	assert_int_equal(incidents_raise(ins, INCIDENT_LINK_LOST, "site-a", "again", 2000, &id2,
					 &err), 0);
	assert_int_equal(id1, 1);
	assert_int_equal(id2, 1);
	assert_int_equal(c.opened, 1);
	assert_string_equal(c.last.text, "link down 12 s");
	assert_true(incidents_is_open(ins, INCIDENT_LINK_LOST, "site-a"));
	assert_false(incidents_is_open(ins, INCIDENT_LINK_LOST, "site-b"));
	/* another namespace, another kind: other incidents */
	assert_int_equal(incidents_raise(ins, INCIDENT_LINK_LOST, "site-b", "b", 2500, &id3, &err),
			 0);
	assert_int_equal(id3, 2);
	assert_int_equal(incidents_raise(ins, INCIDENT_DISK_LOW, "", "disk", 2600, NULL, &err), 0);
	assert_int_equal(c.opened, 3);
	assert_int_equal(incidents_clear(ins, INCIDENT_LINK_LOST, "site-a", 3000, &err), 0);
	assert_int_equal(incidents_clear(ins, INCIDENT_LINK_LOST, "site-a", 4000, &err), 0);
	assert_int_equal(c.closed, 1);
	assert_int_equal(c.last.id, 1);
	assert_int_equal(c.last.closed_ms, 3000);
	/* clearing what is not open: nothing */
	assert_int_equal(incidents_clear(ins, INCIDENT_LAG, "site-a", 4000, &err), 0);
	assert_int_equal(c.closed, 1);
	/* a raise after the close opens a new one */
	assert_int_equal(incidents_raise(ins, INCIDENT_LINK_LOST, "site-a", "down again", 5000,
					 &id1, &err), 0);
	assert_int_equal(id1, 4);
	assert_int_equal(incidents_list(ins, false, &v, &n, &err), 0);
	assert_int_equal(n, 4);
	assert_int_equal(v[0].id, 4);   /* most recent first */
	assert_int_equal(v[3].id, 1);
	assert_int_equal(v[3].closed_ms, 3000);
	assert_string_equal(incident_kind_name(v[1].kind), "disk_low");
	assert_string_equal(incident_severity(v[1].kind), "critical");
	free(v);
	assert_int_equal(incidents_list(ins, true, &v, &n, &err), 0);
	assert_int_equal(n, 3);
	free(v);
	/* refusals change nothing */
	assert_int_equal(incidents_raise(ins, 0, "site-a", "x", 1, NULL, &err), US_EINVAL);
	assert_int_equal(incidents_raise(ins, INCIDENT_KIND_MAX + 1, "site-a", "x", 1, NULL, &err),
			 US_EINVAL);
	assert_int_equal(c.opened, 4);
	incidents_close(ins);

	/* reopened: the same incidents, no hook for what was already open */
	memset(&c, 0, sizeof(c));
	ins = open_log(path, &c);
	assert_true(incidents_is_open(ins, INCIDENT_LINK_LOST, "site-a"));
	assert_true(incidents_is_open(ins, INCIDENT_LINK_LOST, "site-b"));
	assert_int_equal(incidents_raise(ins, INCIDENT_LINK_LOST, "site-a", "y", 6000, &id1, &err),
			 0);
	assert_int_equal(id1, 4);
	assert_int_equal(c.opened, 0);
	assert_int_equal(incidents_raise(ins, INCIDENT_LAG, "site-a", "lag", 6000, &id1, &err), 0);
	assert_int_equal(id1, 5);       /* ids go on */
	assert_int_equal(incidents_list(ins, false, &v, &n, &err), 0);
	assert_int_equal(n, 5);
	assert_int_equal(v[4].closed_ms, 3000);
	assert_string_equal(v[1].text, "down again");
	free(v);
	incidents_close(ins);
	incidents_close(NULL);
}

static void append_bytes(const char *path, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_APPEND);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, len), (ssize_t)len);
	close(fd);
}

static off_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void test_torn_and_corrupt(void **state)
{
	char path[512];
	struct calls c = {0};
	struct incidents *ins;
	struct us_err err;
	off_t whole;

	log_path(state, path, sizeof(path));
	ins = open_log(path, &c);
	assert_int_equal(incidents_raise(ins, INCIDENT_LAG, "site-a", "lag 30 s", 1000, NULL, &err),
			 0);
	incidents_close(ins);
	whole = file_size(path);

	/* a record cut by a crash: its length and part of its bytes */
	append_bytes(path, "\x40\x00\x00\x00\x11\x22\x33\x44{\"id\":2", 15);
	ins = open_log(path, &c);
	assert_true(incidents_is_open(ins, INCIDENT_LAG, "site-a"));
	incidents_close(ins);
	assert_int_equal(file_size(path), whole);
	/* zeros after the last record (a block allocated, never written) */
	append_bytes(path, "\0\0\0\0\0\0\0\0\0\0\0\0", 12);
	ins = open_log(path, &c);
	incidents_close(ins);
	assert_int_equal(file_size(path), whole);
	/* three bytes: not even a length */
	append_bytes(path, "\x01\x02\x03", 3);
	ins = open_log(path, &c);
	incidents_close(ins);
	assert_int_equal(file_size(path), whole);

	/* a bad record with another after it: refused, naming the offset */
	ins = open_log(path, &c);
	assert_int_equal(incidents_raise(ins, INCIDENT_LAG, "site-b", "x", 1, NULL, &err), 0);
	incidents_close(ins);
	{
		int fd = open(path, O_RDWR);
		uint8_t b;

		assert_true(fd >= 0);
		assert_int_equal(pread(fd, &b, 1, 30), 1); /* inside the first record's JSON */
		b ^= 0x20;
		assert_int_equal(pwrite(fd, &b, 1, 30), 1);
		close(fd);
	}
	assert_int_equal(incidents_open(&ins, path, NULL, NULL, &err), US_ECORRUPT);
	assert_null(ins);
	assert_non_null(strstr(err.msg, "offset 16"));

	/* not an incident log */
	{
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		fputs("hello, this is not a log", f);
		fclose(f);
	}
	assert_int_equal(incidents_open(&ins, path, NULL, NULL, &err), US_ECORRUPT);
	assert_non_null(strstr(err.msg, "not an incident log"));
	/* a directory where the log should be */
	assert_int_equal(incidents_open(&ins, (const char *)*state, NULL, NULL, &err), US_EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_close_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_and_corrupt, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
