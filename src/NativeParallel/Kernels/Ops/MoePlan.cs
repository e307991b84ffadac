using System.Runtime.InteropServices;
using NativeParallel.Diagnostics;
using NativeParallel.Kernels.Check;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Ops;

/// <summary>
/// A stable bucket sort of MoE routing slots, the plan every token permutation follows: slot i goes to bucket
/// (keys[i] − keyBase) / divisor (an expert, or the rank owning it), slots of one bucket keep their index order,
/// and a slot whose bucket falls outside [0, buckets) is left out (position −1, not counted).
/// keys: (n) i32; counts: (buckets) i32; position: (n) i32, slot → sorted row; order: (n) i32, sorted row → slot,
/// −1 past the counted slots.
/// </summary>
[KernelOp("moe_plan", "moe.cu")]
public static unsafe class MoePlan
{
    private const string Op = "moe_plan";

    /// <summary>kernels/moe.cu MoePlanArgs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct MoePlanArgs
    {
        public ulong Keys, Counts, Position, Order;
        public int N, Buckets, KeyBase, Divisor;
    }

    /// <summary>Runs on the tensors' device.</summary>
    public static void Run(Tensor keys, int keyBase, int divisor, Tensor counts, Tensor position, Tensor order)
    {
        using var traced = Tracer.Kernel(Op, keys, counts, position, order);
        foreach (var (t, name) in new[] { (keys, "keys"), (counts, "counts"), (position, "position"), (order, "order") })
        {
            OpShapes.Require(t.DType == DType.I32 && t.IsContiguous, Op, $"{name} must be a contiguous i32 tensor, got {t}");
            OpShapes.Require(t.Device == keys.Device, Op, $"{name} is on {t.Device.Name}, keys on {keys.Device.Name}");
        }
        OpShapes.Require(divisor >= 1, Op, $"divisor must be at least 1, got {divisor}");
        long n = keys.Count;
        OpShapes.Require(position.Count == n && order.Count == n, Op, $"position and order need {n} elements (one per key), got {position.Count} and {order.Count}");
        OpShapes.Require(counts.Count >= 1 && n <= int.MaxValue, Op, $"counts needs at least one bucket, got {counts.Count}");
        int buckets = (int)counts.Count;
        if (OpLaunch.LauncherOf(keys) is { } launcher)
        {
            var args = new MoePlanArgs
            {
                Keys = keys.Pointer, Counts = counts.Pointer, Position = position.Pointer, Order = order.Pointer,
                N = (int)n, Buckets = buckets, KeyBase = keyBase, Divisor = divisor,
            };
            // One block walks every slot once per bucket, a chunk of blockDim at a time: wider for long prefills.
            uint threads = n >= 8192 ? 1024u : OpLaunch.Block;
            launcher.Launch("moe.cu", Op, new Gpu.Dim3(1), new Gpu.Dim3(threads), 0, args);
            return;
        }
        Cpu(new ReadOnlySpan<int>((int*)keys.Pointer, (int)n), keyBase, divisor, new Span<int>((int*)counts.Pointer, buckets),
            new Span<int>((int*)position.Pointer, (int)n), new Span<int>((int*)order.Pointer, (int)n));
    }

    private static void Cpu(ReadOnlySpan<int> keys, int keyBase, int divisor, Span<int> counts, Span<int> position, Span<int> order)
    {
        counts.Clear();
        foreach (int key in keys)
            if (Bucket(key, keyBase, divisor, counts.Length) is var b and >= 0) counts[b]++;
        Span<int> next = counts.Length <= 1024 ? stackalloc int[counts.Length] : new int[counts.Length];
        for (int b = 1; b < counts.Length; b++) next[b] = next[b - 1] + counts[b - 1];
        order.Fill(-1);
        for (int i = 0; i < keys.Length; i++)
        {
            int b = Bucket(keys[i], keyBase, divisor, counts.Length);
            position[i] = b < 0 ? -1 : next[b]++;
            if (b >= 0) order[position[i]] = i;
        }
    }

    private static int Bucket(int key, int keyBase, int divisor, int buckets)
    {
        long shifted = (long)key - keyBase;
        if (shifted < 0) return -1;
        long b = shifted / divisor;
        return b < buckets ? (int)b : -1;
    }

    /// <summary>The reference: for each bucket in turn, its slots in index order.</summary>
    public static (int[] Counts, int[] Position, int[] Order) Reference(int[] keys, int keyBase, int divisor, int buckets)
    {
        var counts = new int[buckets];
        var position = Enumerable.Repeat(-1, keys.Length).ToArray();
        var order = Enumerable.Repeat(-1, keys.Length).ToArray();
        int row = 0;
        for (int b = 0; b < buckets; b++)
            for (int i = 0; i < keys.Length; i++)
            {
                if (Bucket(keys[i], keyBase, divisor, buckets) != b) continue;
                counts[b]++;
                position[i] = row;
                order[row++] = i;
            }
        return (counts, position, order);
    }

    internal static IEnumerable<KernelCase> Cases()
    {
        // (slots, key range, key base, divisor, buckets): experts of one device, ranks owning 2 experts each, a
        // rank's share of received keys (base > 0, others out of range), more buckets than threads, no slots, and a
        // long prefill's slots (the wide block).
        foreach (var (n, range, keyBase, divisor, buckets) in new[]
                 { (16, 4, 0, 1, 4), (1000, 8, 0, 2, 4), (333, 12, 4, 1, 4), (700, 300, 0, 1, 300), (0, 1, 0, 1, 3), (1, 1, 0, 1, 1), (9000, 8, 0, 1, 8) })
            yield return new KernelCase(Op, DType.I32, $"n={n} keys<{range} base={keyBase} divisor={divisor} buckets={buckets}", (device, seed) =>
            {
                using var s = new Scope(device);
                var keys = RandomInts(seed, 1, n, range);
                var counts = s.Poisoned(DType.I32, buckets);
                var position = s.Poisoned(DType.I32, n);
                var order = s.Poisoned(DType.I32, n);
                Run(s.Ints(keys, n), keyBase, divisor, counts, position, order);
                var expected = Reference(keys, keyBase, divisor, buckets);
                string mismatch = ExactMismatch(counts.ToInts(), expected.Counts, "counts");
                if (mismatch.Length == 0) mismatch = ExactMismatch(position.ToInts(), expected.Position, "position");
                if (mismatch.Length == 0) mismatch = ExactMismatch(order.ToInts(), expected.Order, "order");
                return (0, 0, mismatch);
            });
    }
}
