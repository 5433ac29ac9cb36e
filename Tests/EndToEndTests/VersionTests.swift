import Foundation
import MailgateTesting
import Testing

/// `mailgate --version`: the version (BuildInfo.version) and the commit the
/// Makefile baked in (Sources/CBuildInfo/commit.generated.h).
@Suite("Version")
struct VersionTests {
    @Test func versionPrintsTheVersionAndTheCommit() throws {
        let dir = try TempDir(prefix: "mailgate-e2e-version")
        defer { dir.remove() }
        let result = try runTool(E2E.mailgateBinary, ["--version"], in: dir.path)
        #expect(result.ok, "mailgate --version: \(result.status) \(result.stderr)")
        let line = try VersionLine(result.stdoutText)

        // Built through the Makefile: the header names the commit, and the
        // binary says that commit, which is the checkout's HEAD.
        guard let header = VersionLine.generatedCommit() else {
            #expect(line.commit == "unknown", "no commit.generated.h, so a plain `swift build`: \(line.commit)")
            return
        }
        #expect(line.commit == header,
                "the binary says commit \(line.commit), commit.generated.h \(header): rebuild (`make build`)")
        let head = try VersionLine.gitHead(in: dir.path)
        #expect(line.commit == head || line.commit == head + "-dirty",
                "the binary says commit \(line.commit), HEAD is \(head): rebuild (`make build`)")
    }

    @Test func helpStillListsTheCommands() throws {
        let dir = try TempDir(prefix: "mailgate-e2e-version")
        defer { dir.remove() }
        let result = try runTool(E2E.mailgateBinary, ["--help"], in: dir.path)
        #expect(result.ok, "mailgate --help: \(result.status) \(result.stderr)")
        for command in ["init", "serve", "user", "integration", "token", "--version"] {
            #expect(result.stdoutText.contains(command), "--help lists \(command)")
        }
    }
}

/// `mailgate 0.9.0 (commit 1a2b3c4d5e6f)`, `... (commit 1a2b3c4d5e6f-dirty)`
/// or `... (commit unknown)`, alone on stdout.
struct VersionLine: Equatable, CustomStringConvertible {
    var version: String
    var commit: String

    init(_ output: String) throws {
        let text = output.hasSuffix("\n") ? String(output.dropLast()) : output
        guard let match = text.wholeMatch(of: /mailgate (\d+\.\d+\.\d+) \(commit ([0-9a-f]{12}(?:-dirty)?|unknown)\)/) else {
            throw HarnessError("--version printed \(output.debugDescription), not `mailgate X.Y.Z (commit HEX12|unknown)`")
        }
        version = String(match.1)
        commit = String(match.2)
    }

    var description: String { "mailgate \(version) (commit \(commit))" }

    /// The commit in Sources/CBuildInfo/commit.generated.h, if the Makefile wrote it.
    static func generatedCommit() -> String? {
        let path = E2E.repoRoot + "/Sources/CBuildInfo/commit.generated.h"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let match = text.firstMatch(of: /#define MAILGATE_COMMIT "([^"]*)"/) else { return nil }
        return String(match.1)
    }

    /// `git rev-parse --short=12 HEAD` of the checkout.
    static func gitHead(in dir: String) throws -> String {
        let result = try runTool("/usr/bin/git", ["-C", E2E.repoRoot, "rev-parse", "--short=12", "HEAD"], in: dir)
        guard result.ok else { throw HarnessError("git rev-parse: \(result.stderr)") }
        return result.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
