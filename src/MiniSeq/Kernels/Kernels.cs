// Kernel glossary and conventions (read this before any kernel file).
//
//   B batch size, T sequence length, C hidden size, H query heads, KvH key/value heads, D head dim,
//   F intermediate (MLP) size, V vocabulary size, L layers, N = B·T tokens (rows).
//
// Layouts are row-major. Activations are (N, width) with one row per token; q is (N, H·D) = (B, T, H, D),
// k and v are (N, KvH·D). Linear weights are stored (out, in) as in Hugging Face, so y = x·Wᵀ.
// Parameter order: inputs, then sizes and scalars, then outputs (destination last).
// Backward kernels take dOutput first and ACCUMULATE (+=) into parameter gradients; where a kernel overwrites an
// activation gradient instead, its XML doc says so.
// Every kernel is deterministic and independent of KernelThreads.ThreadCount: parallel loops write disjoint outputs
// and reductions use a fixed blocking.
namespace MiniSeq.Kernels;
