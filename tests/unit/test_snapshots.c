/* test_snapshots.c - lib/snapshots.c: ids, the bound per namespace, release,
 * idle expiry, ending with the store; on a real store in a temp dir. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "snapshots.h"

struct fixture {
	char dir[64];
	struct store *s;
};

/* Commits one entry alone; returns its last seq. */
static uint64_t commit_entry(struct store *s, struct entry *e)
{
	struct store_commit c = {.ops = e, .n_ops = 1};
	struct store_commit *pc = &c;
	struct us_err err;

	assert_int_equal(store_commit_group(s, &pc, 1, clock_wall_ms(), &err), 0);
	if (c.rc)
		fail_msg("commit: %s", c.err.msg);
	return c.last_seq;
}

/* Commits one write to ACC/F (setup created it). */
static uint64_t write1(struct store *s, const char *id, const char *body)
{
	struct entry e = {.op = ENTRY_WRITE, .account = "ACC", .account_len = 3, .file = "F",
			  .file_len = 1, .id = (const uint8_t *)id, .id_len = strlen(id),
			  .body = (const uint8_t *)body, .body_len = strlen(body)};

	return commit_entry(s, &e);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct store_opts o = {0};
	struct us_err err;

	snprintf(f->dir, sizeof(f->dir), "/tmp/us-test-snaps-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	if (store_open(&f->s, f->dir, &o, &err))
		fail_msg("store_open: %s", err.msg);
	{
		struct entry e = {.op = ENTRY_CREATE_FILE, .account = "ACC", .account_len = 3,
				  .file = "F", .file_len = 1, .flag = true};

		commit_entry(f->s, &e);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	store_close(f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void assert_reads(struct store *s, const struct store_snap *at, const char *id,
			 const char *want)
{
	struct us_err err;
	struct buf b;

	buf_init(&b);
	if (store_get(s, at, "ACC", "F", SECTION_DATA, (const uint8_t *)id, strlen(id), &b, &err))
		fail_msg("get %s: %s", id, err.msg);
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(b.p, want, b.len);
	buf_release(&b);
}

static void test_open_use_release(void **state)
{
	struct fixture *f = *state;
	struct snapshots *t;
	struct snapshot_info a, b;
	const struct store_snap *at;
	struct us_err err;
	uint64_t seq;

	assert_int_equal(snapshots_new(&t, 600000, 64, &err), 0);
	seq = write1(f->s, "K", "v1");
	assert_int_equal(snapshots_open(t, "site-a", f->s, &a, &err), 0);
	assert_true(a.id >= 1 && a.id < (UINT64_C(1) << 53));
	assert_int_equal(a.pos.seq, seq);
	assert_int_equal(a.ttl_ms, 600000);
	write1(f->s, "K", "v2");
	assert_int_equal(snapshots_open(t, "site-a", f->s, &b, &err), 0);
	assert_int_not_equal(a.id, b.id);
	assert_int_equal(b.pos.seq, seq + 1);
	assert_int_equal(snapshots_count(t, "site-a"), 2);
	assert_int_equal(snapshots_count(t, "site-b"), 0);

	assert_int_equal(snapshots_use(t, "site-a", a.id, f->s, &at, &err), 0);
	assert_reads(f->s, at, "K", "v1");
	snapshots_done(t, a.id);
	assert_int_equal(snapshots_use(t, "site-a", b.id, f->s, &at, &err), 0);
	assert_reads(f->s, at, "K", "v2");
	snapshots_done(t, b.id);

	/* another namespace's id, an unknown one */
	assert_int_equal(snapshots_use(t, "site-b", a.id, f->s, &at, &err), US_ENOTFOUND);
	assert_non_null(strstr(err.msg, "no snapshot"));
	assert_int_equal(snapshots_use(t, "site-a", 12345, f->s, &at, &err), US_ENOTFOUND);
	assert_int_equal(snapshots_release(t, "site-b", a.id, &err), US_ENOTFOUND);

	/* released: refused, and said so; twice is still refused */
	assert_int_equal(snapshots_release(t, "site-a", a.id, &err), 0);
	assert_int_equal(snapshots_use(t, "site-a", a.id, f->s, &at, &err), US_ENOTFOUND);
	assert_non_null(strstr(err.msg, "released"));
	assert_int_equal(snapshots_release(t, "site-a", a.id, &err), US_ENOTFOUND);
	assert_int_equal(snapshots_count(t, "site-a"), 1);
	snapshots_free(t); /* b still open: ended here (LeakSanitizer checks) */
}

static void test_bound_per_namespace(void **state)
{
	struct fixture *f = *state;
	struct snapshot_info v[4], x;
	struct snapshots *t;
	struct us_err err;

	assert_int_equal(snapshots_new(&t, 600000, 3, &err), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(snapshots_open(t, "site-a", f->s, &v[i], &err), 0);
	assert_int_equal(snapshots_open(t, "site-a", f->s, &x, &err), US_ETOOBIG);
	assert_non_null(strstr(err.msg, "max_snapshots"));
	/* the bound is per namespace */
	assert_int_equal(snapshots_open(t, "site-b", f->s, &v[3], &err), 0);
	/* a release makes room */
	assert_int_equal(snapshots_release(t, "site-a", v[1].id, &err), 0);
	assert_int_equal(snapshots_open(t, "site-a", f->s, &x, &err), 0);
	snapshots_free(t);
}

/* Waits (at most ms) for ns site-a to have no open snapshot, without using
 * one (a use restarts its idle clock), then returns what a use of id gets. */
static int wait_refused(struct snapshots *t, struct store *s, uint64_t id, uint64_t ms,
			struct us_err *err)
{
	uint64_t until = clock_mono_ms() + ms;
	const struct store_snap *at;
	int rc;

	while (snapshots_count(t, "site-a") > 0 && clock_mono_ms() < until) {
		struct timespec ts = {0, 10 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
	rc = snapshots_use(t, "site-a", id, s, &at, err);
	if (rc == 0)
		snapshots_done(t, id);
	return rc;
}

static void test_idle_expiry(void **state)
{
	struct fixture *f = *state;
	struct snapshot_info a, b;
	const struct store_snap *at;
	struct snapshots *t;
	struct us_err err;

	assert_int_equal(snapshots_new(&t, 200, 64, &err), 0);
	assert_int_equal(snapshots_open(t, "site-a", f->s, &a, &err), 0);
	/* untouched, it ends on its own within a few ttls */
	assert_int_equal(wait_refused(t, f->s, a.id, 5000, &err), US_ENOTFOUND);
	assert_non_null(strstr(err.msg, "expired"));

	/* one in use does not expire, however long the read */
	assert_int_equal(snapshots_open(t, "site-a", f->s, &b, &err), 0);
	assert_int_equal(snapshots_use(t, "site-a", b.id, f->s, &at, &err), 0);
	{
		struct timespec ts = {0, 600 * 1000 * 1000}; /* 3 ttls */

		nanosleep(&ts, NULL);
	}
	assert_int_equal(snapshots_count(t, "site-a"), 1);
	snapshots_done(t, b.id);
	/* idle from now on: it goes */
	assert_int_equal(wait_refused(t, f->s, b.id, 5000, &err), US_ENOTFOUND);
	snapshots_free(t);
}

/* Released while a read uses it: the read goes on, the next is refused. */
static void test_release_in_use(void **state)
{
	struct fixture *f = *state;
	const struct store_snap *at, *at2;
	struct snapshot_info a;
	struct snapshots *t;
	struct us_err err;

	write1(f->s, "K", "old");
	assert_int_equal(snapshots_new(&t, 600000, 64, &err), 0);
	assert_int_equal(snapshots_open(t, "site-a", f->s, &a, &err), 0);
	assert_int_equal(snapshots_use(t, "site-a", a.id, f->s, &at, &err), 0);
	assert_int_equal(snapshots_release(t, "site-a", a.id, &err), 0);
	write1(f->s, "K", "new");
	assert_reads(f->s, at, "K", "old");
	assert_int_equal(snapshots_use(t, "site-a", a.id, f->s, &at2, &err), US_ENOTFOUND);
	snapshots_done(t, a.id); /* frees it (AddressSanitizer checks) */
	snapshots_free(t);
}

/* Its store closes (a full copy replaced it): FAILED_PRECONDITION, saying why. */
static void test_end_store(void **state)
{
	struct fixture *f = *state;
	struct snapshot_info a, b;
	const struct store_snap *at;
	struct snapshots *t;
	struct us_err err;

	assert_int_equal(snapshots_new(&t, 600000, 64, &err), 0);
	assert_int_equal(snapshots_open(t, "site-a", f->s, &a, &err), 0);
	assert_int_equal(snapshots_open(t, "site-b", f->s, &b, &err), 0);
	assert_int_equal(snapshots_release(t, "site-b", b.id, &err), 0);
	snapshots_end_store(t, f->s, "ended: the store was replaced by a full copy from the site");
	assert_int_equal(snapshots_use(t, "site-a", a.id, f->s, &at, &err), US_EPRECOND);
	assert_non_null(strstr(err.msg, "replaced by a full copy"));
	assert_non_null(strstr(err.msg, "open a new snapshot"));
	assert_int_equal(snapshots_use(t, "site-b", b.id, f->s, &at, &err), US_ENOTFOUND);
	assert_int_equal(snapshots_count(t, "site-a"), 0);
	/* a new one on the (new) store works */
	assert_int_equal(snapshots_open(t, "site-a", f->s, &b, &err), 0);
	assert_int_equal(snapshots_use(t, "site-a", b.id, f->s, &at, &err), 0);
	snapshots_done(t, b.id);
	snapshots_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_use_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bound_per_namespace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_release_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_end_store, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
