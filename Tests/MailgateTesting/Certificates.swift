/// Paths of a certificate and its key.
public struct Certificate: Sendable {
    public var cert: String
    public var key: String

    public init(cert: String, key: String) {
        self.cert = cert
        self.key = key
    }
}

/// A self-signed certificate made with the openssl CLI: `<dir>/<name>-cert.pem`
/// and `<dir>/<name>-key.pem`, for `subject` (e.g. "/CN=localhost") and the
/// subjectAltName `san` (e.g. "DNS:localhost,IP:127.0.0.1").
public func makeCertificate(in dir: String, name: String, subject: String, san: String,
                            days: Int = 2) throws -> Certificate {
    let certificate = Certificate(cert: "\(dir)/\(name)-cert.pem", key: "\(dir)/\(name)-key.pem")
    let result = try runTool("/usr/bin/openssl", [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", String(days), "-subj", subject,
        "-addext", "subjectAltName=\(san)", "-keyout", certificate.key, "-out", certificate.cert,
    ], in: dir)
    guard result.ok else { throw HarnessError("openssl req failed: \(result.stderr)") }
    return certificate
}
