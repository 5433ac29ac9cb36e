import Testing

@Test func placeholder_TokensTests() {}
