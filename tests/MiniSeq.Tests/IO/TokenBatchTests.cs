// The token-file format: shapes, label alignment, defaults, validation messages and round trips.
using System.Text;
using MiniSeq.IO;

namespace MiniSeq.Tests.IO;

public class TokenBatchTests
{
    private static TokenBatch LoadText(TempDirectory dir, string json)
    {
        string path = dir.File("tokens.json");
        File.WriteAllText(path, json);
        return TokenBatch.Load(path);
    }

    private static InvalidDataException AssertLoadFails(string json, params string[] keywords)
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<InvalidDataException>(() => LoadText(dir, json));
        Assert.Contains(dir.File("tokens.json"), e.Message, StringComparison.Ordinal);
        foreach (string keyword in keywords)
        {
            Assert.Contains(keyword, e.Message, StringComparison.Ordinal);
        }

        return e;
    }

    [Fact]
    public void Load_LabelsAbsent_ShiftsLeftWithIgnoreAtRowEnd()
    {
        using var dir = new TempDirectory();
        TokenBatch batch = LoadText(dir, "{\"input_ids\": [[1, 2, 3], [4, 5, 6]]}");
        Assert.Equal(2, batch.BatchSize);
        Assert.Equal(3, batch.SeqLen);
        Assert.Equal([1, 2, 3, 4, 5, 6], batch.InputIds);
        Assert.Equal([2, 3, -100, 5, 6, -100], batch.Labels);
        Assert.Equal(4, batch.CountValidLabels());
    }

    [Fact]
    public void Load_LabelsPresent_KeptAlignedWithoutShift()
    {
        using var dir = new TempDirectory();
        TokenBatch batch = LoadText(dir, "{\"attention_mask\": [[1, 1]], \"labels\": [[-100, 7]], \"input_ids\": [[3, 4]]}");
        Assert.Equal([3, 4], batch.InputIds);
        Assert.Equal([-100, 7], batch.Labels);
        Assert.Equal(1, batch.CountValidLabels());
    }

    [Fact]
    public void Load_FlatList_IsOneRow()
    {
        using var dir = new TempDirectory();
        TokenBatch batch = LoadText(dir, "{\"input_ids\": [9, 8, 7, 6]}");
        Assert.Equal(1, batch.BatchSize);
        Assert.Equal(4, batch.SeqLen);
        Assert.Equal([8, 7, 6, -100], batch.Labels);
    }

    [Fact]
    public void Load_RaggedRows_ThrowsSuggestingPadding()
        => AssertLoadFails("{\"input_ids\": [[1, 2, 3], [4, 5]]}", "row 1 has 2 tokens but row 0 has 3", "same length", "-100");

    [Fact]
    public void Load_LabelShapeMismatch_Throws()
        => AssertLoadFails("{\"input_ids\": [[1, 2, 3], [4, 5, 6]], \"labels\": [[1, 2], [3, 4]]}", "labels are 2 × 2", "input_ids are 2 × 3", "same shape");

    [Fact]
    public void Load_LabelRowCountMismatch_Throws()
        => AssertLoadFails("{\"input_ids\": [[1, 2], [4, 5]], \"labels\": [[1, 2]]}", "labels are 1 × 2");

    [Fact]
    public void Load_MalformedJson_ThrowsNamingFile()
        => AssertLoadFails("{\"input_ids\": [[1, 2, 3], [4, 5", "not valid JSON", "input_ids");

    [Fact]
    public void Load_TrailingContent_ThrowsNamingFile()
        => AssertLoadFails("{\"input_ids\": [[1, 2]]} {\"input_ids\": [[3]]}", "not valid JSON");

    [Fact]
    public void Load_NonIntegerToken_ThrowsNamingRowAndColumn()
        => AssertLoadFails("{\"input_ids\": [[1, 2], [3, 4.5]]}", "row 1, column 1 is 4.5");

    [Fact]
    public void Load_MissingInputIds_Throws()
        => AssertLoadFails("{\"labels\": [[1, 2]]}", "no \"input_ids\"");

    [Fact]
    public void Load_EmptyRow_Throws()
        => AssertLoadFails("{\"input_ids\": [[]]}", "row 0 is empty");

    [Fact]
    public void Load_NotAnObject_Throws()
        => AssertLoadFails("[[1, 2]]", "not a JSON object");

    [Fact]
    public void Load_MissingFile_ThrowsFileNotFound()
    {
        using var dir = new TempDirectory();
        Assert.Throws<FileNotFoundException>(() => TokenBatch.Load(dir.File("absent.json")));
    }

    [Fact]
    public void Validate_OutOfRangeId_ThrowsNamingRowAndColumn()
    {
        var batch = TokenBatch.FromInputIds(2, 3, [1, 2, 3, 4, 256, 6]);
        var e = Assert.Throws<InvalidDataException>(() => batch.Validate(256, "data/train.json"));
        Assert.Contains("data/train.json", e.Message, StringComparison.Ordinal);
        Assert.Contains("input_ids row 1, column 1 is 256", e.Message, StringComparison.Ordinal);
        Assert.Contains("vocab_size", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_NegativeLabelOtherThanIgnore_Throws()
    {
        var batch = new TokenBatch(1, 3, [1, 2, 3], [2, -1, -100]);
        var e = Assert.Throws<InvalidDataException>(() => batch.Validate(10, "x.json"));
        Assert.Contains("labels row 0, column 1 is -1", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_InRangeWithIgnore_Passes()
    {
        var batch = new TokenBatch(1, 3, [0, 9, 3], [9, -100, 0]);
        batch.Validate(10, "x.json");
    }

    [Fact]
    public void Save_ThenLoad_RoundTrips()
    {
        using var dir = new TempDirectory();
        string path = dir.File("batch.json");
        var batch = new TokenBatch(2, 2, [1, 2, 3, 4], [-100, 5, 6, -100]);
        batch.Save(path);
        TokenBatch loaded = TokenBatch.Load(path);
        Assert.Equal(batch.BatchSize, loaded.BatchSize);
        Assert.Equal(batch.SeqLen, loaded.SeqLen);
        Assert.Equal(batch.InputIds, loaded.InputIds);
        Assert.Equal(batch.Labels, loaded.Labels);
        Assert.Equal(["batch.json"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Slice_MiddleRows_CopiesThoseRows()
    {
        var batch = TokenBatch.FromInputIds(3, 2, [1, 2, 3, 4, 5, 6]);
        TokenBatch slice = batch.Slice(1, 2);
        Assert.Equal(2, slice.BatchSize);
        Assert.Equal([3, 4, 5, 6], slice.InputIds);
        Assert.Equal([4, -100, 6, -100], slice.Labels);
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.Slice(2, 2));
    }

    [Fact]
    public void Load_LongRows_ReadsAllTokens()
    {
        using var dir = new TempDirectory();
        const int Rows = 4, Cols = 65536;
        var json = new StringBuilder("{\"input_ids\": [");
        for (int r = 0; r < Rows; r++)
        {
            json.Append(r == 0 ? "[" : ", [");
            for (int c = 0; c < Cols; c++)
            {
                json.Append(c == 0 ? "" : ",").Append((r * 7 + c) % 50000);
            }

            json.Append(']');
        }

        TokenBatch batch = LoadText(dir, json.Append("]}").ToString());
        Assert.Equal(Rows, batch.BatchSize);
        Assert.Equal(Cols, batch.SeqLen);
        Assert.Equal((3 * 7 + 65535) % 50000, batch.InputIds[^1]);
        Assert.Equal(Rows * (Cols - 1), batch.CountValidLabels());
    }
}
