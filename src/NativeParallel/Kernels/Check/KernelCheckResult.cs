using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Check;

/// <summary>The outcome of one kernel case on one device against the CPU reference.</summary>
/// <param name="Case">The case: op, dtype and shape.</param>
/// <param name="Device">Device name.</param>
/// <param name="RelativeError">‖out − ref‖ / ‖ref‖ in float64 (0 for exact integer outputs that match; NaN if the output had NaN).</param>
/// <param name="Bound">The bound it had to meet.</param>
/// <param name="Passed">True when within bounds, NaN-free and exact where exactness is required.</param>
/// <param name="Message">Why it failed (empty when it passed).</param>
public sealed record KernelCheckResult(KernelCase Case, string Device, double RelativeError, double Bound, bool Passed, string Message);

/// <summary>Error bounds by dtype, as llm.c-style checks use: f32 1e-5, f16 5e-3, bf16 1e-2 (relative, L2).</summary>
public static class ErrorBounds
{
    /// <summary>The bound for outputs computed from operands of <paramref name="dtype"/>.</summary>
    public static double For(DType dtype) => dtype switch
    {
        DType.F32 => 1e-5,
        DType.F16 => 5e-3,
        DType.BF16 => 1e-2,
        _ => 0,
    };

    /// <summary>‖got − expected‖ / ‖expected‖ in float64 (‖got‖ alone when the reference is all zeros); NaN when got has NaN.</summary>
    public static double RelativeError(ReadOnlySpan<float> got, ReadOnlySpan<double> expected)
    {
        if (got.Length != expected.Length) throw new ArgumentException($"length mismatch: {got.Length} vs {expected.Length}");
        double diff = 0, norm = 0;
        for (int i = 0; i < got.Length; i++)
        {
            if (float.IsNaN(got[i]) || float.IsInfinity(got[i])) return double.NaN;
            double d = got[i] - expected[i];
            diff += d * d;
            norm += expected[i] * expected[i];
        }
        return norm == 0 ? Math.Sqrt(diff) : Math.Sqrt(diff / norm);
    }
}
