// The two all-to-alls of Ulysses attention and the flash-attention calls between them. Layouts (B rows, T local
// positions per rank, P ranks, W = heads·D): a sequence shard is (B·T, W) row-major, all heads of this rank's tokens;
// a head shard is (B·P·T, w) with w = this rank's heads·D, the whole sequence of each row in order. One all-to-all per
// row b: ToHeads packs the shard's columns of rank j's heads in block j of a (P·T, w_j) buffer and receives rank i's
// tokens straight into rows i·T … of row b of the head shard; ToSequence sends row b of the head shard as is (block j
// = rank j's tokens) and unpacks what it receives into the columns of the sender's heads. Replicated kv heads reach
// several ranks, so their gradients come back from several: ToSequence accumulates.
using MiniSeq.Kernels;
using MiniSeq.Model;

namespace MiniSeq.Distributed;

/// <summary>Ulysses attention of one pass over a communicator (see the file comment).</summary>
internal sealed unsafe class UlyssesAttention(ICommunicator communicator, UlyssesHeads heads, int batchSize, int seqLen, int headDim)
{
    public ICommunicator Communicator { get; } = communicator;

    private int P => heads.Ranks;

    /// <summary>a = flash_attention(q, k, v) for the local tokens' q, k, v (N, ·), through head shards in scratch.</summary>
    public void Forward(float* q, float* k, float* v, LlamaConfig config, float* qh, float* kh, float* vh, float* oh, float* exchange, float* lse, float* attn)
    {
        ToHeads(q, config.NumAttentionHeads, kv: false, qh, exchange);
        ToHeads(k, config.NumKeyValueHeads, kv: true, kh, exchange);
        ToHeads(v, config.NumKeyValueHeads, kv: true, vh, exchange);
        FlashAttention.Forward(qh, kh, vh, batchSize, seqLen * P, heads.LocalHeads, heads.LocalKvHeads, headDim, oh, lse, config.SlidingWindow ?? 0, null);
        new Span<float>(attn, batchSize * seqLen * config.QueryDim).Clear();
        ToSequence(oh, config.NumAttentionHeads, kv: false, attn, exchange);
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: writes dq, dk, dv of the local tokens (N, ·), which alias qh, kh, vh (dead
    /// by then); dqh aliases dAttn (read first).
    /// </summary>
    public void Backward(float* dAttn, float* q, float* k, float* v, float* attn, float* lse, LlamaConfig config, float* qh, float* kh, float* vh, float* oh, float* dOh, float* dKh, float* dVh, float* exchange, float* partials,
        out float* dq, out float* dk, out float* dv)
    {
        int h = config.NumAttentionHeads, kvh = config.NumKeyValueHeads;
        long full = (long)batchSize * seqLen * P;
        ToHeads(q, h, kv: false, qh, exchange);
        ToHeads(k, kvh, kv: true, kh, exchange);
        ToHeads(v, kvh, kv: true, vh, exchange);
        ToHeads(attn, h, kv: false, oh, exchange);
        ToHeads(dAttn, h, kv: false, dOh, exchange);
        float* dQh = dAttn; // same size (B·N·H·D/P); dAttn is dead now
        new Span<float>(dQh, (int)(full * heads.LocalHeads * headDim)).Clear();
        new Span<float>(dKh, (int)(full * heads.LocalKvHeads * headDim)).Clear();
        new Span<float>(dVh, (int)(full * heads.LocalKvHeads * headDim)).Clear();
        FlashAttention.Backward(dOh, qh, kh, vh, oh, lse, batchSize, seqLen * P, heads.LocalHeads, heads.LocalKvHeads, headDim, dQh, dKh, dVh, config.SlidingWindow ?? 0, null, partials);

        dq = qh;
        dk = kh;
        dv = vh;
        long n = (long)batchSize * seqLen;
        new Span<float>(dq, (int)(n * config.QueryDim)).Clear();
        new Span<float>(dk, (int)(n * config.KeyValueDim)).Clear();
        new Span<float>(dv, (int)(n * config.KeyValueDim)).Clear();
        ToSequence(dQh, h, kv: false, dq, exchange);
        ToSequence(dKh, kvh, kv: true, dk, exchange);
        ToSequence(dVh, kvh, kv: true, dv, exchange);
    }

    private int Start(int rank, bool kv) => kv ? heads.KvHeadStart(rank) : heads.HeadStart(rank);

    private int Count(bool kv) => kv ? heads.LocalKvHeads : heads.LocalHeads;

    /// <summary>(B·T, totalHeads·D) sequence shard → (B·P·T, local heads·D) head shard.</summary>
    private void ToHeads(float* shard, int totalHeads, bool kv, float* headShard, float* exchange)
    {
        int t = seqLen, width = totalHeads * headDim, w = Count(kv) * headDim;
        int block = t * w;
        for (int b = 0; b < batchSize; b++)
        {
            for (int j = 0; j < P; j++)
            {
                int column = Start(j, kv) * headDim;
                for (int i = 0; i < t; i++)
                {
                    new ReadOnlySpan<float>(shard + ((((long)b * t) + i) * width) + column, w).CopyTo(new Span<float>(exchange + ((long)j * block) + ((long)i * w), w));
                }
            }

            Communicator.AllToAll(new ReadOnlySpan<float>(exchange, P * block), new Span<float>(headShard + ((long)b * P * block), P * block));
        }
    }

    /// <summary>(B·P·T, local heads·D) head shard → accumulated into the (B·T, totalHeads·D) sequence shard.</summary>
    private void ToSequence(float* headShard, int totalHeads, bool kv, float* shard, float* exchange)
    {
        int t = seqLen, width = totalHeads * headDim, w = Count(kv) * headDim;
        int block = t * w;
        for (int b = 0; b < batchSize; b++)
        {
            Communicator.AllToAll(new ReadOnlySpan<float>(headShard + ((long)b * P * block), P * block), new Span<float>(exchange, P * block));
            for (int j = 0; j < P; j++)
            {
                int column = Start(j, kv) * headDim;
                for (int i = 0; i < t; i++)
                {
                    float* to = shard + ((((long)b * t) + i) * width) + column;
                    VectorOps.Add(exchange + ((long)j * block) + ((long)i * w), to, w, to);
                }
            }
        }
    }
}
