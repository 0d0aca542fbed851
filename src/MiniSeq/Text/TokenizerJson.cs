using System.Text.Json;

namespace MiniSeq.Text;

/// <summary>Small helpers for reading the component objects of a <c>tokenizer.json</c>.</summary>
internal static class TokenizerJson
{
    /// <summary>The "type" of a component object, or "(none)".</summary>
    public static string TypeOf(JsonElement e) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String
            ? t.GetString()!
            : "(none)";

    public static bool IsNull(JsonElement e) => e.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined;

    public static InvalidDataException Unsupported(string component, string type) =>
        new($"tokenizer.json: unsupported {component} type '{type}'");

    public static InvalidDataException Unsupported(string component, string type, string detail) =>
        new($"tokenizer.json: unsupported {component} type '{type}' ({detail})");

    public static bool GetBool(JsonElement e, string name, bool fallback)
    {
        if (!e.TryGetProperty(name, out JsonElement v))
        {
            return fallback;
        }
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => fallback,
        };
    }

    public static string? GetString(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    public static int GetInt(JsonElement e, string name, int fallback) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : fallback;

    /// <summary>A pattern object <c>{"String": "…"}</c> or <c>{"Regex": "…"}</c>.</summary>
    public static (string Text, bool IsRegex) GetPattern(JsonElement e, string component, string type)
    {
        if (e.TryGetProperty("pattern", out JsonElement p) && p.ValueKind == JsonValueKind.Object)
        {
            if (p.TryGetProperty("String", out JsonElement s) && s.ValueKind == JsonValueKind.String)
            {
                return (s.GetString()!, false);
            }
            if (p.TryGetProperty("Regex", out JsonElement r) && r.ValueKind == JsonValueKind.String)
            {
                return (r.GetString()!, true);
            }
        }
        throw Unsupported(component, type, "pattern is neither String nor Regex");
    }
}
