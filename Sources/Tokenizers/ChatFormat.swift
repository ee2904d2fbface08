import Basics
import Foundation
import ModelIO

/// Native rendering of the common chat-template families, recognised by their markers in the
/// `chat_template` string (no Jinja engine). Each renderer reproduces what the family's published
/// template produces through `transformers`' `apply_chat_template(tokenize=False)`.
enum ChatFormat {
    enum Family: Equatable {
        /// `<|im_start|>role\ncontent<|im_end|>\n`; `defaultSystem` is emitted when the first message is not a system one.
        case chatML(defaultSystem: String?)
        /// `<|start_header_id|>role<|end_header_id|>\n\ncontent.strip()<|eot_id|>`, bos first.
        case llama3
        /// Mistral Instruct v0.1: `bos[INST] user [/INST]assistant</s>…`; user/assistant only, alternating.
        case mistral
        /// Llama 2 chat: `bos[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] assistant eos`.
        case llama2
        /// Llama 3.1 / 3.2 / 3.3: the Llama 3 turns after a system block that always comes first,
        /// `Cutting Knowledge Date: …\nToday Date: …\n\n` + the trimmed system message. The date is today's
        /// (`%d %b %Y`) when the template asks for `strftime_now`, else the template's literal default.
        case llama31(knowledgeDate: String, defaultDate: String, today: Bool)
    }

    static func family(of t: String) -> Family? {
        if t.contains("<|im_start|>") { return .chatML(defaultSystem: defaultSystem(t)) }
        if t.contains("<|start_header_id|>") && t.contains("<|eot_id|>") && !t.contains("Cutting Knowledge Date") { return .llama3 }
        if t.contains("<|start_header_id|>") && t.contains("<|eot_id|>"),
           let knowledge = literal(in: t, after: "Cutting Knowledge Date: "),
           let date = literal(in: t, after: "set date_string = \"") {
            return .llama31(knowledgeDate: knowledge, defaultDate: date, today: t.contains("strftime_now"))
        }
        if t.contains("[INST]") && t.contains("<<SYS>>") { return .llama2 }
        if t.contains("'[INST] ' + message['content'] + ' [/INST]'") { return .mistral }
        return nil
    }

    /// The text after `marker` up to the end of its Jinja string literal (a quote or a `\n` escape).
    static func literal(in t: String, after marker: String) -> String? {
        guard let r = t.range(of: marker) else { return nil }
        var out = ""
        var i = r.upperBound
        while i < t.endIndex {
            let c = t[i]
            if c == "\"" || c == "'" || c == "\n" { break }
            if c == "\\" { break }
            out.append(c)
            i = t.index(after: i)
        }
        return out.isEmpty ? nil : out
    }

    /// A string as transformers' `tojson` filter writes it (`json.dumps(s, ensure_ascii=False)`).
    static func jsonString(_ s: String) -> String {
        var out = ""
        JSONValue.writeString(s, into: &out)
        return out
    }

    /// Today as Python's `strftime("%d %b %Y")` writes it in the C locale (transformers' `strftime_now`), local time.
    static func todayString(_ now: Date = Date()) -> String {
        let c = Calendar(identifier: .gregorian).dateComponents(in: TimeZone.current, from: now)
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let day = c.day ?? 1
        return (day < 10 ? "0" : "") + "\(day) \(months[(c.month ?? 1) - 1]) \(c.year ?? 1970)"
    }

    /// The literal default system prompt of a ChatML template (`'<|im_start|>system\nYou are …<|im_end|>\n'`
    /// in a branch taken when the conversation has no system message), if it has one.
    static func defaultSystem(_ t: String) -> String? {
        guard t.contains("!= 'system'") || t.contains("!= \"system\"") || t.contains("== 'system'") else { return nil }
        for marker in ["<|im_start|>system\\n", "<|im_start|>system\n"] {
            guard let r = t.range(of: marker) else { continue }
            guard let end = t.range(of: "<|im_end|>", range: r.upperBound..<t.endIndex) else { continue }
            let lit = String(t[r.upperBound..<end.lowerBound])
            if lit.contains("{{") || lit.contains("{%") || lit.contains("'") || lit.contains("\"") || lit.contains("+") { continue }
            return lit.replacingOccurrences(of: "\\n", with: "\n")
        }
        return nil
    }

    static func render(template: String, messages: [ChatMessage], addGenerationPrompt: Bool,
                       bos: String, eos: String, path: String) throws -> String {
        guard let fam = family(of: template) else {
            throw TokenizerError(path, "chat_template is not one of the recognised families (ChatML, Llama 3, Llama 3.1/3.2/3.3, Mistral [INST], Llama 2)")
        }
        var out = ""
        switch fam {
        case .chatML(let def):
            if let def, messages.first?.role != "system" { out += "<|im_start|>system\n\(def)<|im_end|>\n" }
            for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        case .llama3:
            for (i, m) in messages.enumerated() {
                if i == 0 { out += bos }
                out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n\(jinjaTrim(m.content))<|eot_id|>"
            }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .llama31(let knowledge, let defaultDate, let today):
            var msgs = messages[...]
            var system = ""
            if msgs.first?.role == "system" { system = jinjaTrim(msgs.removeFirst().content) }
            out += bos + "<|start_header_id|>system<|end_header_id|>\n\n"
            out += "Cutting Knowledge Date: \(knowledge)\nToday Date: \(today ? todayString() : defaultDate)\n\n"
            out += system + "<|eot_id|>"
            for m in msgs {
                if m.role == "tool" || m.role == "ipython" {
                    // The template tests `content is iterable`, which a string is, so it goes through `tojson`.
                    out += "<|start_header_id|>ipython<|end_header_id|>\n\n\(jsonString(m.content))<|eot_id|>"
                } else {
                    out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n\(jinjaTrim(m.content))<|eot_id|>"
                }
            }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .mistral:
            out += bos
            for (i, m) in messages.enumerated() {
                guard (m.role == "user") == (i % 2 == 0) else {
                    throw TokenizerError(path, "chat_template: conversation roles must alternate user/assistant/user/assistant/...")
                }
                if m.role == "user" { out += "[INST] \(m.content) [/INST]" }
                else if m.role == "assistant" { out += m.content + eos }
                else { throw TokenizerError(path, "chat_template: only user and assistant roles are supported") }
            }
        case .llama2:
            var msgs = messages
            var system: String? = nil
            if msgs.first?.role == "system" { system = msgs.removeFirst().content }
            for (i, m) in msgs.enumerated() {
                guard (m.role == "user") == (i % 2 == 0) else {
                    throw TokenizerError(path, "chat_template: conversation roles must alternate user/assistant/user/assistant/...")
                }
                var content = m.content
                if i == 0, let s = system { content = "<<SYS>>\n\(s)\n<</SYS>>\n\n" + content }
                if m.role == "user" { out += bos + "[INST] " + pythonStrip(content) + " [/INST]" }
                else if m.role == "assistant" { out += " " + pythonStrip(content) + " " + eos }
            }
        }
        return out
    }

    /// Jinja's `trim` filter and Python's `str.strip()`: removes leading and trailing white space.
    static func jinjaTrim(_ s: String) -> String { pythonStrip(s) }

    static func pythonStrip(_ s: String) -> String {
        let u = Array(s.unicodeScalars)
        // Python's str.isspace: White_Space plus the separators U+001C…U+001F.
        func ws(_ x: Unicode.Scalar) -> Bool { x.properties.isWhitespace || (0x1C...0x1F).contains(x.value) }
        var a = 0, b = u.count
        while a < b && ws(u[a]) { a += 1 }
        while b > a && ws(u[b - 1]) { b -= 1 }
        var v = String.UnicodeScalarView(); v.append(contentsOf: u[a..<b])
        return String(v)
    }
}
