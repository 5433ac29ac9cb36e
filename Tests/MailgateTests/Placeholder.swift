import Testing

@Test func placeholder_MailgateTests() {}
