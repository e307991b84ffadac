using NativeParallel.Tensors;

namespace NativeParallel.Kernels;

/// <summary>
/// Argument checks shared by every device's kernels: each returns the sizes the op needs or throws an
/// <see cref="ArgumentException"/> naming the op, the tensor and what was expected.
/// </summary>
internal static class OpShapes
{
    public static void Require(bool condition, string op, string message)
    {
        if (!condition) throw new ArgumentException($"{op}: {message}");
    }

    private static void Common(string op, params (string Name, Tensor T)[] tensors)
    {
        var device = tensors[0].T.Device;
        foreach (var (name, t) in tensors)
        {
            Require(t.IsContiguous, op, $"{name} must be contiguous, got a strided view {t}");
            Require(ReferenceEquals(t.Device, device), op, $"{name} is on {t.Device.Name}, the others on {device.Name}");
        }
    }

    private static void FloatType(string op, string name, Tensor t, params DType[] allowed)
    {
        Require(Array.IndexOf(allowed, t.DType) >= 0, op,
            $"{name} has dtype {t.DType.Name()}; supported: {string.Join(", ", allowed.Select(d => d.Name()))}");
    }

    /// <summary>Rows and width of a tensor seen as (rows, last dimension).</summary>
    public static (int Rows, int Width) RowsOf(Tensor t)
    {
        int width = t.Rank == 0 ? 1 : t.Dim(-1);
        int rows = width == 0 ? 0 : checked((int)(t.Count / width));
        return (rows, width);
    }

    public static (int Tokens, int Hidden, int Vocab) Embedding(Tensor ids, Tensor table, Tensor output)
    {
        const string op = "embedding";
        Common(op, ("ids", ids), ("table", table), ("output", output));
        Require(ids.DType == DType.I32, op, $"ids must be i32, got {ids.DType.Name()}");
        Require(table.Rank == 2, op, $"table must be (vocab, hidden), got {table}");
        FloatType(op, "table", table, DType.F32, DType.BF16, DType.F16);
        Require(output.DType == table.DType, op, $"output dtype {output.DType.Name()} differs from table {table.DType.Name()}");
        int tokens = checked((int)ids.Count), hidden = table.Dim(1);
        Require(output.Count == (long)tokens * hidden, op, $"output must hold ({tokens}, {hidden}), got {output}");
        return (tokens, hidden, table.Dim(0));
    }

    public static (int Rows, int D) Norm(string op, Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        Common(op, ("x", x), ("weight", weight), ("y", y));
        FloatType(op, "x", x, DType.F32, DType.BF16);
        Require(weight.DType == x.DType && y.DType == x.DType, op, "x, weight and y must share one dtype");
        var (rows, d) = RowsOf(x);
        Require(weight.Count == d, op, $"weight must have {d} elements (the last dimension of x), got {weight}");
        Require(y.Count == x.Count, op, $"y must match x {x}, got {y}");
        if (bias is not null)
        {
            Require(bias.DType == x.DType && bias.Count == d, op, $"bias must be {x.DType.Name()} with {d} elements, got {bias}");
            Require(bias.IsContiguous && ReferenceEquals(bias.Device, x.Device), op, "bias must be contiguous and on x's device");
        }
        return (rows, d);
    }

    public static (int Tokens, int Heads, int D) Rope(Tensor x, Tensor positions)
    {
        const string op = "rope";
        Common(op, ("x", x), ("positions", positions));
        FloatType(op, "x", x, DType.F32, DType.BF16);
        Require(x.Rank == 3, op, $"x must be (tokens, heads, d), got {x}");
        Require(x.Dim(2) % 2 == 0, op, $"head dimension must be even, got {x.Dim(2)}");
        Require(positions.DType == DType.I32 && positions.Count == x.Dim(0), op, $"positions must be i32 with {x.Dim(0)} elements, got {positions}");
        return (x.Dim(0), x.Dim(1), x.Dim(2));
    }

    public static (int M, int N, int K) Matmul(Tensor a, Tensor b, Tensor c)
    {
        const string op = "matmul";
        Common(op, ("a", a), ("b", b), ("c", c));
        Require(a.Rank == 2 && b.Rank == 2 && c.Rank == 2, op, $"a (m, k), b (n, k), c (m, n) must be 2-D, got {a}, {b}, {c}");
        FloatType(op, "a", a, DType.F32, DType.BF16);
        Require(b.DType == a.DType, op, $"a and b must share one dtype, got {a.DType.Name()} and {b.DType.Name()}");
        FloatType(op, "c", c, DType.F32, DType.BF16);
        int m = a.Dim(0), k = a.Dim(1), n = b.Dim(0);
        Require(b.Dim(1) == k, op, $"b must be (n, {k}), got {b}");
        Require(c.Dim(0) == m && c.Dim(1) == n, op, $"c must be ({m}, {n}), got {c}");
        // Row tiles go on grid.y, which CUDA caps at 65535 blocks of 64 rows.
        Require(m <= 65535 * 64, op, $"m = {m} exceeds {65535 * 64} rows; split the batch");
        return (m, n, k);
    }

    public static (int Rows, int N) AddBias(Tensor x, Tensor bias)
    {
        const string op = "add_bias";
        Common(op, ("x", x), ("bias", bias));
        FloatType(op, "x", x, DType.F32, DType.BF16);
        var (rows, n) = RowsOf(x);
        Require(bias.DType == x.DType && bias.Count == n, op, $"bias must be {x.DType.Name()} with {n} elements, got {bias}");
        return (rows, n);
    }

    public static long Elementwise(string op, Tensor a, Tensor? b, Tensor output)
    {
        if (b is null) Common(op, ("x", a), ("output", output));
        else Common(op, ("a", a), ("b", b), ("output", output));
        FloatType(op, "input", a, DType.F32, DType.BF16);
        Require((b is null || (b.DType == a.DType && b.Count == a.Count)) && output.DType == a.DType && output.Count == a.Count,
            op, $"inputs and output must share dtype and element count, got {a}, {b?.ToString() ?? "-"}, {output}");
        return a.Count;
    }

    public static (int Rows, int N) Softmax(Tensor x, Tensor y)
    {
        const string op = "softmax";
        Common(op, ("x", x), ("y", y));
        FloatType(op, "x", x, DType.F32, DType.BF16);
        Require(y.DType == x.DType && y.Count == x.Count, op, $"y must match x {x}, got {y}");
        return RowsOf(x);
    }

    public readonly record struct AttentionSizes(int Batch, int Tq, int Tk, int Hq, int Hkv, int D);

    public static AttentionSizes AttentionPrefill(Tensor q, Tensor k, Tensor v, Tensor output, int queryStart)
    {
        const string op = "attention_prefill";
        Common(op, ("q", q), ("k", k), ("v", v), ("output", output));
        FloatType(op, "q", q, DType.F32, DType.BF16);
        Require(k.DType == q.DType && v.DType == q.DType && output.DType == q.DType, op, "q, k, v and output must share one dtype");
        Require(q.Rank == 4 && k.Rank == 4, op, $"q must be (batch, tq, hq, d) and k, v (batch, tk, hkv, d), got {q} and {k}");
        var s = new AttentionSizes(q.Dim(0), q.Dim(1), k.Dim(1), q.Dim(2), k.Dim(2), q.Dim(3));
        Require(k.Dim(0) == s.Batch && k.Dim(3) == s.D, op, $"k {k} does not match q {q}");
        Require(v.Rank == 4 && v.Shape.SequenceEqual(k.Shape), op, $"v must have k's shape {k}, got {v}");
        Require(output.Shape.SequenceEqual(q.Shape), op, $"output must have q's shape {q}, got {output}");
        Require(s.Hkv > 0 && s.Hq % s.Hkv == 0, op, $"query heads ({s.Hq}) must be a multiple of kv heads ({s.Hkv})");
        Require(s.D is > 0 and <= KernelLimits.MaxHeadDim, op, $"head dimension must be in 1..{KernelLimits.MaxHeadDim}, got {s.D}");
        Require(queryStart >= 0, op, $"queryStart must be non-negative, got {queryStart}");
        return s;
    }

    public static AttentionSizes AttentionDecode(Tensor q, Tensor kCache, Tensor vCache, Tensor lengths, Tensor output)
    {
        const string op = "attention_decode";
        Common(op, ("q", q), ("k_cache", kCache), ("v_cache", vCache), ("lengths", lengths), ("output", output));
        FloatType(op, "q", q, DType.F32, DType.BF16);
        Require(kCache.DType == q.DType && vCache.DType == q.DType && output.DType == q.DType, op, "q, caches and output must share one dtype");
        Require(q.Rank == 3 && kCache.Rank == 4, op, $"q must be (batch, hq, d) and caches (batch, capacity, hkv, d), got {q} and {kCache}");
        var s = new AttentionSizes(q.Dim(0), 1, kCache.Dim(1), q.Dim(1), kCache.Dim(2), q.Dim(2));
        Require(kCache.Dim(0) == s.Batch && kCache.Dim(3) == s.D, op, $"k_cache {kCache} does not match q {q}");
        Require(vCache.Shape.SequenceEqual(kCache.Shape), op, $"v_cache must have k_cache's shape, got {vCache}");
        Require(lengths.DType == DType.I32 && lengths.Count == s.Batch, op, $"lengths must be i32 with {s.Batch} elements, got {lengths}");
        Require(output.Shape.SequenceEqual(q.Shape), op, $"output must have q's shape {q}, got {output}");
        Require(s.Hkv > 0 && s.Hq % s.Hkv == 0, op, $"query heads ({s.Hq}) must be a multiple of kv heads ({s.Hkv})");
        Require(s.D is > 0 and <= KernelLimits.MaxHeadDim, op, $"head dimension must be in 1..{KernelLimits.MaxHeadDim}, got {s.D}");
        return s;
    }

    public static (int Rows, int N) Argmax(Tensor x, Tensor indices)
    {
        const string op = "argmax";
        Common(op, ("x", x), ("indices", indices));
        FloatType(op, "x", x, DType.F32, DType.BF16);
        var (rows, n) = RowsOf(x);
        Require(n >= 1 || rows == 0, op, "rows must have at least one element");
        Require(indices.DType == DType.I32 && indices.Count == rows, op, $"indices must be i32 with {rows} elements, got {indices}");
        return (rows, n);
    }

    public static (int Rows, int N) TopK(Tensor x, int k, Tensor values, Tensor indices)
    {
        const string op = "topk";
        Common(op, ("x", x), ("values", values), ("indices", indices));
        FloatType(op, "x", x, DType.F32, DType.BF16);
        var (rows, n) = RowsOf(x);
        Require(k >= 1 && k <= n && k <= KernelLimits.MaxTopK, op, $"k must be in 1..min(n = {n}, {KernelLimits.MaxTopK}), got {k}");
        Require(values.DType == DType.F32 && values.Count == (long)rows * k, op, $"values must be f32 ({rows}, {k}), got {values}");
        Require(indices.DType == DType.I32 && indices.Count == (long)rows * k, op, $"indices must be i32 ({rows}, {k}), got {indices}");
        return (rows, n);
    }

    public static long Reduce(ReadOnlySpan<Tensor> inputs, Tensor output)
    {
        const string op = "reduce";
        Require(inputs.Length is >= 1 and <= KernelLimits.MaxReduceInputs, op, $"1..{KernelLimits.MaxReduceInputs} inputs, got {inputs.Length}");
        FloatType(op, "output", output, DType.F32, DType.BF16, DType.F16);
        Require(output.IsContiguous, op, "output must be contiguous");
        foreach (var input in inputs)
        {
            Require(input.IsContiguous && ReferenceEquals(input.Device, output.Device), op, $"input {input} must be contiguous and on {output.Device.Name}");
            Require(input.DType == output.DType && input.Count == output.Count, op, $"input {input} must match output {output}");
        }
        return output.Count;
    }
}

/// <summary>Size limits the kernels are compiled for (mirrored in kernels/common/limits.cuh).</summary>
public static class KernelLimits
{
    /// <summary>Largest attention head dimension (registers hold head_dim / 32 values per lane).</summary>
    public const int MaxHeadDim = 256;

    /// <summary>Largest k of top-k.</summary>
    public const int MaxTopK = 64;

    /// <summary>Most inputs of one reduce call (a one-shot all-reduce over 8 ranks).</summary>
    public const int MaxReduceInputs = 8;
}
