using System.Text;
using NativeParallel.Models;
using NativeParallel.Training;

namespace NativeParallel.Tests.Models;

/// <summary>
/// Thousands of seeded mutations (byte flips, truncations, appended bytes, digits replaced by huge or negative
/// numbers) of a small valid model folder, token shard and checkpoint state, each fed to its loader. A loader
/// either succeeds or throws InvalidDataException; anything else (an IndexOutOfRange, an OverflowException, an
/// allocation sized by an unchecked length, a call that does not return) fails the test with the seed and mutation.
/// </summary>
public sealed class LoaderFuzzTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("np-loader-fuzz-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    // Hidden 8, one layer: a 3 KB safetensors file whose header is a third of it, so most mutations hit the header.
    private static readonly LlamaConfig Tiny = new() { Vocab = 16, Hidden = 8, Layers = 1, Heads = 2, KvHeads = 1, Ffn = 8, MaxSequence = 8 };

    // A loader may allocate its input a few times over (raw bytes, decoded floats, parsed JSON); more than this per
    // call means a length from the file was trusted.
    private const long AllocationSlack = 1 << 20;
    private const int AllocationFactor = 16;

    private static readonly string[] HugeNumbers =
        ["18446744073709551615", "9223372036854775807", "-9223372036854775808", "2147483648", "-1", "4294967296", "1e308", "-0", "0"];

    /// <summary>One mutation of <paramref name="valid"/>, described for the failure message.</summary>
    private static (byte[] Bytes, string What) Mutate(byte[] valid, Random random, int focus)
    {
        var bytes = (byte[])valid.Clone();
        // Half the mutations land in the first `focus` bytes (a header), half anywhere.
        int Position(int length) => random.Next(2) == 0 ? random.Next(Math.Min(focus, length)) : random.Next(length);
        switch (random.Next(6))
        {
            case 0:
            {
                int flips = 1 + random.Next(4);
                for (int i = 0; i < flips; i++) bytes[Position(bytes.Length)] ^= (byte)(1 << random.Next(8));
                return (bytes, $"{flips} bit flips");
            }
            case 1:
            {
                int at = Position(bytes.Length);
                bytes[at] = (byte)random.Next(256);
                return (bytes, $"byte {at} set");
            }
            case 2:
            {
                int length = Position(bytes.Length);
                return (bytes[..length], $"truncated to {length}");
            }
            case 3:
            {
                var tail = new byte[1 + random.Next(64)];
                random.NextBytes(tail);
                return ([.. bytes, .. tail], $"{tail.Length} bytes appended");
            }
            case 4:
            {
                // A run of digits replaced by a huge or negative number: lengths, counts, shapes, offsets, fields.
                string text = Encoding.Latin1.GetString(bytes);
                var digits = System.Text.RegularExpressions.Regex.Matches(text[..Math.Min(focus, text.Length)], "-?[0-9]+");
                if (digits.Count == 0) goto case 0;
                var match = digits[random.Next(digits.Count)];
                string huge = HugeNumbers[random.Next(HugeNumbers.Length)];
                return (Encoding.Latin1.GetBytes(text[..match.Index] + huge + text[(match.Index + match.Length)..]), $"'{match.Value}' at {match.Index} replaced by {huge}");
            }
            default:
            {
                // A 4- or 8-byte little-endian field overwritten with an extreme value (binary headers).
                int width = random.Next(2) == 0 ? 4 : 8;
                int at = Math.Min(Position(bytes.Length), Math.Max(0, bytes.Length - width));
                ulong value = random.Next(3) switch { 0 => ulong.MaxValue, 1 => 1UL << (8 * width - 1), _ => (ulong)random.NextInt64() };
                for (int i = 0; i < width && at + i < bytes.Length; i++) bytes[at + i] = (byte)(value >> (8 * i));
                return (bytes, $"{width}-byte field at {at} set to {value:X}");
            }
        }
    }

    /// <summary>Runs <paramref name="load"/> on its own thread within a deadline, measuring what that thread allocates.</summary>
    private static void Probe(Action load, long inputBytes, string what)
    {
        long allocated = 0;
        Exception? thrown = null;
        var thread = new Thread(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try { load(); }
            catch (Exception e) { thrown = e; }
            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }) { IsBackground = true };
        thread.Start();
        // Generous for a 2-core machine under load; a loader that loops on its input never returns.
        if (!thread.Join(TimeSpan.FromSeconds(10))) Assert.Fail($"{what}: the loader did not return within 10 s");
        if (thrown is not null and not InvalidDataException)
            Assert.Fail($"{what}: {thrown.GetType().Name}: {thrown.Message}\n{thrown.StackTrace}");
        if (thrown is InvalidDataException { Message: var message } && message.Contains('\n'))
            Assert.Fail($"{what}: a message of more than one line: {message}");
        Assert.True(allocated <= AllocationFactor * inputBytes + AllocationSlack,
            $"{what}: allocated {allocated} bytes for {inputBytes} bytes of input");
    }

    private static void Fuzz(string name, byte[] valid, int focus, int count, Func<byte[], (Action Load, long Bytes)> prepare)
    {
        ulong seed = Hardware.Seed;
        // A stable hash of the name (string.GetHashCode differs per process), so each loader has its own sequence.
        var random = new Random((int)(seed ^ (seed >> 32)) ^ name.Aggregate(17, (h, c) => h * 31 + c));
        for (int i = 0; i < count; i++)
        {
            var (bytes, what) = Mutate(valid, random, focus);
            var (load, inputBytes) = prepare(bytes);
            Probe(load, inputBytes, $"{name} mutation {i} ({what}); reproduce with NATIVEPARALLEL_TEST_SEED={seed}");
        }
    }

    [Fact]
    public void MutatedSafetensorsAndConfigLoadOrFailCleanly()
    {
        string model = Path.Combine(_folder, "model");
        HuggingFaceCheckpoint.Save(new LlamaWeights(Tiny, 7), model);
        string file = Path.Combine(model, "model.safetensors"), config = Path.Combine(model, "config.json");
        byte[] validModel = File.ReadAllBytes(file), validConfig = File.ReadAllBytes(config);
        int headerEnd = 8 + (int)BitConverter.ToUInt64(validModel);
        // The valid folder loads: the mutations are what fails.
        HuggingFaceCheckpoint.Load(model, 8);
        Fuzz("model.safetensors", validModel, headerEnd, 1500, bytes =>
        {
            File.WriteAllBytes(file, bytes);
            return (() => HuggingFaceCheckpoint.Load(model, 8), bytes.Length + validConfig.Length);
        });
        File.WriteAllBytes(file, validModel);
        Fuzz("config.json", validConfig, validConfig.Length, 700, bytes =>
        {
            File.WriteAllBytes(config, bytes);
            return (() => HuggingFaceCheckpoint.Load(model, 8), bytes.Length + validModel.Length);
        });
    }

    [Fact]
    public void MutatedTokenShardsLoadOrFailCleanly()
    {
        string path = Path.Combine(_folder, "shard.bin");
        TokenShard.Write(path, Enumerable.Range(0, 64).Select(i => i % 16).ToArray());
        byte[] valid = File.ReadAllBytes(path);
        Fuzz("shard.bin", valid, 16, 1000, bytes =>
        {
            File.WriteAllBytes(path, bytes);
            return (() =>
            {
                var loader = new TokenLoader([path], 2, 8);
                loader.CheckVocabulary(Tiny.Vocab);
            }, bytes.Length);
        });
    }

    [Fact]
    public void MutatedCheckpointStatesReadOrFailCleanly()
    {
        string checkpoint = Path.Combine(_folder, "checkpoint");
        Directory.CreateDirectory(Path.Combine(checkpoint, "training"));
        string path = TrainingCheckpoint.StatePath(checkpoint);
        byte[] valid = Encoding.UTF8.GetBytes("{\"step\": 20, \"shard\": 0, \"position\": 160, \"batch\": 1, \"sequence\": 8}");
        File.WriteAllBytes(path, valid);
        TrainingCheckpoint.ReadState(checkpoint);
        Fuzz("state.json", valid, valid.Length, 500, bytes =>
        {
            File.WriteAllBytes(path, bytes);
            return (() => TrainingCheckpoint.ReadState(checkpoint), bytes.Length);
        });
    }
}
