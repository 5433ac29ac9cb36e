#include "build_info.h"

// commit.generated.h (git-ignored) is written by deploy/commit-header.sh,
// which the Makefile runs before each `swift build`: one line,
// #define MAILGATE_COMMIT "1a2b3c4d5e6f". A plain `swift build` without it
// still builds, with "unknown".
#if __has_include("commit.generated.h")
#include "commit.generated.h"
#endif

#ifndef MAILGATE_COMMIT
#define MAILGATE_COMMIT "unknown"
#endif

const char *mailgate_build_commit(void) {
    return MAILGATE_COMMIT;
}
