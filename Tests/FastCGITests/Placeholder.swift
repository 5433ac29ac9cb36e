import Testing

@Test func placeholder_FastCGITests() {}
