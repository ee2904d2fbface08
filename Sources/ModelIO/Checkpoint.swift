import Basics
import Foundation
import TensorCore

/// The weights of a model directory: one `model.safetensors`, or shards listed by
/// `model.safetensors.index.json` (`weight_map`: tensor name → shard file name).
///
/// Shard names are resolved inside the directory only (no absolute paths, no `..`, no symlink
/// escapes); every shard the index names must exist and hold the tensors the index assigns to it.
/// Shards stay memory-mapped; a tensor is a zero-copy view.
public final class Checkpoint: @unchecked Sendable {
    public static let singleFile = "model.safetensors"
    public static let indexFile = "model.safetensors.index.json"

    public let directory: String
    /// Shard file names (relative to `directory`) in index order, or `[model.safetensors]`.
    public let shardNames: [String]
    /// Tensor names in shard order, then header order within each shard.
    public let names: [String]
    let shards: [SafetensorsFile]
    let location: [String: Int]
    /// `metadata` of the index file, when sharded.
    public let indexMetadata: JSONObject?

    public var isSharded: Bool { indexMetadata != nil || shardNames.count > 1 }

    /// Opens the weights in `directory`, or throws a `ModelIOError` naming the file and problem.
    public init(directory: String, prefix: String = "model") throws {
        self.directory = directory
        let single = (directory as NSString).appendingPathComponent("\(prefix).safetensors")
        let indexPath = (directory as NSString).appendingPathComponent("\(prefix).safetensors.index.json")
        if FileOps.exists(indexPath) {
            let (obj, _) = try FileOps.readJSONObject(indexPath)
            guard let wm = obj["weight_map"]?.objectValue else { throw ModelIOError(indexPath, "missing 'weight_map' object") }
            if wm.isEmpty { throw ModelIOError(indexPath, "'weight_map' is empty") }
            var assignedFile = [(String, String)]()
            for (tensor, v) in wm.entries {
                guard let f = v.stringValue else { throw ModelIOError(indexPath, "weight_map entry for '\(tensor)' is not a file name") }
                _ = try FileOps.containedPath(f, in: directory, describedBy: indexPath)
                assignedFile.append((tensor, f))
            }
            // Shards in file-name order (model-00001-of-…, model-00002-of-…), whatever the map's order.
            let order = Set(assignedFile.map(\.1)).sorted()
            let shardIndex = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($0.element, $0.offset) })
            let assigned = assignedFile.map { ($0.0, shardIndex[$0.1]!) }
            var opened = [SafetensorsFile]()
            for f in order {
                let p = (directory as NSString).appendingPathComponent(f)
                guard FileOps.exists(p) else { throw ModelIOError(indexPath, "shard '\(f)' named in weight_map is missing") }
                opened.append(try SafetensorsFile(path: p))
            }
            var loc = [String: Int]()
            for (tensor, s) in assigned {
                guard opened[s].info(tensor) != nil else {
                    throw ModelIOError(opened[s].path, "tensor '\(tensor)' is assigned to this shard by \(Checkpoint.indexFile) but is not in it")
                }
                loc[tensor] = s
            }
            shards = opened
            shardNames = order
            location = loc
            names = opened.enumerated().flatMap { (i, f) in f.names.filter { loc[$0] == i } }
            indexMetadata = obj["metadata"]?.objectValue ?? JSONObject()
        } else if FileOps.exists(single) {
            let f = try SafetensorsFile(path: single)
            shards = [f]
            shardNames = ["\(prefix).safetensors"]
            names = f.names
            location = Dictionary(uniqueKeysWithValues: f.names.map { ($0, 0) })
            indexMetadata = nil
        } else {
            throw ModelIOError(directory, Checkpoint.missingWeightsMessage(directory))
        }
    }

    static func missingWeightsMessage(_ directory: String) -> String {
        let files = (try? FileOps.listDirectory(directory)) ?? []
        let pickles = files.filter { $0.hasSuffix(".bin") || $0.hasSuffix(".pt") || $0.hasSuffix(".pth") || $0.hasSuffix(".ckpt") || $0.hasSuffix(".pkl") }
        if !pickles.isEmpty {
            return "weights are only in pickle files (\(pickles.prefix(3).joined(separator: ", "))); LongContext never loads pickles "
                + "because unpickling runs arbitrary code. Convert once with transformers: "
                + "AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(OUT, safe_serialization=True)"
        }
        return "no model.safetensors or model.safetensors.index.json"
    }

    public func contains(_ name: String) -> Bool { location[name] != nil }

    public func info(_ name: String) -> TensorInfo? {
        guard let s = location[name] else { return nil }
        return shards[s].info(name)
    }

    /// The shard file holding `name`.
    public func shardName(of name: String) -> String? { location[name].map { shardNames[$0] } }

    public func tensor(_ name: String) throws -> Tensor {
        guard let s = location[name] else { throw ModelIOError(directory, "no tensor named '\(name)' in the checkpoint") }
        return try shards[s].tensor(name)
    }

    /// Every tensor's info, in `names` order.
    public var infos: [TensorInfo] { names.compactMap { info($0) } }

    /// Names grouped by shard, in shard order: stream a checkpoint one shard at a time.
    public var namesByShard: [(shard: String, names: [String])] {
        shardNames.enumerated().map { (i, s) in (s, shards[i].names.filter { location[$0] == i }) }
    }

    /// Total bytes of tensor data.
    public var totalBytes: Int { infos.reduce(0) { $0 + $1.byteCount } }
}

/// Writes a checkpoint into a directory: a single `model.safetensors`, or shards named
/// `model-00001-of-0000N.safetensors` no larger than `maxShardBytes` (a tensor larger than the
/// limit gets a shard of its own) plus `model.safetensors.index.json`, as `save_pretrained` does.
/// Tensors are appended in spec order; each shard is renamed into place when complete and the
/// index is written last.
public final class CheckpointWriter {
    public let directory: String
    let specs: [TensorSpec]
    let plan: [[Int]]  // spec indices per shard
    let shardFileNames: [String]
    var current: SafetensorsWriter?
    var shardIndex = 0
    var posInShard = 0
    var nextSpec = 0
    let metadata: [String: String]
    let prefix: String

    public init(directory: String, specs: [TensorSpec], maxShardBytes: Int = 5_000_000_000,
                metadata: [String: String] = ["format": "pt"], prefix: String = "model") throws {
        self.directory = directory
        self.specs = specs
        self.metadata = metadata
        self.prefix = prefix
        var plan = [[Int]]()
        var cur = [Int](), size = 0
        for (i, s) in specs.enumerated() {
            if !cur.isEmpty && size + s.byteCount > maxShardBytes { plan.append(cur); cur = []; size = 0 }
            cur.append(i); size += s.byteCount
        }
        if !cur.isEmpty || plan.isEmpty { plan.append(cur) }
        self.plan = plan
        if plan.count == 1 {
            shardFileNames = ["\(prefix).safetensors"]
        } else {
            let n = plan.count
            shardFileNames = (1...n).map { String(format: "\(prefix)-%05d-of-%05d.safetensors", $0, n) }
        }
    }

    public var shardCount: Int { plan.count }

    func openShard() throws {
        let p = (directory as NSString).appendingPathComponent(shardFileNames[shardIndex])
        current = try SafetensorsWriter(path: p, specs: plan[shardIndex].map { specs[$0] }, metadata: metadata)
        posInShard = 0
    }

    /// Appends the next tensor (spec order), converting to the spec's dtype when needed.
    public func append(name: String, tensor: Tensor) throws {
        guard nextSpec < specs.count else { throw ModelIOError(directory, "more tensors written than declared ('\(name)')") }
        if current == nil { try openShard() }
        try current!.append(name: name, tensor: tensor)
        nextSpec += 1
        posInShard += 1
        if posInShard == plan[shardIndex].count {
            try current!.finish()
            current = nil
            shardIndex += 1
        }
    }

    public func finish() throws {
        guard nextSpec == specs.count else {
            throw ModelIOError(directory, "only \(nextSpec) of \(specs.count) declared tensors were written")
        }
        if specs.isEmpty { try openShard(); try current!.finish(); current = nil }
        guard plan.count > 1 else { return }
        var wm = JSONObject()
        for (s, idxs) in plan.enumerated() { for i in idxs { wm[specs[i].name] = .string(shardFileNames[s]) } }
        let total = specs.reduce(0) { $0 + $1.byteCount }
        let index = JSONValue.object(JSONObject([
            ("metadata", .object(JSONObject([("total_size", .int(total))]))),
            ("weight_map", .object(JSONObject(wm.entries.sorted { $0.0 < $1.0 }))),
        ]))
        try FileOps.writeAtomically(index.serialized() + "\n",
                                    to: (directory as NSString).appendingPathComponent("\(prefix).safetensors.index.json"))
    }

    /// Parses sizes like `5GB`, `500MB`, `2GiB`, `1000000` (bytes), as `save_pretrained(max_shard_size=)` does.
    public static func parseSize(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let units: [(String, Double)] = [("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024),
                                         ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)]
        for (u, m) in units where t.hasSuffix(u) {
            guard let v = Double(t.dropLast(u.count).trimmingCharacters(in: .whitespaces)), v > 0 else { return nil }
            return Int(v * m)
        }
        return Int(t).flatMap { $0 > 0 ? $0 : nil }
    }
}
