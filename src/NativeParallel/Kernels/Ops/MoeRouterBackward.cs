using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Kernels.Cpu;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// The router's backward through Mixtral's routing (top-k of the router logits, then a softmax over those k):
/// dLogits[t, e] = p[t, j] · (dWeights[t, j] − Σᵢ p[t, i] · dWeights[t, i]) for the j with experts[t, j] = e, and 0
/// for an expert the token did not choose (the pick itself has no gradient). p, dWeights: (tokens, k) f32, p being
/// the forward's weights; experts: (tokens, k) i32, distinct within a row; dLogits: (tokens, nExperts), f32 or
/// bf16, overwritten. The router matmul's backward (<see cref="MatmulBackward"/>) follows.
/// </summary>
[KernelOp("moe_router_bwd", "moe.cu")]
public static unsafe class MoeRouterBackward
{
    private const string Op = "moe_router_bwd";
    private static readonly EntryPoints Entry = new(Op);

    /// <summary>kernels/moe.cu MoeRouterBwdArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct MoeRouterBwdArgs
    {
        public ulong P, DWeights, Experts, DLogits;
        public long Count;
        public int K, NExperts;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor p, Tensor dWeights, Tensor experts, Tensor dLogits)
    {
        using var traced = Tracer.Kernel(Op, p, dWeights, experts, dLogits);
        OpShapes.Require(p.Rank == 2 && dWeights.Rank == 2 && experts.Rank == 2 && dLogits.Rank == 2, Op,
            $"p, dWeights, experts and dLogits must be 2-D, got {p}, {dWeights}, {experts} and {dLogits}");
        OpShapes.Require(p.IsContiguous && dWeights.IsContiguous && experts.IsContiguous && dLogits.IsContiguous, Op, "every tensor must be contiguous");
        OpShapes.Require(p.DType == DType.F32 && dWeights.DType == DType.F32 && experts.DType == DType.I32, Op,
            $"p and dWeights must be f32 and experts i32, got {p}, {dWeights} and {experts}");
        OpShapes.Require(dLogits.DType is DType.F32 or DType.BF16, Op, $"dLogits must be f32 or bf16, got {dLogits.DType.Name()}");
        int tokens = p.Dim(0), k = p.Dim(1), n = dLogits.Dim(1);
        OpShapes.Require(dWeights.Dim(0) == tokens && dWeights.Dim(1) == k && experts.Dim(0) == tokens && experts.Dim(1) == k, Op,
            $"dWeights and experts must be ({tokens}, {k}) like p, got {dWeights} and {experts}");
        OpShapes.Require(dLogits.Dim(0) == tokens && k <= n, Op, $"dLogits must be ({tokens}, experts ≥ k = {k}), got {dLogits}");
        OpShapes.Require(p.Device == dLogits.Device && dWeights.Device == dLogits.Device && experts.Device == dLogits.Device, Op, "every tensor must be on one device");
        long count = (long)tokens * n;
        if (count == 0) return;
        if (OpLaunch.LauncherOf(dLogits) is { } launcher)
        {
            var args = new MoeRouterBwdArgs { P = p.Pointer, DWeights = dWeights.Pointer, Experts = experts.Pointer, DLogits = dLogits.Pointer, Count = count, K = k, NExperts = n };
            launcher.Launch("moe.cu", Entry[dLogits.DType], new Gpu.Dim3(OpLaunch.GridFor(launcher, count)), new Gpu.Dim3(OpLaunch.Block), 0, args);
            return;
        }
        Cpu((float*)p.Pointer, (float*)dWeights.Pointer, (int*)experts.Pointer, dLogits, tokens, k, n);
    }

    private static void Cpu(float* p, float* dWeights, int* experts, Tensor dLogits, int tokens, int k, int n)
    {
        using var ov = F32View.Output(dLogits);
        float* outs = ov.Pointer;
        CpuParallel.For(tokens, (long)n + 4L * k, (start, end) =>
        {
            for (int t = start; t < end; t++)
            {
                long at = (long)t * k;
                float mean = 0f;
                for (int j = 0; j < k; j++) mean += p[at + j] * dWeights[at + j];
                var row = new Span<float>(outs + (long)t * n, n);
                row.Clear();
                for (int j = 0; j < k; j++)
                {
                    int e = experts[at + j];
                    if ((uint)e < (uint)n) row[e] = p[at + j] * (dWeights[at + j] - mean);
                }
            }
        });
    }

    /// <summary>The float64 reference: dLogits (tokens, nExperts).</summary>
    public static double[] Reference(float[] p, float[] dWeights, int[] experts, int tokens, int k, int n)
    {
        var dLogits = new double[(long)tokens * n];
        for (int t = 0; t < tokens; t++)
        {
            double mean = 0;
            for (int j = 0; j < k; j++) mean += (double)p[t * k + j] * dWeights[t * k + j];
            for (int j = 0; j < k; j++) dLogits[(long)t * n + experts[t * k + j]] = p[t * k + j] * (dWeights[t * k + j] - mean);
        }
        return dLogits;
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        foreach (var dt in new[] { DType.F32, DType.BF16 })
            foreach (var (tokens, k, n) in new[] { (1, 1, 1), (7, 2, 5), (300, 2, 8), (33, 4, 60), (1000, 8, 257), (0, 2, 4) })
                yield return new KernelCase(Op, dt, $"tokens={tokens} k={k} experts={n}", (device, seed) =>
                {
                    using var s = new Scope(device);
                    var p = Random(seed, 1, (long)tokens * k, DType.F32, 0f, 1f);
                    var dWeights = Random(seed, 2, (long)tokens * k, DType.F32);
                    // k distinct experts per token: a random start and stride 1 around the ring of experts.
                    var starts = RandomInts(seed, 3, tokens, n);
                    var experts = new int[tokens * k];
                    for (int t = 0; t < tokens; t++)
                        for (int j = 0; j < k; j++) experts[t * k + j] = (starts[t] + j) % n;
                    var dLogits = s.Poisoned(dt, tokens, n);
                    Run(s.Floats(p, DType.F32, tokens, k), s.Floats(dWeights, DType.F32, tokens, k), s.Ints(experts, tokens, k), dLogits);
                    return Compare(dLogits, Reference(p, dWeights, experts, tokens, k, n), dt);
                });
    }
}
