import Testing

@Test func placeholder_SMTPTests() {}
