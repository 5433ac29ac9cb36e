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
}
