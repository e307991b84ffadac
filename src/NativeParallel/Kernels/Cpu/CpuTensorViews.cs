using System.Runtime.InteropServices;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

/// <summary>
/// f32 view of a CPU tensor. An f32 tensor is viewed in place; a bf16 or f16 tensor is widened into native
/// scratch memory and, for outputs, narrowed back (round to nearest even) on <see cref="Dispose"/>. Kernels are
/// then written once, over f32.
/// </summary>
internal readonly unsafe struct F32View : IDisposable
{
    private readonly Tensor _tensor;
    private readonly float* _scratch;
    private readonly bool _writeBack;

    private F32View(Tensor tensor, bool read, bool writeBack)
    {
        _tensor = tensor;
        Length = checked((int)tensor.Count);
        if (tensor.DType == DType.F32)
        {
            Pointer = (float*)tensor.Pointer;
            return;
        }
        _writeBack = writeBack;
        _scratch = (float*)NativeMemory.AlignedAlloc((nuint)Math.Max(Length, 1) * sizeof(float), 64);
        Pointer = _scratch;
        if (read) Widen(tensor, Span);
    }

    /// <summary>A view to read.</summary>
    public static F32View Input(Tensor t) => new(t, read: true, writeBack: false);

    /// <summary>A view to write; its contents are undefined until written.</summary>
    public static F32View Output(Tensor t) => new(t, read: false, writeBack: true);

    /// <summary>A view to read and write (in-place ops).</summary>
    public static F32View InOut(Tensor t) => new(t, read: true, writeBack: true);

    /// <summary>Address of element 0 (stable: parallel loops capture it).</summary>
    public float* Pointer { get; }

    /// <summary>Element count.</summary>
    public int Length { get; }

    /// <summary>The elements.</summary>
    public Span<float> Span => new(Pointer, Length);

    public void Dispose()
    {
        if (_scratch is null) return;
        if (_writeBack) Narrow(Span, _tensor);
        NativeMemory.AlignedFree(_scratch);
    }

    private static void Widen(Tensor t, Span<float> dst)
    {
        var src = new ReadOnlySpan<ushort>((void*)t.Pointer, dst.Length);
        if (t.DType == DType.BF16) for (int i = 0; i < dst.Length; i++) dst[i] = FloatBits.FromBF16(src[i]);
        else for (int i = 0; i < dst.Length; i++) dst[i] = FloatBits.FromF16(src[i]);
    }

    private static void Narrow(ReadOnlySpan<float> src, Tensor t)
    {
        var dst = new Span<ushort>((void*)t.Pointer, src.Length);
        if (t.DType == DType.BF16) for (int i = 0; i < src.Length; i++) dst[i] = FloatBits.ToBF16(src[i]);
        else for (int i = 0; i < src.Length; i++) dst[i] = FloatBits.ToF16(src[i]);
    }
}

/// <summary>Splits row loops across cores when there is enough work to pay for it.</summary>
internal static class CpuParallel
{
    private const long MinWorkPerTask = 1 << 15;

    /// <summary>Runs body(start, end) over [0, count) in chunks; <paramref name="workPerItem"/> is a rough flop count.</summary>
    public static void For(int count, long workPerItem, Action<int, int> body)
    {
        if (count <= 0) return;
        long total = count * Math.Max(workPerItem, 1);
        int tasks = (int)Math.Min(Math.Min(Environment.ProcessorCount * 4L, count), Math.Max(1, total / MinWorkPerTask));
        if (tasks <= 1)
        {
            body(0, count);
            return;
        }
        int chunk = (count + tasks - 1) / tasks;
        Parallel.For(0, tasks, t =>
        {
            int start = t * chunk, end = Math.Min(count, start + chunk);
            if (start < end) body(start, end);
        });
    }
}
