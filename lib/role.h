/*
 * role.h - a namespace's role on one node, and the only transitions between
 * roles, asserted in one place (store_set_role).
 *
 *   primary     takes the namespace's commits (a site; the archiver after a
 *               promote) and streams its journal to its standbys;
 *   standby     applies the primary's stream (the archiver's copy of a site;
 *               a site that rejoined) and takes no commits;
 *   fenced      a former primary that learned it was superseded: takes no
 *               commits and applies nothing until it rejoins;
 *   rejoining   rewinding to the primary's history, then catching up from
 *               it: applies, takes no commits.
 *
 * Transitions (role_may_become), each a command or an event of the cycle:
 *   standby   -> primary    promote; switchover onto this node
 *   primary   -> standby    switchover away from this node (caught up first)
 *   primary   -> fenced     superseded (a newer generation is seen)
 *   primary   -> rejoining  a restarted site finds itself superseded
 *   fenced    -> rejoining  rejoin
 *   standby   -> rejoining  a standby whose history forked from the primary's
 *   rejoining -> standby    rewound and caught up
 * A role never "becomes" itself: callers treat that as the idempotent case
 * and change nothing.
 */
#ifndef US_ROLE_H
#define US_ROLE_H

#include <stdbool.h>

enum ns_role {
	ROLE_PRIMARY,
	ROLE_STANDBY,
	ROLE_FENCED,
	ROLE_REJOINING,
};

/* "primary", "standby", "fenced", "rejoining". */
const char *role_name(enum ns_role r);
/* Whether from -> to is one of the transitions above. */
bool role_may_become(enum ns_role from, enum ns_role to);
/* Whether a node in role r takes the namespace's commits (primary only). */
bool role_takes_commits(enum ns_role r);
/* Whether it applies a primary's stream or image (standby, rejoining). */
bool role_applies_stream(enum ns_role r);

#endif
