import Foundation
import Testing
import TestSupport
@testable import ModelIO

/// Issue 16, classes 4–6 for model files: leftovers of killed writers are cleaned up, hub-cache shards (symlinks
/// into the same repository's blobs) are followed while every other escape is still refused, and config.json
/// errors say what is wrong.
@Suite("hardening: files")
struct HardeningFilesTests {
    /// A process id that is certainly not running (a child that has exited and been reaped).
    static func deadPID() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    @Test func staleTemporariesOfDeadWritersAreRemovedLiveOnesKept() throws {
        let d = TestSupport.scratchDirectory("stale")
        let dead = try Self.deadPID(), live = getpid()
        let staleDir = d + "/.model.tmp-\(dead)-abc12"
        try FileManager.default.createDirectory(atPath: staleDir + "/inner", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: d + "/summary.json.tmp-\(dead)", contents: Data("{}".utf8))
        FileManager.default.createFile(atPath: d + "/.x.tmp-\(live)-zz", contents: Data())
        FileManager.default.createFile(atPath: d + "/keep.txt", contents: Data())
        FileManager.default.createFile(atPath: d + "/notes.tmp-draft", contents: Data())
        #expect(FileOps.temporaryOwner(".model.tmp-\(dead)-abc12") == dead)
        #expect(FileOps.temporaryOwner("summary.json.tmp-\(dead)") == dead)
        #expect(FileOps.temporaryOwner("notes.tmp-draft") == nil)
        #expect(FileOps.temporaryOwner("visible.tmp-12-tag") == nil)
        let removed = FileOps.removeStaleTemporaries(in: d)
        #expect(removed == [".model.tmp-\(dead)-abc12", "summary.json.tmp-\(dead)"].sorted())
        #expect(try FileOps.listDirectory(d) == [".x.tmp-\(live)-zz", "keep.txt", "notes.tmp-draft"])
        // Any new write in the directory cleans up too.
        FileManager.default.createFile(atPath: d + "/config.json.tmp-\(dead)", contents: Data())
        try FileOps.writeAtomically("{}", to: d + "/out.json")
        #expect(!FileOps.exists(d + "/config.json.tmp-\(dead)"))
    }

    /// `ROOT/models--org--m/{blobs/SHA, snapshots/REV/NAME → ../../blobs/SHA}` as huggingface_hub writes it.
    @Test func hubCacheShardsAreFollowedOtherSymlinksStillRefused() throws {
        let root = TestSupport.scratchDirectory("hub")
        let repo = root + "/models--org--m"
        let snap = repo + "/snapshots/0123abcd"
        try FileManager.default.createDirectory(atPath: repo + "/blobs", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: snap, withIntermediateDirectories: true)
        try MalformedInputTests.validShard.write(to: URL(fileURLWithPath: repo + "/blobs/5f2e"))
        try MalformedInputTests.index(#"{"weight_map":{"a":"model-00001-of-00001.safetensors"}}"#)
            .write(to: URL(fileURLWithPath: repo + "/blobs/77aa"))
        try FileManager.default.createSymbolicLink(atPath: snap + "/model-00001-of-00001.safetensors", withDestinationPath: "../../blobs/5f2e")
        try FileManager.default.createSymbolicLink(atPath: snap + "/model.safetensors.index.json", withDestinationPath: "../../blobs/77aa")
        let ck = try Checkpoint(directory: snap)
        #expect(ck.isSharded && ck.names == ["a"])

        // A link out of the repository (into another repository's blobs) is still refused.
        let other = root + "/models--org--other/blobs"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try MalformedInputTests.validShard.write(to: URL(fileURLWithPath: other + "/99"))
        try FileManager.default.removeItem(atPath: snap + "/model-00001-of-00001.safetensors")
        try FileManager.default.createSymbolicLink(atPath: snap + "/model-00001-of-00001.safetensors",
                                                   withDestinationPath: "../../../models--org--other/blobs/99")
        #expect { try Checkpoint(directory: snap) } throws: { e in
            (e as? ModelIOError)?.message.contains("outside the model directory") == true
        }
    }

    @Test func unreadableConfigValueIsNamedNotCalledInvalidJSON() throws {
        let d = TestSupport.scratchDirectory("cfg")
        try Data(#"{"model_type":"llama","hidden_size":1e400}"#.utf8).write(to: URL(fileURLWithPath: d + "/config.json"))
        let r = try TestSupport.longctx(["inspect", d])
        #expect(r.status == 1)
        #expect(!r.stderr.contains("not valid JSON\n"), "\(r.stderr)")
        #expect(r.stderr.contains("config.json"), "\(r.stderr)")
    }

    @Test func fifoNamedLikeAModelFileIsRefusedWithoutBlocking() throws {
        let d = TestSupport.scratchDirectory("fifo")
        try MalformedInputTests.dir(files: [:])(d)
        #expect(mkfifo(d + "/model.safetensors", 0o644) == 0)
        let start = Date()
        #expect { _ = try MappedFile(path: d + "/model.safetensors") } throws: { e in
            (e as? ModelIOError)?.message == "not a regular file"
        }
        #expect(mkfifo(d + "/extra.json", 0o644) == 0)
        #expect(throws: ModelIOError.self) { _ = try FileOps.read(d + "/extra.json") }
        let r = try TestSupport.longctx(["inspect", d])
        #expect(r.status == 1 && r.stderr.contains("not a regular file"), "\(r.stderr)")
        #expect(Date().timeIntervalSince(start) < 30)
    }
}
