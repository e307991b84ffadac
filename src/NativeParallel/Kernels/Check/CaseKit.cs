using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Check;

/// <summary>
/// What every kernel case is built from: seeded random inputs rounded to the storage dtype (so the reference sees
/// exactly what the device sees), poisoned outputs, tensors freed together, and the comparison with the reference.
/// </summary>
internal static class CaseKit
{
    /// <summary>Uniform values in [lo, hi) from stream <paramref name="stream"/> of <paramref name="seed"/>, rounded to <paramref name="dtype"/>.</summary>
    public static float[] Random(ulong seed, int stream, long count, DType dtype, float lo = -1f, float hi = 1f)
    {
        var values = new float[count];
        SeededRandom.Uniform(seed * 1000 + (ulong)stream, values, lo, hi);
        if (dtype != DType.F32) for (int i = 0; i < values.Length; i++) values[i] = FloatBits.RoundTo(dtype, values[i]);
        return values;
    }

    /// <summary>Integers in [0, max) from stream <paramref name="stream"/> of <paramref name="seed"/>.</summary>
    public static int[] RandomInts(ulong seed, int stream, int count, int max)
    {
        var values = new int[count];
        SeededRandom.Integers(seed * 1000 + (ulong)stream, values, max);
        return values;
    }

    /// <summary>Tensors of one case, freed together.</summary>
    public sealed class Scope(IDevice device) : IDisposable
    {
        private readonly List<Tensor> _tensors = [];

        public Tensor Floats(float[] values, DType dtype, params int[] shape) => Keep(Tensor.FromFloats(device, values, dtype, shape));

        public Tensor Ints(int[] values, params int[] shape) => Keep(Tensor.FromInts(device, values, shape));

        /// <summary>Every byte 0xFF: NaN for floats, −1 for integers, so an unwritten element cannot pass.</summary>
        public Tensor Poisoned(DType dtype, params int[] shape)
        {
            var t = Keep(Tensor.Empty(device, dtype, shape));
            t.FillBytes(0xFF);
            return t;
        }

        private Tensor Keep(Tensor t)
        {
            _tensors.Add(t);
            return t;
        }

        public void Dispose()
        {
            foreach (var t in _tensors) t.Dispose();
        }
    }

    /// <summary>The relative error of <paramref name="output"/> against <paramref name="expected"/> with the bound of <paramref name="dtype"/>.</summary>
    public static (double, double, string) Compare(Tensor output, double[] expected, DType dtype) =>
        (ErrorBounds.RelativeError(output.ToFloats(), expected), ErrorBounds.For(dtype), "");

    /// <summary>The worst of several comparisons (every output of a multi-output op must pass).</summary>
    public static (double, double, string) Worst(params (double Error, double Bound, string Failure)[] results)
    {
        var worst = results[0];
        foreach (var r in results)
        {
            if (r.Failure.Length > 0) return r;
            if (double.IsNaN(r.Error)) return r;
            if (r.Error / Math.Max(r.Bound, double.Epsilon) > worst.Error / Math.Max(worst.Bound, double.Epsilon)) worst = r;
        }
        return worst;
    }

    /// <summary>The first index where two integer arrays differ, as a message; empty when equal.</summary>
    public static string ExactMismatch(int[] got, int[] expected, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            if (got[i] != expected[i]) return $"{what}[{i}] = {got[i]}, reference {expected[i]}";
        return "";
    }
}
