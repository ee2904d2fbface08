import Basics
import Testing

@Suite("length notation")
struct LengthTests {
    @Test("good lengths", arguments: [
        ("131072", 131_072), ("4K", 4096), ("128K", 131_072), ("32k", 32_768), ("1M", 1_048_576),
        ("0.5M", 524_288), ("4m", 4_194_304), ("1G", 1_073_741_824), (" 8K ", 8192), ("1.5K", 1536),
    ])
    func good(_ text: String, _ value: Int) {
        #expect(parseLength(text) == value)
    }

    @Test("bad lengths", arguments: ["", "K", "-1K", "0", "0K", "1.5", "abc", "4X", "1e3", "+4", "0.0001K", "4 K", "1KK"])
    func bad(_ text: String) {
        #expect(parseLength(text) == nil)
    }

    @Test("lists: values in order; an error names the bad part")
    func lists() throws {
        #expect(try parseLengths("1K,2K,4K,128") == [1024, 2048, 4096, 128])
        #expect(try parseLengths("32K, 0.5M") == [32_768, 524_288])
        #expect(throws: LengthError("4X")) { try parseLengths("1K,4X,8K") }
        #expect(throws: LengthError("")) { try parseLengths("1K,,8K") }
        #expect(LengthError("4X").description.contains("'4X'"))
    }

    @Test("format")
    func format() {
        #expect(formatLength(1_048_576) == "1M")
        #expect(formatLength(131_072) == "128K")
        #expect(formatLength(1_572_864) == "1.5M")
        #expect(formatLength(1000) == "1000")
        for n in [4096, 131_072, 1_048_576, 1_572_864, 1000] { #expect(parseLength(formatLength(n)) == n) }
    }
}
