// A dependency-free SVG line chart: process peak RSS against N (log-log), one line per mode, budget as a dashed line.
using System.Globalization;
using System.Text;
using MiniSeq.Benchmarks;

namespace MiniSeq.Cli.Commands;

internal static class Svg
{
    public static string PeakMemoryChart(IReadOnlyList<StepBenchmarkResult> rows, long budget)
    {
        const int W = 720, H = 440, L = 80, R = 170, T = 30, B = 50;
        string[] colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
        if (rows.Count == 0)
        {
            return "<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
        }

        double minN = Math.Log2(rows.Min(r => r.SeqLen)), maxN = Math.Log2(rows.Max(r => r.SeqLen)) + 0.1;
        double minM = Math.Log2(Math.Min(rows.Min(r => r.ProcessPeakRssBytes), budget) / 1048576.0) - 0.2;
        double maxM = Math.Log2(Math.Max(rows.Max(r => r.ProcessPeakRssBytes), budget) / 1048576.0) + 0.2;
        double X(double n) => L + ((Math.Log2(n) - minN) / Math.Max(1e-9, maxN - minN) * (W - L - R));
        double Y(double bytes) => H - B - ((Math.Log2(bytes / 1048576.0) - minM) / Math.Max(1e-9, maxM - minM) * (H - T - B));
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        sb.Append(CultureInfo.InvariantCulture, $"<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n<text x=\"{W / 2}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">Process peak RSS vs sequence length (log-log)</text>\n");
        sb.Append(CultureInfo.InvariantCulture, $"<line x1=\"{L}\" y1=\"{H - B}\" x2=\"{W - R}\" y2=\"{H - B}\" stroke=\"black\"/><line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{H - B}\" stroke=\"black\"/>\n");
        foreach (int n in rows.Select(r => r.SeqLen).Distinct().Order())
        {
            sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{X(n):F1}\" y=\"{H - B + 16}\" text-anchor=\"middle\">{(n >= 1024 ? $"{n / 1024.0:0.#}K" : n.ToString(CultureInfo.InvariantCulture))}</text>\n");
        }

        for (double m = Math.Ceiling(minM); m <= maxM; m++)
        {
            double bytes = Math.Pow(2, m) * 1048576;
            sb.Append(CultureInfo.InvariantCulture, $"<line x1=\"{L - 4}\" y1=\"{Y(bytes):F1}\" x2=\"{W - R}\" y2=\"{Y(bytes):F1}\" stroke=\"#eee\"/><text x=\"{L - 6}\" y=\"{Y(bytes) + 4:F1}\" text-anchor=\"end\">{Tensors.ByteSize.Format((long)bytes)}</text>\n");
        }

        sb.Append(CultureInfo.InvariantCulture, $"<line x1=\"{L}\" y1=\"{Y(budget):F1}\" x2=\"{W - R}\" y2=\"{Y(budget):F1}\" stroke=\"black\" stroke-dasharray=\"6,4\"/><text x=\"{W - R + 4}\" y=\"{Y(budget) + 4:F1}\">budget {Tensors.ByteSize.Format(budget)}</text>\n");
        int ci = 0;
        foreach (IGrouping<string, StepBenchmarkResult> g in rows.GroupBy(r => r.Mode))
        {
            string color = colors[ci % colors.Length];
            var pts = g.OrderBy(r => r.SeqLen).Select(r => FormattableString.Invariant($"{X(r.SeqLen):F1},{Y(r.ProcessPeakRssBytes):F1}"));
            sb.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{string.Join(' ', pts)}\"/>\n");
            foreach (StepBenchmarkResult r in g)
            {
                sb.Append(CultureInfo.InvariantCulture, $"<circle cx=\"{X(r.SeqLen):F1}\" cy=\"{Y(r.ProcessPeakRssBytes):F1}\" r=\"3\" fill=\"{color}\"/>\n");
            }

            sb.Append(CultureInfo.InvariantCulture, $"<rect x=\"{W - R + 10}\" y=\"{T + 20 + (ci * 20)}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{W - R + 28}\" y=\"{T + 31 + (ci * 20)}\">{g.Key}</text>\n");
            ci++;
        }

        sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{(L + W - R) / 2}\" y=\"{H - 10}\" text-anchor=\"middle\">sequence length N (tokens)</text>\n</svg>\n");
        return sb.ToString();
    }
}
