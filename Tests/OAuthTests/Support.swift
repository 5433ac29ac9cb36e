import Foundation
import MailgateTesting
import Testing
@testable import OAuth

/// A deadline comfortably beyond any single test step.
func soon(_ seconds: Int64 = 15) -> ContinuousClock.Instant { .now + .seconds(seconds) }

/// One self-signed certificate for 127.0.0.1/localhost per test run: the
/// provider's and the SMTP server's, and the `caFile` that trusts them.
enum TestCA {
    static let shared: Result<Certificate, HarnessError> = {
        do {
            let dir = try TempDir(prefix: "mailgate-oauth-ca")  // kept for the run; it is tiny
            return .success(try makeCertificate(in: dir.path, name: "localhost", subject: "/CN=localhost",
                                                san: "DNS:localhost,IP:127.0.0.1"))
        } catch let error as HarnessError {
            return .failure(error)
        } catch {
            return .failure(HarnessError("\(error)"))
        }
    }()

    static func certificate() throws -> Certificate { try shared.get() }
}

/// A provider over HTTPS with the test certificate, and what talks to it.
struct ProviderFixture {
    let provider: TestOAuthProvider
    let certificate: Certificate

    init(clientSecret: String? = "s3cret+/=&client", lifetime: Int = 3600, rotation: Bool = false) throws {
        certificate = try TestCA.certificate()
        provider = try TestOAuthProvider(certificate: certificate, clientSecret: clientSecret,
                                         lifetime: lifetime, rotation: rotation)
    }

    func endpoint(caFile: Bool = true, clientSecret: String?? = .none) throws -> TokenEndpoint {
        TokenEndpoint(url: try EndpointURL(provider.tokenURL), clientID: provider.clientID,
                      clientSecret: clientSecret ?? provider.clientSecret,
                      caFile: caFile ? certificate.cert : nil)
    }

    func credentials(refreshToken: String) throws -> OAuthCredentials {
        OAuthCredentials(endpoint: try endpoint(), refreshToken: refreshToken, scope: "https://mail.google.com/")
    }

    func refreshCount() throws -> Int { try provider.counters()["refresh"] ?? -1 }
    func codeCount() throws -> Int { try provider.counters()["code"] ?? -1 }

    func stop() { provider.stop() }
}

/// Everything a description of `value` can show: description, debug
/// description, and dump() (which walks the Mirror).
func everyRendering(of value: Any) -> String {
    var dumped = ""
    dump(value, to: &dumped)
    return String(describing: value) + "\n" + String(reflecting: value) + "\n" + dumped
}

/// The OAuthError a throwing call threw (nil when it returned; any other
/// error, such as the harness's, is recorded as a test failure).
func oauthError<T>(_ body: () throws -> T) -> OAuthError? {
    do {
        _ = try body()
        return nil
    } catch let error as OAuthError {
        return error
    } catch {
        Issue.record("not an OAuthError: \(error)")
        return nil
    }
}
