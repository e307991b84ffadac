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
        var tensors = new Dictionary<string, Safetensors.Entry>(StringComparer.Ordinal);
        foreach (string file in files) foreach (var (name, entry) in Safetensors.Read(file)) tensors[name] = entry;
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

    /// <summary>Reads only <paramref name="folder"/>'s config.json (the model's shape, before any weight is read).</summary>
    public static LlamaConfig LoadConfig(string folder, int maxSequence = 256)
    {
        string path = Path.Combine(folder, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"{folder} has no config.json (a Hugging Face Llama or Mixtral folder is expected)");
        JsonNode? parsed;
        try { parsed = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})"); }
        var root = parsed ?? throw new InvalidDataException($"{path} is empty");
        int Int(string key, int? fallback = null) => root[key]?.GetValue<int>() ?? fallback ?? throw new InvalidDataException($"{path}: '{key}' is missing");
        float Float(string key, float fallback) => root[key] is { } v ? (float)v.GetValue<double>() : fallback;
        string dtype = root["torch_dtype"]?.GetValue<string>() ?? "float32";
        int heads = Int("num_attention_heads");
        var config = new LlamaConfig
        {
            Vocab = Int("vocab_size"), Hidden = Int("hidden_size"), Layers = Int("num_hidden_layers"), Heads = heads,
            KvHeads = Int("num_key_value_heads", heads), Ffn = Int("intermediate_size"), RopeTheta = Float("rope_theta", 10000f),
            NormEps = Float("rms_norm_eps", 1e-6f), DType = dtype == "float32" ? DType.F32 : DType.BF16,
            Experts = Int("num_local_experts", 0), ExpertsPerToken = Int("num_experts_per_tok", 2), MaxSequence = maxSequence,
        };
        config.Validate();
        return config;
    }
}
