// What the CLI tests under mpirun share: a tiny model directory, a token file, the metrics lines a run writes and the
// comparison of two saved safetensors files.
using System.Text.Json;
using MiniSeq.IO;
using MiniSeq.Tests.Helpers;

namespace MiniSeq.Tests.Distributed;

internal static class MpiCliFixtures
{
    /// <summary>A tiny model in TMP/m.</summary>
    public static string InitModel(TempDir tmp)
    {
        CliAssert.Ok(CliRunner.Run("init", "--config", "tiny", "--out", tmp["m"]));
        return tmp["m"];
    }

    /// <summary>rows × seqLen random ids with next-token labels (-100 at each row's end), in TMP/tokensROWS.json.</summary>
    public static string WriteTokens(TempDir tmp, int rows, int seqLen, int seed)
    {
        var rng = new Random(seed);
        int[][] ids = [.. Enumerable.Range(0, rows).Select(_ => Enumerable.Range(0, seqLen).Select(_ => rng.Next(256)).ToArray())];
        string path = tmp[$"tokens{rows}.json"];
        File.WriteAllText(path, JsonSerializer.Serialize(new Dictionary<string, object> { ["input_ids"] = ids, ["labels"] = ids.Select(r => r.Skip(1).Append(-100).ToArray()).ToArray() }));
        return path;
    }

    /// <summary>The JSON lines of a --metrics file.</summary>
    public static List<JsonElement> Metrics(string path) => [.. File.ReadAllLines(path).Select(l => JsonDocument.Parse(l).RootElement)];

    /// <summary>Largest per-tensor relative error between two safetensors files (every tensor within <paramref name="tolerance"/>).</summary>
    public static double CompareFiles(string actualPath, string expectedPath, double tolerance)
    {
        using SafeTensorsReader actual = SafeTensorsReader.Open(actualPath);
        using SafeTensorsReader expected = SafeTensorsReader.Open(expectedPath);
        Assert.Equal(expected.Tensors.Select(t => t.Name), actual.Tensors.Select(t => t.Name));
        double worst = 0;
        foreach (SafeTensorInfo t in expected.Tensors)
        {
            double error = Compare.RelativeError(actual.ReadFloat32(t.Name), expected.ReadFloat32(t.Name));
            Assert.True(error <= tolerance, $"{t.Name}: relative error {error:E3} > {tolerance:E1}");
            worst = Math.Max(worst, error);
        }

        return worst;
    }
}
