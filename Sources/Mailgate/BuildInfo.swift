import CBuildInfo

/// What `mailgate --version` prints.
public enum BuildInfo {
    /// The release version: the one place it is written. `make deb` names
    /// the package after it (from the built binary's `--version`).
    public static let version = "0.9.0"

    /// The commit the binary was built from, baked in at build time by the
    /// Makefile (Sources/CBuildInfo): 12 hex digits, "-dirty" when the work
    /// tree had changes, or "unknown" (a plain `swift build`).
    public static let commit = String(cString: mailgate_build_commit())

    /// `mailgate 0.9.0 (commit 1a2b3c4d5e6f)`
    public static let versionLine = "mailgate \(version) (commit \(commit))"
}
