using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
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
        _scratch = (float*)ScratchPool.Rent((long)Math.Max(Length, 1) * sizeof(float));
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
        ScratchPool.Return(_scratch, (long)Math.Max(Length, 1) * sizeof(float));
    }

    private static void Widen(Tensor t, Span<float> dst)
    {
        if (t.DType == DType.BF16) Bf16Vector.Widen((ushort*)t.Pointer, dst);
        else F16Vector.Widen((ushort*)t.Pointer, dst);
    }

    private static void Narrow(ReadOnlySpan<float> src, Tensor t)
    {
        if (t.DType == DType.BF16) Bf16Vector.Narrow(src, (ushort*)t.Pointer);
        else F16Vector.Narrow(src, (ushort*)t.Pointer);
    }
}

/// <summary>
/// f16 ↔ f32 sixteen lanes at a time in integer arithmetic (the runtime's Half conversions are scalar here, about
/// 4 ns per element). Widening is exact; narrowing rounds to nearest even, as <see cref="FloatBits.ToF16"/>, and
/// turns every NaN into the quiet NaN of its sign.
/// </summary>
internal static unsafe class F16Vector
{
    public static void Widen(ushort* src, Span<float> dst)
    {
        int i = 0;
        var magnitude = Vector256.Create(0x7FFFu);
        var infinity = Vector256.Create(0x7C00u);
        var scale = Vector256.Create(5.192297e33f); // 2^112: moves the half exponent bias (15) to float's (127)
        fixed (float* d = dst)
        {
            for (; i + 16 <= dst.Length; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
                Widen8(lo, magnitude, infinity, scale).Store(d + i);
                Widen8(hi, magnitude, infinity, scale).Store(d + i + 8);
            }
        }
        for (; i < dst.Length; i++) dst[i] = FloatBits.FromF16(src[i]);
    }

    private static Vector256<float> Widen8(Vector256<uint> h, Vector256<uint> magnitude, Vector256<uint> infinity, Vector256<float> scale)
    {
        var em = h & magnitude;
        var sign = (h & Vector256.Create(0x8000u)) << 16;
        // Normal and subnormal halves: the bits shifted into place, then scaled by 2^112 (exact: a power of two).
        var finite = (Vector256.ShiftLeft(em, 13).AsSingle() * scale).AsUInt32();
        // Infinity and NaN: all-ones exponent, the mantissa kept.
        var special = Vector256.ShiftLeft(em, 13) | Vector256.Create(0x7F800000u);
        var isSpecial = Vector256.GreaterThanOrEqual(em, infinity);
        return (Vector256.ConditionalSelect(isSpecial, special, finite) | sign).AsSingle();
    }

    public static void Narrow(ReadOnlySpan<float> src, ushort* dst)
    {
        int i = 0;
        fixed (float* s = src)
        {
            for (; i + 16 <= src.Length; i += 16)
                Vector256.Narrow(Narrow8(Vector256.Load((uint*)s + i)), Narrow8(Vector256.Load((uint*)s + i + 8))).Store(dst + i);
        }
        for (; i < src.Length; i++) dst[i] = FloatBits.ToF16(src[i]);
    }

    private static Vector256<uint> Narrow8(Vector256<uint> bits)
    {
        var sign = bits & Vector256.Create(0x80000000u);
        var f = bits ^ sign;
        // Too large for half: infinity, or the quiet NaN for NaN.
        var tooLarge = Vector256.GreaterThanOrEqual(f, Vector256.Create((127u + 16) << 23));
        var overflow = Vector256.ConditionalSelect(Vector256.GreaterThan(f, Vector256.Create(255u << 23)), Vector256.Create(0x7E00u), Vector256.Create(0x7C00u));
        // Half subnormals: adding a magic float lets the FPU round the mantissa (to nearest even) into place.
        var magic = Vector256.Create(((127u - 15) + (23 - 10) + 1) << 23);
        var subnormal = (f.AsSingle() + magic.AsSingle()).AsUInt32() - magic;
        // Normals: rebias the exponent and round the 13 dropped bits to nearest even.
        var odd = (f >> 13) & Vector256<uint>.One;
        var normal = (f + Vector256.Create(unchecked((uint)((15 - 127) << 23)) + 0xFFFu) + odd) >> 13;
        var isSubnormal = Vector256.LessThan(f, Vector256.Create(113u << 23));
        var result = Vector256.ConditionalSelect(tooLarge, overflow, Vector256.ConditionalSelect(isSubnormal, subnormal, normal));
        return result | (sign >> 16);
    }
}

/// <summary>bf16 ↔ f32 sixteen lanes at a time, bit-exact with <see cref="FloatBits"/> (round to nearest even, NaN kept).</summary>
internal static unsafe class Bf16Vector
{
    public static void Widen(ushort* src, Span<float> dst)
    {
        int i = 0;
        fixed (float* d = dst)
        {
            for (; i + 16 <= dst.Length; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(src + i));
                Vector256.ShiftLeft(lo, 16).AsSingle().Store(d + i);
                Vector256.ShiftLeft(hi, 16).AsSingle().Store(d + i + 8);
            }
        }
        for (; i < dst.Length; i++) dst[i] = FloatBits.FromBF16(src[i]);
    }

    public static void Narrow(ReadOnlySpan<float> src, ushort* dst)
    {
        int i = 0;
        fixed (float* s = src)
        {
            for (; i + 16 <= src.Length; i += 16)
            {
                var lo = Round(Vector256.Load((uint*)s + i));
                var hi = Round(Vector256.Load((uint*)s + i + 8));
                Vector256.Narrow(lo, hi).Store(dst + i);
            }
        }
        for (; i < src.Length; i++) dst[i] = FloatBits.ToBF16(src[i]);
    }

    private static Vector256<uint> Round(Vector256<uint> bits) => Bf16Rounding.WithNaN(bits) >> 16;
}

/// <summary>
/// Reused native scratch blocks for the f32 views: fresh multi-megabyte allocations cost a page fault per 4 KB on
/// every call, which dominated bf16 kernels. Blocks are kept by exact size, up to <see cref="MaxCachedBytes"/>.
/// </summary>
internal static unsafe class ScratchPool
{
    private const long MaxCachedBytes = 512L << 20;
    private static readonly Dictionary<long, Stack<nint>> s_free = new();
    private static long s_cachedBytes;

    public static void* Rent(long bytes)
    {
        lock (s_free)
        {
            if (s_free.TryGetValue(bytes, out var stack) && stack.Count > 0)
            {
                s_cachedBytes -= bytes;
                return (void*)stack.Pop();
            }
        }
        return NativeMemory.AlignedAlloc((nuint)bytes, 64);
    }

    public static void Return(void* block, long bytes)
    {
        lock (s_free)
        {
            if (s_cachedBytes + bytes <= MaxCachedBytes)
            {
                if (!s_free.TryGetValue(bytes, out var stack)) s_free[bytes] = stack = new Stack<nint>();
                stack.Push((nint)block);
                s_cachedBytes += bytes;
                return;
            }
        }
        NativeMemory.AlignedFree(block);
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
        System.Threading.Tasks.Parallel.For(0, tasks, t =>
        {
            int start = t * chunk, end = Math.Min(count, start + chunk);
            if (start < end) body(start, end);
        });
    }

    /// <summary>
    /// Element-wise work in chunks of 4 K elements (16 KB of f32, L1-sized; small enough for stack scratch), spread
    /// across cores: body(offset, length) per chunk; <paramref name="workPerElement"/> is a rough flop count.
    /// </summary>
    public static void Chunks(long count, long workPerElement, Action<long, int> body)
    {
        const int chunk = 4 * 1024;
        int chunks = checked((int)((count + chunk - 1) / chunk));
        For(chunks, chunk * workPerElement, (start, end) =>
        {
            for (int c = start; c < end; c++)
            {
                long offset = (long)c * chunk;
                body(offset, (int)Math.Min(chunk, count - offset));
            }
        });
    }
}
