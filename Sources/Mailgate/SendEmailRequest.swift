import JSON
import Base64

/// The body of `POST /smtp/send-email`, checked for shape (JSON types) but
/// not yet for meaning: addresses, header names and attachment contents are
/// judged later, each with its own 400.
///
/// Wrong JSON types are 422 in FastAPI's list shape, with the member's path
/// (`["body", "attachments", 2, "content"]`). Unknown members are ignored;
/// `null` counts as absent for the optional members.
struct SendEmailBody {
    /// An address member as it came: one string or an array of them. Error
    /// texts name `to` alone for a string and `to[1]` for an array element,
    /// so the original one-recipient answers stay word for word.
    struct Addresses {
        var member: String
        var values: [String]
        var isList: Bool

        /// `to`, or `to[1]` for the second element of an array.
        func label(_ index: Int) -> String { isList ? "\(member)[\(index)]" : member }
    }

    /// One element of `attachments`, its `content` still base64.
    struct AttachmentInput {
        var filename: String?
        var content: String
        var contentType: String?
        var contentID: String?
    }

    var to: Addresses
    var cc: Addresses?
    var bcc: Addresses?
    var replyTo: Addresses?
    var subject: String
    var message: String
    var html: String?
    var attachments: [AttachmentInput] = []
    /// Names and values as sent, in order (JSON refuses duplicate names).
    var headers: [(name: String, value: String)] = []

    /// How many addresses `to`, `cc` and `bcc` hold together (duplicates
    /// included: the limit bounds the work a request asks for).
    var recipientCount: Int { to.values.count + (cc?.values.count ?? 0) + (bcc?.values.count ?? 0) }

    static func decode(_ body: [UInt8]) throws(APIError) -> SendEmailBody {
        let value: JSONValue
        do {
            value = try JSONParser.parse(body)
        } catch {
            throw .validation([.init("json_invalid", ["body", .string(String(error.offset))], "JSON decode error: \(error.message)")])
        }
        guard case .object(let members) = value else {
            throw .validation([.init("model_attributes_type", ["body"], "Input should be a valid dictionary or object to extract fields from")])
        }
        var reader = MemberReader(members: members)
        let to = reader.addresses("to", required: true)
        let cc = reader.addresses("cc", required: false)
        let bcc = reader.addresses("bcc", required: false)
        let replyTo = reader.addresses("reply_to", required: false)
        let subject = reader.string("subject", required: true)
        let message = reader.string("message", required: true)
        let html = reader.string("html", required: false)
        let attachments = reader.attachments()
        let headers = reader.headers()
        guard reader.problems.isEmpty, let to, let subject, let message else { throw .validation(reader.problems) }
        return SendEmailBody(to: to, cc: cc, bcc: bcc, replyTo: replyTo, subject: subject, message: message,
                             html: html, attachments: attachments, headers: headers)
    }
}

/// Reads the members of the body object, collecting every problem (FastAPI
/// reports them all at once, not the first).
private struct MemberReader {
    let members: [(String, JSONValue)]
    var problems: [ValidationProblem] = []

    /// The member named `name`, compared by bytes (String == normalises
    /// Unicode: quadratic on crafted keys). `null` is absent.
    private mutating func member(_ name: String, required: Bool) -> JSONValue? {
        let found = members.first(where: { $0.0.utf8Equals(name) })?.1
        if let found, found != .null { return found }
        if required {
            // FastAPI says "missing" for an absent member; a null one fails its type.
            if found == nil {
                problems.append(.init("missing", ["body", .string(name)], "Field required"))
            } else {
                problems.append(.init("string_type", ["body", .string(name)], "Input should be a valid string, not null"))
            }
        }
        return nil
    }

    mutating func string(_ name: String, required: Bool) -> String? {
        guard let value = member(name, required: required) else { return nil }
        guard case .string(let text) = value else {
            problems.append(.init("string_type", ["body", .string(name)], "Input should be a valid string, not \(value.typeName)"))
            return nil
        }
        return text
    }

    mutating func addresses(_ name: String, required: Bool) -> SendEmailBody.Addresses? {
        guard let value = member(name, required: required) else { return nil }
        switch value {
        case .string(let text):
            return .init(member: name, values: [text], isList: false)
        case .array(let elements):
            if required && elements.isEmpty {
                problems.append(.init("too_short", ["body", .string(name)], "List should have at least 1 item after validation, not 0"))
                return nil
            }
            var texts: [String] = []
            texts.reserveCapacity(elements.count)
            var valid = true
            for (index, element) in elements.enumerated() {
                guard case .string(let text) = element else {
                    problems.append(.init("string_type", ["body", .string(name), .int(index)], "Input should be a valid string, not \(element.typeName)"))
                    valid = false
                    continue
                }
                texts.append(text)
            }
            return valid ? .init(member: name, values: texts, isList: true) : nil
        default:
            problems.append(.init("string_type", ["body", .string(name)], "Input should be a valid string or a list of strings, not \(value.typeName)"))
            return nil
        }
    }

    mutating func attachments() -> [SendEmailBody.AttachmentInput] {
        guard let value = member("attachments", required: false) else { return [] }
        guard case .array(let elements) = value else {
            problems.append(.init("list_type", ["body", "attachments"], "Input should be a valid list, not \(value.typeName)"))
            return []
        }
        var out: [SendEmailBody.AttachmentInput] = []
        out.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            let path: [ValidationProblem.Step] = ["body", "attachments", .int(index)]
            guard case .object(let fields) = element else {
                problems.append(.init("dict_type", path, "Input should be a valid dictionary, not \(element.typeName)"))
                continue
            }
            // nil: absent or null; a wrong type is recorded as a problem.
            var typesValid = true
            func text(_ name: String) -> String? {
                guard let field = fields.first(where: { $0.0.utf8Equals(name) })?.1, field != .null else { return nil }
                guard case .string(let text) = field else {
                    problems.append(.init("string_type", path + [.string(name)], "Input should be a valid string, not \(field.typeName)"))
                    typesValid = false
                    return nil
                }
                return text
            }
            // A missing file name is the caller's mistake about the file, not
            // about JSON: 400 invalid_attachment later, like an empty one.
            let filename = text("filename"), content = text("content")
            let contentType = text("content_type"), contentID = text("content_id")
            if content == nil, !fields.contains(where: { $0.0.utf8Equals("content") && $0.1 != .null }) {
                problems.append(.init("missing", path + ["content"], "Field required"))
            }
            guard typesValid, let content else { continue }
            out.append(.init(filename: filename, content: content, contentType: contentType, contentID: contentID))
        }
        return out
    }

    mutating func headers() -> [(name: String, value: String)] {
        guard let value = member("headers", required: false) else { return [] }
        guard case .object(let fields) = value else {
            problems.append(.init("dict_type", ["body", "headers"], "Input should be a valid dictionary, not \(value.typeName)"))
            return []
        }
        var out: [(name: String, value: String)] = []
        for (name, field) in fields {
            guard case .string(let text) = field else {
                problems.append(.init("string_type", ["body", "headers", .string(name)], "Input should be a valid string, not \(field.typeName)"))
                continue
            }
            out.append((name, text))
        }
        return out
    }
}

/// One entry of FastAPI's 422 list: `{"type", "loc", "msg"}`.
struct ValidationProblem {
    /// One step of `loc`: a member name or an array index.
    enum Step: ExpressibleByStringLiteral {
        case string(String)
        case int(Int)

        init(stringLiteral value: String) { self = .string(value) }

        var json: JSONValue {
            switch self {
            case .string(let name): .string(name)
            case .int(let index): .number(String(index))
            }
        }
    }

    var type: String
    var location: [Step]
    var message: String

    init(_ type: String, _ location: [Step], _ message: String) {
        self.type = type
        self.location = location
        self.message = message
    }
}

/// Attachment `content`: standard base64 (RFC 4648 §4, padded). Line
/// breaks and spaces are skipped, as `base64(1)` wraps at 76 columns;
/// anything else outside the alphabet makes it invalid.
enum AttachmentContent {
    static func decode(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { encoded in
            func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
            // Usually one line (JSON clients rarely wrap): decoded in place.
            guard encoded.contains(where: isBlank) else { return Base64.standard.decode(encoded) }
            let compact = [UInt8](unsafeUninitializedCapacity: encoded.count) { buffer, initialized in
                var o = 0
                for byte in encoded where !isBlank(byte) {
                    buffer[o] = byte
                    o += 1
                }
                initialized = o
            }
            return Base64.standard.decode(compact)
        }
    }
}
