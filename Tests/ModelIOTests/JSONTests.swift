import Basics
import Foundation
import Testing
@testable import ModelIO

@Suite("ordered JSON")
struct JSONTests {
    @Test func roundTripKeepsOrderAndNumberText() throws {
        let text = """
        {
          "z_last_alphabetically": 1,
          "rms_norm_eps": 1e-05,
          "rope_theta": 500000.0,
          "nested": {
            "b": [
              1,
              2.50,
              -0.0
            ],
            "a": null
          },
          "empty": {},
          "list": [],
          "unicode": "caf\u{e9} \\u00e9 \\ud83d\\ude00",
          "flag": true
        }
        """
        let v = try JSONValue.parse(text)
        let o = try #require(v.objectValue)
        #expect(o.keys == ["z_last_alphabetically", "rms_norm_eps", "rope_theta", "nested", "empty", "list", "unicode", "flag"])
        #expect(o["rms_norm_eps"] == .number("1e-05"))
        #expect(o["unicode"]?.stringValue == "café é 😀")
        // Re-serialising and re-parsing gives the same value; numbers keep their text.
        let again = try JSONValue.parse(v.serialized())
        #expect(again == v)
        #expect(v.serialized().contains("\"rope_theta\": 500000.0"))
        #expect(v.serialized().contains("2.50"))
    }

    @Test func matchesPythonJsonDumpsIndent2() throws {
        // Layout of Python's json.dumps(obj, indent=2, ensure_ascii=False) for this object.
        let v = JSONValue.object(JSONObject([("a", .array([.int(1), .object(JSONObject([("b", .null)]))])), ("c", .object(JSONObject()))]))
        #expect(v.serialized() == "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {}\n}")
        #expect(v.serialized(indent: nil) == "{\"a\":[1,{\"b\":null}],\"c\":{}}")
    }

    @Test func pythonFloatRepr() {
        #expect(JSONValue.double(1e-05) == .number("1e-05"))
        #expect(JSONValue.double(500000) == .number("500000.0"))
        #expect(JSONValue.double(1e16) == .number("1e+16"))
        #expect(JSONValue.double(0.1) == .number("0.1"))
        #expect(JSONValue.int(-3).intValue == -3)
        #expect(JSONValue.number("2.0").intValue == nil)
    }

    @Test(arguments: ["", "{", "{\"a\":1,}", "[1 2]", "{\"a\":1}x", "{\"a\":1,\"a\":2}", "\"\\x\"", "01", "1.", "{\"a\":\"\u{01}\"}", "\"\\ud800\""])
    func rejectsMalformed(_ text: String) {
        #expect(throws: JSONError.self) { try JSONValue.parse(text) }
    }

    @Test func objectSubscriptSetReplacesInPlaceAndRemoves() {
        var o = JSONObject([("a", .int(1)), ("b", .int(2)), ("c", .int(3))])
        o["b"] = .string("x")
        o["d"] = .bool(false)
        o["a"] = nil
        #expect(o.keys == ["b", "c", "d"])
        #expect(o["b"] == .string("x"))
    }
}
