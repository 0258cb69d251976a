/*
 * namespaces.c - the archiver's namespaces: one store each, under
 * DATA_DIR/ns/NAME, in the same format as a site's store (so that a namespace
 * can be promoted in place). A namespace appears when its site first connects
 * (refused when the config lists namespaces and this one is not among them)
 * and lives until the archiver stops.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "archiver.h"
#include "names.h"

static bool is_listed(const struct archiver *a, const char *name)
{
	if (a->cfg.n_namespaces == 0)
		return true;
	for (size_t i = 0; i < a->cfg.n_namespaces; i++)
		if (strcmp(a->cfg.namespaces[i].name, name) == 0)
			return true;
	return false;
}

static int open_ns(struct archiver *a, const char *name, struct ns **out, struct us_err *err)
{
	struct store_opts o = {.max_body = a->cfg.max_body};
	char dir[1200];
	struct ns *ns;
	int rc;

	if (a->n_ns == ARCHIVER_MAX_NAMESPACES)
		return err_set(err, US_ETOOBIG, "cannot add namespace %s: this archiver holds %d already",
			       name, ARCHIVER_MAX_NAMESPACES);
	snprintf(dir, sizeof(dir), "%s/ns/%s", a->cfg.data_dir, name);
	ns = calloc(1, sizeof(*ns));
	if (!ns)
		return err_set(err, US_ENOMEM, "out of memory");
	snprintf(ns->name, sizeof(ns->name), "%s", name);
	if ((rc = store_open(&ns->store, dir, &o, err))) {
		free(ns);
		return err_wrap(err, "namespace %s", name);
	}
	/* Everything on disk at open is as durable as it gets. */
	{
		struct store_position pos;

		store_get_position(ns->store, &pos);
		ns->durable_seq = pos.seq;
	}
	pthread_mutex_init(&ns->lock, NULL);
	pthread_mutex_init(&ns->apply_lock, NULL);
	a->ns[a->n_ns++] = ns;
	*out = ns;
	return 0;
}

int archiver_get_ns(struct archiver *a, const char *name, bool is_create, struct ns **out,
		    struct us_err *err)
{
	int rc;

	if ((rc = names_check_namespace(name, strlen(name), err)))
		return rc;
	pthread_mutex_lock(&a->ns_lock);
	for (size_t i = 0; i < a->n_ns; i++) {
		if (strcmp(a->ns[i]->name, name) == 0) {
			*out = a->ns[i];
			pthread_mutex_unlock(&a->ns_lock);
			return 0;
		}
	}
	if (!is_listed(a, name))
		rc = err_set(err, US_EPERM, "namespace %s is not configured on this archiver", name);
	else if (!is_create)
		rc = err_set(err, US_ENOTFOUND, "namespace %s does not exist on this archiver", name);
	else
		rc = open_ns(a, name, out, err);
	pthread_mutex_unlock(&a->ns_lock);
	return rc;
}

int archiver_open_namespaces(struct archiver *a, struct us_err *err)
{
	char dir[1100];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	snprintf(dir, sizeof(dir), "%s/ns", a->cfg.data_dir);
	d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		return err_set(err, US_EIO, "cannot read %s: %s", dir, strerror(errno));
	}
	while ((de = readdir(d)) != NULL && rc == 0) {
		struct ns *ns;

		if (de->d_name[0] == '.')
			continue;
		if (names_check_namespace(de->d_name, strlen(de->d_name), NULL))
			continue; /* not ours: leave it alone */
		pthread_mutex_lock(&a->ns_lock);
		rc = open_ns(a, de->d_name, &ns, err);
		pthread_mutex_unlock(&a->ns_lock);
	}
	closedir(d);
	return rc;
}

void archiver_close_namespaces(struct archiver *a)
{
	for (size_t i = 0; i < a->n_ns; i++) {
		store_close(a->ns[i]->store);
		pthread_mutex_destroy(&a->ns[i]->lock);
		pthread_mutex_destroy(&a->ns[i]->apply_lock);
		free(a->ns[i]);
		a->ns[i] = NULL;
	}
	a->n_ns = 0;
}
