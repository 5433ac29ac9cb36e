// swift-tools-version:6.0
import PackageDescription

// Linux only: the code calls Glibc directly (see Sources/Posix).
//
// Module layers (each depends only on those below it):
//   mailgate (CLI)  -> Mailgate, and the modules its commands use
//   Mailgate        the application: routes, decoding, errors, request log, metrics
//   FastCGI         libfcgi workers, plain requests and responses, CGI fallback
//   SMTP            SMTP client: byte stream, session, pool (OpenSSL for TLS)
//   OAuth           OAuth2 client: token endpoint over libcurl, single-flight
//                   access token cache, PKCE authorisation with a loopback redirect
//   Store           users, integrations, logins, quotas, idempotency: one
//                   interface, two backends (GRDB/SQLite; libpq/PostgreSQL
//                   for several hosts sharing one store)
//   MIME            addresses, headers, encodings, message rendering
//   Crypto          HMAC, PBKDF2, AES-GCM, HS256 tokens, key files (OpenSSL)
//   JSON            strict JSON reader/writer, byte-wise name comparison
//   Base64          RFC 4648 codecs (standard, unpadded, url)
//   Posix           the system-call funnel: EINTR, errno -> SystemCallError
//   CFastCGI, COpenSSL, CCurl, CPostgreSQL  system libraries
//   CBuildInfo      the commit the Makefile bakes in (commit.generated.h)
let package = Package(
    name: "Mailgate",
    products: [
        .executable(name: "mailgate", targets: ["mailgate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CFastCGI",
            pkgConfig: "fcgi",
            providers: [.apt(["libfcgi-dev"])]),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]),
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(
            name: "CPostgreSQL",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]),
        .target(name: "CBuildInfo"),
        .target(name: "Posix"),
        .target(name: "Base64"),
        .target(name: "FastCGI", dependencies: ["CFastCGI", "Posix"]),
        .target(name: "JSON"),
        .target(name: "Crypto", dependencies: ["COpenSSL", "JSON", "Base64", "Posix"]),
        .target(name: "MIME", dependencies: ["Base64"]),
        .target(name: "SMTP", dependencies: ["COpenSSL", "Crypto", "Posix", "MIME", "Base64"]),
        .target(name: "OAuth", dependencies: ["CCurl", "JSON", "Base64", "Crypto", "Posix"]),
        .target(name: "Store", dependencies: [
            "Crypto", "Posix", "CPostgreSQL",
            .product(name: "GRDB", package: "GRDB.swift"),
            // The SQLite C API, for the WAL-index header (Sources/Store/SQLite/WALIndexHeader.swift).
            .product(name: "GRDBSQLite", package: "GRDB.swift"),
        ]),
        .target(name: "Mailgate", dependencies: [
            "FastCGI", "SMTP", "MIME", "Crypto", "Store", "OAuth", "JSON", "Posix", "CBuildInfo",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(name: "mailgate", dependencies: [
            "Mailgate", "Store", "Crypto", "SMTP", "MIME", "FastCGI", "Base64", "OAuth",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        // The test kit: harness errors, child processes, loopback ports,
        // certificates, raw HTTP and FastCGI clients, and the Python helpers
        // (Python/, read in place from the checkout).
        .target(name: "MailgateTesting", dependencies: ["Posix"], path: "Tests/MailgateTesting", exclude: ["Python"]),
        .testTarget(name: "JSONTests", dependencies: ["JSON"]),
        .testTarget(name: "Base64Tests", dependencies: ["Base64"]),
        .testTarget(name: "CryptoTests", dependencies: ["Crypto", "Base64"]),
        .testTarget(name: "MIMETests", dependencies: ["MIME", "MailgateTesting"]),
        .testTarget(name: "SMTPTests", dependencies: ["SMTP", "MIME", "Base64", "MailgateTesting"]),
        .testTarget(name: "OAuthTests", dependencies: ["OAuth", "JSON", "MailgateTesting"]),
        .testTarget(name: "StoreTests", dependencies: [
            "Store", "Crypto", "MailgateTesting", .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        .testTarget(name: "FastCGITests", dependencies: ["FastCGI", "MailgateTesting"]),
        .testTarget(name: "MailgateTests", dependencies: ["Mailgate", "SMTP", "MIME", "Crypto", "Store", "MailgateTesting"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Crypto", "Base64", "MailgateTesting"], exclude: ["Fixtures"]),
    ]
)
