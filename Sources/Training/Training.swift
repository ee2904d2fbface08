/// Continued pretraining of Llama-family models at growing context lengths.
///
/// The pieces, in the order a step uses them:
/// - data: documents from text / JSONL / pre-tokenised files, packed into sequences of a stage's length with an
///   end-of-document token between documents and a document mask (no attention across documents);
/// - the model: trainable f32 master weights beside the engine's frozen ones, a forward pass that keeps what the
///   backward needs, and the backward of every Llama-family layer (blockwise attention backward from the saved
///   log-sum-exp, cross-entropy in vocabulary chunks);
/// - the optimizer: AdamW as `torch.optim.AdamW`, global-norm clipping, warmup + cosine/linear/constant schedules;
/// - stages: a YAML schedule of lengths, RoPE settings, budgets and learning rates, with checkpoints and exact resume.
public enum Training {}
