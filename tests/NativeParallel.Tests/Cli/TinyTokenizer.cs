using System.Text.Json.Nodes;

namespace NativeParallel.Tests.Cli;

/// <summary>
/// A Llama-3-shaped tokenizer.json small enough to check by hand: byte-level BPE over the printable ASCII characters
/// and the space (Ġ), nine merges that spell "hello" and " world", a Split pre-tokenizer with Llama 3's regex, and a
/// template that puts &lt;|begin_of_text|&gt; first, and &lt;|end_of_text|&gt; so the vocabulary (106) divides by tp=2.
/// "hello world" encodes to 104 98 103.
/// </summary>
internal static class TinyTokenizer
{
    public const int BeginOfText = 104, EndOfText = 105, Size = 106;
    public const string BeginOfTextContent = "<|begin_of_text|>", EndOfTextContent = "<|end_of_text|>";

    private static readonly (string Left, string Right)[] Merges =
        [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("Ġ", "w"), ("o", "r"), ("Ġw", "or"), ("l", "d"), ("Ġwor", "ld")];

    /// <summary>Token strings by id as the file spells them (Ġ is the space byte), the special tokens last.</summary>
    public static IReadOnlyList<string> Tokens { get; } =
        Enumerable.Range(33, 94).Select(c => ((char)c).ToString()).Append("Ġ").Concat(Merges.Select(m => m.Left + m.Right)).Append(BeginOfTextContent).Append(EndOfTextContent).ToArray();

    /// <summary>The text of <paramref name="ids"/>, written out from the table above (the check on the CLI's decoding).</summary>
    public static string Text(IEnumerable<int> ids) => string.Concat(ids.Select(id => Tokens[id].Replace('Ġ', ' ')));

    /// <summary>
    /// Writes tokenizer.json into <paramref name="folder"/>; <paramref name="gpt2"/> writes GPT-2's shape instead (a
    /// ByteLevel pre-tokenizer with its own regex, no template, so no beginning-of-text token); <paramref name="extra"/>
    /// tokens take ids from <see cref="Size"/> on.
    /// </summary>
    public static void Write(string folder, bool gpt2 = false, params string[] extra)
    {
        var vocab = new JsonObject();
        for (int id = 0; id < BeginOfText; id++) vocab[Tokens[id]] = id;
        for (int i = 0; i < extra.Length; i++) vocab[extra[i]] = Size + i;
        const string llama3Split = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = BeginOfText, ["content"] = BeginOfTextContent, ["special"] = true },
                new JsonObject { ["id"] = EndOfText, ["content"] = EndOfTextContent, ["special"] = true }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = llama3Split }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
            },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["processors"] = new JsonArray(
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
                    new JsonObject
                    {
                        ["type"] = "TemplateProcessing",
                        ["single"] = new JsonArray(
                            new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = BeginOfTextContent, ["type_id"] = 0 } },
                            new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                    }),
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(Merges.Select(m => (JsonNode)$"{m.Left} {m.Right}").ToArray()),
            },
        };
        if (gpt2)
        {
            root["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
            root["post_processor"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true };
        }
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), root.ToJsonString());
    }
}
