import Base64
import Foundation
import MailgateTesting
import Crypto

/// Hand-made JWTs: any header, any payload, any key, any encoding mistake.
enum TokenCraft {
    static let hs256Header = #"{"alg":"HS256","typ":"JWT"}"#

    static func encode(_ text: String) -> String { Base64.url.encode(Array(text.utf8)) }

    static func mac(_ signingInput: String, key: [UInt8]) throws -> String {
        Base64.url.encode(try Crypto.hmacSHA256(key: key, message: Array(signingInput.utf8)))
    }

    /// `header.payload.HMAC-SHA256(key, header.payload)`, segments base64url.
    static func make(header: String = hs256Header, payload: String, key: [UInt8]) throws -> String {
        let input = encode(header) + "." + encode(payload)
        return input + "." + (try mac(input, key: key))
    }

    /// Signs already-encoded segments exactly as given.
    static func sign(encodedHeader: String, encodedPayload: String, key: [UInt8]) throws -> String {
        let input = encodedHeader + "." + encodedPayload
        return input + "." + (try mac(input, key: key))
    }

    static var now: Int64 { Int64(Date().timeIntervalSince1970) }

    /// A payload with the usual claims; `nil` leaves a claim out.
    static func claims(sub: String?, exp: String? = String(now + 600), iat: String? = String(now),
                       ver: String? = "0", extra: String = "") -> String {
        var members: [String] = []
        if let sub { members.append("\"sub\":\"\(sub)\"") }
        if let iat { members.append("\"iat\":\(iat)") }
        if let exp { members.append("\"exp\":\(exp)") }
        if let ver { members.append("\"ver\":\(ver)") }
        if !extra.isEmpty { members.append(extra) }
        return "{" + members.joined(separator: ",") + "}"
    }
}

/// PyJWT (Debian python3-jwt), a library nobody here wrote.
enum PyJWT {
    /// `jwt.encode(payload, key, algorithm)`; `keySource` is a Python
    /// expression for the key (default: the bytes of token.key).
    static func encode(payloadJSON: String, algorithm: String = "HS256", keySource: String? = nil,
                       headersJSON: String = "null") async throws -> String {
        let env = try await E2E.get()
        var arguments = ["encode", env.dataDir + "/token.key", payloadJSON, algorithm, headersJSON]
        if let keySource { arguments.append(keySource) }
        return try await python(PythonHelper.path("pyjwt_tool.py"), arguments)
    }

    /// `jwt.decode(token, key, algorithms=["HS256"])` as JSON, or throws.
    static func decode(_ token: String) async throws -> [String: Any] {
        let env = try await E2E.get()
        let out = try await python(PythonHelper.path("pyjwt_tool.py"), ["decode", env.dataDir + "/token.key", token])
        guard let object = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else {
            throw HarnessError("PyJWT decode printed \(out)")
        }
        return object
    }
}
