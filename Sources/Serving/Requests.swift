import Evaluation
import Foundation

/// Decoding and checking of `/v1/completions`, `/v1/chat/completions` and `/tokenize` request bodies, free of
/// HTTP types (so the fuzzer can drive it directly). Every JSON type is checked — `"10"` or `3.7` for an integer,
/// `"hot"` for a number are refused, as OpenAI's API and vLLM refuse them — and every failure names the field.
public enum OpenAIRequest {
    /// Largest request body accepted (a 10 MB prompt fits; larger bodies are refused with 413).
    public static let maxBodyBytes = 32 << 20

    /// A refused request: an HTTP status (4xx) and one line naming the field.
    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public let status: Int
        public let message: String
        init(_ message: String, status: Int = 400) { self.status = status; self.message = message }
        public var description: String { message }
    }

    /// The fields this server honours (OpenAI names); unknown fields are ignored, as OpenAI's API does.
    public struct Body: Decodable, Sendable {
        public var model: String?
        public var prompt: String?
        public var messages: [ChatTurn]?
        public var maxTokens: Int?
        public var maxCompletionTokens: Int?
        public var temperature: Double?
        public var topP: Double?
        public var topK: Int?
        public var seed: Int?
        public var n: Int?
        public var stop: [String]?
        public var stream: Bool?
        public var includeUsage: Bool?

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(_ s: String) { stringValue = s }
            init?(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        public init(from decoder: Decoder) throws {
            let c: KeyedDecodingContainer<Key>
            do { c = try decoder.container(keyedBy: Key.self) } catch { throw Invalid("request body must be a JSON object") }
            func field<T: Decodable>(_ name: String, _ type: T.Type, _ what: String) throws -> T? {
                do { return try c.decodeIfPresent(T.self, forKey: Key(name)) } catch { throw Invalid("'\(name)' must be \(what)") }
            }
            model = try field("model", String.self, "a string")
            prompt = try field("prompt", String.self, "a string")
            maxTokens = try field("max_tokens", Int.self, "an integer")
            maxCompletionTokens = try field("max_completion_tokens", Int.self, "an integer")
            temperature = try field("temperature", Double.self, "a number")
            topP = try field("top_p", Double.self, "a number")
            topK = try field("top_k", Int.self, "an integer")
            seed = try field("seed", Int.self, "an integer")
            n = try field("n", Int.self, "an integer")
            stream = try field("stream", Bool.self, "a boolean")
            if let one = try? c.decodeIfPresent(String.self, forKey: Key("stop")) { stop = [one] }
            else { stop = try field("stop", [String].self, "a string or a list of strings") }
            if c.contains(Key("stream_options")) {
                struct StreamOptions: Decodable { var include_usage: Bool? }
                includeUsage = try field("stream_options", StreamOptions.self, "an object with a boolean 'include_usage'")?.include_usage
            }
            if c.contains(Key("messages")) {
                guard let list = try? c.nestedUnkeyedContainer(forKey: Key("messages")) else { throw Invalid("'messages' must be an array") }
                var items = list
                var turns: [ChatTurn] = []
                while !items.isAtEnd {
                    let i = turns.count
                    guard let m = try? items.nestedContainer(keyedBy: Key.self) else { throw Invalid("'messages[\(i)]' must be an object") }
                    guard let role = try? m.decode(String.self, forKey: Key("role")) else { throw Invalid("'messages[\(i)].role' must be a string") }
                    guard let content = try? m.decode(String.self, forKey: Key("content")) else { throw Invalid("'messages[\(i)].content' must be a string") }
                    turns.append(ChatTurn(role: role, content: content))
                }
                messages = turns
            }
        }
    }

    /// Range-checked sampling fields (absent fields take OpenAI's defaults).
    public struct Sampling: Sendable {
        /// The request's sampling fields; `prompt` is filled in by the endpoint.
        public var request: CompletionRequest
        public var stream: Bool
        public var includeUsage: Bool
    }

    /// Decodes a request body (any bytes: invalid UTF-8 and malformed JSON are a 400 too).
    public static func decode(_ data: Data) throws -> Body {
        do { return try JSONDecoder().decode(Body.self, from: data) } catch let e as Invalid { throw e } catch {
            throw Invalid("request body is not valid JSON")
        }
    }

    /// The sampling settings of a body, each checked against OpenAI's ranges.
    public static func sampling(_ b: Body) throws -> Sampling {
        let maxTokens = b.maxTokens ?? b.maxCompletionTokens ?? 16
        guard maxTokens >= 0 else { throw Invalid("'\(b.maxTokens != nil ? "max_tokens" : "max_completion_tokens")' must be >= 0, got \(maxTokens)") }
        let temperature = b.temperature ?? 1
        guard temperature.isFinite, (0...2).contains(temperature) else { throw Invalid("'temperature' must be in [0, 2], got \(temperature)") }
        let topP = b.topP ?? 1
        guard topP.isFinite, topP > 0, topP <= 1 else { throw Invalid("'top_p' must be in (0, 1], got \(topP)") }
        let topK = b.topK ?? 0
        guard topK >= -1 else { throw Invalid("'top_k' must be -1, 0 (all tokens) or positive, got \(topK)") }
        if let n = b.n, n != 1 { throw Invalid("'n' must be 1 (this server returns one choice), got \(n)") }
        let stops = b.stop ?? []
        guard stops.count <= 4, !stops.contains("") else { throw Invalid("'stop' must be at most 4 non-empty strings") }
        return Sampling(request: CompletionRequest(prompt: "", maxTokens: maxTokens, temperature: temperature, topK: max(topK, 0),
                                                   topP: topP, seed: UInt64(truncatingIfNeeded: b.seed ?? 0), stop: stops),
                        stream: b.stream ?? false, includeUsage: b.includeUsage ?? false)
    }
}
