using System.Runtime.Intrinsics;
using NativeParallel.Kernels.Cpu;

namespace NativeParallel.Tests.Kernels;

/// <summary>The CPU kernels' vectorised exp (<see cref="VectorExp"/>) against Math.Exp, on every width this machine runs.</summary>
public sealed class VectorExpTests
{
    private static IEnumerable<float> Inputs()
    {
        var random = new Random(12345);
        for (int i = 0; i < 200_000; i++) yield return (float)(random.NextDouble() * 220 - 120); // [-120, 100]
        for (int i = 0; i < 20_000; i++) yield return (float)(random.NextDouble() * 2 - 1);     // around 0
        foreach (float x in new[] { 0f, -0f, 1e-30f, -1e-30f, 88.72f, 88.73f, 89f, 1000f, -87.33f, -87.34f, -103.97f, -104f, -104.1f, -1e30f,
                     float.MaxValue, float.MinValue, float.Epsilon, 0.34657359f, -0.34657359f })
            yield return x;
    }

    [Fact]
    public void MatchesMathExpWithinTwoUlp()
    {
        var xs = Inputs().ToArray();
        foreach (var (name, exp) in Widths())
        {
            float[] ys = exp(xs);
            for (int i = 0; i < xs.Length; i++)
            {
                double expected = Math.Exp(xs[i]);
                float y = ys[i];
                Assert.False(float.IsNaN(y), $"{name}: exp({xs[i]:R}) is NaN");
                if (expected > float.MaxValue) Assert.True(float.IsPositiveInfinity(y), $"{name}: exp({xs[i]:R}) = {y:R}, expected +inf");
                else if (expected < 1.1754944e-38) // below the normal range: an absolute bound, a few subnormal steps
                    Assert.True(Math.Abs(y - expected) <= 4 * (double)float.Epsilon, $"{name}: exp({xs[i]:R}) = {y:R}, expected {expected:R}");
                else
                    Assert.True(Math.Abs(y - expected) <= 2.5e-7 * expected, $"{name}: exp({xs[i]:R}) = {y:R}, expected {expected:R} (rel {Math.Abs(y - expected) / expected:E2})");
            }
        }
    }

    [Fact]
    public void SpecialValues()
    {
        float[] xs = [float.NegativeInfinity, float.PositiveInfinity, float.NaN, -200f, 200f];
        foreach (var (name, exp) in Widths())
        {
            float[] ys = exp(xs);
            Assert.True(ys[0] == 0f, $"{name}: exp(-inf) = {ys[0]}");
            Assert.True(float.IsPositiveInfinity(ys[1]), $"{name}: exp(+inf) = {ys[1]}");
            Assert.True(float.IsNaN(ys[2]), $"{name}: exp(NaN) = {ys[2]}");
            Assert.True(ys[3] == 0f, $"{name}: exp(-200) = {ys[3]}");
            Assert.True(float.IsPositiveInfinity(ys[4]), $"{name}: exp(200) = {ys[4]}");
        }
    }

    /// <summary>The cross-entropy's cheaper exp, 2^t for t ≤ 0: ≤ 4e-7 relative in the normal range, tiny and never NaN below it.</summary>
    [Fact]
    public void Exp2NonPositiveMatchesMathPow()
    {
        var random = new Random(54321);
        var ts = Enumerable.Range(0, 100_000).Select(_ => (float)(-random.NextDouble() * 170))
            .Concat(Enumerable.Range(0, 20_000).Select(_ => (float)(-random.NextDouble())))
            .Concat(new[] { 0f, -0f, -0.5f, -1.5f, -125.9f, -126f, -126.1f, -149f, -150f, -151f, -1e30f, float.NegativeInfinity }).ToArray();
        foreach (var (name, exp2) in Exp2Widths())
        {
            float[] ys = exp2(ts);
            for (int i = 0; i < ts.Length; i++)
            {
                double expected = Math.Pow(2, ts[i]);
                float y = ys[i];
                Assert.False(float.IsNaN(y), $"{name}: 2^{ts[i]:R} is NaN");
                if (ts[i] <= -126f) Assert.True(y >= 0f && y <= 1.1754944e-38f * (1 + 4e-7), $"{name}: 2^{ts[i]:R} = {y:R}");
                else Assert.True(Math.Abs(y - expected) <= 4e-7 * expected, $"{name}: 2^{ts[i]:R} = {y:R}, expected {expected:R} (rel {Math.Abs(y - expected) / expected:E2})");
            }
            Assert.True(float.IsNaN(exp2([float.NaN])[0]), $"{name}: 2^NaN is not NaN");
        }
    }

    /// <summary>SwiGLU's gate: within 1e-6 of 1 / (1 + e^−x) over the whole float range (and relatively close where |x| < 20), NaN kept.</summary>
    [Fact]
    public void SigmoidMatchesTheExactValue()
    {
        var xs = SigmoidInputs(97531);
        foreach (var (name, sigmoid) in SigmoidWidths())
        {
            float[] ys = sigmoid(xs);
            for (int i = 0; i < xs.Length; i++)
            {
                double expected = 1.0 / (1.0 + Math.Exp(-(double)xs[i]));
                Assert.True(Math.Abs(ys[i] - expected) <= 1e-6 && ys[i] >= 0f && ys[i] <= 1f,
                    $"{name}: sigmoid({xs[i]:R}) = {ys[i]:R}, expected {expected:R}");
                // Relative: the polynomial's 4e-7, and the rounding of −x·log2 e, which grows with |x| (6e-8·|x·log2 e|).
                if (Math.Abs(xs[i]) < 20) Assert.True(Math.Abs(ys[i] - expected) <= (4e-7 + 1e-7 * Math.Abs(xs[i])) * expected,
                    $"{name}: sigmoid({xs[i]:R}) = {ys[i]:R}, expected {expected:R} (relative {Math.Abs(ys[i] - expected) / expected:E2})");
            }
            Assert.True(float.IsNaN(sigmoid([float.NaN])[0]), $"{name}: sigmoid(NaN) is not NaN");
        }
    }

    /// <summary>SwiGLU's bf16 gate: within 1.5e-4 of 1 / (1 + e^−x) relative (a thirteenth of bf16's own rounding) on both widths, NaN kept.</summary>
    [Fact]
    public void TheBf16SigmoidIsWithinAThirteenthOfBf16Rounding()
    {
        var xs = SigmoidInputs(24680);
        foreach (var (name, sigmoid) in SigmoidForBf16Widths())
        {
            float[] ys = sigmoid(xs);
            for (int i = 0; i < xs.Length; i++)
            {
                double expected = 1.0 / (1.0 + Math.Exp(-(double)xs[i]));
                // 7.5e-5 from the polynomial, 2^−14 from vrcp14ps, the rounding of −x·log2 e (6e-8·|x·log2 e|);
                // bf16's own rounding is up to 2^−9 = 2e-3.
                double bound = (1.5e-4 + 1e-7 * Math.Min(Math.Abs(xs[i]), 200)) * expected;
                Assert.True(Math.Abs(ys[i] - expected) <= Math.Max(bound, 1e-37) && ys[i] >= 0f && ys[i] <= 1.0001f,
                    $"{name}: sigmoid({xs[i]:R}) = {ys[i]:R}, expected {expected:R} (relative {Math.Abs(ys[i] - expected) / expected:E2})");
            }
            Assert.True(float.IsNaN(sigmoid([float.NaN])[0]), $"{name}: sigmoid(NaN) is not NaN");
        }
    }

    /// <summary>Uniform over ±120 and over ±4, and the edges: zeros, where e^±x leaves the f32 range, ±∞.</summary>
    private static float[] SigmoidInputs(int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, 100_000).Select(_ => (float)((random.NextDouble() - 0.5) * 240))
            .Concat(Enumerable.Range(0, 20_000).Select(_ => (float)((random.NextDouble() - 0.5) * 8)))
            .Concat(new[] { 0f, -0f, 87f, 88f, -87f, -88f, -90f, 100f, -1e30f, 1e30f, float.NegativeInfinity, float.PositiveInfinity }).ToArray();
    }

    private static IEnumerable<(string, Func<float[], float[]>)> SigmoidForBf16Widths()
    {
        yield return ("Vector256", xs => Map(xs, 8, (x, o) => VectorExp.SigmoidForBf16(Vector256.Create(x.AsSpan(o, 8))).CopyTo(x.AsSpan(o, 8))));
        if (Vector512.IsHardwareAccelerated)
            yield return ("Vector512", xs => Map(xs, 16, (x, o) => VectorExp.SigmoidForBf16(Vector512.Create(x.AsSpan(o, 16))).CopyTo(x.AsSpan(o, 16))));
    }

    private static IEnumerable<(string, Func<float[], float[]>)> SigmoidWidths()
    {
        yield return ("scalar", xs => Array.ConvertAll(xs, VectorExp.Sigmoid));
        yield return ("Vector256", xs => Map(xs, 8, (x, o) => VectorExp.Sigmoid(Vector256.Create(x.AsSpan(o, 8))).CopyTo(x.AsSpan(o, 8))));
        if (Vector512.IsHardwareAccelerated)
            yield return ("Vector512", xs => Map(xs, 16, (x, o) => VectorExp.Sigmoid(Vector512.Create(x.AsSpan(o, 16))).CopyTo(x.AsSpan(o, 16))));
    }

    private static IEnumerable<(string, Func<float[], float[]>)> Exp2Widths()
    {
        yield return ("scalar", xs => Array.ConvertAll(xs, VectorExp.Exp2NonPositive));
        yield return ("Vector256", xs => Map(xs, 8, (x, o) => VectorExp.Exp2NonPositive(Vector256.Create(x.AsSpan(o, 8))).CopyTo(x.AsSpan(o, 8))));
        if (Vector512.IsHardwareAccelerated)
            yield return ("Vector512", xs => Map(xs, 16, (x, o) => VectorExp.Exp2NonPositive(Vector512.Create(x.AsSpan(o, 16))).CopyTo(x.AsSpan(o, 16))));
    }

    private static IEnumerable<(string, Func<float[], float[]>)> Widths()
    {
        yield return ("scalar", xs => Array.ConvertAll(xs, VectorExp.Exp));
        yield return ("Vector256", xs => Map(xs, 8, (x, o) => VectorExp.Exp(Vector256.Create(x.AsSpan(o, 8))).CopyTo(x.AsSpan(o, 8))));
        if (Vector512.IsHardwareAccelerated)
            yield return ("Vector512", xs => Map(xs, 16, (x, o) => VectorExp.Exp(Vector512.Create(x.AsSpan(o, 16))).CopyTo(x.AsSpan(o, 16))));
    }

    private static float[] Map(float[] xs, int width, Action<float[], int> inPlace)
    {
        var padded = new float[(xs.Length + width - 1) / width * width];
        xs.CopyTo(padded, 0);
        for (int o = 0; o < padded.Length; o += width) inPlace(padded, o);
        return padded[..xs.Length];
    }
}
