using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// Embedding gather: out[t, :] = table[ids[t], :]. ids: (tokens) i32; table: (vocab, hidden) f32, bf16 or f16;
/// output: (tokens, hidden), the table's dtype. Ids outside [0, vocab) give a zero row. A copy: bitwise exact.
/// </summary>
[KernelOp("embedding", "embedding.cu")]
public static unsafe class Embedding
{
    private const string Op = "embedding";
    private static readonly EntryPoints Entry = new("embedding_fwd");

    /// <summary>kernels/embedding.cu EmbeddingArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct EmbeddingArgs
    {
        public ulong Ids, Table, Out;
        public int Tokens, Hidden, Vocab;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor ids, Tensor table, Tensor output)
    {
        using var traced = Tracer.Kernel(Op, ids, table, output);
        var (tokens, hidden, vocab) = Shapes(ids, table, output);
        if (OpLaunch.LauncherOf(table) is { } launcher)
        {
            if (tokens == 0 || hidden == 0) return;
            var args = new EmbeddingArgs { Ids = ids.Pointer, Table = table.Pointer, Out = output.Pointer, Tokens = tokens, Hidden = hidden, Vocab = vocab };
            launcher.Launch("embedding.cu", Entry[table.DType], new Gpu.Dim3(OpLaunch.RowGrid(launcher, tokens)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu(ids, table, output, tokens, hidden, vocab);
    }

    /// <summary>The checks of the gather (and of its backward, with dTable for table and dOut for output): (tokens, hidden, vocab).</summary>
    internal static (int Tokens, int Hidden, int Vocab) Shapes(Tensor ids, Tensor table, Tensor output)
    {
        OpShapes.Common(Op, ("ids", ids), ("table", table), ("output", output));
        OpShapes.Require(ids.DType == DType.I32, Op, $"ids must be i32, got {ids.DType.Name()}");
        OpShapes.Require(table.Rank == 2, Op, $"table must be (vocab, hidden), got {table}");
        OpShapes.FloatType(Op, "table", table, DType.F32, DType.BF16, DType.F16);
        OpShapes.Require(output.DType == table.DType, Op, $"output dtype {output.DType.Name()} differs from table {table.DType.Name()}");
        int tokens = checked((int)ids.Count), hidden = table.Dim(1);
        OpShapes.Require(output.Count == (long)tokens * hidden, Op, $"output must hold ({tokens}, {hidden}), got {output}");
        return (tokens, hidden, table.Dim(0));
    }

    private static void Cpu(Tensor ids, Tensor table, Tensor output, int tokens, int hidden, int vocab)
    {
        int elementSize = table.DType.SizeOf();
        int* idp = (int*)ids.Pointer;
        byte* src = (byte*)table.Pointer, dst = (byte*)output.Pointer;
        long rowBytes = (long)hidden * elementSize;
        CpuParallel.For(tokens, hidden, (start, end) =>
        {
            for (int t = start; t < end; t++)
            {
                var row = new Span<byte>(dst + t * rowBytes, checked((int)rowBytes));
                int id = idp[t];
                if ((uint)id < (uint)vocab) new ReadOnlySpan<byte>(src + id * rowBytes, row.Length).CopyTo(row);
                else row.Clear();
            }
        });
    }

    /// <summary>The float64 reference: out[t, :] = table[ids[t], :]; ids out of range give zeros.</summary>
    public static double[] Reference(int[] ids, float[] table, int vocab, int hidden)
    {
        var output = new double[ids.Length * hidden];
        for (int t = 0; t < ids.Length; t++)
        {
            if ((uint)ids[t] >= (uint)vocab) continue;
            for (int j = 0; j < hidden; j++) output[t * hidden + j] = table[(long)ids[t] * hidden + j];
        }
        return output;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16, DType.F16 })
            foreach (var (tokens, vocab, hidden) in new[] { (0, 5, 8), (1, 7, 1), (33, 50, 31), (100, 1000, 257) })
                yield return Case(dt, tokens, vocab, hidden);
    }

    private static KernelCase Case(DType dt, int tokens, int vocab, int hidden) =>
        new(Op, dt, $"tokens={tokens} vocab={vocab} hidden={hidden}", (device, seed) =>
        {
            using var s = new Scope(device);
            // One id past the vocabulary (when there are tokens) checks the zero-row rule.
            var ids = RandomInts(seed, 1, tokens, vocab);
            if (tokens > 2) ids[tokens / 2] = vocab;
            var table = Random(seed, 2, (long)vocab * hidden, dt);
            var output = s.Poisoned(dt, tokens, hidden);
            Run(s.Ints(ids, tokens), s.Floats(table, dt, vocab, hidden), output);
            return Compare(output, Reference(ids, table, vocab, hidden), dt);
        });
}
