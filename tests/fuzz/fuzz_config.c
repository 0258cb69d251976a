/*
 * fuzz_config.c - the config parser (lib/config.h) on arbitrary file text,
 * through config_load_buffer (the same parser as config_load).
 *
 * The daemons' schemas are static in their main.c, so the schema here is
 * theirs, copied: the collector's keys (every top-level type: string with and
 * without a check, uint and duration and size with bounds, bool, enum, list),
 * the archiver's block_cache (a size with only a minimum), its
 * [namespace NAME] sections, which take no keys, here as [site NAME]; and a
 * [namespace NAME] section with a key of every type (a list among them) that
 * no daemon has yet. Keep it in step when a daemon's schema changes.
 *
 * A file taken leaves every field within its bounds and every list item
 * non-empty and trimmed; a refusal is US_ECONFIG (or US_ENOMEM) naming the
 * file and line. Lists, top-level and in sections, are freed either way.
 */
#include <stddef.h>

#include "config.h"
#include "fuzz.h"
#include "disk.h"
#include "names.h"

#define NAME "fuzz.ini"
#define MAX_SECTIONS 8 /* of each kind: low, so that the limit is reached */

struct fz_ns {
	char name[US_NAMESPACE_MAX_LEN + 1];
	char token[32];
	uint64_t threads;
	uint64_t quota_bytes;
	uint64_t max_lag_ms;
	int is_read_only;
	int commit_mode;
	struct config_list peers;
};

struct fz_site {
	char name[US_NAMESPACE_MAX_LEN + 1];
};

/* collector_config, plus the archiver's block_cache and both kinds of section */
struct fz_conf {
	char ns[US_NAMESPACE_MAX_LEN + 1];
	char listen[256];
	char data_dir[1024];
	uint64_t max_body;
	uint64_t rpc_threads;
	int log_level;
	int is_syslog;
	struct config_list archivers;
	uint64_t heartbeat_ms;
	int commit_mode;
	uint64_t max_lag_ms;
	uint64_t sync_timeout_ms;
	uint64_t journal_retention_ms;
	uint64_t journal_max;
	int sync_fallback;
	uint64_t block_cache_bytes;
	char disk_reserve[64];
	struct fz_ns *nss;
	size_t n_nss;
	struct fz_site *sites;
	size_t n_sites;
};

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const commit_modes[] = {"async", "sync", NULL};
static const char *const fallbacks[] = {"block", "async", NULL};

static int check_disk_reserve(const char *v, struct us_err *err)
{
	struct disk_reserve r;
	int rc = disk_parse_reserve(v, &r, err);

	if (rc == 0) {
		FUZZ_CHECK(!r.has_pct || r.pct <= 100);
		(void)disk_reserve_bytes(&r, UINT64_MAX);
	}
	return rc;
}

static int check_ns_value(const char *v, struct us_err *err)
{
	return names_check_namespace(v, strlen(v), err);
}

#define F(x) offsetof(struct fz_conf, x)
#define SZ(x) sizeof(((struct fz_conf *)0)->x)
/* collector/main.c's collector_keys, then archiver/main.c's block_cache */
static const struct config_key conf_keys[] = {
	{"namespace", CFG_STRING, F(ns), SZ(ns), US_DEFAULT_NAMESPACE, 0, 0, NULL,
	 check_ns_value, NULL},
	{"listen", CFG_STRING, F(listen), SZ(listen), US_DEFAULT_COLLECTOR_ADDR, 0, 0, NULL, NULL,
	 NULL},
	{"data_dir", CFG_STRING, F(data_dir), SZ(data_dir), US_DEFAULT_COLLECTOR_DATA_DIR, 0, 0,
	 NULL, NULL, NULL},
	{"max_body", CFG_SIZE, F(max_body), 0, "16MiB", 0, US_BODY_MAX_BYTES, NULL, NULL, NULL},
	{"rpc_threads", CFG_UINT, F(rpc_threads), 0, "2", 1, 64, NULL, NULL, NULL},
	{"log_level", CFG_ENUM, F(log_level), 0, "info", 0, 0, log_levels, NULL, NULL},
	{"syslog", CFG_BOOL, F(is_syslog), 0, "off", 0, 0, NULL, NULL, NULL},
	{"archiver", CFG_LIST, F(archivers), 0, NULL, 0, 0, NULL, NULL, NULL},
	{"heartbeat_interval", CFG_DURATION, F(heartbeat_ms), 0, "1s", 10, 3600000, NULL, NULL,
	 NULL},
	{"commit", CFG_ENUM, F(commit_mode), 0, "async", 0, 0, commit_modes, NULL, NULL},
	{"max_lag", CFG_DURATION, F(max_lag_ms), 0, "5m", 0, 0, NULL, NULL, NULL},
	{"sync_timeout", CFG_DURATION, F(sync_timeout_ms), 0, "5s", 1, 0, NULL, NULL, NULL},
	{"journal_retention", CFG_DURATION, F(journal_retention_ms), 0, "24h", 0, 0, NULL, NULL,
	 NULL},
	{"journal_max", CFG_UINT, F(journal_max), 0, "10000000", 1000, 0, NULL, NULL, NULL},
	{"sync_fallback", CFG_ENUM, F(sync_fallback), 0, "block", 0, 0, fallbacks, NULL, NULL},
	{"block_cache", CFG_SIZE, F(block_cache_bytes), 0, "256MiB", 1048576, 0, NULL, NULL,
	 NULL},
	{"disk_reserve", CFG_STRING, F(disk_reserve), sizeof(((struct fz_conf *)0)->disk_reserve),
	 DISK_RESERVE_DEFAULT, 0, 0, NULL, check_disk_reserve, NULL},
};
#undef F
#undef SZ

#define F(x) offsetof(struct fz_ns, x)
#define SZ(x) sizeof(((struct fz_ns *)0)->x)
static const struct config_key ns_keys[] = {
	{"token", CFG_STRING, F(token), SZ(token), "none", 0, 0, NULL, NULL, NULL},
	{"threads", CFG_UINT, F(threads), 0, "4", 1, 64, NULL, NULL, NULL},
	{"quota", CFG_SIZE, F(quota_bytes), 0, "16MiB", 4096, 1ull << 40, NULL, NULL, NULL},
	{"max_lag", CFG_DURATION, F(max_lag_ms), 0, "5s", 1, 86400000, NULL, NULL, NULL},
	{"read_only", CFG_BOOL, F(is_read_only), 0, NULL, 0, 0, NULL, NULL, NULL},
	{"commit", CFG_ENUM, F(commit_mode), 0, "sync", 0, 0, commit_modes, NULL, NULL},
	{"peer", CFG_LIST, F(peers), 0, "a:1, b:2", 0, 0, NULL, NULL, NULL},
};
#undef F
#undef SZ

/* Grows *v by one zeroed entity named name; refuses a bad name, a duplicate
 * and more than MAX_SECTIONS, as archiver/main.c's add_namespace does. */
static void *add_entity(void **v, size_t *n, size_t size, const char *name,
			struct us_err *err)
{
	char *p;

	if (names_check_namespace(name, strlen(name), err))
		return NULL;
	for (size_t i = 0; i < *n; i++) {
		if (strcmp((char *)*v + i * size, name) == 0) {
			err_set(err, US_ECONFIG, "%s is listed twice", name);
			return NULL;
		}
	}
	if (*n == MAX_SECTIONS) {
		err_set(err, US_ECONFIG, "more than %d sections", MAX_SECTIONS);
		return NULL;
	}
	p = realloc(*v, (*n + 1) * size);
	if (!p) {
		err_set(err, US_ENOMEM, "out of memory");
		return NULL;
	}
	*v = p;
	p += *n * size;
	memset(p, 0, size);
	/* the name is each entity's first field */
	snprintf(p, US_NAMESPACE_MAX_LEN + 1, "%s", name);
	(*n)++;
	return p;
}

static void *add_ns(void *target, const char *name, struct us_err *err)
{
	struct fz_conf *c = target;

	return add_entity((void **)&c->nss, &c->n_nss, sizeof(*c->nss), name, err);
}

static void *add_site(void *target, const char *name, struct us_err *err)
{
	struct fz_conf *c = target;

	return add_entity((void **)&c->sites, &c->n_sites, sizeof(*c->sites), name, err);
}

static const struct config_section sections[] = {
	{"namespace", ns_keys, sizeof(ns_keys) / sizeof(ns_keys[0]), add_ns},
	{"site", NULL, 0, add_site},
};

static const struct config_schema schema = {
	.keys = conf_keys,
	.n_keys = sizeof(conf_keys) / sizeof(conf_keys[0]),
	.sections = sections,
	.n_sections = sizeof(sections) / sizeof(sections[0]),
};

static void check_string(const char *s, size_t size)
{
	FUZZ_CHECK(memchr(s, '\0', size));
	FUZZ_CHECK(strlen(s) <= US_CONFIG_MAX_VALUE_LEN);
}

static void check_list(const struct config_list *l)
{
	FUZZ_CHECK((l->n == 0) == (l->v == NULL));
	for (size_t i = 0; i < l->n; i++) {
		size_t len = strlen(l->v[i]);

		FUZZ_CHECK(len > 0 && !strchr(l->v[i], ','));
		FUZZ_CHECK(l->v[i][0] != ' ' && l->v[i][0] != '\t');
		FUZZ_CHECK(l->v[i][len - 1] != ' ' && l->v[i][len - 1] != '\t');
	}
}

static bool is_namespace(const char *s)
{
	return names_check_namespace(s, strlen(s), NULL) == 0;
}

/* Every bound of the schema holds in what a taken file left. */
static void check_conf(const struct fz_conf *c)
{
	check_string(c->ns, sizeof(c->ns));
	FUZZ_CHECK(is_namespace(c->ns));
	check_string(c->listen, sizeof(c->listen));
	check_string(c->data_dir, sizeof(c->data_dir));
	FUZZ_CHECK(c->max_body <= US_BODY_MAX_BYTES);
	FUZZ_CHECK(c->rpc_threads >= 1 && c->rpc_threads <= 64);
	FUZZ_CHECK(c->log_level >= 0 && c->log_level <= 3);
	FUZZ_CHECK(c->is_syslog == 0 || c->is_syslog == 1);
	check_list(&c->archivers);
	FUZZ_CHECK(c->heartbeat_ms >= 10 && c->heartbeat_ms <= 3600000);
	FUZZ_CHECK(c->commit_mode == 0 || c->commit_mode == 1);
	FUZZ_CHECK(c->sync_timeout_ms >= 1);
	FUZZ_CHECK(c->journal_max >= 1000);
	FUZZ_CHECK(c->sync_fallback == 0 || c->sync_fallback == 1);
	FUZZ_CHECK(c->block_cache_bytes >= 1048576);
	FUZZ_CHECK(c->n_nss <= MAX_SECTIONS && c->n_sites <= MAX_SECTIONS);
	for (size_t i = 0; i < c->n_nss; i++) {
		const struct fz_ns *ns = &c->nss[i];

		FUZZ_CHECK(is_namespace(ns->name));
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(strcmp(c->nss[j].name, ns->name) != 0);
		check_string(ns->token, sizeof(ns->token));
		FUZZ_CHECK(ns->threads >= 1 && ns->threads <= 64);
		FUZZ_CHECK(ns->quota_bytes >= 4096 && ns->quota_bytes <= 1ull << 40);
		FUZZ_CHECK(ns->max_lag_ms >= 1 && ns->max_lag_ms <= 86400000);
		FUZZ_CHECK(ns->is_read_only == 0 || ns->is_read_only == 1);
		FUZZ_CHECK(ns->commit_mode == 0 || ns->commit_mode == 1);
		check_list(&ns->peers);
		FUZZ_CHECK(ns->peers.n >= 1); /* its default, or the file's */
	}
	for (size_t i = 0; i < c->n_sites; i++)
		FUZZ_CHECK(is_namespace(c->sites[i].name));
}

static void free_list(struct config_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct us_err err;
	struct fz_conf c;
	int rc;

	memset(&c, 0, sizeof(c));
	err_clear(&err);
	rc = config_load_buffer(&schema, &c, NAME, data, size, &err);
	if (rc) {
		fuzz_check_refusal(rc, &err);
		FUZZ_CHECK(rc == US_ECONFIG || rc == US_ENOMEM);
		FUZZ_CHECK(strncmp(err.msg, NAME ":", strlen(NAME ":")) == 0);
	} else {
		check_conf(&c);
	}
	/* the sections' lists are theirs to free, config_release frees the rest */
	for (size_t i = 0; i < c.n_nss; i++)
		free_list(&c.nss[i].peers);
	free(c.nss);
	free(c.sites);
	config_release(&schema, &c);
	return 0;
}
