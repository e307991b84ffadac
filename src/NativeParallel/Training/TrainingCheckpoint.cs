using System.Text.Json;
using System.Text.Json.Nodes;
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
    public sealed record State(int Step, int Shard, long Position, int Batch, int Sequence);

    private const string StateFolder = "training";

    /// <summary>Writes the weights, the moments and <paramref name="state"/> under <paramref name="folder"/>.</summary>
    public static void Save(string folder, LlamaTrainer trainer, State? state)
    {
        HuggingFaceCheckpoint.Save(trainer.ToWeights(), folder);
        if (state is null) return;
        string training = Path.Combine(folder, StateFolder);
        Directory.CreateDirectory(training);
        var moments = new Dictionary<string, Safetensors.Entry>(StringComparer.Ordinal);
        foreach (var p in trainer.Parameters)
        {
            if (p.M is null || p.V is null) throw new NotSupportedException("checkpoints of ZeRO-1 runs (moments sharded over ranks) are not supported yet; use --save");
            moments["m." + p.Name] = new Safetensors.Entry(DType.F32, p.Value.Shape, p.M.ToFloats());
            moments["v." + p.Name] = new Safetensors.Entry(DType.F32, p.Value.Shape, p.V.ToFloats());
        }
        Safetensors.Write(Path.Combine(training, "optimizer.safetensors"), moments);
        var json = new JsonObject
        {
            ["step"] = state.Step, ["shard"] = state.Shard, ["position"] = state.Position, ["batch"] = state.Batch, ["sequence"] = state.Sequence,
        };
        string path = Path.Combine(training, "state.json");
        File.WriteAllText(path + ".tmp", json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.Move(path + ".tmp", path, overwrite: true);
    }

    /// <summary>Reads the state of a checkpoint written by <see cref="Save"/>.</summary>
    public static State ReadState(string folder)
    {
        string path = Path.Combine(folder, StateFolder, "state.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"{folder} is not a training checkpoint: {path} is missing (was it written with --checkpoint?)");
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})"); }
        int Int(string key) => node?[key]?.GetValue<int>() ?? throw new InvalidDataException($"{path}: field '{key}' is missing");
        long position = node?["position"]?.GetValue<long>() ?? throw new InvalidDataException($"{path}: field 'position' is missing");
        return new State(Int("step"), Int("shard"), position, Int("batch"), Int("sequence"));
    }

    /// <summary>Loads AdamW's moments of a checkpoint into <paramref name="trainer"/> (whose weights came from the same folder).</summary>
    public static void LoadMoments(string folder, LlamaTrainer trainer)
    {
        string path = Path.Combine(folder, StateFolder, "optimizer.safetensors");
        if (!File.Exists(path)) throw new FileNotFoundException($"{folder} has no optimizer state ({path})");
        var moments = Safetensors.Read(path);
        foreach (var p in trainer.Parameters)
            foreach (var (prefix, tensor) in new[] { ("m.", p.M), ("v.", p.V) })
            {
                if (tensor is null) throw new NotSupportedException("resuming a ZeRO-1 run (moments sharded over ranks) is not supported yet");
                if (!moments.TryGetValue(prefix + p.Name, out var entry)) throw new InvalidDataException($"{path}: moment '{prefix}{p.Name}' is missing");
                if (!entry.Shape.SequenceEqual(p.Value.Shape))
                    throw new InvalidDataException($"{path}: moment '{prefix}{p.Name}' is [{string.Join(", ", entry.Shape)}], the model's tensor is [{string.Join(", ", p.Value.Shape)}]");
                tensor.CopyFromHost(System.Runtime.InteropServices.MemoryMarshal.AsBytes(entry.Values.AsSpan()));
            }
    }
}
