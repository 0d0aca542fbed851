using System.Globalization;
using System.Text;

namespace MiniSeq.Text;

/// <summary>
/// Unicode normalization forms C, D, KC and KD (UAX #15: full decomposition, canonical ordering, canonical
/// composition, algorithmic Hangul) from the tables in <see cref="UnicodeNormalizationData"/>. MiniSeq builds with
/// InvariantGlobalization, under which <see cref="string.Normalize()"/> leaves text unchanged, so the tokenizer
/// normalizers cannot rely on it.
/// </summary>
internal static class UnicodeNormalization
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Lazy<Tables> s_tables = new(Tables.Build);

    public static string Normalize(string text, NormalizationForm form)
    {
        bool compose = form is NormalizationForm.FormC or NormalizationForm.FormKC;
        bool compatibility = form is NormalizationForm.FormKC or NormalizationForm.FormKD;
        // Below U+00A0 every form is the identity; below U+0300 NFC is (no combining marks, no compositions).
        char limit = form == NormalizationForm.FormC ? '\u0300' : '\u00A0';
        if (!text.AsSpan().ContainsAnyInRange(limit, '\uFFFF'))
        {
            return text;
        }
        Tables t = s_tables.Value;
        var cps = new List<int>(text.Length + 8);
        for (int i = 0; i < text.Length;)
        {
            Rune.DecodeFromUtf16(text.AsSpan(i), out Rune r, out int used);
            i += Math.Max(used, 1);
            Decompose(t, r.Value, compatibility, cps);
        }
        SortMarks(t, cps);
        if (compose)
        {
            Compose(t, cps);
        }
        var sb = new StringBuilder(cps.Count);
        foreach (int cp in cps)
        {
            sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }

    private static void Decompose(Tables t, int cp, bool compatibility, List<int> output)
    {
        if (cp is >= SBase and < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0)
            {
                output.Add(TBase + s % TCount);
            }
            return;
        }
        if (compatibility && t.Compatibility.TryGetValue(cp, out int[]? k))
        {
            output.AddRange(k);
        }
        else if (t.Canonical.TryGetValue(cp, out int[]? d))
        {
            output.AddRange(d);
        }
        else
        {
            output.Add(cp);
        }
    }

    /// <summary>Canonical ordering: a stable sort of each run of non-starters by combining class.</summary>
    private static void SortMarks(Tables t, List<int> cps)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int c = t.Ccc(cps[i]);
            if (c == 0)
            {
                continue;
            }
            int j = i;
            int cp = cps[i];
            while (j > 0 && t.Ccc(cps[j - 1]) > c)
            {
                cps[j] = cps[j - 1];
                j--;
            }
            cps[j] = cp;
        }
    }

    private static void Compose(Tables t, List<int> cps)
    {
        int starter = -1;
        int lastClass = -1; // -1: the previous kept character is the starter itself
        int write = 0;
        for (int read = 0; read < cps.Count; read++)
        {
            int cp = cps[read];
            int c = t.Ccc(cp);
            if (starter >= 0 && (lastClass == -1 || lastClass < c) && TryCompose(t, cps[starter], cp, out int composite))
            {
                cps[starter] = composite;
                continue;
            }
            if (c == 0)
            {
                starter = write;
                lastClass = -1;
            }
            else
            {
                lastClass = c;
            }
            cps[write++] = cp;
        }
        cps.RemoveRange(write, cps.Count - write);
    }

    private static bool TryCompose(Tables t, int first, int second, out int composite)
    {
        if (first is >= LBase and < LBase + LCount && second is >= VBase and < VBase + VCount)
        {
            composite = SBase + ((first - LBase) * VCount + second - VBase) * TCount;
            return true;
        }
        if (first is >= SBase and < SBase + SCount && (first - SBase) % TCount == 0 && second is > TBase and < TBase + TCount)
        {
            composite = first + second - TBase;
            return true;
        }
        return t.Compositions.TryGetValue(((long)first << 32) | (uint)second, out composite);
    }

    private sealed class Tables
    {
        public readonly Dictionary<int, byte> Classes = [];
        public readonly Dictionary<int, int[]> Canonical = [];
        public readonly Dictionary<int, int[]> Compatibility = [];
        public readonly Dictionary<long, int> Compositions = [];

        public int Ccc(int cp) => cp < 0x300 ? 0 : Classes.GetValueOrDefault(cp);

        public static Tables Build()
        {
            var t = new Tables();
            foreach (string entry in Entries(UnicodeNormalizationData.CombiningClasses))
            {
                int colon = entry.IndexOf(':', StringComparison.Ordinal);
                string range = entry[..colon];
                byte c = byte.Parse(entry.AsSpan(colon + 1), CultureInfo.InvariantCulture);
                int dash = range.IndexOf('-', StringComparison.Ordinal);
                int first = Hex(dash < 0 ? range : range[..dash]);
                int last = dash < 0 ? first : Hex(range[(dash + 1)..]);
                for (int cp = first; cp <= last; cp++)
                {
                    t.Classes[cp] = c;
                }
            }
            ReadMappings(UnicodeNormalizationData.CanonicalDecompositions, t.Canonical);
            ReadMappings(UnicodeNormalizationData.CompatibilityDecompositions, t.Compatibility);
            foreach (string entry in Entries(UnicodeNormalizationData.Compositions))
            {
                int plus = entry.IndexOf('+', StringComparison.Ordinal);
                int equals = entry.IndexOf('=', StringComparison.Ordinal);
                t.Compositions[((long)Hex(entry[..plus]) << 32) | (uint)Hex(entry[(plus + 1)..equals])] = Hex(entry[(equals + 1)..]);
            }
            return t;
        }

        private static void ReadMappings(string data, Dictionary<int, int[]> map)
        {
            foreach (string entry in Entries(data))
            {
                int equals = entry.IndexOf('=', StringComparison.Ordinal);
                map[Hex(entry[..equals])] = entry[(equals + 1)..].Split(',').Select(Hex).ToArray();
            }
        }

        private static string[] Entries(string data) =>
            data.Split([' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries);

        private static int Hex(string s) => int.Parse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
    }
}
