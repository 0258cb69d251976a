/* role.c - see role.h. */
#include "role.h"

const char *role_name(enum ns_role r)
{
	switch (r) {
	case ROLE_PRIMARY:
		return "primary";
	case ROLE_STANDBY:
		return "standby";
	case ROLE_FENCED:
		return "fenced";
	case ROLE_REJOINING:
		return "rejoining";
	}
	return "unknown";
}

bool role_may_become(enum ns_role from, enum ns_role to)
{
	switch (from) {
	case ROLE_PRIMARY:
		return to == ROLE_STANDBY || to == ROLE_FENCED || to == ROLE_REJOINING;
	case ROLE_STANDBY:
		return to == ROLE_PRIMARY || to == ROLE_REJOINING;
	case ROLE_FENCED:
		return to == ROLE_REJOINING;
	case ROLE_REJOINING:
		return to == ROLE_STANDBY;
	}
	return false;
}

bool role_takes_commits(enum ns_role r)
{
	return r == ROLE_PRIMARY;
}

bool role_applies_stream(enum ns_role r)
{
	return r == ROLE_STANDBY || r == ROLE_REJOINING;
}
