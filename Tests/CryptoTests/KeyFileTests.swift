import Foundation
import Testing
import Crypto

func temporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("mailgate-tokens-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct KeyFileTests {
    @Test func createAndLoad() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/token.key"
        try KeyFile.create(at: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let key = try KeyFile.load(at: path)
        #expect(key.count == 32)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(key))   // raw bytes
        #expect(throws: KeyFileError.exists(path)) { try KeyFile.create(at: path) }
        #expect(try KeyFile.load(at: path) == key)   // the refused create left it alone
    }

    @Test func refusesGroupOrOtherAccess() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/token.key"
        try KeyFile.create(at: path)
        for mode in [0o640, 0o604, 0o620, 0o660, 0o644, 0o601] {
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
            #expect(throws: KeyFileError.insecurePermissions(path, UInt32(mode))) { try KeyFile.load(at: path) }
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: path)
        #expect(try KeyFile.load(at: path).count == 32)
    }

    @Test func shortAndMissing() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/short.key"
        try KeyFile.create(at: path, byteCount: 16)
        #expect(throws: KeyFileError.tooShort(path, 16)) { try KeyFile.load(at: path) }
        #expect(try KeyFile.load(at: path, minimumLength: 16).count == 16)
        #expect(throws: KeyFileError.missing(dir + "/nope")) { try KeyFile.load(at: dir + "/nope") }
        #expect(throws: KeyFileError.self) { try KeyFile.load(at: dir) }   // a directory
        // Directory missing on create: a write failure naming the path.
        #expect(throws: KeyFileError.self) { try KeyFile.create(at: dir + "/missing/dir/key") }
    }
}
