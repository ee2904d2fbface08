/// The frequency state of one rotary-embedding module across forward calls, reproducing transformers 5.23's
/// `dynamic_rope_update` decorator (`dynamic_frequency_update` and `longrope_frequency_update`).
///
/// For every other rope type the frequencies never change. Like transformers, keys already in a KV cache are
/// *not* re-rotated when the frequencies change (transformers #25104); a caller that wants parity must do the same.
public struct RopeRuntime: Sendable, Hashable {
    public let configuration: RopeConfiguration
    /// Frequencies computed at construction (`seq_len = None`): default frequencies for `dynamic`,
    /// the short list for `longrope` (`original_inv_freq`).
    public let originalFrequencies: RopeFrequencies
    /// Frequencies in use after the last ``update(maxPositionId:)``.
    public private(set) var current: RopeFrequencies
    /// `max_seq_len_cached` (dynamic): the longest sequence the current frequencies were grown for.
    public private(set) var maxSequenceLengthCached: Int
    /// `original_max_seq_len` = `max_position_embeddings`.
    public let originalMaxSequenceLength: Int

    public init(_ configuration: RopeConfiguration) throws {
        self.configuration = configuration
        let initial = try configuration.frequencies(sequenceLength: nil)
        originalFrequencies = initial
        current = initial
        let maxPos = configuration.maxPositionEmbeddings ?? configuration.trainedContextLength ?? 0
        maxSequenceLengthCached = maxPos
        originalMaxSequenceLength = maxPos
    }

    /// Applies transformers' update rule for a forward call whose largest position id is `maxPositionId`
    /// (`seq_len = max(position_ids) + 1`). Returns whether the frequencies changed.
    ///
    /// - dynamic: grow when `seq_len > max_seq_len_cached` (recompute with `seq_len`, cache `seq_len`); then reset to
    ///   the original frequencies when `seq_len < original_max_seq_len` and the cached length *before this call*
    ///   exceeded it.
    /// - longrope: the long list (computed with `seq_len = original + 1`) iff `seq_len > original_max_position_embeddings`,
    ///   else the original (short) frequencies.
    @discardableResult
    public mutating func update(maxPositionId: Int) throws -> Bool {
        let seqLen = maxPositionId + 1
        let before = current
        switch configuration.ropeType {
        case .dynamic:
            let cachedBefore = maxSequenceLengthCached
            if seqLen > cachedBefore {
                current = try configuration.frequencies(sequenceLength: seqLen)
                maxSequenceLengthCached = seqLen
            }
            if seqLen < originalMaxSequenceLength && cachedBefore > originalMaxSequenceLength {
                current = originalFrequencies
                maxSequenceLengthCached = originalMaxSequenceLength
            }
        case .longrope:
            let original = configuration.originalMaxPositionEmbeddings ?? originalMaxSequenceLength
            if seqLen > original {
                current = try configuration.frequencies(sequenceLength: original + 1)
            } else {
                current = originalFrequencies
            }
        default:
            break
        }
        return current.invFreq != before.invFreq
    }
}
