using System.Text.Json;
using System.Text.Json.Nodes;
using NativeParallel.Models;

namespace NativeParallel.Cli.Text;

/// <summary>
/// <c>run --requests FILE.jsonl</c>: one request per line, <c>{"id": ..., "prompt": "text"}</c> or
/// <c>{"prompt_ids": [1, 2, 3]}</c>, each with optional <c>max_tokens</c>, <c>temperature</c>, <c>top_k</c>,
/// <c>top_p</c> and <c>seed</c> (the command line's values otherwise). Blank lines are skipped; anything else that is
/// not such an object is an error naming the file and line, before any weight is read.
/// </summary>
internal static class RequestFile
{
    /// <summary>One request: its line, the id echoed back (the line number when absent), its tokens and options.</summary>
    public sealed record Request(int Line, JsonNode Id, int[] PromptIds, string? Prompt, int MaxTokens, SamplingOptions Sampling);

    private static readonly HashSet<string> Keys = ["id", "prompt", "prompt_ids", "max_tokens", "temperature", "top_k", "top_p", "seed"];

    public static List<Request> Read(string path, FolderTokenizer? tokenizer, string tokenizerWhere, int vocab, int maxTokens, SamplingOptions defaults)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--requests: no file at {path}");
        var requests = new List<Request>();
        int number = 0;
        foreach (string raw in File.ReadLines(path))
        {
            number++;
            if (raw.Trim().Length == 0) continue;
            string where = $"{path}:{number}";
            JsonObject o;
            try { o = JsonNode.Parse(raw) as JsonObject ?? throw new InvalidDataException($"{where}: expected a JSON object per line"); }
            catch (JsonException e) { throw new InvalidDataException($"{where}: not valid JSON ({e.Message})"); }
            if (o.Select(kv => kv.Key).FirstOrDefault(k => !Keys.Contains(k)) is { } unknown)
                throw new InvalidDataException($"{where}: unknown key '{unknown}' (expected {string.Join(", ", Keys)})");
            T Get<T>(string key, T fallback)
            {
                if (o[key] is not { } node) return fallback;
                try { return node.GetValue<T>(); }
                catch (Exception e) when (e is FormatException or InvalidOperationException) { throw new InvalidDataException($"{where}: '{key}' must be a {typeof(T).Name.ToLowerInvariant()}, got {node.ToJsonString()}"); }
            }

            string? prompt = Get<string?>("prompt", null);
            int[] ids;
            if (prompt is not null && o["prompt_ids"] is not null) throw new InvalidDataException($"{where}: give 'prompt' or 'prompt_ids', not both");
            if (prompt is not null)
            {
                if (tokenizer is null) throw new InvalidDataException($"{where}: 'prompt' needs a tokenizer, and {tokenizerWhere}; give 'prompt_ids'");
                ids = tokenizer.Encode(prompt);
            }
            else if (o["prompt_ids"] is JsonArray array)
                ids = array.Select(n => n is JsonValue v && v.TryGetValue(out int id) ? id : throw new InvalidDataException($"{where}: 'prompt_ids' must be integers")).ToArray();
            else throw new InvalidDataException($"{where}: needs 'prompt' (text) or 'prompt_ids' (an array of token ids)");
            if (ids.Length == 0) throw new InvalidDataException($"{where}: the prompt has no tokens");
            foreach (int id in ids)
                if (id < 0 || id >= vocab) throw new InvalidDataException($"{where}: token id {id} is outside the model's vocabulary (0..{vocab - 1})");
            int tokens = Get("max_tokens", maxTokens);
            if (tokens < 1) throw new InvalidDataException($"{where}: 'max_tokens' must be at least 1");
            var sampling = new SamplingOptions(Get("temperature", defaults.Temperature), Get("top_k", defaults.TopK), Get("top_p", defaults.TopP), Get("seed", defaults.Seed));
            if (sampling.Problem() is { } problem) throw new InvalidDataException($"{where}: {problem.Replace("top-k", "top_k").Replace("top-p", "top_p")}");
            requests.Add(new Request(number, o["id"]?.DeepClone() ?? JsonValue.Create(number), ids, prompt, tokens, sampling));
        }
        if (requests.Count == 0) throw new InvalidDataException($"{path} holds no requests (one JSON object per line)");
        return requests;
    }
}
