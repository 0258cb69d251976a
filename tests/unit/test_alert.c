/* test_alert.c - lib/alert.c: alert_command run with the incident in its
 * environment, once a post, in order; a failing command reported; a
 * hanging one (and what it started) killed at the timeout; posts never
 * wait for a command; a full queue drops and says so. Real processes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alert.h"
#include "clock.h"

static char tmpl[] = "/tmp/us-test-alert-XXXXXX";

struct results {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t n, dropped;
	struct alert_result last;
	uint64_t last_id;
};

static void on_done(void *arg, const struct incident *inc, const struct alert_result *r)
{
	struct results *rs = arg;

	pthread_mutex_lock(&rs->lock);
	if (r->is_dropped)
		rs->dropped++;
	else
		rs->n++;
	rs->last = *r;
	rs->last_id = inc->id;
	pthread_cond_broadcast(&rs->cond);
	pthread_mutex_unlock(&rs->lock);
}

/* Waits until n commands have run, 20 s at most. */
static void wait_runs(struct results *rs, size_t n)
{
	struct timespec dl;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 20;
	pthread_mutex_lock(&rs->lock);
	while (rs->n < n)
		if (pthread_cond_timedwait(&rs->cond, &rs->lock, &dl) != 0)
			break;
	pthread_mutex_unlock(&rs->lock);
	assert_true(rs->n >= n);
}

static struct incident make(uint64_t id, bool is_closed)
{
	struct incident inc = {.id = id, .kind = INCIDENT_LINK_LOST, .opened_ms = 1000,
			       .closed_ms = is_closed ? 2000 : 0};

	snprintf(inc.ns, sizeof(inc.ns), "site-a");
	snprintf(inc.text, sizeof(inc.text), "no link for 12 s; it's \"down\"");
	return inc;
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

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	static char text[4096];
	size_t n;

	if (!f)
		return NULL;
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

static void test_env_and_order(void **state)
{
	const char *dir = *state;
	struct results rs = {0};
	struct alert *a = NULL;
	struct us_err err;
	char cmd[512], path[300];
	struct incident i1 = make(7, false), i2 = make(7, true);
	char *text;

	pthread_mutex_init(&rs.lock, NULL);
	pthread_cond_init(&rs.cond, NULL);
	snprintf(path, sizeof(path), "%s/env.txt", dir);
	snprintf(cmd, sizeof(cmd),
		 "echo \"$UNDERSTUDY_INCIDENT_ID|$UNDERSTUDY_INCIDENT_KIND|"
		 "$UNDERSTUDY_INCIDENT_SEVERITY|$UNDERSTUDY_INCIDENT_NAMESPACE|"
		 "$UNDERSTUDY_INCIDENT_STATE|$UNDERSTUDY_INCIDENT_TEXT\" >> '%s'; echo noise; exit 3",
		 path);
	setenv("UNDERSTUDY_INCIDENT_ID", "stale", 1); /* the incident's wins */
	assert_int_equal(alert_new(&a, cmd, 5000, on_done, &rs, &err), 0);
	alert_post(a, &i1);
	alert_post(a, &i2);
	wait_runs(&rs, 2);
	assert_int_equal(rs.last.exit_status, 3);
	assert_false(rs.last.is_timeout);
	assert_int_equal(rs.last.spawn_errno, 0);
	alert_free(a);
	text = slurp(path);
	assert_non_null(text);
	assert_string_equal(text,
			    "7|link_lost|critical|site-a|open|no link for 12 s; it's \"down\"\n"
			    "7|link_lost|critical|site-a|closed|no link for 12 s; it's \"down\"\n");
	unsetenv("UNDERSTUDY_INCIDENT_ID");
	pthread_cond_destroy(&rs.cond);
	pthread_mutex_destroy(&rs.lock);
}

static void test_timeout_and_queue(void **state)
{
	const char *dir = *state;
	struct results rs = {0};
	struct alert *a = NULL;
	struct us_err err;
	char cmd[512], path[300];
	struct incident inc = make(1, false);
	uint64_t t0;

	pthread_mutex_init(&rs.lock, NULL);
	pthread_cond_init(&rs.cond, NULL);
	snprintf(path, sizeof(path), "%s/child.pid", dir);
	/* a command that hangs, with a child of its own that hangs too */
	snprintf(cmd, sizeof(cmd), "sleep 60 & echo $! > '%s'; wait", path);
	assert_int_equal(alert_new(&a, cmd, 300, on_done, &rs, &err), 0);
	t0 = clock_mono_ms();
	for (uint64_t i = 0; i < US_ALERT_QUEUE + 10; i++) {
		inc.id = i + 1;
		alert_post(a, &inc);
	}
	/* the posts did not wait for the hanging command */
	assert_true(clock_mono_ms() - t0 < 250);
	assert_true(rs.dropped >= 9); /* one may already be running */
	wait_runs(&rs, 1);
	assert_true(rs.last.is_timeout);
	assert_int_equal(rs.last.exit_status, -1);
	assert_true(rs.last.ms >= 300 && rs.last.ms < 5000);
	{
		/* the command's whole group went: its sleep too */
		char *text = slurp(path);
		pid_t child;

		assert_non_null(text);
		child = (pid_t)atoi(text);
		assert_true(child > 0);
		for (int i = 0; i < 200 && kill(child, 0) == 0; i++)
			usleep(10000);
		assert_int_not_equal(kill(child, 0), 0);
	}
	/* stopping drops what still waits (each said so), after at most the
	 * command running now */
	t0 = clock_mono_ms();
	alert_free(a);
	alert_free(NULL);
	assert_true(clock_mono_ms() - t0 < 2000);
	assert_int_equal(rs.n + rs.dropped, US_ALERT_QUEUE + 10);
	pthread_cond_destroy(&rs.cond);
	pthread_mutex_destroy(&rs.lock);
}

static void test_refusals(void **state)
{
	struct alert *a = NULL;
	struct us_err err;

	(void)state;
	assert_int_equal(alert_new(&a, "", 1000, NULL, NULL, &err), US_EINVAL);
	assert_int_equal(alert_new(&a, "true", 0, NULL, NULL, &err), US_EINVAL);
	assert_null(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_env_and_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_and_queue, setup, teardown),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
