using System.Text.Json;
using System.Text.Json.Nodes;
using NativeParallel.Comm;
using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Training;

/// <summary>
/// A training checkpoint: a Hugging Face folder (config.json + model.safetensors, loadable by <c>run --model</c> and
/// by transformers) with a <c>training/</c> subfolder holding what a bit-exact resume needs besides the weights:
/// AdamW's moments (<c>optimizer.safetensors</c>, f32) and the step and data position (<c>state.json</c>).
/// </summary>
public static class TrainingCheckpoint
{
    /// <summary>Where a run continues from.</summary>
    /// <param name="Step">Steps completed.</param>
    /// <param name="Shard">The data loader's shard index.</param>
    /// <param name="Position">The data loader's position in that shard.</param>
    /// <param name="Batch">B of the run (a resume must keep it, or the data position means something else).</param>
    /// <param name="Sequence">T of the run.</param>
    /// <param name="CapacityFactor">
    /// A mixture-of-experts model's capacity factor (0: no cap), which decides the routings dropped and so the run:
    /// Mixtral's config.json has no field for it, so state.json keeps it. <see cref="Save(string, LlamaTrainer, State?)"/>
    /// writes the trainer's own, whatever this says; <see cref="ReadState"/> reads it back (0 for a checkpoint without it).
    /// </param>
    public sealed record State(int Step, int Shard, long Position, int Batch, int Sequence, double CapacityFactor = 0);

    private const string StateFolder = "training";

    /// <summary>Writes the weights, the moments and <paramref name="state"/> under <paramref name="folder"/> (a trainer of the whole model).</summary>
    public static void Save(string folder, LlamaTrainer trainer, State? state) =>
        Write(folder, trainer.Config, Gather(null, trainer, null, _ => true, _ => true, withMoments: state is not null), state);

    /// <summary>
    /// Writes one Hugging Face folder from every rank of a parallel job, whatever its layout: tensor-parallel shards
    /// and pipeline stages are put back together, ZeRO-1's moment shards too. A collective: every rank of the job
    /// calls it; rank 0 writes, and nobody returns before the files are complete.
    /// </summary>
    public static void Save(string folder, ParallelTrainer trainer, State? state)
    {
        var mesh = trainer.Mesh;
        // One copy of each element: data-parallel rank 0's (every ZeRO rank's shard for the moments; under expert
        // parallelism each rank's own experts), and of a tensor every tensor-parallel rank holds whole, tensor-parallel
        // rank 0's.
        bool OneTensorParallelCopy(TrainParameter p) => p.IsTensorParallelShard || mesh.TpRank == 0;
        var tensors = Gather(mesh.World, trainer.Trainer, trainer.Zero, p => (mesh.DpRank == 0 || p.IsExpertShard) && OneTensorParallelCopy(p), OneTensorParallelCopy,
            withMoments: state is not null);
        if (mesh.World.Rank == 0) Write(folder, trainer.Trainer.Config, tensors, state);
        mesh.World.Barrier();
    }

    private static void Write(string folder, LlamaConfig config, Dictionary<string, float[]> tensors, State? state)
    {
        HuggingFaceCheckpoint.Save(WeightsOf(config, tensors), folder);
        if (state is null) return;
        string training = Path.Combine(folder, StateFolder);
        Directory.CreateDirectory(training);
        var moments = new Dictionary<string, Safetensors.Entry>(StringComparer.Ordinal);
        foreach (var (name, shape) in FullTensors(config))
        {
            moments["m." + name] = new Safetensors.Entry(DType.F32, shape, tensors["m." + name]);
            moments["v." + name] = new Safetensors.Entry(DType.F32, shape, tensors["v." + name]);
        }
        Safetensors.Write(Path.Combine(training, "optimizer.safetensors"), moments);
        var json = new JsonObject
        {
            ["step"] = state.Step, ["shard"] = state.Shard, ["position"] = state.Position, ["batch"] = state.Batch, ["sequence"] = state.Sequence,
        };
        if (config.Experts > 0) json["capacity_factor"] = config.CapacityFactor;
        string path = Path.Combine(training, "state.json");
        File.WriteAllText(path + ".tmp", json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>Every tensor of the whole model in Hugging Face order, with its full shape.</summary>
    public static IEnumerable<(string Name, int[] Shape)> FullTensors(LlamaConfig c)
    {
        int h = c.Hidden, qd = c.Heads * c.HeadDim, kvd = c.KvHeads * c.HeadDim;
        yield return ("model.embed_tokens.weight", [c.Vocab, h]);
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            yield return (p + "input_layernorm.weight", [h]);
            yield return (p + "self_attn.q_proj.weight", [qd, h]);
            yield return (p + "self_attn.k_proj.weight", [kvd, h]);
            yield return (p + "self_attn.v_proj.weight", [kvd, h]);
            yield return (p + "self_attn.o_proj.weight", [h, qd]);
            yield return (p + "post_attention_layernorm.weight", [h]);
            if (c.Experts == 0)
            {
                yield return (p + "mlp.gate_proj.weight", [c.Ffn, h]);
                yield return (p + "mlp.up_proj.weight", [c.Ffn, h]);
                yield return (p + "mlp.down_proj.weight", [h, c.Ffn]);
                continue;
            }
            yield return (p + "block_sparse_moe.gate.weight", [c.Experts, h]);
            for (int e = 0; e < c.Experts; e++)
            {
                yield return ($"{p}block_sparse_moe.experts.{e}.w1.weight", [c.Ffn, h]);
                yield return ($"{p}block_sparse_moe.experts.{e}.w3.weight", [c.Ffn, h]);
                yield return ($"{p}block_sparse_moe.experts.{e}.w2.weight", [h, c.Ffn]);
            }
        }
        yield return ("model.norm.weight", [h]);
        yield return ("lm_head.weight", [c.Vocab, h]);
    }

    // The whole model's tensors (and "m."/"v." moments) assembled from every rank's parts: each rank writes the
    // elements it contributes into a zeroed full-size copy, and a sum over the world (exact: each element has one
    // non-zero contributor) gives every rank the whole tensor. One tensor at a time, so the peak is one full tensor.
    private static Dictionary<string, float[]> Gather(ProcessGroup? world, LlamaTrainer trainer, ZeroOneOptimizer? zero,
        Func<TrainParameter, bool> contributes, Func<TrainParameter, bool> contributesShard, bool withMoments)
    {
        var local = trainer.Parameters.ToDictionary(p => p.Name);
        var result = new Dictionary<string, float[]>(StringComparer.Ordinal);
        float[] Assemble(int count, Action<float[]> fill)
        {
            var full = new float[count];
            fill(full);
            if (world is null || world.Size == 1) return full;
            using var sum = Tensor.FromFloats(CpuDevice.Instance, full, DType.F32, count);
            world.AllReduce(sum);
            return sum.ToFloats();
        }
        static void Place(float[] full, TrainParameter p, long firstLocal, float[] values)
        {
            for (int i = 0; i < values.Length; i++) full[p.Placement.FullIndex(firstLocal + i)] = values[i];
        }
        foreach (var (name, shape) in FullTensors(trainer.Config))
        {
            int count = shape.Aggregate(1, (a, b) => a * b);
            local.TryGetValue(name, out var mine);
            bool give = mine is not null && contributes(mine);
            result[name] = Assemble(count, full => { if (give) Place(full, mine!, 0, mine!.Value.ToFloats()); });
            if (!withMoments) continue;
            foreach (var (prefix, first) in new[] { ("m.", true), ("v.", false) })
            {
                result[prefix + name] = Assemble(count, full =>
                {
                    if (mine is null) return;
                    if (zero is null)
                    {
                        if (give) Place(full, mine, 0, (first ? mine.M : mine.V)!.ToFloats());
                        return;
                    }
                    // ZeRO-1: every data-parallel rank holds the moments of its shard of the flat buffers.
                    if (!contributesShard(mine)) return;
                    foreach (var (p, start, n) in zero.PartsInShard())
                        if (ReferenceEquals(p, mine))
                            Place(full, p, start - p.Offset, (first ? zero.Moment1 : zero.Moment2).Narrow(0, (int)(start - zero.ShardStart), n).ToFloats());
                });
            }
        }
        return result;
    }

    private static LlamaWeights WeightsOf(LlamaConfig c, Dictionary<string, float[]> t)
    {
        var layers = Enumerable.Range(0, c.Layers).Select(l =>
        {
            string p = $"model.layers.{l}.", moe = p + "block_sparse_moe.";
            float[] Mlp(string name) => c.Experts == 0 ? t[p + name] : [];
            return new LlamaWeights.Layer(t[p + "input_layernorm.weight"], t[p + "self_attn.q_proj.weight"], t[p + "self_attn.k_proj.weight"],
                t[p + "self_attn.v_proj.weight"], t[p + "self_attn.o_proj.weight"], t[p + "post_attention_layernorm.weight"],
                Mlp("mlp.gate_proj.weight"), Mlp("mlp.up_proj.weight"), Mlp("mlp.down_proj.weight"))
            {
                Router = c.Experts == 0 ? [] : t[moe + "gate.weight"],
                Experts = Enumerable.Range(0, c.Experts)
                    .Select(e => new LlamaWeights.Expert(t[$"{moe}experts.{e}.w1.weight"], t[$"{moe}experts.{e}.w3.weight"], t[$"{moe}experts.{e}.w2.weight"])).ToArray(),
            };
        }).ToArray();
        return new LlamaWeights(c with { DType = DType.F32 }, t["model.embed_tokens.weight"], layers, t["model.norm.weight"], t["lm_head.weight"]);
    }

    /// <summary>The state file of the checkpoint in <paramref name="folder"/>.</summary>
    public static string StatePath(string folder) => Path.Combine(folder, StateFolder, "state.json");

    /// <summary>Reads the state of a checkpoint written by <see cref="Save(string, LlamaTrainer, State?)"/>.</summary>
    /// <exception cref="InvalidDataException">state.json is not valid JSON, or a field is missing, of the wrong kind or out of range; the message names the file and the field.</exception>
    public static State ReadState(string folder)
    {
        string path = StatePath(folder);
        if (!File.Exists(path)) throw new FileNotFoundException($"{folder} is not a training checkpoint: {path} is missing (was it written with --checkpoint?)");
        if (new FileInfo(path).Length > 1 << 20) throw new InvalidDataException($"{path}: {new FileInfo(path).Length} bytes is too large for a checkpoint's state");
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message.Split('\n')[0].Trim()})"); }
        if (node is not JsonObject root) throw new InvalidDataException($"{path}: {(node is null ? "null" : "a JSON " + node.GetValueKind())}, not an object of fields");
        long Number(string key, long minimum, long maximum)
        {
            var value = root[key] ?? throw new InvalidDataException($"{path}: field '{key}' is missing");
            string shown = value.ToJsonString();
            if (value.GetValueKind() != JsonValueKind.Number || !value.AsValue().TryGetValue(out long n))
                throw new InvalidDataException($"{path}: field '{key}' is {(shown.Length <= 40 ? shown : shown[..40] + "...")}, not an integer");
            return n >= minimum && n <= maximum ? n : throw new InvalidDataException($"{path}: field '{key}' is {n}, outside {minimum}..{maximum}");
        }
        // Optional: a dense model's checkpoint, and one written before it was kept, has none (no cap).
        double capacity = 0;
        if (root["capacity_factor"] is { } factor)
        {
            string shown = factor.ToJsonString();
            if (factor.GetValueKind() != JsonValueKind.Number || !factor.AsValue().TryGetValue(out capacity) || !double.IsFinite(capacity) || capacity < 0)
                throw new InvalidDataException($"{path}: field 'capacity_factor' is {(shown.Length <= 40 ? shown : shown[..40] + "...")}, not a number of 0 or more");
        }
        return new State((int)Number("step", 0, int.MaxValue), (int)Number("shard", 0, int.MaxValue), Number("position", 0, long.MaxValue),
            (int)Number("batch", 1, int.MaxValue), (int)Number("sequence", 1, int.MaxValue), capacity);
    }

    /// <summary>Loads AdamW's moments of a checkpoint into <paramref name="trainer"/> (whose weights came from the same folder).</summary>
    public static void LoadMoments(string folder, LlamaTrainer trainer) => LoadMoments(folder, trainer, null);

    /// <summary>Loads AdamW's moments of a checkpoint written from any layout into this rank's part (its shard under ZeRO-1).</summary>
    public static void LoadMoments(string folder, ParallelTrainer trainer) => LoadMoments(folder, trainer.Trainer, trainer.Zero);

    private static void LoadMoments(string folder, LlamaTrainer trainer, ZeroOneOptimizer? zero)
    {
        string path = Path.Combine(folder, StateFolder, "optimizer.safetensors");
        if (!File.Exists(path)) throw new FileNotFoundException($"{folder} has no optimizer state ({path})");
        var moments = Safetensors.Read(path);
        foreach (var p in trainer.Parameters)
            foreach (var (prefix, first) in new[] { ("m.", true), ("v.", false) })
            {
                if (!moments.TryGetValue(prefix + p.Name, out var entry)) throw new InvalidDataException($"{path}: moment '{prefix}{p.Name}' is missing");
                if (entry.Values.LongLength != p.Placement.FullCount)
                    throw new InvalidDataException($"{path}: moment '{prefix}{p.Name}' is [{string.Join(", ", entry.Shape)}], the model's tensor has {p.Placement.FullCount} elements");
                // This rank's block of the whole tensor.
                var mine = new float[p.Count];
                for (int i = 0; i < mine.Length; i++) mine[i] = entry.Values[p.Placement.FullIndex(i)];
                if (zero is null)
                {
                    var tensor = (first ? p.M : p.V) ?? throw new InvalidOperationException($"{p.Name} has no moments on this rank");
                    tensor.CopyFromHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(mine.AsSpan()));
                    continue;
                }
                foreach (var (part, start, n) in zero.PartsInShard())
                    if (ReferenceEquals(part, p))
                        (first ? zero.Moment1 : zero.Moment2).Narrow(0, (int)(start - zero.ShardStart), n)
                            .CopyFromHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(mine.AsSpan((int)(start - p.Offset), n)));
            }
    }
}
