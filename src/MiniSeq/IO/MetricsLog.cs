// Training metrics as JSON lines (one object per step, "step" first), appended and flushed line by line so that a
// killed run loses at most the line being written. Appending is refused to any file that is not such a log, so a
// mistyped path (the token file, a config) is never modified.
using System.Text;
using System.Text.Json;

namespace MiniSeq.IO;

/// <summary>An append-only JSONL metrics file.</summary>
public sealed class MetricsLog : IDisposable
{
    private readonly FileStream _stream;

    private MetricsLog(FileStream stream) => _stream = stream;

    /// <summary>The file's path.</summary>
    public string Path => _stream.Name;

    /// <summary>Throws unless <paramref name="path"/> is absent, empty, or a metrics log (its first line is a JSON
    /// object with a "step" field).</summary>
    /// <exception cref="IOException">The path is a directory, or a file that is not a metrics log.</exception>
    public static void CheckAppendable(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
        {
            throw new IOException($"--metrics {path}: is a directory; give a file path (e.g. {System.IO.Path.Combine(path, "metrics.jsonl")}).");
        }

        if (!File.Exists(path) || new FileInfo(path).Length == 0)
        {
            return;
        }

        string? first;
        using (var reader = new StreamReader(path, Encoding.UTF8))
        {
            first = ReadBoundedLine(reader, 1 << 16);
        }

        if (!IsMetricsLine(first))
        {
            throw new IOException($"--metrics {path}: the file exists and is not a MiniSeq metrics log (its first line is not a JSON object with \"step\"); it was not modified. Choose another file.");
        }
    }

    /// <summary>Opens <paramref name="path"/> for appending after <see cref="CheckAppendable"/>; a last line cut short by
    /// a killed run is ended first so that every new line parses.</summary>
    public static MetricsLog Open(string path)
    {
        CheckAppendable(path);
        string? parent = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (parent is not null)
        {
            Directory.CreateDirectory(parent);
        }

        var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        try
        {
            if (stream.Length > 0)
            {
                stream.Seek(-1, SeekOrigin.End);
                bool endsWithNewline = stream.ReadByte() == '\n';
                stream.Seek(0, SeekOrigin.End);
                if (!endsWithNewline)
                {
                    stream.WriteByte((byte)'\n');
                }
            }

            return new MetricsLog(stream);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Appends one JSON object (no newline inside) and flushes it.</summary>
    public void Append(string jsonObject)
    {
        ArgumentNullException.ThrowIfNull(jsonObject);
        byte[] bytes = Encoding.UTF8.GetBytes(jsonObject + "\n");
        _stream.Write(bytes);
        _stream.Flush();
    }

    /// <summary>
    /// Reads a metrics log: one dictionary of the numeric fields per line, in order. A last line cut short by a killed
    /// run is skipped; any other line that is not a JSON object is an error naming its line number.
    /// </summary>
    public static IReadOnlyList<IReadOnlyDictionary<string, double>> Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: metrics log not found.", path);
        }

        string[] lines = File.ReadAllLines(path);
        var rows = new List<IReadOnlyDictionary<string, double>>(lines.Length);
        for (int i = 0; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i]))
            {
                continue;
            }

            try
            {
                using JsonDocument doc = JsonDocument.Parse(lines[i]);
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                {
                    throw new InvalidDataException($"{path}: line {i + 1} is not a JSON object.");
                }

                var row = new Dictionary<string, double>(StringComparer.Ordinal);
                foreach (JsonProperty field in doc.RootElement.EnumerateObject())
                {
                    if (field.Value.ValueKind == JsonValueKind.Number)
                    {
                        row[field.Name] = field.Value.GetDouble();
                    }
                }

                rows.Add(row);
            }
            catch (JsonException) when (i == lines.Length - 1 || lines[i].TrimStart().StartsWith('{'))
            {
                // A line a killed run was writing (the next run to append ends it with a newline).
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{path}: line {i + 1} is not valid JSON ({e.Message}).", e);
            }
        }

        return rows;
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _stream.Dispose();

    private static bool IsMetricsLine(string? line)
    {
        if (string.IsNullOrWhiteSpace(line))
        {
            return false;
        }

        try
        {
            using JsonDocument doc = JsonDocument.Parse(line);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("step", out _);
        }
        catch (JsonException)
        {
            return false;
        }
    }

    // A token file can be one huge line: never read more than a metrics line can be.
    private static string? ReadBoundedLine(StreamReader reader, int maxChars)
    {
        var sb = new StringBuilder();
        int c;
        while ((c = reader.Read()) >= 0 && c != '\n')
        {
            if (sb.Length == maxChars)
            {
                return null;
            }

            sb.Append((char)c);
        }

        return sb.ToString();
    }
}
