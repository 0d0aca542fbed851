// Byte sizes as users write them (1GiB, 512MiB, 1.5G) and as reports print them.
using System.Globalization;

namespace MiniSeq.Tensors;

/// <summary>Parses and formats byte sizes such as <c>1GiB</c>, <c>512MiB</c>, <c>1.5G</c>.</summary>
public static class ByteSize
{
    /// <summary>Formats bytes with a binary unit (B, KiB, MiB, GiB).</summary>
    public static string Format(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double value = bytes;
        int unit = 0;
        while (Math.Abs(value) >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        return unit == 0 ? $"{bytes} B" : value.ToString(value >= 100 ? "F0" : "F1", CultureInfo.InvariantCulture) + " " + units[unit];
    }

    /// <summary>Parses "1GiB", "1 GB", "300MiB", "4096" (bytes). Decimal units (KB/MB/GB) are powers of 1000.</summary>
    public static long Parse(string text)
    {
        if (!TryParse(text, out long bytes))
        {
            throw new FormatException($"'{text}' is not a size; write for example 1GiB, 512MiB, 2GB or a byte count.");
        }

        return bytes;
    }

    /// <summary>Tries to parse a size; see <see cref="Parse"/>.</summary>
    public static bool TryParse(string text, out long bytes)
    {
        bytes = 0;
        string s = text.Trim();
        int split = 0;
        while (split < s.Length && (char.IsDigit(s[split]) || s[split] == '.'))
        {
            split++;
        }

        if (split == 0 || !double.TryParse(s.AsSpan(0, split), NumberStyles.Float, CultureInfo.InvariantCulture, out double number))
        {
            return false;
        }

        double scale = s[split..].Trim().ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "K" or "KIB" => 1024d,
            "M" or "MIB" => 1024d * 1024,
            "G" or "GIB" => 1024d * 1024 * 1024,
            "T" or "TIB" => 1024d * 1024 * 1024 * 1024,
            "KB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "TB" => 1e12,
            _ => double.NaN,
        };
        if (double.IsNaN(scale) || number < 0)
        {
            return false;
        }

        bytes = (long)Math.Round(number * scale);
        return true;
    }
}
