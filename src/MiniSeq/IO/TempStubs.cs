// TEMPORARY until the io branch lands.
using MiniSeq.Model;
using MiniSeq.Tensors;

namespace MiniSeq.IO;

public static class ModelDirectory
{
    public static LlamaConfig ReadConfig(string dir) => LlamaConfig.Load(Path.Combine(dir, "config.json"));

    public static void ReadWeights(string dir, ParameterLayout layout, TensorView parameters, Action<string>? warn = null) => throw new NotImplementedException();

    public static void Save(string dir, LlamaConfig config, ParameterLayout layout, TensorView parameters) => throw new NotImplementedException();
}

public sealed class TokenBatch
{
    public TokenBatch(int batchSize, int seqLen, int[] inputIds, int[] labels)
    {
        BatchSize = batchSize;
        SeqLen = seqLen;
        InputIds = inputIds;
        Labels = labels;
    }

    public static TokenBatch Load(string path) => throw new NotImplementedException();

    public void Validate(int vocabSize, string source) => throw new NotImplementedException();

    public int BatchSize { get; init; }

    public int SeqLen { get; init; }

    public int[] InputIds { get; init; } = [];

    public int[] Labels { get; init; } = [];

    public TokenBatch Slice(int firstRow, int rowCount) => throw new NotImplementedException();

    public int CountValidLabels() => Labels.Count(l => l != -100);
}
