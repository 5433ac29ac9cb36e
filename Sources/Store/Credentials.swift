/// Everything one authenticated request needs, read as one snapshot. Its
/// text forms go through `User`'s and `SMTPIntegration`'s, which redact.
public struct Credentials: Sendable {
    public let user: User
    public let integration: SMTPIntegration?
    /// Which recipients the user's sends may reach.
    public let recipientPolicy: RecipientPolicy
    /// The user's own send quotas (unset windows use the server's).
    public let sendQuota: SendQuota

    public init(user: User, integration: SMTPIntegration?, recipientPolicy: RecipientPolicy = .any,
                sendQuota: SendQuota = .serverDefaults) {
        self.user = user
        self.integration = integration
        self.recipientPolicy = recipientPolicy
        self.sendQuota = sendQuota
    }
}
