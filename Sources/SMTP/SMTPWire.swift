/// Pure functions that produce bytes for the wire. No I/O here, so the
/// security-relevant transformations (dot-stuffing, CRLF normalisation,
/// address checks) are tested directly.
public enum SMTPWire {
    static let cr: UInt8 = 13
    static let lf: UInt8 = 10
    static let dot: UInt8 = 46

    /// The bytes to send after DATA's 354 reply: `message` with every line
    /// ending (CRLF, lone LF, lone CR, CR CR LF) turned into CRLF, every line
    /// that starts with "." given an extra ".", a final CRLF added when
    /// missing, and the end-of-data marker ".\r\n" appended.
    ///
    /// Because no bare CR or LF survives, the only "CRLF . CRLF" in the result
    /// is the terminator we add: that is what defeats SMTP smuggling, where a
    /// "\n.\n"-style sequence in the body ends the message early at a server
    /// that is lenient about line endings.
    public static func dataPayload(_ message: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 64 + 8)
        var atLineStart = true
        var i = 0
        let n = message.count
        while i < n {
            let b = message[i]
            if b == cr || b == lf {
                if b == cr {
                    // A run of CRs ended by LF is one line break (CR CR LF is
                    // a CRLF converted twice); CRs not followed by LF each
                    // end a line on their own.
                    var j = i
                    while j < n, message[j] == cr { j += 1 }
                    if j < n, message[j] == lf {
                        i = j + 1
                    } else {
                        i += 1
                    }
                } else {
                    i += 1
                }
                out.append(cr)
                out.append(lf)
                atLineStart = true
                continue
            }
            if atLineStart && b == dot { out.append(dot) }
            out.append(b)
            atLineStart = false
            i += 1
        }
        if !atLineStart {
            out.append(cr)
            out.append(lf)
        }
        out.append(dot)
        out.append(cr)
        out.append(lf)
        return out
    }

    /// RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF.
    public static let maxLineLength = 998

    /// The length in octets of the longest line of `message`, with line ends
    /// counted as `dataPayload` does (CR, LF and CRLF all end a line).
    public static func longestLineLength(_ message: [UInt8]) -> Int {
        var longest = 0
        var current = 0
        for b in message {
            if b == cr || b == lf {
                longest = max(longest, current)
                current = 0
            } else {
                current += 1
            }
        }
        return max(longest, current)
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

    /// Why `address` cannot be put inside "<...>" on a MAIL or RCPT line, or
    /// nil when it can. CR and LF would inject commands, NUL truncates at
    /// some servers, and angle brackets would end the path early.
    public static func addressProblem(_ address: String) -> String? {
        for scalar in address.unicodeScalars {
            switch scalar {
            case "\r": return "address contains a carriage return"
            case "\n": return "address contains a line feed"
            case "\0": return "address contains a NUL character"
            case "<", ">": return "address contains an angle bracket"
            default: continue
            }
        }
        return nil
    }

    /// Standard base64 with padding (RFC 4648), for AUTH.
    static func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(v >> 18)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)], alphabet[Int(v & 63)]]
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let v = UInt32(bytes[i]) << 16
            out += [alphabet[Int(v >> 18)], alphabet[Int(v >> 12 & 63)], UInt8(ascii: "="), UInt8(ascii: "=")]
        } else if rest == 2 {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(v >> 18)], alphabet[Int(v >> 12 & 63)], alphabet[Int(v >> 6 & 63)], UInt8(ascii: "=")]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The SASL PLAIN initial response (RFC 4616): base64(authzid NUL authcid NUL passwd), empty authzid.
    static func authPlain(username: String, password: String) -> String {
        base64([0] + Array(username.utf8) + [0] + Array(password.utf8))
    }

    /// Parses EHLO reply lines (after the first) into keyword -> parameters,
    /// keywords upper-cased. The obsolete "AUTH=LOGIN PLAIN" form some old
    /// servers send is merged into "AUTH".
    static func parseExtensions(_ reply: SMTPReply) -> [String: [String]] {
        var result: [String: [String]] = [:]
        for line in reply.lines.dropFirst() {
            var words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard !words.isEmpty else { continue }
            var keyword = words.removeFirst().uppercased()
            if keyword.hasPrefix("AUTH=") {
                words.insert(String(keyword.dropFirst(5)), at: 0)
                keyword = "AUTH"
            }
            result[keyword, default: []].append(contentsOf: words)
        }
        return result
    }
}
