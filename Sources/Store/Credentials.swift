/// Everything one authenticated request needs, read as one snapshot. Its
/// text forms go through `User`'s and `SMTPIntegration`'s, which redact.
public struct Credentials: Sendable {
    public let user: User
    public let integration: SMTPIntegration?
    /// Which recipients the user's sends may reach.
    public let recipientPolicy: RecipientPolicy

    public init(user: User, integration: SMTPIntegration?, recipientPolicy: RecipientPolicy = .any) {
        self.user = user
        self.integration = integration
        self.recipientPolicy = recipientPolicy
    }
}
