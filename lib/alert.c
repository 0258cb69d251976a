/*
 * alert.c - alert_command on its own thread (alert.h).
 *
 * The command is started with posix_spawn (no fork of a threaded daemon)
 * and waited for through a pidfd: poll() with the time left, then the
 * group killed if it is still running, then waitpid.
 */
#include "alert.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "us_limits.h"

extern char **environ;

struct alert {
	char *command;
	uint64_t timeout_ms;
	alert_done_fn done;
	void *arg;
	pthread_t thread;
	pthread_mutex_t lock;        /* guards the queue and is_stopping */
	pthread_cond_t cond;
	struct incident queue[US_ALERT_QUEUE];
	size_t head, n;
	bool is_stopping;
};

/* The daemon's environment with the incident's six variables in place of
 * any of the same name: a new array of new strings (free_env). */
static char **make_env(const struct incident *inc)
{
	static const char *const names[] = {"UNDERSTUDY_INCIDENT_ID=", "UNDERSTUDY_INCIDENT_KIND=",
					    "UNDERSTUDY_INCIDENT_SEVERITY=",
					    "UNDERSTUDY_INCIDENT_NAMESPACE=",
					    "UNDERSTUDY_INCIDENT_STATE=", "UNDERSTUDY_INCIDENT_TEXT="};
	char id[24];
	const char *values[6];
	size_t n_env = 0, k = 0;
	char **env;

	snprintf(id, sizeof(id), "%llu", (unsigned long long)inc->id);
	values[0] = id;
	values[1] = incident_kind_name(inc->kind) ? incident_kind_name(inc->kind) : "unknown";
	values[2] = incident_severity(inc->kind);
	values[3] = inc->ns;
	values[4] = inc->closed_ms ? "closed" : "open";
	values[5] = inc->text;
	while (environ && environ[n_env])
		n_env++;
	if (!(env = calloc(n_env + 7, sizeof(*env))))
		return NULL;
	for (size_t i = 0; i < n_env; i++) {
		bool is_ours = false;

		for (size_t j = 0; j < 6 && !is_ours; j++)
			is_ours = strncmp(environ[i], names[j], strlen(names[j])) == 0;
		if (!is_ours && !(env[k++] = strdup(environ[i])))
			goto out_nomem;
	}
	for (size_t j = 0; j < 6; j++) {
		size_t len = strlen(names[j]) + strlen(values[j]) + 1;

		if (!(env[k] = malloc(len)))
			goto out_nomem;
		snprintf(env[k++], len, "%s%s", names[j], values[j]);
	}
	return env;
out_nomem:
	for (size_t i = 0; i < k; i++)
		free(env[i]);
	free(env);
	return NULL;
}

static void free_env(char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}

/* Waits for pid until deadline_ms (monotonic); true if it ended. */
static bool wait_until(pid_t pid, uint64_t deadline_ms)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	for (;;) {
		uint64_t now = clock_mono_ms();
		int left = now >= deadline_ms ? 0 : (int)(deadline_ms - now);

		if (fd >= 0) {
			struct pollfd p = {.fd = fd, .events = POLLIN};
			int rc = poll(&p, 1, left);

			if (rc < 0 && errno == EINTR)
				continue;
			close(fd);
			return rc > 0;
		}
		/* no pidfd (a kernel before 5.3): look every 10 ms */
		{
			siginfo_t si = {0};

			if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
			    si.si_pid == pid)
				return true;
		}
		if (left == 0)
			return false;
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000000L}, NULL);
	}
}

static void run_one(struct alert *a, const struct incident *inc, struct alert_result *r)
{
	char *argv[] = {"/bin/sh", "-c", a->command, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	uint64_t t0 = clock_mono_ms();
	char **env = make_env(inc);
	pid_t pid;
	int status = 0, rc;

	memset(r, 0, sizeof(*r));
	r->exit_status = -1;
	if (!env) {
		r->spawn_errno = ENOMEM;
		return;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&at, &none);       /* the daemon blocks signals */
	posix_spawnattr_setsigdefault(&at, &all);
	posix_spawnattr_setpgroup(&at, 0);            /* a group of its own, to kill */
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
					      POSIX_SPAWN_SETPGROUP);
	rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, env);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	free_env(env);
	if (rc != 0) {
		r->spawn_errno = rc;
		return;
	}
	if (!wait_until(pid, t0 + a->timeout_ms)) {
		r->is_timeout = true;
		kill(-pid, SIGKILL);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	r->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	r->ms = clock_mono_ms() - t0;
}

static void *alert_thread(void *arg)
{
	struct alert *a = arg;

	pthread_setname_np(pthread_self(), "us-alert");
	pthread_mutex_lock(&a->lock);
	for (;;) {
		struct incident inc;
		struct alert_result r;

		while (a->n == 0 && !a->is_stopping)
			pthread_cond_wait(&a->cond, &a->lock);
		if (a->is_stopping)
			break;
		inc = a->queue[a->head];
		a->head = (a->head + 1) % US_ALERT_QUEUE;
		a->n--;
		pthread_mutex_unlock(&a->lock);
		run_one(a, &inc, &r);
		if (a->done)
			a->done(a->arg, &inc, &r);
		pthread_mutex_lock(&a->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

int alert_new(struct alert **out, const char *command, uint64_t timeout_ms, alert_done_fn done,
	      void *arg, struct us_err *err)
{
	struct alert *a;

	*out = NULL;
	if (!command || !command[0] || timeout_ms == 0)
		return err_set(err, US_EINVAL, "alert_command needs a command and a timeout");
	if (!(a = calloc(1, sizeof(*a))) || !(a->command = strdup(command))) {
		free(a);
		return err_set(err, US_ENOMEM, "out of memory");
	}
	a->timeout_ms = timeout_ms;
	a->done = done;
	a->arg = arg;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	if (pthread_create(&a->thread, NULL, alert_thread, a) != 0) {
		pthread_cond_destroy(&a->cond);
		pthread_mutex_destroy(&a->lock);
		free(a->command);
		free(a);
		return err_set(err, US_ENOMEM, "cannot start the alert thread");
	}
	*out = a;
	return 0;
}

void alert_post(struct alert *a, const struct incident *inc)
{
	bool is_dropped;

	pthread_mutex_lock(&a->lock);
	is_dropped = a->n == US_ALERT_QUEUE || a->is_stopping;
	if (!is_dropped) {
		a->queue[(a->head + a->n) % US_ALERT_QUEUE] = *inc;
		a->n++;
		pthread_cond_signal(&a->cond);
	}
	pthread_mutex_unlock(&a->lock);
	if (is_dropped && a->done) {
		struct alert_result r = {.is_dropped = true, .exit_status = -1};

		a->done(a->arg, inc, &r);
	}
}

void alert_free(struct alert *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->is_stopping = true;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	/* what still waits is not run: said so */
	for (; a->n > 0; a->n--, a->head = (a->head + 1) % US_ALERT_QUEUE)
		if (a->done) {
			struct alert_result r = {.is_dropped = true, .exit_status = -1};

			a->done(a->arg, &a->queue[a->head], &r);
		}
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a->command);
	free(a);
}
