// Encode throughput, MiniSeq vs the Rust `tokenizers` library, on the same text and machine, one thread each:
// the committed oracle corpus repeated to a few MB, encoded line by line with special tokens; median of the runs
// (interleaved A B A B). Usage: dotnet MiniSeq.TokenizerBench.dll TOKENIZER_DIR CORPUS_FILE [runs]
using System.Diagnostics;
using System.Globalization;

if (args.Length < 2)
{
    Console.Error.WriteLine("usage: MiniSeq.TokenizerBench TOKENIZER_DIR CORPUS_FILE [runs]");
    return 2;
}

string dir = args[0];
string[] lines = File.ReadAllLines(args[1]).Where(l => l.Length > 0).ToArray();
int runs = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 5;
var text = new List<string>();
long chars = 0;
while (chars < 4_000_000)
{
    foreach (string l in lines)
    {
        text.Add(l);
        chars += l.Length;
    }
}

var ours = MiniSeq.Text.Tokenizer.Load(dir);
var rust = new Tokenizers.DotNet.Tokenizer(Path.Combine(dir, "tokenizer.json"));
long bytes = text.Sum(t => (long)System.Text.Encoding.UTF8.GetByteCount(t));
var tOurs = new List<double>();
var tRust = new List<double>();
long idsOurs = 0, idsRust = 0;
for (int r = 0; r < runs + 1; r++)
{
    long t0 = Stopwatch.GetTimestamp();
    long n = 0;
    foreach (string t in text)
    {
        n += ours.Encode(t, addSpecialTokens: true).Length;
    }

    double a = Stopwatch.GetElapsedTime(t0).TotalSeconds;
    t0 = Stopwatch.GetTimestamp();
    long m = 0;
    foreach (string t in text)
    {
        m += rust.Encode(t).Length;
    }

    double b = Stopwatch.GetElapsedTime(t0).TotalSeconds;
    if (r > 0) // the first round warms up both (JIT, caches)
    {
        tOurs.Add(a);
        tRust.Add(b);
    }

    idsOurs = n;
    idsRust = m;
}

double Median(List<double> x) => x.Order().ElementAt(x.Count / 2);
double mo = Median(tOurs), mr = Median(tRust);
Console.WriteLine(FormattableString.Invariant(
    $"{Path.GetFileName(Path.TrimEndingDirectorySeparator(dir))}: {text.Count} lines, {bytes / 1e6:F1} MB UTF-8; ids MiniSeq {idsOurs} / Rust {idsRust}; MiniSeq {bytes / mo / 1e6:F2} MB/s, Rust {bytes / mr / 1e6:F2} MB/s, MiniSeq / Rust {mr / mo:F2}× (median of {runs})"));
return idsOurs == idsRust ? 0 : 1;
