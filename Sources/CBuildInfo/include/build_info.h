#ifndef MAILGATE_BUILD_INFO_H
#define MAILGATE_BUILD_INFO_H

/// The commit this binary was built from: 12 hex digits (plus "-dirty"
/// when the work tree had changes), or "unknown" when the build did not
/// go through the Makefile, which writes commit.generated.h.
const char *mailgate_build_commit(void);

#endif
