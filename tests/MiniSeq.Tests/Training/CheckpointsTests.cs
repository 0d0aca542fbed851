// The checkpoint directories' bookkeeping without training: which directories count as MiniSeq's checkpoints, which
// one a resume picks, what pruning deletes (only ours), and how a difference in the run description is named.
using MiniSeq.Tests.Helpers;
using MiniSeq.Training;

namespace MiniSeq.Tests.Training;

public class CheckpointsTests
{
    private static void FakeCheckpoint(string dir, int step)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), "{}");
        File.WriteAllText(Path.Combine(dir, "model.safetensors"), "w");
        File.WriteAllText(Path.Combine(dir, "optimizer.safetensors"), "o");
        File.WriteAllText(Path.Combine(dir, "trainer_state.json"), $"{{\"step\": {step}, \"optimizer\": \"adamw\", \"data_cursor\": {step}}}");
    }

    [Fact]
    public void List_OnlyCompleteCheckpointStepDirectories_InStepOrder()
    {
        using var tmp = new TempDir();
        FakeCheckpoint(tmp["checkpoint-10"], 10);
        FakeCheckpoint(tmp["checkpoint-5"], 5);
        FakeCheckpoint(tmp["checkpoint-05"], 5); // not a name MiniSeq writes
        Directory.CreateDirectory(tmp["checkpoint-15"]); // no state: not ours (or incomplete)
        FakeCheckpoint(tmp["checkpoint-x"], 1);
        Assert.Equal([5, 10], Checkpoints.List(tmp.Path).Select(c => c.Step));
        Assert.Equal(tmp["checkpoint-10"], Checkpoints.Resolve(tmp.Path));
        Assert.Equal(tmp["checkpoint-5"], Checkpoints.Resolve(tmp["checkpoint-5"]));
    }

    [Fact]
    public void Resolve_PrefersANewerFinalSave_AndRefusesADirectoryWithoutState()
    {
        using var tmp = new TempDir();
        FakeCheckpoint(tmp["checkpoint-10"], 10);
        FakeCheckpoint(tmp.Path, 12);
        Assert.Equal(tmp.Path, Checkpoints.Resolve(tmp.Path));
        Directory.CreateDirectory(tmp["empty"]);
        Assert.Throws<DirectoryNotFoundException>(() => Checkpoints.Resolve(tmp["empty"]));
        Directory.CreateDirectory(tmp["export"]);
        File.WriteAllText(tmp["export/config.json"], "{}");
        File.WriteAllText(tmp["export/model.safetensors"], "w");
        var e = Assert.Throws<DirectoryNotFoundException>(() => Checkpoints.Resolve(tmp["export"]));
        Assert.Contains("model without training state", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Prune_KeepsTheNewest_AndNeverDeletesOtherFiles()
    {
        using var tmp = new TempDir();
        foreach (int step in new[] { 5, 10, 15, 20 })
        {
            FakeCheckpoint(tmp[$"checkpoint-{step}"], step);
        }

        File.WriteAllText(tmp["checkpoint-5/notes.txt"], "mine");
        Directory.CreateDirectory(tmp["checkpoint-7"]);
        File.WriteAllText(tmp["notes.txt"], "mine");
        Checkpoints.Prune(tmp.Path, 2);
        Assert.Equal([15, 20], Checkpoints.List(tmp.Path).Select(c => c.Step));
        Assert.False(Directory.Exists(tmp["checkpoint-10"]));
        Assert.Equal(["notes.txt"], Directory.GetFiles(tmp["checkpoint-5"]).Select(Path.GetFileName)); // only our files went
        Assert.True(Directory.Exists(tmp["checkpoint-7"]));
        Assert.True(File.Exists(tmp["notes.txt"]));
        Assert.False(Checkpoints.HoldsOnlyOwn(tmp.Path));
    }

    [Fact]
    public void DifferenceFrom_NamesTheFirstDifferingKey()
    {
        var state = new TrainingState { Run = new(StringComparer.Ordinal) { ["a"] = "1", ["b"] = "2" } };
        Assert.Null(state.DifferenceFrom(new Dictionary<string, string> { ["a"] = "1", ["b"] = "2" }));
        Assert.Equal("b is 2 in the checkpoint but 3 in this run", state.DifferenceFrom(new Dictionary<string, string> { ["a"] = "1", ["b"] = "3" }));
        Assert.Equal("c is (not recorded) in the checkpoint but 4 in this run", state.DifferenceFrom(new Dictionary<string, string> { ["a"] = "1", ["b"] = "2", ["c"] = "4" }));
    }
}
