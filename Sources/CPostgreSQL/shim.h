#ifndef MAILGATE_CPOSTGRESQL_SHIM_H
#define MAILGATE_CPOSTGRESQL_SHIM_H
// libpq, PostgreSQL's own client library (Debian libpq-dev): connections,
// TLS and authentication as libpq does them; pkg-config libpq gives the
// include directory (/usr/include/postgresql).
#include <libpq-fe.h>

// Character-literal macros do not import into Swift; these wrap them.
static inline int mailgate_PG_DIAG_SQLSTATE(void) { return PG_DIAG_SQLSTATE; }
static inline int mailgate_PG_DIAG_MESSAGE_PRIMARY(void) { return PG_DIAG_MESSAGE_PRIMARY; }
#endif
