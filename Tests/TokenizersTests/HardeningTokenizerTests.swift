import Foundation
import ModelIO
import Testing
import TestSupport
@testable import Tokenizers

/// Issue 16: tokenizer.json sections of the wrong JSON type are errors naming the section (they used to be
/// ignored, silently changing the ids), and an added token with a negative id is refused.
@Suite("hardening: tokenizer.json types")
struct HardeningTokenizerTests {
    static func edited(_ edit: (inout [String: Any]) -> Void) throws -> Data {
        let made = try TokenizerFactory.make(vocabSize: 300, seed: 1)
        var obj = try JSONSerialization.jsonObject(with: Data(made.tokenizerJSON.utf8)) as! [String: Any]
        edit(&obj)
        return try JSONSerialization.data(withJSONObject: obj)
    }

    static func expectRefused(_ needle: String, _ edit: (inout [String: Any]) -> Void) throws {
        let data = try edited(edit)
        #expect { _ = try Tokenizer(tokenizerJSON: data, configJSON: nil, path: "tok/tokenizer.json") } throws: { e in
            let t = e as? TokenizerError
            return t?.path == "tok/tokenizer.json" && t?.message.contains(needle) == true
        }
    }

    @Test func wrongTypesAreErrors() throws {
        // The unedited file loads.
        _ = try Tokenizer(tokenizerJSON: try Self.edited { _ in }, configJSON: nil, path: "tok/tokenizer.json")
        try Self.expectRefused("model.merges must be a JSON array") { o in
            var m = o["model"] as! [String: Any]; m["merges"] = "a b"; o["model"] = m
        }
        try Self.expectRefused("added_tokens must be a JSON array") { o in o["added_tokens"] = ["content": "<s>", "id": 1] }
        try Self.expectRefused("added_tokens[0] has id -1") { o in
            o["added_tokens"] = [["content": "<x>", "id": -1, "special": true]]
        }
        try Self.expectRefused("normalizer.normalizers must be a JSON array") { o in
            o["normalizer"] = ["type": "Sequence", "normalizers": ["type": "NFC"]]
        }
    }

    @Test func exponentialNormalizerAndCatastrophicRegexAreRefusedAtLoad() throws {
        let doubling: [String: Any] = ["type": "Replace", "pattern": ["String": "a"], "content": "aa"]
        try Self.expectRefused("normalizer can lengthen a text by a factor of") { o in
            o["normalizer"] = ["type": "Sequence", "normalizers": Array(repeating: doubling, count: 40)]
        }
        // A few doublings stay within the bound and load.
        _ = try Tokenizer(tokenizerJSON: try Self.edited { o in
            o["normalizer"] = ["type": "Sequence", "normalizers": Array(repeating: doubling, count: 3)]
        }, configJSON: nil, path: "tok/tokenizer.json")
        for bad in ["(a+)+$", "(\\w*)*x", "(?:x|y+){2,}"] {
            try Self.expectRefused("repeats a group that itself repeats") { o in
                o["pre_tokenizer"] = ["type": "Split", "pattern": ["Regex": bad], "behavior": "Isolated", "invert": false]
            }
        }
        #expect(SplitPattern.nestedQuantifier(#"(?i:'s|'t)|[^\r\n\p{L}]?\p{L}+|\p{N}{1,3}|\s+(?!\S)"#) == nil)
        #expect(SplitPattern.nestedQuantifier("(ab)+") == nil)
        #expect(SplitPattern.nestedQuantifier("[(a+)]+") == nil)
    }
}
