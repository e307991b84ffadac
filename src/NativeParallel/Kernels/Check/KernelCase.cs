using NativeParallel.Devices;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Check;

/// <summary>
/// One kernel check: an op, a dtype and a shape, with a body that builds fresh random inputs, poisons the
/// outputs (every byte 0xFF: NaN for floats, −1 for indices), runs the device's kernel, and compares with the op's
/// float64 reference (each op's file in Kernels/Ops/ holds its cases).
/// </summary>
public sealed class KernelCase
{
    private readonly Func<IDevice, ulong, (double Error, double Bound, string Failure)> _body;

    internal KernelCase(string op, DType dtype, string shape, Func<IDevice, ulong, (double, double, string)> body)
    {
        Op = op;
        DType = dtype;
        Shape = shape;
        _body = body;
    }

    /// <summary>The op, as its <see cref="Ops.KernelOpAttribute"/> names it (e.g. <c>rmsnorm</c>).</summary>
    public string Op { get; }

    /// <summary>The storage dtype of the inputs.</summary>
    public DType DType { get; }

    /// <summary>A readable shape, e.g. <c>rows=5 d=33</c>.</summary>
    public string Shape { get; }

    /// <summary>A stable identifier: <c>op/dtype/shape</c>.</summary>
    public string Id => $"{Op}/{DType.Name()}/{Shape}";

    /// <summary>Runs the case on <paramref name="device"/> with inputs drawn from <paramref name="seed"/>.</summary>
    public KernelCheckResult Run(IDevice device, ulong seed)
    {
        try
        {
            var (error, bound, failure) = _body(device, seed);
            bool passed = failure.Length == 0 && !double.IsNaN(error) && error <= bound;
            string message = failure.Length > 0 ? failure
                : double.IsNaN(error) ? "output has NaN or infinity (unwritten or overflowed elements)"
                : error > bound ? $"relative error {error:E2} exceeds {bound:E0}" : "";
            return new KernelCheckResult(this, device.Name, error, bound, passed, message);
        }
        catch (Exception e)
        {
            return new KernelCheckResult(this, device.Name, double.NaN, 0, false, $"{e.GetType().Name}: {e.Message}");
        }
    }

    /// <inheritdoc/>
    public override string ToString() => Id;
}
