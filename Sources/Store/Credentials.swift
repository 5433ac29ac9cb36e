/// Everything one authenticated request needs, read as one snapshot. Its
/// text forms go through `User`'s and `SMTPIntegration`'s, which redact.
public struct Credentials: Sendable {
    public let user: User
    public let integration: SMTPIntegration?

    public init(user: User, integration: SMTPIntegration?) {
        self.user = user
        self.integration = integration
    }
}
