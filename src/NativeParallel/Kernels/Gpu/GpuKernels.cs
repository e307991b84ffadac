using NativeParallel.Kernels.Ops;
using NativeParallel.Tensors;

namespace NativeParallel.Kernels.Gpu;

/// <summary>
/// The launchers of kernels/*.cu: for each op, check shapes (<see cref="OpShapes"/>), choose the entry point by
/// dtype, compute the grid and pack the argument struct. Device-independent: any <see cref="IKernelLauncher"/>.
/// </summary>
public sealed class GpuKernels : IKernels
{
    private const uint RowBlock = 256;       // row kernels: one block of 256 threads per row
    private const uint ElementBlock = 256;   // element-wise kernels
    private const uint AttentionWarps = 4;   // ATT_WARPS in attention.cu
    private const uint MatmulTile = 64;      // MM_BM = MM_BN = TC_BM = TC_BN in matmul.cu
    private const uint MatmulV3Tile = 128;   // G3_BM = G3_BN in matmul.cu (v3 and v4)
    private readonly IKernelLauncher _launcher;
    // Entry-point names per dtype, built once: a launch does no string work.
    private static readonly EntryPoints ArgmaxEntry = new("argmax");
    private static readonly EntryPoints AttentionDecodeCombineEntry = new("attention_decode_combine");
    private static readonly EntryPoints AttentionDecodeEntry = new("attention_decode");
    private static readonly EntryPoints AttentionDecodeSplitEntry = new("attention_decode_split");
    private static readonly EntryPoints AttentionPrefillEntry = new("attention_prefill");
    private static readonly EntryPoints BiasAddEntry = new("bias_add");
    private static readonly EntryPoints EmbeddingFwdEntry = new("embedding_fwd");
    private static readonly EntryPoints GeluFwdEntry = new("gelu_fwd");
    private static readonly EntryPoints LayernormFwdEntry = new("layernorm_fwd");
    private static readonly EntryPoints ResidualAddEntry = new("residual_add");
    private static readonly EntryPoints RopeFwdEntry = new("rope_fwd");
    private static readonly EntryPoints SwigluFwdEntry = new("swiglu_fwd");
    private static readonly EntryPoints TopkEntry = new("topk");
    private static readonly EntryPoints RmsnormFwdV2Entry = new("rmsnorm_fwd_v2");
    private static readonly EntryPoints SoftmaxFwdV2Entry = new("softmax_fwd_v2");
    private static readonly EntryPoints[] ReduceEntries = Enum.GetValues<ReduceOp>().OrderBy(o => (int)o)
        .Select(o => new EntryPoints("reduce_" + o.ToString().ToLowerInvariant())).ToArray();

    /// <summary>Creates the launchers over <paramref name="launcher"/>.</summary>
    public GpuKernels(IKernelLauncher launcher) => _launcher = launcher;

    // Grid-stride kernels need no more blocks than fill the device a few times over.
    private uint GridFor(long items, uint perBlock)
    {
        long blocks = (items + perBlock - 1) / perBlock;
        return (uint)Math.Clamp(blocks, 1, Math.Max(1, _launcher.MultiprocessorCount) * 32L);
    }

    // Row kernels that keep the row in registers (softmax v2, rmsnorm v2, cross_entropy v2): the smallest block, in
    // whole warps up to 1024 threads, whose `vecs` 16-byte vectors per thread cover a row of n elements at any
    // misalignment (one vector more than n needs). Longer rows get 1024 threads and the kernels' streaming path.
    internal static uint RowCacheBlock(int n, DType dtype, int vecs)
    {
        int perVector = 16 / dtype.SizeOf();
        long vectors = (n + perVector - 1) / perVector + 1;
        long threads = (vectors + vecs - 1) / vecs;
        return (uint)Math.Clamp((threads + 31) / 32 * 32, 32, 1024);
    }

    internal const int RowVecs = 8;  // SOFTMAX_VECS, CE_VECS
    private const int NormVecs = 4;  // RMSNORM_VECS

    private uint RowGrid(int rows) => (uint)Math.Min(rows, Math.Max(1, _launcher.MultiprocessorCount) * 64L);

    /// <inheritdoc />
    public void Embedding(Tensor ids, Tensor table, Tensor output)
    {
        var (tokens, hidden, vocab) = OpShapes.Embedding(ids, table, output);
        if (tokens == 0 || hidden == 0) return;
        var args = new EmbeddingArgs { Ids = ids.Pointer, Table = table.Pointer, Out = output.Pointer, Tokens = tokens, Hidden = hidden, Vocab = vocab };
        _launcher.Launch("embedding.cu", EmbeddingFwdEntry[table.DType], new Dim3(RowGrid(tokens)), new Dim3(RowBlock), 0, args);
    }

    /// <inheritdoc />
    public void RmsNorm(Tensor x, Tensor weight, Tensor y, float eps)
    {
        var (rows, d) = OpShapes.Norm("rmsnorm", x, weight, null, y);
        if (rows == 0) return;
        var args = new RmsNormArgs { X = x.Pointer, Weight = weight.Pointer, Y = y.Pointer, Rows = rows, D = d, Eps = eps };
        _launcher.Launch("rmsnorm.cu", RmsnormFwdV2Entry[x.DType], new Dim3(RowGrid(rows)), new Dim3(RowCacheBlock(d, x.DType, NormVecs)), 0, args);
    }

    /// <inheritdoc />
    public void LayerNorm(Tensor x, Tensor weight, Tensor bias, Tensor y, float eps)
    {
        var (rows, d) = OpShapes.Norm("layernorm", x, weight, bias, y);
        if (rows == 0) return;
        var args = new LayerNormArgs { X = x.Pointer, Weight = weight.Pointer, Bias = bias.Pointer, Y = y.Pointer, Rows = rows, D = d, Eps = eps };
        _launcher.Launch("layernorm.cu", LayernormFwdEntry[x.DType], new Dim3(RowGrid(rows)), new Dim3(RowBlock), 0, args);
    }

    /// <inheritdoc />
    public void Rope(Tensor x, Tensor positions, float theta)
    {
        var (tokens, heads, d) = OpShapes.Rope(x, positions);
        long pairs = (long)tokens * heads * (d / 2);
        if (pairs == 0) return;
        var args = new RopeArgs { X = x.Pointer, Positions = positions.Pointer, Tokens = tokens, Heads = heads, D = d, Theta = theta };
        _launcher.Launch("rope.cu", RopeFwdEntry[x.DType], new Dim3(GridFor(pairs, ElementBlock)), new Dim3(ElementBlock), 0, args);
    }

    /// <inheritdoc />
    public void Matmul(Tensor a, Tensor b, Tensor c)
    {
        var (m, n, k) = OpShapes.Matmul(a, b, c);
        if (m == 0 || n == 0) return;
        var args = new MatmulArgs { A = a.Pointer, B = b.Pointer, C = c.Pointer, M = m, N = n, K = k };
        // bf16 operands go to the tensor cores (v3, v4: 128 x 128 tiles of 8 warps; v2: 64 x 64 of 4); f32 operands
        // to the SIMT tiles (v1).
        string version = a.DType == DType.BF16 ? KernelVersions.Selected("matmul") : "v1";
        if (version is "v3" or "v4")
            _launcher.Launch("matmul.cu", (version, c.DType) switch
                {
                    ("v3", DType.BF16) => "matmul_v3_bf16_bf16",
                    ("v3", _) => "matmul_v3_bf16_f32",
                    (_, DType.BF16) => "matmul_v4_bf16_bf16",
                    _ => "matmul_v4_bf16_f32",
                },
                new Dim3(OpLaunch.Tiles(n, MatmulV3Tile), OpLaunch.Tiles(m, MatmulV3Tile)), new Dim3(256), 0, args);
        else if (version == "v2")
            _launcher.Launch("matmul.cu", c.DType == DType.BF16 ? "matmul_tc_bf16_bf16" : "matmul_tc_bf16_f32",
                new Dim3(OpLaunch.Tiles(n, MatmulTile), OpLaunch.Tiles(m, MatmulTile)), new Dim3(128), 0, args);
        else
            _launcher.Launch("matmul.cu", c.DType == DType.BF16 ? "matmul_f32_bf16" : "matmul_f32_f32",
                new Dim3(OpLaunch.Tiles(n, MatmulTile), OpLaunch.Tiles(m, MatmulTile)), new Dim3(256), 0, args);
    }

    /// <inheritdoc />
    public void AddBias(Tensor x, Tensor bias)
    {
        var (rows, n) = OpShapes.AddBias(x, bias);
        long count = (long)rows * n;
        if (count == 0) return;
        var args = new BiasAddArgs { X = x.Pointer, Bias = bias.Pointer, Count = count, N = n };
        _launcher.Launch("bias_add.cu", BiasAddEntry[x.DType], new Dim3(GridFor(count, ElementBlock)), new Dim3(ElementBlock), 0, args);
    }

    /// <inheritdoc />
    public void Add(Tensor a, Tensor b, Tensor output) => Binary("residual_add", "residual_add.cu", ResidualAddEntry, a, b, output);

    /// <inheritdoc />
    public void SwiGlu(Tensor gate, Tensor up, Tensor output) => Binary("swiglu", "swiglu.cu", SwigluFwdEntry, gate, up, output);

    private void Binary(string op, string file, EntryPoints entry, Tensor a, Tensor b, Tensor output)
    {
        long count = OpShapes.Elementwise(op, a, b, output);
        if (count == 0) return;
        var args = new BinaryArgs { A = a.Pointer, B = b.Pointer, Out = output.Pointer, Count = count };
        _launcher.Launch(file, entry[a.DType], new Dim3(GridFor(count, ElementBlock)), new Dim3(ElementBlock), 0, args);
    }

    /// <inheritdoc />
    public void Gelu(Tensor x, Tensor output)
    {
        long count = OpShapes.Elementwise("gelu", x, null, output);
        if (count == 0) return;
        var args = new UnaryArgs { X = x.Pointer, Out = output.Pointer, Count = count };
        _launcher.Launch("gelu.cu", GeluFwdEntry[x.DType], new Dim3(GridFor(count, ElementBlock)), new Dim3(ElementBlock), 0, args);
    }

    /// <inheritdoc />
    public void Softmax(Tensor x, Tensor y, float scale)
    {
        var (rows, n) = OpShapes.Softmax(x, y);
        if (rows == 0) return;
        var args = new SoftmaxArgs { X = x.Pointer, Y = y.Pointer, Rows = rows, N = n, Scale = scale };
        _launcher.Launch("softmax.cu", SoftmaxFwdV2Entry[x.DType], new Dim3(RowGrid(rows)), new Dim3(RowCacheBlock(n, x.DType, RowVecs)), 0, args);
    }

    /// <inheritdoc />
    public void AttentionPrefill(Tensor q, Tensor k, Tensor v, Tensor output, int queryStart, float scale)
    {
        var s = OpShapes.AttentionPrefill(q, k, v, output, queryStart);
        long rows = (long)s.Batch * s.Tq * s.Hq;
        if (rows == 0) return;
        var args = new AttentionPrefillArgs
        {
            Q = q.Pointer, K = k.Pointer, V = v.Pointer, Out = output.Pointer, Batch = s.Batch, Tq = s.Tq, Tk = s.Tk,
            Hq = s.Hq, Hkv = s.Hkv, D = s.D, QueryStart = queryStart, Scale = scale,
        };
        _launcher.Launch("attention.cu", AttentionPrefillEntry[q.DType], new Dim3(GridFor(rows, AttentionWarps)),
            new Dim3(AttentionWarps * 32), 0, args);
    }

    /// <inheritdoc />
    public void AttentionDecode(Tensor q, Tensor kCache, Tensor vCache, Tensor lengths, Tensor output, float scale)
    {
        var s = OpShapes.AttentionDecode(q, kCache, vCache, lengths, output);
        int heads = s.Batch * s.Hq;
        if (heads == 0) return;
        if (DecodeV2Fits(q, kCache, vCache, s.D))
        {
            AttentionDecodeSplit(q, kCache, vCache, lengths, output, scale, s.Batch, s.Tk, s.Hq, s.Hkv, s.D);
            return;
        }
        var args = new AttentionDecodeArgs
        {
            Q = q.Pointer, KCache = kCache.Pointer, VCache = vCache.Pointer, Lengths = lengths.Pointer, Out = output.Pointer,
            Batch = s.Batch, Capacity = s.Tk, Hq = s.Hq, Hkv = s.Hkv, D = s.D, Scale = scale,
        };
        _launcher.Launch("attention.cu", AttentionDecodeEntry[q.DType], new Dim3(RowGrid(heads)), new Dim3(AttentionWarps * 32), 0, args);
    }

    // Decode v2 holds a key row as d / N lanes of 16 bytes (N elements): d * size must be 64, 128, 256 or 512 bytes,
    // and the tensors it reads with 16-byte loads must be 16-byte aligned.
    private static bool DecodeV2Fits(Tensor q, Tensor kCache, Tensor vCache, int d)
    {
        int rowBytes = d * q.DType.SizeOf();
        return rowBytes is 64 or 128 or 256 or 512 && ((q.Pointer | kCache.Pointer | vCache.Pointer) & 15) == 0;
    }

    // One-warp blocks of the split decode resident per SM: 168 registers a thread on sm_90 (ATT_DEC_U 8) leave room
    // for 12 (NATIVEPARALLEL_DECODE_BLOCKS_PER_SM overrides it, to measure another GPU or kernel build).
    private static readonly int DecodeBlocksPerSm = int.TryParse(Diagnostics.Tunables.Raw("NATIVEPARALLEL_DECODE_BLOCKS_PER_SM"), out int b) && b > 0 ? b : 12;

    private void AttentionDecodeSplit(Tensor q, Tensor kCache, Tensor vCache, Tensor lengths, Tensor output, float scale,
        int batch, int capacity, int hq, int hkv, int d)
    {
        const int HeadsPerBlock = 4, MinChunk = 64;  // ATT_DEC_G in attention.cu
        long baseBlocks = (long)batch * hkv * ((hq / hkv + HeadsPerBlock - 1) / HeadsPerBlock);
        // As many splits as fill every SM exactly once: a grid of 1.45 waves ran 28 % slower than one wave on the
        // H200 (the last wave half empty). Chunks of at least 64 keys keep the partial states (d + 2 floats per split
        // and head) a small fraction of the K/V bytes.
        long want = Math.Max(1, _launcher.MultiprocessorCount) * (long)DecodeBlocksPerSm / baseBlocks;
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
        _launcher.Launch("attention.cu", AttentionDecodeSplitEntry[q.DType], new Dim3((uint)baseBlocks, (uint)splits), new Dim3(32), 0, args);
        _launcher.Launch("attention.cu", AttentionDecodeCombineEntry[q.DType], new Dim3(GridFor((long)batch * hq, AttentionWarps)),
            new Dim3(AttentionWarps * 32), 0, args);
    }

    /// <inheritdoc />
    public void Argmax(Tensor x, Tensor indices)
    {
        var (rows, n) = OpShapes.Argmax(x, indices);
        if (rows == 0) return;
        var args = new ArgmaxArgs { X = x.Pointer, Indices = indices.Pointer, Rows = rows, N = n };
        _launcher.Launch("argmax.cu", ArgmaxEntry[x.DType], new Dim3(RowGrid(rows)), new Dim3(RowBlock), 0, args);
    }

    /// <inheritdoc />
    public void TopK(Tensor x, int k, Tensor values, Tensor indices)
    {
        var (rows, n) = OpShapes.TopK(x, k, values, indices);
        if (rows == 0) return;
        var args = new TopKArgs { X = x.Pointer, Values = values.Pointer, Indices = indices.Pointer, Rows = rows, N = n, K = k };
        _launcher.Launch("topk.cu", TopkEntry[x.DType], new Dim3(RowGrid(rows)), new Dim3(RowBlock), 0, args);
    }

    /// <inheritdoc />
    public void Reduce(ReduceOp op, ReadOnlySpan<Tensor> inputs, Tensor output)
    {
        long count = OpShapes.Reduce(inputs, output);
        if (count == 0) return;
        var args = new ReduceArgs { Dst = output.Pointer, Count = count, Inputs = inputs.Length };
        for (int s = 0; s < inputs.Length; s++) args.Sources[s] = inputs[s].Pointer;
        _launcher.Launch("reduce.cu", ReduceEntries[(int)op][output.DType], new Dim3(GridFor(count, ElementBlock)), new Dim3(ElementBlock), 0, args);
    }
}
