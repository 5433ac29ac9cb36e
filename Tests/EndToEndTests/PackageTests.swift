import Foundation
import MailgateTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The .deb of `make deb` (deploy/debian/build.sh), which `make test` builds
/// before the tests: what it holds, what it depends on, what lintian says,
/// and that its binary runs with Debian's libraries alone. Nothing is
/// installed: the package is only read and extracted into a temp dir.
@Suite("Debian package")
struct PackageTests {
    /// Every path in the package with its mode; all are root:root.
    static let expectedContents: [(mode: String, path: String)] = [
        ("drwxr-xr-x", "./"),
        ("drwxr-xr-x", "./etc/"),
        ("drwxr-xr-x", "./etc/nginx/"),
        ("drwxr-xr-x", "./etc/nginx/snippets/"),
        ("-rw-r--r--", "./etc/nginx/snippets/mailgate-http.conf"),
        ("-rw-r--r--", "./etc/nginx/snippets/mailgate.conf"),
        ("drwxr-xr-x", "./lib/"),
        ("drwxr-xr-x", "./lib/systemd/"),
        ("drwxr-xr-x", "./lib/systemd/system/"),
        ("-rw-r--r--", "./lib/systemd/system/mailgate.service"),
        ("-rw-r--r--", "./lib/systemd/system/mailgate.socket"),
        ("drwxr-xr-x", "./usr/"),
        ("drwxr-xr-x", "./usr/bin/"),
        ("-rwxr-xr-x", "./usr/bin/mailgate"),
        ("drwxr-xr-x", "./usr/share/"),
        ("drwxr-xr-x", "./usr/share/doc/"),
        ("drwxr-xr-x", "./usr/share/doc/mailgate/"),
        ("-rw-r--r--", "./usr/share/doc/mailgate/README.md.gz"),
        ("-rw-r--r--", "./usr/share/doc/mailgate/changelog.gz"),
        ("-rw-r--r--", "./usr/share/doc/mailgate/copyright"),
        ("drwxr-xr-x", "./usr/share/man/"),
        ("drwxr-xr-x", "./usr/share/man/man1/"),
        ("-rw-r--r--", "./usr/share/man/man1/mailgate.1.gz"),
    ]

    /// Depends, without versions: the shared libraries the static-stdlib
    /// binary still needs (dpkg-shlibdeps) and adduser for postinst. No
    /// libxml2: FoundationNetworking and FoundationXML are not linked (libcurl
    /// is there for the OAuth module itself).
    static let expectedDepends: Set<String> = [
        "adduser", "libc6", "libgcc-s1", "libstdc++6", "libfcgi0ldbl", "libssl3", "libsqlite3-0",
        "libcurl4",  // the OAuth2 token endpoint client (CCurl)
        "libpq5",  // the PostgreSQL store's client (CPostgreSQL)
    ]

    @Test func holdsExactlyTheListedFilesOwnedByRoot() throws {
        let package = try DebianPackage.shared.get()
        let listing = try package.run("/usr/bin/dpkg-deb", ["--contents", package.deb])
        // drwxr-xr-x root/root         0 2026-11-29 13:30 ./usr/bin/
        let entries = listing.split(separator: "\n").map { line -> (mode: String, owner: String, path: String) in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return (String(fields.first ?? ""), fields.count > 1 ? String(fields[1]) : "",
                    fields.count > 5 ? fields[5...].joined(separator: " ") : "")
        }
        #expect(entries.map(\.path) == Self.expectedContents.map(\.path), "dpkg-deb --contents:\n\(listing)")
        #expect(entries.map(\.mode) == Self.expectedContents.map(\.mode), "dpkg-deb --contents:\n\(listing)")
        #expect(entries.allSatisfy { $0.owner == "root/root" }, "dpkg-deb --contents:\n\(listing)")
    }

    @Test func controlNamesTheVersionAndOnlyDebianLibraries() throws {
        let package = try DebianPackage.shared.get()
        let control = try package.controlFields()
        #expect(control["Package"] == "mailgate")
        #expect(control["Architecture"] == package.architecture)
        #expect(control["Version"] == package.version, "the file name's version is the control file's")
        #expect(package.version == (try Self.debianChangelogVersion()),
                "the package's version and the last entry of deploy/debian/changelog differ")
        let depends = Set((control["Depends"] ?? "").split(separator: ",").map {
            String($0.trimmingCharacters(in: .whitespaces).prefix { $0 != " " && $0 != "(" })
        })
        #expect(depends == Self.expectedDepends, "Depends: \(control["Depends"] ?? "none")")

        // The version the binary in the package prints.
        let line = try VersionLine(try package.run(package.binary, ["--version"], environment: DebianPackage.bareEnvironment))
        #expect(line.version == package.version)

        // The nginx snippets are conffiles (an administrator's edits survive upgrades).
        let conffiles = try String(contentsOfFile: package.controlDir + "/conffiles", encoding: .utf8)
        #expect(conffiles.split(separator: "\n") == ["/etc/nginx/snippets/mailgate-http.conf",
                                                     "/etc/nginx/snippets/mailgate.conf"])
        // Maintainer scripts: executable, `set -e`, valid sh.
        for script in ["postinst", "prerm", "postrm"] {
            let path = package.controlDir + "/" + script
            #expect(access(path, X_OK) == 0, "\(script) is executable")
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            #expect(text.hasPrefix("#!/bin/sh\n") && text.contains("\nset -e\n"), "\(script): #!/bin/sh and set -e")
            _ = try package.run("/bin/sh", ["-n", path])
        }
        // md5sums covers every file but the conffiles, and matches them.
        _ = try package.run("/bin/sh", ["-c", "cd \"$1\" && md5sum --check --quiet \"$2\"", "sh",
                                        package.root, package.controlDir + "/md5sums"])
        let summed = try String(contentsOfFile: package.controlDir + "/md5sums", encoding: .utf8)
            .split(separator: "\n").map { String($0.split(separator: " ", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) }
        let files = Self.expectedContents.filter { $0.mode.hasPrefix("-") && !$0.path.hasPrefix("./etc/") }
            .map { String($0.path.dropFirst(2)) }
        #expect(summed == files)
    }

    /// The binary as extracted from the package: no Swift toolchain library
    /// path is linked in or needed, and it runs with an empty LD_LIBRARY_PATH.
    @Test func binaryRunsWithDebianLibrariesAlone() throws {
        let package = try DebianPackage.shared.get()
        let ldd = try package.run("/usr/bin/ldd", [package.binary], environment: DebianPackage.bareEnvironment)
        #expect(!ldd.contains("/opt/swift") && !ldd.contains("not found"), "ldd:\n\(ldd)")
        // (libcurl is loaded, from Debian's libcurl4: the OAuth module's
        // HTTP client; Foundation's networking is not linked at all.)
        for library in ["libswiftCore", "libFoundation", "lib_FoundationICU", "libdispatch", "libBlocksRuntime",
                        "libxml2", "libicu"] {
            #expect(!ldd.contains(library), "\(library) is linked in, not loaded: ldd:\n\(ldd)")
        }
        for library in ["libfcgi.so.0", "libssl.so.3", "libcrypto.so.3", "libsqlite3.so.0", "libcurl.so.4", "libpq.so.5"] {
            #expect(ldd.contains(library), "ldd names \(library):\n\(ldd)")
        }
        let dynamic = try package.run("/usr/bin/objdump", ["-p", package.binary])
        #expect(!dynamic.contains("RPATH") && !dynamic.contains("RUNPATH"), "no library search path is baked in")

        let version = try package.run(package.binary, ["--version"], environment: DebianPackage.bareEnvironment)
        let line = try VersionLine(version)
        // The package and the debug binary of the same `make test` come from one commit.
        let debug = try VersionLine(try package.run(E2E.mailgateBinary, ["--version"]))
        #expect(line == debug, "the .deb's binary says \(line), the build's \(debug): rebuild it (`make deb`)")

        let help = try package.run(package.binary, ["--help"], environment: DebianPackage.bareEnvironment)
        #expect(help.contains("USAGE: mailgate <subcommand>") && help.contains("serve"), "--help:\n\(help)")
        let serveHelp = try package.run(package.binary, ["help", "serve"], environment: DebianPackage.bareEnvironment)
        #expect(serveHelp.contains("--socket"), "help serve:\n\(serveHelp)")
    }

    /// The units and snippets are the repository's files, unchanged: the
    /// units already run /usr/bin/mailgate.
    @Test func unitsAndSnippetsAreTheShippedFiles() throws {
        let package = try DebianPackage.shared.get()
        let pairs = [
            ("lib/systemd/system/mailgate.service", "deploy/systemd/mailgate.service"),
            ("lib/systemd/system/mailgate.socket", "deploy/systemd/mailgate.socket"),
            ("etc/nginx/snippets/mailgate.conf", "nginx/mailgate.conf"),
            ("etc/nginx/snippets/mailgate-http.conf", "nginx/mailgate-http.conf"),
        ]
        for (installed, shipped) in pairs {
            let a = FileManager.default.contents(atPath: package.root + "/" + installed)
            let b = FileManager.default.contents(atPath: E2E.repoRoot + "/" + shipped)
            #expect(a != nil && a == b, "\(installed) is \(shipped)")
        }
        let service = try String(contentsOfFile: package.root + "/lib/systemd/system/mailgate.service", encoding: .utf8)
        let execStart = service.split(separator: "\n").filter { $0.hasPrefix("ExecStart=") }
        #expect(execStart == ["ExecStart=/usr/bin/mailgate serve --data-dir /var/lib/mailgate"])
    }

    /// lintian: no error. Its warnings are the ones expected (each explained
    /// in deploy/debian/build.sh), so a new one is noticed.
    @Test func lintianReportsNoError() throws {
        let package = try DebianPackage.shared.get()
        let result = try runTool("/usr/bin/lintian", ["--no-cfg", "--fail-on", "error", package.deb],
                                 in: package.dir, environment: DebianPackage.lintianEnvironment, timeout: 600)
        let output = result.stdoutText
        let tags = output.split(separator: "\n").filter { $0.hasPrefix("E: ") || $0.hasPrefix("W: ") }
        #expect(result.ok && tags.allSatisfy { !$0.hasPrefix("E: ") }, "lintian (\(result.status)):\n\(output)\(result.stderr)")
        let unexpected = tags.filter { tag in !Self.expectedLintianWarnings.contains { tag.contains($0) } }
        #expect(unexpected.isEmpty, "lintian warnings not in expectedLintianWarnings:\n\(unexpected.joined(separator: "\n"))")
    }

    /// Accepted lintian warnings (tags), each with its reason. None today:
    /// only I: tags remain (hardening-no-fortify-functions from the static
    /// Swift runtime's C parts, spelling-error-in-binary in ICU's data,
    /// package-supports-alternative-init-but-no-init.d-script).
    static let expectedLintianWarnings: [String] = []

    /// The version of deploy/debian/changelog's last entry: `mailgate (0.9.0) unstable; ...`.
    static func debianChangelogVersion() throws -> String {
        let text = try String(contentsOfFile: E2E.repoRoot + "/deploy/debian/changelog", encoding: .utf8)
        guard let match = text.prefixMatch(of: /mailgate \(([^)]+)\)/) else {
            throw HarnessError("deploy/debian/changelog does not start with `mailgate (VERSION)`")
        }
        return String(match.1)
    }
}

/// The package under test, found once and extracted once (`dpkg-deb -x`
/// and `-e`) into a temp dir, removed at exit.
struct DebianPackage: Sendable {
    let deb: String
    let version: String
    let architecture: String
    let dir: String
    /// The extracted file system tree.
    let root: String
    /// The extracted control files (DEBIAN/).
    let controlDir: String
    var binary: String { root + "/usr/bin/mailgate" }

    /// No Swift toolchain anywhere: an empty LD_LIBRARY_PATH, a PATH of the system's.
    static let bareEnvironment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH": "", "LANG": "C.UTF-8"]
    static let lintianEnvironment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
                                     "TMPDIR": "/tmp"]

    /// `$MAILGATE_DEB`, else the one `.build/deb/mailgate_*_ARCH.deb` of `make deb`.
    static let shared: Result<DebianPackage, HarnessError> = {
        do { return .success(try DebianPackage.open()) } catch let error as HarnessError {
            return .failure(error)
        } catch {
            return .failure(HarnessError("\(error)"))
        }
    }()

    private static func open() throws -> DebianPackage {
        let dir = try TempDir(prefix: "mailgate-e2e-deb", in: "/tmp").path
        ChildRegistry.shared.removeAtExit(dir)
        let arch = try runChecked("/usr/bin/dpkg", ["--print-architecture"], in: dir)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let deb: String
        if let given = ProcessInfo.processInfo.environment["MAILGATE_DEB"] {
            deb = given
        } else {
            let output = E2E.repoRoot + "/.build/deb"
            let found = ((try? FileManager.default.contentsOfDirectory(atPath: output)) ?? [])
                .filter { $0.hasPrefix("mailgate_") && $0.hasSuffix("_\(arch).deb") }
            guard found.count == 1 else {
                throw HarnessError("expected one mailgate_*_\(arch).deb in \(output), found \(found.count) "
                                   + "\(found): run `make deb` first (`make test` does), or set MAILGATE_DEB")
            }
            deb = output + "/" + found[0]
        }
        guard FileManager.default.fileExists(atPath: deb) else {
            throw HarnessError("no package at \(deb): run `make deb` first (`make test` does)")
        }
        let name = (deb as NSString).lastPathComponent
        guard let match = name.wholeMatch(of: /mailgate_([^_]+)_([^_]+)\.deb/), String(match.2) == arch else {
            throw HarnessError("\(name) is not named mailgate_VERSION_\(arch).deb")
        }
        let root = dir + "/root", control = dir + "/DEBIAN"
        _ = try runChecked("/usr/bin/dpkg-deb", ["--extract", deb, root], in: dir)
        _ = try runChecked("/usr/bin/dpkg-deb", ["--control", deb, control], in: dir)
        return DebianPackage(deb: deb, version: String(match.1), architecture: arch, dir: dir, root: root,
                             controlDir: control)
    }

    /// The control file's fields (single-line ones; Description's body is skipped).
    func controlFields() throws -> [String: String] {
        let text = try String(contentsOfFile: controlDir + "/control", encoding: .utf8)
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix(" ") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    /// Runs a tool, fails unless it exits 0, returns its stdout.
    func run(_ tool: String, _ arguments: [String], environment: [String: String]? = nil) throws -> String {
        try Self.runChecked(tool, arguments, in: dir, environment: environment)
    }

    private static func runChecked(_ tool: String, _ arguments: [String], in dir: String,
                                   environment: [String: String]? = nil) throws -> String {
        let result = try runTool(tool, arguments, in: dir, environment: environment, timeout: 120)
        guard result.ok else {
            throw HarnessError("\(tool) \(arguments.joined(separator: " ")) (\(result.status)): "
                               + "\(result.stderr)\(result.stdoutText.suffix(2000))")
        }
        return result.stdoutText
    }
}
