using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

/// <summary>
/// One SIMD width of f32 lanes, so that a row kernel is written once and compiled (the JIT specialises generic
/// methods over structs) for both Vector512 and Vector256: <see cref="V512"/> where the CPU has AVX-512 and
/// <see cref="CpuPackedGemm.PreferVector512"/> is on, <see cref="V256"/> otherwise (NATIVEPARALLEL_CPU_VECTOR=256
/// forces it, so both paths are checked on one machine). bf16 is widened and narrowed in registers (a shift, and
/// round-to-nearest-even in integer lanes as <see cref="FloatBits.ToBF16"/>), so no kernel needs an f32 copy of a tensor.
/// </summary>
internal unsafe interface IVec<TV> where TV : struct, IVec<TV>
{
    static abstract int Count { get; }
    static abstract TV Splat(float value);
    static abstract TV LoadF32(float* p);
    static abstract TV LoadBf16(ushort* p);
    static abstract void StoreF32(TV v, float* p);
    static abstract void StoreBf16(TV v, ushort* p);
    /// <summary>
    /// <see cref="StoreBf16"/> for lanes known to hold no NaN (infinities are fine): the rounding alone, without
    /// the NaN test and select, five of the twelve operations of a bf16 store. A NaN lane would come out as an
    /// infinity or a wrong sign, so a kernel calls it only where its row's statistics prove every output finite.
    /// </summary>
    static abstract void StoreBf16NoNaN(TV v, ushort* p);
    /// <summary>
    /// The even-indexed elements of 2·Count bf16 values as f32: a bf16 pair (a, b) read as one 32-bit lane is
    /// b·2^16 + a, so a shift gives a (and a mask gives b, <see cref="LoadBf16Odd"/>): a load and one operation per
    /// vector, where a widening load crosses lanes. Two methods rather than one with two out parameters: a struct
    /// local whose address is taken stays in memory, and the kernels ran slower with them.
    /// </summary>
    static abstract TV LoadBf16Even(ushort* p);
    /// <summary>The odd-indexed elements of 2·Count bf16 values as f32: see <see cref="LoadBf16Even"/>.</summary>
    static abstract TV LoadBf16Odd(ushort* p);
    /// <summary>The inverse of <see cref="LoadBf16Even"/> and <see cref="LoadBf16Odd"/>: each lane rounded as <see cref="StoreBf16"/>, the two merged in one operation, no lane crossing.</summary>
    static abstract void StoreBf16Pair(TV even, TV odd, ushort* p);
    /// <summary><see cref="StoreBf16Pair"/> for lanes known to hold no NaN (see <see cref="StoreBf16NoNaN"/>).</summary>
    static abstract void StoreBf16PairNoNaN(TV even, TV odd, ushort* p);
    static abstract TV Add(TV a, TV b);
    static abstract TV Multiply(TV a, TV b);
    /// <summary>a / b, correctly rounded (AdamW's update, whose order of operations follows torch's).</summary>
    static abstract TV Divide(TV a, TV b);
    /// <summary>√a, correctly rounded.</summary>
    static abstract TV Sqrt(TV a);
    /// <summary>a·b + c (fused where the hardware has it).</summary>
    static abstract TV Fma(TV a, TV b, TV c);
    static abstract TV Max(TV a, TV b);
    static abstract float Sum(TV v);
    /// <summary>The lanes added down to four (the halves added until 128 bits are left).</summary>
    static abstract Vector128<float> Fold(TV v);
    /// <summary>The lanes added down to eight (the halves added until 256 bits are left).</summary>
    static abstract Vector256<float> Fold256(TV v);
    static abstract float MaxAcross(TV v);
    /// <summary>e^x per lane, ~1 ulp: see <see cref="VectorExp"/>.</summary>
    static abstract TV Exp(TV x);
    /// <summary>2^t per lane for t ≤ 0 (the caller folds log2 e and its shift into one FMA): see <see cref="VectorExp.Exp2NonPositive(float)"/>.</summary>
    static abstract TV Exp2NonPositive(TV t);
    /// <summary>1 / (1 + e^−x) per lane: see <see cref="VectorExp.Sigmoid(float)"/>.</summary>
    static abstract TV Sigmoid(TV x);
    /// <summary>The sigmoid to the precision a bf16 result keeps: see <see cref="VectorExp.SigmoidForBf16(Vector512{float})"/>.</summary>
    static abstract TV SigmoidForBf16(TV x);
}

/// <summary>Element type of a tensor row: loads widen to f32 and stores narrow from it.</summary>
internal unsafe interface IElement
{
    static abstract TV Load<TV>(void* p, long i) where TV : struct, IVec<TV>;
    static abstract void Store<TV>(TV v, void* p, long i) where TV : struct, IVec<TV>;
    static abstract float LoadScalar(void* p, long i);
    static abstract void StoreScalar(float v, void* p, long i);
    /// <summary>Store for lanes known to hold no NaN: see <see cref="IVec{TV}.StoreBf16NoNaN"/>.</summary>
    static abstract void StoreNoNaN<TV>(TV v, void* p, long i) where TV : struct, IVec<TV>;
    /// <summary>
    /// The first of elements [i, i + 2·Count) read as two vectors in an order of the element type's choosing (f32: the
    /// two halves; bf16: even and odd elements, <see cref="IVec{TV}.LoadBf16Even"/>); <see cref="LoadSecond{TV}"/> is
    /// the other. Element-wise kernels read every operand and write every result of a pair this way, so lanes match;
    /// reductions do not care about order.
    /// </summary>
    static abstract TV LoadFirst<TV>(void* p, long i) where TV : struct, IVec<TV>;
    /// <summary>The second vector of the pair at [i, i + 2·Count): see <see cref="LoadFirst{TV}"/>.</summary>
    static abstract TV LoadSecond<TV>(void* p, long i) where TV : struct, IVec<TV>;
    /// <summary>The inverse of <see cref="LoadFirst{TV}"/> and <see cref="LoadSecond{TV}"/>.</summary>
    static abstract void StorePair<TV>(TV a, TV b, void* p, long i) where TV : struct, IVec<TV>;
    /// <summary><see cref="StorePair{TV}"/> for lanes known to hold no NaN.</summary>
    static abstract void StorePairNoNaN<TV>(TV a, TV b, void* p, long i) where TV : struct, IVec<TV>;
}

internal unsafe struct F32Element : IElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Load<TV>(void* p, long i) where TV : struct, IVec<TV> => TV.LoadF32((float*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store<TV>(TV v, void* p, long i) where TV : struct, IVec<TV> => TV.StoreF32(v, (float*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreNoNaN<TV>(TV v, void* p, long i) where TV : struct, IVec<TV> => TV.StoreF32(v, (float*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV LoadFirst<TV>(void* p, long i) where TV : struct, IVec<TV> => TV.LoadF32((float*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV LoadSecond<TV>(void* p, long i) where TV : struct, IVec<TV> => TV.LoadF32((float*)p + i + TV.Count);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StorePair<TV>(TV a, TV b, void* p, long i) where TV : struct, IVec<TV>
    {
        TV.StoreF32(a, (float*)p + i);
        TV.StoreF32(b, (float*)p + i + TV.Count);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StorePairNoNaN<TV>(TV a, TV b, void* p, long i) where TV : struct, IVec<TV> => StorePair(a, b, p, i);
    public static float LoadScalar(void* p, long i) => ((float*)p)[i];
    public static void StoreScalar(float v, void* p, long i) => ((float*)p)[i] = v;
}

internal unsafe struct Bf16Element : IElement
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Load<TV>(void* p, long i) where TV : struct, IVec<TV> => TV.LoadBf16((ushort*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store<TV>(TV v, void* p, long i) where TV : struct, IVec<TV> => TV.StoreBf16(v, (ushort*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreNoNaN<TV>(TV v, void* p, long i) where TV : struct, IVec<TV> => TV.StoreBf16NoNaN(v, (ushort*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV LoadFirst<TV>(void* p, long i) where TV : struct, IVec<TV> => TV.LoadBf16Even((ushort*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV LoadSecond<TV>(void* p, long i) where TV : struct, IVec<TV> => TV.LoadBf16Odd((ushort*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StorePair<TV>(TV a, TV b, void* p, long i) where TV : struct, IVec<TV> => TV.StoreBf16Pair(a, b, (ushort*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StorePairNoNaN<TV>(TV a, TV b, void* p, long i) where TV : struct, IVec<TV> => TV.StoreBf16PairNoNaN(a, b, (ushort*)p + i);
    public static float LoadScalar(void* p, long i) => FloatBits.FromBF16(((ushort*)p)[i]);
    public static void StoreScalar(float v, void* p, long i) => ((ushort*)p)[i] = FloatBits.ToBF16(v);
}

/// <summary>
/// e^x in f32 lanes, Cephes' expf: x = n·ln2 + r with n = round(x·log2 e) and ln 2 split in two (Cody-Waite, so r is
/// exact to a few ulp), e^r by a degree-7 polynomial on |r| ≤ ln2/2, then scaled by 2^n: vscalefps on AVX-512, else two
/// factors 2^(n/2)·2^(n−n/2), so that results near the f32 range's ends (subnormals, overflow to +∞) come out right
/// without a branch. x is
/// clamped to [−104, 89] first: e^−104 rounds to 0 and e^89 to +∞; NaN stays NaN. Relative error ≤ ~2e-7
/// (<c>VectorExpTests</c> checks it against Math.Exp).
/// </summary>
internal static class VectorExp
{
    internal const float Lo = -104f, Hi = 89f, Log2E = 1.44269504088896341f, Ln2Hi = 0.693359375f, Ln2Lo = -2.12194440e-4f;
    internal const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f, P3 = 4.1665795894e-2f,
        P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        // x second: vmaxps/vminps return their second operand when either is NaN, so NaN passes through.
        var xc = Vector512.MinNative(Vector512.Create(Hi), Vector512.MaxNative(Vector512.Create(Lo), x));
        var n = Vector512.Floor(Vector512.FusedMultiplyAdd(xc, Vector512.Create(Log2E), Vector512.Create(0.5f)));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Hi), xc);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Lo), r);
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(P0), r, Vector512.Create(P1));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P2));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P5));
        // 1 + r + r²·p as (p·r + 1)·r + 1: two FMAs.
        p = Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One), r, Vector512<float>.One);
        Vector512<float> result;
        // vscalefps: p·2^n in one instruction, subnormal results and overflow included.
        if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported) result = System.Runtime.Intrinsics.X86.Avx512F.Scale(p, n);
        else
        {
            var ni = Vector512.ConvertToInt32Native(n);
            var half = ni >> 1;
            var scaleA = ((half + Vector512.Create(127)) << 23).AsSingle();
            var scaleB = ((ni - half + Vector512.Create(127)) << 23).AsSingle();
            result = p * scaleA * scaleB;
        }
        return result;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        // x second: vmaxps/vminps return their second operand when either is NaN, so NaN passes through.
        var xc = Vector256.MinNative(Vector256.Create(Hi), Vector256.MaxNative(Vector256.Create(Lo), x));
        var n = Vector256.Floor(Vector256.FusedMultiplyAdd(xc, Vector256.Create(Log2E), Vector256.Create(0.5f)));
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Hi), xc);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Lo), r);
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(P0), r, Vector256.Create(P1));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P2));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P3));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P4));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P5));
        // 1 + r + r²·p as (p·r + 1)·r + 1: two FMAs.
        p = Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One), r, Vector256<float>.One);
        var ni = Vector256.ConvertToInt32Native(n); // n is integral and in range: no saturation fix-ups
        var half = ni >> 1;
        var scaleA = ((half + Vector256.Create(127)) << 23).AsSingle();
        var scaleB = ((ni - half + Vector256.Create(127)) << 23).AsSingle();
        var result = p * scaleA * scaleB;
        return result;
    }

    // 2^f on |f| ≤ 1/2, degree 5: Chebyshev interpolation (near minimax), relative error 1.6e-7 before rounding.
    internal const float E0 = 1.0000001192092896f, E1 = 0.6931471824645996f, E2 = 0.2402210682630539f, E3 = 0.055503569543361664f,
        E4 = 0.009676031768321991f, E5 = 0.0013390863314270973f;

    /// <summary>
    /// 2^t per lane for t ≤ 0, the cheaper exp of the exp-bound row kernels (cross-entropy): t = x·log2 e − max·log2 e
    /// is one FMA at the caller, then n = round(t), f = t − n, a degree-5 polynomial for 2^f and vscalefps, about ten
    /// instructions where <see cref="Exp(Vector512{float})"/> takes fourteen (no Cody-Waite split, two fewer
    /// polynomial terms, no upper clamp). Relative error ≤ ~3e-7 in 2^t; against e^(x − max) add the rounding of t
    /// (|t|·6e-8), which is large only where the result is tiny. t is clamped below, so −∞ gives a tiny number, not
    /// NaN: at −150 here (2^−150 rounds to 0), at −126 on Vector256 (2^−126); NaN stays NaN. The contract is t ≤ 0; a t a
    /// rounding above 0 (x = max) is fine, as is any t up to 127, but nothing clamps above. <c>VectorExpTests</c> checks it against Math.Pow.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2NonPositive(Vector512<float> t)
    {
        var tc = Vector512.MaxNative(Vector512.Create(-150f), t); // t second: NaN passes through
        var n = Vector512.Round(tc);
        var f = tc - n;
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(E5), f, Vector512.Create(E4));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(E3));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(E2));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(E1));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(E0));
        if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported) return System.Runtime.Intrinsics.X86.Avx512F.Scale(p, n);
        // Without vscalefps: n ≥ −150 needs two factors (2^−150 is below the normal range).
        var ni = Vector512.ConvertToInt32Native(n);
        var half = ni >> 1;
        return p * ((half + Vector512.Create(127)) << 23).AsSingle() * ((ni - half + Vector512.Create(127)) << 23).AsSingle();
    }

    /// <inheritdoc cref="Exp2NonPositive(Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp2NonPositive(Vector256<float> t)
    {
        // Clamped at −126 here: 2^n is then one normal float built from its exponent bits (2^−126 for anything
        // smaller: 1e-38 where 0 is exact, nothing a sum or a bf16 output can see).
        var tc = Vector256.MaxNative(Vector256.Create(-126f), t);
        var n = Vector256.Round(tc);
        var f = tc - n;
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(E5), f, Vector256.Create(E4));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(E3));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(E2));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(E1));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(E0));
        return p * ((Vector256.ConvertToInt32Native(n) + Vector256.Create(127)) << 23).AsSingle();
    }

    // Sigmoid's bound on 2^t: 2^126 keeps 1 + 2^t finite on both widths (1 / (1 + 2^126) is 1e-38, zero to anything
    // that reads it), where e^−x of x < −88 would overflow the Vector256 exponent bits.
    private const float SigmoidTop = 126f;

    /// <summary>
    /// 1 / (1 + e^−x) per lane, the SiLU's gate: 2^(−x·log2 e) by <see cref="Exp2NonPositive(Vector512{float})"/>'s
    /// polynomial (valid above 0 up to its clamp), then the reciprocal as vrcp14ps and one Newton step (2^−28 before
    /// rounding) instead of a division, which on this machine's cores issues once in several cycles. Within ~6e-7 of
    /// the exact value; NaN stays NaN. <c>VectorExpTests</c> checks it against Math.Exp.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Sigmoid(Vector512<float> x)
    {
        var e = Exp2NonPositive(Vector512.MinNative(Vector512.Create(SigmoidTop), x * Vector512.Create(-Log2E)));
        var d = Vector512<float>.One + e;
        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported) return Vector512<float>.One / d;
        var r = System.Runtime.Intrinsics.X86.Avx512F.Reciprocal14(d);
        // r·(2 − d·r) as r − (d·r − 1)·r.
        var error = Vector512.FusedMultiplyAdd(d, r, Vector512.Create(-1f));
        return System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAddNegated(error, r, r);
    }

    /// <inheritdoc cref="Sigmoid(Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Sigmoid(Vector256<float> x)
    {
        var e = Exp2NonPositive(Vector256.MinNative(Vector256.Create(SigmoidTop), x * Vector256.Create(-Log2E)));
        var d = Vector256<float>.One + e;
        if (!System.Runtime.Intrinsics.X86.Avx512F.VL.IsSupported) return Vector256<float>.One / d;
        var r = System.Runtime.Intrinsics.X86.Avx512F.VL.Reciprocal14(d);
        var error = Vector256.FusedMultiplyAdd(d, r, Vector256.Create(-1f));
        return r - error * r;
    }

    // 2^f on |f| ≤ 1/2, degree 3: least squares on the relative error, reweighted to near minimax, 7.5e-5.
    internal const float C0 = 0.9999281167984009f, C1 = 0.6932609677314758f, C2 = 0.24261033535003662f, C3 = 0.05517134442925453f;

    /// <summary>
    /// The sigmoid for results rounded to bf16 (SwiGLU's bf16 gate): 2^(−x·log2 e) by a degree-3 polynomial (7.5e-5)
    /// and the reciprocal as vrcp14ps alone (2^−14), within 1.5e-4 relative of the exact value, a thirteenth of what
    /// bf16's rounding adds (2^−9), for four operations fewer than <see cref="Sigmoid(Vector512{float})"/>'s fifteen.
    /// NaN stays NaN. <c>VectorExpTests</c> checks it against Math.Exp.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> SigmoidForBf16(Vector512<float> x)
    {
        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported) return Sigmoid(x);
        // x second: vminps/vmaxps return their second operand when either is NaN, so NaN passes through.
        var t = Vector512.MaxNative(Vector512.Create(-150f), Vector512.MinNative(Vector512.Create(SigmoidTop), x * Vector512.Create(-Log2E)));
        var n = Vector512.Round(t);
        var f = t - n;
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(C3), f, Vector512.Create(C2));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(C1));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(C0));
        return System.Runtime.Intrinsics.X86.Avx512F.Reciprocal14(Vector512<float>.One + System.Runtime.Intrinsics.X86.Avx512F.Scale(p, n));
    }

    /// <inheritdoc cref="SigmoidForBf16(Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> SigmoidForBf16(Vector256<float> x)
    {
        if (!System.Runtime.Intrinsics.X86.Avx512F.VL.IsSupported) return Sigmoid(x);
        var t = Vector256.MaxNative(Vector256.Create(-150f), Vector256.MinNative(Vector256.Create(SigmoidTop), x * Vector256.Create(-Log2E)));
        var n = Vector256.Round(t);
        var f = t - n;
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(C3), f, Vector256.Create(C2));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(C1));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(C0));
        return System.Runtime.Intrinsics.X86.Avx512F.VL.Reciprocal14(Vector256<float>.One + System.Runtime.Intrinsics.X86.Avx512F.VL.Scale(p, n));
    }

    /// <summary>The same on one float, for tails (so a tail element agrees with its vector neighbours to rounding).</summary>
    public static float Sigmoid(float x)
    {
        if (float.IsNaN(x)) return x;
        return 1f / (1f + Exp2NonPositive(Math.Min(SigmoidTop, x * -Log2E)));
    }

    /// <summary>The same polynomial on one float, for row tails.</summary>
    public static float Exp2NonPositive(float t)
    {
        if (float.IsNaN(t)) return t;
        float tc = Math.Max(t, -150f);
        float n = MathF.Round(tc), f = tc - n;
        float p = MathF.FusedMultiplyAdd(E5, f, E4);
        p = MathF.FusedMultiplyAdd(p, f, E3);
        p = MathF.FusedMultiplyAdd(p, f, E2);
        p = MathF.FusedMultiplyAdd(p, f, E1);
        p = MathF.FusedMultiplyAdd(p, f, E0);
        return MathF.ScaleB(p, (int)n);
    }

    /// <summary>The same arithmetic on one float, for row tails (so a tail element agrees with its vector neighbours).</summary>
    public static float Exp(float x)
    {
        if (float.IsNaN(x)) return x;
        float xc = Math.Min(Math.Max(x, Lo), Hi);
        float n = MathF.Floor(MathF.FusedMultiplyAdd(xc, Log2E, 0.5f));
        float r = MathF.FusedMultiplyAdd(n, -Ln2Hi, xc);
        r = MathF.FusedMultiplyAdd(n, -Ln2Lo, r);
        float p = MathF.FusedMultiplyAdd(P0, r, P1);
        p = MathF.FusedMultiplyAdd(p, r, P2);
        p = MathF.FusedMultiplyAdd(p, r, P3);
        p = MathF.FusedMultiplyAdd(p, r, P4);
        p = MathF.FusedMultiplyAdd(p, r, P5);
        p = MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(p, r, 1f), r, 1f);
        int ni = (int)n, half = ni >> 1;
        return p * BitConverter.Int32BitsToSingle((half + 127) << 23) * BitConverter.Int32BitsToSingle((ni - half + 127) << 23);
    }
}

/// <summary>Horizontal sums of four lanes (Vector512.Sum and Vector256.Sum compile to ~25 shuffles and adds here).</summary>
internal static class VectorSums
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vector128<float> v)
    {
        if (System.Runtime.Intrinsics.X86.Sse3.IsSupported)
        {
            var h = System.Runtime.Intrinsics.X86.Sse3.HorizontalAdd(v, v);
            return System.Runtime.Intrinsics.X86.Sse3.HorizontalAdd(h, h).ToScalar();
        }
        return Vector128.Sum(v);
    }

    /// <summary>(Σ a, Σ b, Σ c, Σ d) of four vectors of four lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Sum4(Vector128<float> a, Vector128<float> b, Vector128<float> c, Vector128<float> d)
    {
        if (System.Runtime.Intrinsics.X86.Sse3.IsSupported)
        {
            var ab = System.Runtime.Intrinsics.X86.Sse3.HorizontalAdd(a, b);
            var cd = System.Runtime.Intrinsics.X86.Sse3.HorizontalAdd(c, d);
            return System.Runtime.Intrinsics.X86.Sse3.HorizontalAdd(ab, cd);
        }
        return Vector128.Create(Vector128.Sum(a), Vector128.Sum(b), Vector128.Sum(c), Vector128.Sum(d));
    }

    /// <summary>(Σ a, Σ b, ..., Σ h) of eight vectors of eight lanes: two rounds of horizontal adds, then the halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Sum8(Vector256<float> a, Vector256<float> b, Vector256<float> c, Vector256<float> d,
        Vector256<float> e, Vector256<float> f, Vector256<float> g, Vector256<float> h)
    {
        if (System.Runtime.Intrinsics.X86.Avx.IsSupported)
        {
            // vhaddps pairs lanes within each 128-bit half: after two rounds the lower half holds the partial sums
            // (a, b, c, d) of lanes 0-3 and the upper half those of lanes 4-7.
            var abcd = System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(
                System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(a, b), System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(c, d));
            var efgh = System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(
                System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(e, f), System.Runtime.Intrinsics.X86.Avx.HorizontalAdd(g, h));
            return System.Runtime.Intrinsics.X86.Avx.Permute2x128(abcd, efgh, 0x20) + System.Runtime.Intrinsics.X86.Avx.Permute2x128(abcd, efgh, 0x31);
        }
        return Vector256.Create(Vector256.Sum(a), Vector256.Sum(b), Vector256.Sum(c), Vector256.Sum(d),
            Vector256.Sum(e), Vector256.Sum(f), Vector256.Sum(g), Vector256.Sum(h));
    }
}

/// <summary>
/// f32 → bf16 round-to-nearest-even in 32-bit lanes, the result in the lane's upper half (the lower half is
/// discarded by the shift of a single store or by <see cref="Merge(Vector512{uint}, Vector512{uint})"/>): every bf16
/// store of <see cref="IVec{TV}"/>.
/// </summary>
internal static class Bf16Rounding
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> Rounded(Vector512<uint> bits) => bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> Rounded(Vector256<uint> bits) => bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256<uint>.One);

    /// <summary>As <see cref="Rounded(Vector512{uint})"/>, but a NaN keeps its upper half with the quiet bit set (as <see cref="FloatBits.ToBF16"/>) where rounding could carry it into an infinity.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> WithNaN(Vector512<uint> bits)
    {
        var isNaN = Vector512.GreaterThan(bits & Vector512.Create(0x7FFF_FFFFu), Vector512.Create(0x7F80_0000u));
        return Vector512.ConditionalSelect(isNaN, bits | Vector512.Create(0x0040_0000u), Rounded(bits));
    }

    /// <inheritdoc cref="WithNaN(Vector512{uint})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> WithNaN(Vector256<uint> bits)
    {
        var isNaN = Vector256.GreaterThan(bits & Vector256.Create(0x7FFF_FFFFu), Vector256.Create(0x7F80_0000u));
        return Vector256.ConditionalSelect(isNaN, bits | Vector256.Create(0x0040_0000u), Rounded(bits));
    }

    /// <summary>The even elements' bf16 from <paramref name="even"/>'s upper halves into the lower halves, the odd ones' kept in place: one vpternlogd after the shift.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> Merge(Vector512<uint> even, Vector512<uint> odd) =>
        Vector512.ConditionalSelect(Vector512.Create(0xFFFF_0000u), odd, even >> 16);

    /// <inheritdoc cref="Merge(Vector512{uint}, Vector512{uint})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> Merge(Vector256<uint> even, Vector256<uint> odd) =>
        Vector256.ConditionalSelect(Vector256.Create(0xFFFF_0000u), odd, even >> 16);
}

internal unsafe struct V512 : IVec<V512>
{
    public Vector512<float> V;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private V512(Vector512<float> v) => V = v;

    public static int Count => 16;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Splat(float value) => new(Vector512.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 LoadF32(float* p) => new(Vector512.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 LoadBf16(ushort* p) =>
        new(Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load(p).ToVector512Unsafe()), 16).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreF32(V512 v, float* p) => v.V.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBf16(V512 v, ushort* p) => StoreUpperHalves(Bf16Rounding.WithNaN(v.V.AsUInt32()), p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBf16NoNaN(V512 v, ushort* p) => StoreUpperHalves(Bf16Rounding.Rounded(v.V.AsUInt32()), p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreUpperHalves(Vector512<uint> rounded, ushort* p)
    {
        var result = rounded >> 16;
        // vpmovdw: the low halves of 16 lanes in one instruction (Vector512 is only accelerated on x86 with AVX-512).
        if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported) System.Runtime.Intrinsics.X86.Avx512F.ConvertToVector256UInt16(result).Store(p);
        else Vector512.Narrow(result, result).GetLower().Store(p);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 LoadBf16Even(ushort* p) => new((Vector512.Load((uint*)p) << 16).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 LoadBf16Odd(ushort* p) => new((Vector512.Load((uint*)p) & Vector512.Create(0xFFFF_0000u)).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBf16Pair(V512 even, V512 odd, ushort* p)
    {
        uint* q = (uint*)p;
        Vector512.Store(Bf16Rounding.Merge(Bf16Rounding.WithNaN(even.V.AsUInt32()), Bf16Rounding.WithNaN(odd.V.AsUInt32())), q);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBf16PairNoNaN(V512 even, V512 odd, ushort* p)
    {
        uint* q = (uint*)p;
        Vector512.Store(Bf16Rounding.Merge(Bf16Rounding.Rounded(even.V.AsUInt32()), Bf16Rounding.Rounded(odd.V.AsUInt32())), q);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Add(V512 a, V512 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Multiply(V512 a, V512 b) => new(a.V * b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Divide(V512 a, V512 b) => new(a.V / b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Sqrt(V512 a) => new(Vector512.Sqrt(a.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Fma(V512 a, V512 b, V512 c) => new(Vector512.FusedMultiplyAdd(a.V, b.V, c.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Max(V512 a, V512 b) => new(Vector512.MaxNative(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(V512 v) => VectorSums.Sum(Fold(v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Fold(V512 v)
    {
        var half = v.V.GetLower() + v.V.GetUpper();
        return half.GetLower() + half.GetUpper();
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Fold256(V512 v) => v.V.GetLower() + v.V.GetUpper();
    public static float MaxAcross(V512 v) => V256.MaxAcross(Vector256.MaxNative(v.V.GetLower(), v.V.GetUpper()));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Exp(V512 x) => new(VectorExp.Exp(x.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Exp2NonPositive(V512 t) => new(VectorExp.Exp2NonPositive(t.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Sigmoid(V512 x) => new(VectorExp.Sigmoid(x.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 SigmoidForBf16(V512 x) => new(VectorExp.SigmoidForBf16(x.V));
}

internal unsafe struct V256 : IVec<V256>
{
    public Vector256<float> V;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private V256(Vector256<float> v) => V = v;

    public static int Count => 8;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Splat(float value) => new(Vector256.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 LoadF32(float* p) => new(Vector256.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 LoadBf16(ushort* p) =>
        new(Vector256.ShiftLeft(Vector256.WidenLower(Vector128.Load(p).ToVector256Unsafe()), 16).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreF32(V256 v, float* p) => v.V.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBf16(V256 v, ushort* p) => StoreUpperHalves(Bf16Rounding.WithNaN(v.V.AsUInt32()), p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBf16NoNaN(V256 v, ushort* p) => StoreUpperHalves(Bf16Rounding.Rounded(v.V.AsUInt32()), p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreUpperHalves(Vector256<uint> rounded, ushort* p)
    {
        var result = rounded >> 16;
        Vector128.Narrow(result.GetLower(), result.GetUpper()).Store(p);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 LoadBf16Even(ushort* p) => new((Vector256.Load((uint*)p) << 16).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 LoadBf16Odd(ushort* p) => new((Vector256.Load((uint*)p) & Vector256.Create(0xFFFF_0000u)).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBf16Pair(V256 even, V256 odd, ushort* p)
    {
        uint* q = (uint*)p;
        Vector256.Store(Bf16Rounding.Merge(Bf16Rounding.WithNaN(even.V.AsUInt32()), Bf16Rounding.WithNaN(odd.V.AsUInt32())), q);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBf16PairNoNaN(V256 even, V256 odd, ushort* p)
    {
        uint* q = (uint*)p;
        Vector256.Store(Bf16Rounding.Merge(Bf16Rounding.Rounded(even.V.AsUInt32()), Bf16Rounding.Rounded(odd.V.AsUInt32())), q);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Add(V256 a, V256 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Multiply(V256 a, V256 b) => new(a.V * b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Divide(V256 a, V256 b) => new(a.V / b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Sqrt(V256 a) => new(Vector256.Sqrt(a.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Fma(V256 a, V256 b, V256 c) => new(Vector256.FusedMultiplyAdd(a.V, b.V, c.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Max(V256 a, V256 b) => new(Vector256.MaxNative(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(V256 v) => VectorSums.Sum(Fold(v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Fold(V256 v) => v.V.GetLower() + v.V.GetUpper();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Fold256(V256 v) => v.V;
    public static float MaxAcross(V256 v) => MaxAcross(v.V);
    internal static float MaxAcross(Vector256<float> v)
    {
        var m = Vector128.MaxNative(v.GetLower(), v.GetUpper());
        return Math.Max(Math.Max(m[0], m[1]), Math.Max(m[2], m[3]));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Exp(V256 x) => new(VectorExp.Exp(x.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Exp2NonPositive(V256 t) => new(VectorExp.Exp2NonPositive(t.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Sigmoid(V256 x) => new(VectorExp.Sigmoid(x.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 SigmoidForBf16(V256 x) => new(VectorExp.SigmoidForBf16(x.V));
}
