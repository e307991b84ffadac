using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using NativeParallel.Models;

namespace NativeParallel.Tests.Models;

/// <summary>
/// Each kind of broken field in a Hugging Face folder is refused before any weight is read, with an
/// InvalidDataException naming the file and the tensor or field: safetensors headers, shapes against config.json,
/// and config.json itself.
/// </summary>
public sealed class ModelFileValidationTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("np-model-validation-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static readonly LlamaConfig Tiny = new() { Vocab = 16, Hidden = 8, Layers = 1, Heads = 2, KvHeads = 1, Ffn = 8, MaxSequence = 8 };

    private string Model => Path.Combine(_folder, "model.safetensors");
    private string Config => Path.Combine(_folder, "config.json");

    public ModelFileValidationTests() => HuggingFaceCheckpoint.Save(new LlamaWeights(Tiny, 3), _folder);

    // The saved file's header as JSON, edited, and written back in front of the same data.
    private void EditHeader(Action<JsonObject> edit)
    {
        byte[] bytes = File.ReadAllBytes(Model);
        int length = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = JsonNode.Parse(bytes.AsSpan(8, length))!.AsObject();
        edit(header);
        byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
        var result = new byte[8 + json.Length + bytes.Length - 8 - length];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)json.Length);
        json.CopyTo(result, 8);
        bytes.AsSpan(8 + length).CopyTo(result.AsSpan(8 + json.Length));
        File.WriteAllBytes(Model, result);
    }

    private void EditConfig(Action<JsonObject> edit)
    {
        var config = JsonNode.Parse(File.ReadAllText(Config))!.AsObject();
        edit(config);
        File.WriteAllText(Config, config.ToJsonString());
    }

    private string LoadFails()
    {
        var e = Assert.Throws<InvalidDataException>(() => HuggingFaceCheckpoint.Load(_folder, 8));
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    private const string Norm = "model.norm.weight";

    public static TheoryData<string, string> HeaderBreaks => new()
    {
        { "dtype-kind", "tensor 'model.norm.weight' dtype is a JSON Number" },
        { "dtype-name", "tensor 'model.norm.weight' has dtype I64" },
        { "shape-negative", "tensor 'model.norm.weight' shape dimension 0 is -8" },
        { "shape-fraction", "tensor 'model.norm.weight' shape dimension 0 is 8.5" },
        { "shape-huge", "tensor 'model.norm.weight' byte range" },
        { "offsets-outside", "tensor 'model.norm.weight' data_offsets" },
        { "offsets-huge", "tensor 'model.norm.weight' data_offsets" },
        { "offsets-one", "tensor 'model.norm.weight' data_offsets must be an array [begin, end]" },
        { "offsets-overlap", "overlap tensor" },
        { "missing-field", "tensor 'model.norm.weight' has no 'shape'" },
        { "entry-kind", "tensor 'model.norm.weight' is a JSON String" },
    };

    [Theory]
    [MemberData(nameof(HeaderBreaks))]
    public void ABrokenHeaderFieldNamesTheFileAndTheTensor(string kind, string expected)
    {
        EditHeader(h =>
        {
            var norm = h[Norm]!.AsObject();
            long begin = norm["data_offsets"]![0]!.GetValue<long>();
            switch (kind)
            {
                case "dtype-kind": norm["dtype"] = 5; break;
                case "dtype-name": norm["dtype"] = "I64"; break;
                case "shape-negative": norm["shape"] = new JsonArray(-8); break;
                case "shape-fraction": norm["shape"] = new JsonArray(8.5); break;
                case "shape-huge": norm["shape"] = new JsonArray(int.MaxValue, int.MaxValue, int.MaxValue); break;
                case "offsets-outside": norm["data_offsets"] = new JsonArray(begin, begin + 1_000_000); break;
                case "offsets-huge": norm["data_offsets"] = new JsonArray(long.MaxValue - 4, long.MaxValue); break;
                case "offsets-one": norm["data_offsets"] = new JsonArray(begin); break;
                // Norm's 32 bytes moved onto the start of another tensor: every range still inside the file.
                case "offsets-overlap": norm["data_offsets"] = new JsonArray(0, 32); break;
                case "missing-field": norm.Remove("shape"); break;
                case "entry-kind": h[Norm] = "F32"; break;
            }
        });
        string message = LoadFails();
        Assert.Contains(Model, message);
        Assert.Contains(expected, message);
    }

    [Fact]
    public void AHeaderLengthPastTheFileIsRefusedBeforeItIsAllocated()
    {
        byte[] bytes = File.ReadAllBytes(Model);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, ulong.MaxValue);
        File.WriteAllBytes(Model, bytes);
        Assert.Contains("header length 18446744073709551615 does not fit the file", LoadFails());
    }

    [Fact]
    public void AHeaderThatIsNotJsonNamesTheFile()
    {
        byte[] bytes = File.ReadAllBytes(Model);
        bytes[8] = (byte)'[';
        File.WriteAllBytes(Model, bytes);
        Assert.Contains($"{Model}: the safetensors header is not valid JSON", LoadFails());
    }

    [Fact]
    public void AShapeThatDisagreesWithConfigNamesTheTensorAndBothShapes()
    {
        // A consistent file (the shape matches its bytes) whose norm is half what config.json says.
        EditHeader(h =>
        {
            var norm = h[Norm]!.AsObject();
            long begin = norm["data_offsets"]![0]!.GetValue<long>();
            norm["shape"] = new JsonArray(4);
            norm["data_offsets"] = new JsonArray(begin, begin + 16);
        });
        Assert.Contains($"{Model}: tensor 'model.norm.weight' is [4], config.json implies [8]", LoadFails());
    }

    [Fact]
    public void ATensorTheConfigNeedsIsMissing()
    {
        EditHeader(h => h.Remove("model.layers.0.mlp.up_proj.weight"));
        Assert.Contains("tensor 'model.layers.0.mlp.up_proj.weight' is missing", LoadFails());
    }

    [Fact]
    public void MoreLayersThanTheFileHoldsFailsAtTheFirstMissingTensorNotAnAllocation()
    {
        // 2^31-1 layers: an array of that many layers would not fit; the header check stops at layer 1.
        EditConfig(c => c["num_hidden_layers"] = int.MaxValue);
        Assert.Contains("tensor 'model.layers.1.input_layernorm.weight' is missing", LoadFails());
    }

    public static TheoryData<string, JsonNode?, string> ConfigBreaks => new()
    {
        { "hidden_size", null, "'hidden_size' is missing" },
        { "hidden_size", "wide", "'hidden_size' is \"wide\", not an integer" },
        { "hidden_size", 8.5, "'hidden_size' is 8.5, not an integer" },
        { "num_attention_heads", 3, "'hidden_size' (8) is not a multiple of 'num_attention_heads' (3)" },
        { "num_attention_heads", 0, "'num_attention_heads' is 0, must be at least 1" },
        { "num_key_value_heads", 3, "'num_attention_heads' (2) is not a multiple of 'num_key_value_heads' (3)" },
        { "vocab_size", -1, "'vocab_size' is -1, must be at least 1" },
        { "rms_norm_eps", "small", "'rms_norm_eps' is \"small\", not a number" },
        { "rope_theta", 0, "'rope_theta' is 0, must be positive" },
        { "torch_dtype", "int8", "'torch_dtype' is \"int8\"" },
        { "architectures", new JsonArray("GPT2LMHeadModel"), "'architectures' is [\"GPT2LMHeadModel\"]; supported: LlamaForCausalLM" },
        { "num_local_experts", -2, "'num_local_experts' is -2, must be at least 0" },
    };

    [Theory]
    [MemberData(nameof(ConfigBreaks))]
    public void ABrokenConfigFieldNamesTheFileAndTheField(string field, JsonNode? value, string expected)
    {
        EditConfig(c =>
        {
            if (value is null) c.Remove(field);
            else c[field] = value.DeepClone();
        });
        var e = Assert.Throws<InvalidDataException>(() => HuggingFaceCheckpoint.LoadConfig(_folder));
        Assert.StartsWith($"{Config}: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void AConfigThatIsNotAnObjectNamesTheFile()
    {
        File.WriteAllText(Config, "[1, 2]");
        var e = Assert.Throws<InvalidDataException>(() => HuggingFaceCheckpoint.LoadConfig(_folder));
        Assert.Equal($"{Config}: a JSON Array, not an object of fields", e.Message);
    }

    [Fact]
    public void TheUntouchedFolderLoads()
    {
        // The edits above are what fails: the folder as saved is valid.
        var weights = HuggingFaceCheckpoint.Load(_folder, 8);
        Assert.Equal(Tiny.Vocab * Tiny.Hidden, weights.Embedding.Length);
    }
}
