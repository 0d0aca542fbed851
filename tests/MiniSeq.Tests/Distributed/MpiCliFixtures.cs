// What the CLI tests under mpirun share: a tiny model directory, a token file and the metrics lines a run writes.
using System.Text.Json;
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
}
