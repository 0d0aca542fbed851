// Dependency-free SVG charts: process peak RSS against N (log-log, one line per mode, budget dashed), and the panels
// of a training run's metrics log (loss and validation loss, learning rate, tokens/s, memory, over steps).
using System.Globalization;
using System.Text;
using MiniSeq.Benchmarks;

namespace MiniSeq.Cli.Commands;

internal static class Svg
{
    /// <summary>The comment every metrics chart starts its body with: how `train` recognises a chart it may replace.</summary>
    public const string MetricsChartMarker = "<!-- miniseq metrics chart -->";

    /// <summary>One panel per series present in the log (x = step); loss and val_loss share a panel.</summary>
    public static string MetricsChart(IReadOnlyList<IReadOnlyDictionary<string, double>> rows, string title)
    {
        (string Title, string[] Keys, Func<double, string> Format)[] panels =
        [
            ("loss", ["loss", "val_loss"], v => v.ToString("0.###", CultureInfo.InvariantCulture)),
            ("learning rate", ["lr"], v => v.ToString("0.##E+0", CultureInfo.InvariantCulture)),
            ("tokens/s", ["tokens_per_s"], v => v.ToString("0", CultureInfo.InvariantCulture)),
            ("tracked peak memory", ["peak_bytes"], v => Tensors.ByteSize.Format((long)v)),
        ];
        var shown = panels.Where(p => p.Keys.Any(k => rows.Any(r => r.ContainsKey(k)))).ToArray();
        const int W = 780, PanelH = 180, L = 90, R = 170, Top = 40;
        string[] colors = ["#1f77b4", "#d62728"];
        var sb = new StringBuilder();
        int h = Top + (shown.Length * PanelH) + 20;
        sb.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        sb.Append(MetricsChartMarker).Append('\n');
        sb.Append(CultureInfo.InvariantCulture, $"<rect width=\"{W}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"{W / 2}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{System.Security.SecurityElement.Escape(title)}</text>\n");
        double maxStep = Math.Max(1, rows.Max(r => r.GetValueOrDefault("step", 0)));
        for (int p = 0; p < shown.Length; p++)
        {
            int y0 = Top + (p * PanelH), y1 = y0 + PanelH - 40;
            var values = shown[p].Keys.SelectMany(k => rows.Where(r => r.ContainsKey(k)).Select(r => r[k])).Where(double.IsFinite).ToArray();
            double lo = values.Length > 0 ? values.Min() : 0, hi = values.Length > 0 ? values.Max() : 1;
            if (hi - lo < 1e-12)
            {
                hi = lo + Math.Max(1e-12, Math.Abs(lo) * 0.01);
            }

            double X(double step) => L + (step / maxStep * (W - L - R));
            double Y(double v) => y1 - ((v - lo) / (hi - lo) * (y1 - y0));
            sb.Append(CultureInfo.InvariantCulture, $"<line x1=\"{L}\" y1=\"{y1}\" x2=\"{W - R}\" y2=\"{y1}\" stroke=\"black\"/><line x1=\"{L}\" y1=\"{y0}\" x2=\"{L}\" y2=\"{y1}\" stroke=\"black\"/>\n");
            sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{L - 6}\" y=\"{y0 + 4}\" text-anchor=\"end\">{shown[p].Format(hi)}</text><text x=\"{L - 6}\" y=\"{y1 + 4}\" text-anchor=\"end\">{shown[p].Format(lo)}</text>\n");
            sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{W - R + 8}\" y=\"{y0 + 12}\">{shown[p].Title}</text><text x=\"{W - R}\" y=\"{y1 + 16}\" text-anchor=\"end\">step {maxStep:0}</text>\n");
            for (int k = 0; k < shown[p].Keys.Length; k++)
            {
                string key = shown[p].Keys[k];
                var pts = rows.Where(r => r.ContainsKey(key) && r.ContainsKey("step") && double.IsFinite(r[key]))
                    .Select(r => FormattableString.Invariant($"{X(r["step"]):F1},{Y(r[key]):F1}")).ToArray();
                if (pts.Length == 0)
                {
                    continue;
                }

                sb.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{colors[k % colors.Length]}\" stroke-width=\"1.5\" points=\"{string.Join(' ', pts)}\"/>\n");
                sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{W - R + 8}\" y=\"{y0 + 30 + (k * 16)}\" fill=\"{colors[k % colors.Length]}\">{key}</text>\n");
            }
        }

        sb.Append("</svg>\n");
        return sb.ToString();
    }

    public static string PeakMemoryChart(IReadOnlyList<StepBenchmarkResult> rows, long budget)
    {
        const int W = 720, H = 440, L = 80, R = 170, T = 30, B = 50;
        string[] colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
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
