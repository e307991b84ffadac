using System.Text.Json.Nodes;
using NativeParallel.Training;

namespace NativeParallel.Tests.Training;

/// <summary>
/// What training reads besides the weights is checked before use, naming the file: every shard's tokens against the
/// vocabulary (not only the first shard's), and each field of a checkpoint's state.json.
/// </summary>
public sealed class TrainingInputValidationTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("np-training-validation-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string Shard(string name, params int[] tokens)
    {
        string path = Path.Combine(_folder, name);
        TokenShard.Write(path, tokens);
        return path;
    }

    [Fact]
    public void ATokenOutsideTheVocabularyInALaterShardNamesThatShardAndTheToken()
    {
        string good = Shard("a.bin", Enumerable.Range(0, 20).ToArray());
        var tokens = Enumerable.Range(0, 20).ToArray();
        tokens[13] = 60000;
        string bad = Shard("b.bin", tokens);
        var loader = new TokenLoader([good, bad], 1, 8);
        loader.CheckVocabulary(100);
        Span<int> inputs = stackalloc int[8], targets = stackalloc int[8];
        loader.Next(inputs, targets);
        // The second batch leaves no room in a.bin, so the loader moves on to b.bin, which is checked as it is read.
        var e = Assert.Throws<InvalidDataException>(() => { Span<int> i = stackalloc int[8], t = stackalloc int[8]; loader.Next(i, t); });
        Assert.Equal($"{bad}: the token at index 13 is 60000, outside the model's vocabulary of 100 (give --vocab or a model with a larger vocabulary)", e.Message);
    }

    [Fact]
    public void TheFirstShardIsCheckedWhenTheVocabularyIsGiven()
    {
        string path = Shard("c.bin", 1, 2, 3, 99, 4, 5, 6, 7, 8, 9);
        var loader = new TokenLoader([path], 1, 8);
        var e = Assert.Throws<InvalidDataException>(() => loader.CheckVocabulary(50));
        Assert.StartsWith($"{path}: the token at index 3 is 99", e.Message);
        loader.CheckVocabulary(100);
    }

    private static readonly JsonObject ValidState = new() { ["step"] = 4, ["shard"] = 0, ["position"] = 32, ["batch"] = 1, ["sequence"] = 8 };

    private string WriteState(string text)
    {
        string checkpoint = Path.Combine(_folder, $"ck-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path.Combine(checkpoint, "training"));
        File.WriteAllText(TrainingCheckpoint.StatePath(checkpoint), text);
        return checkpoint;
    }

    [Fact]
    public void AValidStateReadsBack()
    {
        var state = TrainingCheckpoint.ReadState(WriteState(ValidState.ToJsonString()));
        Assert.Equal(new TrainingCheckpoint.State(4, 0, 32, 1, 8), state);
        // A mixture of experts' capacity factor is optional (none: no cap) and read back when present.
        var capped = ValidState.DeepClone().AsObject();
        capped["capacity_factor"] = 1.25;
        Assert.Equal(new TrainingCheckpoint.State(4, 0, 32, 1, 8, 1.25), TrainingCheckpoint.ReadState(WriteState(capped.ToJsonString())));
    }

    [Theory]
    [InlineData("step", "\"four\"", "field 'step' is \"four\", not an integer")]
    [InlineData("step", "-1", "field 'step' is -1, outside 0..")]
    [InlineData("position", "1.5", "field 'position' is 1.5, not an integer")]
    [InlineData("position", "-8", "field 'position' is -8, outside 0..")]
    [InlineData("shard", "99999999999", "field 'shard' is 99999999999, outside 0..2147483647")]
    [InlineData("batch", "0", "field 'batch' is 0, outside 1..")]
    [InlineData("sequence", null, "field 'sequence' is missing")]
    [InlineData("capacity_factor", "\"none\"", "field 'capacity_factor' is \"none\", not a number of 0 or more")]
    [InlineData("capacity_factor", "-0.5", "field 'capacity_factor' is -0.5, not a number of 0 or more")]
    public void ABrokenStateFieldNamesTheFileAndTheField(string field, string? value, string expected)
    {
        var state = ValidState.DeepClone().AsObject();
        if (value is null) state.Remove(field);
        else state[field] = JsonNode.Parse(value);
        string checkpoint = WriteState(state.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.ReadState(checkpoint));
        Assert.StartsWith($"{TrainingCheckpoint.StatePath(checkpoint)}: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData("[4]", "a JSON Array, not an object of fields")]
    [InlineData("null", "null, not an object of fields")]
    [InlineData("{\"step\": ", "not valid JSON")]
    public void AStateThatIsNotAnObjectNamesTheFile(string text, string expected)
    {
        string checkpoint = WriteState(text);
        var e = Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.ReadState(checkpoint));
        Assert.StartsWith($"{TrainingCheckpoint.StatePath(checkpoint)}: {expected}", e.Message);
    }
}
