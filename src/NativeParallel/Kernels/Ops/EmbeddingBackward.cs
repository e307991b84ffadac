using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Backward of the embedding gather out[t, :] = table[ids[t], :]: dTable[v, :] += Σ dOut[t, :] over the tokens t
/// with ids[t] == v, summed in token order (bitwise deterministic run to run; no atomics); ids outside [0, vocab)
/// are ignored. ids: (tokens) i32; dOut: (tokens, hidden); dTable: (vocab, hidden); dOut and dTable one dtype
/// (f32 or bf16). The device kernel adds in the table's dtype token by token (a bf16 table rounds after every add);
/// the CPU path adds in f32 and rounds once.
/// </summary>
[KernelOp("embedding_bwd", "embedding.cu")]
public static unsafe class EmbeddingBackward
{
    private const string Op = "embedding_bwd";
    private static readonly EntryPoints Entry = new("embedding_bwd");

    /// <summary>kernels/embedding.cu EmbeddingBwdArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct EmbeddingBwdArgs
    {
        public ulong Ids, DOut, DTable;
        public int Tokens, Hidden, Vocab, Parts;
    }

    /// <summary>Runs on the tensors' device; dTable is accumulated.</summary>
    public static void Run(Tensor ids, Tensor dOut, Tensor dTable)
    {
        using var traced = Tracer.Kernel("embedding_bwd", ids, dOut, dTable);
        OpShapes.Require(dTable.DType is DType.F32 or DType.BF16, Op, $"dTable has dtype {dTable.DType.Name()}; supported: f32, bf16");
        var (tokens, hidden, vocab) = Embedding.Shapes(ids, dTable, dOut);
        if (tokens == 0 || hidden == 0 || vocab == 0) return;
        if (OpLaunch.LauncherOf(dTable) is { } launcher)
        {
            uint columnBlocks = OpLaunch.Tiles(hidden, OpLaunch.Block);
            // Split the vocabulary so the grid fills the device; every block still reads all ids (cheap, broadcast).
            long wanted = Math.Max(1, launcher.MultiprocessorCount) * 8L;
            int parts = (int)Math.Clamp((wanted + columnBlocks - 1) / columnBlocks, 1, Math.Min(vocab, 65535));
            var args = new EmbeddingBwdArgs { Ids = ids.Pointer, DOut = dOut.Pointer, DTable = dTable.Pointer, Tokens = tokens, Hidden = hidden, Vocab = vocab, Parts = parts };
            launcher.Launch("embedding.cu", Entry[dTable.DType], new Gpu.Dim3(columnBlocks, (uint)parts), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(ids, dOut, dTable, tokens, hidden, vocab);
    }

    private static void Cpu(Tensor ids, Tensor dOut, Tensor dTable, int tokens, int hidden, int vocab)
    {
        int* idp = (int*)ids.Pointer;
        using var gv = F32View.Input(dOut);
        using var tv = F32View.InOut(dTable);
        float* g = gv.Pointer, table = tv.Pointer;
        // Tasks own disjoint vocabulary ranges and walk the tokens in order: each row's sum order is fixed.
        int parts = Math.Min(vocab, Environment.ProcessorCount * 4);
        CpuParallel.For(parts, (long)tokens * 2 + (long)tokens * hidden / parts, (start, end) =>
        {
            int lo = (int)((long)vocab * start / parts), hi = (int)((long)vocab * end / parts);
            for (int t = 0; t < tokens; t++)
            {
                int id = idp[t];
                if (id < lo || id >= hi) continue;
                var row = new Span<float>(table + (long)id * hidden, hidden);
                TensorPrimitives.Add(row, new ReadOnlySpan<float>(g + (long)t * hidden, hidden), row);
            }
        });
    }

    /// <summary>The float64 reference: dTable0 + the scattered sum.</summary>
    public static double[] Reference(int[] ids, float[] dOut, float[] dTable0, int vocab, int hidden)
    {
        var dTable = Array.ConvertAll(dTable0, v => (double)v);
        for (int t = 0; t < ids.Length; t++)
        {
            if ((uint)ids[t] >= (uint)vocab) continue;
            for (int j = 0; j < hidden; j++) dTable[(long)ids[t] * hidden + j] += dOut[(long)t * hidden + j];
        }
        return dTable;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (tokens, vocab, hidden) in new[] { (0, 4, 8), (1, 1, 1), (40, 7, 33), (300, 50, 260), (64, 1000, 64) })
                yield return Case(dt, tokens, vocab, hidden);
    }

    private static KernelCase Case(DType dt, int tokens, int vocab, int hidden) =>
        new(Op, dt, $"tokens={tokens} vocab={vocab} hidden={hidden}", (device, seed) =>
        {
            using var s = new Scope(device);
            // Ids in [-2, vocab + 2): repeats (tokens > vocab in most cases) and a few out of range.
            var ids = RandomInts(seed, 1, tokens, vocab + 4);
            for (int i = 0; i < ids.Length; i++) ids[i] -= 2;
            var dOut = Random(seed, 2, (long)tokens * hidden, dt);
            var table0 = Random(seed, 3, (long)vocab * hidden, dt);
            var dTable = s.Floats(table0, dt, vocab, hidden);
            Run(s.Ints(ids, tokens), s.Floats(dOut, dt, tokens, hidden), dTable);
            return Compare(dTable, Reference(ids, dOut, table0, vocab, hidden), dt);
        });
}
