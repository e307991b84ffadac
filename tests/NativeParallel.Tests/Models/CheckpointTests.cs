using NativeParallel.Devices;
using NativeParallel.Models;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Models;

/// <summary>Hugging Face folders (config.json + safetensors) written from seeded weights and read back.</summary>
public sealed class CheckpointTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), $"np-checkpoint-{Guid.NewGuid():N}");

    [Theory]
    [InlineData(DType.F32, 0)]
    [InlineData(DType.BF16, 0)]
    [InlineData(DType.F32, 4)]
    public void ACheckpointLoadsBackToTheSameModel(DType dtype, int experts)
    {
        var config = new LlamaConfig { Vocab = 50, Hidden = 32, Layers = 2, Heads = 4, KvHeads = 2, Ffn = 40, MaxSequence = 16, DType = dtype, Experts = experts };
        var original = new LlamaWeights(config, 21);
        HuggingFaceCheckpoint.Save(original, _folder);
        var loaded = HuggingFaceCheckpoint.Load(_folder, maxSequence: 16);
        Assert.Equal(config with { RopeTheta = loaded.Config.RopeTheta, NormEps = loaded.Config.NormEps }, loaded.Config);
        Assert.Equal(original.Embedding, loaded.Embedding);
        Assert.Equal(original.Layers[1].Q, loaded.Layers[1].Q);
        if (experts > 0) Assert.Equal(original.Layers[1].Experts[3].Down, loaded.Layers[1].Experts[3].Down);
        int[] prompt = [1, 2, 3, 4, 5];
        using var a = new LlamaModel(CpuDevice.Instance, original);
        using var b = new LlamaModel(CpuDevice.Instance, loaded);
        using var la = a.Forward(prompt);
        using var lb = b.Forward(prompt);
        Assert.Equal(la.ToFloats(), lb.ToFloats());
    }

    [Fact]
    public void BrokenCheckpointsSayWhatIsWrong()
    {
        var config = new LlamaConfig { Vocab = 50, Hidden = 32, Layers = 1, Heads = 4, KvHeads = 2, Ffn = 40 };
        HuggingFaceCheckpoint.Save(new LlamaWeights(config, 1), _folder);
        string file = Path.Combine(_folder, "model.safetensors");
        var tensors = Safetensors.Read(file);
        tensors.Remove("model.layers.0.mlp.up_proj.weight");
        Safetensors.Write(file, tensors);
        Assert.Contains("'model.layers.0.mlp.up_proj.weight' is missing", Assert.Throws<InvalidDataException>(() => HuggingFaceCheckpoint.Load(_folder)).Message);
        File.WriteAllBytes(file, [1, 2, 3]);
        Assert.Contains("shorter than the 8-byte header", Assert.Throws<InvalidDataException>(() => HuggingFaceCheckpoint.Load(_folder)).Message);
        File.Delete(Path.Combine(_folder, "config.json"));
        Assert.Contains("no config.json", Assert.Throws<FileNotFoundException>(() => HuggingFaceCheckpoint.Load(_folder)).Message);
    }

    public void Dispose()
    {
        if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
    }
}
