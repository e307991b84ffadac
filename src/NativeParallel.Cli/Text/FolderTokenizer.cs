using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace NativeParallel.Cli.Text;

/// <summary>
/// A model folder's own tokenizer through Microsoft.ML.Tokenizers: tokenizer.json when it is a byte-level BPE
/// (GPT-2, Llama 3, Mistral Nemo, Qwen: vocabulary, merges, added tokens, the Split regex and the template's
/// beginning-of-text token read from the file), else tokenizer.model (SentencePiece: Llama 2, Mistral 7B).
/// </summary>
internal sealed class FolderTokenizer
{
    // GPT-2's pre-tokenizer regex: what a ByteLevel pre-tokenizer with use_regex (its default) splits by.
    private const string Gpt2Split = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private FolderTokenizer(Tokenizer tokenizer, string description)
    {
        Tokenizer = tokenizer;
        Description = description;
    }

    /// <summary>The tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>Which file and kind, for the run's header ("tokenizer.json: byte-level BPE, 128256 tokens").</summary>
    public string Description { get; }

    /// <summary>Token ids of <paramref name="text"/>, with the beginning-of-text token when the folder's tokenizer adds one.</summary>
    public int[] Encode(string text) => Tokenizer.EncodeToIds(text).ToArray();

    /// <summary>The text of <paramref name="ids"/>.</summary>
    public string Decode(IEnumerable<int> ids) => Tokenizer.Decode(ids);

    /// <summary>True when <paramref name="folder"/> holds a tokenizer this class reads.</summary>
    public static bool Exists(string folder) =>
        File.Exists(Path.Combine(folder, "tokenizer.json")) || File.Exists(Path.Combine(folder, "tokenizer.model"));

    /// <summary>Loads <paramref name="folder"/>'s tokenizer; a missing or unreadable one names the folder and the file.</summary>
    public static FolderTokenizer Load(string folder)
    {
        string json = Path.Combine(folder, "tokenizer.json"), model = Path.Combine(folder, "tokenizer.model");
        bool hasJson = File.Exists(json), hasModel = File.Exists(model);
        if (!hasJson && !hasModel)
            throw new FileNotFoundException($"{folder} has no tokenizer (tokenizer.json or tokenizer.model); copy the model's tokenizer files into it, or give --prompt-ids");
        JsonNode? root = null;
        if (hasJson)
        {
            try { root = JsonNode.Parse(File.ReadAllText(json)); }
            catch (JsonException e) { throw new InvalidDataException($"{json}: not valid JSON ({e.Message})"); }
            if (root is null) throw new InvalidDataException($"{json} is empty");
            if (IsByteLevel(root)) return FromJson(json, root);
        }
        if (hasModel) return FromSentencePiece(folder, model);
        throw new InvalidDataException($"{json}: only byte-level BPE tokenizer.json files are read (model {root?["model"]?["type"]}, " +
                                       $"pre-tokenizer {root?["pre_tokenizer"]?["type"]}); put the model's tokenizer.model (SentencePiece) beside it");
    }

    // A ByteLevel pre-tokenizer or decoder anywhere in the file marks GPT-2's byte-to-character mapping.
    private static bool IsByteLevel(JsonNode root) =>
        root["model"]?["type"]?.GetValue<string>() == "BPE" && (HasType(root["pre_tokenizer"], "ByteLevel") || HasType(root["decoder"], "ByteLevel"));

    private static bool HasType(JsonNode? node, string type) =>
        node is JsonObject o && (o["type"]?.GetValue<string>() == type || Children(o).Any(c => HasType(c, type)));

    private static IEnumerable<JsonNode?> Children(JsonObject o) =>
        new[] { "pretokenizers", "decoders", "processors" }.SelectMany(k => o[k] as JsonArray ?? []);

    private static IEnumerable<JsonObject> All(JsonNode? node) => node is JsonObject o ? Children(o).SelectMany(All).Prepend(o) : [];

    private static FolderTokenizer FromJson(string path, JsonNode root)
    {
        var model = root["model"]!;
        var vocab = model["vocab"] as JsonObject ?? throw new InvalidDataException($"{path}: model.vocab is missing");
        var merges = model["merges"] as JsonArray ?? throw new InvalidDataException($"{path}: model.merges is missing");
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var added in root["added_tokens"] as JsonArray ?? [])
            if (added?["content"]?.GetValue<string>() is { } content && added["id"] is { } id) special[content] = id.GetValue<int>();

        // Llama 3 and its kind split by their own regex (a Split pre-tokenizer) before the byte mapping; GPT-2 by its own.
        string? split = All(root["pre_tokenizer"]).Where(p => p["type"]?.GetValue<string>() == "Split")
            .Select(p => p["pattern"]?["Regex"]?.GetValue<string>()).FirstOrDefault(r => r is not null);
        bool useRegex = All(root["pre_tokenizer"]).FirstOrDefault(p => p["type"]?.GetValue<string>() == "ByteLevel")?["use_regex"]?.GetValue<bool>() ?? true;
        string? pattern = split ?? (useRegex ? Gpt2Split : null);

        var options = new BpeOptions(vocab.Select(kv => new KeyValuePair<string, int>(kv.Key, kv.Value!.GetValue<int>())))
        {
            // Merges are "a b" strings, or [a, b] pairs in files written by tokenizers 0.20 and later.
            Merges = merges.Select(m => m is JsonArray pair ? $"{pair[0]} {pair[1]}" : m!.GetValue<string>()).ToList(),
            SpecialTokens = special,
            ByteLevel = true,
            PreTokenizer = pattern is null ? null : new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), special),
            BeginningOfSentenceToken = BeginningToken(root),
        };
        Tokenizer tokenizer;
        try { tokenizer = BpeTokenizer.Create(options); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: Microsoft.ML.Tokenizers cannot build a BPE tokenizer from it ({e.Message})");
        }
        return new FolderTokenizer(tokenizer, $"{Path.GetFileName(path)}: byte-level BPE, {vocab.Count + special.Keys.Count(k => !vocab.ContainsKey(k))} tokens");
    }

    // The post-processor's template (TemplateProcessing) names the token put before every text, when there is one.
    private static string? BeginningToken(JsonNode root)
    {
        var template = All(root["post_processor"]).FirstOrDefault(p => p["type"]?.GetValue<string>() == "TemplateProcessing");
        var first = (template?["single"] as JsonArray)?.FirstOrDefault();
        return first?["SpecialToken"]?["id"]?.GetValue<string>();
    }

    private static FolderTokenizer FromSentencePiece(string folder, string path)
    {
        // transformers' Llama tokenizer adds <s> unless tokenizer_config.json says add_bos_token false.
        bool bos = true;
        string config = Path.Combine(folder, "tokenizer_config.json");
        if (File.Exists(config))
        {
            try { bos = JsonNode.Parse(File.ReadAllText(config))?["add_bos_token"]?.GetValue<bool>() ?? true; }
            catch (Exception e) when (e is JsonException or InvalidOperationException) { throw new InvalidDataException($"{config}: add_bos_token is unreadable ({e.Message})"); }
        }
        using var stream = File.OpenRead(path);
        try
        {
            var tokenizer = SentencePieceTokenizer.Create(stream, addBeginningOfSentence: bos, addEndOfSentence: false);
            return new FolderTokenizer(tokenizer, $"tokenizer.model: SentencePiece, {tokenizer.Vocabulary.Count} tokens");
        }
        // Google.Protobuf's parse errors are IOExceptions, so every failure here is the file's.
        catch (Exception e)
        {
            throw new InvalidDataException($"{path}: not a SentencePiece model Microsoft.ML.Tokenizers reads ({e.Message}); a Hugging Face folder's tokenizer.json is read instead when it is byte-level BPE");
        }
    }
}
