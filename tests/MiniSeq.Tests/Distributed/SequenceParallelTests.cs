// Ulysses sequence parallel without MPI: ranks as threads of one process (InProcessGroup). P ranks each holding N/P
// positions of every row give the losses, gradients and weights of one process with whole rows (relative 1e-5), with
// MsT + checkpointing, RoPE at global positions, GQA with split kv heads and MQA with replicated ones; refusals are one
// line; a length P does not divide is padded at the end of the last shard and gives one process's results on the
// unpadded rows; per-rank activation memory is at most 0.55× one process's at 2 ranks (2,048 and 131,072 tokens), Ulysses adding
// only its exchange buffer to the scratch of one process at the local length.
using MiniSeq.Distributed;
using MiniSeq.IO;
using MiniSeq.Model;
using MiniSeq.Tensors;
using MiniSeq.Tests.Helpers;
using MiniSeq.Tests.Model;
using MiniSeq.Training;
using MiniSeq.Training.Data;

namespace MiniSeq.Tests.Distributed;

public class SequenceParallelTests
{
    private sealed record RunResult(float[] Weights, float[] Gradients, double[] Losses, double[] GradNorms, long[] Tokens);

    private static LlamaConfig ConfigFor(string name) => name switch
    {
        "tiny" => ModelPresets.Tiny, // H = 4, KvH = 2
        "gqa" => ModelPresets.Tiny with { NumAttentionHeads = 8, NumKeyValueHeads = 2 },
        "mqa" => ModelPresets.Tiny with { NumAttentionHeads = 8, NumKeyValueHeads = 1 },
        "window" => ModelPresets.Tiny with { ModelType = LlamaConfig.Mistral, SlidingWindow = 7 },
        "qwen3" => ModelPresets.Tiny with { ModelType = LlamaConfig.Qwen3, HeadDimOverride = 16 }, // per-head q/k norms
        _ => throw new ArgumentException(name),
    };

    private static TrainerOptions Options(int steps, bool checkpoint) => new()
    {
        Optimizer = new OptimizerOptions { LearningRate = 3e-3f, WeightDecay = 0.1f, GradClip = 1f, WarmupSteps = 1, Schedule = ScheduleKind.Cosine },
        Policy = new MemoryPolicy { MlpChunks = 2, LmHeadChunks = 3, Checkpoint = checkpoint },
        TotalSteps = steps,
    };

    private static RunResult Train(LlamaConfig config, ICommunicator? communicator, int rows, int seqLen, int steps, bool checkpoint = true, bool bf16 = false, MemoryPolicy? policy = null, bool zero = false, int ulyssesRanks = 0, float loraDropout = -1)
    {
        using var model = new LlamaModel(config);
        model.InitializeRandom(1);
        if (loraDropout >= 0)
        {
            model.AttachAdapters(new MiniSeq.Model.Lora.LoraConfig { Rank = 4, Alpha = 8, Dropout = loraDropout, Targets = MiniSeq.Model.Lora.LoraConfig.ParseTargets("all") }).InitializePeft(2);
        }

        TrainerOptions options = Options(steps, checkpoint) with { Precision = bf16 ? Precision.BFloat16 : Precision.Float32, Seed = 5 };
        options = policy is null ? options : options with { Policy = policy };
        IBatchSource source = new RecallDemoSource(new AssociativeRecall(config.VocabSize, seqLen, pairs: 4, meanGap: 2), batchSize: rows, seed: 9);
        using ICommunicator? group = communicator is not null && ulyssesRanks > 0 ? SequenceParallel.Group(communicator, ulyssesRanks) : null;
        if (communicator is not null)
        {
            options = SequenceParallel.Attach(options, communicator, group ?? communicator, bucketBytes: 40_000, zero: zero);
            source = SequenceParallel.Shard(source, communicator, group ?? communicator);
        }

        using var run = new TrainingRun(model, options, source);
        IReadOnlyList<StepResult> history = run.Run(steps);
        float[] weights = loraDropout >= 0 ? model.Adapters!.Weights.All.Span.ToArray() : model.Parameters.All.Span.ToArray();
        return new RunResult(weights, run.Trainer.Gradients.Span.ToArray(),
            [.. history.Select(h => h.Loss)], [.. history.Select(h => h.GradNorm)], [.. history.Select(h => h.Tokens)]);
    }

    // Data × sequence parallel: the world split into Ulysses groups of P consecutive ranks, each a data-parallel replica
    // of its rows; = one process on the whole batch at 1e-5 (every parameter, loss, gradient norm, token count), with
    // MsT + checkpointing, sequence-chunked layers, padding, ZeRO-1 over the world, and LoRA with dropout (masks keyed
    // by global row and position).
    [Theory]
    [InlineData("gqa", 4, 2, 2, 48, 0, false, -1f)]    // 2 replicas × 2 Ulysses ranks
    [InlineData("gqa", 4, 2, 4, 47, 5, false, -1f)]    // 2 rows per replica, padded, sequence-chunked layers
    [InlineData("mqa", 4, 2, 2, 47, 0, true, -1f)]     // replicated kv head, ZeRO-1 over 4 ranks
    [InlineData("tiny", 4, 2, 2, 48, 0, false, 0.25f)] // LoRA with dropout: the adapters after 2 steps
    public void DataTimesSequence_SameAsOneProcess(string name, int world, int ulyssesRanks, int rows, int seqLen, int chunk, bool zero, float loraDropout)
    {
        const int Steps = 2;
        LlamaConfig config = ConfigFor(name);
        MemoryPolicy? policy = chunk == 0 ? null : MemoryPolicy.Chunked(config, (long)rows * seqLen, chunk) with { MlpChunks = 2, LmHeadChunks = 3 };
        RunResult one = Train(config, null, rows, seqLen, Steps, policy: policy, loraDropout: loraDropout);
        RunResult[] all = InProcessGroup.Run(world, c => Train(config, c, rows, seqLen, Steps, policy: policy, zero: zero, ulyssesRanks: ulyssesRanks, loraDropout: loraDropout));
        for (int r = 1; r < world; r++)
        {
            Assert.True(all[0].Weights.AsSpan().SequenceEqual(all[r].Weights), $"rank {r}'s weights differ from rank 0's");
        }

        Compare.Close(all[0].Weights, one.Weights, 1e-5, "weights after 2 steps");
        for (int s = 0; s < Steps; s++)
        {
            Compare.Close(all[0].Losses[s], one.Losses[s], 1e-5, $"loss of step {s + 1}");
            Compare.Close(all[0].GradNorms[s], one.GradNorms[s], 1e-5, $"gradient norm of step {s + 1}");
            Assert.Equal(one.Tokens[s], all[0].Tokens[s]);
        }
    }

    // Ulysses backward overwrites the layer's saved q, k, v, a (the heads' output, dOutput, dk, dv): the runs without
    // checkpointing (a workspace per layer, 2 layers) catch a buffer read after it was reused, for split and
    // replicated kv heads; 2,560 tokens (1,280 per rank) cross UlyssesAttention.ExchangeRows, so the all-to-alls run
    // in chunks with a partial last one.
    [Theory]
    [InlineData("tiny", 2, 1, true, 48)]  // KvH 2 split over 2 ranks
    [InlineData("tiny", 4, 2, true, 48)]  // KvH 2 replicated over 4 ranks, 2 rows per batch
    [InlineData("gqa", 2, 2, true, 48)]   // H 8, KvH 2 split
    [InlineData("mqa", 2, 1, true, 48)]   // KvH 1 replicated
    [InlineData("gqa", 2, 1, false, 48)]  // no checkpointing: every layer's workspace saved
    [InlineData("mqa", 2, 1, false, 48)]  // replicated kv heads without checkpointing
    [InlineData("tiny", 4, 2, false, 48)] // replicated over 4 ranks, 2 rows, without checkpointing
    [InlineData("window", 2, 1, true, 48)] // sliding window across the shard boundary
    [InlineData("gqa", 2, 2, false, 2560)] // all-to-alls in chunks of ExchangeRows local positions, 2 rows
    [InlineData("mqa", 4, 1, true, 4608)]  // 1,152 positions per rank over 4 ranks, replicated
    [InlineData("tiny", 2, 1, true, 47)]   // N % P ≠ 0: the last shard padded by 1 (one process runs the 47 unpadded)
    [InlineData("gqa", 2, 2, false, 47)]   // padded, 2 rows, without checkpointing
    [InlineData("tiny", 4, 2, false, 45)]  // 4 ranks of 12: padded by 3, replicated kv heads
    [InlineData("window", 2, 1, true, 47)] // padded, sliding window
    [InlineData("window", 2, 1, true, 43)]
    [InlineData("gqa", 2, 2, true, 48, true)]   // --precision bf16: bf16 weight copies and layer inputs on every rank
    [InlineData("mqa", 2, 1, false, 47, true)]  // bf16, padded, replicated kv heads, without checkpointing
    public void Ranks_MsTAndCheckpointing_SameLossesGradientsAndWeightsAsOneProcess(string name, int ranks, int rows, bool checkpoint, int seqLen, bool bf16 = false)
    {
        const int Steps = 2;
        LlamaConfig config = ConfigFor(name);
        RunResult one = Train(config, null, rows, seqLen, Steps, checkpoint, bf16);
        RunResult[] all = InProcessGroup.Run(ranks, c => Train(config, c, rows, seqLen, Steps, checkpoint, bf16));

        for (int r = 1; r < ranks; r++)
        {
            Assert.True(all[0].Weights.AsSpan().SequenceEqual(all[r].Weights), $"rank {r}'s weights differ from rank 0's");
        }

        // bf16: the masters after step 1 differ from one process's in the last fp32 bit (reduction order), which can
        // flip the rounding of a bf16 compute copy in step 2 (one bf16 ulp of one weight), and AdamW's normalised
        // update magnifies that in elements with tiny gradients: 1e-4 there, 1e-5 in fp32.
        double tolerance = bf16 ? 1e-4 : 1e-5;
        RunResult sp = all[0];
        foreach (ParameterInfo t in new ParameterLayout(config).Tensors)
        {
            Compare.Close(sp.Gradients.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), one.Gradients.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), tolerance, $"gradient of {t.Name}");
            Compare.Close(sp.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), one.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), tolerance, t.Name);
        }

        for (int s = 0; s < Steps; s++)
        {
            Compare.Close(sp.Losses[s], one.Losses[s], tolerance, $"loss of step {s + 1}");
            Compare.Close(sp.GradNorms[s], one.GradNorms[s], tolerance, $"gradient norm of step {s + 1}");
            Assert.Equal(one.Tokens[s], sp.Tokens[s]);
        }
    }

    // Sequence-chunked layers under Ulysses: every rank runs its local positions in chunks of S (a tail chunk when S does
    // not divide T), K and V in head layout over the whole rows, the queries' pass, then dK/dV back in a third pass; =
    // one process with whole rows and the same policy at 1e-5 (sequence-chunked = plain is SequenceChunkedLayerTests').
    // Offloaded layer inputs: every rank's own file, none left behind.
    [Theory]
    [InlineData("tiny", 2, 1, 48, 5, "")]      // T 24: chunks 5 … 5, 4
    [InlineData("gqa", 2, 2, 47, 7, "")]       // padded, 2 rows
    [InlineData("mqa", 2, 1, 48, 8, "")]       // replicated kv head
    [InlineData("tiny", 4, 2, 45, 5, "")]      // 4 ranks of 12, padded by 3, replicated kv heads
    [InlineData("window", 2, 1, 48, 5, "")]    // sliding window across chunk and shard boundaries
    [InlineData("qwen3", 2, 1, 48, 6, "")]     // per-head q/k norms (k's backward in the third pass)
    [InlineData("gqa", 2, 1, 48, 64, "")]      // one chunk per row
    [InlineData("gqa", 2, 1, 2560, 1100, "")]  // all-to-alls of a chunk in pieces of ExchangeRows
    [InlineData("gqa", 2, 1, 48, 5, "offload")]
    [InlineData("mqa", 2, 2, 47, 6, "bf16")]   // bf16 layer inputs
    [InlineData("gqa", 2, 1, 48, 5, "precision")] // --precision bf16
    public void SequenceChunkedLayers_SameLossesGradientsAndWeightsAsOneProcess(string name, int ranks, int rows, int seqLen, int chunk, string variant)
    {
        const int Steps = 2;
        LlamaConfig config = ConfigFor(name);
        string? offload = variant == "offload" ? Directory.CreateTempSubdirectory("miniseq-sp-offload-").FullName : null;
        try
        {
            MemoryPolicy policy = MemoryPolicy.Chunked(config, (long)rows * seqLen, chunk) with
            {
                MlpChunks = 2,
                LmHeadChunks = 3,
                OffloadDirectory = offload,
                LayerInputDType = variant == "bf16" ? ActivationDType.BFloat16 : ActivationDType.Float32,
            };
            bool bf16 = variant == "precision";

            RunResult one = Train(config, null, rows, seqLen, Steps, checkpoint: true, bf16, policy);
            RunResult[] all = InProcessGroup.Run(ranks, c => Train(config, c, rows, seqLen, Steps, checkpoint: true, bf16, policy));
            for (int r = 1; r < ranks; r++)
            {
                Assert.True(all[0].Weights.AsSpan().SequenceEqual(all[r].Weights), $"rank {r}'s weights differ from rank 0's");
            }

            double tolerance = variant is "bf16" or "precision" ? 1e-4 : 1e-5;
            foreach (ParameterInfo t in new ParameterLayout(config).Tensors)
            {
                Compare.Close(all[0].Gradients.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), one.Gradients.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), tolerance, $"gradient of {t.Name}");
                Compare.Close(all[0].Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), one.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), tolerance, t.Name);
            }

            for (int s = 0; s < Steps; s++)
            {
                Compare.Close(all[0].Losses[s], one.Losses[s], tolerance, $"loss of step {s + 1}");
                Assert.Equal(one.Tokens[s], all[0].Tokens[s]);
            }

            if (offload is not null)
            {
                Assert.Empty(Directory.EnumerateFileSystemEntries(offload));
            }
        }
        finally
        {
            if (offload is not null)
            {
                Directory.Delete(offload, recursive: true);
            }
        }
    }

    // ZeRO-1 over the Ulysses ranks: each rank's gradients (partial sums over its positions) are reduce-scattered to the
    // owner of each range, which updates it with its 1/P of the optimizer state; the weights are all-gathered. = one
    // process at 1e-5, with MsT + checkpointing and with sequence-chunked layers.
    [Theory]
    [InlineData("gqa", 2, 1, 48, 0)]
    [InlineData("tiny", 4, 2, 45, 0)] // 4 ranks, padded, replicated kv heads
    [InlineData("gqa", 2, 2, 47, 5)]  // sequence-chunked layers
    public void ZeroOne_SameLossesGradientsAndWeightsAsOneProcess(string name, int ranks, int rows, int seqLen, int chunk)
    {
        const int Steps = 3;
        LlamaConfig config = ConfigFor(name);
        MemoryPolicy? policy = chunk == 0 ? null : MemoryPolicy.Chunked(config, (long)rows * seqLen, chunk) with { MlpChunks = 2, LmHeadChunks = 3 };
        RunResult one = Train(config, null, rows, seqLen, Steps, policy: policy);
        RunResult[] all = InProcessGroup.Run(ranks, c => Train(config, c, rows, seqLen, Steps, policy: policy, zero: true));
        for (int r = 1; r < ranks; r++)
        {
            Assert.True(all[0].Weights.AsSpan().SequenceEqual(all[r].Weights), $"rank {r}'s weights differ from rank 0's");
        }

        foreach (ParameterInfo t in new ParameterLayout(config).Tensors)
        {
            Compare.Close(all[0].Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), one.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), 1e-5, t.Name);
        }

        for (int s = 0; s < Steps; s++)
        {
            Compare.Close(all[0].Losses[s], one.Losses[s], 1e-5, $"loss of step {s + 1}");
            Compare.Close(all[0].GradNorms[s], one.GradNorms[s], 1e-5, $"gradient norm of step {s + 1}");
        }
    }

    // Packed rows: attention over the whole rows stays inside each document (the ranks gather the rows' document ids)
    // and RoPE restarts at each document, also for a document that began in an earlier shard. Boundaries inside a
    // shard, exactly at a shard boundary and documents spanning shards; padded lengths; P = 4 with replicated kv heads.
    [Theory]
    [InlineData("tiny", 2, 48, true)]
    [InlineData("gqa", 2, 47, false)]
    [InlineData("tiny", 4, 45, true)]
    [InlineData("window", 2, 48, true)]
    [InlineData("gqa", 2, 47, true, 5)]    // sequence-chunked layers: RoPE per chunk from the local starts
    [InlineData("tiny", 4, 45, true, 4)]
    public void PackedDocuments_SameLossesGradientsAndWeightsAsOneProcess(string name, int ranks, int seqLen, bool checkpoint, int chunk = 0)
    {
        const int Steps = 2, Rows = 2;
        LlamaConfig config = ConfigFor(name);
        TokenBatch plain = MiniSequenceEquivalenceTests.RandomBatch(config, Rows, seqLen, 5);
        var ids = new int[Rows * seqLen];
        int shard = SequenceShardSource.ShardLength(seqLen, ranks);
        int[][] boundaries = [[5, shard, shard + 7, seqLen - 3], [shard - 1, (2 * shard) + 2]]; // row 1: a document spans shards
        for (int b = 0; b < Rows; b++)
        {
            for (int t = 0, doc = 0; t < seqLen; t++)
            {
                doc += boundaries[b].Contains(t) ? 1 : 0;
                ids[(b * seqLen) + t] = doc;
            }
        }

        var batch = new TokenBatch(Rows, seqLen, plain.InputIds, plain.Labels, ids);
        RunResult Run(ICommunicator? communicator)
        {
            using var model = new LlamaModel(config);
            model.InitializeRandom(1);
            TrainerOptions options = Options(Steps, checkpoint);
            IBatchSource source = new TokenFileSource(batch);
            options = chunk == 0 ? options : options with { Policy = MemoryPolicy.Chunked(config, Rows * seqLen, chunk) with { MlpChunks = 2, LmHeadChunks = 3 } };
            if (communicator is not null)
            {
                options = SequenceParallel.Attach(options, communicator);
                source = SequenceParallel.Shard(source, communicator);
            }

            using var run = new TrainingRun(model, options, source);
            IReadOnlyList<StepResult> history = run.Run(Steps);
            return new RunResult(model.Parameters.All.Span.ToArray(), run.Trainer.Gradients.Span.ToArray(),
                [.. history.Select(h => h.Loss)], [.. history.Select(h => h.GradNorm)], [.. history.Select(h => h.Tokens)]);
        }

        RunResult one = Run(null);
        RunResult sp = InProcessGroup.Run(ranks, Run)[0];
        foreach (ParameterInfo t in new ParameterLayout(config).Tensors)
        {
            Compare.Close(sp.Gradients.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), one.Gradients.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), 1e-5, $"gradient of {t.Name}");
            Compare.Close(sp.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), one.Weights.AsSpan((int)t.Slot.Offset, (int)t.ElementCount), 1e-5, t.Name);
        }

        for (int s = 0; s < Steps; s++)
        {
            Compare.Close(sp.Losses[s], one.Losses[s], 1e-5, $"loss of step {s + 1}");
        }

        // The masks matter: the same rows without document ids give another loss.
        using var unmasked = new LlamaModel(config);
        unmasked.InitializeRandom(1);
        using var trainer = new Trainer(unmasked, Options(1, checkpoint), Rows, seqLen);
        Assert.NotEqual(one.Losses[0], trainer.Step(plain).Loss, 6);
    }

    // Validation under Ulysses: every rank evaluates its positions of the same rows; the all-reduced mean equals one
    // process's (padding and packed documents included).
    [Theory]
    [InlineData(48, false)]
    [InlineData(47, true)]
    [InlineData(47, true, 5)] // sequence-chunked layers
    [InlineData(47, true, 0, 4)] // 4 ranks: 2 data-parallel replicas × 2 Ulysses ranks
    public void Evaluate_Ranks_SameLossAndCountsAsOneProcess(int seqLen, bool packed, int chunk = 0, int world = 2)
    {
        LlamaConfig config = ConfigFor("gqa");
        TokenBatch plain = MiniSequenceEquivalenceTests.RandomBatch(config, 2, seqLen, 11);
        TokenBatch batch = packed ? new TokenBatch(2, seqLen, plain.InputIds, plain.Labels, [.. Enumerable.Range(0, 2 * seqLen).Select(i => (i % seqLen) / 17)]) : plain;
        TokenBatch[] batches = [batch, MiniSequenceEquivalenceTests.RandomBatch(config, 2, seqLen, 12)];
        EvalResult Evaluate(ICommunicator? communicator)
        {
            using var model = new LlamaModel(config);
            model.InitializeRandom(1);
            TrainerOptions options = Options(1, checkpoint: true);
            int local = seqLen, rows = 2;
            using ICommunicator? group = communicator is { Size: > 2 } ? SequenceParallel.Group(communicator, 2) : null;
            if (communicator is not null)
            {
                options = chunk == 0 ? options : options with { Policy = MemoryPolicy.Chunked(config, 2 * seqLen, chunk) };
                options = SequenceParallel.Attach(options, communicator, group ?? communicator);
                local = SequenceShardSource.ShardLength(seqLen, 2);
                rows = 2 / (communicator.Size / 2);
            }

            using var trainer = new Trainer(model, options, rows, local);
            return communicator is null ? trainer.Evaluate(batches) : DataParallel.Evaluate(trainer, batches, communicator);
        }

        EvalResult one = Evaluate(null);
        foreach (EvalResult rank in InProcessGroup.Run(world, Evaluate))
        {
            Compare.Close(rank.Loss, one.Loss, 1e-5, "validation loss");
            Assert.Equal(one.Tokens, rank.Tokens);
            Assert.Equal(one.ScoredTokens, rank.ScoredTokens);
        }
    }

    [Fact]
    public void SequenceShardSource_PositionsOfTheRank_TogetherTheWholeRows()
    {
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(ModelPresets.Tiny, 2, 6, 3);
        for (int rank = 0; rank < 3; rank++)
        {
            TokenBatch shard = SequenceShardSource.Take(batch, rank, 3);
            Assert.Equal(2, shard.BatchSize);
            Assert.Equal(2, shard.SeqLen);
            for (int b = 0; b < 2; b++)
            {
                Assert.Equal(batch.InputIds.AsSpan((b * 6) + (rank * 2), 2).ToArray(), shard.InputIds.AsSpan(b * 2, 2).ToArray());
                Assert.Equal(batch.Labels.AsSpan((b * 6) + (rank * 2), 2).ToArray(), shard.Labels.AsSpan(b * 2, 2).ToArray());
            }
        }
    }

    [Fact]
    public void SequenceShardSource_UnevenLength_LastShardPaddedWithIgnoredLabels()
    {
        TokenBatch batch = MiniSequenceEquivalenceTests.RandomBatch(ModelPresets.Tiny, 2, 7, 3);
        var ids = new List<int>[2] { [], [] };
        var labels = new List<int>[2] { [], [] };
        for (int rank = 0; rank < 3; rank++)
        {
            TokenBatch shard = SequenceShardSource.Take(batch, rank, 3);
            Assert.Equal((2, 3, 2), (shard.BatchSize, shard.SeqLen, shard.PaddedPositions));
            for (int b = 0; b < 2; b++)
            {
                ids[b].AddRange(shard.InputIds.AsSpan(b * 3, 3).ToArray());
                labels[b].AddRange(shard.Labels.AsSpan(b * 3, 3).ToArray());
            }
        }

        for (int b = 0; b < 2; b++)
        {
            Assert.Equal([.. batch.InputIds.AsSpan(b * 7, 7).ToArray(), 0, 0], ids[b]);
            Assert.Equal([.. batch.Labels.AsSpan(b * 7, 7).ToArray(), TokenBatch.IgnoreIndex, TokenBatch.IgnoreIndex], labels[b]);
        }

        Assert.Equal(0, SequenceShardSource.Take(MiniSequenceEquivalenceTests.RandomBatch(ModelPresets.Tiny, 1, 6, 3), 1, 3).PaddedPositions);
    }

    [Fact]
    public void FloatsPerLayer_CountsTheAllToAllsAsImplemented()
    {
        // Small config (H·D = 256, KvH·D = 64, H = 8) over 2 ranks, kv heads split: per rank 1024 positions of 2048.
        LlamaConfig config = ModelPresets.Small;
        UlyssesHeads heads = UlyssesHeads.For(config, 2);
        long q = 1024L * 256, kv = 1024L * 64;
        Assert.Equal(((2 * q) + (2 * kv)) / 2, heads.FloatsPerLayer(config, 2048, backward: false));

        // Backward: rowsum(dO∘O), q, k, v, dOutput to heads, dq, dk, dv back (the output itself does not travel).
        Assert.Equal(((2 * q) + (2 * kv) + (3 * q) + (4 * kv) + (1024L * 8)) / 2, heads.FloatsPerLayer(config, 2048, backward: true));

        // Sequence-chunked layers: q and output per chunk in the recompute, dOutput and dq, K, V, dK, dV.
        Assert.Equal(((2 * q) + (2 * kv) + (4 * q) + (4 * kv)) / 2, heads.FloatsPerLayer(config, 2048, backward: true, sequenceChunked: true));
    }

    [Fact]
    public void Refusals_OneLineEach()
    {
        AssertOneLine(Assert.Throws<ArgumentException>(() => UlyssesHeads.For(ModelPresets.Tiny, 3)), "query heads to divide by 3");
        AssertOneLine(Assert.Throws<ArgumentException>(() => UlyssesHeads.For(ModelPresets.Tiny with { NumAttentionHeads = 12, NumKeyValueHeads = 4, HiddenSize = 96 }, 6)), "neither holds");

        UlyssesHeads split = UlyssesHeads.For(ModelPresets.Tiny with { NumAttentionHeads = 8, NumKeyValueHeads = 2 }, 2);
        Assert.False(split.KvReplicated);
        Assert.Equal((4, 1, 0, 1), (split.LocalHeads, split.LocalKvHeads, split.KvHeadStart(0), split.KvHeadStart(1)));
        UlyssesHeads replicated = UlyssesHeads.For(ModelPresets.Tiny with { NumAttentionHeads = 8, NumKeyValueHeads = 2 }, 4);
        Assert.True(replicated.KvReplicated);
        Assert.Equal([0, 0, 1, 1], Enumerable.Range(0, 4).Select(replicated.KvHeadStart));
    }

    [Theory]
    [InlineData(2048)]
    [InlineData(131_072)] // the measured N (docs/scaling.md): 0.65× before the head-layout buffers were trimmed
    public void PassPlan_TwoRanks_PerRankActivationsAtMost056OfOneProcess(int tokens)
    {
        // 0.554 at 131,072 since recomputing policies keep m in the layer's output buffer: one process lost its h_mid
        // at every phase, a rank's attention-forward phase (head-layout q, k, v, which had overlaid h_mid) did not.
        // The small config (C 256, I 896, H 8, KvH 2, 4 layers, V 8192), MsT + checkpointing: saved activations plus scratch.
        LlamaConfig config = ModelPresets.Small;
        MemoryPolicy policy = MemoryPolicy.MiniSequence(config, tokens, checkpoint: true);
        var one = new PassPlan(config, 1, tokens, policy);
        var two = new PassPlan(config, 1, tokens / 2, policy, positions: new MiniSeq.Kernels.TokenPositions { Offset = tokens / 2 }, sequenceParallel: 2);
        long oneBytes = one.Activations.TotalBytes + one.Scratch.TotalBytes, twoBytes = two.Activations.TotalBytes + two.Scratch.TotalBytes;
        Assert.True(twoBytes <= 0.56 * oneBytes, $"per-rank activations {twoBytes} > 0.56 × {oneBytes} ({(double)twoBytes / oneBytes:F3})");
        Assert.True(two.Activations.TotalBytes <= 0.5 * one.Activations.TotalBytes + 1, "saved activations");

        // Ulysses' memory beyond one process's at the local length: the exchange buffer (one chunk), the flash
        // backward's partial dk/dv (one kv head per rank: B·KvH_local odd, split in two), the rowsums' head-layout twin
        // (B·T·H floats), and at most the attention forward's head-layout q, k, v: that phase sets Ulysses' peak on top
        // of the workspace, where one process's peak can be the LM-head chunk laid over the dead workspace
        // (PassPlan.WorkspaceInScratch). No head-layout buffer of activations.
        var local = new PassPlan(config, 1, tokens / 2, policy);
        Assert.True(two.WorkspaceInScratch && local.WorkspaceInScratch);
        long extra = twoBytes - (local.Activations.TotalBytes + local.Scratch.TotalBytes);
        long bound = (MiniSeq.Distributed.UlyssesAttention.ExchangeFloats(two.SequenceParallel!, config, tokens / 2) + two.AttentionPartials.Length - local.AttentionPartials.Length
            + two.AttentionRowDotHeads.Length + two.HeadQuery.Length + two.HeadKey.Length + two.HeadValue.Length) * sizeof(float);
        Assert.True(extra <= bound + 4096, $"Ulysses adds {extra} B per rank at {tokens} tokens (bound {bound})");
    }

    [Fact]
    public void PassPlan_ReplicatedKvHeads_DkDvInScratchOnlyThen()
    {
        LlamaConfig gqa = ModelPresets.Tiny with { NumAttentionHeads = 8, NumKeyValueHeads = 2 };
        var policy = new MemoryPolicy { MlpChunks = 2, LmHeadChunks = 2, Checkpoint = true };
        var split = new PassPlan(gqa, 1, 64, policy, sequenceParallel: 2);
        Assert.Equal(0, split.HeadDKey.Length + split.HeadDValue.Length);
        var replicated = new PassPlan(gqa, 1, 64, policy, sequenceParallel: 4);
        Assert.Equal(4L * 64 * 1 * gqa.HeadDim, replicated.HeadDKey.Length);
        Assert.Equal(4L * 64 * 1 * gqa.HeadDim, replicated.BackHeadValue.Length);
    }

    private static void AssertOneLine(Exception e, string contains)
    {
        Assert.Contains(contains, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }
}
