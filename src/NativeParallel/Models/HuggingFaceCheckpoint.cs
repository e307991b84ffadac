using System.Text.Json;
using System.Text.Json.Nodes;
using NativeParallel.Tensors;

namespace NativeParallel.Models;

/// <summary>
/// Hugging Face checkpoints of Llama and Mixtral: config.json plus *.safetensors with the transformers names
/// (model.embed_tokens, model.layers.N.self_attn.q_proj ... mlp.gate_proj, or block_sparse_moe.gate and
/// experts.E.w1/w3/w2, model.norm, lm_head), so a downloaded model folder loads as it is.
/// </summary>
public static class HuggingFaceCheckpoint
{
    /// <summary>
    /// Reads <paramref name="folder"/>'s config.json and every *.safetensors file. <paramref name="dtype"/>, when
    /// given, overrides the folder's torch_dtype (weights are rounded to it).
    /// </summary>
    public static LlamaWeights Load(string folder, int maxSequence = 256, DType? dtype = null)
    {
        var config = LoadConfig(folder, maxSequence);
        if (dtype is { } d0) config = config with { DType = d0 };
        config.Validate();
        var files = Directory.GetFiles(folder, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
        if (files.Length == 0) throw new FileNotFoundException($"{folder} has no *.safetensors files");
        // Every header first: each tensor config.json needs is present once with its shape before any weight is read,
        // so a wrong or hostile file costs its header, not an allocation of the sizes it claims.
        var headers = new Dictionary<string, (string File, Safetensors.TensorInfo Info)>(StringComparer.Ordinal);
        foreach (string file in files)
            foreach (var info in Safetensors.ReadHeader(file))
                if (!headers.TryAdd(info.Name, (file, info)))
                    throw new InvalidDataException($"{file}: tensor '{info.Name}' is also in {headers[info.Name].File}");
        var needed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in Expected(config, withLmHead: headers.ContainsKey("lm_head.weight")))
        {
            if (!headers.TryGetValue(name, out var found))
                throw new InvalidDataException($"{folder}: tensor '{name}' is missing (config.json needs it; the folder's *.safetensors: {string.Join(", ", files.Select(Path.GetFileName))})");
            if (!found.Info.Shape.SequenceEqual(shape))
                throw new InvalidDataException($"{found.File}: tensor '{name}' is [{string.Join(", ", found.Info.Shape)}], config.json implies [{string.Join(", ", shape)}]");
            needed.Add(name);
        }
        var tensors = new Dictionary<string, Safetensors.Entry>(StringComparer.Ordinal);
        foreach (string file in files) foreach (var (name, entry) in Safetensors.Read(file, needed.Contains)) tensors[name] = entry;
        float[] Take(string name, params int[] shape)
        {
            if (!tensors.TryGetValue(name, out var e)) throw new InvalidDataException($"{folder}: tensor '{name}' is missing");
            if (!e.Shape.SequenceEqual(shape)) throw new InvalidDataException($"{folder}: tensor '{name}' is [{string.Join(", ", e.Shape)}], config.json implies [{string.Join(", ", shape)}]");
            return config.DType == DType.F32 ? e.Values : Array.ConvertAll(e.Values, v => FloatBits.RoundTo(config.DType, v));
        }
        int h = config.Hidden, d = config.HeadDim, f = config.Ffn;
        var layers = new LlamaWeights.Layer[config.Layers];
        for (int i = 0; i < config.Layers; i++)
        {
            string p = $"model.layers.{i}.";
            var attention = (Take(p + "input_layernorm.weight", h), Take(p + "self_attn.q_proj.weight", config.Heads * d, h),
                Take(p + "self_attn.k_proj.weight", config.KvHeads * d, h), Take(p + "self_attn.v_proj.weight", config.KvHeads * d, h),
                Take(p + "self_attn.o_proj.weight", h, config.Heads * d), Take(p + "post_attention_layernorm.weight", h));
            layers[i] = config.Experts == 0
                ? new LlamaWeights.Layer(attention.Item1, attention.Item2, attention.Item3, attention.Item4, attention.Item5, attention.Item6,
                    Take(p + "mlp.gate_proj.weight", f, h), Take(p + "mlp.up_proj.weight", f, h), Take(p + "mlp.down_proj.weight", h, f))
                : new LlamaWeights.Layer(attention.Item1, attention.Item2, attention.Item3, attention.Item4, attention.Item5, attention.Item6, [], [], [])
                {
                    Router = Take(p + "block_sparse_moe.gate.weight", config.Experts, h),
                    Experts = Enumerable.Range(0, config.Experts).Select(e => new LlamaWeights.Expert(
                        Take($"{p}block_sparse_moe.experts.{e}.w1.weight", f, h), Take($"{p}block_sparse_moe.experts.{e}.w3.weight", f, h),
                        Take($"{p}block_sparse_moe.experts.{e}.w2.weight", h, f))).ToArray(),
                };
        }
        var embedding = Take("model.embed_tokens.weight", config.Vocab, h);
        // Tied embeddings (tie_word_embeddings) have no lm_head tensor.
        var lmHead = tensors.ContainsKey("lm_head.weight") ? Take("lm_head.weight", config.Vocab, h) : embedding;
        return new LlamaWeights(config, embedding, layers, Take("model.norm.weight", h), lmHead);
    }

    /// <summary>The tensors <paramref name="c"/> needs, with their shapes, in the order <see cref="Load"/> takes them.</summary>
    private static IEnumerable<(string Name, int[] Shape)> Expected(LlamaConfig c, bool withLmHead)
    {
        int h = c.Hidden, q = c.Heads * c.HeadDim, kv = c.KvHeads * c.HeadDim, f = c.Ffn;
        for (int i = 0; i < c.Layers; i++)
        {
            string p = $"model.layers.{i}.";
            yield return (p + "input_layernorm.weight", [h]);
            yield return (p + "self_attn.q_proj.weight", [q, h]);
            yield return (p + "self_attn.k_proj.weight", [kv, h]);
            yield return (p + "self_attn.v_proj.weight", [kv, h]);
            yield return (p + "self_attn.o_proj.weight", [h, q]);
            yield return (p + "post_attention_layernorm.weight", [h]);
            if (c.Experts == 0)
            {
                yield return (p + "mlp.gate_proj.weight", [f, h]);
                yield return (p + "mlp.up_proj.weight", [f, h]);
                yield return (p + "mlp.down_proj.weight", [h, f]);
                continue;
            }
            yield return (p + "block_sparse_moe.gate.weight", [c.Experts, h]);
            for (int e = 0; e < c.Experts; e++)
            {
                yield return ($"{p}block_sparse_moe.experts.{e}.w1.weight", [f, h]);
                yield return ($"{p}block_sparse_moe.experts.{e}.w3.weight", [f, h]);
                yield return ($"{p}block_sparse_moe.experts.{e}.w2.weight", [h, f]);
            }
        }
        yield return ("model.embed_tokens.weight", [c.Vocab, h]);
        yield return ("model.norm.weight", [h]);
        if (withLmHead) yield return ("lm_head.weight", [c.Vocab, h]);
    }

    /// <summary>Writes <paramref name="weights"/> as a Hugging Face folder (config.json + model.safetensors).</summary>
    public static void Save(LlamaWeights weights, string folder)
    {
        Directory.CreateDirectory(folder);
        var c = weights.Config;
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(c.Experts == 0 ? "LlamaForCausalLM" : "MixtralForCausalLM"),
            ["model_type"] = c.Experts == 0 ? "llama" : "mixtral",
            ["vocab_size"] = c.Vocab, ["hidden_size"] = c.Hidden, ["num_hidden_layers"] = c.Layers,
            ["num_attention_heads"] = c.Heads, ["num_key_value_heads"] = c.KvHeads, ["intermediate_size"] = c.Ffn,
            ["rope_theta"] = c.RopeTheta, ["rms_norm_eps"] = c.NormEps, ["torch_dtype"] = c.DType == DType.F32 ? "float32" : "bfloat16",
            ["tie_word_embeddings"] = false,
        };
        if (c.Experts > 0)
        {
            config["num_local_experts"] = c.Experts;
            config["num_experts_per_tok"] = c.ExpertsPerToken;
        }
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var t = new Dictionary<string, Safetensors.Entry>();
        void Put(string name, float[] values, params int[] shape) => t[name] = new Safetensors.Entry(c.DType, shape, values);
        int h = c.Hidden, d = c.HeadDim, f = c.Ffn;
        Put("model.embed_tokens.weight", weights.Embedding, c.Vocab, h);
        Put("model.norm.weight", weights.FinalNorm, h);
        Put("lm_head.weight", weights.LmHead, c.Vocab, h);
        for (int i = 0; i < c.Layers; i++)
        {
            var l = weights.Layers[i];
            string p = $"model.layers.{i}.";
            Put(p + "input_layernorm.weight", l.InputNorm, h);
            Put(p + "self_attn.q_proj.weight", l.Q, c.Heads * d, h);
            Put(p + "self_attn.k_proj.weight", l.K, c.KvHeads * d, h);
            Put(p + "self_attn.v_proj.weight", l.V, c.KvHeads * d, h);
            Put(p + "self_attn.o_proj.weight", l.O, h, c.Heads * d);
            Put(p + "post_attention_layernorm.weight", l.PostNorm, h);
            if (c.Experts == 0)
            {
                Put(p + "mlp.gate_proj.weight", l.Gate, f, h);
                Put(p + "mlp.up_proj.weight", l.Up, f, h);
                Put(p + "mlp.down_proj.weight", l.Down, h, f);
                continue;
            }
            Put(p + "block_sparse_moe.gate.weight", l.Router, c.Experts, h);
            for (int e = 0; e < c.Experts; e++)
            {
                Put($"{p}block_sparse_moe.experts.{e}.w1.weight", l.Experts[e].Gate, f, h);
                Put($"{p}block_sparse_moe.experts.{e}.w3.weight", l.Experts[e].Up, f, h);
                Put($"{p}block_sparse_moe.experts.{e}.w2.weight", l.Experts[e].Down, h, f);
            }
        }
        Safetensors.Write(Path.Combine(folder, "model.safetensors"), t);
    }

    /// <summary>The config.json architectures this loader reads (Mistral's is Llama's with another name).</summary>
    public static IReadOnlyList<string> Architectures { get; } = ["LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM"];

    /// <summary>
    /// Reads only <paramref name="folder"/>'s config.json (the model's shape, before any weight is read). Every field
    /// is checked for its JSON kind and range; an error names the file and the field.
    /// </summary>
    /// <exception cref="InvalidDataException">config.json is not valid JSON, lacks a field, has one of the wrong kind or an inconsistent shape.</exception>
    public static LlamaConfig LoadConfig(string folder, int maxSequence = 256)
    {
        string path = Path.Combine(folder, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"{folder} has no config.json (a Hugging Face Llama or Mixtral folder is expected)");
        var info = new FileInfo(path);
        // A config.json is a few kilobytes; refuse to read a large file whole.
        if (info.Length > 16 << 20) throw new InvalidDataException($"{path}: {info.Length} bytes is too large for a config.json");
        JsonNode? parsed;
        try { parsed = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message.Split('\n')[0].Trim()})"); }
        if (parsed is null) throw new InvalidDataException($"{path} is empty");
        if (parsed is not JsonObject root) throw new InvalidDataException($"{path}: a JSON {parsed.GetValueKind()}, not an object of fields");
        string Shown(JsonNode node)
        {
            string text = node.ToJsonString();
            return text.Length <= 40 ? text : text[..40] + "...";
        }
        int Int(string key, int minimum, int? fallback = null)
        {
            var node = root[key];
            if (node is null) return fallback ?? throw new InvalidDataException($"{path}: '{key}' is missing");
            if (node.GetValueKind() != JsonValueKind.Number || !node.AsValue().TryGetValue(out int value))
                throw new InvalidDataException($"{path}: '{key}' is {Shown(node)}, not an integer");
            return value >= minimum ? value : throw new InvalidDataException($"{path}: '{key}' is {value}, must be at least {minimum}");
        }
        float Float(string key, float fallback)
        {
            var node = root[key];
            if (node is null) return fallback;
            if (node.GetValueKind() != JsonValueKind.Number || !node.AsValue().TryGetValue(out double value))
                throw new InvalidDataException($"{path}: '{key}' is {Shown(node)}, not a number");
            return (float)value;
        }
        string? Text(string key)
        {
            var node = root[key];
            if (node is null) return null;
            return node.GetValueKind() == JsonValueKind.String ? node.GetValue<string>() : throw new InvalidDataException($"{path}: '{key}' is {Shown(node)}, not a string");
        }
        // The architecture, when the folder names one: transformers' architectures list, else model_type.
        if (root["architectures"] is { } architectures)
        {
            if (architectures is not JsonArray list || list.Any(a => a?.GetValueKind() != JsonValueKind.String))
                throw new InvalidDataException($"{path}: 'architectures' is {Shown(architectures)}, not a list of strings");
            if (list.Count > 0 && !list.Any(a => Architectures.Contains(a!.GetValue<string>())))
                throw new InvalidDataException($"{path}: 'architectures' is {Shown(architectures)}; supported: {string.Join(", ", Architectures)}");
        }
        else if (Text("model_type") is { } type && type is not ("llama" or "mistral" or "mixtral"))
            throw new InvalidDataException($"{path}: 'model_type' is \"{Shown(root["model_type"]!)}\"; supported: llama, mistral, mixtral");
        // float16 folders load as bf16 (the dtypes the kernels run), as --dtype can also ask.
        string dtype = Text("torch_dtype") ?? "float32";
        if (dtype is not ("float32" or "bfloat16" or "float16"))
            throw new InvalidDataException($"{path}: 'torch_dtype' is \"{dtype}\"; supported: float32, bfloat16, float16");
        int vocab = Int("vocab_size", 1), hidden = Int("hidden_size", 1), layers = Int("num_hidden_layers", 1), ffn = Int("intermediate_size", 1);
        int heads = Int("num_attention_heads", 1), kvHeads = Int("num_key_value_heads", 1, heads);
        int experts = Int("num_local_experts", 0, 0), perToken = Int("num_experts_per_tok", 1, 2);
        float theta = Float("rope_theta", 10000f), eps = Float("rms_norm_eps", 1e-6f);
        // The shape rules, each named by the fields it relates (LlamaConfig.Validate is the backstop).
        if (hidden % heads != 0) throw new InvalidDataException($"{path}: 'hidden_size' ({hidden}) is not a multiple of 'num_attention_heads' ({heads})");
        if (heads % kvHeads != 0) throw new InvalidDataException($"{path}: 'num_attention_heads' ({heads}) is not a multiple of 'num_key_value_heads' ({kvHeads})");
        if (hidden / heads % 2 != 0) throw new InvalidDataException($"{path}: 'hidden_size' / 'num_attention_heads' = {hidden / heads} is odd; RoPE needs an even head dimension");
        if (experts > 0 && perToken > experts) throw new InvalidDataException($"{path}: 'num_experts_per_tok' ({perToken}) is more than 'num_local_experts' ({experts})");
        if (!float.IsFinite(theta) || theta <= 0) throw new InvalidDataException($"{path}: 'rope_theta' is {theta}, must be positive");
        if (!float.IsFinite(eps) || eps < 0) throw new InvalidDataException($"{path}: 'rms_norm_eps' is {eps}, must be at least 0");
        var config = new LlamaConfig
        {
            Vocab = vocab, Hidden = hidden, Layers = layers, Heads = heads, KvHeads = kvHeads, Ffn = ffn, RopeTheta = theta, NormEps = eps,
            DType = dtype == "float32" ? DType.F32 : DType.BF16, Experts = experts, ExpertsPerToken = perToken, MaxSequence = maxSequence,
        };
        try { config.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"{path}: {e.Message}"); }
        return config;
    }
}
