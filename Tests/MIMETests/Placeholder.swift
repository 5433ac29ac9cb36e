import Testing

@Test func placeholder_MIMETests() {}
