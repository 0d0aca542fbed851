// `miniseq tokenize`: encode a text file to {"ids": [...]} or decode ids to {"text": "..."} with a tokenizer.json.
using System.CommandLine;
using System.Text.Json;
using MiniSeq.Text;

namespace MiniSeq.Cli.Commands;

internal static class TokenizeCommand
{
    private static readonly Option<string> TokenizerPath = new("--tokenizer") { Description = "tokenizer.json, or a directory holding it (and tokenizer_config.json)", Required = true };
    private static readonly Option<string?> TextFile = new("--text") { Description = "UTF-8 text file to encode" };
    private static readonly Option<string?> DecodeFile = new("--decode") { Description = "JSON file of ids to decode: [1, 2, …] or {\"ids\": [1, 2, …]}" };
    private static readonly Option<bool> AddSpecialTokens = new("--add-special-tokens") { Description = "Encode: let the post-processor add special tokens (BOS…)", DefaultValueFactory = _ => true };
    private static readonly Option<bool> SkipSpecialTokens = new("--skip-special-tokens") { Description = "Decode: leave special tokens out of the text" };

    public static Command Create()
    {
        var command = new Command("tokenize", "Encode a text file to {\"ids\": [...]}, or decode ids to {\"text\": \"...\"}, as Hugging Face tokenizers does");
        command.Options.Add(TokenizerPath);
        command.Options.Add(TextFile);
        command.Options.Add(DecodeFile);
        command.Options.Add(AddSpecialTokens);
        command.Options.Add(SkipSpecialTokens);
        command.SetAction(p =>
        {
            string? text = p.GetValue(TextFile);
            string? decode = p.GetValue(DecodeFile);
            if ((text is null) == (decode is null))
            {
                throw new ArgumentException("give exactly one of --text FILE (encode) and --decode FILE (decode)");
            }
            Tokenizer tokenizer = Tokenizer.Load(p.GetValue(TokenizerPath)!);
            if (text is not null)
            {
                int[] ids = tokenizer.Encode(File.ReadAllText(text), p.GetValue(AddSpecialTokens));
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, int[]> { ["ids"] = ids }));
            }
            else
            {
                int[] ids = ReadIds(decode!);
                string decoded = tokenizer.Decode(ids, p.GetValue(SkipSpecialTokens));
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, string> { ["text"] = decoded }));
            }
            return 0;
        });
        return command;
    }

    private static int[] ReadIds(string path)
    {
        try
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
            JsonElement list = doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("ids", out JsonElement ids)
                ? ids
                : doc.RootElement;
            if (list.ValueKind != JsonValueKind.Array)
            {
                throw new InvalidDataException($"{path}: expected a JSON list of ids or {{\"ids\": [...]}}");
            }
            return list.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int id)
                ? id
                : throw new InvalidDataException($"{path}: {e.GetRawText()} is not an integer token id")).ToArray();
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})");
        }
        catch (InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: expected a JSON list of integer ids or {{\"ids\": [...]}}");
        }
    }
}
