using System.Text;

namespace MiniSeq.Text;

internal static class UnicodeNormalization
{
    public static string Normalize(string text, NormalizationForm form) => text.Normalize(form);
}
