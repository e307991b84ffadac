using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Tests.Tensors;

public sealed class TensorTests
{
    private static readonly IDevice Cpu = CpuDevice.Instance;

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    public void FloatsRoundTripThroughEveryFloatDtype(DType dtype)
    {
        float[] values = [0f, 1f, -2.5f, 0.099853516f, 65504f / 2, -1e-3f];
        using var t = Tensor.FromFloats(Cpu, values, dtype, 2, 3);
        var back = t.ToFloats();
        for (int i = 0; i < values.Length; i++) Assert.Equal(FloatBits.RoundTo(dtype, values[i]), back[i]);
        Assert.Equal(values.Length * dtype.SizeOf(), t.Bytes);
    }

    [Fact]
    public void Bf16RoundsToNearestEvenAndKeepsNaN()
    {
        Assert.Equal(0x3F80, FloatBits.ToBF16(1f));
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even mantissa (1.0).
        Assert.Equal(0x3F80, FloatBits.ToBF16(1f + 1f / 256));
        // 1 + 3·2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even): rounds up to even.
        Assert.Equal(0x3F82, FloatBits.ToBF16(1f + 3f / 256));
        Assert.True(float.IsNaN(FloatBits.FromBF16(FloatBits.ToBF16(float.NaN))));
        Assert.Equal(float.PositiveInfinity, FloatBits.FromBF16(FloatBits.ToBF16(float.PositiveInfinity)));
    }

    [Fact]
    public void ViewsShareStorageAndNarrowOffsets()
    {
        using var t = Tensor.FromFloats(Cpu, Enumerable.Range(0, 24).Select(i => (float)i).ToArray(), DType.F32, 2, 3, 4);
        var rows = t.View(6, 4);
        Assert.Equal(t.Pointer, rows.Pointer);
        var middle = rows.Narrow(0, 2, 3);
        Assert.True(middle.IsContiguous);
        Assert.Equal(Enumerable.Range(8, 12).Select(i => (float)i), middle.ToFloats());
        var column = rows.Narrow(1, 1, 2);
        Assert.False(column.IsContiguous);
        Assert.Throws<InvalidOperationException>(() => column.ToFloats());
        var transposed = rows.Transpose(0, 1);
        Assert.Equal([4, 6], transposed.Shape);
        Assert.Equal(6, rows.View(-1, 4).Dim(0));
        Assert.Throws<ArgumentException>(() => t.View(5, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => rows.Narrow(0, 5, 2));
    }

    [Fact]
    public void IntegerTensorsRoundTrip()
    {
        using var ints = Tensor.FromInts(Cpu, [1, -2, int.MaxValue], 3);
        Assert.Equal([1, -2, int.MaxValue], ints.ToInts());
        using var longs = Tensor.FromLongs(Cpu, [1L << 40, -3, long.MinValue], 3);
        Assert.Equal([1L << 40, -3, long.MinValue], longs.ToLongs());
        Assert.Equal(24, longs.Bytes);
        Assert.Throws<InvalidOperationException>(() => ints.ToLongs());
    }

    [Fact]
    public void EmptyTensorsAreValid()
    {
        using var t = Tensor.Empty(Cpu, DType.BF16, 0, 7);
        Assert.Equal(0, t.Count);
        Assert.True(t.IsContiguous);
        Assert.Empty(t.ToFloats());
    }

    [Fact]
    public void SeededRandomIsReproducibleAndSliceable()
    {
        var whole = new float[1000];
        SeededRandom.Uniform(42, whole);
        var again = new float[1000];
        SeededRandom.Uniform(42, again);
        Assert.Equal(whole, again);
        // A shard generated alone (offset) equals the same slice of the whole: ranks can build their part only.
        var shard = new float[100];
        SeededRandom.Uniform(42, shard, offset: 300);
        Assert.Equal(whole.AsSpan(300, 100).ToArray(), shard);
        var other = new float[1000];
        SeededRandom.Uniform(43, other);
        Assert.NotEqual(whole, other);
        Assert.All(whole, v => Assert.InRange(v, -1f, 1f));
        var normal = new float[20000];
        SeededRandom.Normal(7, normal);
        double mean = normal.Average(), std = Math.Sqrt(normal.Select(v => (v - mean) * (v - mean)).Average());
        Assert.InRange(mean, -0.05, 0.05);
        Assert.InRange(std, 0.95, 1.05);
    }

    public static TheoryData<string> Devices => new("cpu", "emu", "cuda");

    private static IDevice Open(string name)
    {
        switch (name)
        {
            case "emu": Hardware.RequireEmu(); return Training.EmuDevices.Shared;
            case "cuda": Hardware.RequireCuda(); return DeviceRegistry.Open("cuda");
            default: return Cpu;
        }
    }

    [Theory]
    [MemberData(nameof(Devices))]
    public void SameSeedGivesIdenticalTensorsOnEveryDevice(string deviceName)
    {
        IDevice device = Open(deviceName);
        foreach (var dtype in new[] { DType.BF16, DType.F32, DType.F16 })
        {
            // What the seed means, computed here on the host: the stream's values rounded to the dtype.
            var uniform = new float[4 * 5];
            SeededRandom.Uniform(9, uniform, -1f, 1f);
            var normal = new float[4 * 5];
            SeededRandom.Normal(9, normal, 0f, 0.02f);
            using var expectedUniform = Tensor.FromFloats(Cpu, uniform, dtype, 4, 5);
            using var expectedNormal = Tensor.FromFloats(Cpu, normal, dtype, 4, 5);

            using var a = Tensor.Uniform(device, dtype, 9, -1f, 1f, 4, 5);
            using var b = Tensor.Normal(device, dtype, 9, 0.02f, 4, 5);
            Assert.Same(device, a.Device);
            Assert.Equal(expectedUniform.ToBytes(), a.ToBytes());
            Assert.Equal(expectedNormal.ToBytes(), b.ToBytes());
            Assert.Equal(uniform.Select(v => FloatBits.RoundTo(dtype, v)), a.ToFloats());

            // A kernel on the device sees the same values: a + a = 2a exactly (doubling is exact). No f16 add kernel.
            if (dtype == DType.F16) continue;
            using var sum = Tensor.Empty(device, dtype, 4, 5);
            device.Kernels.Add(a, a, sum);
            device.Synchronize();
            Assert.Equal(uniform.Select(v => FloatBits.RoundTo(dtype, 2 * FloatBits.RoundTo(dtype, v))), sum.ToFloats());
        }
    }

    [Fact]
    public void DtypeNamesParse()
    {
        foreach (var dtype in Enum.GetValues<DType>()) Assert.Equal(dtype, DTypes.Parse(dtype.Name()));
        Assert.Equal(DType.BF16, DTypes.Parse("bfloat16"));
        Assert.Equal(DType.F16, DTypes.Parse("half"));
        Assert.Throws<ArgumentException>(() => DTypes.Parse("f8"));
    }
}

/// <summary>The CPU device's vectorised bf16 conversions against the scalar definition, over every kind of bit pattern.</summary>
public sealed unsafe class Bf16VectorTests
{
    [Fact]
    public void VectorConversionsAreBitExactWithTheScalarOnes()
    {
        const int count = 100_003; // not a multiple of 16: the scalar tail runs too
        var bits = new uint[count];
        var random = new Random((int)(Hardware.Seed % int.MaxValue));
        for (int i = 0; i < count; i++) bits[i] = (uint)random.NextInt64(0, 1L << 32);
        // Halfway cases, NaNs, infinities, zeros and denormals.
        uint[] special = [0x3F808000, 0x3F818000, 0x7F800000, 0xFF800000, 0x7FC00001, 0xFF800001, 0, 0x80000000, 0x00000001, 0x7F7FFFFF];
        special.CopyTo(bits, 0);
        var floats = Array.ConvertAll(bits, BitConverter.UInt32BitsToSingle);
        var narrowed = new ushort[count];
        fixed (ushort* p = narrowed) NativeParallel.Kernels.Cpu.Bf16Vector.Narrow(floats, p);
        for (int i = 0; i < count; i++) Assert.Equal(FloatBits.ToBF16(floats[i]), narrowed[i]);
        var widened = new float[count];
        fixed (ushort* p = narrowed) NativeParallel.Kernels.Cpu.Bf16Vector.Widen(p, widened);
        for (int i = 0; i < count; i++)
            Assert.Equal(BitConverter.SingleToUInt32Bits(FloatBits.FromBF16(narrowed[i])), BitConverter.SingleToUInt32Bits(widened[i]));
    }
}

/// <summary>The CPU device's vectorised f16 conversions against the runtime's Half, over every half and many floats.</summary>
public sealed unsafe class F16VectorTests
{
    [Fact]
    public void WideningIsExactForEveryHalf()
    {
        var halves = Enumerable.Range(0, 65536).Select(i => (ushort)i).Append((ushort)1).ToArray(); // odd length: the tail too
        var widened = new float[halves.Length];
        fixed (ushort* p = halves) NativeParallel.Kernels.Cpu.F16Vector.Widen(p, widened);
        for (int i = 0; i < halves.Length; i++)
        {
            float expected = FloatBits.FromF16(halves[i]);
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(widened[i]), $"0x{halves[i]:x4} should widen to NaN");
            else Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(widened[i]));
        }
    }

    [Fact]
    public void NarrowingRoundsToNearestEvenLikeTheRuntime()
    {
        var random = new Random((int)(Hardware.Seed % int.MaxValue));
        var floats = new List<float>
        {
            0f, -0f, 1f, 65504f, 65520f, 65519.99f, 1e-8f, 5.96e-8f, 2.98e-8f, 6.1e-5f, 6.09e-5f, float.PositiveInfinity,
            float.NegativeInfinity, float.NaN, float.MaxValue, float.Epsilon, 1f + 1f / 2048, 1f + 3f / 2048,
        };
        for (int i = 0; i < 200_000; i++) floats.Add(BitConverter.UInt32BitsToSingle((uint)random.NextInt64(0, 1L << 32)));
        for (int i = 0; i < 100_000; i++) floats.Add((float)((random.NextDouble() - 0.5) * Math.Pow(2, random.Next(-30, 20))));
        var source = floats.ToArray();
        var narrowed = new ushort[source.Length];
        fixed (ushort* p = narrowed) NativeParallel.Kernels.Cpu.F16Vector.Narrow(source, p);
        for (int i = 0; i < source.Length; i++)
        {
            if (float.IsNaN(source[i])) Assert.True(float.IsNaN(FloatBits.FromF16(narrowed[i])), $"NaN 0x{BitConverter.SingleToUInt32Bits(source[i]):x8} must stay NaN");
            else Assert.True(FloatBits.ToF16(source[i]) == narrowed[i], $"{source[i]:R} (0x{BitConverter.SingleToUInt32Bits(source[i]):x8}): expected 0x{FloatBits.ToF16(source[i]):x4}, got 0x{narrowed[i]:x4}");
        }
    }
}
