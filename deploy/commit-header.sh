#!/bin/bash
# Writes Sources/CBuildInfo/commit.generated.h, the commit `mailgate
# --version` prints: `git rev-parse --short=12 HEAD`, with "-dirty" when
# tracked files differ from it (untracked files do not count, as with
# `git describe --dirty`), or "unknown" outside a git checkout.
# Run by the Makefile before each `swift build` (build, release, deb).
#
# The file is rewritten only when the commit changes, so an unchanged
# commit invalidates nothing. When it changes, build_info.c is touched
# too: clang's dependency file from a build without the header does not
# name it, so its first appearance alone would not rebuild anything.
set -euo pipefail
cd "$(dirname "$0")/.."
header=Sources/CBuildInfo/commit.generated.h

if commit=$(git rev-parse --short=12 HEAD 2>/dev/null); then
    if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        commit="$commit-dirty"
    fi
else
    commit=unknown
fi

line="#define MAILGATE_COMMIT \"$commit\""
if [ "$(cat "$header" 2>/dev/null)" != "$line" ]; then
    printf '%s\n' "$line" > "$header.tmp"
    mv "$header.tmp" "$header"
    touch Sources/CBuildInfo/build_info.c
    echo "commit $commit (written to $header)"
fi
