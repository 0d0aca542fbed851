using System.Collections.Concurrent;
using System.IO.Compression;
using MiniSeq.Text;

namespace MiniSeq.Tests.Text;

/// <summary>
/// The committed tokenizers (TestData/tokenizers/NAME: tokenizer.json, gzipped when large, and tokenizer_config.json),
/// unpacked once per test run into a temporary directory, each loaded once by MiniSeq and by the Rust oracle.
/// </summary>
internal static class TokenizerFiles
{
    public static readonly string[] Names = ["llama2", "llama3", "qwen3"];

    private static readonly ConcurrentDictionary<string, Lazy<string>> s_directories = new();
    private static readonly ConcurrentDictionary<string, Lazy<Tokenizer>> s_ours = new();
    private static readonly ConcurrentDictionary<string, Lazy<Tokenizers.DotNet.Tokenizer>> s_oracles = new();

    /// <summary>A directory holding tokenizer.json (uncompressed) and tokenizer_config.json.</summary>
    // Lazy: GetOrAdd may run its factory on two threads at once, and two unpackings of one file collide.
    public static string Directory(string name) => s_directories.GetOrAdd(name, static n => new Lazy<string>(() => Unpack(n))).Value;

    private static string Unpack(string n)
    {
        string source = Path.Combine(AppContext.BaseDirectory, "TestData", "tokenizers", n);
        string target = Path.Combine(Path.GetTempPath(), $"miniseq-tokenizers-{Environment.ProcessId}", n);
        System.IO.Directory.CreateDirectory(target);
        foreach (string file in System.IO.Directory.GetFiles(source))
        {
            if (file.EndsWith(".gz", StringComparison.Ordinal))
            {
                using FileStream input = File.OpenRead(file);
                using var gzip = new GZipStream(input, CompressionMode.Decompress);
                using FileStream output = File.Create(Path.Combine(target, Path.GetFileNameWithoutExtension(file)));
                gzip.CopyTo(output);
            }
            else
            {
                File.Copy(file, Path.Combine(target, Path.GetFileName(file)), overwrite: true);
            }
        }
        return target;
    }

    public static Tokenizer Ours(string name) =>
        s_ours.GetOrAdd(name, n => new Lazy<Tokenizer>(() => Tokenizer.Load(Directory(n)))).Value;

    public static Tokenizers.DotNet.Tokenizer Oracle(string name) =>
        s_oracles.GetOrAdd(name, n => new Lazy<Tokenizers.DotNet.Tokenizer>(
            () => new Tokenizers.DotNet.Tokenizer(Path.Combine(Directory(n), "tokenizer.json")))).Value;
}
