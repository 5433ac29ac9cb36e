import Foundation
import MailgateTesting
import Testing

/// A user whose integration points at `server`, and one send through nginx.
private func send(via target: SMTPTarget, prefix: String) async throws -> (HTTPResponse, String) {
    let env = try await E2E.get()
    let user = try await env.makeUser(prefix, smtp: target)
    let token = try await env.token(user.name)
    let marker = uniqueMarker(prefix)
    let response = try await env.send(token: token, to: "r@example.org", subject: marker, message: "tls \(marker)")
    return (response, marker)
}

private func mentionsCertificate(_ response: HTTPResponse) -> Bool {
    let detail = (response.detail ?? "").lowercased()
    return detail.contains("certificate") || detail.contains("verif") || detail.contains("host name")
        || detail.contains("hostname")
}

/// Issue 4, TLS: certificates and names are verified; STARTTLS is required
/// when configured; implicit TLS works. (The happy path with --ca-file is
/// CoreTests' STARTTLS delivery.)
@Suite("TLS to the SMTP server")
struct TLSTests {
    @Test func implicitTLSDelivers() async throws {
        let env = try await E2E.get()
        let server = try await CaptureServer.startAsync(name: "implicit", options: .init(
            implicitTLS: true, certificate: env.localhostCert, authUser: "tls-login", authPassword: "tls-pass-123"))
        defer { server.stop() }
        let (response, marker) = try await send(via: SMTPTarget(port: server.port, security: "tls", username: "tls-login",
                                                                  password: "tls-pass-123"), prefix: "implicit")
        #expect(response.status == 200, "\(response)")
        let message = try await server.waitForMessage(containing: marker)
        #expect(message.envelope.tls)
        #expect(message.envelope.login == "tls-login")
    }

    @Test func untrustedCertificateFailsWithClearDetail() async throws {
        let env = try await E2E.get()
        let server = try await CaptureServer.startAsync(name: "untrusted", options: .init(
            implicitTLS: true, certificate: env.untrustedCert))
        defer { server.stop() }
        let (response, _) = try await send(via: SMTPTarget(port: server.port, security: "tls"), prefix: "untrusted")
        #expect(response.status == 502, "\(response)")
        #expect(mentionsCertificate(response), "\(response)")
        #expect(response.code == "smtp_failed", "\(response)")
        #expect(server.allMessages().isEmpty)
    }

    @Test func untrustedCertificateOnSTARTTLSFailsBeforeLogin() async throws {
        let env = try await E2E.get()
        let server = try await CaptureServer.startAsync(name: "untrusted-starttls", options: .init(
            starttls: true, certificate: env.untrustedCert, authUser: "u", authPassword: "p-untrusted"))
        defer { server.stop() }
        let (response, _) = try await send(via: SMTPTarget(port: server.port, security: "starttls", username: "u",
                                                           password: "p-untrusted"), prefix: "untrst")
        #expect(response.status == 502, "\(response)")
        #expect(mentionsCertificate(response), "\(response)")
        #expect(response.code == "smtp_failed", "\(response)")
        #expect(server.allMessages().isEmpty)
    }

    @Test func nameMismatchFailsEvenWithTrustedCertificate() async throws {
        let env = try await E2E.get()
        // other.example's certificate is in --ca-file, but we connect to 127.0.0.1.
        let server = try await CaptureServer.startAsync(name: "mismatch", options: .init(
            implicitTLS: true, certificate: env.otherNameCert))
        defer { server.stop() }
        let (response, _) = try await send(via: SMTPTarget(port: server.port, security: "tls"), prefix: "mismatch")
        #expect(response.status == 502, "\(response)")
        #expect(mentionsCertificate(response), "\(response)")
        #expect(response.code == "smtp_failed", "\(response)")
        #expect(server.allMessages().isEmpty)
    }

    @Test func hostNameIsVerifiedAgainstDNSSubjectAltName() async throws {
        let env = try await E2E.get()
        var target = env.mainCaptureTarget
        target.host = "localhost"
        let (response, marker) = try await send(via: target, prefix: "dnsname")
        #expect(response.status == 200, "\(response)")
        if response.status == 200 {
            let message = try await env.capture.waitForMessage(containing: marker)
            #expect(message.envelope.tls)
        }
    }

    @Test func starttlsRequiredButNotOfferedFailsAndNothingIsSent() async throws {
        let server = try await CaptureServer.startAsync(name: "nostarttls", options: .init())
        defer { server.stop() }
        let (response, _) = try await send(via: SMTPTarget(port: server.port, security: "starttls", username: "u",
                                                           password: "never-sent-in-clear"), prefix: "nostls")
        #expect(response.status == 502, "\(response)")
        #expect(response.detail?.uppercased().contains("STARTTLS") == true, "\(response)")
        #expect(response.code == "smtp_failed", "\(response)")
        #expect(server.allMessages().isEmpty, "nothing may be sent in clear")
    }

    @Test func starttlsRequiredButSinkDoesNotOfferIt() async throws {
        let sink = try await SinkServer.start([])
        defer { sink.stop() }
        let (response, _) = try await send(via: SMTPTarget(port: sink.port, security: "starttls"), prefix: "sinkstls")
        #expect(response.status == 502, "\(response)")
        #expect(response.code == "smtp_failed", "\(response)")
    }

    @Test func implicitTLSAgainstPlainServerFails() async throws {
        let server = try await CaptureServer.startAsync(name: "plain-for-tls", options: .init())
        defer { server.stop() }
        let (response, _) = try await send(via: SMTPTarget(port: server.port, security: "tls"), prefix: "tlsplain")
        #expect(response.status != 200 && response.status >= 500, "\(response)")
        #expect(response.isJSON)
        #expect(server.allMessages().isEmpty)
    }
}
