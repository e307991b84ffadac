using NativeParallel.Devices;
using NativeParallel.Kernels.Reference;
using NativeParallel.Tensors;
using static NativeParallel.Kernels.Check.CaseKit;

namespace NativeParallel.Kernels.Check;

/// <summary>
/// Every kernel case: each op of <see cref="IKernels"/>, each dtype it supports, shapes that are not multiples of
/// a block or a warp (0, 1, 31, 33, 1000...). The same list runs on every device: in the test suite and in
/// <c>nativeparallel kernels check --device</c>.
/// </summary>
public static class KernelSuite
{
    private static readonly DType[] Activations = [DType.F32, DType.BF16];

    /// <summary>All cases, in a fixed order.</summary>
    public static IReadOnlyList<KernelCase> Cases { get; } = Build();

    private static List<KernelCase> Build()
    {
        var cases = new List<KernelCase>();
        foreach (var dt in new[] { DType.F32, DType.BF16, DType.F16 })
            foreach (var (tokens, vocab, hidden) in new[] { (0, 5, 8), (1, 7, 1), (33, 50, 31), (100, 1000, 257) })
                cases.Add(Embedding(dt, tokens, vocab, hidden));
        foreach (var dt in Activations)
            foreach (var (rows, d) in new[] { (0, 8), (1, 1), (3, 31), (5, 33), (17, 1000), (2, 4096), (2, 40001) })
            {
                cases.Add(RmsNorm(dt, rows, d));
                cases.Add(LayerNorm(dt, rows, d));
            }
        foreach (var dt in Activations)
            foreach (var (tokens, heads, d) in new[] { (0, 2, 4), (1, 1, 2), (7, 3, 64), (33, 4, 128), (5, 2, 34) })
                cases.Add(Rope(dt, tokens, heads, d));
        foreach (var (inType, outType) in new[] { (DType.F32, DType.F32), (DType.BF16, DType.BF16), (DType.BF16, DType.F32), (DType.F32, DType.BF16) })
            foreach (var (m, n, k) in new[] { (0, 4, 4), (1, 1, 1), (1, 33, 31), (33, 31, 65), (64, 64, 64), (100, 130, 257), (136, 200, 96), (5, 7, 0) })
                cases.Add(Matmul(inType, outType, m, n, k));
        foreach (var dt in Activations)
        {
            foreach (var (rows, n) in new[] { (0, 3), (1, 1), (31, 33), (7, 1000) }) cases.Add(AddBias(dt, rows, n));
            foreach (int count in new[] { 0, 1, 31, 33, 1000, 65537 })
            {
                cases.Add(Add(dt, count, inPlace: false));
                cases.Add(SwiGlu(dt, count, inPlace: false));
                cases.Add(Gelu(dt, count, inPlace: false));
            }
            cases.Add(Add(dt, 1000, inPlace: true));
            cases.Add(SwiGlu(dt, 10000, inPlace: true));
            cases.Add(Gelu(dt, 10000, inPlace: true));
            foreach (var (rows, n) in new[] { (0, 4), (1, 1), (3, 31), (5, 33), (4, 1000), (2, 32000), (2, 70001) }) cases.Add(Softmax(dt, rows, n));
            foreach (var s in new[] { (1, 1, 1, 1, 1, 1, 0), (1, 7, 7, 4, 2, 64, 0), (2, 33, 33, 8, 2, 32, 0), (1, 5, 12, 4, 4, 80, 7),
                                      (1, 3, 3, 2, 1, 256, 0), (1, 17, 17, 6, 3, 33, 0), (1, 4, 4, 2, 2, 16, 9),
                                      // Several key blocks with the causal edge inside them, row tiles with tails.
                                      (2, 45, 50, 8, 2, 40, 5), (1, 70, 100, 4, 4, 24, 30), (1, 9, 75, 6, 2, 64, 66) })
                cases.Add(AttentionPrefill(dt, s.Item1, s.Item2, s.Item3, s.Item4, s.Item5, s.Item6, s.Item7));
            foreach (var (batch, capacity, hq, hkv, d, lengths) in new[]
                     {
                         (1, 1, 1, 1, 1, new[] { 1 }), (3, 40, 8, 2, 64, new[] { 1, 17, 40 }),
                         (2, 300, 4, 1, 128, new[] { 0, 300 }), (1, 1000, 2, 2, 33, new[] { 999 }),
                         // Sequences split over several key ranges and combined, beside short ones; d past a vector.
                         (2, 700, 8, 8, 40, new[] { 513, 77 }), (4, 600, 12, 3, 100, new[] { 600, 1, 299, 450 }),
                         (2, 333, 6, 2, 72, new[] { 333, 130 }),
                     })
                cases.Add(AttentionDecode(dt, batch, capacity, hq, hkv, d, lengths));
            foreach (var (rows, n) in new[] { (0, 3), (1, 1), (3, 31), (2, 33), (5, 1000), (2, 32001) }) cases.Add(Argmax(dt, rows, n));
            foreach (var (rows, n, k) in new[] { (1, 1, 1), (3, 31, 5), (2, 1000, 64), (4, 33, 33) }) cases.Add(TopK(dt, rows, n, k));
        }
        foreach (var dt in new[] { DType.F32, DType.BF16, DType.F16 })
            foreach (var op in Enum.GetValues<ReduceOp>())
            {
                foreach (var (count, inputs) in new[] { (0, 2), (1, 1), (33, 3), (1000, 8), (65537, 2) })
                    cases.Add(Reduce(dt, op, count, inputs, inPlace: false));
                cases.Add(Reduce(dt, op, 1000, 4, inPlace: true));
            }
        // The ops written one file each (Kernels/Ops/): their cases live beside their kernels.
        cases.AddRange(Ops.OpCatalog.Cases);
        return cases;
    }

    private static KernelCase Embedding(DType dt, int tokens, int vocab, int hidden) =>
        new("embedding", dt, $"tokens={tokens} vocab={vocab} hidden={hidden}", (device, seed) =>
        {
            using var s = new Scope(device);
            // One id past the vocabulary (when there are tokens) checks the zero-row rule.
            var ids = RandomInts(seed, 1, tokens, vocab);
            if (tokens > 2) ids[tokens / 2] = vocab;
            var table = Random(seed, 2, (long)vocab * hidden, dt);
            var output = s.Poisoned(dt, tokens, hidden);
            device.Kernels.Embedding(s.Ints(ids, tokens), s.Floats(table, dt, vocab, hidden), output);
            return Compare(output, ReferenceKernels.Embedding(ids, table, vocab, hidden), dt);
        });

    private static KernelCase RmsNorm(DType dt, int rows, int d) =>
        new("rmsnorm", dt, $"rows={rows} d={d}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * d, dt);
            var w = Random(seed, 2, d, dt, 0.5f, 1.5f);
            var y = s.Poisoned(dt, rows, d);
            device.Kernels.RmsNorm(s.Floats(x, dt, rows, d), s.Floats(w, dt, d), y, 1e-5f);
            return Compare(y, ReferenceKernels.RmsNorm(x, w, rows, d, 1e-5f), dt);
        });

    private static KernelCase LayerNorm(DType dt, int rows, int d) =>
        new("layernorm", dt, $"rows={rows} d={d}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * d, dt, -2f, 3f);
            var w = Random(seed, 2, d, dt, 0.5f, 1.5f);
            var b = Random(seed, 3, d, dt);
            var y = s.Poisoned(dt, rows, d);
            device.Kernels.LayerNorm(s.Floats(x, dt, rows, d), s.Floats(w, dt, d), s.Floats(b, dt, d), y, 1e-5f);
            return Compare(y, ReferenceKernels.LayerNorm(x, w, b, rows, d, 1e-5f), dt);
        });

    private static KernelCase Rope(DType dt, int tokens, int heads, int d) =>
        new("rope", dt, $"tokens={tokens} heads={heads} d={d}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)tokens * heads * d, dt);
            var positions = RandomInts(seed, 2, tokens, 4096);
            var tx = s.Floats(x, dt, tokens, heads, d);
            device.Kernels.Rope(tx, s.Ints(positions, tokens), 10000f);
            return Compare(tx, ReferenceKernels.Rope(x, positions, tokens, heads, d, 10000f), dt);
        });

    private static KernelCase Matmul(DType inType, DType outType, int m, int n, int k) =>
        new("matmul", inType, $"m={m} n={n} k={k} out={outType.Name()}", (device, seed) =>
        {
            using var s = new Scope(device);
            var a = Random(seed, 1, (long)m * k, inType);
            var b = Random(seed, 2, (long)n * k, inType);
            var c = s.Poisoned(outType, m, n);
            device.Kernels.Matmul(s.Floats(a, inType, m, k), s.Floats(b, inType, n, k), c);
            // bf16 anywhere (operands or output rounding) takes the bf16 bound.
            return Compare(c, ReferenceKernels.Matmul(a, b, m, n, k), inType == DType.F32 && outType == DType.F32 ? DType.F32 : DType.BF16);
        });

    private static KernelCase AddBias(DType dt, int rows, int n) =>
        new("add_bias", dt, $"rows={rows} n={n}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * n, dt);
            var bias = Random(seed, 2, n, dt);
            var tx = s.Floats(x, dt, rows, n);
            device.Kernels.AddBias(tx, s.Floats(bias, dt, n));
            return Compare(tx, ReferenceKernels.AddBias(x, bias, rows, n), dt);
        });

    private static KernelCase Add(DType dt, int count, bool inPlace) =>
        new("add", dt, $"count={count}{(inPlace ? " in-place" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            var a = Random(seed, 1, count, dt);
            var b = Random(seed, 2, count, dt);
            var ta = s.Floats(a, dt, count);
            var output = inPlace ? ta : s.Poisoned(dt, count);
            device.Kernels.Add(ta, s.Floats(b, dt, count), output);
            return Compare(output, ReferenceKernels.Add(a, b), dt);
        });

    private static KernelCase SwiGlu(DType dt, int count, bool inPlace) =>
        new("swiglu", dt, $"count={count}{(inPlace ? " in-place" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            var gate = Random(seed, 1, count, dt, -6f, 6f);
            var up = Random(seed, 2, count, dt);
            var gateTensor = s.Floats(gate, dt, count);
            var output = inPlace ? gateTensor : s.Poisoned(dt, count);
            device.Kernels.SwiGlu(gateTensor, s.Floats(up, dt, count), output);
            return Compare(output, ReferenceKernels.SwiGlu(gate, up), dt);
        });

    private static KernelCase Gelu(DType dt, int count, bool inPlace) =>
        new("gelu", dt, $"count={count}{(inPlace ? " in-place" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, count, dt, -6f, 6f);
            var input = s.Floats(x, dt, count);
            var output = inPlace ? input : s.Poisoned(dt, count);
            device.Kernels.Gelu(input, output);
            return Compare(output, ReferenceKernels.Gelu(x), dt);
        });

    private static KernelCase Softmax(DType dt, int rows, int n) =>
        new("softmax", dt, $"rows={rows} n={n}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * n, dt, -8f, 8f);
            var y = s.Poisoned(dt, rows, n);
            device.Kernels.Softmax(s.Floats(x, dt, rows, n), y, 0.7f);
            return Compare(y, ReferenceKernels.Softmax(x, rows, n, 0.7f), dt);
        });

    private static KernelCase AttentionPrefill(DType dt, int batch, int tq, int tk, int hq, int hkv, int d, int queryStart) =>
        new("attention_prefill", dt, $"batch={batch} tq={tq} tk={tk} hq={hq} hkv={hkv} d={d} start={queryStart}", (device, seed) =>
        {
            using var s = new Scope(device);
            var q = Random(seed, 1, (long)batch * tq * hq * d, dt);
            var k = Random(seed, 2, (long)batch * tk * hkv * d, dt);
            var v = Random(seed, 3, (long)batch * tk * hkv * d, dt);
            var output = s.Poisoned(dt, batch, tq, hq, d);
            float scale = 1f / MathF.Sqrt(d);
            device.Kernels.AttentionPrefill(s.Floats(q, dt, batch, tq, hq, d), s.Floats(k, dt, batch, tk, hkv, d),
                s.Floats(v, dt, batch, tk, hkv, d), output, queryStart, scale);
            return Compare(output, ReferenceKernels.AttentionPrefill(q, k, v, batch, tq, tk, hq, hkv, d, queryStart, scale), dt);
        });

    private static KernelCase AttentionDecode(DType dt, int batch, int capacity, int hq, int hkv, int d, int[] lengths) =>
        new("attention_decode", dt, $"batch={batch} capacity={capacity} hq={hq} hkv={hkv} d={d} lengths={string.Join('/', lengths)}", (device, seed) =>
        {
            using var s = new Scope(device);
            var q = Random(seed, 1, (long)batch * hq * d, dt);
            var k = Random(seed, 2, (long)batch * capacity * hkv * d, dt);
            var v = Random(seed, 3, (long)batch * capacity * hkv * d, dt);
            var output = s.Poisoned(dt, batch, hq, d);
            float scale = 1f / MathF.Sqrt(d);
            device.Kernels.AttentionDecode(s.Floats(q, dt, batch, hq, d), s.Floats(k, dt, batch, capacity, hkv, d),
                s.Floats(v, dt, batch, capacity, hkv, d), s.Ints(lengths, batch), output, scale);
            return Compare(output, ReferenceKernels.AttentionDecode(q, k, v, lengths, batch, capacity, hq, hkv, d, scale), dt);
        });

    private static KernelCase Argmax(DType dt, int rows, int n) =>
        new("argmax", dt, $"rows={rows} n={n}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * n, dt);
            var indices = s.Poisoned(DType.I32, rows);
            device.Kernels.Argmax(s.Floats(x, dt, rows, n), indices);
            return (0, 0, ExactMismatch(indices.ToInts(), ReferenceKernels.Argmax(x, rows, n), "indices"));
        });

    private static KernelCase TopK(DType dt, int rows, int n, int k) =>
        new("topk", dt, $"rows={rows} n={n} k={k}", (device, seed) =>
        {
            using var s = new Scope(device);
            var x = Random(seed, 1, (long)rows * n, dt);
            var values = s.Poisoned(DType.F32, rows, k);
            var indices = s.Poisoned(DType.I32, rows, k);
            device.Kernels.TopK(s.Floats(x, dt, rows, n), k, values, indices);
            var (refValues, refIndices) = ReferenceKernels.TopK(x, rows, n, k);
            string mismatch = ExactMismatch(indices.ToInts(), refIndices, "indices");
            double error = ErrorBounds.RelativeError(values.ToFloats(), refValues);
            return (error, 0, mismatch);
        });

    private static KernelCase Reduce(DType dt, ReduceOp op, int count, int inputs, bool inPlace) =>
        new("reduce", dt, $"op={op.ToString().ToLowerInvariant()} count={count} inputs={inputs}{(inPlace ? " in-place" : "")}", (device, seed) =>
        {
            using var s = new Scope(device);
            var values = new float[inputs][];
            var tensors = new Tensor[inputs];
            for (int i = 0; i < inputs; i++)
            {
                // Products of many inputs stay representable when magnitudes sit near 1.
                values[i] = op == ReduceOp.Prod ? Random(seed, i + 1, count, dt, 0.5f, 1.5f) : Random(seed, i + 1, count, dt);
                tensors[i] = s.Floats(values[i], dt, count);
            }
            var output = inPlace ? tensors[0] : s.Poisoned(dt, count);
            device.Kernels.Reduce(op, tensors, output);
            return Compare(output, ReferenceKernels.Reduce(op, values), dt);
        });
}
