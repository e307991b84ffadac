using System.Runtime.CompilerServices;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels;

/// <summary>
/// Argument checks shared by several ops (an op's own checks live in its file of Kernels/Ops/): each returns the
/// sizes the op needs or throws an <see cref="ArgumentException"/> naming the op, the tensor and what was expected.
/// </summary>
internal static class OpShapes
{
    /// <summary>Throws an <see cref="ArgumentException"/> naming the op when <paramref name="condition"/> is false.</summary>
    public static void Require(bool condition, string op, string message)
    {
        if (!condition) throw new ArgumentException($"{op}: {message}");
    }

    /// <summary>
    /// <see cref="Require(bool, string, string)"/> with an interpolated message that is built only when the check
    /// fails, so a passing check (every launch) builds no string.
    /// </summary>
    public static void Require(bool condition, string op, [InterpolatedStringHandlerArgument(nameof(condition))] ref FailureMessage message)
    {
        if (!condition) throw new ArgumentException($"{op}: {message.ToStringAndClear()}");
    }

    /// <summary>Formats a check's message only when the check failed (condition false).</summary>
    [InterpolatedStringHandler]
    public ref struct FailureMessage
    {
        private DefaultInterpolatedStringHandler _inner;

        public FailureMessage(int literalLength, int formattedCount, bool condition, out bool shouldAppend)
        {
            shouldAppend = !condition;
            _inner = shouldAppend ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
        }

        public void AppendLiteral(string value) => _inner.AppendLiteral(value);
        public void AppendFormatted<T>(T value) => _inner.AppendFormatted(value);
        public void AppendFormatted<T>(T value, string? format) => _inner.AppendFormatted(value, format);
        public string ToStringAndClear() => _inner.ToStringAndClear();
    }

    /// <summary>Every tensor contiguous and on the first one's device.</summary>
    public static void Common(string op, params ReadOnlySpan<(string Name, Tensor T)> tensors)
    {
        var device = tensors[0].T.Device;
        foreach (var (name, t) in tensors)
        {
            Require(t.IsContiguous, op, $"{name} must be contiguous, got a strided view {t}");
            Require(ReferenceEquals(t.Device, device), op, $"{name} is on {t.Device.Name}, the others on {device.Name}");
        }
    }

    /// <summary><paramref name="t"/>'s dtype is one of <paramref name="allowed"/>.</summary>
    public static void FloatType(string op, string name, Tensor t, params ReadOnlySpan<DType> allowed)
    {
        foreach (var dtype in allowed)
            if (t.DType == dtype) return;
        Require(false, op, $"{name} has dtype {t.DType.Name()}; supported: {Names(allowed)}");
    }

    private static string Names(ReadOnlySpan<DType> dtypes)
    {
        var names = new string[dtypes.Length];
        for (int i = 0; i < names.Length; i++) names[i] = dtypes[i].Name();
        return string.Join(", ", names);
    }

    /// <summary>Rows and width of a tensor seen as (rows, last dimension).</summary>
    public static (int Rows, int Width) RowsOf(Tensor t)
    {
        int width = t.Rank == 0 ? 1 : t.Dim(-1);
        int rows = width == 0 ? 0 : checked((int)(t.Count / width));
        return (rows, width);
    }

    public static (int Rows, int D) Norm(string op, Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        Common(op, ("x", x), ("weight", weight), ("y", y));
        FloatType(op, "x", x, DType.F32, DType.BF16);
        Require(weight.DType == x.DType && y.DType == x.DType, op, "x, weight and y must share one dtype");
        var (rows, d) = RowsOf(x);
        Require(weight.Count == d, op, $"weight must have {d} elements (the last dimension of x), got {weight}");
        Require(y.Count == x.Count, op, $"y must match x {x}, got {y}");
        if (bias is not null)
        {
            Require(bias.DType == x.DType && bias.Count == d, op, $"bias must be {x.DType.Name()} with {d} elements, got {bias}");
            Require(bias.IsContiguous && ReferenceEquals(bias.Device, x.Device), op, "bias must be contiguous and on x's device");
        }
        return (rows, d);
    }

    public static long Elementwise(string op, Tensor a, Tensor? b, Tensor output)
    {
        if (b is null) Common(op, ("x", a), ("output", output));
        else Common(op, ("a", a), ("b", b), ("output", output));
        FloatType(op, "input", a, DType.F32, DType.BF16);
        Require((b is null || (b.DType == a.DType && b.Count == a.Count)) && output.DType == a.DType && output.Count == a.Count,
            op, $"inputs and output must share dtype and element count, got {a}, {b?.ToString() ?? "-"}, {output}");
        return a.Count;
    }

    /// <summary>The sizes of an attention call (decode has Tq = 1 and Tk = the cache capacity).</summary>
    public readonly record struct AttentionSizes(int Batch, int Tq, int Tk, int Hq, int Hkv, int D);

}

/// <summary>Size limits the kernels are compiled for (mirrored in kernels/common/limits.cuh).</summary>
public static class KernelLimits
{
    /// <summary>Largest attention head dimension (registers hold head_dim / 32 values per lane).</summary>
    public const int MaxHeadDim = 256;

    /// <summary>Largest k of top-k.</summary>
    public const int MaxTopK = 64;

    /// <summary>Most inputs of one reduce call (a one-shot all-reduce over 8 ranks).</summary>
    public const int MaxReduceInputs = 8;
}
