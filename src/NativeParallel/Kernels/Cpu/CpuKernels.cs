using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Cpu;

/// <summary>
/// The CPU device's kernels: the production CPU path (vectorised with TensorPrimitives and Vector256,
/// multi-threaded over rows), deliberately separate from <see cref="Reference.ReferenceKernels"/> so that checking
/// one against the other is a real check. The memory-bound ops (RMSNorm, softmax, attention decode, SwiGLU) run in
/// <see cref="CpuRowKernels"/>, bf16 in registers; the others work over f32 views (<see cref="F32View"/>).
/// </summary>
internal sealed unsafe class CpuKernels : IKernels
{
    public void Embedding(Tensor ids, Tensor table, Tensor output)
    {
        var (tokens, hidden, vocab) = OpShapes.Embedding(ids, table, output);
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

    public void RmsNorm(Tensor x, Tensor weight, Tensor y, float eps)
    {
        var (rows, d) = OpShapes.Norm("rmsnorm", x, weight, null, y);
        CpuRowKernels.RmsNorm(x, weight, y, rows, d, eps);
    }

    public void LayerNorm(Tensor x, Tensor weight, Tensor bias, Tensor y, float eps)
    {
        var (rows, d) = OpShapes.Norm("layernorm", x, weight, bias, y);
        using var xv = F32View.Input(x);
        using var wv = F32View.Input(weight);
        using var bv = F32View.Input(bias);
        using var yv = F32View.Output(y);
        float* xp = xv.Pointer, wp = wv.Pointer, bp = bv.Pointer, yp = yv.Pointer;
        CpuParallel.For(rows, 5L * d, (start, end) =>
        {
            var w = new ReadOnlySpan<float>(wp, d);
            var b = new ReadOnlySpan<float>(bp, d);
            for (int r = start; r < end; r++)
            {
                var row = new ReadOnlySpan<float>(xp + (long)r * d, d);
                var outRow = new Span<float>(yp + (long)r * d, d);
                float mean = TensorPrimitives.Sum(row) / d;
                TensorPrimitives.Subtract(row, mean, outRow);
                float inv = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(outRow) / d + eps);
                TensorPrimitives.Multiply(outRow, inv, outRow);
                TensorPrimitives.FusedMultiplyAdd(outRow, w, b, outRow);
            }
        });
    }

    public void Rope(Tensor x, Tensor positions, float theta)
    {
        var (tokens, heads, d) = OpShapes.Rope(x, positions);
        Rotate(x, positions, theta, tokens, heads, d, sign: 1f);
    }

    /// <summary>RoPE's rotation in place: sign +1 by +angle (forward), −1 by −angle (backward, the transpose).</summary>
    internal static void Rotate(Tensor x, Tensor positions, float theta, int tokens, int heads, int d, float sign)
    {
        int half = d / 2;
        // f64 frequencies: an f32-rounded frequency times position 4096 is already ~2e-4 rad off.
        var frequencies = new double[half];
        for (int i = 0; i < half; i++) frequencies[i] = Math.Pow(theta, -2.0 * i / d);
        int* pos = (int*)positions.Pointer;
        using var xv = F32View.InOut(x);
        float* xp = xv.Pointer;
        CpuParallel.For(tokens, 6L * heads * d, (start, end) =>
        {
            Span<float> cos = stackalloc float[half], sin = stackalloc float[half];
            for (int t = start; t < end; t++)
            {
                for (int i = 0; i < half; i++)
                {
                    double angle = pos[t] * frequencies[i];
                    cos[i] = (float)Math.Cos(angle);
                    sin[i] = sign * (float)Math.Sin(angle);
                }
                for (int h = 0; h < heads; h++)
                {
                    float* row = xp + ((long)t * heads + h) * d;
                    for (int i = 0; i < half; i++)
                    {
                        float x1 = row[i], x2 = row[i + half];
                        row[i] = x1 * cos[i] - x2 * sin[i];
                        row[i + half] = x2 * cos[i] + x1 * sin[i];
                    }
                }
            }
        });
    }

    public void Matmul(Tensor a, Tensor b, Tensor c)
    {
        var (m, n, k) = OpShapes.Matmul(a, b, c);
        if (m >= CpuGemm.PackedFromRows && a.DType is DType.F32 or DType.BF16 && b.DType is DType.F32 or DType.BF16)
        {
            // f32 and bf16 operands go to the packed GEMM as they are: it widens bf16 while packing (no f32 copies
            // of a or b), and rounds a bf16 c tile by tile as it finishes (the scratch holds the partial sums).
            CpuPackedGemm.Operand x = CpuPackedGemm.Operand.Of(a, k, 1), y = CpuPackedGemm.Operand.Of(b, k, 1);
            if (c.DType == DType.F32) CpuPackedGemm.Multiply(m, n, k, x, y, (float*)c.Pointer, n, accumulate: false);
            else CpuPackedGemm.MultiplyToBf16(m, n, k, x, y, (ushort*)c.Pointer, n);
            return;
        }
        using var av = F32View.Input(a);
        using var bv = F32View.Input(b);
        using var cv = F32View.Output(c);
        CpuGemm.MultiplyTransposed(av.Pointer, bv.Pointer, cv.Pointer, m, n, k);
    }

    public void AddBias(Tensor x, Tensor bias)
    {
        var (rows, n) = OpShapes.AddBias(x, bias);
        using var xv = F32View.InOut(x);
        using var bv = F32View.Input(bias);
        float* xp = xv.Pointer, bp = bv.Pointer;
        CpuParallel.For(rows, n, (start, end) =>
        {
            var b = new ReadOnlySpan<float>(bp, n);
            for (int r = start; r < end; r++)
            {
                var row = new Span<float>(xp + (long)r * n, n);
                TensorPrimitives.Add(row, b, row);
            }
        });
    }

    public void Add(Tensor a, Tensor b, Tensor output) =>
        Binary("add", a, b, output, static (x, y, o) => TensorPrimitives.Add(x, y, o));

    public void SwiGlu(Tensor gate, Tensor up, Tensor output)
    {
        if (gate.DType is not (DType.F32 or DType.BF16))
        {
            Binary("swiglu", gate, up, output, static (g, u, o) =>
            {
                // silu(g)·u = g·sigmoid(g)·u in vector passes over one L1-sized chunk. The sigmoid goes to scratch,
                // not to o, because o may alias g or u (in-place SwiGLU).
                Span<float> sigmoid = stackalloc float[g.Length];
                TensorPrimitives.Sigmoid(g, sigmoid);
                TensorPrimitives.Multiply(sigmoid, g, sigmoid);
                TensorPrimitives.Multiply(sigmoid, u, o);
            });
            return;
        }
        long count = OpShapes.Elementwise("swiglu", gate, up, output);
        CpuRowKernels.SwiGlu(gate, up, output, count);
    }

    public void Gelu(Tensor x, Tensor output)
    {
        long count = OpShapes.Elementwise("gelu", x, null, output);
        using var xv = F32View.Input(x);
        using var ov = F32View.Output(output);
        float* xp = xv.Pointer, op = ov.Pointer;
        Chunks(count, 12, (offset, length) =>
        {
            var src = new ReadOnlySpan<float>(xp + offset, length);
            var dst = new Span<float>(op + offset, length);
            const float c = 0.7978845608028654f; // √(2/π)
            // 0.5·x·(1 + tanh(u)) = x·sigmoid(2u) with u = c·(x + 0.044715·x³): the sigmoid form has no
            // 1 + tanh cancellation for negative x. Built in scratch since dst may alias src.
            Span<float> t = stackalloc float[length];
            TensorPrimitives.Multiply(src, src, t);
            TensorPrimitives.Multiply(t, 0.044715f, t);
            TensorPrimitives.Add(t, 1f, t);
            TensorPrimitives.Multiply(t, src, t);
            TensorPrimitives.Multiply(t, 2f * c, t);
            TensorPrimitives.Sigmoid(t, t);
            TensorPrimitives.Multiply(t, src, dst);
        });
    }

    public void Softmax(Tensor x, Tensor y, float scale)
    {
        var (rows, n) = OpShapes.Softmax(x, y);
        CpuRowKernels.Softmax(x, y, rows, n, scale);
    }

    public void AttentionPrefill(Tensor q, Tensor k, Tensor v, Tensor output, int queryStart, float scale)
    {
        var s = OpShapes.AttentionPrefill(q, k, v, output, queryStart);
        CpuAttention.Prefill(q, k, v, output, s, queryStart, scale);
    }

    public void AttentionDecode(Tensor q, Tensor kCache, Tensor vCache, Tensor lengths, Tensor output, float scale)
    {
        var s = OpShapes.AttentionDecode(q, kCache, vCache, lengths, output);
        var lens = lengths.ToInts();
        foreach (int len in lens)
            OpShapes.Require(len >= 0 && len <= s.Tk, "attention_decode", $"lengths must be in 0..{s.Tk} (the cache capacity), got {len}");
        CpuAttention.Decode(q, kCache, vCache, lens, output, s, scale);
    }

    public void Argmax(Tensor x, Tensor indices)
    {
        var (rows, n) = OpShapes.Argmax(x, indices);
        using var xv = F32View.Input(x);
        float* xp = xv.Pointer;
        int* ip = (int*)indices.Pointer;
        // TensorPrimitives.IndexOfMax returns the first maximum, which is the lowest index on ties.
        CpuParallel.For(rows, n, (start, end) =>
        {
            for (int r = start; r < end; r++) ip[r] = TensorPrimitives.IndexOfMax(new ReadOnlySpan<float>(xp + (long)r * n, n));
        });
    }

    public void TopK(Tensor x, int k, Tensor values, Tensor indices)
    {
        var (rows, n) = OpShapes.TopK(x, k, values, indices);
        using var xv = F32View.Input(x);
        float* xp = xv.Pointer, vp = (float*)values.Pointer;
        int* ip = (int*)indices.Pointer;
        CpuParallel.For(rows, (long)n * 2, (start, end) =>
        {
            for (int r = start; r < end; r++)
            {
                // Insertion into a sorted list of k: strictly greater wins, so the earlier index stays first on ties.
                var bestValues = new Span<float>(vp + (long)r * k, k);
                var bestIndices = new Span<int>(ip + (long)r * k, k);
                int filled = 0;
                float* row = xp + (long)r * n;
                for (int j = 0; j < n; j++)
                {
                    float value = row[j];
                    if (filled == k && !(value > bestValues[k - 1])) continue;
                    int slot = filled < k ? filled++ : k - 1;
                    while (slot > 0 && value > bestValues[slot - 1])
                    {
                        bestValues[slot] = bestValues[slot - 1];
                        bestIndices[slot] = bestIndices[slot - 1];
                        slot--;
                    }
                    bestValues[slot] = value;
                    bestIndices[slot] = j;
                }
            }
        });
    }

    public void Reduce(ReduceOp op, ReadOnlySpan<Tensor> inputs, Tensor output)
    {
        long count = OpShapes.Reduce(inputs, output);
        var views = new F32View[inputs.Length];
        try
        {
            for (int s = 0; s < inputs.Length; s++) views[s] = F32View.Input(inputs[s]);
            using var ov = F32View.Output(output);
            float*[] sources = new float*[inputs.Length];
            for (int s = 0; s < sources.Length; s++) sources[s] = views[s].Pointer;
            float* dst = ov.Pointer;
            float inverseCount = 1f / inputs.Length;
            Chunks(count, inputs.Length, (offset, length) =>
            {
                var acc = new Span<float>(dst + offset, length);
                new ReadOnlySpan<float>(sources[0] + offset, length).CopyTo(acc);
                for (int s = 1; s < sources.Length; s++)
                {
                    ElementwiseReduce.Combine(op, acc, new ReadOnlySpan<float>(sources[s] + offset, length));
                }
                if (op == ReduceOp.Avg) TensorPrimitives.Multiply(acc, inverseCount, acc);
            });
        }
        finally
        {
            foreach (var view in views) view.Dispose();
        }
    }

    private delegate void BinaryOp(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> output);

    private static void Binary(string name, Tensor a, Tensor b, Tensor output, BinaryOp body)
    {
        long count = OpShapes.Elementwise(name, a, b, output);
        using var av = F32View.Input(a);
        using var bv = F32View.Input(b);
        using var ov = F32View.Output(output);
        float* ap = av.Pointer, bp = bv.Pointer, op = ov.Pointer;
        Chunks(count, 4, (offset, length) =>
            body(new ReadOnlySpan<float>(ap + offset, length), new ReadOnlySpan<float>(bp + offset, length), new Span<float>(op + offset, length)));
    }

    /// <summary>Element-wise work in chunks of 4 K elements (16 KB, L1-sized; small enough for stack scratch), spread across cores.</summary>
    private static void Chunks(long count, long workPerElement, Action<long, int> body)
    {
        const int chunk = 4 * 1024;
        int chunks = checked((int)((count + chunk - 1) / chunk));
        CpuParallel.For(chunks, chunk * workPerElement, (start, end) =>
        {
            for (int c = start; c < end; c++)
            {
                long offset = (long)c * chunk;
                body(offset, (int)Math.Min(chunk, count - offset));
            }
        });
    }
}
