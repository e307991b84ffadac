using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// One-token decode over a KV cache with grouped-query heads. q: (batch, hq, d); kCache, vCache: (batch, capacity,
/// hkv, d), hq a multiple of hkv; lengths: (batch) i32, the number of valid cache rows (the new token included),
/// each in 0..capacity; output: (batch, hq, d); one dtype (f32 or bf16), computed in f32; 1 ≤ d ≤
/// <see cref="KernelLimits.MaxHeadDim"/>. A sequence of length 0 gives zeros.
/// On a device, v2 (split keys, then a combine in split order) runs when a key row is 64, 128, 256 or 512 bytes and
/// q and the caches are 16-byte aligned; v1 (one block per head) otherwise.
/// </summary>
[KernelOp("attention_decode", "attention.cu")]
public static unsafe class AttentionDecode
{
    private const string Op = "attention_decode";
    private const uint Warps = AttentionPrefill.Warps;  // ATT_WARPS in attention.cu
    private static readonly EntryPoints Entry = new("attention_decode");
    private static readonly EntryPoints SplitEntry = new("attention_decode_split"), CombineEntry = new("attention_decode_combine");

    /// <summary>kernels/attention.cu AttentionDecodeArgs (v1).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct AttentionDecodeArgs
    {
        public ulong Q, KCache, VCache, Lengths, Out;
        public int Batch, Capacity, Hq, Hkv, D;
        public float Scale;
    }

    /// <summary>kernels/attention.cu AttentionDecodeSplitArgs (v2: split and combine).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct AttentionDecodeSplitArgs
    {
        public ulong Q, KCache, VCache, Lengths, Out, Partials;
        public int Batch, Capacity, Hq, Hkv, D, Splits, Chunk;
        public float Scale;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor q, Tensor kCache, Tensor vCache, Tensor lengths, Tensor output, float scale)
    {
        using var traced = Tracer.Kernel(Op, q, kCache, vCache, lengths, output);
        var s = Shapes(q, kCache, vCache, lengths, output);
        if (OpLaunch.LauncherOf(q) is { } launcher)
        {
            int heads = s.Batch * s.Hq;
            if (heads == 0) return;
            if (V2Fits(q, kCache, vCache, s.D))
            {
                Split(launcher, q, kCache, vCache, lengths, output, scale, s.Batch, s.Tk, s.Hq, s.Hkv, s.D);
                return;
            }
            var args = new AttentionDecodeArgs
            {
                Q = q.Pointer, KCache = kCache.Pointer, VCache = vCache.Pointer, Lengths = lengths.Pointer, Out = output.Pointer,
                Batch = s.Batch, Capacity = s.Tk, Hq = s.Hq, Hkv = s.Hkv, D = s.D, Scale = scale,
            };
            launcher.Launch("attention.cu", Entry[q.DType], new Gpu.Dim3(OpLaunch.RowGrid(launcher, heads)), new Gpu.Dim3(Warps * 32), 0, args);
            return;
        }
        var lens = lengths.ToInts();
        foreach (int len in lens)
            OpShapes.Require(len >= 0 && len <= s.Tk, Op, $"lengths must be in 0..{s.Tk} (the cache capacity), got {len}");
        // The CPU path: Kernels/Cpu/CpuAttention.cs (bf16 in registers, sequences split over key ranges).
        CpuAttention.Decode(q, kCache, vCache, lens, output, s, scale);
    }

    private static OpShapes.AttentionSizes Shapes(Tensor q, Tensor kCache, Tensor vCache, Tensor lengths, Tensor output)
    {
        OpShapes.Common(Op, ("q", q), ("k_cache", kCache), ("v_cache", vCache), ("lengths", lengths), ("output", output));
        OpShapes.FloatType(Op, "q", q, DType.F32, DType.BF16);
        OpShapes.Require(kCache.DType == q.DType && vCache.DType == q.DType && output.DType == q.DType, Op, "q, caches and output must share one dtype");
        OpShapes.Require(q.Rank == 3 && kCache.Rank == 4, Op, $"q must be (batch, hq, d) and caches (batch, capacity, hkv, d), got {q} and {kCache}");
        var s = new OpShapes.AttentionSizes(q.Dim(0), 1, kCache.Dim(1), q.Dim(1), kCache.Dim(2), q.Dim(2));
        OpShapes.Require(kCache.Dim(0) == s.Batch && kCache.Dim(3) == s.D, Op, $"k_cache {kCache} does not match q {q}");
        OpShapes.Require(vCache.Shape.SequenceEqual(kCache.Shape), Op, $"v_cache must have k_cache's shape, got {vCache}");
        OpShapes.Require(lengths.DType == DType.I32 && lengths.Count == s.Batch, Op, $"lengths must be i32 with {s.Batch} elements, got {lengths}");
        OpShapes.Require(output.Shape.SequenceEqual(q.Shape), Op, $"output must have q's shape {q}, got {output}");
        OpShapes.Require(s.Hkv > 0 && s.Hq % s.Hkv == 0, Op, $"query heads ({s.Hq}) must be a multiple of kv heads ({s.Hkv})");
        OpShapes.Require(s.D is > 0 and <= KernelLimits.MaxHeadDim, Op, $"head dimension must be in 1..{KernelLimits.MaxHeadDim}, got {s.D}");
        return s;
    }

    // Decode v2 holds a key row as d / N lanes of 16 bytes (N elements): d * size must be 64, 128, 256 or 512 bytes,
    // and the tensors it reads with 16-byte loads must be 16-byte aligned.
    private static bool V2Fits(Tensor q, Tensor kCache, Tensor vCache, int d)
    {
        int rowBytes = d * q.DType.SizeOf();
        return rowBytes is 64 or 128 or 256 or 512 && ((q.Pointer | kCache.Pointer | vCache.Pointer) & 15) == 0;
    }

    // One-warp blocks of the split decode resident per SM: 168 registers a thread on sm_90 (ATT_DEC_U 8) leave room
    // for 12 (NATIVEPARALLEL_DECODE_BLOCKS_PER_SM overrides it, to measure another GPU or kernel build).
    private static readonly int BlocksPerSm = int.TryParse(Tunables.Raw("NATIVEPARALLEL_DECODE_BLOCKS_PER_SM"), out int b) && b > 0 ? b : 12;

    private static void Split(Gpu.IKernelLauncher launcher, Tensor q, Tensor kCache, Tensor vCache, Tensor lengths, Tensor output, float scale,
        int batch, int capacity, int hq, int hkv, int d)
    {
        const int HeadsPerBlock = 4, MinChunk = 64;  // ATT_DEC_G in attention.cu
        long baseBlocks = (long)batch * hkv * ((hq / hkv + HeadsPerBlock - 1) / HeadsPerBlock);
        // As many splits as fill every SM exactly once: a grid of 1.45 waves ran 28 % slower than one wave on the
        // H200 (the last wave half empty). Chunks of at least 64 keys keep the partial states (d + 2 floats per split
        // and head) a small fraction of the K/V bytes.
        long want = Math.Max(1, launcher.MultiprocessorCount) * (long)BlocksPerSm / baseBlocks;
        int splits = (int)Math.Clamp(want, 1, Math.Clamp((capacity + MinChunk - 1) / MinChunk, 1, 65535));
        int chunk = Math.Max(1, (capacity + splits - 1) / splits);
        splits = Math.Max(1, (capacity + chunk - 1) / chunk);
        using var partials = Tensor.Empty(q.Device, DType.F32, checked(batch * hq * splits * (d + 2)));
        var args = new AttentionDecodeSplitArgs
        {
            Q = q.Pointer, KCache = kCache.Pointer, VCache = vCache.Pointer, Lengths = lengths.Pointer, Out = output.Pointer,
            Partials = partials.Pointer, Batch = batch, Capacity = capacity, Hq = hq, Hkv = hkv, D = d, Splits = splits,
            Chunk = chunk, Scale = scale,
        };
        launcher.Launch("attention.cu", SplitEntry[q.DType], new Gpu.Dim3((uint)baseBlocks, (uint)splits), new Gpu.Dim3(32), 0, args);
        launcher.Launch("attention.cu", CombineEntry[q.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, (long)batch * hq, Warps)),
            new Gpu.Dim3(Warps * 32), 0, args);
    }

    /// <summary>The float64 reference: one query token per sequence over the first lengths[b] rows of the KV cache.</summary>
    public static double[] Reference(float[] q, float[] kCache, float[] vCache, int[] lengths, int batch,
        int capacity, int hq, int hkv, int d, float scale)
    {
        var output = new double[(long)batch * hq * d];
        int group = hq / hkv;
        var scores = new double[capacity];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < hq; h++)
            {
                int kvHead = h / group;
                long qRow = ((long)b * hq + h) * d;
                AttentionPrefill.AttendRow(q, qRow, kCache, vCache, j => (((long)b * capacity + j) * hkv + kvHead) * d, lengths[b], d, scale,
                    scores, output, qRow);
            }
        return output;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (batch, capacity, hq, hkv, d, lengths) in new[]
                     {
                         (1, 1, 1, 1, 1, new[] { 1 }), (3, 40, 8, 2, 64, new[] { 1, 17, 40 }),
                         (2, 300, 4, 1, 128, new[] { 0, 300 }), (1, 1000, 2, 2, 33, new[] { 999 }),
                         // Sequences split over several key ranges and combined, beside short ones; d past a vector.
                         (2, 700, 8, 8, 40, new[] { 513, 77 }), (4, 600, 12, 3, 100, new[] { 600, 1, 299, 450 }),
                         (2, 333, 6, 2, 72, new[] { 333, 130 }),
                     })
                yield return Case(dt, batch, capacity, hq, hkv, d, lengths);
    }

    private static KernelCase Case(DType dt, int batch, int capacity, int hq, int hkv, int d, int[] lengths) =>
        new(Op, dt, $"batch={batch} capacity={capacity} hq={hq} hkv={hkv} d={d} lengths={string.Join('/', lengths)}", (device, seed) =>
        {
            using var s = new Scope(device);
            var q = Random(seed, 1, (long)batch * hq * d, dt);
            var k = Random(seed, 2, (long)batch * capacity * hkv * d, dt);
            var v = Random(seed, 3, (long)batch * capacity * hkv * d, dt);
            var output = s.Poisoned(dt, batch, hq, d);
            float scale = 1f / MathF.Sqrt(d);
            Run(s.Floats(q, dt, batch, hq, d), s.Floats(k, dt, batch, capacity, hkv, d),
                s.Floats(v, dt, batch, capacity, hkv, d), s.Ints(lengths, batch), output, scale);
            return Compare(output, Reference(q, k, v, lengths, batch, capacity, hq, hkv, d, scale), dt);
        });
}
