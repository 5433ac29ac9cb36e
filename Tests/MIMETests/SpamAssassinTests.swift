import Foundation
import MailgateTesting
import Testing
@testable import MIME

/// Issue 8: every shape of message scores no structural SpamAssassin rule
/// (Debian's spamassassin with its shipped rules, local tests only: `-L`).
/// Structural means about how the message is built (MIME layout, encodings,
/// boundaries, missing or malformed headers), not about what it says: rules
/// about words, images or list headers judge the content a caller chose.
@Suite("SpamAssassin: no structural rule")
struct SpamAssassinTests {
    /// Rule-name prefixes and names that judge structure.
    static let structuralPrefixes = ["MIME_", "MPART_", "MISSING_", "INVALID_", "BASE64_", "CTYPE_", "TVD_", "HEADER_",
                                     "FROM_EXCESS", "SUBJ_ILLEGAL", "MSGID_", "DATE_IN_", "BAD_ENC_HEADER",
                                     "HTML_MIME_NO_HTML_TAG", "NO_HEADERS_MESSAGE", "EMPTY_MESSAGE", "__MIME"]

    static func shapes() throws -> [(String, MailMessage)] {
        let from = try EmailAddress.parse("Mailgate Sender <sender@example.com>")
        let to = try EmailAddress.parse("Bob Example <bob@example.org>")
        let cc = try EmailAddress.parse("Carl Exämple <carl@example.net>")
        let text = "Hello Bob,\n\nthe quarterly report is attached, with the figures we discussed on Monday. "
            + "Let me know if anything is unclear.\n\nBest regards,\nAnn\n"
        let html = "<html><body><p>Hello Bob,</p><p>the quarterly report is attached, with the figures we discussed "
            + "on Monday. Let me know if anything is unclear.</p><p>Best regards,<br>Ann</p></body></html>"
        let pdf = (0..<6000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        func message(_ id: String, html: String? = nil, attachments: [Attachment] = [],
                     headers: [CustomHeader] = []) -> MailMessage {
            MailMessage(from: from, to: [to], cc: [cc], replyTo: [from], subject: "Quarterly report — Q3", body: text,
                        html: html, attachments: attachments, headers: headers, date: Date(),
                        messageID: "\(id).0123456789abcdef@example.com")
        }
        return [
            ("text", message("text")),
            ("alternative", message("alternative", html: html)),
            ("related", message("related", html: html + "<img src=\"cid:logo@example.com\">",
                                attachments: [Attachment(filename: "logo.png", content: pdf, contentType: "image/png",
                                                         contentID: "logo@example.com")])),
            ("mixed", message("mixed", html: html,
                              attachments: [Attachment(filename: "Q3 report.pdf", content: pdf),
                                            Attachment(filename: "Résumé ünïcode.txt", content: Array("naïve\n".utf8))],
                              headers: [CustomHeader(name: "X-Campaign", value: "Été")])),
        ]
    }

    @Test func noShapeHitsAStructuralRule() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/spamassassin") else {
            Issue.record("spamassassin is not installed (make test installs it with apt)")
            return
        }
        let dir = try TempDir(prefix: "mime-spamassassin")
        defer { dir.remove() }
        for (name, message) in try Self.shapes() {
            let rendered = try message.render()
            let result = try await blocking {
                try runTool("/usr/bin/spamassassin", ["-L", "-t"], in: dir.path, stdin: rendered, timeout: 120)
            }
            let report = result.stdoutText
            guard let start = report.range(of: "Content analysis details:") else {
                Issue.record("\(name): no SpamAssassin report (\(result.status)): \(result.stderr.prefix(500))")
                continue
            }
            // Report lines: " 1.7 RULE_NAME  description".
            let rules = report[start.upperBound...].split(separator: "\n").compactMap { line -> String? in
                let words = line.split(separator: " ", omittingEmptySubsequences: true)
                guard words.count >= 2, Double(words[0]) != nil else { return nil }
                return String(words[1])
            }
            let structural = rules.filter { rule in Self.structuralPrefixes.contains { rule.hasPrefix($0) } }
            #expect(structural.isEmpty, "\(name): \(structural) (all hits: \(rules))")
            #expect(!rules.isEmpty, "\(name): the report lists at least the informational NO_RECEIVED")
        }
    }
}
