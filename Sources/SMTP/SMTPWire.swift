import Base64
import MIME

/// Pure functions that produce bytes for the wire. No I/O here, so the
/// security-relevant transformations (dot-stuffing, CRLF normalisation)
/// are tested directly.
public enum SMTPWire {
    static let cr: UInt8 = 13
    static let lf: UInt8 = 10
    static let dot: UInt8 = 46

    /// The bytes to send after DATA's 354 reply: `message` split into lines
    /// by `LineBreak`'s rule (CRLF, or a lone CR or LF), each line sent with
    /// CRLF, every line that starts with "." given an extra ".", and the
    /// end-of-data marker ".\r\n" appended.
    ///
    /// Because no bare CR or LF survives, the only "CRLF . CRLF" in the result
    /// is the terminator we add: that is what defeats SMTP smuggling, where a
    /// "\n.\n"-style sequence in the body ends the message early at a server
    /// that is lenient about line endings.
    public static func dataPayload(_ message: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 64 + 8)
        message.withUnsafeBufferPointer { bytes in
            LineBreak.forEachLine(in: bytes) { line, _ in
                if line.first == dot { out.append(dot) }
                out.append(contentsOf: line)
                out.append(cr)
                out.append(lf)
            }
        }
        out.append(dot)
        out.append(cr)
        out.append(lf)
        return out
    }

    /// The octets a BDAT chunk carries for `message` (RFC 3030): the same
    /// lines as `dataPayload`, each ended by CRLF, but neither dot-stuffed
    /// nor followed by the "." line, since the chunk's length, not a
    /// marker, ends it. The server gets the message exactly as the DATA
    /// path delivers it once unstuffed.
    public static func chunkBody(_ message: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(chunkBodyLength(message))
        appendChunkBody(message, to: &out)
        return out
    }

    /// `chunkBody(message).count`, without building it: the BDAT command
    /// line, which states it, goes out before the body in the same buffer.
    static func chunkBodyLength(_ message: [UInt8]) -> Int {
        var length = 0
        message.withUnsafeBufferPointer { bytes in
            LineBreak.forEachLine(in: bytes) { line, _ in length += line.count + 2 }
        }
        return length
    }

    /// Appends `chunkBody(message)` to `out`.
    static func appendChunkBody(_ message: [UInt8], to out: inout [UInt8]) {
        message.withUnsafeBufferPointer { bytes in
            LineBreak.forEachLine(in: bytes) { line, _ in
                out.append(contentsOf: line)
                out.append(cr)
                out.append(lf)
            }
        }
    }

    /// Why `name` cannot be the EHLO/HELO argument, or nil when it can: it
    /// goes on the command line verbatim, so no spaces or control characters.
    public static func heloNameProblem(_ name: String) -> String? {
        if name.isEmpty { return "HELO name is empty" }
        for scalar in name.unicodeScalars where scalar.value <= 0x20 || scalar.value == 0x7F {
            return "HELO name contains a space or control character"
        }
        return nil
    }

    /// The SASL PLAIN initial response (RFC 4616): base64(authzid NUL authcid NUL passwd), empty authzid.
    static func authPlain(username: String, password: String) -> String {
        Base64.standard.encode([0] + Array(username.utf8) + [0] + Array(password.utf8))
    }

    /// One AUTH LOGIN answer: the value in standard base64.
    static func authLogin(_ value: String) -> String {
        Base64.standard.encode(Array(value.utf8))
    }

    /// The XOAUTH2 initial response (Google's and Microsoft's mechanism):
    /// base64("user=" mailbox ^A "auth=Bearer " token ^A ^A).
    static func authXOAuth2(username: String, token: String) -> String {
        Base64.standard.encode(Array("user=\(username)\u{1}auth=Bearer \(token)\u{1}\u{1}".utf8))
    }

    /// The OAUTHBEARER initial response (RFC 7628 section 3.1): a GS2
    /// header naming the mailbox as authzid (RFC 5801: "," and "=" escaped
    /// as "=2C" and "=3D"), then ^A-separated key/value pairs: host and port
    /// (optional in the RFC, sent as in its examples, for servers that
    /// check them) and the bearer token, ended by ^A ^A.
    static func authOAuthBearer(username: String, token: String, host: String, port: Int) -> String {
        var authzid = ""
        for scalar in username.unicodeScalars {
            switch scalar {
            case ",": authzid += "=2C"
            case "=": authzid += "=3D"
            default: authzid.unicodeScalars.append(scalar)
            }
        }
        return Base64.standard.encode(Array("n,a=\(authzid),\u{1}host=\(host)\u{1}port=\(port)\u{1}auth=Bearer \(token)\u{1}\u{1}".utf8))
    }

    /// Why `token` cannot be sent as a bearer token, or nil when it can: RFC
    /// 6750's b64token is printable ASCII without spaces, and anything else
    /// (a ^A, a CR/LF) would change the SASL message it is framed in.
    static func bearerTokenProblem(_ token: String) -> String? {
        if token.isEmpty { return "the access token is empty" }
        if token.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F }) {
            return "the access token has characters a bearer token cannot have"
        }
        return nil
    }
}
