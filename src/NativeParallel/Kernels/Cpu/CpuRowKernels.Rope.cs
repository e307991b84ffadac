using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

internal static unsafe partial class CpuRowKernels
{
    // ---- RoPE in place (forward sign +1, backward −1): per token the f32 cos and sin of pos·theta^(−2i/d) (from f64,
    // as before, but read from a table kept across launches: the trigonometry, not the rotation, was most of the
    // op's time at a small head dimension), then each head's halves rotated a vector at a time, bf16 widened and
    // narrowed in registers instead of an F32View copy of the whole tensor.

    public static void Rope(Tensor x, Tensor positions, float theta, int tokens, int heads, int d, float sign)
    {
        int* pos = (int*)positions.Pointer;
        int max = -1;
        bool negative = false;
        for (int t = 0; t < tokens; t++)
        {
            max = Math.Max(max, pos[t]);
            negative |= pos[t] < 0;
        }
        // The table covers positions [0, max]; without one (a negative or a very large position) each token computes its own.
        var table = negative ? null : RopeTable.For(theta, d, max);
        nint xp = (nint)x.Pointer;
        if (x.DType == DType.BF16)
        {
            if (Wide) Rope<V512, Bf16Element>(xp, (nint)pos, table, theta, tokens, heads, d, sign);
            else Rope<V256, Bf16Element>(xp, (nint)pos, table, theta, tokens, heads, d, sign);
        }
        else if (Wide) Rope<V512, F32Element>(xp, (nint)pos, table, theta, tokens, heads, d, sign);
        else Rope<V256, F32Element>(xp, (nint)pos, table, theta, tokens, heads, d, sign);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rope<TV, TE>(nint x, nint positions, RopeTable? table, float theta, int tokens, int heads, int d, float sign)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int size = typeof(TE) == typeof(F32Element) ? 4 : 2;
        int half = d / 2;
        CpuParallel.For(tokens, 6L * heads * d, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            float* own = stackalloc float[table == null ? 2 * half : 0];
            float* sin = stackalloc float[half], negSin = stackalloc float[half];
            for (int t = start; t < end; t++)
            {
                int p = ((int*)positions)[t];
                float* cos;
                if (table != null)
                {
                    cos = table.Cos + (long)p * half;
                    float* s = table.Sin + (long)p * half;
                    for (int i = 0; i < half; i++)
                    {
                        sin[i] = sign * s[i];
                        negSin[i] = -sin[i];
                    }
                }
                else
                {
                    cos = own;
                    for (int i = 0; i < half; i++)
                    {
                        double angle = p * RopeTable.Frequency(theta, i, d);
                        cos[i] = (float)Math.Cos(angle);
                        sin[i] = sign * (float)Math.Sin(angle);
                        negSin[i] = -sin[i];
                    }
                }
                for (int h = 0; h < heads; h++)
                    RopeRow<TV, TE>((byte*)x + ((long)t * heads + h) * d * size, cos, sin, negSin, half);
            }
        });
    }

    /// <summary>
    /// One head: (x1, x2) = (x[i], x[i + half]) → (x1·cos − x2·sin, x2·cos + x1·sin), each product rounded, then the
    /// sum (x2·sin subtracted as x2·(−sin) added: the same rounding), as the scalar path before it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RopeRow<TV, TE>(byte* row, float* cos, float* sin, float* negSin, int half)
        where TV : struct, IVec<TV> where TE : struct, IElement
    {
        int i = 0;
        for (; i + TV.Count <= half; i += TV.Count)
        {
            var x1 = TE.Load<TV>(row, i);
            var x2 = TE.Load<TV>(row, i + half);
            var c = TV.LoadF32(cos + i);
            TE.Store(TV.Add(TV.Multiply(x1, c), TV.Multiply(x2, TV.LoadF32(negSin + i))), row, i);
            TE.Store(TV.Add(TV.Multiply(x2, c), TV.Multiply(x1, TV.LoadF32(sin + i))), row, i + half);
        }
        for (; i < half; i++)
        {
            float x1 = TE.LoadScalar(row, i), x2 = TE.LoadScalar(row, i + half);
            TE.StoreScalar(x1 * cos[i] - x2 * sin[i], row, i);
            TE.StoreScalar(x2 * cos[i] + x1 * sin[i], row, i + half);
        }
    }
}

/// <summary>
/// The f32 cos and sin of pos·theta^(−2i/d) for positions [0, <see cref="Positions"/>), each computed in f64 and
/// rounded once (bit for bit what the per-token computation gives), for one (theta, d): built on first use and grown
/// by doubling, kept across launches (training calls the rotation four times a layer and step at the same
/// positions). Pinned arrays, never changed once published: a launch holds its table while it runs.
/// </summary>
internal sealed unsafe class RopeTable
{
    /// <summary>The most bytes one table may take (cos and sin): beyond it the tokens compute their own.</summary>
    private const long MaxBytes = 32L << 20;

    private static readonly object s_lock = new();
    private static RopeTable? s_table;

    private readonly float[] _cos, _sin;
    public float Theta { get; }
    public int D { get; }
    public int Positions { get; }
    public float* Cos { get; }
    public float* Sin { get; }

    private RopeTable(float theta, int d, int positions)
    {
        Theta = theta;
        D = d;
        Positions = positions;
        int half = d / 2;
        _cos = GC.AllocateUninitializedArray<float>(checked(positions * half), pinned: true);
        _sin = GC.AllocateUninitializedArray<float>(positions * half, pinned: true);
        Cos = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_cos));
        Sin = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_sin));
        var frequencies = new double[half];
        for (int i = 0; i < half; i++) frequencies[i] = Frequency(theta, i, d);
        for (int p = 0; p < positions; p++)
            for (int i = 0; i < half; i++)
            {
                double angle = p * frequencies[i];
                _cos[(long)p * half + i] = (float)Math.Cos(angle);
                _sin[(long)p * half + i] = (float)Math.Sin(angle);
            }
    }

    /// <summary>theta^(−2i/d) in f64: an f32-rounded frequency times position 4096 is already ~2e-4 rad off.</summary>
    public static double Frequency(float theta, int i, int d) => Math.Pow(theta, -2.0 * i / d);

    /// <summary>A table covering positions [0, <paramref name="maxPosition"/>], or null where it would be too large.</summary>
    public static RopeTable? For(float theta, int d, int maxPosition)
    {
        if (d < 2 || maxPosition < 0) return null;
        var table = Volatile.Read(ref s_table);
        if (table != null && table.Theta.Equals(theta) && table.D == d && maxPosition < table.Positions) return table;
        long need = (long)maxPosition + 1;
        if (need * d * sizeof(float) > MaxBytes) return null; // d/2 cos and d/2 sin floats per position
        lock (s_lock)
        {
            table = s_table;
            if (table != null && table.Theta.Equals(theta) && table.D == d && maxPosition < table.Positions) return table;
            long positions = Math.Max(need, table != null && table.Theta.Equals(theta) && table.D == d ? 2L * table.Positions : 256);
            positions = Math.Max(need, Math.Min(positions, MaxBytes / ((long)d * sizeof(float))));
            table = new RopeTable(theta, d, (int)positions);
            Volatile.Write(ref s_table, table);
            return table;
        }
    }
}
