// swift-tools-version:6.0
import PackageDescription

// Module layers (each depends only on those below it):
//   mailgate (CLI) -> Mailgate (routes, errors, config)
//   Mailgate -> FastCGI, SMTP, MIME, Tokens, Store
//   Store -> Tokens (secret sealing), GRDB
//   Tokens, Mailgate -> JSON (strict reader/writer)
//   FastCGI -> CFastCGI (libfcgi);  SMTP, Tokens -> COpenSSL
let package = Package(
    name: "Mailgate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mailgate", targets: ["mailgate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
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
        .target(name: "FastCGI", dependencies: ["CFastCGI"]),
        .target(name: "JSON"),
        .target(name: "Tokens", dependencies: ["COpenSSL", "JSON"]),
        .target(name: "MIME"),
        .target(name: "SMTP", dependencies: ["COpenSSL"]),
        .target(name: "Store", dependencies: [
            "Tokens",
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        .target(name: "Mailgate", dependencies: [
            "FastCGI", "SMTP", "MIME", "Tokens", "Store", "JSON",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "mailgate", dependencies: [
            "Mailgate", "Store", "Tokens", "SMTP", "FastCGI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "JSONTests", dependencies: ["JSON"]),
        .testTarget(name: "TokensTests", dependencies: ["Tokens"]),
        .testTarget(name: "MIMETests", dependencies: ["MIME"]),
        .testTarget(name: "SMTPTests", dependencies: ["SMTP"]),
        .testTarget(name: "StoreTests", dependencies: ["Store", "Tokens"]),
        .testTarget(name: "FastCGITests", dependencies: ["FastCGI"]),
        .testTarget(name: "MailgateTests", dependencies: ["Mailgate", "SMTP", "MIME", "Tokens", "Store"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Tokens"], exclude: ["Fixtures"]),
    ]
)
