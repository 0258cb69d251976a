/* test_disk.c - lib/disk.h: the disk_reserve value and the data dir checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "disk.h"

#define GIB (1024ull * 1024 * 1024)

static void test_parse_reserve(void **state)
{
	struct disk_reserve r;
	struct us_err err;

	(void)state;
	assert_int_equal(disk_parse_reserve(DISK_RESERVE_DEFAULT, &r, &err), 0);
	assert_true(r.has_bytes && r.has_pct);
	/* the smaller of the two applies */
	assert_int_equal(disk_reserve_bytes(&r, 100 * GIB), GIB);
	assert_int_equal(disk_reserve_bytes(&r, 10 * GIB), GIB / 2);
	assert_int_equal(disk_parse_reserve("0", &r, &err), 0);
	assert_int_equal(disk_reserve_bytes(&r, 100 * GIB), 0);
	assert_int_equal(disk_parse_reserve(" 7% ", &r, &err), 0);
	assert_int_equal(disk_reserve_bytes(&r, 100), 7);
	assert_int_equal(disk_parse_reserve("512MiB", &r, &err), 0);
	assert_int_equal(disk_reserve_bytes(&r, 100 * GIB), 512ull << 20);
	assert_int_equal(disk_parse_reserve("100%", &r, &err), 0);
	assert_int_equal(disk_reserve_bytes(&r, UINT64_MAX), UINT64_MAX);
	static const char *const bad[] = {"", "5", "%", "101%", "-1%", "5 %x", "1GiB,2GiB",
					  "5%,6%", "1GiB, 5%, 6%", "1GiB,", "abc", "99999999999999999999B"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&r, 0x5a, sizeof(r));
		assert_int_equal(disk_parse_reserve(bad[i], &r, &err), US_EINVAL);
		assert_true(strlen(err.msg) > 0);
	}
}

static void test_checks(void **state)
{
	char dir[] = "/tmp/us-test-disk-XXXXXX";
	struct disk_reserve none = {0}, all = {.has_pct = true, .pct = 100};
	struct disk_dir id;
	struct us_err err;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(disk_probe_writable(dir, &err), 0);
	assert_int_equal(disk_dir_remember(dir, &id, &err), 0);
	assert_int_equal(disk_check(dir, &id, &none, &err), 0);
	/* a reserve of the whole disk is never free */
	assert_int_equal(disk_check(dir, &id, &all, &err), US_ENOSPC);
	assert_non_null(strstr(err.msg, "disk full"));
	/* gone, then replaced: same path, another directory (made while the
	 * first exists, so that its inode cannot be the first's) */
	char other[sizeof(dir) + 8];

	snprintf(other, sizeof(other), "%s.other", dir);
	assert_int_equal(mkdir(other, 0700), 0);
	assert_int_equal(rmdir(dir), 0);
	assert_int_equal(disk_check(dir, &id, NULL, &err), US_EIO);
	assert_non_null(strstr(err.msg, "gone"));
	assert_int_equal(rename(other, dir), 0);
	assert_int_equal(disk_check(dir, &id, NULL, &err), US_EIO);
	assert_non_null(strstr(err.msg, "replaced"));
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_reserve),
		cmocka_unit_test(test_checks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
